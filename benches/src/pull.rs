//! Image pull: the large (≥ 50 MiB) test image pulled through CRI PullImage by crius and by
//! containerd's built-in CRI from one private registry; the figure is the ratio of
//! their pull times (goal ≤ 1.0).
//!
//! Both endpoints sit on one containerd whose content store is shared across namespaces: a
//! blob one endpoint left behind makes the other's pull nearly free, and a snapshot left in a
//! namespace spares that endpoint the unpack. So the endpoints alternate, each pull is followed
//! by RemoveImage, and before every pull the bench waits until neither namespace holds the
//! image, its blobs are gone from the content store and its snapshots from the snapshotter
//! (containerd garbage-collects them some time after the delete).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use conformance::harness::{images as test_images, Containerd, Images, Registry};
use cri_api::v1 as cri;
use sha2::{Digest, Sha256};

use crate::measure::{Pull, PullReport};
use crate::target::{status_text, Clients};

/// Where the large image is pushed in the private registry.
const REPOSITORY: &str = "crius/large";
const TAG: &str = "1";
/// How long containerd gets to garbage-collect a removed image.
const GC_TIMEOUT: Duration = Duration::from_secs(60);
const GC_POLL: Duration = Duration::from_millis(100);
/// Far above any sane local pull; only keeps a stuck endpoint from hanging the bench.
const PULL_TIMEOUT: Duration = Duration::from_secs(600);

/// One endpoint to pull through, and the containerd namespace its images live in.
pub struct PullEndpoint<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub clients: &'a Clients,
}

/// `rounds` pulls per endpoint, alternating. Never fails: an error ends the phase and is kept
/// in the report beside the pulls made until then.
pub async fn measure(
    containerd: &Containerd,
    endpoints: &[PullEndpoint<'_>],
    rounds: usize,
) -> PullReport {
    let mut report = PullReport::default();
    if let Err(e) = pull_rounds(containerd, endpoints, rounds, &mut report).await {
        eprintln!("bench: image pull phase stopped: {e:#}");
        report.error = Some(format!("{e:#}"));
    }
    report.summarise();
    report
}

async fn pull_rounds(
    containerd: &Containerd,
    endpoints: &[PullEndpoint<'_>],
    rounds: usize,
    report: &mut PullReport,
) -> Result<()> {
    let images = Images::get()?;
    let large = images.image(test_images::LARGE)?;
    let registry = Registry::start(false)?;
    let image = images.push(
        &registry,
        test_images::LARGE,
        &format!("{REPOSITORY}:{TAG}"),
    )?;
    report.image = image.clone();

    let mut sizes = BTreeMap::new();
    for digest in large
        .layers
        .iter()
        .chain([&large.config_digest, &large.digest])
    {
        sizes.insert(digest.clone(), registry_blob_size(&registry, digest)?);
    }
    report.image_bytes = sizes.values().sum();
    let (large_layer, _) = sizes
        .iter()
        .filter(|(digest, _)| large.layers.contains(digest))
        .max_by_key(|(_, bytes)| **bytes)
        .context("the large test image has no layers")?;
    let large_layer = large_layer.clone();

    let namespaces: Vec<&str> = endpoints.iter().map(|e| e.namespace).collect();
    let mut store = Store {
        containerd,
        namespaces,
        repository: format!("{}/{REPOSITORY}", registry.addr()),
        config_digest: large.config_digest.clone(),
        blobs: Vec::new(),
        snapshots: Vec::new(),
    };
    // Whatever of the image is already there (the busybox base layer the bench imported into
    // both namespaces) stays there for every pull; the rest must be gone before each one.
    let blobs_before: Vec<String> = sizes
        .keys()
        .filter(|digest| store.blob_path(digest).exists())
        .cloned()
        .collect();
    if blobs_before.contains(&large_layer) {
        bail!(
            "the large layer {large_layer} is in containerd's content store before the first \
             pull; no pull would download it"
        );
    }
    for digest in &blobs_before {
        let holders = store.namespaces_holding_blob(digest)?;
        report.notes.push(format!(
            "{digest} ({:.1} MiB, a base layer) is in the content store before the pulls \
             (namespaces holding it: {}); it is not fetched by any pull",
            sizes.get(digest).copied().unwrap_or(0) as f64 / (1024.0 * 1024.0),
            if holders.is_empty() {
                "none".to_string()
            } else {
                holders.join(", ")
            }
        ));
    }
    store.blobs = sizes
        .keys()
        .filter(|digest| !blobs_before.contains(digest))
        .cloned()
        .collect();
    report.fetched_bytes = store.blobs.iter().filter_map(|d| sizes.get(d)).sum();
    let snapshots_before = store.snapshot_keys()?;
    store.snapshots = chain_ids(&large.diff_ids)
        .into_iter()
        .filter(|chain_id| !snapshots_before.contains(chain_id))
        .collect();

    let blob_prefix = format!("/v2/{REPOSITORY}/blobs/");
    for round in 0..rounds {
        for endpoint in endpoints {
            store
                .wait_until_clean(&format!("before pull {} on {}", round + 1, endpoint.name))
                .await?;
            let mark = registry.mark()?;
            let begin = Instant::now();
            pull(endpoint.clients, &image)
                .await
                .with_context(|| format!("{} pull {}", endpoint.name, round + 1))?;
            let seconds = begin.elapsed().as_secs_f64();
            let served: Vec<String> = registry
                .requests()?
                .into_iter()
                .skip(mark)
                .filter(|r| {
                    r.method == "GET"
                        && r.path.starts_with(&blob_prefix)
                        && (200..400).contains(&r.status)
                })
                .map(|r| r.path)
                .collect();
            let fetched_large_layer = served.iter().any(|path| path.ends_with(&large_layer));
            if !fetched_large_layer {
                report.notes.push(format!(
                    "{} pull {} did not download the large layer (registry log): not a cold pull",
                    endpoint.name,
                    round + 1
                ));
            }
            eprintln!(
                "bench: {} pull {}: {seconds:.2}s, {} blob GETs",
                endpoint.name,
                round + 1,
                served.len()
            );
            report.pulls.push(Pull {
                endpoint: endpoint.name.to_string(),
                round,
                seconds,
                blob_gets: served.len(),
                fetched_large_layer,
            });
            let unseen = store.unseen_after_pull(endpoint.namespace, &large_layer)?;
            if !unseen.is_empty() {
                report.notes.push(format!(
                    "right after {} pull {} containerd showed no {}: the check that the image is \
                     gone before a pull cannot see these",
                    endpoint.name,
                    round + 1,
                    unseen.join(", ")
                ));
            }
            remove(endpoint.clients, &image)
                .await
                .with_context(|| format!("{} after pull {}", endpoint.name, round + 1))?;
            let waited = store
                .wait_until_clean(&format!(
                    "after RemoveImage on {} (pull {})",
                    endpoint.name,
                    round + 1
                ))
                .await?;
            eprintln!(
                "bench: {} pull {}: removed, gone from containerd after {:.2}s",
                endpoint.name,
                round + 1,
                waited.as_secs_f64()
            );
        }
    }
    note_differing_blob_gets(report);
    Ok(())
}

/// Different blob GET counts mean the endpoints did not download the same set of blobs.
fn note_differing_blob_gets(report: &mut PullReport) {
    let mut per_endpoint: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for pull in &report.pulls {
        per_endpoint
            .entry(&pull.endpoint)
            .or_default()
            .push(pull.blob_gets);
    }
    let mut distinct: Vec<&Vec<usize>> = per_endpoint.values().collect();
    distinct.sort();
    distinct.dedup();
    if distinct.len() > 1 {
        let counts: Vec<String> = per_endpoint
            .iter()
            .map(|(endpoint, gets)| format!("{endpoint} {gets:?}"))
            .collect();
        report.notes.push(format!(
            "the endpoints made different numbers of blob GETs per pull: {}",
            counts.join(", ")
        ));
    }
}

fn image_spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

async fn pull(clients: &Clients, image: &str) -> Result<()> {
    let request = cri::PullImageRequest {
        image: image_spec(image),
        auth: None,
        sandbox_config: None,
    };
    let mut img = clients.img.clone();
    tokio::time::timeout(PULL_TIMEOUT, img.pull_image(request))
        .await
        .with_context(|| format!("PullImage {image}: no answer within {PULL_TIMEOUT:?}"))?
        .map_err(|s| anyhow::anyhow!("PullImage {image}: {}", status_text(&s)))?;
    Ok(())
}

async fn remove(clients: &Clients, image: &str) -> Result<()> {
    let request = cri::RemoveImageRequest {
        image: image_spec(image),
    };
    clients
        .img
        .clone()
        .remove_image(request)
        .await
        .map_err(|s| anyhow::anyhow!("RemoveImage {image}: {}", status_text(&s)))?;
    Ok(())
}

/// Size of a blob as the registry stores it (distribution's filesystem layout).
fn registry_blob_size(registry: &Registry, digest: &str) -> Result<u64> {
    let hex = digest
        .strip_prefix("sha256:")
        .with_context(|| format!("{digest} is not a sha256 digest"))?;
    let prefix = hex.get(..2).context("short digest")?;
    let path = registry.dir().join(format!(
        "data/docker/registry/v2/blobs/sha256/{prefix}/{hex}/data"
    ));
    Ok(std::fs::metadata(&path)
        .with_context(|| format!("size of {}", path.display()))?
        .len())
}

/// Snapshot keys of committed layers: ChainID(L0) = DiffID(L0),
/// ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)) (OCI image spec, config.md).
fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chain: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(parent) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{parent} {diff_id}")))
            ),
        };
        chain.push(next);
    }
    chain
}

/// What of the pulled image containerd may still hold.
struct Store<'a> {
    containerd: &'a Containerd,
    namespaces: Vec<&'a str>,
    /// `127.0.0.1:<port>/<repo>`: image names starting with it are the pulled image.
    repository: String,
    /// containerd's CRI also names the image by its id.
    config_digest: String,
    /// Blobs that must be gone before a pull.
    blobs: Vec<String>,
    /// Snapshot keys (chain IDs) that must be gone before a pull.
    snapshots: Vec<String>,
}

impl Store<'_> {
    /// The blob in the content store itself, below the namespaces.
    fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.containerd
            .root()
            .join("io.containerd.content.v1.content/blobs/sha256")
            .join(hex)
    }

    fn namespace_blobs(&self, namespace: &str) -> Result<Vec<String>> {
        Ok(self
            .containerd
            .ctr_ns(namespace, ["content", "ls", "-q"])?
            .lines()
            .map(|l| l.trim().to_string())
            .collect())
    }

    fn namespaces_holding_blob(&self, digest: &str) -> Result<Vec<String>> {
        let mut holders = Vec::new();
        for namespace in &self.namespaces {
            if self.namespace_blobs(namespace)?.iter().any(|d| d == digest) {
                holders.push(namespace.to_string());
            }
        }
        Ok(holders)
    }

    /// Snapshot keys of every namespace (overlayfs, the default snapshotter of both).
    fn snapshot_keys(&self) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        for namespace in &self.namespaces {
            keys.extend(self.namespace_snapshot_keys(namespace)?);
        }
        Ok(keys)
    }

    fn namespace_snapshot_keys(&self, namespace: &str) -> Result<Vec<String>> {
        Ok(self
            .containerd
            .ctr_ns(namespace, ["snapshots", "ls"])?
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect())
    }

    /// Everything of the image still there, described.
    fn leftovers(&self) -> Result<Vec<String>> {
        let mut found = Vec::new();
        for namespace in &self.namespaces {
            for name in self.containerd.images(namespace)? {
                if name.starts_with(&self.repository) || name == self.config_digest {
                    found.push(format!("image {name} in namespace {namespace}"));
                }
            }
            let blobs = self.namespace_blobs(namespace)?;
            for digest in self.blobs.iter().filter(|d| blobs.contains(d)) {
                found.push(format!("blob {digest} in namespace {namespace}"));
            }
            let keys = self.namespace_snapshot_keys(namespace)?;
            for chain_id in self.snapshots.iter().filter(|c| keys.contains(c)) {
                found.push(format!("snapshot {chain_id} in namespace {namespace}"));
            }
        }
        for digest in &self.blobs {
            if self.blob_path(digest).exists() {
                found.push(format!("blob {digest} in the shared content store"));
            }
        }
        Ok(found)
    }

    /// What a pull into `namespace` should have left and is not seen: the image, its large
    /// layer and its snapshots. Anything listed here would slip through [`Store::leftovers`].
    fn unseen_after_pull(&self, namespace: &str, large_layer: &str) -> Result<Vec<String>> {
        let mut unseen = Vec::new();
        let names = self.containerd.images(namespace)?;
        if !names.iter().any(|n| n.starts_with(&self.repository)) {
            unseen.push(format!(
                "image {} in namespace {namespace}",
                self.repository
            ));
        }
        if !self
            .namespace_blobs(namespace)?
            .iter()
            .any(|d| d == large_layer)
        {
            unseen.push(format!("blob {large_layer} in namespace {namespace}"));
        }
        if !self.blob_path(large_layer).exists() {
            unseen.push(format!("blob {large_layer} in the shared content store"));
        }
        let keys = self.namespace_snapshot_keys(namespace)?;
        for chain_id in self.snapshots.iter().filter(|c| !keys.contains(c)) {
            unseen.push(format!("snapshot {chain_id} in namespace {namespace}"));
        }
        Ok(unseen)
    }

    /// Waits until nothing of the image is left, or fails saying what stayed; returns how
    /// long that took.
    async fn wait_until_clean(&self, when: &str) -> Result<Duration> {
        let begin = Instant::now();
        let deadline = begin + GC_TIMEOUT;
        loop {
            let left = self.leftovers()?;
            if left.is_empty() {
                return Ok(begin.elapsed());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{when}: containerd still holds {} after {GC_TIMEOUT:?}; the next pull would \
                     not download everything, so the pulls stopped",
                    left.join(", ")
                );
            }
            tokio::time::sleep(GC_POLL).await;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let diff_ids = [
            "sha256:bebb8d1fbdc7538255d8c7870fc45640554ebaf49f6d9aceb7bae3ef349de308".to_string(),
            "sha256:c84cf2b6d1855194807c7cb120d65070f728ec49a3296f2ded1e49377d4ced60".to_string(),
        ];
        assert_eq!(
            chain_ids(&diff_ids),
            vec![
                diff_ids[0].clone(),
                "sha256:4433c9f5fc3927a3f0ba89d50810bac9d9f9242980394c3e3d1238b185d90d8f"
                    .to_string(),
            ]
        );
    }

    #[test]
    fn differing_blob_gets_are_noted() {
        let pull = |endpoint: &str, blob_gets| Pull {
            endpoint: endpoint.into(),
            round: 0,
            seconds: 1.0,
            blob_gets,
            fetched_large_layer: true,
        };
        let mut same = PullReport {
            pulls: vec![pull("crius", 2), pull("containerd", 2)],
            ..PullReport::default()
        };
        note_differing_blob_gets(&mut same);
        assert!(same.notes.is_empty());
        let mut different = PullReport {
            pulls: vec![pull("crius", 3), pull("containerd", 2)],
            ..PullReport::default()
        };
        note_differing_blob_gets(&mut different);
        assert_eq!(different.notes.len(), 1, "{:?}", different.notes);
    }
}
