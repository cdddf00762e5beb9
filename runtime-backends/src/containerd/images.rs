//! Images in containerd: listing and resolving records, importing blobs, unpacking layers
//! into the snapshotter, and the image filesystem's usage.

use std::collections::HashMap;
use std::sync::Mutex;

use containerd_client::services::v1 as api;
use containerd_client::services::v1::snapshots as snap;
use containerd_client::types::{Descriptor, Mount};
use futures::StreamExt;
use serde_json::Value;

use super::{map_status, now_timestamp, Containerd, SNAPSHOTTER};
use crate::oci::{
    chain_ids, diff_id_mismatch, node_architecture, parse_config, platform_manifest, repository_of,
    sha256_digest, MEDIA_DOCKER_LIST, MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST,
};
use crate::{BackendError, Blob, FsUsage, FsWalk, ImageBundle, ImageConfig, ImageRecord, Result};

/// What one manifest resolves to; immutable for a given target digest, so it is cached.
#[derive(Debug, Clone)]
struct Resolved {
    manifest_digest: String,
    config_digest: String,
    config: ImageConfig,
    diff_ids: Vec<String>,
    size: u64,
}

/// Parsed manifests by target digest: listing images stays cheap however often it runs.
#[derive(Default)]
pub(crate) struct ImageCache {
    by_target: Mutex<HashMap<String, Resolved>>,
}

fn is_digest_name(name: &str) -> bool {
    name.contains('@')
}

/// A bare image id (`sha256:<64 hex>`), which containerd's CRI also keeps as an image name.
fn is_id_name(name: &str) -> bool {
    name.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl Containerd {
    pub(crate) async fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let mut stream = self
            .content()
            .read(self.req(api::ReadContentRequest {
                digest: digest.to_string(),
                offset: 0,
                size: 0,
            }))
            .await
            .map_err(|s| map_status(s, "content", digest))?
            .into_inner();
        let mut data = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|s| map_status(s, "content", digest))?;
            data.extend_from_slice(&chunk.data);
        }
        Ok(data)
    }

    /// Follow an image target (index or manifest) to this node's manifest and config.
    async fn resolve(&self, target: &Descriptor) -> Result<Resolved> {
        if let Ok(cache) = self.inner.images.by_target.lock() {
            if let Some(hit) = cache.get(&target.digest) {
                return Ok(hit.clone());
            }
        }
        let mut manifest_desc = target.clone();
        let mut size = 0u64;
        if manifest_desc.media_type == MEDIA_OCI_INDEX
            || manifest_desc.media_type == MEDIA_DOCKER_LIST
        {
            let index_raw = self.read_blob(&manifest_desc.digest).await?;
            size += index_raw.len() as u64;
            let index: Value = serde_json::from_slice(&index_raw).map_err(|e| {
                BackendError::InvalidArgument(format!(
                    "image index {} is not JSON: {e}",
                    target.digest
                ))
            })?;
            let chosen = platform_manifest(&index).ok_or_else(|| {
                BackendError::FailedPrecondition(format!(
                    "image index {} has no manifest for linux/{}",
                    target.digest,
                    node_architecture()
                ))
            })?;
            manifest_desc = Descriptor {
                media_type: chosen["mediaType"]
                    .as_str()
                    .unwrap_or(MEDIA_OCI_MANIFEST)
                    .to_string(),
                digest: chosen["digest"].as_str().unwrap_or_default().to_string(),
                size: chosen["size"].as_i64().unwrap_or(0),
                annotations: HashMap::new(),
            };
        }
        let manifest_raw = self.read_blob(&manifest_desc.digest).await?;
        size += manifest_raw.len() as u64;
        let manifest: Value = serde_json::from_slice(&manifest_raw).map_err(|e| {
            BackendError::InvalidArgument(format!(
                "manifest {} is not JSON: {e}",
                manifest_desc.digest
            ))
        })?;
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        size += manifest["config"]["size"].as_u64().unwrap_or(0);
        if let Some(layers) = manifest["layers"].as_array() {
            size += layers
                .iter()
                .map(|l| l["size"].as_u64().unwrap_or(0))
                .sum::<u64>();
        }
        let config_raw = self.read_blob(&config_digest).await?;
        let (config, diff_ids) = parse_config(&config_raw)?;
        let resolved = Resolved {
            manifest_digest: manifest_desc.digest,
            config_digest,
            config,
            diff_ids,
            size,
        };
        if let Ok(mut cache) = self.inner.images.by_target.lock() {
            cache.insert(target.digest.clone(), resolved.clone());
        }
        Ok(resolved)
    }

    async fn raw_images(&self, filters: Vec<String>) -> Result<Vec<api::Image>> {
        Ok(self
            .images_client()
            .list(self.req(api::ListImagesRequest { filters }))
            .await
            .map_err(|s| map_status(s, "images", ""))?
            .into_inner()
            .images)
    }

    /// Group containerd's image names by image id into CRI-shaped records.
    async fn records(&self, images: Vec<api::Image>) -> Result<Vec<ImageRecord>> {
        let mut by_id: HashMap<String, ImageRecord> = HashMap::new();
        let mut order = Vec::new();
        for image in images {
            let Some(target) = image.target.as_ref() else {
                continue;
            };
            let resolved = match self.resolve(target).await {
                Ok(r) => r,
                // An image whose content is incomplete is not usable; skip it.
                Err(BackendError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            let record = by_id
                .entry(resolved.config_digest.clone())
                .or_insert_with(|| {
                    order.push(resolved.config_digest.clone());
                    let chain_id = chain_ids(&resolved.diff_ids).pop().unwrap_or_default();
                    ImageRecord {
                        id: resolved.config_digest.clone(),
                        repo_tags: Vec::new(),
                        repo_digests: Vec::new(),
                        size: resolved.size,
                        config: resolved.config.clone(),
                        diff_ids: resolved.diff_ids.clone(),
                        chain_id,
                        manifest_digest: resolved.manifest_digest.clone(),
                        labels: image.labels.clone(),
                    }
                });
            for (key, value) in &image.labels {
                record.labels.insert(key.clone(), value.clone());
            }
            if is_id_name(&image.name) {
                continue;
            }
            let digest_name = format!("{}@{}", repository_of(&image.name), target.digest);
            if !is_digest_name(&image.name) && !record.repo_tags.contains(&image.name) {
                record.repo_tags.push(image.name.clone());
            }
            if !record.repo_digests.contains(&digest_name) {
                record.repo_digests.push(digest_name);
            }
        }
        let mut out = Vec::with_capacity(order.len());
        for id in order {
            if let Some(mut record) = by_id.remove(&id) {
                record.repo_tags.sort();
                record.repo_digests.sort();
                out.push(record);
            }
        }
        Ok(out)
    }

    pub(crate) async fn list_images_impl(&self) -> Result<Vec<ImageRecord>> {
        let images = self.raw_images(Vec::new()).await?;
        self.records(images).await
    }

    pub(crate) async fn image_impl(&self, reference: &str) -> Result<Option<ImageRecord>> {
        let direct = self
            .images_client()
            .get(self.req(api::GetImageRequest {
                name: reference.to_string(),
            }))
            .await;
        let target_digest = match direct {
            Ok(response) => response
                .into_inner()
                .image
                .and_then(|i| i.target)
                .map(|t| t.digest),
            Err(status) if status.code() == tonic::Code::NotFound => None,
            Err(status) => return Err(map_status(status, "image", reference)),
        };
        let all = self.list_images_impl().await?;
        let wanted_id = reference
            .strip_prefix("sha256:")
            .map(|_| reference.to_string());
        Ok(all.into_iter().find(|record| {
            if let Some(id) = &wanted_id {
                return &record.id == id;
            }
            match &target_digest {
                Some(_) => {
                    record.repo_tags.iter().any(|t| t == reference)
                        || record.repo_digests.iter().any(|d| d == reference)
                }
                None => record.repo_digests.iter().any(|d| d == reference),
            }
        }))
    }

    pub(crate) async fn remove_image_name_impl(&self, name: &str, collect: bool) -> Result<()> {
        match self
            .images_client()
            .delete(self.req(api::DeleteImageRequest {
                name: name.to_string(),
                // containerd's garbage collection runs before it answers.
                sync: collect,
                target: None,
            }))
            .await
        {
            Ok(_) => {}
            Err(status) if status.code() == tonic::Code::NotFound => {}
            Err(status) => return Err(map_status(status, "image", name)),
        }
        if collect {
            self.collect_again().await;
        }
        Ok(())
    }

    /// One more garbage collection, begun after the last one has finished.
    ///
    /// A synchronous delete waits for the collection running when it asks, if there is one;
    /// containerd answers every waiter with it. The names deleted just before (without
    /// waiting) start such collections, and one may have marked what is alive before the
    /// last name went: the image's layers then outlive RemoveImage until a later collection
    /// (0.25–0.5 s here). containerd's own CRI makes its deletes in-process, faster than a
    /// collection starts; crius's go over gRPC. A collection asked for now begins after the
    /// one just waited for, so it sees the last name gone.
    async fn collect_again(&self) {
        match self.create_lease("collect").await {
            Ok(lease) => self.delete_lease(&lease, true).await,
            Err(e) => tracing::warn!(error = %e, "could not ask containerd for a collection"),
        }
    }

    /// A lease named `crius-<purpose>-<random>`.
    pub(crate) async fn create_lease(&self, purpose: &str) -> Result<String> {
        let id = format!("crius-{purpose}-{}", rand::random::<u64>());
        let mut labels = HashMap::new();
        // containerd removes an abandoned lease (crius crashed while holding it) after this time.
        let expire = chrono::Utc::now() + chrono::Duration::hours(1);
        labels.insert("containerd.io/gc.expire".to_string(), expire.to_rfc3339());
        self.leases()
            .create(self.req(api::CreateRequest {
                id: id.clone(),
                labels,
            }))
            .await
            .map_err(|s| map_status(s, "lease", &id))?;
        Ok(id)
    }

    /// Delete a lease; with `sync`, containerd also collects what only the lease held
    /// before answering.
    pub(crate) async fn delete_lease(&self, id: &str, sync: bool) {
        let result = self
            .leases()
            .delete(self.req(api::DeleteRequest {
                id: id.to_string(),
                sync,
            }))
            .await;
        if let Err(status) = result {
            tracing::warn!(lease = id, error = %status, "could not delete lease");
        }
    }

    /// Add a resource to a lease; true when containerd took it. Resources are leased before
    /// they are looked at, so one found present cannot be collected (e.g. by a concurrent
    /// RemoveImage) before the image that needs it is recorded.
    pub(crate) async fn lease_resource(&self, lease: &str, kind: &str, id: &str) -> bool {
        let resource = api::Resource {
            id: id.to_string(),
            r#type: kind.to_string(),
        };
        let result = self
            .leases()
            .add_resource(self.req(api::AddResourceRequest {
                id: lease.to_string(),
                resource: Some(resource),
            }))
            .await;
        match result {
            Ok(_) => true,
            Err(status) => {
                tracing::debug!(lease, kind, id, error = %status, "could not add a resource to the lease");
                false
            }
        }
    }

    pub(crate) async fn content_exists(&self, digest: &str) -> Result<bool> {
        match self
            .content()
            .info(self.req(api::InfoRequest {
                digest: digest.to_string(),
            }))
            .await
        {
            Ok(_) => Ok(true),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(false),
            Err(status) => Err(map_status(status, "content", digest)),
        }
    }

    /// Write one blob into the content store (under `lease`), verifying its digest.
    pub(crate) async fn write_blob(
        &self,
        lease: &str,
        blob: &Blob,
        labels: HashMap<String, String>,
    ) -> Result<String> {
        let digest = sha256_digest(&blob.data);
        // Leased before it is looked at: a blob found present (say, left by an image just
        // removed) cannot be collected before the image that needs it is named.
        self.lease_resource(lease, "content", &digest).await;
        if self.content_exists(&digest).await? {
            if !labels.is_empty() {
                let info = api::Info {
                    digest: digest.clone(),
                    labels: labels.clone(),
                    ..Default::default()
                };
                let mask = prost_types::FieldMask {
                    paths: labels.keys().map(|k| format!("labels.{k}")).collect(),
                };
                self.content()
                    .update(self.leased_req(
                        api::UpdateRequest {
                            info: Some(info),
                            update_mask: Some(mask),
                        },
                        lease,
                    )?)
                    .await
                    .map_err(|s| map_status(s, "content", &digest))?;
            }
            return Ok(digest);
        }
        const CHUNK: usize = 1 << 20;
        let total = i64::try_from(blob.data.len()).unwrap_or(i64::MAX);
        let reference = format!("crius-{digest}");
        let mut messages = Vec::new();
        let mut offset = 0usize;
        loop {
            let end = (offset + CHUNK).min(blob.data.len());
            messages.push(api::WriteContentRequest {
                action: api::WriteAction::Write as i32,
                r#ref: reference.clone(),
                total,
                expected: digest.clone(),
                offset: i64::try_from(offset).unwrap_or(i64::MAX),
                data: blob.data[offset..end].to_vec(),
                labels: HashMap::new(),
            });
            offset = end;
            if offset >= blob.data.len() {
                break;
            }
        }
        messages.push(api::WriteContentRequest {
            action: api::WriteAction::Commit as i32,
            r#ref: reference,
            total,
            expected: digest.clone(),
            offset: total,
            data: Vec::new(),
            labels,
        });
        let request = self.leased_req(futures::stream::iter(messages), lease)?;
        let mut responses = match self.content().write(request).await {
            Ok(r) => r.into_inner(),
            Err(status) if status.code() == tonic::Code::AlreadyExists => return Ok(digest),
            Err(status) => return Err(map_status(status, "content", &digest)),
        };
        while let Some(response) = responses.next().await {
            match response {
                Ok(_) => {}
                Err(status) if status.code() == tonic::Code::AlreadyExists => break,
                Err(status) => return Err(map_status(status, "content", &digest)),
            }
        }
        Ok(digest)
    }

    /// Unpack layers into committed snapshots named by chain id; already unpacked layers are
    /// skipped, so this is cheap for an image that is already there.
    pub(crate) async fn unpack(
        &self,
        lease: &str,
        layers: &[Descriptor],
        diff_ids: &[String],
    ) -> Result<String> {
        if layers.len() != diff_ids.len() {
            return Err(BackendError::InvalidArgument(format!(
                "image has {} layers but its config lists {} diff ids",
                layers.len(),
                diff_ids.len()
            )));
        }
        let chain = chain_ids(diff_ids);
        let mut parent = String::new();
        for ((layer, diff_id), chain_id) in layers.iter().zip(diff_ids).zip(&chain) {
            // An existing one is held by the lease until the image that needs it is recorded.
            if !self.snapshot_present(lease, chain_id).await {
                self.apply_layer(lease, layer, diff_id, &parent, chain_id)
                    .await?;
            }
            parent = chain_id.clone();
        }
        Ok(parent)
    }

    /// Whether the committed snapshot `chain_id` exists. It is leased first, so one found
    /// present stays until the image that needs it is recorded.
    pub(crate) async fn snapshot_present(&self, lease: &str, chain_id: &str) -> bool {
        self.lease_resource(lease, &format!("snapshots/{SNAPSHOTTER}"), chain_id)
            .await
            && self
                .snapshots()
                .stat(self.req(snap::StatSnapshotRequest {
                    snapshotter: SNAPSHOTTER.into(),
                    key: chain_id.to_string(),
                }))
                .await
                .is_ok()
    }

    /// Whether the blob `digest` is in the content store. It is leased first, so one found
    /// present stays until the image that needs it is recorded.
    pub(crate) async fn content_present(&self, lease: &str, digest: &str) -> Result<bool> {
        Ok(self.lease_resource(lease, "content", digest).await
            && self.content_exists(digest).await?)
    }

    /// An active snapshot on `parent` to extract the layer `chain_id` into: its key and
    /// mounts.
    pub(crate) async fn prepare_extraction(
        &self,
        lease: &str,
        parent: &str,
        chain_id: &str,
    ) -> Result<(String, Vec<Mount>)> {
        let key = format!("extract-{}-{chain_id}", rand::random::<u32>());
        let mounts = self
            .snapshots()
            .prepare(self.leased_req(
                snap::PrepareSnapshotRequest {
                    snapshotter: SNAPSHOTTER.into(),
                    key: key.clone(),
                    parent: parent.to_string(),
                    labels: HashMap::new(),
                },
                lease,
            )?)
            .await
            .map_err(|s| map_status(s, "snapshot", &key))?
            .into_inner()
            .mounts;
        Ok((key, mounts))
    }

    /// Apply a layer from the content store with the Diff service, checking that what it
    /// applied is `diff_id`.
    pub(crate) async fn apply_layer(
        &self,
        lease: &str,
        layer: &Descriptor,
        diff_id: &str,
        parent: &str,
        chain_id: &str,
    ) -> Result<()> {
        let (key, mounts) = self.prepare_extraction(lease, parent, chain_id).await?;
        self.apply_prepared(lease, layer, diff_id, &key, mounts, chain_id)
            .await
    }

    /// [`apply_layer`](Self::apply_layer) into an extraction snapshot already prepared.
    pub(crate) async fn apply_prepared(
        &self,
        lease: &str,
        layer: &Descriptor,
        diff_id: &str,
        key: &str,
        mounts: Vec<Mount>,
        chain_id: &str,
    ) -> Result<()> {
        let applied = self
            .diff()
            .apply(self.leased_req(
                api::ApplyRequest {
                    diff: Some(layer.clone()),
                    mounts,
                    payloads: HashMap::new(),
                    sync_fs: false,
                },
                lease,
            )?)
            .await;
        let applied = match applied {
            Ok(response) => response.into_inner().applied.map(|d| d.digest),
            Err(status) => {
                self.remove_snapshot(key).await;
                return Err(map_status(status, "layer", &layer.digest));
            }
        };
        if let Some(digest) = applied.filter(|d| d != diff_id) {
            self.remove_snapshot(key).await;
            return Err(diff_id_mismatch(&layer.digest, diff_id, &digest));
        }
        self.commit_extraction(lease, key, chain_id).await
    }

    /// Commit an extraction snapshot under its chain id; it is removed if that fails.
    pub(crate) async fn commit_extraction(
        &self,
        lease: &str,
        key: &str,
        chain_id: &str,
    ) -> Result<()> {
        let committed = self
            .snapshots()
            .commit(self.leased_req(
                snap::CommitSnapshotRequest {
                    snapshotter: SNAPSHOTTER.into(),
                    name: chain_id.to_string(),
                    key: key.to_string(),
                    labels: HashMap::new(),
                },
                lease,
            )?)
            .await;
        match committed {
            Ok(_) => Ok(()),
            // Another unpack of the same layer won the race; its snapshot serves us too.
            Err(status) if status.code() == tonic::Code::AlreadyExists => {
                self.remove_snapshot(key).await;
                Ok(())
            }
            Err(status) => {
                self.remove_snapshot(key).await;
                Err(map_status(status, "snapshot", chain_id))
            }
        }
    }

    pub(crate) async fn remove_snapshot(&self, key: &str) {
        let result = self
            .snapshots()
            .remove(self.req(snap::RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: key.to_string(),
            }))
            .await;
        if let Err(status) = result {
            if status.code() != tonic::Code::NotFound {
                tracing::warn!(snapshot = key, error = %status, "could not remove snapshot");
            }
        }
    }

    pub(crate) async fn import_image_impl(&self, bundle: ImageBundle) -> Result<ImageRecord> {
        let lease = self.create_lease("import").await?;
        let result = self.import_under_lease(&lease, &bundle).await;
        self.delete_lease(&lease, false).await;
        let manifest_digest = result?;
        let name = bundle.names.first().cloned().unwrap_or(manifest_digest);
        self.image_impl(&name).await?.ok_or(BackendError::NotFound {
            kind: "image",
            id: name,
        })
    }

    async fn import_under_lease(&self, lease: &str, bundle: &ImageBundle) -> Result<String> {
        let (_, diff_ids) = parse_config(&bundle.config.data)?;
        let chain = chain_ids(&diff_ids);
        let mut layer_descs = Vec::with_capacity(bundle.layers.len());
        for layer in &bundle.layers {
            let digest = self.write_blob(lease, layer, HashMap::new()).await?;
            layer_descs.push(Descriptor {
                media_type: layer.media_type.clone(),
                digest,
                size: i64::try_from(layer.data.len()).unwrap_or(i64::MAX),
                annotations: HashMap::new(),
            });
        }
        let mut config_labels = HashMap::new();
        if let Some(top) = chain.last() {
            config_labels.insert(
                format!("containerd.io/gc.ref.snapshot.{SNAPSHOTTER}"),
                top.clone(),
            );
        }
        let config_digest = self
            .write_blob(lease, &bundle.config, config_labels)
            .await?;
        let mut manifest_labels = HashMap::new();
        manifest_labels.insert(
            "containerd.io/gc.ref.content.config".to_string(),
            config_digest,
        );
        for (i, layer) in layer_descs.iter().enumerate() {
            manifest_labels.insert(
                format!("containerd.io/gc.ref.content.l.{i}"),
                layer.digest.clone(),
            );
        }
        let manifest_digest = self
            .write_blob(lease, &bundle.manifest, manifest_labels)
            .await?;
        self.unpack(lease, &layer_descs, &diff_ids).await?;
        let target = Descriptor {
            media_type: bundle.manifest.media_type.clone(),
            digest: manifest_digest.clone(),
            size: i64::try_from(bundle.manifest.data.len()).unwrap_or(i64::MAX),
            annotations: HashMap::new(),
        };
        for name in &bundle.names {
            self.put_image_name(name, &target, &bundle.labels).await?;
        }
        Ok(manifest_digest)
    }

    /// Create or repoint an image name at `target`.
    pub(crate) async fn put_image_name(
        &self,
        name: &str,
        target: &Descriptor,
        labels: &HashMap<String, String>,
    ) -> Result<()> {
        let image = api::Image {
            name: name.to_string(),
            labels: labels.clone(),
            target: Some(target.clone()),
            created_at: Some(now_timestamp()),
            updated_at: Some(now_timestamp()),
        };
        let created = self
            .images_client()
            .create(self.req(api::CreateImageRequest {
                image: Some(image.clone()),
                source_date_epoch: None,
            }))
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(status) if status.code() == tonic::Code::AlreadyExists => {
                let mut paths = vec!["target".to_string()];
                paths.extend(labels.keys().map(|k| format!("labels.{k}")));
                self.images_client()
                    .update(self.req(api::UpdateImageRequest {
                        image: Some(image),
                        update_mask: Some(prost_types::FieldMask { paths }),
                        source_date_epoch: None,
                    }))
                    .await
                    .map_err(|s| map_status(s, "image", name))?;
                Ok(())
            }
            Err(status) => Err(map_status(status, "image", name)),
        }
    }

    /// What a containerd plugin of type `kind` (and `id`, when given) exports under `key`,
    /// as containerd's introspection service reports it.
    pub(crate) async fn plugin_export(
        &self,
        kind: &str,
        id: Option<&str>,
        key: &str,
    ) -> Result<Option<String>> {
        let filter = match id {
            Some(id) => format!("type=={kind},id=={id}"),
            None => format!("type=={kind}"),
        };
        let plugins = self
            .introspection()
            .plugins(self.req(api::PluginsRequest {
                filters: vec![filter],
            }))
            .await
            .map_err(|s| map_status(s, "plugins", kind))?
            .into_inner()
            .plugins;
        Ok(plugins
            .into_iter()
            .find_map(|p| p.exports.get(key).cloned()))
    }

    /// The snapshotter's root directory.
    async fn snapshotter_root(&self) -> Result<Option<String>> {
        self.plugin_export("io.containerd.snapshotter.v1", Some(SNAPSHOTTER), "root")
            .await
    }

    pub(crate) async fn image_fs_usage_impl(&self, walk: FsWalk) -> Result<FsUsage> {
        let Some(root) = self.snapshotter_root().await? else {
            return Ok(FsUsage::default());
        };
        let walked_root = std::path::PathBuf::from(&root);
        let snapshots = std::sync::Arc::clone(&self.inner.snapshot_usage);
        // At the lowest priority, so the walk never delays an answer to kubelet.
        let (used_bytes, inodes_used) =
            crate::background::at_lowest_priority("crius-fs-usage", move || {
                let mounted = super::usage::mounted_snapshots(
                    std::path::Path::new("/proc/self/mountinfo"),
                    &walked_root.join("snapshots"),
                );
                tracing::debug!(
                    mounted = mounted.as_ref().map(std::collections::HashSet::len),
                    "measuring the snapshotter's usage"
                );
                let mut usage = snapshots.lock().unwrap_or_else(|p| p.into_inner());
                usage.measure(&walked_root, mounted.as_ref(), walk)
            })
            .await
            .map_err(|e| BackendError::Engine {
                engine: "containerd",
                message: format!("usage walk: {e}"),
            })?;
        Ok(FsUsage {
            used_bytes,
            inodes_used,
            mountpoint: root,
        })
    }
}
