//! `[container]`: lifecycle, status, listing and filters, idempotency, names, exit codes and
//! reasons, the process (env, command/args vs ENTRYPOINT/CMD, working dir), image references,
//! ExecSync and CheckpointContainer.

use super::prelude::*;
use crate::runner::container_state_name;

pub fn cases() -> Vec<Case> {
    use Group::Container as G;
    vec![
        case!(
            G,
            "CreateContainer makes a CREATED container whose status echoes its config",
            [CreateContainer, ContainerStatus],
            create_status
        ),
        case!(
            G,
            "StartContainer makes it RUNNING with started_at set",
            [StartContainer, ContainerStatus],
            start_running
        ),
        case!(
            G,
            "StopContainer makes it EXITED with finished_at set",
            [StopContainer, ContainerStatus],
            stop_exited
        ),
        case!(
            G,
            "RemoveContainer removes it from status and list",
            [RemoveContainer, ContainerStatus, ListContainers],
            remove_removes
        ),
        case!(
            G,
            "ContainerStatus of an unknown id is NotFound",
            [ContainerStatus],
            status_unknown
        ),
        case!(
            G,
            "ListContainers lists a new container with sandbox, metadata, image and state",
            [ListContainers],
            list_lists_new
        ),
        case!(
            G,
            "An unfiltered ListContainers shows each change of state and the removal at once",
            [ListContainers, StartContainer, RemoveContainer],
            list_follows_changes
        ),
        case!(
            G,
            "ListContainers filter by id returns only that container",
            [ListContainers],
            list_filter_id
        ),
        case!(
            G,
            "ListContainers filter by state CREATED",
            [ListContainers],
            list_filter_created
        ),
        case!(
            G,
            "ListContainers filter by state RUNNING",
            [ListContainers],
            list_filter_running
        ),
        case!(
            G,
            "ListContainers filter by state EXITED",
            [ListContainers],
            list_filter_exited
        ),
        case!(
            G,
            "ListContainers filter by pod sandbox id",
            [ListContainers],
            list_filter_sandbox
        ),
        case!(
            G,
            "ListContainers filter by label selector matches all given labels",
            [ListContainers],
            list_filter_labels
        ),
        case!(
            G,
            "ListContainers filter combining id, sandbox, state and labels",
            [ListContainers],
            list_filter_combined
        ),
        case!(
            G,
            "StreamContainers returns what ListContainers returns",
            [StreamContainers, ListContainers],
            stream_containers
        ),
        case!(
            G,
            "StopContainer of an exited container succeeds",
            [StopContainer],
            stop_twice
        ),
        case!(
            G,
            "StopContainer of a created, never started container succeeds",
            [StopContainer],
            stop_created
        ),
        case!(
            G,
            "RemoveContainer of a removed container succeeds",
            [RemoveContainer],
            remove_twice
        ),
        case!(
            G,
            "StopContainer of an unknown id succeeds or is NotFound",
            [StopContainer],
            stop_unknown
        ),
        case!(
            G,
            "RemoveContainer of an unknown id succeeds",
            [RemoveContainer],
            remove_unknown
        ),
        case!(
            G,
            "RemoveContainer of a running container removes it",
            [RemoveContainer],
            remove_running
        ),
        case!(
            G,
            "StartContainer of a running container fails",
            [StartContainer],
            start_twice
        ),
        case!(
            G,
            "CreateContainer in an unknown sandbox fails",
            [CreateContainer],
            create_unknown_sandbox
        ),
        case!(
            G,
            "CreateContainer in a stopped sandbox fails",
            [CreateContainer],
            create_in_stopped_sandbox
        ),
        case!(
            G,
            "a second container with the same name and attempt in a sandbox is refused",
            [CreateContainer],
            duplicate_name
        ),
        case!(
            G,
            "a container with the same name and the next attempt is created",
            [CreateContainer],
            next_attempt
        ),
        case!(
            G,
            "a container that exits at once did not finish before it started",
            [StartContainer, ContainerStatus],
            exits_at_once
        )
        .reference_known_failure(
            "containerd 1.6 stamps started_at after StartContainer returns, which can be after the process exited",
        ),
        case!(
            G,
            "a container with stdin keeps it open; without stdin it reads an empty one",
            [CreateContainer, StartContainer, ContainerStatus],
            stdin_open
        ),
        case!(
            G,
            "CreateContainer with an image that is not present fails",
            [CreateContainer],
            missing_image
        ),
        case!(
            G,
            "CreateContainer with an image spec naming an unknown runtime handler is rejected",
            [CreateContainer],
            unknown_image_handler
        )
        .reference_known_failure(
            "containerd 1.6 predates ImageSpec.runtime_handler (CRI 1.29) and ignores it",
        ),
        case!(
            G,
            "a completed container exits 0 with reason Completed",
            [ContainerStatus],
            exit_completed
        ),
        case!(
            G,
            "a failing container reports its exit code with reason Error",
            [ContainerStatus],
            exit_error
        ),
        case!(
            G,
            "a container killed by StopContainer reports exit code 137",
            [StopContainer, ContainerStatus],
            exit_killed
        ),
        case!(
            G,
            "StopContainer sends SIGTERM first and the container's handler runs",
            [StopContainer, ContainerStatus],
            stop_sigterm
        ),
        case!(
            G,
            "StopContainer kills a container that ignores SIGTERM after the timeout",
            [StopContainer, ContainerStatus],
            stop_timeout_kill
        ),
        case!(
            G,
            "a container over its memory limit is OOMKilled",
            [ContainerStatus],
            exit_oom
        ),
        case!(
            G,
            "created_at, started_at and finished_at are ordered",
            [ContainerStatus],
            timestamps_ordered
        ),
        case!(
            G,
            "stop_signal from the config is what StopContainer sends",
            [StopContainer, ContainerStatus],
            stop_signal
        ),
        case!(
            G,
            "configured environment variables are set",
            [CreateContainer, ExecSync],
            env_set
        ),
        case!(
            G,
            "image ENV is kept and a configured variable overrides it",
            [CreateContainer, ExecSync],
            env_image
        ),
        case!(
            G,
            "neither command nor args: the image's ENTRYPOINT and CMD run",
            [CreateContainer],
            entrypoint_cmd_default
        ),
        case!(
            G,
            "args only: the image's ENTRYPOINT runs with the args",
            [CreateContainer],
            entrypoint_args
        ),
        case!(
            G,
            "command only: the command runs without the image's CMD",
            [CreateContainer],
            command_only
        ),
        case!(
            G,
            "command and args: both replace ENTRYPOINT and CMD",
            [CreateContainer],
            command_and_args
        ),
        case!(
            G,
            "working_dir sets the process's working directory",
            [CreateContainer, ExecSync],
            working_dir
        ),
        case!(
            G,
            "the image's WORKDIR is the default working directory",
            [CreateContainer, ExecSync],
            image_workdir
        ),
        case!(
            G,
            "ContainerStatus.image_ref equals the Image.id of its image",
            [ContainerStatus, ImageStatus],
            status_image_ref
        ),
        case!(
            G,
            "ContainerStatus.image_id equals the Image.id of its image",
            [ContainerStatus, ImageStatus],
            status_image_id
        ),
        case!(
            G,
            "ListContainers reports image_ref equal to the Image.id",
            [ListContainers, ImageStatus],
            list_image_ref
        ),
        case!(
            G,
            "a container created from an image id runs that image",
            [CreateContainer, ContainerStatus],
            create_by_image_id
        ),
        case!(
            G,
            "ExecSync returns stdout and exit code 0",
            [ExecSync],
            exec_stdout
        ),
        case!(
            G,
            "ExecSync returns stderr and a non-zero exit code",
            [ExecSync],
            exec_stderr_exit
        ),
        case!(
            G,
            "ExecSync ends a command that outlives its timeout",
            [ExecSync],
            exec_timeout
        ),
        case!(
            G,
            "ExecSync sees the container's environment and user",
            [ExecSync],
            exec_env_user
        ),
        case!(
            G,
            "ExecSync returns 1 MiB of output intact",
            [ExecSync],
            exec_large_output
        ),
        case!(
            G,
            "ExecSync in an exited container fails",
            [ExecSync],
            exec_exited
        ),
        case!(
            G,
            "ExecSync of a binary that does not exist does not succeed",
            [ExecSync],
            exec_missing_binary
        ),
        case!(
            G,
            "ExecSync in an unknown container is NotFound",
            [ExecSync],
            exec_unknown
        ),
        case!(
            G,
            "CheckpointContainer writes a checkpoint archive of a running container",
            [CheckpointContainer],
            checkpoint
        ),
        case!(
            G,
            "CheckpointContainer of an unknown container fails",
            [CheckpointContainer],
            checkpoint_unknown
        ),
    ]
}

const UNKNOWN_ID: &str = "0000000000000000000000000000000000000000000000000000000000c0ffee";

fn state(status: &cri::ContainerStatus) -> String {
    container_state_name(status.state)
}

fn container_ids(items: &[cri::Container]) -> Vec<&str> {
    items.iter().map(|c| c.id.as_str()).collect()
}

fn state_filter(state: cri::ContainerState) -> Option<cri::ContainerStateValue> {
    Some(cri::ContainerStateValue {
        state: state as i32,
    })
}

async fn create_status(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let mut config = ctx.container_config(&sandbox, &["sleep", "3600"]);
    config.labels.insert("app".into(), "conformance".into());
    config.annotations = HashMap::from([("note".to_owned(), "a b c".to_owned())]);
    let before = now_nanos();
    let container = ctx.create_container(&sandbox, config.clone()).await?;
    let status = ctx.container_status(&container.id).await?;
    ensure_eq!(status.id, container.id, "ContainerStatus.id");
    ensure_eq!(state(&status), "ContainerCreated", "state");
    ensure_eq!(status.metadata, config.metadata, "metadata");
    ensure_eq!(status.labels, config.labels, "labels");
    ensure_eq!(status.annotations, config.annotations, "annotations");
    ensure!(
        status.created_at >= before - 1_000_000_000,
        "created_at {} is before the request ({before})",
        status.created_at
    );
    ensure_eq!(
        (status.started_at, status.finished_at),
        (0, 0),
        "(started_at, finished_at) of a created container"
    );
    let image = status.image.map(|i| i.image).unwrap_or_default();
    ensure_eq!(image, ctx.images().busybox, "ContainerStatus.image.image");
    ensure_eq!(
        std::path::PathBuf::from(&status.log_path),
        container.log_path,
        "ContainerStatus.log_path (log directory + log_path)"
    );
    pass()
}

async fn start_running(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let before = now_nanos();
    let container = ctx.sleeper(&sandbox).await?;
    let status = ctx.container_status(&container.id).await?;
    ensure_eq!(state(&status), "ContainerRunning", "state");
    ensure!(
        status.started_at >= before - 1_000_000_000,
        "started_at {} is before StartContainer ({before})",
        status.started_at
    );
    ensure_eq!(status.finished_at, 0, "finished_at of a running container");
    pass()
}

async fn stop_exited(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    ctx.stop_container(&container.id, 0).await?;
    let status = ctx.container_status(&container.id).await?;
    ensure_eq!(
        state(&status),
        "ContainerExited",
        "state after StopContainer"
    );
    finished_after_start(&status)?;
    pass()
}

/// An exited container finished at or after it started.
fn finished_after_start(status: &cri::ContainerStatus) -> Result<()> {
    ensure!(
        status.finished_at >= status.started_at && status.finished_at > 0,
        "finished_at {} is not set after started_at {}",
        status.finished_at,
        status.started_at
    );
    Ok(())
}

async fn remove_removes(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    ctx.stop_container(&container.id, 0).await?;
    ctx.remove_container(&container.id).await?;
    let request = cri::ContainerStatusRequest {
        container_id: container.id.clone(),
        verbose: false,
    };
    let status = call_err("ContainerStatus", ctx.rt().container_status(request)).await?;
    ensure_code("ContainerStatus(removed)", &status, &[Code::NotFound])?;
    let listed = ctx
        .list_containers(cri::ContainerFilter {
            id: container.id.clone(),
            ..Default::default()
        })
        .await?;
    ensure_eq!(
        container_ids(&listed),
        Vec::<&str>::new(),
        "ListContainers(id of removed container)"
    );
    pass()
}

async fn status_unknown(ctx: Ctx) -> Result<Outcome> {
    let request = cri::ContainerStatusRequest {
        container_id: UNKNOWN_ID.into(),
        verbose: false,
    };
    let status = call_err("ContainerStatus", ctx.rt().container_status(request)).await?;
    ensure_code("ContainerStatus(unknown)", &status, &[Code::NotFound])?;
    pass()
}

async fn list_lists_new(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let mut config = ctx.container_config(&sandbox, &["sleep", "3600"]);
    config.annotations = HashMap::from([("note".to_owned(), "listed as given".to_owned())]);
    let container = ctx.running_container(&sandbox, config.clone()).await?;
    let all = ctx.list_containers(cri::ContainerFilter::default()).await?;
    let item = all
        .iter()
        .find(|c| c.id == container.id)
        .with_context(|| format!("ListContainers does not list {}", container.id))?;
    ensure_eq!(item.pod_sandbox_id, sandbox.id, "listed pod_sandbox_id");
    ensure_eq!(item.metadata, config.metadata, "listed metadata");
    ensure_eq!(
        container_state_name(item.state),
        "ContainerRunning",
        "listed state"
    );
    ensure_eq!(item.labels, config.labels, "listed labels");
    // api.proto: Container.annotations MUST be identical to the ContainerConfig's.
    ensure_eq!(item.annotations, config.annotations, "listed annotations");
    ensure!(
        item.created_at > 0,
        "listed created_at is {}",
        item.created_at
    );
    ensure!(!item.image_ref.is_empty(), "listed image_ref is empty");
    pass()
}

/// The state of `id` in an unfiltered list; `None` when it is not listed.
async fn listed_state(ctx: &Ctx, id: &str) -> Result<Option<String>> {
    let all = ctx.list_containers(cri::ContainerFilter::default()).await?;
    Ok(all
        .iter()
        .find(|c| c.id == id)
        .map(|c| container_state_name(c.state)))
}

/// Asks twice, so that a runtime keeping its last answer serves the second one from it.
async fn ensure_listed_state(ctx: &Ctx, id: &str, want: Option<&str>, after: &str) -> Result<()> {
    for _ in 0..2 {
        let got = listed_state(ctx, id).await?;
        ensure_eq!(
            got.as_deref(),
            want,
            "unfiltered ListContainers after {after}"
        );
    }
    Ok(())
}

async fn list_follows_changes(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let config = ctx.container_config(&sandbox, &["sh", "-c", "sleep 3"]);
    let container = ctx.create_container(&sandbox, config).await?;
    let id = container.id.as_str();
    ensure_listed_state(&ctx, id, Some("ContainerCreated"), "CreateContainer").await?;
    ctx.start_container(id).await?;
    ensure_listed_state(&ctx, id, Some("ContainerRunning"), "StartContainer").await?;
    // No call changes it this time: the process ends on its own.
    ctx.wait_container_state(
        id,
        cri::ContainerState::ContainerExited,
        Duration::from_secs(30),
    )
    .await?;
    ensure_listed_state(&ctx, id, Some("ContainerExited"), "its exit").await?;
    ctx.remove_container(id).await?;
    ensure_listed_state(&ctx, id, None, "RemoveContainer").await?;
    pass()
}

async fn list_filter_id(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let first = ctx.sleeper(&sandbox).await?;
    let _second = ctx.sleeper(&sandbox).await?;
    let listed = ctx
        .list_containers(cri::ContainerFilter {
            id: first.id.clone(),
            ..Default::default()
        })
        .await?;
    ensure_eq!(
        container_ids(&listed),
        vec![first.id.as_str()],
        "ListContainers(id)"
    );
    pass()
}

/// One sandbox with a created, a running and an exited container.
async fn three_states(ctx: &Ctx) -> Result<(Sandbox, Container, Container, Container)> {
    let sandbox = ctx.sandbox().await?;
    let created = ctx
        .create_container(&sandbox, ctx.container_config(&sandbox, &["sleep", "3600"]))
        .await?;
    let running = ctx.sleeper(&sandbox).await?;
    let exited = ctx.sleeper(&sandbox).await?;
    ctx.stop_container(&exited.id, 0).await?;
    Ok((sandbox, created, running, exited))
}

async fn list_filter_state(ctx: Ctx, wanted: cri::ContainerState) -> Result<Outcome> {
    let (sandbox, created, running, exited) = three_states(&ctx).await?;
    let expected = match wanted {
        cri::ContainerState::ContainerCreated => &created,
        cri::ContainerState::ContainerRunning => &running,
        _ => &exited,
    };
    let listed = ctx
        .list_containers(cri::ContainerFilter {
            pod_sandbox_id: sandbox.id.clone(),
            state: state_filter(wanted),
            ..Default::default()
        })
        .await?;
    ensure_eq!(
        container_ids(&listed),
        vec![expected.id.as_str()],
        "ListContainers(sandbox, state {wanted:?})"
    );
    pass()
}

async fn list_filter_created(ctx: Ctx) -> Result<Outcome> {
    list_filter_state(ctx, cri::ContainerState::ContainerCreated).await
}

async fn list_filter_running(ctx: Ctx) -> Result<Outcome> {
    list_filter_state(ctx, cri::ContainerState::ContainerRunning).await
}

async fn list_filter_exited(ctx: Ctx) -> Result<Outcome> {
    list_filter_state(ctx, cri::ContainerState::ContainerExited).await
}

async fn list_filter_sandbox(ctx: Ctx) -> Result<Outcome> {
    let first = ctx.sandbox().await?;
    let second = ctx.sandbox().await?;
    let a = ctx.sleeper(&first).await?;
    let _b = ctx.sleeper(&second).await?;
    let listed = ctx
        .list_containers(cri::ContainerFilter {
            pod_sandbox_id: first.id.clone(),
            ..Default::default()
        })
        .await?;
    ensure_eq!(
        container_ids(&listed),
        vec![a.id.as_str()],
        "ListContainers(pod_sandbox_id)"
    );
    pass()
}

async fn list_filter_labels(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let mut config_a = ctx.container_config(&sandbox, &["sleep", "3600"]);
    config_a.labels.insert("pick".into(), "a".into());
    let a = ctx.create_container(&sandbox, config_a).await?;
    let mut config_b = ctx.container_config(&sandbox, &["sleep", "3600"]);
    config_b.labels.insert("pick".into(), "b".into());
    ctx.create_container(&sandbox, config_b).await?;
    let mut selector = ctx.labels();
    selector.insert("pick".into(), "a".into());
    let listed = ctx
        .list_containers(cri::ContainerFilter {
            label_selector: selector.clone(),
            ..Default::default()
        })
        .await?;
    ensure_eq!(
        container_ids(&listed),
        vec![a.id.as_str()],
        "ListContainers(labels pick=a)"
    );
    selector.insert("pick".into(), "c".into());
    let listed = ctx
        .list_containers(cri::ContainerFilter {
            label_selector: selector,
            ..Default::default()
        })
        .await?;
    ensure_eq!(
        container_ids(&listed),
        Vec::<&str>::new(),
        "ListContainers(labels pick=c)"
    );
    pass()
}

async fn list_filter_combined(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let filter = |state| cri::ContainerFilter {
        id: container.id.clone(),
        pod_sandbox_id: sandbox.id.clone(),
        state: state_filter(state),
        label_selector: ctx.labels(),
    };
    let listed = ctx
        .list_containers(filter(cri::ContainerState::ContainerRunning))
        .await?;
    ensure_eq!(
        container_ids(&listed),
        vec![container.id.as_str()],
        "ListContainers(id, sandbox, RUNNING, labels)"
    );
    let listed = ctx
        .list_containers(filter(cri::ContainerState::ContainerExited))
        .await?;
    ensure_eq!(
        container_ids(&listed),
        Vec::<&str>::new(),
        "ListContainers(id, sandbox, EXITED, labels)"
    );
    pass()
}

async fn stream_containers(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let a = ctx.sleeper(&sandbox).await?;
    let b = ctx.sleeper(&sandbox).await?;
    let filter = cri::ContainerFilter {
        pod_sandbox_id: sandbox.id.clone(),
        ..Default::default()
    };
    let request = cri::StreamContainersRequest {
        filter: Some(filter.clone()),
    };
    let mut stream = call("StreamContainers", ctx.rt().stream_containers(request)).await?;
    let mut streamed = Vec::new();
    while let Some(message) = stream
        .message()
        .await
        .map_err(|s| anyhow::anyhow!("StreamContainers stream: {}", describe(&s)))?
    {
        streamed.extend(message.containers.into_iter().map(|c| c.id));
    }
    let mut listed: Vec<String> = ctx
        .list_containers(filter)
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect();
    let mut expected = vec![a.id, b.id];
    expected.sort();
    listed.sort();
    streamed.sort();
    ensure_eq!(listed, expected, "ListContainers(sandbox)");
    ensure_eq!(streamed, listed, "StreamContainers(sandbox)");
    pass()
}

async fn stop_twice(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    ctx.stop_container(&container.id, 0).await?;
    // CRI: StopContainer of a stopped container must not fail.
    ctx.stop_container(&container.id, 0).await?;
    pass()
}

async fn stop_created(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx
        .create_container(&sandbox, ctx.container_config(&sandbox, &["sleep", "3600"]))
        .await?;
    ctx.stop_container(&container.id, 0).await?;
    let status = ctx.container_status(&container.id).await?;
    ensure!(
        state(&status) != "ContainerRunning",
        "a stopped, never started container is RUNNING"
    );
    pass()
}

async fn remove_twice(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    ctx.stop_container(&container.id, 0).await?;
    ctx.remove_container(&container.id).await?;
    // CRI: RemoveContainer must not fail when the container is already gone.
    ctx.remove_container(&container.id).await?;
    pass()
}

async fn stop_unknown(ctx: Ctx) -> Result<Outcome> {
    let request = cri::StopContainerRequest {
        container_id: UNKNOWN_ID.into(),
        timeout: 0,
    };
    // CRI: stopping what is already gone must not fail; kubelet also accepts NotFound.
    if let Err(status) = ctx.rt().stop_container(request).await {
        if status.code() == Code::Unimplemented {
            return Err(crate::runner::check::unimplemented(
                "StopContainer",
                &status,
            ));
        }
        ensure_code("StopContainer(unknown)", &status, &[Code::NotFound])?;
    }
    pass()
}

async fn remove_unknown(ctx: Ctx) -> Result<Outcome> {
    // CRI: RemoveContainer must not return an error when the container is already gone.
    ctx.remove_container(UNKNOWN_ID).await?;
    pass()
}

async fn remove_running(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    ctx.remove_container(&container.id).await?;
    let listed = ctx
        .list_containers(cri::ContainerFilter {
            id: container.id.clone(),
            ..Default::default()
        })
        .await?;
    ensure_eq!(
        container_ids(&listed),
        Vec::<&str>::new(),
        "ListContainers after removing a running container"
    );
    pass()
}

async fn start_twice(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let request = cri::StartContainerRequest {
        container_id: container.id.clone(),
    };
    let refusal = call_err("StartContainer", ctx.rt().start_container(request)).await?;
    // Only a CREATED container can be started: a wrong state.
    ensure_code_on(
        &ctx,
        "StartContainer(running)",
        &refusal,
        Code::FailedPrecondition,
        &[Code::Unknown],
    )?;
    let status = ctx.container_status(&container.id).await?;
    ensure_eq!(
        state(&status),
        "ContainerRunning",
        "state after the refused second start"
    );
    pass()
}

async fn create_unknown_sandbox(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let config = ctx.container_config(&sandbox, &["sleep", "3600"]);
    let request = cri::CreateContainerRequest {
        pod_sandbox_id: UNKNOWN_ID.into(),
        config: Some(config),
        sandbox_config: Some(sandbox.config.clone()),
    };
    let status = call_err("CreateContainer", ctx.rt().create_container(request)).await?;
    ensure_code_on(
        &ctx,
        "CreateContainer(unknown sandbox)",
        &status,
        Code::NotFound,
        &[Code::NotFound],
    )?;
    pass()
}

async fn create_in_stopped_sandbox(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    ctx.stop_sandbox(&sandbox.id).await?;
    let config = ctx.container_config(&sandbox, &["sleep", "3600"]);
    // The sandbox exists but is not READY: a wrong state. containerd 1.6 looks for the
    // sandbox's task and answers that it is not found.
    ensure_create_fails(
        &ctx,
        &sandbox,
        config,
        Code::FailedPrecondition,
        &[Code::NotFound],
    )
    .await?;
    pass()
}

async fn duplicate_name(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let config = ctx.container_config(&sandbox, &["sleep", "3600"]);
    ctx.create_container(&sandbox, config.clone()).await?;
    // containerd 1.6's name registrar answers "name is reserved" without a code.
    ensure_create_fails(
        &ctx,
        &sandbox,
        config,
        Code::AlreadyExists,
        &[Code::Unknown],
    )
    .await?;
    pass()
}

async fn next_attempt(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let config = ctx.container_config(&sandbox, &["true"]);
    let (first, _) = ctx.run_to_exit(&sandbox, config.clone()).await?;
    let mut retry = config;
    if let Some(metadata) = retry.metadata.as_mut() {
        metadata.attempt = 1;
    }
    retry.log_path = retry.log_path.replace("/0.log", "/1.log");
    let second = ctx.create_container(&sandbox, retry).await?;
    ensure!(second.id != first.id, "the next attempt got the same id");
    let status = ctx.container_status(&second.id).await?;
    ensure_eq!(
        status.metadata.map(|m| m.attempt),
        Some(1),
        "attempt of the second container"
    );
    pass()
}

async fn missing_image(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let mut config = ctx.container_config(&sandbox, &["true"]);
    config.image = Some(image_spec("localhost/crius/does-not-exist:404"));
    ensure_create_fails(&ctx, &sandbox, config, Code::NotFound, &[Code::NotFound]).await?;
    pass()
}

async fn exits_at_once(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    // Several tries: whether the exit beats the runtime's start stamp is a race.
    for _ in 0..5 {
        let (_, status) = ctx
            .run_to_exit(&sandbox, ctx.container_config(&sandbox, &["true"]))
            .await?;
        finished_after_start(&status)?;
    }
    pass()
}

async fn stdin_open(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    // `cat` runs until its stdin ends.
    let mut config = ctx.container_config(&sandbox, &["cat"]);
    config.stdin = true;
    let open = ctx.running_container(&sandbox, config).await?;
    let (_, closed) = ctx
        .run_to_exit(&sandbox, ctx.container_config(&sandbox, &["cat"]))
        .await?;
    ensure_eq!(closed.exit_code, 0, "exit code of cat on an empty stdin");
    // The first one had as long as the second took to start and end, and a second more.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = ctx.container_status(&open.id).await?;
    ensure_eq!(
        status.state,
        cri::ContainerState::ContainerRunning as i32,
        "state of cat with stdin open (reason {:?}, exit code {})",
        status.reason,
        status.exit_code
    );
    pass()
}

async fn unknown_image_handler(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let mut config = ctx.container_config(&sandbox, &["true"]);
    // CRI: a runtime handler the runtime does not know must be refused.
    config.image = Some(cri::ImageSpec {
        runtime_handler: "no-such-handler".into(),
        ..image_spec(&ctx.images().busybox)
    });
    // containerd 1.6 accepts it (the case's known failure): no reference code to pin.
    ensure_create_fails(&ctx, &sandbox, config, Code::InvalidArgument, &[]).await?;
    pass()
}

async fn exit_completed(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let (_, status) = ctx
        .run_to_exit(&sandbox, ctx.container_config(&sandbox, &["true"]))
        .await?;
    ensure_eq!(
        (status.exit_code, status.reason.as_str()),
        (0, "Completed"),
        "(exit_code, reason)"
    );
    pass()
}

async fn exit_error(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let (_, status) = ctx
        .run_to_exit(
            &sandbox,
            ctx.container_config(&sandbox, &["sh", "-c", "exit 42"]),
        )
        .await?;
    ensure_eq!(
        (status.exit_code, status.reason.as_str()),
        (42, "Error"),
        "(exit_code, reason)"
    );
    pass()
}

async fn exit_killed(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    ctx.stop_container(&container.id, 0).await?;
    let status = ctx.container_status(&container.id).await?;
    // 128 + SIGKILL.
    ensure_eq!(
        (status.exit_code, status.reason.as_str()),
        (137, "Error"),
        "(exit_code, reason)"
    );
    pass()
}

async fn stop_sigterm(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let script = "trap 'exit 7' TERM; while true; do sleep 0.1; done";
    let container = ctx
        .running_container(
            &sandbox,
            ctx.container_config(&sandbox, &["sh", "-c", script]),
        )
        .await?;
    let started = Instant::now();
    ctx.stop_container(&container.id, 20).await?;
    let elapsed = started.elapsed();
    let status = ctx.container_status(&container.id).await?;
    ensure_eq!(status.exit_code, 7, "exit code set by the SIGTERM handler");
    ensure!(
        elapsed < Duration::from_secs(15),
        "StopContainer took {elapsed:?} for a container that exits on SIGTERM"
    );
    pass()
}

async fn stop_timeout_kill(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let script = "trap '' TERM; while true; do sleep 0.1; done";
    let container = ctx
        .running_container(
            &sandbox,
            ctx.container_config(&sandbox, &["sh", "-c", script]),
        )
        .await?;
    let started = Instant::now();
    ctx.stop_container(&container.id, 2).await?;
    let elapsed = started.elapsed();
    let status = ctx.container_status(&container.id).await?;
    ensure_eq!(
        status.exit_code,
        137,
        "exit code after the grace period (128 + SIGKILL)"
    );
    ensure!(
        elapsed >= Duration::from_millis(1500),
        "StopContainer(timeout 2) killed after only {elapsed:?}"
    );
    pass()
}

async fn exit_oom(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let mut config = ctx.container_config(
        &sandbox,
        &[
            "sh",
            "-c",
            "exec awk 'BEGIN { s = \"x\"; while (1) s = s s }'",
        ],
    );
    if let Some(linux) = config.linux.as_mut() {
        linux.resources = Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 32 * 1024 * 1024,
            ..Default::default()
        });
    }
    let (_, status) = ctx.run_to_exit(&sandbox, config).await?;
    ensure_eq!(
        (status.exit_code, status.reason.as_str()),
        (137, "OOMKilled"),
        "(exit_code, reason)"
    );
    pass()
}

async fn timestamps_ordered(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let (_, status) = ctx
        .run_to_exit(&sandbox, ctx.container_config(&sandbox, &["sleep", "1"]))
        .await?;
    ensure!(
        0 < status.created_at
            && status.created_at <= status.started_at
            && status.started_at < status.finished_at,
        "expected 0 < created_at <= started_at < finished_at, got {} / {} / {}",
        status.created_at,
        status.started_at,
        status.finished_at
    );
    // The container slept a second.
    ensure!(
        status.finished_at - status.started_at >= 900_000_000,
        "finished_at - started_at = {} ns for `sleep 1`",
        status.finished_at - status.started_at
    );
    pass()
}

async fn stop_signal(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let script = "trap 'exit 3' USR1; trap '' TERM; while true; do sleep 0.1; done";
    let mut config = ctx.container_config(&sandbox, &["sh", "-c", script]);
    config.stop_signal = cri::Signal::Sigusr1 as i32;
    let container = ctx.running_container(&sandbox, config).await?;
    let status = ctx.container_status(&container.id).await?;
    if status.stop_signal != cri::Signal::Sigusr1 as i32 {
        return Err(skip(format!(
            "the endpoint does not report the configured stop_signal (ContainerStatus.stop_signal = {})",
            status.stop_signal
        )));
    }
    ctx.stop_container(&container.id, 20).await?;
    let status = ctx.container_status(&container.id).await?;
    ensure_eq!(status.exit_code, 3, "exit code set by the SIGUSR1 handler");
    pass()
}

async fn env_set(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let mut config = ctx.container_config(&sandbox, &["sleep", "3600"]);
    config.envs = vec![
        cri::KeyValue {
            key: "CONFORMANCE_A".into(),
            value: "alpha".into(),
        },
        cri::KeyValue {
            key: "CONFORMANCE_SPACES".into(),
            value: "a b  c".into(),
        },
    ];
    let container = ctx.running_container(&sandbox, config).await?;
    ensure_eq!(
        ctx.sh(&container.id, "echo \"$CONFORMANCE_A\"").await?,
        "alpha",
        "$CONFORMANCE_A"
    );
    ensure_eq!(
        ctx.sh(&container.id, "echo \"$CONFORMANCE_SPACES\"")
            .await?,
        "a b  c",
        "$CONFORMANCE_SPACES"
    );
    // Exec'd processes see it too; PID 1's own environment is the authority.
    let environ = ctx
        .sh(&container.id, "tr '\\0' '\\n' < /proc/1/environ")
        .await?;
    ensure!(
        environ.lines().any(|l| l == "CONFORMANCE_A=alpha"),
        "PID 1 environment lacks CONFORMANCE_A=alpha: {environ:?}"
    );
    pass()
}

async fn env_image(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let (name, value) = images::USER_IMAGE_ENV;
    let mut config = ctx.container_config(&sandbox, &["sleep", "3600"]);
    config.image = Some(image_spec(&ctx.images().user));
    let container = ctx.running_container(&sandbox, config.clone()).await?;
    let environ = ctx
        .sh(&container.id, "tr '\\0' '\\n' < /proc/1/environ")
        .await?;
    let expected = format!("{name}={value}");
    ensure!(
        environ.lines().any(|l| l == expected),
        "image ENV {expected} missing from {environ:?}"
    );
    let path = environ.lines().any(|l| l.starts_with("PATH="));
    ensure!(path, "image PATH missing from {environ:?}");

    let mut overriding = ctx.container_config(&sandbox, &["sleep", "3600"]);
    overriding.image = Some(image_spec(&ctx.images().user));
    overriding.envs = vec![cri::KeyValue {
        key: name.into(),
        value: "from-config".into(),
    }];
    let container = ctx.running_container(&sandbox, overriding).await?;
    let environ = ctx
        .sh(&container.id, "tr '\\0' '\\n' < /proc/1/environ")
        .await?;
    let values: Vec<&str> = environ
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{name}=")))
        .collect();
    ensure_eq!(
        values,
        vec!["from-config"],
        "values of {name} when the config overrides the image"
    );
    pass()
}

/// Runs the user image with `command`/`args` and returns the single stdout line it logged.
async fn user_image_output(ctx: &Ctx, command: &[&str], args: &[&str]) -> Result<String> {
    let sandbox = ctx.sandbox().await?;
    let mut config = ctx.container_config(&sandbox, command);
    config.args = strings(args);
    config.image = Some(image_spec(&ctx.images().user));
    let (container, status) = ctx.run_to_exit(&sandbox, config).await?;
    ensure_eq!(status.exit_code, 0, "exit code");
    let records = ctx
        .wait_log(&container.log_path, Duration::from_secs(5), |r| {
            !r.is_empty()
        })
        .await?;
    let out = logs::stream_lines(&records, Stream::Stdout);
    ensure_eq!(out.len(), 1, "stdout lines logged ({out:?})");
    Ok(out.into_iter().next().unwrap_or_default())
}

async fn entrypoint_cmd_default(ctx: Ctx) -> Result<Outcome> {
    let output = user_image_output(&ctx, &[], &[]).await?;
    let expected = echo_of(&[images::USER_IMAGE_ENTRYPOINT, images::USER_IMAGE_CMD].concat());
    ensure_eq!(output, expected, "output of ENTRYPOINT + CMD");
    pass()
}

async fn entrypoint_args(ctx: Ctx) -> Result<Outcome> {
    let output = user_image_output(&ctx, &[], &["from-args", "two"]).await?;
    let expected = echo_of(&[images::USER_IMAGE_ENTRYPOINT, &["from-args", "two"]].concat());
    ensure_eq!(output, expected, "output of ENTRYPOINT + args");
    pass()
}

async fn command_only(ctx: Ctx) -> Result<Outcome> {
    let output = user_image_output(&ctx, &["echo", "from-command"], &[]).await?;
    ensure_eq!(
        output,
        "from-command",
        "output of command without args (CMD must not be appended)"
    );
    pass()
}

async fn command_and_args(ctx: Ctx) -> Result<Outcome> {
    let output = user_image_output(&ctx, &["echo", "from-command"], &["from-args"]).await?;
    ensure_eq!(output, "from-command from-args", "output of command + args");
    pass()
}

/// What `echo`-style argv prints: the words after the program, joined by spaces.
fn echo_of(argv: &[&str]) -> String {
    argv.iter().skip(1).copied().collect::<Vec<_>>().join(" ")
}

async fn working_dir(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let mut config = ctx.container_config(&sandbox, &["sleep", "3600"]);
    config.working_dir = "/tmp".into();
    let container = ctx.running_container(&sandbox, config).await?;
    ensure_eq!(
        ctx.sh(&container.id, "readlink /proc/1/cwd").await?,
        "/tmp",
        "cwd of PID 1"
    );
    pass()
}

async fn image_workdir(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let mut config = ctx.container_config(&sandbox, &["sleep", "3600"]);
    config.image = Some(image_spec(&ctx.images().user));
    let container = ctx.running_container(&sandbox, config).await?;
    ensure_eq!(
        ctx.sh(&container.id, "readlink /proc/1/cwd").await?,
        images::USER_IMAGE_WORKDIR,
        "cwd of PID 1 (image WORKDIR)"
    );
    pass()
}

async fn status_image_ref(ctx: Ctx) -> Result<Outcome> {
    let id = ctx.image_id(&ctx.images().busybox).await?;
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let status = ctx.container_status(&container.id).await?;
    // CRI: image_ref is the image id kubelet reports as the pod's imageID.
    ensure_eq!(status.image_ref, id, "ContainerStatus.image_ref");
    pass()
}

async fn status_image_id(ctx: Ctx) -> Result<Outcome> {
    let id = ctx.image_id(&ctx.images().busybox).await?;
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let status = ctx.container_status(&container.id).await?;
    if status.image_id.is_empty() {
        return Err(skip(
            "the endpoint does not report ContainerStatus.image_id (CRI ≥ 1.31)",
        ));
    }
    ensure_eq!(status.image_id, id, "ContainerStatus.image_id");
    pass()
}

async fn list_image_ref(ctx: Ctx) -> Result<Outcome> {
    let id = ctx.image_id(&ctx.images().busybox).await?;
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let listed = ctx
        .list_containers(cri::ContainerFilter {
            id: container.id.clone(),
            ..Default::default()
        })
        .await?;
    let item = listed
        .first()
        .context("ListContainers(id) returned nothing")?;
    ensure_eq!(item.image_ref, id, "Container.image_ref");
    pass()
}

async fn create_by_image_id(ctx: Ctx) -> Result<Outcome> {
    let id = ctx.image_id(&ctx.images().busybox).await?;
    let sandbox = ctx.sandbox().await?;
    let mut config = ctx.container_config(&sandbox, &["sh", "-c", "echo by-id"]);
    config.image = Some(image_spec(&id));
    let (container, status) = ctx.run_to_exit(&sandbox, config).await?;
    ensure_eq!(status.exit_code, 0, "exit code");
    ensure_eq!(status.image_ref, id, "ContainerStatus.image_ref");
    ctx.wait_log(&container.log_path, Duration::from_secs(5), |r| {
        logs::stream_lines(r, Stream::Stdout) == ["by-id"]
    })
    .await?;
    pass()
}

async fn exec_stdout(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let response = ctx.exec(&container.id, &["echo", "hello", "world"]).await?;
    ensure_eq!(response.exit_code, 0, "exit code");
    ensure_eq!(
        String::from_utf8_lossy(&response.stdout),
        "hello world\n",
        "stdout"
    );
    ensure_eq!(String::from_utf8_lossy(&response.stderr), "", "stderr");
    pass()
}

async fn exec_stderr_exit(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let response = ctx
        .exec(
            &container.id,
            &["sh", "-c", "echo out; echo oops >&2; exit 3"],
        )
        .await?;
    ensure_eq!(response.exit_code, 3, "exit code");
    ensure_eq!(String::from_utf8_lossy(&response.stdout), "out\n", "stdout");
    ensure_eq!(
        String::from_utf8_lossy(&response.stderr),
        "oops\n",
        "stderr"
    );
    pass()
}

async fn exec_timeout(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let request = cri::ExecSyncRequest {
        container_id: container.id.clone(),
        cmd: strings(&["sleep", "30"]),
        timeout: 2,
    };
    let started = Instant::now();
    let result = ctx.rt().exec_sync(request).await;
    let elapsed = started.elapsed();
    ensure!(
        elapsed < Duration::from_secs(15),
        "ExecSync(timeout 2s) of `sleep 30` returned after {elapsed:?}"
    );
    match result {
        // kubelet treats DeadlineExceeded as a probe timeout.
        Err(status) => ensure_code("ExecSync(timeout)", &status, &[Code::DeadlineExceeded])?,
        Ok(response) => bail!(
            "ExecSync(timeout 2s) of `sleep 30`: expected DeadlineExceeded, got success with exit code {}",
            response.into_inner().exit_code
        ),
    }
    pass()
}

async fn exec_env_user(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let mut config = ctx.container_config(&sandbox, &["sleep", "3600"]);
    config.image = Some(image_spec(&ctx.images().user));
    config.envs = vec![cri::KeyValue {
        key: "CONFORMANCE_EXEC".into(),
        value: "seen".into(),
    }];
    let container = ctx.running_container(&sandbox, config).await?;
    let output = ctx
        .sh(&container.id, "echo \"$CONFORMANCE_EXEC $(id -u) $(pwd)\"")
        .await?;
    ensure_eq!(
        output,
        format!(
            "seen {} {}",
            images::USER_IMAGE_UID,
            images::USER_IMAGE_WORKDIR
        ),
        "env, uid and cwd of an exec'd process"
    );
    pass()
}

async fn exec_large_output(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let response = ctx
        .exec(
            &container.id,
            &["sh", "-c", "head -c 1048576 /dev/zero | tr '\\0' x"],
        )
        .await?;
    ensure_eq!(response.exit_code, 0, "exit code");
    ensure_eq!(response.stdout.len(), 1_048_576, "stdout length");
    ensure!(
        response.stdout.iter().all(|b| *b == b'x'),
        "stdout holds bytes other than 'x'"
    );
    pass()
}

async fn exec_exited(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    ctx.stop_container(&container.id, 0).await?;
    let request = cri::ExecSyncRequest {
        container_id: container.id.clone(),
        cmd: strings(&["true"]),
        timeout: 10,
    };
    let status = call_err("ExecSync", ctx.rt().exec_sync(request)).await?;
    // Exec needs a running container: a wrong state.
    ensure_code_on(
        &ctx,
        "ExecSync(exited)",
        &status,
        Code::FailedPrecondition,
        &[Code::Unknown],
    )?;
    pass()
}

async fn exec_missing_binary(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let request = cri::ExecSyncRequest {
        container_id: container.id.clone(),
        cmd: strings(&["/no/such/binary"]),
        timeout: 10,
    };
    match ctx.rt().exec_sync(request).await {
        Err(status) if status.code() == Code::Unimplemented => {
            return Err(crate::runner::check::unimplemented("ExecSync", &status))
        }
        // Only the OCI runtime knows why the command did not start; both pass its word on.
        Err(status) => ensure_code_on(
            &ctx,
            "ExecSync(/no/such/binary)",
            &status,
            Code::Unknown,
            &[Code::Unknown],
        )?,
        Ok(response) => {
            let response = response.into_inner();
            ensure!(
                response.exit_code != 0,
                "ExecSync(/no/such/binary) succeeded with exit code 0"
            );
        }
    }
    pass()
}

async fn exec_unknown(ctx: Ctx) -> Result<Outcome> {
    let request = cri::ExecSyncRequest {
        container_id: UNKNOWN_ID.into(),
        cmd: strings(&["true"]),
        timeout: 10,
    };
    let status = call_err("ExecSync", ctx.rt().exec_sync(request)).await?;
    ensure_code("ExecSync(unknown)", &status, &[Code::NotFound])?;
    pass()
}

async fn checkpoint(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let container = ctx.sleeper(&sandbox).await?;
    let location = ctx.dir("checkpoint")?.join("checkpoint.tar");
    let request = cri::CheckpointContainerRequest {
        container_id: container.id.clone(),
        location: location.to_string_lossy().into_owned(),
        timeout: 60,
    };
    call(
        "CheckpointContainer",
        ctx.rt().checkpoint_container(request),
    )
    .await?;
    let size = std::fs::metadata(&location)
        .with_context(|| {
            format!(
                "CheckpointContainer wrote no archive at {}",
                location.display()
            )
        })?
        .len();
    ensure!(
        size > 0,
        "the checkpoint archive {} is empty",
        location.display()
    );
    pass()
}

async fn checkpoint_unknown(ctx: Ctx) -> Result<Outcome> {
    let location = ctx.dir("checkpoint")?.join("checkpoint.tar");
    let request = cri::CheckpointContainerRequest {
        container_id: UNKNOWN_ID.into(),
        location: location.to_string_lossy().into_owned(),
        timeout: 10,
    };
    let status = call_err(
        "CheckpointContainer",
        ctx.rt().checkpoint_container(request),
    )
    .await?;
    // containerd 1.6 does not implement CheckpointContainer (a skip): no code to pin.
    ensure_code_on(
        &ctx,
        "CheckpointContainer(unknown)",
        &status,
        Code::NotFound,
        &[],
    )?;
    pass()
}
