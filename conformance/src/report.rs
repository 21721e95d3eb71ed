//! Reports: the console table, the JSON report (versioned schema), JUnit XML and coverage.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::catalogue::{Catalogue, Level};
use crate::expectations::Deviation;
use crate::runner::Summary;
use crate::verdict::{CaseResult, Verdict};

/// Identifies the JSON report format; bumped on incompatible changes.
pub const JSON_SCHEMA: &str = "slim-conformance/report/v1";

/// The JSON report.
#[derive(Debug, Serialize)]
pub struct JsonReport<'a> {
    /// [`JSON_SCHEMA`].
    pub schema: &'static str,
    /// Runner version.
    pub runner: String,
    /// Target URL.
    pub target: String,
    /// What the target said about itself in the probe negotiation.
    pub target_identity: String,
    /// Whether the run is complete (false while cases are still running).
    pub complete: bool,
    /// `--strict`.
    pub strict: bool,
    /// Counts.
    pub summary: Summary,
    /// Expectation entries that now pass.
    pub stale_expectations: Vec<&'a Deviation>,
    /// Per case.
    pub cases: &'a [CaseResult],
}

/// The header row and one row per case.
pub fn table_header() -> String {
    format!(
        "{:<52} {:<16} {:<6} {:<11} {:>7}",
        "CASE", "REQUIREMENT", "LEVEL", "VERDICT", "TIME"
    )
}

/// How many of a failing case's last frames the console shows (the JSON and JUnit reports carry
/// up to 200).
pub const CONSOLE_FRAMES: usize = 8;

/// One console row. Under a FAIL, WARN or ERROR: the requirement's text, what was expected, what
/// was observed and the case's last frames, so the implementer knows what to fix without opening
/// a report (as h2spec prints the MUST sentence). Under other verdicts but PASS: what was
/// observed, and the reason of a known deviation.
pub fn table_row(r: &CaseResult) -> String {
    let mut s = format!(
        "{:<52} {:<16} {:<6} {:<11} {:>5}ms",
        r.id,
        r.judged_requirement,
        r.level.to_string(),
        r.verdict.label(),
        r.duration_ms
    );
    if r.verdict == Verdict::Pass {
        return s;
    }
    let failing = matches!(r.verdict, Verdict::Fail | Verdict::Warn | Verdict::Error);
    if failing {
        if let Some(q) = r.requirements.iter().find(|q| q.id == r.judged_requirement) {
            let _ = write!(s, "\n      requirement: {} ({}): {}", q.id, q.level, q.text);
        }
    }
    if let Some(e) = &r.expected {
        let _ = write!(s, "\n      expected: {e}");
    }
    if let Some(o) = &r.observed {
        let _ = write!(s, "\n      observed: {o}");
    }
    if let Some(d) = &r.expected_deviation {
        let _ = write!(s, "\n      known deviation: {d}");
    }
    for n in &r.notes {
        let _ = write!(s, "\n      note: {n}");
    }
    if failing && !r.frames.is_empty() {
        let skip = r.frames.len().saturating_sub(CONSOLE_FRAMES);
        let _ = write!(
            s,
            "\n      last frames ({} of {}{}):",
            r.frames.len() - skip,
            r.frames.len(),
            if r.frames.len() >= 200 { "+" } else { "" }
        );
        for f in &r.frames[skip..] {
            let _ = write!(
                s,
                "\n        {:>6}ms {:<4} {:<8} {}",
                f.at_ms, f.link, f.dir, f.summary
            );
        }
    }
    s
}

/// Serialises the JSON report.
pub fn json(report: &JsonReport<'_>) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// JUnit XML: one testsuite, a testcase per case (classname = area). FAIL is a failure, WARN a
/// failure only with `strict`, UNSUPPORTED is skipped, ERROR an error.
pub fn junit(results: &[CaseResult], summary: &Summary, strict: bool) -> String {
    let total_ms: u64 = results.iter().map(|r| r.duration_ms).sum();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuite name=\"slim-conformance\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
        results.len(),
        summary.failed,
        summary.errors,
        summary.skipped,
        total_ms as f64 / 1000.0
    );
    for r in results {
        let area = r.id.split('/').next().unwrap_or("");
        let _ = write!(
            x,
            "  <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">",
            crate::html::esc(area),
            crate::html::esc(&format!("{} [{}]", r.id, r.judged_requirement)),
            r.duration_ms as f64 / 1000.0
        );
        let detail = format!(
            "expected: {}\nobserved: {}",
            r.expected.as_deref().unwrap_or(""),
            r.observed.as_deref().unwrap_or("")
        );
        match r.verdict {
            Verdict::Fail => {
                let _ = write!(
                    x,
                    "<failure message=\"{} {} broken\">{}</failure>",
                    r.judged_requirement,
                    r.level,
                    crate::html::esc(&detail)
                );
            }
            Verdict::Warn if strict => {
                let _ = write!(
                    x,
                    "<failure message=\"{} SHOULD broken\">{}</failure>",
                    r.judged_requirement,
                    crate::html::esc(&detail)
                );
            }
            Verdict::Unsupported => {
                let _ = write!(
                    x,
                    "<skipped message=\"{}\"/>",
                    crate::html::esc(r.observed.as_deref().unwrap_or(""))
                );
            }
            Verdict::Error => {
                let _ = write!(
                    x,
                    "<error message=\"harness error\">{}</error>",
                    crate::html::esc(&detail)
                );
            }
            _ => {}
        }
        let mut out = String::new();
        for q in &r.requirements {
            let _ = writeln!(out, "{} ({}): {}", q.id, q.level, q.text);
        }
        let _ = writeln!(out, "verdict: {}", r.verdict.label());
        if r.verdict != Verdict::Pass {
            let _ = writeln!(out, "{detail}");
        }
        for f in &r.frames {
            let _ = writeln!(out, "{:>6}ms {} {} {}", f.at_ms, f.link, f.dir, f.summary);
        }
        let _ = writeln!(
            x,
            "<system-out>{}</system-out></testcase>",
            crate::html::esc(&out)
        );
    }
    x.push_str("</testsuite>\n");
    x
}

/// One requirement's coverage.
#[derive(Debug, Serialize)]
pub struct CoverageRow {
    /// Requirement id.
    pub id: String,
    /// Level.
    pub level: Level,
    /// Title.
    pub title: String,
    /// Case ids that cite it.
    pub cases: Vec<String>,
    /// Why no case checks it, when none does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub untested: Option<String>,
}

/// Every requirement with the cases that check it; `cases` are `(case id, cited requirement ids)`
/// of both profiles ([`crate::case_index`]).
pub fn coverage(catalogue: &Catalogue, cases: &[(String, Vec<String>)]) -> Vec<CoverageRow> {
    catalogue
        .iter()
        .map(|r| CoverageRow {
            id: r.id.clone(),
            level: r.level,
            title: r.title.clone(),
            cases: cases
                .iter()
                .filter(|(_, reqs)| reqs.contains(&r.id))
                .map(|(id, _)| id.clone())
                .collect(),
            untested: r.untested.clone(),
        })
        .collect()
}

/// The coverage report as text.
pub fn coverage_text(rows: &[CoverageRow]) -> String {
    let mut s = String::new();
    let covered = rows.iter().filter(|r| !r.cases.is_empty()).count();
    for r in rows {
        let what = if !r.cases.is_empty() {
            r.cases.join(", ")
        } else if let Some(u) = &r.untested {
            format!("(untested: {u})")
        } else {
            "(NO CASE)".into()
        };
        let _ = writeln!(
            s,
            "{:<16} {:<6} {:<40} {}",
            r.id,
            r.level.to_string(),
            r.title,
            what
        );
    }
    let _ = writeln!(
        s,
        "{covered} of {} requirements are checked by at least one case",
        rows.len()
    );
    s
}

/// The catalogue as text (`slim-conformance list`).
pub fn list_text(catalogue: &Catalogue) -> String {
    let mut s = String::new();
    for r in catalogue.iter() {
        let _ = writeln!(s, "{:<16} {:<6} {}", r.id, r.level.to_string(), r.title);
    }
    s
}

/// Where a run writes its reports (`--json`, `--junit`, `--html`), and the page's title.
pub struct ReportFiles<'a> {
    /// `--json`.
    pub json: Option<&'a Path>,
    /// `--junit`.
    pub junit: Option<&'a Path>,
    /// `--html`.
    pub html: Option<&'a Path>,
    /// The HTML page's title.
    pub title: &'a str,
}

impl ReportFiles<'_> {
    /// Writes every requested report of `report` (each atomically); the error names the file.
    pub fn write(&self, report: &JsonReport<'_>) -> Result<(), String> {
        let put = |path: &Path, text: &str| {
            write_atomic(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
        };
        if let Some(path) = self.json {
            put(path, &json(report))?;
        }
        if let Some(path) = self.junit {
            put(path, &junit(report.cases, &report.summary, report.strict))?;
        }
        if let Some(path) = self.html {
            let subtitle = format!("{} ({})", report.target, report.target_identity);
            let page = crate::html::page(self.title, &subtitle, report.cases, &report.summary);
            put(path, &page)?;
        }
        Ok(())
    }
}

/// Writes `text` to `path` atomically (write then rename), so a crash never leaves half a report.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::Frame;
    use crate::verdict::RequirementRef;

    fn sample() -> Vec<CaseResult> {
        let req = |id: &str, level| RequirementRef {
            id: id.into(),
            level,
            text: format!("text of {id} <&>"),
        };
        vec![
            CaseResult {
                id: "link/empty-link-id".into(),
                title: "a request with an empty link_id is refused".into(),
                level: Level::Must,
                verdict: Verdict::Pass,
                judged_requirement: "SLIM-LINK-002".into(),
                requirements: vec![req("SLIM-LINK-002", Level::Must)],
                duration_ms: 12,
                expected: None,
                observed: None,
                findings: vec![],
                notes: vec![],
                expected_deviation: None,
                frames: vec![Frame {
                    at_ms: 0,
                    link: "A".into(),
                    dir: "sent",
                    summary: "link_negotiation link_id=\"\"".into(),
                    bytes: 60,
                }],
                cell: None,
            },
            CaseResult {
                id: "validation/empty-message".into(),
                title: "an empty Message{} is dropped".into(),
                level: Level::Must,
                verdict: Verdict::Fail,
                judged_requirement: "SLIM-VAL-001".into(),
                requirements: vec![req("SLIM-VAL-001", Level::Must)],
                duration_ms: 5003,
                expected: Some("B's link stays usable".into()),
                observed: Some("nothing".into()),
                findings: vec![],
                notes: vec![],
                expected_deviation: None,
                frames: (0..10)
                    .map(|i| Frame {
                        at_ms: i * 3,
                        link: "B".into(),
                        dir: if i % 2 == 0 { "sent" } else { "received" },
                        summary: format!("frame {i}"),
                        bytes: 10,
                    })
                    .collect(),
                cell: None,
            },
            CaseResult {
                id: "link/peer-connection-type".into(),
                title: "PEER links".into(),
                level: Level::May,
                verdict: Verdict::Info,
                judged_requirement: "SLIM-LINK-013".into(),
                requirements: vec![req("SLIM-LINK-013", Level::May)],
                duration_ms: 4,
                expected: None,
                observed: Some("the node refuses PEER links with UNIMPLEMENTED".into()),
                findings: vec![],
                notes: vec![],
                expected_deviation: None,
                frames: vec![],
                cell: None,
            },
            CaseResult {
                id: "link/silent-client".into(),
                title: "a silent stream is ended".into(),
                level: Level::Should,
                verdict: Verdict::Warn,
                judged_requirement: "SLIM-LINK-010".into(),
                requirements: vec![
                    req("SLIM-LINK-006", Level::Must),
                    req("SLIM-LINK-010", Level::Should),
                ],
                duration_ms: 5001,
                expected: Some("DEADLINE_EXCEEDED".into()),
                observed: Some("status Ok".into()),
                findings: vec![],
                notes: vec!["ended after 5.0 s".into()],
                expected_deviation: None,
                frames: vec![],
                cell: None,
            },
            CaseResult {
                id: "auth/valid-credentials".into(),
                title: "credentials".into(),
                level: Level::Must,
                verdict: Verdict::Unsupported,
                judged_requirement: "SLIM-AUTH-003".into(),
                requirements: vec![req("SLIM-AUTH-003", Level::Must)],
                duration_ms: 0,
                expected: None,
                observed: Some("not protected".into()),
                findings: vec![],
                notes: vec![],
                expected_deviation: None,
                frames: vec![],
                cell: None,
            },
        ]
    }

    #[test]
    fn console_rows_and_summary() {
        let results = sample();
        let mut text = table_header();
        for r in &results {
            text.push('\n');
            text.push_str(&table_row(r));
        }
        let summary = Summary::of(&results, false, 0);
        text.push('\n');
        text.push_str(&summary.line());
        insta::assert_snapshot!(text);
        assert_eq!(summary.exit_code(), 1);
        assert_eq!(Summary::of(&results[..1], true, 0).exit_code(), 0);
        // An observation is neither a pass nor a failure.
        let info = Summary::of(&results[2..3], true, 0);
        assert_eq!((info.passed, info.info, info.exit_code()), (0, 1, 0));
        assert_eq!(
            Summary::of(&results[3..4], true, 0).exit_code(),
            1,
            "--strict fails a WARN"
        );
        assert_eq!(
            Summary::of(&results[..1], false, 1).exit_code(),
            1,
            "a stale expectation fails"
        );
    }

    #[test]
    fn junit_is_escaped_and_maps_verdicts() {
        let results = sample();
        let xml = junit(&results, &Summary::of(&results, false, 0), false);
        insta::assert_snapshot!(xml);
        assert!(xml.contains("&lt;&amp;&gt;") && !xml.contains("<&>"));
    }
}
