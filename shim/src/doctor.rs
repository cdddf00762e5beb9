//! `crius doctor`: node preflight checks, each with a result, what was found and a fix.
//!
//! Every check reads the node through [`Host`], whose root is `/` on a real node and a
//! fixture tree in the tests, so each check is shown to fail on a fake host. What cannot be
//! read from files (the backend's answers, an overlay mount) is gathered first and handed
//! to the checks as facts.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Serialize;

use crate::cgroups::CgroupDriver;
use crate::config::{BackendKind, Config, DoctorArgs};
use crate::security::{AppArmorHost, DEFAULT_APPARMOR_PROFILE};

/// Oldest backends crius is tested with: containerd 1.6, Docker Engine 20.10 (API 1.41).
const MIN_CONTAINERD: (u32, u32) = (1, 6);
const MIN_DOCKER_API: (u32, u32) = (1, 41);
/// runc 1.1 is the oldest with `runc features`; 1.2 brings idmapped mounts.
const MIN_RUNC: (u32, u32) = (1, 1);
/// kubelet takes the cgroup driver from the runtime (RuntimeConfig) from 1.28 on.
const KUBELET_DRIVER_FROM_CRI: (u32, u32) = (1, 28);
const BACKEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Where programs are looked up, relative to the host root.
const PROGRAM_DIRS: [&str; 6] = [
    "usr/local/sbin",
    "usr/local/bin",
    "usr/sbin",
    "usr/bin",
    "sbin",
    "bin",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warning,
    Error,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it; absent when the check passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }
    fn warning(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Warning,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    fn error(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Error,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// The node as seen from `root` (`/`, or a fixture tree).
#[derive(Debug, Clone)]
pub struct Host {
    root: PathBuf,
}

impl Host {
    pub fn new(root: impl Into<PathBuf>) -> Host {
        Host { root: root.into() }
    }

    /// An absolute node path below the root.
    fn path(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        self.root.join(path.strip_prefix("/").unwrap_or(path))
    }

    fn read(&self, path: impl AsRef<Path>) -> Option<String> {
        std::fs::read_to_string(self.path(path)).ok()
    }

    fn program(&self, name: &str) -> Option<PathBuf> {
        PROGRAM_DIRS
            .iter()
            .map(|dir| self.root.join(dir).join(name))
            .find(|p| p.is_file())
    }

    /// stdout of `program args…`, when it ran and succeeded.
    fn output(&self, program: &Path, args: &[&str]) -> Result<String, String> {
        let out = Command::new(program)
            .args(args)
            .output()
            .map_err(|e| format!("{} {}: {e}", program.display(), args.join(" ")))?;
        if !out.status.success() {
            return Err(format!(
                "{} {} failed: {}",
                program.display(),
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// What kubelet says about itself on this node.
#[derive(Debug, Clone, Default)]
struct Kubelet {
    /// Top-level keys of its configuration file, when the file exists.
    settings: Option<BTreeMap<String, String>>,
    config_path: PathBuf,
    /// `kubelet --version`, as (major, minor).
    version: Option<(u32, u32)>,
}

impl Kubelet {
    fn read(host: &Host, config_path: &Path) -> Kubelet {
        let version = host
            .program("kubelet")
            .and_then(|k| host.output(&k, &["--version"]).ok())
            .and_then(|text| parse_version(text.trim().trim_start_matches("Kubernetes ")));
        Kubelet {
            settings: host.read(config_path).map(|t| top_level_yaml(&t)),
            config_path: config_path.to_path_buf(),
            version,
        }
    }

    fn setting(&self, key: &str) -> Option<&str> {
        self.settings.as_ref()?.get(key).map(String::as_str)
    }
}

/// Top-level `key: scalar` pairs of a YAML document, which is all doctor needs of kubelet's
/// configuration (`cgroupDriver`, `failSwapOn`, `failCgroupV1`).
fn top_level_yaml(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with([' ', '\t', '#', '-']) {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.split(" #").next().unwrap_or_default().trim();
        let value = value.trim_matches(|c| c == '"' || c == '\'');
        if !value.is_empty() {
            out.insert(key.trim().to_string(), value.to_string());
        }
    }
    out
}

/// `v1.30.2`, `1.6.20`, `1.1.5+ds1`, `2.0.0-rc.1` → (major, minor).
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let text = text.trim().trim_start_matches('v');
    let mut parts = text.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

// ------------------------------------------------------------------ kernel and sysctls

fn module_overlay(host: &Host) -> Check {
    let name = "module-overlay";
    let fix = "modprobe overlay; echo overlay >> /etc/modules-load.d/crius.conf";
    let listed = host.read("/proc/filesystems").is_some_and(|t| {
        t.lines()
            .any(|l| l.split_whitespace().last() == Some("overlay"))
    });
    if listed {
        Check::ok(name, "overlay filesystem available")
    } else {
        Check::error(
            name,
            "overlay is not in /proc/filesystems: image layers cannot be mounted",
            fix,
        )
    }
}

fn module_br_netfilter(host: &Host) -> Check {
    let name = "module-br_netfilter";
    let loaded = host.path("/sys/module/br_netfilter").exists()
        || host.path("/proc/sys/net/bridge").is_dir();
    if loaded {
        Check::ok(name, "loaded")
    } else {
        Check::error(
            name,
            "not loaded: traffic between pods on a bridge bypasses iptables (Services break)",
            "modprobe br_netfilter; echo br_netfilter >> /etc/modules-load.d/crius.conf",
        )
    }
}

fn sysctl(host: &Host, name: &'static str, key: &str, hint: &str) -> Check {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let persist =
        format!("sysctl -w {key}=1; echo '{key} = 1' >> /etc/sysctl.d/99-kubernetes.conf");
    match host.read(&path).map(|v| v.trim().to_string()) {
        Some(v) if v == "1" => Check::ok(name, format!("{key} = 1")),
        Some(v) => Check::error(name, format!("{key} = {v}: {hint}"), persist),
        None => Check::error(
            name,
            format!("{key} does not exist (is br_netfilter loaded?): {hint}"),
            format!("modprobe br_netfilter; {persist}"),
        ),
    }
}

fn ip_forward(host: &Host) -> Check {
    sysctl(
        host,
        "sysctl-ip_forward",
        "net.ipv4.ip_forward",
        "pods cannot reach anything beyond the node",
    )
}

fn bridge_nf_call_iptables(host: &Host) -> Check {
    sysctl(
        host,
        "sysctl-bridge-nf-call-iptables",
        "net.bridge.bridge-nf-call-iptables",
        "Service traffic between pods on one node is not NATed",
    )
}

// ------------------------------------------------------------------ swap and cgroups

fn swap(host: &Host, kubelet: &Kubelet) -> Check {
    let name = "swap";
    let devices = host
        .read("/proc/swaps")
        .map(|t| t.lines().skip(1).filter(|l| !l.trim().is_empty()).count())
        .unwrap_or(0);
    if devices == 0 {
        return Check::ok(name, "off");
    }
    let detail = format!("on ({devices} device(s))");
    match (&kubelet.settings, kubelet.setting("failSwapOn")) {
        (Some(_), Some("false")) => Check::ok(
            name,
            format!("{detail}; kubelet allows it (failSwapOn: false)"),
        ),
        (Some(_), _) => Check::error(
            name,
            format!(
                "{detail}, and {} leaves failSwapOn true: kubelet refuses to start",
                kubelet.config_path.display()
            ),
            "swapoff -a (and remove swap from /etc/fstab), or set failSwapOn: false and \
             memorySwap.swapBehavior in kubelet's configuration",
        ),
        (None, _) => Check::warning(
            name,
            format!("{detail}; kubelet's default failSwapOn: true refuses to start with swap"),
            "swapoff -a (and remove swap from /etc/fstab), or plan failSwapOn: false for kubelet",
        ),
    }
}

fn cgroup_version(host: &Host, kubelet: &Kubelet) -> Check {
    let name = "cgroup-version";
    let root = host.path("/sys/fs/cgroup");
    match crate::cgroups::CgroupLayout::detect(&root) {
        Ok(crate::cgroups::CgroupLayout::V2 { .. }) => Check::ok(name, "v2 (unified)"),
        Ok(layout) => {
            let kind = match layout {
                crate::cgroups::CgroupLayout::Hybrid { .. } => "v1 (hybrid)",
                _ => "v1",
            };
            let fix = "boot with systemd.unified_cgroup_hierarchy=1 (cgroup v2)";
            if kubelet.setting("failCgroupV1") == Some("true") {
                Check::error(
                    name,
                    format!("{kind}, and kubelet's failCgroupV1: true refuses it"),
                    fix,
                )
            } else {
                Check::warning(
                    name,
                    format!(
                        "{kind}: Kubernetes keeps cgroup v1 in maintenance mode and newer \
                         kubelets refuse it unless failCgroupV1 is false"
                    ),
                    fix,
                )
            }
        }
        Err(e) => Check::error(
            name,
            format!("no cgroup filesystem: {e}"),
            "mount cgroup2 at /sys/fs/cgroup",
        ),
    }
}

fn cgroup_driver(host: &Host, config: &Config, kubelet: &Kubelet) -> Check {
    let name = "cgroup-driver";
    let ours = config.cgroup_driver.name();
    let systemd_pid1 = host
        .read("/proc/1/comm")
        .is_some_and(|c| c.trim() == "systemd");
    if config.cgroup_driver.is_systemd() && !systemd_pid1 {
        return Check::error(
            name,
            "crius uses systemd, but systemd is not PID 1: no unit can be created for a pod",
            "set cgroup_driver = \"cgroupfs\" (and cgroupDriver: cgroupfs for kubelet)",
        );
    }
    let theirs = kubelet.setting("cgroupDriver").unwrap_or("cgroupfs");
    let Some(_) = kubelet.settings else {
        return Check::ok(
            name,
            format!(
                "crius uses {ours}; no kubelet configuration yet \
                 (kubelet >= 1.28 can adopt crius's)"
            ),
        );
    };
    if theirs == ours {
        return Check::ok(name, format!("crius and kubelet both use {ours}"));
    }
    let fix = format!(
        "set cgroupDriver: {ours} in {} (or cgroup_driver = \"{theirs}\" for crius)",
        kubelet.config_path.display()
    );
    let detail = format!("crius uses {ours}, kubelet's configuration says {theirs}");
    match kubelet.version {
        Some(v) if v >= KUBELET_DRIVER_FROM_CRI => Check::warning(
            name,
            format!(
                "{detail}; kubelet {}.{} takes crius's through RuntimeConfig when its \
                 KubeletCgroupDriverFromCRI feature is on",
                v.0, v.1
            ),
            fix,
        ),
        Some(v) => Check::error(
            name,
            format!(
                "{detail}; kubelet {}.{} (< 1.28) uses its own: pods fail to start",
                v.0, v.1
            ),
            fix,
        ),
        None => Check::error(
            name,
            format!("{detail}; kubelet's version is unknown, so it may not adopt crius's"),
            fix,
        ),
    }
}

// ------------------------------------------------------------------ storage and network

/// Mounting an overlay on the filesystem of crius's root, the way snapshots are mounted.
pub type OverlayProbe = fn(&Path) -> Result<(), String>;

fn overlayfs(host: &Host, config: &Config, probe: OverlayProbe) -> Check {
    let name = "overlayfs";
    let fix = "put the backend's and crius's roots on ext4 or xfs (ftype=1)";
    let mut dir = host.path(&config.root);
    while !dir.is_dir() {
        match dir.parent() {
            Some(parent) => dir = parent.to_path_buf(),
            None => break,
        }
    }
    match probe(&dir) {
        Ok(()) => Check::ok(name, format!("an overlay mounts on {}", dir.display())),
        Err(e) => Check::error(
            name,
            format!("an overlay does not mount on {}: {e}", dir.display()),
            fix,
        ),
    }
}

/// Mounts a one-directory overlay in a scratch directory under `dir` and removes it again.
pub fn probe_overlay(dir: &Path) -> Result<(), String> {
    struct Scratch(PathBuf);
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0.join("merged"), nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let scratch = Scratch(dir.join(format!(".crius-doctor-{}", std::process::id())));
    for sub in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir_all(scratch.0.join(sub))
            .map_err(|e| format!("creating a scratch directory: {e}"))?;
    }
    let p = |sub: &str| scratch.0.join(sub).display().to_string();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        p("lower"),
        p("upper"),
        p("work")
    );
    nix::mount::mount(
        Some("overlay"),
        &scratch.0.join("merged"),
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(scratch.0.join("merged/probe"), b"x")
        .map_err(|e| format!("writing through the overlay: {e}"))?;
    Ok(())
}

fn cni(host: &Host, config: &Config) -> Check {
    let name = "cni";
    let conf_dir = host.path(&config.cni_conf_dir);
    let loaded = crate::network::load_dir(&conf_dir);
    let Some(network) = loaded.network else {
        if config.cni_default_network {
            return Check::ok(
                name,
                "no CNI configuration; crius provides its default network",
            );
        }
        let problems = if loaded.problems.is_empty() {
            String::new()
        } else {
            format!(" ({})", loaded.problems.join("; "))
        };
        return Check::warning(
            name,
            format!(
                "no usable network configuration in {}{problems}: pods get only loopback \
                 until one appears",
                config.cni_conf_dir.display()
            ),
            "install the cluster's network add-on (it writes the configuration), or set \
             cni_default_network = true",
        );
    };
    let missing: Vec<&str> = network
        .plugins
        .iter()
        .filter_map(crate::network::plugin_type)
        .filter(|plugin| {
            !config
                .cni_bin_dirs
                .iter()
                .any(|dir| host.path(dir).join(plugin).is_file())
        })
        .collect();
    let dirs = config
        .cni_bin_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if missing.is_empty() {
        Check::ok(
            name,
            format!(
                "network {:?} from {}; its plugins are in {dirs}",
                network.name, network.source
            ),
        )
    } else {
        Check::error(
            name,
            format!(
                "network {:?} needs plugin(s) {} that are in none of {dirs}",
                network.name,
                missing.join(", ")
            ),
            "install the CNI plugins (Debian: containernetworking-plugins) or add their \
             directory to cni_bin_dirs",
        )
    }
}

// ------------------------------------------------------------------ backend, runc, images

/// What the backend answered (gathered before the checks run).
#[derive(Debug, Clone)]
pub struct BackendFacts {
    /// `Ok((engine version, api version))`, or why it could not be asked.
    pub version: Result<(String, Option<String>), String>,
    /// Whether the pause image is present; `None` when that could not be asked.
    pub pause_present: Option<bool>,
}

fn backend(config: &Config, facts: &BackendFacts) -> Check {
    let name = "backend";
    let kind = config.backend;
    let where_ = match kind {
        BackendKind::Containerd => config.containerd_address.display().to_string(),
        BackendKind::Docker => config.docker_endpoint.clone(),
    };
    let (version, api) = match &facts.version {
        Ok(v) => v,
        Err(e) => {
            return Check::error(
                name,
                format!("{kind} at {where_} does not answer: {e}"),
                format!("start {kind} (systemctl start {kind}), or point crius at its socket"),
            )
        }
    };
    let (supported, need) = match kind {
        BackendKind::Containerd => (
            parse_version(version).is_some_and(|v| v >= MIN_CONTAINERD),
            "containerd >= 1.6",
        ),
        BackendKind::Docker => (
            api.as_deref()
                .and_then(parse_version)
                .is_some_and(|v| v >= MIN_DOCKER_API),
            "Docker Engine >= 20.10 (API 1.41)",
        ),
    };
    let api_text = api
        .as_ref()
        .map(|a| format!(" (API {a})"))
        .unwrap_or_default();
    if supported {
        Check::ok(name, format!("{kind} {version}{api_text} at {where_}"))
    } else {
        Check::error(
            name,
            format!("{kind} {version}{api_text} is older than crius supports ({need})"),
            format!("upgrade to {need}"),
        )
    }
}

fn runc(host: &Host) -> Check {
    let name = "runc";
    let Some(binary) = host.program("runc") else {
        return Check::error(
            name,
            "runc is not installed: no container can start",
            "apt-get install runc (1.1 or newer)",
        );
    };
    let version_text = match host.output(&binary, &["--version"]) {
        Ok(t) => t,
        Err(e) => return Check::error(name, e, "reinstall runc"),
    };
    let version = version_text
        .lines()
        .find_map(|l| l.strip_prefix("runc version "))
        .unwrap_or("unknown")
        .trim()
        .to_string();
    if parse_version(&version).is_none_or(|v| v < MIN_RUNC) {
        return Check::error(
            name,
            format!("runc {version} is older than 1.1"),
            "install runc 1.1 or newer",
        );
    }
    let features = host
        .output(&binary, &["features"])
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    let Some(features) = features else {
        return Check::ok(name, format!("runc {version} (no `runc features` report)"));
    };
    let enabled = |pointer: &str| {
        features
            .pointer(pointer)
            .and_then(serde_json::Value::as_bool)
            == Some(true)
    };
    let mut on = Vec::new();
    let mut off = Vec::new();
    for (label, pointer) in [
        ("seccomp", "/linux/seccomp/enabled"),
        ("apparmor", "/linux/apparmor/enabled"),
        ("selinux", "/linux/selinux/enabled"),
        ("cgroup v2", "/linux/cgroup/v2"),
        ("systemd cgroups", "/linux/cgroup/systemd"),
        ("idmapped mounts", "/linux/mountExtensions/idmap/enabled"),
    ] {
        if enabled(pointer) {
            on.push(label);
        } else {
            off.push(label);
        }
    }
    let rro = features
        .get("mountOptions")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|o| o.iter().any(|v| v == "rro"));
    if rro {
        on.push("recursive read-only mounts");
    } else {
        off.push("recursive read-only mounts");
    }
    let mut detail = format!("runc {version}: {}", on.join(", "));
    if !off.is_empty() {
        let _ =
            std::fmt::Write::write_fmt(&mut detail, format_args!("; without {}", off.join(", ")));
    }
    if !enabled("/linux/seccomp/enabled") {
        return Check::error(
            name,
            format!("{detail}: RuntimeDefault seccomp cannot be enforced"),
            "install a runc built with libseccomp",
        );
    }
    Check::ok(name, detail)
}

fn pause_image(config: &Config, facts: &BackendFacts) -> Check {
    let name = "pause-image";
    let Some(present) = facts.pause_present else {
        return Check::warning(
            name,
            "not checked: the backend did not answer",
            "start the backend and run crius doctor again",
        );
    };
    match (&config.pause_image, present) {
        (_, true) => Check::ok(
            name,
            format!(
                "{} present",
                config
                    .pause_image
                    .as_deref()
                    .unwrap_or(crate::pause::BUILTIN_PAUSE_IMAGE)
            ),
        ),
        (None, false) => Check::ok(
            name,
            format!(
                "{} (built in) is imported when crius starts",
                crate::pause::BUILTIN_PAUSE_IMAGE
            ),
        ),
        (Some(image), false) => Check::error(
            name,
            format!("{image} is not present: every RunPodSandbox fails until it is"),
            format!(
                "pull it into the backend (crictl pull {image}), or leave pause_image unset \
                 for the built-in image"
            ),
        ),
    }
}

// ------------------------------------------------------------------ socket and security

fn socket(host: &Host, config: &Config) -> Check {
    let name = "socket";
    let path = host.path(&config.listen);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(meta) => meta,
        Err(_) => {
            return Check::ok(
                name,
                format!(
                    "{} does not exist yet (crius is not running)",
                    config.listen.display()
                ),
            )
        }
    };
    let fix = format!(
        "stop whatever made {p} and start crius (it creates the socket 0660 root:root), or set \
         SocketMode=0660 in crius.socket",
        p = config.listen.display()
    );
    if !meta.file_type().is_socket() {
        return Check::error(
            name,
            format!("{} exists but is not a socket", config.listen.display()),
            fix,
        );
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o007 != 0 || meta.uid() != 0 {
        return Check::error(
            name,
            format!(
                "{} has mode {mode:04o} owner uid {}: others than root and its group can run \
                 containers",
                config.listen.display(),
                meta.uid()
            ),
            fix,
        );
    }
    Check::ok(
        name,
        format!(
            "{} mode {mode:04o} owner uid {} gid {}",
            config.listen.display(),
            meta.uid(),
            meta.gid()
        ),
    )
}

fn apparmor(host: &Host) -> Check {
    let name = "apparmor";
    let apparmor = AppArmorHost::detect(&host.path("/sys"));
    if !apparmor.enabled {
        return Check::ok(
            name,
            "not enabled in the kernel: localhost/ profiles are refused, runtime/default runs \
             without one",
        );
    }
    if apparmor.is_loaded(DEFAULT_APPARMOR_PROFILE) {
        return Check::ok(name, format!("enabled; {DEFAULT_APPARMOR_PROFILE} loaded"));
    }
    match host.program("apparmor_parser") {
        Some(parser) => Check::ok(
            name,
            format!(
                "enabled; crius loads {DEFAULT_APPARMOR_PROFILE} at start with {}",
                parser.display()
            ),
        ),
        None => Check::error(
            name,
            format!(
                "enabled, but {DEFAULT_APPARMOR_PROFILE} is not loaded and apparmor_parser is \
                 missing: runtime/default containers are refused"
            ),
            "apt-get install apparmor (for apparmor_parser)",
        ),
    }
}

fn selinux(host: &Host) -> Check {
    let name = "selinux";
    match host
        .read("/sys/fs/selinux/enforce")
        .map(|v| v.trim().to_string())
    {
        None => Check::ok(name, "not enabled"),
        Some(v) if v == "0" => Check::ok(
            name,
            "permissive: labels kubelet sends are applied, nothing is denied",
        ),
        Some(_) => Check::warning(
            name,
            "enforcing: crius applies the labels kubelet sends (seLinuxOptions) but sets none of \
             its own, so other pods run with the backend's default label",
            "install the container-selinux policy, give pods seLinuxOptions, or run permissive \
             (setenforce 0)",
        ),
    }
}

// ------------------------------------------------------------------ gathering and running

/// Everything doctor checks, in the order it prints them.
pub fn checks(
    host: &Host,
    config: &Config,
    kubelet_config: &Path,
    facts: &BackendFacts,
    overlay_probe: OverlayProbe,
) -> Vec<Check> {
    let kubelet = Kubelet::read(host, kubelet_config);
    vec![
        module_overlay(host),
        module_br_netfilter(host),
        ip_forward(host),
        bridge_nf_call_iptables(host),
        swap(host, &kubelet),
        cgroup_version(host, &kubelet),
        cgroup_driver(host, config, &kubelet),
        overlayfs(host, config, overlay_probe),
        cni(host, config),
        backend(config, facts),
        runc(host),
        pause_image(config, facts),
        socket(host, config),
        apparmor(host),
        selinux(host),
    ]
}

/// Makes a client of the configured backend (`main.rs` names the implementations).
pub type Connect<'a> =
    &'a dyn Fn(&Config) -> Result<std::sync::Arc<dyn runtime_backends::Backend>, String>;

/// Asks the configured backend for its version and for the pause image.
pub fn backend_facts(config: &Config, connect: Connect<'_>) -> BackendFacts {
    let pause = config
        .pause_image
        .clone()
        .unwrap_or_else(|| crate::pause::BUILTIN_PAUSE_IMAGE.to_string());
    match config.backend {
        BackendKind::Containerd => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    return BackendFacts {
                        version: Err(format!("cannot start an async runtime: {e}")),
                        pause_present: None,
                    }
                }
            };
            runtime.block_on(containerd_facts(config, &pause, connect))
        }
        BackendKind::Docker => docker_facts(&config.docker_endpoint, &pause),
    }
}

async fn containerd_facts(config: &Config, pause: &str, connect: Connect<'_>) -> BackendFacts {
    let unreachable = |e: String| BackendFacts {
        version: Err(e),
        pause_present: None,
    };
    if !config.containerd_address.exists() {
        return unreachable("no socket there".into());
    }
    let backend = match connect(config) {
        Ok(b) => b,
        Err(e) => return unreachable(e),
    };
    let version = match tokio::time::timeout(BACKEND_TIMEOUT, backend.version()).await {
        Ok(Ok(v)) => v.version,
        Ok(Err(e)) => return unreachable(e.to_string()),
        Err(_) => return unreachable(format!("no answer within {BACKEND_TIMEOUT:?}")),
    };
    let pause_present = match tokio::time::timeout(BACKEND_TIMEOUT, backend.image(pause)).await {
        Ok(Ok(found)) => Some(found.is_some()),
        _ => None,
    };
    BackendFacts {
        version: Ok((version, None)),
        pause_present,
    }
}

/// Docker Engine over its HTTP API (`GET /version`, `GET /images/{name}/json`).
fn docker_facts(endpoint: &str, pause: &str) -> BackendFacts {
    let version = docker_get(endpoint, "/version").and_then(|(code, body)| {
        if code != 200 {
            return Err(format!("GET /version answered {code}"));
        }
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("GET /version: {e}"))?;
        let text = |k: &str| {
            v.get(k)
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        };
        Ok((
            text("Version").unwrap_or_else(|| "unknown".into()),
            text("ApiVersion"),
        ))
    });
    let pause_present = version.as_ref().ok().and_then(|_| {
        docker_get(endpoint, &format!("/images/{pause}/json"))
            .ok()
            .map(|(code, _)| code == 200)
    });
    BackendFacts {
        version,
        pause_present,
    }
}

/// One HTTP/1.0 GET to a Docker endpoint: status code and body.
fn docker_get(endpoint: &str, path: &str) -> Result<(u16, String), String> {
    let request = format!("GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n");
    let mut answer = Vec::new();
    if let Some(socket) = endpoint.strip_prefix("unix://") {
        let mut s = std::os::unix::net::UnixStream::connect(socket).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(BACKEND_TIMEOUT))
            .map_err(|e| e.to_string())?;
        s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
        s.read_to_end(&mut answer).map_err(|e| e.to_string())?;
    } else if let Some(host) = endpoint
        .strip_prefix("tcp://")
        .or_else(|| endpoint.strip_prefix("http://"))
    {
        let mut s = std::net::TcpStream::connect(host).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(BACKEND_TIMEOUT))
            .map_err(|e| e.to_string())?;
        s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
        s.read_to_end(&mut answer).map_err(|e| e.to_string())?;
    } else {
        return Err("doctor reaches Docker over unix:// or plain tcp:// only".into());
    }
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or("an HTTP answer without a body")?;
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status code in {head:?}"))?;
    Ok((code, body.to_string()))
}

/// `crius doctor`: prints the checks (text or JSON). `Ok(true)` when none failed.
pub fn run(config: &Config, args: &DoctorArgs, connect: Connect<'_>) -> anyhow::Result<bool> {
    let host = Host::new("/");
    let facts = backend_facts(config, connect);
    let results = checks(&host, config, &args.kubelet_config, &facts, probe_overlay);
    let errors = results.iter().filter(|c| c.status == Status::Error).count();
    let warnings = results
        .iter()
        .filter(|c| c.status == Status::Warning)
        .count();
    let mut out = std::io::stdout().lock();
    if args.json {
        let doc = serde_json::json!({
            "checks": results,
            "errors": errors,
            "warnings": warnings,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        for check in &results {
            let mark = match check.status {
                Status::Ok => "ok  ",
                Status::Warning => "WARN",
                Status::Error => "FAIL",
            };
            writeln!(out, "{mark} {:<31} {}", check.name, check.detail)?;
            if let Some(fix) = &check.fix {
                writeln!(out, "     {:<31} fix: {fix}", "")?;
            }
        }
        writeln!(
            out,
            "{errors} failed, {warnings} warning(s), {} ok",
            results.len() - errors - warnings
        )?;
    }
    Ok(errors == 0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A fixture node: files written under a temp dir, and a configuration pointing into it.
    struct FakeHost {
        dir: tempfile::TempDir,
        host: Host,
    }

    impl FakeHost {
        fn new() -> FakeHost {
            let dir = tempfile::tempdir().unwrap();
            let host = Host::new(dir.path());
            FakeHost { dir, host }
        }

        fn write(&self, path: &str, text: &str) -> &FakeHost {
            let p = self.host.path(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
            self
        }

        /// An executable shell script at `path`.
        fn program(&self, path: &str, script: &str) -> &FakeHost {
            self.write(path, &format!("#!/bin/sh\n{script}\n"));
            let p = self.host.path(path);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            self
        }

        fn config(&self, args: &[&str]) -> Config {
            use clap::Parser;
            let absent = self.dir.path().join("absent.toml");
            std::fs::write(&absent, "").unwrap();
            let mut all = vec!["crius", "--config", absent.to_str().unwrap()];
            all.extend_from_slice(args);
            crate::config::load(&crate::config::Cli::try_parse_from(all).unwrap()).unwrap()
        }

        fn kubelet(&self) -> Kubelet {
            Kubelet::read(&self.host, Path::new("/var/lib/kubelet/config.yaml"))
        }
    }

    fn reachable(pause_present: bool) -> BackendFacts {
        BackendFacts {
            version: Ok(("1.6.20".into(), None)),
            pause_present: Some(pause_present),
        }
    }

    fn assert_status(check: &Check, status: Status) {
        assert_eq!(check.status, status, "{check:?}");
        if status != Status::Ok {
            assert!(
                check.fix.as_deref().is_some_and(|f| !f.is_empty()),
                "{check:?}"
            );
        }
    }

    #[test]
    fn overlay_module_missing_fails() {
        let f = FakeHost::new();
        f.write("/proc/filesystems", "nodev\tsysfs\nnodev\ttmpfs\n\text4\n");
        assert_status(&module_overlay(&f.host), Status::Error);
        f.write("/proc/filesystems", "nodev\tsysfs\nnodev\toverlay\n");
        assert_status(&module_overlay(&f.host), Status::Ok);
    }

    #[test]
    fn br_netfilter_missing_fails() {
        let f = FakeHost::new();
        assert_status(&module_br_netfilter(&f.host), Status::Error);
        f.write("/proc/sys/net/bridge/bridge-nf-call-iptables", "1\n");
        assert_status(&module_br_netfilter(&f.host), Status::Ok);
    }

    #[test]
    fn ip_forward_off_fails() {
        let f = FakeHost::new();
        f.write("/proc/sys/net/ipv4/ip_forward", "0\n");
        let check = ip_forward(&f.host);
        assert_status(&check, Status::Error);
        assert!(check.fix.unwrap().contains("net.ipv4.ip_forward=1"));
        f.write("/proc/sys/net/ipv4/ip_forward", "1\n");
        assert_status(&ip_forward(&f.host), Status::Ok);
    }

    #[test]
    fn bridge_nf_call_iptables_absent_or_off_fails() {
        let f = FakeHost::new();
        assert_status(&bridge_nf_call_iptables(&f.host), Status::Error);
        f.write("/proc/sys/net/bridge/bridge-nf-call-iptables", "0\n");
        assert_status(&bridge_nf_call_iptables(&f.host), Status::Error);
    }

    #[test]
    fn swap_on_fails_when_kubelet_refuses_it() {
        let f = FakeHost::new();
        let swaps = "Filename\tType\tSize\tUsed\tPriority\n/swapfile file 1024 0 -2\n";
        f.write("/proc/swaps", swaps);
        assert_status(&swap(&f.host, &f.kubelet()), Status::Warning);
        f.write(
            "/var/lib/kubelet/config.yaml",
            "kind: KubeletConfiguration\ncgroupDriver: systemd\n",
        );
        assert_status(&swap(&f.host, &f.kubelet()), Status::Error);
        f.write(
            "/var/lib/kubelet/config.yaml",
            "failSwapOn: false # allowed\n",
        );
        assert_status(&swap(&f.host, &f.kubelet()), Status::Ok);
        f.write("/proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n");
        assert_status(&swap(&f.host, &f.kubelet()), Status::Ok);
    }

    #[test]
    fn cgroup_v1_warns_and_fails_where_kubelet_refuses_it() {
        let f = FakeHost::new();
        assert_status(&cgroup_version(&f.host, &f.kubelet()), Status::Error);
        std::fs::create_dir_all(f.host.path("/sys/fs/cgroup/memory")).unwrap();
        assert_status(&cgroup_version(&f.host, &f.kubelet()), Status::Warning);
        f.write("/var/lib/kubelet/config.yaml", "failCgroupV1: true\n");
        assert_status(&cgroup_version(&f.host, &f.kubelet()), Status::Error);
        f.write("/sys/fs/cgroup/cgroup.controllers", "cpu memory\n");
        assert_status(&cgroup_version(&f.host, &f.kubelet()), Status::Ok);
    }

    #[test]
    fn cgroup_driver_mismatch_is_an_error_for_old_kubelets_and_a_warning_for_new() {
        let f = FakeHost::new();
        f.write("/proc/1/comm", "systemd\n");
        let config = f.config(&["--cgroup-driver", "systemd"]);
        assert_status(&cgroup_driver(&f.host, &config, &f.kubelet()), Status::Ok);
        f.write(
            "/var/lib/kubelet/config.yaml",
            "cgroupDriver: \"cgroupfs\"\n",
        );
        f.program("/usr/bin/kubelet", "echo Kubernetes v1.27.9");
        assert_status(
            &cgroup_driver(&f.host, &config, &f.kubelet()),
            Status::Error,
        );
        f.program("/usr/bin/kubelet", "echo Kubernetes v1.30.2");
        assert_status(
            &cgroup_driver(&f.host, &config, &f.kubelet()),
            Status::Warning,
        );
        f.write("/var/lib/kubelet/config.yaml", "cgroupDriver: systemd\n");
        assert_status(&cgroup_driver(&f.host, &config, &f.kubelet()), Status::Ok);
        // The systemd driver needs systemd as PID 1.
        f.write("/proc/1/comm", "init\n");
        assert_status(
            &cgroup_driver(&f.host, &config, &f.kubelet()),
            Status::Error,
        );
    }

    #[test]
    fn overlayfs_that_does_not_mount_fails() {
        let f = FakeHost::new();
        let config = f.config(&["--root", "/var/lib/crius"]);
        let check = overlayfs(&f.host, &config, |_| Err("wrong fs type".into()));
        assert_status(&check, Status::Error);
        assert!(
            check.detail.contains(&f.dir.path().display().to_string()),
            "probes the nearest existing directory: {check:?}"
        );
        assert_status(&overlayfs(&f.host, &config, |_| Ok(())), Status::Ok);
    }

    #[test]
    fn cni_without_config_warns_and_with_missing_plugins_fails() {
        let f = FakeHost::new();
        let config = f.config(&[
            "--cni-conf-dir",
            "/etc/cni/net.d",
            "--cni-bin-dirs",
            "/opt/cni/bin",
        ]);
        assert_status(&cni(&f.host, &config), Status::Warning);
        f.write(
            "/etc/cni/net.d/10-pods.conflist",
            r#"{"cniVersion": "1.0.0", "name": "pods",
                "plugins": [{"type": "bridge"}, {"type": "portmap"}]}"#,
        );
        f.program("/opt/cni/bin/bridge", "exit 0");
        let check = cni(&f.host, &config);
        assert_status(&check, Status::Error);
        assert!(check.detail.contains("portmap"), "{check:?}");
        f.program("/opt/cni/bin/portmap", "exit 0");
        assert_status(&cni(&f.host, &config), Status::Ok);
    }

    #[test]
    fn backend_unreachable_or_too_old_fails() {
        let f = FakeHost::new();
        let config = f.config(&[]);
        let down = BackendFacts {
            version: Err("connection refused".into()),
            pause_present: None,
        };
        assert_status(&backend(&config, &down), Status::Error);
        let old = BackendFacts {
            version: Ok(("v1.5.13".into(), None)),
            pause_present: Some(true),
        };
        assert_status(&backend(&config, &old), Status::Error);
        assert_status(&backend(&config, &reachable(true)), Status::Ok);
        let docker = f.config(&["--backend", "docker"]);
        let old_api = BackendFacts {
            version: Ok(("19.03.15".into(), Some("1.40".into()))),
            pause_present: Some(true),
        };
        assert_status(&backend(&docker, &old_api), Status::Error);
    }

    #[test]
    fn containerd_socket_missing_from_the_host_fails() {
        let f = FakeHost::new();
        let sock = f.dir.path().join("run/containerd/containerd.sock");
        let config = f.config(&["--containerd-address", sock.to_str().unwrap()]);
        let facts = backend_facts(&config, &|_: &Config| -> Result<
            std::sync::Arc<dyn runtime_backends::Backend>,
            String,
        > {
            Err("the test connects to nothing".into())
        });
        assert_status(&backend(&config, &facts), Status::Error);
        assert_eq!(facts.pause_present, None);
    }

    #[test]
    fn runc_missing_old_or_without_seccomp_fails() {
        let f = FakeHost::new();
        assert_status(&runc(&f.host), Status::Error);
        f.program("/usr/sbin/runc", "echo 'runc version 1.0.3'");
        assert_status(&runc(&f.host), Status::Error);
        let features = |seccomp: bool| {
            let report = serde_json::json!({
                "linux": {"seccomp": {"enabled": seccomp}, "cgroup": {"v2": true}},
                "mountOptions": ["rro"],
            });
            format!(
                "if [ \"$1\" = features ]; then echo '{report}'; else echo 'runc version 1.2.5'; fi"
            )
        };
        f.program("/usr/sbin/runc", &features(false));
        assert_status(&runc(&f.host), Status::Error);
        f.program("/usr/sbin/runc", &features(true));
        let check = runc(&f.host);
        assert_status(&check, Status::Ok);
        assert!(
            check.detail.contains("runc 1.2.5") && check.detail.contains("recursive read-only"),
            "{check:?}"
        );
    }

    #[test]
    fn a_configured_pause_image_that_is_absent_fails() {
        let f = FakeHost::new();
        let configured = f.config(&["--pause-image", "registry.k8s.io/pause:3.10"]);
        assert_status(&pause_image(&configured, &reachable(false)), Status::Error);
        assert_status(&pause_image(&configured, &reachable(true)), Status::Ok);
        let builtin = f.config(&[]);
        assert_status(&pause_image(&builtin, &reachable(false)), Status::Ok);
    }

    #[test]
    fn a_socket_others_can_use_fails() {
        let f = FakeHost::new();
        let config = f.config(&["--listen", "unix:///run/crius/crius.sock"]);
        assert_status(&socket(&f.host, &config), Status::Ok);
        let path = f.host.path("/run/crius/crius.sock");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_status(&socket(&f.host, &config), Status::Error);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660)).unwrap();
        // The tests run as root, as crius does.
        assert_status(&socket(&f.host, &config), Status::Ok);
        std::fs::remove_file(&path).unwrap();
        f.write("/run/crius/crius.sock", "not a socket");
        assert_status(&socket(&f.host, &config), Status::Error);
    }

    #[test]
    fn apparmor_without_profile_or_parser_fails() {
        let f = FakeHost::new();
        assert_status(&apparmor(&f.host), Status::Ok);
        f.write("/sys/module/apparmor/parameters/enabled", "Y\n");
        f.write(
            "/sys/kernel/security/apparmor/profiles",
            "other (enforce)\n",
        );
        assert_status(&apparmor(&f.host), Status::Error);
        f.program("/sbin/apparmor_parser", "exit 0");
        assert_status(&apparmor(&f.host), Status::Ok);
    }

    #[test]
    fn selinux_enforcing_warns() {
        let f = FakeHost::new();
        assert_status(&selinux(&f.host), Status::Ok);
        f.write("/sys/fs/selinux/enforce", "1\n");
        assert_status(&selinux(&f.host), Status::Warning);
        f.write("/sys/fs/selinux/enforce", "0\n");
        assert_status(&selinux(&f.host), Status::Ok);
    }

    #[test]
    fn every_check_runs_on_an_empty_host_and_the_overlay_probe_cleans_up() {
        let f = FakeHost::new();
        let config = f.config(&[]);
        let results = checks(
            &f.host,
            &config,
            Path::new("/var/lib/kubelet/config.yaml"),
            &reachable(true),
            |_| Ok(()),
        );
        assert_eq!(results.len(), 15);
        let names: std::collections::BTreeSet<_> = results.iter().map(|c| c.name).collect();
        assert_eq!(names.len(), results.len(), "names are unique");
        // A real probe leaves nothing behind, whether or not the mount worked.
        let _ = probe_overlay(f.dir.path());
        let left: Vec<_> = std::fs::read_dir(f.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".crius-doctor"))
            .collect();
        assert!(left.is_empty());
    }

    #[test]
    fn versions_and_kubelet_settings_parse() {
        assert_eq!(parse_version("v1.30.2"), Some((1, 30)));
        assert_eq!(parse_version("1.1.5+ds1"), Some((1, 1)));
        assert_eq!(parse_version("2.0.0-rc.1"), Some((2, 0)));
        assert_eq!(parse_version("x"), None);
        let s = top_level_yaml(
            "apiVersion: kubelet.config.k8s.io/v1beta1\ncgroupDriver: 'systemd' # note\n\
             authentication:\n  anonymous:\n    enabled: false\n",
        );
        assert_eq!(s.get("cgroupDriver").map(String::as_str), Some("systemd"));
        assert!(!s.contains_key("enabled"));
    }
}
