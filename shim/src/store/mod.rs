//! The in-memory index that answers kubelet's hot calls (DESIGN.md decision 2).
//!
//! Each table is a copy-on-write map behind an `ArcSwap`: readers load a snapshot without
//! locking and never wait on writers; writers (lifecycle calls, rare by comparison) copy
//! the map of `Arc`s under a mutex. Each entry has immutable metadata and a small mutable
//! status, itself swapped atomically.

mod names;
mod persist;

pub use names::{NameRegistry, Reservation};
pub use persist::StateDir;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use runtime_backends::ImageRecord;
use serde::{Deserialize, Serialize};

use crate::domain::{ContainerConfig, Resources, SandboxConfig};

/// A copy-on-write table of entries by id.
pub struct Table<T> {
    map: ArcSwap<HashMap<String, Arc<T>>>,
    write: Mutex<()>,
    /// Bumped after each new map is stored (see [`Table::version`]).
    version: AtomicU64,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self {
            map: ArcSwap::from_pointee(HashMap::new()),
            write: Mutex::new(()),
            version: AtomicU64::new(0),
        }
    }
}

impl<T> Table<T> {
    pub fn snapshot(&self) -> Arc<HashMap<String, Arc<T>>> {
        self.map.load_full()
    }

    /// Changes whenever an entry is added or removed. Read it before [`Table::snapshot`]: a
    /// snapshot taken after reading version `v` holds at least the entries of `v`.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    /// The answer kept in `cache` while no entry was added or removed and no status changed
    /// since it was built; else `build`'s, kept. The key is read here, before `build` reads
    /// the table, so a kept answer never stands for newer data than it shows.
    pub fn kept_answer(
        &self,
        cache: &AnswerCache,
        build: impl FnOnce() -> prost::bytes::Bytes,
    ) -> prost::bytes::Bytes {
        cache.get_or_build((self.version(), status_changes()), build)
    }

    /// Store `next` as the map; the caller holds `write`.
    fn publish(&self, next: HashMap<String, Arc<T>>) {
        self.map.store(Arc::new(next));
        self.version.fetch_add(1, Ordering::SeqCst);
    }

    /// An entry by full id, or by a unique id prefix (as crictl allows).
    pub fn get(&self, id: &str) -> Option<Arc<T>> {
        let map = self.map.load();
        if let Some(entry) = map.get(id) {
            return Some(entry.clone());
        }
        if id.is_empty() {
            return None;
        }
        let mut matches = map.iter().filter(|(k, _)| k.starts_with(id));
        match (matches.next(), matches.next()) {
            (Some((_, entry)), None) => Some(entry.clone()),
            _ => None,
        }
    }

    /// An entry by full id only.
    pub fn get_exact(&self, id: &str) -> Option<Arc<T>> {
        self.map.load().get(id).cloned()
    }

    /// Keep only the entries `keep` accepts.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.map.load_full();
        if current.keys().all(|k| keep(k)) {
            return;
        }
        let next: HashMap<String, Arc<T>> = current
            .iter()
            .filter(|(k, _)| keep(k))
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        self.publish(next);
    }

    pub fn insert(&self, id: String, entry: Arc<T>) {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = HashMap::clone(&self.map.load());
        next.insert(id, entry);
        self.publish(next);
    }

    pub fn remove(&self, id: &str) -> Option<Arc<T>> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.map.load_full();
        if !current.contains_key(id) {
            return None;
        }
        let mut next = HashMap::clone(&current);
        let removed = next.remove(id);
        self.publish(next);
        removed
    }

    pub fn len(&self) -> usize {
        self.map.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    Ready,
    NotReady,
}

/// What never changes about a sandbox after RunPodSandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxMeta {
    pub id: String,
    /// The reserved name, `name_namespace_uid_attempt`.
    pub name: String,
    pub config: SandboxConfig,
    pub created_at: i64,
    /// Bind-mounted network namespace, when crius made one.
    pub netns_path: Option<String>,
    pub ip: String,
    pub additional_ips: Vec<String>,
    pub pause_image: String,
    /// Host directory of the pod's resolv.conf, hostname, hosts and shm.
    pub files_dir: String,
    pub cgroups_path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxStatus {
    pub state: SandboxState,
    /// PID of the pause process while it runs.
    pub pid: u32,
    /// Pod-level resources from the last UpdatePodSandboxResources (kubelet resized the pod's
    /// cgroup itself and tells the runtime); `None` until the first one.
    #[serde(default)]
    pub pod_resources: Option<PodResources>,
}

/// Pod-level resources as UpdatePodSandboxResources gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodResources {
    pub overhead: Option<Resources>,
    pub resources: Option<Resources>,
}

pub struct Sandbox {
    pub meta: SandboxMeta,
    /// Changed only through [`Sandbox::set_status`], which counts the change.
    status: ArcSwap<SandboxStatus>,
    /// Serialises lifecycle calls on this sandbox.
    pub op: tokio::sync::Mutex<()>,
}

impl Sandbox {
    pub fn new(meta: SandboxMeta, status: SandboxStatus) -> Self {
        Self {
            meta,
            status: ArcSwap::from_pointee(status),
            op: tokio::sync::Mutex::new(()),
        }
    }
    pub fn status(&self) -> Arc<SandboxStatus> {
        self.status.load_full()
    }
    pub fn set_status(&self, status: SandboxStatus) {
        self.status.store(Arc::new(status));
        STATUS_CHANGES.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

/// What never changes about a container after CreateContainer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerMeta {
    pub id: String,
    pub name: String,
    pub sandbox_id: String,
    pub config: ContainerConfig,
    /// CRI image id (config digest); `image_ref` in ContainerStatus.
    pub image_id: String,
    /// First repo digest of the image when known, else its id.
    pub image_ref: String,
    pub created_at: i64,
    /// Absolute log path (sandbox log_directory + config log_path), empty when none.
    pub log_path: String,
    /// The process of the OCI spec the container was created with (exec processes inherit
    /// from it). The whole spec, seccomp rules and all, is ~20 KiB in memory: it is kept on
    /// disk only (`CONTAINER_SPECS` records) for verbose ContainerStatus, so a full node's
    /// store stays small.
    pub process: oci_spec::runtime::Process,
    /// The cgroup path runc was given (stats read the container's cgroup through it).
    pub cgroups_path: Option<String>,
    /// Stop signal from the config or the image, resolved to a number.
    pub stop_signal: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerStatus {
    pub state: ContainerState,
    pub pid: u32,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    /// The kernel OOM killer hit this container while it ran.
    pub oom_killed: bool,
    /// Resources as last applied (create or UpdateContainerResources).
    pub resources: Option<Resources>,
    /// crius deleted the container's task after it exited (see
    /// `runtime_backends::KnownTask`). Not recorded on disk: after a restart crius has not
    /// seen the deletion itself, and its removal looks for a task again.
    #[serde(skip)]
    pub task_deleted: bool,
}

impl ContainerStatus {
    pub fn created(resources: Option<Resources>) -> Self {
        Self {
            state: ContainerState::Created,
            pid: 0,
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            oom_killed: false,
            resources,
            task_deleted: false,
        }
    }
}

pub struct Container {
    pub meta: ContainerMeta,
    /// Changed only through [`Container::update`], which counts the change.
    status: ArcSwap<ContainerStatus>,
    pub op: tokio::sync::Mutex<()>,
    /// The log writer, while crius copies the container's output.
    pub log: Mutex<Option<Arc<crate::logs::LogFile>>>,
    /// The container as ListContainers sends it, encoded at its first listing (all of it is
    /// fixed at creation but its state, which is sent apart).
    pub listed: std::sync::OnceLock<cri_api::v1::EncodedContainer>,
}

impl Container {
    pub fn new(meta: ContainerMeta, status: ContainerStatus) -> Self {
        Self {
            meta,
            status: ArcSwap::from_pointee(status),
            op: tokio::sync::Mutex::new(()),
            log: Mutex::new(None),
            listed: std::sync::OnceLock::new(),
        }
    }
    pub fn status(&self) -> Arc<ContainerStatus> {
        self.status.load_full()
    }
    /// Apply a change to the status (readers see either the old or the new one).
    pub fn update(&self, mut change: impl FnMut(&mut ContainerStatus)) -> Arc<ContainerStatus> {
        let mut result = None;
        self.status.rcu(|current| {
            let mut next = ContainerStatus::clone(current);
            change(&mut next);
            let next = Arc::new(next);
            result = Some(next.clone());
            next
        });
        STATUS_CHANGES.fetch_add(1, Ordering::SeqCst);
        result.unwrap_or_else(|| self.status.load_full())
    }
}

/// Status changes of all sandboxes and containers, process-wide (see [`status_changes`]).
static STATUS_CHANGES: AtomicU64 = AtomicU64::new(0);

/// Changes whenever any sandbox's or container's status changes. Read it before the
/// statuses: a status read after reading count `c` is at least as new as it was at `c`.
/// Process-wide and shared by both kinds, so a change anywhere counts for all (a cache keyed
/// on it is only ever invalidated too often, never too rarely).
pub fn status_changes() -> u64 {
    STATUS_CHANGES.load(Ordering::SeqCst)
}

/// Images by id, with name lookups.
#[derive(Default)]
pub struct ImageIndex {
    pub images: Vec<Arc<ImageRecord>>,
    by_name: HashMap<String, Arc<ImageRecord>>,
}

impl ImageIndex {
    pub fn new(records: Vec<ImageRecord>) -> Self {
        let images: Vec<Arc<ImageRecord>> = records.into_iter().map(Arc::new).collect();
        let mut by_name = HashMap::new();
        for image in &images {
            by_name.insert(image.id.clone(), image.clone());
            for name in image.repo_tags.iter().chain(&image.repo_digests) {
                by_name.insert(name.clone(), image.clone());
            }
        }
        Self { images, by_name }
    }

    /// Find an image by id, tag or digest reference (already normalised), or id prefix.
    pub fn find(&self, reference: &str) -> Option<Arc<ImageRecord>> {
        if let Some(image) = self.by_name.get(reference) {
            return Some(image.clone());
        }
        let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
        if hex.len() >= 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut found = self
                .images
                .iter()
                .filter(|i| i.id.trim_start_matches("sha256:").starts_with(hex));
            if let (Some(image), None) = (found.next(), found.next()) {
                return Some(image.clone());
            }
        }
        None
    }
}

/// Everything crius knows, in memory.
#[derive(Default)]
pub struct Store {
    pub sandboxes: Table<Sandbox>,
    pub containers: Table<Container>,
    pub images: ArcSwap<ImageIndex>,
    pub names: NameRegistry,
    /// `/etc/passwd` and `/etc/group` of each image, by image id. An image id is the digest
    /// of its config and so of its layers: the files never change for an id.
    pub image_user_files: Table<ImageUserFiles>,
    /// The last unfiltered ListContainers answer, encoded.
    pub container_list: AnswerCache,
    /// The last unfiltered ListPodSandbox answer, encoded.
    pub sandbox_list: AnswerCache,
}

/// An encoded answer kept for as long as what it was built from is unchanged.
///
/// The key is a pair of counters read *before* the answer is built ([`Table::kept_answer`]
/// reads [`Table::version`] and [`status_changes`]): whatever the answer shows is then at
/// least as new as the key says, so an answer is never served for a key newer than its data.
/// Two callers building at once both build; the later store wins, and a stale one is only
/// a miss for the next caller.
#[derive(Default)]
pub struct AnswerCache {
    last: arc_swap::ArcSwapOption<((u64, u64), prost::bytes::Bytes)>,
}

impl AnswerCache {
    /// The answer for `key`, built by `build` unless the one kept has that key.
    pub fn get_or_build(
        &self,
        key: (u64, u64),
        build: impl FnOnce() -> prost::bytes::Bytes,
    ) -> prost::bytes::Bytes {
        if let Some(last) = &*self.last.load() {
            if last.0 == key {
                return last.1.clone();
            }
        }
        let answer = build();
        self.last.store(Some(Arc::new((key, answer.clone()))));
        answer
    }
}

/// An image's `/etc/passwd` and `/etc/group`, where it has them.
#[derive(Debug, Default)]
pub struct ImageUserFiles {
    pub passwd: Option<String>,
    pub group: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_get_accepts_unique_prefix_only() {
        let table: Table<u32> = Table::default();
        table.insert("abcdef".into(), Arc::new(1));
        table.insert("abcxyz".into(), Arc::new(2));
        assert_eq!(table.get("abcdef").as_deref(), Some(&1));
        assert_eq!(table.get("abcd").as_deref(), Some(&1));
        assert!(
            table.get("abc").is_none(),
            "ambiguous prefix must not match"
        );
        assert!(table.get("").is_none());
        assert!(table.remove("abcdef").is_some());
        assert!(table.remove("abcdef").is_none());
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn readers_keep_their_snapshot_while_writers_replace_it() {
        let table: Table<u32> = Table::default();
        table.insert("a".into(), Arc::new(1));
        let snapshot = table.snapshot();
        table.insert("b".into(), Arc::new(2));
        assert_eq!(snapshot.len(), 1);
        assert_eq!(table.snapshot().len(), 2);
    }

    #[test]
    fn table_version_moves_with_every_change_and_only_then() {
        let table: Table<u32> = Table::default();
        let v0 = table.version();
        table.insert("a".into(), Arc::new(1));
        table.insert("b".into(), Arc::new(2));
        let v1 = table.version();
        assert!(v1 > v0);
        assert!(table.remove("missing").is_none());
        table.retain(|_| true);
        assert_eq!(table.version(), v1, "nothing changed");
        assert!(table.remove("a").is_some());
        let v2 = table.version();
        assert!(v2 > v1);
        table.retain(|id| id != "b");
        assert!(table.version() > v2);
    }

    #[test]
    fn answer_cache_serves_its_answer_for_its_key_only() {
        let cache = AnswerCache::default();
        let built = std::cell::Cell::new(0);
        let build = |answer: &'static [u8]| {
            built.set(built.get() + 1);
            prost::bytes::Bytes::from_static(answer)
        };
        assert_eq!(&cache.get_or_build((1, 1), || build(b"one"))[..], b"one");
        assert_eq!(&cache.get_or_build((1, 1), || build(b"other"))[..], b"one");
        assert_eq!(built.get(), 1);
        assert_eq!(&cache.get_or_build((1, 2), || build(b"two"))[..], b"two");
        assert_eq!(
            &cache.get_or_build((2, 2), || build(b"three"))[..],
            b"three"
        );
        assert_eq!(built.get(), 3);
    }

    #[test]
    fn status_updates_are_counted() {
        let meta = ContainerMeta {
            id: "c".into(),
            name: "n".into(),
            sandbox_id: "s".into(),
            config: ContainerConfig::default(),
            image_id: "i".into(),
            image_ref: "r".into(),
            created_at: 0,
            log_path: String::new(),
            process: oci_spec::runtime::Process::default(),
            cgroups_path: None,
            stop_signal: 15,
        };
        let container = Container::new(meta, ContainerStatus::created(None));
        let before = status_changes();
        container.update(|s| s.state = ContainerState::Running);
        assert!(status_changes() > before);
        assert_eq!(container.status().state, ContainerState::Running);
    }
}
