//! `bench`: side-by-side CRI latency, throughput, memory and recovery measurements of several
//! endpoints in one run (DESIGN.md, issue 10).
//!
//! `bench --endpoint crius=unix:///a.sock --endpoint containerd=unix:///b.sock` measures
//! running endpoints; `bench --private` starts a private containerd, crius on it and
//! containerd's built-in CRI itself (root), which also gives crius's RSS, CPU time and restart
//! (recovery) time. `scripts/bench` is the usual way in.

mod bare;
mod floor;
mod machine;
mod measure;
mod pull;
mod target;
mod wire;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use conformance::harness::{images as test_images, Containerd, ContainerdOptions, Crius, Images};

use measure::{Latencies, Populate, Recovery, Report, Resources};
use pull::PullEndpoint;
use target::{Target, HOT_READS, LIFECYCLE};

/// containerd namespace crius keeps its objects in (its default).
const CRIUS_NAMESPACE: &str = "crius";
/// containerd namespace of containerd's built-in CRI.
const CRI_NAMESPACE: &str = "k8s.io";

#[derive(Parser, Debug)]
#[command(name = "bench", about = "Side-by-side CRI benchmarks")]
struct Args {
    /// `NAME=unix:///path.sock`, repeated. With `--private`, these are added to the private ones.
    #[arg(long = "endpoint", value_name = "NAME=unix:///…")]
    endpoints: Vec<String>,
    /// Start a private containerd with crius on it and bench crius against containerd's
    /// built-in CRI (needs root and a built crius: `CRIUS_BIN`).
    #[arg(long)]
    private: bool,
    /// Container counts to measure at, ascending (comma-separated or repeated).
    #[arg(long = "containers", value_delimiter = ',', default_values_t = [5usize, 100, 1000])]
    containers: Vec<usize>,
    /// The same counts in pods: `--pods 10` is `--containers 100` (with `--per-pod 10`).
    #[arg(long, value_delimiter = ',', conflicts_with = "containers")]
    pods: Vec<usize>,
    /// Containers per pod when populating (1: a pod per container, as most nodes run).
    #[arg(long, default_value_t = target::CONTAINERS_PER_POD, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    per_pod: usize,
    /// At most this many of the containers run; the rest are created (every tenth exited).
    #[arg(long, default_value_t = 100)]
    running: usize,
    /// How long each read RPC is called back to back (e.g. `2s`, `500ms`).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    duration: Duration,
    /// Before each N's reads, each endpoint answers Version this long, unrecorded (`0s`
    /// skips it).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warm_up: Duration,
    /// Pods with one container taken through their whole life per endpoint and N.
    #[arg(long, default_value_t = 20)]
    lifecycle: usize,
    /// Length of the kubelet-shaped load at each N (`0s` skips it).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    load_duration: Duration,
    /// Concurrent kubelet-like clients in the load.
    #[arg(long, default_value_t = 50)]
    load_clients: usize,
    /// Whether pods are taken through their whole life during the load (`false`: a steady
    /// node, only the load's reads and probes).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    load_churn: bool,
    /// During the load, an exec probe (ExecSync) of each running container this often, the
    /// containers spread over it (`0s` skips them).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    probe_interval: Duration,
    /// The exec probes' timeout (whole seconds, as the CRI takes it).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    probe_timeout: Duration,
    /// Pods populated in parallel.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Measure only these hot reads (names as in the table, comma-separated); default all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Ratios are taken against this endpoint (default: `containerd` if present, else the last).
    #[arg(long)]
    reference: Option<String>,
    /// PID of crius for resource figures when benching external endpoints (`NAME=PID`).
    #[arg(long = "pid", value_name = "NAME=PID")]
    pids: Vec<String>,
    /// With `--private`: pulls of the large (≥ 50 MiB) test image from a private registry per
    /// endpoint, crius and containerd alternating, each from an empty store (0 skips them).
    #[arg(long, default_value_t = 3)]
    pulls: usize,
    /// With `--private`: one more argument crius starts with (repeated), e.g.
    /// `--crius-arg=--metrics-address=127.0.0.1:9101` for its per-RPC and backend-call timings.
    #[arg(long = "crius-arg", value_name = "ARG", allow_hyphen_values = true)]
    crius_args: Vec<String>,
    /// With `--private`: containerd serves Prometheus metrics on this `HOST:PORT`, with a
    /// latency histogram per gRPC method (the calls crius makes; its own CRI calls its
    /// services in process, unseen there).
    #[arg(long, value_name = "HOST:PORT")]
    containerd_metrics: Option<String>,
    /// With `--private`: start the daemons, print their endpoints and wait for Ctrl-C
    /// (to point the conformance suite or crictl at them); no measurements.
    #[arg(long, requires = "private")]
    hold: bool,
    /// Before each N's reads, a thread pinned to each CPU spins this long and reports the
    /// CPU time it did not get (`0s` skips it; both CPUs are busy meanwhile).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    machine_probe: Duration,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("bad duration {text:?}"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("bad duration unit in {text:?} (ms, s or m)")),
    };
    Ok(Duration::from_secs_f64(seconds))
}

/// The private daemons of `--private`; dropped (stopped, cleaned) at the end.
struct Private {
    crius: Crius,
    containerd: Containerd,
    logs: conformance::harness::TempDir,
}

fn start_private(args: &Args) -> Result<Private> {
    let images = Images::get()?;
    let mut options = ContainerdOptions::default();
    if let Some(address) = &args.containerd_metrics {
        options.extra_config = format!(
            "[metrics]\n  address = {}\n  grpc_histogram = true\n",
            toml_string(address)
        );
    }
    let containerd = Containerd::start(options)?;
    for reference in [test_images::BUSYBOX, test_images::PAUSE] {
        images.import(&containerd, CRI_NAMESPACE, reference)?;
    }
    images.import(&containerd, CRIUS_NAMESPACE, test_images::BUSYBOX)?;
    containerd.write_cni_conflist("bench-ref", None)?;
    let crius_args: Vec<&str> = args.crius_args.iter().map(String::as_str).collect();
    let crius = Crius::start(None, containerd.socket(), &crius_args)?;
    crius.write_cni_conflist("bench-crius", None)?;
    let logs = conformance::harness::TempDir::new("bench-logs")?;
    Ok(Private {
        crius,
        containerd,
        logs,
    })
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    let mut quoted = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

impl Args {
    /// Parse the command line; `--pods` becomes the container counts it stands for.
    fn from_command_line<I, T>(words: I) -> std::result::Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut args = Args::try_parse_from(words)?;
        if !args.pods.is_empty() {
            args.containers = args
                .pods
                .iter()
                .map(|p| p.saturating_mul(args.per_pod))
                .collect();
        }
        Ok(args)
    }
}

fn main() -> Result<()> {
    let args = Args::from_command_line(std::env::args_os()).unwrap_or_else(|e| e.exit());
    if let Some(unknown) = args.only.iter().find(|o| !HOT_READS.contains(&o.as_str())) {
        bail!(
            "--only: {unknown:?} is not a hot read; they are: {}",
            HOT_READS.join(", ")
        );
    }
    if args.probe_timeout.subsec_nanos() != 0 || args.probe_timeout.is_zero() {
        bail!(
            "--probe-timeout {:?}: the CRI takes whole seconds, at least 1",
            args.probe_timeout
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let mut stop = Stop::watch()?;
    let mut private = if args.private {
        Some(start_private(&args)?)
    } else {
        None
    };
    if let (true, Some(p)) = (args.hold, &private) {
        println!("crius={} (pid {:?})", p.crius.endpoint(), p.crius.pid());
        println!("containerd={}", p.containerd.cri_endpoint());
        let name = stop.requested().await;
        eprintln!("bench: {name}: stopping the private daemons");
        return Ok(());
    }
    let mut named: Vec<(String, String)> = Vec::new();
    if let Some(p) = &private {
        named.push(("crius".into(), p.crius.endpoint()));
        named.push(("containerd".into(), p.containerd.cri_endpoint()));
    }
    for e in &args.endpoints {
        let (name, endpoint) = e
            .split_once('=')
            .with_context(|| format!("--endpoint {e:?} is not NAME=unix:///…"))?;
        named.push((name.to_string(), endpoint.to_string()));
    }
    if named.is_empty() {
        bail!("nothing to bench: give --endpoint NAME=unix:///… or --private");
    }
    let mut pids: HashMap<String, u32> = HashMap::new();
    for p in &args.pids {
        let (name, pid) = p
            .split_once('=')
            .with_context(|| format!("--pid {p:?} is not NAME=PID"))?;
        pids.insert(
            name.to_string(),
            pid.parse().with_context(|| format!("--pid {p:?}"))?,
        );
    }
    let reference = args.reference.clone().unwrap_or_else(|| {
        named
            .iter()
            .find(|(n, _)| n == "containerd")
            .or(named.last())
            .map(|(n, _)| n.clone())
            .unwrap_or_default()
    });
    let log_root = match &private {
        Some(p) => p.logs.path().to_path_buf(),
        None => std::env::temp_dir().join(format!("crius-bench-{}", std::process::id())),
    };
    let mut targets = Vec::new();
    for (name, endpoint) in &named {
        let mut target =
            Target::new(name, endpoint, test_images::BUSYBOX, log_root.clone()).await?;
        target.per_pod = args.per_pod;
        targets.push(target);
    }
    let mut report = Report {
        endpoints: named.iter().map(|(n, _)| n.clone()).collect(),
        reference,
        ..Report::default()
    };
    let ticks = clock_ticks();
    let mut counts = args.containers.clone();
    counts.sort_unstable();
    counts.dedup();

    let outcome = async {
        if args.pulls > 0 {
            match &private {
                Some(p) => {
                    report.pull = Some(measure_pulls(&p.containerd, &targets, args.pulls).await)
                }
                None => eprintln!(
                    "bench: image pulls need --private (they check containerd's namespaces and \
                     content store between pulls); skipped"
                ),
            }
        }
        for &n in &counts {
            for t in targets.iter_mut() {
                let begin = Instant::now();
                eprintln!("bench: populating {} to {n} containers", t.name);
                t.grow_to(n, args.running, args.workers)
                    .await
                    .with_context(|| format!("populating {}", t.name))?;
                report.populate.push(Populate {
                    n,
                    endpoint: t.name.clone(),
                    pods: t.pods.len(),
                    running: t.running.len(),
                    seconds: begin.elapsed().as_secs_f64(),
                });
            }
            // Let the freshly started containers settle before measuring.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let target_pids: Vec<Option<u32>> = targets
                .iter()
                .map(|t| match (&private, t.name.as_str()) {
                    (Some(p), "crius") => p.crius.pid(),
                    (Some(p), "containerd") => Some(p.containerd.pid()),
                    _ => pids.get(&t.name).copied(),
                })
                .collect();
            let cpu = |i: usize| {
                target_pids[i]
                    .and_then(|pid| target::process_usage(pid, ticks).ok())
                    .map_or(0.0, |u| u.1)
            };
            if !args.machine_probe.is_zero() {
                eprintln!("bench: N={n}: probing the machine's CPU gaps");
                let probe = args.machine_probe;
                let cpus = tokio::task::spawn_blocking(move || machine::probe(probe))
                    .await
                    .context("probing the machine")?;
                report.machine.push(machine::MachineProbe { n, cpus });
            }
            // CPU time of each endpoint's process while its own calls ran.
            let mut cpu_phase = vec![0.0; targets.len()];
            measure_reads(&args, &targets, n, &mut report, &cpu, &mut cpu_phase).await;
            measure_lifecycle(&args, &targets, n, &mut report, &cpu, &mut cpu_phase).await;
            let mut rss_after_load = vec![None; targets.len()];
            for (i, t) in targets.iter().enumerate() {
                let before = cpu(i);
                let loaded = measure_under_load(&args, t, n, &mut report).await?;
                cpu_phase[i] += cpu(i) - before;
                if loaded {
                    rss_after_load[i] = target_pids[i]
                        .and_then(|pid| target::process_usage(pid, ticks).ok())
                        .map(|u| u.0);
                }
            }
            for (i, t) in targets.iter().enumerate() {
                if let Some(pid) = target_pids[i] {
                    let (rss_kib, cpu) = target::process_usage(pid, ticks)?;
                    report.resources.push(Resources {
                        n,
                        endpoint: t.name.clone(),
                        pid,
                        rss_kib,
                        rss_kib_after_load: rss_after_load[i],
                        cpu_seconds_total: cpu,
                        cpu_seconds_phase: cpu_phase[i],
                    });
                }
            }
            if let Some(p) = private.as_mut() {
                if let Some(t) = targets.iter_mut().find(|t| t.name == "crius") {
                    report.recovery.push(recovery(&mut p.crius, t, n).await?);
                }
            }
        }
        anyhow::Ok(())
    };
    // A signal stops the measuring, not the cleaning up: the pods this run made on an
    // endpoint, and the private daemons, go before the bench exits.
    let outcome = tokio::select! {
        done = outcome => done,
        name = stop.requested() => {
            eprintln!("bench: {name}: stopping; cleaning up what this run made (a second signal exits at once)");
            tokio::spawn(async move {
                stop.requested().await;
                std::process::exit(130);
            });
            Err(anyhow::anyhow!("stopped by {name}"))
        }
    };

    print!("{}", report.table());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("bench: wrote {}", path.display());
    }
    if private.is_none() {
        let mut cleaned = true;
        for t in targets.iter_mut() {
            if let Err(e) = t.clean().await {
                eprintln!("bench: cleaning {}: {e:#}", t.name);
                cleaned = false;
            }
        }
        // The pods' log directories, once no pod is left to write there.
        if cleaned {
            if let Err(e) = std::fs::remove_dir_all(&log_root) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    eprintln!("bench: removing {}: {e}", log_root.display());
                }
            }
        }
    }
    if let Some(mut p) = private.take() {
        drop(targets);
        if let Err(e) = p.crius.shutdown() {
            eprintln!("bench: {e:#}");
        }
        if let Err(e) = p.containerd.shutdown() {
            eprintln!("bench: {e:#}");
        }
    }
    outcome
}

/// SIGINT and SIGTERM, watched from the start so that neither kills the bench before it has
/// cleaned up.
struct Stop {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Stop {
    fn watch() -> Result<Stop> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Stop {
            int: signal(SignalKind::interrupt()).context("watching SIGINT")?,
            term: signal(SignalKind::terminate()).context("watching SIGTERM")?,
        })
    }

    /// The next SIGINT or SIGTERM, by name.
    async fn requested(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}

/// The pull phase on the private crius and containerd's CRI (once, before the container counts).
async fn measure_pulls(
    containerd: &Containerd,
    targets: &[Target],
    rounds: usize,
) -> measure::PullReport {
    let endpoints: Vec<PullEndpoint> = targets
        .iter()
        .filter_map(|t| {
            let namespace = match t.name.as_str() {
                "crius" => CRIUS_NAMESPACE,
                "containerd" => CRI_NAMESPACE,
                _ => return None,
            };
            Some(PullEndpoint {
                name: &t.name,
                namespace,
                clients: &t.clients,
            })
        })
        .collect();
    eprintln!(
        "bench: image pull, {rounds} per endpoint ({})",
        endpoints
            .iter()
            .map(|e| e.name)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let report = pull::measure(containerd, &endpoints, rounds).await;
    // The pulls leave ~1 GB of dirty pages (layers, snapshots, removals); the first reads
    // that follow would pay for their writeback alone. Flush first.
    let flushed = Instant::now();
    match tokio::task::spawn_blocking(|| std::process::Command::new("sync").status()).await {
        Ok(Ok(status)) if status.success() => eprintln!(
            "bench: pulls' writes flushed in {:.2}s",
            flushed.elapsed().as_secs_f64()
        ),
        other => eprintln!("bench: could not flush the pulls' writes: {other:?}"),
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    report
}

/// The hot reads, each called back to back for `--duration` on one endpoint, then on the
/// next. The endpoints take turns read by read, in an order that flips with every read, so
/// that what the machine is still doing from before (the last endpoint's populating, the
/// pulls' writeback) weighs on each alike rather than on whichever went first. Before the
/// first, each endpoint answers Version for `--warm-up`, unrecorded: the first read measured
/// used to take alone what was left of the populating and the machine probe. `cpu(i)` is
/// the CPU time of endpoint `i`'s process so far; its reads' cost is added to `cpu_phase[i]`.
async fn measure_reads(
    args: &Args,
    targets: &[Target],
    n: usize,
    report: &mut Report,
    cpu: &dyn Fn(usize) -> f64,
    cpu_phase: &mut [f64],
) {
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    eprintln!(
        "bench: N={n}: reads, endpoints taking turns read by read ({})",
        names.join(", ")
    );
    let snapshots: Vec<target::Snapshot> = targets.iter().map(Target::snapshot).collect();
    if !args.warm_up.is_zero() {
        for i in turn_order(0, targets.len()) {
            let before = cpu(i);
            target::measure_read(&targets[i].clients, &snapshots[i], "Version", args.warm_up).await;
            cpu_phase[i] += cpu(i) - before;
        }
    }
    let rpcs = HOT_READS
        .iter()
        .filter(|rpc| args.only.is_empty() || args.only.iter().any(|o| o == *rpc));
    for (turn, rpc) in rpcs.enumerate() {
        for i in turn_order(turn, targets.len()) {
            let t = &targets[i];
            let before = cpu(i);
            let (latencies, elapsed) = if target::stands_in(rpc) {
                measure_stand_in(&t.clients, rpc, args.duration).await
            } else {
                target::measure_read(&t.clients, &snapshots[i], rpc, args.duration).await
            };
            cpu_phase[i] += cpu(i) - before;
            report.rows.push(latencies.row(n, &t.name, rpc, elapsed));
        }
    }
}

/// `ListContainers(floor)` and `ListContainers(bare)`: the endpoint's ListContainers answer,
/// as long as it is now, moved over a bare socket pair (see `floor.rs`) or sent by a bare
/// gRPC server (see `bare.rs`) for `duration`. A failure is the row's error.
async fn measure_stand_in(
    clients: &target::Clients,
    rpc: &str,
    duration: Duration,
) -> (Latencies, Duration) {
    let measured = async {
        let len = target::list_containers_len(clients).await.map_err(|s| {
            anyhow::anyhow!(
                "the endpoint's ListContainers, for its length: {}",
                target::status_text(&s)
            )
        })?;
        if rpc == target::FLOOR {
            eprintln!(
                "bench: the ListContainers answer is {len} bytes; moving them over a bare socket pair"
            );
            tokio::task::spawn_blocking(move || floor::transfer(len, duration))
                .await
                .context("the transfer's thread")?
        } else {
            eprintln!(
                "bench: the ListContainers answer is {len} bytes; sending them from a bare gRPC server"
            );
            bare::measure(len, duration).await
        }
    };
    measured.await.unwrap_or_else(|e| {
        let mut failed = Latencies::new();
        failed.error(format!("{e:#}"));
        (failed, Duration::ZERO)
    })
}

/// The lifecycle alone, `--lifecycle` pods per endpoint. The endpoints take turns pod by
/// pod, in an order that flips every round, so a machine that drifts while they run (disk
/// writeback, containers still settling) weighs on each alike. `cpu(i)` is the CPU time of
/// endpoint `i`'s process so far; what its pods cost is added to `cpu_phase[i]`.
async fn measure_lifecycle(
    args: &Args,
    targets: &[Target],
    n: usize,
    report: &mut Report,
    cpu: &dyn Fn(usize) -> f64,
    cpu_phase: &mut [f64],
) {
    if args.lifecycle == 0 {
        return;
    }
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    eprintln!(
        "bench: N={n}: lifecycle, {} pods each, endpoints taking turns ({})",
        args.lifecycle,
        names.join(", ")
    );
    let mut samples: Vec<HashMap<&'static str, Latencies>> =
        targets.iter().map(|_| HashMap::new()).collect();
    let mut elapsed = vec![Duration::ZERO; targets.len()];
    for round in 0..args.lifecycle {
        for i in turn_order(round, targets.len()) {
            let before = cpu(i);
            let begin = Instant::now();
            if let Err(e) = target::lifecycle_once(&targets[i], &mut samples[i]).await {
                samples[i]
                    .entry("RunPodSandbox")
                    .or_default()
                    .error(format!("{e:#}"));
            }
            elapsed[i] += begin.elapsed();
            cpu_phase[i] += cpu(i) - before;
        }
    }
    for (i, t) in targets.iter().enumerate() {
        for rpc in LIFECYCLE {
            if let Some(l) = samples[i].get(rpc) {
                report.rows.push(l.row(n, &t.name, rpc, elapsed[i]));
            }
        }
    }
}

/// The order in which `endpoints` endpoints take their turn in `round`: as listed in even
/// rounds, reversed in odd ones, so that over two rounds each goes first once.
fn turn_order(round: usize, endpoints: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..endpoints).collect();
    if round % 2 == 1 {
        order.reverse();
    }
    order
}

/// The lifecycle of one endpoint under the kubelet-shaped load, and the load's reads.
/// Whether there was a load (`--load-duration 0s` or no clients skip it).
async fn measure_under_load(
    args: &Args,
    t: &Target,
    n: usize,
    report: &mut Report,
) -> Result<bool> {
    if args.load_duration.is_zero() || args.load_clients == 0 {
        return Ok(false);
    }
    eprintln!(
        "bench: {} at N={n}: {} under kubelet load ({} clients{})",
        t.name,
        if args.load_churn {
            "lifecycle"
        } else {
            "steady node"
        },
        args.load_clients,
        if args.probe_interval.is_zero() {
            String::new()
        } else {
            format!(
                ", an exec probe of each of {} running containers every {:?}",
                t.running.len(),
                args.probe_interval
            )
        }
    );
    let until = Instant::now() + args.load_duration;
    let mut clients = Vec::new();
    for index in 0..args.load_clients {
        // One connection per simulated kubelet, like separate processes would have.
        let c = target::Clients::connect(&t.endpoint).await?;
        clients.push(tokio::spawn(target::kubelet_client(c, index, until)));
    }
    let prober = if args.probe_interval.is_zero() || t.running.is_empty() {
        None
    } else {
        // kubelet's probes go over its one connection with everything else; here they have
        // their own, as each simulated kubelet has.
        let c = target::Clients::connect(&t.endpoint).await?;
        Some(tokio::spawn(target::exec_prober(
            c,
            t.running.clone(),
            args.probe_interval,
            args.probe_timeout,
            until,
        )))
    };
    let mut under_load: HashMap<&'static str, Latencies> = HashMap::new();
    let begin = Instant::now();
    if !args.load_churn {
        tokio::time::sleep_until(until.into()).await;
    }
    while Instant::now() < until {
        if let Err(e) = target::lifecycle_once(t, &mut under_load).await {
            under_load
                .entry("RunPodSandbox")
                .or_default()
                .error(format!("{e:#}"));
        }
    }
    let elapsed = begin.elapsed();
    let mut reads: HashMap<&'static str, Latencies> = HashMap::new();
    for c in clients {
        for (rpc, l) in c.await? {
            reads.entry(rpc).or_default().merge(&l);
        }
    }
    for rpc in LIFECYCLE {
        if let Some(l) = under_load.get(rpc) {
            report
                .rows
                .push(l.row(n, &t.name, &format!("{rpc} @load"), elapsed));
        }
    }
    if let Some(prober) = prober {
        let probes = prober.await?;
        let row = probes
            .latencies
            .row(n, &t.name, measure::EXEC_PROBE_ROW, elapsed);
        report.probes.push(measure::ProbeSummary::new(
            &row,
            probes.over_timeout,
            t.running.len(),
            args.probe_interval,
            args.probe_timeout,
        ));
        report.rows.push(row);
    }
    for rpc in [
        "ListPodSandbox",
        "ListContainers",
        "PodSandboxStatus",
        "ListContainerStats",
        "ImageFsInfo",
    ] {
        if let Some(l) = reads.get(rpc) {
            report
                .rows
                .push(l.row(n, &t.name, &format!("{rpc} @load"), elapsed));
        }
    }
    Ok(true)
}

/// Stops crius, starts it again and times until Version answers and ListContainers returns
/// every container it had.
async fn recovery(crius: &mut Crius, t: &mut Target, n: usize) -> Result<Recovery> {
    let mut rt = t.clients.rt.clone();
    let expected = rt
        .list_containers(cri_api::v1::ListContainersRequest { filter: None })
        .await
        .context("ListContainers before the restart")?
        .into_inner()
        .containers
        .len();
    crius.stop()?;
    let begin = Instant::now();
    crius.start_again()?;
    let deadline = begin + Duration::from_secs(120);
    let mut listed = 0;
    loop {
        if let Ok(clients) = target::Clients::connect(&t.endpoint).await {
            let mut rt = clients.rt.clone();
            let version = rt
                .version(cri_api::v1::VersionRequest {
                    version: "v1".into(),
                })
                .await;
            if version.is_ok() {
                if let Ok(r) = rt
                    .list_containers(cri_api::v1::ListContainersRequest { filter: None })
                    .await
                {
                    listed = r.into_inner().containers.len();
                    if listed >= expected {
                        break;
                    }
                }
            }
        }
        if Instant::now() > deadline {
            let log = crius.log().unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "crius did not list {expected} containers within 120 s of a restart (listed {listed}); crius log tail:\n{}",
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = begin.elapsed().as_secs_f64();
    t.reconnect().await?;
    Ok(Recovery {
        n,
        endpoint: t.name.clone(),
        seconds,
        containers_listed: listed,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_take_turns_going_first() {
        assert_eq!(turn_order(0, 2), [0, 1]);
        assert_eq!(turn_order(1, 2), [1, 0]);
        assert_eq!(turn_order(2, 2), [0, 1]);
        assert_eq!(turn_order(3, 3), [2, 1, 0]);
        // Over any two rounds, every endpoint goes first once and last once.
        let firsts: Vec<usize> = (0..2).map(|r| turn_order(r, 2)[0]).collect();
        assert_eq!(firsts, [0, 1]);
        assert!(turn_order(0, 0).is_empty());
    }

    #[test]
    fn toml_strings_are_quoted_and_escaped() {
        assert_eq!(toml_string("127.0.0.1:1338"), "\"127.0.0.1:1338\"");
        assert_eq!(toml_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }

    #[test]
    fn crius_args_may_look_like_flags() {
        let args = Args::try_parse_from([
            "bench",
            "--crius-arg=--metrics-address=127.0.0.1:9101",
            "--crius-arg",
            "--log-level=debug",
        ])
        .unwrap();
        assert_eq!(
            args.crius_args,
            ["--metrics-address=127.0.0.1:9101", "--log-level=debug"]
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("2h").is_err());
    }

    #[test]
    fn cli_parses_the_issue_flags() {
        let args = Args::try_parse_from([
            "bench",
            "--endpoint",
            "a=unix:///a.sock",
            "--endpoint",
            "b=unix:///b.sock",
            "--containers",
            "5,100",
            "--running",
            "50",
            "--duration",
            "1s",
            "--json",
            "/tmp/x.json",
        ])
        .unwrap();
        assert_eq!(args.endpoints.len(), 2);
        assert_eq!(args.containers, vec![5, 100]);
        assert_eq!(args.running, 50);
        assert_eq!(args.duration, Duration::from_secs(1));
        assert_eq!(args.warm_up, Duration::from_secs(1), "a warm-up by default");
        let args = Args::try_parse_from(["bench", "--warm-up", "0s"]).unwrap();
        assert!(args.warm_up.is_zero(), "--warm-up 0s skips it");
        assert_eq!(
            args.probe_interval,
            Duration::from_secs(10),
            "kubelet's period"
        );
        assert_eq!(
            args.probe_timeout,
            Duration::from_secs(1),
            "kubelet's default"
        );
        let args = Args::try_parse_from(["bench", "--probe-interval", "0s"]).unwrap();
        assert!(
            args.probe_interval.is_zero(),
            "--probe-interval 0s skips them"
        );
        assert!(args.load_churn, "pods churn under the load by default");
        let args = Args::try_parse_from(["bench", "--load-churn", "false"]).unwrap();
        assert!(!args.load_churn);
    }

    #[test]
    fn pods_stand_for_ten_containers_each() {
        let args = Args::from_command_line(["bench", "--private", "--pods", "1,10,100"]).unwrap();
        assert_eq!(args.containers, vec![10, 100, 1000]);
        let args = Args::from_command_line(["bench", "--private"]).unwrap();
        assert_eq!(args.containers, vec![5, 100, 1000]);
        let args = Args::from_command_line(["bench", "--pods", "100", "--per-pod", "1"]).unwrap();
        assert_eq!(args.containers, vec![100], "a pod per container");
        assert!(Args::from_command_line(["bench", "--per-pod", "0"]).is_err());
        assert!(
            Args::from_command_line(["bench", "--pods", "1", "--containers", "5"]).is_err(),
            "--pods and --containers say the same thing; both at once is refused"
        );
    }
}
