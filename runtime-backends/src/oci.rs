//! Facts of the OCI image format any engine's images follow: media types, platform
//! selection in an index, chain ids, image configs, digests and repository names.

pub mod render;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{BackendError, ImageConfig, Result};

pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The entry of an image index (OCI index or Docker manifest list) for this node's platform.
pub(crate) fn platform_manifest(index: &Value) -> Option<&Value> {
    let arch = node_architecture();
    index["manifests"].as_array()?.iter().find(|m| {
        m["platform"]["os"].as_str() == Some("linux")
            && m["platform"]["architecture"].as_str() == Some(arch)
    })
}

/// A layer whose uncompressed content is not the diff id the image config lists.
pub(crate) fn diff_id_mismatch(layer: &str, expected: &str, got: &str) -> BackendError {
    BackendError::InvalidArgument(format!(
        "layer {layer} unpacks to {got}, but the image config lists diff id {expected}"
    ))
}

/// The OCI architecture name of this node.
pub fn node_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// Chain ids of a layer stack: the names of the committed snapshots, bottom to top.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chain: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(parent) => {
                let digest = Sha256::digest(format!("{parent} {diff_id}").as_bytes());
                format!("sha256:{}", hex::encode(digest))
            }
        };
        chain.push(next);
    }
    chain
}

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The hex of a canonical sha256 digest (`sha256:` and 64 lowercase hex digits).
pub(crate) fn sha256_hex(digest: &str) -> Option<&str> {
    digest.strip_prefix("sha256:").filter(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

fn string_list(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Parse an OCI/Docker image config blob.
pub fn parse_config(raw: &[u8]) -> Result<(ImageConfig, Vec<String>)> {
    let json: Value = serde_json::from_slice(raw)
        .map_err(|e| BackendError::InvalidArgument(format!("image config is not JSON: {e}")))?;
    let cfg = &json["config"];
    let labels = cfg["Labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let volumes = cfg["Volumes"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let config = ImageConfig {
        user: cfg["User"].as_str().unwrap_or_default().to_string(),
        env: string_list(&cfg["Env"]),
        entrypoint: string_list(&cfg["Entrypoint"]),
        cmd: string_list(&cfg["Cmd"]),
        working_dir: cfg["WorkingDir"].as_str().unwrap_or_default().to_string(),
        stop_signal: cfg["StopSignal"].as_str().unwrap_or_default().to_string(),
        labels,
        volumes,
        architecture: json["architecture"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        os: json["os"].as_str().unwrap_or_default().to_string(),
        raw: String::from_utf8_lossy(raw).into_owned(),
    };
    let diff_ids = string_list(&json["rootfs"]["diff_ids"]);
    Ok((config, diff_ids))
}

/// The repository part of a reference (`host/repo:tag` → `host/repo`).
pub fn repository_of(name: &str) -> &str {
    if let Some((repo, _)) = name.split_once('@') {
        return repo;
    }
    match name.rfind(':') {
        Some(colon) if !name[colon..].contains('/') => &name[..colon],
        _ => name,
    }
}

/// What an OCI runtime says it supports (`<runtime> features`, OCI runtime-spec
/// `features.md`, printed by runc >= 1.1, crun and youki). A runtime that prints nothing
/// usable supports none of the optional features.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuntimeFeatures {
    /// `rro` is among its mount options (recursive read-only bind mounts).
    pub recursive_read_only: bool,
    /// `linux.mountExtensions.idmap.enabled`.
    pub idmapped_mounts: bool,
    /// `user` is among its namespaces.
    pub user_namespaces: bool,
}

impl RuntimeFeatures {
    pub fn from_json(text: &[u8]) -> Result<RuntimeFeatures> {
        let json: Value = serde_json::from_slice(text).map_err(|e| {
            BackendError::InvalidArgument(format!("the runtime's features are not JSON: {e}"))
        })?;
        let listed = |list: &Value, name: &str| {
            list.as_array()
                .is_some_and(|items| items.iter().any(|i| i.as_str() == Some(name)))
        };
        Ok(RuntimeFeatures {
            recursive_read_only: listed(&json["mountOptions"], "rro"),
            idmapped_mounts: json["linux"]["mountExtensions"]["idmap"]["enabled"]
                .as_bool()
                .unwrap_or(false),
            user_namespaces: listed(&json["linux"]["namespaces"], "user"),
        })
    }

    /// Asks `binary features`; a runtime that cannot say (older, missing, failing) gets
    /// no optional feature, and the reason is returned with it for the log.
    pub fn probe(binary: &str) -> (RuntimeFeatures, Option<String>) {
        match std::process::Command::new(binary).arg("features").output() {
            Ok(out) if out.status.success() => match RuntimeFeatures::from_json(&out.stdout) {
                Ok(features) => (features, None),
                Err(e) => (RuntimeFeatures::default(), Some(e.to_string())),
            },
            Ok(out) => (
                RuntimeFeatures::default(),
                Some(format!(
                    "`{binary} features` failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
            ),
            Err(e) => (
                RuntimeFeatures::default(),
                Some(format!("cannot run `{binary} features`: {e}")),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_features_come_from_the_runtimes_own_report() {
        // The shape runc 1.1 prints (no mountExtensions), trimmed.
        let runc_1_1 = br#"{"ociVersionMin":"1.0.0","mountOptions":["bind","ro","rro","rbind"],
            "linux":{"namespaces":["cgroup","ipc","mount","network","pid","user","uts"]}}"#;
        assert_eq!(
            RuntimeFeatures::from_json(runc_1_1).unwrap(),
            RuntimeFeatures {
                recursive_read_only: true,
                idmapped_mounts: false,
                user_namespaces: true
            }
        );
        let runc_1_2 = br#"{"mountOptions":["rro"],"linux":{"namespaces":["user"],
            "mountExtensions":{"idmap":{"enabled":true}}}}"#;
        assert!(
            RuntimeFeatures::from_json(runc_1_2)
                .unwrap()
                .idmapped_mounts
        );
        assert_eq!(
            RuntimeFeatures::from_json(b"{}").unwrap(),
            RuntimeFeatures::default()
        );
        assert!(RuntimeFeatures::from_json(b"not json").is_err());
        let (none, why) = RuntimeFeatures::probe("/nonexistent/runtime");
        assert_eq!(none, RuntimeFeatures::default());
        assert!(why.is_some_and(|w| w.contains("cannot run")));
    }

    #[test]
    fn chain_id_of_one_layer_is_its_diff_id() {
        let ids = chain_ids(&["sha256:aa".to_string()]);
        assert_eq!(ids, vec!["sha256:aa".to_string()]);
    }

    #[test]
    fn chain_id_hashes_parent_and_diff_id() {
        let ids = chain_ids(&["sha256:aa".to_string(), "sha256:bb".to_string()]);
        let expected = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(b"sha256:aa sha256:bb"))
        );
        assert_eq!(ids[1], expected);
    }

    #[test]
    fn repository_strips_tag_and_digest_but_not_port() {
        assert_eq!(repository_of("localhost:5000/a/b:1"), "localhost:5000/a/b");
        assert_eq!(repository_of("localhost:5000/a/b"), "localhost:5000/a/b");
        assert_eq!(
            repository_of("docker.io/library/x@sha256:00"),
            "docker.io/library/x"
        );
    }

    #[test]
    fn config_fields_are_parsed() {
        let raw = br#"{"architecture":"amd64","os":"linux","config":{"User":"1234","Env":["A=1"],"Entrypoint":["/bin/sh"],"Cmd":["-c","x"],"WorkingDir":"/w","StopSignal":"SIGUSR1"},"rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"#;
        let (config, diff_ids) = parse_config(raw).unwrap();
        assert_eq!(config.user, "1234");
        assert_eq!(config.entrypoint, vec!["/bin/sh"]);
        assert_eq!(config.cmd, vec!["-c", "x"]);
        assert_eq!(config.working_dir, "/w");
        assert_eq!(config.stop_signal, "SIGUSR1");
        assert_eq!(diff_ids, vec!["sha256:aa"]);
    }
}
