//! One cell of the session matrix: a case run with a given implementation in each role, through
//! a fresh harness node, and the steps cases are written with (set up a point-to-point session or
//! a group, check delivery, check that members agree on the group state).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use slim_proto::driver as d;
use slim_proto::pb::SessionMessageType as T;

use super::driver::{base_name, canonical_name, App, Driver, SessionRef, SessionSpec, STEP};
use crate::harness::{Dir, FaultRule, HarnessNode, TranscriptEntry};
use crate::verdict::Failure;

/// The shared secret every app of a cell derives its tokens from (loopback tests only).
pub const SECRET: &str = "slim-conformance-session-profile-shared-secret-0123";

/// The reliability every reliable case asks for: short intervals keep lossy cases quick.
pub const RELIABLE: (Duration, u32) = (Duration::from_millis(200), 10);

/// The context a session case runs in.
#[derive(Clone)]
pub struct Cell {
    /// Which implementation plays which role (`sender` → `ref`).
    pub roles: Vec<(String, Driver)>,
    /// The node every app connects to: the harness in front of the real node.
    pub harness: Arc<HarnessNode>,
    /// The cell's seed: fault decisions and app randomness derive from it.
    pub seed: u64,
    /// The upstream node behind the harness (for runner-forged traffic that bypasses no check).
    pub node_url: String,
    org: String,
    apps: Arc<Mutex<Vec<App>>>,
    notes: Arc<Mutex<Vec<String>>>,
    oracle: Arc<Mutex<Vec<String>>>,
}

impl Cell {
    /// A cell; `org` must be unique to the run and cell.
    pub fn new(
        roles: Vec<(String, Driver)>,
        harness: Arc<HarnessNode>,
        seed: u64,
        node_url: String,
        org: String,
    ) -> Self {
        Self {
            roles,
            harness,
            seed,
            node_url,
            org,
            apps: Arc::default(),
            notes: Arc::default(),
            oracle: Arc::default(),
        }
    }

    /// The driver playing `role`.
    pub fn driver(&self, role: &str) -> Result<&Driver, Failure> {
        self.roles
            .iter()
            .find(|(r, _)| r == role)
            .map(|(_, d)| d)
            .ok_or_else(|| Failure::Harness(format!("the case has no role {role:?}")))
    }

    /// A name unique to this cell: `<org>/session/<label>`.
    pub fn name(&self, label: &str) -> String {
        format!("{}/session/{label}", self.org)
    }

    /// Creates an app called `label` on the implementation playing `role`.
    pub async fn app(&self, role: &str, label: &str) -> Result<App, Failure> {
        self.app_with_secret(role, label, SECRET).await
    }

    /// Like [`Cell::app`], with another shared secret (identity cases).
    pub async fn app_with_secret(
        &self,
        role: &str,
        label: &str,
        secret: &str,
    ) -> Result<App, Failure> {
        let id = d::create_app_request::Identity::SharedSecret(secret.into());
        self.app_with(role, label, id).await
    }

    /// Like [`Cell::app`], with any identity the driver protocol offers.
    pub async fn app_with(
        &self,
        role: &str,
        label: &str,
        identity: d::create_app_request::Identity,
    ) -> Result<App, Failure> {
        let driver = self.driver(role)?.clone();
        let mut h = Sha256::new();
        h.update(self.seed.to_le_bytes());
        h.update(label.as_bytes());
        let seed: [u8; 32] = h.finalize().into();
        let app = driver
            .create_app(&self.name(label), &self.harness.url(), identity, seed)
            .await?;
        if let Ok(mut apps) = self.apps.lock() {
            apps.push(app.clone());
        }
        self.harness.mark(format!(
            "{role} ({}) app {label} is {}",
            driver.name, app.name
        ));
        Ok(app)
    }

    /// Frees every app the cell created (best effort).
    pub async fn free_all(&self) {
        let apps = self.apps.lock().map(|a| a.clone()).unwrap_or_default();
        for a in apps {
            let _ = a.free().await;
        }
    }

    /// Records a note.
    pub fn note(&self, text: impl Into<String>) {
        if let Ok(mut n) = self.notes.lock() {
            n.push(text.into());
        }
    }

    /// Records which oracle judged the group state (StateAuth or what is observable).
    pub fn oracle(&self, text: impl Into<String>) {
        if let Ok(mut o) = self.oracle.lock() {
            o.push(text.into());
        }
    }

    /// Notes so far.
    pub fn notes(&self) -> Vec<String> {
        self.notes.lock().map(|n| n.clone()).unwrap_or_default()
    }

    /// The oracles used, in order.
    pub fn oracles(&self) -> Vec<String> {
        self.oracle.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// Installs faults and marks the transcript.
    pub fn faults(&self, what: &str, rules: Vec<FaultRule>) {
        self.harness.mark(format!("faults: {what}"));
        self.harness.set_faults(rules);
    }

    /// Removes the faults.
    pub fn no_faults(&self) {
        self.harness.mark("faults: none");
        self.harness.clear_faults();
    }

    /// Session messages in the transcript matching `dir` and `types` (empty = any).
    pub fn session_frames(&self, dir: Option<Dir>, types: &[T]) -> Vec<TranscriptEntry> {
        self.harness
            .transcript()
            .into_iter()
            .filter(|e| e.kind == "publish" && e.fault.as_deref() != Some("drop"))
            .filter(|e| dir.is_none() || e.dir == dir)
            .filter(|e| {
                e.session.is_some_and(|s| {
                    types.is_empty() || types.iter().any(|t| *t as i32 == s.message_type)
                })
            })
            .collect()
    }
}

/// A point-to-point session between two apps.
pub struct P2p {
    /// The initiator.
    pub a: App,
    /// The responder.
    pub b: App,
    /// The initiator's session.
    pub sa: SessionRef,
    /// The responder's session.
    pub sb: SessionRef,
}

/// Opens a point-to-point session from an app of role `ra` to an app of role `rb`.
pub async fn p2p(cx: &Cell, ra: &str, rb: &str, spec: SessionSpec) -> Result<P2p, Failure> {
    let a = cx.app(ra, "a").await?;
    let b = cx.app(rb, "b").await?;
    open_p2p(cx, a, b, spec).await
}

/// Opens a point-to-point session from `a` to `b` (both already created).
pub async fn open_p2p(cx: &Cell, a: App, b: App, spec: SessionSpec) -> Result<P2p, Failure> {
    let peer = base_name(&b.name.to_string());
    a.set_route(&peer).await?;
    cx.harness
        .mark(format!("{} opens a session to {peer}", a.name));
    let bb = b.clone();
    let waiting = tokio::spawn(async move { bb.await_session(STEP).await });
    let sa = a
        .create_session(&peer, spec, STEP)
        .await
        .map_err(|f| f.context("opening the point-to-point session"))?;
    let sb = match waiting.await {
        Ok(r) => r.map_err(|f| f.context("the responder awaiting the session"))?,
        Err(e) => return Err(Failure::Harness(format!("await task: {e}"))),
    };
    Ok(P2p { a, b, sa, sb })
}

/// A group: a moderator and its participants, each with its session.
pub struct Group {
    /// The moderator.
    pub m: App,
    /// The moderator's session.
    pub sm: SessionRef,
    /// Participants and their sessions.
    pub p: Vec<(App, SessionRef)>,
    /// The channel.
    pub channel: String,
}

/// Creates a group on a fresh channel moderated by an app of role `moderator`, and invites `n`
/// apps of role `participant`, one after the other.
pub async fn group(
    cx: &Cell,
    moderator: &str,
    participant: &str,
    n: usize,
    spec: SessionSpec,
) -> Result<Group, Failure> {
    let m = cx.app(moderator, "m").await?;
    let mut ps = Vec::new();
    for i in 0..n {
        ps.push(cx.app(participant, &format!("p{}", i + 1)).await?);
    }
    let channel = cx.name("channel");
    cx.harness
        .mark(format!("{} creates group {channel}", m.name));
    let sm = m
        .create_session(
            &channel,
            SessionSpec {
                group: true,
                ..spec
            },
            STEP,
        )
        .await
        .map_err(|f| f.context("creating the group"))?;
    let mut g = Group {
        m,
        sm,
        p: Vec::new(),
        channel,
    };
    for p in ps {
        invite(cx, &mut g, p).await?;
    }
    Ok(g)
}

/// Invites `p` into `g` and waits until it has the session.
pub async fn invite(cx: &Cell, g: &mut Group, p: App) -> Result<(), Failure> {
    let name = base_name(&p.name.to_string());
    g.m.set_route(&name).await?;
    cx.harness.mark(format!("{} invites {name}", g.m.name));
    let pp = p.clone();
    let waiting = tokio::spawn(async move { pp.await_session(STEP).await });
    g.m.invite(&g.sm, &name, STEP)
        .await
        .map_err(|f| f.context(&format!("inviting {name}")))?;
    let sp = match waiting.await {
        Ok(r) => r.map_err(|f| f.context(&format!("{name} awaiting the group session")))?,
        Err(e) => return Err(Failure::Harness(format!("await task: {e}"))),
    };
    g.p.push((p, sp));
    Ok(())
}

/// Payloads `"<tag>:<i>"` for `i` in `0..n`.
pub fn payloads(tag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("{tag}:{i}").into_bytes()).collect()
}

/// Checks that `got` (sender, payload) holds `sent` from `sender` exactly once each, in order
/// (SLIM-REL-005), ignoring messages from others.
pub fn exactly_once_in_order(
    requirement: &str,
    who: &str,
    sender: &App,
    sent: &[Vec<u8>],
    got: &[(String, Vec<u8>)],
) -> Result<(), Failure> {
    let from: Vec<&Vec<u8>> = got
        .iter()
        .filter(|(s, _)| same_app(s, &sender.name.to_string()))
        .map(|(_, p)| p)
        .collect();
    let mut counts: BTreeMap<&[u8], usize> = BTreeMap::new();
    for p in &from {
        *counts.entry(p.as_slice()).or_default() += 1;
    }
    let missing: Vec<String> = sent
        .iter()
        .filter(|p| !counts.contains_key(p.as_slice()))
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let dups: Vec<String> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(p, n)| format!("{:?} ×{n}", String::from_utf8_lossy(p)))
        .collect();
    let expected = format!(
        "{who} receives the {} messages of {} exactly once, in order",
        sent.len(),
        sender.name
    );
    if !missing.is_empty() || !dups.is_empty() {
        return Err(Failure::violation_of(
            requirement,
            expected,
            format!(
                "{who} received {} messages from it; missing {} ({}), duplicated {}",
                from.len(),
                missing.len(),
                abbreviate(&missing),
                if dups.is_empty() {
                    "none".to_string()
                } else {
                    abbreviate(&dups)
                }
            ),
        ));
    }
    let in_sent_order: Vec<&Vec<u8>> = from.iter().copied().filter(|p| sent.contains(p)).collect();
    let sent_refs: Vec<&Vec<u8>> = sent.iter().collect();
    if in_sent_order != sent_refs {
        let first = in_sent_order
            .iter()
            .zip(&sent_refs)
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        return Err(Failure::violation_of(
            requirement,
            expected,
            format!(
                "out of order from position {first}: got {} where {} was sent",
                String::from_utf8_lossy(in_sent_order[first]),
                String::from_utf8_lossy(sent_refs[first])
            ),
        ));
    }
    Ok(())
}

/// At most the first 8 items, comma separated.
pub fn abbreviate(items: &[String]) -> String {
    let mut s = items.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > 8 {
        s.push_str(&format!(", … ({} more)", items.len() - 8));
    }
    s
}

/// Whether two name texts name the same app (same components; same id when both have one).
pub fn same_app(a: &str, b: &str) -> bool {
    let (a, b) = (canonical_name(a), canonical_name(b));
    if a == b {
        return true;
    }
    let (ab, bb) = (base_name(&a), base_name(&b));
    ab == bb && (a == ab || b == bb)
}

/// Checks every outcome is OK (the reliable sender was told every message arrived).
pub fn all_ok(requirement: &str, outcomes: &[d::PublishOutcome]) -> Result<(), Failure> {
    let bad: Vec<String> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| o.status != d::publish_outcome::Status::Ok as i32)
        .map(|(i, o)| format!("#{i} {}{}", status_name(o.status), reason(o)))
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(Failure::violation_of(
            requirement,
            format!(
                "each of the {} publishes is reported delivered (OK)",
                outcomes.len()
            ),
            format!("{} were not: {}", bad.len(), abbreviate(&bad)),
        ))
    }
}

fn reason(o: &d::PublishOutcome) -> String {
    if o.reason.is_empty() {
        String::new()
    } else {
        format!(" ({})", o.reason)
    }
}

/// The outcome status's name.
pub fn status_name(s: i32) -> &'static str {
    match d::publish_outcome::Status::try_from(s) {
        Ok(d::publish_outcome::Status::Ok) => "OK",
        Ok(d::publish_outcome::Status::Failed) => "FAILED",
        Ok(d::publish_outcome::Status::Unknown) => "UNKNOWN",
        _ => "UNSPECIFIED",
    }
}

/// Members of a session as the runner compares them (canonical, sorted).
fn canonical_members(members: &[String]) -> Vec<String> {
    let mut m: Vec<String> = members
        .iter()
        .map(|n| base_name(&canonical_name(n)))
        .collect();
    m.sort();
    m
}

/// Checks that every member's view of the group agrees after a transition (`label`).
///
/// - Where every member answers `StateAuth`, they must report the same epoch, epoch
///   authenticator and members (the MLS working group's interop oracle).
/// - Where some do not (UNIMPLEMENTED), agreement is judged from what is observable: each
///   member sends one message, every other member must decrypt it, and the MLS epoch carried in
///   the clear by those messages (read from the harness transcript) must be the same for all.
///
/// The oracle used is recorded on the cell. Also checks membership against `Members` (the SDK's
/// participants list) where implemented.
pub async fn agree(
    cx: &Cell,
    label: &str,
    members: &[(&App, &SessionRef)],
    expected_members: &[&App],
) -> Result<(), Failure> {
    let expected: Vec<String> = {
        let mut e: Vec<String> = expected_members
            .iter()
            .map(|a| base_name(&a.name.to_string()))
            .collect();
        e.sort();
        e
    };
    // Membership as each app lists it. A member may apply the transition a little after the
    // call that made it returned, so the lists are read until they agree or STEP passes.
    let deadline = tokio::time::Instant::now() + STEP;
    for (app, s) in members {
        loop {
            match app.members(s).await {
                Ok(m) => {
                    let got = canonical_members(&m);
                    if got == expected {
                        break;
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Err(Failure::violation_of(
                            "SLIM-SESS-006",
                            format!("after {label}, {} lists the members {expected:?}", app.name),
                            format!("it still lists {got:?} after {STEP:?}"),
                        ));
                    }
                }
                Err(Failure::Unsupported(_)) => break,
                Err(f) => {
                    return Err(f.context(&format!("{} listing members after {label}", app.name)))
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }
    let mut unsupported = Vec::new();
    loop {
        let mut states = Vec::new();
        unsupported.clear();
        for (app, s) in members {
            match app.state_auth(s).await {
                Ok(st) => states.push((app.name.to_string(), st)),
                Err(Failure::Unsupported(m)) => unsupported.push((app.name.to_string(), m)),
                Err(f) => return Err(f.context(&format!("{} StateAuth after {label}", app.name))),
            }
        }
        if !unsupported.is_empty() {
            break;
        }
        match disagreement(label, &states) {
            None => {
                cx.oracle(format!("{label}: StateAuth"));
                return Ok(());
            }
            Some(f) if tokio::time::Instant::now() >= deadline => {
                cx.oracle(format!("{label}: StateAuth"));
                return Err(f);
            }
            Some(_) => tokio::time::sleep(POLL).await,
        }
    }
    cx.oracle(format!(
        "{label}: observed (StateAuth unimplemented by {}): every member decrypts every other member's next message, and their MLS epochs on the wire agree",
        unsupported.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
    ));
    observed_agreement(cx, label, members).await
}

/// How often converging state is read again while waiting for it (bounded by [`STEP`]).
const POLL: Duration = Duration::from_millis(50);

/// The first difference between members' StateAuth answers, as a failure.
fn disagreement(label: &str, states: &[(String, d::StateAuthResponse)]) -> Option<Failure> {
    let (first_name, first) = states.first()?;
    for (name, st) in &states[1..] {
        if st.epoch != first.epoch || st.epoch_authenticator != first.epoch_authenticator {
            return Some(Failure::violation_of(
                "SLIM-MLS-004",
                format!(
                    "after {label} every member reports the same MLS epoch and epoch authenticator"
                ),
                format!(
                    "{first_name}: epoch {} authenticator {}; {name}: epoch {} authenticator {}",
                    first.epoch,
                    hex::encode(&first.epoch_authenticator),
                    st.epoch,
                    hex::encode(&st.epoch_authenticator)
                ),
            ));
        }
        let (a, b) = (
            canonical_members(&first.members),
            canonical_members(&st.members),
        );
        if a != b {
            return Some(Failure::violation_of(
                "SLIM-SESS-006",
                format!("after {label} every member's MLS group has the same members"),
                format!("{first_name}: {a:?}; {name}: {b:?}"),
            ));
        }
    }
    None
}

/// The observable oracle of [`agree`].
async fn observed_agreement(
    cx: &Cell,
    label: &str,
    members: &[(&App, &SessionRef)],
) -> Result<(), Failure> {
    let tag = format!("agree-{}", label.replace(' ', "-"));
    let before = cx.harness.transcript().len();
    for (i, (app, s)) in members.iter().enumerate() {
        let p = format!("{tag}:{i}").into_bytes();
        app.publish(s, vec![p], true, STEP)
            .await
            .map_err(|f| f.context(&format!("{} sending after {label}", app.name)))?;
    }
    for (i, (app, s)) in members.iter().enumerate() {
        let want: Vec<Vec<u8>> = (0..members.len())
            .filter(|j| *j != i)
            .map(|j| format!("{tag}:{j}").into_bytes())
            .collect();
        let (ok, _) = app
            .events
            .wait_until(STEP, |evs| {
                want.iter().all(|w| {
                    evs.iter().any(|r| {
                        matches!(&r.event, d::event::Kind::Message(m) if m.session_id == s.id && m.payload.as_ref() == w.as_slice())
                    })
                })
            })
            .await;
        if !ok {
            let got: Vec<String> = app
                .received(s)
                .into_iter()
                .filter(|(_, p)| p.starts_with(tag.as_bytes()))
                .map(|(_, p)| String::from_utf8_lossy(&p).into_owned())
                .collect();
            return Err(Failure::violation_of(
                "SLIM-MLS-004",
                format!(
                    "after {label}, {} decrypts every other member's next message",
                    app.name
                ),
                format!("within {STEP:?} it received only {got:?}"),
            ));
        }
    }
    let epochs: Vec<(String, u64)> = cx.harness.transcript()[before..]
        .iter()
        .filter(|e| e.dir == Some(Dir::ToNode))
        .filter(|e| e.session.is_some_and(|s| s.message_type == T::Msg as i32))
        .filter_map(|e| Some((e.source.clone()?, e.mls_epoch?)))
        .collect();
    if let Some((_, first)) = epochs.first() {
        if let Some((who, other)) = epochs.iter().find(|(_, e)| e != first) {
            return Err(Failure::violation_of(
                "SLIM-MLS-004",
                format!("after {label} every member encrypts in the same MLS epoch"),
                format!(
                    "{} sent in epoch {first}, {who} in epoch {other}",
                    epochs[0].0
                ),
            ));
        }
        cx.note(format!("{label}: every member sent in MLS epoch {first}"));
    }
    Ok(())
}

/// A fault rule on session messages of `types` (empty = all) from `dir`.
pub fn rule(
    dir: Option<Dir>,
    types: &[T],
    select: crate::harness::Select,
    fault: crate::harness::Fault,
) -> FaultRule {
    FaultRule {
        direction: dir,
        message_types: types.iter().map(|t| *t as i32).collect(),
        link_app: None,
        select,
        fault,
        max: None,
    }
}
