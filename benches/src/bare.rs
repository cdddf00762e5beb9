//! What the same answer costs through the same gRPC stack when the server does nothing else.
//!
//! `ListContainers(bare)` takes the length of the endpoint's own unfiltered ListContainers
//! answer and has a gRPC server inside the bench send a message of that length (zeros, sent
//! from one shared buffer, never copied or encoded) to every call, over a unix socket, on a
//! runtime of its own with as many worker threads as CPUs (crius's runtime). The bench's
//! client is the one every endpoint gets, and the call is timed like `ListContainers(wire)`,
//! to the answer's last byte. Where `(floor)` tells what moving the bytes costs the machine,
//! this row tells what the client, HTTP/2 and the socket cost on top: the least any
//! endpoint could take for this answer with this client.

use std::convert::Infallible;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::BodyExt as _;
use tonic::body::Body;

use crate::measure::Latencies;
use crate::target::{self, Clients};

/// Serves a `message_len`-byte answer, times calls to it for `duration`, then stops the
/// server and removes its socket.
pub async fn measure(message_len: usize, duration: Duration) -> Result<(Latencies, Duration)> {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("crius-bench-bare-{}-{run}", std::process::id()));
    measure_in(&dir, message_len, duration).await
}

/// `measure` with the socket in `dir`, which is made and then removed with all it holds.
async fn measure_in(
    dir: &Path,
    message_len: usize,
    duration: Duration,
) -> Result<(Latencies, Duration)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let socket = dir.join("bare.sock");
    let measured = serve_and_measure(&socket, message_len, duration).await;
    if let Err(e) = std::fs::remove_dir_all(dir) {
        eprintln!("bench: removing {}: {e}", dir.display());
    }
    measured
}

async fn serve_and_measure(
    socket: &Path,
    message_len: usize,
    duration: Duration,
) -> Result<(Latencies, Duration)> {
    let server = Server::start(socket, message_len)?;
    let clients = Clients::connect(&format!("unix://{}", socket.display())).await?;
    let mut latencies = Latencies::new();
    let begin = Instant::now();
    let mut calls = 0;
    while begin.elapsed() < duration || calls < 3 {
        let t = Instant::now();
        let len = target::list_containers_len(&clients).await.map_err(|s| {
            anyhow::anyhow!(
                "ListContainers from the bare server (call {calls}): {}",
                target::status_text(&s)
            )
        })?;
        latencies.record(t.elapsed());
        anyhow::ensure!(
            len == message_len,
            "the bare server's answer was {len} bytes, not {message_len}"
        );
        calls += 1;
    }
    let elapsed = begin.elapsed();
    drop(clients);
    drop(server);
    Ok((latencies, elapsed))
}

/// The bare server's runtime; dropping it stops the server without waiting for it, as it
/// may be dropped on one of the bench's own async tasks.
struct Server {
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Server {
    fn start(socket: &Path, message_len: usize) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("bare-server")
            .enable_all()
            .build()
            .context("starting the bare server's runtime")?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::UnixListener::bind(socket)
                .with_context(|| format!("binding {}", socket.display()))?
        };
        let answer = Answer::new(message_len)?;
        let socket: PathBuf = socket.to_owned();
        runtime.spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(answer)
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
                .await;
            if let Err(e) = served {
                eprintln!("bench: the bare server on {}: {e}", socket.display());
            }
        });
        Ok(Self {
            runtime: Some(runtime),
        })
    }
}

/// Answers every call with one gRPC message of zeros and an OK status.
#[derive(Clone)]
struct Answer {
    /// The gRPC frame (flag and length) and the message, in one buffer shared by every call.
    framed: Bytes,
}

impl Answer {
    fn new(message_len: usize) -> Result<Self> {
        let len = u32::try_from(message_len).context("the answer is too long for gRPC")?;
        let mut framed = BytesMut::with_capacity(5 + message_len);
        framed.put_u8(0);
        framed.put_u32(len);
        framed.resize(5 + message_len, 0);
        Ok(Self {
            framed: framed.freeze(),
        })
    }

    fn response(&self) -> http::Response<Body> {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let frames = [
            http_body::Frame::data(self.framed.clone()),
            http_body::Frame::trailers(trailers),
        ]
        .map(Ok::<_, Infallible>);
        let body = http_body_util::StreamBody::new(tokio_stream::iter(frames));
        let mut response = http::Response::new(Body::new(body));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        response
    }
}

impl tonic::server::NamedService for Answer {
    const NAME: &'static str = "runtime.v1.RuntimeService";
}

impl tower::Service<http::Request<Body>> for Answer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let answer = self.clone();
        Box::pin(async move {
            let path = request.uri().path().to_string();
            // The request is read to its end, as an endpoint reads it, though the answer does
            // not depend on it: a server that answers before the request's end has HTTP/2
            // reset the request stream, and a client still reading a long answer may take
            // that reset as an error on the answer.
            if let Err(e) = request.into_body().collect().await {
                return Ok(tonic::Status::internal(format!("reading the request: {e}")).into_http());
            }
            // ListContainers is the one method the bare server has, so the client sends exactly
            // what it sends an endpoint; any other path is a mistake in the bench, answered as
            // gRPC answers an unknown method.
            Ok(if path == target::LIST_CONTAINERS_PATH {
                answer.response()
            } else {
                tonic::Status::unimplemented(path).into_http()
            })
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_get_an_answer_of_the_asked_length_and_are_timed() {
        let dir = tempfile::tempdir().unwrap();
        let socket_dir = dir.path().join("bare");
        let (latencies, elapsed) = measure_in(&socket_dir, 300_000, Duration::from_millis(100))
            .await
            .unwrap();
        let row = latencies.row(0, "x", "ListContainers(bare)", elapsed);
        assert!(elapsed >= Duration::from_millis(100), "{elapsed:?}");
        assert!(row.count >= 3, "{}", row.count);
        assert_eq!(row.errors, 0);
        assert!(row.p50_us > 0.0 && row.p99_us >= row.p50_us, "{row:?}");
        assert!(
            !socket_dir.exists(),
            "{} is left behind",
            socket_dir.display()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_empty_answer_is_one_empty_message() {
        let (latencies, _) = measure(0, Duration::from_millis(20)).await.unwrap();
        assert!(latencies.row(0, "x", "b", Duration::from_millis(20)).count >= 3);
    }
}
