//! Reading files from an image without running it: a read-only view snapshot of the image's
//! layers, mounted for a moment in a private directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use containerd_client::services::v1::snapshots as snap;
use containerd_client::types::Mount;
use nix::mount::{MntFlags, MsFlags};

use super::{map_status, Containerd, SNAPSHOTTER};
use crate::{BackendError, Result};

impl Containerd {
    pub(crate) async fn read_image_files_impl(
        &self,
        image_id: &str,
        paths: &[&str],
    ) -> Result<HashMap<String, Vec<u8>>> {
        let image = self
            .image_impl(image_id)
            .await?
            .ok_or_else(|| BackendError::NotFound {
                kind: "image",
                id: image_id.to_string(),
            })?;
        let key = format!("crius-view-{:016x}", rand::random::<u64>());
        let mounts = self
            .snapshots()
            .view(self.req(snap::ViewSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: key.clone(),
                parent: image.chain_id.clone(),
                labels: HashMap::new(),
            }))
            .await
            .map_err(|s| map_status(s, "snapshot", &image.chain_id))?
            .into_inner()
            .mounts;
        let wanted: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        let target = std::env::temp_dir().join(&key);
        let result = tokio::task::spawn_blocking(move || read_mounted(&mounts, &target, &wanted))
            .await
            .map_err(|e| BackendError::Engine {
                engine: "containerd",
                message: format!("image view: {e}"),
            });
        self.remove_snapshot(&key).await;
        result?
    }
}

fn read_mounted(
    mounts: &[Mount],
    target: &Path,
    paths: &[String],
) -> Result<HashMap<String, Vec<u8>>> {
    std::fs::create_dir_all(target)
        .map_err(|e| BackendError::io(format!("creating {}", target.display()), e))?;
    let mounted = mount_all(mounts, target);
    let out = mounted.map(|()| {
        let mut files = HashMap::new();
        for path in paths {
            if let Some(data) = read_inside(target, path) {
                files.insert(path.clone(), data);
            }
        }
        files
    });
    let _ = nix::mount::umount2(target, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir(target);
    out
}

fn mount_all(mounts: &[Mount], target: &Path) -> Result<()> {
    for mount in mounts {
        let mut flags = MsFlags::empty();
        let mut data = Vec::new();
        for option in &mount.options {
            match option.as_str() {
                "ro" => flags |= MsFlags::MS_RDONLY,
                "rw" => {}
                "bind" => flags |= MsFlags::MS_BIND,
                "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
                other => data.push(other.to_string()),
            }
        }
        let data = data.join(",");
        let fstype = if mount.r#type == "bind" {
            None
        } else {
            Some(mount.r#type.as_str())
        };
        nix::mount::mount(
            Some(mount.source.as_str()),
            target,
            fstype,
            flags,
            if data.is_empty() {
                None
            } else {
                Some(data.as_str())
            },
        )
        .map_err(|e| {
            BackendError::io(
                format!("mounting image view at {}", target.display()),
                e.into(),
            )
        })?;
        if flags.contains(MsFlags::MS_BIND) && flags.contains(MsFlags::MS_RDONLY) {
            // A bind mount ignores MS_RDONLY until remounted.
            let _ = nix::mount::mount(
                None::<&str>,
                target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            );
        }
    }
    Ok(())
}

/// Give every file of a prepared rootfs snapshot the owner it has inside a user namespace
/// with these mappings: an id `i` inside a mapping becomes `host_id + (i - container_id)`;
/// ids no mapping covers stay as they are (the container sees them as the overflow id).
/// Symlinks are changed themselves and never followed; set-id bits, which chown clears,
/// are restored. On overlayfs this copies every file up into the container's layer, as
/// containerd 1.6's remapped snapshots do.
pub(crate) fn remap_owners(
    mounts: &[Mount],
    target: &Path,
    uids: &[crate::IdMapping],
    gids: &[crate::IdMapping],
) -> Result<()> {
    std::fs::create_dir_all(target)
        .map_err(|e| BackendError::io(format!("creating {}", target.display()), e))?;
    let result = mount_all(mounts, target).and_then(|()| {
        let map = |maps: &[crate::IdMapping], id: u32| {
            maps.iter()
                .find(|m| id >= m.container_id && id - m.container_id < m.size)
                .map_or(id, |m| m.host_id + (id - m.container_id))
        };
        let mut pending = vec![target.to_path_buf()];
        while let Some(path) = pending.pop() {
            let io =
                |e: std::io::Error| BackendError::io(format!("remapping {}", path.display()), e);
            let meta = std::fs::symlink_metadata(&path).map_err(io)?;
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            let (uid, gid) = (map(uids, meta.uid()), map(gids, meta.gid()));
            if (uid, gid) != (meta.uid(), meta.gid()) {
                std::os::unix::fs::lchown(&path, Some(uid), Some(gid)).map_err(io)?;
                if meta.is_file() && meta.mode() & 0o6000 != 0 {
                    std::fs::set_permissions(
                        &path,
                        std::fs::Permissions::from_mode(meta.mode() & 0o7777),
                    )
                    .map_err(io)?;
                }
            }
            if meta.is_dir() {
                for entry in std::fs::read_dir(&path).map_err(io)? {
                    pending.push(entry.map_err(io)?.path());
                }
            }
        }
        Ok(())
    });
    let _ = nix::mount::umount2(target, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir(target);
    result
}

/// Read `path` under `root` only if no component of it is a symlink, so an image cannot
/// make crius read a host file.
fn read_inside(root: &Path, path: &str) -> Option<Vec<u8>> {
    let mut current = PathBuf::from(root);
    for component in Path::new(path).components() {
        match component {
            std::path::Component::Normal(part) => current.push(part),
            std::path::Component::RootDir => continue,
            _ => return None,
        }
        let meta = std::fs::symlink_metadata(&current).ok()?;
        if meta.file_type().is_symlink() {
            return None;
        }
    }
    std::fs::read(&current).ok()
}
