//! The containerd backend: containerd's gRPC API through `containerd-client`.
//!
//! Everything crius creates lives in its own containerd namespace (default `crius`), so it
//! can run beside containerd's built-in CRI (`k8s.io`) on the same daemon.

mod apply;
mod containers;
mod early_wait;
mod events;
mod fifo;
mod images;
mod local_content;
mod pull;
mod usage;
mod view;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use containerd_client::services::v1 as api;
use containerd_client::tonic::transport::{Channel, Endpoint};
use tokio::sync::mpsc;
use tonic::metadata::MetadataValue;
use tonic::Request;

use crate::{
    Backend, BackendError, BackendEvent, BoxedWriter, ContainerRecord, CreateContainer,
    CreatedContainer, EngineVersion, ExecIo, ExecRequest, Features, FsUsage, FsWalk, ImageBundle,
    ImageRecord, ProcessId, Result, TaskExit, TaskStarted, TaskState, TaskStdio,
};

const ENGINE: &str = "containerd";
/// The snapshotter crius unpacks images into and prepares rootfs from.
pub const SNAPSHOTTER: &str = "overlayfs";
/// The runtime every task runs on.
pub const RUNTIME: &str = "io.containerd.runc.v2";
/// The OCI runtime the runc v2 shim runs (from containerd's PATH, as crius's).
pub(crate) const RUNC_BINARY: &str = "runc";

/// Largest gRPC message crius sends to or accepts from containerd. Lists of a full node
/// (1000 containers with their OCI specs) pass tonic's 4 MiB default; containerd's own
/// server limit is 16 MiB, so the lists that can grow past it are streamed.
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// How long a call to containerd may take before crius gives up on it, except a `Wait`,
/// which lasts as long as the process it waits for.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Settings of the containerd backend.
#[derive(Debug, Clone)]
pub struct ContainerdConfig {
    /// Path of containerd's gRPC socket.
    pub address: PathBuf,
    /// The containerd namespace crius's objects live in.
    pub namespace: String,
    /// Write pulled layers into containerd's content directory when it is visible from
    /// here (see `local_content`), instead of streaming them through `Content.Write`.
    pub local_content: bool,
    /// The runtime handlers crius runs pods with; none means one, `runc`, on the runc shim.
    pub handlers: Vec<crate::RuntimeHandler>,
}

/// The handler crius runs when none is configured: runc on the runc v2 shim.
pub fn default_handler() -> crate::RuntimeHandler {
    crate::RuntimeHandler {
        name: RUNC_BINARY.to_string(),
        runtime_type: RUNTIME.to_string(),
        binary: RUNC_BINARY.to_string(),
        root: None,
    }
}

/// A containerd backend. Cheap to clone.
#[derive(Clone)]
pub struct Containerd {
    inner: Arc<Inner>,
}

struct Inner {
    channel: Channel,
    /// A second connection for the control of processes (exec, start, wait, delete of an
    /// exec'd process, waits for any): kubelet's probes do not queue behind a pull's or a
    /// listing's bytes on the first, and it has no timeout of its own, because a `Wait`
    /// lasts as long as its process (a grace period, an exec session); the other calls on
    /// it carry [`CALL_TIMEOUT`] themselves.
    processes: Channel,
    namespace: String,
    namespace_header: MetadataValue<tonic::metadata::Ascii>,
    images: images::ImageCache,
    pulls: pull::InFlight,
    local_content_enabled: bool,
    /// Found at the first pull: containerd may not be up when crius starts.
    local_content: tokio::sync::OnceCell<Option<local_content::LocalContent>>,
    /// Per-snapshot disk usage kept between ImageFsInfo measurements.
    snapshot_usage: Arc<std::sync::Mutex<usage::SnapshotUsage>>,
    deleted_tasks: DeletedTasks,
    init_pids: containers::InitPids,
    early_waits: early_wait::EarlyWaits,
    /// What `runc features` said when the backend was made.
    /// Each handler with what its OCI runtime said it supports, read once at start.
    handlers:
        std::collections::HashMap<String, (crate::RuntimeHandler, crate::oci::RuntimeFeatures)>,
}

/// Containers whose task this backend deleted (after it exited) and that have had no task
/// since: their removal need not ask containerd for a task first, one round trip less on
/// every removal of an exited container. Not kept across restarts (then it asks).
#[derive(Default)]
struct DeletedTasks(std::sync::Mutex<std::collections::HashSet<String>>);

impl DeletedTasks {
    fn deleted(&self, id: &str) {
        if let Ok(mut ids) = self.0.lock() {
            ids.insert(id.to_owned());
        }
    }

    /// A task is about to be made: the container may have one from now on.
    fn started(&self, id: &str) {
        self.take(id);
    }

    /// Whether the container's task is known deleted; forgets it.
    fn take(&self, id: &str) -> bool {
        self.0.lock().is_ok_and(|mut ids| ids.remove(id))
    }
}

impl Containerd {
    /// Build a client. The connection is made lazily and re-made after containerd restarts,
    /// so this succeeds even while containerd is down.
    pub fn new(config: ContainerdConfig) -> Result<Self> {
        let endpoint = Endpoint::try_from("http://[::]:0")
            .map_err(|e| BackendError::InvalidArgument(format!("containerd endpoint: {e}")))?
            .connect_timeout(Duration::from_secs(5));
        let channel = lazy_channel(endpoint.clone().timeout(CALL_TIMEOUT), &config.address);
        let processes = lazy_channel(endpoint, &config.address);
        let configured = if config.handlers.is_empty() {
            vec![default_handler()]
        } else {
            config.handlers
        };
        let mut handlers = std::collections::HashMap::new();
        for handler in configured {
            let (features, unknown) = crate::oci::RuntimeFeatures::probe(&handler.binary);
            if let Some(why) = unknown {
                tracing::warn!(handler = %handler.name, reason = %why, "the OCI runtime did not say what it supports; assuming no optional features");
            }
            handlers.insert(handler.name.clone(), (handler, features));
        }
        let namespace_header = config.namespace.parse().map_err(|_| {
            BackendError::InvalidArgument(format!(
                "containerd namespace {:?} is not a valid header value",
                config.namespace
            ))
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                channel,
                processes,
                namespace: config.namespace,
                namespace_header,
                images: images::ImageCache::default(),
                pulls: pull::InFlight::default(),
                local_content_enabled: config.local_content,
                local_content: tokio::sync::OnceCell::new(),
                snapshot_usage: Arc::default(),
                deleted_tasks: DeletedTasks::default(),
                init_pids: containers::InitPids::default(),
                early_waits: early_wait::EarlyWaits::default(),
                handlers,
            }),
        })
    }

    /// The containerd namespace in use.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    fn channel(&self) -> Channel {
        self.inner.channel.clone()
    }

    /// Wrap a message in a request carrying the namespace header.
    fn req<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert("containerd-namespace", self.inner.namespace_header.clone());
        request
    }

    /// A request on the process connection, which has no timeout of its own: for the calls
    /// that answer at once, bounded as on the first.
    fn bounded_req<T>(&self, message: T) -> Request<T> {
        let mut request = self.req(message);
        request.set_timeout(CALL_TIMEOUT);
        request
    }

    /// A request that also runs under a lease, so the garbage collector keeps what it makes.
    fn leased_req<T>(&self, message: T, lease: &str) -> Result<Request<T>> {
        let mut request = self.req(message);
        let value = lease
            .parse()
            .map_err(|_| BackendError::InvalidArgument(format!("lease id {lease:?}")))?;
        request.metadata_mut().insert("containerd-lease", value);
        Ok(request)
    }

    fn containers(&self) -> api::containers_client::ContainersClient<Channel> {
        api::containers_client::ContainersClient::new(self.channel())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
    fn tasks(&self) -> api::tasks_client::TasksClient<Channel> {
        api::tasks_client::TasksClient::new(self.channel())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
    /// Tasks on the process connection (see [`Inner::processes`]).
    fn process_tasks(&self) -> api::tasks_client::TasksClient<Channel> {
        api::tasks_client::TasksClient::new(self.inner.processes.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
    fn images_client(&self) -> api::images_client::ImagesClient<Channel> {
        api::images_client::ImagesClient::new(self.channel())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
    fn content(&self) -> api::content_client::ContentClient<Channel> {
        api::content_client::ContentClient::new(self.channel())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
    fn snapshots(&self) -> api::snapshots::snapshots_client::SnapshotsClient<Channel> {
        api::snapshots::snapshots_client::SnapshotsClient::new(self.channel())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
    fn diff(&self) -> api::diff_client::DiffClient<Channel> {
        api::diff_client::DiffClient::new(self.channel())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
    fn leases(&self) -> api::leases_client::LeasesClient<Channel> {
        api::leases_client::LeasesClient::new(self.channel())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
    fn introspection(&self) -> api::introspection_client::IntrospectionClient<Channel> {
        api::introspection_client::IntrospectionClient::new(self.channel())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

/// A channel to containerd's socket at `path`, connected at its first call and again after
/// containerd restarts.
fn lazy_channel(endpoint: Endpoint, path: &std::path::Path) -> Channel {
    let path = path.to_path_buf();
    endpoint.connect_with_connector_lazy(tower::service_fn(move |_| {
        let path = path.clone();
        async move {
            let stream = tokio::net::UnixStream::connect(path).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    }))
}

/// Map a containerd gRPC error into a backend error, naming what was asked for.
pub(crate) fn map_status(status: tonic::Status, kind: &'static str, id: &str) -> BackendError {
    use tonic::Code;
    match status.code() {
        Code::NotFound => BackendError::NotFound {
            kind,
            id: id.to_string(),
        },
        Code::AlreadyExists => BackendError::AlreadyExists {
            kind,
            id: id.to_string(),
        },
        Code::FailedPrecondition => {
            BackendError::FailedPrecondition(format!("{kind} {id:?}: {}", status.message()))
        }
        Code::InvalidArgument => {
            BackendError::InvalidArgument(format!("{kind} {id:?}: {}", status.message()))
        }
        Code::DeadlineExceeded => {
            BackendError::DeadlineExceeded(format!("{kind} {id:?}: {}", status.message()))
        }
        Code::Unavailable | Code::Unknown if is_transport(&status) => BackendError::Unavailable {
            engine: ENGINE,
            message: status.message().to_string(),
        },
        Code::Unavailable => BackendError::Unavailable {
            engine: ENGINE,
            message: status.message().to_string(),
        },
        _ => BackendError::Engine {
            engine: ENGINE,
            message: format!("{kind} {id:?}: {}", status.message()),
        },
    }
}

fn is_transport(status: &tonic::Status) -> bool {
    let message = status.message();
    message.contains("transport error") || message.contains("connection")
}

pub(crate) fn timestamp_nanos(ts: Option<&prost_types::Timestamp>) -> i64 {
    ts.map(|t| {
        t.seconds
            .saturating_mul(1_000_000_000)
            .saturating_add(i64::from(t.nanos))
    })
    .unwrap_or(0)
}

pub(crate) fn now_timestamp() -> prost_types::Timestamp {
    let now = chrono::Utc::now();
    prost_types::Timestamp {
        seconds: now.timestamp(),
        nanos: i32::try_from(now.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

#[async_trait]
impl Backend for Containerd {
    fn features(&self, handler: &str) -> Features {
        // What the handler's OCI runtime itself reports, with crius's part (a pod's own user
        // namespace is made by its pause process, the rootfs remapped by copy-up; pulls
        // carry their own settings). A handler this backend does not run can do nothing.
        let Some((_, runtime)) = self.inner.handlers.get(handler) else {
            return Features::default();
        };
        let runtime = *runtime;
        Features {
            user_namespaces: runtime.user_namespaces,
            idmapped_mounts: runtime.idmapped_mounts,
            recursive_read_only_mounts: runtime.recursive_read_only,
            per_pull_registry_settings: true,
        }
    }

    fn name(&self) -> &'static str {
        ENGINE
    }

    async fn version(&self) -> Result<EngineVersion> {
        let response = api::version_client::VersionClient::new(self.channel())
            .version(Request::new(()))
            .await
            .map_err(|s| map_status(s, "version", ""))?
            .into_inner();
        Ok(EngineVersion {
            name: ENGINE.to_string(),
            version: response.version,
            revision: response.revision,
        })
    }

    async fn list_images(&self) -> Result<Vec<ImageRecord>> {
        self.list_images_impl().await
    }

    async fn image(&self, reference: &str) -> Result<Option<ImageRecord>> {
        self.image_impl(reference).await
    }

    async fn remove_image_name(&self, name: &str, collect: bool) -> Result<()> {
        self.remove_image_name_impl(name, collect).await
    }

    async fn import_image(&self, bundle: ImageBundle) -> Result<ImageRecord> {
        self.import_image_impl(bundle).await
    }

    async fn pull_image(&self, request: crate::PullImage) -> Result<ImageRecord> {
        self.pull_image_impl(request).await
    }

    async fn read_image_files(
        &self,
        image_id: &str,
        paths: &[&str],
    ) -> Result<std::collections::HashMap<String, Vec<u8>>> {
        self.read_image_files_impl(image_id, paths).await
    }

    async fn image_fs_usage(&self, walk: FsWalk) -> Result<FsUsage> {
        self.image_fs_usage_impl(walk).await
    }

    async fn create_container(&self, request: CreateContainer) -> Result<CreatedContainer> {
        self.create_container_impl(request).await
    }

    async fn list_containers(&self) -> Result<Vec<ContainerRecord>> {
        self.list_containers_impl().await
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        self.remove_container_impl(id).await
    }

    async fn start_task(
        &self,
        id: &str,
        io_dir: &std::path::Path,
        stdio: TaskStdio,
    ) -> Result<TaskStarted> {
        self.start_task_impl(id, io_dir, stdio).await
    }

    async fn reattach_task_io(
        &self,
        id: &str,
        io_dir: &std::path::Path,
    ) -> Result<Option<crate::TaskIo>> {
        fifo::reopen_task_io(id, io_dir)
    }

    async fn task_state(&self, id: &str) -> Result<Option<TaskState>> {
        self.task_state_impl(id).await
    }

    async fn kill_task(&self, id: &str, signal: u32, all: bool) -> Result<()> {
        self.kill_impl(id, "", signal, all).await
    }

    async fn delete_task(&self, id: &str) -> Result<Option<TaskExit>> {
        self.delete_task_impl(id).await
    }

    async fn update_resources(
        &self,
        id: &str,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        self.update_resources_impl(id, resources).await
    }

    async fn exec(&self, request: ExecRequest) -> Result<ExecIo> {
        self.exec_impl(request).await
    }

    async fn wait(&self, id: &str, process: &ProcessId) -> Result<TaskExit> {
        self.wait_impl(id, exec_id(process)).await
    }

    async fn kill_exec(&self, id: &str, exec_id: &str, signal: u32) -> Result<()> {
        self.kill_impl(id, exec_id, signal, false).await
    }

    async fn delete_exec(&self, id: &str, exec_id: &str) -> Result<()> {
        self.delete_exec_impl(id, exec_id).await
    }

    async fn resize(&self, id: &str, process: &ProcessId, width: u32, height: u32) -> Result<()> {
        self.resize_impl(id, exec_id(process), width, height).await
    }

    async fn close_stdin(&self, id: &str, process: &ProcessId) -> Result<()> {
        self.close_stdin_impl(id, exec_id(process)).await
    }

    async fn attach_stdin(&self, _id: &str, io_dir: &std::path::Path) -> Result<BoxedWriter> {
        Ok(Box::pin(fifo::open_init_stdin(io_dir)?))
    }

    fn subscribe(&self) -> mpsc::Receiver<BackendEvent> {
        events::spawn(self.clone())
    }
}

/// containerd names a container's init process by the empty exec id.
fn exec_id(process: &ProcessId) -> &str {
    match process {
        ProcessId::Init => "",
        ProcessId::Exec(id) => id,
    }
}

#[cfg(test)]
mod tests {
    use super::DeletedTasks;

    #[test]
    fn a_deleted_task_is_known_until_the_removal_or_a_new_start() {
        let tasks = DeletedTasks::default();
        assert!(
            !tasks.take("a"),
            "nothing is known at first: the removal looks"
        );
        tasks.deleted("a");
        assert!(tasks.take("a"), "deleted by this backend: no look");
        assert!(!tasks.take("a"), "taken once");
        tasks.deleted("b");
        tasks.started("b");
        assert!(
            !tasks.take("b"),
            "a task started since: the removal looks again"
        );
    }
}
