//! What this node can enforce, read once at start through injectable roots (`/sys`, `/proc`),
//! so the spec builders stay pure and are tested against fixture trees.

use std::path::Path;

use super::apparmor::AppArmorHost;
use super::caps;
use super::devices::HostDevices;

/// The node's security and resource-control facilities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSecurity {
    /// Capabilities in crius's own bounding set (`CAP_…` names). The OCI runtime inherits this
    /// set and cannot grant anything outside it.
    pub bounding_caps: Vec<String>,
    pub apparmor: AppArmorHost,
    /// The kernel filters syscalls (`Seccomp:` in `/proc/self/status`).
    pub seccomp_enabled: bool,
    pub cgroups: HostCgroupFeatures,
    /// Where device nodes for `devices` and privileged containers are looked up.
    pub devices: HostDevices,
    /// SELinux is enabled (`<sys>/fs/selinux/enforce` exists): labels are applied.
    pub selinux_enabled: bool,
}

/// cgroup facts that change which resource fields runc accepts on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostCgroupFeatures {
    /// Pure cgroup v2 (`cgroup.controllers` at the root). Only then do `unified` resources
    /// apply, and containers get a private cgroup namespace.
    pub unified: bool,
    /// Swap can be limited (v1 `memory.memsw.*`; on v2 `memory.swap.max` is always there).
    pub memory_swap: bool,
    /// The hugetlb controller is where runc looks for it (v1 `hugetlb/`, or listed on v2).
    pub hugetlb: bool,
}

impl HostCgroupFeatures {
    /// Probe `<cgroup_root>` (normally `/sys/fs/cgroup`). A hybrid host counts as v1: runc
    /// applies limits through the v1 controllers there.
    pub fn detect(cgroup_root: &Path) -> Self {
        match std::fs::read_to_string(cgroup_root.join("cgroup.controllers")) {
            Ok(controllers) => {
                let listed: Vec<&str> = controllers.split_whitespace().collect();
                Self {
                    unified: true,
                    // memory.swap.max exists in every non-root cgroup once memory is enabled.
                    memory_swap: listed.contains(&"memory"),
                    hugetlb: listed.contains(&"hugetlb"),
                }
            }
            Err(_) => Self {
                unified: false,
                memory_swap: cgroup_root
                    .join("memory/memory.memsw.limit_in_bytes")
                    .exists(),
                hugetlb: cgroup_root.join("hugetlb").is_dir(),
            },
        }
    }
}

impl HostSecurity {
    /// Read the node's facilities from `<sys_root>` and `<proc_root>`. Never fails: a file
    /// that cannot be read means the facility is absent, except for the bounding set, where
    /// an unreadable status file is taken as the full set and runc reports what is missing.
    pub fn detect(sys_root: &Path, proc_root: &Path) -> Self {
        let status_path = proc_root.join("self/status");
        let (bounding_caps, seccomp_enabled) = match std::fs::read_to_string(&status_path) {
            Ok(status) => parse_status(&status),
            Err(e) => {
                tracing::warn!(path = %status_path.display(), error = %e, "cannot read the capability bounding set; assuming all capabilities");
                (
                    caps::ALL_CAPABILITIES
                        .iter()
                        .map(|c| c.to_string())
                        .collect(),
                    true,
                )
            }
        };
        Self {
            bounding_caps,
            apparmor: AppArmorHost::detect(sys_root),
            seccomp_enabled,
            cgroups: HostCgroupFeatures::detect(&sys_root.join("fs/cgroup")),
            devices: HostDevices::new(sys_root.parent().unwrap_or(Path::new("/")).join("dev")),
            selinux_enabled: sys_root.join("fs/selinux/enforce").exists(),
        }
    }
}

/// `CapBnd:` (hex mask) and whether a `Seccomp:` line exists in a `/proc/<pid>/status` text.
fn parse_status(status: &str) -> (Vec<String>, bool) {
    let mut bounding = None;
    let mut seccomp = false;
    for line in status.lines() {
        if let Some(hex) = line.strip_prefix("CapBnd:") {
            bounding = u64::from_str_radix(hex.trim(), 16).ok();
        } else if line.starts_with("Seccomp:") {
            seccomp = true;
        }
    }
    let caps = match bounding {
        Some(mask) => caps::from_mask(mask),
        None => caps::ALL_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .collect(),
    };
    (caps, seccomp)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// A `/proc/self/status` excerpt from this kind of node: CapBnd lacks bit 24
    /// (CAP_SYS_RESOURCE).
    const STATUS: &str = "Name:\tcrius\nUmask:\t0022\nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\nCapEff:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\nSeccomp:\t0\nSeccomp_filters:\t0\n";

    #[test]
    fn detect_reads_bounding_set_seccomp_and_apparmor_from_fixture_roots() {
        let root = tempfile::tempdir().unwrap();
        let sys = root.path().join("sys");
        let proc = root.path().join("proc");
        fs::create_dir_all(proc.join("self")).unwrap();
        fs::write(proc.join("self/status"), STATUS).unwrap();
        fs::create_dir_all(sys.join("module/apparmor/parameters")).unwrap();
        fs::write(sys.join("module/apparmor/parameters/enabled"), "Y\n").unwrap();
        fs::create_dir_all(sys.join("kernel/security/apparmor")).unwrap();
        fs::write(
            sys.join("kernel/security/apparmor/profiles"),
            "crius-default (enforce)\nmy profile (complain)\n",
        )
        .unwrap();

        let host = HostSecurity::detect(&sys, &proc);
        assert_eq!(host.bounding_caps.len(), caps::ALL_CAPABILITIES.len() - 1);
        assert!(!host.bounding_caps.iter().any(|c| c == "CAP_SYS_RESOURCE"));
        assert!(host.seccomp_enabled);
        assert!(host.apparmor.enabled);
        assert!(host.apparmor.is_loaded("crius-default"));
        assert!(host.apparmor.is_loaded("my profile"));
        assert_eq!(host.devices, HostDevices::new(root.path().join("dev")));
    }

    #[test]
    fn detect_on_a_node_without_apparmor_or_seccomp() {
        let root = tempfile::tempdir().unwrap();
        let proc = root.path().join("proc");
        fs::create_dir_all(proc.join("self")).unwrap();
        fs::write(
            proc.join("self/status"),
            "Name:\tcrius\nCapBnd:\t0000000000000001\n",
        )
        .unwrap();
        let host = HostSecurity::detect(&root.path().join("sys"), &proc);
        assert_eq!(host.bounding_caps, vec!["CAP_CHOWN"]);
        assert!(!host.seccomp_enabled);
        assert!(!host.apparmor.enabled);
        assert!(host.apparmor.loaded_profiles.is_empty());
    }

    #[test]
    fn cgroup_features_on_v1_hybrid_and_v2_fixtures() {
        let v1 = tempfile::tempdir().unwrap();
        fs::create_dir_all(v1.path().join("memory")).unwrap();
        fs::write(
            v1.path().join("memory/memory.memsw.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap();
        fs::create_dir_all(v1.path().join("unified")).unwrap();
        assert_eq!(
            HostCgroupFeatures::detect(v1.path()),
            HostCgroupFeatures {
                unified: false,
                memory_swap: true,
                hugetlb: false
            }
        );

        let v2 = tempfile::tempdir().unwrap();
        fs::write(
            v2.path().join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids\n",
        )
        .unwrap();
        assert_eq!(
            HostCgroupFeatures::detect(v2.path()),
            HostCgroupFeatures {
                unified: true,
                memory_swap: true,
                hugetlb: true
            }
        );
    }
}
