//! The streaming HTTP server: `/{exec,attach,portforward}/<token>`, upgraded to SPDY/3.1 or
//! WebSocket.
//!
//! SPDY's subprotocol is negotiated with `X-Stream-Protocol-Version` (one header per protocol
//! the client speaks, in its order of preference): none given is 400, none shared is 403 with
//! `X-Accepted-Stream-Protocol-Versions`. WebSocket's with `Sec-WebSocket-Protocol`.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use cri_api::v1 as cri;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::tokens::Pending;
use crate::runtime::Crius;
use crate::store::SandboxState;

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

const PROTOCOL_HEADER: &str = "x-stream-protocol-version";
const ACCEPTED_PROTOCOLS_HEADER: &str = "x-accepted-stream-protocol-versions";

/// Remote-command protocols over SPDY, newest first, with their version number.
pub const SPDY_REMOTE_COMMAND: &[(&str, u8)] = &[
    ("v4.channel.k8s.io", 4),
    ("v3.channel.k8s.io", 3),
    ("v2.channel.k8s.io", 2),
    ("channel.k8s.io", 1),
];
pub const SPDY_PORT_FORWARD: &[(&str, u8)] = &[("portforward.k8s.io", 1)];

pub struct Endpoint {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    url: String,
}

impl Endpoint {
    /// Binds `address`; with a certificate and key the server speaks TLS.
    pub async fn bind(
        address: SocketAddr,
        tls: Option<(PathBuf, PathBuf)>,
    ) -> anyhow::Result<Endpoint> {
        let tls = match tls {
            Some((cert, key)) => Some(super::tls::acceptor(&cert, &key)?),
            None => None,
        };
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("binding stream_address {address}"))?;
        let bound = listener.local_addr().context("stream_address")?;
        let url = base_url(bound, tls.is_some());
        Ok(Endpoint { listener, tls, url })
    }

    /// `http://host:port` (or `https://`) as URLs name it.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn serve(self, crius: Arc<Crius>) -> Serving {
        crius.streaming.set_base_url(self.url.clone());
        tracing::info!(url = %self.url, "serving exec, attach and port-forward");
        Serving(tokio::spawn(accept(self.listener, self.tls, crius)))
    }
}

/// The URL of a bound address. An unspecified address (`0.0.0.0`, `::`) is not one a client
/// can dial: URLs then name the loopback of the same family, which kubelet on the node
/// reaches.
fn base_url(bound: SocketAddr, tls: bool) -> String {
    let ip = match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{}", SocketAddr::new(ip, bound.port()))
}

/// Stops the server when dropped (sessions in progress run to their end).
pub struct Serving(JoinHandle<()>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn accept(listener: TcpListener, tls: Option<TlsAcceptor>, crius: Arc<Crius>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a streaming connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let crius = crius.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(stream)) => connection(stream, crius).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
                None => connection(stream, crius).await,
            }
        });
    }
}

async fn connection<S>(stream: S, crius: Arc<Crius>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let response = route(request, crius.clone());
        async move { Ok::<_, Infallible>(response) }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
    if let Err(e) = served {
        tracing::debug!(error = %e, "streaming connection ended");
    }
}

fn plain(status: StatusCode, text: impl Into<String>) -> Response<Full<Bytes>> {
    let mut text = text.into();
    text.push('\n');
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Answers one request; an accepted upgrade starts its session on a task of its own.
fn route(mut request: Request<Incoming>, crius: Arc<Crius>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    let mut segments = path.trim_start_matches('/').splitn(2, '/');
    let (Some(kind), Some(token)) = (segments.next(), segments.next()) else {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: streaming URLs are /exec/, /attach/ or /portforward/ and a token",
        );
    };
    if !matches!(kind, "exec" | "attach" | "portforward") {
        return plain(StatusCode::NOT_FOUND, format!("not found: {path}"));
    }
    let Some(pending) = crius.streaming.take(kind, token) else {
        return plain(
            StatusCode::NOT_FOUND,
            "unknown, used or expired streaming token: ask the CRI for a new URL",
        );
    };
    let upgrade = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let on_upgrade = hyper::upgrade::on(&mut request);
    if upgrade.split(',').any(|p| p.trim() == "spdy/3.1") {
        let served = match pending {
            Pending::PortForward(_) => SPDY_PORT_FORWARD,
            _ => SPDY_REMOTE_COMMAND,
        };
        let (name, version) = match negotiate_spdy(request.headers(), served) {
            Ok(chosen) => chosen,
            Err(refusal) => return refusal,
        };
        let crius = crius.clone();
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    super::spdy::serve(crius, pending, version, TokioIo::new(upgraded)).await
                }
                Err(e) => tracing::debug!(error = %e, "SPDY upgrade failed"),
            }
        });
        let mut response = switching("SPDY/3.1");
        response
            .headers_mut()
            .insert(PROTOCOL_HEADER, HeaderValue::from_static(name));
        return response;
    }
    if upgrade.split(',').any(|p| p.trim() == "websocket") {
        return websocket(
            request.headers(),
            request.uri().query(),
            pending,
            on_upgrade,
            crius,
        );
    }
    plain(
        StatusCode::BAD_REQUEST,
        "this URL must be upgraded to SPDY/3.1 or to a WebSocket",
    )
}

fn switching(protocol: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static(protocol));
    response
}

/// The client's protocols in order: every `X-Stream-Protocol-Version` header, each possibly
/// a comma-separated list.
fn offered(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

#[allow(clippy::result_large_err)]
fn negotiate_spdy(
    headers: &HeaderMap,
    served: &'static [(&'static str, u8)],
) -> Result<(&'static str, u8), Response<Full<Bytes>>> {
    let offered = offered(headers, PROTOCOL_HEADER);
    if offered.is_empty() {
        return Err(plain(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: the X-Stream-Protocol-Version header is required",
        ));
    }
    if let Some(chosen) = offered
        .iter()
        .find_map(|p| served.iter().find(|(name, _)| name == p).copied())
    {
        return Ok(chosen);
    }
    let mut refusal = plain(
        StatusCode::FORBIDDEN,
        format!(
            "unable to upgrade: none of the protocols {offered:?} is served here; served: {}",
            served
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    for (name, _) in served {
        refusal
            .headers_mut()
            .append(ACCEPTED_PROTOCOLS_HEADER, HeaderValue::from_static(name));
    }
    Err(refusal)
}

fn websocket(
    headers: &HeaderMap,
    query: Option<&str>,
    pending: Pending,
    on_upgrade: hyper::upgrade::OnUpgrade,
    crius: Arc<Crius>,
) -> Response<Full<Bytes>> {
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "a WebSocket upgrade needs Sec-WebSocket-Key",
        );
    };
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() != b"13")
    {
        let mut refusal = plain(
            StatusCode::BAD_REQUEST,
            "only WebSocket version 13 is served",
        );
        refusal.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return refusal;
    }
    let protocol = match super::ws::negotiate(
        &offered(headers, header::SEC_WEBSOCKET_PROTOCOL.as_str()),
        super::ws::protocols_for(&pending),
    ) {
        Ok(protocol) => protocol,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e),
    };
    let ports = match &pending {
        Pending::PortForward(request) => match ports_of(query, request) {
            Ok(ports) => ports,
            Err(e) => return plain(StatusCode::BAD_REQUEST, e),
        },
        _ => Vec::new(),
    };
    let accept = derive_accept_key(key.as_bytes());
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                super::ws::serve(crius, pending, protocol, ports, TokioIo::new(upgraded)).await
            }
            Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
        }
    });
    let mut response = switching("websocket");
    let headers = response.headers_mut();
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    if !protocol.name.is_empty() {
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(protocol.name),
        );
    }
    response
}

/// The `port` query parameters of a WebSocket port-forward (at least one), each one the
/// PortForward request allowed when it named ports.
fn ports_of(query: Option<&str>, request: &cri::PortForwardRequest) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for pair in query.unwrap_or_default().split('&') {
        let Some(value) = pair.strip_prefix("port=") else {
            continue;
        };
        for item in value.split(',').filter(|v| !v.is_empty()) {
            ports.push(check_port(item, request)?);
        }
    }
    if ports.is_empty() {
        return Err("a WebSocket port-forward names its ports in the query: ?port=N".to_string());
    }
    Ok(ports)
}

/// A port a client asked for: a number from 1 to 65535, and one of the request's ports when
/// the PortForward request named any.
pub fn check_port(text: &str, request: &cri::PortForwardRequest) -> Result<u16, String> {
    let port: u16 = text
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("port {text:?} is not a number from 1 to 65535"))?;
    if !request.port.is_empty() && !request.port.contains(&i32::from(port)) {
        return Err(format!(
            "port {port} was not among the ports of the PortForward request {:?}",
            request.port
        ));
    }
    Ok(port)
}

/// The network namespace of the request's pod: `None` for a host-network pod.
pub fn pod_netns(
    crius: &Crius,
    request: &cri::PortForwardRequest,
) -> Result<Option<PathBuf>, String> {
    let sandbox = crius
        .sandbox(&request.pod_sandbox_id)
        .map_err(|e| e.to_string())?;
    if sandbox.status().state != SandboxState::Ready {
        return Err(format!(
            "pod sandbox {:?} is not ready; cannot forward a port into it",
            sandbox.meta.id
        ));
    }
    Ok(sandbox.meta.netns_path.as_ref().map(PathBuf::from))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_dialable_address() {
        assert_eq!(
            base_url("0.0.0.0:10010".parse().unwrap(), false),
            "http://127.0.0.1:10010"
        );
        assert_eq!(base_url("[::]:5".parse().unwrap(), true), "https://[::1]:5");
        assert_eq!(
            base_url("10.1.2.3:80".parse().unwrap(), false),
            "http://10.1.2.3:80"
        );
    }

    #[test]
    fn spdy_negotiation_refuses_with_the_served_list() {
        let mut headers = HeaderMap::new();
        let refusal = negotiate_spdy(&headers, SPDY_REMOTE_COMMAND).unwrap_err();
        assert_eq!(refusal.status(), StatusCode::BAD_REQUEST);
        headers.append(
            PROTOCOL_HEADER,
            HeaderValue::from_static("v9.channel.k8s.io"),
        );
        let refusal = negotiate_spdy(&headers, SPDY_REMOTE_COMMAND).unwrap_err();
        assert_eq!(refusal.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            refusal
                .headers()
                .get_all(ACCEPTED_PROTOCOLS_HEADER)
                .iter()
                .count(),
            SPDY_REMOTE_COMMAND.len()
        );
        headers.append(
            PROTOCOL_HEADER,
            HeaderValue::from_static("v2.channel.k8s.io"),
        );
        headers.append(
            PROTOCOL_HEADER,
            HeaderValue::from_static("v4.channel.k8s.io"),
        );
        assert_eq!(
            negotiate_spdy(&headers, SPDY_REMOTE_COMMAND).unwrap(),
            ("v2.channel.k8s.io", 2),
            "the client's order of preference"
        );
    }

    #[test]
    fn forwarded_ports_are_checked_against_the_request() {
        let open = cri::PortForwardRequest {
            pod_sandbox_id: "p".into(),
            port: vec![],
        };
        assert_eq!(
            ports_of(Some("port=80&port=8080,9"), &open).unwrap(),
            vec![80, 8080, 9]
        );
        assert!(ports_of(Some("x=1"), &open).is_err());
        assert!(ports_of(Some("port=0"), &open).is_err());
        assert!(ports_of(Some("port=70000"), &open).is_err());
        let only_80 = cri::PortForwardRequest {
            pod_sandbox_id: "p".into(),
            port: vec![80],
        };
        assert!(ports_of(Some("port=81"), &only_80)
            .unwrap_err()
            .contains("81"));
    }
}
