//! Host-side helpers. The suite runs on the endpoint's node (log files, bind mounts and
//! cgroups are host paths), as critest does.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The namespace link of this process, e.g. `net:[4026531992]` for `kind = "net"`.
pub fn own_namespace(kind: &str) -> Result<String> {
    let link = format!("/proc/self/ns/{kind}");
    let target = std::fs::read_link(&link).with_context(|| format!("reading {link}"))?;
    Ok(target.to_string_lossy().into_owned())
}

/// Mounts a fresh tmpfs on `dir` and makes it a shared mount (peer group of its own), which
/// `rshared`/`rslave` bind mounts require of their source.
pub fn mount_shared_tmpfs(dir: &Path) -> Result<()> {
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("size=4m"),
    )
    .with_context(|| format!("mounting a tmpfs on {}", dir.display()))?;
    mount(
        None::<&str>,
        dir,
        None::<&str>,
        MsFlags::MS_SHARED | MsFlags::MS_REC,
        None::<&str>,
    )
    .with_context(|| format!("making {} a shared mount", dir.display()))?;
    Ok(())
}

/// Mounts a small tmpfs on `dir` (used to observe mount propagation into containers).
pub fn mount_tmpfs(dir: &Path) -> Result<()> {
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("size=1m"),
    )
    .with_context(|| format!("mounting a tmpfs on {}", dir.display()))
}

/// Lazily unmounts `dir`; a path that is not a mount point is not an error.
pub fn unmount(dir: &Path) -> Result<()> {
    match umount2(dir, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => bail!("unmounting {}: {e}", dir.display()),
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Sends `GET path` over HTTP/1.0 to `addr` and returns the whole response.
pub async fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<String> {
    http_request(addr, path, &[], timeout).await
}

/// Sends `GET path` with extra `headers` over HTTP/1.0 and returns the whole response.
pub async fn http_request(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, String)],
    timeout: Duration,
) -> Result<String> {
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&response).into_owned())
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result.with_context(|| format!("GET http://{addr}{path}")),
        Err(_) => bail!("GET http://{addr}{path}: no answer within {timeout:?}"),
    }
}

/// Retries `http_get` until it answers or `deadline` passes (servers in containers start
/// asynchronously).
pub async fn http_get_eventually(addr: SocketAddr, path: &str, within: Duration) -> Result<String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let attempt = http_get(addr, path, Duration::from_secs(2)).await;
        match attempt {
            Ok(response) if !response.is_empty() => return Ok(response),
            _ if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(_) => bail!("GET http://{addr}{path}: empty response"),
            Err(e) => return Err(e),
        }
    }
}

/// The v1 controller directories that hold `relative` (cgroup v1 hybrid) or the unified
/// directory (cgroup v2), whichever exist.
pub fn cgroup_dirs(relative: &str) -> Vec<std::path::PathBuf> {
    let relative = relative.trim_start_matches('/');
    let mut dirs = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        for entry in entries.flatten() {
            let dir = entry.path().join(relative);
            if dir.is_dir() {
                dirs.push(dir);
            }
        }
    }
    let unified = Path::new("/sys/fs/cgroup").join(relative);
    if unified.is_dir() && !dirs.contains(&unified) {
        dirs.push(unified);
    }
    dirs
}

/// Whether PID 1 is systemd (the systemd cgroup driver can only work then).
pub fn systemd_is_init() -> bool {
    std::fs::read_to_string("/proc/1/comm")
        .map(|comm| comm.trim() == "systemd")
        .unwrap_or(false)
}
