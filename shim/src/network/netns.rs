//! Network namespaces crius makes for pods: created in a dedicated thread and kept alive by a
//! bind mount on `<state>/netns/<id>`, so they outlive every process in them and can be
//! handed to CNI and to the pause container by path.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

/// Create a network namespace with `lo` up and pin it at `path` (an empty file is created
/// for the bind mount). On failure nothing is left behind.
pub fn create(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if is_netns(path) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} is already a network namespace", path.display()),
        ));
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let target = path.to_path_buf();
    // unshare() changes the calling thread only; a thread of its own keeps the runtime's
    // threads in the host namespace, and it ends (taking its netns reference) right after.
    let made = std::thread::Builder::new()
        .name("crius-netns".to_string())
        .spawn(move || -> io::Result<()> {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            loopback_up()?;
            let tid = nix::unistd::gettid();
            let own = format!("/proc/self/task/{tid}/ns/net");
            nix::mount::mount(
                Some(own.as_str()),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(io::Error::from)
        })?
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the netns thread panicked")));
    if let Err(e) = made {
        let _ = remove(path);
        return Err(e);
    }
    Ok(())
}

/// Pin an existing network namespace (`source`, e.g. `/proc/<pid>/ns/net` of a pause
/// process that made its own) at `path` and bring its `lo` up. Used for pods with a user
/// namespace, whose network namespace must belong to that user namespace. On failure
/// nothing is left behind.
pub fn pin(source: &Path, path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let pinned = nix::mount::mount(
        Some(source),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(io::Error::from)
    .and_then(|()| {
        let target = std::fs::File::open(path)?;
        // setns() moves the calling thread only; a thread of its own does it and ends.
        std::thread::Builder::new()
            .name("crius-netns".to_string())
            .spawn(move || -> io::Result<()> {
                nix::sched::setns(&target, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                loopback_up()
            })?
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the netns thread panicked")))
    });
    if let Err(e) = pinned {
        let _ = remove(path);
        return Err(e);
    }
    Ok(())
}

/// Unmount and delete a pinned namespace. Idempotent: a missing or unmounted file is fine.
pub fn remove(path: &Path) -> io::Result<()> {
    // Every layer, in case a retried create stacked mounts.
    while nix::mount::umount2(path, MntFlags::MNT_DETACH).is_ok() {}
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Is `path` a mounted namespace file (and not just the empty mount point)?
pub fn is_netns(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

/// Bring up `lo` in the calling thread's network namespace. The CNI `loopback` plugin cannot
/// be chained after `bridge`, so crius does what containerd does and sets it up itself.
fn loopback_up() -> io::Result<()> {
    let (socket, mut request) = loopback_request()?;
    // SAFETY: SIOCGIFFLAGS reads ifr_name and writes ifru_flags of the ifreq we own.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just filled ifru_flags, the union member SIOCGIFFLAGS uses.
    unsafe { request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads ifr_name and ifru_flags of the ifreq we own.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An `AF_INET` socket to issue interface ioctls on, and an ifreq naming `lo`.
fn loopback_request() -> io::Result<(OwnedFd, libc::ifreq)> {
    // SAFETY: socket() has no memory-safety preconditions; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a socket we just opened and nobody else owns; OwnedFd closes it once.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    Ok((socket, request))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_and_remove_a_namespace() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netns").join("pod");
        create(&path).unwrap();
        assert!(is_netns(&path));
        // lo is up inside.
        let ns = std::fs::File::open(&path).unwrap();
        let lo_up = std::thread::spawn(move || {
            nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).unwrap();
            let (socket, mut request) = loopback_request().unwrap();
            // SAFETY: SIOCGIFFLAGS writes ifru_flags of the ifreq we own.
            let got = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) };
            assert!(got >= 0);
            // SAFETY: filled by SIOCGIFFLAGS just above.
            let flags = unsafe { request.ifr_ifru.ifru_flags };
            flags & libc::IFF_UP as libc::c_short != 0
        })
        .join()
        .unwrap();
        assert!(lo_up);
        assert!(
            create(&path).is_err(),
            "a second create on a live netns must fail"
        );
        remove(&path).unwrap();
        assert!(!path.exists());
        remove(&path).unwrap();
    }
}
