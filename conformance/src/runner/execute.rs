//! Runs cases, `parallel` at a time, each under its timeout, each followed by its cleanup.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::ctx::CaseState;
use super::{Case, Ctx, Outcome, Shared, Skipped};

/// How long a case's cleanup may take after the case itself ended.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Passed,
    Failed(String),
    Skipped(String),
}

impl Status {
    pub fn word(&self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed(_) => "failed",
            Status::Skipped(_) => "skipped",
        }
    }
}

#[derive(Clone, Debug)]
pub struct CaseResult {
    pub name: String,
    pub group: super::Group,
    pub status: Status,
    pub duration: Duration,
    /// Set when the reference failed a case whose failure is documented.
    pub note: Option<String>,
}

/// Runs `cases` (`index` = position in the full registry, used in names) and calls
/// `on_result` as each finishes. Returns results in completion order.
pub async fn run_cases(
    shared: Arc<Shared>,
    cases: Vec<(usize, Case)>,
    parallel: usize,
    mut on_result: impl FnMut(&CaseResult),
) -> Vec<CaseResult> {
    let mut results = Vec::with_capacity(cases.len());
    let mut running = futures::stream::iter(cases.into_iter().map(|(index, case)| {
        let shared = shared.clone();
        async move { run_one(shared, index, case).await }
    }))
    .buffer_unordered(parallel.max(1));
    while let Some(result) = running.next().await {
        on_result(&result);
        results.push(result);
    }
    results
}

async fn run_one(shared: Arc<Shared>, index: usize, case: Case) -> CaseResult {
    let lock = case.lock.map(|name| shared.lock(name));
    let _guard = match &lock {
        Some(lock) => Some(lock.lock().await),
        None => None,
    };
    let started = Instant::now();
    let state = Arc::new(CaseState::new(&shared, index));
    let ctx = Ctx::new(shared.clone(), state);

    // The body runs in its own task so a panic is a failure of this case only.
    let body = tokio::spawn(tokio::time::timeout(case.timeout, (case.run)(ctx.clone())));
    let mut status = match body.await {
        Ok(Ok(Ok(Outcome::Pass))) => Status::Passed,
        Ok(Ok(Ok(Outcome::Skip(reason)))) => Status::Skipped(reason),
        Ok(Ok(Err(error))) => match error.downcast_ref::<Skipped>() {
            Some(Skipped(reason)) => Status::Skipped(reason.clone()),
            None => Status::Failed(format!("{error:#}")),
        },
        Ok(Err(_)) => Status::Failed(format!("timed out after {:?}", case.timeout)),
        Err(join) => Status::Failed(format!("the case panicked: {join}")),
    };

    match tokio::time::timeout(CLEANUP_TIMEOUT, ctx.cleanup()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => status = with_cleanup_error(status, format!("{error:#}")),
        Err(_) => {
            status = with_cleanup_error(
                status,
                format!("cleanup timed out after {CLEANUP_TIMEOUT:?}"),
            )
        }
    }

    let mut note = None;
    if shared.settings.reference {
        if let (Status::Failed(message), Some(known)) = (&status, case.reference_known_failure) {
            note = Some(format!(
                "reference failure as documented ({known}): {message}"
            ));
            status = Status::Skipped(format!("known reference failure: {known}"));
        }
    }
    CaseResult {
        name: case.full_name(),
        group: case.group,
        status,
        duration: started.elapsed(),
        note,
    }
}

/// A cleanup failure fails a case that otherwise passed or skipped; a failed case keeps its
/// own message first.
fn with_cleanup_error(status: Status, cleanup: String) -> Status {
    match status {
        Status::Failed(message) => Status::Failed(format!("{message}; {cleanup}")),
        Status::Passed | Status::Skipped(_) => Status::Failed(cleanup),
    }
}
