//! A recording in-memory backend for unit tests of the shim. Never used by a binary.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::{
    Backend, BackendError, BackendEvent, BoxedWriter, ContainerRecord, CreateContainer,
    CreatedContainer, EngineVersion, ExecIo, ExecRequest, Features, FsUsage, FsWalk, ImageBundle,
    ImageRecord, ProcessId, PullImage, Result, TaskExit, TaskIo, TaskStarted, TaskState,
    TaskStatus, TaskStdio,
};

#[derive(Default)]
pub struct FakeBackend {
    /// Every call, in order, as `method(id)`.
    pub calls: Mutex<Vec<String>>,
    pub images: Mutex<Vec<ImageRecord>>,
    pub containers: Mutex<HashMap<String, (ContainerRecord, Option<TaskState>)>>,
    /// Calls whose name is here fail with `Unavailable`.
    pub failing: Mutex<Vec<String>>,
    pub events: Mutex<Option<mpsc::Sender<BackendEvent>>>,
    /// What `features` answers for every handler (none unless a test grants them).
    pub features: Mutex<Features>,
    /// The request each container was created with.
    pub created: Mutex<HashMap<String, CreateContainer>>,
}

/// Where the fake says a container's cgroup is: under a tree of its own, so a test sees
/// whether the shim reads the reported path or derives one itself.
pub fn cgroup_path(id: &str) -> String {
    format!("/fake-engine/{id}")
}

impl FakeBackend {
    fn record(&self, call: String) -> Result<()> {
        let name = call.split('(').next().unwrap_or_default().to_string();
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(call);
        }
        let failing = self
            .failing
            .lock()
            .map(|f| f.contains(&name))
            .unwrap_or(false);
        if failing {
            return Err(BackendError::Unavailable {
                engine: "fake",
                message: format!("{name} fails"),
            });
        }
        Ok(())
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn empty_io() -> TaskIo {
        TaskIo {
            stdout: Box::pin(tokio::io::empty()),
            stderr: Box::pin(tokio::io::empty()),
        }
    }
}

#[async_trait]
impl Backend for FakeBackend {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn features(&self, _handler: &str) -> Features {
        self.features.lock().map(|f| *f).unwrap_or_default()
    }
    async fn version(&self) -> Result<EngineVersion> {
        self.record("version()".into())?;
        Ok(EngineVersion {
            name: "fake".into(),
            version: "0".into(),
            revision: "0".into(),
        })
    }
    async fn list_images(&self) -> Result<Vec<ImageRecord>> {
        self.record("list_images()".into())?;
        Ok(self.images.lock().map(|i| i.clone()).unwrap_or_default())
    }
    async fn image(&self, reference: &str) -> Result<Option<ImageRecord>> {
        self.record(format!("image({reference})"))?;
        Ok(self.images.lock().ok().and_then(|images| {
            images
                .iter()
                .find(|i| i.id == reference || i.repo_tags.iter().any(|t| t == reference))
                .cloned()
        }))
    }
    async fn remove_image_name(&self, name: &str, _collect: bool) -> Result<()> {
        self.record(format!("remove_image_name({name})"))?;
        if let Ok(mut images) = self.images.lock() {
            for image in images.iter_mut() {
                image.repo_tags.retain(|t| t != name);
            }
        }
        Ok(())
    }
    async fn read_image_files(
        &self,
        image_id: &str,
        _paths: &[&str],
    ) -> Result<HashMap<String, Vec<u8>>> {
        self.record(format!("read_image_files({image_id})"))?;
        Ok(HashMap::new())
    }
    async fn import_image(&self, bundle: ImageBundle) -> Result<ImageRecord> {
        self.record(format!("import_image({})", bundle.names.join(",")))?;
        Err(BackendError::FailedPrecondition(
            "the fake backend does not import images".into(),
        ))
    }
    async fn pull_image(&self, request: PullImage) -> Result<ImageRecord> {
        self.record(format!("pull_image({})", request.reference))?;
        let found = self.images.lock().ok().and_then(|images| {
            images
                .iter()
                .find(|i| {
                    i.repo_tags.contains(&request.reference)
                        || i.repo_digests.contains(&request.reference)
                })
                .cloned()
        });
        found.ok_or(BackendError::NotFound {
            kind: "image",
            id: request.reference,
        })
    }
    async fn image_fs_usage(&self, walk: FsWalk) -> Result<FsUsage> {
        self.record(format!("image_fs_usage({walk:?})"))?;
        Ok(FsUsage::default())
    }
    async fn create_container(&self, request: CreateContainer) -> Result<CreatedContainer> {
        self.record(format!("create_container({})", request.id))?;
        let record = ContainerRecord {
            id: request.id.clone(),
            labels: request.labels.clone(),
            image_name: request.image_name.clone(),
            created_at_nanos: 1,
        };
        let created = CreatedContainer {
            cgroup_path: cgroup_path(&request.id),
            runtime_spec: None,
        };
        if let Ok(mut containers) = self.containers.lock() {
            containers.insert(request.id.clone(), (record, None));
        }
        if let Ok(mut requests) = self.created.lock() {
            requests.insert(request.id.clone(), request);
        }
        Ok(created)
    }
    async fn list_containers(&self) -> Result<Vec<ContainerRecord>> {
        self.record("list_containers()".into())?;
        Ok(self
            .containers
            .lock()
            .map(|c| c.values().map(|(r, _)| r.clone()).collect())
            .unwrap_or_default())
    }
    async fn remove_container(&self, id: &str) -> Result<()> {
        self.record(format!("remove_container({id})"))?;
        if let Ok(mut containers) = self.containers.lock() {
            containers.remove(id);
        }
        Ok(())
    }
    async fn start_task(&self, id: &str, _io_dir: &Path, _stdio: TaskStdio) -> Result<TaskStarted> {
        self.record(format!("start_task({id})"))?;
        let state = TaskState {
            pid: 4242,
            status: TaskStatus::Running,
            exit_code: 0,
            exited_at_nanos: 0,
        };
        if let Ok(mut containers) = self.containers.lock() {
            match containers.get_mut(id) {
                Some(entry) => entry.1 = Some(state),
                None => {
                    return Err(BackendError::NotFound {
                        kind: "container",
                        id: id.to_string(),
                    })
                }
            }
        }
        Ok(TaskStarted {
            pid: 4242,
            io: Self::empty_io(),
        })
    }
    async fn reattach_task_io(&self, id: &str, _io_dir: &Path) -> Result<Option<TaskIo>> {
        self.record(format!("reattach_task_io({id})"))?;
        Ok(Some(Self::empty_io()))
    }
    async fn task_state(&self, id: &str) -> Result<Option<TaskState>> {
        self.record(format!("task_state({id})"))?;
        Ok(self
            .containers
            .lock()
            .ok()
            .and_then(|c| c.get(id).and_then(|(_, t)| *t)))
    }
    async fn kill_task(&self, id: &str, signal: u32, _all: bool) -> Result<()> {
        self.record(format!("kill_task({id},{signal})"))?;
        if let Ok(mut containers) = self.containers.lock() {
            if let Some((_, Some(task))) = containers.get_mut(id) {
                task.status = TaskStatus::Stopped;
                task.exit_code = 128 + signal;
            }
        }
        Ok(())
    }
    async fn delete_task(&self, id: &str) -> Result<Option<TaskExit>> {
        self.record(format!("delete_task({id})"))?;
        let task = self
            .containers
            .lock()
            .ok()
            .and_then(|mut c| c.get_mut(id).and_then(|(_, t)| t.take()));
        Ok(task.map(|t| TaskExit {
            pid: t.pid,
            exit_code: t.exit_code,
            exited_at_nanos: 2,
        }))
    }
    async fn update_resources(
        &self,
        id: &str,
        _resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        self.record(format!("update_resources({id})"))
    }
    async fn exec(&self, request: ExecRequest) -> Result<ExecIo> {
        self.record(format!("exec({})", request.container_id))?;
        Ok(ExecIo {
            stdin: None,
            stdout: Box::pin(tokio::io::empty()),
            stderr: Box::pin(tokio::io::empty()),
        })
    }
    async fn wait(&self, id: &str, process: &ProcessId) -> Result<TaskExit> {
        let exec_id = match process {
            ProcessId::Init => "",
            ProcessId::Exec(id) => id,
        };
        self.record(format!("wait({id},{exec_id})"))?;
        let code = self
            .containers
            .lock()
            .ok()
            .and_then(|c| c.get(id).and_then(|(_, t)| t.map(|t| t.exit_code)));
        Ok(TaskExit {
            pid: 4242,
            exit_code: code.unwrap_or(0),
            exited_at_nanos: 2,
        })
    }
    async fn kill_exec(&self, id: &str, exec_id: &str, signal: u32) -> Result<()> {
        self.record(format!("kill_exec({id},{exec_id},{signal})"))
    }
    async fn delete_exec(&self, id: &str, exec_id: &str) -> Result<()> {
        self.record(format!("delete_exec({id},{exec_id})"))
    }
    async fn resize(&self, id: &str, process: &ProcessId, width: u32, height: u32) -> Result<()> {
        self.record(format!("resize({id},{process},{width}x{height})"))
    }
    async fn close_stdin(&self, id: &str, process: &ProcessId) -> Result<()> {
        self.record(format!("close_stdin({id},{process})"))
    }
    async fn attach_stdin(&self, id: &str, _io_dir: &std::path::Path) -> Result<BoxedWriter> {
        self.record(format!("attach_stdin({id})"))?;
        Ok(Box::pin(tokio::io::sink()))
    }
    fn subscribe(&self) -> mpsc::Receiver<BackendEvent> {
        let (tx, rx) = mpsc::channel(64);
        if let Ok(mut events) = self.events.lock() {
            *events = Some(tx);
        }
        rx
    }
}
