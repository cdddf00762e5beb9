//! Host device nodes for a container: the ones a pod names in `devices`, or every device of
//! the node for a privileged container.
//!
//! The OCI spec needs each device's type and major/minor numbers, which only a stat of the
//! host node gives; that I/O happens here, under an injectable `/dev` root, so the spec
//! builders stay pure.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::SpecError;

pub use runtime_backends::DeviceKind;

/// A device node on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDevice {
    /// Where it is on the host, as `/dev/…` (also its path in a privileged container).
    pub path: PathBuf,
    pub kind: DeviceKind,
    pub major: i64,
    pub minor: i64,
    /// Permission bits of the node.
    pub file_mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Where device nodes are found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostDevices {
    /// The node's device filesystem; `/dev/…` paths resolve under `dev_root`.
    Filesystem { dev_root: PathBuf },
    /// A fixed table, so spec tests do not depend on the machine's `/dev`.
    #[cfg(test)]
    Fixed(Vec<HostDevice>),
}

/// Directories under /dev that hold no devices a container should get, or whose entries are
/// per-container (a private devpts, shm and mqueue are mounted there).
const SKIPPED_DIRS: &[&str] = &["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

impl HostDevices {
    pub fn new(dev_root: PathBuf) -> Self {
        Self::Filesystem { dev_root }
    }

    /// The device at `host_path` (symlinks followed, as `/dev/disk/by-id/…` names are).
    pub fn lookup(&self, host_path: &str) -> Result<HostDevice, SpecError> {
        match self {
            Self::Filesystem { dev_root } => {
                let on_host = Self::resolve(dev_root, host_path);
                let meta = std::fs::metadata(&on_host).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        SpecError::NotFound(format!(
                            "device {host_path:?} does not exist on this node"
                        ))
                    } else {
                        SpecError::FailedPrecondition(format!(
                            "cannot stat device {host_path:?}: {e}"
                        ))
                    }
                })?;
                device_from_metadata(PathBuf::from(host_path), &meta).ok_or_else(|| {
                    SpecError::InvalidArgument(format!("{host_path:?} is not a device node"))
                })
            }
            #[cfg(test)]
            Self::Fixed(devices) => devices
                .iter()
                .find(|d| d.path == Path::new(host_path))
                .cloned()
                .ok_or_else(|| {
                    SpecError::NotFound(format!("device {host_path:?} does not exist on this node"))
                }),
        }
    }

    /// Every device node of the host, for privileged containers. Symlinks are skipped: the
    /// node they point at is listed under its own name.
    pub fn all(&self) -> Result<Vec<HostDevice>, SpecError> {
        match self {
            Self::Filesystem { dev_root } => {
                let mut found = Vec::new();
                walk(dev_root, Path::new("/dev"), &mut found).map_err(|e| {
                    SpecError::FailedPrecondition(format!(
                        "cannot list host devices under {}: {e}",
                        dev_root.display()
                    ))
                })?;
                found.sort_by(|a, b| a.path.cmp(&b.path));
                Ok(found)
            }
            #[cfg(test)]
            Self::Fixed(devices) => Ok(devices.clone()),
        }
    }

    fn resolve(dev_root: &Path, host_path: &str) -> PathBuf {
        match host_path.strip_prefix("/dev/") {
            Some(rest) => dev_root.join(rest),
            None => PathBuf::from(host_path),
        }
    }
}

fn device_from_metadata(path: PathBuf, meta: &std::fs::Metadata) -> Option<HostDevice> {
    let file_type = meta.file_type();
    let kind = if file_type.is_char_device() {
        DeviceKind::Char
    } else if file_type.is_block_device() {
        DeviceKind::Block
    } else if file_type.is_fifo() {
        DeviceKind::Fifo
    } else {
        return None;
    };
    let rdev = meta.rdev();
    Some(HostDevice {
        path,
        kind,
        // Device numbers are at most 32 bits wide on Linux.
        major: i64::try_from(nix::sys::stat::major(rdev)).ok()?,
        minor: i64::try_from(nix::sys::stat::minor(rdev)).ok()?,
        file_mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
    })
}

fn walk(dir: &Path, as_path: &Path, found: &mut Vec<HostDevice>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name_str) = name.to_str() else {
            continue;
        };
        // An entry can vanish between listing and stat (udev at work); that is not an error.
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        let container_path = as_path.join(name_str);
        if meta.is_dir() {
            if !SKIPPED_DIRS.contains(&name_str) {
                walk(&entry.path(), &container_path, found)?;
            }
            continue;
        }
        // The console belongs to the container's own terminal, not the host's.
        if name_str == "console" {
            continue;
        }
        if let Some(device) = device_from_metadata(container_path, &meta) {
            found.push(device);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_reads_type_and_numbers_of_a_real_node() {
        // /dev/null is character device 1:3 on every Linux system.
        let devices = HostDevices::new(PathBuf::from("/dev"));
        let null = devices.lookup("/dev/null").unwrap();
        assert_eq!(
            (null.kind, null.major, null.minor),
            (DeviceKind::Char, 1, 3)
        );
        assert_eq!(null.path, PathBuf::from("/dev/null"));
    }

    #[test]
    fn lookup_of_missing_and_non_device_paths() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("plain"), "").unwrap();
        let devices = HostDevices::new(root.path().to_path_buf());
        assert!(matches!(
            devices.lookup("/dev/nothing"),
            Err(SpecError::NotFound(_))
        ));
        assert!(matches!(
            devices.lookup("/dev/plain"),
            Err(SpecError::InvalidArgument(_))
        ));
    }

    #[test]
    fn listing_skips_plain_files_and_per_container_dirs() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("plain"), "").unwrap();
        std::fs::create_dir_all(root.path().join("pts")).unwrap();
        let devices = HostDevices::new(root.path().to_path_buf());
        assert!(devices.all().unwrap().is_empty());
    }
}
