//! Target `relay`: the sans-IO relay core ([`Relay`]) driven by sequences of operations on up
//! to [`SLOTS`] links at once.
//!
//! Layout: one configuration byte, then operations until the input ends. An operation is one
//! byte, `kind | slot << 4 | flag << 7` (kind in the low nibble, [`op`] builds it), followed by
//! its arguments:
//!
//! | kind | operation | arguments |
//! |---|---|---|
//! | [`OPEN`] | a new stream on the slot (if it has none) | |
//! | [`OPEN_AUTH`] | the same, authenticated with a JWT that expires | `u16` lifetime in ms |
//! | [`NEGOTIATE`] | a valid negotiation request (flag: with a key) | |
//! | [`FRAME`], [`FRAME2`] | raw frame bytes | chunk |
//! | [`SIGNED`], [`SIGNED2`] | frame bytes decoded, header signed with the slot's link key, re-encoded | chunk |
//! | [`SUBSCRIBE`], [`UNSUBSCRIBE`] | a signed (Un)Subscribe of a name from a fixed table | name, subscription id, flags |
//! | [`PUBLISH`] | a signed Publish (flag: through [`Relay::handle`] instead of the frame path) | name, fanout, ttl, flags |
//! | [`ADVANCE`] | time passes, timers run | `u16` ms |
//! | [`CLOSE`] | the slot's stream ends | |
//! | [`STALE`] | raw frame bytes on the slot's *last closed* connection | chunk |
//! | [`REVOKE`] | a revocation list naming the slot's JWT subject | |
//! | [`SHUTDOWN`] | the relay stops | |
//! | [`DECODED`] | frame bytes decoded and fed to [`Relay::handle`] | chunk |
//!
//! A chunk is a `u16` length and that many bytes ([`crate::input`]). Configuration byte: bit 0
//! `require_header_mac`; bits 1–3 the subscription limit per connection (1–8) unless bit 4 asks
//! for the default (10 000); bits 5–7 the negotiation timeout (0.5–4 s).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message as _;
use slim_proto::link::{self, LinkKeyPair};
use slim_proto::mac::LinkMac;
use slim_proto::names::{SlimName, NULL_ID};
use slim_proto::pb::{self, message::MessageType};
use slim_proto::validate::{self, Kind};
use slim_reference::auth::Principal;
use slim_reference::relay::{ConnId, Output, Relay, RelayConfig, TableSizes};
use slim_reference::revocation::{Reason, RevocationList};

use crate::input::Input;

/// Links open at once, at most (one per slot).
pub const SLOTS: usize = 8;
/// Streams one input may open in all. Each costs the relay a fixed amount of state that no
/// frame pays for (in the real shell, a whole HTTP/2 stream), so it is bounded here and in
/// [`crate::targets::RELAY_BOUND`]'s fixed part rather than in its per-byte part.
pub const MAX_OPENS: usize = 24;

/// Operation kinds (low nibble of an operation byte).
pub const OPEN: u8 = 0;
/// See the module documentation.
pub const OPEN_AUTH: u8 = 1;
/// See the module documentation.
pub const NEGOTIATE: u8 = 2;
/// See the module documentation.
pub const FRAME: u8 = 3;
/// See the module documentation.
pub const SIGNED: u8 = 4;
/// See the module documentation.
pub const SUBSCRIBE: u8 = 5;
/// See the module documentation.
pub const UNSUBSCRIBE: u8 = 6;
/// See the module documentation.
pub const PUBLISH: u8 = 7;
/// See the module documentation.
pub const ADVANCE: u8 = 8;
/// See the module documentation.
pub const CLOSE: u8 = 9;
/// See the module documentation.
pub const STALE: u8 = 10;
/// See the module documentation.
pub const REVOKE: u8 = 11;
/// See the module documentation.
pub const SHUTDOWN: u8 = 12;
/// See the module documentation.
pub const DECODED: u8 = 13;
/// Same as [`FRAME`] (raw frames get two of the sixteen kinds).
pub const FRAME2: u8 = 14;
/// Same as [`SIGNED`].
pub const SIGNED2: u8 = 15;

/// The operation byte for `kind` on `slot`, with `flag`.
pub fn op(kind: u8, slot: usize, flag: bool) -> u8 {
    (kind & 0x0f) | (((slot % SLOTS) as u8) << 4) | (u8::from(flag) << 7)
}

/// The configuration byte: `strict` MAC, subscription `limit` (1–8, or `None` for the default),
/// negotiation timeout step `timeout` (0–7, × 0.5 s + 0.5 s).
pub fn config_byte(strict: bool, limit: Option<u8>, timeout: u8) -> u8 {
    let limit = match limit {
        None => 0x10,
        Some(n) => (n.clamp(1, 8) - 1) << 1,
    };
    u8::from(strict) | limit | ((timeout & 7) << 5)
}

/// Names of the fixed table the compact operations use: four services, each as the wildcard
/// and with ids 1 to 3.
pub fn table_name(n: u8) -> SlimName {
    const SERVICES: [&str; 4] = ["alpha", "beta", "gamma", "delta"];
    let name = SlimName::new("org", "fuzz", SERVICES[usize::from(n & 3)]);
    match (n >> 2) & 3 {
        0 => name.with_id(NULL_ID),
        k => name.with_id(u128::from(k)),
    }
}

/// Flags of [`SUBSCRIBE`], [`UNSUBSCRIBE`] and [`PUBLISH`]: `recv_from` = own connection.
pub const F_RECV_FROM_SELF: u8 = 1;
/// `recv_from` = the connection of the slot in bits 4–6.
pub const F_RECV_FROM_OTHER: u8 = 2;
/// `forward_to` = the connection of the slot in bits 4–6.
pub const F_FORWARD_TO: u8 = 4;
/// The destination without its string form.
pub const F_NO_STR_NAME: u8 = 8;

/// The peer key pair of each slot (the harness plays the client).
fn peer_keys() -> &'static [LinkKeyPair] {
    static KEYS: OnceLock<Vec<LinkKeyPair>> = OnceLock::new();
    KEYS.get_or_init(|| {
        (0..SLOTS)
            .map(|i| LinkKeyPair::from_secret_bytes([i as u8 + 1; 32]))
            .collect()
    })
}

/// The MAC key the harness (the peer on `slot`) derives from the relay's reply, computed here
/// from the specification rather than by slim-proto: `HKDF-SHA256(salt = link id, ikm =
/// X25519(slot secret, relay public), info = "SLIM-DP-inter-node-hmac-v1")` (WIRE.md). The
/// X25519 results are cached: the relay's generator is seeded, so the same few relay keys come
/// back in every input, and the ladder is most of a negotiation's cost. `None` for a
/// non-contributory (low-order) key.
fn harness_mac(slot: usize, relay_public: &[u8], link_id: &str) -> Option<LinkMac> {
    use std::collections::HashMap;
    use std::sync::Mutex;
    type Cache = Mutex<HashMap<(usize, [u8; 32]), [u8; 32]>>;
    static SHARED: OnceLock<Cache> = OnceLock::new();
    let public: [u8; 32] = relay_public.try_into().ok()?;
    let cache = SHARED.get_or_init(|| Mutex::new(HashMap::with_capacity(256)));
    let cached = cache
        .lock()
        .ok()
        .and_then(|c| c.get(&(slot, public)).copied());
    let shared = match cached {
        Some(s) => s,
        None => {
            let secret = x25519_dalek::StaticSecret::from([slot as u8 + 1; 32]);
            let s = secret
                .diffie_hellman(&x25519_dalek::PublicKey::from(public))
                .to_bytes();
            if let Ok(mut c) = cache.lock() {
                if c.len() < 256 {
                    c.insert((slot, public), s);
                }
            }
            s
        }
    };
    if shared == [0; 32] {
        return None;
    }
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(link_id.as_bytes()), &shared);
    let mut key = [0u8; 32];
    hk.expand(link::HKDF_INFO_V1, &mut key).ok()?;
    Some(LinkMac::new(key, link_id))
}

/// What the harness knows of one slot.
#[derive(Default)]
struct Slot {
    /// The open connection, if any.
    conn: Option<ConnId>,
    /// The last connection of this slot that was closed.
    last: Option<ConnId>,
    /// The link id of the negotiation sent, while its reply is awaited.
    negotiating: Option<String>,
    /// What the harness knows of the link's MAC key.
    mac: MacState,
}

/// What the harness knows of a link's MAC key.
#[derive(Default)]
enum MacState {
    /// Pending, or negotiated by a raw frame whose key the harness did not choose.
    #[default]
    Unknown,
    /// Negotiated without a key: copies it receives carry no MAC.
    Keyless,
    /// Negotiated with the slot's key pair: the derived key.
    Keyed(Box<LinkMac>),
}

/// The harness: the relay and what it must be consistent with.
struct Harness {
    relay: Relay,
    now: Instant,
    slots: Vec<Slot>,
    /// Connections open as far as the shell knows.
    open: BTreeSet<ConnId>,
    /// The JWT subject of each open authenticated connection.
    subjects: BTreeMap<ConnId, String>,
    opens: usize,
    limit: usize,
    out: Vec<Output>,
}

/// Runs one operation sequence against a fresh relay.
///
/// Catches: panics anywhere in the relay core (negotiation, MAC checks, subscriptions, both
/// routing paths, timers, revocation, shutdown) and broken invariants:
/// - every `Send`/`SendFrame` names an open link, every `Close` an open link (or, for a frame
///   fed on an already closed connection, that connection);
/// - the relay's connection count equals the links the shell believes open;
/// - every copy a link receives is a valid Publish carrying its ingress connection, and its
///   header MAC verifies with *that* link's key (or is absent on a key-less link); frames the
///   relay writes decode;
/// - no link holds more subscriptions than the configured limit;
/// - after `handle_timeout(now)`, nothing is due at or before `now` any more;
/// - revocation ends exactly the links authenticated as the revoked subject;
/// - after every link is closed, every table of the core is empty (no route or credential leak).
pub fn relay_body(data: &[u8]) {
    let mut input = Input::new(data);
    let Some(config) = input.u8() else {
        return;
    };
    let limit = if config & 0x10 != 0 {
        10_000
    } else {
        usize::from((config >> 1) & 7) + 1
    };
    let relay = Relay::new(
        RelayConfig {
            require_header_mac: config & 1 != 0,
            node_id: "fuzz-relay".into(),
            negotiation_timeout: Duration::from_millis(500 * (1 + u64::from(config >> 5))),
            max_subscriptions_per_connection: limit,
        },
        [0x42; 32],
    );
    let mut h = Harness {
        relay,
        now: Instant::now(),
        slots: (0..SLOTS).map(|_| Slot::default()).collect(),
        open: BTreeSet::new(),
        subjects: BTreeMap::new(),
        opens: 0,
        limit,
        out: Vec::new(),
    };
    while let Some(b) = input.u8() {
        if !h.step(b, &mut input) {
            break;
        }
    }
    h.finish();
}

impl Harness {
    /// Runs one operation; false when the input ran out in its arguments.
    fn step(&mut self, b: u8, input: &mut Input<'_>) -> bool {
        let slot = usize::from((b >> 4) & 7);
        let flag = b & 0x80 != 0;
        let mut stale = None;
        match b & 0x0f {
            OPEN => self.open(slot, None),
            OPEN_AUTH => {
                let Some(ms) = input.u16() else {
                    return false;
                };
                self.open(slot, Some(Duration::from_millis(u64::from(ms))));
            }
            NEGOTIATE => self.negotiate(slot, flag),
            FRAME | FRAME2 => {
                let Some(chunk) = input.chunk() else {
                    return false;
                };
                if let Some(conn) = self.slots[slot].conn {
                    let frame = Bytes::copy_from_slice(chunk);
                    self.relay
                        .handle_frame(conn, frame, self.now, &mut self.out);
                }
            }
            SIGNED | SIGNED2 => {
                let Some(chunk) = input.chunk() else {
                    return false;
                };
                match pb::Message::decode(chunk) {
                    Ok(msg) => self.send(slot, msg, false),
                    Err(_) => {
                        if let Some(conn) = self.slots[slot].conn {
                            let frame = Bytes::copy_from_slice(chunk);
                            self.relay
                                .handle_frame(conn, frame, self.now, &mut self.out);
                        }
                    }
                }
            }
            kind @ (SUBSCRIBE | UNSUBSCRIBE) => {
                let (Some(n), Some(id), Some(flags)) = (input.u8(), input.u8(), input.u8()) else {
                    return false;
                };
                let name = table_name(n);
                let mut msg = if kind == SUBSCRIBE {
                    slim_proto::messages::subscribe(&name, u64::from(id))
                } else {
                    slim_proto::messages::unsubscribe(&name, u64::from(id))
                };
                self.apply_flags(slot, flags, &mut msg);
                self.send(slot, msg, flag);
            }
            PUBLISH => {
                let (Some(n), Some(fanout), Some(ttl), Some(flags)) =
                    (input.u8(), input.u8(), input.u8(), input.u8())
                else {
                    return false;
                };
                let src = table_name(slot as u8);
                let mut msg =
                    slim_proto::messages::publish(&src, &table_name(n), u32::from(fanout), [ttl]);
                if let Some(h) = validate::header_mut(&mut msg) {
                    h.ttl = u32::from(ttl);
                }
                self.apply_flags(slot, flags, &mut msg);
                self.send(slot, msg, flag);
            }
            ADVANCE => {
                let Some(ms) = input.u16() else {
                    return false;
                };
                self.now += Duration::from_millis(u64::from(ms));
                self.relay.handle_timeout(self.now, &mut self.out);
                self.absorb(None);
                if let Some(at) = self.relay.poll_timeout() {
                    assert!(
                        at > self.now,
                        "handle_timeout left a timer due at or before now"
                    );
                }
            }
            CLOSE => {
                if let Some(conn) = self.slots[slot].conn {
                    self.relay.close(conn);
                    self.forget(conn);
                }
            }
            STALE => {
                let Some(chunk) = input.chunk() else {
                    return false;
                };
                // The last closed connection of the slot, or one the relay never opened.
                let conn = self.slots[slot].last.unwrap_or(ConnId::MAX - slot as u64);
                if !self.open.contains(&conn) {
                    let frame = Bytes::copy_from_slice(chunk);
                    self.relay
                        .handle_frame(conn, frame, self.now, &mut self.out);
                    stale = Some(conn);
                }
            }
            REVOKE => {
                let sub = format!("sub-{slot}");
                let mut list = RevocationList::empty();
                list.insert(Reason::Sub(sub.clone()));
                let n = self.relay.apply_revocations(&list, &mut self.out);
                let want = self.subjects.values().filter(|s| **s == sub).count();
                assert_eq!(
                    n, want,
                    "revocation ended {n} links, {want} were authenticated as {sub}"
                );
            }
            SHUTDOWN => {
                self.relay.shutdown(&mut self.out);
                self.absorb(None);
                assert!(self.open.is_empty(), "shutdown left links open");
            }
            _ => {
                // DECODED
                let Some(chunk) = input.chunk() else {
                    return false;
                };
                if let (Some(conn), Ok(msg)) = (self.slots[slot].conn, pb::Message::decode(chunk)) {
                    self.relay.handle(conn, msg, self.now, &mut self.out);
                }
            }
        }
        self.absorb(stale);
        true
    }

    /// Opens a stream on `slot`, authenticated for `lifetime` if given.
    fn open(&mut self, slot: usize, lifetime: Option<Duration>) {
        if self.slots[slot].conn.is_some() || self.opens >= MAX_OPENS {
            return;
        }
        self.opens += 1;
        let conn = match lifetime {
            None => self.relay.open(self.now),
            Some(d) => {
                let sub = format!("sub-{slot}");
                let principal = Principal {
                    jti: Some(format!("jti-{}", self.opens)),
                    sub: sub.clone(),
                    kid: None,
                    exp: 1_800_000_000,
                };
                let conn = self
                    .relay
                    .open_authenticated(self.now, principal, self.now + d);
                self.subjects.insert(conn, sub);
                conn
            }
        };
        assert!(self.open.insert(conn), "connection id {conn} reused");
        let s = &mut self.slots[slot];
        s.conn = Some(conn);
        s.mac = MacState::Unknown;
        s.negotiating = None;
    }

    /// Sends a valid negotiation request on `slot`, with the slot's key if `keyed`.
    fn negotiate(&mut self, slot: usize, keyed: bool) {
        let Some(conn) = self.slots[slot].conn else {
            return;
        };
        let link_id = format!("fuzz-link-{conn}");
        let key = if keyed {
            Bytes::copy_from_slice(&peer_keys()[slot].public_bytes())
        } else {
            Bytes::new()
        };
        let msg = link::negotiation_message(pb::LinkNegotiationPayload {
            link_id: link_id.clone(),
            slim_version: slim_proto::SLIM_VERSION.into(),
            is_reply: false,
            link_ecdh_public_key: key,
            connection_type: pb::LinkConnectionType::Edge as i32,
            node_id: format!("fuzz-peer-{slot}"),
            deployment_name: String::new(),
            link_kem_payload: None,
        });
        self.slots[slot].negotiating = Some(link_id);
        let frame = Bytes::from(msg.encode_to_vec());
        self.relay
            .handle_frame(conn, frame, self.now, &mut self.out);
        self.absorb(None);
        // An established link ignores it: no reply will come.
        self.slots[slot].negotiating = None;
    }

    /// Applies the `recv_from`/`forward_to`/string-name flags to a routed message.
    fn apply_flags(&self, slot: usize, flags: u8, msg: &mut pb::Message) {
        let other = self.slots[usize::from((flags >> 4) & 7)]
            .conn
            .or(self.slots[usize::from((flags >> 4) & 7)].last)
            .unwrap_or(ConnId::MAX);
        let own = self.slots[slot].conn.unwrap_or(ConnId::MAX);
        let Some(h) = validate::header_mut(msg) else {
            return;
        };
        if flags & F_RECV_FROM_SELF != 0 {
            h.recv_from = Some(own);
        }
        if flags & F_RECV_FROM_OTHER != 0 {
            h.recv_from = Some(other);
        }
        if flags & F_FORWARD_TO != 0 {
            h.forward_to = Some(other);
        }
        if flags & F_NO_STR_NAME != 0 {
            if let Some(d) = h.destination.as_mut() {
                d.str_name = None;
            }
        }
    }

    /// Signs `msg`'s header with the slot's link key (when it has one) and feeds it, encoded, to
    /// the frame path, or decoded to [`Relay::handle`] when `decoded`.
    fn send(&mut self, slot: usize, mut msg: pb::Message, decoded: bool) {
        let Some(conn) = self.slots[slot].conn else {
            return;
        };
        if let (MacState::Keyed(mac), Some(h)) =
            (&self.slots[slot].mac, validate::header_mut(&mut msg))
        {
            mac.sign(h);
        }
        if decoded {
            self.relay.handle(conn, msg, self.now, &mut self.out);
        } else {
            let frame = Bytes::from(msg.encode_to_vec());
            self.relay
                .handle_frame(conn, frame, self.now, &mut self.out);
        }
    }

    /// The slot a connection is open on.
    fn slot_of(&self, conn: ConnId) -> Option<usize> {
        self.slots.iter().position(|s| s.conn == Some(conn))
    }

    /// The shell forgets `conn`.
    fn forget(&mut self, conn: ConnId) {
        self.open.remove(&conn);
        self.subjects.remove(&conn);
        if let Some(i) = self.slot_of(conn) {
            let s = &mut self.slots[i];
            s.conn = None;
            s.last = Some(conn);
            s.mac = MacState::Unknown;
            s.negotiating = None;
        }
    }

    /// Checks and carries out the relay's outputs, as the shell would.
    fn absorb(&mut self, stale: Option<ConnId>) {
        let out = std::mem::take(&mut self.out);
        for o in out {
            match o {
                Output::Send { conn, message } => self.delivered(conn, &message),
                Output::SendFrame { conn, frame } => {
                    let message = match pb::Message::decode(&frame.to_vec()[..]) {
                        Ok(m) => m,
                        Err(e) => panic!("the relay wrote a frame that does not decode: {e}"),
                    };
                    assert_eq!(
                        validate::validate(&message),
                        Ok(Kind::Publish),
                        "the frame path sent something else than a valid Publish"
                    );
                    self.delivered(conn, &message);
                }
                Output::Close { conn, reason } => {
                    assert!(
                        self.open.contains(&conn) || Some(conn) == stale,
                        "the relay closed connection {conn}, which is not open: {reason:?}"
                    );
                    self.forget(conn);
                }
            }
        }
        assert_eq!(
            self.relay.connections(),
            self.open.len(),
            "the relay and the shell disagree on the open links"
        );
        for &conn in &self.open {
            let n = self.relay.subscription_count(conn);
            assert!(
                n <= self.limit,
                "link {conn} holds {n} subscriptions, limit {}",
                self.limit
            );
        }
    }

    /// A message the relay sends on `conn`.
    fn delivered(&mut self, conn: ConnId, message: &pb::Message) {
        assert!(
            self.open.contains(&conn),
            "the relay sent on connection {conn}, which is not open"
        );
        let Some(slot) = self.slot_of(conn) else {
            panic!("open connection {conn} on no slot");
        };
        match &message.message_type {
            Some(MessageType::Link(_)) => {
                let s = &mut self.slots[slot];
                let Ok(p) = link::negotiation_payload(message) else {
                    panic!("a link message that is no negotiation on {conn}");
                };
                assert!(p.is_reply, "the relay sent a negotiation request");
                s.mac = match (s.negotiating.take(), p.link_ecdh_public_key.is_empty()) {
                    (_, true) => MacState::Keyless,
                    // A raw frame negotiated with a key the harness did not choose.
                    (None, false) => MacState::Unknown,
                    (Some(link_id), false) => {
                        assert_eq!(p.link_id, link_id, "the reply does not echo the link id");
                        match harness_mac(slot, &p.link_ecdh_public_key, &link_id) {
                            Some(mac) => MacState::Keyed(Box::new(mac)),
                            None => panic!("the relay's link key is unusable"),
                        }
                    }
                };
            }
            Some(MessageType::SubscriptionAck(_)) => {}
            Some(MessageType::Publish(_)) => {
                assert_eq!(
                    validate::validate(message),
                    Ok(Kind::Publish),
                    "the relay delivered an invalid Publish"
                );
                let Some(h) = validate::header(message) else {
                    panic!("a delivered Publish without header");
                };
                assert!(h.incoming_conn.is_some(), "a copy without its ingress link");
                assert!(
                    h.recv_from.is_none() && h.forward_to.is_none(),
                    "link-local fields left in a delivered copy"
                );
                match &self.slots[slot].mac {
                    MacState::Keyed(mac) => assert_eq!(
                        mac.verify(h),
                        Ok(()),
                        "a copy on {conn} is not signed with that link's key"
                    ),
                    MacState::Keyless => {
                        assert!(h.header_mac.is_none(), "a key-less link got a MAC")
                    }
                    MacState::Unknown => {}
                }
            }
            other => panic!("the relay sent an unexpected message: {other:?}"),
        }
    }

    /// Closes every link and checks that nothing is left.
    fn finish(mut self) {
        let open: Vec<ConnId> = self.open.iter().copied().collect();
        for conn in open {
            self.relay.close(conn);
            self.forget(conn);
        }
        assert_eq!(self.relay.connections(), 0);
        assert_eq!(
            self.relay.table_sizes(),
            TableSizes::default(),
            "state left behind after every link closed (a route or credential leak)"
        );
        assert_eq!(self.relay.poll_timeout(), None, "a timer outlived its link");
    }
}
