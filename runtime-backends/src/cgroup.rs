//! How an OCI runtime (runc) names a container's cgroup: the `linux.cgroupsPath` it is
//! given, and where that cgroup then is in the cgroup filesystem.
//!
//! With cgroupfs the two are the same path. With systemd the runtime is given
//! `slice:prefix:name` and asks systemd for a scope unit `prefix-name.scope` inside the
//! slice, which systemd lays out as nested directories (`a-b.slice` is `/a.slice/a-b.slice`).

use crate::{BackendError, CgroupRequest, Result};

/// The middle field of `slice:prefix:name`: containers become `crius-<id>.scope` units, as
/// containerd's CRI makes `cri-containerd-<id>.scope`.
pub const SYSTEMD_SCOPE_PREFIX: &str = "crius";

const SLICE_SUFFIX: &str = ".slice";

/// systemd refuses longer unit names (`UNIT_NAME_MAX` is 256 including the NUL).
const UNIT_NAME_MAX: usize = 255;

/// A container's cgroup under both names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupNames {
    /// What the OCI runtime is given (`linux.cgroupsPath`).
    pub runtime: String,
    /// Where the cgroup is, relative to the cgroup filesystem's root.
    pub filesystem: String,
}

/// The cgroup of container `id` under `request.parent`.
pub fn names(request: &CgroupRequest, id: &str) -> Result<CgroupNames> {
    check_container_id(id)?;
    let parent = request.parent.as_str();
    if request.systemd {
        let unit = format!("{SYSTEMD_SCOPE_PREFIX}-{id}.scope");
        if unit.len() > UNIT_NAME_MAX {
            return Err(BackendError::InvalidArgument(format!(
                "container id {id:?} would make a scope unit name longer than {UNIT_NAME_MAX} characters"
            )));
        }
        let slice = expand_slice(parent).map_err(|reason| {
            BackendError::InvalidArgument(format!("cgroup parent {parent:?}: {reason}"))
        })?;
        Ok(CgroupNames {
            runtime: format!("{parent}:{SYSTEMD_SCOPE_PREFIX}:{id}"),
            filesystem: under(&slice, &unit),
        })
    } else {
        if !parent.starts_with('/') {
            return Err(BackendError::InvalidArgument(format!(
                "cgroup parent {parent:?} must be an absolute path"
            )));
        }
        let path = under(parent.trim_end_matches('/'), id);
        Ok(CgroupNames {
            runtime: path.clone(),
            filesystem: path,
        })
    }
}

/// The filesystem path of a cgroup recorded as the runtime was given it: records written
/// before crius kept the filesystem path hold, under the systemd driver, runc's
/// `slice:prefix:name` form. A path already a filesystem path is returned as it is.
pub fn filesystem_path(recorded: &str) -> String {
    if recorded.starts_with('/') {
        return recorded.to_string();
    }
    let mut parts = recorded.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(slice), Some(prefix), Some(name)) => match expand_slice(slice) {
            Ok(path) => under(&path, &format!("{prefix}-{name}.scope")),
            Err(_) => recorded.to_string(),
        },
        _ => recorded.to_string(),
    }
}

fn under(parent: &str, name: &str) -> String {
    if parent.is_empty() || parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// A container id becomes part of a cgroup name: one path component that is also valid
/// inside a systemd unit name and cannot break the runtime's `slice:prefix:name` form.
fn check_container_id(id: &str) -> Result<()> {
    let invalid = |reason: String| {
        Err(BackendError::InvalidArgument(format!(
            "container id {id:?} cannot name a cgroup: {reason}"
        )))
    };
    if id.is_empty() {
        return invalid("it is empty".to_string());
    }
    if id == "." || id == ".." {
        return invalid("it is a relative path component".to_string());
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return invalid(format!("character {bad:?} is not allowed"));
    }
    Ok(())
}

/// Expands a slice name to its cgroupfs path, as systemd lays slices out:
/// `a-b-c.slice` → `/a.slice/a-b.slice/a-b-c.slice`, and the root slice `-.slice` → `/`.
/// The error says what is wrong with the name.
pub fn expand_slice(slice: &str) -> std::result::Result<String, String> {
    let Some(base) = slice.strip_suffix(SLICE_SUFFIX) else {
        return Err("it must end in .slice".to_string());
    };
    if base.is_empty() {
        return Err("it has no name before .slice".to_string());
    }
    if slice.contains('/') {
        return Err("it must not contain '/'".to_string());
    }
    if base == "-" {
        return Ok("/".to_string());
    }
    let mut path = String::with_capacity(slice.len() * 2);
    let mut prefix = String::with_capacity(base.len());
    for component in base.split('-') {
        if component.is_empty() {
            return Err("it has an empty level (a leading, trailing or doubled '-')".to_string());
        }
        path.push('/');
        path.push_str(&prefix);
        path.push_str(component);
        path.push_str(SLICE_SUFFIX);
        prefix.push_str(component);
        prefix.push('-');
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(parent: &str, systemd: bool) -> CgroupRequest {
        CgroupRequest {
            parent: parent.to_string(),
            systemd,
        }
    }

    #[test]
    fn cgroupfs_names_are_one_path() {
        let cases = [
            ("/crius", "/crius/abc"),
            ("/", "/abc"),
            (
                "/kubepods/burstable/pod1-2",
                "/kubepods/burstable/pod1-2/abc",
            ),
            ("/kubepods/besteffort/", "/kubepods/besteffort/abc"),
        ];
        for (parent, want) in cases {
            let names = names(&request(parent, false), "abc").unwrap();
            assert_eq!(names.runtime, want, "{parent:?}");
            assert_eq!(names.filesystem, want, "{parent:?}");
        }
        assert!(names(&request("kubepods", false), "abc").is_err());
    }

    #[test]
    fn systemd_names_are_a_scope_in_the_slice() {
        let cases = [
            (
                "kubepods-burstable-pod1.slice",
                "kubepods-burstable-pod1.slice:crius:abc",
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/crius-abc.scope",
            ),
            ("crius.slice", "crius.slice:crius:abc", "/crius.slice/crius-abc.scope"),
            ("-.slice", "-.slice:crius:abc", "/crius-abc.scope"),
        ];
        for (parent, runtime, filesystem) in cases {
            let names = names(&request(parent, true), "abc").unwrap();
            assert_eq!(names.runtime, runtime);
            assert_eq!(names.filesystem, filesystem);
        }
        assert!(names(&request("kubepods", true), "abc").is_err());
        assert!(names(&request("a.slice", true), &"a".repeat(250)).is_err());
    }

    #[test]
    fn container_ids_are_checked() {
        for bad in ["", ".", "..", "a/b", "a:b", "a b"] {
            assert!(
                names(&request("/kubepods", false), bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
        names(&request("/kubepods", false), "4f3c0a_b-c.d").unwrap();
    }

    #[test]
    fn expand_slice_table() {
        let cases = [
            ("-.slice", "/"),
            ("system.slice", "/system.slice"),
            ("a-b-c.slice", "/a.slice/a-b.slice/a-b-c.slice"),
            (
                "kubepods-burstable-pod1_2.slice",
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1_2.slice",
            ),
        ];
        for (slice, want) in cases {
            assert_eq!(expand_slice(slice).unwrap(), want, "slice {slice:?}");
        }
        for bad in [
            "a",
            "a.scope",
            ".slice",
            "a/b.slice",
            "a--b.slice",
            "-a.slice",
        ] {
            assert!(expand_slice(bad).is_err(), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod legacy_tests {
    use super::filesystem_path;

    #[test]
    fn records_in_runcs_systemd_form_read_as_filesystem_paths() {
        assert_eq!(
            filesystem_path("kubepods-besteffort.slice:crius:abc"),
            "/kubepods.slice/kubepods-besteffort.slice/crius-abc.scope"
        );
        assert_eq!(
            filesystem_path("/kubepods/besteffort/abc"),
            "/kubepods/besteffort/abc"
        );
        assert_eq!(filesystem_path("not a cgroup"), "not a cgroup");
    }
}
