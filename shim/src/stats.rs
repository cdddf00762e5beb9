//! Resource usage of containers and pods, read from their cgroups (no backend call).
//!
//! kubelet asks for every container's stats every ~10 s, so one listing must stay cheap: a
//! handful of small cgroup files per running container, the last size of each writable
//! layer (measured in the background, see [`crate::layer_usage`]), and a per-container CPU
//! sample so `usage_nano_cores` is a rate over the last interval instead of a second read.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use crate::cgroups::{read_stats, CgroupLayout, CgroupStats};
use crate::domain::NamespaceMode;
use crate::error::{Error, Result};
use crate::layer_usage::{LayerUsage, WritableLayer};
use crate::runtime::{now_nanos, Crius};
use crate::store::{Container, ContainerState, Sandbox, SandboxState};

/// CPU rates are computed over at least this window, so two calls in quick succession do not
/// report the noise of a few microseconds.
const MIN_RATE_WINDOW_NANOS: i64 = 1_000_000_000;

/// One reading of a cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub timestamp: i64,
    pub cgroup: CgroupStats,
    /// CPU rate since an earlier sample; `None` on the first reading.
    pub nano_cores: Option<u64>,
}

pub struct ContainerUsage {
    pub container: Arc<Container>,
    /// Only running containers have a cgroup to read (containerd returns task metrics only
    /// for live tasks).
    pub sample: Option<Sample>,
    pub layer: WritableLayer,
}

/// Counters of one network interface of a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceUsage {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

pub struct SandboxUsage {
    pub sandbox: Arc<Sandbox>,
    pub sample: Option<Sample>,
    pub interfaces: Vec<InterfaceUsage>,
    pub containers: Vec<ContainerUsage>,
}

/// Two CPU readings per cgroup: the rate is taken against the older one, which is replaced
/// only once the newer is at least [`MIN_RATE_WINDOW_NANOS`] old.
#[derive(Default)]
pub struct CpuRates {
    samples: Mutex<HashMap<String, (CpuReading, Option<CpuReading>)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuReading {
    timestamp: i64,
    usage_nanos: u64,
}

impl CpuRates {
    /// Records a reading for `key` and returns the CPU rate in nano-cores since an earlier one.
    pub fn observe(&self, key: &str, timestamp: i64, usage_nanos: u64) -> Option<u64> {
        let now = CpuReading {
            timestamp,
            usage_nanos,
        };
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        let Some((older, newer)) = samples.get_mut(key) else {
            samples.insert(key.to_string(), (now, None));
            return None;
        };
        let latest = newer.unwrap_or(*older);
        if now.timestamp - latest.timestamp >= MIN_RATE_WINDOW_NANOS {
            if newer.is_some() {
                *older = latest;
            }
            *newer = Some(now);
        }
        rate(*older, now)
    }

    /// Forgets cgroups for which `live` is false (removed containers and pods).
    pub fn retain(&self, live: impl Fn(&str) -> bool) {
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        samples.retain(|key, _| live(key));
    }
}

fn rate(older: CpuReading, now: CpuReading) -> Option<u64> {
    let window = now.timestamp - older.timestamp;
    if window < MIN_RATE_WINDOW_NANOS {
        return None;
    }
    // A restarted cgroup (counter went backwards) has no meaningful rate.
    let used = now.usage_nanos.checked_sub(older.usage_nanos)?;
    let cores = u128::from(used) * 1_000_000_000 / window.unsigned_abs() as u128;
    u64::try_from(cores).ok()
}

/// Per-container caches that outlive one request. They live in [`Crius`] beside the store,
/// and are pruned of removed objects on every listing.
#[derive(Default)]
pub struct StatsCache {
    pub cpu: CpuRates,
    /// Writable-layer sizes, measured in the background.
    pub layers: LayerUsage,
}

fn container_key(id: &str) -> String {
    format!("container/{id}")
}

fn sandbox_key(id: &str) -> String {
    format!("sandbox/{id}")
}

impl Crius {
    /// ContainerStats: usage of one running container. As in containerd, a container without
    /// a live task has no metrics and the call fails.
    pub fn container_usage(&self, id: &str) -> Result<ContainerUsage> {
        let container = self.container(id)?;
        let usage = self.usage_of(container)?;
        if usage.sample.is_none() {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running: no stats",
                usage.container.meta.id
            )));
        }
        Ok(usage)
    }

    /// ListContainerStats: every container `keep` selects, running or not (those without a
    /// task carry attributes and the writable layer only, as containerd answers).
    pub fn list_container_usage(
        &self,
        keep: impl Fn(&Container) -> bool,
    ) -> Result<Vec<ContainerUsage>> {
        let snapshot = self.store.containers.snapshot();
        prune(
            &self.stats_cache,
            &snapshot,
            &self.store.sandboxes.snapshot(),
        );
        // Sized once: on a full node a grown vector would hold twice what it needs while the
        // answer is sent.
        let selected: Vec<&Arc<Container>> = snapshot.values().filter(|c| keep(c)).collect();
        let mut usages = Vec::with_capacity(selected.len());
        for container in selected {
            usages.push(self.usage_of(Arc::clone(container))?);
        }
        Ok(usages)
    }

    /// PodSandboxStats: usage of one ready pod and its containers.
    pub fn sandbox_usage(&self, id: &str) -> Result<SandboxUsage> {
        let sandbox = self.sandbox(id)?;
        if sandbox.status().state != SandboxState::Ready {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {} is not ready: no stats",
                sandbox.meta.id
            )));
        }
        self.sandbox_usage_of(sandbox)
    }

    /// ListPodSandboxStats: every ready pod `keep` selects (stopped pods have no cgroup).
    pub fn list_sandbox_usage(&self, keep: impl Fn(&Sandbox) -> bool) -> Result<Vec<SandboxUsage>> {
        let snapshot = self.store.sandboxes.snapshot();
        prune(
            &self.stats_cache,
            &self.store.containers.snapshot(),
            &snapshot,
        );
        let mut usages = Vec::new();
        for sandbox in snapshot.values() {
            if sandbox.status().state == SandboxState::Ready && keep(sandbox) {
                usages.push(self.sandbox_usage_of(Arc::clone(sandbox))?);
            }
        }
        Ok(usages)
    }

    fn sandbox_usage_of(&self, sandbox: Arc<Sandbox>) -> Result<SandboxUsage> {
        let containers = self
            .store
            .containers
            .snapshot()
            .values()
            .filter(|c| c.meta.sandbox_id == sandbox.meta.id)
            .map(|c| self.usage_of(Arc::clone(c)))
            .collect::<Result<Vec<_>>>()?;
        let sample = self.pod_sample(&sandbox, &containers)?;
        let pid = sandbox.status().pid;
        // A host-network pod's interfaces are the node's: reporting them as the pod's traffic
        // would count the node once per such pod (containerd and cAdvisor leave them out).
        let host_network = sandbox.meta.config.security.namespaces.network == NamespaceMode::Node;
        let interfaces = if pid == 0 || host_network {
            Vec::new()
        } else {
            read_net_dev(&Path::new("/proc").join(pid.to_string()).join("net/dev"))
        };
        Ok(SandboxUsage {
            sandbox,
            sample,
            interfaces,
            containers,
        })
    }

    /// The pod's own cgroup when kubelet gave one (what containerd reads); without a
    /// `cgroup_parent` all pods share crius's default parent, so the pod is the sum of its
    /// pause and app containers.
    fn pod_sample(
        &self,
        sandbox: &Sandbox,
        containers: &[ContainerUsage],
    ) -> Result<Option<Sample>> {
        let Some(layout) = &self.cgroup_layout else {
            return Ok(None);
        };
        let timestamp = now_nanos();
        let pause = sandbox.meta.cgroups_path.clone();
        let cgroup = if sandbox.meta.config.cgroup_parent.is_empty() {
            let Some(mut total) = optional_stats(layout, &pause)? else {
                return Ok(None);
            };
            for sample in containers.iter().filter_map(|c| c.sample.as_ref()) {
                add(&mut total, &sample.cgroup);
            }
            total
        } else {
            let parent = Path::new(&pause)
                .parent()
                .and_then(Path::to_str)
                .unwrap_or("/")
                .to_string();
            let Some(stats) = optional_stats(layout, &parent)? else {
                return Ok(None);
            };
            stats
        };
        let nano_cores = self.stats_cache.cpu.observe(
            &sandbox_key(&sandbox.meta.id),
            timestamp,
            cgroup.cpu_usage_nanos,
        );
        Ok(Some(Sample {
            timestamp,
            cgroup,
            nano_cores,
        }))
    }

    fn usage_of(&self, container: Arc<Container>) -> Result<ContainerUsage> {
        let status = container.status();
        let running = status.state == ContainerState::Running && status.pid != 0;
        let sample = match (&self.cgroup_layout, running) {
            (Some(layout), true) => self.container_sample(layout, &container)?,
            _ => None,
        };
        let layer = self
            .stats_cache
            .layers
            .get(&container.meta.id, &self.image_fs.load().usage.mountpoint);
        Ok(ContainerUsage {
            container,
            sample,
            layer,
        })
    }

    fn container_sample(
        &self,
        layout: &CgroupLayout,
        container: &Container,
    ) -> Result<Option<Sample>> {
        // Where the backend said the container's cgroup is.
        let Some(path) = container.meta.cgroups_path.as_deref() else {
            return Ok(None);
        };
        let timestamp = now_nanos();
        let Some(cgroup) = optional_stats(layout, path)? else {
            return Ok(None);
        };
        let nano_cores = self.stats_cache.cpu.observe(
            &container_key(&container.meta.id),
            timestamp,
            cgroup.cpu_usage_nanos,
        );
        Ok(Some(Sample {
            timestamp,
            cgroup,
            nano_cores,
        }))
    }
}

/// Drops cached samples of containers and pods that are gone.
fn prune(
    cache: &StatsCache,
    containers: &HashMap<String, Arc<Container>>,
    sandboxes: &HashMap<String, Arc<Sandbox>>,
) {
    let live = |key: &str| match key.split_once('/') {
        Some(("container", id)) => containers.contains_key(id),
        Some(("sandbox", id)) => sandboxes.contains_key(id),
        _ => false,
    };
    cache.cpu.retain(live);
    cache.layers.retain(|id| containers.contains_key(id));
}

pub(crate) fn cgroup_error(err: crate::cgroups::CgroupError) -> Error {
    Error::Internal(err.to_string())
}

/// A cgroup that is already gone (the task just exited) has no stats rather than an error.
fn optional_stats(layout: &CgroupLayout, path: &str) -> Result<Option<CgroupStats>> {
    match read_stats(layout, path) {
        Ok(stats) => Ok(Some(stats)),
        Err(err) if err.is_not_found() => Ok(None),
        Err(err) => Err(cgroup_error(err)),
    }
}

fn add(total: &mut CgroupStats, more: &CgroupStats) {
    total.memory_usage_bytes += more.memory_usage_bytes;
    total.memory_working_set_bytes += more.memory_working_set_bytes;
    total.memory_rss_bytes += more.memory_rss_bytes;
    total.memory_cache_bytes += more.memory_cache_bytes;
    total.memory_mapped_file_bytes += more.memory_mapped_file_bytes;
    total.memory_page_faults += more.memory_page_faults;
    total.memory_major_page_faults += more.memory_major_page_faults;
    total.cpu_usage_nanos += more.cpu_usage_nanos;
    total.memory_limit_bytes = None;
    total.oom_kill_count = match (total.oom_kill_count, more.oom_kill_count) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    };
}

/// Interfaces of a network namespace from `/proc/<pid>/net/dev`, loopback left out.
pub(crate) fn read_net_dev(path: &Path) -> Vec<InterfaceUsage> {
    std::fs::read_to_string(path)
        .map(|text| parse_net_dev(&text))
        .unwrap_or_default()
}

fn parse_net_dev(text: &str) -> Vec<InterfaceUsage> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            let name = name.trim();
            if name == "lo" {
                return None;
            }
            let n: Vec<u64> = counters
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            if n.len() < 16 {
                return None;
            }
            // Columns: receive bytes packets errs drop fifo frame compressed multicast,
            // then transmit bytes packets errs drop fifo colls carrier compressed.
            Some(InterfaceUsage {
                name: name.to_string(),
                rx_bytes: n[0],
                rx_packets: n[1],
                rx_errors: n[2],
                rx_dropped: n[3],
                tx_bytes: n[8],
                tx_packets: n[9],
                tx_errors: n[10],
                tx_dropped: n[11],
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000_000;

    #[test]
    fn cpu_rate_needs_two_samples_a_second_apart() {
        let rates = CpuRates::default();
        assert_eq!(rates.observe("c", 0, 0), None);
        // Too close to the first reading.
        assert_eq!(rates.observe("c", SECOND / 2, 100), None);
        // Half a core over two seconds.
        assert_eq!(
            rates.observe("c", 2 * SECOND, SECOND as u64),
            Some(500_000_000)
        );
        // A quick repeat is measured against the older sample, not the 0.1 s-old one.
        assert_eq!(
            rates.observe("c", 2 * SECOND + SECOND / 10, SECOND as u64),
            Some(476_190_476)
        );
        // Once the newer sample is a second old it becomes the base.
        assert_eq!(
            rates.observe("c", 4 * SECOND, 3 * SECOND as u64),
            Some(1_000_000_000)
        );
    }

    #[test]
    fn cpu_rate_of_a_restarted_cgroup_is_unknown() {
        let rates = CpuRates::default();
        rates.observe("c", 0, 5_000);
        assert_eq!(rates.observe("c", 2 * SECOND, 10), None);
        rates.retain(|_| false);
        assert_eq!(rates.observe("c", 3 * SECOND, 10), None);
    }

    fn write(root: &Path, relative: &str, content: &str) {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    /// A v1 tree with one cgroup, laid out as on the Debian CI hosts.
    fn v1_cgroup(root: &Path, cgroup: &str, usage: u64, cpu: u64) {
        write(
            root,
            &format!("memory/{cgroup}/memory.usage_in_bytes"),
            &format!("{usage}\n"),
        );
        write(
            root,
            &format!("memory/{cgroup}/memory.stat"),
            "total_rss 4096\ntotal_inactive_file 1024\ntotal_pgfault 7\ntotal_pgmajfault 1\n",
        );
        write(
            root,
            &format!("memory/{cgroup}/memory.limit_in_bytes"),
            "9223372036854771712\n",
        );
        write(
            root,
            &format!("memory/{cgroup}/memory.oom_control"),
            "oom_kill 0\n",
        );
        write(
            root,
            &format!("cpuacct/{cgroup}/cpuacct.usage"),
            &format!("{cpu}\n"),
        );
    }

    #[test]
    fn pod_totals_add_up_member_cgroups() {
        let root = tempfile::tempdir().unwrap();
        v1_cgroup(root.path(), "crius/pause", 10_000, 5);
        v1_cgroup(root.path(), "crius/app", 20_000, 7);
        let layout = CgroupLayout::detect(root.path()).unwrap();
        let mut total = optional_stats(&layout, "/crius/pause").unwrap().unwrap();
        add(
            &mut total,
            &optional_stats(&layout, "/crius/app").unwrap().unwrap(),
        );
        assert_eq!(total.memory_usage_bytes, 30_000);
        assert_eq!(total.memory_working_set_bytes, 30_000 - 2 * 1024);
        assert_eq!(total.memory_rss_bytes, 8192);
        assert_eq!(total.memory_page_faults, 14);
        assert_eq!(total.cpu_usage_nanos, 12);
        assert_eq!(total.memory_limit_bytes, None);
        assert_eq!(total.oom_kill_count, Some(0));
        // An exited container's cgroup is gone: no stats, no error.
        assert_eq!(optional_stats(&layout, "/crius/gone").unwrap(), None);
    }

    #[test]
    fn net_dev_skips_loopback() {
        let text = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0
  eth0:    5000      40    2    1    0     0          0         0     7000      50    3    4    0     0       0          0
";
        assert_eq!(
            parse_net_dev(text),
            vec![InterfaceUsage {
                name: "eth0".into(),
                rx_bytes: 5000,
                rx_packets: 40,
                rx_errors: 2,
                rx_dropped: 1,
                tx_bytes: 7000,
                tx_packets: 50,
                tx_errors: 3,
                tx_dropped: 4,
            }]
        );
    }
}
