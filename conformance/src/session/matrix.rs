//! The session matrix: every case, run with every implementation in every role (as
//! quic-interop-runner runs clients × servers), each cell through its own harness node with its
//! own seed, bounded in time, and judged with the verdicts of the node profile.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::cases::SessionCase;
use super::cell::Cell;
use super::driver::Driver;
use crate::catalogue::Catalogue;
use crate::expectations::Expectations;
use crate::harness::HarnessNode;
use crate::runner::{bounded, judge, requirement_refs};
use crate::verdict::{CaseResult, CellInfo, Verdict};

/// The upper bound of one cell.
pub const CELL_TIMEOUT: Duration = Duration::from_secs(120);

/// Options of a matrix run.
pub struct MatrixOptions {
    /// The implementations, in column order.
    pub drivers: Vec<Driver>,
    /// The node the harness forwards to.
    pub node_url: String,
    /// The run's seed; each cell's seed derives from it and the cell's id.
    pub seed: u64,
    /// Known deviations per implementation name.
    pub expectations: BTreeMap<String, Expectations>,
    /// Where transcripts go (one JSON-lines file per cell).
    pub transcripts: Option<PathBuf>,
    /// Run only cells whose assignment (`ref,sdk`) matches.
    pub cell: Option<String>,
    /// The command-line prefix to re-run one cell (runner, drivers, node).
    pub rerun_prefix: String,
}

/// `ref,sdk`: the implementations of an assignment, in role order.
pub fn assignment_text(a: &[(String, String)]) -> String {
    a.iter()
        .map(|(_, i)| i.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The cell's id: `case@impl,impl`.
pub fn cell_id(case: &str, a: &[(String, String)]) -> String {
    format!("{case}@{}", assignment_text(a))
}

/// The cell's seed.
pub fn cell_seed(seed: u64, id: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(id.as_bytes());
    let d = h.finalize();
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// Every assignment of `drivers` to `roles` (role-major order).
pub fn assignments(roles: &[&str], drivers: &[Driver]) -> Vec<Vec<(String, Driver)>> {
    let mut out: Vec<Vec<(String, Driver)>> = vec![Vec::new()];
    for role in roles {
        let mut next = Vec::new();
        for prefix in &out {
            for d in drivers {
                let mut a = prefix.clone();
                a.push((role.to_string(), d.clone()));
                next.push(a);
            }
        }
        out = next;
    }
    out
}

/// The cells the options select, in run order.
pub fn plan(
    cases: &[SessionCase],
    opts: &MatrixOptions,
) -> Vec<(SessionCase, Vec<(String, Driver)>)> {
    let mut cells = Vec::new();
    for case in cases {
        for a in assignments(case.roles, &opts.drivers) {
            let names: Vec<(String, String)> =
                a.iter().map(|(r, d)| (r.clone(), d.name.clone())).collect();
            if let Some(want) = &opts.cell {
                if !crate::args::glob_match(want, &assignment_text(&names)) {
                    continue;
                }
            }
            cells.push((case.clone(), a));
        }
    }
    cells
}

/// Runs one cell and judges it.
pub async fn run_cell(
    case: &SessionCase,
    roles: Vec<(String, Driver)>,
    catalogue: &Catalogue,
    opts: &MatrixOptions,
    index: usize,
) -> CaseResult {
    let names: Vec<(String, String)> = roles
        .iter()
        .map(|(r, d)| (r.clone(), d.name.clone()))
        .collect();
    let id = cell_id(case.id, &names);
    let seed = cell_seed(opts.seed, &id);
    let reqs: Vec<String> = case.requirements.iter().map(|s| s.to_string()).collect();
    let requirements = requirement_refs(catalogue, &reqs);
    let mut result = CaseResult::new(id.clone(), case.title.into(), requirements);
    let primary_level = result.level;
    result.cell = Some(CellInfo {
        case: case.id.into(),
        assignment: names.clone(),
        seed,
        oracles: Vec::new(),
        transcript: None,
        transcript_tail: Vec::new(),
        rerun: format!(
            "{} --only '{}' --cell '{}' --seed {}",
            opts.rerun_prefix,
            case.id,
            assignment_text(&names),
            opts.seed
        ),
    });
    let missing = roles
        .iter()
        .find_map(|(_, d)| case.needs.iter().find_map(|c| c.missing(&d.caps)));
    if let Some(reason) = missing {
        result.verdict = Verdict::Unsupported;
        result.observed = Some(reason);
        return result;
    }
    let started = Instant::now();
    let harness = match HarnessNode::start(&opts.node_url, seed).await {
        Ok(h) => Arc::new(h),
        Err(e) => {
            result.verdict = Verdict::Error;
            result.observed = Some(format!("harness error: cannot start the harness node: {e}"));
            return result;
        }
    };
    let org = format!("s{:08x}-{index:03}", seed as u32);
    let cx = Cell::new(roles, harness.clone(), seed, opts.node_url.clone(), org);
    let failure = bounded((case.run)(cx.clone()), CELL_TIMEOUT).await;
    // Free the apps before the next cell (bounded; a hung shim is already an ERROR).
    let _ = tokio::time::timeout(Duration::from_secs(10), cx.free_all()).await;
    result.duration_ms = started.elapsed().as_millis() as u64;
    result.notes = cx.notes();
    judge(&mut result, catalogue, primary_level, failure, None);
    let transcript = harness.transcript();
    if let Some(info) = result.cell.as_mut() {
        info.oracles = cx.oracles();
        info.transcript_tail = transcript
            .iter()
            .rev()
            .take(40)
            .rev()
            .map(super::transcript_line)
            .collect();
        if let Some(dir) = &opts.transcripts {
            let file = dir.join(format!("{}.jsonl", id.replace(['/', '@', ','], "_")));
            match harness.write_jsonl(&file) {
                Ok(()) => info.transcript = Some(file.display().to_string()),
                Err(e) => result
                    .notes
                    .push(format!("transcript not written to {}: {e}", file.display())),
            }
        }
    }
    if let Ok(h) = Arc::try_unwrap(harness) {
        h.shutdown().await;
    }
    apply_expectations(&mut result, &names, case, opts);
    result
}

/// A FAIL or WARN is XFAIL when an implementation in the cell lists it for the role it plays.
fn apply_expectations(
    result: &mut CaseResult,
    names: &[(String, String)],
    case: &SessionCase,
    opts: &MatrixOptions,
) {
    if !matches!(result.verdict, Verdict::Fail | Verdict::Warn) {
        return;
    }
    for (role, implementation) in names {
        let Some(e) = opts.expectations.get(implementation) else {
            continue;
        };
        if let Some(d) = e.deviations.iter().find(|d| {
            d.requirement == result.judged_requirement
                && d.case == case.id
                && d.role.as_deref().is_none_or(|r| r == role)
        }) {
            result.verdict = Verdict::Xfail;
            result.expected_deviation = Some(format!("{implementation} as {role}: {}", d.reason));
            return;
        }
    }
}

/// Expectation entries of `implementation` that no cell confirmed: their case ran with the
/// implementation in the entry's role and nothing was XFAIL against them.
pub fn stale<'a>(
    implementation: &str,
    e: &'a Expectations,
    results: &[CaseResult],
) -> Vec<&'a crate::expectations::Deviation> {
    e.deviations
        .iter()
        .filter(|d| {
            let relevant: Vec<&CaseResult> = results
                .iter()
                .filter(|r| {
                    r.cell.as_ref().is_some_and(|c| {
                        c.case == d.case
                            && c.assignment.iter().any(|(role, i)| {
                                i == implementation && d.role.as_deref().is_none_or(|x| x == role)
                            })
                    })
                })
                .filter(|r| !matches!(r.verdict, Verdict::Unsupported | Verdict::Error))
                .collect();
            !relevant.is_empty()
                && !relevant.iter().any(|r| {
                    r.verdict == Verdict::Xfail
                        && r.judged_requirement == d.requirement
                        && r.expected_deviation
                            .as_deref()
                            .is_some_and(|x| x.starts_with(&format!("{implementation} as")))
                })
        })
        .collect()
}

/// The console matrix: one row per case, one column per assignment.
pub fn matrix_text(results: &[CaseResult]) -> String {
    let mut columns: Vec<String> = Vec::new();
    let mut rows: Vec<String> = Vec::new();
    let mut cells: BTreeMap<(String, String), Verdict> = BTreeMap::new();
    for r in results {
        let Some(c) = &r.cell else { continue };
        let col = c
            .assignment
            .iter()
            .map(|(_, i)| i.as_str())
            .collect::<Vec<_>>()
            .join("×");
        let col = if c.assignment.len() == 1 {
            format!("{col}×runner")
        } else {
            col
        };
        if !columns.contains(&col) {
            columns.push(col.clone());
        }
        if !rows.contains(&c.case) {
            rows.push(c.case.clone());
        }
        cells.insert((c.case.clone(), col), r.verdict);
    }
    columns.sort_by_key(|c| (c.matches('×').count(), c.clone()));
    let width = columns.iter().map(String::len).max().unwrap_or(5).max(11);
    let mut s = format!("{:<34}", "SESSION MATRIX (roles in case order)");
    for c in &columns {
        let _ = write!(s, " {c:<width$}");
    }
    for row in &rows {
        let _ = write!(s, "\n{row:<34}");
        for c in &columns {
            let v = cells
                .get(&(row.clone(), c.clone()))
                .map_or("-", |v| v.label());
            let _ = write!(s, " {v:<width$}");
        }
    }
    s
}
