//! Pod networking: a network namespace per sandbox, pinned under `<state>/netns/<id>`, and
//! the CNI plugins of the first network in `cni_conf_dir` executed directly on it (ADD on
//! RunPodSandbox, DEL on Stop, rollback and recovery).
//!
//! What DEL needs is written to `<state>/cni-results/<id>.json` before ADD runs (the
//! network's plugin list, CNI_ARGS, runtime config) and completed with the ADD result after
//! it, so DEL runs the same chain with the same inputs after a config change or a restart.

mod args;
mod cni;
mod config;
mod default_network;
mod netns;

pub use config::{load_dir, plugin_type, Loaded, NetworkList};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::Config;
use crate::domain::SandboxConfig;
use crate::error::{Error, Result};
use crate::store::StateDir;

/// Interface name of the pod's side of the network.
const POD_IF_NAME: &str = "eth0";
/// Record kind under `<state>` holding each sandbox's attachment.
const ATTACHMENTS: &str = "cni-results";
/// How often the conf dir is re-read.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// The network a sandbox got.
#[derive(Debug, Clone, Default)]
pub struct PodNetwork {
    pub netns_path: String,
    /// Primary IP first (IPv4 when there is one), then the others (dual stack).
    pub ips: Vec<String>,
}

/// NetworkReady, as Status reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    pub reason: String,
    pub message: String,
}

/// Everything DEL needs, kept per sandbox.
#[derive(Debug, Serialize, Deserialize)]
struct Attachment {
    /// The plugin list ADD ran (name, cniVersion, plugins).
    network: Value,
    cni_args: String,
    runtime_config: Map<String, Value>,
    /// The ADD result; `None` until ADD finished.
    result: Option<Value>,
}

pub struct Network {
    conf_dir: PathBuf,
    plugins: cni::Plugins,
    netns_dir: PathBuf,
    attachments: StateDir,
    /// The built-in network used while the conf dir has none (`cni_default_network`).
    default: Option<NetworkList>,
    /// What the last look at the conf dir found; Status reads it without I/O.
    current: ArcSwap<Loaded>,
    /// From UpdateRuntimeConfig; offered to plugins declaring the `ipRanges` capability.
    pod_cidr: Mutex<String>,
    /// `cni_conf_template`: rendered into the conf dir when the pod CIDR arrives.
    template: Option<PathBuf>,
}

/// The file a rendered `cni_conf_template` becomes in the conf dir.
const TEMPLATE_OUTPUT: &str = "10-crius-net.conflist";

impl Network {
    pub fn new(config: &Config) -> Self {
        let default = config
            .cni_default_network
            .then(|| default_network::network(&config.state.join("cni-ipam")));
        let network = Self {
            conf_dir: config.cni_conf_dir.clone(),
            plugins: cni::Plugins {
                bin_dirs: config.cni_bin_dirs.clone(),
            },
            netns_dir: config.state.join("netns"),
            attachments: StateDir::new(config.state.clone()),
            default,
            current: ArcSwap::from_pointee(Loaded::default()),
            pod_cidr: Mutex::new(String::new()),
            template: config.cni_conf_template.clone(),
        };
        network.reload();
        network
    }

    /// Where a sandbox's namespace is pinned.
    pub fn netns_path(&self, id: &str) -> PathBuf {
        self.netns_dir.join(id)
    }

    /// Re-read the conf dir; returns the network pods get now.
    pub fn reload(&self) -> Option<NetworkList> {
        let mut loaded = load_dir(&self.conf_dir);
        if loaded.network.is_none() {
            loaded.network = self.default.clone();
        }
        let previous = self.current.load();
        let name = |l: &Loaded| {
            l.network
                .as_ref()
                .map(|n| (n.name.clone(), n.source.clone()))
        };
        if name(&previous) != name(&loaded) || previous.problems != loaded.problems {
            match &loaded.network {
                Some(n) => {
                    tracing::info!(network = %n.name, source = %n.source, "CNI network configured")
                }
                None => {
                    tracing::warn!(dir = %self.conf_dir.display(), problems = ?loaded.problems, "no CNI network configuration")
                }
            }
        }
        let network = loaded.network.clone();
        self.current.store(Arc::new(loaded));
        network
    }

    /// Watch the conf dir (polling) so NetworkReady follows it without a restart.
    pub fn spawn_watcher(self: &Arc<Self>) {
        let network = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(WATCH_INTERVAL);
            loop {
                tick.tick().await;
                let Some(network) = network.upgrade() else {
                    return;
                };
                let _ = tokio::task::spawn_blocking(move || network.reload()).await;
            }
        });
    }

    pub fn readiness(&self) -> Readiness {
        let current = self.current.load();
        if current.network.is_some() {
            return Readiness {
                ready: true,
                reason: String::new(),
                message: String::new(),
            };
        }
        let mut message = format!(
            "Network plugin returns error: cni config uninitialized: no network configuration (*.conflist, *.conf, *.json) in {}; crius picks one up within a second of it appearing",
            self.conf_dir.display()
        );
        if !current.problems.is_empty() {
            message.push_str(&format!(" (skipped: {})", current.problems.join("; ")));
        }
        Readiness {
            ready: false,
            reason: "NetworkPluginNotReady".to_string(),
            message,
        }
    }

    /// The network's name and source, for verbose Status.
    pub fn describe(&self) -> Value {
        let current = self.current.load();
        serde_json::json!({
            "confDir": self.conf_dir,
            "binDirs": self.plugins.bin_dirs,
            "network": current.network.as_ref().map(|n| n.to_json()),
            "source": current.network.as_ref().map(|n| n.source.clone()),
            "podCIDR": self.pod_cidr(),
        })
    }

    /// UpdateRuntimeConfig's pod CIDR (comma separated for dual stack). With
    /// `cni_conf_template` set, the template is rendered into the conf dir, which the
    /// watcher then picks up; without one the CIDR is only kept for `ipRanges`.
    pub fn set_pod_cidr(&self, cidr: &str) -> Result<()> {
        let cidr = cidr.trim();
        if self.pod_cidr() == cidr {
            return Ok(());
        }
        // The CIDR is taken only once its config is written, so a failed render is retried
        // by kubelet's next call with the same CIDR.
        if let (Some(template), false) = (&self.template, cidr.is_empty()) {
            self.render_template_file(template, cidr)?;
        }
        *self.pod_cidr.lock().unwrap_or_else(PoisonError::into_inner) = cidr.to_string();
        if self.template.is_some() {
            self.reload();
        }
        Ok(())
    }

    fn render_template_file(&self, template: &Path, cidr: &str) -> Result<()> {
        let text = std::fs::read_to_string(template).map_err(|e| {
            Error::FailedPrecondition(format!("cni_conf_template {}: {e}", template.display()))
        })?;
        let rendered = render_template(&text, cidr).map_err(|m| {
            Error::FailedPrecondition(format!("cni_conf_template {}: {m}", template.display()))
        })?;
        std::fs::create_dir_all(&self.conf_dir)
            .map_err(|e| Error::internal(format!("creating {}", self.conf_dir.display()), e))?;
        let target = self.conf_dir.join(TEMPLATE_OUTPUT);
        let partial = self.conf_dir.join(format!(".{TEMPLATE_OUTPUT}.partial"));
        std::fs::write(&partial, rendered)
            .and_then(|()| std::fs::rename(&partial, &target))
            .map_err(|e| Error::internal(format!("writing {}", target.display()), e))?;
        tracing::info!(pod_cidr = cidr, file = %target.display(), "rendered the CNI config template");
        Ok(())
    }

    pub fn pod_cidr(&self) -> String {
        self.pod_cidr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Make the sandbox's namespace and attach it to the network. On failure everything
    /// done so far is undone (DEL, namespace removed) before the error is returned.
    pub async fn setup(&self, id: &str, config: &SandboxConfig) -> Result<PodNetwork> {
        let path = self.create_netns(id).await?;
        self.attach(id, config, path).await
    }

    /// The sandbox's network namespace, pinned at [`Network::netns_path`], `lo` up; not yet
    /// attached to any network (see [`Network::attach`]).
    pub async fn create_netns(&self, id: &str) -> Result<PathBuf> {
        let path = self.netns_path(id);
        let make = path.clone();
        tokio::task::spawn_blocking(move || netns::create(&make))
            .await
            .map_err(|e| Error::internal("creating the network namespace", e))?
            .map_err(|e| {
                Error::internal(format!("creating network namespace {}", path.display()), e)
            })?;
        Ok(path)
    }

    /// Like [`Network::setup`] for a namespace that already exists (`source`, the pause
    /// process's own in a pod with a user namespace): pinned at the usual path, then attached.
    pub async fn setup_existing(
        &self,
        id: &str,
        config: &SandboxConfig,
        source: PathBuf,
    ) -> Result<PodNetwork> {
        let path = self.netns_path(id);
        let pin = path.clone();
        tokio::task::spawn_blocking(move || netns::pin(&source, &pin))
            .await
            .map_err(|e| Error::internal("pinning the network namespace", e))?
            .map_err(|e| {
                Error::internal(format!("pinning network namespace {}", path.display()), e)
            })?;
        self.attach(id, config, path).await
    }

    /// Attach the namespace pinned at `path` to the network (CNI ADD). On failure the
    /// attachment and the namespace are undone before the error is returned.
    pub async fn attach(
        &self,
        id: &str,
        config: &SandboxConfig,
        path: PathBuf,
    ) -> Result<PodNetwork> {
        let cidr = self.pod_cidr();
        let runtime_config = match args::runtime_config(config, Some(&cidr)) {
            Ok(c) => c,
            Err(e) => {
                let _ = tokio::task::spawn_blocking(move || netns::remove(&path)).await;
                return Err(e);
            }
        };
        let netns_path = path.display().to_string();
        let Some(network) = self.reload() else {
            // kubelet runs no pod network pods while NetworkReady is false; a direct CRI
            // caller still gets a pod, isolated with only `lo`.
            tracing::warn!(
                sandbox = id,
                "no CNI network configured: the pod gets only a loopback interface"
            );
            return Ok(PodNetwork {
                netns_path,
                ips: Vec::new(),
            });
        };
        match self
            .add(id, config, &network, &netns_path, runtime_config)
            .await
        {
            Ok(ips) => Ok(PodNetwork { netns_path, ips }),
            Err(e) => {
                if let Err(undo) = self.teardown_forced(id).await {
                    tracing::error!(sandbox = id, error = %undo, "could not undo a failed CNI ADD");
                }
                Err(e)
            }
        }
    }

    async fn add(
        &self,
        id: &str,
        config: &SandboxConfig,
        network: &NetworkList,
        netns_path: &str,
        runtime_config: Map<String, Value>,
    ) -> Result<Vec<String>> {
        let mut attachment = Attachment {
            network: network.to_json(),
            cni_args: args::cni_args(id, config),
            runtime_config,
            result: None,
        };
        // Written first: a crash during ADD still leaves what DEL needs.
        self.attachments.write(ATTACHMENTS, id, &attachment).await?;
        let call = cni::Call {
            container_id: id,
            netns: netns_path,
            if_name: POD_IF_NAME,
            args: &attachment.cni_args,
        };
        let started = std::time::Instant::now();
        let added = self
            .plugins
            .add(network, &call, &attachment.runtime_config)
            .await;
        crate::metrics::CNI
            .add
            .finished(started.elapsed(), added.is_ok());
        let result = added?;
        let ips = cni::pod_ips(&result);
        attachment.result = Some(result);
        self.attachments.write(ATTACHMENTS, id, &attachment).await?;
        tracing::debug!(
            sandbox = id,
            ?ips,
            network = %network.name,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "CNI ADD done"
        );
        Ok(ips)
    }

    /// CNI DEL, then unmount and delete the namespace. Idempotent; fine when the namespace
    /// or the attachment is already gone. A failed DEL keeps both, so a retry can finish it.
    pub async fn teardown(&self, id: &str) -> Result<()> {
        self.teardown_with(id, false).await
    }

    /// Like [`Network::teardown`], but the namespace and record go even when DEL fails
    /// (rollback of a failed ADD, where a retry would fail the same way).
    pub async fn teardown_forced(&self, id: &str) -> Result<()> {
        self.teardown_with(id, true).await
    }

    async fn teardown_with(&self, id: &str, force: bool) -> Result<()> {
        let path = self.netns_path(id);
        let deleted = self.del(id, &path).await;
        if deleted.is_err() && !force {
            return deleted;
        }
        self.attachments.remove(ATTACHMENTS, id)?;
        let remove = path.clone();
        tokio::task::spawn_blocking(move || netns::remove(&remove))
            .await
            .map_err(|e| Error::internal("removing the network namespace", e))?
            .map_err(|e| {
                Error::internal(format!("removing network namespace {}", path.display()), e)
            })?;
        deleted
    }

    async fn del(&self, id: &str, path: &Path) -> Result<()> {
        let Some(attachment) = self.attachment(id) else {
            return Ok(());
        };
        let network = NetworkList::from_json(&attachment.network).map_err(|e| {
            Error::Internal(format!("CNI attachment of sandbox {id} is unusable: {e}"))
        })?;
        // CNI: DEL with an empty CNI_NETNS when the namespace is gone; plugins still release
        // what they hold outside it (IPs, iptables rules).
        let netns = if netns::is_netns(path) {
            path.display().to_string()
        } else {
            String::new()
        };
        let call = cni::Call {
            container_id: id,
            netns: &netns,
            if_name: POD_IF_NAME,
            args: &attachment.cni_args,
        };
        let started = std::time::Instant::now();
        let deleted = self
            .plugins
            .del(
                &network,
                &call,
                &attachment.runtime_config,
                attachment.result.as_ref(),
            )
            .await;
        crate::metrics::CNI
            .del
            .finished(started.elapsed(), deleted.is_ok());
        deleted
    }

    fn attachment(&self, id: &str) -> Option<Attachment> {
        let path = self
            .attachments
            .root()
            .join(ATTACHMENTS)
            .join(format!("{id}.json"));
        let data = std::fs::read(&path).ok()?;
        match serde_json::from_slice(&data) {
            Ok(attachment) => Some(attachment),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "unreadable CNI attachment record");
                None
            }
        }
    }

    /// Start-up only: remove the temporary files of attachment writes a crash cut short.
    /// The attachments themselves stay: an orphaned one is released by CNI DEL first.
    pub fn remove_temporary_records(&self) {
        self.attachments.sweep(ATTACHMENTS, |_| true);
    }

    /// Sandbox ids that hold a namespace or an attachment (for recovery).
    pub fn attached_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        let mut add = |dir: PathBuf, strip: &str| {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let id = name.strip_suffix(strip).unwrap_or(&name).to_string();
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        };
        add(self.netns_dir.clone(), "");
        add(self.attachments.root().join(ATTACHMENTS), ".json");
        ids
    }
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("conf_dir", &self.conf_dir)
            .finish_non_exhaustive()
    }
}

/// Fill a `cni_conf_template`: `{{.PodCIDR}}` becomes the first CIDR, `{{.PodCIDRRanges}}`
/// all of them as a JSON list of host-local range sets. Any other `{{…}}` action is refused
/// rather than left in the output, and the result must be JSON.
fn render_template(text: &str, cidrs: &str) -> std::result::Result<String, String> {
    let ranges: Vec<&str> = cidrs
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    let first = ranges.first().ok_or("the pod CIDR is empty")?;
    let range_sets: Vec<Value> = ranges
        .iter()
        .map(|c| serde_json::json!([{ "subnet": c }]))
        .collect();
    let rendered = text
        .replace("{{.PodCIDR}}", first)
        .replace("{{.PodCIDRRanges}}", &Value::Array(range_sets).to_string());
    if let Some(at) = rendered.find("{{") {
        let action: String = rendered[at..].chars().take(40).collect();
        return Err(format!(
            "unsupported template action {action:?} (only {{{{.PodCIDR}}}} and {{{{.PodCIDRRanges}}}} are replaced)"
        ));
    }
    serde_json::from_str::<Value>(&rendered)
        .map_err(|e| format!("rendered config is not JSON: {e}"))?;
    Ok(rendered)
}

#[cfg(test)]
mod template_tests {
    use super::render_template;

    #[test]
    fn fills_the_pod_cidr_and_ranges() {
        let text = r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge","ipam":{"type":"host-local","subnet":"{{.PodCIDR}}","ranges":{{.PodCIDRRanges}}}}]}"#;
        let out = render_template(text, "10.1.2.0/24, fd00::/64").unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["plugins"][0]["ipam"]["subnet"], "10.1.2.0/24");
        assert_eq!(
            v["plugins"][0]["ipam"]["ranges"][1][0]["subnet"],
            "fd00::/64"
        );
    }

    #[test]
    fn refuses_unknown_actions_and_bad_json() {
        let err = render_template(r#"{"a":"{{range .Routes}}"}"#, "10.0.0.0/24").unwrap_err();
        assert!(err.contains("{{range .Routes}}"), "{err}");
        let err = render_template(r#"{"a": {{.PodCIDR}} }"#, "10.0.0.0/24").unwrap_err();
        assert!(err.contains("not JSON"), "{err}");
        assert!(render_template("{}", " ").is_err());
    }
}
