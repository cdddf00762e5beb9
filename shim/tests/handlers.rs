//! RuntimeClass handlers against a real crius on a private containerd: a second handler,
//! configured in a `[runtimes.<name>]` table, runs its pods with its own OCI runtime binary
//! and state directory; Status lists it; an unknown handler is refused before any work; the
//! handler survives a crius restart. The second runtime is runc behind a wrapper that
//! records how it is called. Needs root and the packages from `scripts/install-deps`.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use conformance::harness::containerd::{Containerd, ContainerdOptions};
use conformance::harness::crius::Crius;
use conformance::harness::images::Images;
use conformance::harness::pods;
use conformance::runner::connect;
use cri_api::v1 as cri;
use cri_api::v1::runtime_service_client::RuntimeServiceClient;

type Runtime = RuntimeServiceClient<tonic::transport::Channel>;
use tonic::Code;

const BUSYBOX: &str = "localhost/crius/busybox:1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_handler_runs_its_pods_with_its_own_runtime() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let calls = dir.path().join("calls.log");
    let wrapper = dir.path().join("runc-wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\nexec runc \"$@\"\n",
            calls.display()
        ),
    )?;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
    // A runtime that says it can do idmapped mounts (runc 1.1 here cannot): what a handler
    // reports comes from its own runtime, not from runc's.
    let idmap = dir.path().join("idmap-runtime");
    std::fs::write(
        &idmap,
        "#!/bin/sh\nif [ \"$1\" = features ]; then\n  echo '{\"mountOptions\":[\"rro\"],\"linux\":{\"namespaces\":[\"user\"],\"mountExtensions\":{\"idmap\":{\"enabled\":true}}}}'\n  exit 0\nfi\nexec runc \"$@\"\n",
    )?;
    std::fs::set_permissions(&idmap, std::fs::Permissions::from_mode(0o755))?;
    let root = dir.path().join("wrapped-root");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[runtimes.wrapped]\nruntime_path = \"{}\"\nruntime_root = \"{}\"\npod_annotations = [\"example.com/*\"]\n\n[runtimes.idmap]\nruntime_path = \"{}\"\n",
            wrapper.display(),
            root.display(),
            idmap.display()
        ),
    )?;

    let containerd = Containerd::start(ContainerdOptions::default())?;
    Images::get()?.import(&containerd, "crius", BUSYBOX)?;
    let config_arg = config.display().to_string();
    let mut crius = Crius::start(None, containerd.socket(), &["--config", &config_arg])?;
    crius.write_cni_conflist("crius-handlers", None)?;
    let channel = connect::channel(&crius.endpoint()).await?;
    let mut rt = connect::runtime_client(channel);
    conformance::reference::wait_network_ready(&mut rt).await?;

    // Status lists the default, runc and the configured handler, each with its features.
    let status = rt
        .status(cri::StatusRequest { verbose: false })
        .await?
        .into_inner();
    let names: Vec<&str> = status
        .runtime_handlers
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    ensure!(
        names == ["", "idmap", "runc", "wrapped"],
        "Status.runtime_handlers: {names:?}"
    );
    let userns = |name: &str| {
        status
            .runtime_handlers
            .iter()
            .find(|h| h.name == name)
            .and_then(|h| h.features.as_ref())
            .map(|f| f.user_namespaces)
    };
    ensure!(
        userns("idmap") == Some(true) && userns("runc") == Some(false) && userns("") == Some(false),
        "user namespaces per handler, as each runtime reports: {:?}",
        status.runtime_handlers
    );

    // An unknown handler is refused before anything is made.
    let logs = tempfile::tempdir()?;
    let mut unknown = pods::pod_config("unknown", "handlers", logs.path());
    unknown.metadata.as_mut().context("metadata")?.uid = "unknown-uid".into();
    let refused = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(unknown),
            runtime_handler: "kata".into(),
        })
        .await
        .expect_err("an unknown handler must be refused");
    ensure!(
        refused.code() == Code::InvalidArgument && refused.message().contains("\"kata\""),
        "RunPodSandbox with handler kata: {refused:?}"
    );
    ensure!(
        rt.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await?
            .into_inner()
            .items
            .is_empty(),
        "a refused RunPodSandbox left a sandbox"
    );

    // A pod on the second handler: its sandbox and container run through the wrapper.
    let mut sandbox_config = pods::pod_config("wrapped", "handlers", logs.path());
    sandbox_config
        .annotations
        .insert("example.com/setting".into(), "on".into());
    sandbox_config
        .annotations
        .insert("other.org/setting".into(), "off".into());
    let pod = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(sandbox_config.clone()),
            runtime_handler: "wrapped".into(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id;
    let container = pods::create_and_start(
        &mut rt,
        &pod,
        &sandbox_config,
        pods::container_config("app", BUSYBOX, &["sleep", "600"]),
    )
    .await?;
    let (code, out, _) = pods::exec_sh(&mut rt, &container, "echo hello", 10).await?;
    ensure!(code == 0 && out == "hello\n", "exec: {code} {out:?}");
    let called = std::fs::read_to_string(&calls).context("the wrapper was never called")?;
    let root_arg = format!("--root {}", root.display());
    ensure!(
        called
            .lines()
            .any(|l| l.contains("create") && l.contains(&root_arg)),
        "the wrapper never created a container under {}: {called}",
        root.display()
    );
    ensure!(
        called.lines().filter(|l| l.contains(" start ")).count() >= 2,
        "the pause and the app container both start through the wrapper: {called}"
    );
    // The runc shim keeps each namespace's containers under `<root>/<namespace>`.
    let state = root.join("crius").join(&container);
    ensure!(
        state.join("state.json").exists(),
        "no runc state for the container at {}",
        state.display()
    );
    // The allow-listed pod annotation reaches the container's OCI spec, the other does not.
    let verbose = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: container.clone(),
            verbose: true,
        })
        .await?
        .into_inner();
    let info = verbose.info.get("info").cloned().unwrap_or_default();
    ensure!(
        info.contains("example.com/setting") && !info.contains("other.org/setting"),
        "the container's spec carries the allowed pod annotation only: {info}"
    );

    let handler_of = |rt: &mut Runtime, pod: String| {
        let mut rt = rt.clone();
        async move {
            Ok::<_, anyhow::Error>(
                rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
                    pod_sandbox_id: pod,
                    verbose: false,
                })
                .await?
                .into_inner()
                .status
                .context("status")?
                .runtime_handler,
            )
        }
    };
    ensure!(handler_of(&mut rt, pod.clone()).await? == "wrapped");

    // After a restart the pod still runs on its handler and is stopped through it.
    crius.restart()?;
    let channel = connect::channel(&crius.endpoint()).await?;
    let mut rt = connect::runtime_client(channel);
    ensure!(handler_of(&mut rt, pod.clone()).await? == "wrapped");
    let (code, _, _) = pods::exec_sh(&mut rt, &container, "true", 10).await?;
    ensure!(code == 0, "exec after the restart");
    pods::stop_and_remove_pod(&mut rt, &pod).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let called = std::fs::read_to_string(&calls)?;
    ensure!(
        called
            .lines()
            .any(|l| l.contains("delete") && l.contains(&root_arg)),
        "the pod's containers were removed through the wrapper: {called}"
    );
    crius.shutdown()?;
    Ok(())
}
