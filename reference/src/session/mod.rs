//! The sans-IO session endpoint of the reference client (WIRE.md §5–§7).
//!
//! An [`Endpoint`] is one SLIM app: a name, an identity, and its sessions. It is a plain state
//! machine: feed it inbound Publishes ([`Endpoint::handle_message`]) and the time
//! ([`Endpoint::handle_timeout`]); take what it wants sent ([`Endpoint::poll_transmit`]), what
//! happened ([`Endpoint::poll_event`]) and when to wake it ([`Endpoint::poll_timeout`]). No
//! sockets, clocks or tasks inside, so simulations run thousands of seconds in milliseconds and
//! every run of a seed is the same.
//!
//! Modules, each named after the protocol concept it implements:
//! - [`wire`]: session messages as the real SDK puts them on the wire;
//! - [`identity`]: our token and signing key, and the verification of peers';
//! - [`control`]: command retransmission and the reply cache;
//! - [`reliable`]: acks, retransmission, ordering and de-duplication of data;
//! - [`shared`]: what a session's two roles share, and [`shared::EndpointIo`], what the endpoint
//!   lends a session handler; [`data`]: the data path;
//! - [`moderator`], [`participant`]: the two roles' handlers, each given the shared state and
//!   its own role's state;
//! - [`state`]: one session, which dispatches to its role;
//! - [`vectors`]: seeded session runs recorded as test vectors (`vectors/sessions/`), and their
//!   replay.

pub mod control;
pub mod data;
pub mod identity;
pub mod moderator;
pub mod participant;
pub mod reliable;
pub mod shared;
mod sim;
pub mod state;
#[cfg(test)]
mod tests;
pub mod vectors;
pub mod wire;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use slim_proto::names::SlimName;
use slim_proto::pb::{self, command_payload::CommandPayloadType as Cmd};
use slim_proto::pb::{SessionMessageType as Mt, SessionType};

pub use crate::mls::CryptoBackend;
pub use crate::revocation::{Reason, RevocationList};
use control::{ReplyCache, Seen};
pub use identity::Credentials;
use shared::{EndpointIo, MlsState};
use state::{Session, SessionIds};

/// A session id (chosen by the session's initiator, WIRE.md §5.1).
pub type SessionId = u32;

/// Session ids are drawn below this bound, as the SDK does.
const SESSION_ID_RANGE: u32 = u32::MAX - 1000;
/// How many processed commands the reply cache remembers.
const REPLY_CACHE: usize = 4096;
/// How many sessions may wait for their welcome at once (each costs a key package).
const MAX_PENDING_JOINS: usize = 64;

/// Wall clock anchored to a monotonic instant, so the endpoint can issue and check token
/// timestamps (unix seconds) under simulated time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// A monotonic instant…
    pub at: Instant,
    /// …and the unix time (seconds) it corresponds to.
    pub unix_secs: u64,
}

impl Clock {
    /// The clock of this machine, now.
    pub fn system() -> Self {
        Self {
            at: Instant::now(),
            unix_secs: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        }
    }

    fn unix(&self, now: Instant) -> u64 {
        self.unix_secs + now.saturating_duration_since(self.at).as_secs()
    }
}

/// What an endpoint is.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// `org/ns/app` (the endpoint derives its own id: XXH3-128 of its token id).
    pub name: SlimName,
    /// How it proves who it is, and checks its peers.
    pub credentials: Credentials,
    /// RNG seed (random in the CLI, fixed in simulations).
    pub seed: [u8; 32],
    /// Wall clock anchor.
    pub clock: Clock,
    /// The cryptography of its MLS groups: [`CryptoBackend::Ring`] in the CLI,
    /// [`CryptoBackend::RingDeterministicSignatures`] where a seeded run must repeat byte for byte
    /// (simulations, vectors).
    pub mls_crypto: CryptoBackend,
}

/// Options of a session we open.
#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    /// MLS end-to-end encryption.
    pub mls: bool,
    /// Reliable delivery; `None` = fire-and-forget.
    pub reliable: Option<Reliability>,
}

/// Reliable delivery settings (sent to participants in the join request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reliability {
    /// Retransmission interval.
    pub interval: Duration,
    /// Retransmissions before giving up.
    pub max_retries: u32,
}

/// 1 s and 5 retries, the SDK's defaults. (The `slim-client` CLI sets its own: 1 s, 10 retries.)
impl Default for Reliability {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            max_retries: 5,
        }
    }
}

/// What the endpoint asks its shell to put on the wire.
// Publishes dominate and are moved once through a queue: no box (and no allocation) per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Transmit {
    /// A Publish to send as is (the shell adds the link's header MAC; nothing else changes).
    Publish(pb::Message),
    /// Subscribe this name at the node (the shell picks the subscription id, waits for the ack
    /// and re-subscribes after a reconnect).
    Subscribe(SlimName),
    /// Remove a subscription made with [`Transmit::Subscribe`].
    Unsubscribe(SlimName),
}

/// What happened, for the application.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A session is ready for data.
    SessionOpened {
        /// Session.
        session: SessionId,
        /// P2P: the peer (full name). Group: the channel.
        peer: SlimName,
        /// Whether we opened it.
        initiator: bool,
        /// Whether it is a group.
        group: bool,
    },
    /// An application message.
    Message {
        /// Session.
        session: SessionId,
        /// Sender (full name).
        from: SlimName,
        /// Payload (decrypted).
        payload: Bytes,
    },
    /// A reliable message was acknowledged by every receiver.
    Delivered {
        /// Session.
        session: SessionId,
        /// Message id.
        message_id: u32,
    },
    /// Retries exhausted: names the message and the peer that never acknowledged it.
    SendFailed {
        /// Session.
        session: SessionId,
        /// Message id.
        message_id: u32,
        /// The silent peer.
        peer: SlimName,
    },
    /// A member joined the group.
    MemberJoined {
        /// Session.
        session: SessionId,
        /// Member (full name).
        member: SlimName,
    },
    /// A member left or was removed.
    MemberLeft {
        /// Session.
        session: SessionId,
        /// Member (full name).
        member: SlimName,
    },
    /// We were removed from a group by its moderator.
    Removed {
        /// Session.
        session: SessionId,
    },
    /// The session ended.
    SessionClosed {
        /// Session.
        session: SessionId,
        /// Why.
        reason: String,
    },
    /// A protocol problem worth telling the user (rejected token, bad signature, …).
    Error {
        /// Session, when it concerns one.
        session: Option<SessionId>,
        /// What went wrong.
        message: String,
    },
}

/// Errors of session operations and of inbound messages.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// No such session.
    #[error("no session {0}")]
    UnknownSession(SessionId),
    /// The session ended.
    #[error("session {0} is closed")]
    Closed(SessionId),
    /// Only the moderator may do this.
    #[error("only the moderator of session {0} can invite, remove or close it")]
    NotModerator(SessionId),
    /// Already in the group.
    #[error("{0} is already a member")]
    AlreadyMember(String),
    /// Not in the group.
    #[error("{0} is not a member")]
    NotMember(String),
    /// A token could not be issued or did not verify.
    #[error("identity token: {0}")]
    Token(slim_proto::identity::TokenError),
    /// A command's signature did not verify.
    #[error("signature: {0}")]
    Signature(slim_proto::e2e::E2eError),
    /// The sender's name id is not the one its token derives.
    #[error(
        "{name} is not the name of token id `{sub}` (its id must be XXH3-128 of the token id)"
    )]
    NameNotBound {
        /// The name the message came from.
        name: String,
        /// The token id.
        sub: String,
    },
    /// MLS refused something.
    #[error("MLS: {0}")]
    Mls(String),
    /// A message that breaks the session protocol.
    #[error("{0}")]
    Protocol(String),
    /// The session does not use MLS, so it has no MLS state to show.
    #[error("session {0} has no MLS")]
    NoMls(SessionId),
    /// The session uses MLS but has no group (yet, or any more: removed).
    #[error("session {0} has no MLS group (not joined yet, or removed)")]
    NoMlsGroup(SessionId),
    /// The sender's identity is revoked (SLIM-REV-008).
    #[error("identity `{sub}` is revoked: {reason}")]
    Revoked {
        /// The sender's token id.
        sub: String,
        /// Which entry of the revocation list names it.
        reason: String,
    },
}

/// A session's MLS state as one member sees it: members that agree on all three agree on the
/// group (MLS working group interop, StateAuth).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateAuth {
    /// The MLS epoch (0 at creation, +1 per commit).
    pub epoch: u64,
    /// The epoch authenticator (RFC 9420 §8.7), equal at every member in the same epoch.
    pub epoch_authenticator: Vec<u8>,
    /// The session's roster as this member knows it (full names, us included), sorted.
    pub members: Vec<SlimName>,
}

/// One SLIM app: its name, identity and sessions.
pub struct Endpoint {
    name: SlimName,
    me: identity::LocalIdentity,
    rng: ChaCha20Rng,
    /// Seeds of our MLS identities' randomness: the endpoint seed's ChaCha20 stream 1 (stream 0
    /// is `rng`), so MLS is as reproducible as the rest of a seeded run.
    mls_seeds: ChaCha20Rng,
    /// The cryptography of our MLS identities.
    mls_crypto: CryptoBackend,
    clock: Clock,
    sessions: BTreeMap<SessionId, Session>,
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
    replies: ReplyCache,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name.to_string())
            .field("sessions", &self.sessions.len())
            .finish()
    }
}

macro_rules! io {
    ($self:ident, $now:expr) => {
        EndpointIo {
            now: $now,
            unix: $self.clock.unix($now),
            me: &mut $self.me,
            rng: &mut $self.rng,
            mls_seeds: &mut $self.mls_seeds,
            mls_crypto: $self.mls_crypto,
            out: &mut $self.out,
            events: &mut $self.events,
            replies: &mut $self.replies,
        }
    };
}

impl Endpoint {
    /// A new endpoint.
    pub fn new(cfg: EndpointConfig) -> Result<Self, SessionError> {
        let mut rng = ChaCha20Rng::from_seed(cfg.seed);
        let me = identity::LocalIdentity::new(&cfg.name, &cfg.credentials, &mut rng)?;
        let [a, b, c] = cfg.name.components();
        let name = SlimName::new(a, b, c).with_id(me.app_id());
        let mut mls_seeds = ChaCha20Rng::from_seed(cfg.seed);
        mls_seeds.set_stream(1);
        Ok(Self {
            name,
            me,
            rng,
            mls_seeds,
            mls_crypto: cfg.mls_crypto,
            clock: cfg.clock,
            sessions: BTreeMap::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            replies: ReplyCache::new(REPLY_CACHE, control::REPLY_TTL),
        })
    }

    /// Our full name (with our id): the shell subscribes it at the node on start.
    pub fn local_name(&self) -> &SlimName {
        &self.name
    }

    /// Our token id.
    pub fn token_id(&self) -> &str {
        self.me.sub()
    }

    fn new_session_id(&mut self) -> SessionId {
        loop {
            let id = self.rng.next_u32() % SESSION_ID_RANGE;
            if !self.sessions.contains_key(&id) {
                return id;
            }
        }
    }

    /// An inbound message from the node (anything but a session Publish is ignored).
    pub fn handle_message(&mut self, msg: pb::Message, now: Instant) {
        let m = match wire::inbound(&msg) {
            Ok(m) => m,
            Err(e) => {
                self.events.push_back(Event::Error {
                    session: None,
                    message: format!("dropped a message that is not a session message: {e}"),
                });
                return;
            }
        };
        if let Err(e) = self.dispatch(&m, now) {
            self.events.push_back(Event::Error {
                session: Some(m.session_id),
                message: format!("dropped {:?} from {}: {e}", m.kind, m.source),
            });
        }
        self.drop_if_ended(m.session_id);
    }

    fn dispatch(&mut self, m: &wire::Inbound<'_>, now: Instant) -> Result<(), SessionError> {
        if slim_proto::e2e::is_command(m.kind) && m.message_id == 0 {
            return Err(SessionError::Protocol("command with message id 0".into()));
        }
        let verified = if slim_proto::e2e::is_command(m.kind) {
            let unix = self.clock.unix(now);
            Some(self.me.verify_command(m.msg, &m.source, m.identity(), unix))
        } else {
            None
        };
        if let Some(Err(e @ SessionError::Revoked { .. })) = &verified {
            // SLIM-REV-008: refused; an invitation it answers ends now.
            let mut io = io!(self, now);
            if let Some(s) = self.sessions.get_mut(&m.session_id) {
                s.on_revoked(&mut io, &m.source, e)?;
            }
        }
        let io = io!(self, now);
        let peer = if let Some(verified) = verified {
            let peer = verified?;
            // A retransmitted request gets the same answer again, never a second processing.
            if shared::is_cached_request(m.kind) {
                if let Seen::Again(reply) =
                    io.replies
                        .check(m.session_id, &m.source, m.message_id, m.kind as i32, now)
                {
                    if let Some(r) = reply {
                        io.out.push_back(Transmit::Publish(r));
                    }
                    return Ok(());
                }
            }
            Some(peer)
        } else {
            None
        };
        let r = self.route(m, peer.as_ref(), now);
        // Processed: remember it (a request that failed may be retransmitted and tried again).
        if r.is_ok() && peer.is_some() && shared::is_cached_request(m.kind) {
            if let Seen::New =
                self.replies
                    .check(m.session_id, &m.source, m.message_id, m.kind as i32, now)
            {
                self.replies.record(
                    m.session_id,
                    &m.source,
                    m.message_id,
                    m.kind as i32,
                    None,
                    now,
                );
            }
        }
        r
    }

    fn route(
        &mut self,
        m: &wire::Inbound<'_>,
        peer: Option<&identity::Peer>,
        now: Instant,
    ) -> Result<(), SessionError> {
        if m.kind == Mt::DiscoveryRequest {
            return self.answer_discovery(m, now);
        }
        if !self.sessions.contains_key(&m.session_id) {
            if m.kind != Mt::JoinRequest {
                return Err(SessionError::UnknownSession(m.session_id));
            }
            if !wire::same_service(&m.destination, &self.name) {
                return Err(SessionError::Protocol(format!(
                    "join request for {}, which is not us",
                    m.destination
                )));
            }
            let waiting = self
                .sessions
                .values()
                .filter(|s| !s.shared.established)
                .count();
            if waiting >= MAX_PENDING_JOINS {
                return Err(SessionError::Protocol(format!(
                    "{waiting} sessions already wait for their welcome; join request refused"
                )));
            }
            let ids = SessionIds {
                id: m.session_id,
                kind: m.session_type,
                source: self.name.clone(),
                peer: m.source.clone(),
            };
            let mut s = Session::invited(ids, m.source.clone(), now);
            let mut io = io!(self, now);
            // Kept only if the join request is accepted.
            s.handle(&mut io, m, peer)?;
            self.sessions.insert(m.session_id, s);
            return Ok(());
        }
        let mut io = io!(self, now);
        let s = self
            .sessions
            .get_mut(&m.session_id)
            .ok_or(SessionError::UnknownSession(m.session_id))?;
        s.handle(&mut io, m, peer)
    }

    /// Answers a discovery request for our name with our full name (WIRE.md §5.3 step 2); the
    /// request was verified first (SLIM-IDENT-005).
    fn answer_discovery(
        &mut self,
        m: &wire::Inbound<'_>,
        now: Instant,
    ) -> Result<(), SessionError> {
        if !wire::same_service(&m.destination, &self.name)
            || (m.destination.id() != slim_proto::names::NULL_ID
                && m.destination.id() != self.name.id())
        {
            return Err(SessionError::Protocol(format!(
                "discovery for {}, which is not us",
                m.destination
            )));
        }
        let io = io!(self, now);
        let env = wire::Envelope {
            source: self.name.clone(),
            session_type: m.session_type,
            session_id: m.session_id,
        };
        let token = io.me.token(io.unix, io.rng)?;
        let mut reply = env.publish(
            &m.source,
            false,
            Mt::DiscoveryReply,
            m.message_id,
            token,
            wire::command(Cmd::DiscoveryReply(pb::DiscoveryReplyPayload {})),
        );
        io.me.sign(&mut reply)?;
        io.out.push_back(Transmit::Publish(reply));
        Ok(())
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Processed commands past their ttl go at any timer, not only at the next command.
        self.replies.expire(now);
        let due: Vec<SessionId> = self
            .sessions
            .iter_mut()
            .filter_map(|(id, s)| s.poll_timeout().filter(|t| *t <= now).map(|_| *id))
            .collect();
        for id in due {
            let mut io = io!(self, now);
            if let Some(s) = self.sessions.get_mut(&id) {
                s.handle_timeout(&mut io);
            }
            self.drop_if_ended(id);
        }
    }

    /// When [`Endpoint::handle_timeout`] must next be called.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.sessions
            .values_mut()
            .filter_map(Session::poll_timeout)
            .min()
    }

    /// The next message or subscription change for the shell.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn new_moderated(
        &mut self,
        kind: SessionType,
        peer: SlimName,
        opts: SessionOptions,
        now: Instant,
    ) -> Result<SessionId, SessionError> {
        let id = self.new_session_id();
        let ids = SessionIds {
            id,
            kind,
            source: self.name.clone(),
            peer,
        };
        let mut s = Session::moderated(ids, opts.clone(), now);
        if opts.mls {
            let ident = io!(self, now).mls_identity()?;
            let group = crate::mls::MlsGroup::create(ident, self.clock.unix(now))
                .map_err(|e| SessionError::Mls(e.to_string()))?;
            s.shared.mls = MlsState::Group(Box::new(group));
        }
        self.sessions.insert(id, s);
        Ok(id)
    }

    /// Opens a point-to-point session to `peer` (any instance unless it has an id).
    pub fn open_p2p(
        &mut self,
        peer: SlimName,
        opts: SessionOptions,
        now: Instant,
    ) -> Result<SessionId, SessionError> {
        let id = self.new_moderated(SessionType::PointToPoint, peer.clone(), opts, now)?;
        self.with_session(id, now, |s, io| s.invite(io, peer))?;
        Ok(id)
    }

    /// Creates a group on `channel` (org/ns/chan) with us as moderator.
    pub fn create_group(
        &mut self,
        channel: SlimName,
        opts: SessionOptions,
        now: Instant,
    ) -> Result<SessionId, SessionError> {
        let [a, b, c] = channel.components();
        let channel = SlimName::new(a, b, c);
        let (data, control) = slim_proto::identity::channel_ids(self.me.sub(), a, b, c)
            .ok_or_else(|| SessionError::Protocol("no distinct channel ids".into()))?;
        let id = self.new_moderated(SessionType::Multicast, channel.clone(), opts, now)?;
        let data = channel.clone().with_id(data);
        let control = channel.with_id(control);
        self.out.push_back(Transmit::Subscribe(data.clone()));
        self.out.push_back(Transmit::Subscribe(control.clone()));
        let s = self
            .sessions
            .get_mut(&id)
            .ok_or(SessionError::UnknownSession(id))?;
        s.shared.data_dst = Some(data);
        s.shared.control_dst = Some(control);
        let peer = s.shared.peer.clone();
        self.events.push_back(Event::SessionOpened {
            session: id,
            peer,
            initiator: true,
            group: true,
        });
        let mut io = io!(self, now);
        if let Some(s) = self.sessions.get_mut(&id) {
            s.establish(&mut io);
        }
        Ok(id)
    }

    fn with_session<T>(
        &mut self,
        id: SessionId,
        now: Instant,
        f: impl FnOnce(&mut Session, &mut EndpointIo<'_>) -> Result<T, SessionError>,
    ) -> Result<T, SessionError> {
        let mut io = io!(self, now);
        let s = self
            .sessions
            .get_mut(&id)
            .ok_or(SessionError::UnknownSession(id))?;
        let r = f(s, &mut io);
        self.drop_if_ended(id);
        r
    }

    /// Forgets session `id` if it ended (its events are out; the reply cache still answers
    /// retransmissions of its last commands).
    fn drop_if_ended(&mut self, id: SessionId) {
        if self.sessions.get(&id).is_some_and(|s| s.shared.ended) {
            self.sessions.remove(&id);
        }
    }

    /// Invites `peer` into a group we moderate.
    pub fn invite(
        &mut self,
        session: SessionId,
        peer: SlimName,
        now: Instant,
    ) -> Result<(), SessionError> {
        self.with_session(session, now, |s, io| {
            if !s.shared.is_group() {
                return Err(SessionError::Protocol(
                    "invite works on groups; a point-to-point session has its one peer".into(),
                ));
            }
            s.invite(io, peer)
        })
    }

    /// Removes `peer` from a group we moderate.
    pub fn remove(
        &mut self,
        session: SessionId,
        peer: &SlimName,
        now: Instant,
    ) -> Result<(), SessionError> {
        let peer = peer.clone();
        self.with_session(session, now, |s, io| s.remove(io, &peer))
    }

    /// Queues an application message; returns its message id (watch for
    /// [`Event::Delivered`] / [`Event::SendFailed`] with reliability).
    pub fn publish(
        &mut self,
        session: SessionId,
        payload: Bytes,
        now: Instant,
    ) -> Result<u32, SessionError> {
        self.with_session(session, now, |s, io| s.publish(io, payload))
    }

    /// Closes a session: the moderator closes it for everyone, a participant leaves.
    pub fn close(&mut self, session: SessionId, now: Instant) -> Result<(), SessionError> {
        self.with_session(session, now, |s, io| s.close(io))
    }

    /// The roster of session `session` as this app knows it, us included, sorted (full names;
    /// point-to-point: both ends).
    pub fn members(&self, session: SessionId) -> Result<Vec<SlimName>, SessionError> {
        let s = self
            .sessions
            .get(&session)
            .ok_or(SessionError::UnknownSession(session))?;
        let mut all: Vec<SlimName> = std::iter::once(&self.name)
            .chain(s.shared.members.keys())
            .cloned()
            .collect();
        all.sort();
        all.dedup();
        Ok(all)
    }

    /// The options session `session` runs with (a participant's come from the join request).
    pub fn options(&self, session: SessionId) -> Result<SessionOptions, SessionError> {
        self.sessions
            .get(&session)
            .map(|s| s.shared.opts.clone())
            .ok_or(SessionError::UnknownSession(session))
    }

    /// The MLS state of `session` as we see it: epoch, epoch authenticator and roster. Members
    /// whose answers are equal agree on the group (SLIM-MLS-*; the MLS interop StateAuth).
    /// [`SessionError::NoMls`] for a session without MLS.
    pub fn state_auth(&self, session: SessionId) -> Result<StateAuth, SessionError> {
        let s = self
            .sessions
            .get(&session)
            .ok_or(SessionError::UnknownSession(session))?;
        if !s.shared.opts.mls {
            return Err(SessionError::NoMls(session));
        }
        let MlsState::Group(g) = &s.shared.mls else {
            return Err(SessionError::NoMlsGroup(session));
        };
        Ok(StateAuth {
            epoch: g.epoch(),
            epoch_authenticator: g.epoch_authenticator(),
            members: self.members(session)?,
        })
    }

    /// Replaces the identities this app refuses (SLIM-REV-008): data, commands, join replies
    /// and key packages from them are refused from now on, and in every group we moderate their
    /// members are removed with an MLS commit (SLIM-REV-007).
    pub fn set_revocations(&mut self, list: RevocationList, now: Instant) {
        self.me.set_revoked(list);
        // Seeded fault: revoked members stay in the group (SLIM-REV-007).
        if crate::mutants::session::on(crate::mutants::session::SessionFault::RevocationKeepsMember)
        {
            return;
        }
        for id in self.sessions() {
            let mut io = io!(self, now);
            if let Some(s) = self.sessions.get_mut(&id) {
                s.remove_revoked(&mut io);
            }
            self.drop_if_ended(id);
        }
    }

    /// Adds one revocation to the identities this app refuses (see
    /// [`Endpoint::set_revocations`]).
    pub fn revoke(&mut self, entry: Reason, now: Instant) {
        let mut list = self.me.revoked().clone();
        list.insert(entry);
        self.set_revocations(list, now);
    }

    /// The identities this app refuses.
    pub fn revocations(&self) -> &RevocationList {
        self.me.revoked()
    }

    /// Whether sessions are still being established or messages wait for acknowledgement.
    pub fn is_busy(&self) -> bool {
        self.sessions.values().any(Session::is_busy)
    }

    /// The ids of the open sessions.
    pub fn sessions(&self) -> Vec<SessionId> {
        self.sessions.keys().copied().collect()
    }
}
