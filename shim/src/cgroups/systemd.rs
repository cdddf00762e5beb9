use super::cgroupfs::normalize_absolute;
use super::{CgroupDriver, CgroupError, Result};

/// Where pods go when kubelet sends no `cgroup_parent`; systemd creates a slice on first use.
pub const DEFAULT_SYSTEMD_SLICE: &str = "crius.slice";

const SLICE_SUFFIX: &str = ".slice";

/// systemd refuses longer unit names (`UNIT_NAME_MAX` is 256 including the NUL).
const UNIT_NAME_MAX: usize = 255;

/// systemd-managed cgroups: a pod's containers go into a slice, as scope units the backend
/// names.
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

/// Expands a slice name to its cgroupfs path, as systemd lays slices out (the backend's
/// rule, which names containers' cgroups inside the slice).
pub fn expand_slice(slice: &str) -> Result<String> {
    runtime_backends::cgroup::expand_slice(slice).map_err(|reason| CgroupError::InvalidSlice {
        slice: slice.to_string(),
        reason,
    })
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
}
