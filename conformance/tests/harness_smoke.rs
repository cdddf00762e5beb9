//! Smoke test of the test harness itself: real private containerd, registry and dockerd,
//! images in and out, and nothing left behind afterwards. Needs root and scripts/install-deps.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use conformance::harness::{
    images, mounts_under, pid_alive, require_root, Containerd, ContainerdOptions, Dockerd,
    DockerdOptions, Images, Registry,
};
use sha2::{Digest, Sha256};

#[test]
fn containerd_and_registry() -> Result<()> {
    require_root()?;
    let imgs = Images::get()?;
    let mut ctd = Containerd::start(ContainerdOptions::default())?;
    let mut reg = Registry::start(true)?;
    let dir = ctd.dir().to_path_buf();
    let pid = ctd.pid();
    let reg_dir = reg.dir().to_path_buf();
    let reg_pid = reg.pid().context("registry pid")?;
    ensure!(ctd.cri_endpoint() == format!("unix://{}", ctd.socket().display()));

    // a CNI network for containerd's CRI
    let net = ctd.write_cni_conflist("smoke", None)?;
    ensure!(
        net.conflist.starts_with(ctd.cni_conf_dir()),
        "conflist outside the conf dir"
    );
    ensure!(
        net.subnet.starts_with("10.88.") && net.subnet.ends_with(".0/24"),
        "subnet {}",
        net.subnet
    );
    ensure!(
        net.bridge.len() <= 15,
        "bridge name too long: {}",
        net.bridge
    );

    // import into k8s.io, as containerd's own CRI needs
    imgs.import(&ctd, "k8s.io", images::BUSYBOX)?;
    imgs.import(&ctd, "k8s.io", images::PAUSE)?;
    let busybox = imgs.image(images::BUSYBOX)?;
    let ls = ctd.ctr_ns("k8s.io", ["images", "ls"])?;
    for r in [
        images::BUSYBOX,
        images::BUSYBOX_LATEST,
        images::BUSYBOX_2,
        images::PAUSE,
    ] {
        ensure!(ls.contains(r), "{r} missing from ctr images ls:\n{ls}");
    }
    ensure!(
        ls.contains(&busybox.digest),
        "busybox digest {} missing:\n{ls}",
        busybox.digest
    );
    let check = ctd.ctr_ns("k8s.io", ["images", "check"])?;
    ensure!(
        check
            .lines()
            .filter(|l| l.starts_with(images::BUSYBOX))
            .all(|l| l.trim_end().ends_with("true")),
        "busybox not unpacked:\n{check}"
    );

    // push to the registry (auth) with the digest preserved
    let pushed = imgs.push(&reg, images::BUSYBOX, "crius/busybox:1")?;
    ensure!(pushed == format!("{}/crius/busybox:1", reg.addr()));
    let raw = skopeo_raw_manifest(&reg, &pushed)?;
    ensure!(
        sha256(&raw) == busybox.digest,
        "registry changed the busybox digest"
    );
    let multi = imgs.image(images::MULTIARCH)?;
    let pushed_multi = imgs.push(&reg, images::MULTIARCH, "crius/multiarch:1")?;
    ensure!(
        sha256(&skopeo_raw_manifest(&reg, &pushed_multi)?) == multi.digest,
        "index digest changed"
    );
    imgs.push(&reg, images::LAYERS, "crius/layers:1")?;

    // pull through containerd from the registry; the access log shows the blob downloads
    let mark = reg.mark()?;
    let (u, p) = reg.credentials().context("credentials")?;
    ctd.ctr_ns(
        "smoke",
        [
            "images",
            "pull",
            "--plain-http",
            "--user",
            &format!("{u}:{p}"),
            &reg.image_ref("crius/layers:1"),
        ],
    )?;
    let gets = reg.blob_gets_since("crius/layers", mark)?;
    ensure!(
        gets >= 2,
        "expected blob GETs for crius/layers, got {gets}:\n{}",
        reg.log()?
    );

    // a running container, so shutdown has tasks, shims and mounts to clean
    imgs.import(&ctd, "smoke", images::BUSYBOX)?;
    ctd.ctr_ns(
        "smoke",
        [
            "run",
            "-d",
            images::BUSYBOX,
            "smoke-sleeper",
            "sleep",
            "1000",
        ],
    )?;
    let tasks = ctd.ctr_ns("smoke", ["tasks", "ls"])?;
    ensure!(
        tasks.contains("smoke-sleeper") && tasks.contains("RUNNING"),
        "task not running:\n{tasks}"
    );
    ensure!(
        !mounts_under(&dir)?.is_empty(),
        "expected the container rootfs mounted under {}",
        dir.display()
    );
    // and one whose shim is killed behind containerd's back
    ctd.ctr_ns(
        "smoke",
        [
            "run",
            "-d",
            images::BUSYBOX,
            "smoke-orphan",
            "sleep",
            "1000",
        ],
    )?;

    ctd.shutdown()?;
    reg.shutdown()?;

    ensure!(
        mounts_under(&dir)?.is_empty(),
        "still mounted: {:?}",
        mounts_under(&dir)?
    );
    ensure!(!pid_alive(pid), "containerd pid {pid} still alive");
    ensure!(!dir.exists(), "{} still exists", dir.display());
    ensure!(
        !Path::new("/sys/class/net").join(&net.bridge).exists(),
        "bridge {} left",
        net.bridge
    );
    ensure!(!pid_alive(reg_pid), "registry pid {reg_pid} still alive");
    ensure!(!reg_dir.exists(), "{} still exists", reg_dir.display());
    ensure!(
        conformance::harness::util::processes_mentioning(&dir.to_string_lossy()).is_empty(),
        "processes mentioning {} left",
        dir.display()
    );
    Ok(())
}

#[test]
fn dockerd_runs_test_images() -> Result<()> {
    require_root()?;
    let imgs = Images::get()?;
    let mut dk = Dockerd::start(DockerdOptions::default())?;
    let dir = dk.dir().to_path_buf();
    let pid = dk.pid();
    for r in [images::BUSYBOX, images::USER, images::LAYERS] {
        dk.load_image(imgs.tar(r)?)?;
    }
    let out = dk.docker(["run", "--rm", "--entrypoint", "id", images::USER])?;
    ensure!(
        out.contains("uid=1234(crius) gid=1234(crius)") && out.contains("5678(extra)"),
        "id: {out}"
    );
    let out = dk.docker(["run", "--rm", images::USER])?;
    ensure!(
        out.trim() == "entrypoint cmd-default",
        "entrypoint+cmd: {out}"
    );
    let out = dk.docker([
        "run",
        "--rm",
        images::LAYERS,
        "sh",
        "-c",
        "cat /layers/a /layers/c /layers/d; ls /layers/dir",
    ])?;
    ensure!(
        out == "a from layer 3\nc from layer 3\nd from layer 5\ny\n",
        "layers: {out:?}"
    );
    // a container left running for shutdown to clean
    dk.docker([
        "run",
        "-d",
        "--name",
        "sleeper",
        images::BUSYBOX,
        "sleep",
        "1000",
    ])?;
    dk.shutdown()?;
    ensure!(
        mounts_under(&dir)?.is_empty(),
        "still mounted: {:?}",
        mounts_under(&dir)?
    );
    ensure!(!pid_alive(pid), "dockerd pid {pid} still alive");
    ensure!(!dir.exists(), "{} still exists", dir.display());
    Ok(())
}

#[test]
fn image_metadata() -> Result<()> {
    let imgs = Images::get()?;
    for r in images::ALL_REFS {
        let i = imgs.image(r)?;
        ensure!(
            i.digest.starts_with("sha256:") && i.config_digest.starts_with("sha256:"),
            "{r}: {i:?}"
        );
        ensure!(imgs.tar(r)?.is_file(), "{r}: archive missing");
    }
    ensure!(imgs.image(images::LAYERS)?.layers.len() == 5);
    ensure!(imgs.image(images::USER)?.layers.len() == 2);
    ensure!(imgs.image(images::MULTIARCH)?.platforms.len() == 2);
    let large = std::fs::metadata(imgs.tar(images::LARGE)?)?.len();
    ensure!(
        large >= 50 * 1024 * 1024,
        "large archive only {large} bytes"
    );
    // every image shares the busybox base layer
    let base = &imgs.image(images::BUSYBOX)?.layers[0];
    for r in images::ALL_REFS {
        ensure!(
            &imgs.image(r)?.layers[0] == base,
            "{r} does not start with the busybox layer"
        );
    }
    Ok(())
}

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

fn skopeo_raw_manifest(reg: &Registry, reference: &str) -> Result<Vec<u8>> {
    let mut cmd = std::process::Command::new("skopeo");
    cmd.args(["inspect", "--raw", "--tls-verify=false"]);
    if let Some((u, p)) = reg.credentials() {
        cmd.arg("--creds").arg(format!("{u}:{p}"));
    }
    cmd.arg(format!("docker://{reference}"));
    Ok(conformance::harness::util::run(&mut cmd, std::time::Duration::from_secs(60))?.stdout)
}

/// containerd dies (SIGKILL) with a container running: shutdown still kills the shim and the
/// container, unmounts the rootfs and removes everything.
#[test]
fn containerd_crash_cleanup() -> Result<()> {
    require_root()?;
    let imgs = Images::get()?;
    let mut ctd = Containerd::start(ContainerdOptions::default())?;
    let dir = ctd.dir().to_path_buf();
    imgs.import(&ctd, "crash", images::BUSYBOX)?;
    ctd.ctr_ns(
        "crash",
        [
            "run",
            "-d",
            images::BUSYBOX,
            "crash-sleeper",
            "sleep",
            "1000",
        ],
    )?;
    let pid = ctd.pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid)?),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    let procs = conformance::harness::util::processes_mentioning(&dir.to_string_lossy());
    ensure!(!procs.is_empty(), "expected the shim to outlive containerd");
    ctd.shutdown()?;
    ensure!(
        mounts_under(&dir)?.is_empty(),
        "still mounted: {:?}",
        mounts_under(&dir)?
    );
    ensure!(!dir.exists(), "{} still exists", dir.display());
    for p in procs {
        ensure!(!pid_alive(p), "pid {p} (shim or container) still alive");
    }
    Ok(())
}

/// containerd's own CRI with the harness's pause image and conflist: a pod gets an address on
/// the test bridge, its hostPort answers on 127.0.0.1, and shutdown without stopping the pod
/// still removes the netns, bridge and iptables rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_cri_pod_and_leak_cleanup() -> Result<()> {
    use cri_api::v1 as cri;
    use std::collections::HashMap;
    require_root()?;
    let imgs = Images::get()?;
    let mut ctd = Containerd::start(ContainerdOptions::default())?;
    let dir = ctd.dir().to_path_buf();
    imgs.import(&ctd, "k8s.io", images::PAUSE)?;
    imgs.import(&ctd, "k8s.io", images::BUSYBOX)?;
    let net = ctd.write_cni_conflist("cri", None)?;

    let mut rt = cri_client(&ctd.cri_endpoint()).await?;
    // containerd reloads the CNI config live: wait for NetworkReady
    let mut ready = false;
    for _ in 0..100 {
        let st = rt
            .status(cri::StatusRequest { verbose: false })
            .await?
            .into_inner();
        let conds = st.status.map(|s| s.conditions).unwrap_or_default();
        if conds.iter().any(|c| c.r#type == "NetworkReady" && c.status) {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    ensure!(
        ready,
        "containerd's CRI never reported NetworkReady:\n{}",
        ctd.log()?
    );

    let host_port = free_port()?;
    let log_dir = dir.join("pod-logs");
    std::fs::create_dir_all(&log_dir)?;
    let config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "smoke".into(),
            uid: conformance::harness::util::random_hex(16),
            namespace: "harness".into(),
            attempt: 0,
        }),
        hostname: "smoke-pod".into(),
        log_directory: log_dir.to_string_lossy().into_owned(),
        port_mappings: vec![cri::PortMapping {
            protocol: cri::Protocol::Tcp as i32,
            container_port: 8080,
            host_port: i32::from(host_port),
            host_ip: String::new(),
        }],
        ..Default::default()
    };
    let pod = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("RunPodSandbox: {s}\n{}", ctd.log().unwrap_or_default()))?
        .into_inner()
        .pod_sandbox_id;
    let status = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await?
        .into_inner();
    let ip = status
        .status
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .unwrap_or_default();
    let prefix = net.subnet.trim_end_matches("0/24");
    ensure!(
        ip.starts_with(prefix),
        "pod ip {ip:?} not in {}",
        net.subnet
    );

    let container = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata { name: "web".into(), attempt: 0 }),
                image: Some(cri::ImageSpec { image: images::BUSYBOX.into(), ..Default::default() }),
                command: vec![
                    "sh".into(),
                    "-c".into(),
                    "mkdir -p /www && echo hello-from-pod > /www/index.html && exec httpd -f -p 8080 -h /www".into(),
                ],
                log_path: "web.log".into(),
                labels: HashMap::new(),
                ..Default::default()
            }),
            sandbox_config: Some(config),
        })
        .await
        .map_err(|s| anyhow::anyhow!("CreateContainer: {s}"))?
        .into_inner()
        .container_id;
    rt.start_container(cri::StartContainerRequest {
        container_id: container,
    })
    .await?;

    // the pod answers on its own address and on the hostPort at 127.0.0.1
    let body = http_get_retry(&format!("{ip}:8080")).await?;
    ensure!(body.contains("hello-from-pod"), "pod answered {body:?}");
    let body = http_get_retry(&format!("127.0.0.1:{host_port}")).await?;
    ensure!(
        body.contains("hello-from-pod"),
        "hostPort answered {body:?}"
    );
    let nat = conformance::harness::util::run_stdout(
        std::process::Command::new("iptables-save").args(["-t", "nat"]),
        std::time::Duration::from_secs(30),
    )?;
    ensure!(
        nat.contains(&net.name),
        "portmap rules for {} missing:\n{nat}",
        net.name
    );
    ensure!(
        !mounts_under(&dir)?.is_empty(),
        "expected mounts under {}",
        dir.display()
    );
    drop(rt);

    // shut down with the pod still running
    tokio::task::spawn_blocking(move || ctd.shutdown()).await??;
    ensure!(
        mounts_under(&dir)?.is_empty(),
        "still mounted: {:?}",
        mounts_under(&dir)?
    );
    ensure!(!dir.exists(), "{} still exists", dir.display());
    ensure!(
        !Path::new("/sys/class/net").join(&net.bridge).exists(),
        "bridge {} left",
        net.bridge
    );
    let nat = conformance::harness::util::run_stdout(
        std::process::Command::new("iptables-save").args(["-t", "nat"]),
        std::time::Duration::from_secs(30),
    )?;
    ensure!(
        !nat.contains(&net.name),
        "iptables rules for {} left:\n{nat}",
        net.name
    );
    Ok(())
}

async fn cri_client(
    endpoint: &str,
) -> Result<cri_api::v1::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>> {
    let path = std::path::PathBuf::from(endpoint.trim_start_matches("unix://"));
    let connector = tower::service_fn(move |_| {
        let path = path.clone();
        async move {
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                tokio::net::UnixStream::connect(path).await?,
            ))
        }
    });
    let channel = tonic::transport::Endpoint::try_from("http://[::]:0")?
        .connect_with_connector(connector)
        .await
        .with_context(|| format!("connecting to {endpoint}"))?;
    Ok(cri_api::v1::runtime_service_client::RuntimeServiceClient::new(channel))
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// GET / from a loopback or pod address, retrying while the server starts.
async fn http_get_retry(addr: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut last = None;
    for _ in 0..50 {
        let attempt = async {
            let mut s = tokio::net::TcpStream::connect(addr).await?;
            s.write_all(format!("GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
                .await?;
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await?;
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf).into_owned())
        };
        match tokio::time::timeout(std::time::Duration::from_secs(2), attempt).await {
            Ok(Ok(body)) if !body.is_empty() => return Ok(body),
            Ok(Ok(_)) => last = Some(anyhow::anyhow!("empty response")),
            Ok(Err(e)) => last = Some(e.into()),
            Err(e) => last = Some(e.into()),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(last
        .unwrap_or_else(|| anyhow::anyhow!("no attempt"))
        .context(format!("GET http://{addr}/")))
}
