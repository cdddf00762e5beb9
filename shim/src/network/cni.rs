//! Executing CNI plugins directly, as the CNI spec describes: the plugin binary from the
//! bin dirs, `CNI_*` environment, the network config on stdin, a result or error on stdout.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::config::{plugin_type, NetworkList};
use crate::error::{Error, Result};

/// A plugin that takes longer than this is killed (bridge/portmap take milliseconds).
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(120);

/// The per-attachment parameters of a plugin call.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub container_id: &'a str,
    /// Empty on DEL when the namespace is already gone (plugins then skip in-netns work).
    pub netns: &'a str,
    pub if_name: &'a str,
    pub args: &'a str,
}

/// Where the plugins live.
#[derive(Debug, Clone)]
pub struct Plugins {
    pub bin_dirs: Vec<PathBuf>,
}

impl Plugins {
    fn find(&self, plugin: &str) -> Result<PathBuf> {
        if plugin.contains('/') {
            return Err(Error::InvalidArgument(format!(
                "CNI plugin type {plugin:?} must be a plain name"
            )));
        }
        self.bin_dirs
            .iter()
            .map(|dir| dir.join(plugin))
            .find(|path| path.is_file())
            .ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "CNI plugin {plugin:?} not found in {}",
                    self.bin_dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }

    fn cni_path(&self) -> String {
        self.bin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }

    /// ADD through the chain; returns the last plugin's result.
    pub async fn add(
        &self,
        network: &NetworkList,
        call: &Call<'_>,
        runtime: &serde_json::Map<String, Value>,
    ) -> Result<Value> {
        let mut prev: Option<Value> = None;
        for index in 0..network.plugins.len() {
            let stdin = network.plugin_stdin(index, prev.as_ref(), runtime);
            let result = self
                .exec(&network.plugins[index], "ADD", call, &stdin)
                .await?;
            prev = Some(result.unwrap_or(Value::Null));
        }
        Ok(prev.unwrap_or(Value::Null))
    }

    /// DEL through the chain in reverse, with the cached ADD result as `prevResult`
    /// (CNI ≥ 0.4.0). Every plugin runs even when one fails; the first error is returned.
    pub async fn del(
        &self,
        network: &NetworkList,
        call: &Call<'_>,
        runtime: &serde_json::Map<String, Value>,
        cached: Option<&Value>,
    ) -> Result<()> {
        let prev = cached.filter(|v| !v.is_null() && network.del_has_prev_result());
        let mut first_error = None;
        for index in (0..network.plugins.len()).rev() {
            let stdin = network.plugin_stdin(index, prev, runtime);
            if let Err(e) = self
                .exec(&network.plugins[index], "DEL", call, &stdin)
                .await
            {
                tracing::warn!(container = call.container_id, error = %e, "CNI DEL failed");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Run one plugin; `Ok(None)` when it printed nothing (DEL).
    async fn exec(
        &self,
        plugin: &Value,
        command: &str,
        call: &Call<'_>,
        stdin: &Value,
    ) -> Result<Option<Value>> {
        let kind = plugin_type(plugin).unwrap_or_default();
        let binary = self.find(kind)?;
        let fail = |what: String| {
            Error::Internal(format!(
                "CNI plugin {kind} {command} for {}: {what}",
                call.container_id
            ))
        };
        let mut child = tokio::process::Command::new(&binary)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", call.container_id)
            .env("CNI_NETNS", call.netns)
            .env("CNI_IFNAME", call.if_name)
            .env("CNI_ARGS", call.args)
            .env("CNI_PATH", self.cni_path())
            .current_dir(binary.parent().unwrap_or(Path::new("/")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(format!("cannot run {}: {e}", binary.display())))?;
        let input = serde_json::to_vec(stdin).map_err(|e| fail(e.to_string()))?;
        if let Some(mut pipe) = child.stdin.take() {
            // A plugin may exit without reading everything; its exit status tells what happened.
            let _ = pipe.write_all(&input).await;
        }
        let output = tokio::time::timeout(PLUGIN_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| fail(format!("no answer within {PLUGIN_TIMEOUT:?}")))?
            .map_err(|e| fail(e.to_string()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(fail(plugin_error(
                &stdout,
                &String::from_utf8_lossy(&output.stderr),
                output.status,
            )));
        }
        if stdout.trim().is_empty() {
            return Ok(None);
        }
        serde_json::from_str(&stdout)
            .map(Some)
            .map_err(|e| fail(format!("result is not JSON ({e}): {stdout:.200}")))
    }
}

/// The message of a failed plugin: its `{code, msg, details}` error, else its output.
fn plugin_error(stdout: &str, stderr: &str, status: std::process::ExitStatus) -> String {
    if let Ok(error) = serde_json::from_str::<Value>(stdout) {
        if let Some(msg) = error.get("msg").and_then(Value::as_str) {
            let code = error.get("code").and_then(Value::as_u64).unwrap_or(0);
            let details = error
                .get("details")
                .and_then(Value::as_str)
                .filter(|d| !d.is_empty());
            return match details {
                Some(details) => format!("error {code}: {msg}: {details}"),
                None => format!("error {code}: {msg}"),
            };
        }
    }
    let text = [stdout.trim(), stderr.trim()]
        .iter()
        .filter(|t| !t.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("; ");
    format!("{status}: {text:.500}")
}

/// The pod's addresses from a CNI result: those on interfaces inside the sandbox (all of
/// them when the result does not say), IPv4 first, without prefix lengths. Also reads the
/// 0.2.0 form (`ip4`/`ip6`).
pub fn pod_ips(result: &Value) -> Vec<String> {
    let interfaces = result.get("interfaces").and_then(Value::as_array);
    let in_sandbox = |ip: &Value| -> bool {
        ip.get("interface")
            .and_then(Value::as_u64)
            .and_then(|index| interfaces?.get(usize::try_from(index).ok()?))
            .and_then(|i| i.get("sandbox"))
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    let cidrs: Vec<&str> = match result.get("ips").and_then(Value::as_array) {
        Some(ips) => {
            fn address(ip: &Value) -> Option<&str> {
                ip.get("address").and_then(Value::as_str)
            }
            let pod: Vec<&str> = ips
                .iter()
                .filter(|ip| in_sandbox(ip))
                .filter_map(address)
                .collect();
            if pod.is_empty() {
                ips.iter().filter_map(address).collect()
            } else {
                pod
            }
        }
        None => ["ip4", "ip6"]
            .iter()
            .filter_map(|key| {
                result
                    .get(*key)
                    .and_then(|v| v.get("ip"))
                    .and_then(Value::as_str)
            })
            .collect(),
    };
    let mut addresses: Vec<IpAddr> = Vec::new();
    for cidr in cidrs {
        if let Ok(ip) = cidr.split('/').next().unwrap_or_default().parse::<IpAddr>() {
            if !addresses.contains(&ip) {
                addresses.push(ip);
            }
        }
    }
    addresses.sort_by_key(|ip| ip.is_ipv6());
    addresses.iter().map(IpAddr::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn ips_from_results() {
        let result = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cni0", "mac": "aa"},
                {"name": "veth1", "mac": "bb"},
                {"name": "eth0", "mac": "cc", "sandbox": "/run/netns/x"}
            ],
            "ips": [
                {"address": "fd00::5/64", "interface": 2},
                {"address": "10.88.0.1/24", "interface": 0},
                {"address": "10.88.0.5/24", "interface": 2, "gateway": "10.88.0.1"}
            ]
        });
        assert_eq!(pod_ips(&result), ["10.88.0.5", "fd00::5"]);
        assert_eq!(
            pod_ips(&json!({"ips": [{"address": "10.1.2.3/16"}]})),
            ["10.1.2.3"]
        );
        assert_eq!(
            pod_ips(&json!({"ip4": {"ip": "10.9.0.2/24"}})),
            ["10.9.0.2"]
        );
        assert!(pod_ips(&json!({})).is_empty());
    }

    #[test]
    fn plugin_errors_are_readable() {
        let status = std::process::Command::new("false").status().unwrap();
        let msg = plugin_error(
            r#"{"code": 11, "msg": "failed to allocate", "details": "range full"}"#,
            "",
            status,
        );
        assert_eq!(msg, "error 11: failed to allocate: range full");
        let msg = plugin_error("", "panic: boom", status);
        assert!(msg.contains("panic: boom"), "{msg}");
    }

    /// A fake plugin that records its environment and stdin, then answers.
    #[tokio::test]
    async fn plugins_get_the_cni_environment_and_chain_results() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls");
        let script = format!(
            "#!/bin/sh\nin=$(cat)\necho \"$CNI_COMMAND $CNI_CONTAINERID $CNI_NETNS $CNI_IFNAME $CNI_ARGS $CNI_PATH $in\" >> {}\n\
             if [ \"$CNI_COMMAND\" = ADD ]; then echo '{{\"cniVersion\":\"1.0.0\",\"ips\":[{{\"address\":\"10.1.0.7/24\"}}]}}'; fi\n",
            log.display()
        );
        let plugin = dir.path().join("fake");
        std::fs::write(&plugin, script).unwrap();
        std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let failing = dir.path().join("failing");
        std::fs::write(
            &failing,
            "#!/bin/sh\necho '{\"code\":7,\"msg\":\"nope\"}'\nexit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(&failing, std::fs::Permissions::from_mode(0o755)).unwrap();

        let plugins = Plugins {
            bin_dirs: vec![PathBuf::from("/nonexistent"), dir.path().to_path_buf()],
        };
        let network = NetworkList::parse(
            &json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "fake"}, {"type": "fake", "capabilities": {"portMappings": true}}]}).to_string(),
            true,
            "t",
        )
        .unwrap();
        let call = Call {
            container_id: "c1",
            netns: "/run/netns/c1",
            if_name: "eth0",
            args: "IgnoreUnknown=1",
        };
        let mut runtime = serde_json::Map::new();
        runtime.insert("portMappings".into(), json!([]));
        let result = plugins.add(&network, &call, &runtime).await.unwrap();
        assert_eq!(pod_ips(&result), ["10.1.0.7"]);
        plugins
            .del(&network, &call, &runtime, Some(&result))
            .await
            .unwrap();
        let calls = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = calls.lines().collect();
        assert_eq!(lines.len(), 4, "{calls}");
        let cni_path = format!("/nonexistent:{}", dir.path().display());
        assert!(
            lines[0].starts_with(&format!(
                "ADD c1 /run/netns/c1 eth0 IgnoreUnknown=1 {cni_path} {{"
            )),
            "{}",
            lines[0]
        );
        assert!(
            !lines[0].contains("prevResult") && !lines[0].contains("runtimeConfig"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].contains("prevResult") && lines[1].contains("runtimeConfig"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].starts_with("DEL ") && lines[2].contains("prevResult"),
            "{}",
            lines[2]
        );

        let broken = NetworkList::parse(
            &json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "failing"}]})
                .to_string(),
            true,
            "t",
        )
        .unwrap();
        let err = plugins.add(&broken, &call, &runtime).await.unwrap_err();
        assert!(err.to_string().contains("error 7: nope"), "{err}");
        let missing = NetworkList::parse(
            &json!({"name": "n", "type": "absent"}).to_string(),
            false,
            "t",
        )
        .unwrap();
        let err = plugins.add(&missing, &call, &runtime).await.unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
    }
}
