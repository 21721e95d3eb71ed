//! The participant side of a session (WIRE.md §5.3, §5.5, §5.6): answer the join request with a
//! key package, join from the welcome, apply group updates strictly in commit order, leave when
//! asked or when the group closes (SLIM-SESS-003, SLIM-SESS-006 to SLIM-SESS-008).
//!
//! Each handler takes the session's [`Shared`] state and the participant's own
//! [`ParticipantState`]; only [`super::state`], which dispatches on the role, calls them.

use std::collections::BTreeMap;

use slim_proto::names::SlimName;
use slim_proto::pb::SessionMessageType as Mt;
use slim_proto::pb::{self, command_payload::CommandPayloadType as Cmd};

use super::control::Expect;
use super::identity::Peer;
use super::shared::{Command, EndpointIo, MlsState, Shared};
use super::wire::{self, Inbound};
use super::{Event, Reliability, SessionError};

/// State only a participant has.
pub struct ParticipantState {
    /// Who invited us (the only name allowed to change the group).
    pub moderator: SlimName,
    /// The last MLS commit applied (commit ids count from the welcome's).
    last_commit: u32,
    /// Group updates that arrived ahead of a missing one, by commit id.
    pending: BTreeMap<u32, pb::GroupUpdatePayload>,
    /// Our own LeaveRequest, while we wait for its reply.
    leaving: Option<u32>,
    /// Our RejoinRequest and the identity whose key package it carries, while we wait.
    rejoining: Option<(u32, crate::mls::MlsIdentity)>,
}

impl ParticipantState {
    /// A participant invited by `moderator`.
    pub fn new(moderator: SlimName) -> Self {
        Self {
            moderator,
            last_commit: 0,
            pending: BTreeMap::new(),
            leaving: None,
            rejoining: None,
        }
    }
}

/// An inbound command (already verified) for a session we were invited to.
pub(super) fn on_command(
    s: &mut Shared,
    ps: &mut ParticipantState,
    io: &mut EndpointIo<'_>,
    m: &Inbound<'_>,
    _peer: &Peer,
) -> Result<(), SessionError> {
    let from_moderator = m.source == ps.moderator;
    let moderator_only = matches!(
        m.kind,
        Mt::JoinRequest | Mt::GroupWelcome | Mt::GroupUpdate | Mt::LeaveRequest | Mt::GroupClose
    );
    if moderator_only && !from_moderator {
        return Err(SessionError::Protocol(format!(
            "{:?} from {}, who is not the moderator of session {}",
            m.kind, m.source, s.id
        )));
    }
    match (m.kind, m.command()) {
        (Mt::JoinRequest, Some(Cmd::JoinRequest(j))) => on_join_request(s, io, m, j),
        (Mt::GroupWelcome, Some(Cmd::GroupWelcome(w))) => on_welcome(s, ps, io, m, w),
        (Mt::GroupUpdate, Some(Cmd::GroupUpdate(u))) => on_group_update(s, ps, io, m, u),
        (Mt::LeaveRequest, _) => {
            s.reply(
                io,
                m,
                Mt::LeaveReply,
                Cmd::LeaveReply(pb::LeaveReplyPayload {}),
            )?;
            s.end(io);
            if s.is_group() {
                io.events.push_back(Event::Removed { session: s.id });
            } else {
                io.events.push_back(Event::SessionClosed {
                    session: s.id,
                    reason: format!("closed by {}", m.source),
                });
            }
            Ok(())
        }
        (Mt::GroupClose, _) => {
            s.reply(io, m, Mt::GroupAck, Cmd::GroupAck(pb::GroupAckPayload {}))?;
            s.end(io);
            io.events.push_back(Event::SessionClosed {
                session: s.id,
                reason: format!("closed by {}", m.source),
            });
            Ok(())
        }
        (Mt::UpdateParticipantState, _) => s.on_participant_state(io, m),
        (Mt::Heartbeat, Some(Cmd::Heartbeat(h))) => {
            // A moderator at a later epoch than ours: we missed commits for good (a long
            // partition outlasted their retransmissions); ask back in (WIRE.md §5.6).
            let behind = match &s.mls {
                MlsState::Group(g) => h.epoch != u64::MAX && h.epoch > g.epoch(),
                _ => false,
            };
            if from_moderator && behind && ps.rejoining.is_none() {
                rejoin(s, ps, io)?;
            }
            Ok(())
        }
        (Mt::RejoinReply, Some(Cmd::RejoinReply(r))) if from_moderator => {
            if let Some((id, identity)) = ps.rejoining.take() {
                if id != m.message_id {
                    ps.rejoining = Some((id, identity));
                    return Ok(());
                }
                s.commands.cancel(id);
                let group =
                    crate::mls::MlsGroup::join(identity, &r.mls_content, &io.roster_validator())
                        .map_err(|e| {
                            SessionError::Mls(format!("cannot rejoin from the welcome: {e}"))
                        })?;
                s.mls = MlsState::Group(Box::new(group));
                ps.last_commit = r.commit_id;
                ps.pending.retain(|c, _| *c > r.commit_id);
                io.events.push_back(Event::Error {
                    session: Some(s.id),
                    message: "rejoined the group after missing its commits".into(),
                });
            }
            // Also a retransmitted reply whose ack was lost: acknowledged again.
            s.reply(io, m, Mt::GroupAck, Cmd::GroupAck(pb::GroupAckPayload {}))
        }
        (Mt::LeaveReply | Mt::GroupAck | Mt::GroupNack, _) => {
            s.commands.on_reply(m.message_id, &m.source);
            Ok(())
        }
        // Heartbeats need no answer; discovery and join replies are not for participants.
        _ => Ok(()),
    }
}

fn on_join_request(
    s: &mut Shared,
    io: &mut EndpointIo<'_>,
    m: &Inbound<'_>,
    j: &pb::JoinRequestPayload,
) -> Result<(), SessionError> {
    // Retransmissions are answered from the reply cache; a new join request for a session
    // already set up would reset its reliability and MLS state: refused.
    if s.established || !matches!(s.mls, MlsState::Off) || s.data_dst.is_some() {
        return Err(SessionError::Protocol(format!(
            "second join request for session {}",
            s.id
        )));
    }
    // The join request sets the session up: reliability, MLS and, for groups, the channels.
    s.opts.reliable = j.timer_settings.map(|t| Reliability {
        interval: std::time::Duration::from_millis(u64::from(t.timeout.max(1))),
        max_retries: t.max_retries,
    });
    s.opts.mls = j.mls_settings.is_some();
    reset_reliability(s);
    if s.is_group() {
        let name = |n: &Option<pb::Name>, what: &str| {
            n.as_ref()
                .and_then(|n| SlimName::from_proto(n).ok())
                .ok_or_else(|| {
                    SessionError::Protocol(format!("group join request without a {what} name"))
                })
        };
        let channel = name(&j.channel, "channel")?;
        let control = name(&j.control, "control")?;
        // Subscribed now, before the welcome, so no group message finds us unsubscribed.
        io.out
            .push_back(super::Transmit::Subscribe(channel.clone()));
        io.out
            .push_back(super::Transmit::Subscribe(control.clone()));
        s.peer = SlimName::new(
            channel.components()[0],
            channel.components()[1],
            channel.components()[2],
        );
        s.data_dst = Some(channel);
        s.control_dst = Some(control);
    } else {
        s.peer = m.source.clone();
        s.data_dst = Some(m.source.clone());
    }
    let key_package = if s.opts.mls {
        let id = io.mls_identity()?;
        let kp = id
            .key_package(io.unix)
            .map_err(|e| SessionError::Mls(e.to_string()))?;
        s.mls = MlsState::Waiting(Box::new(id));
        Some(kp.into())
    } else {
        None
    };
    let me = s.env.source.clone();
    s.reply(
        io,
        m,
        Mt::JoinReply,
        Cmd::JoinReply(pb::JoinReplyPayload {
            key_package,
            participant: Some(wire::participant(&me)),
        }),
    )
}

fn on_welcome(
    s: &mut Shared,
    ps: &mut ParticipantState,
    io: &mut EndpointIo<'_>,
    m: &Inbound<'_>,
    w: &pb::GroupWelcomePayload,
) -> Result<(), SessionError> {
    if s.established {
        return Err(SessionError::Protocol(format!(
            "second welcome for session {}",
            s.id
        )));
    }
    if s.opts.mls {
        let mls = w.mls.as_ref().ok_or_else(|| {
            SessionError::Mls("welcome without MLS content in an MLS session".into())
        })?;
        let MlsState::Waiting(id) = &s.mls else {
            return Err(SessionError::Mls("welcome before our key package".into()));
        };
        // Our key package's identity stays in place until the join succeeds.
        let group =
            crate::mls::MlsGroup::join((**id).clone(), &mls.mls_content, &io.roster_validator())
                .map_err(|e| SessionError::Mls(format!("cannot join from the welcome: {e}")))?;
        s.mls = MlsState::Group(Box::new(group));
        ps.last_commit = mls.commit_id;
    }
    for p in &w.participants {
        if let Some(n) = wire::participant_name(p) {
            if n != s.env.source {
                s.add_member(n, None, io.now);
            }
        }
    }
    s.reply(io, m, Mt::GroupAck, Cmd::GroupAck(pb::GroupAckPayload {}))?;
    io.events.push_back(Event::SessionOpened {
        session: s.id,
        peer: s.peer.clone(),
        initiator: false,
        group: s.is_group(),
    });
    s.establish(io);
    Ok(())
}

fn on_group_update(
    s: &mut Shared,
    ps: &mut ParticipantState,
    io: &mut EndpointIo<'_>,
    m: &Inbound<'_>,
    u: &pb::GroupUpdatePayload,
) -> Result<(), SessionError> {
    match (&u.mls, s.opts.mls) {
        (Some(mls), true) => {
            if mls.commit_id > ps.last_commit {
                ps.pending.insert(mls.commit_id, u.clone());
            }
            // Apply every update whose predecessor is applied (commit order, WIRE.md §5.5).
            while let Some((next, update)) = ps
                .last_commit
                .checked_add(1)
                .and_then(|next| Some((next, ps.pending.remove(&next)?)))
            {
                apply_update(s, io, &update)?;
                ps.last_commit = next;
            }
        }
        (None, false) => apply_update(s, io, u)?,
        _ => {
            return Err(SessionError::Mls(
                "group update whose MLS content does not match the session's MLS setting".into(),
            ))
        }
    }
    s.reply(io, m, Mt::GroupAck, Cmd::GroupAck(pb::GroupAckPayload {}))
}

fn apply_update(
    s: &mut Shared,
    io: &mut EndpointIo<'_>,
    u: &pb::GroupUpdatePayload,
) -> Result<(), SessionError> {
    let who = u.participant.as_ref().and_then(wire::participant_name);
    let own_rejoin =
        u.op == pb::GroupUpdateOp::Rejoin as i32 && who.as_ref() == Some(&s.env.source);
    if let (false, MlsState::Group(g), Some(mls)) = (own_rejoin, &mut s.mls, &u.mls) {
        let outcome = g
            .process_commit(&mls.mls_content, &io.validator())
            .map_err(|e| SessionError::Mls(format!("commit {}: {e}", mls.commit_id)))?;
        if outcome.removed_self {
            s.mls = MlsState::Gone;
        }
    }
    let Some(who) = who else {
        return Ok(());
    };
    match pb::GroupUpdateOp::try_from(u.op) {
        Ok(pb::GroupUpdateOp::Add) | Ok(pb::GroupUpdateOp::Rejoin) => {
            if who != s.env.source {
                s.add_member(who.clone(), None, io.now);
                io.events.push_back(Event::MemberJoined {
                    session: s.id,
                    member: who,
                });
            }
        }
        Ok(pb::GroupUpdateOp::Remove) => {
            if who == s.env.source {
                // Our removal: the LeaveRequest that follows ends the session; nothing sent
                // to the group from now on can be decrypted by us.
                s.mls = match std::mem::replace(&mut s.mls, MlsState::Off) {
                    MlsState::Off => MlsState::Off,
                    _ => MlsState::Gone,
                };
            } else {
                s.remove_member(io, &who);
                io.events.push_back(Event::MemberLeft {
                    session: s.id,
                    member: who,
                });
            }
        }
        Err(_) => {
            return Err(SessionError::Protocol(format!(
                "unknown group update operation {}",
                u.op
            )))
        }
    }
    Ok(())
}

/// Recreates the reliable sender/receiver after the join request set the session's mode.
fn reset_reliability(s: &mut Shared) {
    let kind = s.kind;
    s.reliable = s
        .opts
        .reliable
        .map(|r| super::shared::new_reliable(kind, r));
}

/// Asks the moderator back into the group with a fresh key package (REJOIN_REQUEST).
fn rejoin(
    s: &mut Shared,
    ps: &mut ParticipantState,
    io: &mut EndpointIo<'_>,
) -> Result<(), SessionError> {
    let identity = io.mls_identity()?;
    let kp = identity
        .key_package(io.unix)
        .map_err(|e| SessionError::Mls(e.to_string()))?;
    let moderator = ps.moderator.clone();
    let id = io.random_id();
    ps.rejoining = Some((id, identity));
    let me = s.env.source.to_proto();
    s.send_command(
        io,
        Command {
            dst: &moderator,
            broadcast: false,
            kind: Mt::RejoinRequest,
            id,
            payload: Cmd::RejoinRequest(pb::RejoinRequestPayload {
                participant: Some(me),
                key_package: kp.into(),
            }),
            metadata: &[],
        },
        Expect::All([moderator.clone()].into()),
    )
}

/// Leaves the session on our own: LeaveRequest to the moderator.
pub(super) fn leave(
    s: &mut Shared,
    ps: &mut ParticipantState,
    io: &mut EndpointIo<'_>,
) -> Result<(), SessionError> {
    let moderator = ps.moderator.clone();
    let id = io.random_id();
    ps.leaving = Some(id);
    s.send_command(
        io,
        Command {
            dst: &moderator,
            broadcast: false,
            kind: Mt::LeaveRequest,
            id,
            payload: Cmd::LeaveRequest(pb::LeaveRequestPayload {}),
            metadata: &[(wire::LEAVING_SESSION, wire::TRUE_VAL)],
        },
        Expect::All([moderator.clone()].into()),
    )
}

/// Every expected reply to our command `id` arrived.
pub(super) fn on_complete(
    s: &mut Shared,
    ps: &mut ParticipantState,
    io: &mut EndpointIo<'_>,
    id: u32,
) {
    if ps.leaving == Some(id) {
        s.end(io);
        io.events.push_back(Event::SessionClosed {
            session: s.id,
            reason: "left".into(),
        });
    }
}

/// Retries exhausted for our command `id`.
pub(super) fn on_failed(
    s: &mut Shared,
    ps: &mut ParticipantState,
    io: &mut EndpointIo<'_>,
    id: u32,
) {
    if ps.rejoining.as_ref().is_some_and(|(r, _)| *r == id) {
        ps.rejoining = None;
        io.events.push_back(Event::Error {
            session: Some(s.id),
            message:
                "the moderator did not answer our rejoin request; will retry at its next heartbeat"
                    .into(),
        });
    }
    if ps.leaving == Some(id) {
        s.end(io);
        io.events.push_back(Event::SessionClosed {
            session: s.id,
            reason: "left (the moderator did not acknowledge)".into(),
        });
    }
}
