//! The participant side of a session (WIRE.md §5.3, §5.5, §5.6): answer the join request with a
//! key package, join from the welcome, apply group updates strictly in commit order, leave when
//! asked or when the group closes (SLIM-SESS-003, SLIM-SESS-006 to SLIM-SESS-008).

use std::collections::BTreeMap;

use slim_proto::names::SlimName;
use slim_proto::pb::SessionMessageType as Mt;
use slim_proto::pb::{self, command_payload::CommandPayloadType as Cmd};

use super::control::Expect;
use super::identity::Peer;
use super::state::{Ctx, MlsState, Session};
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

impl Session {
    fn participant(&mut self) -> &mut ParticipantState {
        match &mut self.role {
            super::state::Role::Participant(p) => p,
            super::state::Role::Moderator(_) => unreachable!("participant handler on a moderator"),
        }
    }

    /// An inbound command (already verified) for a session we were invited to.
    pub fn participant_command(
        &mut self,
        cx: &mut Ctx<'_>,
        m: &Inbound<'_>,
        _peer: &Peer,
    ) -> Result<(), SessionError> {
        let from_moderator = m.source == self.participant().moderator;
        let moderator_only = matches!(
            m.kind,
            Mt::JoinRequest
                | Mt::GroupWelcome
                | Mt::GroupUpdate
                | Mt::LeaveRequest
                | Mt::GroupClose
        );
        if moderator_only && !from_moderator {
            return Err(SessionError::Protocol(format!(
                "{:?} from {}, who is not the moderator of session {}",
                m.kind, m.source, self.id
            )));
        }
        match (m.kind, m.command()) {
            (Mt::JoinRequest, Some(Cmd::JoinRequest(j))) => self.on_join_request(cx, m, j),
            (Mt::GroupWelcome, Some(Cmd::GroupWelcome(w))) => self.on_welcome(cx, m, w),
            (Mt::GroupUpdate, Some(Cmd::GroupUpdate(u))) => self.on_group_update(cx, m, u),
            (Mt::LeaveRequest, _) => {
                self.reply(
                    cx,
                    m,
                    Mt::LeaveReply,
                    Cmd::LeaveReply(pb::LeaveReplyPayload {}),
                )?;
                self.end(cx);
                if self.is_group() {
                    cx.events.push_back(Event::Removed { session: self.id });
                } else {
                    cx.events.push_back(Event::SessionClosed {
                        session: self.id,
                        reason: format!("closed by {}", m.source),
                    });
                }
                Ok(())
            }
            (Mt::GroupClose, _) => {
                self.reply(cx, m, Mt::GroupAck, Cmd::GroupAck(pb::GroupAckPayload {}))?;
                self.end(cx);
                cx.events.push_back(Event::SessionClosed {
                    session: self.id,
                    reason: format!("closed by {}", m.source),
                });
                Ok(())
            }
            (Mt::UpdateParticipantState, _) => self.on_participant_state(cx, m),
            (Mt::Heartbeat, Some(Cmd::Heartbeat(h))) => {
                // A moderator at a later epoch than ours: we missed commits for good (a long
                // partition outlasted their retransmissions); ask back in (WIRE.md §5.6).
                let behind = match &self.mls {
                    MlsState::Group(g) => h.epoch != u64::MAX && h.epoch > g.epoch(),
                    _ => false,
                };
                if from_moderator && behind && self.participant().rejoining.is_none() {
                    self.rejoin(cx)?;
                }
                Ok(())
            }
            (Mt::RejoinReply, Some(Cmd::RejoinReply(r))) if from_moderator => {
                if let Some((id, identity)) = self.participant().rejoining.take() {
                    if id != m.message_id {
                        self.participant().rejoining = Some((id, identity));
                        return Ok(());
                    }
                    self.commands.cancel(id);
                    let group = crate::mls::MlsGroup::join(
                        identity,
                        &r.mls_content,
                        &cx.roster_validator(),
                    )
                    .map_err(|e| {
                        SessionError::Mls(format!("cannot rejoin from the welcome: {e}"))
                    })?;
                    self.mls = MlsState::Group(Box::new(group));
                    let p = self.participant();
                    p.last_commit = r.commit_id;
                    p.pending.retain(|c, _| *c > r.commit_id);
                    cx.events.push_back(Event::Error {
                        session: Some(self.id),
                        message: "rejoined the group after missing its commits".into(),
                    });
                }
                // Also a retransmitted reply whose ack was lost: acknowledged again.
                self.reply(cx, m, Mt::GroupAck, Cmd::GroupAck(pb::GroupAckPayload {}))
            }
            (Mt::LeaveReply | Mt::GroupAck | Mt::GroupNack, _) => {
                self.commands.on_reply(m.message_id, &m.source);
                Ok(())
            }
            // Heartbeats need no answer; discovery and join replies are not for participants.
            _ => Ok(()),
        }
    }

    fn on_join_request(
        &mut self,
        cx: &mut Ctx<'_>,
        m: &Inbound<'_>,
        j: &pb::JoinRequestPayload,
    ) -> Result<(), SessionError> {
        // Retransmissions are answered from the reply cache; a new join request for a session
        // already set up would reset its reliability and MLS state: refused.
        if self.established || !matches!(self.mls, MlsState::Off) || self.data_dst.is_some() {
            return Err(SessionError::Protocol(format!(
                "second join request for session {}",
                self.id
            )));
        }
        // The join request sets the session up: reliability, MLS and, for groups, the channels.
        self.opts.reliable = j.timer_settings.map(|t| Reliability {
            interval: std::time::Duration::from_millis(u64::from(t.timeout.max(1))),
            max_retries: t.max_retries,
        });
        self.opts.mls = j.mls_settings.is_some();
        self.reset_reliability();
        if self.is_group() {
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
            cx.out
                .push_back(super::Transmit::Subscribe(channel.clone()));
            cx.out
                .push_back(super::Transmit::Subscribe(control.clone()));
            self.peer = SlimName::new(
                channel.components()[0],
                channel.components()[1],
                channel.components()[2],
            );
            self.data_dst = Some(channel);
            self.control_dst = Some(control);
        } else {
            self.peer = m.source.clone();
            self.data_dst = Some(m.source.clone());
        }
        let key_package = if self.opts.mls {
            let id = cx.mls_identity()?;
            let kp = id
                .key_package(cx.unix)
                .map_err(|e| SessionError::Mls(e.to_string()))?;
            self.mls = MlsState::Waiting(Box::new(id));
            Some(kp.into())
        } else {
            None
        };
        let me = self.env.source.clone();
        self.reply(
            cx,
            m,
            Mt::JoinReply,
            Cmd::JoinReply(pb::JoinReplyPayload {
                key_package,
                participant: Some(wire::participant(&me)),
            }),
        )
    }

    fn on_welcome(
        &mut self,
        cx: &mut Ctx<'_>,
        m: &Inbound<'_>,
        w: &pb::GroupWelcomePayload,
    ) -> Result<(), SessionError> {
        if self.established {
            return Err(SessionError::Protocol(format!(
                "second welcome for session {}",
                self.id
            )));
        }
        if self.opts.mls {
            let mls = w.mls.as_ref().ok_or_else(|| {
                SessionError::Mls("welcome without MLS content in an MLS session".into())
            })?;
            let MlsState::Waiting(id) = &self.mls else {
                return Err(SessionError::Mls("welcome before our key package".into()));
            };
            // Our key package's identity stays in place until the join succeeds.
            let group = crate::mls::MlsGroup::join(
                (**id).clone(),
                &mls.mls_content,
                &cx.roster_validator(),
            )
            .map_err(|e| SessionError::Mls(format!("cannot join from the welcome: {e}")))?;
            self.mls = MlsState::Group(Box::new(group));
            self.participant().last_commit = mls.commit_id;
        }
        for p in &w.participants {
            if let Some(n) = wire::participant_name(p) {
                if n != self.env.source {
                    self.add_member(n, None, cx.now);
                }
            }
        }
        self.reply(cx, m, Mt::GroupAck, Cmd::GroupAck(pb::GroupAckPayload {}))?;
        cx.events.push_back(Event::SessionOpened {
            session: self.id,
            peer: self.peer.clone(),
            initiator: false,
            group: self.is_group(),
        });
        self.establish(cx);
        Ok(())
    }

    fn on_group_update(
        &mut self,
        cx: &mut Ctx<'_>,
        m: &Inbound<'_>,
        u: &pb::GroupUpdatePayload,
    ) -> Result<(), SessionError> {
        match (&u.mls, self.opts.mls) {
            (Some(mls), true) => {
                let p = self.participant();
                if mls.commit_id > p.last_commit {
                    p.pending.insert(mls.commit_id, u.clone());
                }
                // Apply every update whose predecessor is applied (commit order, WIRE.md §5.5).
                loop {
                    let p = self.participant();
                    let Some(next) = p.last_commit.checked_add(1) else {
                        break;
                    };
                    let Some(update) = p.pending.remove(&next) else {
                        break;
                    };
                    self.apply_update(cx, &update)?;
                    self.participant().last_commit = next;
                }
            }
            (None, false) => self.apply_update(cx, u)?,
            _ => {
                return Err(SessionError::Mls(
                    "group update whose MLS content does not match the session's MLS setting"
                        .into(),
                ))
            }
        }
        self.reply(cx, m, Mt::GroupAck, Cmd::GroupAck(pb::GroupAckPayload {}))
    }

    fn apply_update(
        &mut self,
        cx: &mut Ctx<'_>,
        u: &pb::GroupUpdatePayload,
    ) -> Result<(), SessionError> {
        let who = u.participant.as_ref().and_then(wire::participant_name);
        let own_rejoin =
            u.op == pb::GroupUpdateOp::Rejoin as i32 && who.as_ref() == Some(&self.env.source);
        if let (false, MlsState::Group(g), Some(mls)) = (own_rejoin, &mut self.mls, &u.mls) {
            let outcome = g
                .process_commit(&mls.mls_content, &cx.validator())
                .map_err(|e| SessionError::Mls(format!("commit {}: {e}", mls.commit_id)))?;
            if outcome.removed_self {
                self.mls = MlsState::Gone;
            }
        }
        let Some(who) = who else {
            return Ok(());
        };
        match pb::GroupUpdateOp::try_from(u.op) {
            Ok(pb::GroupUpdateOp::Add) | Ok(pb::GroupUpdateOp::Rejoin) => {
                if who != self.env.source {
                    self.add_member(who.clone(), None, cx.now);
                    cx.events.push_back(Event::MemberJoined {
                        session: self.id,
                        member: who,
                    });
                }
            }
            Ok(pb::GroupUpdateOp::Remove) => {
                if who == self.env.source {
                    // Our removal: the LeaveRequest that follows ends the session; nothing sent
                    // to the group from now on can be decrypted by us.
                    self.mls = match std::mem::replace(&mut self.mls, MlsState::Off) {
                        MlsState::Off => MlsState::Off,
                        _ => MlsState::Gone,
                    };
                } else {
                    self.remove_member(cx, &who);
                    cx.events.push_back(Event::MemberLeft {
                        session: self.id,
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
    fn reset_reliability(&mut self) {
        let kind = self.kind;
        self.reliable = self
            .opts
            .reliable
            .map(|r| super::state::new_reliable(kind, r));
    }

    /// Asks the moderator back into the group with a fresh key package (REJOIN_REQUEST).
    fn rejoin(&mut self, cx: &mut Ctx<'_>) -> Result<(), SessionError> {
        let identity = cx.mls_identity()?;
        let kp = identity
            .key_package(cx.unix)
            .map_err(|e| SessionError::Mls(e.to_string()))?;
        let moderator = self.participant().moderator.clone();
        let id = cx.random_id();
        self.participant().rejoining = Some((id, identity));
        let me = self.env.source.to_proto();
        self.send_command(
            cx,
            &moderator,
            false,
            Mt::RejoinRequest,
            id,
            Cmd::RejoinRequest(pb::RejoinRequestPayload {
                participant: Some(me),
                key_package: kp.into(),
            }),
            &[],
            Expect::All([moderator.clone()].into()),
        )
    }

    /// Leaves the session on our own: LeaveRequest to the moderator.
    pub fn leave(&mut self, cx: &mut Ctx<'_>) -> Result<(), SessionError> {
        let moderator = self.participant().moderator.clone();
        let id = cx.random_id();
        self.participant().leaving = Some(id);
        self.send_command(
            cx,
            &moderator,
            false,
            Mt::LeaveRequest,
            id,
            Cmd::LeaveRequest(pb::LeaveRequestPayload {}),
            &[(wire::LEAVING_SESSION, wire::TRUE_VAL)],
            Expect::All([moderator.clone()].into()),
        )
    }

    /// Every expected reply to our command `id` arrived.
    pub fn participant_command_complete(&mut self, cx: &mut Ctx<'_>, id: u32) {
        if self.participant().leaving == Some(id) {
            self.end(cx);
            cx.events.push_back(Event::SessionClosed {
                session: self.id,
                reason: "left".into(),
            });
        }
    }

    /// Retries exhausted for our command `id`.
    pub fn participant_command_failed(&mut self, cx: &mut Ctx<'_>, id: u32) {
        if self
            .participant()
            .rejoining
            .as_ref()
            .is_some_and(|(r, _)| *r == id)
        {
            self.participant().rejoining = None;
            cx.events.push_back(Event::Error {
                session: Some(self.id),
                message: "the moderator did not answer our rejoin request; will retry at its next heartbeat".into(),
            });
        }
        if self.participant().leaving == Some(id) {
            self.end(cx);
            cx.events.push_back(Event::SessionClosed {
                session: self.id,
                reason: "left (the moderator did not acknowledge)".into(),
            });
        }
    }
}
