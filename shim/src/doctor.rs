//! `crius doctor`: node preflight checks, each with a fix hint.

use std::path::Path;

use crate::cgroups::CgroupDriver;
use crate::config::Config;
use crate::security::{find_apparmor_parser, AppArmorHost, DEFAULT_APPARMOR_PROFILE};

struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
    fix: &'static str,
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// AppArmor, and whether crius can load its profile for `runtime/default` at start.
fn apparmor_check() -> Check {
    let host = AppArmorHost::detect(Path::new("/sys"));
    let (ok, detail) = if !host.enabled {
        (
            true,
            "not available: localhost/ profiles will be refused".to_string(),
        )
    } else if host.is_loaded(DEFAULT_APPARMOR_PROFILE) {
        (true, format!("enabled; {DEFAULT_APPARMOR_PROFILE} loaded"))
    } else if let Some(parser) = find_apparmor_parser() {
        let detail = format!(
            "enabled; crius loads {DEFAULT_APPARMOR_PROFILE} at start with {}",
            parser.display()
        );
        (true, detail)
    } else {
        let detail = format!(
            "enabled, but {DEFAULT_APPARMOR_PROFILE} is not loaded and apparmor_parser is missing: \
             runtime/default containers will be refused"
        );
        (false, detail)
    };
    Check {
        name: "apparmor",
        ok,
        detail,
        fix: "install apparmor_parser (package apparmor) so crius can load its profile at start",
    }
}

pub fn run(config: &Config) -> anyhow::Result<()> {
    let swaps = read("/proc/swaps").unwrap_or_default();
    let swap_on = swaps.lines().count() > 1;
    let ip_forward = read("/proc/sys/net/ipv4/ip_forward").as_deref() == Some("1");
    let br_netfilter = Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists();
    let apparmor = apparmor_check();
    let systemd_pid1 = read("/proc/1/comm").as_deref() == Some("systemd");
    let driver_ok =
        config.cgroup_driver.is_systemd() == systemd_pid1 || !config.cgroup_driver.is_systemd();
    let backend_ok = match config.backend {
        crate::config::BackendKind::Containerd => {
            std::os::unix::net::UnixStream::connect(&config.containerd_address).is_ok()
        }
        crate::config::BackendKind::Docker => {
            let path = config.docker_endpoint.trim_start_matches("unix://");
            std::os::unix::net::UnixStream::connect(path).is_ok()
        }
    };
    let checks = [
        Check { name: "swap", ok: !swap_on, detail: if swap_on { "swap is on".into() } else { "off".into() }, fix: "swapoff -a (or configure kubelet's swap behaviour)" },
        Check { name: "ip_forward", ok: ip_forward, detail: format!("net.ipv4.ip_forward={}", if ip_forward { 1 } else { 0 }), fix: "sysctl -w net.ipv4.ip_forward=1" },
        Check { name: "br_netfilter", ok: br_netfilter, detail: if br_netfilter { "loaded".into() } else { "not loaded".into() }, fix: "modprobe br_netfilter" },
        Check { name: "cgroup driver", ok: driver_ok, detail: format!("crius uses {}, PID 1 is {}", config.cgroup_driver.name(), if systemd_pid1 { "systemd" } else { "not systemd" }), fix: "set cgroup_driver to match kubelet's cgroupDriver (kubelet >= 1.28 adopts crius's through RuntimeConfig)" },
        apparmor,
        Check { name: "backend", ok: backend_ok, detail: format!("{} reachable: {backend_ok}", config.backend.as_str()), fix: "start the backend or point --containerd-address/--docker-endpoint at it" },
    ];
    let mut failed = 0;
    for check in &checks {
        let mark = if check.ok { "ok  " } else { "FAIL" };
        println!("{mark} {:<14} {}", check.name, check.detail);
        if !check.ok {
            failed += 1;
            println!("     fix: {}", check.fix);
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} check(s) failed");
    }
    Ok(())
}
