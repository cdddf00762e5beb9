//! `[streaming]`: Exec, Attach and PortForward return absolute URLs with a token; request
//! validation; and the streams themselves over the WebSocket channel protocols (v4, v5, the
//! base64 framings, tty resizes, port-forward; and a probe of the SPDY/3.1 upgrade). A server
//! that refuses the WebSocket upgrade makes the deep cases skip with the server's answer.
//! Every case was validated against containerd 1.6's streaming server (the Kubernetes one).

use std::collections::BTreeMap;

use super::prelude::*;
use crate::runner::container_state_name;
use crate::runner::spdy::CommandStatus;
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
        case!(
            G,
            "exec over WebSocket with a tty: a resize on channel 4 sets the terminal size",
            [Exec],
            ws_exec_tty_resize
        ),
        case!(
            G,
            "exec over WebSocket: a command that does not exist ends with a Failure status",
            [Exec],
            ws_exec_missing_command
        ),
        case!(
            G,
            "exec over WebSocket v4: closing the connection ends stdin, so cat exits",
            [Exec, ExecSync],
            ws_exec_v4_close_ends_stdin
        ),
        case!(
            G,
            "exec over WebSocket v5: a close message ends stdin and all output still arrives",
            [Exec],
            ws_exec_v5_close_stdin
        ),
        case!(
            G,
            "exec over WebSocket v4.base64.channel.k8s.io: base64 text frames both ways",
            [Exec],
            ws_exec_base64_v4
        ),
        case!(
            G,
            "exec over WebSocket base64.channel.k8s.io: base64 text frames both ways",
            [Exec],
            ws_exec_base64_v1
        ),
        case!(
            G,
            "an unknown streaming token is refused with 404",
            [Exec],
            ws_unknown_token
        ),
        case!(
            G,
            "100 concurrent exec sessions over WebSocket each get their own output",
            [Exec],
            ws_exec_concurrent
        )
        .timeout_secs(180),
        case!(
            G,
            "100 MiB of exec stdout over WebSocket arrive intact",
            [Exec],
            ws_exec_bulk
        )
        .timeout_secs(180),
        case!(
            G,
            "an exec whose client disconnects leaves no process behind",
            [Exec, ExecSync],
            ws_exec_disconnect_ends_process
        ),
        case!(
            G,
            "attach over WebSocket: stdin reaches a stdin_once container and detaching closes it",
            [Attach, ContainerStatus],
            ws_attach_stdin_once
        ),
        case!(
            G,
            "attach over WebSocket with a tty: what is typed reaches the container, again after a second attach",
            [Attach, ContainerStatus],
            ws_attach_tty_reattach
        ),
        case!(
            G,
            "attach over WebSocket with a tty: detaching closes a stdin_once container's stdin",
            [Attach, ContainerStatus],
            ws_attach_tty_stdin_once
        )
        .reference_known_failure(
            "containerd 1.6 closes a stdin_once container's stdin on detach only without a tty \
             (pkg/cri/io/container_io.go), unlike Kubernetes' Container.stdinOnce",
        ),
        case!(
            G,
            "attach over WebSocket: what the container prints is in the stream and in its CRI log",
            [Attach],
            ws_attach_keeps_log
        ),
        case!(
            G,
            "port-forward over WebSocket: a port nobody listens on reports an error on its error channel",
            [PortForward],
            ws_port_forward_refused
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

/// Opens a WebSocket on `url` offering `protocols`; a refused upgrade skips the case with
/// the server's answer.
async fn open_with(url: &str, protocols: &[&str]) -> Result<WsConn> {
    match ws::connect(url, protocols).await? {
        Handshake::Switched(conn) => Ok(conn),
        Handshake::Refused { status_line, body } => Err(skip(format!(
            "the streaming server refused the WebSocket upgrade offering {protocols:?}: \
             {status_line} {body}"
        ))),
    }
}

/// Opens a WebSocket on `url` with the suite's usual protocols (v5, v4, v1).
async fn open(url: &str) -> Result<WsConn> {
    open_with(url, CHANNEL_PROTOCOLS).await
}

fn text(channels: &BTreeMap<u8, Vec<u8>>, channel: u8) -> String {
    String::from_utf8_lossy(bytes(channels, channel)).into_owned()
}

fn bytes(channels: &BTreeMap<u8, Vec<u8>>, channel: u8) -> &[u8] {
    channels
        .get(&channel)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn has_status(channels: &BTreeMap<u8, Vec<u8>>) -> bool {
    !bytes(channels, ws::ERROR).is_empty()
}

/// The exit code a v4 status reports: 0 for `Success`, else the `ExitCode` cause.
fn exit_code(text: &str) -> Result<i64> {
    let status = CommandStatus::parse(text)?;
    match (status.status.as_str(), status.exit_code) {
        ("Success", _) => Ok(0),
        ("Failure", Some(code)) => Ok(code),
        _ => bail!("unexpected status on the error channel (no exit code): {text}"),
    }
}

/// Reads until the error channel holds the status, or fails saying what did arrive.
async fn until_status(conn: &mut WsConn, within: Duration) -> Result<BTreeMap<u8, Vec<u8>>> {
    let channels = conn.collect(within, has_status).await?;
    ensure!(
        has_status(&channels),
        "no status on the error channel within {within:?} (protocol {:?}); got {:?}",
        conn.protocol,
        channels
            .iter()
            .map(|(c, d)| (*c, String::from_utf8_lossy(d).into_owned()))
            .collect::<Vec<_>>()
    );
    Ok(channels)
}

async fn exec_session(ctx: &Ctx, request: cri::ExecRequest, protocols: &[&str]) -> Result<WsConn> {
    let url = exec_url_for(ctx, request).await?;
    open_with(&url, protocols).await
}

async fn ws_exec(ctx: &Ctx, cmd: &[&str], stdin: Option<&[u8]>) -> Result<(String, String, i64)> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let mut request = exec_request(&container.id, cmd);
    request.stdin = stdin.is_some();
    let mut conn = exec_session(ctx, request, CHANNEL_PROTOCOLS).await?;
    if let Some(data) = stdin {
        conn.send(ws::STDIN, data).await?;
    }
    let channels = until_status(&mut conn, Duration::from_secs(20)).await?;
    conn.close().await;
    Ok((
        text(&channels, ws::STDOUT),
        text(&channels, ws::STDERR),
        exit_code(&text(&channels, ws::ERROR))?,
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
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let request = exec_request(&container.id, &["sh", "-c", "exit 3"]);
    let mut conn = exec_session(&ctx, request, CHANNEL_PROTOCOLS).await?;
    let channels = until_status(&mut conn, Duration::from_secs(20)).await?;
    conn.close().await;
    let raw = text(&channels, ws::ERROR);
    let status = CommandStatus::parse(&raw)?;
    // What kubectl reads: Failure, reason NonZeroExitCode, the code as an ExitCode cause.
    ensure_eq!(
        (
            status.status.as_str(),
            status.reason.as_str(),
            status.exit_code
        ),
        ("Failure", "NonZeroExitCode", Some(3)),
        "(status, reason, ExitCode cause) of the v4 status {raw}"
    );
    pass()
}

async fn ws_exec_missing_command(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let request = exec_request(&container.id, &["/no/such/command"]);
    let mut conn = exec_session(&ctx, request, CHANNEL_PROTOCOLS).await?;
    let channels = until_status(&mut conn, Duration::from_secs(20)).await?;
    conn.close().await;
    let raw = text(&channels, ws::ERROR);
    let status = CommandStatus::parse(&raw)?;
    // containerd reports a failed start (InternalError); an exit code of 126/127 would do too.
    ensure!(
        status.status == "Failure" && status.exit_code != Some(0) && !status.message.is_empty(),
        "exec of a command that does not exist: expected a Failure status with a message \
         (and no exit code 0), got {raw}"
    );
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

async fn ws_exec_tty_resize(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let script =
        r#"while read line; do [ "$line" = done ] && echo to-err >&2 && exit 0; stty size; done"#;
    let request = cri::ExecRequest {
        container_id: container.id.clone(),
        cmd: strings(&["sh", "-c", script]),
        tty: true,
        stdin: true,
        stdout: true,
        stderr: false,
    };
    let mut conn = exec_session(&ctx, request, CHANNEL_PROTOCOLS).await?;
    conn.resize(100, 40).await?;
    // The reference applies a size only once the process runs, so the first `stty size` may
    // still see the old one: ask again until the new size shows (a tty merges stderr into
    // stdout, so everything is on stdout).
    let mut channels = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let resized = |c: &BTreeMap<u8, Vec<u8>>| text(c, ws::STDOUT).contains("40 100");
    while !resized(&channels) && Instant::now() < deadline {
        conn.send(ws::STDIN, b"\n").await?;
        let ended = conn
            .collect_into(&mut channels, Duration::from_millis(500), resized)
            .await?;
        ensure!(
            ended != ws::Ended::Closed,
            "the tty session ended early; got {:?}",
            text(&channels, ws::STDOUT)
        );
    }
    ensure!(
        resized(&channels),
        "after a resize to 100x40, `stty size` never printed \"40 100\"; stdout {:?}",
        text(&channels, ws::STDOUT)
    );
    conn.send(ws::STDIN, b"done\n").await?;
    let channels = until_status(&mut conn, Duration::from_secs(10)).await?;
    conn.close().await;
    ensure_contains(
        "tty stdout (stderr written to the terminal)",
        &text(&channels, ws::STDOUT),
        "to-err",
    )?;
    ensure_eq!(
        (
            text(&channels, ws::STDERR),
            exit_code(&text(&channels, ws::ERROR))?
        ),
        (String::new(), 0),
        "(stderr channel, exit code) of the tty session"
    );
    pass()
}

/// The `args` of every process in the container (`ps -o args`), header left out.
async fn process_args(ctx: &Ctx, container: &str) -> Result<Vec<String>> {
    let listing = ctx.sh(container, "ps -o args").await?;
    Ok(listing
        .lines()
        .skip(1)
        .map(|l| l.trim().to_owned())
        .collect())
}

/// Polls the container's processes until `args` is running (`present`) or gone.
async fn wait_process(
    ctx: &Ctx,
    container: &str,
    args: &str,
    present: bool,
    within: Duration,
) -> Result<bool> {
    let deadline = Instant::now() + within;
    loop {
        let running = process_args(ctx, container)
            .await?
            .iter()
            .any(|a| a == args);
        if running == present {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn ws_exec_v4_close_ends_stdin(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let mut request = exec_request(&container.id, &["cat"]);
    request.stdin = true;
    let mut conn = exec_session(&ctx, request, &[ws::V4]).await?;
    conn.send(ws::STDIN, b"line-1\n").await?;
    let channels = conn
        .collect(Duration::from_secs(10), |c| {
            text(c, ws::STDOUT).contains("line-1\n")
        })
        .await?;
    ensure_eq!(
        text(&channels, ws::STDOUT),
        "line-1\n",
        "what `cat` echoed of its stdin"
    );
    ensure!(
        wait_process(&ctx, &container.id, "cat", true, Duration::from_secs(5)).await?,
        "`cat` does not show in the container's processes while its session is open: {:?}",
        process_args(&ctx, &container.id).await?
    );
    // v4 has no message for the end of stdin: closing the connection is the only way.
    conn.close().await;
    ensure!(
        wait_process(&ctx, &container.id, "cat", false, Duration::from_secs(10)).await?,
        "`cat` still runs 10s after its client closed the connection: {:?}",
        process_args(&ctx, &container.id).await?
    );
    pass()
}

async fn ws_exec_v5_close_stdin(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let mut request = exec_request(&container.id, &["cat"]);
    request.stdin = true;
    let mut conn = exec_session(&ctx, request, &[ws::V5]).await?;
    ensure_eq!(conn.protocol.as_str(), ws::V5, "the negotiated protocol");
    conn.send(ws::STDIN, b"first\n").await?;
    conn.send(ws::STDIN, b"second, no newline").await?;
    conn.close_channel(ws::STDIN).await?;
    let channels = until_status(&mut conn, Duration::from_secs(20)).await?;
    conn.close().await;
    ensure_eq!(
        (
            text(&channels, ws::STDOUT),
            exit_code(&text(&channels, ws::ERROR))?
        ),
        ("first\nsecond, no newline".to_owned(), 0),
        "(stdout, exit code) of `cat` after the close of stdin"
    );
    pass()
}

/// Bytes no text encoding would pass unharmed, echoed by `head -c`.
const BINARY_STDIN: &[u8] = &[b'a', 0x00, 0xff, b'\n', 0x80, b'z'];

async fn base64_exec(ctx: &Ctx, protocol: &str) -> Result<(WsConn, BTreeMap<u8, Vec<u8>>)> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let script = format!("head -c {}; echo to-err >&2", BINARY_STDIN.len());
    let mut request = exec_request(&container.id, &["sh", "-c", &script]);
    request.stdin = true;
    let mut conn = exec_session(ctx, request, &[protocol]).await?;
    ensure_eq!(conn.protocol.as_str(), protocol, "the negotiated protocol");
    ensure_eq!(
        conn.framing,
        ws::Framing::Base64,
        "the framing of {protocol}"
    );
    conn.send(ws::STDIN, BINARY_STDIN).await?;
    // Output is decoded as base64 text frames: a binary frame fails the read.
    let channels = conn
        .collect(Duration::from_secs(20), |c| {
            has_status(c)
                || (bytes(c, ws::STDOUT).len() >= BINARY_STDIN.len()
                    && text(c, ws::STDERR) == "to-err\n")
        })
        .await?;
    ensure_eq!(
        (bytes(&channels, ws::STDOUT), text(&channels, ws::STDERR)),
        (BINARY_STDIN, "to-err\n".to_owned()),
        "(stdout, stderr) over {protocol}"
    );
    Ok((conn, channels))
}

async fn ws_exec_base64_v4(ctx: Ctx) -> Result<Outcome> {
    let (mut conn, mut channels) = base64_exec(&ctx, ws::V4_BASE64).await?;
    conn.collect_into(&mut channels, Duration::from_secs(20), has_status)
        .await?;
    conn.close().await;
    ensure_eq!(
        exit_code(&text(&channels, ws::ERROR))?,
        0,
        "exit code over {}",
        ws::V4_BASE64
    );
    pass()
}

async fn ws_exec_base64_v1(ctx: Ctx) -> Result<Outcome> {
    let (mut conn, mut channels) = base64_exec(&ctx, ws::V1_BASE64).await?;
    // Before v4 the error channel carries only a failure's text; success just closes.
    let ended = conn
        .collect_into(&mut channels, Duration::from_secs(20), |_| false)
        .await?;
    conn.close().await;
    ensure_eq!(ended, ws::Ended::Closed, "how the session ended");
    ensure_eq!(
        text(&channels, ws::ERROR),
        "",
        "the error channel of a successful {} session",
        ws::V1_BASE64
    );
    pass()
}

async fn ws_exec_single_use(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let url = exec_url_for(&ctx, exec_request(&container.id, &["true"])).await?;
    let mut conn = open(&url).await?;
    until_status(&mut conn, Duration::from_secs(20)).await?;
    conn.close().await;
    match ws::connect(&url, CHANNEL_PROTOCOLS).await? {
        Handshake::Refused { status_line, .. } => {
            ensure_eq!(
                ws::status_code(&status_line),
                Some(404),
                "the status of a second use of {url} ({status_line:?})"
            );
            pass()
        }
        Handshake::Switched(mut again) => {
            again.close().await;
            bail!("the exec URL {url} accepted a second connection")
        }
    }
}

async fn ws_unknown_token(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let url = exec_url_for(&ctx, exec_request(&container.id, &["true"])).await?;
    // The same server and path, another token of the same length.
    let cut = url.rfind('/').context("a URL with a path")? + 1;
    let (base, token) = url.split_at(cut);
    let token = token.split(['?', '#']).next().unwrap_or_default();
    let forged: String = token
        .chars()
        .map(|c| if c == 'A' { 'B' } else { 'A' })
        .collect();
    let forged_url = format!("{base}{forged}");
    match ws::connect(&forged_url, CHANNEL_PROTOCOLS).await? {
        Handshake::Refused { status_line, .. } => {
            ensure_eq!(
                ws::status_code(&status_line),
                Some(404),
                "the status of an unknown token {forged_url} ({status_line:?})"
            );
        }
        Handshake::Switched(mut conn) => {
            conn.close().await;
            bail!("the streaming server accepted the unknown token {forged_url}")
        }
    }
    // The real token was not spent by the refusal.
    let mut conn = open(&url).await?;
    let channels = until_status(&mut conn, Duration::from_secs(20)).await?;
    conn.close().await;
    ensure_eq!(
        exit_code(&text(&channels, ws::ERROR))?,
        0,
        "exit code of `true`"
    );
    pass()
}

/// Names the endpoint in the measurements a case prints.
fn endpoint_label(ctx: &Ctx) -> String {
    if ctx.settings().reference {
        format!("reference {}", ctx.settings().endpoint)
    } else {
        ctx.settings().endpoint.clone()
    }
}

async fn ws_exec_concurrent(ctx: Ctx) -> Result<Outcome> {
    const SESSIONS: usize = 100;
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let started = Instant::now();
    // Every session is open, its shell waiting for a line, before any gets its input; each
    // answers with its own input and index.
    let opened = futures::future::try_join_all((0..SESSIONS).map(|i| {
        let ctx = ctx.clone();
        let id = container.id.clone();
        async move {
            let script = format!(r#"read line; echo "$line/{i}""#);
            let mut request = exec_request(&id, &["sh", "-c", &script]);
            request.stdin = true;
            exec_session(&ctx, request, CHANNEL_PROTOCOLS).await
        }
    }))
    .await?;
    // All shells run at once before any gets its input (input sent to a session whose
    // process has not started yet stalls containerd 1.6's sessions for seconds).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let processes = process_args(&ctx, &container.id).await?;
        let shells = processes.iter().filter(|a| a.contains("read line")).count();
        if shells == SESSIONS {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "{shells} of {SESSIONS} exec sessions have their process running after 60s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    futures::future::try_join_all(
        opened
            .into_iter()
            .enumerate()
            .map(|(i, mut conn)| async move {
                conn.send(ws::STDIN, format!("session-{i}\n").as_bytes())
                    .await?;
                let channels = until_status(&mut conn, Duration::from_secs(60)).await?;
                conn.close().await;
                let got = (
                    text(&channels, ws::STDOUT),
                    exit_code(&text(&channels, ws::ERROR))?,
                );
                ensure_eq!(
                    got,
                    (format!("session-{i}/{i}\n"), 0),
                    "(stdout, exit code) of session {i}"
                );
                Ok::<_, anyhow::Error>(())
            }),
    )
    .await?;
    let elapsed = started.elapsed();
    ensure!(
        elapsed < Duration::from_secs(60),
        "{SESSIONS} concurrent exec sessions took {elapsed:?} (bound: 60s)"
    );
    eprintln!(
        "note: {}: {SESSIONS} concurrent exec sessions over WebSocket took {elapsed:.1?}",
        endpoint_label(&ctx)
    );
    pass()
}

async fn ws_exec_bulk(ctx: Ctx) -> Result<Outcome> {
    use sha2::{Digest, Sha256};
    const TOTAL: usize = 100 * 1024 * 1024;
    const LINE: &[u8] = b"0123456789abcdef\n";
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let script = format!(
        "yes {} | head -c {TOTAL}",
        String::from_utf8_lossy(&LINE[..LINE.len() - 1])
    );
    // What `yes | head -c` writes, hashed here in blocks of whole lines.
    let block = LINE.repeat(4096);
    let mut expected = Sha256::new();
    let mut left = TOTAL;
    while left > 0 {
        let n = left.min(block.len());
        expected.update(&block[..n]);
        left -= n;
    }
    let expected = hex::encode(expected.finalize());

    let request = exec_request(&container.id, &["sh", "-c", &script]);
    let mut conn = exec_session(&ctx, request, CHANNEL_PROTOCOLS).await?;
    let started = Instant::now();
    let mut digest = Sha256::new();
    let mut received = 0usize;
    let mut stderr = Vec::new();
    let mut status = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(150);
    while status.is_empty() {
        let message = tokio::time::timeout_at(deadline, conn.recv())
            .await
            .with_context(|| {
                format!("no status within 150s; {received} bytes of stdout so far")
            })??;
        let Some((channel, data)) = message else {
            bail!("the server closed the session without a status after {received} bytes");
        };
        match channel {
            ws::STDOUT => {
                received += data.len();
                digest.update(&data);
            }
            ws::STDERR => stderr.extend_from_slice(&data),
            ws::ERROR => status.extend_from_slice(&data),
            other => bail!("output on unexpected channel {other}"),
        }
    }
    let elapsed = started.elapsed();
    conn.close().await;
    ensure_eq!(
        exit_code(&String::from_utf8_lossy(&status))?,
        0,
        "exit code (stderr {:?})",
        String::from_utf8_lossy(&stderr)
    );
    ensure_eq!(received, TOTAL, "bytes of stdout received");
    ensure_eq!(
        hex::encode(digest.finalize()),
        expected,
        "SHA-256 of stdout"
    );
    let mib_per_s = TOTAL as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "note: {}: 100 MiB of exec stdout over WebSocket in {elapsed:.1?} ({mib_per_s:.0} MiB/s)",
        endpoint_label(&ctx)
    );
    pass()
}

async fn ws_exec_disconnect_ends_process(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let request = exec_request(&container.id, &["sleep", "1000"]);
    let conn = exec_session(&ctx, request, CHANNEL_PROTOCOLS).await?;
    ensure!(
        wait_process(
            &ctx,
            &container.id,
            "sleep 1000",
            true,
            Duration::from_secs(10)
        )
        .await?,
        "`sleep 1000` does not show in the container's processes while its session is open: {:?}",
        process_args(&ctx, &container.id).await?
    );
    // Gone without a close frame, as when kubectl is killed.
    drop(conn);
    if wait_process(
        &ctx,
        &container.id,
        "sleep 1000",
        false,
        Duration::from_secs(5),
    )
    .await?
    {
        return pass();
    }
    let processes = process_args(&ctx, &container.id).await?;
    if ctx.settings().reference {
        return Err(skip(format!(
            "containerd 1.6's exec outlives its client: `sleep 1000` still runs 5s after the \
             client went away ({processes:?})"
        )));
    }
    bail!("`sleep 1000` still runs 5s after its client went away: {processes:?}")
}

/// A running container of `command` that keeps stdin open (`stdin_once` and `tty` as given).
async fn stdin_container(
    ctx: &Ctx,
    sandbox: &Sandbox,
    command: &[&str],
    stdin_once: bool,
    tty: bool,
) -> Result<Container> {
    let mut config = ctx.container_config(sandbox, command);
    config.stdin = true;
    config.stdin_once = stdin_once;
    config.tty = tty;
    ctx.running_container(sandbox, config).await
}

async fn attach_session(ctx: &Ctx, container: &str, tty: bool) -> Result<WsConn> {
    let request = cri::AttachRequest {
        container_id: container.to_owned(),
        stdin: true,
        tty,
        stdout: true,
        stderr: !tty,
    };
    let response = call("Attach", ctx.rt().attach(request)).await?;
    ensure_token_url("Attach", &response.url)?;
    open(&response.url).await
}

/// Attaches to `container` (a running `tr a-z A-Z`), types a line and expects its answer;
/// returns the open session.
async fn attach_and_type(
    ctx: &Ctx,
    container: &Container,
    tty: bool,
    line: &str,
) -> Result<WsConn> {
    let mut conn = attach_session(ctx, &container.id, tty).await?;
    conn.send(ws::STDIN, format!("{line}\n").as_bytes()).await?;
    let answer = line.to_uppercase();
    let channels = conn
        .collect(Duration::from_secs(10), |c| {
            text(c, ws::STDOUT).contains(&answer)
        })
        .await?;
    ensure_contains(
        &format!("attached stdout after typing {line:?}"),
        &text(&channels, ws::STDOUT),
        &answer,
    )?;
    Ok(conn)
}

/// Types into an attached stdin_once container, detaches, and expects the container to exit
/// because its stdin was closed.
async fn attach_stdin_once(ctx: &Ctx, tty: bool) -> Result<cri::ContainerStatus> {
    let sandbox = ctx.sandbox().await?;
    let container = stdin_container(ctx, &sandbox, &["tr", "a-z", "A-Z"], true, tty).await?;
    let mut conn = attach_and_type(ctx, &container, tty, "typed-in").await?;
    let running = ctx.container_status(&container.id).await?;
    ensure_eq!(
        container_state_name(running.state),
        "ContainerRunning",
        "state before detaching (stdin is still open)"
    );
    conn.close().await;
    ctx.wait_container_state(
        &container.id,
        cri::ContainerState::ContainerExited,
        Duration::from_secs(20),
    )
    .await
    .context("stdin_once: detaching must close the container's stdin")
}

async fn ws_attach_stdin_once(ctx: Ctx) -> Result<Outcome> {
    let status = attach_stdin_once(&ctx, false).await?;
    ensure_eq!(
        status.exit_code,
        0,
        "exit code of `tr` after its stdin ended"
    );
    pass()
}

async fn ws_attach_tty_stdin_once(ctx: Ctx) -> Result<Outcome> {
    attach_stdin_once(&ctx, true).await?;
    pass()
}

async fn ws_attach_tty_reattach(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = stdin_container(&ctx, &sandbox, &["tr", "a-z", "A-Z"], false, true).await?;
    let mut first = attach_and_type(&ctx, &container, true, "first-attach").await?;
    first.close().await;
    // Without stdin_once the container's stdin outlives the first session.
    let mut second = attach_and_type(&ctx, &container, true, "second-attach").await?;
    second.close().await;
    let status = ctx.container_status(&container.id).await?;
    ensure_eq!(
        container_state_name(status.state),
        "ContainerRunning",
        "state after two attach sessions"
    );
    pass()
}

async fn ws_attach_keeps_log(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let script = r#"while read line; do echo "out:$line"; echo "err:$line" >&2; done"#;
    let container = stdin_container(&ctx, &sandbox, &["sh", "-c", script], false, false).await?;
    let mut conn = attach_session(&ctx, &container.id, false).await?;
    conn.send(ws::STDIN, b"attach-and-log\n").await?;
    let channels = conn
        .collect(Duration::from_secs(10), |c| {
            text(c, ws::STDOUT).contains("out:attach-and-log\n")
                && text(c, ws::STDERR).contains("err:attach-and-log\n")
        })
        .await?;
    conn.close().await;
    ensure_eq!(
        (text(&channels, ws::STDOUT), text(&channels, ws::STDERR)),
        (
            "out:attach-and-log\n".to_owned(),
            "err:attach-and-log\n".to_owned()
        ),
        "(stdout, stderr) of the attach stream"
    );
    let records = ctx
        .wait_log(&container.log_path, Duration::from_secs(10), |records| {
            logs::stream_lines(records, Stream::Stdout).contains(&"out:attach-and-log".to_owned())
                && logs::stream_lines(records, Stream::Stderr)
                    .contains(&"err:attach-and-log".to_owned())
        })
        .await?;
    ensure_eq!(
        (
            logs::stream_lines(&records, Stream::Stdout),
            logs::stream_lines(&records, Stream::Stderr)
        ),
        (
            vec!["out:attach-and-log".to_owned()],
            vec!["err:attach-and-log".to_owned()]
        ),
        "(stdout, stderr) lines of the CRI log"
    );
    pass()
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

/// The protocols offered for port-forward over WebSocket.
const PORT_FORWARD_PROTOCOLS: &[&str] = &[ws::V4, "portforward.k8s.io"];

/// Opens a port-forward of `port` in `sandbox`.
async fn port_forward_session(ctx: &Ctx, sandbox: &Sandbox, port: u16) -> Result<WsConn> {
    let request = cri::PortForwardRequest {
        pod_sandbox_id: sandbox.id.clone(),
        port: vec![i32::from(port)],
    };
    let response = call("PortForward", ctx.rt().port_forward(request)).await?;
    ensure_token_url("PortForward", &response.url)?;
    open_with(
        &ws::with_ports(&response.url, &[port]),
        PORT_FORWARD_PROTOCOLS,
    )
    .await
}

/// The payload of a port-forward channel after its port prefix, which must name `port`.
fn after_prefix(channels: &BTreeMap<u8, Vec<u8>>, channel: u8, port: u16) -> Result<&[u8]> {
    let data = bytes(channels, channel);
    let Some((prefix, rest)) = ws::split_port_prefix(data) else {
        bail!("port-forward channel {channel}: expected the 2-byte port prefix, got {data:?}");
    };
    ensure_eq!(
        prefix,
        port,
        "the port prefix of port-forward channel {channel}"
    );
    Ok(rest)
}

async fn ws_port_forward(ctx: Ctx) -> Result<Outcome> {
    const PORT: u16 = 8080;
    let sandbox = super::sandbox::web_pod(&ctx, ctx.sandbox_config()?, "forwarded").await?;
    // The container runs before its server listens: forward only once it answers, or an
    // endpoint would be judged on a port nobody listened on yet.
    let ip = ctx.pod_ip(&sandbox).await?;
    let addr: std::net::SocketAddr = format!("{ip}:{PORT}").parse().context("pod IP")?;
    host::http_get_eventually(addr, "/", Duration::from_secs(10)).await?;
    let mut conn = port_forward_session(&ctx, &sandbox, PORT).await?;
    let (data, error) = ws::port_channels(0);
    // Each channel of a port starts with the port number from the server.
    let mut channels = BTreeMap::new();
    conn.collect_into(&mut channels, Duration::from_secs(5), |c| {
        bytes(c, data).len() >= 2
    })
    .await?;
    after_prefix(&channels, data, PORT)?;
    conn.send(data, b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    // HTTP/1.0: the server closes the pod-side connection after its answer, and the
    // port-forward ends with it.
    let ended = conn
        .collect_into(&mut channels, Duration::from_secs(10), |_| false)
        .await?;
    conn.close().await;
    let response = String::from_utf8_lossy(after_prefix(&channels, data, PORT)?).into_owned();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("an HTTP response through the port-forward, got {response:?}"))?;
    let status = head.lines().next().unwrap_or_default();
    ensure!(
        status.starts_with("HTTP/1.") && ws::status_code(status) == Some(200),
        "status line through the port-forward: expected 200, got {status:?}"
    );
    ensure_eq!(
        body,
        "forwarded\n",
        "the body served through the port-forward"
    );
    ensure_eq!(
        ended,
        ws::Ended::Closed,
        "the port-forward after the pod closed its side"
    );
    if let Some(message) = channels.get(&error).filter(|e| e.len() > 2) {
        bail!(
            "the error channel of a working port-forward holds {:?}",
            String::from_utf8_lossy(message)
        );
    }
    pass()
}

async fn ws_port_forward_refused(ctx: Ctx) -> Result<Outcome> {
    const PORT: u16 = 8081;
    let sandbox = ctx.sandbox().await?;
    let mut conn = port_forward_session(&ctx, &sandbox, PORT).await?;
    let (data, error) = ws::port_channels(0);
    let channels = conn
        .collect(Duration::from_secs(10), |c| bytes(c, error).len() > 2)
        .await?;
    conn.close().await;
    let message = String::from_utf8_lossy(after_prefix(&channels, error, PORT)?).into_owned();
    ensure_contains(
        "the error channel of a port nobody listens on",
        &message,
        &PORT.to_string(),
    )?;
    let forwarded = bytes(&channels, data);
    ensure!(
        forwarded.len() <= 2,
        "data from a port nobody listens on: {:?}",
        String::from_utf8_lossy(forwarded)
    );
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
