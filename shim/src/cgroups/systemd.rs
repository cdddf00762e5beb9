use super::cgroupfs::normalize_absolute;
use super::{validate_container_id, CgroupDriver, CgroupError, Result};

/// Where pods go when kubelet sends no `cgroup_parent`; systemd creates a slice on first use.
pub const DEFAULT_SYSTEMD_SLICE: &str = "crius.slice";

/// The middle field of `slice:prefix:name`: containers become `crius-<id>.scope` units, as
/// containerd's become `cri-containerd-<id>.scope`.
pub const SYSTEMD_SCOPE_PREFIX: &str = "crius";

/// runc puts a scope whose slice field is empty into `system.slice`.
const RUNC_DEFAULT_SLICE: &str = "system.slice";

const SLICE_SUFFIX: &str = ".slice";

/// systemd refuses longer unit names (`UNIT_NAME_MAX` is 256 including the NUL).
const UNIT_NAME_MAX: usize = 255;

/// systemd-managed cgroups: runc gets `slice:prefix:name` and asks systemd for a scope unit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Systemd;

impl CgroupDriver for Systemd {
    fn name(&self) -> &'static str {
        "systemd"
    }

    fn sandbox_parent(&self, cgroup_parent: &str) -> Result<String> {
        if cgroup_parent.is_empty() {
            return Ok(DEFAULT_SYSTEMD_SLICE.to_string());
        }
        to_systemd_slice(cgroup_parent)
    }

    fn container_cgroups_path(&self, cgroup_parent: &str, container_id: &str) -> Result<String> {
        validate_container_id(container_id)?;
        let scope_len = SYSTEMD_SCOPE_PREFIX.len() + 1 + container_id.len() + ".scope".len();
        if scope_len > UNIT_NAME_MAX {
            return Err(CgroupError::InvalidId {
                id: container_id.to_string(),
                reason: format!("its scope unit name would exceed {UNIT_NAME_MAX} characters"),
            });
        }
        let slice = self.sandbox_parent(cgroup_parent)?;
        Ok(format!("{slice}:{SYSTEMD_SCOPE_PREFIX}:{container_id}"))
    }

    fn filesystem_path(&self, cgroups_path: &str) -> Result<String> {
        let invalid = |reason: &str| CgroupError::InvalidPath {
            path: cgroups_path.to_string(),
            reason: reason.to_string(),
        };
        let mut fields = cgroups_path.split(':');
        let (Some(slice), Some(prefix), Some(name), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(invalid("expected the systemd form slice:prefix:name"));
        };
        if prefix.is_empty() || name.is_empty() {
            return Err(invalid("the prefix and name fields must not be empty"));
        }
        let slice = if slice.is_empty() {
            RUNC_DEFAULT_SLICE
        } else {
            slice
        };
        let slice_path = expand_slice(slice)?;
        // runc makes a scope unless the name itself asks for a slice.
        let unit = if name.ends_with(SLICE_SUFFIX) {
            name.to_string()
        } else {
            format!("{prefix}-{name}.scope")
        };
        if unit.contains('/') {
            return Err(invalid("the prefix and name fields must not contain '/'"));
        }
        if slice_path == "/" {
            Ok(format!("/{unit}"))
        } else {
            Ok(format!("{slice_path}/{unit}"))
        }
    }
}

/// Converts a pod's `cgroup_parent` to the systemd slice that holds its containers.
///
/// Three forms are accepted, matching what kubelet sends under each driver and what people
/// type into crictl:
/// - a cgroupfs path, `/kubepods/burstable/pod12-34` → `kubepods-burstable-pod12_34.slice`:
///   each component is one level, `-` inside a component becomes `_` because systemd reads
///   `-` as a level separator (kubelet's own escaping);
/// - kubelet's expanded slice path, `/kubepods.slice/kubepods-burstable.slice/…-pod1.slice`
///   → its last component, after checking the path is the slice's real hierarchy;
/// - a bare slice name, `kubepods-burstable-pod1.slice`, used as is.
pub fn to_systemd_slice(cgroup_parent: &str) -> Result<String> {
    let invalid = |reason: String| CgroupError::InvalidParent {
        parent: cgroup_parent.to_string(),
        reason,
    };
    if cgroup_parent.is_empty() {
        return Err(invalid("it is empty".to_string()));
    }
    if !cgroup_parent.starts_with('/') {
        if cgroup_parent.contains('/') || !cgroup_parent.ends_with(SLICE_SUFFIX) {
            return Err(invalid(
                "it must be an absolute cgroupfs path or a systemd slice name".to_string(),
            ));
        }
        check_unit_name(cgroup_parent).map_err(invalid)?;
        expand_slice(cgroup_parent)?;
        return Ok(cgroup_parent.to_string());
    }

    let normalized = normalize_absolute(cgroup_parent).map_err(invalid)?;
    if normalized == "/" {
        return Ok("-.slice".to_string());
    }
    let components: Vec<&str> = normalized[1..].split('/').collect();
    let slices = components
        .iter()
        .filter(|c| c.ends_with(SLICE_SUFFIX))
        .count();

    if slices == components.len() {
        let last = components[components.len() - 1];
        check_unit_name(last).map_err(invalid)?;
        let expected = expand_slice(last)?;
        if expected != normalized {
            return Err(invalid(format!(
                "the path is not the hierarchy of slice {last} (expected {expected})"
            )));
        }
        return Ok(last.to_string());
    }
    if slices > 0 {
        return Err(invalid(
            "it mixes systemd slice names with plain cgroupfs components".to_string(),
        ));
    }

    let escaped: Vec<String> = components.iter().map(|c| c.replace('-', "_")).collect();
    let slice = format!("{}{SLICE_SUFFIX}", escaped.join("-"));
    check_unit_name(&slice).map_err(invalid)?;
    Ok(slice)
}

/// Expands a slice name to its cgroupfs path, as systemd lays slices out:
/// `a-b-c.slice` → `/a.slice/a-b.slice/a-b-c.slice`, and the root slice `-.slice` → `/`.
pub fn expand_slice(slice: &str) -> Result<String> {
    let invalid = |reason: &str| CgroupError::InvalidSlice {
        slice: slice.to_string(),
        reason: reason.to_string(),
    };
    let Some(base) = slice.strip_suffix(SLICE_SUFFIX) else {
        return Err(invalid("it must end in .slice"));
    };
    if base.is_empty() {
        return Err(invalid("it has no name before .slice"));
    }
    if slice.contains('/') {
        return Err(invalid("it must not contain '/'"));
    }
    if base == "-" {
        return Ok("/".to_string());
    }
    let mut path = String::with_capacity(slice.len() * 2);
    let mut prefix = String::with_capacity(base.len());
    for component in base.split('-') {
        if component.is_empty() {
            return Err(invalid(
                "it has an empty level (a leading, trailing or doubled '-')",
            ));
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

/// Characters systemd accepts in unit names, minus `:` (it would split runc's
/// `slice:prefix:name`), `\` (escapes) and `@` (templates, meaningless for slices).
fn check_unit_name(name: &str) -> std::result::Result<(), String> {
    if name.len() > UNIT_NAME_MAX {
        return Err(format!(
            "the slice name would exceed {UNIT_NAME_MAX} characters"
        ));
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        Some(bad) => Err(format!(
            "character {bad:?} is not allowed in a systemd unit name"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn conversion_table() {
        let cases = [
            ("/kubepods", "kubepods.slice"),
            (
                "/kubepods/burstable/pod123",
                "kubepods-burstable-pod123.slice",
            ),
            (
                "/kubepods/burstable/pod1234-abcd-5678",
                "kubepods-burstable-pod1234_abcd_5678.slice",
            ),
            (
                "/kubepods/besteffort/pod_a/",
                "kubepods-besteffort-pod_a.slice",
            ),
            ("/a.b/c", "a.b-c.slice"),
            ("/", "-.slice"),
            (
                "kubepods-burstable-pod123.slice",
                "kubepods-burstable-pod123.slice",
            ),
            ("system.slice", "system.slice"),
            ("-.slice", "-.slice"),
            (
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod123.slice",
                "kubepods-burstable-pod123.slice",
            ),
            ("/kubepods.slice", "kubepods.slice"),
            (
                "/kubepods.slice/kubepods-pod1_2.slice/",
                "kubepods-pod1_2.slice",
            ),
        ];
        for (parent, want) in cases {
            assert_eq!(to_systemd_slice(parent).unwrap(), want, "parent {parent:?}");
        }
    }

    #[test]
    fn invalid_parents() {
        let long = format!("/{}", "a".repeat(300));
        let cases = [
            "",
            "kubepods",
            "kubepods/burstable",
            "kubepods/burstable.slice",
            "/kubepods/../x",
            "/kubepods//x",
            "a--b.slice",
            "-a.slice",
            "a-.slice",
            ".slice",
            "/kubepods.slice/burstable",
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-burstable-pod1.slice",
            "/kube:pods",
            "/kube pods",
            "kube@pods.slice",
            long.as_str(),
        ];
        for parent in cases {
            let result = to_systemd_slice(parent);
            assert!(
                matches!(
                    result,
                    Err(CgroupError::InvalidParent { .. } | CgroupError::InvalidSlice { .. })
                ),
                "{parent:?} gave {result:?}"
            );
        }
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

    #[test]
    fn cgroups_paths() {
        let driver = Systemd;
        assert_eq!(
            driver.container_cgroups_path("", "abc").unwrap(),
            "crius.slice:crius:abc"
        );
        assert_eq!(
            driver
                .container_cgroups_path(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod9.slice",
                    "abc"
                )
                .unwrap(),
            "kubepods-besteffort-pod9.slice:crius:abc"
        );
        assert!(matches!(
            driver.container_cgroups_path("/kubepods", "a:b"),
            Err(CgroupError::InvalidId { .. })
        ));
        let long_id = "a".repeat(250);
        assert!(driver
            .container_cgroups_path("/kubepods", &long_id)
            .is_err());
    }

    #[test]
    fn filesystem_paths() {
        let driver = Systemd;
        let cases = [
            (
                "kubepods-burstable-pod1.slice:crius:abc",
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/crius-abc.scope",
            ),
            ("crius.slice:crius:abc", "/crius.slice/crius-abc.scope"),
            (":crius:abc", "/system.slice/crius-abc.scope"),
            ("-.slice:crius:abc", "/crius-abc.scope"),
            ("a.slice:crius:a-b.slice", "/a.slice/a-b.slice"),
        ];
        for (path, want) in cases {
            assert_eq!(driver.filesystem_path(path).unwrap(), want, "{path:?}");
        }
        for bad in [
            "/crius/abc",
            "a.slice:crius",
            "a.slice:crius:abc:x",
            "a.slice::abc",
            "a.slice:crius:",
            "bad:crius:abc",
        ] {
            assert!(driver.filesystem_path(bad).is_err(), "{bad:?}");
        }
    }
}
