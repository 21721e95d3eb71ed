//! Target `session`: one session [`Endpoint`] of the repository's session vectors
//! (`vectors/sessions/`) fed inbound messages, time and its application's commands.
//!
//! The endpoints are those of the vector files, built from their seeds, shared secret and wall
//! clock, so the recorded frames addressed to an endpoint (tokens, signatures, session ids,
//! message ids) are valid for it: replaying them reaches the session logic behind the identity
//! checks, and mutations of their order, timing and content explore it. The harness also plays
//! the other endpoints of the file: it can sign a fuzzed command as one of them, so mutated
//! commands get past signature verification too.
//!
//! Layout: one byte picks the endpoint ([`endpoints`]), then operations until the input ends.
//! An operation is one byte, `kind | arg << 3` (kind in the low three bits, [`op`] builds it):
//!
//! | kind | operation | arguments |
//! |---|---|---|
//! | [`DELIVER`], [`DELIVER2`], [`DELIVER3`] | a frame from the node, decoded | chunk |
//! | [`DELIVER_SIGNED`] | a frame re-signed as endpoint `arg` of the file (arg bit 4: keep its source name) | chunk |
//! | [`ADVANCE`] | time passes (`arg` bit 4: in seconds), timers run | `u16` |
//! | [`APP`] | an application command, see [`app`] | command, a, b (+ chunk for publish) |
//! | [`REVOKE`] | revoke (arg bit 4: un-revoke all) endpoint `arg`'s identity | |

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message as _;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_yaml::Value;
use slim_proto::names::SlimName;
use slim_proto::pb;
use slim_proto::validate::{self, Kind};
use slim_reference::session::identity::LocalIdentity;
use slim_reference::session::{
    wire, Clock, Credentials, CryptoBackend, Endpoint, EndpointConfig, Reason, Reliability,
    RevocationList, SessionOptions, Transmit,
};

use crate::input::Input;

/// Operation kinds (low three bits of an operation byte).
pub const DELIVER: u8 = 0;
/// See the module documentation.
pub const DELIVER_SIGNED: u8 = 1;
/// See the module documentation.
pub const ADVANCE: u8 = 2;
/// See the module documentation.
pub const APP: u8 = 3;
/// Same as [`DELIVER`].
pub const DELIVER2: u8 = 4;
/// Same as [`DELIVER`].
pub const DELIVER3: u8 = 5;
/// Same as [`DELIVER`].
pub const DELIVER4: u8 = 6;
/// See the module documentation.
pub const REVOKE: u8 = 7;

/// Application commands ([`APP`]'s first argument, modulo 8).
pub mod app {
    /// `open_p2p(peer a, options b)`.
    pub const OPEN_P2P: u8 = 0;
    /// `create_group(channel a, options b)`.
    pub const CREATE_GROUP: u8 = 1;
    /// `invite(session a, peer b)`.
    pub const INVITE: u8 = 2;
    /// `remove(session a, peer b)`.
    pub const REMOVE: u8 = 3;
    /// `publish(session a, chunk)`.
    pub const PUBLISH: u8 = 4;
    /// `close(session a)`.
    pub const CLOSE: u8 = 5;
    /// Option bit: reliable delivery (500 ms, 10 retries, as the vectors).
    pub const OPT_RELIABLE: u8 = 1;
    /// Option bit: MLS.
    pub const OPT_MLS: u8 = 2;
}

/// The operation byte for `kind` with argument `arg` (0–31).
pub fn op(kind: u8, arg: u8) -> u8 {
    (kind & 7) | (arg << 3)
}

/// Operations one input may run, at most (each may cost a signature check).
pub const MAX_OPS: usize = 512;
/// Application commands one input may run, at most. Each may create a session (and an MLS
/// group) that no received byte paid for, so their state belongs in the fixed part of
/// [`crate::SESSION_BOUND`].
pub const MAX_APP: usize = 16;
/// Commands sent by the endpoint whose signatures one input checks, at most: each check is two
/// ECDSA verifications, as costly as everything else an input does.
const MAX_CHECKED: usize = 2;
/// Timer rounds at one instant before the endpoint is deemed to busy-loop.
const MAX_TIMER_ROUNDS: usize = 64;

/// One endpoint of a session vector file.
#[derive(Debug, Clone)]
pub struct EndpointSpec {
    /// The vector file (`p2p-reliable-loss`, `group-lifecycle-mls`).
    pub scenario: String,
    /// The endpoint's label in the file.
    pub label: String,
    /// `org/ns/app`.
    pub name: SlimName,
    /// The name with the id its token derives.
    pub full_name: SlimName,
    /// RNG seed.
    pub seed: [u8; 32],
    /// The deployment's shared secret.
    pub secret: String,
    /// Wall clock at virtual time 0.
    pub clock_unix: u64,
    /// Index of the file's first endpoint in [`endpoints`].
    pub first: usize,
    /// How many endpoints the file has.
    pub count: usize,
}

/// The session vector files, compiled in.
pub const VECTOR_FILES: [(&str, &str); 2] = [
    (
        "p2p-reliable-loss",
        include_str!("../../../vectors/sessions/p2p-reliable-loss.yaml"),
    ),
    (
        "group-lifecycle-mls",
        include_str!("../../../vectors/sessions/group-lifecycle-mls.yaml"),
    ),
];

/// The parsed session vector files, in [`VECTOR_FILES`] order.
pub fn vector_docs() -> &'static [Value] {
    static DOCS: OnceLock<Vec<Value>> = OnceLock::new();
    DOCS.get_or_init(|| {
        VECTOR_FILES
            .iter()
            .map(|(_, text)| serde_yaml::from_str(text).unwrap_or(Value::Null))
            .collect()
    })
}

/// Every endpoint of every session vector file, files in [`VECTOR_FILES`] order.
pub fn endpoints() -> &'static [EndpointSpec] {
    static SPECS: OnceLock<Vec<EndpointSpec>> = OnceLock::new();
    SPECS.get_or_init(|| {
        let mut specs = Vec::new();
        for ((scenario, _), doc) in VECTOR_FILES.iter().zip(vector_docs()) {
            let config = &doc["config"];
            let secret = config["shared_secret"].as_str().unwrap_or_default();
            let clock_unix = config["clock_unix"].as_u64().unwrap_or_default();
            let list = doc["endpoints"].as_sequence().cloned().unwrap_or_default();
            let first = specs.len();
            for e in &list {
                let parse = |k: &str| e[k].as_str().and_then(|s| s.parse::<SlimName>().ok());
                let (Some(name), Some(full_name)) = (parse("name"), parse("full_name")) else {
                    continue;
                };
                let mut seed = [0u8; 32];
                if let Some(bytes) = e["seed"].as_str().and_then(|s| hex::decode(s).ok()) {
                    for (d, s) in seed.iter_mut().zip(bytes) {
                        *d = s;
                    }
                }
                specs.push(EndpointSpec {
                    scenario: scenario.to_string(),
                    label: e["label"].as_str().unwrap_or_default().to_string(),
                    name,
                    full_name,
                    seed,
                    secret: secret.to_string(),
                    clock_unix,
                    first,
                    count: 0,
                });
            }
            let count = specs.len() - first;
            for s in &mut specs[first..] {
                s.count = count;
            }
        }
        specs
    })
}

/// The harness around one endpoint.
struct Harness<'s> {
    spec: &'s EndpointSpec,
    endpoint: Endpoint,
    clock: Clock,
    now: Instant,
    /// The other endpoints of the file, as the harness plays them (built when first needed).
    peers: Vec<Option<LocalIdentity>>,
    /// The endpoint under test's own identity, rebuilt from its seed (when first needed).
    me: Option<LocalIdentity>,
    /// Commands whose signatures were checked (each check costs two ECDSA verifications).
    checked: usize,
    /// Application commands run.
    apps: usize,
    /// Bytes of the messages fed to the endpoint (after the harness signed them).
    fed: usize,
}

/// Runs one operation sequence against one vector endpoint.
///
/// Catches: panics in the session core (wire parsing, identity and signature checks, the
/// reply cache, discovery, join, welcome, group updates, leave and close, MLS, reliable
/// delivery and its timers) and broken invariants:
/// - everything the endpoint transmits is a valid session Publish from its own name, and
///   every command it sends passes the verification its peers apply (token, name binding,
///   header and payload signatures);
/// - after `handle_timeout(now)` the endpoint does not keep asking to be woken at or before
///   `now` (a timer busy loop).
///
/// Returns the bytes of the messages fed to the endpoint, which the harness may have grown (a
/// signed command carries a token and two signatures): the allocation bound is relative to the
/// larger of that and the input.
pub fn session_body(data: &[u8]) -> usize {
    let mut input = Input::new(data);
    let specs = endpoints();
    let Some(pick) = input.u8() else {
        return 0;
    };
    let Some(spec) = specs.get(usize::from(pick) % specs.len().max(1)) else {
        return 0;
    };
    let now = Instant::now();
    let clock = Clock {
        at: now,
        unix_secs: spec.clock_unix,
    };
    let endpoint = match Endpoint::new(EndpointConfig {
        name: spec.name.clone(),
        credentials: Credentials::SharedSecret(spec.secret.clone()),
        seed: spec.seed,
        clock,
        mls_crypto: CryptoBackend::RingDeterministicSignatures,
    }) {
        Ok(e) => e,
        Err(e) => panic!("the vector endpoint {} cannot be built: {e}", spec.label),
    };
    assert_eq!(
        endpoint.local_name(),
        &spec.full_name,
        "the endpoint does not derive its recorded name"
    );
    let mut h = Harness {
        spec,
        endpoint,
        clock,
        now,
        peers: (0..spec.count).map(|_| None).collect(),
        me: None,
        checked: 0,
        apps: 0,
        fed: 0,
    };
    for _ in 0..MAX_OPS {
        let Some(b) = input.u8() else {
            break;
        };
        if !h.step(b, &mut input) {
            break;
        }
        h.drain();
    }
    h.fed
}

/// The identity endpoint `spec` builds for itself (same seed, same draws).
fn identity_of(spec: &EndpointSpec) -> LocalIdentity {
    let mut rng = ChaCha20Rng::from_seed(spec.seed);
    match LocalIdentity::new(
        &spec.name,
        &Credentials::SharedSecret(spec.secret.clone()),
        &mut rng,
    ) {
        Ok(id) => id,
        Err(e) => panic!("the identity of {} cannot be built: {e}", spec.label),
    }
}

impl Harness<'_> {
    fn unix(&self) -> u64 {
        self.clock.unix_secs + self.now.saturating_duration_since(self.clock.at).as_secs()
    }

    /// The file's endpoint `i` (modulo their number).
    fn peer_spec(&self, i: u8) -> &EndpointSpec {
        let specs = endpoints();
        &specs[self.spec.first + usize::from(i) % self.spec.count.max(1)]
    }

    /// The `i`-th open session of the endpoint (modulo their number).
    fn session(&self, i: u8) -> Option<u32> {
        let sessions = self.endpoint.sessions();
        sessions
            .get(usize::from(i) % sessions.len().max(1))
            .copied()
    }

    fn step(&mut self, b: u8, input: &mut Input<'_>) -> bool {
        let arg = b >> 3;
        match b & 7 {
            DELIVER_SIGNED => {
                let Some(chunk) = input.chunk() else {
                    return false;
                };
                if let Ok(msg) = pb::Message::decode(chunk) {
                    let msg = self.sign_as(arg, msg);
                    self.fed += msg.encoded_len();
                    self.endpoint.handle_message(msg, self.now);
                }
            }
            ADVANCE => {
                let Some(v) = input.u16() else {
                    return false;
                };
                let unit = if arg & 0x10 != 0 { 1000 } else { 1 };
                self.now += Duration::from_millis(u64::from(v) * unit);
                self.run_timers();
            }
            APP => return self.app(input),
            REVOKE => {
                if arg & 0x10 != 0 {
                    self.endpoint
                        .set_revocations(RevocationList::empty(), self.now);
                } else {
                    let sub = self.peer_identity(arg).sub().to_string();
                    self.endpoint.revoke(Reason::Sub(sub), self.now);
                }
            }
            _ => {
                let Some(chunk) = input.chunk() else {
                    return false;
                };
                self.fed += chunk.len();
                if let Ok(msg) = pb::Message::decode(chunk) {
                    self.endpoint.handle_message(msg, self.now);
                }
            }
        }
        true
    }

    /// Runs every timer due now; the endpoint must then want nothing before `now`.
    fn run_timers(&mut self) {
        for _ in 0..MAX_TIMER_ROUNDS {
            match self.endpoint.poll_timeout() {
                Some(at) if at <= self.now => {
                    self.endpoint.handle_timeout(self.now);
                    self.drain();
                }
                _ => return,
            }
        }
        panic!(
            "the endpoint still asks to be woken at or before now after {MAX_TIMER_ROUNDS} rounds"
        );
    }

    fn app(&mut self, input: &mut Input<'_>) -> bool {
        let (Some(cmd), Some(a), Some(b)) = (input.u8(), input.u8(), input.u8()) else {
            return false;
        };
        let payload = if cmd % 8 == app::PUBLISH {
            match input.chunk() {
                Some(p) => p,
                None => return false,
            }
        } else {
            &[]
        };
        if self.apps >= MAX_APP {
            return true;
        }
        self.apps += 1;
        let opts = |bits: u8| SessionOptions {
            mls: bits & app::OPT_MLS != 0,
            reliable: (bits & app::OPT_RELIABLE != 0).then_some(Reliability {
                interval: Duration::from_millis(500),
                max_retries: 10,
            }),
        };
        let now = self.now;
        // Refusals (unknown session, not the moderator, …) are answers, not findings.
        let _ = match cmd % 8 {
            app::OPEN_P2P => {
                let peer = self.peer_spec(a).name.clone();
                self.endpoint.open_p2p(peer, opts(b), now).map(|_| ())
            }
            app::CREATE_GROUP => {
                let channel = if a % 2 == 0 {
                    SlimName::new("org", "sim", "chat")
                } else {
                    SlimName::new("org", "fuzz", "channel")
                };
                self.endpoint
                    .create_group(channel, opts(b), now)
                    .map(|_| ())
            }
            app::INVITE => match self.session(a) {
                Some(s) => {
                    let peer = self.peer_spec(b).name.clone();
                    self.endpoint.invite(s, peer, now)
                }
                None => Ok(()),
            },
            app::REMOVE => match self.session(a) {
                Some(s) => {
                    let peer = self.peer_spec(b).full_name.clone();
                    self.endpoint.remove(s, &peer, now)
                }
                None => Ok(()),
            },
            app::PUBLISH => {
                self.fed += payload.len();
                match self.session(a) {
                    Some(s) => self
                        .endpoint
                        .publish(s, Bytes::copy_from_slice(payload), now)
                        .map(|_| ()),
                    None => Ok(()),
                }
            }
            app::CLOSE => match self.session(a) {
                Some(s) => self.endpoint.close(s, now),
                None => Ok(()),
            },
            _ => {
                let _ = (self.endpoint.is_busy(), self.endpoint.revocations().len());
                if let Some(s) = self.session(a) {
                    let _ = (self.endpoint.members(s), self.endpoint.options(s));
                    let _ = self.endpoint.state_auth(s);
                }
                Ok(())
            }
        };
        true
    }

    fn peer_identity(&mut self, i: u8) -> &mut LocalIdentity {
        let idx = usize::from(i) % self.spec.count.max(1);
        let spec = &endpoints()[self.spec.first + idx];
        self.peers[idx].get_or_insert_with(|| identity_of(spec))
    }

    /// `msg` as peer `arg` sends it: its token in the header and, for a command, its signatures
    /// (bit 4 of `arg` keeps the source name the fuzzer wrote).
    fn sign_as(&mut self, arg: u8, mut msg: pb::Message) -> pb::Message {
        let full_name = self.peer_spec(arg).full_name.clone();
        let unix = self.unix();
        let mut rng = ChaCha20Rng::from_seed([arg; 32]);
        let me = self.peer_identity(arg);
        let Ok(token) = me.token(unix, &mut rng).map(str::to_string) else {
            return msg;
        };
        if let Some(h) = validate::header_mut(&mut msg) {
            if arg & 0x10 == 0 {
                h.source = Some(full_name.to_proto());
            }
            h.identity = token;
        }
        // Only commands are signed; for anything else this refuses and the message goes as is.
        let _ = me.sign(&mut msg);
        msg
    }

    /// Takes what the endpoint wants sent and what it reports, checking what it sends.
    fn drain(&mut self) {
        while let Some(t) = self.endpoint.poll_transmit() {
            let Transmit::Publish(msg) = t else {
                continue;
            };
            assert_eq!(
                validate::validate(&msg),
                Ok(Kind::Publish),
                "the endpoint sent an invalid Publish"
            );
            let inbound = match wire::inbound(&msg) {
                Ok(m) => m,
                Err(e) => panic!("the endpoint sent a Publish its peers cannot read: {e}"),
            };
            assert_eq!(
                &inbound.source,
                self.endpoint.local_name(),
                "the endpoint sent a Publish under another name"
            );
            let bytes = msg.encode_to_vec();
            assert_eq!(
                pb::Message::decode(&bytes[..]).ok().as_ref(),
                Some(&msg),
                "a transmitted Publish does not survive the wire"
            );
            if slim_proto::e2e::is_command(inbound.kind) && self.checked < MAX_CHECKED {
                // Signatures and name binding only: a cached reply may be re-sent long after its
                // token was issued, and a stale token is the receiver's to refuse.
                self.checked += 1;
                let spec = self.spec;
                let me = self.me.get_or_insert_with(|| identity_of(spec));
                assert_eq!(
                    slim_reference::session::identity::token_sub(inbound.identity().as_bytes())
                        .as_deref(),
                    Some(me.sub()),
                    "a command carries another identity's token"
                );
                assert_eq!(
                    slim_proto::identity::app_id(me.sub()),
                    inbound.source.id(),
                    "the sender's name id is not bound to its token id"
                );
                if let Err(e) = slim_proto::e2e::verify_command(&msg, &me.key().public_bytes()) {
                    panic!(
                        "a {:?} the endpoint sent fails signature verification: {e}",
                        inbound.kind
                    );
                }
            }
        }
        while self.endpoint.poll_event().is_some() {}
    }
}
