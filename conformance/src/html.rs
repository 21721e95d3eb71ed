//! `--html FILE`: one self-contained page (no external assets, no script) with the verdict matrix
//! and, for every cell, the requirement texts, what was expected and observed, the notes, the
//! oracle, the seed with the re-run command, and the transcript or frames. Works offline, e.g.
//! as a CI artifact. Both profiles write it: the node profile's matrix has one column.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::runner::Summary;
use crate::verdict::{CaseResult, Verdict};

/// Escapes text for HTML and for the JUnit report's XML (HTML5 knows every entity it writes),
/// and drops the control characters XML 1.0 forbids.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

fn class(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Info => "info",
        Verdict::Warn => "warn",
        Verdict::Fail => "fail",
        Verdict::Xfail => "xfail",
        Verdict::Unsupported => "unsupported",
        Verdict::Error => "error",
    }
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}\
th{background:#f4f4f4}td.v a{display:block;text-decoration:none;font-weight:600;color:inherit}\
.pass{background:#d8f5d0}.fail{background:#f8c8c8}.error{background:#f5a0a0}.warn{background:#fbe7b0}\
.xfail{background:#e6dcf5}.unsupported{background:#eee;color:#777}.info{background:#d5e8f8}\
section.cell{border:1px solid #ddd;margin:1em 0;padding:.5em 1em}section.cell:target{outline:3px solid #36c}\
pre{background:#f8f8f8;padding:.5em;overflow-x:auto;font-size:12px}code{font-size:12px}";

/// The page.
pub fn page(title: &str, subtitle: &str, results: &[CaseResult], summary: &Summary) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head><body><h1>{t}</h1><p>{sub}</p><p id=\"summary\"><strong>{sum}</strong></p>",
        t = esc(title),
        sub = esc(subtitle),
        sum = esc(&summary.line())
    );
    // The matrix: rows are cases, columns are assignments (one column for the node profile).
    let mut columns: Vec<String> = Vec::new();
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut cells: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (i, r) in results.iter().enumerate() {
        let (case, col) = match &r.cell {
            Some(c) => {
                let mut col = c
                    .assignment
                    .iter()
                    .map(|(_, i)| i.as_str())
                    .collect::<Vec<_>>()
                    .join(" × ");
                if c.assignment.len() == 1 {
                    col.push_str(" × runner");
                }
                (c.case.clone(), col)
            }
            None => (r.id.clone(), "target".to_string()),
        };
        if !columns.contains(&col) {
            columns.push(col.clone());
        }
        if !rows.iter().any(|(c, _)| *c == case) {
            rows.push((case.clone(), r.title.clone()));
        }
        cells.insert((case, col), i);
    }
    columns.sort_by_key(|c| (c.matches('×').count(), c.clone()));
    s.push_str("<h2>Matrix</h2><table id=\"matrix\"><thead><tr><th>case</th>");
    if results.iter().any(|r| r.cell.is_some()) {
        s.push_str("<th>roles</th>");
    }
    for c in &columns {
        let _ = write!(s, "<th>{}</th>", esc(c));
    }
    s.push_str("</tr></thead><tbody>");
    for (case, title) in &rows {
        let _ = write!(s, "<tr><td title=\"{}\">{}</td>", esc(title), esc(case));
        if results.iter().any(|r| r.cell.is_some()) {
            let roles = results
                .iter()
                .find_map(|r| r.cell.as_ref().filter(|c| &c.case == case))
                .map(|c| {
                    c.assignment
                        .iter()
                        .map(|(r, _)| r.as_str())
                        .collect::<Vec<_>>()
                        .join(" × ")
                })
                .unwrap_or_default();
            let _ = write!(s, "<td>{}</td>", esc(&roles));
        }
        for c in &columns {
            match cells.get(&(case.clone(), c.clone())) {
                Some(&i) => {
                    let v = results[i].verdict;
                    let _ = write!(
                        s,
                        "<td class=\"v {}\"><a href=\"#cell-{i}\">{}</a></td>",
                        class(v),
                        v.label()
                    );
                }
                None => s.push_str("<td>-</td>"),
            }
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table><h2>Cells</h2>");
    for (i, r) in results.iter().enumerate() {
        let _ = write!(
            s,
            "<section class=\"cell {}\" id=\"cell-{i}\"><h3>{} <span class=\"{}\">{}</span></h3><p>{}</p><ul>",
            class(r.verdict),
            esc(&r.id),
            class(r.verdict),
            r.verdict.label(),
            esc(&r.title)
        );
        for q in &r.requirements {
            let judged = if q.id == r.judged_requirement {
                " (judged)"
            } else {
                ""
            };
            let _ = write!(
                s,
                "<li class=\"requirement\"><code>{}</code> {}{judged}: {}</li>",
                esc(&q.id),
                q.level,
                esc(&q.text)
            );
        }
        s.push_str("</ul>");
        if let Some(e) = &r.expected {
            let _ = write!(s, "<p class=\"expected\"><b>expected:</b> {}</p>", esc(e));
        }
        if let Some(o) = &r.observed {
            let _ = write!(s, "<p class=\"observed\"><b>observed:</b> {}</p>", esc(o));
        }
        if let Some(d) = &r.expected_deviation {
            let _ = write!(s, "<p><b>known deviation:</b> {}</p>", esc(d));
        }
        for n in &r.notes {
            let _ = write!(s, "<p><b>note:</b> {}</p>", esc(n));
        }
        for f in &r.findings {
            let _ = write!(
                s,
                "<p><b>finding {}:</b> expected {}; observed {}</p>",
                esc(&f.requirement),
                esc(&f.expected),
                esc(&f.observed)
            );
        }
        if let Some(c) = &r.cell {
            for o in &c.oracles {
                let _ = write!(s, "<p><b>oracle:</b> {}</p>", esc(o));
            }
            let _ = write!(
                s,
                "<p><b>seed</b> {}; re-run: <code>{}</code></p>",
                c.seed,
                esc(&c.rerun)
            );
            if let Some(t) = &c.transcript {
                let _ = write!(s, "<p><b>transcript file:</b> <code>{}</code></p>", esc(t));
            }
            if !c.transcript_tail.is_empty() {
                let _ = write!(
                    s,
                    "<details{}><summary>transcript (last {} entries)</summary><pre class=\"transcript\">{}</pre></details>",
                    if matches!(r.verdict, Verdict::Fail | Verdict::Error | Verdict::Warn) { " open" } else { "" },
                    c.transcript_tail.len(),
                    esc(&c.transcript_tail.join("\n"))
                );
            }
        }
        if !r.frames.is_empty() {
            let lines: Vec<String> = r
                .frames
                .iter()
                .map(|f| format!("{:>6}ms {:<4} {:<8} {}", f.at_ms, f.link, f.dir, f.summary))
                .collect();
            let _ = write!(
                s,
                "<details{}><summary>frames ({})</summary><pre class=\"frames\">{}</pre></details>",
                if matches!(r.verdict, Verdict::Fail | Verdict::Error | Verdict::Warn) {
                    " open"
                } else {
                    ""
                },
                lines.len(),
                esc(&lines.join("\n"))
            );
        }
        let _ = write!(s, "<p><small>{} ms</small></p></section>", r.duration_ms);
    }
    s.push_str("</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;"
        );
    }
}
