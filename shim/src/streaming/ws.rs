//! The WebSocket wire: Kubernetes' channel protocols.
//!
//! Every message carries one channel's bytes behind a channel byte: binary messages for
//! `channel.k8s.io`, `v4.channel.k8s.io` and `v5.channel.k8s.io`; text messages with the
//! channel as an ASCII digit and base64 payload for the `base64.` variants. Remote command:
//! 0 stdin, 1 stdout, 2 stderr, 3 error (the status), 4 resize. v5 adds a close message,
//! channel 255 with the channel to close (how a client ends stdin). Port-forward: channels
//! `2i` (data) and `2i+1` (error) for the `i`th `port` of the query, each opened by the server
//! with the port as two bytes, little endian.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::session::{self, Channels, TermSize};
use super::status::{error_stream_payload, Ended};
use super::tokens::Pending;
use crate::runtime::Crius;

/// Largest message a client may send (stdin chunks and resizes are small).
const MAX_MESSAGE: usize = 1 << 20;

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
/// v5: "close this channel".
const CLOSE: u8 = 255;

/// A negotiated channel protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsProtocol {
    pub name: &'static str,
    pub base64: bool,
    /// 1 for the unversioned protocols, else 4 or 5.
    pub version: u8,
}

const REMOTE_COMMAND: &[WsProtocol] = &[
    WsProtocol {
        name: "v5.channel.k8s.io",
        base64: false,
        version: 5,
    },
    WsProtocol {
        name: "v4.channel.k8s.io",
        base64: false,
        version: 4,
    },
    WsProtocol {
        name: "v4.base64.channel.k8s.io",
        base64: true,
        version: 4,
    },
    WsProtocol {
        name: "channel.k8s.io",
        base64: false,
        version: 1,
    },
    WsProtocol {
        name: "base64.channel.k8s.io",
        base64: true,
        version: 1,
    },
];

/// Port-forward: the same but v5 (there is nothing to half-close).
const PORT_FORWARD: &[WsProtocol] = REMOTE_COMMAND.split_at(1).1;

/// What a client offering no subprotocol gets.
const UNNAMED: WsProtocol = WsProtocol {
    name: "",
    base64: false,
    version: 1,
};

/// The protocols served for a route.
pub fn protocols_for(pending: &Pending) -> &'static [WsProtocol] {
    match pending {
        Pending::PortForward(_) => PORT_FORWARD,
        _ => REMOTE_COMMAND,
    }
}

/// Picks the first protocol the client offers that the route serves: `Ok(None)`-like
/// [`UNNAMED`] when it offers none, `Err` with what is served when none is shared.
pub fn negotiate(offered: &[String], served: &'static [WsProtocol]) -> Result<WsProtocol, String> {
    if offered.is_empty() {
        return Ok(UNNAMED);
    }
    offered
        .iter()
        .find_map(|name| served.iter().find(|p| p.name == name.as_str()).copied())
        .ok_or_else(|| {
            format!(
                "none of the WebSocket subprotocols {offered:?} is served here; this URL serves {}",
                served.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
            )
        })
}

fn encode(protocol: WsProtocol, channel: u8, data: &[u8]) -> Message {
    if protocol.base64 {
        let mut text = String::with_capacity(1 + data.len().div_ceil(3) * 4);
        text.push(char::from(b'0' + channel));
        base64::engine::general_purpose::STANDARD.encode_string(data, &mut text);
        Message::text(text)
    } else {
        let mut bytes = Vec::with_capacity(1 + data.len());
        bytes.push(channel);
        bytes.extend_from_slice(data);
        Message::binary(bytes)
    }
}

/// A client message as (channel, payload); `None` for what carries no channel data.
fn decode(protocol: WsProtocol, message: Message) -> Result<Option<(u8, Bytes)>, String> {
    match message {
        Message::Binary(bytes) if !protocol.base64 => {
            Ok((!bytes.is_empty()).then(|| (bytes[0], bytes.slice(1..))))
        }
        Message::Text(text) if protocol.base64 => {
            let text = text.as_str();
            let Some(first) = text.bytes().next() else {
                return Ok(None);
            };
            if !first.is_ascii_digit() {
                return Err(format!("base64 message on channel {:?}", char::from(first)));
            }
            let payload = base64::engine::general_purpose::STANDARD
                .decode(&text[1..])
                .map_err(|e| format!("a base64 message does not decode: {e}"))?;
            Ok(Some((first - b'0', Bytes::from(payload))))
        }
        Message::Binary(_) | Message::Text(_) => Err(format!(
            "{} message on the {:?} protocol",
            if protocol.base64 { "binary" } else { "text" },
            protocol.name
        )),
        _ => Ok(None),
    }
}

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// Runs a session on an upgraded connection.
pub async fn serve<S>(
    crius: Arc<Crius>,
    pending: Pending,
    protocol: WsProtocol,
    ports: Vec<u16>,
    io: S,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config())).await;
    let (mut sink, mut stream) = socket.split();
    let gone = CancellationToken::new();
    // One writer: everything the server sends goes through this bounded queue, in order.
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(16);
    let writer_gone = gone.clone();
    let writer = tokio::spawn(async move {
        while let Some(message) = out_rx.recv().await {
            if sink.send(message).await.is_err() {
                writer_gone.cancel();
                return;
            }
        }
        let _ = sink.send(Message::Close(None)).await;
        let _ = sink.close().await;
    });
    match pending {
        Pending::Exec(_) | Pending::Attach(_) => {
            let (stdin, tty) = match &pending {
                Pending::Exec(r) => (r.stdin, r.tty),
                Pending::Attach(r) => (r.stdin, r.tty),
                Pending::PortForward(_) => (false, false),
            };
            let (stdout, stderr) = match &pending {
                Pending::Exec(r) => (r.stdout, r.stderr),
                Pending::Attach(r) => (r.stdout, r.stderr),
                Pending::PortForward(_) => (false, false),
            };
            let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(8);
            let (resize_tx, resize_rx) = mpsc::channel::<TermSize>(4);
            let reader_gone = gone.clone();
            let reader = tokio::spawn(async move {
                let mut stdin_tx = stdin.then_some(stdin_tx);
                let resize_tx = tty.then_some(resize_tx);
                while let Some(Ok(message)) = stream.next().await {
                    if matches!(message, Message::Close(_)) {
                        break;
                    }
                    let (channel, data) = match decode(protocol, message) {
                        Ok(Some(item)) => item,
                        Ok(None) => continue,
                        Err(e) => {
                            tracing::debug!(error = %e, "bad WebSocket message; closing");
                            break;
                        }
                    };
                    match channel {
                        STDIN => {
                            if let Some(tx) = &stdin_tx {
                                if !data.is_empty() && tx.send(data).await.is_err() {
                                    stdin_tx = None;
                                }
                            }
                        }
                        RESIZE => {
                            if let (Some(tx), Some(size)) = (&resize_tx, parse_resize(&data)) {
                                let _ = tx.send(size).await;
                            }
                        }
                        CLOSE if protocol.version >= 5 && data.first() == Some(&STDIN) => {
                            stdin_tx = None;
                        }
                        _ => {}
                    }
                }
                reader_gone.cancel();
            });
            let (stdout_tx, stdout_rx) = mpsc::channel::<Bytes>(4);
            let (stderr_tx, stderr_rx) = mpsc::channel::<Bytes>(4);
            let channels = Channels {
                stdin: stdin.then_some(stdin_rx),
                stdout: stdout.then_some(stdout_tx),
                stderr: stderr.then_some(stderr_tx),
                resize: tty.then_some(resize_rx),
                gone: gone.clone(),
            };
            let session = async {
                match &pending {
                    Pending::Exec(r) => session::exec(&crius, r, channels).await,
                    Pending::Attach(r) => session::attach(&crius, r, channels).await,
                    Pending::PortForward(_) => Ended::Failed("not a remote command".into()),
                }
            };
            let (ended, (), ()) = tokio::join!(
                session,
                forward(stdout_rx, STDOUT, protocol, &out_tx),
                forward(stderr_rx, STDERR, protocol, &out_tx),
            );
            if let Some(payload) = error_stream_payload(protocol.version, &ended) {
                let _ = out_tx.send(encode(protocol, ERROR, &payload)).await;
            }
            drop(out_tx);
            let _ = writer.await;
            reader.abort();
        }
        Pending::PortForward(_) => {
            port_forward(&crius, &pending, protocol, ports, stream, out_tx, gone).await;
            let _ = writer.await;
        }
    }
}

/// Moves one output queue onto the wire, until the session drops its end.
async fn forward(
    mut rx: mpsc::Receiver<Bytes>,
    channel: u8,
    protocol: WsProtocol,
    out: &mpsc::Sender<Message>,
) {
    while let Some(chunk) = rx.recv().await {
        if out.send(encode(protocol, channel, &chunk)).await.is_err() {
            return;
        }
    }
}

/// `{"Width":w,"Height":h}`; anything else is ignored.
pub fn parse_resize(data: &[u8]) -> Option<TermSize> {
    #[derive(serde::Deserialize)]
    struct Size {
        #[serde(rename = "Width")]
        width: u16,
        #[serde(rename = "Height")]
        height: u16,
    }
    let size: Size = serde_json::from_slice(data).ok()?;
    Some(TermSize {
        width: size.width,
        height: size.height,
    })
}

type WsReader<S> = futures::stream::SplitStream<WebSocketStream<S>>;

/// Port-forward: one connection into the pod per requested port, for the session's life.
async fn port_forward<S>(
    crius: &Arc<Crius>,
    pending: &Pending,
    protocol: WsProtocol,
    ports: Vec<u16>,
    mut stream: WsReader<S>,
    out: mpsc::Sender<Message>,
    gone: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Pending::PortForward(request) = pending else {
        return;
    };
    let netns = match super::server::pod_netns(crius, request) {
        Ok(netns) => netns,
        Err(message) => {
            let _ = out.send(encode(protocol, 1, message.as_bytes())).await;
            return;
        }
    };
    // Each port: announce both channels, then connect.
    let mut writers = Vec::new();
    let mut copies = tokio::task::JoinSet::new();
    for (index, port) in ports.iter().copied().enumerate() {
        let (data, error) = channels_of(index);
        for channel in [data, error] {
            if out
                .send(encode(protocol, channel, &port.to_le_bytes()))
                .await
                .is_err()
            {
                return;
            }
        }
        match super::dial::dial(netns.clone(), port).await {
            Ok(tcp) => {
                let (mut read, write) = tcp.into_split();
                writers.push(Some(write));
                let out = out.clone();
                copies.spawn(async move {
                    let mut buf = vec![0u8; 32 * 1024];
                    while let Ok(n) = read.read(&mut buf).await {
                        if n == 0 || out.send(encode(protocol, data, &buf[..n])).await.is_err() {
                            break;
                        }
                    }
                });
            }
            Err(message) => {
                tracing::debug!(port, error = %message, "port-forward connect failed");
                writers.push(None);
                let _ = out.send(encode(protocol, error, message.as_bytes())).await;
            }
        }
    }
    if copies.is_empty() {
        return;
    }
    // Client data goes to its port's connection; the session ends when the client leaves or
    // every pod-side connection has ended.
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(Ok(message)) = message else { break };
                if matches!(message, Message::Close(_)) {
                    break;
                }
                let Ok(Some((channel, data))) = decode(protocol, message) else { continue };
                let index = usize::from(channel / 2);
                if channel % 2 != 0 || data.is_empty() {
                    continue;
                }
                if let Some(Some(writer)) = writers.get_mut(index) {
                    if writer.write_all(&data).await.is_err() {
                        writers[index] = None;
                    }
                }
            }
            joined = copies.join_next() => {
                if joined.is_none() {
                    break;
                }
                if copies.is_empty() {
                    break;
                }
            }
            () = gone.cancelled() => break,
        }
    }
    copies.abort_all();
}

/// The data and error channels of the `index`th port.
fn channels_of(index: usize) -> (u8, u8) {
    let data = u8::try_from(index * 2).unwrap_or(u8::MAX - 1);
    (data, data.saturating_add(1))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_the_clients_order_and_names_what_is_served() {
        let offered = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            negotiate(
                &offered(&["v4.channel.k8s.io", "v5.channel.k8s.io"]),
                REMOTE_COMMAND
            )
            .unwrap()
            .version,
            4
        );
        assert_eq!(negotiate(&[], REMOTE_COMMAND).unwrap(), UNNAMED);
        let err = negotiate(&offered(&["v5.channel.k8s.io"]), PORT_FORWARD).unwrap_err();
        assert!(err.contains("v4.channel.k8s.io"), "{err}");
    }

    #[test]
    fn messages_round_trip_in_binary_and_base64() {
        for protocol in [REMOTE_COMMAND[1], REMOTE_COMMAND[2]] {
            let message = encode(protocol, STDERR, b"\x00hello\xff");
            let (channel, data) = decode(protocol, message).unwrap().unwrap();
            assert_eq!((channel, &data[..]), (STDERR, &b"\x00hello\xff"[..]));
        }
        let text = encode(REMOTE_COMMAND[2], STDOUT, b"hi");
        assert_eq!(text, Message::text("1aGk="));
        assert!(decode(REMOTE_COMMAND[1], Message::text("0aGk=")).is_err());
        assert!(decode(REMOTE_COMMAND[2], Message::text("xaGk=")).is_err());
        assert!(decode(REMOTE_COMMAND[2], Message::text("0!!")).is_err());
        assert_eq!(
            decode(REMOTE_COMMAND[1], Message::binary(Vec::new())).unwrap(),
            None
        );
    }

    #[test]
    fn resize_messages_are_parsed_and_junk_is_ignored() {
        assert_eq!(
            parse_resize(br#"{"Width":100,"Height":40}"#),
            Some(TermSize {
                width: 100,
                height: 40
            })
        );
        assert_eq!(parse_resize(b"{}"), None);
        assert_eq!(parse_resize(br#"{"Width":-1,"Height":4}"#), None);
    }
}
