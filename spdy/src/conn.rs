//! The connection: one task reads frames and routes them to streams, one task owns the
//! socket's write side and the outgoing zlib context; `Connection` handles and stream halves
//! talk to the writer through one bounded channel, so frames leave in the order they were
//! queued and nothing is buffered without bound.
//!
//! Back-pressure: a stream's received DATA goes through a bounded queue; when it is full the
//! reader task waits, which stops reading the socket (TCP then pushes back on the peer). A
//! dropped `RecvHalf` makes the reader discard that stream's data instead.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Side};
use crate::frame::{self, Decoder, Frame, GoAwayStatus, RstStatus, FLAG_FIN, FLAG_UNIDIRECTIONAL};
use crate::headers::{HeaderDecoder, HeaderEncoder, Headers};
use crate::stream::{RecvHalf, SendHalf, Stream};

/// How long the reader waits for the peer to close after our side shut its write direction
/// (closing at once could reset the connection while the peer still reads our last bytes).
const LINGER: Duration = Duration::from_secs(5);
/// Frames queued for the writer before senders wait.
const WRITE_QUEUE: usize = 32;
/// The writer coalesces queued frames up to about this many bytes per socket write.
const WRITE_BATCH: usize = 256 * 1024;

/// Bounds on what one connection holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest frame payload accepted; a larger frame ends the connection.
    pub max_frame: usize,
    /// Streams the peer may have open at once; one more ends the connection.
    pub max_streams: usize,
    /// DATA frames queued per stream before the connection stops reading.
    pub stream_buffer_frames: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: frame::DEFAULT_MAX_FRAME,
            max_streams: 256,
            stream_buffer_frames: 16,
        }
    }
}

/// Which end of the connection this side is: servers open even stream ids, clients odd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

impl Role {
    /// Stream (and PING) ids this side opens have this remainder modulo 2.
    fn own_parity(self) -> u32 {
        match self {
            Role::Client => 1,
            Role::Server => 0,
        }
    }
}

/// A frame (or an instruction) for the writer task.
#[derive(Debug)]
pub(crate) enum Outgoing {
    SynStream {
        id: u32,
        headers: Headers,
        fin: bool,
    },
    SynReply {
        id: u32,
        headers: Headers,
        fin: bool,
    },
    Data {
        id: u32,
        data: Bytes,
        fin: bool,
    },
    Rst {
        id: u32,
        status: RstStatus,
    },
    Ping(u32),
    GoAway {
        last_good: u32,
        status: GoAwayStatus,
    },
    /// Write what is queued before, then shut the write direction.
    Close,
}

/// What a stream's two halves and the connection share.
#[derive(Debug)]
pub(crate) struct StreamShared {
    pub(crate) id: u32,
    /// Cancelled when the stream is reset (either side) or the connection fails.
    pub(crate) cancel: CancellationToken,
    /// Why `cancel` fired; set before it.
    pub(crate) cause: OnceLock<Error>,
    /// SYN_REPLY was queued (always true for streams this side opened): DATA may follow.
    pub(crate) replied: AtomicBool,
    /// This side sent (or queued) FIN.
    pub(crate) local_fin: AtomicBool,
}

impl StreamShared {
    fn new(id: u32, replied: bool, local_fin: bool) -> Arc<Self> {
        Arc::new(StreamShared {
            id,
            cancel: CancellationToken::new(),
            cause: OnceLock::new(),
            replied: AtomicBool::new(replied),
            local_fin: AtomicBool::new(local_fin),
        })
    }

    fn fail(&self, cause: Error) {
        let _ = self.cause.set(cause);
        self.cancel.cancel();
    }

    pub(crate) fn error(&self) -> Error {
        self.cause.get().cloned().unwrap_or(Error::Closed)
    }
}

/// The connection's record of one open stream.
struct Entry {
    shared: Arc<StreamShared>,
    /// Where DATA goes; `None` once the peer finished or our `RecvHalf` is gone.
    data: Option<mpsc::Sender<Bytes>>,
    /// Who waits for SYN_REPLY (streams this side opened, until it arrives).
    reply: Option<oneshot::Sender<Result<Headers, Error>>>,
    by_peer: bool,
    remote_fin: bool,
}

#[derive(Default)]
struct State {
    streams: HashMap<u32, Entry>,
    /// Open streams that the peer opened (what `Limits::max_streams` bounds).
    peer_streams: usize,
    next_local_id: u32,
    last_peer_id: u32,
    next_ping_id: u32,
    pings: HashMap<u32, oneshot::Sender<()>>,
    goaway_sent: bool,
    goaway_received: Option<GoAwayStatus>,
    ended: bool,
}

impl State {
    fn forget(&mut self, id: u32) -> Option<Entry> {
        let entry = self.streams.remove(&id)?;
        if entry.by_peer {
            self.peer_streams = self.peer_streams.saturating_sub(1);
        }
        Some(entry)
    }

    /// Records the peer's FIN; forgets the stream when this side finished too.
    fn remote_finished(&mut self, id: u32) {
        let Some(entry) = self.streams.get_mut(&id) else {
            return;
        };
        entry.remote_fin = true;
        entry.data = None;
        if entry.shared.local_fin.load(Ordering::Acquire) {
            self.forget(id);
        }
    }
}

pub(crate) struct Inner {
    role: Role,
    limits: Limits,
    state: Mutex<State>,
    /// Serialises `open`: stream ids must reach the wire in increasing order.
    open_order: tokio::sync::Mutex<()>,
    /// Set once, when the connection ends: `Ok` for a clean end.
    ended: watch::Sender<Option<Result<(), Error>>>,
    ended_flag: AtomicBool,
    /// The reader ended: the writer writes what is queued and stops.
    reader_done: CancellationToken,
    /// The writer shut the write direction: the reader lingers, then stops.
    writer_done: CancellationToken,
    /// The writer failed: the reader stops now.
    abort: CancellationToken,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner").field("role", &self.role).finish()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the map half-updated in a way that
        // matters more than losing the connection; keep serving the other streams.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.ended_flag.load(Ordering::Acquire)
    }

    /// Records this side's FIN on `id`; forgets the stream when the peer finished too.
    pub(crate) fn local_finished(&self, id: u32) {
        let mut state = self.lock();
        if state.streams.get(&id).is_some_and(|e| e.remote_fin) {
            state.forget(id);
        }
    }

    /// Ends the connection with `result` (the first call wins): every stream learns of it.
    fn finish(&self, result: Result<(), Error>) {
        let streams = {
            let mut state = self.lock();
            if state.ended {
                return;
            }
            state.ended = true;
            state.pings.clear();
            state.peer_streams = 0;
            std::mem::take(&mut state.streams)
        };
        self.ended_flag.store(true, Ordering::Release);
        match &result {
            Ok(()) => tracing::debug!("SPDY connection closed"),
            Err(e) => tracing::debug!(error = %e, "SPDY connection failed"),
        }
        for (_, entry) in streams {
            if let Err(e) = &result {
                entry.shared.fail(e.clone());
            }
            if let Some(reply) = entry.reply {
                let _ = reply.send(Err(result.clone().err().unwrap_or(Error::Closed)));
            }
            // Dropping `entry.data` ends the reader's stream: EOF after a clean end (as Go's
            // spdystream does when the connection closes), the error otherwise.
        }
        self.ended.send_replace(Some(result));
    }
}

/// A handle on a SPDY connection: opens, replies to and resets streams. Cheap to clone.
/// The connection shuts its write side once every handle and every `SendHalf` is dropped.
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
    tx: mpsc::Sender<Outgoing>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.inner.role)
            .field("open_streams", &self.open_streams())
            .finish()
    }
}

/// The streams the peer opens, in the order it opened them.
#[derive(Debug)]
pub struct Incoming {
    rx: mpsc::Receiver<Stream>,
}

impl Incoming {
    /// The next stream the peer opened; `None` once the connection has ended. Reply to it
    /// with `Connection::reply` before writing to it.
    pub async fn next(&mut self) -> Option<Stream> {
        self.rx.recv().await
    }
}

impl Connection {
    /// Serves SPDY on `io` (e.g. an upgraded HTTP connection): the peer opens odd stream
    /// ids. Must be called inside a tokio runtime (it spawns the reader and writer tasks).
    pub fn server<S>(io: S, limits: Limits) -> (Connection, Incoming)
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Self::start(io, Role::Server, limits)
    }

    /// Speaks SPDY as the client on `io`: this side opens odd stream ids.
    pub fn client<S>(io: S, limits: Limits) -> (Connection, Incoming)
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Self::start(io, Role::Client, limits)
    }

    fn start<S>(io: S, role: Role, limits: Limits) -> (Connection, Incoming)
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let limits = Limits {
            max_frame: limits.max_frame.clamp(1024, frame::MAX_PAYLOAD),
            max_streams: limits.max_streams.max(1),
            stream_buffer_frames: limits.stream_buffer_frames.max(1),
        };
        let first_id = match role {
            Role::Client => 1,
            Role::Server => 2,
        };
        let inner = Arc::new(Inner {
            role,
            limits,
            state: Mutex::new(State {
                next_local_id: first_id,
                next_ping_id: first_id,
                ..State::default()
            }),
            open_order: tokio::sync::Mutex::new(()),
            ended: watch::channel(None).0,
            ended_flag: AtomicBool::new(false),
            reader_done: CancellationToken::new(),
            writer_done: CancellationToken::new(),
            abort: CancellationToken::new(),
        });
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let (incoming_tx, incoming_rx) = mpsc::channel(limits.max_streams);
        let (read_half, write_half) = tokio::io::split(io);
        tokio::spawn(write_loop(inner.clone(), write_half, rx));
        let reader = Reader {
            inner: inner.clone(),
            writer: tx.downgrade(),
            incoming: incoming_tx,
            headers: HeaderDecoder::new(),
        };
        tokio::spawn(reader.run(read_half));
        (Connection { inner, tx }, Incoming { rx: incoming_rx })
    }

    pub fn role(&self) -> Role {
        self.inner.role
    }

    /// Streams currently open (not yet finished by both sides, nor reset).
    pub fn open_streams(&self) -> usize {
        self.inner.lock().streams.len()
    }

    /// True once the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.inner.is_ended()
    }

    async fn permit(&self) -> Result<mpsc::Permit<'_, Outgoing>, Error> {
        if self.inner.is_ended() {
            return Err(Error::Closed);
        }
        self.tx.reserve().await.map_err(|_| Error::Closed)
    }

    /// Opens a stream (SYN_STREAM with `headers`; `fin` if this side sends nothing on it).
    /// Waits for nothing from the peer: use `Stream::reply_headers` for its SYN_REPLY, and
    /// wait for it before writing to a Go peer (spdystream drops DATA it has not replied to).
    pub async fn open(&self, headers: Headers, fin: bool) -> Result<Stream, Error> {
        headers.to_block()?;
        let _order = self.inner.open_order.lock().await;
        let permit = self.permit().await?;
        let limits = self.inner.limits;
        let (stream, id) = {
            let mut state = self.inner.lock();
            if state.ended {
                return Err(Error::Closed);
            }
            if let Some(status) = state.goaway_received {
                return Err(Error::GoneAway(status));
            }
            let id = state.next_local_id;
            if id > 0x7FFF_FFFF {
                return Err(Error::IdsExhausted);
            }
            state.next_local_id = id + 2;
            let shared = StreamShared::new(id, true, fin);
            let (data_tx, data_rx) = mpsc::channel(limits.stream_buffer_frames);
            let (reply_tx, reply_rx) = oneshot::channel();
            state.streams.insert(
                id,
                Entry {
                    shared: shared.clone(),
                    data: Some(data_tx),
                    reply: Some(reply_tx),
                    by_peer: false,
                    remote_fin: false,
                },
            );
            let stream = Stream::new(
                id,
                headers.clone(),
                RecvHalf::new(data_rx, shared.clone()),
                SendHalf::new(self.tx.clone(), self.inner.clone(), shared),
                Some(reply_rx),
            );
            (stream, id)
        };
        permit.send(Outgoing::SynStream { id, headers, fin });
        tracing::trace!(stream = id, fin, "SYN_STREAM queued");
        Ok(stream)
    }

    /// Accepts a stream the peer opened (SYN_REPLY); `fin` if this side sends nothing on
    /// it. DATA on the stream may only follow this.
    pub async fn reply(&self, stream_id: u32, headers: Headers, fin: bool) -> Result<(), Error> {
        headers.to_block()?;
        let permit = self.permit().await?;
        let mut state = self.inner.lock();
        let entry = state
            .streams
            .get(&stream_id)
            .ok_or(Error::UnknownStream(stream_id))?;
        if !entry.by_peer || entry.shared.replied.load(Ordering::Acquire) {
            return Err(Error::CannotReply(stream_id));
        }
        let shared = entry.shared.clone();
        // Queued while holding the lock, so no DATA of this stream can get ahead of it.
        permit.send(Outgoing::SynReply {
            id: stream_id,
            headers,
            fin,
        });
        shared.replied.store(true, Ordering::Release);
        if fin
            && !shared.local_fin.swap(true, Ordering::AcqRel)
            && state.streams.get(&stream_id).is_some_and(|e| e.remote_fin)
        {
            state.forget(stream_id);
        }
        Ok(())
    }

    /// Resets a stream (RST_STREAM): both halves fail from now on, and the stream is
    /// forgotten. Resetting an unknown stream still sends the frame.
    pub async fn reset(&self, stream_id: u32, status: RstStatus) -> Result<(), Error> {
        let permit = self.permit().await?;
        let entry = self.inner.lock().forget(stream_id);
        permit.send(Outgoing::Rst {
            id: stream_id,
            status,
        });
        if let Some(entry) = entry {
            let error = Error::Reset {
                id: stream_id,
                status,
                by: Side::Local,
            };
            entry.shared.fail(error.clone());
            if let Some(reply) = entry.reply {
                let _ = reply.send(Err(error));
            }
        }
        Ok(())
    }

    /// Sends a PING and waits for the peer's answer; returns the round trip.
    pub async fn ping(&self) -> Result<Duration, Error> {
        let permit = self.permit().await?;
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut state = self.inner.lock();
            let id = state.next_ping_id;
            state.next_ping_id = id.wrapping_add(2);
            state.pings.insert(id, tx);
            id
        };
        let start = Instant::now();
        permit.send(Outgoing::Ping(id));
        rx.await.map_err(|_| Error::Closed)?;
        Ok(start.elapsed())
    }

    /// Sends GOAWAY (once): the peer must open no more streams, and any it opens are
    /// ignored. Streams already open go on.
    pub async fn goaway(&self, status: GoAwayStatus) -> Result<(), Error> {
        let permit = self.permit().await?;
        let last_good = {
            let mut state = self.inner.lock();
            if state.goaway_sent {
                return Ok(());
            }
            state.goaway_sent = true;
            state.last_peer_id
        };
        permit.send(Outgoing::GoAway { last_good, status });
        Ok(())
    }

    /// Closes gracefully: GOAWAY(OK) unless one was sent, then every frame queued so far is
    /// written and the write direction shut; the connection ends when the peer closes (or
    /// after a few seconds). `closed` tells when.
    pub async fn close(&self) {
        if self.goaway(GoAwayStatus::OK).await.is_ok() {
            let _ = self.tx.send(Outgoing::Close).await;
        }
    }

    /// Resolves when the connection has ended: `Ok` when it closed cleanly, else why not.
    pub async fn closed(&self) -> Result<(), Error> {
        let mut rx = self.inner.ended.subscribe();
        let result = match rx.wait_for(Option::is_some).await {
            Ok(value) => value.clone(),
            Err(_) => None,
        };
        result.unwrap_or(Err(Error::Closed))
    }
}

/// The reader task's state.
struct Reader {
    inner: Arc<Inner>,
    /// Weak, so that the writer ends once the user's handles are gone.
    writer: mpsc::WeakSender<Outgoing>,
    incoming: mpsc::Sender<Stream>,
    headers: HeaderDecoder,
}

impl Reader {
    async fn run<R: AsyncRead + Unpin>(mut self, io: R) {
        let result = self.read_frames(io).await;
        if let Err(e) = &result {
            if e.is_protocol_error() {
                tracing::debug!(error = %e, "SPDY protocol error: GOAWAY");
                let last_good = self.inner.lock().last_peer_id;
                self.send_bounded(Outgoing::GoAway {
                    last_good,
                    status: GoAwayStatus::PROTOCOL_ERROR,
                })
                .await;
            }
        }
        self.inner.finish(result);
        self.inner.reader_done.cancel();
    }

    async fn read_frames<R: AsyncRead + Unpin>(&mut self, mut io: R) -> Result<(), Error> {
        let inner = self.inner.clone();
        let mut decoder = Decoder::new(inner.limits.max_frame);
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let linger = async {
            inner.writer_done.cancelled().await;
            tokio::time::sleep(LINGER).await;
        };
        tokio::pin!(linger);
        loop {
            while let Some(frame) = decoder.decode(&mut buf)? {
                self.handle(frame).await?;
            }
            if buf.capacity() - buf.len() < 16 * 1024 {
                buf.reserve(64 * 1024);
            }
            let read = tokio::select! {
                biased;
                _ = inner.abort.cancelled() => return Err(Error::Closed),
                _ = &mut linger => return Ok(()),
                read = io.read_buf(&mut buf) => read?,
            };
            if read == 0 {
                return if decoder.at_frame_boundary(&buf) {
                    Ok(())
                } else {
                    Err(frame::FrameError::Truncated.into())
                };
            }
        }
    }

    /// Queues a frame for the writer unless the writer is gone or stays full for a second
    /// (an answer to the peer is not worth a stuck reader).
    async fn send_bounded(&self, frame: Outgoing) {
        if let Some(tx) = self.writer.upgrade() {
            let _ = tokio::time::timeout(Duration::from_secs(1), tx.send(frame)).await;
        }
    }

    async fn handle(&mut self, frame: Frame) -> Result<(), Error> {
        tracing::trace!(kind = frame.kind(), "SPDY frame received");
        match frame {
            Frame::SynStream {
                stream_id,
                flags,
                header_block,
                ..
            } => {
                // Every block goes through the decoder, whatever becomes of the stream: the
                // zlib context must see all of them.
                let headers = self.headers.decode(&header_block)?;
                self.syn_stream(stream_id, flags, headers).await
            }
            Frame::SynReply {
                stream_id,
                fin,
                header_block,
            } => {
                let headers = self.headers.decode(&header_block)?;
                self.syn_reply(stream_id, fin, headers);
                Ok(())
            }
            Frame::Headers {
                stream_id,
                fin,
                header_block,
            } => {
                self.headers.decode(&header_block)?;
                if fin {
                    self.inner.lock().remote_finished(stream_id);
                }
                Ok(())
            }
            Frame::RstStream { stream_id, status } => {
                self.rst_stream(stream_id, status);
                Ok(())
            }
            Frame::Ping { id } => {
                if id % 2 == self.inner.role.own_parity() {
                    if let Some(waiter) = self.inner.lock().pings.remove(&id) {
                        let _ = waiter.send(());
                    }
                } else {
                    self.send_bounded(Outgoing::Ping(id)).await;
                }
                Ok(())
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                self.goaway(last_good_stream_id, status);
                Ok(())
            }
            // Flow control is not enforced (see the crate docs); settings change nothing here.
            Frame::Settings { .. } | Frame::WindowUpdate { .. } => Ok(()),
            Frame::Data {
                stream_id,
                fin,
                data,
            } => self.data(stream_id, fin, data).await,
        }
    }

    async fn syn_stream(&mut self, id: u32, flags: u8, headers: Headers) -> Result<(), Error> {
        let inner = self.inner.clone();
        let stream = {
            let mut state = inner.lock();
            if id % 2 == inner.role.own_parity() {
                return Err(Error::BadStreamId {
                    id,
                    why: "the id has this side's parity",
                });
            }
            if id <= state.last_peer_id {
                return Err(Error::BadStreamId {
                    id,
                    why: "the id is not above the last one the peer opened",
                });
            }
            state.last_peer_id = id;
            if state.goaway_sent {
                tracing::debug!(stream = id, "ignoring a stream opened after GOAWAY");
                return Ok(());
            }
            if state.peer_streams >= inner.limits.max_streams {
                return Err(Error::TooManyStreams(inner.limits.max_streams));
            }
            let Some(writer) = self.writer.upgrade() else {
                // Nobody can answer on this connection any more.
                return Ok(());
            };
            let remote_fin = flags & FLAG_FIN != 0;
            let shared = StreamShared::new(id, false, flags & FLAG_UNIDIRECTIONAL != 0);
            let (data_tx, data_rx) = mpsc::channel(inner.limits.stream_buffer_frames);
            state.streams.insert(
                id,
                Entry {
                    shared: shared.clone(),
                    data: (!remote_fin).then_some(data_tx),
                    reply: None,
                    by_peer: true,
                    remote_fin,
                },
            );
            state.peer_streams += 1;
            Stream::new(
                id,
                headers,
                RecvHalf::new(data_rx, shared.clone()),
                SendHalf::new(writer, inner.clone(), shared),
                None,
            )
        };
        tracing::trace!(stream = id, "stream opened by the peer");
        let delivered = tokio::select! {
            sent = self.incoming.send(stream) => sent.is_ok(),
            _ = inner.abort.cancelled() => return Err(Error::Closed),
        };
        if !delivered {
            // Nobody accepts streams (Incoming was dropped): refuse it.
            inner.lock().forget(id);
            self.send_bounded(Outgoing::Rst {
                id,
                status: RstStatus::REFUSED_STREAM,
            })
            .await;
        }
        Ok(())
    }

    fn syn_reply(&mut self, id: u32, fin: bool, headers: Headers) {
        let mut state = self.inner.lock();
        let Some(entry) = state.streams.get_mut(&id) else {
            tracing::debug!(stream = id, "SYN_REPLY for a stream that is not open");
            return;
        };
        match entry.reply.take() {
            Some(waiter) => {
                let _ = waiter.send(Ok(headers));
            }
            None => tracing::debug!(stream = id, "unexpected SYN_REPLY ignored"),
        }
        if fin {
            state.remote_finished(id);
        }
    }

    fn rst_stream(&mut self, id: u32, status: RstStatus) {
        let Some(entry) = self.inner.lock().forget(id) else {
            return;
        };
        tracing::debug!(stream = id, %status, "stream reset by the peer");
        let error = Error::Reset {
            id,
            status,
            by: Side::Peer,
        };
        entry.shared.fail(error.clone());
        if let Some(reply) = entry.reply {
            let _ = reply.send(Err(error));
        }
    }

    fn goaway(&mut self, last_good: u32, status: GoAwayStatus) {
        tracing::debug!(last_good, %status, "GOAWAY received");
        let refused: Vec<Entry> = {
            let mut state = self.inner.lock();
            state.goaway_received = Some(status);
            let ids: Vec<u32> = state
                .streams
                .iter()
                .filter(|(id, e)| !e.by_peer && **id > last_good)
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter().filter_map(|id| state.forget(id)).collect()
        };
        // Streams above the peer's last good id were never processed by it.
        for entry in refused {
            entry.shared.fail(Error::GoneAway(status));
            if let Some(reply) = entry.reply {
                let _ = reply.send(Err(Error::GoneAway(status)));
            }
        }
    }

    async fn data(&mut self, id: u32, fin: bool, data: Bytes) -> Result<(), Error> {
        enum Route {
            Unknown,
            AlreadyFinished,
            To(Option<mpsc::Sender<Bytes>>, Arc<StreamShared>),
        }
        let route = {
            let mut state = self.inner.lock();
            match state.streams.get(&id) {
                None => Route::Unknown,
                Some(entry) if entry.remote_fin => Route::AlreadyFinished,
                Some(entry) => {
                    let route = Route::To(entry.data.clone(), entry.shared.clone());
                    if fin {
                        state.remote_finished(id);
                    }
                    route
                }
            }
        };
        let (sender, shared) = match route {
            Route::Unknown => {
                tracing::debug!(stream = id, "DATA for a stream that is not open");
                self.send_bounded(Outgoing::Rst {
                    id,
                    status: RstStatus::INVALID_STREAM,
                })
                .await;
                return Ok(());
            }
            Route::AlreadyFinished => {
                self.send_bounded(Outgoing::Rst {
                    id,
                    status: RstStatus::STREAM_ALREADY_CLOSED,
                })
                .await;
                return Ok(());
            }
            Route::To(sender, shared) => (sender, shared),
        };
        let Some(sender) = sender else {
            return Ok(()); // the RecvHalf is gone: discard
        };
        if data.is_empty() {
            return Ok(());
        }
        tokio::select! {
            sent = sender.send(data) => {
                if sent.is_err() {
                    // The RecvHalf was dropped: discard this stream's data from now on.
                    if let Some(entry) = self.inner.lock().streams.get_mut(&id) {
                        entry.data = None;
                    }
                }
            }
            _ = shared.cancel.cancelled() => {}
            _ = self.inner.abort.cancelled() => return Err(Error::Closed),
        }
        Ok(())
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    inner: Arc<Inner>,
    mut io: W,
    mut rx: mpsc::Receiver<Outgoing>,
) {
    let result = write_frames(&inner, &mut io, &mut rx).await;
    rx.close();
    let _ = io.shutdown().await;
    if let Err(e) = result {
        inner.finish(Err(e));
        inner.abort.cancel();
    }
    inner.writer_done.cancel();
}

async fn write_frames<W: AsyncWrite + Unpin>(
    inner: &Inner,
    io: &mut W,
    rx: &mut mpsc::Receiver<Outgoing>,
) -> Result<(), Error> {
    let mut headers = HeaderEncoder::new()?;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut draining = false;
    loop {
        let next = if draining {
            rx.recv().await
        } else {
            tokio::select! {
                biased;
                next = rx.recv() => next,
                _ = inner.reader_done.cancelled() => {
                    // Nothing more comes in: write what is queued, then stop.
                    draining = true;
                    rx.close();
                    continue;
                }
            }
        };
        let Some(first) = next else {
            return Ok(());
        };
        let mut close = encode(&mut headers, &mut buf, first)?;
        while !close && buf.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(more) => close = encode(&mut headers, &mut buf, more)?,
                Err(_) => break,
            }
        }
        io.write_all(&buf).await?;
        io.flush().await?;
        buf.clear();
        if close {
            return Ok(());
        }
    }
}

/// Appends the frame for `outgoing` to `buf`; true for `Close`.
fn encode(
    headers: &mut HeaderEncoder,
    buf: &mut BytesMut,
    outgoing: Outgoing,
) -> Result<bool, Error> {
    let frame = match outgoing {
        Outgoing::Close => return Ok(true),
        Outgoing::Data { id, data, fin } => {
            frame::encode_data_header(buf, id, fin, data.len())?;
            buf.extend_from_slice(&data);
            return Ok(false);
        }
        Outgoing::SynStream {
            id,
            headers: h,
            fin,
        } => Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            flags: if fin { FLAG_FIN } else { 0 },
            header_block: headers.encode(&h)?,
        },
        Outgoing::SynReply {
            id,
            headers: h,
            fin,
        } => Frame::SynReply {
            stream_id: id,
            fin,
            header_block: headers.encode(&h)?,
        },
        Outgoing::Rst { id, status } => Frame::RstStream {
            stream_id: id,
            status,
        },
        Outgoing::Ping(id) => Frame::Ping { id },
        Outgoing::GoAway { last_good, status } => Frame::GoAway {
            last_good_stream_id: last_good,
            status,
        },
    };
    frame.encode(buf)?;
    Ok(false)
}
