//! crius's streaming server against a real crius on a private containerd, for what the
//! conformance suite cannot compare with containerd's CRI: TLS with a self-signed
//! certificate, 100 MiB through an exec with crius's memory watched, and an attach to a
//! container that outlived a crius restart. Needs root and the packages from
//! `scripts/install-deps`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use conformance::harness::containerd::{Containerd, ContainerdOptions};
use conformance::harness::crius::Crius;
use conformance::harness::images::Images;
use conformance::harness::pods;
use conformance::runner::connect;
use cri_api::v1 as cri;
use cri_api::v1::runtime_service_client::RuntimeServiceClient;

type Runtime = RuntimeServiceClient<tonic::transport::Channel>;
use futures::{SinkExt, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

const BUSYBOX: &str = "localhost/crius/busybox:1";

/// Output of a remote command over the v4 channel protocol.
#[derive(Debug, Default)]
struct Collected {
    stdout_len: u64,
    stdout_sha256: String,
    stdout_head: Vec<u8>,
    status: String,
}

/// Runs the WebSocket side of an exec/attach URL over `io` until the server closes; feeds
/// `stdin` first (v5 close after it when `close_stdin`).
async fn ws_session<S>(url: &str, io: S, protocol: &str, stdin: Option<&[u8]>) -> Result<Collected>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(protocol)?);
    let (mut socket, response) = tokio_tungstenite::client_async(request, io)
        .await
        .with_context(|| format!("WebSocket upgrade of {url}"))?;
    ensure!(
        response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.as_bytes())
            == Some(protocol.as_bytes()),
        "the server did not choose {protocol}: {:?}",
        response.headers()
    );
    if let Some(data) = stdin {
        let mut message = vec![0u8];
        message.extend_from_slice(data);
        socket.send(Message::binary(message)).await?;
        socket.send(Message::binary(vec![255u8, 0])).await?;
    }
    let mut hasher = Sha256::new();
    let mut out = Collected::default();
    while let Some(message) = socket.next().await {
        let data = match message? {
            Message::Binary(data) => data,
            Message::Close(_) => break,
            _ => continue,
        };
        let Some((&channel, payload)) = data.split_first() else {
            continue;
        };
        match channel {
            1 => {
                hasher.update(payload);
                out.stdout_len += payload.len() as u64;
                if out.stdout_head.len() < 256 {
                    out.stdout_head.extend_from_slice(payload);
                }
            }
            3 => out.status.push_str(&String::from_utf8_lossy(payload)),
            _ => {}
        }
    }
    out.stdout_sha256 = hex::encode(hasher.finalize());
    Ok(out)
}

async fn exec_url(rt: &mut Runtime, container: &str, cmd: &[&str], stdin: bool) -> Result<String> {
    Ok(rt
        .exec(cri::ExecRequest {
            container_id: container.to_string(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            stdin,
            stdout: true,
            stderr: true,
            tty: false,
        })
        .await?
        .into_inner()
        .url)
}

fn host_port(url: &str) -> Result<String> {
    let rest = url
        .split_once("://")
        .map(|(_, rest)| rest)
        .context("URL without a scheme")?;
    Ok(rest.split('/').next().unwrap_or_default().to_string())
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

/// A self-signed certificate for 127.0.0.1 made by the openssl command.
fn self_signed(dir: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let cert = dir.join("stream.crt");
    let key = dir.join("stream.key");
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=crius-stream"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        // An end-entity certificate: webpki refuses a CA as the server's own.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .context("running openssl")?;
    ensure!(
        made.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    Ok((cert, key))
}

struct Node {
    _containerd: Containerd,
    crius: Crius,
    rt: Runtime,
    pod: String,
    _logs: tempfile::TempDir,
    sandbox_config: cri::PodSandboxConfig,
}

async fn node(name: &str, args: &[&str]) -> Result<Node> {
    let containerd = Containerd::start(ContainerdOptions::default())?;
    Images::get()?.import(&containerd, "crius", BUSYBOX)?;
    let crius = Crius::start(None, containerd.socket(), args)?;
    crius.write_cni_conflist(&format!("crius-{name}"), None)?;
    let channel = connect::channel(&crius.endpoint()).await?;
    let mut rt = connect::runtime_client(channel);
    conformance::reference::wait_network_ready(&mut rt).await?;
    let logs = tempfile::tempdir()?;
    let sandbox_config = pods::pod_config(name, "streaming", logs.path());
    let pod = pods::run_pod(&mut rt, &sandbox_config).await?;
    Ok(Node {
        _containerd: containerd,
        crius,
        rt,
        pod,
        _logs: logs,
        sandbox_config,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_self_signed_certificate() -> Result<()> {
    let certs = tempfile::tempdir()?;
    let (cert, key) = self_signed(certs.path())?;
    let cert_arg = cert.display().to_string();
    let key_arg = key.display().to_string();
    let mut node = node(
        "tls",
        &["--stream-tls-cert", &cert_arg, "--stream-tls-key", &key_arg],
    )
    .await?;
    let container = pods::create_and_start(
        &mut node.rt,
        &node.pod,
        &node.sandbox_config,
        pods::container_config("sleeper", BUSYBOX, &["sleep", "600"]),
    )
    .await?;
    let url = exec_url(&mut node.rt, &container, &["cat"], true).await?;
    ensure!(url.starts_with("https://127.0.0.1:"), "an https URL: {url}");

    // A client that trusts the certificate gets through.
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&cert)?;
    for der in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
        roots.add(der?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(host_port(&url)?).await?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?.to_owned();
    let tls = connector.connect(name.clone(), tcp).await?;
    let ws_url = url.replacen("https://", "wss://", 1);
    let got = ws_session(&ws_url, tls, "v5.channel.k8s.io", Some(b"over tls\n")).await?;
    ensure!(
        got.stdout_head == b"over tls\n",
        "stdout over TLS: {:?}",
        String::from_utf8_lossy(&got.stdout_head)
    );
    ensure!(got.status.contains("Success"), "status: {}", got.status);

    // Plain HTTP on the TLS port is not served.
    let url = exec_url(&mut node.rt, &container, &["true"], false).await?;
    let tcp = tokio::net::TcpStream::connect(host_port(&url)?).await?;
    let plain = url.replacen("https://", "ws://", 1);
    ensure!(
        ws_session(&plain, tcp, "v4.channel.k8s.io", None)
            .await
            .is_err(),
        "a plain-text upgrade on the TLS port must fail"
    );
    node.crius.shutdown()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_mib_through_exec_stdout_with_crius_memory_bounded() -> Result<()> {
    let mut node = node("bulk", &[]).await?;
    let pid = node.crius.pid().context("crius's pid")?;
    let container = pods::create_and_start(
        &mut node.rt,
        &node.pod,
        &node.sandbox_config,
        pods::container_config("sleeper", BUSYBOX, &["sleep", "600"]),
    )
    .await?;
    // 100 MiB of a repeating 64-byte pattern, made in the container.
    const SIZE: u64 = 100 * 1024 * 1024;
    let script =
        "yes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXY | head -c 104857600";
    let url = exec_url(&mut node.rt, &container, &["sh", "-c", script], false).await?;
    let baseline = rss_kib(pid)?;
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(baseline));
    let sampling = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(rss) = rss_kib(pid) {
                    peak.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let started = Instant::now();
    let tcp = tokio::net::TcpStream::connect(host_port(&url)?).await?;
    let got = ws_session(
        &url.replacen("http://", "ws://", 1),
        tcp,
        "v4.channel.k8s.io",
        None,
    )
    .await?;
    let elapsed = started.elapsed();
    sampling.abort();
    let mut expected = Sha256::new();
    let line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXY\n";
    let mut left = SIZE as usize;
    while left > 0 {
        let n = left.min(line.len());
        expected.update(&line[..n]);
        left -= n;
    }
    ensure!(
        got.stdout_len == SIZE,
        "received {} of {SIZE} bytes",
        got.stdout_len
    );
    ensure!(
        got.stdout_sha256 == hex::encode(expected.finalize()),
        "the 100 MiB arrived altered"
    );
    ensure!(got.status.contains("Success"), "status: {}", got.status);
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    let grown = peak.saturating_sub(baseline);
    let mib_s = SIZE as f64 / 1048576.0 / elapsed.as_secs_f64();
    eprintln!(
        "100 MiB through exec stdout in {elapsed:.2?} ({mib_s:.0} MiB/s); crius RSS {baseline} KiB before, peak {peak} KiB (+{grown} KiB)"
    );
    let report = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ci");
    let _ = std::fs::create_dir_all(&report);
    let _ = std::fs::write(
        report.join("streaming-bulk.txt"),
        format!("100 MiB exec stdout over WebSocket: {elapsed:.2?}, {mib_s:.0} MiB/s, crius RSS +{grown} KiB at peak (baseline {baseline} KiB)\n"),
    );
    ensure!(
        grown < 32 * 1024,
        "crius's RSS grew {grown} KiB (limit 32 MiB) while 100 MiB went through"
    );
    node.crius.shutdown()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_works_on_a_container_that_outlived_a_crius_restart() -> Result<()> {
    let mut node = node("restart", &[]).await?;
    let mut config = pods::container_config(
        "reader",
        BUSYBOX,
        &["sh", "-c", "while read line; do echo \"got $line\"; done"],
    );
    config.stdin = true;
    let container =
        pods::create_and_start(&mut node.rt, &node.pod, &node.sandbox_config, config).await?;
    node.crius.restart()?;
    let channel = connect::channel(&node.crius.endpoint()).await?;
    node.rt = connect::runtime_client(channel);
    let url = node
        .rt
        .attach(cri::AttachRequest {
            container_id: container.clone(),
            stdin: true,
            tty: false,
            stdout: true,
            stderr: false,
        })
        .await?
        .into_inner()
        .url;
    let tcp = tokio::net::TcpStream::connect(host_port(&url)?).await?;
    let mut request = url.replacen("http://", "ws://", 1).into_client_request()?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("v4.channel.k8s.io"),
    );
    let (mut socket, _) = tokio_tungstenite::client_async(request, tcp).await?;
    socket
        .send(Message::binary(b"\x00after restart\n".to_vec()))
        .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stdout = Vec::new();
    while !String::from_utf8_lossy(&stdout).contains("got after restart") {
        let Ok(Some(message)) = tokio::time::timeout_at(deadline.into(), socket.next()).await
        else {
            bail!(
                "no echo through the attach within 10 s; stdout so far {:?}",
                String::from_utf8_lossy(&stdout)
            );
        };
        if let Message::Binary(data) = message? {
            if data.first() == Some(&1) {
                stdout.extend_from_slice(&data[1..]);
            }
        }
    }
    let _ = socket.close(None).await;
    // The log file kept being written while attached.
    let status = node
        .rt
        .container_status(cri::ContainerStatusRequest {
            container_id: container,
            verbose: false,
        })
        .await?
        .into_inner()
        .status
        .context("status")?;
    let log = std::fs::read_to_string(&status.log_path)?;
    ensure!(
        log.contains("got after restart"),
        "the CRI log misses the attached output: {log:?}"
    );
    node.crius.shutdown()?;
    Ok(())
}
