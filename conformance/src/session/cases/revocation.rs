//! Revocation in the session layer (SLIM-REV-007, SLIM-REV-008, SLIM-MLS-004): the runner tells
//! an app, through the driver's RevokeIdentity, that an identity is revoked, and watches what the
//! app does. Each case names the fault it exists to catch:
//!
//! - `revoke/moderator-removes`: a moderator told of a revocation removes the member with an MLS
//!   commit within 1 s, the others move to the new epoch and agree on it, the removed member
//!   reads nothing more, and its rejoin is refused. Catches a moderator that ignores revocations
//!   (the member stays) and one that drops the member without a commit (the epoch stays, so the
//!   revoked member's keys still open everything).
//! - `revoke/revoked-cannot-decrypt`: the runner itself is the revoked member (openmls, its own
//!   group state). After the moderator's removal it still receives the group's data (it keeps
//!   its node subscription, as a revoked agent whose node was not told would), and that data must
//!   not open with the state it had. A positive control first: it opens data sent before.
//!   Catches removal without a commit, and a moderator that keeps encrypting in the old epoch.
//! - `revoke/member-refuses-revoked-sender`: a member told that another member is revoked does
//!   not deliver what that member sends any more (its moderator was not told, so the sender is
//!   still in the group). Catches members that check revocation only at the node.
//! - `revoke/member-refuses-revoked-commands`: a member told that its moderator is revoked
//!   applies no more of its commands: the moderator's next invite (a GROUP_UPDATE with an MLS
//!   commit) leaves that member in its epoch, without the newcomer. Catches members that check
//!   revocation on data only.
//! - `revoke/moderator-refuses-revoked-join`: a moderator told of a revocation refuses to invite
//!   that identity: the Invite fails, no welcome is sent. A positive control first: an identity
//!   not revoked is invited in the same group.
//!
//! An implementation that does not offer RevokeIdentity declares `revocation: false`: every
//! case here is UNSUPPORTED for it, never FAILED.

use std::time::Duration;

use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{MlsMessageBodyIn, MlsMessageIn, ProcessedMessageContent, ProtocolMessage};
use slim_proto::driver as d;
use slim_proto::driver::revoke_request::Target;
use slim_proto::pb::{self, message::MessageType, SessionMessageType as T};
use tokio::time::Instant;

use super::group::{all, apps};
use super::identity::Forger;
use super::mls::{listen, Invitee};
use super::{command_payload, spec, CaseFuture};
use crate::harness::Dir;
use crate::session::cell::{agree, group, invite, payloads, Cell};
use crate::session::driver::{base_name, App, SessionRef, GRACE, STEP};
use crate::verdict::Failure;

const M: &str = "moderator";
const P: &str = "participant";

/// SLIM-REV-007: how soon after it is told a moderator must have removed the member.
const REMOVAL_BOUND: Duration = Duration::from_secs(1);

/// How long the runner-played member reads its link per poll.
const POLL: Duration = Duration::from_millis(100);

fn mls() -> crate::session::driver::SessionSpec {
    spec(true, true, true)
}

/// The subject that revokes `app`, or UNSUPPORTED if its shim does not say it.
fn subject(app: &App) -> Result<String, Failure> {
    if app.subject.is_empty() {
        return Err(Failure::Unsupported(format!(
            "driver {} does not report the subject of its apps' identity (CreateAppResponse.subject), so the runner cannot name one to revoke",
            app.driver.name
        )));
    }
    Ok(app.subject.clone())
}

fn member_left(k: &d::event::Kind, session: &str, who: &str) -> bool {
    matches!(k, d::event::Kind::MemberLeft(l) if l.session_id == session && base_name(&l.member) == who)
}

/// What `app` delivered on `s` whose payload starts with `tag`, as text.
fn delivered(app: &App, s: &SessionRef, tag: &str) -> Vec<String> {
    app.received(s)
        .into_iter()
        .filter(|(_, p)| p.starts_with(tag.as_bytes()))
        .map(|(_, p)| String::from_utf8_lossy(&p).into_owned())
        .collect()
}

/// The MLS epoch `app` reports for `s`, if it reports one.
async fn epoch(app: &App, s: &SessionRef) -> Result<Option<u64>, Failure> {
    match app.state_auth(s).await {
        Ok(st) => Ok(Some(st.epoch)),
        Err(Failure::Unsupported(_)) => Ok(None),
        Err(f) => Err(f),
    }
}

/// Whether the moderator sent a GROUP_UPDATE(REMOVE) carrying an MLS commit after transcript
/// position `mark`.
fn removal_commit_sent(cx: &Cell, m: &App, mark: usize) -> bool {
    let me = m.name.to_string();
    cx.harness.transcript()[mark..].iter().any(|e| {
        e.dir == Some(Dir::ToNode)
            && e.source.as_deref() == Some(me.as_str())
            && e.session.is_some_and(|s| s.message_type == T::GroupUpdate as i32)
            && e.message().is_some_and(|msg| {
                matches!(command_payload(&msg), Some(pb::command_payload::CommandPayloadType::GroupUpdate(u))
                    if u.op == pb::GroupUpdateOp::Remove as i32 && u.mls.is_some())
            })
    })
}

/// SLIM-REV-007: the moderator removes a revoked member with a commit, within 1 s; the rest
/// agree on the new epoch; the member reads nothing more; its rejoin is refused (SLIM-REV-008).
pub fn moderator_removes(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let mut g = group(&cx, M, P, 2, mls()).await?;
        agree(&cx, "the invites", &all(&g), &apps(&g)).await?;
        let (victim, vs) =
            g.p.pop()
                .ok_or_else(|| Failure::Harness("no participant to revoke".into()))?;
        let who = base_name(&victim.name.to_string());
        let sub = subject(&victim)?;
        let before = epoch(&g.m, &g.sm).await?;
        let mark = cx.harness.transcript().len();
        cx.harness.mark(format!(
            "the runner tells {} that sub {sub:?} ({who}) is revoked",
            g.m.name
        ));
        let t0 = Instant::now();
        g.m.revoke(Target::Subject(sub.clone())).await?;
        let sid = g.sm.id.clone();
        let left =
            g.m.wait_event(STEP, |k| member_left(k, &sid, &who))
                .await
                .is_some();
        let took = t0.elapsed();
        if !left {
            return Err(Failure::violation_of(
                "SLIM-REV-007",
                format!(
                    "{} told that {who}'s identity is revoked removes it from the group (its application is told the member left)",
                    g.m.name
                ),
                format!("no member_left for {who} within {STEP:?}"),
            ));
        }
        cx.note(format!(
            "RevokeIdentity to member_left at the moderator: {} ms",
            took.as_millis()
        ));
        if took > REMOVAL_BOUND {
            return Err(Failure::violation_of(
                "SLIM-REV-007",
                format!("the moderator removes the revoked member within {REMOVAL_BOUND:?}"),
                format!("it took {} ms", took.as_millis()),
            ));
        }
        if !removal_commit_sent(&cx, &g.m, mark) {
            return Err(Failure::violation_of(
                "SLIM-REV-007",
                "the removal of the revoked member from a group of three is an MLS commit in a GROUP_UPDATE (REMOVE) to the group",
                "no GROUP_UPDATE (REMOVE) with an MLS commit was sent after the revocation",
            ));
        }
        agree(&cx, "the revocation", &all(&g), &apps(&g)).await?;
        let after = epoch(&g.m, &g.sm).await?;
        if let (Some(b), Some(a)) = (before, after) {
            if a <= b {
                return Err(Failure::violation_of(
                    "SLIM-MLS-004",
                    "the removal moves the group to a later MLS epoch",
                    format!("the moderator reports epoch {b} before and {a} after"),
                ));
            }
            cx.note(format!("MLS epoch {b} before the revocation, {a} after"));
        }
        // The removed member reads nothing sent afterwards; the remaining one is the barrier.
        let post = payloads("after-revocation", 3);
        g.m.publish(&g.sm, post.clone(), true, STEP).await?;
        let (p1, s1) =
            g.p.first()
                .ok_or_else(|| Failure::Harness("no remaining participant".into()))?;
        let got = p1.wait_received(s1, &post, STEP).await;
        if !post.iter().all(|w| got.iter().any(|(_, p)| p == w)) {
            return Err(Failure::violation_of(
                "SLIM-MLS-004",
                format!(
                    "{} (not revoked) receives the moderator's messages after the revocation",
                    p1.name
                ),
                format!(
                    "within {STEP:?} it received {} of {}",
                    got.len(),
                    post.len()
                ),
            ));
        }
        let leaked = delivered(&victim, &vs, "after-revocation");
        if !leaked.is_empty() {
            return Err(Failure::violation_of(
                "SLIM-MLS-004",
                format!(
                    "the revoked member {who} reads nothing sent to the group after its removal"
                ),
                format!("it received {leaked:?}"),
            ));
        }
        // Its rejoin is refused (SLIM-REV-008).
        g.m.set_route(&who).await?;
        cx.harness
            .mark(format!("{} invites the revoked {who} again", g.m.name));
        match g.m.invite(&g.sm, &who, STEP).await {
            Ok(()) => Err(Failure::violation_of(
                "SLIM-REV-008",
                format!(
                    "{} refuses to invite {who} again: its identity is revoked",
                    g.m.name
                ),
                "the Invite call succeeded",
            )),
            Err(Failure::Violation { observed, .. }) => {
                cx.note(format!("the rejoin was refused: {observed}"));
                Ok(())
            }
            Err(other) => Err(other),
        }
    })
}

/// SLIM-REV-008: a member told that another member is revoked refuses what it sends.
pub fn member_refuses_revoked_sender(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let g = group(&cx, M, P, 2, mls()).await?;
        let (told, ts) = &g.p[0];
        let (sender, ss) = &g.p[1];
        let sub = subject(sender)?;
        // The positive control: before the revocation, the message arrives.
        let pre = payloads("before-revocation", 1);
        sender.publish(ss, pre.clone(), false, STEP).await?;
        let got = told.wait_received(ts, &pre, STEP).await;
        if !got.iter().any(|(_, p)| *p == pre[0]) {
            return Err(Failure::violation_of(
                "SLIM-REL-005",
                format!(
                    "{} receives {}'s message before any revocation",
                    told.name, sender.name
                ),
                format!("within {STEP:?} it received {got:?}"),
            ));
        }
        cx.harness.mark(format!(
            "the runner tells {} (only) that sub {sub:?} ({}) is revoked",
            told.name, sender.name
        ));
        told.revoke(Target::Subject(sub)).await?;
        let post = payloads("after-revocation", 3);
        sender.publish(ss, post.clone(), false, STEP).await?;
        // The barrier: the moderator (not told) receives them, then its own marker reaches the
        // member told, which has by then had every chance to deliver the sender's.
        let at_m = g.m.wait_received(&g.sm, &post, STEP).await;
        if !post.iter().all(|w| at_m.iter().any(|(_, p)| p == w)) {
            return Err(Failure::Harness(format!(
                "the moderator (not told of the revocation) did not receive the sender's messages within {STEP:?}, so the case has no barrier"
            )));
        }
        let marker = payloads("marker", 1);
        g.m.publish(&g.sm, marker.clone(), false, STEP).await?;
        let got = told.wait_received(ts, &marker, STEP).await;
        if !got.iter().any(|(_, p)| *p == marker[0]) {
            return Err(Failure::Harness(format!(
                "{} did not receive the moderator's marker within {STEP:?}",
                told.name
            )));
        }
        let leaked = delivered(told, ts, "after-revocation");
        if !leaked.is_empty() {
            return Err(Failure::violation_of(
                "SLIM-REV-008",
                format!(
                    "{} refuses data signed by {}, whose identity it was told is revoked",
                    told.name, sender.name
                ),
                format!("it delivered {leaked:?}"),
            ));
        }
        Ok(())
    })
}

/// SLIM-REV-008: a member told that its moderator is revoked applies none of its commands.
pub fn member_refuses_revoked_commands(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let mut g = group(&cx, M, P, 1, mls()).await?;
        agree(&cx, "the invite", &all(&g), &apps(&g)).await?;
        let (told, ts) = g.p[0].clone();
        let sub = subject(&g.m)?;
        let before = epoch(&told, &ts).await?;
        cx.harness.mark(format!(
            "the runner tells {} that its moderator's sub {sub:?} is revoked",
            told.name
        ));
        told.revoke(Target::Subject(sub)).await?;
        let newcomer = cx.app(P, "newcomer").await?;
        let nb = base_name(&newcomer.name.to_string());
        let mark = cx.harness.transcript().len();
        // The moderator (not told) invites; whether its Invite succeeds without the told
        // member's acknowledgement is its own affair. The barrier is the newcomer's session.
        let outcome = invite(&cx, &mut g, newcomer.clone()).await;
        cx.note(format!(
            "the moderator's Invite of {nb}: {}",
            match &outcome {
                Ok(()) => "succeeded".to_string(),
                Err(f) => format!("failed: {}", f.texts().1),
            }
        ));
        let me = g.m.name.to_string();
        let commit_sent = cx.harness.transcript()[mark..].iter().any(|e| {
            e.dir == Some(Dir::ToNode)
                && e.source.as_deref() == Some(me.as_str())
                && e.session
                    .is_some_and(|s| s.message_type == T::GroupUpdate as i32)
        });
        if !commit_sent {
            return Err(Failure::Harness(
                "the moderator sent no GROUP_UPDATE for the invite, so there was no command to refuse".into(),
            ));
        }
        let after = epoch(&told, &ts).await?;
        let members = told.members(&ts).await.unwrap_or_default();
        let applied = match (before, after) {
            (Some(b), Some(a)) => a != b,
            _ => members.iter().any(|m| base_name(m) == nb),
        };
        if applied {
            return Err(Failure::violation_of(
                "SLIM-REV-008",
                format!(
                    "{} applies no command signed by its moderator once told the moderator's identity is revoked",
                    told.name
                ),
                format!(
                    "it applied the moderator's GROUP_UPDATE: epoch {before:?} → {after:?}, members {members:?}"
                ),
            ));
        }
        Ok(())
    })
}

/// SLIM-REV-008: a moderator told of a revocation refuses to invite that identity.
pub fn moderator_refuses_revoked_join(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        // The positive control: one participant, not revoked, joins.
        let mut g = group(&cx, M, P, 1, mls()).await?;
        let victim = cx.app(P, "revoked").await?;
        let who = base_name(&victim.name.to_string());
        let sub = subject(&victim)?;
        cx.harness.mark(format!(
            "the runner tells {} that sub {sub:?} ({who}) is revoked",
            g.m.name
        ));
        g.m.revoke(Target::Subject(sub)).await?;
        let mark = cx.harness.transcript().len();
        match invite(&cx, &mut g, victim.clone()).await {
            Ok(()) => {
                return Err(Failure::violation_of(
                    "SLIM-REV-008",
                    format!(
                        "{} refuses to invite {who}: its identity is revoked",
                        g.m.name
                    ),
                    format!("{who} joined the group"),
                ))
            }
            Err(Failure::Violation { observed, .. }) => {
                cx.note(format!("the Invite was refused: {observed}"));
            }
            Err(other) => return Err(other),
        }
        let me = g.m.name.to_string();
        let welcomes = cx.harness.transcript()[mark..]
            .iter()
            .filter(|e| {
                e.dir == Some(Dir::ToNode)
                    && e.source.as_deref() == Some(me.as_str())
                    && e.session
                        .is_some_and(|s| s.message_type == T::GroupWelcome as i32)
            })
            .count();
        if welcomes > 0 {
            return Err(Failure::violation_of(
                "SLIM-REV-008",
                format!("{} sends no GROUP_WELCOME to the revoked {who}", g.m.name),
                format!("it sent {welcomes}"),
            ));
        }
        agree(&cx, "the refused invite", &all(&g), &apps(&g)).await
    })
}

/// SLIM-MLS-004 / SLIM-REV-007: the runner is the revoked member; data sent after its removal
/// does not open with its state.
pub fn revoked_cannot_decrypt(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        // Fire-and-forget: the runner does not acknowledge data, and nothing waits for it to.
        // The other member is played by the implementation too.
        let g = group(&cx, M, M, 1, spec(true, true, false)).await?;
        let f = Forger::named(&cx, "revoked-runner").await?;
        let sub = f.sub.clone();
        let mut r = Invitee::member(f, 3)?;
        let who = base_name(&r.f.name.to_string());
        g.m.set_route(&who).await?;
        cx.harness
            .mark(format!("{} invites the runner {who}", g.m.name));
        let call = {
            let (m, sm, who) = (g.m.clone(), g.sm.clone(), who.clone());
            tokio::spawn(async move { m.invite(&sm, &who, STEP).await })
        };
        let deadline = Instant::now() + STEP + GRACE;
        while !call.is_finished() && Instant::now() < deadline {
            listen(&cx, &mut r, POLL).await?;
        }
        let answer = match call.is_finished() {
            true => call
                .await
                .map_err(|e| Failure::Harness(format!("the Invite task: {e}")))?,
            false => {
                call.abort();
                return Err(Failure::Harness(format!(
                    "the Invite of the runner did not answer within {:?}",
                    STEP + GRACE
                )));
            }
        };
        answer.map_err(|f| f.context("inviting the runner as a member"))?;
        if r.group.is_none() {
            return Err(Failure::violation_of(
                "SLIM-SESS-006",
                "the runner, invited, joins from the GROUP_WELCOME",
                r.seen
                    .welcome_problem
                    .clone()
                    .unwrap_or_else(|| "no GROUP_WELCOME reached it".into()),
            ));
        }
        // The positive control: data sent before the revocation opens.
        let pre = b"before-revocation".to_vec();
        g.m.publish(&g.sm, vec![pre.clone()], false, STEP).await?;
        let opened = read_data(&cx, &mut r, STEP, 1).await?;
        match opened.first() {
            Some(Ok(p)) if *p == pre => {}
            Some(Ok(p)) => {
                return Err(Failure::Harness(format!(
                    "the runner opened {:?}, not the moderator's {:?}",
                    String::from_utf8_lossy(p),
                    String::from_utf8_lossy(&pre)
                )))
            }
            Some(Err(e)) => {
                return Err(Failure::violation_of(
                    "SLIM-MLS-003",
                    "a member opens the group's data with its group state (the control before the revocation)",
                    format!("the runner could not: {e}"),
                ))
            }
            None => {
                return Err(Failure::violation(
                    "the moderator's data reaches the runner, a member, on the group's data channel",
                    format!("nothing within {STEP:?}"),
                ))
            }
        }
        cx.harness.mark(format!(
            "the runner tells {} that sub {sub:?} (the runner) is revoked",
            g.m.name
        ));
        let sid = g.sm.id.clone();
        let watch = {
            let (m, who) = (g.m.clone(), who.clone());
            tokio::spawn(async move { m.wait_event(STEP, |k| member_left(k, &sid, &who)).await })
        };
        g.m.revoke(Target::Subject(sub)).await?;
        let deadline = Instant::now() + STEP;
        while !watch.is_finished() && Instant::now() < deadline {
            listen(&cx, &mut r, POLL).await?;
        }
        let left = match watch.is_finished() {
            true => watch
                .await
                .map_err(|e| Failure::Harness(format!("the watch task: {e}")))?
                .is_some(),
            false => {
                watch.abort();
                false
            }
        };
        if !left {
            return Err(Failure::violation_of(
                "SLIM-REV-007",
                format!(
                    "{} told that the runner's identity is revoked removes it from the group",
                    g.m.name
                ),
                format!("no member_left for {who} within {STEP:?}"),
            ));
        }
        // Data after the removal: the remaining member gets it (the barrier), the runner's state
        // must not open what reaches it.
        let post = payloads("after-revocation", 3);
        g.m.publish(&g.sm, post.clone(), false, STEP).await?;
        let (a, sa) = &g.p[0];
        let got = a.wait_received(sa, &post, STEP).await;
        if !post.iter().all(|w| got.iter().any(|(_, p)| p == w)) {
            return Err(Failure::violation_of(
                "SLIM-MLS-004",
                format!(
                    "{} (not revoked) receives the moderator's data after the removal",
                    a.name
                ),
                format!(
                    "within {STEP:?} it received {} of {}",
                    got.len(),
                    post.len()
                ),
            ));
        }
        let opened = read_data(&cx, &mut r, STEP, post.len()).await?;
        let captured = opened.len();
        let readable: Vec<String> = opened
            .iter()
            .filter_map(|o| o.as_ref().ok())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        if !readable.is_empty() {
            return Err(Failure::violation_of(
                "SLIM-MLS-004",
                "data sent after a member's removal cannot be decrypted with that member's group state",
                format!("the runner, removed, opened {readable:?}"),
            ));
        }
        if captured == 0 {
            return Err(Failure::Harness(format!(
                "no data after the removal reached the runner's link within {STEP:?}: nothing to try to open"
            )));
        }
        let why: Vec<String> = opened
            .iter()
            .filter_map(|o| o.as_ref().err().cloned())
            .collect();
        cx.note(format!(
            "the runner captured {captured} post-removal ciphertext(s); its state opened none: {}",
            why.first().cloned().unwrap_or_default()
        ));
        Ok(())
    })
}

/// Reads the runner's link until `n` data messages were tried (or `within` passes): each one's
/// plaintext, or why the runner's group state could not open it.
async fn read_data(
    cx: &Cell,
    r: &mut Invitee,
    within: Duration,
    n: usize,
) -> Result<Vec<Result<Vec<u8>, String>>, Failure> {
    let deadline = Instant::now() + within;
    let start = r.data.len();
    while r.data.len() < start + n && Instant::now() < deadline {
        listen(cx, r, POLL).await?;
    }
    let msgs: Vec<pb::Message> = r.data[start..].to_vec();
    Ok(msgs.iter().map(|m| open(r, m)).collect())
}

/// Opens a MSG's MLS PrivateMessage with the runner's group state.
fn open(r: &mut Invitee, msg: &pb::Message) -> Result<Vec<u8>, String> {
    let Some(MessageType::Publish(p)) = &msg.message_type else {
        return Err("not a Publish".into());
    };
    let blob = match p.msg.as_ref().and_then(|c| c.content_type.as_ref()) {
        Some(pb::content::ContentType::AppPayload(a)) => a.blob.to_vec(),
        _ => return Err("no application payload".into()),
    };
    let group = r.group.as_mut().ok_or("the runner has no group state")?;
    let mut rest = blob.as_slice();
    let message = match MlsMessageIn::tls_deserialize(&mut rest)
        .map_err(|e| format!("not an MLSMessage: {e}"))?
        .extract()
    {
        MlsMessageBodyIn::PrivateMessage(m) => ProtocolMessage::from(m),
        MlsMessageBodyIn::PublicMessage(m) => ProtocolMessage::from(m),
        _ => return Err("an MLSMessage that is no Private/PublicMessage".into()),
    };
    let processed = group
        .process_message(&r.provider, message)
        .map_err(|e| e.to_string())?;
    match processed.into_content() {
        ProcessedMessageContent::ApplicationMessage(app) => Ok(app.into_bytes()),
        _ => Err("a handshake message, not data".into()),
    }
}
