//! The effective configuration as an operator reads it: every key with its value and the
//! layer it came from (`crius config show`), and which keys a reload can change in place.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use toml::{Table, Value};

use super::layers::{dotted_key, key_segment};
use super::{Config, Source};
use crate::cgroups::CgroupDriver;

/// Keys a SIGHUP applies to the running crius. Every other changed key needs a restart.
pub const RELOADABLE_KEYS: &[&str] = &["log_level"];

/// One effective value.
#[derive(Debug, Clone, PartialEq)]
pub struct Effective {
    /// Dotted key, as in the file (`registry.mirrors."docker.io"`).
    pub key: String,
    /// `None`: not set, and nothing is used in its place.
    pub value: Option<Value>,
    pub source: Source,
}

fn string(s: impl Into<String>) -> Option<Value> {
    Some(Value::String(s.into()))
}

fn path(p: &std::path::Path) -> Option<Value> {
    string(p.display().to_string())
}

/// A duration as the file writes it (`5m`, `1h30m`, `250ms`, `0`).
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0".into();
    }
    let mut out = String::new();
    let total_ms = d.as_millis();
    let (h, rest) = (total_ms / 3_600_000, total_ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s"), (ms, "ms")] {
        if n > 0 {
            let _ = write!(out, "{n}{unit}");
        }
    }
    out
}

/// A credential with its secrets replaced: shown, never printed.
fn redacted_auth(auth: &super::RegistryAuth) -> Value {
    let mut t = Table::new();
    if let Some(user) = &auth.username {
        t.insert("username".into(), Value::String(user.clone()));
    }
    if auth.password.is_some() {
        t.insert("password".into(), Value::String("<redacted>".into()));
    }
    if auth.auth.is_some() {
        t.insert("auth".into(), Value::String("<redacted>".into()));
    }
    Value::Table(t)
}

impl Config {
    /// Every key with its effective value and source, top-level keys first in the order of
    /// the default file, then `[registry]`.
    pub fn effective(&self) -> Vec<Effective> {
        let tls = self.stream_tls.as_ref();
        let top: Vec<(&str, Option<Value>)> = vec![
            ("listen", string(self.listen_url())),
            ("backend", string(self.backend.as_str())),
            ("containerd_address", path(&self.containerd_address)),
            ("containerd_namespace", string(&self.containerd_namespace)),
            (
                "containerd_local_content",
                Some(Value::Boolean(self.containerd_local_content)),
            ),
            ("docker_endpoint", string(&self.docker_endpoint)),
            ("root", path(&self.root)),
            ("state", path(&self.state)),
            ("cgroup_driver", string(self.cgroup_driver.name())),
            (
                "pause_image",
                string(
                    self.pause_image
                        .as_deref()
                        .unwrap_or(crate::pause::BUILTIN_PAUSE_IMAGE),
                ),
            ),
            ("cni_conf_dir", path(&self.cni_conf_dir)),
            (
                "cni_bin_dirs",
                Some(Value::Array(
                    self.cni_bin_dirs.iter().filter_map(|d| path(d)).collect(),
                )),
            ),
            (
                "cni_conf_template",
                self.cni_conf_template.as_deref().and_then(path),
            ),
            (
                "cni_default_network",
                Some(Value::Boolean(self.cni_default_network)),
            ),
            ("stream_address", string(self.stream_address.to_string())),
            ("stream_tls_cert", tls.and_then(|t| path(&t.cert))),
            ("stream_tls_key", tls.and_then(|t| path(&t.key))),
            (
                "metrics_address",
                string(
                    self.metrics_address
                        .map_or_else(|| "off".to_string(), |a| a.to_string()),
                ),
            ),
            ("log_level", string(&self.log_level)),
            ("log_format", string(self.log_format.as_str())),
            (
                "image_pull_progress_timeout",
                string(format_duration(self.image_pull_progress_timeout)),
            ),
            (
                "event_buffer",
                Some(Value::Integer(
                    i64::try_from(self.event_buffer).unwrap_or(i64::MAX),
                )),
            ),
        ];
        let mut out: Vec<Effective> = top
            .into_iter()
            .map(|(key, value)| Effective {
                source: self.source_of(key),
                key: key.to_string(),
                value,
            })
            .collect();

        out.push(Effective {
            key: "default_runtime".into(),
            value: string(&self.default_runtime),
            source: self.source_of("default_runtime"),
        });
        for (name, runtime) in &self.runtimes {
            let mut table = toml::Table::new();
            table.insert(
                "runtime_type".into(),
                Value::String(runtime.runtime_type.clone()),
            );
            table.insert(
                "runtime_path".into(),
                Value::String(runtime.runtime_path.clone()),
            );
            if let Some(root) = &runtime.runtime_root {
                table.insert(
                    "runtime_root".into(),
                    Value::String(root.display().to_string()),
                );
            }
            table.insert(
                "pod_annotations".into(),
                Value::Array(
                    runtime
                        .pod_annotations
                        .iter()
                        .cloned()
                        .map(Value::String)
                        .collect(),
                ),
            );
            let key = dotted_key(&["runtimes", name]);
            // A table's keys may come from several files: the one its binary came from,
            // else any of its keys' (a built-in handler has none).
            let inner = format!("{key}.");
            let source = self
                .sources
                .get(&format!("{inner}runtime_path"))
                .or_else(|| {
                    self.sources
                        .iter()
                        .find(|(k, _)| k.starts_with(&inner))
                        .map(|(_, s)| s)
                })
                .cloned()
                .unwrap_or_else(|| self.source_of(&key));
            out.push(Effective {
                source,
                key,
                value: Some(Value::Table(table)),
            });
        }
        let registry = &self.registry;
        out.push(Effective {
            key: "registry.insecure".into(),
            value: Some(Value::Array(
                registry
                    .insecure
                    .iter()
                    .cloned()
                    .map(Value::String)
                    .collect(),
            )),
            source: self.source_of("registry.insecure"),
        });
        let mut entry = |table: &str, host: &str, value: Value| {
            let key = dotted_key(&["registry", table, host]);
            out.push(Effective {
                source: self.source_of(&key),
                key,
                value: Some(value),
            });
        };
        for (host, mirrors) in &registry.mirrors {
            let list = mirrors.iter().cloned().map(Value::String).collect();
            entry("mirrors", host, Value::Array(list));
        }
        for (host, auth) in &registry.auths {
            entry("auths", host, redacted_auth(auth));
        }
        for (host, ca) in &registry.ca {
            entry("ca", host, Value::String(ca.display().to_string()));
        }
        out
    }

    /// `crius config show`: annotated TOML that is itself a valid configuration file (with
    /// secrets redacted).
    pub fn show_text(&self) -> String {
        let mut out = String::from(
            "# crius: the effective configuration; each value says where it comes from\n",
        );
        match &self.config_file {
            Some(file) => {
                let _ = writeln!(out, "# file: {}", file.display());
            }
            None => out.push_str("# file: none (defaults)\n"),
        }
        for drop_in in &self.drop_ins {
            let _ = writeln!(out, "# drop-in: {}", drop_in.display());
        }
        let mut section = "";
        for e in self.effective() {
            let (table, key) = match e.key.strip_prefix("registry.") {
                None => ("", e.key.as_str()),
                Some(rest) => match rest.split_once('.') {
                    Some((sub, key)) => (sub, key),
                    None => ("registry", rest),
                },
            };
            let header = match table {
                "" => "",
                "registry" => "registry",
                "mirrors" => "registry.mirrors",
                "auths" => "registry.auths",
                _ => "registry.ca",
            };
            if header != section {
                let _ = write!(out, "\n[{header}]\n");
                section = header;
            }
            match &e.value {
                Some(value) => {
                    let _ = writeln!(out, "{key} = {value}  # {}", e.source);
                }
                None => {
                    let _ = writeln!(out, "# {key}: not set  # {}", e.source);
                }
            }
        }
        // Every [registry.*] table, so a reader sees none is configured.
        for header in ["registry.mirrors", "registry.auths", "registry.ca"] {
            if !out.contains(&format!("[{header}]")) {
                let _ = write!(out, "\n[{header}]\n");
            }
        }
        out
    }

    /// `crius config show --json`: `{"files": [...], "values": {key: {value, source}}}`.
    pub fn show_json(&self) -> serde_json::Value {
        let values: serde_json::Map<String, serde_json::Value> = self
            .effective()
            .into_iter()
            .map(|e| {
                let value = e
                    .value
                    .as_ref()
                    .and_then(|v| serde_json::to_value(v).ok())
                    .unwrap_or(serde_json::Value::Null);
                let entry = serde_json::json!({ "value": value, "source": e.source.to_string() });
                (e.key, entry)
            })
            .collect();
        let files: Vec<String> = self
            .config_file
            .iter()
            .chain(&self.drop_ins)
            .map(|p| p.display().to_string())
            .collect();
        serde_json::json!({ "files": files, "values": values })
    }
}

/// Keys whose effective value differs between two configurations, in display order.
pub fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    let before: BTreeMap<String, Option<Value>> = old
        .effective()
        .into_iter()
        .map(|e| (e.key, e.value))
        .collect();
    let after = new.effective();
    let mut changed: Vec<String> = after
        .iter()
        .filter(|e| before.get(&e.key) != Some(&e.value))
        .map(|e| e.key.clone())
        .collect();
    // Entries that are gone (a mirror, a credential removed).
    for key in before.keys() {
        if !after.iter().any(|e| &e.key == key) {
            changed.push(key.clone());
        }
    }
    // Credentials compare redacted: a changed password must count as a change.
    let auths_changed = old.registry.auths != new.registry.auths;
    if auths_changed {
        for host in new.registry.auths.keys() {
            let key = format!("registry.auths.{}", key_segment(host));
            if !changed.contains(&key) {
                changed.push(key);
            }
        }
    }
    changed
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_back_as_the_file_writes_them() {
        for (text, ms) in [
            ("0", 0),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("1m30s500ms", 90_500),
            ("250ms", 250),
        ] {
            assert_eq!(format_duration(Duration::from_millis(ms)), text);
            assert_eq!(
                super::super::parse_duration(text).unwrap(),
                Duration::from_millis(ms)
            );
        }
    }
}
