//! What a run concludes: why a case did not pass ([`Failure`]), its verdict ([`Verdict`]) and the
//! result the reports are written from ([`CaseResult`]). Plain data, shared by the cases, the
//! runner, the expectations and the reports, and depending on none of them.

use serde::Serialize;

use crate::catalogue::Level;
use crate::evidence::{status_text, Frame};

/// Why a case did not pass.
#[derive(Debug)]
pub enum Failure {
    /// The runner itself could not do its job (a bug or a bad option): verdict ERROR.
    Harness(String),
    /// The target could not be reached at all.
    Unreachable(String),
    /// The target did something the requirement forbids, or failed to do what it demands.
    Violation {
        /// The requirement broken, when it is not the case's primary one (its level then decides
        /// the verdict).
        requirement: Option<String>,
        /// What the requirement demands, concretely.
        expected: String,
        /// What the target did.
        observed: String,
    },
    /// The target refused the `OpenChannel` call itself.
    Rejected(tonic::Status),
    /// The case needs a capability the target does not offer (verdict UNSUPPORTED).
    Unsupported(String),
}

impl Failure {
    /// A violation with the given expectation and observation.
    pub fn violation(expected: impl Into<String>, observed: impl Into<String>) -> Self {
        Failure::Violation {
            requirement: None,
            expected: expected.into(),
            observed: observed.into(),
        }
    }

    /// A violation of `requirement`, which the case cites but which is not its primary one: the
    /// verdict takes that requirement's level (a MUST clause checked inside a MAY case fails).
    pub fn violation_of(
        requirement: &str,
        expected: impl Into<String>,
        observed: impl Into<String>,
    ) -> Self {
        Failure::Violation {
            requirement: Some(requirement.to_string()),
            expected: expected.into(),
            observed: observed.into(),
        }
    }

    /// The same failure with its observation prefixed by `context` (which step it happened in).
    pub fn context(self, context: &str) -> Self {
        match self {
            Failure::Violation {
                requirement,
                expected,
                observed,
            } => Failure::Violation {
                requirement,
                expected,
                observed: format!("{context}: {observed}"),
            },
            other => other,
        }
    }

    /// (expected, observed) texts for the report.
    pub fn texts(&self) -> (String, String) {
        match self {
            Failure::Harness(m) => ("the runner works".into(), format!("harness error: {m}")),
            Failure::Unreachable(m) => ("the target accepts connections".into(), m.clone()),
            Failure::Violation {
                expected, observed, ..
            } => (expected.clone(), observed.clone()),
            Failure::Rejected(s) => (
                "the target accepts the OpenChannel call".into(),
                format!("call refused: {}", status_text(s)),
            ),
            Failure::Unsupported(m) => ("a capability this case needs".into(), m.clone()),
        }
    }
}

/// A secondary finding recorded while a case runs (a SHOULD broken inside a case whose primary
/// requirement is a MUST, or an observation).
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The requirement the finding is about.
    pub requirement: String,
    /// What the requirement demands.
    pub expected: String,
    /// What the target did.
    pub observed: String,
}

/// A case's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    /// The target did what the requirements demand.
    Pass,
    /// Behaviour recorded where the requirement leaves a choice (a MAY): reported apart, never
    /// counted as passed.
    Info,
    /// A SHOULD broken (a failure with `--strict`).
    Warn,
    /// A MUST broken.
    Fail,
    /// A failure listed in the expectations file for this implementation.
    Xfail,
    /// The target does not offer what the case needs; not run.
    Unsupported,
    /// The runner could not do its job.
    Error,
}

impl Verdict {
    /// Upper-case label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Info => "INFO",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
            Verdict::Xfail => "XFAIL",
            Verdict::Unsupported => "UNSUPPORTED",
            Verdict::Error => "ERROR",
        }
    }
}

/// A cited requirement, with its text, for self-contained reports.
#[derive(Debug, Clone, Serialize)]
pub struct RequirementRef {
    /// `SLIM-…` id.
    pub id: String,
    /// Its level.
    pub level: Level,
    /// The normative sentence.
    pub text: String,
}

/// The outcome of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// Case id (`area/slug`).
    pub id: String,
    /// What the case checks.
    pub title: String,
    /// Level of the primary requirement.
    pub level: Level,
    /// The verdict.
    pub verdict: Verdict,
    /// The requirement the verdict is about (the primary one, or the one a finding broke).
    pub judged_requirement: String,
    /// Every requirement the case cites, with its text.
    pub requirements: Vec<RequirementRef>,
    /// Wall time of the case in milliseconds.
    pub duration_ms: u64,
    /// What was expected (absent on PASS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// What was observed (absent on PASS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<String>,
    /// Secondary findings (SHOULD or MAY broken inside the case).
    pub findings: Vec<Finding>,
    /// Notes (recorded behaviour).
    pub notes: Vec<String>,
    /// The reason from the expectations file when the verdict is XFAIL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_deviation: Option<String>,
    /// The frames sent and received.
    pub frames: Vec<Frame>,
    /// Session profile only: which implementation played which role, the seed, the oracle and
    /// where the transcript is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cell: Option<CellInfo>,
}

impl CaseResult {
    /// A result that has not been judged yet (PASS until a failure says otherwise), for the case
    /// `id` citing `requirements`, the first of which is primary.
    pub fn new(id: String, title: String, requirements: Vec<RequirementRef>) -> Self {
        let (judged_requirement, level) = requirements
            .first()
            .map_or((String::new(), Level::May), |r| (r.id.clone(), r.level));
        CaseResult {
            id,
            title,
            level,
            verdict: Verdict::Pass,
            judged_requirement,
            requirements,
            duration_ms: 0,
            expected: None,
            observed: None,
            findings: Vec::new(),
            notes: Vec::new(),
            expected_deviation: None,
            frames: Vec::new(),
            cell: None,
        }
    }
}

/// Where a session-profile result comes from: one cell of the matrix.
#[derive(Debug, Clone, Serialize)]
pub struct CellInfo {
    /// The case id without the assignment.
    pub case: String,
    /// `(role, implementation)` pairs, in the case's role order.
    pub assignment: Vec<(String, String)>,
    /// The cell's seed (fault decisions and the apps' randomness derive from it).
    pub seed: u64,
    /// How group state agreement was judged, per transition (StateAuth or observed).
    pub oracles: Vec<String>,
    /// The transcript file (every frame through the harness node, decoded), if written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcript: Option<String>,
    /// The transcript's last entries, for self-contained reports.
    pub transcript_tail: Vec<String>,
    /// The command that re-runs only this cell.
    pub rerun: String,
}
