//! Version, Status, RuntimeConfig, UpdateRuntimeConfig.

use cri_api::v1 as cri;

use crate::cgroups::CgroupDriver;
use crate::error::Result;
use crate::runtime::Crius;

pub const RUNTIME_NAME: &str = "crius";
pub const RUNTIME_API_VERSION: &str = "v1";

pub fn version() -> cri::VersionResponse {
    cri::VersionResponse {
        version: "0.1.0".to_string(),
        runtime_name: RUNTIME_NAME.to_string(),
        runtime_version: env!("CARGO_PKG_VERSION").to_string(),
        runtime_api_version: RUNTIME_API_VERSION.to_string(),
    }
}

pub fn status(crius: &Crius, request: cri::StatusRequest) -> Result<cri::StatusResponse> {
    let backend_up = crius.backend_healthy();
    let runtime = cri::RuntimeCondition {
        r#type: "RuntimeReady".to_string(),
        status: backend_up,
        reason: if backend_up {
            String::new()
        } else {
            "BackendUnavailable".to_string()
        },
        message: if backend_up {
            String::new()
        } else {
            format!("crius cannot reach {}", crius.backend.name())
        },
    };
    let readiness = crius.network.readiness();
    let network = cri::RuntimeCondition {
        r#type: "NetworkReady".to_string(),
        status: readiness.ready,
        reason: readiness.reason,
        message: readiness.message,
    };
    let mut info = std::collections::HashMap::new();
    if request.verbose {
        let config = serde_json::json!({
            "backend": crius.backend.name(),
            "cgroupDriver": crius.cgroups.name(),
            "pauseImage": crius.pause_image,
            "root": crius.config.root,
            "state": crius.config.state,
            "cni": crius.network.describe(),
        });
        info.insert("config".to_string(), config.to_string());
    }
    // `""` is the default handler, under its own name too; then every configured one.
    let handler = |name: &str, runs: &str| {
        let features = crius.backend.features(runs);
        cri::RuntimeHandler {
            name: name.to_string(),
            features: Some(cri::RuntimeHandlerFeatures {
                recursive_read_only_mounts: features.recursive_read_only_mounts,
                // kubelet runs `hostUsers: false` pods only where this is true, and their
                // volumes need idmapped mounts: both, or the pods fail at their mounts.
                user_namespaces: features.user_namespaces && features.idmapped_mounts,
            }),
        }
    };
    Ok(cri::StatusResponse {
        status: Some(cri::RuntimeStatus {
            conditions: vec![runtime, network],
        }),
        info,
        runtime_handlers: std::iter::once(handler("", &crius.config.default_runtime))
            .chain(crius.config.runtimes.keys().map(|name| handler(name, name)))
            .collect(),
        features: Some(cri::RuntimeFeatures {
            supplemental_groups_policy: true,
            user_namespaces_host_network: false,
        }),
    })
}

pub fn runtime_config(crius: &Crius) -> cri::RuntimeConfigResponse {
    let driver = if crius.cgroups.is_systemd() {
        cri::CgroupDriver::Systemd
    } else {
        cri::CgroupDriver::Cgroupfs
    };
    cri::RuntimeConfigResponse {
        linux: Some(cri::LinuxRuntimeConfiguration {
            cgroup_driver: driver as i32,
        }),
    }
}
