//! Backend call latencies: a [`Backend`] that times each call of the one it wraps.
//!
//! Installed in front of the real backend only when `metrics_address` is set. The hot reads
//! never reach the backend (DESIGN.md decision 2), and a backend call is a gRPC or HTTP round
//! trip, so two atomic adds per call cost nothing measurable.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use runtime_backends::{
    oci_spec_types, Backend, BackendEvent, BoxedWriter, ContainerRecord, CreateContainer,
    CreatedContainer, EngineVersion, ExecIo, ExecRequest, FsUsage, FsWalk, ImageBundle,
    ImageRecord, ProcessId, PullImage, Result, TaskExit, TaskIo, TaskStarted, TaskState, TaskStdio,
};
use tokio::sync::mpsc;

use super::Operation;

/// One variant per timed method of [`Backend`], named as the method is.
macro_rules! timed_calls {
    ($($call:ident => $name:literal),* $(,)?) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Call {
            $($call),*
        }

        const NAMES: &[&str] = &[$($name),*];
    };
}

timed_calls! {
    Version => "version",
    ListImages => "list_images",
    Image => "image",
    RemoveImageName => "remove_image_name",
    ImportImage => "import_image",
    PullImage => "pull_image",
    ReadImageFiles => "read_image_files",
    ImageFsUsage => "image_fs_usage",
    CreateContainer => "create_container",
    ListContainers => "list_containers",
    RemoveContainer => "remove_container",
    StartTask => "start_task",
    ReattachTaskIo => "reattach_task_io",
    TaskState => "task_state",
    KillTask => "kill_task",
    DeleteTask => "delete_task",
    UpdateResources => "update_resources",
    Exec => "exec",
    KillExec => "kill_exec",
    DeleteExec => "delete_exec",
    Resize => "resize",
    CloseStdin => "close_stdin",
    AttachStdin => "attach_stdin",
}

static CALLS: [Operation; NAMES.len()] = [const { Operation::new() }; NAMES.len()];

/// Every timed method by name, in the trait's order.
pub fn calls() -> impl Iterator<Item = (&'static str, &'static Operation)> + Clone {
    NAMES.iter().copied().zip(CALLS.iter())
}

/// Times every call but `wait` and `subscribe`, which last as long as what they wait for.
pub struct TimedBackend {
    inner: Arc<dyn Backend>,
}

impl TimedBackend {
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        Self { inner }
    }
}

async fn timed<T>(call: Call, work: impl Future<Output = Result<T>>) -> Result<T> {
    let started = Instant::now();
    let result = work.await;
    CALLS[call as usize].finished(started.elapsed(), result.is_ok());
    result
}

#[async_trait]
impl Backend for TimedBackend {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn features(&self, handler: &str) -> runtime_backends::Features {
        self.inner.features(handler)
    }

    async fn version(&self) -> Result<EngineVersion> {
        timed(Call::Version, self.inner.version()).await
    }

    async fn list_images(&self) -> Result<Vec<ImageRecord>> {
        timed(Call::ListImages, self.inner.list_images()).await
    }

    async fn image(&self, reference: &str) -> Result<Option<ImageRecord>> {
        timed(Call::Image, self.inner.image(reference)).await
    }

    async fn remove_image_name(&self, name: &str, collect: bool) -> Result<()> {
        timed(
            Call::RemoveImageName,
            self.inner.remove_image_name(name, collect),
        )
        .await
    }

    async fn import_image(&self, bundle: ImageBundle) -> Result<ImageRecord> {
        timed(Call::ImportImage, self.inner.import_image(bundle)).await
    }

    async fn pull_image(&self, request: PullImage) -> Result<ImageRecord> {
        timed(Call::PullImage, self.inner.pull_image(request)).await
    }

    async fn read_image_files(
        &self,
        image_id: &str,
        paths: &[&str],
    ) -> Result<HashMap<String, Vec<u8>>> {
        timed(
            Call::ReadImageFiles,
            self.inner.read_image_files(image_id, paths),
        )
        .await
    }

    async fn image_fs_usage(&self, walk: FsWalk) -> Result<FsUsage> {
        timed(Call::ImageFsUsage, self.inner.image_fs_usage(walk)).await
    }

    async fn create_container(&self, request: CreateContainer) -> Result<CreatedContainer> {
        timed(Call::CreateContainer, self.inner.create_container(request)).await
    }

    async fn list_containers(&self) -> Result<Vec<ContainerRecord>> {
        timed(Call::ListContainers, self.inner.list_containers()).await
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        timed(Call::RemoveContainer, self.inner.remove_container(id)).await
    }

    async fn start_task(&self, id: &str, io_dir: &Path, stdio: TaskStdio) -> Result<TaskStarted> {
        timed(Call::StartTask, self.inner.start_task(id, io_dir, stdio)).await
    }

    async fn reattach_task_io(&self, id: &str, io_dir: &Path) -> Result<Option<TaskIo>> {
        timed(
            Call::ReattachTaskIo,
            self.inner.reattach_task_io(id, io_dir),
        )
        .await
    }

    async fn task_state(&self, id: &str) -> Result<Option<TaskState>> {
        timed(Call::TaskState, self.inner.task_state(id)).await
    }

    async fn kill_task(&self, id: &str, signal: u32, all: bool) -> Result<()> {
        timed(Call::KillTask, self.inner.kill_task(id, signal, all)).await
    }

    async fn delete_task(&self, id: &str) -> Result<Option<TaskExit>> {
        timed(Call::DeleteTask, self.inner.delete_task(id)).await
    }

    async fn update_resources(
        &self,
        id: &str,
        resources: &oci_spec_types::LinuxResources,
    ) -> Result<()> {
        timed(
            Call::UpdateResources,
            self.inner.update_resources(id, resources),
        )
        .await
    }

    async fn exec(&self, request: ExecRequest) -> Result<ExecIo> {
        timed(Call::Exec, self.inner.exec(request)).await
    }

    async fn wait(&self, id: &str, process: &ProcessId) -> Result<TaskExit> {
        self.inner.wait(id, process).await
    }

    async fn kill_exec(&self, id: &str, exec_id: &str, signal: u32) -> Result<()> {
        timed(Call::KillExec, self.inner.kill_exec(id, exec_id, signal)).await
    }

    async fn delete_exec(&self, id: &str, exec_id: &str) -> Result<()> {
        timed(Call::DeleteExec, self.inner.delete_exec(id, exec_id)).await
    }

    async fn resize(&self, id: &str, process: &ProcessId, width: u32, height: u32) -> Result<()> {
        timed(Call::Resize, self.inner.resize(id, process, width, height)).await
    }

    async fn close_stdin(&self, id: &str, process: &ProcessId) -> Result<()> {
        timed(Call::CloseStdin, self.inner.close_stdin(id, process)).await
    }

    async fn attach_stdin(&self, id: &str, io_dir: &std::path::Path) -> Result<BoxedWriter> {
        timed(Call::AttachStdin, self.inner.attach_stdin(id, io_dir)).await
    }

    fn subscribe(&self) -> mpsc::Receiver<BackendEvent> {
        self.inner.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime_backends::fake::FakeBackend;

    fn operation(name: &str) -> &'static Operation {
        calls().find(|(n, _)| *n == name).map(|(_, o)| o).unwrap()
    }

    #[test]
    fn every_timed_call_has_a_name() {
        assert_eq!(NAMES.len(), Call::AttachStdin as usize + 1);
        assert_eq!(NAMES[Call::TaskState as usize], "task_state");
    }

    #[tokio::test]
    async fn each_call_is_timed_under_its_method_and_a_failure_counted() {
        let fake = Arc::new(FakeBackend::default());
        let backend = TimedBackend::new(fake.clone());
        let kills = operation("kill_task").latency.count();
        let failures = operation("kill_task").failures();
        assert!(backend.kill_task("c1", 15, false).await.is_ok());
        fake.failing.lock().unwrap().push("kill_task".to_string());
        assert!(backend.kill_task("c1", 15, false).await.is_err());
        assert_eq!(operation("kill_task").latency.count(), kills + 2);
        assert_eq!(operation("kill_task").failures(), failures + 1);
        assert_eq!(
            fake.calls().len(),
            2,
            "both calls reached the wrapped backend"
        );
    }
}
