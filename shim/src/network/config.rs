//! CNI network configuration: the first usable file of the conf dir, in lexical order, as a
//! plugin list (`.conflist`, or a single-plugin `.conf`/`.json` wrapped into one).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// File name endings libcni reads.
const EXTENSIONS: [&str; 3] = ["conflist", "conf", "json"];

/// A network: its name, CNI version and plugins, in the form sent to the plugins.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkList {
    pub name: String,
    pub cni_version: String,
    /// Each plugin's own configuration (`type`, `capabilities`, plugin keys).
    pub plugins: Vec<Value>,
    /// Where it came from (a file, or "built-in default").
    pub source: String,
}

impl NetworkList {
    /// Parse one file's contents; `conflist` says whether it holds a list.
    pub fn parse(text: &str, conflist: bool, source: &str) -> Result<NetworkList, String> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        let object = value.as_object().ok_or("not a JSON object")?;
        let string = |key: &str| object.get(key).and_then(Value::as_str).map(str::to_string);
        let name = string("name")
            .filter(|n| !n.is_empty())
            .ok_or("no \"name\"")?;
        let cni_version = string("cniVersion").unwrap_or_else(|| "0.1.0".to_string());
        let plugins = if conflist || object.contains_key("plugins") {
            let plugins = object
                .get("plugins")
                .and_then(Value::as_array)
                .ok_or("no \"plugins\" list")?;
            if plugins.is_empty() {
                return Err("an empty \"plugins\" list".to_string());
            }
            plugins.clone()
        } else {
            vec![value.clone()]
        };
        for (index, plugin) in plugins.iter().enumerate() {
            if plugin_type(plugin).is_none() {
                return Err(format!("plugin {index} has no \"type\""));
            }
        }
        Ok(NetworkList {
            name,
            cni_version,
            plugins,
            source: source.to_string(),
        })
    }

    /// The whole list as JSON (what the cache stores, so DEL runs the same chain).
    pub fn to_json(&self) -> Value {
        serde_json::json!({ "name": self.name, "cniVersion": self.cni_version, "plugins": self.plugins })
    }

    pub fn from_json(value: &Value) -> Result<NetworkList, String> {
        NetworkList::parse(&value.to_string(), true, "cache")
    }

    /// What plugin `index` reads on stdin: its config with the network's `name` and
    /// `cniVersion`, the previous result, and the runtime config its capabilities ask for.
    pub fn plugin_stdin(
        &self,
        index: usize,
        prev_result: Option<&Value>,
        runtime: &Map<String, Value>,
    ) -> Value {
        let mut conf = self
            .plugins
            .get(index)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        conf.insert("name".to_string(), Value::String(self.name.clone()));
        conf.insert(
            "cniVersion".to_string(),
            Value::String(self.cni_version.clone()),
        );
        if let Some(prev) = prev_result {
            conf.insert("prevResult".to_string(), prev.clone());
        }
        let wanted = capability_args(conf.get("capabilities"), runtime);
        if !wanted.is_empty() {
            let mut merged = conf
                .get("runtimeConfig")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            merged.extend(wanted);
            conf.insert("runtimeConfig".to_string(), Value::Object(merged));
        }
        Value::Object(conf)
    }

    /// Does the network pass `prevResult` on DEL? (CNI 0.4.0 and later.)
    pub fn del_has_prev_result(&self) -> bool {
        version_at_least(&self.cni_version, (0, 4, 0))
    }
}

pub fn plugin_type(plugin: &Value) -> Option<&str> {
    plugin
        .get("type")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
}

/// The runtime arguments a plugin declared a capability for, and only those (CNI
/// conventions: a runtime must not send a capability the plugin did not ask for).
pub fn capability_args(
    capabilities: Option<&Value>,
    runtime: &Map<String, Value>,
) -> Map<String, Value> {
    let Some(capabilities) = capabilities.and_then(Value::as_object) else {
        return Map::new();
    };
    runtime
        .iter()
        .filter(|(key, _)| capabilities.get(key.as_str()).and_then(Value::as_bool) == Some(true))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn version_at_least(version: &str, want: (u32, u32, u32)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let got = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    got >= want
}

/// What loading the conf dir found.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub network: Option<NetworkList>,
    /// Files that were skipped and why, for the NetworkReady message and the log.
    pub problems: Vec<String>,
}

/// Load the first usable network in `dir`: files ending in `.conflist`, `.conf` or `.json`,
/// in lexical order of their names; unreadable or invalid ones are skipped (and reported).
pub fn load_dir(dir: &Path) -> Loaded {
    let mut loaded = Loaded::default();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| EXTENSIONS.contains(&e))
            })
            .filter(|p| p.is_file())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return loaded,
        Err(e) => {
            loaded.problems.push(format!("{}: {e}", dir.display()));
            return loaded;
        }
    };
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    for file in files {
        let conflist = file.extension().is_some_and(|e| e == "conflist");
        let source = file.display().to_string();
        let parsed = std::fs::read_to_string(&file)
            .map_err(|e| e.to_string())
            .and_then(|text| NetworkList::parse(&text, conflist, &source));
        match parsed {
            Ok(network) => {
                loaded.network = Some(network);
                break;
            }
            Err(e) => loaded.problems.push(format!("{source}: {e}")),
        }
    }
    loaded
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write(dir: &Path, name: &str, value: &Value) {
        std::fs::write(dir.join(name), value.to_string()).unwrap();
    }

    #[test]
    fn first_file_in_lexical_order_wins() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "20-second.conflist",
            &json!({"cniVersion": "1.0.0", "name": "second", "plugins": [{"type": "bridge"}]}),
        );
        write(
            dir.path(),
            "10-first.conflist",
            &json!({"cniVersion": "1.0.0", "name": "first", "plugins": [{"type": "ptp"}]}),
        );
        write(
            dir.path(),
            "00-ignored.txt",
            &json!({"cniVersion": "1.0.0", "name": "txt", "plugins": [{"type": "x"}]}),
        );
        let loaded = load_dir(dir.path());
        let network = loaded.network.unwrap();
        assert_eq!(network.name, "first");
        assert!(network.source.ends_with("10-first.conflist"));
        assert!(loaded.problems.is_empty());
    }

    #[test]
    fn invalid_files_are_skipped_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("01-broken.conflist"), "{not json").unwrap();
        write(
            dir.path(),
            "02-empty.conflist",
            &json!({"name": "e", "plugins": []}),
        );
        write(
            dir.path(),
            "03-notype.conf",
            &json!({"name": "n", "cniVersion": "0.4.0"}),
        );
        write(
            dir.path(),
            "04-good.conf",
            &json!({"name": "good", "cniVersion": "0.4.0", "type": "bridge", "bridge": "b0"}),
        );
        let loaded = load_dir(dir.path());
        assert_eq!(
            loaded.network.as_ref().map(|n| n.name.as_str()),
            Some("good")
        );
        assert_eq!(loaded.problems.len(), 3, "{:?}", loaded.problems);
        assert!(loaded.problems[0].contains("01-broken.conflist"));
    }

    #[test]
    fn single_plugin_conf_is_wrapped_into_a_list() {
        let text =
            json!({"cniVersion": "0.4.0", "name": "net", "type": "bridge", "bridge": "cni0"})
                .to_string();
        for name in ["x.conf", "x.json"] {
            let network = NetworkList::parse(&text, false, name).unwrap();
            assert_eq!(network.name, "net");
            assert_eq!(network.cni_version, "0.4.0");
            assert_eq!(network.plugins.len(), 1);
            assert_eq!(plugin_type(&network.plugins[0]), Some("bridge"));
            assert_eq!(network.plugins[0]["bridge"], "cni0");
        }
    }

    #[test]
    fn missing_dir_is_simply_empty() {
        let loaded = load_dir(Path::new("/nonexistent/crius/cni"));
        assert!(loaded.network.is_none() && loaded.problems.is_empty());
    }

    #[test]
    fn runtime_config_only_for_declared_capabilities() {
        let network = NetworkList::parse(
            &json!({"cniVersion": "1.0.0", "name": "n", "plugins": [
                {"type": "bridge"},
                {"type": "portmap", "capabilities": {"portMappings": true}},
                {"type": "bandwidth", "capabilities": {"bandwidth": true, "portMappings": false},
                 "runtimeConfig": {"keep": 1}}
            ]})
            .to_string(),
            true,
            "t",
        )
        .unwrap();
        let mut runtime = Map::new();
        runtime.insert(
            "portMappings".into(),
            json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]),
        );
        runtime.insert("bandwidth".into(), json!({"ingressRate": 1000}));
        runtime.insert("dns".into(), json!({"servers": ["10.0.0.10"]}));

        let bridge = network.plugin_stdin(0, None, &runtime);
        assert_eq!(bridge["name"], "n");
        assert_eq!(bridge["cniVersion"], "1.0.0");
        assert!(bridge.get("runtimeConfig").is_none());
        assert!(bridge.get("prevResult").is_none());

        let prev = json!({"ips": [{"address": "10.88.0.2/24"}]});
        let portmap = network.plugin_stdin(1, Some(&prev), &runtime);
        assert_eq!(portmap["prevResult"], prev);
        assert_eq!(
            portmap["runtimeConfig"],
            json!({"portMappings": runtime["portMappings"]})
        );

        let bandwidth = network.plugin_stdin(2, Some(&prev), &runtime);
        assert_eq!(
            bandwidth["runtimeConfig"],
            json!({"keep": 1, "bandwidth": {"ingressRate": 1000}})
        );
    }

    #[test]
    fn del_prev_result_depends_on_version() {
        let list = |v: &str| NetworkList {
            name: "n".into(),
            cni_version: v.into(),
            plugins: vec![json!({"type": "bridge"})],
            source: String::new(),
        };
        assert!(list("1.0.0").del_has_prev_result());
        assert!(list("0.4.0").del_has_prev_result());
        assert!(!list("0.3.1").del_has_prev_result());
        let round = NetworkList::from_json(&list("1.0.0").to_json()).unwrap();
        assert_eq!(round.plugins, list("1.0.0").plugins);
    }
}
