//! The OCI specs containerd receives for a table of representative pods and containers:
//! the shim's intent rendered as the containerd backend renders it, compared with the JSON
//! files under `shim/tests/golden/`. The files were written from the specs crius built
//! itself before creation spoke intent, so the rendering must reproduce them exactly.
//! `CRIUS_BLESS_GOLDEN=1` rewrites them (only for a deliberate change).

use std::collections::BTreeMap;
use std::path::PathBuf;

use runtime_backends::{CgroupRequest, ImageConfig};

use crate::container::spec::{container_request, rendered, ContainerSpecInput};
use crate::domain::{
    Capabilities, ContainerConfig, ContainerMetadata, Device, IdMapping, Mount, NamespaceMode,
    PodMetadata, Propagation, Resources, SandboxConfig, SecurityProfile, SupplementalGroupsPolicy,
    UserNamespace,
};
use crate::sandbox::spec::{sandbox_request, SandboxSpecInput};
use crate::security::{test_host, AppArmorHost, HostSecurity, APPARMOR_ANNOTATION_PREFIX};

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1001:1001::/app:/bin/sh\n";
const GROUP: &str = "root:x:0:\napp:x:1001:\nextra:x:2000:app\n";

/// One container case: everything the spec is built from.
struct ContainerCase {
    config: ContainerConfig,
    image: ImageConfig,
    sandbox: SandboxConfig,
    host: HostSecurity,
    sandbox_pid: u32,
    target_pid: u32,
    netns_path: Option<String>,
    cgroup_parent: String,
    systemd: bool,
    shm_path: Option<PathBuf>,
    floor: i64,
}

struct SandboxCase {
    config: SandboxConfig,
    host: HostSecurity,
    netns_path: Option<String>,
    cgroup_parent: String,
    systemd: bool,
    floor: i64,
}

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

fn container_case() -> ContainerCase {
    ContainerCase {
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
            env: vec!["PATH=/app/bin:/usr/bin".to_string(), "LANG=C".to_string()],
            ..Default::default()
        },
        sandbox: pod(),
        host: test_host(),
        sandbox_pid: 4242,
        target_pid: 0,
        netns_path: None,
        cgroup_parent: "/kubepods/podUID".to_string(),
        systemd: false,
        shm_path: Some(PathBuf::from("/run/crius/sandboxes/sb1/shm")),
        floor: 0,
    }
}

fn sandbox_case() -> SandboxCase {
    SandboxCase {
        config: pod(),
        host: test_host(),
        netns_path: Some("/var/run/netns/cni-1".to_string()),
        cgroup_parent: "/kubepods/podUID".to_string(),
        systemd: false,
        floor: 0,
    }
}

fn bind(container: &str, host: &str, readonly: bool, propagation: Propagation) -> Mount {
    Mount {
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

fn userns() -> UserNamespace {
    let mapping = IdMapping {
        host_id: 100_000,
        container_id: 0,
        length: 65_536,
    };
    UserNamespace {
        mode: NamespaceMode::Pod,
        uids: vec![mapping.clone()],
        gids: vec![mapping],
    }
}

fn apparmor_host() -> HostSecurity {
    let mut host = test_host();
    host.apparmor = AppArmorHost {
        enabled: true,
        loaded_profiles: ["restricted".to_string()].into(),
        default_profile_error: None,
    };
    host
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn container_cases() -> Vec<(&'static str, ContainerCase)> {
    let mut cases = vec![("container-default", container_case())];

    let mut c = container_case();
    c.config.security.namespaces.network = NamespaceMode::Node;
    c.config.security.namespaces.ipc = NamespaceMode::Node;
    c.config.security.namespaces.pid = NamespaceMode::Node;
    c.sandbox.security.namespaces = c.config.security.namespaces.clone();
    c.shm_path = None;
    cases.push(("container-host-namespaces", c));

    let mut c = container_case();
    c.config.security.namespaces.pid = NamespaceMode::Container;
    c.netns_path = Some("/var/run/netns/cni-1".to_string());
    cases.push(("container-pid-private-pod-netns", c));

    let mut c = container_case();
    c.config.security.namespaces.pid = NamespaceMode::Target;
    c.config.security.namespaces.target_id = "t1".to_string();
    c.target_pid = 777;
    cases.push(("container-pid-target", c));

    let mut c = container_case();
    c.sandbox.security.namespaces.userns = Some(userns());
    c.netns_path = Some("/proc/4242/ns/net".to_string());
    cases.push(("container-user-namespace", c));

    let mut c = container_case();
    let mut rro = bind("/ro", "/host/ro", true, Propagation::Private);
    rro.recursive_read_only = true;
    let mut mapped = bind("/mapped", "/host/mapped", false, Propagation::Private);
    mapped.uid_mappings = vec![IdMapping {
        host_id: 100_000,
        container_id: 0,
        length: 65_536,
    }];
    mapped.gid_mappings = mapped.uid_mappings.clone();
    c.config.mounts = vec![
        bind("/data/cache/", "/host/cache", false, Propagation::Private),
        bind("/data", "/host/data", true, Propagation::HostToContainer),
        bind("/etc/hosts", "/host/hosts", true, Propagation::Private),
        bind(
            "/var/lib/kubelet",
            "/var/lib/kubelet",
            false,
            Propagation::Bidirectional,
        ),
        bind("/proc/../sys", "/host/sys", true, Propagation::Private),
        rro,
        mapped,
    ];
    c.config.security.readonly_rootfs = true;
    cases.push(("container-mounts", c));

    let mut c = container_case();
    c.config.mounts = vec![
        bind("/logs", "/var/log", true, Propagation::HostToContainer),
        bind("/dev", "/dev", false, Propagation::Private),
    ];
    cases.push(("container-dev-replaced", c));

    let mut c = container_case();
    c.config.devices = vec![
        Device {
            container_path: "/dev/myfuse".to_string(),
            host_path: "/dev/fuse".to_string(),
            permissions: "rw".to_string(),
        },
        Device {
            container_path: String::new(),
            host_path: "/dev/sda".to_string(),
            permissions: String::new(),
        },
    ];
    cases.push(("container-devices", c));

    let mut c = container_case();
    c.sandbox.security.privileged = true;
    c.config.security.privileged = true;
    c.config.devices = vec![Device {
        container_path: "/dev/sda".to_string(),
        host_path: "/dev/fuse".to_string(),
        permissions: "r".to_string(),
    }];
    cases.push(("container-privileged", c));

    let mut c = container_case();
    c.floor = -500;
    c.config.resources = Some(Resources {
        cpu_period: 100_000,
        cpu_quota: 50_000,
        cpu_shares: 512,
        memory_limit_in_bytes: 256 << 20,
        oom_score_adj: -999,
        cpuset_cpus: "0-1".to_string(),
        cpuset_mems: "0".to_string(),
        hugepage_limits: vec![("2MB".to_string(), 1 << 30)],
        ..Default::default()
    });
    cases.push(("container-resources", c));

    let mut c = container_case();
    c.host.cgroups.unified = true;
    c.host.cgroups.hugetlb = true;
    let mut unified = BTreeMap::new();
    unified.insert("memory.high".to_string(), "1000000".to_string());
    c.config.resources = Some(Resources {
        memory_limit_in_bytes: 1 << 30,
        memory_swap_limit_in_bytes: 2 << 30,
        oom_score_adj: 900,
        hugepage_limits: vec![("2MB".to_string(), 1 << 21)],
        unified,
        ..Default::default()
    });
    cases.push(("container-cgroup-v2", c));

    let mut c = container_case();
    c.config.security.capabilities = Capabilities {
        add: strings(&["NET_ADMIN", "CAP_SYS_TIME"]),
        drop: strings(&["CHOWN", "KILL"]),
        add_ambient: strings(&["NET_ADMIN"]),
    };
    c.config.security.run_as_user = Some(1001);
    c.config.security.run_as_group = Some(3000);
    c.config.security.supplemental_groups = vec![4000, 2000];
    c.config.security.no_new_privs = true;
    c.config.security.masked_paths = strings(&["/proc/secret"]);
    c.config.security.readonly_paths = strings(&["/proc/ro"]);
    c.config.security.seccomp = Some(SecurityProfile::RuntimeDefault);
    cases.push(("container-security", c));

    let mut c = container_case();
    c.config.security.capabilities.drop = strings(&["ALL"]);
    c.config.security.capabilities.add = strings(&["NET_BIND_SERVICE"]);
    c.config.security.run_as_username = "app".to_string();
    c.config.security.supplemental_groups_policy = SupplementalGroupsPolicy::Strict;
    c.config.security.seccomp = Some(SecurityProfile::Unconfined);
    cases.push(("container-username-strict", c));

    let mut c = container_case();
    c.image.user = "app".to_string();
    c.sandbox.security.run_as_user = Some(0);
    cases.push(("container-image-user", c));

    let mut c = container_case();
    c.host = apparmor_host();
    cases.push(("container-apparmor-default", c));

    let mut c = container_case();
    c.host = apparmor_host();
    c.sandbox.annotations.insert(
        format!("{APPARMOR_ANNOTATION_PREFIX}app"),
        "localhost/restricted".to_string(),
    );
    cases.push(("container-apparmor-annotation", c));

    let mut c = container_case();
    c.host.selinux_enabled = true;
    c.sandbox.security.selinux_label = Some("system_u:system_r:pod_t:s0:c1,c2".to_string());
    cases.push(("container-selinux", c));

    let mut c = container_case();
    c.config.tty = true;
    c.config.stdin = true;
    c.config.working_dir = "/work".to_string();
    c.config.command = strings(&["/bin/sh", "-c"]);
    c.config.args = strings(&["echo hi"]);
    c.config.envs = vec![
        ("LANG".to_string(), "en_US.UTF-8".to_string()),
        ("EXTRA".to_string(), "1=2".to_string()),
    ];
    c.config
        .annotations
        .insert("a".to_string(), "b".to_string());
    cases.push(("container-process", c));

    let mut c = container_case();
    c.sandbox
        .sysctls
        .insert("kernel.shm_rmid_forced".to_string(), "1".to_string());
    c.sandbox.sysctls.insert(
        "net/ipv4/ip_unprivileged_port_start".to_string(),
        "0".to_string(),
    );
    cases.push(("container-sysctls", c));

    let mut c = container_case();
    c.systemd = true;
    c.cgroup_parent = "kubepods-podUID.slice".to_string();
    cases.push(("container-systemd", c));

    cases
}

fn sandbox_cases() -> Vec<(&'static str, SandboxCase)> {
    let mut cases = vec![("sandbox-default", sandbox_case())];

    let mut s = sandbox_case();
    s.netns_path = None;
    cases.push(("sandbox-own-netns", s));

    let mut s = sandbox_case();
    s.config.security.namespaces.network = NamespaceMode::Node;
    s.netns_path = None;
    cases.push(("sandbox-host-network", s));

    let mut s = sandbox_case();
    s.config.security.namespaces.ipc = NamespaceMode::Node;
    s.config.security.namespaces.pid = NamespaceMode::Node;
    cases.push(("sandbox-host-ipc-pid", s));

    let mut s = sandbox_case();
    s.config.security.namespaces.pid = NamespaceMode::Container;
    cases.push(("sandbox-pid-container", s));

    let mut s = sandbox_case();
    s.config.security.namespaces.userns = Some(userns());
    s.netns_path = None;
    cases.push(("sandbox-user-namespace", s));

    let mut s = sandbox_case();
    s.host = apparmor_host();
    s.host.selinux_enabled = true;
    s.config.sysctls.insert(
        "net.ipv4.ip_unprivileged_port_start".to_string(),
        "0".to_string(),
    );
    s.config.security.run_as_user = Some(65535);
    s.config.security.run_as_group = Some(65534);
    s.config.security.supplemental_groups = vec![3000];
    s.config.security.seccomp = Some(SecurityProfile::RuntimeDefault);
    s.config.security.apparmor = Some(SecurityProfile::Localhost("restricted".to_string()));
    s.config.security.selinux_label = Some("system_u:system_r:pod_t:s0".to_string());
    cases.push(("sandbox-security", s));

    let mut s = sandbox_case();
    s.floor = -999;
    s.config.resources = Some(Resources {
        cpu_quota: 50_000,
        cpu_period: 100_000,
        cpu_shares: 1024,
        memory_limit_in_bytes: 1 << 30,
        ..Default::default()
    });
    cases.push(("sandbox-resources", s));

    let mut s = sandbox_case();
    s.systemd = true;
    s.cgroup_parent = "kubepods-podUID.slice".to_string();
    cases.push(("sandbox-systemd", s));

    cases
}

fn cgroup(parent: &str, systemd: bool) -> CgroupRequest {
    CgroupRequest {
        parent: parent.to_string(),
        systemd,
    }
}

/// The spec containerd receives for a container case.
fn container_spec(case: &ContainerCase) -> serde_json::Value {
    let request = container_request(&ContainerSpecInput {
        id: "c1",
        config: &case.config,
        image: &case.image,
        sandbox: &case.sandbox,
        sandbox_id: "sb1",
        netns_path: case.netns_path.clone(),
        cgroup: cgroup(&case.cgroup_parent, case.systemd),
        resolv_conf: Some(PathBuf::from("/var/lib/crius/sandboxes/sb1/resolv.conf")),
        hostname: Some(PathBuf::from("/var/lib/crius/sandboxes/sb1/hostname")),
        hosts: Some(PathBuf::from("/var/lib/crius/sandboxes/sb1/hosts")),
        shm_path: case.shm_path.clone(),
        passwd: Some(PASSWD.to_string()),
        group: Some(GROUP.to_string()),
        oom_score_adj_floor: case.floor,
        host: &case.host,
    })
    .unwrap();
    let target = case.config.security.namespaces.target_id.as_str();
    let spec = rendered(
        &request,
        &[("sb1", case.sandbox_pid), (target, case.target_pid)],
    )
    .unwrap();
    serde_json::to_value(&spec).unwrap()
}

/// The spec containerd receives for a sandbox case.
fn sandbox_spec(case: &SandboxCase) -> serde_json::Value {
    let request = sandbox_request(&SandboxSpecInput {
        id: "sb1",
        config: &case.config,
        cgroup: cgroup(&case.cgroup_parent, case.systemd),
        pause_args: vec!["/pause".to_string()],
        netns_path: case.netns_path.clone(),
        oom_score_adj_floor: case.floor,
        host: &case.host,
    })
    .unwrap();
    serde_json::to_value(rendered(&request, &[]).unwrap()).unwrap()
}

/// JSON with every object's keys sorted and the capability sets in order: the spec holds
/// hash maps (annotations, sysctls) and hash sets (capabilities), whose order differs from
/// one run to the next.
fn canonical(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let sorted: BTreeMap<String, serde_json::Value> = map
                .into_iter()
                .map(|(k, v)| {
                    let v = canonical(v);
                    if k == "capabilities" {
                        (k, sorted_sets(v))
                    } else {
                        (k, v)
                    }
                })
                .collect();
            serde_json::Value::Object(sorted.into_iter().collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(canonical).collect())
        }
        other => other,
    }
}

fn sorted_sets(value: serde_json::Value) -> serde_json::Value {
    let serde_json::Value::Object(sets) = value else {
        return value;
    };
    let sorted = sets.into_iter().map(|(kind, set)| {
        let mut names: Vec<String> = set
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect();
        names.sort();
        (kind, serde_json::json!(names))
    });
    serde_json::Value::Object(sorted.collect())
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Compare (or, blessing, write) every case; report all differences at once.
fn check(cases: Vec<(&'static str, serde_json::Value)>) {
    let bless = std::env::var_os("CRIUS_BLESS_GOLDEN").is_some();
    let mut differing = Vec::new();
    for (name, spec) in cases {
        let text = serde_json::to_string_pretty(&canonical(spec)).unwrap() + "\n";
        let path = golden_dir().join(format!("{name}.json"));
        if bless {
            std::fs::create_dir_all(golden_dir()).unwrap();
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("golden file {}: {e}", path.display()));
        if want != text {
            differing.push(format!("{name}:\n{text}"));
        }
    }
    assert!(
        differing.is_empty(),
        "specs differ from their golden files:\n{}",
        differing.join("\n")
    );
}

#[test]
fn container_specs_match_their_golden_files() {
    check(
        container_cases()
            .into_iter()
            .map(|(name, case)| (name, container_spec(&case)))
            .collect(),
    );
}

#[test]
fn sandbox_specs_match_their_golden_files() {
    check(
        sandbox_cases()
            .into_iter()
            .map(|(name, case)| (name, sandbox_spec(&case)))
            .collect(),
    );
}
