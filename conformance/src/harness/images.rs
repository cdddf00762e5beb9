//! The test images: built once per process (and cached across processes) by
//! `scripts/mkimage.py --all`, with known references and digests.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::containerd::Containerd;
use super::dockerd::Dockerd;
use super::registry::Registry;
use super::util::{random_hex, run, run_stdout, scripts_dir};

/// busybox, one layer, CMD ["sh"].
pub const BUSYBOX: &str = "localhost/crius/busybox:1";
/// Same manifest as [`BUSYBOX`].
pub const BUSYBOX_LATEST: &str = "localhost/crius/busybox:latest";
/// Same manifest as [`BUSYBOX`].
pub const BUSYBOX_2: &str = "localhost/crius/busybox:2";
/// USER crius (1234:1234, supplementary group extra 5678), ENTRYPOINT/CMD/WORKDIR/ENV set.
pub const USER: &str = "localhost/crius/user:1";
/// Like [`USER`] but USER 1234 (numeric).
pub const USER_UID: &str = "localhost/crius/user:uid";
/// Five layers with overwrite, whiteout, opaque dir and one gzip layer.
pub const LAYERS: &str = "localhost/crius/layers:1";
/// busybox + one 50 MiB incompressible layer.
pub const LARGE: &str = "localhost/crius/large:1";
/// OCI index: linux/amd64 + linux/arm64/v8.
pub const MULTIARCH: &str = "localhost/crius/multiarch:1";
/// Pause image for containerd's CRI (`sandbox_image`).
pub const PAUSE: &str = "localhost/crius/pause:1";

/// Every reference mkimage.py builds.
pub const ALL_REFS: [&str; 9] = [
    BUSYBOX,
    BUSYBOX_LATEST,
    BUSYBOX_2,
    USER,
    USER_UID,
    LAYERS,
    LARGE,
    MULTIARCH,
    PAUSE,
];

/// One reference in an archive, as recorded in `images.json`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ImageRef {
    /// Full name, e.g. `localhost/crius/busybox:1`.
    #[serde(rename = "ref")]
    pub reference: String,
    /// `org.opencontainers.image.ref.name` in the archive (the tag): `oci-archive:<tar>:<ref_name>`.
    pub ref_name: String,
    /// Digest of the manifest (or of the index, for multiarch): the repo digest.
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    /// Config digest (the image ID) of the linux/amd64 image.
    pub config_digest: String,
    /// Layer blob digests (linux/amd64).
    pub layers: Vec<String>,
    /// Uncompressed layer digests (linux/amd64).
    pub diff_ids: Vec<String>,
    pub platforms: Vec<Platform>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
    /// Manifest digest (index entries only).
    #[serde(default)]
    pub digest: Option<String>,
    /// Config digest (index entries only).
    #[serde(default)]
    pub config_digest: Option<String>,
}

/// One archive (all the tags of one image kind).
#[derive(Debug, Clone)]
pub struct TestImage {
    /// `busybox`, `user`, `layers`, `large`, `multiarch`, `pause`.
    pub kind: String,
    /// OCI + docker ("both") archive: for `ctr import`, `skopeo copy oci-archive:` and `docker load`.
    pub tar: PathBuf,
    pub refs: Vec<ImageRef>,
}

#[derive(Deserialize)]
struct ImagesJson {
    images: BTreeMap<String, KindJson>,
}

#[derive(Deserialize)]
struct KindJson {
    tar: String,
    refs: Vec<ImageRef>,
}

/// The built test images.
#[derive(Debug)]
pub struct Images {
    dir: PathBuf,
    images: Vec<TestImage>,
}

static IMAGES: OnceLock<Result<Images, String>> = OnceLock::new();

impl Images {
    /// Builds the images once per process into
    /// `$CRIUS_TEST_IMAGE_CACHE` (default `/var/tmp/crius-test-images`)`/<hash>/`, where the hash
    /// covers mkimage.py, /bin/busybox and the Python version; reuses a complete earlier build.
    pub fn get() -> Result<&'static Images> {
        IMAGES
            .get_or_init(|| Images::build().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow!("building the test images: {e}"))
    }

    fn build() -> Result<Images> {
        let cache = std::env::var_os("CRIUS_TEST_IMAGE_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/tmp/crius-test-images"));
        Images::build_into(&cache)
    }

    /// Builds (or reuses) the images under `cache/<hash>/`.
    pub fn build_into(cache: &Path) -> Result<Images> {
        let script = scripts_dir().join("mkimage.py");
        let python = python();
        let mut h = Sha256::new();
        h.update(fs::read(&script).with_context(|| format!("reading {}", script.display()))?);
        h.update(
            fs::read("/bin/busybox").context("reading /bin/busybox (install busybox-static)")?,
        );
        let version = run(
            Command::new(&python).arg("--version"),
            Duration::from_secs(30),
        )?;
        h.update(&version.stdout);
        h.update(&version.stderr);
        let key = hex::encode(&h.finalize()[..8]);
        let dir = cache.join(&key);
        if !dir.join("images.json").is_file() {
            fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
            let tmp = cache.join(format!(
                "{key}.tmp-{}-{}",
                std::process::id(),
                random_hex(6)
            ));
            let res = run_stdout(
                Command::new(&python).arg(&script).arg("--all").arg(&tmp),
                Duration::from_secs(600),
            );
            if let Err(e) = res {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e.context("running scripts/mkimage.py --all"));
            }
            if let Err(e) = fs::rename(&tmp, &dir) {
                let _ = fs::remove_dir_all(&tmp);
                if !dir.join("images.json").is_file() {
                    return Err(e).with_context(|| {
                        format!("renaming {} to {}", tmp.display(), dir.display())
                    });
                }
            }
            prune_cache(cache, &key);
        }
        Images::load(&dir)
    }

    /// Reads `<dir>/images.json` written by `mkimage.py --all <dir>`.
    pub fn load(dir: &Path) -> Result<Images> {
        let p = dir.join("images.json");
        let body = fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        let parsed: ImagesJson =
            serde_json::from_slice(&body).with_context(|| format!("parsing {}", p.display()))?;
        let images = parsed
            .images
            .into_iter()
            .map(|(kind, k)| TestImage {
                kind,
                tar: dir.join(k.tar),
                refs: k.refs,
            })
            .collect();
        Ok(Images {
            dir: dir.to_path_buf(),
            images,
        })
    }

    /// The cache dir holding the archives and images.json.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// All archives.
    pub fn all(&self) -> &[TestImage] {
        &self.images
    }

    /// The archive of a kind (`busybox`, `user`, `layers`, `large`, `multiarch`, `pause`).
    pub fn kind(&self, kind: &str) -> Result<&TestImage> {
        self.images
            .iter()
            .find(|i| i.kind == kind)
            .with_context(|| format!("no test image kind {kind}"))
    }

    /// The archive holding a reference.
    pub fn archive_of(&self, reference: &str) -> Result<&TestImage> {
        self.images
            .iter()
            .find(|i| i.refs.iter().any(|r| r.reference == reference))
            .with_context(|| format!("no test image {reference}"))
    }

    /// Metadata (digests, layers...) of a reference.
    pub fn image(&self, reference: &str) -> Result<&ImageRef> {
        self.archive_of(reference)?
            .refs
            .iter()
            .find(|r| r.reference == reference)
            .with_context(|| format!("no test image {reference}"))
    }

    /// Path of the archive holding a reference.
    pub fn tar(&self, reference: &str) -> Result<&Path> {
        Ok(&self.archive_of(reference)?.tar)
    }

    /// Imports every archive (every reference) into a containerd namespace.
    pub fn import_all(&self, containerd: &Containerd, namespace: &str) -> Result<()> {
        for i in &self.images {
            containerd.import_image(namespace, &i.tar)?;
        }
        Ok(())
    }

    /// Imports the archive holding `reference` (so all its tags) into a containerd namespace.
    pub fn import(&self, containerd: &Containerd, namespace: &str, reference: &str) -> Result<()> {
        containerd
            .import_image(namespace, self.tar(reference)?)
            .map(|_| ())
    }

    /// Pushes `reference` to the registry as `dest` (`repo:tag`); returns `<addr>/<dest>`.
    pub fn push(&self, registry: &Registry, reference: &str, dest: &str) -> Result<String> {
        let arch = self.archive_of(reference)?;
        let r = self.image(reference)?;
        if arch.refs.len() == 1 {
            registry.push_oci_archive(&arch.tar, dest)
        } else {
            registry.push_oci_archive_ref(&arch.tar, &r.ref_name, dest)
        }
    }

    /// `docker load`s every archive (multiarch loads as its linux/amd64 image).
    pub fn docker_load_all(&self, dockerd: &Dockerd) -> Result<()> {
        for i in &self.images {
            dockerd.load_image(&i.tar)?;
        }
        Ok(())
    }
}

/// `/usr/bin/python3` when present (install-deps installs it), else `python3` from PATH.
pub fn python() -> PathBuf {
    let sys = Path::new("/usr/bin/python3");
    if sys.is_file() {
        sys.to_path_buf()
    } else {
        PathBuf::from("python3")
    }
}

/// Removes other builds older than an hour and abandoned temp builds.
fn prune_cache(cache: &Path, keep: &str) {
    let Ok(rd) = fs::read_dir(cache) else { return };
    let hour = Duration::from_secs(3600);
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == keep {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > hour);
        if old {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// Fails unless `reference` is one of [`ALL_REFS`] (guards typos in tests).
pub fn check_ref(reference: &str) -> Result<()> {
    if ALL_REFS.contains(&reference) {
        Ok(())
    } else {
        bail!("{reference} is not a harness test image (see harness::images::ALL_REFS)")
    }
}
