//! `[stats]`: ContainerStats, ListContainerStats (and its filters), PodSandboxStats,
//! ListPodSandboxStats, the streaming variants, ListMetricDescriptors and
//! ListPodSandboxMetrics. The metric cases beyond the first three are crius's own: containerd
//! 1.6 (the reference) predates the metric RPCs, so they skip there.

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
        case!(
            G,
            "every metric descriptor name is one of kubelet's cAdvisor names",
            [ListMetricDescriptors],
            descriptors_are_cadvisor_names
        ),
        case!(
            G,
            "CPU burnt by a busy loop shows in container_cpu_usage_seconds_total as the cgroup counts it, to the second",
            [ListPodSandboxMetrics, ListMetricDescriptors, ExecSync],
            metrics_cpu_matches_cgroup
        ),
        case!(
            G,
            "bytes sent from a pod show in container_network_transmit_bytes_total for eth0",
            [ListPodSandboxMetrics, ListMetricDescriptors, ExecSync],
            metrics_network_transmit
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

/// The container metric names kubelet's `/metrics/cadvisor` serves (cAdvisor's collector for
/// the metric sets kubelet enables). A runtime's descriptors replace these when kubelet reads
/// pod and container stats from the CRI, so no other name may appear.
const CADVISOR_NAMES: &[&str] = &[
    "container_blkio_device_usage_total",
    "container_cpu_cfs_periods_total",
    "container_cpu_cfs_throttled_periods_total",
    "container_cpu_cfs_throttled_seconds_total",
    "container_cpu_load_average_10s",
    "container_cpu_system_seconds_total",
    "container_cpu_usage_seconds_total",
    "container_cpu_user_seconds_total",
    "container_file_descriptors",
    "container_fs_inodes_free",
    "container_fs_inodes_total",
    "container_fs_io_current",
    "container_fs_io_time_seconds_total",
    "container_fs_io_time_weighted_seconds_total",
    "container_fs_limit_bytes",
    "container_fs_read_seconds_total",
    "container_fs_reads_bytes_total",
    "container_fs_reads_merged_total",
    "container_fs_reads_total",
    "container_fs_sector_reads_total",
    "container_fs_sector_writes_total",
    "container_fs_usage_bytes",
    "container_fs_write_seconds_total",
    "container_fs_writes_bytes_total",
    "container_fs_writes_merged_total",
    "container_fs_writes_total",
    "container_last_seen",
    "container_memory_cache",
    "container_memory_failcnt",
    "container_memory_failures_total",
    "container_memory_kernel_usage",
    "container_memory_mapped_file",
    "container_memory_max_usage_bytes",
    "container_memory_rss",
    "container_memory_swap",
    "container_memory_total_active_file_bytes",
    "container_memory_total_inactive_file_bytes",
    "container_memory_usage_bytes",
    "container_memory_working_set_bytes",
    "container_network_receive_bytes_total",
    "container_network_receive_errors_total",
    "container_network_receive_packets_dropped_total",
    "container_network_receive_packets_total",
    "container_network_transmit_bytes_total",
    "container_network_transmit_errors_total",
    "container_network_transmit_packets_dropped_total",
    "container_network_transmit_packets_total",
    "container_oom_events_total",
    "container_pressure_cpu_stalled_seconds_total",
    "container_pressure_cpu_waiting_seconds_total",
    "container_pressure_io_stalled_seconds_total",
    "container_pressure_io_waiting_seconds_total",
    "container_pressure_memory_stalled_seconds_total",
    "container_pressure_memory_waiting_seconds_total",
    "container_processes",
    "container_sockets",
    "container_spec_cpu_period",
    "container_spec_cpu_quota",
    "container_spec_cpu_shares",
    "container_spec_memory_limit_bytes",
    "container_spec_memory_reservation_limit_bytes",
    "container_spec_memory_swap_limit_bytes",
    "container_start_time_seconds",
    "container_tasks_state",
    "container_threads",
    "container_threads_max",
    "container_ulimits_soft",
];

async fn descriptors_are_cadvisor_names(ctx: Ctx) -> Result<Outcome> {
    let unknown: Vec<String> = descriptors(&ctx)
        .await?
        .into_iter()
        .map(|d| d.name)
        .filter(|name| !CADVISOR_NAMES.contains(&name.as_str()))
        .collect();
    ensure!(
        unknown.is_empty(),
        "descriptors kubelet's /metrics/cadvisor does not know: {unknown:?}"
    );
    pass()
}

/// The value of metric `name` among `metrics` whose label `key` is `value` (any value of the
/// other labels), with the label keys taken from the endpoint's own descriptors.
fn metric_value(
    described: &[cri::MetricDescriptor],
    metrics: &[cri::Metric],
    name: &str,
    key: &str,
    wanted: &str,
) -> Result<Option<u64>> {
    let descriptor = described
        .iter()
        .find(|d| d.name == name)
        .with_context(|| format!("ListMetricDescriptors does not describe {name}"))?;
    let index = descriptor
        .label_keys
        .iter()
        .position(|k| k == key)
        .with_context(|| format!("{name} has no label {key}: {:?}", descriptor.label_keys))?;
    Ok(metrics
        .iter()
        .find(|m| m.name == name && m.label_values.get(index).is_some_and(|v| v == wanted))
        .map(|m| value(&m.value)))
}

async fn pod_metrics(ctx: &Ctx, sandbox_id: &str) -> Result<cri::PodSandboxMetrics> {
    call(
        "ListPodSandboxMetrics",
        ctx.rt()
            .list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest {}),
    )
    .await?
    .pod_metrics
    .into_iter()
    .find(|m| m.pod_sandbox_id == sandbox_id)
    .with_context(|| format!("ListPodSandboxMetrics has no entry for {sandbox_id}"))
}

/// Where the node keeps a container's cumulative CPU time: v1 `cpuacct.usage` (ns) or v2
/// `cpu.stat` (`usage_usec`), found from the container's own `/proc/self/cgroup`.
enum CpuCounter {
    V1(std::path::PathBuf),
    V2(std::path::PathBuf),
}

impl CpuCounter {
    async fn of(ctx: &Ctx, container: &Container) -> Result<CpuCounter> {
        let cgroups = ctx.sh(&container.id, "cat /proc/self/cgroup").await?;
        let path_of = |wanted: &dyn Fn(&str) -> bool| {
            cgroups.lines().find_map(|line| {
                let mut parts = line.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                wanted(controllers).then(|| path.to_owned())
            })
        };
        if let Some(path) = path_of(&|c| c.split(',').any(|c| c == "cpuacct")) {
            if let Some(dir) = host::cgroup_dirs(&path)
                .into_iter()
                .find(|d| d.join("cpuacct.usage").is_file())
            {
                return Ok(CpuCounter::V1(dir.join("cpuacct.usage")));
            }
        }
        if let Some(path) = path_of(&|c| c.is_empty()) {
            let file = std::path::Path::new("/sys/fs/cgroup")
                .join(path.trim_start_matches('/'))
                .join("cpu.stat");
            if file.is_file() && path != "/" {
                return Ok(CpuCounter::V2(file));
            }
        }
        bail!(
            "no CPU counter of container {} on the node (its /proc/self/cgroup: {cgroups:?})",
            container.id
        )
    }

    fn nanos(&self) -> Result<u64> {
        let (path, v2) = match self {
            CpuCounter::V1(path) => (path, false),
            CpuCounter::V2(path) => (path, true),
        };
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let number = if v2 {
            text.lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .with_context(|| format!("no usage_usec in {}", path.display()))?
        } else {
            text.trim()
        };
        let number: u64 = number
            .trim()
            .parse()
            .with_context(|| format!("{}: {text:?}", path.display()))?;
        Ok(if v2 { number * 1000 } else { number })
    }
}

/// CPU time the busy loop burns before it is stopped: enough that a whole-second counter
/// must read at least 2.
const BURN_NANOS: u64 = 2_200_000_000;

async fn metrics_cpu_matches_cgroup(ctx: Ctx) -> Result<Outcome> {
    // Asked first, so an endpoint without the metric RPCs skips before any work.
    let described = descriptors(&ctx).await?;
    let sandbox = ctx.sandbox().await?;
    // `[` and `:` are shell builtins: the loop forks nothing, it only burns CPU until told.
    let script = "while [ ! -e /tmp/stop ]; do :; done; exec sleep 3600";
    let config = ctx.container_config(&sandbox, &["sh", "-c", script]);
    let container = ctx.running_container(&sandbox, config).await?;
    let counter = CpuCounter::of(&ctx, &container).await?;
    // Two busy cores on a loaded machine may give the loop far less than wall time.
    let deadline = Instant::now() + Duration::from_secs(60);
    while counter.nanos()? < BURN_NANOS {
        if Instant::now() >= deadline {
            bail!(
                "the busy loop burnt only {} ns of CPU in 60 s",
                counter.nanos()?
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ctx.sh(&container.id, "touch /tmp/stop").await?;
    // The counter barely moves now; the metric is read between two readings of it.
    let before = counter.nanos()?;
    let pod = pod_metrics(&ctx, &sandbox.id).await?;
    let after = counter.nanos()?;
    let metrics = pod
        .container_metrics
        .iter()
        .find(|c| c.container_id == container.id)
        .with_context(|| format!("ListPodSandboxMetrics lacks container {}", container.id))?;
    let seconds = metric_value(
        &described,
        &metrics.metrics,
        "container_cpu_usage_seconds_total",
        "cpu",
        "total",
    )?
    .context("no container_cpu_usage_seconds_total{cpu=\"total\"} for the container")?;
    // The CRI carries whole numbers: the tolerance is the truncation to whole seconds.
    let (low, high) = (before / 1_000_000_000, after / 1_000_000_000);
    ensure!(
        (low..=high).contains(&seconds),
        "container_cpu_usage_seconds_total is {seconds}; the cgroup counted {before} ns before \
         and {after} ns after the call, so it must be in {low}..={high}"
    );
    ensure!(
        seconds >= 2,
        "container_cpu_usage_seconds_total is {seconds} after burning ≥ 2.2 s"
    );
    pass()
}

/// The pod's `eth0` transmit counter as its own network namespace reads it.
async fn eth0_tx_bytes(ctx: &Ctx, container: &Container) -> Result<u64> {
    let net_dev = ctx.sh(&container.id, "cat /proc/net/dev").await?;
    net_dev
        .lines()
        .find_map(|line| {
            let (name, counters) = line.split_once(':')?;
            (name.trim() == "eth0").then(|| counters.split_whitespace().nth(8)?.parse().ok())?
        })
        .with_context(|| format!("no eth0 in the pod's /proc/net/dev: {net_dev:?}"))
}

/// What the sending pod transmits: 1 MiB over TCP to a peer pod on the test's bridge.
const PAYLOAD: u64 = 1 << 20;

async fn metrics_network_transmit(ctx: Ctx) -> Result<Outcome> {
    let described = descriptors(&ctx).await?;
    let receiver = ctx.sandbox().await?;
    let receiver_ip = ctx.pod_ip(&receiver).await?;
    // busybox nc quits when its stdin ends, so the listener's stdin is held open.
    let listen = ctx.container_config(
        &receiver,
        &["sh", "-c", "sleep 3600 | nc -l -p 9000 > /dev/null"],
    );
    ctx.running_container(&receiver, listen).await?;
    let sender = ctx.sandbox().await?;
    ctx.pod_ip(&sender).await?;
    let container = ctx.sleeper(&sender).await?;
    let transmitted = |pod: &cri::PodSandboxMetrics| {
        metric_value(
            &described,
            &pod.metrics,
            "container_network_transmit_bytes_total",
            "interface",
            "eth0",
        )?
        .context("no pod-level container_network_transmit_bytes_total{interface=\"eth0\"}")
    };
    let before = transmitted(&pod_metrics(&ctx, &sender.id).await?)?;
    ctx.sh(
        &container.id,
        &format!(
            "head -c {PAYLOAD} /dev/zero > /tmp/payload && \
             for i in $(seq 50); do nc {receiver_ip} 9000 < /tmp/payload && exit 0; sleep 0.2; done; exit 1"
        ),
    )
    .await?;
    // nc may end before the kernel has sent the last segments.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let counted_before = eth0_tx_bytes(&ctx, &container).await?;
        let after = transmitted(&pod_metrics(&ctx, &sender.id).await?)?;
        let counted_after = eth0_tx_bytes(&ctx, &container).await?;
        ensure!(
            (counted_before..=counted_after).contains(&after),
            "container_network_transmit_bytes_total{{interface=\"eth0\"}} is {after}, but the \
             pod's /proc/net/dev counted {counted_before} before and {counted_after} after the call"
        );
        let sent = after - before.min(after);
        // Headers add ~5 % at a 1448-byte MSS (less with segmentation offload); ARP and
        // neighbour discovery a few hundred bytes.
        let most = PAYLOAD + PAYLOAD / 10;
        if sent >= PAYLOAD {
            ensure!(
                sent <= most,
                "eth0 transmitted {sent} bytes for a {PAYLOAD}-byte payload; expected at most {most}"
            );
            return pass();
        }
        if Instant::now() >= deadline {
            bail!("eth0 transmitted {sent} bytes after a {PAYLOAD}-byte payload was sent; expected {PAYLOAD}..={most}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
