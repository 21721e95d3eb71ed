//! SLIM end-to-end identity: the app's signature key, its identity token, and the name ids an
//! identity derives (SLIM-ID-*).
//!
//! The node never looks at identities (WIRE.md §1.2); apps do. Every session message carries
//! `SLIMHeader.identity`, a token that names the sender (`sub`) and carries its signature public
//! key (`pubkey` claim). Receivers verify the token, then verify the message's signatures with
//! that key (see [`crate::e2e`]). The same key signs the app's MLS messages, and the same token is
//! its MLS credential.
//!
//! What the real SDK (agntcy-slim-auth 0.17) does, and so what this module does:
//! - **Key**: ECDSA P-256 by default. The public key is the 65-byte uncompressed SEC1 point;
//!   signatures over SLIM data are DER-encoded ECDSA/SHA-256 ([`IdentityKey`], [`verify_der`]).
//!   An SDK built with its `curve25519` feature uses Ed25519 (32-byte keys, 64-byte
//!   signatures): [`verify_der`] verifies those too, we never sign with them.
//! - **Shared-secret token** ([`SharedSecret`]):
//!   `<id>:<unix ts>:<b64url nonce>:<b64url {"pubkey":"<b64 key>"}>:<b64url HMAC-SHA256>`, the
//!   MAC keyed with the secret over everything before the last `:`. Valid from 3600 s in the past
//!   to 5 s in the future.
//! - **JWT** ([`JwtKey`]): HS256 or ES256 with the key in a top-level `pubkey` claim (or under
//!   `custom_claims`), `exp` required, 60 s of leeway.
//! - **Name ids**: an app's instance id is XXH3-128 of its `sub` ([`app_id`]); a group's data and
//!   control channel ids derive from the creator's `sub` ([`channel_ids`]).
//!
//! Everything here is pure: callers pass `now` (Unix seconds) and the randomness.

use std::fmt;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use rand_core::CryptoRngCore;
use serde_json::Value;
use sha2::Sha256;

/// The `p256` crate these keys are made of, so callers (MLS providers, key loaders) name the very
/// same version.
pub use p256;

/// Length of an uncompressed SEC1 P-256 public key (`0x04 || x || y`), what the SDK ships.
pub const P256_PUBLIC_KEY_LEN: usize = 65;

/// Smallest shared secret the SDK accepts, in bytes (256 bits).
pub const SHARED_SECRET_MIN_LEN: usize = 32;

/// How long a shared-secret token is valid after its timestamp, in seconds (SDK default).
pub const TOKEN_VALIDITY_SECS: u64 = 3600;

/// How far in the future a shared-secret token's timestamp may be, in seconds (SDK default).
pub const TOKEN_CLOCK_SKEW_SECS: u64 = 5;

/// Raw length of a shared-secret token's nonce, in bytes.
pub const NONCE_LEN: usize = 12;

/// Leeway applied to a JWT's `exp` (and here also `nbf`), in seconds: jsonwebtoken's default,
/// which the SDK keeps.
pub const JWT_LEEWAY_SECS: u64 = 60;

/// Ids at or above `u128::MAX - 50` are reserved by SLIM (`NameId::is_reserved_id`).
pub const RESERVED_IDS: u128 = 50;

/// Length of a base64url (no padding) HMAC-SHA256 tag.
const MAC_B64_LEN: usize = 43;

// ---------------------------------------------------------------------------------------------
// Keys and signatures

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The public key is neither 65 (uncompressed P-256), 33 (compressed P-256) nor 32 (Ed25519)
    /// bytes long.
    #[error("public key is {0} bytes; expected 65 or 33 (ECDSA P-256 SEC1) or 32 (Ed25519)")]
    BadKeyLength(usize),
    /// The public key has a valid length but is not a point on the curve.
    #[error("public key is not a valid {0} key")]
    BadKey(&'static str),
    /// The signature is not a DER ECDSA signature (or not 64 bytes for Ed25519).
    #[error("signature is not a well-formed {0} signature")]
    BadEncoding(&'static str),
    /// Well-formed, but made by another key or over other bytes.
    #[error("signature does not verify: the signed bytes changed, or another key signed them")]
    Mismatch,
}

/// An app's identity key: the ECDSA P-256 key that signs its control messages (header and
/// payload signatures) and, in MLS, its group messages. Its public half travels in the identity
/// token's `pubkey` claim.
#[derive(Clone)]
pub struct IdentityKey {
    key: SigningKey,
}

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret scalar.
        f.debug_struct("IdentityKey")
            .field("public", &STANDARD.encode(self.public_bytes()))
            .finish_non_exhaustive()
    }
}

impl IdentityKey {
    /// A fresh random key.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        Self {
            key: SigningKey::random(rng),
        }
    }

    /// Wraps an existing P-256 signing key (for example one an MLS provider also holds).
    pub fn from_signing_key(key: SigningKey) -> Self {
        Self { key }
    }

    /// The underlying P-256 signing key, for layers (MLS) that sign with the same key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// The public key as a 65-byte uncompressed SEC1 point: the bytes the SDK base64-encodes
    /// (standard alphabet) into the token's `pubkey` claim and uses as its MLS signature key.
    pub fn public_bytes(&self) -> [u8; P256_PUBLIC_KEY_LEN] {
        let point = self.key.verifying_key().to_encoded_point(false);
        let mut out = [0u8; P256_PUBLIC_KEY_LEN];
        out.copy_from_slice(point.as_bytes());
        out
    }

    /// ECDSA P-256 / SHA-256 signature over `msg`, DER-encoded (what `sign_header_aad` emits).
    ///
    /// In a fuzzing build (`--cfg fuzzing`) the signature is [`fuzzing::signature`] instead.
    pub fn sign_der(&self, msg: &[u8]) -> Vec<u8> {
        #[cfg(fuzzing)]
        if let Some(sig) = fuzzing::signature(&self.public_bytes(), msg) {
            return sig.to_der().as_bytes().to_vec();
        }
        let sig: Signature = self.key.sign(msg);
        sig.to_der().as_bytes().to_vec()
    }
}

/// Verifies `sig` over `msg` with a public key as the SDK's `verify_header_aad` does: 65- or
/// 33-byte keys are P-256 with a DER ECDSA/SHA-256 signature; 32-byte keys are Ed25519 with a
/// 64-byte signature.
///
/// The key and the signature are parsed first, so that a bad one gets its own error; the
/// verification itself of an uncompressed P-256 key (every SLIM key) is ring's, about five times
/// faster than RustCrypto's p256 (every command a session receives carries two signatures).
pub fn verify_der(pubkey: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), SignatureError> {
    match pubkey.len() {
        33 | 65 => {
            let key = VerifyingKey::from_sec1_bytes(pubkey)
                .map_err(|_| SignatureError::BadKey("P-256"))?;
            let parsed = Signature::from_der(sig)
                .map_err(|_| SignatureError::BadEncoding("DER ECDSA P-256"))?;
            #[cfg(fuzzing)]
            if fuzzing::signature(key.to_encoded_point(false).as_bytes(), msg) == Some(parsed) {
                return Ok(());
            }
            if pubkey.len() == 65 {
                return ring::signature::UnparsedPublicKey::new(
                    &ring::signature::ECDSA_P256_SHA256_ASN1,
                    pubkey,
                )
                .verify(msg, sig)
                .map_err(|_| SignatureError::Mismatch);
            }
            key.verify(msg, &parsed)
                .map_err(|_| SignatureError::Mismatch)
        }
        32 => {
            let bytes: [u8; 32] = pubkey
                .try_into()
                .map_err(|_| SignatureError::BadKeyLength(pubkey.len()))?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map_err(|_| SignatureError::BadKey("Ed25519"))?;
            let sig: [u8; 64] = sig
                .try_into()
                .map_err(|_| SignatureError::BadEncoding("Ed25519 (64-byte)"))?;
            // The SDK uses dalek's default (non-strict) verification.
            key.verify(msg, &ed25519_dalek::Signature::from_bytes(&sig))
                .map_err(|_| SignatureError::Mismatch)
        }
        n => Err(SignatureError::BadKeyLength(n)),
    }
}

/// Fuzzing builds only: signatures a fuzzer can afford.
///
/// cargo-fuzz builds every crate with `--cfg fuzzing`. There, [`IdentityKey::sign_der`] emits
/// [`signature`], and [`verify_der`] accepts it before it tries ECDSA, as BoringSSL's fuzzer
/// mode does. The session fuzz target signs and checks several commands per input: on one core,
/// from the same corpus, it ran 258 inputs/s with ECDSA and 863 with these.
/// Everything around the arithmetic is unchanged: the key and the DER are parsed as in any build,
/// a signature made over other bytes or with another key is refused, and recorded ECDSA
/// signatures (the vectors the corpus is seeded from) still verify. ECDSA itself is checked by
/// the RFC 6979 and Wycheproof vectors (`tests/identity.rs`), and the stable smoke run of every
/// fuzz target (`cargo test -p slim-fuzz`) uses real signatures.
#[cfg(fuzzing)]
pub mod fuzzing {
    use p256::ecdsa::Signature;
    use sha2::{Digest as _, Sha256};

    /// A well-formed ECDSA P-256 signature value derived from the signer's uncompressed public
    /// key and the message: `r = SHA-256("r" || key || msg)`, `s = SHA-256("s" || key || msg)`.
    /// `None` in the rare case (below 2^-32) where a digest is not a valid scalar.
    pub fn signature(public_key: &[u8], msg: &[u8]) -> Option<Signature> {
        let digest = |tag: &[u8]| {
            let mut h = Sha256::new();
            h.update(tag);
            h.update(public_key);
            h.update(msg);
            h.finalize()
        };
        Signature::from_scalars(digest(b"r"), digest(b"s")).ok()
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens

/// What a verified token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The holder's identity (`sub`): for a shared-secret token its id, for a JWT its `sub`.
    /// Name ids derive from it ([`app_id`]).
    pub sub: String,
    /// Issued at (Unix seconds). A JWT without `iat` reports 0.
    pub iat: u64,
    /// Expires at (Unix seconds).
    pub exp: u64,
    /// The holder's signature public key, decoded from the `pubkey` claim.
    pub pubkey: Vec<u8>,
}

/// Why a token could not be issued or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The shared secret is shorter than the SDK's minimum.
    #[error("shared secret is {0} bytes; SLIM requires at least {SHARED_SECRET_MIN_LEN} bytes")]
    SecretTooShort(usize),
    /// A shared-secret token id that the format cannot carry.
    #[error("token id {0:?} is not usable: it must be non-empty and contain no ':' or whitespace")]
    BadId(String),
    /// The token does not have the expected shape; the text says which part.
    #[error("token is malformed: {0}")]
    Malformed(String),
    /// A shared-secret token whose timestamp is too far ahead.
    #[error("token was issued {ahead} s in the future (at most {TOKEN_CLOCK_SKEW_SECS} s of clock skew is tolerated): check the clocks")]
    NotYetValid {
        /// Seconds between now and the token's timestamp.
        ahead: u64,
    },
    /// A shared-secret token older than the validity window.
    #[error("token expired {} s ago (issued {age} s ago; tokens are valid {TOKEN_VALIDITY_SECS} s)", .age - TOKEN_VALIDITY_SECS)]
    Expired {
        /// Seconds since the token's timestamp (always > [`TOKEN_VALIDITY_SECS`]).
        age: u64,
    },
    /// The HMAC of a shared-secret token does not match.
    #[error("token MAC does not verify: wrong shared secret, or the token was altered")]
    MacMismatch,
    /// The token has no `pubkey` claim, so its messages cannot be verified.
    #[error("token has no string `pubkey` claim (top level or in custom_claims); SLIM needs it to verify the holder's signatures")]
    NoPubkey,
    /// The `pubkey` claim is not standard padded base64.
    #[error("token's `pubkey` claim is not standard (padded) base64")]
    BadPubkey,
    /// A JWT signed with another algorithm than the verifying key's.
    #[error("JWT header says alg {found:?} but the key is {expected}")]
    WrongAlgorithm {
        /// `alg` from the JWT header.
        found: String,
        /// The verifying key's algorithm.
        expected: &'static str,
    },
    /// A JWT whose signature does not verify.
    #[error("JWT signature does not verify: wrong key, or the token was altered")]
    BadSignature,
    /// A JWT without the `exp` claim (the SDK requires it).
    #[error("JWT has no numeric `exp` claim (required)")]
    MissingExp,
    /// A JWT without a subject.
    #[error("JWT has no string `sub` claim; SLIM derives the app's name id from it")]
    MissingSub,
    /// A JWT past `exp` + leeway.
    #[error("JWT expired {0} s ago (exp + {JWT_LEEWAY_SECS} s leeway is in the past)")]
    JwtExpired(u64),
    /// A JWT before `nbf` - leeway.
    #[error("JWT is not valid for another {0} s (nbf - {JWT_LEEWAY_SECS} s leeway is in the future): check the clocks")]
    JwtNotYetValid(u64),
    /// A JWT with an audience: the SDK rejects those unless it was configured with one.
    #[error("JWT has an `aud` claim; like the SDK without a configured audience, we reject it")]
    UnexpectedAudience,
    /// A JWT key that is verify-only was asked to issue.
    #[error("this JWT key can only verify (no private key): load a PKCS#8 private key to issue")]
    VerifyOnly,
    /// A key that could not be loaded.
    #[error("cannot load key: {0}")]
    BadKey(String),
}

fn malformed(what: &str) -> TokenError {
    TokenError::Malformed(what.to_string())
}

/// Reads the `pubkey` claim as identity_claims.rs does: top level first, then
/// `custom_claims.pubkey`; it must be a string of standard base64.
fn pubkey_claim(claims: &Value) -> Result<Vec<u8>, TokenError> {
    let text = claims
        .get("pubkey")
        .and_then(Value::as_str)
        .or_else(|| {
            claims
                .get("custom_claims")
                .and_then(Value::as_object)
                .and_then(|c| c.get("pubkey"))
                .and_then(Value::as_str)
        })
        .ok_or(TokenError::NoPubkey)?;
    STANDARD.decode(text).map_err(|_| TokenError::BadPubkey)
}

/// A shared secret for SLIM's HMAC tokens (SDK `SharedSecret`). All apps of a deployment that
/// share it can issue tokens the others accept.
#[derive(Clone)]
pub struct SharedSecret {
    secret: Vec<u8>,
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedSecret")
            .field("len", &self.secret.len())
            .finish_non_exhaustive()
    }
}

impl SharedSecret {
    /// A shared secret; at least [`SHARED_SECRET_MIN_LEN`] bytes, as the SDK requires (the SDK
    /// takes a string and uses its UTF-8 bytes).
    pub fn new(secret: impl AsRef<[u8]>) -> Result<Self, TokenError> {
        let secret = secret.as_ref();
        if secret.len() < SHARED_SECRET_MIN_LEN {
            return Err(TokenError::SecretTooShort(secret.len()));
        }
        Ok(Self {
            secret: secret.to_vec(),
        })
    }

    /// An id the way the SDK makes one: `<base>_<8 random alphanumerics>`, new per app
    /// instance (so two instances of one app name get different name ids).
    pub fn random_id(base: &str, rng: &mut impl CryptoRngCore) -> String {
        const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let suffix: String = (0..8)
            .map(|_| {
                // Rejection sampling keeps the choice uniform over the 62 characters.
                loop {
                    let b = (rng.next_u32() & 0xFF) as usize;
                    if b < 248 {
                        break char::from(ALNUM[b % ALNUM.len()]);
                    }
                }
            })
            .collect();
        format!("{base}_{suffix}")
    }

    /// A fresh random nonce for [`SharedSecret::issue`].
    pub fn random_nonce(rng: &mut impl CryptoRngCore) -> [u8; NONCE_LEN] {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        nonce
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!())
    }

    /// Issues a token for `id` carrying `pubkey`, timestamped `now_unix`. The SDK sends a fresh
    /// token (new nonce) with every output batch; so can the caller.
    pub fn issue(
        &self,
        id: &str,
        pubkey: &[u8],
        nonce: [u8; NONCE_LEN],
        now_unix: u64,
    ) -> Result<String, TokenError> {
        if id.is_empty() || id.contains(':') || id.chars().any(char::is_whitespace) {
            return Err(TokenError::BadId(id.to_string()));
        }
        // Exactly the SDK's claims text: serde_json's compact `{"pubkey":"<b64>"}`.
        let claims = Value::Object(
            [("pubkey".to_string(), Value::String(STANDARD.encode(pubkey)))]
                .into_iter()
                .collect(),
        )
        .to_string();
        let mut token = format!(
            "{id}:{now_unix}:{}:{}",
            URL_SAFE_NO_PAD.encode(nonce),
            URL_SAFE_NO_PAD.encode(claims.as_bytes())
        );
        let mut mac = self.mac();
        mac.update(token.as_bytes());
        let tag = mac.finalize().into_bytes();
        token.push(':');
        URL_SAFE_NO_PAD.encode_string(tag, &mut token);
        Ok(token)
    }

    /// Verifies a token at `now_unix` with the SDK's rules and order of checks: five
    /// `:`-separated fields, a decimal timestamp at most 5 s ahead and at most 3600 s old, a
    /// 43-character base64url HMAC-SHA256 tag over everything before the last `:` (compared in
    /// constant time), then the claims (base64url JSON) with a `pubkey`.
    ///
    /// Like the SDK, the id and nonce are not otherwise checked, and there is no replay cache
    /// (the SDK's is off by default).
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<Claims, TokenError> {
        let (message, mac_b64) = token
            .rsplit_once(':')
            .ok_or_else(|| malformed("no ':' separators (expected id:ts:nonce:claims:mac)"))?;
        let mut parts = message.splitn(4, ':');
        let (Some(id), Some(ts), Some(_nonce), Some(claims_b64)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed(
                "fewer than 5 ':'-separated fields (expected id:ts:nonce:claims:mac)",
            ));
        };
        if claims_b64.contains(':') {
            return Err(malformed(
                "more than 5 ':'-separated fields (expected id:ts:nonce:claims:mac)",
            ));
        }
        let ts: u64 = ts
            .parse()
            .map_err(|_| malformed("timestamp is not a decimal u64"))?;
        if ts > now_unix {
            let ahead = ts - now_unix;
            if ahead > TOKEN_CLOCK_SKEW_SECS {
                return Err(TokenError::NotYetValid { ahead });
            }
        } else {
            let age = now_unix - ts;
            if age > TOKEN_VALIDITY_SECS {
                return Err(TokenError::Expired { age });
            }
        }
        if mac_b64.len() != MAC_B64_LEN {
            return Err(TokenError::Malformed(format!(
                "MAC field is {} characters, expected {MAC_B64_LEN} (base64url of 32 bytes)",
                mac_b64.len()
            )));
        }
        let tag = URL_SAFE_NO_PAD
            .decode(mac_b64)
            .map_err(|_| malformed("MAC field is not base64url (no padding)"))?;
        let mut mac = self.mac();
        mac.update(message.as_bytes());
        mac.verify_slice(&tag)
            .map_err(|_| TokenError::MacMismatch)?;

        let custom = if claims_b64.is_empty() {
            Value::Object(Default::default())
        } else {
            let json = URL_SAFE_NO_PAD
                .decode(claims_b64)
                .map_err(|_| malformed("claims field is not base64url (no padding)"))?;
            serde_json::from_slice::<Value>(&json)
                .map_err(|e| TokenError::Malformed(format!("claims are not JSON: {e}")))?
        };
        // The SDK exposes {sub, iat, exp, custom_claims}; only custom_claims can hold pubkey.
        let exposed: Value = [("custom_claims".to_string(), custom)]
            .into_iter()
            .collect::<serde_json::Map<_, _>>()
            .into();
        Ok(Claims {
            sub: id.to_string(),
            iat: ts,
            exp: ts.saturating_add(TOKEN_VALIDITY_SECS),
            pubkey: pubkey_claim(&exposed)?,
        })
    }
}

/// A JWT key: HS256 (shared secret) or ES256 (P-256). The token carries the holder's signature
/// key in a top-level `pubkey` claim, as the SDK's `SignerJwt::get_token` does.
#[derive(Clone)]
pub enum JwtKey {
    /// HMAC-SHA256 with a shared secret.
    Hs256(Vec<u8>),
    /// ECDSA P-256 / SHA-256; `signing` is absent for a verify-only key.
    Es256 {
        /// The private key, if this side issues tokens.
        signing: Option<SigningKey>,
        /// The public key tokens are verified with.
        verifying: VerifyingKey,
    },
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtKey::Hs256(_) => f.write_str("JwtKey::Hs256(..)"),
            JwtKey::Es256 { signing, .. } => {
                write!(f, "JwtKey::Es256 {{ can_issue: {} }}", signing.is_some())
            }
        }
    }
}

impl JwtKey {
    /// An HS256 key from a shared secret (any length, as jsonwebtoken accepts).
    pub fn hs256(secret: impl AsRef<[u8]>) -> Self {
        JwtKey::Hs256(secret.as_ref().to_vec())
    }

    /// An ES256 key that issues and verifies, from a PKCS#8 PEM P-256 private key
    /// (`-----BEGIN PRIVATE KEY-----`).
    pub fn es256_from_pkcs8_pem(pem: &str) -> Result<Self, TokenError> {
        use p256::pkcs8::DecodePrivateKey as _;
        let signing = SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| TokenError::BadKey(format!("not a PKCS#8 PEM P-256 private key: {e}")))?;
        Ok(JwtKey::Es256 {
            verifying: *signing.verifying_key(),
            signing: Some(signing),
        })
    }

    /// A verify-only ES256 key from an SPKI PEM P-256 public key (`-----BEGIN PUBLIC KEY-----`).
    pub fn es256_from_public_pem(pem: &str) -> Result<Self, TokenError> {
        use p256::pkcs8::DecodePublicKey as _;
        let verifying = VerifyingKey::from_public_key_pem(pem)
            .map_err(|e| TokenError::BadKey(format!("not an SPKI PEM P-256 public key: {e}")))?;
        Ok(JwtKey::Es256 {
            signing: None,
            verifying,
        })
    }

    fn alg(&self) -> &'static str {
        match self {
            JwtKey::Hs256(_) => "HS256",
            JwtKey::Es256 { .. } => "ES256",
        }
    }

    fn hmac(secret: &[u8]) -> Hmac<Sha256> {
        <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!())
    }

    /// Issues a JWT for `sub` carrying `pubkey`: header `{"alg", "typ":"JWT", "kid": sub}` and
    /// claims `{sub, iat, nbf, exp = now + validity, pubkey}`, as the SDK's signer does.
    pub fn issue(
        &self,
        sub: &str,
        pubkey: &[u8],
        now_unix: u64,
        validity_secs: u64,
    ) -> Result<String, TokenError> {
        let header = serde_json::json!({"alg": self.alg(), "typ": "JWT", "kid": sub});
        let claims = serde_json::json!({
            "sub": sub,
            "iat": now_unix,
            "nbf": now_unix,
            "exp": now_unix.saturating_add(validity_secs),
            "pubkey": STANDARD.encode(pubkey),
        });
        let mut token = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = match self {
            JwtKey::Hs256(secret) => {
                let mut mac = Self::hmac(secret);
                mac.update(token.as_bytes());
                mac.finalize().into_bytes().to_vec()
            }
            JwtKey::Es256 { signing, .. } => {
                let key = signing.as_ref().ok_or(TokenError::VerifyOnly)?;
                let sig: Signature = key.sign(token.as_bytes());
                // JWS ES256 signatures are r || s (64 bytes), not DER.
                sig.to_bytes().to_vec()
            }
        };
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(sig, &mut token);
        Ok(token)
    }

    /// Verifies a JWT at `now_unix` as the SDK's default verifier does: the header's `alg` must
    /// be this key's (never trusted to pick one), the signature must verify, `exp` is required
    /// and checked with [`JWT_LEEWAY_SECS`], a token with `aud` is rejected (no audience
    /// configured), and the claims must name a `sub` (or `id`) and a `pubkey`. Unlike the SDK's
    /// default, `nbf` is also checked (with the same leeway).
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed(
                "a JWT has exactly 3 '.'-separated parts (header.payload.signature)",
            ));
        };
        let header: Value = URL_SAFE_NO_PAD
            .decode(h64)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| malformed("JWT header is not base64url JSON"))?;
        let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
        if alg != self.alg() {
            return Err(TokenError::WrongAlgorithm {
                found: alg.to_string(),
                expected: self.alg(),
            });
        }
        let sig = URL_SAFE_NO_PAD
            .decode(s64)
            .map_err(|_| malformed("JWT signature is not base64url"))?;
        let signed = &token[..h64.len() + 1 + p64.len()];
        match self {
            JwtKey::Hs256(secret) => {
                let mut mac = Self::hmac(secret);
                mac.update(signed.as_bytes());
                mac.verify_slice(&sig)
                    .map_err(|_| TokenError::BadSignature)?;
            }
            JwtKey::Es256 { verifying, .. } => {
                let sig = Signature::from_slice(&sig).map_err(|_| TokenError::BadSignature)?;
                verifying
                    .verify(signed.as_bytes(), &sig)
                    .map_err(|_| TokenError::BadSignature)?;
            }
        }
        let claims: Value = URL_SAFE_NO_PAD
            .decode(p64)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| malformed("JWT payload is not base64url JSON"))?;
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or(TokenError::MissingExp)?;
        if exp < now_unix.saturating_sub(JWT_LEEWAY_SECS) {
            return Err(TokenError::JwtExpired(now_unix - exp));
        }
        if let Some(nbf) = claims.get("nbf").and_then(Value::as_u64) {
            if nbf > now_unix.saturating_add(JWT_LEEWAY_SECS) {
                return Err(TokenError::JwtNotYetValid(nbf - now_unix));
            }
        }
        if claims.get("aud").is_some() {
            return Err(TokenError::UnexpectedAudience);
        }
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .or_else(|| claims.get("id").and_then(Value::as_str))
            .ok_or(TokenError::MissingSub)?;
        Ok(Claims {
            sub: sub.to_string(),
            iat: claims.get("iat").and_then(Value::as_u64).unwrap_or(0),
            exp,
            pubkey: pubkey_claim(&claims)?,
        })
    }
}

/// The two kinds of identity credentials an app can hold, so callers issue and verify tokens
/// with one value whatever the deployment uses.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// Shared-secret HMAC tokens.
    SharedSecret(SharedSecret),
    /// JWTs.
    Jwt(JwtKey),
}

impl Credentials {
    /// Issues a token for `id` carrying `pubkey` at `now_unix`: a shared-secret token with a
    /// fresh nonce from `rng`, or a JWT valid [`TOKEN_VALIDITY_SECS`].
    pub fn issue(
        &self,
        id: &str,
        pubkey: &[u8],
        now_unix: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<String, TokenError> {
        match self {
            Credentials::SharedSecret(s) => {
                s.issue(id, pubkey, SharedSecret::random_nonce(rng), now_unix)
            }
            Credentials::Jwt(k) => k.issue(id, pubkey, now_unix, TOKEN_VALIDITY_SECS),
        }
    }

    /// Verifies a token at `now_unix` and returns its claims.
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<Claims, TokenError> {
        match self {
            Credentials::SharedSecret(s) => s.verify(token, now_unix),
            Credentials::Jwt(k) => k.verify(token, now_unix),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Name ids derived from identities

fn is_reserved(id: u128) -> bool {
    id >= u128::MAX - RESERVED_IDS
}

/// The name id of an app whose identity is `sub` (the token's `sub`): XXH3-128 of its UTF-8
/// bytes, a reserved value folded below the reserved range (session crate `name_id::app_id`).
/// A receiver recomputes it to check that a sender's name belongs to its verified identity.
pub fn app_id(sub: &str) -> u128 {
    let id = xxhash_rust::xxh3::xxh3_128(sub.as_bytes());
    if is_reserved(id) {
        id % (u128::MAX - RESERVED_IDS)
    } else {
        id
    }
}

/// Salts tried for a channel's ids (0 to 10 inclusive) before giving up.
const MAX_CHANNEL_SALT: u64 = 10;

/// The `(data, control)` ids of the multicast channel `org/ns/name` created by `sub`:
/// XXH3-128 with seed `salt` of `"<sub>/<org>/<ns>/<name>/data"` and `".../control"`, for the
/// first salt from 0 that makes them differ; reserved values folded into `1..=MAX-51`
/// (session crate `name_id::channel_ids`). `None` if no salt up to 10 works, which does not
/// happen in practice.
pub fn channel_ids(sub: &str, org: &str, ns: &str, name: &str) -> Option<(u128, u128)> {
    let data_input = format!("{sub}/{org}/{ns}/{name}/data");
    let ctrl_input = format!("{sub}/{org}/{ns}/{name}/control");
    let fold = |id: u128| {
        if is_reserved(id) {
            (id % (u128::MAX - RESERVED_IDS - 1)) + 1
        } else {
            id
        }
    };
    (0..=MAX_CHANNEL_SALT).find_map(|salt| {
        let data = fold(xxhash_rust::xxh3::xxh3_128_with_seed(
            data_input.as_bytes(),
            salt,
        ));
        let ctrl = fold(xxhash_rust::xxh3::xxh3_128_with_seed(
            ctrl_input.as_bytes(),
            salt,
        ));
        (data != ctrl).then_some((data, ctrl))
    })
}
