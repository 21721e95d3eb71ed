//! Our identity in sessions, and the checks we make of our peers' (WIRE.md §5.1, §7).
//!
//! One ECDSA P-256 key is at once the key named by our identity token's `pubkey` claim, the key
//! that signs our commands (`e2e_header_sig` and `slim-payload-sig`) and our MLS signature key,
//! exactly as the real SDK binds them. Our token id (`sub`) is `<org>/<ns>/<app>_<8 random
//! characters>`, as the SDK's shared-secret provider makes it, and our name id is XXH3-128 of it.

use crate::mutants::session::{self as mutants, SessionFault};
use crate::revocation::{Reason, RevocationList};
use std::collections::HashMap;

use rand_core::RngCore;
use slim_proto::e2e;
use slim_proto::identity::{self, IdentityKey};
use slim_proto::names::SlimName;
use slim_proto::pb;

use super::SessionError;

/// How long an issued token is reused before a fresh one is issued (tokens are valid 3600 s).
const TOKEN_REUSE_SECS: u64 = 60;
/// How many verified peer tokens are remembered (so a peer's token is checked once per issue).
const VERIFIED_CACHE: usize = 4096;

/// Our credentials: what issues our tokens and verifies our peers'.
#[derive(Clone)]
pub enum Credentials {
    /// A shared secret (≥ 32 bytes) known to every app of the deployment.
    SharedSecret(String),
    /// A JWT key: HS256 secret or ES256 PEM key, shared by the deployment's issuer.
    Jwt(identity::JwtKey),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::SharedSecret(_) => f.write_str("SharedSecret(<redacted>)"),
            Credentials::Jwt(_) => f.write_str("Jwt(<redacted>)"),
        }
    }
}

/// What a verified token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The token id (`sub`).
    pub sub: String,
    /// The holder's signature key (SEC1 point).
    pub pubkey: Vec<u8>,
    /// The JWT's `jti` claim, if the token is a JWT that has one.
    pub jti: Option<String>,
    /// The JWT header's `kid`, if the token is a JWT that names its key.
    pub kid: Option<String>,
}

enum Verifier {
    Secret(identity::SharedSecret),
    Jwt(identity::JwtKey),
}

/// Our key, our tokens, and the verification of everybody else's.
pub struct LocalIdentity {
    key: IdentityKey,
    verifier: Verifier,
    sub: String,
    token: Option<(u64, String)>,
    verified: HashMap<String, (Peer, u64)>,
    /// Identities we no longer accept (SLIM-REV-008).
    revoked: RevocationList,
}

impl LocalIdentity {
    /// A fresh identity for the app `name` (its three components), using `rng` for the key and
    /// the random part of the token id.
    pub fn new(
        name: &SlimName,
        creds: &Credentials,
        rng: &mut impl rand_core::CryptoRngCore,
    ) -> Result<Self, SessionError> {
        const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let suffix: String = (0..8)
            .map(|_| ALNUM[(rng.next_u32() as usize) % ALNUM.len()] as char)
            .collect();
        let [org, ns, app] = name.components();
        let sub = format!("{org}/{ns}/{app}_{suffix}");
        let verifier = match creds {
            Credentials::SharedSecret(s) => {
                Verifier::Secret(identity::SharedSecret::new(s).map_err(SessionError::Token)?)
            }
            Credentials::Jwt(k) => Verifier::Jwt(k.clone()),
        };
        Ok(Self {
            key: IdentityKey::generate(rng),
            verifier,
            sub,
            token: None,
            verified: HashMap::new(),
            revoked: RevocationList::empty(),
        })
    }

    /// Our token id.
    pub fn sub(&self) -> &str {
        &self.sub
    }

    /// Our name id: XXH3-128 of our token id, as the SDK derives it.
    pub fn app_id(&self) -> u128 {
        identity::app_id(&self.sub)
    }

    /// Our signing key (also our MLS signature key).
    pub fn key(&self) -> &IdentityKey {
        &self.key
    }

    /// A token for a message sent at `now_unix` (reused for a minute, then renewed).
    pub fn token(&mut self, now_unix: u64, rng: &mut impl RngCore) -> Result<&str, SessionError> {
        let fresh = matches!(&self.token, Some((at, _)) if now_unix >= *at && now_unix - at < TOKEN_REUSE_SECS);
        if !fresh {
            let pubkey = self.key.public_bytes();
            let t = match &self.verifier {
                Verifier::Secret(s) => {
                    let mut nonce = [0u8; 12];
                    rng.fill_bytes(&mut nonce);
                    s.issue(&self.sub, &pubkey, nonce, now_unix)
                }
                Verifier::Jwt(k) => k.issue(&self.sub, &pubkey, now_unix, 3600),
            }
            .map_err(SessionError::Token)?;
            self.token = Some((now_unix, t));
        }
        Ok(self
            .token
            .as_ref()
            .map(|(_, t)| t.as_str())
            .unwrap_or_default())
    }

    /// Signs a command we send: header signature and payload signature.
    pub fn sign(&self, msg: &mut pb::Message) -> Result<(), SessionError> {
        e2e::sign_command(msg, &self.key).map_err(SessionError::Signature)
    }

    /// Verifies a peer's token at `now_unix` and returns what it says.
    /// A token whose holder is revoked is refused ([`SessionError::Revoked`], SLIM-REV-008),
    /// cached or not.
    pub fn verify_token(&mut self, token: &str, now_unix: u64) -> Result<Peer, SessionError> {
        if let Some((p, exp)) = self.verified.get(token) {
            if now_unix <= *exp {
                let p = p.clone();
                self.check_revoked(&p)?;
                return Ok(p);
            }
            // Expired since it was cached: verify again for the precise error.
        }
        let claims = match &self.verifier {
            Verifier::Secret(s) => s.verify(token, now_unix),
            Verifier::Jwt(k) => k.verify(token, now_unix),
        }
        .map_err(SessionError::Token)?;
        let exp = claims.exp;
        let (jti, kid) = jwt_handles(token);
        let peer = Peer {
            sub: claims.sub,
            pubkey: claims.pubkey,
            jti,
            kid,
        };
        if self.verified.len() >= VERIFIED_CACHE {
            self.verified.clear();
        }
        self.verified.insert(token.to_string(), (peer.clone(), exp));
        self.check_revoked(&peer)?;
        Ok(peer)
    }

    /// Replaces the identities we refuse (SLIM-REV-008).
    pub fn set_revoked(&mut self, list: RevocationList) {
        self.revoked = list;
    }

    /// The identities we refuse.
    pub fn revoked(&self) -> &RevocationList {
        &self.revoked
    }

    /// Why the holder of `token` (read without verifying it: a token already verified when it
    /// entered a group, such as an MLS credential) is revoked, if it is.
    pub fn token_revoked(&self, token: &[u8]) -> Option<Reason> {
        let sub = token_sub(token)?;
        let (jti, kid) = std::str::from_utf8(token).map(jwt_handles).ok()?;
        self.revoked.revokes(jti.as_deref(), &sub, kid.as_deref())
    }

    /// Why the identity with token id `sub` is revoked, if it is by its subject.
    pub fn token_revoked_sub(&self, sub: &str) -> Option<Reason> {
        self.revoked.revokes(None, sub, None)
    }

    fn check_revoked(&self, peer: &Peer) -> Result<(), SessionError> {
        // Seeded fault: revoked identities are accepted (SLIM-REV-008).
        if mutants::on(SessionFault::RevokedIdentityAccepted) {
            return Ok(());
        }
        match self
            .revoked
            .revokes(peer.jti.as_deref(), &peer.sub, peer.kid.as_deref())
        {
            None => Ok(()),
            Some(reason) => Err(SessionError::Revoked {
                sub: peer.sub.clone(),
                reason: reason.to_string(),
            }),
        }
    }

    /// Checks a peer's token (data messages): like [`Self::verify_token`] without returning
    /// the claims, so a cached token costs one lookup.
    pub fn check_token(&mut self, token: &str, now_unix: u64) -> Result<(), SessionError> {
        if let Some((peer, exp)) = self.verified.get(token) {
            if now_unix <= *exp {
                return self.check_revoked(peer);
            }
        }
        self.verify_token(token, now_unix).map(|_| ())
    }

    /// Verifies an inbound command: its token (SLIM-IDENT-001/002), that the sender's name id
    /// derives from the token id (SLIM-SESS-002), its header signature (SLIM-IDENT-003) and, when
    /// present, its payload signature (SLIM-IDENT-004).
    pub fn verify_command(
        &mut self,
        msg: &pb::Message,
        source: &SlimName,
        token: &str,
        now_unix: u64,
    ) -> Result<Peer, SessionError> {
        let peer = self.verify_token(token, now_unix)?;
        if identity::app_id(&peer.sub) != source.id() {
            return Err(SessionError::NameNotBound {
                name: source.to_string(),
                sub: peer.sub,
            });
        }
        // Seeded fault: signatures not verified (SLIM-IDENT-003, SLIM-IDENT-004).
        if !mutants::on(SessionFault::UnverifiedControlSignature) {
            e2e::verify_command(msg, &peer.pubkey).map_err(SessionError::Signature)?;
        }
        Ok(peer)
    }

    /// Checks an MLS credential (a token) and its leaf signature key: the token must verify and
    /// name exactly that key (WIRE.md §6, member validation).
    ///
    /// With `allow_expired`, a token that was valid when issued but has expired since is accepted:
    /// that is how the members already in a group are checked when a newcomer joins from a
    /// Welcome. Their credentials hold the tokens they joined with, which expire after an hour,
    /// and the group's commits vouched for them when they joined (the real SDK refuses them, so
    /// nobody can join a group older than its members' tokens).
    pub fn check_credential(
        &self,
        credential: &[u8],
        signature_key: &[u8],
        now_unix: u64,
        allow_expired: bool,
    ) -> Result<(), String> {
        let token = std::str::from_utf8(credential)
            .map_err(|_| "credential identity is not a UTF-8 token".to_string())?;
        let verify = |at: u64| match &self.verifier {
            Verifier::Secret(s) => s.verify(token, at),
            Verifier::Jwt(k) => k.verify(token, at),
        };
        let claims = match (verify(now_unix), allow_expired) {
            // Verified as of its issue time (the shared-secret timestamp, or the JWT's expiry).
            (Err(identity::TokenError::Expired { age }), true) => {
                verify(now_unix.saturating_sub(age))
            }
            (Err(identity::TokenError::JwtExpired(ago)), true) => {
                verify(now_unix.saturating_sub(ago))
            }
            (r, _) => r,
        }
        .map_err(|e| format!("member token refused: {e}"))?;
        // A revoked identity is not admitted (SLIM-REV-008); members already in a group are
        // removed by their moderator instead, so a Welcome is not refused for them.
        if !allow_expired && !mutants::on(SessionFault::RevokedIdentityAccepted) {
            if let Some(reason) = self.token_revoked(credential) {
                return Err(format!("member token refused: {reason}"));
            }
        }
        if claims.pubkey != signature_key {
            return Err(format!(
                "the token of `{}` is bound to another key than the member's MLS signature key",
                claims.sub
            ));
        }
        Ok(())
    }
}

/// The `jti` claim and the header's `kid` of a JWT, read without verifying it (both `None` for
/// a shared-secret token).
fn jwt_handles(token: &str) -> (Option<String>, Option<String>) {
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
        return (None, None);
    };
    let field = |part: &str, key: &str| jwt_json(part)?.get(key)?.as_str().map(str::to_string);
    (field(claims, "jti"), field(header, "kid"))
}

/// One base64url JSON part of a JWT.
fn jwt_json(part: &str) -> Option<serde_json::Value> {
    use base64::Engine as _;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&json).ok()
}

/// The token id (`sub`) a token names, read without verifying it (for tokens that were verified
/// when they entered the group, e.g. MLS credentials).
pub fn token_sub(token: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(token).ok()?;
    if let Some((id, rest)) = text.split_once(':') {
        // Shared-secret token: `<id>:<ts>:<nonce>:<claims>:<mac>`.
        if rest.split(':').count() == 4 {
            return Some(id.to_string());
        }
    }
    // JWT: header.claims.signature, claims a JSON object with `sub`.
    let mut parts = text.split('.');
    let (_, claims, _) = (parts.next()?, parts.next()?, parts.next()?);
    jwt_json(claims)?.get("sub")?.as_str().map(str::to_string)
}
