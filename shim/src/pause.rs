//! The built-in pause image (DESIGN.md decision 6): crius's static pause program packed as
//! a one-layer OCI image, imported into the backend when the configured pause image is
//! absent, so sandboxes run on a machine that cannot reach any registry.

use std::collections::HashMap;

use runtime_backends::{Blob, ImageBundle};
use sha2::{Digest, Sha256};

/// The name the built-in pause image is stored under.
pub const BUILTIN_PAUSE_IMAGE: &str = "localhost/crius/pause:builtin";

static PAUSE_BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pause"));

const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// One ustar header + data, padded to 512-byte blocks.
fn tar_entry(out: &mut Vec<u8>, name: &str, mode: u32, data: &[u8]) {
    let mut header = [0u8; 512];
    let put = |header: &mut [u8; 512], offset: usize, field: &[u8]| {
        header[offset..offset + field.len()].copy_from_slice(field);
    };
    put(&mut header, 0, name.as_bytes());
    put(&mut header, 100, format!("{mode:07o}\0").as_bytes());
    put(&mut header, 108, b"0000000\0");
    put(&mut header, 116, b"0000000\0");
    put(
        &mut header,
        124,
        format!("{:011o}\0", data.len()).as_bytes(),
    );
    put(&mut header, 136, b"00000000000\0");
    put(&mut header, 148, b"        ");
    header[156] = b'0';
    put(&mut header, 257, b"ustar\0");
    put(&mut header, 263, b"00");
    put(&mut header, 265, b"root");
    put(&mut header, 297, b"root");
    let checksum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    put(&mut header, 148, format!("{checksum:06o}\0 ").as_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    let pad = (512 - data.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, pad));
}

/// The built-in pause image as blobs, ready for `Backend::import_image`.
pub fn bundle(architecture: &str) -> ImageBundle {
    let mut layer = Vec::new();
    tar_entry(&mut layer, "pause", 0o755, PAUSE_BINARY);
    layer.extend(std::iter::repeat_n(0u8, 1024));
    let layer_digest = digest(&layer);
    let config = serde_json::json!({
        "architecture": architecture,
        "os": "linux",
        "config": { "Entrypoint": ["/pause"], "WorkingDir": "/" },
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
    })
    .to_string()
    .into_bytes();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": { "mediaType": MEDIA_CONFIG, "digest": digest(&config), "size": config.len() },
        "layers": [{ "mediaType": MEDIA_LAYER, "digest": layer_digest, "size": layer.len() }],
    })
    .to_string()
    .into_bytes();
    ImageBundle {
        names: vec![BUILTIN_PAUSE_IMAGE.to_string()],
        manifest: Blob {
            media_type: MEDIA_MANIFEST.to_string(),
            data: manifest,
        },
        config: Blob {
            media_type: MEDIA_CONFIG.to_string(),
            data: config,
        },
        layers: vec![Blob {
            media_type: MEDIA_LAYER.to_string(),
            data: layer,
        }],
        labels: HashMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_is_self_consistent_and_reproducible() {
        let a = bundle("amd64");
        let b = bundle("amd64");
        assert_eq!(
            a.manifest.data, b.manifest.data,
            "the image must not change between starts"
        );
        let manifest: serde_json::Value = serde_json::from_slice(&a.manifest.data).unwrap();
        assert_eq!(manifest["config"]["digest"], digest(&a.config.data));
        assert_eq!(manifest["layers"][0]["digest"], digest(&a.layers[0].data));
        assert_eq!(a.layers[0].data.len() % 512, 0);
        assert_eq!(&a.layers[0].data[257..262], b"ustar");
        assert!(PAUSE_BINARY.len() > 1000, "the pause program is embedded");
    }
}
