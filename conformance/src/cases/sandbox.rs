//! `[sandbox]`: lifecycle, status, listing and filters, idempotency, names, pod-level config
//! (hostname, DNS, sysctls, labels, cgroup parent) and the pod network.

use std::net::SocketAddr;

use super::prelude::*;

pub fn cases() -> Vec<Case> {
    use Group::Sandbox as G;
    vec![
        case!(
            G,
            "RunPodSandbox starts a READY sandbox whose status echoes its metadata",
            [RunPodSandbox, PodSandboxStatus],
            run_and_status
        ),
        case!(
            G,
            "PodSandboxStatus with a timestamp lists every container of the pod with its state",
            [PodSandboxStatus, CreateContainer, StartContainer],
            status_lists_containers
        ),
        case!(
            G,
            "PodSandboxStatus of an unknown id is NotFound",
            [PodSandboxStatus],
            status_unknown
        ),
        case!(
            G,
            "ListPodSandbox lists a new sandbox with metadata, state and labels",
            [ListPodSandbox],
            list_lists_new
        ),
        case!(
            G,
            "ListPodSandbox filter by id returns only that sandbox",
            [ListPodSandbox],
            list_filter_id
        ),
        case!(
            G,
            "ListPodSandbox filter by state READY leaves out stopped sandboxes",
            [ListPodSandbox, StopPodSandbox],
            list_filter_ready
        ),
        case!(
            G,
            "ListPodSandbox filter by state NOTREADY returns only stopped sandboxes",
            [ListPodSandbox, StopPodSandbox],
            list_filter_notready
        ),
        case!(
            G,
            "ListPodSandbox filter by label selector matches all given labels",
            [ListPodSandbox],
            list_filter_labels
        ),
        case!(
            G,
            "ListPodSandbox filter combining id, state and labels",
            [ListPodSandbox],
            list_filter_combined
        ),
        case!(
            G,
            "StreamPodSandboxes returns what ListPodSandbox returns",
            [StreamPodSandboxes, ListPodSandbox],
            stream_sandboxes
        ),
        case!(
            G,
            "StopPodSandbox makes the sandbox NOTREADY",
            [StopPodSandbox, PodSandboxStatus],
            stop_not_ready
        ),
        case!(
            G,
            "StopPodSandbox twice succeeds",
            [StopPodSandbox],
            stop_twice
        ),
        case!(
            G,
            "StopPodSandbox stops the sandbox's containers",
            [StopPodSandbox, ContainerStatus],
            stop_stops_containers
        ),
        case!(
            G,
            "RemovePodSandbox removes it from status and list",
            [RemovePodSandbox, PodSandboxStatus, ListPodSandbox],
            remove_removes
        ),
        case!(
            G,
            "RemovePodSandbox of a removed sandbox succeeds",
            [RemovePodSandbox],
            remove_twice
        ),
        case!(
            G,
            "StopPodSandbox of an unknown id succeeds or is NotFound",
            [StopPodSandbox],
            stop_unknown
        ),
        case!(
            G,
            "RemovePodSandbox of an unknown id succeeds",
            [RemovePodSandbox],
            remove_unknown
        ),
        case!(
            G,
            "RemovePodSandbox of a running sandbox stops and removes it",
            [RemovePodSandbox],
            remove_running
        ),
        case!(
            G,
            "RemovePodSandbox removes the sandbox's containers",
            [RemovePodSandbox, ContainerStatus],
            remove_removes_containers
        ),
        case!(
            G,
            "a second sandbox with the same name, uid, namespace and attempt is refused",
            [RunPodSandbox],
            duplicate_name
        ),
        case!(
            G,
            "a sandbox with the same name and the next attempt runs",
            [RunPodSandbox],
            next_attempt
        ),
        case!(
            G,
            "the name of a removed sandbox can be used again",
            [RunPodSandbox, RemovePodSandbox],
            name_reuse
        ),
        case!(
            G,
            "RunPodSandbox without metadata is rejected",
            [RunPodSandbox],
            run_without_metadata
        ),
        case!(
            G,
            "RunPodSandbox with an unknown runtime handler is rejected",
            [RunPodSandbox],
            unknown_handler
        ),
        case!(
            G,
            "labels and annotations round-trip through status and list",
            [PodSandboxStatus, ListPodSandbox],
            labels_annotations
        ),
        case!(
            G,
            "containers see the sandbox's hostname",
            [RunPodSandbox, ExecSync],
            hostname
        ),
        case!(
            G,
            "DNS config becomes the containers' /etc/resolv.conf",
            [RunPodSandbox, ExecSync],
            dns_config
        ),
        case!(
            G,
            "sysctls apply in the pod's IPC and network namespaces",
            [RunPodSandbox, ExecSync],
            sysctls
        ),
        case!(
            G,
            "containers run below the sandbox's cgroup parent",
            [RunPodSandbox, ExecSync],
            cgroup_parent
        ),
        case!(
            G,
            "PodSandboxStatus reports the IP the pod has on eth0",
            [PodSandboxStatus, ExecSync],
            pod_ip_matches
        ),
        case!(
            G,
            "the pod IP answers from the node",
            [RunPodSandbox],
            pod_ip_reachable
        ),
        case!(
            G,
            "a hostPort on 127.0.0.1 reaches the container port",
            [RunPodSandbox],
            host_port
        ),
        case!(
            G,
            "StopPodSandbox tears the pod network down",
            [StopPodSandbox],
            stop_tears_network_down
        ),
        case!(
            G,
            "UpdatePodSandboxResources accepts new resources for a running sandbox",
            [UpdatePodSandboxResources],
            update_resources
        ),
        case!(
            G,
            "UpdatePodSandboxResources of an unknown sandbox is NotFound",
            [UpdatePodSandboxResources],
            update_resources_unknown
        ),
    ]
}

fn ready() -> i32 {
    cri::PodSandboxState::SandboxReady as i32
}

fn not_ready() -> i32 {
    cri::PodSandboxState::SandboxNotready as i32
}

fn state_filter(state: cri::PodSandboxState) -> Option<cri::PodSandboxStateValue> {
    Some(cri::PodSandboxStateValue {
        state: state as i32,
    })
}

fn ids(items: &[cri::PodSandbox]) -> Vec<&str> {
    items.iter().map(|s| s.id.as_str()).collect()
}

async fn run_and_status(ctx: Ctx) -> Result<Outcome> {
    let before = now_nanos();
    let sandbox = ctx.sandbox().await?;
    let after = now_nanos();
    let status = ctx.sandbox_state(&sandbox.id).await?;
    ensure_eq!(status.id, sandbox.id, "PodSandboxStatus.id");
    ensure_eq!(
        status.metadata,
        sandbox.config.metadata,
        "PodSandboxStatus.metadata"
    );
    ensure_eq!(status.state, ready(), "PodSandboxStatus.state (0 = READY)");
    ensure!(
        status.created_at >= before - 1_000_000_000 && status.created_at <= after + 1_000_000_000,
        "PodSandboxStatus.created_at: expected between {before} and {after} (ns), got {}",
        status.created_at
    );
    pass()
}

/// kubelet's evented PLEG takes a pod's containers from `containers_statuses` whenever the
/// answer carries a `timestamp` (CRI: "timestamp ... when this status was generated"); an
/// empty list there makes kubelet start the pod's containers again on every sync.
async fn status_lists_containers(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let running = ctx.sleeper(&sandbox).await?;
    let created = ctx
        .create_container(&sandbox, ctx.container_config(&sandbox, &["true"]))
        .await?;
    let before = now_nanos();
    let response = ctx.sandbox_status(&sandbox.id).await?;
    let after = now_nanos();
    if response.timestamp == 0 {
        // containerd 1.6 sets no timestamp and no list: kubelet then relists, which is safe.
        ensure!(
            response.containers_statuses.is_empty(),
            "PodSandboxStatus without a timestamp lists containers: {:?}",
            response.containers_statuses
        );
        return Err(skip(
            "the endpoint sets no PodSandboxStatus.timestamp (containerd 1.6)",
        ));
    }
    ensure!(
        response.timestamp >= before - 1_000_000_000 && response.timestamp <= after + 1_000_000_000,
        "PodSandboxStatus.timestamp: expected nanoseconds between {before} and {after}, got {}",
        response.timestamp
    );
    let mut listed: Vec<(String, String)> = response
        .containers_statuses
        .iter()
        .map(|s| (s.id.clone(), crate::runner::container_state_name(s.state)))
        .collect();
    listed.sort();
    let mut expected = vec![
        (running.id.clone(), "ContainerRunning".to_owned()),
        (created.id.clone(), "ContainerCreated".to_owned()),
    ];
    expected.sort();
    ensure_eq!(
        listed,
        expected,
        "PodSandboxStatus.containers_statuses (id, state)"
    );
    let first = response
        .containers_statuses
        .iter()
        .find(|s| s.id == running.id)
        .context("the running container is not listed")?;
    let direct = ctx.container_status(&running.id).await?;
    ensure_eq!(
        first.metadata,
        direct.metadata,
        "listed metadata of {} against ContainerStatus",
        running.id
    );
    ensure_eq!(
        first.started_at,
        direct.started_at,
        "listed started_at of {} against ContainerStatus",
        running.id
    );
    // What changes shows at once: a stopped container is listed as exited, with its exit.
    call(
        "StopContainer",
        ctx.rt().stop_container(cri::StopContainerRequest {
            container_id: running.id.clone(),
            timeout: 0,
        }),
    )
    .await?;
    let again = ctx.sandbox_status(&sandbox.id).await?;
    let stopped = again
        .containers_statuses
        .iter()
        .find(|s| s.id == running.id)
        .context("the stopped container is not listed")?;
    let direct = ctx.container_status(&running.id).await?;
    ensure_eq!(
        (
            crate::runner::container_state_name(stopped.state),
            stopped.finished_at,
            stopped.exit_code
        ),
        (
            "ContainerExited".to_owned(),
            direct.finished_at,
            direct.exit_code
        ),
        "listed (state, finished_at, exit_code) of {} after StopContainer",
        running.id
    );
    pass()
}

async fn status_unknown(ctx: Ctx) -> Result<Outcome> {
    let request = cri::PodSandboxStatusRequest {
        pod_sandbox_id: UNKNOWN_ID.into(),
        verbose: false,
    };
    let status = call_err("PodSandboxStatus", ctx.rt().pod_sandbox_status(request)).await?;
    ensure_code("PodSandboxStatus(unknown)", &status, &[Code::NotFound])?;
    pass()
}

async fn list_lists_new(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let all = ctx.list_sandboxes(cri::PodSandboxFilter::default()).await?;
    let item = all
        .iter()
        .find(|s| s.id == sandbox.id)
        .with_context(|| format!("ListPodSandbox does not list {}", sandbox.id))?;
    ensure_eq!(item.metadata, sandbox.config.metadata, "listed metadata");
    ensure_eq!(item.state, ready(), "listed state (0 = READY)");
    ensure_eq!(item.labels, sandbox.config.labels, "listed labels");
    ensure!(
        item.created_at > 0,
        "listed created_at is {}",
        item.created_at
    );
    pass()
}

async fn list_filter_id(ctx: Ctx) -> Result<Outcome> {
    let first = ctx.sandbox().await?;
    let _second = ctx.sandbox().await?;
    let filter = cri::PodSandboxFilter {
        id: first.id.clone(),
        ..Default::default()
    };
    let items = ctx.list_sandboxes(filter).await?;
    ensure_eq!(
        ids(&items),
        vec![first.id.as_str()],
        "ListPodSandbox(id filter)"
    );
    pass()
}

async fn two_sandboxes_one_stopped(ctx: &Ctx) -> Result<(Sandbox, Sandbox)> {
    let running = ctx.sandbox().await?;
    let stopped = ctx.sandbox().await?;
    ctx.stop_sandbox(&stopped.id).await?;
    Ok((running, stopped))
}

async fn list_filter_ready(ctx: Ctx) -> Result<Outcome> {
    let (running, stopped) = two_sandboxes_one_stopped(&ctx).await?;
    let filter = cri::PodSandboxFilter {
        state: state_filter(cri::PodSandboxState::SandboxReady),
        ..Default::default()
    };
    let items = ctx.list_sandboxes(filter).await?;
    ensure!(
        items.iter().all(|s| s.state == ready()),
        "ListPodSandbox(state READY) returned a sandbox in another state: {items:?}"
    );
    let listed = ids(&items);
    ensure!(
        listed.contains(&running.id.as_str()),
        "READY filter misses {}",
        running.id
    );
    ensure!(
        !listed.contains(&stopped.id.as_str()),
        "READY filter lists stopped {}",
        stopped.id
    );
    pass()
}

async fn list_filter_notready(ctx: Ctx) -> Result<Outcome> {
    let (running, stopped) = two_sandboxes_one_stopped(&ctx).await?;
    let filter = cri::PodSandboxFilter {
        state: state_filter(cri::PodSandboxState::SandboxNotready),
        label_selector: ctx.labels(),
        ..Default::default()
    };
    let items = ctx.list_sandboxes(filter).await?;
    ensure_eq!(
        ids(&items),
        vec![stopped.id.as_str()],
        "ListPodSandbox(state NOTREADY, case labels)"
    );
    ensure!(
        !ids(&items).contains(&running.id.as_str()),
        "NOTREADY filter lists {}",
        running.id
    );
    pass()
}

async fn list_filter_labels(ctx: Ctx) -> Result<Outcome> {
    let mut config_a = ctx.sandbox_config()?;
    config_a.labels.insert("pick".into(), "a".into());
    let a = ctx.run_sandbox(config_a).await?;
    let mut config_b = ctx.sandbox_config()?;
    config_b.labels.insert("pick".into(), "b".into());
    let _b = ctx.run_sandbox(config_b).await?;

    let mut selector = ctx.labels();
    selector.insert("pick".into(), "a".into());
    let filter = cri::PodSandboxFilter {
        label_selector: selector.clone(),
        ..Default::default()
    };
    let items = ctx.list_sandboxes(filter).await?;
    ensure_eq!(
        ids(&items),
        vec![a.id.as_str()],
        "ListPodSandbox(labels pick=a)"
    );

    selector.insert("pick".into(), "c".into());
    let filter = cri::PodSandboxFilter {
        label_selector: selector,
        ..Default::default()
    };
    let items = ctx.list_sandboxes(filter).await?;
    ensure_eq!(
        ids(&items),
        Vec::<&str>::new(),
        "ListPodSandbox(labels pick=c)"
    );
    pass()
}

async fn list_filter_combined(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let filter = |state| cri::PodSandboxFilter {
        id: sandbox.id.clone(),
        state: state_filter(state),
        label_selector: ctx.labels(),
    };
    let items = ctx
        .list_sandboxes(filter(cri::PodSandboxState::SandboxReady))
        .await?;
    ensure_eq!(
        ids(&items),
        vec![sandbox.id.as_str()],
        "ListPodSandbox(id, READY, labels)"
    );
    let items = ctx
        .list_sandboxes(filter(cri::PodSandboxState::SandboxNotready))
        .await?;
    ensure_eq!(
        ids(&items),
        Vec::<&str>::new(),
        "ListPodSandbox(id, NOTREADY, labels)"
    );
    pass()
}

async fn stream_sandboxes(ctx: Ctx) -> Result<Outcome> {
    let first = ctx.sandbox().await?;
    let second = ctx.sandbox().await?;
    let filter = cri::PodSandboxFilter {
        label_selector: ctx.labels(),
        ..Default::default()
    };
    let request = cri::StreamPodSandboxesRequest {
        filter: Some(filter.clone()),
    };
    let mut stream = call("StreamPodSandboxes", ctx.rt().stream_pod_sandboxes(request)).await?;
    let mut streamed = Vec::new();
    while let Some(message) = stream
        .message()
        .await
        .map_err(|s| anyhow::anyhow!("StreamPodSandboxes stream: {}", describe(&s)))?
    {
        streamed.extend(message.pod_sandboxes.into_iter().map(|s| s.id));
    }
    let mut listed: Vec<String> = ctx
        .list_sandboxes(filter)
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
    streamed.sort();
    listed.sort();
    let mut expected = vec![first.id, second.id];
    expected.sort();
    ensure_eq!(listed, expected, "ListPodSandbox(case labels)");
    ensure_eq!(streamed, listed, "StreamPodSandboxes(case labels)");
    pass()
}

async fn stop_not_ready(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    ctx.stop_sandbox(&sandbox.id).await?;
    let status = ctx.sandbox_state(&sandbox.id).await?;
    ensure_eq!(
        status.state,
        not_ready(),
        "state after StopPodSandbox (1 = NOTREADY)"
    );
    pass()
}

async fn stop_twice(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    ctx.stop_sandbox(&sandbox.id).await?;
    // CRI: StopPodSandbox is idempotent.
    ctx.stop_sandbox(&sandbox.id).await?;
    let status = ctx.sandbox_state(&sandbox.id).await?;
    ensure_eq!(
        status.state,
        not_ready(),
        "state after two stops (1 = NOTREADY)"
    );
    pass()
}

async fn stop_stops_containers(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    ctx.stop_sandbox(&sandbox.id).await?;
    let status = ctx.container_status(&container.id).await?;
    ensure_eq!(
        crate::runner::container_state_name(status.state),
        "ContainerExited",
        "container state after StopPodSandbox"
    );
    pass()
}

async fn remove_removes(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    ctx.stop_sandbox(&sandbox.id).await?;
    ctx.remove_sandbox(&sandbox.id).await?;
    let request = cri::PodSandboxStatusRequest {
        pod_sandbox_id: sandbox.id.clone(),
        verbose: false,
    };
    let status = call_err("PodSandboxStatus", ctx.rt().pod_sandbox_status(request)).await?;
    ensure_code("PodSandboxStatus(removed)", &status, &[Code::NotFound])?;
    let filter = cri::PodSandboxFilter {
        id: sandbox.id.clone(),
        ..Default::default()
    };
    let items = ctx.list_sandboxes(filter).await?;
    ensure_eq!(
        ids(&items),
        Vec::<&str>::new(),
        "ListPodSandbox(id of removed sandbox)"
    );
    pass()
}

async fn remove_twice(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    ctx.stop_sandbox(&sandbox.id).await?;
    ctx.remove_sandbox(&sandbox.id).await?;
    // CRI: RemovePodSandbox must not fail when the sandbox is already gone.
    ctx.remove_sandbox(&sandbox.id).await?;
    pass()
}

const UNKNOWN_ID: &str = "0000000000000000000000000000000000000000000000000000000000c0ffee";

async fn stop_unknown(ctx: Ctx) -> Result<Outcome> {
    let request = cri::StopPodSandboxRequest {
        pod_sandbox_id: UNKNOWN_ID.into(),
    };
    // CRI: stopping what is already gone must not fail; kubelet also accepts NotFound.
    if let Err(status) = ctx.rt().stop_pod_sandbox(request).await {
        if status.code() == Code::Unimplemented {
            return Err(crate::runner::check::unimplemented(
                "StopPodSandbox",
                &status,
            ));
        }
        ensure_code("StopPodSandbox(unknown)", &status, &[Code::NotFound])?;
    }
    pass()
}

async fn remove_unknown(ctx: Ctx) -> Result<Outcome> {
    // CRI: RemovePodSandbox must not return an error when the sandbox is already gone.
    ctx.remove_sandbox(UNKNOWN_ID).await?;
    pass()
}

async fn remove_running(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let _container = ctx.sleeper(&sandbox).await?;
    ctx.remove_sandbox(&sandbox.id).await?;
    let filter = cri::PodSandboxFilter {
        id: sandbox.id.clone(),
        ..Default::default()
    };
    let items = ctx.list_sandboxes(filter).await?;
    ensure_eq!(
        ids(&items),
        Vec::<&str>::new(),
        "ListPodSandbox after removing a running sandbox"
    );
    pass()
}

async fn remove_removes_containers(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    ctx.stop_sandbox(&sandbox.id).await?;
    ctx.remove_sandbox(&sandbox.id).await?;
    let request = cri::ContainerStatusRequest {
        container_id: container.id.clone(),
        verbose: false,
    };
    let status = call_err("ContainerStatus", ctx.rt().container_status(request)).await?;
    ensure_code(
        "ContainerStatus(container of removed sandbox)",
        &status,
        &[Code::NotFound],
    )?;
    pass()
}

async fn duplicate_name(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let request = cri::RunPodSandboxRequest {
        config: Some(sandbox.config.clone()),
        runtime_handler: String::new(),
    };
    let status = call_err("RunPodSandbox", ctx.rt().run_pod_sandbox(request)).await?;
    // containerd 1.6's name registrar answers "name is reserved" without a code.
    ensure_code_on(
        &ctx,
        "RunPodSandbox(duplicate)",
        &status,
        Code::AlreadyExists,
        &[Code::Unknown],
    )?;
    // The original keeps running.
    let original = ctx.sandbox_state(&sandbox.id).await?;
    ensure_eq!(
        original.state,
        ready(),
        "state of the first sandbox (0 = READY)"
    );
    ensure!(
        !status.message().is_empty(),
        "the duplicate was refused without a message ({})",
        describe(&status)
    );
    pass()
}

async fn next_attempt(ctx: Ctx) -> Result<Outcome> {
    let first = ctx.sandbox().await?;
    ctx.stop_sandbox(&first.id).await?;
    let mut config = first.config.clone();
    if let Some(metadata) = config.metadata.as_mut() {
        metadata.attempt = 1;
    }
    let second = ctx.run_sandbox(config).await?;
    ensure!(
        second.id != first.id,
        "the next attempt got the same id {}",
        first.id
    );
    let status = ctx.sandbox_state(&second.id).await?;
    ensure_eq!(
        status.metadata.map(|m| m.attempt),
        Some(1),
        "attempt of the second sandbox"
    );
    pass()
}

async fn name_reuse(ctx: Ctx) -> Result<Outcome> {
    let first = ctx.sandbox().await?;
    ctx.stop_sandbox(&first.id).await?;
    ctx.remove_sandbox(&first.id).await?;
    let second = ctx.run_sandbox(first.config.clone()).await?;
    let status = ctx.sandbox_state(&second.id).await?;
    ensure_eq!(
        status.state,
        ready(),
        "state of the sandbox reusing the name (0 = READY)"
    );
    pass()
}

async fn run_without_metadata(ctx: Ctx) -> Result<Outcome> {
    let mut config = ctx.sandbox_config()?;
    config.metadata = None;
    let request = cri::RunPodSandboxRequest {
        config: Some(config),
        runtime_handler: String::new(),
    };
    let status = call_err("RunPodSandbox", ctx.rt().run_pod_sandbox(request)).await?;
    // api.proto: metadata is required, and the sandbox is named from it.
    ensure_code_on(
        &ctx,
        "RunPodSandbox(no metadata)",
        &status,
        Code::InvalidArgument,
        &[Code::Unknown],
    )?;
    pass()
}

async fn unknown_handler(ctx: Ctx) -> Result<Outcome> {
    let config = ctx.sandbox_config()?;
    let request = cri::RunPodSandboxRequest {
        config: Some(config),
        runtime_handler: "no-such-handler".into(),
    };
    let status = call_err("RunPodSandbox", ctx.rt().run_pod_sandbox(request)).await?;
    // A handler the runtime does not offer (RuntimeStatus lists them) is bad input.
    ensure_code_on(
        &ctx,
        "RunPodSandbox(unknown handler)",
        &status,
        Code::InvalidArgument,
        &[Code::Unknown],
    )?;
    pass()
}

async fn labels_annotations(ctx: Ctx) -> Result<Outcome> {
    let mut config = ctx.sandbox_config()?;
    config.labels.insert("app".into(), "conformance".into());
    config
        .labels
        .insert("example.com/tier".into(), "backend".into());
    config.annotations = HashMap::from([
        ("note".to_owned(), "hello world".to_owned()),
        ("example.com/json".to_owned(), "{\"a\": [1, 2]}".to_owned()),
        ("empty".to_owned(), String::new()),
    ]);
    let sandbox = ctx.run_sandbox(config.clone()).await?;
    let status = ctx.sandbox_state(&sandbox.id).await?;
    ensure_eq!(status.labels, config.labels, "PodSandboxStatus.labels");
    ensure_eq!(
        status.annotations,
        config.annotations,
        "PodSandboxStatus.annotations"
    );
    let filter = cri::PodSandboxFilter {
        id: sandbox.id.clone(),
        ..Default::default()
    };
    let listed = ctx.list_sandboxes(filter).await?;
    let item = listed
        .first()
        .context("ListPodSandbox(id) returned nothing")?;
    ensure_eq!(item.labels, config.labels, "listed labels");
    ensure_eq!(item.annotations, config.annotations, "listed annotations");
    pass()
}

async fn hostname(ctx: Ctx) -> Result<Outcome> {
    let mut config = ctx.sandbox_config()?;
    let name = format!("conf-{}", ctx.run_id());
    config.hostname = name.clone();
    let sandbox = ctx.run_sandbox(config).await?;
    let container = ctx.sleeper(&sandbox).await?;
    ensure_eq!(
        ctx.sh(&container.id, "hostname").await?,
        name,
        "`hostname` in the container"
    );
    ensure_eq!(
        ctx.sh(&container.id, "cat /etc/hostname").await?,
        name,
        "/etc/hostname"
    );
    pass()
}

async fn dns_config(ctx: Ctx) -> Result<Outcome> {
    let mut config = ctx.sandbox_config()?;
    config.dns_config = Some(cri::DnsConfig {
        servers: strings(&["192.0.2.53", "192.0.2.54"]),
        searches: strings(&["one.example", "two.example"]),
        options: strings(&["ndots:5", "timeout:2"]),
    });
    let sandbox = ctx.run_sandbox(config).await?;
    let container = ctx.sleeper(&sandbox).await?;
    let resolv = ctx.sh(&container.id, "cat /etc/resolv.conf").await?;
    let lines: Vec<&str> = resolv.lines().map(str::trim).collect();
    for expected in [
        "nameserver 192.0.2.53",
        "nameserver 192.0.2.54",
        "search one.example two.example",
        "options ndots:5 timeout:2",
    ] {
        ensure!(
            lines.contains(&expected),
            "/etc/resolv.conf: expected a line {expected:?}, got {resolv:?}"
        );
    }
    pass()
}

async fn sysctls(ctx: Ctx) -> Result<Outcome> {
    let mut config = ctx.sandbox_config()?;
    if let Some(linux) = config.linux.as_mut() {
        linux.sysctls = HashMap::from([
            ("kernel.shm_rmid_forced".to_owned(), "1".to_owned()),
            (
                "net.ipv4.ip_unprivileged_port_start".to_owned(),
                "1025".to_owned(),
            ),
        ]);
    }
    let sandbox = ctx.run_sandbox(config).await?;
    let container = ctx.sleeper(&sandbox).await?;
    let shm = ctx
        .sh(&container.id, "cat /proc/sys/kernel/shm_rmid_forced")
        .await?;
    ensure_eq!(shm, "1", "kernel.shm_rmid_forced in the container");
    let port = ctx
        .sh(
            &container.id,
            "cat /proc/sys/net/ipv4/ip_unprivileged_port_start",
        )
        .await?;
    ensure_eq!(
        port,
        "1025",
        "net.ipv4.ip_unprivileged_port_start in the container"
    );
    pass()
}

/// The cgroup path of this process for `memory` (v1) or the unified hierarchy (v2).
fn memory_cgroup(proc_self_cgroup: &str) -> Option<String> {
    proc_self_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        (controllers.split(',').any(|c| c == "memory") || controllers.is_empty())
            .then(|| path.to_owned())
    })
}

async fn cgroup_parent(ctx: Ctx) -> Result<Outcome> {
    let config = ctx.sandbox_config()?;
    let parent = config
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.clone())
        .unwrap_or_default();
    if parent.ends_with(".slice") {
        return Err(skip(
            "the endpoint uses the systemd cgroup driver; this case checks cgroupfs parents",
        ));
    }
    let sandbox = ctx.run_sandbox(config).await?;
    let container = ctx.sleeper(&sandbox).await?;
    let cgroups = ctx.sh(&container.id, "cat /proc/self/cgroup").await?;
    let path = memory_cgroup(&cgroups)
        .with_context(|| format!("no memory cgroup in /proc/self/cgroup: {cgroups:?}"))?;
    ensure!(
        path.starts_with(&format!("{parent}/")),
        "memory cgroup of the container: expected below {parent}/, got {path}"
    );
    ensure!(
        !host::cgroup_dirs(&parent).is_empty(),
        "the cgroup parent {parent} does not exist on the node"
    );
    pass()
}

async fn pod_ip_matches(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let ip = ctx.pod_ip(&sandbox).await?;
    let container = ctx.sleeper(&sandbox).await?;
    let addresses = ctx.sh(&container.id, "ip addr show dev eth0").await?;
    ensure_contains(
        "`ip addr show dev eth0`",
        &addresses,
        &format!("inet {ip}/"),
    )?;
    pass()
}

/// Runs a pod whose container serves `index.html` = `body` on port 8080 over HTTP.
pub(super) async fn web_pod(
    ctx: &Ctx,
    config: cri::PodSandboxConfig,
    body: &str,
) -> Result<Sandbox> {
    let sandbox = ctx.run_sandbox(config).await?;
    let script =
        format!("mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 8080 -h /www");
    let container_config = ctx.container_config(&sandbox, &["sh", "-c", &script]);
    ctx.running_container(&sandbox, container_config).await?;
    Ok(sandbox)
}

async fn pod_ip_reachable(ctx: Ctx) -> Result<Outcome> {
    let config = ctx.sandbox_config()?;
    let sandbox = web_pod(&ctx, config, "pod-ip-ok").await?;
    let ip = ctx.pod_ip(&sandbox).await?;
    let addr: SocketAddr = format!("{ip}:8080").parse().context("pod IP")?;
    let response = host::http_get_eventually(addr, "/", Duration::from_secs(10)).await?;
    ensure_contains("GET http://<pod ip>:8080/", &response, "pod-ip-ok")?;
    pass()
}

fn with_host_port(ctx: &Ctx) -> Result<(cri::PodSandboxConfig, u16)> {
    let port = host::free_port()?;
    let mut config = ctx.sandbox_config()?;
    config.port_mappings = vec![cri::PortMapping {
        protocol: cri::Protocol::Tcp as i32,
        container_port: 8080,
        host_port: i32::from(port),
        host_ip: "127.0.0.1".into(),
    }];
    Ok((config, port))
}

async fn host_port(ctx: Ctx) -> Result<Outcome> {
    let (config, port) = with_host_port(&ctx)?;
    let sandbox = web_pod(&ctx, config, "host-port-ok").await?;
    ctx.pod_ip(&sandbox).await?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let response = host::http_get_eventually(addr, "/", Duration::from_secs(10)).await?;
    ensure_contains(
        "GET http://127.0.0.1:<hostPort>/",
        &response,
        "host-port-ok",
    )?;
    pass()
}

async fn stop_tears_network_down(ctx: Ctx) -> Result<Outcome> {
    let (config, port) = with_host_port(&ctx)?;
    let sandbox = web_pod(&ctx, config, "teardown").await?;
    let ip = ctx.pod_ip(&sandbox).await?;
    let pod_addr: SocketAddr = format!("{ip}:8080").parse().context("pod IP")?;
    let host_addr = SocketAddr::from(([127, 0, 0, 1], port));
    host::http_get_eventually(pod_addr, "/", Duration::from_secs(10)).await?;
    host::http_get_eventually(host_addr, "/", Duration::from_secs(10)).await?;
    ctx.stop_sandbox(&sandbox.id).await?;
    for (what, addr) in [("pod IP", pod_addr), ("hostPort", host_addr)] {
        if let Ok(response) = host::http_get(addr, "/", Duration::from_secs(3)).await {
            ensure!(
                !response.contains("teardown"),
                "the {what} {addr} still answers after StopPodSandbox: {response:?}"
            );
        }
    }
    pass()
}

fn pod_resources() -> cri::LinuxContainerResources {
    cri::LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: 50_000,
        cpu_shares: 512,
        memory_limit_in_bytes: 256 * 1024 * 1024,
        ..Default::default()
    }
}

async fn update_resources(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let request = cri::UpdatePodSandboxResourcesRequest {
        pod_sandbox_id: sandbox.id.clone(),
        overhead: None,
        resources: Some(pod_resources()),
    };
    call(
        "UpdatePodSandboxResources",
        ctx.rt().update_pod_sandbox_resources(request),
    )
    .await?;
    let status = ctx.sandbox_state(&sandbox.id).await?;
    ensure_eq!(
        status.state,
        ready(),
        "state after UpdatePodSandboxResources (0 = READY)"
    );
    pass()
}

async fn update_resources_unknown(ctx: Ctx) -> Result<Outcome> {
    let request = cri::UpdatePodSandboxResourcesRequest {
        pod_sandbox_id: UNKNOWN_ID.into(),
        overhead: None,
        resources: Some(pod_resources()),
    };
    let status = call_err(
        "UpdatePodSandboxResources",
        ctx.rt().update_pod_sandbox_resources(request),
    )
    .await?;
    ensure_code(
        "UpdatePodSandboxResources(unknown)",
        &status,
        &[Code::NotFound],
    )?;
    pass()
}
