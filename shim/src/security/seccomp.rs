//! seccomp: crius's `RuntimeDefault` profile, `Localhost` profiles from files, `Unconfined`.
//!
//! The default profile is an allowlist: every syscall not named here fails with EPERM. The
//! names are the set Docker's and containerd's default profiles allow, so workloads behave
//! as they do there; syscalls that break out of the container's namespaces or reach the
//! whole kernel (`unshare`, `setns`, `mount`, `keyctl`, `bpf`, module loading, …) are only
//! allowed when the container holds the capability the kernel would check anyway.

use std::path::Path;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
};
use serde::Deserialize;

use super::caps::DEFAULT_CAPABILITIES;
use super::SpecError;
use crate::domain::SecurityProfile;

/// errno for denied syscalls: "operation not permitted", what a missing capability gives.
const EPERM: u32 = 1;
/// errno for `clone3` without CAP_SYS_ADMIN: its flags live in memory a filter cannot read,
/// so it is refused as "not implemented", which makes libc fall back to `clone`, whose flags
/// the filter can check.
const ENOSYS: u32 = 38;

/// `CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |
/// CLONE_NEWPID | CLONE_NEWNET`: `clone` may create threads and processes, not namespaces.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// Address family of virtual-machine sockets, which reach the hypervisor rather than the
/// pod's network namespace.
const AF_VSOCK: u64 = 40;

/// `personality(2)` values that only select an execution domain compatible with Linux:
/// PER_LINUX, PER_LINUX32, UNAME26 variants, and the query value.
const PERSONALITY_VALUES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// Allowed for every container.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    // Since Linux 4.8 a traced process cannot use ptrace to get around seccomp.
    "ptrace",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// Syscalls that exist only on this architecture family.
#[cfg(target_arch = "x86_64")]
const ARCH_ALLOWED: &[&str] = &["arch_prctl", "modify_ldt"];
#[cfg(target_arch = "aarch64")]
const ARCH_ALLOWED: &[&str] = &[
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "sync_file_range2",
    "breakpoint",
    "cacheflush",
    "set_tls",
];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const ARCH_ALLOWED: &[&str] = &[];

/// Syscalls allowed only to a container holding the capability; the kernel checks the same
/// capability, the filter keeps the attack surface closed when it is absent.
const CAPABILITY_GATED: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "name_to_handle_at",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// The seccomp architectures a filter for this machine covers: the native one and the
/// 32-bit ABIs its kernel also runs.
fn native_architectures() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else {
        Vec::new()
    }
}

/// The architecture as Docker profiles name it in `includes.arches` (Go's names).
fn native_arch_name() -> &'static str {
    if cfg!(target_arch = "x86_64") {
        "amd64"
    } else if cfg!(target_arch = "aarch64") {
        "arm64"
    } else if cfg!(target_arch = "x86") {
        "386"
    } else {
        std::env::consts::ARCH
    }
}

fn native_seccomp_arch() -> Option<Arch> {
    native_architectures().into_iter().next()
}

fn rule(names: &[&str], action: LinuxSeccompAction) -> LinuxSyscall {
    let mut syscall = LinuxSyscall::default();
    syscall
        .set_names(names.iter().map(|n| (*n).to_string()).collect())
        .set_action(action);
    syscall
}

/// An argument condition. The type has no setters, only a builder, whose `build` cannot
/// fail here (no validation, every field set or defaulted). Were it to fail, the fallback
/// condition (argument 0 equals 0) matches less than the intended one, so the filter would
/// only get stricter.
fn arg(
    index: usize,
    value: u64,
    value_two: Option<u64>,
    op: LinuxSeccompOperator,
) -> LinuxSeccompArg {
    let builder = LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op);
    let builder = match value_two {
        Some(v) => builder.value_two(v),
        None => builder,
    };
    builder.build().unwrap_or_default()
}

fn allow_if(names: &[&str], args: Vec<LinuxSeccompArg>) -> LinuxSyscall {
    let mut syscall = rule(names, LinuxSeccompAction::ScmpActAllow);
    syscall.set_args(Some(args));
    syscall
}

/// The `RuntimeDefault` profile for a container holding Docker's default capabilities.
pub fn default_profile() -> LinuxSeccomp {
    let defaults: Vec<String> = DEFAULT_CAPABILITIES
        .iter()
        .map(|c| (*c).to_string())
        .collect();
    default_profile_for(&defaults)
}

/// The `RuntimeDefault` profile for a container holding `caps` (`CAP_…` names, the bounding
/// set the spec grants).
pub fn default_profile_for(caps: &[String]) -> LinuxSeccomp {
    let has = |cap: &str| caps.iter().any(|c| c == cap);
    let mut syscalls = vec![rule(ALLOWED, LinuxSeccompAction::ScmpActAllow)];
    if !ARCH_ALLOWED.is_empty() {
        syscalls.push(rule(ARCH_ALLOWED, LinuxSeccompAction::ScmpActAllow));
    }
    for value in PERSONALITY_VALUES {
        syscalls.push(allow_if(
            &["personality"],
            vec![arg(0, *value, None, LinuxSeccompOperator::ScmpCmpEq)],
        ));
    }
    syscalls.push(allow_if(
        &["socket"],
        vec![arg(0, AF_VSOCK, None, LinuxSeccompOperator::ScmpCmpNe)],
    ));
    for (cap, names) in CAPABILITY_GATED {
        if has(cap) {
            syscalls.push(rule(names, LinuxSeccompAction::ScmpActAllow));
        }
    }
    if !has("CAP_SYS_ADMIN") {
        // s390 passes clone's flags in the second argument; everything else in the first.
        let flags_index = if cfg!(target_arch = "s390x") { 1 } else { 0 };
        syscalls.push(allow_if(
            &["clone"],
            vec![arg(
                flags_index,
                CLONE_NAMESPACE_FLAGS,
                Some(0),
                LinuxSeccompOperator::ScmpCmpMaskedEq,
            )],
        ));
        let mut clone3 = rule(&["clone3"], LinuxSeccompAction::ScmpActErrno);
        clone3.set_errno_ret(Some(ENOSYS));
        syscalls.push(clone3);
    }

    let mut profile = LinuxSeccomp::default();
    profile
        .set_default_action(LinuxSeccompAction::ScmpActErrno)
        .set_default_errno_ret(Some(EPERM))
        .set_architectures(Some(native_architectures()))
        .set_syscalls(Some(syscalls));
    profile
}

/// A `Localhost` profile file, in Docker's format (which the OCI format is a subset of):
/// `defaultAction`, `architectures` or `archMap`, `syscalls` with `names` (or `name`),
/// `action`, `errnoRet`, `args`, and `includes`/`excludes` conditions on capabilities and
/// architectures.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileFile {
    default_action: LinuxSeccompAction,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Vec<Arch>,
    #[serde(default)]
    arch_map: Vec<ArchMapEntry>,
    #[serde(default)]
    flags: Vec<LinuxSeccompFilterFlag>,
    #[serde(default)]
    listener_path: Option<String>,
    #[serde(default)]
    listener_metadata: Option<String>,
    #[serde(default)]
    syscalls: Vec<SyscallRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMapEntry {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Vec<Arch>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SyscallRule {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    names: Vec<String>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<LinuxSeccompArg>,
    #[serde(default)]
    includes: Condition,
    #[serde(default)]
    excludes: Condition,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Condition {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    /// Ignored: crius runs on kernels newer than any minimum in published profiles.
    #[serde(default)]
    min_kernel: Option<String>,
}

impl ProfileFile {
    /// Parse a profile; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, SpecError> {
        let profile: Self = serde_json::from_str(text).map_err(|e| {
            SpecError::InvalidArgument(format!("seccomp profile {origin}: invalid JSON: {e}"))
        })?;
        for (i, rule) in profile.syscalls.iter().enumerate() {
            if rule.name.is_none() && rule.names.is_empty() {
                return Err(SpecError::InvalidArgument(format!(
                    "seccomp profile {origin}: syscalls[{i}] names no syscall"
                )));
            }
        }
        Ok(profile)
    }

    /// The OCI filter for a container holding `caps`, on this machine's architecture.
    pub fn to_oci(&self, caps: &[String]) -> LinuxSeccomp {
        let arch_name = native_arch_name();
        let has = |cap: &String| caps.contains(cap);
        let syscalls: Vec<LinuxSyscall> = self
            .syscalls
            .iter()
            .filter(|r| r.includes.caps.iter().all(has))
            .filter(|r| {
                r.includes.arches.is_empty() || r.includes.arches.iter().any(|a| a == arch_name)
            })
            .filter(|r| !r.excludes.caps.iter().any(has))
            .filter(|r| !r.excludes.arches.iter().any(|a| a == arch_name))
            .map(|r| {
                let mut names: Vec<String> = r.name.iter().cloned().collect();
                names.extend(r.names.iter().cloned());
                let mut syscall = LinuxSyscall::default();
                syscall
                    .set_names(names)
                    .set_action(r.action)
                    .set_errno_ret(r.errno_ret)
                    .set_args((!r.args.is_empty()).then(|| r.args.clone()));
                syscall
            })
            .collect();

        let mut architectures = self.architectures.clone();
        if let Some(native) = native_seccomp_arch() {
            if let Some(entry) = self.arch_map.iter().find(|e| e.architecture == native) {
                architectures.push(entry.architecture);
                architectures.extend(entry.sub_architectures.iter().copied());
            }
        }
        let mut seen = Vec::new();
        architectures.retain(|a| {
            let first = !seen.contains(a);
            seen.push(*a);
            first
        });

        let mut filter = LinuxSeccomp::default();
        filter
            .set_default_action(self.default_action)
            .set_default_errno_ret(self.default_errno_ret)
            .set_architectures((!architectures.is_empty()).then_some(architectures))
            .set_flags((!self.flags.is_empty()).then(|| self.flags.clone()))
            .set_listener_path(self.listener_path.as_ref().map(Into::into))
            .set_listener_metadata(self.listener_metadata.clone())
            .set_syscalls(Some(syscalls));
        filter
    }
}

/// Read a `Localhost` profile. The path may carry the legacy `localhost/` prefix.
pub fn load_localhost_profile(path: &str) -> Result<ProfileFile, SpecError> {
    let path = path.strip_prefix("localhost/").unwrap_or(path);
    if !Path::new(path).is_absolute() {
        return Err(SpecError::InvalidArgument(format!(
            "seccomp profile path {path:?} must be absolute"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        SpecError::InvalidArgument(format!("seccomp profile {path:?} cannot be read: {e}"))
    })?;
    ProfileFile::parse(&text, &format!("{path:?}"))
}

/// The seccomp filter for a process, or `None` for none.
///
/// Privileged containers, `Unconfined` and an unset profile run without a filter (as with
/// containerd: kubelet asks for `RuntimeDefault` explicitly when it wants it). `Localhost`
/// reads the file now, so a missing or broken profile fails the create naming the path.
/// `caps` are the capabilities the process is granted; rules that depend on them follow.
pub fn seccomp_for(
    profile: Option<&SecurityProfile>,
    privileged: bool,
    caps: &[String],
) -> Result<Option<LinuxSeccomp>, SpecError> {
    if privileged {
        return Ok(None);
    }
    match profile {
        None | Some(SecurityProfile::Unconfined) => Ok(None),
        Some(SecurityProfile::RuntimeDefault) => Ok(Some(default_profile_for(caps))),
        Some(SecurityProfile::Localhost(path)) => {
            Ok(Some(load_localhost_profile(path)?.to_oci(caps)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the filter does with a call of `name` whose arguments match no conditional rule
    /// (rules with argument conditions are skipped; tests check them separately).
    fn action_for(profile: &LinuxSeccomp, name: &str) -> (LinuxSeccompAction, Option<u32>) {
        for syscall in profile.syscalls().as_deref().unwrap_or_default() {
            let unconditional = syscall.args().as_ref().is_none_or(|a| a.is_empty());
            if unconditional && syscall.names().iter().any(|n| n == name) {
                return (syscall.action(), syscall.errno_ret());
            }
        }
        (profile.default_action(), profile.default_errno_ret())
    }

    fn conditional_rules<'a>(profile: &'a LinuxSeccomp, name: &str) -> Vec<&'a LinuxSyscall> {
        profile
            .syscalls()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter(|s| {
                s.names().iter().any(|n| n == name)
                    && s.args().as_ref().is_some_and(|a| !a.is_empty())
            })
            .collect()
    }

    const DENIED: (LinuxSeccompAction, Option<u32>) =
        (LinuxSeccompAction::ScmpActErrno, Some(EPERM));
    const ALLOWED_ACTION: (LinuxSeccompAction, Option<u32>) =
        (LinuxSeccompAction::ScmpActAllow, None);

    #[test]
    fn default_profile_allows_ordinary_io() {
        let profile = default_profile();
        for name in [
            "read",
            "write",
            "openat",
            "execve",
            "exit_group",
            "futex",
            "epoll_wait",
        ] {
            assert_eq!(action_for(&profile, name), ALLOWED_ACTION, "{name}");
        }
    }

    #[test]
    fn default_profile_denies_namespace_and_kernel_wide_syscalls_with_eperm() {
        let profile = default_profile();
        for name in [
            "unshare",
            "setns",
            "mount",
            "umount2",
            "keyctl",
            "add_key",
            "request_key",
            "bpf",
            "perf_event_open",
            "init_module",
            "reboot",
            "kexec_load",
            "open_by_handle_at",
            "userfaultfd",
        ] {
            assert_eq!(action_for(&profile, name), DENIED, "{name}");
        }
    }

    #[test]
    fn clone_is_allowed_only_without_namespace_flags_and_clone3_reports_enosys() {
        let profile = default_profile();
        let clone = conditional_rules(&profile, "clone");
        assert_eq!(clone.len(), 1);
        let condition = clone[0].args().as_ref().unwrap()[0];
        assert_eq!(condition.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!(condition.value(), CLONE_NAMESPACE_FLAGS);
        assert_eq!(condition.value_two(), Some(0));
        assert_eq!(
            action_for(&profile, "clone3"),
            (LinuxSeccompAction::ScmpActErrno, Some(ENOSYS))
        );
    }

    #[test]
    fn vsock_sockets_and_odd_personalities_are_refused() {
        let profile = default_profile();
        let socket = conditional_rules(&profile, "socket");
        assert_eq!(socket.len(), 1);
        let condition = socket[0].args().as_ref().unwrap()[0];
        assert_eq!(
            (condition.op(), condition.value()),
            (LinuxSeccompOperator::ScmpCmpNe, AF_VSOCK)
        );
        let personality = conditional_rules(&profile, "personality");
        assert_eq!(personality.len(), PERSONALITY_VALUES.len());
        assert_eq!(action_for(&profile, "personality"), DENIED);
    }

    #[test]
    fn capabilities_open_their_syscalls() {
        let caps = vec!["CAP_SYS_ADMIN".to_string(), "CAP_SYS_PTRACE".to_string()];
        let profile = default_profile_for(&caps);
        for name in [
            "unshare",
            "setns",
            "mount",
            "umount2",
            "clone",
            "clone3",
            "process_vm_readv",
        ] {
            assert_eq!(action_for(&profile, name), ALLOWED_ACTION, "{name}");
        }
        assert!(conditional_rules(&profile, "clone").is_empty());
        assert_eq!(action_for(&profile, "keyctl"), DENIED);
        assert_eq!(action_for(&profile, "reboot"), DENIED);
    }

    #[test]
    fn default_profile_covers_the_native_architectures() {
        let profile = default_profile();
        let arches = profile.architectures().clone().unwrap_or_default();
        if cfg!(target_arch = "x86_64") {
            assert_eq!(
                arches,
                vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
            );
        }
        let json = serde_json::to_value(&profile).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(json["defaultErrnoRet"], 1);
    }

    #[test]
    fn seccomp_for_choices() {
        let caps: Vec<String> = DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
        assert_eq!(seccomp_for(None, false, &caps).unwrap(), None);
        assert_eq!(
            seccomp_for(Some(&SecurityProfile::Unconfined), false, &caps).unwrap(),
            None
        );
        assert_eq!(
            seccomp_for(Some(&SecurityProfile::RuntimeDefault), true, &caps).unwrap(),
            None
        );
        assert_eq!(
            seccomp_for(Some(&SecurityProfile::RuntimeDefault), false, &caps).unwrap(),
            Some(default_profile())
        );
        // Privileged containers never read the file.
        let missing = SecurityProfile::Localhost("/nonexistent/profile.json".to_string());
        assert_eq!(seccomp_for(Some(&missing), true, &caps).unwrap(), None);
    }

    const DOCKER_STYLE: &str = r#"{
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "archMap": [
            {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}
        ],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "args": [], "comment": "", "includes": {}, "excludes": {}},
            {"name": "mkdir", "action": "SCMP_ACT_LOG"},
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
             "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32"], "minKernel": "4.8"}},
            {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}
        ]
    }"#;

    #[test]
    fn localhost_profile_is_parsed_with_conditions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("profile.json");
        std::fs::write(&path, DOCKER_STYLE).unwrap();
        let profile = SecurityProfile::Localhost(path.display().to_string());

        let filter = seccomp_for(Some(&profile), false, &[]).unwrap().unwrap();
        assert_eq!(action_for(&filter, "read"), ALLOWED_ACTION);
        assert_eq!(
            action_for(&filter, "mkdir").0,
            LinuxSeccompAction::ScmpActLog
        );
        assert_eq!(
            action_for(&filter, "chmod"),
            (LinuxSeccompAction::ScmpActErrno, Some(13))
        );
        assert_eq!(action_for(&filter, "mount"), DENIED);
        assert_eq!(conditional_rules(&filter, "clone").len(), 1);
        if cfg!(target_arch = "x86_64") {
            assert_eq!(action_for(&filter, "arch_prctl"), ALLOWED_ACTION);
            assert_eq!(
                filter.architectures().clone().unwrap_or_default(),
                vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
            );
        }

        let admin = seccomp_for(Some(&profile), false, &["CAP_SYS_ADMIN".to_string()])
            .unwrap()
            .unwrap();
        assert_eq!(action_for(&admin, "mount"), ALLOWED_ACTION);
        assert!(conditional_rules(&admin, "clone").is_empty());
    }

    #[test]
    fn localhost_profile_missing_or_invalid_names_the_path() {
        let missing = SecurityProfile::Localhost("/nonexistent/crius/profile.json".to_string());
        let err = seccomp_for(Some(&missing), false, &[]).unwrap_err();
        assert!(
            matches!(&err, SpecError::InvalidArgument(m) if m.contains("/nonexistent/crius/profile.json")),
            "{err}"
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.json");
        std::fs::write(&path, "{\"defaultAction\": \"SCMP_ACT_NOPE\"}").unwrap();
        let broken = SecurityProfile::Localhost(format!("localhost/{}", path.display()));
        let err = seccomp_for(Some(&broken), false, &[]).unwrap_err();
        assert!(
            matches!(&err, SpecError::InvalidArgument(m) if m.contains("broken.json")),
            "{err}"
        );

        std::fs::write(&path, "{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": [{\"action\": \"SCMP_ACT_ERRNO\"}]}")
            .unwrap();
        assert!(matches!(
            seccomp_for(Some(&broken), false, &[]),
            Err(SpecError::InvalidArgument(_))
        ));

        let relative = SecurityProfile::Localhost("profiles/audit.json".to_string());
        assert!(matches!(
            seccomp_for(Some(&relative), false, &[]),
            Err(SpecError::InvalidArgument(_))
        ));
    }
}
