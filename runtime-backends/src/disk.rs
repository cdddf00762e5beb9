//! Disk usage of a directory tree, as `du` counts it: allocated blocks, and each inode once.
//!
//! Shared by the image filesystem's usage (ImageFsInfo) and the writable layers of
//! containers (ContainerStats), whatever the backend.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Bytes (allocated blocks) and inodes of what is under `root` (not `root` itself),
/// counting hard-linked files once; `skip` is counted but not entered.
pub fn disk_usage(root: &Path, skip: Option<&Path>) -> (u64, u64) {
    let mut seen = HashSet::new();
    let mut stack = vec![root.to_path_buf()];
    let (mut bytes, mut inodes) = (0u64, 0u64);
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            // Only files linked more than once can be met twice; remembering just those
            // keeps the walk's memory small on a node with millions of files.
            if !meta.is_dir() && meta.nlink() > 1 && !seen.insert((meta.dev(), meta.ino())) {
                continue;
            }
            inodes += 1;
            bytes += meta.blocks() * 512;
            if meta.is_dir() {
                let path = entry.path();
                if skip != Some(path.as_path()) {
                    stack.push(path);
                }
            }
        }
    }
    (bytes, inodes)
}

/// Bytes and inodes of `root` itself (its metadata `meta`) and everything under it, as `du`
/// counts a directory.
pub fn tree_usage(root: &Path, meta: &std::fs::Metadata) -> (u64, u64) {
    let (bytes, inodes) = disk_usage(root, None);
    (bytes + meta.blocks() * 512, inodes + 1)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;

    pub(crate) struct TempDir(pub(crate) PathBuf);

    impl TempDir {
        pub(crate) fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("crius-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn disk_usage_counts_a_hard_linked_file_once() {
        let tmp = TempDir::new("du");
        let dir = &tmp.0;
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("big"), vec![7u8; 64 * 1024]).unwrap();
        std::fs::write(dir.join("sub/small"), b"x").unwrap();
        let (bytes_before, inodes_before) = disk_usage(dir, None);
        // `sub`, `big`, `sub/small`.
        assert_eq!(inodes_before, 3);
        assert!(bytes_before >= 64 * 1024, "{bytes_before}");
        std::fs::hard_link(dir.join("big"), dir.join("sub/big-again")).unwrap();
        assert_eq!(disk_usage(dir, None), (bytes_before, inodes_before));
        std::fs::write(dir.join("sub/other"), vec![1u8; 64 * 1024]).unwrap();
        let (bytes_after, inodes_after) = disk_usage(dir, None);
        assert_eq!(inodes_after, 4);
        assert!(bytes_after >= bytes_before + 64 * 1024, "{bytes_after}");
        // A skipped directory counts as itself only.
        let (_, inodes_skipping) = disk_usage(dir, Some(&dir.join("sub")));
        assert_eq!(inodes_skipping, 2);
    }
}
