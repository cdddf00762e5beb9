//! The .deb end to end: `scripts/package --profile dev --no-build` packs the crius this test
//! build made (no extra compile), `dpkg -i` installs it, `crius --version`, `crius config
//! check` and `crius doctor --json` run from it, the installed units pass
//! `systemd-analyze verify`, and `dpkg --purge` removes every file it installed. Needs root,
//! dpkg and cargo-deb (scripts/package installs it when absent).

// Helpers here may panic: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

const CRIUS: &str = env!("CARGO_BIN_EXE_crius");

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace holds shim/")
        .to_path_buf()
}

fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    println!(
        "$ {cmd:?}\n{}{}(exit {})",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        out.status
    );
    Ok(out)
}

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", "crius"])
        .output()
        .is_ok_and(|o| o.stdout == b"installed")
}

/// dpkg, waiting for another dpkg or apt (e.g. a concurrent install-deps) to let go of its
/// lock instead of failing on it.
fn dpkg(args: &[&str]) -> Result<Output> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let out = run(Command::new("dpkg").args(args))?;
        let locked = String::from_utf8_lossy(&out.stderr).contains("lock");
        if out.status.success() || !locked || Instant::now() > deadline {
            return Ok(out);
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[test]
fn the_deb_installs_runs_and_purges_cleanly() -> Result<()> {
    ensure!(nix::unistd::geteuid().is_root(), "needs root (dpkg -i)");
    if installed() {
        bail!(
            "a crius package is installed already; this test would remove it (dpkg --purge crius)"
        );
    }
    let out_dir = tempfile::tempdir()?;
    // The binary the test build made: <target>/debug/crius.
    let target = Path::new(CRIUS)
        .parent()
        .and_then(Path::parent)
        .context("target dir")?;
    let packed = run(Command::new(workspace().join("scripts/package"))
        .args(["--profile", "dev", "--no-build", "--output"])
        .arg(out_dir.path())
        .env("CARGO_TARGET_DIR", target))?;
    ensure!(packed.status.success(), "scripts/package failed");
    let deb = String::from_utf8_lossy(&packed.stdout)
        .lines()
        .last()
        .map(str::to_string)
        .context("scripts/package printed no path")?;

    let result = install_and_check(&deb);
    // Purge whatever happened above, and check that nothing is left.
    let files: Vec<PathBuf> = run(Command::new("dpkg").args(["-L", "crius"]))
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(PathBuf::from)
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    let purged = dpkg(&["--purge", "crius"])?;
    result?;
    ensure!(purged.status.success(), "dpkg --purge crius failed");
    ensure!(!installed(), "still installed after the purge");
    ensure!(files.len() >= 10, "the package listed only {files:?}");
    let left: Vec<&PathBuf> = files.iter().filter(|p| p.exists()).collect();
    ensure!(left.is_empty(), "left behind after the purge: {left:?}");
    ensure!(
        !Path::new("/etc/crius").exists(),
        "/etc/crius is left behind"
    );
    Ok(())
}

fn install_and_check(deb: &str) -> Result<()> {
    let out = dpkg(&["-i", deb])?;
    ensure!(out.status.success(), "dpkg -i {deb} failed");

    let version = run(Command::new("/usr/bin/crius").arg("--version"))?;
    ensure!(
        version.status.success()
            && String::from_utf8_lossy(&version.stdout).starts_with("crius 0."),
        "crius --version"
    );
    let check =
        run(Command::new("/usr/bin/crius").args(["config", "check", "/etc/crius/config.toml"]))?;
    ensure!(
        check.status.success(),
        "the installed default configuration does not check"
    );

    // 0: nothing failed, 1: a check failed on this node; 2 would mean doctor could not run.
    let doctor = run(Command::new("/usr/bin/crius").args(["doctor", "--json"]))?;
    let code = doctor.status.code();
    ensure!(
        matches!(code, Some(0 | 1)),
        "crius doctor --json exited {code:?}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&doctor.stdout).context("crius doctor --json printed no JSON")?;
    let checks = report["checks"].as_array().context("no checks")?;
    ensure!(checks.len() >= 15, "{report}");
    let errors = checks.iter().filter(|c| c["status"] == "error").count();
    ensure!(
        report["errors"] == errors && (errors == 0) == (code == Some(0)),
        "the exit status and the error count disagree: {report}"
    );
    for check in checks {
        ensure!(
            check["name"].is_string() && check["detail"].is_string(),
            "{check}"
        );
        if check["status"] != "ok" {
            ensure!(check["fix"].is_string(), "no fix for {check}");
        }
    }

    for shipped in [
        "/lib/systemd/system/crius.service",
        "/lib/systemd/system/crius.socket",
        "/usr/share/man/man8/crius.8.gz",
        "/usr/share/bash-completion/completions/crius",
        "/usr/share/doc/crius/examples/crictl.yaml",
        "/etc/crius/config.d/README",
    ] {
        ensure!(Path::new(shipped).is_file(), "{shipped} is not installed");
    }
    ensure!(
        !Path::new("/etc/crictl.yaml").exists() || !owned_by_crius("/etc/crictl.yaml"),
        "the package must not install /etc/crictl.yaml"
    );
    let verify = run(Command::new("systemd-analyze").args([
        "verify",
        "--man=no",
        "/lib/systemd/system/crius.service",
        "/lib/systemd/system/crius.socket",
    ]))?;
    ensure!(
        verify.status.success() && verify.stderr.is_empty(),
        "the installed units do not verify"
    );
    Ok(())
}

fn owned_by_crius(path: &str) -> bool {
    Command::new("dpkg")
        .args(["-S", path])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).starts_with("crius:"))
}
