//! User namespaces (CRI `userns_options`): a pod-wide namespace in which root maps to an
//! unprivileged host range.

use runtime_backends::{IdMapping as EngineMapping, IdMappings};

use super::SpecError;
use crate::domain::{IdMapping, NamespaceMode, UserNamespace};

fn convert(kind: &str, mappings: &[IdMapping]) -> Result<Vec<EngineMapping>, SpecError> {
    if mappings.is_empty() {
        return Err(SpecError::InvalidArgument(format!(
            "user namespace mode POD needs at least one {kind} mapping"
        )));
    }
    mappings
        .iter()
        .map(|m| {
            if m.length == 0 {
                return Err(SpecError::InvalidArgument(format!(
                    "{kind} mapping {}:{} has length 0",
                    m.container_id, m.host_id
                )));
            }
            Ok(EngineMapping {
                container_id: m.container_id,
                host_id: m.host_id,
                size: m.length,
            })
        })
        .collect()
}

/// The mappings of a pod's own user namespace, or `None` when the pod uses the host's.
/// CRI defines only NODE and POD for user namespaces.
pub fn pod_user_namespace(userns: Option<&UserNamespace>) -> Result<Option<IdMappings>, SpecError> {
    let Some(userns) = userns else {
        return Ok(None);
    };
    match userns.mode {
        NamespaceMode::Node => Ok(None),
        NamespaceMode::Pod => Ok(Some(IdMappings {
            uids: convert("uid", &userns.uids)?,
            gids: convert("gid", &userns.gids)?,
        })),
        other => Err(SpecError::InvalidArgument(format!(
            "user namespace mode {other:?} is not supported; only NODE and POD are"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn userns(mode: NamespaceMode, length: u32) -> UserNamespace {
        let mapping = IdMapping {
            host_id: 65536,
            container_id: 0,
            length,
        };
        UserNamespace {
            mode,
            uids: vec![mapping.clone()],
            gids: vec![mapping],
        }
    }

    #[test]
    fn pod_mode_converts_mappings() {
        let mappings = pod_user_namespace(Some(&userns(NamespaceMode::Pod, 65536)))
            .unwrap()
            .unwrap();
        assert_eq!(
            mappings.uids,
            vec![EngineMapping {
                container_id: 0,
                host_id: 65536,
                size: 65536
            }]
        );
        assert_eq!(mappings.gids.len(), 1);
    }

    #[test]
    fn node_mode_and_unset_use_the_host_namespace() {
        assert_eq!(pod_user_namespace(None).unwrap(), None);
        assert_eq!(
            pod_user_namespace(Some(&userns(NamespaceMode::Node, 1))).unwrap(),
            None
        );
    }

    #[test]
    fn invalid_modes_and_mappings_are_rejected() {
        assert!(pod_user_namespace(Some(&userns(NamespaceMode::Container, 1))).is_err());
        assert!(pod_user_namespace(Some(&userns(NamespaceMode::Pod, 0))).is_err());
        let empty = UserNamespace {
            mode: NamespaceMode::Pod,
            uids: vec![],
            gids: vec![],
        };
        assert!(pod_user_namespace(Some(&empty)).is_err());
    }
}
