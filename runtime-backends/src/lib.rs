//! The `Backend` trait crius runs pods on — what any container engine must do for it —
//! and its implementations.
//!
//! The trait speaks intent: a container is described by what it is to be (its process, per
//! kind of namespace the sandbox's, the host's, a private one or another container's, its
//! mounts, devices, limits and confinement; `CreateContainer`), and each engine renders
//! that in its own terms and reports what it made (its cgroup). Nothing here knows about
//! CRI or protobuf for CRI: the shim converts CRI requests into these domain types.
//! containerd's own types never leave `containerd/`, so a Docker backend can implement the
//! same trait; what both render alike (an OCI runtime spec, cgroup names) is shared in
//! `oci::render` and `cgroup`.

pub mod background;
pub mod cgroup;
pub mod containerd;
pub mod disk;
mod error;
#[cfg(feature = "fake")]
pub mod fake;
mod intent;
pub mod mountinfo;
pub mod oci;
pub mod reference;
mod types;

pub use error::{BackendError, Result};
pub use intent::*;
pub use types::*;

use async_trait::async_trait;
use tokio::sync::mpsc;

/// What crius needs from a container engine.
///
/// Every method is safe to call concurrently. Methods that remove things succeed when the
/// thing is already gone (`NotFound` is reported only where the caller must know).
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Short name of the engine (`containerd`, `docker`).
    fn name(&self) -> &'static str;

    /// The engine's version; also the cheapest liveness probe.
    async fn version(&self) -> Result<EngineVersion>;

    /// What the engine can do for pods of runtime handler `handler` (`""` is the default).
    fn features(&self, handler: &str) -> Features;

    // ---- images ----

    /// Every image the engine holds, with its tags and digests.
    async fn list_images(&self) -> Result<Vec<ImageRecord>>;

    /// Resolve a tag, digest reference or image id to the image it names.
    async fn image(&self, reference: &str) -> Result<Option<ImageRecord>>;

    /// Remove one name (tag or digest reference) of an image. Removing the last name
    /// removes the image. A missing name is not an error.
    /// With `collect`, the engine also frees what nothing else holds (layers, snapshots)
    /// before answering, so the disk space shows at once; pass it with the last name.
    async fn remove_image_name(&self, name: &str, collect: bool) -> Result<()>;

    /// Store an image given as its blobs (manifest, config, layers) under `names`, unpacked
    /// and ready to run.
    async fn import_image(&self, bundle: ImageBundle) -> Result<ImageRecord>;

    /// Pull an image from a registry (platform of this node), store it under its tag and
    /// `repo@digest` names, unpacked and ready to run. Concurrent pulls of one reference
    /// share one download. A failed pull leaves nothing behind.
    ///
    /// Errors: `NotFound` (no such tag/digest/repository), `Unauthenticated`
    /// (credentials missing or rejected), `Unavailable` (registry
    /// unreachable), `DeadlineExceeded` (no progress for `progress_timeout`),
    /// `InvalidArgument` (a blob does not match its digest, malformed manifest),
    /// `FailedPrecondition` (unsupported media type or no manifest for this platform).
    async fn pull_image(&self, request: PullImage) -> Result<ImageRecord>;

    /// Read small files (e.g. `/etc/passwd`) from an image's root filesystem. Files that
    /// are missing, or are symlinks, are left out of the answer.
    async fn read_image_files(
        &self,
        image_id: &str,
        paths: &[&str],
    ) -> Result<std::collections::HashMap<String, Vec<u8>>>;

    /// Usage of the filesystem that holds image layers; `walk` says how much is walked.
    async fn image_fs_usage(&self, walk: FsWalk) -> Result<FsUsage>;

    // ---- containers ----

    /// Create a container (not yet running) from an image, as `request` describes it: the
    /// engine renders the intent in its own terms (joining the namespaces it names, naming
    /// the cgroup under the parent given) and reports what it made. A failure leaves
    /// nothing behind.
    async fn create_container(&self, request: CreateContainer) -> Result<CreatedContainer>;

    /// Every container crius created in this engine, with its labels.
    async fn list_containers(&self) -> Result<Vec<ContainerRecord>>;

    /// Remove a container with everything the engine keeps for it (its process, if any
    /// still runs, is killed first; its writable layer goes). Missing is fine.
    async fn remove_container(&self, id: &str) -> Result<()>;

    /// Start the container's process. Its stdout/stderr are returned as readers; with
    /// `stdio.terminal` the process gets a pty whose output arrives on stdout. With
    /// `stdio.stdin` its stdin stays open (reading it waits) for as long as it runs, crius
    /// restarts included; without, stdin is empty.
    async fn start_task(
        &self,
        id: &str,
        io_dir: &std::path::Path,
        stdio: TaskStdio,
    ) -> Result<TaskStarted>;

    /// Re-open the output of a task that outlived crius (after a restart).
    async fn reattach_task_io(&self, id: &str, io_dir: &std::path::Path) -> Result<Option<TaskIo>>;

    /// The task's current state, or `None` when the container has no task.
    async fn task_state(&self, id: &str) -> Result<Option<TaskState>>;

    /// Send a signal to the container's init process (`all`: every process in it).
    async fn kill_task(&self, id: &str, signal: u32, all: bool) -> Result<()>;

    /// Delete a task that has exited (or was never started), returning its exit.
    async fn delete_task(&self, id: &str) -> Result<Option<TaskExit>>;

    /// Apply new resource limits: to the running task, or, before the container started, to
    /// what it will start with.
    async fn update_resources(
        &self,
        id: &str,
        resources: &oci_spec_types::LinuxResources,
    ) -> Result<()>;

    /// Start an extra process in a running container.
    async fn exec(&self, request: ExecRequest) -> Result<ExecIo>;

    /// Wait for a process of the container to exit.
    async fn wait(&self, id: &str, process: &ProcessId) -> Result<TaskExit>;

    /// Signal an exec'd process.
    async fn kill_exec(&self, id: &str, exec_id: &str, signal: u32) -> Result<()>;

    /// Remove an exec'd process once it exited.
    async fn delete_exec(&self, id: &str, exec_id: &str) -> Result<()>;

    /// Change the terminal size of a process started with a pty.
    async fn resize(&self, id: &str, process: &ProcessId, width: u32, height: u32) -> Result<()>;

    /// Close the stdin of a process (what is already written is still read first). The
    /// caller drops its own stdin writer before.
    async fn close_stdin(&self, id: &str, process: &ProcessId) -> Result<()>;

    /// A new writer on the stdin of a container's init process, started with
    /// `TaskStdio::stdin` (Attach). Several may exist one after another; none closes stdin.
    async fn attach_stdin(&self, id: &str, io_dir: &std::path::Path) -> Result<BoxedWriter>;

    /// Subscribe to task events. The stream survives engine restarts: after a reconnect
    /// it yields [`BackendEvent::Reconnected`] so the caller can reconcile.
    fn subscribe(&self) -> mpsc::Receiver<BackendEvent>;
}

/// OCI types used in the trait, re-exported so the shim and backends agree on one version.
pub mod oci_spec_types {
    pub use oci_spec::runtime::{LinuxResources, Process, Spec};

    /// Put the kinds of resources `resources` sets (cpu, memory, …) into a JSON OCI spec in
    /// place of its own; the kinds it leaves unset (the device rules) stay as they are.
    pub fn merge_resources(
        spec: &mut serde_json::Value,
        resources: &LinuxResources,
    ) -> Result<(), String> {
        let serde_json::Value::Object(given) =
            serde_json::to_value(resources).map_err(|e| e.to_string())?
        else {
            return Err("the resources are not a JSON object".into());
        };
        let current = spec
            .as_object_mut()
            .ok_or("the spec is not a JSON object")?
            .entry("linux")
            .or_insert_with(|| serde_json::json!({}))
            .as_object_mut()
            .ok_or("`linux` is not an object")?
            .entry("resources")
            .or_insert_with(|| serde_json::json!({}))
            .as_object_mut()
            .ok_or("`linux.resources` is not an object")?;
        for (kind, value) in given {
            if !value.is_null() {
                current.insert(kind, value);
            }
        }
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use oci_spec::runtime::{LinuxCpuBuilder, LinuxMemoryBuilder, LinuxResourcesBuilder};

        fn merge(
            spec: &serde_json::Value,
            resources: &LinuxResources,
        ) -> Result<serde_json::Value, String> {
            let mut spec = spec.clone();
            merge_resources(&mut spec, resources).map(|()| spec)
        }

        #[test]
        fn new_resources_replace_their_kinds_and_keep_the_device_rules() {
            let spec = serde_json::json!({
                "ociVersion": "1.0.2",
                "linux": {
                    "resources": {
                        "devices": [{"allow": false, "access": "rwm"}],
                        "memory": {"limit": 1, "swap": 1},
                    },
                    "namespaces": [{"type": "pid"}],
                },
            });
            let resources = LinuxResourcesBuilder::default()
                .memory(LinuxMemoryBuilder::default().limit(2).build().unwrap())
                .cpu(LinuxCpuBuilder::default().shares(512u64).build().unwrap())
                .build()
                .unwrap();
            let merged = merge(&spec, &resources).unwrap();
            let got = &merged["linux"]["resources"];
            assert_eq!(got["devices"], spec["linux"]["resources"]["devices"]);
            assert_eq!(got["memory"]["limit"], 2);
            // The memory kind is replaced whole: the old swap limit is gone.
            assert!(got["memory"].get("swap").is_none(), "{got}");
            assert_eq!(got["cpu"]["shares"], 512);
            assert_eq!(merged["linux"]["namespaces"], spec["linux"]["namespaces"]);
            assert_eq!(merged["ociVersion"], "1.0.2");
            // A spec without `linux` gets one; one that is not an object is an error.
            let bare = merge(&serde_json::json!({}), &resources).unwrap();
            assert_eq!(bare["linux"]["resources"]["memory"]["limit"], 2);
            assert!(merge(&serde_json::json!([1]), &resources).is_err());
            assert!(merge(&serde_json::json!({"linux": 3}), &resources).is_err());
        }
    }
}
