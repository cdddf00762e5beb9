# crius-default: the AppArmor profile crius gives containers that ask for runtime/default
# (or for nothing) on nodes with AppArmor. crius loads it at start with `apparmor_parser -Kr`.
#
# It confines by exception: the container may do what its capabilities, seccomp filter and
# mounts allow, except touch the parts of /proc and /sys that act on the whole host.

#include <tunables/global>

profile crius-default flags=(attach_disconnected,mediate_deleted) {
  #include <abstractions/base>

  network,
  capability,
  file,
  umount,

  # Processes of this profile signal each other; the runtime and kubelet (unconfined) stop
  # them.
  signal (send,receive) peer=crius-default,
  signal (receive) peer=unconfined,

  # Debuggers work inside the container, never across its edge.
  ptrace (trace,read,tracedby,readby) peer=crius-default,

  # New mounts could uncover what the masked and read-only paths hide.
  deny mount,

  # Top-level /proc files are host-wide knobs (sysrq-trigger, kmsg, ...).
  deny @{PROC}/* w,
  deny @{PROC}/sysrq-trigger rwklx,
  deny @{PROC}/kcore rwklx,
  deny @{PROC}/kmem rwklx,
  deny @{PROC}/mem rwklx,
  # Kernel and filesystem tunables are not namespaced; binfmt_misc would register
  # interpreters for the whole host.
  deny @{PROC}/sys/kernel/** w,
  deny @{PROC}/sys/fs/** w,
  deny @{PROC}/sys/vm/** w,

  deny /sys/firmware/** rwklx,
  deny /sys/kernel/security/** rwklx,
  deny /sys/kernel/debug/** rwklx,
  deny /sys/devices/virtual/powercap/** rwklx,
}
