//! RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus, ListPodSandbox.

use std::sync::Arc;

use cri_api::v1 as cri;

use super::convert::{matches_selector, namespaces_to_cri, to_map};
use crate::domain::SandboxConfig;
use crate::error::{Error, Result};
use crate::runtime::Crius;
use crate::store::{ListAnswer, Sandbox, SandboxState, SandboxStatus};

fn require_id(id: &str, rpc: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{rpc}: pod_sandbox_id must not be empty"
        )));
    }
    Ok(())
}

pub async fn run(
    crius: &Arc<Crius>,
    request: cri::RunPodSandboxRequest,
) -> Result<cri::RunPodSandboxResponse> {
    let config = SandboxConfig::try_from(request)?;
    let id = crius.run_sandbox(config).await?;
    Ok(cri::RunPodSandboxResponse { pod_sandbox_id: id })
}

pub async fn stop(
    crius: &Crius,
    request: cri::StopPodSandboxRequest,
) -> Result<cri::StopPodSandboxResponse> {
    require_id(&request.pod_sandbox_id, "StopPodSandbox")?;
    crius.stop_sandbox(&request.pod_sandbox_id).await?;
    Ok(cri::StopPodSandboxResponse {})
}

pub async fn remove(
    crius: &Crius,
    request: cri::RemovePodSandboxRequest,
) -> Result<cri::RemovePodSandboxResponse> {
    require_id(&request.pod_sandbox_id, "RemovePodSandbox")?;
    crius.remove_sandbox(&request.pod_sandbox_id).await?;
    Ok(cri::RemovePodSandboxResponse {})
}

fn state(sandbox: &Sandbox) -> i32 {
    state_of(&sandbox.status())
}

fn state_of(status: &SandboxStatus) -> i32 {
    match status.state {
        SandboxState::Ready => cri::PodSandboxState::SandboxReady as i32,
        SandboxState::NotReady => cri::PodSandboxState::SandboxNotready as i32,
    }
}

fn metadata(config: &SandboxConfig) -> cri::PodSandboxMetadata {
    let m = &config.metadata;
    cri::PodSandboxMetadata {
        name: m.name.clone(),
        uid: m.uid.clone(),
        namespace: m.namespace.clone(),
        attempt: m.attempt,
    }
}

pub fn status_of(sandbox: &Sandbox) -> cri::PodSandboxStatus {
    status_at(sandbox, &sandbox.status())
}

/// The sandbox's CRI status with `status` as its mutable part (an event's snapshot).
pub fn status_at(sandbox: &Sandbox, status: &SandboxStatus) -> cri::PodSandboxStatus {
    let meta = &sandbox.meta;
    let ready = status.state == SandboxState::Ready;
    cri::PodSandboxStatus {
        id: meta.id.clone(),
        metadata: Some(metadata(&meta.config)),
        state: state_of(status),
        created_at: meta.created_at,
        // CRI: a stopped sandbox reports no IP.
        network: Some(cri::PodSandboxNetworkStatus {
            ip: if ready {
                meta.ip.clone()
            } else {
                String::new()
            },
            additional_ips: if ready {
                meta.additional_ips
                    .iter()
                    .map(|ip| cri::PodIp { ip: ip.clone() })
                    .collect()
            } else {
                Vec::new()
            },
        }),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace {
                options: Some(namespaces_to_cri(&meta.config.security.namespaces)),
            }),
        }),
        labels: to_map(&meta.config.labels),
        annotations: to_map(&meta.config.annotations),
        runtime_handler: meta.config.runtime_handler.clone(),
    }
}

pub fn status(
    crius: &Crius,
    request: cri::PodSandboxStatusRequest,
) -> Result<cri::PodSandboxStatusResponse> {
    require_id(&request.pod_sandbox_id, "PodSandboxStatus")?;
    let sandbox = crius.sandbox(&request.pod_sandbox_id)?;
    let mut info = std::collections::HashMap::new();
    if request.verbose {
        let status = sandbox.status();
        let verbose = serde_json::json!({
            "pid": status.pid,
            "image": sandbox.meta.pause_image,
            "cgroupsPath": sandbox.meta.cgroups_path,
            "netnsPath": sandbox.meta.netns_path,
            "config": sandbox.meta.config,
            "podResources": status.pod_resources,
        });
        info.insert("info".to_string(), verbose.to_string());
    }
    // kubelet's evented PLEG takes the pod's containers from `containers_statuses` whenever
    // `timestamp` is set: an answer with a timestamp must list every container of the pod,
    // or kubelet sees none and creates them again on every sync.
    let containers_statuses = crius
        .containers_of(&sandbox.meta.id)
        .iter()
        .map(|container| super::container::status_of(container))
        .collect();
    Ok(cri::PodSandboxStatusResponse {
        status: Some(status_of(&sandbox)),
        info,
        containers_statuses,
        timestamp: crate::runtime::now_nanos(),
    })
}

/// PodSandboxStatus without `verbose`, as its encoded parts: the sandbox's status, each
/// container's status field (kept encoded until that container's status changes: kubelet
/// asks for every pod at each sync, and most containers have not changed), the timestamp.
pub fn status_encoded(crius: &Crius, sandbox: &Sandbox) -> (usize, Vec<prost::bytes::Bytes>) {
    use prost::Message as _;
    let containers = crius.containers_of(&sandbox.meta.id);
    let mut parts = Vec::with_capacity(containers.len() + 2);
    let head = cri::PodSandboxStatusResponse {
        status: Some(status_of(sandbox)),
        ..Default::default()
    };
    parts.push(prost::bytes::Bytes::from(head.encode_to_vec()));
    for container in &containers {
        parts.push(container.status_field(|status| {
            let field = cri::PodSandboxStatusResponse {
                containers_statuses: vec![super::container::status_at(container, status)],
                ..Default::default()
            };
            prost::bytes::Bytes::from(field.encode_to_vec())
        }));
    }
    let tail = cri::PodSandboxStatusResponse {
        timestamp: crate::runtime::now_nanos(),
        ..Default::default()
    };
    parts.push(prost::bytes::Bytes::from(tail.encode_to_vec()));
    let len = parts.iter().map(|p| p.len()).sum();
    (len, parts)
}

/// Does `filter` let every sandbox through?
pub fn selects_all(filter: Option<&cri::PodSandboxFilter>) -> bool {
    filter.is_none_or(|f| f.id.is_empty() && f.state.is_none() && f.label_selector.is_empty())
}

/// ListPodSandbox. The unfiltered list (kubelet's, every second) is kept encoded until a
/// sandbox is added or removed or changes state, and then costs a single copy.
pub fn list(
    crius: &Crius,
    request: cri::ListPodSandboxRequest,
) -> Result<cri::ListPodSandboxResponse> {
    if !selects_all(request.filter.as_ref()) {
        return Ok(cri::ListPodSandboxResponse {
            items: list_decoded(crius, request.filter),
            ..Default::default()
        });
    }
    Ok(cri::ListPodSandboxResponse {
        raw: all_encoded(crius).to_bytes(),
        ..Default::default()
    })
}

/// The unfiltered answer, encoded; kept until a sandbox is added or removed or changes
/// state, and then only its changed segments are encoded again (`crate::wire` sends it from
/// these bytes).
pub fn all_encoded(crius: &Crius) -> ListAnswer {
    crius
        .store
        .sandboxes
        .kept_answer(&crius.store.sandbox_list, state, |members| {
            cri::ListPodSandboxResponse {
                items: members
                    .iter()
                    .map(|(sandbox, state)| listed(sandbox, *state))
                    .collect(),
                ..Default::default()
            }
            .to_bytes()
        })
}

/// A sandbox as ListPodSandbox lists it, in `state`.
fn listed(sandbox: &Sandbox, state: i32) -> cri::PodSandbox {
    let meta = &sandbox.meta;
    cri::PodSandbox {
        id: meta.id.clone(),
        metadata: Some(metadata(&meta.config)),
        state,
        created_at: meta.created_at,
        labels: to_map(&meta.config.labels),
        annotations: to_map(&meta.config.annotations),
        runtime_handler: meta.config.runtime_handler.clone(),
    }
}

/// The sandboxes `filter` selects (StreamPodSandboxes sends them in chunks).
pub fn list_decoded(crius: &Crius, filter: Option<cri::PodSandboxFilter>) -> Vec<cri::PodSandbox> {
    let filter = filter.unwrap_or_default();
    let snapshot = crius.store.sandboxes.snapshot();
    let mut items: Vec<cri::PodSandbox> = Vec::with_capacity(snapshot.len());
    let mut consider = |sandbox: &Sandbox| {
        let state = state(sandbox);
        if filter.state.as_ref().is_some_and(|s| s.state != state) {
            return;
        }
        if !matches_selector(&sandbox.meta.config.labels, &filter.label_selector) {
            return;
        }
        items.push(listed(sandbox, state));
    };
    if filter.id.is_empty() {
        snapshot.values().for_each(|s| consider(s));
    } else if let Some(sandbox) = crius.store.sandboxes.get(&filter.id) {
        consider(&sandbox);
    }
    items
}
