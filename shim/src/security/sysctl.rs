//! Pod sysctls. Only namespaced sysctls are accepted: any other one would change the whole
//! node, and a namespaced one is only private to the pod when the pod has its own namespace
//! of that kind (a host-network pod setting `net.*` would change the host's network stack).

use std::collections::BTreeMap;

use super::SpecError;
use crate::domain::{NamespaceMode, NamespaceOptions};

/// sysctls that belong to the IPC namespace.
fn is_ipc_sysctl(name: &str) -> bool {
    name.starts_with("kernel.shm")
        || name.starts_with("kernel.msg")
        || name == "kernel.sem"
        || name.starts_with("fs.mqueue.")
}

/// kubelet accepts `net/ipv4/ip_forward` as well as `net.ipv4.ip_forward`. In the slash form
/// a dot is part of a name (an interface called `eth0.100`), so the separators swap.
pub fn normalize_sysctl_name(name: &str) -> String {
    let first_separator = name.chars().find(|c| *c == '.' || *c == '/');
    if first_separator != Some('/') {
        return name.to_string();
    }
    name.chars()
        .map(|c| match c {
            '/' => '.',
            '.' => '/',
            other => other,
        })
        .collect()
}

/// Check every sysctl of a pod against its namespaces.
pub fn validate_sysctls(
    sysctls: &BTreeMap<String, String>,
    namespaces: &NamespaceOptions,
) -> Result<(), SpecError> {
    for (raw_name, value) in sysctls {
        let name = normalize_sysctl_name(raw_name);
        if name.is_empty() || value.contains('\n') {
            return Err(SpecError::InvalidArgument(format!(
                "invalid sysctl {raw_name:?}={value:?}"
            )));
        }
        if is_ipc_sysctl(&name) {
            if namespaces.ipc == NamespaceMode::Node {
                return Err(SpecError::InvalidArgument(format!(
                    "sysctl {raw_name:?} is not allowed in a pod that shares the host's IPC namespace"
                )));
            }
        } else if name.starts_with("net.") {
            if namespaces.network == NamespaceMode::Node {
                return Err(SpecError::InvalidArgument(format!(
                    "sysctl {raw_name:?} is not allowed in a pod that uses the host network"
                )));
            }
        } else {
            return Err(SpecError::InvalidArgument(format!(
                "sysctl {raw_name:?} is not namespaced: setting it would change the whole node"
            )));
        }
    }
    Ok(())
}

/// The sysctls in dot form, as the engine is given them.
pub fn normalized(sysctls: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    sysctls
        .iter()
        .map(|(k, v)| (normalize_sysctl_name(k), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sysctls(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn ns(network: NamespaceMode, ipc: NamespaceMode) -> NamespaceOptions {
        NamespaceOptions {
            network,
            ipc,
            ..Default::default()
        }
    }

    #[test]
    fn namespaced_sysctls_are_accepted_in_a_private_pod() {
        let all = sysctls(&[
            ("kernel.shm_rmid_forced", "1"),
            ("kernel.msgmax", "65536"),
            ("kernel.sem", "250 32000 100 128"),
            ("fs.mqueue.msg_max", "10"),
            ("net.ipv4.ip_unprivileged_port_start", "0"),
            ("net/ipv4/conf/eth0.100/rp_filter", "1"),
        ]);
        validate_sysctls(&all, &ns(NamespaceMode::Pod, NamespaceMode::Pod)).unwrap();
    }

    #[test]
    fn node_wide_sysctls_are_rejected_by_name() {
        for name in [
            "kernel.panic",
            "vm.overcommit_memory",
            "kernel.shmall.extra.but.fine",
        ] {
            let result = validate_sysctls(&sysctls(&[(name, "1")]), &NamespaceOptions::default());
            if name.starts_with("kernel.shm") {
                assert!(result.is_ok(), "{name}");
            } else {
                assert!(
                    matches!(result, Err(SpecError::InvalidArgument(m)) if m.contains(name)),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn net_sysctls_need_a_private_network_and_ipc_sysctls_a_private_ipc() {
        let net = sysctls(&[("net.core.somaxconn", "1024")]);
        assert!(matches!(
            validate_sysctls(&net, &ns(NamespaceMode::Node, NamespaceMode::Pod)),
            Err(SpecError::InvalidArgument(m)) if m.contains("net.core.somaxconn")
        ));
        let ipc = sysctls(&[("kernel.msgmnb", "1")]);
        assert!(validate_sysctls(&ipc, &ns(NamespaceMode::Node, NamespaceMode::Pod)).is_ok());
        assert!(validate_sysctls(&ipc, &ns(NamespaceMode::Pod, NamespaceMode::Node)).is_err());
    }

    #[test]
    fn slash_form_is_converted() {
        assert_eq!(
            normalize_sysctl_name("net/ipv4/conf/eth0.100/rp_filter"),
            "net.ipv4.conf.eth0/100.rp_filter"
        );
        assert_eq!(
            normalize_sysctl_name("net.ipv4.ip_forward"),
            "net.ipv4.ip_forward"
        );
        let normalized = normalized(&sysctls(&[("kernel/shm_rmid_forced", "1")]));
        assert_eq!(
            normalized.get("kernel.shm_rmid_forced").map(String::as_str),
            Some("1")
        );
    }
}
