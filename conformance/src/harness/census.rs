//! A census of everything a pod can leave behind on a crius node running on a private
//! containerd: taken before a test (after a warm-up pod, so every lazily made directory
//! exists) and after it, the two must be equal. Each count is read from where the object
//! lives (the kernel, containerd, crius's directories), never from crius's own answers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::containerd::{Containerd, NetworkInfo};
use super::crius::Crius;
use super::util::{entries_of, mounts_under, processes_mentioning};

/// What was found, by kind: each kind lists its objects by name, sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Census {
    pub kinds: BTreeMap<&'static str, Vec<String>>,
}

/// Where to look.
pub struct Scope<'a> {
    pub crius: &'a Crius,
    pub containerd: &'a Containerd,
    /// containerd namespace of crius's objects.
    pub namespace: &'a str,
    /// The pods' CNI network (bridge and host-local IPAM directory).
    pub network: &'a NetworkInfo,
}

impl Census {
    pub fn take(scope: &Scope<'_>) -> Result<Census> {
        let mut kinds = BTreeMap::new();
        let crius = scope.crius;
        // Records, FIFOs, netns pins, CNI results, pod files: every path under crius's own
        // directories (the netns pins are files there, and mounts too).
        kinds.insert("files under crius's root", tree(&crius.root())?);
        kinds.insert("files under crius's state", tree(&crius.state())?);
        kinds.insert(
            "mounts under crius's directory",
            names(mounts_under(crius.dir())?),
        );
        let ipam = crius.dir().join("cni-ipam").join(&scope.network.name);
        kinds.insert(
            "IPAM allocations",
            names(entries_of(&ipam)?)
                .into_iter()
                .filter(|name| name.parse::<std::net::IpAddr>().is_ok())
                .collect(),
        );
        let brif = Path::new("/sys/class/net")
            .join(&scope.network.bridge)
            .join("brif");
        kinds.insert("veths on the pods' bridge", names(entries_of(&brif)?));
        kinds.insert(
            "cgroups under crius",
            crius_cgroups(Path::new("/sys/fs/cgroup"))?,
        );
        kinds.insert("iptables rules of CNI networks", cni_nat_rules()?);
        let socket = scope.containerd.socket().display().to_string();
        let own = crius.pid();
        kinds.insert(
            "shim and container processes",
            processes_mentioning(&socket)
                .into_iter()
                .filter(|pid| Some(*pid) != own)
                .map(process_name)
                .collect(),
        );
        for (kind, args) in [
            ("containerd containers", &["containers", "ls", "-q"][..]),
            ("containerd tasks", &["tasks", "ls", "-q"][..]),
            ("containerd snapshots", &["snapshots", "ls"][..]),
            ("containerd leases", &["leases", "ls", "-q"][..]),
        ] {
            let listed = scope.containerd.ctr_ns(scope.namespace, args)?;
            let mut lines: Vec<String> = listed
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("KEY") && !l.starts_with("TASK"))
                // ctr pads its columns to the longest entry: compare the words only.
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect();
            lines.sort();
            kinds.insert(kind, lines);
        }
        for list in kinds.values_mut() {
            list.sort();
        }
        Ok(Census { kinds })
    }

    /// What `after` has that `self` (the baseline) has not, and what it lost, by kind.
    pub fn leaks_since(&self, after: &Census) -> Vec<String> {
        let mut leaks = Vec::new();
        for (kind, before) in &self.kinds {
            let now = after.kinds.get(kind).cloned().unwrap_or_default();
            let extra: Vec<&String> = now.iter().filter(|x| !before.contains(x)).collect();
            let gone: Vec<&String> = before.iter().filter(|x| !now.contains(x)).collect();
            if !extra.is_empty() {
                leaks.push(format!("{kind}: {} left: {extra:?}", extra.len()));
            }
            if !gone.is_empty() {
                leaks.push(format!(
                    "{kind}: {} gone that were there: {gone:?}",
                    gone.len()
                ));
            }
        }
        leaks
    }
}

/// Every path below `dir` (relative, sorted). A missing `dir` is an error.
fn tree(dir: &Path) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in entries_of(&next)? {
            let kind = std::fs::symlink_metadata(&entry)
                .with_context(|| format!("census: {}", entry.display()))?;
            if kind.is_dir() {
                pending.push(entry.clone());
            }
            found.push(
                entry
                    .strip_prefix(dir)
                    .unwrap_or(&entry)
                    .display()
                    .to_string(),
            );
        }
    }
    found.sort();
    Ok(found)
}

fn names(paths: Vec<PathBuf>) -> Vec<String> {
    paths
        .iter()
        .map(|p| {
            p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        })
        .collect()
}

/// The cgroups crius makes, in every hierarchy under `root` (each v1 controller,
/// `unified`, or a v2 root), as `hierarchy/path`: with the cgroupfs driver everything below
/// a `crius` directory (its default parent), with the systemd driver its scopes
/// (`crius-<id>.scope`) in whatever slice they sit.
fn crius_cgroups(root: &Path) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for hierarchy in entries_of(root)? {
        if !std::fs::symlink_metadata(&hierarchy).is_ok_and(|k| k.is_dir()) {
            continue;
        }
        // (directory, whether it is below a `crius` parent)
        let mut pending = vec![(hierarchy, false)];
        while let Some((dir, below_crius)) = pending.pop() {
            let Ok(read) = std::fs::read_dir(&dir) else {
                // A cgroup can vanish while it is walked.
                continue;
            };
            for entry in read.flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = entry.path();
                let scope = name.starts_with("crius-") && name.ends_with(".scope");
                let parent = name == "crius" && dir.parent() == Some(root);
                if below_crius || scope {
                    found.push(
                        path.strip_prefix(root)
                            .unwrap_or(&path)
                            .display()
                            .to_string(),
                    );
                }
                pending.push((path, below_crius || parent));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The nat table's lines of CNI chains (portmap's per-pod DNAT chains, the bridge
/// plugin's per-pod masquerade chains and the jumps to them), without packet counters.
fn cni_nat_rules() -> Result<Vec<String>> {
    let out = std::process::Command::new("iptables-save")
        .args(["-t", "nat"])
        .output()
        .context("census: running iptables-save")?;
    anyhow::ensure!(
        out.status.success(),
        "census: iptables-save failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut rules: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("CNI-"))
        .map(|l| match l.rfind(" [") {
            Some(counters) if l.starts_with(':') => l[..counters].to_string(),
            _ => l.to_string(),
        })
        .collect();
    rules.sort();
    Ok(rules)
}

/// `pid (comm)`: which process, for the report.
fn process_name(pid: u32) -> String {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    format!("{pid} ({})", comm.trim())
}

/// Open file descriptors of a process.
pub fn open_fds(pid: u32) -> Result<usize> {
    Ok(entries_of(Path::new(&format!("/proc/{pid}/fd")))?.len())
}

/// Resident set size of a process, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaks_since_names_what_appeared_and_what_vanished() {
        let mut before = Census::default();
        before.kinds.insert("netns", vec!["a".into()]);
        before.kinds.insert("cgroups", vec![]);
        let mut after = before.clone();
        assert!(before.leaks_since(&after).is_empty());
        after.kinds.insert("cgroups", vec!["memory/crius/x".into()]);
        after.kinds.insert("netns", vec![]);
        let leaks = before.leaks_since(&after);
        assert_eq!(leaks.len(), 2, "{leaks:?}");
        assert!(leaks[0].starts_with("cgroups: 1 left"));
        assert!(leaks[1].starts_with("netns: 1 gone"));
    }

    #[test]
    fn crius_cgroups_of_both_drivers_are_counted_and_nothing_else() -> Result<()> {
        let root = tempfile_dir()?;
        for dir in [
            // cgroupfs: the default parent `crius` in each v1 controller and in unified
            "memory/crius/aaa",
            "cpu,cpuacct/crius/aaa",
            "unified/crius/bbb",
            // systemd: crius's scopes in kubelet's pod slices
            "memory/kubepods.slice/kubepods-pod1.slice/crius-ccc.scope",
            "pids/system.slice/crius-ddd.scope",
            // not crius's
            "memory/kubepods.slice/kubepods-pod1.slice/cri-containerd-eee.scope",
            "memory/system.slice/crius.service",
            "memory/other/crius",
        ] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        let found = crius_cgroups(&root)?;
        std::fs::remove_dir_all(&root)?;
        assert_eq!(
            found,
            vec![
                "cpu,cpuacct/crius/aaa",
                "memory/crius/aaa",
                "memory/kubepods.slice/kubepods-pod1.slice/crius-ccc.scope",
                "pids/system.slice/crius-ddd.scope",
                "unified/crius/bbb",
            ]
        );
        Ok(())
    }

    #[test]
    fn tree_lists_nested_paths_and_refuses_a_missing_root() -> Result<()> {
        let dir = tempfile_dir()?;
        std::fs::create_dir_all(dir.join("a/b"))?;
        std::fs::write(dir.join("a/b/c"), "x")?;
        assert_eq!(tree(&dir)?, vec!["a", "a/b", "a/b/c"]);
        std::fs::remove_dir_all(&dir)?;
        assert!(tree(&dir).is_err());
        Ok(())
    }

    fn tempfile_dir() -> Result<PathBuf> {
        let dir = std::env::temp_dir().join(format!(
            "crius-census-{}",
            super::super::util::random_hex(8)
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }
}
