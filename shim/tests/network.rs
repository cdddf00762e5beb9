//! Pod networking end to end: real containerd, real CNI plugins (bridge, host-local, portmap
//! from /usr/lib/cni), crius creating the namespaces and running the plugins. Needs root.
//!
//! Traffic goes only to loopback and to pods on the tests' own bridges (ENVIRONMENT.md).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use conformance::harness::containerd::{Containerd, ContainerdOptions, NetworkInfo};
use conformance::harness::crius::Crius;
use conformance::harness::images::Images;
use conformance::harness::pods;
use conformance::harness::util::{entries_of, mounts_under};
use conformance::runner::connect;
use cri_api::v1 as cri;
use cri_api::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

const BUSYBOX: &str = "localhost/crius/busybox:1";
const NAMESPACE: &str = "crius";
/// A pod's TCP server: answers every connection with a line naming the pod.
const SERVER: &str = "while true; do echo \"hello from $(hostname)\" | nc -l -p 8080; done";

/// Fields drop in order: the client first (crius's graceful shutdown waits for open
/// connections), then crius, then containerd.
struct Env {
    rt: RuntimeServiceClient<Channel>,
    crius: Crius,
    containerd: Containerd,
    logs: tempfile::TempDir,
}

async fn env(extra_args: &[&str]) -> Result<Env> {
    let containerd = Containerd::start(ContainerdOptions::default())?;
    Images::get()?.import(&containerd, NAMESPACE, BUSYBOX)?;
    let crius = Crius::start(None, containerd.socket(), extra_args)?;
    let channel = connect::channel(&crius.endpoint()).await?;
    Ok(Env {
        rt: connect::runtime_client(channel),
        crius,
        containerd,
        logs: tempfile::tempdir()?,
    })
}

/// What a pod network can leak, counted.
#[derive(Debug, Default, PartialEq, Eq)]
struct Leftovers {
    netns_files: usize,
    netns_mounts: usize,
    cni_records: usize,
    allocated_ips: usize,
    veths_on_bridge: usize,
}

/// Entries of `dir`; a missing directory fails the check (see `entries_of`).
fn count_entries(dir: &Path) -> Result<usize> {
    Ok(entries_of(dir)?.len())
}

impl Env {
    fn pod_config(&self, name: &str) -> cri::PodSandboxConfig {
        pods::pod_config(name, "net", self.logs.path())
    }

    async fn run_pod(&mut self, config: &cri::PodSandboxConfig) -> Result<String, tonic::Status> {
        pods::run_pod(&mut self.rt, config).await
    }

    async fn remove_pod(&mut self, id: &str) -> Result<()> {
        Ok(pods::stop_and_remove_pod(&mut self.rt, id).await?)
    }

    async fn start(
        &mut self,
        sandbox: &str,
        config: &cri::PodSandboxConfig,
        name: &str,
        script: &str,
    ) -> Result<String> {
        let container = pods::container_config(name, BUSYBOX, &["sh", "-c", script]);
        Ok(pods::create_and_start(&mut self.rt, sandbox, config, container).await?)
    }

    async fn exec(&mut self, container: &str, script: &str) -> Result<(i32, String)> {
        let (code, stdout, stderr) = pods::exec_sh(&mut self.rt, container, script, 20).await?;
        Ok((code, format!("{stdout}{stderr}")))
    }

    async fn pod_network(&mut self, id: &str) -> Result<cri::PodSandboxNetworkStatus> {
        self.rt
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.to_string(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .and_then(|s| s.network)
            .context("PodSandboxStatus has no network status")
    }

    async fn network_ready(&mut self) -> Result<cri::RuntimeCondition> {
        self.rt
            .status(cri::StatusRequest { verbose: false })
            .await?
            .into_inner()
            .status
            .context("no runtime status")?
            .conditions
            .into_iter()
            .find(|c| c.r#type == "NetworkReady")
            .context("no NetworkReady condition")
    }

    fn leftovers(&self, net: Option<&NetworkInfo>, ipam_dir: &Path) -> Result<Leftovers> {
        let netns = self.crius.state().join("netns");
        let allocated_ips = entries_of(ipam_dir)?
            .iter()
            .filter(|e| {
                e.file_name()
                    .is_some_and(|n| n.to_string_lossy().parse::<IpAddr>().is_ok())
            })
            .count();
        let veths_on_bridge = match net {
            Some(n) => {
                count_entries(&PathBuf::from("/sys/class/net").join(&n.bridge).join("brif"))?
            }
            None => 0,
        };
        Ok(Leftovers {
            netns_files: count_entries(&netns)?,
            netns_mounts: mounts_under(&netns)?.len(),
            cni_records: count_entries(&self.crius.state().join("cni-results"))?,
            allocated_ips,
            veths_on_bridge,
        })
    }

    fn ipam_dir(&self, net: &NetworkInfo) -> PathBuf {
        self.crius.dir().join("cni-ipam").join(&net.name)
    }

    fn sandboxes_in_containerd(&self) -> Result<String> {
        Ok(self
            .containerd
            .ctr_ns(NAMESPACE, ["containers", "ls", "-q"])?
            .trim()
            .to_string())
    }
}

fn in_subnet(ip: &str, net: &NetworkInfo) -> bool {
    let prefix = net.subnet.trim_end_matches("0/24");
    ip.starts_with(prefix) && ip != net.gateway
}

/// Read the greeting of the pod's server at `addr`, retrying while the server (re)starts.
async fn greeting(addr: std::net::SocketAddr, within: Duration) -> Result<String> {
    let deadline = Instant::now() + within;
    loop {
        let attempt = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
            let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            stream.set_read_timeout(Some(Duration::from_secs(3)))?;
            let _ = stream.write_all(b"hi\n");
            let mut text = String::new();
            stream.read_to_string(&mut text)?;
            Ok(text)
        })
        .await?;
        match attempt {
            Ok(text) if !text.is_empty() => return Ok(text),
            other => ensure!(
                Instant::now() < deadline,
                "no greeting from {addr}: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_get_ips_and_reach_each_other_and_the_host_reaches_them() -> Result<()> {
    let mut env = env(&[]).await?;
    let net = env.crius.write_cni_conflist("pods", None)?;
    let mut a_config = env.pod_config("a");
    a_config.dns_config = Some(cri::DnsConfig {
        servers: vec!["10.96.0.10".into()],
        searches: vec!["net.svc.cluster.local".into(), "svc.cluster.local".into()],
        options: vec!["ndots:5".into()],
    });
    let b_config = env.pod_config("b");
    let a = env.run_pod(&a_config).await?;
    let b = env.run_pod(&b_config).await?;

    let a_net = env.pod_network(&a).await?;
    let b_net = env.pod_network(&b).await?;
    ensure!(
        in_subnet(&a_net.ip, &net),
        "pod a ip {:?} not in {}",
        a_net.ip,
        net.subnet
    );
    ensure!(
        in_subnet(&b_net.ip, &net),
        "pod b ip {:?} not in {}",
        b_net.ip,
        net.subnet
    );
    ensure!(a_net.ip != b_net.ip, "both pods got {}", a_net.ip);
    ensure!(
        a_net.additional_ips.is_empty(),
        "single stack: {:?}",
        a_net.additional_ips
    );

    let server = env.start(&a, &a_config, "server", SERVER).await?;
    let client = env.start(&b, &b_config, "client", "sleep 3600").await?;

    // DNS and hostname files of the pod.
    let (code, resolv) = env.exec(&server, "cat /etc/resolv.conf").await?;
    ensure!(code == 0, "{resolv}");
    assert_eq!(
        resolv,
        "search net.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    );
    assert_eq!(
        env.exec(&server, "hostname").await?,
        (0, "host-a\n".to_string())
    );

    // Inside the pod: lo is up, eth0 holds the reported IP.
    let (code, out) = env.exec(&client, "ping -c1 -W2 127.0.0.1").await?;
    ensure!(code == 0, "loopback in the pod: {out}");
    let (code, out) = env.exec(&client, "ip -4 addr show dev eth0").await?;
    ensure!(
        code == 0 && out.contains(&format!("inet {}/24", b_net.ip)),
        "eth0 of pod b: {out}"
    );

    // Pod to pod.
    let (code, out) = env
        .exec(&client, &format!("ping -c1 -W2 {}", a_net.ip))
        .await?;
    ensure!(code == 0, "pod b cannot ping pod a: {out}");
    let mut reply = String::new();
    for _ in 0..20 {
        let (_, out) = env
            .exec(&client, &format!("echo hi | nc -w2 {} 8080", a_net.ip))
            .await?;
        reply = out;
        if reply.contains("hello from host-a") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ensure!(
        reply.contains("hello from host-a"),
        "pod b got {reply:?} from pod a"
    );

    // Host to pod, over the test's bridge.
    let ip: Ipv4Addr = a_net.ip.parse()?;
    let text = greeting((ip, 8080).into(), Duration::from_secs(10)).await?;
    assert_eq!(text, "hello from host-a\n");

    // A host-network pod gets no namespace of its own and no CNI.
    let mut host_config = env.pod_config("hostnet");
    host_config.hostname = String::new();
    host_config.linux = Some(cri::LinuxPodSandboxConfig {
        security_context: Some(cri::LinuxSandboxSecurityContext {
            namespace_options: Some(cri::NamespaceOption {
                network: cri::NamespaceMode::Node as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let host = env.run_pod(&host_config).await?;
    ensure!(
        !env.crius.state().join("netns").join(&host).exists(),
        "a host-network pod got a netns"
    );
    ensure!(
        !env.crius
            .state()
            .join("cni-results")
            .join(format!("{host}.json"))
            .exists(),
        "a host-network pod ran CNI"
    );

    for id in [&a, &b, &host] {
        env.remove_pod(id).await?;
    }
    assert_eq!(
        env.leftovers(Some(&net), &env.ipam_dir(&net))?,
        Leftovers::default()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_port_reaches_the_pod_through_portmap_on_loopback() -> Result<()> {
    let mut env = env(&[]).await?;
    let net = env.crius.write_cni_conflist("ports", None)?;
    let host_port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?.port()
    };
    let mut config = env.pod_config("web");
    config.port_mappings = vec![cri::PortMapping {
        protocol: cri::Protocol::Tcp as i32,
        container_port: 8080,
        host_port: i32::from(host_port),
        host_ip: String::new(),
    }];
    let pod = env.run_pod(&config).await?;
    env.start(&pod, &config, "server", SERVER).await?;
    let text = greeting(
        (Ipv4Addr::LOCALHOST, host_port).into(),
        Duration::from_secs(15),
    )
    .await?;
    assert_eq!(text, "hello from host-web\n");

    env.remove_pod(&pod).await?;
    assert_eq!(
        env.leftovers(Some(&net), &env.ipam_dir(&net))?,
        Leftovers::default()
    );
    // portmap's DNAT rule for the pod went with CNI DEL.
    let nat = std::process::Command::new("iptables-save")
        .args(["-t", "nat"])
        .output()?;
    let nat = String::from_utf8_lossy(&nat.stdout);
    ensure!(
        !nat.contains(&pod),
        "iptables rules of the removed pod remain:\n{nat}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_annotations_shape_the_pod_through_the_bandwidth_plugin() -> Result<()> {
    let mut env = env(&[]).await?;
    let net = env.crius.write_cni_conflist("shaped", None)?;
    let mut conflist: serde_json::Value = serde_json::from_slice(&std::fs::read(&net.conflist)?)?;
    conflist["plugins"]
        .as_array_mut()
        .context("plugins")?
        .push(serde_json::json!({ "type": "bandwidth", "capabilities": { "bandwidth": true } }));
    std::fs::write(&net.conflist, serde_json::to_vec(&conflist)?)?;
    // The plugin names its egress ifb device `bwp<hash of the container id>`.
    let ifbs = || -> Result<Vec<String>> {
        Ok(std::fs::read_dir("/sys/class/net")?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("bwp"))
            .collect())
    };
    let ifbs_before = ifbs()?;

    let mut config = env.pod_config("shaped");
    config.annotations = HashMap::from([
        (
            "kubernetes.io/ingress-bandwidth".to_string(),
            "10M".to_string(),
        ),
        (
            "kubernetes.io/egress-bandwidth".to_string(),
            "20M".to_string(),
        ),
    ]);
    let pod = env.run_pod(&config).await?;
    let veth = std::fs::read_dir(
        PathBuf::from("/sys/class/net")
            .join(&net.bridge)
            .join("brif"),
    )?
    .flatten()
    .map(|e| e.file_name().to_string_lossy().into_owned())
    .next()
    .context("no veth on the bridge")?;
    let qdisc = std::process::Command::new("tc")
        .args(["qdisc", "show", "dev", &veth])
        .output()?;
    let qdisc = String::from_utf8_lossy(&qdisc.stdout).into_owned();
    ensure!(
        qdisc.contains("tbf") && qdisc.contains("10Mbit"),
        "qdisc of {veth}: {qdisc}"
    );

    env.remove_pod(&pod).await?;
    assert_eq!(
        env.leftovers(Some(&net), &env.ipam_dir(&net))?,
        Leftovers::default()
    );
    // The plugin's ifb device for egress went with DEL.
    assert_eq!(ifbs()?, ifbs_before);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_ready_follows_the_conf_dir_without_a_restart() -> Result<()> {
    let mut env = env(&[]).await?;
    let condition = env.network_ready().await?;
    ensure!(!condition.status, "{condition:?}");
    assert_eq!(condition.reason, "NetworkPluginNotReady");
    ensure!(
        condition
            .message
            .contains(&env.crius.cni_conf_dir().display().to_string()),
        "{condition:?}"
    );

    let net = env.crius.write_cni_conflist("late", None)?;
    let written = Instant::now();
    loop {
        let condition = env.network_ready().await?;
        if condition.status {
            eprintln!(
                "NetworkReady turned true {:?} after the conflist appeared",
                written.elapsed()
            );
            break;
        }
        ensure!(
            written.elapsed() < Duration::from_secs(5),
            "still not ready: {condition:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And pods get addresses from it at once.
    let config = env.pod_config("late");
    let pod = env.run_pod(&config).await?;
    ensure!(in_subnet(&env.pod_network(&pod).await?.ip, &net));
    env.remove_pod(&pod).await?;

    // Taking the config away turns it false again.
    std::fs::remove_file(&net.conflist)?;
    let removed = Instant::now();
    while env.network_ready().await?.status {
        ensure!(
            removed.elapsed() < Duration::from_secs(5),
            "still ready after the conflist went away"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_cidr_from_update_runtime_config_renders_the_conf_template() -> Result<()> {
    let templates = tempfile::tempdir()?;
    let template = templates.path().join("net.template");
    let mut env = env(&["--cni-conf-template", &template.display().to_string()]).await?;
    // The harness makes (and later cleans) the bridge network; its conflist becomes the
    // template, with the subnet left to kubelet's pod CIDR.
    let net = env.crius.write_cni_conflist("templated", None)?;
    let text = std::fs::read_to_string(&net.conflist)?;
    ensure!(text.contains(&net.subnet), "{text}");
    std::fs::write(&template, text.replace(&net.subnet, "{{.PodCIDR}}"))?;
    std::fs::remove_file(&net.conflist)?;
    let since = Instant::now();
    while env.network_ready().await?.status {
        ensure!(
            since.elapsed() < Duration::from_secs(5),
            "ready without a config"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let update = |cidr: &str| cri::UpdateRuntimeConfigRequest {
        runtime_config: Some(cri::RuntimeConfig {
            network_config: Some(cri::NetworkConfig {
                pod_cidr: cidr.to_string(),
            }),
        }),
    };
    env.rt.update_runtime_config(update(&net.subnet)).await?;
    let rendered = env.crius.cni_conf_dir().join("10-crius-net.conflist");
    let body: serde_json::Value = serde_json::from_slice(&std::fs::read(&rendered)?)?;
    ensure!(body.to_string().contains(&net.subnet), "{body}");
    let since = Instant::now();
    while !env.network_ready().await?.status {
        ensure!(
            since.elapsed() < Duration::from_secs(5),
            "not ready after the pod CIDR"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let config = env.pod_config("templated");
    let pod = env.run_pod(&config).await?;
    let ip = env.pod_network(&pod).await?.ip;
    ensure!(in_subnet(&ip, &net), "{ip} not in {}", net.subnet);
    env.remove_pod(&pod).await?;

    // A template crius cannot fill is refused, not written half-done.
    std::fs::write(&template, "{\"plugins\": {{range .Routes}} }")?;
    let err = env
        .rt
        .update_runtime_config(update("10.99.0.0/24"))
        .await
        .err()
        .context("a template with an unsupported action was accepted")?;
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    ensure!(err.message().contains("{{range .Routes}}"), "{err:?}");
    ensure!(std::fs::read_to_string(&rendered)?.contains(&net.subnet));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_stop_remove_cycles_leak_nothing() -> Result<()> {
    const CYCLES: usize = 200;
    let mut env = env(&[]).await?;
    let net = env.crius.write_cni_conflist("cycles", None)?;
    let started = Instant::now();
    let mut seen = std::collections::HashSet::new();
    for i in 0..CYCLES {
        let config = env.pod_config(&format!("cycle-{i}"));
        let pod = env.run_pod(&config).await?;
        let ip = env.pod_network(&pod).await?.ip;
        ensure!(in_subnet(&ip, &net), "cycle {i}: ip {ip:?}");
        seen.insert(ip);
        env.rt
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await?;
        // Stop already released the network; a second Stop is a no-op.
        ensure!(
            !env.crius.state().join("netns").join(&pod).exists(),
            "cycle {i}: netns left after Stop"
        );
        assert_eq!(
            env.pod_network(&pod).await?.ip,
            "",
            "a stopped pod reports no IP"
        );
        env.rt
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await?;
        env.rt
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod,
            })
            .await?;
    }
    let elapsed = started.elapsed();
    let left = env.leftovers(Some(&net), &env.ipam_dir(&net))?;
    eprintln!(
        "{CYCLES} run/stop/remove cycles in {elapsed:?} ({:?} each), {} distinct IPs used; leftovers: {left:?}",
        elapsed / CYCLES as u32,
        seen.len()
    );
    assert_eq!(left, Leftovers::default());
    ensure!(
        env.sandboxes_in_containerd()?.is_empty(),
        "containers left in containerd"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_add_is_rolled_back() -> Result<()> {
    // A plugin that fails ADD (and succeeds DEL), chained after bridge: bridge has made the
    // veth and host-local has allocated an IP when it fails.
    let plugins = tempfile::tempdir()?;
    let fail = plugins.path().join("crius-test-fail");
    std::fs::write(
        &fail,
        "#!/bin/sh\ncat >/dev/null\nif [ \"$CNI_COMMAND\" = ADD ]; then echo '{\"code\":100,\"msg\":\"refused by test\"}'; exit 1; fi\n",
    )?;
    std::fs::set_permissions(&fail, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let bin_dirs = format!("/usr/lib/cni,{}", plugins.path().display());
    let mut env = env(&["--cni-bin-dirs", &bin_dirs]).await?;
    let net = env.crius.write_cni_conflist("failing", None)?;
    let mut conflist: serde_json::Value = serde_json::from_slice(&std::fs::read(&net.conflist)?)?;
    conflist["plugins"]
        .as_array_mut()
        .context("plugins")?
        .push(serde_json::json!({ "type": "crius-test-fail" }));
    std::fs::write(&net.conflist, serde_json::to_vec(&conflist)?)?;

    let config = env.pod_config("doomed");
    let err = match env.run_pod(&config).await {
        Ok(id) => bail!("RunPodSandbox succeeded ({id}) although a plugin failed ADD"),
        Err(status) => status,
    };
    ensure!(err.message().contains("refused by test"), "{err:?}");
    assert_eq!(
        env.leftovers(Some(&net), &env.ipam_dir(&net))?,
        Leftovers::default()
    );
    ensure!(
        env.sandboxes_in_containerd()?.is_empty(),
        "a pause container was left"
    );
    let listed = env
        .rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items;
    ensure!(listed.is_empty(), "{listed:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_cni_add_is_cleaned_up_on_restart() -> Result<()> {
    let mut env = env(&[]).await?;
    let net = env.crius.write_cni_conflist("crash", None)?;
    let config = env.pod_config("crash");
    let pod = env.run_pod(&config).await?;
    let before = env.leftovers(Some(&net), &env.ipam_dir(&net))?;
    assert_eq!(before.allocated_ips, 1);
    assert_eq!(before.netns_mounts, 1);
    // Killed after ADD and before the sandbox record was written: no record, everything else.
    env.crius.kill9()?;
    std::fs::remove_file(
        env.crius
            .root()
            .join("sandboxes")
            .join(format!("{pod}.json")),
    )?;
    env.crius.start_again()?;
    let channel = connect::channel(&env.crius.endpoint()).await?;
    env.rt = connect::runtime_client(channel);

    // crius answers only once recovery is done.
    let listed = env
        .rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items;
    ensure!(listed.is_empty(), "{listed:?}");
    assert_eq!(
        env.leftovers(Some(&net), &env.ipam_dir(&net))?,
        Leftovers::default()
    );
    ensure!(
        env.sandboxes_in_containerd()?.is_empty(),
        "the half-made pause container is still there"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_surviving_pod_keeps_its_network_across_a_restart() -> Result<()> {
    let mut env = env(&[]).await?;
    let net = env.crius.write_cni_conflist("survive", None)?;
    let config = env.pod_config("survive");
    let pod = env.run_pod(&config).await?;
    let ip = env.pod_network(&pod).await?.ip;
    env.crius.kill9()?;
    env.crius.start_again()?;
    let channel = connect::channel(&env.crius.endpoint()).await?;
    env.rt = connect::runtime_client(channel);
    assert_eq!(env.pod_network(&pod).await?.ip, ip);
    assert_eq!(
        env.leftovers(Some(&net), &env.ipam_dir(&net))?
            .allocated_ips,
        1
    );
    // DEL after the restart works from the cached result.
    env.remove_pod(&pod).await?;
    assert_eq!(
        env.leftovers(Some(&net), &env.ipam_dir(&net))?,
        Leftovers::default()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_network_on_a_bare_machine() -> Result<()> {
    const BRIDGE: &str = "crius0";
    let routes = String::from_utf8_lossy(
        &std::process::Command::new("ip")
            .args(["-4", "route"])
            .output()?
            .stdout,
    )
    .into_owned();
    if routes.contains("10.85.") && !Path::new("/sys/class/net").join(BRIDGE).exists() {
        eprintln!("skipped: 10.85.0.0/16 is in use on this host");
        return Ok(());
    }
    let mut env = env(&["--cni-default-network"]).await?;
    let result = async {
        let condition = env.network_ready().await?;
        ensure!(condition.status, "{condition:?}");
        let config = env.pod_config("bare");
        let pod = env.run_pod(&config).await?;
        let ip = env.pod_network(&pod).await?.ip;
        ensure!(ip.starts_with("10.85."), "default network ip {ip:?}");
        let client = env.start(&pod, &config, "c", "sleep 3600").await?;
        let (code, out) = env.exec(&client, "ping -c1 -W2 127.0.0.1").await?;
        ensure!(code == 0, "{out}");
        env.remove_pod(&pod).await?;
        let ipam = env.crius.state().join("cni-ipam").join("crius-default");
        assert_eq!(env.leftovers(None, &ipam)?, Leftovers::default());
        ensure!(
            count_entries(&Path::new("/sys/class/net").join(BRIDGE).join("brif"))? == 0,
            "veth left on {BRIDGE}"
        );
        Ok(())
    }
    .await;
    let _ = std::process::Command::new("ip")
        .args(["link", "del", BRIDGE])
        .status();
    result
}
