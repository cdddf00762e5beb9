//! Manager behaviour on a recording fake backend: what a failed create undoes, and that a
//! name is free again afterwards (DESIGN.md decision 5); that the kept ListContainers and
//! ListPodSandbox answers follow every change; that the answers crius sends from bytes (the
//! kept lists, ListContainerStats) cross a real socket in pieces and decode as tonic's own;
//! that ImageFsInfo answers its last measurement. No daemons needed.

// Helpers here may panic: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use clap::Parser;
use runtime_backends::fake::FakeBackend;
use runtime_backends::{ImageConfig, ImageRecord};
use shim::config::{self, Cli};
use shim::domain::{ContainerConfig, ContainerMetadata, NamespaceMode, PodMetadata, SandboxConfig};
use shim::runtime::Crius;

fn crius(fake: Arc<FakeBackend>, dir: &std::path::Path) -> Arc<Crius> {
    let cli = Cli::parse_from([
        "crius",
        "--config",
        dir.join("absent.toml").to_str().unwrap_or_default(),
        "--root",
        dir.join("root").to_str().unwrap_or_default(),
        "--state",
        dir.join("state").to_str().unwrap_or_default(),
        "--cgroup-driver",
        "cgroupfs",
    ]);
    // An explicitly named config file must exist.
    std::fs::write(dir.join("absent.toml"), "").unwrap();
    let config = config::load(&cli).unwrap();
    let image = |id: &str, tag: &str| ImageRecord {
        id: id.to_string(),
        repo_tags: vec![tag.to_string()],
        repo_digests: vec![],
        size: 1,
        config: ImageConfig {
            entrypoint: vec!["/pause".into()],
            ..Default::default()
        },
        diff_ids: vec![],
        chain_id: String::new(),
        manifest_digest: String::new(),
        labels: Default::default(),
    };
    fake.images.lock().unwrap().extend([
        image(
            &format!("sha256:{}", "1".repeat(64)),
            shim::pause::BUILTIN_PAUSE_IMAGE,
        ),
        image(&format!("sha256:{}", "2".repeat(64)), "localhost/app:1"),
    ]);
    Arc::new(Crius::new(config, fake))
}

/// A container `name` of the test image running `true`.
fn app(name: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: ContainerMetadata {
            name: name.into(),
            attempt: 0,
        },
        image: "localhost/app:1".into(),
        command: vec!["true".into()],
        ..Default::default()
    }
}

fn pod(name: &str) -> SandboxConfig {
    let mut config = SandboxConfig {
        metadata: PodMetadata {
            name: name.into(),
            uid: "u".into(),
            namespace: "ns".into(),
            attempt: 0,
        },
        ..Default::default()
    };
    // Host IPC: no shm mount, so this test needs no privileges beyond files.
    config.security.namespaces.ipc = NamespaceMode::Node;
    config.security.namespaces.network = NamespaceMode::Node;
    config
}

#[tokio::test]
async fn a_failed_sandbox_start_removes_the_pause_container_and_frees_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeBackend::default());
    let crius = crius(fake.clone(), dir.path());
    crius.refresh_images().await.unwrap();
    fake.failing.lock().unwrap().push("start_task".into());

    let err = crius.run_sandbox(pod("p")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    let calls = fake.calls();
    let created = calls
        .iter()
        .position(|c| c.starts_with("create_container("))
        .expect("created");
    let removed = calls
        .iter()
        .position(|c| c.starts_with("remove_container("))
        .expect("rolled back");
    assert!(removed > created, "{calls:?}");
    assert!(
        fake.containers.lock().unwrap().is_empty(),
        "nothing left in the backend"
    );
    assert!(crius.store.sandboxes.is_empty());
    let sandbox_dirs = conformance::harness::util::entries_of(&dir.path().join("root/sandboxes"))
        .expect("crius keeps its sandbox directory");
    assert!(
        sandbox_dirs.is_empty(),
        "files left behind: {sandbox_dirs:?}"
    );

    // The name is free again: the retry succeeds once the backend works.
    fake.failing.lock().unwrap().clear();
    let id = crius.run_sandbox(pod("p")).await.unwrap();
    assert_eq!(crius.store.sandboxes.len(), 1);
    // A second RunPodSandbox with the same name is a duplicate.
    let dup = crius.run_sandbox(pod("p")).await.unwrap_err();
    assert_eq!(dup.code(), tonic::Code::AlreadyExists);
    crius.remove_sandbox(&id).await.unwrap();
    assert!(crius.store.sandboxes.is_empty());
    crius
        .remove_sandbox(&id)
        .await
        .expect("removing twice is fine");
}

#[tokio::test]
async fn a_failed_container_create_is_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeBackend::default());
    let crius = crius(fake.clone(), dir.path());
    crius.refresh_images().await.unwrap();
    let sandbox = crius.run_sandbox(pod("q")).await.unwrap();
    let config = app("c");
    fake.failing.lock().unwrap().push("read_image_files".into());
    let err = crius
        .create_container(&sandbox, config.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(crius.store.containers.is_empty());
    fake.failing.lock().unwrap().clear();
    let id = crius
        .create_container(&sandbox, config.clone())
        .await
        .expect("name was released");
    assert!(crius.store.containers.get(&id).is_some());
    crius.remove_container(&id).await.unwrap();
    assert!(crius.store.containers.is_empty());
    crius.remove_sandbox(&sandbox).await.unwrap();
}

/// Each container's state name as an unfiltered ListContainers answers, sorted by name, from
/// the bytes a client would get.
fn listed(crius: &Crius) -> Vec<(String, i32)> {
    use prost::Message;
    let answer =
        shim::services::container::list(crius, cri_api::v1::ListContainersRequest::default())
            .unwrap();
    let decoded =
        cri_api::v1::ListContainersResponse::decode(answer.encode_to_vec().as_slice()).unwrap();
    let mut all: Vec<(String, i32)> = decoded
        .containers
        .into_iter()
        .map(|c| (c.metadata.unwrap_or_default().name, c.state))
        .collect();
    all.sort();
    all
}

#[tokio::test]
async fn the_kept_container_list_follows_every_change() {
    use cri_api::v1::ContainerState::{ContainerCreated, ContainerExited, ContainerRunning};
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeBackend::default());
    let crius = crius(fake.clone(), dir.path());
    crius.refresh_images().await.unwrap();
    let sandbox = crius.run_sandbox(pod("l")).await.unwrap();
    let first = crius.create_container(&sandbox, app("a")).await.unwrap();
    // Every answer is asked for twice: the second comes from the kept one.
    let expect = |want: &[(&str, cri_api::v1::ContainerState)]| {
        let want: Vec<(String, i32)> = want
            .iter()
            .map(|(name, state)| (name.to_string(), *state as i32))
            .collect();
        assert_eq!(listed(&crius), want);
        assert_eq!(listed(&crius), want);
    };
    expect(&[("a", ContainerCreated)]);
    let set = |id: &str, state| {
        let container = crius.store.containers.get(id).unwrap();
        container.update(|s| s.state = state);
    };
    set(&first, shim::store::ContainerState::Running);
    expect(&[("a", ContainerRunning)]);
    let second = crius.create_container(&sandbox, app("b")).await.unwrap();
    expect(&[("a", ContainerRunning), ("b", ContainerCreated)]);
    set(&first, shim::store::ContainerState::Exited);
    expect(&[("a", ContainerExited), ("b", ContainerCreated)]);
    crius.remove_container(&first).await.unwrap();
    expect(&[("b", ContainerCreated)]);
    // A filtered list is built afresh.
    let running = shim::services::container::list(
        &crius,
        cri_api::v1::ListContainersRequest {
            filter: Some(cri_api::v1::ContainerFilter {
                state: Some(cri_api::v1::ContainerStateValue {
                    state: ContainerRunning as i32,
                }),
                ..Default::default()
            }),
        },
    )
    .unwrap();
    assert!(running.encoded.is_empty() && running.raw.is_empty());
    crius.remove_container(&second).await.unwrap();
    expect(&[]);
    crius.remove_sandbox(&sandbox).await.unwrap();
}

/// The calls made for `id` after the `from`th call, as `name(args)` with the id left out.
fn calls_for(fake: &FakeBackend, id: &str, from: usize) -> Vec<String> {
    fake.calls()[from..]
        .iter()
        .filter(|c| c.contains(id))
        .map(|c| c.replace(id, "ID"))
        .collect()
}

/// What RemoveContainer of `id` asks of the backend for `id`.
async fn removal_calls(crius: &Crius, fake: &FakeBackend, id: &str) -> Vec<String> {
    let mark = fake.calls().len();
    crius.remove_container(id).await.unwrap();
    calls_for(fake, id, mark)
}

/// A started container `name` of the test image in `sandbox`.
async fn started(crius: &Arc<Crius>, sandbox: &str, name: &str) -> String {
    let id = crius.create_container(sandbox, app(name)).await.unwrap();
    crius.start_container(&id).await.unwrap();
    id
}

#[tokio::test]
async fn removal_is_one_backend_call_in_every_state_and_a_failed_one_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeBackend::default());
    let crius = crius(fake.clone(), dir.path());
    crius.refresh_images().await.unwrap();
    let sandbox = crius.run_sandbox(pod("r")).await.unwrap();

    // Stopped: whatever the engine must do for it happens inside one call.
    let stopped = started(&crius, &sandbox, "stopped").await;
    crius.stop_container(&stopped, 0).await.unwrap();
    assert_eq!(
        removal_calls(&crius, &fake, &stopped).await,
        ["remove_container(ID)"]
    );

    // The engine fails the removal: the container stays, and a retry removes it.
    let retried = started(&crius, &sandbox, "retried").await;
    crius.stop_container(&retried, 0).await.unwrap();
    fake.failing.lock().unwrap().push("remove_container".into());
    let err = crius.remove_container(&retried).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    fake.failing.lock().unwrap().clear();
    assert!(crius.store.containers.get(&retried).is_some(), "not lost");
    assert_eq!(
        removal_calls(&crius, &fake, &retried).await,
        ["remove_container(ID)"]
    );
    assert!(crius.store.containers.get(&retried).is_none());

    // Never started.
    let created = crius
        .create_container(&sandbox, app("created"))
        .await
        .unwrap();
    assert_eq!(
        removal_calls(&crius, &fake, &created).await,
        ["remove_container(ID)"]
    );

    // Running: stopped first (its exit recorded, its task deleted), then removed.
    let running = started(&crius, &sandbox, "running").await;
    crius.remove_container(&running).await.unwrap();
    let calls = calls_for(&fake, &running, 0);
    assert_eq!(
        calls.last().map(String::as_str),
        Some("remove_container(ID)"),
        "{calls:?}"
    );
    assert!(calls.iter().any(|c| c == "delete_task(ID)"), "{calls:?}");
    crius.remove_sandbox(&sandbox).await.unwrap();
}

#[tokio::test]
async fn a_feature_the_backend_lacks_is_refused_before_any_work_and_used_where_it_has_it() {
    use runtime_backends::Features;
    use shim::domain::{Mount, Propagation, UserNamespace};
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeBackend::default());
    let crius = crius(fake.clone(), dir.path());
    crius.refresh_images().await.unwrap();

    // A pod of its own user namespace, from a backend without user namespaces.
    let mut userns_pod = pod("userns");
    userns_pod.security.namespaces.userns = Some(UserNamespace {
        mode: NamespaceMode::Pod,
        uids: vec![],
        gids: vec![],
    });
    let before = fake.calls().len();
    let err = crius.run_sandbox(userns_pod).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
    assert!(err.to_string().contains("backend fake"), "{err}");
    assert!(
        fake.calls()[before..].is_empty(),
        "{:?}",
        &fake.calls()[before..]
    );
    assert!(crius.store.sandboxes.is_empty());

    // A recursive read-only mount and an idmapped one, from a backend without them.
    let sandbox = crius.run_sandbox(pod("f")).await.unwrap();
    let rro = Mount {
        container_path: "/ro".into(),
        host_path: dir.path().display().to_string(),
        readonly: true,
        selinux_relabel: false,
        propagation: Propagation::Private,
        recursive_read_only: true,
        uid_mappings: vec![],
        gid_mappings: vec![],
    };
    let mut asks = app("rro");
    asks.mounts = vec![rro];
    let before = fake.calls().len();
    let err = crius
        .create_container(&sandbox, asks.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
    assert!(err.to_string().contains("recursive_read_only"), "{err}");
    assert!(
        fake.calls()[before..].is_empty(),
        "{:?}",
        &fake.calls()[before..]
    );
    assert_eq!(crius.store.containers.len(), 0, "nothing left behind");

    // Granted: the same request is made, and the backend is asked for it.
    *fake.features.lock().unwrap() = Features {
        recursive_read_only_mounts: true,
        ..Features::default()
    };
    let id = crius.create_container(&sandbox, asks).await.unwrap();
    let created = fake.created.lock().unwrap();
    let mount = created[&id]
        .mounts
        .iter()
        .find(|m| m.destination == "/ro")
        .cloned()
        .unwrap();
    assert!(mount.readonly && mount.recursive_read_only, "{mount:?}");
}

/// Each sandbox's name and state as an unfiltered ListPodSandbox answers, from the bytes a
/// client would get.
fn listed_sandboxes(crius: &Crius) -> Vec<(String, i32)> {
    use prost::Message;
    let answer =
        shim::services::sandbox::list(crius, cri_api::v1::ListPodSandboxRequest::default())
            .unwrap();
    let decoded =
        cri_api::v1::ListPodSandboxResponse::decode(answer.encode_to_vec().as_slice()).unwrap();
    let mut all: Vec<(String, i32)> = decoded
        .items
        .into_iter()
        .map(|s| (s.metadata.unwrap_or_default().name, s.state))
        .collect();
    all.sort();
    all
}

#[tokio::test]
async fn the_kept_sandbox_list_follows_every_change() {
    use cri_api::v1::PodSandboxState::{SandboxNotready, SandboxReady};
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeBackend::default());
    let crius = crius(fake.clone(), dir.path());
    crius.refresh_images().await.unwrap();
    // Every answer is asked for twice: the second comes from the kept one.
    let expect = |want: &[(&str, cri_api::v1::PodSandboxState)]| {
        let want: Vec<(String, i32)> = want
            .iter()
            .map(|(name, state)| (name.to_string(), *state as i32))
            .collect();
        assert_eq!(listed_sandboxes(&crius), want);
        assert_eq!(listed_sandboxes(&crius), want);
    };
    expect(&[]);
    let first = crius.run_sandbox(pod("s1")).await.unwrap();
    expect(&[("s1", SandboxReady)]);
    let second = crius.run_sandbox(pod("s2")).await.unwrap();
    expect(&[("s1", SandboxReady), ("s2", SandboxReady)]);
    crius.stop_sandbox(&first).await.unwrap();
    expect(&[("s1", SandboxNotready), ("s2", SandboxReady)]);
    crius.remove_sandbox(&first).await.unwrap();
    expect(&[("s2", SandboxReady)]);
    crius.remove_sandbox(&second).await.unwrap();
    expect(&[]);
}

/// Stands in for tonic's router behind the kept-answers layer: counts the calls it gets and
/// answers each with 204.
#[derive(Clone, Default)]
struct Router(Arc<std::sync::atomic::AtomicUsize>);

impl tower::Service<http::Request<tonic::body::Body>> for Router {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<tonic::body::Body>) -> Self::Future {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut response = http::Response::new(tonic::body::Body::empty());
        *response.status_mut() = http::StatusCode::NO_CONTENT;
        std::future::ready(Ok(response))
    }
}

/// Send `message` to `method` through the kept-answers layer in front of `router`; the
/// response's status, body and `grpc-status` trailer.
async fn through_layer(
    crius: &Arc<Crius>,
    router: &Router,
    method: &str,
    message: &[u8],
    compressed: bool,
) -> (http::StatusCode, Vec<u8>, Option<String>) {
    use http_body_util::BodyExt;
    use tower::{Layer, Service};
    let mut service = shim::wire::KeptAnswersLayer::new(crius.clone()).layer(router.clone());
    let mut body = vec![u8::from(compressed)];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(message);
    let request = http::Request::post(format!("/runtime.v1.RuntimeService/{method}"))
        .header("content-type", "application/grpc")
        .body(tonic::body::Body::new(http_body_util::Full::new(
            bytes::Bytes::from(body),
        )))
        .unwrap();
    std::future::poll_fn(|cx| service.poll_ready(cx))
        .await
        .unwrap();
    let response = service.call(request).await.unwrap();
    let status = response.status();
    // A trailers-only answer (an error) carries its status in the headers.
    let in_headers = response.headers().get("grpc-status").cloned();
    let collected = response.into_body().collect().await.unwrap();
    let grpc_status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status").cloned())
        .or(in_headers)
        .map(|v| v.to_str().unwrap().to_string());
    (status, collected.to_bytes().to_vec(), grpc_status)
}

/// The message of a one-message gRPC body.
fn unframed(body: &[u8]) -> &[u8] {
    assert_eq!(body[0], 0, "uncompressed");
    let length = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    assert_eq!(body.len(), 5 + length, "one whole message");
    &body[5..]
}

#[tokio::test]
async fn unfiltered_lists_are_answered_from_the_kept_bytes_before_tonic() {
    use cri_api::v1 as cri;
    use prost::Message;
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeBackend::default());
    let crius = crius(fake.clone(), dir.path());
    crius.refresh_images().await.unwrap();
    let sandbox = crius.run_sandbox(pod("w")).await.unwrap();
    let config = app("c");
    let id = crius.create_container(&sandbox, config).await.unwrap();
    let router = Router::default();
    let counted =
        || shim::instrument::stats("ListContainers").map_or(0, |stats| stats.latency.count());

    // Unfiltered (no filter, or an empty one): answered here, counted as the RPC, with the
    // same bytes the service gives.
    for request in [
        cri::ListContainersRequest::default(),
        cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter::default()),
        },
    ] {
        let before = counted();
        let (status, body, grpc_status) = through_layer(
            &crius,
            &router,
            "ListContainers",
            &request.encode_to_vec(),
            false,
        )
        .await;
        assert_eq!(
            (status, grpc_status.as_deref()),
            (http::StatusCode::OK, Some("0"))
        );
        let served = shim::services::container::list(&crius, request).unwrap();
        assert_eq!(unframed(&body), served.encode_to_vec().as_slice());
        let decoded = cri::ListContainersResponse::decode(unframed(&body)).unwrap();
        assert_eq!(decoded.containers.len(), 1);
        assert_eq!(decoded.containers[0].id, id);
        assert!(counted() > before, "the call is counted as ListContainers");
    }
    // A change of state is in the next answer.
    crius
        .store
        .containers
        .get(&id)
        .unwrap()
        .update(|s| s.state = shim::store::ContainerState::Running);
    let (_, body, _) = through_layer(
        &crius,
        &router,
        "ListContainers",
        &cri::ListContainersRequest::default().encode_to_vec(),
        false,
    )
    .await;
    let decoded = cri::ListContainersResponse::decode(unframed(&body)).unwrap();
    assert_eq!(
        decoded.containers[0].state,
        cri::ContainerState::ContainerRunning as i32
    );
    let (_, body, _) = through_layer(
        &crius,
        &router,
        "ListPodSandbox",
        &cri::ListPodSandboxRequest::default().encode_to_vec(),
        false,
    )
    .await;
    let sandboxes = cri::ListPodSandboxResponse::decode(unframed(&body)).unwrap();
    assert_eq!(sandboxes.items.len(), 1);
    assert_eq!(sandboxes.items[0].id, sandbox);
    assert_eq!(router.0.load(Ordering::SeqCst), 0, "tonic saw none of them");

    // Everything else goes on to tonic: a filter, a compressed message, another method.
    let by_pod = cri::ListContainersRequest {
        filter: Some(cri::ContainerFilter {
            pod_sandbox_id: sandbox.clone(),
            ..Default::default()
        }),
    };
    let passed = [
        ("ListContainers", by_pod.encode_to_vec(), false),
        (
            "ListContainers",
            cri::ListContainersRequest::default().encode_to_vec(),
            true,
        ),
        (
            "ListPodSandbox",
            cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    id: sandbox.clone(),
                    ..Default::default()
                }),
            }
            .encode_to_vec(),
            false,
        ),
        ("ListImages", Vec::new(), false),
    ];
    for (i, (method, message, compressed)) in passed.iter().enumerate() {
        let (status, _, _) = through_layer(&crius, &router, method, message, *compressed).await;
        assert_eq!(status, http::StatusCode::NO_CONTENT, "{method} #{i}");
        assert_eq!(router.0.load(Ordering::SeqCst), i + 1, "{method} #{i}");
    }
    crius.remove_container(&id).await.unwrap();
    crius.remove_sandbox(&sandbox).await.unwrap();
}

#[tokio::test]
async fn an_oversized_list_request_is_out_of_range_and_reaches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeBackend::default());
    let crius = crius(fake.clone(), dir.path());
    let router = Router::default();
    let message = vec![0u8; shim::server::MAX_MESSAGE_BYTES + 1];
    for method in ["ListContainers", "ListContainerStats"] {
        let (status, body, grpc_status) =
            through_layer(&crius, &router, method, &message, false).await;
        assert_eq!(status, http::StatusCode::OK, "{method}");
        assert_eq!(grpc_status.as_deref(), Some("11"), "{method}: OutOfRange");
        assert!(body.is_empty(), "{method}");
    }
    assert_eq!(router.0.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn image_fs_info_answers_its_last_measurement_with_the_time_it_was_taken() {
    use shim::services::image::fs_info;
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeBackend::default());
    let crius = crius(fake.clone(), dir.path());
    // Before the first measurement: Unavailable, never a usage of 0.
    match fs_info(&crius) {
        Err(shim::error::Error::Unavailable(message)) => {
            assert!(message.contains("not been measured"), "{message}")
        }
        other => panic!("expected Unavailable before a measurement, got {other:?}"),
    }
    let before = shim::runtime::now_nanos();
    crius
        .measure_image_fs(runtime_backends::FsWalk::Changed)
        .await;
    let after = shim::runtime::now_nanos();
    let taken = fs_info(&crius).unwrap().image_filesystems[0].timestamp;
    assert!(
        before <= taken && taken <= after,
        "{before} <= {taken} <= {after}"
    );
    // Later calls answer the same measurement, stamped when it was taken, not when asked.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let again = fs_info(&crius).unwrap();
    assert_eq!(again.image_filesystems[0].timestamp, taken);
    assert_eq!(again.container_filesystems[0].timestamp, taken);
    // A failed measurement keeps the last good one.
    fake.failing
        .lock()
        .unwrap()
        .push("image_fs_usage".to_string());
    crius
        .measure_image_fs(runtime_backends::FsWalk::Changed)
        .await;
    assert_eq!(
        fs_info(&crius).unwrap().image_filesystems[0].timestamp,
        taken
    );
}

/// The answers `crate::wire` sends itself (the kept lists, ListContainerStats) cross a real
/// socket and HTTP/2 connection in many pieces, and a tonic client decodes them as it decodes
/// the answers tonic builds (the filtered lists and StreamContainerStats).
#[tokio::test]
async fn the_largest_answers_cross_a_real_socket_in_pieces() {
    use cri_api::v1 as cri;
    use std::collections::BTreeSet;
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeBackend::default());
    let crius = crius(fake.clone(), dir.path());
    crius.refresh_images().await.unwrap();
    // 3 pods of 50 containers: several segments of the kept answer, three 64-entry pieces
    // of the stats answer.
    let mut pods = Vec::new();
    for p in 0..3 {
        let sandbox = crius.run_sandbox(pod(&format!("big{p}"))).await.unwrap();
        for c in 0..50 {
            let mut config = app(&format!("c{c}"));
            config.labels = [
                ("io.kubernetes.container.name".to_string(), format!("c{c}")),
                ("io.kubernetes.pod.name".to_string(), format!("big{p}")),
                ("even".to_string(), (c % 2 == 0).to_string()),
            ]
            .into();
            config.annotations =
                [("io.kubernetes.container.hash".into(), format!("{c:08x}"))].into();
            crius.create_container(&sandbox, config).await.unwrap();
        }
        pods.push(sandbox);
    }
    let socket = dir.path().join("crius.sock");
    let listener = shim::server::bind(&socket).unwrap();
    let served = socket.clone();
    let server = crius.clone();
    tokio::spawn(async move {
        shim::server::serve(server, listener, &served, shim::server::Shutdown::never()).await
    });
    let channel = conformance::runner::connect::channel(&format!("unix://{}", socket.display()))
        .await
        .unwrap();
    let mut rt = conformance::runner::connect::runtime_client(channel);

    // ListContainerStats, every filter through the layer; StreamContainerStats through tonic.
    let attributes = |stats: Vec<cri::ContainerStats>| -> Vec<cri::ContainerAttributes> {
        let mut all: Vec<cri::ContainerAttributes> = stats
            .into_iter()
            .map(|s| {
                assert!(s.writable_layer.is_some(), "every entry has its layer");
                s.attributes.unwrap()
            })
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    };
    let stats_client = rt.clone();
    let list_stats = |filter: Option<cri::ContainerStatsFilter>| {
        let mut rt = stats_client.clone();
        async move {
            let request = cri::ListContainerStatsRequest { filter };
            rt.list_container_stats(request)
                .await
                .unwrap()
                .into_inner()
                .stats
        }
    };
    let listed = attributes(list_stats(None).await);
    assert_eq!(listed.len(), 150);
    let mut stream = rt
        .stream_container_stats(cri::StreamContainerStatsRequest { filter: None })
        .await
        .unwrap()
        .into_inner();
    let mut streamed = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        streamed.extend(message.container_stats);
    }
    assert_eq!(listed, attributes(streamed));
    let labelled = cri::ContainerStatsFilter {
        label_selector: [("even".to_string(), "true".to_string())].into(),
        ..Default::default()
    };
    let even = attributes(list_stats(Some(labelled)).await);
    assert_eq!(even.len(), 75);
    assert!(even.iter().all(|a| a.labels["even"] == "true"));
    let by_pod = cri::ContainerStatsFilter {
        pod_sandbox_id: pods[1].clone(),
        ..Default::default()
    };
    let second = attributes(list_stats(Some(by_pod)).await);
    assert_eq!(second.len(), 50);
    assert!(second
        .iter()
        .all(|a| a.labels["io.kubernetes.pod.name"] == "big1"));

    // ListContainers: the kept answer against the union of the per-pod lists tonic answers.
    let ids = |containers: Vec<cri::Container>| -> BTreeSet<String> {
        containers.into_iter().map(|c| c.id).collect()
    };
    let all = rt
        .list_containers(cri::ListContainersRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(all.len(), 150);
    let mut per_pod = BTreeSet::new();
    for sandbox in &pods {
        let filter = cri::ContainerFilter {
            pod_sandbox_id: sandbox.clone(),
            ..Default::default()
        };
        let one = rt
            .list_containers(cri::ListContainersRequest {
                filter: Some(filter),
            })
            .await
            .unwrap()
            .into_inner()
            .containers;
        assert_eq!(one.len(), 50);
        per_pod.extend(ids(one));
    }
    assert_eq!(ids(all), per_pod);
    let stat_ids: BTreeSet<String> = listed.into_iter().map(|a| a.id).collect();
    assert_eq!(stat_ids, per_pod);

    // The layer answers ListContainerStats itself, whatever the filter; a request it cannot
    // read (compressed) goes on to tonic.
    use prost::Message;
    let router = Router::default();
    let request = cri::ListContainerStatsRequest {
        filter: Some(cri::ContainerStatsFilter {
            pod_sandbox_id: pods[2].clone(),
            ..Default::default()
        }),
    }
    .encode_to_vec();
    let (status, body, grpc_status) =
        through_layer(&crius, &router, "ListContainerStats", &request, false).await;
    assert_eq!(status, http::StatusCode::OK);
    assert_eq!(grpc_status.as_deref(), Some("0"));
    let answer = cri::ListContainerStatsResponse::decode(unframed(&body)).unwrap();
    assert_eq!(answer.stats.len(), 50);
    assert_eq!(router.0.load(std::sync::atomic::Ordering::SeqCst), 0);
    let (status, _, _) = through_layer(&crius, &router, "ListContainerStats", &request, true).await;
    assert_eq!(status, http::StatusCode::NO_CONTENT);
    assert_eq!(router.0.load(std::sync::atomic::Ordering::SeqCst), 1);
}
