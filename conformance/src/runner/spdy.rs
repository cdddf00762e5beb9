//! A client of the Kubernetes streaming protocols over SPDY/3.1, as kubelet's and kubectl's
//! Go client speaks them: the remote-command protocol (exec, attach; `v4.channel.k8s.io`
//! down to `channel.k8s.io`) and port-forward (`portforward.k8s.io`), on the `spdy` crate.
//! Only loopback URLs are dialled (`ws::parse_url`).
//!
//! What the Go client does and this one mirrors: an HTTP/1.1 upgrade offering each protocol
//! version in its own `X-Stream-Protocol-Version` line; one stream per channel, told apart
//! by the `streamtype` header, the error stream first, each opened only after the previous
//! one's SYN_REPLY; FIN only on stdin (when the input ends) and on port-forward's error
//! stream. A Go server ends a session by resetting every stream: a reset after the data is
//! the end of a stream here too, as it is for Go readers.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use ::spdy::{Connection, Headers, Limits, RecvHalf, SendHalf, Stream};
use anyhow::{bail, Context, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::ws::parse_url;

/// The remote-command protocol versions offered, newest first (what kubectl offers).
pub const REMOTE_COMMAND_PROTOCOLS: &[&str] = &[
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
/// The port-forward protocol.
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

/// How long the server has to answer the upgrade, and each SYN_STREAM.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);
/// The largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// The server's answer to an upgrade it did not switch: status line, headers and body.
#[derive(Clone, Debug)]
pub struct Refusal {
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Refusal {
    /// The status code of the status line.
    pub fn status(&self) -> Option<u16> {
        self.status_line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Every value of header `name` (any case), each comma-separated item apart.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(',').map(|item| item.trim().to_owned()))
            .filter(|item| !item.is_empty())
            .collect()
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.status_line)?;
        if !self.body.is_empty() {
            write!(f, " ({})", self.body)?;
        }
        Ok(())
    }
}

/// The outcome of an upgrade request.
pub enum Upgrade {
    /// `101 Switching Protocols`: a SPDY client connection and the version the server chose.
    Switched {
        conn: Connection,
        protocol: String,
    },
    Refused(Refusal),
}

/// Sends the SPDY/3.1 upgrade request to `url`, offering `protocols` (none at all is allowed,
/// to see the server refuse).
pub async fn upgrade(url: &str, protocols: &[&str]) -> Result<Upgrade> {
    let target = parse_url(url)?;
    let mut stream = TcpStream::connect(target.addr)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let mut request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n",
        target.target, target.host
    );
    for protocol in protocols {
        request.push_str(&format!("X-Stream-Protocol-Version: {protocol}\r\n"));
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let (status_line, headers, rest) = read_head(&mut stream)
        .await
        .with_context(|| format!("the SPDY upgrade of {url}"))?;
    let refusal = Refusal {
        status_line,
        headers,
        body: String::new(),
    };
    if refusal.status() != Some(101) {
        let body = read_body(&mut stream, rest, &refusal).await;
        return Ok(Upgrade::Refused(Refusal { body, ..refusal }));
    }
    let protocol = refusal
        .header_values("x-stream-protocol-version")
        .into_iter()
        .next()
        .unwrap_or_default();
    let io = Prefixed {
        prefix: rest,
        io: stream,
    };
    let (conn, _incoming) = Connection::client(io, Limits::default());
    Ok(Upgrade::Switched { conn, protocol })
}

/// Reads the response head: the status line, the headers, and the bytes after the head.
async fn read_head(stream: &mut TcpStream) -> Result<(String, Vec<(String, String)>, Vec<u8>)> {
    let mut buffer = Vec::new();
    let read = async {
        loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
                let rest = buffer[end + 4..].to_vec();
                let mut lines = head.lines();
                let status_line = lines.next().unwrap_or_default().to_owned();
                let headers = lines
                    .filter_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        Some((name.trim().to_owned(), value.trim().to_owned()))
                    })
                    .collect();
                return Ok((status_line, headers, rest));
            }
            if buffer.len() > MAX_HEAD {
                bail!("the response head exceeds {MAX_HEAD} bytes");
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                bail!(
                    "the server closed the connection before answering ({:?})",
                    String::from_utf8_lossy(&buffer)
                );
            }
            buffer.extend_from_slice(&chunk[..n]);
        }
    };
    match tokio::time::timeout(ANSWER_WITHIN, read).await {
        Ok(result) => result,
        Err(_) => bail!("no answer within {ANSWER_WITHIN:?}"),
    }
}

/// The body of a refusal: `Content-Length` bytes, or what comes within a second.
async fn read_body(stream: &mut TcpStream, mut body: Vec<u8>, refusal: &Refusal) -> String {
    let length: Option<usize> = refusal
        .header_values("content-length")
        .first()
        .and_then(|v| v.parse().ok());
    let want = length.unwrap_or(MAX_HEAD).min(MAX_HEAD);
    let read = async {
        let mut chunk = [0u8; 4096];
        while body.len() < want {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), read).await;
    String::from_utf8_lossy(&body).trim().to_owned()
}

/// A socket whose first bytes were already read with the response head.
struct Prefixed {
    prefix: Vec<u8>,
    io: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.drain(..n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Opens a stream with `headers` and waits for its SYN_REPLY, as the Go client does.
async fn open_stream(conn: &Connection, headers: Headers) -> Result<Stream> {
    let kind = headers.get("streamtype").unwrap_or_default().to_owned();
    let mut stream = conn
        .open(headers, false)
        .await
        .with_context(|| format!("opening the {kind} stream"))?;
    match tokio::time::timeout(ANSWER_WITHIN, stream.reply_headers()).await {
        Ok(reply) => reply.with_context(|| format!("the reply to the {kind} stream"))?,
        Err(_) => bail!("no SYN_REPLY to the {kind} stream within {ANSWER_WITHIN:?}"),
    };
    Ok(stream)
}

/// Reads `half` to its end. A reset by the peer after the data also ends it: a Go server
/// resets every stream when it closes the connection.
pub async fn read_all(half: &mut RecvHalf) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    match half.read_to_end(&mut out).await {
        Ok(_) => Ok(out),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(out),
        Err(e) => Err(e),
    }
}

/// Which streams a remote command has (what the Exec/Attach request asked for).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RemoteOpts {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// An exec or attach session.
pub struct Session {
    /// The protocol version the server chose.
    pub protocol: String,
    conn: Connection,
    error: RecvHalf,
    stdin: Option<SendHalf>,
    stdout: Option<RecvHalf>,
    stderr: Option<RecvHalf>,
    resize: Option<SendHalf>,
    /// Stdout read by `read_stdout_for` so far.
    stdout_seen: Vec<u8>,
    stdout_ended: bool,
    /// Write halves of streams the client never writes: kept without FIN, as kubectl does.
    _quiet: Vec<SendHalf>,
}

/// What a finished session returned.
#[derive(Clone, Debug, Default)]
pub struct RemoteResult {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The JSON status the server wrote on the error stream (v4), if any.
    pub status_json: Option<String>,
}

/// The parts of a v4 `metav1.Status` the cases check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandStatus {
    /// `Success` or `Failure`.
    pub status: String,
    pub reason: String,
    pub message: String,
    /// The `ExitCode` cause of a `Failure`, if it has one.
    pub exit_code: Option<i64>,
}

impl RemoteResult {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// The status on the error stream; an error if there is none or it is not JSON.
    pub fn status(&self) -> Result<CommandStatus> {
        let raw = self
            .status_json
            .as_deref()
            .context("the server wrote no status on the error stream")?;
        CommandStatus::parse(raw)
    }
}

impl CommandStatus {
    /// Parses the JSON a v4 server writes on the error stream; an `ExitCode` cause that is
    /// not a number is an error.
    pub fn parse(raw: &str) -> Result<CommandStatus> {
        let value: serde_json::Value = serde_json::from_str(raw)
            .with_context(|| format!("the error stream does not hold a JSON status: {raw:?}"))?;
        let text = |pointer: &str| {
            value
                .pointer(pointer)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let exit_cause = value
            .pointer("/details/causes")
            .and_then(|c| c.as_array())
            .and_then(|causes| {
                causes
                    .iter()
                    .find(|c| c.get("reason").and_then(|r| r.as_str()) == Some("ExitCode"))
            });
        let exit_code = match exit_cause {
            None => None,
            Some(cause) => Some(
                cause
                    .get("message")
                    .and_then(|m| m.as_str())
                    .and_then(|m| m.parse().ok())
                    .with_context(|| format!("an ExitCode cause that is not a number: {raw}"))?,
            ),
        };
        Ok(CommandStatus {
            status: text("/status"),
            reason: text("/reason"),
            message: text("/message"),
            exit_code,
        })
    }
}

/// Upgrades `url` (an Exec or Attach URL) and opens the streams `opts` asks for.
pub async fn remote_command(url: &str, opts: RemoteOpts) -> Result<Session> {
    let (conn, protocol) = match upgrade(url, REMOTE_COMMAND_PROTOCOLS).await? {
        Upgrade::Switched { conn, protocol } => (conn, protocol),
        Upgrade::Refused(refusal) => {
            bail!("the streaming server refused the SPDY/3.1 upgrade of {url}: {refusal}")
        }
    };
    let stream = |kind: &str| Headers::new().with("streamtype", kind);
    let mut quiet = Vec::new();
    let Stream {
        reader: error,
        writer,
        ..
    } = open_stream(&conn, stream("error")).await?;
    quiet.push(writer);
    let stdin = if opts.stdin {
        let Stream { writer, .. } = open_stream(&conn, stream("stdin")).await?;
        Some(writer)
    } else {
        None
    };
    let mut output = |opened: Stream| {
        let Stream { reader, writer, .. } = opened;
        quiet.push(writer);
        reader
    };
    let stdout = if opts.stdout {
        Some(output(open_stream(&conn, stream("stdout")).await?))
    } else {
        None
    };
    // With a tty, stderr is merged into stdout and has no stream of its own.
    let stderr = if opts.stderr && !opts.tty {
        Some(output(open_stream(&conn, stream("stderr")).await?))
    } else {
        None
    };
    let resize = if opts.tty {
        let Stream { writer, .. } = open_stream(&conn, stream("resize")).await?;
        Some(writer)
    } else {
        None
    };
    Ok(Session {
        protocol,
        conn,
        error,
        stdin,
        stdout,
        stderr,
        resize,
        stdout_seen: Vec::new(),
        stdout_ended: false,
        _quiet: quiet,
    })
}

impl Session {
    pub async fn write_stdin(&mut self, data: &[u8]) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .context("the session has no open stdin")?;
        stdin.write_all(data).await.context("writing stdin")?;
        Ok(())
    }

    /// Half-closes stdin (FIN): the command reads EOF.
    pub async fn close_stdin(&mut self) -> Result<()> {
        if let Some(mut stdin) = self.stdin.take() {
            stdin.shutdown().await.context("closing stdin")?;
        }
        Ok(())
    }

    /// Sends a terminal size on the resize stream, as kubectl encodes it.
    pub async fn resize(&mut self, width: u16, height: u16) -> Result<()> {
        let resize = self
            .resize
            .as_mut()
            .context("the session has no resize stream (no tty)")?;
        let message = format!("{{\"Width\":{width},\"Height\":{height}}}\n");
        resize
            .write_all(message.as_bytes())
            .await
            .context("writing a terminal size")?;
        Ok(())
    }

    /// Reads stdout until `stop` holds for what was read so far, stdout ends, or `within`
    /// passes; returns whether stdout ended. What was read is kept for `stdout_so_far` and
    /// for `finish`.
    pub async fn read_stdout_for(
        &mut self,
        within: Duration,
        stop: impl Fn(&[u8]) -> bool,
    ) -> Result<bool> {
        let Some(stdout) = self.stdout.as_mut() else {
            bail!("the session has no stdout");
        };
        let deadline = tokio::time::Instant::now() + within;
        let mut chunk = vec![0u8; 32 * 1024];
        while !self.stdout_ended && !stop(&self.stdout_seen) {
            match tokio::time::timeout_at(deadline, stdout.read(&mut chunk)).await {
                Err(_) => break,
                Ok(Ok(0)) => self.stdout_ended = true,
                Ok(Ok(n)) => self.stdout_seen.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
                    self.stdout_ended = true
                }
                Ok(Err(e)) => return Err(e).context("reading stdout"),
            }
        }
        Ok(self.stdout_ended)
    }

    pub fn stdout_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stdout_seen).into_owned()
    }

    /// The stdout stream itself, for a caller that reads it as it arrives (e.g. bulk data).
    /// `finish` then reports only what `read_stdout_for` read before.
    pub fn take_stdout(&mut self) -> Option<RecvHalf> {
        self.stdout.take()
    }

    /// Closes stdin if it is still open, reads every output stream and the error stream to
    /// their end (all at once: the server writes them independently) and closes the
    /// connection. On a timeout the error says what each stream had delivered.
    pub async fn finish(mut self, within: Duration) -> Result<RemoteResult> {
        self.close_stdin().await?;
        let mut out = std::mem::take(&mut self.stdout_seen);
        let mut err = Vec::new();
        let mut status = Vec::new();
        let mut ended = [
            self.stdout_ended || self.stdout.is_none(),
            self.stderr.is_none(),
            false,
        ];
        let [out_ended, err_ended, status_ended] = &mut ended;
        let all = async {
            tokio::try_join!(
                read_rest(self.stdout.as_mut(), &mut out, out_ended),
                read_rest(self.stderr.as_mut(), &mut err, err_ended),
                read_rest(Some(&mut self.error), &mut status, status_ended),
            )
        };
        match tokio::time::timeout(within, all).await {
            Ok(result) => {
                result.context("reading the session's streams")?;
            }
            Err(_) => bail!(
                "the session did not end within {within:?}: (stdout, stderr, error) ended \
                 {ended:?}, got stdout {:?}, stderr {:?}, error stream {:?}; connection \
                 closed: {}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err),
                String::from_utf8_lossy(&status),
                self.conn.is_closed()
            ),
        }
        self.conn.close().await;
        Ok(RemoteResult {
            stdout: out,
            stderr: err,
            status_json: (!status.is_empty())
                .then(|| String::from_utf8_lossy(&status).into_owned()),
        })
    }
}

/// Appends what `half` delivers to `into` until its end (a reset by the peer included, as
/// in `read_all`), then sets `ended`. Nothing to do for a missing or ended stream.
async fn read_rest(
    half: Option<&mut RecvHalf>,
    into: &mut Vec<u8>,
    ended: &mut bool,
) -> io::Result<()> {
    let Some(half) = half else {
        return Ok(());
    };
    if *ended {
        return Ok(());
    }
    let mut chunk = vec![0u8; 32 * 1024];
    loop {
        match half.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => into.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) => return Err(e),
        }
    }
    *ended = true;
    Ok(())
}

/// A port-forward connection: one pair of streams per forwarded TCP connection.
pub struct PortForwardConn {
    pub protocol: String,
    conn: Connection,
}

/// Upgrades `url` (a PortForward URL) with the port-forward protocol.
pub async fn port_forward(url: &str) -> Result<PortForwardConn> {
    match upgrade(url, &[PORT_FORWARD_PROTOCOL]).await? {
        Upgrade::Switched { conn, protocol } => Ok(PortForwardConn { protocol, conn }),
        Upgrade::Refused(refusal) => bail!(
            "the streaming server refused the SPDY/3.1 port-forward upgrade of {url}: {refusal}"
        ),
    }
}

impl PortForwardConn {
    /// Opens one forwarded connection to `port` in the pod: the error stream first (closed
    /// for writing at once, the client never writes on it), then the data stream, both
    /// named by `request_id`. Returns the data stream and the error stream's reader.
    pub async fn open(&self, port: u16, request_id: u32) -> Result<(Stream, RecvHalf)> {
        let headers = |kind: &str| {
            Headers::new()
                .with("streamtype", kind)
                .with("port", port.to_string())
                .with("requestid", request_id.to_string())
        };
        let Stream {
            reader: error,
            mut writer,
            ..
        } = open_stream(&self.conn, headers("error")).await?;
        writer
            .shutdown()
            .await
            .context("closing the error stream for writing")?;
        let data = open_stream(&self.conn, headers("data")).await?;
        Ok((data, error))
    }

    pub async fn close(&self) {
        self.conn.close().await;
    }
}
