//! What a case gets: connected clients, the run's settings, and helpers that create uniquely
//! named sandboxes and containers which are always cleaned up, even when the case fails or
//! times out.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cri_api::v1 as cri;
use cri_api::v1::image_service_client::ImageServiceClient;
use cri_api::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;
use tonic::Code;

use super::check::{call, describe};
use super::logs::{parse_log, LogRecord};
use super::{connect, host, skip};
use crate::images::TestImages;

/// Label every sandbox of a run carries (value: the run id).
pub const RUN_LABEL: &str = "conformance.crius.io/run";
/// Label every sandbox and container of a case carries (value: the case's index).
pub const CASE_LABEL: &str = "conformance.crius.io/case";
/// Namespace of every sandbox the suite creates.
pub const POD_NAMESPACE: &str = "crius-conformance";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Containerd,
    Docker,
}

/// A registry that requires basic auth.
#[derive(Clone, Debug)]
pub struct AuthRegistry {
    pub address: String,
    pub user: String,
    pub password: String,
}

/// Everything a run was told on the command line that cases need.
#[derive(Clone, Debug)]
pub struct Settings {
    pub endpoint: String,
    pub image_endpoint: String,
    /// `127.0.0.1:PORT` of a plain-HTTP registry holding `pull_repo`.
    pub registry: Option<String>,
    pub auth_registry: Option<AuthRegistry>,
    /// `repo:tag` of the pullable image inside the registries.
    pub pull_repo: String,
    pub images: TestImages,
    pub backend: Option<Backend>,
    /// The endpoint is the reference (containerd's built-in CRI).
    pub reference: bool,
}

/// State shared by every case of a run.
pub struct Shared {
    runtime: RuntimeServiceClient<Channel>,
    image: ImageServiceClient<Channel>,
    pub settings: Settings,
    /// Short random id that prefixes every name, so runs never collide.
    pub run_id: String,
    /// The endpoint's cgroup driver (RuntimeConfig; cgroupfs when it does not say).
    pub cgroup_driver: cri::CgroupDriver,
    /// Temp dir holding log directories and host paths of this run.
    pub work_dir: PathBuf,
    locks: Mutex<HashMap<&'static str, Arc<tokio::sync::Mutex<()>>>>,
}

impl Shared {
    /// Connects to the endpoints and creates the run's work dir.
    pub async fn connect(settings: Settings) -> Result<Arc<Shared>> {
        let runtime = connect::runtime_client(connect::channel(&settings.endpoint).await?);
        let image = connect::image_client(connect::channel(&settings.image_endpoint).await?);
        let run_id = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
        let cgroup_driver = runtime
            .clone()
            .runtime_config(cri::RuntimeConfigRequest {})
            .await
            .ok()
            .and_then(|r| r.into_inner().linux)
            .and_then(|l| cri::CgroupDriver::try_from(l.cgroup_driver).ok())
            .unwrap_or(cri::CgroupDriver::Cgroupfs);
        let work_dir = std::env::temp_dir().join(format!("crius-conformance-{run_id}"));
        std::fs::create_dir_all(&work_dir)
            .with_context(|| format!("creating {}", work_dir.display()))?;
        Ok(Arc::new(Shared {
            runtime,
            image,
            settings,
            run_id,
            cgroup_driver,
            work_dir,
            locks: Mutex::new(HashMap::new()),
        }))
    }

    pub fn runtime(&self) -> RuntimeServiceClient<Channel> {
        self.runtime.clone()
    }

    pub fn image(&self) -> ImageServiceClient<Channel> {
        self.image.clone()
    }

    pub(super) fn lock(&self, name: &'static str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(name).or_default().clone()
    }

    /// Stops and removes every sandbox this run left behind (labelled with the run id).
    pub async fn sweep(&self) -> Result<usize> {
        let filter = cri::PodSandboxFilter {
            label_selector: HashMap::from([(RUN_LABEL.to_owned(), self.run_id.clone())]),
            ..Default::default()
        };
        let leftovers = list_sandboxes(&self.runtime(), filter).await?;
        for sandbox in &leftovers {
            remove_sandbox(&self.runtime(), &sandbox.id).await?;
        }
        Ok(leftovers.len())
    }

    pub fn remove_work_dir(&self) -> Result<()> {
        std::fs::remove_dir_all(&self.work_dir)
            .with_context(|| format!("removing {}", self.work_dir.display()))
    }
}

#[derive(Debug)]
enum Resource {
    Container(String),
    Sandbox(String),
    Image(String),
    Mount(PathBuf),
    CgroupParent(String),
}

/// Per-case state: an index used in names and labels, a directory, and what to clean up.
pub(super) struct CaseState {
    index: usize,
    dir: PathBuf,
    counter: AtomicUsize,
    resources: Mutex<Vec<Resource>>,
}

impl CaseState {
    pub(super) fn new(shared: &Shared, index: usize) -> CaseState {
        CaseState {
            index,
            dir: shared.work_dir.join(format!("case-{index:03}")),
            counter: AtomicUsize::new(0),
            resources: Mutex::new(Vec::new()),
        }
    }
}

/// A sandbox created by a case.
#[derive(Clone, Debug)]
pub struct Sandbox {
    pub id: String,
    pub config: cri::PodSandboxConfig,
}

impl Sandbox {
    pub fn log_dir(&self) -> PathBuf {
        PathBuf::from(&self.config.log_directory)
    }

    /// The namespace options the sandbox was created with (containers inherit them).
    pub fn namespace_options(&self) -> Option<cri::NamespaceOption> {
        self.config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone())
    }
}

/// A container created by a case.
#[derive(Clone, Debug)]
pub struct Container {
    pub id: String,
    /// Absolute path of its CRI log file (sandbox log directory + `log_path`).
    pub log_path: PathBuf,
}

/// The handle a case body gets. Cheap to clone.
#[derive(Clone)]
pub struct Ctx {
    shared: Arc<Shared>,
    case: Arc<CaseState>,
}

impl Ctx {
    pub(super) fn new(shared: Arc<Shared>, case: Arc<CaseState>) -> Ctx {
        Ctx { shared, case }
    }

    pub fn rt(&self) -> RuntimeServiceClient<Channel> {
        self.shared.runtime()
    }

    pub fn img(&self) -> ImageServiceClient<Channel> {
        self.shared.image()
    }

    pub fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    pub fn images(&self) -> &TestImages {
        &self.shared.settings.images
    }

    pub fn run_id(&self) -> &str {
        &self.shared.run_id
    }

    /// A name unique to this run and case: `<run>-<case>-<what><n>`.
    pub fn unique(&self, what: &str) -> String {
        let n = self.case.counter.fetch_add(1, Ordering::Relaxed);
        format!("{}-{:03}-{what}{n}", self.shared.run_id, self.case.index)
    }

    /// The labels every object of this case carries.
    pub fn labels(&self) -> HashMap<String, String> {
        HashMap::from([
            (RUN_LABEL.to_owned(), self.shared.run_id.clone()),
            (CASE_LABEL.to_owned(), format!("{:03}", self.case.index)),
        ])
    }

    /// A fresh directory under the case's work dir.
    pub fn dir(&self, what: &str) -> Result<PathBuf> {
        let dir = self.case.dir.join(self.unique(what));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    fn track(&self, resource: Resource) {
        self.case
            .resources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(resource);
    }

    /// Unmounts `path` at cleanup.
    pub fn track_mount(&self, path: &Path) {
        self.track(Resource::Mount(path.to_owned()));
    }

    /// Removes the cgroup directories of `parent` at cleanup (runtimes leave parents behind).
    pub fn track_cgroup_parent(&self, parent: &str) {
        self.track(Resource::CgroupParent(parent.to_owned()));
    }

    /// Removes the image at cleanup (never a preloaded test image).
    pub fn track_image(&self, reference: &str) {
        self.track(Resource::Image(reference.to_owned()));
    }

    // ---- sandboxes ----

    /// A cgroup parent of the endpoint's driver's form, removed at cleanup (kubelet always
    /// gives one; runtimes compute pod stats from it).
    pub fn cgroup_parent(&self) -> String {
        let n = self.case.counter.fetch_add(1, Ordering::Relaxed);
        match self.shared.cgroup_driver {
            // A '-' in a slice name means nesting; keep the name flat.
            cri::CgroupDriver::Systemd => {
                format!(
                    "crconf{}c{:03}n{n}.slice",
                    self.shared.run_id, self.case.index
                )
            }
            cri::CgroupDriver::Cgroupfs => {
                let parent = format!(
                    "/crius-conformance-{}-{:03}-{n}",
                    self.shared.run_id, self.case.index
                );
                self.track_cgroup_parent(&parent);
                parent
            }
        }
    }

    /// A sandbox config like kubelet's: unique metadata, an absolute log directory (created),
    /// a cgroup parent, pod network/IPC, per-container PID namespace, the case labels.
    pub fn sandbox_config(&self) -> Result<cri::PodSandboxConfig> {
        let name = self.unique("pod");
        let log_directory = self.case.dir.join("pods").join(&name);
        std::fs::create_dir_all(&log_directory)
            .with_context(|| format!("creating {}", log_directory.display()))?;
        Ok(cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name,
                uid: random_uid(),
                namespace: POD_NAMESPACE.to_owned(),
                attempt: 0,
            }),
            log_directory: log_directory.to_string_lossy().into_owned(),
            labels: self.labels(),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent(),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: cri::NamespaceMode::Pod as i32,
                        pid: cri::NamespaceMode::Container as i32,
                        ipc: cri::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    /// Runs a sandbox from `config`; it is stopped and removed at cleanup.
    pub async fn run_sandbox(&self, config: cri::PodSandboxConfig) -> Result<Sandbox> {
        let request = cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        };
        let response = call("RunPodSandbox", self.rt().run_pod_sandbox(request)).await?;
        self.track(Resource::Sandbox(response.pod_sandbox_id.clone()));
        Ok(Sandbox {
            id: response.pod_sandbox_id,
            config,
        })
    }

    /// Runs a sandbox with the default config.
    pub async fn sandbox(&self) -> Result<Sandbox> {
        let config = self.sandbox_config()?;
        self.run_sandbox(config).await
    }

    pub async fn sandbox_status(&self, id: &str) -> Result<cri::PodSandboxStatusResponse> {
        let request = cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_owned(),
            verbose: false,
        };
        call("PodSandboxStatus", self.rt().pod_sandbox_status(request)).await
    }

    /// The sandbox's status message (fails when the response lacks one).
    pub async fn sandbox_state(&self, id: &str) -> Result<cri::PodSandboxStatus> {
        self.sandbox_status(id)
            .await?
            .status
            .with_context(|| format!("PodSandboxStatus({id}) returned no status"))
    }

    pub async fn list_sandboxes(
        &self,
        filter: cri::PodSandboxFilter,
    ) -> Result<Vec<cri::PodSandbox>> {
        list_sandboxes(&self.rt(), filter).await
    }

    pub async fn stop_sandbox(&self, id: &str) -> Result<()> {
        let request = cri::StopPodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        call("StopPodSandbox", self.rt().stop_pod_sandbox(request)).await?;
        Ok(())
    }

    pub async fn remove_sandbox(&self, id: &str) -> Result<()> {
        let request = cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        call("RemovePodSandbox", self.rt().remove_pod_sandbox(request)).await?;
        Ok(())
    }

    /// Runtime status; `NetworkReady` tells whether pod networking can be expected.
    pub async fn runtime_status(&self) -> Result<cri::StatusResponse> {
        call(
            "Status",
            self.rt().status(cri::StatusRequest { verbose: false }),
        )
        .await
    }

    /// The sandbox's pod IP. Skips the case when the endpoint has no pod network (empty IP
    /// and `NetworkReady=false`); an empty IP with a ready network fails it.
    pub async fn pod_ip(&self, sandbox: &Sandbox) -> Result<String> {
        let status = self.sandbox_state(&sandbox.id).await?;
        let ip = status.network.map(|n| n.ip).unwrap_or_default();
        if !ip.is_empty() {
            return Ok(ip);
        }
        let conditions = self
            .runtime_status()
            .await?
            .status
            .map(|s| s.conditions)
            .unwrap_or_default();
        let network = conditions.iter().find(|c| c.r#type == "NetworkReady");
        match network {
            Some(c) if c.status => bail!(
                "PodSandboxStatus({}).network.ip is empty although Status reports NetworkReady=true",
                sandbox.id
            ),
            Some(c) => Err(skip(format!(
                "the endpoint has no pod network (NetworkReady=false: {} {})",
                c.reason, c.message
            ))),
            None => Err(skip("the endpoint reports no NetworkReady condition and no pod IP")),
        }
    }

    // ---- containers ----

    /// A container config: unique name, the busybox image, `command`, a log path like
    /// kubelet's (`<name>/<attempt>.log`), the case labels, the sandbox's namespace options.
    pub fn container_config(&self, sandbox: &Sandbox, command: &[&str]) -> cri::ContainerConfig {
        let name = self.unique("ctr");
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.clone(),
                attempt: 0,
            }),
            image: Some(image_spec(&self.images().busybox)),
            command: strings(command),
            log_path: format!("{name}/0.log"),
            labels: self.labels(),
            linux: Some(cri::LinuxContainerConfig {
                resources: None,
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: sandbox.namespace_options(),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }

    /// Creates a container (its log directory first, as kubelet does); it is removed at cleanup.
    pub async fn create_container(
        &self,
        sandbox: &Sandbox,
        config: cri::ContainerConfig,
    ) -> Result<Container> {
        let log_path = sandbox.log_dir().join(&config.log_path);
        if let Some(parent) = log_path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let request = cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.id.clone(),
            config: Some(config),
            sandbox_config: Some(sandbox.config.clone()),
        };
        let response = call("CreateContainer", self.rt().create_container(request)).await?;
        self.track(Resource::Container(response.container_id.clone()));
        Ok(Container {
            id: response.container_id,
            log_path,
        })
    }

    pub async fn start_container(&self, id: &str) -> Result<()> {
        let request = cri::StartContainerRequest {
            container_id: id.to_owned(),
        };
        call("StartContainer", self.rt().start_container(request)).await?;
        Ok(())
    }

    pub async fn stop_container(&self, id: &str, timeout: i64) -> Result<()> {
        let request = cri::StopContainerRequest {
            container_id: id.to_owned(),
            timeout,
        };
        call("StopContainer", self.rt().stop_container(request)).await?;
        Ok(())
    }

    pub async fn remove_container(&self, id: &str) -> Result<()> {
        let request = cri::RemoveContainerRequest {
            container_id: id.to_owned(),
        };
        call("RemoveContainer", self.rt().remove_container(request)).await?;
        Ok(())
    }

    /// Creates and starts a container and waits until it is running.
    pub async fn running_container(
        &self,
        sandbox: &Sandbox,
        config: cri::ContainerConfig,
    ) -> Result<Container> {
        let container = self.create_container(sandbox, config).await?;
        self.start_and_wait(&container.id).await?;
        Ok(container)
    }

    /// Starts a created container and waits until it is running.
    pub async fn start_and_wait(&self, id: &str) -> Result<()> {
        self.start_container(id).await?;
        self.wait_container_state(
            id,
            cri::ContainerState::ContainerRunning,
            Duration::from_secs(20),
        )
        .await?;
        Ok(())
    }

    /// A running busybox container that sleeps for an hour (stopped with SIGKILL at cleanup).
    pub async fn sleeper(&self, sandbox: &Sandbox) -> Result<Container> {
        let config = self.container_config(sandbox, &["sleep", "3600"]);
        self.running_container(sandbox, config).await
    }

    /// Creates and starts a container and waits for it to exit; returns its final status.
    pub async fn run_to_exit(
        &self,
        sandbox: &Sandbox,
        config: cri::ContainerConfig,
    ) -> Result<(Container, cri::ContainerStatus)> {
        let container = self.create_container(sandbox, config).await?;
        self.start_container(&container.id).await?;
        let status = self
            .wait_container_state(
                &container.id,
                cri::ContainerState::ContainerExited,
                Duration::from_secs(40),
            )
            .await?;
        Ok((container, status))
    }

    pub async fn container_status(&self, id: &str) -> Result<cri::ContainerStatus> {
        let request = cri::ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: false,
        };
        call("ContainerStatus", self.rt().container_status(request))
            .await?
            .status
            .with_context(|| format!("ContainerStatus({id}) returned no status"))
    }

    /// Polls `ContainerStatus` until the container reaches `state`.
    pub async fn wait_container_state(
        &self,
        id: &str,
        state: cri::ContainerState,
        within: Duration,
    ) -> Result<cri::ContainerStatus> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let status = self.container_status(id).await?;
            if status.state == state as i32 {
                return Ok(status);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "container {id}: expected state {:?} within {within:?}, still {:?} (exit code {}, reason {:?}, message {:?})",
                    state,
                    container_state_name(status.state),
                    status.exit_code,
                    status.reason,
                    status.message
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn list_containers(
        &self,
        filter: cri::ContainerFilter,
    ) -> Result<Vec<cri::Container>> {
        let request = cri::ListContainersRequest {
            filter: Some(filter),
        };
        Ok(call("ListContainers", self.rt().list_containers(request))
            .await?
            .containers)
    }

    // ---- exec ----

    /// `ExecSync(cmd)` with a 30 s timeout.
    pub async fn exec(&self, id: &str, cmd: &[&str]) -> Result<cri::ExecSyncResponse> {
        let request = cri::ExecSyncRequest {
            container_id: id.to_owned(),
            cmd: strings(cmd),
            timeout: 30,
        };
        call("ExecSync", self.rt().exec_sync(request)).await
    }

    /// Runs `sh -c script` in the container; fails unless it exits 0; returns trimmed stdout.
    pub async fn sh(&self, id: &str, script: &str) -> Result<String> {
        let response = self.exec(id, &["sh", "-c", script]).await?;
        if response.exit_code != 0 {
            bail!(
                "`{script}` in container {id}: expected exit code 0, got {} (stdout {:?}, stderr {:?})",
                response.exit_code,
                String::from_utf8_lossy(&response.stdout),
                String::from_utf8_lossy(&response.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&response.stdout).trim().to_owned())
    }

    // ---- logs ----

    /// Polls the CRI log file at `path` until `done` holds for its parsed records (or the
    /// time is up, then fails with what the file held). Every line must parse.
    pub async fn wait_log(
        &self,
        path: &Path,
        within: Duration,
        done: impl Fn(&[LogRecord]) -> bool,
    ) -> Result<Vec<LogRecord>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let content = match tokio::fs::read(path).await {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            };
            // A record may be mid-write; only judge complete files at the deadline.
            let parsed = parse_log(&content);
            if let Ok(records) = &parsed {
                if done(records) {
                    return parsed;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                let records = parsed.with_context(|| format!("log file {}", path.display()))?;
                bail!(
                    "log file {} did not reach the expected content within {within:?}; it holds {:?}",
                    path.display(),
                    records.iter().map(|r| &r.text).collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // ---- images ----

    /// `ImageStatus` of `reference`; `None` when the endpoint does not have it.
    pub async fn image_status(&self, reference: &str) -> Result<Option<cri::Image>> {
        let request = cri::ImageStatusRequest {
            image: Some(image_spec(reference)),
            verbose: false,
        };
        Ok(call("ImageStatus", self.img().image_status(request))
            .await?
            .image)
    }

    /// The image id of a test image that must be present.
    pub async fn image_id(&self, reference: &str) -> Result<String> {
        match self.image_status(reference).await? {
            Some(image) => Ok(image.id),
            None => bail!("test image {reference} is not present in the endpoint's image store"),
        }
    }

    // ---- cleanup ----

    /// Removes everything the case created, newest first; containers, then sandboxes (also
    /// any whose creation was interrupted, found by the case label), images, mounts, cgroups.
    pub(super) async fn cleanup(&self) -> Result<()> {
        let resources: Vec<Resource> = std::mem::take(
            &mut *self
                .case
                .resources
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        let mut errors = Vec::new();
        for resource in resources.iter().rev() {
            if let Resource::Container(id) = resource {
                if let Err(e) = remove_container(&self.rt(), id).await {
                    errors.push(format!("{e:#}"));
                }
            }
        }
        let mut sandboxes: Vec<String> = resources
            .iter()
            .rev()
            .filter_map(|r| match r {
                Resource::Sandbox(id) => Some(id.clone()),
                _ => None,
            })
            .collect();
        let filter = cri::PodSandboxFilter {
            label_selector: self.labels(),
            ..Default::default()
        };
        match list_sandboxes(&self.rt(), filter).await {
            Ok(found) => {
                for sandbox in found {
                    if !sandboxes.contains(&sandbox.id) {
                        sandboxes.push(sandbox.id);
                    }
                }
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
        for id in &sandboxes {
            if let Err(e) = remove_sandbox(&self.rt(), id).await {
                errors.push(format!("{e:#}"));
            }
        }
        for resource in resources.iter().rev() {
            let result = match resource {
                Resource::Image(reference) if !self.images().is_preloaded(reference) => {
                    remove_image(&self.img(), reference).await
                }
                Resource::Mount(path) => host::unmount(path),
                Resource::CgroupParent(parent) => {
                    for dir in host::cgroup_dirs(parent) {
                        // Busy when the runtime still holds it; nothing else to do then.
                        let _ = std::fs::remove_dir(dir);
                    }
                    Ok(())
                }
                _ => Ok(()),
            };
            if let Err(e) = result {
                errors.push(format!("{e:#}"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            bail!("cleanup: {}", errors.join("; "))
        }
    }
}

async fn list_sandboxes(
    runtime: &RuntimeServiceClient<Channel>,
    filter: cri::PodSandboxFilter,
) -> Result<Vec<cri::PodSandbox>> {
    let request = cri::ListPodSandboxRequest {
        filter: Some(filter),
    };
    Ok(
        call("ListPodSandbox", runtime.clone().list_pod_sandbox(request))
            .await?
            .items,
    )
}

/// Stop then remove; a sandbox that is already gone is fine.
async fn remove_sandbox(runtime: &RuntimeServiceClient<Channel>, id: &str) -> Result<()> {
    let stop = cri::StopPodSandboxRequest {
        pod_sandbox_id: id.to_owned(),
    };
    if let Err(status) = runtime.clone().stop_pod_sandbox(stop).await {
        if status.code() != Code::NotFound {
            bail!("cleanup StopPodSandbox({id}): {}", describe(&status));
        }
    }
    let remove = cri::RemovePodSandboxRequest {
        pod_sandbox_id: id.to_owned(),
    };
    if let Err(status) = runtime.clone().remove_pod_sandbox(remove).await {
        if status.code() != Code::NotFound {
            bail!("cleanup RemovePodSandbox({id}): {}", describe(&status));
        }
    }
    Ok(())
}

/// Kill then remove; a container that is already gone is fine.
async fn remove_container(runtime: &RuntimeServiceClient<Channel>, id: &str) -> Result<()> {
    let stop = cri::StopContainerRequest {
        container_id: id.to_owned(),
        timeout: 0,
    };
    if let Err(status) = runtime.clone().stop_container(stop).await {
        if status.code() != Code::NotFound {
            bail!("cleanup StopContainer({id}): {}", describe(&status));
        }
    }
    let remove = cri::RemoveContainerRequest {
        container_id: id.to_owned(),
    };
    if let Err(status) = runtime.clone().remove_container(remove).await {
        if status.code() != Code::NotFound {
            bail!("cleanup RemoveContainer({id}): {}", describe(&status));
        }
    }
    Ok(())
}

async fn remove_image(image: &ImageServiceClient<Channel>, reference: &str) -> Result<()> {
    let request = cri::RemoveImageRequest {
        image: Some(image_spec(reference)),
    };
    if let Err(status) = image.clone().remove_image(request).await {
        if status.code() != Code::NotFound {
            bail!("cleanup RemoveImage({reference}): {}", describe(&status));
        }
    }
    Ok(())
}

/// An `ImageSpec` naming `reference`.
pub fn image_spec(reference: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: reference.to_owned(),
        ..Default::default()
    }
}

/// `&["a", "b"]` → `vec!["a".to_owned(), "b".to_owned()]`.
pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// A random pod uid in UUID form.
pub fn random_uid() -> String {
    uid_from(rand::random::<u128>())
}

/// `n` as a pod uid in UUID form (8-4-4-4-12 hex digits), as kubelet's pods have them.
pub fn uid_from(n: u128) -> String {
    let hex = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The enum name of a container state value, for messages.
pub fn container_state_name(state: i32) -> String {
    cri::ContainerState::try_from(state)
        .map(|s| format!("{s:?}"))
        .unwrap_or_else(|_| format!("unknown state {state}"))
}
