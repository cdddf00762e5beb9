//! The conformance suite against containerd's built-in CRI (the reference) and against crius
//! on the same private containerd, in one run. Fails when crius fails a case the reference
//! passes. Needs root, the packages from scripts/install-deps and a built `crius`.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use conformance::harness::{images::ALL_REFS, Crius, Images};
use conformance::images::TestImages;
use conformance::reference::{self, ReferenceEnv};
use conformance::runner::{self, report, Backend, Settings, Shared};

const PARALLEL: usize = 4;

async fn run(settings: Settings, label: &str) -> Result<BTreeMap<String, runner::Status>> {
    let shared: Arc<Shared> = Shared::connect(settings).await?;
    let cases: Vec<_> = conformance::cases::all().into_iter().enumerate().collect();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crius_passes_every_case_the_reference_passes() -> Result<()> {
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
    {
        let channel = conformance::runner::connect::channel(&env.endpoint()).await?;
        let mut runtime = conformance::runner::connect::runtime_client(channel);
        reference::wait_network_ready(&mut runtime)
            .await
            .context("reference network")?;
    }
    let reference_results = run(settings(env.endpoint(), true), "reference").await?;
    let crius_results = run(settings(crius.endpoint(), false), "crius/containerd").await?;

    let mut regressions = Vec::new();
    for (name, status) in &crius_results {
        if let runner::Status::Failed(why) = status {
            let reference_passed =
                matches!(reference_results.get(name), Some(runner::Status::Passed));
            let unchecked = !reference_results.contains_key(name)
                || matches!(
                    reference_results.get(name),
                    Some(runner::Status::Skipped(_))
                );
            if reference_passed || unchecked {
                regressions.push(format!("{name}: {why}"));
            }
        }
    }
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
    let (rp, rf, rs) = count(&reference_results);
    let (cp, cf, cs) = count(&crius_results);
    let lines = format!(
        "{} cases\nreference (containerd 1.6 built-in CRI): {rp} passed, {rf} failed, {rs} skipped\ncrius on containerd:                     {cp} passed, {cf} failed, {cs} skipped\n",
        crius_results.len()
    );
    // Where the two differ, say so with the reasons, so a skip is never silent.
    let mut lines = lines;
    for (name, status) in &crius_results {
        let theirs = reference_results.get(name);
        match (status, theirs) {
            (runner::Status::Skipped(why), Some(runner::Status::Passed)) => {
                lines.push_str(&format!(
                    "  skipped on crius, passed on the reference: {name} ({why})\n"
                ));
            }
            (runner::Status::Passed, Some(runner::Status::Skipped(why))) => {
                lines.push_str(&format!(
                    "  passed on crius, skipped on the reference: {name} ({why})\n"
                ));
            }
            (ours, Some(runner::Status::Failed(why))) => {
                lines.push_str(&format!(
                    "  {} on crius, FAILED on the reference: {name} ({why})\n",
                    ours.word()
                ));
            }
            _ => {}
        }
    }
    print!("{lines}");
    let summary = conformance::harness::util::workspace_root().join("target/ci");
    if std::fs::create_dir_all(&summary).is_ok() {
        let _ = std::fs::write(summary.join("conformance-summary.txt"), &lines);
    }
    let _ = crius.shutdown();
    tokio::task::spawn_blocking(move || env.shutdown()).await??;
    assert!(
        regressions.is_empty(),
        "crius failed {} case(s) the reference passes or skips:\n{}",
        regressions.len(),
        regressions.join("\n")
    );
    Ok(())
}
