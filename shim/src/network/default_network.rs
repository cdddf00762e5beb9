//! The network crius provides on a bare machine (`cni_default_network = true` and nothing in
//! `cni_conf_dir`): a bridge with host-local addresses on a private range and portmap.

use std::path::Path;

use serde_json::json;

use super::config::NetworkList;

pub const NAME: &str = "crius-default";
pub const BRIDGE: &str = "crius0";
pub const SUBNET: &str = "10.85.0.0/16";

/// `ipam_dir`: host-local's allocations (under crius's state dir, so they go with the
/// namespaces on reboot).
pub fn network(ipam_dir: &Path) -> NetworkList {
    NetworkList {
        name: NAME.to_string(),
        cni_version: "1.0.0".to_string(),
        plugins: vec![
            json!({
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": SUBNET }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": ipam_dir.display().to_string(),
                }
            }),
            json!({ "type": "portmap", "capabilities": { "portMappings": true } }),
        ],
        source: "built-in default network (cni_default_network)".to_string(),
    }
}
