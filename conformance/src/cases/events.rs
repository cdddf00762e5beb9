//! `[events]`: GetContainerEvents streams created/started/stopped/deleted for containers and
//! sandboxes, in order, each with the pod's status and every container's status attached
//! (kubelet's evented PLEG rebuilds the pod from one event). containerd 1.6 has no events:
//! on it every case here skips (pinned in `crate::pins`).

use super::prelude::*;

pub fn cases() -> Vec<Case> {
    use Group::Events as G;
    vec![
        case!(
            G,
            "GetContainerEvents reports created, started, stopped and deleted in order",
            [GetContainerEvents],
            lifecycle_events
        ),
        case!(
            G,
            "container events carry the pod sandbox status and the container's status",
            [GetContainerEvents],
            event_payload
        ),
        case!(
            G,
            "every subscriber receives the events",
            [GetContainerEvents],
            two_subscribers
        ),
        case!(
            G,
            "GetContainerEvents reports a sandbox's created, started, stopped and deleted under its id",
            [GetContainerEvents, RunPodSandbox, StopPodSandbox, RemovePodSandbox],
            sandbox_events
        ),
        case!(
            G,
            "events for 100 pods run at once are all delivered, none lost",
            [GetContainerEvents, RunPodSandbox],
            hundred_pods
        )
        .timeout_secs(240),
        case!(
            G,
            "a pod rebuilt from each event alone never has fewer containers than it has (30 pods)",
            [GetContainerEvents, CreateContainer, StartContainer, StopContainer, RemoveContainer],
            evented_pleg_never_loses_a_container
        )
        .timeout_secs(240),
    ]
}

/// A subscription: the events its task forwards; the task ends with it.
struct Events {
    receiver: tokio::sync::mpsc::UnboundedReceiver<Result<cri::ContainerEventResponse>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Events {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Subscribes in a task of its own (a server may hold the response headers back until the
/// first event) and forwards every event; gives the subscription a moment to register.
async fn subscribe(ctx: &Ctx) -> Events {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let mut runtime = ctx.rt();
    let task = tokio::spawn(async move {
        let stream = call(
            "GetContainerEvents",
            runtime.get_container_events(cri::GetEventsRequest {}),
        )
        .await;
        let mut stream = match stream {
            Ok(stream) => stream,
            Err(error) => {
                let _ = sender.send(Err(error));
                return;
            }
        };
        loop {
            let next = match stream.message().await {
                Ok(Some(event)) => Ok(event),
                Ok(None) => Err(anyhow::anyhow!("the event stream ended")),
                Err(status) => Err(anyhow::anyhow!("event stream: {}", describe(&status))),
            };
            let end = next.is_err();
            if sender.send(next).is_err() || end {
                return;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    Events { receiver, task }
}

/// Reads events for `container_id` (others are read and dropped) until `count` arrived,
/// within 30 s.
async fn events_for(
    events: &mut Events,
    container_id: &str,
    count: usize,
) -> Result<Vec<cri::ContainerEventResponse>> {
    let ours = |e: &&cri::ContainerEventResponse| e.container_id == container_id;
    let read = read_until(events, Duration::from_secs(30), |read| {
        read.iter().filter(ours).count() >= count
    })
    .await
    .with_context(|| format!("waiting for {count} events of {container_id}"))?;
    Ok(read.into_iter().filter(|e| ours(&e)).collect())
}

/// Creates, starts, stops and removes a container in `sandbox`; returns its id.
async fn container_lifecycle(ctx: &Ctx, sandbox: &Sandbox) -> Result<String> {
    let container = ctx
        .create_container(sandbox, ctx.container_config(sandbox, &["sleep", "3600"]))
        .await?;
    ctx.start_container(&container.id).await?;
    ctx.stop_container(&container.id, 0).await?;
    ctx.remove_container(&container.id).await?;
    Ok(container.id)
}

fn types(events: &[cri::ContainerEventResponse]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            cri::ContainerEventType::try_from(e.container_event_type)
                .map(|t| format!("{t:?}"))
                .unwrap_or_else(|_| e.container_event_type.to_string())
        })
        .collect()
}

async fn lifecycle_events(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let mut stream = subscribe(&ctx).await;
    let id = container_lifecycle(&ctx, &sandbox).await?;
    let events = events_for(&mut stream, &id, 4).await?;
    ensure_eq!(
        types(&events),
        vec![
            "ContainerCreatedEvent",
            "ContainerStartedEvent",
            "ContainerStoppedEvent",
            "ContainerDeletedEvent"
        ],
        "event types for container {id}"
    );
    let times: Vec<i64> = events.iter().map(|e| e.created_at).collect();
    ensure!(
        times[0] > 0 && times.windows(2).all(|w| w[0] <= w[1]),
        "event created_at values are not ordered: {times:?}"
    );
    pass()
}

async fn event_payload(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let mut stream = subscribe(&ctx).await;
    let container = ctx
        .create_container(&sandbox, ctx.container_config(&sandbox, &["sleep", "3600"]))
        .await?;
    ctx.start_container(&container.id).await?;
    let events = events_for(&mut stream, &container.id, 2).await?;
    let started = &events[1];
    let pod = started
        .pod_sandbox_status
        .as_ref()
        .context("the started event has no pod_sandbox_status")?;
    ensure_eq!(pod.id, sandbox.id, "pod_sandbox_status.id");
    let status = started
        .containers_statuses
        .iter()
        .find(|s| s.id == container.id)
        .with_context(|| {
            format!(
                "the started event's containers_statuses lack {}",
                container.id
            )
        })?;
    ensure_eq!(
        crate::runner::container_state_name(status.state),
        "ContainerRunning",
        "container state in the started event"
    );
    pass()
}

async fn two_subscribers(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let mut first = subscribe(&ctx).await;
    let mut second = subscribe(&ctx).await;
    let id = container_lifecycle(&ctx, &sandbox).await?;
    let a = events_for(&mut first, &id, 4).await?;
    let b = events_for(&mut second, &id, 4).await?;
    ensure_eq!(types(&b), types(&a), "events seen by the second subscriber");
    pass()
}

/// Reads until `wanted` returns true for the events read so far (all of them, any pod),
/// within `within`.
async fn read_until(
    events: &mut Events,
    within: Duration,
    mut wanted: impl FnMut(&[cri::ContainerEventResponse]) -> bool,
) -> Result<Vec<cri::ContainerEventResponse>> {
    let mut read = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while !wanted(&read) {
        match tokio::time::timeout_at(deadline, events.receiver.recv()).await {
            Ok(Some(Ok(event))) => read.push(event),
            Ok(Some(Err(error))) => return Err(error),
            Ok(None) => bail!("the event stream ended after {} events", read.len()),
            Err(_) => bail!("only {} events arrived within {within:?}", read.len()),
        }
    }
    Ok(read)
}

async fn sandbox_events(ctx: Ctx) -> Result<Outcome> {
    let mut stream = subscribe(&ctx).await;
    let sandbox = ctx.sandbox().await?;
    ctx.stop_sandbox(&sandbox.id).await?;
    ctx.remove_sandbox(&sandbox.id).await?;
    let events = events_for(&mut stream, &sandbox.id, 4).await?;
    ensure_eq!(
        types(&events),
        vec![
            "ContainerCreatedEvent",
            "ContainerStartedEvent",
            "ContainerStoppedEvent",
            "ContainerDeletedEvent"
        ],
        "event types for sandbox {}",
        sandbox.id
    );
    let states: Vec<i32> = events
        .iter()
        .map(|e| e.pod_sandbox_status.as_ref().map_or(-1, |s| s.state))
        .collect();
    let ready = cri::PodSandboxState::SandboxReady as i32;
    let not_ready = cri::PodSandboxState::SandboxNotready as i32;
    ensure_eq!(
        states,
        vec![ready, ready, not_ready, not_ready],
        "pod_sandbox_status.state in each event (the deleted one carries the last status)"
    );
    for event in &events {
        let status = event
            .pod_sandbox_status
            .as_ref()
            .context("an event without pod_sandbox_status")?;
        ensure_eq!(status.id, sandbox.id, "pod_sandbox_status.id");
        ensure_eq!(
            status.metadata,
            sandbox.config.metadata,
            "pod_sandbox_status.metadata (kubelet takes the pod's uid from it)"
        );
    }
    let times: Vec<i64> = events.iter().map(|e| e.created_at).collect();
    ensure!(
        times.windows(2).all(|w| w[0] < w[1]),
        "created_at is not strictly increasing for one pod: {times:?}"
    );
    let now = now_nanos();
    ensure!(
        times
            .iter()
            .all(|t| (now - 120_000_000_000..=now).contains(t)),
        "created_at is not in nanoseconds of the last two minutes: {times:?} (now {now})"
    );
    pass()
}

async fn hundred_pods(ctx: Ctx) -> Result<Outcome> {
    const PODS: usize = 100;
    let mut stream = subscribe(&ctx).await;
    let runs = (0..PODS).map(|_| {
        let ctx = ctx.clone();
        async move { ctx.sandbox().await }
    });
    let sandboxes: Vec<Sandbox> = futures::future::try_join_all(runs).await?;
    let ids: std::collections::HashSet<String> = sandboxes.iter().map(|s| s.id.clone()).collect();
    let count_ours = |events: &[cri::ContainerEventResponse]| {
        events
            .iter()
            .filter(|e| ids.contains(&e.container_id))
            .count()
    };
    let events = read_until(&mut stream, Duration::from_secs(60), |read| {
        count_ours(read) >= 2 * PODS
    })
    .await?;
    let mut per_pod: HashMap<&str, Vec<String>> = HashMap::new();
    for event in events.iter().filter(|e| ids.contains(&e.container_id)) {
        per_pod
            .entry(event.container_id.as_str())
            .or_default()
            .extend(types(std::slice::from_ref(event)));
    }
    ensure_eq!(per_pod.len(), PODS, "pods with events");
    for (pod, seen) in &per_pod {
        ensure_eq!(
            seen,
            &vec![
                "ContainerCreatedEvent".to_owned(),
                "ContainerStartedEvent".to_owned()
            ],
            "events of pod {pod}"
        );
    }
    pass()
}

/// What kubelet's evented PLEG does with each event: it takes the pod's containers from
/// that event alone. Here every pod's containers are tracked from the stream itself
/// (created and not yet deleted); every event but a deletion must list all of them.
async fn evented_pleg_never_loses_a_container(ctx: Ctx) -> Result<Outcome> {
    const PODS: usize = 30;
    const AT_ONCE: usize = 6;
    let mut stream = subscribe(&ctx).await;
    let mut ours = std::collections::HashSet::new();
    for group in 0..PODS / AT_ONCE {
        let lives = (0..AT_ONCE).map(|i| {
            let ctx = ctx.clone();
            async move { pod_life(&ctx, group * AT_ONCE + i).await }
        });
        for id in futures::future::try_join_all(lives).await? {
            ours.insert(id);
        }
    }
    // Each pod: sandbox created+started, 3 containers x 4 events, sandbox stopped+deleted.
    let per_pod = 2 + 3 * 4 + 2;
    let events = read_until(&mut stream, Duration::from_secs(60), |read| {
        read.iter()
            .filter(|e| {
                e.pod_sandbox_status
                    .as_ref()
                    .is_some_and(|p| ours.contains(&p.id))
            })
            .count()
            >= PODS * per_pod
    })
    .await?;
    let mut has: HashMap<String, std::collections::BTreeSet<String>> = HashMap::new();
    let mut checked = 0;
    for event in &events {
        let Some(pod) = event.pod_sandbox_status.as_ref() else {
            bail!("an event without pod_sandbox_status: {event:?}");
        };
        if !ours.contains(&pod.id) {
            continue;
        }
        let containers = has.entry(pod.id.clone()).or_default();
        let kind = cri::ContainerEventType::try_from(event.container_event_type);
        let is_sandbox = event.container_id == pod.id;
        match kind {
            Ok(cri::ContainerEventType::ContainerCreatedEvent) if !is_sandbox => {
                containers.insert(event.container_id.clone());
            }
            Ok(cri::ContainerEventType::ContainerDeletedEvent) => {
                containers.remove(&event.container_id);
                continue;
            }
            _ => {}
        }
        let listed: std::collections::BTreeSet<String> = event
            .containers_statuses
            .iter()
            .map(|c| c.id.clone())
            .collect();
        let missing: Vec<&String> = containers.difference(&listed).collect();
        ensure!(
            missing.is_empty(),
            "a {:?} event of pod {} lists {} containers and leaves out {missing:?}, which the pod has",
            kind,
            pod.id,
            listed.len()
        );
        checked += 1;
    }
    ensure!(
        checked >= PODS * (per_pod - 4),
        "only {checked} events were checked"
    );
    pass()
}

/// A pod's life as kubelet drives it: run; create and start `a`; create and start `b`;
/// `b` dies and is restarted (attempt 1) and the dead one removed; stop; remove.
async fn pod_life(ctx: &Ctx, n: usize) -> Result<String> {
    let sandbox = ctx.sandbox().await?;
    let a = ctx.sleeper(&sandbox).await?;
    let mut config = ctx.container_config(&sandbox, &["sleep", "3600"]);
    let b = ctx.running_container(&sandbox, config.clone()).await?;
    ctx.stop_container(&b.id, 0).await?;
    if let Some(metadata) = config.metadata.as_mut() {
        metadata.attempt = 1;
    }
    let again = ctx.running_container(&sandbox, config).await?;
    ctx.remove_container(&b.id).await?;
    ctx.stop_sandbox(&sandbox.id)
        .await
        .with_context(|| format!("pod {n}"))?;
    for id in [&a.id, &again.id] {
        ctx.remove_container(id).await?;
    }
    ctx.remove_sandbox(&sandbox.id).await?;
    Ok(sandbox.id)
}
