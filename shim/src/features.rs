//! What a request needs of the container engine, checked against `Backend::features` for
//! the pod's runtime handler before any work (DESIGN.md decision 12): a feature the engine
//! lacks is refused with `FailedPrecondition` naming the field, the backend and the
//! handler, never dropped and never discovered half-way through a create.

use runtime_backends::Features;

use crate::domain::{ContainerConfig, NamespaceMode, SandboxConfig};
use crate::error::{Error, Result};

/// Who is asked: the engine's name and the runtime handler, for messages.
pub struct Engine<'a> {
    pub backend: &'a str,
    pub handler: &'a str,
    pub features: Features,
}

impl Engine<'_> {
    fn lacks(&self, rpc: &str, field: &str, what: &str) -> Error {
        Error::FailedPrecondition(format!(
            "{rpc}: {field} asks for {what}, which backend {} cannot do for runtime handler {:?}",
            self.backend, self.handler
        ))
    }

    /// RunPodSandbox.
    pub fn check_sandbox(&self, config: &SandboxConfig) -> Result<()> {
        let own_userns = config
            .security
            .namespaces
            .userns
            .as_ref()
            .is_some_and(|u| u.mode == NamespaceMode::Pod);
        if own_userns && !self.features.user_namespaces {
            return Err(self.lacks(
                "RunPodSandbox",
                "linux.security_context.namespace_options.userns_options",
                "a user namespace of the pod's own",
            ));
        }
        Ok(())
    }

    /// CreateContainer.
    pub fn check_container(&self, config: &ContainerConfig) -> Result<()> {
        for mount in &config.mounts {
            let idmapped = !mount.uid_mappings.is_empty() || !mount.gid_mappings.is_empty();
            if idmapped && !self.features.idmapped_mounts {
                return Err(self.lacks(
                    "CreateContainer",
                    &format!(
                        "the mount at {} (uid_mappings, gid_mappings)",
                        mount.container_path
                    ),
                    "an idmapped mount",
                ));
            }
            if mount.recursive_read_only && !self.features.recursive_read_only_mounts {
                return Err(self.lacks(
                    "CreateContainer",
                    &format!(
                        "the mount at {} (recursive_read_only)",
                        mount.container_path
                    ),
                    "a recursive read-only mount",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{IdMapping, Mount, Propagation, UserNamespace};

    fn engine(features: Features) -> Engine<'static> {
        Engine {
            backend: "fake",
            handler: "",
            features,
        }
    }

    fn mount(rro: bool, mapped: bool) -> Mount {
        let map = vec![IdMapping {
            host_id: 100_000,
            container_id: 0,
            length: 65_536,
        }];
        Mount {
            container_path: "/data".into(),
            host_path: "/srv/data".into(),
            readonly: rro,
            selinux_relabel: false,
            propagation: Propagation::Private,
            recursive_read_only: rro,
            uid_mappings: if mapped { map.clone() } else { Vec::new() },
            gid_mappings: if mapped { map } else { Vec::new() },
        }
    }

    fn container(mounts: Vec<Mount>) -> ContainerConfig {
        ContainerConfig {
            mounts,
            ..ContainerConfig::default()
        }
    }

    #[test]
    fn each_missing_feature_is_refused_naming_field_backend_and_handler() {
        let none = engine(Features::default());
        let refused = none
            .check_container(&container(vec![mount(true, false)]))
            .expect_err("rro without the feature");
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        let message = refused.to_string();
        assert!(message.contains("recursive_read_only"), "{message}");
        assert!(message.contains("backend fake"), "{message}");
        assert!(message.contains("runtime handler \"\""), "{message}");
        let refused = none
            .check_container(&container(vec![mount(false, true)]))
            .expect_err("idmapped without the feature");
        assert!(refused.to_string().contains("uid_mappings"), "{refused}");

        let mut sandbox = SandboxConfig::default();
        sandbox.security.namespaces.userns = Some(UserNamespace {
            mode: NamespaceMode::Pod,
            uids: Vec::new(),
            gids: Vec::new(),
        });
        let refused = none.check_sandbox(&sandbox).expect_err("userns without it");
        assert!(refused.to_string().contains("userns_options"), "{refused}");
    }

    #[test]
    fn what_the_engine_can_do_passes_and_plain_requests_always_do() {
        let all = engine(Features {
            user_namespaces: true,
            idmapped_mounts: true,
            recursive_read_only_mounts: true,
            per_pull_registry_settings: true,
        });
        assert!(all
            .check_container(&container(vec![mount(true, true)]))
            .is_ok());
        let none = engine(Features::default());
        assert!(none
            .check_container(&container(vec![mount(false, false)]))
            .is_ok());
        assert!(none.check_sandbox(&SandboxConfig::default()).is_ok());
    }
}
