//! One session: the state both roles share ([`Shared`]) and the role we play in it ([`Role`]),
//! and the dispatch of inbound messages, timers and command completions to the moderator or
//! participant handlers ([`super::moderator`], [`super::participant`]). This is the only module
//! that knows both roles.
//!
//! A point-to-point session is a group of two whose initiator is the moderator, as in the real
//! SDK (WIRE.md §5.3): the same discovery, join and welcome exchange sets it up.

use std::time::Instant;

use bytes::Bytes;
use slim_proto::names::SlimName;
use slim_proto::pb::SessionType;

use super::identity::Peer;
use super::moderator::{self, ModeratorState, Task};
use super::participant::{self, ParticipantState};
use super::shared::{Completion, EndpointIo, Shared, JOIN_DEADLINE};
use super::wire::Inbound;
use super::{Event, SessionError, SessionId, SessionOptions};

/// Which side of the session we are, with that side's own state.
pub enum Role {
    /// We created it: we invite, remove and close.
    Moderator(ModeratorState),
    /// We were invited.
    Participant(ParticipantState),
}

/// What identifies a new session: its id and kind, our name, and its peer or channel.
pub struct SessionIds {
    /// Session id.
    pub id: SessionId,
    /// Point-to-point or multicast.
    pub kind: SessionType,
    /// Our full name.
    pub source: SlimName,
    /// P2P: the peer. Group: the channel.
    pub peer: SlimName,
}

/// One session.
pub struct Session {
    /// What both roles share.
    pub shared: Shared,
    /// Moderator or participant.
    pub role: Role,
}

impl Session {
    /// A session we open, as its moderator.
    pub fn moderated(ids: SessionIds, opts: SessionOptions, now: Instant) -> Self {
        Self {
            shared: Shared::new(ids.id, ids.kind, ids.source, ids.peer, opts, now),
            role: Role::Moderator(ModeratorState::default()),
        }
    }

    /// A session `moderator` invites us to (its options come with the join request).
    pub fn invited(ids: SessionIds, moderator: SlimName, now: Instant) -> Self {
        let opts = SessionOptions::default();
        Self {
            shared: Shared::new(ids.id, ids.kind, ids.source, ids.peer, opts, now),
            role: Role::Participant(ParticipantState::new(moderator)),
        }
    }

    /// Handles one inbound message of this session. Commands arrive verified (`peer` is the
    /// sender's verified identity) and never twice (the endpoint's reply cache answers repeats).
    pub fn handle(
        &mut self,
        io: &mut EndpointIo<'_>,
        m: &Inbound<'_>,
        peer: Option<&Peer>,
    ) -> Result<(), SessionError> {
        let s = &mut self.shared;
        let r = match peer {
            Some(peer) => {
                let r = match &mut self.role {
                    Role::Moderator(md) => moderator::on_command(s, md, io, m, peer),
                    Role::Participant(ps) => participant::on_command(s, ps, io, m, peer),
                };
                s.flush_commands(io);
                r
            }
            None => s.data_message(io, m),
        };
        self.settle(io);
        r
    }

    /// Hands the commands that completed or failed to our role, until none is left (a role's
    /// answer may complete or fail more).
    fn settle(&mut self, io: &mut EndpointIo<'_>) {
        let s = &mut self.shared;
        while let Some(c) = s.completions.pop_front() {
            match (&mut self.role, c) {
                (Role::Moderator(md), Completion::Complete { id }) => {
                    if let Err(e) = moderator::on_complete(s, md, io, id) {
                        io.events.push_back(Event::Error {
                            session: Some(s.id),
                            message: e.to_string(),
                        });
                    }
                }
                (Role::Moderator(md), Completion::Failed { id, missing }) => {
                    moderator::on_failed(s, md, io, id, missing)
                }
                (Role::Participant(ps), Completion::Complete { id }) => {
                    participant::on_complete(s, ps, io, id)
                }
                (Role::Participant(ps), Completion::Failed { id, .. }) => {
                    participant::on_failed(s, ps, io, id)
                }
            }
            s.flush_commands(io);
        }
    }

    /// Queues an application message; returns its message id.
    pub fn publish(
        &mut self,
        io: &mut EndpointIo<'_>,
        payload: Bytes,
    ) -> Result<u32, SessionError> {
        let r = self.shared.publish(io, payload);
        self.settle(io);
        r
    }

    /// Marks the session established and sends what was queued.
    pub fn establish(&mut self, io: &mut EndpointIo<'_>) {
        self.shared.establish(io);
        self.settle(io);
    }

    /// Queues a moderator task (invite, remove, close).
    pub fn queue_task(&mut self, io: &mut EndpointIo<'_>, task: Task) -> Result<(), SessionError> {
        let Role::Moderator(md) = &mut self.role else {
            return Err(SessionError::NotModerator(self.shared.id));
        };
        md.tasks.push_back(task);
        let r = moderator::next_task(&mut self.shared, md, io);
        self.settle(io);
        r
    }

    /// Invites `peer` (a group we moderate, or the peer of a point-to-point session we open).
    pub fn invite(&mut self, io: &mut EndpointIo<'_>, peer: SlimName) -> Result<(), SessionError> {
        self.queue_task(io, Task::Invite(peer))
    }

    /// SLIM-REV-007: as moderator of a group, removes every member whose identity `me` now
    /// refuses, with an MLS commit and no LEAVE_REQUEST (a revoked member's answer would be
    /// refused anyway). Each removal is queued once.
    pub fn remove_revoked(&mut self, io: &mut EndpointIo<'_>) {
        let Role::Moderator(md) = &mut self.role else {
            return;
        };
        if !self.shared.is_group() {
            return;
        }
        let revoked = self.shared.revoked_members(io.me);
        let mut queued = false;
        for name in revoked {
            if !md.removes(&name) {
                md.tasks.push_back(Task::Departed(name));
                queued = true;
            }
        }
        if queued {
            if let Err(e) = moderator::next_task(&mut self.shared, md, io) {
                io.events.push_back(Event::Error {
                    session: Some(self.shared.id),
                    message: e.to_string(),
                });
            }
            self.settle(io);
        }
    }

    /// A command from `source` was refused because its identity is revoked: a moderator ends
    /// the invitation it answers (SLIM-REV-008).
    pub fn on_revoked(
        &mut self,
        io: &mut EndpointIo<'_>,
        source: &SlimName,
        why: &SessionError,
    ) -> Result<(), SessionError> {
        let Role::Moderator(md) = &mut self.role else {
            return Ok(());
        };
        let r = moderator::on_revoked_reply(&mut self.shared, md, io, source, why);
        self.settle(io);
        r
    }

    /// Removes the member `peer` denotes from a group we moderate.
    pub fn remove(&mut self, io: &mut EndpointIo<'_>, peer: &SlimName) -> Result<(), SessionError> {
        self.shared.find_member(peer)?;
        self.queue_task(io, Task::Remove(peer.clone()))
    }

    /// Closes the session: the moderator closes it for everyone, a participant leaves.
    pub fn close(&mut self, io: &mut EndpointIo<'_>) -> Result<(), SessionError> {
        let r = match &mut self.role {
            Role::Moderator(_) => return self.queue_task(io, Task::Close),
            Role::Participant(ps) => participant::leave(&mut self.shared, ps, io),
        };
        self.settle(io);
        r
    }

    /// Whether we wait for a welcome (a participant not yet established).
    fn awaits_welcome(&self) -> bool {
        matches!(self.role, Role::Participant(_)) && !self.shared.established && !self.shared.ended
    }

    /// When this session next needs to run.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let t = self.shared.poll_timeout();
        if self.awaits_welcome() {
            let deadline = self.shared.created + JOIN_DEADLINE;
            return Some(t.map_or(deadline, |t| t.min(deadline)));
        }
        t
    }

    /// Runs whatever is due at `io.now`.
    pub fn handle_timeout(&mut self, io: &mut EndpointIo<'_>) {
        let overdue = self.awaits_welcome() && io.now >= self.shared.created + JOIN_DEADLINE;
        let s = &mut self.shared;
        if overdue {
            io.events.push_back(Event::Error {
                session: Some(s.id),
                message: format!(
                    "invitation to session {} from {} dropped: no welcome within {:?}",
                    s.id, s.peer, JOIN_DEADLINE
                ),
            });
            s.end(io);
            return;
        }
        s.command_timeouts(io);
        self.settle(io);
        self.shared.data_timeouts(io);
        self.settle(io);
    }

    /// Whether something is still in flight (moderator tasks, queued or unacknowledged data).
    pub fn is_busy(&self) -> bool {
        if self.shared.ended {
            return false;
        }
        let tasks = match &self.role {
            Role::Moderator(md) => md.busy(),
            Role::Participant(_) => false,
        };
        tasks || self.shared.is_busy()
    }
}
