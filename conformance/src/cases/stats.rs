//! `[stats]`: ContainerStats, ListContainerStats (and its filters), PodSandboxStats,
//! ListPodSandboxStats, the streaming variants, ListMetricDescriptors and
//! ListPodSandboxMetrics.

use super::prelude::*;

pub fn cases() -> Vec<Case> {
    use Group::Stats as G;
    vec![
        case!(
            G,
            "ContainerStats reports CPU, memory and the writable layer of a running container",
            [ContainerStats],
            container_stats
        ),
        case!(
            G,
            "ContainerStats counts the memory a container allocates",
            [ContainerStats],
            container_stats_memory_grows
        ),
        case!(
            G,
            "ContainerStats counts what a container writes to its writable layer",
            [ContainerStats],
            container_stats_layer_grows
        ),
        case!(
            G,
            "ContainerStats of an unknown container is NotFound",
            [ContainerStats],
            container_stats_unknown
        ),
        case!(
            G,
            "ListContainerStats filter by id",
            [ListContainerStats],
            list_filter_id
        ),
        case!(
            G,
            "ListContainerStats filter by pod sandbox id",
            [ListContainerStats],
            list_filter_sandbox
        ),
        case!(
            G,
            "ListContainerStats filter by label selector",
            [ListContainerStats],
            list_filter_labels
        ),
        case!(
            G,
            "ListContainerStats reports a container's metadata, labels, annotations and usage",
            [ListContainerStats, ContainerStats],
            list_attributes_and_usage
        ),
        case!(
            G,
            "StreamContainerStats returns what ListContainerStats returns",
            [StreamContainerStats, ListContainerStats],
            stream_container_stats
        ),
        case!(
            G,
            "PodSandboxStats reports the pod's CPU, memory and containers",
            [PodSandboxStats],
            sandbox_stats
        ),
        case!(
            G,
            "PodSandboxStats of an unknown sandbox is NotFound",
            [PodSandboxStats],
            sandbox_stats_unknown
        ),
        case!(
            G,
            "ListPodSandboxStats filter by id",
            [ListPodSandboxStats],
            list_sandbox_filter_id
        ),
        case!(
            G,
            "ListPodSandboxStats filter by label selector",
            [ListPodSandboxStats],
            list_sandbox_filter_labels
        ),
        case!(
            G,
            "StreamPodSandboxStats returns what ListPodSandboxStats returns",
            [StreamPodSandboxStats, ListPodSandboxStats],
            stream_sandbox_stats
        ),
        case!(
            G,
            "ListMetricDescriptors describes metrics by name, help and labels",
            [ListMetricDescriptors],
            metric_descriptors
        ),
        case!(
            G,
            "ListPodSandboxMetrics reports described metrics for a running pod",
            [ListPodSandboxMetrics, ListMetricDescriptors],
            sandbox_metrics
        ),
        case!(
            G,
            "StreamPodSandboxMetrics reports the running pod",
            [StreamPodSandboxMetrics],
            stream_sandbox_metrics
        ),
    ]
}

fn value(v: &Option<cri::UInt64Value>) -> u64 {
    v.as_ref().map(|v| v.value).unwrap_or(0)
}

async fn container_stats_of(ctx: &Ctx, id: &str) -> Result<cri::ContainerStats> {
    let request = cri::ContainerStatsRequest {
        container_id: id.to_owned(),
    };
    call("ContainerStats", ctx.rt().container_stats(request))
        .await?
        .stats
        .with_context(|| format!("ContainerStats({id}) returned no stats"))
}

/// A running container that burns a little CPU, so usage is non-zero.
async fn busy_container(ctx: &Ctx, sandbox: &Sandbox) -> Result<Container> {
    let script = "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exec sleep 3600";
    let mut config = ctx.container_config(sandbox, &["sh", "-c", script]);
    config.labels.insert("stats".into(), "yes".into());
    let container = ctx.running_container(sandbox, config).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(container)
}

async fn container_stats(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = busy_container(&ctx, &sandbox).await?;
    let stats = container_stats_of(&ctx, &container.id).await?;
    let attributes = stats
        .attributes
        .context("ContainerStats.attributes is missing")?;
    ensure_eq!(attributes.id, container.id, "attributes.id");
    ensure!(
        attributes.labels.get("stats").is_some_and(|v| v == "yes"),
        "attributes.labels lacks stats=yes: {:?}",
        attributes.labels
    );
    let cpu = stats.cpu.context("ContainerStats.cpu is missing")?;
    ensure!(
        value(&cpu.usage_core_nano_seconds) > 0,
        "cpu.usage_core_nano_seconds is 0 for a container that ran a loop"
    );
    ensure!(cpu.timestamp > 0, "cpu.timestamp is 0");
    let memory = stats.memory.context("ContainerStats.memory is missing")?;
    ensure!(
        value(&memory.working_set_bytes) > 0,
        "memory.working_set_bytes is 0"
    );
    let layer = stats
        .writable_layer
        .context("ContainerStats.writable_layer is missing")?;
    ensure!(
        layer.fs_id.is_some_and(|f| f.mountpoint.starts_with('/')),
        "writable_layer.fs_id.mountpoint is not an absolute path"
    );
    ensure!(
        layer.used_bytes.is_some(),
        "writable_layer.used_bytes is missing"
    );
    pass()
}

async fn container_stats_memory_grows(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let before = value(
        &container_stats_of(&ctx, &container.id)
            .await?
            .memory
            .and_then(|m| m.working_set_bytes),
    );
    // 32 MiB in a tmpfs file of the container's /dev/shm is charged to its memory cgroup.
    ctx.sh(
        &container.id,
        "head -c 33554432 /dev/zero > /dev/shm/conformance-fill",
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let after = value(
            &container_stats_of(&ctx, &container.id)
                .await?
                .memory
                .and_then(|m| m.working_set_bytes),
        );
        if after >= before + 24 * 1024 * 1024 {
            return pass();
        }
        if Instant::now() >= deadline {
            bail!("memory.working_set_bytes: expected to grow by ≥ 24 MiB after writing 32 MiB to /dev/shm, went from {before} to {after}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn container_stats_layer_grows(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let used = |stats: cri::ContainerStats| {
        stats
            .writable_layer
            .map(|layer| (value(&layer.used_bytes), layer.timestamp))
            .unwrap_or_default()
    };
    let (before, _) = used(container_stats_of(&ctx, &container.id).await?);
    // Written into the root filesystem, which is the container's writable layer.
    ctx.sh(
        &container.id,
        "head -c 4194304 /dev/zero > /conformance-layer-fill && sync",
    )
    .await?;
    let written_at = now_nanos();
    // Runtimes measure layers periodically (containerd's CRI every 10 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (after, timestamp) = used(container_stats_of(&ctx, &container.id).await?);
        if after >= before + 3 * 1024 * 1024 {
            ensure!(
                timestamp >= written_at - 1_000_000_000,
                "writable_layer.timestamp {timestamp} is before the write at {written_at}, yet its size counts it"
            );
            return pass();
        }
        if Instant::now() >= deadline {
            bail!("writable_layer.used_bytes: expected to grow by ≥ 3 MiB within 30 s after writing 4 MiB to the root filesystem, went from {before} to {after}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn container_stats_unknown(ctx: Ctx) -> Result<Outcome> {
    let request = cri::ContainerStatsRequest {
        container_id: "0000000000000000000000000000000000000000000000000000000000c0ffee".into(),
    };
    let status = call_err("ContainerStats", ctx.rt().container_stats(request)).await?;
    ensure_code("ContainerStats(unknown)", &status, &[Code::NotFound])?;
    pass()
}

async fn list_container_stats(ctx: &Ctx, filter: cri::ContainerStatsFilter) -> Result<Vec<String>> {
    let request = cri::ListContainerStatsRequest {
        filter: Some(filter),
    };
    let mut ids: Vec<String> = call("ListContainerStats", ctx.rt().list_container_stats(request))
        .await?
        .stats
        .into_iter()
        .filter_map(|s| s.attributes.map(|a| a.id))
        .collect();
    ids.sort();
    Ok(ids)
}

async fn list_filter_id(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let a = ctx.sleeper(&sandbox).await?;
    let _b = ctx.sleeper(&sandbox).await?;
    let ids = list_container_stats(
        &ctx,
        cri::ContainerStatsFilter {
            id: a.id.clone(),
            ..Default::default()
        },
    )
    .await?;
    ensure_eq!(ids, vec![a.id], "ListContainerStats(id)");
    pass()
}

async fn list_filter_sandbox(ctx: Ctx) -> Result<Outcome> {
    let first = ctx.sandbox().await?;
    let second = ctx.sandbox().await?;
    let a = ctx.sleeper(&first).await?;
    let b = ctx.sleeper(&first).await?;
    let _c = ctx.sleeper(&second).await?;
    let ids = list_container_stats(
        &ctx,
        cri::ContainerStatsFilter {
            pod_sandbox_id: first.id.clone(),
            ..Default::default()
        },
    )
    .await?;
    let mut expected = vec![a.id, b.id];
    expected.sort();
    ensure_eq!(ids, expected, "ListContainerStats(pod_sandbox_id)");
    pass()
}

async fn list_filter_labels(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let labelled = busy_container(&ctx, &sandbox).await?;
    let _plain = ctx.sleeper(&sandbox).await?;
    let mut selector = ctx.labels();
    selector.insert("stats".into(), "yes".into());
    let ids = list_container_stats(
        &ctx,
        cri::ContainerStatsFilter {
            label_selector: selector,
            ..Default::default()
        },
    )
    .await?;
    ensure_eq!(
        ids,
        vec![labelled.id],
        "ListContainerStats(labels stats=yes)"
    );
    pass()
}

async fn list_attributes_and_usage(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let script = "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exec sleep 3600";
    let mut config = ctx.container_config(&sandbox, &["sh", "-c", script]);
    if let Some(metadata) = config.metadata.as_mut() {
        metadata.attempt = 1;
    }
    config.log_path = config.log_path.replace("/0.log", "/1.log");
    config.labels.insert("stats".into(), "attributes".into());
    config
        .annotations
        .insert("io.kubernetes.container.hash".into(), "5a7c1d9e".into());
    config
        .annotations
        .insert("crius.test/empty".into(), String::new());
    let container = ctx.running_container(&sandbox, config.clone()).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let request = cri::ListContainerStatsRequest {
        filter: Some(cri::ContainerStatsFilter {
            pod_sandbox_id: sandbox.id.clone(),
            ..Default::default()
        }),
    };
    let listed: Vec<cri::ContainerStats> =
        call("ListContainerStats", ctx.rt().list_container_stats(request))
            .await?
            .stats
            .into_iter()
            .filter(|s| s.attributes.as_ref().is_some_and(|a| a.id == container.id))
            .collect();
    ensure_eq!(
        listed.len(),
        1,
        "ListContainerStats entries of the container"
    );
    let entry = &listed[0];
    let attributes = entry
        .attributes
        .as_ref()
        .context("ListContainerStats entry without attributes")?;
    ensure_eq!(attributes.metadata, config.metadata, "attributes.metadata");
    ensure_eq!(attributes.labels, config.labels, "attributes.labels");
    ensure_eq!(
        attributes.annotations,
        config.annotations,
        "attributes.annotations"
    );
    let cpu = entry
        .cpu
        .as_ref()
        .context("no cpu for a running container")?;
    ensure!(
        value(&cpu.usage_core_nano_seconds) > 0,
        "cpu.usage_core_nano_seconds is 0 for a container that ran a loop"
    );
    let memory = entry
        .memory
        .as_ref()
        .context("no memory for a running container")?;
    ensure!(
        value(&memory.working_set_bytes) > 0,
        "memory.working_set_bytes is 0 for a running container"
    );
    ensure!(
        entry.writable_layer.is_some(),
        "no writable_layer for a running container"
    );
    let single = container_stats_of(&ctx, &container.id).await?;
    ensure_eq!(
        single.attributes.as_ref(),
        Some(attributes),
        "ContainerStats.attributes against ListContainerStats"
    );
    pass()
}

async fn stream_container_stats(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let a = ctx.sleeper(&sandbox).await?;
    let b = ctx.sleeper(&sandbox).await?;
    let filter = cri::ContainerStatsFilter {
        pod_sandbox_id: sandbox.id.clone(),
        ..Default::default()
    };
    let request = cri::StreamContainerStatsRequest {
        filter: Some(filter.clone()),
    };
    let mut stream = call(
        "StreamContainerStats",
        ctx.rt().stream_container_stats(request),
    )
    .await?;
    let mut streamed = Vec::new();
    while let Some(message) = stream
        .message()
        .await
        .map_err(|s| anyhow::anyhow!("StreamContainerStats stream: {}", describe(&s)))?
    {
        streamed.extend(
            message
                .container_stats
                .into_iter()
                .filter_map(|s| s.attributes.map(|a| a.id)),
        );
    }
    streamed.sort();
    let listed = list_container_stats(&ctx, filter).await?;
    let mut expected = vec![a.id, b.id];
    expected.sort();
    ensure_eq!(listed, expected, "ListContainerStats(sandbox)");
    ensure_eq!(streamed, listed, "StreamContainerStats(sandbox)");
    pass()
}

async fn sandbox_stats(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = busy_container(&ctx, &sandbox).await?;
    let request = cri::PodSandboxStatsRequest {
        pod_sandbox_id: sandbox.id.clone(),
    };
    let stats = call("PodSandboxStats", ctx.rt().pod_sandbox_stats(request))
        .await?
        .stats
        .context("PodSandboxStats returned no stats")?;
    let attributes = stats
        .attributes
        .context("PodSandboxStats.attributes is missing")?;
    ensure_eq!(attributes.id, sandbox.id, "attributes.id");
    ensure_eq!(
        attributes.metadata,
        sandbox.config.metadata,
        "attributes.metadata"
    );
    let linux = stats.linux.context("PodSandboxStats.linux is missing")?;
    let cpu = linux.cpu.context("PodSandboxStats.linux.cpu is missing")?;
    ensure!(
        value(&cpu.usage_core_nano_seconds) > 0,
        "pod cpu.usage_core_nano_seconds is 0"
    );
    let memory = linux
        .memory
        .context("PodSandboxStats.linux.memory is missing")?;
    ensure!(
        value(&memory.working_set_bytes) > 0,
        "pod memory.working_set_bytes is 0"
    );
    let containers: Vec<String> = linux
        .containers
        .iter()
        .filter_map(|c| c.attributes.as_ref().map(|a| a.id.clone()))
        .collect();
    ensure_eq!(
        containers,
        vec![container.id],
        "containers in PodSandboxStats"
    );
    pass()
}

async fn sandbox_stats_unknown(ctx: Ctx) -> Result<Outcome> {
    let request = cri::PodSandboxStatsRequest {
        pod_sandbox_id: "0000000000000000000000000000000000000000000000000000000000c0ffee".into(),
    };
    let status = call_err("PodSandboxStats", ctx.rt().pod_sandbox_stats(request)).await?;
    ensure_code("PodSandboxStats(unknown)", &status, &[Code::NotFound])?;
    pass()
}

async fn list_sandbox_stats(ctx: &Ctx, filter: cri::PodSandboxStatsFilter) -> Result<Vec<String>> {
    let request = cri::ListPodSandboxStatsRequest {
        filter: Some(filter),
    };
    let mut ids: Vec<String> = call(
        "ListPodSandboxStats",
        ctx.rt().list_pod_sandbox_stats(request),
    )
    .await?
    .stats
    .into_iter()
    .filter_map(|s| s.attributes.map(|a| a.id))
    .collect();
    ids.sort();
    Ok(ids)
}

async fn list_sandbox_filter_id(ctx: Ctx) -> Result<Outcome> {
    let first = ctx.sandbox().await?;
    let _second = ctx.sandbox().await?;
    let ids = list_sandbox_stats(
        &ctx,
        cri::PodSandboxStatsFilter {
            id: first.id.clone(),
            ..Default::default()
        },
    )
    .await?;
    ensure_eq!(ids, vec![first.id], "ListPodSandboxStats(id)");
    pass()
}

async fn list_sandbox_filter_labels(ctx: Ctx) -> Result<Outcome> {
    let first = ctx.sandbox().await?;
    let second = ctx.sandbox().await?;
    let ids = list_sandbox_stats(
        &ctx,
        cri::PodSandboxStatsFilter {
            label_selector: ctx.labels(),
            ..Default::default()
        },
    )
    .await?;
    let mut expected = vec![first.id, second.id];
    expected.sort();
    ensure_eq!(ids, expected, "ListPodSandboxStats(case labels)");
    pass()
}

async fn stream_sandbox_stats(ctx: Ctx) -> Result<Outcome> {
    let first = ctx.sandbox().await?;
    let second = ctx.sandbox().await?;
    let filter = cri::PodSandboxStatsFilter {
        label_selector: ctx.labels(),
        ..Default::default()
    };
    let request = cri::StreamPodSandboxStatsRequest {
        filter: Some(filter.clone()),
    };
    let mut stream = call(
        "StreamPodSandboxStats",
        ctx.rt().stream_pod_sandbox_stats(request),
    )
    .await?;
    let mut streamed = Vec::new();
    while let Some(message) = stream
        .message()
        .await
        .map_err(|s| anyhow::anyhow!("StreamPodSandboxStats stream: {}", describe(&s)))?
    {
        streamed.extend(
            message
                .pod_sandbox_stats
                .into_iter()
                .filter_map(|s| s.attributes.map(|a| a.id)),
        );
    }
    streamed.sort();
    let listed = list_sandbox_stats(&ctx, filter).await?;
    let mut expected = vec![first.id, second.id];
    expected.sort();
    ensure_eq!(listed, expected, "ListPodSandboxStats(case labels)");
    ensure_eq!(streamed, listed, "StreamPodSandboxStats(case labels)");
    pass()
}

async fn descriptors(ctx: &Ctx) -> Result<Vec<cri::MetricDescriptor>> {
    Ok(call(
        "ListMetricDescriptors",
        ctx.rt()
            .list_metric_descriptors(cri::ListMetricDescriptorsRequest {}),
    )
    .await?
    .descriptors)
}

async fn metric_descriptors(ctx: Ctx) -> Result<Outcome> {
    let descriptors = descriptors(&ctx).await?;
    ensure!(
        !descriptors.is_empty(),
        "ListMetricDescriptors returned no descriptors"
    );
    for descriptor in &descriptors {
        ensure!(
            !descriptor.name.is_empty() && !descriptor.help.is_empty(),
            "descriptor without name or help: {descriptor:?}"
        );
    }
    let mut names: Vec<&str> = descriptors.iter().map(|d| d.name.as_str()).collect();
    names.sort_unstable();
    let count = names.len();
    names.dedup();
    ensure_eq!(names.len(), count, "distinct descriptor names");
    pass()
}

async fn sandbox_metrics(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = busy_container(&ctx, &sandbox).await?;
    let described: Vec<String> = descriptors(&ctx)
        .await?
        .into_iter()
        .map(|d| d.name)
        .collect();
    let metrics = call(
        "ListPodSandboxMetrics",
        ctx.rt()
            .list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest {}),
    )
    .await?
    .pod_metrics;
    let pod = metrics
        .iter()
        .find(|m| m.pod_sandbox_id == sandbox.id)
        .with_context(|| format!("ListPodSandboxMetrics has no entry for {}", sandbox.id))?;
    let ours = pod
        .container_metrics
        .iter()
        .find(|c| c.container_id == container.id)
        .with_context(|| format!("pod metrics lack container {}", container.id))?;
    ensure!(
        !ours.metrics.is_empty(),
        "no metrics for container {}",
        container.id
    );
    for metric in pod.metrics.iter().chain(&ours.metrics) {
        ensure!(
            described.contains(&metric.name),
            "metric {} is not in ListMetricDescriptors",
            metric.name
        );
    }
    pass()
}

async fn stream_sandbox_metrics(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let _container = ctx.sleeper(&sandbox).await?;
    let mut stream = call(
        "StreamPodSandboxMetrics",
        ctx.rt()
            .stream_pod_sandbox_metrics(cri::StreamPodSandboxMetricsRequest {}),
    )
    .await?;
    let mut ids = Vec::new();
    while let Some(message) = stream
        .message()
        .await
        .map_err(|s| anyhow::anyhow!("StreamPodSandboxMetrics stream: {}", describe(&s)))?
    {
        ids.extend(
            message
                .pod_sandbox_metrics
                .into_iter()
                .map(|m| m.pod_sandbox_id),
        );
    }
    ensure!(
        ids.contains(&sandbox.id),
        "StreamPodSandboxMetrics has no entry for {}",
        sandbox.id
    );
    pass()
}
