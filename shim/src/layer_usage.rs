//! Sizes of containers' writable layers, measured in the background.
//!
//! A writable layer is the overlay upper directory of the container's root mount; its size
//! takes a walk of every file in it, which for a container that writes many files is long.
//! Stats calls never walk: they answer the last figure. A loop measures at the lowest CPU
//! priority instead ([`runtime_backends::background`]):
//! - every [`LAYER_PERIOD`], each running container's layer, and once more the layer of a
//!   container that stopped since it was measured (its last writes count);
//! - right after a container starts, the layers that have no figure yet, so the first
//!   stats of a new container already carry one.
//!
//! The upper directory is found once per container, in `/proc/<pid>/mountinfo` of its init
//! process, so this works for any backend whose containers run on overlay.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::runtime::{now_nanos, Crius};
use crate::store::ContainerState;

/// How often every running container's writable layer is measured (containerd's CRI
/// refreshes its snapshot usage on the same period).
pub const LAYER_PERIOD: Duration = Duration::from_secs(10);

/// Usage of a container's writable layer (the snapshot's upper directory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WritableLayer {
    /// When the figures were measured (now, when there are none).
    pub timestamp: i64,
    /// The snapshotter's root directory, what containerd reports as the layer's filesystem.
    pub mountpoint: String,
    /// `None` until the layer has been measured once.
    pub used_bytes: Option<u64>,
    pub inodes_used: Option<u64>,
}

/// Per container: where its layer is and what it measured.
#[derive(Default)]
pub struct LayerUsage {
    layers: Mutex<HashMap<String, Entry>>,
    /// Wakes the loop to measure the layers that have no figure yet.
    wanted: Arc<tokio::sync::Notify>,
}

#[derive(Debug, Clone, Default)]
struct Entry {
    upper: Option<PathBuf>,
    figure: Option<Figure>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Figure {
    at_nanos: i64,
    bytes: u64,
    inodes: u64,
    /// Measured after the container stopped: the layer no longer changes.
    settled: bool,
}

/// One layer to measure: a container, its upper directory if known, and its init process
/// to find it with otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Job {
    id: String,
    upper: Option<PathBuf>,
    pid: Option<u32>,
}

/// A container as the loop sees it: its id and, while it runs, its init process.
struct Seen<'a> {
    id: &'a str,
    running_pid: Option<u32>,
}

impl LayerUsage {
    /// The last figure of container `id`'s layer; `fallback_mountpoint` names the
    /// filesystem while its layer has not been found.
    pub fn get(&self, id: &str, fallback_mountpoint: &str) -> WritableLayer {
        let layers = self.layers.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = layers.get(id);
        let mountpoint = entry
            .and_then(|e| e.upper.as_deref())
            .map_or_else(|| fallback_mountpoint.to_string(), snapshotter_root);
        match entry.and_then(|e| e.figure) {
            Some(figure) => WritableLayer {
                timestamp: figure.at_nanos,
                mountpoint,
                used_bytes: Some(figure.bytes),
                inodes_used: Some(figure.inodes),
            },
            None => WritableLayer {
                timestamp: now_nanos(),
                mountpoint,
                used_bytes: None,
                inodes_used: None,
            },
        }
    }

    /// Ask the loop to measure the layers without a figure now (a container started).
    pub fn want_new(&self) {
        self.wanted.notify_one();
    }

    /// Forget the containers for which `live` is false.
    pub fn retain(&self, live: impl Fn(&str) -> bool) {
        self.layers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|id, _| live(id));
    }

    /// The layers a round measures. `all`: the periodic round (every running container,
    /// and stopped ones not measured since they stopped); otherwise only containers that
    /// run and have no figure.
    fn jobs<'a>(&self, containers: impl Iterator<Item = Seen<'a>>, all: bool) -> Vec<Job> {
        let layers = self.layers.lock().unwrap_or_else(PoisonError::into_inner);
        containers
            .filter_map(|seen| {
                let entry = layers.get(seen.id);
                let figure = entry.and_then(|e| e.figure);
                let wanted = match (seen.running_pid, figure) {
                    (Some(_), None) => true,
                    (Some(_), Some(_)) => all,
                    // A stopped container's layer is measured once more, if it was found.
                    (None, Some(figure)) => all && !figure.settled,
                    (None, None) => false,
                };
                let upper = entry.and_then(|e| e.upper.clone());
                (wanted && (upper.is_some() || seen.running_pid.is_some())).then(|| Job {
                    id: seen.id.to_string(),
                    upper,
                    pid: seen.running_pid,
                })
            })
            .collect()
    }

    /// Keep what a round found, for containers still known (`live`).
    fn record(&self, found: Vec<(String, PathBuf, Option<Figure>)>, live: impl Fn(&str) -> bool) {
        let mut layers = self.layers.lock().unwrap_or_else(PoisonError::into_inner);
        for (id, upper, figure) in found {
            if !live(&id) {
                continue;
            }
            let entry = layers.entry(id).or_default();
            entry.upper = Some(upper);
            if figure.is_some() {
                entry.figure = figure;
            }
        }
    }
}

/// Walk the jobs' layers (on the calling thread): each job's upper directory, found from
/// its process when not known yet, and its figure when the directory could be read.
fn measure(jobs: Vec<Job>) -> Vec<(String, PathBuf, Option<Figure>)> {
    jobs.into_iter()
        .filter_map(|job| {
            let upper = job.upper.or_else(|| {
                let pid = job.pid?;
                upper_dir(&Path::new("/proc").join(pid.to_string()).join("mountinfo"))
            })?;
            let at_nanos = now_nanos();
            let figure = std::fs::symlink_metadata(&upper).ok().map(|root| {
                let (bytes, inodes) = runtime_backends::disk::tree_usage(&upper, &root);
                Figure {
                    at_nanos,
                    bytes,
                    inodes,
                    settled: job.pid.is_none(),
                }
            });
            Some((job.id, upper, figure))
        })
        .collect()
}

impl Crius {
    /// Measure writable layers now: every running container's (and stopped ones' once
    /// more) when `all`, else those of running containers without a figure yet.
    pub async fn measure_writable_layers(&self, all: bool) {
        let snapshot = self.store.containers.snapshot();
        let jobs = self.stats_cache.layers.jobs(
            snapshot.values().map(|c| {
                let status = c.status();
                Seen {
                    id: &c.meta.id,
                    running_pid: (status.state == ContainerState::Running && status.pid != 0)
                        .then_some(status.pid),
                }
            }),
            all,
        );
        drop(snapshot);
        if jobs.is_empty() {
            return;
        }
        let count = jobs.len();
        let began = std::time::Instant::now();
        match runtime_backends::background::at_lowest_priority("crius-layer-usage", move || {
            measure(jobs)
        })
        .await
        {
            Ok(found) => {
                let containers = self.store.containers.snapshot();
                self.stats_cache
                    .layers
                    .record(found, |id| containers.contains_key(id));
            }
            Err(e) => tracing::warn!(error = %e, "measuring writable layers failed"),
        }
        tracing::debug!(
            layers = count,
            all,
            elapsed_ms = began.elapsed().as_millis() as u64,
            "writable layers measured"
        );
    }

    /// Measure writable layers until crius stops: every [`LAYER_PERIOD`] (the first round
    /// right away, so containers that outlived a restart get figures), and when a
    /// container starts.
    pub fn spawn_layer_usage(self: &Arc<Self>) {
        let crius = Arc::downgrade(self);
        let wanted = Arc::clone(&self.stats_cache.layers.wanted);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(LAYER_PERIOD);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let all = tokio::select! {
                    _ = tick.tick() => true,
                    () = wanted.notified() => false,
                };
                let Some(crius) = crius.upgrade() else { return };
                crius.measure_writable_layers(all).await;
            }
        });
    }
}

/// The overlay `upperdir` of the root mount in a process's `mountinfo`.
fn upper_dir(mountinfo: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(mountinfo).ok()?;
    parse_upper_dir(&text)
}

fn parse_upper_dir(mountinfo: &str) -> Option<PathBuf> {
    runtime_backends::mountinfo::overlay_upper_dirs(mountinfo)
        .find(|(mount_point, _)| *mount_point == "/")
        .map(|(_, upper)| upper.to_path_buf())
}

/// `<snapshotter root>/snapshots/<n>/fs` → `<snapshotter root>`.
fn snapshotter_root(upper: &Path) -> String {
    upper
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "snapshots"))
        .and_then(Path::parent)
        .unwrap_or(upper)
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen<'a>(containers: &'a [(&'a str, Option<u32>)]) -> impl Iterator<Item = Seen<'a>> {
        containers.iter().map(|(id, pid)| Seen {
            id,
            running_pid: *pid,
        })
    }

    fn ids(jobs: &[Job]) -> Vec<&str> {
        let mut ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
        ids.sort_unstable();
        ids
    }

    /// A layer directory of `size` bytes in one file.
    fn layer(root: &Path, name: &str, size: usize) -> PathBuf {
        let upper = root.join(name).join("fs");
        std::fs::create_dir_all(&upper).unwrap();
        std::fs::write(upper.join("data"), vec![1u8; size]).unwrap();
        upper
    }

    fn job(id: &str, upper: &Path, pid: Option<u32>) -> Job {
        Job {
            id: id.into(),
            upper: Some(upper.to_path_buf()),
            pid,
        }
    }

    #[test]
    fn a_started_container_is_measured_at_once_and_then_each_period() {
        let usage = LayerUsage::default();
        let tmp = tempfile::tempdir().unwrap();
        let upper = layer(tmp.path(), "1", 64 * 1024);
        let running = [("a", Some(7))];
        // No figure: both rounds measure it.
        assert_eq!(ids(&usage.jobs(seen(&running), false)), ["a"]);
        assert_eq!(ids(&usage.jobs(seen(&running), true)), ["a"]);
        assert_eq!(usage.get("a", "/fallback").used_bytes, None);
        usage.record(measure(vec![job("a", &upper, Some(7))]), |_| true);
        let first = usage.get("a", "/fallback");
        assert!(first.used_bytes.unwrap() >= 64 * 1024, "{first:?}");
        // `fs`, `data`.
        assert_eq!(first.inodes_used, Some(2));
        // Measured: only the periodic round walks it again, and sees what it wrote.
        assert!(usage.jobs(seen(&running), false).is_empty());
        assert_eq!(ids(&usage.jobs(seen(&running), true)), ["a"]);
        std::fs::write(upper.join("more"), vec![2u8; 64 * 1024]).unwrap();
        usage.record(measure(usage.jobs(seen(&running), true)), |_| true);
        let second = usage.get("a", "/fallback");
        assert_eq!(second.inodes_used, Some(3));
        assert!(second.used_bytes.unwrap() >= first.used_bytes.unwrap() + 64 * 1024);
        assert!(second.timestamp >= first.timestamp);
    }

    #[test]
    fn a_stopped_container_is_measured_once_more_then_kept() {
        let usage = LayerUsage::default();
        let tmp = tempfile::tempdir().unwrap();
        let upper = layer(tmp.path(), "1", 4096);
        usage.record(measure(vec![job("a", &upper, Some(7))]), |_| true);
        // Its last writes before it stopped.
        std::fs::write(upper.join("last"), b"x").unwrap();
        let stopped = [("a", None)];
        assert!(usage.jobs(seen(&stopped), false).is_empty());
        let jobs = usage.jobs(seen(&stopped), true);
        assert_eq!(jobs, [job("a", &upper, None)]);
        usage.record(measure(jobs), |_| true);
        assert_eq!(usage.get("a", "/fallback").inodes_used, Some(3));
        // Settled: never walked again.
        assert!(usage.jobs(seen(&stopped), true).is_empty());
        // A container never found (created, not started) is not walked at all.
        assert!(usage.jobs(seen(&[("b", None)]), true).is_empty());
    }

    #[test]
    fn removed_containers_are_neither_recorded_nor_kept() {
        let usage = LayerUsage::default();
        let tmp = tempfile::tempdir().unwrap();
        let a = layer(tmp.path(), "1", 10);
        let b = layer(tmp.path(), "2", 10);
        // `b` was removed while the round walked it.
        usage.record(
            measure(vec![job("a", &a, Some(1)), job("b", &b, Some(2))]),
            |id| id == "a",
        );
        assert!(usage.get("a", "/f").used_bytes.is_some());
        assert_eq!(usage.get("b", "/f").used_bytes, None);
        usage.retain(|_| false);
        assert_eq!(usage.get("a", "/f").used_bytes, None);
        // A layer that vanished (the container is being removed) keeps no figure.
        std::fs::remove_dir_all(&a).unwrap();
        let found = measure(vec![job("a", &a, Some(1))]);
        assert_eq!(found, [("a".to_string(), a.clone(), None)]);
    }

    #[test]
    fn an_unmeasured_layer_names_the_fallback_filesystem() {
        let usage = LayerUsage::default();
        let layer = usage.get("a", "/var/lib/snapshotter");
        assert_eq!(layer.mountpoint, "/var/lib/snapshotter");
        assert!(layer.timestamp > 0);
    }

    #[test]
    fn finds_the_overlay_upper_dir_of_the_root_mount() {
        let mountinfo = "\
1084 1020 0:95 / / rw,relatime - overlay overlay rw,lowerdir=/var/lib/c/io.containerd.snapshotter.v1.overlayfs/snapshots/3/fs,upperdir=/var/lib/c/io.containerd.snapshotter.v1.overlayfs/snapshots/9/fs,workdir=/var/lib/c/io.containerd.snapshotter.v1.overlayfs/snapshots/9/work
1085 1084 0:97 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
";
        let upper = parse_upper_dir(mountinfo).unwrap();
        assert_eq!(
            upper,
            Path::new("/var/lib/c/io.containerd.snapshotter.v1.overlayfs/snapshots/9/fs")
        );
        assert_eq!(
            snapshotter_root(&upper),
            "/var/lib/c/io.containerd.snapshotter.v1.overlayfs"
        );
        assert_eq!(
            parse_upper_dir("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"),
            None
        );
    }
}
