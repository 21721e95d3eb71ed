//! The sans-IO half of the client link: [`ClientLink`] negotiates as the initiator, signs and
//! verifies header MACs, and keeps the subscription book (which names we want, under which
//! subscription id, whether the node acknowledged them).
//!
//! It is fed messages and `now` and returns messages to send and its next wake-up, so every rule
//! is tested message by message without a network (see `tests.rs`). The tokio driver
//! ([`super::connect`]) owns one and moves messages between it and the stream.
//!
//! Why re-subscribe with *fresh* ids after a reconnect: the node keys its records by connection,
//! so the old ids mean nothing on the new link, and fresh ones keep late acks from the old link
//! (there are none, but a log reader need not know that) from being mistaken for new ones.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use slim_proto::link::{self, LinkError, LinkKeyPair};
use slim_proto::mac::{LinkMac, MacError};
use slim_proto::messages;
use slim_proto::names::SlimName;
use slim_proto::pb::{self, message::MessageType};
use slim_proto::validate::{self, ValidationError};

/// How often an unacknowledged Subscribe or Unsubscribe is sent again.
pub const DEFAULT_SUBSCRIBE_RETRY: Duration = Duration::from_secs(1);

/// How many times a Subscribe or Unsubscribe is sent before it is reported as unacknowledged.
pub const DEFAULT_SUBSCRIBE_ATTEMPTS: u32 = 5;

/// A protocol problem on the link, found by [`ClientLink`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientLinkError {
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

/// What [`ClientLink::handle_timeout`] produced.
#[derive(Debug, Default)]
pub struct TimeoutOutput {
    /// Signed Subscribes/Unsubscribes to send again.
    pub resend: Vec<pb::Message>,
    /// Requests that ran out of attempts (they are forgotten).
    pub failed: Vec<ClientLinkError>,
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
pub struct ClientLink {
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

impl std::fmt::Debug for ClientLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientLink")
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
impl ClientLink {
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
    ) -> Result<Vec<pb::Message>, ClientLinkError> {
        let Phase::Negotiating { link_id, pair } = &self.phase else {
            return Err(ClientLinkError::NotNegotiating);
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
    pub fn seal(&self, mut msg: pb::Message) -> Result<pb::Message, ClientLinkError> {
        let Phase::Established { mac, .. } = &self.phase else {
            return Err(ClientLinkError::NotEstablished);
        };
        validate::validate(&msg)?;
        if let Some(header) = validate::header_mut(&mut msg) {
            mac.sign(header);
        }
        Ok(msg)
    }

    /// Handles a message from the node on an established link: verifies the MAC of a Publish
    /// (a bad one is dropped, counted and returned as [`ClientLinkError::BadMac`]), matches
    /// SubscriptionAcks to our requests (a refusal is [`ClientLinkError::SubscriptionRefused`]).
    pub fn handle_inbound(
        &mut self,
        msg: pb::Message,
        _now: Instant,
    ) -> Result<Inbound, ClientLinkError> {
        let Phase::Established { mac, .. } = &self.phase else {
            return Err(ClientLinkError::NotEstablished);
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
                    return Err(ClientLinkError::BadMac { kind, source });
                }
                Ok(Inbound::Publish(msg))
            }
            Some(MessageType::Subscribe(_)) | Some(MessageType::Unsubscribe(_)) => Ok(
                Inbound::Ignored("a subscription request routed to a client (ignored)"),
            ),
            None => Err(ValidationError::NoMessageType.into()),
        }
    }

    fn handle_ack(&mut self, ack: pb::SubscriptionAck) -> Result<Inbound, ClientLinkError> {
        let id = ack.subscription_id;
        if let Some(pending) = self.unsubs.remove(&id) {
            return if ack.success {
                Ok(Inbound::Unsubscribed {
                    name: pending.name,
                    subscription_id: id,
                })
            } else {
                Err(ClientLinkError::UnsubscribeRefused {
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
            Err(ClientLinkError::SubscriptionRefused {
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
                out.failed.push(ClientLinkError::Unacknowledged {
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
                    out.failed.push(ClientLinkError::Unacknowledged {
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
