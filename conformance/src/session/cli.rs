//! `slim-conformance run --profile session`: starts what is embedded (the reference relay as the
//! node, the reference client's driver as `ref`), connects to every `--driver`, runs the matrix
//! and writes the reports.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::cases::SessionCase;
use super::driver::Driver;
use super::matrix::{self, MatrixOptions};
use crate::args::{check_node_url, glob_match, EXIT_UNREACHABLE, EXIT_USAGE};
use crate::catalogue::Catalogue;
use crate::expectations::Expectations;
use crate::report;
use crate::runner::Summary;
use crate::verdict::{CaseResult, Verdict};

/// The options of a session run (from `run`'s flags).
#[derive(Debug)]
pub struct SessionArgs {
    /// `NAME=URL` of each extra implementation.
    pub drivers: Vec<String>,
    /// The upstream node, else the embedded relay.
    pub node: Option<String>,
    /// The run's seed.
    pub seed: u64,
    /// Assignment filter.
    pub cell: Option<String>,
    /// Transcript directory.
    pub transcripts: Option<PathBuf>,
    /// HTML report.
    pub html: Option<PathBuf>,
    /// JSON report.
    pub json: Option<PathBuf>,
    /// JUnit report.
    pub junit: Option<PathBuf>,
    /// `NAME=FILE` expectations.
    pub expect: Vec<String>,
    /// Case filters.
    pub only: Vec<String>,
    /// Case filters.
    pub skip: Vec<String>,
    /// WARN fails.
    pub strict: bool,
    /// Stop at the first failing cell.
    pub fail_fast: bool,
}

fn select(cases: Vec<SessionCase>, only: &[String], skip: &[String]) -> Vec<SessionCase> {
    let hit = |c: &SessionCase, pats: &[String]| {
        pats.iter()
            .any(|p| glob_match(p, c.id) || c.requirements.iter().any(|r| glob_match(p, r)))
    };
    cases
        .into_iter()
        .filter(|c| only.is_empty() || hit(c, only))
        .filter(|c| !hit(c, skip))
        .collect()
}

/// Runs the session profile; returns the exit code.
pub async fn run(args: SessionArgs, catalogue: Catalogue) -> i32 {
    let mut expectations = BTreeMap::new();
    for e in &args.expect {
        let Some((name, path)) = e.split_once('=') else {
            eprintln!("error: --expect {e:?}: the session profile takes NAME=FILE (the implementation's --driver name, e.g. sdk=conformance/expectations/slim-bindings-3.3.8-session.yaml)");
            return EXIT_USAGE;
        };
        match Expectations::load(std::path::Path::new(path), &catalogue) {
            Ok(x) => {
                expectations.insert(name.to_string(), x);
            }
            Err(err) => {
                eprintln!("error: {err}");
                return EXIT_USAGE;
            }
        }
    }
    let cases = select(super::cases::all(), &args.only, &args.skip);
    if cases.is_empty() {
        eprintln!("error: --only/--skip selected no session case; `slim-conformance list --cases` shows the ids");
        return EXIT_USAGE;
    }
    // The node: --node, or the reference relay in-process.
    let mut relay = None;
    let node_url = match &args.node {
        Some(url) => {
            if let Err(e) = check_node_url("--node", url) {
                eprintln!("error: {e}");
                return EXIT_USAGE;
            }
            if url.starts_with("https://") {
                eprintln!("error: --node {url}: the session profile's harness node reaches the node over h2c only; give the node a plaintext listener on loopback (http://HOST:PORT). TLS targets are judged by the node profile (--target https://… --ca FILE)");
                return EXIT_USAGE;
            }
            url.clone()
        }
        None => {
            let config = slim_reference::config::ServerConfig {
                listen: ([127, 0, 0, 1], 0).into(),
                ..Default::default()
            };
            match slim_reference::server::spawn(config).await {
                Ok(h) => {
                    let url = h.url();
                    relay = Some(h);
                    url
                }
                Err(e) => {
                    eprintln!("error: cannot start the embedded reference relay: {e}");
                    return EXIT_USAGE;
                }
            }
        }
    };
    // The implementations: the embedded reference, then every --driver.
    let embedded =
        match slim_reference::client::driver::DriverServer::start(([127, 0, 0, 1], 0).into()).await
        {
            Ok(d) => d,
            Err(e) => {
                eprintln!("error: cannot start the embedded reference driver: {e}");
                return EXIT_USAGE;
            }
        };
    let mut drivers = Vec::new();
    let mut specs = vec![(
        "ref".to_string(),
        format!("http://{}", embedded.local_addr()),
    )];
    for d in &args.drivers {
        match d.split_once('=') {
            Some((name, url)) if !name.is_empty() && name != "ref" && !name.contains(',') => {
                specs.push((name.to_string(), url.to_string()))
            }
            _ => {
                eprintln!("error: --driver {d:?}: expected NAME=http://HOST:PORT with a NAME other than `ref` and without ',' (e.g. --driver sdk=http://127.0.0.1:50051)");
                return EXIT_USAGE;
            }
        }
    }
    for (name, url) in &specs {
        match Driver::connect(name, url, Duration::from_secs(10)).await {
            Ok(d) => drivers.push(d),
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_UNREACHABLE;
            }
        }
    }
    for name in expectations.keys() {
        if !drivers.iter().any(|d| &d.name == name) {
            eprintln!("error: --expect {name}=…: no --driver is called {name}");
            return EXIT_USAGE;
        }
    }
    let transcripts = args.transcripts.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "slim-conformance-transcripts-{}",
            std::process::id()
        ))
    });
    if let Err(e) = std::fs::create_dir_all(&transcripts) {
        eprintln!(
            "error: cannot create the transcript directory {}: {e}",
            transcripts.display()
        );
        return EXIT_USAGE;
    }
    let mut prefix = String::from("slim-conformance run --profile session");
    for d in &args.drivers {
        prefix.push_str(&format!(" --driver {d}"));
    }
    if let Some(n) = &args.node {
        prefix.push_str(&format!(" --node {n}"));
    }
    let opts = MatrixOptions {
        drivers: drivers.clone(),
        node_url: node_url.clone(),
        seed: args.seed,
        expectations,
        transcripts: Some(transcripts.clone()),
        cell: args.cell.clone(),
        rerun_prefix: prefix,
    };
    let plan = matrix::plan(&cases, &opts);
    if plan.is_empty() {
        eprintln!("error: --cell {:?} selected no cell; cells are named by implementations in role order, e.g. ref,sdk", args.cell);
        return EXIT_USAGE;
    }
    println!(
        "slim-conformance {} session profile: {} against node {}{}, {} cases, {} cells, seed {}; transcripts in {}",
        env!("CARGO_PKG_VERSION"),
        drivers
            .iter()
            .map(|d| format!("{} ({})", d.name, d.caps.implementation))
            .collect::<Vec<_>>()
            .join(", "),
        node_url,
        if relay.is_some() { " (embedded reference relay)" } else { "" },
        cases.len(),
        plan.len(),
        args.seed,
        transcripts.display()
    );
    println!("{}", report::table_header());
    let identity = drivers
        .iter()
        .map(|d| format!("{}={} ({})", d.name, d.url, d.caps.implementation))
        .collect::<Vec<_>>()
        .join(", ");
    let mut results: Vec<CaseResult> = Vec::new();
    let mut write_error = None;
    for (i, (case, roles)) in plan.into_iter().enumerate() {
        let r = matrix::run_cell(&case, roles, &catalogue, &opts, i).await;
        println!("{}", cell_row(&r));
        let stop = args.fail_fast && matches!(r.verdict, Verdict::Fail | Verdict::Error)
            || (args.fail_fast && args.strict && r.verdict == Verdict::Warn);
        results.push(r);
        if let Err(e) = write_reports(&args, &opts, &results, &node_url, &identity, false) {
            write_error.get_or_insert(e);
        }
        if stop {
            break;
        }
    }
    println!("\n{}\n", matrix::matrix_text(&results));
    let stale = stale_all(&opts, &results);
    for (name, what) in &stale {
        println!("STALE expectation of {name}: {what}; remove it from that file");
    }
    if let Err(e) = write_reports(&args, &opts, &results, &node_url, &identity, true) {
        write_error.get_or_insert(e);
    }
    let summary = Summary::of(&results, args.strict, stale.len());
    println!("{}", summary.line());
    embedded.shutdown().await;
    if let Some(h) = relay {
        let _ = h.shutdown().await;
    }
    if let Some(e) = write_error {
        eprintln!("error: {e}");
        return EXIT_USAGE;
    }
    summary.exit_code()
}

/// The console row of a cell: the node profile's row, plus the seed, the oracle and the command
/// that re-runs the cell when it did not pass.
fn cell_row(r: &CaseResult) -> String {
    let mut s = report::table_row(r);
    if let Some(c) = &r.cell {
        for o in &c.oracles {
            s.push_str(&format!("\n      oracle: {o}"));
        }
        if matches!(r.verdict, Verdict::Fail | Verdict::Warn | Verdict::Error) {
            let tail = c.transcript_tail.len().saturating_sub(8);
            if !c.transcript_tail.is_empty() {
                s.push_str("\n      transcript (last entries):");
                for line in &c.transcript_tail[tail..] {
                    s.push_str(&format!("\n        {line}"));
                }
            }
            if let Some(t) = &c.transcript {
                s.push_str(&format!("\n      transcript: {t}"));
            }
            s.push_str(&format!(
                "\n      seed {}; re-run this cell: {}",
                c.seed, c.rerun
            ));
        }
    }
    s
}

/// Expectation entries no cell confirmed, per implementation, as sentences.
fn stale_all(opts: &MatrixOptions, results: &[CaseResult]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, e) in &opts.expectations {
        for d in matrix::stale(name, e, results) {
            out.push((
                name.clone(),
                format!("{} ({}) now passes", d.requirement, d.case),
            ));
        }
        for u in e.stale_unsupported(results, Some(name)) {
            out.push((
                name.clone(),
                format!("{} is listed as unsupported but ran", u.case),
            ));
        }
    }
    out
}

fn write_reports(
    args: &SessionArgs,
    opts: &MatrixOptions,
    results: &[CaseResult],
    node: &str,
    identity: &str,
    complete: bool,
) -> Result<(), String> {
    let stale = if complete {
        stale_all(opts, results).len()
    } else {
        0
    };
    let r = report::JsonReport {
        schema: report::JSON_SCHEMA,
        runner: env!("CARGO_PKG_VERSION").into(),
        target: format!("node {node}, seed {}", args.seed),
        target_identity: identity.into(),
        complete,
        strict: args.strict,
        summary: Summary::of(results, args.strict, stale),
        stale_expectations: Vec::new(),
        cases: results,
    };
    report::ReportFiles {
        json: args.json.as_deref(),
        junit: args.junit.as_deref(),
        html: args.html.as_deref(),
        title: "slim-conformance: session profile",
    }
    .write(&r)
}
