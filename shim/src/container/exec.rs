//! ExecSync: run a command in a running container and collect its output.

use std::time::Duration;

use runtime_backends::{ExecRequest, ProcessId};

use crate::error::{Error, Result};
use crate::logs::{CaptureBuf, EXEC_SYNC_OUTPUT_CAP};
use crate::runtime::Crius;
use crate::store::ContainerState;

/// Room left in the 16 MiB response for everything but the output bytes.
const EXEC_SYNC_MESSAGE_SLACK: usize = 4096;

pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

impl Crius {
    /// ExecSync. `timeout` zero means no timeout; when it passes, the process is killed and
    /// the call answers DeadlineExceeded.
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<ExecOutput> {
        if cmd.is_empty() {
            return Err(Error::InvalidArgument(
                "exec: cmd must not be empty".to_string(),
            ));
        }
        let begun = std::time::Instant::now();
        let container = self.container(id)?;
        if container.status().state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {:?} is not running; cannot exec in it",
                container.meta.id
            )));
        }
        let process = super::spec::exec_process(&container.meta.process, cmd, false)?;
        let exec_id = format!("exec-{:016x}", rand::random::<u64>());
        let process_id = ProcessId::Exec(exec_id.clone());
        let container_id = container.meta.id.clone();
        let io = self
            .backend
            .exec(ExecRequest {
                container_id: container_id.clone(),
                exec_id: exec_id.clone(),
                process,
                stdin: false,
                terminal: false,
                io_dir: self.container_io_dir(&container_id),
            })
            .await?;
        let started_at = begun.elapsed();
        // From here on the process is deleted from the backend however this call ends.
        let mut cleanup = ExecCleanup {
            backend: self.backend.clone(),
            container_id: container_id.clone(),
            exec_id: exec_id.clone(),
            state: ExecState::Unknown,
        };
        let stdout = tokio::spawn(CaptureBuf::read_from(io.stdout, EXEC_SYNC_OUTPUT_CAP));
        let stderr = tokio::spawn(CaptureBuf::read_from(io.stderr, EXEC_SYNC_OUTPUT_CAP));
        let waited = if timeout.is_zero() {
            Ok(self.backend.wait(&container_id, &process_id).await)
        } else {
            tokio::time::timeout(timeout, self.backend.wait(&container_id, &process_id)).await
        };
        let exit = match waited {
            Ok(exit) => exit?,
            Err(_) => {
                // Killed before the answer, as containerd's CRI does; waiting for the exit
                // and deleting the process are left to the cleanup.
                if let Err(e) = self
                    .backend
                    .kill_exec(&container_id, &exec_id, libc::SIGKILL as u32)
                    .await
                {
                    tracing::debug!(container = %container_id, %exec_id, error = %e, "killing a timed-out exec");
                }
                cleanup.state = ExecState::Killed;
                stdout.abort();
                stderr.abort();
                return Err(Error::DeadlineExceeded(format!(
                    "command in container {container_id:?} timed out after {}s and was killed",
                    timeout.as_secs()
                )));
            }
        };
        // The answer does not wait for the process's deletion (kubelet's probes wait on it).
        cleanup.state = ExecState::Exited;
        let exited_at = begun.elapsed();
        let collect =
            |joined: std::result::Result<std::io::Result<CaptureBuf>, tokio::task::JoinError>| {
                joined
                    .map_err(|e| Error::internal("exec output", e))?
                    .map(CaptureBuf::into_bytes)
                    .map_err(|e| Error::internal("reading exec output", e))
            };
        // Output ends when the process and its children closed the pipes; bound the wait.
        let out = tokio::time::timeout(Duration::from_secs(10), stdout).await;
        let err = tokio::time::timeout(Duration::from_secs(10), stderr).await;
        let mut stdout = out
            .map_err(|_| Error::internal("exec output", "stdout did not close"))
            .and_then(collect)?;
        let mut stderr = err
            .map_err(|_| Error::internal("exec output", "stderr did not close"))
            .and_then(collect)?;
        tracing::debug!(
            container = %container_id,
            %exec_id,
            start_us = started_at.as_micros(),
            exit_us = (exited_at - started_at).as_micros(),
            output_us = (begun.elapsed() - exited_at).as_micros(),
            "exec finished"
        );
        // Both streams travel in one gRPC message: keep their sum under its limit.
        let budget = EXEC_SYNC_OUTPUT_CAP - EXEC_SYNC_MESSAGE_SLACK;
        if stdout.len() + stderr.len() > budget {
            stderr.truncate(budget.saturating_sub(stdout.len().min(budget)));
            stdout.truncate(budget - stderr.len());
        }
        Ok(ExecOutput {
            stdout,
            stderr,
            exit_code: i32::try_from(exit.exit_code).unwrap_or(i32::MAX),
        })
    }
}

/// How far an exec'd process is known to have got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExecState {
    /// Maybe still running (the call failed or was dropped while waiting).
    Unknown,
    /// Sent SIGKILL.
    Killed,
    /// Its exit was seen.
    Exited,
}

/// How long the cleanup waits for a killed process to exit before deleting it anyway.
const KILLED_EXIT_WAIT: Duration = Duration::from_secs(10);

/// Deletes an exec'd process from the backend when dropped, on a task of its own, killing it
/// first unless it exited: the answer does not wait for the deletion, and an ExecSync whose
/// caller went away, or that failed half-way, leaves no process behind.
struct ExecCleanup {
    backend: std::sync::Arc<dyn runtime_backends::Backend>,
    container_id: String,
    exec_id: String,
    state: ExecState,
}

impl Drop for ExecCleanup {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(container = %self.container_id, exec_id = %self.exec_id, "no runtime left to delete an exec'd process");
            return;
        };
        let backend = self.backend.clone();
        let container_id = std::mem::take(&mut self.container_id);
        let exec_id = std::mem::take(&mut self.exec_id);
        let state = self.state;
        runtime.spawn(async move {
            if state == ExecState::Unknown {
                if let Err(e) = backend
                    .kill_exec(&container_id, &exec_id, libc::SIGKILL as u32)
                    .await
                {
                    tracing::debug!(container = %container_id, %exec_id, error = %e, "killing an abandoned exec");
                }
            }
            if state != ExecState::Exited {
                let process = ProcessId::Exec(exec_id.clone());
                let _ =
                    tokio::time::timeout(KILLED_EXIT_WAIT, backend.wait(&container_id, &process))
                        .await;
            }
            if let Err(e) = backend.delete_exec(&container_id, &exec_id).await {
                tracing::warn!(container = %container_id, %exec_id, error = %e, "could not delete a finished exec");
            }
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use runtime_backends::fake::FakeBackend;

    use super::*;

    /// The backend calls made once an [`ExecCleanup`] in `state` was dropped and its task
    /// ran to the deletion.
    async fn calls_after_cleanup(state: ExecState) -> Vec<String> {
        let backend = Arc::new(FakeBackend::default());
        drop(ExecCleanup {
            backend: backend.clone(),
            container_id: "c1".into(),
            exec_id: "exec-1".into(),
            state,
        });
        for _ in 0..5000 {
            if backend.calls().iter().any(|c| c.starts_with("delete_exec")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        backend.calls()
    }

    #[tokio::test]
    async fn an_exec_that_exited_is_only_deleted() {
        assert_eq!(
            calls_after_cleanup(ExecState::Exited).await,
            ["delete_exec(c1,exec-1)"]
        );
    }

    #[tokio::test]
    async fn a_killed_exec_is_waited_for_then_deleted() {
        assert_eq!(
            calls_after_cleanup(ExecState::Killed).await,
            ["wait(c1,exec-1)", "delete_exec(c1,exec-1)"]
        );
    }

    #[tokio::test]
    async fn an_abandoned_exec_is_killed_waited_for_and_deleted() {
        assert_eq!(
            calls_after_cleanup(ExecState::Unknown).await,
            [
                "kill_exec(c1,exec-1,9)",
                "wait(c1,exec-1)",
                "delete_exec(c1,exec-1)"
            ]
        );
    }
}
