//! A container's stats and its OOM verdict are read from the cgroup the backend reported,
//! never from one crius derived itself (DESIGN.md decision 12): on a recording fake whose
//! cgroups live under a tree of its own (`/fake-engine/<id>`, where the cgroupfs driver would
//! have said `/crius/<id>`), with a cgroup v2 fixture tree standing in for /sys/fs/cgroup.

// Helpers here may panic: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use clap::Parser;
use runtime_backends::fake::{self, FakeBackend};
use runtime_backends::{ImageConfig, ImageRecord};
use shim::cgroups::CgroupLayout;
use shim::config::{self, Cli};
use shim::container::REASON_OOM_KILLED;
use shim::domain::{ContainerConfig, ContainerMetadata, NamespaceMode, PodMetadata, SandboxConfig};
use shim::runtime::Crius;

fn crius(fake: Arc<FakeBackend>, dir: &Path, cgroup_root: &Path) -> Arc<Crius> {
    std::fs::write(dir.join("crius.toml"), "").unwrap();
    let cli = Cli::parse_from([
        "crius",
        "--config",
        dir.join("crius.toml").to_str().unwrap(),
        "--root",
        dir.join("root").to_str().unwrap(),
        "--state",
        dir.join("state").to_str().unwrap(),
        "--cgroup-driver",
        "cgroupfs",
    ]);
    let config = config::load(&cli).unwrap();
    let image = |id: &str, tag: &str| ImageRecord {
        id: id.to_string(),
        repo_tags: vec![tag.to_string()],
        repo_digests: vec![],
        size: 1,
        config: ImageConfig {
            entrypoint: vec!["/pause".into()],
            ..Default::default()
        },
        diff_ids: vec![],
        chain_id: String::new(),
        manifest_digest: String::new(),
        labels: Default::default(),
    };
    fake.images.lock().unwrap().extend([
        image(
            &format!("sha256:{}", "1".repeat(64)),
            shim::pause::BUILTIN_PAUSE_IMAGE,
        ),
        image(&format!("sha256:{}", "2".repeat(64)), "localhost/app:1"),
    ]);
    let mut crius = Crius::new(config, fake);
    crius.cgroup_layout = Some(CgroupLayout::V2 {
        root: cgroup_root.to_path_buf(),
    });
    Arc::new(crius)
}

fn pod() -> SandboxConfig {
    let mut config = SandboxConfig {
        metadata: PodMetadata {
            name: "p".into(),
            uid: "u".into(),
            namespace: "ns".into(),
            attempt: 0,
        },
        ..Default::default()
    };
    // Host IPC and network: no shm mount or network namespace to make.
    config.security.namespaces.ipc = NamespaceMode::Node;
    config.security.namespaces.network = NamespaceMode::Node;
    config
}

fn app(name: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: ContainerMetadata {
            name: name.into(),
            attempt: 0,
        },
        image: "localhost/app:1".into(),
        command: vec!["sleep".into()],
        ..Default::default()
    }
}

/// A v2 cgroup at `path` under the fixture root using `memory` bytes, its OOM killer having
/// struck `oom_kills` times.
fn cgroup(root: &Path, path: &str, memory: u64, oom_kills: u64) {
    let dir = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("memory.current"), format!("{memory}\n")).unwrap();
    std::fs::write(dir.join("memory.stat"), "anon 1\nfile 0\ninactive_file 0\n").unwrap();
    std::fs::write(dir.join("memory.max"), "max\n").unwrap();
    std::fs::write(dir.join("cpu.stat"), "usage_usec 7\n").unwrap();
    std::fs::write(
        dir.join("memory.events"),
        format!("low 0\nhigh 0\nmax 0\noom {oom_kills}\noom_kill {oom_kills}\n"),
    )
    .unwrap();
}

#[tokio::test]
async fn stats_and_oom_detection_read_the_cgroup_the_backend_reported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cgroup");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("cgroup.controllers"), "cpu memory\n").unwrap();
    let fake = Arc::new(FakeBackend::default());
    let crius = crius(fake.clone(), dir.path(), &root);
    crius.refresh_images().await.unwrap();

    let sandbox = crius.run_sandbox(pod()).await.unwrap();
    let killed = crius
        .create_container(&sandbox, app("killed"))
        .await
        .unwrap();
    let failed = crius
        .create_container(&sandbox, app("failed"))
        .await
        .unwrap();
    for id in [&killed, &failed] {
        crius.start_container(id).await.unwrap();
        let reported = crius.container(id).unwrap().meta.cgroups_path.clone();
        assert_eq!(reported.as_deref(), Some(fake::cgroup_path(id).as_str()));
    }
    // Only the reported cgroups exist: a path crius derived itself finds nothing.
    cgroup(&root, &fake::cgroup_path(&sandbox), 100, 0);
    cgroup(&root, &fake::cgroup_path(&killed), 20_000, 1);
    cgroup(&root, &fake::cgroup_path(&failed), 3_000, 0);

    let usage = crius.container_usage(&killed).unwrap();
    assert_eq!(usage.sample.unwrap().cgroup.memory_usage_bytes, 20_000);
    // Without a cgroup parent the pod is its pause container plus its containers.
    let pod_usage = crius.sandbox_usage(&sandbox).unwrap();
    assert_eq!(
        pod_usage.sample.unwrap().cgroup.memory_usage_bytes,
        100 + 20_000 + 3_000
    );

    // Both are killed by SIGKILL; the OOM killer struck only in the first one's cgroup.
    crius.stop_container(&killed, 0).await.unwrap();
    crius.stop_container(&failed, 0).await.unwrap();
    let reason = |id: &str| crius.container(id).unwrap().status().reason.clone();
    assert_eq!(reason(&killed), REASON_OOM_KILLED);
    assert_eq!(reason(&failed), "Error");
}
