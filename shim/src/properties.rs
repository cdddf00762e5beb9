//! Hostile input, as properties (issue 29): random CRI configs, with empty, `..`, NUL, huge
//! and negative values, through every conversion from a CRI message to an OCI spec, and
//! random or cut-short bytes through the record decoder. Nothing may panic: a config either
//! becomes a spec runc can be handed, or is refused with the code api.proto or the node
//! implies. 256 cases per property keep the whole module to a few seconds.

use std::collections::HashMap;
use std::path::{Component, Path};

use cri_api::v1 as cri;
use oci_spec::runtime::Spec;
use proptest::collection::{hash_map, vec};
use proptest::option;
use proptest::prelude::*;
use runtime_backends::ImageConfig;
use tonic::Code;

use crate::container::spec::{container_request, exec_process, rendered, ContainerSpecInput};
use crate::container::ContainerRecordFile;
use crate::domain::{ContainerConfig, SandboxConfig};
use crate::error::Error;
use crate::sandbox::spec::{self as pause_spec, SandboxSpecInput};
use crate::sandbox::SandboxRecord;
use crate::security::{test_host, HostSecurity, SpecError};
use crate::store::{ContainerMeta, ContainerStatus, SandboxMeta, SandboxState, SandboxStatus};

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1001:1001::/app:/bin/sh\n";
const GROUP: &str = "root:x:0:\napp:x:1001:\n";

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        // A failure is reported with its minimal input; shrinking longer is not worth it.
        max_shrink_iters: 512,
        ..ProptestConfig::default()
    }
}

/// Strings a hostile or broken client sends: empty, traversal, NUL, control characters,
/// unicode, 64 KiB, and ordinary-looking ones.
fn hostile() -> BoxedStrategy<String> {
    prop_oneof![
        2 => Just(String::new()),
        1 => Just("..".to_string()),
        1 => Just("/".to_string()),
        1 => Just("a\0b".to_string()),
        1 => Just("/../../etc/shadow".to_string()),
        1 => Just("x".repeat(64 * 1024)),
        3 => "[a-z0-9._/-]{1,16}",
        2 => "\\PC{0,12}",
        1 => "[\\x00-\\x1f]{1,4}",
    ]
    .boxed()
}

/// Free text: mostly what kubelet sends, sometimes hostile. Each field is valid more often
/// than not, so that a good share of whole configs gets through conversion to the spec
/// builders, where the rest of the hostile values are met.
fn text() -> BoxedStrategy<String> {
    prop_oneof![6 => "[a-z0-9][a-z0-9-]{0,11}", 1 => hostile()].boxed()
}

/// Paths: mostly clean absolute ones, often with `.`, `..` and doubled slashes, sometimes
/// relative or hostile.
fn path() -> BoxedStrategy<String> {
    let edge = prop_oneof![
        Just("/"),
        Just("//"),
        Just("/."),
        Just("/.."),
        Just("/a/.."),
        Just("/../etc"),
        Just("a/b"),
        Just(""),
    ];
    prop_oneof![
        2 => edge.prop_map(str::to_string),
        6 => "(/[a-z0-9]{1,6}){1,3}",
        2 => "/[a-z0-9./]{0,20}",
        1 => "[a-z0-9./]{1,12}",
        1 => hostile(),
    ]
    .boxed()
}

/// Mostly `Some`: a required message is present in what kubelet sends.
fn mostly<T: std::fmt::Debug + Clone + 'static>(
    value: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Option<T>> {
    prop_oneof![20 => value.prop_map(Some), 1 => Just(None)].boxed()
}

/// Mostly empty: optional lists and strings are usually not set.
fn rarely<T: std::fmt::Debug + Clone + Default + 'static>(
    value: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    prop_oneof![4 => Just(T::default()), 1 => value].boxed()
}

/// ids (uid, gid) around every boundary: negative, 0, the u32 edge, the i64 edges.
fn id() -> BoxedStrategy<i64> {
    prop_oneof![
        12 => 0i64..70_000,
        1 => Just(-1i64),
        1 => Just(u32::MAX as i64),
        1 => Just(u32::MAX as i64 + 1),
        1 => Just(i64::MIN),
        1 => Just(i64::MAX),
        1 => any::<i64>(),
    ]
    .boxed()
}

fn int64() -> impl Strategy<Value = Option<cri::Int64Value>> {
    option::of(id().prop_map(|value| cri::Int64Value { value }))
}

/// An enum on the wire: its valid values and some that are not.
fn wire_enum(valid: i32) -> BoxedStrategy<i32> {
    prop_oneof![12 => 0..valid, 1 => any::<i32>()].boxed()
}

fn resources() -> impl Strategy<Value = cri::LinuxContainerResources> {
    (
        (any::<i64>(), any::<i64>(), id(), any::<i64>(), id()),
        (rarely(text()), rarely(text())),
        rarely(vec((text(), any::<u64>()), 1..2)),
        rarely(hash_map(text(), text(), 1..2)),
        any::<i64>(),
    )
        .prop_map(
            |((period, quota, shares, memory, oom), (cpus, mems), huge, unified, swap)| {
                cri::LinuxContainerResources {
                    cpu_period: period,
                    cpu_quota: quota,
                    cpu_shares: shares,
                    memory_limit_in_bytes: memory,
                    oom_score_adj: oom,
                    cpuset_cpus: cpus,
                    cpuset_mems: mems,
                    hugepage_limits: huge
                        .into_iter()
                        .map(|(page_size, limit)| cri::HugepageLimit { page_size, limit })
                        .collect(),
                    unified,
                    memory_swap_limit_in_bytes: swap,
                }
            },
        )
}

fn namespace_option() -> impl Strategy<Value = Option<cri::NamespaceOption>> {
    let mapping =
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(host_id, container_id, length)| {
            cri::IdMapping {
                host_id,
                container_id,
                length,
            }
        });
    let userns = (wire_enum(4), vec(mapping.clone(), 0..3), vec(mapping, 0..3))
        .prop_map(|(mode, uids, gids)| cri::UserNamespace { mode, uids, gids });
    option::of(
        (
            wire_enum(4),
            wire_enum(4),
            wire_enum(4),
            text(),
            rarely(userns.prop_map(Some)),
        )
            .prop_map(|(network, pid, ipc, target_id, userns_options)| {
                cri::NamespaceOption {
                    network,
                    pid,
                    ipc,
                    target_id,
                    userns_options,
                }
            }),
    )
}

fn profile() -> impl Strategy<Value = Option<cri::SecurityProfile>> {
    rarely(
        (wire_enum(3), path()).prop_map(|(profile_type, localhost_ref)| {
            Some(cri::SecurityProfile {
                profile_type,
                localhost_ref,
            })
        }),
    )
}

fn legacy_profile() -> BoxedStrategy<String> {
    prop_oneof![
        12 => Just(String::new()),
        1 => Just("runtime/default".to_string()),
        1 => Just("unconfined".to_string()),
        1 => path().prop_map(|p| format!("localhost/{p}")),
        1 => hostile(),
    ]
    .boxed()
}

fn selinux() -> impl Strategy<Value = Option<cri::SeLinuxOption>> {
    rarely(
        (text(), text(), text(), text()).prop_map(|(user, role, r#type, level)| {
            Some(cri::SeLinuxOption {
                user,
                role,
                r#type,
                level,
            })
        }),
    )
}

/// Sysctls: namespaced and node-wide names, both spellings, and garbage.
fn sysctls() -> impl Strategy<Value = HashMap<String, String>> {
    let name = prop_oneof![
        Just("net.ipv4.ip_forward".to_string()),
        Just("net/ipv4/conf/eth0.100/rp_filter".to_string()),
        Just("kernel.shm_rmid_forced".to_string()),
        Just("kernel.panic".to_string()),
        Just("vm.overcommit_memory".to_string()),
        "(net|kernel|fs)[./][a-z0-9._/-]{0,16}",
        text(),
    ];
    rarely(hash_map(name, text(), 1..3))
}

fn sandbox_request() -> impl Strategy<Value = cri::RunPodSandboxRequest> {
    let metadata = mostly((text(), text(), text(), any::<u32>()).prop_map(
        |(name, uid, namespace, attempt)| cri::PodSandboxMetadata {
            name,
            uid,
            namespace,
            attempt,
        },
    ));
    let security = (
        (namespace_option(), selinux(), int64(), int64()),
        (any::<bool>(), any::<bool>(), vec(id(), 0..3), wire_enum(2)),
        (profile(), profile(), legacy_profile()),
    )
        .prop_map(
            |(
                (namespace_options, selinux_options, run_as_user, run_as_group),
                (readonly_rootfs, privileged, supplemental_groups, supplemental_groups_policy),
                (seccomp, apparmor, seccomp_profile_path),
            )| {
                #[allow(deprecated)]
                cri::LinuxSandboxSecurityContext {
                    namespace_options,
                    selinux_options,
                    run_as_user,
                    run_as_group,
                    readonly_rootfs,
                    supplemental_groups,
                    supplemental_groups_policy,
                    privileged,
                    seccomp,
                    apparmor,
                    seccomp_profile_path,
                }
            },
        );
    let linux = option::of(
        (
            text(),
            option::of(security),
            sysctls(),
            option::of(resources()),
            option::of(resources()),
        )
            .prop_map(
                |(cgroup_parent, security_context, sysctls, overhead, resources)| {
                    cri::LinuxPodSandboxConfig {
                        cgroup_parent,
                        security_context,
                        sysctls,
                        overhead,
                        resources,
                    }
                },
            ),
    );
    let port = (wire_enum(3), any::<i32>(), any::<i32>(), text()).prop_map(
        |(protocol, container_port, host_port, host_ip)| cri::PortMapping {
            protocol,
            container_port,
            host_port,
            host_ip,
        },
    );
    let dns = option::of(
        (vec(text(), 0..3), vec(text(), 0..3), vec(text(), 0..3)).prop_map(
            |(servers, searches, options)| cri::DnsConfig {
                servers,
                searches,
                options,
            },
        ),
    );
    (
        (metadata, text(), path(), dns),
        (rarely(vec(port, 1..3)), hash_map(text(), text(), 0..3)),
        (hash_map(text(), text(), 0..3), linux),
        prop_oneof![6 => Just(String::new()), 2 => Just("runc".to_string()), 1 => hostile()],
    )
        .prop_map(
            |(
                (metadata, hostname, log_directory, dns_config),
                (port_mappings, labels),
                (annotations, linux),
                runtime_handler,
            )| cri::RunPodSandboxRequest {
                config: Some(cri::PodSandboxConfig {
                    metadata,
                    hostname,
                    log_directory,
                    dns_config,
                    port_mappings,
                    labels,
                    annotations,
                    linux,
                    windows: None,
                }),
                runtime_handler,
            },
        )
}

fn mount() -> impl Strategy<Value = cri::Mount> {
    let image = option::of(hostile().prop_map(|image| cri::ImageSpec {
        image,
        ..Default::default()
    }));
    let mapping =
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(host_id, container_id, length)| {
            cri::IdMapping {
                host_id,
                container_id,
                length,
            }
        });
    (
        (path(), path(), any::<bool>(), any::<bool>(), wire_enum(3)),
        (
            rarely(vec(mapping, 1..2)),
            prop_oneof![6 => Just(false), 1 => Just(true)],
            prop_oneof![8 => Just(None), 1 => image],
        ),
    )
        .prop_map(
            |(
                (container_path, host_path, readonly, selinux_relabel, propagation),
                (uid_mappings, recursive_read_only, image),
            )| cri::Mount {
                container_path,
                host_path,
                readonly,
                selinux_relabel,
                propagation,
                uid_mappings,
                gid_mappings: Vec::new(),
                recursive_read_only,
                image,
                image_sub_path: String::new(),
            },
        )
}

fn device() -> impl Strategy<Value = cri::Device> {
    let host_path = prop_oneof![
        Just("/dev/fuse".to_string()),
        Just("/dev/sda".to_string()),
        path(),
    ];
    let permissions = prop_oneof![2 => Just(String::new()), 4 => "[rwm]{1,3}", 1 => hostile()];
    (path(), host_path, permissions).prop_map(|(container_path, host_path, permissions)| {
        cri::Device {
            container_path,
            host_path,
            permissions,
        }
    })
}

fn capabilities() -> impl Strategy<Value = Vec<String>> {
    let name = prop_oneof![
        Just("CAP_NET_ADMIN".to_string()),
        Just("NET_RAW".to_string()),
        Just("ALL".to_string()),
        Just("CAP_SYS_RESOURCE".to_string()),
        Just("sys_admin".to_string()),
        hostile(),
    ];
    rarely(vec(name, 1..3))
}

fn container_config() -> impl Strategy<Value = cri::ContainerConfig> {
    let metadata = mostly(
        (text(), any::<u32>()).prop_map(|(name, attempt)| cri::ContainerMetadata { name, attempt }),
    );
    let image = mostly(
        (
            prop_oneof![6 => Just("busybox".to_string()), 1 => hostile()],
            prop_oneof![16 => Just(String::new()), 1 => hostile()],
        )
            .prop_map(|(image, runtime_handler)| cri::ImageSpec {
                image,
                runtime_handler,
                ..Default::default()
            }),
    );
    let security = (
        (
            (capabilities(), capabilities(), capabilities()),
            any::<bool>(),
            namespace_option(),
            selinux(),
        ),
        (
            int64(),
            int64(),
            prop_oneof![6 => Just(String::new()), 2 => Just("app".to_string()), 1 => hostile()],
        ),
        (any::<bool>(), vec(id(), 0..3), wire_enum(2), any::<bool>()),
        (rarely(vec(path(), 1..2)), rarely(vec(path(), 1..2))),
        (profile(), profile(), legacy_profile(), legacy_profile()),
    )
        .prop_map(
            |(
                ((add, drop, ambient), privileged, namespace_options, selinux_options),
                (run_as_user, run_as_group, run_as_username),
                (readonly_rootfs, supplemental_groups, supplemental_groups_policy, no_new_privs),
                (masked_paths, readonly_paths),
                (seccomp, apparmor, apparmor_profile, seccomp_profile_path),
            )| {
                #[allow(deprecated)]
                cri::LinuxContainerSecurityContext {
                    capabilities: Some(cri::Capability {
                        add_capabilities: add,
                        drop_capabilities: drop,
                        add_ambient_capabilities: ambient,
                    }),
                    privileged,
                    namespace_options,
                    selinux_options,
                    run_as_user,
                    run_as_group,
                    run_as_username,
                    readonly_rootfs,
                    supplemental_groups,
                    supplemental_groups_policy,
                    no_new_privs,
                    masked_paths,
                    readonly_paths,
                    seccomp,
                    apparmor,
                    apparmor_profile,
                    seccomp_profile_path,
                }
            },
        );
    let linux = option::of((option::of(resources()), option::of(security)).prop_map(
        |(resources, security_context)| cri::LinuxContainerConfig {
            resources,
            security_context,
        },
    ));
    let env = (text(), text()).prop_map(|(key, value)| cri::KeyValue { key, value });
    (
        (metadata, image, vec(text(), 0..3), vec(text(), 0..3)),
        (
            path(),
            vec(env, 0..3),
            prop_oneof![2 => Just(Vec::new()), 1 => vec(mount(), 1..3)],
            rarely(vec(device(), 1..2)),
        ),
        (
            hash_map(text(), text(), 0..2),
            hash_map(text(), text(), 0..2),
            prop_oneof![4 => "[a-z]{1,8}/[0-9]\\.log", 1 => Just(String::new()), 1 => path()],
        ),
        (any::<(bool, bool, bool)>(), linux, wire_enum(65)),
        prop_oneof![12 => Just(Vec::new()), 1 => vec(text(), 1..2)],
    )
        .prop_map(
            |(
                (metadata, image, command, args),
                (working_dir, envs, mounts, devices),
                (labels, annotations, log_path),
                ((stdin, stdin_once, tty), linux, stop_signal),
                cdi,
            )| cri::ContainerConfig {
                metadata,
                image,
                command,
                args,
                working_dir,
                envs,
                mounts,
                devices,
                labels,
                annotations,
                log_path,
                stdin,
                stdin_once,
                tty,
                linux,
                windows: None,
                cdi_devices: cdi
                    .into_iter()
                    .map(|name| cri::CdiDevice { name })
                    .collect(),
                stop_signal,
            },
        )
}

/// The nodes a spec is built for: the usual test node, and one with nothing (no seccomp,
/// no swap accounting, cgroup v2, SELinux on) so the refusals that depend on the node run.
fn host() -> impl Strategy<Value = HostSecurity> {
    any::<(bool, bool, bool)>().prop_map(|(seccomp, unified, selinux)| {
        let mut host = test_host();
        host.seccomp_enabled = seccomp;
        host.cgroups.unified = unified;
        host.cgroups.memory_swap = !unified;
        host.selinux_enabled = selinux;
        host
    })
}

fn image_config() -> impl Strategy<Value = ImageConfig> {
    (
        prop_oneof![
            Just(String::new()),
            Just("app".to_string()),
            Just("1001:0".to_string()),
            text()
        ],
        vec(text(), 0..2),
        vec(text(), 0..2),
        vec(text(), 0..2),
        path(),
    )
        .prop_map(|(user, env, entrypoint, cmd, working_dir)| ImageConfig {
            user,
            env,
            entrypoint,
            cmd,
            working_dir,
            ..Default::default()
        })
}

/// Does a conversion refusal carry a code the input can explain? `Unimplemented` only for
/// what crius says it does not do yet (image volumes, CDI devices).
fn refused_for_cause(err: &Error, unsupported_asked: bool) -> bool {
    match err.code() {
        Code::InvalidArgument | Code::FailedPrecondition => true,
        Code::Unimplemented => unsupported_asked,
        _ => false,
    }
}

fn spec_refusal_is_typed(err: &SpecError) -> bool {
    // NotFound: a device the node does not have (api.proto's Device names a host path).
    matches!(
        err,
        SpecError::InvalidArgument(_) | SpecError::FailedPrecondition(_) | SpecError::NotFound(_)
    )
}

/// The kernel takes paths, arguments and names as C strings.
fn has_nul(s: &str) -> bool {
    s.contains('\0')
}

/// What runc needs of a spec to start it, as far as the conversion decides it.
fn check_runnable(spec: &Spec) -> Result<(), String> {
    serde_json::to_vec(spec).map_err(|e| format!("the spec does not serialise: {e}"))?;
    let process = spec.process().as_ref().ok_or("no process")?;
    let args = process.args().as_ref().ok_or("no args")?;
    if args.is_empty() {
        return Err("empty args".into());
    }
    let strings = args
        .iter()
        .chain(process.env().iter().flatten())
        .chain(spec.hostname().iter());
    for s in strings {
        if has_nul(s) {
            return Err(format!("{s:?} holds a NUL"));
        }
    }
    let cwd = process.cwd();
    if !cwd.is_absolute() || has_nul(&cwd.display().to_string()) {
        return Err(format!("cwd {cwd:?} is not an absolute path"));
    }
    for m in spec.mounts().iter().flatten() {
        let destination = m.destination();
        let clean = destination.is_absolute()
            && destination
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        if !clean || destination == Path::new("/") {
            return Err(format!(
                "mount destination {destination:?} is not a clean path below /"
            ));
        }
        let source = m.source().as_ref().map(|s| s.display().to_string());
        if has_nul(&destination.display().to_string()) || source.as_deref().is_some_and(has_nul) {
            return Err(format!("mount {destination:?} holds a NUL"));
        }
    }
    if spec.linux().is_none() {
        return Err("no linux section".into());
    }
    Ok(())
}

fn unsupported_asked(config: &cri::ContainerConfig) -> bool {
    !config.cdi_devices.is_empty() || config.mounts.iter().any(|m| m.image.is_some())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_run_pod_sandbox_request_converts_or_is_refused_as_invalid(request in sandbox_request()) {
        if let Err(err) = SandboxConfig::try_from(request) {
            prop_assert!(refused_for_cause(&err, false), "{:?}: {err}", err.code());
        }
    }

    #[test]
    fn any_container_config_converts_or_is_refused_as_invalid(config in container_config()) {
        let unsupported = unsupported_asked(&config);
        if let Err(err) = ContainerConfig::try_from(config) {
            prop_assert!(refused_for_cause(&err, unsupported), "{:?}: {err}", err.code());
        }
    }

    #[test]
    fn any_converted_pod_gets_a_runnable_pause_spec_or_a_typed_refusal(
        request in sandbox_request(),
        host in host(),
        netns in option::of(path()),
        floor in -1000i64..=1000,
    ) {
        let Ok(config) = SandboxConfig::try_from(request) else {
            return Ok(());
        };
        let built = pause_spec::sandbox_request(&SandboxSpecInput {
            id: "sb1",
            config: &config,
            cgroup: runtime_backends::CgroupRequest {
                parent: "/kubepods".to_string(),
                systemd: false,
            },
            pause_args: vec!["/pause".to_string()],
            netns_path: netns,
            oom_score_adj_floor: floor,
            host: &host,
        })
        .and_then(|request| rendered(&request, &[]));
        match built {
            Ok(spec) => {
                if let Err(why) = check_runnable(&spec) {
                    prop_assert!(false, "{why}\nconfig: {config:?}");
                }
            }
            Err(err) => prop_assert!(spec_refusal_is_typed(&err), "{err:?}"),
        }
    }

    #[test]
    fn any_converted_container_gets_a_runnable_spec_or_a_typed_refusal(
        request in sandbox_request(),
        cri_config in container_config(),
        image in image_config(),
        host in host(),
        target_pid in prop_oneof![Just(0u32), 1u32..100_000],
    ) {
        let Ok(sandbox) = SandboxConfig::try_from(request) else {
            return Ok(());
        };
        let Ok(config) = ContainerConfig::try_from(cri_config) else {
            return Ok(());
        };
        let built = container_request(&ContainerSpecInput {
            id: "c1",
            config: &config,
            image: &image,
            sandbox: &sandbox,
            sandbox_id: "sb1",
            netns_path: None,
            cgroup: runtime_backends::CgroupRequest {
                parent: "/kubepods".to_string(),
                systemd: false,
            },
            resolv_conf: Some("/var/lib/crius/sb1/resolv.conf".into()),
            hostname: Some("/var/lib/crius/sb1/hostname".into()),
            hosts: Some("/var/lib/crius/sb1/hosts".into()),
            shm_path: Some("/run/crius/sb1/shm".into()),
            passwd: Some(PASSWD.to_string()),
            group: Some(GROUP.to_string()),
            oom_score_adj_floor: 0,
            host: &host,
        })
        .and_then(|request| {
            let target = config.security.namespaces.target_id.as_str();
            rendered(&request, &[("sb1", 4242), (target, target_pid)])
        });
        match built {
            Ok(spec) => {
                if let Err(why) = check_runnable(&spec) {
                    prop_assert!(false, "{why}\nconfig: {config:?}\nimage: {image:?}");
                }
                // ExecSync and Exec build on the container's process.
                if let Some(process) = spec.process() {
                    let exec = exec_process(process, vec!["sh".to_string()], false);
                    prop_assert!(exec.is_ok(), "{exec:?}");
                }
            }
            Err(err) => prop_assert!(spec_refusal_is_typed(&err), "{err:?}"),
        }
    }

    #[test]
    fn any_update_resources_are_applied_or_refused_as_invalid(
        r in resources(),
        host in host(),
    ) {
        let domain = crate::services::convert::resources(r);
        if let Err(err) = crate::container::spec::linux_resources(&domain, &host.cgroups) {
            prop_assert!(
                matches!(err, SpecError::InvalidArgument(_) | SpecError::FailedPrecondition(_)),
                "{err:?}"
            );
        }
    }
}

/// A record as crius writes it, to cut short and corrupt.
fn sandbox_record_bytes() -> Vec<u8> {
    let record = SandboxRecord {
        meta: SandboxMeta {
            id: "sb1".to_string(),
            name: "web_default_uid-1_0".to_string(),
            config: SandboxConfig {
                hostname: "web".to_string(),
                ..Default::default()
            },
            created_at: 1,
            netns_path: Some("/var/run/netns/cni-1".to_string()),
            ip: "10.88.0.2".to_string(),
            additional_ips: Vec::new(),
            pause_image: "localhost/crius/pause:1".to_string(),
            files_dir: "/var/lib/crius/sandboxes/sb1".to_string(),
            cgroups_path: "/kubepods/sb1".to_string(),
        },
        status: SandboxStatus {
            state: SandboxState::Ready,
            pid: 42,
            pod_resources: None,
        },
    };
    serde_json::to_vec(&record).unwrap_or_default()
}

fn container_record_bytes() -> Vec<u8> {
    let record = ContainerRecordFile {
        meta: ContainerMeta {
            id: "c1".to_string(),
            name: "app_web_default_uid-1_0".to_string(),
            sandbox_id: "sb1".to_string(),
            config: ContainerConfig::default(),
            image_id: "sha256:00".to_string(),
            image_ref: "sha256:00".to_string(),
            created_at: 1,
            log_path: "/var/log/pods/app/0.log".to_string(),
            process: oci_spec::runtime::Process::default(),
            cgroups_path: None,
            stop_signal: 15,
        },
        status: ContainerStatus::created(None),
    };
    serde_json::to_vec(&record).unwrap_or_default()
}

/// Bytes as a crash, a full disk or a stray editor leaves them: a valid record cut short,
/// with a byte flipped, or noise.
fn damaged(valid: Vec<u8>) -> BoxedStrategy<Vec<u8>> {
    let len = valid.len();
    let cut = valid.clone();
    let flipped = valid;
    prop_oneof![
        (0..len).prop_map(move |at| cut[..at].to_vec()),
        (0..len, any::<u8>()).prop_map(move |(at, byte)| {
            let mut bytes = flipped.clone();
            bytes[at] = byte;
            bytes
        }),
        vec(any::<u8>(), 0..512),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn damaged_records_are_reported_and_skipped_not_a_panic(
        sandbox in damaged(sandbox_record_bytes()),
        container in damaged(container_record_bytes()),
    ) {
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let state = crate::store::StateDir::new(dir.path());
        for (kind, bytes) in [("sandboxes", &sandbox), ("containers", &container)] {
            std::fs::create_dir_all(dir.path().join(kind))
                .and_then(|()| std::fs::write(dir.path().join(kind).join("x.json"), bytes))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        // A read either decodes or names the file; start-up skips what it cannot read.
        let one = state.read::<SandboxRecord>("sandboxes", "x");
        if let Err(err) = &one {
            prop_assert!(err.to_string().contains("x.json"), "{err}");
        }
        let all = state.read_all::<SandboxRecord>("sandboxes");
        prop_assert_eq!(all.len(), usize::from(one.is_ok()));
        let one = state.read::<ContainerRecordFile>("containers", "x");
        let all = state.read_all::<ContainerRecordFile>("containers");
        prop_assert_eq!(all.len(), usize::from(one.is_ok()));
    }

    #[test]
    fn a_record_cut_short_never_decodes(at in 0usize..4096) {
        for valid in [sandbox_record_bytes(), container_record_bytes()] {
            prop_assume!(!valid.is_empty());
            let cut = &valid[..at % valid.len()];
            let decoded: Result<serde_json::Value, _> = serde_json::from_slice(cut);
            prop_assert!(decoded.is_err(), "{} of {} bytes decoded", cut.len(), valid.len());
        }
    }
}

#[test]
fn the_sample_records_round_trip() {
    let sandbox: SandboxRecord = serde_json::from_slice(&sandbox_record_bytes())
        .unwrap_or_else(|e| panic!("sandbox record: {e}"));
    assert_eq!(sandbox.meta.id, "sb1");
    let container: ContainerRecordFile = serde_json::from_slice(&container_record_bytes())
        .unwrap_or_else(|e| panic!("container record: {e}"));
    assert_eq!(container.meta.id, "c1");
}
