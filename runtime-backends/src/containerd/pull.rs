//! Pulling images from registries into containerd 1.6, which has no Transfer service.
//!
//! The registry side is `oci-client` (bearer-token and basic auth, manifests, blob streams);
//! the containerd side is the same path as an import: everything is written under one lease
//! (`Content.Write` in 1 MiB messages; layers, when containerd's content directory is
//! visible, written there by crius and only recorded by containerd, see [`local_content`]),
//! layers are unpacked into the snapshotter while they arrive (or `Snapshots.Prepare` +
//! `Diff.Apply` + `Snapshots.Commit` by chain id), and the image records point at the index
//! or manifest with `containerd.io/gc.ref.*` labels on every blob, so the garbage collector
//! keeps exactly what the image needs once the lease goes.
//!
//! Robustness:
//! - concurrent pulls of one reference share one download (an in-flight map of shared
//!   futures; the pull runs in its own task, so a caller that gives up does not cancel it);
//! - a pull that receives nothing for `progress_timeout` is cancelled (`DeadlineExceeded`);
//! - a failed or cancelled pull aborts its ingests and deletes its lease with `sync`, so no
//!   partial content stays behind;
//! - every blob (index, manifest, config, layers) is checked against its digest.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use containerd_client::services::v1 as api;
use containerd_client::types::Descriptor;
use futures::future::{BoxFuture, FutureExt, Shared};
use futures::StreamExt;
use oci_client::client::{
    Certificate, CertificateEncoding, ClientConfig, ClientProtocol, SizedStream,
};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt as _;

use super::apply::{self, ChannelReader, Compression, Root};
use super::local_content::{self, LocalContent, Placed, ScratchFile};
use super::{map_status, Containerd, SNAPSHOTTER};
use crate::oci::{
    chain_ids, diff_id_mismatch, node_architecture, parse_config, platform_manifest, repository_of,
    sha256_digest, MEDIA_DOCKER_LIST, MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST,
};
use crate::reference::ImageReference;
use crate::{
    BackendError, Blob, ImageRecord, PullImage, RegistryCredentials, RegistrySettings, Result,
};

const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MEDIA_DOCKER_MANIFEST_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const MEDIA_DOCKER_MANIFEST_V1_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";
const CONFIG_TYPES: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];
/// Layer media types containerd 1.6's differ applies.
const LAYER_TYPES: [&str; 5] = [
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
];
const MANIFEST_ACCEPT: [&str; 4] = [
    MEDIA_OCI_INDEX,
    MEDIA_DOCKER_LIST,
    MEDIA_OCI_MANIFEST,
    MEDIA_DOCKER_MANIFEST,
];
/// Size of one `Content.Write` message.
const CHUNK: usize = 1 << 20;
/// Chunks queued between the download and the layer applier.
const APPLY_QUEUE: usize = 256;
/// Chunks queued between the download and the scratch-file writer.
const SCRATCH_QUEUE: usize = 256;
/// Pull progress is logged (debug) every this many bytes of a layer.
const LOG_EVERY: u64 = 8 << 20;
const ENGINE: &str = "registry";

type SharedPull = Shared<BoxFuture<'static, Result<ImageRecord, Arc<BackendError>>>>;

/// Pulls in flight, by normalised reference, and the registry clients they reuse.
#[derive(Default)]
pub(crate) struct InFlight {
    pulls: Mutex<HashMap<String, SharedPull>>,
    /// Registry clients by endpoint, CA and credentials: a client keeps its connections and
    /// bearer tokens between pulls, and only ever serves the credentials it was made for.
    clients: Mutex<HashMap<[u8; 32], Client>>,
}

/// Registry clients kept at most; past this the cache starts over.
const MAX_CLIENTS: usize = 64;

/// Bytes received and when the last ones arrived; the watchdog reads it.
struct Progress {
    start: Instant,
    last_ms: AtomicU64,
    bytes: AtomicU64,
}

impl Progress {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last_ms.store(self.elapsed_ms(), Ordering::Relaxed);
    }

    fn add(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        self.touch();
    }

    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Resolves once nothing happened for `timeout`.
    async fn stalled(&self, timeout: Duration) {
        loop {
            let idle = Duration::from_millis(
                self.elapsed_ms()
                    .saturating_sub(self.last_ms.load(Ordering::Relaxed)),
            );
            if idle >= timeout {
                return;
            }
            tokio::time::sleep(timeout - idle).await;
        }
    }
}

/// One place an image can be fetched from: a mirror or the registry itself.
#[derive(Debug, Clone)]
struct Endpoint {
    /// `host[:port]`.
    host: String,
    plain_http: bool,
    mirror: bool,
}

/// The manifest chosen for this node, fetched and verified.
struct Remote {
    /// What the reference points at (an index or a manifest).
    top: Blob,
    top_digest: String,
    /// The platform manifest (same as `top` when the reference names a manifest).
    manifest: Blob,
    manifest_digest: String,
    config_desc: Descriptor,
    layers: Vec<Descriptor>,
}

/// Install the rustls crypto provider once (oci-client is built without one).
fn init_tls() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // An error means another provider is installed already, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// oci-client's `Reference` for an image reference, checked by the project's one grammar
/// (`crate::reference`). Not `Reference::from_str`: its first use compiles the reference
/// grammar's regex, which took ~100 ms and kept ~11 MiB.
fn parse_reference(name: &str) -> std::result::Result<Reference, String> {
    let parsed = ImageReference::parse(name)?;
    let (registry, path) = (parsed.registry, parsed.repository);
    Ok(match (parsed.tag, parsed.digest) {
        (Some(tag), Some(digest)) => Reference::with_tag_and_digest(registry, path, tag, digest),
        (None, Some(digest)) => Reference::with_digest(registry, path, digest),
        (tag, None) => Reference::with_tag(registry, path, tag.unwrap_or_else(|| "latest".into())),
    })
}

/// containerd treats these as plain HTTP without configuration; so does crius.
fn is_local(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    matches!(name, "localhost" | "127.0.0.1" | "[::1]")
}

/// Mirrors of `registry` in order, then the registry itself.
fn endpoints(registry: &str, settings: &RegistrySettings) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for url in settings.mirrors.get(registry).into_iter().flatten() {
        let (plain_http, rest) = match url.split_once("://") {
            Some(("http", rest)) => (true, rest),
            Some((_, rest)) => (false, rest),
            None => (false, url.as_str()),
        };
        let host = rest.split('/').next().unwrap_or_default().to_string();
        if !host.is_empty() {
            out.push(Endpoint {
                host,
                plain_http,
                mirror: true,
            });
        }
    }
    let plain_http = is_local(registry) || settings.insecure.iter().any(|h| h == registry);
    out.push(Endpoint {
        host: registry.to_string(),
        plain_http,
        mirror: false,
    });
    out
}

/// The credentials for one endpoint: the caller's (unless they name another server), else
/// the configured ones for the endpoint's host, else for the image's registry.
fn credentials_for<'a>(
    request: &'a PullImage,
    endpoint: &Endpoint,
    registry: &str,
) -> Option<&'a RegistryCredentials> {
    request
        .credentials
        .as_ref()
        .filter(|c| !c.is_empty())
        .filter(|c| {
            c.server_address.is_empty()
                || same_registry(server_host(&c.server_address), &endpoint.host)
        })
        .or_else(|| {
            let auths = &request.registry.auths;
            auths
                .get(&endpoint.host)
                .or_else(|| auths.get(registry))
                .filter(|c| !c.is_empty())
        })
}

/// The `host[:port]` a `server_address` names.
fn server_host(address: &str) -> &str {
    let rest = address.split_once("://").map_or(address, |(_, rest)| rest);
    rest.split('/').next().unwrap_or_default()
}

/// Do two `host[:port]`s name one registry? Docker Hub goes by three names.
fn same_registry(a: &str, b: &str) -> bool {
    let hub = |h: &str| {
        ["docker.io", "index.docker.io", "registry-1.docker.io"]
            .iter()
            .any(|name| h.eq_ignore_ascii_case(name))
    };
    a.eq_ignore_ascii_case(b) || (hub(a) && hub(b))
}

fn registry_auth(credentials: Option<&RegistryCredentials>) -> Result<RegistryAuth> {
    let Some(c) = credentials else {
        return Ok(RegistryAuth::Anonymous);
    };
    if !c.registry_token.is_empty() {
        return Ok(RegistryAuth::Bearer(c.registry_token.clone()));
    }
    if !c.identity_token.is_empty() {
        return Ok(RegistryAuth::Basic(
            "<token>".to_string(),
            c.identity_token.clone(),
        ));
    }
    if !c.username.is_empty() {
        return Ok(RegistryAuth::Basic(c.username.clone(), c.password.clone()));
    }
    if !c.auth.is_empty() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(c.auth.trim())
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .ok_or_else(|| {
                BackendError::InvalidArgument("auth is not base64 of user:password".into())
            })?;
        let (user, password) = decoded.split_once(':').ok_or_else(|| {
            BackendError::InvalidArgument("auth is not base64 of user:password".into())
        })?;
        return Ok(RegistryAuth::Basic(user.to_string(), password.to_string()));
    }
    Ok(RegistryAuth::Anonymous)
}

/// The key of a cached client: everything that makes two clients differ.
fn client_key(endpoint: &Endpoint, ca: Option<&[u8]>, auth: &RegistryAuth) -> [u8; 32] {
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    field(endpoint.host.as_bytes());
    field(&[u8::from(endpoint.plain_http), u8::from(endpoint.mirror)]);
    field(ca.unwrap_or_default());
    match auth {
        RegistryAuth::Anonymous => field(b"anonymous"),
        RegistryAuth::Basic(user, password) => {
            field(b"basic");
            field(user.as_bytes());
            field(password.as_bytes());
        }
        RegistryAuth::Bearer(token) => {
            field(b"bearer");
            field(token.as_bytes());
        }
    }
    hasher.finalize().into()
}

impl InFlight {
    /// A client for `endpoint` with `auth`, reused when one was made for exactly these.
    fn client(
        &self,
        endpoint: &Endpoint,
        ca_file: Option<&Path>,
        auth: &RegistryAuth,
    ) -> Result<Client> {
        let ca = ca_file
            .map(|path| {
                std::fs::read(path).map_err(|e| {
                    BackendError::io(
                        format!("reading CA file {} for {}", path.display(), endpoint.host),
                        e,
                    )
                })
            })
            .transpose()?;
        let key = client_key(endpoint, ca.as_deref(), auth);
        if let Some(client) = self.clients.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(client);
        }
        let started = Instant::now();
        let client = new_client(endpoint, ca)?;
        tracing::debug!(endpoint = %endpoint.host, ms = started.elapsed().as_millis(), "registry client made");
        if let Ok(mut clients) = self.clients.lock() {
            if clients.len() >= MAX_CLIENTS {
                clients.clear();
            }
            clients.insert(key, client.clone());
        }
        Ok(client)
    }
}

fn new_client(endpoint: &Endpoint, ca: Option<Vec<u8>>) -> Result<Client> {
    init_tls();
    let mut config = ClientConfig {
        protocol: if endpoint.plain_http {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        user_agent: concat!("crius/", env!("CARGO_PKG_VERSION")),
        connect_timeout: Some(Duration::from_secs(30)),
        ..ClientConfig::default()
    };
    if let Some(data) = ca {
        config.extra_root_certificates.push(Certificate {
            encoding: CertificateEncoding::Pem,
            data,
        });
    }
    Client::try_from(config).map_err(|e| {
        BackendError::InvalidArgument(format!("registry client for {}: {e}", endpoint.host))
    })
}

fn auth_error(reference: &str, auth: &RegistryAuth, detail: &str) -> BackendError {
    let what = match auth {
        RegistryAuth::Anonymous => {
            "the registry requires credentials and none were given".to_string()
        }
        RegistryAuth::Basic(user, _) => {
            format!("the registry rejected the credentials of user {user:?}")
        }
        RegistryAuth::Bearer(_) => "the registry rejected the registry token".to_string(),
    };
    BackendError::Unauthenticated(format!("pulling {reference}: {what}: {detail}"))
}

/// Map an oci-client error to a backend error with a clear cause.
fn map_oci(
    err: OciDistributionError,
    reference: &str,
    host: &str,
    auth: &RegistryAuth,
) -> BackendError {
    use OciDistributionError as E;
    let not_found = |detail: String| BackendError::NotFound {
        kind: "image",
        id: format!("{reference} ({detail})"),
    };
    match err {
        E::UnauthorizedError { url } => auth_error(reference, auth, &format!("401 from {url}")),
        E::AuthenticationFailure(reason) => auth_error(reference, auth, &reason),
        E::ImageManifestNotFoundError(detail) => not_found(detail),
        E::RegistryError { envelope, url } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            let detail = format!("{envelope} from {url}");
            if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                auth_error(reference, auth, &detail)
            } else if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NotFound
                        | OciErrorCode::ManifestBlobUnknown
                )
            }) {
                not_found(detail)
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Toomanyrequests))
            {
                BackendError::Unavailable {
                    engine: ENGINE,
                    message: format!("{host}: {detail}"),
                }
            } else {
                BackendError::FailedPrecondition(format!(
                    "pulling {reference}: registry {host} answered {detail}"
                ))
            }
        }
        E::ServerError { code, url, message } => match code {
            401 | 403 => auth_error(reference, auth, &format!("{code} from {url}: {message}")),
            404 => not_found(format!("404 from {url}")),
            _ => BackendError::Unavailable {
                engine: ENGINE,
                message: format!("{host} answered {code} for {url}: {}", message.trim()),
            },
        },
        E::RequestError(e) => BackendError::Unavailable {
            engine: ENGINE,
            message: format!("cannot reach {host} for {reference}: {}", error_chain(&e)),
        },
        E::DigestError(e) => {
            BackendError::InvalidArgument(format!("pulling {reference}: digest mismatch: {e}"))
        }
        e @ (E::UnsupportedMediaTypeError(_)
        | E::IncompatibleLayerMediaTypeError(_)
        | E::UnsupportedSchemaVersionError(_)) => {
            BackendError::FailedPrecondition(format!("pulling {reference}: {e}"))
        }
        E::IoError(e) => stream_error(reference, host, &e),
        other => BackendError::Engine {
            engine: ENGINE,
            message: format!("pulling {reference} from {host}: {other}"),
        },
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// An error reading a blob stream: a digest mismatch found by oci-client, or the network.
fn stream_error(reference: &str, host: &str, err: &std::io::Error) -> BackendError {
    let text = error_chain(err);
    if text.to_ascii_lowercase().contains("digest") {
        BackendError::InvalidArgument(format!("pulling {reference}: {text}"))
    } else {
        BackendError::Unavailable {
            engine: ENGINE,
            message: format!("reading from {host} for {reference}: {text}"),
        }
    }
}

/// A copy of an error shared between the callers of one pull.
fn copy_error(err: &BackendError) -> BackendError {
    match err {
        BackendError::Unavailable { engine, message } => BackendError::Unavailable {
            engine,
            message: message.clone(),
        },
        BackendError::NotFound { kind, id } => BackendError::NotFound {
            kind,
            id: id.clone(),
        },
        BackendError::AlreadyExists { kind, id } => BackendError::AlreadyExists {
            kind,
            id: id.clone(),
        },
        BackendError::FailedPrecondition(m) => BackendError::FailedPrecondition(m.clone()),
        BackendError::InvalidArgument(m) => BackendError::InvalidArgument(m.clone()),
        BackendError::DeadlineExceeded(m) => BackendError::DeadlineExceeded(m.clone()),
        BackendError::Unauthenticated(m) => BackendError::Unauthenticated(m.clone()),
        BackendError::Engine { engine, message } => BackendError::Engine {
            engine,
            message: message.clone(),
        },
        BackendError::Io { context, source } => BackendError::io(
            context.clone(),
            std::io::Error::new(source.kind(), source.to_string()),
        ),
    }
}

fn json(raw: &[u8], what: &str, digest: &str) -> Result<Value> {
    serde_json::from_slice(raw)
        .map_err(|e| BackendError::InvalidArgument(format!("{what} {digest} is not JSON: {e}")))
}

fn descriptor(value: &Value, what: &str) -> Result<Descriptor> {
    let digest = value["digest"].as_str().unwrap_or_default().to_string();
    let hex = digest.strip_prefix("sha256:").unwrap_or_default();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(BackendError::InvalidArgument(format!(
            "{what} has an invalid or non-sha256 digest {digest:?}"
        )));
    }
    Ok(Descriptor {
        media_type: value["mediaType"].as_str().unwrap_or_default().to_string(),
        digest,
        size: value["size"].as_i64().unwrap_or(0),
        annotations: HashMap::new(),
    })
}

/// Check fetched bytes against the digest they were asked for.
fn verify(data: &[u8], expected: &str, what: &str) -> Result<()> {
    let actual = sha256_digest(data);
    if actual != expected {
        return Err(BackendError::InvalidArgument(format!(
            "{what}: digest mismatch: expected {expected}, got {actual}"
        )));
    }
    Ok(())
}

impl Containerd {
    pub(crate) async fn pull_image_impl(&self, request: PullImage) -> Result<ImageRecord> {
        let key = request.reference.clone();
        let shared = {
            let mut pulls = self
                .inner
                .pulls
                .pulls
                .lock()
                .map_err(|_| BackendError::Engine {
                    engine: ENGINE,
                    message: "pull table poisoned".into(),
                })?;
            match pulls.get(&key) {
                Some(running) => {
                    tracing::debug!(image = %key, "joining a pull in flight");
                    running.clone()
                }
                None => {
                    let this = self.clone();
                    let done_key = key.clone();
                    let task = tokio::spawn(async move {
                        let result = this.pull_once(request).await.map_err(Arc::new);
                        if let Ok(mut pulls) = this.inner.pulls.pulls.lock() {
                            pulls.remove(&done_key);
                        }
                        result
                    });
                    let shared = async move {
                        task.await.unwrap_or_else(|e| {
                            Err(Arc::new(BackendError::Engine {
                                engine: ENGINE,
                                message: format!("pull task failed: {e}"),
                            }))
                        })
                    }
                    .boxed()
                    .shared();
                    pulls.insert(key, shared.clone());
                    shared
                }
            }
        };
        shared.await.map_err(|e| copy_error(&e))
    }

    /// One pull under its own lease, watched for progress; cleans up after a failure.
    async fn pull_once(&self, request: PullImage) -> Result<ImageRecord> {
        let progress = Progress::new();
        let ingests = Mutex::new(Vec::new());
        let lease = self.create_lease("pull").await?;
        let work = self.pull_under_lease(&lease, &request, &progress, &ingests);
        let result = if request.progress_timeout.is_zero() {
            work.await
        } else {
            tokio::select! {
                result = work => result,
                () = progress.stalled(request.progress_timeout) => Err(BackendError::DeadlineExceeded(format!(
                    "pulling {}: cancelled after {:?} without progress ({} bytes received)",
                    request.reference,
                    request.progress_timeout,
                    progress.bytes()
                ))),
            }
        };
        let seconds = progress.start.elapsed().as_secs_f64();
        match result {
            Ok(record) => {
                self.delete_lease(&lease, false).await;
                tracing::info!(
                    image = %request.reference,
                    id = %record.id,
                    bytes = progress.bytes(),
                    seconds = format!("{seconds:.2}"),
                    "pulled image"
                );
                Ok(record)
            }
            Err(err) => {
                let refs = ingests.lock().map(|r| r.clone()).unwrap_or_default();
                for reference in refs {
                    self.abort_ingest(&reference).await;
                }
                self.delete_lease(&lease, true).await;
                tracing::debug!(image = %request.reference, error = %err, seconds, "pull failed; its content was removed");
                Err(err)
            }
        }
    }

    async fn abort_ingest(&self, reference: &str) {
        let result = self
            .content()
            .abort(self.req(api::AbortRequest {
                r#ref: reference.to_string(),
            }))
            .await;
        if let Err(status) = result {
            if status.code() != tonic::Code::NotFound {
                tracing::warn!(ingest = reference, error = %status, "could not abort ingest");
            }
        }
    }

    async fn pull_under_lease(
        &self,
        lease: &str,
        request: &PullImage,
        progress: &Progress,
        ingests: &Mutex<Vec<String>>,
    ) -> Result<ImageRecord> {
        let name = request.reference.as_str();
        let reference = parse_reference(name).map_err(|e| {
            BackendError::InvalidArgument(format!("invalid image reference {name:?}: {e}"))
        })?;
        let registry = reference.registry().to_string();
        let all = endpoints(&registry, &request.registry);
        let mut last_error = None;
        for (i, endpoint) in all.iter().enumerate() {
            let auth = registry_auth(credentials_for(request, endpoint, &registry))?;
            let ca_file = request.registry.ca_files.get(&endpoint.host);
            let client = self
                .inner
                .pulls
                .client(endpoint, ca_file.map(|p| p.as_path()), &auth)?;
            let mut target = reference.clone();
            if endpoint.mirror {
                target.set_mirror_registry(endpoint.host.clone());
            }
            progress.touch();
            match self
                .fetch_manifests(&client, &target, &auth, endpoint, name, progress)
                .await
            {
                Ok(remote) => {
                    tracing::debug!(image = name, endpoint = %endpoint.host, "resolved {}", remote.top_digest);
                    return self
                        .store_remote(
                            lease, &client, &target, &auth, endpoint, name, remote, progress,
                            ingests,
                        )
                        .await;
                }
                Err(err) => {
                    if i + 1 < all.len() {
                        tracing::debug!(image = name, endpoint = %endpoint.host, error = %err, "trying the next endpoint");
                    }
                    last_error = Some(err);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| BackendError::NotFound {
            kind: "image",
            id: name.to_string(),
        }))
    }

    /// Fetch the index or manifest the reference names and, from an index, this node's
    /// manifest; check both against their digests.
    async fn fetch_manifests(
        &self,
        client: &Client,
        target: &Reference,
        auth: &RegistryAuth,
        endpoint: &Endpoint,
        name: &str,
        progress: &Progress,
    ) -> Result<Remote> {
        let oci = |e| map_oci(e, name, &endpoint.host, auth);
        let (top_raw, top_digest) = client
            .pull_manifest_raw(target, auth, &MANIFEST_ACCEPT)
            .await
            .map_err(oci)?;
        progress.add(top_raw.len());
        verify(&top_raw, &top_digest, "manifest")?;
        if let Some(wanted) = target.digest() {
            verify(&top_raw, wanted, "manifest")?;
        }
        let top_json = json(&top_raw, "manifest", &top_digest)?;
        let top_type = media_type_of(&top_json);
        let top = Blob {
            media_type: top_type.clone(),
            data: top_raw.to_vec(),
        };
        let (manifest, manifest_digest, manifest_json) =
            if top_type == MEDIA_OCI_INDEX || top_type == MEDIA_DOCKER_LIST {
                let chosen = platform_manifest(&top_json).ok_or_else(|| {
                    BackendError::FailedPrecondition(format!(
                        "pulling {name}: the image index has no manifest for linux/{}",
                        node_architecture()
                    ))
                })?;
                let desc = descriptor(chosen, "index entry")?;
                let mut platform_ref = Reference::with_digest(
                    target.registry().to_string(),
                    target.repository().to_string(),
                    desc.digest.clone(),
                );
                if endpoint.mirror {
                    platform_ref.set_mirror_registry(endpoint.host.clone());
                }
                let (raw, digest) = client
                    .pull_manifest_raw(&platform_ref, auth, &MANIFEST_ACCEPT)
                    .await
                    .map_err(oci)?;
                progress.add(raw.len());
                verify(&raw, &desc.digest, "platform manifest")?;
                let parsed = json(&raw, "manifest", &digest)?;
                let media_type = media_type_of(&parsed);
                (
                    Blob {
                        media_type,
                        data: raw.to_vec(),
                    },
                    desc.digest,
                    parsed,
                )
            } else {
                (top.clone(), top_digest.clone(), top_json)
            };
        if manifest.media_type != MEDIA_OCI_MANIFEST && manifest.media_type != MEDIA_DOCKER_MANIFEST
        {
            return Err(BackendError::FailedPrecondition(format!(
                "pulling {name}: unsupported manifest media type {:?}",
                manifest.media_type
            )));
        }
        let config_desc = descriptor(&manifest_json["config"], "config")?;
        if !CONFIG_TYPES.contains(&config_desc.media_type.as_str()) {
            return Err(BackendError::FailedPrecondition(format!(
                "pulling {name}: {:?} is not a container image (config media type {:?})",
                manifest_digest, config_desc.media_type
            )));
        }
        let mut layers = Vec::new();
        for layer in manifest_json["layers"].as_array().into_iter().flatten() {
            let desc = descriptor(layer, "layer")?;
            if !LAYER_TYPES.contains(&desc.media_type.as_str()) {
                return Err(BackendError::FailedPrecondition(format!(
                    "pulling {name}: unsupported layer media type {:?} ({})",
                    desc.media_type, desc.digest
                )));
            }
            layers.push(desc);
        }
        Ok(Remote {
            top,
            top_digest,
            manifest,
            manifest_digest,
            config_desc,
            layers,
        })
    }

    /// Download config and layers, write index/manifest/config with GC labels, unpack,
    /// and name the image.
    #[allow(clippy::too_many_arguments)]
    async fn store_remote(
        &self,
        lease: &str,
        client: &Client,
        target: &Reference,
        auth: &RegistryAuth,
        endpoint: &Endpoint,
        name: &str,
        remote: Remote,
        progress: &Progress,
        ingests: &Mutex<Vec<String>>,
    ) -> Result<ImageRecord> {
        let oci = |e| map_oci(e, name, &endpoint.host, auth);
        // The config is small: fetch it whole.
        let mut config_raw = Vec::new();
        client
            .pull_blob(target, remote.config_desc.digest.as_str(), &mut config_raw)
            .await
            .map_err(oci)?;
        progress.add(config_raw.len());
        verify(&config_raw, &remote.config_desc.digest, "image config")?;
        let (_, diff_ids) = parse_config(&config_raw)?;
        if diff_ids.len() != remote.layers.len() {
            return Err(BackendError::InvalidArgument(format!(
                "pulling {name}: the manifest has {} layers but the config lists {} diff ids",
                remote.layers.len(),
                diff_ids.len()
            )));
        }
        let chain = chain_ids(&diff_ids);
        // The layers, and meanwhile the config, manifest and index with their GC labels (the
        // lease holds them all until the image is named).
        let layers = async {
            // What each layer has already, looked up for all at once. Both are leased before
            // they are looked at: what is found present stays until the image is recorded.
            let present = futures::future::try_join_all(remote.layers.iter().zip(&chain).map(
                |(layer, chain_id)| async move {
                    let (have_snapshot, have_content) = tokio::join!(
                        self.snapshot_present(lease, chain_id),
                        self.content_present(lease, &layer.digest)
                    );
                    Ok::<(bool, bool), BackendError>((have_content?, have_snapshot))
                },
            ))
            .await?;
            let mut parent = String::new();
            for (((layer, diff_id), chain_id), (have_content, have_snapshot)) in
                remote.layers.iter().zip(&diff_ids).zip(&chain).zip(present)
            {
                let fetch = LayerFetch {
                    lease,
                    client,
                    target,
                    auth,
                    endpoint,
                    name,
                    layer,
                    progress,
                    ingests,
                };
                match (have_content, have_snapshot) {
                    (true, true) => {
                        tracing::debug!(image = name, layer = %layer.digest, "layer already present");
                    }
                    (false, true) => {
                        self.download_layer(&fetch, open_layer(&fetch).await?, None)
                            .await?;
                    }
                    (true, false) => {
                        progress.touch();
                        self.apply_layer(lease, layer, diff_id, &parent, chain_id)
                            .await?;
                    }
                    (false, false) => {
                        self.download_and_apply(&fetch, diff_id, &parent, chain_id)
                            .await?;
                    }
                }
                progress.touch();
                parent = chain_id.clone();
            }
            Ok::<(), BackendError>(())
        };
        let metadata = async {
            let mut config_labels = HashMap::new();
            if let Some(top) = chain.last() {
                config_labels.insert(
                    format!("containerd.io/gc.ref.snapshot.{SNAPSHOTTER}"),
                    top.clone(),
                );
            }
            let config_blob = Blob {
                media_type: remote.config_desc.media_type.clone(),
                data: config_raw,
            };
            self.write_blob(lease, &config_blob, config_labels).await?;
            let mut manifest_labels = HashMap::new();
            manifest_labels.insert(
                "containerd.io/gc.ref.content.config".to_string(),
                remote.config_desc.digest.clone(),
            );
            for (i, layer) in remote.layers.iter().enumerate() {
                manifest_labels.insert(
                    format!("containerd.io/gc.ref.content.l.{i}"),
                    layer.digest.clone(),
                );
            }
            self.write_blob(lease, &remote.manifest, manifest_labels)
                .await?;
            if remote.top_digest != remote.manifest_digest {
                let mut index_labels = HashMap::new();
                index_labels.insert(
                    "containerd.io/gc.ref.content.m.0".to_string(),
                    remote.manifest_digest.clone(),
                );
                self.write_blob(lease, &remote.top, index_labels).await?;
            }
            Ok::<(), BackendError>(())
        };
        tokio::try_join!(layers, metadata)?;

        let top_desc = Descriptor {
            media_type: remote.top.media_type.clone(),
            digest: remote.top_digest.clone(),
            size: i64::try_from(remote.top.data.len()).unwrap_or(i64::MAX),
            annotations: HashMap::new(),
        };
        let digest_name = format!("{}@{}", repository_of(name), remote.top_digest);
        let mut names = Vec::new();
        if !name.contains('@') {
            names.push(name.to_string());
        }
        names.push(digest_name.clone());
        for image_name in &names {
            self.put_image_name(image_name, &top_desc, &HashMap::new())
                .await?;
        }
        self.image_impl(&digest_name)
            .await?
            .ok_or(BackendError::NotFound {
                kind: "image",
                id: digest_name,
            })
    }

    /// Download a layer and, for the overlayfs snapshotter, write it into its snapshot from
    /// the same stream (see [`super::apply`]); otherwise download, then apply with the Diff
    /// service. The snapshot is committed as `chain_id` only if what was written hashes to
    /// `diff_id`.
    async fn download_and_apply(
        &self,
        fetch: &LayerFetch<'_>,
        diff_id: &str,
        parent: &str,
        chain_id: &str,
    ) -> Result<()> {
        let layer = fetch.layer;
        if Compression::of(&layer.media_type) == Some(Compression::None) && layer.digest != diff_id
        {
            // The uncompressed stream is the blob: its digest is the diff id.
            return Err(diff_id_mismatch(&layer.digest, diff_id, &layer.digest));
        }
        // The registry is asked for the layer while the snapshot is prepared.
        let (prepared, opened) = tokio::join!(
            self.prepare_extraction(fetch.lease, parent, chain_id),
            open_layer(fetch)
        );
        let (key, mounts) = prepared?;
        let stream = match opened {
            Ok(stream) => stream,
            Err(err) => {
                self.remove_snapshot(&key).await;
                return Err(err);
            }
        };
        let direct = Compression::of(&layer.media_type).zip(Root::from_mounts(&mounts));
        let Some((compression, root)) = direct else {
            if let Err(err) = self.download_layer(fetch, stream, None).await {
                self.remove_snapshot(&key).await;
                return Err(err);
            }
            return self
                .apply_prepared(fetch.lease, layer, diff_id, &key, mounts, chain_id)
                .await;
        };
        let started = Instant::now();
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(APPLY_QUEUE);
        let applying = tokio::task::spawn_blocking(move || {
            let applied = apply::apply_layer(ChannelReader::new(rx), compression, &root);
            (applied, started.elapsed())
        });
        let fed = self.download_layer(fetch, stream, Some(tx)).await;
        let downloaded = started.elapsed();
        let (applied, apply_time) = match applying.await {
            Ok((applied, took)) => (Ok(applied), took),
            Err(join) => (Err(join), started.elapsed()),
        };
        let fed = match fed {
            Ok(fed) => fed,
            Err(err) => {
                self.remove_snapshot(&key).await;
                return Err(err);
            }
        };
        match applied {
            // A hashed stream must be the diff id; an unhashed (uncompressed) one is the blob
            // the content store just checked, if it all got there.
            Ok(Ok(applied))
                if applied.diff_id.as_deref() == Some(diff_id)
                    || (applied.diff_id.is_none() && fed == Fed::Complete) =>
            {
                self.commit_extraction(fetch.lease, &key, chain_id).await?;
                tracing::debug!(
                    image = fetch.name,
                    layer = %layer.digest,
                    bytes = applied.bytes,
                    stored_ms = downloaded.as_millis(),
                    applied_ms = apply_time.as_millis(),
                    committed_ms = started.elapsed().as_millis(),
                    "layer applied while downloading"
                );
                Ok(())
            }
            // Another pull stored the blob first and the stream stopped early: apply what it
            // stored instead.
            _ if fed == Fed::ContentExisted => {
                self.remove_snapshot(&key).await;
                self.apply_layer(fetch.lease, layer, diff_id, parent, chain_id)
                    .await
            }
            Ok(Ok(applied)) => {
                self.remove_snapshot(&key).await;
                let got = applied.diff_id.unwrap_or_else(|| layer.digest.clone());
                Err(diff_id_mismatch(&layer.digest, diff_id, &got))
            }
            Ok(Err(err)) => {
                self.remove_snapshot(&key).await;
                let context = format!("pulling {}: applying layer {}", fetch.name, layer.digest);
                Err(if err.kind() == std::io::ErrorKind::InvalidData {
                    BackendError::InvalidArgument(format!("{context}: {err}"))
                } else {
                    BackendError::Io {
                        context,
                        source: err,
                    }
                })
            }
            Err(join) => {
                self.remove_snapshot(&key).await;
                Err(BackendError::Io {
                    context: format!("pulling {}: applying layer {}", fetch.name, layer.digest),
                    source: std::io::Error::other(join.to_string()),
                })
            }
        }
    }

    /// Stream one layer from the registry (`stream`, from [`open_layer`]) into the content
    /// store, verifying its digest, and into `sink` when given.
    async fn download_layer(
        &self,
        fetch: &LayerFetch<'_>,
        stream: SizedStream,
        sink: Option<tokio::sync::mpsc::Sender<Bytes>>,
    ) -> Result<Fed> {
        if let Some(local) = self.local_content().await {
            if let Some(blob) = local.blob_path(&fetch.layer.digest) {
                return self
                    .download_layer_locally(fetch, stream, sink, local, &blob)
                    .await;
            }
        }
        self.download_layer_through_grpc(fetch, stream, sink).await
    }

    /// containerd's local content store, if crius may write into it; asked for once.
    async fn local_content(&self) -> Option<&LocalContent> {
        if !self.inner.local_content_enabled {
            return None;
        }
        let found = self
            .inner
            .local_content
            .get_or_try_init(|| self.find_local_content())
            .await;
        match found {
            Ok(local) => local.as_ref(),
            Err(err) => {
                tracing::debug!(error = %err, "could not ask containerd where its content store is");
                None
            }
        }
    }

    async fn find_local_content(&self) -> Result<Option<LocalContent>> {
        let (root, policy) = futures::try_join!(
            self.plugin_export("io.containerd.content.v1", None, "root"),
            self.plugin_export("io.containerd.metadata.v1", None, "policy"),
        )?;
        let namespace = self.inner.namespace.clone();
        tokio::task::spawn_blocking(move || {
            LocalContent::open(root.as_deref(), policy.as_deref(), &namespace)
        })
        .await
        .map_err(|e| BackendError::Engine {
            engine: ENGINE,
            message: format!("opening the local content store: {e}"),
        })
    }

    /// [`Containerd::download_layer`] through containerd's local content store (see
    /// [`local_content`]): crius writes, hashes and links the blob, containerd records it.
    async fn download_layer_locally(
        &self,
        fetch: &LayerFetch<'_>,
        mut stream: SizedStream,
        sink: Option<tokio::sync::mpsc::Sender<Bytes>>,
        local: &LocalContent,
        blob: &Path,
    ) -> Result<Fed> {
        let LayerFetch {
            endpoint,
            name,
            layer,
            progress,
            ..
        } = *fetch;
        let digest = layer.digest.as_str();
        let scratch = ScratchFile(local.scratch_path(digest));
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(SCRATCH_QUEUE);
        let path = scratch.0.clone();
        let writing = tokio::task::spawn_blocking(move || local_content::write_and_hash(&path, rx));
        let mut logged = 0u64;
        let mut received = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| stream_error(name, &endpoint.host, &e))?;
            progress.add(chunk.len());
            received += chunk.len() as u64;
            if let Some(sink) = &sink {
                if sink.send(chunk.clone()).await.is_err() {
                    // The applier stopped reading; its error says why.
                    return Ok(Fed::SinkClosed);
                }
            }
            if tx.send(chunk).await.is_err() {
                // The writer stopped; its error is read below.
                break;
            }
            if received - logged >= LOG_EVERY {
                logged = received;
                tracing::debug!(image = name, layer = %digest, received, total = layer.size, "pull progress");
            }
        }
        drop(tx);
        // The applier sees the end of the stream.
        drop(sink);
        let write_error = |source: std::io::Error| BackendError::Io {
            context: format!(
                "pulling {name}: writing layer {digest} to {}",
                scratch.0.display()
            ),
            source,
        };
        let written = writing
            .await
            .map_err(|e| write_error(std::io::Error::other(e.to_string())))?
            .map_err(write_error)?;
        if i64::try_from(written.size).ok() != Some(layer.size) {
            return Err(BackendError::InvalidArgument(format!(
                "pulling {name}: layer {digest} is {} bytes, the manifest says {}",
                written.size, layer.size
            )));
        }
        if written.digest != digest {
            return Err(BackendError::InvalidArgument(format!(
                "pulling {name}: layer digest mismatch: the manifest says {digest}, the bytes hash to {}",
                written.digest
            )));
        }
        let placed = match LocalContent::place(&scratch.0, blob) {
            Ok(placed) => Some(placed),
            Err(err) => {
                // e.g. the blob directory is another filesystem: the ingest then starts
                // empty and the scratch file is streamed.
                tracing::warn!(blob = %blob.display(), error = %err, "could not link a layer into containerd's blob directory; streaming it");
                None
            }
        };
        let recorded = self.record_blob(fetch, &scratch.0).await;
        if recorded.is_err() && placed == Some(Placed::Linked) {
            // No namespace records it yet: without this it would stay until containerd's
            // next content sweep.
            if let Err(err) = std::fs::remove_file(blob) {
                tracing::warn!(blob = %blob.display(), error = %err, "could not remove an unrecorded layer blob");
            }
        }
        recorded.map(|()| Fed::Complete)
    }

    /// Record the blob just placed in the local store in crius's namespace, under the
    /// pull's lease. containerd's ingest starts complete when it finds the blob in its
    /// local store; if the blob went meanwhile, `scratch` (the same bytes) is streamed.
    async fn record_blob(&self, fetch: &LayerFetch<'_>, scratch: &Path) -> Result<()> {
        let LayerFetch {
            lease,
            layer,
            ingests,
            ..
        } = *fetch;
        let digest = layer.digest.as_str();
        let total = layer.size;
        let ingest = format!("crius-pull-{:016x}-{digest}", rand::random::<u64>());
        if let Ok(mut list) = ingests.lock() {
            list.push(ingest.clone());
        }
        let message =
            |action: api::WriteAction, offset: i64, data: Vec<u8>| api::WriteContentRequest {
                action: action as i32,
                r#ref: ingest.clone(),
                total,
                expected: digest.to_string(),
                offset,
                data,
                labels: HashMap::new(),
            };
        let failed = |status: tonic::Status| map_status(status, "content", digest);
        let closed = || BackendError::Engine {
            engine: "containerd",
            message: format!("content write of {digest} closed early"),
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<api::WriteContentRequest>(4);
        tx.send(message(api::WriteAction::Stat, 0, Vec::new()))
            .await
            .map_err(|_| closed())?;
        let request = self.leased_req(tokio_stream::wrappers::ReceiverStream::new(rx), lease)?;
        let mut responses = match self.content().write(request).await {
            Ok(responses) => responses.into_inner(),
            // Another pull recorded it in this namespace first.
            Err(status) if status.code() == tonic::Code::AlreadyExists => return Ok(()),
            Err(status) => return Err(failed(status)),
        };
        let stat = match responses.message().await {
            Ok(Some(stat)) => stat,
            Ok(None) => return Err(closed()),
            Err(status) if status.code() == tonic::Code::AlreadyExists => return Ok(()),
            Err(status) => return Err(failed(status)),
        };
        let feed = async {
            // Owned here, so the request stream ends whenever feeding ends.
            let tx = tx;
            if stat.offset == total {
                tracing::debug!(layer = %digest, "recording a layer blob found in the local store");
            } else {
                tracing::debug!(layer = %digest, offset = stat.offset, "the layer blob left the local store; streaming it");
                let mut file =
                    tokio::fs::File::open(scratch)
                        .await
                        .map_err(|source| BackendError::Io {
                            context: format!("reading {}", scratch.display()),
                            source,
                        })?;
                let mut offset = 0i64;
                loop {
                    let mut data = Vec::with_capacity(CHUNK);
                    let n = (&mut file)
                        .take(CHUNK as u64)
                        .read_to_end(&mut data)
                        .await
                        .map_err(|source| BackendError::Io {
                            context: format!("reading {}", scratch.display()),
                            source,
                        })?;
                    if n == 0 {
                        break;
                    }
                    tx.send(message(api::WriteAction::Write, offset, data))
                        .await
                        .map_err(|_| closed())?;
                    offset += i64::try_from(n).unwrap_or(i64::MAX);
                }
            }
            tx.send(message(api::WriteAction::Commit, total, Vec::new()))
                .await
                .map_err(|_| closed())
        };
        let drain = async {
            while let Some(response) = responses.message().await.transpose() {
                response?;
            }
            Ok::<(), tonic::Status>(())
        };
        tokio::pin!(feed);
        tokio::pin!(drain);
        let mut fed = None;
        loop {
            tokio::select! {
                drained = &mut drain => return match drained {
                    // containerd's word on a failure comes before the feeder's.
                    Err(status) if status.code() == tonic::Code::AlreadyExists => Ok(()),
                    Err(status) => Err(failed(status)),
                    // containerd ends the call after the commit or after the request
                    // stream ends, so the feeder is done.
                    Ok(()) => match fed {
                        Some(fed) => fed,
                        None => feed.await,
                    },
                },
                result = &mut feed, if fed.is_none() => fed = Some(result),
            }
        }
    }

    /// [`Containerd::download_layer`] with every byte sent through `Content.Write`.
    async fn download_layer_through_grpc(
        &self,
        fetch: &LayerFetch<'_>,
        mut stream: SizedStream,
        sink: Option<tokio::sync::mpsc::Sender<Bytes>>,
    ) -> Result<Fed> {
        let LayerFetch {
            lease,
            endpoint,
            name,
            layer,
            progress,
            ingests,
            ..
        } = *fetch;
        let digest = layer.digest.clone();
        let ingest = format!("crius-pull-{:016x}-{digest}", rand::random::<u64>());
        if let Ok(mut list) = ingests.lock() {
            list.push(ingest.clone());
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<api::WriteContentRequest>(4);
        let request = self.leased_req(tokio_stream::wrappers::ReceiverStream::new(rx), lease)?;
        let mut content = self.content();
        let writer = async move {
            let mut responses = content.write(request).await?.into_inner();
            while let Some(response) = responses.next().await {
                response?;
            }
            Ok::<(), tonic::Status>(())
        };
        let total = layer.size;
        let feeder = async {
            let mut offset: i64 = 0;
            let mut buffer: Vec<u8> = Vec::with_capacity(CHUNK);
            let mut logged = 0u64;
            let closed = || BackendError::Engine {
                engine: "containerd",
                message: format!("content write of {digest} closed early"),
            };
            loop {
                let chunk = match stream.next().await {
                    Some(Ok(chunk)) => Some(chunk),
                    Some(Err(e)) => return Err(stream_error(name, &endpoint.host, &e)),
                    None => None,
                };
                if let Some(chunk) = &chunk {
                    progress.add(chunk.len());
                    buffer.extend_from_slice(chunk);
                    if let Some(sink) = &sink {
                        if sink.send(chunk.clone()).await.is_err() {
                            // The applier stopped reading; its error says why.
                            return Ok(Fed::SinkClosed);
                        }
                    }
                }
                if buffer.len() >= CHUNK || (chunk.is_none() && !buffer.is_empty()) {
                    let data = std::mem::replace(&mut buffer, Vec::with_capacity(CHUNK));
                    let len = i64::try_from(data.len()).unwrap_or(i64::MAX);
                    let message = api::WriteContentRequest {
                        action: api::WriteAction::Write as i32,
                        r#ref: ingest.clone(),
                        total,
                        expected: digest.clone(),
                        offset,
                        data,
                        labels: HashMap::new(),
                    };
                    tx.send(message).await.map_err(|_| closed())?;
                    offset += len;
                    let done = u64::try_from(offset).unwrap_or(0);
                    if done - logged >= LOG_EVERY {
                        logged = done;
                        tracing::debug!(image = name, layer = %digest, received = done, total, "pull progress");
                    }
                }
                if chunk.is_none() {
                    break;
                }
            }
            // The applier sees the end of the stream.
            drop(sink);
            // The digest is checked by containerd: its content writer hashes what it
            // stores and refuses to commit under `expected` when they differ.
            if offset != total {
                return Err(BackendError::InvalidArgument(format!(
                    "pulling {name}: layer {digest} is {offset} bytes, the manifest says {total}"
                )));
            }
            let commit = api::WriteContentRequest {
                action: api::WriteAction::Commit as i32,
                r#ref: ingest.clone(),
                total,
                expected: digest.clone(),
                offset,
                data: Vec::new(),
                labels: HashMap::new(),
            };
            tx.send(commit).await.map_err(|_| closed())?;
            drop(tx);
            Ok(Fed::Complete)
        };
        tokio::pin!(writer);
        tokio::pin!(feeder);
        let mut fed = None;
        loop {
            tokio::select! {
                written = &mut writer => {
                    if fed == Some(Fed::SinkClosed) {
                        // The ingest was left open; the applier's error is the one to report.
                        return Ok(Fed::SinkClosed);
                    }
                    return match written {
                        // Another pull committed the same blob first.
                        Err(status) if status.code() == tonic::Code::AlreadyExists => {
                            Ok(Fed::ContentExisted)
                        }
                        Err(status) if status.message().contains("unexpected commit digest") => {
                            Err(BackendError::InvalidArgument(format!(
                                "pulling {name}: layer digest mismatch: {}",
                                status.message()
                            )))
                        }
                        Err(status) => Err(map_status(status, "content", &layer.digest)),
                        Ok(()) => match fed {
                            Some(fed) => Ok(fed),
                            None => feeder.await,
                        },
                    };
                }
                result = &mut feeder, if fed.is_none() => {
                    fed = Some(result?);
                }
            }
        }
    }
}

/// Ask the registry for a layer; its bytes are then read by [`Containerd::download_layer`].
async fn open_layer(fetch: &LayerFetch<'_>) -> Result<SizedStream> {
    fetch
        .client
        .pull_blob_stream(fetch.target, fetch.layer.digest.as_str())
        .await
        .map_err(|e| map_oci(e, fetch.name, &fetch.endpoint.host, fetch.auth))
}

/// How far a layer's stream went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fed {
    /// All of it reached the content store (committed) and the sink.
    Complete,
    /// The content store had the blob already (another pull was first); the stream stopped.
    ContentExisted,
    /// The sink stopped taking bytes.
    SinkClosed,
}

/// Where one layer comes from and what its download reports to.
#[derive(Clone, Copy)]
struct LayerFetch<'a> {
    lease: &'a str,
    client: &'a Client,
    target: &'a Reference,
    auth: &'a RegistryAuth,
    endpoint: &'a Endpoint,
    name: &'a str,
    layer: &'a Descriptor,
    progress: &'a Progress,
    ingests: &'a Mutex<Vec<String>>,
}

fn media_type_of(manifest: &Value) -> String {
    match manifest["mediaType"].as_str() {
        Some(t) if !t.is_empty() => t.to_string(),
        _ if manifest["manifests"].is_array() => MEDIA_OCI_INDEX.to_string(),
        _ if manifest["schemaVersion"].as_i64() == Some(1) => MEDIA_DOCKER_MANIFEST_V1.to_string(),
        _ if manifest["signatures"].is_array() => MEDIA_DOCKER_MANIFEST_V1_SIGNED.to_string(),
        _ => MEDIA_OCI_MANIFEST.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_become_oci_client_references() {
        let hex = "ab".repeat(32);
        let parts = |name: &str| {
            let r = parse_reference(name).unwrap();
            (
                r.registry().to_string(),
                r.repository().to_string(),
                r.tag().map(str::to_string),
                r.digest().map(str::to_string),
            )
        };
        let own = |s: &str| s.to_string();
        assert_eq!(
            parts("docker.io/library/busybox:1.36"),
            (
                own("docker.io"),
                own("library/busybox"),
                Some(own("1.36")),
                None
            )
        );
        assert_eq!(
            parts("127.0.0.1:5000/crius/large:1"),
            (
                own("127.0.0.1:5000"),
                own("crius/large"),
                Some(own("1")),
                None
            )
        );
        assert_eq!(
            parts("localhost/a/b-c/d_e.f"),
            (
                own("localhost"),
                own("a/b-c/d_e.f"),
                Some(own("latest")),
                None
            )
        );
        assert_eq!(
            parts(&format!("registry.example/app@sha256:{hex}")),
            (
                own("registry.example"),
                own("app"),
                None,
                Some(format!("sha256:{hex}"))
            )
        );
        assert_eq!(
            parts(&format!("registry.example:443/app:v1@sha256:{hex}")),
            (
                own("registry.example:443"),
                own("app"),
                Some(own("v1")),
                Some(format!("sha256:{hex}"))
            )
        );
        assert_eq!(
            parts("busybox"),
            (
                own("docker.io"),
                own("library/busybox"),
                Some(own("latest")),
                None
            )
        );
        // The grammar itself is tested in `crate::reference`.
        assert!(parse_reference("docker.io/Library/busybox:1").is_err());
    }

    #[test]
    fn local_hosts_are_plain_http() {
        assert!(is_local("127.0.0.1:5000"));
        assert!(is_local("localhost:1"));
        assert!(is_local("localhost"));
        assert!(!is_local("registry.example:5000"));
        assert!(!is_local("127.0.0.10:5000"));
    }

    #[test]
    fn mirrors_come_first_then_the_registry() {
        let mut settings = RegistrySettings::default();
        settings.mirrors.insert(
            "registry.invalid".into(),
            vec![
                "http://127.0.0.1:5000".into(),
                "https://mirror.example/v2".into(),
            ],
        );
        settings.insecure.push("registry.invalid".into());
        let all = endpoints("registry.invalid", &settings);
        let hosts: Vec<_> = all
            .iter()
            .map(|e| (e.host.as_str(), e.plain_http, e.mirror))
            .collect();
        assert_eq!(
            hosts,
            vec![
                ("127.0.0.1:5000", true, true),
                ("mirror.example", false, true),
                ("registry.invalid", true, false)
            ]
        );
        assert!(!endpoints("docker.io", &settings)[0].plain_http);
    }

    #[test]
    fn caller_credentials_go_only_to_the_server_they_name() {
        let settings = RegistrySettings {
            mirrors: [(
                "registry.example.com".to_string(),
                vec!["https://mirror.example.com".to_string()],
            )]
            .into(),
            auths: [(
                "mirror.example.com".to_string(),
                RegistryCredentials {
                    username: "configured".into(),
                    ..Default::default()
                },
            )]
            .into(),
            ..Default::default()
        };
        let request = |server_address: &str| PullImage {
            reference: "registry.example.com/app:1".into(),
            credentials: Some(RegistryCredentials {
                username: "caller".into(),
                password: "secret".into(),
                server_address: server_address.into(),
                ..Default::default()
            }),
            registry: settings.clone(),
            progress_timeout: std::time::Duration::ZERO,
        };
        let all = endpoints("registry.example.com", &settings);
        let (mirror, origin) = (&all[0], &all[1]);
        assert!(mirror.mirror && !origin.mirror);
        let user = |request: &PullImage, endpoint: &Endpoint| {
            credentials_for(request, endpoint, "registry.example.com").map(|c| c.username.clone())
        };
        // Without a server address: the image's registry and its mirrors.
        let unnamed = request("");
        assert_eq!(user(&unnamed, origin).as_deref(), Some("caller"));
        assert_eq!(user(&unnamed, mirror).as_deref(), Some("caller"));
        // Naming the registry: never sent to the mirror, which gets its configured ones.
        for address in ["registry.example.com", "https://registry.example.com/v2/"] {
            let named = request(address);
            assert_eq!(user(&named, origin).as_deref(), Some("caller"), "{address}");
            assert_eq!(
                user(&named, mirror).as_deref(),
                Some("configured"),
                "{address}"
            );
        }
        // Naming another server: anonymous where nothing is configured.
        let other = request("other.example.com:5000");
        assert_eq!(user(&other, origin), None);
        // Docker Hub's names are one registry.
        assert!(same_registry(
            server_host("https://index.docker.io/v1/"),
            "docker.io"
        ));
        assert!(!same_registry("docker.io", "quay.io"));
    }

    #[test]
    fn credentials_pick_the_strongest_field() {
        let auth = |c: RegistryCredentials| registry_auth(Some(&c)).map(|a| format!("{a:?}"));
        let token = RegistryCredentials {
            registry_token: "t".into(),
            username: "u".into(),
            ..Default::default()
        };
        assert_eq!(auth(token).unwrap(), "Bearer(\"<redacted>\")");
        let basic = RegistryCredentials {
            auth: "dXNlcjpwYXNz".into(),
            ..Default::default()
        };
        assert_eq!(auth(basic).unwrap(), "Basic(\"user\", \"<redacted>\")");
        let bad = RegistryCredentials {
            auth: "!!".into(),
            ..Default::default()
        };
        assert!(auth(bad).is_err());
        assert_eq!(format!("{:?}", registry_auth(None).unwrap()), "Anonymous");
    }

    #[test]
    fn shared_errors_keep_their_kind() {
        let err = BackendError::io("x", std::io::Error::other("disk"));
        match copy_error(&err) {
            BackendError::Io { source, .. } => assert_eq!(source.kind(), std::io::ErrorKind::Other),
            other => panic!("{other:?}"),
        }
        let err = BackendError::Unauthenticated("401".into());
        assert!(matches!(copy_error(&err), BackendError::Unauthenticated(m) if m == "401"));
    }

    #[tokio::test]
    async fn progress_watchdog_fires_after_idle_time() {
        let progress = Progress::new();
        let started = Instant::now();
        progress.stalled(Duration::from_millis(100)).await;
        assert!(started.elapsed() >= Duration::from_millis(90));
    }
}
