//! `[container]` resources: limits visible in the container's own cgroup (v1 or v2 files),
//! oom_score_adj, UpdateContainerResources, ContainerStatus.resources.

use super::prelude::*;

pub fn cases() -> Vec<Case> {
    use Group::Container as G;
    vec![
        case!(
            G,
            "the memory limit is visible in the container's cgroup",
            [CreateContainer, ExecSync],
            memory_limit
        ),
        case!(
            G,
            "CPU quota and period are visible in the container's cgroup",
            [CreateContainer, ExecSync],
            cpu_quota
        ),
        case!(
            G,
            "CPU shares are visible in the container's cgroup",
            [CreateContainer, ExecSync],
            cpu_shares
        ),
        case!(
            G,
            "cpuset CPUs are visible in the container's cgroup",
            [CreateContainer, ExecSync],
            cpuset
        ),
        case!(
            G,
            "oom_score_adj is applied to the container's process",
            [CreateContainer, ExecSync],
            oom_score_adj
        ),
        case!(
            G,
            "UpdateContainerResources changes the memory limit of a running container",
            [UpdateContainerResources, ExecSync],
            update_memory
        ),
        case!(
            G,
            "UpdateContainerResources changes the CPU quota of a running container",
            [UpdateContainerResources, ExecSync],
            update_cpu
        ),
        case!(
            G,
            "UpdateContainerResources before StartContainer: the container starts with the new limit",
            [UpdateContainerResources, StartContainer, ExecSync],
            update_before_start
        ),
        case!(
            G,
            "UpdateContainerResources of an unknown container fails",
            [UpdateContainerResources],
            update_unknown
        ),
        case!(
            G,
            "ContainerStatus reports the resources the container runs with",
            [ContainerStatus, UpdateContainerResources],
            status_resources
        ),
    ]
}

const MIB: i64 = 1024 * 1024;

fn limited(
    ctx: &Ctx,
    sandbox: &Sandbox,
    resources: cri::LinuxContainerResources,
) -> cri::ContainerConfig {
    let mut config = ctx.container_config(sandbox, &["sleep", "3600"]);
    if let Some(linux) = config.linux.as_mut() {
        linux.resources = Some(resources);
    }
    config
}

/// Reads a cgroup file as the container sees it: the v1 controller file, else the v2 one.
async fn cgroup_file(ctx: &Ctx, container: &Container, v1: &str, v2: &str) -> Result<String> {
    ctx.sh(
        &container.id,
        &format!("cat /sys/fs/cgroup/{v1} 2>/dev/null || cat /sys/fs/cgroup/{v2}"),
    )
    .await
}

async fn memory_of(ctx: &Ctx, container: &Container) -> Result<String> {
    cgroup_file(ctx, container, "memory/memory.limit_in_bytes", "memory.max").await
}

/// `(quota, period)` from `cpu.cfs_quota_us`/`cpu.cfs_period_us` (v1) or `cpu.max` (v2).
async fn cpu_of(ctx: &Ctx, container: &Container) -> Result<(String, String)> {
    let v1 = ctx
        .exec(
            &container.id,
            &[
                "sh",
                "-c",
                "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us",
            ],
        )
        .await?;
    let text = if v1.exit_code == 0 {
        String::from_utf8_lossy(&v1.stdout).into_owned()
    } else {
        ctx.sh(&container.id, "cat /sys/fs/cgroup/cpu.max").await?
    };
    let mut words = text.split_whitespace();
    Ok((
        words.next().unwrap_or_default().to_owned(),
        words.next().unwrap_or_default().to_owned(),
    ))
}

async fn memory_limit(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let resources = cri::LinuxContainerResources {
        memory_limit_in_bytes: 64 * MIB,
        ..Default::default()
    };
    let container = ctx
        .running_container(&sandbox, limited(&ctx, &sandbox, resources))
        .await?;
    ensure_eq!(
        memory_of(&ctx, &container).await?,
        (64 * MIB).to_string(),
        "memory limit in the cgroup"
    );
    pass()
}

async fn cpu_quota(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let resources = cri::LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: 50_000,
        ..Default::default()
    };
    let container = ctx
        .running_container(&sandbox, limited(&ctx, &sandbox, resources))
        .await?;
    ensure_eq!(
        cpu_of(&ctx, &container).await?,
        ("50000".to_owned(), "100000".to_owned()),
        "(quota, period) in the cgroup"
    );
    pass()
}

async fn cpu_shares(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let resources = cri::LinuxContainerResources {
        cpu_shares: 512,
        ..Default::default()
    };
    let container = ctx
        .running_container(&sandbox, limited(&ctx, &sandbox, resources))
        .await?;
    let v1 = ctx
        .exec(&container.id, &["cat", "/sys/fs/cgroup/cpu/cpu.shares"])
        .await?;
    if v1.exit_code == 0 {
        ensure_eq!(
            String::from_utf8_lossy(&v1.stdout).trim(),
            "512",
            "cpu.shares"
        );
    } else {
        // cgroup v2: weight = 1 + ((shares - 2) * 9999) / 262142, as runc converts.
        let weight = ctx
            .sh(&container.id, "cat /sys/fs/cgroup/cpu.weight")
            .await?;
        ensure_eq!(weight, "20", "cpu.weight for 512 shares");
    }
    pass()
}

async fn cpuset(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let resources = cri::LinuxContainerResources {
        cpuset_cpus: "0".into(),
        ..Default::default()
    };
    let container = ctx
        .running_container(&sandbox, limited(&ctx, &sandbox, resources))
        .await?;
    let cpus = cgroup_file(&ctx, &container, "cpuset/cpuset.cpus", "cpuset.cpus").await?;
    ensure_eq!(cpus, "0", "cpuset.cpus");
    let allowed = ctx
        .sh(&container.id, "grep Cpus_allowed_list /proc/self/status")
        .await?;
    ensure_eq!(
        allowed.split_whitespace().last(),
        Some("0"),
        "Cpus_allowed_list of a process in the container"
    );
    pass()
}

async fn oom_score_adj(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let resources = cri::LinuxContainerResources {
        oom_score_adj: 500,
        ..Default::default()
    };
    let container = ctx
        .running_container(&sandbox, limited(&ctx, &sandbox, resources))
        .await?;
    ensure_eq!(
        ctx.sh(&container.id, "cat /proc/1/oom_score_adj").await?,
        "500",
        "oom_score_adj of PID 1"
    );
    pass()
}

async fn update(ctx: &Ctx, id: &str, resources: cri::LinuxContainerResources) -> Result<()> {
    let request = cri::UpdateContainerResourcesRequest {
        container_id: id.to_owned(),
        linux: Some(resources),
        ..Default::default()
    };
    call(
        "UpdateContainerResources",
        ctx.rt().update_container_resources(request),
    )
    .await?;
    Ok(())
}

fn memory(bytes: i64) -> cri::LinuxContainerResources {
    cri::LinuxContainerResources {
        memory_limit_in_bytes: bytes,
        ..Default::default()
    }
}

/// A container made with a 64 MiB limit and updated to 96 MiB, once running or (`!running`)
/// before it starts: its cgroup must say 96 MiB.
async fn memory_update(ctx: Ctx, running: bool) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let config = limited(&ctx, &sandbox, memory(64 * MIB));
    let container = if running {
        ctx.running_container(&sandbox, config).await?
    } else {
        ctx.create_container(&sandbox, config).await?
    };
    update(&ctx, &container.id, memory(96 * MIB)).await?;
    if !running {
        ctx.start_and_wait(&container.id).await?;
    }
    ensure_eq!(
        memory_of(&ctx, &container).await?,
        (96 * MIB).to_string(),
        "memory limit after the update (made running: {running})"
    );
    pass()
}

async fn update_memory(ctx: Ctx) -> Result<Outcome> {
    memory_update(ctx, true).await
}

async fn update_before_start(ctx: Ctx) -> Result<Outcome> {
    memory_update(ctx, false).await
}

async fn update_cpu(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let initial = cri::LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: 50_000,
        ..Default::default()
    };
    let container = ctx
        .running_container(&sandbox, limited(&ctx, &sandbox, initial))
        .await?;
    update(
        &ctx,
        &container.id,
        cri::LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 20_000,
            ..Default::default()
        },
    )
    .await?;
    ensure_eq!(
        cpu_of(&ctx, &container).await?,
        ("20000".to_owned(), "100000".to_owned()),
        "(quota, period) after the update"
    );
    pass()
}

async fn update_unknown(ctx: Ctx) -> Result<Outcome> {
    let request = cri::UpdateContainerResourcesRequest {
        container_id: "0000000000000000000000000000000000000000000000000000000000c0ffee".into(),
        linux: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 64 * MIB,
            ..Default::default()
        }),
        ..Default::default()
    };
    let status = call_err(
        "UpdateContainerResources",
        ctx.rt().update_container_resources(request),
    )
    .await?;
    ensure_code_on(
        &ctx,
        "UpdateContainerResources(unknown)",
        &status,
        Code::NotFound,
        &[Code::NotFound],
    )?;
    pass()
}

async fn status_resources(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let initial = cri::LinuxContainerResources {
        memory_limit_in_bytes: 64 * MIB,
        cpu_period: 100_000,
        cpu_quota: 50_000,
        cpu_shares: 512,
        ..Default::default()
    };
    let container = ctx
        .running_container(&sandbox, limited(&ctx, &sandbox, initial))
        .await?;
    let status = ctx.container_status(&container.id).await?;
    let Some(linux) = status.resources.and_then(|r| r.linux) else {
        return Err(skip(
            "the endpoint does not report ContainerStatus.resources",
        ));
    };
    ensure_eq!(
        (
            linux.memory_limit_in_bytes,
            linux.cpu_quota,
            linux.cpu_period,
            linux.cpu_shares
        ),
        (64 * MIB, 50_000, 100_000, 512),
        "reported (memory, quota, period, shares)"
    );
    update(
        &ctx,
        &container.id,
        cri::LinuxContainerResources {
            memory_limit_in_bytes: 96 * MIB,
            cpu_period: 100_000,
            cpu_quota: 20_000,
            cpu_shares: 512,
            ..Default::default()
        },
    )
    .await?;
    let status = ctx.container_status(&container.id).await?;
    let linux = status
        .resources
        .and_then(|r| r.linux)
        .context("ContainerStatus.resources disappeared after the update")?;
    ensure_eq!(
        (linux.memory_limit_in_bytes, linux.cpu_quota),
        (96 * MIB, 20_000),
        "reported (memory, quota) after the update"
    );
    pass()
}
