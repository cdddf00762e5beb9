//! `[sandbox]` namespace options: host or pod network, PID and IPC; pod- vs container-scoped
//! PID namespaces. Namespaces are compared by their `/proc/<pid>/ns/<kind>` links.

use super::prelude::*;

pub fn cases() -> Vec<Case> {
    use Group::Sandbox as G;
    vec![
        case!(
            G,
            "host network: containers share the node's network namespace",
            [RunPodSandbox, ExecSync],
            host_network
        ),
        case!(
            G,
            "pod network: the pod's containers share a network namespace of their own",
            [RunPodSandbox, ExecSync],
            pod_network
        ),
        case!(
            G,
            "host PID: containers share the node's PID namespace",
            [RunPodSandbox, ExecSync],
            host_pid
        ),
        case!(
            G,
            "pod PID: the pod's containers share one PID namespace",
            [RunPodSandbox, ExecSync],
            pod_pid
        ),
        case!(
            G,
            "container PID: each container has its own PID namespace, its process is PID 1",
            [RunPodSandbox, ExecSync],
            container_pid
        ),
        case!(
            G,
            "host IPC: containers share the node's IPC namespace",
            [RunPodSandbox, ExecSync],
            host_ipc
        ),
        case!(
            G,
            "pod IPC: the pod's containers share an IPC namespace of their own",
            [RunPodSandbox, ExecSync],
            pod_ipc
        ),
        case!(
            G,
            "PodSandboxStatus reports the namespace options the sandbox runs with",
            [PodSandboxStatus],
            status_namespace_options
        ),
    ]
}

fn options(
    network: cri::NamespaceMode,
    pid: cri::NamespaceMode,
    ipc: cri::NamespaceMode,
) -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: network as i32,
        pid: pid as i32,
        ipc: ipc as i32,
        ..Default::default()
    }
}

/// A running pod with `namespaces` and two sleeping containers.
async fn pod_with(
    ctx: &Ctx,
    namespaces: cri::NamespaceOption,
) -> Result<(Sandbox, Container, Container)> {
    let mut config = ctx.sandbox_config()?;
    if let Some(context) = config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
    {
        context.namespace_options = Some(namespaces);
    }
    let sandbox = ctx.run_sandbox(config).await?;
    let first = ctx.sleeper(&sandbox).await?;
    let second = ctx.sleeper(&sandbox).await?;
    Ok((sandbox, first, second))
}

async fn namespace_of(ctx: &Ctx, container: &Container, kind: &str) -> Result<String> {
    ctx.sh(&container.id, &format!("readlink /proc/self/ns/{kind}"))
        .await
}

use cri::NamespaceMode::{Container as C, Node as N, Pod as P};

async fn host_network(ctx: Ctx) -> Result<Outcome> {
    let (_, first, _) = pod_with(&ctx, options(N, C, P)).await?;
    ensure_eq!(
        namespace_of(&ctx, &first, "net").await?,
        host::own_namespace("net")?,
        "network namespace of a host-network container"
    );
    pass()
}

async fn pod_network(ctx: Ctx) -> Result<Outcome> {
    let (_, first, second) = pod_with(&ctx, options(P, C, P)).await?;
    let a = namespace_of(&ctx, &first, "net").await?;
    let b = namespace_of(&ctx, &second, "net").await?;
    ensure_eq!(b, a, "network namespace of the pod's second container");
    ensure!(
        a != host::own_namespace("net")?,
        "a pod-network container is in the node's network namespace {a}"
    );
    pass()
}

async fn host_pid(ctx: Ctx) -> Result<Outcome> {
    let (_, first, _) = pod_with(&ctx, options(P, N, P)).await?;
    ensure_eq!(
        namespace_of(&ctx, &first, "pid").await?,
        host::own_namespace("pid")?,
        "PID namespace of a host-PID container"
    );
    pass()
}

async fn pod_pid(ctx: Ctx) -> Result<Outcome> {
    let (_, first, second) = pod_with(&ctx, options(P, P, P)).await?;
    let a = namespace_of(&ctx, &first, "pid").await?;
    let b = namespace_of(&ctx, &second, "pid").await?;
    ensure_eq!(b, a, "PID namespace of the pod's second container");
    ensure!(
        a != host::own_namespace("pid")?,
        "a pod-PID container is in the node's PID namespace {a}"
    );
    // PID 1 of a shared PID namespace is the sandbox's process, not the container's.
    let init = ctx.sh(&first.id, "tr '\\0' ' ' < /proc/1/cmdline").await?;
    ensure!(
        init != "sleep 3600",
        "with a pod PID namespace PID 1 is the container's own sleep ({init:?})"
    );
    pass()
}

async fn container_pid(ctx: Ctx) -> Result<Outcome> {
    let (_, first, second) = pod_with(&ctx, options(P, C, P)).await?;
    let a = namespace_of(&ctx, &first, "pid").await?;
    let b = namespace_of(&ctx, &second, "pid").await?;
    ensure!(
        a != b,
        "two containers with container-scoped PID namespaces share {a}"
    );
    ensure!(
        a != host::own_namespace("pid")?,
        "a container-PID container is in the node's PID namespace {a}"
    );
    let init = ctx.sh(&first.id, "tr '\\0' ' ' < /proc/1/cmdline").await?;
    ensure_eq!(init, "sleep 3600", "command line of PID 1 in the container");
    pass()
}

async fn host_ipc(ctx: Ctx) -> Result<Outcome> {
    let (_, first, _) = pod_with(&ctx, options(P, C, N)).await?;
    ensure_eq!(
        namespace_of(&ctx, &first, "ipc").await?,
        host::own_namespace("ipc")?,
        "IPC namespace of a host-IPC container"
    );
    pass()
}

async fn pod_ipc(ctx: Ctx) -> Result<Outcome> {
    let (_, first, second) = pod_with(&ctx, options(P, C, P)).await?;
    let a = namespace_of(&ctx, &first, "ipc").await?;
    let b = namespace_of(&ctx, &second, "ipc").await?;
    ensure_eq!(b, a, "IPC namespace of the pod's second container");
    ensure!(
        a != host::own_namespace("ipc")?,
        "a pod-IPC container is in the node's IPC namespace {a}"
    );
    pass()
}

async fn status_namespace_options(ctx: Ctx) -> Result<Outcome> {
    let wanted = options(N, P, N);
    let (sandbox, _, _) = pod_with(&ctx, wanted.clone()).await?;
    let status = ctx.sandbox_state(&sandbox.id).await?;
    let reported = status
        .linux
        .and_then(|l| l.namespaces)
        .and_then(|n| n.options)
        .context("PodSandboxStatus.linux.namespaces.options is missing")?;
    ensure_eq!(
        (reported.network, reported.pid, reported.ipc),
        (wanted.network, wanted.pid, wanted.ipc),
        "PodSandboxStatus namespace options (network, pid, ipc; 0 POD, 1 CONTAINER, 2 NODE)"
    );
    pass()
}
