//! Reaching a port inside a pod (PortForward) from crius itself: no socat, no nsenter.
//!
//! Entering a network namespace changes the calling thread, so the connect happens on a
//! thread of its own that enters the pod's namespace, connects, and ends; the socket keeps
//! the namespace it was made in and is handed to tokio. A tokio worker never changes
//! namespace.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream as StdTcpStream};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::Duration;

use nix::sched::{setns, CloneFlags};
use tokio::net::TcpStream;

/// How long one connect may take (a port in a pod is local: this is generous).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `port` on the pod's loopback, IPv4 first, then IPv6. `netns` is the pod's
/// network namespace, or `None` for a host-network pod.
pub async fn dial(netns: Option<PathBuf>, port: u16) -> Result<TcpStream, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("crius-portfwd".into())
        .spawn(move || {
            let _ = tx.send(connect_in(netns.as_deref(), port));
        })
        .map_err(|e| format!("starting the port-forward thread: {e}"))?;
    let stream = rx
        .await
        .map_err(|_| "the port-forward thread ended without an answer".to_string())??;
    stream
        .set_nonblocking(true)
        .map_err(|e| format!("port-forward socket: {e}"))?;
    TcpStream::from_std(stream).map_err(|e| format!("port-forward socket: {e}"))
}

/// Runs on its own thread: enters `netns` (when given) and connects.
fn connect_in(netns: Option<&std::path::Path>, port: u16) -> Result<StdTcpStream, String> {
    if let Some(path) = netns {
        let file = std::fs::File::open(path).map_err(|e| {
            format!(
                "opening the pod's network namespace {}: {e}",
                path.display()
            )
        })?;
        setns(file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| {
            format!(
                "entering the pod's network namespace {}: {e}",
                path.display()
            )
        })?;
    }
    let mut errors = Vec::new();
    for ip in [Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()] {
        let addr = SocketAddr::new(ip, port);
        match StdTcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => errors.push(format!("{addr}: {e}")),
        }
    }
    Err(format!(
        "failed to connect to port {port} inside the pod: {}",
        errors.join("; ")
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn dials_the_hosts_loopback_for_a_host_network_pod() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"hello").await.unwrap();
        });
        let mut stream = dial(None, port).await.unwrap();
        let mut got = String::new();
        stream.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "hello");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_closed_port_and_a_missing_namespace_are_errors_naming_them() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = dial(None, port).await.unwrap_err();
        assert!(err.contains(&format!("port {port}")), "{err}");
        let err = dial(Some("/nonexistent/netns".into()), 80)
            .await
            .unwrap_err();
        assert!(err.contains("/nonexistent/netns"), "{err}");
    }
}
