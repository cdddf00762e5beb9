//! Linux capabilities: the default set, CRI add/drop (with `ALL`), privileged containers, and
//! the node's bounding set.
//!
//! A process can never hold a capability that is missing from the bounding set of the
//! runtime that starts it; on this node CAP_SYS_RESOURCE is missing and runc fails the whole
//! create when a spec asks for it (ENVIRONMENT.md). So a capability a pod explicitly adds
//! must be in the node's set or the create fails naming it, while sets crius chooses itself
//! (the defaults, `ALL`, privileged) are cut down to what the node has.

use std::collections::BTreeSet;

use super::SpecError;
use crate::domain::Capabilities;

/// Every capability the kernel defines, at the index of its number (its bit in `CapBnd`).
pub const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The set a container starts from: Docker's defaults, which containerd's CRI uses too, so a
/// pod behaves the same on crius as on either of them.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// `NET_ADMIN`, `net_admin` and `CAP_NET_ADMIN` all name the same capability: CRI sends them
/// without the prefix, hand-written configs often with it.
pub fn normalize(name: &str) -> Result<String, SpecError> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if ALL_CAPABILITIES.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(SpecError::InvalidArgument(format!(
            "unknown capability {name:?}"
        )))
    }
}

/// The names of the capabilities whose bits are set in a `CapBnd` mask. Bits above the last
/// capability crius knows are ignored: a newer kernel's extra capability cannot be named in
/// a spec anyway.
pub fn from_mask(mask: u64) -> Vec<String> {
    ALL_CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1u64 << bit) != 0)
        .map(|(_, name)| (*name).to_string())
        .collect()
}

/// The capabilities of one process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessCapabilities {
    /// Bounding, permitted and effective sets (always equal for container processes).
    pub granted: BTreeSet<String>,
    /// Ambient set; the inheritable set equals it, because the kernel only raises an ambient
    /// capability that is also inheritable.
    pub ambient: BTreeSet<String>,
}

impl ProcessCapabilities {
    /// The granted capabilities, for seccomp rules that depend on them.
    pub fn granted_names(&self) -> Vec<String> {
        self.granted.iter().cloned().collect()
    }
}

impl From<ProcessCapabilities> for runtime_backends::Capabilities {
    fn from(caps: ProcessCapabilities) -> Self {
        Self {
            granted: caps.granted,
            ambient: caps.ambient,
        }
    }
}

fn host_set(host_bounding: &[String]) -> BTreeSet<String> {
    host_bounding
        .iter()
        .filter_map(|name| normalize(name).ok())
        .collect()
}

fn is_all(name: &str) -> bool {
    name.trim().eq_ignore_ascii_case("ALL")
}

fn missing_on_host(cap: &str) -> SpecError {
    SpecError::FailedPrecondition(format!(
        "capability {cap} is not in crius's bounding set on this node, so no container here can hold it"
    ))
}

/// The default set, minus what the node cannot grant: the capabilities of the pause process,
/// and the starting point for every container.
pub fn default_capabilities(host_bounding: &[String]) -> ProcessCapabilities {
    let host = host_set(host_bounding);
    ProcessCapabilities {
        granted: DEFAULT_CAPABILITIES
            .iter()
            .filter(|cap| host.contains(**cap))
            .map(|cap| (*cap).to_string())
            .collect(),
        ambient: BTreeSet::new(),
    }
}

/// A container's capabilities from its CRI security context.
///
/// `ALL` in `add` grants everything the node has and `ALL` in `drop` starts from nothing;
/// individual adds and drops apply after that, so `add: [ALL], drop: [CHOWN]` is everything
/// but CAP_CHOWN and `drop: [ALL], add: [NET_ADMIN]` is only CAP_NET_ADMIN (containerd's
/// order). A privileged container gets the node's whole bounding set.
pub fn container_capabilities(
    requested: &Capabilities,
    privileged: bool,
    host_bounding: &[String],
) -> Result<ProcessCapabilities, SpecError> {
    let host = host_set(host_bounding);
    let mut granted: BTreeSet<String> = if privileged {
        host.clone()
    } else {
        default_capabilities(host_bounding).granted
    };

    if !privileged {
        if requested.add.iter().any(|c| is_all(c)) {
            granted = host.clone();
        }
        if requested.drop.iter().any(|c| is_all(c)) {
            granted.clear();
        }
        for name in requested.add.iter().filter(|c| !is_all(c)) {
            let cap = normalize(name)?;
            if !host.contains(&cap) {
                return Err(missing_on_host(&cap));
            }
            granted.insert(cap);
        }
        for name in requested.drop.iter().filter(|c| !is_all(c)) {
            granted.remove(&normalize(name)?);
        }
    }

    let mut ambient = BTreeSet::new();
    for name in &requested.add_ambient {
        let cap = normalize(name)?;
        if !host.contains(&cap) {
            if privileged {
                // Privileged means "whatever the node allows"; the node does not allow this one.
                continue;
            }
            return Err(missing_on_host(&cap));
        }
        if !granted.contains(&cap) {
            return Err(SpecError::InvalidArgument(format!(
                "ambient capability {cap} is not in the container's capability set; add it as well"
            )));
        }
        ambient.insert(cap);
    }
    Ok(ProcessCapabilities { granted, ambient })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This node's set: everything but CAP_SYS_RESOURCE.
    fn host_without_sys_resource() -> Vec<String> {
        ALL_CAPABILITIES
            .iter()
            .filter(|c| **c != "CAP_SYS_RESOURCE")
            .map(|c| c.to_string())
            .collect()
    }

    fn caps(add: &[&str], drop: &[&str]) -> Capabilities {
        Capabilities {
            add: add.iter().map(|s| s.to_string()).collect(),
            drop: drop.iter().map(|s| s.to_string()).collect(),
            add_ambient: Vec::new(),
        }
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_are_accepted_with_or_without_prefix_in_any_case() {
        assert_eq!(normalize("net_admin").unwrap(), "CAP_NET_ADMIN");
        assert_eq!(normalize("CAP_SYS_ADMIN").unwrap(), "CAP_SYS_ADMIN");
        assert_eq!(normalize("cap_chown").unwrap(), "CAP_CHOWN");
        assert!(
            matches!(normalize("FLY"), Err(SpecError::InvalidArgument(m)) if m.contains("FLY"))
        );
    }

    #[test]
    fn every_known_capability_is_one_the_engine_renders() {
        let all = runtime_backends::Capabilities {
            granted: ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect(),
            ambient: BTreeSet::new(),
        };
        let config = crate::domain::SandboxConfig::default();
        let host = crate::security::test_host();
        let mut request =
            crate::sandbox::spec::sandbox_request(&crate::sandbox::spec::SandboxSpecInput {
                id: "sb1",
                config: &config,
                cgroup: runtime_backends::CgroupRequest::default(),
                pause_args: vec!["/pause".to_string()],
                netns_path: None,
                oom_score_adj_floor: 0,
                host: &host,
            })
            .unwrap();
        request.security.capabilities = all;
        let process = runtime_backends::oci::render::process(&request).unwrap();
        let bounding = process.capabilities().as_ref().unwrap().bounding().clone();
        assert_eq!(bounding.map(|b| b.len()), Some(ALL_CAPABILITIES.len()));
    }

    #[test]
    fn cap_bnd_mask_decodes_by_bit() {
        // Bits 0 (CHOWN), 21 (SYS_ADMIN) and 40 (CHECKPOINT_RESTORE); bit 63 is unknown.
        let names = from_mask((1 << 0) | (1 << 21) | (1 << 40) | (1 << 63));
        assert_eq!(
            names,
            vec!["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_CHECKPOINT_RESTORE"]
        );
        assert_eq!(from_mask(0x1ff_ffff_ffff).len(), ALL_CAPABILITIES.len());
    }

    #[test]
    fn default_set_is_dockers_fourteen() {
        let result =
            container_capabilities(&caps(&[], &[]), false, &host_without_sys_resource()).unwrap();
        assert_eq!(result.granted.len(), 14);
        assert!(result.granted.contains("CAP_NET_BIND_SERVICE"));
        assert!(!result.granted.contains("CAP_SYS_ADMIN"));
        assert!(result.ambient.is_empty());
    }

    #[test]
    fn add_and_drop_apply_to_the_default_set() {
        let result = container_capabilities(
            &caps(&["NET_ADMIN", "sys_ptrace"], &["CHOWN", "CAP_MKNOD"]),
            false,
            &host_without_sys_resource(),
        )
        .unwrap();
        assert!(result.granted.contains("CAP_NET_ADMIN"));
        assert!(result.granted.contains("CAP_SYS_PTRACE"));
        assert!(!result.granted.contains("CAP_CHOWN"));
        assert!(!result.granted.contains("CAP_MKNOD"));
        assert_eq!(result.granted.len(), 14);
    }

    #[test]
    fn add_all_grants_what_the_host_has_minus_drops() {
        let result = container_capabilities(
            &caps(&["ALL"], &["CHOWN"]),
            false,
            &host_without_sys_resource(),
        )
        .unwrap();
        assert_eq!(result.granted.len(), ALL_CAPABILITIES.len() - 2);
        assert!(!result.granted.contains("CAP_SYS_RESOURCE"));
        assert!(!result.granted.contains("CAP_CHOWN"));
        assert!(result.granted.contains("CAP_SYS_ADMIN"));
    }

    #[test]
    fn drop_all_then_add_keeps_only_the_added() {
        let result = container_capabilities(
            &caps(&["NET_BIND_SERVICE"], &["all"]),
            false,
            &host_without_sys_resource(),
        )
        .unwrap();
        assert_eq!(result.granted, set(&["CAP_NET_BIND_SERVICE"]));
        let none = container_capabilities(
            &caps(&["ALL"], &["ALL"]),
            false,
            &host_without_sys_resource(),
        )
        .unwrap();
        assert!(none.granted.is_empty());
    }

    #[test]
    fn adding_a_capability_the_host_lacks_fails_naming_it() {
        let err = container_capabilities(
            &caps(&["SYS_RESOURCE"], &[]),
            false,
            &host_without_sys_resource(),
        )
        .unwrap_err();
        assert_eq!(
            err,
            SpecError::FailedPrecondition(
                "capability CAP_SYS_RESOURCE is not in crius's bounding set on this node, so no container here can hold it"
                    .to_string()
            )
        );
    }

    #[test]
    fn privileged_gets_the_host_bounding_set() {
        let result =
            container_capabilities(&caps(&[], &["ALL"]), true, &host_without_sys_resource())
                .unwrap();
        assert_eq!(result.granted.len(), ALL_CAPABILITIES.len() - 1);
        assert!(!result.granted.contains("CAP_SYS_RESOURCE"));
    }

    #[test]
    fn defaults_the_host_lacks_are_left_out() {
        let host: Vec<String> = host_without_sys_resource()
            .into_iter()
            .filter(|c| c != "CAP_MKNOD")
            .collect();
        let result = default_capabilities(&host);
        assert_eq!(result.granted.len(), 13);
        assert!(!result.granted.contains("CAP_MKNOD"));
    }

    #[test]
    fn ambient_capabilities_must_be_granted_and_become_inheritable() {
        let mut requested = caps(&["NET_ADMIN"], &[]);
        requested.add_ambient = vec!["net_admin".to_string()];
        let result =
            container_capabilities(&requested, false, &host_without_sys_resource()).unwrap();
        assert_eq!(result.ambient, set(&["CAP_NET_ADMIN"]));
        assert_eq!(result.granted.len(), 15);

        let mut not_granted = caps(&[], &[]);
        not_granted.add_ambient = vec!["SYS_ADMIN".to_string()];
        assert!(matches!(
            container_capabilities(&not_granted, false, &host_without_sys_resource()),
            Err(SpecError::InvalidArgument(_))
        ));
    }
}
