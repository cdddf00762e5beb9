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
use prost::bytes::Bytes;
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

    /// The unfiltered list answer kept in `cache` while no entry was added or removed and no
    /// status changed since it was built; else a new one, kept. `state` is what of an entry
    /// can change and is listed; `encode` writes the part of the answer for some entries
    /// (the encoded list message of just those). The key is read here, before the table is,
    /// so a kept answer never stands for newer data than it shows.
    ///
    /// A new answer reuses every segment of the last one whose entries and their states are
    /// unchanged (see [`AnswerCache`]), so one container changing state on a node of 1000
    /// encodes ~60 containers, not 1000, and the versions still being sent share the rest.
    pub fn kept_answer(
        &self,
        cache: &AnswerCache<T>,
        state: impl Fn(&T) -> i32,
        encode: impl Fn(&[(Arc<T>, i32)]) -> Bytes,
    ) -> ListAnswer {
        let key = (self.version(), status_changes());
        if let Some(last) = cache.last.load().as_ref().filter(|last| last.key == key) {
            return last.answer.clone();
        }
        let last = cache.last.load_full();
        let snapshot = self.snapshot();
        let count = segment_count(snapshot.len());
        let mut members: Vec<Vec<(Arc<T>, i32)>> = vec![Vec::new(); count];
        for entry in snapshot.values() {
            members[segment_of(entry, count)].push((Arc::clone(entry), state(entry)));
        }
        let reusable = last.as_ref().filter(|last| last.segments.len() == count);
        let segments = members
            .into_iter()
            .enumerate()
            .map(|(i, mut members)| {
                members.sort_unstable_by_key(|(entry, _)| Arc::as_ptr(entry));
                let same = |old: &Segment<T>| {
                    old.members.len() == members.len()
                        && old
                            .members
                            .iter()
                            .zip(&members)
                            .all(|(a, b)| Arc::ptr_eq(&a.0, &b.0) && a.1 == b.1)
                };
                match reusable
                    .map(|last| &last.segments[i])
                    .filter(|old| same(old))
                {
                    Some(old) => Segment {
                        bytes: old.bytes.clone(),
                        members,
                    },
                    None => Segment {
                        bytes: encode(&members),
                        members,
                    },
                }
            })
            .collect::<Vec<_>>();
        let answer = ListAnswer {
            parts: segments
                .iter()
                .filter(|s| !s.bytes.is_empty())
                .map(|s| s.bytes.clone())
                .collect(),
        };
        cache.last.store(Some(Arc::new(Kept {
            key,
            segments,
            answer: answer.clone(),
        })));
        answer
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

    /// Whether `entry` itself (not another object under the same id) is in the map.
    pub fn holds(&self, id: &str, entry: &T) -> bool {
        self.map
            .load()
            .get(id)
            .is_some_and(|held| std::ptr::eq(Arc::as_ptr(held), entry))
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
    /// The pause container's cgroup relative to the cgroup filesystem's root, as the
    /// backend reported it.
    #[serde(deserialize_with = "legacy_cgroup")]
    pub cgroups_path: String,
}

/// Records from before crius kept filesystem paths may hold runc's systemd form.
fn legacy_cgroup<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let recorded = String::deserialize(d)?;
    Ok(runtime_backends::cgroup::filesystem_path(&recorded))
}

fn legacy_cgroup_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let recorded = Option::<String>::deserialize(d)?;
    Ok(recorded.map(|r| runtime_backends::cgroup::filesystem_path(&r)))
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
    /// The container's cgroup relative to the cgroup filesystem's root, as the backend
    /// reported it (stats and OOM detection read it there).
    #[serde(default, deserialize_with = "legacy_cgroup_opt")]
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
    /// Its output for attached clients, while crius copies it.
    pub tap: Mutex<Option<Arc<crate::logs::OutputTap>>>,
    /// Its CRI status as PodSandboxStatus sends it (a whole `containers_statuses` field),
    /// kept with the status it was encoded from until that changes.
    pub status_field: Mutex<Option<(Arc<ContainerStatus>, Bytes)>>,
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
            tap: Mutex::new(None),
            status_field: Mutex::new(None),
            listed: std::sync::OnceLock::new(),
        }
    }
    pub fn status(&self) -> Arc<ContainerStatus> {
        self.status.load_full()
    }

    /// `encode(status)` for the current status, kept until the status changes.
    pub fn status_field(&self, encode: impl FnOnce(&ContainerStatus) -> Bytes) -> Bytes {
        let status = self.status();
        if let Ok(kept) = self.status_field.lock() {
            if let Some((of, bytes)) = kept.as_ref() {
                if Arc::ptr_eq(of, &status) {
                    return bytes.clone();
                }
            }
        }
        let bytes = encode(&status);
        if let Ok(mut kept) = self.status_field.lock() {
            *kept = Some((status, bytes.clone()));
        }
        bytes
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
    pub container_list: AnswerCache<Container>,
    /// The last unfiltered ListPodSandbox answer, encoded.
    pub sandbox_list: AnswerCache<Sandbox>,
}

/// Entries per segment of a kept list answer, about (see [`segment_count`]).
const ENTRIES_PER_SEGMENT: usize = 64;
/// At most this many segments: at 1000 containers of ~850 bytes, ~53 KB each.
const MAX_SEGMENTS: usize = 16;

/// How many segments an answer of `entries` entries is cut into: one for a small node, so
/// its answer goes out as one piece.
fn segment_count(entries: usize) -> usize {
    entries.div_ceil(ENTRIES_PER_SEGMENT).clamp(1, MAX_SEGMENTS)
}

/// The segment an entry belongs to, from its address: fixed for the entry's life, and
/// spread evenly by the multiplicative hash.
fn segment_of<T>(entry: &Arc<T>, count: usize) -> usize {
    let address = Arc::as_ptr(entry) as usize as u64;
    let hash = address.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    usize::try_from(hash).unwrap_or(0) % count
}

/// An unfiltered list answer kept for as long as what it was built from is unchanged.
///
/// The key is a pair of counters read *before* the answer is built ([`Table::kept_answer`]
/// reads [`Table::version`] and [`status_changes`]): whatever the answer shows is then at
/// least as new as the key says, so an answer is never served for a key newer than its data.
/// Two callers building at once both build; the later store wins, and a stale one is only
/// a miss for the next caller.
///
/// The answer is kept in segments, each the encoded list of the entries that fall in it
/// with the states they were encoded with. A segment holds its entries (by `Arc`), so an
/// address it compares with cannot be reused by a new entry while it is kept.
pub struct AnswerCache<T> {
    last: arc_swap::ArcSwapOption<Kept<T>>,
}

impl<T> Default for AnswerCache<T> {
    fn default() -> Self {
        Self {
            last: arc_swap::ArcSwapOption::empty(),
        }
    }
}

struct Kept<T> {
    key: (u64, u64),
    segments: Vec<Segment<T>>,
    /// The segments' bytes, as answered (a kept answer costs one reference count).
    answer: ListAnswer,
}

struct Segment<T> {
    /// Its entries in address order, each with the state it was encoded with.
    members: Vec<(Arc<T>, i32)>,
    bytes: Bytes,
}

/// An encoded list message in parts, to be sent one after the other: the parts share their
/// bytes with the kept answer and with other answers that have the same parts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListAnswer {
    pub parts: Arc<[Bytes]>,
}

impl ListAnswer {
    pub fn len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.iter().all(Bytes::is_empty)
    }

    /// The whole message in one piece (a copy, unless it has one part).
    pub fn to_bytes(&self) -> Bytes {
        match &*self.parts {
            [] => Bytes::new(),
            [one] => one.clone(),
            parts => Bytes::from(parts.concat()),
        }
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
    fn table_holds_the_entry_itself_not_another_under_its_id() {
        let table: Table<u32> = Table::default();
        let first = Arc::new(1);
        table.insert("a".into(), first.clone());
        assert!(table.holds("a", &first));
        let second = Arc::new(1);
        assert!(
            !table.holds("a", &second),
            "an equal value is not the entry"
        );
        table.remove("a");
        assert!(!table.holds("a", &first), "a removed entry is not held");
        table.insert("a".into(), second.clone());
        assert!(!table.holds("a", &first), "a new object under the old id");
        assert!(table.holds("a", &second));
    }

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

    /// A table entry whose listed state the test sets.
    struct Item {
        id: u32,
        state: std::sync::atomic::AtomicI32,
    }

    fn item(id: u32) -> Arc<Item> {
        Arc::new(Item {
            id,
            state: std::sync::atomic::AtomicI32::new(0),
        })
    }

    /// Kept answers of `table` whose parts list `id:state;` per entry, and how many entries
    /// each call encoded.
    struct Lists {
        table: Table<Item>,
        cache: AnswerCache<Item>,
        encoded: std::cell::RefCell<Vec<usize>>,
    }

    impl Lists {
        fn new(ids: std::ops::Range<u32>) -> Self {
            let table = Table::default();
            for id in ids {
                table.insert(id.to_string(), item(id));
            }
            Self {
                table,
                cache: AnswerCache::default(),
                encoded: Default::default(),
            }
        }

        fn answer(&self) -> ListAnswer {
            self.table.kept_answer(
                &self.cache,
                |item| item.state.load(Ordering::SeqCst),
                |members| {
                    self.encoded.borrow_mut().push(members.len());
                    members
                        .iter()
                        .map(|(item, state)| format!("{}:{state};", item.id))
                        .collect::<String>()
                        .into()
                },
            )
        }

        /// Entry ids and states the answer shows, sorted.
        fn shown(answer: &ListAnswer) -> Vec<(u32, i32)> {
            let text = String::from_utf8(answer.to_bytes().to_vec()).unwrap_or_default();
            let mut shown: Vec<(u32, i32)> = text
                .split_terminator(';')
                .filter_map(|e| e.split_once(':'))
                .filter_map(|(id, state)| Some((id.parse().ok()?, state.parse().ok()?)))
                .collect();
            shown.sort_unstable();
            shown
        }

        fn set_state(&self, id: u32, state: i32) {
            if let Some(item) = self.table.get_exact(&id.to_string()) {
                item.state.store(state, Ordering::SeqCst);
            }
            STATUS_CHANGES.fetch_add(1, Ordering::SeqCst);
        }

        fn take_encoded(&self) -> Vec<usize> {
            std::mem::take(&mut *self.encoded.borrow_mut())
        }
    }

    /// How many parts of `b` are the very bytes (not a copy) of a part of `a`.
    fn shared_parts(a: &ListAnswer, b: &ListAnswer) -> usize {
        b.parts
            .iter()
            .filter(|p| a.parts.iter().any(|q| q.as_ptr() == p.as_ptr()))
            .count()
    }

    #[test]
    fn a_kept_answer_is_served_until_something_changes() {
        let lists = Lists::new(0..200);
        let first = lists.answer();
        assert_eq!(first.parts.len(), 4, "200 entries: 4 segments");
        assert_eq!(lists.take_encoded().iter().sum::<usize>(), 200);
        let want: Vec<(u32, i32)> = (0..200).map(|id| (id, 0)).collect();
        assert_eq!(Lists::shown(&first), want);
        let again = lists.answer();
        assert!(
            lists.take_encoded().is_empty(),
            "nothing changed, nothing encoded"
        );
        assert_eq!(shared_parts(&first, &again), 4);
    }

    #[test]
    fn only_the_segment_that_changed_is_encoded_again() {
        let lists = Lists::new(0..200);
        let first = lists.answer();
        lists.take_encoded();

        // One entry changes state: only its segment is encoded again.
        lists.set_state(7, 2);
        let second = lists.answer();
        let encoded = lists.take_encoded();
        assert_eq!(encoded.len(), 1, "{encoded:?}");
        assert!(encoded[0] < 200 / 2, "{encoded:?}");
        assert_eq!(shared_parts(&first, &second), 3);
        let mut want: Vec<(u32, i32)> = (0..200).map(|id| (id, 0)).collect();
        want[7].1 = 2;
        assert_eq!(Lists::shown(&second), want);
        // The earlier answer, still being sent somewhere, is unchanged.
        assert_eq!(Lists::shown(&first)[7], (7, 0));

        // A removal and an addition: the segments of the two entries only.
        lists.table.remove("9");
        lists.table.insert("900".into(), item(900));
        let third = lists.answer();
        let encoded = lists.take_encoded();
        assert!((1..=2).contains(&encoded.len()), "{encoded:?}");
        assert!(shared_parts(&second, &third) >= 2);
        want.retain(|&(id, _)| id != 9);
        want.push((900, 0));
        assert_eq!(Lists::shown(&third), want);

        // A status change elsewhere moves the key but changes no segment.
        STATUS_CHANGES.fetch_add(1, Ordering::SeqCst);
        let fourth = lists.answer();
        assert!(lists.take_encoded().is_empty());
        assert_eq!(shared_parts(&third, &fourth), third.parts.len());
    }

    #[test]
    fn a_new_segment_count_encodes_everything_afresh() {
        let lists = Lists::new(0..64);
        assert_eq!(lists.answer().parts.len(), 1, "a small node: one part");
        lists.take_encoded();
        lists.table.insert("64".into(), item(64));
        let grown = lists.answer();
        assert_eq!(lists.take_encoded().iter().sum::<usize>(), 65);
        assert_eq!(Lists::shown(&grown).len(), 65);
        let empty = Lists::new(0..0).answer();
        assert!(empty.is_empty() && empty.parts.is_empty());
        assert_eq!(empty.to_bytes(), Bytes::new());
    }

    #[test]
    fn entries_spread_over_the_segments() {
        let entries: Vec<Arc<Item>> = (0..1000).map(item).collect();
        let mut counts = [0usize; MAX_SEGMENTS];
        for entry in &entries {
            counts[segment_of(entry, MAX_SEGMENTS)] += 1;
        }
        // 62.5 per segment on average; a segment several times that would rebuild as much.
        assert!(
            counts.iter().all(|&c| (15..=150).contains(&c)),
            "{counts:?}"
        );
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
