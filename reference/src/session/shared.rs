//! What a session's two roles share: its names and members, its commands, MLS state and
//! heartbeats ([`Shared`]), and what the endpoint lends a session handler ([`EndpointIo`]).
//! The data path (application messages, reliability) is [`super::data`]; the role handlers are
//! [`super::moderator`] and [`super::participant`], which take this shared state and their own
//! role's state as separate arguments.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand_chacha::ChaCha20Rng;
use rand_core::RngCore;
use slim_proto::names::{SlimName, NULL_ID};
use slim_proto::pb::{self, command_payload::CommandPayloadType as Cmd};
use slim_proto::pb::{SessionMessageType as Mt, SessionType};

use super::control::{CommandSender, ControlOutput, Expect, ReplyCache};
use super::identity::LocalIdentity;
use super::reliable::{ReliableReceiver, ReliableSender, DEFAULT_WINDOW};
use super::wire::{self, Envelope, Inbound};
use super::{Event, SessionError, SessionId, SessionOptions, Transmit};
use crate::mls::{CredentialValidator, CryptoBackend, MlsGroup, MlsIdentity};

/// Heartbeat period of an idle session (WIRE.md §5.6, SLIM-SESS-010).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// How long an invited session may wait for its welcome before it is dropped: longer than the
/// moderator's retransmissions of its join request and welcome (1 s × 10 each).
pub const JOIN_DEADLINE: Duration = Duration::from_secs(30);

/// What the endpoint lends a session handler besides the session's own state: the time, our
/// identity, the RNGs, and the queues of transmissions and events for the shell and the
/// application.
pub struct EndpointIo<'a> {
    /// The current time.
    pub now: Instant,
    /// The current wall-clock time in unix seconds (for tokens).
    pub unix: u64,
    /// Our identity.
    pub me: &'a mut LocalIdentity,
    /// The endpoint's RNG (message ids, nonces).
    pub rng: &'a mut ChaCha20Rng,
    /// Where our MLS identities' RNG seeds come from.
    pub mls_seeds: &'a mut ChaCha20Rng,
    /// The cryptography of our MLS identities.
    pub mls_crypto: CryptoBackend,
    /// Transmissions for the shell.
    pub out: &'a mut VecDeque<Transmit>,
    /// Events for the application.
    pub events: &'a mut VecDeque<Event>,
    /// Commands already processed, with their replies.
    pub replies: &'a mut ReplyCache,
}

impl EndpointIo<'_> {
    /// A random non-zero command message id (WIRE.md §5.1).
    pub fn random_id(&mut self) -> u32 {
        loop {
            let id = self.rng.next_u32();
            if id != 0 {
                return id;
            }
        }
    }

    /// A new MLS identity (for a group we create or a key package we send): our signing key, a
    /// fresh token, randomness seeded from the endpoint's seed, and the endpoint's backend.
    pub fn mls_identity(&mut self) -> Result<MlsIdentity, SessionError> {
        let token = self.me.token(self.unix, self.rng)?.to_string();
        let mut seed = [0u8; 32];
        self.mls_seeds.fill_bytes(&mut seed);
        Ok(MlsIdentity::with_backend(
            self.me.key().signing_key().clone(),
            token,
            Some(seed),
            self.mls_crypto,
        ))
    }

    /// A validator of the credentials of members entering a group (key packages, commits),
    /// at the current time.
    pub fn validator(&self) -> Validator<'_> {
        Validator {
            me: self.me,
            unix: self.unix,
            allow_expired: false,
        }
    }

    /// A validator of the members already in a group we join from a Welcome: their tokens may
    /// have expired since they joined (see [`LocalIdentity::check_credential`]).
    pub fn roster_validator(&self) -> Validator<'_> {
        Validator {
            me: self.me,
            unix: self.unix,
            allow_expired: true,
        }
    }
}

/// Checks MLS members' credentials against our token verifier (WIRE.md §6).
pub struct Validator<'a> {
    me: &'a LocalIdentity,
    unix: u64,
    allow_expired: bool,
}

impl CredentialValidator for Validator<'_> {
    fn validate(&self, identity: &[u8], signature_key: &[u8]) -> Result<(), String> {
        self.me
            .check_credential(identity, signature_key, self.unix, self.allow_expired)
    }
}

/// The MLS state of a session.
pub enum MlsState {
    /// MLS is off.
    Off,
    /// On, but no group yet (a participant before its Welcome).
    Waiting(Box<crate::mls::MlsIdentity>),
    /// In the group.
    Group(Box<MlsGroup>),
    /// We were removed: nothing more can be decrypted.
    Gone,
}

/// A command or reply leaving a role handler, until the session dispatches it to that role.
#[derive(Debug)]
pub enum Completion {
    /// Every expected reply to command `id` arrived.
    Complete {
        /// The command's message id.
        id: u32,
    },
    /// Retries exhausted for command `id`; `missing` never answered.
    Failed {
        /// The command's message id.
        id: u32,
        /// Who never answered.
        missing: Vec<SlimName>,
    },
}

/// A command's wire fields (see [`Shared::send_command`]).
pub struct Command<'a> {
    /// Where it goes.
    pub dst: &'a SlimName,
    /// Whether it goes to every subscriber of `dst` (fanout) rather than one.
    pub broadcast: bool,
    /// Its session message type.
    pub kind: Mt,
    /// Its message id.
    pub id: u32,
    /// Its payload.
    pub payload: Cmd,
    /// Extra metadata entries.
    pub metadata: &'a [(&'a str, &'a str)],
}

/// What both roles of one session share.
pub struct Shared {
    /// Session id.
    pub id: SessionId,
    /// Point-to-point or multicast.
    pub kind: SessionType,
    /// Our name and the session's ids, for every message we build.
    pub env: Envelope,
    /// MLS and reliability.
    pub opts: SessionOptions,
    /// P2P: the peer (full name once known). Group: the channel as named by the application.
    pub peer: SlimName,
    /// Group: data channel (with its id). P2P: the peer's full name once known.
    pub data_dst: Option<SlimName>,
    /// Group: control channel (with its id).
    pub control_dst: Option<SlimName>,
    /// The other members (full names), with their token ids when known.
    pub members: BTreeMap<SlimName, Option<String>>,
    /// Whether data can flow (welcome done).
    pub established: bool,
    /// Whether the session ended (removed, closed): kept only until drained.
    pub ended: bool,
    /// MLS.
    pub mls: MlsState,
    /// Commands we sent that wait for replies.
    pub commands: CommandSender,
    /// Data messages waiting for the session to be established or for room in the window.
    pub backlog: VecDeque<Bytes>,
    /// Reliable data sender and receiver (None = fire-and-forget).
    pub reliable: Option<(ReliableSender<SlimName>, ReliableReceiver<SlimName>)>,
    /// Next id of fire-and-forget data.
    pub next_plain_id: u32,
    /// When the next heartbeat is due, and whether we sent anything since the last one.
    pub heartbeat_at: Instant,
    /// Whether anything was sent to the session since the last heartbeat tick.
    pub sent_recently: bool,
    /// When the session was created (a participant's must be welcomed by `JOIN_DEADLINE`).
    pub created: Instant,
    /// Commands completed or failed, for the session to hand to its role.
    pub completions: VecDeque<Completion>,
}

impl Shared {
    /// A session in its first state.
    pub fn new(
        id: SessionId,
        kind: SessionType,
        source: SlimName,
        peer: SlimName,
        opts: SessionOptions,
        now: Instant,
    ) -> Self {
        let reliable = opts.reliable.map(|r| new_reliable(kind, r));
        Self {
            id,
            kind,
            env: Envelope {
                source,
                session_type: kind,
                session_id: id,
            },
            opts,
            peer,
            data_dst: None,
            control_dst: None,
            members: BTreeMap::new(),
            established: false,
            ended: false,
            mls: MlsState::Off,
            commands: CommandSender::new(
                super::control::COMMAND_INTERVAL,
                super::control::COMMAND_RETRIES,
            ),
            backlog: VecDeque::new(),
            reliable,
            next_plain_id: 1,
            heartbeat_at: now + HEARTBEAT_INTERVAL,
            sent_recently: false,
            created: now,
            completions: VecDeque::new(),
        }
    }

    /// Where data goes: the data channel of a group, the peer of a point-to-point session.
    pub fn data_target(&self) -> SlimName {
        self.data_dst.clone().unwrap_or_else(|| self.peer.clone())
    }

    /// Whether this is a group (multicast) session.
    pub fn is_group(&self) -> bool {
        self.kind == SessionType::Multicast
    }

    /// Builds, signs and sends a command, retransmitting it until `expect` is met.
    pub fn send_command(
        &mut self,
        io: &mut EndpointIo<'_>,
        command: Command<'_>,
        expect: Expect,
    ) -> Result<(), SessionError> {
        let id = command.id;
        let msg = self.build_command(io, command)?;
        self.commands.send(id, msg, expect, io.now);
        self.sent_recently = true;
        self.flush_commands(io);
        Ok(())
    }

    /// Builds and signs a command (also used for replies, which are sent once).
    pub fn build_command(
        &self,
        io: &mut EndpointIo<'_>,
        c: Command<'_>,
    ) -> Result<pb::Message, SessionError> {
        let token = io.me.token(io.unix, io.rng)?;
        let mut msg = self.env.publish(
            c.dst,
            c.broadcast,
            c.kind,
            c.id,
            token,
            wire::command(c.payload),
        );
        for (k, v) in c.metadata {
            msg.metadata.insert((*k).to_string(), (*v).to_string());
        }
        io.me.sign(&mut msg)?;
        Ok(msg)
    }

    /// Sends a reply to an inbound command and remembers it for retransmissions of the request.
    pub fn reply(
        &mut self,
        io: &mut EndpointIo<'_>,
        to: &Inbound<'_>,
        kind: Mt,
        payload: Cmd,
    ) -> Result<(), SessionError> {
        let msg = self.build_command(
            io,
            Command {
                dst: &to.source,
                broadcast: false,
                kind,
                id: to.message_id,
                payload,
                metadata: &[],
            },
        )?;
        io.replies.record(
            self.id,
            &to.source,
            to.message_id,
            to.kind as i32,
            Some(&msg),
            io.now,
        );
        io.out.push_back(Transmit::Publish(msg));
        Ok(())
    }

    /// Moves the command sender's outputs to the shell, and its completions and failures to
    /// [`Shared::completions`] for the session to hand to its role.
    pub fn flush_commands(&mut self, io: &mut EndpointIo<'_>) {
        while let Some(o) = self.commands.poll_output() {
            match o {
                ControlOutput::Transmit(m) => io.out.push_back(Transmit::Publish(m)),
                ControlOutput::Complete { id, .. } => {
                    self.completions.push_back(Completion::Complete { id })
                }
                ControlOutput::Failed { id, missing } => self
                    .completions
                    .push_back(Completion::Failed { id, missing }),
            }
        }
    }

    /// Adds a member (data receiver).
    pub fn add_member(&mut self, name: SlimName, sub: Option<String>, now: Instant) {
        if let Some((s, _)) = &mut self.reliable {
            s.add_receiver(name.clone(), now);
        }
        self.members.insert(name, sub);
    }

    /// Removes a member: nothing waits for it any more.
    pub fn remove_member(&mut self, io: &mut EndpointIo<'_>, name: &SlimName) {
        self.members.remove(name);
        if let Some((s, r)) = &mut self.reliable {
            s.remove_receiver(name);
            r.remove_source(name);
        }
        self.commands.forget(name);
        self.flush_reliable(io);
    }

    /// Marks the session established and sends what was queued.
    pub fn establish(&mut self, io: &mut EndpointIo<'_>) {
        self.established = true;
        if let Some((sender, _)) = &mut self.reliable {
            for m in self.members.keys() {
                sender.add_receiver(m.clone(), io.now);
            }
        }
        self.drain_backlog(io);
    }

    /// Ends the session: stop every timer, unsubscribe channel names.
    pub fn end(&mut self, io: &mut EndpointIo<'_>) {
        self.ended = true;
        self.commands.clear();
        self.reliable = None;
        if self.is_group() {
            for n in [self.data_dst.take(), self.control_dst.take()]
                .into_iter()
                .flatten()
            {
                io.out.push_back(Transmit::Unsubscribe(n));
            }
        }
    }

    // ----- time ------------------------------------------------------------------------------

    /// When the commands, the data path or the heartbeat next need to run.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let mut t = self.commands.poll_timeout();
        let mut min = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        if let Some((s, r)) = &mut self.reliable {
            min(s.poll_timeout());
            min(r.poll_timeout());
        }
        if self.established && !self.ended {
            min(Some(self.heartbeat_at));
        }
        t
    }

    /// Runs the command retransmissions due at `io.now`.
    pub fn command_timeouts(&mut self, io: &mut EndpointIo<'_>) {
        self.commands.handle_timeout(io.now);
        self.flush_commands(io);
    }

    /// Runs the data timers and the heartbeat due at `io.now`.
    pub fn data_timeouts(&mut self, io: &mut EndpointIo<'_>) {
        if let Some((s, r)) = &mut self.reliable {
            s.handle_timeout(io.now);
            r.handle_timeout(io.now);
        }
        self.flush_reliable(io);
        if self.established && !self.ended && io.now >= self.heartbeat_at {
            self.heartbeat_at = io.now + HEARTBEAT_INTERVAL;
            if !self.sent_recently {
                self.send_heartbeat(io);
            }
            self.sent_recently = false;
        }
    }

    /// A heartbeat with our MLS epoch (u64::MAX without MLS) to the group or the peer.
    fn send_heartbeat(&mut self, io: &mut EndpointIo<'_>) {
        let epoch = match &self.mls {
            MlsState::Group(g) => g.epoch(),
            _ => u64::MAX,
        };
        let (dst, broadcast) = match (&self.control_dst, self.is_group()) {
            (Some(c), true) => (c.clone(), true),
            _ => (self.data_target(), false),
        };
        let id = io.random_id();
        if let Err(e) = self.send_command(
            io,
            Command {
                dst: &dst,
                broadcast,
                kind: Mt::Heartbeat,
                id,
                payload: Cmd::Heartbeat(pb::HeartbeatPayload { epoch }),
                metadata: &[],
            },
            Expect::Nothing,
        ) {
            io.events.push_back(Event::Error {
                session: Some(self.id),
                message: e.to_string(),
            });
        }
    }

    /// Whether data is still in flight (queued or unacknowledged).
    pub fn is_busy(&self) -> bool {
        !self.ended
            && (!self.backlog.is_empty()
                || self
                    .reliable
                    .as_ref()
                    .is_some_and(|(s, _)| s.in_flight() > 0))
    }

    /// UPDATE_PARTICIPANT_STATE from a member (WIRE.md §5.6): OFFLINE is acknowledged and nothing
    /// waits for that member's acks any more; ONLINE is acknowledged if the member is at our MLS
    /// epoch (and it is waited for again), refused with GROUP_NACK otherwise, which tells it to
    /// rejoin.
    pub fn on_participant_state(
        &mut self,
        io: &mut EndpointIo<'_>,
        m: &Inbound<'_>,
    ) -> Result<(), SessionError> {
        let Some(Cmd::UpdateParticipantState(u)) = m.command() else {
            return Err(SessionError::Protocol(
                "participant state update without its payload".into(),
            ));
        };
        let who = u
            .participant
            .as_ref()
            .and_then(|n| SlimName::from_proto(n).ok())
            .unwrap_or_else(|| m.source.clone());
        let online = u.new_state == pb::ParticipantState::Online as i32;
        let epoch_ok = match &self.mls {
            MlsState::Group(g) => u.epoch == g.epoch(),
            _ => true,
        };
        if online && !epoch_ok {
            return self.reply(
                io,
                m,
                Mt::GroupNack,
                Cmd::GroupNack(pb::GroupNackPayload {}),
            );
        }
        if self.members.contains_key(&who) {
            if let Some((s, _)) = &mut self.reliable {
                if online {
                    s.add_receiver(who.clone(), io.now);
                } else {
                    s.remove_receiver(&who);
                }
            }
        }
        self.reply(io, m, Mt::GroupAck, Cmd::GroupAck(pb::GroupAckPayload {}))
    }

    /// Our roster as the Welcome and GroupUpdate carry it: us, then every member.
    pub fn roster(&self) -> Vec<pb::Participant> {
        std::iter::once(&self.env.source)
            .chain(self.members.keys())
            .map(wire::participant)
            .collect()
    }

    /// The members whose identity `me` refuses (SLIM-REV-007): by the token id recorded when
    /// they joined, and, with MLS, by their credential tokens (which carry `jti` and `kid` too).
    pub fn revoked_members(&self, me: &LocalIdentity) -> Vec<SlimName> {
        let mut out: Vec<SlimName> = self
            .members
            .iter()
            .filter(|(_, sub)| {
                sub.as_ref()
                    .is_some_and(|sub| me.token_revoked_sub(sub).is_some())
            })
            .map(|(name, _)| name.clone())
            .collect();
        if let MlsState::Group(g) = &self.mls {
            for credential in g.members() {
                if me.token_revoked(&credential).is_none() {
                    continue;
                }
                let Some(sub) = super::identity::token_sub(&credential) else {
                    continue;
                };
                let id = slim_proto::identity::app_id(&sub);
                out.extend(self.members.keys().filter(|n| n.id() == id).cloned());
            }
        }
        out.sort();
        out.dedup();
        out
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
}

/// Whether a command is a request that changes state, so that a retransmission of it must be
/// answered from the reply cache rather than processed again (SLIM-SESS-005). Discovery requests
/// are stateless (answered every time) and heartbeats get no answer.
pub fn is_cached_request(kind: Mt) -> bool {
    matches!(
        kind,
        Mt::JoinRequest
            | Mt::LeaveRequest
            | Mt::GroupUpdate
            | Mt::GroupWelcome
            | Mt::GroupClose
            | Mt::UpdateParticipantState
            | Mt::RejoinRequest
    )
}

/// The reliable sender and receiver of a session: point-to-point streams start at id 1 (a lost
/// first message is asked for), group streams where a member joins (WIRE.md §5.4).
pub fn new_reliable(
    kind: SessionType,
    r: super::Reliability,
) -> (ReliableSender<SlimName>, ReliableReceiver<SlimName>) {
    let receiver = ReliableReceiver::new(r.interval, r.max_retries);
    let receiver = if kind == SessionType::PointToPoint {
        receiver.starting_at(super::reliable::FIRST_MESSAGE_ID)
    } else {
        receiver
    };
    (
        ReliableSender::new(r.interval, r.max_retries, DEFAULT_WINDOW),
        receiver,
    )
}
