//! Reading overlay mounts out of a `/proc/<pid>/mountinfo` file.

use std::path::Path;

/// Every overlay mount in `mountinfo` text that has an upper directory, as (mount point,
/// upper directory). A line reads
/// `… <mount point> <options> … - overlay overlay rw,lowerdir=…,upperdir=…,workdir=…`.
pub fn overlay_upper_dirs(mountinfo: &str) -> impl Iterator<Item = (&str, &Path)> {
    mountinfo.lines().filter_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        let mount_point = mount.split(' ').nth(4)?;
        let mut fs = fs.split(' ');
        if fs.next()? != "overlay" {
            return None;
        }
        let upper = fs
            .nth(1)?
            .split(',')
            .find_map(|o| o.strip_prefix("upperdir="))?;
        Some((mount_point, Path::new(upper)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_mounts_with_an_upper_directory_only() {
        let text = "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n\
                    301 22 0:90 / /run/rootfs rw - overlay overlay rw,lowerdir=/l1:/l2,upperdir=/s/7/fs,workdir=/s/7/work\n\
                    302 22 0:91 / /ro rw - overlay overlay ro,lowerdir=/l1:/l2\n";
        let found: Vec<_> = overlay_upper_dirs(text).collect();
        assert_eq!(found, [("/run/rootfs", Path::new("/s/7/fs"))]);
    }
}
