//! Link negotiation: the first exchange on every link (SLIM-LINK-*).
//!
//! The initiator sends a `LinkNegotiationPayload` with a fresh `link_id` and an X25519 public key;
//! the responder answers once with `is_reply = true`, the same `link_id` and its own key. Both
//! derive the header MAC key as
//! `HKDF-SHA256(salt = link_id bytes, ikm = X25519 shared secret, info = "SLIM-DP-inter-node-hmac-v1", L = 32)`.
//! This module holds the key agreement and the request/reply checks; who sends what and when is
//! decided by the relay and client state machines.

use hkdf::Hkdf;
use rand_core::CryptoRngCore;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::mac::LinkMac;
use crate::pb;

/// HKDF info string of the classical key derivation.
pub const HKDF_INFO_V1: &[u8] = b"SLIM-DP-inter-node-hmac-v1";

/// HKDF info string of the hybrid (X25519 + ML-KEM-768) key derivation.
pub const HKDF_INFO_V1_PQ: &[u8] = b"SLIM-DP-inter-node-hmac-v1-pq";

/// Length of an X25519 public key.
pub const X25519_KEY_LEN: usize = 32;

/// Length of an ML-KEM-768 encapsulation key (initiator's `link_kem_payload`).
pub const ML_KEM768_PUBLIC_KEY_LEN: usize = 1184;

/// Length of an ML-KEM-768 ciphertext (responder's `link_kem_payload`).
pub const ML_KEM768_CIPHERTEXT_LEN: usize = 1088;

/// A defect in a link negotiation message, or a failed key agreement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The first message on a link was something else (SLIM-LINK-001).
    #[error("the first message on a link must be a link negotiation; got {0}")]
    NotNegotiation(&'static str),
    /// `Link{}` with no payload.
    #[error("link message carries no link_negotiation payload")]
    MissingPayload,
    /// A request arrived with `is_reply = true`, or a reply with `false` (SLIM-LINK-003).
    #[error("link negotiation has is_reply={got} where {} was expected", !.got)]
    WrongDirection {
        /// The `is_reply` value received.
        got: bool,
    },
    /// `link_id` is empty (SLIM-LINK-002).
    #[error("link negotiation has an empty link_id; send a fresh non-empty id (a UUID)")]
    EmptyLinkId,
    /// The reply echoes another link id.
    #[error("link negotiation reply has link_id {got:?}, expected {expected:?}")]
    LinkIdMismatch {
        /// The id we sent.
        expected: String,
        /// The id we got back.
        got: String,
    },
    /// `slim_version` is not semver (SLIM-LINK-004).
    #[error("slim_version {0:?} is not a semver version such as \"3.4.6\"")]
    BadVersion(String),
    /// The X25519 key is not 32 bytes (SLIM-LINK-005).
    #[error("link_ecdh_public_key is {0} bytes; an X25519 public key is 32 bytes")]
    BadKeyLength(usize),
    /// The key agreement produced the all-zero secret (a low-order peer key) (SLIM-LINK-008).
    #[error("link_ecdh_public_key is a low-order point: the key agreement is not contributory")]
    NonContributory,
}

/// Names the kind of a message for error texts.
pub fn message_kind(msg: &pb::Message) -> &'static str {
    use pb::message::MessageType;
    match &msg.message_type {
        None => "a message with no message_type",
        Some(MessageType::Subscribe(_)) => "subscribe",
        Some(MessageType::Unsubscribe(_)) => "unsubscribe",
        Some(MessageType::Publish(_)) => "publish",
        Some(MessageType::Link(_)) => "link",
        Some(MessageType::SubscriptionAck(_)) => "subscription_ack",
    }
}

/// Returns the negotiation payload of a message, or says what it is instead.
pub fn negotiation_payload(msg: &pb::Message) -> Result<&pb::LinkNegotiationPayload, LinkError> {
    use pb::message::MessageType;
    match &msg.message_type {
        Some(MessageType::Link(link)) => match &link.link_type {
            Some(pb::link::LinkType::LinkNegotiation(p)) => Ok(p),
            None => Err(LinkError::MissingPayload),
        },
        _ => Err(LinkError::NotNegotiation(message_kind(msg))),
    }
}

/// Checks a negotiation request as a responder (SLIM-LINK-002..005). `strict` requires a key.
pub fn check_request(p: &pb::LinkNegotiationPayload, strict: bool) -> Result<(), LinkError> {
    if p.is_reply {
        return Err(LinkError::WrongDirection { got: true });
    }
    if p.link_id.is_empty() {
        return Err(LinkError::EmptyLinkId);
    }
    semver::Version::parse(&p.slim_version)
        .map_err(|_| LinkError::BadVersion(p.slim_version.clone()))?;
    let key_len = p.link_ecdh_public_key.len();
    if key_len != X25519_KEY_LEN && (strict || key_len != 0) {
        return Err(LinkError::BadKeyLength(key_len));
    }
    Ok(())
}

/// Checks a negotiation reply as an initiator.
pub fn check_reply(
    p: &pb::LinkNegotiationPayload,
    sent_link_id: &str,
    strict: bool,
) -> Result<(), LinkError> {
    if !p.is_reply {
        return Err(LinkError::WrongDirection { got: false });
    }
    if p.link_id != sent_link_id {
        return Err(LinkError::LinkIdMismatch {
            expected: sent_link_id.to_string(),
            got: p.link_id.clone(),
        });
    }
    semver::Version::parse(&p.slim_version)
        .map_err(|_| LinkError::BadVersion(p.slim_version.clone()))?;
    let key_len = p.link_ecdh_public_key.len();
    if key_len != X25519_KEY_LEN && (strict || key_len != 0) {
        return Err(LinkError::BadKeyLength(key_len));
    }
    Ok(())
}

/// An ephemeral X25519 key pair for one link.
pub struct LinkKeyPair {
    secret: StaticSecret,
    public: PublicKey,
}

impl LinkKeyPair {
    /// A fresh key pair from `rng`.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        Self::from_secret_bytes({
            let mut bytes = [0u8; 32];
            rng.fill_bytes(&mut bytes);
            bytes
        })
    }

    /// A key pair from fixed secret bytes (test vectors).
    pub fn from_secret_bytes(bytes: [u8; 32]) -> Self {
        let secret = StaticSecret::from(bytes);
        let public = PublicKey::from(&secret);
        Self { secret, public }
    }

    /// The 32-byte public key to put in `link_ecdh_public_key`.
    pub fn public_bytes(&self) -> [u8; 32] {
        self.public.to_bytes()
    }

    /// Derives the link's MAC state from the peer's public key (SLIM-LINK-007).
    pub fn derive_link_mac(&self, peer_public: &[u8], link_id: &str) -> Result<LinkMac, LinkError> {
        derive_link_mac(&self.secret, peer_public, link_id)
    }

    /// The hybrid link key with this key pair (see [`derive_hybrid_link_mac`]).
    pub fn derive_hybrid_link_mac(
        &self,
        peer_public: &[u8],
        kem_shared: &[u8; 32],
        link_id: &str,
    ) -> Result<LinkMac, LinkError> {
        derive_hybrid_link_mac(&self.secret, peer_public, kem_shared, link_id)
    }
}

/// `HKDF-SHA256(salt = link_id, ikm = X25519(secret, peer), info = v1)` as a [`LinkMac`].
pub fn derive_link_mac(
    secret: &StaticSecret,
    peer_public: &[u8],
    link_id: &str,
) -> Result<LinkMac, LinkError> {
    derive(secret, peer_public, &[], HKDF_INFO_V1, link_id)
}

/// The hybrid link key (SLIM-LINK-014): `HKDF-SHA256(salt = link_id, ikm = X25519(secret, peer)
/// || ML-KEM-768 shared secret, info = v1-pq)` as a [`LinkMac`]. The initiator sent an ML-KEM-768
/// encapsulation key in `link_kem_payload`; `kem_shared` is what it decapsulated from the
/// responder's ciphertext.
pub fn derive_hybrid_link_mac(
    secret: &StaticSecret,
    peer_public: &[u8],
    kem_shared: &[u8; 32],
    link_id: &str,
) -> Result<LinkMac, LinkError> {
    derive(secret, peer_public, kem_shared, HKDF_INFO_V1_PQ, link_id)
}

/// HKDF-SHA256 with salt `link_id` over the X25519 shared secret followed by `extra_ikm`.
fn derive(
    secret: &StaticSecret,
    peer_public: &[u8],
    extra_ikm: &[u8],
    info: &[u8],
    link_id: &str,
) -> Result<LinkMac, LinkError> {
    if link_id.is_empty() {
        return Err(LinkError::EmptyLinkId);
    }
    let peer: [u8; X25519_KEY_LEN] = peer_public
        .try_into()
        .map_err(|_| LinkError::BadKeyLength(peer_public.len()))?;
    let shared = secret.diffie_hellman(&PublicKey::from(peer));
    if !shared.was_contributory() {
        return Err(LinkError::NonContributory);
    }
    let ikm = [shared.as_bytes().as_slice(), extra_ikm].concat();
    let hk = Hkdf::<Sha256>::new(Some(link_id.as_bytes()), &ikm);
    let mut okm = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit.
    hk.expand(info, &mut okm).unwrap_or_else(|_| unreachable!());
    Ok(LinkMac::new(okm, link_id))
}

/// A negotiation message as an initiator or responder sends it.
pub fn negotiation_message(p: pb::LinkNegotiationPayload) -> pb::Message {
    pb::Message {
        message_type: Some(pb::message::MessageType::Link(pb::Link {
            link_type: Some(pb::link::LinkType::LinkNegotiation(p)),
        })),
        metadata: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    fn request() -> pb::LinkNegotiationPayload {
        pb::LinkNegotiationPayload {
            link_id: "0b7c6f6e-2d3a-4d6c-9a3e-1f2e3d4c5b6a".into(),
            slim_version: "3.3.8".into(),
            link_ecdh_public_key: vec![9; 32].into(),
            connection_type: pb::LinkConnectionType::Edge as i32,
            ..Default::default()
        }
    }

    #[test]
    fn both_sides_derive_the_same_key() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let a = LinkKeyPair::generate(&mut rng);
        let b = LinkKeyPair::generate(&mut rng);
        let ka = a.derive_link_mac(&b.public_bytes(), "L").expect("derive");
        let kb = b.derive_link_mac(&a.public_bytes(), "L").expect("derive");
        assert_eq!(ka.key(), kb.key());
        let other = a.derive_link_mac(&b.public_bytes(), "M").expect("derive");
        assert_ne!(ka.key(), other.key(), "link id is the HKDF salt");
    }

    #[test]
    fn low_order_keys_are_refused() {
        let a = LinkKeyPair::from_secret_bytes([3; 32]);
        assert_eq!(
            a.derive_link_mac(&[0; 32], "L").unwrap_err(),
            LinkError::NonContributory
        );
    }

    #[test]
    fn request_checks() {
        assert_eq!(check_request(&request(), true), Ok(()));
        let mut r = request();
        r.is_reply = true;
        assert_eq!(
            check_request(&r, true),
            Err(LinkError::WrongDirection { got: true })
        );
        let mut r = request();
        r.link_id.clear();
        assert_eq!(check_request(&r, true), Err(LinkError::EmptyLinkId));
        let mut r = request();
        r.slim_version = "not-semver".into();
        assert!(matches!(
            check_request(&r, true),
            Err(LinkError::BadVersion(_))
        ));
        for len in [0, 31, 33] {
            let mut r = request();
            r.link_ecdh_public_key = vec![1; len].into();
            assert_eq!(check_request(&r, true), Err(LinkError::BadKeyLength(len)));
        }
        let mut r = request();
        r.link_ecdh_public_key.clear();
        assert_eq!(
            check_request(&r, false),
            Ok(()),
            "non-strict accepts no key"
        );
    }

    #[test]
    fn non_negotiation_first_messages_are_named() {
        let m = pb::Message::default();
        assert_eq!(
            negotiation_payload(&m).unwrap_err().to_string(),
            "the first message on a link must be a link negotiation; got a message with no message_type"
        );
        let m = pb::Message {
            message_type: Some(pb::message::MessageType::Link(pb::Link { link_type: None })),
            metadata: Default::default(),
        };
        assert_eq!(negotiation_payload(&m), Err(LinkError::MissingPayload));
    }
}
