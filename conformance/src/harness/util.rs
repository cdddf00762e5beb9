//! Process, mount and temp-dir helpers shared by the daemon starters.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Default timeout for helper commands (`ctr`, `skopeo`, `ip`, ...).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// The workspace root: `$CRIUS_WORKSPACE_ROOT`, else the parent of this crate's manifest dir.
pub fn workspace_root() -> PathBuf {
    if let Some(p) = std::env::var_os("CRIUS_WORKSPACE_ROOT") {
        return PathBuf::from(p);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest.to_path_buf())
}

/// `<workspace>/scripts`: mkimage.py, runc-nosysresource, ...
pub fn scripts_dir() -> PathBuf {
    workspace_root().join("scripts")
}

/// Fails with a clear message unless we run as root (every daemon here needs it).
pub fn require_root() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the crius test harness starts real containerd/dockerd/registry daemons and must run as root");
    }
    Ok(())
}

/// Fails with a clear message when a program the harness needs is missing.
pub fn require_program(name: &str) -> Result<PathBuf> {
    find_in_path(name).ok_or_else(|| {
        anyhow!("`{name}` not found in PATH: run scripts/install-deps (as root) first")
    })
}

pub(crate) fn find_in_path(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// A short random hex string (for unique names).
pub fn random_hex(len: usize) -> String {
    let mut s = String::with_capacity(len + 8);
    while s.len() < len {
        s.push_str(&format!("{:08x}", rand::random::<u32>()));
    }
    s.truncate(len);
    s
}

/// A private temp directory. Dropping it unmounts anything still mounted below it and
/// removes it (set `CRIUS_KEEP_TEST_DIRS=1` to keep the files for debugging).
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
    removed: bool,
}

impl TempDir {
    /// Creates `$CRIUS_TEST_TMPDIR/crius-<prefix>-<random>` (default base `/tmp`; paths stay
    /// short because unix socket paths are limited to 107 bytes).
    pub fn new(prefix: &str) -> Result<TempDir> {
        let base = std::env::var_os("CRIUS_TEST_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
        for _ in 0..16 {
            let path = base.join(format!("crius-{prefix}-{}", random_hex(8)));
            match fs::create_dir(&path) {
                Ok(()) => {
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                        .with_context(|| format!("chmod {}", path.display()))?;
                    return Ok(TempDir {
                        path,
                        removed: false,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            }
        }
        bail!(
            "could not create a unique temp dir under {}",
            base.display()
        )
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Unmounts everything below the dir and removes it. Idempotent.
    pub fn remove(&mut self) -> Result<()> {
        if self.removed {
            return Ok(());
        }
        unmount_all_under(&self.path)?;
        if std::env::var_os("CRIUS_KEEP_TEST_DIRS").is_some_and(|v| v != "0" && !v.is_empty()) {
            eprintln!("harness: keeping {}", self.path.display());
            self.removed = true;
            return Ok(());
        }
        let mut last = None;
        for _ in 0..5 {
            match fs::remove_dir_all(&self.path) {
                Ok(()) => {
                    self.removed = true;
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.removed = true;
                    return Ok(());
                }
                Err(e) => {
                    last = Some(e);
                    // something may have been mounted meanwhile (a dying shim, a lazy unmount)
                    let _ = unmount_all_under(&self.path);
                    thread::sleep(Duration::from_millis(200));
                }
            }
        }
        match last {
            Some(e) => Err(e).with_context(|| format!("removing {}", self.path.display())),
            None => Ok(()),
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            eprintln!("harness: {e:#}");
        }
    }
}

// ------------------------------------------------------------------ commands

/// Runs a command with a timeout, capturing stdout and stderr. Fails (with both streams in the
/// error) on a non-zero exit status or on timeout.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let out = run_unchecked(cmd, timeout)?;
    if !out.status.success() {
        bail!(
            "{} failed ({}):\nstdout: {}\nstderr: {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// Like [`run`] but returns the output whatever the exit status (still fails on timeout or spawn error).
pub fn run_unchecked(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let what = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {what}"))?;
    let out_reader = child.stdout.take().map(spawn_reader);
    let err_reader = child.stderr.take().map(spawn_reader);
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child
            .try_wait()
            .with_context(|| format!("waiting for {what}"))?
        {
            Some(st) => break st,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{what} timed out after {timeout:?}");
            }
            None => thread::sleep(Duration::from_millis(5)),
        }
    };
    let stdout = out_reader.map(join_reader).unwrap_or_default();
    let stderr = err_reader.map(join_reader).unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Runs a command and returns its stdout as a string.
pub fn run_stdout(cmd: &mut Command, timeout: Duration) -> Result<String> {
    let out = run(cmd, timeout)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn spawn_reader<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

fn join_reader(h: thread::JoinHandle<Vec<u8>>) -> Vec<u8> {
    h.join().unwrap_or_default()
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Polls `f` every `every` until it returns `Ok(true)` or `timeout` passes.
pub fn wait_until<F>(what: &str, timeout: Duration, every: Duration, mut f: F) -> Result<()>
where
    F: FnMut() -> Result<bool>,
{
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match f() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() >= deadline {
            return Err(match last_err {
                Some(e) => e.context(format!("timed out after {timeout:?} waiting for {what}")),
                None => anyhow!("timed out after {timeout:?} waiting for {what}"),
            });
        }
        thread::sleep(every);
    }
}

// ------------------------------------------------------------------ daemons

/// A daemon child process with its output in a log file. Dropping it stops it
/// (SIGTERM, then SIGKILL after 10 s).
#[derive(Debug)]
pub struct Daemon {
    name: String,
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Daemon {
    /// Spawns `cmd` with stdin null and stdout+stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Daemon> {
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let file2 = file
            .try_clone()
            .with_context(|| format!("dup {}", log.display()))?;
        let what = describe(&cmd);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(file2))
            .spawn()
            .with_context(|| format!("spawning {name}: {what}"))?;
        Ok(Daemon {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
            exited: None,
        })
    }

    /// Spawns `cmd` keeping the stdout/stderr it was given; `log` is only named in errors.
    pub fn spawn_with_stdio(name: &str, mut cmd: Command, log: &Path) -> Result<Daemon> {
        let what = describe(&cmd);
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("spawning {name}: {what}"))?;
        Ok(Daemon {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
            exited: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The exit status if the process has exited (reaping it), else `None`.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if let Some(st) = self.exited {
            return Ok(Some(st));
        }
        let st = self
            .child
            .try_wait()
            .with_context(|| format!("waiting for {}", self.name))?;
        self.exited = st;
        Ok(st)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    /// Fails (with the log tail) if the daemon has already exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(st) = self.try_wait()? {
            bail!(
                "{} exited early ({st}); log {}:\n{}",
                self.name,
                self.log.display(),
                log_tail(&self.log, 40)
            );
        }
        Ok(())
    }

    pub fn signal(&mut self, sig: Signal) -> Result<()> {
        if self.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = pid_of(self.child.id())?;
        match kill(pid, sig) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => {
                Err(e).with_context(|| format!("kill -{sig} {} ({})", self.child.id(), self.name))
            }
        }
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_wait()? {
                return Ok(Some(st));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL and wait. Returns the exit status.
    pub fn terminate(&mut self, grace: Duration) -> Result<ExitStatus> {
        self.signal(Signal::SIGTERM)?;
        if let Some(st) = self.wait_timeout(grace)? {
            return Ok(st);
        }
        eprintln!(
            "harness: {} (pid {}) ignored SIGTERM for {grace:?}, sending SIGKILL",
            self.name,
            self.pid()
        );
        self.kill9()
    }

    /// SIGKILL and wait.
    pub fn kill9(&mut self) -> Result<ExitStatus> {
        self.signal(Signal::SIGKILL)?;
        match self.wait_timeout(Duration::from_secs(30))? {
            Some(st) => Ok(st),
            None => bail!(
                "{} (pid {}) did not die after SIGKILL",
                self.name,
                self.pid()
            ),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.is_running() {
            if let Err(e) = self.terminate(Duration::from_secs(10)) {
                eprintln!("harness: stopping {}: {e:#}", self.name);
            }
        }
    }
}

/// The last `lines` lines of a log file (for error messages).
pub fn log_tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(b) => {
            let s = String::from_utf8_lossy(&b);
            let v: Vec<&str> = s.lines().collect();
            v[v.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

fn pid_of(pid: u32) -> Result<Pid> {
    Ok(Pid::from_raw(
        i32::try_from(pid).context("pid out of range")?,
    ))
}

/// True while `pid` exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(stat_state(&stat), Some('Z') | Some('X')),
        Err(_) => false,
    }
}

fn stat_state(stat: &str) -> Option<char> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

fn stat_ppid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Process start time (clock ticks since boot), to tell a pid from a reused one.
pub fn pid_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

struct ProcInfo {
    ppid: u32,
    cmdline: String,
}

fn list_processes() -> HashMap<u32, ProcInfo> {
    let mut out = HashMap::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if matches!(stat_state(&stat), Some('Z') | Some('X')) {
            continue;
        }
        let Some(ppid) = stat_ppid(&stat) else {
            continue;
        };
        let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        out.insert(pid, ProcInfo { ppid, cmdline });
    }
    out
}

/// Every live process whose command line mentions `needle`, plus all their descendants
/// (container processes under a containerd shim), excluding this process and its ancestors.
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let procs = list_processes();
    let me = std::process::id();
    let mut ancestors = BTreeSet::new();
    let mut p = me;
    while let Some(info) = procs.get(&p) {
        ancestors.insert(p);
        if info.ppid == 0 || info.ppid == p {
            break;
        }
        p = info.ppid;
    }
    let mut found: BTreeSet<u32> = procs
        .iter()
        .filter(|(pid, info)| info.cmdline.contains(needle) && !ancestors.contains(pid))
        .map(|(pid, _)| *pid)
        .collect();
    loop {
        let more: Vec<u32> = procs
            .iter()
            .filter(|(pid, info)| {
                found.contains(&info.ppid) && !found.contains(pid) && !ancestors.contains(pid)
            })
            .map(|(pid, _)| *pid)
            .collect();
        if more.is_empty() {
            break;
        }
        found.extend(more);
    }
    found.into_iter().collect()
}

/// SIGKILLs every process that mentions `needle` in its command line (containerd, its shims,
/// dockerd's containerd...) and their descendants, waits for them to go, then removes the
/// cgroups the killed processes were in (when empty, and never ours). Returns the pids killed.
pub fn kill_processes_mentioning(needle: &str) -> Result<Vec<u32>> {
    let pids = processes_mentioning(needle);
    if pids.is_empty() {
        return Ok(pids);
    }
    let own_cgroups = cgroup_dirs(std::process::id());
    let mut cgroups = BTreeSet::new();
    for &pid in &pids {
        cgroups.extend(cgroup_dirs(pid));
        if let Ok(p) = pid_of(pid) {
            let _ = kill(p, Signal::SIGKILL);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|&p| pid_alive(p)) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<u32> = pids.iter().copied().filter(|&p| pid_alive(p)).collect();
    // deepest first so nested cgroups go before their parents
    let mut dirs: Vec<PathBuf> = cgroups.difference(&own_cgroups).cloned().collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in dirs {
        let _ = fs::remove_dir(&d);
    }
    if !left.is_empty() {
        bail!("processes still alive after SIGKILL: {left:?}");
    }
    Ok(pids)
}

/// The cgroup directories (v1 controllers and the unified hierarchy) of a process,
/// excluding the root cgroups.
fn cgroup_dirs(pid: u32) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let Ok(s) = fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return out;
    };
    for line in s.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        if rel.is_empty() {
            continue;
        }
        let mounts: Vec<String> = if ctrls.is_empty() {
            if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
                vec![String::new()] // pure cgroup v2
            } else {
                vec!["unified".to_string()] // hybrid: v2 at /sys/fs/cgroup/unified
            }
        } else {
            ctrls
                .split(',')
                .map(|c| c.strip_prefix("name=").unwrap_or(c).to_string())
                .collect()
        };
        for m in mounts {
            let base = if m.is_empty() {
                PathBuf::from("/sys/fs/cgroup")
            } else {
                Path::new("/sys/fs/cgroup").join(&m)
            };
            let d = base.join(rel);
            if d.is_dir() {
                out.insert(d);
            }
        }
    }
    out
}

// ------------------------------------------------------------------ leftovers

/// The entries of `dir`, for a leftover check. A missing directory is an error, not "nothing
/// left": a check that reads the wrong path must fail rather than pass.
pub fn entries_of(dir: &Path) -> Result<Vec<PathBuf>> {
    let read =
        fs::read_dir(dir).with_context(|| format!("leftover check: reading {}", dir.display()))?;
    let mut entries = Vec::new();
    for entry in read {
        let entry = entry.with_context(|| format!("leftover check: reading {}", dir.display()))?;
        entries.push(entry.path());
    }
    entries.sort();
    Ok(entries)
}

/// Every cgroup directory, in every hierarchy mounted under `root` (each cgroup v1
/// controller, `unified`, or the cgroup v2 root itself), whose name contains `fragment`
/// (a container or sandbox id). Fails when `root` holds no hierarchy at all.
pub fn cgroups_named(root: &Path, fragment: &str) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    let mut walked = 0usize;
    while let Some(dir) = pending.pop() {
        let Ok(read) = fs::read_dir(&dir) else {
            // A cgroup can vanish while it is walked.
            continue;
        };
        walked += 1;
        for entry in read.flatten() {
            // Controller mounts are directories; a symlink such as `cpu -> cpu,cpuacct` is
            // the same hierarchy again and not followed.
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if !kind.is_dir() {
                continue;
            }
            let path = entry.path();
            if entry.file_name().to_string_lossy().contains(fragment) {
                found.push(path.clone());
            }
            pending.push(path);
        }
    }
    if walked == 0 {
        bail!(
            "leftover check: no cgroup hierarchy under {}",
            root.display()
        );
    }
    found.sort();
    Ok(found)
}

// ------------------------------------------------------------------ mounts

/// Mount points at or below `dir` in this mount namespace, in mount order.
pub fn mounts_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let info =
        fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let dir = dir.to_string_lossy().trim_end_matches('/').to_string();
    let mut out = Vec::new();
    for line in info.lines() {
        let Some(mp) = line.split(' ').nth(4) else {
            continue;
        };
        let mp = unescape_mountinfo(mp);
        if mp == dir || mp.starts_with(&format!("{dir}/")) {
            out.push(PathBuf::from(mp));
        }
    }
    Ok(out)
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts everything mounted at or below `dir` (the equivalent of `umount -R`), the most
/// recent and deepest mounts first, falling back to a lazy unmount (MNT_DETACH).
pub fn unmount_all_under(dir: &Path) -> Result<()> {
    use nix::mount::{umount2, MntFlags};
    for _round in 0..10 {
        let mut mounts = mounts_under(dir)?;
        if mounts.is_empty() {
            return Ok(());
        }
        // mountinfo lists mounts in mount order: undo them in reverse, deepest first
        mounts.reverse();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
        for m in &mounts {
            if umount2(m, MntFlags::empty()).is_err() {
                let _ = umount2(m, MntFlags::MNT_DETACH);
            }
        }
    }
    let left = mounts_under(dir)?;
    if left.is_empty() {
        Ok(())
    } else {
        bail!("still mounted after unmounting: {left:?}")
    }
}

#[cfg(test)]
mod leftover_tests {
    #[test]
    fn entries_of_a_missing_directory_is_an_error() {
        let dir = std::env::temp_dir().join(format!("crius-missing-{}", super::random_hex(8)));
        let error = super::entries_of(&dir).expect_err("a missing directory must not pass");
        assert!(format!("{error:#}").contains("leftover check"));
    }

    #[test]
    fn cgroups_named_walks_every_hierarchy() -> anyhow::Result<()> {
        let root = std::env::temp_dir().join(format!("crius-cg-{}", super::random_hex(8)));
        for dir in [
            "memory/crius/abc123",
            "cpu,cpuacct/kubepods/pod/abc123",
            "unified/x",
        ] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        let found = super::cgroups_named(&root, "abc123")?;
        std::fs::remove_dir_all(&root)?;
        assert_eq!(
            found,
            vec![
                root.join("cpu,cpuacct/kubepods/pod/abc123"),
                root.join("memory/crius/abc123")
            ]
        );
        assert!(super::cgroups_named(&root, "abc123").is_err());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(unescape_mountinfo(r"/a\040b"), "/a b");
        assert_eq!(unescape_mountinfo(r"/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/x\\"), r"/x\\");
    }

    #[test]
    fn stat_parsing() {
        let s = "123 (a b) c) S 45 123 123 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 0 0";
        assert_eq!(stat_state(s), Some('S'));
        assert_eq!(stat_ppid(s), Some(45));
    }
}
