//! PullImage end to end: a private registry, a private containerd, crius in between.
//! Needs root and the packages from `scripts/install-deps` (`scripts/test` runs it), and a
//! built `target/debug/crius` (`cargo build -p shim --bin crius`).

use std::net::TcpListener;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use conformance::harness::containerd::{Containerd, ContainerdOptions};
use conformance::harness::crius::Crius;
use conformance::harness::images::{self, Images};
use conformance::harness::pods;
use conformance::harness::registry::{Registry, REGISTRY_PASSWORD, REGISTRY_USER};
use conformance::runner::connect;
use cri_api::v1 as cri;
use cri_api::v1::image_service_client::ImageServiceClient;
use cri_api::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

const NAMESPACE: &str = "crius";

struct Env {
    // Field order is drop order: crius before containerd.
    crius: Crius,
    containerd: Containerd,
    rt: RuntimeServiceClient<Channel>,
    img: ImageServiceClient<Channel>,
    logs: tempfile::TempDir,
    _config: tempfile::TempDir,
}

/// containerd + crius with `args` and, when given, a config file holding `config`.
async fn env(args: &[&str], config: Option<&str>) -> Result<Env> {
    let containerd = Containerd::start(ContainerdOptions::default())?;
    let config_dir = tempfile::tempdir()?;
    let path = config_dir.path().join("config.toml");
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    if let Some(text) = config {
        std::fs::write(&path, text)?;
        all.push("--config".into());
        all.push(path.display().to_string());
    }
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let crius = Crius::start(None, containerd.socket(), &refs)?;
    let channel = connect::channel(&crius.endpoint()).await?;
    Ok(Env {
        rt: connect::runtime_client(channel.clone()),
        img: connect::image_client(channel),
        crius,
        containerd,
        logs: tempfile::tempdir()?,
        _config: config_dir,
    })
}

/// Standard base64 with padding (Docker's `auth` field).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for group in data.chunks(3) {
        let b = [
            group[0],
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

/// What a container of a test image must find in its root filesystem: a shell command and
/// its exact output. The layered image shows overwrites, a whiteout and an opaque directory
/// applied; the large one, its 50 MiB file intact.
fn rootfs_check(image: &str) -> (&'static str, &'static str) {
    if image.contains("/crius/layers") {
        (
            "cd /layers && find . | sort && cat a c d dir/y",
            ".\n./a\n./c\n./d\n./dir\n./dir/y\n\
             a from layer 3\nc from layer 3\nd from layer 5\ny from layer 4\n",
        )
    } else if image.contains("/crius/large") {
        (
            "sha256sum -c /large/blob.bin.sha256",
            "/large/blob.bin: OK\n",
        )
    } else {
        ("true", "")
    }
}

fn code<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> tonic::Status {
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(status) => status,
    }
}

impl Env {
    /// Close the connections, then stop crius off the runtime thread: its graceful stop
    /// waits for open clients, whose connection tasks need this runtime to close.
    async fn finish(self) -> Result<()> {
        let Env {
            mut crius,
            containerd,
            rt,
            img,
            ..
        } = self;
        drop((rt, img));
        tokio::task::spawn_blocking(move || {
            crius.shutdown()?;
            drop(containerd);
            Ok(())
        })
        .await?
    }

    async fn pull(
        &mut self,
        image: &str,
        auth: Option<cri::AuthConfig>,
    ) -> Result<String, tonic::Status> {
        self.img
            .pull_image(cri::PullImageRequest {
                image: spec(image),
                auth,
                sandbox_config: None,
            })
            .await
            .map(|r| r.into_inner().image_ref)
    }

    async fn status(&mut self, image: &str, verbose: bool) -> Result<cri::ImageStatusResponse> {
        Ok(self
            .img
            .image_status(cri::ImageStatusRequest {
                image: spec(image),
                verbose,
            })
            .await?
            .into_inner())
    }

    fn ctr_lines(&self, args: &[&str]) -> Result<Vec<String>> {
        Ok(self
            .containerd
            .ctr_ns(NAMESPACE, args)?
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect())
    }

    /// Run a pod with one container per image (`sleep`), ExecSync its [`rootfs_check`] in
    /// each, tear down.
    async fn run_in_pod(&mut self, name: &str, image_list: &[&str]) -> Result<()> {
        let config = pods::pod_config(name, "default", self.logs.path());
        let sandbox = pods::run_pod(&mut self.rt, &config).await?;
        for (i, image) in image_list.iter().enumerate() {
            let mut container = pods::container_config(&format!("c{i}"), image, &["sleep", "3600"]);
            container.image = spec(image);
            let id = pods::create_and_start(&mut self.rt, &sandbox, &config, container)
                .await
                .with_context(|| format!("running a container from {image}"))?;
            let (script, expected) = rootfs_check(image);
            let (code, stdout, stderr) = pods::exec_sh(&mut self.rt, &id, script, 30).await?;
            ensure!(
                code == 0 && stdout == expected,
                "ExecSync {script:?} in {image}: exit {code}, stdout {stdout:?} (expected \
                 {expected:?}), stderr {stderr:?}"
            );
        }
        pods::stop_and_remove_pod(&mut self.rt, &sandbox).await?;
        Ok(())
    }
}

/// By tag, by digest, the multi-arch index, through a mirror; status, run, remove.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_by_tag_digest_index_and_mirror_then_run_and_remove() -> Result<()> {
    let images = Images::get()?;
    let registry = Registry::start(false)?;
    let addr = registry.addr();
    images.push(&registry, images::BUSYBOX, "crius/busybox:1")?;
    images.push(&registry, images::MULTIARCH, "crius/multiarch:1")?;
    images.push(&registry, images::USER, "crius/user:1")?;
    images.push(&registry, images::LAYERS, "crius/layers:1")?;
    let mirror =
        format!("[registry]\nmirrors = {{ \"registry.invalid\" = [\"http://{addr}\"] }}\n");
    let mut env = env(&["--log-level", "debug"], Some(&mirror)).await?;

    // By tag.
    let busybox = images.image(images::BUSYBOX)?;
    let tag = format!("{addr}/crius/busybox:1");
    let id = env.pull(&tag, None).await?;
    assert_eq!(id, busybox.config_digest);
    let status = env.status(&tag, true).await?;
    let image = status.image.context("pulled image has a status")?;
    assert_eq!(image.id, id, "image_ref equals Image.id");
    assert_eq!(image.repo_tags, vec![tag.clone()]);
    let by_digest = format!("{addr}/crius/busybox@{}", busybox.digest);
    assert_eq!(image.repo_digests, vec![by_digest.clone()]);
    assert!(image.size > 0);
    let info: serde_json::Value =
        serde_json::from_str(status.info.get("info").context("verbose info")?)?;
    assert_eq!(
        info["chainID"].as_str(),
        busybox.diff_ids.first().map(String::as_str)
    );
    assert!(info["imageSpec"]["rootfs"].is_object(), "{info}");

    // By digest: the same image, no new tag.
    assert_eq!(env.pull(&by_digest, None).await?, id);
    assert_eq!(
        env.status(&by_digest, false).await?.image.map(|i| i.id),
        Some(id.clone())
    );

    // The multi-arch index: the amd64 image is picked; its repo digest is the index's.
    let multi = images.image(images::MULTIARCH)?;
    let multi_tag = format!("{addr}/crius/multiarch:1");
    let multi_id = env.pull(&multi_tag, None).await?;
    assert_eq!(multi_id, multi.config_digest);
    let multi_image = env
        .status(&multi_tag, false)
        .await?
        .image
        .context("multiarch status")?;
    assert_eq!(
        multi_image.repo_digests,
        vec![format!("{addr}/crius/multiarch@{}", multi.digest)]
    );
    assert!(env
        .containerd
        .ctr_ns(NAMESPACE, ["images", "check"])?
        .contains("complete"));

    // USER in the config shows as username.
    let user_tag = format!("{addr}/crius/user:1");
    env.pull(&user_tag, None).await?;
    let user = env
        .status(&user_tag, false)
        .await?
        .image
        .context("user status")?;
    assert_eq!(user.username, "crius");
    assert_eq!(user.uid, None);

    // Five layers (overwrite, whiteout, opaque dir, one gzip layer).
    let layers_tag = format!("{addr}/crius/layers:1");
    let layers_id = env.pull(&layers_tag, None).await?;
    assert_eq!(layers_id, images.image(images::LAYERS)?.config_digest);

    // Through a mirror: registry.invalid does not resolve; its mirror serves it.
    let mirrored = "registry.invalid/crius/busybox:1";
    assert_eq!(env.pull(mirrored, None).await?, id);
    let mirrored_image = env
        .status(mirrored, false)
        .await?
        .image
        .context("mirrored status")?;
    assert!(
        mirrored_image.repo_tags.contains(&mirrored.to_string()),
        "{mirrored_image:?}"
    );
    let via_mirror = registry
        .requests()?
        .iter()
        .filter(|r| r.path.contains("ns=registry.invalid"))
        .count();
    assert!(
        via_mirror > 0,
        "the mirror was asked on behalf of registry.invalid"
    );

    // ListImages with a filter finds exactly the one image.
    let listed = env
        .img
        .list_images(cri::ListImagesRequest {
            filter: Some(cri::ImageFilter {
                image: spec(&multi_tag),
            }),
        })
        .await?
        .into_inner()
        .images;
    assert_eq!(
        listed.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        vec![multi_id.as_str()]
    );

    env.run_in_pod(
        "pulled",
        &[&tag, &multi_tag, &user_tag, &layers_tag, mirrored],
    )
    .await?;
    // Every layer was written into its snapshot while it downloaded (busybox, the user
    // layer, the four layers of the layered image), not by containerd's Diff service.
    let streamed = env
        .crius
        .log()?
        .lines()
        .filter(|l| l.contains("layer applied while downloading"))
        .count();
    assert_eq!(streamed, 6, "layers applied while downloading");

    // RemoveImage by tag, by id, by digest; again is fine.
    env.img
        .remove_image(cri::RemoveImageRequest {
            image: spec(&layers_tag),
        })
        .await?;
    assert!(env.status(&layers_tag, false).await?.image.is_none());
    env.img
        .remove_image(cri::RemoveImageRequest {
            image: spec(&multi_id),
        })
        .await?;
    assert!(env.status(&multi_tag, false).await?.image.is_none());
    let user_digest = user.repo_digests.first().context("user digest")?.clone();
    env.img
        .remove_image(cri::RemoveImageRequest {
            image: spec(&user_digest),
        })
        .await?;
    assert!(env.status(&user_tag, false).await?.image.is_none());
    for gone in [&layers_tag, &multi_id, &user_digest] {
        env.img
            .remove_image(cri::RemoveImageRequest { image: spec(gone) })
            .await?;
    }
    env.finish().await
}

/// Basic auth: none → UNAUTHENTICATED, wrong → UNAUTHENTICATED (another message),
/// username/password and `auth` work, and the config file's credentials are the fallback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_with_basic_auth() -> Result<()> {
    let images = Images::get()?;
    let registry = Registry::start(true)?;
    let addr = registry.addr();
    images.push(&registry, images::BUSYBOX, "crius/busybox:1")?;
    let config = format!(
        "[registry]\nmirrors = {{ \"auth.invalid\" = [\"http://{addr}\"] }}\n\
         [registry.auths.\"auth.invalid\"]\nusername = \"{REGISTRY_USER}\"\npassword = \"{REGISTRY_PASSWORD}\"\n"
    );
    let mut env = env(&[], Some(&config)).await?;
    let tag = format!("{addr}/crius/busybox:1");
    let expected = images.image(images::BUSYBOX)?.config_digest.clone();

    let anonymous = code(env.pull(&tag, None).await);
    assert_eq!(
        anonymous.code(),
        tonic::Code::Unauthenticated,
        "{anonymous:?}"
    );
    assert!(
        anonymous.message().contains("requires credentials"),
        "{anonymous:?}"
    );

    let wrong = cri::AuthConfig {
        username: REGISTRY_USER.into(),
        password: "wrong".into(),
        ..Default::default()
    };
    let rejected = code(env.pull(&tag, Some(wrong)).await);
    assert_eq!(
        rejected.code(),
        tonic::Code::Unauthenticated,
        "{rejected:?}"
    );
    assert!(
        rejected.message().contains("rejected the credentials"),
        "{rejected:?}"
    );

    let right = cri::AuthConfig {
        username: REGISTRY_USER.into(),
        password: REGISTRY_PASSWORD.into(),
        ..Default::default()
    };
    assert_eq!(env.pull(&tag, Some(right)).await?, expected);

    let encoded = base64(format!("{REGISTRY_USER}:{REGISTRY_PASSWORD}").as_bytes());
    let auth = cri::AuthConfig {
        auth: encoded,
        ..Default::default()
    };
    assert_eq!(env.pull(&tag, Some(auth)).await?, expected);

    // No credentials in the request: the config file's for auth.invalid (mirrored here).
    assert_eq!(
        env.pull("auth.invalid/crius/busybox:1", None).await?,
        expected
    );
    env.run_in_pod("authed", &[&tag]).await?;
    env.finish().await
}

/// Ten concurrent PullImage calls of one reference download each blob once; the 50 MiB
/// image is timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_share_one_download() -> Result<()> {
    let images = Images::get()?;
    let registry = Registry::start(false)?;
    let addr = registry.addr();
    images.push(&registry, images::LARGE, "crius/large:1")?;
    let large = images.image(images::LARGE)?;
    let mut env = env(&["--log-level", "debug"], None).await?;
    let tag = format!("{addr}/crius/large:1");
    let before = registry.blob_gets("crius/large")?;
    let started = Instant::now();
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let mut img = env.img.clone();
            let image = tag.clone();
            tokio::spawn(async move {
                img.pull_image(cri::PullImageRequest {
                    image: spec(&image),
                    auth: None,
                    sandbox_config: None,
                })
                .await
                .map(|r| r.into_inner().image_ref)
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await??, large.config_digest);
    }
    let seconds = started.elapsed().as_secs_f64();
    let gets = registry.blob_gets("crius/large")? - before;
    eprintln!("10 concurrent pulls of the 50 MiB image: {gets} blob GETs, {seconds:.2}s");
    assert_eq!(
        gets,
        large.layers.len() + 1,
        "each layer and the config fetched once"
    );
    let log = env.crius.log()?;
    let pulled: Vec<&str> = log.lines().filter(|l| l.contains("pulled image")).collect();
    assert_eq!(
        pulled.len(),
        1,
        "one shared pull, one info line: {pulled:?}"
    );
    eprintln!("{}", pulled[0]);
    // crius wrote each layer into containerd's local store and containerd recorded it.
    for layer in &large.layers {
        ensure!(
            log.lines().any(
                |l| l.contains("recording a layer blob found in the local store")
                    && l.contains(layer.as_str())
            ),
            "layer {layer} was not written into the local store:\n{log}"
        );
        ensure!(
            env.containerd.blob_path(layer).is_file(),
            "layer {layer} is not in containerd's blob directory"
        );
    }
    layers_recorded(&env, &large.layers)?;
    let scratch = scratch_files(&env)?;
    ensure!(scratch.is_empty(), "scratch files left: {scratch:?}");

    // A second pull of a present image fetches no layer again.
    let again = Instant::now();
    env.pull(&tag, None).await?;
    eprintln!(
        "re-pull of the present 50 MiB image: {:.2}s",
        again.elapsed().as_secs_f64()
    );
    assert_eq!(
        registry.blob_gets("crius/large")? - before,
        large.layers.len() + 1 + 1,
        "only the config again"
    );
    let pulled_at = shim::runtime::now_nanos();
    env.run_in_pod("large", &[&tag]).await?;

    // RemoveImage frees the layers before it answers, and ImageFsInfo shows it at once:
    // kubelet's eviction manager reads ImageFsInfo right after its image garbage collection
    // and evicts pods if the disk still looks full.
    let deadline = Instant::now() + Duration::from_secs(20);
    let with_image = loop {
        let usage = image_fs(&mut env).await?;
        if usage.0 > pulled_at {
            break usage;
        }
        ensure!(
            Instant::now() < deadline,
            "ImageFsInfo was not measured after the pull"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    env.img
        .remove_image(cri::RemoveImageRequest { image: spec(&tag) })
        .await?;
    for layer in &large.layers {
        let blob = env.containerd.blob_path(layer);
        ensure!(
            !blob.exists(),
            "layer {layer} is still in containerd's blob directory after RemoveImage"
        );
    }
    let without = image_fs(&mut env).await?;
    eprintln!(
        "ImageFsInfo with the 50 MiB image: {with_image:?}; right after RemoveImage: {without:?}"
    );
    ensure!(
        without.0 > with_image.0,
        "ImageFsInfo was not measured again by RemoveImage"
    );
    ensure!(
        with_image.1.saturating_sub(without.1) >= 45 << 20,
        "ImageFsInfo does not show the freed 50 MiB layer: {with_image:?} then {without:?}"
    );
    env.finish().await
}

/// ImageFsInfo's (timestamp, used bytes) of the image filesystem.
async fn image_fs(env: &mut Env) -> Result<(i64, u64)> {
    let info = env
        .img
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await?
        .into_inner();
    let fs = info
        .image_filesystems
        .first()
        .context("ImageFsInfo lists no image filesystem")?;
    let used = fs.used_bytes.as_ref().map(|u| u.value).unwrap_or_default();
    Ok((fs.timestamp, used))
}

/// With `containerd_local_content = false` every layer goes through `Content.Write`; the
/// image is whole and runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_through_content_write_when_local_content_is_off() -> Result<()> {
    let images = Images::get()?;
    let registry = Registry::start(false)?;
    images.push(&registry, images::LARGE, "crius/large:1")?;
    let large = images.image(images::LARGE)?;
    let mut env = env(
        &["--log-level", "debug"],
        Some("containerd_local_content = false\n"),
    )
    .await?;
    let tag = format!("{}/crius/large:1", registry.addr());
    assert_eq!(env.pull(&tag, None).await?, large.config_digest);
    let log = env.crius.log()?;
    ensure!(
        !log.contains("local store"),
        "the local store was used although it is off:\n{log}"
    );
    layers_recorded(&env, &large.layers)?;
    ensure!(
        !env.containerd.scratch_dir(NAMESPACE).exists(),
        "crius made a scratch directory although local content is off"
    );
    env.run_in_pod("streamed", &[&tag]).await?;
    env.finish().await
}

/// Every one of `layers` is in crius's namespace of containerd's content store.
fn layers_recorded(env: &Env, layers: &[String]) -> Result<()> {
    let content = env.ctr_lines(&["content", "ls", "-q"])?;
    for layer in layers {
        ensure!(
            content.contains(layer),
            "{layer} is not in crius's namespace: {content:?}"
        );
    }
    Ok(())
}

/// Files crius left in its scratch directory in containerd's content root.
fn scratch_files(env: &Env) -> Result<Vec<std::path::PathBuf>> {
    conformance::harness::util::entries_of(&env.containerd.scratch_dir(NAMESPACE))
}

/// Wrong credentials, a missing tag, a closed port, a registry that never answers and a
/// corrupted layer each give their own error, and none leaves content, ingests or leases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_errors_are_distinct_and_leave_nothing_behind() -> Result<()> {
    let images = Images::get()?;
    let registry = Registry::start(false)?;
    let auth_registry = Registry::start(true)?;
    let addr = registry.addr();
    images.push(&registry, images::LARGE, "crius/large:1")?;
    images.push(&auth_registry, images::BUSYBOX, "crius/busybox:1")?;
    let mut env = env(&["--image-pull-progress-timeout", "3s"], None).await?;
    // crius imports its built-in pause image while it starts; wait for it before counting.
    let deadline = Instant::now() + Duration::from_secs(20);
    while env
        .status("localhost/crius/pause:builtin", false)
        .await?
        .image
        .is_none()
    {
        ensure!(
            Instant::now() < deadline,
            "the built-in pause image never appeared"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let content_before = env.ctr_lines(&["content", "ls", "-q"])?;
    let snapshots_before = env.ctr_lines(&["snapshots", "ls"])?;

    let wrong = cri::AuthConfig {
        username: REGISTRY_USER.into(),
        password: "nope".into(),
        ..Default::default()
    };
    let status = code(
        env.pull(
            &format!("{}/crius/busybox:1", auth_registry.addr()),
            Some(wrong),
        )
        .await,
    );
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");

    let status = code(env.pull(&format!("{addr}/crius/large:missing"), None).await);
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    assert!(status.message().contains("not found"), "{status:?}");
    let status = code(
        env.pull(&format!("{addr}/crius/nothing-here:1"), None)
            .await,
    );
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");

    let closed = TcpListener::bind("127.0.0.1:0")?;
    let closed_addr = closed.local_addr()?;
    drop(closed);
    let status = code(
        env.pull(&format!("{closed_addr}/crius/busybox:1"), None)
            .await,
    );
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");

    // Accepts connections and never answers: the progress timeout ends the pull.
    let hanging = TcpListener::bind("127.0.0.1:0")?;
    let hanging_addr = hanging.local_addr()?;
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in hanging.incoming() {
            held.push(stream);
        }
    });
    let started = Instant::now();
    let status = code(
        env.pull(&format!("{hanging_addr}/crius/busybox:1"), None)
            .await,
    );
    let took = started.elapsed();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("without progress"), "{status:?}");
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(20),
        "{took:?}"
    );

    // A layer whose bytes do not match its digest (same size, flipped bytes mid-file):
    // the first layer is stored, the second fails half-way; all of it must go.
    let large = images.image(images::LARGE)?;
    let big = large.layers.last().context("large layer")?;
    let hex = big.trim_start_matches("sha256:");
    let data = registry.dir().join(format!(
        "data/docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    let mut bytes = std::fs::read(&data).with_context(|| format!("reading {}", data.display()))?;
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 64] {
        *b = !*b;
    }
    std::fs::write(&data, bytes)?;
    let status = code(env.pull(&format!("{addr}/crius/large:1"), None).await);
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("digest"), "{status:?}");

    let content_after = env.ctr_lines(&["content", "ls", "-q"])?;
    assert_eq!(content_after, content_before, "no new blobs");
    // The layer being written into its snapshot while it streamed: that snapshot goes too.
    assert_eq!(
        env.ctr_lines(&["snapshots", "ls"])?,
        snapshots_before,
        "no new snapshots"
    );
    for digest in large
        .layers
        .iter()
        .chain([&large.config_digest, &large.digest])
    {
        assert!(!content_after.contains(digest), "{digest} must not stay");
    }
    let ingest = env
        .containerd
        .root()
        .join("io.containerd.content.v1.content/ingest");
    let ingests = conformance::harness::util::entries_of(&ingest)?;
    assert!(ingests.is_empty(), "no ingests: {ingests:?}");
    // Nothing stays in containerd's blob directory or in crius's scratch directory: the
    // corrupted layer was never linked, the good one went with the lease.
    for layer in &large.layers {
        let blob = env.containerd.blob_path(layer);
        assert!(!blob.exists(), "{} must not stay", blob.display());
    }
    let scratch = scratch_files(&env)?;
    assert!(scratch.is_empty(), "scratch files left: {scratch:?}");
    assert!(
        env.ctr_lines(&["leases", "ls", "-q"])?.is_empty(),
        "no leases"
    );
    let names = env.ctr_lines(&["images", "ls", "-q"])?;
    assert!(
        names
            .iter()
            .all(|n| !n.contains("crius/large") && !n.contains("crius/busybox")),
        "{names:?}"
    );
    env.finish().await
}
