//! ListImages, ImageStatus, RemoveImage, ImageFsInfo, PullImage.

use std::sync::Arc;

use cri_api::v1 as cri;
use runtime_backends::{
    BackendError, ImageRecord, PullImage, RegistryCredentials, RegistrySettings,
};

use crate::error::{Error, Result};
use crate::runtime::Crius;

/// Normalise an image reference the way Docker and kubelet do (`busybox` →
/// `docker.io/library/busybox:latest`), by the project's one reference grammar; image ids
/// pass unchanged.
pub use runtime_backends::reference::normalize as normalize_reference;

/// An image spec's `runtime_handler` must be one crius runs (CRI: an unknown one is
/// refused). All of them share the backend's one image store.
fn check_image_handler(crius: &Crius, spec: Option<&cri::ImageSpec>, rpc: &str) -> Result<()> {
    check_handler_in(
        &crius.config.runtimes,
        &crius.config.default_runtime,
        spec,
        rpc,
    )
}

fn check_handler_in(
    known: &std::collections::BTreeMap<String, crate::config::RuntimeConfig>,
    default: &str,
    spec: Option<&cri::ImageSpec>,
    rpc: &str,
) -> Result<()> {
    let handler = spec.map(|s| s.runtime_handler.as_str()).unwrap_or_default();
    // Formatted only when refused: ImageStatus and ListImages are hot reads.
    crate::sandbox::resolve_handler(
        known,
        default,
        handler,
        format_args!("{rpc}: image.runtime_handler"),
    )
    .map(|_| ())
}

fn lookup(
    crius: &Crius,
    spec: Option<&cri::ImageSpec>,
    rpc: &str,
) -> Result<Option<Arc<ImageRecord>>> {
    let image = spec.map(|s| s.image.as_str()).unwrap_or_default();
    if image.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{rpc}: image.image must not be empty"
        )));
    }
    check_image_handler(crius, spec, rpc)?;
    let index = crius.store.images.load();
    if let Some(found) = index.find(image) {
        return Ok(Some(found));
    }
    let normalized =
        normalize_reference(image).map_err(|e| Error::InvalidArgument(format!("{rpc}: {e}")))?;
    Ok(index.find(&normalized))
}

fn to_cri(crius: &Crius, image: &ImageRecord) -> cri::Image {
    // CRI: a numeric USER is reported as uid, a name as username.
    let user = image.config.user.split(':').next().unwrap_or_default();
    let (uid, username) = match user.parse::<i64>() {
        Ok(uid) => (Some(cri::Int64Value { value: uid }), String::new()),
        Err(_) if user.is_empty() => (None, String::new()),
        Err(_) => (None, user.to_string()),
    };
    let pinned = crius
        .store
        .images
        .load()
        .find(&crius.pause_image)
        .is_some_and(|p| p.id == image.id);
    cri::Image {
        id: image.id.clone(),
        repo_tags: image.repo_tags.clone(),
        repo_digests: image.repo_digests.clone(),
        size: image.size,
        uid,
        username,
        spec: Some(cri::ImageSpec {
            image: image.id.clone(),
            ..Default::default()
        }),
        pinned,
    }
}

pub fn list(crius: &Crius, request: cri::ListImagesRequest) -> Result<cri::ListImagesResponse> {
    let spec = request.filter.and_then(|f| f.image);
    check_image_handler(crius, spec.as_ref(), "ListImages")?;
    let wanted = spec.map(|s| s.image).filter(|s| !s.is_empty());
    let index = crius.store.images.load();
    let images = match wanted {
        Some(name) => {
            let found = index
                .find(&name)
                .or_else(|| normalize_reference(&name).ok().and_then(|n| index.find(&n)));
            found.iter().map(|i| to_cri(crius, i)).collect()
        }
        None => index.images.iter().map(|i| to_cri(crius, i)).collect(),
    };
    Ok(cri::ListImagesResponse { images })
}

pub fn status(crius: &Crius, request: cri::ImageStatusRequest) -> Result<cri::ImageStatusResponse> {
    // CRI: an image that is not present is answered with an empty image, not an error.
    let Some(image) = lookup(crius, request.image.as_ref(), "ImageStatus")? else {
        return Ok(cri::ImageStatusResponse {
            image: None,
            info: Default::default(),
        });
    };
    let mut info = std::collections::HashMap::new();
    if request.verbose {
        let spec: serde_json::Value =
            serde_json::from_str(&image.config.raw).unwrap_or(serde_json::Value::Null);
        let verbose = serde_json::json!({
            "chainID": image.chain_id,
            "manifestDigest": image.manifest_digest,
            "imageSpec": spec,
        });
        info.insert("info".to_string(), verbose.to_string());
    }
    Ok(cri::ImageStatusResponse {
        image: Some(to_cri(crius, &image)),
        info,
    })
}

pub async fn remove(
    crius: &Crius,
    request: cri::RemoveImageRequest,
) -> Result<cri::RemoveImageResponse> {
    // CRI: removing an image that is not present succeeds.
    let Some(image) = lookup(crius, request.image.as_ref(), "RemoveImage")? else {
        return Ok(cri::RemoveImageResponse {});
    };
    let mut names: Vec<String> = image
        .repo_tags
        .iter()
        .chain(&image.repo_digests)
        .cloned()
        .collect();
    // The id goes last: removing it, the backend frees the image's layers before answering,
    // so kubelet's image garbage collection sees the space it freed at once.
    names.push(image.id.clone());
    let last = names.len() - 1;
    for (i, name) in names.iter().enumerate() {
        crius.backend.remove_image_name(name, i == last).await?;
    }
    crius.refresh_images().await?;
    // kubelet reads ImageFsInfo right after its image garbage collection, and evicts pods
    // if the disk still looks full; the freed layers must show at once, not within 10 s.
    crius
        .measure_image_fs(runtime_backends::FsWalk::Appeared)
        .await;
    Ok(cri::RemoveImageResponse {})
}

/// PullImage, answered as a gRPC status; credentials that are missing or rejected answer
/// `UNAUTHENTICATED` (the registry's 401).
pub async fn pull_rpc(
    crius: &Crius,
    request: cri::PullImageRequest,
) -> std::result::Result<tonic::Response<cri::PullImageResponse>, tonic::Status> {
    let answer = crate::instrument::call("PullImage", pull(crius, request)).await;
    // A pull streams tens of MiB through short-lived buffers; hand them back to the OS.
    crate::memory::release_free();
    answer
}

fn registry_settings(config: &crate::config::RegistryConfig) -> RegistrySettings {
    let credentials = |a: &crate::config::RegistryAuth| RegistryCredentials {
        username: a.username.clone().unwrap_or_default(),
        password: a.password.clone().unwrap_or_default(),
        auth: a.auth.clone().unwrap_or_default(),
        ..Default::default()
    };
    RegistrySettings {
        mirrors: config.mirrors.clone(),
        insecure: config.insecure.clone(),
        auths: config
            .auths
            .iter()
            .map(|(host, auth)| (host.clone(), credentials(auth)))
            .collect(),
        ca_files: config.ca.clone(),
    }
}

/// Pull an image for this node's platform; the answer's `image_ref` is the image id
/// (config digest), the same as `Image.id` in ListImages/ImageStatus.
///
/// Errors: `NotFound` (no such repository/tag/digest), `UNAUTHENTICATED` (credentials missing
/// or rejected), `Unavailable` (registry unreachable), `DeadlineExceeded` (no progress for
/// `image_pull_progress_timeout`), `InvalidArgument` (bad reference, a blob that does not
/// match its digest), `FailedPrecondition` (unsupported media type, no manifest for the node).
pub async fn pull(crius: &Crius, request: cri::PullImageRequest) -> Result<cri::PullImageResponse> {
    let image = request
        .image
        .as_ref()
        .map(|s| s.image.as_str())
        .unwrap_or_default();
    if image.is_empty() {
        return Err(Error::InvalidArgument(
            "PullImage: image.image must not be empty".into(),
        ));
    }
    check_image_handler(crius, request.image.as_ref(), "PullImage")?;
    // `request.sandbox_config` lets a runtime pick a snapshotter or platform per pod; crius
    // has one image store and pulls for this node, so the pod does not change the pull.
    let reference = normalize_reference(image)
        .map_err(|e| Error::InvalidArgument(format!("PullImage: {e}")))?;
    if !reference.contains('/') {
        return Err(Error::InvalidArgument(format!(
            "PullImage: {image:?} is an image id; pull needs a repository reference"
        )));
    }
    let credentials = request
        .auth
        .map(|a| RegistryCredentials {
            username: a.username,
            password: a.password,
            auth: a.auth,
            identity_token: a.identity_token,
            registry_token: a.registry_token,
            server_address: a.server_address,
        })
        .filter(|c| !c.is_empty());
    tracing::debug!(image = %reference, with_credentials = credentials.is_some(), "pulling image");
    let started = std::time::Instant::now();
    let pulled = crius
        .backend
        .pull_image(PullImage {
            reference: reference.clone(),
            credentials,
            registry: registry_settings(&crius.config.registry),
            progress_timeout: crius.config.image_pull_progress_timeout,
        })
        .await;
    crate::metrics::PULLS.finished(
        started.elapsed(),
        pulled.as_ref().ok().map(|image| image.size),
    );
    let pulled = pulled.map_err(|e| match e {
        BackendError::NotFound { id, .. } => Error::NotFound(format!(
            "PullImage: image {reference:?} not found in the registry: {id}"
        )),
        other => Error::Backend(other),
    })?;
    crius.refresh_images().await?;
    Ok(cri::PullImageResponse {
        image_ref: pulled.id,
    })
}

pub fn fs_info(crius: &Crius) -> Result<cri::ImageFsInfoResponse> {
    let sample = crius.image_fs.load();
    if sample.measured_at_nanos == 0 {
        return Err(Error::Unavailable(
            "the image filesystem has not been measured yet (is the backend reachable?)".into(),
        ));
    }
    let usage = &sample.usage;
    let fs = cri::FilesystemUsage {
        timestamp: sample.measured_at_nanos,
        fs_id: Some(cri::FilesystemIdentifier {
            mountpoint: usage.mountpoint.clone(),
        }),
        used_bytes: Some(cri::UInt64Value {
            value: usage.used_bytes,
        }),
        inodes_used: Some(cri::UInt64Value {
            value: usage.inodes_used,
        }),
    };
    Ok(cri::ImageFsInfoResponse {
        image_filesystems: vec![fs.clone()],
        container_filesystems: vec![fs],
    })
}

#[cfg(test)]
mod tests {
    use super::normalize_reference as n;

    #[test]
    fn an_image_spec_may_name_any_configured_handler_and_no_other() {
        use super::{check_handler_in, cri, Error};
        let spec = |handler: &str| cri::ImageSpec {
            image: "busybox".into(),
            runtime_handler: handler.into(),
            ..Default::default()
        };
        let runtime = crate::config::RuntimeConfig {
            runtime_type: "io.containerd.runc.v2".into(),
            runtime_path: "runc".into(),
            runtime_root: None,
            pod_annotations: Vec::new(),
        };
        let known = std::collections::BTreeMap::from([
            ("runc".to_string(), runtime.clone()),
            ("wrapped".to_string(), runtime),
        ]);
        let check =
            |spec: Option<&cri::ImageSpec>| check_handler_in(&known, "runc", spec, "PullImage");
        assert!(check(None).is_ok());
        assert!(check(Some(&spec(""))).is_ok());
        assert!(check(Some(&spec("runc"))).is_ok());
        assert!(check(Some(&spec("wrapped"))).is_ok());
        match check(Some(&spec("kata"))) {
            Err(Error::InvalidArgument(message)) => {
                assert!(
                    message.starts_with("PullImage: image.runtime_handler"),
                    "{message}"
                );
                assert!(message.contains("\"kata\""), "{message}");
            }
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn references_normalise_like_docker() {
        assert_eq!(n("busybox").unwrap(), "docker.io/library/busybox:latest");
        assert_eq!(n("busybox:1").unwrap(), "docker.io/library/busybox:1");
        assert_eq!(n("user/app").unwrap(), "docker.io/user/app:latest");
        assert_eq!(
            n("localhost/crius/busybox:1").unwrap(),
            "localhost/crius/busybox:1"
        );
        assert_eq!(
            n("127.0.0.1:5000/a/b").unwrap(),
            "127.0.0.1:5000/a/b:latest"
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            n(&format!("busybox@{digest}")).unwrap(),
            format!("docker.io/library/busybox@{digest}")
        );
        assert_eq!(n(&digest).unwrap(), digest);
        assert!(n("").is_err());
        assert!(n("busybox@sha256:xyz").is_err());
        assert!(n("Busybox").is_err());
        assert!(n("a//b").is_err());
    }

    #[test]
    fn control_characters_dot_segments_and_overlong_names_are_not_references() {
        assert!(n("busy\0box").is_err());
        assert!(n("localhost/../../etc/passwd").is_err());
        assert!(n("./busybox").is_err());
        assert!(n("busybox\u{7f}").is_err());
        let longest = format!("localhost/{}", "a".repeat(245));
        assert_eq!(n(&longest).unwrap(), format!("{longest}:latest"));
        assert!(n(&format!("{longest}:tag")).is_ok());
        assert!(n(&format!("{longest}a")).is_err());
        assert!(n(&"a".repeat(1 << 20)).is_err());
    }
}
