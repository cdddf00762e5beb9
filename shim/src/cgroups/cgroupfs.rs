use super::{CgroupDriver, CgroupError, Result};

/// Where pods go when kubelet sends no `cgroup_parent` (crictl, tests): a tree of crius's
/// own, so its containers are easy to find and never mix with another runtime's.
pub const DEFAULT_CGROUPFS_PARENT: &str = "/crius";

/// Plain cgroupfs paths: a pod's containers go under its parent path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cgroupfs;

impl CgroupDriver for Cgroupfs {
    fn name(&self) -> &'static str {
        "cgroupfs"
    }

    fn sandbox_parent(&self, cgroup_parent: &str) -> Result<String> {
        if cgroup_parent.is_empty() {
            return Ok(DEFAULT_CGROUPFS_PARENT.to_string());
        }
        normalize_absolute(cgroup_parent).map_err(|reason| CgroupError::InvalidParent {
            parent: cgroup_parent.to_string(),
            reason,
        })
    }
}

/// Validates an absolute cgroupfs path and drops a trailing `/`.
///
/// `..` and empty components are refused rather than resolved: a parent that climbs out of
/// the tree kubelet manages is a bug or an attack, never something to guess at.
pub(super) fn normalize_absolute(path: &str) -> std::result::Result<String, String> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(if path.ends_with(".slice") {
            "it is a systemd slice name, but the cgroup driver is cgroupfs; \
             kubelet and crius must use the same cgroup driver"
                .to_string()
        } else {
            "it must be an absolute path".to_string()
        });
    };
    if rest.is_empty() {
        return Ok("/".to_string());
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    for component in rest.split('/') {
        match component {
            "" => return Err("it has an empty path component".to_string()),
            "." | ".." => return Err(format!("it has a {component:?} path component")),
            _ if component.contains('\0') => return Err("it contains a NUL byte".to_string()),
            _ => {}
        }
    }
    Ok(format!("/{rest}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_normalized_and_default_to_crius_own_tree() {
        let driver = Cgroupfs;
        assert_eq!(driver.sandbox_parent("").unwrap(), "/crius");
        assert_eq!(driver.sandbox_parent("/").unwrap(), "/");
        assert_eq!(driver.sandbox_parent("/a/b/").unwrap(), "/a/b");
        assert_eq!(
            driver.sandbox_parent("/kubepods/burstable/pod1-2").unwrap(),
            "/kubepods/burstable/pod1-2"
        );
    }

    #[test]
    fn invalid_parents() {
        let driver = Cgroupfs;
        for parent in [
            "kubepods",
            "kubepods/burstable",
            "/kubepods//burstable",
            "/kubepods/../etc",
            "/kubepods/./x",
            "//",
        ] {
            let err = driver.sandbox_parent(parent).unwrap_err();
            assert!(
                matches!(err, CgroupError::InvalidParent { .. }),
                "{parent:?}: {err}"
            );
        }
        let err = driver
            .sandbox_parent("kubepods-burstable.slice")
            .unwrap_err();
        assert!(err.to_string().contains("same cgroup driver"), "{err}");
    }
}
