//! A minimal client for the streaming URLs that Exec/Attach/PortForward return: the
//! Kubernetes WebSocket channel protocols (`channel.k8s.io`, `v4.channel.k8s.io`,
//! `v5.channel.k8s.io` and the base64 variants), terminal resizes, port-forward's port
//! prefixes, and a probe of the SPDY/3.1 upgrade. Only loopback URLs are dialled.
//!
//! Binary protocols put the channel number in the first byte of every message; the base64
//! ones send text messages whose first character is the channel as an ASCII digit and whose
//! rest is the payload in standard base64.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::skip;

/// Channel numbers of the Kubernetes remote-command protocol.
pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
/// Terminal sizes (`{"Width":W,"Height":H}`), client to server, tty sessions only.
pub const RESIZE: u8 = 4;

/// The first byte of a v5 message that closes the channel named in its second byte.
pub const CLOSE_SIGNAL: u8 = 255;

/// Subprotocol names.
pub const V5: &str = "v5.channel.k8s.io";
pub const V4: &str = "v4.channel.k8s.io";
pub const V4_BASE64: &str = "v4.base64.channel.k8s.io";
pub const V1: &str = "channel.k8s.io";
pub const V1_BASE64: &str = "base64.channel.k8s.io";

/// The protocols offered in the WebSocket handshake, newest first.
pub const CHANNEL_PROTOCOLS: &[&str] = &[V5, V4, V1];

/// How channel messages are framed on a connection, as its subprotocol says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Binary messages: channel byte, raw payload.
    Binary,
    /// Text messages: channel as an ASCII digit, base64 payload.
    Base64,
}

impl Framing {
    pub fn of(protocol: &str) -> Framing {
        if protocol.split('.').any(|part| part == "base64") {
            Framing::Base64
        } else {
            Framing::Binary
        }
    }
}

/// The parts of a streaming URL the client needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamUrl {
    pub addr: SocketAddr,
    pub host: String,
    /// Path and query, e.g. `/exec/AbCd12`.
    pub target: String,
}

/// Parses an absolute `http://host:port/path` URL. `https` and non-loopback hosts skip the
/// case: the suite only dials loopback, in plain HTTP.
pub fn parse_url(url: &str) -> Result<StreamUrl> {
    let Some(rest) = url.strip_prefix("http://") else {
        if url.starts_with("https://") {
            return Err(skip(format!(
                "streaming URL {url} uses TLS; the suite's client speaks plain HTTP only"
            )));
        }
        bail!("streaming URL {url:?} is not an absolute http(s) URL");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = authority.parse().with_context(|| {
        format!("streaming URL {url}: host {authority:?} is not an IP address with a port")
    })?;
    if !is_loopback(addr.ip()) {
        return Err(skip(format!(
            "streaming URL {url} is not on a loopback address; the suite only dials loopback"
        )));
    }
    Ok(StreamUrl {
        addr,
        host: authority.to_owned(),
        target: path.to_owned(),
    })
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}

/// `url` with one `port=N` query parameter per port, as WebSocket port-forward takes them.
pub fn with_ports(url: &str, ports: &[u16]) -> String {
    let mut out = url.to_owned();
    for port in ports {
        out.push(if out.contains('?') { '&' } else { '?' });
        out.push_str(&format!("port={port}"));
    }
    out
}

/// The data and error channels of the `index`-th port of a port-forward connection.
pub fn port_channels(index: u8) -> (u8, u8) {
    (2 * index, 2 * index + 1)
}

/// Splits off the port number (2 bytes, little endian) that a port-forward server sends
/// first on each channel of a port; `None` while fewer than 2 bytes arrived.
pub fn split_port_prefix(bytes: &[u8]) -> Option<(u16, &[u8])> {
    let (prefix, rest) = bytes.split_first_chunk::<2>()?;
    Some((u16::from_le_bytes(*prefix), rest))
}

/// The answer to an upgrade request.
pub enum Handshake {
    /// `101 Switching Protocols`: the connection speaks WebSocket now.
    Switched(WsConn),
    /// Anything else, with the status line and whatever body came with it.
    Refused { status_line: String, body: String },
}

/// An open WebSocket connection.
pub struct WsConn {
    stream: TcpStream,
    /// Bytes read but not yet parsed start at `consumed`.
    buffer: Vec<u8>,
    consumed: usize,
    /// The subprotocol the server chose (`Sec-WebSocket-Protocol`).
    pub protocol: String,
    pub framing: Framing,
}

/// Why [`WsConn::collect_into`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// `stop` held.
    Stopped,
    /// The time was up first.
    TimedOut,
    /// The server closed the connection (close frame or EOF).
    Closed,
}

/// One message: opcode and (unmasked, reassembled) payload.
#[derive(Debug)]
struct Message {
    opcode: u8,
    payload: Vec<u8>,
}

/// Opens a WebSocket to `url` offering `protocols`.
pub async fn connect(url: &str, protocols: &[&str]) -> Result<Handshake> {
    let target = parse_url(url)?;
    let mut stream = TcpStream::connect(target.addr)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    stream.set_nodelay(true)?;
    let key = base64(&rand::random::<[u8; 16]>());
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {}\r\n\r\n",
        target.target,
        target.host,
        protocols.join(", ")
    );
    stream.write_all(request.as_bytes()).await?;
    let (head, rest) = read_head(&mut stream).await?;
    let status_line = head.lines().next().unwrap_or_default().to_owned();
    if status_code(&status_line) != Some(101) {
        let body = read_some(&mut stream, rest).await;
        return Ok(Handshake::Refused { status_line, body });
    }
    let protocol = header(&head, "sec-websocket-protocol").unwrap_or_default();
    Ok(Handshake::Switched(WsConn {
        stream,
        buffer: rest,
        consumed: 0,
        framing: Framing::of(&protocol),
        protocol,
    }))
}

/// Sends an SPDY/3.1 upgrade request for the remote-command protocol; returns the status
/// line and the `X-Stream-Protocol-Version` the server picked. Closes the connection.
pub async fn probe_spdy(url: &str) -> Result<(String, Option<String>)> {
    let target = parse_url(url)?;
    let mut stream = TcpStream::connect(target.addr)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
         X-Stream-Protocol-Version: v4.channel.k8s.io\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\n\
         Content-Length: 0\r\n\r\n",
        target.target, target.host
    );
    stream.write_all(request.as_bytes()).await?;
    let (head, _) = read_head(&mut stream).await?;
    let status_line = head.lines().next().unwrap_or_default().to_owned();
    Ok((status_line, header(&head, "x-stream-protocol-version")))
}

impl WsConn {
    /// Sends `data` on `channel` as one message, framed as the protocol wants.
    pub async fn send(&mut self, channel: u8, data: &[u8]) -> Result<()> {
        match self.framing {
            Framing::Binary => {
                let mut payload = Vec::with_capacity(data.len() + 1);
                payload.push(channel);
                payload.extend_from_slice(data);
                self.write_frame(0x2, &payload).await
            }
            Framing::Base64 => {
                ensure_digit(channel)?;
                let mut payload = vec![b'0' + channel];
                payload.extend_from_slice(base64(data).as_bytes());
                self.write_frame(0x1, &payload).await
            }
        }
    }

    /// Tells a tty session its terminal size (channel 4).
    pub async fn resize(&mut self, width: u16, height: u16) -> Result<()> {
        let size = format!(r#"{{"Width":{width},"Height":{height}}}"#);
        self.send(RESIZE, size.as_bytes()).await
    }

    /// Closes one channel in v5's way (`[255, channel]`), e.g. stdin to signal its end while
    /// the output keeps coming. Older protocols have no such message.
    pub async fn close_channel(&mut self, channel: u8) -> Result<()> {
        self.write_frame(0x2, &[CLOSE_SIGNAL, channel]).await
    }

    /// The next channel message as `(channel, payload)`; `None` once the server closed the
    /// connection. Pings are answered on the way.
    pub async fn recv(&mut self) -> Result<Option<(u8, Vec<u8>)>> {
        loop {
            let Some(message) = self.read_message().await? else {
                return Ok(None);
            };
            if message.opcode != 0x1 && message.opcode != 0x2 {
                continue;
            }
            let Some((&first, data)) = message.payload.split_first() else {
                continue;
            };
            return match self.framing {
                Framing::Binary => Ok(Some((first, data.to_vec()))),
                Framing::Base64 => {
                    let channel =
                        first
                            .checked_sub(b'0')
                            .filter(|c| *c <= 9)
                            .with_context(|| {
                                format!(
                                    "base64 framing: channel character {first:#04x} is not a digit"
                                )
                            })?;
                    let payload = base64_decode(data).with_context(|| {
                        format!(
                            "base64 framing: the payload of channel {channel} is not base64: {:?}",
                            String::from_utf8_lossy(data)
                        )
                    })?;
                    Ok(Some((channel, payload)))
                }
            };
        }
    }

    /// Reads messages until the server closes the connection or `within` passes, and returns
    /// the bytes received per channel. `stop` may end the read early (e.g. on enough output).
    pub async fn collect(
        &mut self,
        within: Duration,
        stop: impl Fn(&BTreeMap<u8, Vec<u8>>) -> bool,
    ) -> Result<BTreeMap<u8, Vec<u8>>> {
        let mut channels = BTreeMap::new();
        self.collect_into(&mut channels, within, stop).await?;
        Ok(channels)
    }

    /// [`WsConn::collect`] adding to `channels` (`stop` sees all of it); says why it ended.
    pub async fn collect_into(
        &mut self,
        channels: &mut BTreeMap<u8, Vec<u8>>,
        within: Duration,
        stop: impl Fn(&BTreeMap<u8, Vec<u8>>) -> bool,
    ) -> Result<Ended> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if stop(channels) {
                return Ok(Ended::Stopped);
            }
            let message = match tokio::time::timeout_at(deadline, self.recv()).await {
                Ok(message) => message?,
                Err(_) => return Ok(Ended::TimedOut),
            };
            let Some((channel, data)) = message else {
                return Ok(Ended::Closed);
            };
            channels
                .entry(channel)
                .or_default()
                .extend_from_slice(&data);
        }
    }

    /// Sends a close frame and ends the TCP connection; errors are irrelevant at that point.
    pub async fn close(&mut self) {
        let _ = self.write_frame(0x8, &[0x03, 0xE8]).await;
        let _ = self.stream.shutdown().await;
    }

    async fn write_frame(&mut self, opcode: u8, payload: &[u8]) -> Result<()> {
        let mut frame = Vec::with_capacity(payload.len() + 14);
        frame.push(0x80 | opcode);
        let len = payload.len();
        if len < 126 {
            frame.push(0x80 | len as u8);
        } else if len <= usize::from(u16::MAX) {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = rand::random::<[u8; 4]>();
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).await?;
        Ok(())
    }

    /// Reads until `n` unparsed bytes are buffered; `false` on EOF.
    async fn fill(&mut self, n: usize) -> Result<bool> {
        if self.consumed > 0 && self.buffer.len() - self.consumed < n {
            self.buffer.drain(..self.consumed);
            self.consumed = 0;
        }
        while self.buffer.len() - self.consumed < n {
            self.buffer.reserve(n.max(64 * 1024));
            if self.stream.read_buf(&mut self.buffer).await? == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let start = self.consumed;
        self.consumed += n;
        &self.buffer[start..start + n]
    }

    /// The next complete message; `None` on close or EOF.
    async fn read_message(&mut self) -> Result<Option<Message>> {
        let mut opcode = None;
        let mut payload = Vec::new();
        loop {
            if !self.fill(2).await? {
                return Ok(None);
            }
            let head = self.take(2);
            let fin = head[0] & 0x80 != 0;
            let frame_opcode = head[0] & 0x0F;
            let masked = head[1] & 0x80 != 0;
            let mut len = u64::from(head[1] & 0x7F);
            if len == 126 {
                if !self.fill(2).await? {
                    return Ok(None);
                }
                let b = self.take(2);
                len = u64::from(u16::from_be_bytes([b[0], b[1]]));
            } else if len == 127 {
                if !self.fill(8).await? {
                    return Ok(None);
                }
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(self.take(8));
                len = u64::from_be_bytes(bytes);
            }
            let mask = if masked {
                if !self.fill(4).await? {
                    return Ok(None);
                }
                let mut mask = [0u8; 4];
                mask.copy_from_slice(self.take(4));
                Some(mask)
            } else {
                None
            };
            let len = usize::try_from(len).context("WebSocket frame too large")?;
            if !self.fill(len).await? {
                return Ok(None);
            }
            let mut data = self.take(len).to_vec();
            if let Some(mask) = mask {
                for (i, b) in data.iter_mut().enumerate() {
                    *b ^= mask[i % 4];
                }
            }
            if frame_opcode == 0x8 {
                return Ok(None);
            }
            if frame_opcode >= 0x8 {
                // Control frames may interleave with a fragmented message.
                if frame_opcode == 0x9 {
                    self.write_frame(0xA, &data).await?;
                }
                continue;
            }
            if frame_opcode != 0 {
                opcode = Some(frame_opcode);
            }
            payload.extend_from_slice(&data);
            if fin {
                return Ok(Some(Message {
                    opcode: opcode.unwrap_or(0x2),
                    payload,
                }));
            }
        }
    }
}

fn ensure_digit(channel: u8) -> Result<()> {
    if channel > 9 {
        bail!("base64 framing cannot name channel {channel} (one ASCII digit)");
    }
    Ok(())
}

/// Reads the response head (up to the blank line); returns it and any bytes after it.
async fn read_head(stream: &mut TcpStream) -> Result<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let read = async {
        loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
                let rest = buffer[end + 4..].to_vec();
                return Ok((head, rest));
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                bail!(
                    "the streaming server closed the connection before answering ({:?})",
                    String::from_utf8_lossy(&buffer)
                );
            }
            buffer.extend_from_slice(&chunk[..n]);
        }
    };
    match tokio::time::timeout(Duration::from_secs(10), read).await {
        Ok(result) => result,
        Err(_) => bail!("the streaming server did not answer the upgrade within 10s"),
    }
}

/// Whatever body follows a refused upgrade, read briefly.
async fn read_some(stream: &mut TcpStream, mut body: Vec<u8>) -> String {
    let mut chunk = [0u8; 4096];
    if let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(500), stream.read(&mut chunk)).await
    {
        body.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&body).trim().to_owned()
}

/// The status code of an HTTP status line (`HTTP/1.1 404 Not Found` → 404).
pub fn status_code(status_line: &str) -> Option<u16> {
    status_line.split_whitespace().nth(1)?.parse().ok()
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(
                    BASE64_ALPHABET[((n >> (18 - 6 * i)) & 0x3F) as usize],
                ));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 with padding; `None` for anything else.
pub fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let quads = text.len() / 4;
    for (index, quad) in text.chunks(4).enumerate() {
        let padding = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if padding > 2 || (padding > 0 && index + 1 != quads) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - padding] {
            let value = BASE64_ALPHABET.iter().position(|&a| a == c)?;
            n = (n << 6) | value as u32;
        }
        n <<= 6 * padding as u32;
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - padding]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_VECTORS: [(&str, &str); 7] = [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ];

    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (input, output) in RFC_VECTORS {
            assert_eq!(base64(input.as_bytes()), output);
        }
    }

    #[test]
    fn base64_decoding_inverts_encoding_and_refuses_malformed_text() {
        for (input, output) in RFC_VECTORS {
            assert_eq!(
                base64_decode(output.as_bytes()).as_deref(),
                Some(input.as_bytes())
            );
        }
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(base64_decode(base64(&bytes).as_bytes()), Some(bytes));
        for bad in ["Zg=", "Z===", "Zg==Zm8=", "Zm9*", "Zm8=\n"] {
            assert_eq!(base64_decode(bad.as_bytes()), None, "{bad:?} was accepted");
        }
    }

    #[test]
    fn parses_loopback_urls_and_refuses_others() -> Result<()> {
        let url = parse_url("http://127.0.0.1:4242/exec/Ab12")?;
        assert_eq!(url.addr.port(), 4242);
        assert_eq!(url.target, "/exec/Ab12");
        assert!(parse_url("http://[::1]:80/x").is_ok());
        assert!(parse_url("http://10.0.0.1:80/x").is_err());
        assert!(parse_url("/exec/x").is_err());
        Ok(())
    }

    #[test]
    fn framing_follows_the_subprotocol() {
        assert_eq!(Framing::of(V4), Framing::Binary);
        assert_eq!(Framing::of(V5), Framing::Binary);
        assert_eq!(Framing::of(V1), Framing::Binary);
        assert_eq!(Framing::of(""), Framing::Binary);
        assert_eq!(Framing::of(V4_BASE64), Framing::Base64);
        assert_eq!(Framing::of(V1_BASE64), Framing::Base64);
    }

    #[test]
    fn port_forward_urls_channels_and_prefixes() {
        assert_eq!(
            with_ports("http://127.0.0.1:1/portforward/t", &[80, 8080]),
            "http://127.0.0.1:1/portforward/t?port=80&port=8080"
        );
        assert_eq!(
            with_ports("http://127.0.0.1:1/pf/t?a=b", &[80]),
            "http://127.0.0.1:1/pf/t?a=b&port=80"
        );
        assert_eq!(port_channels(0), (0, 1));
        assert_eq!(port_channels(1), (2, 3));
        assert_eq!(
            split_port_prefix(&[0x90, 0x1F, b'x']),
            Some((8080, &b"x"[..]))
        );
        assert_eq!(split_port_prefix(&[0x90]), None);
    }

    #[test]
    fn status_codes_come_from_the_status_line() {
        assert_eq!(status_code("HTTP/1.1 404 Not Found"), Some(404));
        assert_eq!(status_code("HTTP/1.1 101 Switching Protocols"), Some(101));
        assert_eq!(status_code("garbage"), None);
    }
}
