//! Hostile input over the wire (issue 29): every CRI RPC is sent each bad input that applies to
//! it — empty, unknown, oversized and malformed ids, names, paths, images, sysctls, devices and
//! mounts — and must answer the code api.proto or the CRI contract implies (each row says
//! which). Afterwards crius still answers, its log shows no panic, and its socket is 0660
//! root. Needs root and the packages from `scripts/install-deps` (`scripts/test` runs it).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use conformance::harness::containerd::{Containerd, ContainerdOptions};
use conformance::harness::crius::Crius;
use conformance::harness::images::Images;
use conformance::harness::pods;
use conformance::runner::connect;
use cri_api::v1 as cri;
use cri_api::v1::image_service_client::ImageServiceClient;
use cri_api::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

const BUSYBOX: &str = "localhost/crius/busybox:1";
const NAMESPACE: &str = "crius";

/// An id no object has; not hex, so it is no prefix of a real id either.
const UNKNOWN: &str = "no-such-object";
/// Ids and names a client must not be able to hurt crius with.
const NUL_ID: &str = "abc\0def";
const TRAVERSAL_ID: &str = "../../../etc/passwd";

/// Far longer than any bad input needs to be answered in.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// 1 MiB: far beyond any id, name or path, well within kubelet's 16 MiB message limit.
fn oversized() -> String {
    "a".repeat(1 << 20)
}

/// One RPC with its request. Each variant is exactly one CRI RPC, so the table can be checked
/// to cover every RPC in `cri_api::{RUNTIME_SERVICE, IMAGE_SERVICE}`.
// A table of a few hundred rows, each sent once: the size of the largest request is no cost.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum Call {
    Version(cri::VersionRequest),
    RunPodSandbox(cri::RunPodSandboxRequest),
    StopPodSandbox(cri::StopPodSandboxRequest),
    RemovePodSandbox(cri::RemovePodSandboxRequest),
    PodSandboxStatus(cri::PodSandboxStatusRequest),
    ListPodSandbox(cri::ListPodSandboxRequest),
    StreamPodSandboxes(cri::StreamPodSandboxesRequest),
    CreateContainer(cri::CreateContainerRequest),
    StartContainer(cri::StartContainerRequest),
    StopContainer(cri::StopContainerRequest),
    RemoveContainer(cri::RemoveContainerRequest),
    ListContainers(cri::ListContainersRequest),
    StreamContainers(cri::StreamContainersRequest),
    ContainerStatus(cri::ContainerStatusRequest),
    UpdateContainerResources(cri::UpdateContainerResourcesRequest),
    ReopenContainerLog(cri::ReopenContainerLogRequest),
    ExecSync(cri::ExecSyncRequest),
    Exec(cri::ExecRequest),
    Attach(cri::AttachRequest),
    PortForward(cri::PortForwardRequest),
    ContainerStats(cri::ContainerStatsRequest),
    ListContainerStats(cri::ListContainerStatsRequest),
    StreamContainerStats(cri::StreamContainerStatsRequest),
    PodSandboxStats(cri::PodSandboxStatsRequest),
    ListPodSandboxStats(cri::ListPodSandboxStatsRequest),
    StreamPodSandboxStats(cri::StreamPodSandboxStatsRequest),
    UpdateRuntimeConfig(cri::UpdateRuntimeConfigRequest),
    Status(cri::StatusRequest),
    CheckpointContainer(cri::CheckpointContainerRequest),
    GetContainerEvents(cri::GetEventsRequest),
    ListMetricDescriptors(cri::ListMetricDescriptorsRequest),
    ListPodSandboxMetrics(cri::ListPodSandboxMetricsRequest),
    StreamPodSandboxMetrics(cri::StreamPodSandboxMetricsRequest),
    RuntimeConfig(cri::RuntimeConfigRequest),
    UpdatePodSandboxResources(cri::UpdatePodSandboxResourcesRequest),
    ListImages(cri::ListImagesRequest),
    StreamImages(cri::StreamImagesRequest),
    ImageStatus(cri::ImageStatusRequest),
    PullImage(cri::PullImageRequest),
    RemoveImage(cri::RemoveImageRequest),
    ImageFsInfo(cri::ImageFsInfoRequest),
}

/// What a call gave, reduced to what the rows check.
#[derive(Debug, Default)]
struct Answer {
    /// Ids of objects the call made (to remove afterwards).
    created: Option<Created>,
    /// Items a list or stream answered with.
    items: usize,
    /// ImageStatus: whether an image was reported.
    image_found: bool,
}

#[derive(Debug, Clone)]
enum Created {
    Pod(String),
    Container(String),
}

macro_rules! drain {
    ($call:expr, $count:expr) => {{
        let mut stream = $call.await?.into_inner();
        let mut items = 0;
        while let Some(message) = stream.message().await? {
            items += ($count)(&message);
        }
        Answer {
            items,
            ..Answer::default()
        }
    }};
}

impl Call {
    fn rpc(&self) -> &'static str {
        match self {
            Call::Version(_) => "Version",
            Call::RunPodSandbox(_) => "RunPodSandbox",
            Call::StopPodSandbox(_) => "StopPodSandbox",
            Call::RemovePodSandbox(_) => "RemovePodSandbox",
            Call::PodSandboxStatus(_) => "PodSandboxStatus",
            Call::ListPodSandbox(_) => "ListPodSandbox",
            Call::StreamPodSandboxes(_) => "StreamPodSandboxes",
            Call::CreateContainer(_) => "CreateContainer",
            Call::StartContainer(_) => "StartContainer",
            Call::StopContainer(_) => "StopContainer",
            Call::RemoveContainer(_) => "RemoveContainer",
            Call::ListContainers(_) => "ListContainers",
            Call::StreamContainers(_) => "StreamContainers",
            Call::ContainerStatus(_) => "ContainerStatus",
            Call::UpdateContainerResources(_) => "UpdateContainerResources",
            Call::ReopenContainerLog(_) => "ReopenContainerLog",
            Call::ExecSync(_) => "ExecSync",
            Call::Exec(_) => "Exec",
            Call::Attach(_) => "Attach",
            Call::PortForward(_) => "PortForward",
            Call::ContainerStats(_) => "ContainerStats",
            Call::ListContainerStats(_) => "ListContainerStats",
            Call::StreamContainerStats(_) => "StreamContainerStats",
            Call::PodSandboxStats(_) => "PodSandboxStats",
            Call::ListPodSandboxStats(_) => "ListPodSandboxStats",
            Call::StreamPodSandboxStats(_) => "StreamPodSandboxStats",
            Call::UpdateRuntimeConfig(_) => "UpdateRuntimeConfig",
            Call::Status(_) => "Status",
            Call::CheckpointContainer(_) => "CheckpointContainer",
            Call::GetContainerEvents(_) => "GetContainerEvents",
            Call::ListMetricDescriptors(_) => "ListMetricDescriptors",
            Call::ListPodSandboxMetrics(_) => "ListPodSandboxMetrics",
            Call::StreamPodSandboxMetrics(_) => "StreamPodSandboxMetrics",
            Call::RuntimeConfig(_) => "RuntimeConfig",
            Call::UpdatePodSandboxResources(_) => "UpdatePodSandboxResources",
            Call::ListImages(_) => "ListImages",
            Call::StreamImages(_) => "StreamImages",
            Call::ImageStatus(_) => "ImageStatus",
            Call::PullImage(_) => "PullImage",
            Call::RemoveImage(_) => "RemoveImage",
            Call::ImageFsInfo(_) => "ImageFsInfo",
        }
    }

    async fn send(
        self,
        rt: &mut RuntimeServiceClient<Channel>,
        img: &mut ImageServiceClient<Channel>,
    ) -> Result<Answer, Status> {
        let done = Answer::default();
        Ok(match self {
            Call::Version(r) => rt.version(r).await.map(|_| done)?,
            Call::RunPodSandbox(r) => {
                let id = rt.run_pod_sandbox(r).await?.into_inner().pod_sandbox_id;
                Answer {
                    created: Some(Created::Pod(id)),
                    ..done
                }
            }
            Call::StopPodSandbox(r) => rt.stop_pod_sandbox(r).await.map(|_| done)?,
            Call::RemovePodSandbox(r) => rt.remove_pod_sandbox(r).await.map(|_| done)?,
            Call::PodSandboxStatus(r) => rt.pod_sandbox_status(r).await.map(|_| done)?,
            Call::ListPodSandbox(r) => Answer {
                items: rt.list_pod_sandbox(r).await?.into_inner().items.len(),
                ..done
            },
            Call::StreamPodSandboxes(r) => drain!(
                rt.stream_pod_sandboxes(r),
                |m: &cri::StreamPodSandboxesResponse| m.pod_sandboxes.len()
            ),
            Call::CreateContainer(r) => {
                let id = rt.create_container(r).await?.into_inner().container_id;
                Answer {
                    created: Some(Created::Container(id)),
                    ..done
                }
            }
            Call::StartContainer(r) => rt.start_container(r).await.map(|_| done)?,
            Call::StopContainer(r) => rt.stop_container(r).await.map(|_| done)?,
            Call::RemoveContainer(r) => rt.remove_container(r).await.map(|_| done)?,
            Call::ListContainers(r) => Answer {
                items: rt.list_containers(r).await?.into_inner().containers.len(),
                ..done
            },
            Call::StreamContainers(r) => drain!(
                rt.stream_containers(r),
                |m: &cri::StreamContainersResponse| m.containers.len()
            ),
            Call::ContainerStatus(r) => rt.container_status(r).await.map(|_| done)?,
            Call::UpdateContainerResources(r) => {
                rt.update_container_resources(r).await.map(|_| done)?
            }
            Call::ReopenContainerLog(r) => rt.reopen_container_log(r).await.map(|_| done)?,
            Call::ExecSync(r) => rt.exec_sync(r).await.map(|_| done)?,
            Call::Exec(r) => rt.exec(r).await.map(|_| done)?,
            Call::Attach(r) => rt.attach(r).await.map(|_| done)?,
            Call::PortForward(r) => rt.port_forward(r).await.map(|_| done)?,
            Call::ContainerStats(r) => rt.container_stats(r).await.map(|_| done)?,
            Call::ListContainerStats(r) => Answer {
                items: rt.list_container_stats(r).await?.into_inner().stats.len(),
                ..done
            },
            Call::StreamContainerStats(r) => drain!(
                rt.stream_container_stats(r),
                |m: &cri::StreamContainerStatsResponse| m.container_stats.len()
            ),
            Call::PodSandboxStats(r) => rt.pod_sandbox_stats(r).await.map(|_| done)?,
            Call::ListPodSandboxStats(r) => Answer {
                items: rt.list_pod_sandbox_stats(r).await?.into_inner().stats.len(),
                ..done
            },
            Call::StreamPodSandboxStats(r) => drain!(
                rt.stream_pod_sandbox_stats(r),
                |m: &cri::StreamPodSandboxStatsResponse| m.pod_sandbox_stats.len()
            ),
            Call::UpdateRuntimeConfig(r) => rt.update_runtime_config(r).await.map(|_| done)?,
            Call::Status(r) => rt.status(r).await.map(|_| done)?,
            Call::CheckpointContainer(r) => rt.checkpoint_container(r).await.map(|_| done)?,
            // The event stream stays open for the client's lifetime: its opening is the answer.
            Call::GetContainerEvents(r) => rt.get_container_events(r).await.map(|_| done)?,
            Call::ListMetricDescriptors(r) => rt.list_metric_descriptors(r).await.map(|_| done)?,
            Call::ListPodSandboxMetrics(r) => rt.list_pod_sandbox_metrics(r).await.map(|_| done)?,
            Call::StreamPodSandboxMetrics(r) => drain!(
                rt.stream_pod_sandbox_metrics(r),
                |m: &cri::StreamPodSandboxMetricsResponse| m.pod_sandbox_metrics.len()
            ),
            Call::RuntimeConfig(r) => rt.runtime_config(r).await.map(|_| done)?,
            Call::UpdatePodSandboxResources(r) => {
                rt.update_pod_sandbox_resources(r).await.map(|_| done)?
            }
            Call::ListImages(r) => Answer {
                items: img.list_images(r).await?.into_inner().images.len(),
                ..done
            },
            Call::StreamImages(r) => {
                drain!(img.stream_images(r), |m: &cri::StreamImagesResponse| m
                    .images
                    .len())
            }
            Call::ImageStatus(r) => Answer {
                image_found: img.image_status(r).await?.into_inner().image.is_some(),
                ..done
            },
            Call::PullImage(r) => img.pull_image(r).await.map(|_| done)?,
            Call::RemoveImage(r) => img.remove_image(r).await.map(|_| done)?,
            Call::ImageFsInfo(r) => img.image_fs_info(r).await.map(|_| done)?,
        })
    }
}

/// The answer a row expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A refusal with this code.
    Refused(Code),
    /// Success (idempotent calls, answers about nothing).
    Ok,
    /// Success with an empty list: a filter naming nothing selects nothing.
    Empty,
    /// ImageStatus success without an image.
    NoImage,
}

struct Row {
    /// The bad input, for the report.
    input: String,
    call: Call,
    expect: Expect,
    /// The api.proto comment or CRI contract the expectation follows.
    why: &'static str,
}

/// The objects the rows aim at: a ready pod with a running container.
struct Targets {
    pod: String,
    pod_config: cri::PodSandboxConfig,
    container: String,
    logs: tempfile::TempDir,
}

fn row(input: impl Into<String>, call: Call, expect: Expect, why: &'static str) -> Row {
    Row {
        input: input.into(),
        call,
        expect,
        why,
    }
}

const WHY_EMPTY_ID: &str =
    "an empty id names no object: crius refuses it as InvalidArgument before any lookup";
const WHY_STATUS_MISSING: &str = "api.proto: \"If the PodSandbox/container is not present, returns an error\"; not present is NotFound";
const WHY_STATS_MISSING: &str =
    "api.proto: ContainerStats/PodSandboxStats \"If the container/pod sandbox does not exist, the call returns an error\"";
const WHY_IDEMPOTENT: &str = "api.proto: Stop/Remove are idempotent and \"must not return an error if ... already been removed\"";
const WHY_STREAMING_MISSING: &str = "api.proto: Exec/Attach act on \"a container\" and PortForward on \"a pod sandbox\"; one that does not exist is NotFound, looked up before the streams are judged";
const WHY_UNIMPLEMENTED: &str =
    "pinned: crius answers Unimplemented for this RPC today (kubelet copes; containerd 1.6 does too)";
const WHY_FILTER: &str = "a filter that names no object selects nothing; the list answers empty";
const WHY_CONVERT: &str =
    "shim/src/services/convert.rs validates at the boundary and answers InvalidArgument naming the field";
const WHY_NUL: &str = "the kernel takes paths, arguments and names as C strings: a NUL byte is refused at the boundary (InvalidArgument), not left to fail in runc";
const WHY_HANDLER: &str =
    "api.proto: \"If the runtime handler is unknown, this request should be rejected\"";
const WHY_RUN_AS_GROUP: &str = "api.proto: \"run_as_group should only be specified when run_as_user or run_as_username is specified; otherwise, the runtime MUST error\"";
const WHY_IMAGE_MISSING: &str =
    "api.proto: ImageStatus \"If the image is not present, returns a response with ImageStatusResponse.Image set to nil\"";
const WHY_BAD_REF: &str =
    "not an image reference (distribution grammar): InvalidArgument before any registry is asked";
const WHY_SYSCTL: &str = "DESIGN.md decision 9: a sysctl that is not namespaced, or not private to the pod, would change the node; refused, never dropped";

/// Ids that name nothing, each with its label.
fn bad_ids() -> Vec<(&'static str, String)> {
    vec![
        ("unknown id", UNKNOWN.to_string()),
        ("1 MiB id", oversized()),
        ("id with NUL", NUL_ID.to_string()),
        ("id with ../", TRAVERSAL_ID.to_string()),
    ]
}

/// Rows for the calls that take one container or pod id.
fn id_rows(rows: &mut Vec<Row>) {
    type IdCall = (fn(String) -> Call, Expect, &'static str);
    let container_calls: Vec<IdCall> = vec![
        (
            |id| {
                Call::StartContainer(cri::StartContainerRequest { container_id: id })
            },
            Expect::Refused(Code::NotFound),
            "api.proto: StartContainer starts \"the container\"; one that does not exist is NotFound",
        ),
        (
            |id| {
                Call::StopContainer(cri::StopContainerRequest {
                    container_id: id,
                    timeout: -5,
                })
            },
            Expect::Ok,
            WHY_IDEMPOTENT,
        ),
        (
            |id| Call::RemoveContainer(cri::RemoveContainerRequest { container_id: id }),
            Expect::Ok,
            WHY_IDEMPOTENT,
        ),
        (
            |id| {
                Call::ContainerStatus(cri::ContainerStatusRequest {
                    container_id: id,
                    verbose: true,
                })
            },
            Expect::Refused(Code::NotFound),
            WHY_STATUS_MISSING,
        ),
        (
            |id| {
                Call::UpdateContainerResources(cri::UpdateContainerResourcesRequest {
                    container_id: id,
                    linux: Some(cri::LinuxContainerResources::default()),
                    ..Default::default()
                })
            },
            Expect::Refused(Code::NotFound),
            "api.proto: UpdateContainerResources updates \"the container\"; one that does not exist is NotFound",
        ),
        (
            |id| Call::ReopenContainerLog(cri::ReopenContainerLogRequest { container_id: id }),
            Expect::Refused(Code::NotFound),
            "api.proto: ReopenContainerLog \"Once it returns error, new container log file MUST NOT be created\"; no container, no log",
        ),
        (
            |id| {
                Call::ExecSync(cri::ExecSyncRequest {
                    container_id: id,
                    cmd: vec!["true".into()],
                    timeout: 1,
                })
            },
            Expect::Refused(Code::NotFound),
            "api.proto: ExecSync runs a command \"in a container\"; one that does not exist is NotFound",
        ),
        (
            |id| Call::ContainerStats(cri::ContainerStatsRequest { container_id: id }),
            Expect::Refused(Code::NotFound),
            WHY_STATS_MISSING,
        ),
        (
            |id| {
                Call::CheckpointContainer(cri::CheckpointContainerRequest {
                    container_id: id,
                    location: "/tmp/../etc/checkpoint.tar".into(),
                    timeout: -1,
                })
            },
            Expect::Refused(Code::Unimplemented),
            WHY_UNIMPLEMENTED,
        ),
        (
            |id| {
                Call::Exec(cri::ExecRequest {
                    container_id: id,
                    cmd: vec!["sh".into()],
                    tty: true,
                    stdin: false,
                    stdout: false,
                    stderr: true,
                })
            },
            Expect::Refused(Code::NotFound),
            WHY_STREAMING_MISSING,
        ),
        (
            |id| {
                Call::Attach(cri::AttachRequest {
                    container_id: id,
                    stdin: false,
                    tty: true,
                    stdout: false,
                    stderr: true,
                })
            },
            Expect::Refused(Code::NotFound),
            WHY_STREAMING_MISSING,
        ),
    ];
    let pod_calls: Vec<IdCall> = vec![
        (
            |id| Call::StopPodSandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id }),
            Expect::Ok,
            WHY_IDEMPOTENT,
        ),
        (
            |id| Call::RemovePodSandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id }),
            Expect::Ok,
            WHY_IDEMPOTENT,
        ),
        (
            |id| {
                Call::PodSandboxStatus(cri::PodSandboxStatusRequest {
                    pod_sandbox_id: id,
                    verbose: true,
                })
            },
            Expect::Refused(Code::NotFound),
            WHY_STATUS_MISSING,
        ),
        (
            |id| Call::PodSandboxStats(cri::PodSandboxStatsRequest { pod_sandbox_id: id }),
            Expect::Refused(Code::NotFound),
            WHY_STATS_MISSING,
        ),
        (
            |id| {
                Call::UpdatePodSandboxResources(cri::UpdatePodSandboxResourcesRequest {
                    pod_sandbox_id: id,
                    ..Default::default()
                })
            },
            Expect::Refused(Code::NotFound),
            "api.proto: UpdatePodSandboxResources updates \"the pod sandbox\"; one that does not exist is NotFound",
        ),
        (
            |id| {
                Call::PortForward(cri::PortForwardRequest {
                    pod_sandbox_id: id,
                    port: vec![-1, 0, 70_000],
                })
            },
            Expect::Refused(Code::NotFound),
            WHY_STREAMING_MISSING,
        ),
    ];
    for (make, expect_unknown, why) in container_calls.into_iter().chain(pod_calls) {
        // An empty id is refused before anything is looked up, whatever the call would do
        // with an unknown one; the unimplemented calls answer Unimplemented.
        let empty_expect = match expect_unknown {
            Expect::Refused(Code::Unimplemented) => expect_unknown,
            _ => Expect::Refused(Code::InvalidArgument),
        };
        let empty_why = match expect_unknown {
            Expect::Refused(Code::Unimplemented) => why,
            _ => WHY_EMPTY_ID,
        };
        rows.push(row(
            "empty id",
            make(String::new()),
            empty_expect,
            empty_why,
        ));
        for (label, id) in bad_ids() {
            rows.push(row(label, make(id), expect_unknown, why));
        }
    }
}

/// The filters of the List and Stream calls, naming nothing.
fn filter_rows(rows: &mut Vec<Row>) {
    for (label, id) in bad_ids() {
        let selector = HashMap::from([(id.clone(), id.clone())]);
        rows.push(row(
            format!("filter by {label}"),
            Call::ListPodSandbox(cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    id: id.clone(),
                    ..Default::default()
                }),
            }),
            Expect::Empty,
            WHY_FILTER,
        ));
        rows.push(row(
            format!("filter by {label}"),
            Call::StreamPodSandboxes(cri::StreamPodSandboxesRequest {
                filter: Some(cri::PodSandboxFilter {
                    label_selector: selector.clone(),
                    ..Default::default()
                }),
            }),
            Expect::Empty,
            WHY_FILTER,
        ));
        rows.push(row(
            format!("filter by {label}"),
            Call::ListContainers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    pod_sandbox_id: id.clone(),
                    ..Default::default()
                }),
            }),
            Expect::Empty,
            WHY_FILTER,
        ));
        rows.push(row(
            format!("filter by {label}"),
            Call::StreamContainers(cri::StreamContainersRequest {
                filter: Some(cri::ContainerFilter {
                    id: id.clone(),
                    state: Some(cri::ContainerStateValue { state: 99 }),
                    ..Default::default()
                }),
            }),
            Expect::Empty,
            WHY_FILTER,
        ));
        rows.push(row(
            format!("filter by {label}"),
            Call::ListContainerStats(cri::ListContainerStatsRequest {
                filter: Some(cri::ContainerStatsFilter {
                    id: id.clone(),
                    ..Default::default()
                }),
            }),
            Expect::Empty,
            WHY_FILTER,
        ));
        rows.push(row(
            format!("filter by {label}"),
            Call::StreamContainerStats(cri::StreamContainerStatsRequest {
                filter: Some(cri::ContainerStatsFilter {
                    pod_sandbox_id: id.clone(),
                    ..Default::default()
                }),
            }),
            Expect::Empty,
            WHY_FILTER,
        ));
        rows.push(row(
            format!("filter by {label}"),
            Call::ListPodSandboxStats(cri::ListPodSandboxStatsRequest {
                filter: Some(cri::PodSandboxStatsFilter {
                    id: id.clone(),
                    ..Default::default()
                }),
            }),
            Expect::Empty,
            WHY_FILTER,
        ));
        rows.push(row(
            format!("filter by {label}"),
            Call::StreamPodSandboxStats(cri::StreamPodSandboxStatsRequest {
                filter: Some(cri::PodSandboxStatsFilter {
                    label_selector: selector,
                    ..Default::default()
                }),
            }),
            Expect::Empty,
            WHY_FILTER,
        ));
    }
}

/// The calls whose only input is a flag or nothing: sent the strangest values they take.
fn plain_rows(rows: &mut Vec<Row>) {
    rows.push(row(
        "version with NUL and 1 MiB",
        Call::Version(cri::VersionRequest {
            version: format!("\0{}", oversized()),
        }),
        Expect::Ok,
        "api.proto: VersionRequest.version is the kubelet's API version, informative only",
    ));
    rows.push(row(
        "verbose",
        Call::Status(cri::StatusRequest { verbose: true }),
        Expect::Ok,
        "api.proto: Status returns the runtime's status; verbose adds info",
    ));
    rows.push(row(
        "nothing",
        Call::RuntimeConfig(cri::RuntimeConfigRequest {}),
        Expect::Ok,
        "api.proto: RuntimeConfig has no input",
    ));
    rows.push(row(
        "nothing",
        Call::ImageFsInfo(cri::ImageFsInfoRequest {}),
        Expect::Ok,
        "api.proto: ImageFsInfo has no input",
    ));
    for (label, cidr) in [
        ("empty pod CIDR", String::new()),
        ("malformed pod CIDR", "10.0.0.0/99\0".to_string()),
    ] {
        rows.push(row(
            label,
            Call::UpdateRuntimeConfig(cri::UpdateRuntimeConfigRequest {
                runtime_config: Some(cri::RuntimeConfig {
                    network_config: Some(cri::NetworkConfig { pod_cidr: cidr }),
                }),
            }),
            Expect::Ok,
            "without a cni_conf_template crius keeps the CIDR and uses it nowhere (api.proto: \"If the CIDR is empty, runtimes should omit it\")",
        ));
    }
    rows.push(row(
        "nothing",
        Call::GetContainerEvents(cri::GetEventsRequest {}),
        Expect::Ok,
        "api.proto: GetContainerEvents takes no input and streams events until the client goes",
    ));
    rows.push(row(
        "nothing",
        Call::ListMetricDescriptors(cri::ListMetricDescriptorsRequest {}),
        Expect::Ok,
        "api.proto: the CRI metrics calls take no input and describe or report every pod",
    ));
    rows.push(row(
        "nothing",
        Call::ListPodSandboxMetrics(cri::ListPodSandboxMetricsRequest {}),
        Expect::Ok,
        "api.proto: the CRI metrics calls take no input and describe or report every pod",
    ));
    rows.push(row(
        "nothing",
        Call::StreamPodSandboxMetrics(cri::StreamPodSandboxMetricsRequest {}),
        Expect::Ok,
        "api.proto: the CRI metrics calls take no input and describe or report every pod",
    ));
    rows.push(row(
        "container_id empty",
        Call::UpdateContainerResources(cri::UpdateContainerResourcesRequest::default()),
        Expect::Refused(Code::InvalidArgument),
        WHY_EMPTY_ID,
    ));
}

fn image_spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

/// Image references: empty, malformed, oversized, and well-formed ones that are absent.
fn image_rows(rows: &mut Vec<Row>) {
    let malformed: Vec<(&str, String)> = vec![
        ("reference with NUL", "busy\0box".to_string()),
        ("reference with whitespace", "busy box".to_string()),
        (
            "uppercase repository",
            "localhost/Crius/BusyBox:1".to_string(),
        ),
        ("bad digest", "busybox@sha256:xyz".to_string()),
        ("1 MiB reference", oversized()),
        ("path traversal", "localhost/../../etc/passwd".to_string()),
    ];
    rows.push(row(
        "no image spec",
        Call::ImageStatus(cri::ImageStatusRequest {
            image: None,
            verbose: true,
        }),
        Expect::Refused(Code::InvalidArgument),
        "api.proto: ImageStatusRequest.image is the image asked about; none is InvalidArgument",
    ));
    rows.push(row(
        "empty image",
        Call::PullImage(cri::PullImageRequest {
            image: image_spec(""),
            ..Default::default()
        }),
        Expect::Refused(Code::InvalidArgument),
        "api.proto: PullImage pulls ImageSpec.image; an empty one names no image",
    ));
    rows.push(row(
        "empty image",
        Call::RemoveImage(cri::RemoveImageRequest {
            image: image_spec(""),
        }),
        Expect::Refused(Code::InvalidArgument),
        "api.proto: RemoveImage removes ImageSpec.image; an empty one names no image",
    ));
    for (label, reference) in &malformed {
        rows.push(row(
            *label,
            Call::PullImage(cri::PullImageRequest {
                image: image_spec(reference),
                auth: Some(cri::AuthConfig {
                    username: "\0".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            Expect::Refused(Code::InvalidArgument),
            WHY_BAD_REF,
        ));
        rows.push(row(
            *label,
            Call::ImageStatus(cri::ImageStatusRequest {
                image: image_spec(reference),
                verbose: false,
            }),
            Expect::Refused(Code::InvalidArgument),
            WHY_BAD_REF,
        ));
        rows.push(row(
            *label,
            Call::RemoveImage(cri::RemoveImageRequest {
                image: image_spec(reference),
            }),
            Expect::Refused(Code::InvalidArgument),
            WHY_BAD_REF,
        ));
        rows.push(row(
            format!("filter by {label}"),
            Call::ListImages(cri::ListImagesRequest {
                filter: Some(cri::ImageFilter {
                    image: image_spec(reference),
                }),
            }),
            Expect::Empty,
            WHY_FILTER,
        ));
        rows.push(row(
            format!("filter by {label}"),
            Call::StreamImages(cri::StreamImagesRequest {
                filter: Some(cri::ImageFilter {
                    image: image_spec(reference),
                }),
            }),
            Expect::Empty,
            WHY_FILTER,
        ));
    }
    for (label, reference) in [
        ("absent image", "localhost/crius/absent:1"),
        (
            "absent id",
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ),
    ] {
        rows.push(row(
            label,
            Call::ImageStatus(cri::ImageStatusRequest {
                image: image_spec(reference),
                verbose: true,
            }),
            Expect::NoImage,
            WHY_IMAGE_MISSING,
        ));
        rows.push(row(
            label,
            Call::RemoveImage(cri::RemoveImageRequest {
                image: image_spec(reference),
            }),
            Expect::Ok,
            "api.proto: RemoveImage \"must not return an error if the image has already been removed\"",
        ));
    }
    rows.push(row(
        "unknown runtime handler",
        Call::PullImage(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: BUSYBOX.into(),
                runtime_handler: "kata".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        Expect::Refused(Code::InvalidArgument),
        "api.proto: ImageSpec.runtime_handler \"If the runtime handler is unknown, the request should be rejected\"",
    ));
}

fn pod_request(config: cri::PodSandboxConfig) -> Call {
    Call::RunPodSandbox(cri::RunPodSandboxRequest {
        config: Some(config),
        runtime_handler: String::new(),
    })
}

/// RunPodSandbox with a config that is wrong in one way each.
fn sandbox_rows(rows: &mut Vec<Row>, t: &Targets) {
    let base = |name: &str| pods::pod_config(name, "hostile", t.logs.path());
    let with = |name: &str, change: &dyn Fn(&mut cri::PodSandboxConfig)| {
        let mut config = base(name);
        change(&mut config);
        pod_request(config)
    };
    let refused = Expect::Refused(Code::InvalidArgument);
    rows.push(row(
        "no config",
        Call::RunPodSandbox(cri::RunPodSandboxRequest::default()),
        refused,
        WHY_CONVERT,
    ));
    rows.push(row(
        "no metadata",
        with("x", &|c| c.metadata = None),
        refused,
        WHY_CONVERT,
    ));
    for field in ["name", "uid", "namespace"] {
        rows.push(row(
            format!("empty metadata.{field}"),
            with("empty", &|c| {
                if let Some(m) = c.metadata.as_mut() {
                    match field {
                        "name" => m.name.clear(),
                        "uid" => m.uid.clear(),
                        _ => m.namespace.clear(),
                    }
                }
            }),
            refused,
            "api.proto: PodSandboxMetadata \"will uniquely identify the sandbox\"; an empty part identifies nothing",
        ));
    }
    rows.push(row(
        "unknown runtime handler",
        Call::RunPodSandbox(cri::RunPodSandboxRequest {
            config: Some(base("handler")),
            runtime_handler: "kata".into(),
        }),
        refused,
        WHY_HANDLER,
    ));
    rows.push(row(
        "relative log_directory",
        with("logdir", &|c| c.log_directory = "var/log/pods/x".into()),
        refused,
        "api.proto: log_directory is \"Path to the directory on the host\"; crius writes there, so it must be absolute",
    ));
    rows.push(row(
        "hostname with NUL",
        with("nulhost", &|c| c.hostname = "host\0name".into()),
        refused,
        WHY_NUL,
    ));
    rows.push(row(
        "log_directory with NUL",
        with("nullog", &|c| c.log_directory = "/var/log/pods/a\0b".into()),
        refused,
        WHY_NUL,
    ));
    for (label, name, value, host_network) in [
        ("node-wide sysctl", "kernel.panic", "1", false),
        ("empty sysctl name", "", "1", false),
        (
            "sysctl value with newline",
            "net.ipv4.ip_forward",
            "1\nkernel.panic=1",
            false,
        ),
        (
            "net sysctl on the host network",
            "net.core.somaxconn",
            "1024",
            true,
        ),
        ("sysctl with NUL", "net.ipv4.ip_forward\0", "1", false),
    ] {
        rows.push(row(
            label,
            with("sysctl", &|c| {
                let linux = c.linux.get_or_insert_with(Default::default);
                linux.sysctls = HashMap::from([(name.to_string(), value.to_string())]);
                if host_network {
                    linux.security_context = Some(cri::LinuxSandboxSecurityContext {
                        namespace_options: Some(cri::NamespaceOption {
                            network: cri::NamespaceMode::Node as i32,
                            ..Default::default()
                        }),
                        ..Default::default()
                    });
                }
            }),
            refused,
            WHY_SYSCTL,
        ));
    }
    rows.push(row(
        "run_as_group without run_as_user",
        with("group", &|c| {
            c.linux
                .get_or_insert_with(Default::default)
                .security_context = Some(cri::LinuxSandboxSecurityContext {
                run_as_group: Some(cri::Int64Value { value: 3000 }),
                ..Default::default()
            });
        }),
        refused,
        WHY_RUN_AS_GROUP,
    ));
    rows.push(row(
        "negative run_as_user",
        with("uid", &|c| {
            c.linux
                .get_or_insert_with(Default::default)
                .security_context = Some(cri::LinuxSandboxSecurityContext {
                run_as_user: Some(cri::Int64Value { value: -1 }),
                ..Default::default()
            });
        }),
        refused,
        "a uid is 32 bits and not negative: crius refuses it rather than wrap it",
    ));
    rows.push(row(
        "unknown namespace mode",
        with("nsmode", &|c| {
            c.linux
                .get_or_insert_with(Default::default)
                .security_context = Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    pid: 99,
                    ..Default::default()
                }),
                ..Default::default()
            });
        }),
        refused,
        WHY_CONVERT,
    ));
    rows.push(row(
        "Localhost seccomp without a profile",
        with("seccomp", &|c| {
            c.linux.get_or_insert_with(Default::default).security_context =
                Some(cri::LinuxSandboxSecurityContext {
                    seccomp: Some(cri::SecurityProfile {
                        profile_type: cri::security_profile::ProfileType::Localhost as i32,
                        localhost_ref: String::new(),
                    }),
                    ..Default::default()
                });
        }),
        refused,
        "api.proto: SecurityProfile.localhost_ref \"Must only be set if ProfileType is Localhost\" and names the profile",
    ));
    rows.push(row(
        "unknown port protocol",
        with("port", &|c| {
            c.port_mappings = vec![cri::PortMapping {
                protocol: 9,
                container_port: 80,
                host_port: 0,
                host_ip: String::new(),
            }]
        }),
        refused,
        WHY_CONVERT,
    ));
}

/// CreateContainer into the target pod with a config that is wrong in one way each.
fn container_rows(rows: &mut Vec<Row>, t: &Targets) {
    let request = |config: cri::ContainerConfig| {
        Call::CreateContainer(cri::CreateContainerRequest {
            pod_sandbox_id: t.pod.clone(),
            config: Some(config),
            sandbox_config: Some(t.pod_config.clone()),
        })
    };
    let base = |name: &str| pods::container_config(name, BUSYBOX, &["sleep", "60"]);
    let with = |name: &str, change: &dyn Fn(&mut cri::ContainerConfig)| {
        let mut config = base(name);
        change(&mut config);
        request(config)
    };
    let security = |name: &str, sc: cri::LinuxContainerSecurityContext| {
        with(name, &|c| {
            c.linux
                .get_or_insert_with(Default::default)
                .security_context = Some(sc.clone())
        })
    };
    let mount = |name: &str, container_path: &str, host_path: &str| {
        with(name, &|c| {
            c.mounts = vec![cri::Mount {
                container_path: container_path.into(),
                host_path: host_path.into(),
                ..Default::default()
            }]
        })
    };
    let device = |name: &str, container_path: &str, host_path: &str, permissions: &str| {
        with(name, &|c| {
            c.devices = vec![cri::Device {
                container_path: container_path.into(),
                host_path: host_path.into(),
                permissions: permissions.into(),
            }]
        })
    };
    let refused = Expect::Refused(Code::InvalidArgument);
    let host_dir = t.logs.path().display().to_string();

    for (label, pod) in [
        ("empty pod_sandbox_id", String::new()),
        ("unknown pod_sandbox_id", UNKNOWN.to_string()),
        ("1 MiB pod_sandbox_id", oversized()),
    ] {
        rows.push(row(
            label,
            Call::CreateContainer(cri::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(base("c")),
                sandbox_config: Some(t.pod_config.clone()),
            }),
            if pod.is_empty() {
                refused
            } else {
                Expect::Refused(Code::NotFound)
            },
            "api.proto: CreateContainer creates a container \"in specified PodSandbox\"; an empty id is InvalidArgument, an unknown one NotFound",
        ));
    }
    rows.push(row(
        "no config",
        Call::CreateContainer(cri::CreateContainerRequest {
            pod_sandbox_id: t.pod.clone(),
            config: None,
            sandbox_config: None,
        }),
        refused,
        WHY_CONVERT,
    ));
    rows.push(row(
        "no metadata",
        with("x", &|c| c.metadata = None),
        refused,
        WHY_CONVERT,
    ));
    rows.push(row("empty name", request(base("")), refused, WHY_CONVERT));
    rows.push(row(
        "no image",
        with("noimage", &|c| c.image = None),
        refused,
        WHY_CONVERT,
    ));
    rows.push(row(
        "absent image",
        with("absent", &|c| c.image = image_spec("localhost/crius/absent:1")),
        Expect::Refused(Code::NotFound),
        "the CRI contract: kubelet pulls before CreateContainer; an image that is not there is NotFound",
    ));
    rows.push(row(
        "image with NUL",
        with("nulimage", &|c| c.image = image_spec("busy\0box")),
        refused,
        WHY_BAD_REF,
    ));
    rows.push(row(
        "unknown runtime handler in the image spec",
        with("imghandler", &|c| {
            if let Some(image) = c.image.as_mut() {
                image.runtime_handler = "kata".into();
            }
        }),
        refused,
        "api.proto: ImageSpec.runtime_handler \"If the runtime handler is unknown, the request should be rejected\"",
    ));
    rows.push(row(
        "command with NUL",
        with("nulcmd", &|c| {
            c.command = vec!["sleep\0".into(), "60".into()]
        }),
        refused,
        WHY_NUL,
    ));
    rows.push(row(
        "env with NUL",
        with("nulenv", &|c| {
            c.envs = vec![cri::KeyValue {
                key: "A".into(),
                value: "b\0c".into(),
            }]
        }),
        refused,
        WHY_NUL,
    ));
    for (label, path) in [
        ("log_path with ..", "../../../etc/cron.d/x"),
        ("absolute log_path", "/etc/cron.d/x"),
    ] {
        rows.push(row(
            label,
            with("logpath", &|c| c.log_path = path.into()),
            refused,
            "api.proto: log_path is \"Path relative to PodSandboxConfig.LogDirectory\": it must stay inside it",
        ));
    }
    for (label, container_path) in [
        ("mount at /", "/"),
        ("mount at /..", "/.."),
        ("mount at a relative path", "data"),
        ("mount at an empty path", ""),
        ("mount climbing above / with ..", "/../../etc"),
    ] {
        rows.push(row(
            label,
            mount("mnt", container_path, &host_dir),
            refused,
            "api.proto: Mount.container_path is the \"Path of the mount within the container\": an absolute path below /, never / itself (runc refuses that only at start) nor above it",
        ));
    }
    rows.push(row(
        "mount with a relative host path",
        mount("mnt", "/data", "relative/dir"),
        refused,
        "api.proto: Mount.host_path is the \"Path of the mount on the host\": absolute",
    ));
    rows.push(row(
        "mount with NUL",
        mount("mnt", "/da\0ta", &host_dir),
        refused,
        WHY_NUL,
    ));
    rows.push(row(
        "mount with .. that stays inside",
        mount("mntinside", "/data/../srv", &host_dir),
        Expect::Ok,
        "kubelet passes mountPath through unchecked and containerd accepts it: crius mounts at the resolved path (/srv), inside the container",
    ));
    rows.push(row(
        "recursive read-only mount",
        with("rro", &|c| {
            c.mounts = vec![cri::Mount {
                container_path: "/data".into(),
                host_path: host_dir.clone(),
                readonly: true,
                recursive_read_only: true,
                ..Default::default()
            }]
        }),
        Expect::Ok,
        "api.proto: RuntimeHandlerFeatures.recursive_read_only_mounts: runc 1.1.5 reports rro here, so crius honours it",
    ));
    rows.push(row(
        "recursive read-only mount that is not read-only",
        with("rrorw", &|c| {
            c.mounts = vec![cri::Mount {
                container_path: "/data".into(),
                host_path: host_dir.clone(),
                readonly: false,
                recursive_read_only: true,
                ..Default::default()
            }]
        }),
        Expect::Refused(Code::InvalidArgument),
        "api.proto: with recursive_read_only, readonly must be true and propagation PRIVATE",
    ));
    rows.push(row(
        "idmapped mount",
        with("idmap", &|c| {
            let map = vec![cri::IdMapping {
                host_id: 100_000,
                container_id: 0,
                length: 65_536,
            }];
            c.mounts = vec![cri::Mount {
                container_path: "/data".into(),
                host_path: host_dir.clone(),
                uid_mappings: map.clone(),
                gid_mappings: map,
                ..Default::default()
            }]
        }),
        Expect::Refused(Code::FailedPrecondition),
        "runc 1.1 reports no idmapped mounts: the feature the handler lacks is refused before any work (decision 12)",
    ));
    rows.push(row(
        "device that does not exist",
        device("dev", "/dev/xyz", "/dev/no-such-device", "rwm"),
        Expect::Refused(Code::NotFound),
        "api.proto: Device.host_path is the \"Path of the device on the host\"; one that is not there is NotFound",
    ));
    rows.push(row(
        "device that is a regular file",
        device("dev", "/dev/passwd", "/etc/passwd", "r"),
        refused,
        "a Device names a device node; a regular file is not one",
    ));
    rows.push(row(
        "device with bad permissions",
        device("dev", "/dev/null2", "/dev/null", "rwx"),
        refused,
        "api.proto: Device.permissions are \"one or more of r, w, m\"",
    ));
    rows.push(row(
        "device at a relative container path",
        device("dev", "dev/null2", "/dev/null", "rw"),
        refused,
        "api.proto: Device.container_path is the \"Path of the device within the container\": absolute",
    ));
    rows.push(row(
        "run_as_group without a user",
        security(
            "group",
            cri::LinuxContainerSecurityContext {
                run_as_group: Some(cri::Int64Value { value: 3000 }),
                ..Default::default()
            },
        ),
        refused,
        WHY_RUN_AS_GROUP,
    ));
    rows.push(row(
        "run_as_username the image lacks",
        security(
            "user",
            cri::LinuxContainerSecurityContext {
                run_as_username: "mallory".into(),
                ..Default::default()
            },
        ),
        refused,
        "api.proto: run_as_username \"MUST exist in the container image ... otherwise, the runtime MUST error\"",
    ));
    rows.push(row(
        "uid beyond 32 bits",
        security(
            "bigid",
            cri::LinuxContainerSecurityContext {
                run_as_user: Some(cri::Int64Value { value: 1 << 40 }),
                ..Default::default()
            },
        ),
        refused,
        "a uid is 32 bits: crius refuses it rather than wrap it",
    ));
    rows.push(row(
        "unknown capability",
        security(
            "cap",
            cri::LinuxContainerSecurityContext {
                capabilities: Some(cri::Capability {
                    add_capabilities: vec!["CAP_BOGUS".into()],
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
        refused,
        "DESIGN.md decision 9: a capability crius cannot grant fails the create, naming it",
    ));
    rows.push(row(
        "privileged container in an unprivileged pod",
        security(
            "priv",
            cri::LinuxContainerSecurityContext {
                privileged: true,
                ..Default::default()
            },
        ),
        refused,
        "api.proto: LinuxSandboxSecurityContext.privileged \"If a privileged container is to be executed within it, this MUST be true\"",
    ));
    rows.push(row(
        "TARGET pid namespace of an unknown container",
        security(
            "targetns",
            cri::LinuxContainerSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    pid: cri::NamespaceMode::Target as i32,
                    target_id: UNKNOWN.into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
        Expect::Refused(Code::NotFound),
        "api.proto: NamespaceOption.target_id \"must have been previously created in the same pod\"; an unknown one is NotFound",
    ));
    rows.push(row(
        "unknown stop signal",
        with("signal", &|c| c.stop_signal = 999),
        refused,
        WHY_CONVERT,
    ));

    // The running target container, sent what it must refuse.
    let container = t.container.clone();
    rows.push(row(
        "ExecSync without a command",
        Call::ExecSync(cri::ExecSyncRequest {
            container_id: container.clone(),
            cmd: Vec::new(),
            timeout: 1,
        }),
        refused,
        "api.proto: ExecSyncRequest.cmd is the \"Command to execute\"; none is InvalidArgument",
    ));
    rows.push(row(
        "ExecSync with NUL",
        Call::ExecSync(cri::ExecSyncRequest {
            container_id: container.clone(),
            cmd: vec!["echo\0".into()],
            timeout: 1,
        }),
        refused,
        WHY_NUL,
    ));
    rows.push(row(
        "ExecSync with a negative timeout",
        Call::ExecSync(cri::ExecSyncRequest {
            container_id: container.clone(),
            cmd: vec!["true".into()],
            timeout: -1,
        }),
        refused,
        "api.proto: ExecSyncRequest.timeout is in seconds, 0 meaning forever; a negative one means nothing",
    ));
    rows.push(row(
        "UpdateContainerResources without linux resources",
        Call::UpdateContainerResources(cri::UpdateContainerResourcesRequest {
            container_id: container.clone(),
            ..Default::default()
        }),
        refused,
        "crius runs Linux containers only: an update without linux resources updates nothing",
    ));
    rows.push(row(
        "UpdateContainerResources with negative shares",
        Call::UpdateContainerResources(cri::UpdateContainerResourcesRequest {
            container_id: container.clone(),
            linux: Some(cri::LinuxContainerResources {
                cpu_shares: -2,
                ..Default::default()
            }),
            ..Default::default()
        }),
        refused,
        "cgroup cpu shares are unsigned: a negative value is InvalidArgument, the container keeps its limits",
    ));
    rows.push(row(
        "container id given as a pod id",
        Call::PodSandboxStatus(cri::PodSandboxStatusRequest {
            pod_sandbox_id: container,
            verbose: false,
        }),
        Expect::Refused(Code::NotFound),
        WHY_STATUS_MISSING,
    ));
}

fn all_rows(t: &Targets) -> Vec<Row> {
    let mut rows = Vec::new();
    id_rows(&mut rows);
    filter_rows(&mut rows);
    plain_rows(&mut rows);
    image_rows(&mut rows);
    sandbox_rows(&mut rows, t);
    container_rows(&mut rows, t);
    rows
}

/// The printable part of an input label or message (1 MiB values are cut).
fn shown(text: &str) -> String {
    let mut shown: String = text.chars().take(120).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    shown.escape_debug().to_string()
}

struct Env {
    crius: Crius,
    containerd: Containerd,
    rt: RuntimeServiceClient<Channel>,
    img: ImageServiceClient<Channel>,
}

async fn env() -> Result<Env> {
    let containerd = Containerd::start(ContainerdOptions::default())?;
    Images::get()?.import(&containerd, NAMESPACE, BUSYBOX)?;
    let crius = Crius::start(None, containerd.socket(), &[])?;
    let channel = connect::channel(&crius.endpoint()).await?;
    Ok(Env {
        rt: connect::runtime_client(channel.clone()),
        img: connect::image_client(channel),
        crius,
        containerd,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_answers_every_bad_input_with_its_documented_code() -> Result<()> {
    let mut env = env().await?;
    let outcome = sweep(&mut env).await;
    // The panic scan and the SIGTERM exit check run whatever the sweep found.
    let shutdown = env.crius.shutdown();
    let stopped = env.containerd.shutdown();
    outcome?;
    shutdown?;
    stopped
}

async fn sweep(env: &mut Env) -> Result<()> {
    let meta = std::fs::metadata(env.crius.socket()).context("the CRI socket")?;
    ensure!(
        meta.mode() & 0o7777 == 0o660 && meta.uid() == 0,
        "the CRI socket is mode {:o} owned by {}:{}; DESIGN.md says 0660 root",
        meta.mode() & 0o7777,
        meta.uid(),
        meta.gid()
    );

    let logs = tempfile::tempdir()?;
    let pod_config = pods::pod_config("target", "hostile", logs.path());
    let pod = pods::run_pod(&mut env.rt, &pod_config).await?;
    let container = pods::create_and_start(
        &mut env.rt,
        &pod,
        &pod_config,
        pods::container_config("target", BUSYBOX, &["sleep", "3600"]),
    )
    .await?;
    let targets = Targets {
        pod: pod.clone(),
        pod_config,
        container,
        logs,
    };

    let rows = all_rows(&targets);
    let covered: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.call.rpc()).collect();
    let uncovered: Vec<&str> = cri_api::RUNTIME_SERVICE
        .iter()
        .chain(cri_api::IMAGE_SERVICE)
        .copied()
        .filter(|rpc| !covered.contains(rpc))
        .collect();
    ensure!(
        uncovered.is_empty(),
        "RPCs without a bad input: {uncovered:?}"
    );

    let started = Instant::now();
    let total = rows.len();
    let mut failures = Vec::new();
    for Row {
        input,
        call,
        expect,
        why,
    } in rows
    {
        let rpc = call.rpc();
        // A call that never answers is a failure of its row, not a hung suite.
        let answer =
            match tokio::time::timeout(CALL_TIMEOUT, call.send(&mut env.rt, &mut env.img)).await {
                Ok(answer) => answer,
                Err(_) => Err(Status::deadline_exceeded(format!(
                    "no answer within {CALL_TIMEOUT:?}"
                ))),
            };
        let got = match &answer {
            Ok(a) if expect == Expect::Empty && a.items > 0 => Err(format!("{} items", a.items)),
            Ok(a) if expect == Expect::NoImage && a.image_found => Err("an image".to_string()),
            Ok(_) => Ok(()),
            Err(status) => Err(format!("{:?}: {}", status.code(), shown(status.message()))),
        };
        let passed = match (expect, &answer) {
            (Expect::Refused(code), Err(status)) => status.code() == code,
            (Expect::Refused(_), Ok(_)) => false,
            (_, Ok(_)) => got.is_ok(),
            (_, Err(_)) => false,
        };
        // What a row made by mistake (or on purpose) is removed, so the pod stays clean.
        if let Ok(Answer {
            created: Some(created),
            ..
        }) = &answer
        {
            remove(env, created).await?;
        }
        let line = format!(
            "{rpc} × {}: expected {expect:?}, got {}",
            shown(&input),
            match &got {
                Ok(()) => "Ok".to_string(),
                Err(e) => e.clone(),
            }
        );
        println!("{} {line}", if passed { "ok  " } else { "FAIL" });
        if !passed {
            failures.push(format!("{line}\n    why: {why}"));
        }
    }
    println!(
        "hostile sweep: {total} rows over {} RPCs in {:.1?}, {} failed",
        covered.len(),
        started.elapsed(),
        failures.len()
    );

    // crius still answers, and the target objects are whole.
    env.rt
        .version(cri::VersionRequest::default())
        .await
        .context("Version after the sweep")?;
    let status = env
        .rt
        .container_status(cri::ContainerStatusRequest {
            container_id: targets.container.clone(),
            verbose: false,
        })
        .await
        .context("the target container after the sweep")?
        .into_inner()
        .status
        .context("no status")?;
    ensure!(
        status.state == cri::ContainerState::ContainerRunning as i32,
        "the target container is {:?} after the sweep",
        status.state
    );
    pods::stop_and_remove_pod(&mut env.rt, &pod).await?;
    if !failures.is_empty() {
        bail!(
            "{} of {total} bad inputs got the wrong answer:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    Ok(())
}

async fn remove(env: &mut Env, created: &Created) -> Result<()> {
    match created {
        Created::Pod(id) => pods::stop_and_remove_pod(&mut env.rt, id).await?,
        Created::Container(id) => {
            env.rt
                .remove_container(cri::RemoveContainerRequest {
                    container_id: id.clone(),
                })
                .await?;
        }
    }
    Ok(())
}
