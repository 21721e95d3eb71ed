//! Runs cases one by one against a target and turns their outcomes into verdicts.
//!
//! Each case runs in its own task with its own links and names and an upper time bound, so a
//! target that hangs, crashes or closes a stream fails that case with evidence and the run goes
//! on. Results are handed to a callback as soon as each case ends, so partial reports are always
//! written.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::case::{Case, Ctx, Need};
use crate::catalogue::{Catalogue, Level};
use crate::client::{Link, Target};
use crate::expectations::Expectations;
use crate::revoke::RevocationSetup;
use crate::verdict::Failure;
pub use crate::verdict::{CaseResult, RequirementRef, Verdict};

/// Options of one run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The target.
    pub target: Target,
    /// How long negative checks wait for silence.
    pub quiet: Duration,
    /// Treat WARN as failure.
    pub strict: bool,
    /// Stop after the first FAIL or ERROR (and the first WARN with `strict`).
    pub fail_fast: bool,
    /// What the revocation cases need (SLIM-REV-001..006); `None` makes them UNSUPPORTED.
    pub revocation: Option<Arc<RevocationSetup>>,
    /// What the connection cases need (SLIM-CONN-*).
    pub connections: Arc<crate::conn::ConnectionSetup>,
}

/// Why the run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Nothing listens at the target, or it does not speak gRPC.
    #[error("target unreachable: {0}")]
    Unreachable(String),
    /// The target refused the runner (credentials) or its negotiation failed.
    #[error("{0}")]
    Refused(String),
}

/// Checks that the target accepts a link at all before running cases.
pub async fn probe(target: &Target) -> Result<String, RunError> {
    let log = crate::evidence::FrameLog::new();
    let link = Link::connect(target, "probe", &log).await;
    match link {
        Ok(link) => {
            let reply = link.reply.clone().unwrap_or_default();
            Ok(format!(
                "node_id {:?}, slim_version {:?}",
                reply.node_id, reply.slim_version
            ))
        }
        Err(Failure::Unreachable(m)) => Err(RunError::Unreachable(m)),
        Err(Failure::Rejected(s)) if s.code() == tonic::Code::Unauthenticated => {
            Err(RunError::Refused(format!(
            "the target requires credentials ({}); pass --auth basic:USER:PASS or --bearer TOKEN",
            s.message()
        )))
        }
        Err(f) => {
            let (expected, observed) = f.texts();
            Err(RunError::Refused(format!(
                "the target does not complete a link negotiation, so no case can run: expected {expected}; observed {observed}"
            )))
        }
    }
}

/// The verdict a broken requirement of `level` gives.
pub fn level_verdict(level: Level) -> Verdict {
    match level {
        Level::Must => Verdict::Fail,
        Level::Should => Verdict::Warn,
        Level::May => Verdict::Info,
    }
}

fn unmet(need: Need, options: &RunOptions) -> Option<String> {
    let target = &options.target;
    let setup = options.revocation.as_deref();
    let issuer = setup.and_then(|s| s.issuer.as_ref());
    let revoker = setup.and_then(|s| s.revoker.as_ref());
    let conn = &options.connections;
    match need {
        Need::StrictMac if !target.strict_mac => {
            Some("the target was declared not to require the header MAC (--require-header-mac false)".into())
        }
        Need::LaxMac if target.strict_mac => Some(
            "the target requires the header MAC; run with --require-header-mac false against a non-strict node".into(),
        ),
        Need::Auth if target.authorization.is_none() => Some(
            "the target is not protected by credentials (pass --auth or --bearer for a protected target)".into(),
        ),
        Need::Jwt | Need::JwtIssuer | Need::JwtAudience if issuer.is_none() => Some(
            "the runner cannot mint the target's JWT bearer tokens (pass --jwt-key FILE or --jwt-hs256-secret-file FILE)".into(),
        ),
        Need::JwtIssuer if issuer.is_some_and(|i| i.issuer.is_none()) => Some(
            "the target was not declared to check the token's iss (pass --jwt-issuer ISS)".into(),
        ),
        Need::JwtAudience if issuer.is_some_and(|i| i.audience.is_none()) => Some(
            "the target was not declared to check the token's aud (pass --jwt-audience AUD)".into(),
        ),
        Need::Revoke | Need::RevokeFile if revoker.is_none() => Some(
            "the runner has no way to revoke a credential on the target (pass --revoke-file PATH or --revoke-cmd CMD)".into(),
        ),
        Need::RevokeFile if revoker.is_some_and(|r| !r.is_file()) => Some(
            "a malformed revocation list can only be written through --revoke-file PATH (--revoke-cmd cannot make the target read one)".into(),
        ),
        Need::Tls | Need::MutualTls if conn.tls.is_none() => Some(
            "the target is h2c; TLS is judged on an https:// target (--target https://HOST:PORT --ca FILE), or on the embedded TLS relay without --target".into(),
        ),
        Need::MutualTls if conn.tls.as_ref().is_some_and(|t| t.anonymous.is_none()) => Some(
            "the runner has no client certificate for the target (pass --cert FILE --key FILE for a target that requires client certificates)".into(),
        ),
        Need::IdleTimeout if conn.idle_timeout.is_none() => Some(
            "the target's idle timeout was not declared (pass --idle-timeout-ms N)".into(),
        ),
        Need::PeerLimit if conn.max_connections_per_peer.is_none() => Some(
            "the target's per-address connection limit was not declared (pass --max-connections-per-peer N)".into(),
        ),
        _ => None,
    }
}

/// The cited requirements with their level and text (a missing one is shown as such, at MUST).
pub fn requirement_refs(catalogue: &Catalogue, ids: &[String]) -> Vec<RequirementRef> {
    ids.iter()
        .map(|id| match catalogue.get(id) {
            Some(r) => RequirementRef {
                id: r.id.clone(),
                level: r.level,
                text: r.text.clone(),
            },
            None => RequirementRef {
                id: id.clone(),
                level: Level::Must,
                text: "(not in the catalogue)".into(),
            },
        })
        .collect()
}

/// Runs one case and judges it.
pub async fn run_case(
    case: &Case,
    catalogue: &Catalogue,
    options: &RunOptions,
    expectations: Option<&Expectations>,
    run_id: &str,
    index: usize,
) -> CaseResult {
    let requirements = requirement_refs(catalogue, &case.requirements);
    let mut result = CaseResult::new(case.id.clone(), case.title.clone(), requirements);
    let primary_level = result.level;
    if let Some(reason) = case.needs.iter().find_map(|n| unmet(*n, options)) {
        result.verdict = Verdict::Unsupported;
        result.observed = Some(reason);
        return result;
    }
    let org = format!("c{run_id}-{index:03}");
    let cx = Ctx::new(options.target.clone(), org, options.quiet)
        .with_revocation(options.revocation.clone())
        .with_connections(options.connections.clone());
    let started = Instant::now();
    let failure = bounded((case.run)(cx.clone()), case.timeout).await;
    result.duration_ms = started.elapsed().as_millis() as u64;
    result.findings = cx.findings();
    result.notes = cx.notes();
    result.frames = cx.log.frames();
    judge(
        &mut result,
        catalogue,
        primary_level,
        failure,
        cx.observation(),
    );
    if matches!(result.verdict, Verdict::Fail | Verdict::Warn) {
        if let Some(entry) =
            expectations.and_then(|e| e.find(&result.judged_requirement, &result.id))
        {
            result.verdict = Verdict::Xfail;
            result.expected_deviation = Some(entry.reason.clone());
        }
    }
    result
}

/// Runs a case in its own task bounded by `timeout`: a panic is a harness error (ERROR), the
/// bound a violation (the target stopped responding). Shared by both profiles.
pub async fn bounded(
    case: impl std::future::Future<Output = Result<(), Failure>> + Send + 'static,
    timeout: Duration,
) -> Option<Failure> {
    let task = tokio::spawn(case);
    let abort = task.abort_handle();
    match tokio::time::timeout(timeout, task).await {
        Err(_) => {
            abort.abort();
            Some(Failure::violation(
                format!("the case completes within {timeout:?}"),
                "the implementation stopped responding (the case hit its time bound)",
            ))
        }
        Ok(Err(join)) => Some(Failure::Harness(format!("the case panicked: {join}"))),
        Ok(Ok(Ok(()))) => None,
        Ok(Ok(Err(f))) => Some(f),
    }
}

/// Turns a case's outcome into its verdict: a failure takes the level of the requirement it
/// broke; without one, the worst secondary finding decides, then an observation (INFO);
/// otherwise PASS. `result.findings` must be filled in first. Shared by both profiles.
pub fn judge(
    result: &mut CaseResult,
    catalogue: &Catalogue,
    primary_level: Level,
    failure: Option<Failure>,
    observation: Option<String>,
) {
    match failure {
        None => {
            // The worst secondary finding decides; then an observation; otherwise a pass.
            let worst = result
                .findings
                .iter()
                .filter_map(|f| catalogue.get(&f.requirement).map(|r| (r.level, f)))
                .min_by_key(|(level, _)| *level);
            if let Some((level, f)) = worst {
                result.verdict = level_verdict(level);
                result.level = level;
                result.judged_requirement = f.requirement.clone();
                result.expected = Some(f.expected.clone());
                result.observed = Some(f.observed.clone());
            } else if let Some(o) = observation {
                result.verdict = Verdict::Info;
                result.observed = Some(o);
            }
        }
        Some(Failure::Harness(m)) => {
            result.verdict = Verdict::Error;
            result.observed = Some(format!("harness error: {m}"));
        }
        Some(Failure::Unsupported(m)) => {
            result.verdict = Verdict::Unsupported;
            result.observed = Some(m);
        }
        Some(Failure::Violation {
            requirement: Some(id),
            expected,
            observed,
        }) => {
            let level = catalogue.get(&id).map_or(Level::Must, |r| r.level);
            result.verdict = level_verdict(level);
            result.level = level;
            result.judged_requirement = id;
            result.expected = Some(expected);
            result.observed = Some(observed);
        }
        Some(f) => {
            let (expected, observed) = f.texts();
            result.verdict = level_verdict(primary_level);
            result.expected = Some(expected);
            result.observed = Some(observed);
        }
    }
}

/// Runs `cases` in order, calling `on_result` after each.
pub async fn run_all(
    cases: &[Case],
    catalogue: &Catalogue,
    options: &RunOptions,
    expectations: Option<&Expectations>,
    mut on_result: impl FnMut(&CaseResult, &[CaseResult]),
) -> Vec<CaseResult> {
    let run_id: String = uuid::Uuid::new_v4()
        .simple()
        .to_string()
        .chars()
        .take(8)
        .collect();
    let mut results: Vec<CaseResult> = Vec::with_capacity(cases.len());
    for (i, case) in cases.iter().enumerate() {
        let r = run_case(case, catalogue, options, expectations, &run_id, i).await;
        let stop = options.fail_fast
            && match r.verdict {
                Verdict::Fail | Verdict::Error => true,
                Verdict::Warn => options.strict,
                _ => false,
            };
        results.push(r);
        if let Some(last) = results.last() {
            on_result(last, &results);
        }
        if stop {
            break;
        }
    }
    results
}

/// Counts of verdicts.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    /// PASS (INFO is not a pass: it records a choice the requirement leaves open).
    pub passed: usize,
    /// FAIL (and WARN with `--strict`).
    pub failed: usize,
    /// UNSUPPORTED.
    pub skipped: usize,
    /// WARN (counted in `failed` too with `--strict`).
    pub warnings: usize,
    /// XFAIL.
    pub expected_failures: usize,
    /// INFO: observations, counted apart from `passed`.
    pub info: usize,
    /// ERROR.
    pub errors: usize,
    /// Expectation entries whose requirement now passes.
    pub stale_expectations: usize,
}

impl Summary {
    /// Counts `results`.
    pub fn of(results: &[CaseResult], strict: bool, stale: usize) -> Self {
        let mut s = Summary {
            stale_expectations: stale,
            ..Summary::default()
        };
        for r in results {
            match r.verdict {
                Verdict::Pass => s.passed += 1,
                Verdict::Info => s.info += 1,
                Verdict::Warn => {
                    s.warnings += 1;
                    if strict {
                        s.failed += 1
                    }
                }
                Verdict::Fail => s.failed += 1,
                Verdict::Xfail => s.expected_failures += 1,
                Verdict::Unsupported => s.skipped += 1,
                Verdict::Error => s.errors += 1,
            }
        }
        s
    }

    /// The one-line summary printed last.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        );
        let mut extra = Vec::new();
        if self.info > 0 {
            extra.push(format!("{} observations", self.info));
        }
        if self.warnings > 0 {
            extra.push(format!("{} warnings", self.warnings));
        }
        if self.expected_failures > 0 {
            extra.push(format!("{} expected failures", self.expected_failures));
        }
        if self.errors > 0 {
            extra.push(format!("{} errors", self.errors));
        }
        if self.stale_expectations > 0 {
            extra.push(format!("{} stale expectations", self.stale_expectations));
        }
        if !extra.is_empty() {
            line.push_str(&format!(" ({})", extra.join(", ")));
        }
        line
    }

    /// Exit code: 1 on failures or stale expectations, 2 on harness errors, else 0.
    pub fn exit_code(&self) -> i32 {
        if self.failed > 0 || self.stale_expectations > 0 {
            1
        } else if self.errors > 0 {
            2
        } else {
            0
        }
    }
}
