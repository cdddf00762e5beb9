//! Containers and tasks in containerd.

use std::collections::HashMap;
use std::path::Path;

use containerd_client::services::v1 as api;
use containerd_client::services::v1::snapshots as snap;
use containerd_client::types::v1::Status as ProcessStatus;
use prost::Message;
use prost_types::Any;

use super::{fifo, map_status, now_timestamp, timestamp_nanos, Containerd, RUNTIME, SNAPSHOTTER};
use crate::{
    BackendError, ContainerRecord, CreateContainer, ExecIo, ExecRequest, Result, TaskExit,
    TaskStarted, TaskState, TaskStatus, TaskStdio, LABEL_MANAGED,
};

const SPEC_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const PROCESS_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
const RESOURCES_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";
const RUNC_OPTIONS_TYPE: &str = "containerd.runc.v1.Options";

/// The one field of the runc shim's `Options` crius sets (wire field 9: `systemd_cgroup`).
#[derive(Clone, PartialEq, Message)]
struct RuncOptions {
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

impl Containerd {
    /// The container record first, then its rootfs snapshot (key = container id) on the
    /// image's top layer. The record names the snapshot before it exists, so the garbage
    /// collector keeps the snapshot from the moment it is made, with no lease to create and
    /// delete (two metadata writes, each synced). A failure removes what was made; a crash
    /// in between leaves a labelled record, which crius's recovery removes.
    pub(crate) async fn create_container_impl(&self, request: CreateContainer) -> Result<()> {
        let started = std::time::Instant::now();
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
        self.create_record(&request).await?;
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
        Ok(())
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
        if let Some(linux) = request.spec.linux() {
            let uids = linux.uid_mappings().clone().unwrap_or_default();
            let gids = linux.gid_mappings().clone().unwrap_or_default();
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
    async fn create_record(&self, request: &CreateContainer) -> Result<()> {
        let id = request.id.clone();
        let options = if request.systemd_cgroup {
            Some(Any {
                type_url: RUNC_OPTIONS_TYPE.to_string(),
                value: RuncOptions {
                    systemd_cgroup: true,
                }
                .encode_to_vec(),
            })
        } else {
            None
        };
        let spec = json_any(SPEC_TYPE, &request.spec)?;
        let mut labels = request.labels.clone();
        labels.insert(LABEL_MANAGED.to_string(), "true".to_string());
        let container = api::Container {
            id: id.clone(),
            labels,
            image: request.image_name.clone(),
            runtime: Some(api::container::Runtime {
                name: RUNTIME.to_string(),
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
                let response = response.into_inner();
                Ok(Some(TaskExit {
                    pid: response.pid,
                    exit_code: response.exit_status,
                    exited_at_nanos: timestamp_nanos(response.exited_at.as_ref()),
                }))
            }
            Err(status) if status.code() == tonic::Code::NotFound => {
                self.inner.deleted_tasks.deleted(id);
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
        let id = request.container_id.clone();
        let set = fifo::paths(
            &request.io_dir,
            &format!("{}-", request.exec_id),
            request.stdin,
        );
        let mut fifos = fifo::create(&set)?;
        let spec = json_any(PROCESS_TYPE, &request.process)?;
        let execed = self
            .tasks()
            .exec(self.req(api::ExecProcessRequest {
                container_id: id.clone(),
                stdin: set.stdin_arg(),
                stdout: set.stdout.display().to_string(),
                stderr: set.stderr.display().to_string(),
                terminal: false,
                spec: Some(spec),
                exec_id: request.exec_id.clone(),
            }))
            .await;
        if let Err(status) = execed {
            fifos.release_keepers();
            fifo::remove(&set);
            return Err(map_status(status, "task", &id));
        }
        let started = self
            .tasks()
            .start(self.req(api::StartRequest {
                container_id: id.clone(),
                exec_id: request.exec_id.clone(),
            }))
            .await;
        fifos.release_keepers();
        // The FIFOs are open on both sides now; their names are no longer needed.
        fifo::remove(&set);
        if let Err(status) = started {
            let _ = self.delete_exec_impl(&id, &request.exec_id).await;
            return Err(map_status(status, "exec", &request.exec_id));
        }
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
        let response = self
            .tasks()
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

    pub(crate) async fn delete_exec_impl(&self, id: &str, exec_id: &str) -> Result<()> {
        match self
            .tasks()
            .delete_process(self.req(api::DeleteProcessRequest {
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
