//! Layer blobs written straight into containerd's local content store.
//!
//! Streamed through `Content.Write`, a layer costs containerd a protobuf decode, a copy and
//! a SHA-256 of every byte on one goroutine; on containerd 1.6 (Go 1.19, no SHA-NI) that
//! serial write is what limits a pull. When crius runs on the same host as containerd it
//! can see the content store's directory (the `root` that the content plugin exports), so
//! it writes and hashes the blob itself and only asks containerd to record it:
//!
//! 1. the layer's bytes go to a scratch file under `<root>/crius-ingest/<namespace>/` (a
//!    directory containerd neither walks nor collects), hashed as they are written;
//! 2. size and digest are checked, the file is synced and made read-only, then hard-linked
//!    to `<root>/blobs/sha256/<hex>`, where containerd's local store looks for blobs;
//! 3. `Content.Write` opens an ingest expecting that digest and size. containerd's metadata
//!    store sees the blob already in its local store (content sharing policy `shared`, the
//!    default), so the ingest starts complete and the commit records the blob in crius's
//!    namespace under the pull's lease without moving a byte. If the blob is not there (the
//!    link failed, or containerd's content sweep deleted a blob no namespace recorded yet),
//!    the ingest starts empty and the scratch file is streamed through `Content.Write`.
//!
//! Nothing is used unless every condition holds: the plugin reports its root, the root is
//! a directory here, the metadata plugin's sharing policy is `shared`, and the scratch
//! directory can be made.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

/// Where crius writes blobs for containerd's local content store.
#[derive(Debug, Clone)]
pub(crate) struct LocalContent {
    /// `<root>/blobs/sha256`.
    blobs: PathBuf,
    /// `<root>/crius-ingest/<namespace>`.
    scratch: PathBuf,
}

/// A blob written to a scratch file: its length and sha256 digest (`sha256:<hex>`).
#[derive(Debug)]
pub(crate) struct Written {
    pub size: u64,
    pub digest: String,
}

/// How a checked blob reached the local store's blob directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placed {
    /// crius linked it there; crius removes it again if recording fails.
    Linked,
    /// A blob of that digest was there already (another namespace, another pull).
    Existed,
}

impl LocalContent {
    /// Check the content root containerd reports and prepare crius's scratch directory,
    /// clearing files a crashed crius left there. `None` (with the reason logged) when the
    /// local store cannot be used from here.
    pub(crate) fn open(root: Option<&str>, policy: Option<&str>, namespace: &str) -> Option<Self> {
        let Some(root) = root else {
            tracing::info!("containerd's content plugin reports no root; layers are streamed through Content.Write");
            return None;
        };
        if policy != Some("shared") {
            tracing::info!(
                policy,
                "containerd's content sharing policy is not \"shared\"; layers are streamed through Content.Write"
            );
            return None;
        }
        let root = Path::new(root);
        if !root.is_dir() {
            tracing::info!(root = %root.display(), "containerd's content root is not visible here; layers are streamed through Content.Write");
            return None;
        }
        let local = LocalContent {
            blobs: root.join("blobs").join("sha256"),
            scratch: root.join("crius-ingest").join(namespace),
        };
        let prepared = std::fs::create_dir_all(&local.blobs)
            .and_then(|()| std::fs::create_dir_all(&local.scratch))
            .and_then(|()| local.clear_scratch());
        match prepared {
            Ok(cleared) => {
                if cleared > 0 {
                    tracing::info!(files = cleared, dir = %local.scratch.display(), "removed unfinished layer files");
                }
                tracing::debug!(root = %root.display(), "layers are written into containerd's local content store");
                Some(local)
            }
            Err(err) => {
                tracing::info!(root = %root.display(), error = %err, "cannot write into containerd's content root; layers are streamed through Content.Write");
                None
            }
        }
    }

    fn clear_scratch(&self) -> std::io::Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.scratch)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// A fresh scratch path for a blob of `digest`.
    pub(crate) fn scratch_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.scratch
            .join(format!("{hex}.{:016x}", rand::random::<u64>()))
    }

    /// Where containerd's local store keeps the blob `digest`, if it is a sha256 digest.
    pub(crate) fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        crate::oci::sha256_hex(digest).map(|hex| self.blobs.join(hex))
    }

    /// Make the checked (and synced) scratch file read-only, as containerd does with
    /// committed blobs, and link it to `blob`.
    pub(crate) fn place(scratch: &Path, blob: &Path) -> std::io::Result<Placed> {
        std::fs::set_permissions(scratch, std::fs::Permissions::from_mode(0o444))?;
        match std::fs::hard_link(scratch, blob) {
            Ok(()) => Ok(Placed::Linked),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(Placed::Existed),
            Err(err) => Err(err),
        }
    }
}

/// Removes a scratch file when dropped, whatever happened to the pull.
pub(crate) struct ScratchFile(pub PathBuf);

impl Drop for ScratchFile {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_file(&self.0) {
            if err.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.0.display(), error = %err, "could not remove a layer scratch file");
            }
        }
    }
}

/// Write every chunk from `chunks` to a new file at `path`, hashing as it goes, and sync it
/// once the sender is dropped (the blob must be whole on disk before containerd records
/// it). Runs on a blocking thread.
pub(crate) fn write_and_hash(
    path: &Path,
    mut chunks: tokio::sync::mpsc::Receiver<Bytes>,
) -> std::io::Result<Written> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = chunks.blocking_recv() {
        file.write_all(&chunk)?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
    }
    file.sync_all()?;
    Ok(Written {
        size,
        digest: format!("sha256:{}", hex::encode(hasher.finalize())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_root(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "crius-local-content-{name}-{}",
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn unusable_roots_and_policies_are_refused() {
        let root = temp_root("refused");
        let root_str = root.to_str().unwrap();
        assert!(LocalContent::open(None, Some("shared"), "crius").is_none());
        assert!(LocalContent::open(Some(root_str), Some("isolated"), "crius").is_none());
        assert!(LocalContent::open(Some(root_str), None, "crius").is_none());
        let missing = root.join("missing");
        assert!(LocalContent::open(missing.to_str(), Some("shared"), "crius").is_none());
        assert!(LocalContent::open(Some(root_str), Some("shared"), "crius").is_some());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn opening_clears_unfinished_scratch_files_of_its_namespace_only() {
        let root = temp_root("clear");
        let root_str = root.to_str().unwrap();
        let local = LocalContent::open(Some(root_str), Some("shared"), "crius").unwrap();
        let other = LocalContent::open(Some(root_str), Some("shared"), "other").unwrap();
        let left = local.scratch_path("sha256:ab");
        let kept = other.scratch_path("sha256:ab");
        std::fs::write(&left, b"partial").unwrap();
        std::fs::write(&kept, b"partial").unwrap();
        assert!(LocalContent::open(Some(root_str), Some("shared"), "crius").is_some());
        assert!(!left.exists());
        assert!(kept.exists());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn blobs_are_hashed_linked_read_only_and_scratch_goes() {
        let root = temp_root("place");
        let local = LocalContent::open(root.to_str(), Some("shared"), "crius").unwrap();
        let data = b"layer bytes".to_vec();
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
        let scratch = local.scratch_path(&digest);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.blocking_send(Bytes::from(data[..5].to_vec())).unwrap();
        tx.blocking_send(Bytes::from(data[5..].to_vec())).unwrap();
        drop(tx);
        let written = write_and_hash(&scratch, rx).unwrap();
        assert_eq!(written.size, data.len() as u64);
        assert_eq!(written.digest, digest);

        let blob = local.blob_path(&digest).unwrap();
        {
            let guard = ScratchFile(scratch.clone());
            assert_eq!(
                LocalContent::place(&guard.0, &blob).unwrap(),
                Placed::Linked
            );
            assert_eq!(
                LocalContent::place(&guard.0, &blob).unwrap(),
                Placed::Existed
            );
        }
        assert!(!scratch.exists(), "the scratch file outlived its guard");
        assert_eq!(std::fs::read(&blob).unwrap(), data);
        let mode = std::fs::metadata(&blob).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o444);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn only_sha256_hex_digests_name_blobs() {
        let root = temp_root("names");
        let local = LocalContent::open(root.to_str(), Some("shared"), "crius").unwrap();
        let hex = "a".repeat(64);
        assert!(local.blob_path(&format!("sha256:{hex}")).is_some());
        assert!(local.blob_path(&format!("sha512:{hex}")).is_none());
        assert!(local.blob_path("sha256:../../etc").is_none());
        assert!(local
            .blob_path(&format!("sha256:{}", "A".repeat(64)))
            .is_none());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
