//! Applying a layer while it downloads.
//!
//! containerd's Diff service can only apply a layer that is already in the content store, so a
//! pull through it costs download + content write + unpack one after the other. crius runs on
//! the same node as containerd, as root, so for the overlayfs snapshotter it writes the layer
//! into the prepared snapshot itself, from the same bytes that stream into the content store:
//! a first layer goes into the snapshot's bind-mounted directory, a layer on top of a parent
//! into the overlay's `upperdir`, with OCI whiteouts turned into overlayfs ones (`.wh.NAME`
//! becomes a 0/0 character device, `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr).
//!
//! The uncompressed stream is hashed on the way, and the caller commits the snapshot only if
//! that hash is the layer's diff id from the image config. Anything this module cannot do
//! (another snapshotter's mounts, zstd layers) is left to the Diff service.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use bytes::{Buf, Bytes};
use containerd_client::types::Mount;
use sha2::{Digest, Sha256};
use tar::EntryType;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Where a prepared snapshot's files are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Root {
    /// A snapshot without a parent: a plain directory (bind mount source).
    Plain(PathBuf),
    /// A snapshot on top of parents: the overlay's upper directory, where deletions are
    /// recorded as overlayfs whiteouts.
    Upper(PathBuf),
}

impl Root {
    /// The directory to write into, from the mounts `Snapshots.Prepare` returned; `None`
    /// when they are not the overlayfs snapshotter's single bind or overlay mount.
    pub(crate) fn from_mounts(mounts: &[Mount]) -> Option<Root> {
        let [mount] = mounts else {
            return None;
        };
        let root = match mount.r#type.as_str() {
            "bind" => Root::Plain(PathBuf::from(&mount.source)),
            "overlay" => Root::Upper(PathBuf::from(
                mount
                    .options
                    .iter()
                    .find_map(|o| o.strip_prefix("upperdir="))?,
            )),
            _ => return None,
        };
        root.dir().is_absolute().then_some(root)
    }

    fn dir(&self) -> &Path {
        match self {
            Root::Plain(dir) | Root::Upper(dir) => dir,
        }
    }
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
}

impl Compression {
    /// The compression of a layer media type this module applies; `None` for the others
    /// (zstd), which go through the Diff service.
    pub(crate) fn of(media_type: &str) -> Option<Compression> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Some(Compression::Gzip),
            _ => None,
        }
    }
}

/// A blocking reader over chunks sent from async code; ends when the sender is dropped.
pub(crate) struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl ChannelReader {
    pub(crate) fn new(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Self {
        ChannelReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// Counts, and when asked hashes, everything read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Option<Sha256>,
    bytes: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buf[..n]);
        }
        self.bytes += n as u64;
        Ok(n)
    }
}

/// What applying a layer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Applied {
    /// `sha256:…` of the uncompressed tar stream; `None` for an uncompressed layer, whose
    /// stream is the blob itself and so is checked by the content store against the layer
    /// digest (the caller checks that digest is the diff id).
    pub diff_id: Option<String>,
    /// Its length.
    pub bytes: u64,
}

/// Write the layer read from `blob` into `root`. Blocking: run it on a blocking thread.
/// The whole input is read (also past the tar's end), so a diff id covers every byte.
pub(crate) fn apply_layer<R: Read>(
    blob: R,
    compression: Compression,
    root: &Root,
) -> io::Result<Applied> {
    match compression {
        Compression::None => apply_tar(blob, root, false).map(|(applied, _)| applied),
        Compression::Gzip => {
            let gunzip = flate2::read::MultiGzDecoder::new(blob);
            let (applied, decoder) = apply_tar(gunzip, root, true)?;
            // Bytes after the gzip stream (there should be none) are read so the sender
            // never waits on a reader that stopped.
            io::copy(&mut decoder.into_inner(), &mut io::sink())?;
            Ok(applied)
        }
    }
}

fn apply_tar<R: Read>(input: R, root: &Root, hash: bool) -> io::Result<(Applied, R)> {
    let mut archive = tar::Archive::new(HashingReader {
        inner: input,
        hasher: hash.then(Sha256::new),
        bytes: 0,
    });
    // Owners before modes, so set-id bits survive; xattrs (file capabilities) after both.
    archive.set_preserve_ownerships(true);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    let mut directories: Vec<(PathBuf, filetime::FileTime)> = Vec::new();
    let mut opaque: HashSet<PathBuf> = HashSet::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let relative = clean_path(&entry.path()?)?;
        let Some(relative) = relative else {
            continue; // the root itself ("./")
        };
        let name = relative.file_name().unwrap_or_default();
        let parent = relative.parent().unwrap_or(Path::new(""));
        if name == OPAQUE_MARKER {
            if let Root::Upper(dir) = root {
                let target = inside(dir, parent)?;
                fs::create_dir_all(&target)?;
                opaque.insert(target);
            }
            continue;
        }
        if let Some(hidden) = name.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            let target = inside(root.dir(), &parent.join(OsStr::from_bytes(hidden)))?;
            remove_any(&target)?;
            if let Root::Upper(_) = root {
                make_node(&target, libc::S_IFCHR, 0)?;
            }
            continue;
        }
        let target = inside(root.dir(), &relative)?;
        let kind = entry.header().entry_type();
        // Whatever this layer wrote at the path before is replaced, except a directory by a
        // directory (which merges).
        if let Ok(existing) = fs::symlink_metadata(&target) {
            if !(existing.is_dir() && kind.is_dir()) {
                remove_any(&target)?;
            }
        }
        match kind {
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let header = entry.header();
                let file_type = match kind {
                    EntryType::Char => libc::S_IFCHR,
                    EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let major = header.device_major()?.unwrap_or(0);
                let minor = header.device_minor()?.unwrap_or(0);
                if let Some(dir) = target.parent() {
                    fs::create_dir_all(dir)?;
                }
                make_node(&target, file_type, libc::makedev(major, minor))?;
                let mode = header.mode()? & 0o7777;
                let (uid, gid) = (header.uid()?, header.gid()?);
                own(&target, uid, gid)?;
                fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
            }
            _ => {
                if kind.is_dir() {
                    if let Ok(mtime) = entry.header().mtime() {
                        let seconds = i64::try_from(mtime).unwrap_or(i64::MAX);
                        directories.push((
                            target.clone(),
                            filetime::FileTime::from_unix_time(seconds, 0),
                        ));
                    }
                }
                if !entry.unpack_in(root.dir())? {
                    return Err(invalid(format!(
                        "layer entry {} lies outside the layer",
                        relative.display()
                    )));
                }
            }
        }
    }
    for dir in &opaque {
        xattr::set(dir, OPAQUE_XATTR, b"y")?;
    }
    // Directory times last: writing their entries moved them.
    for (dir, mtime) in directories.iter().rev() {
        filetime::set_symlink_file_times(dir, *mtime, *mtime)?;
    }
    let mut hashing = archive.into_inner();
    io::copy(&mut hashing, &mut io::sink())?;
    let applied = Applied {
        diff_id: hashing
            .hasher
            .map(|h| format!("sha256:{}", hex::encode(h.finalize()))),
        bytes: hashing.bytes,
    };
    Ok((applied, hashing.inner))
}

/// The entry's path as plain relative components; `None` for the root itself. `..` is
/// refused: a layer only ever names paths inside itself.
fn clean_path(path: &Path) -> io::Result<Option<PathBuf>> {
    let mut clean = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Normal(part) => clean.push(part),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                return Err(invalid(format!(
                    "layer entry {} climbs out of the layer",
                    path.display()
                )))
            }
        }
    }
    Ok((!clean.as_os_str().is_empty()).then_some(clean))
}

/// `root/relative`, refusing a path whose directories pass through a symlink (which could
/// point anywhere on the host).
fn inside(root: &Path, relative: &Path) -> io::Result<PathBuf> {
    let mut path = root.to_path_buf();
    let mut parts = relative.components().peekable();
    while let Some(part) = parts.next() {
        path.push(part);
        if parts.peek().is_some() {
            if let Ok(meta) = fs::symlink_metadata(&path) {
                if meta.file_type().is_symlink() {
                    return Err(invalid(format!(
                        "layer entry {} passes through the symlink {}",
                        relative.display(),
                        path.display()
                    )));
                }
            }
        }
    }
    Ok(path)
}

fn remove_any(path: &Path) -> io::Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn make_node(path: &Path, file_type: libc::mode_t, device: libc::dev_t) -> io::Result<()> {
    let kind = nix::sys::stat::SFlag::from_bits_truncate(file_type);
    nix::sys::stat::mknod(path, kind, nix::sys::stat::Mode::empty(), device)
        .map_err(io::Error::from)
}

fn own(path: &Path, uid: u64, gid: u64) -> io::Result<()> {
    let uid = u32::try_from(uid).map_err(|_| invalid(format!("uid {uid} is out of range")))?;
    let gid = u32::try_from(gid).map_err(|_| invalid(format!("gid {gid} is out of range")))?;
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    fn header(path: &str, kind: EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_path(path).unwrap();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        // Foreign owners need root to set; otherwise the test's own.
        let (uid, gid) = if is_root() {
            (1000, 1001)
        } else {
            (
                u64::from(nix::unistd::geteuid().as_raw()),
                u64::from(nix::unistd::getegid().as_raw()),
            )
        };
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        h
    }

    fn layer(entries: &[(&str, EntryType, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut h = header(path, *kind, data.len() as u64, 0o640);
            if *kind == EntryType::Symlink || *kind == EntryType::Link {
                h.set_size(0);
                h.set_link_name(std::str::from_utf8(data).unwrap()).unwrap();
                h.set_cksum();
                builder.append(&h, io::empty()).unwrap();
            } else {
                builder.append(&h, *data).unwrap();
            }
        }
        builder.into_inner().unwrap()
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "crius-apply-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn roots_come_from_bind_and_overlay_mounts_only() {
        let bind = Mount {
            r#type: "bind".into(),
            source: "/var/lib/c/snapshots/1/fs".into(),
            target: String::new(),
            options: vec!["rw".into(), "rbind".into()],
        };
        assert_eq!(
            Root::from_mounts(std::slice::from_ref(&bind)),
            Some(Root::Plain("/var/lib/c/snapshots/1/fs".into()))
        );
        let overlay = Mount {
            r#type: "overlay".into(),
            source: "overlay".into(),
            target: String::new(),
            options: vec![
                "workdir=/s/2/work".into(),
                "upperdir=/s/2/fs".into(),
                "lowerdir=/s/1/fs".into(),
            ],
        };
        assert_eq!(
            Root::from_mounts(std::slice::from_ref(&overlay)),
            Some(Root::Upper("/s/2/fs".into()))
        );
        let other = Mount {
            r#type: "btrfs".into(),
            ..bind.clone()
        };
        assert_eq!(Root::from_mounts(&[other]), None);
        assert_eq!(Root::from_mounts(&[bind.clone(), bind]), None);
        assert_eq!(
            Compression::of("application/vnd.oci.image.layer.v1.tar+zstd"),
            None
        );
    }

    #[test]
    fn gzip_layers_are_hashed_to_their_diff_id_and_unpack_like_plain_ones() {
        let raw = layer(&[
            ("etc/", EntryType::Directory, b""),
            ("etc/motd", EntryType::Regular, b"hello\n"),
        ]);
        let expected = format!("sha256:{}", hex::encode(Sha256::digest(&raw)));
        let plain = scratch("plain");
        let applied =
            apply_layer(&raw[..], Compression::None, &Root::Plain(plain.clone())).unwrap();
        assert_eq!(
            applied.diff_id, None,
            "the content store hashes an uncompressed layer"
        );
        assert_eq!(applied.bytes, raw.len() as u64);
        assert_eq!(fs::read(plain.join("etc/motd")).unwrap(), b"hello\n");

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &raw).unwrap();
        let gz = gz.finish().unwrap();
        let zipped = scratch("gzip");
        let applied =
            apply_layer(&gz[..], Compression::Gzip, &Root::Plain(zipped.clone())).unwrap();
        assert_eq!(applied.diff_id, Some(expected));
        assert_eq!(applied.bytes, raw.len() as u64);
        assert_eq!(fs::read(zipped.join("etc/motd")).unwrap(), b"hello\n");
        let _ = fs::remove_dir_all(plain);
        let _ = fs::remove_dir_all(zipped);
    }

    #[test]
    fn metadata_links_and_times_are_kept() {
        let raw = layer(&[
            ("bin/", EntryType::Directory, b""),
            ("bin/tool", EntryType::Regular, b"#!/bin/sh\n"),
            ("bin/alias", EntryType::Symlink, b"tool"),
            ("bin/hard", EntryType::Link, b"bin/tool"),
        ]);
        let dir = scratch("meta");
        apply_layer(&raw[..], Compression::None, &Root::Plain(dir.clone())).unwrap();
        let tool = fs::metadata(dir.join("bin/tool")).unwrap();
        assert_eq!(tool.mode() & 0o7777, 0o640);
        assert_eq!(tool.mtime(), 1_600_000_000);
        assert_eq!(tool.nlink(), 2);
        assert_eq!(
            fs::read_link(dir.join("bin/alias")).unwrap(),
            Path::new("tool")
        );
        // The directory's time survives the files written into it.
        assert_eq!(
            fs::metadata(dir.join("bin")).unwrap().mtime(),
            1_600_000_000
        );
        if is_root() {
            assert_eq!((tool.uid(), tool.gid()), (1000, 1001));
            let link = fs::symlink_metadata(dir.join("bin/alias")).unwrap();
            assert_eq!((link.uid(), link.gid()), (1000, 1001));
        }
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts_in_an_upper_dir() {
        if !is_root() {
            eprintln!("skipped: mknod of a whiteout needs root");
            return;
        }
        let raw = layer(&[
            ("etc/", EntryType::Directory, b""),
            ("etc/.wh.passwd", EntryType::Regular, b""),
            ("var/", EntryType::Directory, b""),
            ("var/.wh..wh..opq", EntryType::Regular, b""),
            ("var/new", EntryType::Regular, b"n"),
        ]);
        let upper = scratch("upper");
        apply_layer(&raw[..], Compression::None, &Root::Upper(upper.clone())).unwrap();
        let whiteout = fs::symlink_metadata(upper.join("etc/passwd")).unwrap();
        assert!(whiteout.file_type().is_char_device());
        assert_eq!(whiteout.rdev(), 0);
        assert!(!upper.join("etc/.wh.passwd").exists());
        assert_eq!(
            xattr::get(upper.join("var"), OPAQUE_XATTR).unwrap(),
            Some(b"y".to_vec())
        );
        assert_eq!(fs::read(upper.join("var/new")).unwrap(), b"n");

        // In a first layer there is nothing below to hide: no whiteout files at all.
        let plain = scratch("plain-wh");
        apply_layer(&raw[..], Compression::None, &Root::Plain(plain.clone())).unwrap();
        assert!(fs::symlink_metadata(plain.join("etc/passwd")).is_err());
        assert_eq!(xattr::get(plain.join("var"), OPAQUE_XATTR).unwrap(), None);
        let _ = fs::remove_dir_all(upper);
        let _ = fs::remove_dir_all(plain);
    }

    #[test]
    fn hostile_paths_are_refused() {
        let dir = scratch("hostile");
        let outside = scratch("outside");
        // A symlink to a host directory, then a file "through" it.
        let escape = outside.to_string_lossy().into_owned();
        let raw = layer(&[
            ("link", EntryType::Symlink, escape.as_bytes()),
            ("link/owned", EntryType::Regular, b"x"),
        ]);
        let err = apply_layer(&raw[..], Compression::None, &Root::Plain(dir.clone())).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert!(!outside.join("owned").exists());
        // A whiteout through the same symlink must not delete on the host either.
        fs::write(outside.join("victim"), b"v").unwrap();
        let raw = layer(&[("link/.wh.victim", EntryType::Regular, b"")]);
        assert!(apply_layer(&raw[..], Compression::None, &Root::Plain(dir.clone())).is_err());
        assert!(outside.join("victim").exists());
        // `..` in a path.
        let mut h = header("x", EntryType::Regular, 1, 0o644);
        h.as_gnu_mut().unwrap().name[..6].copy_from_slice(b"../esc");
        h.set_cksum();
        let mut builder = tar::Builder::new(Vec::new());
        builder.append(&h, &b"e"[..]).unwrap();
        let raw = builder.into_inner().unwrap();
        let err = apply_layer(&raw[..], Compression::None, &Root::Plain(dir.clone())).unwrap_err();
        assert!(err.to_string().contains("climbs out"), "{err}");
        let _ = fs::remove_dir_all(dir);
        let _ = fs::remove_dir_all(outside);
    }

    #[test]
    fn channel_reader_reads_chunks_until_the_sender_goes() {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            ChannelReader::new(rx).read_to_end(&mut all).map(|_| all)
        });
        tx.blocking_send(Bytes::from_static(b"abc")).unwrap();
        tx.blocking_send(Bytes::new()).unwrap();
        tx.blocking_send(Bytes::from_static(b"def")).unwrap();
        drop(tx);
        assert_eq!(reader.join().unwrap().unwrap(), b"abcdef");
    }
}
