//! The client's link to its SLIM node: link negotiation as the initiator, the header MAC, and the
//! subscriptions the node holds for us.
//!
//! Two layers, as the rest of the crate:
//!
//! - [`LinkState`] is sans-IO. It builds the negotiation request, checks the reply, derives the
//!   link's MAC key, signs what we send and verifies what we receive, and keeps the subscription
//!   book: which names we want, under which subscription id, whether the node acknowledged them.
//!   It is fed messages and `now` and returns messages to send and its next wake-up, so every rule
//!   is tested message by message without a network.
//! - [`connect`] is the tokio driver. It dials the node (h2c, `TCP_NODELAY`), opens
//!   `DataPlaneService/OpenChannel` with an optional `authorization` header, negotiates within a
//!   bound, then moves messages between the stream, the [`LinkState`] and the caller's channels.
//!   When the stream ends it reconnects with jittered exponential backoff, negotiates a fresh
//!   link, and re-subscribes every active name (the node forgets a connection's subscriptions when
//!   it ends, SLIM-SUB-*), then reports [`LinkEvent::Reconnected`]. Credential refusals
//!   (`UNAUTHENTICATED`, `PERMISSION_DENIED`) are fatal: retrying cannot fix them.
//!
//! Why re-subscribe with *fresh* ids after a reconnect: the node keys its records by connection,
//! so the old ids mean nothing on the new link, and fresh ones keep late acks from the old link
//! (there are none, but a log reader need not know that) from being mistaken for new ones.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use slim_proto::link::{self, LinkError, LinkKeyPair};
use slim_proto::mac::{LinkMac, MacError};
use slim_proto::messages;
use slim_proto::names::SlimName;
use slim_proto::pb::{self, message::MessageType};
use slim_proto::validate::{self, ValidationError};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};
use tracing::{debug, info, warn};

/// How often an unacknowledged Subscribe or Unsubscribe is sent again.
pub const DEFAULT_SUBSCRIBE_RETRY: Duration = Duration::from_secs(1);

/// How many times a Subscribe or Unsubscribe is sent before it is reported as unacknowledged.
pub const DEFAULT_SUBSCRIBE_ATTEMPTS: u32 = 5;

/// A protocol problem on the link, found by [`LinkState`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkStateError {
    /// The negotiation reply was malformed or did not match our request.
    #[error("link negotiation failed: {0}")]
    Negotiation(#[from] LinkError),
    /// A negotiation reply arrived while we were not negotiating.
    #[error("unexpected link negotiation reply: no negotiation is in progress")]
    NotNegotiating,
    /// Something had to be signed before the link was negotiated.
    #[error("the link is not negotiated yet")]
    NotEstablished,
    /// A message to sign or receive lacks what its kind needs.
    #[error("malformed message: {0}")]
    Invalid(#[from] ValidationError),
    /// An inbound message's header MAC did not verify: it was dropped.
    #[error("dropped an inbound {kind} whose header MAC is bad: {source}")]
    BadMac {
        /// Message kind.
        kind: &'static str,
        /// What was wrong with the tag.
        source: MacError,
    },
    /// The node refused a Subscribe; carries the node's error string.
    #[error("the node refused the subscription to {name} (id {subscription_id}): {error}")]
    SubscriptionRefused {
        /// The name we asked for.
        name: SlimName,
        /// The id we sent.
        subscription_id: u64,
        /// The node's `SubscriptionAck.error`.
        error: String,
    },
    /// The node refused an Unsubscribe; carries the node's error string.
    #[error(
        "the node refused to remove the subscription to {name} (id {subscription_id}): {error}"
    )]
    UnsubscribeRefused {
        /// The name.
        name: SlimName,
        /// The id we sent.
        subscription_id: u64,
        /// The node's `SubscriptionAck.error`.
        error: String,
    },
    /// A Subscribe or Unsubscribe was sent `attempts` times without an ack.
    #[error("the node did not acknowledge the {what} of {name} after {attempts} attempts")]
    Unacknowledged {
        /// `subscription` or `unsubscription`.
        what: &'static str,
        /// The name.
        name: SlimName,
        /// How many times it was sent.
        attempts: u32,
    },
}

/// What an inbound message meant.
// Publish is the common variant; boxing it would cost an allocation per received message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// A Publish for us, its MAC verified; hand it to the session endpoint.
    Publish(pb::Message),
    /// The node acknowledged our subscription to `name`.
    Subscribed {
        /// The name.
        name: SlimName,
        /// The acknowledged id.
        subscription_id: u64,
    },
    /// The node acknowledged the removal of our subscription to `name`.
    Unsubscribed {
        /// The name.
        name: SlimName,
        /// The acknowledged id.
        subscription_id: u64,
    },
    /// Nothing for us (a stray ack, a repeated negotiation, a Subscribe routed to us); says why.
    Ignored(&'static str),
}

/// What [`LinkState::handle_timeout`] produced.
#[derive(Debug, Default)]
pub struct TimeoutOutput {
    /// Signed Subscribes/Unsubscribes to send again.
    pub resend: Vec<pb::Message>,
    /// Requests that ran out of attempts (they are forgotten).
    pub failed: Vec<LinkStateError>,
}

/// Counters of the link state machine.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LinkStats {
    /// Inbound messages dropped because their header MAC did not verify.
    pub bad_mac_dropped: u64,
    /// Negotiations completed (1 + the number of reconnects).
    pub negotiations: u64,
}

/// One name we want the node to route to us.
#[derive(Debug)]
struct Wanted {
    /// How many callers asked for it (only the last unsubscribe is sent).
    refs: u32,
    /// Its subscription id on the current link (`None` while disconnected).
    id: Option<u64>,
    acked: bool,
    attempts: u32,
    retry_at: Option<Instant>,
}

/// An Unsubscribe waiting for its ack.
#[derive(Debug)]
struct PendingUnsub {
    name: SlimName,
    attempts: u32,
    retry_at: Instant,
}

// One per link, changed on (re)negotiation only: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
enum Phase {
    Disconnected,
    Negotiating {
        link_id: String,
        pair: Box<LinkKeyPair>,
    },
    Established {
        mac: LinkMac,
        peer_node_id: String,
    },
}

/// The sans-IO client link: negotiation, header MAC and the subscription book.
pub struct LinkState {
    rng: ChaCha20Rng,
    node_id: String,
    retry: Duration,
    max_attempts: u32,
    phase: Phase,
    wanted: HashMap<SlimName, Wanted>,
    by_id: HashMap<u64, SlimName>,
    unsubs: HashMap<u64, PendingUnsub>,
    stats: LinkStats,
}

impl std::fmt::Debug for LinkState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkState")
            .field("phase", &self.phase)
            .field("wanted", &self.wanted)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Phase::Disconnected => f.write_str("Disconnected"),
            Phase::Negotiating { link_id, .. } => write!(f, "Negotiating({link_id})"),
            Phase::Established { mac, peer_node_id } => {
                write!(f, "Established({}, node {peer_node_id})", mac.link_id())
            }
        }
    }
}

// Errors are rare (a refused subscription, a bad reply) and carry the name they concern; boxing
// them would make every caller's match clumsier for no gain on the hot path.
#[allow(clippy::result_large_err)]
impl LinkState {
    /// A disconnected link. `seed` feeds link ids, keys and subscription ids; `node_id` is
    /// announced in negotiation requests (the SDK sends `node-<uuid>`).
    pub fn new(seed: [u8; 32], node_id: String) -> Self {
        Self {
            rng: ChaCha20Rng::from_seed(seed),
            node_id,
            retry: DEFAULT_SUBSCRIBE_RETRY,
            max_attempts: DEFAULT_SUBSCRIBE_ATTEMPTS,
            phase: Phase::Disconnected,
            wanted: HashMap::new(),
            by_id: HashMap::new(),
            unsubs: HashMap::new(),
            stats: LinkStats::default(),
        }
    }

    /// Changes how often, and how many times, a Subscribe/Unsubscribe is sent without an ack.
    pub fn with_retry(mut self, interval: Duration, max_attempts: u32) -> Self {
        self.retry = interval;
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// Starts a negotiation on a new stream: a fresh link id (UUID v4) and X25519 key, EDGE,
    /// our SLIM version (SLIM-LINK-002..005). Any previous link is forgotten.
    pub fn start(&mut self) -> pb::Message {
        self.connection_lost();
        let mut id = [0u8; 16];
        self.rng.fill_bytes(&mut id);
        let link_id = uuid::Builder::from_random_bytes(id)
            .into_uuid()
            .hyphenated()
            .to_string();
        let pair = LinkKeyPair::generate(&mut self.rng);
        let request = link::negotiation_message(pb::LinkNegotiationPayload {
            link_id: link_id.clone(),
            slim_version: slim_proto::SLIM_VERSION.to_string(),
            is_reply: false,
            link_ecdh_public_key: pair.public_bytes().to_vec().into(),
            connection_type: pb::LinkConnectionType::Edge as i32,
            node_id: self.node_id.clone(),
            deployment_name: String::new(),
            link_kem_payload: None,
        });
        self.phase = Phase::Negotiating {
            link_id,
            pair: Box::new(pair),
        };
        request
    }

    /// Checks the node's negotiation reply and derives the MAC key (SLIM-LINK-007). On success
    /// returns the signed Subscribes of every active name, with fresh ids, to send right away.
    pub fn handle_reply(
        &mut self,
        msg: &pb::Message,
        now: Instant,
    ) -> Result<Vec<pb::Message>, LinkStateError> {
        let Phase::Negotiating { link_id, pair } = &self.phase else {
            return Err(LinkStateError::NotNegotiating);
        };
        let reply = link::negotiation_payload(msg)?;
        // We always send a key, so a key-less reply is a defect (strict).
        link::check_reply(reply, link_id, true)?;
        let mac = pair.derive_link_mac(&reply.link_ecdh_public_key, link_id)?;
        let peer_node_id = reply.node_id.clone();
        self.phase = Phase::Established { mac, peer_node_id };
        self.stats.negotiations += 1;
        // Re-issue every wanted name, oldest request first for a stable order.
        let mut names: Vec<SlimName> = self.wanted.keys().cloned().collect();
        names.sort_by_key(|n| n.to_string());
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let id = self.fresh_id();
            if let Some(w) = self.wanted.get_mut(&name) {
                w.id = Some(id);
                w.acked = false;
                w.attempts = 1;
                w.retry_at = Some(now + self.retry);
            }
            self.by_id.insert(id, name.clone());
            out.push(self.seal(messages::subscribe(&name, id))?);
        }
        Ok(out)
    }

    /// The stream ended: the node dropped our subscriptions with it. The wanted names are kept
    /// and re-subscribed by the next [`handle_reply`](Self::handle_reply).
    pub fn connection_lost(&mut self) {
        self.phase = Phase::Disconnected;
        self.by_id.clear();
        self.unsubs.clear();
        for w in self.wanted.values_mut() {
            w.id = None;
            w.acked = false;
            w.attempts = 0;
            w.retry_at = None;
        }
    }

    /// Whether the link is negotiated.
    pub fn is_established(&self) -> bool {
        matches!(self.phase, Phase::Established { .. })
    }

    /// The node's `node_id` from the negotiation reply, once negotiated.
    pub fn peer_node_id(&self) -> Option<&str> {
        match &self.phase {
            Phase::Established { peer_node_id, .. } => Some(peer_node_id),
            _ => None,
        }
    }

    /// Asks the node to route `name` to us. Returns the signed Subscribe (fresh non-zero
    /// subscription id) to send now, or `None` when there is nothing to send: the link is not
    /// negotiated yet (it is sent on negotiation) or the name is already subscribed.
    pub fn subscribe(&mut self, name: SlimName, now: Instant) -> Option<pb::Message> {
        if let Some(w) = self.wanted.get_mut(&name) {
            w.refs += 1;
            return None;
        }
        let mut w = Wanted {
            refs: 1,
            id: None,
            acked: false,
            attempts: 0,
            retry_at: None,
        };
        let msg = if self.is_established() {
            let id = self.fresh_id();
            w.id = Some(id);
            w.attempts = 1;
            w.retry_at = Some(now + self.retry);
            self.by_id.insert(id, name.clone());
            self.seal(messages::subscribe(&name, id)).ok()
        } else {
            None
        };
        self.wanted.insert(name, w);
        msg
    }

    /// Drops one request for `name`. When it was the last, returns the signed Unsubscribe (same
    /// id as its Subscribe, SLIM-SUB-004) if the node holds the subscription.
    pub fn unsubscribe(&mut self, name: &SlimName, now: Instant) -> Option<pb::Message> {
        let w = self.wanted.get_mut(name)?;
        w.refs = w.refs.saturating_sub(1);
        if w.refs > 0 {
            return None;
        }
        let w = self.wanted.remove(name)?;
        let id = w.id?;
        self.by_id.remove(&id);
        if !self.is_established() {
            return None;
        }
        self.unsubs.insert(
            id,
            PendingUnsub {
                name: name.clone(),
                attempts: 1,
                retry_at: now + self.retry,
            },
        );
        self.seal(messages::unsubscribe(name, id)).ok()
    }

    /// The names we want routed to us (re-subscribed after every reconnect).
    pub fn active_subscriptions(&self) -> impl Iterator<Item = &SlimName> {
        self.wanted.keys()
    }

    /// Whether the node acknowledged our subscription to `name` on the current link.
    pub fn is_subscribed(&self, name: &SlimName) -> bool {
        self.wanted.get(name).is_some_and(|w| w.acked)
    }

    /// Signs an outbound Subscribe, Unsubscribe or Publish with the link's key (SLIM-MAC-003).
    /// Nothing but `header_mac` is changed.
    pub fn seal(&self, mut msg: pb::Message) -> Result<pb::Message, LinkStateError> {
        let Phase::Established { mac, .. } = &self.phase else {
            return Err(LinkStateError::NotEstablished);
        };
        validate::validate(&msg)?;
        if let Some(header) = validate::header_mut(&mut msg) {
            mac.sign(header);
        }
        Ok(msg)
    }

    /// Handles a message from the node on an established link: verifies the MAC of a Publish
    /// (a bad one is dropped, counted and returned as [`LinkStateError::BadMac`]), matches
    /// SubscriptionAcks to our requests (a refusal is [`LinkStateError::SubscriptionRefused`]).
    pub fn handle_inbound(
        &mut self,
        msg: pb::Message,
        _now: Instant,
    ) -> Result<Inbound, LinkStateError> {
        let Phase::Established { mac, .. } = &self.phase else {
            return Err(LinkStateError::NotEstablished);
        };
        match &msg.message_type {
            Some(MessageType::SubscriptionAck(ack)) => Ok(self.handle_ack(ack.clone())?),
            Some(MessageType::Link(_)) => Ok(Inbound::Ignored(
                "a link message on a negotiated link (ignored, as the real node does)",
            )),
            Some(MessageType::Publish(_)) => {
                let kind = link::message_kind(&msg);
                validate::validate(&msg)?;
                let header = validate::header(&msg).ok_or(ValidationError::MissingHeader(kind))?;
                if let Err(source) = mac.verify(header) {
                    self.stats.bad_mac_dropped += 1;
                    return Err(LinkStateError::BadMac { kind, source });
                }
                Ok(Inbound::Publish(msg))
            }
            Some(MessageType::Subscribe(_)) | Some(MessageType::Unsubscribe(_)) => Ok(
                Inbound::Ignored("a subscription request routed to a client (ignored)"),
            ),
            None => Err(ValidationError::NoMessageType.into()),
        }
    }

    fn handle_ack(&mut self, ack: pb::SubscriptionAck) -> Result<Inbound, LinkStateError> {
        let id = ack.subscription_id;
        if let Some(pending) = self.unsubs.remove(&id) {
            return if ack.success {
                Ok(Inbound::Unsubscribed {
                    name: pending.name,
                    subscription_id: id,
                })
            } else {
                Err(LinkStateError::UnsubscribeRefused {
                    name: pending.name,
                    subscription_id: id,
                    error: ack.error,
                })
            };
        }
        let Some(name) = self.by_id.get(&id).cloned() else {
            return Ok(Inbound::Ignored(
                "a SubscriptionAck for an id we did not send",
            ));
        };
        if ack.success {
            if let Some(w) = self.wanted.get_mut(&name) {
                w.acked = true;
                w.retry_at = None;
            }
            Ok(Inbound::Subscribed {
                name,
                subscription_id: id,
            })
        } else {
            self.by_id.remove(&id);
            self.wanted.remove(&name);
            Err(LinkStateError::SubscriptionRefused {
                name,
                subscription_id: id,
                error: ack.error,
            })
        }
    }

    /// When the next unacknowledged request is due again.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.is_established() {
            return None;
        }
        let subs = self.wanted.values().filter_map(|w| w.retry_at);
        let unsubs = self.unsubs.values().map(|u| u.retry_at);
        subs.chain(unsubs).min()
    }

    /// Re-sends the requests whose ack is overdue, and gives up on those out of attempts.
    pub fn handle_timeout(&mut self, now: Instant) -> TimeoutOutput {
        let mut out = TimeoutOutput::default();
        if !self.is_established() {
            return out;
        }
        let mut due: Vec<(SlimName, u64)> = self
            .wanted
            .iter()
            .filter(|(_, w)| w.retry_at.is_some_and(|t| t <= now))
            .filter_map(|(n, w)| Some((n.clone(), w.id?)))
            .collect();
        due.sort_by_key(|(_, id)| *id);
        for (name, id) in due {
            let Some(w) = self.wanted.get_mut(&name) else {
                continue;
            };
            if w.attempts >= self.max_attempts {
                let attempts = w.attempts;
                self.wanted.remove(&name);
                self.by_id.remove(&id);
                out.failed.push(LinkStateError::Unacknowledged {
                    what: "subscription",
                    name,
                    attempts,
                });
                continue;
            }
            w.attempts += 1;
            w.retry_at = Some(now + self.retry);
            if let Ok(m) = self.seal(messages::subscribe(&name, id)) {
                out.resend.push(m);
            }
        }
        let mut due: Vec<u64> = self
            .unsubs
            .iter()
            .filter(|(_, u)| u.retry_at <= now)
            .map(|(id, _)| *id)
            .collect();
        due.sort_unstable();
        for id in due {
            let Some(u) = self.unsubs.get_mut(&id) else {
                continue;
            };
            if u.attempts >= self.max_attempts {
                if let Some(u) = self.unsubs.remove(&id) {
                    out.failed.push(LinkStateError::Unacknowledged {
                        what: "unsubscription",
                        name: u.name,
                        attempts: u.attempts,
                    });
                }
                continue;
            }
            u.attempts += 1;
            u.retry_at = now + self.retry;
            let name = u.name.clone();
            if let Ok(m) = self.seal(messages::unsubscribe(&name, id)) {
                out.resend.push(m);
            }
        }
        out
    }

    /// The counters.
    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    fn fresh_id(&mut self) -> u64 {
        loop {
            let id = self.rng.next_u64();
            if id != 0 && !self.by_id.contains_key(&id) && !self.unsubs.contains_key(&id) {
                return id;
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// The tokio driver.
// ------------------------------------------------------------------------------------------------

/// HTTP credentials for a node that requires them (sent as the `authorization` header).
#[derive(Clone, PartialEq, Eq)]
pub enum HttpAuth {
    /// `Basic base64(username:password)`.
    Basic {
        /// The user-id.
        username: String,
        /// The password.
        password: String,
    },
    /// `Bearer <token>`.
    Bearer(String),
}

impl std::fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret.
        match self {
            HttpAuth::Basic { username, .. } => write!(f, "Basic({username}:<redacted>)"),
            HttpAuth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

impl HttpAuth {
    /// The `authorization` header value.
    pub fn header_value(&self) -> String {
        use base64::Engine as _;
        match self {
            HttpAuth::Basic { username, password } => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            ),
            HttpAuth::Bearer(token) => format!("Bearer {token}"),
        }
    }
}

/// How the driver connects and reconnects.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    /// The node's URL, `http://host:port` (h2c).
    pub node: String,
    /// Credentials for nodes that require them.
    pub auth: Option<HttpAuth>,
    /// Bound for the first connection (retried until then), and for each connect-and-negotiate
    /// attempt afterwards.
    pub timeout: Duration,
    /// First reconnect delay (doubled after each failure, jittered).
    pub backoff_initial: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// RNG seed for link ids, keys, subscription ids and jitter.
    pub seed: [u8; 32],
    /// `node_id` announced in negotiation requests.
    pub node_id: String,
}

impl LinkOptions {
    /// Options with the defaults: 100 ms backoff doubling to 5 s, a random `node-<uuid>` id.
    pub fn new(node: impl Into<String>, timeout: Duration, seed: [u8; 32]) -> Self {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        let uuid = uuid::Builder::from_random_bytes(id).into_uuid();
        Self {
            node: node.into(),
            auth: None,
            timeout,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            seed,
            node_id: format!("node-{uuid}"),
        }
    }
}

/// Why the link could not be (re)established. [`LinkIoError::is_fatal`] says whether retrying
/// can help.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkIoError {
    /// The URL is not usable.
    #[error(
        "bad node URL {url:?}: {reason}; give it as http://host:port, e.g. http://127.0.0.1:46357"
    )]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `https://` was asked for.
    #[error("cannot connect to {url}: TLS is not supported yet; use an h2c node with http://")]
    TlsUnsupported {
        /// The URL given.
        url: String,
    },
    /// The node could not be reached (connection refused, no route, timeout).
    #[error("cannot reach the SLIM node at {url}: {reason}; is it running? start one with `cargo run --release --bin slim-relay`")]
    Unreachable {
        /// The URL.
        url: String,
        /// The transport's reason, e.g. "connection refused".
        reason: String,
    },
    /// The node refused our credentials (HTTP 401).
    #[error("the SLIM node at {url} refused the connection: UNAUTHENTICATED ({message}); pass the node's credentials with --auth-basic USER:PASS or --bearer TOKEN")]
    Unauthenticated {
        /// The URL.
        url: String,
        /// The node's status message.
        message: String,
    },
    /// The node refused us by policy (HTTP 403).
    #[error("the SLIM node at {url} refused the connection: PERMISSION_DENIED ({message}); these credentials are not allowed to connect")]
    PermissionDenied {
        /// The URL.
        url: String,
        /// The node's status message.
        message: String,
    },
    /// The node ended the call with another status.
    #[error("the SLIM node at {url} ended the channel: {code:?} ({message})")]
    Status {
        /// The URL.
        url: String,
        /// The gRPC code.
        code: Code,
        /// The status message.
        message: String,
    },
    /// The credentials cannot be sent as a header.
    #[error("the credentials cannot be sent in an HTTP header: {0}; use visible ASCII only")]
    BadCredentials(String),
    /// No negotiation reply in time.
    #[error("the SLIM node at {url} did not answer the link negotiation within {waited:?}; is it a SLIM node (DataPlaneService)?")]
    NegotiationTimeout {
        /// The URL.
        url: String,
        /// How long we waited.
        waited: Duration,
    },
    /// The node closed the stream instead of replying to our negotiation.
    #[error("the SLIM node at {url} closed the channel without answering the link negotiation; check that it speaks SLIM {}", slim_proto::SLIM_VERSION)]
    NegotiationRefused {
        /// The URL.
        url: String,
    },
    /// The reply was not acceptable.
    #[error("link negotiation with {url} failed: {source}")]
    Negotiation {
        /// The URL.
        url: String,
        /// What was wrong.
        source: LinkStateError,
    },
    /// The link task has stopped.
    #[error("the link to the SLIM node has stopped")]
    Stopped,
}

impl LinkIoError {
    /// Whether retrying cannot help (bad URL or credentials, refused by policy). Other errors are
    /// retried by the reconnect loop.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            LinkIoError::BadUrl { .. }
                | LinkIoError::TlsUnsupported { .. }
                | LinkIoError::Unauthenticated { .. }
                | LinkIoError::PermissionDenied { .. }
                | LinkIoError::BadCredentials(_)
                | LinkIoError::Stopped
        )
    }
}

/// What the caller asks the link task to do.
// Publish is the common variant; boxing it would cost an allocation per sent message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum LinkCommand {
    /// Subscribe `name` (acked asynchronously: see [`LinkEvent::Subscribed`]).
    Subscribe(SlimName),
    /// Remove a subscription.
    Unsubscribe(SlimName),
    /// Sign and send a Publish. While reconnecting, a bounded number are kept and sent after
    /// the link is back; beyond that they are dropped (reliable sessions retransmit).
    Publish(pb::Message),
}

/// What the link task reports.
// Publish is the common variant; boxing it would cost an allocation per received message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum LinkEvent {
    /// An inbound Publish, its MAC verified.
    Publish(pb::Message),
    /// The node acknowledged a subscription (also after each reconnect).
    Subscribed(SlimName),
    /// The node acknowledged an unsubscription.
    Unsubscribed(SlimName),
    /// The stream ended; the task is reconnecting.
    Disconnected {
        /// Why the stream ended.
        reason: String,
    },
    /// The link is back: re-negotiated and every active subscription re-issued.
    Reconnected {
        /// The node's URL.
        node: String,
    },
    /// A non-fatal protocol problem (bad MAC, refused or unacknowledged subscription).
    Problem(LinkStateError),
    /// The link gave up (credentials refused); the task has ended.
    Fatal(LinkIoError),
}

/// Counters of a running link, readable from any task.
#[derive(Debug, Default)]
pub struct SharedLinkStats {
    /// Inbound messages dropped for a bad header MAC.
    pub bad_mac_dropped: AtomicU64,
    /// Successful reconnects.
    pub reconnects: AtomicU64,
    /// Publishes dropped because the link was down and the buffer full.
    pub dropped_while_down: AtomicU64,
}

/// The caller's handle on a running link task. Dropping it stops the task.
#[derive(Debug)]
pub struct LinkHandle {
    commands: mpsc::Sender<LinkCommand>,
    stats: Arc<SharedLinkStats>,
    peer_node_id: String,
    task: tokio::task::JoinHandle<()>,
}

impl LinkHandle {
    /// Queues a command; fails with [`LinkIoError::Stopped`] when the task has ended.
    pub async fn send(&self, cmd: LinkCommand) -> Result<(), LinkIoError> {
        self.commands
            .send(cmd)
            .await
            .map_err(|_| LinkIoError::Stopped)
    }

    /// The link's counters.
    pub fn stats(&self) -> &SharedLinkStats {
        &self.stats
    }

    /// The node's `node_id` from the first negotiation.
    pub fn peer_node_id(&self) -> &str {
        &self.peer_node_id
    }
}

impl Drop for LinkHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Publishes kept while reconnecting.
const DOWN_BUFFER: usize = 1024;

/// The open stream of one link.
struct Conn {
    tx: mpsc::Sender<pb::Message>,
    rx: Streaming<pb::Message>,
}

/// Connects to the node (retrying until `opts.timeout` while it is unreachable), negotiates,
/// and starts the link task. Returns its handle and the stream of [`LinkEvent`]s.
pub async fn connect(
    opts: LinkOptions,
) -> Result<(LinkHandle, mpsc::UnboundedReceiver<LinkEvent>), LinkIoError> {
    check_url(&opts.node)?;
    let mut state = LinkState::new(opts.seed, opts.node_id.clone());
    let mut jitter = ChaCha20Rng::from_seed(opts.seed);
    jitter.set_stream(1);
    let deadline = tokio::time::Instant::now() + opts.timeout;
    let mut delay = opts.backoff_initial;
    let (conn, _) = loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let attempt = tokio::time::timeout(left, open(&opts, &mut state, left)).await;
        match attempt {
            Ok(Ok(ok)) => break ok,
            Ok(Err(e)) if e.is_fatal() => return Err(e),
            // Out of time: the last attempt's error says what is wrong.
            Ok(Err(e)) if tokio::time::Instant::now() >= deadline => return Err(e),
            Ok(Err(e)) => debug!(error = %e, "node not reachable yet, retrying"),
            Err(_) => {
                return Err(LinkIoError::Unreachable {
                    url: opts.node.clone(),
                    reason: format!("no answer within {:?}", opts.timeout),
                })
            }
        }
        // The last attempt is made at the deadline, so "unreachable" means "for the whole bound".
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        tokio::time::sleep(jittered(&mut jitter, delay).min(left)).await;
        delay = (delay * 2).min(opts.backoff_max);
    };
    let peer_node_id = state.peer_node_id().unwrap_or_default().to_string();
    info!(node = %opts.node, peer_node_id = %peer_node_id, "link established");
    let (cmd_tx, cmd_rx) = mpsc::channel(256);
    // Events are unbounded and commands bounded: the link task never waits on its consumer, so
    // the two tasks cannot block each other in a cycle; backpressure goes to the sender side.
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let stats = Arc::new(SharedLinkStats::default());
    let task = tokio::spawn(
        Driver {
            opts,
            state,
            jitter,
            commands: cmd_rx,
            events: ev_tx,
            stats: stats.clone(),
            down_buffer: VecDeque::new(),
        }
        .run(conn),
    );
    Ok((
        LinkHandle {
            commands: cmd_tx,
            stats,
            peer_node_id,
            task,
        },
        ev_rx,
    ))
}

#[allow(clippy::result_large_err)] // see LinkState
fn check_url(url: &str) -> Result<(), LinkIoError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| LinkIoError::BadUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(LinkIoError::TlsUnsupported {
                url: url.to_string(),
            })
        }
        Some(other) => {
            return Err(LinkIoError::BadUrl {
                url: url.to_string(),
                reason: format!("scheme {other}:// is not supported"),
            })
        }
        None => {
            return Err(LinkIoError::BadUrl {
                url: url.to_string(),
                reason: "no scheme".into(),
            })
        }
    }
    if uri.host().is_none() {
        return Err(LinkIoError::BadUrl {
            url: url.to_string(),
            reason: "no host".into(),
        });
    }
    Ok(())
}

fn jittered(rng: &mut ChaCha20Rng, d: Duration) -> Duration {
    // Uniform in [d/2, d): reconnecting clients do not stampede a restarted node together.
    let half = d / 2;
    let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1);
    half + Duration::from_nanos(rng.next_u64() % nanos)
}

/// The innermost transport reason of a tonic error, in words ("connection refused").
fn transport_reason(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut last = err.to_string();
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
                std::io::ErrorKind::TimedOut => "connection timed out".into(),
                _ => io.to_string(),
            };
        }
        last = e.to_string();
        cur = e.source();
    }
    last
}

fn status_error(url: &str, status: &Status) -> LinkIoError {
    let url = url.to_string();
    let message = status.message().to_string();
    match status.code() {
        Code::Unauthenticated => LinkIoError::Unauthenticated { url, message },
        Code::PermissionDenied => LinkIoError::PermissionDenied { url, message },
        // A call that never reached the node (the connection broke while opening the channel).
        Code::Unavailable | Code::Unknown if std::error::Error::source(status).is_some() => {
            LinkIoError::Unreachable {
                reason: std::error::Error::source(status).map_or(message, transport_reason),
                url,
            }
        }
        code => LinkIoError::Status { url, code, message },
    }
}

#[allow(clippy::result_large_err)] // see LinkState
/// One connect-and-negotiate attempt, each step bounded by `bound`. Returns the open stream and
/// the re-subscriptions to send.
async fn open(
    opts: &LinkOptions,
    state: &mut LinkState,
    bound: Duration,
) -> Result<(Conn, Vec<pb::Message>), LinkIoError> {
    let url = &opts.node;
    let endpoint = tonic::transport::Endpoint::from_shared(url.clone())
        .map_err(|e| LinkIoError::BadUrl {
            url: url.clone(),
            reason: transport_reason(&e),
        })?
        .tcp_nodelay(true)
        .connect_timeout(bound)
        .http2_keep_alive_interval(Duration::from_secs(120))
        .keep_alive_timeout(Duration::from_secs(20));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| LinkIoError::Unreachable {
            url: url.clone(),
            reason: transport_reason(&e),
        })?;
    let mut client = pb::data_plane_service_client::DataPlaneServiceClient::new(channel)
        .max_decoding_message_size(slim_proto::MAX_MESSAGE_SIZE);
    let (tx, rx) = mpsc::channel(256);
    tx.send(state.start())
        .await
        .map_err(|_| LinkIoError::Stopped)?;
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(auth) = &opts.auth {
        let value = auth
            .header_value()
            .parse()
            .map_err(|_| LinkIoError::BadCredentials("not a valid header value".into()))?;
        request.metadata_mut().insert("authorization", value);
    }
    let response = client
        .open_channel(request)
        .await
        .map_err(|s| status_error(url, &s))?;
    let mut rx = response.into_inner();
    let reply = match tokio::time::timeout(bound, rx.message()).await {
        Err(_) => {
            return Err(LinkIoError::NegotiationTimeout {
                url: url.clone(),
                waited: bound,
            })
        }
        Ok(Ok(Some(m))) => m,
        Ok(Ok(None)) => return Err(LinkIoError::NegotiationRefused { url: url.clone() }),
        Ok(Err(s)) => return Err(status_error(url, &s)),
    };
    let resubscribe = state
        .handle_reply(&reply, Instant::now())
        .map_err(|source| LinkIoError::Negotiation {
            url: url.clone(),
            source,
        })?;
    for m in &resubscribe {
        tx.send(m.clone()).await.map_err(|_| LinkIoError::Stopped)?;
    }
    Ok((Conn { tx, rx }, resubscribe))
}

/// Why the pump stopped.
enum Ended {
    /// The caller dropped its handle.
    Shutdown,
    /// The stream ended; reconnect.
    Lost(String),
    /// Give up.
    Fatal(LinkIoError),
}

struct Driver {
    opts: LinkOptions,
    state: LinkState,
    jitter: ChaCha20Rng,
    commands: mpsc::Receiver<LinkCommand>,
    events: mpsc::UnboundedSender<LinkEvent>,
    stats: Arc<SharedLinkStats>,
    down_buffer: VecDeque<pb::Message>,
}

impl Driver {
    async fn run(mut self, mut conn: Conn) {
        loop {
            let reason = match self.pump(&mut conn).await {
                Ended::Shutdown => return,
                Ended::Fatal(e) => {
                    let _ = self.events.send(LinkEvent::Fatal(e));
                    return;
                }
                Ended::Lost(reason) => reason,
            };
            warn!(node = %self.opts.node, %reason, "link lost, reconnecting");
            self.state.connection_lost();
            if self
                .events
                .send(LinkEvent::Disconnected { reason })
                .is_err()
            {
                return;
            }
            conn = match self.reconnect().await {
                Some(c) => c,
                None => return,
            };
        }
    }

    /// Reconnects with jittered exponential backoff, handling commands while waiting. `None`
    /// when the caller went away or a fatal error was reported.
    async fn reconnect(&mut self) -> Option<Conn> {
        let mut delay = self.opts.backoff_initial;
        loop {
            let wait = tokio::time::sleep(jittered(&mut self.jitter, delay));
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    cmd = self.commands.recv() => match cmd {
                        None => return None,
                        Some(cmd) => self.while_down(cmd),
                    },
                }
            }
            let bound = self.opts.timeout;
            match open(&self.opts, &mut self.state, bound).await {
                Ok((conn, _)) => {
                    self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    info!(node = %self.opts.node, "link re-established; subscriptions re-issued");
                    for m in std::mem::take(&mut self.down_buffer) {
                        match self.state.seal(m) {
                            Ok(m) => {
                                if conn.tx.send(m).await.is_err() {
                                    break;
                                }
                            }
                            Err(e) => debug!(error = %e, "buffered publish not sent"),
                        }
                    }
                    let node = self.opts.node.clone();
                    if self.events.send(LinkEvent::Reconnected { node }).is_err() {
                        return None;
                    }
                    return Some(conn);
                }
                Err(e) if e.is_fatal() => {
                    let _ = self.events.send(LinkEvent::Fatal(e));
                    return None;
                }
                Err(e) => {
                    debug!(error = %e, ?delay, "reconnect attempt failed");
                    delay = (delay * 2).min(self.opts.backoff_max);
                }
            }
        }
    }

    fn while_down(&mut self, cmd: LinkCommand) {
        let now = Instant::now();
        match cmd {
            // Not established: these only update the book; nothing to send.
            LinkCommand::Subscribe(name) => drop(self.state.subscribe(name, now)),
            LinkCommand::Unsubscribe(name) => drop(self.state.unsubscribe(&name, now)),
            LinkCommand::Publish(m) => {
                if self.down_buffer.len() < DOWN_BUFFER {
                    self.down_buffer.push_back(m);
                } else {
                    self.stats
                        .dropped_while_down
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    async fn pump(&mut self, conn: &mut Conn) -> Ended {
        loop {
            let wake = self.state.poll_timeout();
            let sleep = async {
                match wake {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            let mut to_send = Vec::new();
            tokio::select! {
                item = conn.rx.message() => match item {
                    Ok(Some(msg)) => {
                        let ev = match self.state.handle_inbound(msg, Instant::now()) {
                            Ok(Inbound::Publish(m)) => Some(LinkEvent::Publish(m)),
                            Ok(Inbound::Subscribed { name, .. }) => Some(LinkEvent::Subscribed(name)),
                            Ok(Inbound::Unsubscribed { name, .. }) => Some(LinkEvent::Unsubscribed(name)),
                            Ok(Inbound::Ignored(why)) => {
                                debug!(why, "inbound message ignored");
                                None
                            }
                            Err(e) => {
                                if matches!(e, LinkStateError::BadMac { .. }) {
                                    self.stats.bad_mac_dropped.fetch_add(1, Ordering::Relaxed);
                                }
                                warn!(error = %e, "inbound problem");
                                Some(LinkEvent::Problem(e))
                            }
                        };
                        if let Some(ev) = ev {
                            if self.events.send(ev).is_err() {
                                return Ended::Shutdown;
                            }
                        }
                    }
                    Ok(None) => return Ended::Lost("the node closed the stream".into()),
                    Err(status) => {
                        let e = status_error(&self.opts.node, &status);
                        if e.is_fatal() {
                            return Ended::Fatal(e);
                        }
                        return Ended::Lost(format!("{:?}: {}", status.code(), status.message()));
                    }
                },
                cmd = self.commands.recv() => {
                    let now = Instant::now();
                    match cmd {
                        None => return Ended::Shutdown,
                        Some(LinkCommand::Subscribe(name)) => to_send.extend(self.state.subscribe(name, now)),
                        Some(LinkCommand::Unsubscribe(name)) => to_send.extend(self.state.unsubscribe(&name, now)),
                        Some(LinkCommand::Publish(m)) => match self.state.seal(m) {
                            Ok(m) => to_send.push(m),
                            Err(e) => {
                                warn!(error = %e, "publish not sent");
                                let _ = self.events.send(LinkEvent::Problem(e));
                            }
                        },
                    }
                }
                _ = sleep => {
                    let out = self.state.handle_timeout(Instant::now());
                    to_send.extend(out.resend);
                    for e in out.failed {
                        warn!(error = %e, "request not acknowledged");
                        if self.events.send(LinkEvent::Problem(e)).is_err() {
                            return Ended::Shutdown;
                        }
                    }
                }
            }
            for m in to_send {
                if conn.tx.send(m).await.is_err() {
                    return Ended::Lost("the request stream closed".into());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
