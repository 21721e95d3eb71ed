//! The relay core: a sans-IO SLIM node.
//!
//! [`Relay`] is a plain state machine. The shell ([`crate::server`]) feeds it what happens on the
//! network (a stream opened, a message decoded, a stream ended) and the current time; it returns
//! [`Output`]s (send this message on that link, close that link with this status) and tells when it
//! next wants to be woken ([`Relay::poll_timeout`]). It owns no sockets, clocks, tasks or locks,
//! so every behaviour is testable deterministically, message by message.
//!
//! The pieces, one per protocol concept:
//! - [`link`]: link negotiation as the responder, the per-link MAC state.
//! - [`subscriptions`]: the subscription table and its matching rules.
//! - [`forward`]: what happens to a Publish (TTL, forward_to, anycast/broadcast, re-signing).
//!
//! A message on an established link goes: validate → header MAC → TTL → dispatch by kind.
//!
//! The shell hands over frames as received ([`Relay::handle_frame`]). A Publish of the usual shape
//! is routed from its bytes ([`slim_proto::frame`]): the header is read in place and each
//! receiver's copy is a rewritten header in front of the shared, untouched rest. Every other frame
//! is decoded with prost and goes through [`Relay::handle`]; both paths apply the same steps in
//! the same order and share the routing decision.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message as _;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use slim_proto::frame::{EgressFrame, PublishFrame};
use slim_proto::pb::{self, message::MessageType};
use slim_proto::validate::{self, Kind, ValidationError};
use tracing::{debug, info, warn};

use crate::auth::Principal;
use crate::mutants::{self, Fault};
use crate::revocation::RevocationList;

pub mod forward;
pub mod link;
pub mod subscriptions;

use link::{LinkState, MacCheckError};
use subscriptions::{SubscribeError, SubscriptionTable, UnsubscribeError};

/// A connection's index. Indices are never reused, so a stale `forward_to` can never reach a
/// newer connection (SLIM-ROUTE-011).
pub type ConnId = u64;

/// What the relay is configured to do.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Require the per-link header MAC (SLIM-MAC-001). Default true, as the real node.
    pub require_header_mac: bool,
    /// Sent as `node_id` in negotiation replies.
    pub node_id: String,
    /// How long a new stream may stay silent before it is closed (SLIM-LINK-006).
    pub negotiation_timeout: Duration,
    /// Most subscription records one connection may hold (SLIM-SUB-009).
    pub max_subscriptions_per_connection: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            require_header_mac: true,
            node_id: "slim-relay".to_string(),
            negotiation_timeout: Duration::from_secs(5),
            max_subscriptions_per_connection: 10_000,
        }
    }
}

/// A gRPC status class for closing a link; the shell maps it to a `tonic::Code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// The peer sent something the protocol forbids (bad negotiation, undecodable frame).
    InvalidArgument,
    /// The peer did not negotiate in time.
    DeadlineExceeded,
    /// The peer exceeded a limit (message size).
    ResourceExhausted,
    /// The peer asked for something this relay does not implement (PEER links, PQ hybrid).
    Unimplemented,
    /// The relay is shutting down.
    Unavailable,
    /// The link's credential was revoked or expired (SLIM-REV-004, SLIM-REV-005).
    Unauthenticated,
}

/// Why a link is being closed: a status class and a message that says what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    /// Status class.
    pub code: CloseCode,
    /// Human-readable explanation, sent as the gRPC status message.
    pub message: String,
}

/// What the shell must do after feeding the relay.
// `Send` is the hot variant and `Close` is rare: boxing the message would cost an allocation per
// delivered copy to save space in the rare case.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Queue `message` on connection `conn`.
    Send {
        /// Destination connection.
        conn: ConnId,
        /// The message, already signed for that link.
        message: pb::Message,
    },
    /// Queue an already encoded Publish on connection `conn` (the frame path:
    /// [`Relay::handle_frame`]).
    SendFrame {
        /// Destination connection.
        conn: ConnId,
        /// The frame, already signed for that link.
        frame: EgressFrame,
    },
    /// End connection `conn` with a gRPC status. The relay has already forgotten it.
    Close {
        /// Connection to close.
        conn: ConnId,
        /// Status to end its stream with.
        reason: CloseReason,
    },
}

impl Output {
    /// The connection a delivery (a `Send` or `SendFrame`) goes to; `None` for a `Close`.
    pub fn receiver(&self) -> Option<ConnId> {
        match self {
            Output::Send { conn, .. } | Output::SendFrame { conn, .. } => Some(*conn),
            Output::Close { .. } => None,
        }
    }
}

/// Counters for operators and tests (what was routed, what was dropped and why).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Links that completed negotiation.
    pub links_established: u64,
    /// Publishes received on established links.
    pub publishes_received: u64,
    /// Copies of publishes sent to subscribers.
    pub publishes_delivered: u64,
    /// Subscribes installed.
    pub subscribes: u64,
    /// Unsubscribes applied.
    pub unsubscribes: u64,
    /// Messages dropped because they were structurally invalid.
    pub dropped_invalid: u64,
    /// Frames that did not decode as a `Message`; each ended its link (SLIM-TRANS-005).
    pub undecodable_frames: u64,
    /// Messages dropped because their header MAC was missing or wrong.
    pub dropped_bad_mac: u64,
    /// Messages dropped because their TTL ran out.
    pub dropped_ttl: u64,
    /// Publishes that matched no subscriber.
    pub dropped_no_route: u64,
}

/// How many entries each of the core's tables holds ([`Relay::table_sizes`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableSizes {
    /// Open links, pending or established.
    pub links: usize,
    /// Distinct name prefixes with at least one subscriber.
    pub prefixes: usize,
    /// Distinct (prefix, id) entries.
    pub ids: usize,
    /// Links holding at least one subscription.
    pub subscribed_links: usize,
    /// Subscription records over all links.
    pub subscriptions: usize,
    /// Links with a JWT credential on record.
    pub credentials: usize,
}

/// The relay state machine.
pub struct Relay {
    config: RelayConfig,
    rng: ChaCha20Rng,
    next_conn: ConnId,
    links: BTreeMap<ConnId, LinkState>,
    table: SubscriptionTable,
    stats: Stats,
    /// [`Fault::DeliveriesReordered`]: the delivery each link has held back (always empty
    /// otherwise).
    held: mutants::Held<Output>,
    /// The JWT each link authenticated with, and when it expires (SLIM-REV-004/005).
    credentials: BTreeMap<ConnId, (Principal, Instant)>,
}

impl Relay {
    /// A relay whose link keys come from a generator seeded with `seed` (the shell passes OS
    /// randomness; tests pass a constant).
    pub fn new(config: RelayConfig, seed: [u8; 32]) -> Self {
        Self {
            config,
            rng: ChaCha20Rng::from_seed(seed),
            next_conn: 0,
            links: BTreeMap::new(),
            table: SubscriptionTable::default(),
            stats: Stats::default(),
            held: mutants::Held::default(),
            credentials: BTreeMap::new(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// Counters since start.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Number of open connections (pending or established).
    pub fn connections(&self) -> usize {
        self.links.len()
    }

    /// The sizes of every table the core keeps, for leak checks (soak, fuzzing): after all
    /// links close, each of them is zero.
    pub fn table_sizes(&self) -> TableSizes {
        let (prefixes, ids, subscribed_links, subscriptions) = self.table.sizes();
        TableSizes {
            links: self.links.len(),
            prefixes,
            ids,
            subscribed_links,
            subscriptions,
            credentials: self.credentials.len(),
        }
    }

    /// Number of subscription records held by `conn`.
    pub fn subscription_count(&self, conn: ConnId) -> usize {
        self.table.count(conn)
    }

    /// A new stream was accepted: it must negotiate before `now + negotiation_timeout`.
    pub fn open(&mut self, now: Instant) -> ConnId {
        let conn = self.next_conn;
        self.next_conn += 1;
        self.links.insert(
            conn,
            LinkState::Pending {
                deadline: now + self.config.negotiation_timeout,
            },
        );
        conn
    }

    /// [`Relay::open`] for a stream authenticated with a JWT naming `principal`, whose `exp` is
    /// at `expires_at` on the shell's clock: it is ended when that passes (SLIM-REV-005) or when
    /// a revocation names it ([`Relay::apply_revocations`], SLIM-REV-004).
    pub fn open_authenticated(
        &mut self,
        now: Instant,
        principal: Principal,
        expires_at: Instant,
    ) -> ConnId {
        let conn = self.open(now);
        let expires_at = mutants::link_expiry(now, expires_at);
        self.credentials.insert(conn, (principal, expires_at));
        conn
    }

    /// The principal `conn` authenticated as, if it used a JWT.
    pub fn principal(&self, conn: ConnId) -> Option<&Principal> {
        self.credentials.get(&conn).map(|(p, _)| p)
    }

    /// Ends every link whose credential `list` revokes with `UNAUTHENTICATED` "credential
    /// revoked: …", removing its subscriptions (SLIM-REV-004). Returns how many were ended.
    pub fn apply_revocations(&mut self, list: &RevocationList, out: &mut Vec<Output>) -> usize {
        let revoked: Vec<(ConnId, String)> = self
            .credentials
            .iter()
            .filter(|_| !mutants::on(Fault::RevocationNotEnforcedOnLiveStreams))
            .filter_map(|(conn, (p, _))| list.is_revoked(p).map(|r| (*conn, r.to_string())))
            .collect();
        let n = revoked.len();
        for (conn, reason) in revoked {
            if mutants::on(Fault::SubscriptionsKeptAfterRevocation) {
                self.links.remove(&conn); // the link goes, its subscriptions stay
            }
            self.close_with(
                conn,
                CloseCode::Unauthenticated,
                format!("credential revoked: {reason}"),
                out,
            );
        }
        n
    }

    /// The stream of `conn` ended (closed by the peer, reset, or failed to decode): forget the
    /// connection and every subscription it held (SLIM-SUB-008).
    pub fn close(&mut self, conn: ConnId) {
        self.credentials.remove(&conn);
        if self.links.remove(&conn).is_some() {
            let n = self.table.remove_connection(conn);
            debug!(conn, subscriptions = n, "connection state removed");
        }
    }

    /// Ends `conn` with `reason`: forgets it and tells the shell to close its stream.
    fn close_with(
        &mut self,
        conn: ConnId,
        code: CloseCode,
        message: String,
        out: &mut Vec<Output>,
    ) {
        info!(conn, ?code, %message, "closing link");
        if mutants::on(Fault::RoutesKeptOnErrorClose) {
            self.links.remove(&conn); // the link goes, its subscriptions stay
        }
        self.close(conn);
        out.push(Output::Close {
            conn,
            reason: CloseReason { code, message },
        });
    }

    /// The earliest time the relay wants [`Relay::handle_timeout`] to be called.
    /// That is the earliest negotiation deadline or credential expiry (SLIM-REV-005).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let expiry = self.credentials.values().map(|(_, at)| *at).min();
        if mutants::on(Fault::NoNegotiationTimeout) {
            return expiry;
        }
        let negotiation = self
            .links
            .values()
            .filter_map(|l| match l {
                LinkState::Pending { deadline } => Some(*deadline),
                LinkState::Established(_) => None,
            })
            .min();
        match (negotiation, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Closes every stream that did not negotiate before its deadline (SLIM-LINK-006), and every
    /// stream whose JWT has expired with `UNAUTHENTICATED` "token expired" (SLIM-REV-005).
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        let lapsed: Vec<(ConnId, u64)> = self
            .credentials
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(c, (p, _))| (*c, p.exp))
            .collect();
        for (conn, exp) in lapsed {
            self.close_with(
                conn,
                CloseCode::Unauthenticated,
                format!("token expired (exp {exp}); reconnect with a fresh token"),
                out,
            );
        }
        let expired: Vec<ConnId> = self
            .links
            .iter()
            .filter(|(_, l)| matches!(l, LinkState::Pending { deadline } if *deadline <= now))
            .map(|(c, _)| *c)
            .collect();
        for conn in expired {
            let secs = self.config.negotiation_timeout.as_secs_f64();
            self.close_with(
                conn,
                CloseCode::DeadlineExceeded,
                format!("no link negotiation received within {secs} s; send a LinkNegotiationPayload as the first message"),
                out,
            );
        }
    }

    /// Closes every connection because the relay is stopping.
    pub fn shutdown(&mut self, out: &mut Vec<Output>) {
        let conns: Vec<ConnId> = self.links.keys().copied().collect();
        for conn in conns {
            self.close_with(
                conn,
                CloseCode::Unavailable,
                "relay is shutting down".to_string(),
                out,
            );
        }
    }

    /// Feeds one frame (an encoded `Message`) received on `conn`.
    ///
    /// A Publish the frame path reads ([`PublishFrame::parse`]) on an established link is routed
    /// without being decoded; anything else is decoded and fed to [`Relay::handle`]. A frame that
    /// does not decode ends the link with `INVALID_ARGUMENT` naming the decode error
    /// (SLIM-TRANS-005); the connection's subscriptions are removed, other links are unaffected.
    pub fn handle_frame(
        &mut self,
        conn: ConnId,
        frame: Bytes,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        if mutants::on(Fault::SizeLimitOffByOne) && frame.len() >= slim_proto::MAX_MESSAGE_SIZE {
            let message = format!("message of {} bytes exceeds the limit", frame.len());
            return self.close_with(conn, CloseCode::ResourceExhausted, message, out);
        }
        // An expired credential whose timer has not fired yet: nothing more it sends is routed.
        if self
            .credentials
            .get(&conn)
            .is_some_and(|(_, at)| *at <= now)
        {
            return self.handle_timeout(now, out);
        }
        if matches!(self.links.get(&conn), Some(LinkState::Established(_)))
            && !mutants::frame_path_disabled()
        {
            if let Some(publish) = PublishFrame::parse(&frame) {
                self.on_publish_frame(conn, &publish, out);
                return;
            }
        }
        match pb::Message::decode(frame) {
            Ok(msg) => self.handle(conn, msg, now, out),
            Err(e) => {
                self.stats.undecodable_frames += 1;
                self.close_with(
                    conn,
                    CloseCode::InvalidArgument,
                    format!("could not decode a dataplane.proto.v1.Message: {e}"),
                    out,
                );
            }
        }
    }

    /// Feeds one decoded message received on `conn`.
    pub fn handle(&mut self, conn: ConnId, msg: pb::Message, now: Instant, out: &mut Vec<Output>) {
        match self.links.get(&conn) {
            None => debug!(conn, "message for an unknown connection ignored"),
            // The deadline passed but the timer has not fired yet: the answer is the same.
            Some(LinkState::Pending { deadline }) if *deadline <= now => {
                self.handle_timeout(now, out)
            }
            Some(LinkState::Pending { .. }) => self.negotiate(conn, &msg, out),
            Some(LinkState::Established(_)) => self.on_message(conn, msg, out),
        }
    }

    /// A message on an established link.
    fn on_message(&mut self, conn: ConnId, mut msg: pb::Message, out: &mut Vec<Output>) {
        let kind = match validate::validate(&msg) {
            Ok(kind) => kind,
            Err(ValidationError::MissingSessionHeader)
                if mutants::on(Fault::PublishWithoutSessionDelivered) =>
            {
                Kind::Publish
            }
            Err(ValidationError::MissingStringName(_))
                if mutants::on(Fault::SubscribeWithoutStringNameAccepted) =>
            {
                Kind::Subscribe
            }
            Err(ValidationError::MissingName {
                kind: "subscribe",
                field: "source",
            }) if mutants::on(Fault::SubscribeWithoutSourceAccepted) => Kind::Subscribe,
            Err(ValidationError::MissingHeader("subscribe"))
                if mutants::on(Fault::SubscribeWithoutHeaderPanics) =>
            {
                panic!("subscribe without header") // the `header.unwrap()` of a real bug
            }
            Err(err) => {
                if mutants::on(Fault::EmptyMessageEndsStream)
                    && err == ValidationError::NoMessageType
                {
                    return self.close_with(conn, CloseCode::InvalidArgument, err.to_string(), out);
                }
                self.stats.dropped_invalid += 1;
                warn!(conn, %err, "invalid message dropped");
                // A subscriber that asked for an ack learns why (SLIM-VAL-003).
                self.nack_if_requested(conn, &msg, AckError::Invalid(err), out);
                return;
            }
        };
        match kind {
            // A second negotiation on a live link is ignored (SLIM-LINK-009).
            Kind::Link => {
                if mutants::on(Fault::SecondNegotiationAnswered) {
                    return self.negotiate(conn, &msg, out);
                }
                debug!(conn, "link message on an established link ignored");
                return;
            }
            // This relay never waits for acks (it forwards no subscriptions).
            Kind::SubscriptionAck => {
                debug!(conn, "unsolicited subscription ack ignored");
                return;
            }
            Kind::Subscribe | Kind::Unsubscribe | Kind::Publish => {}
        }
        if let Err(err) = self.check_mac(conn, &msg) {
            self.stats.dropped_bad_mac += 1;
            warn!(conn, %err, "message with bad header MAC dropped");
            if mutants::on(Fault::MacRefusalNotAcked) {
                return;
            }
            self.nack_if_requested(conn, &msg, AckError::BadMac(err), out);
            return;
        }
        let Some(header) = validate::header_mut(&mut msg) else {
            return; // validate() guarantees a header for these kinds
        };
        // SLIM-ROUTE-009: record the ingress link; SLIM-ROUTE-010: one hop less, drop at zero.
        header.incoming_conn = Some(conn);
        let spared = mutants::on(Fault::TtlDroppedOnlyAtZero) && header.ttl == 1;
        if !mutants::on(Fault::TtlNotDecremented) {
            header.ttl = header.ttl.saturating_sub(1);
        }
        if header.ttl == 0 && !spared {
            self.stats.dropped_ttl += 1;
            debug!(conn, kind = ?kind, "ttl expired, message dropped");
            return;
        }
        match msg.message_type {
            Some(MessageType::Subscribe(s)) => self.on_subscribe(conn, s, out),
            Some(MessageType::Unsubscribe(u)) => self.on_unsubscribe(conn, u, out),
            Some(MessageType::Publish(_)) => self.on_publish(conn, msg, out),
            _ => {}
        }
    }

    /// Checks the header MAC of a Subscribe/Unsubscribe/Publish (SLIM-MAC-004, SLIM-MAC-005).
    fn check_mac(&self, conn: ConnId, msg: &pb::Message) -> Result<(), MacCheckError> {
        let Some(LinkState::Established(link)) = self.links.get(&conn) else {
            return Ok(());
        };
        let Some(header) = validate::header(msg) else {
            return Ok(());
        };
        let unchecked = match msg.message_type {
            Some(MessageType::Publish(_)) => mutants::on(Fault::PublishMacNotChecked),
            Some(MessageType::Subscribe(_)) => mutants::on(Fault::SubscribeMacNotChecked),
            _ => false,
        };
        if unchecked {
            return Ok(());
        }
        if mutants::on(Fault::MacVerifiedAfterTtl) {
            return link.check(
                &mutants::after_ttl_step(header),
                self.config.require_header_mac,
            );
        }
        if mutants::on(Fault::LaxUnsignedPublishDropped)
            && matches!(msg.message_type, Some(MessageType::Publish(_)))
        {
            return link.check(header, true); // a Publish is held to the strict rule
        }
        link.check(header, self.config.require_header_mac)
    }

    /// Sends a failed SubscriptionAck when `msg` is a Subscribe/Unsubscribe that asked for one.
    fn nack_if_requested(
        &self,
        conn: ConnId,
        msg: &pb::Message,
        error: AckError,
        out: &mut Vec<Output>,
    ) {
        let id = match &msg.message_type {
            Some(MessageType::Subscribe(s)) => s.subscription_id,
            Some(MessageType::Unsubscribe(u)) => u.subscription_id,
            _ => 0,
        };
        if id != 0 {
            out.push(ack(conn, id, Err(error)));
        }
    }
}

/// Why the relay refused a Subscribe or Unsubscribe. The text is what the failed
/// `SubscriptionAck.error` carries on the wire (SLIM-SUB-001, SLIM-SUB-005, SLIM-VAL-003), so it
/// must not change: clients and the conformance suite read it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// The message is structurally invalid (SLIM-VAL-003).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// Its header MAC is missing or wrong (SLIM-MAC-004, SLIM-MAC-005).
    #[error("header MAC rejected: {0}")]
    BadMac(#[from] MacCheckError),
    /// `recv_from` names no open connection (SLIM-SUB-010).
    #[error("connection not found: {0}")]
    ConnectionNotFound(ConnId),
    /// `recv_from` names another client's connection (SLIM-SUB-010).
    #[error(
        "recv_from {0} is another client's connection; a client may only subscribe on its own link"
    )]
    ForeignConnection(ConnId),
    /// `forward_to` is set: this relay has no peer links to propagate subscriptions to
    /// (SLIM-SUB-011).
    #[error(
        "forward_to on a subscription is not supported: slim-relay has no peer links to propagate it to"
    )]
    ForwardToUnsupported,
    /// The destination has no hashed form to route by.
    #[error("destination has no encoded name")]
    NoEncodedName,
    /// The subscription table refused the Subscribe (SLIM-SUB-009).
    #[error(transparent)]
    Subscribe(#[from] SubscribeError),
    /// The subscription table has no such record to remove (SLIM-SUB-005).
    #[error(transparent)]
    Unsubscribe(#[from] UnsubscribeError),
}

/// A SubscriptionAck for `conn` (SLIM-SUB-001): never routed, no header, no MAC. A refusal
/// carries its [`AckError`] text.
pub(crate) fn ack(conn: ConnId, subscription_id: u64, result: Result<(), AckError>) -> Output {
    let (success, error) = match result {
        Ok(()) => (true, String::new()),
        Err(e) => (false, e.to_string()),
    };
    Output::Send {
        conn,
        message: pb::Message {
            message_type: Some(MessageType::SubscriptionAck(pb::SubscriptionAck {
                subscription_id,
                success,
                error,
            })),
            metadata: Default::default(),
        },
    }
}

#[cfg(test)]
mod tests;
