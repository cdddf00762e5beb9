//! The `crius` binary: `crius [serve]`, `crius doctor`, `crius config show|default|check`,
//! `crius version`, `crius completion SHELL`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use sd_notify::NotifyState;
use shim::config::{self, BackendKind, Cli, Command, ConfigAction, LogFormat};
use shim::runtime::Crius;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command() {
        Command::Version => {
            println!(
                "crius {} (CRI {}){}",
                env!("CARGO_PKG_VERSION"),
                shim::services::runtime_info::RUNTIME_API_VERSION,
                if shim::failpoint::ENABLED {
                    ", built with failpoints (for tests only)"
                } else {
                    ""
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor(args) => {
            // 2: the checks could not run at all (scripts tell it from "a check failed").
            return match config::load(&cli)
                .map_err(anyhow::Error::from)
                .and_then(|c| {
                    shim::doctor::run(&c, &args, &|c: &config::Config| {
                        backend_for(c, false).map_err(|e| format!("{e:#}"))
                    })
                }) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("crius doctor: {e:#}");
                    ExitCode::from(2)
                }
            };
        }
        Command::Config { action } => config_command(&cli, &action),
        Command::Completion { shell } => {
            // Into memory first: writing to a closed pipe is an error here, not a panic.
            let mut script = Vec::new();
            clap_complete::generate(
                shell,
                &mut <Cli as CommandFactory>::command(),
                "crius",
                &mut script,
            );
            std::io::Write::write_all(&mut std::io::stdout(), &script)
                .map(|()| ExitCode::SUCCESS)
                .context("writing the completion script")
        }
        Command::Man => clap_mangen::Man::new(<Cli as CommandFactory>::command())
            .section("8")
            .render(&mut std::io::stdout())
            .map(|()| ExitCode::SUCCESS)
            .context("writing the man page"),
        Command::Serve => serve(cli).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("crius: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn config_command(cli: &Cli, action: &ConfigAction) -> anyhow::Result<ExitCode> {
    match action {
        ConfigAction::Show { json } => {
            let config = config::load(cli)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&config.show_json())?);
            } else {
                print!("{}", config.show_text());
            }
            Ok(ExitCode::SUCCESS)
        }
        ConfigAction::Default => {
            print!("{}", config::DEFAULT_FILE);
            Ok(ExitCode::SUCCESS)
        }
        ConfigAction::Check { files } if files.is_empty() => {
            let config = config::load(cli)?;
            let file = config.config_file.as_ref().map_or_else(
                || "no file (defaults)".to_string(),
                |f| f.display().to_string(),
            );
            println!(
                "configuration ok: {file}, {} drop-in(s), flags",
                config.drop_ins.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        ConfigAction::Check { files } => {
            let mut failed = false;
            for file in files {
                match config::check_file(file) {
                    Ok(_) => println!("{}: ok", file.display()),
                    Err(e) => {
                        eprintln!("{}: {e}", file.display());
                        failed = true;
                    }
                }
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

/// The log filter, replaceable while crius runs (SIGHUP).
struct LogLevel {
    handle: reload::Handle<EnvFilter, Registry>,
    /// RUST_LOG was set at start: it keeps deciding, whatever `log_level` says.
    from_env: bool,
}

impl LogLevel {
    fn set(&self, level: &str) -> Result<(), String> {
        if self.from_env {
            return Err("RUST_LOG is set and keeps deciding the log level".into());
        }
        let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        self.handle.reload(filter).map_err(|e| e.to_string())
    }
}

/// Logs go to stderr, one line per event: plain text (colour only for a person at a
/// terminal; a log file or journald gets none) or one JSON object per line.
fn init_logging(level: &str, format: LogFormat) -> LogLevel {
    let from_env = std::env::var_os("RUST_LOG").is_some();
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => {
            let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
            registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_target(false)
                        .with_ansi(colour)
                        .with_writer(std::io::stderr),
                )
                .init();
        }
        LogFormat::Json => {
            registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .json()
                        .with_target(false)
                        .with_current_span(true)
                        .with_span_list(false)
                        .with_writer(std::io::stderr),
                )
                .init();
        }
    }
    LogLevel { handle, from_env }
}

/// Tells systemd (Type=notify) about crius's state; nothing happens outside systemd.
fn tell_systemd(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "cannot notify the service manager");
    }
}

fn serve(cli: Cli) -> anyhow::Result<()> {
    let config = config::load(&cli)?;
    let log_level = init_logging(&config.log_level, config.log_format);
    // SAFETY: no thread exists yet (logging spawns none; the runtime starts below), so
    // unsetting LISTEN_FDS/LISTEN_PID cannot race a reader of the environment.
    let activated = unsafe { shim::server::take_activated_socket(&config.listen) }?;
    shim::failpoint::init();
    shim::memory::limit_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let reload = Reload {
        cli,
        running: config.clone(),
        log_level,
    };
    runtime.block_on(run(config, activated, reload))
}

/// What SIGHUP needs: the command line to read the configuration again with, the
/// configuration in force, and the log filter.
struct Reload {
    cli: Cli,
    running: config::Config,
    log_level: LogLevel,
}

impl Reload {
    /// From now on SIGHUP reloads instead of ending crius.
    fn watch(mut self) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGHUP; reloading is off");
                return;
            }
        };
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tell_systemd(&[NotifyState::Reloading]);
                self.reload();
                tell_systemd(&[NotifyState::Ready]);
            }
        });
    }

    /// Reads the configuration again; applies what can change in place and names what
    /// needs a restart. An invalid configuration changes nothing.
    fn reload(&mut self) {
        let new = match config::load(&self.cli) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(
                    error = %e,
                    "SIGHUP: the configuration is invalid; nothing changed"
                );
                return;
            }
        };
        let changed = config::changed_keys(&self.running, &new);
        let (reloadable, restart): (Vec<String>, Vec<String>) = changed
            .into_iter()
            .partition(|k| config::RELOADABLE_KEYS.contains(&k.as_str()));
        let mut applied = Vec::new();
        for key in reloadable {
            if key == "log_level" {
                match self.log_level.set(&new.log_level) {
                    Ok(()) => {
                        self.running.log_level = new.log_level.clone();
                        applied.push(format!("log_level = {:?}", new.log_level));
                    }
                    Err(e) => tracing::warn!(error = %e, "SIGHUP: log_level not changed"),
                }
            }
        }
        if applied.is_empty() && restart.is_empty() {
            tracing::info!("SIGHUP: configuration reloaded; nothing changed");
        } else if !applied.is_empty() {
            tracing::info!(applied = %applied.join(", "), "SIGHUP: configuration reloaded");
        }
        if !restart.is_empty() {
            tracing::warn!(
                keys = %restart.join(", "),
                "SIGHUP: changed in the configuration, but only a restart applies them"
            );
        }
    }
}

/// Removes the socket crius made itself; one systemd passed stays with systemd.
fn release_socket(owned: &Option<PathBuf>) {
    if let Some(path) = owned {
        let _ = std::fs::remove_file(path);
    }
}

/// A client of the configured engine: the one place that names a backend implementation.
/// `local_content`: containerd may write pulled layers into its content directory (serving
/// only; `doctor` just asks questions).
fn backend_for(
    config: &config::Config,
    local_content: bool,
) -> anyhow::Result<Arc<dyn runtime_backends::Backend>> {
    match config.backend {
        BackendKind::Containerd => Ok(Arc::new(runtime_backends::containerd::Containerd::new(
            runtime_backends::containerd::ContainerdConfig {
                address: config.containerd_address.clone(),
                namespace: config.containerd_namespace.clone(),
                local_content,
                handlers: config
                    .runtimes
                    .iter()
                    .map(|(name, runtime)| runtime_backends::RuntimeHandler {
                        name: name.clone(),
                        runtime_type: runtime.runtime_type.clone(),
                        binary: runtime.runtime_path.clone(),
                        root: runtime.runtime_root.clone(),
                    })
                    .collect(),
            },
        )?)),
        BackendKind::Docker => {
            anyhow::bail!("the docker backend is not built yet; use --backend containerd")
        }
    }
}

async fn run(
    config: config::Config,
    activated: Option<std::os::unix::net::UnixListener>,
    reload: Reload,
) -> anyhow::Result<()> {
    reload.watch();
    for dir in [&config.root, &config.state] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut backend = backend_for(&config, config.containerd_local_content)?;
    if config.metrics_address.is_some() {
        backend = Arc::new(shim::metrics::backend::TimedBackend::new(backend));
    }
    let listen = config.listen.clone();
    // From here on a signal stops crius cleanly, and takes the socket with it.
    let mut shutdown = shim::server::Shutdown::watch();
    // Claim the socket first: a second crius must not touch the first one's state. One
    // systemd passed (socket activation) is systemd's: crius never removes it.
    let (listener, owned_socket) = match activated {
        Some(passed) => (
            tokio::net::UnixListener::from_std(passed).context("serving the passed socket")?,
            None,
        ),
        None => (shim::server::bind(&listen)?, Some(listen.clone())),
    };
    let metrics = match config.metrics_address {
        Some(address) => match shim::metrics::Endpoint::bind(address).await {
            Ok(endpoint) => Some(endpoint),
            Err(e) => {
                release_socket(&owned_socket);
                return Err(e);
            }
        },
        None => None,
    };
    let streaming = match shim::streaming::Endpoint::bind(
        config.stream_address,
        config
            .stream_tls
            .as_ref()
            .map(|tls| (tls.cert.clone(), tls.key.clone())),
    )
    .await
    {
        Ok(endpoint) => endpoint,
        Err(e) => {
            release_socket(&owned_socket);
            return Err(e);
        }
    };
    let not_served = tokio::select! {
        started = start(config, backend) => match started {
            Ok(crius) => {
                // Serve while the CRI does; dropped, they stop with it.
                let _metrics = metrics.map(|endpoint| endpoint.serve(crius.clone()));
                let _streaming = streaming.serve(crius.clone());
                tell_systemd(&[NotifyState::Ready, NotifyState::Status("serving CRI")]);
                let remove_on_exit = owned_socket.as_deref();
                return shim::server::serve_listener(crius, listener, remove_on_exit, shutdown)
                    .await;
            }
            Err(e) => Err(e),
        },
        () = shutdown.requested() => {
            tracing::info!("stopped before serving");
            Ok(())
        }
    };
    release_socket(&owned_socket);
    not_served
}

/// Everything between claiming the socket and serving on it: the backend, images, recovery.
/// Stopping part-way is safe: recovery starts over from the backend's state the next time.
async fn start(
    config: config::Config,
    backend: Arc<dyn runtime_backends::Backend>,
) -> anyhow::Result<Arc<Crius>> {
    let mut crius = Crius::new(config, backend);
    crius.load_default_apparmor_profile().await;
    let crius = Arc::new(crius);
    // The node's facts, once: what the node cannot do is said here, not per container.
    let host = &crius.host;
    tracing::info!(
        socket = %crius.config.listen.display(),
        backend = crius.backend.name(),
        cgroup_driver = shim::cgroups::CgroupDriver::name(&crius.cgroups),
        cgroup = if host.cgroups.unified { "v2" } else { "v1" },
        hugetlb = host.cgroups.hugetlb,
        swap_limits = host.cgroups.memory_swap,
        apparmor = host.apparmor.enabled,
        selinux = host.selinux_enabled,
        seccomp = host.seccomp_enabled,
        "crius starting"
    );
    tell_systemd(&[NotifyState::Status("waiting for the backend")]);
    wait_for_backend(&crius).await;
    tell_systemd(&[NotifyState::Status("indexing images and recovering pods")]);
    crius.refresh_images().await?;
    crius.ensure_pause_image().await?;
    shim::recover::recover(&crius).await?;
    crius
        .measure_image_fs(runtime_backends::FsWalk::Changed)
        .await;
    shim::events::spawn(crius.clone());
    crius.spawn_refresher();
    tracing::info!("serving CRI");
    Ok(crius)
}

/// Recovery needs the backend: wait for it, saying so now and then.
async fn wait_for_backend(crius: &Crius) {
    let mut attempt = 0u32;
    loop {
        match crius.backend.version().await {
            Ok(v) => {
                tracing::info!(engine = %v.name, version = %v.version, "backend reachable");
                return;
            }
            Err(e) => {
                if attempt.is_multiple_of(10) {
                    tracing::warn!(error = %e, "waiting for the backend");
                }
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
