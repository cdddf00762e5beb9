//! GetContainerEvents: the pod events `crate::pod_events` publishes, as CRI messages.

use std::sync::Arc;

use cri_api::v1 as cri;
use tokio::sync::broadcast::error::RecvError;
use tonic::Status;

use super::BoxStream;
use crate::pod_events::{EventKind, PodEvent};
use crate::runtime::Crius;

fn event_type(kind: EventKind) -> cri::ContainerEventType {
    match kind {
        EventKind::Created => cri::ContainerEventType::ContainerCreatedEvent,
        EventKind::Started => cri::ContainerEventType::ContainerStartedEvent,
        EventKind::Stopped => cri::ContainerEventType::ContainerStoppedEvent,
        EventKind::Deleted => cri::ContainerEventType::ContainerDeletedEvent,
    }
}

/// One event as kubelet's evented PLEG reads it: the pod's status and every container's,
/// so the pod can be rebuilt from this message alone.
pub fn to_cri(event: &PodEvent) -> cri::ContainerEventResponse {
    cri::ContainerEventResponse {
        container_id: event.subject.clone(),
        container_event_type: event_type(event.kind) as i32,
        created_at: event.at,
        pod_sandbox_status: Some(super::sandbox::status_at(
            &event.sandbox,
            &event.sandbox_status,
        )),
        containers_statuses: event
            .containers
            .iter()
            .map(|(container, status)| super::container::status_at(container, status))
            .collect(),
    }
}

/// The stream of one subscriber, from the moment of the call. A subscriber that falls
/// behind by more than `event_buffer` events is ended with `ResourceExhausted`.
pub fn subscribe(crius: &Arc<Crius>) -> BoxStream<cri::ContainerEventResponse> {
    let receiver = crius.pod_events.subscribe();
    let stream = futures::stream::unfold(Some((receiver, crius.clone())), |state| async move {
        let (mut receiver, crius) = state?;
        match receiver.recv().await {
            Ok(event) => Some((Ok(to_cri(&event)), Some((receiver, crius)))),
            Err(RecvError::Lagged(missed)) => {
                crius.pod_events.note_ended_behind();
                tracing::warn!(
                    missed,
                    "ended a GetContainerEvents subscriber that fell behind"
                );
                let status = Status::resource_exhausted(format!(
                    "GetContainerEvents: this subscriber fell {missed} events behind \
                         (event_buffer {}); relist and subscribe again",
                    crius.config.event_buffer
                ));
                Some((Err(status), None))
            }
            Err(RecvError::Closed) => None,
        }
    });
    Box::pin(stream)
}
