//! Point-to-point cases: establishment, fire-and-forget, reliable delivery under loss,
//! duplicates and reordering, retries exhausted, command retransmission and replay, tampered
//! signatures. Roles: `sender` (the initiator) and `receiver`.

use std::time::Duration;

use slim_proto::driver as d;
use slim_proto::pb::{self, SessionMessageType as T};

use super::{command_payload, mls_header, spec, CaseFuture};
use crate::harness::{Dir, Fault, Select};
use crate::session::cell::{
    abbreviate, all_ok, exactly_once_in_order, p2p, payloads, rule, status_name, Cell,
};
use crate::session::driver::{SessionSpec, STEP};
use crate::verdict::Failure;

const S: &str = "sender";
const R: &str = "receiver";

fn ff() -> SessionSpec {
    SessionSpec {
        group: false,
        mls: false,
        reliable: None,
    }
}

/// Sends `n` messages reliably and checks outcomes and delivery.
async fn reliable_run(cx: &Cell, mls: bool, n: usize, tag: &str) -> Result<(), Failure> {
    let s = p2p(cx, S, R, spec(false, mls, true)).await?;
    let sent = payloads(tag, n);
    let out = s.a.publish(&s.sa, sent.clone(), true, STEP * 2).await?;
    let got = s.b.wait_received(&s.sb, &sent, STEP).await;
    exactly_once_in_order("SLIM-REL-005", "the receiver", &s.a, &sent, &got)?;
    all_ok("SLIM-REL-006", &out)
}

/// SLIM-SESS-003 / -001: the establishment sequence, then one message.
pub fn open(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let s = p2p(&cx, S, R, ff()).await?;
        let sent = payloads("open", 1);
        s.a.publish(&s.sa, sent.clone(), false, STEP).await?;
        s.b.wait_received(&s.sb, &sent, STEP).await;
        let frames = cx.session_frames(Some(Dir::ToNode), &[]);
        let order = [
            T::DiscoveryRequest,
            T::DiscoveryReply,
            T::JoinRequest,
            T::JoinReply,
            T::GroupWelcome,
            T::GroupAck,
            T::Msg,
        ];
        let seen: Vec<i32> = frames
            .iter()
            .filter_map(|e| e.session.map(|s| s.message_type))
            .collect();
        let mut at = 0;
        for want in order {
            match seen[at..].iter().position(|t| *t == want as i32) {
                Some(p) => at += p + 1,
                None => {
                    return Err(Failure::violation(
                        "DISCOVERY_REQUEST, DISCOVERY_REPLY, JOIN_REQUEST, JOIN_REPLY, GROUP_WELCOME, GROUP_ACK, then data",
                        format!(
                            "no {} in that order; the apps sent {}",
                            want.as_str_name(),
                            abbreviate(&type_names(&seen))
                        ),
                    ))
                }
            }
        }
        // SLIM-SESS-001: one session id and the point-to-point type throughout.
        let ids: std::collections::BTreeSet<u32> = frames
            .iter()
            .filter_map(|e| e.session)
            .filter(|s| s.message_type != T::DiscoveryRequest as i32)
            .map(|s| s.session_id)
            .collect();
        if ids.len() != 1 {
            return Err(Failure::violation_of(
                "SLIM-SESS-001",
                "every message of the session carries the initiator's session id",
                format!("session ids seen: {ids:?}"),
            ));
        }
        if let Some(e) = frames.iter().find(|e| {
            e.session
                .is_some_and(|s| s.session_type != pb::SessionType::PointToPoint as i32)
        }) {
            return Err(Failure::violation_of(
                "SLIM-SESS-001",
                "a point-to-point session's messages carry session type POINT_TO_POINT",
                format!(
                    "{} carries type {}",
                    e.message_type_name().unwrap_or("?"),
                    e.session.map_or(0, |s| s.session_type)
                ),
            ));
        }
        let got = s.b.received(&s.sb);
        exactly_once_in_order("SLIM-SESS-003", "the receiver", &s.a, &sent, &got)
    })
}

fn type_names(types: &[i32]) -> Vec<String> {
    types
        .iter()
        .map(|t| {
            T::try_from(*t)
                .map(|t| {
                    t.as_str_name()
                        .trim_start_matches("SESSION_MESSAGE_TYPE_")
                        .to_string()
                })
                .unwrap_or_else(|_| t.to_string())
        })
        .collect()
}

/// SLIM-REL-001: a fire-and-forget session delivers, and nobody acknowledges.
pub fn fire_and_forget(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let s = p2p(&cx, S, R, ff()).await?;
        let sent = payloads("ff", 20);
        let out = s.a.publish(&s.sa, sent.clone(), false, STEP).await?;
        all_ok("SLIM-SESS-001", &out)?;
        let got = s.b.wait_received(&s.sb, &sent, STEP).await;
        let from_a = got.iter().filter(|(_, p)| sent.contains(p)).count();
        if from_a != 20 {
            return Err(Failure::violation(
                "all 20 messages arrive over a loss-free harness",
                format!("{from_a} arrived"),
            ));
        }
        let join = cx.session_frames(None, &[T::JoinRequest]);
        if let Some(j) = join.first().and_then(|e| e.message()) {
            if let Some(pb::command_payload::CommandPayloadType::JoinRequest(p)) =
                command_payload(&j)
            {
                if p.timer_settings.is_some() {
                    return Err(Failure::violation_of(
                        "SLIM-REL-001",
                        "the JOIN_REQUEST of a fire-and-forget session has no timer_settings",
                        format!("it carries {:?}", p.timer_settings),
                    ));
                }
            }
        }
        let acks = cx.session_frames(Some(Dir::ToNode), &[T::MsgAck]);
        if !acks.is_empty() {
            return Err(Failure::violation_of(
                "SLIM-REL-001",
                "no MSG_ACK in a session that is not reliable",
                format!("{} MSG_ACKs were sent", acks.len()),
            ));
        }
        Ok(())
    })
}

/// SLIM-REL-001/-002/-005: reliable delivery, ids 1..n, one empty MSG_ACK per message.
pub fn reliable(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        reliable_run(&cx, false, 30, "rel").await?;
        let msgs = cx.session_frames(Some(Dir::ToNode), &[T::Msg]);
        let ids: Vec<u32> = msgs
            .iter()
            .filter_map(|e| e.session.map(|s| s.message_id))
            .collect();
        let mut uniq = ids.clone();
        uniq.sort_unstable();
        uniq.dedup();
        if uniq != (1..=30).collect::<Vec<u32>>() {
            return Err(Failure::violation_of(
                "SLIM-REL-001",
                "reliable data message ids are the sender's sequence 1, 2, …, 30",
                format!(
                    "ids {}",
                    abbreviate(&uniq.iter().map(u32::to_string).collect::<Vec<_>>())
                ),
            ));
        }
        let join = cx.session_frames(None, &[T::JoinRequest]);
        let timers =
            join.first()
                .and_then(|e| e.message())
                .and_then(|m| match command_payload(&m) {
                    Some(pb::command_payload::CommandPayloadType::JoinRequest(p)) => {
                        p.timer_settings
                    }
                    _ => None,
                });
        if timers.is_none() {
            return Err(Failure::violation_of(
                "SLIM-REL-001",
                "the JOIN_REQUEST of a reliable session carries timer_settings",
                "it has none",
            ));
        }
        for ack in cx.session_frames(Some(Dir::ToNode), &[T::MsgAck]) {
            let id = ack.session.map_or(0, |s| s.message_id);
            if !uniq.contains(&id) {
                return Err(Failure::violation_of(
                    "SLIM-REL-002",
                    "a MSG_ACK carries the id of the message it acknowledges",
                    format!("a MSG_ACK carries id {id}, which no MSG had"),
                ));
            }
            let empty = ack.message().is_some_and(|m| {
                slim_proto::messages::app_payload(&m).is_none_or(<[u8]>::is_empty)
            });
            if !empty {
                return Err(Failure::violation_of(
                    "SLIM-REL-002",
                    "a MSG_ACK has an empty application payload",
                    format!(
                        "the MSG_ACK for id {id} carries {} payload bytes",
                        ack.payload_len
                    ),
                ));
            }
        }
        Ok(())
    })
}

/// SLIM-MLS-003 / -001: with MLS, data travels as MLS PrivateMessages.
pub fn reliable_mls(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        reliable_run(&cx, true, 20, "mls").await?;
        let msgs = cx.session_frames(Some(Dir::ToNode), &[T::Msg]);
        for e in &msgs {
            if e.mls_wire_format != Some(2) {
                return Err(Failure::violation_of(
                    "SLIM-MLS-003",
                    "the payload of every MSG in an MLS session is an MLS PrivateMessage (wire format 2)",
                    format!(
                        "MSG {} carries wire format {:?}",
                        e.session.map_or(0, |s| s.message_id),
                        e.mls_wire_format
                    ),
                ));
            }
            if e.bytes.windows(4).any(|w| w == b"mls:") {
                return Err(Failure::violation_of(
                    "SLIM-MLS-003",
                    "no plaintext on the wire",
                    "a MSG frame contains the plaintext prefix \"mls:\"",
                ));
            }
        }
        // SLIM-MLS-001: the key package in the JOIN_REPLY is for ciphersuite 0x0002.
        let reply = cx.session_frames(None, &[T::JoinReply]);
        let kp = reply
            .first()
            .and_then(|e| e.message())
            .and_then(|m| match command_payload(&m) {
                Some(pb::command_payload::CommandPayloadType::JoinReply(p)) => p.key_package,
                _ => None,
            });
        match kp.as_deref().and_then(mls_header) {
            Some((5, Some(2))) => Ok(()),
            other => Err(Failure::violation_of(
                "SLIM-MLS-001",
                "the JOIN_REPLY carries an MLS KeyPackage (wire format 5) for ciphersuite 2",
                format!("(wire format, ciphersuite) = {other:?}"),
            )),
        }
    })
}

/// Reliability for the lossy cases: enough retries that exhausting them is not a matter of luck
/// (at 30 % loss of each delivery and each acknowledgement, one attempt succeeds with p ≈ 0.49;
/// 41 failed attempts in a row have p ≈ 1e-12).
pub const LOSSY: (Duration, u32) = (Duration::from_millis(100), 40);

/// SLIM-REL-003/-004/-005: every delivery from the node to an app (data, acks, RTX) is lost
/// with probability `loss`, duplicated or reordered with half that.
fn lossy(cx: Cell, loss: f64) -> CaseFuture {
    Box::pin(async move {
        let spec = SessionSpec {
            group: false,
            mls: false,
            reliable: Some(LOSSY),
        };
        let s = p2p(&cx, S, R, spec).await?;
        let data = [T::Msg, T::MsgAck, T::RtxRequest, T::RtxReply];
        let to_app = Some(Dir::FromNode);
        cx.faults(
            &format!("{:.0}% drop, {:.0}% duplicate, {:.0}% reorder of data, acks and RTX delivered to each app", loss * 100.0, loss * 50.0, loss * 50.0),
            vec![
                rule(to_app, &data, Select::Probability(loss), Fault::Drop),
                rule(to_app, &data, Select::Probability(loss / 2.0), Fault::Duplicate),
                rule(to_app, &data, Select::Probability(loss / 2.0), Fault::Reorder),
            ],
        );
        let n = 30;
        let sent = payloads("loss", n);
        let out = s.a.publish(&s.sa, sent.clone(), true, STEP * 4).await?;
        let got = s.b.wait_received(&s.sb, &sent, STEP).await;
        cx.no_faults();
        let faults = cx
            .harness
            .transcript()
            .iter()
            .filter(|e| e.fault.is_some())
            .count();
        cx.note(format!("{faults} frames faulted"));
        exactly_once_in_order("SLIM-REL-005", "the receiver", &s.a, &sent, &got)?;
        all_ok("SLIM-REL-003", &out)
    })
}

/// 10 % loss.
pub fn loss_10(cx: Cell) -> CaseFuture {
    lossy(cx, 0.10)
}
/// 20 % loss.
pub fn loss_20(cx: Cell) -> CaseFuture {
    lossy(cx, 0.20)
}
/// 30 % loss.
pub fn loss_30(cx: Cell) -> CaseFuture {
    lossy(cx, 0.30)
}

/// SLIM-REL-005: every data message duplicated on its way to the receiver.
pub fn duplicates(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let s = p2p(&cx, S, R, spec(false, false, true)).await?;
        cx.faults(
            "duplicate every MSG to the receiver",
            vec![rule(
                Some(Dir::FromNode),
                &[T::Msg],
                Select::All,
                Fault::Duplicate,
            )],
        );
        let sent = payloads("dup", 10);
        let out = s.a.publish(&s.sa, sent.clone(), true, STEP).await?;
        // A barrier: one more message after the faults are gone; once it is in, every
        // duplicate before it has been processed.
        cx.no_faults();
        let last = payloads("dup-end", 1);
        s.a.publish(&s.sa, last.clone(), true, STEP).await?;
        let all: Vec<Vec<u8>> = sent.iter().chain(&last).cloned().collect();
        let got = s.b.wait_received(&s.sb, &all, STEP).await;
        exactly_once_in_order("SLIM-REL-005", "the receiver", &s.a, &all, &got)?;
        all_ok("SLIM-REL-006", &out)
    })
}

/// SLIM-REL-005: data messages reordered on their way to the receiver (sent without waiting,
/// so several are in flight).
pub fn reorder(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let s = p2p(&cx, S, R, spec(false, false, true)).await?;
        cx.faults(
            "reorder half of the MSGs to the receiver",
            vec![rule(
                Some(Dir::FromNode),
                &[T::Msg],
                Select::Probability(0.5),
                Fault::Reorder,
            )],
        );
        let sent = payloads("reorder", 20);
        s.a.publish(&s.sa, sent.clone(), false, STEP).await?;
        let got = s.b.wait_received(&s.sb, &sent, STEP).await;
        cx.no_faults();
        exactly_once_in_order("SLIM-REL-005", "the receiver", &s.a, &sent, &got)
    })
}

/// SLIM-REL-005/-003: the very first data message is lost.
pub fn lost_first(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let s = p2p(&cx, S, R, spec(false, false, true)).await?;
        cx.faults(
            "drop the first MSG",
            vec![rule(
                Some(Dir::ToNode),
                &[T::Msg],
                Select::Index(vec![0]),
                Fault::Drop,
            )],
        );
        let sent = payloads("first", 5);
        let out = s.a.publish(&s.sa, sent.clone(), true, STEP).await?;
        let got = s.b.wait_received(&s.sb, &sent, STEP).await;
        exactly_once_in_order("SLIM-REL-005", "the receiver", &s.a, &sent, &got)?;
        all_ok("SLIM-REL-003", &out)
    })
}

/// SLIM-REL-003: the last data message is lost on its way to the receiver: no later message
/// reveals the gap, so only the sender's retransmission timer can repair it.
pub fn lost_last(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let s = p2p(&cx, S, R, spec(false, false, true)).await?;
        cx.faults(
            "drop the third MSG to the receiver",
            vec![rule(
                Some(Dir::FromNode),
                &[T::Msg],
                Select::Index(vec![2]),
                Fault::Drop,
            )],
        );
        let sent = payloads("last", 3);
        let out = s.a.publish(&s.sa, sent.clone(), true, STEP).await?;
        let got = s.b.wait_received(&s.sb, &sent, STEP).await;
        cx.no_faults();
        exactly_once_in_order("SLIM-REL-003", "the receiver", &s.a, &sent, &got)?;
        all_ok("SLIM-REL-003", &out)
    })
}

/// SLIM-REL-004: a gap makes the receiver ask for the missing message.
pub fn gap_repair(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let s = p2p(&cx, S, R, spec(false, false, true)).await?;
        cx.faults(
            "drop the second MSG to the receiver",
            vec![rule(
                Some(Dir::FromNode),
                &[T::Msg],
                Select::Index(vec![1]),
                Fault::Drop,
            )],
        );
        let sent = payloads("gap", 6);
        s.a.publish(&s.sa, sent.clone(), false, STEP).await?;
        let got = s.b.wait_received(&s.sb, &sent, STEP).await;
        exactly_once_in_order("SLIM-REL-005", "the receiver", &s.a, &sent, &got)?;
        let t = cx.harness.transcript();
        let Some(dropped) = t.iter().find(|e| e.fault.as_deref() == Some("drop")) else {
            return Err(Failure::Harness("the drop fault never fired".into()));
        };
        let missing = dropped.session.map_or(0, |s| s.message_id);
        let later_first = t
            .iter()
            .filter(|e| e.seq > dropped.seq && e.dir == Some(Dir::FromNode))
            .find(|e| e.session.is_some_and(|s| s.message_type == T::Msg as i32));
        let gap = later_first.is_some_and(|e| e.session.is_some_and(|s| s.message_id > missing));
        if !gap {
            return Err(Failure::Unsupported(format!(
                "the sender retransmitted message {missing} before sending the next one, so the receiver never saw a gap (it does not pipeline)"
            )));
        }
        let asked = t.iter().any(|e| {
            e.dir == Some(Dir::ToNode)
                && e.session.is_some_and(|s| {
                    s.message_type == T::RtxRequest as i32 && s.message_id == missing
                })
        });
        if !asked {
            return Err(Failure::violation(
                format!("the receiver sends an RTX_REQUEST for the missing message {missing}"),
                "it sent none (the sender's retransmission repaired the gap alone)",
            ));
        }
        Ok(())
    })
}

/// SLIM-REL-006: retries exhausted; the sending app must be told (FAILED, never OK).
pub fn retries_exhausted(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let s = p2p(
            &cx,
            S,
            R,
            SessionSpec {
                group: false,
                mls: false,
                reliable: Some((Duration::from_millis(100), 3)),
            },
        )
        .await?;
        cx.faults(
            "drop every MSG to the receiver",
            vec![rule(
                Some(Dir::FromNode),
                &[T::Msg, T::RtxReply],
                Select::All,
                Fault::Drop,
            )],
        );
        let out = s.a.publish(&s.sa, payloads("lost", 1), true, STEP).await?;
        cx.no_faults();
        let o = &out[0];
        if o.status == d::publish_outcome::Status::Failed as i32 {
            return Ok(());
        }
        Err(Failure::violation(
            "after 3 retries with no acknowledgement the publish is reported FAILED, naming the silent receiver",
            format!(
                "it was reported {}{} although the receiver never got the message ({} transmissions dropped)",
                status_name(o.status),
                if o.reason.is_empty() { String::new() } else { format!(" ({})", o.reason) },
                cx.harness.transcript().iter().filter(|e| e.fault.as_deref() == Some("drop")).count()
            ),
        ))
    })
}

/// SLIM-REL-003: a lost acknowledgement makes the sender retransmit; the receiver acks again
/// and delivers once.
pub fn lost_ack(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let s = p2p(&cx, S, R, spec(false, false, true)).await?;
        cx.faults(
            "drop the first MSG_ACK",
            vec![rule(
                Some(Dir::ToNode),
                &[T::MsgAck],
                Select::Index(vec![0]),
                Fault::Drop,
            )],
        );
        let sent = payloads("ack", 3);
        let out = s.a.publish(&s.sa, sent.clone(), true, STEP).await?;
        let got = s.b.wait_received(&s.sb, &sent, STEP).await;
        exactly_once_in_order("SLIM-REL-005", "the receiver", &s.a, &sent, &got)?;
        all_ok("SLIM-REL-003", &out)?;
        let t = cx.harness.transcript();
        let acked = t
            .iter()
            .find(|e| e.fault.as_deref() == Some("drop"))
            .and_then(|e| e.session)
            .map_or(0, |s| s.message_id);
        let copies = t
            .iter()
            .filter(|e| {
                e.dir == Some(Dir::ToNode)
                    && e.session
                        .is_some_and(|s| s.message_type == T::Msg as i32 && s.message_id == acked)
            })
            .count();
        if copies < 2 {
            return Err(Failure::violation(
                format!("the sender retransmits message {acked}, whose MSG_ACK was lost"),
                format!("it sent it {copies} time(s)"),
            ));
        }
        Ok(())
    })
}

/// SLIM-SESS-001: several sessions between the same two apps stay apart.
pub fn many_sessions(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let a = cx.app(S, "a").await?;
        let b = cx.app(R, "b").await?;
        let mut sessions = Vec::new();
        for _ in 0..3 {
            let s =
                crate::session::cell::open_p2p(&cx, a.clone(), b.clone(), spec(false, false, true))
                    .await?;
            sessions.push(s);
        }
        for (i, s) in sessions.iter().enumerate() {
            s.a.publish(&s.sa, payloads(&format!("s{i}"), 5), true, STEP)
                .await?;
        }
        for (i, s) in sessions.iter().enumerate() {
            let got =
                s.b.wait_received(&s.sb, &payloads(&format!("s{i}"), 5), STEP)
                    .await;
            exactly_once_in_order(
                "SLIM-SESS-001",
                &format!("session {i} at the receiver"),
                &s.a,
                &payloads(&format!("s{i}"), 5),
                &got,
            )?;
            if got.len() != 5 {
                return Err(Failure::violation_of(
                    "SLIM-SESS-001",
                    format!("session {i} receives only its own 5 messages"),
                    format!("it received {}", got.len()),
                ));
            }
        }
        let ids: std::collections::BTreeSet<u32> = cx
            .session_frames(Some(Dir::ToNode), &[T::Msg])
            .iter()
            .filter_map(|e| e.session.map(|s| s.session_id))
            .collect();
        if ids.len() != 3 {
            return Err(Failure::violation_of(
                "SLIM-SESS-001",
                "three sessions carry three session ids",
                format!("data carried session ids {ids:?}"),
            ));
        }
        Ok(())
    })
}

/// SLIM-REL-003: the node restarts mid-session (every link dropped); the session goes on.
pub fn node_restart(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let s = p2p(&cx, S, R, spec(false, false, true)).await?;
        let before = payloads("before", 3);
        s.a.publish(&s.sa, before.clone(), true, STEP).await?;
        s.b.wait_received(&s.sb, &before, STEP).await;
        cx.harness.mark("node restart: every link dropped");
        let mark = cx.harness.transcript().last().map_or(0, |e| e.seq);
        cx.harness.reset_links().await;
        // Data is sent once both apps are back (each has subscribed its name again): a message
        // sent while an app has no link is a different question (what its SDK buffers).
        for app in [&s.a, &s.b] {
            let name = app.name.to_string();
            let back = cx
                .harness
                .wait_for(STEP, move |e| {
                    e.seq > mark
                        && e.kind == "subscribe"
                        && e.source
                            .as_deref()
                            .is_some_and(|src| crate::session::cell::same_app(src, &name))
                })
                .await;
            if back.is_none() {
                return Err(Failure::violation(
                    format!(
                        "{} reconnects after the node restart and subscribes its name again",
                        app.name
                    ),
                    format!("it did not within {STEP:?}"),
                ));
            }
        }

        let after = payloads("after", 3);
        let out = s.a.publish(&s.sa, after.clone(), true, STEP * 2).await?;
        let all: Vec<Vec<u8>> = before.iter().chain(&after).cloned().collect();
        let got = s.b.wait_received(&s.sb, &all, STEP * 2).await;
        exactly_once_in_order("SLIM-REL-005", "the receiver", &s.a, &all, &got)
            .map_err(|f| f.context("after the node restart"))?;
        all_ok("SLIM-REL-003", &out)
    })
}

/// SLIM-SESS-004: command ids are non-zero and replies carry the request's id.
pub fn command_ids(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let s = p2p(&cx, S, R, spec(false, true, true)).await?;
        s.a.publish(&s.sa, payloads("ids", 1), true, STEP).await?;
        let t = cx.session_frames(Some(Dir::ToNode), &[]);
        let pairs = [
            (T::DiscoveryRequest, T::DiscoveryReply),
            (T::JoinRequest, T::JoinReply),
            (T::GroupWelcome, T::GroupAck),
        ];
        for e in &t {
            let Some(h) = e.session else { continue };
            let cmd = T::try_from(h.message_type).is_ok_and(slim_proto::e2e::is_command);
            if cmd && h.message_id == 0 {
                return Err(Failure::violation(
                    "every command carries a non-zero message id",
                    format!(
                        "{} carries message id 0",
                        e.message_type_name().unwrap_or("?")
                    ),
                ));
            }
        }
        for (req, rep) in pairs {
            let reqs: Vec<u32> = t
                .iter()
                .filter_map(|e| e.session)
                .filter(|h| h.message_type == req as i32)
                .map(|h| h.message_id)
                .collect();
            for r in t
                .iter()
                .filter_map(|e| e.session)
                .filter(|h| h.message_type == rep as i32)
            {
                if !reqs.contains(&r.message_id) {
                    return Err(Failure::violation(
                        format!(
                            "a {} carries the message id of the {} it answers",
                            rep.as_str_name(),
                            req.as_str_name()
                        ),
                        format!("it carries {}; the requests had {reqs:?}", r.message_id),
                    ));
                }
            }
        }
        Ok(())
    })
}

/// SLIM-SESS-005: a session forms despite one command fault (`what`, `fault`), and the
/// receiver processes the command once: one session opened, data delivered once.
fn forms_once(cx: Cell, what: String, fault: crate::harness::FaultRule, mls: bool) -> CaseFuture {
    Box::pin(async move {
        let a = cx.app(S, "a").await?;
        let b = cx.app(R, "b").await?;
        cx.faults(&what, vec![fault]);
        let s = crate::session::cell::open_p2p(&cx, a, b, spec(false, mls, true)).await?;
        let sent = payloads("after-fault", 3);
        s.a.publish(&s.sa, sent.clone(), true, STEP).await?;
        let got = s.b.wait_received(&s.sb, &sent, STEP).await;
        cx.no_faults();
        exactly_once_in_order("SLIM-SESS-005", "the receiver", &s.a, &sent, &got)?;
        let opened =
            s.b.events
                .snapshot()
                .iter()
                .filter(|r| matches!(r.event, d::event::Kind::SessionOpened(_)))
                .count();
        if opened != 1 {
            return Err(Failure::violation(
                format!(
                    "after {what}, the receiver processes the command once: one session opened"
                ),
                format!("it reported {opened} sessions opened"),
            ));
        }
        Ok(())
    })
}

/// The first reply of type `lost` from the receiver is lost: the request is retransmitted and
/// must be answered again.
fn lost_reply(cx: Cell, lost: T, mls: bool) -> CaseFuture {
    let r = rule(
        Some(Dir::ToNode),
        &[lost],
        Select::Index(vec![0]),
        Fault::Drop,
    );
    forms_once(
        cx,
        format!("dropping the first {}", lost.as_str_name()),
        r,
        mls,
    )
}

/// Lost DISCOVERY_REPLY.
pub fn lost_discovery_reply(cx: Cell) -> CaseFuture {
    lost_reply(cx, T::DiscoveryReply, false)
}
/// Lost JOIN_REPLY with MLS.
pub fn lost_join_reply_mls(cx: Cell) -> CaseFuture {
    lost_reply(cx, T::JoinReply, true)
}
/// Lost GROUP_ACK to the welcome with MLS.
pub fn lost_welcome_ack_mls(cx: Cell) -> CaseFuture {
    lost_reply(cx, T::GroupAck, true)
}

/// SLIM-SESS-005: a replayed GROUP_WELCOME is answered but not processed twice.
pub fn replayed_welcome(cx: Cell) -> CaseFuture {
    let r = rule(
        Some(Dir::FromNode),
        &[T::GroupWelcome],
        Select::Index(vec![0]),
        Fault::Duplicate,
    );
    forms_once(cx, "duplicating the GROUP_WELCOME".into(), r, true)
}

/// A command of type `ty` to the receiver is tampered with once (`fault`); the receiver must
/// not answer the tampered copy (`answer`), and the session must still form from the
/// sender's clean retransmission.
fn tampered(cx: Cell, ty: T, answer: T, fault: Fault, mls: bool) -> CaseFuture {
    Box::pin(async move {
        let a = cx.app(S, "a").await?;
        let b = cx.app(R, "b").await?;
        cx.faults(
            &format!("{fault:?} on the first {}", ty.as_str_name()),
            vec![rule(
                Some(Dir::FromNode),
                &[ty],
                Select::Index(vec![0]),
                fault,
            )],
        );
        let established = crate::session::cell::open_p2p(&cx, a, b, spec(false, mls, true)).await;
        cx.no_faults();
        let t = cx.harness.transcript();
        let Some(bad) = t
            .iter()
            .find(|e| e.fault.as_deref().is_some_and(|f| f.starts_with("corrupt")))
        else {
            return Err(Failure::Harness(format!(
                "no {} was tampered with",
                ty.as_str_name()
            )));
        };
        if bad.fault.as_deref().is_some_and(|f| f.contains("no ")) {
            return Err(Failure::Unsupported(format!(
                "the sender's {} carries no signature to tamper with ({})",
                ty.as_str_name(),
                bad.fault.clone().unwrap_or_default()
            )));
        }
        let mid = bad.session.map_or(0, |s| s.message_id);
        let clean = t.iter().find(|e| {
            e.seq > bad.seq
                && e.dir == Some(Dir::FromNode)
                && e.fault.is_none()
                && e.session
                    .is_some_and(|s| s.message_type == ty as i32 && s.message_id == mid)
        });
        let early_answer = t.iter().find(|e| {
            e.seq > bad.seq
                && clean.is_none_or(|c| e.seq < c.seq)
                && e.dir == Some(Dir::ToNode)
                && e.session
                    .is_some_and(|s| s.message_type == answer as i32 && s.message_id == mid)
        });
        if let Some(ans) = early_answer {
            return Err(Failure::violation(
                format!(
                    "the receiver does not act on a {} whose signature does not verify",
                    ty.as_str_name()
                ),
                format!(
                    "it answered the tampered copy ({}) with {} before any clean retransmission",
                    bad.fault.clone().unwrap_or_default(),
                    ans.message_type_name().unwrap_or("?")
                ),
            ));
        }
        established
            .map(drop)
            .map_err(|f| f.context("after the clean retransmission"))
    })
}

/// SLIM-IDENT-003: tampered e2e_header_sig on the JOIN_REQUEST (MLS).
pub fn tampered_join_header_sig(cx: Cell) -> CaseFuture {
    tampered(
        cx,
        T::JoinRequest,
        T::JoinReply,
        Fault::CorruptHeaderSig,
        true,
    )
}
/// SLIM-IDENT-004: tampered slim-payload-sig on the JOIN_REQUEST (MLS).
pub fn tampered_join_payload_sig(cx: Cell) -> CaseFuture {
    tampered(
        cx,
        T::JoinRequest,
        T::JoinReply,
        Fault::CorruptPayloadSig,
        true,
    )
}
/// SLIM-IDENT-005: tampered e2e_header_sig on the DISCOVERY_REQUEST.
pub fn tampered_discovery(cx: Cell) -> CaseFuture {
    tampered(
        cx,
        T::DiscoveryRequest,
        T::DiscoveryReply,
        Fault::CorruptHeaderSig,
        false,
    )
}
/// SLIM-IDENT-003: tampered e2e_header_sig on the GROUP_WELCOME (MLS).
pub fn tampered_welcome(cx: Cell) -> CaseFuture {
    tampered(
        cx,
        T::GroupWelcome,
        T::GroupAck,
        Fault::CorruptHeaderSig,
        true,
    )
}

/// SLIM-REL-007: a reliable sender keeps several messages in flight. Acknowledgements reach
/// the sender 1 s late (a delay fault), so how many messages it sends before the first one
/// arrives depends on its window, not on how fast this machine is.
pub fn window(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let s = p2p(&cx, S, R, spec(false, false, true)).await?;
        let mut late = rule(
            Some(Dir::FromNode),
            &[T::MsgAck],
            Select::All,
            Fault::Delay(Duration::from_secs(1)),
        );
        late.link_app = Some(crate::session::driver::base_name(&s.a.name.to_string()));
        cx.faults("every MSG_ACK reaches the sender 1 s late", vec![late]);
        let sent = payloads("win", 20);
        s.a.publish(&s.sa, sent.clone(), false, STEP).await?;
        s.b.wait_received(&s.sb, &sent, STEP).await;
        cx.no_faults();
        let t = cx.harness.transcript();
        let first_ack = t.iter().find(|e| {
            e.dir == Some(Dir::FromNode)
                && e.session
                    .is_some_and(|s| s.message_type == T::MsgAck as i32)
        });
        let before = t
            .iter()
            .filter(|e| first_ack.is_none_or(|a| e.seq < a.seq))
            .filter(|e| {
                e.dir == Some(Dir::ToNode)
                    && e.session.is_some_and(|s| s.message_type == T::Msg as i32)
            })
            .count();
        if before < 2 {
            return Err(Failure::violation(
                "several data messages are in flight before the first acknowledgement returns",
                format!("{before} was sent in the second before the sender got the first MSG_ACK"),
            ));
        }
        cx.note(format!(
            "{before} messages in flight before the first MSG_ACK"
        ));
        Ok(())
    })
}

/// SLIM-SESS-002: every session message's source id is the one its token's subject derives.
pub fn name_bound(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let s = p2p(&cx, S, R, spec(false, true, true)).await?;
        s.a.publish(&s.sa, payloads("bound", 2), true, STEP).await?;
        for e in cx.session_frames(Some(Dir::ToNode), &[]) {
            let (Some(sub), Some(src)) = (&e.identity_sub, &e.source) else {
                continue;
            };
            let want = slim_proto::identity::app_id(sub);
            let id = src
                .parse::<slim_proto::names::SlimName>()
                .map_or(0, |n| n.id());
            if id != want {
                return Err(Failure::violation(
                    "the source name id of every session message is XXH3-128 of its token's subject",
                    format!(
                        "{} from {src} carries token subject {sub:?}, which derives id {}",
                        e.message_type_name().unwrap_or("?"),
                        slim_proto::names::id_text(want)
                    ),
                ));
            }
        }
        Ok(())
    })
}

/// SLIM-SESS-010: an established (reliable) session that goes quiet carries a HEARTBEAT from
/// each member to its peer, with the epoch 2^64-1 of a session without MLS. Waited for as an
/// event, bounded at 25 s: the interval in which the session was set up is not silent, so the
/// first heartbeat may come at the end of the second interval.
pub fn heartbeat(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let s = p2p(&cx, S, R, spec(false, false, true)).await?;
        cx.harness.mark("the session goes quiet");
        let bound = Duration::from_secs(25);
        let deadline = tokio::time::Instant::now() + bound;
        for (who, app) in [("the sender", &s.a), ("the receiver", &s.b)] {
            let name = app.name.to_string();
            let from = move |e: &crate::harness::TranscriptEntry| {
                e.dir == Some(Dir::ToNode)
                    && e.session
                        .is_some_and(|h| h.message_type == T::Heartbeat as i32)
                    && e.source
                        .as_deref()
                        .is_some_and(|src| crate::session::cell::same_app(src, &name))
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(hb) = cx.harness.wait_for(left, from).await else {
                return Err(Failure::violation(
                    format!("{who} sends a HEARTBEAT once a 10-second interval passed in silence"),
                    format!("none within {bound:?} of silence"),
                ));
            };
            let epoch = hb.message().and_then(|m| match command_payload(&m) {
                Some(pb::command_payload::CommandPayloadType::Heartbeat(h)) => Some(h.epoch),
                _ => None,
            });
            if epoch != Some(u64::MAX) {
                return Err(Failure::violation(
                    format!("{who}'s HEARTBEAT in a session without MLS carries epoch 2^64-1"),
                    format!("it carries {epoch:?}"),
                ));
            }
            let peer = if who == "the sender" { &s.b } else { &s.a };
            if !hb
                .destination
                .as_deref()
                .is_some_and(|d| crate::session::cell::same_app(d, &peer.name.to_string()))
            {
                return Err(Failure::violation(
                    format!("{who}'s HEARTBEAT goes to its peer {}", peer.name),
                    format!("it went to {:?}", hb.destination),
                ));
            }
        }
        Ok(())
    })
}
