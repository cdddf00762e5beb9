//! containerd's event stream, turned into backend events, resubscribed after failures.

use std::time::Duration;

use containerd_client::events::{TaskExit as TaskExitEvent, TaskOom, TaskStart};
use containerd_client::services::v1 as api;
use futures::StreamExt;
use prost::Message;
use tokio::sync::mpsc;

use super::{timestamp_nanos, Containerd};
use crate::{BackendEvent, ProcessId, TaskExit};

const TOPICS: [&str; 3] = ["/tasks/exit", "/tasks/oom", "/tasks/start"];

pub(crate) fn spawn(backend: Containerd) -> mpsc::Receiver<BackendEvent> {
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        let mut first = true;
        loop {
            if tx.is_closed() {
                return;
            }
            match subscribe_once(&backend, &tx, first).await {
                Ok(()) => return,
                Err(status) => {
                    tracing::warn!(error = %status, "containerd event stream lost; resubscribing");
                }
            }
            first = false;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    rx
}

/// Run one subscription until it fails. Returns `Ok` only when the receiver is gone.
async fn subscribe_once(
    backend: &Containerd,
    tx: &mpsc::Sender<BackendEvent>,
    first: bool,
) -> Result<(), tonic::Status> {
    let namespace = backend.namespace().to_string();
    let filters = TOPICS
        .iter()
        .map(|topic| format!("topic==\"{topic}\",namespace==\"{namespace}\""))
        .collect();
    let mut client = api::events_client::EventsClient::new(backend.channel());
    // containerd answers the subscription only with its first event; wait for a cheap call
    // to succeed first so a reconnect is reported once containerd is really back.
    backend.version_probe().await?;
    // The subscription is polled in its own task at once, so containerd registers it before
    // the caller reconciles; events from then on reach us.
    let subscription =
        tokio::spawn(async move { client.subscribe(api::SubscribeRequest { filters }).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    if !first {
        // The caller reconciles against a full listing once the engine answers again.
        let _ = tx.send(BackendEvent::Reconnected).await;
    }
    let mut stream = subscription
        .await
        .map_err(|e| tonic::Status::internal(format!("event subscription task: {e}")))??
        .into_inner();
    while let Some(envelope) = stream.next().await {
        let envelope = envelope?;
        let Some(any) = envelope.event else { continue };
        let event =
            match envelope.topic.as_str() {
                "/tasks/exit" => TaskExitEvent::decode(any.value.as_slice()).ok().map(|e| {
                    BackendEvent::TaskExit {
                        container_id: e.container_id.clone(),
                        process: if e.id == e.container_id {
                            ProcessId::Init
                        } else {
                            ProcessId::Exec(e.id.clone())
                        },
                        exit: TaskExit {
                            pid: e.pid,
                            exit_code: e.exit_status,
                            exited_at_nanos: timestamp_nanos(e.exited_at.as_ref()),
                        },
                    }
                }),
                "/tasks/oom" => {
                    TaskOom::decode(any.value.as_slice())
                        .ok()
                        .map(|e| BackendEvent::TaskOom {
                            container_id: e.container_id,
                        })
                }
                "/tasks/start" => {
                    TaskStart::decode(any.value.as_slice())
                        .ok()
                        .map(|e| BackendEvent::TaskStart {
                            container_id: e.container_id,
                            pid: e.pid,
                        })
                }
                _ => None,
            };
        if let Some(event) = event {
            if tx.send(event).await.is_err() {
                return Ok(());
            }
        }
    }
    Err(tonic::Status::unavailable(
        "containerd closed the event stream",
    ))
}

impl Containerd {
    async fn version_probe(&self) -> Result<(), tonic::Status> {
        api::version_client::VersionClient::new(self.channel())
            .version(tonic::Request::new(()))
            .await?;
        Ok(())
    }
}
