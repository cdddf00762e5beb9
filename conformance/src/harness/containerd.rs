//! A private containerd (with its built-in CRI plugin, the conformance reference) in a temp dir.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::cni::{CniNetwork, CNI_BIN_DIR};
use super::util::{
    self, kill_processes_mentioning, mounts_under, require_program, require_root, run, run_stdout,
    run_unchecked, wait_until, Daemon, TempDir, COMMAND_TIMEOUT,
};

/// The pause image containerd's CRI uses (built by mkimage.py; import it into `k8s.io` first).
pub const DEFAULT_SANDBOX_IMAGE: &str = "localhost/crius/pause:1";

#[derive(Debug, Clone)]
pub struct ContainerdOptions {
    /// CRI `sandbox_image` (default `localhost/crius/pause:1`).
    pub sandbox_image: String,
    /// `--log-level` (default `info`).
    pub log_level: String,
    /// TOML appended verbatim to the generated config.toml.
    pub extra_config: String,
    /// How long to wait for `ctr version` to answer (default 20 s).
    pub ready_timeout: Duration,
}

impl Default for ContainerdOptions {
    fn default() -> Self {
        ContainerdOptions {
            sandbox_image: DEFAULT_SANDBOX_IMAGE.to_string(),
            log_level: "info".to_string(),
            extra_config: String::new(),
            ready_timeout: Duration::from_secs(20),
        }
    }
}

/// A running private containerd. Stop it with [`Containerd::shutdown`] (or drop it): tasks are
/// deleted, containerd is stopped by PID (SIGTERM, then SIGKILL), leftover shims and their
/// container processes are killed, everything mounted under the temp dir is unmounted, the CNI
/// networks written through [`Containerd::write_cni_conflist`] are cleaned, the dir is removed.
#[derive(Debug)]
pub struct Containerd {
    dir: TempDir,
    daemon: Option<Daemon>,
    sock: PathBuf,
    pid: u32,
    networks: Mutex<Vec<CniNetwork>>,
    down: bool,
    log_level: String,
    ready_timeout: Duration,
}

impl Containerd {
    /// Writes `<dir>/config.toml` (version 2, private root/state/socket, CRI with
    /// `restrict_oom_score_adj`, `sandbox_image`, CNI bin `/usr/lib/cni`, conf `<dir>/cni`, netns
    /// mounts and the CRI runc root inside the dir), starts `containerd --config` and waits for
    /// `ctr version`.
    pub fn start(opts: ContainerdOptions) -> Result<Containerd> {
        require_root()?;
        require_program("containerd")?;
        require_program("ctr")?;
        let dir = TempDir::new("ctd")?;
        let d = dir.path().to_path_buf();
        let sock = d.join("containerd.sock");
        for sub in ["root", "state", "cni", "cni-ipam", "opt", "runc"] {
            fs::create_dir_all(d.join(sub))
                .with_context(|| format!("creating {}/{sub}", d.display()))?;
        }
        let p = |s: &str| toml_str(&d.join(s));
        let config = format!(
            r#"version = 2
root = {root}
state = {state}

[grpc]
  address = {sock}

[plugins."io.containerd.internal.v1.opt"]
  path = {opt}

[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  sandbox_image = {sandbox}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = {bin}
    conf_dir = {cni}
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      Root = {runc}

{extra}
"#,
            root = p("root"),
            state = p("state"),
            sock = toml_str(&sock),
            opt = p("opt"),
            sandbox = toml_string(&opts.sandbox_image),
            bin = toml_string(CNI_BIN_DIR),
            cni = p("cni"),
            runc = p("runc"),
            extra = opts.extra_config,
        );
        let cfg_path = d.join("config.toml");
        fs::write(&cfg_path, config).with_context(|| format!("writing {}", cfg_path.display()))?;
        let mut c = Containerd {
            dir,
            daemon: None,
            sock,
            pid: 0,
            networks: Mutex::new(Vec::new()),
            down: false,
            log_level: opts.log_level.clone(),
            ready_timeout: opts.ready_timeout,
        };
        if let Err(e) = c.spawn_daemon() {
            let _ = c.shutdown();
            return Err(e);
        }
        Ok(c)
    }

    /// Start containerd on the existing config and wait until `ctr version` answers.
    fn spawn_daemon(&mut self) -> Result<()> {
        let d = self.dir.path().to_path_buf();
        let mut cmd = Command::new("containerd");
        cmd.arg("--config")
            .arg(d.join("config.toml"))
            .arg("--log-level")
            .arg(&self.log_level);
        let daemon = Daemon::spawn("containerd", cmd, &d.join("containerd.log"))?;
        self.pid = daemon.pid();
        self.daemon = Some(daemon);
        let ready = wait_until(
            "containerd to answer `ctr version`",
            self.ready_timeout,
            Duration::from_millis(50),
            || {
                if let Some(d) = self.daemon.as_mut() {
                    d.check_running()?;
                }
                Ok(self.sock.exists()
                    && run(self.ctr_cmd().arg("version"), Duration::from_secs(5)).is_ok())
            },
        );
        if let Err(e) = ready {
            let tail = util::log_tail(&d.join("containerd.log"), 40);
            return Err(e.context(format!("containerd log tail:\n{tail}")));
        }
        Ok(())
    }

    /// Stop containerd (SIGTERM by PID) but keep its directory, its shims and their tasks:
    /// the "containerd went away" case. [`Containerd::start_again`] brings it back.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut d) = self.daemon.take() {
            d.terminate(Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// SIGKILL containerd alone (a crash: its shims and their tasks live on).
    /// [`Containerd::start_again`] brings it back.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut d) = self.daemon.take() {
            d.kill9()?;
        }
        Ok(())
    }

    /// Start containerd again after [`Containerd::stop`], on the same root, state and socket.
    pub fn start_again(&mut self) -> Result<()> {
        anyhow::ensure!(self.daemon.is_none(), "containerd is still running");
        self.spawn_daemon()
    }

    /// The temp dir holding config, root, state, socket, cni and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Absolute path of containerd's gRPC socket.
    pub fn socket(&self) -> &Path {
        &self.sock
    }

    /// `unix://<socket>`: containerd's built-in CRI is served on the same socket.
    pub fn cri_endpoint(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    /// containerd's PID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn root(&self) -> PathBuf {
        self.dir().join("root")
    }

    /// Where containerd's local content store keeps the blob `digest` (`sha256:<hex>`).
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let (algorithm, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
        self.root()
            .join("io.containerd.content.v1.content/blobs")
            .join(algorithm)
            .join(hex)
    }

    /// The directory a crius using `namespace` writes pulled layers into before linking
    /// them into the blob directory.
    pub fn scratch_dir(&self, namespace: &str) -> PathBuf {
        self.root()
            .join("io.containerd.content.v1.content/crius-ingest")
            .join(namespace)
    }

    pub fn state(&self) -> PathBuf {
        self.dir().join("state")
    }

    /// The CRI plugin's CNI conf dir (`<dir>/cni`).
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir().join("cni")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir().join("containerd.log")
    }

    /// containerd's log so far.
    pub fn log(&self) -> Result<String> {
        let p = self.log_path();
        fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
    }

    /// True while the containerd process runs.
    pub fn is_running(&mut self) -> bool {
        self.daemon.as_mut().is_some_and(Daemon::is_running)
    }

    fn ctr_cmd(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(&self.sock);
        c
    }

    /// Runs `ctr --address <sock> <args>` and returns stdout (errors carry stderr).
    pub fn ctr<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_stdout(self.ctr_cmd().args(args), COMMAND_TIMEOUT)
    }

    /// Runs `ctr --address <sock> -n <namespace> <args>`.
    pub fn ctr_ns<I, S>(&self, namespace: &str, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_stdout(
            self.ctr_cmd().arg("-n").arg(namespace).args(args),
            COMMAND_TIMEOUT,
        )
    }

    /// `ctr -n <namespace> images import --all-platforms <tar>`: imports every image in an OCI
    /// (or docker/both) archive under its `io.containerd.image.name`, with the content of all
    /// platforms, and unpacks the host platform into the default overlayfs snapshotter (so CRI
    /// can create containers from it straight away).
    pub fn import_image(&self, namespace: &str, tar: &Path) -> Result<String> {
        self.ctr_ns(
            namespace,
            [
                OsStr::new("images"),
                OsStr::new("import"),
                OsStr::new("--all-platforms"),
                tar.as_os_str(),
            ],
        )
        .with_context(|| {
            format!(
                "importing {} into containerd namespace {namespace}",
                tar.display()
            )
        })
    }

    /// Image names in a namespace (`ctr -n <ns> images ls -q`).
    pub fn images(&self, namespace: &str) -> Result<Vec<String>> {
        Ok(self
            .ctr_ns(namespace, ["images", "ls", "-q"])?
            .lines()
            .map(str::to_string)
            .collect())
    }

    /// Writes a bridge + host-local + portmap conflist into the CRI conf dir (`<dir>/cni`) on a
    /// unique bridge (`crius-<hex>`) and a leased private subnet (`10.88.<x>.0/24` when `subnet`
    /// is `None`). containerd picks it up live. Cleaned at shutdown.
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

    /// Stops everything and removes the temp dir; see the type docs. Idempotent; runs every
    /// step even when one fails and reports all failures.
    pub fn shutdown(&mut self) -> Result<()> {
        if self.down {
            return Ok(());
        }
        self.down = true;
        let mut errors: Vec<String> = Vec::new();
        let dir = self.dir.path().to_path_buf();

        // 1. delete tasks while containerd still runs (lets runc remove its cgroups and state)
        if self.is_running() {
            // best effort: whatever is left is killed below
            if let Err(e) = self.delete_all_tasks() {
                eprintln!("harness: containerd shutdown: deleting tasks: {e:#}");
            }
        }
        // remember shim sockets and runc state of every task before the state dir goes away
        let leftovers = task_leftovers(&self.state());

        // 2. stop containerd by PID
        if let Some(mut d) = self.daemon.take() {
            if let Err(e) = d.terminate(Duration::from_secs(10)) {
                errors.push(format!("stopping containerd: {e:#}"));
            }
        }
        // 3. shims (their -address names our socket) and their container processes
        if let Err(e) = kill_processes_mentioning(&format!("{}/", dir.display())) {
            errors.push(format!("killing leftover processes: {e:#}"));
        }
        for p in leftovers {
            if p.is_dir() {
                // runc state of a task whose init process is gone by now
                if !runc_init_alive(&p) {
                    let _ = fs::remove_dir_all(&p);
                    if let Some(ns_dir) = p.parent() {
                        let _ = fs::remove_dir(ns_dir); // only when empty
                    }
                }
            } else {
                let _ = fs::remove_file(&p);
            }
        }
        // 4. mounts (snapshots, rootfs, netns, shm)
        if let Err(e) = util::unmount_all_under(&dir) {
            errors.push(format!("unmounting: {e:#}"));
        }
        // 5. bridges, iptables chains, CNI cache entries, subnet leases
        let nets: Vec<CniNetwork> =
            std::mem::take(&mut *self.networks.lock().unwrap_or_else(PoisonError::into_inner));
        for mut n in nets {
            if let Err(e) = n.cleanup() {
                errors.push(format!("{e:#}"));
            }
        }
        // 6. the temp dir
        if let Err(e) = self.dir.remove() {
            errors.push(format!("{e:#}"));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            bail!(
                "containerd shutdown ({}): {}",
                dir.display(),
                errors.join("; ")
            )
        }
    }

    fn delete_all_tasks(&self) -> Result<()> {
        let t = Duration::from_secs(15);
        let namespaces = run_stdout(self.ctr_cmd().args(["namespaces", "ls", "-q"]), t)?;
        let mut errors = Vec::new();
        for ns in namespaces.lines().map(str::trim).filter(|s| !s.is_empty()) {
            let tasks = match run_stdout(self.ctr_cmd().args(["-n", ns, "tasks", "ls", "-q"]), t) {
                Ok(s) => s,
                Err(e) => {
                    errors.push(format!("{e:#}"));
                    continue;
                }
            };
            // A forced delete kills the task and then asks its shim to delete it; a shim can
            // exit between the two and the delete fails with "ttrpc: closed", while containerd
            // still cleans the task up on the shim's exit. So a failed delete is only reported
            // when the task is still listed a moment later.
            let mut failed = Vec::new();
            for id in tasks.lines().map(str::trim).filter(|s| !s.is_empty()) {
                let out = run_unchecked(
                    self.ctr_cmd().args(["-n", ns, "tasks", "delete", "-f", id]),
                    t,
                );
                match out {
                    Ok(o) if o.status.success() => {}
                    Ok(o) => {
                        let err = String::from_utf8_lossy(&o.stderr);
                        if !err.contains("not found") {
                            failed.push((id.to_string(), err.trim().to_string()));
                        }
                    }
                    Err(e) => errors.push(format!("{e:#}")),
                }
            }
            if failed.is_empty() {
                continue;
            }
            std::thread::sleep(Duration::from_millis(300));
            // When the tasks cannot be listed again, every failure stands.
            let listed = run_stdout(self.ctr_cmd().args(["-n", ns, "tasks", "ls", "-q"]), t)
                .ok()
                .map(|s| s.lines().map(|l| l.trim().to_string()).collect::<Vec<_>>());
            for (id, err) in failed {
                if listed.as_ref().is_none_or(|l| l.contains(&id)) {
                    errors.push(format!("ctr -n {ns} tasks delete -f {id}: {err}"));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            bail!("{}", errors.join("; "))
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("harness: {e:#}");
        }
    }
}

/// What a test needs to know about a network written by the harness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInfo {
    pub name: String,
    pub bridge: String,
    pub subnet: String,
    pub gateway: String,
    pub conflist: PathBuf,
}

impl From<&CniNetwork> for NetworkInfo {
    fn from(n: &CniNetwork) -> Self {
        NetworkInfo {
            name: n.name.clone(),
            bridge: n.bridge.clone(),
            subnet: n.subnet.clone(),
            gateway: n.gateway.clone(),
            conflist: n.conflist.clone(),
        }
    }
}

/// Files outside the temp dir that tasks of this containerd leave when their shim is killed:
/// the shim socket (`/run/containerd/s/<hash>`, named in the bundle's `address` file) and the
/// runc state dir (`/run/containerd/runc/<ns>/<id>`; removed once its init process is gone).
fn task_leftovers(state: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let base = state.join("io.containerd.runtime.v2.task");
    let Ok(nss) = fs::read_dir(&base) else {
        return out;
    };
    for ns in nss.flatten() {
        let Ok(ids) = fs::read_dir(ns.path()) else {
            continue;
        };
        for id in ids.flatten() {
            if let Ok(addr) = fs::read_to_string(id.path().join("address")) {
                let p = PathBuf::from(addr.trim().trim_start_matches("unix://"));
                if p.starts_with("/run/containerd/s") {
                    out.push(p);
                }
            }
            let runc = Path::new("/run/containerd/runc")
                .join(ns.file_name())
                .join(id.file_name());
            if runc.is_dir() {
                out.push(runc);
            }
        }
    }
    out
}

fn runc_init_alive(runc_state: &Path) -> bool {
    let Ok(s) = fs::read_to_string(runc_state.join("state.json")) else {
        return false;
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&s) else {
        return false;
    };
    v.get("init_process_pid")
        .and_then(serde_json::Value::as_u64)
        .and_then(|p| u32::try_from(p).ok())
        .is_some_and(|p| p != 0 && util::pid_alive(p))
}

fn toml_str(p: &Path) -> String {
    toml_string(&p.to_string_lossy())
}

/// A TOML basic string literal.
pub(crate) fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// True when nothing is mounted at or below `dir` (for tests' post-shutdown assertions).
pub fn nothing_mounted_under(dir: &Path) -> Result<bool> {
    Ok(mounts_under(dir)?.is_empty())
}
