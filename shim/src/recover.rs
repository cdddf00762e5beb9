//! Rebuild the store on start (DESIGN.md decision 4) and remove what a crash left
//! half-made: backend objects without a record, records without a backend object.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use runtime_backends::{TaskExit, TaskStatus, LABEL_KIND};

use crate::container::ContainerRecordFile;
use crate::error::Result;
use crate::logs::LogFile;
use crate::runtime::{Crius, CONTAINERS, CONTAINER_SPECS, SANDBOXES};
use crate::sandbox::SandboxRecord;
use crate::store::{Container, ContainerState, Sandbox, SandboxState};

pub async fn recover(crius: &Arc<Crius>) -> Result<()> {
    let started = std::time::Instant::now();
    let in_backend: HashMap<String, runtime_backends::ContainerRecord> = crius
        .backend
        .list_containers()
        .await?
        .into_iter()
        .map(|c| (c.id.clone(), c))
        .collect();
    let mut known = std::collections::HashSet::new();

    for (id, record) in crius.records.read_all::<SandboxRecord>(SANDBOXES) {
        if !in_backend.contains_key(&id) {
            tracing::warn!(sandbox = %id, "record without a pause container: removing it");
            crate::sandbox::files_cleanup(crius, &id);
            crius.records.remove(SANDBOXES, &id)?;
            continue;
        }
        known.insert(id.clone());
        let sandbox = Arc::new(Sandbox::new(record.meta, record.status));
        if let Err(e) = crius.store.names.reserve(&sandbox.meta.name, &id) {
            tracing::warn!(sandbox = %id, error = %e, "duplicate sandbox name in records");
        }
        // In the store first: a status change is written only for a sandbox the store holds.
        crius.store.sandboxes.insert(id.clone(), sandbox.clone());
        if sandbox.status().state == SandboxState::Ready {
            let alive = matches!(crius.backend.task_state(&id).await?, Some(t) if t.status == TaskStatus::Running);
            if alive {
                if let Some(io) = crius
                    .backend
                    .reattach_task_io(&id, &crius.sandbox_state(&id).join("io"))
                    .await?
                {
                    crate::sandbox::drain(io);
                }
            } else {
                let _ = crius.backend.delete_task(&id).await;
                crius.mark_sandbox_stopped(&sandbox).await?;
            }
        }
    }

    for (id, record) in crius.records.read_all::<ContainerRecordFile>(CONTAINERS) {
        if !in_backend.contains_key(&id)
            || crius.store.sandboxes.get(&record.meta.sandbox_id).is_none()
        {
            tracing::warn!(container = %id, "record without its container or sandbox: removing it");
            let _ = crius.backend.remove_container(&id).await;
            let _ = std::fs::remove_dir_all(crius.container_io_dir(&id));
            crius.records.remove(CONTAINERS, &id)?;
            crius.records.remove(CONTAINER_SPECS, &id)?;
            continue;
        }
        known.insert(id.clone());
        let container = Arc::new(Container::new(record.meta, record.status));
        if let Err(e) = crius.store.names.reserve(&container.meta.name, &id) {
            tracing::warn!(container = %id, error = %e, "duplicate container name in records");
        }
        crius.store.containers.insert(id.clone(), container.clone());
        if container.status().state == ContainerState::Running {
            recover_running(crius, &container).await?;
        }
    }

    // Specs of containers without a record: a crash between writing the two in
    // CreateContainer, or between removing them in RemoveContainer.
    let orphaned = crius.records.sweep(CONTAINER_SPECS, |id| {
        crius.store.containers.get_exact(id).is_some()
    });
    if orphaned > 0 {
        tracing::warn!(
            count = orphaned,
            "removed container specs without a container"
        );
    }

    // Backend objects crius labelled but has no record of: a create cut short by a crash.
    for (id, record) in &in_backend {
        if known.contains(id) {
            continue;
        }
        let kind = record
            .labels
            .get(LABEL_KIND)
            .map(String::as_str)
            .unwrap_or("object");
        tracing::warn!(id = %id, kind, "removing a half-created {kind} left by a crash");
        crius.backend.remove_container(id).await?;
        if kind == "sandbox" {
            crate::sandbox::files_cleanup(crius, id);
        } else {
            let _ = std::fs::remove_dir_all(crius.container_io_dir(id));
        }
    }
    release_orphan_networks(crius).await;
    remove_orphan_dirs(crius, &crius.config.root.join(SANDBOXES));
    remove_orphan_dirs(crius, &crius.config.state.join(SANDBOXES));
    remove_orphan_container_dirs(crius);
    let elapsed = started.elapsed();
    crate::metrics::store_rebuilt(elapsed);
    tracing::info!(
        sandboxes = crius.store.sandboxes.len(),
        containers = crius.store.containers.len(),
        elapsed_ms = elapsed.as_millis() as u64,
        "recovered state"
    );
    Ok(())
}

async fn recover_running(crius: &Arc<Crius>, container: &Arc<Container>) -> Result<()> {
    let id = container.meta.id.clone();
    match crius.backend.task_state(&id).await? {
        Some(task) if task.status == TaskStatus::Running || task.status == TaskStatus::Paused => {
            let io = crius
                .backend
                .reattach_task_io(&id, &crius.container_io_dir(&id))
                .await?;
            if let Some(io) = io {
                let log = if container.meta.log_path.is_empty() {
                    None
                } else {
                    LogFile::open(&container.meta.log_path).ok().map(Arc::new)
                };
                crius.attach_logs(container, io, log);
            }
        }
        Some(task) => {
            // It exited while crius was down; its output still waits in the FIFOs.
            if let Some(io) = crius
                .backend
                .reattach_task_io(&id, &crius.container_io_dir(&id))
                .await?
            {
                let log = if container.meta.log_path.is_empty() {
                    None
                } else {
                    LogFile::open(&container.meta.log_path).ok().map(Arc::new)
                };
                crius.attach_logs(container, io, log);
            }
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
    Ok(())
}

/// Network namespaces and CNI attachments of sandboxes crius has no record of: a crash
/// between CNI ADD and the sandbox record, or during a rollback. DEL releases their IPs and
/// rules; a DEL that fails keeps them for the next start.
async fn release_orphan_networks(crius: &Crius) {
    crius.network.remove_temporary_records();
    for id in crius.network.attached_ids() {
        if crius
            .store
            .sandboxes
            .get(&id)
            .is_some_and(|s| s.meta.id == id)
        {
            continue;
        }
        tracing::warn!(sandbox = %id, "releasing the network of a sandbox that no longer exists");
        if let Err(e) = crius.network.teardown(&id).await {
            tracing::error!(sandbox = %id, error = %e, "could not release an orphaned pod network");
        }
    }
}

/// Sandbox directories whose sandbox is not in the store (a crash between making the files
/// and persisting the record).
fn remove_orphan_dirs(crius: &Crius, dir: &Path) {
    for (id, path) in orphan_dirs(dir, |id| crius.store.sandboxes.get_exact(id).is_some()) {
        tracing::warn!(dir = %path.display(), "removing files of a sandbox that no longer exists");
        crate::sandbox::files_cleanup(crius, &id);
    }
}

/// I/O directories of containers that are not in the store (a crash between making the
/// FIFOs and creating the container, or a removal cut short).
fn remove_orphan_container_dirs(crius: &Crius) {
    let dir = crius.config.state.join(CONTAINERS);
    for (_, path) in orphan_dirs(&dir, |id| crius.store.containers.get_exact(id).is_some()) {
        tracing::warn!(dir = %path.display(), "removing the I/O directory of a container that no longer exists");
        if let Err(e) = std::fs::remove_dir_all(&path) {
            tracing::error!(dir = %path.display(), error = %e, "cannot remove an orphaned container directory");
        }
    }
}

/// The subdirectories of `dir` whose name `known` does not accept, as (name, path).
fn orphan_dirs(dir: &Path, known: impl Fn(&str) -> bool) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
        .filter_map(|path| {
            let id = path.file_name()?.to_str()?.to_string();
            (!known(&id)).then_some((id, path))
        })
        .collect()
}
