//! The conformance suite against containerd's built-in CRI (the reference) and against crius
//! on the same private containerd, in one run. The verdict (`conformance::verdict`) fails the
//! run when any case fails on crius, when either endpoint skips a case that is not pinned to
//! skip (`conformance::pins`), and when the reference fails a case twice that it does not
//! document; crius must then stop cleanly on SIGTERM with no panic in its log.
//!
//! `CRIUS_CONFORMANCE_FOCUS=<regex>` runs only the cases whose full name matches (for work
//! on a few cases; CI runs them all). Needs root, the packages from scripts/install-deps and
//! a built `crius`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::{Context, Result};
use conformance::harness::{images::ALL_REFS, Crius, Images};
use conformance::images::TestImages;
use conformance::reference::{self, ReferenceEnv};
use conformance::runner::{self, report, Backend, Case, Settings, Shared};
use conformance::verdict::{self, Expectations, Pin, Run};

const PARALLEL: usize = 4;

async fn run(
    settings: Settings,
    label: &str,
    cases: Vec<(usize, Case)>,
) -> Result<BTreeMap<String, runner::Status>> {
    let shared: Arc<Shared> = Shared::connect(settings).await?;
    let results = runner::run_cases(shared.clone(), cases, PARALLEL, |result| {
        println!("{label}: {}", report::case_line(result));
    })
    .await;
    if let Err(e) = shared.sweep().await {
        eprintln!("{label}: sweeping leftovers: {e:#}");
    }
    let _ = shared.remove_work_dir();
    println!(
        "{label}: {}",
        report::summary_line(report::totals(&results))
    );
    Ok(results
        .into_iter()
        .map(|r| (r.name.clone(), r.status))
        .collect())
}

/// The cases this run covers: all, or those `CRIUS_CONFORMANCE_FOCUS` selects.
fn selected_cases() -> Result<Vec<(usize, Case)>> {
    let focus = match std::env::var("CRIUS_CONFORMANCE_FOCUS") {
        Ok(pattern) if !pattern.is_empty() => {
            Some(regex::Regex::new(&pattern).context("CRIUS_CONFORMANCE_FOCUS is not a regex")?)
        }
        _ => None,
    };
    Ok(conformance::cases::all()
        .into_iter()
        .enumerate()
        .filter(|(_, case)| focus.as_ref().is_none_or(|f| f.is_match(&case.full_name())))
        .collect())
}

/// The pins of the cases in `cases` (a focused run judges only its own cases).
fn pins_for(pins: &[Pin], cases: &BTreeSet<String>, focused: bool) -> Vec<Pin> {
    pins.iter()
        .filter(|pin| !focused || cases.contains(pin.case))
        .copied()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crius_passes_every_case_and_skips_only_what_is_pinned() -> Result<()> {
    let cases = selected_cases()?;
    let focused = cases.len() != conformance::cases::all().len();
    let names: BTreeSet<String> = cases.iter().map(|(_, c)| c.full_name()).collect();
    let known_failures: BTreeSet<String> = cases
        .iter()
        .filter(|(_, c)| c.reference_known_failure.is_some())
        .map(|(_, c)| c.full_name())
        .collect();

    let env = tokio::task::spawn_blocking(ReferenceEnv::start).await??;
    let images = Images::get()?;
    for reference in ALL_REFS {
        images.import(env.containerd(), "crius", reference)?;
    }
    // The same pause image as the reference's sandbox_image, through crius's pause_image key.
    let mut crius = Crius::start(
        None,
        env.containerd().socket(),
        &["--pause-image", "localhost/crius/pause:1"],
    )?;
    crius.write_cni_conflist("crius-conformance", None)?;
    let settings = |endpoint: String, is_reference: bool| Settings {
        image_endpoint: endpoint.clone(),
        endpoint,
        registry: Some(env.registry()),
        auth_registry: env.auth_registry(),
        pull_repo: reference::PULL_REPO.to_owned(),
        images: TestImages::default(),
        backend: Some(Backend::Containerd),
        reference: is_reference,
    };
    // Both endpoints must have pod networking before any case runs: without it the pod-IP
    // cases would skip, and a skip is a verdict failure only if it was not already hidden.
    for (label, endpoint) in [("reference", env.endpoint()), ("crius", crius.endpoint())] {
        let channel = conformance::runner::connect::channel(&endpoint).await?;
        let mut runtime = conformance::runner::connect::runtime_client(channel);
        reference::wait_network_ready(&mut runtime)
            .await
            .with_context(|| format!("{label} network"))?;
    }
    let reference_results = run(settings(env.endpoint(), true), "reference", cases.clone()).await?;
    let failed_on_reference: Vec<(usize, Case)> = cases
        .iter()
        .filter(|(_, c)| {
            matches!(
                reference_results.get(&c.full_name()),
                Some(runner::Status::Failed(_))
            )
        })
        .cloned()
        .collect();
    let reference_rerun = if failed_on_reference.is_empty() {
        BTreeMap::new()
    } else {
        run(
            settings(env.endpoint(), true),
            "reference (rerun of its failures)",
            failed_on_reference,
        )
        .await?
    };
    let crius_results = run(settings(crius.endpoint(), false), "crius/containerd", cases).await?;

    let crius_pins = pins_for(conformance::pins::CRIUS_CONTAINERD_SKIPS, &names, focused);
    let reference_pins = pins_for(conformance::pins::REFERENCE_SKIPS, &names, focused);
    let run = Run {
        cases: names.iter().cloned().collect(),
        reference_known_failures: known_failures,
        reference: reference_results,
        reference_rerun,
        crius: crius_results,
    };
    let verdict = verdict::judge(
        &run,
        Expectations {
            crius_skips: &crius_pins,
            reference_skips: &reference_pins,
        },
    );

    let count = |results: &BTreeMap<String, runner::Status>| {
        let passed = results
            .values()
            .filter(|s| matches!(s, runner::Status::Passed))
            .count();
        let failed = results
            .values()
            .filter(|s| matches!(s, runner::Status::Failed(_)))
            .count();
        (passed, failed, results.len() - passed - failed)
    };
    let (rp, rf, rs) = count(&run.reference);
    let (cp, cf, cs) = count(&run.crius);
    let mut lines = format!(
        "{} cases{}\nreference (containerd 1.6 built-in CRI): {rp} passed, {rf} failed, {rs} skipped ({} pinned)\ncrius on containerd:                     {cp} passed, {cf} failed, {cs} skipped ({} pinned)\n",
        run.cases.len(),
        if focused { " (focused)" } else { "" },
        reference_pins.len(),
        crius_pins.len(),
    );
    for pin in &crius_pins {
        let _ = writeln!(
            lines,
            "  crius skips (pinned): {}: {}",
            pin.case, pin.reason
        );
    }
    for note in &verdict.notes {
        let _ = writeln!(lines, "  note: {note}");
    }
    for failure in &verdict.failures {
        let _ = writeln!(lines, "  VERDICT: {failure}");
    }
    print!("{lines}");
    let summary = conformance::harness::util::workspace_root().join("target/ci");
    if std::fs::create_dir_all(&summary).is_ok() {
        let _ = std::fs::write(summary.join("conformance-summary.txt"), &lines);
    }
    // crius must stop cleanly (exit 0 on SIGTERM) and must not have panicked anywhere.
    let stopped = crius.shutdown();
    tokio::task::spawn_blocking(move || env.shutdown()).await??;
    assert!(
        verdict.passed(),
        "the conformance verdict failed {} time(s):\n{}",
        verdict.failures.len(),
        verdict.failures.join("\n")
    );
    stopped.context("crius after the suite")?;
    Ok(())
}
