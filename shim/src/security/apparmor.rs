//! AppArmor: which profile a container runs under, from the CRI `apparmor` field or the
//! legacy pod annotation, and whether the node can enforce it.

use std::collections::BTreeSet;
use std::path::Path;

use super::SpecError;
use crate::domain::SecurityProfile;

/// The profile crius applies for `runtime/default`. Loading it into the kernel is done at
/// start by whoever owns AppArmor setup; this module only names it.
pub const DEFAULT_APPARMOR_PROFILE: &str = "crius-default";

/// Pod annotation kubelet used before the `apparmor` field existed; the container name
/// follows the slash.
pub const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

/// The kernel's view of AppArmor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppArmorHost {
    pub enabled: bool,
    /// Names of the profiles loaded into the kernel.
    pub loaded_profiles: BTreeSet<String>,
}

impl AppArmorHost {
    /// Read `<sys_root>/module/apparmor/parameters/enabled` and the loaded profile list from
    /// `<sys_root>/kernel/security/apparmor/profiles`. Missing files mean no AppArmor (this
    /// node's kernel has none at all). The list changes when an administrator loads a
    /// profile, so callers that enforce `localhost/` profiles re-read it before each create.
    pub fn detect(sys_root: &Path) -> Self {
        let enabled = std::fs::read_to_string(sys_root.join("module/apparmor/parameters/enabled"))
            .map(|v| v.trim() == "Y")
            .unwrap_or(false);
        let loaded_profiles = if enabled {
            std::fs::read_to_string(sys_root.join("kernel/security/apparmor/profiles"))
                .map(|text| parse_profiles(&text))
                .unwrap_or_default()
        } else {
            BTreeSet::new()
        };
        Self {
            enabled,
            loaded_profiles,
        }
    }

    pub fn is_loaded(&self, profile: &str) -> bool {
        self.enabled && self.loaded_profiles.contains(profile)
    }
}

/// Lines look like `name (enforce)`; a name may itself contain spaces, so the mode is cut
/// off at the last ` (`.
fn parse_profiles(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_end();
            let name = line.rsplit_once(" (").map_or(line, |(name, _)| name);
            (!name.is_empty()).then(|| name.to_string())
        })
        .collect()
}

/// The legacy annotation's value as a profile choice. An empty value counts as unset.
fn parse_annotation(value: &str) -> Result<Option<SecurityProfile>, SpecError> {
    let value = value.trim();
    match value {
        "" => Ok(None),
        "runtime/default" => Ok(Some(SecurityProfile::RuntimeDefault)),
        "unconfined" => Ok(Some(SecurityProfile::Unconfined)),
        _ => match value.strip_prefix("localhost/") {
            Some(name) => Ok(Some(SecurityProfile::Localhost(name.to_string()))),
            None => Err(SpecError::InvalidArgument(format!(
                "invalid AppArmor profile {value:?}: expected \"runtime/default\", \"unconfined\" or \"localhost/<profile>\""
            ))),
        },
    }
}

fn not_loaded(profile: &str) -> SpecError {
    // kubelet shows this text to users as is; keep it exactly.
    SpecError::FailedPrecondition(format!(
        "Cannot enforce AppArmor: profile \"{profile}\" is not loaded"
    ))
}

/// The AppArmor profile for a container's process, or `None` for no profile at all.
///
/// `field` (the CRI `apparmor` field) wins over `annotation` (the value of
/// [`APPARMOR_ANNOTATION_PREFIX`]`<container>`). Unset and `runtime/default` mean
/// [`DEFAULT_APPARMOR_PROFILE`] where AppArmor exists, except for privileged containers
/// (containerd's behaviour); on a node without AppArmor they mean no profile, since there is
/// nothing to confine with. A `localhost/` profile must be loaded, or the create fails with
/// the message kubelet expects.
pub fn apparmor_for(
    field: Option<&SecurityProfile>,
    annotation: Option<&str>,
    privileged: bool,
    host: &AppArmorHost,
) -> Result<Option<String>, SpecError> {
    let choice = match field {
        Some(profile) => Some(profile.clone()),
        None => annotation.map(parse_annotation).transpose()?.flatten(),
    };
    match choice {
        None | Some(SecurityProfile::RuntimeDefault) => {
            Ok((host.enabled && !privileged).then(|| DEFAULT_APPARMOR_PROFILE.to_string()))
        }
        Some(SecurityProfile::Unconfined) => Ok(host.enabled.then(|| "unconfined".to_string())),
        Some(SecurityProfile::Localhost(name)) => {
            let name = name.strip_prefix("localhost/").unwrap_or(&name).trim();
            if name.is_empty() {
                return Err(SpecError::InvalidArgument(
                    "AppArmor profile type Localhost needs a profile name".to_string(),
                ));
            }
            if host.is_loaded(name) {
                Ok(Some(name.to_string()))
            } else {
                Err(not_loaded(name))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled_with(profiles: &[&str]) -> AppArmorHost {
        AppArmorHost {
            enabled: true,
            loaded_profiles: profiles.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn local(name: &str) -> SecurityProfile {
        SecurityProfile::Localhost(name.to_string())
    }

    #[test]
    fn profile_list_parsing_keeps_names_with_spaces() {
        let parsed =
            parse_profiles("crius-default (enforce)\n/usr/bin/man (complain)\nodd name (kill)\n\n");
        assert!(parsed.contains("crius-default"));
        assert!(parsed.contains("/usr/bin/man"));
        assert!(parsed.contains("odd name"));
        assert_eq!(parsed.len(), 3);
    }

    #[test]
    fn field_runtime_default_and_unset_use_crius_default() {
        let host = enabled_with(&[DEFAULT_APPARMOR_PROFILE]);
        assert_eq!(
            apparmor_for(Some(&SecurityProfile::RuntimeDefault), None, false, &host)
                .unwrap()
                .as_deref(),
            Some(DEFAULT_APPARMOR_PROFILE)
        );
        assert_eq!(
            apparmor_for(None, None, false, &host).unwrap().as_deref(),
            Some(DEFAULT_APPARMOR_PROFILE)
        );
        assert_eq!(apparmor_for(None, None, true, &host).unwrap(), None);
    }

    #[test]
    fn field_localhost_loaded_is_applied() {
        let host = enabled_with(&["k8s-apparmor-example"]);
        assert_eq!(
            apparmor_for(Some(&local("k8s-apparmor-example")), None, false, &host)
                .unwrap()
                .as_deref(),
            Some("k8s-apparmor-example")
        );
        // Privileged containers still run under an explicitly named profile.
        assert_eq!(
            apparmor_for(
                Some(&local("localhost/k8s-apparmor-example")),
                None,
                true,
                &host
            )
            .unwrap()
            .as_deref(),
            Some("k8s-apparmor-example")
        );
    }

    #[test]
    fn localhost_not_loaded_fails_with_the_exact_message() {
        let host = enabled_with(&["other"]);
        let err = apparmor_for(Some(&local("missing")), None, false, &host).unwrap_err();
        assert_eq!(
            err,
            SpecError::FailedPrecondition(
                "Cannot enforce AppArmor: profile \"missing\" is not loaded".to_string()
            )
        );
        assert_eq!(
            err.to_string(),
            "Cannot enforce AppArmor: profile \"missing\" is not loaded"
        );
    }

    #[test]
    fn localhost_on_a_host_without_apparmor_fails_with_the_same_message() {
        let err = apparmor_for(
            None,
            Some("localhost/deny-write"),
            false,
            &AppArmorHost::default(),
        )
        .unwrap_err();
        assert_eq!(
            err,
            SpecError::FailedPrecondition(
                "Cannot enforce AppArmor: profile \"deny-write\" is not loaded".to_string()
            )
        );
    }

    #[test]
    fn annotation_values() {
        let host = enabled_with(&["p1"]);
        assert_eq!(
            apparmor_for(None, Some("localhost/p1"), false, &host)
                .unwrap()
                .as_deref(),
            Some("p1")
        );
        assert_eq!(
            apparmor_for(None, Some("runtime/default"), false, &host)
                .unwrap()
                .as_deref(),
            Some(DEFAULT_APPARMOR_PROFILE)
        );
        assert_eq!(
            apparmor_for(None, Some("unconfined"), false, &host)
                .unwrap()
                .as_deref(),
            Some("unconfined")
        );
        assert!(matches!(
            apparmor_for(None, Some("docker/whatever"), false, &host),
            Err(SpecError::InvalidArgument(_))
        ));
    }

    #[test]
    fn field_wins_over_annotation() {
        let host = enabled_with(&["p1"]);
        assert_eq!(
            apparmor_for(
                Some(&SecurityProfile::Unconfined),
                Some("localhost/missing"),
                false,
                &host
            )
            .unwrap()
            .as_deref(),
            Some("unconfined")
        );
        assert_eq!(
            apparmor_for(Some(&local("p1")), Some("unconfined"), false, &host)
                .unwrap()
                .as_deref(),
            Some("p1")
        );
    }

    #[test]
    fn disabled_host_runs_default_and_unconfined_without_a_profile() {
        let host = AppArmorHost::default();
        assert_eq!(
            apparmor_for(Some(&SecurityProfile::RuntimeDefault), None, false, &host).unwrap(),
            None
        );
        assert_eq!(
            apparmor_for(None, Some("unconfined"), false, &host).unwrap(),
            None
        );
        assert_eq!(apparmor_for(None, None, false, &host).unwrap(), None);
    }

    #[test]
    fn detect_without_apparmor_module() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(AppArmorHost::detect(root.path()), AppArmorHost::default());
        std::fs::create_dir_all(root.path().join("module/apparmor/parameters")).unwrap();
        std::fs::write(
            root.path().join("module/apparmor/parameters/enabled"),
            "N\n",
        )
        .unwrap();
        assert!(!AppArmorHost::detect(root.path()).enabled);
    }
}
