use std::io;
use std::path::{Path, PathBuf};

use super::cgroupfs::normalize_absolute;
use super::{CgroupError, Result};

/// How cgroups are mounted under the cgroup root (`/sys/fs/cgroup` outside tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLayout {
    /// Only v1 controller hierarchies (`<root>/memory`, `<root>/cpu`, …).
    V1 { root: PathBuf },
    /// One unified v2 hierarchy at the root.
    V2 { root: PathBuf },
    /// v1 controllers plus a v2 hierarchy (usually `<root>/unified`) that holds no resource
    /// controllers; limits and usage live in the v1 hierarchies.
    Hybrid { root: PathBuf, unified: PathBuf },
}

/// v1 controller directories crius reads; any of them marks a v1 mount.
const V1_MARKERS: [&str; 4] = ["memory", "cpu", "cpuacct", "cpu,cpuacct"];

/// The kernel reports "no limit" in v1 as the largest page-aligned `i64`
/// (9223372036854771712 with 4 KiB pages); anything this large is unlimited.
const V1_UNLIMITED_THRESHOLD: u64 = (i64::MAX as u64) & !0xffff;

impl CgroupLayout {
    /// Detects the layout from what is mounted under `root`.
    ///
    /// Files decide, not `statfs` magic numbers, so fixture trees in tests are detected the
    /// same way as the real mounts: only a cgroup2 root has `cgroup.controllers`.
    pub fn detect(root: &Path) -> Result<Self> {
        if root.join("cgroup.controllers").is_file() {
            return Ok(CgroupLayout::V2 {
                root: root.to_path_buf(),
            });
        }
        let has_v1 = V1_MARKERS.iter().any(|c| root.join(c).is_dir());
        if !has_v1 {
            return Err(CgroupError::NoCgroupFs {
                root: root.to_path_buf(),
            });
        }
        let unified = root.join("unified");
        if unified.join("cgroup.controllers").is_file() {
            return Ok(CgroupLayout::Hybrid {
                root: root.to_path_buf(),
                unified,
            });
        }
        Ok(CgroupLayout::V1 {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        match self {
            CgroupLayout::V1 { root } | CgroupLayout::V2 { root } => root,
            CgroupLayout::Hybrid { root, .. } => root,
        }
    }

    /// Whether resource controllers live in the v2 hierarchy.
    pub fn is_v2(&self) -> bool {
        matches!(self, CgroupLayout::V2 { .. })
    }
}

/// Resource usage of one cgroup, in the units the CRI reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupStats {
    pub memory_usage_bytes: u64,
    /// Usage minus inactive file cache: what kubelet evicts on and what `kubectl top` shows.
    pub memory_working_set_bytes: u64,
    pub memory_rss_bytes: u64,
    /// Page cache charged to the cgroup.
    pub memory_cache_bytes: u64,
    /// Page cache that is mapped into processes' address spaces.
    pub memory_mapped_file_bytes: u64,
    pub memory_page_faults: u64,
    pub memory_major_page_faults: u64,
    /// `None` when unlimited.
    pub memory_limit_bytes: Option<u64>,
    /// Cumulative CPU time of all tasks in the cgroup.
    pub cpu_usage_nanos: u64,
    /// `None` when the kernel does not count OOM kills for this cgroup.
    pub oom_kill_count: Option<u64>,
}

/// Resource limits of one cgroup; `None` where a controller is absent or a value unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupLimits {
    pub memory_limit_bytes: Option<u64>,
    /// v1 `cpu.shares`.
    pub cpu_shares: Option<u64>,
    /// v2 `cpu.weight`.
    pub cpu_weight: Option<u64>,
    pub cpu_quota_us: Option<u64>,
    pub cpu_period_us: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
}

/// What a cgroup's tasks did beyond the usage kubelet's stats calls need: the CPU split and
/// CFS throttling, and how many processes and threads it holds. Read only for the CRI
/// metrics, which kubelet scrapes far less often than it lists stats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupActivity {
    /// `None` where the kernel does not split CPU time by mode.
    pub cpu_user_nanos: Option<u64>,
    pub cpu_system_nanos: Option<u64>,
    pub cfs_periods: u64,
    pub cfs_throttled_periods: u64,
    pub cfs_throttled_nanos: u64,
    /// Processes and threads directly in this cgroup (not in cgroups below it).
    pub processes: u64,
    pub threads: u64,
}

/// Reads usage of the cgroup at `cgroup_path` (cgroupfs form, relative to the mount, as
/// [`super::CgroupDriver::filesystem_path`] returns it).
pub fn read_stats(layout: &CgroupLayout, cgroup_path: &str) -> Result<CgroupStats> {
    let relative = relative_path(cgroup_path)?;
    match layout {
        CgroupLayout::V2 { root } => read_stats_v2(&root.join(relative)),
        CgroupLayout::V1 { root } | CgroupLayout::Hybrid { root, .. } => {
            read_stats_v1(root, &relative)
        }
    }
}

/// Reads the limits set on the cgroup at `cgroup_path` (see [`read_stats`]).
pub fn read_limits(layout: &CgroupLayout, cgroup_path: &str) -> Result<CgroupLimits> {
    let relative = relative_path(cgroup_path)?;
    match layout {
        CgroupLayout::V2 { root } => read_limits_v2(&root.join(relative)),
        CgroupLayout::V1 { root } | CgroupLayout::Hybrid { root, .. } => {
            read_limits_v1(root, &relative)
        }
    }
}

/// Reads what the tasks of the cgroup at `cgroup_path` did (see [`read_stats`]).
pub fn read_activity(layout: &CgroupLayout, cgroup_path: &str) -> Result<CgroupActivity> {
    let relative = relative_path(cgroup_path)?;
    match layout {
        CgroupLayout::V2 { root } => read_activity_v2(&root.join(relative)),
        CgroupLayout::V1 { root } | CgroupLayout::Hybrid { root, .. } => {
            read_activity_v1(root, &relative)
        }
    }
}

fn relative_path(cgroup_path: &str) -> Result<PathBuf> {
    let normalized =
        normalize_absolute(cgroup_path).map_err(|reason| CgroupError::InvalidPath {
            path: cgroup_path.to_string(),
            reason,
        })?;
    Ok(PathBuf::from(normalized.trim_start_matches('/')))
}

fn read_stats_v1(root: &Path, relative: &Path) -> Result<CgroupStats> {
    let memory = v1_controller(root, &["memory"]).join(relative);
    let cpuacct = v1_controller(root, &["cpuacct", "cpu,cpuacct", "cpuacct,cpu"]).join(relative);

    let usage = read_u64(&memory.join("memory.usage_in_bytes"))?;
    let stat = read_flat_keyed(&memory.join("memory.stat"))?;
    // Hierarchical totals include child cgroups, which a container may create itself.
    let stat_value = |total: &str, local: &str| stat.get(total).or_else(|| stat.get(local));
    let inactive_file = stat_value("total_inactive_file", "inactive_file").unwrap_or(0);
    let limit = read_u64(&memory.join("memory.limit_in_bytes"))?;
    let oom_kill_count = match read_flat_keyed(&memory.join("memory.oom_control")) {
        Ok(control) => control.get("oom_kill"),
        Err(err) if err.is_not_found() => None,
        Err(err) => return Err(err),
    };

    Ok(CgroupStats {
        memory_usage_bytes: usage,
        memory_working_set_bytes: usage.saturating_sub(inactive_file),
        memory_rss_bytes: stat_value("total_rss", "rss").unwrap_or(0),
        memory_cache_bytes: stat_value("total_cache", "cache").unwrap_or(0),
        memory_mapped_file_bytes: stat_value("total_mapped_file", "mapped_file").unwrap_or(0),
        memory_page_faults: stat_value("total_pgfault", "pgfault").unwrap_or(0),
        memory_major_page_faults: stat_value("total_pgmajfault", "pgmajfault").unwrap_or(0),
        memory_limit_bytes: v1_limit(limit),
        cpu_usage_nanos: read_u64(&cpuacct.join("cpuacct.usage"))?,
        oom_kill_count,
    })
}

fn read_stats_v2(dir: &Path) -> Result<CgroupStats> {
    let usage = read_u64(&dir.join("memory.current"))?;
    let stat = read_flat_keyed(&dir.join("memory.stat"))?;
    let inactive_file = stat.get("inactive_file").unwrap_or(0);
    let cpu_stat = read_flat_keyed(&dir.join("cpu.stat"))?;
    let cpu_usage_usec = cpu_stat.get("usage_usec").unwrap_or(0);
    let oom_kill_count = match read_flat_keyed(&dir.join("memory.events")) {
        Ok(events) => events.get("oom_kill"),
        Err(err) if err.is_not_found() => None,
        Err(err) => return Err(err),
    };

    Ok(CgroupStats {
        memory_usage_bytes: usage,
        memory_working_set_bytes: usage.saturating_sub(inactive_file),
        memory_rss_bytes: stat.get("anon").unwrap_or(0),
        memory_cache_bytes: stat.get("file").unwrap_or(0),
        memory_mapped_file_bytes: stat.get("file_mapped").unwrap_or(0),
        memory_page_faults: stat.get("pgfault").unwrap_or(0),
        memory_major_page_faults: stat.get("pgmajfault").unwrap_or(0),
        memory_limit_bytes: read_max(&dir.join("memory.max"))?,
        cpu_usage_nanos: cpu_usage_usec.saturating_mul(1000),
        oom_kill_count,
    })
}

fn read_activity_v1(root: &Path, relative: &Path) -> Result<CgroupActivity> {
    let cpu = v1_controller(root, &["cpu", "cpu,cpuacct", "cpuacct,cpu"]).join(relative);
    let cpuacct = v1_controller(root, &["cpuacct", "cpu,cpuacct", "cpuacct,cpu"]).join(relative);
    // Any controller lists the same tasks; memory is the one crius always reads.
    let memory = v1_controller(root, &["memory"]).join(relative);
    // A cpu controller without CFS bandwidth control has no cpu.stat.
    let throttling = optional(read_flat_keyed(&cpu.join("cpu.stat")))?;
    let throttled = |key: &str| throttling.as_ref().and_then(|t| t.get(key)).unwrap_or(0);
    Ok(CgroupActivity {
        // In nanoseconds, unlike cpuacct.stat's clock ticks.
        cpu_user_nanos: optional(read_u64(&cpuacct.join("cpuacct.usage_user")))?,
        cpu_system_nanos: optional(read_u64(&cpuacct.join("cpuacct.usage_sys")))?,
        cfs_periods: throttled("nr_periods"),
        cfs_throttled_periods: throttled("nr_throttled"),
        cfs_throttled_nanos: throttled("throttled_time"),
        processes: count_lines(&memory.join("cgroup.procs"))?,
        threads: count_lines(&memory.join("tasks"))?,
    })
}

fn read_activity_v2(dir: &Path) -> Result<CgroupActivity> {
    let stat = read_flat_keyed(&dir.join("cpu.stat"))?;
    let micros = |key: &str| stat.get(key).map(|us| us.saturating_mul(1000));
    Ok(CgroupActivity {
        cpu_user_nanos: micros("user_usec"),
        cpu_system_nanos: micros("system_usec"),
        // Present only while the cpu controller is enabled for the cgroup.
        cfs_periods: stat.get("nr_periods").unwrap_or(0),
        cfs_throttled_periods: stat.get("nr_throttled").unwrap_or(0),
        cfs_throttled_nanos: micros("throttled_usec").unwrap_or(0),
        processes: count_lines(&dir.join("cgroup.procs"))?,
        threads: count_lines(&dir.join("cgroup.threads"))?,
    })
}

fn read_limits_v1(root: &Path, relative: &Path) -> Result<CgroupLimits> {
    let memory = v1_controller(root, &["memory"]).join(relative);
    let cpu = v1_controller(root, &["cpu", "cpu,cpuacct", "cpuacct,cpu"]).join(relative);
    let cpuset = v1_controller(root, &["cpuset"]).join(relative);

    let cpu_quota_us = match optional(read_trimmed(&cpu.join("cpu.cfs_quota_us")))? {
        None => None,
        Some(text) if text == "-1" => None,
        Some(text) => Some(parse_u64(&cpu.join("cpu.cfs_quota_us"), &text)?),
    };
    Ok(CgroupLimits {
        memory_limit_bytes: optional(read_u64(&memory.join("memory.limit_in_bytes")))?
            .and_then(v1_limit),
        cpu_shares: optional(read_u64(&cpu.join("cpu.shares")))?,
        cpu_weight: None,
        cpu_quota_us,
        cpu_period_us: optional(read_u64(&cpu.join("cpu.cfs_period_us")))?,
        cpuset_cpus: optional(read_trimmed(&cpuset.join("cpuset.cpus")))?,
        cpuset_mems: optional(read_trimmed(&cpuset.join("cpuset.mems")))?,
    })
}

fn read_limits_v2(dir: &Path) -> Result<CgroupLimits> {
    let (cpu_quota_us, cpu_period_us) = match optional(read_trimmed(&dir.join("cpu.max")))? {
        None => (None, None),
        Some(text) => parse_cpu_max(&dir.join("cpu.max"), &text)?,
    };
    Ok(CgroupLimits {
        memory_limit_bytes: optional(read_max(&dir.join("memory.max")))?.flatten(),
        cpu_shares: None,
        cpu_weight: optional(read_u64(&dir.join("cpu.weight")))?,
        cpu_quota_us,
        cpu_period_us,
        cpuset_cpus: optional(read_trimmed(&dir.join("cpuset.cpus")))?,
        cpuset_mems: optional(read_trimmed(&dir.join("cpuset.mems")))?,
    })
}

/// `cpu.max` is `"<quota|max> <period>"`.
fn parse_cpu_max(path: &Path, text: &str) -> Result<(Option<u64>, Option<u64>)> {
    let mut fields = text.split_whitespace();
    let (Some(quota), period, None) = (fields.next(), fields.next(), fields.next()) else {
        return Err(parse_error(path, text));
    };
    let quota = match quota {
        "max" => None,
        value => Some(parse_u64(path, value)?),
    };
    let period = period.map(|p| parse_u64(path, p)).transpose()?;
    Ok((quota, period))
}

/// The directory of a v1 controller; co-mounted controllers (`cpu,cpuacct`) are found under
/// any of their names, whether or not the distribution added the usual symlinks.
fn v1_controller(root: &Path, names: &[&str]) -> PathBuf {
    names
        .iter()
        .map(|name| root.join(name))
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| root.join(names[0]))
}

fn v1_limit(value: u64) -> Option<u64> {
    (value < V1_UNLIMITED_THRESHOLD).then_some(value)
}

/// Parsed `key value` lines (`memory.stat`, `cpu.stat`, `memory.events`, `memory.oom_control`).
struct FlatKeyed(Vec<(String, u64)>);

impl FlatKeyed {
    fn get(&self, key: &str) -> Option<u64> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

fn read_flat_keyed(path: &Path) -> Result<FlatKeyed> {
    let text = read_file(path)?;
    let mut entries = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.split_whitespace();
        let (Some(key), Some(value), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(parse_error(path, line));
        };
        entries.push((key.to_string(), parse_u64(path, value)?));
    }
    Ok(FlatKeyed(entries))
}

/// Entries of a one-id-per-line file (`cgroup.procs`, `tasks`).
fn count_lines(path: &Path) -> Result<u64> {
    let text = read_file(path)?;
    Ok(text.lines().filter(|l| !l.trim().is_empty()).count() as u64)
}

/// A v2 `*.max` file: a number, or `max` for no limit.
fn read_max(path: &Path) -> Result<Option<u64>> {
    let text = read_trimmed(path)?;
    if text == "max" {
        return Ok(None);
    }
    parse_u64(path, &text).map(Some)
}

fn read_u64(path: &Path) -> Result<u64> {
    let text = read_trimmed(path)?;
    parse_u64(path, &text)
}

fn read_trimmed(path: &Path) -> Result<String> {
    Ok(read_file(path)?.trim().to_string())
}

fn read_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A missing file means the controller is not enabled for this cgroup.
fn optional<T>(result: Result<T>) -> Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(CgroupError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

fn parse_u64(path: &Path, text: &str) -> Result<u64> {
    text.parse().map_err(|_| parse_error(path, text))
}

fn parse_error(path: &Path, content: &str) -> CgroupError {
    CgroupError::Parse {
        path: path.to_path_buf(),
        content: content.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn write(root: &Path, relative: &str, content: &str) {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    /// A v1 tree with `cpu` and `cpuacct` mounted separately (as on the Debian CI hosts).
    fn v1_fixture(root: &Path, cgroup: &str) {
        let memory_stat = "cache 8192\nrss 4096\ninactive_file 1\n\
                           total_cache 12288\ntotal_rss 409600\ntotal_mapped_file 8192\n\
                           total_inactive_file 102400\n\
                           total_pgfault 77\ntotal_pgmajfault 3\n";
        write(
            root,
            &format!("memory/{cgroup}/memory.usage_in_bytes"),
            "524288\n",
        );
        write(root, &format!("memory/{cgroup}/memory.stat"), memory_stat);
        write(
            root,
            &format!("memory/{cgroup}/memory.limit_in_bytes"),
            "67108864\n",
        );
        write(
            root,
            &format!("memory/{cgroup}/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        write(
            root,
            &format!("cpuacct/{cgroup}/cpuacct.usage"),
            "123456789\n",
        );
        write(root, &format!("cpu/{cgroup}/cpu.shares"), "512\n");
        write(root, &format!("cpu/{cgroup}/cpu.cfs_quota_us"), "50000\n");
        write(root, &format!("cpu/{cgroup}/cpu.cfs_period_us"), "100000\n");
        write(root, &format!("cpuset/{cgroup}/cpuset.cpus"), "0-1\n");
        write(root, &format!("cpuset/{cgroup}/cpuset.mems"), "0\n");
        write(
            root,
            &format!("cpuacct/{cgroup}/cpuacct.usage_user"),
            "100000000\n",
        );
        write(
            root,
            &format!("cpuacct/{cgroup}/cpuacct.usage_sys"),
            "23456789\n",
        );
        write(
            root,
            &format!("cpu/{cgroup}/cpu.stat"),
            "nr_periods 40\nnr_throttled 3\nthrottled_time 7000000\nnr_bursts 0\nburst_time 0\n",
        );
        write(root, &format!("memory/{cgroup}/cgroup.procs"), "41\n42\n");
        write(root, &format!("memory/{cgroup}/tasks"), "41\n42\n43\n44\n");
    }

    fn v2_fixture(root: &Path, cgroup: &str) {
        write(root, "cgroup.controllers", "cpuset cpu io memory pids\n");
        let memory_stat = "anon 409600\nfile 12288\nfile_mapped 8192\ninactive_file 102400\n\
                           active_file 4096\n\
                           pgfault 77\npgmajfault 3\n";
        write(root, &format!("{cgroup}/memory.current"), "524288\n");
        write(root, &format!("{cgroup}/memory.stat"), memory_stat);
        write(root, &format!("{cgroup}/memory.max"), "67108864\n");
        write(
            root,
            &format!("{cgroup}/memory.events"),
            "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
        );
        write(
            root,
            &format!("{cgroup}/cpu.stat"),
            "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\n\
             nr_periods 40\nnr_throttled 3\nthrottled_usec 7000\n",
        );
        write(root, &format!("{cgroup}/cgroup.procs"), "41\n42\n");
        write(
            root,
            &format!("{cgroup}/cgroup.threads"),
            "41\n42\n43\n44\n",
        );
        write(root, &format!("{cgroup}/cpu.weight"), "20\n");
        write(root, &format!("{cgroup}/cpu.max"), "50000 100000\n");
        write(root, &format!("{cgroup}/cpuset.cpus"), "0-1\n");
    }

    #[test]
    fn detects_layouts() {
        let v1 = tempfile::tempdir().unwrap();
        v1_fixture(v1.path(), "crius/a");
        assert_eq!(
            CgroupLayout::detect(v1.path()).unwrap(),
            CgroupLayout::V1 {
                root: v1.path().to_path_buf()
            }
        );

        let hybrid = tempfile::tempdir().unwrap();
        v1_fixture(hybrid.path(), "crius/a");
        write(hybrid.path(), "unified/cgroup.controllers", "\n");
        let layout = CgroupLayout::detect(hybrid.path()).unwrap();
        assert_eq!(
            layout,
            CgroupLayout::Hybrid {
                root: hybrid.path().to_path_buf(),
                unified: hybrid.path().join("unified"),
            }
        );
        assert!(!layout.is_v2());

        let v2 = tempfile::tempdir().unwrap();
        v2_fixture(v2.path(), "crius/a");
        let layout = CgroupLayout::detect(v2.path()).unwrap();
        assert!(layout.is_v2());
        assert_eq!(layout.root(), v2.path());

        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            CgroupLayout::detect(empty.path()),
            Err(CgroupError::NoCgroupFs { .. })
        ));
    }

    #[test]
    fn v1_stats_and_limits() {
        let root = tempfile::tempdir().unwrap();
        v1_fixture(root.path(), "crius/abc");
        let layout = CgroupLayout::detect(root.path()).unwrap();

        let stats = read_stats(&layout, "/crius/abc").unwrap();
        assert_eq!(
            stats,
            CgroupStats {
                memory_usage_bytes: 524288,
                memory_working_set_bytes: 524288 - 102400,
                memory_rss_bytes: 409600,
                memory_cache_bytes: 12288,
                memory_mapped_file_bytes: 8192,
                memory_page_faults: 77,
                memory_major_page_faults: 3,
                memory_limit_bytes: Some(67108864),
                cpu_usage_nanos: 123456789,
                oom_kill_count: Some(2),
            }
        );

        let limits = read_limits(&layout, "/crius/abc/").unwrap();
        assert_eq!(
            limits,
            CgroupLimits {
                memory_limit_bytes: Some(67108864),
                cpu_shares: Some(512),
                cpu_weight: None,
                cpu_quota_us: Some(50000),
                cpu_period_us: Some(100000),
                cpuset_cpus: Some("0-1".to_string()),
                cpuset_mems: Some("0".to_string()),
            }
        );
    }

    /// The same tasks seen through v1 and v2 files: 100 ms user and ~23.5 ms system time,
    /// 3 of 40 CFS periods throttled for 7 ms, 2 processes with 4 threads.
    fn expected_activity(system_nanos: u64) -> CgroupActivity {
        CgroupActivity {
            cpu_user_nanos: Some(100_000_000),
            cpu_system_nanos: Some(system_nanos),
            cfs_periods: 40,
            cfs_throttled_periods: 3,
            cfs_throttled_nanos: 7_000_000,
            processes: 2,
            threads: 4,
        }
    }

    #[test]
    fn activity_is_read_from_v1_files_in_nanoseconds() {
        let root = tempfile::tempdir().unwrap();
        v1_fixture(root.path(), "crius/abc");
        let layout = CgroupLayout::detect(root.path()).unwrap();
        assert_eq!(
            read_activity(&layout, "/crius/abc").unwrap(),
            expected_activity(23_456_789)
        );
    }

    #[test]
    fn activity_is_read_from_v2_files_in_nanoseconds() {
        let root = tempfile::tempdir().unwrap();
        v2_fixture(root.path(), "crius/abc");
        let layout = CgroupLayout::detect(root.path()).unwrap();
        assert_eq!(
            read_activity(&layout, "/crius/abc").unwrap(),
            expected_activity(23_456_000)
        );
    }

    #[test]
    fn activity_without_cfs_or_a_cpu_split_reads_as_zero_and_unknown() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(r, "memory/c/cgroup.procs", "");
        write(r, "memory/c/tasks", "");
        write(r, "cpuacct/c/cpuacct.usage", "5\n");
        let layout = CgroupLayout::detect(r).unwrap();
        let activity = read_activity(&layout, "/c").unwrap();
        assert_eq!(activity, CgroupActivity::default());
        // A cgroup that is gone is not found, as for stats.
        assert!(read_activity(&layout, "/gone").unwrap_err().is_not_found());
    }

    #[test]
    fn v1_unlimited_and_comounted_cpu() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(r, "memory/c/memory.usage_in_bytes", "100\n");
        write(r, "memory/c/memory.stat", "total_inactive_file 400\n");
        write(r, "memory/c/memory.limit_in_bytes", "9223372036854771712\n");
        write(r, "cpu,cpuacct/c/cpuacct.usage", "5\n");
        write(r, "cpu,cpuacct/c/cpu.cfs_quota_us", "-1\n");
        write(r, "cpu,cpuacct/c/cpu.shares", "2\n");
        let layout = CgroupLayout::detect(r).unwrap();

        let stats = read_stats(&layout, "/c").unwrap();
        assert_eq!(stats.memory_limit_bytes, None);
        // Inactive cache larger than usage (stale counters) must not underflow.
        assert_eq!(stats.memory_working_set_bytes, 0);
        assert_eq!(stats.cpu_usage_nanos, 5);
        // Kernels before 4.13 have no oom_kill counter.
        assert_eq!(stats.oom_kill_count, None);

        let limits = read_limits(&layout, "/c").unwrap();
        assert_eq!(limits.memory_limit_bytes, None);
        assert_eq!(limits.cpu_quota_us, None);
        assert_eq!(limits.cpu_shares, Some(2));
        assert_eq!(limits.cpuset_cpus, None);
    }

    #[test]
    fn hybrid_reads_v1_files() {
        let root = tempfile::tempdir().unwrap();
        v1_fixture(root.path(), "kubepods/pod1/abc");
        write(root.path(), "unified/cgroup.controllers", "\n");
        let layout = CgroupLayout::detect(root.path()).unwrap();
        let stats = read_stats(&layout, "/kubepods/pod1/abc").unwrap();
        assert_eq!(stats.memory_usage_bytes, 524288);
        assert_eq!(stats.cpu_usage_nanos, 123456789);
        let limits = read_limits(&layout, "/kubepods/pod1/abc").unwrap();
        assert_eq!(limits.cpu_shares, Some(512));
    }

    #[test]
    fn v2_stats_and_limits() {
        let root = tempfile::tempdir().unwrap();
        let cgroup = "kubepods.slice/kubepods-pod1.slice/crius-abc.scope";
        v2_fixture(root.path(), cgroup);
        let layout = CgroupLayout::detect(root.path()).unwrap();
        let path = format!("/{cgroup}");

        let stats = read_stats(&layout, &path).unwrap();
        assert_eq!(
            stats,
            CgroupStats {
                memory_usage_bytes: 524288,
                memory_working_set_bytes: 524288 - 102400,
                memory_rss_bytes: 409600,
                memory_cache_bytes: 12288,
                memory_mapped_file_bytes: 8192,
                memory_page_faults: 77,
                memory_major_page_faults: 3,
                memory_limit_bytes: Some(67108864),
                cpu_usage_nanos: 123_456_000,
                oom_kill_count: Some(1),
            }
        );

        let limits = read_limits(&layout, &path).unwrap();
        assert_eq!(
            limits,
            CgroupLimits {
                memory_limit_bytes: Some(67108864),
                cpu_shares: None,
                cpu_weight: Some(20),
                cpu_quota_us: Some(50000),
                cpu_period_us: Some(100000),
                cpuset_cpus: Some("0-1".to_string()),
                cpuset_mems: None,
            }
        );
    }

    #[test]
    fn v2_unlimited() {
        let root = tempfile::tempdir().unwrap();
        v2_fixture(root.path(), "c");
        write(root.path(), "c/memory.max", "max\n");
        write(root.path(), "c/cpu.max", "max 100000\n");
        let layout = CgroupLayout::detect(root.path()).unwrap();
        assert_eq!(read_stats(&layout, "/c").unwrap().memory_limit_bytes, None);
        let limits = read_limits(&layout, "/c").unwrap();
        assert_eq!(limits.memory_limit_bytes, None);
        assert_eq!(limits.cpu_quota_us, None);
        assert_eq!(limits.cpu_period_us, Some(100000));
    }

    #[test]
    fn errors() {
        let root = tempfile::tempdir().unwrap();
        v2_fixture(root.path(), "c");
        let layout = CgroupLayout::detect(root.path()).unwrap();

        let gone = read_stats(&layout, "/missing").unwrap_err();
        assert!(gone.is_not_found(), "{gone}");

        write(root.path(), "c/memory.current", "lots\n");
        let garbled = read_stats(&layout, "/c").unwrap_err();
        assert!(matches!(garbled, CgroupError::Parse { .. }), "{garbled}");

        for bad in ["c", "/c/../../etc", "/c//d"] {
            assert!(matches!(
                read_stats(&layout, bad),
                Err(CgroupError::InvalidPath { .. })
            ));
        }
    }

    #[test]
    fn reads_the_host_root_cgroup_on_v1_hosts() {
        // Runs for real on the hybrid CI hosts; a v2 root cgroup has no memory.current, and
        // a machine without cgroups has nothing to check.
        let Ok(layout) = CgroupLayout::detect(Path::new("/sys/fs/cgroup")) else {
            return;
        };
        if layout.is_v2() {
            return;
        }
        let stats = read_stats(&layout, "/").unwrap();
        assert!(stats.memory_usage_bytes > 0);
        assert!(stats.cpu_usage_nanos > 0);
        assert!(stats.memory_working_set_bytes <= stats.memory_usage_bytes);
    }
}
