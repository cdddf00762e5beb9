//! The `crius` binary: `crius [serve]`, `crius doctor`, `crius version`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use shim::config::{self, BackendKind, Cli, Command};
use shim::runtime::Crius;

fn main() -> std::process::ExitCode {
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
            Ok(())
        }
        Command::Doctor => config::load(&cli)
            .map_err(anyhow::Error::from)
            .and_then(|c| shim::doctor::run(&c)),
        Command::Serve => serve(&cli),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crius: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal: a log file or journald gets plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(colour)
        .init();
}

fn serve(cli: &Cli) -> anyhow::Result<()> {
    let config = config::load(cli)?;
    init_tracing(&config.log_level);
    shim::failpoint::init();
    shim::memory::limit_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(config))
}

async fn run(config: config::Config) -> anyhow::Result<()> {
    for dir in [&config.root, &config.state] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut backend: Arc<dyn runtime_backends::Backend> = match config.backend {
        BackendKind::Containerd => Arc::new(runtime_backends::containerd::Containerd::new(
            runtime_backends::containerd::ContainerdConfig {
                address: config.containerd_address.clone(),
                namespace: config.containerd_namespace.clone(),
                local_content: config.containerd_local_content,
            },
        )?),
        BackendKind::Docker => {
            anyhow::bail!("the docker backend is not built yet; use --backend containerd")
        }
    };
    if config.metrics_address.is_some() {
        backend = Arc::new(shim::metrics::backend::TimedBackend::new(backend));
    }
    let listen = config.listen.clone();
    // From here on a signal stops crius cleanly, and takes the socket with it.
    let mut shutdown = shim::server::Shutdown::watch();
    // Claim the socket first: a second crius must not touch the first one's state.
    let listener = shim::server::bind(&listen)?;
    let metrics = match config.metrics_address {
        Some(address) => match shim::metrics::Endpoint::bind(address).await {
            Ok(endpoint) => Some(endpoint),
            Err(e) => {
                let _ = std::fs::remove_file(&listen);
                return Err(e);
            }
        },
        None => None,
    };
    let not_served = tokio::select! {
        started = start(config, backend) => match started {
            Ok(crius) => {
                // Serves while the CRI does; dropped, it stops with it.
                let _metrics = metrics.map(|endpoint| endpoint.serve(crius.clone()));
                return shim::server::serve(crius, listener, &listen, shutdown).await;
            }
            Err(e) => Err(e),
        },
        () = shutdown.requested() => {
            tracing::info!("stopped before serving");
            Ok(())
        }
    };
    let _ = std::fs::remove_file(&listen);
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
    tracing::info!(
        socket = %crius.config.listen.display(),
        backend = crius.backend.name(),
        cgroup_driver = shim::cgroups::CgroupDriver::name(&crius.cgroups),
        "crius starting"
    );
    wait_for_backend(&crius).await;
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
