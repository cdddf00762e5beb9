//! The pod and container metrics kubelet reads over the CRI (ListMetricDescriptors,
//! ListPodSandboxMetrics) when its `PodAndContainerStatsFromCRI` gate is on. kubelet serves
//! them on `/metrics/cadvisor` as they come, so they carry cAdvisor's names, label keys and
//! units: dashboards and alerts written against cAdvisor keep working.
//!
//! Not to be confused with [`crate::metrics`], crius's own Prometheus endpoint about itself.
//!
//! Everything is read from the store, the cgroup files and `/proc/<pause pid>/net/dev`
//! through [`crate::stats`], never from the backend.

use std::sync::Arc;

use crate::cgroups::{
    read_activity, read_limits, CgroupActivity, CgroupError, CgroupLimits, CgroupStats,
};
use crate::error::Result;
use crate::layer_usage::WritableLayer;
use crate::runtime::{now_nanos, Crius};
use crate::stats::{cgroup_error, ContainerUsage, InterfaceUsage, SandboxUsage};
use crate::store::{Container, Sandbox};

/// How a value moves, as Prometheus types it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

/// Name, help, type and label keys of one metric family.
#[derive(Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricKind,
    /// Keys after [`BASE_LABELS`], in order.
    pub extra_labels: &'static [&'static str],
}

impl Descriptor {
    pub fn label_keys(&self) -> impl Iterator<Item = &'static str> {
        BASE_LABELS.iter().chain(self.extra_labels).copied()
    }
}

/// The labels kubelet puts on every cAdvisor container metric. `id` is the CRI id (cAdvisor's
/// is the cgroup), `name` the runtime's name for it; pod-level series have an empty
/// `container`, as cAdvisor's pod cgroups do, so `container!=""` still selects containers.
pub const BASE_LABELS: [&str; 6] = ["id", "name", "image", "namespace", "pod", "container"];

const fn counter(
    name: &'static str,
    help: &'static str,
    extra_labels: &'static [&'static str],
) -> Descriptor {
    Descriptor {
        name,
        help,
        kind: MetricKind::Counter,
        extra_labels,
    }
}

const fn gauge(
    name: &'static str,
    help: &'static str,
    extra_labels: &'static [&'static str],
) -> Descriptor {
    Descriptor {
        name,
        help,
        kind: MetricKind::Gauge,
        extra_labels,
    }
}

// The CRI carries whole numbers only, so the `_seconds` counters have a resolution of one
// second (truncated), as in CRI-O.
const CPU_USAGE: Descriptor = counter(
    "container_cpu_usage_seconds_total",
    "Cumulative CPU time consumed in seconds (cpu=\"total\": all CPUs together).",
    &["cpu"],
);
const CPU_USER: Descriptor = counter(
    "container_cpu_user_seconds_total",
    "Cumulative user CPU time consumed in seconds.",
    &[],
);
const CPU_SYSTEM: Descriptor = counter(
    "container_cpu_system_seconds_total",
    "Cumulative system CPU time consumed in seconds.",
    &[],
);
const CFS_PERIODS: Descriptor = counter(
    "container_cpu_cfs_periods_total",
    "Number of elapsed CFS enforcement periods.",
    &[],
);
const CFS_THROTTLED_PERIODS: Descriptor = counter(
    "container_cpu_cfs_throttled_periods_total",
    "Number of CFS periods in which the container was throttled.",
    &[],
);
const CFS_THROTTLED_SECONDS: Descriptor = counter(
    "container_cpu_cfs_throttled_seconds_total",
    "Total time the container has been throttled, in seconds.",
    &[],
);
const MEMORY_USAGE: Descriptor = gauge(
    "container_memory_usage_bytes",
    "Current memory usage in bytes, page cache included.",
    &[],
);
const MEMORY_WORKING_SET: Descriptor = gauge(
    "container_memory_working_set_bytes",
    "Current working set in bytes: usage minus inactive page cache.",
    &[],
);
const MEMORY_RSS: Descriptor = gauge(
    "container_memory_rss",
    "Size of anonymous memory (RSS) in bytes.",
    &[],
);
const MEMORY_CACHE: Descriptor = gauge(
    "container_memory_cache",
    "Number of bytes of page cache memory.",
    &[],
);
const MEMORY_MAPPED_FILE: Descriptor = gauge(
    "container_memory_mapped_file",
    "Size of memory-mapped files in bytes.",
    &[],
);
const MEMORY_FAILURES: Descriptor = counter(
    "container_memory_failures_total",
    "Cumulative count of page faults, by type, for the cgroup and the cgroups below it.",
    &["failure_type", "scope"],
);
const OOM_EVENTS: Descriptor = counter(
    "container_oom_events_total",
    "Count of out-of-memory kills observed in the container.",
    &[],
);
const PROCESSES: Descriptor = gauge(
    "container_processes",
    "Number of processes running in the container.",
    &[],
);
const THREADS: Descriptor = gauge(
    "container_threads",
    "Number of threads running in the container.",
    &[],
);
const SPEC_MEMORY_LIMIT: Descriptor = gauge(
    "container_spec_memory_limit_bytes",
    "Memory limit of the container in bytes (0: unlimited).",
    &[],
);
const SPEC_CPU_SHARES: Descriptor = gauge(
    "container_spec_cpu_shares",
    "CPU shares of the container.",
    &[],
);
const SPEC_CPU_QUOTA: Descriptor = gauge(
    "container_spec_cpu_quota",
    "CPU quota of the container in microseconds per period (0: unlimited).",
    &[],
);
const SPEC_CPU_PERIOD: Descriptor = gauge(
    "container_spec_cpu_period",
    "CPU period of the container in microseconds.",
    &[],
);
const START_TIME: Descriptor = gauge(
    "container_start_time_seconds",
    "Start time of the container since the Unix epoch in seconds.",
    &[],
);
const LAST_SEEN: Descriptor = gauge(
    "container_last_seen",
    "Last time the runtime saw the container, in seconds since the Unix epoch.",
    &[],
);
const FS_USAGE: Descriptor = gauge(
    "container_fs_usage_bytes",
    "Bytes the container's writable layer uses on the filesystem (device: its mountpoint).",
    &["device"],
);
const RX_BYTES: Descriptor = counter(
    "container_network_receive_bytes_total",
    "Cumulative count of bytes received.",
    &["interface"],
);
const RX_PACKETS: Descriptor = counter(
    "container_network_receive_packets_total",
    "Cumulative count of packets received.",
    &["interface"],
);
const RX_DROPPED: Descriptor = counter(
    "container_network_receive_packets_dropped_total",
    "Cumulative count of packets dropped while receiving.",
    &["interface"],
);
const RX_ERRORS: Descriptor = counter(
    "container_network_receive_errors_total",
    "Cumulative count of errors encountered while receiving.",
    &["interface"],
);
const TX_BYTES: Descriptor = counter(
    "container_network_transmit_bytes_total",
    "Cumulative count of bytes transmitted.",
    &["interface"],
);
const TX_PACKETS: Descriptor = counter(
    "container_network_transmit_packets_total",
    "Cumulative count of packets transmitted.",
    &["interface"],
);
const TX_DROPPED: Descriptor = counter(
    "container_network_transmit_packets_dropped_total",
    "Cumulative count of packets dropped while transmitting.",
    &["interface"],
);
const TX_ERRORS: Descriptor = counter(
    "container_network_transmit_errors_total",
    "Cumulative count of errors encountered while transmitting.",
    &["interface"],
);

/// Every metric crius reports; ListMetricDescriptors answers this list.
pub const DESCRIPTORS: &[&Descriptor] = &[
    &CPU_USAGE,
    &CPU_USER,
    &CPU_SYSTEM,
    &CFS_PERIODS,
    &CFS_THROTTLED_PERIODS,
    &CFS_THROTTLED_SECONDS,
    &MEMORY_USAGE,
    &MEMORY_WORKING_SET,
    &MEMORY_RSS,
    &MEMORY_CACHE,
    &MEMORY_MAPPED_FILE,
    &MEMORY_FAILURES,
    &OOM_EVENTS,
    &PROCESSES,
    &THREADS,
    &SPEC_MEMORY_LIMIT,
    &SPEC_CPU_SHARES,
    &SPEC_CPU_QUOTA,
    &SPEC_CPU_PERIOD,
    &START_TIME,
    &LAST_SEEN,
    &FS_USAGE,
    &RX_BYTES,
    &RX_PACKETS,
    &RX_DROPPED,
    &RX_ERRORS,
    &TX_BYTES,
    &TX_PACKETS,
    &TX_DROPPED,
    &TX_ERRORS,
];

/// One value of one metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub descriptor: &'static Descriptor,
    /// Collection time in nanoseconds.
    pub timestamp: i64,
    /// Values for [`Descriptor::label_keys`], in order.
    pub label_values: Vec<String>,
    pub value: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerMetrics {
    pub container_id: String,
    pub metrics: Vec<Sample>,
}

/// A pod's own series (its cgroup and its network namespace) and its containers'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodMetrics {
    pub sandbox_id: String,
    pub metrics: Vec<Sample>,
    pub containers: Vec<ContainerMetrics>,
}

impl Crius {
    /// ListPodSandboxMetrics: every ready pod and its running containers.
    pub fn pod_metrics(&self) -> Result<Vec<PodMetrics>> {
        let usages = self.list_sandbox_usage(|_| true)?;
        let mut pods = Vec::with_capacity(usages.len());
        for usage in usages {
            pods.push(self.pod_metrics_of(usage)?);
        }
        Ok(pods)
    }

    fn pod_metrics_of(&self, usage: SandboxUsage) -> Result<PodMetrics> {
        let sandbox = &usage.sandbox;
        let timestamp = usage
            .sample
            .as_ref()
            .map_or_else(now_nanos, |s| s.timestamp);
        let mut pod = Series::new(pod_labels(sandbox), timestamp);
        if let Some(sample) = &usage.sample {
            pod.cgroup(&sample.cgroup);
        }
        pod.network(&usage.interfaces);
        let mut containers = Vec::new();
        for container in &usage.containers {
            if let Some(metrics) = self.container_metrics(sandbox, container)? {
                containers.push(metrics);
            }
        }
        Ok(PodMetrics {
            sandbox_id: sandbox.meta.id.clone(),
            metrics: pod.samples,
            containers,
        })
    }

    /// A running container's series; `None` for one without a cgroup to read (not running,
    /// or it exited while it was being read), as cAdvisor reports live cgroups only.
    fn container_metrics(
        &self,
        sandbox: &Sandbox,
        usage: &ContainerUsage,
    ) -> Result<Option<ContainerMetrics>> {
        let (Some(sample), Some(layout)) = (&usage.sample, &self.cgroup_layout) else {
            return Ok(None);
        };
        let Some(path) = usage.container.meta.cgroups_path.as_deref() else {
            return Ok(None);
        };
        let (Some(activity), Some(limits)) = (
            unless_gone(read_activity(layout, path))?,
            unless_gone(read_limits(layout, path))?,
        ) else {
            return Ok(None);
        };
        let mut series = Series::new(
            container_labels(sandbox, &usage.container),
            sample.timestamp,
        );
        series.cgroup(&sample.cgroup);
        series.activity(&activity);
        series.limits(&limits);
        series.layer(&usage.layer);
        series.push(
            &START_TIME,
            &[],
            nanos_to_seconds(usage.container.status().started_at),
        );
        series.push(&LAST_SEEN, &[], nanos_to_seconds(sample.timestamp));
        Ok(Some(ContainerMetrics {
            container_id: usage.container.meta.id.clone(),
            metrics: series.samples,
        }))
    }
}

/// A cgroup removed between the usage and this read (the task just exited) has no metrics
/// rather than an error.
fn unless_gone<T>(read: Result<T, CgroupError>) -> Result<Option<T>> {
    match read {
        Ok(value) => Ok(Some(value)),
        Err(err) if err.is_not_found() => Ok(None),
        Err(err) => Err(cgroup_error(err)),
    }
}

fn pod_labels(sandbox: &Sandbox) -> Vec<String> {
    let metadata = &sandbox.meta.config.metadata;
    vec![
        sandbox.meta.id.clone(),
        sandbox.meta.name.clone(),
        String::new(),
        metadata.namespace.clone(),
        metadata.name.clone(),
        String::new(),
    ]
}

fn container_labels(sandbox: &Sandbox, container: &Arc<Container>) -> Vec<String> {
    let metadata = &sandbox.meta.config.metadata;
    vec![
        container.meta.id.clone(),
        container.meta.name.clone(),
        container.meta.config.image.clone(),
        metadata.namespace.clone(),
        metadata.name.clone(),
        container.meta.config.metadata.name.clone(),
    ]
}

fn nanos_to_seconds(nanos: i64) -> u64 {
    u64::try_from(nanos / 1_000_000_000).unwrap_or(0)
}

/// cAdvisor reports v2's `cpu.weight` as the `cpu.shares` it stands for (the inverse of the
/// shares → weight mapping runc applies).
fn weight_to_shares(weight: u64) -> u64 {
    2 + weight.saturating_sub(1) * 262_142 / 9_999
}

/// The samples of one pod or container, all with its base labels and one timestamp.
struct Series {
    base: Vec<String>,
    timestamp: i64,
    samples: Vec<Sample>,
}

impl Series {
    fn new(base: Vec<String>, timestamp: i64) -> Self {
        Series {
            base,
            timestamp,
            samples: Vec::new(),
        }
    }

    fn push(&mut self, descriptor: &'static Descriptor, extra: &[&str], value: u64) {
        debug_assert_eq!(extra.len(), descriptor.extra_labels.len());
        let mut label_values = Vec::with_capacity(self.base.len() + extra.len());
        label_values.extend(self.base.iter().cloned());
        label_values.extend(extra.iter().map(|v| v.to_string()));
        self.samples.push(Sample {
            descriptor,
            timestamp: self.timestamp,
            label_values,
            value,
        });
    }

    fn cgroup(&mut self, stats: &CgroupStats) {
        self.push(
            &CPU_USAGE,
            &["total"],
            stats.cpu_usage_nanos / 1_000_000_000,
        );
        self.push(&MEMORY_USAGE, &[], stats.memory_usage_bytes);
        self.push(&MEMORY_WORKING_SET, &[], stats.memory_working_set_bytes);
        self.push(&MEMORY_RSS, &[], stats.memory_rss_bytes);
        self.push(&MEMORY_CACHE, &[], stats.memory_cache_bytes);
        self.push(&MEMORY_MAPPED_FILE, &[], stats.memory_mapped_file_bytes);
        // The readers take the hierarchical figures (children included).
        self.push(
            &MEMORY_FAILURES,
            &["pgfault", "hierarchy"],
            stats.memory_page_faults,
        );
        self.push(
            &MEMORY_FAILURES,
            &["pgmajfault", "hierarchy"],
            stats.memory_major_page_faults,
        );
        if let Some(kills) = stats.oom_kill_count {
            self.push(&OOM_EVENTS, &[], kills);
        }
    }

    fn activity(&mut self, activity: &CgroupActivity) {
        if let Some(user) = activity.cpu_user_nanos {
            self.push(&CPU_USER, &[], user / 1_000_000_000);
        }
        if let Some(system) = activity.cpu_system_nanos {
            self.push(&CPU_SYSTEM, &[], system / 1_000_000_000);
        }
        self.push(&CFS_PERIODS, &[], activity.cfs_periods);
        self.push(&CFS_THROTTLED_PERIODS, &[], activity.cfs_throttled_periods);
        self.push(
            &CFS_THROTTLED_SECONDS,
            &[],
            activity.cfs_throttled_nanos / 1_000_000_000,
        );
        self.push(&PROCESSES, &[], activity.processes);
        self.push(&THREADS, &[], activity.threads);
    }

    fn limits(&mut self, limits: &CgroupLimits) {
        self.push(
            &SPEC_MEMORY_LIMIT,
            &[],
            limits.memory_limit_bytes.unwrap_or(0),
        );
        let shares = limits
            .cpu_shares
            .or(limits.cpu_weight.map(weight_to_shares));
        if let Some(shares) = shares {
            self.push(&SPEC_CPU_SHARES, &[], shares);
        }
        self.push(&SPEC_CPU_QUOTA, &[], limits.cpu_quota_us.unwrap_or(0));
        if let Some(period) = limits.cpu_period_us {
            self.push(&SPEC_CPU_PERIOD, &[], period);
        }
    }

    /// Until the layer is measured once there is no figure, rather than a false 0.
    fn layer(&mut self, layer: &WritableLayer) {
        if let Some(used) = layer.used_bytes {
            self.push(&FS_USAGE, &[layer.mountpoint.as_str()], used);
        }
    }

    fn network(&mut self, interfaces: &[InterfaceUsage]) {
        for i in interfaces {
            let name = [i.name.as_str()];
            self.push(&RX_BYTES, &name, i.rx_bytes);
            self.push(&RX_PACKETS, &name, i.rx_packets);
            self.push(&RX_DROPPED, &name, i.rx_dropped);
            self.push(&RX_ERRORS, &name, i.rx_errors);
            self.push(&TX_BYTES, &name, i.tx_bytes);
            self.push(&TX_PACKETS, &name, i.tx_packets);
            self.push(&TX_DROPPED, &name, i.tx_dropped);
            self.push(&TX_ERRORS, &name, i.tx_errors);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::HashSet;
    use std::path::Path;

    use super::*;
    use crate::cgroups::{read_stats, CgroupLayout};

    fn write(root: &Path, relative: &str, content: &str) {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    /// The series of the cgroup `/crius/c` under `root`, read as a container's are.
    fn series_of(root: &Path) -> Vec<Sample> {
        let layout = CgroupLayout::detect(root).unwrap();
        let mut series = Series::new(BASE_LABELS.map(String::from).to_vec(), 7);
        series.cgroup(&read_stats(&layout, "/crius/c").unwrap());
        series.activity(&read_activity(&layout, "/crius/c").unwrap());
        series.limits(&read_limits(&layout, "/crius/c").unwrap());
        series.samples
    }

    fn value(samples: &[Sample], name: &str, extra: &[&str]) -> Option<u64> {
        samples
            .iter()
            .find(|s| s.descriptor.name == name && s.label_values[BASE_LABELS.len()..] == *extra)
            .map(|s| s.value)
    }

    /// 2.5 s of CPU (1.5 user, 0.9 system), 64 MiB used of which 16 MiB inactive cache,
    /// 3 processes with 5 threads, limited to 256 MiB and half a CPU.
    fn assert_expected(samples: &[Sample], shares: u64) {
        let expected: &[(&str, &[&str], u64)] = &[
            ("container_cpu_usage_seconds_total", &["total"], 2),
            ("container_cpu_user_seconds_total", &[], 1),
            ("container_cpu_system_seconds_total", &[], 0),
            ("container_cpu_cfs_periods_total", &[], 50),
            ("container_cpu_cfs_throttled_periods_total", &[], 10),
            ("container_cpu_cfs_throttled_seconds_total", &[], 2),
            ("container_memory_usage_bytes", &[], 64 << 20),
            ("container_memory_working_set_bytes", &[], 48 << 20),
            ("container_memory_rss", &[], 40 << 20),
            ("container_memory_cache", &[], 20 << 20),
            ("container_memory_mapped_file", &[], 1 << 20),
            (
                "container_memory_failures_total",
                &["pgfault", "hierarchy"],
                900,
            ),
            (
                "container_memory_failures_total",
                &["pgmajfault", "hierarchy"],
                9,
            ),
            ("container_oom_events_total", &[], 1),
            ("container_processes", &[], 3),
            ("container_threads", &[], 5),
            ("container_spec_memory_limit_bytes", &[], 256 << 20),
            ("container_spec_cpu_shares", &[], shares),
            ("container_spec_cpu_quota", &[], 50_000),
            ("container_spec_cpu_period", &[], 100_000),
        ];
        for (name, extra, want) in expected {
            assert_eq!(value(samples, name, extra), Some(*want), "{name}{extra:?}");
        }
        assert_eq!(samples.len(), expected.len());
    }

    #[test]
    fn a_v1_cgroup_reads_as_cadvisor_metrics_in_cadvisor_units() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let c = "crius/c";
        write(
            r,
            &format!("memory/{c}/memory.usage_in_bytes"),
            "67108864\n",
        );
        write(
            r,
            &format!("memory/{c}/memory.stat"),
            "total_rss 41943040\ntotal_cache 20971520\ntotal_mapped_file 1048576\n\
             total_inactive_file 16777216\ntotal_pgfault 900\ntotal_pgmajfault 9\n",
        );
        write(
            r,
            &format!("memory/{c}/memory.limit_in_bytes"),
            "268435456\n",
        );
        write(r, &format!("memory/{c}/memory.oom_control"), "oom_kill 1\n");
        write(r, &format!("memory/{c}/cgroup.procs"), "1\n2\n3\n");
        write(r, &format!("memory/{c}/tasks"), "1\n2\n3\n4\n5\n");
        write(r, &format!("cpuacct/{c}/cpuacct.usage"), "2500000000\n");
        write(
            r,
            &format!("cpuacct/{c}/cpuacct.usage_user"),
            "1500000000\n",
        );
        write(r, &format!("cpuacct/{c}/cpuacct.usage_sys"), "900000000\n");
        write(
            r,
            &format!("cpu/{c}/cpu.stat"),
            "nr_periods 50\nnr_throttled 10\nthrottled_time 2400000000\n",
        );
        write(r, &format!("cpu/{c}/cpu.shares"), "512\n");
        write(r, &format!("cpu/{c}/cpu.cfs_quota_us"), "50000\n");
        write(r, &format!("cpu/{c}/cpu.cfs_period_us"), "100000\n");
        assert_expected(&series_of(r), 512);
    }

    #[test]
    fn a_v2_cgroup_reads_as_cadvisor_metrics_in_cadvisor_units() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let c = "crius/c";
        write(r, "cgroup.controllers", "cpu memory pids\n");
        write(r, &format!("{c}/memory.current"), "67108864\n");
        write(
            r,
            &format!("{c}/memory.stat"),
            "anon 41943040\nfile 20971520\nfile_mapped 1048576\ninactive_file 16777216\n\
             pgfault 900\npgmajfault 9\n",
        );
        write(r, &format!("{c}/memory.max"), "268435456\n");
        write(r, &format!("{c}/memory.events"), "oom 2\noom_kill 1\n");
        write(
            r,
            &format!("{c}/cpu.stat"),
            "usage_usec 2500000\nuser_usec 1500000\nsystem_usec 900000\n\
             nr_periods 50\nnr_throttled 10\nthrottled_usec 2400000\n",
        );
        write(r, &format!("{c}/cpu.weight"), "20\n");
        write(r, &format!("{c}/cpu.max"), "50000 100000\n");
        write(r, &format!("{c}/cgroup.procs"), "1\n2\n3\n");
        write(r, &format!("{c}/cgroup.threads"), "1\n2\n3\n4\n5\n");
        // runc maps 512 shares to weight 20, which maps back to 500 (the mapping rounds).
        assert_expected(&series_of(r), 500);
    }

    #[test]
    fn network_counters_of_a_pods_net_dev_are_reported_per_interface() {
        let dir = tempfile::tempdir().unwrap();
        let net_dev = dir.path().join("net_dev");
        std::fs::write(
            &net_dev,
            "Inter-|   Receive                                                |  Transmit\n \
             face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
             lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  \
             eth0: 1500000    1100    1    2    0     0          0         0  1048576     800    3    4    0     0       0          0\n  \
             net1:      10       1    0    0    0     0          0         0       20       2    0    0    0     0       0          0\n",
        )
        .unwrap();
        let mut series = Series::new(BASE_LABELS.map(String::from).to_vec(), 7);
        series.network(&crate::stats::read_net_dev(&net_dev));
        let samples = series.samples;
        let eth0 = &["eth0"][..];
        assert_eq!(
            value(&samples, "container_network_receive_bytes_total", eth0),
            Some(1_500_000)
        );
        assert_eq!(
            value(&samples, "container_network_receive_packets_total", eth0),
            Some(1100)
        );
        assert_eq!(
            value(&samples, "container_network_receive_errors_total", eth0),
            Some(1)
        );
        assert_eq!(
            value(
                &samples,
                "container_network_receive_packets_dropped_total",
                eth0
            ),
            Some(2)
        );
        assert_eq!(
            value(&samples, "container_network_transmit_bytes_total", eth0),
            Some(1_048_576)
        );
        assert_eq!(
            value(&samples, "container_network_transmit_packets_total", eth0),
            Some(800)
        );
        assert_eq!(
            value(&samples, "container_network_transmit_errors_total", eth0),
            Some(3)
        );
        assert_eq!(
            value(
                &samples,
                "container_network_transmit_packets_dropped_total",
                eth0
            ),
            Some(4)
        );
        assert_eq!(
            value(
                &samples,
                "container_network_transmit_bytes_total",
                &["net1"]
            ),
            Some(20)
        );
        // Loopback traffic never leaves the pod: cAdvisor leaves it out too.
        assert!(samples
            .iter()
            .all(|s| s.label_values.last().unwrap() != "lo"));
        assert_eq!(samples.len(), 16);
    }

    #[test]
    fn a_layer_is_reported_once_measured_and_not_before() {
        let mut series = Series::new(BASE_LABELS.map(String::from).to_vec(), 7);
        let mut layer = WritableLayer {
            timestamp: 1,
            mountpoint: "/var/lib/crius/snapshots".into(),
            used_bytes: None,
            inodes_used: None,
        };
        series.layer(&layer);
        assert!(series.samples.is_empty());
        layer.used_bytes = Some(4096);
        series.layer(&layer);
        assert_eq!(
            value(
                &series.samples,
                "container_fs_usage_bytes",
                &["/var/lib/crius/snapshots"]
            ),
            Some(4096)
        );
    }

    #[test]
    fn descriptor_names_are_unique_cadvisor_container_names() {
        let mut names = HashSet::new();
        for d in DESCRIPTORS {
            assert!(names.insert(d.name), "{} described twice", d.name);
            assert!(d.name.starts_with("container_"), "{}", d.name);
            let counter = d.name.ends_with("_total");
            assert_eq!(counter, d.kind == MetricKind::Counter, "{}", d.name);
        }
    }

    #[test]
    fn every_sample_has_a_value_for_each_label_key_of_a_listed_descriptor() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "cgroup.controllers", "cpu memory\n");
        write(root.path(), "crius/c/memory.current", "1\n");
        write(root.path(), "crius/c/memory.stat", "anon 1\n");
        write(root.path(), "crius/c/memory.max", "max\n");
        write(root.path(), "crius/c/cpu.stat", "usage_usec 1\n");
        write(root.path(), "crius/c/cgroup.procs", "1\n");
        write(root.path(), "crius/c/cgroup.threads", "1\n");
        let mut samples = series_of(root.path());
        let mut series = Series::new(BASE_LABELS.map(String::from).to_vec(), 7);
        series.network(&[InterfaceUsage {
            name: "eth0".into(),
            ..Default::default()
        }]);
        samples.extend(series.samples);
        for sample in &samples {
            assert!(
                DESCRIPTORS.contains(&sample.descriptor),
                "{}",
                sample.descriptor.name
            );
            assert_eq!(
                sample.label_values.len(),
                sample.descriptor.label_keys().count(),
                "{}",
                sample.descriptor.name
            );
        }
        // Unlimited memory reads as 0, as cAdvisor reports it; no CPU limit has no period.
        assert_eq!(
            value(&samples, "container_spec_memory_limit_bytes", &[]),
            Some(0)
        );
        assert_eq!(value(&samples, "container_spec_cpu_period", &[]), None);
    }
}
