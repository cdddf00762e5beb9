//! The SPDY/3.1 wire: Kubernetes' remote-command and port-forward protocols.
//!
//! The client opens one SPDY stream per purpose, named by its `streamtype` header, and the
//! server replies to each. Remote command: `error`, then `stdin`, `stdout`, `stderr` as the
//! request asked, and `resize` (a terminal, from v3 on) carrying `{"Width":w,"Height":h}`
//! objects one per line. The session starts once every expected stream is open; the client's
//! half-close of `stdin` closes the process's stdin. When the process ended and its output
//! is flushed, the status goes on `error` (see `status`) and the connection closes.
//!
//! Port-forward: a `data` and an `error` stream per forwarded connection, paired by their
//! `requestid` header and naming the `port`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cri_api::v1 as cri;
use spdy::{Connection, Headers, Incoming, Limits, RecvHalf, SendHalf};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::session::{self, Channels, TermSize};
use super::status::{error_stream_payload, Ended};
use super::tokens::Pending;
use crate::runtime::Crius;

/// How long the client may take to open the session's streams (Kubernetes uses 30 s).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// A resize line longer than this is not a terminal size.
const MAX_RESIZE_LINE: usize = 4096;

const STREAM_TYPE: &str = "streamtype";

/// Runs a session on an upgraded connection.
pub async fn serve<S>(crius: Arc<Crius>, pending: Pending, version: u8, io: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (conn, incoming) = Connection::server(io, Limits::default());
    let gone = CancellationToken::new();
    let watcher = {
        let conn = conn.clone();
        let gone = gone.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.closed().await {
                tracing::debug!(error = %e, "SPDY streaming connection ended");
            }
            gone.cancel();
        })
    };
    match &pending {
        Pending::Exec(_) | Pending::Attach(_) => {
            remote_command(&crius, &pending, version, &conn, incoming, gone).await
        }
        Pending::PortForward(request) => port_forward(&crius, request, &conn, incoming, gone).await,
    }
    conn.close().await;
    // The peer closes its side after our GOAWAY; don't wait on a client that never does.
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
    watcher.abort();
}

/// The streams a remote-command client opens.
#[derive(Default)]
struct Opened {
    error: Option<SendHalf>,
    stdin: Option<RecvHalf>,
    stdout: Option<SendHalf>,
    stderr: Option<SendHalf>,
    resize: Option<RecvHalf>,
}

struct Wanted {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    resize: bool,
}

impl Opened {
    fn complete(&self, wanted: &Wanted) -> bool {
        self.error.is_some()
            && (!wanted.stdin || self.stdin.is_some())
            && (!wanted.stdout || self.stdout.is_some())
            && (!wanted.stderr || self.stderr.is_some())
            && (!wanted.resize || self.resize.is_some())
    }
}

async fn remote_command(
    crius: &Arc<Crius>,
    pending: &Pending,
    version: u8,
    conn: &Connection,
    mut incoming: Incoming,
    gone: CancellationToken,
) {
    let (stdin, stdout, stderr, tty) = match pending {
        Pending::Exec(r) => (r.stdin, r.stdout, r.stderr, r.tty),
        Pending::Attach(r) => (r.stdin, r.stdout, r.stderr, r.tty),
        Pending::PortForward(_) => return,
    };
    let wanted = Wanted {
        stdin,
        stdout,
        stderr,
        resize: tty && version >= 3,
    };
    let mut opened = Opened::default();
    let collected = tokio::time::timeout(STREAM_CREATION_TIMEOUT, async {
        while !opened.complete(&wanted) {
            let Some(stream) = incoming.next().await else {
                return Err(
                    "the client closed the connection before opening its streams".to_string(),
                );
            };
            let kind = stream
                .headers
                .get(STREAM_TYPE)
                .unwrap_or_default()
                .to_string();
            conn.reply(stream.id, Headers::new(), false)
                .await
                .map_err(|e| format!("replying to stream {}: {e}", stream.id))?;
            let slot_taken = match kind.as_str() {
                "error" => opened.error.replace(stream.writer).is_some(),
                "stdin" => opened.stdin.replace(stream.reader).is_some(),
                "stdout" => opened.stdout.replace(stream.writer).is_some(),
                "stderr" => opened.stderr.replace(stream.writer).is_some(),
                "resize" => opened.resize.replace(stream.reader).is_some(),
                other => return Err(format!("unknown stream type {other:?}")),
            };
            if slot_taken {
                return Err(format!("a second {kind:?} stream"));
            }
        }
        Ok(())
    })
    .await;
    let failure = match collected {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some(format!(
            "the client did not open its streams within {STREAM_CREATION_TIMEOUT:?}"
        )),
    };
    if let Some(failure) = failure {
        tracing::warn!(error = %failure, "SPDY remote command did not start");
        if let Some(mut error) = opened.error.take() {
            if let Some(payload) = error_stream_payload(version, &Ended::Failed(failure)) {
                let _ = error.write_all(&payload).await;
            }
            let _ = error.shutdown().await;
        }
        return;
    }
    // Later streams (none are expected) are refused rather than left open.
    let refuser = {
        let conn = conn.clone();
        tokio::spawn(async move {
            while let Some(stream) = incoming.next().await {
                let _ = conn.reset(stream.id, spdy::RstStatus::REFUSED_STREAM).await;
            }
        })
    };
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(8);
    let stdin_pump = opened
        .stdin
        .take()
        .map(|reader| tokio::spawn(read_into(reader, stdin_tx)));
    let (resize_tx, resize_rx) = mpsc::channel::<TermSize>(4);
    let resize_pump = opened
        .resize
        .take()
        .map(|reader| tokio::spawn(read_resizes(reader, resize_tx)));
    let (stdout_tx, stdout_rx) = mpsc::channel::<Bytes>(4);
    let (stderr_tx, stderr_rx) = mpsc::channel::<Bytes>(4);
    let channels = Channels {
        stdin: stdin_pump.is_some().then_some(stdin_rx),
        stdout: opened.stdout.is_some().then_some(stdout_tx),
        stderr: opened.stderr.is_some().then_some(stderr_tx),
        // Before v3 a terminal has no resize stream: its size stays the default.
        resize: resize_pump.is_some().then_some(resize_rx),
        gone: gone.clone(),
    };
    let session = async {
        match pending {
            Pending::Exec(r) => session::exec(crius, r, channels).await,
            Pending::Attach(r) => session::attach(crius, r, channels).await,
            Pending::PortForward(_) => Ended::Failed("not a remote command".into()),
        }
    };
    let (ended, (), ()) = tokio::join!(
        session,
        write_from(stdout_rx, opened.stdout.take()),
        write_from(stderr_rx, opened.stderr.take()),
    );
    if let Some(mut error) = opened.error.take() {
        if let Some(payload) = error_stream_payload(version, &ended) {
            let _ = error.write_all(&payload).await;
        }
        let _ = error.shutdown().await;
    }
    for pump in [stdin_pump, resize_pump].into_iter().flatten() {
        pump.abort();
    }
    refuser.abort();
}

/// A client stream into a queue, until the client's half-close (the queue's end).
async fn read_into(mut reader: RecvHalf, tx: mpsc::Sender<Bytes>) {
    let mut buf = vec![0u8; spdy::MAX_DATA_CHUNK];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Terminal sizes, one JSON object per line.
async fn read_resizes(mut reader: RecvHalf, tx: mpsc::Sender<TermSize>) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if let Some(size) = super::ws::parse_resize(&line) {
                if tx.send(size).await.is_err() {
                    return;
                }
            }
        }
        // A JSON object without a newline yet; or one written without any.
        if let Some(size) = super::ws::parse_resize(&pending) {
            pending.clear();
            if tx.send(size).await.is_err() {
                return;
            }
        }
        if pending.len() > MAX_RESIZE_LINE {
            return;
        }
    }
}

/// An output queue onto its stream, then the stream's half-close. Without a stream (the
/// client did not ask for it) the queue is simply drained.
async fn write_from(mut rx: mpsc::Receiver<Bytes>, writer: Option<SendHalf>) {
    let Some(mut writer) = writer else {
        while rx.recv().await.is_some() {}
        return;
    };
    while let Some(chunk) = rx.recv().await {
        if writer.write_all(&chunk).await.is_err() {
            // The client is gone; let the session notice through the connection.
            while rx.recv().await.is_some() {}
            return;
        }
    }
    let _ = writer.shutdown().await;
}

/// One half of a forwarded connection, waiting for its partner.
#[derive(Default)]
struct Pair {
    data: Option<spdy::Stream>,
    error: Option<spdy::Stream>,
    port: Option<String>,
}

async fn port_forward(
    crius: &Arc<Crius>,
    request: &cri::PortForwardRequest,
    conn: &Connection,
    mut incoming: Incoming,
    gone: CancellationToken,
) {
    let netns = super::server::pod_netns(crius, request);
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut forwards = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            stream = incoming.next() => stream,
            () = gone.cancelled() => None,
            Some(_) = forwards.join_next(), if !forwards.is_empty() => continue,
        };
        let Some(stream) = stream else { break };
        if conn.reply(stream.id, Headers::new(), false).await.is_err() {
            break;
        }
        let kind = stream
            .headers
            .get(STREAM_TYPE)
            .unwrap_or_default()
            .to_string();
        let request_id = stream
            .headers
            .get("requestid")
            .unwrap_or_default()
            .to_string();
        let port = stream.headers.get("port").map(str::to_string);
        let pair = pairs.entry(request_id.clone()).or_default();
        if pair.port.is_none() {
            pair.port = port;
        }
        let duplicate = match kind.as_str() {
            "data" => pair.data.replace(stream).is_some(),
            "error" => pair.error.replace(stream).is_some(),
            other => {
                tracing::debug!(
                    stream_type = other,
                    "unknown port-forward stream type; resetting"
                );
                let _ = conn.reset(stream.id, spdy::RstStatus::PROTOCOL_ERROR).await;
                false
            }
        };
        if duplicate {
            tracing::debug!(
                request_id,
                "a second {kind} stream for one port-forward request"
            );
        }
        if pair.data.is_some() && pair.error.is_some() {
            if let Some(Pair {
                data: Some(data),
                error: Some(error),
                port,
            }) = pairs.remove(&request_id)
            {
                let target = port
                    .ok_or_else(|| "the port-forward stream names no port".to_string())
                    .and_then(|p| super::server::check_port(&p, request))
                    .and_then(|port| netns.clone().map(|netns| (netns, port)));
                forwards.spawn(forward_one(target, data, error));
            }
        }
    }
    forwards.abort_all();
}

/// One forwarded connection: dial, then copy both ways; a failure goes on the error stream.
async fn forward_one(
    target: Result<(Option<PathBuf>, u16), String>,
    data: spdy::Stream,
    error: spdy::Stream,
) {
    let mut error_writer = error.writer;
    let dialed = match target {
        Ok((netns, port)) => super::dial::dial(netns, port).await,
        Err(e) => Err(e),
    };
    let tcp = match dialed {
        Ok(tcp) => tcp,
        Err(message) => {
            tracing::debug!(error = %message, "port-forward failed");
            let _ = error_writer.write_all(message.as_bytes()).await;
            let _ = error_writer.shutdown().await;
            let mut data_writer = data.writer;
            let _ = data_writer.shutdown().await;
            return;
        }
    };
    let (mut tcp_read, mut tcp_write) = tcp.into_split();
    let mut from_client = data.reader;
    let mut to_client = data.writer;
    let inbound = async {
        let _ = tokio::io::copy(&mut from_client, &mut tcp_write).await;
        let _ = tcp_write.shutdown().await;
    };
    let outbound = async {
        let _ = tokio::io::copy(&mut tcp_read, &mut to_client).await;
        let _ = to_client.shutdown().await;
    };
    // The forward ends when either direction has: the other gets a moment to finish (a
    // server's answer after the client's half-close, or the reverse), then both streams end.
    {
        tokio::pin!(inbound, outbound);
        tokio::select! {
            () = &mut inbound => {
                let _ = tokio::time::timeout(LINGER, &mut outbound).await;
            }
            () = &mut outbound => {
                let _ = tokio::time::timeout(LINGER, &mut inbound).await;
            }
        }
    }
    let _ = to_client.shutdown().await;
    let _ = error_writer.shutdown().await;
}

/// How long the second direction of a forwarded connection may go on after the first ended.
const LINGER: Duration = Duration::from_secs(1);
