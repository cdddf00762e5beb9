//! A sandbox's files on the host: resolv.conf, hostname, hosts, and the pod's /dev/shm.

use std::path::Path;

use nix::mount::{MntFlags, MsFlags};

use crate::domain::SandboxConfig;
use crate::error::{Error, Result};

pub const RESOLV_CONF: &str = "resolv.conf";
pub const HOSTNAME: &str = "hostname";
pub const HOSTS: &str = "hosts";

/// Size of a pod's /dev/shm, as the container runtimes give by default.
const SHM_SIZE: &str = "size=65536k";

fn write(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents)
        .map_err(|e| Error::internal(format!("writing {}", path.display()), e))
}

pub fn resolv_conf(config: &SandboxConfig) -> Result<String> {
    match &config.dns {
        Some(dns)
            if !(dns.servers.is_empty() && dns.searches.is_empty() && dns.options.is_empty()) =>
        {
            let mut out = String::new();
            if !dns.searches.is_empty() {
                out.push_str(&format!("search {}\n", dns.searches.join(" ")));
            }
            for server in &dns.servers {
                out.push_str(&format!("nameserver {server}\n"));
            }
            if !dns.options.is_empty() {
                out.push_str(&format!("options {}\n", dns.options.join(" ")));
            }
            Ok(out)
        }
        // No DNS config: the pod uses the host's resolver settings.
        _ => std::fs::read_to_string("/etc/resolv.conf").or_else(|_| Ok(String::new())),
    }
}

pub fn write_sandbox_files(
    root: &Path,
    config: &SandboxConfig,
    host_network: bool,
    shm: Option<&Path>,
) -> Result<()> {
    std::fs::create_dir_all(root)
        .map_err(|e| Error::internal(format!("creating {}", root.display()), e))?;
    write(&root.join(RESOLV_CONF), &resolv_conf(config)?)?;
    let hostname = if host_network || config.hostname.is_empty() {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        config.hostname.clone()
    };
    write(&root.join(HOSTNAME), &format!("{hostname}\n"))?;
    let hosts = if host_network {
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n".to_string()
    };
    write(&root.join(HOSTS), &hosts)?;
    if let Some(shm) = shm {
        std::fs::create_dir_all(shm)
            .map_err(|e| Error::internal(format!("creating {}", shm.display()), e))?;
        nix::mount::mount(
            Some("shm"),
            shm,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(format!("mode=1777,{SHM_SIZE}").as_str()),
        )
        .map_err(|e| Error::internal(format!("mounting shm at {}", shm.display()), e))?;
    }
    Ok(())
}

/// Unmount the pod's shm (idempotent).
pub fn release_shm(state: &Path) {
    let shm = state.join("shm");
    // Unmount every layer, in case the mount was stacked by a retried call.
    while nix::mount::umount2(&shm, MntFlags::MNT_DETACH).is_ok() {}
}

/// Removes the pod's directories (and unmounts its shm first). A directory that is already
/// gone is not an error.
pub fn remove_dirs(root: &Path, state: &Path) -> Result<()> {
    release_shm(state);
    crate::cleanup::remove_dir(root)?;
    crate::cleanup::remove_dir(state)
}
