//! crius under systemd, without systemd as PID 1: the units pass `systemd-analyze verify`;
//! `systemd-socket-activate` hands crius its listening socket (LISTEN_FDS) and starts it on
//! the first connection, as `crius.socket` does; crius says READY=1 (Type=notify) only once
//! it serves, reloads on SIGHUP (RELOADING=1 … READY=1) and says STOPPING=1 on SIGTERM; its
//! JSON log is one object per line, without a colour code. Needs root, the `systemd` package
//! and a private containerd (scripts/install-deps).

// Helpers here may panic: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use conformance::harness::containerd::{Containerd, ContainerdOptions};
use conformance::runner::connect;
use cri_api::v1 as cri;

const CRIUS: &str = env!("CARGO_BIN_EXE_crius");

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/systemd")
}

#[test]
fn the_units_pass_systemd_analyze_verify() -> Result<()> {
    let dir = tempfile::tempdir()?;
    for unit in ["crius.service", "crius.socket"] {
        let text = std::fs::read_to_string(units_dir().join(unit))?;
        // verify checks that ExecStart= exists: point it at the binary this test built.
        let text = text.replace("ExecStart=/usr/bin/crius", &format!("ExecStart={CRIUS}"));
        std::fs::write(dir.path().join(unit), text)?;
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.path().join("crius.service"))
        .arg(dir.path().join("crius.socket"))
        .output()
        .context("running systemd-analyze (package systemd, scripts/install-deps)")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // An unknown key is only a warning for verify: any output at all fails the test.
    ensure!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );

    // The socket unit listens where crius listens by default.
    let socket = std::fs::read_to_string(units_dir().join("crius.socket"))?;
    let default_listen = shim::config::DEFAULT_FILE
        .lines()
        .find_map(|l| l.strip_prefix("listen = \"unix://"))
        .and_then(|l| l.strip_suffix('"'))
        .context("listen in the default file")?;
    ensure!(
        socket.contains(&format!("ListenStream={default_listen}\n")),
        "crius.socket does not listen on {default_listen}"
    );
    Ok(())
}

/// Kills the process (group) on drop, so a failed test leaves no crius behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every message the notify socket received within `wait`, until `until` shows up.
fn notifications(socket: &UnixDatagram, until: &str, wait: Duration) -> Result<Vec<String>> {
    let deadline = Instant::now() + wait;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        match socket.recv(&mut buf) {
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = text.lines().any(|l| l == until);
                seen.push(text);
                if done {
                    return Ok(seen);
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => return Err(e.into()),
        }
    }
    bail!("{until} not received within {wait:?}; got {seen:?}")
}

/// Waits until the log holds a line containing `needle`.
fn wait_for_log(log: &Path, needle: &str) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return Ok(text);
        }
        if Instant::now() > deadline {
            bail!("{needle:?} not in crius's log:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_activation_readiness_reload_and_stop() -> Result<()> {
    let containerd = Containerd::start(ContainerdOptions::default())?;
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let sock = d.join("crius.sock");
    let config = d.join("config.toml");
    std::fs::write(&config, "log_format = \"json\"\nlog_level = \"info\"\n")?;
    let notify_path = d.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path)?;
    let log = d.join("crius.log");
    for sub in ["root", "state", "cni"] {
        std::fs::create_dir_all(d.join(sub))?;
    }

    // systemd-socket-activate hands its child only the variables named with --setenv.
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.arg("--listen")
        .arg(&sock)
        .arg(format!("--setenv=NOTIFY_SOCKET={}", notify_path.display()))
        .arg(CRIUS)
        .arg("--config")
        .arg(&config)
        .arg("--listen")
        .arg(format!("unix://{}", sock.display()))
        .arg("--containerd-address")
        .arg(containerd.socket())
        .arg("--root")
        .arg(d.join("root"))
        .arg("--state")
        .arg(d.join("state"))
        .arg("--cni-conf-dir")
        .arg(d.join("cni"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(d.join("stdout"))?)
        .stderr(std::fs::File::create(&log)?);
    let mut child = Running(
        cmd.spawn()
            .context("systemd-socket-activate (package systemd)")?,
    );
    let pid = child.0.id();

    // Like crius.socket: the socket is there before crius, which starts on the first call.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        ensure!(
            Instant::now() < deadline,
            "systemd-socket-activate made no socket"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))?;
    ensure!(
        comm.trim() == "systemd-socket-",
        "crius started before anyone connected ({comm:?})"
    );

    let version = tokio::time::timeout(Duration::from_secs(60), async {
        let channel = connect::channel(&format!("unix://{}", sock.display())).await?;
        let reply = connect::runtime_client(channel)
            .version(cri::VersionRequest::default())
            .await?;
        anyhow::Ok(reply.into_inner())
    })
    .await
    .context("no Version answer within 60 s")??;
    ensure!(version.runtime_name == "crius", "{version:?}");
    // Same process: systemd-socket-activate executes crius in its place.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))?;
    ensure!(comm.trim() == "crius", "{comm:?}");

    let ready = notifications(&notify, "READY=1", Duration::from_secs(30))?;
    let all = ready.concat();
    let waiting = all.find("STATUS=waiting for the backend");
    let serving = all.find("READY=1");
    ensure!(
        waiting.is_some() && waiting < serving,
        "status before readiness: {all:?}"
    );
    wait_for_log(&log, "serving the socket systemd passed")?;

    // SIGHUP: log_level applies at once, event_buffer needs a restart, and crius says both.
    std::fs::write(
        &config,
        "log_format = \"json\"\nlog_level = \"debug\"\nevent_buffer = 7\n",
    )?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGHUP,
    )?;
    let reload = notifications(&notify, "READY=1", Duration::from_secs(10))?.concat();
    ensure!(reload.contains("RELOADING=1"), "{reload:?}");
    wait_for_log(&log, "SIGHUP: configuration reloaded")?;
    let text = wait_for_log(&log, "only a restart applies them")?;
    let restart = text
        .lines()
        .find(|l| l.contains("only a restart applies them"))
        .unwrap_or_default();
    ensure!(
        restart.contains("event_buffer") && !restart.contains("log_level"),
        "{restart}"
    );
    // An invalid file changes nothing.
    std::fs::write(&config, "log_format = \"json\"\nlog_levle = \"trace\"\n")?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGHUP,
    )?;
    wait_for_log(&log, "the configuration is invalid; nothing changed")?;

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    let stopping = notifications(&notify, "STOPPING=1", Duration::from_secs(10))?;
    ensure!(!stopping.is_empty());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.0.try_wait()? {
            break status;
        }
        ensure!(
            Instant::now() < deadline,
            "crius did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    ensure!(status.success(), "crius exited with {status}");
    // The socket belongs to whoever passed it: crius leaves it in place.
    ensure!(sock.exists(), "crius removed the socket systemd passed");

    let mut text = String::new();
    std::fs::File::open(&log)?.read_to_string(&mut text)?;
    ensure!(!text.contains('\u{1b}'), "a colour code in the log");
    // systemd-socket-activate's own lines come first, before it executes crius.
    let crius_lines = text.lines().skip_while(|l| !l.starts_with('{'));
    let mut events = 0;
    for line in crius_lines {
        events += 1;
        let value: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("a log line that is not JSON: {line}"))?;
        ensure!(
            value.get("level").is_some() && value.get("fields").is_some(),
            "{line}"
        );
    }
    ensure!(events > 5, "crius logged {events} lines:\n{text}");
    // Nothing logs at debug before the reload; after it, the new level is in force.
    let (before, after) = text
        .split_once("SIGHUP: configuration reloaded")
        .context("no reload line")?;
    ensure!(
        !before.contains("\"level\":\"DEBUG\"") && after.contains("\"level\":\"DEBUG\""),
        "log_level did not change at SIGHUP"
    );
    println!("crius's log under socket activation:\n{text}");
    drop(containerd);
    Ok(())
}
