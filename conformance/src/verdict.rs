//! The verdict of a suite run: the reference (containerd's built-in CRI) and crius ran the
//! same cases; which differences fail CI.
//!
//! Nothing may hide a regression: a case that fails anywhere fails the verdict (a reference
//! failure only when a rerun fails again, or when the case does not document it), and the
//! cases each endpoint skips must be exactly the pinned ones (`crate::pins`), so a new skip
//! fails as surely as a failure, and a pin that no longer skips must be removed.

use std::collections::{BTreeMap, BTreeSet};

use crate::runner::Status;

/// A case an endpoint is expected to skip, and why.
#[derive(Clone, Copy, Debug)]
pub struct Pin {
    pub case: &'static str,
    pub reason: &'static str,
}

/// What the verdict expects besides "every case passes".
#[derive(Clone, Copy, Debug)]
pub struct Expectations<'a> {
    /// Cases crius skips (features not built yet), each with its reason.
    pub crius_skips: &'a [Pin],
    /// Cases the reference skips (features containerd 1.6 lacks).
    pub reference_skips: &'a [Pin],
}

/// One endpoint's results: full case name → status.
pub type Results = BTreeMap<String, Status>;

/// The results of one suite run, as the verdict reads them.
#[derive(Clone, Debug, Default)]
pub struct Run {
    /// Every case of the suite (both endpoints must report each).
    pub cases: Vec<String>,
    /// Cases that document a containerd 1.6 failure (the runner reports such a failure on
    /// the reference as a skip with a note).
    pub reference_known_failures: BTreeSet<String>,
    pub reference: Results,
    /// The reference's failures, run a second time (to tell a flake from a failure).
    pub reference_rerun: Results,
    pub crius: Results,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Each reason the run fails; empty when it passes.
    pub failures: Vec<String>,
    /// What a reader should know though it fails nothing (flakes, stale documentation).
    pub notes: Vec<String>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

pub fn judge(run: &Run, expect: Expectations<'_>) -> Verdict {
    let mut verdict = Verdict::default();
    let crius_pins = pin_map(expect.crius_skips, "crius", &mut verdict);
    let reference_pins = pin_map(expect.reference_skips, "reference", &mut verdict);
    let known: BTreeSet<&str> = run.cases.iter().map(String::as_str).collect();
    for (endpoint, pins) in [("crius", &crius_pins), ("reference", &reference_pins)] {
        for case in pins.keys() {
            if !known.contains(case) {
                verdict
                    .failures
                    .push(format!("{endpoint}: pinned skip names no case: {case}"));
            }
        }
    }
    for case in &run.cases {
        judge_crius(case, run, &crius_pins, &mut verdict);
        judge_reference(case, run, &reference_pins, &mut verdict);
    }
    for (endpoint, results) in [("crius", &run.crius), ("reference", &run.reference)] {
        for case in results.keys() {
            if !known.contains(case.as_str()) {
                verdict.failures.push(format!(
                    "{endpoint}: reported a case the suite does not have: {case}"
                ));
            }
        }
    }
    verdict
}

fn pin_map<'a>(
    pins: &'a [Pin],
    endpoint: &str,
    verdict: &mut Verdict,
) -> BTreeMap<&'a str, &'a str> {
    let mut map = BTreeMap::new();
    for pin in pins {
        if pin.reason.trim().is_empty() {
            verdict.failures.push(format!(
                "{endpoint}: the pinned skip of {} gives no reason",
                pin.case
            ));
        }
        if map.insert(pin.case, pin.reason).is_some() {
            verdict
                .failures
                .push(format!("{endpoint}: {} is pinned twice", pin.case));
        }
    }
    map
}

fn judge_crius(case: &str, run: &Run, pins: &BTreeMap<&str, &str>, verdict: &mut Verdict) {
    let pinned = pins.get(case);
    match (run.crius.get(case), pinned) {
        (None, _) => verdict
            .failures
            .push(format!("crius: did not report {case}")),
        (Some(Status::Failed(why)), _) => verdict.failures.push(format!(
            "crius: FAILED {case}: {why}{}",
            reference_said(run, case)
        )),
        (Some(Status::Skipped(why)), None) => verdict.failures.push(format!(
            "crius: skipped {case}, which is not pinned to skip ({why}){}",
            reference_said(run, case)
        )),
        (Some(Status::Passed), Some(reason)) => verdict.failures.push(format!(
            "crius: passed {case}, pinned to skip ({reason}): remove the pin"
        )),
        (Some(Status::Passed), None) | (Some(Status::Skipped(_)), Some(_)) => {}
    }
}

fn judge_reference(case: &str, run: &Run, pins: &BTreeMap<&str, &str>, verdict: &mut Verdict) {
    let documented = run.reference_known_failures.contains(case);
    let pinned = pins.get(case);
    match (run.reference.get(case), pinned) {
        (None, _) => verdict
            .failures
            .push(format!("reference: did not report {case}")),
        (Some(Status::Failed(why)), _) => match run.reference_rerun.get(case) {
            Some(Status::Passed) => verdict.notes.push(format!(
                "reference: {case} failed, then passed when run again (a flake): {why}"
            )),
            Some(again) => verdict.failures.push(format!(
                "reference: FAILED {case} twice, a failure the case does not document: {why}; \
                 again: {}",
                describe(again)
            )),
            None => verdict
                .failures
                .push(format!("reference: FAILED {case} (not run again): {why}")),
        },
        // The runner reports a documented reference failure as a skip.
        (Some(Status::Skipped(_)), None) if documented => {}
        (Some(Status::Skipped(why)), None) => verdict.failures.push(format!(
            "reference: skipped {case}, which is not pinned to skip ({why})"
        )),
        (Some(Status::Passed), Some(reason)) => verdict.failures.push(format!(
            "reference: passed {case}, pinned to skip ({reason}): remove the pin"
        )),
        (Some(Status::Passed), None) if documented => verdict.notes.push(format!(
            "reference: passed {case}, whose containerd 1.6 failure the case documents"
        )),
        (Some(Status::Passed), None) | (Some(Status::Skipped(_)), Some(_)) => {}
    }
}

/// `" (reference: passed)"`: what the reference did with `case`, for crius's failures.
fn reference_said(run: &Run, case: &str) -> String {
    run.reference
        .get(case)
        .map(|status| format!(" (reference: {})", status.word()))
        .unwrap_or_default()
}

fn describe(status: &Status) -> String {
    match status {
        Status::Passed => "passed".to_owned(),
        Status::Failed(why) => format!("failed: {why}"),
        Status::Skipped(why) => format!("skipped: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "[sandbox] a";
    const B: &str = "[sandbox] b";
    const C: &str = "[streaming] c";

    fn results(entries: &[(&str, Status)]) -> Results {
        entries
            .iter()
            .map(|(case, status)| ((*case).to_owned(), status.clone()))
            .collect()
    }

    fn skipped() -> Status {
        Status::Skipped("RPC is not implemented".into())
    }

    fn failed() -> Status {
        Status::Failed("expected X, got Y".into())
    }

    /// A run where both endpoints pass A and B and skip C, which both pin.
    fn clean_run() -> Run {
        Run {
            cases: vec![A.into(), B.into(), C.into()],
            reference: results(&[(A, Status::Passed), (B, Status::Passed), (C, skipped())]),
            crius: results(&[(A, Status::Passed), (B, Status::Passed), (C, skipped())]),
            ..Run::default()
        }
    }

    const PIN_C: &[Pin] = &[Pin {
        case: C,
        reason: "streaming is not built yet",
    }];

    fn both_pin_c() -> Expectations<'static> {
        Expectations {
            crius_skips: PIN_C,
            reference_skips: PIN_C,
        }
    }

    #[test]
    fn a_clean_run_passes() {
        let verdict = judge(&clean_run(), both_pin_c());
        assert_eq!(verdict, Verdict::default());
        assert!(verdict.passed());
    }

    #[test]
    fn a_crius_skip_the_reference_passes_fails_unless_pinned() {
        let mut run = clean_run();
        run.crius.insert(A.into(), skipped());
        let verdict = judge(&run, both_pin_c());
        assert_eq!(verdict.failures.len(), 1, "{verdict:?}");
        assert!(verdict.failures[0].contains("skipped [sandbox] a, which is not pinned"));
        assert!(verdict.failures[0].contains("(reference: passed)"));
    }

    #[test]
    fn a_crius_skip_the_reference_also_skips_fails_unless_pinned() {
        let run = clean_run();
        let verdict = judge(
            &run,
            Expectations {
                crius_skips: &[],
                reference_skips: PIN_C,
            },
        );
        assert_eq!(verdict.failures.len(), 1, "{verdict:?}");
        assert!(verdict.failures[0].starts_with("crius: skipped [streaming] c"));
    }

    #[test]
    fn a_pinned_skip_that_passes_is_a_stale_pin() {
        let mut run = clean_run();
        run.crius.insert(C.into(), Status::Passed);
        let verdict = judge(&run, both_pin_c());
        assert_eq!(verdict.failures.len(), 1, "{verdict:?}");
        assert!(verdict.failures[0].contains("remove the pin"));
    }

    #[test]
    fn any_crius_failure_fails_even_where_the_reference_fails_too() {
        let mut run = clean_run();
        run.crius.insert(B.into(), failed());
        run.reference.insert(B.into(), skipped());
        run.reference_known_failures.insert(B.into());
        let verdict = judge(&run, both_pin_c());
        assert_eq!(verdict.failures.len(), 1, "{verdict:?}");
        assert!(verdict.failures[0].starts_with("crius: FAILED [sandbox] b"));
    }

    #[test]
    fn an_undocumented_reference_failure_fails_when_the_rerun_fails() {
        let mut run = clean_run();
        run.reference.insert(A.into(), failed());
        run.reference_rerun.insert(A.into(), failed());
        let verdict = judge(&run, both_pin_c());
        assert_eq!(verdict.failures.len(), 1, "{verdict:?}");
        assert!(verdict.failures[0].contains("FAILED [sandbox] a twice"));
    }

    #[test]
    fn a_reference_failure_that_passes_on_rerun_is_a_noted_flake() {
        let mut run = clean_run();
        run.reference.insert(A.into(), failed());
        run.reference_rerun.insert(A.into(), Status::Passed);
        let verdict = judge(&run, both_pin_c());
        assert!(verdict.passed(), "{verdict:?}");
        assert_eq!(verdict.notes.len(), 1);
        assert!(verdict.notes[0].contains("a flake"));
    }

    #[test]
    fn a_reference_failure_without_a_rerun_fails() {
        let mut run = clean_run();
        run.reference.insert(A.into(), failed());
        let verdict = judge(&run, both_pin_c());
        assert_eq!(verdict.failures.len(), 1, "{verdict:?}");
        assert!(verdict.failures[0].contains("not run again"));
    }

    #[test]
    fn a_documented_reference_failure_is_expected_and_its_absence_noted() {
        let mut run = clean_run();
        run.reference_known_failures.insert(A.into());
        run.reference.insert(A.into(), skipped());
        assert!(judge(&run, both_pin_c()).passed());
        run.reference.insert(A.into(), Status::Passed);
        let verdict = judge(&run, both_pin_c());
        assert!(verdict.passed(), "{verdict:?}");
        assert_eq!(verdict.notes.len(), 1);
    }

    #[test]
    fn a_new_reference_skip_fails() {
        let mut run = clean_run();
        run.reference.insert(B.into(), skipped());
        let verdict = judge(&run, both_pin_c());
        assert_eq!(verdict.failures.len(), 1, "{verdict:?}");
        assert!(verdict.failures[0].starts_with("reference: skipped [sandbox] b"));
    }

    #[test]
    fn a_case_missing_from_either_endpoint_fails() {
        let mut run = clean_run();
        run.crius.remove(A);
        run.reference.remove(B);
        let verdict = judge(&run, both_pin_c());
        assert_eq!(
            verdict.failures,
            vec![
                "crius: did not report [sandbox] a".to_owned(),
                "reference: did not report [sandbox] b".to_owned()
            ]
        );
    }

    #[test]
    fn pins_must_name_real_cases_once_with_a_reason() {
        let pins = [
            Pin {
                case: "[sandbox] gone",
                reason: "x",
            },
            Pin {
                case: C,
                reason: "",
            },
            Pin {
                case: C,
                reason: "y",
            },
        ];
        let verdict = judge(
            &clean_run(),
            Expectations {
                crius_skips: &pins,
                reference_skips: PIN_C,
            },
        );
        assert_eq!(verdict.failures.len(), 3, "{verdict:?}");
        assert!(verdict
            .failures
            .iter()
            .any(|f| f.contains("gives no reason")));
        assert!(verdict.failures.iter().any(|f| f.contains("pinned twice")));
        assert!(verdict.failures.iter().any(|f| f.contains("names no case")));
    }

    #[test]
    fn an_unknown_reported_case_fails() {
        let mut run = clean_run();
        run.crius.insert("[sandbox] extra".into(), Status::Passed);
        let verdict = judge(&run, both_pin_c());
        assert_eq!(verdict.failures.len(), 1, "{verdict:?}");
        assert!(verdict.failures[0].contains("does not have"));
    }
}
