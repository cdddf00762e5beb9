//! The lifecycle events GetContainerEvents streams (kubelet's evented PLEG), fed by the
//! store's own transitions, never by raw backend events, so every backend emits alike:
//! CREATED once a record is durable, STARTED, STOPPED at an exit or a stop, DELETED after
//! removal; a sandbox's own events carry its id as the container id.
//!
//! Each event is a snapshot taken when it happens: the pod's status and the status of every
//! container the pod then has (kubelet rebuilds the pod from one event alone). Snapshots are
//! taken only while someone listens. The buffer is bounded: a subscriber that falls behind
//! by more than it holds is ended with an error (kubelet then relists) and counted, so a slow
//! reader never makes crius's memory grow.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::broadcast;

use crate::runtime::{now_nanos, Crius};
use crate::store::{Container, ContainerStatus, Sandbox, SandboxStatus};

/// Events a subscriber may fall behind by before it is ended.
pub const DEFAULT_BUFFER: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Started,
    Stopped,
    Deleted,
}

/// One event, as it was when it happened.
#[derive(Clone)]
pub struct PodEvent {
    pub kind: EventKind,
    /// The container's id, or the sandbox's for the sandbox's own events.
    pub subject: String,
    /// Nanoseconds since the epoch; strictly increasing over all events, so per pod too.
    pub at: i64,
    pub sandbox: Arc<Sandbox>,
    pub sandbox_status: Arc<SandboxStatus>,
    /// Every container the pod has after the event, with its status then.
    pub containers: Vec<(Arc<Container>, Arc<ContainerStatus>)>,
}

pub struct PodEvents {
    sender: broadcast::Sender<Arc<PodEvent>>,
    last_at: AtomicI64,
    ended_behind: AtomicU64,
    published: AtomicU64,
}

impl PodEvents {
    pub fn new(buffer: usize) -> Self {
        let (sender, _) = broadcast::channel(buffer.max(1));
        Self {
            sender,
            last_at: AtomicI64::new(0),
            ended_behind: AtomicU64::new(0),
            published: AtomicU64::new(0),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<PodEvent>> {
        self.sender.subscribe()
    }

    /// Whether anyone listens (events are built only then).
    pub fn listening(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    /// Subscribers now listening.
    pub fn subscribers(&self) -> usize {
        self.sender.receiver_count()
    }

    /// Records that a subscriber was ended for falling behind.
    pub fn note_ended_behind(&self) {
        self.ended_behind.fetch_add(1, Ordering::Relaxed);
    }

    /// Subscribers ended for falling behind, since crius started.
    pub fn ended_behind(&self) -> u64 {
        self.ended_behind.load(Ordering::Relaxed)
    }

    /// Events built and sent, since crius started.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// The current time in nanoseconds, later than any event before it.
    fn next_at(&self) -> i64 {
        let now = now_nanos();
        let mut last = self.last_at.load(Ordering::SeqCst);
        loop {
            let at = now.max(last + 1);
            match self
                .last_at
                .compare_exchange(last, at, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return at,
                Err(newer) => last = newer,
            }
        }
    }

    fn publish(
        &self,
        kind: EventKind,
        subject: &str,
        sandbox: Arc<Sandbox>,
        containers: Vec<Arc<Container>>,
    ) {
        let event = PodEvent {
            kind,
            subject: subject.to_owned(),
            at: self.next_at(),
            sandbox_status: sandbox.status(),
            sandbox,
            containers: containers
                .into_iter()
                .map(|c| {
                    let status = c.status();
                    (c, status)
                })
                .collect(),
        };
        // No receiver left since `listening` was asked: nothing to do.
        if self.sender.send(Arc::new(event)).is_ok() {
            self.published.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Crius {
    /// A container of a pod changed: publishes `kind` for it with the pod as it is now.
    pub(crate) fn container_event(&self, kind: EventKind, container: &Container) {
        if !self.pod_events.listening() {
            return;
        }
        let Some(sandbox) = self.store.sandboxes.get_exact(&container.meta.sandbox_id) else {
            // kubelet ignores an event without its pod's status; the pod's own events said it all.
            return;
        };
        let containers = self.containers_of(&sandbox.meta.id);
        self.pod_events
            .publish(kind, &container.meta.id, sandbox, containers);
    }

    /// The sandbox itself changed (its DELETED carries its last status).
    pub(crate) fn sandbox_event(&self, kind: EventKind, sandbox: &Arc<Sandbox>) {
        if !self.pod_events.listening() {
            return;
        }
        let containers = self.containers_of(&sandbox.meta.id);
        self.pod_events
            .publish(kind, &sandbox.meta.id, sandbox.clone(), containers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_times_strictly_increase_even_within_one_clock_tick() {
        let events = PodEvents::new(4);
        let mut last = 0;
        for _ in 0..10_000 {
            let at = events.next_at();
            assert!(at > last, "{at} after {last}");
            last = at;
        }
    }

    #[test]
    fn nothing_is_listening_until_someone_subscribes() {
        let events = PodEvents::new(4);
        assert!(!events.listening());
        let receiver = events.subscribe();
        assert!(events.listening());
        assert_eq!(events.subscribers(), 1);
        drop(receiver);
        assert!(!events.listening());
    }
}
