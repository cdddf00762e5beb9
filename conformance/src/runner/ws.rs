//! A minimal client for the streaming URLs that Exec/Attach/PortForward return: the WebSocket
//! channel protocol (`v4.channel.k8s.io`: every binary message starts with a channel byte)
//! and a probe of the SPDY/3.1 upgrade. Only loopback URLs are dialled.

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

/// The protocols offered in the WebSocket handshake, newest first.
pub const CHANNEL_PROTOCOLS: &[&str] =
    &["v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"];

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
    buffered: Vec<u8>,
    /// The subprotocol the server chose (`Sec-WebSocket-Protocol`).
    pub protocol: String,
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
        buffered: rest,
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
    /// Sends `data` on `channel` as one binary message.
    pub async fn send(&mut self, channel: u8, data: &[u8]) -> Result<()> {
        let mut payload = Vec::with_capacity(data.len() + 1);
        payload.push(channel);
        payload.extend_from_slice(data);
        self.write_frame(0x2, &payload).await
    }

    /// Reads messages until the server closes the connection or `within` passes, and returns
    /// the bytes received per channel. `stop` may end the read early (e.g. on enough output).
    pub async fn collect(
        &mut self,
        within: Duration,
        stop: impl Fn(&BTreeMap<u8, Vec<u8>>) -> bool,
    ) -> Result<BTreeMap<u8, Vec<u8>>> {
        let mut channels: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if stop(&channels) {
                return Ok(channels);
            }
            let message = match tokio::time::timeout_at(deadline, self.read_message()).await {
                Ok(message) => message?,
                Err(_) => return Ok(channels),
            };
            let Some(message) = message else {
                return Ok(channels);
            };
            match message.opcode {
                0x1 | 0x2 => {
                    if let Some((&channel, data)) = message.payload.split_first() {
                        channels.entry(channel).or_default().extend_from_slice(data);
                    }
                }
                0x9 => self.write_frame(0xA, &message.payload).await?,
                _ => {}
            }
        }
    }

    /// Sends a close frame; errors are irrelevant at that point.
    pub async fn close(&mut self) {
        let _ = self.write_frame(0x8, &[0x03, 0xE8]).await;
        let _ = self.stream.shutdown().await;
    }

    async fn write_frame(&mut self, opcode: u8, payload: &[u8]) -> Result<()> {
        let mut frame = vec![0x80 | opcode];
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

    async fn fill(&mut self, n: usize) -> Result<bool> {
        while self.buffered.len() < n {
            let mut chunk = [0u8; 16 * 1024];
            let read = self.stream.read(&mut chunk).await?;
            if read == 0 {
                return Ok(false);
            }
            self.buffered.extend_from_slice(&chunk[..read]);
        }
        Ok(true)
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        self.buffered.drain(..n).collect()
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
                let b = self.take(8);
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&b);
                len = u64::from_be_bytes(bytes);
            }
            let mask = if masked {
                if !self.fill(4).await? {
                    return Ok(None);
                }
                Some(self.take(4))
            } else {
                None
            };
            let len = usize::try_from(len).context("WebSocket frame too large")?;
            if !self.fill(len).await? {
                return Ok(None);
            }
            let mut data = self.take(len);
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

fn status_code(status_line: &str) -> Option<u16> {
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

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
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
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 0x3F) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (input, output) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), output);
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
}
