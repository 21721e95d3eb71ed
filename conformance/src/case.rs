//! What a conformance case is, what it may conclude, and the context it runs in.
//!
//! A case is an async function from a [`Ctx`] to `Result<(), Failure>`. It opens its own links to
//! the target, uses names no other case uses, and states its expectation in the words of the
//! requirement it cites. The runner turns the result into a verdict with the level of the case's
//! primary requirement: a broken MUST is a FAIL, a broken SHOULD a WARN, a MAY is INFO.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use slim_proto::names::SlimName;

use crate::client::{Link, Target};
use crate::conn::ConnectionSetup;
use crate::evidence::FrameLog;
use crate::revoke::RevocationSetup;
pub use crate::verdict::{Failure, Finding};

/// What a case needs from the target beyond the basics; cases whose needs are not met are
/// reported UNSUPPORTED without being run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Need {
    /// The target requires the header MAC (the default; `--require-header-mac false` turns it off).
    StrictMac,
    /// The target does not require the header MAC.
    LaxMac,
    /// The target is protected by HTTP credentials and the runner was given them.
    Auth,
    /// The runner can mint the target's JWT bearer tokens (`--jwt-key`; SLIM-REV-001).
    Jwt,
    /// The target checks the token's `iss` and the runner knows the value (`--jwt-issuer`).
    JwtIssuer,
    /// The target checks the token's `aud` and the runner knows the value (`--jwt-audience`).
    JwtAudience,
    /// The runner can revoke a credential on the target (`--revoke-file` or `--revoke-cmd`;
    /// SLIM-REV-002).
    Revoke,
    /// The runner revokes by writing the target's list file (`--revoke-file`), so it can also
    /// write a malformed one (SLIM-REV-006).
    RevokeFile,
    /// A TLS target: an `https://` `--target`, or the embedded TLS relay (SLIM-CONN-001/002).
    Tls,
    /// A TLS target that requires client certificates and a certificate for the runner
    /// (`--cert`/`--key`, or the embedded TLS relay).
    MutualTls,
    /// The target's idle timeout is known (`--idle-timeout-ms`, or the embedded relay's).
    IdleTimeout,
    /// The target's per-address connection limit is known (`--max-connections-per-peer`, or
    /// the embedded relay's).
    PeerLimit,
}

/// The context one case runs in.
#[derive(Clone)]
pub struct Ctx {
    /// The target.
    pub target: Target,
    /// Evidence: every frame sent and received by the case's links.
    pub log: FrameLog,
    /// Unique per run and case; the first name component of every name the case uses.
    org: String,
    /// Findings recorded with [`Ctx::finding`].
    findings: Arc<Mutex<Vec<Finding>>>,
    /// Notes recorded with [`Ctx::note`] (shown with the verdict).
    notes: Arc<Mutex<Vec<String>>>,
    /// Set by [`Ctx::observe`]: the case recorded behaviour instead of judging it.
    observation: Arc<Mutex<Option<String>>>,
    /// How long the case may wait for an expected silence (a bounded negative check).
    pub quiet: Duration,
    /// What the revocation cases need (SLIM-REV-001..006), when the run has it.
    revocation: Option<Arc<RevocationSetup>>,
    /// What the connection cases need (SLIM-CONN-*).
    connections: Arc<ConnectionSetup>,
}

impl Ctx {
    /// A context for one case. `org` must be unique to this run and case so no two cases share
    /// a route on the target.
    pub fn new(target: Target, org: String, quiet: Duration) -> Self {
        Self {
            target,
            log: FrameLog::new(),
            org,
            findings: Arc::default(),
            notes: Arc::default(),
            observation: Arc::default(),
            quiet,
            revocation: None,
            connections: Arc::default(),
        }
    }

    /// The same context with the run's TLS target and declared limits (SLIM-CONN-*).
    pub fn with_connections(mut self, setup: Arc<ConnectionSetup>) -> Self {
        self.connections = setup;
        self
    }

    /// The run's TLS target and declared limits (SLIM-CONN-*).
    pub fn connections(&self) -> &ConnectionSetup {
        &self.connections
    }

    /// The same context with the run's revocation setup (SLIM-REV-001..006).
    pub fn with_revocation(mut self, setup: Option<Arc<RevocationSetup>>) -> Self {
        self.revocation = setup;
        self
    }

    /// The run's revocation setup, if any (SLIM-REV-001..006).
    pub fn revocation(&self) -> Option<&RevocationSetup> {
        self.revocation.as_deref()
    }

    /// A name unique to this case: `<case org>/conformance/<svc>/<id>` (`id` None = wildcard).
    pub fn name(&self, svc: &str, id: Option<u128>) -> SlimName {
        let name = SlimName::new(&self.org, "conformance", svc);
        match id {
            Some(id) => name.with_id(id),
            None => name,
        }
    }

    /// The first name component of this case's names.
    pub fn org(&self) -> &str {
        &self.org
    }

    /// Opens and negotiates a link labelled `label`.
    pub async fn link(&self, label: &str) -> Result<Link, Failure> {
        Link::connect(&self.target, label, &self.log).await
    }

    /// Opens a stream without negotiating.
    pub async fn raw_link(&self, label: &str) -> Result<Link, Failure> {
        Link::open(&self.target, label, &self.log).await
    }

    /// Records a secondary finding against `requirement`.
    pub fn finding(
        &self,
        requirement: &str,
        expected: impl Into<String>,
        observed: impl Into<String>,
    ) {
        if let Ok(mut f) = self.findings.lock() {
            f.push(Finding {
                requirement: requirement.to_string(),
                expected: expected.into(),
                observed: observed.into(),
            });
        }
    }

    /// Records a note for the report.
    pub fn note(&self, text: impl Into<String>) {
        if let Ok(mut n) = self.notes.lock() {
            n.push(text.into());
        }
    }

    /// Records what the target chose where its requirement leaves a choice (a MAY): unless the
    /// case fails, its verdict is INFO, which is reported apart and never counted as passed.
    pub fn observe(&self, text: impl Into<String>) {
        if let Ok(mut o) = self.observation.lock() {
            *o = Some(text.into());
        }
    }

    /// The observation, if the case made one.
    pub fn observation(&self) -> Option<String> {
        self.observation.lock().ok().and_then(|o| o.clone())
    }

    /// The findings so far.
    pub fn findings(&self) -> Vec<Finding> {
        self.findings.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// The notes so far.
    pub fn notes(&self) -> Vec<String> {
        self.notes.lock().map(|n| n.clone()).unwrap_or_default()
    }
}

/// The future a case returns.
pub type CaseFuture = Pin<Box<dyn Future<Output = Result<(), Failure>> + Send>>;

/// One conformance case.
#[derive(Clone)]
pub struct Case {
    /// Stable id, `area/slug`.
    pub id: String,
    /// One line saying what is checked.
    pub title: String,
    /// Requirement ids; the first is primary and decides the verdict's severity.
    pub requirements: Vec<String>,
    /// Capabilities needed.
    pub needs: Vec<Need>,
    /// Upper bound on the case's run time (a hung target fails the case at this bound).
    pub timeout: Duration,
    /// The case body.
    pub run: Arc<dyn Fn(Ctx) -> CaseFuture + Send + Sync>,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case")
            .field("id", &self.id)
            .field("requirements", &self.requirements)
            .finish()
    }
}

impl Case {
    /// A case with the default 30 s bound and no special needs.
    pub fn new<F, Fut>(id: &str, title: &str, requirements: &[&str], run: F) -> Self
    where
        F: Fn(Ctx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Failure>> + Send + 'static,
    {
        Self {
            id: id.to_string(),
            title: title.to_string(),
            requirements: requirements.iter().map(|s| s.to_string()).collect(),
            needs: Vec::new(),
            timeout: Duration::from_secs(30),
            run: Arc::new(move |cx| Box::pin(run(cx))),
        }
    }

    /// Adds a needed capability.
    pub fn needs(mut self, need: Need) -> Self {
        self.needs.push(need);
        self
    }

    /// Sets the time bound.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// The area: the part of the id before the slash.
    pub fn area(&self) -> &str {
        self.id.split('/').next().unwrap_or(&self.id)
    }
}

/// Fails with a violation unless `cond` holds.
pub fn ensure(
    cond: bool,
    expected: impl Into<String>,
    observed: impl Into<String>,
) -> Result<(), Failure> {
    if cond {
        Ok(())
    } else {
        Err(Failure::violation(expected, observed))
    }
}
