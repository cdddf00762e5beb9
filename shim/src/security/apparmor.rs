//! AppArmor: which profile a container runs under, from the CRI `apparmor` field or the
//! legacy pod annotation, and whether the node can enforce it; and loading crius's own
//! profile for `runtime/default` at start.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::SpecError;
use crate::domain::SecurityProfile;

/// The profile crius applies for `runtime/default`. crius loads it at start where AppArmor
/// is enabled ([`AppArmorHost::ensure_default_profile`]).
pub const DEFAULT_APPARMOR_PROFILE: &str = "crius-default";

/// The text of [`DEFAULT_APPARMOR_PROFILE`], shipped inside the binary.
pub const DEFAULT_APPARMOR_PROFILE_TEXT: &str = include_str!("crius-default.profile");

/// The program that compiles profiles and loads them into the kernel.
const APPARMOR_PARSER: &str = "apparmor_parser";

/// Where the parser lives on distributions whose services run with a short `PATH`.
const PARSER_FALLBACK_DIRS: &[&str] = &["/sbin", "/usr/sbin"];

/// Pod annotation kubelet used before the `apparmor` field existed; the container name
/// follows the slash.
pub const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

/// The kernel's view of AppArmor, and whether crius's default profile could be loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppArmorHost {
    pub enabled: bool,
    /// Names of the profiles loaded into the kernel.
    pub loaded_profiles: BTreeSet<String>,
    /// Why [`DEFAULT_APPARMOR_PROFILE`] could not be loaded at start. While set,
    /// `runtime/default` is refused rather than run unconfined. Not read from the kernel:
    /// whoever re-detects the host carries it over.
    pub default_profile_error: Option<String>,
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
            default_profile_error: None,
        }
    }

    pub fn is_loaded(&self, profile: &str) -> bool {
        self.enabled && self.loaded_profiles.contains(profile)
    }

    /// Where AppArmor is enabled and [`DEFAULT_APPARMOR_PROFILE`] is not loaded yet, load it
    /// with `parser` (`None`: none was found). The outcome lands in `loaded_profiles` or in
    /// `default_profile_error`. Blocks while the parser runs, typically well under a second.
    pub fn ensure_default_profile(&mut self, parser: Option<&Path>) {
        if !self.enabled {
            return;
        }
        if self.loaded_profiles.contains(DEFAULT_APPARMOR_PROFILE) {
            tracing::debug!(
                profile = DEFAULT_APPARMOR_PROFILE,
                "AppArmor profile already loaded"
            );
            return;
        }
        let loaded = match parser {
            Some(parser) => load_profile(parser, DEFAULT_APPARMOR_PROFILE_TEXT),
            None => Err(format!(
                "{APPARMOR_PARSER} was not found on PATH or in {}",
                PARSER_FALLBACK_DIRS.join(", ")
            )),
        };
        match loaded {
            Ok(()) => {
                tracing::info!(
                    profile = DEFAULT_APPARMOR_PROFILE,
                    "loaded the AppArmor profile for runtime/default"
                );
                self.loaded_profiles
                    .insert(DEFAULT_APPARMOR_PROFILE.to_string());
                self.default_profile_error = None;
            }
            Err(why) => {
                tracing::warn!(
                    profile = DEFAULT_APPARMOR_PROFILE,
                    error = %why,
                    "cannot load the AppArmor profile for runtime/default; containers that need it will be refused"
                );
                self.default_profile_error = Some(why);
            }
        }
    }
}

/// `apparmor_parser` on `PATH`, else in the usual sbin directories.
pub fn find_apparmor_parser() -> Option<PathBuf> {
    parser_on(std::env::var_os("PATH"))
}

fn parser_on(search_path: Option<OsString>) -> Option<PathBuf> {
    let listed = search_path
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    listed
        .into_iter()
        .chain(PARSER_FALLBACK_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(APPARMOR_PARSER))
        .find(|candidate| candidate.is_file())
}

/// Replace (or add) a profile in the kernel: `<parser> -Kr` with the profile text on stdin,
/// skipping the parser's cache so a changed text always takes effect. The error says why,
/// with the parser's own message when it ran.
fn load_profile(parser: &Path, text: &str) -> Result<(), String> {
    let mut child = Command::new(parser)
        .arg("-Kr")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", parser.display()))?;
    // Dropping stdin after the write closes it, so the parser sees the end of the profile.
    let written = match child.stdin.take() {
        Some(mut stdin) => stdin.write_all(text.as_bytes()),
        None => Ok(()),
    };
    let output = child
        .wait_with_output()
        .map_err(|e| format!("waiting for {}: {e}", parser.display()))?;
    if !output.status.success() {
        // One line: the reason ends up in a gRPC status message.
        let stderr = String::from_utf8_lossy(&output.stderr);
        let complaint: Vec<&str> = stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        return Err(format!(
            "{} -Kr failed ({}): {}",
            parser.display(),
            output.status,
            complaint.join("; ")
        ));
    }
    written.map_err(|e| format!("writing the profile to {}: {e}", parser.display()))
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

fn default_not_loaded(why: &str) -> SpecError {
    SpecError::FailedPrecondition(format!(
        "Cannot enforce AppArmor: the default profile \"{DEFAULT_APPARMOR_PROFILE}\" could not be loaded: {why}"
    ))
}

/// The AppArmor profile for a container's process, or `None` for no profile at all.
///
/// `field` (the CRI `apparmor` field) wins over `annotation` (the value of
/// [`APPARMOR_ANNOTATION_PREFIX`]`<container>`). Unset and `runtime/default` mean
/// [`DEFAULT_APPARMOR_PROFILE`] where AppArmor exists, except for privileged containers
/// (containerd's behaviour); on a node without AppArmor they mean no profile, since there is
/// nothing to confine with. Where crius could not load its default profile, those
/// containers are refused instead of run unconfined. A `localhost/` profile must be loaded,
/// or the create fails with the message kubelet expects.
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
            if !host.enabled || privileged {
                return Ok(None);
            }
            match &host.default_profile_error {
                Some(why) => Err(default_not_loaded(why)),
                None => Ok(Some(DEFAULT_APPARMOR_PROFILE.to_string())),
            }
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
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn enabled_with(profiles: &[&str]) -> AppArmorHost {
        AppArmorHost {
            enabled: true,
            loaded_profiles: profiles.iter().map(|p| p.to_string()).collect(),
            default_profile_error: None,
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

    /// A `/sys` fixture with AppArmor `enabled` or not and `profiles` as the kernel's list.
    fn sys_fixture(enabled: bool, profiles: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("module/apparmor/parameters")).unwrap();
        fs::write(
            root.path().join("module/apparmor/parameters/enabled"),
            if enabled { "Y\n" } else { "N\n" },
        )
        .unwrap();
        fs::create_dir_all(root.path().join("kernel/security/apparmor")).unwrap();
        fs::write(
            root.path().join("kernel/security/apparmor/profiles"),
            profiles,
        )
        .unwrap();
        root
    }

    /// A stand-in for apparmor_parser in `dir`: it records its arguments in `dir/args` and
    /// its stdin in `dir/stdin`, then exits with `status`, complaining on stderr when that is
    /// not 0.
    fn fake_parser(dir: &Path, status: i32) -> PathBuf {
        let script = dir.join(APPARMOR_PARSER);
        let complaint = if status == 0 {
            ""
        } else {
            "echo 'AppArmor parser error at line 9: syntax error' >&2\n"
        };
        fs::write(
            &script,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{args}'\ncat > '{stdin}'\n{complaint}exit {status}\n",
                args = dir.join("args").display(),
                stdin = dir.join("stdin").display(),
            ),
        )
        .unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        script
    }

    fn runtime_default(host: &AppArmorHost) -> Result<Option<String>, SpecError> {
        apparmor_for(Some(&SecurityProfile::RuntimeDefault), None, false, host)
    }

    #[test]
    fn shipped_profile_is_named_crius_default() {
        assert!(DEFAULT_APPARMOR_PROFILE_TEXT.contains(&format!(
            "profile {DEFAULT_APPARMOR_PROFILE} flags=(attach_disconnected,mediate_deleted) {{"
        )));
        assert!(DEFAULT_APPARMOR_PROFILE_TEXT.contains("#include <tunables/global>"));
        assert!(DEFAULT_APPARMOR_PROFILE_TEXT.contains("#include <abstractions/base>"));
        assert!(DEFAULT_APPARMOR_PROFILE_TEXT.contains(&format!(
            "ptrace (trace,read,tracedby,readby) peer={DEFAULT_APPARMOR_PROFILE},"
        )));
    }

    /// Where the real parser is installed, the shipped text must compile (`-Q`: without
    /// loading it, so this runs on nodes without AppArmor too).
    #[test]
    fn shipped_profile_compiles_where_apparmor_parser_is_installed() {
        let Some(parser) = find_apparmor_parser() else {
            eprintln!("{APPARMOR_PARSER} not installed; skipping the compile check");
            return;
        };
        let mut child = Command::new(&parser)
            .args(["-Q", "-K", "-S"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(DEFAULT_APPARMOR_PROFILE_TEXT.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    #[test]
    fn default_profile_already_loaded_runs_no_parser() {
        let sys = sys_fixture(true, "crius-default (enforce)\n/usr/bin/man (enforce)\n");
        let bin = tempfile::tempdir().unwrap();
        let parser = fake_parser(bin.path(), 0);
        let mut host = AppArmorHost::detect(sys.path());
        host.ensure_default_profile(Some(&parser));
        assert!(!bin.path().join("args").exists());
        assert_eq!(host.default_profile_error, None);
        assert_eq!(
            runtime_default(&host).unwrap().as_deref(),
            Some(DEFAULT_APPARMOR_PROFILE)
        );
    }

    #[test]
    fn missing_default_profile_is_loaded_with_the_parser() {
        let sys = sys_fixture(true, "/usr/bin/man (enforce)\n");
        let bin = tempfile::tempdir().unwrap();
        let parser = fake_parser(bin.path(), 0);
        let mut host = AppArmorHost::detect(sys.path());
        host.ensure_default_profile(Some(&parser));
        assert_eq!(
            fs::read_to_string(bin.path().join("args")).unwrap(),
            "-Kr\n"
        );
        assert_eq!(
            fs::read_to_string(bin.path().join("stdin")).unwrap(),
            DEFAULT_APPARMOR_PROFILE_TEXT
        );
        assert!(host.is_loaded(DEFAULT_APPARMOR_PROFILE));
        assert_eq!(host.default_profile_error, None);
        assert_eq!(
            apparmor_for(None, None, false, &host).unwrap().as_deref(),
            Some(DEFAULT_APPARMOR_PROFILE)
        );
    }

    #[test]
    fn failed_load_refuses_runtime_default_with_the_reason() {
        let sys = sys_fixture(true, "");
        let bin = tempfile::tempdir().unwrap();
        let parser = fake_parser(bin.path(), 1);
        let mut host = AppArmorHost::detect(sys.path());
        host.ensure_default_profile(Some(&parser));
        assert!(bin.path().join("args").exists());
        assert!(!host.is_loaded(DEFAULT_APPARMOR_PROFILE));
        let why = host.default_profile_error.clone().unwrap();
        assert!(
            why.ends_with(
                " -Kr failed (exit status: 1): AppArmor parser error at line 9: syntax error"
            ),
            "{why}"
        );

        let expected = SpecError::FailedPrecondition(format!(
            "Cannot enforce AppArmor: the default profile \"crius-default\" could not be loaded: {why}"
        ));
        assert_eq!(runtime_default(&host).unwrap_err(), expected);
        assert_eq!(
            apparmor_for(None, None, false, &host).unwrap_err(),
            expected
        );
        assert_eq!(
            apparmor_for(None, Some("runtime/default"), false, &host).unwrap_err(),
            expected
        );
        // Nothing else depends on crius's profile.
        assert_eq!(apparmor_for(None, None, true, &host).unwrap(), None);
        assert_eq!(
            apparmor_for(Some(&SecurityProfile::Unconfined), None, false, &host)
                .unwrap()
                .as_deref(),
            Some("unconfined")
        );
    }

    #[test]
    fn missing_parser_refuses_runtime_default() {
        let sys = sys_fixture(true, "");
        let mut host = AppArmorHost::detect(sys.path());
        host.ensure_default_profile(None);
        let why = host.default_profile_error.clone().unwrap();
        assert!(why.contains("apparmor_parser was not found"), "{why}");
        assert!(matches!(
            runtime_default(&host),
            Err(SpecError::FailedPrecondition(m)) if m.ends_with(&why)
        ));

        let mut host = AppArmorHost::detect(sys.path());
        host.ensure_default_profile(Some(Path::new("/nonexistent/apparmor_parser")));
        let why = host.default_profile_error.clone().unwrap();
        assert!(
            why.starts_with("cannot run /nonexistent/apparmor_parser"),
            "{why}"
        );
    }

    #[test]
    fn host_without_apparmor_never_runs_the_parser() {
        let bin = tempfile::tempdir().unwrap();
        let parser = fake_parser(bin.path(), 0);
        let disabled = sys_fixture(false, "");
        let no_module = tempfile::tempdir().unwrap();
        for sys in [disabled.path(), no_module.path()] {
            let mut host = AppArmorHost::detect(sys);
            host.ensure_default_profile(Some(&parser));
            host.ensure_default_profile(None);
            assert!(!bin.path().join("args").exists());
            assert_eq!(host.default_profile_error, None);
            assert_eq!(runtime_default(&host).unwrap(), None);
            assert_eq!(apparmor_for(None, None, false, &host).unwrap(), None);
        }
    }

    #[test]
    fn parser_is_looked_up_on_path() {
        let bin = tempfile::tempdir().unwrap();
        let parser = fake_parser(bin.path(), 0);
        let elsewhere = tempfile::tempdir().unwrap();
        let search = std::env::join_paths([elsewhere.path(), bin.path()]).unwrap();
        assert_eq!(parser_on(Some(search)), Some(parser));
    }
}
