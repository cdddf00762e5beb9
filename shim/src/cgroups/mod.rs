//! cgroup drivers and cgroup files (DESIGN.md decision 8).
//!
//! A driver only decides the form of a pod's cgroup parent (a cgroupfs path or a systemd
//! slice); the backend names each container's cgroup under it and reports where it is
//! (`runtime_backends::cgroup`). With `systemd` runc asks systemd over D-Bus; crius itself
//! never talks to systemd. The driver crius uses is reported to
//! kubelet through `RuntimeConfig`, because a kubelet and runtime that disagree on the driver
//! put pods in two different trees and break node accounting.
//!
//! Reading stats and limits goes straight to the cgroup files under an injectable root, so
//! the same code runs on the host and on fixture trees in tests.

mod cgroupfs;
mod fs;
mod systemd;

use std::io;
use std::path::{Path, PathBuf};

pub use cgroupfs::Cgroupfs;
pub use fs::{
    read_activity, read_limits, read_stats, CgroupActivity, CgroupLayout, CgroupLimits, CgroupStats,
};
pub use systemd::{expand_slice, to_systemd_slice, Systemd};

pub type Result<T, E = CgroupError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("invalid cgroup parent {parent:?}: {reason}")]
    InvalidParent { parent: String, reason: String },
    #[error("invalid cgroups path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    #[error("invalid systemd slice name {slice:?}: {reason}")]
    InvalidSlice { slice: String, reason: String },
    #[error("unknown cgroup driver {0:?}: expected \"cgroupfs\" or \"systemd\"")]
    UnknownDriver(String),
    #[error("no cgroup filesystem found under {}", root.display())]
    NoCgroupFs { root: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("unexpected content in {}: {content:?}", path.display())]
    Parse { path: PathBuf, content: String },
}

impl CgroupError {
    /// The cgroup (or one of its files) does not exist, e.g. the container already exited
    /// and runc removed it. A cgroup being removed while it is read answers ENODEV instead
    /// of ENOENT: its files are still listed, but they are already dead.
    pub fn is_not_found(&self) -> bool {
        matches!(self, CgroupError::Io { source, .. }
            if source.kind() == io::ErrorKind::NotFound || source.raw_os_error() == Some(libc::ENODEV))
    }
}

/// How a cgroup driver names cgroups for the OCI runtime.
pub trait CgroupDriver {
    /// `"cgroupfs"` or `"systemd"`, the values kubelet's `cgroupDriver` takes.
    fn name(&self) -> &'static str;

    /// The parent all of a pod's containers go under, in this driver's form, from the
    /// `cgroup_parent` of the pod's `LinuxPodSandboxConfig` (empty means crius's default).
    fn sandbox_parent(&self, cgroup_parent: &str) -> Result<String>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Cgroupfs(Cgroupfs),
    Systemd(Systemd),
}

impl Driver {
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "cgroupfs" => Ok(Driver::Cgroupfs(Cgroupfs)),
            "systemd" => Ok(Driver::Systemd(Systemd)),
            other => Err(CgroupError::UnknownDriver(other.to_string())),
        }
    }

    pub fn is_systemd(&self) -> bool {
        matches!(self, Driver::Systemd(_))
    }

    fn inner(&self) -> &dyn CgroupDriver {
        match self {
            Driver::Cgroupfs(driver) => driver,
            Driver::Systemd(driver) => driver,
        }
    }
}

impl CgroupDriver for Driver {
    fn name(&self) -> &'static str {
        self.inner().name()
    }

    fn sandbox_parent(&self, cgroup_parent: &str) -> Result<String> {
        self.inner().sandbox_parent(cgroup_parent)
    }
}

impl std::fmt::Display for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The driver a stock node expects: `systemd` when systemd is PID 1 (kubeadm configures
/// kubelet that way), else `cgroupfs`. `proc_root` is `/proc` outside tests.
pub fn detect_default(proc_root: &Path) -> Driver {
    match std::fs::read_to_string(proc_root.join("1/comm")) {
        Ok(comm) if comm.trim_end() == "systemd" => Driver::Systemd(Systemd),
        _ => Driver::Cgroupfs(Cgroupfs),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_cgroup_gone_or_being_removed_is_not_found_other_errors_are_not() {
        let io = |source: io::Error| CgroupError::Io {
            path: PathBuf::from("/sys/fs/cgroup/memory/x/memory.stat"),
            source,
        };
        assert!(io(io::Error::from(io::ErrorKind::NotFound)).is_not_found());
        assert!(io(io::Error::from_raw_os_error(libc::ENODEV)).is_not_found());
        assert!(!io(io::Error::from_raw_os_error(libc::EACCES)).is_not_found());
        assert!(!CgroupError::UnknownDriver("x".into()).is_not_found());
    }

    #[test]
    fn driver_from_name() {
        assert_eq!(Driver::from_name("cgroupfs").unwrap().name(), "cgroupfs");
        assert_eq!(Driver::from_name("systemd").unwrap().name(), "systemd");
        let err = Driver::from_name("Systemd").unwrap_err();
        assert!(matches!(err, CgroupError::UnknownDriver(_)));
        assert!(err.to_string().contains("\"cgroupfs\" or \"systemd\""));
    }

    #[test]
    fn detect_default_reads_pid1_comm() {
        let proc_root = tempfile::tempdir().unwrap();
        // No /proc/1/comm at all: cgroupfs.
        assert_eq!(detect_default(proc_root.path()).name(), "cgroupfs");

        std::fs::create_dir_all(proc_root.path().join("1")).unwrap();
        std::fs::write(proc_root.path().join("1/comm"), "systemd\n").unwrap();
        assert_eq!(detect_default(proc_root.path()).name(), "systemd");

        std::fs::write(proc_root.path().join("1/comm"), "tini\n").unwrap();
        assert_eq!(detect_default(proc_root.path()).name(), "cgroupfs");
    }

    #[test]
    fn enum_delegates_to_drivers() {
        let cgroupfs = Driver::from_name("cgroupfs").unwrap();
        assert_eq!(
            cgroupfs.sandbox_parent("/kubepods/burstable/pod1").unwrap(),
            "/kubepods/burstable/pod1"
        );
        let systemd = Driver::from_name("systemd").unwrap();
        assert_eq!(
            systemd.sandbox_parent("/kubepods/burstable/pod1").unwrap(),
            "kubepods-burstable-pod1.slice"
        );
    }
}
