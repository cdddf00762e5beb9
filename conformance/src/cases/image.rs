//! `[image]`: list, status (tags, digests, size, uid/username), filters, ImageFsInfo, the
//! pinned pause image, and — with `--registry` — pulls by tag, digest and with basic auth,
//! removal by tag, id and digest. Pull/remove cases hold the `registry-images` lock.

use super::prelude::*;

const LOCK: &str = "registry-images";

pub fn cases() -> Vec<Case> {
    use Group::Image as G;
    vec![
        case!(G, "ListImages lists the test images with their tags", [ListImages], list_test_images),
        case!(G, "ListImages filter by reference returns only that image", [ListImages], list_filter)
            .reference_known_failure("containerd 1.6 ignores ListImagesRequest.filter and lists every image"),
        case!(G, "StreamImages returns what ListImages returns", [StreamImages, ListImages], stream_images),
        case!(G, "ImageStatus by tag reports a sha256 id, the tag and a size", [ImageStatus], status_by_tag),
        case!(G, "ImageStatus by image id finds the same image", [ImageStatus], status_by_id),
        case!(G, "ImageStatus of a missing image returns no image and no error", [ImageStatus], status_missing),
        case!(G, "ImageStatus reports the user of an image with USER", [ImageStatus], status_user),
        case!(G, "ImageStatus of an image without USER reports no uid and no username", [ImageStatus], status_no_user),
        case!(G, "ImageFsInfo reports the image filesystem's mountpoint and usage", [ImageFsInfo], fs_info),
        case!(G, "the pause image is reported pinned", [ImageStatus, ListImages], pause_pinned)
            .reference_known_failure("containerd 1.6 does not report Image.pinned (added in containerd 1.7)"),
        case!(G, "PullImage by tag: image_ref is the id, tag and digest are reported", [PullImage, ImageStatus], pull_by_tag).lock(LOCK),
        case!(G, "PullImage by digest", [PullImage, ImageStatus], pull_by_digest).lock(LOCK),
        case!(G, "PullImage twice returns the same image_ref", [PullImage], pull_twice).lock(LOCK),
        case!(G, "PullImage with basic auth credentials", [PullImage], pull_with_auth).lock(LOCK),
        case!(G, "PullImage from a registry requiring auth fails without credentials", [PullImage], pull_auth_missing).lock(LOCK),
        case!(G, "PullImage sends credentials only to the server their server_address names", [PullImage, ImageStatus], pull_auth_server_address).lock(LOCK),
        case!(G, "PullImage of an image the registry does not have fails", [PullImage], pull_missing).lock(LOCK),
        case!(G, "RemoveImage by tag removes the image", [RemoveImage, PullImage, ImageStatus], remove_by_tag).lock(LOCK),
        case!(G, "RemoveImage by id removes the image", [RemoveImage, PullImage, ImageStatus], remove_by_id).lock(LOCK),
        case!(G, "RemoveImage by digest removes the image", [RemoveImage, PullImage, ImageStatus], remove_by_digest).lock(LOCK),
        case!(G, "RemoveImage of an image that is not present succeeds", [RemoveImage], remove_missing),
        case!(G, "an image spec naming an unknown runtime handler is rejected by ImageStatus, ListImages and PullImage", [ImageStatus, ListImages, PullImage], unknown_handler)
            .lock(LOCK)
            .reference_known_failure("containerd 1.6 predates ImageSpec.runtime_handler (CRI 1.29) and ignores it"),
        case!(G, "ContainerStatus.image_ref of a pulled image equals its Image.id", [PullImage, ContainerStatus], pulled_image_ref)
            .lock(LOCK)
            .reference_known_failure("containerd 1.6 reports the repo digest, not the image id, as image_ref of pulled images"),
    ]
}

async fn list_images(ctx: &Ctx, filter: Option<cri::ImageFilter>) -> Result<Vec<cri::Image>> {
    let request = cri::ListImagesRequest { filter };
    Ok(call("ListImages", ctx.img().list_images(request))
        .await?
        .images)
}

async fn list_test_images(ctx: Ctx) -> Result<Outcome> {
    let images = list_images(&ctx, None).await?;
    for reference in [
        &ctx.images().busybox,
        &ctx.images().user,
        &ctx.images().pause,
    ] {
        let image = images
            .iter()
            .find(|i| i.repo_tags.iter().any(|t| t == reference))
            .with_context(|| format!("ListImages has no image tagged {reference}"))?;
        ensure!(
            image.id.starts_with("sha256:"),
            "listed id of {reference}: expected sha256:…, got {:?}",
            image.id
        );
        ensure!(image.size > 0, "listed size of {reference} is 0");
    }
    pass()
}

async fn list_filter(ctx: Ctx) -> Result<Outcome> {
    let reference = ctx.images().busybox.clone();
    let filter = cri::ImageFilter {
        image: Some(image_spec(&reference)),
    };
    let images = list_images(&ctx, Some(filter)).await?;
    ensure_eq!(images.len(), 1, "images listed for filter {reference}");
    ensure!(
        images[0].repo_tags.contains(&reference),
        "filtered image lacks tag {reference}: {:?}",
        images[0].repo_tags
    );
    pass()
}

async fn stream_images(ctx: Ctx) -> Result<Outcome> {
    let filter = cri::ImageFilter {
        image: Some(image_spec(&ctx.images().user)),
    };
    let request = cri::StreamImagesRequest {
        filter: Some(filter.clone()),
    };
    let mut stream = call("StreamImages", ctx.img().stream_images(request)).await?;
    let mut streamed = Vec::new();
    while let Some(message) = stream
        .message()
        .await
        .map_err(|s| anyhow::anyhow!("StreamImages stream: {}", describe(&s)))?
    {
        streamed.extend(message.images.into_iter().map(|i| i.id));
    }
    let listed: Vec<String> = list_images(&ctx, Some(filter))
        .await?
        .into_iter()
        .map(|i| i.id)
        .collect();
    ensure_eq!(listed.len(), 1, "ListImages(user image)");
    ensure_eq!(streamed, listed, "StreamImages(user image)");
    pass()
}

async fn status_by_tag(ctx: Ctx) -> Result<Outcome> {
    let reference = ctx.images().busybox.clone();
    let image = ctx
        .image_status(&reference)
        .await?
        .with_context(|| format!("ImageStatus({reference}) returned no image"))?;
    ensure!(
        image.id.starts_with("sha256:") && image.id.len() == 71,
        "ImageStatus.id: expected sha256:<64 hex>, got {:?}",
        image.id
    );
    ensure!(
        image.repo_tags.contains(&reference),
        "ImageStatus.repo_tags: expected to contain {reference}, got {:?}",
        image.repo_tags
    );
    ensure!(image.size > 0, "ImageStatus.size is 0");
    pass()
}

async fn status_by_id(ctx: Ctx) -> Result<Outcome> {
    let reference = ctx.images().busybox.clone();
    let id = ctx.image_id(&reference).await?;
    let by_id = ctx
        .image_status(&id)
        .await?
        .with_context(|| format!("ImageStatus({id}) returned no image"))?;
    ensure_eq!(by_id.id, id, "id of the image found by id");
    ensure!(
        by_id.repo_tags.contains(&reference),
        "image found by id lacks tag {reference}: {:?}",
        by_id.repo_tags
    );
    pass()
}

async fn status_missing(ctx: Ctx) -> Result<Outcome> {
    // CRI: a missing image is an empty response, not an error.
    let image = ctx
        .image_status("localhost/crius/does-not-exist:404")
        .await?;
    ensure_eq!(image, None, "ImageStatus of a missing image");
    pass()
}

async fn status_user(ctx: Ctx) -> Result<Outcome> {
    let reference = ctx.images().user.clone();
    let image = ctx
        .image_status(&reference)
        .await?
        .with_context(|| format!("ImageStatus({reference}) returned no image"))?;
    let user = images::USER_IMAGE_CONFIG_USER;
    let name = user.split(':').next().unwrap_or(user);
    match name.parse::<i64>() {
        Ok(uid) => {
            ensure_eq!(image.uid.map(|u| u.value), Some(uid), "ImageStatus.uid");
            ensure_eq!(image.username, "", "ImageStatus.username");
        }
        Err(_) => {
            ensure_eq!(image.uid.map(|u| u.value), None, "ImageStatus.uid");
            ensure_eq!(image.username, name, "ImageStatus.username");
        }
    }
    pass()
}

async fn status_no_user(ctx: Ctx) -> Result<Outcome> {
    let reference = ctx.images().busybox.clone();
    let image = ctx
        .image_status(&reference)
        .await?
        .with_context(|| format!("ImageStatus({reference}) returned no image"))?;
    let uid = image.uid.map(|u| u.value);
    ensure!(
        uid.is_none() || uid == Some(0),
        "ImageStatus.uid of an image without USER: expected none or 0, got {uid:?}"
    );
    ensure_eq!(image.username, "", "ImageStatus.username");
    pass()
}

async fn fs_info(ctx: Ctx) -> Result<Outcome> {
    // Runtimes measure the image filesystem in the background (containerd 1.6 every 10 s,
    // crius every 10 s and right after a removal): right after a start the first
    // measurement may not be in yet, so the case asks until one is.
    let deadline = Instant::now() + Duration::from_secs(25);
    let fs = loop {
        let info = call(
            "ImageFsInfo",
            ctx.img().image_fs_info(cri::ImageFsInfoRequest {}),
        )
        .await?;
        let fs = info
            .image_filesystems
            .into_iter()
            .next()
            .context("ImageFsInfo returned no image filesystem")?;
        let used = fs.used_bytes.as_ref().map(|u| u.value).unwrap_or(0);
        if used > 0 || Instant::now() >= deadline {
            break fs;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mountpoint = fs
        .fs_id
        .as_ref()
        .map(|f| f.mountpoint.clone())
        .unwrap_or_default();
    ensure!(
        mountpoint.starts_with('/'),
        "image filesystem mountpoint: expected an absolute path, got {mountpoint:?}"
    );
    let used = fs.used_bytes.as_ref().map(|u| u.value).unwrap_or(0);
    ensure!(
        used > 0,
        "image filesystem used_bytes: expected > 0 within 25 s (test images are stored), got {used}"
    );
    let age = now_nanos() - fs.timestamp;
    ensure!(
        fs.timestamp > 0 && age < 600_000_000_000,
        "image filesystem timestamp {} is not recent (now {})",
        fs.timestamp,
        now_nanos()
    );
    pass()
}

async fn pause_pinned(ctx: Ctx) -> Result<Outcome> {
    let reference = ctx.images().pause.clone();
    let image = ctx
        .image_status(&reference)
        .await?
        .with_context(|| format!("ImageStatus({reference}) returned no image"))?;
    ensure!(
        image.pinned,
        "ImageStatus({reference}).pinned: expected true (kubelet must never garbage-collect it)"
    );
    let listed = list_images(&ctx, None).await?;
    let pinned: Vec<&str> = listed
        .iter()
        .filter(|i| i.pinned)
        .map(|i| i.id.as_str())
        .collect();
    ensure!(
        pinned.contains(&image.id.as_str()),
        "ListImages does not report {} pinned",
        image.id
    );
    pass()
}

// ---- registry ----

/// `<registry>/<pull repo>`, or a skip when the run has no registry.
async fn pull_reference(ctx: &Ctx) -> Result<String> {
    let Some(registry) = ctx.settings().registry.clone() else {
        return Err(skip("no --registry given"));
    };
    ensure_distinct(ctx, &registry, None).await?;
    Ok(format!("{registry}/{}", ctx.settings().pull_repo))
}

const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// The config digest (= image id) of `repo:tag` in the registry at `registry`, read from its
/// manifest (following the first entry of an index).
async fn registry_image_id(
    registry: &str,
    pull_repo: &str,
    basic: Option<String>,
) -> Result<String> {
    let addr: std::net::SocketAddr = registry
        .parse()
        .with_context(|| format!("registry {registry:?} is not IP:PORT"))?;
    let (repo, tag) = pull_repo
        .rsplit_once(':')
        .with_context(|| format!("pull repo {pull_repo:?} is not repo:tag"))?;
    let mut headers = vec![("Accept", MANIFEST_TYPES.to_owned())];
    if let Some(basic) = basic {
        headers.push(("Authorization", format!("Basic {basic}")));
    }
    let mut reference = tag.to_owned();
    for _ in 0..2 {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let response = host::http_request(addr, &path, &headers, Duration::from_secs(10)).await?;
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        ensure!(
            head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
            "GET http://{registry}{path}: {}",
            head.lines().next().unwrap_or_default()
        );
        let manifest: serde_json::Value = serde_json::from_str(body)
            .with_context(|| format!("manifest of {registry}/{pull_repo}"))?;
        if let Some(id) = manifest.pointer("/config/digest").and_then(|d| d.as_str()) {
            return Ok(id.to_owned());
        }
        reference = manifest
            .pointer("/manifests/0/digest")
            .and_then(|d| d.as_str())
            .with_context(|| {
                format!("manifest of {registry}/{pull_repo} has neither config nor manifests")
            })?
            .to_owned();
    }
    bail!("{registry}/{pull_repo}: nested indexes")
}

/// Removing an image by tag, id or digest removes every reference of it in some runtimes
/// (containerd), so a pull image that shares its id with a preloaded test image would take
/// that image with it. Checked against the registry before anything is pulled.
async fn ensure_distinct(ctx: &Ctx, registry: &str, basic: Option<String>) -> Result<()> {
    let id = registry_image_id(registry, &ctx.settings().pull_repo, basic).await?;
    for reference in [
        &ctx.images().busybox,
        &ctx.images().user,
        &ctx.images().pause,
    ] {
        if ctx
            .image_status(reference)
            .await?
            .is_some_and(|i| i.id == id)
        {
            return Err(skip(format!(
                "{registry}/{} has the id {id} of preloaded {reference}; removing it would remove the test image (push an image with a different id)",
                ctx.settings().pull_repo
            )));
        }
    }
    Ok(())
}

async fn pull(ctx: &Ctx, reference: &str, auth: Option<cri::AuthConfig>) -> Result<String> {
    ctx.track_image(reference);
    let request = cri::PullImageRequest {
        image: Some(image_spec(reference)),
        auth,
        sandbox_config: None,
    };
    Ok(call("PullImage", ctx.img().pull_image(request))
        .await?
        .image_ref)
}

fn repo_of(reference: &str) -> &str {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => reference,
    }
}

async fn pull_by_tag(ctx: Ctx) -> Result<Outcome> {
    let reference = pull_reference(&ctx).await?;
    let image_ref = pull(&ctx, &reference, None).await?;
    let image = ctx
        .image_status(&reference)
        .await?
        .with_context(|| format!("ImageStatus({reference}) returned no image after the pull"))?;
    ensure_eq!(image_ref, image.id, "PullImage.image_ref vs Image.id");
    ensure!(
        image.repo_tags.contains(&reference),
        "repo_tags of the pulled image: expected {reference}, got {:?}",
        image.repo_tags
    );
    let prefix = format!("{}@sha256:", repo_of(&reference));
    ensure!(
        image.repo_digests.iter().any(|d| d.starts_with(&prefix)),
        "repo_digests of the pulled image: expected one starting with {prefix}, got {:?}",
        image.repo_digests
    );
    pass()
}

/// Pulls by tag and returns `(image id, repo@digest)`.
async fn pulled_digest(ctx: &Ctx, reference: &str) -> Result<(String, String)> {
    let id = pull(ctx, reference, None).await?;
    let image = ctx
        .image_status(reference)
        .await?
        .with_context(|| format!("ImageStatus({reference}) returned no image after the pull"))?;
    let digest = image
        .repo_digests
        .first()
        .cloned()
        .with_context(|| format!("the pulled image {reference} has no repo digest"))?;
    Ok((id, digest))
}

async fn pull_by_digest(ctx: Ctx) -> Result<Outcome> {
    let reference = pull_reference(&ctx).await?;
    let (id, digest) = pulled_digest(&ctx, &reference).await?;
    ctx.track_image(&digest);
    let image_ref = pull(&ctx, &digest, None).await?;
    ensure_eq!(image_ref, id, "image_ref of the pull by digest");
    let image = ctx
        .image_status(&digest)
        .await?
        .with_context(|| format!("ImageStatus({digest}) returned no image"))?;
    ensure!(
        image.repo_digests.contains(&digest),
        "repo_digests: expected {digest}, got {:?}",
        image.repo_digests
    );
    pass()
}

async fn pull_twice(ctx: Ctx) -> Result<Outcome> {
    let reference = pull_reference(&ctx).await?;
    let first = pull(&ctx, &reference, None).await?;
    let second = pull(&ctx, &reference, None).await?;
    ensure_eq!(second, first, "image_ref of the second pull");
    pass()
}

async fn auth_reference(ctx: &Ctx) -> Result<(String, crate::runner::AuthRegistry)> {
    let Some(auth) = ctx.settings().auth_registry.clone() else {
        return Err(skip("no --registry-auth given"));
    };
    let basic = crate::runner::ws::base64(format!("{}:{}", auth.user, auth.password).as_bytes());
    ensure_distinct(ctx, &auth.address, Some(basic)).await?;
    Ok((
        format!("{}/{}", auth.address, ctx.settings().pull_repo),
        auth,
    ))
}

async fn pull_with_auth(ctx: Ctx) -> Result<Outcome> {
    let (reference, auth) = auth_reference(&ctx).await?;
    let credentials = cri::AuthConfig {
        username: auth.user.clone(),
        password: auth.password.clone(),
        ..Default::default()
    };
    let image_ref = pull(&ctx, &reference, Some(credentials)).await?;
    let image = ctx
        .image_status(&reference)
        .await?
        .with_context(|| format!("ImageStatus({reference}) returned no image after the pull"))?;
    ensure_eq!(image_ref, image.id, "PullImage.image_ref vs Image.id");
    pass()
}

async fn pull_auth_server_address(ctx: Ctx) -> Result<Outcome> {
    let (reference, auth) = auth_reference(&ctx).await?;
    ctx.track_image(&reference);
    let credentials = |server_address: String| cri::AuthConfig {
        username: auth.user.clone(),
        password: auth.password.clone(),
        server_address,
        ..Default::default()
    };
    // Right credentials, meant for another server: the pull goes without them and fails.
    pull_unauthorized(
        &ctx,
        &reference,
        Some(credentials("http://127.0.0.1:1".into())),
        "a pull whose credentials name another server",
    )
    .await?;
    // Meant for this registry: they are used.
    let image_ref = pull(
        &ctx,
        &reference,
        Some(credentials(format!("http://{}", auth.address))),
    )
    .await?;
    ensure!(
        image_ref.starts_with("sha256:"),
        "PullImage.image_ref: expected sha256:…, got {image_ref:?}"
    );
    pass()
}

async fn pull_auth_missing(ctx: Ctx) -> Result<Outcome> {
    let (reference, _) = auth_reference(&ctx).await?;
    ctx.track_image(&reference);
    pull_unauthorized(&ctx, &reference, None, "the refused pull").await?;
    pass()
}

/// PullImage of `reference` with `auth` is refused by the registry for want of credentials,
/// and leaves no image by that name.
async fn pull_unauthorized(
    ctx: &Ctx,
    reference: &str,
    auth: Option<cri::AuthConfig>,
    what: &str,
) -> Result<()> {
    let request = cri::PullImageRequest {
        image: Some(image_spec(reference)),
        auth,
        sandbox_config: None,
    };
    let status = call_err("PullImage", ctx.img().pull_image(request)).await?;
    // containerd 1.6 passes the registry's 401 on without a code.
    ensure_code_on(
        ctx,
        &format!("PullImage({what})"),
        &status,
        Code::Unauthenticated,
        &[Code::Unknown],
    )?;
    ensure_eq!(
        ctx.image_status(reference).await?,
        None,
        "ImageStatus after {what}"
    );
    Ok(())
}

async fn pull_missing(ctx: Ctx) -> Result<Outcome> {
    let registry = match &ctx.settings().registry {
        Some(registry) => registry.clone(),
        None => return Err(skip("no --registry given")),
    };
    let reference = format!("{registry}/crius/does-not-exist:404");
    ctx.track_image(&reference);
    let request = cri::PullImageRequest {
        image: Some(image_spec(&reference)),
        auth: None,
        sandbox_config: None,
    };
    let status = call_err("PullImage", ctx.img().pull_image(request)).await?;
    ensure_code_on(
        &ctx,
        "PullImage(missing)",
        &status,
        Code::NotFound,
        &[Code::NotFound],
    )?;
    pass()
}

/// `reference` as an image spec for a runtime handler nobody configures.
fn unknown_handler_spec(reference: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        runtime_handler: "no-such-handler".into(),
        ..image_spec(reference)
    }
}

async fn unknown_handler(ctx: Ctx) -> Result<Outcome> {
    // CRI: a runtime handler the runtime does not know must be refused, even for an image
    // that is present. containerd 1.6 accepts such specs (the case's known failure), so no
    // reference code is pinned.
    let refused = |rpc: &str, status: &tonic::Status| {
        ensure_code_on(&ctx, rpc, status, Code::InvalidArgument, &[])
    };
    let present = ctx.images().busybox.clone();
    let request = cri::ImageStatusRequest {
        image: Some(unknown_handler_spec(&present)),
        verbose: false,
    };
    let status = call_err("ImageStatus", ctx.img().image_status(request)).await?;
    refused("ImageStatus(unknown handler)", &status)?;
    let request = cri::ListImagesRequest {
        filter: Some(cri::ImageFilter {
            image: Some(unknown_handler_spec(&present)),
        }),
    };
    let status = call_err("ListImages", ctx.img().list_images(request)).await?;
    refused("ListImages(unknown handler)", &status)?;
    // A refused pull downloads nothing.
    let reference = pull_reference(&ctx).await?;
    ctx.track_image(&reference);
    let absent_before = ctx.image_status(&reference).await?.is_none();
    let request = cri::PullImageRequest {
        image: Some(unknown_handler_spec(&reference)),
        auth: None,
        sandbox_config: None,
    };
    let status = call_err("PullImage", ctx.img().pull_image(request)).await?;
    refused("PullImage(unknown handler)", &status)?;
    if absent_before {
        ensure_eq!(
            ctx.image_status(&reference).await?,
            None,
            "ImageStatus after the refused pull"
        );
    }
    pass()
}

async fn remove(ctx: &Ctx, reference: &str) -> Result<()> {
    let request = cri::RemoveImageRequest {
        image: Some(image_spec(reference)),
    };
    call("RemoveImage", ctx.img().remove_image(request)).await?;
    Ok(())
}

async fn remove_by_tag(ctx: Ctx) -> Result<Outcome> {
    let reference = pull_reference(&ctx).await?;
    pull(&ctx, &reference, None).await?;
    remove(&ctx, &reference).await?;
    ensure_eq!(
        ctx.image_status(&reference).await?,
        None,
        "ImageStatus after RemoveImage(tag)"
    );
    pass()
}

async fn remove_by_id(ctx: Ctx) -> Result<Outcome> {
    let reference = pull_reference(&ctx).await?;
    let id = pull(&ctx, &reference, None).await?;
    remove(&ctx, &id).await?;
    ensure_eq!(
        ctx.image_status(&reference).await?,
        None,
        "ImageStatus(tag) after RemoveImage(id)"
    );
    ensure_eq!(
        ctx.image_status(&id).await?,
        None,
        "ImageStatus(id) after RemoveImage(id)"
    );
    pass()
}

async fn remove_by_digest(ctx: Ctx) -> Result<Outcome> {
    let reference = pull_reference(&ctx).await?;
    let (_, digest) = pulled_digest(&ctx, &reference).await?;
    remove(&ctx, &digest).await?;
    ensure_eq!(
        ctx.image_status(&digest).await?,
        None,
        "ImageStatus(digest) after RemoveImage(digest)"
    );
    pass()
}

async fn remove_missing(ctx: Ctx) -> Result<Outcome> {
    // CRI: RemoveImage must not fail when the image is already gone.
    remove(&ctx, "localhost/crius/does-not-exist:404").await?;
    pass()
}

async fn pulled_image_ref(ctx: Ctx) -> Result<Outcome> {
    let reference = pull_reference(&ctx).await?;
    let id = pull(&ctx, &reference, None).await?;
    let sandbox = ctx.sandbox().await?;
    let mut config = ctx.container_config(&sandbox, &["sleep", "3600"]);
    config.image = Some(image_spec(&reference));
    let container = ctx.running_container(&sandbox, config).await?;
    let status = ctx.container_status(&container.id).await?;
    ensure_eq!(
        status.image_ref,
        id,
        "ContainerStatus.image_ref of a container from a pulled image"
    );
    pass()
}
