//! A container's output as it is copied into its log, for attached clients (Attach).
//!
//! The log copier publishes every chunk it reads; each attached client holds a bounded queue.
//! The copier never waits for a client: the container must not block on a slow reader, and
//! the log must keep being written. A client whose queue is full is dropped (its session
//! ends with an error) rather than buffering without bound.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::file::Stream;

/// Chunks a client may have queued before it counts as too slow (a chunk is at most one
/// read of the copier, 8 KiB).
pub const TAP_QUEUE_CHUNKS: usize = 256;

/// A chunk of the container's output.
pub type Tapped = (Stream, Bytes);

#[derive(Debug, Default)]
pub struct OutputTap {
    /// Fast path for the copier: no lock while nobody is attached.
    any: AtomicBool,
    next_id: AtomicU64,
    inner: Mutex<TapState>,
}

#[derive(Debug, Default)]
struct TapState {
    clients: Vec<(u64, mpsc::Sender<Tapped>)>,
    /// Streams whose copier reached the end of the output.
    ended: u8,
    /// How many streams are copied (2, or 1 with a terminal).
    streams: u8,
}

impl OutputTap {
    /// A tap fed by `streams` copiers; the output ends when each of them ended.
    pub fn new(streams: u8) -> Self {
        let tap = OutputTap::default();
        if let Ok(mut state) = tap.inner.lock() {
            state.streams = streams;
        }
        tap
    }

    /// A new client. The receiver ends (`None`) when the output ends; `None` now when it
    /// already has (the container exited).
    pub fn subscribe(&self) -> Option<(u64, mpsc::Receiver<Tapped>)> {
        let mut state = self.inner.lock().ok()?;
        if state.streams > 0 && state.ended >= state.streams {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(TAP_QUEUE_CHUNKS);
        state.clients.push((id, tx));
        self.any.store(true, Ordering::Release);
        Some((id, rx))
    }

    pub fn unsubscribe(&self, id: u64) {
        if let Ok(mut state) = self.inner.lock() {
            state.clients.retain(|(client, _)| *client != id);
            self.any.store(!state.clients.is_empty(), Ordering::Release);
        }
    }

    /// Hands a chunk to every client.
    pub fn publish(&self, stream: Stream, data: &[u8]) {
        if !self.any.load(Ordering::Acquire) || data.is_empty() {
            return;
        }
        let chunk = Bytes::copy_from_slice(data);
        let Ok(mut state) = self.inner.lock() else {
            return;
        };
        state.clients.retain(|(_, tx)| {
            match tx.try_send((stream, chunk.clone())) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // Dropping the sender ends the client's queue after what it holds; its
                    // session sees that the output has not ended (`has_ended`) and says so.
                    tracing::warn!(
                        "an attached client fell {TAP_QUEUE_CHUNKS} chunks behind the container's output; detaching it"
                    );
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        self.any.store(!state.clients.is_empty(), Ordering::Release);
    }

    /// Has the output ended (the container's process exited and its output was copied)?
    pub fn has_ended(&self) -> bool {
        self.inner
            .lock()
            .map(|state| state.streams > 0 && state.ended >= state.streams)
            .unwrap_or(true)
    }

    /// One copier reached the end of its stream; after the last, every client's queue ends.
    pub fn ended(&self) {
        if let Ok(mut state) = self.inner.lock() {
            state.ended = state.ended.saturating_add(1);
            if state.ended >= state.streams {
                state.clients.clear();
                self.any.store(false, Ordering::Release);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn clients_get_every_chunk_until_the_output_ends() {
        let tap = OutputTap::new(2);
        tap.publish(Stream::Stdout, b"before anyone listens");
        let (_, mut a) = tap.subscribe().unwrap();
        tap.publish(Stream::Stdout, b"one");
        tap.publish(Stream::Stderr, b"two");
        tap.ended();
        tap.publish(Stream::Stderr, b"three");
        tap.ended();
        let mut got = Vec::new();
        while let Some((stream, data)) = a.recv().await {
            got.push((stream, data));
        }
        assert_eq!(
            got,
            vec![
                (Stream::Stdout, Bytes::from_static(b"one")),
                (Stream::Stderr, Bytes::from_static(b"two")),
                (Stream::Stderr, Bytes::from_static(b"three")),
            ]
        );
        assert!(tap.has_ended());
        assert!(tap.subscribe().is_none(), "the output has ended");
    }

    #[tokio::test]
    async fn a_client_that_falls_behind_is_dropped_and_the_others_keep_going() {
        let tap = OutputTap::new(1);
        let (_, mut slow) = tap.subscribe().unwrap();
        let (_, mut fast) = tap.subscribe().unwrap();
        for i in 0..TAP_QUEUE_CHUNKS + 10 {
            tap.publish(Stream::Stdout, format!("{i}").as_bytes());
            assert!(fast.recv().await.is_some());
        }
        let mut queued = 0;
        while slow.recv().await.is_some() {
            queued += 1;
        }
        assert_eq!(
            queued, TAP_QUEUE_CHUNKS,
            "the slow client's queue, then its end"
        );
        assert!(!tap.has_ended(), "an overrun, not the end of the output");
        tap.publish(Stream::Stdout, b"still");
        assert!(fast.recv().await.is_some());
    }

    #[tokio::test]
    async fn unsubscribed_clients_cost_nothing() {
        let tap = OutputTap::new(1);
        let (id, _rx) = tap.subscribe().unwrap();
        tap.unsubscribe(id);
        assert!(!tap.any.load(Ordering::Acquire));
    }
}
