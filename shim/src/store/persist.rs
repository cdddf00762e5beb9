//! What containerd cannot tell crius, kept on disk under `<root>`, written atomically
//! (temp file + fsync + rename + directory fsync), so a crash leaves the old or the new
//! version and never half of one.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn file(&self, kind: &str, id: &str) -> PathBuf {
        self.root.join(kind).join(format!("{id}.json"))
    }

    pub fn write<T: Serialize>(&self, kind: &str, id: &str, value: &T) -> Result<()> {
        let path = self.file(kind, id);
        let dir = self.root.join(kind);
        fs::create_dir_all(&dir)
            .map_err(|e| Error::internal(format!("creating {}", dir.display()), e))?;
        let data = serde_json::to_vec(value)
            .map_err(|e| Error::internal(format!("encoding {kind} {id}"), e))?;
        let tmp = dir.join(format!(".{id}.json.tmp"));
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&tmp)?;
            file.write_all(&data)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)?;
            File::open(&dir)?.sync_all()
        };
        write().map_err(|e| Error::internal(format!("writing {}", path.display()), e))
    }

    pub fn remove(&self, kind: &str, id: &str) -> Result<()> {
        match fs::remove_file(self.file(kind, id)) {
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

    #[test]
    fn records_round_trip_and_temp_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        state.write("things", "a", &vec![1, 2, 3]).unwrap();
        std::fs::write(dir.path().join("things/.b.json.tmp"), b"{half").unwrap();
        std::fs::write(dir.path().join("things/c.json"), b"{broken").unwrap();
        let all: Vec<(String, Vec<i32>)> = state.read_all("things");
        assert_eq!(all, vec![("a".to_string(), vec![1, 2, 3])]);
        state.remove("things", "a").unwrap();
        state.remove("things", "a").unwrap();
        assert!(state.read_all::<Vec<i32>>("things").is_empty());
    }
}
