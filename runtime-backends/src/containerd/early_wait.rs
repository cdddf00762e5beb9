//! Waits sent for exec'd processes before they start.
//!
//! An exec is three calls in a row (Exec, Start, Wait); the Wait can go out right after the
//! Exec, while the Start runs, so the exit arrives without a round trip of its own after the
//! start. The first `wait` for the process takes the answer; a `delete_exec` drops one that
//! nobody took.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::task::JoinHandle;

use crate::{BackendError, Result, TaskExit};

/// A Wait call in flight.
type Waiting = JoinHandle<Result<TaskExit>>;

/// The early waits in flight, by container id and exec id.
#[derive(Default)]
pub(super) struct EarlyWaits(Mutex<HashMap<(String, String), Waiting>>);

impl EarlyWaits {
    /// Keeps `wait`, the Wait call for `exec_id` of container `id`, running.
    pub fn put(&self, id: &str, exec_id: &str, wait: JoinHandle<Result<TaskExit>>) {
        if let Ok(mut waits) = self.0.lock() {
            if let Some(replaced) = waits.insert((id.to_owned(), exec_id.to_owned()), wait) {
                replaced.abort();
            }
        }
    }

    /// The early wait for `exec_id` of container `id`, if one is in flight; it is taken.
    pub fn take(&self, id: &str, exec_id: &str) -> Option<JoinHandle<Result<TaskExit>>> {
        self.0
            .lock()
            .ok()
            .and_then(|mut waits| waits.remove(&(id.to_owned(), exec_id.to_owned())))
    }

    /// Stops the early wait for `exec_id` of container `id`, if nobody took it.
    pub fn drop_one(&self, id: &str, exec_id: &str) {
        if let Some(wait) = self.take(id, exec_id) {
            wait.abort();
        }
    }
}

/// The answer of an early wait's task.
pub(super) async fn answer(wait: JoinHandle<Result<TaskExit>>) -> Result<TaskExit> {
    wait.await.unwrap_or_else(|e| {
        Err(BackendError::Engine {
            engine: super::ENGINE,
            message: format!("waiting for an exec'd process: {e}"),
        })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn exit(code: u32) -> Result<TaskExit> {
        Ok(TaskExit {
            pid: 1,
            exit_code: code,
            exited_at_nanos: 2,
        })
    }

    #[tokio::test]
    async fn the_first_wait_takes_the_early_answer() {
        let waits = EarlyWaits::default();
        waits.put("c1", "e1", tokio::spawn(async { exit(3) }));
        assert!(waits.take("c1", "e2").is_none(), "another exec has none");
        let taken = waits.take("c1", "e1").unwrap();
        assert_eq!(answer(taken).await.unwrap().exit_code, 3);
        assert!(waits.take("c1", "e1").is_none(), "taken once");
    }

    #[tokio::test]
    async fn a_wait_nobody_took_is_stopped_at_the_deletion() {
        let waits = EarlyWaits::default();
        let (_keep, never) = tokio::sync::oneshot::channel::<()>();
        let pending = tokio::spawn(async move {
            let _ = never.await;
            exit(0)
        });
        let aborted = pending.abort_handle();
        waits.put("c1", "e1", pending);
        waits.drop_one("c1", "e1");
        for _ in 0..1000 {
            if aborted.is_finished() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(aborted.is_finished(), "the wait was aborted");
        assert!(waits.take("c1", "e1").is_none());
    }

    #[tokio::test]
    async fn an_aborted_wait_answers_an_error() {
        let waits = EarlyWaits::default();
        let (_keep, never) = tokio::sync::oneshot::channel::<()>();
        waits.put(
            "c1",
            "e1",
            tokio::spawn(async move {
                let _ = never.await;
                exit(0)
            }),
        );
        let taken = waits.take("c1", "e1").unwrap();
        taken.abort();
        assert!(answer(taken).await.is_err());
    }
}
