//! Command line and configuration file (DESIGN.md, "CLI and configuration").
//!
//! Every key has a flag of the same name with `-` for `_`. The main file
//! (`/etc/crius/config.toml`) comes first, then the drop-ins of `config.d/` in lexical order
//! (tables merged key by key), then the flags (a flag replaces the value, lists included);
//! every key has a default that works on a stock node. [`load`] resolves all of it into a
//! validated [`Config`] that remembers where each value came from (`crius config show`).

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

use crate::cgroups::{self, Driver};

mod effective;
mod layers;

pub use effective::{changed_keys, Effective, RELOADABLE_KEYS};
pub use layers::{Source, Sources};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/crius/config.toml";
/// The drop-in directory's name, next to the main file.
pub const DROP_IN_DIR_NAME: &str = "config.d";

/// The complete default configuration file, one comment per key (`crius config default`;
/// the package installs the same file as `/etc/crius/config.toml`).
pub const DEFAULT_FILE: &str = include_str!("../../contrib/config/config.toml");

const DEFAULT_LISTEN: &str = "unix:///run/crius/crius.sock";
const DEFAULT_CONTAINERD_ADDRESS: &str = "/run/containerd/containerd.sock";
/// Not `k8s.io`, so crius can run beside containerd's own CRI plugin on the same daemon.
const DEFAULT_CONTAINERD_NAMESPACE: &str = "crius";
const DEFAULT_DOCKER_ENDPOINT: &str = "unix:///var/run/docker.sock";
const DEFAULT_ROOT: &str = "/var/lib/crius";
const DEFAULT_STATE: &str = "/run/crius";
const DEFAULT_CNI_CONF_DIR: &str = "/etc/cni/net.d";
/// The upstream location first, then where Debian's `containernetworking-plugins` installs.
const DEFAULT_CNI_BIN_DIRS: [&str; 2] = ["/opt/cni/bin", "/usr/lib/cni"];
const DEFAULT_STREAM_ADDRESS: &str = "127.0.0.1:0";
const DEFAULT_LOG_LEVEL: &str = "info";
/// containerd's default `image_pull_progress_timeout`.
const DEFAULT_IMAGE_PULL_PROGRESS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// `sun_path` holds 108 bytes including the terminating NUL.
const UNIX_SOCKET_PATH_MAX: usize = 107;
/// containerd's limit on namespace names.
const CONTAINERD_NAMESPACE_MAX: usize = 76;

#[derive(Debug, Parser)]
#[command(
    name = "crius",
    version,
    about = "A CRI v1 runtime for kubelet on top of containerd or Docker Engine",
    after_help = "Configuration: /etc/crius/config.toml, then /etc/crius/config.d/*.toml in \
                  lexical order, then flags. `crius config show` prints every effective value \
                  and where it comes from."
)]
pub struct Cli {
    /// Configuration file (TOML); without it /etc/crius/config.toml is read when it exists
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Drop-in directory whose *.toml files are merged after the configuration file, in
    /// lexical order [default: config.d next to the configuration file]
    #[arg(long, global = true, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,

    #[command(flatten)]
    pub flags: Flags,

    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    pub fn command(&self) -> Command {
        self.command.clone().unwrap_or_default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Serve the CRI on the listen socket (the default)
    #[default]
    Serve,
    /// Check that this node can run pods and print a fix for each problem found
    ///
    /// Exit status: 0 when no check failed (warnings allowed), 1 when one did, 2 when the
    /// checks could not run (e.g. an invalid configuration).
    Doctor(DoctorArgs),
    /// Show, check or print the configuration
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Print version information
    Version,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print crius's man page (roff), for packaging
    #[command(hide = true)]
    Man,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct DoctorArgs {
    /// Print the results as one JSON document
    #[arg(long)]
    pub json: bool,
    /// kubelet's configuration file, read for cgroupDriver, failSwapOn and failCgroupV1
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/var/lib/kubelet/config.yaml"
    )]
    pub kubelet_config: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ConfigAction {
    /// Print every effective value and where it comes from (default, file, drop-in, flag)
    Show {
        /// One JSON document instead of annotated TOML
        #[arg(long)]
        json: bool,
    },
    /// Print the complete default configuration file, one comment per key
    Default,
    /// Validate configuration files without starting: each FILE on its own, or without
    /// FILE the whole configuration (file, drop-ins and flags)
    Check {
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

/// One flag per configuration key; `None`/empty means "not given on the command line".
#[derive(Debug, Default, Args)]
pub struct Flags {
    /// CRI socket, unix:///absolute/path [default: unix:///run/crius/crius.sock]
    #[arg(long, global = true, value_name = "URL")]
    pub listen: Option<String>,

    /// Backend daemon: containerd or docker [default: containerd]
    #[arg(long, global = true, value_name = "NAME")]
    pub backend: Option<String>,

    /// containerd socket [default: /run/containerd/containerd.sock]
    #[arg(long, global = true, value_name = "PATH")]
    pub containerd_address: Option<String>,

    /// containerd namespace for crius's objects [default: crius]
    #[arg(long, global = true, value_name = "NAME")]
    pub containerd_namespace: Option<String>,

    /// Write pulled layers straight into containerd's content directory when it is visible
    /// from here, instead of streaming them through containerd's API [default: true]
    #[arg(
        long,
        global = true,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub containerd_local_content: Option<bool>,

    /// Docker Engine endpoint [default: unix:///var/run/docker.sock]
    #[arg(long, global = true, value_name = "URL")]
    pub docker_endpoint: Option<String>,

    /// Persistent state directory [default: /var/lib/crius]
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Runtime state directory, cleared on reboot [default: /run/crius]
    #[arg(long, global = true, value_name = "DIR")]
    pub state: Option<PathBuf>,

    /// cgroupfs or systemd [default: systemd when systemd is PID 1, else cgroupfs]
    #[arg(long, global = true, value_name = "DRIVER")]
    pub cgroup_driver: Option<String>,

    /// Sandbox (pause) image [default: crius's built-in offline image]
    #[arg(long, global = true, value_name = "IMAGE")]
    pub pause_image: Option<String>,

    /// CNI network configuration directory [default: /etc/cni/net.d]
    #[arg(long, global = true, value_name = "DIR")]
    pub cni_conf_dir: Option<PathBuf>,

    /// CNI plugin directories, searched in order; comma separated or repeated
    /// [default: /opt/cni/bin,/usr/lib/cni]
    #[arg(long, global = true, value_name = "DIRS", value_delimiter = ',')]
    pub cni_bin_dirs: Vec<PathBuf>,

    /// CNI config template rendered into cni_conf_dir when kubelet sends the pod CIDR
    /// (UpdateRuntimeConfig); `{{.PodCIDR}}` and `{{.PodCIDRRanges}}` are replaced [default: none]
    #[arg(long, global = true, value_name = "FILE")]
    pub cni_conf_template: Option<PathBuf>,

    /// Address of the exec/attach/port-forward server [default: 127.0.0.1:0]
    #[arg(long, global = true, value_name = "ADDR")]
    pub stream_address: Option<String>,

    /// PEM certificate of the exec/attach/port-forward server; with --stream-tls-key it
    /// serves HTTPS [default: none, plain HTTP]
    #[arg(long, global = true, value_name = "FILE")]
    pub stream_tls_cert: Option<PathBuf>,

    /// PEM private key for --stream-tls-cert [default: none]
    #[arg(long, global = true, value_name = "FILE")]
    pub stream_tls_key: Option<PathBuf>,

    /// Address of the Prometheus metrics endpoint, or "off" [default: off]
    #[arg(long, global = true, value_name = "ADDR")]
    pub metrics_address: Option<String>,

    /// Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter [default: info]
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Log format: text, or json (one object per line, for log shippers) [default: text]
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// Cancel an image pull that makes no progress for this long, e.g. 30s, 5m, 1h30m;
    /// 0 disables [default: 5m]
    #[arg(long, global = true, value_name = "DURATION")]
    pub image_pull_progress_timeout: Option<String>,

    /// Provide a default CNI network when the CNI configuration directory has none
    /// [default: false]
    #[arg(
        long,
        global = true,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub cni_default_network: Option<bool>,

    /// Registry host (host[:port]) to reach over plain HTTP or unverified TLS; repeatable
    #[arg(long, global = true, value_name = "HOST")]
    pub registry_insecure: Vec<String>,

    /// Container events a GetContainerEvents subscriber may fall behind by before crius
    /// ends its stream (kubelet then relists) [default: 1024]
    #[arg(long, global = true, value_name = "N")]
    pub event_buffer: Option<usize>,
}

/// The configuration file as written; every key optional, unknown keys rejected so that a
/// typo is an error instead of a silently ignored setting.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub backend: Option<String>,
    pub containerd_address: Option<String>,
    pub containerd_namespace: Option<String>,
    pub containerd_local_content: Option<bool>,
    pub docker_endpoint: Option<String>,
    pub root: Option<PathBuf>,
    pub state: Option<PathBuf>,
    pub cgroup_driver: Option<String>,
    pub pause_image: Option<String>,
    pub cni_conf_dir: Option<PathBuf>,
    pub cni_bin_dirs: Option<Vec<PathBuf>>,
    pub cni_conf_template: Option<PathBuf>,
    pub cni_default_network: Option<bool>,
    pub stream_address: Option<String>,
    pub stream_tls_cert: Option<PathBuf>,
    pub stream_tls_key: Option<PathBuf>,
    pub metrics_address: Option<String>,
    pub log_level: Option<String>,
    pub log_format: Option<String>,
    pub image_pull_progress_timeout: Option<String>,
    pub event_buffer: Option<usize>,
    pub default_runtime: Option<String>,
    pub runtimes: Option<BTreeMap<String, FileRuntime>>,
    pub registry: Option<FileRegistry>,
}

/// `[runtimes.<handler>]`: an OCI runtime pods ask for with their RuntimeClass.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRuntime {
    /// containerd's runtime type [default: io.containerd.runc.v2].
    pub runtime_type: Option<String>,
    /// The OCI runtime binary (a name on PATH or a path) [default: runc].
    pub runtime_path: Option<String>,
    /// The runtime's state directory [default: the runtime's own].
    pub runtime_root: Option<PathBuf>,
    /// Pod annotations (exact keys, or prefixes ending in `*`) passed on to the OCI spec
    /// of the pod's containers, for runtimes that read them.
    #[serde(default)]
    pub pod_annotations: Vec<String>,
}

/// `[registry]` in the configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRegistry {
    /// Registry host → mirror endpoints tried in order before the host itself.
    #[serde(default)]
    pub mirrors: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub insecure: Vec<String>,
    /// `[registry.auths."host"]`.
    #[serde(default)]
    pub auths: BTreeMap<String, RegistryAuth>,
    /// Registry host → PEM file of an extra CA trusted for it (`[registry.ca]`).
    #[serde(default)]
    pub ca: BTreeMap<String, PathBuf>,
}

/// Credentials for one registry host: `username` + `password`, or `auth` (base64 of
/// `user:password`, as in Docker's `config.json`).
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistryAuth {
    pub username: Option<String>,
    pub password: Option<String>,
    pub auth: Option<String>,
}

impl fmt::Debug for RegistryAuth {
    // Configs get logged at startup; secrets must not be.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("auth", &redacted(&self.auth))
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Containerd,
    Docker,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Containerd => "containerd",
            BackendKind::Docker => "docker",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines; colour only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, message, fields, span), for log shippers.
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryConfig {
    pub mirrors: BTreeMap<String, Vec<String>>,
    pub insecure: Vec<String>,
    pub auths: BTreeMap<String, RegistryAuth>,
    /// Registry host → extra CA (PEM file).
    pub ca: BTreeMap<String, PathBuf>,
}

/// TLS for the streaming server: a PEM certificate (chain) and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The resolved configuration: defaults, the file, its drop-ins and the flags, merged and
/// validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The main file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// Drop-ins applied after it, in order.
    pub drop_ins: Vec<PathBuf>,
    /// Where each value that is not a plain default came from (dotted keys).
    pub sources: Sources,
    /// Path of the CRI socket (from the `unix://` URL in `listen`).
    pub listen: PathBuf,
    pub backend: BackendKind,
    /// Path of containerd's socket.
    pub containerd_address: PathBuf,
    pub containerd_namespace: String,
    /// Pulled layers go straight into containerd's content directory when visible.
    pub containerd_local_content: bool,
    pub docker_endpoint: String,
    pub root: PathBuf,
    pub state: PathBuf,
    pub cgroup_driver: Driver,
    /// `None` means the built-in offline pause image.
    pub pause_image: Option<String>,
    pub cni_conf_dir: PathBuf,
    pub cni_bin_dirs: Vec<PathBuf>,
    /// Rendered into `cni_conf_dir` when the pod CIDR arrives.
    pub cni_conf_template: Option<PathBuf>,
    pub cni_default_network: bool,
    pub stream_address: SocketAddr,
    /// `None`: the streaming server speaks plain HTTP.
    pub stream_tls: Option<StreamTls>,
    /// The runtime handler a pod asking for `""` runs on.
    pub default_runtime: String,
    /// Every runtime handler crius runs pods with, by name (`runc` always among them unless
    /// a `[runtimes.runc]` table says otherwise).
    pub runtimes: BTreeMap<String, RuntimeConfig>,
    pub metrics_address: Option<SocketAddr>,
    /// A level or a `tracing` filter; `RUST_LOG`, when set, wins over it.
    pub log_level: String,
    pub log_format: LogFormat,
    /// Zero disables the timeout.
    pub image_pull_progress_timeout: Duration,
    /// Events a GetContainerEvents subscriber may fall behind by (at least 1).
    pub event_buffer: usize,
    pub registry: RegistryConfig,
}

impl Config {
    /// `listen` as a URL again, for messages and `crius doctor`.
    pub fn listen_url(&self) -> String {
        format!("unix://{}", self.listen.display())
    }

    /// Where the value of `key` (dotted, as in [`Config::sources`]) comes from.
    pub fn source_of(&self, key: &str) -> Source {
        self.sources.get(key).cloned().unwrap_or(Source::Default)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {} does not exist", path.display())]
    Missing { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid config file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration after merging files and flags: {message}")]
    Merged { message: String },
    #[error("invalid {key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

/// Resolves the configuration: flags over drop-ins over the file over defaults.
///
/// An explicitly given `--config` must exist; the default file is read only when present,
/// so a node without any configuration runs on defaults. Drop-ins live in `--config-dir`, or
/// in `config.d/` next to the configuration file (whether or not that file exists).
pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
    load_with(cli, Path::new(DEFAULT_CONFIG_PATH), Path::new("/proc"))
}

fn load_with(cli: &Cli, default_path: &Path, proc_root: &Path) -> Result<Config, ConfigError> {
    let main_path = cli.config.as_deref().unwrap_or(default_path);
    let main = match &cli.config {
        Some(path) => Some(path.as_path()),
        None if default_path.exists() => Some(default_path),
        None => None,
    };
    let drop_in_dir = match &cli.config_dir {
        Some(dir) if !dir.is_dir() => {
            return Err(ConfigError::Read {
                path: dir.clone(),
                source: io::Error::new(io::ErrorKind::NotFound, "no such directory"),
            })
        }
        Some(dir) => dir.clone(),
        None => main_path
            .parent()
            .unwrap_or(Path::new("/"))
            .join(DROP_IN_DIR_NAME),
    };
    let mut merged = layers::read_files(main, Some(&drop_in_dir))?;
    merged.merge_flags(&cli.flags)?;
    let (file, sources, main, drop_ins) = merged.into_file_config()?;
    let mut config = resolve(file, sources, proc_root)?;
    config.config_file = main;
    config.drop_ins = drop_ins;
    Ok(config)
}

/// `crius config check FILE`: one file on its own over the defaults, as if it were the only
/// configuration. Nothing starts and nothing is written.
pub fn check_file(path: &Path) -> Result<Config, ConfigError> {
    let table = layers::read_table(path)?;
    let mut merged = layers::Merged::default();
    merged.merge(table, &Source::File(path.to_path_buf()));
    let (file, sources, _, _) = merged.into_file_config()?;
    let mut config = resolve(file, sources, Path::new("/proc"))?;
    config.config_file = Some(path.to_path_buf());
    Ok(config)
}

fn resolve(
    file: FileConfig,
    mut sources: Sources,
    proc_root: &Path,
) -> Result<Config, ConfigError> {
    let listen = file.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let backend = file
        .backend
        .unwrap_or_else(|| BackendKind::Containerd.as_str().to_string());
    let containerd_address = file
        .containerd_address
        .unwrap_or_else(|| DEFAULT_CONTAINERD_ADDRESS.to_string());
    let containerd_namespace = file
        .containerd_namespace
        .unwrap_or_else(|| DEFAULT_CONTAINERD_NAMESPACE.to_string());
    let docker_endpoint = file
        .docker_endpoint
        .unwrap_or_else(|| DEFAULT_DOCKER_ENDPOINT.to_string());
    let root = file.root.unwrap_or_else(|| DEFAULT_ROOT.into());
    let state = file.state.unwrap_or_else(|| DEFAULT_STATE.into());
    let cni_conf_dir = file
        .cni_conf_dir
        .unwrap_or_else(|| DEFAULT_CNI_CONF_DIR.into());
    let cni_bin_dirs = file
        .cni_bin_dirs
        .unwrap_or_else(|| DEFAULT_CNI_BIN_DIRS.iter().map(PathBuf::from).collect());
    let stream_address = file
        .stream_address
        .unwrap_or_else(|| DEFAULT_STREAM_ADDRESS.to_string());
    let log_level = file
        .log_level
        .unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_string());
    let file_registry = file.registry.unwrap_or_default();

    let cgroup_driver = match file.cgroup_driver {
        Some(name) => Driver::from_name(&name).map_err(|_| {
            invalid(
                "cgroup_driver",
                format!("{name:?} is not one of cgroupfs, systemd"),
            )
        })?,
        None => {
            let driver = cgroups::detect_default(proc_root);
            let why = if driver.is_systemd() {
                "systemd is PID 1"
            } else {
                "PID 1 is not systemd"
            };
            sources.insert("cgroup_driver".into(), Source::Detected(why.into()));
            driver
        }
    };

    let runtimes = validate_runtimes(file.runtimes.unwrap_or_default())?;
    let default_runtime = file
        .default_runtime
        .unwrap_or_else(|| DEFAULT_RUNTIME.to_string());
    if !runtimes.contains_key(&default_runtime) {
        return Err(invalid(
            "default_runtime",
            format!(
                "{default_runtime:?} is not a configured handler ({})",
                runtimes.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    Ok(Config {
        config_file: None,
        drop_ins: Vec::new(),
        listen: parse_listen(&listen)?,
        backend: parse_backend(&backend)?,
        containerd_address: parse_containerd_address(&containerd_address)?,
        containerd_namespace: validate_containerd_namespace(containerd_namespace)?,
        containerd_local_content: file.containerd_local_content.unwrap_or(true),
        docker_endpoint: validate_docker_endpoint(docker_endpoint)?,
        root: absolute_path("root", root)?,
        state: absolute_path("state", state)?,
        cgroup_driver,
        pause_image: match file.pause_image {
            Some(image) if image.trim().is_empty() => {
                return Err(invalid(
                    "pause_image",
                    "must not be empty (leave it out for the built-in image)",
                ))
            }
            other => other,
        },
        cni_conf_dir: absolute_path("cni_conf_dir", cni_conf_dir)?,
        cni_bin_dirs: validate_cni_bin_dirs(cni_bin_dirs)?,
        cni_conf_template: file
            .cni_conf_template
            .map(|path| absolute_path("cni_conf_template", path))
            .transpose()?,
        cni_default_network: file.cni_default_network.unwrap_or(false),
        stream_address: parse_socket_addr("stream_address", &stream_address)?,
        stream_tls: validate_stream_tls(file.stream_tls_cert, file.stream_tls_key)?,
        metrics_address: match file.metrics_address.as_deref().map(str::trim) {
            None | Some("") | Some("off") => None,
            Some(addr) => Some(parse_socket_addr("metrics_address", addr)?),
        },
        log_level: validate_log_level(&log_level)?,
        log_format: parse_log_format(file.log_format.as_deref())?,
        image_pull_progress_timeout: match file.image_pull_progress_timeout {
            Some(text) => parse_duration(&text)
                .map_err(|message| invalid("image_pull_progress_timeout", message))?,
            None => DEFAULT_IMAGE_PULL_PROGRESS_TIMEOUT,
        },
        event_buffer: match file
            .event_buffer
            .unwrap_or(crate::pod_events::DEFAULT_BUFFER)
        {
            0 => return Err(invalid("event_buffer", "must be at least 1")),
            n => n,
        },
        default_runtime,
        runtimes,
        registry: RegistryConfig {
            mirrors: validate_mirrors(file_registry.mirrors)?,
            insecure: validate_insecure(file_registry.insecure)?,
            auths: validate_auths(file_registry.auths)?,
            ca: validate_ca(file_registry.ca)?,
        },
        sources,
    })
}

/// The handler `""` means when the configuration names none.
pub const DEFAULT_RUNTIME: &str = "runc";

/// A handler's runtime type when its table names none: containerd's runc v2 shim.
pub const DEFAULT_RUNTIME_TYPE: &str = "io.containerd.runc.v2";

/// One runtime handler as crius runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    pub runtime_type: String,
    pub runtime_path: String,
    pub runtime_root: Option<PathBuf>,
    pub pod_annotations: Vec<String>,
}

impl RuntimeConfig {
    /// Does `key` (a pod annotation) pass this handler's allow-list?
    pub fn passes(&self, key: &str) -> bool {
        self.pod_annotations
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => key.starts_with(prefix),
                None => key == pattern,
            })
    }
}

/// The configured handlers over the built-in `runc`; a name must be a DNS label, as a
/// RuntimeClass handler is.
fn validate_runtimes(
    tables: BTreeMap<String, FileRuntime>,
) -> Result<BTreeMap<String, RuntimeConfig>, ConfigError> {
    let mut runtimes = BTreeMap::new();
    runtimes.insert(
        DEFAULT_RUNTIME.to_string(),
        RuntimeConfig {
            runtime_type: DEFAULT_RUNTIME_TYPE.to_string(),
            runtime_path: DEFAULT_RUNTIME.to_string(),
            runtime_root: None,
            pod_annotations: Vec::new(),
        },
    );
    for (name, table) in tables {
        let key = format!("runtimes.{name}");
        let label = name.len() <= 63
            && !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !label {
            return Err(invalid(
                &key,
                "a handler name is a DNS label: lowercase letters, digits and '-', at most 63",
            ));
        }
        let runtime_path = table
            .runtime_path
            .unwrap_or_else(|| DEFAULT_RUNTIME.to_string());
        if runtime_path.is_empty() {
            return Err(invalid(&key, "runtime_path must not be empty"));
        }
        let runtime_root = match table.runtime_root {
            Some(root) => Some(absolute_path(&format!("{key}.runtime_root"), root)?),
            None => None,
        };
        if let Some(bad) = table
            .pod_annotations
            .iter()
            .find(|p| p.is_empty() || p.trim_end_matches('*').contains('*'))
        {
            return Err(invalid(
                &format!("{key}.pod_annotations"),
                format!("{bad:?}: an annotation key, or a prefix ending in one '*'"),
            ));
        }
        runtimes.insert(
            name,
            RuntimeConfig {
                runtime_type: table
                    .runtime_type
                    .unwrap_or_else(|| DEFAULT_RUNTIME_TYPE.to_string()),
                runtime_path,
                runtime_root,
                pod_annotations: table.pod_annotations,
            },
        );
    }
    Ok(runtimes)
}

/// Both or neither: a certificate without its key (or the reverse) is a half-done setup
/// that must not fall back to plain HTTP silently.
fn validate_stream_tls(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<Option<StreamTls>, ConfigError> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(StreamTls {
            cert: absolute_path("stream_tls_cert", cert)?,
            key: absolute_path("stream_tls_key", key)?,
        })),
        (Some(_), None) => Err(invalid(
            "stream_tls_key",
            "is required with stream_tls_cert (set both, or neither for plain HTTP)",
        )),
        (None, Some(_)) => Err(invalid(
            "stream_tls_cert",
            "is required with stream_tls_key (set both, or neither for plain HTTP)",
        )),
    }
}

fn parse_log_format(format: Option<&str>) -> Result<LogFormat, ConfigError> {
    match format.map(str::trim) {
        None | Some("text") => Ok(LogFormat::Text),
        Some("json") => Ok(LogFormat::Json),
        Some(other) => Err(invalid(
            "log_format",
            format!("{other:?} is not one of text, json"),
        )),
    }
}

fn parse_listen(listen: &str) -> Result<PathBuf, ConfigError> {
    if listen.starts_with("npipe://") {
        return Err(invalid(
            "listen",
            format!(
                "{listen:?} is a Windows named pipe; crius runs on Linux and serves a unix \
                 socket, e.g. {DEFAULT_LISTEN} (docs/windows.md says what a Windows build needs)"
            ),
        ));
    }
    let Some(path) = listen.strip_prefix("unix://") else {
        return Err(invalid(
            "listen",
            format!("{listen:?} must be a unix:// URL, e.g. {DEFAULT_LISTEN}"),
        ));
    };
    let path = Path::new(path);
    if !path.is_absolute() {
        return Err(invalid(
            "listen",
            format!("{listen:?} must name an absolute socket path (unix:///…)"),
        ));
    }
    if path.as_os_str().len() > UNIX_SOCKET_PATH_MAX {
        return Err(invalid(
            "listen",
            format!("socket path {listen:?} is longer than {UNIX_SOCKET_PATH_MAX} bytes"),
        ));
    }
    Ok(path.to_path_buf())
}

fn parse_backend(backend: &str) -> Result<BackendKind, ConfigError> {
    match backend {
        "containerd" => Ok(BackendKind::Containerd),
        "docker" => Ok(BackendKind::Docker),
        other => Err(invalid(
            "backend",
            format!("{other:?} is not one of containerd, docker"),
        )),
    }
}

/// containerd's address is a socket path; a `unix://` prefix is accepted as well because
/// that is how the other endpoints are written.
fn parse_containerd_address(address: &str) -> Result<PathBuf, ConfigError> {
    let path = Path::new(address.strip_prefix("unix://").unwrap_or(address));
    if !path.is_absolute() {
        return Err(invalid(
            "containerd_address",
            format!("{address:?} must be an absolute socket path"),
        ));
    }
    Ok(path.to_path_buf())
}

/// containerd's own rule: alphanumeric labels joined by single `.`, `_` or `-`.
fn validate_containerd_namespace(namespace: String) -> Result<String, ConfigError> {
    let labels_ok = namespace
        .split(['.', '_', '-'])
        .all(|label| !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric()));
    if !labels_ok || namespace.len() > CONTAINERD_NAMESPACE_MAX {
        return Err(invalid(
            "containerd_namespace",
            format!(
                "{namespace:?} must be letters and digits, optionally joined by single \
                 '.', '_' or '-', at most {CONTAINERD_NAMESPACE_MAX} characters"
            ),
        ));
    }
    Ok(namespace)
}

fn validate_docker_endpoint(endpoint: String) -> Result<String, ConfigError> {
    if let Some(path) = endpoint.strip_prefix("unix://") {
        if !Path::new(path).is_absolute() {
            return Err(invalid(
                "docker_endpoint",
                format!("{endpoint:?} must name an absolute socket path (unix:///…)"),
            ));
        }
        return Ok(endpoint);
    }
    let remote = ["tcp://", "http://", "https://"]
        .iter()
        .find_map(|scheme| endpoint.strip_prefix(scheme));
    match remote {
        Some(host) if !host.is_empty() => Ok(endpoint),
        _ => Err(invalid(
            "docker_endpoint",
            format!("{endpoint:?} must be unix:///path, tcp://host:port or http(s)://host:port"),
        )),
    }
}

fn absolute_path(key: &str, path: PathBuf) -> Result<PathBuf, ConfigError> {
    if !path.is_absolute() {
        return Err(invalid(
            key,
            format!("{} must be an absolute path", path.display()),
        ));
    }
    Ok(path)
}

fn validate_cni_bin_dirs(dirs: Vec<PathBuf>) -> Result<Vec<PathBuf>, ConfigError> {
    if dirs.is_empty() {
        return Err(invalid("cni_bin_dirs", "must name at least one directory"));
    }
    dirs.into_iter()
        .map(|dir| absolute_path("cni_bin_dirs", dir))
        .collect()
}

fn parse_socket_addr(key: &str, addr: &str) -> Result<SocketAddr, ConfigError> {
    addr.trim().parse().map_err(|_| {
        invalid(
            key,
            format!("{addr:?} is not an IP address and port, e.g. 127.0.0.1:10010"),
        )
    })
}

const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// A plain level is checked here; a filter with targets (`info,shim=debug`) is left to the
/// tracing filter parser when logging starts.
fn validate_log_level(level: &str) -> Result<String, ConfigError> {
    let level = level.trim();
    if level.contains('=') || level.contains(',') {
        return Ok(level.to_string());
    }
    let lower = level.to_ascii_lowercase();
    if LOG_LEVELS.contains(&lower.as_str()) {
        Ok(lower)
    } else {
        Err(invalid(
            "log_level",
            format!(
                "{level:?} is not one of {} (or a filter such as info,shim=debug)",
                LOG_LEVELS.join(", ")
            ),
        ))
    }
}

/// Parses durations written like Go's (`30s`, `5m`, `1h30m`, `250ms`); a bare `0` is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || format!("{text:?} is not a duration such as 30s, 5m or 1h30m");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Some(Duration::from_millis(value)),
            "s" => Some(Duration::from_secs(value)),
            "m" => value.checked_mul(60).map(Duration::from_secs),
            "h" => value.checked_mul(3600).map(Duration::from_secs),
            _ => return Err(bad()),
        };
        total = part
            .and_then(|part| total.checked_add(part))
            .ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

fn validate_mirrors(
    mirrors: BTreeMap<String, Vec<String>>,
) -> Result<BTreeMap<String, Vec<String>>, ConfigError> {
    for (host, endpoints) in &mirrors {
        validate_registry_host("registry.mirrors", host)?;
        for endpoint in endpoints {
            let ok = ["http://", "https://"]
                .iter()
                .any(|scheme| endpoint.strip_prefix(scheme).is_some_and(|h| !h.is_empty()));
            if !ok {
                return Err(invalid(
                    "registry.mirrors",
                    format!("mirror {endpoint:?} of {host:?} must be an http:// or https:// URL"),
                ));
            }
        }
    }
    Ok(mirrors)
}

fn validate_insecure(hosts: Vec<String>) -> Result<Vec<String>, ConfigError> {
    for host in &hosts {
        validate_registry_host("registry.insecure", host)?;
    }
    Ok(hosts)
}

fn validate_auths(
    auths: BTreeMap<String, RegistryAuth>,
) -> Result<BTreeMap<String, RegistryAuth>, ConfigError> {
    for (host, auth) in &auths {
        validate_registry_host("registry.auths", host)?;
        let complete_pair = auth.username.is_some() && auth.password.is_some();
        let half_pair = auth.username.is_some() != auth.password.is_some();
        if half_pair || (!complete_pair && auth.auth.is_none()) {
            return Err(invalid(
                "registry.auths",
                format!("{host:?} needs username and password, or auth"),
            ));
        }
    }
    Ok(auths)
}

fn validate_ca(ca: BTreeMap<String, PathBuf>) -> Result<BTreeMap<String, PathBuf>, ConfigError> {
    for (host, path) in &ca {
        validate_registry_host("registry.ca", host)?;
        if !path.is_absolute() {
            return Err(invalid(
                "registry.ca",
                format!(
                    "CA file {} of {host:?} must be an absolute path",
                    path.display()
                ),
            ));
        }
    }
    Ok(ca)
}

/// Registry keys are hosts as they appear in image references (`docker.io`,
/// `127.0.0.1:5000`), not URLs.
fn validate_registry_host(key: &str, host: &str) -> Result<(), ConfigError> {
    if host.is_empty() || host.contains("://") || host.contains('/') || host.contains(' ') {
        return Err(invalid(
            key,
            format!("{host:?} must be a registry host such as docker.io or 127.0.0.1:5000"),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::cgroups::CgroupDriver;

    struct Env {
        dir: tempfile::TempDir,
    }

    impl Env {
        fn new() -> Self {
            Env {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn write_config(&self, text: &str) -> PathBuf {
            let path = self.dir.path().join("config.toml");
            std::fs::write(&path, text).unwrap();
            path
        }

        /// A /proc fixture whose PID 1 is `comm`.
        fn proc_root(&self, comm: &str) -> PathBuf {
            let root = self.dir.path().join("proc");
            std::fs::create_dir_all(root.join("1")).unwrap();
            std::fs::write(root.join("1/comm"), format!("{comm}\n")).unwrap();
            root
        }

        fn load(&self, args: &[&str]) -> Result<Config, ConfigError> {
            let cli =
                Cli::try_parse_from(std::iter::once("crius").chain(args.iter().copied())).unwrap();
            load_with(
                &cli,
                &self.dir.path().join("no-default.toml"),
                &self.proc_root("init"),
            )
        }
    }

    #[test]
    fn defaults() {
        let env = Env::new();
        let config = env.load(&[]).unwrap();
        assert_eq!(config.config_file, None);
        assert_eq!(config.listen, PathBuf::from("/run/crius/crius.sock"));
        assert_eq!(config.listen_url(), "unix:///run/crius/crius.sock");
        assert_eq!(config.backend, BackendKind::Containerd);
        assert_eq!(
            config.containerd_address,
            PathBuf::from("/run/containerd/containerd.sock")
        );
        assert_eq!(config.containerd_namespace, "crius");
        assert!(config.containerd_local_content);
        assert_eq!(config.docker_endpoint, "unix:///var/run/docker.sock");
        assert_eq!(config.root, PathBuf::from("/var/lib/crius"));
        assert_eq!(config.state, PathBuf::from("/run/crius"));
        assert_eq!(config.cgroup_driver.name(), "cgroupfs");
        assert_eq!(config.pause_image, None);
        assert_eq!(config.cni_conf_dir, PathBuf::from("/etc/cni/net.d"));
        assert_eq!(
            config.cni_bin_dirs,
            vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
        assert_eq!(config.stream_address, "127.0.0.1:0".parse().unwrap());
        assert_eq!(config.metrics_address, None);
        assert_eq!(config.log_level, "info");
        assert_eq!(config.image_pull_progress_timeout, Duration::from_secs(300));
        assert!(!config.cni_default_network);
        assert_eq!(config.registry, RegistryConfig::default());
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.stream_tls, None);
        assert!(config.drop_ins.is_empty());
        assert_eq!(
            config.source_of("cgroup_driver"),
            Source::Detected("PID 1 is not systemd".into())
        );
        assert_eq!(config.source_of("listen"), Source::Default);
    }

    #[test]
    fn cgroup_driver_defaults_to_systemd_under_systemd() {
        let env = Env::new();
        let cli = Cli::try_parse_from(["crius"]).unwrap();
        let config = load_with(
            &cli,
            &env.dir.path().join("none.toml"),
            &env.proc_root("systemd"),
        )
        .unwrap();
        assert_eq!(config.cgroup_driver.name(), "systemd");
    }

    const FULL_FILE: &str = r#"
listen = "unix:///tmp/crius-test/crius.sock"
backend = "docker"
containerd_address = "unix:///tmp/containerd.sock"
containerd_namespace = "crius-test"
containerd_local_content = false
docker_endpoint = "unix:///tmp/docker.sock"
root = "/tmp/crius/root"
state = "/tmp/crius/state"
cgroup_driver = "systemd"
pause_image = "localhost/crius/pause:1"
cni_conf_dir = "/tmp/cni/net.d"
cni_bin_dirs = ["/usr/lib/cni"]
stream_address = "127.0.0.1:10010"
metrics_address = "127.0.0.1:9100"
log_level = "debug"
image_pull_progress_timeout = "1h30m"
cni_default_network = true

[registry]
mirrors = { "docker.io" = ["http://127.0.0.1:5000"] }
insecure = ["127.0.0.1:5000"]

[registry.auths."registry.example"]
username = "user"
password = "secret"

[registry.auths."other.example"]
auth = "dXNlcjpwYXNz"

[registry.ca]
"registry.example" = "/etc/crius/certs/registry.example.pem"
"#;

    #[test]
    fn file_parsing() {
        let env = Env::new();
        let path = env.write_config(FULL_FILE);
        let config = env.load(&["--config", path.to_str().unwrap()]).unwrap();
        assert_eq!(config.config_file, Some(path));
        assert_eq!(config.listen, PathBuf::from("/tmp/crius-test/crius.sock"));
        assert_eq!(config.backend, BackendKind::Docker);
        assert_eq!(
            config.containerd_address,
            PathBuf::from("/tmp/containerd.sock")
        );
        assert_eq!(config.containerd_namespace, "crius-test");
        assert!(!config.containerd_local_content);
        assert_eq!(config.docker_endpoint, "unix:///tmp/docker.sock");
        assert_eq!(config.root, PathBuf::from("/tmp/crius/root"));
        assert_eq!(config.state, PathBuf::from("/tmp/crius/state"));
        assert_eq!(config.cgroup_driver.name(), "systemd");
        assert_eq!(
            config.pause_image.as_deref(),
            Some("localhost/crius/pause:1")
        );
        assert_eq!(config.cni_conf_dir, PathBuf::from("/tmp/cni/net.d"));
        assert_eq!(config.cni_bin_dirs, vec![PathBuf::from("/usr/lib/cni")]);
        assert_eq!(config.stream_address, "127.0.0.1:10010".parse().unwrap());
        assert_eq!(
            config.metrics_address,
            Some("127.0.0.1:9100".parse().unwrap())
        );
        assert_eq!(config.log_level, "debug");
        assert_eq!(
            config.image_pull_progress_timeout,
            Duration::from_secs(5400)
        );
        assert!(config.cni_default_network);
        assert_eq!(
            config.registry.mirrors.get("docker.io"),
            Some(&vec!["http://127.0.0.1:5000".to_string()])
        );
        assert_eq!(config.registry.insecure, vec!["127.0.0.1:5000".to_string()]);
        let auth = &config.registry.auths["registry.example"];
        assert_eq!(auth.username.as_deref(), Some("user"));
        assert_eq!(auth.password.as_deref(), Some("secret"));
        assert_eq!(
            config.registry.auths["other.example"].auth.as_deref(),
            Some("dXNlcjpwYXNz")
        );
        assert_eq!(
            config.registry.ca.get("registry.example"),
            Some(&PathBuf::from("/etc/crius/certs/registry.example.pem"))
        );
        // Secrets stay out of logs.
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("secret") && !debug.contains("dXNlcjpwYXNz"),
            "{debug}"
        );
    }

    #[test]
    fn flags_override_file() {
        let env = Env::new();
        let path = env.write_config(FULL_FILE);
        let config = env
            .load(&[
                "--config",
                path.to_str().unwrap(),
                "--backend",
                "containerd",
                "--listen",
                "unix:///tmp/other.sock",
                "--cgroup-driver=cgroupfs",
                "--cni-bin-dirs",
                "/a,/b",
                "--cni-bin-dirs",
                "/c",
                "--cni-default-network=false",
                "--containerd-local-content=true",
                "--image-pull-progress-timeout",
                "30s",
                "--registry-insecure",
                "localhost:5001",
                "--metrics-address",
                "off",
                "--log-level",
                "info,shim=trace",
            ])
            .unwrap();
        assert_eq!(config.backend, BackendKind::Containerd);
        assert_eq!(config.listen, PathBuf::from("/tmp/other.sock"));
        assert_eq!(config.cgroup_driver.name(), "cgroupfs");
        assert_eq!(
            config.cni_bin_dirs,
            ["/a", "/b", "/c"].map(PathBuf::from).to_vec()
        );
        assert!(!config.cni_default_network);
        assert!(
            config.containerd_local_content,
            "the flag wins over the file"
        );
        assert_eq!(config.image_pull_progress_timeout, Duration::from_secs(30));
        assert_eq!(config.registry.insecure, vec!["localhost:5001".to_string()]);
        assert_eq!(config.metrics_address, None);
        assert_eq!(config.log_level, "info,shim=trace");
        // Keys without a flag keep the file's value.
        assert_eq!(config.containerd_namespace, "crius-test");
    }

    #[test]
    fn bare_bool_flag_and_subcommands() {
        let env = Env::new();
        let config = env.load(&["--cni-default-network", "doctor"]).unwrap();
        assert!(config.cni_default_network);

        let cli =
            Cli::try_parse_from(["crius", "doctor", "--backend", "docker", "--json"]).unwrap();
        assert!(matches!(
            cli.command(),
            Command::Doctor(DoctorArgs { json: true, .. })
        ));
        assert_eq!(cli.flags.backend.as_deref(), Some("docker"));
        assert_eq!(
            Cli::try_parse_from(["crius"]).unwrap().command(),
            Command::Serve
        );
        assert_eq!(
            Cli::try_parse_from(["crius", "version"]).unwrap().command(),
            Command::Version
        );
    }

    #[test]
    fn default_file_read_only_when_present() {
        let env = Env::new();
        let default_path = env.write_config("backend = \"docker\"\n");
        let cli = Cli::try_parse_from(["crius"]).unwrap();
        let config = load_with(&cli, &default_path, &env.proc_root("init")).unwrap();
        assert_eq!(config.backend, BackendKind::Docker);
        assert_eq!(config.config_file, Some(default_path));
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let env = Env::new();
        let missing = env.dir.path().join("missing.toml");
        let err = env
            .load(&["--config", missing.to_str().unwrap()])
            .unwrap_err();
        assert!(matches!(err, ConfigError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("missing.toml"));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let env = Env::new();
        for text in [
            "listen_address = \"unix:///x.sock\"\n",
            "[registry]\nmirror = {}\n",
            "[registry.auths.\"h\"]\nuser = \"x\"\n",
        ] {
            let path = env.write_config(text);
            let err = env.load(&["--config", path.to_str().unwrap()]).unwrap_err();
            assert!(matches!(err, ConfigError::Parse { .. }), "{text}: {err}");
            assert!(err.to_string().contains("unknown field"), "{err}");
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        let env = Env::new();
        let cases: &[(&[&str], &str)] = &[
            (&["--listen", "/run/crius.sock"], "listen"),
            (&["--listen", "unix://relative.sock"], "listen"),
            (&["--listen", "tcp://127.0.0.1:1"], "listen"),
            (&["--backend", "podman"], "backend"),
            (&["--cgroup-driver", "systemd2"], "cgroup_driver"),
            (
                &["--containerd-address", "containerd.sock"],
                "containerd_address",
            ),
            (
                &["--containerd-namespace", "k8s..io"],
                "containerd_namespace",
            ),
            (&["--docker-endpoint", "docker.sock"], "docker_endpoint"),
            (&["--root", "var/lib/crius"], "root"),
            (&["--cni-bin-dirs", "bin"], "cni_bin_dirs"),
            (&["--stream-address", "localhost"], "stream_address"),
            (&["--metrics-address", "9100"], "metrics_address"),
            (&["--log-level", "loud"], "log_level"),
            (
                &["--image-pull-progress-timeout", "5"],
                "image_pull_progress_timeout",
            ),
            (
                &["--registry-insecure", "http://127.0.0.1:5000"],
                "registry.insecure",
            ),
            (&["--pause-image", ""], "pause_image"),
            (&["--log-format", "logfmt"], "log_format"),
            (&["--stream-tls-cert", "/c.pem"], "stream_tls_key"),
            (&["--stream-tls-key", "/k.pem"], "stream_tls_cert"),
            (
                &["--stream-tls-cert", "c.pem", "--stream-tls-key", "/k.pem"],
                "stream_tls_cert",
            ),
            (&["--cni-conf-template", "t.conflist"], "cni_conf_template"),
        ];
        for (args, key) in cases {
            let err = env.load(args).unwrap_err();
            match &err {
                ConfigError::Invalid { key: got, .. } => assert_eq!(got, key, "{args:?}"),
                other => panic!("{args:?}: unexpected {other}"),
            }
            assert!(
                err.to_string().starts_with(&format!("invalid {key}:")),
                "{err}"
            );
        }
    }

    #[test]
    fn bad_file_values() {
        let env = Env::new();
        let cases = [
            (
                "listen = \"unix:///x.sock\"\nbackend = \"crio\"\n",
                "backend",
            ),
            (
                "[registry]\nmirrors = { \"docker.io\" = [\"127.0.0.1:5000\"] }\n",
                "registry.mirrors",
            ),
            (
                "[registry.auths.\"h\"]\nusername = \"u\"\n",
                "registry.auths",
            ),
            ("[registry.auths.\"h\"]\n", "registry.auths"),
            ("[registry.ca]\n\"h\" = \"ca.pem\"\n", "registry.ca"),
            ("cni_bin_dirs = []\n", "cni_bin_dirs"),
        ];
        for (text, key) in cases {
            let path = env.write_config(text);
            let err = env.load(&["--config", path.to_str().unwrap()]).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { key: got, .. } if got == key),
                "{text}: {err}"
            );
        }
        // A wrong type is a parse error that points at the key.
        let path = env.write_config("cni_default_network = \"yes\"\n");
        let err = env.load(&["--config", path.to_str().unwrap()]).unwrap_err();
        assert!(err.to_string().contains("cni_default_network"), "{err}");
    }

    #[test]
    fn overlong_socket_path_is_rejected() {
        let env = Env::new();
        let listen = format!("unix:///{}", "s".repeat(120));
        let err = env.load(&["--listen", &listen]).unwrap_err();
        assert!(err.to_string().contains("longer than 107"), "{err}");
    }

    #[test]
    fn npipe_is_refused_with_a_pointer_to_the_windows_notes() {
        let env = Env::new();
        let err = env
            .load(&["--listen", "npipe:////./pipe/crius"])
            .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("invalid listen:"), "{text}");
        assert!(
            text.contains("Windows named pipe") && text.contains("docs/windows.md"),
            "{text}"
        );
    }

    #[test]
    fn stream_tls_takes_both_files() {
        let env = Env::new();
        let config = env
            .load(&[
                "--stream-tls-cert",
                "/etc/crius/s.crt",
                "--stream-tls-key",
                "/etc/crius/s.key",
            ])
            .unwrap();
        assert_eq!(
            config.stream_tls,
            Some(StreamTls {
                cert: "/etc/crius/s.crt".into(),
                key: "/etc/crius/s.key".into()
            })
        );
    }

    /// The shipped default file (`crius config default`) states every key, and what it
    /// leaves uncommented is exactly the built-in default.
    #[test]
    fn the_default_file_is_complete_and_means_the_defaults() {
        let env = Env::new();
        let path = env.write_config(DEFAULT_FILE);
        let from_file = env.load(&["--config", path.to_str().unwrap()]).unwrap();
        let builtin = env.load(&[]).unwrap();
        let values = |c: &Config| {
            c.effective()
                .into_iter()
                .map(|e| (e.key, e.value))
                .collect::<Vec<_>>()
        };
        assert_eq!(values(&from_file), values(&builtin));

        // serde lists every known key when it rejects an unknown one.
        let err = toml::from_str::<FileConfig>("no_such_key = 1")
            .unwrap_err()
            .to_string();
        let known: Vec<&str> = err.split('`').skip(3).step_by(2).collect();
        assert!(known.len() > 20, "{err}");
        for key in known {
            let set = DEFAULT_FILE.lines().any(|l| {
                let l = l.trim_start_matches('#');
                l.starts_with(&format!("{key} =")) || l == format!("[{key}]")
            });
            assert!(set, "the default file does not mention {key}");
        }
    }

    #[test]
    fn drop_ins_next_to_the_file_and_flags_merge_in_order() {
        let env = Env::new();
        let path = env.write_config("log_level = \"debug\"\nroot = \"/main\"\n");
        let dir = env.dir.path().join("config.d");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("20-b.toml"), "root = \"/b\"\n").unwrap();
        std::fs::write(
            dir.join("10-a.toml"),
            "root = \"/a\"\nstate = \"/a-state\"\n",
        )
        .unwrap();
        let config = env
            .load(&["--config", path.to_str().unwrap(), "--state", "/flag-state"])
            .unwrap();
        assert_eq!(
            config.drop_ins,
            vec![dir.join("10-a.toml"), dir.join("20-b.toml")]
        );
        assert_eq!(config.root, PathBuf::from("/b"));
        assert_eq!(
            config.source_of("root"),
            Source::File(dir.join("20-b.toml"))
        );
        assert_eq!(config.state, PathBuf::from("/flag-state"));
        assert_eq!(config.source_of("state"), Source::Flag("--state".into()));
        assert_eq!(config.source_of("log_level"), Source::File(path));

        // --config-dir names another directory; one that does not exist is an error.
        let other = env.dir.path().join("other.d");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("x.toml"), "root = \"/other\"\n").unwrap();
        let config = env
            .load(&["--config-dir", other.to_str().unwrap()])
            .unwrap();
        assert_eq!(config.root, PathBuf::from("/other"));
        let missing = env.dir.path().join("missing.d");
        assert!(env
            .load(&["--config-dir", missing.to_str().unwrap()])
            .is_err());
    }

    #[test]
    fn show_is_a_valid_file_with_secrets_redacted() {
        let env = Env::new();
        let path = env.write_config(FULL_FILE);
        let config = env.load(&["--config", path.to_str().unwrap()]).unwrap();
        let text = config.show_text();
        assert!(
            !text.contains("secret") && !text.contains("dXNlcjpwYXNz"),
            "{text}"
        );
        assert!(
            text.contains(&format!("log_level = \"debug\"  # {}", path.display())),
            "{text}"
        );
        let shown = env.write_config(&text);
        let again = env.load(&["--config", shown.to_str().unwrap()]).unwrap();
        assert_eq!(again.log_level, "debug");
        assert_eq!(again.registry.mirrors, config.registry.mirrors);
    }

    #[test]
    fn reload_sees_which_keys_changed() {
        let env = Env::new();
        let old = env.load(&[]).unwrap();
        let new = env
            .load(&["--log-level", "debug", "--event-buffer", "7"])
            .unwrap();
        assert_eq!(changed_keys(&old, &new), ["log_level", "event_buffer"]);
        assert!(changed_keys(&old, &old).is_empty());
    }

    #[test]
    fn durations() {
        let ok = [
            ("0", 0),
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("250ms", 250),
            ("1m30s500ms", 90_500),
            (" 2h ", 7_200_000),
        ];
        for (text, millis) in ok {
            assert_eq!(
                parse_duration(text).unwrap(),
                Duration::from_millis(millis),
                "{text:?}"
            );
        }
        for bad in [
            "",
            "5",
            "m",
            "5x",
            "1.5s",
            "-1s",
            "5 m",
            "s5",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
