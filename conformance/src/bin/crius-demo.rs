//! The demo client `scripts/demo` runs: one pod with one busybox container on a CRI
//! endpoint, its status and its CRI log, then a clean stop and removal.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use conformance::runner::connect;
use cri_api::v1 as cri;

#[derive(Parser)]
struct Args {
    /// CRI endpoint, unix:///path.sock
    #[arg(long)]
    endpoint: String,
    /// Image to run (must be present on the node)
    #[arg(long, default_value = "localhost/crius/busybox:1")]
    image: String,
    /// Where the pod's CRI logs go
    #[arg(long, default_value = "/tmp/crius-demo-logs")]
    log_dir: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let channel = connect::channel(&args.endpoint).await?;
    let mut rt = connect::runtime_client(channel);
    let version = rt
        .version(cri::VersionRequest::default())
        .await?
        .into_inner();
    println!(
        "connected: {} {} (CRI {})",
        version.runtime_name, version.runtime_version, version.runtime_api_version
    );

    let sandbox_config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "demo".into(),
            uid: format!("demo-{}", std::process::id()),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "crius-demo".into(),
        log_directory: args.log_dir.clone(),
        labels: HashMap::from([("app".into(), "demo".into())]),
        linux: Some(cri::LinuxPodSandboxConfig::default()),
        ..Default::default()
    };
    let sandbox = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(sandbox_config.clone()),
            runtime_handler: String::new(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id;
    println!("pod sandbox {sandbox} is running");

    let container = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata { name: "hello".into(), attempt: 0 }),
                image: Some(cri::ImageSpec { image: args.image.clone(), ..Default::default() }),
                command: vec!["sh".into(), "-c".into(), "for i in 1 2 3; do echo \"hello from crius ($i) on $(hostname)\"; sleep 1; done; sleep 3600".into()],
                log_path: "hello.log".into(),
                ..Default::default()
            }),
            sandbox_config: Some(sandbox_config),
        })
        .await?
        .into_inner()
        .container_id;
    rt.start_container(cri::StartContainerRequest {
        container_id: container.clone(),
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(4)).await;

    let status = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: container.clone(),
            verbose: false,
        })
        .await?
        .into_inner()
        .status
        .context("no status")?;
    let state = cri::ContainerState::try_from(status.state)
        .map(|s| s.as_str_name())
        .unwrap_or("?");
    println!(
        "container {container}: {state}, image {} ({})",
        args.image, status.image_ref
    );
    let log = std::fs::read_to_string(&status.log_path)
        .with_context(|| format!("reading {}", status.log_path))?;
    println!("--- CRI log {} ---\n{}---", status.log_path, log);
    let exec = rt
        .exec_sync(cri::ExecSyncRequest {
            container_id: container.clone(),
            cmd: vec!["uname".into(), "-a".into()],
            timeout: 5,
        })
        .await?
        .into_inner();
    print!("exec uname -a: {}", String::from_utf8_lossy(&exec.stdout));

    rt.stop_container(cri::StopContainerRequest {
        container_id: container.clone(),
        timeout: 2,
    })
    .await?;
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: sandbox.clone(),
    })
    .await?;
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: sandbox.clone(),
    })
    .await?;
    println!("pod stopped and removed");
    anyhow::ensure!(
        log.contains("hello from crius (1) on crius-demo"),
        "the log misses the demo's output"
    );
    Ok(())
}
