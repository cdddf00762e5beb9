//! Fault injection on a real private containerd: every failpoint (`shim/src/failpoint.rs`)
//! of RunPodSandbox, CreateContainer, StartContainer, StopPodSandbox and RemovePodSandbox,
//! once failing its step and once killing crius there (SIGKILL, no cleanup). After each,
//! crius restarts and the test checks that no pod was lost — the pod answered before the
//! fault is there in the state it had, the one whose call was cut short is complete or gone
//! without a trace — and, once every pod is removed, that the leak census equals the one
//! taken before. Then pods with two containers are run and removed in cycles
//! (`CRIUS_CYCLES`, 50 by default; `scripts/soak` runs 1000) with the census, crius's open
//! file descriptors and its RSS checked.
//!
//! Built only with the `failpoints` feature (`scripts/test` builds with it). Needs root and
//! the packages from `scripts/install-deps`.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use conformance::harness::census::{self, Census, Scope};
use conformance::harness::containerd::{Containerd, ContainerdOptions, NetworkInfo};
use conformance::harness::crius::Crius;
use conformance::harness::images::Images;
use conformance::harness::pods;
use conformance::runner::connect;
use cri_api::v1 as cri;
use tonic::Code;

const BUSYBOX: &str = "localhost/crius/busybox:1";
const NAMESPACE: &str = "crius";

/// The tests here run one at a time: pods' cgroups live in one host-wide tree, and a census
/// taken while the other test's pods run would count them as leaks.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Env {
    crius: Crius,
    containerd: Containerd,
    network: NetworkInfo,
    rt: pods::Runtime,
    logs: tempfile::TempDir,
}

impl Env {
    async fn start() -> Result<Env> {
        let bin = Crius::binary_path();
        let version = std::process::Command::new(&bin)
            .arg("version")
            .output()
            .with_context(|| format!("running {} version", bin.display()))?;
        let version = String::from_utf8_lossy(&version.stdout).into_owned();
        ensure!(
            version.contains("failpoints"),
            "{} is not built with failpoints ({version:?}): build it with \
             `cargo build --bins --features shim/failpoints`",
            bin.display()
        );
        let containerd = Containerd::start(ContainerdOptions::default())?;
        Images::get()?.import(&containerd, NAMESPACE, BUSYBOX)?;
        let crius = Crius::start(None, containerd.socket(), &[])?;
        let network = crius.write_cni_conflist("crius-faults", None)?;
        let channel = connect::channel(&crius.endpoint()).await?;
        let mut env = Env {
            rt: connect::runtime_client(channel),
            crius,
            containerd,
            network,
            logs: tempfile::tempdir()?,
        };
        env.wait_network_ready().await?;
        Ok(env)
    }

    async fn wait_network_ready(&mut self) -> Result<()> {
        conformance::reference::wait_network_ready(&mut self.rt).await
    }

    fn census(&self) -> Result<Census> {
        Census::take(&Scope {
            crius: &self.crius,
            containerd: &self.containerd,
            namespace: NAMESPACE,
            network: &self.network,
        })
    }

    async fn reconnect(&mut self) -> Result<()> {
        let channel = connect::channel(&self.crius.endpoint()).await?;
        self.rt = connect::runtime_client(channel);
        Ok(())
    }

    /// Stops crius (SIGTERM, a clean exit) and starts it with `failpoints` armed (or none).
    async fn restart(&mut self, failpoints: Option<&str>) -> Result<()> {
        self.crius.set_env("CRIUS_FAILPOINTS", failpoints);
        self.crius.restart()?;
        self.reconnect().await
    }

    /// Starts crius again after it killed itself, with no failpoint armed.
    async fn start_after_kill(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.crius.is_running() {
            ensure!(
                Instant::now() < deadline,
                "crius did not die at its failpoint"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.crius.set_env("CRIUS_FAILPOINTS", None);
        self.crius.start_again()?;
        self.reconnect().await
    }

    fn pod(&self, name: &str) -> cri::PodSandboxConfig {
        pods::pod_config(name, "faults", self.logs.path())
    }

    async fn run_pod(
        &mut self,
        name: &str,
    ) -> Result<(String, cri::PodSandboxConfig), tonic::Status> {
        let config = self.pod(name);
        let id = pods::run_pod(&mut self.rt, &config).await?;
        Ok((id, config))
    }

    async fn sleeper(
        &mut self,
        pod: &str,
        config: &cri::PodSandboxConfig,
        name: &str,
    ) -> Result<String, tonic::Status> {
        let container = pods::container_config(name, BUSYBOX, &["sleep", "3600"]);
        pods::create_and_start(&mut self.rt, pod, config, container).await
    }

    async fn sandboxes(&mut self) -> Result<Vec<cri::PodSandbox>> {
        Ok(self
            .rt
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await?
            .into_inner()
            .items)
    }

    async fn containers_of(&mut self, pod: &str) -> Result<Vec<cri::Container>> {
        Ok(self
            .rt
            .list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    pod_sandbox_id: pod.to_owned(),
                    ..Default::default()
                }),
            })
            .await?
            .into_inner()
            .containers)
    }

    /// Stops and removes every pod crius knows.
    async fn remove_all(&mut self) -> Result<()> {
        for pod in self.sandboxes().await? {
            pods::stop_and_remove_pod(&mut self.rt, &pod.id)
                .await
                .with_context(|| format!("removing pod {}", pod.id))?;
        }
        Ok(())
    }

    /// The census once every pod is gone must equal `baseline`.
    fn ensure_no_leak(&self, baseline: &Census, after: &str) -> Result<()> {
        let now = self.census()?;
        let leaks = baseline.leaks_since(&now);
        ensure!(
            leaks.is_empty(),
            "leaks after {after}:\n  {}",
            leaks.join("\n  ")
        );
        Ok(())
    }
}

/// Which call a failpoint interrupts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    RunPodSandbox,
    CreateContainer,
    StartContainer,
    StopPodSandbox,
    RemovePodSandbox,
}

fn call_of(failpoint: &str) -> Result<Call> {
    Ok(match failpoint.split('.').next() {
        Some("sandbox") => Call::RunPodSandbox,
        Some("container") => Call::CreateContainer,
        Some("start") => Call::StartContainer,
        Some("stop") => Call::StopPodSandbox,
        Some("remove") => Call::RemovePodSandbox,
        _ => bail!("failpoint {failpoint} belongs to no call the test knows"),
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Error,
    Kill,
}

impl Mode {
    fn word(self) -> &'static str {
        match self {
            Mode::Error => "error",
            Mode::Kill => "kill",
        }
    }
}

/// The faulted call's answer must be the failpoint's: `Internal` naming it, or (killed) a
/// transport failure, after which crius is gone.
fn ensure_faulted(
    failpoint: &str,
    mode: Mode,
    answer: std::result::Result<(), tonic::Status>,
) -> Result<()> {
    let Err(status) = answer else {
        bail!("{failpoint}={}: the call succeeded", mode.word());
    };
    match mode {
        Mode::Error => ensure!(
            status.code() == Code::Internal
                && status.message().contains(&format!("failpoint {failpoint}")),
            "{failpoint}=error: expected Internal naming the failpoint, got {:?}: {}",
            status.code(),
            status.message()
        ),
        Mode::Kill => ensure!(
            matches!(
                status.code(),
                Code::Unavailable | Code::Unknown | Code::Cancelled
            ),
            "{failpoint}=kill: expected the connection to drop, got {:?}: {}",
            status.code(),
            status.message()
        ),
    }
    Ok(())
}

/// One failpoint in one mode: see the module doc. Returns what happened to the victim.
async fn drive(env: &mut Env, failpoint: &str, mode: Mode, baseline: &Census) -> Result<String> {
    let call = call_of(failpoint)?;
    // The witness is answered before anything is armed.
    let (witness, witness_config) = env.run_pod("witness").await?;
    let witness_container = env.sleeper(&witness, &witness_config, "w").await?;
    env.restart(Some(&format!("{failpoint}={}", mode.word())))
        .await?;

    let mut victim: Option<String> = None;
    let mut victim_container: Option<String> = None;
    let answer: std::result::Result<(), tonic::Status> = async {
        if call == Call::RunPodSandbox {
            return env.run_pod("victim").await.map(drop);
        }
        let (pod, config) = env.run_pod("victim").await?;
        victim = Some(pod.clone());
        let container = pods::container_config("v", BUSYBOX, &["sleep", "3600"]);
        if call == Call::CreateContainer {
            return pods::create(&mut env.rt, &pod, &config, container)
                .await
                .map(drop);
        }
        let id = pods::create(&mut env.rt, &pod, &config, container).await?;
        victim_container = Some(id.clone());
        let started = env
            .rt
            .start_container(cri::StartContainerRequest { container_id: id })
            .await
            .map(drop);
        if call == Call::StartContainer {
            return started;
        }
        started?;
        let stopped = env
            .rt
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await
            .map(drop);
        if call == Call::StopPodSandbox {
            return stopped;
        }
        stopped?;
        env.rt
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod,
            })
            .await
            .map(drop)
    }
    .await;
    ensure_faulted(failpoint, mode, answer)?;

    match mode {
        Mode::Error => env.restart(None).await?,
        Mode::Kill => env.start_after_kill().await?,
    }

    // No pod lost: the witness is there, ready, its container running.
    let sandboxes = env.sandboxes().await?;
    let found = sandboxes
        .iter()
        .find(|s| s.id == witness)
        .with_context(|| format!("{failpoint}={}: the witness pod is lost", mode.word()))?;
    ensure!(
        found.state == cri::PodSandboxState::SandboxReady as i32,
        "{failpoint}={}: the witness pod is not ready after the restart",
        mode.word()
    );
    let witness_containers = env.containers_of(&witness).await?;
    ensure!(
        witness_containers.iter().any(|c| c.id == witness_container
            && c.state == cri::ContainerState::ContainerRunning as i32),
        "{failpoint}={}: the witness's container is not running: {witness_containers:?}",
        mode.word()
    );

    // The victim is complete or gone without a trace.
    let victims: Vec<&cri::PodSandbox> = sandboxes
        .iter()
        .filter(|s| s.metadata.as_ref().is_some_and(|m| m.name == "victim"))
        .collect();
    let outcome = match (call, victims.as_slice()) {
        (Call::RunPodSandbox, []) => "pod gone".to_owned(),
        (Call::RunPodSandbox, [pod]) => {
            ensure!(
                mode == Mode::Kill,
                "{failpoint}=error: RunPodSandbox failed but its pod {} is listed",
                pod.id
            );
            let status = env
                .rt
                .pod_sandbox_status(cri::PodSandboxStatusRequest {
                    pod_sandbox_id: pod.id.clone(),
                    verbose: false,
                })
                .await?
                .into_inner()
                .status
                .context("no status")?;
            let ip = status.network.map(|n| n.ip).unwrap_or_default();
            ensure!(
                status.state == cri::PodSandboxState::SandboxReady as i32 && !ip.is_empty(),
                "{failpoint}=kill: the pod left behind is incomplete (state {}, ip {ip:?})",
                status.state
            );
            "pod complete".to_owned()
        }
        (Call::CreateContainer, [pod]) => {
            let containers = env.containers_of(&pod.id).await?;
            match containers.as_slice() {
                [] => "container gone".to_owned(),
                [c] if mode == Mode::Kill
                    && c.state == cri::ContainerState::ContainerCreated as i32 =>
                {
                    "container complete".to_owned()
                }
                other => bail!(
                    "{failpoint}={}: after a failed CreateContainer the pod holds {other:?}",
                    mode.word()
                ),
            }
        }
        (Call::StartContainer, [pod]) => {
            let containers = env.containers_of(&pod.id).await?;
            let Some(c) = containers
                .iter()
                .find(|c| Some(&c.id) == victim_container.as_ref())
            else {
                bail!("{failpoint}={}: the created container is lost", mode.word());
            };
            format!("container {}", cri_state(c.state))
        }
        (Call::StopPodSandbox | Call::RemovePodSandbox, found) => {
            // A retry of the interrupted call must now succeed (both are idempotent).
            if let Some(id) = &victim {
                pods::stop_and_remove_pod(&mut env.rt, id)
                    .await
                    .with_context(|| format!("{failpoint}: retrying stop and remove"))?;
            }
            format!("{} pod(s) listed, removed on retry", found.len())
        }
        (_, other) => bail!(
            "{failpoint}={}: {} pods named victim after the restart",
            mode.word(),
            other.len()
        ),
    };
    env.remove_all().await?;
    env.ensure_no_leak(baseline, &format!("{failpoint}={}", mode.word()))?;
    Ok(outcome)
}

/// Prints a result line and keeps it for `scripts/test`'s summary (target/ci).
fn report(line: &str) {
    println!("{line}");
    let dir = conformance::harness::util::workspace_root().join("target/ci");
    if std::fs::create_dir_all(&dir).is_ok() {
        use std::io::Write as _;
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("faults-summary.txt"))
        {
            let _ = writeln!(file, "{line}");
        }
    }
}

fn cri_state(state: i32) -> &'static str {
    match cri::ContainerState::try_from(state) {
        Ok(cri::ContainerState::ContainerCreated) => "created",
        Ok(cri::ContainerState::ContainerRunning) => "running",
        Ok(cri::ContainerState::ContainerExited) => "exited",
        _ => "unknown",
    }
}

/// A pod with one container, run and removed: every lazily made directory then exists, so
/// the census that follows is the node's resting state. While the pod runs, the census must
/// see it in every kind where a pod lives (else a leak there could not be seen either).
async fn warm_up(env: &mut Env) -> Result<Census> {
    // With a host port, so that portmap's rules are made (and must go).
    let mut config = env.pod("warm-up");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    config.port_mappings = vec![cri::PortMapping {
        protocol: cri::Protocol::Tcp as i32,
        container_port: 8080,
        host_port: i32::from(port),
        host_ip: "127.0.0.1".into(),
    }];
    let pod = pods::run_pod(&mut env.rt, &config).await?;
    env.sleeper(&pod, &config, "c").await?;
    let running = env.census()?;
    pods::stop_and_remove_pod(&mut env.rt, &pod).await?;
    let baseline = env.census()?;
    let seen: Vec<&str> = running
        .kinds
        .iter()
        .filter(|(kind, objects)| baseline.kinds.get(*kind) != Some(*objects))
        .map(|(kind, _)| *kind)
        .collect();
    for kind in [
        "files under crius's root",
        "files under crius's state",
        "mounts under crius's directory",
        "IPAM allocations",
        "veths on the pods' bridge",
        "cgroups under crius",
        "iptables rules of CNI networks",
        "shim and container processes",
        "containerd containers",
        "containerd tasks",
        "containerd snapshots",
    ] {
        ensure!(
            seen.contains(&kind),
            "the census does not see a running pod in {kind:?} (it sees {seen:?})"
        );
    }
    Ok(baseline)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failpoint_failing_or_killing_crius_loses_no_pod_and_leaks_nothing() -> Result<()> {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut env = Env::start().await?;
    let baseline = warm_up(&mut env).await?;
    let started = Instant::now();
    let mut ran = 0;
    for failpoint in shim::failpoint::ALL {
        for mode in [Mode::Error, Mode::Kill] {
            let t0 = Instant::now();
            let outcome = drive(&mut env, failpoint, mode, &baseline)
                .await
                .with_context(|| format!("failpoint {failpoint}={}", mode.word()))?;
            ran += 1;
            println!(
                "failpoint {failpoint}={}: {outcome}; no pod lost, census clean ({:.1}s)",
                mode.word(),
                t0.elapsed().as_secs_f64()
            );
        }
    }
    report(&format!(
        "fault injection: {ran} combinations (failpoint x error/kill), 0 lost pods, 0 leaks \
         in a census of {} kinds, in {:.0}s",
        baseline.kinds.len(),
        started.elapsed().as_secs_f64()
    ));
    assert_eq!(ran, shim::failpoint::ALL.len() * 2);
    env.crius.shutdown()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_run_and_removed_in_cycles_leak_nothing_and_hold_fds_and_memory() -> Result<()> {
    let cycles: usize = match std::env::var("CRIUS_CYCLES") {
        Ok(n) => n.parse().context("CRIUS_CYCLES must be a number")?,
        Err(_) => 50,
    };
    ensure!(cycles >= 20, "CRIUS_CYCLES must be at least 20");
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut env = Env::start().await?;
    let baseline = warm_up(&mut env).await?;
    let pid = env.crius.pid().context("crius is not running")?;
    // A removed container's log file is closed 2 s after its exit: the baseline is taken
    // once the warm-up's has gone.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let fds_before = census::open_fds(pid)?;
    // RSS is compared between the tenth of the run and its end, after the allocator and
    // the caches have reached their working size.
    let settle = cycles / 10;
    let mut rss_settled = 0;
    let started = Instant::now();
    for cycle in 0..cycles {
        let (pod, config) = env.run_pod(&format!("cycle-{cycle}")).await?;
        env.sleeper(&pod, &config, "a").await?;
        env.sleeper(&pod, &config, "b").await?;
        pods::stop_and_remove_pod(&mut env.rt, &pod).await?;
        if cycle + 1 == settle {
            rss_settled = census::rss_kib(pid)?;
        }
    }
    let elapsed = started.elapsed();
    env.ensure_no_leak(&baseline, &format!("{cycles} cycles"))?;
    // Descriptors that close a moment after the last removal (log copiers end on EOF).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut fds_after = census::open_fds(pid)?;
    while fds_after != fds_before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        fds_after = census::open_fds(pid)?;
    }
    let rss_end = census::rss_kib(pid)?;
    let growth = rss_end.saturating_sub(rss_settled);
    report(&format!(
        "{cycles} cycles of a pod with two containers in {:.0}s: census of {} kinds clean; \
         fds {fds_before} -> {fds_after}; RSS {rss_settled} KiB at cycle {settle}, \
         {rss_end} KiB at the end (+{growth} KiB)",
        elapsed.as_secs_f64(),
        baseline.kinds.len()
    ));
    ensure!(
        fds_after == fds_before,
        "crius's open file descriptors: {fds_before} before, {fds_after} after {cycles} cycles"
    );
    ensure!(
        growth < 2048,
        "crius's RSS grew by {growth} KiB between cycle {settle} and cycle {cycles}"
    );
    env.crius.shutdown()?;
    Ok(())
}

/// What the kubelet-shaped load saw: calls answered and refused, by phase.
#[derive(Debug, Default)]
struct LoadTally {
    reads_ok: usize,
    reads_failed: usize,
    pods_made: Vec<String>,
    churn_failed: usize,
}

/// kubelet's every-second reads (lists, statuses, stats) on `rt`, and pods made and removed
/// as kubelet would, until `stop` is set. Each pod's run and removal holds `churn`.
async fn kubelet_load(
    mut rt: pods::Runtime,
    logs: std::path::PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    churn: std::sync::Arc<tokio::sync::Mutex<()>>,
) -> LoadTally {
    let mut tally = LoadTally::default();
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let reads = async {
            let pods = rt
                .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
                .await?
                .into_inner()
                .items;
            rt.list_containers(cri::ListContainersRequest { filter: None })
                .await?;
            rt.list_container_stats(cri::ListContainerStatsRequest { filter: None })
                .await?;
            for pod in pods.iter().take(5) {
                rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
                    pod_sandbox_id: pod.id.clone(),
                    verbose: false,
                })
                .await?;
            }
            Ok::<_, tonic::Status>(())
        };
        match reads.await {
            Ok(()) => tally.reads_ok += 1,
            Err(_) => tally.reads_failed += 1,
        }
        // One pod made and removed every few rounds; failures are expected while
        // containerd is down, and what they left is judged by the census afterwards.
        if n % 4 == 0 {
            let _turn = churn.lock().await;
            let config = pods::pod_config(&format!("churn-{n}"), "faults", &logs);
            match pods::run_pod(&mut rt, &config).await {
                Ok(id) => {
                    tally.pods_made.push(id.clone());
                    if pods::stop_and_remove_pod(&mut rt, &id).await.is_err() {
                        tally.churn_failed += 1;
                    }
                }
                Err(_) => tally.churn_failed += 1,
            }
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_killed_and_restarted_under_load_loses_no_pod_and_leaks_nothing() -> Result<()> {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut env = Env::start().await?;
    let baseline = warm_up(&mut env).await?;
    let mut witnesses = Vec::new();
    for w in 0..5 {
        let (pod, config) = env.run_pod(&format!("witness-{w}")).await?;
        let container = env.sleeper(&pod, &config, "w").await?;
        witnesses.push((pod, container));
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = std::sync::Arc::new(tokio::sync::Mutex::new(()));
    let load = tokio::spawn(kubelet_load(
        env.rt.clone(),
        env.logs.path().to_path_buf(),
        stop.clone(),
        churn.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    {
        // Not while a pod is being made: containerd 1.6 SIGKILLed in the middle of a task
        // create loses that task, and its shim and runc init stay behind where no API of
        // containerd's shows them (seen in 1 of 4 runs). Pods are made and removed again as
        // soon as containerd is dead, and those calls fail and are undone.
        let _between_pods = churn.lock().await;
        env.containerd.kill9()?;
    }
    // While containerd is down, the store still answers kubelet's reads.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let listed = env.sandboxes().await?;
    ensure!(
        witnesses
            .iter()
            .all(|(pod, _)| listed.iter().any(|s| &s.id == pod)),
        "ListPodSandbox lost pods while containerd was down: {listed:?}"
    );
    let down_at = Instant::now();
    let runtime_ready = |status: &cri::StatusResponse| {
        status
            .status
            .iter()
            .flat_map(|s| &s.conditions)
            .any(|c| c.r#type == "RuntimeReady" && c.status)
    };
    let mut said_not_ready = false;
    while down_at.elapsed() < Duration::from_secs(15) {
        let status = env
            .rt
            .status(cri::StatusRequest { verbose: false })
            .await?
            .into_inner();
        if !runtime_ready(&status) {
            said_not_ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ensure!(
        said_not_ready,
        "Status kept RuntimeReady true with containerd down"
    );
    env.containerd.start_again()?;
    let up_at = Instant::now();
    loop {
        let status = env
            .rt
            .status(cri::StatusRequest { verbose: false })
            .await?
            .into_inner();
        if runtime_ready(&status) {
            break;
        }
        ensure!(
            up_at.elapsed() < Duration::from_secs(30),
            "RuntimeReady not true again 30 s after containerd came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let back_after = up_at.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let tally = load.await?;
    ensure!(
        tally.reads_ok > 0,
        "the load made no successful read: {tally:?}"
    );

    // No pod lost: every witness is ready, its container running (its shim outlived
    // containerd).
    for (pod, container) in &witnesses {
        let status = env
            .rt
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: pod.clone(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .context("no status")?;
        ensure!(
            status.state == cri::PodSandboxState::SandboxReady as i32,
            "witness {pod} is not ready after containerd's restart"
        );
        let containers = env.containers_of(pod).await?;
        ensure!(
            containers
                .iter()
                .any(|c| &c.id == container
                    && c.state == cri::ContainerState::ContainerRunning as i32),
            "witness {pod}'s container is not running: {containers:?}"
        );
    }
    // A new pod works again.
    let (pod, config) = env.run_pod("after").await?;
    env.sleeper(&pod, &config, "c").await?;
    env.remove_all().await?;
    env.ensure_no_leak(&baseline, "containerd's kill and restart under load")?;
    report(&format!(
        "containerd SIGKILLed under a kubelet-shaped load and restarted: RuntimeReady back \
         {:.1}s after it, {} read rounds answered ({} refused), {} pods churned ({} calls \
         refused), 5 witnesses kept, census clean",
        back_after.as_secs_f64(),
        tally.reads_ok,
        tally.reads_failed,
        tally.pods_made.len(),
        tally.churn_failed
    ));
    env.crius.shutdown()?;
    Ok(())
}
