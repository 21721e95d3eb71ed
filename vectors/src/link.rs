//! `link.yaml`: the link MAC key derivation (SLIM-LINK-007) and its refusals (SLIM-LINK-002,
//! SLIM-LINK-005, SLIM-LINK-008).
//!
//! Every vector has an initiator and a responder X25519 key pair, the link id and the expected
//! `HKDF-SHA256(salt = link_id UTF-8, IKM = X25519 shared secret, info =
//! "SLIM-DP-inter-node-hmac-v1", L = 32)`. Secret keys are fixed: the RFC 7748 §6.1 pair, and
//! SHA-256 of a fixed label for the others. The generator computes public keys, shared secrets
//! and output keys with `x25519-dalek`'s raw `x25519` function and `hkdf`, not with slim-proto.

use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use slim_proto::link::{LinkError, LinkKeyPair};
use x25519_dalek::{x25519, X25519_BASEPOINT_BYTES};

use crate::common::{hx, unhex, unhex_n, FileReport, Outcome, GENERATOR, SCHEMA};
use crate::VectorError;

/// File name.
pub const FILE: &str = "link.yaml";

/// HKDF info of the classical link key (WIRE.md §1.5).
pub const INFO: &[u8] = b"SLIM-DP-inter-node-hmac-v1";

/// HKDF info of the hybrid (ML-KEM) link key, used here only for a negative vector.
const INFO_PQ: &[u8] = b"SLIM-DP-inter-node-hmac-v1-pq";

/// The contents of `link.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkFile {
    /// Schema version (1).
    pub schema: u32,
    /// `link`.
    pub area: String,
    /// What the file pins.
    pub description: String,
    /// Requirement ids pinned by the file.
    pub requirements: Vec<String>,
    /// `slim-vectors <version>`.
    pub generator: String,
    /// The vectors, tc_ids 1..n.
    pub vectors: Vec<LinkVector>,
}

/// One key agreement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkVector {
    /// Vector number, unique in the file.
    pub tc_id: u32,
    /// What the vector exercises.
    pub comment: String,
    /// `valid`: both sides derive `link_key`; `invalid`: the derivation must be refused (or,
    /// with `error: wrong_key`, must not produce `link_key`).
    pub result: Outcome,
    /// Why an invalid vector is wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The link id (the HKDF salt).
    pub link_id: String,
    /// Initiator's X25519 secret key (32 bytes, before clamping), hex.
    pub initiator_secret: String,
    /// Initiator's public key, hex.
    pub initiator_public: String,
    /// Responder's secret key; absent when the responder's public key is a crafted point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responder_secret: Option<String>,
    /// Responder's public key as received by the initiator, hex.
    pub responder_public: String,
    /// X25519(initiator_secret, responder_public), hex (absent when the key has a bad length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_secret: Option<String>,
    /// The 32-byte link MAC key: valid vectors, and the wrong key of `wrong_key` vectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_key: Option<String>,
    /// For invalid vectors: `empty_link_id`, `bad_key_length`, `non_contributory` or
    /// `wrong_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// RFC 7748 §6.1 test keys.
const RFC_ALICE: &str = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
const RFC_ALICE_PUB: &str = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
const RFC_BOB: &str = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb";
const RFC_BOB_PUB: &str = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
const RFC_SHARED: &str = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";

/// The link id used by the first vector, the MAC vectors and the encoding vectors.
pub const LINK_ID: &str = "0b7c6f6e-2d3a-4d6c-9a3e-1f2e3d4c5b6a";

/// Low-order points of Curve25519 (their X25519 result is all zeros for every secret).
const LOW_ORDER: &[(&str, &str)] = &[
    (
        "0000000000000000000000000000000000000000000000000000000000000000",
        "u = 0",
    ),
    (
        "0100000000000000000000000000000000000000000000000000000000000000",
        "u = 1 (order 1 after clearing the cofactor)",
    ),
    (
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "a point of order 8",
    ),
    (
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "the other point of order 8",
    ),
    (
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "u = p - 1 (order 2)",
    ),
];

/// A fixed secret key: SHA-256 of a label.
fn seeded(label: &str) -> [u8; 32] {
    Sha256::digest(format!("slim-vectors/link/{label}").as_bytes()).into()
}

fn public(secret: [u8; 32]) -> [u8; 32] {
    x25519(secret, X25519_BASEPOINT_BYTES)
}

/// `HKDF-SHA256(salt, ikm, info, 32)` computed with the `hkdf` crate.
fn hkdf32(salt: Option<&[u8]>, ikm: &[u8], info: &[u8]) -> Result<[u8; 32], VectorError> {
    let mut okm = [0u8; 32];
    Hkdf::<Sha256>::new(salt, ikm)
        .expand(info, &mut okm)
        .map_err(|e| VectorError::SelfCheck(format!("HKDF expand: {e}")))?;
    Ok(okm)
}

/// The link MAC key for `(initiator secret, responder public, link id)` as WIRE.md §1.5 defines
/// it (SLIM-LINK-007), computed without slim-proto.
pub fn link_key(
    secret: [u8; 32],
    peer_public: [u8; 32],
    link_id: &str,
) -> Result<[u8; 32], VectorError> {
    let shared = x25519(secret, peer_public);
    hkdf32(Some(link_id.as_bytes()), &shared, INFO)
}

/// The key of the first vector (RFC 7748 keys, [`LINK_ID`]), reused by `mac.yaml`.
pub fn rfc_link_key() -> Result<[u8; 32], VectorError> {
    link_key(decode32(RFC_ALICE)?, decode32(RFC_BOB_PUB)?, LINK_ID)
}

fn decode32(h: &str) -> Result<[u8; 32], VectorError> {
    unhex_n::<32>("constant", h).map_err(VectorError::SelfCheck)
}

struct Pair {
    label: String,
    a: [u8; 32],
    b: [u8; 32],
}

/// Builds the file.
pub fn build() -> Result<LinkFile, VectorError> {
    let rfc = Pair {
        label: "the RFC 7748 §6.1 key pairs (Alice initiates, Bob responds)".into(),
        a: decode32(RFC_ALICE)?,
        b: decode32(RFC_BOB)?,
    };
    if hx(&public(rfc.a)) != RFC_ALICE_PUB
        || hx(&public(rfc.b)) != RFC_BOB_PUB
        || hx(&x25519(rfc.a, public(rfc.b))) != RFC_SHARED
    {
        return Err(VectorError::SelfCheck(
            "x25519 does not reproduce RFC 7748 §6.1".into(),
        ));
    }
    let seeded_pair = |n: u32| {
        Pair {
        label: format!("secret keys SHA-256(\"slim-vectors/link/initiator-{n}\") and SHA-256(\"slim-vectors/link/responder-{n}\")"),
        a: seeded(&format!("initiator-{n}")),
        b: seeded(&format!("responder-{n}")),
    }
    };
    let long_id = "l".repeat(100);
    let valid: Vec<(Pair, String, String)> = vec![
        (
            rfc,
            LINK_ID.into(),
            "a UUID link id, as the SDK sends".into(),
        ),
        (
            Pair {
                label: "the RFC 7748 §6.1 key pairs".into(),
                ..pairs_rfc()?
            },
            "L".into(),
            "same keys, link id \"L\": the link id is the HKDF salt, so the key differs".into(),
        ),
        (
            seeded_pair(1),
            "9f4d1c2e-5b6a-4f3e-8d2c-1a0b9c8d7e6f".into(),
            "a UUID link id".into(),
        ),
        (
            seeded_pair(2),
            "link-\u{e9}\u{1f980}".into(),
            "a non-ASCII link id (salt = its UTF-8 bytes)".into(),
        ),
        (
            seeded_pair(3),
            long_id,
            "a 100-byte link id: longer than the SHA-256 block, so HMAC hashes the salt first"
                .into(),
        ),
        (seeded_pair(4), "x".into(), "a one-byte link id".into()),
    ];

    let mut vectors = Vec::new();
    let mut tc_id = 0;
    for (pair, link_id, why) in &valid {
        tc_id += 1;
        let (pa, pb) = (public(pair.a), public(pair.b));
        let shared = x25519(pair.a, pb);
        if shared != x25519(pair.b, pa) {
            return Err(VectorError::SelfCheck(format!(
                "tc_id {tc_id}: X25519 sides differ"
            )));
        }
        let key = hkdf32(Some(link_id.as_bytes()), &shared, INFO)?;
        vectors.push(LinkVector {
            tc_id,
            comment: format!("{why}; {}", pair.label),
            result: Outcome::Valid,
            reason: None,
            link_id: link_id.clone(),
            initiator_secret: hx(&pair.a),
            initiator_public: hx(&pa),
            responder_secret: Some(hx(&pair.b)),
            responder_public: hx(&pb),
            shared_secret: Some(hx(&shared)),
            link_key: Some(hx(&key)),
            error: None,
        });
    }

    let rfc = pairs_rfc()?;
    let (pa, pb) = (public(rfc.a), public(rfc.b));
    let shared = x25519(rfc.a, pb);
    let invalid = |tc_id: u32,
                   comment: &str,
                   reason: &str,
                   link_id: &str,
                   responder_secret: Option<[u8; 32]>,
                   responder_public: &[u8],
                   shared: Option<[u8; 32]>,
                   key: Option<[u8; 32]>,
                   error: &str| LinkVector {
        tc_id,
        comment: comment.into(),
        result: Outcome::Invalid,
        reason: Some(reason.into()),
        link_id: link_id.into(),
        initiator_secret: hx(&rfc.a),
        initiator_public: hx(&pa),
        responder_secret: responder_secret.map(|s| hx(&s)),
        responder_public: hx(responder_public),
        shared_secret: shared.map(|s| hx(&s)),
        link_key: key.map(|k| hx(&k)),
        error: Some(error.into()),
    };
    tc_id += 1;
    vectors.push(invalid(
        tc_id,
        "empty link id with valid keys",
        "a link id must be non-empty (SLIM-LINK-002); an empty salt is refused rather than derived",
        "",
        Some(rfc.b),
        &pb,
        Some(shared),
        None,
        "empty_link_id",
    ));
    for (point, what) in LOW_ORDER {
        tc_id += 1;
        let p = decode32(point)?;
        let s = x25519(rfc.a, p);
        if s != [0; 32] {
            return Err(VectorError::SelfCheck(format!(
                "{what}: X25519 result is not all zeros"
            )));
        }
        vectors.push(invalid(
            tc_id,
            &format!("responder public key is a low-order point: {what}"),
            "the shared secret is all zeros, so the link key depends only on the public link id \
             (SLIM-LINK-008, RFC 7748 §6.1)",
            LINK_ID,
            None,
            &p,
            Some(s),
            None,
            "non_contributory",
        ));
    }
    for len in [31usize, 33] {
        tc_id += 1;
        let mut key = pb.to_vec();
        key.resize(len, 0x01);
        vectors.push(invalid(
            tc_id,
            &format!("responder public key of {len} bytes"),
            "an X25519 public key is exactly 32 bytes (SLIM-LINK-005)",
            LINK_ID,
            None,
            &key,
            None,
            None,
            "bad_key_length",
        ));
    }
    tc_id += 1;
    vectors.push(invalid(
        tc_id,
        "the key an implementation gets when it forgets the salt",
        "HKDF without the link id as salt is not the SLIM link key (SLIM-LINK-007)",
        LINK_ID,
        Some(rfc.b),
        &pb,
        Some(shared),
        Some(hkdf32(None, &shared, INFO)?),
        "wrong_key",
    ));
    tc_id += 1;
    vectors.push(invalid(
        tc_id,
        "the key an implementation gets with the hybrid info string on a classical link",
        "a classical link uses info \"SLIM-DP-inter-node-hmac-v1\"; \"…-v1-pq\" is for X25519 + \
         ML-KEM-768 only (SLIM-LINK-007, SLIM-LINK-012)",
        LINK_ID,
        Some(rfc.b),
        &pb,
        Some(shared),
        Some(hkdf32(Some(LINK_ID.as_bytes()), &shared, INFO_PQ)?),
        "wrong_key",
    ));

    Ok(LinkFile {
        schema: SCHEMA,
        area: "link".into(),
        description: "Link MAC key derivation: link_key = HKDF-SHA256(salt = link_id UTF-8 bytes, \
            IKM = X25519(initiator_secret, responder_public), info = \
            \"SLIM-DP-inter-node-hmac-v1\", L = 32); the responder derives the same key from \
            its secret and the initiator's public key. Refused: an empty link id, a public key \
            that is not 32 bytes, a low-order public key (all-zero shared secret)."
            .into(),
        requirements: vec![
            "SLIM-LINK-002".into(),
            "SLIM-LINK-005".into(),
            "SLIM-LINK-007".into(),
            "SLIM-LINK-008".into(),
        ],
        generator: GENERATOR.into(),
        vectors,
    })
}

fn pairs_rfc() -> Result<Pair, VectorError> {
    Ok(Pair {
        label: String::new(),
        a: decode32(RFC_ALICE)?,
        b: decode32(RFC_BOB)?,
    })
}

/// The error kind names used in `link.yaml` for slim-proto's [`LinkError`].
pub fn error_kind(e: &LinkError) -> &'static str {
    match e {
        LinkError::EmptyLinkId => "empty_link_id",
        LinkError::BadKeyLength(_) => "bad_key_length",
        LinkError::NonContributory => "non_contributory",
        _ => "other",
    }
}

/// Checks slim-proto's `LinkKeyPair` (public keys, `derive_link_mac` on both sides) against
/// every vector.
pub fn verify(file: &LinkFile) -> FileReport {
    let mut r = FileReport::new(FILE);
    let ids: Vec<u32> = file.vectors.iter().map(|v| v.tc_id).collect();
    r.check_header(file.schema, &file.area, &file.generator, &ids);
    for v in &file.vectors {
        r.record(v.tc_id, check(v));
    }
    r
}

fn check(v: &LinkVector) -> Result<(), String> {
    let a_secret = unhex_n::<32>("initiator_secret", &v.initiator_secret)?;
    let a_public = unhex_n::<32>("initiator_public", &v.initiator_public)?;
    let b_public = unhex("responder_public", &v.responder_public)?;
    let a = LinkKeyPair::from_secret_bytes(a_secret);
    if a.public_bytes() != a_public {
        return Err(format!(
            "initiator public key is {}, expected {}",
            hx(&a.public_bytes()),
            v.initiator_public
        ));
    }
    let b = match &v.responder_secret {
        Some(s) => {
            let b = LinkKeyPair::from_secret_bytes(unhex_n::<32>("responder_secret", s)?);
            if b.public_bytes().as_slice() != b_public.as_slice() {
                return Err(format!(
                    "responder public key is {}, expected {}",
                    hx(&b.public_bytes()),
                    v.responder_public
                ));
            }
            Some(b)
        }
        None => None,
    };
    if let (Some(shared), Ok(peer)) = (&v.shared_secret, <[u8; 32]>::try_from(b_public.as_slice()))
    {
        // The shared secret is internal to slim-proto; check the file's value with the primitive.
        let s = x25519_dalek::StaticSecret::from(a_secret)
            .diffie_hellman(&x25519_dalek::PublicKey::from(peer));
        if hx(s.as_bytes()) != *shared {
            return Err(format!(
                "shared_secret is {}, expected {shared}",
                hx(s.as_bytes())
            ));
        }
    }
    let from_a = a.derive_link_mac(&b_public, &v.link_id);
    let from_b = b.as_ref().map(|b| b.derive_link_mac(&a_public, &v.link_id));
    match (v.result, v.error.as_deref()) {
        (Outcome::Valid, _) => {
            let want = v
                .link_key
                .as_deref()
                .ok_or("valid vector has no link_key")?;
            let mac = from_a.map_err(|e| format!("initiator derivation refused: {e}"))?;
            if hx(mac.key()) != want {
                return Err(format!(
                    "initiator link key {}, expected {want}",
                    hx(mac.key())
                ));
            }
            if mac.link_id() != v.link_id {
                return Err("derived MAC state carries another link id".into());
            }
            if let Some(from_b) = from_b {
                let mac = from_b.map_err(|e| format!("responder derivation refused: {e}"))?;
                if hx(mac.key()) != want {
                    return Err(format!(
                        "responder link key {}, expected {want}",
                        hx(mac.key())
                    ));
                }
            }
            Ok(())
        }
        (_, Some("wrong_key")) => {
            let wrong = v
                .link_key
                .as_deref()
                .ok_or("wrong_key vector has no link_key")?;
            let mac = from_a.map_err(|e| format!("derivation refused: {e}"))?;
            if hx(mac.key()) == wrong {
                return Err(format!("derived the wrong key {wrong}"));
            }
            Ok(())
        }
        (_, expected) => match from_a {
            Ok(mac) => Err(format!(
                "derivation accepted (key {}); it must be refused",
                hx(mac.key())
            )),
            Err(e) => match expected {
                Some(kind) if kind != error_kind(&e) => Err(format!(
                    "refused as {} ({e}), expected {kind}",
                    error_kind(&e)
                )),
                _ => Ok(()),
            },
        },
    }
}
