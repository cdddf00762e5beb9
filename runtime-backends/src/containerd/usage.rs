//! Disk usage of the overlay snapshotter's directory (ImageFsInfo), without walking every
//! image layer every time.
//!
//! The snapshotter keeps each snapshot in `<root>/snapshots/<id>/`. Committed snapshots
//! (image layers) never change, and neither does an active one that nothing has mounted
//! (a created or exited container's writable layer). Only a snapshot mounted as an overlay
//! upper directory (a running container, an image layer being unpacked) is written to. So a
//! snapshot directory is walked when it is new, while it is mounted, and once more after it
//! was mounted at the last measurement; otherwise its last result is reused. On a node
//! with many large images this turns a walk of every file into a walk of the running
//! containers' writable layers.
//!
//! Mounts are read from crius's own mount namespace. So that a snapshotter mounting
//! elsewhere, or a write nobody announced, can only make a figure late and never wrong for
//! good, each kept result is also walked again after [`REWALK_AFTER`] measurements; the
//! directories take turns, so each measurement re-walks about 1/`REWALK_AFTER` of them.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::disk::{disk_usage, tree_usage};
use crate::FsWalk;

/// Measurements after which a kept result is walked again anyway (at one per 10 s: 5 min).
pub(crate) const REWALK_AFTER: u32 = 30;

/// What the last measurement found per snapshot directory.
#[derive(Debug, Default)]
pub(crate) struct SnapshotUsage {
    dirs: HashMap<PathBuf, DirUsage>,
}

#[derive(Debug, Clone, Copy)]
struct DirUsage {
    bytes: u64,
    inodes: u64,
    /// Mounted as an upper directory when it was measured: it may have changed since.
    mounted: bool,
    /// Measurements left before it is walked again anyway.
    left: u32,
}

impl SnapshotUsage {
    /// Bytes (allocated blocks) and inodes under `root`. `mounted` holds the snapshot
    /// directories now mounted as upper directories, or `None` when that is unknown (then
    /// every directory is walked). With [`FsWalk::Appeared`] only new directories are
    /// walked: the others keep their figure and their place in the re-walk turn.
    pub(crate) fn measure(
        &mut self,
        root: &Path,
        mounted: Option<&HashSet<PathBuf>>,
        walk: FsWalk,
    ) -> (u64, u64) {
        let snapshots = root.join("snapshots");
        let (mut bytes, mut inodes) = disk_usage(root, Some(&snapshots));
        let mut present = HashMap::with_capacity(self.dirs.len());
        for entry in std::fs::read_dir(&snapshots)
            .into_iter()
            .flatten()
            .flatten()
        {
            let Ok(meta) = entry.metadata() else { continue };
            let dir = entry.path();
            let usage = if meta.is_dir() {
                let now_mounted = mounted.is_none_or(|m| m.contains(&dir));
                match self.dirs.get(&dir) {
                    Some(last) if walk == FsWalk::Appeared => *last,
                    Some(last) if !now_mounted && !last.mounted && last.left > 0 => DirUsage {
                        left: last.left - 1,
                        ..*last
                    },
                    last => {
                        let (bytes, inodes) = tree_usage(&dir, &meta);
                        DirUsage {
                            bytes,
                            inodes,
                            mounted: now_mounted,
                            // New directories start at different points of the turn.
                            left: match last {
                                Some(_) => REWALK_AFTER,
                                None => stagger(&dir),
                            },
                        }
                    }
                }
            } else {
                DirUsage {
                    bytes: meta.blocks() * 512,
                    inodes: 1,
                    mounted: false,
                    left: 0,
                }
            };
            bytes += usage.bytes;
            inodes += usage.inodes;
            present.insert(dir, usage);
        }
        // Removed snapshots leave with this measurement.
        self.dirs = present;
        (bytes, inodes)
    }
}

/// A point in the re-walk turn (0..=[`REWALK_AFTER`]) that depends only on `dir`.
fn stagger(dir: &Path) -> u32 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut hasher);
    (hasher.finish() % u64::from(REWALK_AFTER + 1)) as u32
}

/// The snapshot directories (`<snapshots>/<id>`) mounted as overlay upper directories, from
/// a `mountinfo` file; `None` when it cannot be read.
pub(crate) fn mounted_snapshots(mountinfo: &Path, snapshots: &Path) -> Option<HashSet<PathBuf>> {
    let text = std::fs::read_to_string(mountinfo).ok()?;
    // Upper directories are `<snapshots>/<id>/fs`: the snapshot directory is the parent.
    let found = crate::mountinfo::overlay_upper_dirs(&text)
        .filter_map(|(_, upper)| upper.parent())
        .filter(|dir| dir.parent() == Some(snapshots))
        .map(Path::to_path_buf)
        .collect();
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::tests::TempDir;

    /// A snapshotter root with `snapshots/<id>/fs/<file>` of `size` bytes per id.
    fn snapshotter(tmp: &TempDir, layers: &[(&str, usize)]) -> PathBuf {
        let root = tmp.0.join("overlayfs");
        std::fs::create_dir_all(root.join("snapshots")).unwrap();
        std::fs::write(root.join("metadata.db"), vec![0u8; 4096]).unwrap();
        for (id, size) in layers {
            let fs = root.join("snapshots").join(id).join("fs");
            std::fs::create_dir_all(&fs).unwrap();
            std::fs::write(fs.join("data"), vec![1u8; *size]).unwrap();
        }
        root
    }

    #[test]
    fn unmounted_snapshots_are_walked_once_mounted_ones_every_time() {
        let tmp = TempDir::new("layers");
        let root = snapshotter(&tmp, &[("1", 64 * 1024), ("2", 4096)]);
        let snapshots = root.join("snapshots");
        let mounted: HashSet<PathBuf> = [snapshots.join("2")].into();
        let mut usage = SnapshotUsage::default();
        let first = usage.measure(&root, Some(&mounted), FsWalk::Changed);
        // Walking everything agrees with the cached walk.
        assert_eq!(first, disk_usage(&root, None));
        // Far from their turn to be walked again anyway (that has its own test).
        for dir in usage.dirs.values_mut() {
            dir.left = REWALK_AFTER;
        }

        // A write to an unmounted layer is not seen (nothing writes there)...
        std::fs::write(snapshots.join("1/fs/more"), vec![1u8; 64 * 1024]).unwrap();
        // ...a write to a mounted one is.
        std::fs::write(snapshots.join("2/fs/more"), vec![1u8; 64 * 1024]).unwrap();
        let second = usage.measure(&root, Some(&mounted), FsWalk::Changed);
        assert_eq!(second.1, first.1 + 1, "only layer 2's new file is counted");
        assert!(second.0 >= first.0 + 64 * 1024);

        // Unmounted since the last measurement: walked once more, then kept.
        std::fs::write(snapshots.join("2/fs/last"), b"x").unwrap();
        let none = HashSet::new();
        let third = usage.measure(&root, Some(&none), FsWalk::Changed);
        assert_eq!(third.1, second.1 + 1);
        std::fs::write(snapshots.join("2/fs/unseen"), b"x").unwrap();
        assert_eq!(usage.measure(&root, Some(&none), FsWalk::Changed), third);

        // New snapshots are walked, removed ones leave.
        std::fs::create_dir_all(snapshots.join("3/fs")).unwrap();
        let fourth = usage.measure(&root, Some(&none), FsWalk::Changed);
        assert_eq!(fourth.1, third.1 + 2);
        std::fs::remove_dir_all(snapshots.join("1")).unwrap();
        let fifth = usage.measure(&root, Some(&none), FsWalk::Changed);
        // Layer 1 as it was measured: its dir, fs, data (`more` was never seen).
        assert_eq!(fifth.1, fourth.1 - 3);

        // Mounts unknown: everything is walked.
        assert_eq!(
            usage.measure(&root, None, FsWalk::Changed),
            disk_usage(&root, None)
        );
    }

    #[test]
    fn after_a_removal_only_new_directories_are_walked() {
        let tmp = TempDir::new("appeared");
        let root = snapshotter(&tmp, &[("1", 64 * 1024), ("2", 4096)]);
        let snapshots = root.join("snapshots");
        let mounted: HashSet<PathBuf> = [snapshots.join("2")].into();
        let mut usage = SnapshotUsage::default();
        let first = usage.measure(&root, Some(&mounted), FsWalk::Changed);
        let turn = usage.dirs[&snapshots.join("2")].left;

        // Layer 1 goes, layer 3 comes, the mounted layer 2 is written to.
        std::fs::remove_dir_all(snapshots.join("1")).unwrap();
        std::fs::create_dir_all(snapshots.join("3/fs")).unwrap();
        std::fs::write(snapshots.join("2/fs/more"), vec![1u8; 64 * 1024]).unwrap();
        let quick = usage.measure(&root, Some(&mounted), FsWalk::Appeared);
        // Layer 1's dir, fs and data went; layer 3's dir and fs came; layer 2 kept its figure.
        assert_eq!(quick.1, first.1 - 3 + 2);
        assert!(quick.0 < first.0, "{quick:?} after {first:?}");
        // Layer 2 kept its place in the re-walk turn.
        assert_eq!(usage.dirs[&snapshots.join("2")].left, turn);
        // The next periodic measurement sees layer 2's write.
        let next = usage.measure(&root, Some(&mounted), FsWalk::Changed);
        assert_eq!(next.1, quick.1 + 1);
        assert_eq!(next, disk_usage(&root, None));
    }

    #[test]
    fn every_kept_result_is_walked_again_within_the_turn() {
        let tmp = TempDir::new("rewalk");
        let ids: Vec<String> = (0..40).map(|i| i.to_string()).collect();
        let layers: Vec<(&str, usize)> = ids.iter().map(|id| (id.as_str(), 10)).collect();
        let root = snapshotter(&tmp, &layers);
        let none = HashSet::new();
        let mut usage = SnapshotUsage::default();
        usage.measure(&root, Some(&none), FsWalk::Changed);
        // Writes nobody announced (no mount) are all seen within one turn.
        for id in &ids {
            std::fs::write(root.join("snapshots").join(id).join("fs/late"), b"x").unwrap();
        }
        let mut walked_per_round = Vec::new();
        for _ in 0..=REWALK_AFTER {
            let before: Vec<u32> = ids
                .iter()
                .map(|id| usage.dirs[&root.join("snapshots").join(id)].left)
                .collect();
            usage.measure(&root, Some(&none), FsWalk::Changed);
            walked_per_round.push(before.iter().filter(|&&left| left == 0).count());
        }
        assert_eq!(
            usage.measure(&root, Some(&none), FsWalk::Changed),
            disk_usage(&root, None)
        );
        // The turn is spread: no round walks every directory.
        assert!(
            walked_per_round.iter().all(|&n| n < ids.len()),
            "{walked_per_round:?}"
        );
    }

    #[test]
    fn upper_directories_of_overlay_mounts_are_found() {
        let tmp = TempDir::new("mountinfo");
        let snapshots = Path::new("/var/lib/containerd/overlayfs/snapshots");
        let mountinfo = tmp.0.join("mountinfo");
        std::fs::write(
            &mountinfo,
            "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n\
             301 22 0:90 / /run/containerd/rootfs rw,relatime - overlay overlay rw,lowerdir=/var/lib/containerd/overlayfs/snapshots/4/fs:/var/lib/containerd/overlayfs/snapshots/3/fs,upperdir=/var/lib/containerd/overlayfs/snapshots/7/fs,workdir=/var/lib/containerd/overlayfs/snapshots/7/work\n\
             302 22 0:91 / /elsewhere rw - overlay overlay rw,lowerdir=/a,upperdir=/b/c/fs,workdir=/b/c/work\n",
        )
        .unwrap();
        let found = mounted_snapshots(&mountinfo, snapshots).unwrap();
        assert_eq!(found, [snapshots.join("7")].into());
        assert!(mounted_snapshots(&tmp.0.join("missing"), snapshots).is_none());
    }
}
