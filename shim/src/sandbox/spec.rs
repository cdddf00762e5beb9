//! What a pod's sandbox container (the pause process, which owns the pod's namespaces:
//! DESIGN.md decision 6) is to be, for the backend to render. A pure function of the pod
//! config and the node's facilities.

use std::collections::HashMap;

use oci_spec::runtime::{LinuxCpu, LinuxResources};
use runtime_backends::{self as engine, CreateContainer};

use crate::domain::{NamespaceMode, SandboxConfig, SupplementalGroupsPolicy};
use crate::security::caps::default_capabilities;
use crate::security::user::{resolve_user, UserRequest};
use crate::security::{
    apparmor_for, clamp_oom_score_adj, seccomp_for, sysctl, userns, HostSecurity,
    DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS,
};

pub use crate::security::SpecError;

/// Annotations on every spec crius writes; the names are the ones containerd's CRI uses, so
/// tools that read them (kata, NRI plugins, monitoring) work on crius too.
pub mod annotations {
    pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
    pub const CONTAINER_TYPE_SANDBOX: &str = "sandbox";
    pub const CONTAINER_TYPE_CONTAINER: &str = "container";
    pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
    pub const SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
    pub const SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
    pub const SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
    pub const SANDBOX_LOG_DIR: &str = "io.kubernetes.cri.sandbox-log-directory";
    pub const SANDBOX_CPU_PERIOD: &str = "io.kubernetes.cri.sandbox-cpu-period";
    pub const SANDBOX_CPU_QUOTA: &str = "io.kubernetes.cri.sandbox-cpu-quota";
    pub const SANDBOX_CPU_SHARES: &str = "io.kubernetes.cri.sandbox-cpu-shares";
    pub const SANDBOX_MEMORY: &str = "io.kubernetes.cri.sandbox-memory";
    pub const CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
    pub const IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
}

/// PATH for processes whose image sets none.
pub const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The pause process's oom_score_adj before clamping: kubelet's value for pods it must keep,
/// so the OOM killer takes a workload before the namespaces holder.
const SANDBOX_OOM_SCORE_ADJ: i64 = -998;

/// CPU shares of the pause container: the minimum the kernel accepts; it only sleeps.
const SANDBOX_CPU_SHARES: u64 = 2;

/// What the pause container's intent is built from.
#[derive(Debug, Clone)]
pub struct SandboxSpecInput<'a> {
    pub id: &'a str,
    pub config: &'a SandboxConfig,
    /// The pod's cgroup, under which the engine names the pause container's.
    pub cgroup: engine::CgroupRequest,
    /// The pause program and its arguments (image entrypoint + cmd).
    pub pause_args: Vec<String>,
    /// A network namespace to join (one crius created and gave to CNI). `None` with a
    /// non-host network: the pause container gets a new one.
    pub netns_path: Option<String>,
    /// crius's own oom_score_adj; nothing may go below it on this node.
    pub oom_score_adj_floor: i64,
    pub host: &'a HostSecurity,
}

/// What the pause container is to be.
pub fn sandbox_request(input: &SandboxSpecInput<'_>) -> Result<CreateContainer, SpecError> {
    use engine::NamespaceMode as Join;
    let config = input.config;
    let security = &config.security;
    let namespaces = &security.namespaces;
    if input.pause_args.is_empty() {
        return Err(SpecError::InvalidArgument(format!(
            "the pause container of sandbox {:?} has no command",
            input.id
        )));
    }
    crate::security::validate_sysctls(&config.sysctls, namespaces)?;

    let user = resolve_user(
        &UserRequest {
            run_as_user: security.run_as_user,
            run_as_group: security.run_as_group,
            supplemental_groups: &security.supplemental_groups,
            policy: SupplementalGroupsPolicy::Strict,
            ..UserRequest::default()
        },
        None,
        None,
    )?;
    let caps = default_capabilities(&input.host.bounding_caps);
    let seccomp = seccomp_for(
        security.seccomp.as_ref(),
        security.privileged,
        &caps.granted_names(),
    )?;
    if seccomp.is_some() && !input.host.seccomp_enabled {
        return Err(SpecError::FailedPrecondition(format!(
            "sandbox {:?} asks for a seccomp profile, but this node's kernel has no seccomp",
            input.id
        )));
    }
    // The pause container only runs under a profile the pod names for itself (containerd
    // gives it none at all); it executes nothing but the pause program.
    let apparmor = match &security.apparmor {
        Some(profile) => apparmor_for(
            Some(profile),
            None,
            security.privileged,
            &input.host.apparmor,
        )?,
        None => None,
    };
    let id_mappings = userns::pod_user_namespace(namespaces.userns.as_ref())?;
    let selinux_label =
        crate::security::selinux_label_for(security.selinux_label.as_ref(), input.host);

    let host_network = namespaces.network == NamespaceMode::Node;
    let own_or_host = |mode: NamespaceMode| {
        if mode == NamespaceMode::Node {
            Join::Host
        } else {
            Join::Private
        }
    };
    let network = match (host_network, &input.netns_path) {
        (true, _) => Join::Host,
        (false, Some(path)) => Join::Path(path.into()),
        (false, None) => Join::Private,
    };
    let namespaces = engine::Namespaces {
        network,
        // A host-network pod shares the host's UTS namespace: hostname stays the node's.
        uts: own_or_host(namespaces.network),
        ipc: own_or_host(namespaces.ipc),
        // POD, CONTAINER and TARGET all give the pause process a PID namespace of its own;
        // for POD the pod's containers join it, otherwise it is the pause process's alone.
        pid: own_or_host(namespaces.pid),
        user: if id_mappings.is_some() {
            Join::Private
        } else {
            Join::Host
        },
        cgroup: Join::Host,
    };

    let mut cpu = LinuxCpu::default();
    cpu.set_shares(Some(SANDBOX_CPU_SHARES));
    let mut resources = LinuxResources::default();
    resources.set_cpu(Some(cpu));

    Ok(CreateContainer {
        id: input.id.to_string(),
        sandbox_id: None,
        image_id: String::new(),
        image_chain_id: String::new(),
        image_name: String::new(),
        labels: HashMap::new(),
        process: engine::ContainerProcess {
            args: input.pause_args.clone(),
            env: vec![DEFAULT_PATH_ENV.to_string()],
            cwd: "/".to_string(),
            user: engine::ProcessUser {
                uid: user.uid,
                gid: user.gid,
                additional_gids: user.additional_gids,
            },
            terminal: false,
            oom_score_adj: Some(clamp_oom_score_adj(
                SANDBOX_OOM_SCORE_ADJ,
                input.oom_score_adj_floor,
            )),
        },
        namespaces,
        id_mappings,
        mounts: Vec::new(),
        devices: Vec::new(),
        resources,
        security: engine::Security {
            // The pause process needs no privilege, whatever the pod's containers get.
            privileged: false,
            readonly_rootfs: true,
            capabilities: caps.into(),
            no_new_privileges: true,
            seccomp,
            apparmor_profile: apparmor,
            selinux_label,
            masked_paths: DEFAULT_MASKED_PATHS.iter().map(|p| p.to_string()).collect(),
            readonly_paths: DEFAULT_READONLY_PATHS
                .iter()
                .map(|p| p.to_string())
                .collect(),
        },
        hostname: (!host_network && !config.hostname.is_empty()).then(|| config.hostname.clone()),
        sysctls: sysctl::normalized(&config.sysctls),
        cgroup: input.cgroup.clone(),
        annotations: sandbox_annotations(input.id, config),
        // Set by the caller, which resolves the pod's handler.
        runtime_handler: String::new(),
    })
}

fn sandbox_annotations(id: &str, config: &SandboxConfig) -> HashMap<String, String> {
    let mut a = HashMap::new();
    a.insert(
        annotations::CONTAINER_TYPE.to_string(),
        annotations::CONTAINER_TYPE_SANDBOX.to_string(),
    );
    a.insert(annotations::SANDBOX_ID.to_string(), id.to_string());
    a.insert(
        annotations::SANDBOX_NAME.to_string(),
        config.metadata.name.clone(),
    );
    a.insert(
        annotations::SANDBOX_NAMESPACE.to_string(),
        config.metadata.namespace.clone(),
    );
    a.insert(
        annotations::SANDBOX_UID.to_string(),
        config.metadata.uid.clone(),
    );
    a.insert(
        annotations::SANDBOX_LOG_DIR.to_string(),
        config.log_directory.clone(),
    );
    // The pod's total resources are the pod cgroup's business (kubelet sizes it); they are
    // recorded for tools that size a VM or account per pod, not applied to the pause process.
    if let Some(r) = &config.resources {
        a.insert(
            annotations::SANDBOX_CPU_PERIOD.to_string(),
            r.cpu_period.to_string(),
        );
        a.insert(
            annotations::SANDBOX_CPU_QUOTA.to_string(),
            r.cpu_quota.to_string(),
        );
        a.insert(
            annotations::SANDBOX_CPU_SHARES.to_string(),
            r.cpu_shares.to_string(),
        );
        a.insert(
            annotations::SANDBOX_MEMORY.to_string(),
            r.memory_limit_in_bytes.to_string(),
        );
    }
    a
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType, LinuxSeccompAction, Spec};

    use super::*;
    use crate::container::spec::rendered;
    use crate::domain::{IdMapping, PodMetadata, Resources, SecurityProfile, UserNamespace};
    use crate::security::{test_host, AppArmorHost};

    fn pod() -> SandboxConfig {
        SandboxConfig {
            metadata: PodMetadata {
                name: "web".to_string(),
                uid: "uid-1".to_string(),
                namespace: "default".to_string(),
                attempt: 0,
            },
            hostname: "web-pod".to_string(),
            log_directory: "/var/log/pods/default_web_uid-1".to_string(),
            ..Default::default()
        }
    }

    fn build(
        config: &SandboxConfig,
        netns: Option<&str>,
        host: &HostSecurity,
    ) -> Result<Spec, SpecError> {
        let request = sandbox_request(&SandboxSpecInput {
            id: "sb1",
            config,
            cgroup: pod_cgroup(),
            pause_args: vec!["/pause".to_string()],
            netns_path: netns.map(str::to_string),
            oom_score_adj_floor: 0,
            host,
        })?;
        rendered(&request, &[])
    }

    fn pod_cgroup() -> engine::CgroupRequest {
        engine::CgroupRequest {
            parent: "/kubepods/podUID".to_string(),
            systemd: false,
        }
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

    #[test]
    fn default_pod_gets_private_namespaces_hostname_and_pause_settings() {
        let spec = build(&pod(), Some("/var/run/netns/cni-1"), &test_host()).unwrap();
        assert_eq!(
            ns_path(&spec, LinuxNamespaceType::Network),
            Some(Some("/var/run/netns/cni-1".to_string()))
        );
        for typ in [
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Pid,
        ] {
            assert_eq!(ns_path(&spec, typ), Some(None), "{typ:?}");
        }
        assert_eq!(ns_path(&spec, LinuxNamespaceType::User), None);
        assert_eq!(spec.hostname().as_deref(), Some("web-pod"));

        let root = spec.root().as_ref().unwrap();
        assert_eq!(root.path(), Path::new("rootfs"));
        assert_eq!(root.readonly(), Some(true));

        let process = spec.process().as_ref().unwrap();
        assert_eq!(process.args().as_deref(), Some(&["/pause".to_string()][..]));
        assert_eq!(process.cwd(), Path::new("/"));
        assert_eq!(
            process.env().as_deref(),
            Some(&[DEFAULT_PATH_ENV.to_string()][..])
        );
        assert_eq!((process.user().uid(), process.user().gid()), (0, 0));
        assert_eq!(process.no_new_privileges(), Some(true));
        assert_eq!(process.oom_score_adj(), Some(0));
        assert!(process.rlimits().is_none());
        let caps = process.capabilities().as_ref().unwrap();
        assert_eq!(caps.bounding().as_ref().map(|c| c.len()), Some(14));
        assert_eq!(caps.ambient().as_ref().map(|c| c.len()), Some(0));

        let linux = spec.linux().as_ref().unwrap();
        assert_eq!(
            linux.cgroups_path().as_deref(),
            Some(Path::new("/kubepods/podUID/sb1"))
        );
        let cpu = linux
            .resources()
            .as_ref()
            .and_then(|r| r.cpu().clone())
            .unwrap();
        assert_eq!(cpu.shares(), Some(2));
        assert!(linux
            .masked_paths()
            .as_ref()
            .unwrap()
            .contains(&"/proc/kcore".to_string()));
        assert!(linux
            .readonly_paths()
            .as_ref()
            .unwrap()
            .contains(&"/proc/sys".to_string()));
        assert!(linux.seccomp().is_none());

        let destinations: Vec<_> = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.destination().clone())
            .collect();
        for d in [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys",
        ] {
            assert!(destinations.contains(&d.into()), "{d}");
        }

        let a = spec.annotations().as_ref().unwrap();
        assert_eq!(a[annotations::CONTAINER_TYPE], "sandbox");
        assert_eq!(a[annotations::SANDBOX_ID], "sb1");
        assert_eq!(a[annotations::SANDBOX_NAME], "web");
        assert_eq!(a[annotations::SANDBOX_NAMESPACE], "default");
        assert_eq!(a[annotations::SANDBOX_UID], "uid-1");
    }

    #[test]
    fn no_netns_path_creates_a_new_network_namespace() {
        let spec = build(&pod(), None, &test_host()).unwrap();
        assert_eq!(ns_path(&spec, LinuxNamespaceType::Network), Some(None));
    }

    #[test]
    fn host_network_shares_net_and_uts_and_sets_no_hostname() {
        let mut config = pod();
        config.security.namespaces.network = NamespaceMode::Node;
        let spec = build(&config, Some("/ignored"), &test_host()).unwrap();
        assert_eq!(ns_path(&spec, LinuxNamespaceType::Network), None);
        assert_eq!(ns_path(&spec, LinuxNamespaceType::Uts), None);
        assert_eq!(spec.hostname(), &None);
        assert_eq!(ns_path(&spec, LinuxNamespaceType::Ipc), Some(None));
    }

    #[test]
    fn host_ipc_and_pid_modes() {
        let mut config = pod();
        config.security.namespaces.ipc = NamespaceMode::Node;
        config.security.namespaces.pid = NamespaceMode::Node;
        let spec = build(&config, None, &test_host()).unwrap();
        assert_eq!(ns_path(&spec, LinuxNamespaceType::Ipc), None);
        assert_eq!(ns_path(&spec, LinuxNamespaceType::Pid), None);

        config.security.namespaces.pid = NamespaceMode::Container;
        let spec = build(&config, None, &test_host()).unwrap();
        assert_eq!(ns_path(&spec, LinuxNamespaceType::Pid), Some(None));
    }

    #[test]
    fn oom_score_adj_is_clamped_to_the_floor() {
        let config = pod();
        let host = test_host();
        let mut input = SandboxSpecInput {
            id: "sb1",
            config: &config,
            cgroup: pod_cgroup(),
            pause_args: vec!["/pause".to_string()],
            netns_path: None,
            oom_score_adj_floor: -999,
            host: &host,
        };
        let request = sandbox_request(&input).unwrap();
        assert_eq!(request.process.oom_score_adj, Some(-998));
        input.oom_score_adj_floor = 3;
        let request = sandbox_request(&input).unwrap();
        assert_eq!(request.process.oom_score_adj, Some(3));
    }

    #[test]
    fn run_as_user_group_and_supplemental_groups() {
        let mut config = pod();
        config.security.run_as_user = Some(65535);
        config.security.run_as_group = Some(65534);
        config.security.supplemental_groups = vec![3000];
        let spec = build(&config, None, &test_host()).unwrap();
        let user = spec.process().as_ref().unwrap().user().clone();
        assert_eq!((user.uid(), user.gid()), (65535, 65534));
        assert_eq!(user.additional_gids().as_deref(), Some(&[3000, 65534][..]));
    }

    #[test]
    fn sysctls_are_validated_and_applied() {
        let mut config = pod();
        config.sysctls.insert(
            "net.ipv4.ip_unprivileged_port_start".to_string(),
            "0".to_string(),
        );
        let spec = build(&config, None, &test_host()).unwrap();
        let sysctls = spec.linux().as_ref().unwrap().sysctl().clone().unwrap();
        assert_eq!(sysctls["net.ipv4.ip_unprivileged_port_start"], "0");

        config
            .sysctls
            .insert("kernel.panic".to_string(), "1".to_string());
        assert!(
            matches!(build(&config, None, &test_host()), Err(SpecError::InvalidArgument(m)) if m.contains("kernel.panic"))
        );
    }

    #[test]
    fn seccomp_runtime_default_and_unsupported_kernel() {
        let mut config = pod();
        config.security.seccomp = Some(SecurityProfile::RuntimeDefault);
        let spec = build(&config, None, &test_host()).unwrap();
        let seccomp = spec.linux().as_ref().unwrap().seccomp().clone().unwrap();
        assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActErrno);

        let mut no_seccomp = test_host();
        no_seccomp.seccomp_enabled = false;
        assert!(matches!(
            build(&config, None, &no_seccomp),
            Err(SpecError::FailedPrecondition(_))
        ));
        config.security.seccomp = Some(SecurityProfile::Unconfined);
        assert!(build(&config, None, &no_seccomp)
            .unwrap()
            .linux()
            .as_ref()
            .unwrap()
            .seccomp()
            .is_none());
    }

    #[test]
    fn pod_apparmor_profile_must_be_loaded() {
        let mut config = pod();
        config.security.apparmor = Some(SecurityProfile::Localhost("pod-profile".to_string()));
        let err = build(&config, None, &test_host()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Cannot enforce AppArmor: profile \"pod-profile\" is not loaded"
        );
        let mut host = test_host();
        host.apparmor = AppArmorHost {
            enabled: true,
            loaded_profiles: ["pod-profile".to_string()].into(),
            default_profile_error: None,
        };
        let spec = build(&config, None, &host).unwrap();
        assert_eq!(
            spec.process()
                .as_ref()
                .unwrap()
                .apparmor_profile()
                .as_deref(),
            Some("pod-profile")
        );
    }

    #[test]
    fn pod_user_namespace_adds_mappings() {
        let mut config = pod();
        let mapping = IdMapping {
            host_id: 100000,
            container_id: 0,
            length: 65536,
        };
        config.security.namespaces.userns = Some(UserNamespace {
            mode: NamespaceMode::Pod,
            uids: vec![mapping.clone()],
            gids: vec![mapping],
        });
        let spec = build(&config, None, &test_host()).unwrap();
        assert_eq!(ns_path(&spec, LinuxNamespaceType::User), Some(None));
        let linux = spec.linux().as_ref().unwrap();
        let uid_map = linux.uid_mappings().clone().unwrap();
        assert_eq!(
            (
                uid_map[0].container_id(),
                uid_map[0].host_id(),
                uid_map[0].size()
            ),
            (0, 100000, 65536)
        );
        assert_eq!(linux.gid_mappings().as_ref().map(Vec::len), Some(1));
    }

    #[test]
    fn pod_resources_are_recorded_not_applied() {
        let mut config = pod();
        config.resources = Some(Resources {
            cpu_quota: 50000,
            cpu_period: 100000,
            memory_limit_in_bytes: 1 << 30,
            ..Default::default()
        });
        let spec = build(&config, None, &test_host()).unwrap();
        let a = spec.annotations().as_ref().unwrap();
        assert_eq!(a[annotations::SANDBOX_CPU_QUOTA], "50000");
        assert_eq!(a[annotations::SANDBOX_MEMORY], (1u64 << 30).to_string());
        let resources = spec.linux().as_ref().unwrap().resources().clone().unwrap();
        assert!(resources.memory().is_none());
        assert_eq!(resources.cpu().as_ref().unwrap().quota(), None);
    }

    #[test]
    fn empty_pause_command_is_rejected() {
        let config = pod();
        let input = SandboxSpecInput {
            id: "sb1",
            config: &config,
            cgroup: pod_cgroup(),
            pause_args: Vec::new(),
            netns_path: None,
            oom_score_adj_floor: 0,
            host: &test_host(),
        };
        assert!(matches!(
            sandbox_request(&input),
            Err(SpecError::InvalidArgument(_))
        ));
    }
}
