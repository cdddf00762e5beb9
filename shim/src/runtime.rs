//! The core every service handler calls: configuration, backend, store, and the host facts
//! the managers need. Built once at start.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use runtime_backends::{Backend, FsWalk};

use crate::cgroups::{CgroupLayout, Driver};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::network::Network;
use crate::security::HostSecurity;
use crate::store::{ImageIndex, StateDir, Store};

/// Kinds of records under `<root>`.
pub const SANDBOXES: &str = "sandboxes";
pub const CONTAINERS: &str = "containers";
/// Record kind under `<root>` holding each container's full OCI spec.
pub const CONTAINER_SPECS: &str = "container-specs";

/// How often the image filesystem's usage is measured (ImageFsInfo answers the last one).
const IMAGE_FS_PERIOD: Duration = Duration::from_secs(10);

/// The image filesystem's usage, and when it was measured (CRI's `timestamp`: when the
/// information was collected).
#[derive(Debug, Clone, Default)]
pub struct ImageFsSample {
    pub usage: runtime_backends::FsUsage,
    pub measured_at_nanos: i64,
}

pub struct Crius {
    pub config: Config,
    pub backend: Arc<dyn Backend>,
    pub store: Store,
    /// Records under `<root>`.
    pub records: StateDir,
    pub cgroups: Driver,
    /// Pod network namespaces and CNI.
    pub network: Arc<Network>,
    pub cgroup_layout: Option<CgroupLayout>,
    pub host: HostSecurity,
    /// crius's own oom_score_adj: containers may not go below it (ENVIRONMENT.md).
    pub oom_score_adj_floor: i64,
    /// The pause image every sandbox runs.
    pub pause_image: String,
    /// Image filesystem usage, measured in the background (see [`Crius::measure_image_fs`]).
    pub image_fs: ArcSwap<ImageFsSample>,
    /// Held from a measurement's start to its store, so a later one is never overwritten.
    image_fs_measuring: tokio::sync::Mutex<()>,
    /// CPU-rate samples and writable-layer sizes kept between stats calls.
    pub stats_cache: crate::stats::StatsCache,
    /// Did the backend answer the last health probe?
    backend_up: std::sync::atomic::AtomicBool,
    /// What GetContainerEvents streams.
    pub pod_events: crate::pod_events::PodEvents,
    /// Exec, Attach and PortForward requests waiting for their streaming client.
    pub streaming: crate::streaming::Tokens,
}

impl Crius {
    pub fn new(config: Config, backend: Arc<dyn Backend>) -> Self {
        let pause_image = config
            .pause_image
            .clone()
            .unwrap_or_else(|| crate::pause::BUILTIN_PAUSE_IMAGE.to_string());
        Self {
            records: StateDir::new(config.root.clone()),
            cgroups: config.cgroup_driver,
            network: Arc::new(Network::new(&config)),
            cgroup_layout: CgroupLayout::detect(std::path::Path::new("/sys/fs/cgroup")).ok(),
            host: HostSecurity::detect(std::path::Path::new("/sys"), std::path::Path::new("/proc")),
            oom_score_adj_floor: own_oom_score_adj(),
            pause_image,
            image_fs: ArcSwap::from_pointee(ImageFsSample::default()),
            image_fs_measuring: tokio::sync::Mutex::new(()),
            stats_cache: crate::stats::StatsCache::default(),
            backend_up: std::sync::atomic::AtomicBool::new(true),
            pod_events: crate::pod_events::PodEvents::new(config.event_buffer),
            streaming: crate::streaming::Tokens::default(),
            store: Store::default(),
            backend,
            config,
        }
    }

    /// Load crius's AppArmor profile for `runtime/default` where the node has AppArmor and
    /// lacks the profile. Once at start, before the core is shared; the parser runs on a
    /// blocking thread. A failure is kept in `host.apparmor`, which then refuses the
    /// containers that need the profile.
    pub async fn load_default_apparmor_profile(&mut self) {
        let mut apparmor = self.host.apparmor.clone();
        let loading = tokio::task::spawn_blocking(move || {
            apparmor.ensure_default_profile(crate::security::find_apparmor_parser().as_deref());
            apparmor
        });
        match loading.await {
            Ok(apparmor) => self.host.apparmor = apparmor,
            Err(e) => {
                tracing::warn!(error = %e, "loading the default AppArmor profile did not finish");
                self.host.apparmor.default_profile_error =
                    Some(format!("the loading task did not finish: {e}"));
            }
        }
    }

    /// Directory of a sandbox's files that must survive a restart (resolv.conf, hostname, hosts).
    pub fn sandbox_root(&self, id: &str) -> PathBuf {
        self.config.root.join(SANDBOXES).join(id)
    }

    /// Directory of a sandbox's volatile state (shm mount).
    pub fn sandbox_state(&self, id: &str) -> PathBuf {
        self.config.state.join(SANDBOXES).join(id)
    }

    /// Directory of a container's I/O FIFOs.
    pub fn container_io_dir(&self, id: &str) -> PathBuf {
        self.config.state.join(CONTAINERS).join(id)
    }

    /// Re-read the image list from the backend into the store.
    pub async fn refresh_images(&self) -> Result<()> {
        let images = self.backend.list_images().await?;
        let index = ImageIndex::new(images);
        self.store
            .image_user_files
            .retain(|id| index.find(id).is_some());
        self.store.images.store(Arc::new(index));
        Ok(())
    }

    /// Make sure the pause image is present: the built-in one is imported when missing.
    pub async fn ensure_pause_image(&self) -> Result<()> {
        if self.store.images.load().find(&self.pause_image).is_some() {
            return Ok(());
        }
        if self.config.pause_image.is_some() {
            tracing::warn!(image = %self.pause_image, "configured pause image is not present; sandboxes fail until it is");
            return Ok(());
        }
        let bundle = crate::pause::bundle(runtime_backends::oci::node_architecture());
        self.backend.import_image(bundle).await?;
        self.refresh_images().await?;
        tracing::info!(image = %self.pause_image, "imported the built-in pause image");
        Ok(())
    }

    /// Refresh slow-changing facts (images, image filesystem usage, writable-layer sizes, the
    /// CNI network) until crius stops.
    pub fn spawn_refresher(self: &Arc<Self>) {
        self.network.spawn_watcher();
        self.spawn_layer_usage();
        let crius = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            let mut ticks: u64 = 0;
            loop {
                tick.tick().await;
                let Some(crius) = crius.upgrade() else { return };
                ticks += 1;
                // Every 30 s: what bursts of work freed goes back to the OS.
                if ticks.is_multiple_of(6) {
                    crate::memory::release_free();
                }
                let up = crius.backend.version().await.is_ok();
                crius
                    .backend_up
                    .store(up, std::sync::atomic::Ordering::Relaxed);
                if !up {
                    continue;
                }
                if let Err(e) = crius.refresh_images().await {
                    tracing::debug!(error = %e, "image refresh failed");
                }
            }
        });
        // The image filesystem's usage walks every layer on the node, so it has its own
        // loop: a slow walk (it runs at the lowest CPU priority) never holds up the liveness
        // probe and image refresh above. Every 10 s, as containerd's own CRI collects it.
        let crius = Arc::downgrade(self);
        tokio::spawn(async move {
            // Start-up measured it already.
            let first = tokio::time::Instant::now() + IMAGE_FS_PERIOD;
            let mut tick = tokio::time::interval_at(first, IMAGE_FS_PERIOD);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(crius) = crius.upgrade() else { return };
                if !crius.backend_healthy() {
                    continue;
                }
                crius.measure_image_fs(FsWalk::Changed).await;
            }
        });
    }

    /// Measure the image filesystem's usage now; ImageFsInfo answers it until the next one.
    /// `walk` is [`FsWalk::Changed`] for the periodic measurement, [`FsWalk::Appeared`]
    /// right after images went (RemoveImage).
    pub async fn measure_image_fs(&self, walk: FsWalk) {
        let _measuring = self.image_fs_measuring.lock().await;
        let began = std::time::Instant::now();
        match self.backend.image_fs_usage(walk).await {
            Ok(usage) => self.image_fs.store(Arc::new(ImageFsSample {
                usage,
                measured_at_nanos: now_nanos(),
            })),
            Err(e) => tracing::debug!(error = %e, "image filesystem usage failed"),
        }
        tracing::debug!(
            elapsed_ms = began.elapsed().as_millis() as u64,
            ?walk,
            "image filesystem usage measured"
        );
    }

    pub fn backend_healthy(&self) -> bool {
        self.backend_up.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The engine as the pods of runtime handler `handler` see it.
    pub fn engine<'a>(&'a self, handler: &'a str) -> crate::features::Engine<'a> {
        crate::features::Engine {
            backend: self.backend.name(),
            handler,
            features: self.backend.features(handler),
        }
    }

    pub fn not_found_sandbox(id: &str) -> Error {
        Error::NotFound(format!("pod sandbox {id:?} not found"))
    }

    pub fn not_found_container(id: &str) -> Error {
        Error::NotFound(format!("container {id:?} not found"))
    }
}

/// A fresh random 64-hex-digit id, like containerd's.
pub fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

pub fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

fn own_oom_score_adj() -> i64 {
    std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod seam_tests {
    use std::path::Path;

    /// Every `.rs` file below `dir`.
    fn sources(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                sources(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }

    /// The shim speaks to engines only through the `Backend` trait: only the file that
    /// picks the backend may name one (DESIGN.md decision 12).
    #[test]
    fn only_main_names_a_backend_implementation() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&root, &mut files);
        assert!(
            files.len() > 50,
            "found only {} sources in {}",
            files.len(),
            root.display()
        );
        // Spelled in pieces, so this file does not name them itself.
        let names = [
            ["runtime_backends::", "containerd"].concat(),
            ["runtime_backends::", "docker"].concat(),
        ];
        let offenders: Vec<String> = files
            .iter()
            .filter(|f| !f.ends_with("src/main.rs"))
            .filter(|f| {
                std::fs::read_to_string(f)
                    .is_ok_and(|text| names.iter().any(|name| text.contains(name.as_str())))
            })
            .map(|f| f.display().to_string())
            .collect();
        assert!(
            offenders.is_empty(),
            "files naming a backend: {offenders:?}"
        );
    }
}
