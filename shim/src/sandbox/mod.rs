//! Pod sandboxes: a pause container that owns the pod's namespaces, plus the pod's
//! resolv.conf, hostname, hosts and shm.

mod files;
pub mod spec;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use runtime_backends::{
    CgroupRequest, CreateContainer, ProcessId, TaskStdio, LABEL_KIND, LABEL_SANDBOX_ID,
};
use tokio::io::AsyncReadExt;

use crate::cgroups::CgroupDriver;
use crate::cleanup::Cleanup;
use crate::domain::{NamespaceMode, SandboxConfig};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::pod_events::EventKind;
use crate::runtime::{new_id, now_nanos, Crius, SANDBOXES};
use crate::store::{PodResources, Sandbox, SandboxMeta, SandboxState, SandboxStatus};

/// What is persisted for a sandbox.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct SandboxRecord {
    pub meta: SandboxMeta,
    pub status: SandboxStatus,
}

/// The handler a request names: `""` is `default`; one `known` does not hold is refused
/// with `InvalidArgument` (`what` names the field, for the message). The handlers share one
/// image store, so an image spec may name any of them.
pub fn resolve_handler<'a>(
    known: &'a std::collections::BTreeMap<String, crate::config::RuntimeConfig>,
    default: &'a str,
    requested: &'a str,
    what: impl std::fmt::Display,
) -> Result<&'a str> {
    let name = if requested.is_empty() {
        default
    } else {
        requested
    };
    if known.contains_key(name) {
        return Ok(name);
    }
    Err(Error::InvalidArgument(format!(
        "{what}: runtime handler {requested:?} is not configured (crius runs \"\" = {default:?}{})",
        known.keys().map(|k| format!(", {k:?}")).collect::<String>()
    )))
}

impl Crius {
    /// The configured handler `requested` means (see [`resolve_handler`]).
    pub fn runtime_handler<'a>(
        &'a self,
        requested: &'a str,
        what: impl std::fmt::Display,
    ) -> Result<&'a str> {
        resolve_handler(
            &self.config.runtimes,
            &self.config.default_runtime,
            requested,
            what,
        )
    }
}

pub fn reserved_name(config: &SandboxConfig) -> String {
    let m = &config.metadata;
    format!("{}_{}_{}_{}", m.name, m.namespace, m.uid, m.attempt)
}

impl Crius {
    /// Writes the sandbox's record; its status is taken at the call.
    pub(crate) fn persist_sandbox(
        &self,
        sandbox: &Sandbox,
    ) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        // Numbered before the status is read (see `StateDir::ticket`).
        let ticket = self.records.ticket(SANDBOXES, &sandbox.meta.id);
        ticket.write(&SandboxRecord {
            meta: sandbox.meta.clone(),
            status: SandboxStatus::clone(&sandbox.status()),
        })
    }

    pub fn sandbox(&self, id: &str) -> Result<Arc<Sandbox>> {
        self.store
            .sandboxes
            .get(id)
            .ok_or_else(|| Crius::not_found_sandbox(id))
    }

    /// RunPodSandbox. The work runs detached from the caller (decision 5).
    pub async fn run_sandbox(self: &Arc<Self>, config: SandboxConfig) -> Result<String> {
        let handler = self.runtime_handler(&config.runtime_handler, "RunPodSandbox")?;
        self.engine(handler).check_sandbox(&config)?;
        crate::security::validate_sysctls(&config.sysctls, &config.security.namespaces)?;
        let name = reserved_name(&config);
        let crius = self.clone();
        self.store
            .names
            .create_once(&name, || {
                let id = new_id();
                crius.store.names.reserve(&name, &id)?;
                let work_name = name.clone();
                let work_id = id.clone();
                let crius = crius.clone();
                Ok((id, async move {
                    let result = crius.create_sandbox(&work_id, &work_name, config).await;
                    if result.is_err() {
                        crius.store.names.release(&work_name, &work_id);
                    }
                    result.map(|()| work_id)
                }))
            })
            .await
    }

    async fn create_sandbox(&self, id: &str, name: &str, config: SandboxConfig) -> Result<()> {
        let started = std::time::Instant::now();
        let mut cleanup = Cleanup::new(format!("sandbox {id}"));
        let result = self
            .create_sandbox_steps(id, name, config, &mut cleanup)
            .await;
        let result = cleanup.finish(result).await;
        if result.is_ok() {
            tracing::info!(
                sandbox = id,
                name,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "sandbox ready"
            );
        }
        result
    }

    async fn create_sandbox_steps(
        &self,
        id: &str,
        name: &str,
        config: SandboxConfig,
        cleanup: &mut Cleanup,
    ) -> Result<()> {
        let image = self
            .store
            .images
            .load()
            .find(&self.pause_image)
            .ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "pause image {:?} is not present on this node",
                    self.pause_image
                ))
            })?;
        let host_network = config.security.namespaces.network == NamespaceMode::Node;
        let root = self.sandbox_root(id);
        let state = self.sandbox_state(id);
        let (undo_root, undo_state) = (root.clone(), state.clone());
        cleanup.push("sandbox files", move || async move {
            files::remove_dirs(&undo_root, &undo_state)
        });
        let shm = if config.security.namespaces.ipc == NamespaceMode::Node {
            None
        } else {
            Some(state.join("shm"))
        };
        files::write_sandbox_files(&root, &config, host_network, shm.as_deref())?;
        failpoint::hit("sandbox.files")?;
        // The pod's namespace and CNI come before the pause container, which joins it. In a
        // pod with a user namespace the pause process makes the network namespace itself, so
        // that it belongs to the pod's user namespace (the pod's containers could not join a
        // host-owned one from inside it); CNI then runs on it once the pause process is up.
        let own_userns = config
            .security
            .namespaces
            .userns
            .as_ref()
            .is_some_and(|u| u.mode == NamespaceMode::Pod);
        let network_after_start = own_userns && !host_network;
        // The namespace comes first; CNI ADD on it and the pause container, which only needs
        // it to exist, then go ahead together.
        let netns = if host_network || network_after_start {
            None
        } else {
            self.undo_network(id, cleanup);
            let netns = self.network.create_netns(id).await?;
            failpoint::hit("sandbox.netns")?;
            Some(netns)
        };

        let request = spec::sandbox_request(&spec::SandboxSpecInput {
            id,
            config: &config,
            cgroup: CgroupRequest {
                parent: self.cgroups.sandbox_parent(&config.cgroup_parent)?,
                systemd: self.cgroups.is_systemd(),
            },
            pause_args: image_command(&image.config),
            netns_path: netns.as_ref().map(|p| p.display().to_string()),
            oom_score_adj_floor: self.oom_score_adj_floor,
            host: &self.host,
        })?;
        let mut labels = HashMap::new();
        labels.insert(LABEL_KIND.to_string(), "sandbox".to_string());
        labels.insert(LABEL_SANDBOX_ID.to_string(), id.to_string());
        let request = CreateContainer {
            image_id: image.id.clone(),
            image_chain_id: image.chain_id.clone(),
            image_name: self.pause_image.clone(),
            labels,
            runtime_handler: self
                .runtime_handler(&config.runtime_handler, "RunPodSandbox")?
                .to_string(),
            ..request
        };
        cleanup.push_engine_container("pause container", self.backend.clone(), id);
        let pause = async {
            let created = self.backend.create_container(request).await?;
            failpoint::hit("sandbox.pause")?;
            let started = self
                .backend
                .start_task(id, &state.join("io"), TaskStdio::default())
                .await?;
            Ok::<_, Error>((created, started))
        };
        let attach = async {
            match &netns {
                Some(path) => self.network.attach(id, &config, path.clone()).await,
                None => Ok(crate::network::PodNetwork::default()),
            }
        };
        // Both finish before either error is returned: the rollback then undoes a complete
        // step, never one still running.
        let (started, attached) = tokio::join!(pause, attach);
        // A failed ADD removes the namespace, which can make the pause start fail in turn:
        // the network error is the cause to report.
        let mut pod_network = match attached {
            Ok(network) => network,
            Err(e) => {
                if let Ok((_, started)) = started {
                    drain(started.io);
                }
                return Err(e);
            }
        };
        let (created, started) = started?;
        drain(started.io);
        if network_after_start {
            self.undo_network(id, cleanup);
            let own = PathBuf::from(format!("/proc/{}/ns/net", started.pid));
            pod_network = self.network.setup_existing(id, &config, own).await?;
        }
        failpoint::hit("sandbox.started")?;
        let meta = SandboxMeta {
            id: id.to_string(),
            name: name.to_string(),
            config,
            created_at: now_nanos(),
            netns_path: (!host_network).then(|| pod_network.netns_path.clone()),
            ip: pod_network.ips.first().cloned().unwrap_or_default(),
            additional_ips: pod_network.ips.iter().skip(1).cloned().collect(),
            pause_image: self.pause_image.clone(),
            files_dir: root.display().to_string(),
            cgroups_path: created.cgroup_path,
        };
        let sandbox = Arc::new(Sandbox::new(
            meta,
            SandboxStatus {
                state: SandboxState::Ready,
                pid: started.pid,
                pod_resources: None,
            },
        ));
        let (records, record_id) = (self.records.clone(), id.to_string());
        cleanup.push("sandbox record", move || async move {
            records.remove(SANDBOXES, &record_id)
        });
        self.persist_sandbox(&sandbox).await?;
        failpoint::hit("sandbox.record")?;
        self.store.sandboxes.insert(id.to_string(), sandbox.clone());
        // The pause process runs already: the pod is created and started at once.
        self.sandbox_event(EventKind::Created, &sandbox);
        self.sandbox_event(EventKind::Started, &sandbox);
        Ok(())
    }

    /// StopPodSandbox: stop every container, then the pause process. Idempotent.
    pub async fn stop_sandbox(&self, id: &str) -> Result<()> {
        // CRI: stopping a sandbox that is already gone is not an error.
        let Some(sandbox) = self.store.sandboxes.get(id) else {
            return Ok(());
        };
        let _op = sandbox.op.lock().await;
        for container in self.containers_of(&sandbox.meta.id) {
            self.stop_container(&container.meta.id, 0).await?;
        }
        failpoint::hit("stop.containers")?;
        self.stop_pause(&sandbox).await?;
        failpoint::hit("stop.pause")?;
        // CNI DEL, then the namespace goes; a no-op for host-network pods and on repeats.
        self.network.teardown(&sandbox.meta.id).await?;
        failpoint::hit("stop.network")?;
        files::release_shm(&self.sandbox_state(&sandbox.meta.id));
        Ok(())
    }

    async fn stop_pause(&self, sandbox: &Arc<Sandbox>) -> Result<()> {
        let id = &sandbox.meta.id;
        if let Some(task) = self.backend.task_state(id).await? {
            if task.status != runtime_backends::TaskStatus::Stopped {
                match self.backend.kill_task(id, libc::SIGKILL as u32, true).await {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
                self.backend.wait(id, &ProcessId::Init).await?;
            }
            self.backend.delete_task(id).await?;
        }
        self.mark_sandbox_stopped(sandbox).await
    }

    pub(crate) async fn mark_sandbox_stopped(&self, sandbox: &Arc<Sandbox>) -> Result<()> {
        if sandbox.status().state == SandboxState::NotReady {
            return Ok(());
        }
        self.update_sandbox(sandbox, |status| {
            status.state = SandboxState::NotReady;
            status.pid = 0;
        })
        .await
    }

    /// A durable status change: applies `change` in memory and writes the record, in one
    /// call (the record is numbered before the status is read, so writes land in order).
    /// Once written, a stop is published to GetContainerEvents. A sandbox no longer in the
    /// store is changed in memory only.
    pub(crate) async fn update_sandbox(
        &self,
        sandbox: &Arc<Sandbox>,
        change: impl FnOnce(&mut SandboxStatus),
    ) -> Result<()> {
        let current = sandbox.status();
        let before = current.state;
        let mut next = SandboxStatus::clone(&current);
        change(&mut next);
        let after = next.state;
        sandbox.set_status(next);
        // A change that lost the race with the sandbox's removal must not write its record
        // back (see `update_container`).
        if !self.store.sandboxes.holds(&sandbox.meta.id, sandbox) {
            return Ok(());
        }
        self.persist_sandbox(sandbox).await?;
        if before == SandboxState::Ready && after == SandboxState::NotReady {
            self.sandbox_event(EventKind::Stopped, sandbox);
        }
        Ok(())
    }

    /// UpdatePodSandboxResources: kubelet has already resized the pod's cgroup (it owns the
    /// pod-level cgroup); the runtime records the new pod-level resources, which verbose
    /// PodSandboxStatus then reports.
    pub async fn update_sandbox_resources(&self, id: &str, update: PodResources) -> Result<()> {
        let sandbox = self.sandbox(id)?;
        let _op = sandbox.op.lock().await;
        self.update_sandbox(&sandbox, |status| status.pod_resources = Some(update))
            .await?;
        tracing::info!(sandbox = %sandbox.meta.id, "pod-level resources updated");
        Ok(())
    }

    /// RemovePodSandbox: stop, remove its containers, the pause container and all files.
    pub async fn remove_sandbox(&self, id: &str) -> Result<()> {
        // CRI: removing a sandbox that is already gone is not an error.
        let Some(sandbox) = self.store.sandboxes.get(id) else {
            return Ok(());
        };
        self.stop_sandbox(&sandbox.meta.id).await?;
        let _op = sandbox.op.lock().await;
        let id = sandbox.meta.id.clone();
        for container in self.containers_of(&id) {
            self.remove_container(&container.meta.id).await?;
        }
        failpoint::hit("remove.containers")?;
        self.backend.remove_container(&id).await?;
        failpoint::hit("remove.pause")?;
        files::remove_dirs(&self.sandbox_root(&id), &self.sandbox_state(&id))?;
        failpoint::hit("remove.files")?;
        self.records.remove(SANDBOXES, &id)?;
        failpoint::hit("remove.record")?;
        self.store.sandboxes.remove(&id);
        self.sandbox_event(EventKind::Deleted, &sandbox);
        self.store.names.release(&sandbox.meta.name, &id);
        crate::memory::note_removal();
        Ok(())
    }

    /// Registers the undo of the pod's network: CNI DEL and the namespace's removal, both
    /// forced (a failed ADD's retry would fail the same way).
    fn undo_network(&self, id: &str, cleanup: &mut Cleanup) {
        let network = self.network.clone();
        let id = id.to_string();
        cleanup.push("pod network", move || async move {
            network.teardown_forced(&id).await
        });
    }

    pub fn containers_of(&self, sandbox_id: &str) -> Vec<Arc<crate::store::Container>> {
        self.store
            .containers
            .snapshot()
            .values()
            .filter(|c| c.meta.sandbox_id == sandbox_id)
            .cloned()
            .collect()
    }
}

fn image_command(config: &runtime_backends::ImageConfig) -> Vec<String> {
    let mut args = config.entrypoint.clone();
    args.extend(config.cmd.iter().cloned());
    if args.is_empty() {
        args.push("/pause".to_string());
    }
    args
}

/// Read and discard a process's output (the pause process prints nothing worth keeping, but
/// a full pipe would block it).
pub(crate) fn drain(io: runtime_backends::TaskIo) {
    for mut reader in [io.stdout, io.stderr] {
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = reader.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        });
    }
}

/// Remove a sandbox's files and mounts (for recovery of half-made or vanished sandboxes).
pub fn files_cleanup(crius: &Crius, id: &str) {
    if let Err(e) = files::remove_dirs(&crius.sandbox_root(id), &crius.sandbox_state(id)) {
        tracing::warn!(sandbox = id, error = %e, "could not remove the sandbox's files");
    }
}
