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
                io_dir: self.container_io_dir(&container_id),
            })
            .await?;
        let stdout = tokio::spawn(CaptureBuf::read_from(io.stdout, EXEC_SYNC_OUTPUT_CAP));
        let stderr = tokio::spawn(CaptureBuf::read_from(io.stderr, EXEC_SYNC_OUTPUT_CAP));
        let waited = if timeout.is_zero() {
            Ok(self.backend.wait(&container_id, &process_id).await)
        } else {
            tokio::time::timeout(timeout, self.backend.wait(&container_id, &process_id)).await
        };
        let exit = match waited {
            Ok(exit) => exit,
            Err(_) => {
                let _ = self
                    .backend
                    .kill_exec(&container_id, &exec_id, libc::SIGKILL as u32)
                    .await;
                let _ = self.backend.wait(&container_id, &process_id).await;
                let _ = self.backend.delete_exec(&container_id, &exec_id).await;
                stdout.abort();
                stderr.abort();
                return Err(Error::DeadlineExceeded(format!(
                    "command in container {container_id:?} timed out after {}s and was killed",
                    timeout.as_secs()
                )));
            }
        };
        let cleanup = self.backend.delete_exec(&container_id, &exec_id).await;
        let exit = exit?;
        cleanup?;
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
