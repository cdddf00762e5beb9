//! ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats.
//!
//! Reading cgroup files and measuring writable layers is blocking file I/O, so each call
//! runs on the blocking pool.

use std::sync::Arc;

use bytes::Bytes;

use cri_api::v1 as cri;

use super::convert::{matches_selector, to_map};
use crate::error::{Error, Result};
use crate::layer_usage::WritableLayer;
use crate::runtime::Crius;
use crate::stats::{ContainerUsage, Sample, SandboxUsage};
use crate::store::Container;

pub(super) async fn blocking<T: Send + 'static>(
    crius: &Arc<Crius>,
    work: impl FnOnce(&Crius) -> Result<T> + Send + 'static,
) -> Result<T> {
    let crius = Arc::clone(crius);
    tokio::task::spawn_blocking(move || work(&crius))
        .await
        .map_err(|e| Error::Internal(format!("stats worker failed: {e}")))?
}

pub async fn container(
    crius: &Arc<Crius>,
    request: cri::ContainerStatsRequest,
) -> Result<cri::ContainerStatsResponse> {
    if request.container_id.is_empty() {
        return Err(Error::InvalidArgument(
            "ContainerStats: container_id must not be empty".into(),
        ));
    }
    let usage = blocking(crius, move |c| c.container_usage(&request.container_id)).await?;
    Ok(cri::ContainerStatsResponse {
        stats: Some(container_stats(&usage)),
    })
}

/// Whether ListContainerStats with `filter` selects `container`. Ids may be given as unique
/// prefixes, as in ListContainers.
fn selected(filter: &cri::ContainerStatsFilter, container: &Container) -> bool {
    container.meta.id.starts_with(&filter.id)
        && container
            .meta
            .sandbox_id
            .starts_with(&filter.pod_sandbox_id)
        && matches_selector(&container.meta.config.labels, &filter.label_selector)
}

pub async fn list_containers(
    crius: &Arc<Crius>,
    request: cri::ListContainerStatsRequest,
) -> Result<cri::ListContainerStatsResponse> {
    let filter = request.filter.unwrap_or_default();
    let usages = blocking(crius, move |c| {
        c.list_container_usage(|container| selected(&filter, container))
    })
    .await?;
    Ok(cri::ListContainerStatsResponse {
        stats: usages.iter().map(container_stats).collect(),
    })
}

/// Entries per piece of an [`EncodedList`]: ~60 KB with kubelet's labels and annotations.
const PIECE: usize = 64;

/// ListContainerStats's answer as bytes: its length, known up front, and its entries,
/// encoded piece by piece only as the answer is sent. A node's whole answer is about as large
/// as its full container list; written at once it would be held in full until the client had
/// read it all, for every call in flight.
pub struct EncodedList {
    usages: Vec<ContainerUsage>,
    /// Each piece's length; their sum is the answer's.
    pieces: Vec<usize>,
}

impl EncodedList {
    fn new(usages: Vec<ContainerUsage>) -> Self {
        let pieces = usages
            .chunks(PIECE)
            .map(|part| cri_api::stats::encoded_len(part.iter().map(entry)))
            .collect();
        EncodedList { usages, pieces }
    }

    /// The encoded answer's length.
    pub fn encoded_len(&self) -> usize {
        self.pieces.iter().sum()
    }

    /// The answer's bytes, each piece encoded when it is asked for.
    pub fn into_pieces(self) -> impl Iterator<Item = Bytes> + Send + 'static {
        let EncodedList { usages, pieces } = self;
        pieces.into_iter().enumerate().map(move |(i, len)| {
            let part = &usages[i * PIECE..usages.len().min((i + 1) * PIECE)];
            let mut buf = Vec::with_capacity(len);
            cri_api::stats::encode(part.iter().map(entry), &mut buf);
            debug_assert_eq!(buf.len(), len);
            Bytes::from(buf)
        })
    }
}

/// ListContainerStats as the bytes of its answer, written from the store without building
/// the messages first (see `cri_api::stats`); `crate::wire` sends them.
pub async fn list_containers_encoded(
    crius: &Arc<Crius>,
    request: cri::ListContainerStatsRequest,
) -> Result<EncodedList> {
    let filter = request.filter.unwrap_or_default();
    let answer = blocking(crius, move |c| {
        let usages = c.list_container_usage(|container| selected(&filter, container))?;
        Ok(EncodedList::new(usages))
    })
    .await?;
    crate::memory::note_answer(answer.encoded_len());
    Ok(answer)
}

pub async fn sandbox(
    crius: &Arc<Crius>,
    request: cri::PodSandboxStatsRequest,
) -> Result<cri::PodSandboxStatsResponse> {
    if request.pod_sandbox_id.is_empty() {
        return Err(Error::InvalidArgument(
            "PodSandboxStats: pod_sandbox_id must not be empty".into(),
        ));
    }
    let usage = blocking(crius, move |c| c.sandbox_usage(&request.pod_sandbox_id)).await?;
    Ok(cri::PodSandboxStatsResponse {
        stats: Some(sandbox_stats(&usage)),
    })
}

pub async fn list_sandboxes(
    crius: &Arc<Crius>,
    request: cri::ListPodSandboxStatsRequest,
) -> Result<cri::ListPodSandboxStatsResponse> {
    let filter = request.filter.unwrap_or_default();
    let usages = blocking(crius, move |c| {
        c.list_sandbox_usage(|sandbox| {
            sandbox.meta.id.starts_with(&filter.id)
                && matches_selector(&sandbox.meta.config.labels, &filter.label_selector)
        })
    })
    .await?;
    Ok(cri::ListPodSandboxStatsResponse {
        stats: usages.iter().map(sandbox_stats).collect(),
    })
}

fn value(value: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value })
}

fn cpu(sample: &Sample) -> cri::CpuUsage {
    cri::CpuUsage {
        timestamp: sample.timestamp,
        usage_core_nano_seconds: value(sample.cgroup.cpu_usage_nanos),
        usage_nano_cores: sample.nano_cores.and_then(value),
        psi: None,
    }
}

fn memory(sample: &Sample) -> cri::MemoryUsage {
    let stats = &sample.cgroup;
    cri::MemoryUsage {
        timestamp: sample.timestamp,
        working_set_bytes: value(stats.memory_working_set_bytes),
        // Like kubelet's cAdvisor path: only a limited cgroup has available bytes.
        available_bytes: stats
            .memory_limit_bytes
            .and_then(|limit| value(limit.saturating_sub(stats.memory_working_set_bytes))),
        usage_bytes: value(stats.memory_usage_bytes),
        rss_bytes: value(stats.memory_rss_bytes),
        page_faults: value(stats.memory_page_faults),
        major_page_faults: value(stats.memory_major_page_faults),
        psi: None,
    }
}

fn writable_layer(layer: &WritableLayer) -> cri::FilesystemUsage {
    cri::FilesystemUsage {
        timestamp: layer.timestamp,
        fs_id: Some(cri::FilesystemIdentifier {
            mountpoint: layer.mountpoint.clone(),
        }),
        used_bytes: layer.used_bytes.and_then(value),
        inodes_used: layer.inodes_used.and_then(value),
    }
}

/// A container's ListContainerStats entry: its attributes borrowed from the store, its usage
/// built.
fn entry(usage: &ContainerUsage) -> cri_api::stats::Entry<'_> {
    let meta = &usage.container.meta;
    let attributes = cri_api::stats::AttributesRef {
        id: &meta.id,
        name: &meta.config.metadata.name,
        attempt: meta.config.metadata.attempt,
        labels: &meta.config.labels,
        annotations: &meta.config.annotations,
    };
    cri_api::stats::Entry::new(attributes, usage_only(usage))
}

/// A container's `ContainerStats` without its attributes.
fn usage_only(usage: &ContainerUsage) -> cri::ContainerStats {
    cri::ContainerStats {
        attributes: None,
        cpu: usage.sample.as_ref().map(cpu),
        memory: usage.sample.as_ref().map(memory),
        writable_layer: Some(writable_layer(&usage.layer)),
        swap: None,
        io: None,
    }
}

fn container_stats(usage: &ContainerUsage) -> cri::ContainerStats {
    let meta = &usage.container.meta;
    cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: meta.id.clone(),
            metadata: Some(cri::ContainerMetadata {
                name: meta.config.metadata.name.clone(),
                attempt: meta.config.metadata.attempt,
            }),
            labels: to_map(&meta.config.labels),
            annotations: to_map(&meta.config.annotations),
        }),
        ..usage_only(usage)
    }
}

fn sandbox_stats(usage: &SandboxUsage) -> cri::PodSandboxStats {
    let meta = &usage.sandbox.meta;
    let m = &meta.config.metadata;
    let timestamp = usage
        .sample
        .as_ref()
        .map(|s| s.timestamp)
        .unwrap_or_else(crate::runtime::now_nanos);
    let interfaces: Vec<cri::NetworkInterfaceUsage> = usage
        .interfaces
        .iter()
        .map(|i| cri::NetworkInterfaceUsage {
            name: i.name.clone(),
            rx_bytes: value(i.rx_bytes),
            rx_errors: value(i.rx_errors),
            tx_bytes: value(i.tx_bytes),
            tx_errors: value(i.tx_errors),
        })
        .collect();
    let network = (!interfaces.is_empty()).then(|| cri::NetworkUsage {
        timestamp,
        default_interface: interfaces
            .iter()
            .find(|i| i.name == "eth0")
            .or(interfaces.first())
            .cloned(),
        interfaces,
    });
    cri::PodSandboxStats {
        attributes: Some(cri::PodSandboxAttributes {
            id: meta.id.clone(),
            metadata: Some(cri::PodSandboxMetadata {
                name: m.name.clone(),
                uid: m.uid.clone(),
                namespace: m.namespace.clone(),
                attempt: m.attempt,
            }),
            labels: to_map(&meta.config.labels),
            annotations: to_map(&meta.config.annotations),
        }),
        linux: Some(cri::LinuxPodSandboxStats {
            cpu: usage.sample.as_ref().map(cpu),
            memory: usage.sample.as_ref().map(memory),
            network,
            process: None,
            containers: usage.containers.iter().map(container_stats).collect(),
            io: None,
        }),
        windows: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::CgroupStats;
    use crate::store::{ContainerMeta, ContainerStatus};
    use prost::Message as _;

    fn usage(i: usize) -> ContainerUsage {
        let mut config = crate::domain::ContainerConfig::default();
        config.metadata.name = format!("app-{i}");
        config.metadata.attempt = (i % 3) as u32;
        config.labels = [
            ("io.kubernetes.container.name", format!("app-{i}")),
            ("io.kubernetes.pod.name", format!("pod-{}", i / 10)),
            ("io.kubernetes.pod.namespace", "default".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        config.annotations =
            [("io.kubernetes.container.hash".to_string(), format!("{i:x}"))].into();
        let meta = ContainerMeta {
            id: format!("{i:064x}"),
            name: format!("k8s_app-{i}"),
            sandbox_id: format!("{:064x}", i / 10 + 1_000_000),
            config,
            image_id: "sha256:aa".into(),
            image_ref: "sha256:aa".into(),
            created_at: i as i64,
            log_path: String::new(),
            process: oci_spec::runtime::Process::default(),
            cgroups_path: None,
            stop_signal: 15,
        };
        let running = i.is_multiple_of(4);
        ContainerUsage {
            container: Arc::new(Container::new(meta, ContainerStatus::created(None))),
            sample: running.then(|| Sample {
                timestamp: 42,
                cgroup: CgroupStats {
                    cpu_usage_nanos: 1000 + i as u64,
                    memory_working_set_bytes: 4096,
                    memory_limit_bytes: i.is_multiple_of(8).then_some(1 << 20),
                    ..Default::default()
                },
                nano_cores: i.is_multiple_of(8).then_some(5),
            }),
            layer: WritableLayer {
                timestamp: 43,
                mountpoint: "/var/lib/containerd/snapshots".into(),
                used_bytes: running.then_some(8192),
                inodes_used: None,
            },
        }
    }

    #[test]
    fn the_answer_sent_in_pieces_is_the_generated_answer() {
        // Three pieces, the last one short.
        let usages: Vec<ContainerUsage> = (0..2 * PIECE + 5).map(usage).collect();
        let expected = cri::ListContainerStatsResponse {
            stats: usages.iter().map(container_stats).collect(),
        };
        let answer = EncodedList::new(usages);
        let len = answer.encoded_len();
        let pieces: Vec<Bytes> = answer.into_pieces().collect();
        assert_eq!(pieces.len(), 3);
        let bytes = pieces.concat();
        assert_eq!(bytes.len(), len);
        assert_eq!(len, expected.encoded_len());
        let decoded = cri::ListContainerStatsResponse::decode(&bytes[..]).unwrap();
        assert_eq!(decoded, expected);
    }

    #[test]
    fn no_containers_is_an_empty_answer_without_pieces() {
        let answer = EncodedList::new(Vec::new());
        assert_eq!(answer.encoded_len(), 0);
        assert_eq!(answer.into_pieces().count(), 0);
    }
}
