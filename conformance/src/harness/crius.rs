//! The `crius` binary under test, on a private socket, root, state and CNI conf dir.

use std::ffi::OsString;
use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::cni::CniNetwork;
use super::containerd::NetworkInfo;
use super::util::{
    self, kill_processes_mentioning, require_root, wait_until, workspace_root, Daemon, TempDir,
};

#[derive(Debug, Clone)]
pub struct CriusOptions {
    /// The binary; `None`: [`Crius::binary_path`].
    pub bin: Option<PathBuf>,
    /// `--containerd-address` (omitted when `None`, e.g. with `--backend docker`).
    pub containerd_address: Option<PathBuf>,
    /// More flags (`--backend docker`, `--docker-endpoint unix://…`, `--cgroup-driver cgroupfs`…).
    pub extra_args: Vec<String>,
    /// Extra environment (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
    /// How long to wait for the socket to accept connections (default 30 s).
    pub ready_timeout: Duration,
}

impl Default for CriusOptions {
    fn default() -> Self {
        CriusOptions {
            bin: None,
            containerd_address: None,
            extra_args: Vec::new(),
            env: Vec::new(),
            ready_timeout: Duration::from_secs(30),
        }
    }
}

/// A running crius: `crius --listen unix://<dir>/crius.sock --containerd-address <sock>
/// --root <dir>/root --state <dir>/state --cni-conf-dir <dir>/cni [extra args]`.
/// The dir survives [`Crius::kill9`]/[`Crius::stop`]/[`Crius::restart`] (recovery tests);
/// [`Crius::shutdown`] (or drop) stops crius, kills processes that mention its dir, unmounts
/// everything below it, cleans its CNI networks and removes it.
#[derive(Debug)]
pub struct Crius {
    dir: TempDir,
    bin: PathBuf,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    ready_timeout: Duration,
    daemon: Option<Daemon>,
    sock: PathBuf,
    networks: Mutex<Vec<CniNetwork>>,
    down: bool,
    /// SIGTERMs that did not end in a clean exit (reported by [`Crius::shutdown`]).
    unclean_stops: Vec<String>,
}

impl Crius {
    /// `$CRIUS_BIN`, else `$CARGO_TARGET_DIR/debug/crius`, else `<workspace>/target/debug/crius`.
    pub fn binary_path() -> PathBuf {
        if let Some(p) = std::env::var_os("CRIUS_BIN") {
            return PathBuf::from(p);
        }
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map(|t| {
                if t.is_absolute() {
                    t
                } else {
                    workspace_root().join(t)
                }
            })
            .unwrap_or_else(|| workspace_root().join("target"));
        target.join("debug").join("crius")
    }

    /// Starts crius against a containerd socket (`bin` `None`: [`Crius::binary_path`]).
    pub fn start(bin: Option<&Path>, containerd_sock: &Path, extra_args: &[&str]) -> Result<Crius> {
        Crius::start_with(CriusOptions {
            bin: bin.map(Path::to_path_buf),
            containerd_address: Some(containerd_sock.to_path_buf()),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            ..CriusOptions::default()
        })
    }

    pub fn start_with(opts: CriusOptions) -> Result<Crius> {
        require_root()?;
        let bin = opts.bin.clone().unwrap_or_else(Crius::binary_path);
        if !bin.is_file() {
            bail!(
                "crius binary {} not found (cargo build --bin crius, or set CRIUS_BIN)",
                bin.display()
            );
        }
        let dir = TempDir::new("crius")?;
        let d = dir.path().to_path_buf();
        for sub in ["root", "state", "cni"] {
            fs::create_dir_all(d.join(sub))
                .with_context(|| format!("creating {}/{sub}", d.display()))?;
        }
        let sock = d.join("crius.sock");
        let mut args: Vec<OsString> = vec![
            "--listen".into(),
            format!("unix://{}", sock.display()).into(),
        ];
        if let Some(c) = &opts.containerd_address {
            args.push("--containerd-address".into());
            args.push(c.clone().into_os_string());
        }
        args.extend([
            "--root".into(),
            d.join("root").into_os_string(),
            "--state".into(),
            d.join("state").into_os_string(),
            "--cni-conf-dir".into(),
            d.join("cni").into_os_string(),
        ]);
        args.extend(opts.extra_args.iter().map(OsString::from));
        let mut c = Crius {
            dir,
            bin,
            args,
            env: opts.env,
            ready_timeout: opts.ready_timeout,
            daemon: None,
            sock,
            networks: Mutex::new(Vec::new()),
            down: false,
            unclean_stops: Vec::new(),
        };
        if let Err(e) = c.spawn() {
            let _ = c.shutdown();
            return Err(e);
        }
        Ok(c)
    }

    /// Starts the process (again) with the same arguments and waits for the socket.
    fn spawn(&mut self) -> Result<()> {
        if self.daemon.as_mut().is_some_and(Daemon::is_running) {
            bail!("crius is already running");
        }
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let log = self.log_path();
        let daemon = Daemon::spawn("crius", cmd, &log)?;
        self.daemon = Some(daemon);
        let sock = self.sock.clone();
        let daemon = &mut self.daemon;
        let res = wait_until(
            "crius to accept connections",
            self.ready_timeout,
            Duration::from_millis(20),
            || {
                if let Some(d) = daemon.as_mut() {
                    d.check_running()?;
                }
                Ok(UnixStream::connect(&sock).is_ok())
            },
        );
        res.map_err(|e| e.context(format!("crius log tail:\n{}", util::log_tail(&log, 40))))
    }

    /// Sets (`Some`) or clears (`None`) an environment variable for crius's next start.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        if let Some(value) = value {
            self.env.push((key.to_owned(), value.to_owned()));
        }
    }

    /// `unix://<dir>/crius.sock`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    pub fn socket(&self) -> &Path {
        &self.sock
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn root(&self) -> PathBuf {
        self.dir().join("root")
    }

    pub fn state(&self) -> PathBuf {
        self.dir().join("state")
    }

    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir().join("cni")
    }

    /// The full command line crius runs with (without the binary).
    pub fn args(&self) -> &[OsString] {
        &self.args
    }

    /// Log file (stdout+stderr of every run, appended).
    pub fn log_path(&self) -> PathBuf {
        self.dir().join("crius.log")
    }

    pub fn log(&self) -> Result<String> {
        let p = self.log_path();
        fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
    }

    /// PID of the running process.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Daemon::pid)
    }

    pub fn is_running(&mut self) -> bool {
        self.daemon.as_mut().is_some_and(Daemon::is_running)
    }

    /// Writes a test conflist into crius's `--cni-conf-dir` (see `Containerd::write_cni_conflist`).
    pub fn write_cni_conflist(&self, name: &str, subnet: Option<&str>) -> Result<NetworkInfo> {
        let net = CniNetwork::create(
            &self.cni_conf_dir(),
            &self.dir().join("cni-ipam"),
            name,
            subnet,
        )?;
        let info = NetworkInfo::from(&net);
        self.networks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(net);
        Ok(info)
    }

    /// SIGKILL and reap (a crash: no cleanup by crius).
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut d) = self.daemon.take() {
            d.kill9()?;
        }
        Ok(())
    }

    /// SIGTERM and wait (SIGKILL after 30 s). Returns the exit status. crius promises exit 0
    /// on SIGTERM: any other exit of a crius that was running is kept, and
    /// [`Crius::shutdown`] fails with it.
    pub fn stop(&mut self) -> Result<Option<ExitStatus>> {
        let Some(mut daemon) = self.daemon.take() else {
            return Ok(None);
        };
        let was_running = daemon.is_running();
        let status = daemon.terminate(Duration::from_secs(30))?;
        if was_running && !status.success() {
            self.unclean_stops
                .push(format!("crius exited with {status} on SIGTERM"));
        }
        Ok(Some(status))
    }

    /// The lines of crius's log (all of its runs) that report a panic.
    pub fn panics_in_log(&self) -> Result<Vec<String>> {
        Ok(panic_lines(&self.log()?))
    }

    /// Stops crius if it runs (SIGTERM), then starts it again with the same flags and dirs.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.spawn()
    }

    /// Starts crius again after [`Crius::kill9`] or [`Crius::stop`] without stopping anything.
    pub fn start_again(&mut self) -> Result<()> {
        self.spawn()
    }

    /// Stops crius and removes everything it left in its dir. Idempotent.
    pub fn shutdown(&mut self) -> Result<()> {
        if self.down {
            return Ok(());
        }
        self.down = true;
        let mut errors = Vec::new();
        let dir = self.dir.path().to_path_buf();
        if let Err(e) = self.stop() {
            errors.push(format!("stopping crius: {e:#}"));
        }
        errors.append(&mut self.unclean_stops);
        match self.panics_in_log() {
            Ok(panics) if panics.is_empty() => {}
            Ok(panics) => errors.push(format!(
                "crius panicked ({} in its log):\n{}",
                panics.len(),
                panics.join("\n")
            )),
            // crius writes its log from its first start, so a missing log is a harness fault.
            Err(e) => errors.push(format!("scanning crius's log for panics: {e:#}")),
        }
        // The log is a file, not a terminal: colour codes there are noise for operators.
        if self.log().is_ok_and(|log| log.contains("\u{1b}[")) {
            errors.push("crius's log holds terminal colour codes".to_owned());
        }
        if let Err(e) = kill_processes_mentioning(&format!("{}/", dir.display())) {
            errors.push(format!("killing leftover processes: {e:#}"));
        }
        if let Err(e) = util::unmount_all_under(&dir) {
            errors.push(format!("unmounting: {e:#}"));
        }
        let nets: Vec<CniNetwork> =
            std::mem::take(&mut *self.networks.lock().unwrap_or_else(PoisonError::into_inner));
        for mut n in nets {
            if let Err(e) = n.cleanup() {
                errors.push(format!("{e:#}"));
            }
        }
        if let Err(e) = self.dir.remove() {
            errors.push(format!("{e:#}"));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            bail!("crius shutdown ({}): {}", dir.display(), errors.join("; "))
        }
    }
}

/// A test that let its `Crius` go without calling [`Crius::shutdown`] still fails when crius
/// stopped uncleanly or panicked (unless the test is already failing).
impl Drop for Crius {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            if std::thread::panicking() {
                eprintln!("harness: {e:#}");
            } else {
                panic!("harness: {e:#}");
            }
        }
    }
}

/// The lines of a crius log that report a panic (Rust's `thread '…' panicked at …`).
fn panic_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|line| line.contains("panicked at"))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn panic_lines_finds_rust_panics_only() {
        let log = "2026-12-07T20:00:00Z INFO crius: serving\n\
                   thread 'tokio-runtime-worker' panicked at shim/src/x.rs:1:2:\n\
                   boom\n\
                   2026-12-07T20:00:01Z INFO crius: container panicked-pod started\n";
        assert_eq!(
            super::panic_lines(log),
            vec!["thread 'tokio-runtime-worker' panicked at shim/src/x.rs:1:2:".to_owned()]
        );
    }
}
