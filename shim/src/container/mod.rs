//! Containers: create, start, stop, remove, exit handling and the log pipeline.

mod exec;
#[cfg(test)]
mod golden;
pub mod spec;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use runtime_backends::{
    CgroupRequest, CreateContainer, ProcessId, TaskExit, TaskIo, TaskStatus, TaskStdio, LABEL_KIND,
    LABEL_SANDBOX_ID,
};

use crate::cgroups::CgroupDriver;
use crate::cleanup::Cleanup;
use crate::domain::{ContainerConfig, Resources};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::logs::{spawn_tapped_copier, LogFile, OutputTap, Stream};
use crate::pod_events::EventKind;
use crate::runtime::{new_id, now_nanos, Crius, CONTAINERS, CONTAINER_SPECS};
use crate::store::{Container, ContainerMeta, ContainerState, ContainerStatus, SandboxState};

/// What is persisted for a container.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct ContainerRecordFile {
    pub meta: ContainerMeta,
    pub status: ContainerStatus,
}

/// CRI reasons for a container that exited.
pub const REASON_COMPLETED: &str = "Completed";
pub const REASON_ERROR: &str = "Error";
pub const REASON_OOM_KILLED: &str = "OOMKilled";

fn reserved_name(config: &ContainerConfig, sandbox: &crate::domain::SandboxConfig) -> String {
    let p = &sandbox.metadata;
    format!(
        "{}_{}_{}_{}_{}",
        config.metadata.name, p.name, p.namespace, p.uid, config.metadata.attempt
    )
}

/// Resolve a signal name (`SIGTERM`, `TERM`, `15`) to its number.
pub fn parse_signal(name: &str) -> Option<i32> {
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    if let Ok(number) = name.parse::<i32>() {
        return Some(number);
    }
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

impl Crius {
    /// Writes the container's record; its status is taken at the call.
    pub(crate) fn persist_container(
        &self,
        container: &Container,
    ) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        // Numbered before the status is read (see `StateDir::ticket`).
        let ticket = self.records.ticket(CONTAINERS, &container.meta.id);
        ticket.write(&ContainerRecordFile {
            meta: container.meta.clone(),
            status: ContainerStatus::clone(&container.status()),
        })
    }

    /// A durable status change: applies `change` in memory and writes the record, in one
    /// call (the record is numbered before the status is read, so writes land in order).
    /// Once written, a start or a stop is published to GetContainerEvents. A container no
    /// longer in the store is changed in memory only.
    pub(crate) async fn update_container(
        &self,
        container: &Container,
        mut change: impl FnMut(&mut ContainerStatus),
    ) -> Result<Arc<ContainerStatus>> {
        let mut before = ContainerState::Unknown;
        let status = container.update(|s| {
            before = s.state;
            change(s);
        });
        // A change that lost the race with the container's removal (an exit reported while
        // RemoveContainer held the container) must not write its record back.
        if !self.store.containers.holds(&container.meta.id, container) {
            return Ok(status);
        }
        self.persist_container(container).await?;
        match (before, status.state) {
            (ContainerState::Created, ContainerState::Running) => {
                self.container_event(EventKind::Started, container);
            }
            (from, ContainerState::Exited) if from != ContainerState::Exited => {
                self.container_event(EventKind::Stopped, container);
            }
            _ => {}
        }
        Ok(status)
    }

    pub fn container(&self, id: &str) -> Result<Arc<Container>> {
        self.store
            .containers
            .get(id)
            .ok_or_else(|| Crius::not_found_container(id))
    }

    /// CreateContainer. The work runs detached from the caller (decision 5).
    pub async fn create_container(
        self: &Arc<Self>,
        sandbox_id: &str,
        config: ContainerConfig,
    ) -> Result<String> {
        let sandbox = self.sandbox(sandbox_id)?;
        if sandbox.status().state != SandboxState::Ready {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {:?} is not ready; cannot create container {:?} in it",
                sandbox.meta.id, config.metadata.name
            )));
        }
        let handler = self.runtime_handler(
            &sandbox.meta.config.runtime_handler,
            format_args!("CreateContainer: pod sandbox {:?}", sandbox.meta.id),
        )?;
        self.engine(handler).check_container(&config)?;
        let name = reserved_name(&config, &sandbox.meta.config);
        let crius = self.clone();
        self.store
            .names
            .create_once(&name, || {
                let id = new_id();
                crius.store.names.reserve(&name, &id)?;
                let (work_name, work_id, crius) = (name.clone(), id.clone(), crius.clone());
                Ok((id, async move {
                    let mut cleanup = Cleanup::new(format!("container {work_id}"));
                    let result = crius
                        .create_container_steps(
                            &work_id,
                            &work_name,
                            &sandbox,
                            config,
                            &mut cleanup,
                        )
                        .await;
                    let result = cleanup.finish(result).await;
                    if result.is_err() {
                        crius.store.names.release(&work_name, &work_id);
                    }
                    result.map(|()| work_id)
                }))
            })
            .await
    }

    async fn create_container_steps(
        &self,
        id: &str,
        name: &str,
        sandbox: &crate::store::Sandbox,
        config: ContainerConfig,
        cleanup: &mut Cleanup,
    ) -> Result<()> {
        let reference = runtime_backends::reference::normalize(&config.image)
            .map_err(|e| Error::InvalidArgument(format!("image {:?}: {e}", config.image)))?;
        let image = self
            .store
            .images
            .load()
            .find(&reference)
            .ok_or_else(|| Error::NotFound(format!("image {:?} not found", config.image)))?;
        let started = std::time::Instant::now();
        let user_files = self.image_user_files(&image.id).await?;
        let user_files_at = started.elapsed();
        let sandbox_cfg = &sandbox.meta.config;
        let log_path = if config.log_path.is_empty() || sandbox_cfg.log_directory.is_empty() {
            String::new()
        } else {
            Path::new(&sandbox_cfg.log_directory)
                .join(&config.log_path)
                .display()
                .to_string()
        };
        // A bind mount's missing host path is created as a directory, as containerd's CRI does
        // (kubelet relies on it for hostPath volumes of type DirectoryOrCreate).
        for mount in &config.mounts {
            let host = Path::new(&mount.host_path);
            if std::fs::symlink_metadata(host).is_err() {
                std::fs::create_dir_all(host).map_err(|e| {
                    Error::InvalidArgument(format!(
                        "mount host path {:?} cannot be created: {e}",
                        mount.host_path
                    ))
                })?;
            }
        }
        self.check_pid_target(&config)?;
        let cgroup = CgroupRequest {
            parent: self.cgroups.sandbox_parent(&sandbox_cfg.cgroup_parent)?,
            systemd: self.cgroups.is_systemd(),
        };
        let sandbox_files = PathBuf::from(&sandbox.meta.files_dir);
        let shm = self.sandbox_state(&sandbox.meta.id).join("shm");
        let request = spec::container_request(&spec::ContainerSpecInput {
            id,
            config: &config,
            image: &image.config,
            sandbox: sandbox_cfg,
            sandbox_id: &sandbox.meta.id,
            netns_path: sandbox.meta.netns_path.clone(),
            cgroup,
            resolv_conf: Some(sandbox_files.join("resolv.conf")),
            hostname: Some(sandbox_files.join("hostname")),
            hosts: Some(sandbox_files.join("hosts")),
            shm_path: shm.exists().then_some(shm),
            passwd: user_files.passwd.clone(),
            group: user_files.group.clone(),
            oom_score_adj_floor: self.oom_score_adj_floor,
            host: &self.host,
        })?;
        let stop_signal = config
            .stop_signal
            .as_deref()
            .and_then(parse_signal)
            .or_else(|| parse_signal(&image.config.stop_signal))
            .unwrap_or(libc::SIGTERM);
        let mut labels = HashMap::new();
        labels.insert(LABEL_KIND.to_string(), "container".to_string());
        labels.insert(LABEL_SANDBOX_ID.to_string(), sandbox.meta.id.clone());
        let handler = self.runtime_handler(
            &sandbox.meta.config.runtime_handler,
            format_args!("CreateContainer: pod sandbox {:?}", sandbox.meta.id),
        )?;
        // Pod annotations the handler's allow-list names reach its runtime (Kata and gVisor
        // read their settings there).
        let mut annotations = request.annotations;
        if let Some(runtime) = self.config.runtimes.get(handler) {
            for (key, value) in &sandbox.meta.config.annotations {
                if runtime.passes(key) {
                    annotations
                        .entry(key.clone())
                        .or_insert_with(|| value.clone());
                }
            }
        }
        let request = CreateContainer {
            image_id: image.id.clone(),
            image_chain_id: image.chain_id.clone(),
            labels,
            annotations,
            runtime_handler: handler.to_string(),
            ..request
        };
        // Exec'd processes start from a copy of the container's own.
        let process = runtime_backends::oci::render::process(&request)?;
        failpoint::hit("container.spec")?;
        let spec_at = started.elapsed();
        cleanup.push_engine_container("container", self.backend.clone(), id);
        let io_dir = self.container_io_dir(id);
        cleanup.push("I/O directory", move || async move {
            crate::cleanup::remove_dir(&io_dir)
        });
        let created = self.backend.create_container(request).await?;
        failpoint::hit("container.backend")?;
        let backend_at = started.elapsed();
        let resources = config.resources.clone();
        let meta = ContainerMeta {
            id: id.to_string(),
            name: name.to_string(),
            sandbox_id: sandbox.meta.id.clone(),
            image_id: image.id.clone(),
            image_ref: image.id.clone(),
            created_at: now_nanos(),
            log_path,
            process,
            cgroups_path: Some(created.cgroup_path),
            stop_signal,
            config,
        };
        let container = Arc::new(Container::new(meta, ContainerStatus::created(resources)));
        let (records, undo_id) = (self.records.clone(), id.to_string());
        cleanup.push("records", move || async move {
            records.remove(CONTAINERS, &undo_id)?;
            records.remove(CONTAINER_SPECS, &undo_id)
        });
        // The engine's spec only serves verbose ContainerStatus: both files are written at
        // once.
        let spec_written = async {
            match &created.runtime_spec {
                Some(spec) => self.records.write(CONTAINER_SPECS, id, spec).await,
                None => Ok(()),
            }
        };
        let (spec_written, record_written) =
            tokio::join!(spec_written, self.persist_container(&container));
        spec_written?;
        record_written?;
        failpoint::hit("container.records")?;
        let records_at = started.elapsed();
        self.store
            .containers
            .insert(id.to_string(), container.clone());
        self.container_event(EventKind::Created, &container);
        tracing::debug!(
            container = id,
            user_files_us = user_files_at.as_micros(),
            spec_us = (spec_at - user_files_at).as_micros(),
            backend_us = (backend_at - spec_at).as_micros(),
            records_us = (records_at - backend_at).as_micros(),
            store_us = (started.elapsed() - records_at).as_micros(),
            "container created"
        );
        Ok(())
    }

    /// The image's `/etc/passwd` and `/etc/group`, read from its layers once per image id
    /// (reading mounts a view of the image, which costs more than the rest of a create).
    async fn image_user_files(&self, image_id: &str) -> Result<Arc<crate::store::ImageUserFiles>> {
        if let Some(files) = self.store.image_user_files.get_exact(image_id) {
            return Ok(files);
        }
        let mut files = self
            .backend
            .read_image_files(image_id, &["/etc/passwd", "/etc/group"])
            .await?;
        let mut text = |path: &str| {
            files
                .remove(path)
                .map(|d| String::from_utf8_lossy(&d).into_owned())
        };
        let read = Arc::new(crate::store::ImageUserFiles {
            passwd: text("/etc/passwd"),
            group: text("/etc/group"),
        });
        self.store
            .image_user_files
            .insert(image_id.to_string(), Arc::clone(&read));
        Ok(read)
    }

    /// A `target_id` container whose PID namespace is to be shared must be running.
    fn check_pid_target(&self, config: &ContainerConfig) -> Result<()> {
        let ns = &config.security.namespaces;
        if ns.pid != crate::domain::NamespaceMode::Target {
            return Ok(());
        }
        let target = self.container(&ns.target_id)?;
        let status = target.status();
        if status.state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "target container {:?} of the PID namespace is not running",
                ns.target_id
            )));
        }
        Ok(())
    }

    /// StartContainer.
    pub async fn start_container(&self, id: &str) -> Result<()> {
        let container = self.container(id)?;
        let _op = container.op.lock().await;
        let status = container.status();
        if status.state != ContainerState::Created {
            return Err(Error::FailedPrecondition(format!(
                "container {:?} is {:?}, not created; it cannot be started",
                container.meta.id, status.state
            )));
        }
        let sandbox = self.sandbox(&container.meta.sandbox_id)?;
        if sandbox.status().state != SandboxState::Ready {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {:?} of container {:?} is not ready",
                sandbox.meta.id, container.meta.id
            )));
        }
        let log = if container.meta.log_path.is_empty() {
            None
        } else {
            Some(Arc::new(LogFile::open(&container.meta.log_path).map_err(
                |e| {
                    Error::InvalidArgument(format!(
                        "cannot open log file {:?}: {e}",
                        container.meta.log_path
                    ))
                },
            )?))
        };
        // CRI `stdin`: its stdin stays open; with `stdin_once` the first Attach session's
        // end closes it (`streaming::session::attach`).
        let stdio = TaskStdio {
            terminal: container.meta.process.terminal().unwrap_or(false),
            stdin: container.meta.config.stdin,
        };
        failpoint::hit("start.task")?;
        let started = match self
            .backend
            .start_task(
                &container.meta.id,
                &self.container_io_dir(&container.meta.id),
                stdio,
            )
            .await
        {
            Ok(started) => started,
            Err(e) => {
                // A task that failed to start leaves the container exited with the reason.
                let message = e.to_string();
                let _ = self.backend.delete_task(&container.meta.id).await;
                self.update_container(&container, |s| {
                    s.state = ContainerState::Exited;
                    s.finished_at = now_nanos();
                    s.exit_code = 128;
                    s.reason = REASON_ERROR.to_string();
                    s.message = message.clone();
                })
                .await?;
                return Err(e.into());
            }
        };
        self.attach_logs(&container, started.io, log);
        // Its first stats carry a writable-layer size measured in the background.
        self.stats_cache.layers.want_new();
        let recorded: Result<()> = async {
            failpoint::hit("start.record")?;
            self.update_container(&container, |s| {
                if s.state == ContainerState::Created {
                    s.state = ContainerState::Running;
                    s.pid = started.pid;
                    s.started_at = now_nanos();
                }
            })
            .await?;
            Ok(())
        }
        .await;
        if let Err(e) = recorded {
            // A process whose start is not on record must not run on: its exit, reported by
            // the backend, then records the container as exited.
            if let Err(kill) = self
                .backend
                .kill_task(&container.meta.id, libc::SIGKILL as u32, true)
                .await
            {
                tracing::error!(container = %container.meta.id, error = %kill, "could not kill a container whose start failed");
            }
            return Err(e);
        }
        Ok(())
    }

    /// Copy the task's output into the CRI log file (if it has one) and to attached clients.
    pub(crate) fn attach_logs(&self, container: &Container, io: TaskIo, log: Option<Arc<LogFile>>) {
        if let (Some(log), Ok(mut slot)) = (&log, container.log.lock()) {
            *slot = Some(log.clone());
        }
        let tap = Arc::new(OutputTap::new(2));
        if let Ok(mut slot) = container.tap.lock() {
            *slot = Some(tap.clone());
        }
        spawn_tapped_copier(io.stdout, Stream::Stdout, log.clone(), tap.clone());
        spawn_tapped_copier(io.stderr, Stream::Stderr, log, tap);
    }

    /// Did the kernel's OOM killer kill a process in the container's cgroup (where the
    /// backend said it is)?
    fn killed_by_oom(&self, container: &Container) -> bool {
        let (Some(layout), Some(path)) =
            (&self.cgroup_layout, container.meta.cgroups_path.as_deref())
        else {
            return false;
        };
        crate::cgroups::read_stats(layout, path)
            .ok()
            .and_then(|stats| stats.oom_kill_count)
            .is_some_and(|kills| kills > 0)
    }

    /// Record a container's exit (from an event, a wait or recovery). Idempotent.
    pub(crate) async fn handle_container_exit(
        &self,
        container: &Container,
        exit: TaskExit,
    ) -> Result<()> {
        if container.status().state == ContainerState::Exited {
            return Ok(());
        }
        // containerd's TaskOOM event may come after TaskExit: a killed container's cgroup
        // (still there until the task is deleted) says whether the OOM killer did it.
        if exit.exit_code != 0 && !container.status().oom_killed && self.killed_by_oom(container) {
            container.update(|s| s.oom_killed = true);
        }
        // The task is deleted so its shim goes away; the exit status lives on in the store.
        let deleted = self.backend.delete_task(&container.meta.id).await;
        let exit = match deleted {
            Ok(Some(deleted)) if exit.exited_at_nanos == 0 => deleted,
            _ => exit,
        };
        if let Ok(slot) = container.log.lock() {
            if let Some(log) = slot.as_ref() {
                // The copiers finish on EOF; closing here makes sure no fd outlives the container.
                let log = log.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    log.close();
                });
            }
        }
        // Another exit report may have been first: it stays as it was recorded.
        self.update_container(container, |s| {
            if s.state == ContainerState::Exited {
                return;
            }
            s.state = ContainerState::Exited;
            s.pid = 0;
            s.exit_code = i32::try_from(exit.exit_code).unwrap_or(i32::MAX);
            // A process that exits at once can end before crius stamped its start.
            s.finished_at = if exit.exited_at_nanos > 0 {
                exit.exited_at_nanos
            } else {
                now_nanos()
            }
            .max(s.started_at);
            // CRI reasons: OOMKilled when the OOM killer hit it, else by exit code.
            s.reason = if s.oom_killed {
                REASON_OOM_KILLED
            } else if exit.exit_code == 0 {
                REASON_COMPLETED
            } else {
                REASON_ERROR
            }
            .to_string();
        })
        .await?;
        Ok(())
    }

    /// StopContainer: the stop signal, then SIGKILL after `timeout` seconds. Idempotent.
    pub async fn stop_container(&self, id: &str, timeout_secs: i64) -> Result<()> {
        // CRI: stopping a container that is gone or already stopped succeeds.
        let Some(container) = self.store.containers.get(id) else {
            return Ok(());
        };
        let _op = container.op.lock().await;
        self.stop_container_locked(&container, timeout_secs).await
    }

    async fn stop_container_locked(&self, container: &Container, timeout_secs: i64) -> Result<()> {
        let id = container.meta.id.clone();
        if container.status().state != ContainerState::Running {
            return Ok(());
        }
        let task = self.backend.task_state(&id).await?;
        let exit = match task {
            None => TaskExit {
                pid: 0,
                exit_code: 255,
                exited_at_nanos: now_nanos(),
            },
            Some(task) if task.status == TaskStatus::Stopped => TaskExit {
                pid: task.pid,
                exit_code: task.exit_code,
                exited_at_nanos: task.exited_at_nanos,
            },
            Some(_) => {
                let mut exit = None;
                if timeout_secs > 0 {
                    let signal =
                        u32::try_from(container.meta.stop_signal).unwrap_or(libc::SIGTERM as u32);
                    match self.backend.kill_task(&id, signal, false).await {
                        Ok(()) => {}
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e.into()),
                    }
                    let grace = Duration::from_secs(u64::try_from(timeout_secs).unwrap_or(0));
                    exit = tokio::time::timeout(grace, self.backend.wait(&id, &ProcessId::Init))
                        .await
                        .ok()
                        .transpose()?;
                }
                match exit {
                    Some(exit) => exit,
                    None => {
                        match self
                            .backend
                            .kill_task(&id, libc::SIGKILL as u32, true)
                            .await
                        {
                            Ok(()) => {}
                            Err(e) if e.is_not_found() => {}
                            Err(e) => return Err(e.into()),
                        }
                        self.backend.wait(&id, &ProcessId::Init).await?
                    }
                }
            }
        };
        self.handle_container_exit(container, exit).await
    }

    /// RemoveContainer: force-stops a running container first. Idempotent.
    pub async fn remove_container(&self, id: &str) -> Result<()> {
        // CRI: removing a container that is already gone succeeds.
        let Some(container) = self.store.containers.get(id) else {
            return Ok(());
        };
        let _op = container.op.lock().await;
        self.stop_container_locked(&container, 0).await?;
        let id = container.meta.id.clone();
        self.backend.remove_container(&id).await?;
        let _ = std::fs::remove_dir_all(self.container_io_dir(&id));
        self.records.remove(CONTAINERS, &id)?;
        self.records.remove(CONTAINER_SPECS, &id)?;
        self.store.containers.remove(&id);
        self.container_event(EventKind::Deleted, &container);
        self.store.names.release(&container.meta.name, &id);
        crate::memory::note_removal();
        Ok(())
    }

    /// UpdateContainerResources.
    pub async fn update_container_resources(&self, id: &str, resources: Resources) -> Result<()> {
        let container = self.container(id)?;
        let _op = container.op.lock().await;
        let state = container.status().state;
        if state == ContainerState::Running || state == ContainerState::Created {
            // A created container starts with them.
            let linux = spec::linux_resources(&resources, &self.host.cgroups)?;
            self.backend
                .update_resources(&container.meta.id, &linux)
                .await?;
            self.record_spec_resources(&container.meta.id, &linux)
                .await?;
        } else {
            return Err(Error::FailedPrecondition(format!(
                "container {:?} is not running; its resources cannot be updated",
                container.meta.id
            )));
        }
        self.update_container(&container, |s| s.resources = Some(resources.clone()))
            .await?;
        Ok(())
    }

    /// Keep the spec verbose ContainerStatus shows in step with updated resources.
    async fn record_spec_resources(
        &self,
        id: &str,
        resources: &runtime_backends::oci_spec_types::LinuxResources,
    ) -> Result<()> {
        // Numbered before it is read, as every record write (see `StateDir::ticket`).
        let ticket = self.records.ticket(CONTAINER_SPECS, id);
        let Some(mut spec) = self
            .records
            .read::<serde_json::Value>(CONTAINER_SPECS, id)?
        else {
            return Ok(());
        };
        runtime_backends::oci_spec_types::merge_resources(&mut spec, resources)
            .map_err(|e| Error::Internal(format!("the recorded spec of container {id}: {e}")))?;
        ticket.write(&spec).await
    }

    /// ReopenContainerLog: after kubelet rotated the file away.
    pub async fn reopen_container_log(&self, id: &str) -> Result<()> {
        let container = self.container(id)?;
        if container.status().state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {:?} is not running",
                container.meta.id
            )));
        }
        let log = container.log.lock().ok().and_then(|slot| slot.clone());
        match log {
            Some(log) => log
                .reopen()
                .map_err(|e| Error::internal(format!("reopening log {}", log.path().display()), e)),
            None => Err(Error::FailedPrecondition(format!(
                "container {:?} has no log file",
                container.meta.id
            ))),
        }
    }
}
