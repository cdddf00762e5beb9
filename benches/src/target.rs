//! One CRI endpoint under test: its clients, the pods and containers the bench made on it,
//! and the calls the bench measures.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use conformance::runner::connect::{image_client, runtime_client, socket_path};
use cri_api::v1 as cri;
use cri_api::v1::image_service_client::ImageServiceClient;
use cri_api::v1::runtime_service_client::RuntimeServiceClient;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

use crate::wire;
use tower::service_fn;

use crate::measure::Latencies;

/// Containers per pod when populating, unless told otherwise (keeps the reference's
/// netns+veth count at N/10).
pub const CONTAINERS_PER_POD: usize = 10;

/// A container that stops at once on SIGTERM (a plain `sleep` as PID 1 ignores it, so every
/// stop would wait out the timeout).
const COMMAND: [&str; 3] = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"];

/// HTTP/2 stream and connection flow-control window of the bench's client. kubelet's grpc-go
/// client sizes its windows dynamically (BDP estimation, up to 16 MiB); tonic's fixed 64 KiB
/// default makes a ~1 MB ListContainers response at N = 1000 wait for window updates, so the
/// client rather than the endpoint would set the pace. Every endpoint gets this same client.
const FLOW_CONTROL_WINDOW: u32 = 16 * 1024 * 1024;

/// A channel over the endpoint's unix socket (`unix:///path.sock`) with kubelet-sized
/// flow-control windows; connects eagerly so a wrong path fails here.
async fn channel(endpoint: &str) -> Result<Channel> {
    let path = socket_path(endpoint)?;
    let connector = service_fn(move |_| {
        let path = path.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
    });
    Endpoint::try_from("http://[::]:0")?
        .initial_stream_window_size(Some(FLOW_CONTROL_WINDOW))
        .initial_connection_window_size(Some(FLOW_CONTROL_WINDOW))
        .connect_with_connector(connector)
        .await
        .with_context(|| format!("connecting to {endpoint}"))
}

#[derive(Clone)]
pub struct Clients {
    pub rt: RuntimeServiceClient<Channel>,
    pub img: ImageServiceClient<Channel>,
    /// For the `(wire)` calls.
    pub channel: Channel,
}

impl Clients {
    pub async fn connect(endpoint: &str) -> Result<Clients> {
        let channel = channel(endpoint).await?;
        Ok(Clients {
            rt: runtime_client(channel.clone()),
            img: image_client(channel.clone()),
            channel,
        })
    }
}

/// The labels kubelet puts on a pod and on each of its containers: the pod's name, namespace
/// and uid; and the bench's mark.
fn kubelet_pod_identity(pod: &cri::PodSandboxMetadata) -> HashMap<String, String> {
    HashMap::from([
        ("io.kubernetes.pod.name".to_string(), pod.name.clone()),
        (
            "io.kubernetes.pod.namespace".to_string(),
            pod.namespace.clone(),
        ),
        ("io.kubernetes.pod.uid".to_string(), pod.uid.clone()),
        ("crius-bench".to_string(), "yes".to_string()),
    ])
}

/// A pod's labels as kubelet sends them: the pod's own (one `app` label here) and its
/// identity; and this run's label.
fn kubelet_pod_labels(pod: &cri::PodSandboxMetadata) -> HashMap<String, String> {
    let mut labels = kubelet_pod_identity(pod);
    labels.insert("app".to_string(), "crius-bench".to_string());
    labels.insert(RUN_LABEL.to_string(), run_id());
    labels
}

/// A pod's annotations as kubelet sends them for a pod from the API server.
fn kubelet_pod_annotations() -> HashMap<String, String> {
    HashMap::from([
        (
            "kubernetes.io/config.seen".to_string(),
            "2026-11-30T12:00:00.000000000Z".to_string(),
        ),
        ("kubernetes.io/config.source".to_string(), "api".to_string()),
    ])
}

/// A container's labels as kubelet sends them (every container of a node has these four),
/// and the bench's mark.
fn kubelet_container_labels(pod: &cri::PodSandboxMetadata, name: &str) -> HashMap<String, String> {
    let mut labels = kubelet_pod_identity(pod);
    labels.insert("io.kubernetes.container.name".to_string(), name.to_string());
    labels
}

/// A container's annotations as kubelet sends them for a container without ports or a
/// preStop hook.
fn kubelet_container_annotations(name: &str) -> HashMap<String, String> {
    HashMap::from([
        (
            "io.kubernetes.container.hash".to_string(),
            format!("{:08x}", hash(name) as u32),
        ),
        (
            "io.kubernetes.container.restartCount".to_string(),
            "0".to_string(),
        ),
        (
            "io.kubernetes.container.terminationMessagePath".to_string(),
            "/dev/termination-log".to_string(),
        ),
        (
            "io.kubernetes.container.terminationMessagePolicy".to_string(),
            "File".to_string(),
        ),
        (
            "io.kubernetes.pod.terminationGracePeriod".to_string(),
            "30".to_string(),
        ),
    ])
}

/// A pod uid shaped like kubelet's (a UUID), derived from the pod's name.
fn uid_of(name: &str) -> String {
    conformance::runner::uid_from(hash(name))
}

/// The label that marks every pod of one bench run, with [`run_id`] as its value.
pub const RUN_LABEL: &str = "crius-bench-run";

/// This run's id: the bench's process id.
pub fn run_id() -> String {
    std::process::id().to_string()
}

#[derive(Debug, Clone)]
pub struct Pod {
    pub id: String,
    pub config: cri::PodSandboxConfig,
    pub containers: Vec<String>,
}

pub struct Target {
    pub name: String,
    pub endpoint: String,
    pub image: String,
    pub clients: Clients,
    pub pods: Vec<Pod>,
    pub running: Vec<String>,
    /// Directory for pod log directories.
    pub log_root: PathBuf,
    /// Containers per pod when populating.
    pub per_pod: usize,
    counter: AtomicUsize,
}

pub fn status_text(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

impl Target {
    pub async fn new(name: &str, endpoint: &str, image: &str, log_root: PathBuf) -> Result<Target> {
        Ok(Target {
            name: name.to_string(),
            endpoint: endpoint.to_string(),
            image: image.to_string(),
            clients: Clients::connect(endpoint).await?,
            pods: Vec::new(),
            running: Vec::new(),
            log_root,
            per_pod: CONTAINERS_PER_POD,
            counter: AtomicUsize::new(0),
        })
    }

    /// Reconnects (after the endpoint restarted).
    pub async fn reconnect(&mut self) -> Result<()> {
        self.clients = Clients::connect(&self.endpoint).await?;
        Ok(())
    }

    pub fn container_count(&self) -> usize {
        self.pods.iter().map(|p| p.containers.len()).sum()
    }

    fn unique(&self, what: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("bench-{what}-{}-{n}", std::process::id())
    }

    pub fn sandbox_config(&self) -> Result<cri::PodSandboxConfig> {
        let name = self.unique("pod");
        let log_directory = self.log_root.join(&self.name).join(&name);
        std::fs::create_dir_all(&log_directory)
            .with_context(|| format!("creating {}", log_directory.display()))?;
        let metadata = cri::PodSandboxMetadata {
            uid: uid_of(&name),
            name,
            namespace: "crius-bench".into(),
            attempt: 0,
        };
        Ok(cri::PodSandboxConfig {
            metadata: Some(metadata.clone()),
            log_directory: log_directory.to_string_lossy().into_owned(),
            labels: kubelet_pod_labels(&metadata),
            annotations: kubelet_pod_annotations(),
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: cri::NamespaceMode::Pod as i32,
                        pid: cri::NamespaceMode::Container as i32,
                        ipc: cri::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    /// A container of the pod `pod`, labelled and annotated as kubelet does it.
    pub fn container_config(&self, pod: &cri::PodSandboxConfig) -> cri::ContainerConfig {
        let name = self.unique("ctr");
        let pod = pod.metadata.clone().unwrap_or_default();
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.clone(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: self.image.clone(),
                ..Default::default()
            }),
            command: COMMAND.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}.log"),
            labels: kubelet_container_labels(&pod, &name),
            annotations: kubelet_container_annotations(&name),
            ..Default::default()
        }
    }

    /// Adds pods and containers until there are `n` containers, `running` of them running
    /// (the rest created, every tenth exited), with `workers` pods filled in parallel.
    pub async fn grow_to(&mut self, n: usize, running: usize, workers: usize) -> Result<()> {
        let have = self.container_count();
        if have >= n {
            return Ok(());
        }
        let mut plan: Vec<(Option<usize>, usize)> = Vec::new();
        let mut missing = n - have;
        if let Some((index, last)) = self.pods.iter().enumerate().next_back() {
            let room = self
                .per_pod
                .saturating_sub(last.containers.len())
                .min(missing);
            if room > 0 {
                plan.push((Some(index), room));
                missing -= room;
            }
        }
        while missing > 0 {
            let count = missing.min(self.per_pod.max(1));
            plan.push((None, count));
            missing -= count;
        }
        let running_now = AtomicUsize::new(self.running.len());
        let created = AtomicUsize::new(0);
        let plan = Mutex::new(plan.into_iter());
        let this: &Target = self;
        let worker = || async {
            let mut results = Vec::new();
            loop {
                let next = plan.lock().unwrap_or_else(PoisonError::into_inner).next();
                let Some((pod, count)) = next else { break };
                let pod = match pod {
                    Some(index) => this.pods[index].clone(),
                    None => {
                        let config = this.sandbox_config()?;
                        let id = run_pod(&this.clients, config.clone()).await?;
                        Pod {
                            id,
                            config,
                            containers: Vec::new(),
                        }
                    }
                };
                let mut filled = Pod {
                    containers: Vec::new(),
                    ..pod.clone()
                };
                let mut started = Vec::new();
                for _ in 0..count {
                    let id = create(
                        &this.clients,
                        &pod.id,
                        this.container_config(&pod.config),
                        pod.config.clone(),
                    )
                    .await?;
                    let index = created.fetch_add(1, Ordering::Relaxed);
                    if running_now.fetch_add(1, Ordering::Relaxed) < running {
                        start(&this.clients, &id).await?;
                        started.push(id.clone());
                    } else {
                        running_now.fetch_sub(1, Ordering::Relaxed);
                        if index % 10 == 9 {
                            start(&this.clients, &id).await?;
                            stop(&this.clients, &id, 0).await?;
                        }
                    }
                    filled.containers.push(id);
                }
                results.push((filled, started));
            }
            anyhow::Ok(results)
        };
        let results = join_all((0..workers.max(1)).map(|_| worker()).collect()).await;
        for result in results {
            for (filled, started) in result? {
                self.running.extend(started);
                match self.pods.iter_mut().find(|p| p.id == filled.id) {
                    Some(pod) => pod.containers.extend(filled.containers),
                    None => self.pods.push(filled),
                }
            }
        }
        Ok(())
    }

    /// Stops and removes every pod this bench run made (removing a pod removes its
    /// containers): those it keeps, and any other carrying its run label, such as pods of a
    /// step that a signal or an error cut short before they were recorded.
    pub async fn clean(&mut self) -> Result<()> {
        let mut ids: Vec<String> = std::mem::take(&mut self.pods)
            .into_iter()
            .map(|p| p.id)
            .collect();
        for id in self.pods_of_this_run().await? {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        for id in &ids {
            stop_pod(&self.clients, id).await?;
            remove_pod(&self.clients, id).await?;
        }
        self.running.clear();
        Ok(())
    }

    /// The ids of the pods labelled with this run's id.
    pub async fn pods_of_this_run(&self) -> Result<Vec<String>> {
        let request = cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                label_selector: HashMap::from([(RUN_LABEL.to_string(), run_id())]),
                ..Default::default()
            }),
        };
        let answer = self
            .clients
            .rt
            .clone()
            .list_pod_sandbox(request)
            .await
            .map_err(|s| anyhow::anyhow!("ListPodSandbox: {}", status_text(&s)))?;
        Ok(answer
            .into_inner()
            .items
            .into_iter()
            .map(|p| p.id)
            .collect())
    }
}

async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs = Vec::with_capacity(pinned.len());
    // Poll all concurrently: a tiny join_all without another dependency.
    let mut done: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, future) in done.iter_mut().zip(pinned.iter_mut()) {
            if slot.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(output) => *slot = Some(output),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.extend(done.into_iter().flatten());
    outputs
}

fn hash(text: &str) -> u128 {
    // FNV-1a, only to derive stable fake ids (a pod's UID, a container's hash) from names.
    text.bytes()
        .fold(0x6c62272e07bb014262b821756295c58d_u128, |h, b| {
            (h ^ u128::from(b)).wrapping_mul(0x0000000001000000000000000000013B)
        })
}

pub async fn run_pod(clients: &Clients, config: cri::PodSandboxConfig) -> Result<String> {
    let request = cri::RunPodSandboxRequest {
        config: Some(config),
        runtime_handler: String::new(),
    };
    let response = clients
        .rt
        .clone()
        .run_pod_sandbox(request)
        .await
        .map_err(|s| anyhow::anyhow!("RunPodSandbox: {}", status_text(&s)))?;
    Ok(response.into_inner().pod_sandbox_id)
}

pub async fn create(
    clients: &Clients,
    pod: &str,
    config: cri::ContainerConfig,
    sandbox_config: cri::PodSandboxConfig,
) -> Result<String> {
    let request = cri::CreateContainerRequest {
        pod_sandbox_id: pod.to_string(),
        config: Some(config),
        sandbox_config: Some(sandbox_config),
    };
    let response = clients
        .rt
        .clone()
        .create_container(request)
        .await
        .map_err(|s| anyhow::anyhow!("CreateContainer: {}", status_text(&s)))?;
    Ok(response.into_inner().container_id)
}

pub async fn start(clients: &Clients, id: &str) -> Result<()> {
    let request = cri::StartContainerRequest {
        container_id: id.to_string(),
    };
    clients
        .rt
        .clone()
        .start_container(request)
        .await
        .map_err(|s| anyhow::anyhow!("StartContainer: {}", status_text(&s)))?;
    Ok(())
}

pub async fn stop(clients: &Clients, id: &str, timeout: i64) -> Result<()> {
    let request = cri::StopContainerRequest {
        container_id: id.to_string(),
        timeout,
    };
    clients
        .rt
        .clone()
        .stop_container(request)
        .await
        .map_err(|s| anyhow::anyhow!("StopContainer: {}", status_text(&s)))?;
    Ok(())
}

pub async fn remove(clients: &Clients, id: &str) -> Result<()> {
    let request = cri::RemoveContainerRequest {
        container_id: id.to_string(),
    };
    clients
        .rt
        .clone()
        .remove_container(request)
        .await
        .map_err(|s| anyhow::anyhow!("RemoveContainer: {}", status_text(&s)))?;
    Ok(())
}

pub async fn stop_pod(clients: &Clients, id: &str) -> Result<()> {
    let request = cri::StopPodSandboxRequest {
        pod_sandbox_id: id.to_string(),
    };
    clients
        .rt
        .clone()
        .stop_pod_sandbox(request)
        .await
        .map_err(|s| anyhow::anyhow!("StopPodSandbox: {}", status_text(&s)))?;
    Ok(())
}

pub async fn remove_pod(clients: &Clients, id: &str) -> Result<()> {
    let request = cri::RemovePodSandboxRequest {
        pod_sandbox_id: id.to_string(),
    };
    clients
        .rt
        .clone()
        .remove_pod_sandbox(request)
        .await
        .map_err(|s| anyhow::anyhow!("RemovePodSandbox: {}", status_text(&s)))?;
    Ok(())
}

/// The read-only calls kubelet makes, measured one at a time.
/// `(wire)`: timed to the answer's last byte, not decoded (see `wire.rs`). `(floor)` and
/// `(bare)` are not calls to the endpoint: the same answer's bytes over a bare socket pair
/// inside the bench (see `floor.rs`), and from a gRPC server inside the bench that does
/// nothing else, to the same client (see `bare.rs`).
pub const HOT_READS: [&str; 17] = [
    "Version",
    "Status",
    "RuntimeConfig",
    "ListPodSandbox",
    "ListPodSandbox(wire)",
    "PodSandboxStatus",
    "ListContainers",
    "ListContainers(wire)",
    FLOOR,
    BARE,
    "ListContainers(pod)",
    "ContainerStatus",
    "ListImages",
    "ImageStatus",
    "ImageFsInfo",
    "ContainerStats",
    "ListContainerStats",
];

/// The row of the bare transfer beside `ListContainers(wire)`.
pub const FLOOR: &str = "ListContainers(floor)";
/// The row of the bare gRPC server beside it.
pub const BARE: &str = "ListContainers(bare)";

/// Whether `rpc` names a row measured inside the bench with an endpoint's answer length
/// rather than a call to the endpoint (no ratio between two of them means anything).
pub fn stands_in(rpc: &str) -> bool {
    rpc == FLOOR || rpc == BARE
}

/// ListContainers's gRPC path.
pub const LIST_CONTAINERS_PATH: &str = "/runtime.v1.RuntimeService/ListContainers";

/// The length in bytes of the endpoint's unfiltered ListContainers answer, as sent.
pub async fn list_containers_len(clients: &Clients) -> std::result::Result<usize, tonic::Status> {
    wire::call(
        &clients.channel,
        LIST_CONTAINERS_PATH,
        cri::ListContainersRequest { filter: None },
    )
    .await
}

/// Issues one call of `rpc`; `i` picks which pod or container it is about.
pub async fn read(
    clients: &Clients,
    target: &Snapshot,
    rpc: &str,
    i: usize,
) -> std::result::Result<(), tonic::Status> {
    let mut rt = clients.rt.clone();
    let mut img = clients.img.clone();
    let pod = || {
        target
            .pods
            .get(i % target.pods.len().max(1))
            .cloned()
            .unwrap_or_default()
    };
    let container = || {
        target
            .containers
            .get(i % target.containers.len().max(1))
            .cloned()
            .unwrap_or_default()
    };
    let running = || {
        target
            .running
            .get(i % target.running.len().max(1))
            .cloned()
            .unwrap_or_default()
    };
    match rpc {
        "Version" => drop(
            rt.version(cri::VersionRequest {
                version: "v1".into(),
            })
            .await?,
        ),
        "Status" => drop(rt.status(cri::StatusRequest { verbose: false }).await?),
        "RuntimeConfig" => drop(rt.runtime_config(cri::RuntimeConfigRequest {}).await?),
        "ListPodSandbox" => drop(
            rt.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
                .await?,
        ),
        "PodSandboxStatus" => drop(
            rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: pod(),
                verbose: false,
            })
            .await?,
        ),
        "ListContainers" => drop(
            rt.list_containers(cri::ListContainersRequest { filter: None })
                .await?,
        ),
        "ListPodSandbox(wire)" => drop(
            wire::call(
                &clients.channel,
                "/runtime.v1.RuntimeService/ListPodSandbox",
                cri::ListPodSandboxRequest { filter: None },
            )
            .await?,
        ),
        "ListContainers(wire)" => drop(list_containers_len(clients).await?),
        "ListContainers(pod)" => {
            let filter = cri::ContainerFilter {
                pod_sandbox_id: pod(),
                ..Default::default()
            };
            drop(
                rt.list_containers(cri::ListContainersRequest {
                    filter: Some(filter),
                })
                .await?,
            )
        }
        "ContainerStatus" => drop(
            rt.container_status(cri::ContainerStatusRequest {
                container_id: container(),
                verbose: false,
            })
            .await?,
        ),
        "ListImages" => drop(
            img.list_images(cri::ListImagesRequest { filter: None })
                .await?,
        ),
        "ImageStatus" => {
            let image = Some(cri::ImageSpec {
                image: target.image.clone(),
                ..Default::default()
            });
            drop(
                img.image_status(cri::ImageStatusRequest {
                    image,
                    verbose: false,
                })
                .await?,
            )
        }
        "ImageFsInfo" => drop(img.image_fs_info(cri::ImageFsInfoRequest {}).await?),
        "ContainerStats" => drop(
            rt.container_stats(cri::ContainerStatsRequest {
                container_id: running(),
            })
            .await?,
        ),
        "ListContainerStats" => {
            let filter = Some(cri::ContainerStatsFilter::default());
            drop(
                rt.list_container_stats(cri::ListContainerStatsRequest { filter })
                    .await?,
            )
        }
        other => {
            return Err(tonic::Status::invalid_argument(format!(
                "bench does not know {other}"
            )))
        }
    }
    Ok(())
}

/// Ids the read calls rotate over.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub image: String,
    pub pods: Vec<String>,
    pub containers: Vec<String>,
    pub running: Vec<String>,
}

impl Target {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            image: self.image.clone(),
            pods: self.pods.iter().map(|p| p.id.clone()).collect(),
            containers: self
                .pods
                .iter()
                .flat_map(|p| p.containers.iter().cloned())
                .collect(),
            running: self.running.clone(),
        }
    }
}

/// Calls `rpc` back to back for `duration`.
pub async fn measure_read(
    clients: &Clients,
    snapshot: &Snapshot,
    rpc: &str,
    duration: Duration,
) -> (Latencies, Duration) {
    let mut latencies = Latencies::new();
    let begin = Instant::now();
    let mut i = 0;
    while begin.elapsed() < duration || i < 3 {
        let t = Instant::now();
        match read(clients, snapshot, rpc, i).await {
            Ok(()) => latencies.record(t.elapsed()),
            Err(status) => latencies.error(status_text(&status)),
        }
        i += 1;
    }
    (latencies, begin.elapsed())
}

/// The lifecycle steps, in order, plus the whole pod+container from scratch.
pub const LIFECYCLE: [&str; 8] = [
    "RunPodSandbox",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "StopPodSandbox",
    "RemovePodSandbox",
    "pod+container from scratch",
];

/// One pod with one container through its whole life; records each step.
pub async fn lifecycle_once(
    target: &Target,
    latencies: &mut HashMap<&'static str, Latencies>,
) -> Result<()> {
    let clients = &target.clients;
    let config = target.sandbox_config()?;
    let scratch = Instant::now();
    let t = Instant::now();
    let pod = run_pod(clients, config.clone()).await?;
    record(latencies, "RunPodSandbox", t);
    let t = Instant::now();
    let container = target.container_config(&config);
    let id = create(clients, &pod, container, config).await?;
    record(latencies, "CreateContainer", t);
    let t = Instant::now();
    start(clients, &id).await?;
    record(latencies, "StartContainer", t);
    record(latencies, "pod+container from scratch", scratch);
    let t = Instant::now();
    stop(clients, &id, 10).await?;
    record(latencies, "StopContainer", t);
    let t = Instant::now();
    remove(clients, &id).await?;
    record(latencies, "RemoveContainer", t);
    let t = Instant::now();
    stop_pod(clients, &pod).await?;
    record(latencies, "StopPodSandbox", t);
    let t = Instant::now();
    remove_pod(clients, &pod).await?;
    record(latencies, "RemovePodSandbox", t);
    Ok(())
}

fn record(latencies: &mut HashMap<&'static str, Latencies>, rpc: &'static str, since: Instant) {
    latencies.entry(rpc).or_default().record(since.elapsed());
}

/// kubelet's shape: every second ListPodSandbox, ListContainers and PodSandboxStatus of each
/// pod listed; every 10 s ListContainerStats and ImageFsInfo (clients staggered over those
/// 10 s). Runs until `until`.
pub async fn kubelet_client(
    clients: Clients,
    index: usize,
    until: Instant,
) -> HashMap<&'static str, Latencies> {
    let mut latencies: HashMap<&'static str, Latencies> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut second = index;
    let mut rt = clients.rt.clone();
    let mut img = clients.img.clone();
    while Instant::now() < until {
        tick.tick().await;
        let t = Instant::now();
        let pods = match rt
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await
        {
            Ok(response) => {
                record(&mut latencies, "ListPodSandbox", t);
                response.into_inner().items
            }
            Err(s) => {
                latencies
                    .entry("ListPodSandbox")
                    .or_default()
                    .error(status_text(&s));
                Vec::new()
            }
        };
        let t = Instant::now();
        match rt
            .list_containers(cri::ListContainersRequest { filter: None })
            .await
        {
            Ok(_) => record(&mut latencies, "ListContainers", t),
            Err(s) => latencies
                .entry("ListContainers")
                .or_default()
                .error(status_text(&s)),
        }
        for pod in pods {
            let t = Instant::now();
            match rt
                .pod_sandbox_status(cri::PodSandboxStatusRequest {
                    pod_sandbox_id: pod.id,
                    verbose: false,
                })
                .await
            {
                Ok(_) => record(&mut latencies, "PodSandboxStatus", t),
                // Pods the lifecycle loop just removed.
                Err(s) if s.code() == tonic::Code::NotFound => {}
                Err(s) => latencies
                    .entry("PodSandboxStatus")
                    .or_default()
                    .error(status_text(&s)),
            }
        }
        if second.is_multiple_of(10) {
            let t = Instant::now();
            let filter = Some(cri::ContainerStatsFilter::default());
            match rt
                .list_container_stats(cri::ListContainerStatsRequest { filter })
                .await
            {
                Ok(_) => record(&mut latencies, "ListContainerStats", t),
                Err(s) => latencies
                    .entry("ListContainerStats")
                    .or_default()
                    .error(status_text(&s)),
            }
            let t = Instant::now();
            match img.image_fs_info(cri::ImageFsInfoRequest {}).await {
                Ok(_) => record(&mut latencies, "ImageFsInfo", t),
                Err(s) => latencies
                    .entry("ImageFsInfo")
                    .or_default()
                    .error(status_text(&s)),
            }
        }
        second += 1;
    }
    latencies
}

/// The command of the exec probes: short, one line of output, like a readiness probe that
/// reads a file.
pub const PROBE_COMMAND: [&str; 2] = ["cat", "/etc/hostname"];

/// What the exec probes of one load saw.
#[derive(Default)]
pub struct Probes {
    /// Every probe's time, failed ones included (a timed-out probe took at least the timeout).
    pub latencies: Latencies,
    /// Probes that took longer than the timeout: kubelet counts each as failed.
    pub over_timeout: u64,
}

impl Probes {
    pub fn merge(&mut self, other: &Probes) {
        self.latencies.merge(&other.latencies);
        self.over_timeout += other.over_timeout;
    }
}

/// kubelet's exec readiness probes: every `interval`, an ExecSync of [`PROBE_COMMAND`] in
/// each of `containers` with `timeout`, one prober per container as kubelet has one probe
/// worker each; the probers start spread evenly over the first `interval`, so the probes
/// arrive at an even rate. A prober waits for its probe's answer before the next tick, as
/// kubelet's does. Runs until `until`.
pub async fn exec_prober(
    clients: Clients,
    containers: Vec<String>,
    interval: Duration,
    timeout: Duration,
    until: Instant,
) -> Probes {
    let begin = tokio::time::Instant::now();
    let count = u32::try_from(containers.len().max(1)).unwrap_or(u32::MAX);
    let mut workers = Vec::new();
    for (index, container) in containers.into_iter().enumerate() {
        let offset = interval / count * u32::try_from(index).unwrap_or(u32::MAX);
        let mut rt = clients.rt.clone();
        workers.push(tokio::spawn(async move {
            let mut probes = Probes::default();
            let mut tick = tokio::time::interval_at(begin + offset, interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if Instant::now() >= until {
                    break;
                }
                let request = cri::ExecSyncRequest {
                    container_id: container.clone(),
                    cmd: PROBE_COMMAND.iter().map(|s| s.to_string()).collect(),
                    timeout: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
                };
                let t = Instant::now();
                let answer = rt.exec_sync(request).await;
                let took = t.elapsed();
                probes.latencies.record(took);
                if took > timeout {
                    probes.over_timeout += 1;
                }
                match answer {
                    Ok(r) if r.get_ref().exit_code == 0 => {}
                    Ok(r) => probes.latencies.error(format!(
                        "ExecSync: the probe exited with {}: {}",
                        r.get_ref().exit_code,
                        String::from_utf8_lossy(&r.get_ref().stderr).trim()
                    )),
                    Err(s) => probes
                        .latencies
                        .error(format!("ExecSync: {}", status_text(&s))),
                }
            }
            probes
        }));
    }
    let mut all = Probes::default();
    for worker in workers {
        match worker.await {
            Ok(probes) => all.merge(&probes),
            Err(e) => all.latencies.error(format!("a prober failed: {e}")),
        }
    }
    all
}

/// VmRSS (KiB) and utime+stime (seconds) of a process.
pub fn process_usage(pid: u32, ticks_per_second: f64) -> Result<(u64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    Ok((
        rss,
        cpu_seconds(&stat, ticks_per_second).context("unexpected /proc/<pid>/stat")?,
    ))
}

/// utime + stime from `/proc/<pid>/stat` (fields 14 and 15; the command may hold spaces).
fn cpu_seconds(stat: &str, ticks_per_second: f64) -> Option<f64> {
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / ticks_per_second)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_from_proc_stat() {
        let stat =
            "1234 (cri us) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 150 0 0 20 0 8 0 100 0 0";
        assert_eq!(cpu_seconds(stat, 100.0), Some(4.0));
    }

    #[tokio::test]
    async fn join_all_keeps_order() {
        let outputs = join_all(vec![
            Box::pin(async { 1 })
                as std::pin::Pin<Box<dyn std::future::Future<Output = i32> + Send>>,
            Box::pin(async {
                tokio::task::yield_now().await;
                2
            }),
        ])
        .await;
        assert_eq!(outputs, vec![1, 2]);
    }
}
