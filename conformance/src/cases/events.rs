//! `[events]`: GetContainerEvents streams created/started/stopped/deleted for a container,
//! in order, with the pod's status and the container's status attached.

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

/// Reads events for `container_id` (others are ignored) until `count` arrived.
async fn events_for(
    events: &mut Events,
    container_id: &str,
    count: usize,
) -> Result<Vec<cri::ContainerEventResponse>> {
    let mut found = Vec::new();
    let read = async {
        while found.len() < count {
            match events.receiver.recv().await {
                Some(Ok(event)) if event.container_id == container_id => found.push(event),
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error),
                None => bail!(
                    "the event stream ended after {} events for {container_id}",
                    found.len()
                ),
            }
        }
        Ok(())
    };
    match tokio::time::timeout(Duration::from_secs(30), read).await {
        Ok(result) => result?,
        Err(_) => bail!(
            "got {} of {count} events for {container_id} within 30s: {:?}",
            found.len(),
            found
                .iter()
                .map(|e| e.container_event_type)
                .collect::<Vec<_>>()
        ),
    }
    Ok(found)
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
