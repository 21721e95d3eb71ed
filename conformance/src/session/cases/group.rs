//! Group cases: create, invite, data, remove, leave, close, rejoin, state agreement after every
//! transition, lossy group data, duplicated and tampered control messages. Roles: `moderator`
//! and `participant` (both participants are played by the same implementation).

use slim_proto::driver as d;
use slim_proto::pb::{self, SessionMessageType as T};

use super::{command_payload, spec, CaseFuture};
use crate::harness::{Dir, Fault, Select};
use crate::session::cell::{
    agree, exactly_once_in_order, group, invite, payloads, rule, same_app, Cell, Group,
};
use crate::session::driver::{base_name, App, STEP};
use crate::verdict::Failure;

const M: &str = "moderator";
const P: &str = "participant";

fn mls() -> crate::session::driver::SessionSpec {
    spec(true, true, true)
}

/// Members and sessions of a group for [`agree`].
pub(super) fn all(g: &Group) -> Vec<(&App, &crate::session::driver::SessionRef)> {
    std::iter::once((&g.m, &g.sm))
        .chain(g.p.iter().map(|(a, s)| (a, s)))
        .collect()
}

/// The apps of a group, moderator first.
pub(super) fn apps(g: &Group) -> Vec<&App> {
    std::iter::once(&g.m)
        .chain(g.p.iter().map(|(a, _)| a))
        .collect()
}

/// Every member sends `n`; every member gets every other member's messages once, in order.
async fn all_to_all(g: &Group, tag: &str, n: usize) -> Result<(), Failure> {
    let members = all(g);
    for (i, (a, s)) in members.iter().enumerate() {
        a.publish(s, payloads(&format!("{tag}{i}"), n), true, STEP * 2)
            .await?;
    }
    for (i, (a, s)) in members.iter().enumerate() {
        let expect: Vec<Vec<u8>> = (0..members.len())
            .filter(|j| *j != i)
            .flat_map(|j| payloads(&format!("{tag}{j}"), n))
            .collect();
        let got = a.wait_received(s, &expect, STEP).await;
        for (j, (b, _)) in members.iter().enumerate() {
            if i != j {
                exactly_once_in_order(
                    "SLIM-REL-005",
                    &a.name.to_string(),
                    b,
                    &payloads(&format!("{tag}{j}"), n),
                    &got,
                )?;
            }
        }
    }
    Ok(())
}

/// SLIM-SESS-006: create, invite two; all agree after each invite.
pub fn invite_agree(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let mut g = group(&cx, M, P, 1, mls()).await?;
        agree(&cx, "the first invite", &all(&g), &apps(&g)).await?;
        let p2 = cx.app(P, "p2").await?;
        invite(&cx, &mut g, p2).await?;
        agree(&cx, "the second invite", &all(&g), &apps(&g)).await
    })
}

/// SLIM-REL-005 in a group: everyone gets everyone's messages once, in order.
pub fn data(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let g = group(&cx, M, P, 2, mls()).await?;
        all_to_all(&g, "data", 5).await
    })
}

/// SLIM-SESS-009 / -006: group data and commands on the channels the spec derives, fanout 256
/// for broadcast and 1 for unicast commands.
pub fn channels(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let g = group(&cx, M, P, 2, mls()).await?;
        g.m.publish(&g.sm, payloads("chan", 1), true, STEP).await?;
        let t = cx.session_frames(Some(Dir::ToNode), &[]);
        let m_name = g.m.name.to_string();
        let sub = t
            .iter()
            .find(|e| e.source.as_deref().is_some_and(|s| same_app(s, &m_name)))
            .and_then(|e| e.identity_sub.clone())
            .ok_or_else(|| {
                Failure::Harness("no message from the moderator carries a token subject".into())
            })?;
        let parts: Vec<&str> = g.channel.split('/').collect();
        let (data_id, ctrl_id) =
            slim_proto::identity::channel_ids(&sub, parts[0], parts[1], parts[2])
                .ok_or_else(|| Failure::Harness("channel ids do not derive".into()))?;
        for e in &t {
            let Some(h) = e.session else { continue };
            let dst_id = e
                .destination
                .as_deref()
                .and_then(|d| d.parse::<slim_proto::names::SlimName>().ok())
                .map(|n| n.id());
            let ty = T::try_from(h.message_type).unwrap_or(T::Unspecified);
            let (want_dst, want_fanout) = match ty {
                T::Msg if e.source.as_deref().is_some_and(|s| same_app(s, &m_name)) => {
                    (Some(data_id), 256)
                }
                T::GroupUpdate | T::GroupClose => (Some(ctrl_id), 256),
                T::DiscoveryRequest
                | T::DiscoveryReply
                | T::JoinRequest
                | T::JoinReply
                | T::GroupWelcome
                | T::LeaveRequest
                | T::LeaveReply => (None, 1),
                _ => continue,
            };
            if let Some(want) = want_dst {
                if dst_id != Some(want) {
                    return Err(Failure::violation_of(
                        "SLIM-SESS-009",
                        format!(
                            "{} goes to the {} channel id {} (XXH3-128 of \"{sub}/{}/…\")",
                            ty.as_str_name(),
                            if want == data_id { "data" } else { "control" },
                            slim_proto::names::id_text(want),
                            g.channel
                        ),
                        format!("it went to {}", e.destination.clone().unwrap_or_default()),
                    ));
                }
            }
            if e.fanout != Some(want_fanout) {
                return Err(Failure::violation_of(
                    if want_fanout == 256 {
                        "SLIM-SESS-009"
                    } else {
                        "SLIM-SESS-006"
                    },
                    format!("{} uses fanout {want_fanout}", ty.as_str_name()),
                    format!("it uses fanout {:?}", e.fanout),
                ));
            }
        }
        Ok(())
    })
}

/// Removes the second participant.
async fn remove_p2(
    cx: &Cell,
    g: &mut Group,
) -> Result<(App, crate::session::driver::SessionRef), Failure> {
    let (p2, s2) =
        g.p.pop()
            .ok_or_else(|| Failure::Harness("no participant to remove".into()))?;
    let name = base_name(&p2.name.to_string());
    cx.harness.mark(format!("{} removes {name}", g.m.name));
    g.m.remove(&g.sm, &name, STEP)
        .await
        .map_err(|f| f.context(&format!("removing {name}")))?;
    Ok((p2, s2))
}

fn ended(k: &d::event::Kind, s: &str) -> bool {
    match k {
        d::event::Kind::Removed(r) => r.session_id == s,
        d::event::Kind::SessionClosed(c) => c.session_id == s,
        _ => false,
    }
}

/// SLIM-SESS-007: a removed member is told; the rest agree on the new state.
pub fn remove(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let mut g = group(&cx, M, P, 2, mls()).await?;
        let (p2, s2) = remove_p2(&cx, &mut g).await?;
        let sid = s2.id.clone();
        if p2.wait_event(STEP, |k| ended(k, &sid)).await.is_none() {
            return Err(Failure::violation(
                "the removed member's application is told its session ended",
                format!(
                    "{} reported neither removed nor session_closed within {STEP:?}",
                    p2.name
                ),
            ));
        }
        agree(&cx, "the removal", &all(&g), &apps(&g)).await
    })
}

/// SLIM-MLS-004: after its removal a member receives nothing sent to the group.
pub fn removed_receives_nothing(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let mut g = group(&cx, M, P, 2, mls()).await?;
        let (p2, s2) = remove_p2(&cx, &mut g).await?;
        let before = p2.received(&s2).len();
        let tag = "after-removal";
        all_to_all(&g, tag, 3).await?;
        // The others got every message (a barrier): anything the removed member would get has
        // been routed by now.
        let late: Vec<String> = p2.received(&s2)[before..]
            .iter()
            .map(|(_, p)| String::from_utf8_lossy(p).into_owned())
            .collect();
        let other: Vec<String> = p2
            .events
            .snapshot()
            .iter()
            .filter_map(|r| match &r.event {
                d::event::Kind::Message(m) if m.payload.starts_with(tag.as_bytes()) => {
                    Some(String::from_utf8_lossy(&m.payload).into_owned())
                }
                _ => None,
            })
            .collect();
        if !late.is_empty() || !other.is_empty() {
            return Err(Failure::violation(
                "the removed member reads nothing sent to the group after its removal",
                format!(
                    "it received {:?}",
                    late.iter().chain(&other).collect::<Vec<_>>()
                ),
            ));
        }
        // On the wire: the removal was a commit, and later data is in a later epoch.
        let t = cx.harness.transcript();
        let epochs: Vec<u64> = t
            .iter()
            .filter(|e| {
                e.dir == Some(Dir::ToNode)
                    && e.session.is_some_and(|s| s.message_type == T::Msg as i32)
            })
            .filter_map(|e| e.mls_epoch)
            .collect();
        cx.note(format!(
            "MLS epochs of data on the wire: {:?}",
            dedup(&epochs)
        ));
        Ok(())
    })
}

fn dedup(v: &[u64]) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::new();
    for x in v {
        if out.last() != Some(x) {
            out.push(*x);
        }
    }
    out
}

/// SLIM-SESS-007: with three members or more, a removal is an MLS commit to the control channel
/// before the LEAVE_REQUEST.
pub fn removal_commits(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let mut g = group(&cx, M, P, 2, mls()).await?;
        let mark = cx.harness.transcript().len();
        let (p2, _) = remove_p2(&cx, &mut g).await?;
        let t = cx.harness.transcript();
        let after = &t[mark..];
        let update = after.iter().find(|e| {
            e.dir == Some(Dir::ToNode)
                && e.session.is_some_and(|s| s.message_type == T::GroupUpdate as i32)
                && e.message().is_some_and(|m| matches!(command_payload(&m), Some(pb::command_payload::CommandPayloadType::GroupUpdate(u)) if u.op == pb::GroupUpdateOp::Remove as i32 && u.mls.is_some()))
        });
        let leave = after.iter().find(|e| {
            e.dir == Some(Dir::ToNode)
                && e.session
                    .is_some_and(|s| s.message_type == T::LeaveRequest as i32)
        });
        match (update, leave) {
            (Some(u), Some(l)) if u.seq < l.seq => Ok(()),
            (Some(_), Some(_)) => Err(Failure::violation(
                "the GROUP_UPDATE (REMOVE, with the MLS commit) precedes the LEAVE_REQUEST",
                "the LEAVE_REQUEST went first",
            )),
            (None, _) => Err(Failure::violation(
                format!("removing {} from a group of three sends a GROUP_UPDATE (REMOVE) with an MLS commit to the control channel", p2.name),
                "no such GROUP_UPDATE was sent",
            )),
            (Some(_), None) => Err(Failure::violation("the removed member gets a LEAVE_REQUEST", "none was sent")),
        }
    })
}

/// SLIM-SESS-007: a participant leaves; the moderator is told and the rest agree.
pub fn leave(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let mut g = group(&cx, M, P, 2, mls()).await?;
        let (p2, s2) =
            g.p.pop()
                .ok_or_else(|| Failure::Harness("no participant".into()))?;
        p2.leave(&s2, STEP).await?;
        let who = p2.name.to_string();
        let left =
            g.m.wait_event(
                STEP,
                |k| matches!(k, d::event::Kind::MemberLeft(l) if same_app(&l.member, &who)),
            )
            .await;
        if left.is_none() {
            return Err(Failure::violation(
                "the moderator is told that a member left",
                format!("no member_left for {who} within {STEP:?}"),
            ));
        }
        agree(&cx, "the leave", &all(&g), &apps(&g)).await
    })
}

/// SLIM-SESS-011: the moderator closes the group; every participant is told.
pub fn close(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let g = group(&cx, M, P, 2, mls()).await?;
        g.m.close(&g.sm, STEP).await?;
        for (p, s) in &g.p {
            let sid = s.id.clone();
            if p.wait_event(STEP, |k| ended(k, &sid)).await.is_none() {
                return Err(Failure::violation(
                    "every participant is told the group closed",
                    format!("{} was not told within {STEP:?}", p.name),
                ));
            }
        }
        Ok(())
    })
}

/// SLIM-SESS-006 / -007: a removed member is invited again and takes part as before.
pub fn rejoin(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let mut g = group(&cx, M, P, 2, mls()).await?;
        let (p2, s2) = remove_p2(&cx, &mut g).await?;
        let sid = s2.id.clone();
        p2.wait_event(STEP, |k| ended(k, &sid)).await;
        invite(&cx, &mut g, p2).await?;
        agree(&cx, "the rejoin", &all(&g), &apps(&g)).await?;
        all_to_all(&g, "rejoined", 2).await
    })
}

/// SLIM-MLS-004: the MLS epoch advances with every commit (invite, invite, remove).
pub fn epoch_advances(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let mut g = group(&cx, M, P, 1, mls()).await?;
        let e1 = g.m.state_auth(&g.sm).await?.epoch;
        let p2 = cx.app(P, "p2").await?;
        invite(&cx, &mut g, p2).await?;
        let e2 = g.m.state_auth(&g.sm).await?.epoch;
        remove_p2(&cx, &mut g).await?;
        let e3 = g.m.state_auth(&g.sm).await?.epoch;
        if !(e1 < e2 && e2 < e3) {
            return Err(Failure::violation(
                "each commit (invite, invite, removal) moves the group to a new epoch",
                format!("the moderator reported epochs {e1}, {e2}, {e3}"),
            ));
        }
        agree(&cx, "the removal", &all(&g), &apps(&g)).await
    })
}

/// SLIM-SESS-008: a duplicated GROUP_UPDATE is acknowledged and not applied twice.
pub fn duplicate_update(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let mut g = group(&cx, M, P, 1, mls()).await?;
        cx.faults(
            "duplicate every GROUP_UPDATE",
            vec![rule(
                Some(Dir::FromNode),
                &[T::GroupUpdate],
                Select::All,
                Fault::Duplicate,
            )],
        );
        let p2 = cx.app(P, "p2").await?;
        invite(&cx, &mut g, p2).await?;
        let p3 = cx.app(P, "p3").await?;
        invite(&cx, &mut g, p3).await?;
        cx.no_faults();
        agree(&cx, "duplicated updates", &all(&g), &apps(&g)).await
    })
}

/// SLIM-SESS-005: a participant's lost GROUP_ACK to an update is retransmitted for; the invite
/// completes and everybody agrees.
pub fn lost_update_ack(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let mut g = group(&cx, M, P, 1, mls()).await?;
        let p1 = g.p[0].0.name.to_string();
        let mut r = rule(
            Some(Dir::ToNode),
            &[T::GroupAck],
            Select::Index(vec![0]),
            Fault::Drop,
        );
        r.link_app = Some(base_name(&p1));
        cx.faults("drop the first participant's next GROUP_ACK", vec![r]);
        let p2 = cx.app(P, "p2").await?;
        invite(&cx, &mut g, p2).await?;
        cx.no_faults();
        agree(
            &cx,
            "an invite whose update ack was lost",
            &all(&g),
            &apps(&g),
        )
        .await
    })
}

/// SLIM-REL-003 / -005: group data under 20 % loss of every delivery to an app. Each member
/// first sends one message without faults: a group stream starts at the first id a receiver
/// gets from a sender (SLIM-REL-005), so only what follows is owed exactly once.
pub fn lossy_data(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let spec = crate::session::driver::SessionSpec {
            group: true,
            mls: true,
            reliable: Some(super::p2p::LOSSY),
        };
        let g = group(&cx, M, P, 2, spec).await?;
        all_to_all(&g, "warm-up", 1).await?;
        let data = [T::Msg, T::MsgAck, T::RtxRequest, T::RtxReply];
        cx.faults(
            "20% drop of group data, acks and RTX delivered to each app",
            vec![rule(
                Some(Dir::FromNode),
                &data,
                Select::Probability(0.2),
                Fault::Drop,
            )],
        );
        let r = all_to_all(&g, "lossy", 5).await;
        cx.no_faults();
        r
    })
}

/// SLIM-IDENT-003: a GROUP_UPDATE whose header signature was tampered with is not acted on;
/// the clean retransmission is.
pub fn tampered_update(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let mut g = group(&cx, M, P, 1, mls()).await?;
        let p1 = base_name(&g.p[0].0.name.to_string());
        let mut r = rule(
            Some(Dir::FromNode),
            &[T::GroupUpdate],
            Select::Index(vec![0]),
            Fault::CorruptHeaderSig,
        );
        r.link_app = Some(p1.clone());
        cx.faults(
            "corrupt the e2e_header_sig of the first GROUP_UPDATE to the first participant",
            vec![r],
        );
        let p2 = cx.app(P, "p2").await?;
        let invited = invite(&cx, &mut g, p2).await;
        cx.no_faults();
        let t = cx.harness.transcript();
        let Some(bad) = t
            .iter()
            .find(|e| e.fault.as_deref().is_some_and(|f| f.starts_with("corrupt")))
        else {
            return Err(Failure::Harness("no GROUP_UPDATE was tampered with".into()));
        };
        let mid = bad.session.map_or(0, |s| s.message_id);
        let clean = t.iter().find(|e| {
            e.seq > bad.seq
                && e.link == bad.link
                && e.dir == Some(Dir::FromNode)
                && e.session
                    .is_some_and(|s| s.message_type == T::GroupUpdate as i32 && s.message_id == mid)
        });
        let early = t.iter().find(|e| {
            e.seq > bad.seq
                && clean.is_none_or(|c| e.seq < c.seq)
                && e.dir == Some(Dir::ToNode)
                && e.source.as_deref().is_some_and(|s| same_app(s, &p1))
                && e.session
                    .is_some_and(|s| s.message_type == T::GroupAck as i32 && s.message_id == mid)
        });
        if early.is_some() {
            return Err(Failure::violation(
                "a participant does not acknowledge a GROUP_UPDATE whose header signature does not verify",
                format!("{p1} acknowledged the tampered copy before any clean retransmission"),
            ));
        }
        invited.map_err(|f| f.context("after the clean retransmission"))?;
        agree(
            &cx,
            "an invite whose update was tampered with",
            &all(&g),
            &apps(&g),
        )
        .await
    })
}
