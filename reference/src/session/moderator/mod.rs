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
//!
//! Each handler takes the session's [`Shared`] state and the moderator's own
//! [`ModeratorState`]; only [`super::state`], which dispatches on the role, calls them. Files:
//! this one (tasks, invitations, replies), `removal.rs`, `rejoin.rs`, `failed.rs` (retries ran
//! out).

mod failed;
mod rejoin;
mod removal;

use std::collections::{BTreeSet, VecDeque};

use slim_proto::names::{SlimName, NULL_ID};
use slim_proto::pb::SessionMessageType as Mt;
use slim_proto::pb::{self, command_payload::CommandPayloadType as Cmd};

use crate::session::control::Expect;
use crate::session::identity::Peer;
use crate::session::shared::{Command, EndpointIo, MlsState, Shared};
use crate::session::wire::{self, Inbound};
use crate::session::{Event, SessionError};

pub(super) use failed::on_failed;
use rejoin::start_rejoin;
use removal::{finish_removal, send_leave, start_removal};

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

/// A GROUP_UPDATE's fields: `op` on `who`, with the roster and the MLS commit, acknowledged by
/// each of `acks`.
struct GroupUpdate<'a> {
    id: u32,
    op: pb::GroupUpdateOp,
    who: &'a SlimName,
    participants: Vec<pb::Participant>,
    mls: Option<pb::MlsPayload>,
    acks: BTreeSet<SlimName>,
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
    /// The id of the commit just made: commit ids count up from 1 in the order the commits were
    /// made.
    fn next_commit_id(&mut self) -> u32 {
        self.next_commit += 1;
        self.next_commit
    }

    /// Whether a task runs or waits.
    pub fn busy(&self) -> bool {
        self.current.is_some() || !self.tasks.is_empty()
    }

    /// Whether the removal of `name` runs or waits (so a revocation queues it once).
    pub fn removes(&self, name: &SlimName) -> bool {
        let queued = self
            .tasks
            .iter()
            .any(|t| matches!(t, Task::Remove(n) | Task::Departed(n) if n == name));
        let running = matches!(
            &self.current,
            Some(Phase::RemoveUpdate { peer, .. } | Phase::Leave { peer, .. }) if peer == name
        );
        queued || running
    }
}

/// A reply from `source`, whose identity is revoked, was refused (SLIM-REV-008): if it answers
/// the invitation that runs, that invitation ends now, refused with `why`, rather than after its
/// retries.
pub(super) fn on_revoked_reply(
    s: &mut Shared,
    md: &mut ModeratorState,
    io: &mut EndpointIo<'_>,
    source: &SlimName,
    why: &SessionError,
) -> Result<(), SessionError> {
    let id = match &md.current {
        Some(Phase::Discovery { id, invited })
            if wire::same_service(invited, source)
                && (invited.id() == NULL_ID || invited.id() == source.id()) =>
        {
            *id
        }
        Some(Phase::Join { id, peer }) if peer == source => *id,
        _ => return Ok(()),
    };
    s.commands.cancel(id);
    md.current = None;
    io.events.push_back(Event::Error {
        session: Some(s.id),
        message: format!("refused {source}: {why}"),
    });
    if !s.is_group() {
        finish_close(s, md, io, "the peer's identity is revoked");
    }
    next_task(s, md, io)
}

/// Starts the next task if none runs.
pub(super) fn next_task(
    s: &mut Shared,
    md: &mut ModeratorState,
    io: &mut EndpointIo<'_>,
) -> Result<(), SessionError> {
    loop {
        if md.current.is_some() {
            return Ok(());
        }
        let Some(task) = md.tasks.pop_front() else {
            return Ok(());
        };
        match start_task(s, md, io, task) {
            Ok(()) => return Ok(()),
            Err(e) => {
                io.events.push_back(Event::Error {
                    session: Some(s.id),
                    message: e.to_string(),
                });
                // Try the next one.
            }
        }
    }
}

fn start_task(
    s: &mut Shared,
    md: &mut ModeratorState,
    io: &mut EndpointIo<'_>,
    task: Task,
) -> Result<(), SessionError> {
    match task {
        Task::Invite(name) => {
            if s.find_member(&name).is_ok() {
                return Err(SessionError::AlreadyMember(name.to_string()));
            }
            if !s.is_group() && !s.members.is_empty() {
                return Err(SessionError::Protocol(
                    "a point-to-point session has exactly one peer".into(),
                ));
            }
            let id = io.random_id();
            md.current = Some(Phase::Discovery {
                id,
                invited: name.clone(),
            });
            s.send_command(
                io,
                Command {
                    dst: &name,
                    broadcast: false,
                    kind: Mt::DiscoveryRequest,
                    id,
                    payload: Cmd::DiscoveryRequest(pb::DiscoveryRequestPayload {}),
                    metadata: &[],
                },
                Expect::AnyOne,
            )
        }
        Task::Remove(name) => start_removal(s, md, io, &name, true),
        Task::Departed(name) => start_removal(s, md, io, &name, false),
        Task::Rejoin {
            peer,
            key_package,
            request,
        } => start_rejoin(s, md, io, peer, &key_package, request),
        Task::Close => {
            let id = io.random_id();
            let everyone: BTreeSet<SlimName> = s.members.keys().cloned().collect();
            if everyone.is_empty() {
                finish_close(s, md, io, "closed");
                return Ok(());
            }
            md.current = Some(Phase::Close { id });
            let names = s.members.keys().map(SlimName::to_proto).collect();
            let (dst, broadcast) = match (&s.control_dst, s.is_group()) {
                (Some(c), true) => (c.clone(), true),
                _ => (s.peer.clone(), false),
            };
            s.send_command(
                io,
                Command {
                    dst: &dst,
                    broadcast,
                    kind: Mt::GroupClose,
                    id,
                    payload: Cmd::GroupClose(pb::GroupClosePayload {
                        participants: names,
                    }),
                    metadata: &[],
                },
                Expect::All(everyone),
            )
        }
    }
}

/// Sends GROUP_UPDATE `id` (`op` on `who`, with the roster and the MLS commit) to the control
/// channel, to be acknowledged by each of `acks` (the caller records `id` in its phase first:
/// completion may be immediate).
fn send_group_update(
    s: &mut Shared,
    io: &mut EndpointIo<'_>,
    update: GroupUpdate<'_>,
) -> Result<(), SessionError> {
    let GroupUpdate {
        id,
        op,
        who,
        participants,
        mls,
        acks,
    } = update;
    let control = s.control_dst.clone().unwrap_or_else(|| s.peer.clone());
    s.send_command(
        io,
        Command {
            dst: &control,
            broadcast: true,
            kind: Mt::GroupUpdate,
            id,
            payload: Cmd::GroupUpdate(pb::GroupUpdatePayload {
                op: op as i32,
                participant: Some(wire::participant(who)),
                participants,
                mls,
            }),
            metadata: &[],
        },
        Expect::All(acks),
    )
}

fn finish_close(s: &mut Shared, md: &mut ModeratorState, io: &mut EndpointIo<'_>, reason: &str) {
    md.current = None;
    md.tasks.clear();
    s.end(io);
    io.events.push_back(Event::SessionClosed {
        session: s.id,
        reason: reason.to_string(),
    });
}

/// An inbound command (already verified) for a session we moderate.
pub(super) fn on_command(
    s: &mut Shared,
    md: &mut ModeratorState,
    io: &mut EndpointIo<'_>,
    m: &Inbound<'_>,
    peer: &Peer,
) -> Result<(), SessionError> {
    match m.kind {
        Mt::DiscoveryReply => {
            let Some(Phase::Discovery { id, invited }) = &md.current else {
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
            s.commands.cancel(id);
            let join = io.random_id();
            let dst = m.source.clone();
            md.current = Some(Phase::Join {
                id: join,
                peer: dst.clone(),
            });
            let (channel, control) = if s.is_group() {
                (
                    s.data_dst.as_ref().map(SlimName::to_proto),
                    s.control_dst.as_ref().map(SlimName::to_proto),
                )
            } else {
                (None, None)
            };
            let payload = pb::JoinRequestPayload {
                timer_settings: s.opts.reliable.map(|r| pb::TimerSettings {
                    timeout: u32::try_from(r.interval.as_millis()).unwrap_or(u32::MAX),
                    max_retries: r.max_retries,
                }),
                channel,
                control,
                mls_settings: s.opts.mls.then_some(pb::MlsSettings {
                    header_integrity_validation_percent: 100,
                }),
            };
            s.send_command(
                io,
                Command {
                    dst: &dst,
                    broadcast: false,
                    kind: Mt::JoinRequest,
                    id: join,
                    payload: Cmd::JoinRequest(payload),
                    metadata: &[],
                },
                Expect::All([dst.clone()].into()),
            )
        }
        Mt::JoinReply => {
            let Some(Phase::Join { id, peer: joining }) = &md.current else {
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
            s.commands.cancel(id);
            let mls = match &mut s.mls {
                MlsState::Group(g) => {
                    let added = match &reply.key_package {
                        Some(kp) => g
                            .add_member(kp, &io.validator(), io.unix)
                            .map_err(|e| e.to_string()),
                        None => Err(
                            "no MLS key package in its join reply (is MLS off on its side?)".into(),
                        ),
                    };
                    let (commit, welcome) = match added {
                        Ok(x) => x,
                        Err(e) => {
                            // The invitation ends here; the next task may start.
                            md.current = None;
                            io.events.push_back(Event::Error {
                                session: Some(s.id),
                                message: format!("refused {}: {e}", m.source),
                            });
                            if !s.is_group() {
                                finish_close(s, md, io, "the peer's key package was refused");
                            }
                            return next_task(s, md, io);
                        }
                    };
                    Some((md.next_commit_id(), commit, welcome))
                }
                _ => None,
            };
            let newcomer = m.source.clone();
            let existing: BTreeSet<SlimName> = s.members.keys().cloned().collect();
            s.add_member(newcomer.clone(), Some(peer.sub.clone()), io.now);
            if !s.is_group() {
                s.data_dst = Some(newcomer.clone());
            }
            let roster = s.roster();
            let mut update = None;
            if roster.len() > 2 {
                let commit = mls.as_ref().map(|(cid, c, _)| pb::MlsPayload {
                    commit_id: *cid,
                    mls_content: c.clone().into(),
                });
                let uid = io.random_id();
                update = Some(uid);
                send_group_update(
                    s,
                    io,
                    GroupUpdate {
                        id: uid,
                        op: pb::GroupUpdateOp::Add,
                        who: &newcomer,
                        participants: roster.clone(),
                        mls: commit,
                        acks: existing,
                    },
                )?;
            }
            let wid = io.random_id();
            md.current = Some(Phase::Welcome {
                peer: newcomer.clone(),
                wait: Awaiting {
                    direct: Some(wid),
                    update,
                },
            });
            s.send_command(
                io,
                Command {
                    dst: &newcomer,
                    broadcast: false,
                    kind: Mt::GroupWelcome,
                    id: wid,
                    payload: Cmd::GroupWelcome(pb::GroupWelcomePayload {
                        participants: roster,
                        mls: mls.map(|(cid, _, w)| pb::MlsPayload {
                            commit_id: cid,
                            mls_content: w.into(),
                        }),
                    }),
                    metadata: &[],
                },
                Expect::All([newcomer.clone()].into()),
            )
        }
        Mt::GroupAck | Mt::LeaveReply => {
            s.commands.on_reply(m.message_id, &m.source);
            Ok(())
        }
        Mt::GroupNack => {
            s.commands.on_reply(m.message_id, &m.source);
            io.events.push_back(Event::Error {
                session: Some(s.id),
                message: format!("{} refused message {}", m.source, m.message_id),
            });
            Ok(())
        }
        Mt::LeaveRequest => {
            // A member leaves on its own.
            s.reply(
                io,
                m,
                Mt::LeaveReply,
                Cmd::LeaveReply(pb::LeaveReplyPayload {}),
            )?;
            if s.members.contains_key(&m.source) {
                if s.is_group() {
                    md.tasks.push_front(Task::Departed(m.source.clone()));
                    next_task(s, md, io)?;
                } else {
                    s.remove_member(io, &m.source);
                    io.events.push_back(Event::MemberLeft {
                        session: s.id,
                        member: m.source.clone(),
                    });
                    finish_close(s, md, io, "the peer closed the session");
                }
            }
            Ok(())
        }
        Mt::UpdateParticipantState => s.on_participant_state(io, m),
        Mt::RejoinRequest => {
            let Some(Cmd::RejoinRequest(r)) = m.command() else {
                return Err(SessionError::Protocol(
                    "rejoin request without its payload".into(),
                ));
            };
            if !s.members.contains_key(&m.source) {
                return Err(SessionError::NotMember(m.source.to_string()));
            }
            // Queued like any task (the SDK drops it when busy and lets the member retry).
            md.tasks.push_back(Task::Rejoin {
                peer: m.source.clone(),
                key_package: r.key_package.to_vec(),
                request: m.message_id,
            });
            next_task(s, md, io)
        }
        // Heartbeats need no answer; anything else is not for a moderator.
        _ => Ok(()),
    }
}

/// Every expected reply to command `id` arrived.
pub(super) fn on_complete(
    s: &mut Shared,
    md: &mut ModeratorState,
    io: &mut EndpointIo<'_>,
    id: u32,
) -> Result<(), SessionError> {
    let Some(phase) = md.current.take() else {
        return Ok(());
    };
    match phase {
        Phase::Welcome { peer, mut wait } => {
            if !wait.complete(id) {
                md.current = Some(Phase::Welcome { peer, wait });
                return Ok(());
            }
            invite_done(s, io, &peer);
        }
        Phase::RemoveUpdate {
            peer,
            update,
            leave,
        } if update == id => {
            if leave {
                send_leave(s, md, io, &peer)?;
                return Ok(());
            }
            finish_removal(s, md, io, &peer);
        }
        Phase::Leave { peer, id: lid } if lid == id => finish_removal(s, md, io, &peer),
        Phase::Close { id: cid } if cid == id => finish_close(s, md, io, "closed"),
        Phase::Rejoin { peer, mut wait } => {
            if !wait.complete(id) {
                md.current = Some(Phase::Rejoin { peer, wait });
                return Ok(());
            }
            if let Some((sender, _)) = &mut s.reliable {
                sender.add_receiver(peer.clone(), io.now);
            }
            io.events.push_back(Event::MemberJoined {
                session: s.id,
                member: peer,
            });
        }
        other => {
            md.current = Some(other);
            return Ok(());
        }
    }
    next_task(s, md, io)
}

fn invite_done(s: &mut Shared, io: &mut EndpointIo<'_>, peer: &SlimName) {
    if !s.is_group() && !s.established {
        s.peer = peer.clone();
        io.events.push_back(Event::SessionOpened {
            session: s.id,
            peer: peer.clone(),
            initiator: true,
            group: false,
        });
        s.establish(io);
    }
    io.events.push_back(Event::MemberJoined {
        session: s.id,
        member: peer.clone(),
    });
}
