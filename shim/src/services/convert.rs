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
            uids: u
                .uids
                .iter()
                .map(|m| cri::IdMapping {
                    host_id: m.host_id,
                    container_id: m.container_id,
                    length: m.length,
                })
                .collect(),
            gids: u
                .gids
                .iter()
                .map(|m| cri::IdMapping {
                    host_id: m.host_id,
                    container_id: m.container_id,
                    length: m.length,
                })
                .collect(),
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
        if !config.log_directory.is_empty() && !config.log_directory.starts_with('/') {
            return Err(invalid(format!(
                "RunPodSandbox: log_directory {:?} must be absolute",
                config.log_directory
            )));
        }
        let linux = config.linux.unwrap_or_default();
        let sc = linux.security_context.unwrap_or_default();
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
        crate::sandbox::check_runtime_handler(
            &image.runtime_handler,
            "CreateContainer: image.runtime_handler",
        )?;
        if config.log_path.starts_with('/') || config.log_path.split('/').any(|p| p == "..") {
            return Err(invalid(format!(
                "CreateContainer: log_path {:?} must be relative to the sandbox log directory",
                config.log_path
            )));
        }
        let mut mounts = Vec::new();
        for m in config.mounts {
            if m.container_path.is_empty() || !m.container_path.starts_with('/') {
                return Err(invalid(format!(
                    "CreateContainer: mount container_path {:?} must be absolute",
                    m.container_path
                )));
            }
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
            if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
                return Err(Error::FailedPrecondition(format!(
                    "CreateContainer: mount of {} asks for an idmapped mount, which this node cannot do (runc 1.1 has no idmapped mounts; crius reports user_namespaces=false)",
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
            });
        }
        if !config.cdi_devices.is_empty() {
            return Err(Error::Unimplemented(
                "CreateContainer: CDI devices are not supported yet".into(),
            ));
        }
        let linux = config.linux.unwrap_or_default();
        let sc = linux.security_context.unwrap_or_default();
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
