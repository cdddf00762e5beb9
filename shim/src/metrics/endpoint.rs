//! The HTTP/1.1 endpoint on `metrics_address`: `GET /metrics`, nothing else.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use super::Format;
use crate::runtime::Crius;

/// A scraper that has not sent its request's head by then is disconnected.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The metrics address, bound but not yet answering (crius binds it before recovery, so a
/// busy address stops crius at once, and serves it once there is a store to count).
pub struct Endpoint {
    listener: TcpListener,
}

impl Endpoint {
    pub async fn bind(address: SocketAddr) -> anyhow::Result<Endpoint> {
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("binding metrics_address {address}"))?;
        Ok(Endpoint { listener })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve crius's metrics until the returned [`Serving`] is dropped.
    pub fn serve(self, crius: Arc<Crius>) -> Serving {
        self.serve_registry(super::registry_of(crius))
    }

    pub fn serve_registry(self, registry: Registry) -> Serving {
        if let Ok(address) = self.listener.local_addr() {
            tracing::info!(%address, "serving Prometheus metrics on /metrics");
        }
        Serving(tokio::spawn(accept(self.listener, Arc::new(registry))))
    }
}

/// The endpoint's task; dropping it closes the listener and every open connection.
pub struct Serving(JoinHandle<()>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn accept(listener: TcpListener, registry: Arc<Registry>) {
    // Owned here, so aborting this task aborts the connections too.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let registry = registry.clone();
                    connections.spawn(async move {
                        let service = service_fn(move |request| {
                            let response = answer(&request, &registry);
                            async move { Ok::<_, Infallible>(response) }
                        });
                        let served = http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(HEADER_READ_TIMEOUT)
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                        if let Err(e) = served {
                            tracing::debug!(error = %e, "metrics connection ended");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    tracing::warn!(error = %e, "accepting a metrics connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next() => {}
        }
    }
}

fn answer(request: &Request<Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    if request.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: metrics are at /metrics\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let format = Format::accepted(
        request
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    );
    match super::encode(registry, format) {
        Ok(text) => {
            let mut response = Response::new(Full::new(Bytes::from(text)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(format.content_type()),
            );
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "encoding the metrics");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n")
        }
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(address: SocketAddr, request: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn metrics_are_served_on_slash_metrics_and_nothing_else() {
        let endpoint = Endpoint::bind(([127, 0, 0, 1], 0).into()).await.unwrap();
        let address = endpoint.local_addr().unwrap();
        let serving =
            endpoint.serve_registry(crate::metrics::registry(crate::metrics::Objects::default));
        let metrics = get(
            address,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
        assert!(metrics.contains("content-type: text/plain; version=0.0.4"));
        assert!(metrics.contains("\ncrius_pod_sandboxes{state=\"ready\"} 0\n"));
        let elsewhere = get(
            address,
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(
            elsewhere.starts_with("HTTP/1.1 404 Not Found\r\n"),
            "{elsewhere}"
        );
        let post = get(
            address,
            "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(
            post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{post}"
        );
        drop(serving);
        // The abort lands at the task's next await; the port then refuses connections.
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(address).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the endpoint still accepts connections after it was dropped");
    }
}
