//! Latency histograms, result rows and the printed table.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies of one RPC on one endpoint, in nanoseconds.
pub struct Latencies {
    histogram: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    pub fn new() -> Self {
        // 1 ns .. 10 min at 3 significant digits; the bounds are valid constants.
        let histogram = match Histogram::new_with_bounds(1, 600_000_000_000, 3) {
            Ok(histogram) => histogram,
            Err(_) => unreachable!("constant histogram bounds are valid"),
        };
        Latencies {
            histogram,
            errors: 0,
            first_error: None,
        }
    }

    pub fn record(&mut self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.histogram.saturating_record(nanos);
    }

    pub fn error(&mut self, message: String) {
        self.errors += 1;
        self.first_error.get_or_insert(message);
    }

    pub fn merge(&mut self, other: &Latencies) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }

    pub fn row(&self, n: usize, endpoint: &str, rpc: &str, elapsed: Duration) -> Row {
        let micros = |q: f64| self.histogram.value_at_quantile(q) as f64 / 1000.0;
        let count = self.histogram.len();
        Row {
            n,
            endpoint: endpoint.to_string(),
            rpc: rpc.to_string(),
            count,
            errors: self.errors,
            first_error: self.first_error.clone(),
            p50_us: if count > 0 { micros(0.5) } else { 0.0 },
            p99_us: if count > 0 { micros(0.99) } else { 0.0 },
            ops_per_sec: if elapsed.is_zero() {
                0.0
            } else {
                count as f64 / elapsed.as_secs_f64()
            },
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Containers on the endpoint when measured.
    pub n: usize,
    pub endpoint: String,
    pub rpc: String,
    pub count: u64,
    pub errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    pub p50_us: f64,
    pub p99_us: f64,
    pub ops_per_sec: f64,
}

/// The row of the exec probes under the kubelet-shaped load.
pub const EXEC_PROBE_ROW: &str = "ExecSync @probes";

/// The exec probes of one endpoint's load.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeSummary {
    pub n: usize,
    pub endpoint: String,
    /// Running containers probed, each every `interval_seconds`.
    pub containers: usize,
    pub interval_seconds: f64,
    pub timeout_seconds: f64,
    pub probes: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Probes slower than the timeout (kubelet counts them failed), and their share.
    pub over_timeout: u64,
    pub share_over_timeout: f64,
    /// Probes that failed otherwise, or answered a non-zero exit code.
    pub errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl ProbeSummary {
    pub fn new(
        row: &Row,
        over_timeout: u64,
        containers: usize,
        interval: Duration,
        timeout: Duration,
    ) -> ProbeSummary {
        ProbeSummary {
            n: row.n,
            endpoint: row.endpoint.clone(),
            containers,
            interval_seconds: interval.as_secs_f64(),
            timeout_seconds: timeout.as_secs_f64(),
            probes: row.count,
            p50_us: row.p50_us,
            p99_us: row.p99_us,
            over_timeout,
            share_over_timeout: if row.count == 0 {
                0.0
            } else {
                over_timeout as f64 / row.count as f64
            },
            errors: row.errors,
            first_error: row.first_error.clone(),
        }
    }

    fn line(&self) -> String {
        let mut line = format!(
            "{:<12} N={:<5} {} containers every {:.0}s: {} probes, p50 {} p99 {}, {} ({:.1}%) over {:.0}s",
            self.endpoint,
            self.n,
            self.containers,
            self.interval_seconds,
            self.probes,
            fmt_us(self.p50_us),
            fmt_us(self.p99_us),
            self.over_timeout,
            self.share_over_timeout * 100.0,
            self.timeout_seconds
        );
        if self.errors > 0 {
            line.push_str(&format!(", {} failed", self.errors));
            if let Some(first) = &self.first_error {
                line.push_str(&format!(" (first: {first})"));
            }
        }
        line
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Resources {
    pub n: usize,
    pub endpoint: String,
    pub pid: u32,
    /// Sampled at the end of this N, once every endpoint has had its kubelet-shaped load.
    pub rss_kib: u64,
    /// Sampled the moment this endpoint's own kubelet-shaped load ended (its peak, before
    /// anything it freed could be returned); `None` when there was no load.
    pub rss_kib_after_load: Option<u64>,
    /// utime + stime of the process since it started.
    pub cpu_seconds_total: f64,
    /// CPU time spent while this N was measured.
    pub cpu_seconds_phase: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    pub n: usize,
    pub endpoint: String,
    /// From spawning the process until Version answered and ListContainers returned every
    /// container.
    pub seconds: f64,
    pub containers_listed: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Populate {
    pub n: usize,
    pub endpoint: String,
    pub pods: usize,
    pub running: usize,
    pub seconds: f64,
}

/// One timed PullImage.
#[derive(Debug, Clone, Serialize)]
pub struct Pull {
    pub endpoint: String,
    /// 0-based; endpoints alternate within a round.
    pub round: usize,
    pub seconds: f64,
    /// Blob GETs the registry answered during this pull.
    pub blob_gets: usize,
    /// Whether the registry served the image's largest layer during this pull (a cold pull).
    pub fetched_large_layer: bool,
}

/// The pulls of one endpoint, summarised.
#[derive(Debug, Clone, Serialize)]
pub struct PullSummary {
    pub endpoint: String,
    pub pulls: usize,
    pub p50_seconds: f64,
    pub max_seconds: f64,
    /// `fetched_bytes` / p50 seconds, MB = 10^6 bytes.
    pub p50_mb_per_sec: f64,
    /// `fetched_bytes` / max seconds (the slowest pull).
    pub min_mb_per_sec: f64,
}

/// The image pull phase: the large test image pulled by each endpoint from one registry.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PullReport {
    /// The reference pulled (`127.0.0.1:<port>/<repo>:<tag>`).
    pub image: String,
    /// Manifest, config and every layer, as stored in the registry.
    pub image_bytes: u64,
    /// What a pull has to download: the blobs not in the content store before the first pull
    /// (base layers the endpoints' namespaces already hold are not fetched).
    pub fetched_bytes: u64,
    pub pulls: Vec<Pull>,
    pub summary: Vec<PullSummary>,
    /// crius p50 / containerd p50 (the goal: at most 1.0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_p50: Option<f64>,
    /// crius max / containerd max.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_max: Option<f64>,
    /// Anything that made the comparison less than fair.
    pub notes: Vec<String>,
    /// Why the phase stopped early, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl PullReport {
    /// Fills `summary` and the ratios from `pulls`.
    pub fn summarise(&mut self) {
        let mut endpoints: Vec<&str> = Vec::new();
        for pull in &self.pulls {
            if !endpoints.contains(&pull.endpoint.as_str()) {
                endpoints.push(&pull.endpoint);
            }
        }
        let megabytes = self.fetched_bytes as f64 / 1e6;
        let per_sec = |seconds: f64| {
            if seconds > 0.0 {
                megabytes / seconds
            } else {
                0.0
            }
        };
        self.summary = endpoints
            .into_iter()
            .map(|endpoint| {
                let mut seconds: Vec<f64> = self
                    .pulls
                    .iter()
                    .filter(|p| p.endpoint == endpoint)
                    .map(|p| p.seconds)
                    .collect();
                seconds.sort_by(f64::total_cmp);
                // Nearest rank: the middle pull of an odd count, the lower middle of an even one.
                let p50 = seconds
                    .get(seconds.len().saturating_sub(1) / 2)
                    .copied()
                    .unwrap_or(0.0);
                let max = seconds.last().copied().unwrap_or(0.0);
                PullSummary {
                    endpoint: endpoint.to_string(),
                    pulls: seconds.len(),
                    p50_seconds: p50,
                    max_seconds: max,
                    p50_mb_per_sec: per_sec(p50),
                    min_mb_per_sec: per_sec(max),
                }
            })
            .collect();
        let find = |name: &str| self.summary.iter().find(|s| s.endpoint == name);
        let ratio = |a: f64, b: f64| (a > 0.0 && b > 0.0).then(|| a / b);
        if let (Some(crius), Some(containerd)) = (find("crius"), find("containerd")) {
            self.ratio_p50 = ratio(crius.p50_seconds, containerd.p50_seconds);
            self.ratio_max = ratio(crius.max_seconds, containerd.max_seconds);
        }
    }

    fn table(&self) -> String {
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        let mut out = format!(
            "\n== Image pull (N = {:.1} MiB image) ==\n",
            mib(self.image_bytes)
        );
        if !self.image.is_empty() {
            out.push_str(&format!(
                "{}: {:.1} MiB fetched per pull; endpoints alternate, each pull starts with \
                 the image gone from both namespaces and the content store\n",
                self.image,
                mib(self.fetched_bytes)
            ));
        }
        if !self.summary.is_empty() {
            out.push_str(&format!(
                "{:<12} | {:>5} | {:>8} | {:>8} | {:>8} | {:>8} | {}\n",
                "endpoint", "pulls", "p50", "max", "p50 MB/s", "min MB/s", "each pull (s)"
            ));
        }
        for s in &self.summary {
            let each: Vec<String> = self
                .pulls
                .iter()
                .filter(|p| p.endpoint == s.endpoint)
                .map(|p| format!("{:.2}", p.seconds))
                .collect();
            out.push_str(&format!(
                "{:<12} | {:>5} | {:>7.2}s | {:>7.2}s | {:>8.1} | {:>8.1} | {}\n",
                s.endpoint,
                s.pulls,
                s.p50_seconds,
                s.max_seconds,
                s.p50_mb_per_sec,
                s.min_mb_per_sec,
                each.join(" ")
            ));
        }
        if let Some(p50) = self.ratio_p50 {
            out.push_str(&format!("crius/containerd p50 {p50:.2}x"));
            if let Some(max) = self.ratio_max {
                out.push_str(&format!(", max {max:.2}x"));
            }
            out.push_str(" (goal <= 1.0)\n");
        }
        for note in &self.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        if let Some(error) = &self.error {
            out.push_str(&format!("error: {error}\n"));
        }
        out
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub endpoints: Vec<String>,
    /// The endpoint ratios are taken against.
    pub reference: String,
    pub rows: Vec<Row>,
    pub resources: Vec<Resources>,
    pub recovery: Vec<Recovery>,
    pub populate: Vec<Populate>,
    /// The image pull phase (`--pulls` with `--private`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullReport>,
    /// CPU time the machine kept from a spinning thread per CPU, before each N's reads.
    pub machine: Vec<crate::machine::MachineProbe>,
    /// The exec probes under each endpoint's kubelet-shaped load.
    pub probes: Vec<ProbeSummary>,
}

fn fmt_us(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.0}ms", us / 1000.0)
    } else if us >= 1000.0 {
        format!("{:.2}ms", us / 1000.0)
    } else {
        format!("{us:.0}µs")
    }
}

impl Report {
    /// One table per N: a line per RPC with p50/p99/ops of every endpoint and the ratio of each
    /// other endpoint to the reference.
    pub fn table(&self) -> String {
        let mut out = String::new();
        if let Some(pull) = &self.pull {
            out.push_str(&pull.table());
        }
        let mut by_n: BTreeMap<usize, Vec<&Row>> = BTreeMap::new();
        for row in &self.rows {
            by_n.entry(row.n).or_default().push(row);
        }
        let others: Vec<&String> = self
            .endpoints
            .iter()
            .filter(|e| **e != self.reference)
            .collect();
        for (n, rows) in by_n {
            out.push_str(&format!("\n== N = {n} containers ==\n{:<34}", "rpc"));
            for e in &self.endpoints {
                out.push_str(&format!(" | {:>26}", format!("{e} p50/p99/ops")));
            }
            for e in &others {
                out.push_str(&format!(
                    " | {:>15}",
                    format!("{e}/{} p50,p99", self.reference)
                ));
            }
            out.push('\n');
            let mut rpcs: Vec<&str> = Vec::new();
            for row in &rows {
                if !rpcs.contains(&row.rpc.as_str()) {
                    rpcs.push(&row.rpc);
                }
            }
            for rpc in rpcs {
                let find = |e: &str| rows.iter().find(|r| r.rpc == rpc && r.endpoint == e);
                out.push_str(&format!("{rpc:<34}"));
                for e in &self.endpoints {
                    let cell = match find(e) {
                        Some(r) if r.count == 0 => format!("errors {}", r.errors),
                        Some(r) => format!(
                            "{}/{}/{:.0}{}",
                            fmt_us(r.p50_us),
                            fmt_us(r.p99_us),
                            r.ops_per_sec,
                            if r.errors > 0 { "!" } else { "" }
                        ),
                        None => "-".to_string(),
                    };
                    out.push_str(&format!(" | {cell:>26}"));
                }
                for e in &others {
                    // Two bare transfers of different lengths say nothing of the endpoints.
                    let cell = match (find(e), find(&self.reference)) {
                        _ if crate::target::stands_in(rpc) => "-".to_string(),
                        (Some(a), Some(b))
                            if a.count > 0 && b.count > 0 && b.p50_us > 0.0 && b.p99_us > 0.0 =>
                        {
                            format!("{:.2}x,{:.2}x", a.p50_us / b.p50_us, a.p99_us / b.p99_us)
                        }
                        _ => "-".to_string(),
                    };
                    out.push_str(&format!(" | {cell:>15}"));
                }
                out.push('\n');
            }
        }
        if !self.probes.is_empty() {
            out.push_str("\n== exec probes under the kubelet-shaped load ==\n");
            for probe in &self.probes {
                out.push_str(&probe.line());
                out.push('\n');
            }
        }
        if !self.machine.is_empty() {
            out.push_str("\n== machine (a thread spinning on each CPU before the reads) ==\n");
            for probe in &self.machine {
                for cpu in &probe.cpus {
                    out.push_str(&format!("N={:<5} {}\n", probe.n, cpu.line()));
                }
            }
        }
        if !self.populate.is_empty() {
            out.push_str("\n== populate ==\n");
            for p in &self.populate {
                out.push_str(&format!(
                    "{:<12} N={:<5} pods={:<4} running={:<4} took {:.1}s\n",
                    p.endpoint, p.n, p.pods, p.running, p.seconds
                ));
            }
        }
        if !self.resources.is_empty() {
            out.push_str("\n== resources ==\n");
            for r in &self.resources {
                let after_load = r.rss_kib_after_load.map_or(String::new(), |kib| {
                    format!(
                        "  (RSS {:.1} MiB right after its load)",
                        kib as f64 / 1024.0
                    )
                });
                out.push_str(&format!(
                    "{:<12} N={:<5} pid={:<8} RSS {:>7.1} MiB  CPU {:>7.2}s total, {:>6.2}s in this phase{after_load}\n",
                    r.endpoint,
                    r.n,
                    r.pid,
                    r.rss_kib as f64 / 1024.0,
                    r.cpu_seconds_total,
                    r.cpu_seconds_phase
                ));
            }
        }
        if !self.recovery.is_empty() {
            out.push_str(
                "\n== recovery (restart until Version answers and ListContainers returns N) ==\n",
            );
            for r in &self.recovery {
                out.push_str(&format!(
                    "{:<12} N={:<5} {:.3}s ({} listed)\n",
                    r.endpoint, r.n, r.seconds, r.containers_listed
                ));
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rows_report_quantiles_and_rate() {
        let mut l = Latencies::new();
        for us in 1..=100 {
            l.record(Duration::from_micros(us));
        }
        l.error("boom".into());
        let row = l.row(5, "crius", "Version", Duration::from_secs(2));
        assert_eq!(row.count, 100);
        assert_eq!(row.errors, 1);
        assert!((row.p50_us - 50.0).abs() < 0.1, "{}", row.p50_us);
        assert!((row.p99_us - 99.0).abs() < 0.1, "{}", row.p99_us);
        assert!((row.ops_per_sec - 50.0).abs() < 1e-9);
    }

    /// Latencies holding one sample of `us` microseconds.
    fn one_sample(us: u64) -> Latencies {
        let mut l = Latencies::new();
        l.record(Duration::from_micros(us));
        l
    }

    #[test]
    fn table_has_ratios_against_the_reference() {
        let (a, b) = (one_sample(100), one_sample(200));
        let report = Report {
            endpoints: vec!["crius".into(), "containerd".into()],
            reference: "containerd".into(),
            rows: vec![
                a.row(5, "crius", "Version", Duration::from_secs(1)),
                b.row(5, "containerd", "Version", Duration::from_secs(1)),
            ],
            ..Report::default()
        };
        let table = report.table();
        assert!(table.contains("0.50x,0.50x"), "{table}");
    }

    #[test]
    fn the_floor_row_has_no_ratio_and_rss_after_the_load_is_shown() {
        let (a, b) = (one_sample(100), one_sample(50));
        let resources = |endpoint: &str, after: Option<u64>| Resources {
            n: 1000,
            endpoint: endpoint.into(),
            pid: 1,
            rss_kib: 30 * 1024,
            rss_kib_after_load: after,
            cpu_seconds_total: 1.0,
            cpu_seconds_phase: 0.5,
        };
        let report = Report {
            endpoints: vec!["crius".into(), "containerd".into()],
            reference: "containerd".into(),
            rows: vec![
                a.row(5, "crius", crate::target::FLOOR, Duration::from_secs(1)),
                b.row(
                    5,
                    "containerd",
                    crate::target::FLOOR,
                    Duration::from_secs(1),
                ),
            ],
            resources: vec![
                resources("crius", Some(34 * 1024)),
                resources("containerd", None),
            ],
            ..Report::default()
        };
        let table = report.table();
        let floor = table
            .lines()
            .find(|l| l.starts_with(crate::target::FLOOR))
            .unwrap();
        assert!(!floor.contains("2.00x"), "{table}");
        assert!(floor.trim_end().ends_with('-'), "{table}");
        let rss = |name: &str| table.lines().find(|l| l.starts_with(name)).unwrap();
        assert!(
            rss("crius").contains("(RSS 34.0 MiB right after its load)"),
            "{table}"
        );
        assert!(!rss("containerd").contains("right after"), "{table}");
    }

    #[test]
    fn exec_probes_report_the_share_over_the_timeout() {
        let mut l = Latencies::new();
        for ms in [10, 20, 30, 1500] {
            l.record(Duration::from_millis(ms));
        }
        l.error("ExecSync: DeadlineExceeded: timed out".into());
        let row = l.row(100, "crius", EXEC_PROBE_ROW, Duration::from_secs(10));
        let summary = ProbeSummary::new(
            &row,
            1,
            100,
            Duration::from_secs(10),
            Duration::from_secs(1),
        );
        assert_eq!(summary.probes, 4);
        assert!((summary.share_over_timeout - 0.25).abs() < 1e-9);
        let table = Report {
            endpoints: vec!["crius".into()],
            reference: "crius".into(),
            rows: vec![row],
            probes: vec![summary],
            ..Report::default()
        }
        .table();
        let line = table
            .lines()
            .find(|l| l.starts_with("crius        N=100"))
            .unwrap();
        assert!(line.contains("4 probes"), "{table}");
        assert!(line.contains("1 (25.0%) over 1s"), "{table}");
        assert!(line.contains("1 failed (first: ExecSync"), "{table}");
        assert!(table.contains(EXEC_PROBE_ROW), "{table}");
    }

    #[test]
    fn pull_summary_has_p50_max_throughput_and_ratio() {
        let pull = |endpoint: &str, round, seconds| Pull {
            endpoint: endpoint.into(),
            round,
            seconds,
            blob_gets: 3,
            fetched_large_layer: true,
        };
        let mut report = PullReport {
            image: "127.0.0.1:5000/crius/large:1".into(),
            image_bytes: 50 * 1024 * 1024,
            fetched_bytes: 10_000_000,
            pulls: vec![
                pull("crius", 0, 1.0),
                pull("containerd", 0, 4.0),
                pull("crius", 1, 3.0),
                pull("containerd", 1, 2.0),
                pull("crius", 2, 2.0),
                pull("containerd", 2, 2.0),
            ],
            ..PullReport::default()
        };
        report.summarise();
        let crius = &report.summary[0];
        assert_eq!(crius.endpoint, "crius");
        assert_eq!((crius.p50_seconds, crius.max_seconds), (2.0, 3.0));
        assert!((crius.p50_mb_per_sec - 5.0).abs() < 1e-9);
        assert_eq!(report.summary[1].max_seconds, 4.0);
        assert_eq!(report.ratio_p50, Some(1.0));
        assert_eq!(report.ratio_max, Some(0.75));
        let table = Report {
            pull: Some(report),
            ..Report::default()
        }
        .table();
        assert!(table.contains("Image pull (N = 50.0 MiB image)"), "{table}");
        assert!(table.contains("p50 1.00x, max 0.75x"), "{table}");
    }
}
