//! Empty OCI skeletons for the spec builders.
//!
//! oci-spec's `Default` impls (and its builders, which start from them) are a sample
//! container: three capabilities in every set including ambient, an RLIMIT_NOFILE of 1024, a
//! hostname, default namespaces and masked paths. Any of that leaking into a pod's spec would
//! grant or restrict something nobody asked for, so the builders start from these
//! skeletons, in which every field is set explicitly to "nothing".

use std::collections::HashMap;
use std::path::PathBuf;

use oci_spec::runtime::{
    Linux, LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceType, Process,
    Root, Spec, User,
};

use super::SpecError;

/// The runtime-spec version containerd 1.6 writes; runc 1.1 accepts it.
pub const OCI_VERSION: &str = "1.0.2-dev";

pub fn empty_spec() -> Spec {
    let mut spec = Spec::default();
    let mut root = Root::default();
    root.set_path(PathBuf::from("rootfs"))
        .set_readonly(Some(false));
    spec.set_version(OCI_VERSION.to_string())
        .set_root(Some(root))
        .set_mounts(Some(Vec::new()))
        .set_process(Some(empty_process()))
        .set_hostname(None)
        .set_domainname(None)
        .set_hooks(None)
        .set_annotations(Some(HashMap::new()))
        .set_linux(Some(empty_linux()))
        .set_solaris(None)
        .set_windows(None)
        .set_vm(None)
        .set_zos(None);
    spec
}

pub fn empty_process() -> Process {
    let mut process = Process::default();
    process
        .set_terminal(Some(false))
        .set_console_size(None)
        .set_user(User::default())
        .set_args(Some(Vec::new()))
        .set_command_line(None)
        .set_env(Some(Vec::new()))
        .set_cwd(PathBuf::from("/"))
        .set_capabilities(None)
        .set_rlimits(None)
        .set_no_new_privileges(Some(false))
        .set_apparmor_profile(None)
        .set_oom_score_adj(None)
        .set_selinux_label(None)
        .set_io_priority(None)
        .set_scheduler(None)
        .set_exec_cpu_affinity(None);
    process
}

pub fn empty_linux() -> Linux {
    let mut linux = Linux::default();
    linux
        .set_net_devices(None)
        .set_uid_mappings(None)
        .set_gid_mappings(None)
        .set_sysctl(None)
        .set_resources(None)
        .set_cgroups_path(None)
        .set_namespaces(Some(Vec::new()))
        .set_devices(None)
        .set_seccomp(None)
        .set_rootfs_propagation(None)
        .set_masked_paths(None)
        .set_readonly_paths(None)
        .set_mount_label(None)
        .set_intel_rdt(None)
        .set_memory_policy(None)
        .set_personality(None)
        .set_time_offsets(None);
    linux
}

/// A namespace entry: a new namespace, or the one at `path`.
pub fn namespace(typ: LinuxNamespaceType, path: Option<String>) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ).set_path(path.map(PathBuf::from));
    ns
}

pub fn id_mapping(container_id: u32, host_id: u32, size: u32) -> Result<LinuxIdMapping, SpecError> {
    LinuxIdMappingBuilder::default()
        .container_id(container_id)
        .host_id(host_id)
        .size(size)
        .build()
        .map_err(|e| {
            SpecError::InvalidArgument(format!("id mapping {container_id}:{host_id}:{size}: {e}"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skeleton_grants_nothing() {
        let spec = empty_spec();
        let json = serde_json::to_value(&spec).unwrap();
        assert!(json.get("hostname").is_none());
        let process = &json["process"];
        assert!(process.get("capabilities").is_none());
        assert!(process.get("rlimits").is_none());
        let linux = &json["linux"];
        assert_eq!(linux["namespaces"], serde_json::json!([]));
        assert!(linux.get("maskedPaths").is_none());
        assert!(linux.get("resources").is_none());
    }
}
