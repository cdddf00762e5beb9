//! Conversions between CRI messages and domain types. Validation lives here and answers
//! InvalidArgument naming the field that was wrong.

use std::collections::{BTreeMap, HashMap};

use cri_api::v1 as cri;

use crate::domain::*;
use crate::error::{Error, Result};

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidArgument(message.into())
}

pub fn labels(map: HashMap<String, String>) -> Labels {
    map.into_iter().collect()
}

pub fn to_map(labels: &Labels) -> HashMap<String, String> {
    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn namespace_mode(raw: i32) -> Result<NamespaceMode> {
    match cri::NamespaceMode::try_from(raw) {
        Ok(cri::NamespaceMode::Pod) => Ok(NamespaceMode::Pod),
        Ok(cri::NamespaceMode::Container) => Ok(NamespaceMode::Container),
        Ok(cri::NamespaceMode::Node) => Ok(NamespaceMode::Node),
        Ok(cri::NamespaceMode::Target) => Ok(NamespaceMode::Target),
        Err(_) => Err(invalid(format!("unknown namespace mode {raw}"))),
    }
}

pub fn namespace_mode_to_cri(mode: NamespaceMode) -> i32 {
    match mode {
        NamespaceMode::Pod => cri::NamespaceMode::Pod as i32,
        NamespaceMode::Container => cri::NamespaceMode::Container as i32,
        NamespaceMode::Node => cri::NamespaceMode::Node as i32,
        NamespaceMode::Target => cri::NamespaceMode::Target as i32,
    }
}

/// CRI `SELinuxOption` as the `user:role:type:level` label runc applies; `None` when every
/// part is empty.
fn selinux_label(o: cri::SeLinuxOption) -> Option<String> {
    let parts = [o.user, o.role, o.r#type, o.level];
    if parts.iter().all(String::is_empty) {
        return None;
    }
    Some(parts.join(":"))
}

pub fn id_mappings_to_cri(list: &[IdMapping]) -> Vec<cri::IdMapping> {
    list.iter()
        .map(|m| cri::IdMapping {
            host_id: m.host_id,
            container_id: m.container_id,
            length: m.length,
        })
        .collect()
}

fn id_mappings(list: Vec<cri::IdMapping>) -> Vec<IdMapping> {
    list.into_iter()
        .map(|m| IdMapping {
            host_id: m.host_id,
            container_id: m.container_id,
            length: m.length,
        })
        .collect()
}

fn namespaces(options: Option<cri::NamespaceOption>) -> Result<NamespaceOptions> {
    let Some(o) = options else {
        return Ok(NamespaceOptions::default());
    };
    let userns = match o.userns_options {
        Some(u) => Some(UserNamespace {
            mode: namespace_mode(u.mode)?,
            uids: id_mappings(u.uids),
            gids: id_mappings(u.gids),
        }),
        None => None,
    };
    Ok(NamespaceOptions {
        network: namespace_mode(o.network)?,
        pid: namespace_mode(o.pid)?,
        ipc: namespace_mode(o.ipc)?,
        target_id: o.target_id,
        userns,
    })
}

pub fn namespaces_to_cri(o: &NamespaceOptions) -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: namespace_mode_to_cri(o.network),
        pid: namespace_mode_to_cri(o.pid),
        ipc: namespace_mode_to_cri(o.ipc),
        target_id: o.target_id.clone(),
        userns_options: o.userns.as_ref().map(|u| cri::UserNamespace {
            mode: namespace_mode_to_cri(u.mode),
            uids: id_mappings_to_cri(&u.uids),
            gids: id_mappings_to_cri(&u.gids),
        }),
    }
}

/// A `SecurityProfile`, falling back to the deprecated string field when the message is unset.
fn profile(
    field: &str,
    message: Option<cri::SecurityProfile>,
    legacy: &str,
) -> Result<Option<SecurityProfile>> {
    if let Some(p) = message {
        return match cri::security_profile::ProfileType::try_from(p.profile_type) {
            Ok(cri::security_profile::ProfileType::RuntimeDefault) => {
                Ok(Some(SecurityProfile::RuntimeDefault))
            }
            Ok(cri::security_profile::ProfileType::Unconfined) => {
                Ok(Some(SecurityProfile::Unconfined))
            }
            Ok(cri::security_profile::ProfileType::Localhost) => {
                if p.localhost_ref.is_empty() {
                    Err(invalid(format!(
                        "{field}: Localhost profile needs localhost_ref"
                    )))
                } else {
                    Ok(Some(SecurityProfile::Localhost(p.localhost_ref)))
                }
            }
            Err(_) => Err(invalid(format!(
                "{field}: unknown profile type {}",
                p.profile_type
            ))),
        };
    }
    Ok(match legacy {
        "" => None,
        "unconfined" => Some(SecurityProfile::Unconfined),
        "runtime/default" | "docker/default" => Some(SecurityProfile::RuntimeDefault),
        other => match other.strip_prefix("localhost/") {
            Some(rest) => Some(SecurityProfile::Localhost(rest.to_string())),
            None => return Err(invalid(format!("{field}: unsupported profile {other:?}"))),
        },
    })
}

fn groups_policy(raw: i32) -> Result<SupplementalGroupsPolicy> {
    match cri::SupplementalGroupsPolicy::try_from(raw) {
        Ok(cri::SupplementalGroupsPolicy::Merge) => Ok(SupplementalGroupsPolicy::Merge),
        Ok(cri::SupplementalGroupsPolicy::Strict) => Ok(SupplementalGroupsPolicy::Strict),
        Err(_) => Err(invalid(format!("unknown supplemental_groups_policy {raw}"))),
    }
}

pub fn resources(r: cri::LinuxContainerResources) -> Resources {
    Resources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit_in_bytes: r.memory_limit_in_bytes,
        oom_score_adj: r.oom_score_adj,
        cpuset_cpus: r.cpuset_cpus,
        cpuset_mems: r.cpuset_mems,
        hugepage_limits: r
            .hugepage_limits
            .into_iter()
            .map(|h| (h.page_size, h.limit))
            .collect(),
        unified: r.unified.into_iter().collect::<BTreeMap<_, _>>(),
        memory_swap_limit_in_bytes: r.memory_swap_limit_in_bytes,
    }
}

pub fn resources_to_cri(r: &Resources) -> cri::LinuxContainerResources {
    cri::LinuxContainerResources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit_in_bytes: r.memory_limit_in_bytes,
        oom_score_adj: r.oom_score_adj,
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
        hugepage_limits: r
            .hugepage_limits
            .iter()
            .map(|(p, l)| cri::HugepageLimit {
                page_size: p.clone(),
                limit: *l,
            })
            .collect(),
        unified: r
            .unified
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        memory_swap_limit_in_bytes: r.memory_swap_limit_in_bytes,
    }
}

/// api.proto: "run_as_group should only be specified when run_as_user or run_as_username is
/// specified; otherwise, the runtime MUST error" (the sandbox's context has no username).
/// Without this a group alone would be applied to whatever user the image names.
fn check_run_as_group(
    rpc: &str,
    run_as_group: Option<&cri::Int64Value>,
    run_as_user: Option<&cri::Int64Value>,
    run_as_username: &str,
) -> Result<()> {
    let Some(group) = run_as_group else {
        return Ok(());
    };
    if run_as_user.is_some() || !run_as_username.is_empty() {
        return Ok(());
    }
    Err(invalid(format!(
        "{rpc}: linux.security_context.run_as_group {} needs run_as_user or run_as_username",
        group.value
    )))
}

/// The kernel takes paths, arguments, names and sysctls as C strings: a value with a NUL byte
/// could only fail later, in runc, after every step of the create was done.
fn no_nul<'a>(rpc: &str, field: &str, values: impl IntoIterator<Item = &'a String>) -> Result<()> {
    if values.into_iter().any(|v| v.contains('\0')) {
        return Err(invalid(format!("{rpc}: {field} contains a NUL byte")));
    }
    Ok(())
}

/// A mount's path in the container: absolute, and naming a place below `/` once `.` and `..`
/// are resolved. `..` that stays inside is resolved as runc would (kubelet passes `mountPath`
/// through unchecked, and containerd accepts it); `..` that climbs above `/` can only be an
/// attempt at a path outside the container, and `/` itself would hide the image's root
/// filesystem (runc refuses it only at start).
fn check_container_path(container_path: &str) -> Result<()> {
    if !container_path.starts_with('/') {
        return Err(invalid(format!(
            "CreateContainer: mount container_path {container_path:?} must be absolute"
        )));
    }
    let mut depth = 0usize;
    for part in container_path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                depth = depth.checked_sub(1).ok_or_else(|| {
                    invalid(format!(
                        "CreateContainer: mount container_path {container_path:?} climbs above /"
                    ))
                })?;
            }
            _ => depth += 1,
        }
    }
    if depth == 0 {
        return Err(invalid(format!(
            "CreateContainer: mount container_path {container_path:?} is the container's root"
        )));
    }
    Ok(())
}

fn protocol(raw: i32) -> Result<Protocol> {
    match cri::Protocol::try_from(raw) {
        Ok(cri::Protocol::Tcp) => Ok(Protocol::Tcp),
        Ok(cri::Protocol::Udp) => Ok(Protocol::Udp),
        Ok(cri::Protocol::Sctp) => Ok(Protocol::Sctp),
        Err(_) => Err(invalid(format!("unknown port protocol {raw}"))),
    }
}

impl TryFrom<cri::RunPodSandboxRequest> for SandboxConfig {
    type Error = Error;
    // The deprecated profile strings are still honoured when the message form is unset.
    #[allow(deprecated)]
    fn try_from(request: cri::RunPodSandboxRequest) -> Result<Self> {
        let config = request
            .config
            .ok_or_else(|| invalid("RunPodSandbox: config is required"))?;
        let metadata = config
            .metadata
            .ok_or_else(|| invalid("RunPodSandbox: config.metadata is required"))?;
        if metadata.name.is_empty() {
            return Err(invalid("RunPodSandbox: metadata.name must not be empty"));
        }
        if metadata.namespace.is_empty() {
            return Err(invalid(
                "RunPodSandbox: metadata.namespace must not be empty",
            ));
        }
        if metadata.uid.is_empty() {
            return Err(invalid("RunPodSandbox: metadata.uid must not be empty"));
        }
        no_nul(
            "RunPodSandbox",
            "hostname, log_directory or cgroup_parent",
            [&config.hostname, &config.log_directory]
                .into_iter()
                .chain(config.linux.iter().map(|l| &l.cgroup_parent)),
        )?;
        no_nul(
            "RunPodSandbox",
            "a sysctl",
            config
                .linux
                .iter()
                .flat_map(|l| l.sysctls.iter().flat_map(|(k, v)| [k, v])),
        )?;
        no_nul(
            "RunPodSandbox",
            "dns_config",
            config
                .dns_config
                .iter()
                .flat_map(|d| d.servers.iter().chain(&d.searches).chain(&d.options)),
        )?;
        if !config.log_directory.is_empty() && !config.log_directory.starts_with('/') {
            return Err(invalid(format!(
                "RunPodSandbox: log_directory {:?} must be absolute",
                config.log_directory
            )));
        }
        let linux = config.linux.unwrap_or_default();
        let sc = linux.security_context.unwrap_or_default();
        check_run_as_group(
            "RunPodSandbox",
            sc.run_as_group.as_ref(),
            sc.run_as_user.as_ref(),
            "",
        )?;
        let security = SandboxSecurity {
            namespaces: namespaces(sc.namespace_options)?,
            privileged: sc.privileged,
            run_as_user: sc.run_as_user.map(|v| v.value),
            run_as_group: sc.run_as_group.map(|v| v.value),
            readonly_rootfs: sc.readonly_rootfs,
            supplemental_groups: sc.supplemental_groups,
            seccomp: profile("seccomp", sc.seccomp, &sc.seccomp_profile_path)?,
            apparmor: profile("apparmor", sc.apparmor, "")?,
            supplemental_groups_policy: groups_policy(sc.supplemental_groups_policy)?,
            selinux_label: sc.selinux_options.and_then(selinux_label),
        };
        let mut port_mappings = Vec::new();
        for p in config.port_mappings {
            port_mappings.push(PortMapping {
                protocol: protocol(p.protocol)?,
                container_port: p.container_port,
                host_port: p.host_port,
                host_ip: p.host_ip,
            });
        }
        Ok(SandboxConfig {
            metadata: PodMetadata {
                name: metadata.name,
                uid: metadata.uid,
                namespace: metadata.namespace,
                attempt: metadata.attempt,
            },
            hostname: config.hostname,
            log_directory: config.log_directory,
            dns: config.dns_config.map(|d| DnsConfig {
                servers: d.servers,
                searches: d.searches,
                options: d.options,
            }),
            port_mappings,
            labels: labels(config.labels),
            annotations: labels(config.annotations),
            cgroup_parent: linux.cgroup_parent,
            sysctls: labels(linux.sysctls),
            security,
            overhead: linux.overhead.map(resources),
            resources: linux.resources.map(resources),
            runtime_handler: request.runtime_handler,
        })
    }
}

fn propagation(raw: i32) -> Result<Propagation> {
    match cri::MountPropagation::try_from(raw) {
        Ok(cri::MountPropagation::PropagationPrivate) => Ok(Propagation::Private),
        Ok(cri::MountPropagation::PropagationHostToContainer) => Ok(Propagation::HostToContainer),
        Ok(cri::MountPropagation::PropagationBidirectional) => Ok(Propagation::Bidirectional),
        Err(_) => Err(invalid(format!("unknown mount propagation {raw}"))),
    }
}

pub fn propagation_to_cri(p: Propagation) -> i32 {
    match p {
        Propagation::Private => cri::MountPropagation::PropagationPrivate as i32,
        Propagation::HostToContainer => cri::MountPropagation::PropagationHostToContainer as i32,
        Propagation::Bidirectional => cri::MountPropagation::PropagationBidirectional as i32,
    }
}

/// Signal enum of the CRI → signal name.
fn stop_signal(raw: i32) -> Result<Option<String>> {
    let signal =
        cri::Signal::try_from(raw).map_err(|_| invalid(format!("unknown stop_signal {raw}")))?;
    if signal == cri::Signal::RuntimeDefault {
        return Ok(None);
    }
    Ok(Some(signal.as_str_name().to_string()))
}

pub fn stop_signal_to_cri(name: Option<&str>) -> i32 {
    name.and_then(cri::Signal::from_str_name)
        .map(|s| s as i32)
        .unwrap_or(0)
}

impl TryFrom<cri::ContainerConfig> for ContainerConfig {
    type Error = Error;
    // The deprecated profile strings are still honoured when the message form is unset.
    #[allow(deprecated)]
    fn try_from(config: cri::ContainerConfig) -> Result<Self> {
        let metadata = config
            .metadata
            .ok_or_else(|| invalid("CreateContainer: config.metadata is required"))?;
        if metadata.name.is_empty() {
            return Err(invalid("CreateContainer: metadata.name must not be empty"));
        }
        let image = config
            .image
            .ok_or_else(|| invalid("CreateContainer: config.image is required"))?;
        if image.image.is_empty() {
            return Err(invalid("CreateContainer: image.image must not be empty"));
        }
        no_nul(
            "CreateContainer",
            "command, args, working_dir or log_path",
            config
                .command
                .iter()
                .chain(&config.args)
                .chain([&config.working_dir, &config.log_path]),
        )?;
        no_nul(
            "CreateContainer",
            "an environment variable",
            config.envs.iter().flat_map(|kv| [&kv.key, &kv.value]),
        )?;
        no_nul(
            "CreateContainer",
            "a mount or device path",
            config
                .mounts
                .iter()
                .flat_map(|m| [&m.container_path, &m.host_path])
                .chain(
                    config
                        .devices
                        .iter()
                        .flat_map(|d| [&d.container_path, &d.host_path]),
                ),
        )?;
        if let Some(sc) = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
        {
            no_nul(
                "CreateContainer",
                "run_as_username, masked_paths or readonly_paths",
                [&sc.run_as_username]
                    .into_iter()
                    .chain(&sc.masked_paths)
                    .chain(&sc.readonly_paths),
            )?;
        }
        if config.log_path.starts_with('/') || config.log_path.split('/').any(|p| p == "..") {
            return Err(invalid(format!(
                "CreateContainer: log_path {:?} must be relative to the sandbox log directory",
                config.log_path
            )));
        }
        let mut mounts = Vec::new();
        for m in config.mounts {
            check_container_path(&m.container_path)?;
            // An image volume: an image spec naming an image, or any without a host path.
            if m.image
                .as_ref()
                .is_some_and(|i| !i.image.is_empty() || m.host_path.is_empty())
            {
                return Err(Error::Unimplemented(format!(
                    "CreateContainer: image volume mounts ({}) are not supported yet",
                    m.container_path
                )));
            }
            if !m.host_path.starts_with('/') {
                return Err(invalid(format!(
                    "CreateContainer: mount host_path {:?} must be absolute",
                    m.host_path
                )));
            }
            // api.proto: with recursive_read_only, readonly must be true and propagation
            // PRIVATE.
            if m.recursive_read_only
                && (!m.readonly
                    || m.propagation != cri::MountPropagation::PropagationPrivate as i32)
            {
                return Err(invalid(format!(
                    "CreateContainer: mount of {} is recursive_read_only, which needs readonly and PRIVATE propagation",
                    m.container_path
                )));
            }
            if m.uid_mappings.is_empty() != m.gid_mappings.is_empty() {
                return Err(invalid(format!(
                    "CreateContainer: mount of {} gives uid_mappings or gid_mappings without the other",
                    m.container_path
                )));
            }
            mounts.push(Mount {
                container_path: m.container_path,
                host_path: m.host_path,
                readonly: m.readonly,
                selinux_relabel: m.selinux_relabel,
                propagation: propagation(m.propagation)?,
                recursive_read_only: m.recursive_read_only,
                uid_mappings: id_mappings(m.uid_mappings),
                gid_mappings: id_mappings(m.gid_mappings),
            });
        }
        if !config.cdi_devices.is_empty() {
            return Err(Error::Unimplemented(
                "CreateContainer: CDI devices are not supported yet".into(),
            ));
        }
        let linux = config.linux.unwrap_or_default();
        let sc = linux.security_context.unwrap_or_default();
        check_run_as_group(
            "CreateContainer",
            sc.run_as_group.as_ref(),
            sc.run_as_user.as_ref(),
            &sc.run_as_username,
        )?;
        let caps = sc.capabilities.unwrap_or_default();
        let apparmor_legacy = sc.apparmor_profile.clone();
        let security = ContainerSecurity {
            capabilities: Capabilities {
                add: caps.add_capabilities,
                drop: caps.drop_capabilities,
                add_ambient: caps.add_ambient_capabilities,
            },
            privileged: sc.privileged,
            namespaces: namespaces(sc.namespace_options)?,
            run_as_user: sc.run_as_user.map(|v| v.value),
            run_as_group: sc.run_as_group.map(|v| v.value),
            run_as_username: sc.run_as_username,
            readonly_rootfs: sc.readonly_rootfs,
            supplemental_groups: sc.supplemental_groups,
            supplemental_groups_policy: groups_policy(sc.supplemental_groups_policy)?,
            no_new_privs: sc.no_new_privs,
            masked_paths: sc.masked_paths,
            readonly_paths: sc.readonly_paths,
            seccomp: profile("seccomp", sc.seccomp, &sc.seccomp_profile_path)?,
            apparmor: profile("apparmor", sc.apparmor, &apparmor_legacy)?,
            selinux_label: sc.selinux_options.and_then(selinux_label),
        };
        Ok(ContainerConfig {
            metadata: ContainerMetadata {
                name: metadata.name,
                attempt: metadata.attempt,
            },
            user_specified_image: if image.user_specified_image.is_empty() {
                image.image.clone()
            } else {
                image.user_specified_image
            },
            image: image.image,
            command: config.command,
            args: config.args,
            working_dir: config.working_dir,
            envs: config
                .envs
                .into_iter()
                .map(|kv| (kv.key, kv.value))
                .collect(),
            mounts,
            devices: config
                .devices
                .into_iter()
                .map(|d| Device {
                    container_path: d.container_path,
                    host_path: d.host_path,
                    permissions: d.permissions,
                })
                .collect(),
            labels: labels(config.labels),
            annotations: labels(config.annotations),
            log_path: config.log_path,
            stdin: config.stdin,
            stdin_once: config.stdin_once,
            tty: config.tty,
            resources: linux.resources.map(resources),
            security,
            stop_signal: stop_signal(config.stop_signal)?,
        })
    }
}

/// Does `labels` hold every pair of `selector`?
pub fn matches_selector(labels: &Labels, selector: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox_request(sc: cri::LinuxSandboxSecurityContext) -> cri::RunPodSandboxRequest {
        cri::RunPodSandboxRequest {
            config: Some(cri::PodSandboxConfig {
                metadata: Some(cri::PodSandboxMetadata {
                    name: "web".into(),
                    uid: "uid-1".into(),
                    namespace: "default".into(),
                    attempt: 0,
                }),
                linux: Some(cri::LinuxPodSandboxConfig {
                    security_context: Some(sc),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            runtime_handler: String::new(),
        }
    }

    fn container_config(sc: cri::LinuxContainerSecurityContext) -> cri::ContainerConfig {
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "app".into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            linux: Some(cri::LinuxContainerConfig {
                resources: None,
                security_context: Some(sc),
            }),
            ..Default::default()
        }
    }

    fn id(value: i64) -> Option<cri::Int64Value> {
        Some(cri::Int64Value { value })
    }

    fn refused_naming_run_as_group<T: std::fmt::Debug>(result: Result<T>) {
        match result {
            Err(Error::InvalidArgument(message)) => {
                assert!(message.contains("run_as_group 3000"), "{message}")
            }
            other => panic!("expected InvalidArgument naming run_as_group, got {other:?}"),
        }
    }

    #[test]
    fn a_mount_path_must_name_a_place_below_the_container_root() {
        for good in ["/data", "/a/./b", "/data/../srv", "//etc//x/"] {
            assert!(check_container_path(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            "data",
            "/",
            "//",
            "/.",
            "/..",
            "/a/..",
            "/../etc",
            "/a/../../b",
        ] {
            assert!(
                matches!(check_container_path(bad), Err(Error::InvalidArgument(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_nul_byte_in_a_path_argument_or_name_is_refused_naming_the_field() {
        let mut config = container_config(cri::LinuxContainerSecurityContext::default());
        config.args = vec!["ok".into(), "a\0b".into()];
        match ContainerConfig::try_from(config) {
            Err(Error::InvalidArgument(message)) => assert!(message.contains("args"), "{message}"),
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
        let mut request = sandbox_request(cri::LinuxSandboxSecurityContext::default());
        if let Some(config) = request.config.as_mut() {
            config.hostname = "web\0".into();
        }
        match SandboxConfig::try_from(request) {
            Err(Error::InvalidArgument(message)) => {
                assert!(message.contains("hostname"), "{message}")
            }
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn a_container_run_as_group_without_a_user_is_refused_naming_the_field() {
        refused_naming_run_as_group(ContainerConfig::try_from(container_config(
            cri::LinuxContainerSecurityContext {
                run_as_group: id(3000),
                ..Default::default()
            },
        )));
        for sc in [
            cri::LinuxContainerSecurityContext {
                run_as_group: id(3000),
                run_as_user: id(1000),
                ..Default::default()
            },
            cri::LinuxContainerSecurityContext {
                run_as_group: id(3000),
                run_as_username: "alice".into(),
                ..Default::default()
            },
            cri::LinuxContainerSecurityContext {
                run_as_user: id(1000),
                ..Default::default()
            },
        ] {
            let config = ContainerConfig::try_from(container_config(sc.clone()))
                .unwrap_or_else(|e| panic!("{sc:?}: {e}"));
            assert_eq!(
                config.security.run_as_group,
                sc.run_as_group.map(|g| g.value)
            );
        }
    }

    #[test]
    fn a_sandbox_run_as_group_without_run_as_user_is_refused_naming_the_field() {
        refused_naming_run_as_group(SandboxConfig::try_from(sandbox_request(
            cri::LinuxSandboxSecurityContext {
                run_as_group: id(3000),
                ..Default::default()
            },
        )));
        let config = SandboxConfig::try_from(sandbox_request(cri::LinuxSandboxSecurityContext {
            run_as_group: id(3000),
            run_as_user: id(1000),
            ..Default::default()
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (config.security.run_as_user, config.security.run_as_group),
            (Some(1000), Some(3000))
        );
    }
}
