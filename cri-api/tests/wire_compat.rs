//! Wire compatibility of our `runtime.v1` bindings with an independent build of
//! the CRI: the `k8s-cri` crate 0.11 (generated from the Kubernetes 1.32 proto).
//!
//! For every message both sides define, a value is filled deterministically
//! (every field set: strings, numbers, bools, enums, nested messages, repeated
//! fields with two elements, maps with two entries), encoded by one crate,
//! decoded by the other, compared field by field *by name*, re-encoded and
//! decoded back. A field with a wrong number or type in `proto/api.proto`
//! makes these tests fail. Fields and messages newer than 1.32 are checked
//! for self-consistency and against a table of their upstream field numbers.
//! The services are checked by RPC count, by client method, and over a real
//! gRPC connection with the `k8s-cri` client against our generated server.

// Tests may panic on unexpected values; the deprecated fields are part of the wire contract.
#![allow(clippy::unwrap_used, clippy::expect_used, deprecated)]

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;

use cri_api::v1 as ours;
use k8s_cri::v1 as theirs;
use prost::Message;
use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status};

/// The proto we compile, for counting RPCs and messages.
const PROTO: &str = include_str!("../proto/api.proto");

/// Pass 0 sets every bool and uses two map entries. Passes 1..=16 set a bool
/// iff bit (pass - 1) of its sequence number is set, so any two bool fields
/// of a message differ in some pass (a swapped pair of bool field numbers is
/// caught), and use one map entry so encodings are byte-for-byte comparable.
const PASSES: u32 = 17;

/// Deterministic source of distinct, non-default field values.
struct Gen {
    n: u64,
    pass: u32,
    /// Leave fields that `k8s-cri` does not know at their defaults.
    shared_only: bool,
}

impl Gen {
    fn new(pass: u32, shared_only: bool) -> Self {
        Gen {
            n: 0,
            pass,
            shared_only,
        }
    }

    fn next(&mut self) -> u64 {
        self.n += 1;
        self.n
    }

    fn flag(&mut self) -> bool {
        let n = self.next();
        self.pass == 0 || (n >> (self.pass - 1)) & 1 == 1
    }

    fn map_entries(&self) -> u64 {
        if self.pass == 0 {
            2
        } else {
            1
        }
    }

    /// Whether encodings of equal values must be byte-identical (no multi-entry maps).
    fn canonical(&self) -> bool {
        self.map_entries() == 1
    }
}

/// Build a value with every field set from a [`Gen`].
trait Fill: Sized {
    fn fill(g: &mut Gen) -> Self;
}

impl Fill for String {
    fn fill(g: &mut Gen) -> Self {
        format!("s{}", g.next())
    }
}
impl Fill for bool {
    fn fill(g: &mut Gen) -> Self {
        g.flag()
    }
}
impl Fill for i32 {
    // Enumerations are i32 too; prost keeps values it does not know, so a
    // distinct number per field is fine and catches swapped fields.
    fn fill(g: &mut Gen) -> Self {
        i32::try_from(g.next()).unwrap()
    }
}
impl Fill for i64 {
    // Negative and wider than 32 bits: catches int32/uint64 confusion.
    fn fill(g: &mut Gen) -> Self {
        -i64::try_from(g.next()).unwrap() * 1_000_000_007
    }
}
impl Fill for u32 {
    fn fill(g: &mut Gen) -> Self {
        0x8000_0000 + u32::try_from(g.next()).unwrap()
    }
}
impl Fill for u64 {
    fn fill(g: &mut Gen) -> Self {
        (1 << 40) + g.next()
    }
}
impl Fill for u8 {
    fn fill(g: &mut Gen) -> Self {
        u8::try_from(g.next() % 251).unwrap()
    }
}
impl Fill for f64 {
    fn fill(g: &mut Gen) -> Self {
        g.next() as f64 + 0.25
    }
}
impl<T: Fill> Fill for Option<T> {
    fn fill(g: &mut Gen) -> Self {
        Some(T::fill(g))
    }
}
impl<T: Fill> Fill for Vec<T> {
    fn fill(g: &mut Gen) -> Self {
        vec![T::fill(g), T::fill(g)]
    }
}
impl Fill for HashMap<String, String> {
    fn fill(g: &mut Gen) -> Self {
        (0..g.map_entries())
            .map(|_| (String::fill(g), String::fill(g)))
            .collect()
    }
}

/// Field-by-field comparison of one crate's value with the other's, by field name.
trait Same<B> {
    fn same(&self, other: &B, path: &str) -> Result<(), String>;
}

macro_rules! same_by_eq {
    ($($t:ty),*) => {$(
        impl Same<$t> for $t {
            fn same(&self, other: &$t, path: &str) -> Result<(), String> {
                if self == other {
                    Ok(())
                } else {
                    Err(format!("{path}: {self:?} != {other:?}"))
                }
            }
        }
    )*};
}
same_by_eq!(String, bool, i32, i64, u32, u64, u8, f64, HashMap<String, String>);

impl<A: Same<B>, B> Same<Option<B>> for Option<A> {
    fn same(&self, other: &Option<B>, path: &str) -> Result<(), String> {
        match (self, other) {
            (Some(a), Some(b)) => a.same(b, path),
            (None, None) => Ok(()),
            (a, _) => Err(format!(
                "{path}: presence differs (ours set: {})",
                a.is_some()
            )),
        }
    }
}

impl<A: Same<B>, B> Same<Vec<B>> for Vec<A> {
    fn same(&self, other: &Vec<B>, path: &str) -> Result<(), String> {
        if self.len() != other.len() {
            return Err(format!("{path}: length {} != {}", self.len(), other.len()));
        }
        self.iter()
            .zip(other)
            .enumerate()
            .try_for_each(|(i, (a, b))| a.same(b, &format!("{path}[{i}]")))
    }
}

/// Messages both crates define. `+ { ... }` lists our fields that are newer
/// than Kubernetes 1.32 (absent from `k8s-cri`). Struct literals make the
/// compiler reject a list that misses a field on either side.
macro_rules! shared_messages {
    ($( $name:ident { $($f:ident),* } $(+ { $($x:ident),* })? ;)*) => {
        $(
            impl Fill for ours::$name {
                // `..Default::default()` covers what only our hand-written types have
                // (`ListContainersResponse::encoded` and the lists' `raw`, which never survive a decode).
                #[allow(unused_variables, clippy::needless_update)]
                fn fill(g: &mut Gen) -> Self {
                    ours::$name {
                        $($f: Fill::fill(g),)*
                        $($($x: if g.shared_only { Default::default() } else { Fill::fill(g) },)*)?
                        ..Default::default()
                    }
                }
            }
            impl Fill for theirs::$name {
                #[allow(unused_variables)]
                fn fill(g: &mut Gen) -> Self {
                    theirs::$name { $($f: Fill::fill(g),)* }
                }
            }
            impl Same<theirs::$name> for ours::$name {
                #[allow(unused_variables)]
                fn same(&self, other: &theirs::$name, path: &str) -> Result<(), String> {
                    $(self.$f.same(&other.$f, &format!("{path}.{}", stringify!($f)))?;)*
                    Ok(())
                }
            }
        )*

        /// Names of the shared messages, as Rust type names.
        const SHARED: &[&str] = &[$(stringify!($name)),*];

        /// Runs [`check_shared`] for every shared message.
        fn check_all_shared() {
            $(check_shared::<ours::$name, theirs::$name>(stringify!($name));)*
        }

        /// Runs [`check_ours`] for every shared message (with the newer fields set).
        fn check_all_shared_ours() {
            $(check_ours::<ours::$name>(stringify!($name));)*
        }
    };
}

/// Messages newer than Kubernetes 1.32: only we define them.
macro_rules! our_messages {
    ($( $name:ident { $($f:ident),* } ;)*) => {
        $(
            impl Fill for ours::$name {
                #[allow(unused_variables)]
                fn fill(g: &mut Gen) -> Self {
                    ours::$name { $($f: Fill::fill(g),)* }
                }
            }
        )*

        /// Names of the messages only we define.
        const OURS_ONLY: &[&str] = &[$(stringify!($name)),*];

        /// Runs [`check_ours`] for every message only we define.
        fn check_all_ours_only() {
            $(check_ours::<ours::$name>(stringify!($name));)*
        }
    };
}

shared_messages! {
    VersionRequest { version };
    VersionResponse { version, runtime_name, runtime_version, runtime_api_version };
    DnsConfig { servers, searches, options };
    PortMapping { protocol, container_port, host_port, host_ip };
    Mount { container_path, host_path, readonly, selinux_relabel, propagation, uid_mappings, gid_mappings, recursive_read_only, image } + { image_sub_path };
    IdMapping { host_id, container_id, length };
    UserNamespace { mode, uids, gids };
    NamespaceOption { network, pid, ipc, target_id, userns_options };
    Int64Value { value };
    LinuxSandboxSecurityContext { namespace_options, selinux_options, run_as_user, readonly_rootfs, supplemental_groups, privileged, seccomp_profile_path, run_as_group, seccomp, apparmor, supplemental_groups_policy };
    SecurityProfile { profile_type, localhost_ref };
    LinuxPodSandboxConfig { cgroup_parent, security_context, sysctls, overhead, resources };
    PodSandboxMetadata { name, uid, namespace, attempt };
    PodSandboxConfig { metadata, hostname, log_directory, dns_config, port_mappings, labels, annotations, linux, windows };
    RunPodSandboxRequest { config, runtime_handler };
    RunPodSandboxResponse { pod_sandbox_id };
    StopPodSandboxRequest { pod_sandbox_id };
    StopPodSandboxResponse {};
    RemovePodSandboxRequest { pod_sandbox_id };
    RemovePodSandboxResponse {};
    PodSandboxStatusRequest { pod_sandbox_id, verbose };
    PodIp { ip };
    PodSandboxNetworkStatus { ip, additional_ips };
    Namespace { options };
    LinuxPodSandboxStatus { namespaces };
    PodSandboxStatus { id, metadata, state, created_at, network, linux, labels, annotations, runtime_handler };
    PodSandboxStatusResponse { status, info, containers_statuses, timestamp };
    PodSandboxStateValue { state };
    PodSandboxFilter { id, state, label_selector };
    ListPodSandboxRequest { filter };
    PodSandbox { id, metadata, state, created_at, labels, annotations, runtime_handler };
    ListPodSandboxResponse { items };
    PodSandboxStatsRequest { pod_sandbox_id };
    PodSandboxStatsResponse { stats };
    PodSandboxStatsFilter { id, label_selector };
    ListPodSandboxStatsRequest { filter };
    ListPodSandboxStatsResponse { stats };
    PodSandboxAttributes { id, metadata, labels, annotations };
    PodSandboxStats { attributes, linux, windows };
    LinuxPodSandboxStats { cpu, memory, network, process, containers } + { io };
    WindowsPodSandboxStats { cpu, memory, network, process, containers };
    NetworkUsage { timestamp, default_interface, interfaces };
    WindowsNetworkUsage { timestamp, default_interface, interfaces };
    NetworkInterfaceUsage { name, rx_bytes, rx_errors, tx_bytes, tx_errors };
    WindowsNetworkInterfaceUsage { name, rx_bytes, rx_packets_dropped, tx_bytes, tx_packets_dropped };
    ProcessUsage { timestamp, process_count };
    WindowsProcessUsage { timestamp, process_count };
    ImageSpec { image, annotations, user_specified_image, runtime_handler } + { image_ref };
    KeyValue { key, value };
    LinuxContainerResources { cpu_period, cpu_quota, cpu_shares, memory_limit_in_bytes, oom_score_adj, cpuset_cpus, cpuset_mems, hugepage_limits, unified, memory_swap_limit_in_bytes };
    HugepageLimit { page_size, limit };
    SeLinuxOption { user, role, r#type, level };
    Capability { add_capabilities, drop_capabilities, add_ambient_capabilities };
    LinuxContainerSecurityContext { capabilities, privileged, namespace_options, selinux_options, run_as_user, run_as_username, readonly_rootfs, supplemental_groups, apparmor_profile, seccomp_profile_path, no_new_privs, run_as_group, masked_paths, readonly_paths, seccomp, apparmor, supplemental_groups_policy };
    LinuxContainerConfig { resources, security_context };
    LinuxContainerUser { uid, gid, supplemental_groups };
    WindowsNamespaceOption { network };
    WindowsSandboxSecurityContext { run_as_username, credential_spec, host_process, namespace_options };
    WindowsPodSandboxConfig { security_context };
    WindowsContainerSecurityContext { run_as_username, credential_spec, host_process };
    WindowsContainerConfig { resources, security_context };
    WindowsContainerResources { cpu_shares, cpu_count, cpu_maximum, memory_limit_in_bytes, rootfs_size_in_bytes, affinity_cpus };
    WindowsCpuGroupAffinity { cpu_mask, cpu_group };
    ContainerMetadata { name, attempt };
    Device { container_path, host_path, permissions };
    CdiDevice { name };
    ContainerConfig { metadata, image, command, args, working_dir, envs, mounts, devices, labels, annotations, log_path, stdin, stdin_once, tty, linux, windows, cdi_devices } + { stop_signal };
    CreateContainerRequest { pod_sandbox_id, config, sandbox_config };
    CreateContainerResponse { container_id };
    StartContainerRequest { container_id };
    StartContainerResponse {};
    StopContainerRequest { container_id, timeout };
    StopContainerResponse {};
    RemoveContainerRequest { container_id };
    RemoveContainerResponse {};
    ContainerStateValue { state };
    ContainerFilter { id, state, pod_sandbox_id, label_selector };
    ListContainersRequest { filter };
    Container { id, pod_sandbox_id, metadata, image, image_ref, state, created_at, labels, annotations, image_id };
    ListContainersResponse { containers };
    ContainerStatusRequest { container_id, verbose };
    ContainerStatus { id, metadata, state, created_at, started_at, finished_at, exit_code, image, image_ref, reason, message, labels, annotations, mounts, log_path, resources, image_id, user } + { stop_signal };
    ContainerStatusResponse { status, info };
    ContainerResources { linux, windows };
    ContainerUser { linux };
    UpdateContainerResourcesRequest { container_id, linux, windows, annotations };
    UpdateContainerResourcesResponse {};
    ExecSyncRequest { container_id, cmd, timeout };
    ExecSyncResponse { stdout, stderr, exit_code };
    ExecRequest { container_id, cmd, tty, stdin, stdout, stderr };
    ExecResponse { url };
    AttachRequest { container_id, stdin, tty, stdout, stderr };
    AttachResponse { url };
    PortForwardRequest { pod_sandbox_id, port };
    PortForwardResponse { url };
    ImageFilter { image };
    ListImagesRequest { filter };
    Image { id, repo_tags, repo_digests, size, uid, username, spec, pinned };
    ListImagesResponse { images };
    ImageStatusRequest { image, verbose };
    ImageStatusResponse { image, info };
    AuthConfig { username, password, auth, server_address, identity_token, registry_token };
    PullImageRequest { image, auth, sandbox_config };
    PullImageResponse { image_ref };
    RemoveImageRequest { image };
    RemoveImageResponse {};
    NetworkConfig { pod_cidr };
    RuntimeConfig { network_config };
    UpdateRuntimeConfigRequest { runtime_config };
    UpdateRuntimeConfigResponse {};
    RuntimeCondition { r#type, status, reason, message };
    RuntimeStatus { conditions };
    StatusRequest { verbose };
    RuntimeHandlerFeatures { recursive_read_only_mounts, user_namespaces };
    RuntimeHandler { name, features };
    RuntimeFeatures { supplemental_groups_policy } + { user_namespaces_host_network };
    StatusResponse { status, info, runtime_handlers, features };
    ImageFsInfoRequest {};
    UInt64Value { value };
    FilesystemIdentifier { mountpoint };
    FilesystemUsage { timestamp, fs_id, used_bytes, inodes_used };
    WindowsFilesystemUsage { timestamp, fs_id, used_bytes };
    ImageFsInfoResponse { image_filesystems, container_filesystems };
    ContainerStatsRequest { container_id };
    ContainerStatsResponse { stats };
    ListContainerStatsRequest { filter };
    ContainerStatsFilter { id, pod_sandbox_id, label_selector };
    ListContainerStatsResponse { stats };
    ContainerAttributes { id, metadata, labels, annotations };
    ContainerStats { attributes, cpu, memory, writable_layer, swap } + { io };
    WindowsContainerStats { attributes, cpu, memory, writable_layer };
    CpuUsage { timestamp, usage_core_nano_seconds, usage_nano_cores } + { psi };
    WindowsCpuUsage { timestamp, usage_core_nano_seconds, usage_nano_cores };
    MemoryUsage { timestamp, working_set_bytes, available_bytes, usage_bytes, rss_bytes, page_faults, major_page_faults } + { psi };
    SwapUsage { timestamp, swap_available_bytes, swap_usage_bytes };
    WindowsMemoryUsage { timestamp, working_set_bytes, available_bytes, page_faults, commit_memory_bytes };
    ReopenContainerLogRequest { container_id };
    ReopenContainerLogResponse {};
    CheckpointContainerRequest { container_id, location, timeout };
    CheckpointContainerResponse {};
    GetEventsRequest {};
    ContainerEventResponse { container_id, container_event_type, created_at, pod_sandbox_status, containers_statuses };
    ListMetricDescriptorsRequest {};
    ListMetricDescriptorsResponse { descriptors };
    MetricDescriptor { name, help, label_keys };
    ListPodSandboxMetricsRequest {};
    ListPodSandboxMetricsResponse { pod_metrics };
    PodSandboxMetrics { pod_sandbox_id, metrics, container_metrics };
    ContainerMetrics { container_id, metrics };
    Metric { name, timestamp, metric_type, label_values, value };
    RuntimeConfigRequest {};
    RuntimeConfigResponse { linux };
    LinuxRuntimeConfiguration { cgroup_driver };
}

our_messages! {
    StreamPodSandboxesRequest { filter };
    StreamPodSandboxesResponse { pod_sandboxes };
    StreamPodSandboxStatsRequest { filter };
    StreamPodSandboxStatsResponse { pod_sandbox_stats };
    StreamContainersRequest { filter };
    StreamContainersResponse { containers };
    StreamImagesRequest { filter };
    StreamImagesResponse { images };
    StreamContainerStatsRequest { filter };
    StreamContainerStatsResponse { container_stats };
    PsiStats { full, some };
    PsiData { total, avg10, avg60, avg300 };
    IoUsage { timestamp, psi };
    StreamPodSandboxMetricsRequest {};
    StreamPodSandboxMetricsResponse { pod_sandbox_metrics };
    UpdatePodSandboxResourcesRequest { pod_sandbox_id, overhead, resources };
    UpdatePodSandboxResourcesResponse {};
}

/// Fields and messages newer than Kubernetes 1.32, with their upstream numbers.
macro_rules! field_numbers {
    ($( $name:ident { $($f:ident = $n:literal),* } ;)*) => {
        /// Encodes each listed field alone and checks the number in its key.
        #[allow(clippy::field_reassign_with_default)]
        fn check_field_numbers() -> usize {
            let mut checked = 0;
            $($(
                let mut g = Gen::new(0, false);
                let mut m = ours::$name::default();
                m.$f = Fill::fill(&mut g);
                let bytes = m.encode_to_vec();
                let key = prost::encoding::decode_varint(&mut bytes.as_slice()).unwrap();
                assert_eq!(key >> 3, $n, "{}.{}", stringify!($name), stringify!($f));
                checked += 1;
            )*)*
            checked
        }
    };
}

field_numbers! {
    Mount { image_sub_path = 10 };
    LinuxPodSandboxStats { io = 6 };
    ImageSpec { image_ref = 20 };
    ContainerConfig { stop_signal = 18 };
    ContainerStatus { stop_signal = 19 };
    RuntimeFeatures { user_namespaces_host_network = 2 };
    ContainerStats { io = 6 };
    CpuUsage { psi = 4 };
    MemoryUsage { psi = 8 };
    StreamPodSandboxesRequest { filter = 1 };
    StreamPodSandboxesResponse { pod_sandboxes = 1 };
    StreamPodSandboxStatsRequest { filter = 1 };
    StreamPodSandboxStatsResponse { pod_sandbox_stats = 1 };
    StreamContainersRequest { filter = 1 };
    StreamContainersResponse { containers = 1 };
    StreamImagesRequest { filter = 1 };
    StreamImagesResponse { images = 1 };
    StreamContainerStatsRequest { filter = 1 };
    StreamContainerStatsResponse { container_stats = 1 };
    PsiStats { full = 1, some = 2 };
    PsiData { total = 1, avg10 = 2, avg60 = 3, avg300 = 4 };
    IoUsage { timestamp = 1, psi = 2 };
    StreamPodSandboxMetricsResponse { pod_sandbox_metrics = 1 };
    UpdatePodSandboxResourcesRequest { pod_sandbox_id = 1, overhead = 2, resources = 3 };
}

/// Streaming responses/requests have the same shape as their List counterparts
/// in `k8s-cri`: encode ours, decode theirs, compare the one field.
macro_rules! same_shape {
    ($( $ours:ident . $of:ident ~ $theirs:ident . $tf:ident ;)*) => {
        fn check_same_shape() -> usize {
            let mut checked = 0;
            $(
                for pass in 0..PASSES {
                    let mut g = Gen::new(pass, true);
                    let a = ours::$ours { $of: Fill::fill(&mut g) };
                    let b = theirs::$theirs::decode(a.encode_to_vec().as_slice()).unwrap();
                    a.$of.same(&b.$tf, stringify!($ours)).unwrap();
                }
                checked += 1;
            )*
            checked
        }
    };
}

same_shape! {
    StreamPodSandboxesRequest.filter ~ ListPodSandboxRequest.filter;
    StreamPodSandboxesResponse.pod_sandboxes ~ ListPodSandboxResponse.items;
    StreamContainersRequest.filter ~ ListContainersRequest.filter;
    StreamContainersResponse.containers ~ ListContainersResponse.containers;
    StreamContainerStatsRequest.filter ~ ListContainerStatsRequest.filter;
    StreamContainerStatsResponse.container_stats ~ ListContainerStatsResponse.stats;
    StreamPodSandboxStatsRequest.filter ~ ListPodSandboxStatsRequest.filter;
    StreamPodSandboxStatsResponse.pod_sandbox_stats ~ ListPodSandboxStatsResponse.stats;
    StreamPodSandboxMetricsResponse.pod_sandbox_metrics ~ ListPodSandboxMetricsResponse.pod_metrics;
    StreamImagesRequest.filter ~ ListImagesRequest.filter;
    StreamImagesResponse.images ~ ListImagesResponse.images;
}

/// Enumerations both crates define: same value ↔ name table.
macro_rules! same_enums {
    ($( $($seg:ident)::+ ),* $(,)?) => {
        fn check_enums() -> usize {
            let mut checked = 0;
            $(
                for v in -1..100 {
                    let a = ours::$($seg)::+::try_from(v).ok().map(|e| e.as_str_name());
                    let b = theirs::$($seg)::+::try_from(v).ok().map(|e| e.as_str_name());
                    assert_eq!(a, b, "{} = {v}", stringify!($($seg)::+));
                }
                checked += 1;
            )*
            checked
        }
    };
}

same_enums!(
    Protocol,
    MountPropagation,
    NamespaceMode,
    SupplementalGroupsPolicy,
    security_profile::ProfileType,
    PodSandboxState,
    ContainerState,
    ContainerEventType,
    MetricType,
    CgroupDriver,
);

/// Both directions, every pass: fill both sides identically, compare by name,
/// compare encodings, decode each side's bytes with the other crate.
fn check_shared<A, B>(name: &str)
where
    A: Fill + Message + Default + PartialEq + Debug + Same<B>,
    B: Fill + Message + Default + PartialEq + Debug,
{
    for pass in 0..PASSES {
        let ctx = format!("{name} (pass {pass})");
        let mut ga = Gen::new(pass, true);
        let a = A::fill(&mut ga);
        let mut gb = Gen::new(pass, true);
        let b = B::fill(&mut gb);
        assert_eq!(
            ga.n, gb.n,
            "{ctx}: the two fills consumed different value counts"
        );
        a.same(&b, name)
            .unwrap_or_else(|e| panic!("{ctx}: fills differ: {e}"));

        let a_bytes = a.encode_to_vec();
        let b_bytes = b.encode_to_vec();
        if pass == 0 && ga.n > 0 {
            assert!(
                !a_bytes.is_empty(),
                "{ctx}: a fully set message encoded to nothing"
            );
        }
        assert_eq!(
            a_bytes.len(),
            b_bytes.len(),
            "{ctx}: encoded lengths differ"
        );
        if ga.canonical() {
            assert_eq!(a_bytes, b_bytes, "{ctx}: encodings differ");
        }

        // ours -> k8s-cri -> ours
        let b_from_a = B::decode(a_bytes.as_slice())
            .unwrap_or_else(|e| panic!("{ctx}: k8s-cri cannot decode ours: {e}"));
        a.same(&b_from_a, name)
            .unwrap_or_else(|e| panic!("{ctx}: ours -> k8s-cri: {e}"));
        let again = b_from_a.encode_to_vec();
        if ga.canonical() {
            assert_eq!(again, a_bytes, "{ctx}: k8s-cri re-encodes ours differently");
        }
        assert_eq!(
            A::decode(again.as_slice()).unwrap(),
            a,
            "{ctx}: ours -> k8s-cri -> ours"
        );

        // k8s-cri -> ours -> k8s-cri
        let a_from_b = A::decode(b_bytes.as_slice())
            .unwrap_or_else(|e| panic!("{ctx}: we cannot decode k8s-cri's: {e}"));
        a_from_b
            .same(&b, name)
            .unwrap_or_else(|e| panic!("{ctx}: k8s-cri -> ours: {e}"));
        let again = a_from_b.encode_to_vec();
        if ga.canonical() {
            assert_eq!(again, b_bytes, "{ctx}: we re-encode k8s-cri's differently");
        }
        assert_eq!(
            B::decode(again.as_slice()).unwrap(),
            b,
            "{ctx}: k8s-cri -> ours -> k8s-cri"
        );
    }
}

/// Our own round trip with every field set, including those newer than 1.32.
fn check_ours<A>(name: &str)
where
    A: Fill + Message + Default + PartialEq + Debug,
{
    for pass in 0..PASSES {
        let mut g = Gen::new(pass, false);
        let a = A::fill(&mut g);
        let bytes = a.encode_to_vec();
        let back =
            A::decode(bytes.as_slice()).unwrap_or_else(|e| panic!("{name} (pass {pass}): {e}"));
        assert_eq!(back, a, "{name} (pass {pass})");
        if g.canonical() {
            assert_eq!(back.encode_to_vec(), bytes, "{name} (pass {pass})");
        }
    }
}

/// Containers sent pre-encoded (their state appended after the other fields), alone or as a
/// whole earlier answer's bytes, decode in k8s-cri exactly like containers encoded the usual
/// way.
#[test]
fn pre_encoded_containers_decode_in_k8s_cri() {
    for pass in 0..PASSES {
        let mut g = Gen::new(pass, true);
        let containers: Vec<ours::Container> = (0..4)
            .map(|i| ours::Container {
                state: i,
                ..Fill::fill(&mut g)
            })
            .collect();
        let plain = ours::ListContainersResponse {
            containers: containers.clone(),
            ..Default::default()
        };
        // Half encoded one by one, half as the bytes of a whole earlier answer.
        let earlier = ours::ListContainersResponse {
            encoded: containers[2..]
                .iter()
                .map(|c| ours::EncodedContainer::new(c).with_state(c.state))
                .collect(),
            ..Default::default()
        };
        let pre = ours::ListContainersResponse {
            containers: Vec::new(),
            encoded: containers[..2]
                .iter()
                .map(|c| ours::EncodedContainer::new(c).with_state(c.state))
                .collect(),
            raw: earlier.to_bytes(),
        };
        let theirs_plain = theirs::ListContainersResponse::decode(plain.encode_to_vec().as_slice())
            .expect("plain decodes");
        let theirs_pre = theirs::ListContainersResponse::decode(pre.encode_to_vec().as_slice())
            .expect("pre-encoded decodes");
        assert_eq!(theirs_pre, theirs_plain, "pass {pass}");
        containers
            .same(&theirs_pre.containers, "ListContainersResponse.encoded")
            .unwrap();
    }
}

#[test]
fn shared_messages_are_wire_compatible_with_k8s_cri() {
    check_all_shared();
}

#[test]
fn all_messages_round_trip_with_newer_fields_set() {
    check_all_shared_ours();
    check_all_ours_only();
}

#[test]
fn newer_fields_have_upstream_numbers() {
    assert_eq!(check_field_numbers(), 31);
    assert_eq!(check_same_shape(), 11);
}

#[test]
fn enums_match_k8s_cri() {
    assert_eq!(check_enums(), 10);
    // Signal (newer than 1.32): RUNTIME_DEFAULT = 0 .. SIGRTMAX = 65, contiguous.
    for v in 0..=65 {
        assert!(ours::Signal::try_from(v).is_ok(), "Signal {v}");
    }
    assert!(ours::Signal::try_from(66).is_err());
    assert_eq!(ours::Signal::RuntimeDefault as i32, 0);
    assert_eq!(ours::Signal::Sigkill as i32, 13);
    assert_eq!(ours::Signal::Sigterm as i32, 23);
    assert_eq!(
        ours::Signal::from_str_name("SIGRTMAX"),
        Some(ours::Signal::Sigrtmax)
    );
    assert_eq!(ours::Signal::Sigrtmax as i32, 65);
}

/// Top-level message names declared in the proto, lowercased.
fn proto_messages() -> BTreeSet<String> {
    PROTO
        .lines()
        .filter_map(|l| l.strip_prefix("message "))
        .map(|l| l.split_whitespace().next().unwrap().to_lowercase())
        .collect()
}

#[test]
fn every_message_is_covered() {
    // Rust type names differ from proto names only in case (DNSConfig -> DnsConfig).
    let covered: BTreeSet<String> = SHARED
        .iter()
        .chain(OURS_ONLY)
        .map(|n| n.to_lowercase())
        .collect();
    assert_eq!(
        covered.len(),
        SHARED.len() + OURS_ONLY.len(),
        "a message is listed twice"
    );
    assert_eq!(proto_messages(), covered);
    assert_eq!(SHARED.len(), 153);
    assert_eq!(OURS_ONLY.len(), 17);
}

/// RPC names of one service in the proto, in order.
fn proto_rpcs(service: &str) -> Vec<String> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in PROTO.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("service ") {
            inside = rest.split_whitespace().next() == Some(service);
        } else if inside && line == "}" {
            inside = false;
        } else if let Some(rest) = line.strip_prefix("rpc ").filter(|_| inside) {
            out.push(snake(rest.split('(').next().unwrap().trim()));
        }
    }
    out
}

/// `PodSandboxStatus` -> `pod_sandbox_status`, as tonic names methods.
fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[test]
fn services_have_every_rpc() {
    let runtime = proto_rpcs("RuntimeService");
    let image = proto_rpcs("ImageService");
    assert_eq!(runtime.len(), 35, "{runtime:?}");
    assert_eq!(image.len(), 6, "{image:?}");
    // The fake server below implements the generated traits, so the compiler
    // already holds it to exactly the generated methods; its lists must match.
    assert_eq!(runtime, RUNTIME_RPCS);
    assert_eq!(image, IMAGE_RPCS);
}

// ---------------------------------------------------------------------------
// A live gRPC check: k8s-cri's client and ours against our generated server.
// ---------------------------------------------------------------------------

type RpcFuture<'a, T> = Pin<Box<dyn Future<Output = Result<Response<T>, Status>> + Send + 'a>>;
type RpcStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Server whose handlers answer `FailedPrecondition(<method name>)`, so a
/// client can tell that its call reached exactly that handler (a wrong path
/// gets tonic's `Unimplemented` instead). GetContainerEvents streams two events.
struct Fake;

/// Two container events, filled like [`check_shared`] fills them.
fn events() -> Vec<ours::ContainerEventResponse> {
    (1..=2)
        .map(|pass| ours::ContainerEventResponse::fill(&mut Gen::new(pass, true)))
        .collect()
}

// The methods are written in the form `#[async_trait]` expands to, so that a
// macro can generate them (attribute macros do not see into macro calls).
macro_rules! fake_service {
    ($trait_:path, $names:ident { $( $kind:ident $method:ident($req:ident) -> $resp:ident $(as $stream:ident)?; )* }) => {
        impl $trait_ for Fake {
            $(fake_service!(@item $kind $method $req $resp $($stream)?);)*
        }
        /// Method names the fake implements, in proto order.
        const $names: &[&str] = &[$(stringify!($method)),*];
    };
    (@item unary $method:ident $req:ident $resp:ident) => {
        fn $method<'life0, 'async_trait>(
            &'life0 self,
            _request: Request<ours::$req>,
        ) -> RpcFuture<'async_trait, ours::$resp>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async { Err(Status::failed_precondition(stringify!($method))) })
        }
    };
    (@item stream $method:ident $req:ident $resp:ident $stream:ident) => {
        type $stream = RpcStream<ours::$resp>;
        fn $method<'life0, 'async_trait>(
            &'life0 self,
            _request: Request<ours::$req>,
        ) -> RpcFuture<'async_trait, Self::$stream>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async { Err(Status::failed_precondition(stringify!($method))) })
        }
    };
    (@item events $method:ident $req:ident $resp:ident $stream:ident) => {
        type $stream = RpcStream<ours::$resp>;
        fn $method<'life0, 'async_trait>(
            &'life0 self,
            _request: Request<ours::$req>,
        ) -> RpcFuture<'async_trait, Self::$stream>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            let stream: Self::$stream = Box::pin(tokio_stream::iter(events().into_iter().map(Ok)));
            Box::pin(async { Ok(Response::new(stream)) })
        }
    };
}

fake_service!(ours::runtime_service_server::RuntimeService, RUNTIME_RPCS {
    unary version(VersionRequest) -> VersionResponse;
    unary run_pod_sandbox(RunPodSandboxRequest) -> RunPodSandboxResponse;
    unary stop_pod_sandbox(StopPodSandboxRequest) -> StopPodSandboxResponse;
    unary remove_pod_sandbox(RemovePodSandboxRequest) -> RemovePodSandboxResponse;
    unary pod_sandbox_status(PodSandboxStatusRequest) -> PodSandboxStatusResponse;
    unary list_pod_sandbox(ListPodSandboxRequest) -> ListPodSandboxResponse;
    stream stream_pod_sandboxes(StreamPodSandboxesRequest) -> StreamPodSandboxesResponse as StreamPodSandboxesStream;
    unary create_container(CreateContainerRequest) -> CreateContainerResponse;
    unary start_container(StartContainerRequest) -> StartContainerResponse;
    unary stop_container(StopContainerRequest) -> StopContainerResponse;
    unary remove_container(RemoveContainerRequest) -> RemoveContainerResponse;
    unary list_containers(ListContainersRequest) -> ListContainersResponse;
    stream stream_containers(StreamContainersRequest) -> StreamContainersResponse as StreamContainersStream;
    unary container_status(ContainerStatusRequest) -> ContainerStatusResponse;
    unary update_container_resources(UpdateContainerResourcesRequest) -> UpdateContainerResourcesResponse;
    unary reopen_container_log(ReopenContainerLogRequest) -> ReopenContainerLogResponse;
    unary exec_sync(ExecSyncRequest) -> ExecSyncResponse;
    unary exec(ExecRequest) -> ExecResponse;
    unary attach(AttachRequest) -> AttachResponse;
    unary port_forward(PortForwardRequest) -> PortForwardResponse;
    unary container_stats(ContainerStatsRequest) -> ContainerStatsResponse;
    unary list_container_stats(ListContainerStatsRequest) -> ListContainerStatsResponse;
    stream stream_container_stats(StreamContainerStatsRequest) -> StreamContainerStatsResponse as StreamContainerStatsStream;
    unary pod_sandbox_stats(PodSandboxStatsRequest) -> PodSandboxStatsResponse;
    unary list_pod_sandbox_stats(ListPodSandboxStatsRequest) -> ListPodSandboxStatsResponse;
    stream stream_pod_sandbox_stats(StreamPodSandboxStatsRequest) -> StreamPodSandboxStatsResponse as StreamPodSandboxStatsStream;
    unary update_runtime_config(UpdateRuntimeConfigRequest) -> UpdateRuntimeConfigResponse;
    unary status(StatusRequest) -> StatusResponse;
    unary checkpoint_container(CheckpointContainerRequest) -> CheckpointContainerResponse;
    events get_container_events(GetEventsRequest) -> ContainerEventResponse as GetContainerEventsStream;
    unary list_metric_descriptors(ListMetricDescriptorsRequest) -> ListMetricDescriptorsResponse;
    unary list_pod_sandbox_metrics(ListPodSandboxMetricsRequest) -> ListPodSandboxMetricsResponse;
    stream stream_pod_sandbox_metrics(StreamPodSandboxMetricsRequest) -> StreamPodSandboxMetricsResponse as StreamPodSandboxMetricsStream;
    unary runtime_config(RuntimeConfigRequest) -> RuntimeConfigResponse;
    unary update_pod_sandbox_resources(UpdatePodSandboxResourcesRequest) -> UpdatePodSandboxResourcesResponse;
});

fake_service!(ours::image_service_server::ImageService, IMAGE_RPCS {
    unary list_images(ListImagesRequest) -> ListImagesResponse;
    stream stream_images(StreamImagesRequest) -> StreamImagesResponse as StreamImagesStream;
    unary image_status(ImageStatusRequest) -> ImageStatusResponse;
    unary pull_image(PullImageRequest) -> PullImageResponse;
    unary remove_image(RemoveImageRequest) -> RemoveImageResponse;
    unary image_fs_info(ImageFsInfoRequest) -> ImageFsInfoResponse;
});

/// Calls each method with a default request and checks that our handler of
/// the same name answered. Returns the method names called.
macro_rules! expect_handlers {
    ($client:ident, $api:ident; $($method:ident($req:ident)),* $(,)?) => {{
        $(
            match $client.$method($api::$req::default()).await {
                Ok(_) => panic!("{}: unexpected success", stringify!($method)),
                Err(status) => assert_eq!(
                    (status.code(), status.message()),
                    (Code::FailedPrecondition, stringify!($method)),
                    "{} did not reach our handler",
                    stringify!($method),
                ),
            }
        )*
        vec![$(stringify!($method)),*]
    }};
}

#[tokio::test]
async fn grpc_paths_match_k8s_cri_and_every_client_method_works() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ours::runtime_service_server::RuntimeServiceServer::new(
                Fake,
            ))
            .add_service(ours::image_service_server::ImageServiceServer::new(Fake))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    // k8s-cri's client (Kubernetes 1.32 RPCs) reaches the handler of the same name.
    let mut rt = theirs::runtime_service_client::RuntimeServiceClient::connect(url.clone())
        .await
        .unwrap();
    let mut img = theirs::image_service_client::ImageServiceClient::connect(url.clone())
        .await
        .unwrap();
    let theirs_runtime = expect_handlers!(rt, theirs;
        version(VersionRequest),
        run_pod_sandbox(RunPodSandboxRequest),
        stop_pod_sandbox(StopPodSandboxRequest),
        remove_pod_sandbox(RemovePodSandboxRequest),
        pod_sandbox_status(PodSandboxStatusRequest),
        list_pod_sandbox(ListPodSandboxRequest),
        create_container(CreateContainerRequest),
        start_container(StartContainerRequest),
        stop_container(StopContainerRequest),
        remove_container(RemoveContainerRequest),
        list_containers(ListContainersRequest),
        container_status(ContainerStatusRequest),
        update_container_resources(UpdateContainerResourcesRequest),
        reopen_container_log(ReopenContainerLogRequest),
        exec_sync(ExecSyncRequest),
        exec(ExecRequest),
        attach(AttachRequest),
        port_forward(PortForwardRequest),
        container_stats(ContainerStatsRequest),
        list_container_stats(ListContainerStatsRequest),
        pod_sandbox_stats(PodSandboxStatsRequest),
        list_pod_sandbox_stats(ListPodSandboxStatsRequest),
        update_runtime_config(UpdateRuntimeConfigRequest),
        status(StatusRequest),
        checkpoint_container(CheckpointContainerRequest),
        list_metric_descriptors(ListMetricDescriptorsRequest),
        list_pod_sandbox_metrics(ListPodSandboxMetricsRequest),
        runtime_config(RuntimeConfigRequest),
    );
    let theirs_image = expect_handlers!(img, theirs;
        list_images(ListImagesRequest),
        image_status(ImageStatusRequest),
        pull_image(PullImageRequest),
        remove_image(RemoveImageRequest),
        image_fs_info(ImageFsInfoRequest),
    );
    assert_eq!(
        theirs_runtime.len() + 1,
        29,
        "plus get_container_events below"
    );
    assert_eq!(theirs_image.len(), 5);

    // Server streaming: k8s-cri decodes the events our server sends.
    let mut stream = rt
        .get_container_events(theirs::GetEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    for (pass, sent) in (1..=2).zip(events()) {
        let got = stream.message().await.unwrap().expect("two events");
        sent.same(&got, "ContainerEventResponse").unwrap();
        assert_eq!(
            got,
            theirs::ContainerEventResponse::fill(&mut Gen::new(pass, true))
        );
    }
    assert!(stream.message().await.unwrap().is_none());

    // Our client: every generated method, in proto order.
    let mut rt = ours::runtime_service_client::RuntimeServiceClient::connect(url.clone())
        .await
        .unwrap();
    let mut img = ours::image_service_client::ImageServiceClient::connect(url)
        .await
        .unwrap();
    let mut ours_runtime = expect_handlers!(rt, ours;
        version(VersionRequest),
        run_pod_sandbox(RunPodSandboxRequest),
        stop_pod_sandbox(StopPodSandboxRequest),
        remove_pod_sandbox(RemovePodSandboxRequest),
        pod_sandbox_status(PodSandboxStatusRequest),
        list_pod_sandbox(ListPodSandboxRequest),
        stream_pod_sandboxes(StreamPodSandboxesRequest),
        create_container(CreateContainerRequest),
        start_container(StartContainerRequest),
        stop_container(StopContainerRequest),
        remove_container(RemoveContainerRequest),
        list_containers(ListContainersRequest),
        stream_containers(StreamContainersRequest),
        container_status(ContainerStatusRequest),
        update_container_resources(UpdateContainerResourcesRequest),
        reopen_container_log(ReopenContainerLogRequest),
        exec_sync(ExecSyncRequest),
        exec(ExecRequest),
        attach(AttachRequest),
        port_forward(PortForwardRequest),
        container_stats(ContainerStatsRequest),
        list_container_stats(ListContainerStatsRequest),
        stream_container_stats(StreamContainerStatsRequest),
        pod_sandbox_stats(PodSandboxStatsRequest),
        list_pod_sandbox_stats(ListPodSandboxStatsRequest),
        stream_pod_sandbox_stats(StreamPodSandboxStatsRequest),
        update_runtime_config(UpdateRuntimeConfigRequest),
        status(StatusRequest),
        checkpoint_container(CheckpointContainerRequest),
    );
    let mut events_seen = 0;
    let mut stream = rt
        .get_container_events(ours::GetEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    while let Some(event) = stream.message().await.unwrap() {
        assert_eq!(event, events()[events_seen]);
        events_seen += 1;
    }
    assert_eq!(events_seen, 2);
    ours_runtime.push("get_container_events");
    ours_runtime.extend(expect_handlers!(rt, ours;
        list_metric_descriptors(ListMetricDescriptorsRequest),
        list_pod_sandbox_metrics(ListPodSandboxMetricsRequest),
        stream_pod_sandbox_metrics(StreamPodSandboxMetricsRequest),
        runtime_config(RuntimeConfigRequest),
        update_pod_sandbox_resources(UpdatePodSandboxResourcesRequest),
    ));
    let ours_image = expect_handlers!(img, ours;
        list_images(ListImagesRequest),
        stream_images(StreamImagesRequest),
        image_status(ImageStatusRequest),
        pull_image(PullImageRequest),
        remove_image(RemoveImageRequest),
        image_fs_info(ImageFsInfoRequest),
    );
    assert_eq!(ours_runtime, proto_rpcs("RuntimeService"));
    assert_eq!(ours_image, proto_rpcs("ImageService"));

    server.abort();
}
