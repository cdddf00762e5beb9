//! Domain types shared by every backend.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

/// Labels crius puts on every object it creates, so it can find its own after a restart.
pub const LABEL_MANAGED: &str = "io.crius.managed";
/// `sandbox` or `container`.
pub const LABEL_KIND: &str = "io.crius.kind";
/// The sandbox a container belongs to.
pub const LABEL_SANDBOX_ID: &str = "io.crius.sandbox-id";

#[derive(Debug, Clone)]
pub struct EngineVersion {
    pub name: String,
    pub version: String,
    pub revision: String,
}

/// An image as the engine stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    /// The config digest (`sha256:…`): CRI's image id.
    pub id: String,
    /// `repo:tag` names.
    pub repo_tags: Vec<String>,
    /// `repo@sha256:…` names.
    pub repo_digests: Vec<String>,
    /// Bytes of the image as stored (compressed layers + config + manifest).
    pub size: u64,
    /// The image config (OCI image config JSON), parsed.
    pub config: ImageConfig,
    /// Digests of the uncompressed layers, in order.
    pub diff_ids: Vec<String>,
    /// Chain id of the top layer: the snapshot a container's rootfs is prepared from.
    pub chain_id: String,
    /// Digest of the manifest that was selected for this node.
    pub manifest_digest: String,
    /// Engine-specific labels of the image.
    pub labels: HashMap<String, String>,
}

/// The parts of an OCI image config crius uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub user: String,
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub stop_signal: String,
    pub labels: HashMap<String, String>,
    pub volumes: Vec<String>,
    pub architecture: String,
    pub os: String,
    /// The raw config JSON, for verbose status.
    pub raw: String,
}

/// An image given as blobs, for import.
#[derive(Debug, Clone)]
pub struct ImageBundle {
    pub names: Vec<String>,
    pub manifest: Blob,
    pub config: Blob,
    pub layers: Vec<Blob>,
    /// Labels to set on the image record.
    pub labels: HashMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Blob {
    pub media_type: String,
    pub data: Vec<u8>,
}

/// How much an image filesystem measurement walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsWalk {
    /// What may have changed since the last measurement (the periodic measurement).
    Changed,
    /// Only what appeared since the last measurement; what went is dropped and the rest
    /// keeps its last figure. For right after a removal: quick whatever runs on the node.
    Appeared,
}

#[derive(Debug, Clone, Default)]
pub struct FsUsage {
    pub used_bytes: u64,
    pub inodes_used: u64,
    /// Directory the usage was measured at.
    pub mountpoint: String,
}

/// A container crius created.
#[derive(Debug, Clone)]
pub struct ContainerRecord {
    pub id: String,
    pub labels: HashMap<String, String>,
    pub image_name: String,
    pub created_at_nanos: i64,
}

/// Lifecycle state of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    Created,
    Running,
    Paused,
    Stopped,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskState {
    pub pid: u32,
    pub status: TaskStatus,
    pub exit_code: u32,
    /// Nanoseconds since the epoch; 0 when it has not exited.
    pub exited_at_nanos: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskExit {
    pub pid: u32,
    pub exit_code: u32,
    pub exited_at_nanos: i64,
}

pub type BoxedReader = Pin<Box<dyn AsyncRead + Send>>;
pub type BoxedWriter = Pin<Box<dyn AsyncWrite + Send>>;

/// How a container's init process is wired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskStdio {
    /// A pty instead of pipes (CRI `tty`).
    pub terminal: bool,
    /// Keep stdin open instead of empty (CRI `stdin`).
    pub stdin: bool,
}

/// The output of a container's init process.
pub struct TaskIo {
    pub stdout: BoxedReader,
    pub stderr: BoxedReader,
}

impl std::fmt::Debug for TaskIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TaskIo")
    }
}

#[derive(Debug)]
pub struct TaskStarted {
    pub pid: u32,
    pub io: TaskIo,
}

/// An extra process in a running container.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub container_id: String,
    pub exec_id: String,
    pub process: oci_spec::runtime::Process,
    pub stdin: bool,
    /// A pty instead of pipes: its output (stdout and stderr merged) arrives on `stdout`, and
    /// `stderr` reads nothing.
    pub terminal: bool,
    /// Where FIFOs for the process's I/O are made.
    pub io_dir: PathBuf,
}

pub struct ExecIo {
    pub stdin: Option<BoxedWriter>,
    pub stdout: BoxedReader,
    pub stderr: BoxedReader,
}

impl std::fmt::Debug for ExecIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExecIo")
    }
}

/// What an engine can do for the pods of one runtime handler, beyond what every engine
/// must. The shim refuses a request that needs a missing feature before any work, and
/// reports them to kubelet (`Status.runtime_handlers`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    /// Pods in a user namespace of their own (CRI `userns_options` mode POD).
    pub user_namespaces: bool,
    /// Bind mounts with uid/gid mappings (a user-namespaced pod's volumes need them).
    pub idmapped_mounts: bool,
    /// Read-only bind mounts whose submounts are read-only too.
    pub recursive_read_only_mounts: bool,
    /// Registry mirrors, credentials and CAs given with each pull (not only daemon-wide).
    pub per_pull_registry_settings: bool,
}

/// One process of a container: the one it was started with, or a process started in it
/// later (named by the caller, unique within the container).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProcessId {
    Init,
    Exec(String),
}

impl std::fmt::Display for ProcessId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProcessId::Init => f.write_str("init"),
            ProcessId::Exec(id) => write!(f, "exec {id}"),
        }
    }
}

/// What the engine tells crius happened, as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendEvent {
    /// A process of a container exited.
    TaskExit {
        container_id: String,
        process: ProcessId,
        exit: TaskExit,
    },
    /// The kernel's OOM killer hit the container.
    TaskOom { container_id: String },
    /// A task started.
    TaskStart { container_id: String, pid: u32 },
    /// The event stream was lost and is back; events in between may be missing.
    Reconnected,
}

/// Credentials for a registry, in the shape CRI's `AuthConfig` and Docker's `config.json`
/// use. Empty fields are unset. Which one wins: `registry_token` (sent as a bearer token),
/// then `identity_token` (an OAuth2 refresh token, sent as the password of user `<token>`,
/// as Docker does for registries that exchange it), then `username`/`password`, then
/// `auth` (base64 of `user:password`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RegistryCredentials {
    pub username: String,
    pub password: String,
    pub auth: String,
    pub identity_token: String,
    pub registry_token: String,
    /// The registry these are for (CRI `server_address`: `host[:port]`, or a URL such as
    /// `https://index.docker.io/v1/`). Set, they go to that host only, never to a mirror
    /// of it; empty, to the image's registry and its mirrors.
    pub server_address: String,
}

impl RegistryCredentials {
    /// True when no secret is set (an anonymous pull).
    pub fn is_empty(&self) -> bool {
        self.username.is_empty()
            && self.password.is_empty()
            && self.auth.is_empty()
            && self.identity_token.is_empty()
            && self.registry_token.is_empty()
    }
}

impl std::fmt::Debug for RegistryCredentials {
    // Requests get logged; secrets must not be.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |v: &str| if v.is_empty() { "" } else { "<redacted>" };
        f.debug_struct("RegistryCredentials")
            .field("username", &self.username)
            .field("password", &set(&self.password))
            .field("auth", &set(&self.auth))
            .field("identity_token", &set(&self.identity_token))
            .field("registry_token", &set(&self.registry_token))
            .field("server_address", &self.server_address)
            .finish()
    }
}

/// How registries are reached: the node's registry configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistrySettings {
    /// Registry host (`docker.io`, `127.0.0.1:5000`) → mirror endpoints
    /// (`http://host:port`, `https://host`), tried in order before the host itself.
    pub mirrors: std::collections::BTreeMap<String, Vec<String>>,
    /// Hosts reached over plain HTTP. `localhost:*` and `127.0.0.1:*` always are.
    pub insecure: Vec<String>,
    /// Credentials per host, used when the request carries none.
    pub auths: std::collections::BTreeMap<String, RegistryCredentials>,
    /// Extra CA certificate (PEM file) trusted for a host.
    pub ca_files: std::collections::BTreeMap<String, PathBuf>,
}

/// A request to pull an image from a registry.
#[derive(Debug, Clone)]
pub struct PullImage {
    /// A normalised reference: `host/repo:tag` or `host/repo@sha256:…`.
    pub reference: String,
    /// Credentials from the caller; `None` falls back to `registry.auths`.
    pub credentials: Option<RegistryCredentials>,
    pub registry: RegistrySettings,
    /// Cancel the pull when no bytes arrive for this long; zero disables.
    pub progress_timeout: std::time::Duration,
}

/// An OCI runtime a runtime handler (RuntimeClass) names: how the engine runs its pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeHandler {
    pub name: String,
    /// containerd's runtime type: the runc v2 shim (`io.containerd.runc.v2`) or another.
    pub runtime_type: String,
    /// The OCI runtime binary the runc shim runs (its `BinaryName`); what the handler can do
    /// is read from `<binary> features`.
    pub binary: String,
    /// The runtime's state directory (the runc shim's `Root`), when not its default.
    pub root: Option<PathBuf>,
}
