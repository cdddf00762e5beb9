//! Backend events keep the store true (DESIGN.md decision 3).

use std::sync::Arc;

use runtime_backends::{BackendEvent, ProcessId, TaskExit, TaskStatus};

use crate::runtime::Crius;
use crate::store::ContainerState;

/// Apply backend events to the store until crius stops.
pub fn spawn(crius: Arc<Crius>) {
    let mut events = crius.backend.subscribe();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let Err(e) = apply(&crius, event.clone()).await {
                tracing::warn!(?event, error = %e, "could not apply backend event");
            }
        }
    });
}

async fn apply(crius: &Arc<Crius>, event: BackendEvent) -> crate::error::Result<()> {
    match event {
        BackendEvent::TaskExit {
            container_id,
            process: ProcessId::Init,
            exit,
        } => {
            // Each exit is handled under the object's lifecycle lock, in its own task: a Stop
            // that is waiting for the same exit finishes first (and the exit is recorded once),
            // and a long Stop never holds up the events of other containers.
            if let Some(container) = crius
                .store
                .containers
                .get(&container_id)
                .filter(|c| c.meta.id == container_id)
            {
                let crius = crius.clone();
                tokio::spawn(async move {
                    let _op = container.op.lock().await;
                    tracing::debug!(container = %container_id, code = exit.exit_code, "container exited");
                    if let Err(e) = crius.handle_container_exit(&container, exit).await {
                        tracing::warn!(container = %container_id, error = %e, "could not record exit");
                    }
                });
            } else if let Some(sandbox) = crius
                .store
                .sandboxes
                .get(&container_id)
                .filter(|s| s.meta.id == container_id)
            {
                let crius = crius.clone();
                tokio::spawn(async move {
                    let _op = sandbox.op.lock().await;
                    if sandbox.status().state == crate::store::SandboxState::Ready {
                        tracing::info!(sandbox = %container_id, "pause process exited");
                        let _ = crius.backend.delete_task(&container_id).await;
                        if let Err(e) = crius.mark_sandbox_stopped(&sandbox).await {
                            tracing::warn!(sandbox = %container_id, error = %e, "could not record pause exit");
                        }
                    }
                });
            }
        }
        BackendEvent::TaskExit { .. } | BackendEvent::TaskStart { .. } => {}
        BackendEvent::TaskOom { container_id } => {
            if let Some(container) = crius.store.containers.get(&container_id) {
                if container.meta.id == container_id {
                    tracing::info!(container = %container_id, "container hit its memory limit (OOM)");
                    // Recorded with the rest of the status: a restart must not forget that
                    // the OOM killer ended the container.
                    crius
                        .update_container(&container, |s| {
                            s.oom_killed = true;
                            // The exit may have been recorded first: the reason follows the OOM.
                            if s.state == ContainerState::Exited && s.exit_code != 0 {
                                s.reason = crate::container::REASON_OOM_KILLED.to_string();
                            }
                        })
                        .await?;
                }
            }
        }
        BackendEvent::Reconnected => reconcile(crius).await?,
    }
    Ok(())
}

/// Compare every running object with the backend's view and record exits missed while the
/// event stream was down.
pub async fn reconcile(crius: &Arc<Crius>) -> crate::error::Result<()> {
    tracing::info!("reconciling the store with the backend");
    for container in crius.store.containers.snapshot().values() {
        if container.status().state != ContainerState::Running {
            continue;
        }
        match crius.backend.task_state(&container.meta.id).await? {
            Some(task) if task.status != TaskStatus::Stopped => {}
            Some(task) => {
                let exit = TaskExit {
                    pid: task.pid,
                    exit_code: task.exit_code,
                    exited_at_nanos: task.exited_at_nanos,
                };
                crius.handle_container_exit(container, exit).await?;
            }
            None => {
                let exit = TaskExit {
                    pid: 0,
                    exit_code: 255,
                    exited_at_nanos: 0,
                };
                crius.handle_container_exit(container, exit).await?;
            }
        }
    }
    for sandbox in crius.store.sandboxes.snapshot().values() {
        if sandbox.status().state != crate::store::SandboxState::Ready {
            continue;
        }
        let alive = matches!(crius.backend.task_state(&sandbox.meta.id).await?, Some(t) if t.status == TaskStatus::Running);
        if !alive {
            let _ = crius.backend.delete_task(&sandbox.meta.id).await;
            crius.mark_sandbox_stopped(sandbox).await?;
        }
    }
    Ok(())
}
