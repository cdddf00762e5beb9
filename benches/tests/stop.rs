//! The bench against an endpoint, stopped part-way: it must remove every pod it made there,
//! including those of a fill that the signal cut short before it recorded them, and their
//! log directories, and exit.

// Helpers here may panic: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use conformance::harness::containerd::{Containerd, ContainerdOptions};
use conformance::harness::crius::Crius;
use conformance::harness::images::{self, Images};
use conformance::runner::connect;
use cri_api::v1 as cri;
use cri_api::v1::runtime_service_client::RuntimeServiceClient;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tonic::transport::Channel;

async fn bench_pods(rt: &mut RuntimeServiceClient<Channel>) -> Result<usize> {
    let request = cri::ListPodSandboxRequest {
        filter: Some(cri::PodSandboxFilter {
            label_selector: HashMap::from([("crius-bench".to_string(), "yes".to_string())]),
            ..Default::default()
        }),
    };
    Ok(rt.list_pod_sandbox(request).await?.into_inner().items.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_during_the_fill_removes_every_pod_the_run_made() -> Result<()> {
    let containerd = Containerd::start(ContainerdOptions::default())?;
    Images::get()?.import(&containerd, "crius", images::BUSYBOX)?;
    let crius = Crius::start(None, containerd.socket(), &[])?;
    crius.write_cni_conflist("bench-stop", None)?;
    let mut rt = connect::runtime_client(connect::channel(&crius.endpoint()).await?);
    let logs = tempfile::tempdir()?;
    let stderr_path = logs.path().join("bench.stderr");

    // 300 containers in 30 pods, 4 pods at a time: the fill takes far longer than the
    // few pods the test waits for, and the bench records none of them until it ends.
    let mut bench = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--endpoint", &format!("crius={}", crius.endpoint())])
        .args(["--containers", "300", "--running", "0", "--duration", "1s"])
        .args(["--lifecycle", "0", "--load-duration", "0s", "--pulls", "0"])
        .args(["--machine-probe", "0s"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path)?)
        .spawn()
        .context("starting the bench")?;
    let pid = Pid::from_raw(i32::try_from(bench.id())?);
    let bench_logs = std::env::temp_dir().join(format!("crius-bench-{}", bench.id()));

    let deadline = Instant::now() + Duration::from_secs(120);
    let made = loop {
        let n = bench_pods(&mut rt).await?;
        if n >= 3 {
            break n;
        }
        if let Some(status) = bench.try_wait()? {
            bail!(
                "the bench ended ({status}) before it made 3 pods:\n{}",
                std::fs::read_to_string(&stderr_path)?
            );
        }
        ensure!(
            Instant::now() < deadline,
            "the bench made {n} pods in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    kill(pid, Signal::SIGINT)?;

    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = bench.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = bench.kill();
            bail!("the bench did not exit within 180 s of SIGINT");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let stderr = std::fs::read_to_string(&stderr_path)?;
    ensure!(
        !status.success(),
        "a stopped run must not report success:\n{stderr}"
    );
    ensure!(
        stderr.contains("SIGINT: stopping; cleaning up"),
        "the bench did not say it was stopping:\n{stderr}"
    );
    ensure!(
        !stderr.contains("bench: cleaning crius"),
        "cleaning up failed:\n{stderr}"
    );
    let left = bench_pods(&mut rt).await?;
    ensure!(
        left == 0,
        "{left} bench pods left on crius (at least {made} made before SIGINT):\n{stderr}"
    );
    let containers = rt
        .list_containers(cri::ListContainersRequest::default())
        .await?
        .into_inner()
        .containers;
    ensure!(
        containers.is_empty(),
        "{} containers left on crius",
        containers.len()
    );
    ensure!(
        !bench_logs.exists(),
        "the bench left its pods' log directories in {}",
        bench_logs.display()
    );
    Ok(())
}
