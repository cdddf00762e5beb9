//! GetContainerEvents against a real crius on a private containerd: a subscriber that stops
//! reading is ended with an error once it falls `event_buffer` events behind, instead of
//! being buffered without bound, while a subscriber that keeps reading gets every event.
//! Needs root and the packages from `scripts/install-deps`.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use conformance::harness::containerd::{Containerd, ContainerdOptions};
use conformance::harness::crius::Crius;
use conformance::harness::images::Images;
use conformance::harness::pods;
use conformance::runner::connect;
use cri_api::v1 as cri;
use tonic::Code;

const BUSYBOX: &str = "localhost/crius/busybox:1";
const BUFFER: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_falls_behind_is_ended_and_a_reader_gets_every_event() -> Result<()> {
    let containerd = Containerd::start(ContainerdOptions::default())?;
    Images::get()?.import(&containerd, "crius", BUSYBOX)?;
    let buffer = BUFFER.to_string();
    let mut crius = Crius::start(None, containerd.socket(), &["--event-buffer", &buffer])?;
    crius.write_cni_conflist("crius-events", None)?;
    let channel = connect::channel(&crius.endpoint()).await?;
    let mut rt = connect::runtime_client(channel.clone());
    conformance::reference::wait_network_ready(&mut rt).await?;

    // Two subscribers: one that reads as events come, one that reads nothing until the end.
    let mut slow = connect::runtime_client(channel.clone())
        .get_container_events(cri::GetEventsRequest {})
        .await?
        .into_inner();
    let mut reader = connect::runtime_client(channel)
        .get_container_events(cri::GetEventsRequest {})
        .await?
        .into_inner();
    // Counts until no event comes for 5 s.
    let counting = tokio::spawn(async move {
        let mut seen = 0usize;
        while let Ok(Ok(Some(_))) =
            tokio::time::timeout(Duration::from_secs(5), reader.message()).await
        {
            seen += 1;
        }
        seen
    });

    // 4 pods x (2 + 10 containers x 4 + 2) events: far more than the buffer. Each container
    // carries a 20 KB annotation, so the events (each lists every container of its pod)
    // also outgrow what HTTP/2 holds in flight for a reader that does not read (~2.4 MB).
    let logs = tempfile::tempdir()?;
    let mut expected = 0;
    for p in 0..4 {
        let config = pods::pod_config(&format!("events-{p}"), "events", logs.path());
        let pod = pods::run_pod(&mut rt, &config).await?;
        for c in 0..10 {
            let mut container = pods::container_config(&format!("c{c}"), BUSYBOX, &["sleep", "60"]);
            container
                .annotations
                .insert("padding".into(), "x".repeat(20_000));
            pods::create_and_start(&mut rt, &pod, &config, container).await?;
        }
        pods::stop_and_remove_pod(&mut rt, &pod).await?;
        expected += 2 + 10 * 4 + 2;
    }

    // The slow subscriber gets what was in flight, then the error, then the end.
    let mut before_error = 0usize;
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(10), slow.message()).await {
            Ok(Ok(Some(_))) => before_error += 1,
            Ok(Ok(None)) => bail!("the slow subscriber's stream ended without an error"),
            Ok(Err(status)) => break status,
            Err(_) => bail!(
                "the slow subscriber was neither ended nor fed within 10 s (after {before_error} of {expected} events)"
            ),
        }
    };
    if ended.code() != Code::ResourceExhausted || !ended.message().contains("fell") {
        bail!(
            "the slow subscriber ended with {:?}: {}",
            ended.code(),
            ended.message()
        );
    }
    if before_error >= expected {
        bail!("the slow subscriber got all {expected} events before its error");
    }
    match tokio::time::timeout(Duration::from_secs(5), slow.message()).await {
        Ok(Ok(None)) | Ok(Err(_)) => {}
        other => bail!("the slow subscriber's stream went on after its error: {other:?}"),
    }

    // The reader saw every event.
    let seen = tokio::time::timeout(Duration::from_secs(60), counting)
        .await
        .context("the reader did not finish")??;
    if seen != expected {
        bail!("the reader got {seen} of {expected} events");
    }
    println!(
        "slow subscriber ended after {before_error} of {expected} events (buffer {BUFFER}); \
         the reader got all {seen}"
    );
    crius.shutdown()?;
    Ok(())
}
