//! The filesystems every container gets, and bind mounts.
//!
//! sysfs and the cgroup filesystem are read-only unless the container is privileged: a
//! writable /sys lets a container reconfigure host devices and its own limits.

use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::Mount;

/// An OCI mount entry.
pub fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(destination))
        .set_typ(Some(typ.to_string()))
        .set_source(Some(PathBuf::from(source)))
        .set_options(Some(options.iter().map(|o| (*o).to_string()).collect()));
    m
}

/// A bind mount of a host path.
pub fn bind(source: &str, destination: &str, options: Vec<String>) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(destination))
        .set_typ(Some("bind".to_string()))
        .set_source(Some(PathBuf::from(source)))
        .set_options(Some(options));
    m
}

/// /proc, a tmpfs /dev with devpts, shm and mqueue, /sys and the cgroup filesystem: the
/// mounts runc and containerd give every container.
pub fn default_mounts(privileged: bool) -> Vec<Mount> {
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
pub fn depth(clean: &str) -> usize {
    clean.split('/').filter(|p| !p.is_empty()).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options_of(mounts: &[Mount], destination: &str) -> Vec<String> {
        mounts
            .iter()
            .find(|m| m.destination() == Path::new(destination))
            .and_then(|m| m.options().clone())
            .unwrap_or_default()
    }

    #[test]
    fn sysfs_and_cgroup_are_read_only_unless_privileged() {
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
