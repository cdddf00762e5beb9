//! The CRI socket: ownership checks, permissions, socket activation, graceful shutdown.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use cri_api::v1::image_service_server::ImageServiceServer;
use cri_api::v1::runtime_service_server::RuntimeServiceServer;
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_stream::wrappers::UnixListenerStream;

use crate::runtime::Crius;
use crate::services::Cri;

/// Largest gRPC message either way (kubelet's own limit).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Bind the CRI socket: create its directory, refuse when a live process answers on it,
/// replace a stale one, and restrict it to owner and group (0660).
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "{} is in use by another live process (is crius already running?)",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("setting permissions of {}", path.display()))?;
    Ok(listener)
}

/// The listening socket systemd passed (socket activation: `LISTEN_FDS`/`LISTEN_PID`), if
/// any. It unsets those variables so that no child (a CNI plugin) mistakes them for its own.
/// A passed socket that is not a listening unix stream socket is an error; one bound to
/// another path than `expected` is served anyway (systemd's unit decides), with a warning.
///
/// # Safety
///
/// Removes environment variables: call it while the process has a single thread, before
/// the async runtime starts.
pub unsafe fn take_activated_socket(
    expected: &Path,
) -> anyhow::Result<Option<std::os::unix::net::UnixListener>> {
    use nix::sys::socket::{getsockopt, sockopt};
    use std::os::fd::{FromRawFd, OwnedFd};

    // SAFETY: this function's own precondition: no other thread exists yet.
    let mut fds = unsafe { sd_notify::listen_fds_and_unset_env() }
        .context("reading LISTEN_FDS from the service manager")?;
    let Some(first) = fds.next() else {
        return Ok(None);
    };
    let extra = fds.count();
    // SAFETY: the service manager passed this descriptor to this process (LISTEN_PID matched)
    // and nothing else in crius knows it: from here on it is owned exactly once.
    let fd = unsafe { OwnedFd::from_raw_fd(first) };
    let kind = getsockopt(&fd, sockopt::SockType).context("fd 3 from systemd is not a socket")?;
    let listening = getsockopt(&fd, sockopt::AcceptConn).unwrap_or(false);
    if kind != nix::sys::socket::SockType::Stream || !listening {
        bail!(
            "the socket systemd passed is not a listening stream socket \
             (ListenStream= in crius.socket)"
        );
    }
    let listener = std::os::unix::net::UnixListener::from(fd);
    let address = listener
        .local_addr()
        .context("the socket systemd passed is not a unix socket")?;
    listener
        .set_nonblocking(true)
        .context("making the passed socket non-blocking")?;
    if extra > 0 {
        tracing::warn!(
            sockets = extra + 1,
            "systemd passed more than one socket; serving the first only"
        );
    }
    let passed = address.as_pathname().map_or_else(
        || "an unnamed socket".to_string(),
        |p| p.display().to_string(),
    );
    if address.as_pathname() != Some(expected) {
        tracing::warn!(
            passed = %passed,
            listen = %expected.display(),
            "serving the socket systemd passed, not the configured listen path"
        );
    } else {
        tracing::info!(socket = %passed, "serving the socket systemd passed (socket activation)");
    }
    Ok(Some(listener))
}

/// Serve both CRI services until `shutdown`; in-flight calls finish, then the socket goes.
pub async fn serve(
    crius: Arc<Crius>,
    listener: UnixListener,
    path: &Path,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    serve_listener(crius, listener, Some(path), shutdown).await
}

/// [`serve`] on a socket crius may not own: `remove_on_exit` is `None` for one systemd
/// passed, which systemd keeps (and keeps listening on) after crius exits.
pub async fn serve_listener(
    crius: Arc<Crius>,
    listener: UnixListener,
    remove_on_exit: Option<&Path>,
    mut shutdown: Shutdown,
) -> anyhow::Result<()> {
    let kept_answers = crate::wire::KeptAnswersLayer::new(crius.clone());
    let cri = Cri { crius };
    let runtime = RuntimeServiceServer::new(cri.clone())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let images = ImageServiceServer::new(cri)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    // After SIGTERM, in-flight calls get SHUTDOWN_GRACE to finish; a client that keeps an
    // idle connection open without answering HTTP/2 GOAWAY must not hold the process hostage.
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.requested().await;
        let _ = signalled_tx.send(());
    };
    let serve = tonic::transport::Server::builder()
        .layer(kept_answers)
        .add_service(runtime)
        .add_service(images)
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), signal);
    let grace_over = async move {
        match signalled_rx.await {
            Ok(()) => tokio::time::sleep(SHUTDOWN_GRACE).await,
            Err(_) => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        served = serve => served,
        () = grace_over => {
            tracing::warn!(
                grace_secs = SHUTDOWN_GRACE.as_secs(),
                "connections still open after the shutdown grace period; closing them"
            );
            Ok(())
        }
    };
    if let Some(path) = remove_on_exit {
        let _ = std::fs::remove_file(path);
    }
    result.context("serving the CRI")
}

/// How long in-flight calls may run after SIGTERM/SIGINT before crius exits anyway.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// SIGTERM or SIGINT, watched from the moment crius starts, so that a signal while it waits
/// for the backend or recovers is neither lost nor fatal: start-up stops and the socket goes.
pub struct Shutdown {
    term: Option<Signal>,
    int: Option<Signal>,
}

impl Shutdown {
    /// Registers at once (inside the tokio runtime): from here on SIGTERM and SIGINT ask crius
    /// to stop instead of killing it, and one that arrives before anyone waits is kept.
    pub fn watch() -> Shutdown {
        let register = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot watch {name}");
                None
            }
        };
        Shutdown {
            term: register(SignalKind::terminate(), "SIGTERM"),
            int: register(SignalKind::interrupt(), "SIGINT"),
        }
    }

    /// A shutdown no signal asks for: serving ends only when its runtime does (for tests, which
    /// must not take over the test process's signals).
    pub fn never() -> Shutdown {
        Shutdown {
            term: None,
            int: None,
        }
    }

    /// Resolves once SIGTERM or SIGINT has arrived (at once if one came before).
    pub async fn requested(&mut self) {
        async fn arrived(watched: &mut Option<Signal>) {
            let delivered = match watched {
                Some(s) => s.recv().await.is_some(),
                None => false,
            };
            if !delivered {
                // Never registered, or the runtime is going away: nothing will arrive.
                std::future::pending::<()>().await;
            }
        }
        tokio::select! {
            () = arrived(&mut self.term) => tracing::info!("SIGTERM: shutting down"),
            () = arrived(&mut self.int) => tracing::info!("SIGINT: shutting down"),
        }
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    }
}
