//! One stream: its headers and its two halves, which are ordinary `AsyncRead` and
//! `AsyncWrite` objects.

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::PollSender;

use crate::conn::{Inner, Outgoing, StreamShared};
use crate::error::Error;
use crate::headers::Headers;

/// The largest DATA payload a `SendHalf` puts in one frame.
pub const MAX_DATA_CHUNK: usize = 32 * 1024;

/// A stream: opened by this side (`Connection::open`) or by the peer (`Incoming::next`).
/// Destructure it to move the halves apart: `let Stream { reader, writer, .. } = stream;`.
#[derive(Debug)]
pub struct Stream {
    pub id: u32,
    /// The headers of its SYN_STREAM.
    pub headers: Headers,
    pub reader: RecvHalf,
    pub writer: SendHalf,
    reply: Option<oneshot::Receiver<Result<Headers, Error>>>,
}

impl Stream {
    pub(crate) fn new(
        id: u32,
        headers: Headers,
        reader: RecvHalf,
        writer: SendHalf,
        reply: Option<oneshot::Receiver<Result<Headers, Error>>>,
    ) -> Self {
        Stream {
            id,
            headers,
            reader,
            writer,
            reply,
        }
    }

    /// Waits for the peer's SYN_REPLY to a stream this side opened and returns its headers;
    /// fails if the stream is reset or the connection ends first. Once only.
    pub async fn reply_headers(&mut self) -> Result<Headers, Error> {
        let Some(reply) = self.reply.take() else {
            return Err(Error::NoReplyExpected(self.id));
        };
        reply.await.unwrap_or(Err(Error::Closed))
    }
}

/// The receiving half: the payloads of the peer's DATA frames, then EOF at its FIN (or
/// when the connection closes cleanly). If the stream is reset or the connection fails, the
/// data that arrived before still reads, then the error (kind `ConnectionReset` for a
/// reset; Go peers reset every stream when they close a connection, and Go readers take
/// that as EOF: callers speaking to them may do the same). Dropping it discards the
/// stream's further data without stalling the connection.
#[derive(Debug)]
pub struct RecvHalf {
    rx: mpsc::Receiver<Bytes>,
    pending: Bytes,
    shared: Arc<StreamShared>,
}

impl RecvHalf {
    pub(crate) fn new(rx: mpsc::Receiver<Bytes>, shared: Arc<StreamShared>) -> Self {
        RecvHalf {
            rx,
            pending: Bytes::new(),
            shared,
        }
    }

    pub fn stream_id(&self) -> u32 {
        self.shared.id
    }
}

impl AsyncRead for RecvHalf {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(self.rx.poll_recv(cx)) {
                Some(chunk) => self.pending = chunk,
                None => {
                    if self.shared.cancel.is_cancelled() {
                        return Poll::Ready(Err(self.shared.error().into()));
                    }
                    return Poll::Ready(Ok(())); // EOF
                }
            }
        }
    }
}

/// The sending half: each write becomes a DATA frame of at most `MAX_DATA_CHUNK` bytes,
/// queued for the connection's writer (a write waits while the queue is full, which is the
/// back-pressure). `poll_flush` only checks the stream: frames leave in queue order.
/// `shutdown` sends FIN (a half-close); so does dropping a half that was not shut down.
#[derive(Debug)]
pub struct SendHalf {
    tx: PollSender<Outgoing>,
    inner: Arc<Inner>,
    shared: Arc<StreamShared>,
}

impl SendHalf {
    pub(crate) fn new(
        tx: mpsc::Sender<Outgoing>,
        inner: Arc<Inner>,
        shared: Arc<StreamShared>,
    ) -> Self {
        SendHalf {
            tx: PollSender::new(tx),
            inner,
            shared,
        }
    }

    pub fn stream_id(&self) -> u32 {
        self.shared.id
    }

    fn check(&self) -> Result<(), Error> {
        if self.shared.cancel.is_cancelled() {
            return Err(self.shared.error());
        }
        if self.inner.is_ended() {
            return Err(Error::Closed);
        }
        if !self.shared.replied.load(Ordering::Acquire) {
            return Err(Error::NotReplied(self.shared.id));
        }
        Ok(())
    }
}

impl AsyncWrite for SendHalf {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.shared.local_fin.load(Ordering::Acquire) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                format!("stream {}: write after FIN", self.shared.id),
            )));
        }
        self.check()?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(self.tx.poll_reserve(cx)).map_err(|_| io::Error::from(Error::Closed))?;
        let n = buf.len().min(MAX_DATA_CHUNK);
        let frame = Outgoing::Data {
            id: self.shared.id,
            data: Bytes::copy_from_slice(&buf[..n]),
            fin: false,
        };
        self.tx
            .send_item(frame)
            .map_err(|_| io::Error::from(Error::Closed))?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.shared.local_fin.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        Poll::Ready(self.check().map_err(io::Error::from))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.shared.local_fin.load(Ordering::Acquire) || self.shared.cancel.is_cancelled() {
            return Poll::Ready(Ok(()));
        }
        self.check()?;
        ready!(self.tx.poll_reserve(cx)).map_err(|_| io::Error::from(Error::Closed))?;
        if self.shared.local_fin.swap(true, Ordering::AcqRel) {
            self.tx.abort_send();
            return Poll::Ready(Ok(()));
        }
        let frame = Outgoing::Data {
            id: self.shared.id,
            data: Bytes::new(),
            fin: true,
        };
        self.tx
            .send_item(frame)
            .map_err(|_| io::Error::from(Error::Closed))?;
        self.inner.local_finished(self.shared.id);
        Poll::Ready(Ok(()))
    }
}

impl Drop for SendHalf {
    fn drop(&mut self) {
        // A half dropped without shutdown still half-closes, so the peer sees EOF and the
        // stream can be forgotten. Not on a stream that was never replied to (DATA may not
        // precede SYN_REPLY) nor on a failed one.
        if self.check().is_err() || self.shared.local_fin.swap(true, Ordering::AcqRel) {
            return;
        }
        self.tx.abort_send();
        let Some(sender) = self.tx.get_ref().cloned() else {
            return;
        };
        let fin = Outgoing::Data {
            id: self.shared.id,
            data: Bytes::new(),
            fin: true,
        };
        match sender.try_send(fin) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(fin)) => {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        let _ = sender.send(fin).await;
                    });
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
        self.inner.local_finished(self.shared.id);
    }
}
