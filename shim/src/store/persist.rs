//! What containerd cannot tell crius, kept on disk under `<root>`, written atomically
//! (temp file + fsync + rename + directory fsync), so a crash leaves the old or the new
//! version and never half of one.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
    /// The records with writes in flight (see [`StateDir::write`]).
    in_flight: Arc<Mutex<HashMap<PathBuf, Slot>>>,
}

/// A record with writes in flight. Dropped with its last write, so the map only ever holds
/// the records being written.
#[derive(Debug, Default)]
struct Slot {
    /// Writes issued and not finished.
    writes: u32,
    /// The number of the value in place, or of the record's removal: a write with a smaller
    /// number is older than what is there and is dropped.
    newest: u64,
}

/// Numbers the writes and removals, in the order their values were taken.
static NUMBERS: AtomicU64 = AtomicU64::new(1);

/// One write of a record, counted in its [`Slot`] from the call until it is done or dropped.
struct Issued {
    in_flight: Arc<Mutex<HashMap<PathBuf, Slot>>>,
    path: PathBuf,
    number: u64,
}

impl Issued {
    fn new(in_flight: &Arc<Mutex<HashMap<PathBuf, Slot>>>, path: PathBuf) -> Self {
        let mut slots = in_flight.lock().unwrap_or_else(|p| p.into_inner());
        // Numbered under the lock, so a removal numbers either before or after this write.
        let number = NUMBERS.fetch_add(1, Ordering::SeqCst);
        slots.entry(path.clone()).or_default().writes += 1;
        drop(slots);
        Self {
            in_flight: Arc::clone(in_flight),
            path,
            number,
        }
    }

    /// Move `tmp` into place, unless a newer value or a removal came first (then drop it);
    /// whether it was placed.
    fn place(&self, tmp: &Path) -> std::io::Result<bool> {
        let mut slots = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let slot = slots.entry(self.path.clone()).or_default();
        if slot.newest > self.number {
            drop(slots);
            return fs::remove_file(tmp).map(|()| false);
        }
        fs::rename(tmp, &self.path)?;
        slot.newest = self.number;
        Ok(true)
    }
}

impl Drop for Issued {
    fn drop(&mut self) {
        let mut slots = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.get_mut(&self.path) {
            slot.writes = slot.writes.saturating_sub(1);
            if slot.writes == 0 {
                slots.remove(&self.path);
            }
        }
    }
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            in_flight: Arc::default(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn file(&self, kind: &str, id: &str) -> PathBuf {
        self.root.join(kind).join(format!("{id}.json"))
    }

    /// Store `value` as the record `kind/id`. The value is taken now; the file work (write,
    /// fsync, rename, directory fsync) runs on tokio's blocking pool, so a slow disk never
    /// holds one of the few async workers that answer kubelet's hot reads. Writes of one
    /// record may overlap: each has its own temporary file, and one that finds a newer value
    /// in place, or the record removed after it was called, is dropped.
    pub fn write<T: Serialize>(
        &self,
        kind: &str,
        id: &str,
        value: &T,
    ) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        self.ticket(kind, id).write(value)
    }

    /// A write of `kind/id`, numbered now; its value is given to [`Ticket::write`]. A caller
    /// that changes an object takes the ticket before it reads the object's value: then a
    /// write of an older value (read before the change) has the smaller number and cannot
    /// undo this one.
    pub fn ticket(&self, kind: &str, id: &str) -> Ticket {
        let issued = Issued::new(&self.in_flight, self.file(kind, id));
        Ticket {
            dir: self.root.join(kind),
            record: format!("{kind} {id}"),
            tmp_name: format!(".{id}.{}.json.tmp", issued.number),
            issued,
        }
    }

    pub fn remove(&self, kind: &str, id: &str) -> Result<()> {
        let path = self.file(kind, id);
        {
            // Writes called before this removal and still in flight must not bring it back.
            let mut slots = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(slot) = slots.get_mut(&path) {
                slot.newest = NUMBERS.fetch_add(1, Ordering::SeqCst);
            }
        }
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::internal(format!("removing {kind} {id}"), e)),
        }
    }

    /// One record, or `None` when there is none.
    pub fn read<T: DeserializeOwned>(&self, kind: &str, id: &str) -> Result<Option<T>> {
        let path = self.file(kind, id);
        match fs::read(&path) {
            Ok(data) => serde_json::from_slice(&data)
                .map(Some)
                .map_err(|e| Error::internal(format!("decoding {}", path.display()), e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::internal(format!("reading {}", path.display()), e)),
        }
    }

    /// The records of a kind as (id, path). Temporary files of writes a crash cut short are
    /// removed on the way: only start-up lists records, and no write is in flight then.
    fn records(&self, kind: &str) -> Vec<(String, PathBuf)> {
        let Ok(entries) = fs::read_dir(self.root.join(kind)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.starts_with('.') {
                if let Err(e) = fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove a temporary state file");
                }
                continue;
            }
            if let Some(id) = name.strip_suffix(".json") {
                out.push((id.to_string(), path));
            }
        }
        out
    }

    /// Start-up only: remove the temporary files of `kind` and every record whose id `keep`
    /// refuses (records a crash orphaned, e.g. between removing two records of one object).
    /// Returns how many records were removed.
    pub fn sweep(&self, kind: &str, keep: impl Fn(&str) -> bool) -> usize {
        let mut removed = 0;
        for (id, path) in self.records(kind) {
            if keep(&id) {
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove an orphaned state record")
                }
            }
        }
        removed
    }

    /// Every record of a kind. Unreadable records are reported and skipped, never fatal.
    pub fn read_all<T: DeserializeOwned>(&self, kind: &str) -> Vec<(String, T)> {
        let mut out = Vec::new();
        for (id, path) in self.records(kind) {
            match fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|d| serde_json::from_slice(&d).map_err(|e| e.to_string()))
            {
                Ok(value) => out.push((id, value)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "skipping unreadable state record")
                }
            }
        }
        out
    }
}

/// One numbered write of a record (see [`StateDir::ticket`]).
pub struct Ticket {
    dir: PathBuf,
    /// `kind id`, for messages.
    record: String,
    /// This write's own temporary file in `dir`.
    tmp_name: String,
    issued: Issued,
}

impl Ticket {
    /// Write `value` (see [`StateDir::write`]).
    pub fn write<T: Serialize>(
        self,
        value: &T,
    ) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        let Ticket {
            dir,
            record,
            tmp_name,
            issued,
        } = self;
        let data =
            serde_json::to_vec(value).map_err(|e| Error::internal(format!("encoding {record}"), e));
        let shown = issued.path.display().to_string();
        let tmp = dir.join(tmp_name);
        let write = move |data: Vec<u8>| -> std::io::Result<()> {
            fs::create_dir_all(&dir)?;
            let written = (|| {
                let mut file = File::create(&tmp)?;
                file.write_all(&data)?;
                file.sync_all()?;
                issued.place(&tmp)
            })();
            match written {
                // The rename must survive a crash too.
                Ok(true) => File::open(&dir)?.sync_all(),
                Ok(false) => Ok(()),
                Err(err) => {
                    let _ = fs::remove_file(&tmp);
                    Err(err)
                }
            }
        };
        async move {
            let data = data?;
            tokio::task::spawn_blocking(move || write(data))
                .await
                .map_err(|e| Error::internal(format!("writing {shown}"), e))?
                .map_err(|e| Error::internal(format!("writing {shown}"), e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_round_trip_and_temp_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        state.write("things", "a", &vec![1, 2, 3]).await.unwrap();
        std::fs::write(dir.path().join("things/.b.json.tmp"), b"{half").unwrap();
        std::fs::write(dir.path().join("things/c.json"), b"{broken").unwrap();
        let all: Vec<(String, Vec<i32>)> = state.read_all("things");
        assert_eq!(all, vec![("a".to_string(), vec![1, 2, 3])]);
        assert!(!dir.path().join("things/.b.json.tmp").exists());
        state.remove("things", "a").unwrap();
        state.remove("things", "a").unwrap();
        assert!(state.read_all::<Vec<i32>>("things").is_empty());
    }

    #[tokio::test]
    async fn a_ticket_taken_first_never_overwrites_a_later_one() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        // Task 1 takes its ticket, then reads the value; meanwhile task 2 changes the value,
        // takes its ticket and finishes its write first.
        let first = state.ticket("things", "a");
        let second = state.ticket("things", "a");
        second.write(&"changed").await.unwrap();
        first.write(&"before the change").await.unwrap();
        let kept: Option<String> = state.read("things", "a").unwrap();
        assert_eq!(kept.as_deref(), Some("changed"));
        assert!(state.in_flight.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn sweep_removes_temporary_files_and_refused_records_only() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        for id in ["kept", "orphan"] {
            state.write("specs", id, &id).await.unwrap();
        }
        std::fs::write(dir.path().join("specs/.kept.7.json.tmp"), b"{half").unwrap();
        std::fs::write(dir.path().join("specs/notes.txt"), b"not a record").unwrap();
        assert_eq!(state.sweep("specs", |id| id == "kept"), 1);
        let mut left: Vec<_> = std::fs::read_dir(dir.path().join("specs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["kept.json", "notes.txt"]);
        assert_eq!(
            state.read::<String>("specs", "kept").unwrap().as_deref(),
            Some("kept")
        );
        assert_eq!(state.sweep("missing-kind", |_| false), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn overlapping_writes_of_a_record_leave_the_newest_value() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        for round in 0..20 {
            // Values taken in order 0..8 (at the calls); their file work overlaps.
            let writes: Vec<_> = (0..8)
                .map(|i| tokio::spawn(state.write("things", "a", &vec![round, i])))
                .collect();
            for result in futures::future::join_all(writes).await {
                result.unwrap().unwrap();
            }
            let kept: Option<Vec<i32>> = state.read("things", "a").unwrap();
            assert_eq!(kept, Some(vec![round, 7]), "round {round}");
        }
        let left: Vec<_> = std::fs::read_dir(dir.path().join("things"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("a.json")]);
        assert!(
            state.in_flight.lock().unwrap().is_empty(),
            "slots outlive writes"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_in_flight_do_not_bring_back_a_removed_record() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        for round in 0..20 {
            let writes: Vec<_> = (0..4)
                .map(|i| tokio::spawn(state.write("things", "a", &vec![round, i])))
                .collect();
            state.remove("things", "a").unwrap();
            for result in futures::future::join_all(writes).await {
                result.unwrap().unwrap();
            }
            let kept: Option<Vec<i32>> = state.read("things", "a").unwrap();
            assert_eq!(kept, None, "round {round}: a removed record came back");
        }
        // A write called after the removal puts the record back.
        state.write("things", "a", &vec![1]).await.unwrap();
        let kept: Option<Vec<i32>> = state.read("things", "a").unwrap();
        assert_eq!(kept, Some(vec![1]));
        let left = std::fs::read_dir(dir.path().join("things"))
            .unwrap()
            .count();
        assert_eq!(left, 1, "temporary files left");
        assert!(
            state.in_flight.lock().unwrap().is_empty(),
            "slots outlive writes"
        );
    }

    #[tokio::test]
    async fn a_write_dropped_before_it_ran_leaves_no_slot() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        drop(state.write("things", "a", &vec![1]));
        assert!(state.in_flight.lock().unwrap().is_empty());
        assert_eq!(state.read::<Vec<i32>>("things", "a").unwrap(), None);
    }
}
