//! The configuration as an operator meets it, through the crius binary: a main file, two
//! drop-ins in `config.d/` and flags, merged in that order (tables key by key), with every
//! effective value and its source checked in `crius config show --json`; `crius config
//! default` and `crius config check`. No daemons needed.

// Helpers here may panic: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};

const CRIUS: &str = env!("CARGO_BIN_EXE_crius");

fn crius(args: &[&str]) -> Output {
    Command::new(CRIUS)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_file_two_drop_ins_and_flags_give_every_value_and_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("config.toml");
    let node = dir.path().join("config.d/10-node.toml");
    let logs = dir.path().join("config.d/20-logs.toml");
    write(
        &main,
        r#"
backend = "containerd"
root = "/srv/crius/main-root"
log_level = "warn"
cni_bin_dirs = ["/main/bin"]
image_pull_progress_timeout = "2m"

[registry]
insecure = ["main.example:5000"]

[registry.mirrors]
"docker.io" = ["https://main-mirror.example"]
"quay.io" = ["https://quay-mirror.example"]

[registry.auths."main.example:5000"]
username = "user"
password = "secret-from-main"
"#,
    );
    write(
        &node,
        r#"
root = "/srv/crius/drop-in-root"
state = "/run/crius-drop-in"
cni_default_network = true
event_buffer = 64

[registry.mirrors]
"docker.io" = ["https://drop-in-mirror.example", "https://second.example"]

[registry.ca]
"main.example:5000" = "/etc/crius/ca/main.pem"
"#,
    );
    write(
        &logs,
        r#"
log_level = "debug"
log_format = "json"
metrics_address = "127.0.0.1:9101"

default_runtime = "wrapped"

[runtimes.wrapped]
runtime_path = "/usr/local/bin/runc-wrapper"
runtime_root = "/run/wrapped"
pod_annotations = ["example.com/*"]

[registry.auths."main.example:5000"]
auth = "c2VjcmV0LWZyb20tZHJvcC1pbg=="
"#,
    );
    // Not a drop-in: only *.toml files count.
    write(
        &dir.path().join("config.d/30-ignored.conf"),
        "log_level = \"trace\"\n",
    );

    let out = crius(&[
        "--config",
        main.to_str().unwrap(),
        "--log-level",
        "info",
        "--cni-bin-dirs",
        "/flag/a,/flag/b",
        "--listen",
        "unix:///tmp/crius-config-test/crius.sock",
        "--registry-insecure",
        "flag.example:5000",
        "--stream-tls-cert",
        "/etc/crius/stream.crt",
        "--stream-tls-key",
        "/etc/crius/stream.key",
        "--cgroup-driver",
        "cgroupfs",
        "config",
        "show",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();

    let m = main.display().to_string();
    let n = node.display().to_string();
    let l = logs.display().to_string();
    let flag = |f: &str| format!("flag {f}");
    let default = "default".to_string();
    let expected: Vec<(&str, Value, String)> = vec![
        (
            "listen",
            json!("unix:///tmp/crius-config-test/crius.sock"),
            flag("--listen"),
        ),
        ("backend", json!("containerd"), m.clone()),
        (
            "containerd_address",
            json!("/run/containerd/containerd.sock"),
            default.clone(),
        ),
        ("containerd_namespace", json!("crius"), default.clone()),
        ("containerd_local_content", json!(true), default.clone()),
        (
            "docker_endpoint",
            json!("unix:///var/run/docker.sock"),
            default.clone(),
        ),
        ("root", json!("/srv/crius/drop-in-root"), n.clone()),
        ("state", json!("/run/crius-drop-in"), n.clone()),
        ("cgroup_driver", json!("cgroupfs"), flag("--cgroup-driver")),
        (
            "pause_image",
            json!("localhost/crius/pause:builtin"),
            default.clone(),
        ),
        ("cni_conf_dir", json!("/etc/cni/net.d"), default.clone()),
        (
            "cni_bin_dirs",
            json!(["/flag/a", "/flag/b"]),
            flag("--cni-bin-dirs"),
        ),
        ("cni_conf_template", Value::Null, default.clone()),
        ("cni_default_network", json!(true), n.clone()),
        ("stream_address", json!("127.0.0.1:0"), default.clone()),
        (
            "stream_tls_cert",
            json!("/etc/crius/stream.crt"),
            flag("--stream-tls-cert"),
        ),
        (
            "stream_tls_key",
            json!("/etc/crius/stream.key"),
            flag("--stream-tls-key"),
        ),
        ("metrics_address", json!("127.0.0.1:9101"), l.clone()),
        ("log_level", json!("info"), flag("--log-level")),
        ("log_format", json!("json"), l.clone()),
        ("image_pull_progress_timeout", json!("2m"), m.clone()),
        ("event_buffer", json!(64), n.clone()),
        ("default_runtime", json!("wrapped"), l.clone()),
        (
            "runtimes.runc",
            json!({"runtime_type": "io.containerd.runc.v2", "runtime_path": "runc", "pod_annotations": []}),
            default.clone(),
        ),
        (
            "runtimes.wrapped",
            json!({
                "runtime_type": "io.containerd.runc.v2",
                "runtime_path": "/usr/local/bin/runc-wrapper",
                "runtime_root": "/run/wrapped",
                "pod_annotations": ["example.com/*"],
            }),
            l.clone(),
        ),
        (
            "registry.insecure",
            json!(["flag.example:5000"]),
            flag("--registry-insecure"),
        ),
        // Tables merge key by key: the drop-in replaces docker.io's list, quay.io stays.
        (
            "registry.mirrors.\"docker.io\"",
            json!(["https://drop-in-mirror.example", "https://second.example"]),
            n.clone(),
        ),
        (
            "registry.mirrors.\"quay.io\"",
            json!(["https://quay-mirror.example"]),
            m.clone(),
        ),
        // One registry's credentials are one value: the later file's replaces the earlier's.
        (
            "registry.auths.\"main.example:5000\"",
            json!({"auth": "<redacted>"}),
            l.clone(),
        ),
        (
            "registry.ca.\"main.example:5000\"",
            json!("/etc/crius/ca/main.pem"),
            n.clone(),
        ),
    ];
    let values = shown["values"].as_object().unwrap();
    for (key, value, source) in &expected {
        let got = values
            .get(*key)
            .unwrap_or_else(|| panic!("{key} is missing from {shown:#}"));
        assert_eq!(&got["value"], value, "value of {key}");
        assert_eq!(got["source"], json!(source), "source of {key}");
    }
    let keys: Vec<&String> = values.keys().collect();
    assert_eq!(keys.len(), expected.len(), "unexpected keys in {keys:?}");
    assert_eq!(shown["files"], json!([m, n, l]));

    // The text form says the same, never prints a secret, and is itself a valid file.
    let text = crius(&["--config", main.to_str().unwrap(), "config", "show"]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        !text.contains("secret") && !text.contains("c2VjcmV0"),
        "{text}"
    );
    assert!(
        text.contains(&format!("root = \"/srv/crius/drop-in-root\"  # {n}")),
        "{text}"
    );
    let shown_file = dir.path().join("shown.toml");
    write(&shown_file, &text);
    let check = crius(&["config", "check", shown_file.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn config_default_checks_and_a_bad_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let default = crius(&["config", "default"]);
    assert!(default.status.success());
    let default_file = dir.path().join("default.toml");
    std::fs::write(&default_file, &default.stdout).unwrap();
    let check = crius(&["config", "check", default_file.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let bad = dir.path().join("config.d/20-bad.toml");
    write(&bad, "stream_tls_cert = \"/etc/crius/s.crt\"\n");
    let check = crius(&["config", "check", bad.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        stderr.contains("20-bad.toml") && stderr.contains("stream_tls_key"),
        "{stderr}"
    );

    // The whole configuration: a bad drop-in next to the main file fails it, by name.
    let main = dir.path().join("config.toml");
    write(&main, "log_level = \"info\"\n");
    let check = crius(&["--config", main.to_str().unwrap(), "config", "check"]);
    assert!(!check.status.success());
    assert!(String::from_utf8_lossy(&check.stderr).contains("stream_tls_key"));
    std::fs::remove_file(&bad).unwrap();
    let check = crius(&["--config", main.to_str().unwrap(), "config", "check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    // Windows named pipes are refused with a pointer to what a Windows build needs.
    let npipe = crius(&["--listen", "npipe:////./pipe/crius", "config", "check"]);
    assert!(!npipe.status.success());
    assert!(String::from_utf8_lossy(&npipe.stderr).contains("docs/windows.md"));
}
