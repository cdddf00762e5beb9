//! `[runtime info]`: Version, Status, RuntimeConfig, UpdateRuntimeConfig.

use super::prelude::*;

pub fn cases() -> Vec<Case> {
    use Group::RuntimeInfo as G;
    vec![
        case!(
            G,
            "Version reports API version v1 and the runtime's name and version",
            [Version],
            version_fields
        ),
        case!(
            G,
            "Version answers a client that names no version",
            [Version],
            version_without_client_version
        ),
        case!(
            G,
            "Status reports the RuntimeReady condition true",
            [Status],
            status_runtime_ready
        ),
        case!(
            G,
            "Status reports a NetworkReady condition, with a reason when false",
            [Status],
            status_network_condition
        ),
        case!(
            G,
            "Status without verbose returns no info map",
            [Status],
            status_not_verbose
        ),
        case!(
            G,
            "Status lists the runtime handlers, the default one included",
            [Status],
            status_runtime_handlers
        ),
        case!(
            G,
            "RuntimeConfig reports the cgroup driver this node can run",
            [RuntimeConfig],
            runtime_config_driver
        ),
        case!(
            G,
            "UpdateRuntimeConfig accepts a pod CIDR",
            [UpdateRuntimeConfig],
            update_runtime_config_cidr
        ),
        case!(
            G,
            "UpdateRuntimeConfig accepts an empty config",
            [UpdateRuntimeConfig],
            update_runtime_config_empty
        ),
    ]
}

async fn version_fields(ctx: Ctx) -> Result<Outcome> {
    let request = cri::VersionRequest {
        version: "0.1.0".into(),
    };
    let version = call("Version", ctx.rt().version(request)).await?;
    // kubelet checks `version` (the kubelet API version) and `runtime_api_version`.
    ensure_eq!(version.version, "0.1.0", "Version.version");
    ensure_eq!(
        version.runtime_api_version,
        "v1",
        "Version.runtime_api_version"
    );
    ensure!(
        !version.runtime_name.is_empty(),
        "Version.runtime_name is empty"
    );
    ensure!(
        !version.runtime_version.is_empty(),
        "Version.runtime_version is empty"
    );
    pass()
}

async fn version_without_client_version(ctx: Ctx) -> Result<Outcome> {
    let version = call("Version", ctx.rt().version(cri::VersionRequest::default())).await?;
    ensure_eq!(
        version.runtime_api_version,
        "v1",
        "Version.runtime_api_version"
    );
    ensure!(
        !version.runtime_name.is_empty(),
        "Version.runtime_name is empty"
    );
    pass()
}

async fn conditions(ctx: &Ctx) -> Result<Vec<cri::RuntimeCondition>> {
    Ok(ctx
        .runtime_status()
        .await?
        .status
        .context("Status returned no status")?
        .conditions)
}

async fn status_runtime_ready(ctx: Ctx) -> Result<Outcome> {
    let conditions = conditions(&ctx).await?;
    let ready = conditions
        .iter()
        .find(|c| c.r#type == "RuntimeReady")
        .with_context(|| format!("Status has no RuntimeReady condition: {conditions:?}"))?;
    ensure!(
        ready.status,
        "RuntimeReady: expected true, got false ({}: {})",
        ready.reason,
        ready.message
    );
    pass()
}

async fn status_network_condition(ctx: Ctx) -> Result<Outcome> {
    let conditions = conditions(&ctx).await?;
    let network = conditions
        .iter()
        .find(|c| c.r#type == "NetworkReady")
        .with_context(|| format!("Status has no NetworkReady condition: {conditions:?}"))?;
    // kubelet shows the reason on the node when the network is not ready.
    ensure!(
        network.status || !network.reason.is_empty(),
        "NetworkReady=false without a reason: {network:?}"
    );
    pass()
}

async fn status_not_verbose(ctx: Ctx) -> Result<Outcome> {
    let status = call(
        "Status",
        ctx.rt().status(cri::StatusRequest { verbose: false }),
    )
    .await?;
    ensure!(
        status.info.is_empty(),
        "Status(verbose=false).info: expected empty, got keys {:?}",
        status.info.keys().collect::<Vec<_>>()
    );
    pass()
}

async fn status_runtime_handlers(ctx: Ctx) -> Result<Outcome> {
    let status = ctx.runtime_status().await?;
    if status.runtime_handlers.is_empty() {
        return Err(skip(
            "the endpoint reports no runtime handlers (Status.runtime_handlers, CRI ≥ 1.30)",
        ));
    }
    let names: Vec<&str> = status
        .runtime_handlers
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    let mut unique = names.clone();
    unique.sort_unstable();
    unique.dedup();
    ensure_eq!(
        unique.len(),
        names.len(),
        "distinct runtime handler names in {names:?}"
    );
    // kubelet looks up the default handler (the one pods get without runtimeClassName) by "".
    ensure!(
        names.contains(&""),
        "Status.runtime_handlers: expected the default handler \"\", got {names:?}"
    );
    pass()
}

async fn runtime_config_driver(ctx: Ctx) -> Result<Outcome> {
    let config = call(
        "RuntimeConfig",
        ctx.rt().runtime_config(cri::RuntimeConfigRequest {}),
    )
    .await?;
    let linux = config
        .linux
        .context("RuntimeConfig returned no linux section")?;
    let expected = if host::systemd_is_init() {
        cri::CgroupDriver::Systemd
    } else {
        // Without systemd as PID 1 nothing can serve the systemd driver.
        cri::CgroupDriver::Cgroupfs
    };
    ensure_eq!(
        cri::CgroupDriver::try_from(linux.cgroup_driver).ok(),
        Some(expected),
        "RuntimeConfig.linux.cgroup_driver"
    );
    pass()
}

async fn update_runtime_config_cidr(ctx: Ctx) -> Result<Outcome> {
    let request = cri::UpdateRuntimeConfigRequest {
        runtime_config: Some(cri::RuntimeConfig {
            network_config: Some(cri::NetworkConfig {
                pod_cidr: "10.213.0.0/24".into(),
            }),
        }),
    };
    call(
        "UpdateRuntimeConfig",
        ctx.rt().update_runtime_config(request),
    )
    .await?;
    // The runtime must stay healthy afterwards.
    let conditions = conditions(&ctx).await?;
    ensure!(
        conditions
            .iter()
            .any(|c| c.r#type == "RuntimeReady" && c.status),
        "RuntimeReady is not true after UpdateRuntimeConfig: {conditions:?}"
    );
    pass()
}

async fn update_runtime_config_empty(ctx: Ctx) -> Result<Outcome> {
    let request = cri::UpdateRuntimeConfigRequest {
        runtime_config: None,
    };
    call(
        "UpdateRuntimeConfig",
        ctx.rt().update_runtime_config(request),
    )
    .await?;
    pass()
}
