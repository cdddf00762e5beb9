//! The layers a configuration is made of and where each value came from: the main file, the
//! drop-ins of its `config.d/` in lexical order, then the command-line flags. Tables merge key
//! by key (a later layer replaces only the keys it names); a list or a scalar is replaced
//! whole; one registry's credentials (`[registry.auths."host"]`) are one value, so a drop-in
//! never pairs its password with another file's user name.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::{ConfigError, FileConfig, Flags};

/// Where an effective value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// crius's built-in default.
    Default,
    /// A default chosen from what the node is (e.g. the cgroup driver from PID 1).
    Detected(String),
    /// A configuration file (the main file or a drop-in).
    File(PathBuf),
    /// A command-line flag, as written (`--listen`).
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::Detected(why) => write!(f, "default ({why})"),
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// Dotted key (`registry.mirrors."docker.io"`) → the layer that set it last.
pub type Sources = BTreeMap<String, Source>;

/// The files read, the merged table and the source of every value in it.
#[derive(Debug, Default)]
pub(super) struct Merged {
    pub table: Table,
    pub sources: Sources,
    /// The main file, when one was read.
    pub main: Option<PathBuf>,
    /// Drop-ins, in the order they were applied.
    pub drop_ins: Vec<PathBuf>,
}

/// Reads `main` (when given) and every `*.toml` of `drop_in_dir` (when it exists), checks
/// each file on its own (syntax, known keys, types: the error names the file), and merges
/// them in that order.
pub(super) fn read_files(
    main: Option<&Path>,
    drop_in_dir: Option<&Path>,
) -> Result<Merged, ConfigError> {
    let mut merged = Merged::default();
    if let Some(path) = main {
        merged.add_file(path)?;
        merged.main = Some(path.to_path_buf());
    }
    if let Some(dir) = drop_in_dir {
        for path in drop_ins(dir)? {
            merged.add_file(&path)?;
            merged.drop_ins.push(path);
        }
    }
    Ok(merged)
}

/// The drop-ins of `dir`: regular files (or links to them) named `*.toml`, not hidden, in
/// lexical order of their names. A directory that does not exist has none.
pub(super) fn drop_ins(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ConfigError::Read {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ConfigError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        if name.starts_with('.') || !name.ends_with(".toml") || !path.is_file() {
            continue;
        }
        files.push(path);
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// One file as a table, after checking it against [`FileConfig`] on its own.
pub(super) fn read_table(path: &Path) -> Result<Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            ConfigError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    let parse_error = |message: String| ConfigError::Parse {
        path: path.to_path_buf(),
        message: message.trim_end().to_string(),
    };
    // Typed first: its errors carry the line and column of an unknown key or a wrong type.
    toml::from_str::<FileConfig>(&text).map_err(|e| parse_error(e.to_string()))?;
    toml::from_str::<Table>(&text).map_err(|e| parse_error(e.to_string()))
}

impl Merged {
    fn add_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let table = read_table(path)?;
        self.merge(table, &Source::File(path.to_path_buf()));
        Ok(())
    }

    /// Applies one layer on top of what is merged so far.
    pub fn merge(&mut self, layer: Table, source: &Source) {
        merge_into(
            &mut self.table,
            layer,
            &mut Vec::new(),
            source,
            &mut self.sources,
        );
    }

    /// Applies the flags given on the command line, each as its own layer.
    pub fn merge_flags(&mut self, flags: &Flags) -> Result<(), ConfigError> {
        for (path, flag, value) in flag_values(flags)? {
            let mut layer = Table::new();
            insert_at(&mut layer, &path, value);
            self.merge(layer, &Source::Flag(flag.to_string()));
        }
        Ok(())
    }

    /// The merged layers as the typed file form.
    pub fn into_file_config(
        self,
    ) -> Result<(FileConfig, Sources, Option<PathBuf>, Vec<PathBuf>), ConfigError> {
        let file = Value::Table(self.table)
            .try_into::<FileConfig>()
            .map_err(|e| ConfigError::Merged {
                message: e.to_string().trim_end().to_string(),
            })?;
        Ok((file, self.sources, self.main, self.drop_ins))
    }
}

/// `[registry.auths."host"]` is one credential: replaced whole, never merged key by key.
fn is_atomic_table(path: &[String]) -> bool {
    matches!(path, [registry, auths, _] if registry == "registry" && auths == "auths")
}

fn merge_into(
    into: &mut Table,
    layer: Table,
    path: &mut Vec<String>,
    source: &Source,
    sources: &mut Sources,
) {
    for (key, value) in layer {
        path.push(key.clone());
        match (into.get_mut(&key), value) {
            (Some(Value::Table(existing)), Value::Table(incoming)) if !is_atomic_table(path) => {
                merge_into(existing, incoming, path, source, sources);
            }
            (_, value) => {
                let dotted = dotted_key(path);
                let below = format!("{dotted}.");
                sources.retain(|k, _| k != &dotted && !k.starts_with(&below));
                record_leaves(&value, path, source, sources);
                into.insert(key, value);
            }
        }
        path.pop();
    }
}

fn record_leaves(value: &Value, path: &mut Vec<String>, source: &Source, sources: &mut Sources) {
    match value {
        Value::Table(table) if !is_atomic_table(path) => {
            for (key, value) in table {
                path.push(key.clone());
                record_leaves(value, path, source, sources);
                path.pop();
            }
        }
        _ => {
            sources.insert(dotted_key(path), source.clone());
        }
    }
}

/// A key path as TOML writes it: bare segments where allowed, quoted otherwise.
pub fn dotted_key<S: AsRef<str>>(path: &[S]) -> String {
    path.iter()
        .map(|segment| key_segment(segment.as_ref()))
        .collect::<Vec<_>>()
        .join(".")
}

/// One key as TOML writes it.
pub fn key_segment(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        Value::String(key.to_string()).to_string()
    }
}

fn insert_at(table: &mut Table, path: &[&str], value: Value) {
    match path {
        [] => {}
        [last] => {
            table.insert((*last).to_string(), value);
        }
        [first, rest @ ..] => {
            let entry = table
                .entry((*first).to_string())
                .or_insert_with(|| Value::Table(Table::new()));
            if let Value::Table(inner) = entry {
                insert_at(inner, rest, value);
            }
        }
    }
}

fn path_value(key: &str, path: &Path) -> Result<Value, ConfigError> {
    path.to_str()
        .map(|p| Value::String(p.to_string()))
        .ok_or_else(|| super::invalid(key, format!("{} is not valid UTF-8", path.display())))
}

/// One flag given on the command line: its key path, the flag as written, its value.
type FlagValue = (Vec<&'static str>, &'static str, Value);

/// Each flag given on the command line.
fn flag_values(flags: &Flags) -> Result<Vec<FlagValue>, ConfigError> {
    let mut out: Vec<FlagValue> = Vec::new();
    let mut string = |key: &'static str, flag: &'static str, value: &Option<String>| {
        if let Some(v) = value {
            out.push((vec![key], flag, Value::String(v.clone())));
        }
    };
    string("listen", "--listen", &flags.listen);
    string("backend", "--backend", &flags.backend);
    string(
        "containerd_address",
        "--containerd-address",
        &flags.containerd_address,
    );
    string(
        "containerd_namespace",
        "--containerd-namespace",
        &flags.containerd_namespace,
    );
    string(
        "docker_endpoint",
        "--docker-endpoint",
        &flags.docker_endpoint,
    );
    string("cgroup_driver", "--cgroup-driver", &flags.cgroup_driver);
    string("pause_image", "--pause-image", &flags.pause_image);
    string("stream_address", "--stream-address", &flags.stream_address);
    string(
        "metrics_address",
        "--metrics-address",
        &flags.metrics_address,
    );
    string("log_level", "--log-level", &flags.log_level);
    string("log_format", "--log-format", &flags.log_format);
    string(
        "image_pull_progress_timeout",
        "--image-pull-progress-timeout",
        &flags.image_pull_progress_timeout,
    );

    let paths: [(&'static str, &'static str, &Option<PathBuf>); 6] = [
        ("root", "--root", &flags.root),
        ("state", "--state", &flags.state),
        ("cni_conf_dir", "--cni-conf-dir", &flags.cni_conf_dir),
        (
            "cni_conf_template",
            "--cni-conf-template",
            &flags.cni_conf_template,
        ),
        (
            "stream_tls_cert",
            "--stream-tls-cert",
            &flags.stream_tls_cert,
        ),
        ("stream_tls_key", "--stream-tls-key", &flags.stream_tls_key),
    ];
    for (key, flag, value) in paths {
        if let Some(path) = value {
            out.push((vec![key], flag, path_value(key, path)?));
        }
    }

    let bools: [(&'static str, &'static str, Option<bool>); 2] = [
        (
            "containerd_local_content",
            "--containerd-local-content",
            flags.containerd_local_content,
        ),
        (
            "cni_default_network",
            "--cni-default-network",
            flags.cni_default_network,
        ),
    ];
    for (key, flag, value) in bools {
        if let Some(v) = value {
            out.push((vec![key], flag, Value::Boolean(v)));
        }
    }

    if let Some(n) = flags.event_buffer {
        let n = i64::try_from(n).map_err(|_| super::invalid("event_buffer", "is too large"))?;
        out.push((vec!["event_buffer"], "--event-buffer", Value::Integer(n)));
    }
    if !flags.cni_bin_dirs.is_empty() {
        let dirs = flags
            .cni_bin_dirs
            .iter()
            .map(|d| path_value("cni_bin_dirs", d))
            .collect::<Result<Vec<_>, _>>()?;
        out.push((vec!["cni_bin_dirs"], "--cni-bin-dirs", Value::Array(dirs)));
    }
    if !flags.registry_insecure.is_empty() {
        let hosts = flags
            .registry_insecure
            .iter()
            .map(|h| Value::String(h.clone()))
            .collect();
        out.push((
            vec!["registry", "insecure"],
            "--registry-insecure",
            Value::Array(hosts),
        ));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn table(text: &str) -> Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn later_layers_replace_only_the_keys_they_name() {
        let a = Source::File("a.toml".into());
        let b = Source::File("b.toml".into());
        let mut merged = Merged::default();
        merged.merge(
            table(
                "log_level = \"debug\"\nroot = \"/a\"\n[registry]\ninsecure = [\"h:1\"]\n\
                 [registry.mirrors]\n\"docker.io\" = [\"http://m1\"]\n\
                 [registry.auths.\"r.example\"]\nusername = \"u\"\npassword = \"p\"\n",
            ),
            &a,
        );
        merged.merge(
            table(
                "root = \"/b\"\n[registry]\ninsecure = [\"h:2\"]\n[registry.mirrors]\n\
                 \"quay.io\" = [\"http://m2\"]\n[registry.auths.\"r.example\"]\nauth = \"dTpw\"\n",
            ),
            &b,
        );
        let t = &merged.table;
        assert_eq!(t["log_level"].as_str(), Some("debug"));
        assert_eq!(t["root"].as_str(), Some("/b"));
        let registry = t["registry"].as_table().unwrap();
        // Lists are replaced, not appended.
        assert_eq!(registry["insecure"].as_array().unwrap().len(), 1);
        // Tables merge key by key.
        let mirrors = registry["mirrors"].as_table().unwrap();
        assert!(mirrors.contains_key("docker.io") && mirrors.contains_key("quay.io"));
        // One registry's credentials are replaced whole.
        let auth = registry["auths"]["r.example"].as_table().unwrap();
        assert_eq!(auth.keys().collect::<Vec<_>>(), ["auth"]);

        let s = &merged.sources;
        assert_eq!(s["log_level"], a);
        assert_eq!(s["root"], b);
        assert_eq!(s["registry.insecure"], b);
        assert_eq!(s["registry.mirrors.\"docker.io\""], a);
        assert_eq!(s["registry.mirrors.\"quay.io\""], b);
        assert_eq!(s["registry.auths.\"r.example\""], b);
        assert!(
            !s.keys().any(|k| k.contains("username")),
            "a replaced credential leaves no source behind: {s:?}"
        );
    }

    #[test]
    fn drop_ins_are_toml_files_in_lexical_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "20-b.toml",
            "10-a.toml",
            "b.conf",
            ".hidden.toml",
            "9-z.toml",
        ] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        std::fs::create_dir(dir.path().join("30-dir.toml")).unwrap();
        let names: Vec<_> = drop_ins(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["10-a.toml", "20-b.toml", "9-z.toml"]);
        assert!(drop_ins(&dir.path().join("absent")).unwrap().is_empty());
    }

    #[test]
    fn a_bad_drop_in_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("config.toml");
        std::fs::write(&main, "log_level = \"info\"\n").unwrap();
        let drop_in_dir = dir.path().join("config.d");
        std::fs::create_dir(&drop_in_dir).unwrap();
        std::fs::write(drop_in_dir.join("10-ok.toml"), "root = \"/r\"\n").unwrap();
        std::fs::write(
            drop_in_dir.join("20-typo.toml"),
            "\nlog_levle = \"debug\"\n",
        )
        .unwrap();
        let err = read_files(Some(&main), Some(&drop_in_dir)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("20-typo.toml"), "{text}");
        assert!(
            text.contains("unknown field") && text.contains("line 2"),
            "{text}"
        );
    }

    #[test]
    fn keys_are_written_as_toml_writes_them() {
        assert_eq!(
            dotted_key(&["registry", "mirrors", "docker.io"]),
            "registry.mirrors.\"docker.io\""
        );
        assert_eq!(dotted_key(&["listen"]), "listen");
        assert_eq!(key_segment("127.0.0.1:5000"), "\"127.0.0.1:5000\"");
    }
}
