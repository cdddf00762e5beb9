//! `[streaming] SPDY: …`: exec, attach and port-forward over SPDY/3.1, the protocol kubelet
//! and kubectl speak to a runtime's streaming server (`runner::spdy`), and its protocol
//! version negotiation. The reference's server is the Kubernetes Go implementation, so these
//! cases pin the wire behaviour kubelet relies on.

use std::time::Instant;

use futures::future::join_all;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::prelude::*;
use crate::runner::spdy::{
    self, read_all, remote_command, RemoteOpts, RemoteResult, Session, Upgrade,
};

pub fn cases() -> Vec<Case> {
    use Group::Streaming as G;
    vec![
        case!(
            G,
            "SPDY: exec echoes stdin to stdout, and half-closing stdin ends the command",
            [Exec],
            exec_stdin_echo
        ),
        case!(
            G,
            "SPDY: exec keeps stdout and stderr apart, and a successful exit is a Success status",
            [Exec],
            exec_stdout_stderr
        ),
        case!(
            G,
            "SPDY: exit code 3 is a Failure status with reason NonZeroExitCode and cause ExitCode 3",
            [Exec],
            exec_exit_code
        ),
        case!(
            G,
            "SPDY: exec with a tty sees a resize in `stty size`",
            [Exec],
            exec_tty_resize
        ),
        case!(
            G,
            "SPDY: attach delivers stdin to a stdin_once container, and half-closing it ends the container",
            [Attach, ContainerStatus],
            attach_stdin_once
        ),
        case!(
            G,
            "SPDY: port-forward reaches an HTTP server in the pod, twice on one connection",
            [PortForward],
            port_forward_http
        ),
        case!(
            G,
            "SPDY: an upgrade without X-Stream-Protocol-Version is refused with 400",
            [Exec],
            upgrade_without_version
        ),
        case!(
            G,
            "SPDY: an upgrade offering only unknown versions is refused with 403 and the accepted versions",
            [Exec],
            upgrade_unknown_versions
        ),
        case!(
            G,
            "SPDY: 100 MiB of exec stdout arrive intact",
            [Exec],
            exec_bulk_stdout
        )
        .timeout_secs(240),
        case!(
            G,
            "SPDY: 100 concurrent exec sessions all complete with their own output",
            [Exec],
            exec_concurrent
        )
        .timeout_secs(180),
    ]
}

const SESSION_WITHIN: Duration = Duration::from_secs(30);

fn exec_request(container: &str, cmd: &[&str], opts: RemoteOpts) -> cri::ExecRequest {
    cri::ExecRequest {
        container_id: container.to_owned(),
        cmd: strings(cmd),
        tty: opts.tty,
        stdin: opts.stdin,
        stdout: opts.stdout,
        stderr: opts.stderr,
    }
}

/// Exec of `cmd` in `container` with the streams of `opts`, over SPDY.
async fn exec_session(
    ctx: &Ctx,
    container: &str,
    cmd: &[&str],
    opts: RemoteOpts,
) -> Result<Session> {
    let response = call("Exec", ctx.rt().exec(exec_request(container, cmd, opts))).await?;
    let session = remote_command(&response.url, opts).await?;
    ensure_eq!(
        session.protocol.as_str(),
        "v4.channel.k8s.io",
        "X-Stream-Protocol-Version chosen from v4, v3, v2 and channel.k8s.io"
    );
    Ok(session)
}

const OUT_AND_ERR: RemoteOpts = RemoteOpts {
    stdin: false,
    stdout: true,
    stderr: true,
    tty: false,
};

/// Runs `cmd` in a new sleeper container with stdout and stderr, to its end.
async fn exec_to_end(ctx: &Ctx, cmd: &[&str]) -> Result<RemoteResult> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let session = exec_session(ctx, &container.id, cmd, OUT_AND_ERR).await?;
    session.finish(SESSION_WITHIN).await
}

fn ensure_success(result: &RemoteResult) -> Result<()> {
    let status = result.status()?;
    ensure!(
        status.status == "Success",
        "the error stream's status: expected Success, got {:?}",
        result.status_json
    );
    Ok(())
}

async fn exec_stdin_echo(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let opts = RemoteOpts {
        stdin: true,
        ..OUT_AND_ERR
    };
    let mut session = exec_session(&ctx, &container.id, &["cat"], opts).await?;
    session.write_stdin(b"through spdy stdin\n").await?;
    session
        .write_stdin(b"and a last line without newline")
        .await?;
    // `cat` only ends when its stdin does: the half-close must reach it.
    session.close_stdin().await?;
    let result = session.finish(SESSION_WITHIN).await?;
    ensure_eq!(
        result.stdout_text().as_str(),
        "through spdy stdin\nand a last line without newline",
        "stdout of cat"
    );
    ensure_success(&result)?;
    pass()
}

async fn exec_stdout_stderr(ctx: Ctx) -> Result<Outcome> {
    let result = exec_to_end(
        &ctx,
        &["sh", "-c", "echo to-out; echo to-err >&2; echo more-out"],
    )
    .await?;
    ensure_eq!(
        (result.stdout_text().as_str(), result.stderr_text().as_str()),
        ("to-out\nmore-out\n", "to-err\n"),
        "(stdout, stderr)"
    );
    ensure_success(&result)?;
    pass()
}

async fn exec_exit_code(ctx: Ctx) -> Result<Outcome> {
    let result = exec_to_end(&ctx, &["sh", "-c", "echo before-exit; exit 3"]).await?;
    ensure_eq!(result.stdout_text().as_str(), "before-exit\n", "stdout");
    let status = result.status()?;
    ensure_eq!(
        (
            status.status.as_str(),
            status.reason.as_str(),
            status.exit_code
        ),
        ("Failure", "NonZeroExitCode", Some(3)),
        "(status, reason, ExitCode cause) of the error stream's status"
    );
    pass()
}

async fn exec_tty_resize(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let opts = RemoteOpts {
        stdin: true,
        stdout: true,
        stderr: false,
        tty: true,
    };
    let script = r#"while read line; do [ "$line" = done ] && exit 0; stty size; done"#;
    let mut session = exec_session(&ctx, &container.id, &["sh", "-c", script], opts).await?;
    session.resize(100, 40).await?;
    // The reference applies a size once the process runs, so the first `stty size` may
    // still print the old one: ask until the new one shows.
    let resized = |seen: &[u8]| String::from_utf8_lossy(seen).contains("40 100");
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        session.write_stdin(b"\n").await?;
        let ended = session
            .read_stdout_for(Duration::from_millis(500), resized)
            .await?;
        ensure!(
            !ended,
            "the tty session ended early; stdout {:?}",
            session.stdout_so_far()
        );
        if resized(session.stdout_so_far().as_bytes()) {
            break;
        }
    }
    ensure!(
        session.stdout_so_far().contains("40 100"),
        "after a resize to 100x40, `stty size` never printed \"40 100\"; stdout {:?}",
        session.stdout_so_far()
    );
    session.write_stdin(b"done\n").await?;
    let result = session.finish(SESSION_WITHIN).await?;
    ensure_success(&result)?;
    pass()
}

async fn attach_stdin_once(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let mut config = ctx.container_config(&sandbox, &["tr", "a-z", "A-Z"]);
    config.stdin = true;
    config.stdin_once = true;
    let container = ctx.running_container(&sandbox, config).await?;
    let opts = RemoteOpts {
        stdin: true,
        ..OUT_AND_ERR
    };
    let request = cri::AttachRequest {
        container_id: container.id.clone(),
        stdin: opts.stdin,
        tty: opts.tty,
        stdout: opts.stdout,
        stderr: opts.stderr,
    };
    let response = call("Attach", ctx.rt().attach(request)).await?;
    let mut session = remote_command(&response.url, opts).await?;
    session.write_stdin(b"typed over spdy\n").await?;
    let answered = |seen: &[u8]| String::from_utf8_lossy(seen).contains("TYPED OVER SPDY");
    session
        .read_stdout_for(Duration::from_secs(10), answered)
        .await?;
    ensure_contains(
        "attached stdout after typing",
        &session.stdout_so_far(),
        "TYPED OVER SPDY\n",
    )?;
    // stdin_once: the end of this attach's stdin closes the container's, and `tr` exits.
    session.close_stdin().await?;
    let status = ctx
        .wait_container_state(
            &container.id,
            cri::ContainerState::ContainerExited,
            Duration::from_secs(20),
        )
        .await
        .context("the container after its attached stdin was half-closed")?;
    ensure_eq!(status.exit_code, 0, "exit code of `tr` after stdin closed");
    let result = session.finish(SESSION_WITHIN).await?;
    ensure_success(&result)?;
    pass()
}

async fn port_forward_http(ctx: Ctx) -> Result<Outcome> {
    let sandbox = super::sandbox::web_pod(&ctx, ctx.sandbox_config()?, "spdy-forwarded").await?;
    // Forward only once the server answers, so the case judges the forward, not the start.
    let ip = ctx.pod_ip(&sandbox).await?;
    let addr: std::net::SocketAddr = format!("{ip}:8080").parse().context("pod IP")?;
    host::http_get_eventually(addr, "/", Duration::from_secs(10)).await?;
    let request = cri::PortForwardRequest {
        pod_sandbox_id: sandbox.id.clone(),
        port: vec![8080],
    };
    let response = call("PortForward", ctx.rt().port_forward(request)).await?;
    let forward = spdy::port_forward(&response.url).await?;
    ensure_eq!(
        forward.protocol.as_str(),
        spdy::PORT_FORWARD_PROTOCOL,
        "X-Stream-Protocol-Version chosen"
    );
    for request_id in 0..2u32 {
        let (mut data, mut error) = forward.open(8080, request_id).await?;
        data.writer
            .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        // The server closes after an HTTP/1.0 answer; the data stream then ends.
        let answer = tokio::time::timeout(SESSION_WITHIN, read_all(&mut data.reader))
            .await
            .context("the forwarded HTTP answer did not end")??;
        let answer = String::from_utf8_lossy(&answer).into_owned();
        ensure!(
            answer.starts_with("HTTP/1.") && answer.contains("spdy-forwarded"),
            "request {request_id}: expected the page through the forward, got {answer:?}"
        );
        let errors = tokio::time::timeout(SESSION_WITHIN, read_all(&mut error))
            .await
            .context("the error stream did not end")??;
        ensure!(
            errors.is_empty(),
            "request {request_id}: the error stream reported {:?}",
            String::from_utf8_lossy(&errors)
        );
    }
    forward.close().await;
    pass()
}

/// A fresh exec URL for the negotiation cases.
async fn fresh_exec_url(ctx: &Ctx) -> Result<String> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let request = exec_request(&container.id, &["true"], OUT_AND_ERR);
    Ok(call("Exec", ctx.rt().exec(request)).await?.url)
}

async fn refusal_of(url: &str, protocols: &[&str]) -> Result<spdy::Refusal> {
    match spdy::upgrade(url, protocols).await? {
        Upgrade::Refused(refusal) => Ok(refusal),
        Upgrade::Switched { conn, protocol } => {
            conn.close().await;
            bail!("the upgrade offering {protocols:?} was accepted (protocol {protocol:?})")
        }
    }
}

async fn upgrade_without_version(ctx: Ctx) -> Result<Outcome> {
    let url = fresh_exec_url(&ctx).await?;
    let refusal = refusal_of(&url, &[]).await?;
    ensure_eq!(
        refusal.status(),
        Some(400),
        "status of an upgrade without X-Stream-Protocol-Version (answer: {refusal})"
    );
    pass()
}

async fn upgrade_unknown_versions(ctx: Ctx) -> Result<Outcome> {
    let url = fresh_exec_url(&ctx).await?;
    let refusal = refusal_of(&url, &["v99.channel.k8s.io", "nonsense"]).await?;
    ensure_eq!(
        refusal.status(),
        Some(403),
        "status of an upgrade offering only unknown versions (answer: {refusal})"
    );
    let accepted = refusal.header_values("x-accepted-stream-protocol-versions");
    ensure!(
        accepted.iter().any(|v| v == "v4.channel.k8s.io"),
        "X-Accepted-Stream-Protocol-Versions should list v4.channel.k8s.io, got {accepted:?}"
    );
    pass()
}

/// 100 MiB: `seq` output cut to length, so every line differs and a lost, repeated or
/// reordered frame changes the bytes.
const BULK_BYTES: usize = 100 << 20;
const BULK_LINES: u64 = 13_000_000;

fn expected_bulk_digest() -> Vec<u8> {
    let mut hasher = Sha256::new();
    let mut left = BULK_BYTES;
    let mut line = String::with_capacity(16);
    for n in 1..=BULK_LINES {
        line.clear();
        line.push_str(&n.to_string());
        line.push('\n');
        let take = line.len().min(left);
        hasher.update(&line.as_bytes()[..take]);
        left -= take;
        if left == 0 {
            break;
        }
    }
    hasher.finalize().to_vec()
}

async fn exec_bulk_stdout(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let script = format!("seq 1 {BULK_LINES} | head -c {BULK_BYTES}");
    let mut session =
        exec_session(&ctx, &container.id, &["sh", "-c", &script], OUT_AND_ERR).await?;
    let expected = tokio::task::spawn_blocking(expected_bulk_digest);
    let mut stdout = session.take_stdout().context("no stdout stream")?;
    let started = Instant::now();
    let mut hasher = Sha256::new();
    let mut total = 0usize;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match stdout.read(&mut chunk).await {
            Ok(n) => n,
            // The end of a session is a reset by a Go server; any data came before it.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Err(e) => return Err(e).context(format!("reading stdout after {total} bytes")),
        };
        if n == 0 {
            break;
        }
        hasher.update(&chunk[..n]);
        total += n;
    }
    let elapsed = started.elapsed();
    let result = session.finish(SESSION_WITHIN).await?;
    ensure_success(&result)?;
    ensure_eq!(total, BULK_BYTES, "bytes of stdout received");
    let expected = expected.await.context("computing the expected digest")?;
    ensure!(
        hasher.finalize().to_vec() == expected,
        "the 100 MiB of stdout arrived complete but differ from `seq 1 {BULK_LINES}`"
    );
    let rate = total as f64 / (1 << 20) as f64 / elapsed.as_secs_f64().max(1e-6);
    // The runner has no note for a passing case: the rate goes to the log.
    eprintln!(
        "SPDY exec stdout on {}: 100 MiB in {:.1}s ({rate:.1} MiB/s, the command's own pace included)",
        ctx.settings().endpoint,
        elapsed.as_secs_f64()
    );
    pass()
}

async fn exec_concurrent(ctx: Ctx) -> Result<Outcome> {
    const SESSIONS: usize = 100;
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let started = Instant::now();
    let opts = RemoteOpts {
        stdin: true,
        ..OUT_AND_ERR
    };
    let opened = futures::future::try_join_all((0..SESSIONS).map(|i| {
        let ctx = ctx.clone();
        let id = container.id.clone();
        async move {
            let script = format!(r#"read line; echo "$line/{i}""#);
            exec_session(&ctx, &id, &["sh", "-c", &script], opts)
                .await
                .with_context(|| format!("starting session {i}"))
        }
    }))
    .await?;
    // Every shell runs, waiting for its line, before any gets one: containerd 1.6 stalls
    // exec sessions whose processes start and end while many others are being started
    // (nothing reaches their streams for minutes), which would judge containerd, not SPDY.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listing = ctx.sh(&container.id, "ps -o args").await?;
        let shells = listing.lines().filter(|l| l.contains("read line")).count();
        if shells >= SESSIONS {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "{shells} of {SESSIONS} exec sessions have their process running after 60s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let runs = opened
        .into_iter()
        .enumerate()
        .map(|(i, mut session)| async move {
            let line = format!("session-{i}");
            session.write_stdin(format!("{line}\n").as_bytes()).await?;
            let result = session
                .finish(Duration::from_secs(60))
                .await
                .with_context(|| format!("finishing session {i}"))?;
            ensure_eq!(
                result.stdout_text(),
                format!("{line}/{i}\n"),
                "stdout of session {i}"
            );
            ensure_success(&result).with_context(|| format!("session {i}"))?;
            Ok::<_, anyhow::Error>(())
        });
    let failures: Vec<String> = join_all(runs)
        .await
        .into_iter()
        .filter_map(|r| r.err().map(|e| format!("{e:#}")))
        .collect();
    ensure!(
        failures.is_empty(),
        "{} of {SESSIONS} concurrent sessions failed; first: {}",
        failures.len(),
        failures.first().map(String::as_str).unwrap_or_default()
    );
    eprintln!(
        "SPDY on {}: {SESSIONS} concurrent exec sessions took {:.1}s",
        ctx.settings().endpoint,
        started.elapsed().as_secs_f64()
    );
    pass()
}
