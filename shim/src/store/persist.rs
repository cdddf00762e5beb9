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
    /// Which write of each record was last put in place (see [`StateDir::write`]).
    placed: Arc<Mutex<HashMap<PathBuf, u64>>>,
}

/// Numbers the writes, in the order their values were taken.
static WRITES: AtomicU64 = AtomicU64::new(0);

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            placed: Arc::default(),
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
    /// record may overlap: each has its own temporary file, and one whose value was taken
    /// before that of the record already in place is dropped, so the newest value stays.
    pub fn write<T: Serialize>(
        &self,
        kind: &str,
        id: &str,
        value: &T,
    ) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        let data = serde_json::to_vec(value)
            .map_err(|e| Error::internal(format!("encoding {kind} {id}"), e));
        let number = WRITES.fetch_add(1, Ordering::SeqCst);
        let path = self.file(kind, id);
        let dir = self.root.join(kind);
        let tmp = dir.join(format!(".{id}.{number}.json.tmp"));
        let placed = Arc::clone(&self.placed);
        let shown = path.display().to_string();
        let write = move |data: Vec<u8>| -> std::io::Result<()> {
            fs::create_dir_all(&dir)?;
            let mut file = File::create(&tmp)?;
            file.write_all(&data)?;
            file.sync_all()?;
            {
                let mut placed = placed.lock().unwrap_or_else(|p| p.into_inner());
                if placed.get(&path).is_some_and(|&last| last > number) {
                    drop(placed);
                    return fs::remove_file(&tmp);
                }
                fs::rename(&tmp, &path)?;
                placed.insert(path, number);
            }
            File::open(&dir)?.sync_all()
        };
        async move {
            let data = data?;
            tokio::task::spawn_blocking(move || write(data))
                .await
                .map_err(|e| Error::internal(format!("writing {shown}"), e))?
                .map_err(|e| Error::internal(format!("writing {shown}"), e))
        }
    }

    pub fn remove(&self, kind: &str, id: &str) -> Result<()> {
        let path = self.file(kind, id);
        self.placed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&path);
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

    /// Every record of a kind. Unreadable records are reported and skipped, never fatal.
    pub fn read_all<T: DeserializeOwned>(&self, kind: &str) -> Vec<(String, T)> {
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
                let _ = fs::remove_file(&path);
                continue;
            }
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            match fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|d| serde_json::from_slice(&d).map_err(|e| e.to_string()))
            {
                Ok(value) => out.push((id.to_string(), value)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "skipping unreadable state record")
                }
            }
        }
        out
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
        state.remove("things", "a").unwrap();
        state.remove("things", "a").unwrap();
        assert!(state.read_all::<Vec<i32>>("things").is_empty());
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
    }
}
