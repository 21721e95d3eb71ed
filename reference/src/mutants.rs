//! Seeded faults ("mutants") for measuring the conformance runner's sensitivity.
//!
//! Each [`Fault`] is a bug a real SLIM node could plausibly ship. The relay carries one or two
//! line hooks, `if mutants::on(Fault::X) { ...faulty path... }`, where the check it breaks
//! lives. With the cargo feature `mutants` (off by default), `slim-relay` run with
//! `SLIM_RELAY_MUTANT=<name>` behaves with that one fault; `SLIM_RELAY_MUTANT=list` prints every
//! fault as `name<TAB>requirement<TAB>description`. Without the feature, [`on`] is a `const fn`
//! returning `false`, so every hook compiles away.
//!
//! `conformance/mutants/run.sh` applies each fault in turn, runs the node profile of
//! `slim-conformance` against the faulty relay and reports which faults the runner catches.
//!
//! The relay routes most Publishes from their bytes ([`crate::relay::Relay::handle_frame`]); the
//! decoded path does the same steps on a decoded message and is observably identical. Faults
//! whose hooks live only in the decoded path ([`Fault::decoded_path_only`]) turn the frame path
//! off ([`frame_path_disabled`]), so the reference code carries each hook once.
//!
//! The client's session layer has its own faults, selected by `SLIM_SESSION_MUTANT`: see
//! [`session`].

pub mod session;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use slim_proto::link::{LinkError, LinkKeyPair, X25519_KEY_LEN};
use slim_proto::mac::{LinkMac, MacError, TAG_LEN};
use slim_proto::names::hash_component;
use slim_proto::pb;

/// The environment variable that selects the active fault (or `list`).
pub const ENV: &str = "SLIM_RELAY_MUTANT";

/// Declares [`Fault`] from one table: variant, name, requirement, the plausible bug.
macro_rules! faults {
    ($($variant:ident, $name:literal, $req:literal, $desc:literal;)+) => {
        /// A seeded fault in the reference relay: a bug a real SLIM node could ship, and the
        /// requirement (`spec/SPEC.md`) it breaks.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Fault {
            $(
                #[doc = concat!($desc, " Breaks ", $req, ".")]
                $variant,
            )+
        }

        impl Fault {
            /// Every fault, in table order.
            pub const ALL: &'static [Fault] = &[$(Fault::$variant),+];

            /// The kebab-case name `SLIM_RELAY_MUTANT` selects it by.
            pub const fn name(self) -> &'static str {
                match self { $(Fault::$variant => $name),+ }
            }

            /// The requirement id the fault breaks.
            pub const fn requirement(self) -> &'static str {
                match self { $(Fault::$variant => $req),+ }
            }

            /// The plausible bug, in one sentence.
            pub const fn description(self) -> &'static str {
                match self { $(Fault::$variant => $desc),+ }
            }
        }
    };
}

faults! {
    // TTL
    TtlNotDecremented, "ttl-not-decremented", "SLIM-ROUTE-010",
        "Routed messages keep the ttl they arrived with (the decrement was lost in a refactor), so ttl 1 is delivered.";
    TtlDroppedOnlyAtZero, "ttl-dropped-only-at-zero", "SLIM-ROUTE-010",
        "Expiry is checked on the received ttl: only ttl 0 is dropped, ttl 1 is forwarded with ttl 0.";
    MacVerifiedAfterTtl, "mac-verified-after-ttl", "SLIM-MAC-005",
        "The header MAC is verified after the ttl decrement, over the rewritten header.";
    // sender exclusion
    PublishEchoedToSender, "publish-echoed-to-sender", "SLIM-ROUTE-007",
        "The sender is not excluded from the match: a link subscribed to what it publishes gets its own Publish back.";
    // anycast
    AnycastAlwaysFirst, "anycast-always-first", "SLIM-ROUTE-005",
        "The anycast cursor is never advanced: every fanout-1 Publish goes to the first matching link.";
    // fanout
    Fanout0IsAnycast, "fanout-0-is-anycast", "SLIM-ROUTE-006",
        "Anycast is tested as `fanout <= 1`, so fanout 0 reaches one subscriber instead of all.";
    Fanout2IsAnycast, "fanout-2-is-anycast", "SLIM-ROUTE-006",
        "Small fanouts are read as 'pick one': fanout 2 reaches one subscriber instead of all.";
    FanoutAsCount, "fanout-as-count", "SLIM-ROUTE-006",
        "fanout is taken as a receiver count: fanout 2 reaches two subscribers, fanout 0 none.";
    // names: the id
    IdIgnored, "id-ignored", "SLIM-ROUTE-002",
        "The id is left out of the routing key: a Publish to one instance reaches every instance of the service.";
    IdLowHalfOnly, "id-low-half-only", "SLIM-NAME-002",
        "Only id_1 (the low 64 bits) is compared: ids that differ only in id_0 are one name.";
    IdHalvesSwappedOnPublish, "id-halves-swapped-on-publish", "SLIM-NAME-002",
        "The Publish path joins the id as (id_1, id_0) while the Subscribe path uses (id_0, id_1).";
    AbsentNameIdNotWildcard, "absent-name-id-not-wildcard", "SLIM-NAME-003",
        "A destination without name_id is read as id 0 instead of the wildcard id.";
    WildcardPublishMissesSpecific, "wildcard-publish-misses-specific", "SLIM-ROUTE-003",
        "A Publish to the wildcard id matches only wildcard subscriptions, not subscribers of specific ids.";
    // names: the components
    Component2Ignored, "component-2-ignored", "SLIM-ROUTE-001",
        "The component_2 hash is left out of the routing key: every service of a namespace shares routes.";
    RoutedByStringForm, "routed-by-string-form", "SLIM-ROUTE-001",
        "A Publish is routed by hashing its destination's string form when present, not by the hashed form.";
    DeliveredNamesStripped, "delivered-names-stripped", "SLIM-NAME-004",
        "The delivered copy of a Publish loses its destination's string form (only the hashed form is re-encoded).";
    // cleanup on close
    RoutesKeptOnCleanClose, "routes-kept-on-clean-close", "SLIM-SUB-008",
        "A link that ends with a clean end of stream keeps its subscriptions (cleanup ran only on errors).";
    RoutesKeptOnErrorClose, "routes-kept-on-error-close", "SLIM-SUB-008",
        "A link ended by an error (oversize or undecodable frame) keeps its subscriptions.";
    // unsubscribe ownership
    UnsubscribeForeignLink, "unsubscribe-foreign-link", "SLIM-SUB-012",
        "An Unsubscribe removes the record with that id and name from whichever link holds it.";
    // truthful acks
    AckSuccessWhenRefused, "ack-success-when-refused", "SLIM-SUB-001",
        "A refused Subscribe or Unsubscribe is acked with success true (the result is not looked at).";
    AckForIdZero, "ack-for-id-zero", "SLIM-SUB-002",
        "Subscribes and Unsubscribes with subscription_id 0 are acked too.";
    AckSuccessRouteNotInstalled, "ack-success-route-not-installed", "SLIM-SUB-003",
        "Beyond the per-link limit a Subscribe is silently not installed, yet acked with success.";
    // MAC verification
    PublishMacNotChecked, "publish-mac-not-checked", "SLIM-MAC-004",
        "The header MAC of a Publish is not verified (only subscriptions are).";
    SubscribeMacNotChecked, "subscribe-mac-not-checked", "SLIM-MAC-004",
        "The header MAC of a Subscribe is not verified (only Publishes are).";
    MacTruncatedCompare, "mac-truncated-compare", "SLIM-MAC-004",
        "The tag is compared over the shorter of the two lengths (a zip), so an empty or prefix MAC passes.";
    LaxPresentMacNotVerified, "lax-present-mac-not-verified", "SLIM-MAC-006",
        "A node that does not require the MAC does not verify one that is present either.";
    LaxKeylessMacAccepted, "lax-keyless-mac-accepted", "SLIM-MAC-006",
        "A MAC-carrying message from a link negotiated without a key is routed instead of dropped.";
    LaxUnsignedRefused, "lax-unsigned-refused", "SLIM-MAC-006",
        "require_header_mac false is not honoured by the check: unsigned messages are still refused.";
    LaxUnsignedPublishDropped, "lax-unsigned-publish-dropped", "SLIM-MAC-008",
        "A non-strict node acks unsigned subscriptions from a keyed link but drops its unsigned Publishes.";
    MacRefusalNotAcked, "mac-refusal-not-acked", "SLIM-MAC-007",
        "A Subscribe or Unsubscribe refused for its header MAC is dropped silently, without a SubscriptionAck.";
    // re-signing per receiver
    EgressKeepsSenderMac, "egress-keeps-sender-mac", "SLIM-MAC-003",
        "A delivered copy keeps the sender's header_mac instead of being re-signed for the receiver's link.";
    FanoutSignedWithFirstKey, "fanout-signed-with-first-key", "SLIM-MAC-003",
        "Every copy of a fanned-out Publish is signed with the first receiver's link key.";
    // negotiation
    NegotiationIsReplyAccepted, "negotiation-is-reply-accepted", "SLIM-LINK-003",
        "A request with is_reply true is answered.";
    NegotiationEmptyLinkIdAccepted, "negotiation-empty-link-id-accepted", "SLIM-LINK-002",
        "A request with an empty link_id is answered.";
    NegotiationVersionUnchecked, "negotiation-version-unchecked", "SLIM-LINK-004",
        "slim_version is not parsed: a request with a non-semver version is answered.";
    NegotiationKeyLengthUnchecked, "negotiation-key-length-unchecked", "SLIM-LINK-005",
        "A strict node accepts an X25519 key of the wrong length, padding or truncating it to 32 bytes.";
    NegotiationLowOrderKeyAccepted, "negotiation-low-order-key-accepted", "SLIM-LINK-008",
        "The key agreement is not checked for an all-zero shared secret: a low-order key is accepted.";
    ReplyLinkIdNotEchoed, "reply-link-id-not-echoed", "SLIM-LINK-002",
        "The reply carries a link_id of the node's own instead of echoing the request's.";
    ReplyConnectionTypeFixed, "reply-connection-type-fixed", "SLIM-LINK-011",
        "The reply always says connection_type EDGE instead of echoing the request's.";
    SecondNegotiationAnswered, "second-negotiation-answered", "SLIM-LINK-009",
        "A negotiation on an established link is answered again (and re-keys the link).";
    NoNegotiationTimeout, "no-negotiation-timeout", "SLIM-LINK-006",
        "The negotiation deadline is never armed: a silent stream stays open forever.";
    HybridAnsweredClassically, "hybrid-answered-classically", "SLIM-LINK-015",
        "A request carrying an ML-KEM-768 key gets a classical reply (no link_kem_payload) instead of UNIMPLEMENTED.";
    PeerRefusedWithOk, "peer-refused-with-ok", "SLIM-LINK-010",
        "A PEER request is refused by ending the stream with status OK and no message instead of UNIMPLEMENTED.";
    // size limit
    SizeLimitOffByOne, "size-limit-off-by-one", "SLIM-TRANS-003",
        "The size check is `>=` instead of `>`: a message of exactly 4 MiB ends its stream.";
    SizeLimitOneOverAccepted, "size-limit-one-over-accepted", "SLIM-TRANS-003",
        "The decoding limit is set to 4 MiB + 1: a message one byte over the limit is accepted.";
    // recv_from ownership
    RecvFromForeignHonoured, "recv-from-foreign-honoured", "SLIM-SUB-010",
        "A Subscribe's recv_from is honoured for any existing link: one client installs routes on another client's link.";
    UnsubscribeRecvFromForeignHonoured, "unsubscribe-recv-from-foreign-honoured", "SLIM-SUB-010",
        "An Unsubscribe's recv_from is honoured for any existing link: one client removes another client's routes.";
    // forward_to
    ForwardToIgnored, "forward-to-ignored", "SLIM-ROUTE-008",
        "forward_to on a Publish is ignored and the Publish is routed by the subscription table.";
    ForwardToUnknownUsesTable, "forward-to-unknown-uses-table", "SLIM-ROUTE-008",
        "A Publish whose forward_to names no link falls back to the subscription table instead of being dropped.";
    ForwardToSubscribeAckedUnforwarded, "forward-to-subscribe-acked-unforwarded", "SLIM-SUB-013",
        "A Subscribe carrying forward_to is installed locally and acked with success, never sent on the named link.";
    // per-link order
    DeliveriesReordered, "deliveries-reordered", "SLIM-ROUTE-012",
        "Each receiving link's Publishes go out pairwise swapped: one is held and sent after the next one.";
    // slow consumers
    SlowConsumerBlocksSender, "slow-consumer-blocks-sender", "SLIM-TRANS-006",
        "When a receiver's queue is full the sender's link waits for room instead of dropping that copy.";
    UnboundedLinkQueue, "unbounded-link-queue", "SLIM-TRANS-006",
        "Per-link outbound queues are unbounded: a receiver that stops reading grows the node's memory.";
    AcksDroppedWhenQueueFull, "acks-dropped-when-queue-full", "SLIM-SUB-001",
        "SubscriptionAcks are dropped like routed copies when the subscriber's own queue is full.";
    // validation
    EmptyMessageEndsStream, "empty-message-ends-stream", "SLIM-VAL-001",
        "An empty Message{} on an established link ends the stream instead of being dropped.";
    PublishWithoutSessionDelivered, "publish-without-session-delivered", "SLIM-VAL-004",
        "A Publish without session header is routed.";
    SubscribeWithoutStringNameAccepted, "subscribe-without-string-name-accepted", "SLIM-VAL-003",
        "A Subscribe whose destination has no string form is installed and acked with success.";
    SubscribeWithoutSourceAccepted, "subscribe-without-source-accepted", "SLIM-VAL-002",
        "A Subscribe whose header has no source is installed and acked with success.";
    SubscribeWithoutHeaderPanics, "subscribe-without-header-panics", "SLIM-VAL-002",
        "A Subscribe without header panics the link's task (an unwrap on the header): the link hangs, its routes stay.";
    // authentication
    AuthLongerCredentialsAccepted, "auth-longer-credentials-accepted", "SLIM-AUTH-001",
        "The secret is compared as a prefix (over the expected length): the right secret followed by more bytes passes.";
    AuthShorterCredentialsAccepted, "auth-shorter-credentials-accepted", "SLIM-AUTH-001",
        "The secret is compared over the length received: the right secret missing its last bytes passes.";
    AuthAnySchemeAccepted, "auth-any-scheme-accepted", "SLIM-AUTH-001",
        "The scheme name is not checked: the right credentials under any scheme pass.";
    AuthMissingHeaderAccepted, "auth-missing-header-accepted", "SLIM-AUTH-001",
        "A call without an authorization header is let through (only present headers are checked).";
    // JWT and revocation
    JwtAudienceNotChecked, "jwt-audience-not-checked", "SLIM-REV-001",
        "The aud claim is never compared with the configured audience: a token minted for another service is accepted.";
    RevokedSubIgnored, "revoked-sub-ignored", "SLIM-REV-002",
        "sub entries of the revocation list are parsed but never matched: revoking an agent revokes nothing.";
    RevokedKidIgnored, "revoked-kid-ignored", "SLIM-REV-002",
        "kid entries of the revocation list are parsed but never matched: retiring a signing key revokes nothing.";
    RevokedTokenAcceptedAtSetup, "revoked-token-accepted-at-setup", "SLIM-REV-003",
        "The list is applied to open streams but not consulted when a call is set up: a revoked token reconnects.";
    RevocationNotEnforcedOnLiveStreams, "revocation-not-enforced-on-live-streams", "SLIM-REV-004",
        "A new list is consulted only when calls are set up: open streams with a revoked credential stay open.";
    SubscriptionsKeptAfterRevocation, "subscriptions-kept-after-revocation", "SLIM-REV-004",
        "A stream ended for a revoked credential keeps its subscriptions: the route to the dead link leaks.";
    ExpiryOnlyAtSetup, "expiry-only-at-setup", "SLIM-REV-005",
        "exp is checked only when the call is set up: a stream outlives its token.";
    MalformedListClearsRevocations, "malformed-list-clears-revocations", "SLIM-REV-006",
        "A revocation list that does not parse is taken as empty: every revoked credential is readmitted.";
    // Connections: TLS and limits
    TlsWithoutAlpn, "tls-without-alpn", "SLIM-CONN-001",
        "The TLS configuration sets no ALPN protocols, so the node never selects h2.";
    ClientCaIgnored, "client-ca-ignored", "SLIM-CONN-001",
        "The client CA is loaded but no client certificate is requested: mutual TLS authenticates nobody.";
    PlaintextOnTlsPortDropped, "plaintext-on-tls-port-dropped", "SLIM-CONN-002",
        "A connection whose first bytes are not a ClientHello is closed without a word.";
    OverLimitConnectionsReset, "over-limit-connections-reset", "SLIM-CONN-003",
        "A connection over a limit is closed at accept: its client sees a reset and no reason.";
    PeerLimitNotEnforced, "peer-limit-not-enforced", "SLIM-CONN-003",
        "Connections are counted in total only; one address may hold all of them.";
    IdleConnectionsKept, "idle-connections-kept", "SLIM-CONN-004",
        "The idle timer is never armed: a connection that opens no stream is held forever.";
    BusyConnectionsClosedWhenIdle, "busy-connections-closed-when-idle", "SLIM-CONN-004",
        "The idle timer ignores open streams: every connection is closed after the idle timeout, links and all.";
    StreamLimitNotAnnounced, "stream-limit-not-announced", "SLIM-CONN-005",
        "SETTINGS_MAX_CONCURRENT_STREAMS is left unset: one connection may open links without limit.";
}

impl Fault {
    /// Whether the fault's hooks live only in the relay's decoded path, so the frame path must
    /// be off for it to show (see the module doc).
    pub const fn decoded_path_only(self) -> bool {
        matches!(
            self,
            Fault::TtlNotDecremented
                | Fault::TtlDroppedOnlyAtZero
                | Fault::MacVerifiedAfterTtl
                | Fault::PublishMacNotChecked
                | Fault::EgressKeepsSenderMac
                | Fault::FanoutSignedWithFirstKey
                | Fault::RoutedByStringForm
                | Fault::DeliveredNamesStripped
                | Fault::DeliveriesReordered
        )
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a [`Fault`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fault {0:?}; known faults: {names}", names = known_names())]
pub struct UnknownFault(pub String);

fn known_names() -> String {
    Fault::ALL
        .iter()
        .map(|f| f.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for Fault {
    type Err = UnknownFault;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Fault::ALL
            .iter()
            .copied()
            .find(|f| f.name() == s)
            .ok_or_else(|| UnknownFault(s.to_string()))
    }
}

/// The fault selected by `SLIM_RELAY_MUTANT`, read once.
#[cfg(feature = "mutants")]
pub fn active() -> Option<Fault> {
    static ACTIVE: std::sync::OnceLock<Option<Fault>> = std::sync::OnceLock::new();
    *ACTIVE.get_or_init(|| std::env::var(ENV).ok().and_then(|v| v.parse().ok()))
}

/// Whether fault `f` is active: `SLIM_RELAY_MUTANT` names it.
#[cfg(feature = "mutants")]
pub fn on(f: Fault) -> bool {
    active() == Some(f)
}

/// Whether fault `f` is active: never, without the `mutants` feature.
#[cfg(not(feature = "mutants"))]
#[inline(always)]
pub const fn on(_f: Fault) -> bool {
    false
}

/// Whether the relay must route every Publish through its decoded path (the active fault is
/// [`Fault::decoded_path_only`]).
#[cfg(feature = "mutants")]
pub fn frame_path_disabled() -> bool {
    active().is_some_and(Fault::decoded_path_only)
}

/// Whether the relay must route every Publish through its decoded path: never, without the
/// `mutants` feature.
#[cfg(not(feature = "mutants"))]
#[inline(always)]
pub const fn frame_path_disabled() -> bool {
    false
}

/// What `slim-relay` does with `SLIM_RELAY_MUTANT` before anything else: `Some(code)` to exit
/// with (after `list`, an unknown name, or a variable set on a build without the feature),
/// `None` to run (announcing the active fault on stderr).
pub fn startup() -> Option<std::process::ExitCode> {
    use std::process::ExitCode;
    let value = std::env::var(ENV).ok().filter(|v| !v.is_empty())?;
    if !cfg!(feature = "mutants") {
        eprintln!(
            "slim-relay: {ENV} is set but this slim-relay was built without the `mutants` feature \
             (cargo build -p slim-reference --features mutants); unset it to run the correct relay"
        );
        return Some(ExitCode::from(2));
    }
    if value == "list" {
        for f in Fault::ALL {
            println!("{}\t{}\t{}", f.name(), f.requirement(), f.description());
        }
        return Some(ExitCode::SUCCESS);
    }
    match value.parse::<Fault>() {
        Ok(f) => {
            eprintln!(
                "slim-relay: FAULT ACTIVE {} ({}): {}",
                f.name(),
                f.requirement(),
                f.description()
            );
            None
        }
        Err(e) => {
            eprintln!("slim-relay: {ENV}: {e} (or `list`)");
            Some(ExitCode::from(2))
        }
    }
}

// ---- faulty paths too long for a one-line hook --------------------------------------------

/// [`Fault::ExpiryOnlyAtSetup`]: when a link whose token expires at `expires_at` is ended; with
/// the fault, a year from `now` (never, for any run): the token counted only at call setup.
pub fn link_expiry(now: std::time::Instant, expires_at: std::time::Instant) -> std::time::Instant {
    if on(Fault::ExpiryOnlyAtSetup) {
        now + std::time::Duration::from_secs(365 * 86_400)
    } else {
        expires_at
    }
}

/// [`Fault::NegotiationIsReplyAccepted`] … [`Fault::NegotiationKeyLengthUnchecked`]: `Ok` when the
/// active fault skips the request check that produced `err`.
pub fn overlooked(err: LinkError) -> Result<(), LinkError> {
    let skipped = match err {
        LinkError::WrongDirection { .. } => on(Fault::NegotiationIsReplyAccepted),
        LinkError::EmptyLinkId => on(Fault::NegotiationEmptyLinkIdAccepted),
        LinkError::BadVersion(_) => on(Fault::NegotiationVersionUnchecked),
        LinkError::BadKeyLength(n) => n != 0 && on(Fault::NegotiationKeyLengthUnchecked),
        _ => false,
    };
    if skipped {
        Ok(())
    } else {
        Err(err)
    }
}

/// The link MAC a faulty node derives after its check let a defect through: the key padded or
/// truncated to 32 bytes, a placeholder salt for an empty link id, a fixed key for a low-order
/// peer key. `Err(err)` unless the matching fault is active.
pub fn derive_anyway(
    pair: &LinkKeyPair,
    req: &pb::LinkNegotiationPayload,
    err: LinkError,
) -> Result<LinkMac, LinkError> {
    match err {
        LinkError::BadKeyLength(_) if on(Fault::NegotiationKeyLengthUnchecked) => {
            let mut key = req.link_ecdh_public_key.to_vec();
            key.resize(X25519_KEY_LEN, 0);
            pair.derive_link_mac(&key, &req.link_id)
        }
        LinkError::EmptyLinkId if on(Fault::NegotiationEmptyLinkIdAccepted) => {
            pair.derive_link_mac(&req.link_ecdh_public_key, "-")
        }
        LinkError::NonContributory if on(Fault::NegotiationLowOrderKeyAccepted) => {
            Ok(LinkMac::new([0; TAG_LEN], &req.link_id))
        }
        err => Err(err),
    }
}

/// [`Fault::MacTruncatedCompare`]: compares `tag` with the expected tag over the shorter of the
/// two lengths.
pub fn truncated_compare(expected: &[u8; TAG_LEN], tag: Option<&[u8]>) -> Result<(), MacError> {
    let tag = tag.ok_or(MacError::MissingTag)?;
    if tag.iter().zip(expected).all(|(a, b)| a == b) {
        Ok(())
    } else {
        Err(MacError::Mismatch)
    }
}

/// [`Fault::MacVerifiedAfterTtl`]: a copy of the header as it is after the ttl step.
pub fn after_ttl_step(header: &pb::SlimHeader) -> pb::SlimHeader {
    let mut h = header.clone();
    h.ttl = h.ttl.saturating_sub(1);
    h
}

/// [`Fault::RoutedByStringForm`]: the routing key a node that hashes the string form computes,
/// or `None` when the fault is off or the name has no string form.
pub fn routed_by_string(name: Option<&pb::Name>) -> Option<pb::EncodedName> {
    if !on(Fault::RoutedByStringForm) {
        return None;
    }
    let name = name?;
    let s = name.str_name.as_ref()?;
    Some(pb::EncodedName {
        component_0: hash_component(&s.str_component_0),
        component_1: hash_component(&s.str_component_1),
        component_2: hash_component(&s.str_component_2),
        name_id: name.name.as_ref().and_then(|n| n.name_id),
    })
}

/// [`Fault::AuthLongerCredentialsAccepted`], [`Fault::AuthShorterCredentialsAccepted`]: the
/// received credentials (`got`) against the expected ones (`want`) compared over the shorter
/// length, on the secret itself (decoded from base64 when both sides decode, as Basic
/// credentials do). `None` when neither fault is active or the lengths do not give it a chance.
pub fn loose_secret_eq(got: &[u8], want: &[u8]) -> Option<bool> {
    use base64::Engine as _;
    if !on(Fault::AuthLongerCredentialsAccepted) && !on(Fault::AuthShorterCredentialsAccepted) {
        return None;
    }
    let b64 = &base64::engine::general_purpose::STANDARD;
    let (got, want) = match (b64.decode(got), b64.decode(want)) {
        (Ok(g), Ok(w)) => (Cow::Owned(g), Cow::Owned(w)),
        _ => (Cow::Borrowed(got), Cow::Borrowed(want)),
    };
    if got.len() > want.len() && on(Fault::AuthLongerCredentialsAccepted) {
        return Some(got.starts_with(&want));
    }
    if got.len() < want.len() && !got.is_empty() && on(Fault::AuthShorterCredentialsAccepted) {
        return Some(want.starts_with(&got));
    }
    None
}

/// [`Fault::DeliveriesReordered`]: per receiving link, the delivery held back until the next one.
/// Generic over the relay's output type so this module does not depend on the relay.
#[derive(Debug)]
pub struct Held<T>(BTreeMap<u64, T>);

impl<T> Default for Held<T> {
    fn default() -> Self {
        Self(BTreeMap::new())
    }
}

impl<T> Held<T> {
    /// Takes the delivery just pushed on `out` (`receiver` names its link, or `None` for
    /// anything that is not a delivery): holds it when its link has none held, else lets it go
    /// out followed by the one held (so each pair arrives swapped).
    pub fn swap_last(&mut self, out: &mut Vec<T>, receiver: impl Fn(&T) -> Option<u64>) {
        let Some(conn) = out.last().and_then(&receiver) else {
            return;
        };
        match self.0.remove(&conn) {
            Some(held) => out.push(held),
            None => {
                if let Some(delivery) = out.pop() {
                    self.0.insert(conn, delivery);
                }
            }
        }
    }
}

/// [`Fault::PeerRefusedWithOk`]: the status a node ends a refused PEER negotiation with, or
/// `None` when the fault is off or the refusal (`unimplemented`, `message`) is another one.
pub fn peer_refusal_status(unimplemented: bool, message: &str) -> Option<tonic::Status> {
    (on(Fault::PeerRefusedWithOk) && unimplemented && message.contains("PEER"))
        .then(|| tonic::Status::new(tonic::Code::Ok, ""))
}

/// [`Fault::UnboundedLinkQueue`]: a queue capacity no test fills.
pub const UNBOUNDED_QUEUE: usize = 1 << 40;

/// [`Fault::SizeLimitOneOverAccepted`]: `DataPlaneService.OpenChannel` served like
/// [`slim_proto::service::OpenChannelServer`] but with a decoding limit of the caller's choice.
#[derive(Debug, Clone)]
pub struct OpenChannelWithLimit<S, C> {
    handler: S,
    codec: C,
    limit: usize,
}

impl<S, C> OpenChannelWithLimit<S, C> {
    /// Serves `OpenChannel` with `handler` and `codec`, refusing frames over `limit` bytes.
    pub fn new(handler: S, codec: C, limit: usize) -> Self {
        Self {
            handler,
            codec,
            limit,
        }
    }
}

impl<S, C> tonic::server::NamedService for OpenChannelWithLimit<S, C> {
    const NAME: &'static str = "dataplane.proto.v1.DataPlaneService";
}

impl<S, C, B> tonic::codegen::Service<tonic::codegen::http::Request<B>>
    for OpenChannelWithLimit<S, C>
where
    C: tonic::codec::Codec + Clone + Send + 'static,
    S: tonic::server::StreamingService<C::Decode, Response = C::Encode> + Clone + Send + 'static,
    S::Future: Send,
    S::ResponseStream: Send + 'static,
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: tonic::codegen::http::Request<B>) -> Self::Future {
        let handler = self.handler.clone();
        let codec = self.codec.clone();
        let limit = self.limit;
        Box::pin(async move {
            if req.uri().path() != slim_proto::OPEN_CHANNEL {
                return Ok(
                    tonic::Status::unimplemented("a SLIM node serves only OpenChannel").into_http(),
                );
            }
            let mut grpc = tonic::server::Grpc::new(codec).max_decoding_message_size(limit);
            Ok(grpc.streaming(handler, req).await)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_kebab_case() {
        let mut seen = HashSet::new();
        for f in Fault::ALL {
            let n = f.name();
            assert!(seen.insert(n), "duplicate name {n}");
            assert!(
                !n.is_empty()
                    && !n.starts_with('-')
                    && !n.ends_with('-')
                    && !n.contains("--")
                    && n.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{n} is not kebab-case"
            );
            assert!(f.requirement().starts_with("SLIM-"), "{n}");
            assert!(f.description().ends_with('.'), "{n}");
        }
        assert!(Fault::ALL.len() >= 32);
    }

    #[test]
    fn from_str_round_trips() {
        for f in Fault::ALL {
            assert_eq!(f.name().parse::<Fault>(), Ok(*f));
            assert_eq!(f.to_string(), f.name());
        }
        let err = "no-such-fault".parse::<Fault>().unwrap_err().to_string();
        assert!(err.contains("no-such-fault") && err.contains("ttl-not-decremented"));
    }

    #[cfg(not(feature = "mutants"))]
    #[test]
    fn nothing_is_on_without_the_feature() {
        for f in Fault::ALL {
            assert!(!on(*f), "{f}");
        }
        assert!(!frame_path_disabled());
    }

    /// `conformance/mutants/faults.tsv` (what run.sh reads) lists exactly these faults, with
    /// the same requirements.
    #[test]
    fn the_runner_list_matches() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../conformance/mutants/faults.tsv"
        );
        let Ok(text) = std::fs::read_to_string(path) else {
            return; // the crate outside its repository
        };
        let listed: Vec<(String, String)> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let cols: Vec<&str> = l.split('\t').collect();
                (
                    cols[0].to_string(),
                    cols.get(2).copied().unwrap_or("").to_string(),
                )
            })
            .collect();
        let ours: Vec<(String, String)> = Fault::ALL
            .iter()
            .map(|f| (f.name().to_string(), f.requirement().to_string()))
            .collect();
        assert_eq!(listed, ours);
    }
}
