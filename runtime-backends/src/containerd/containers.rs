//! Containers and tasks in containerd.

use std::collections::HashMap;
use std::path::Path;

use containerd_client::services::v1 as api;
use containerd_client::services::v1::snapshots as snap;
use containerd_client::types::v1::Status as ProcessStatus;
use prost::Message;
use prost_types::Any;

use super::{fifo, map_status, now_timestamp, timestamp_nanos, Containerd, RUNTIME, SNAPSHOTTER};
use crate::oci::render;
use crate::{
    BackendError, ContainerRecord, CreateContainer, CreatedContainer, ExecIo, ExecRequest, Result,
    TaskExit, TaskStarted, TaskState, TaskStatus, TaskStdio, LABEL_MANAGED,
};

const SPEC_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const PROCESS_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
const RESOURCES_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";
const RUNC_OPTIONS_TYPE: &str = "containerd.runc.v1.Options";

/// The fields of the runc shim's `Options` crius sets (their wire numbers are the shim's).
#[derive(Clone, PartialEq, Message)]
struct RuncOptions {
    /// The OCI runtime binary the shim runs instead of `runc`.
    #[prost(string, tag = "6")]
    binary_name: String,
    /// The runtime's state directory.
    #[prost(string, tag = "7")]
    root: String,
    #[prost(bool, tag = "9")]
    systemd_cgroup: bool,
}

fn json_any(type_url: &str, value: &impl serde::Serialize) -> Result<Any> {
    let value = serde_json::to_vec(value)
        .map_err(|e| BackendError::InvalidArgument(format!("encoding {type_url}: {e}")))?;
    Ok(Any {
        type_url: type_url.to_string(),
        value,
    })
}

/// A JSON OCI spec with the kinds of resources `resources` sets put in place of its own.
fn merge_resources(
    spec: &[u8],
    resources: &oci_spec::runtime::LinuxResources,
) -> std::result::Result<Vec<u8>, String> {
    let mut spec: serde_json::Value = serde_json::from_slice(spec).map_err(|e| e.to_string())?;
    crate::oci_spec_types::merge_resources(&mut spec, resources)?;
    serde_json::to_vec(&spec).map_err(|e| e.to_string())
}

fn task_status(raw: i32) -> TaskStatus {
    match ProcessStatus::try_from(raw) {
        Ok(ProcessStatus::Created) => TaskStatus::Created,
        Ok(ProcessStatus::Running) => TaskStatus::Running,
        Ok(ProcessStatus::Stopped) => TaskStatus::Stopped,
        Ok(ProcessStatus::Paused | ProcessStatus::Pausing) => TaskStatus::Paused,
        _ => TaskStatus::Unknown,
    }
}

/// The init process of each container whose task this backend started, so a container that
/// joins its namespaces needs no round trip to find it. Not kept across restarts (then the
/// task is asked).
#[derive(Default)]
pub(super) struct InitPids(std::sync::Mutex<HashMap<String, u32>>);

impl InitPids {
    fn started(&self, id: &str, pid: u32) {
        if let Ok(mut pids) = self.0.lock() {
            pids.insert(id.to_owned(), pid);
        }
    }

    fn forget(&self, id: &str) {
        if let Ok(mut pids) = self.0.lock() {
            pids.remove(id);
        }
    }

    fn get(&self, id: &str) -> Option<u32> {
        self.0.lock().ok().and_then(|pids| pids.get(id).copied())
    }
}

impl Containerd {
    /// The init process of a container whose task runs (0 when it has none).
    async fn running_pid(&self, id: &str) -> Result<u32> {
        if let Some(pid) = self.inner.init_pids.get(id) {
            return Ok(pid);
        }
        Ok(match self.task_state_impl(id).await? {
            Some(state) if matches!(state.status, TaskStatus::Running | TaskStatus::Paused) => {
                self.inner.init_pids.started(id, state.pid);
                state.pid
            }
            _ => 0,
        })
    }

    /// The OCI spec runc runs the container with: its namespaces joined through the init
    /// processes of the containers that hold them.
    async fn render_spec(
        &self,
        request: &CreateContainer,
        cgroups_path: &str,
    ) -> Result<oci_spec::runtime::Spec> {
        let mut pids = render::JoinedPids::new();
        for id in render::joined_containers(request) {
            let pid = self.running_pid(&id).await?;
            pids.insert(id, pid);
        }
        render::spec(request, cgroups_path, &pids)
    }

    /// The container record first, then its rootfs snapshot (key = container id) on the
    /// image's top layer. The record names the snapshot before it exists, so the garbage
    /// collector keeps the snapshot from the moment it is made, with no lease to create and
    /// delete (two metadata writes, each synced). A failure removes what was made; a crash
    /// in between leaves a labelled record, which crius's recovery removes.
    pub(crate) async fn create_container_impl(
        &self,
        request: CreateContainer,
    ) -> Result<CreatedContainer> {
        let started = std::time::Instant::now();
        let cgroup = crate::cgroup::names(&request.cgroup, &request.id)?;
        let spec = self.render_spec(&request, &cgroup.runtime).await?;
        let chain_id = if request.image_chain_id.is_empty() {
            self.image_impl(&request.image_id)
                .await?
                .ok_or_else(|| BackendError::NotFound {
                    kind: "image",
                    id: request.image_id.clone(),
                })?
                .chain_id
        } else {
            request.image_chain_id.clone()
        };
        let image_at = started.elapsed();
        let id = request.id.clone();
        self.create_record(&request, &spec).await?;
        let recorded_at = started.elapsed();
        if let Err(err) = self.prepare_rootfs(&request, &chain_id).await {
            if let Err(e) = self.delete_record(&id).await {
                tracing::warn!(container = %id, error = %e, "could not remove the record of a failed create");
            }
            return Err(err);
        }
        tracing::debug!(
            container = %id,
            image_us = image_at.as_micros(),
            record_us = (recorded_at - image_at).as_micros(),
            rootfs_us = (started.elapsed() - recorded_at).as_micros(),
            "containerd container created"
        );
        Ok(CreatedContainer {
            cgroup_path: cgroup.filesystem,
            runtime_spec: Some(spec),
        })
    }

    /// The rootfs snapshot of a container whose record exists; removed again on failure.
    async fn prepare_rootfs(&self, request: &CreateContainer, chain_id: &str) -> Result<()> {
        let id = request.id.clone();
        let mut snapshot_labels = HashMap::new();
        snapshot_labels.insert(LABEL_MANAGED.to_string(), "true".to_string());
        let mounts = self
            .snapshots()
            .prepare(self.req(snap::PrepareSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: id.clone(),
                parent: chain_id.to_string(),
                labels: snapshot_labels,
            }))
            .await
            .map_err(|s| match s.code() {
                // The key is new, so what is missing is its parent: the image's unpacked layers.
                tonic::Code::NotFound => map_status(s, "image snapshot", chain_id),
                _ => map_status(s, "snapshot", &id),
            })?
            .into_inner()
            .mounts;
        // In a user namespace the container's root is an unprivileged host id: its rootfs
        // must be owned by the mapped ids (runc 1.1 has no idmapped mounts).
        if let Some(mappings) = &request.id_mappings {
            let uids = mappings.uids.clone();
            let gids = mappings.gids.clone();
            if !uids.is_empty() || !gids.is_empty() {
                let target = std::env::temp_dir().join(format!("crius-remap-{id}"));
                let remapped = tokio::task::spawn_blocking(move || {
                    super::view::remap_owners(&mounts, &target, &uids, &gids)
                })
                .await
                .map_err(|e| BackendError::Engine {
                    engine: "containerd",
                    message: format!("remapping the rootfs owners: {e}"),
                })
                .and_then(|r| r);
                if let Err(e) = remapped {
                    self.remove_snapshot(&id).await;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// containerd's record of a container, naming its (not yet made) rootfs snapshot.
    async fn create_record(
        &self,
        request: &CreateContainer,
        spec: &oci_spec::runtime::Spec,
    ) -> Result<()> {
        let id = request.id.clone();
        let Some((handler, _)) = self.inner.handlers.get(&request.runtime_handler) else {
            return Err(BackendError::InvalidArgument(format!(
                "runtime handler {:?} is not one containerd runs here",
                request.runtime_handler
            )));
        };
        // Options for the runc shim, only what differs from its defaults; other shims get
        // none.
        let runc = RuncOptions {
            binary_name: if handler.binary == super::RUNC_BINARY {
                String::new()
            } else {
                handler.binary.clone()
            },
            root: handler
                .root
                .as_ref()
                .map(|r| r.display().to_string())
                .unwrap_or_default(),
            systemd_cgroup: request.cgroup.systemd,
        };
        let options =
            (handler.runtime_type == RUNTIME && runc != RuncOptions::default()).then(|| Any {
                type_url: RUNC_OPTIONS_TYPE.to_string(),
                value: runc.encode_to_vec(),
            });
        let spec = json_any(SPEC_TYPE, spec)?;
        let mut labels = request.labels.clone();
        labels.insert(LABEL_MANAGED.to_string(), "true".to_string());
        let container = api::Container {
            id: id.clone(),
            labels,
            image: request.image_name.clone(),
            runtime: Some(api::container::Runtime {
                name: handler.runtime_type.clone(),
                options,
            }),
            spec: Some(spec),
            snapshotter: SNAPSHOTTER.to_string(),
            snapshot_key: id.clone(),
            created_at: Some(now_timestamp()),
            updated_at: None,
            extensions: HashMap::new(),
            sandbox: String::new(),
        };
        self.containers()
            .create(self.req(api::CreateContainerRequest {
                container: Some(container),
            }))
            .await
            .map_err(|status| map_status(status, "container", &id))?;
        Ok(())
    }

    pub(crate) async fn list_containers_impl(&self) -> Result<Vec<ContainerRecord>> {
        // ListStream sends one container per message, so a full node never meets a
        // message-size limit on either side.
        let mut stream = self
            .containers()
            .list_stream(self.req(api::ListContainersRequest {
                filters: vec![format!("labels.\"{LABEL_MANAGED}\"==true")],
            }))
            .await
            .map_err(|s| map_status(s, "containers", ""))?
            .into_inner();
        let mut records = Vec::new();
        while let Some(message) = stream
            .message()
            .await
            .map_err(|s| map_status(s, "containers", ""))?
        {
            let Some(c) = message.container else { continue };
            records.push(ContainerRecord {
                created_at_nanos: timestamp_nanos(c.created_at.as_ref()),
                id: c.id,
                labels: c.labels,
                image_name: c.image,
            });
        }
        Ok(records)
    }

    pub(crate) async fn remove_container_impl(&self, id: &str) -> Result<()> {
        // A task must go before its container; a running one is killed first. containerd
        // would delete the record of a container whose task still runs, and leave the task
        // and its shim behind: only a task this backend deleted itself is not looked for.
        let state = if self.inner.deleted_tasks.take(id) {
            None
        } else {
            self.task_state_impl(id).await?
        };
        if let Some(state) = state {
            if state.status != TaskStatus::Stopped {
                let _ = self.kill_impl(id, "", 9, true).await;
                let _ = self.wait_impl(id, "").await;
            }
            self.delete_task_impl(id).await?;
        }
        // With no task left, the record and the rootfs snapshot go at once: containerd
        // writes each in its own metadata transaction. Should the record stay (an error),
        // the next remove finds the snapshot gone, which is fine.
        let (deleted, ()) = tokio::join!(self.delete_record(id), self.remove_snapshot(id));
        self.inner.deleted_tasks.take(id);
        self.inner.init_pids.forget(id);
        deleted
    }

    /// Delete containerd's record of a container; one already gone is fine.
    async fn delete_record(&self, id: &str) -> Result<()> {
        match self
            .containers()
            .delete(self.req(api::DeleteContainerRequest { id: id.to_string() }))
            .await
        {
            Ok(_) => Ok(()),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(()),
            Err(status) => Err(map_status(status, "container", id)),
        }
    }

    pub(crate) async fn start_task_impl(
        &self,
        id: &str,
        io_dir: &Path,
        stdio: TaskStdio,
    ) -> Result<TaskStarted> {
        self.inner.deleted_tasks.started(id);
        let mounts = self
            .snapshots()
            .mounts(self.req(snap::MountsRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: id.to_string(),
            }))
            .await
            .map_err(|s| map_status(s, "snapshot", id))?
            .into_inner()
            .mounts;
        // The shim holds a writer of the stdin FIFO of its own for the task's life, so the
        // process never reads EOF there, whether crius holds one or restarts. crius holds
        // none until it has something to write (Attach).
        let set = fifo::paths(io_dir, "", stdio.stdin);
        let mut fifos = fifo::create(&set)?;
        let created = self
            .tasks()
            .create(self.req(api::CreateTaskRequest {
                container_id: id.to_string(),
                rootfs: mounts,
                stdin: set.stdin_arg(),
                stdout: set.stdout.display().to_string(),
                // With a terminal the shim writes the pty to stdout and leaves stderr alone.
                stderr: if stdio.terminal {
                    String::new()
                } else {
                    set.stderr.display().to_string()
                },
                terminal: stdio.terminal,
                checkpoint: None,
                options: None,
                runtime_path: String::new(),
            }))
            .await
            .map_err(|s| map_status(s, "task", id));
        fifos.release_keepers();
        let pid = match created {
            Ok(response) => response.into_inner().pid,
            Err(e) => {
                fifo::remove(&set);
                return Err(e);
            }
        };
        self.inner.init_pids.started(id, pid);
        if let Err(status) = self
            .tasks()
            .start(self.req(api::StartRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            }))
            .await
        {
            let _ = self.delete_task_impl(id).await;
            return Err(map_status(status, "task", id));
        }
        Ok(TaskStarted {
            pid,
            io: fifos.into_task_io(),
        })
    }

    pub(crate) async fn task_state_impl(&self, id: &str) -> Result<Option<TaskState>> {
        let response = self
            .tasks()
            .get(self.req(api::GetRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            }))
            .await;
        match response {
            Ok(response) => Ok(response.into_inner().process.map(|p| TaskState {
                pid: p.pid,
                status: task_status(p.status),
                exit_code: p.exit_status,
                exited_at_nanos: timestamp_nanos(p.exited_at.as_ref()),
            })),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(map_status(status, "task", id)),
        }
    }

    pub(crate) async fn kill_impl(
        &self,
        id: &str,
        exec_id: &str,
        signal: u32,
        all: bool,
    ) -> Result<()> {
        match self
            .tasks()
            .kill(self.req(api::KillRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                signal,
                all,
            }))
            .await
        {
            Ok(_) => Ok(()),
            Err(status) => Err(map_status(status, "task", id)),
        }
    }

    pub(crate) async fn delete_task_impl(&self, id: &str) -> Result<Option<TaskExit>> {
        match self
            .tasks()
            .delete(self.req(api::DeleteTaskRequest {
                container_id: id.to_string(),
            }))
            .await
        {
            Ok(response) => {
                self.inner.deleted_tasks.deleted(id);
                self.inner.init_pids.forget(id);
                let response = response.into_inner();
                Ok(Some(TaskExit {
                    pid: response.pid,
                    exit_code: response.exit_status,
                    exited_at_nanos: timestamp_nanos(response.exited_at.as_ref()),
                }))
            }
            Err(status) if status.code() == tonic::Code::NotFound => {
                self.inner.deleted_tasks.deleted(id);
                self.inner.init_pids.forget(id);
                Ok(None)
            }
            Err(status) => Err(map_status(status, "task", id)),
        }
    }

    pub(crate) async fn update_resources_impl(
        &self,
        id: &str,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        let any = json_any(RESOURCES_TYPE, resources)?;
        let updated = self
            .tasks()
            .update(self.req(api::UpdateTaskRequest {
                container_id: id.to_string(),
                resources: Some(any),
                annotations: HashMap::new(),
            }))
            .await;
        match updated {
            Ok(_) => Ok(()),
            // Not started: the spec it will start with takes them.
            Err(status) if status.code() == tonic::Code::NotFound => {
                self.update_spec_resources(id, resources).await
            }
            Err(status) => Err(map_status(status, "task", id)),
        }
    }

    /// Put `resources` into the stored spec of a container that has no task. Each kind
    /// given (cpu, memory, …) replaces the spec's; the rest (the device rules) stays.
    async fn update_spec_resources(
        &self,
        id: &str,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        let container = self
            .containers()
            .get(self.req(api::GetContainerRequest { id: id.to_string() }))
            .await
            .map_err(|s| map_status(s, "container", id))?
            .into_inner()
            .container
            .ok_or_else(|| BackendError::NotFound {
                kind: "container",
                id: id.to_string(),
            })?;
        let stored = container.spec.ok_or_else(|| BackendError::Engine {
            engine: "containerd",
            message: format!("container {id} has no spec"),
        })?;
        let spec = merge_resources(&stored.value, resources).map_err(|e| BackendError::Engine {
            engine: "containerd",
            message: format!("the spec of container {id}: {e}"),
        })?;
        self.containers()
            .update(self.req(api::UpdateContainerRequest {
                container: Some(api::Container {
                    id: id.to_string(),
                    spec: Some(Any {
                        type_url: stored.type_url,
                        value: spec,
                    }),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["spec".to_string()],
                }),
            }))
            .await
            .map_err(|s| map_status(s, "container", id))?;
        Ok(())
    }

    pub(crate) async fn exec_impl(&self, request: ExecRequest) -> Result<ExecIo> {
        let begun = std::time::Instant::now();
        let id = request.container_id.clone();
        let set = fifo::paths(
            &request.io_dir,
            &format!("{}-", request.exec_id),
            request.stdin,
        );
        let spec = json_any(PROCESS_TYPE, &request.process)?;
        // The shim opens the FIFOs only when the process starts: they are made on the
        // blocking pool while containerd records the exec.
        let making = {
            let set = set.clone();
            tokio::task::spawn_blocking(move || fifo::create(&set))
        };
        let execed = self
            .process_tasks()
            .exec(self.bounded_req(api::ExecProcessRequest {
                container_id: id.clone(),
                stdin: set.stdin_arg(),
                stdout: set.stdout.display().to_string(),
                // With a terminal the shim writes the pty to stdout and leaves stderr alone.
                stderr: if request.terminal {
                    String::new()
                } else {
                    set.stderr.display().to_string()
                },
                terminal: request.terminal,
                spec: Some(spec),
                exec_id: request.exec_id.clone(),
            }))
            .await;
        let execed_at = begun.elapsed();
        let made = making.await.unwrap_or_else(|e| {
            Err(BackendError::io(
                "making the FIFOs of an exec",
                std::io::Error::other(e),
            ))
        });
        let mut fifos = match (execed, made) {
            (Ok(_), Ok(fifos)) => fifos,
            (Err(status), made) => {
                drop(made);
                fifo::remove(&set);
                return Err(map_status(status, "task", &id));
            }
            (Ok(_), Err(e)) => {
                let _ = self.delete_exec_impl(&id, &request.exec_id).await;
                fifo::remove(&set);
                return Err(e);
            }
        };
        // The process's Wait goes out now and runs while it starts (see `early_wait`).
        let early = {
            let this = self.clone();
            let (id, exec_id) = (id.clone(), request.exec_id.clone());
            tokio::spawn(async move { this.wait_call(&id, &exec_id).await })
        };
        self.inner.early_waits.put(&id, &request.exec_id, early);
        let fifos_at = begun.elapsed();
        let started = self
            .process_tasks()
            .start(self.bounded_req(api::StartRequest {
                container_id: id.clone(),
                exec_id: request.exec_id.clone(),
            }))
            .await;
        fifos.release_keepers();
        // The FIFOs are open on both sides now; their names are no longer needed, and
        // nothing waits for them to go.
        tokio::task::spawn_blocking(move || fifo::remove(&set));
        if let Err(status) = started {
            let _ = self.delete_exec_impl(&id, &request.exec_id).await;
            return Err(map_status(status, "exec", &request.exec_id));
        }
        tracing::debug!(
            container = %id,
            exec_id = %request.exec_id,
            exec_us = execed_at.as_micros(),
            fifos_us = (fifos_at - execed_at).as_micros(),
            start_us = (begun.elapsed() - fifos_at).as_micros(),
            "containerd exec started"
        );
        Ok(ExecIo {
            stdin: fifos
                .stdin
                .take()
                .map(|w| Box::pin(w) as crate::BoxedWriter),
            stdout: Box::pin(fifos.stdout),
            stderr: Box::pin(fifos.stderr),
        })
    }

    pub(crate) async fn wait_impl(&self, id: &str, exec_id: &str) -> Result<TaskExit> {
        match self.inner.early_waits.take(id, exec_id) {
            Some(early) => super::early_wait::answer(early).await,
            None => self.wait_call(id, exec_id).await,
        }
    }

    /// Unbounded, on the process connection: a process runs as long as it runs.
    async fn wait_call(&self, id: &str, exec_id: &str) -> Result<TaskExit> {
        let response = self
            .process_tasks()
            .wait(self.req(api::WaitRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
            }))
            .await
            .map_err(|s| map_status(s, "task", id))?
            .into_inner();
        Ok(TaskExit {
            pid: 0,
            exit_code: response.exit_status,
            exited_at_nanos: timestamp_nanos(response.exited_at.as_ref()),
        })
    }

    pub(crate) async fn resize_impl(
        &self,
        id: &str,
        exec_id: &str,
        width: u32,
        height: u32,
    ) -> Result<()> {
        self.tasks()
            .resize_pty(self.req(api::ResizePtyRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                width,
                height,
            }))
            .await
            .map(|_| ())
            .map_err(|s| map_status(s, "process", id))
    }

    pub(crate) async fn close_stdin_impl(&self, id: &str, exec_id: &str) -> Result<()> {
        self.tasks()
            .close_io(self.req(api::CloseIoRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                stdin: true,
            }))
            .await
            .map(|_| ())
            .map_err(|s| map_status(s, "process", id))
    }

    pub(crate) async fn delete_exec_impl(&self, id: &str, exec_id: &str) -> Result<()> {
        self.inner.early_waits.drop_one(id, exec_id);
        match self
            .process_tasks()
            .delete_process(self.bounded_req(api::DeleteProcessRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
            }))
            .await
        {
            Ok(_) => Ok(()),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(()),
            Err(status) => Err(map_status(status, "exec", exec_id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_started_task_s_pid_is_known_until_its_task_goes() {
        let pids = InitPids::default();
        assert_eq!(pids.get("sb1"), None, "unknown at first: the task is asked");
        pids.started("sb1", 42);
        assert_eq!(pids.get("sb1"), Some(42));
        pids.forget("sb1");
        assert_eq!(pids.get("sb1"), None);
    }

    #[test]
    fn a_stored_spec_takes_new_resources() {
        let resources = oci_spec::runtime::LinuxResourcesBuilder::default()
            .memory(
                oci_spec::runtime::LinuxMemoryBuilder::default()
                    .limit(2)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let merged: serde_json::Value =
            serde_json::from_slice(&merge_resources(b"{}", &resources).unwrap()).unwrap();
        assert_eq!(merged["linux"]["resources"]["memory"]["limit"], 2);
        assert!(merge_resources(b"not json", &resources).is_err());
    }
}
