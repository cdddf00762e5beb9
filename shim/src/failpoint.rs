//! Named failpoints at the steps of the calls that create and destroy pods, for the fault
//! tests (`shim/tests/faults.rs`). Built only with the `failpoints` cargo feature (never in
//! release packages); without it [`hit`] is an empty inline function.
//!
//! `CRIUS_FAILPOINTS="sandbox.netns=error,container.backend=kill"` arms them when crius
//! starts: `error` makes the step fail with `Internal`, `kill` sends crius SIGKILL on the
//! spot (a crash: nothing after it runs, no destructor, no rollback).

use crate::error::Result;

/// Every failpoint, in the order its call reaches it.
pub const ALL: &[&str] = &[
    // RunPodSandbox
    "sandbox.files",
    "sandbox.netns",
    "sandbox.pause",
    "sandbox.started",
    "sandbox.record",
    // CreateContainer
    "container.spec",
    "container.backend",
    "container.records",
    // StartContainer
    "start.task",
    "start.record",
    // StopPodSandbox
    "stop.containers",
    "stop.pause",
    "stop.network",
    // RemovePodSandbox
    "remove.containers",
    "remove.pause",
    "remove.files",
    "remove.record",
];

#[cfg(feature = "failpoints")]
mod armed {
    use std::collections::HashMap;
    use std::sync::OnceLock;

    use crate::error::{Error, Result};

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Action {
        Error,
        Kill,
    }

    pub fn parse(spec: &str) -> std::result::Result<HashMap<String, Action>, String> {
        let mut armed = HashMap::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, action) = item
                .split_once('=')
                .ok_or_else(|| format!("failpoint {item:?}: expected NAME=error|kill"))?;
            if !super::ALL.contains(&name) {
                return Err(format!("no failpoint is named {name:?}"));
            }
            let action = match action {
                "error" => Action::Error,
                "kill" => Action::Kill,
                other => return Err(format!("failpoint {name}: unknown action {other:?}")),
            };
            armed.insert(name.to_owned(), action);
        }
        Ok(armed)
    }

    fn armed() -> &'static HashMap<String, Action> {
        static ARMED: OnceLock<HashMap<String, Action>> = OnceLock::new();
        ARMED.get_or_init(|| {
            let spec = std::env::var("CRIUS_FAILPOINTS").unwrap_or_default();
            match parse(&spec) {
                Ok(armed) => {
                    if !armed.is_empty() {
                        tracing::warn!(failpoints = %spec, "failpoints armed");
                    }
                    armed
                }
                Err(e) => {
                    // A test that misspells a failpoint must not pass by testing nothing.
                    eprintln!("crius: CRIUS_FAILPOINTS: {e}");
                    std::process::exit(2);
                }
            }
        })
    }

    /// Checks the failpoints at start, so a bad `CRIUS_FAILPOINTS` stops crius at once.
    pub fn init() {
        armed();
    }

    pub fn hit(name: &'static str) -> Result<()> {
        match armed().get(name) {
            None => Ok(()),
            Some(Action::Error) => Err(Error::Internal(format!("failpoint {name}"))),
            Some(Action::Kill) => {
                tracing::warn!(failpoint = name, "failpoint: killing crius");
                let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::SIGKILL);
                // SIGKILL to oneself is delivered before kill(2) returns; this is not reached.
                std::process::abort()
            }
        }
    }
}

/// Passes the failpoint `name` (one of [`ALL`]): fails or kills crius when it is armed.
#[cfg(feature = "failpoints")]
pub fn hit(name: &'static str) -> Result<()> {
    armed::hit(name)
}

/// Passes the failpoint `name`: nothing happens in a build without the `failpoints` feature.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &'static str) -> Result<()> {
    Ok(())
}

/// Reads `CRIUS_FAILPOINTS` at start (a build with the feature refuses a bad one).
pub fn init() {
    #[cfg(feature = "failpoints")]
    armed::init();
}

/// Whether this build has failpoints (`crius version` says so).
pub const ENABLED: bool = cfg!(feature = "failpoints");

#[cfg(all(test, feature = "failpoints"))]
mod tests {
    use super::armed::{parse, Action};

    #[test]
    fn parse_takes_known_names_and_actions_only() {
        let armed = parse("sandbox.netns=error, container.backend=kill").ok();
        assert_eq!(
            armed.as_ref().and_then(|a| a.get("container.backend")),
            Some(&Action::Kill)
        );
        assert!(parse("sandbox.nope=error").is_err());
        assert!(parse("sandbox.files=explode").is_err());
        assert!(parse("sandbox.files").is_err());
        assert_eq!(parse("").map(|a| a.len()), Ok(0));
    }
}

#[cfg(test)]
mod source_tests {
    /// Every listed failpoint is placed in the code exactly once, and every placed one is
    /// listed (the fault test drives [`super::ALL`]).
    #[test]
    fn every_failpoint_is_placed_once() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut sources = String::new();
        for file in ["sandbox/mod.rs", "container/mod.rs"] {
            sources.push_str(&std::fs::read_to_string(root.join(file)).unwrap_or_default());
        }
        for name in super::ALL {
            let placed = sources
                .matches(&format!("failpoint::hit(\"{name}\")"))
                .count();
            assert_eq!(placed, 1, "failpoint {name} is placed {placed} times");
        }
        let total = sources.matches("failpoint::hit(\"").count();
        assert_eq!(
            total,
            super::ALL.len(),
            "a placed failpoint is not listed in ALL"
        );
    }
}
