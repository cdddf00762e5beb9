//! What a container is to be, in terms any engine can carry out: the shim resolves a pod's
//! or container's CRI config into these values (users, capabilities, profiles, devices and
//! limits already decided), and each backend renders them in its own form — a full OCI
//! runtime spec with `/proc/<pid>/ns` paths for containerd, `Config`/`HostConfig` with
//! `container:<id>` modes for Docker.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

/// Where a container gets one kind of namespace from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceMode {
    /// Its pod sandbox's: the namespaces the sandbox's own container holds.
    Sandbox,
    /// The host's.
    Host,
    /// A new one of its own.
    Private,
    /// The one of another container, named by id; that container must be running.
    Container(String),
    /// An existing namespace pinned at a path (a bind-mounted nsfs file crius made).
    Path(PathBuf),
}

/// The namespaces of a container, per kind. It always gets a mount namespace of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespaces {
    pub network: NamespaceMode,
    pub ipc: NamespaceMode,
    pub uts: NamespaceMode,
    pub pid: NamespaceMode,
    /// Not the host's: the ids of the namespace are mapped by [`CreateContainer::id_mappings`](crate::CreateContainer).
    pub user: NamespaceMode,
    pub cgroup: NamespaceMode,
}

/// A range of ids seen inside a user namespace (or through an idmapped mount) as other ids
/// on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMapping {
    pub container_id: u32,
    pub host_id: u32,
    pub size: u32,
}

/// The uid and gid maps of a user namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMappings {
    pub uids: Vec<IdMapping>,
    pub gids: Vec<IdMapping>,
}

/// Who the container's process runs as, already resolved to numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, sorted, holding the primary gid too.
    pub additional_gids: Vec<u32>,
}

/// The container's init process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerProcess {
    /// The command and its arguments (never empty).
    pub args: Vec<String>,
    /// `KEY=value` entries, in order.
    pub env: Vec<String>,
    /// Absolute working directory.
    pub cwd: String,
    pub user: ProcessUser,
    /// A pty instead of pipes.
    pub terminal: bool,
    /// Already clamped to what the node allows; `None` leaves the engine's default.
    pub oom_score_adj: Option<i32>,
}

/// The capabilities a process holds, as final sets of `CAP_…` names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The bounding, permitted and effective sets.
    pub granted: BTreeSet<String>,
    /// The ambient set (also inheritable: the kernel raises only inheritable ones).
    pub ambient: BTreeSet<String>,
}

/// What confines the container, every choice already resolved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Security {
    /// Host devices and writable `/sys` (the capabilities and devices are given in full).
    pub privileged: bool,
    pub readonly_rootfs: bool,
    pub capabilities: Capabilities,
    pub no_new_privileges: bool,
    /// The seccomp filter to load, resolved from its profile; `None` runs unconfined.
    pub seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
    /// An AppArmor profile that is loaded on the node; `None` runs unconfined.
    pub apparmor_profile: Option<String>,
    /// The SELinux label of the process and its mounts; `None` where SELinux is off.
    pub selinux_label: Option<String>,
    /// Paths made inaccessible and read-only inside the container (empty: none).
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
}

/// How mount events propagate between the host and a bind mount.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Propagation {
    /// None either way.
    #[default]
    Private,
    /// Host mounts appear in the container (a slave mount).
    HostToContainer,
    /// Both ways (a shared mount).
    Bidirectional,
}

/// A host path bind-mounted into the container. Beyond these the engine gives every
/// container its standard filesystems (/proc, /dev, /sys …), except where one of these is
/// mounted at the same place (a bind at /dev replaces all of /dev's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mount {
    /// Absolute and clean (no `.`, `..` or doubled slashes) inside the container.
    pub destination: String,
    /// Path on the host.
    pub source: String,
    pub readonly: bool,
    /// Submounts read-only too (needs `readonly`).
    pub recursive_read_only: bool,
    pub propagation: Propagation,
    /// An idmapped mount when `uid_mappings` is not empty.
    pub uid_mappings: Vec<IdMapping>,
    pub gid_mappings: Vec<IdMapping>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Char,
    Block,
    Fifo,
}

/// A host device node made available in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Where it appears in the container.
    pub container_path: String,
    /// The node on the host.
    pub host_path: String,
    pub kind: DeviceKind,
    pub major: i64,
    pub minor: i64,
    pub file_mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// What the container may do with it: a combination of `r`, `w` and `m`.
    pub permissions: String,
}

/// Where the container's cgroup goes; the engine names the cgroup itself and reports it
/// (`CreatedContainer::cgroup_path`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupRequest {
    /// The pod's cgroup in the driver's form: a cgroupfs path (`/kubepods/pod1`) or a
    /// systemd slice (`kubepods-pod1.slice`).
    pub parent: String,
    /// cgroups are managed through systemd (slices and scopes), not as plain paths.
    pub systemd: bool,
}

/// A request to create a container (a pod's sandbox container included), as intent.
#[derive(Debug, Clone)]
pub struct CreateContainer {
    pub id: String,
    /// The sandbox's own container whose namespaces [`NamespaceMode::Sandbox`] joins;
    /// `None` for that container itself.
    pub sandbox_id: Option<String>,
    /// Image id (config digest) the rootfs comes from.
    pub image_id: String,
    /// The chain id of that image's layers (`ImageRecord::chain_id`), which a snapshotting
    /// backend puts the rootfs on; empty makes the backend look it up from `image_id`.
    pub image_chain_id: String,
    /// The image name the caller used, recorded on the object.
    pub image_name: String,
    /// Recorded on the object, so crius finds its own after a restart.
    pub labels: HashMap<String, String>,
    pub process: ContainerProcess,
    pub namespaces: Namespaces,
    /// The maps of the container's user namespace when it is not the host's.
    pub id_mappings: Option<IdMappings>,
    pub mounts: Vec<Mount>,
    /// In order; a later device at the same container path replaces an earlier one.
    pub devices: Vec<Device>,
    /// cgroup limits (the device rules follow from `devices` and `privileged`).
    pub resources: oci_spec::runtime::LinuxResources,
    pub security: Security,
    /// Set only with a UTS namespace of the container's (or its sandbox's) own.
    pub hostname: Option<String>,
    /// Namespaced sysctls, in dot form.
    pub sysctls: BTreeMap<String, String>,
    pub cgroup: CgroupRequest,
    /// Annotations for tools that read them off the running container.
    pub annotations: HashMap<String, String>,
    /// The runtime handler (RuntimeClass) the pod runs on, by its configured name; never
    /// `""` (the shim resolves the default).
    pub runtime_handler: String,
}

/// What the engine made.
#[derive(Debug, Clone)]
pub struct CreatedContainer {
    /// The container's cgroup relative to the cgroup filesystem's root, as
    /// `/proc/<pid>/cgroup` shows it (`/kubepods/pod1/abc`,
    /// `/kubepods.slice/…/crius-abc.scope`): where its stats and OOM kills are read.
    pub cgroup_path: String,
    /// The OCI runtime spec the engine runs the container with, where it uses one.
    pub runtime_spec: Option<oci_spec::runtime::Spec>,
}
