//! What crius enforces on a container (DESIGN.md decision 9): capabilities, seccomp, AppArmor,
//! run-as user and groups, user namespaces, sysctls, masked and read-only paths, devices.
//!
//! Every choice here either lands in the container's intent or fails the create with a message that
//! names what could not be honoured; nothing a pod asked for is dropped quietly. The node's
//! limits (its capability bounding set, whether AppArmor and seccomp exist, which cgroup
//! controllers are there) are read once through injectable roots in [`HostSecurity::detect`],
//! so everything else is a pure function of its inputs and is tested on fixtures.

pub mod apparmor;
pub mod caps;
pub mod devices;
mod host;
pub mod seccomp;
pub mod sysctl;
pub mod user;
pub mod userns;

pub use apparmor::{
    apparmor_for, find_apparmor_parser, AppArmorHost, APPARMOR_ANNOTATION_PREFIX,
    DEFAULT_APPARMOR_PROFILE,
};
pub use devices::{DeviceKind, HostDevice, HostDevices};
pub use host::{HostCgroupFeatures, HostSecurity};
pub use seccomp::{default_profile, seccomp_for};
pub use sysctl::validate_sysctls;

/// Why a container's intent could not be built. Each variant maps to the gRPC code of the same name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    NotFound(String),
}

/// Paths under /proc and /sys that leak host information or allow host changes; masked for
/// every container that does not bring its own list (the set Docker, containerd and
/// kubelet's default proc mount agree on).
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths under /proc that stay visible but read-only.
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The oom_score_adj to put in a spec: never below crius's own value. A lower value needs
/// CAP_SYS_RESOURCE, which this node's bounding set lacks, and runc then fails the whole
/// create (ENVIRONMENT.md); containerd's `restrict_oom_score_adj` makes the same choice.
pub fn clamp_oom_score_adj(requested: i64, floor: i64) -> i32 {
    let clamped = requested.max(floor).clamp(-1000, 1000);
    // In range after the clamp above, so the conversion cannot fail.
    i32::try_from(clamped).unwrap_or(if clamped < 0 { -1000 } else { 1000 })
}

/// The SELinux label for a process and its mounts: the requested one where SELinux is
/// enabled; none where it is not (nothing could enforce it, and runc fails on a label it
/// cannot set), as containerd does.
pub fn selinux_label_for(requested: Option<&String>, host: &HostSecurity) -> Option<String> {
    match requested {
        Some(label) if host.selinux_enabled => Some(label.clone()),
        Some(label) => {
            tracing::debug!(label = %label, "SELinux is not enabled on this node: label not applied");
            None
        }
        None => None,
    }
}

/// A node like the ones crius is tested on: no CAP_SYS_RESOURCE, no AppArmor, seccomp,
/// cgroup v1 with swap accounting and no v1 hugetlb controller, a few devices.
#[cfg(test)]
pub(crate) fn test_host() -> HostSecurity {
    HostSecurity {
        bounding_caps: caps::ALL_CAPABILITIES
            .iter()
            .filter(|c| **c != "CAP_SYS_RESOURCE")
            .map(|c| c.to_string())
            .collect(),
        apparmor: AppArmorHost::default(),
        seccomp_enabled: true,
        selinux_enabled: false,
        cgroups: HostCgroupFeatures {
            unified: false,
            memory_swap: true,
            hugetlb: false,
        },
        devices: HostDevices::Fixed(vec![
            HostDevice {
                path: "/dev/fuse".into(),
                kind: DeviceKind::Char,
                major: 10,
                minor: 229,
                file_mode: 0o666,
                uid: 0,
                gid: 0,
            },
            HostDevice {
                path: "/dev/sda".into(),
                kind: DeviceKind::Block,
                major: 8,
                minor: 0,
                file_mode: 0o660,
                uid: 0,
                gid: 6,
            },
        ]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_score_adj_is_raised_to_the_floor_and_kept_in_range() {
        assert_eq!(clamp_oom_score_adj(-998, 0), 0);
        assert_eq!(clamp_oom_score_adj(-998, -999), -998);
        assert_eq!(clamp_oom_score_adj(500, 0), 500);
        assert_eq!(clamp_oom_score_adj(5000, 0), 1000);
        assert_eq!(clamp_oom_score_adj(-5000, -2000), -1000);
    }
}
