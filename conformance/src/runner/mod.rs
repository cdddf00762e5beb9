//! The case runner: what a case is, how cases run (timeouts, parallelism, cleanup even on
//! failure) and how outcomes are reported.

pub mod check;
pub mod connect;
mod ctx;
mod execute;
pub mod host;
pub mod logs;
pub mod report;
pub mod rpcs;
pub mod spdy;
pub mod ws;

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;

pub use ctx::{
    container_state_name, image_spec, random_uid, strings, uid_from, AuthRegistry, Backend,
    Container, Ctx, Sandbox, Settings, Shared, CASE_LABEL, POD_NAMESPACE, RUN_LABEL,
};
pub use execute::{run_cases, CaseResult, Status};

/// The groups cases are reported under, as critest groups them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    RuntimeInfo,
    Sandbox,
    Container,
    Image,
    Security,
    Streaming,
    Stats,
    Events,
}

impl Group {
    pub const ALL: [Group; 8] = [
        Group::RuntimeInfo,
        Group::Sandbox,
        Group::Container,
        Group::Image,
        Group::Security,
        Group::Streaming,
        Group::Stats,
        Group::Events,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Group::RuntimeInfo => "runtime info",
            Group::Sandbox => "sandbox",
            Group::Container => "container",
            Group::Image => "image",
            Group::Security => "security",
            Group::Streaming => "streaming",
            Group::Stats => "stats",
            Group::Events => "events",
        }
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// How a case ended when it did not fail. A failure is an `Err` whose message says what was
/// expected and what came back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// The endpoint does not offer the feature (yet): reported, never counted as a pass.
    Skip(String),
}

/// An error that turns a case into a skip wherever it is raised (`?` works from helpers).
#[derive(Debug)]
pub struct Skipped(pub String);

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "skipped: {}", self.0)
    }
}

impl std::error::Error for Skipped {}

/// Builds the error that makes the current case a skip with `reason`.
pub fn skip(reason: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Skipped(reason.into()))
}

/// What every case body returns.
pub type CaseFuture = BoxFuture<'static, anyhow::Result<Outcome>>;

/// One conformance case.
#[derive(Clone)]
pub struct Case {
    pub group: Group,
    pub name: &'static str,
    /// The CRI RPCs this case exercises (used for the coverage report).
    pub rpcs: &'static [&'static str],
    pub timeout: Duration,
    /// Cases naming the same lock never run at the same time (e.g. image removal).
    pub lock: Option<&'static str>,
    /// A documented containerd 1.6 bug or gap that makes the reference fail this case.
    pub reference_known_failure: Option<&'static str>,
    pub run: fn(Ctx) -> CaseFuture,
}

impl Case {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

    pub fn new(
        group: Group,
        name: &'static str,
        rpcs: &'static [&'static str],
        run: fn(Ctx) -> CaseFuture,
    ) -> Self {
        Case {
            group,
            name,
            rpcs,
            timeout: Self::DEFAULT_TIMEOUT,
            lock: None,
            reference_known_failure: None,
            run,
        }
    }

    pub fn full_name(&self) -> String {
        format!("[{}] {}", self.group, self.name)
    }

    pub fn timeout_secs(mut self, secs: u64) -> Self {
        self.timeout = Duration::from_secs(secs);
        self
    }

    pub fn lock(mut self, lock: &'static str) -> Self {
        self.lock = Some(lock);
        self
    }

    pub fn reference_known_failure(mut self, reason: &'static str) -> Self {
        self.reference_known_failure = Some(reason);
        self
    }
}

/// Registers an `async fn(Ctx) -> Result<Outcome>` as a case:
/// `case!(Group::Sandbox, "name", [RunPodSandbox, PodSandboxStatus], function)`.
#[macro_export]
macro_rules! case {
    ($group:expr, $name:expr, [$($rpc:ident),* $(,)?], $run:path) => {
        $crate::runner::Case::new(
            $group,
            $name,
            &[$(stringify!($rpc)),*],
            |ctx: $crate::runner::Ctx| -> $crate::runner::CaseFuture { Box::pin($run(ctx)) },
        )
    };
}
