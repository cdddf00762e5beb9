//! End to end: a real gRPC client drives crius over its socket on a private containerd.
//! Needs root and the packages from `scripts/install-deps` (`scripts/test` runs it).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use conformance::harness::containerd::{Containerd, ContainerdOptions};
use conformance::harness::crius::Crius;
use conformance::harness::images::Images;
use conformance::harness::pods;
use conformance::runner::connect;
use cri_api::v1 as cri;
use cri_api::v1::image_service_client::ImageServiceClient;
use cri_api::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

const BUSYBOX: &str = "localhost/crius/busybox:1";
const NAMESPACE: &str = "crius";

struct Env {
    crius: Crius,
    containerd: Containerd,
    rt: RuntimeServiceClient<Channel>,
    img: ImageServiceClient<Channel>,
    logs: tempfile::TempDir,
}

async fn env() -> Result<Env> {
    let containerd = Containerd::start(ContainerdOptions::default())?;
    let images = Images::get()?;
    images.import(&containerd, NAMESPACE, BUSYBOX)?;
    let crius = Crius::start(None, containerd.socket(), &[])?;
    let channel = connect::channel(&crius.endpoint()).await?;
    Ok(Env {
        rt: connect::runtime_client(channel.clone()),
        img: connect::image_client(channel),
        crius,
        containerd,
        logs: tempfile::tempdir()?,
    })
}

impl Env {
    async fn reconnect(&mut self) -> Result<()> {
        let channel = connect::channel(&self.crius.endpoint()).await?;
        self.rt = connect::runtime_client(channel.clone());
        self.img = connect::image_client(channel);
        Ok(())
    }

    fn sandbox_config(&self, name: &str) -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.to_string(),
                uid: format!("uid-{name}"),
                namespace: "default".to_string(),
                attempt: 0,
            }),
            hostname: format!("host-{name}"),
            log_directory: self.logs.path().join(name).display().to_string(),
            labels: HashMap::from([("app".to_string(), name.to_string())]),
            annotations: HashMap::from([("note".to_string(), format!("pod {name}"))]),
            linux: Some(cri::LinuxPodSandboxConfig::default()),
            ..Default::default()
        }
    }

    async fn run_sandbox(&mut self, name: &str) -> Result<(String, cri::PodSandboxConfig)> {
        let config = self.sandbox_config(name);
        let id = pods::run_pod(&mut self.rt, &config).await?;
        Ok((id, config))
    }

    async fn create(
        &mut self,
        sandbox: &str,
        sandbox_config: &cri::PodSandboxConfig,
        name: &str,
        command: &[&str],
        resources: Option<cri::LinuxContainerResources>,
    ) -> Result<String> {
        let mut config = pods::container_config(name, BUSYBOX, command);
        config.labels = HashMap::from([("container".to_string(), name.to_string())]);
        config.annotations = HashMap::from([("c-note".to_string(), "x".to_string())]);
        config.linux = Some(cri::LinuxContainerConfig {
            resources,
            security_context: None,
        });
        Ok(pods::create(&mut self.rt, sandbox, sandbox_config, config).await?)
    }

    /// The gRPC status of a CreateContainer (`sleep 60`) that must fail because of `why`.
    async fn create_fails(
        &mut self,
        sandbox: &str,
        sandbox_config: &cri::PodSandboxConfig,
        name: &str,
        why: &str,
    ) -> Result<tonic::Status> {
        match self
            .create(sandbox, sandbox_config, name, &["sleep", "60"], None)
            .await
        {
            Ok(id) => anyhow::bail!("create {name:?} made {id} despite {why}"),
            Err(err) => err
                .downcast::<tonic::Status>()
                .map_err(|e| e.context(format!("create {name:?} with {why}: not a gRPC status"))),
        }
    }

    /// The ids of crius's containers in containerd (sandboxes' included), sorted.
    fn containerd_records(&self) -> Result<Vec<String>> {
        let mut ids: Vec<String> = self
            .containerd
            .ctr_ns(NAMESPACE, ["containers", "ls", "-q"])?
            .lines()
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_string)
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// How many of crius's snapshots are active (rootfs of containers), not committed layers.
    fn active_snapshots(&self) -> Result<usize> {
        Ok(self
            .containerd
            .ctr_ns(NAMESPACE, ["snapshots", "ls"])?
            .lines()
            .filter(|l| l.contains("Active"))
            .count())
    }

    async fn status(&mut self, id: &str) -> Result<cri::ContainerStatus> {
        self.rt
            .container_status(cri::ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .context("no status")
    }

    async fn wait_state(
        &mut self,
        id: &str,
        state: cri::ContainerState,
        within: Duration,
    ) -> Result<cri::ContainerStatus> {
        let deadline = Instant::now() + within;
        loop {
            let status = self.status(id).await?;
            if status.state == state as i32 {
                return Ok(status);
            }
            ensure!(
                Instant::now() < deadline,
                "container {id} is {:?}, wanted {state:?}",
                status.state
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn sandbox_state(&mut self, id: &str) -> Result<i32> {
        Ok(self
            .rt
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.to_string(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .context("no sandbox status")?
            .state)
    }
}

fn code<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> tonic::Code {
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(status) => status.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_lifecycle_with_exec_logs_and_stop() -> Result<()> {
    let mut env = env().await?;
    let (sandbox, sandbox_config) = env.run_sandbox("life").await?;
    assert_eq!(
        env.sandbox_state(&sandbox).await?,
        cri::PodSandboxState::SandboxReady as i32
    );

    let long = "x".repeat(40 * 1024);
    let script = format!("echo out-line; echo err-line >&2; echo {long}; trap 'exit 7' TERM; while true; do sleep 0.1; done");
    let id = env
        .create(
            &sandbox,
            &sandbox_config,
            "app",
            &["sh", "-c", &script],
            None,
        )
        .await?;
    let created = env.status(&id).await?;
    assert_eq!(created.state, cri::ContainerState::ContainerCreated as i32);
    assert!(created.created_at > 0);
    assert_eq!(
        created.metadata.as_ref().map(|m| m.name.as_str()),
        Some("app")
    );
    assert_eq!(
        created.labels.get("container").map(String::as_str),
        Some("app")
    );

    env.rt
        .start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await?;
    let running = env.status(&id).await?;
    assert_eq!(running.state, cri::ContainerState::ContainerRunning as i32);
    assert!(running.started_at >= running.created_at);

    // ListContainers reflects the state and honours filters.
    let listed = env
        .rt
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                pod_sandbox_id: sandbox.clone(),
                state: Some(cri::ContainerStateValue {
                    state: cri::ContainerState::ContainerRunning as i32,
                }),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .containers;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);

    // Pod-level resources from kubelet's in-place resize are recorded and reported.
    env.rt
        .update_pod_sandbox_resources(cri::UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: sandbox.clone(),
            overhead: None,
            resources: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 300 << 20,
                cpu_shares: 512,
                ..Default::default()
            }),
        })
        .await?;
    let pod_verbose = env
        .rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: sandbox.clone(),
            verbose: true,
        })
        .await?
        .into_inner();
    let pod_info: serde_json::Value = serde_json::from_str(
        pod_verbose
            .info
            .get("info")
            .context("no pod verbose info")?,
    )?;
    assert_eq!(
        pod_info["podResources"]["resources"]["memory_limit_in_bytes"],
        300 << 20,
        "{}",
        pod_info["podResources"]
    );
    let unknown = env
        .rt
        .update_pod_sandbox_resources(cri::UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: "no-such-pod".to_string(),
            overhead: None,
            resources: None,
        })
        .await;
    assert_eq!(code(unknown), tonic::Code::NotFound);

    // Resources updated on the running container show in its verbose spec too.
    env.rt
        .update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 200 << 20,
                ..Default::default()
            }),
            windows: None,
            annotations: HashMap::new(),
        })
        .await?;

    // Verbose status carries the full OCI spec runc got (kept on disk, not in memory).
    let verbose = env
        .rt
        .container_status(cri::ContainerStatusRequest {
            container_id: id.clone(),
            verbose: true,
        })
        .await?
        .into_inner();
    let info: serde_json::Value =
        serde_json::from_str(verbose.info.get("info").context("no verbose info")?)?;
    let spec = &info["runtimeSpec"];
    assert_eq!(
        spec["process"]["args"][0], "sh",
        "verbose runtimeSpec has the process"
    );
    assert_eq!(
        spec["linux"]["resources"]["memory"]["limit"],
        200 << 20,
        "verbose runtimeSpec has the updated memory limit: {}",
        spec["linux"]["resources"]
    );
    assert!(
        spec["linux"]["resources"]["devices"].is_array(),
        "the device rules stay: {}",
        spec["linux"]["resources"]
    );
    let namespaces = spec["linux"]["namespaces"]
        .as_array()
        .context("namespaces")?;
    assert!(
        namespaces.iter().any(|n| n["type"] == "network"),
        "verbose runtimeSpec has the namespaces"
    );

    // ExecSync: stdout, stderr, exit code; a timeout answers DeadlineExceeded.
    let exec = env
        .rt
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "echo hi; echo oops >&2; hostname; exit 3".into(),
            ],
            timeout: 10,
        })
        .await?
        .into_inner();
    assert_eq!(String::from_utf8_lossy(&exec.stdout), "hi\nhost-life\n");
    assert_eq!(String::from_utf8_lossy(&exec.stderr), "oops\n");
    assert_eq!(exec.exit_code, 3);
    let timed_out = env
        .rt
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec!["sleep".into(), "30".into()],
            timeout: 1,
        })
        .await;
    assert_eq!(code(timed_out), tonic::Code::DeadlineExceeded);

    // The CRI log: both streams, RFC3339Nano timestamps, the long line split P..F.
    let log_path = env.logs.path().join("life").join("app.log");
    let deadline = Instant::now() + Duration::from_secs(5);
    let log = loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if text.lines().count() >= 5 || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let line =
        regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) (P|F) ")?;
    for l in log.lines() {
        assert!(line.is_match(l), "bad CRI log line: {:.80}", l);
    }
    assert!(log.contains(" stdout F out-line"), "{log:.300}");
    assert!(log.contains(" stderr F err-line"), "{log:.300}");
    assert!(
        log.lines().any(|l| l.contains(" stdout P xxx")),
        "long line must be split with P"
    );
    let joined: String = log
        .lines()
        .filter(|l| l.contains(" stdout ") && l.ends_with('x'))
        .map(|l| l.splitn(4, ' ').nth(3).unwrap_or_default())
        .collect();
    assert_eq!(joined.len(), long.len());

    // Stop: SIGTERM → the trap exits 7; reason Error, finished time set.
    env.rt
        .stop_container(cri::StopContainerRequest {
            container_id: id.clone(),
            timeout: 10,
        })
        .await?;
    let stopped = env.status(&id).await?;
    assert_eq!(stopped.state, cri::ContainerState::ContainerExited as i32);
    assert_eq!(stopped.exit_code, 7);
    assert_eq!(stopped.reason, "Error");
    assert!(stopped.finished_at >= stopped.started_at);
    // Idempotent stop.
    env.rt
        .stop_container(cri::StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await?;

    // A container that completes by itself.
    let done = env
        .create(
            &sandbox,
            &sandbox_config,
            "done",
            &["sh", "-c", "exit 0"],
            None,
        )
        .await?;
    env.rt
        .start_container(cri::StartContainerRequest {
            container_id: done.clone(),
        })
        .await?;
    let exited = env
        .wait_state(
            &done,
            cri::ContainerState::ContainerExited,
            Duration::from_secs(10),
        )
        .await?;
    assert_eq!(exited.exit_code, 0);
    assert_eq!(exited.reason, "Completed");

    // image_ref equals the image id ListImages reports.
    let images = env
        .img
        .list_images(cri::ListImagesRequest { filter: None })
        .await?
        .into_inner()
        .images;
    let busybox = images
        .iter()
        .find(|i| i.repo_tags.iter().any(|t| t == BUSYBOX))
        .context("busybox listed")?;
    assert_eq!(exited.image_ref, busybox.id);

    env.rt
        .remove_container(cri::RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await?;
    assert_eq!(
        code(
            env.rt
                .container_status(cri::ContainerStatusRequest {
                    container_id: id.clone(),
                    verbose: false
                })
                .await
        ),
        tonic::Code::NotFound
    );
    env.rt
        .remove_container(cri::RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await?;

    env.rt
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await?;
    assert_eq!(
        env.sandbox_state(&sandbox).await?,
        cri::PodSandboxState::SandboxNotready as i32
    );
    env.rt
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await?;
    let left = env
        .rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items;
    assert!(left.is_empty(), "{left:?}");
    assert!(env
        .rt
        .list_containers(cri::ListContainersRequest { filter: None })
        .await?
        .into_inner()
        .containers
        .is_empty());
    let leftover = env.containerd_records()?;
    assert!(
        leftover.is_empty(),
        "containers left in containerd: {leftover:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oom_killed_container_reports_oomkilled() -> Result<()> {
    let mut env = env().await?;
    let (sandbox, config) = env.run_sandbox("oom").await?;
    let limits = cri::LinuxContainerResources {
        memory_limit_in_bytes: 16 * 1024 * 1024,
        ..Default::default()
    };
    // Grow a shell variable until the kernel kills the process at the cgroup's limit.
    let id = env
        .create(
            &sandbox,
            &config,
            "hog",
            &["sh", "-c", "x=a; while true; do x=$x$x; done"],
            Some(limits),
        )
        .await?;
    env.rt
        .start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await?;
    let exited = env
        .wait_state(
            &id,
            cri::ContainerState::ContainerExited,
            Duration::from_secs(30),
        )
        .await?;
    assert_eq!(exited.reason, "OOMKilled", "status: {exited:?}");
    assert_eq!(exited.exit_code, 137);
    env.rt
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox,
        })
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_codes() -> Result<()> {
    let mut env = env().await?;
    let missing_metadata = env
        .rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(cri::PodSandboxConfig::default()),
            runtime_handler: String::new(),
        })
        .await;
    assert_eq!(code(missing_metadata), tonic::Code::InvalidArgument);
    let unknown = env
        .rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: "f00dfeed".into(),
            verbose: false,
        })
        .await;
    assert_eq!(code(unknown), tonic::Code::NotFound);
    assert_eq!(
        code(
            env.rt
                .container_status(cri::ContainerStatusRequest {
                    container_id: "nope".into(),
                    verbose: false
                })
                .await
        ),
        tonic::Code::NotFound
    );
    let handler = env
        .rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(env.sandbox_config("handler")),
            runtime_handler: "kata".into(),
        })
        .await;
    assert_eq!(code(handler), tonic::Code::InvalidArgument);

    let (sandbox, config) = env.run_sandbox("dup").await?;
    let again = env
        .rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await;
    assert_eq!(code(again), tonic::Code::AlreadyExists);
    env.create(&sandbox, &config, "c", &["sleep", "60"], None)
        .await?;
    let status = env
        .create_fails(&sandbox, &config, "c", "a duplicate container name")
        .await?;
    assert_eq!(status.code(), tonic::Code::AlreadyExists);
    let missing_image = env
        .rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: "noimg".into(),
                    attempt: 0,
                }),
                image: Some(cri::ImageSpec {
                    image: "localhost/nothing/here:1".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            sandbox_config: Some(config.clone()),
        })
        .await;
    assert_eq!(code(missing_image), tonic::Code::NotFound);

    // containerd down: calls that need it answer Unavailable; crius recovers when it returns.
    let (other, other_config) = env.run_sandbox("while-down").await?;
    env.containerd.stop()?;
    let status = env
        .create_fails(&other, &other_config, "x", "containerd down")
        .await?;
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    // Hot reads are answered from memory meanwhile.
    let listed = env
        .rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items;
    assert_eq!(listed.len(), 2);
    env.containerd.start_again()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match env
            .create(&other, &other_config, "x", &["sleep", "60"], None)
            .await
        {
            Ok(_) => break,
            Err(e) => ensure!(
                Instant::now() < deadline,
                "crius did not recover after containerd came back: {e:#}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for id in [sandbox, other] {
        env.rt
            .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
            .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_sigkill_and_nothing_leaks_after_removal() -> Result<()> {
    let mut env = env().await?;
    let (sandbox, config) = env.run_sandbox("survivor").await?;
    let running = env
        .create(
            &sandbox,
            &config,
            "runner",
            &[
                "sh",
                "-c",
                "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done",
            ],
            None,
        )
        .await?;
    env.rt
        .start_container(cri::StartContainerRequest {
            container_id: running.clone(),
        })
        .await?;
    let created = env
        .create(&sandbox, &config, "idle", &["sleep", "1"], None)
        .await?;
    // `cat` with its stdin open runs until that stdin ends, which must not be when crius dies.
    let mut reader_config = pods::container_config("reader", BUSYBOX, &["cat"]);
    reader_config.stdin = true;
    let reader = pods::create(&mut env.rt, &sandbox, &config, reader_config).await?;
    env.rt
        .start_container(cri::StartContainerRequest {
            container_id: reader.clone(),
        })
        .await?;
    let before_sandboxes = env
        .rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items;
    let before_running = env.status(&running).await?;
    let before_created = env.status(&created).await?;

    // A half-made object: a labelled container crius has no record of, as a crash mid-create leaves.
    env.containerd.ctr_ns(
        NAMESPACE,
        [
            "containers",
            "create",
            "--label",
            "io.crius.managed=true",
            "--label",
            "io.crius.kind=container",
            BUSYBOX,
            "half-made",
        ],
    )?;

    env.crius.kill9()?;
    // What a crash can leave of crius's own records: temporary files of writes cut short,
    // and a spec whose container record is gone (killed between removing the two).
    let specs = env.crius.root().join("container-specs");
    let orphan_spec = specs.join(format!("{}.json", "0f".repeat(32)));
    std::fs::write(&orphan_spec, b"{}")?;
    let attachments = env.crius.state().join("cni-results");
    std::fs::create_dir_all(&attachments)?;
    let half_written = [
        specs.join(format!(".{running}.99.json.tmp")),
        env.crius
            .root()
            .join("containers")
            .join(format!(".{created}.98.json.tmp")),
        attachments.join(format!(".{sandbox}.97.json.tmp")),
    ];
    for file in &half_written {
        std::fs::write(file, b"{\"half")?;
    }
    // The FIFO directory of a container that never got made.
    let orphan_io = env.crius.state().join("containers").join("1e".repeat(32));
    std::fs::create_dir_all(&orphan_io)?;
    std::fs::write(orphan_io.join("stdout"), b"")?;
    env.crius.start_again()?;
    env.reconnect().await?;
    let after_sandboxes = env
        .rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items;
    assert_eq!(before_sandboxes, after_sandboxes);
    // crius answers only once recovery is done.
    for file in half_written.iter().chain([&orphan_spec, &orphan_io]) {
        ensure!(!file.exists(), "{} survived recovery", file.display());
    }
    let verbose = env
        .rt
        .container_status(cri::ContainerStatusRequest {
            container_id: running.clone(),
            verbose: true,
        })
        .await?
        .into_inner()
        .info;
    let info: serde_json::Value = serde_json::from_str(verbose.get("info").context("no info")?)?;
    ensure!(
        info["runtimeSpec"]["process"]["args"][0] == "sh",
        "the spec of a live container must survive recovery: {info}"
    );

    let after_running = env.status(&running).await?;
    assert_eq!(before_running, after_running);
    assert_eq!(before_created, env.status(&created).await?);
    let ids = env.containerd_records()?;
    assert!(
        !ids.iter().any(|id| id.contains("half-made")),
        "the half-made container must be gone: {ids:?}"
    );

    // Output written after the restart still reaches the same log file.
    let log_path = env.logs.path().join("survivor").join("runner.log");
    let lines_at_restart = std::fs::read_to_string(&log_path)?.lines().count();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.lines().count() > lines_at_restart + 3 {
            assert!(log.contains("stdout F tick 0"), "{log}");
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "no new log lines after restart: {log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reader_status = env.status(&reader).await?;
    ensure!(
        reader_status.state == cri::ContainerState::ContainerRunning as i32,
        "cat with stdin open must outlive crius's restart: {reader_status:?}"
    );
    // Writable-layer sizes come back without a container start: a round of the layer
    // measurement runs at start-up (the periodic one comes only after 10 s).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let layer = env
            .rt
            .container_stats(cri::ContainerStatsRequest {
                container_id: running.clone(),
            })
            .await?
            .into_inner()
            .stats
            .and_then(|s| s.writable_layer);
        if layer.as_ref().is_some_and(|l| l.used_bytes.is_some()) {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "no writable-layer size 5 s after the restart: {layer:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exec = env
        .rt
        .exec_sync(cri::ExecSyncRequest {
            container_id: running.clone(),
            cmd: vec!["true".into()],
            timeout: 10,
        })
        .await?
        .into_inner();
    assert_eq!(exec.exit_code, 0);

    pods::stop_and_remove_pod(&mut env.rt, &sandbox).await?;

    // Nothing of ours is left: containers, tasks, snapshots, mounts, cgroups.
    assert!(env.containerd_records()?.is_empty());
    assert!(env
        .containerd
        .ctr_ns(NAMESPACE, ["tasks", "ls", "-q"])?
        .trim()
        .is_empty());
    let snapshots = env.containerd.ctr_ns(NAMESPACE, ["snapshots", "ls"])?;
    assert!(
        !snapshots.contains("Active"),
        "active snapshots left: {snapshots}"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    for id in [&sandbox, &running, &created] {
        assert!(!mounts.contains(id.as_str()), "a mount of {id} is left");
        // Every hierarchy: each v1 controller and the unified one, at any depth.
        let cgroups =
            conformance::harness::util::cgroups_named(std::path::Path::new("/sys/fs/cgroup"), id)?;
        assert!(cgroups.is_empty(), "cgroups of {id} are left: {cgroups:?}");
    }
    for dir in [
        env.crius.state().join("sandboxes"),
        env.crius.state().join("containers"),
        env.crius.root().join("sandboxes"),
        env.crius.root().join("containers"),
        specs,
        attachments,
    ] {
        let leftovers = conformance::harness::util::entries_of(&dir)?;
        assert!(leftovers.is_empty(), "state left: {leftovers:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_namespace_pod_maps_root_to_the_given_host_range() -> Result<()> {
    let mut env = env().await?;
    let mapping = cri::IdMapping {
        host_id: 200_000,
        container_id: 0,
        length: 65_536,
    };
    let namespaces = cri::NamespaceOption {
        userns_options: Some(cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            uids: vec![mapping],
            gids: vec![mapping],
        }),
        ..Default::default()
    };
    let net = env.crius.write_cni_conflist("userns", None)?;
    let mut config = env.sandbox_config("userns");
    config.linux = Some(cri::LinuxPodSandboxConfig {
        security_context: Some(cri::LinuxSandboxSecurityContext {
            namespace_options: Some(namespaces.clone()),
            ..Default::default()
        }),
        ..Default::default()
    });
    let sandbox = pods::run_pod(&mut env.rt, &config).await?;
    // The pod's network namespace is the pause process's own (it belongs to the pod's user
    // namespace) and CNI attached it: the pod has an address on the test bridge.
    let ip = env
        .rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: sandbox.clone(),
            verbose: false,
        })
        .await?
        .into_inner()
        .status
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .unwrap_or_default();
    let prefix = net.subnet.rsplit_once('.').map_or("", |(p, _)| p);
    assert!(
        !ip.is_empty() && ip.starts_with(prefix),
        "pod ip {ip:?} not in {}",
        net.subnet
    );
    let container = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "mapped".to_string(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: BUSYBOX.to_string(),
            ..Default::default()
        }),
        command: vec!["sleep".into(), "3600".into()],
        log_path: "mapped.log".to_string(),
        linux: Some(cri::LinuxContainerConfig {
            resources: None,
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(namespaces),
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    let id = env
        .rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(container),
            sandbox_config: Some(config),
        })
        .await?
        .into_inner()
        .container_id;
    env.rt
        .start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await?;
    let exec = env
        .rt
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "cat /proc/self/uid_map /proc/self/gid_map; id -u; ls /sys/class/net".into(),
            ],
            timeout: 10,
        })
        .await?
        .into_inner();
    let out = String::from_utf8_lossy(&exec.stdout);
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(
        words,
        ["0", "200000", "65536", "0", "200000", "65536", "0", "eth0", "lo"],
        "stdout {out:?} stderr {:?}",
        String::from_utf8_lossy(&exec.stderr)
    );
    // An idmapped volume mount needs runc >= 1.2: refused clearly, not mounted unmapped.
    let volume = tempfile::tempdir()?;
    let idmapped = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "idmapped".to_string(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: BUSYBOX.to_string(),
            ..Default::default()
        }),
        command: vec!["true".into()],
        mounts: vec![cri::Mount {
            container_path: "/data".to_string(),
            host_path: volume.path().display().to_string(),
            uid_mappings: vec![mapping],
            gid_mappings: vec![mapping],
            ..Default::default()
        }],
        ..Default::default()
    };
    let refused = env
        .rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(idmapped),
            sandbox_config: Some(env.sandbox_config("userns")),
        })
        .await;
    let status = refused.err().context("an idmapped mount was accepted")?;
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("/data"), "{status:?}");
    pods::stop_and_remove_pod(&mut env.rt, &sandbox).await?;
    Ok(())
}

/// CreateContainer writes containerd's container record before it prepares the rootfs
/// snapshot; when the snapshot cannot be prepared (here: the image's top layer snapshot was
/// removed behind crius's back), the record is deleted again, no snapshot is left, the name
/// is free, and a retry once the image is whole again succeeds under the same name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_rolls_back_when_the_rootfs_cannot_be_prepared() -> Result<()> {
    let mut env = env().await?;
    let (sandbox, config) = env.run_sandbox("no-rootfs").await?;
    let info = env
        .img
        .image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: BUSYBOX.into(),
                ..Default::default()
            }),
            verbose: true,
        })
        .await?
        .into_inner()
        .info;
    let verbose: serde_json::Value =
        serde_json::from_str(info.get("info").context("no verbose info")?)?;
    let chain_id = verbose["chainID"]
        .as_str()
        .context("no chainID in the verbose info")?
        .to_string();
    // A first create reads the image's user files (through a view of the same snapshot)
    // and crius keeps them; its container goes again, so the image's snapshot has no child.
    let first = env
        .create(&sandbox, &config, "first", &["sleep", "60"], None)
        .await?;
    env.rt
        .remove_container(cri::RemoveContainerRequest {
            container_id: first,
        })
        .await?;
    let records_before = env.containerd_records()?;
    let active_before = env.active_snapshots()?;
    env.containerd
        .ctr_ns(NAMESPACE, ["snapshots", "rm", &chain_id])
        .with_context(|| format!("removing the image's snapshot {chain_id}"))?;

    let status = env
        .create_fails(&sandbox, &config, "c", "the image's snapshot gone")
        .await?;
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    assert!(
        status.message().contains(&chain_id),
        "the message names the image's snapshot: {status:?}"
    );
    assert_eq!(
        env.containerd_records()?,
        records_before,
        "containerd record rolled back"
    );
    assert_eq!(
        env.active_snapshots()?,
        active_before,
        "no rootfs snapshot left"
    );
    let listed = env
        .rt
        .list_containers(cri::ListContainersRequest { filter: None })
        .await?
        .into_inner()
        .containers;
    assert!(
        listed.is_empty(),
        "crius lists a failed container: {listed:?}"
    );

    // The image made whole again (its layer unpacked anew), the same name is free.
    Images::get()?.import(&env.containerd, NAMESPACE, BUSYBOX)?;
    let id = env
        .create(&sandbox, &config, "c", &["sleep", "60"], None)
        .await?;
    ensure!(
        env.containerd_records()?.contains(&id),
        "the retry's record is in containerd"
    );
    env.rt
        .remove_container(cri::RemoveContainerRequest { container_id: id })
        .await?;
    pods::stop_and_remove_pod(&mut env.rt, &sandbox).await?;
    Ok(())
}

/// SIGTERM while crius is still starting (here: waiting for a containerd that is not there)
/// stops it at once and cleanly, and it takes its socket with it; before, the signal killed
/// it outright and left the socket behind.
#[test]
fn sigterm_while_waiting_for_the_backend_exits_cleanly() -> Result<()> {
    let nowhere = tempfile::tempdir()?;
    let mut crius = Crius::start(None, &nowhere.path().join("containerd.sock"), &[])?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !crius.log()?.contains("waiting for the backend") {
        ensure!(
            Instant::now() < deadline,
            "crius never said it waits for the backend:\n{}",
            crius.log()?
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let begin = Instant::now();
    let status = crius.stop()?.context("crius was not running")?;
    let took = begin.elapsed();
    ensure!(
        status.success(),
        "crius exited with {status} on SIGTERM:\n{}",
        crius.log()?
    );
    ensure!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
    ensure!(
        !crius.socket().exists(),
        "{} is still there after crius stopped",
        crius.socket().display()
    );
    ensure!(crius.log()?.contains("stopped before serving"));
    Ok(())
}
