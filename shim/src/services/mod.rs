//! The CRI gRPC services. Each handler validates and converts the request, calls one manager
//! method and converts the answer back; protobuf types go no further than this module.

pub mod container;
pub mod convert;
pub mod cri_metrics;
pub mod events;
pub mod image;
pub mod runtime_info;
pub mod sandbox;
pub mod stats;
pub mod streaming;

use std::pin::Pin;
use std::sync::Arc;

use cri_api::v1 as cri;
use cri_api::v1::image_service_server::ImageService;
use cri_api::v1::runtime_service_server::RuntimeService;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::instrument::call;
use crate::runtime::Crius;

type Answer<T> = Result<Response<T>, Status>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Items per message of the Stream* list calls: small enough that a full node never meets a
/// message-size limit, large enough that a list costs few messages.
const STREAM_CHUNK: usize = 256;

/// A Stream* answer: the List answer cut into messages of at most [`STREAM_CHUNK`] items.
/// An empty list is one empty message, so a client always sees an answer.
fn chunked<T: Send + 'static, R: Send + 'static>(
    mut items: Vec<T>,
    wrap: impl Fn(Vec<T>) -> R,
) -> BoxStream<R> {
    let mut messages = Vec::with_capacity(items.len() / STREAM_CHUNK + 1);
    loop {
        let rest = items.split_off(items.len().min(STREAM_CHUNK));
        messages.push(Ok(wrap(items)));
        if rest.is_empty() {
            break;
        }
        items = rest;
    }
    Box::pin(tokio_stream::iter(messages))
}

/// Both CRI services over one core.
#[derive(Clone)]
pub struct Cri {
    pub crius: Arc<Crius>,
}

fn not_yet(what: &str, issue: &str) -> Error {
    Error::Unimplemented(format!("crius does not implement {what} yet ({issue})"))
}

#[tonic::async_trait]
impl RuntimeService for Cri {
    async fn version(&self, _r: Request<cri::VersionRequest>) -> Answer<cri::VersionResponse> {
        call("Version", async { Ok(runtime_info::version()) }).await
    }
    async fn run_pod_sandbox(
        &self,
        r: Request<cri::RunPodSandboxRequest>,
    ) -> Answer<cri::RunPodSandboxResponse> {
        call("RunPodSandbox", sandbox::run(&self.crius, r.into_inner())).await
    }
    async fn stop_pod_sandbox(
        &self,
        r: Request<cri::StopPodSandboxRequest>,
    ) -> Answer<cri::StopPodSandboxResponse> {
        call("StopPodSandbox", sandbox::stop(&self.crius, r.into_inner())).await
    }
    async fn remove_pod_sandbox(
        &self,
        r: Request<cri::RemovePodSandboxRequest>,
    ) -> Answer<cri::RemovePodSandboxResponse> {
        call(
            "RemovePodSandbox",
            sandbox::remove(&self.crius, r.into_inner()),
        )
        .await
    }
    async fn pod_sandbox_status(
        &self,
        r: Request<cri::PodSandboxStatusRequest>,
    ) -> Answer<cri::PodSandboxStatusResponse> {
        call("PodSandboxStatus", async {
            sandbox::status(&self.crius, r.into_inner())
        })
        .await
    }
    async fn list_pod_sandbox(
        &self,
        r: Request<cri::ListPodSandboxRequest>,
    ) -> Answer<cri::ListPodSandboxResponse> {
        call("ListPodSandbox", async {
            sandbox::list(&self.crius, r.into_inner())
        })
        .await
    }
    type StreamPodSandboxesStream = BoxStream<cri::StreamPodSandboxesResponse>;
    async fn stream_pod_sandboxes(
        &self,
        r: Request<cri::StreamPodSandboxesRequest>,
    ) -> Answer<Self::StreamPodSandboxesStream> {
        call("StreamPodSandboxes", async {
            let items = sandbox::list_decoded(&self.crius, r.into_inner().filter);
            Ok(chunked(items, |pod_sandboxes| {
                cri::StreamPodSandboxesResponse { pod_sandboxes }
            }))
        })
        .await
    }
    async fn create_container(
        &self,
        r: Request<cri::CreateContainerRequest>,
    ) -> Answer<cri::CreateContainerResponse> {
        call(
            "CreateContainer",
            container::create(&self.crius, r.into_inner()),
        )
        .await
    }
    async fn start_container(
        &self,
        r: Request<cri::StartContainerRequest>,
    ) -> Answer<cri::StartContainerResponse> {
        call(
            "StartContainer",
            container::start(&self.crius, r.into_inner()),
        )
        .await
    }
    async fn stop_container(
        &self,
        r: Request<cri::StopContainerRequest>,
    ) -> Answer<cri::StopContainerResponse> {
        call(
            "StopContainer",
            container::stop(&self.crius, r.into_inner()),
        )
        .await
    }
    async fn remove_container(
        &self,
        r: Request<cri::RemoveContainerRequest>,
    ) -> Answer<cri::RemoveContainerResponse> {
        call(
            "RemoveContainer",
            container::remove(&self.crius, r.into_inner()),
        )
        .await
    }
    async fn list_containers(
        &self,
        r: Request<cri::ListContainersRequest>,
    ) -> Answer<cri::ListContainersResponse> {
        call("ListContainers", async {
            container::list(&self.crius, r.into_inner())
        })
        .await
    }
    type StreamContainersStream = BoxStream<cri::StreamContainersResponse>;
    async fn stream_containers(
        &self,
        r: Request<cri::StreamContainersRequest>,
    ) -> Answer<Self::StreamContainersStream> {
        call("StreamContainers", async {
            let filter = r.into_inner().filter;
            let list = container::list_decoded(&self.crius, filter);
            Ok(chunked(list, |containers| cri::StreamContainersResponse {
                containers,
            }))
        })
        .await
    }
    async fn container_status(
        &self,
        r: Request<cri::ContainerStatusRequest>,
    ) -> Answer<cri::ContainerStatusResponse> {
        call("ContainerStatus", async {
            container::status(&self.crius, r.into_inner())
        })
        .await
    }
    async fn update_container_resources(
        &self,
        r: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Answer<cri::UpdateContainerResourcesResponse> {
        call(
            "UpdateContainerResources",
            container::update_resources(&self.crius, r.into_inner()),
        )
        .await
    }
    async fn reopen_container_log(
        &self,
        r: Request<cri::ReopenContainerLogRequest>,
    ) -> Answer<cri::ReopenContainerLogResponse> {
        call(
            "ReopenContainerLog",
            container::reopen_log(&self.crius, r.into_inner()),
        )
        .await
    }
    async fn exec_sync(&self, r: Request<cri::ExecSyncRequest>) -> Answer<cri::ExecSyncResponse> {
        call(
            "ExecSync",
            container::exec_sync(&self.crius, r.into_inner()),
        )
        .await
    }
    async fn exec(&self, r: Request<cri::ExecRequest>) -> Answer<cri::ExecResponse> {
        call("Exec", streaming::exec(&self.crius, r.into_inner())).await
    }
    async fn attach(&self, r: Request<cri::AttachRequest>) -> Answer<cri::AttachResponse> {
        call("Attach", streaming::attach(&self.crius, r.into_inner())).await
    }
    async fn port_forward(
        &self,
        r: Request<cri::PortForwardRequest>,
    ) -> Answer<cri::PortForwardResponse> {
        call(
            "PortForward",
            streaming::port_forward(&self.crius, r.into_inner()),
        )
        .await
    }
    async fn container_stats(
        &self,
        r: Request<cri::ContainerStatsRequest>,
    ) -> Answer<cri::ContainerStatsResponse> {
        call(
            "ContainerStats",
            stats::container(&self.crius, r.into_inner()),
        )
        .await
    }
    async fn list_container_stats(
        &self,
        r: Request<cri::ListContainerStatsRequest>,
    ) -> Answer<cri::ListContainerStatsResponse> {
        call(
            "ListContainerStats",
            stats::list_containers(&self.crius, r.into_inner()),
        )
        .await
    }
    type StreamContainerStatsStream = BoxStream<cri::StreamContainerStatsResponse>;
    async fn stream_container_stats(
        &self,
        r: Request<cri::StreamContainerStatsRequest>,
    ) -> Answer<Self::StreamContainerStatsStream> {
        call("StreamContainerStats", async {
            let filter = r.into_inner().filter;
            let list =
                stats::list_containers(&self.crius, cri::ListContainerStatsRequest { filter })
                    .await?;
            Ok(chunked(list.stats, |container_stats| {
                cri::StreamContainerStatsResponse { container_stats }
            }))
        })
        .await
    }
    async fn pod_sandbox_stats(
        &self,
        r: Request<cri::PodSandboxStatsRequest>,
    ) -> Answer<cri::PodSandboxStatsResponse> {
        call(
            "PodSandboxStats",
            stats::sandbox(&self.crius, r.into_inner()),
        )
        .await
    }
    async fn list_pod_sandbox_stats(
        &self,
        r: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Answer<cri::ListPodSandboxStatsResponse> {
        call(
            "ListPodSandboxStats",
            stats::list_sandboxes(&self.crius, r.into_inner()),
        )
        .await
    }
    type StreamPodSandboxStatsStream = BoxStream<cri::StreamPodSandboxStatsResponse>;
    async fn stream_pod_sandbox_stats(
        &self,
        r: Request<cri::StreamPodSandboxStatsRequest>,
    ) -> Answer<Self::StreamPodSandboxStatsStream> {
        call("StreamPodSandboxStats", async {
            let filter = r.into_inner().filter;
            let list =
                stats::list_sandboxes(&self.crius, cri::ListPodSandboxStatsRequest { filter })
                    .await?;
            Ok(chunked(list.stats, |pod_sandbox_stats| {
                cri::StreamPodSandboxStatsResponse { pod_sandbox_stats }
            }))
        })
        .await
    }
    async fn update_runtime_config(
        &self,
        r: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Answer<cri::UpdateRuntimeConfigResponse> {
        call("UpdateRuntimeConfig", async {
            // The pod CIDR feeds `cni_conf_template` when one is configured and the
            // `ipRanges` capability; without a template it is kept and accepted.
            let cidr = r
                .into_inner()
                .runtime_config
                .and_then(|c| c.network_config)
                .map(|n| n.pod_cidr);
            tracing::info!(pod_cidr = ?cidr, "UpdateRuntimeConfig");
            if let Some(cidr) = cidr {
                self.crius.network.set_pod_cidr(&cidr)?;
            }
            Ok(cri::UpdateRuntimeConfigResponse {})
        })
        .await
    }
    async fn status(&self, r: Request<cri::StatusRequest>) -> Answer<cri::StatusResponse> {
        call("Status", async {
            runtime_info::status(&self.crius, r.into_inner())
        })
        .await
    }
    async fn checkpoint_container(
        &self,
        _r: Request<cri::CheckpointContainerRequest>,
    ) -> Answer<cri::CheckpointContainerResponse> {
        call("CheckpointContainer", async {
            Err(not_yet("CheckpointContainer", "no checkpoint support"))
        })
        .await
    }
    type GetContainerEventsStream = BoxStream<cri::ContainerEventResponse>;
    async fn get_container_events(
        &self,
        _r: Request<cri::GetEventsRequest>,
    ) -> Answer<Self::GetContainerEventsStream> {
        call("GetContainerEvents", async {
            Ok(events::subscribe(&self.crius))
        })
        .await
    }
    async fn list_metric_descriptors(
        &self,
        _r: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Answer<cri::ListMetricDescriptorsResponse> {
        call("ListMetricDescriptors", async {
            Ok(cri_metrics::descriptors())
        })
        .await
    }
    async fn list_pod_sandbox_metrics(
        &self,
        _r: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Answer<cri::ListPodSandboxMetricsResponse> {
        call("ListPodSandboxMetrics", async {
            let pod_metrics = cri_metrics::list(&self.crius).await?;
            Ok(cri::ListPodSandboxMetricsResponse { pod_metrics })
        })
        .await
    }
    type StreamPodSandboxMetricsStream = BoxStream<cri::StreamPodSandboxMetricsResponse>;
    async fn stream_pod_sandbox_metrics(
        &self,
        _r: Request<cri::StreamPodSandboxMetricsRequest>,
    ) -> Answer<Self::StreamPodSandboxMetricsStream> {
        call("StreamPodSandboxMetrics", async {
            let list = cri_metrics::list(&self.crius).await?;
            Ok(chunked(list, |pod_sandbox_metrics| {
                cri::StreamPodSandboxMetricsResponse {
                    pod_sandbox_metrics,
                }
            }))
        })
        .await
    }
    async fn runtime_config(
        &self,
        _r: Request<cri::RuntimeConfigRequest>,
    ) -> Answer<cri::RuntimeConfigResponse> {
        call("RuntimeConfig", async {
            Ok(runtime_info::runtime_config(&self.crius))
        })
        .await
    }
    async fn update_pod_sandbox_resources(
        &self,
        r: Request<cri::UpdatePodSandboxResourcesRequest>,
    ) -> Answer<cri::UpdatePodSandboxResourcesResponse> {
        call("UpdatePodSandboxResources", async {
            let r = r.into_inner();
            if r.pod_sandbox_id.is_empty() {
                return Err(Error::InvalidArgument(
                    "UpdatePodSandboxResources: pod_sandbox_id must not be empty".into(),
                ));
            }
            let update = crate::store::PodResources {
                overhead: r.overhead.map(convert::resources),
                resources: r.resources.map(convert::resources),
            };
            self.crius
                .update_sandbox_resources(&r.pod_sandbox_id, update)
                .await?;
            Ok(cri::UpdatePodSandboxResourcesResponse {})
        })
        .await
    }
}

#[tonic::async_trait]
impl ImageService for Cri {
    async fn list_images(
        &self,
        r: Request<cri::ListImagesRequest>,
    ) -> Answer<cri::ListImagesResponse> {
        call("ListImages", async {
            image::list(&self.crius, r.into_inner())
        })
        .await
    }
    type StreamImagesStream = BoxStream<cri::StreamImagesResponse>;
    async fn stream_images(
        &self,
        r: Request<cri::StreamImagesRequest>,
    ) -> Answer<Self::StreamImagesStream> {
        call("StreamImages", async {
            let filter = r.into_inner().filter;
            let list = image::list(&self.crius, cri::ListImagesRequest { filter })?;
            Ok(chunked(list.images, |images| cri::StreamImagesResponse {
                images,
            }))
        })
        .await
    }
    async fn image_status(
        &self,
        r: Request<cri::ImageStatusRequest>,
    ) -> Answer<cri::ImageStatusResponse> {
        call("ImageStatus", async {
            image::status(&self.crius, r.into_inner())
        })
        .await
    }
    async fn pull_image(
        &self,
        r: Request<cri::PullImageRequest>,
    ) -> Answer<cri::PullImageResponse> {
        image::pull_rpc(&self.crius, r.into_inner()).await
    }
    async fn remove_image(
        &self,
        r: Request<cri::RemoveImageRequest>,
    ) -> Answer<cri::RemoveImageResponse> {
        call("RemoveImage", image::remove(&self.crius, r.into_inner())).await
    }
    async fn image_fs_info(
        &self,
        _r: Request<cri::ImageFsInfoRequest>,
    ) -> Answer<cri::ImageFsInfoResponse> {
        call("ImageFsInfo", async { image::fs_info(&self.crius) }).await
    }
}
