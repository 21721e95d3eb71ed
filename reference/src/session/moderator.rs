//! The moderator side of a session: invites, removals and closing, one task at a time
//! (WIRE.md §5.3, §5.5, §5.6).
//!
//! Invite: DISCOVERY_REQUEST to the name (any instance) → DISCOVERY_REPLY names the instance →
//! JOIN_REQUEST (reliability, channel names, MLS settings) → JOIN_REPLY with a key package →
//! MLS Add commit: GROUP_UPDATE(ADD) to the other members when the group grows beyond two, and
//! GROUP_WELCOME to the newcomer → GROUP_ACKs. Remove: MLS Remove commit in GROUP_UPDATE(REMOVE)
//! to the group (beyond two) → LEAVE_REQUEST to the removed member → LEAVE_REPLY.
//! Commit ids count up from 1 in the order the commits were made. Point-to-point establishment
//! is SLIM-SESS-003, invites SLIM-SESS-006, removals SLIM-SESS-007.

use std::collections::{BTreeSet, VecDeque};

use slim_proto::names::{SlimName, NULL_ID};
use slim_proto::pb::SessionMessageType as Mt;
use slim_proto::pb::{self, command_payload::CommandPayloadType as Cmd};

use super::control::Expect;
use super::identity::Peer;
use super::state::{Ctx, MlsState, Session};
use super::wire::{self, Inbound};
use super::{Event, SessionError};

/// A moderator task, run one at a time in the order asked.
#[derive(Debug, Clone)]
pub enum Task {
    /// Invite this name (any instance unless it carries an id).
    Invite(SlimName),
    /// Remove this member (we send it a LeaveRequest).
    Remove(SlimName),
    /// The member left on its own: commit its removal, no LeaveRequest.
    Departed(SlimName),
    /// A member lost the group's state and asks back in with a fresh key package.
    Rejoin {
        /// The member.
        peer: SlimName,
        /// Its new key package (serialized MLSMessage).
        key_package: Vec<u8>,
        /// The RejoinRequest's message id (the RejoinReply reuses it).
        request: u32,
    },
    /// Close the session for everyone.
    Close,
}

/// The two acknowledgements an invite or a rejoin waits for: its Welcome (or RejoinReply) from
/// the newcomer, and its GroupUpdate from every other member (when one was sent).
#[derive(Debug, Clone, Copy)]
struct Awaiting {
    direct: Option<u32>,
    update: Option<u32>,
}

impl Awaiting {
    /// Records that command `id` completed; true once nothing is awaited.
    fn complete(&mut self, id: u32) -> bool {
        if self.direct == Some(id) {
            self.direct = None;
        }
        if self.update == Some(id) {
            self.update = None;
        }
        self.direct.is_none() && self.update.is_none()
    }
}

/// Where the current task stands.
#[derive(Debug)]
enum Phase {
    Discovery {
        id: u32,
        invited: SlimName,
    },
    Join {
        id: u32,
        peer: SlimName,
    },
    Welcome {
        peer: SlimName,
        wait: Awaiting,
    },
    RemoveUpdate {
        peer: SlimName,
        update: u32,
        leave: bool,
    },
    Leave {
        peer: SlimName,
        id: u32,
    },
    Close {
        id: u32,
    },
    Rejoin {
        peer: SlimName,
        wait: Awaiting,
    },
}

/// State only the moderator has.
#[derive(Debug, Default)]
pub struct ModeratorState {
    /// Tasks waiting for the current one.
    pub tasks: VecDeque<Task>,
    current: Option<Phase>,
    next_commit: u32,
}

impl ModeratorState {
    /// Whether a task runs or waits.
    pub fn busy(&self) -> bool {
        self.current.is_some() || !self.tasks.is_empty()
    }
}

impl Session {
    fn moderator(&mut self) -> &mut ModeratorState {
        match &mut self.role {
            super::state::Role::Moderator(m) => m,
            super::state::Role::Participant(_) => {
                unreachable!("moderator handler on a participant")
            }
        }
    }

    /// Our roster as the Welcome and GroupUpdate carry it: us, then every member.
    fn roster(&self) -> Vec<pb::Participant> {
        std::iter::once(&self.env.source)
            .chain(self.members.keys())
            .map(wire::participant)
            .collect()
    }

    /// Starts the next task if none runs.
    pub fn next_task(&mut self, cx: &mut Ctx<'_>) -> Result<(), SessionError> {
        loop {
            let m = self.moderator();
            if m.current.is_some() {
                return Ok(());
            }
            let Some(task) = m.tasks.pop_front() else {
                return Ok(());
            };
            match self.start_task(cx, task) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    cx.events.push_back(Event::Error {
                        session: Some(self.id),
                        message: e.to_string(),
                    });
                    // Try the next one.
                }
            }
        }
    }

    fn start_task(&mut self, cx: &mut Ctx<'_>, task: Task) -> Result<(), SessionError> {
        match task {
            Task::Invite(name) => {
                if self.find_member(&name).is_ok() {
                    return Err(SessionError::AlreadyMember(name.to_string()));
                }
                if !self.is_group() && !self.members.is_empty() {
                    return Err(SessionError::Protocol(
                        "a point-to-point session has exactly one peer".into(),
                    ));
                }
                let id = cx.random_id();
                self.moderator().current = Some(Phase::Discovery {
                    id,
                    invited: name.clone(),
                });
                self.send_command(
                    cx,
                    &name,
                    false,
                    Mt::DiscoveryRequest,
                    id,
                    Cmd::DiscoveryRequest(pb::DiscoveryRequestPayload {}),
                    &[],
                    Expect::AnyOne,
                )
            }
            Task::Remove(name) => self.start_removal(cx, &name, true),
            Task::Departed(name) => self.start_removal(cx, &name, false),
            Task::Rejoin {
                peer,
                key_package,
                request,
            } => self.start_rejoin(cx, peer, &key_package, request),
            Task::Close => {
                let id = cx.random_id();
                let everyone: BTreeSet<SlimName> = self.members.keys().cloned().collect();
                if everyone.is_empty() {
                    self.finish_close(cx, "closed");
                    return Ok(());
                }
                self.moderator().current = Some(Phase::Close { id });
                let names = self.members.keys().map(SlimName::to_proto).collect();
                let (dst, broadcast) = match (&self.control_dst, self.is_group()) {
                    (Some(c), true) => (c.clone(), true),
                    _ => (self.peer.clone(), false),
                };
                self.send_command(
                    cx,
                    &dst,
                    broadcast,
                    Mt::GroupClose,
                    id,
                    Cmd::GroupClose(pb::GroupClosePayload {
                        participants: names,
                    }),
                    &[],
                    Expect::All(everyone),
                )
            }
        }
    }

    /// The member `name` denotes: exact instance, or the only member with those components.
    pub fn find_member(&self, name: &SlimName) -> Result<SlimName, SessionError> {
        if self.members.contains_key(name) {
            return Ok(name.clone());
        }
        if name.id() != NULL_ID {
            return Err(SessionError::NotMember(name.to_string()));
        }
        let mut found = self.members.keys().filter(|m| wire::same_service(m, name));
        match (found.next(), found.next()) {
            (Some(m), None) => Ok(m.clone()),
            (None, _) => Err(SessionError::NotMember(name.to_string())),
            (Some(_), Some(_)) => Err(SessionError::Protocol(format!(
                "`{name}` matches several members; give the instance id"
            ))),
        }
    }

    fn start_removal(
        &mut self,
        cx: &mut Ctx<'_>,
        name: &SlimName,
        send_leave: bool,
    ) -> Result<(), SessionError> {
        let peer = self.find_member(name)?;
        let sub = self.members.get(&peer).cloned().flatten();
        let roster_before = self.roster();
        let mls = self.commit_removal(sub.as_deref(), &peer)?;
        self.remove_member(cx, &peer);
        let remaining: BTreeSet<SlimName> = self.members.keys().cloned().collect();
        if roster_before.len() > 2 && self.is_group() {
            let id = cx.random_id();
            self.moderator().current = Some(Phase::RemoveUpdate {
                peer: peer.clone(),
                update: id,
                leave: send_leave,
            });
            self.send_group_update(
                cx,
                id,
                pb::GroupUpdateOp::Remove,
                &peer,
                roster_before,
                mls,
                remaining,
            )
        } else if send_leave {
            self.send_leave(cx, &peer)
        } else {
            self.finish_removal(cx, &peer);
            Ok(())
        }
    }

    /// The MLS Remove commit for the member whose credential holds a token of `sub`.
    fn commit_removal(
        &mut self,
        sub: Option<&str>,
        peer: &SlimName,
    ) -> Result<Option<pb::MlsPayload>, SessionError> {
        let MlsState::Group(g) = &mut self.mls else {
            return Ok(None);
        };
        let sub = sub.ok_or_else(|| {
            SessionError::Protocol(format!("no identity known for member {peer}"))
        })?;
        let commit = g
            .remove_member(|credential| {
                super::identity::token_sub(credential).as_deref() == Some(sub)
            })
            .map_err(|e| SessionError::Mls(e.to_string()))?;
        let m = self.moderator();
        m.next_commit += 1;
        Ok(Some(pb::MlsPayload {
            commit_id: m.next_commit,
            mls_content: commit.into(),
        }))
    }

    /// Rejoin (WIRE.md §5.6): Remove + Add of the member in one commit; REJOIN_REPLY with the
    /// Welcome to it (acknowledged with GROUP_ACK), GROUP_UPDATE(REJOIN) with the commit to the
    /// others.
    fn start_rejoin(
        &mut self,
        cx: &mut Ctx<'_>,
        peer: SlimName,
        key_package: &[u8],
        request: u32,
    ) -> Result<(), SessionError> {
        let sub = self.members.get(&peer).cloned().flatten();
        let (commit_id, commit, welcome) = match &mut self.mls {
            MlsState::Group(g) => {
                let sub = sub.ok_or_else(|| {
                    SessionError::Protocol(format!("no identity known for member {peer}"))
                })?;
                let (c, w) = g
                    .rejoin_member(
                        |cred| super::identity::token_sub(cred).as_deref() == Some(sub.as_str()),
                        key_package,
                        &cx.validator(),
                        cx.unix,
                    )
                    .map_err(|e| SessionError::Mls(format!("rejoin of {peer}: {e}")))?;
                let m = self.moderator();
                m.next_commit += 1;
                (m.next_commit, c, w)
            }
            _ => (0, Vec::new(), Vec::new()),
        };
        let others: BTreeSet<SlimName> = self
            .members
            .keys()
            .filter(|n| **n != peer)
            .cloned()
            .collect();
        let roster = self.roster();
        let mut update = None;
        if self.is_group() && !others.is_empty() {
            let mls = self.opts.mls.then(|| pb::MlsPayload {
                commit_id,
                mls_content: commit.into(),
            });
            let uid = cx.random_id();
            update = Some(uid);
            self.send_group_update(
                cx,
                uid,
                pb::GroupUpdateOp::Rejoin,
                &peer,
                roster,
                mls,
                others,
            )?;
        }
        self.moderator().current = Some(Phase::Rejoin {
            peer: peer.clone(),
            wait: Awaiting {
                direct: Some(request),
                update,
            },
        });
        self.send_command(
            cx,
            &peer,
            false,
            Mt::RejoinReply,
            request,
            Cmd::RejoinReply(pb::RejoinReplyPayload {
                commit_id,
                mls_content: welcome.into(),
            }),
            &[],
            Expect::All([peer.clone()].into()),
        )
    }

    /// Sends GROUP_UPDATE `id` (`op` on `who`, with the roster and the MLS commit) to the control
    /// channel, to be acknowledged by each of `acks` (the caller records `id` in its phase first:
    /// completion may be immediate).
    #[allow(clippy::too_many_arguments)]
    fn send_group_update(
        &mut self,
        cx: &mut Ctx<'_>,
        id: u32,
        op: pb::GroupUpdateOp,
        who: &SlimName,
        participants: Vec<pb::Participant>,
        mls: Option<pb::MlsPayload>,
        acks: BTreeSet<SlimName>,
    ) -> Result<(), SessionError> {
        let control = self
            .control_dst
            .clone()
            .unwrap_or_else(|| self.peer.clone());
        self.send_command(
            cx,
            &control,
            true,
            Mt::GroupUpdate,
            id,
            Cmd::GroupUpdate(pb::GroupUpdatePayload {
                op: op as i32,
                participant: Some(wire::participant(who)),
                participants,
                mls,
            }),
            &[],
            Expect::All(acks),
        )
    }

    fn send_leave(&mut self, cx: &mut Ctx<'_>, peer: &SlimName) -> Result<(), SessionError> {
        let id = cx.random_id();
        self.moderator().current = Some(Phase::Leave {
            peer: peer.clone(),
            id,
        });
        self.send_command(
            cx,
            peer,
            false,
            Mt::LeaveRequest,
            id,
            Cmd::LeaveRequest(pb::LeaveRequestPayload {}),
            &[],
            Expect::All([peer.clone()].into()),
        )
    }

    fn finish_removal(&mut self, cx: &mut Ctx<'_>, peer: &SlimName) {
        cx.events.push_back(Event::MemberLeft {
            session: self.id,
            member: peer.clone(),
        });
        self.moderator().current = None;
        if !self.is_group() {
            self.finish_close(cx, "the peer left");
        }
    }

    fn finish_close(&mut self, cx: &mut Ctx<'_>, reason: &str) {
        self.moderator().current = None;
        self.moderator().tasks.clear();
        self.end(cx);
        cx.events.push_back(Event::SessionClosed {
            session: self.id,
            reason: reason.to_string(),
        });
    }

    /// An inbound command (already verified) for a session we moderate.
    pub fn moderator_command(
        &mut self,
        cx: &mut Ctx<'_>,
        m: &Inbound<'_>,
        peer: &Peer,
    ) -> Result<(), SessionError> {
        match m.kind {
            Mt::DiscoveryReply => {
                let Some(Phase::Discovery { id, invited }) = &self.moderator().current else {
                    return Ok(());
                };
                let (id, invited) = (*id, invited.clone());
                let id_ok = invited.id() == NULL_ID || invited.id() == m.source.id();
                if m.message_id != id || !wire::same_service(&invited, &m.source) || !id_ok {
                    return Err(SessionError::Protocol(format!(
                        "discovery reply from {} does not answer the invitation of {invited}",
                        m.source
                    )));
                }
                self.commands.cancel(id);
                let join = cx.random_id();
                let dst = m.source.clone();
                self.moderator().current = Some(Phase::Join {
                    id: join,
                    peer: dst.clone(),
                });
                let (channel, control) = if self.is_group() {
                    (
                        self.data_dst.as_ref().map(SlimName::to_proto),
                        self.control_dst.as_ref().map(SlimName::to_proto),
                    )
                } else {
                    (None, None)
                };
                let payload = pb::JoinRequestPayload {
                    timer_settings: self.opts.reliable.map(|r| pb::TimerSettings {
                        timeout: u32::try_from(r.interval.as_millis()).unwrap_or(u32::MAX),
                        max_retries: r.max_retries,
                    }),
                    channel,
                    control,
                    mls_settings: self.opts.mls.then_some(pb::MlsSettings {
                        header_integrity_validation_percent: 100,
                    }),
                };
                self.send_command(
                    cx,
                    &dst,
                    false,
                    Mt::JoinRequest,
                    join,
                    Cmd::JoinRequest(payload),
                    &[],
                    Expect::All([dst.clone()].into()),
                )
            }
            Mt::JoinReply => {
                let Some(Phase::Join { id, peer: joining }) = &self.moderator().current else {
                    return Ok(());
                };
                let (id, joining) = (*id, joining.clone());
                if m.message_id != id || m.source != joining {
                    return Ok(());
                }
                let Some(Cmd::JoinReply(reply)) = m.command() else {
                    return Err(SessionError::Protocol(
                        "join reply without its payload".into(),
                    ));
                };
                let named = reply.participant.as_ref().and_then(wire::participant_name);
                if named.as_ref() != Some(&m.source) {
                    return Err(SessionError::Protocol(format!(
                        "join reply from {} names another participant",
                        m.source
                    )));
                }
                self.commands.cancel(id);
                let mls = match &mut self.mls {
                    MlsState::Group(g) => {
                        let added = match &reply.key_package {
                            Some(kp) => g
                                .add_member(kp, &cx.validator(), cx.unix)
                                .map_err(|e| e.to_string()),
                            None => Err(
                                "no MLS key package in its join reply (is MLS off on its side?)"
                                    .into(),
                            ),
                        };
                        let (commit, welcome) = match added {
                            Ok(x) => x,
                            Err(e) => {
                                // The invitation ends here; the next task may start.
                                self.moderator().current = None;
                                cx.events.push_back(Event::Error {
                                    session: Some(self.id),
                                    message: format!("refused {}: {e}", m.source),
                                });
                                if !self.is_group() {
                                    self.finish_close(cx, "the peer's key package was refused");
                                }
                                return self.next_task(cx);
                            }
                        };
                        let mm = self.moderator();
                        mm.next_commit += 1;
                        Some((mm.next_commit, commit, welcome))
                    }
                    _ => None,
                };
                let newcomer = m.source.clone();
                let existing: BTreeSet<SlimName> = self.members.keys().cloned().collect();
                self.add_member(newcomer.clone(), Some(peer.sub.clone()), cx.now);
                if !self.is_group() {
                    self.data_dst = Some(newcomer.clone());
                }
                let roster = self.roster();
                let mut update = None;
                if roster.len() > 2 {
                    let commit = mls.as_ref().map(|(cid, c, _)| pb::MlsPayload {
                        commit_id: *cid,
                        mls_content: c.clone().into(),
                    });
                    let uid = cx.random_id();
                    update = Some(uid);
                    self.send_group_update(
                        cx,
                        uid,
                        pb::GroupUpdateOp::Add,
                        &newcomer,
                        roster.clone(),
                        commit,
                        existing,
                    )?;
                }
                let wid = cx.random_id();
                self.moderator().current = Some(Phase::Welcome {
                    peer: newcomer.clone(),
                    wait: Awaiting {
                        direct: Some(wid),
                        update,
                    },
                });
                self.send_command(
                    cx,
                    &newcomer,
                    false,
                    Mt::GroupWelcome,
                    wid,
                    Cmd::GroupWelcome(pb::GroupWelcomePayload {
                        participants: roster,
                        mls: mls.map(|(cid, _, w)| pb::MlsPayload {
                            commit_id: cid,
                            mls_content: w.into(),
                        }),
                    }),
                    &[],
                    Expect::All([newcomer.clone()].into()),
                )
            }
            Mt::GroupAck | Mt::LeaveReply => {
                self.commands.on_reply(m.message_id, &m.source);
                Ok(())
            }
            Mt::GroupNack => {
                self.commands.on_reply(m.message_id, &m.source);
                cx.events.push_back(Event::Error {
                    session: Some(self.id),
                    message: format!("{} refused message {}", m.source, m.message_id),
                });
                Ok(())
            }
            Mt::LeaveRequest => {
                // A member leaves on its own.
                self.reply(
                    cx,
                    m,
                    Mt::LeaveReply,
                    Cmd::LeaveReply(pb::LeaveReplyPayload {}),
                )?;
                if self.members.contains_key(&m.source) {
                    if self.is_group() {
                        self.moderator()
                            .tasks
                            .push_front(Task::Departed(m.source.clone()));
                        self.next_task(cx)?;
                    } else {
                        self.remove_member(cx, &m.source);
                        cx.events.push_back(Event::MemberLeft {
                            session: self.id,
                            member: m.source.clone(),
                        });
                        self.finish_close(cx, "the peer closed the session");
                    }
                }
                Ok(())
            }
            Mt::UpdateParticipantState => self.on_participant_state(cx, m),
            Mt::RejoinRequest => {
                let Some(Cmd::RejoinRequest(r)) = m.command() else {
                    return Err(SessionError::Protocol(
                        "rejoin request without its payload".into(),
                    ));
                };
                if !self.members.contains_key(&m.source) {
                    return Err(SessionError::NotMember(m.source.to_string()));
                }
                // Queued like any task (the SDK drops it when busy and lets the member retry).
                self.moderator().tasks.push_back(Task::Rejoin {
                    peer: m.source.clone(),
                    key_package: r.key_package.to_vec(),
                    request: m.message_id,
                });
                self.next_task(cx)
            }
            // Heartbeats need no answer; anything else is not for a moderator.
            _ => Ok(()),
        }
    }

    /// Every expected reply to command `id` arrived.
    pub fn moderator_step(
        &mut self,
        cx: &mut Ctx<'_>,
        id: u32,
        _from: &SlimName,
    ) -> Result<(), SessionError> {
        let Some(phase) = self.moderator().current.take() else {
            return Ok(());
        };
        match phase {
            Phase::Welcome { peer, mut wait } => {
                if !wait.complete(id) {
                    self.moderator().current = Some(Phase::Welcome { peer, wait });
                    return Ok(());
                }
                self.invite_done(cx, &peer);
            }
            Phase::RemoveUpdate {
                peer,
                update,
                leave,
            } if update == id => {
                if leave {
                    self.send_leave(cx, &peer)?;
                    return Ok(());
                }
                self.finish_removal(cx, &peer);
            }
            Phase::Leave { peer, id: lid } if lid == id => self.finish_removal(cx, &peer),
            Phase::Close { id: cid } if cid == id => self.finish_close(cx, "closed"),
            Phase::Rejoin { peer, mut wait } => {
                if !wait.complete(id) {
                    self.moderator().current = Some(Phase::Rejoin { peer, wait });
                    return Ok(());
                }
                if let Some((s, _)) = &mut self.reliable {
                    s.add_receiver(peer.clone(), cx.now);
                }
                cx.events.push_back(Event::MemberJoined {
                    session: self.id,
                    member: peer,
                });
            }
            other => {
                self.moderator().current = Some(other);
                return Ok(());
            }
        }
        self.next_task(cx)
    }

    fn invite_done(&mut self, cx: &mut Ctx<'_>, peer: &SlimName) {
        if !self.is_group() && !self.established {
            self.peer = peer.clone();
            cx.events.push_back(Event::SessionOpened {
                session: self.id,
                peer: peer.clone(),
                initiator: true,
                group: false,
            });
            self.establish(cx);
        }
        cx.events.push_back(Event::MemberJoined {
            session: self.id,
            member: peer.clone(),
        });
    }

    /// Retries exhausted for command `id`.
    pub fn moderator_failed(&mut self, cx: &mut Ctx<'_>, id: u32, missing: Vec<SlimName>) {
        let Some(phase) = self.moderator().current.take() else {
            return;
        };
        let names = |v: &[SlimName]| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match phase {
            Phase::Discovery { invited, .. } => {
                cx.events.push_back(Event::Error {
                    session: Some(self.id),
                    message: format!(
                        "no SLIM app named {invited} answered the invitation (is it running and subscribed at this node?)"
                    ),
                });
                if !self.is_group() {
                    self.finish_close(cx, &format!("{invited} did not answer"));
                }
            }
            Phase::Join { peer, .. } => {
                cx.events.push_back(Event::Error {
                    session: Some(self.id),
                    message: format!("{peer} did not answer the join request"),
                });
                if !self.is_group() {
                    self.finish_close(cx, &format!("{peer} did not join"));
                }
            }
            Phase::Welcome { peer, mut wait } => {
                if wait.direct == Some(id) {
                    cx.events.push_back(Event::Error {
                        session: Some(self.id),
                        message: format!(
                            "{peer} did not acknowledge its welcome; removing it from the group"
                        ),
                    });
                    if self.is_group() {
                        // It may hold the Welcome (only its ack lost) and so the group's keys:
                        // its removal is committed like any other.
                        self.moderator().tasks.push_front(Task::Departed(peer));
                    } else {
                        self.remove_member(cx, &peer);
                        self.finish_close(cx, &format!("{peer} did not acknowledge the welcome"));
                    }
                } else if wait.update == Some(id) {
                    // Partial success, as the SDK: the newcomer is in, some members lag.
                    cx.events.push_back(Event::Error {
                        session: Some(self.id),
                        message: format!(
                            "{} did not acknowledge the addition of {peer}",
                            names(&missing)
                        ),
                    });
                    if !wait.complete(id) {
                        self.moderator().current = Some(Phase::Welcome { peer, wait });
                        return;
                    }
                    self.invite_done(cx, &peer);
                } else {
                    self.moderator().current = Some(Phase::Welcome { peer, wait });
                    return;
                }
            }
            Phase::RemoveUpdate { peer, leave, .. } => {
                cx.events.push_back(Event::Error {
                    session: Some(self.id),
                    message: format!(
                        "{} did not acknowledge the removal of {peer}",
                        names(&missing)
                    ),
                });
                if leave {
                    if let Err(e) = self.send_leave(cx, &peer) {
                        cx.events.push_back(Event::Error {
                            session: Some(self.id),
                            message: e.to_string(),
                        });
                    }
                    return;
                }
                self.finish_removal(cx, &peer);
            }
            Phase::Leave { peer, .. } => {
                cx.events.push_back(Event::Error {
                    session: Some(self.id),
                    message: format!(
                        "{peer} did not acknowledge its removal (it can no longer decrypt the group's messages)"
                    ),
                });
                self.finish_removal(cx, &peer);
            }
            Phase::Close { .. } => {
                cx.events.push_back(Event::Error {
                    session: Some(self.id),
                    message: format!("{} did not acknowledge the close", names(&missing)),
                });
                self.finish_close(cx, "closed");
            }
            Phase::Rejoin { peer, .. } => {
                cx.events.push_back(Event::Error {
                    session: Some(self.id),
                    message: format!(
                        "the rejoin of {peer} was not acknowledged by {}",
                        names(&missing)
                    ),
                });
            }
        }
        if let Err(e) = self.next_task(cx) {
            cx.events.push_back(Event::Error {
                session: Some(self.id),
                message: e.to_string(),
            });
        }
    }
}
