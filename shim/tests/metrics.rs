//! The Prometheus endpoint end to end (DESIGN.md decision 14): crius on a private containerd
//! with `--metrics-address`, scraped over HTTP and read with an independent parser of the text
//! format, counters checked to move by exactly what scripted CRI calls should add. crius-only:
//! containerd 1.6's CRI has no such endpoint. Needs root and the packages from
//! `scripts/install-deps` (the CNI plugins).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use conformance::harness::containerd::{Containerd, ContainerdOptions};
use conformance::harness::crius::Crius;
use conformance::harness::pods;
use conformance::runner::connect;
use cri_api::v1 as cri;
use prometheus_parse::{LineInfo, Scrape, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 GET; the status line's code and the body.
async fn get(address: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .with_context(|| format!("connecting to the metrics endpoint {address}"))?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .context("an HTTP answer without a blank line after its head")?;
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no status code in {head:?}"))?;
    Ok((code, body.to_string()))
}

/// `/metrics`, parsed. Every line must be a comment or a sample the parser reads: a line it
/// would skip silently fails the scrape instead.
async fn scrape(address: SocketAddr) -> Result<Scrape> {
    let (code, body) = get(address, "/metrics").await?;
    ensure!(code == 200, "GET /metrics answered {code}: {body}");
    for line in body.lines() {
        match LineInfo::parse(line) {
            LineInfo::Sample { .. } | LineInfo::Doc { .. } | LineInfo::Type { .. } => {}
            LineInfo::Empty | LineInfo::Ignored => {
                bail!("/metrics has a line that is neither a sample nor HELP/TYPE: {line:?}")
            }
        }
    }
    Ok(Scrape::parse(body.lines().map(|l| Ok(l.to_string())))?)
}

/// The value of the series `metric{labels}` (labels compared exactly); 0 when absent, as
/// Prometheus reads a series that was never written.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == metric
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
        .map_or(0.0, |s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
            Value::Summary(_) => f64::NAN,
        })
}

fn calls(scrape: &Scrape, method: &str) -> f64 {
    value(
        scrape,
        "crius_cri_request_duration_seconds_count",
        &[("method", method)],
    )
}

fn answered(scrape: &Scrape, method: &str, code: &str) -> f64 {
    value(
        scrape,
        "crius_cri_requests_total",
        &[("method", method), ("code", code)],
    )
}

/// Scrapes until `ready` holds (a stream's end reaches crius a moment after the client drops
/// it), for at most 10 s.
async fn scrape_until(
    address: SocketAddr,
    what: &str,
    ready: impl Fn(&Scrape) -> bool,
) -> Result<Scrape> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let scraped = scrape(address).await?;
        if ready(&scraped) {
            return Ok(scraped);
        }
        if Instant::now() > deadline {
            bail!("{what}: not seen in /metrics within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn free_port() -> Result<u16> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(probe.local_addr()?.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_calls_move_the_scraped_counters_by_exactly_what_they_did() -> Result<()> {
    let containerd = Containerd::start(ContainerdOptions::default())?;
    let port = free_port()?;
    let address: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut crius = Crius::start(
        None,
        containerd.socket(),
        &["--metrics-address", &address.to_string()],
    )?;
    crius.write_cni_conflist("metrics", None)?;
    let logs = tempfile::tempdir()?;
    let channel = connect::channel(&crius.endpoint()).await?;
    let mut rt = connect::runtime_client(channel.clone());

    let start = scrape(address).await?;
    for family in [
        "crius_cri_request_duration_seconds",
        "crius_pod_sandboxes",
        "crius_containers",
        "crius_image_pull_duration_seconds",
        "crius_cni_operation_duration_seconds",
        "crius_store_rebuild_duration_seconds",
    ] {
        ensure!(
            start.docs.get(family).is_some_and(|help| !help.is_empty()),
            "{family} has no HELP text"
        );
    }
    ensure!(
        start
            .samples
            .iter()
            .any(|s| s.metric == "crius_store_rebuild_duration_seconds"),
        "the store rebuild at start is not reported"
    );
    let (code, _) = get(address, "/").await?;
    ensure!(code == 404, "GET / answered {code}, not 404");

    // N ListContainers, unfiltered (answered from the kept bytes) and filtered (by tonic).
    const N: usize = 40;
    for i in 0..N {
        let filter = (i % 2 == 1).then(|| cri::ContainerFilter {
            state: Some(cri::ContainerStateValue { state: 1 }),
            ..Default::default()
        });
        rt.list_containers(cri::ListContainersRequest { filter })
            .await?;
    }
    let listed = scrape(address).await?;
    ensure!(
        calls(&listed, "ListContainers") - calls(&start, "ListContainers") == N as f64,
        "{N} ListContainers moved the histogram's count from {} to {}",
        calls(&start, "ListContainers"),
        calls(&listed, "ListContainers")
    );
    ensure!(
        answered(&listed, "ListContainers", "OK") - answered(&start, "ListContainers", "OK")
            == N as f64
    );

    // A refused call: its code's counter grows by one, OK does not.
    let refused = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: "no-such-sandbox".into(),
            verbose: false,
        })
        .await;
    ensure!(
        refused.as_ref().map_err(tonic::Status::code).err() == Some(tonic::Code::NotFound),
        "PodSandboxStatus of an unknown id: {refused:?}"
    );
    let after_refusal = scrape(address).await?;
    ensure!(
        answered(&after_refusal, "PodSandboxStatus", "NotFound")
            - answered(&listed, "PodSandboxStatus", "NotFound")
            == 1.0
    );
    ensure!(
        answered(&after_refusal, "PodSandboxStatus", "OK")
            == answered(&listed, "PodSandboxStatus", "OK")
    );

    // An event subscriber shows, and sees the pod that runs next.
    let mut events = connect::runtime_client(channel.clone())
        .get_container_events(cri::GetEventsRequest {})
        .await?
        .into_inner();
    let subscribed = scrape_until(address, "one event subscriber", |s| {
        value(s, "crius_container_event_subscribers", &[]) == 1.0
    })
    .await?;

    let ready = |s: &Scrape| value(s, "crius_pod_sandboxes", &[("state", "ready")]);
    let cni = |s: &Scrape, operation: &str| {
        value(
            s,
            "crius_cni_operation_duration_seconds_count",
            &[("operation", operation)],
        )
    };
    let pod = pods::run_pod(
        &mut rt,
        &pods::pod_config("scraped", "metrics", logs.path()),
    )
    .await?;
    let running = scrape(address).await?;
    ensure!(ready(&running) - ready(&subscribed) == 1.0);
    ensure!(cni(&running, "ADD") - cni(&subscribed, "ADD") == 1.0);
    ensure!(
        value(
            &running,
            "crius_backend_request_duration_seconds_count",
            &[("method", "create_container")]
        ) > value(
            &subscribed,
            "crius_backend_request_duration_seconds_count",
            &[("method", "create_container")]
        ),
        "the pause container's creation is not timed"
    );
    let first = tokio::time::timeout(Duration::from_secs(10), events.message())
        .await
        .context("no event for the pod within 10 s")??
        .context("the event stream ended")?;
    ensure!(
        first.pod_sandbox_status.as_ref().map(|s| s.id.as_str()) == Some(pod.as_str()),
        "the first event is not the new pod's: {first:?}"
    );
    ensure!(
        value(&running, "crius_container_events_published_total", &[])
            > value(&subscribed, "crius_container_events_published_total", &[])
    );

    pods::stop_and_remove_pod(&mut rt, &pod).await?;
    drop(events);
    let removed = scrape_until(address, "the subscriber gone", |s| {
        value(s, "crius_container_event_subscribers", &[]) == 0.0
    })
    .await?;
    ensure!(ready(&removed) == ready(&subscribed));
    ensure!(cni(&removed, "DEL") - cni(&running, "DEL") == 1.0);
    ensure!(
        value(
            &removed,
            "crius_cni_operation_failures_total",
            &[("operation", "DEL")]
        ) == 0.0
    );

    drop(rt);
    drop(channel);
    crius.shutdown()?;
    drop(containerd);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_metrics_address_stops_crius_with_an_error_that_names_it() -> Result<()> {
    let containerd = Containerd::start(ContainerdOptions::default())?;
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = taken.local_addr()?.to_string();
    let said = match Crius::start(None, containerd.socket(), &["--metrics-address", &address]) {
        // The harness's error carries the tail of crius's log.
        Err(error) => format!("{error:#}"),
        // The harness reached the CRI socket in the moment between the two binds.
        Ok(mut crius) => {
            let deadline = Instant::now() + Duration::from_secs(10);
            while crius.is_running() {
                ensure!(
                    Instant::now() < deadline,
                    "crius keeps running although {address} is taken"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let log = crius.log()?;
            crius.shutdown()?;
            log
        }
    };
    ensure!(
        said.contains(&format!("binding metrics_address {address}")),
        "crius did not say that the metrics address was taken: {said}"
    );
    drop(containerd);
    Ok(())
}
