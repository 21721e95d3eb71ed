//! One session's state machine: what both roles share (commands, data path, MLS, heartbeats)
//! and the dispatch of inbound messages to the moderator or participant handlers
//! ([`super::moderator`], [`super::participant`]).
//!
//! A point-to-point session is a group of two whose initiator is the moderator, as in the real
//! SDK (WIRE.md §5.3): the same discovery, join and welcome exchange sets it up.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand_chacha::ChaCha20Rng;
use rand_core::RngCore;
use slim_proto::names::SlimName;
use slim_proto::pb::{self, command_payload::CommandPayloadType as Cmd};
use slim_proto::pb::{SessionMessageType as Mt, SessionType};

use super::control::{CommandSender, ControlOutput, Expect, ReplyCache};
use super::identity::{LocalIdentity, Peer};
use super::moderator::{ModeratorState, Task};
use super::participant::ParticipantState;
use super::reliable::{
    data_id_after, ReceiverOutput, ReliableReceiver, ReliableSender, SenderOutput, DEFAULT_WINDOW,
};
use super::wire::{self, Envelope, Inbound};
use super::{Event, SessionError, SessionId, SessionOptions, Transmit};
use crate::mls::{CredentialValidator, MlsGroup, MlsIdentity};

/// Heartbeat period of an idle session (WIRE.md §5.6, SLIM-SESS-010).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// How long an invited session may wait for its welcome before it is dropped: longer than the
/// moderator's retransmissions of its join request and welcome (1 s × 10 each).
pub const JOIN_DEADLINE: Duration = Duration::from_secs(30);

/// Everything a session handler may touch besides its own state.
pub struct Ctx<'a> {
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
    /// Transmissions for the shell.
    pub out: &'a mut VecDeque<Transmit>,
    /// Events for the application.
    pub events: &'a mut VecDeque<Event>,
    /// Commands already processed, with their replies.
    pub replies: &'a mut ReplyCache,
}

impl Ctx<'_> {
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
    /// fresh token, and randomness seeded from the endpoint's seed.
    pub fn mls_identity(&mut self) -> Result<MlsIdentity, SessionError> {
        let token = self.me.token(self.unix, self.rng)?.to_string();
        let mut seed = [0u8; 32];
        self.mls_seeds.fill_bytes(&mut seed);
        Ok(MlsIdentity::seeded(
            self.me.key().signing_key().clone(),
            token,
            seed,
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

/// Which side of the session we are.
pub enum Role {
    /// We created it: we invite, remove and close.
    Moderator(ModeratorState),
    /// We were invited.
    Participant(ParticipantState),
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

/// One session.
pub struct Session {
    /// Session id.
    pub id: SessionId,
    /// Point-to-point or multicast.
    pub kind: SessionType,
    /// Our name and the session's ids, for every message we build.
    pub env: Envelope,
    /// MLS and reliability.
    pub opts: SessionOptions,
    /// Moderator or participant.
    pub role: Role,
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
}

impl Session {
    /// A session in its first state.
    pub fn new(
        id: SessionId,
        kind: SessionType,
        source: SlimName,
        peer: SlimName,
        opts: SessionOptions,
        role: Role,
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
            role,
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

    /// Builds, signs and sends a command, retransmitting it until `expect` is met. The
    /// arguments are the command's wire fields.
    #[allow(clippy::too_many_arguments)]
    pub fn send_command(
        &mut self,
        cx: &mut Ctx<'_>,
        dst: &SlimName,
        broadcast: bool,
        kind: Mt,
        id: u32,
        payload: Cmd,
        metadata: &[(&str, &str)],
        expect: Expect,
    ) -> Result<(), SessionError> {
        let msg = self.build_command(cx, dst, broadcast, kind, id, payload, metadata)?;
        self.commands.send(id, msg, expect, cx.now);
        self.sent_recently = true;
        self.flush_commands(cx);
        Ok(())
    }

    /// Builds and signs a command (also used for replies, which are sent once).
    #[allow(clippy::too_many_arguments)]
    pub fn build_command(
        &self,
        cx: &mut Ctx<'_>,
        dst: &SlimName,
        broadcast: bool,
        kind: Mt,
        id: u32,
        payload: Cmd,
        metadata: &[(&str, &str)],
    ) -> Result<pb::Message, SessionError> {
        let token = cx.me.token(cx.unix, cx.rng)?;
        let mut msg = self
            .env
            .publish(dst, broadcast, kind, id, token, wire::command(payload));
        for (k, v) in metadata {
            msg.metadata.insert((*k).to_string(), (*v).to_string());
        }
        cx.me.sign(&mut msg)?;
        Ok(msg)
    }

    /// Sends a reply to an inbound command and remembers it for retransmissions of the request.
    pub fn reply(
        &mut self,
        cx: &mut Ctx<'_>,
        to: &Inbound<'_>,
        kind: Mt,
        payload: Cmd,
    ) -> Result<(), SessionError> {
        let msg = self.build_command(cx, &to.source, false, kind, to.message_id, payload, &[])?;
        cx.replies.record(
            self.id,
            &to.source,
            to.message_id,
            to.kind as i32,
            Some(msg.clone()),
        );
        cx.out.push_back(Transmit::Publish(msg));
        Ok(())
    }

    /// Moves the command sender's outputs to the shell and to the role handlers.
    pub fn flush_commands(&mut self, cx: &mut Ctx<'_>) {
        while let Some(o) = self.commands.poll_output() {
            match o {
                ControlOutput::Transmit(m) => cx.out.push_back(Transmit::Publish(m)),
                ControlOutput::Complete { id, from } => self.on_command_complete(cx, id, &from),
                ControlOutput::Failed { id, missing } => self.on_command_failed(cx, id, missing),
            }
        }
    }

    fn on_command_complete(&mut self, cx: &mut Ctx<'_>, id: u32, from: &SlimName) {
        if matches!(self.role, Role::Moderator(_)) {
            if let Err(e) = self.moderator_step(cx, id, from) {
                cx.events.push_back(Event::Error {
                    session: Some(self.id),
                    message: e.to_string(),
                });
            }
        } else {
            self.participant_command_complete(cx, id);
        }
    }

    fn on_command_failed(&mut self, cx: &mut Ctx<'_>, id: u32, missing: Vec<SlimName>) {
        if matches!(self.role, Role::Moderator(_)) {
            self.moderator_failed(cx, id, missing);
        } else {
            self.participant_command_failed(cx, id);
        }
    }

    /// Handles one inbound message of this session. Commands arrive verified (`peer` is the
    /// sender's verified identity) and never twice (the endpoint's reply cache answers repeats).
    pub fn handle(
        &mut self,
        cx: &mut Ctx<'_>,
        m: &Inbound<'_>,
        peer: Option<&Peer>,
    ) -> Result<(), SessionError> {
        match peer {
            Some(peer) => {
                let r = match &self.role {
                    Role::Moderator(_) => self.moderator_command(cx, m, peer),
                    Role::Participant(_) => self.participant_command(cx, m, peer),
                };
                self.flush_commands(cx);
                r
            }
            None => self.data_message(cx, m),
        }
    }

    // ----- data path -----------------------------------------------------------------------

    /// Queues an application message (sent at once when the session is established).
    pub fn publish(&mut self, cx: &mut Ctx<'_>, payload: Bytes) -> Result<u32, SessionError> {
        if self.ended || matches!(self.mls, MlsState::Gone) {
            return Err(SessionError::Closed(self.id));
        }
        // The id this message will get: after the ones already waiting in the backlog.
        let next = match &self.reliable {
            Some((s, _)) => s.next_id(),
            None => self.next_plain_id,
        };
        let id = data_id_after(next, self.backlog.len() as u64);
        self.backlog.push_back(payload);
        self.drain_backlog(cx);
        Ok(id)
    }

    /// Sends what waits in the backlog, as far as the window allows.
    pub fn drain_backlog(&mut self, cx: &mut Ctx<'_>) {
        if !self.established || self.ended {
            return;
        }
        while let Some(payload) = self.backlog.pop_front() {
            match &mut self.reliable {
                Some((sender, _)) => {
                    if sender.send(payload.clone(), cx.now).is_err() {
                        self.backlog.push_front(payload);
                        break;
                    }
                }
                None => {
                    let id = self.next_plain_id;
                    self.next_plain_id = data_id_after(id, 1);
                    let dst = self.data_target();
                    self.transmit_data(cx, &dst, self.is_group(), Mt::Msg, id, &payload, false);
                }
            }
        }
        self.flush_reliable(cx);
    }

    /// Builds one data message (MSG or RTX_REPLY), encrypting it with MLS when on.
    #[allow(clippy::too_many_arguments)]
    fn transmit_data(
        &mut self,
        cx: &mut Ctx<'_>,
        dst: &SlimName,
        broadcast: bool,
        kind: Mt,
        id: u32,
        payload: &Bytes,
        lost: bool,
    ) {
        let token = match cx.me.token(cx.unix, cx.rng) {
            Ok(t) => t,
            Err(e) => {
                cx.events.push_back(Event::Error {
                    session: Some(self.id),
                    message: e.to_string(),
                });
                return;
            }
        };
        let content = if lost {
            wire::empty_app()
        } else {
            wire::app(wire::DATA_PAYLOAD_TYPE, payload.clone())
        };
        let mut msg = self.env.publish(dst, broadcast, kind, id, token, content);
        if lost {
            wire::set_error(&mut msg);
        } else if self.opts.mls && !matches!(self.mls, MlsState::Group(_)) {
            // Never in clear in an MLS session: before the welcome, or after our removal.
            cx.events.push_back(Event::Error {
                session: Some(self.id),
                message: format!(
                    "message {id} not sent: no MLS group (not welcomed yet, or removed)"
                ),
            });
            return;
        } else if let MlsState::Group(g) = &mut self.mls {
            // The header AAD binds the ciphertext to the header it travels in (WIRE.md §5.7).
            let aad = slim_proto::e2e::header_aad(&msg);
            match g.encrypt(&aad, payload) {
                Ok(ct) => wire::set_app_blob(&mut msg, Bytes::from(ct)),
                Err(e) => {
                    cx.events.push_back(Event::Error {
                        session: Some(self.id),
                        message: format!("MLS encryption failed: {e}"),
                    });
                    return;
                }
            }
        }
        self.sent_recently = true;
        cx.out.push_back(Transmit::Publish(msg));
    }

    /// Moves the reliable sender's and receiver's outputs to the wire and the application: acks
    /// (SLIM-REL-002), retransmission requests (SLIM-REL-004), in-order deliveries
    /// (SLIM-REL-005) and failures named by message and peer (SLIM-REL-006).
    pub fn flush_reliable(&mut self, cx: &mut Ctx<'_>) {
        let Some((mut sender, mut receiver)) = self.reliable.take() else {
            return;
        };
        let group = self.is_group();
        let default_dst = self.data_target();
        while let Some(o) = sender.poll_output() {
            match o {
                SenderOutput::Transmit {
                    id, to, payload, ..
                } => match to {
                    Some(p) => self.transmit_data(cx, &p, false, Mt::Msg, id, &payload, false),
                    None => {
                        self.transmit_data(cx, &default_dst, group, Mt::Msg, id, &payload, false)
                    }
                },
                SenderOutput::Delivered { id } => cx.events.push_back(Event::Delivered {
                    session: self.id,
                    message_id: id,
                }),
                SenderOutput::Failed { id, peers } => {
                    for peer in peers {
                        cx.events.push_back(Event::SendFailed {
                            session: self.id,
                            message_id: id,
                            peer,
                        });
                    }
                }
            }
        }
        while let Some(o) = receiver.poll_output() {
            match o {
                ReceiverOutput::Ack { to, id } => {
                    self.send_plain(cx, &to, Mt::MsgAck, id);
                }
                ReceiverOutput::RtxRequest { to, id } => {
                    self.send_plain(cx, &to, Mt::RtxRequest, id);
                }
                ReceiverOutput::Deliver { from, payload, .. } => {
                    cx.events.push_back(Event::Message {
                        session: self.id,
                        from,
                        payload,
                    })
                }
                ReceiverOutput::Lost { from, id } => cx.events.push_back(Event::Error {
                    session: Some(self.id),
                    message: format!("message {id} from {from} was lost (the sender no longer had it)"),
                }),
                ReceiverOutput::GaveUp { from, id } => cx.events.push_back(Event::Error {
                    session: Some(self.id),
                    message: format!(
                        "message {id} from {from} never arrived (retransmission requests unanswered)"
                    ),
                }),
            }
        }
        self.reliable = Some((sender, receiver));
        // Acks may have made room in the window.
        if !self.backlog.is_empty() && self.established {
            if let Some((sender, _)) = &self.reliable {
                if sender.in_flight() < sender.window() {
                    self.drain_backlog(cx);
                }
            }
        }
    }

    /// An ack or retransmission request: empty application payload, fanout 1; the ack of a
    /// `publish_to` message (an id outside the sequence) says so (WIRE.md §5.4).
    fn send_plain(&mut self, cx: &mut Ctx<'_>, to: &SlimName, kind: Mt, id: u32) {
        let Ok(token) = cx.me.token(cx.unix, cx.rng) else {
            return;
        };
        let mut msg = self
            .env
            .publish(to, false, kind, id, token, wire::empty_app());
        if !super::reliable::is_sequenced(id) {
            msg.metadata
                .insert(wire::PUBLISH_TO.to_string(), wire::TRUE_VAL.to_string());
        }
        cx.out.push_back(Transmit::Publish(msg));
    }

    fn data_message(&mut self, cx: &mut Ctx<'_>, m: &Inbound<'_>) -> Result<(), SessionError> {
        if self.ended {
            return Ok(());
        }
        if !self.members.contains_key(&m.source) {
            return Err(SessionError::Protocol(format!(
                "{:?} from {} who is not a member of session {}",
                m.kind, m.source, self.id
            )));
        }
        // Data carries the sender's token too; a bad one is refused.
        cx.me.check_token(m.identity(), cx.unix)?;
        match m.kind {
            Mt::Msg | Mt::RtxReply => {
                if let Some((_, receiver)) = &mut self.reliable {
                    if receiver.is_duplicate(&m.source, m.message_id) {
                        // A duplicate: acked again, not decrypted again (MLS keys are single-use).
                        receiver.on_message(&m.source, m.message_id, Bytes::new(), cx.now);
                        self.flush_reliable(cx);
                        return Ok(());
                    }
                }
                let lost = m.kind == Mt::RtxReply && m.error_flag();
                let payload = if lost { None } else { Some(self.open_data(m)?) };
                match &mut self.reliable {
                    Some((_, receiver)) => {
                        if m.kind == Mt::Msg && !m.flag(wire::PUBLISH_TO) {
                            receiver.on_message(
                                &m.source,
                                m.message_id,
                                payload.unwrap_or_default(),
                                cx.now,
                            );
                        } else if m.kind == Mt::RtxReply {
                            receiver.on_rtx_reply(
                                &m.source,
                                m.message_id,
                                payload.ok_or(super::reliable::Lost),
                                cx.now,
                            );
                        } else {
                            // publish_to (ids above the sequence range): the receiver acks and
                            // delivers it at once, outside the ordered stream.
                            receiver.on_message(
                                &m.source,
                                m.message_id,
                                payload.unwrap_or_default(),
                                cx.now,
                            );
                        }
                        self.flush_reliable(cx);
                    }
                    None => {
                        if let Some(p) = payload {
                            cx.events.push_back(Event::Message {
                                session: self.id,
                                from: m.source.clone(),
                                payload: p,
                            });
                        }
                    }
                }
            }
            Mt::MsgAck => {
                if let Some((sender, _)) = &mut self.reliable {
                    sender.on_ack(&m.source, m.message_id);
                    self.flush_reliable(cx);
                }
            }
            Mt::RtxRequest => {
                let answer = match &mut self.reliable {
                    Some((sender, _)) => sender.on_rtx_request(m.message_id),
                    None => return Ok(()),
                };
                match answer {
                    super::reliable::RtxAnswer::Resend(p) => self.transmit_data(
                        cx,
                        &m.source,
                        false,
                        Mt::RtxReply,
                        m.message_id,
                        &p,
                        false,
                    ),
                    super::reliable::RtxAnswer::Lost => self.transmit_data(
                        cx,
                        &m.source,
                        false,
                        Mt::RtxReply,
                        m.message_id,
                        &Bytes::new(),
                        true,
                    ),
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The plaintext of an inbound data message: MLS-decrypted, its header AAD checked
    /// (SLIM-MLS-003) and its MLS sender bound to its name (SLIM-SESS-002).
    fn open_data(&mut self, m: &Inbound<'_>) -> Result<Bytes, SessionError> {
        let blob = m.app_blob().cloned().unwrap_or_default();
        match &mut self.mls {
            MlsState::Off => Ok(blob),
            MlsState::Group(g) => {
                let app = g.decrypt(&blob).map_err(|e| {
                    SessionError::Protocol(format!(
                        "MLS decryption of message {} from {} failed: {e}",
                        m.message_id, m.source
                    ))
                })?;
                // The sender's MLS identity must be the one its name id derives from.
                let sub = super::identity::token_sub(&app.sender).unwrap_or_default();
                if slim_proto::identity::app_id(&sub) != m.source.id() {
                    return Err(SessionError::NameNotBound {
                        name: m.source.to_string(),
                        sub,
                    });
                }
                // Always checked (the SDK checks a configurable percentage, default 0).
                if app.aad != slim_proto::e2e::header_aad(m.msg) {
                    return Err(SessionError::Protocol(format!(
                        "message {} from {}: header does not match the MLS authenticated data (changed in transit?)",
                        m.message_id, m.source
                    )));
                }
                Ok(Bytes::from(app.plaintext))
            }
            MlsState::Waiting(_) | MlsState::Gone => Err(SessionError::Protocol(format!(
                "encrypted message {} from {} before the MLS welcome or after removal",
                m.message_id, m.source
            ))),
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
    pub fn remove_member(&mut self, cx: &mut Ctx<'_>, name: &SlimName) {
        self.members.remove(name);
        if let Some((s, r)) = &mut self.reliable {
            s.remove_receiver(name);
            r.remove_source(name);
        }
        self.commands.forget(name);
        self.flush_reliable(cx);
    }

    /// Marks the session established and sends what was queued.
    pub fn establish(&mut self, cx: &mut Ctx<'_>) {
        self.established = true;
        if let Some((sender, _)) = &mut self.reliable {
            for m in self.members.keys() {
                sender.add_receiver(m.clone(), cx.now);
            }
        }
        self.drain_backlog(cx);
    }

    /// Ends the session: stop every timer, unsubscribe channel names.
    pub fn end(&mut self, cx: &mut Ctx<'_>) {
        self.ended = true;
        self.commands.clear();
        self.reliable = None;
        if self.is_group() {
            for n in [self.data_dst.take(), self.control_dst.take()]
                .into_iter()
                .flatten()
            {
                cx.out.push_back(Transmit::Unsubscribe(n));
            }
        }
    }

    // ----- time ------------------------------------------------------------------------------

    /// When this session next needs to run.
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
        if !self.established && !self.ended && matches!(self.role, Role::Participant(_)) {
            min(Some(self.created + JOIN_DEADLINE));
        }
        t
    }

    /// Runs whatever is due at `cx.now`.
    pub fn handle_timeout(&mut self, cx: &mut Ctx<'_>) {
        if !self.established
            && matches!(self.role, Role::Participant(_))
            && cx.now >= self.created + JOIN_DEADLINE
        {
            cx.events.push_back(Event::Error {
                session: Some(self.id),
                message: format!(
                    "invitation to session {} from {} dropped: no welcome within {:?}",
                    self.id, self.peer, JOIN_DEADLINE
                ),
            });
            self.end(cx);
            return;
        }
        self.commands.handle_timeout(cx.now);
        self.flush_commands(cx);
        if let Some((s, r)) = &mut self.reliable {
            s.handle_timeout(cx.now);
            r.handle_timeout(cx.now);
        }
        self.flush_reliable(cx);
        if self.established && !self.ended && cx.now >= self.heartbeat_at {
            self.heartbeat_at = cx.now + HEARTBEAT_INTERVAL;
            if !self.sent_recently {
                self.send_heartbeat(cx);
            }
            self.sent_recently = false;
        }
    }

    /// A heartbeat with our MLS epoch (u64::MAX without MLS) to the group or the peer.
    fn send_heartbeat(&mut self, cx: &mut Ctx<'_>) {
        let epoch = match &self.mls {
            MlsState::Group(g) => g.epoch(),
            _ => u64::MAX,
        };
        let (dst, broadcast) = match (&self.control_dst, self.is_group()) {
            (Some(c), true) => (c.clone(), true),
            _ => (self.data_target(), false),
        };
        let id = cx.random_id();
        if let Err(e) = self.send_command(
            cx,
            &dst,
            broadcast,
            Mt::Heartbeat,
            id,
            Cmd::Heartbeat(pb::HeartbeatPayload { epoch }),
            &[],
            Expect::Nothing,
        ) {
            cx.events.push_back(Event::Error {
                session: Some(self.id),
                message: e.to_string(),
            });
        }
    }

    /// Whether something is still in flight (commands or unacknowledged data).
    pub fn is_busy(&self) -> bool {
        if self.ended {
            return false;
        }
        let moderator_busy = match &self.role {
            Role::Moderator(m) => m.busy(),
            Role::Participant(_) => false,
        };
        moderator_busy
            || !self.backlog.is_empty()
            || self
                .reliable
                .as_ref()
                .is_some_and(|(s, _)| s.in_flight() > 0)
    }

    /// UPDATE_PARTICIPANT_STATE from a member (WIRE.md §5.6): OFFLINE is acknowledged and nothing
    /// waits for that member's acks any more; ONLINE is acknowledged if the member is at our MLS
    /// epoch (and it is waited for again), refused with GROUP_NACK otherwise, which tells it to
    /// rejoin.
    pub fn on_participant_state(
        &mut self,
        cx: &mut Ctx<'_>,
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
                cx,
                m,
                Mt::GroupNack,
                Cmd::GroupNack(pb::GroupNackPayload {}),
            );
        }
        if self.members.contains_key(&who) {
            if let Some((s, _)) = &mut self.reliable {
                if online {
                    s.add_receiver(who.clone(), cx.now);
                } else {
                    s.remove_receiver(&who);
                }
            }
        }
        self.reply(cx, m, Mt::GroupAck, Cmd::GroupAck(pb::GroupAckPayload {}))
    }

    /// Queues a moderator task (invite, remove, close).
    pub fn queue_task(&mut self, cx: &mut Ctx<'_>, task: Task) -> Result<(), SessionError> {
        match &mut self.role {
            Role::Moderator(m) => m.tasks.push_back(task),
            Role::Participant(_) => return Err(SessionError::NotModerator(self.id)),
        }
        self.next_task(cx)
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
