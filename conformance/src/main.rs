//! `conformance --endpoint unix:///path.sock`: runs the CRI conformance cases against an
//! endpoint, one line per case, ending with `N passed, N failed, N skipped`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use conformance::images::{self, TestImages};
use conformance::reference::{self, ReferenceEnv};
use conformance::runner::{self, report, rpcs, AuthRegistry, Backend, Settings, Shared};
use regex::Regex;

#[derive(Parser, Debug)]
#[command(
    name = "conformance",
    about = "CRI v1 conformance suite for any CRI endpoint"
)]
struct Args {
    /// CRI runtime endpoint, `unix:///path.sock`.
    #[arg(long, required_unless_present_any = ["list", "against_reference"])]
    endpoint: Option<String>,
    /// Start the reference with the project's harness (a private containerd whose built-in
    /// CRI is judged, a CNI network, plain and basic-auth registries), run against it as with
    /// `--reference`, and stop it all afterwards. Needs root and scripts/install-deps.
    #[arg(long, conflicts_with_all = ["endpoint", "image_endpoint", "registry", "registry_auth"])]
    against_reference: bool,
    /// CRI image endpoint (default: the runtime endpoint).
    #[arg(long)]
    image_endpoint: Option<String>,
    /// Run only cases whose full name (`[group] name`) matches this regex.
    #[arg(long)]
    focus: Option<String>,
    /// Leave out cases whose full name matches this regex.
    #[arg(long)]
    skip: Option<String>,
    /// How many cases run at the same time.
    #[arg(long, default_value_t = 1)]
    parallel: usize,
    /// Write a JUnit XML report here.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Write `{"[group] case": "passed|failed|skipped"}` here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// `127.0.0.1:PORT` of a plain-HTTP registry holding the pull image (pull cases skip
    /// without it).
    #[arg(long)]
    registry: Option<String>,
    /// `127.0.0.1:PORT` of a registry requiring basic auth, holding the pull image.
    #[arg(long, requires_all = ["registry_user", "registry_password"])]
    registry_auth: Option<String>,
    /// User for `--registry-auth`.
    #[arg(long)]
    registry_user: Option<String>,
    /// Password for `--registry-auth`.
    #[arg(long)]
    registry_password: Option<String>,
    /// `repo:tag` of the pull image inside the registries.
    #[arg(long, default_value = images::PULL_REPO)]
    pull_repo: String,
    /// Preloaded test images: `busybox=REF`, `user=REF`, `pause=REF`, or a bare REF whose
    /// name says which (defaults: localhost/crius/{busybox,user,pause}:1).
    #[arg(long = "test-image", num_args = 1.., action = clap::ArgAction::Append)]
    test_images: Vec<String>,
    /// What the endpoint runs on, when known.
    #[arg(long, value_enum)]
    backend_hint: Option<Backend>,
    /// The endpoint is the reference (containerd's built-in CRI): cases with a documented
    /// containerd 1.6 failure that fail are reported as skipped with the note.
    #[arg(long)]
    reference: bool,
    /// List the selected cases and the RPC coverage; run nothing.
    #[arg(long)]
    list: bool,
    /// Keep the run's temp dir (log files, host paths) for inspection.
    #[arg(long)]
    keep_work_dir: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("conformance: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<ExitCode> {
    let focus = args
        .focus
        .as_deref()
        .map(Regex::new)
        .transpose()
        .context("--focus")?;
    let skip = args
        .skip
        .as_deref()
        .map(Regex::new)
        .transpose()
        .context("--skip")?;
    let all = conformance::cases::all();
    let selected: Vec<(usize, runner::Case)> = all
        .iter()
        .cloned()
        .enumerate()
        .filter(|(_, case)| {
            let name = case.full_name();
            focus.as_ref().is_none_or(|re| re.is_match(&name))
                && !skip.as_ref().is_some_and(|re| re.is_match(&name))
        })
        .collect();

    if args.list {
        for (_, case) in &selected {
            println!("{}", case.full_name());
        }
        println!();
        for (rpc, count) in rpcs::coverage(&all) {
            println!("{rpc:<28} {count} case(s)");
        }
        println!("{} cases", selected.len());
        return Ok(ExitCode::SUCCESS);
    }

    let mut test_images = TestImages::default();
    for value in &args.test_images {
        test_images.set(value)?;
    }
    if args.against_reference {
        let env = tokio::task::spawn_blocking(ReferenceEnv::start)
            .await
            .context("starting the reference environment")??;
        let settings = Settings {
            endpoint: env.endpoint(),
            image_endpoint: env.endpoint(),
            registry: Some(env.registry()),
            auth_registry: env.auth_registry(),
            pull_repo: reference::PULL_REPO.to_owned(),
            images: test_images,
            backend: Some(Backend::Containerd),
            reference: true,
        };
        let outcome = run_suite(&args, settings, selected, all.len()).await;
        // The daemons are stopped whatever the run did.
        let stopped = tokio::task::spawn_blocking(move || env.shutdown()).await;
        let code = outcome?;
        stopped.context("stopping the reference environment")??;
        return Ok(code);
    }

    let endpoint = args.endpoint.clone().context("--endpoint is required")?;
    let auth_registry = match (
        args.registry_auth.clone(),
        args.registry_user.clone(),
        args.registry_password.clone(),
    ) {
        (Some(address), Some(user), Some(password)) => Some(AuthRegistry {
            address,
            user,
            password,
        }),
        _ => None,
    };
    let settings = Settings {
        image_endpoint: args
            .image_endpoint
            .clone()
            .unwrap_or_else(|| endpoint.clone()),
        endpoint,
        registry: args.registry.clone(),
        auth_registry,
        pull_repo: args.pull_repo.clone(),
        images: test_images,
        backend: args.backend_hint,
        reference: args.reference,
    };
    run_suite(&args, settings, selected, all.len()).await
}

/// Connects, runs `selected`, reports, and returns the exit code.
async fn run_suite(
    args: &Args,
    settings: Settings,
    selected: Vec<(usize, runner::Case)>,
    total: usize,
) -> Result<ExitCode> {
    let against_reference = args.against_reference;
    let shared = Shared::connect(settings).await?;
    if against_reference {
        reference::wait_network_ready(&mut shared.runtime()).await?;
    }
    let backend = shared
        .settings
        .backend
        .map(|b| format!(", backend {b:?}"))
        .unwrap_or_default();
    println!(
        "running {} of {total} cases against {} (run {}, parallel {}{backend})",
        selected.len(),
        shared.settings.endpoint,
        shared.run_id,
        args.parallel
    );

    let results = runner::run_cases(shared.clone(), selected, args.parallel, |result| {
        println!("{}", report::case_line(result));
    })
    .await;

    match shared.sweep().await {
        Ok(0) => {}
        Ok(n) => eprintln!("removed {n} sandbox(es) left behind by this run"),
        Err(error) => eprintln!("sweeping leftovers: {error:#}"),
    }
    if !args.keep_work_dir {
        if let Err(error) = shared.remove_work_dir() {
            eprintln!("{error:#}");
        }
    }
    if let Some(path) = &args.json {
        report::write_file(path, &report::json(&results)?)?;
    }
    if let Some(path) = &args.junit {
        report::write_file(path, &report::junit(&results))?;
    }
    let totals = report::totals(&results);
    println!("{}", report::summary_line(totals));
    Ok(if totals.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
