//! CRI v1 bindings (`runtime.v1`), as of Kubernetes 1.36.
//!
//! Generated at build time from `proto/api.proto`, but for `ListContainersResponse` and
//! `ListPodSandboxResponse`, which are written by hand in [`listing`] so servers can send
//! containers encoded once and answers they kept. [`stats`] writes a
//! `ListContainerStatsResponse` from borrowed attributes.

/// Package `runtime.v1`: the RuntimeService and ImageService with every message.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("runtime.v1");
    pub use crate::listing::{EncodedContainer, ListContainersResponse, ListPodSandboxResponse};
}

pub mod listing;
pub mod stats;

/// Every RuntimeService RPC by name, in `api.proto` order.
pub const RUNTIME_SERVICE: &[&str] = &[
    "Version",
    "RunPodSandbox",
    "StopPodSandbox",
    "RemovePodSandbox",
    "PodSandboxStatus",
    "ListPodSandbox",
    "StreamPodSandboxes",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "ListContainers",
    "StreamContainers",
    "ContainerStatus",
    "UpdateContainerResources",
    "ReopenContainerLog",
    "ExecSync",
    "Exec",
    "Attach",
    "PortForward",
    "ContainerStats",
    "ListContainerStats",
    "StreamContainerStats",
    "PodSandboxStats",
    "ListPodSandboxStats",
    "StreamPodSandboxStats",
    "UpdateRuntimeConfig",
    "Status",
    "CheckpointContainer",
    "GetContainerEvents",
    "ListMetricDescriptors",
    "ListPodSandboxMetrics",
    "StreamPodSandboxMetrics",
    "RuntimeConfig",
    "UpdatePodSandboxResources",
];

/// Every ImageService RPC by name, in `api.proto` order.
pub const IMAGE_SERVICE: &[&str] = &[
    "ListImages",
    "StreamImages",
    "ImageStatus",
    "PullImage",
    "RemoveImage",
    "ImageFsInfo",
];
