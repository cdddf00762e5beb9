//! A private dockerd (Debian's docker.io 20.10) in a temp dir, with runc-nosysresource as the
//! default runtime.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::util::{
    self, kill_processes_mentioning, require_program, require_root, run, run_stdout, scripts_dir,
    wait_until, Daemon, TempDir, COMMAND_TIMEOUT,
};

#[derive(Debug, Clone)]
pub struct DockerdOptions {
    /// `--containerd <sock>` to share a containerd (namespace `moby`); `None`: dockerd starts its own.
    pub containerd: Option<PathBuf>,
    /// Default runtime binary (registered as `nosysres`); `None`: `scripts/runc-nosysresource`.
    pub default_runtime: Option<PathBuf>,
    /// Extra dockerd arguments.
    pub extra_args: Vec<String>,
    /// How long to wait for `docker version` (default 30 s).
    pub ready_timeout: Duration,
}

impl Default for DockerdOptions {
    fn default() -> Self {
        DockerdOptions {
            containerd: None,
            default_runtime: None,
            extra_args: Vec::new(),
            ready_timeout: Duration::from_secs(30),
        }
    }
}

/// A running private dockerd: `dockerd --config-file <dir>/daemon.json ({}) --data-root <dir>/root
/// --exec-root <dir>/exec -H unix://<dir>/docker.sock --pidfile <dir>/docker.pid --iptables=false
/// --bridge=none --add-runtime nosysres=<runc-nosysresource> --default-runtime nosysres`.
/// [`Dockerd::shutdown`] (or drop) removes all containers, stops dockerd by PID, kills its
/// containerd/shims left behind, unmounts and removes the dir.
#[derive(Debug)]
pub struct Dockerd {
    dir: TempDir,
    daemon: Option<Daemon>,
    sock: PathBuf,
    pid: u32,
    down: bool,
}

impl Dockerd {
    pub fn start(opts: DockerdOptions) -> Result<Dockerd> {
        require_root()?;
        require_program("dockerd")?;
        require_program("docker")?;
        let runtime = opts
            .default_runtime
            .clone()
            .unwrap_or_else(|| scripts_dir().join("runc-nosysresource"));
        if !runtime.is_file() {
            bail!("runtime {} not found", runtime.display());
        }
        let dir = TempDir::new("dkr")?;
        let d = dir.path().to_path_buf();
        let sock = d.join("docker.sock");
        fs::write(d.join("daemon.json"), "{}\n").context("writing daemon.json")?;
        fs::create_dir_all(d.join("cli")).context("creating docker cli config dir")?;
        let mut cmd = Command::new("dockerd");
        cmd.arg("--config-file")
            .arg(d.join("daemon.json"))
            .arg("--data-root")
            .arg(d.join("root"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .args(["--iptables=false", "--bridge=none"])
            .arg("--add-runtime")
            .arg(format!("nosysres={}", runtime.display()))
            .args(["--default-runtime", "nosysres"]);
        if let Some(c) = &opts.containerd {
            cmd.arg("--containerd").arg(c);
        }
        cmd.args(&opts.extra_args);
        let daemon = Daemon::spawn("dockerd", cmd, &d.join("dockerd.log"))?;
        let pid = daemon.pid();
        let mut dk = Dockerd {
            dir,
            daemon: Some(daemon),
            sock,
            pid,
            down: false,
        };
        let ready = wait_until(
            "dockerd to answer `docker version`",
            opts.ready_timeout,
            Duration::from_millis(50),
            || {
                if let Some(d) = dk.daemon.as_mut() {
                    d.check_running()?;
                }
                Ok(dk.sock.exists()
                    && run(dk.docker_cmd().arg("version"), Duration::from_secs(10)).is_ok())
            },
        );
        if let Err(e) = ready {
            let tail = util::log_tail(&dk.dir.path().join("dockerd.log"), 40);
            let _ = dk.shutdown();
            return Err(e.context(format!("dockerd log tail:\n{tail}")));
        }
        Ok(dk)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn socket(&self) -> &Path {
        &self.sock
    }

    /// `unix://<dir>/docker.sock` (crius's `--docker-endpoint`).
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn log(&self) -> Result<String> {
        let p = self.dir().join("dockerd.log");
        fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
    }

    fn docker_cmd(&self) -> Command {
        let mut c = Command::new("docker");
        c.env("DOCKER_CONFIG", self.dir().join("cli"))
            .arg("-H")
            .arg(self.endpoint());
        c
    }

    /// Runs `docker -H <endpoint> <args>` and returns stdout.
    pub fn docker<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_stdout(self.docker_cmd().args(args), COMMAND_TIMEOUT)
    }

    /// `docker load -i <tar>` (needs a docker or "both" archive).
    pub fn load_image(&self, tar: &Path) -> Result<String> {
        self.docker([OsStr::new("load"), OsStr::new("-i"), tar.as_os_str()])
            .with_context(|| format!("docker load {}", tar.display()))
    }

    pub fn shutdown(&mut self) -> Result<()> {
        if self.down {
            return Ok(());
        }
        self.down = true;
        let mut errors = Vec::new();
        let dir = self.dir.path().to_path_buf();
        if self.daemon.as_mut().is_some_and(Daemon::is_running) {
            let t = Duration::from_secs(30);
            match run_stdout(self.docker_cmd().args(["ps", "-aq"]), t) {
                Ok(ids) => {
                    let ids: Vec<&str> = ids.split_whitespace().collect();
                    if !ids.is_empty() {
                        if let Err(e) = run(self.docker_cmd().args(["rm", "-f"]).args(&ids), t) {
                            errors.push(format!("removing containers: {e:#}"));
                        }
                    }
                }
                Err(e) => errors.push(format!("listing containers: {e:#}")),
            }
        }
        if let Some(mut d) = self.daemon.take() {
            if let Err(e) = d.terminate(Duration::from_secs(20)) {
                errors.push(format!("stopping dockerd: {e:#}"));
            }
        }
        if let Err(e) = kill_processes_mentioning(&format!("{}/", dir.display())) {
            errors.push(format!("killing leftover processes: {e:#}"));
        }
        if let Err(e) = util::unmount_all_under(&dir) {
            errors.push(format!("unmounting: {e:#}"));
        }
        if let Err(e) = self.dir.remove() {
            errors.push(format!("{e:#}"));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            bail!(
                "dockerd shutdown ({}): {}",
                dir.display(),
                errors.join("; ")
            )
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("harness: {e:#}");
        }
    }
}
