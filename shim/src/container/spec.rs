//! What an application container is to be, from its CRI config, its image and its pod:
//! the intent the backend renders (`runtime_backends::CreateContainer`).
//!
//! Behaviour follows containerd 1.6's CRI plugin, so a pod runs the same on crius, except
//! where crius refuses to drop a security setting quietly (DESIGN.md decision 9): a
//! capability the node cannot grant, an AppArmor profile that is not loaded, a seccomp
//! profile on a kernel without seccomp all fail the create, naming what is missing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use oci_spec::runtime::{LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxResources, Process};
use runtime_backends::oci::render::clean_path;
use runtime_backends::{self as engine, CreateContainer, ImageConfig};

use crate::domain::{ContainerConfig, IdMapping, NamespaceMode, Resources, SandboxConfig};
use crate::sandbox::spec::{annotations, DEFAULT_PATH_ENV};
use crate::security::caps::container_capabilities;
use crate::security::user::{resolve_user, UserRequest};
use crate::security::{
    apparmor_for, clamp_oom_score_adj, seccomp_for, sysctl, userns, HostCgroupFeatures, HostDevice,
    HostSecurity, APPARMOR_ANNOTATION_PREFIX, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS,
};

pub use crate::security::SpecError;

const ETC_HOSTNAME: &str = "/etc/hostname";
const ETC_HOSTS: &str = "/etc/hosts";
const ETC_RESOLV_CONF: &str = "/etc/resolv.conf";
const DEV_SHM: &str = "/dev/shm";

/// What an application container's intent is built from.
#[derive(Debug, Clone)]
pub struct ContainerSpecInput<'a> {
    /// The container's id, for error messages.
    pub id: &'a str,
    pub config: &'a ContainerConfig,
    pub image: &'a ImageConfig,
    pub sandbox: &'a SandboxConfig,
    /// The sandbox's id: the container joins its namespaces.
    pub sandbox_id: &'a str,
    /// The pod's network namespace, when crius pinned one: joined by its path.
    pub netns_path: Option<String>,
    /// The pod's cgroup, under which the engine names the container's.
    pub cgroup: engine::CgroupRequest,
    /// The pod's files on the host, bind-mounted at /etc/resolv.conf, /etc/hostname and
    /// /etc/hosts unless the config mounts something there itself.
    pub resolv_conf: Option<PathBuf>,
    pub hostname: Option<PathBuf>,
    pub hosts: Option<PathBuf>,
    /// The pod's /dev/shm (a tmpfs crius mounted), shared by its containers.
    pub shm_path: Option<PathBuf>,
    /// The image's /etc/passwd and /etc/group, to resolve user and group names.
    pub passwd: Option<String>,
    pub group: Option<String>,
    /// crius's own oom_score_adj; nothing may go below it on this node.
    pub oom_score_adj_floor: i64,
    pub host: &'a HostSecurity,
}

/// The process arguments, by the Docker/Kubernetes rules: `command` replaces the image's
/// ENTRYPOINT and drops its CMD; `args` alone replace CMD after the ENTRYPOINT.
pub fn process_args(
    config: &ContainerConfig,
    image: &ImageConfig,
) -> Result<Vec<String>, SpecError> {
    let mut command = config.command.clone();
    let mut args = config.args.clone();
    if command.is_empty() {
        if args.is_empty() {
            args = image.cmd.clone();
        }
        // `ENTRYPOINT [""]` is how an image clears an inherited entrypoint.
        let cleared = image.entrypoint.len() == 1 && image.entrypoint[0].is_empty();
        if !cleared {
            command = image.entrypoint.clone();
        }
    }
    command.extend(args);
    if command.is_empty() {
        return Err(SpecError::InvalidArgument(format!(
            "no command specified for container {:?}: neither the config nor the image has one",
            config.metadata.name
        )));
    }
    Ok(command)
}

/// Set `KEY=value` in an environment list, replacing an earlier value of the same key in
/// place (later sources win, the order of first appearance stays).
fn set_env(env: &mut Vec<String>, entry: String) {
    let key = entry
        .split_once('=')
        .map_or(entry.as_str(), |(k, _)| k)
        .to_string();
    match env
        .iter_mut()
        .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
    {
        Some(existing) => *existing = entry,
        None => env.push(entry),
    }
}

/// PATH default, HOSTNAME, then the image's variables, then the config's.
pub fn process_env(
    config: &ContainerConfig,
    image: &ImageConfig,
    sandbox: &SandboxConfig,
) -> Vec<String> {
    let mut env = vec![DEFAULT_PATH_ENV.to_string()];
    if !sandbox.hostname.is_empty() {
        set_env(&mut env, format!("HOSTNAME={}", sandbox.hostname));
    }
    for entry in &image.env {
        set_env(&mut env, entry.clone());
    }
    for (key, value) in &config.envs {
        set_env(&mut env, format!("{key}={value}"));
    }
    env
}

/// The cgroup limits of a container (also used for UpdateContainerResources). Fields left
/// at 0 are not limited.
///
/// Swap follows containerd: with a memory limit and no swap limit, swap is capped at the
/// memory limit so the container cannot swap; where the node cannot account swap, swap is
/// left alone, and huge page limits are skipped where the hugetlb controller is absent
/// (containerd's default `tolerate_missing_hugetlb_controller`), each with a warning.
pub fn linux_resources(
    resources: &Resources,
    cgroups: &HostCgroupFeatures,
) -> Result<LinuxResources, SpecError> {
    let invalid = |what: &str, value: i64| {
        SpecError::InvalidArgument(format!("{what} {value} must not be negative"))
    };
    let mut cpu = LinuxCpu::default();
    let mut cpu_set = false;
    if resources.cpu_shares != 0 {
        let shares = u64::try_from(resources.cpu_shares)
            .map_err(|_| invalid("cpu_shares", resources.cpu_shares))?;
        cpu.set_shares(Some(shares));
        cpu_set = true;
    }
    if resources.cpu_quota != 0 {
        cpu.set_quota(Some(resources.cpu_quota));
        cpu_set = true;
    }
    if resources.cpu_period != 0 {
        let period = u64::try_from(resources.cpu_period)
            .map_err(|_| invalid("cpu_period", resources.cpu_period))?;
        cpu.set_period(Some(period));
        cpu_set = true;
    }
    if !resources.cpuset_cpus.is_empty() {
        cpu.set_cpus(Some(resources.cpuset_cpus.clone()));
        cpu_set = true;
    }
    if !resources.cpuset_mems.is_empty() {
        cpu.set_mems(Some(resources.cpuset_mems.clone()));
        cpu_set = true;
    }

    let mut memory = LinuxMemory::default();
    let mut memory_set = false;
    let limit = resources.memory_limit_in_bytes;
    let swap = resources.memory_swap_limit_in_bytes;
    if limit != 0 {
        memory.set_limit(Some(limit));
        memory_set = true;
    }
    if swap != 0 || limit != 0 {
        if cgroups.memory_swap {
            memory.set_swap(Some(if swap != 0 { swap } else { limit }));
        } else if swap != 0 {
            static SAID: AtomicBool = AtomicBool::new(false);
            if SAID.swap(true, Ordering::Relaxed) {
                tracing::debug!(swap, "swap limit not applied (no swap accounting)");
            } else {
                tracing::warn!(
                    swap,
                    "this node cannot limit swap; swap limits are not applied (said once)"
                );
            }
        }
    }

    let mut out = LinuxResources::default();
    out.set_cpu(cpu_set.then_some(cpu))
        .set_memory(memory_set.then_some(memory));

    if !resources.hugepage_limits.is_empty() {
        if cgroups.hugetlb {
            let mut limits = Vec::new();
            for (page_size, bytes) in &resources.hugepage_limits {
                let mut l = LinuxHugepageLimit::default();
                let bytes = i64::try_from(*bytes).map_err(|_| {
                    SpecError::InvalidArgument(format!(
                        "hugepage limit {bytes} for {page_size} is out of range"
                    ))
                })?;
                l.set_page_size(page_size.clone()).set_limit(bytes);
                limits.push(l);
            }
            out.set_hugepage_limits(Some(limits));
        } else {
            // kubelet sends huge page limits with every container: a node fact, said once.
            static SAID: AtomicBool = AtomicBool::new(false);
            if SAID.swap(true, Ordering::Relaxed) {
                tracing::debug!("huge page limits not applied (no hugetlb controller)");
            } else {
                tracing::warn!(
                    "the hugetlb cgroup controller is absent; huge page limits are not \
                     applied (said once)"
                );
            }
        }
    }

    if !resources.unified.is_empty() {
        if !cgroups.unified {
            return Err(SpecError::FailedPrecondition(
                "unified cgroup resources need cgroup v2, and this node runs cgroup v1".to_string(),
            ));
        }
        out.set_unified(Some(
            resources
                .unified
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ));
    }
    Ok(out)
}

/// The bind mounts: the config's, then the pod's files where the config mounts nothing.
fn build_mounts(input: &ContainerSpecInput<'_>) -> Result<Vec<engine::Mount>, SpecError> {
    let config = input.config;
    let security = &config.security;
    let mut binds = Vec::new();
    for m in &config.mounts {
        if !m.container_path.starts_with('/') {
            return Err(SpecError::InvalidArgument(format!(
                "mount destination {:?} must be an absolute path",
                m.container_path
            )));
        }
        if m.host_path.is_empty() {
            return Err(SpecError::InvalidArgument(format!(
                "mount at {:?} has no host path",
                m.container_path
            )));
        }
        binds.push(engine::Mount {
            destination: clean_path(&m.container_path),
            source: m.host_path.clone(),
            readonly: m.readonly,
            propagation: match m.propagation {
                crate::domain::Propagation::Private => engine::Propagation::Private,
                crate::domain::Propagation::HostToContainer => engine::Propagation::HostToContainer,
                crate::domain::Propagation::Bidirectional => engine::Propagation::Bidirectional,
            },
            // CRI: recursive_read_only needs readonly. Whether the engine can is checked
            // before any work (`crate::features`).
            recursive_read_only: m.recursive_read_only,
            uid_mappings: id_mappings(&m.uid_mappings),
            gid_mappings: id_mappings(&m.gid_mappings),
        });
    }

    let mut pod_files: Vec<(&str, String, bool)> = Vec::new();
    let files = [
        (ETC_HOSTNAME, &input.hostname),
        (ETC_HOSTS, &input.hosts),
        (ETC_RESOLV_CONF, &input.resolv_conf),
    ];
    for (destination, source) in files {
        if let Some(source) = source {
            pod_files.push((
                destination,
                source.display().to_string(),
                security.readonly_rootfs,
            ));
        }
    }
    if security.namespaces.ipc == NamespaceMode::Node {
        pod_files.push((DEV_SHM, DEV_SHM.to_string(), false));
    } else if let Some(shm) = &input.shm_path {
        pod_files.push((DEV_SHM, shm.display().to_string(), false));
    }
    for (destination, source, readonly) in pod_files {
        if !binds.iter().any(|b| b.destination == destination) {
            binds.push(engine::Mount {
                destination: destination.to_string(),
                source,
                readonly,
                ..Default::default()
            });
        }
    }
    Ok(binds)
}

fn id_mappings(list: &[IdMapping]) -> Vec<engine::IdMapping> {
    list.iter()
        .map(|m| engine::IdMapping {
            container_id: m.container_id,
            host_id: m.host_id,
            size: m.length,
        })
        .collect()
}

fn device(host: &HostDevice, container_path: &str, permissions: &str) -> engine::Device {
    engine::Device {
        container_path: container_path.to_string(),
        host_path: host.path.display().to_string(),
        kind: host.kind,
        major: host.major,
        minor: host.minor,
        file_mode: host.file_mode,
        uid: host.uid,
        gid: host.gid,
        permissions: permissions.to_string(),
    }
}

/// The device nodes: every host device for a privileged container, then those the config
/// names (a later one at the same path replaces an earlier one).
fn build_devices(input: &ContainerSpecInput<'_>) -> Result<Vec<engine::Device>, SpecError> {
    let config = input.config;
    let mut devices = Vec::new();
    if config.security.privileged {
        for host in input.host.devices.all()? {
            devices.push(device(&host, &host.path.display().to_string(), "rwm"));
        }
    }
    for requested in &config.devices {
        let permissions = if requested.permissions.is_empty() {
            "rwm"
        } else {
            requested.permissions.as_str()
        };
        if !permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(SpecError::InvalidArgument(format!(
                "device {:?} has invalid permissions {:?}: use a combination of r, w and m",
                requested.host_path, requested.permissions
            )));
        }
        let container_path = if requested.container_path.is_empty() {
            requested.host_path.as_str()
        } else {
            requested.container_path.as_str()
        };
        if !container_path.starts_with('/') {
            return Err(SpecError::InvalidArgument(format!(
                "device path {container_path:?} in the container must be absolute"
            )));
        }
        let host = input.host.devices.lookup(&requested.host_path)?;
        devices.push(device(&host, container_path, permissions));
    }
    Ok(devices)
}

/// An image's config is outside input like a request: what it puts into the process must
/// reach execve as C strings, so a NUL byte in it refuses the container here rather than
/// failing inside runc after the work began.
fn check_image_config(image: &ImageConfig) -> Result<(), SpecError> {
    let has_nul = |values: &[String]| values.iter().any(|v| v.contains('\0'));
    let fields = [
        ("Env", has_nul(&image.env)),
        ("Entrypoint", has_nul(&image.entrypoint)),
        ("Cmd", has_nul(&image.cmd)),
        ("WorkingDir", image.working_dir.contains('\0')),
        ("User", image.user.contains('\0')),
    ];
    match fields.iter().find(|(_, bad)| *bad) {
        Some((field, _)) => Err(SpecError::InvalidArgument(format!(
            "the image config's {field} holds a NUL byte"
        ))),
        None => Ok(()),
    }
}

/// What the container is to be, for the backend to render.
pub fn container_request(input: &ContainerSpecInput<'_>) -> Result<CreateContainer, SpecError> {
    let config = input.config;
    let security = &config.security;
    let sandbox = input.sandbox;
    let host = input.host;
    if security.privileged && !sandbox.security.privileged {
        return Err(SpecError::InvalidArgument(format!(
            "container {:?} ({}) is privileged but its pod sandbox {:?} is not",
            config.metadata.name, input.id, input.sandbox_id
        )));
    }

    check_image_config(input.image)?;
    let args = process_args(config, input.image)?;
    let env = process_env(config, input.image, sandbox);
    let cwd = [
        config.working_dir.as_str(),
        input.image.working_dir.as_str(),
    ]
    .into_iter()
    .find(|d| !d.is_empty())
    .unwrap_or("/");
    if !cwd.starts_with('/') {
        return Err(SpecError::InvalidArgument(format!(
            "working directory {cwd:?} must be an absolute path"
        )));
    }
    let user = resolve_user(
        &UserRequest {
            run_as_user: security.run_as_user,
            run_as_group: security.run_as_group,
            run_as_username: &security.run_as_username,
            image_user: &input.image.user,
            supplemental_groups: &security.supplemental_groups,
            policy: security.supplemental_groups_policy,
        },
        input.passwd.as_deref(),
        input.group.as_deref(),
    )?;
    let caps = container_capabilities(
        &security.capabilities,
        security.privileged,
        &host.bounding_caps,
    )?;
    let seccomp = seccomp_for(
        security.seccomp.as_ref(),
        security.privileged,
        &caps.granted_names(),
    )?;
    if seccomp.is_some() && !host.seccomp_enabled {
        return Err(SpecError::FailedPrecondition(format!(
            "container {:?} ({}) asks for a seccomp profile, but this node's kernel has no seccomp",
            config.metadata.name, input.id
        )));
    }
    let annotation_key = format!("{APPARMOR_ANNOTATION_PREFIX}{}", config.metadata.name);
    let annotation = sandbox
        .annotations
        .get(&annotation_key)
        .or_else(|| config.annotations.get(&annotation_key));
    let apparmor = apparmor_for(
        security.apparmor.as_ref(),
        annotation.map(String::as_str),
        security.privileged,
        &host.apparmor,
    )?;
    crate::security::validate_sysctls(&sandbox.sysctls, &sandbox.security.namespaces)?;

    // The container's own label, else the pod's.
    let selinux_label = crate::security::selinux_label_for(
        security
            .selinux_label
            .as_ref()
            .or(input.sandbox.security.selinux_label.as_ref()),
        input.host,
    );
    let process = engine::ContainerProcess {
        args,
        env,
        cwd: cwd.to_string(),
        user: engine::ProcessUser {
            uid: user.uid,
            gid: user.gid,
            additional_gids: user.additional_gids,
        },
        terminal: config.tty,
        oom_score_adj: config
            .resources
            .as_ref()
            .map(|r| clamp_oom_score_adj(r.oom_score_adj, input.oom_score_adj_floor)),
    };

    let mut namespaces = build_namespaces(input);
    let userns_options = security.namespaces.userns.as_ref().or(sandbox
        .security
        .namespaces
        .userns
        .as_ref());
    let id_mappings = userns::pod_user_namespace(userns_options)?;
    if id_mappings.is_some() {
        namespaces.user = engine::NamespaceMode::Sandbox;
    }
    let mounts = build_mounts(input)?;
    let devices = build_devices(input)?;
    let resources = match &config.resources {
        Some(r) => linux_resources(r, &host.cgroups)?,
        None => LinuxResources::default(),
    };

    let (masked_paths, readonly_paths) = if security.privileged {
        (Vec::new(), Vec::new())
    } else {
        let or_default = |paths: &Vec<String>, defaults: &[&str]| {
            if paths.is_empty() {
                defaults.iter().map(|p| p.to_string()).collect()
            } else {
                paths.clone()
            }
        };
        (
            or_default(&security.masked_paths, DEFAULT_MASKED_PATHS),
            or_default(&security.readonly_paths, DEFAULT_READONLY_PATHS),
        )
    };

    Ok(CreateContainer {
        id: input.id.to_string(),
        sandbox_id: Some(input.sandbox_id.to_string()),
        image_id: String::new(),
        image_chain_id: String::new(),
        image_name: config.image.clone(),
        labels: HashMap::new(),
        process,
        namespaces,
        id_mappings,
        mounts,
        devices,
        resources,
        security: engine::Security {
            privileged: security.privileged,
            readonly_rootfs: security.readonly_rootfs,
            capabilities: caps.into(),
            no_new_privileges: security.no_new_privs,
            seccomp,
            apparmor_profile: apparmor,
            selinux_label,
            masked_paths,
            readonly_paths,
        },
        // The pod's hostname is the sandbox's UTS namespace's, which the container joins.
        hostname: None,
        sysctls: sysctl::normalized(&sandbox.sysctls),
        cgroup: input.cgroup.clone(),
        annotations: container_annotations(input),
        // Set by the caller, which resolves the pod's handler.
        runtime_handler: String::new(),
    })
}

/// Namespaces: the container joins its pod's network (by the pinned path where crius made
/// one), UTS and IPC namespaces (none at all where the pod uses the host's), and its PID
/// namespace per the PID mode.
fn build_namespaces(input: &ContainerSpecInput<'_>) -> engine::Namespaces {
    use engine::NamespaceMode as Join;
    let options = &input.config.security.namespaces;
    let pod_or_host = |mode: NamespaceMode| {
        if mode == NamespaceMode::Node {
            Join::Host
        } else {
            Join::Sandbox
        }
    };
    let network = match (options.network, input.netns_path.as_deref()) {
        (NamespaceMode::Node, _) => Join::Host,
        (_, Some(path)) if !path.is_empty() => Join::Path(PathBuf::from(path)),
        _ => Join::Sandbox,
    };
    let pid = match options.pid {
        NamespaceMode::Pod => Join::Sandbox,
        NamespaceMode::Container => Join::Private,
        NamespaceMode::Node => Join::Host,
        NamespaceMode::Target => Join::Container(options.target_id.clone()),
    };
    // With cgroup v2 a private cgroup namespace hides the host's hierarchy; on v1 it would
    // break tools that expect the host's paths, and privileged containers see the host's.
    let cgroup = if input.host.cgroups.unified && !input.config.security.privileged {
        Join::Private
    } else {
        Join::Host
    };
    engine::Namespaces {
        network,
        uts: pod_or_host(options.network),
        ipc: pod_or_host(options.ipc),
        pid,
        user: Join::Host,
        cgroup,
    }
}

fn container_annotations(input: &ContainerSpecInput<'_>) -> HashMap<String, String> {
    let meta = &input.sandbox.metadata;
    let pairs = [
        (
            annotations::CONTAINER_TYPE,
            annotations::CONTAINER_TYPE_CONTAINER,
        ),
        (annotations::SANDBOX_ID, input.sandbox_id),
        (annotations::SANDBOX_NAME, meta.name.as_str()),
        (annotations::SANDBOX_NAMESPACE, meta.namespace.as_str()),
        (annotations::SANDBOX_UID, meta.uid.as_str()),
        (
            annotations::CONTAINER_NAME,
            input.config.metadata.name.as_str(),
        ),
        (annotations::IMAGE_NAME, input.config.image.as_str()),
    ];
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The process for ExecSync/Exec: the container's own process settings (user, groups,
/// environment, working directory, capabilities, AppArmor profile, no_new_privs) with
/// another command, as runc would otherwise start it with none of them.
pub fn exec_process(
    container_process: &Process,
    cmd: Vec<String>,
    tty: bool,
) -> Result<Process, SpecError> {
    if cmd.is_empty() {
        return Err(SpecError::InvalidArgument(
            "exec needs a command".to_string(),
        ));
    }
    let mut process = container_process.clone();
    process
        .set_args(Some(cmd))
        .set_terminal(Some(tty))
        .set_console_size(None);
    Ok(process)
}

/// The spec containerd's backend renders from `request`, with the init processes of the
/// containers it joins given; render errors as the spec builder's.
#[cfg(test)]
pub(crate) fn rendered(
    request: &CreateContainer,
    pids: &[(&str, u32)],
) -> Result<oci_spec::runtime::Spec, SpecError> {
    use runtime_backends::BackendError;
    let convert = |e: BackendError| match e {
        BackendError::FailedPrecondition(m) => SpecError::FailedPrecondition(m),
        BackendError::InvalidArgument(m) => SpecError::InvalidArgument(m),
        other => panic!("rendering failed with an untyped error: {other}"),
    };
    let names = runtime_backends::cgroup::names(&request.cgroup, &request.id).map_err(convert)?;
    let pids = pids
        .iter()
        .map(|(id, pid)| (id.to_string(), *pid))
        .collect();
    runtime_backends::oci::render::spec(request, &names.runtime, &pids).map_err(convert)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use oci_spec::runtime::{
        LinuxDeviceType, LinuxNamespace, LinuxNamespaceType, LinuxSeccompAction, Mount, Spec,
    };

    use super::*;
    use crate::domain::{
        Capabilities, ContainerMetadata, Device, IdMapping, Mount as CriMount, PodMetadata,
        Propagation, SecurityProfile, SupplementalGroupsPolicy, UserNamespace,
    };
    use crate::security::{test_host, AppArmorHost};

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/sbin/nologin\napp:x:1001:1001::/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nnogroup:x:65534:\napp:x:1001:\ndocker:x:999:app\n";

    struct Fixture {
        config: ContainerConfig,
        image: ImageConfig,
        sandbox: SandboxConfig,
        host: HostSecurity,
        target_pid: u32,
        netns_path: Option<String>,
        shm_path: Option<PathBuf>,
        floor: i64,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                config: ContainerConfig {
                    metadata: ContainerMetadata {
                        name: "app".to_string(),
                        attempt: 0,
                    },
                    image: "docker.io/library/busybox:1.36".to_string(),
                    ..Default::default()
                },
                image: ImageConfig {
                    entrypoint: vec!["/docker-entrypoint.sh".to_string()],
                    cmd: vec!["serve".to_string()],
                    env: vec![
                        "PATH=/app/bin:/usr/bin".to_string(),
                        "LANG=C.UTF-8".to_string(),
                    ],
                    ..Default::default()
                },
                sandbox: SandboxConfig {
                    metadata: PodMetadata {
                        name: "web".to_string(),
                        uid: "uid-1".to_string(),
                        namespace: "default".to_string(),
                        attempt: 0,
                    },
                    hostname: "web-pod".to_string(),
                    ..Default::default()
                },
                host: test_host(),
                target_pid: 0,
                netns_path: None,
                shm_path: Some(PathBuf::from("/run/crius/sandboxes/sb1/shm")),
                floor: 0,
            }
        }

        fn build(&self) -> Result<Spec, SpecError> {
            let request = container_request(&ContainerSpecInput {
                id: "c1",
                config: &self.config,
                image: &self.image,
                sandbox: &self.sandbox,
                sandbox_id: "sb1",
                netns_path: self.netns_path.clone(),
                cgroup: runtime_backends::CgroupRequest {
                    parent: "/kubepods/podUID".to_string(),
                    systemd: false,
                },
                resolv_conf: Some(PathBuf::from("/var/lib/crius/sandboxes/sb1/resolv.conf")),
                hostname: Some(PathBuf::from("/var/lib/crius/sandboxes/sb1/hostname")),
                hosts: Some(PathBuf::from("/var/lib/crius/sandboxes/sb1/hosts")),
                shm_path: self.shm_path.clone(),
                passwd: Some(PASSWD.to_string()),
                group: Some(GROUP.to_string()),
                oom_score_adj_floor: self.floor,
                host: &self.host,
            })?;
            let target = &self.config.security.namespaces.target_id;
            rendered(&request, &[("sb1", 4242), (target, self.target_pid)])
        }
    }

    fn process(spec: &Spec) -> &Process {
        spec.process().as_ref().unwrap()
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn granted(spec: &Spec) -> BTreeSet<String> {
        let caps = process(spec).capabilities().as_ref().unwrap();
        caps.bounding()
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| format!("CAP_{c}"))
            .collect()
    }

    fn namespaces(spec: &Spec) -> Vec<LinuxNamespace> {
        spec.linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default()
    }

    fn ns_path(spec: &Spec, typ: LinuxNamespaceType) -> Option<Option<String>> {
        namespaces(spec)
            .into_iter()
            .find(|n| n.typ() == typ)
            .map(|n| n.path().as_ref().map(|p| p.display().to_string()))
    }

    fn mount<'a>(spec: &'a Spec, destination: &str) -> Option<&'a Mount> {
        spec.mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == Path::new(destination))
    }

    fn options(spec: &Spec, destination: &str) -> Vec<String> {
        mount(spec, destination)
            .and_then(|m| m.options().clone())
            .unwrap_or_default()
    }

    fn cri_mount(
        container: &str,
        host: &str,
        readonly: bool,
        propagation: Propagation,
    ) -> CriMount {
        CriMount {
            container_path: container.to_string(),
            host_path: host.to_string(),
            readonly,
            selinux_relabel: false,
            propagation,
            recursive_read_only: false,
            uid_mappings: Vec::new(),
            gid_mappings: Vec::new(),
        }
    }

    #[test]
    fn command_and_args_table() {
        let image = |entrypoint: &[&str], cmd: &[&str]| ImageConfig {
            entrypoint: strings(entrypoint),
            cmd: strings(cmd),
            ..Default::default()
        };
        let config = |command: &[&str], args: &[&str]| ContainerConfig {
            command: strings(command),
            args: strings(args),
            ..Default::default()
        };
        let cases: Vec<(ContainerConfig, ImageConfig, Vec<&str>)> = vec![
            (
                config(&[], &[]),
                image(&["/ep"], &["c1"]),
                vec!["/ep", "c1"],
            ),
            (
                config(&["/bin/cmd"], &[]),
                image(&["/ep"], &["c1"]),
                vec!["/bin/cmd"],
            ),
            (
                config(&["/bin/cmd"], &["a1"]),
                image(&["/ep"], &["c1"]),
                vec!["/bin/cmd", "a1"],
            ),
            (
                config(&[], &["a1", "a2"]),
                image(&["/ep"], &["c1"]),
                vec!["/ep", "a1", "a2"],
            ),
            (config(&[], &["a1"]), image(&[], &["c1"]), vec!["a1"]),
            (
                config(&[], &[]),
                image(&[], &["sh", "-c", "x"]),
                vec!["sh", "-c", "x"],
            ),
            (config(&[], &[]), image(&[""], &["c1"]), vec!["c1"]),
        ];
        for (config, image, expected) in cases {
            assert_eq!(
                process_args(&config, &image).unwrap(),
                strings(&expected),
                "{config:?} {image:?}"
            );
        }
        let err = process_args(&config(&[], &[]), &image(&[], &[])).unwrap_err();
        assert!(matches!(err, SpecError::InvalidArgument(m) if m.contains("no command specified")));
    }

    #[test]
    fn env_from_image_is_overridden_by_config() {
        let mut f = Fixture::new();
        f.config.envs = vec![
            ("LANG".to_string(), "en_US.UTF-8".to_string()),
            ("EXTRA".to_string(), "1=2".to_string()),
        ];
        let spec = f.build().unwrap();
        assert_eq!(
            process(&spec).env().clone().unwrap(),
            strings(&[
                "PATH=/app/bin:/usr/bin",
                "HOSTNAME=web-pod",
                "LANG=en_US.UTF-8",
                "EXTRA=1=2"
            ])
        );
    }

    #[test]
    fn defaults_without_image_path_and_working_dir() {
        let mut f = Fixture::new();
        f.image.env.clear();
        f.image.working_dir = "/srv".to_string();
        let spec = f.build().unwrap();
        assert_eq!(process(&spec).env().clone().unwrap()[0], DEFAULT_PATH_ENV);
        assert_eq!(process(&spec).cwd(), Path::new("/srv"));
        f.config.working_dir = "/work".to_string();
        assert_eq!(process(&f.build().unwrap()).cwd(), Path::new("/work"));
        f.config.working_dir.clear();
        f.image.working_dir.clear();
        assert_eq!(process(&f.build().unwrap()).cwd(), Path::new("/"));
        f.config.working_dir = "relative".to_string();
        assert!(matches!(f.build(), Err(SpecError::InvalidArgument(_))));
    }

    #[test]
    fn tty_args_and_annotations() {
        let mut f = Fixture::new();
        f.config.tty = true;
        let spec = f.build().unwrap();
        assert_eq!(process(&spec).terminal(), Some(true));
        assert_eq!(
            process(&spec).args().clone().unwrap(),
            strings(&["/docker-entrypoint.sh", "serve"])
        );
        let a = spec.annotations().as_ref().unwrap();
        assert_eq!(a[annotations::CONTAINER_TYPE], "container");
        assert_eq!(a[annotations::SANDBOX_ID], "sb1");
        assert_eq!(a[annotations::CONTAINER_NAME], "app");
        assert_eq!(a[annotations::IMAGE_NAME], "docker.io/library/busybox:1.36");
        assert_eq!(a[annotations::SANDBOX_NAMESPACE], "default");
        assert_eq!(spec.hostname(), &None);
    }

    #[test]
    fn user_from_image_and_security_context() {
        let mut f = Fixture::new();
        f.image.user = "app".to_string();
        let user = process(&f.build().unwrap()).user().clone();
        assert_eq!((user.uid(), user.gid()), (1001, 1001));
        assert_eq!(user.additional_gids().clone().unwrap(), vec![999, 1001]);

        f.config.security.run_as_user = Some(65534);
        f.config.security.supplemental_groups = vec![5000];
        let user = process(&f.build().unwrap()).user().clone();
        assert_eq!((user.uid(), user.gid()), (65534, 65534));
        assert_eq!(user.additional_gids().clone().unwrap(), vec![5000, 65534]);

        f.config.security.supplemental_groups_policy = SupplementalGroupsPolicy::Strict;
        f.config.security.run_as_user = None;
        f.config.security.run_as_username = "app".to_string();
        let user = process(&f.build().unwrap()).user().clone();
        assert_eq!(user.additional_gids().clone().unwrap(), vec![1001, 5000]);

        f.config.security.run_as_username = "ghost".to_string();
        let err = f.build().unwrap_err();
        assert!(
            matches!(&err, SpecError::InvalidArgument(m) if m.contains("\"ghost\"")),
            "{err}"
        );
    }

    #[test]
    fn default_capabilities_and_add_drop() {
        let mut f = Fixture::new();
        let spec = f.build().unwrap();
        assert_eq!(granted(&spec).len(), 14);
        let caps = process(&spec).capabilities().as_ref().unwrap();
        assert_eq!(caps.inheritable().as_ref().map(|c| c.len()), Some(0));

        f.config.security.capabilities = Capabilities {
            add: strings(&["NET_ADMIN"]),
            drop: strings(&["NET_RAW"]),
            add_ambient: Vec::new(),
        };
        let spec = f.build().unwrap();
        assert!(granted(&spec).contains("CAP_NET_ADMIN"));
        assert!(!granted(&spec).contains("CAP_NET_RAW"));
    }

    #[test]
    fn capability_missing_from_the_node_fails_the_create() {
        let mut f = Fixture::new();
        f.config.security.capabilities.add = strings(&["SYS_RESOURCE"]);
        let err = f.build().unwrap_err();
        assert!(
            matches!(&err, SpecError::FailedPrecondition(m) if m.contains("CAP_SYS_RESOURCE")),
            "{err}"
        );
    }

    #[test]
    fn add_all_is_cut_to_the_node_bounding_set() {
        let mut f = Fixture::new();
        f.config.security.capabilities.add = strings(&["ALL"]);
        let spec = f.build().unwrap();
        assert!(granted(&spec).contains("CAP_SYS_ADMIN"));
        assert!(!granted(&spec).contains("CAP_SYS_RESOURCE"));
        // CAP_SYS_ADMIN opens the namespace syscalls in the default seccomp profile too.
        f.config.security.seccomp = Some(SecurityProfile::RuntimeDefault);
        let seccomp = f
            .build()
            .unwrap()
            .linux()
            .as_ref()
            .unwrap()
            .seccomp()
            .clone()
            .unwrap();
        let opened = seccomp
            .syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .any(|s| s.names().iter().any(|n| n == "unshare"));
        assert!(opened);
    }

    #[test]
    fn privileged_container_gets_node_caps_devices_and_no_confinement() {
        let mut f = Fixture::new();
        f.sandbox.security.privileged = true;
        f.config.security.privileged = true;
        f.config.security.seccomp = Some(SecurityProfile::RuntimeDefault);
        f.host.apparmor = AppArmorHost {
            enabled: true,
            loaded_profiles: BTreeSet::new(),
            default_profile_error: None,
        };
        let spec = f.build().unwrap();
        let caps = granted(&spec);
        assert_eq!(
            caps.len(),
            crate::security::caps::ALL_CAPABILITIES.len() - 1
        );
        assert!(!caps.contains("CAP_SYS_RESOURCE"));
        let linux = spec.linux().as_ref().unwrap();
        assert!(linux.seccomp().is_none());
        assert!(linux.masked_paths().is_none());
        assert!(linux.readonly_paths().is_none());
        assert_eq!(process(&spec).apparmor_profile(), &None);
        assert!(options(&spec, "/sys").contains(&"rw".to_string()));
        let devices = linux.devices().clone().unwrap();
        assert!(devices.iter().any(|d| d.path() == Path::new("/dev/fuse")));
        assert!(devices
            .iter()
            .any(|d| d.path() == Path::new("/dev/sda") && d.typ() == LinuxDeviceType::B));
        let rules = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .clone()
            .unwrap();
        assert_eq!(rules.len(), 1);
        assert!(rules[0].allow());
        assert_eq!(rules[0].access().as_deref(), Some("rwm"));
    }

    #[test]
    fn privileged_container_needs_a_privileged_sandbox() {
        let mut f = Fixture::new();
        f.config.security.privileged = true;
        assert!(matches!(f.build(), Err(SpecError::InvalidArgument(_))));
    }

    #[test]
    fn masked_and_readonly_paths_default_or_from_config() {
        let mut f = Fixture::new();
        let spec = f.build().unwrap();
        let linux = spec.linux().as_ref().unwrap();
        assert!(linux
            .masked_paths()
            .as_ref()
            .unwrap()
            .contains(&"/proc/kcore".to_string()));
        assert!(linux
            .readonly_paths()
            .as_ref()
            .unwrap()
            .contains(&"/proc/sysrq-trigger".to_string()));
        f.config.security.masked_paths = strings(&["/proc/custom"]);
        f.config.security.readonly_paths = strings(&["/proc/ro"]);
        let spec = f.build().unwrap();
        let linux = spec.linux().as_ref().unwrap();
        assert_eq!(
            linux.masked_paths().clone().unwrap(),
            strings(&["/proc/custom"])
        );
        assert_eq!(
            linux.readonly_paths().clone().unwrap(),
            strings(&["/proc/ro"])
        );
    }

    #[test]
    fn readonly_rootfs_and_no_new_privs() {
        let mut f = Fixture::new();
        let spec = f.build().unwrap();
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(false));
        assert_eq!(process(&spec).no_new_privileges(), Some(false));
        f.config.security.readonly_rootfs = true;
        f.config.security.no_new_privs = true;
        let spec = f.build().unwrap();
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
        assert_eq!(process(&spec).no_new_privileges(), Some(true));
        // The pod's files follow the read-only root; its shared /dev/shm stays writable.
        assert!(options(&spec, "/etc/hosts").contains(&"ro".to_string()));
        assert!(options(&spec, "/dev/shm").contains(&"rw".to_string()));
    }

    #[test]
    fn namespaces_join_the_pause_process() {
        let spec = Fixture::new().build().unwrap();
        assert_eq!(
            ns_path(&spec, LinuxNamespaceType::Network),
            Some(Some("/proc/4242/ns/net".to_string()))
        );
        assert_eq!(
            ns_path(&spec, LinuxNamespaceType::Uts),
            Some(Some("/proc/4242/ns/uts".to_string()))
        );
        assert_eq!(
            ns_path(&spec, LinuxNamespaceType::Ipc),
            Some(Some("/proc/4242/ns/ipc".to_string()))
        );
        assert_eq!(
            ns_path(&spec, LinuxNamespaceType::Pid),
            Some(Some("/proc/4242/ns/pid".to_string()))
        );
        assert_eq!(ns_path(&spec, LinuxNamespaceType::Mount), Some(None));
        assert_eq!(ns_path(&spec, LinuxNamespaceType::Cgroup), None);
    }

    #[test]
    fn netns_path_is_preferred_for_the_network() {
        let mut f = Fixture::new();
        f.netns_path = Some("/var/run/netns/cni-abc".to_string());
        let spec = f.build().unwrap();
        assert_eq!(
            ns_path(&spec, LinuxNamespaceType::Network),
            Some(Some("/var/run/netns/cni-abc".to_string()))
        );
    }

    #[test]
    fn namespace_modes_container_node_and_target() {
        let mut f = Fixture::new();
        f.config.security.namespaces.pid = NamespaceMode::Container;
        assert_eq!(
            ns_path(&f.build().unwrap(), LinuxNamespaceType::Pid),
            Some(None)
        );

        f.config.security.namespaces.pid = NamespaceMode::Node;
        f.config.security.namespaces.network = NamespaceMode::Node;
        f.config.security.namespaces.ipc = NamespaceMode::Node;
        let spec = f.build().unwrap();
        for typ in [
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Ipc,
        ] {
            assert_eq!(ns_path(&spec, typ), None, "{typ:?}");
        }
        // Host IPC shares the host's /dev/shm.
        assert_eq!(
            mount(&spec, "/dev/shm").and_then(|m| m.source().clone()),
            Some(PathBuf::from("/dev/shm"))
        );

        f.config.security.namespaces.pid = NamespaceMode::Target;
        f.config.security.namespaces.target_id = "other".to_string();
        assert!(matches!(f.build(), Err(SpecError::FailedPrecondition(m)) if m.contains("other")));
        f.target_pid = 777;
        assert_eq!(
            ns_path(&f.build().unwrap(), LinuxNamespaceType::Pid),
            Some(Some("/proc/777/ns/pid".to_string()))
        );
    }

    #[test]
    fn cgroup_namespace_only_on_cgroup_v2() {
        let mut f = Fixture::new();
        f.host.cgroups.unified = true;
        assert_eq!(
            ns_path(&f.build().unwrap(), LinuxNamespaceType::Cgroup),
            Some(None)
        );
    }

    #[test]
    fn user_namespace_joins_the_pods() {
        let mut f = Fixture::new();
        let mapping = IdMapping {
            host_id: 200000,
            container_id: 0,
            length: 65536,
        };
        f.sandbox.security.namespaces.userns = Some(UserNamespace {
            mode: NamespaceMode::Pod,
            uids: vec![mapping.clone()],
            gids: vec![mapping],
        });
        let spec = f.build().unwrap();
        assert_eq!(
            ns_path(&spec, LinuxNamespaceType::User),
            Some(Some("/proc/4242/ns/user".to_string()))
        );
        assert_eq!(
            spec.linux()
                .as_ref()
                .unwrap()
                .uid_mappings()
                .as_ref()
                .map(Vec::len),
            Some(1)
        );
    }

    #[test]
    fn default_mounts_and_pod_files() {
        let spec = Fixture::new().build().unwrap();
        assert!(options(&spec, "/sys").contains(&"ro".to_string()));
        assert_eq!(
            mount(&spec, "/proc")
                .and_then(|m| m.typ().clone())
                .as_deref(),
            Some("proc")
        );
        let shm = mount(&spec, "/dev/shm").unwrap();
        assert_eq!(
            shm.source().clone(),
            Some(PathBuf::from("/run/crius/sandboxes/sb1/shm"))
        );
        assert_eq!(shm.typ().as_deref(), Some("bind"));
        assert_eq!(
            mount(&spec, "/etc/resolv.conf").and_then(|m| m.source().clone()),
            Some(PathBuf::from("/var/lib/crius/sandboxes/sb1/resolv.conf"))
        );
        assert_eq!(
            options(&spec, "/etc/hostname"),
            strings(&["rbind", "rprivate", "rw"])
        );
        let count = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .filter(|m| m.destination() == Path::new("/dev/shm"))
            .count();
        assert_eq!(count, 1);
    }

    #[test]
    fn without_a_pod_shm_the_default_tmpfs_stays() {
        let mut f = Fixture::new();
        f.shm_path = None;
        let spec = f.build().unwrap();
        assert_eq!(
            mount(&spec, "/dev/shm")
                .and_then(|m| m.typ().clone())
                .as_deref(),
            Some("tmpfs")
        );
    }

    #[test]
    fn config_mounts_propagation_readonly_and_order() {
        let mut f = Fixture::new();
        f.config.mounts = vec![
            cri_mount("/data/cache/", "/host/cache", false, Propagation::Private),
            cri_mount("/data", "/host/data", true, Propagation::HostToContainer),
            cri_mount("/etc/hosts", "/host/hosts", true, Propagation::Private),
            cri_mount(
                "/var/lib/kubelet",
                "/var/lib/kubelet",
                false,
                Propagation::Bidirectional,
            ),
        ];
        let spec = f.build().unwrap();
        assert_eq!(options(&spec, "/data"), strings(&["rbind", "rslave", "ro"]));
        assert_eq!(
            options(&spec, "/data/cache"),
            strings(&["rbind", "rprivate", "rw"])
        );
        assert_eq!(
            options(&spec, "/var/lib/kubelet"),
            strings(&["rbind", "rshared", "rw"])
        );
        assert_eq!(
            mount(&spec, "/etc/hosts").and_then(|m| m.source().clone()),
            Some(PathBuf::from("/host/hosts"))
        );
        assert_eq!(
            spec.linux()
                .as_ref()
                .unwrap()
                .rootfs_propagation()
                .as_deref(),
            Some("rshared")
        );

        let destinations: Vec<PathBuf> = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.destination().clone())
            .collect();
        let at = |d: &str| destinations.iter().position(|x| x == Path::new(d)).unwrap();
        assert!(at("/data") < at("/data/cache"));
        assert!(at("/proc") < at("/data"));
        assert_eq!(
            destinations
                .iter()
                .filter(|d| *d == Path::new("/etc/hosts"))
                .count(),
            1
        );
    }

    #[test]
    fn host_to_container_alone_makes_rootfs_rslave() {
        let mut f = Fixture::new();
        f.config.mounts = vec![cri_mount(
            "/logs",
            "/var/log",
            true,
            Propagation::HostToContainer,
        )];
        let spec = f.build().unwrap();
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
    fn a_dev_mount_replaces_every_default_dev_mount() {
        let mut f = Fixture::new();
        f.config.mounts = vec![cri_mount("/dev", "/dev", false, Propagation::Private)];
        f.shm_path = None;
        let spec = f.build().unwrap();
        assert!(mount(&spec, "/dev/pts").is_none());
        assert!(mount(&spec, "/dev/mqueue").is_none());
        assert_eq!(
            mount(&spec, "/dev")
                .and_then(|m| m.typ().clone())
                .as_deref(),
            Some("bind")
        );
    }

    #[test]
    fn bad_mounts_are_rejected() {
        let mut f = Fixture::new();
        f.config.mounts = vec![cri_mount("relative", "/x", false, Propagation::Private)];
        assert!(matches!(f.build(), Err(SpecError::InvalidArgument(_))));
    }

    /// Whether the engine can is checked before the spec is built (`crate::features`);
    /// the spec says what was asked.
    #[test]
    fn recursive_read_only_and_idmapped_mounts_are_rendered() {
        let mut f = Fixture::new();
        let mut rro = cri_mount("/ro", "/x", true, Propagation::Private);
        rro.recursive_read_only = true;
        let mut mapped = cri_mount("/mapped", "/y", false, Propagation::Private);
        let map = vec![IdMapping {
            host_id: 100_000,
            container_id: 0,
            length: 65_536,
        }];
        mapped.uid_mappings = map.clone();
        mapped.gid_mappings = map;
        f.config.mounts = vec![rro, mapped];
        let spec = f.build().unwrap();
        let options = mount(&spec, "/ro")
            .and_then(|m| m.options().clone())
            .unwrap();
        assert!(options.iter().any(|o| o == "ro") && options.iter().any(|o| o == "rro"));
        let mapped = mount(&spec, "/mapped").unwrap();
        let uids = mapped.uid_mappings().clone().unwrap();
        assert_eq!(
            (uids[0].host_id(), uids[0].container_id(), uids[0].size()),
            (100_000, 0, 65_536)
        );
        assert!(mapped.gid_mappings().is_some());
        let plain = mount(&spec, "/ro").unwrap();
        assert!(
            plain.uid_mappings().is_none(),
            "a plain bind has no mappings"
        );
    }

    #[test]
    fn devices_get_nodes_and_cgroup_rules() {
        let mut f = Fixture::new();
        f.config.devices = vec![Device {
            container_path: "/dev/myfuse".to_string(),
            host_path: "/dev/fuse".to_string(),
            permissions: "rw".to_string(),
        }];
        let spec = f.build().unwrap();
        let linux = spec.linux().as_ref().unwrap();
        let devices = linux.devices().clone().unwrap();
        assert_eq!(devices.len(), 1);
        assert_eq!(
            (
                devices[0].path().clone(),
                devices[0].major(),
                devices[0].minor()
            ),
            (PathBuf::from("/dev/myfuse"), 10, 229)
        );
        let rules = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .clone()
            .unwrap();
        assert!(!rules[0].allow());
        assert_eq!(rules[1].to_string(), "c 10:229 rw");

        f.config.devices[0].permissions = "rwx".to_string();
        assert!(matches!(f.build(), Err(SpecError::InvalidArgument(_))));
        f.config.devices[0].permissions = "r".to_string();
        f.config.devices[0].host_path = "/dev/nonexistent".to_string();
        assert!(matches!(f.build(), Err(SpecError::NotFound(_))));
    }

    #[test]
    fn resources_are_applied_and_oom_score_adj_clamped() {
        let mut f = Fixture::new();
        f.floor = -500;
        f.config.resources = Some(Resources {
            cpu_period: 100000,
            cpu_quota: 50000,
            cpu_shares: 512,
            memory_limit_in_bytes: 256 << 20,
            oom_score_adj: -999,
            cpuset_cpus: "0-1".to_string(),
            cpuset_mems: "0".to_string(),
            hugepage_limits: vec![("2MB".to_string(), 1 << 30)],
            ..Default::default()
        });
        let spec = f.build().unwrap();
        assert_eq!(process(&spec).oom_score_adj(), Some(-500));
        let resources = spec.linux().as_ref().unwrap().resources().clone().unwrap();
        let cpu = resources.cpu().clone().unwrap();
        assert_eq!(
            (cpu.shares(), cpu.quota(), cpu.period()),
            (Some(512), Some(50000), Some(100000))
        );
        assert_eq!(
            (cpu.cpus().as_deref(), cpu.mems().as_deref()),
            (Some("0-1"), Some("0"))
        );
        let memory = resources.memory().unwrap();
        assert_eq!(
            (memory.limit(), memory.swap()),
            (Some(256 << 20), Some(256 << 20))
        );
        // This node has no v1 hugetlb controller: the limit is skipped, as containerd does.
        assert!(resources.hugepage_limits().is_none());

        f.config.resources.as_mut().unwrap().oom_score_adj = 900;
        assert_eq!(process(&f.build().unwrap()).oom_score_adj(), Some(900));
        f.config.resources = None;
        assert_eq!(process(&f.build().unwrap()).oom_score_adj(), None);
    }

    #[test]
    fn linux_resources_swap_hugepages_and_unified() {
        let v1 = HostCgroupFeatures {
            unified: false,
            memory_swap: false,
            hugetlb: true,
        };
        let r = Resources {
            memory_limit_in_bytes: 1 << 20,
            memory_swap_limit_in_bytes: 2 << 20,
            hugepage_limits: vec![("1GB".to_string(), 1 << 30)],
            ..Default::default()
        };
        let out = linux_resources(&r, &v1).unwrap();
        assert_eq!(out.memory().unwrap().swap(), None);
        assert_eq!(
            out.hugepage_limits().as_ref().unwrap()[0].page_size(),
            "1GB"
        );
        assert!(out.cpu().is_none());

        let with_swap = HostCgroupFeatures {
            memory_swap: true,
            ..v1
        };
        assert_eq!(
            linux_resources(&r, &with_swap)
                .unwrap()
                .memory()
                .unwrap()
                .swap(),
            Some(2 << 20)
        );

        let mut unified = r.clone();
        unified
            .unified
            .insert("memory.high".to_string(), "1000000".to_string());
        assert!(matches!(
            linux_resources(&unified, &v1),
            Err(SpecError::FailedPrecondition(_))
        ));
        let v2 = HostCgroupFeatures {
            unified: true,
            memory_swap: true,
            hugetlb: true,
        };
        assert_eq!(
            linux_resources(&unified, &v2)
                .unwrap()
                .unified()
                .as_ref()
                .unwrap()["memory.high"],
            "1000000"
        );

        let negative = Resources {
            cpu_shares: -2,
            ..Default::default()
        };
        assert!(matches!(
            linux_resources(&negative, &v2),
            Err(SpecError::InvalidArgument(_))
        ));
    }

    #[test]
    fn sysctls_come_from_the_sandbox() {
        let mut f = Fixture::new();
        f.sandbox
            .sysctls
            .insert("kernel.shm_rmid_forced".to_string(), "1".to_string());
        let spec = f.build().unwrap();
        assert_eq!(
            spec.linux().as_ref().unwrap().sysctl().as_ref().unwrap()["kernel.shm_rmid_forced"],
            "1"
        );
    }

    #[test]
    fn seccomp_per_profile() {
        let mut f = Fixture::new();
        assert!(f
            .build()
            .unwrap()
            .linux()
            .as_ref()
            .unwrap()
            .seccomp()
            .is_none());
        f.config.security.seccomp = Some(SecurityProfile::RuntimeDefault);
        let seccomp = f
            .build()
            .unwrap()
            .linux()
            .as_ref()
            .unwrap()
            .seccomp()
            .clone()
            .unwrap();
        assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActErrno);
        f.config.security.seccomp = Some(SecurityProfile::Localhost(
            "/nonexistent/profile.json".to_string(),
        ));
        assert!(
            matches!(f.build(), Err(SpecError::InvalidArgument(m)) if m.contains("/nonexistent/profile.json"))
        );
    }

    #[test]
    fn apparmor_from_field_or_pod_annotation() {
        let mut f = Fixture::new();
        f.host.apparmor = AppArmorHost {
            enabled: true,
            loaded_profiles: ["restricted".to_string()].into(),
            default_profile_error: None,
        };
        assert_eq!(
            process(&f.build().unwrap()).apparmor_profile().as_deref(),
            Some(crate::security::DEFAULT_APPARMOR_PROFILE)
        );
        f.sandbox.annotations.insert(
            format!("{APPARMOR_ANNOTATION_PREFIX}app"),
            "localhost/restricted".to_string(),
        );
        assert_eq!(
            process(&f.build().unwrap()).apparmor_profile().as_deref(),
            Some("restricted")
        );
        f.config.security.apparmor = Some(SecurityProfile::Localhost("absent".to_string()));
        assert_eq!(
            f.build().unwrap_err(),
            SpecError::FailedPrecondition(
                "Cannot enforce AppArmor: profile \"absent\" is not loaded".to_string()
            )
        );
        // This node has no AppArmor at all: a localhost profile cannot be enforced either.
        let mut plain = Fixture::new();
        plain.config.security.apparmor = Some(SecurityProfile::Localhost("restricted".to_string()));
        assert_eq!(
            plain.build().unwrap_err().to_string(),
            "Cannot enforce AppArmor: profile \"restricted\" is not loaded"
        );
    }

    #[test]
    fn spec_has_no_sample_defaults() {
        let spec = Fixture::new().build().unwrap();
        assert!(process(&spec).rlimits().is_none());
        assert_eq!(spec.version(), "1.0.2-dev");
        assert_eq!(spec.root().as_ref().unwrap().path(), Path::new("rootfs"));
        assert_eq!(
            spec.linux().as_ref().unwrap().cgroups_path().as_deref(),
            Some(Path::new("/kubepods/podUID/c1"))
        );
    }

    #[test]
    fn exec_process_inherits_the_container_process() {
        let mut f = Fixture::new();
        f.config.security.run_as_user = Some(1001);
        f.config.security.no_new_privs = true;
        f.config.envs = vec![("A".to_string(), "1".to_string())];
        f.config.working_dir = "/app".to_string();
        let spec = f.build().unwrap();
        let original = process(&spec);
        let exec = exec_process(original, strings(&["sh", "-c", "id"]), true).unwrap();
        assert_eq!(exec.args().clone().unwrap(), strings(&["sh", "-c", "id"]));
        assert_eq!(exec.terminal(), Some(true));
        assert_eq!(exec.user(), original.user());
        assert_eq!(exec.env(), original.env());
        assert_eq!(exec.cwd(), Path::new("/app"));
        assert_eq!(exec.capabilities(), original.capabilities());
        assert_eq!(exec.no_new_privileges(), Some(true));
        assert!(matches!(
            exec_process(original, Vec::new(), false),
            Err(SpecError::InvalidArgument(_))
        ));
    }

    #[test]
    fn selinux_label_applies_where_selinux_is_enabled_and_pod_label_is_the_default() {
        let mut f = Fixture::new();
        f.sandbox.security.selinux_label = Some("system_u:system_r:pod_t:s0:c1,c2".to_string());
        // No SELinux on the node: nothing to enforce, nothing set (runc would fail on it).
        let spec = f.build().unwrap();
        assert_eq!(process(&spec).selinux_label(), &None);
        assert_eq!(spec.linux().as_ref().unwrap().mount_label(), &None);
        // SELinux enabled: the pod's label, unless the container names its own.
        f.host.selinux_enabled = true;
        let spec = f.build().unwrap();
        let pod_label = Some("system_u:system_r:pod_t:s0:c1,c2".to_string());
        assert_eq!(process(&spec).selinux_label(), &pod_label);
        assert_eq!(spec.linux().as_ref().unwrap().mount_label(), &pod_label);
        f.config.security.selinux_label = Some("u:r:own_t:s0".to_string());
        let spec = f.build().unwrap();
        assert_eq!(
            process(&spec).selinux_label().as_deref(),
            Some("u:r:own_t:s0")
        );
    }
}
