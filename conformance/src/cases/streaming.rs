//! `[streaming]`: Exec, Attach and PortForward return absolute URLs with a token; request
//! validation; and the streams themselves over the WebSocket channel protocol (and a probe of
//! the SPDY/3.1 upgrade). A server that refuses the WebSocket upgrade makes the deep cases
//! skip with the server's answer.

use std::collections::BTreeMap;

use super::prelude::*;
use crate::runner::ws::{self, Handshake, WsConn, CHANNEL_PROTOCOLS};

pub fn cases() -> Vec<Case> {
    use Group::Streaming as G;
    vec![
        case!(
            G,
            "Exec returns an absolute http(s) URL with a token",
            [Exec],
            exec_url
        ),
        case!(
            G,
            "Attach returns an absolute http(s) URL with a token",
            [Attach],
            attach_url
        ),
        case!(
            G,
            "PortForward returns an absolute http(s) URL with a token",
            [PortForward],
            port_forward_url
        ),
        case!(
            G,
            "Exec of an unknown container is NotFound",
            [Exec],
            exec_unknown
        ),
        case!(
            G,
            "Attach of an unknown container is NotFound",
            [Attach],
            attach_unknown
        ),
        case!(
            G,
            "PortForward of an unknown sandbox is NotFound",
            [PortForward],
            port_forward_unknown
        ),
        case!(
            G,
            "Exec with tty and stderr is rejected",
            [Exec],
            exec_tty_stderr
        ),
        case!(
            G,
            "Exec without stdin, stdout or stderr is rejected",
            [Exec],
            exec_no_streams
        ),
        case!(
            G,
            "exec over WebSocket: stdout, stderr and a successful exit",
            [Exec],
            ws_exec_output
        ),
        case!(
            G,
            "exec over WebSocket: a non-zero exit code is reported",
            [Exec],
            ws_exec_exit_code
        ),
        case!(
            G,
            "exec over WebSocket: stdin reaches the command",
            [Exec],
            ws_exec_stdin
        ),
        case!(G, "an exec URL works once", [Exec], ws_exec_single_use),
        case!(
            G,
            "attach over WebSocket receives the container's output",
            [Attach],
            ws_attach
        ),
        case!(
            G,
            "port-forward over WebSocket reaches a port in the pod",
            [PortForward],
            ws_port_forward
        ),
        case!(
            G,
            "the exec URL accepts an SPDY/3.1 upgrade",
            [Exec],
            spdy_upgrade
        ),
    ]
}

const UNKNOWN_ID: &str = "0000000000000000000000000000000000000000000000000000000000c0ffee";

/// Fails unless `url` is absolute http(s) with a non-empty last path segment (the token).
fn ensure_token_url(rpc: &str, url: &str) -> Result<()> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .with_context(|| format!("{rpc}.url: expected an absolute http(s) URL, got {url:?}"))?;
    let (authority, path) = rest
        .split_once('/')
        .with_context(|| format!("{rpc}.url {url:?} has no path"))?;
    ensure!(!authority.is_empty(), "{rpc}.url {url:?} has no host");
    let token = path.split(['?', '#']).next().unwrap_or_default();
    let token = token.rsplit('/').next().unwrap_or_default();
    ensure!(token.len() >= 8, "{rpc}.url {url:?}: expected a token of at least 8 characters as the last path segment, got {token:?}");
    Ok(())
}

fn exec_request(id: &str, cmd: &[&str]) -> cri::ExecRequest {
    cri::ExecRequest {
        container_id: id.to_owned(),
        cmd: strings(cmd),
        tty: false,
        stdin: false,
        stdout: true,
        stderr: true,
    }
}

async fn exec_url_for(ctx: &Ctx, request: cri::ExecRequest) -> Result<String> {
    let response = call("Exec", ctx.rt().exec(request)).await?;
    ensure_token_url("Exec", &response.url)?;
    Ok(response.url)
}

async fn exec_url(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let first = exec_url_for(&ctx, exec_request(&container.id, &["true"])).await?;
    let second = exec_url_for(&ctx, exec_request(&container.id, &["true"])).await?;
    ensure!(
        first != second,
        "two Exec calls returned the same URL {first}"
    );
    pass()
}

async fn attach_url(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let request = cri::AttachRequest {
        container_id: container.id.clone(),
        stdin: false,
        tty: false,
        stdout: true,
        stderr: true,
    };
    let response = call("Attach", ctx.rt().attach(request)).await?;
    ensure_token_url("Attach", &response.url)?;
    pass()
}

async fn port_forward_url(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let request = cri::PortForwardRequest {
        pod_sandbox_id: sandbox.id.clone(),
        port: vec![8080],
    };
    let response = call("PortForward", ctx.rt().port_forward(request)).await?;
    ensure_token_url("PortForward", &response.url)?;
    pass()
}

async fn exec_unknown(ctx: Ctx) -> Result<Outcome> {
    let status = call_err("Exec", ctx.rt().exec(exec_request(UNKNOWN_ID, &["true"]))).await?;
    ensure_code("Exec(unknown)", &status, &[Code::NotFound])?;
    pass()
}

async fn attach_unknown(ctx: Ctx) -> Result<Outcome> {
    let request = cri::AttachRequest {
        container_id: UNKNOWN_ID.into(),
        stdout: true,
        ..Default::default()
    };
    let status = call_err("Attach", ctx.rt().attach(request)).await?;
    ensure_code("Attach(unknown)", &status, &[Code::NotFound])?;
    pass()
}

async fn port_forward_unknown(ctx: Ctx) -> Result<Outcome> {
    let request = cri::PortForwardRequest {
        pod_sandbox_id: UNKNOWN_ID.into(),
        port: vec![8080],
    };
    let status = call_err("PortForward", ctx.rt().port_forward(request)).await?;
    ensure_code("PortForward(unknown)", &status, &[Code::NotFound])?;
    pass()
}

async fn exec_tty_stderr(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let mut request = exec_request(&container.id, &["true"]);
    request.tty = true;
    let status = call_err("Exec", ctx.rt().exec(request)).await?;
    ensure_code("Exec(tty + stderr)", &status, &[Code::InvalidArgument])?;
    pass()
}

async fn exec_no_streams(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let mut request = exec_request(&container.id, &["true"]);
    request.stdout = false;
    request.stderr = false;
    let status = call_err("Exec", ctx.rt().exec(request)).await?;
    ensure_code("Exec(no streams)", &status, &[Code::InvalidArgument])?;
    pass()
}

/// Opens a WebSocket on `url`; a refused upgrade skips the case with the server's answer.
async fn open(url: &str) -> Result<WsConn> {
    match ws::connect(url, CHANNEL_PROTOCOLS).await? {
        Handshake::Switched(conn) => Ok(conn),
        Handshake::Refused { status_line, body } => Err(skip(format!(
            "the streaming server refused the WebSocket upgrade: {status_line} {body}"
        ))),
    }
}

fn text(channels: &BTreeMap<u8, Vec<u8>>, channel: u8) -> String {
    channels
        .get(&channel)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

/// The exit code in the v4 status channel: 0 for `Success`, else the `ExitCode` cause.
fn exit_code(status: &str) -> Result<i64> {
    let value: serde_json::Value = serde_json::from_str(status)
        .with_context(|| format!("the error channel does not hold a JSON status: {status:?}"))?;
    match value.get("status").and_then(|s| s.as_str()) {
        Some("Success") => Ok(0),
        Some("Failure") => value
            .pointer("/details/causes")
            .and_then(|c| c.as_array())
            .and_then(|causes| {
                causes
                    .iter()
                    .find(|c| c.get("reason").and_then(|r| r.as_str()) == Some("ExitCode"))
            })
            .and_then(|c| c.get("message").and_then(|m| m.as_str()))
            .and_then(|m| m.parse().ok())
            .with_context(|| format!("a Failure status without an ExitCode cause: {status}")),
        _ => bail!("unexpected status on the error channel: {status}"),
    }
}

async fn ws_exec(ctx: &Ctx, cmd: &[&str], stdin: Option<&[u8]>) -> Result<(String, String, i64)> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let mut request = exec_request(&container.id, cmd);
    request.stdin = stdin.is_some();
    let url = exec_url_for(ctx, request).await?;
    let mut conn = open(&url).await?;
    if let Some(data) = stdin {
        conn.send(ws::STDIN, data).await?;
    }
    let channels = conn
        .collect(Duration::from_secs(20), |c| {
            c.contains_key(&ws::ERROR) && !c[&ws::ERROR].is_empty()
        })
        .await?;
    conn.close().await;
    let status = text(&channels, ws::ERROR);
    ensure!(
        !status.is_empty(),
        "no status on the error channel (protocol {:?}); got channels {:?}",
        conn.protocol,
        channels.keys().collect::<Vec<_>>()
    );
    Ok((
        text(&channels, ws::STDOUT),
        text(&channels, ws::STDERR),
        exit_code(&status)?,
    ))
}

async fn ws_exec_output(ctx: Ctx) -> Result<Outcome> {
    let (stdout, stderr, code) =
        ws_exec(&ctx, &["sh", "-c", "echo to-out; echo to-err >&2"], None).await?;
    ensure_eq!(
        (stdout.as_str(), stderr.as_str(), code),
        ("to-out\n", "to-err\n", 0),
        "(stdout, stderr, exit code)"
    );
    pass()
}

async fn ws_exec_exit_code(ctx: Ctx) -> Result<Outcome> {
    let (_, _, code) = ws_exec(&ctx, &["sh", "-c", "exit 5"], None).await?;
    ensure_eq!(code, 5, "exit code in the status");
    pass()
}

async fn ws_exec_stdin(ctx: Ctx) -> Result<Outcome> {
    let (stdout, _, code) = ws_exec(&ctx, &["head", "-n", "1"], Some(b"through-stdin\n")).await?;
    ensure_eq!(
        (stdout.as_str(), code),
        ("through-stdin\n", 0),
        "(stdout, exit code)"
    );
    pass()
}

async fn ws_exec_single_use(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let url = exec_url_for(&ctx, exec_request(&container.id, &["true"])).await?;
    let mut conn = open(&url).await?;
    conn.collect(Duration::from_secs(20), |c| {
        c.get(&ws::ERROR).is_some_and(|e| !e.is_empty())
    })
    .await?;
    conn.close().await;
    match ws::connect(&url, CHANNEL_PROTOCOLS).await? {
        Handshake::Refused { .. } => pass(),
        Handshake::Switched(mut again) => {
            again.close().await;
            bail!("the exec URL {url} accepted a second connection")
        }
    }
}

async fn ws_attach(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let script = "while true; do echo tick; sleep 0.2; done";
    let container = ctx
        .running_container(
            &sandbox,
            ctx.container_config(&sandbox, &["sh", "-c", script]),
        )
        .await?;
    let request = cri::AttachRequest {
        container_id: container.id.clone(),
        stdin: false,
        tty: false,
        stdout: true,
        stderr: true,
    };
    let response = call("Attach", ctx.rt().attach(request)).await?;
    let mut conn = open(&response.url).await?;
    let channels = conn
        .collect(Duration::from_secs(10), |c| {
            text(c, ws::STDOUT).matches("tick").count() >= 2
        })
        .await?;
    conn.close().await;
    let stdout = text(&channels, ws::STDOUT);
    ensure!(
        stdout.matches("tick\n").count() >= 2,
        "attached stdout: expected ticks, got {stdout:?}"
    );
    pass()
}

async fn ws_port_forward(ctx: Ctx) -> Result<Outcome> {
    let sandbox = super::sandbox::web_pod(&ctx, ctx.sandbox_config()?, "forwarded").await?;
    // The container runs before its server listens: forward only once it answers, or an
    // endpoint would be judged on a port nobody listened on yet.
    let ip = ctx.pod_ip(&sandbox).await?;
    let addr: std::net::SocketAddr = format!("{ip}:8080").parse().context("pod IP")?;
    host::http_get_eventually(addr, "/", Duration::from_secs(10)).await?;
    let request = cri::PortForwardRequest {
        pod_sandbox_id: sandbox.id.clone(),
        port: vec![8080],
    };
    let response = call("PortForward", ctx.rt().port_forward(request)).await?;
    let url = if response.url.contains('?') {
        format!("{}&port=8080", response.url)
    } else {
        format!("{}?port=8080", response.url)
    };
    let mut conn = match ws::connect(&url, &["v4.channel.k8s.io", "portforward.k8s.io"]).await? {
        Handshake::Switched(conn) => conn,
        Handshake::Refused { status_line, body } => {
            return Err(skip(format!(
            "the streaming server refused the port-forward WebSocket upgrade: {status_line} {body}"
        )))
        }
    };
    // Channel 0 carries data for the first port, channel 1 its errors; each starts with the
    // port number (2 bytes, little endian) from the server.
    let opened = conn
        .collect(Duration::from_secs(5), |c| {
            c.get(&0).is_some_and(|d| d.len() >= 2)
        })
        .await?;
    let prefix = opened.get(&0).cloned().unwrap_or_default();
    ensure!(
        prefix.starts_with(&8080u16.to_le_bytes()),
        "port-forward data channel: expected the port prefix 8080, got {prefix:?}"
    );
    conn.send(0, b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let channels = conn
        .collect(Duration::from_secs(10), |c| {
            String::from_utf8_lossy(c.get(&0).map(Vec::as_slice).unwrap_or_default())
                .contains("forwarded")
        })
        .await?;
    conn.close().await;
    let data = text(&channels, 0);
    ensure_contains("HTTP response through the port-forward", &data, "forwarded")?;
    pass()
}

async fn spdy_upgrade(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let url = exec_url_for(&ctx, exec_request(&container.id, &["true"])).await?;
    let (status_line, protocol) = ws::probe_spdy(&url).await?;
    ensure!(
        status_line.split_whitespace().nth(1) == Some("101"),
        "SPDY/3.1 upgrade of the exec URL: expected 101 Switching Protocols, got {status_line:?}"
    );
    ensure_eq!(
        protocol.as_deref(),
        Some("v4.channel.k8s.io"),
        "X-Stream-Protocol-Version chosen"
    );
    pass()
}
