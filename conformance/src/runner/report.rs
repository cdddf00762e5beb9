//! Reports: one line per case on stdout, the summary line, JUnit XML and a JSON outcome map.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use super::{CaseResult, Status};

/// The line printed when a case finishes; failures and skips carry their message indented.
pub fn case_line(result: &CaseResult) -> String {
    let seconds = result.duration.as_secs_f64();
    let mut line = match &result.status {
        Status::Passed => format!("PASS  {} ({seconds:.1}s)", result.name),
        Status::Failed(message) => format!(
            "FAIL  {} ({seconds:.1}s)\n      {}",
            result.name,
            message.replace('\n', "\n      ")
        ),
        Status::Skipped(reason) => format!("SKIP  {}: {reason}", result.name),
    };
    if let Some(note) = &result.note {
        let _ = write!(line, "\n      note: {note}");
    }
    line
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

pub fn totals(results: &[CaseResult]) -> Totals {
    let mut totals = Totals::default();
    for result in results {
        match result.status {
            Status::Passed => totals.passed += 1,
            Status::Failed(_) => totals.failed += 1,
            Status::Skipped(_) => totals.skipped += 1,
        }
    }
    totals
}

/// The last line of a run: `N passed, N failed, N skipped`.
pub fn summary_line(totals: Totals) -> String {
    format!(
        "{} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.skipped
    )
}

/// `{"[group] case": "passed" | "failed" | "skipped", …}`, sorted by name.
pub fn json(results: &[CaseResult]) -> Result<String> {
    let map: BTreeMap<&str, &str> = results
        .iter()
        .map(|r| (r.name.as_str(), r.status.word()))
        .collect();
    Ok(serde_json::to_string_pretty(&map)?)
}

/// JUnit XML: one `<testsuite>`, one `<testcase>` per case, classname = group.
pub fn junit(results: &[CaseResult]) -> String {
    let totals = totals(results);
    let seconds: f64 = results.iter().map(|r| r.duration.as_secs_f64()).sum();
    let mut sorted: Vec<&CaseResult> = results.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{seconds:.3}\">",
        results.len(),
        totals.failed,
        totals.skipped
    );
    let _ = writeln!(
        xml,
        "  <testsuite name=\"crius-conformance\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{seconds:.3}\">",
        results.len(),
        totals.failed,
        totals.skipped
    );
    for result in sorted {
        let _ = write!(
            xml,
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
            escape(result.group.label()),
            escape(&result.name),
            result.duration.as_secs_f64()
        );
        match &result.status {
            Status::Passed => xml.push_str("/>\n"),
            Status::Failed(message) => {
                let _ = writeln!(
                    xml,
                    ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                    escape(first_line(message)),
                    escape(message)
                );
            }
            Status::Skipped(reason) => {
                let _ = writeln!(
                    xml,
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                    escape(reason)
                );
            }
        }
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}

pub fn write_file(path: &Path, content: &str) -> Result<()> {
    std::fs::write(path, content).with_context(|| format!("writing {}", path.display()))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

/// Escapes text for XML content and attribute values; drops characters XML 1.0 forbids.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\t' | '\r' => {
                let _ = write!(out, "&#{};", c as u32);
            }
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::runner::Group;

    fn result(name: &str, status: Status) -> CaseResult {
        CaseResult {
            name: name.to_owned(),
            group: Group::Sandbox,
            status,
            duration: Duration::from_millis(1500),
            note: None,
        }
    }

    #[test]
    fn escapes_markup_and_control_characters() {
        assert_eq!(
            escape("a<b>&\"c'\u{1}\nd"),
            "a&lt;b&gt;&amp;&quot;c&apos;&#10;d"
        );
    }

    #[test]
    fn reports_count_and_render_every_outcome() -> Result<()> {
        let results = vec![
            result("[sandbox] a", Status::Passed),
            result(
                "[sandbox] b <x>",
                Status::Failed("expected 1, got 2".into()),
            ),
            result("[sandbox] c", Status::Skipped("not offered".into())),
        ];
        assert_eq!(
            summary_line(totals(&results)),
            "1 passed, 1 failed, 1 skipped"
        );
        let xml = junit(&results);
        assert!(xml.contains("failures=\"1\""));
        assert!(xml.contains("name=\"[sandbox] b &lt;x&gt;\""));
        assert!(xml.contains("<skipped message=\"not offered\"/>"));
        let json: BTreeMap<String, String> = serde_json::from_str(&json(&results)?)?;
        assert_eq!(json.get("[sandbox] c").map(String::as_str), Some("skipped"));
        assert!(case_line(&results[1]).contains("expected 1, got 2"));
        Ok(())
    }
}
