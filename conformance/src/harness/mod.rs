//! Test harness: real private daemons in temp dirs, always cleaned up.
//!
//! Used by integration tests, the conformance runner and the benches. Everything here is
//! synchronous (std::process) so it works from plain tests, from `#[tokio::test]` and from
//! `Drop`; every daemon is stopped by PID and its temp dir unmounted and removed on
//! `shutdown()` or drop — also when a test panics.
//!
//! ```no_run
//! use conformance::harness::{images, Containerd, ContainerdOptions, Images, Registry};
//! # fn main() -> anyhow::Result<()> {
//! let imgs = Images::get()?;                        // built once per process, cached on disk
//! let mut ctd = Containerd::start(ContainerdOptions::default())?;
//! imgs.import_all(&ctd, "k8s.io")?;                 // pause image for containerd's own CRI
//! let net = ctd.write_cni_conflist("crius-test", None)?; // private bridge + 10.88.x.0/24
//! let reg = Registry::start(true)?;                 // basic auth, 127.0.0.1:<port>
//! let pushed = imgs.push(&reg, images::BUSYBOX, "crius/busybox:1")?;
//! println!("{} {} {}", ctd.cri_endpoint(), net.subnet, pushed);
//! ctd.shutdown()?;                                  // or just drop it
//! # Ok(()) }
//! ```
//!
//! Requirements: root, and the packages from `scripts/install-deps`. Environment knobs:
//! `CRIUS_BIN` (crius binary), `CRIUS_TEST_TMPDIR` (base for temp dirs, default `/tmp`),
//! `CRIUS_TEST_IMAGE_CACHE` (default `/var/tmp/crius-test-images`), `CRIUS_KEEP_TEST_DIRS=1`
//! (keep temp dirs after shutdown for debugging; daemons are still stopped and unmounted),
//! `CRIUS_WORKSPACE_ROOT`.
//!
//! Network rule: test networks are private bridges with `10.88.<x>.0/24` subnets; tests only
//! send traffic to loopback or to pod addresses on their own bridge.

pub mod census;
pub mod cni;
pub mod containerd;
pub mod crius;
pub mod dockerd;
pub mod images;
pub mod pods;
pub mod registry;
pub mod util;

pub use cni::CniNetwork;
pub use containerd::{Containerd, ContainerdOptions, NetworkInfo};
pub use crius::{Crius, CriusOptions};
pub use dockerd::{Dockerd, DockerdOptions};
pub use images::{ImageRef, Images, TestImage};
pub use registry::{AccessLogEntry, Registry};
pub use util::{mounts_under, pid_alive, require_root, workspace_root, TempDir};

/// True when the process runs as root (integration tests skip or fail clearly otherwise).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
