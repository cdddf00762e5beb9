//! CRI calls the integration tests make over and over: a pod config, a container config, and
//! the run / create+start / exec / stop+remove round trips, on a real client.

use std::collections::HashMap;
use std::path::Path;

use cri_api::v1 as cri;
use cri_api::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

/// The runtime client the helpers take.
pub type Runtime = RuntimeServiceClient<Channel>;

/// A pod named `name` in `namespace`, hostname `host-<name>`, label `app=<name>`, logging
/// under `<log_root>/<name>`.
pub fn pod_config(name: &str, namespace: &str, log_root: &Path) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.to_string(),
            uid: format!("uid-{name}"),
            namespace: namespace.to_string(),
            attempt: 0,
        }),
        hostname: format!("host-{name}"),
        log_directory: log_root.join(name).display().to_string(),
        labels: HashMap::from([("app".to_string(), name.to_string())]),
        linux: Some(cri::LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

/// A container `name` running `command` from `image`, logging to `<name>.log`.
pub fn container_config(name: &str, image: &str, command: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.to_string(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: image.to_string(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        linux: Some(cri::LinuxContainerConfig::default()),
        ..Default::default()
    }
}

/// RunPodSandbox with the default handler; the pod's id.
pub async fn run_pod(
    rt: &mut Runtime,
    config: &cri::PodSandboxConfig,
) -> Result<String, tonic::Status> {
    Ok(rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id)
}

/// StopPodSandbox then RemovePodSandbox.
pub async fn stop_and_remove_pod(rt: &mut Runtime, id: &str) -> Result<(), tonic::Status> {
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: id.to_string(),
    })
    .await?;
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: id.to_string(),
    })
    .await?;
    Ok(())
}

/// CreateContainer in `pod`; the container's id.
pub async fn create(
    rt: &mut Runtime,
    pod: &str,
    sandbox_config: &cri::PodSandboxConfig,
    config: cri::ContainerConfig,
) -> Result<String, tonic::Status> {
    Ok(rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.to_string(),
            config: Some(config),
            sandbox_config: Some(sandbox_config.clone()),
        })
        .await?
        .into_inner()
        .container_id)
}

/// CreateContainer then StartContainer; the container's id.
pub async fn create_and_start(
    rt: &mut Runtime,
    pod: &str,
    sandbox_config: &cri::PodSandboxConfig,
    config: cri::ContainerConfig,
) -> Result<String, tonic::Status> {
    let id = create(rt, pod, sandbox_config, config).await?;
    rt.start_container(cri::StartContainerRequest {
        container_id: id.clone(),
    })
    .await?;
    Ok(id)
}

/// ExecSync of `sh -c script`: exit code, stdout, stderr.
pub async fn exec_sh(
    rt: &mut Runtime,
    container: &str,
    script: &str,
    timeout_secs: i64,
) -> Result<(i32, String, String), tonic::Status> {
    let out = rt
        .exec_sync(cri::ExecSyncRequest {
            container_id: container.to_string(),
            cmd: vec!["sh".into(), "-c".into(), script.to_string()],
            timeout: timeout_secs,
        })
        .await?
        .into_inner();
    Ok((
        out.exit_code,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}
