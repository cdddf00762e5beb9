//! One way to undo a multi-step create: each step that leaves something behind registers a
//! named undo in a [`Cleanup`]; on failure the undos run in reverse order on a task of their
//! own, so they finish even when whoever awaited the create has gone away, and the error
//! returned carries both the failure and every undo that failed in turn.

use std::future::Future;

use futures::future::BoxFuture;

use crate::error::{Error, Result};

type Undo = Box<dyn FnOnce() -> BoxFuture<'static, Result<()>> + Send>;

/// The undos of a create in progress. [`Cleanup::finish`] settles it: success drops the
/// undos, failure runs them. A guard dropped unsettled (a panic, a cancelled future) runs
/// its undos on a task of their own too.
pub struct Cleanup {
    /// What is being created (`sandbox <id>`), for the log.
    what: String,
    undos: Vec<(&'static str, Undo)>,
}

impl Cleanup {
    pub fn new(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            undos: Vec::new(),
        }
    }

    /// Registers the undo of a step that has just begun to leave something behind (register
    /// before the step when it can fail half-way: every undo must accept "nothing to undo").
    pub fn push<F, Fut>(&mut self, step: &'static str, undo: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.undos.push((step, Box::new(move || Box::pin(undo()))));
    }

    /// Registers the removal of a container made in the engine as the undo of `step`
    /// (see [`remove_engine_container`]).
    pub fn push_engine_container(
        &mut self,
        step: &'static str,
        backend: std::sync::Arc<dyn runtime_backends::Backend>,
        id: &str,
    ) {
        let id = id.to_owned();
        self.push(step, move || async move {
            remove_engine_container(backend.as_ref(), &id).await
        });
    }

    /// The names of the registered undos, in the order they were registered.
    pub fn steps(&self) -> Vec<&'static str> {
        self.undos.iter().map(|(step, _)| *step).collect()
    }

    /// Success keeps everything; failure undoes every registered step (last first) and
    /// returns the failure, with the undos that failed too.
    pub async fn finish<T>(mut self, result: Result<T>) -> Result<T> {
        let cause = match result {
            Ok(value) => {
                self.undos.clear();
                return Ok(value);
            }
            Err(cause) => cause,
        };
        tracing::warn!(what = %self.what, error = %cause, "create failed; undoing its steps");
        let undos = std::mem::take(&mut self.undos);
        let what = self.what.clone();
        // A task of its own: the undos run to the end even if this future is dropped.
        let failures = match tokio::spawn(undo_all(what, undos)).await {
            Ok(failures) => failures,
            Err(join) => vec![format!("the cleanup task ended early: {join}")],
        };
        if failures.is_empty() {
            Err(cause)
        } else {
            Err(Error::CleanupFailed {
                cause: Box::new(cause),
                cleanup: failures,
            })
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.undos.is_empty() {
            return;
        }
        let undos = std::mem::take(&mut self.undos);
        let what = self.what.clone();
        tracing::warn!(what = %what, "create abandoned half-way; undoing its steps");
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(undo_all(what, undos));
            }
            Err(_) => tracing::error!(
                what = %what,
                "create abandoned outside the runtime; recovery removes what it left"
            ),
        }
    }
}

/// Runs `undos` last first; returns `step: error` for each that failed.
async fn undo_all(what: String, mut undos: Vec<(&'static str, Undo)>) -> Vec<String> {
    let mut failures = Vec::new();
    while let Some((step, undo)) = undos.pop() {
        if let Err(e) = undo().await {
            tracing::error!(what = %what, step, error = %e, "could not undo a step");
            failures.push(format!("{step}: {e}"));
        }
    }
    failures
}

/// Removes a directory and everything in it; one already gone is fine.
pub fn remove_dir(dir: &std::path::Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::internal(format!("removing {}", dir.display()), e))
        }
        _ => Ok(()),
    }
}

/// The undo of a container made in the engine: remove it, gone already being fine. An
/// engine that is down (containerd restarting) is asked again for a while, so a create cut
/// short by the outage does not leave its container (and shim, cgroups, snapshot) behind
/// until the next restart's recovery.
pub async fn remove_engine_container(
    backend: &dyn runtime_backends::Backend,
    id: &str,
) -> Result<()> {
    let mut wait = std::time::Duration::from_millis(250);
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match backend.remove_container(id).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e @ runtime_backends::BackendError::Unavailable { .. })
                if std::time::Instant::now() + wait < give_up =>
            {
                tracing::debug!(container = id, error = %e, "engine down; removing again soon");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(4));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A cleanup whose undos append their names to `log`; `failing` undos fail.
    fn recording(log: &Arc<Mutex<Vec<&'static str>>>, steps: &[(&'static str, bool)]) -> Cleanup {
        let mut cleanup = Cleanup::new("test object");
        for &(step, fails) in steps {
            let log = log.clone();
            cleanup.push(step, move || async move {
                log.lock()
                    .map_err(|e| Error::Internal(e.to_string()))?
                    .push(step);
                if fails {
                    Err(Error::Internal(format!("{step} broke")))
                } else {
                    Ok(())
                }
            });
        }
        cleanup
    }

    fn logged(log: &Arc<Mutex<Vec<&'static str>>>) -> Vec<&'static str> {
        log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    #[tokio::test]
    async fn success_undoes_nothing() {
        let log = Arc::default();
        let cleanup = recording(&log, &[("dirs", false), ("network", false)]);
        assert_eq!(cleanup.finish(Ok(7)).await.ok(), Some(7));
        tokio::task::yield_now().await;
        assert!(logged(&log).is_empty());
    }

    #[tokio::test]
    async fn failure_undoes_every_step_last_first_and_keeps_the_cause() {
        let log = Arc::default();
        let cleanup = recording(
            &log,
            &[("dirs", false), ("network", false), ("pause", false)],
        );
        assert_eq!(cleanup.steps(), vec!["dirs", "network", "pause"]);
        let error = cleanup
            .finish::<()>(Err(Error::NotFound("image x not found".into())))
            .await
            .expect_err("the failure is returned");
        assert_eq!(logged(&log), vec!["pause", "network", "dirs"]);
        assert!(matches!(error, Error::NotFound(_)), "{error:?}");
    }

    #[tokio::test]
    async fn a_failed_undo_is_reported_with_the_cause_and_the_rest_still_run() {
        let log = Arc::default();
        let cleanup = recording(
            &log,
            &[("dirs", false), ("network", true), ("pause", false)],
        );
        let error = cleanup
            .finish::<()>(Err(Error::FailedPrecondition("pause died".into())))
            .await
            .expect_err("the failure is returned");
        assert_eq!(logged(&log), vec!["pause", "network", "dirs"]);
        assert_eq!(error.code(), tonic::Code::FailedPrecondition);
        let message = error.to_string();
        assert!(message.contains("pause died"), "{message}");
        assert!(message.contains("network: network broke"), "{message}");
    }

    #[tokio::test]
    async fn undos_finish_when_the_caller_goes_away() {
        let log: Arc<Mutex<Vec<&'static str>>> = Arc::default();
        let (entered, wait_entered) = tokio::sync::oneshot::channel::<()>();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let mut cleanup = Cleanup::new("test object");
        let slow_log = log.clone();
        cleanup.push("slow", move || async move {
            let _ = entered.send(());
            let _ = released.await;
            slow_log
                .lock()
                .map_err(|e| Error::Internal(e.to_string()))?
                .push("slow");
            Ok(())
        });
        let caller = tokio::spawn(cleanup.finish::<()>(Err(Error::Internal("x".into()))));
        let _ = wait_entered.await;
        caller.abort();
        let _ = caller.await;
        let _ = release.send(());
        for _ in 0..100 {
            if !logged(&log).is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(logged(&log), vec!["slow"]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_engine_container_is_removed_again_while_the_engine_is_down() {
        use runtime_backends::fake::FakeBackend;
        let fake = Arc::new(FakeBackend::default());
        fake.failing
            .lock()
            .map(|mut f| f.push("remove_container".into()))
            .ok();
        let healer = fake.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            healer.failing.lock().map(|mut f| f.clear()).ok();
        });
        let removed = remove_engine_container(fake.as_ref(), "c1").await;
        assert!(removed.is_ok(), "{removed:?}");
        let tries = fake
            .calls()
            .iter()
            .filter(|c| *c == "remove_container(c1)")
            .count();
        assert!(tries >= 2, "removed after {tries} tries");
    }

    #[tokio::test]
    async fn a_guard_dropped_unsettled_undoes_its_steps() {
        let log = Arc::default();
        drop(recording(&log, &[("dirs", false), ("network", false)]));
        for _ in 0..100 {
            if logged(&log).len() == 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(logged(&log), vec!["network", "dirs"]);
    }
}
