//! CreateContainer, StartContainer, StopContainer, RemoveContainer, ContainerStatus,
//! ListContainers, UpdateContainerResources, ReopenContainerLog, ExecSync.

use std::sync::Arc;
use std::time::Duration;

use cri_api::v1 as cri;

use super::convert::{
    id_mappings_to_cri, matches_selector, propagation_to_cri, resources, resources_to_cri,
    stop_signal_to_cri, to_map,
};
use crate::domain::ContainerConfig;
use crate::error::{Error, Result};
use crate::runtime::Crius;
use crate::store::{Container, ContainerState, ContainerStatus, ListAnswer};

fn require_id(id: &str, rpc: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{rpc}: container_id must not be empty"
        )));
    }
    Ok(())
}

pub async fn create(
    crius: &Arc<Crius>,
    request: cri::CreateContainerRequest,
) -> Result<cri::CreateContainerResponse> {
    if request.pod_sandbox_id.is_empty() {
        return Err(Error::InvalidArgument(
            "CreateContainer: pod_sandbox_id must not be empty".into(),
        ));
    }
    // `request.sandbox_config` is, per CRI, a copy of the pod's config that crius recorded at
    // RunPodSandbox; the recorded one is used. `config.windows` is for Windows nodes only.
    let config = request
        .config
        .ok_or_else(|| Error::InvalidArgument("CreateContainer: config is required".into()))?;
    // The image's handler may be any configured one: they share one image store.
    let image_handler = config
        .image
        .as_ref()
        .map(|i| i.runtime_handler.as_str())
        .unwrap_or_default();
    crius.runtime_handler(image_handler, "CreateContainer: image.runtime_handler")?;
    let config = ContainerConfig::try_from(config)?;
    let id = crius
        .create_container(&request.pod_sandbox_id, config)
        .await?;
    Ok(cri::CreateContainerResponse { container_id: id })
}

pub async fn start(
    crius: &Crius,
    request: cri::StartContainerRequest,
) -> Result<cri::StartContainerResponse> {
    require_id(&request.container_id, "StartContainer")?;
    crius.start_container(&request.container_id).await?;
    Ok(cri::StartContainerResponse {})
}

pub async fn stop(
    crius: &Crius,
    request: cri::StopContainerRequest,
) -> Result<cri::StopContainerResponse> {
    require_id(&request.container_id, "StopContainer")?;
    crius
        .stop_container(&request.container_id, request.timeout)
        .await?;
    Ok(cri::StopContainerResponse {})
}

pub async fn remove(
    crius: &Crius,
    request: cri::RemoveContainerRequest,
) -> Result<cri::RemoveContainerResponse> {
    require_id(&request.container_id, "RemoveContainer")?;
    crius.remove_container(&request.container_id).await?;
    Ok(cri::RemoveContainerResponse {})
}

fn state(container: &Container) -> i32 {
    state_of(&container.status())
}

fn state_of(status: &ContainerStatus) -> i32 {
    match status.state {
        ContainerState::Created => cri::ContainerState::ContainerCreated as i32,
        ContainerState::Running => cri::ContainerState::ContainerRunning as i32,
        ContainerState::Exited => cri::ContainerState::ContainerExited as i32,
        ContainerState::Unknown => cri::ContainerState::ContainerUnknown as i32,
    }
}

fn image_spec(container: &Container) -> cri::ImageSpec {
    cri::ImageSpec {
        image: container.meta.config.image.clone(),
        annotations: Default::default(),
        user_specified_image: container.meta.config.user_specified_image.clone(),
        runtime_handler: String::new(),
        // ImageSpec.image_ref is the resolved digest of an image *volume* (kubelet reads it
        // from a mount's image spec). The container's own image id is `image_ref` and
        // `image_id` of the container; repeating it here cost every ListContainers ~73
        // bytes per container (a fifth of the answer) that kubelet never reads.
        image_ref: String::new(),
    }
}

fn metadata(container: &Container) -> cri::ContainerMetadata {
    let m = &container.meta.config.metadata;
    cri::ContainerMetadata {
        name: m.name.clone(),
        attempt: m.attempt,
    }
}

/// The uid/gid/groups the container's process runs as (from its OCI spec).
fn user(container: &Container) -> Option<cri::ContainerUser> {
    let process = &container.meta.process;
    let user = process.user();
    Some(cri::ContainerUser {
        linux: Some(cri::LinuxContainerUser {
            uid: i64::from(user.uid()),
            gid: i64::from(user.gid()),
            supplemental_groups: user
                .additional_gids()
                .as_ref()
                .map(|g| g.iter().map(|&g| i64::from(g)).collect())
                .unwrap_or_default(),
        }),
    })
}

pub fn status_of(container: &Container) -> cri::ContainerStatus {
    status_at(container, &container.status())
}

/// The container's CRI status with `status` as its mutable part (an event's snapshot).
pub fn status_at(container: &Container, status: &ContainerStatus) -> cri::ContainerStatus {
    let meta = &container.meta;
    cri::ContainerStatus {
        id: meta.id.clone(),
        metadata: Some(metadata(container)),
        state: state_of(status),
        created_at: meta.created_at,
        started_at: status.started_at,
        finished_at: status.finished_at,
        exit_code: status.exit_code,
        image: Some(image_spec(container)),
        // CRI: image_ref is the image id (what ListImages reports as Image.id).
        image_ref: meta.image_ref.clone(),
        reason: status.reason.clone(),
        message: status.message.clone(),
        labels: to_map(&meta.config.labels),
        annotations: to_map(&meta.config.annotations),
        mounts: meta
            .config
            .mounts
            .iter()
            .map(|m| cri::Mount {
                container_path: m.container_path.clone(),
                host_path: m.host_path.clone(),
                readonly: m.readonly,
                selinux_relabel: m.selinux_relabel,
                propagation: propagation_to_cri(m.propagation),
                uid_mappings: id_mappings_to_cri(&m.uid_mappings),
                gid_mappings: id_mappings_to_cri(&m.gid_mappings),
                recursive_read_only: m.recursive_read_only,
                image: None,
                image_sub_path: String::new(),
            })
            .collect(),
        log_path: meta.log_path.clone(),
        resources: status.resources.as_ref().map(|r| cri::ContainerResources {
            linux: Some(resources_to_cri(r)),
            windows: None,
        }),
        image_id: meta.image_id.clone(),
        user: user(container),
        stop_signal: stop_signal_to_cri(meta.config.stop_signal.as_deref()),
    }
}

pub fn status(
    crius: &Crius,
    request: cri::ContainerStatusRequest,
) -> Result<cri::ContainerStatusResponse> {
    require_id(&request.container_id, "ContainerStatus")?;
    let container = crius.container(&request.container_id)?;
    let mut info = std::collections::HashMap::new();
    if request.verbose {
        let verbose = serde_json::json!({
            "sandboxID": container.meta.sandbox_id,
            "pid": container.status().pid,
            "runtimeSpec": crius
                .records
                .read::<serde_json::Value>(crate::runtime::CONTAINER_SPECS, &container.meta.id)?,
        });
        info.insert("info".to_string(), verbose.to_string());
    }
    Ok(cri::ContainerStatusResponse {
        status: Some(status_of(&container)),
        info,
    })
}

/// The containers a ListContainers filter selects, with their current CRI state.
fn select(crius: &Crius, filter: Option<cri::ContainerFilter>) -> Vec<(Arc<Container>, i32)> {
    let filter = filter.unwrap_or_default();
    let keep = |container: &Container| -> Option<i32> {
        if !filter.pod_sandbox_id.is_empty()
            && !container
                .meta
                .sandbox_id
                .starts_with(&filter.pod_sandbox_id)
        {
            return None;
        }
        let state = state(container);
        if filter.state.as_ref().is_some_and(|s| s.state != state) {
            return None;
        }
        if !matches_selector(&container.meta.config.labels, &filter.label_selector) {
            return None;
        }
        Some(state)
    };
    if filter.id.is_empty() {
        let snapshot = crius.store.containers.snapshot();
        snapshot
            .values()
            .filter_map(|c| keep(c).map(|state| (c.clone(), state)))
            .collect()
    } else {
        crius
            .store
            .containers
            .get(&filter.id)
            .and_then(|c| keep(&c).map(|state| (c, state)))
            .into_iter()
            .collect()
    }
}

fn listed(container: &Container, state: i32) -> cri::Container {
    let meta = &container.meta;
    cri::Container {
        id: meta.id.clone(),
        pod_sandbox_id: meta.sandbox_id.clone(),
        metadata: Some(metadata(container)),
        image: Some(image_spec(container)),
        image_ref: meta.image_ref.clone(),
        state,
        created_at: meta.created_at,
        labels: to_map(&meta.config.labels),
        annotations: to_map(&meta.config.annotations),
        image_id: meta.image_id.clone(),
    }
}

/// Does `filter` let every container through?
pub fn selects_all(filter: Option<&cri::ContainerFilter>) -> bool {
    filter.is_none_or(|f| {
        f.id.is_empty()
            && f.pod_sandbox_id.is_empty()
            && f.state.is_none()
            && f.label_selector.is_empty()
    })
}

/// The container as it was encoded at its first listing, without its state.
fn encoded_entry(container: &Container) -> &cri::EncodedContainer {
    container
        .listed
        .get_or_init(|| cri::EncodedContainer::new(&listed(container, 0)))
}

/// The selected containers, each from the bytes it was encoded into at its first listing,
/// with its current state.
fn encoded(crius: &Crius, filter: Option<cri::ContainerFilter>) -> Vec<cri::EncodedContainer> {
    select(crius, filter)
        .into_iter()
        .map(|(container, state)| encoded_entry(&container).with_state(state))
        .collect()
}

/// ListContainers. Each container is encoded once (at its first listing) and then sent from
/// those bytes with its current state, so a list costs a copy, not a build and an encode of
/// every container. The unfiltered list (kubelet's, every second) is kept whole until a
/// container is added or removed or changes state, and then costs a single copy.
pub fn list(
    crius: &Crius,
    request: cri::ListContainersRequest,
) -> Result<cri::ListContainersResponse> {
    let answer = if selects_all(request.filter.as_ref()) {
        cri::ListContainersResponse {
            raw: all_encoded(crius).to_bytes(),
            ..Default::default()
        }
    } else {
        cri::ListContainersResponse {
            encoded: encoded(crius, request.filter),
            ..Default::default()
        }
    };
    crate::memory::note_answer(prost::Message::encoded_len(&answer));
    Ok(answer)
}

/// The unfiltered answer, encoded; kept until a container is added or removed or changes
/// state, and then only its changed segments are encoded again (`crate::wire` sends it from
/// these bytes).
pub fn all_encoded(crius: &Crius) -> ListAnswer {
    crius
        .store
        .containers
        .kept_answer(&crius.store.container_list, state, |members| {
            cri::ListContainersResponse {
                encoded: members
                    .iter()
                    .map(|(container, state)| encoded_entry(container).with_state(*state))
                    .collect(),
                ..Default::default()
            }
            .to_bytes()
        })
}

/// The same selection as [`list`], decoded (StreamContainers sends it in chunks).
pub fn list_decoded(crius: &Crius, filter: Option<cri::ContainerFilter>) -> Vec<cri::Container> {
    select(crius, filter)
        .into_iter()
        .map(|(container, state)| listed(&container, state))
        .collect()
}

pub async fn update_resources(
    crius: &Crius,
    request: cri::UpdateContainerResourcesRequest,
) -> Result<cri::UpdateContainerResourcesResponse> {
    require_id(&request.container_id, "UpdateContainerResources")?;
    // `request.annotations` carry runtime-specific update options; crius defines none.
    // `request.windows` is for Windows nodes only.
    let linux = request.linux.ok_or_else(|| {
        Error::InvalidArgument("UpdateContainerResources: linux resources are required".into())
    })?;
    crius
        .update_container_resources(&request.container_id, resources(linux))
        .await?;
    Ok(cri::UpdateContainerResourcesResponse {})
}

pub async fn reopen_log(
    crius: &Crius,
    request: cri::ReopenContainerLogRequest,
) -> Result<cri::ReopenContainerLogResponse> {
    require_id(&request.container_id, "ReopenContainerLog")?;
    crius.reopen_container_log(&request.container_id).await?;
    Ok(cri::ReopenContainerLogResponse {})
}

pub async fn exec_sync(
    crius: &Crius,
    request: cri::ExecSyncRequest,
) -> Result<cri::ExecSyncResponse> {
    require_id(&request.container_id, "ExecSync")?;
    if request.timeout < 0 {
        return Err(Error::InvalidArgument(format!(
            "ExecSync: timeout {} must not be negative",
            request.timeout
        )));
    }
    // The command reaches execve as C strings; runc would fail it only after the exec began.
    if request.cmd.iter().any(|arg| arg.contains('\0')) {
        return Err(Error::InvalidArgument(
            "ExecSync: cmd contains a NUL byte".into(),
        ));
    }
    let timeout = Duration::from_secs(u64::try_from(request.timeout).unwrap_or(0));
    let output = crius
        .exec_sync(&request.container_id, request.cmd, timeout)
        .await?;
    Ok(cri::ExecSyncResponse {
        stdout: output.stdout,
        stderr: output.stderr,
        exit_code: output.exit_code,
    })
}
