//! A private `docker-registry` (distribution 2.8) on 127.0.0.1:<free port>.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::util::{
    require_program, require_root, run, run_stdout, wait_until, Daemon, TempDir, COMMAND_TIMEOUT,
};

/// User name of an auth-enabled registry.
pub const REGISTRY_USER: &str = "crius";
/// Password of an auth-enabled registry.
pub const REGISTRY_PASSWORD: &str = "crius-test-password";
/// Basic-auth realm of an auth-enabled registry.
pub const REGISTRY_REALM: &str = "crius-test-registry";

/// One access-log line: `127.0.0.1 - - [date] "GET /v2/... HTTP/1.1" 200 1234 "" "agent"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogEntry {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub user_agent: String,
}

/// A running private registry (storage and delete enabled, optional htpasswd basic auth).
/// Stopped and removed on [`Registry::shutdown`] or drop.
#[derive(Debug)]
pub struct Registry {
    dir: TempDir,
    daemon: Option<Daemon>,
    port: u16,
    auth: bool,
    down: bool,
}

impl Registry {
    /// Starts `docker-registry serve <dir>/config.yml` on a free 127.0.0.1 port and waits until
    /// `GET /v2/` answers 200 (or 401 with `auth`). With `auth`, basic auth through a bcrypt
    /// htpasswd file (`htpasswd -Bbn`) for [`REGISTRY_USER`]/[`REGISTRY_PASSWORD`].
    pub fn start(auth: bool) -> Result<Registry> {
        require_root()?;
        require_program("docker-registry")?;
        require_program("skopeo")?;
        if auth {
            require_program("htpasswd")?;
        }
        let dir = TempDir::new("reg")?;
        let d = dir.path().to_path_buf();
        fs::create_dir_all(d.join("data")).context("creating registry data dir")?;
        if auth {
            let line = run_stdout(
                Command::new("htpasswd").args(["-Bbn", REGISTRY_USER, REGISTRY_PASSWORD]),
                COMMAND_TIMEOUT,
            )?;
            fs::write(d.join("htpasswd"), line.trim_end().to_string() + "\n")
                .context("writing htpasswd")?;
        }
        fs::write(
            d.join("policy.json"),
            br#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .context("writing skopeo policy.json")?;
        let mut reg = Registry {
            dir,
            daemon: None,
            port: 0,
            auth,
            down: false,
        };
        let mut last_err = None;
        for _attempt in 0..5 {
            match reg.try_start() {
                Ok(()) => return Ok(reg),
                Err(e) => {
                    if let Some(mut dmn) = reg.daemon.take() {
                        let _ = dmn.kill9();
                    }
                    last_err = Some(e);
                }
            }
        }
        let e = last_err
            .map(|e| e.context("starting docker-registry"))
            .unwrap_or_else(|| anyhow::anyhow!("starting docker-registry"));
        let _ = reg.shutdown();
        Err(e)
    }

    fn try_start(&mut self) -> Result<()> {
        let d = self.dir.path().to_path_buf();
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
            l.local_addr().context("local_addr")?.port()
        };
        let auth = if self.auth {
            format!(
                "auth:\n  htpasswd:\n    realm: {REGISTRY_REALM}\n    path: {}\n",
                yaml_str(&d.join("htpasswd"))
            )
        } else {
            String::new()
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: crius-test-secret\n{auth}",
            yaml_str(&d.join("data"))
        );
        let cfg = d.join("config.yml");
        fs::write(&cfg, config).context("writing registry config.yml")?;
        // access log on stdout, application log on stderr
        let access = d.join("access.log");
        let app = d.join("registry.log");
        let out = fs::File::create(&access).context("creating access.log")?;
        let err = fs::File::create(&app).context("creating registry.log")?;
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve").arg(&cfg).stdout(out).stderr(err);
        let daemon = Daemon::spawn_with_stdio("docker-registry", cmd, &app)?;
        self.daemon = Some(daemon);
        self.port = port;
        wait_until(
            "docker-registry to answer GET /v2/",
            Duration::from_secs(15),
            Duration::from_millis(20),
            || {
                if let Some(dm) = self.daemon.as_mut() {
                    dm.check_running()?;
                }
                Ok(matches!(http_get_status(port, "/v2/"), Ok(200) | Ok(401)))
            },
        )
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `Some((user, password))` when auth is enabled.
    pub fn credentials(&self) -> Option<(&'static str, &'static str)> {
        self.auth.then_some((REGISTRY_USER, REGISTRY_PASSWORD))
    }

    /// `127.0.0.1:PORT/<repo_tag>`.
    pub fn image_ref(&self, repo_tag: &str) -> String {
        format!("{}/{}", self.addr(), repo_tag)
    }

    /// The registry's PID.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Daemon::pid)
    }

    /// Pushes the only image of an OCI archive to `<addr>/<dest>` (`dest` = `repo:tag`) with
    /// `skopeo copy --all --preserve-digests`. Returns the pushed reference. For archives that
    /// hold several images use [`Registry::push_oci_archive_ref`].
    pub fn push_oci_archive(&self, tar: &Path, dest: &str) -> Result<String> {
        self.push_source(&format!("oci-archive:{}", tar.display()), dest)
    }

    /// Pushes the image whose `org.opencontainers.image.ref.name` is `ref_name` (the tag, for
    /// mkimage.py archives; see `images.json`).
    pub fn push_oci_archive_ref(&self, tar: &Path, ref_name: &str, dest: &str) -> Result<String> {
        self.push_source(&format!("oci-archive:{}:{ref_name}", tar.display()), dest)
    }

    fn push_source(&self, source: &str, dest: &str) -> Result<String> {
        let target = self.image_ref(dest);
        let tmp = self.dir.path().join("skopeo-tmp");
        fs::create_dir_all(&tmp).context("creating skopeo tmp dir")?;
        let mut cmd = Command::new("skopeo");
        cmd.arg("--policy")
            .arg(self.dir.path().join("policy.json"))
            .args([
                "copy",
                "--all",
                "--preserve-digests",
                "--dest-tls-verify=false",
            ])
            .env("TMPDIR", &tmp)
            .env("REGISTRY_AUTH_FILE", self.dir.path().join("auth.json"));
        if let Some((u, p)) = self.credentials() {
            cmd.arg("--dest-creds").arg(format!("{u}:{p}"));
        }
        cmd.arg(source).arg(format!("docker://{target}"));
        run(&mut cmd, COMMAND_TIMEOUT).with_context(|| format!("pushing {source} to {target}"))?;
        Ok(target)
    }

    /// Path of the access log (one line per request).
    pub fn access_log_path(&self) -> PathBuf {
        self.dir.path().join("access.log")
    }

    /// The access log so far (request lines).
    pub fn log(&self) -> Result<String> {
        let p = self.access_log_path();
        fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
    }

    /// The registry's application log (stderr).
    pub fn app_log(&self) -> Result<String> {
        let p = self.dir.path().join("registry.log");
        fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
    }

    /// Parsed access-log entries so far.
    pub fn requests(&self) -> Result<Vec<AccessLogEntry>> {
        Ok(self.log()?.lines().filter_map(parse_access_line).collect())
    }

    /// Number of requests so far (a mark to count only later requests with `requests()[mark..]`).
    pub fn mark(&self) -> Result<usize> {
        Ok(self.requests()?.len())
    }

    /// Successful `GET /v2/<repo>/blobs/...` requests so far (layer and config downloads).
    pub fn blob_gets(&self, repo: &str) -> Result<usize> {
        self.blob_gets_since(repo, 0)
    }

    /// Successful blob GETs of `repo` after the `mark`-th request.
    pub fn blob_gets_since(&self, repo: &str, mark: usize) -> Result<usize> {
        let prefix = format!("/v2/{repo}/blobs/");
        Ok(self
            .requests()?
            .iter()
            .skip(mark)
            .filter(|r| {
                r.method == "GET" && r.path.starts_with(&prefix) && (200..400).contains(&r.status)
            })
            .count())
    }

    /// Stops the registry by PID and removes its dir. Idempotent.
    pub fn shutdown(&mut self) -> Result<()> {
        if self.down {
            return Ok(());
        }
        self.down = true;
        let mut errors = Vec::new();
        if let Some(mut d) = self.daemon.take() {
            if let Err(e) = d.terminate(Duration::from_secs(5)) {
                errors.push(format!("{e:#}"));
            }
        }
        if let Err(e) = self.dir.remove() {
            errors.push(format!("{e:#}"));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            bail!("registry shutdown: {}", errors.join("; "))
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("harness: {e:#}");
        }
    }
}

fn yaml_str(p: &Path) -> String {
    // a double-quoted YAML scalar; JSON string escaping is valid there
    serde_json::Value::String(p.to_string_lossy().into_owned()).to_string()
}

/// Status code of a plain-HTTP GET on 127.0.0.1:port.
pub fn http_get_status(port: u16, path: &str) -> Result<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .context("set_read_timeout")?;
    s.set_write_timeout(Some(Duration::from_secs(5)))
        .context("set_write_timeout")?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .context("sending request")?;
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    while !got.contains(&b'\n') && got.len() < 512 {
        let n = s.read(&mut buf).context("reading response")?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&got);
    let code = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .with_context(|| {
            format!(
                "bad HTTP status line {:?}",
                line.lines().next().unwrap_or_default()
            )
        })?;
    Ok(code)
}

fn parse_access_line(line: &str) -> Option<AccessLogEntry> {
    // 127.0.0.1 - - [23/Nov/2026:19:10:01 +0000] "GET /v2/ HTTP/1.1" 401 87 "" "skopeo/1.9.3"
    let q1 = line.find('"')?;
    let rest = &line[q1 + 1..];
    let q2 = rest.find('"')?;
    let mut req = rest[..q2].split_whitespace();
    let method = req.next()?.to_string();
    let path = req.next()?.to_string();
    let after = &rest[q2 + 1..];
    let status = after.split_whitespace().next()?.parse().ok()?;
    let user_agent = after.rsplit('"').nth(1).unwrap_or_default().to_string();
    Some(AccessLogEntry {
        method,
        path,
        status,
        user_agent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_line() {
        let e = parse_access_line(
            r#"127.0.0.1 - - [23/Nov/2026:19:10:01 +0000] "GET /v2/crius/busybox/blobs/sha256:ab HTTP/1.1" 200 87 "" "containerd/1.6""#,
        );
        assert_eq!(
            e,
            Some(AccessLogEntry {
                method: "GET".into(),
                path: "/v2/crius/busybox/blobs/sha256:ab".into(),
                status: 200,
                user_agent: "containerd/1.6".into()
            })
        );
        assert_eq!(parse_access_line("time=\"x\" level=info msg=hi"), None);
    }
}
