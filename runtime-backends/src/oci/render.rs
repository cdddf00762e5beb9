//! A container's intent rendered as the OCI runtime spec an OCI runtime (runc) is given:
//! what an engine that runs containers through one (containerd) stores and starts.
//!
//! oci-spec's `Default` impls (and its builders, which start from them) are a sample
//! container: three capabilities in every set including ambient, an RLIMIT_NOFILE of 1024, a
//! hostname, default namespaces and masked paths. Any of that leaking into a pod's spec would
//! grant or restrict something nobody asked for, so rendering starts from skeletons in which
//! every field is set explicitly to "nothing".

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{
    Capability, Linux, LinuxCapabilities, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType,
    LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceType, Mount, Process,
    Root, Spec, User,
};

use crate::{
    BackendError, Capabilities, CreateContainer, Device, DeviceKind, IdMapping, NamespaceMode,
    Propagation, Result,
};

/// The runtime-spec version containerd 1.6 writes; runc 1.1 accepts it.
pub const OCI_VERSION: &str = "1.0.2-dev";

/// The init process of every container whose namespaces a request joins
/// ([`joined_containers`]), by container id.
pub type JoinedPids = HashMap<String, u32>;

/// The containers (the sandbox's own included) whose init process a request's namespaces
/// are joined through.
pub fn joined_containers(request: &CreateContainer) -> Vec<String> {
    let n = &request.namespaces;
    let mut ids: Vec<String> = Vec::new();
    for mode in [&n.network, &n.uts, &n.ipc, &n.pid, &n.cgroup, &n.user] {
        let id = match mode {
            NamespaceMode::Sandbox => request.sandbox_id.clone(),
            NamespaceMode::Container(id) => Some(id.clone()),
            NamespaceMode::Host | NamespaceMode::Private | NamespaceMode::Path(_) => None,
        };
        if let Some(id) = id.filter(|id| !ids.contains(id)) {
            ids.push(id);
        }
    }
    ids
}

/// The full spec of a container; `cgroups_path` is the runtime's name of its cgroup
/// ([`crate::cgroup::names`]).
pub fn spec(request: &CreateContainer, cgroups_path: &str, pids: &JoinedPids) -> Result<Spec> {
    let security = &request.security;
    let (mounts, rootfs_propagation) = mounts(request)?;
    let (devices, device_rules) = devices(request);
    let mut resources = request.resources.clone();
    resources.set_devices(Some(device_rules));

    let mut linux = empty_linux();
    linux
        .set_mount_label(security.selinux_label.clone())
        .set_namespaces(Some(namespaces(request, pids)?))
        .set_resources(Some(resources))
        .set_devices((!devices.is_empty()).then_some(devices))
        .set_cgroups_path(Some(PathBuf::from(cgroups_path)))
        .set_sysctl((!request.sysctls.is_empty()).then(|| {
            request
                .sysctls
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }))
        .set_masked_paths(non_empty(&security.masked_paths))
        .set_readonly_paths(non_empty(&security.readonly_paths))
        .set_rootfs_propagation(rootfs_propagation)
        .set_seccomp(security.seccomp.clone());
    if let Some(mappings) = &request.id_mappings {
        linux
            .set_uid_mappings(Some(id_mappings(&mappings.uids)?))
            .set_gid_mappings(Some(id_mappings(&mappings.gids)?));
    }

    let mut spec = empty_spec();
    if let Some(root) = spec.root_mut() {
        root.set_readonly(Some(security.readonly_rootfs));
    }
    spec.set_process(Some(process(request)?))
        .set_hostname(request.hostname.clone())
        .set_mounts(Some(mounts))
        .set_annotations(Some(request.annotations.clone()))
        .set_linux(Some(linux));
    Ok(spec)
}

/// The container's init process as the runtime starts it (an exec'd process starts from a
/// copy of it).
pub fn process(request: &CreateContainer) -> Result<Process> {
    let wanted = &request.process;
    let security = &request.security;
    let mut user = User::default();
    user.set_uid(wanted.user.uid)
        .set_gid(wanted.user.gid)
        .set_additional_gids(Some(wanted.user.additional_gids.clone()));
    let mut process = empty_process();
    process
        .set_terminal(Some(wanted.terminal))
        .set_user(user)
        .set_args(Some(wanted.args.clone()))
        .set_env(Some(wanted.env.clone()))
        .set_cwd(PathBuf::from(&wanted.cwd))
        .set_capabilities(Some(capabilities(&security.capabilities)?))
        .set_no_new_privileges(Some(security.no_new_privileges))
        .set_apparmor_profile(security.apparmor_profile.clone())
        .set_selinux_label(security.selinux_label.clone())
        .set_oom_score_adj(wanted.oom_score_adj);
    Ok(process)
}

fn non_empty(paths: &[String]) -> Option<Vec<String>> {
    (!paths.is_empty()).then(|| paths.to_vec())
}

/// A namespace of its own for the mount table, then network, UTS, IPC, PID, cgroup and
/// user as asked; joined ones through the init process of the container that holds them.
fn namespaces(request: &CreateContainer, pids: &JoinedPids) -> Result<Vec<LinuxNamespace>> {
    let n = &request.namespaces;
    let mut list = vec![namespace(LinuxNamespaceType::Mount, None)];
    let kinds = [
        (LinuxNamespaceType::Network, "net", &n.network),
        (LinuxNamespaceType::Uts, "uts", &n.uts),
        (LinuxNamespaceType::Ipc, "ipc", &n.ipc),
        (LinuxNamespaceType::Pid, "pid", &n.pid),
        (LinuxNamespaceType::Cgroup, "cgroup", &n.cgroup),
        (LinuxNamespaceType::User, "user", &n.user),
    ];
    for (typ, proc_name, mode) in kinds {
        let path = match mode {
            NamespaceMode::Host => continue,
            NamespaceMode::Private => None,
            NamespaceMode::Path(path) => Some(path.display().to_string()),
            NamespaceMode::Sandbox => {
                let sandbox = request.sandbox_id.as_deref().ok_or_else(|| {
                    BackendError::InvalidArgument(format!(
                        "container {:?} joins its sandbox's {proc_name} namespace but names no sandbox",
                        request.id
                    ))
                })?;
                let pid = pids.get(sandbox).copied().filter(|pid| *pid != 0).ok_or_else(|| {
                    BackendError::FailedPrecondition(format!(
                        "pod sandbox {sandbox:?} has no running pause process to share namespaces with"
                    ))
                })?;
                Some(proc_namespace(pid, proc_name))
            }
            NamespaceMode::Container(target) => {
                let pid = pids.get(target).copied().filter(|pid| *pid != 0).ok_or_else(|| {
                    BackendError::FailedPrecondition(format!(
                        "container {target:?}, whose {proc_name} namespace container {:?} joins, is not running",
                        request.id
                    ))
                })?;
                Some(proc_namespace(pid, proc_name))
            }
        };
        list.push(namespace(typ, path));
    }
    Ok(list)
}

fn proc_namespace(pid: u32, kind: &str) -> String {
    format!("/proc/{pid}/ns/{kind}")
}

/// The standard filesystems (minus any a bind mount replaces; all of /dev's when /dev itself
/// is replaced), then the bind mounts, parents before children. Also the rootfs propagation
/// the bind mounts need.
fn mounts(request: &CreateContainer) -> Result<(Vec<Mount>, Option<String>)> {
    let mut binds: Vec<&crate::Mount> = request.mounts.iter().collect();
    // Stable: mounts of equal depth keep the order they were asked in.
    binds.sort_by_key(|b| depth(&b.destination));
    let replaces_dev = binds.iter().any(|b| b.destination == "/dev");
    let mut mounts: Vec<Mount> = default_mounts(request.security.privileged)
        .into_iter()
        .filter(|m| {
            let destination = clean_path(&m.destination().display().to_string());
            let replaced = binds.iter().any(|b| b.destination == destination);
            let under_replaced_dev = replaces_dev && destination.starts_with("/dev/");
            !replaced && !under_replaced_dev
        })
        .collect();

    let mut rootfs_propagation: Option<String> = None;
    for b in binds {
        let propagation = match b.propagation {
            Propagation::Private => "rprivate",
            Propagation::HostToContainer => {
                // A slave mount inside a private rootfs would not see host events.
                if rootfs_propagation.as_deref() != Some("rshared") {
                    rootfs_propagation = Some("rslave".to_string());
                }
                "rslave"
            }
            Propagation::Bidirectional => {
                rootfs_propagation = Some("rshared".to_string());
                "rshared"
            }
        };
        let access = if b.readonly { "ro" } else { "rw" };
        let mut options = vec![
            "rbind".to_string(),
            propagation.to_string(),
            access.to_string(),
        ];
        // `rro` makes the submounts read-only too.
        if b.recursive_read_only {
            options.push("rro".to_string());
        }
        let mut mount = bind(&b.source, &b.destination, options);
        if !b.uid_mappings.is_empty() {
            mount
                .set_uid_mappings(Some(id_mappings(&b.uid_mappings)?))
                .set_gid_mappings(Some(id_mappings(&b.gid_mappings)?));
        }
        mounts.push(mount);
    }
    Ok((mounts, rootfs_propagation))
}

/// Device nodes and device-cgroup rules: everything is denied except the runtime's standard
/// devices and the ones given, or, privileged, everything allowed.
fn devices(request: &CreateContainer) -> (Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>) {
    let mut nodes: Vec<LinuxDevice> = Vec::new();
    for device in &request.devices {
        let node = linux_device(device);
        nodes.retain(|d| d.path() != node.path());
        nodes.push(node);
    }
    let rules = if request.security.privileged {
        let mut allow_all = LinuxDeviceCgroup::default();
        allow_all
            .set_allow(true)
            .set_access(Some("rwm".to_string()));
        vec![allow_all]
    } else {
        let mut rules = vec![deny_all_devices()];
        rules.extend(request.devices.iter().filter_map(allow_device));
        rules
    };
    (nodes, rules)
}

fn device_type(kind: DeviceKind) -> LinuxDeviceType {
    match kind {
        DeviceKind::Char => LinuxDeviceType::C,
        DeviceKind::Block => LinuxDeviceType::B,
        DeviceKind::Fifo => LinuxDeviceType::P,
    }
}

fn linux_device(device: &Device) -> LinuxDevice {
    let mut d = LinuxDevice::default();
    d.set_path(PathBuf::from(&device.container_path))
        .set_typ(device_type(device.kind))
        .set_major(device.major)
        .set_minor(device.minor)
        .set_file_mode(Some(device.file_mode))
        .set_uid(Some(device.uid))
        .set_gid(Some(device.gid));
    d
}

fn allow_device(device: &Device) -> Option<LinuxDeviceCgroup> {
    // The device cgroup only governs character and block devices.
    if device.kind == DeviceKind::Fifo {
        return None;
    }
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(true)
        .set_typ(Some(device_type(device.kind)))
        .set_major(Some(device.major))
        .set_minor(Some(device.minor))
        .set_access(Some(device.permissions.clone()));
    Some(rule)
}

/// A deny-all device rule: runc then allows only its standard devices (null, zero, tty, …).
fn deny_all_devices() -> LinuxDeviceCgroup {
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(false).set_access(Some("rwm".to_string()));
    rule
}

fn capabilities(caps: &Capabilities) -> Result<LinuxCapabilities> {
    let set = |names: &std::collections::BTreeSet<String>| {
        names
            .iter()
            .map(|name| {
                serde_json::from_value::<Capability>(serde_json::Value::String(name.clone()))
                    .map_err(|_| {
                        BackendError::InvalidArgument(format!("unknown capability {name:?}"))
                    })
            })
            .collect::<Result<oci_spec::runtime::Capabilities>>()
    };
    let granted = set(&caps.granted)?;
    let ambient = set(&caps.ambient)?;
    let mut oci = LinuxCapabilities::default();
    oci.set_bounding(Some(granted.clone()))
        .set_effective(Some(granted.clone()))
        .set_permitted(Some(granted))
        .set_inheritable(Some(ambient.clone()))
        .set_ambient(Some(ambient));
    Ok(oci)
}

fn id_mappings(list: &[IdMapping]) -> Result<Vec<LinuxIdMapping>> {
    list.iter()
        .map(|m| {
            LinuxIdMappingBuilder::default()
                .container_id(m.container_id)
                .host_id(m.host_id)
                .size(m.size)
                .build()
                .map_err(|e| {
                    BackendError::InvalidArgument(format!(
                        "id mapping {}:{}:{}: {e}",
                        m.container_id, m.host_id, m.size
                    ))
                })
        })
        .collect()
}

fn empty_spec() -> Spec {
    let mut spec = Spec::default();
    let mut root = Root::default();
    root.set_path(PathBuf::from("rootfs"))
        .set_readonly(Some(false));
    spec.set_version(OCI_VERSION.to_string())
        .set_root(Some(root))
        .set_mounts(Some(Vec::new()))
        .set_process(Some(empty_process()))
        .set_hostname(None)
        .set_domainname(None)
        .set_hooks(None)
        .set_annotations(Some(HashMap::new()))
        .set_linux(Some(empty_linux()))
        .set_solaris(None)
        .set_windows(None)
        .set_vm(None)
        .set_zos(None);
    spec
}

fn empty_process() -> Process {
    let mut process = Process::default();
    process
        .set_terminal(Some(false))
        .set_console_size(None)
        .set_user(User::default())
        .set_args(Some(Vec::new()))
        .set_command_line(None)
        .set_env(Some(Vec::new()))
        .set_cwd(PathBuf::from("/"))
        .set_capabilities(None)
        .set_rlimits(None)
        .set_no_new_privileges(Some(false))
        .set_apparmor_profile(None)
        .set_oom_score_adj(None)
        .set_selinux_label(None)
        .set_io_priority(None)
        .set_scheduler(None)
        .set_exec_cpu_affinity(None);
    process
}

fn empty_linux() -> Linux {
    let mut linux = Linux::default();
    linux
        .set_net_devices(None)
        .set_uid_mappings(None)
        .set_gid_mappings(None)
        .set_sysctl(None)
        .set_resources(None)
        .set_cgroups_path(None)
        .set_namespaces(Some(Vec::new()))
        .set_devices(None)
        .set_seccomp(None)
        .set_rootfs_propagation(None)
        .set_masked_paths(None)
        .set_readonly_paths(None)
        .set_mount_label(None)
        .set_intel_rdt(None)
        .set_memory_policy(None)
        .set_personality(None)
        .set_time_offsets(None);
    linux
}

/// A namespace entry: a new namespace, or the one at `path`.
fn namespace(typ: LinuxNamespaceType, path: Option<String>) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ).set_path(path.map(PathBuf::from));
    ns
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(destination))
        .set_typ(Some(typ.to_string()))
        .set_source(Some(PathBuf::from(source)))
        .set_options(Some(options.iter().map(|o| (*o).to_string()).collect()));
    m
}

fn bind(source: &str, destination: &str, options: Vec<String>) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(destination))
        .set_typ(Some("bind".to_string()))
        .set_source(Some(PathBuf::from(source)))
        .set_options(Some(options));
    m
}

/// /proc, a tmpfs /dev with devpts, shm and mqueue, /sys and the cgroup filesystem: the
/// mounts runc and containerd give every container. sysfs and the cgroup filesystem are
/// read-only unless the container is privileged: a writable /sys lets a container
/// reconfigure host devices and its own limits.
fn default_mounts(privileged: bool) -> Vec<Mount> {
    let sys_access = if privileged { "rw" } else { "ro" };
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_access],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys_access],
        ),
    ]
}

/// A container path without `.`, `..`, doubled or trailing slashes, so two spellings of the
/// same destination compare equal. `..` never climbs above `/`.
pub fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str().unwrap_or_default()),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    format!("/{}", parts.join("/"))
}

/// How deep a cleaned path is (`/` is 0, `/a/b` is 2): mounts are ordered by it so a parent
/// is mounted before anything inside it.
fn depth(clean: &str) -> usize {
    clean.split('/').filter(|p| !p.is_empty()).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CgroupRequest, ContainerProcess, IdMappings, Namespaces, Security};

    fn request() -> CreateContainer {
        CreateContainer {
            id: "c1".to_string(),
            sandbox_id: Some("sb1".to_string()),
            image_id: "sha256:1".to_string(),
            image_chain_id: String::new(),
            image_name: "busybox".to_string(),
            labels: HashMap::new(),
            process: ContainerProcess {
                args: vec!["/bin/sh".to_string()],
                cwd: "/".to_string(),
                ..Default::default()
            },
            namespaces: Namespaces {
                network: NamespaceMode::Sandbox,
                ipc: NamespaceMode::Sandbox,
                uts: NamespaceMode::Sandbox,
                pid: NamespaceMode::Private,
                user: NamespaceMode::Host,
                cgroup: NamespaceMode::Host,
            },
            id_mappings: None,
            mounts: Vec::new(),
            devices: Vec::new(),
            resources: oci_spec::runtime::LinuxResources::default(),
            security: Security::default(),
            hostname: None,
            sysctls: Default::default(),
            cgroup: CgroupRequest {
                parent: "/kubepods".to_string(),
                systemd: false,
            },
            annotations: HashMap::new(),
            runtime_handler: "runc".to_string(),
        }
    }

    fn paths(spec: &Spec) -> Vec<(LinuxNamespaceType, Option<String>)> {
        spec.linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default()
            .into_iter()
            .map(|n| (n.typ(), n.path().as_ref().map(|p| p.display().to_string())))
            .collect()
    }

    fn pids(list: &[(&str, u32)]) -> JoinedPids {
        list.iter()
            .map(|(id, pid)| (id.to_string(), *pid))
            .collect()
    }

    #[test]
    fn every_namespace_mode_renders_as_a_path_a_new_namespace_or_none() {
        let mut r = request();
        r.namespaces = Namespaces {
            network: NamespaceMode::Path(PathBuf::from("/var/run/netns/cni-1")),
            ipc: NamespaceMode::Host,
            uts: NamespaceMode::Sandbox,
            pid: NamespaceMode::Container("target".to_string()),
            user: NamespaceMode::Sandbox,
            cgroup: NamespaceMode::Private,
        };
        r.id_mappings = Some(IdMappings {
            uids: vec![IdMapping {
                container_id: 0,
                host_id: 100_000,
                size: 65_536,
            }],
            gids: Vec::new(),
        });
        assert_eq!(joined_containers(&r), vec!["sb1", "target"]);
        let spec = spec(&r, "/kubepods/c1", &pids(&[("sb1", 10), ("target", 20)])).unwrap();
        assert_eq!(
            paths(&spec),
            vec![
                (LinuxNamespaceType::Mount, None),
                (
                    LinuxNamespaceType::Network,
                    Some("/var/run/netns/cni-1".to_string())
                ),
                (LinuxNamespaceType::Uts, Some("/proc/10/ns/uts".to_string())),
                (LinuxNamespaceType::Pid, Some("/proc/20/ns/pid".to_string())),
                (LinuxNamespaceType::Cgroup, None),
                (
                    LinuxNamespaceType::User,
                    Some("/proc/10/ns/user".to_string())
                ),
            ]
        );
        let linux = spec.linux().as_ref().unwrap();
        assert_eq!(linux.uid_mappings().as_ref().map(Vec::len), Some(1));
        assert_eq!(linux.gid_mappings().as_ref().map(Vec::len), Some(0));
    }

    #[test]
    fn a_joined_container_that_is_not_running_fails_the_render() {
        let r = request();
        let err = spec(&r, "/kubepods/c1", &pids(&[])).unwrap_err();
        assert!(matches!(err, BackendError::FailedPrecondition(_)), "{err}");
        assert!(err.to_string().contains("sb1"), "{err}");
        let mut r = request();
        r.namespaces.pid = NamespaceMode::Container("t".to_string());
        let err = spec(&r, "/kubepods/c1", &pids(&[("sb1", 1), ("t", 0)])).unwrap_err();
        assert!(err.to_string().contains("\"t\""), "{err}");
        let mut r = request();
        r.sandbox_id = None;
        assert!(matches!(
            spec(&r, "/kubepods/c1", &pids(&[])),
            Err(BackendError::InvalidArgument(_))
        ));
    }

    #[test]
    fn binds_replace_standard_mounts_parents_first() {
        let mut r = request();
        let bind = |destination: &str, propagation| crate::Mount {
            destination: destination.to_string(),
            source: format!("/host{destination}"),
            propagation,
            ..Default::default()
        };
        r.mounts = vec![
            bind("/data/cache", Propagation::Private),
            bind("/data", Propagation::HostToContainer),
            bind("/dev", Propagation::Private),
        ];
        let spec = spec(&r, "/kubepods/c1", &pids(&[("sb1", 1)])).unwrap();
        let destinations: Vec<String> = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.destination().display().to_string())
            .collect();
        assert_eq!(
            destinations,
            [
                "/proc",
                "/sys",
                "/sys/fs/cgroup",
                "/data",
                "/dev",
                "/data/cache"
            ]
        );
        assert_eq!(
            spec.linux()
                .as_ref()
                .unwrap()
                .rootfs_propagation()
                .as_deref(),
            Some("rslave")
        );
    }

    #[test]
    fn device_rules_deny_all_but_the_given_devices_unless_privileged() {
        let mut r = request();
        let device = |path: &str, kind| Device {
            container_path: path.to_string(),
            host_path: path.to_string(),
            kind,
            major: 10,
            minor: 229,
            file_mode: 0o666,
            uid: 0,
            gid: 0,
            permissions: "rw".to_string(),
        };
        r.devices = vec![
            device("/dev/fuse", DeviceKind::Char),
            device("/dev/pipe", DeviceKind::Fifo),
            device("/dev/fuse", DeviceKind::Block),
        ];
        let (nodes, rules) = devices(&r);
        assert_eq!(nodes.len(), 2, "the later /dev/fuse replaces the earlier");
        assert_eq!(nodes[1].typ(), LinuxDeviceType::B);
        let rules: Vec<String> = rules.iter().map(ToString::to_string).collect();
        assert_eq!(rules, ["a *:* rwm", "c 10:229 rw", "b 10:229 rw"]);
        assert!(!devices(&r).1[0].allow());
        r.security.privileged = true;
        let (_, rules) = devices(&r);
        assert!(rules.len() == 1 && rules[0].allow());
    }

    #[test]
    fn capabilities_fill_every_set_and_unknown_names_are_refused() {
        let mut caps = Capabilities::default();
        caps.granted.insert("CAP_CHOWN".to_string());
        caps.ambient.insert("CAP_CHOWN".to_string());
        let oci = capabilities(&caps).unwrap();
        for set in [oci.bounding(), oci.effective(), oci.permitted()] {
            assert_eq!(set.as_ref().map(|s| s.len()), Some(1));
        }
        assert_eq!(oci.ambient(), oci.inheritable());
        caps.granted.insert("CAP_NOPE".to_string());
        assert!(capabilities(&caps).is_err());
    }

    #[test]
    fn the_skeleton_grants_nothing() {
        let json = serde_json::to_value(empty_spec()).unwrap();
        assert!(json.get("hostname").is_none());
        let process = &json["process"];
        assert!(process.get("capabilities").is_none());
        assert!(process.get("rlimits").is_none());
        let linux = &json["linux"];
        assert_eq!(linux["namespaces"], serde_json::json!([]));
        assert!(linux.get("maskedPaths").is_none());
        assert!(linux.get("resources").is_none());
    }

    #[test]
    fn sysfs_and_cgroup_are_read_only_unless_privileged() {
        let options_of = |mounts: &[Mount], destination: &str| {
            mounts
                .iter()
                .find(|m| m.destination() == Path::new(destination))
                .and_then(|m| m.options().clone())
                .unwrap_or_default()
        };
        let normal = default_mounts(false);
        assert!(options_of(&normal, "/sys").contains(&"ro".to_string()));
        assert!(options_of(&normal, "/sys/fs/cgroup").contains(&"ro".to_string()));
        let privileged = default_mounts(true);
        assert!(options_of(&privileged, "/sys").contains(&"rw".to_string()));
        assert!(!options_of(&privileged, "/sys").contains(&"ro".to_string()));
    }

    #[test]
    fn paths_are_cleaned() {
        assert_eq!(clean_path("/etc//hosts/"), "/etc/hosts");
        assert_eq!(clean_path("/a/./b/../c"), "/a/c");
        assert_eq!(clean_path("/../.."), "/");
        assert_eq!(depth("/"), 0);
        assert_eq!(depth("/a/b"), 2);
    }
}
