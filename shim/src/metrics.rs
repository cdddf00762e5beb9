//! Prometheus metrics, served on `metrics_address` (DESIGN.md decision 14).
//!
//! Recording is process-wide (one crius per process) and lock-free: RPCs
//! (`crate::instrument`), backend calls ([`backend::TimedBackend`]), pulls and CNI record into
//! fixed atomic histograms and counters created before the first call, so recording never
//! allocates, hashes a label set or takes a lock. A scrape reads those, plus the store and the
//! event hub as they are at that moment, through one collector; `prometheus-client` writes the
//! text (OpenMetrics or Prometheus 0.0.4, as the scraper asks).

pub mod backend;
mod endpoint;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::runtime::Crius;
use crate::store::{ContainerState, SandboxState};

pub use endpoint::{Endpoint, Serving};

/// Every metric's name starts with this (and `_`).
pub const PREFIX: &str = "crius";

/// Upper bounds of the latency buckets, in nanoseconds: from the microseconds a hot read from
/// the store takes to the minutes a large pull may; an unbounded bucket follows.
const BOUNDS_NANOS: [u64; 22] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
    120_000_000_000,
];
const SLOTS: usize = BOUNDS_NANOS.len() + 1;

/// A latency histogram that records with two relaxed atomic adds. Its count is the sum of
/// its buckets, read at scrape time, so a scrape never sees a count that its buckets miss.
pub struct LatencyHistogram {
    /// Observations per bucket (not cumulative); the last one is unbounded.
    slots: [AtomicU64; SLOTS],
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    pub const fn new() -> Self {
        Self {
            slots: [const { AtomicU64::new(0) }; SLOTS],
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        // A linear scan: the calls that must stay cheap are the fast ones, found first.
        let slot = BOUNDS_NANOS
            .iter()
            .position(|&bound| nanos <= bound)
            .unwrap_or(BOUNDS_NANOS.len());
        self.slots[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.slots.iter().map(|s| s.load(Ordering::Relaxed)).sum()
    }

    fn encode(&self, metric: &mut MetricEncoder) -> fmt::Result {
        let mut buckets = [(f64::INFINITY, 0u64); SLOTS];
        for (index, (bucket, slot)) in buckets.iter_mut().zip(&self.slots).enumerate() {
            if let Some(&bound) = BOUNDS_NANOS.get(index) {
                bucket.0 = seconds(bound);
            }
            bucket.1 = slot.load(Ordering::Relaxed);
        }
        let count = buckets.iter().map(|b| b.1).sum();
        let sum = seconds(self.sum_nanos.load(Ordering::Relaxed));
        metric.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

fn seconds(nanos: u64) -> f64 {
    Duration::from_nanos(nanos).as_secs_f64()
}

/// The latencies and failures of one kind of operation.
pub struct Operation {
    pub latency: LatencyHistogram,
    failures: AtomicU64,
}

impl Operation {
    pub const fn new() -> Self {
        Self {
            latency: LatencyHistogram::new(),
            failures: AtomicU64::new(0),
        }
    }

    pub fn finished(&self, elapsed: Duration, succeeded: bool) {
        self.latency.observe(elapsed);
        if !succeeded {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

impl Default for Operation {
    fn default() -> Self {
        Self::new()
    }
}

/// Image pulls that reached the backend (a request refused before is counted only as a
/// PullImage call).
pub struct Pulls {
    started: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
    /// Successful pulls only: a failure's time says more about a timeout than about pulling.
    duration: LatencyHistogram,
}

impl Pulls {
    const fn new() -> Self {
        Self {
            started: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            duration: LatencyHistogram::new(),
        }
    }

    /// One pull ended: with the pulled image's stored size, or `None` when it failed.
    pub fn finished(&self, elapsed: Duration, pulled_bytes: Option<u64>) {
        self.started.fetch_add(1, Ordering::Relaxed);
        match pulled_bytes {
            Some(bytes) => {
                self.bytes.fetch_add(bytes, Ordering::Relaxed);
                self.duration.observe(elapsed);
            }
            None => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// CNI ADD and DEL through a network's whole plugin chain.
pub struct Cni {
    pub add: Operation,
    pub del: Operation,
}

pub static PULLS: Pulls = Pulls::new();
pub static CNI: Cni = Cni {
    add: Operation::new(),
    del: Operation::new(),
};
/// How long the last store rebuild at start took; `u64::MAX` until one finished.
static STORE_REBUILD_NANOS: AtomicU64 = AtomicU64::new(u64::MAX);

/// Records how long rebuilding the store from the backend and the records took.
pub fn store_rebuilt(elapsed: Duration) {
    let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX - 1);
    STORE_REBUILD_NANOS.store(nanos, Ordering::Relaxed);
}

/// gRPC status code names, by code number, as grpc-go and its Prometheus middleware spell them.
pub const GRPC_CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// What a scrape reads from crius at that moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Objects {
    /// Sandboxes by state: ready, notready.
    pub sandboxes: [u64; 2],
    /// Containers by state: created, running, exited, unknown.
    pub containers: [u64; 4],
    pub event_subscribers: u64,
    pub events_published: u64,
    pub event_subscribers_lagged: u64,
}

const SANDBOX_STATES: [&str; 2] = ["ready", "notready"];
const CONTAINER_STATES: [&str; 4] = ["created", "running", "exited", "unknown"];

impl Objects {
    /// Counted from the store's snapshots: no lock, and no backend call.
    pub fn of(crius: &Crius) -> Self {
        let mut objects = Objects::default();
        for sandbox in crius.store.sandboxes.snapshot().values() {
            let slot = match sandbox.status().state {
                SandboxState::Ready => 0,
                SandboxState::NotReady => 1,
            };
            objects.sandboxes[slot] += 1;
        }
        for container in crius.store.containers.snapshot().values() {
            let slot = match container.status().state {
                ContainerState::Created => 0,
                ContainerState::Running => 1,
                ContainerState::Exited => 2,
                ContainerState::Unknown => 3,
            };
            objects.containers[slot] += 1;
        }
        objects.event_subscribers = crius.pod_events.subscribers() as u64;
        objects.events_published = crius.pod_events.published();
        objects.event_subscribers_lagged = crius.pod_events.ended_behind();
        objects
    }
}

/// The registry a scrape encodes; `objects` is read once per scrape.
pub fn registry(objects: impl Fn() -> Objects + Send + Sync + 'static) -> Registry {
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register_collector(Box::new(Scrape {
        objects: Box::new(objects),
    }));
    registry
}

/// The registry of a running crius.
pub fn registry_of(crius: Arc<Crius>) -> Registry {
    registry(move || Objects::of(&crius))
}

struct Scrape {
    objects: Box<dyn Fn() -> Objects + Send + Sync>,
}

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("crius metrics")
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        encode_rpcs(&mut encoder)?;
        encode_backend(&mut encoder)?;
        encode_objects(&mut encoder, &(self.objects)())?;
        encode_pulls(&mut encoder)?;
        encode_cni(&mut encoder)?;
        if let Some(rebuild) = rebuild_seconds() {
            let mut metric = encoder.encode_descriptor(
                "store_rebuild_duration",
                "Time the last start took to rebuild the store from the backend and crius's records.",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?;
            metric.encode_gauge(&rebuild)?;
        }
        Ok(())
    }
}

fn rebuild_seconds() -> Option<f64> {
    match STORE_REBUILD_NANOS.load(Ordering::Relaxed) {
        u64::MAX => None,
        nanos => Some(seconds(nanos)),
    }
}

fn encode_rpcs(encoder: &mut DescriptorEncoder) -> fmt::Result {
    // Only methods called at least once: most of the 43 never are on a given node.
    let called: Vec<(&str, &crate::instrument::RpcStats)> = crate::instrument::methods()
        .filter(|(_, stats)| stats.latency.count() > 0)
        .collect();
    let mut family = encoder.encode_descriptor(
        "cri_request_duration",
        "Time crius took to answer a CRI call, by method.",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    for (method, stats) in &called {
        stats
            .latency
            .encode(&mut family.encode_family(&[("method", *method)])?)?;
    }
    let mut family = encoder.encode_descriptor(
        "cri_requests",
        "CRI calls answered, by method and gRPC status code.",
        None,
        MetricType::Counter,
    )?;
    for (method, stats) in &called {
        for (code, name) in GRPC_CODES.iter().enumerate() {
            let calls = stats.calls_with(code);
            // OK always, so a method's error ratio has a denominator; errors once they occur.
            if calls > 0 || code == 0 {
                family
                    .encode_family(&[("method", *method), ("code", *name)])?
                    .encode_counter::<NoLabelSet, _, u64>(&calls, None)?;
            }
        }
    }
    Ok(())
}

fn encode_backend(encoder: &mut DescriptorEncoder) -> fmt::Result {
    // Only methods called at least once, as for the CRI methods.
    operations(
        encoder,
        ("backend_request_duration", "Time the container engine took to answer a call of crius's Backend interface, by method."),
        ("backend_request_failures", "Calls of crius's Backend interface that failed, by method."),
        "method",
        backend::calls().filter(|(_, operation)| operation.latency.count() > 0),
    )
}

/// A family of timed operations: a latency histogram and a failure counter per `label`.
fn operations<'a>(
    encoder: &mut DescriptorEncoder,
    (duration, duration_help): (&str, &str),
    (failures, failures_help): (&str, &str),
    label: &str,
    series: impl Iterator<Item = (&'a str, &'a Operation)> + Clone,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(
        duration,
        duration_help,
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    for (value, operation) in series.clone() {
        operation
            .latency
            .encode(&mut family.encode_family(&[(label, value)])?)?;
    }
    labelled_counters(
        encoder,
        failures,
        failures_help,
        label,
        series.map(|(value, operation)| (value, operation.failures())),
    )
}

fn encode_objects(encoder: &mut DescriptorEncoder, objects: &Objects) -> fmt::Result {
    labelled_gauges(
        encoder,
        "pod_sandboxes",
        "Pod sandboxes crius holds, by state.",
        "state",
        SANDBOX_STATES.into_iter().zip(objects.sandboxes),
    )?;
    labelled_gauges(
        encoder,
        "containers",
        "Containers crius holds, by state.",
        "state",
        CONTAINER_STATES.into_iter().zip(objects.containers),
    )?;
    encoder
        .encode_descriptor(
            "container_event_subscribers",
            "GetContainerEvents streams open now.",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&objects.event_subscribers)?;
    counter(
        encoder,
        "container_events_published",
        "Container and sandbox events sent to GetContainerEvents subscribers (built only while one listens).",
        objects.events_published,
    )?;
    counter(
        encoder,
        "container_event_subscribers_lagged",
        "GetContainerEvents streams ended with an error because the subscriber fell behind.",
        objects.event_subscribers_lagged,
    )
}

fn encode_pulls(encoder: &mut DescriptorEncoder) -> fmt::Result {
    counter(
        encoder,
        "image_pulls",
        "Image pulls crius asked the backend for, failed ones included.",
        PULLS.started.load(Ordering::Relaxed),
    )?;
    counter(
        encoder,
        "image_pull_failures",
        "Image pulls that failed.",
        PULLS.failed.load(Ordering::Relaxed),
    )?;
    let mut metric = encoder.encode_descriptor(
        "image_pull",
        "Bytes of the images pulled successfully, as stored (compressed layers, config, manifest), counted again when an image is pulled again.",
        Some(&Unit::Bytes),
        MetricType::Counter,
    )?;
    metric.encode_counter::<NoLabelSet, _, u64>(&PULLS.bytes.load(Ordering::Relaxed), None)?;
    let mut metric = encoder.encode_descriptor(
        "image_pull_duration",
        "Time a successful image pull took.",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    PULLS.duration.encode(&mut metric)
}

const CNI_OPERATIONS: [&str; 2] = ["ADD", "DEL"];

fn encode_cni(encoder: &mut DescriptorEncoder) -> fmt::Result {
    operations(
        encoder,
        (
            "cni_operation_duration",
            "Time a CNI ADD or DEL took through the network's whole plugin chain.",
        ),
        ("cni_operation_failures", "CNI ADD or DEL that failed."),
        "operation",
        CNI_OPERATIONS.into_iter().zip([&CNI.add, &CNI.del]),
    )
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    encoder
        .encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&value, None)
}

fn labelled_counters<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    series: impl Iterator<Item = (&'a str, u64)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, count) in series {
        family
            .encode_family(&[(label, value)])?
            .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
    }
    Ok(())
}

fn labelled_gauges<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    series: impl Iterator<Item = (&'a str, u64)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (value, gauge) in series {
        family
            .encode_family(&[(label, value)])?
            .encode_gauge(&gauge)?;
    }
    Ok(())
}

/// The text format a scraper asked for, by its `Accept` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    /// Prometheus text 0.0.4: what a scraper gets unless it asks for OpenMetrics.
    Prometheus,
}

impl Format {
    pub fn accepted(accept: Option<&str>) -> Self {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Self::OpenMetrics,
            _ => Self::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

/// The registry's metrics as text in `format`.
pub fn encode(registry: &Registry, format: Format) -> Result<String, fmt::Error> {
    let mut text = String::with_capacity(32 * 1024);
    match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut text, registry)?,
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut text, registry)?
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(objects: Objects, format: Format) -> String {
        let registry = registry(move || objects.clone());
        encode(&registry, format).unwrap()
    }

    /// The value of the sample line `series` (name and labels exactly as printed).
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|value| value.parse().ok())
    }

    #[test]
    fn a_histogram_counts_each_observation_in_the_first_bucket_that_holds_it() {
        let histogram = LatencyHistogram::new();
        histogram.observe(Duration::from_micros(3));
        histogram.observe(Duration::from_micros(10));
        histogram.observe(Duration::from_millis(2));
        histogram.observe(Duration::from_secs(3600));
        assert_eq!(histogram.count(), 4);
        let loads: Vec<u64> = histogram
            .slots
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .collect();
        assert_eq!(loads[0], 2, "3 µs and 10 µs are both within 10 µs");
        assert_eq!(loads[7], 1, "2 ms is within 2.5 ms");
        assert_eq!(loads[SLOTS - 1], 1, "an hour is past every bound");
        assert_eq!(
            histogram.sum_nanos.load(Ordering::Relaxed),
            3_000 + 10_000 + 2_000_000 + 3_600_000_000_000
        );
    }

    #[test]
    fn objects_are_exposed_by_state_with_help_and_the_crius_prefix() {
        let objects = Objects {
            sandboxes: [3, 1],
            containers: [1, 2, 5, 0],
            event_subscribers: 2,
            events_published: 40,
            event_subscribers_lagged: 1,
        };
        let text = scrape(objects, Format::Prometheus);
        assert_eq!(
            sample(&text, r#"crius_pod_sandboxes{state="ready"}"#),
            Some(3.0)
        );
        assert_eq!(
            sample(&text, r#"crius_pod_sandboxes{state="notready"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, r#"crius_containers{state="exited"}"#),
            Some(5.0)
        );
        assert_eq!(
            sample(&text, r#"crius_containers{state="unknown"}"#),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, "crius_container_event_subscribers"),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, "crius_container_events_published_total"),
            Some(40.0)
        );
        assert_eq!(
            sample(&text, "crius_container_event_subscribers_lagged_total"),
            Some(1.0)
        );
        assert!(text.contains("# HELP crius_pod_sandboxes Pod sandboxes crius holds, by state."));
        assert!(text.contains("# TYPE crius_image_pull_duration_seconds histogram"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("crius_"), "unprefixed sample {line:?}");
        }
    }

    #[test]
    fn a_call_shows_in_its_method_histogram_and_under_its_status_code() {
        let before = scrape(Objects::default(), Format::Prometheus);
        let count = |text: &str| {
            sample(
                text,
                r#"crius_cri_request_duration_seconds_count{method="ImageFsInfo"}"#,
            )
            .unwrap_or(0.0)
        };
        let calls = |text: &str, code: &str| {
            sample(
                text,
                &format!(r#"crius_cri_requests_total{{method="ImageFsInfo",code="{code}"}}"#),
            )
            .unwrap_or(0.0)
        };
        let stats = crate::instrument::methods()
            .find(|(m, _)| *m == "ImageFsInfo")
            .map(|(_, s)| s)
            .unwrap();
        stats.record(Duration::from_micros(4), tonic::Code::Ok);
        stats.record(Duration::from_micros(4), tonic::Code::Unavailable);
        stats.record(Duration::from_micros(4), tonic::Code::Unavailable);
        let after = scrape(Objects::default(), Format::Prometheus);
        assert_eq!(count(&after) - count(&before), 3.0);
        assert_eq!(calls(&after, "OK") - calls(&before, "OK"), 1.0);
        assert_eq!(
            calls(&after, "Unavailable") - calls(&before, "Unavailable"),
            2.0
        );
        let inf = sample(
            &after,
            r#"crius_cri_request_duration_seconds_bucket{method="ImageFsInfo",le="+Inf"}"#,
        );
        assert_eq!(inf, Some(count(&after)), "the +Inf bucket holds every call");
    }

    #[test]
    fn openmetrics_is_served_to_a_scraper_that_asks_for_it_and_ends_with_eof() {
        assert_eq!(
            Format::accepted(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            )),
            Format::OpenMetrics
        );
        assert_eq!(Format::accepted(Some("text/plain")), Format::Prometheus);
        assert_eq!(Format::accepted(None), Format::Prometheus);
        let text = scrape(Objects::default(), Format::OpenMetrics);
        assert!(text.ends_with("# EOF\n"));
        assert!(text.contains("# UNIT crius_image_pull_duration_seconds seconds"));
    }

    #[test]
    fn the_store_rebuild_time_appears_once_a_rebuild_finished() {
        store_rebuilt(Duration::from_millis(1500));
        let text = scrape(Objects::default(), Format::Prometheus);
        assert_eq!(
            sample(&text, "crius_store_rebuild_duration_seconds"),
            Some(1.5)
        );
    }

    #[test]
    fn the_families_are_the_documented_ones() {
        // The value the rebuild test sets too: the tests share the process-wide gauge.
        store_rebuilt(Duration::from_millis(1500));
        let text = scrape(Objects::default(), Format::Prometheus);
        let families: Vec<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .collect();
        assert_eq!(
            families,
            [
                "crius_cri_request_duration_seconds histogram",
                "crius_cri_requests_total counter",
                "crius_backend_request_duration_seconds histogram",
                "crius_backend_request_failures_total counter",
                "crius_pod_sandboxes gauge",
                "crius_containers gauge",
                "crius_container_event_subscribers gauge",
                "crius_container_events_published_total counter",
                "crius_container_event_subscribers_lagged_total counter",
                "crius_image_pulls_total counter",
                "crius_image_pull_failures_total counter",
                "crius_image_pull_bytes_total counter",
                "crius_image_pull_duration_seconds histogram",
                "crius_cni_operation_duration_seconds histogram",
                "crius_cni_operation_failures_total counter",
                "crius_store_rebuild_duration_seconds gauge",
            ]
        );
    }

    #[test]
    fn pulls_count_bytes_of_successes_and_failures_apart() {
        let before = scrape(Objects::default(), Format::Prometheus);
        PULLS.finished(Duration::from_secs(2), Some(1000));
        PULLS.finished(Duration::from_secs(1), None);
        let after = scrape(Objects::default(), Format::Prometheus);
        let grew =
            |series: &str| sample(&after, series).unwrap() - sample(&before, series).unwrap();
        assert_eq!(grew("crius_image_pulls_total"), 2.0);
        assert_eq!(grew("crius_image_pull_failures_total"), 1.0);
        assert_eq!(grew("crius_image_pull_bytes_total"), 1000.0);
        assert_eq!(grew("crius_image_pull_duration_seconds_count"), 1.0);
    }
}
