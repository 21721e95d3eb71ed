//! Target `jwt`: the node's JWT verifier (`reference/src/auth/jwt.rs`), the `authorization`
//! header checks around it (`reference/src/auth/mod.rs`) and slim-proto's identity tokens.
//!
//! The first input byte picks a mode; the rest is its input:
//!
//! | mode | input |
//! |---|---|
//! | 0 | a token, verified as is |
//! | 1 | a header choice, then the claims (any bytes) of a token the harness signs |
//! | 2 | an `authorization` header for a JWT node with a revocation list |
//! | 3 | an `authorization` header for static Basic / Bearer credentials |
//! | 4 | a JWKS document |
//! | 5 | a PEM public key |
//! | 6 | an identity token (shared secret or JWT), verified; then the bytes as a token id |

use std::sync::OnceLock;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::Value;
use slim_proto::identity::{JwtKey, SharedSecret};
use slim_reference::auth::{self, jwt, AuthConfig, Authenticator, JwtError, JwtVerifier};
use slim_reference::revocation::{Reason, RevocationList};

use crate::input::Input;

/// The verifier's clock.
pub const NOW: u64 = 1_796_515_200;
/// The HS256 secret without `kid`.
pub const HS_SECRET: &[u8] = b"fuzz-hs256-secret-0123456789abcdef";
/// The HS256 secret of the JWKS key with `kid` [`HS_KID`].
pub const HS_KID_SECRET: &[u8] = b"fuzz-jwks-oct-secret-0123456789";
/// `kid` of the JWKS oct key.
pub const HS_KID: &str = "hs-1";
/// `kid` of the JWKS EC key.
pub const ES_KID: &str = "es-1";
/// The required `iss`.
pub const ISSUER: &str = "fuzz-idp";
/// The required `aud`.
pub const AUDIENCE: &str = "slim";
/// The static Basic credentials of mode 3.
pub const BASIC: (&str, &str) = ("alice", "s3cret-pass");
/// The static Bearer token of mode 3.
pub const BEARER: &str = "static-bearer-token-42";
/// The shared secret of identity tokens (mode 6).
pub const IDENTITY_SECRET: &str = "fuzz-identity-shared-secret-0123456789";

/// The ES256 key (fixed scalar).
pub fn es_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| match SigningKey::from_slice(&[7; 32]) {
        Ok(k) => k,
        Err(e) => panic!("fixed scalar refused: {e}"),
    })
}

/// The JWKS the verifier loads: the EC key as [`ES_KID`], the oct key as [`HS_KID`].
pub fn jwks() -> String {
    serde_json::json!({"keys": [
        jwt::es256_jwk(es_key().verifying_key(), ES_KID),
        {"kty": "oct", "kid": HS_KID, "k": URL_SAFE_NO_PAD.encode(HS_KID_SECRET)},
    ]})
    .to_string()
}

/// The node's verifier: [`HS_SECRET`] without kid and [`jwks`], issuer and audience required.
pub fn verifier() -> &'static JwtVerifier {
    static V: OnceLock<JwtVerifier> = OnceLock::new();
    V.get_or_init(|| {
        let mut v = JwtVerifier::new(Some(ISSUER.into()), Some(AUDIENCE.into()));
        if let Err(e) = v.add_hs256_secret(HS_SECRET) {
            panic!("secret refused: {e}");
        }
        if let Err(e) = v.add_jwks(&jwks()) {
            panic!("JWKS refused: {e}");
        }
        v
    })
}

/// The revocation list of mode 2.
pub fn revocations() -> RevocationList {
    let mut list = RevocationList::empty();
    list.insert(Reason::Sub("revoked-sub".into()));
    list.insert(Reason::Jti("revoked-jti".into()));
    list.insert(Reason::Kid(ES_KID.into()));
    list
}

/// How mode 1 signs: `(alg, kid)` of the header, by the choice byte modulo 6.
pub fn header_choice(b: u8) -> (&'static str, Option<&'static str>) {
    match b % 6 {
        0 => ("HS256", None),
        1 => ("HS256", Some(HS_KID)),
        2 => ("ES256", Some(ES_KID)),
        3 => ("ES256", None),
        4 => ("HS256", Some("unknown-kid")),
        _ => ("none", None),
    }
}

/// A token over the raw `claims` bytes, signed as `choice` says (see [`header_choice`]).
pub fn sign_raw(choice: u8, claims: &[u8]) -> String {
    let (alg, kid) = header_choice(choice);
    let mut header = serde_json::json!({"alg": alg, "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = Value::String(kid.into());
    }
    let mut token = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let sig = match (alg, kid) {
        ("ES256", _) => {
            let s: Signature = es_key().sign(token.as_bytes());
            s.to_bytes().to_vec()
        }
        ("HS256", Some(HS_KID)) => hmac(HS_KID_SECRET, token.as_bytes()),
        _ => hmac(HS_SECRET, token.as_bytes()),
    };
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(sig, &mut token);
    token
}

/// HMAC-SHA256 of `data` under `key`, as a JWS HS256 signature.
fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::Mac as _;
    let mut mac = <hmac::Hmac<sha2::Sha256>>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Runs one token / header / key input (see the module documentation).
///
/// Catches: panics in JWT, JWKS, PEM and identity-token parsing and in the header checks, and:
/// - a signed token accepted or refused against the rules of `auth/jwt.rs` (an oracle written
///   from its documentation: `exp` required and in the future, `nbf` not in the future, `iss`
///   and `aud` as configured, a string `sub`, `jti` absent or a string, and the right key), or
///   a principal that does not repeat the claims;
/// - `alg: none`, or an unknown `kid`, accepted;
/// - an error text that contains the token (they must never) or a configured secret;
/// - a revoked principal let through at call setup;
/// - static credentials accepted that are not exactly the configured ones;
/// - a JWKS whose reported key count is wrong;
/// - an identity token that does not verify right after it was issued.
pub fn jwt_body(data: &[u8]) {
    let mut input = Input::new(data);
    let Some(mode) = input.u8() else {
        return;
    };
    let rest = input.rest();
    let text = String::from_utf8_lossy(rest);
    match mode % 7 {
        0 => verify_raw(&text),
        1 => signed_claims(rest),
        2 => authenticate(rest),
        3 => static_credentials(rest),
        4 => {
            let mut v = JwtVerifier::new(None, None);
            if let Ok(n) = v.add_jwks(&text) {
                assert_eq!(v.key_count(), n, "add_jwks miscounts its keys");
            }
        }
        5 => {
            let mut v = JwtVerifier::new(None, None);
            match v.add_public_pem(&text) {
                Ok(()) => assert_eq!(v.key_count(), 1),
                Err(e) => assert_eq!(v.key_count(), 0, "a refused key was kept: {e}"),
            }
        }
        _ => identity_tokens(&text),
    }
}

fn verify_raw(token: &str) {
    match verifier().verify(token, NOW) {
        Ok(p) => {
            assert!(p.exp > NOW, "an expired token was accepted");
            let _ = format!("{p:?}");
        }
        Err(e) => no_leak(&e.to_string(), token),
    }
}

/// An error text must not contain the token (beyond a length where a coincidence is possible).
fn no_leak(message: &str, token: &str) {
    if token.len() >= 72 {
        assert!(
            !message.contains(token),
            "an error quotes the token: {message}"
        );
    }
    for secret in [HS_SECRET, HS_KID_SECRET] {
        let secret = String::from_utf8_lossy(secret);
        if !token.contains(&*secret) {
            assert!(
                !message.contains(&*secret),
                "an error quotes a secret: {message}"
            );
        }
    }
}

/// What `auth/jwt.rs` documents for a token signed by a configured key with these claims.
fn expected(claims: &[u8]) -> Option<(String, Option<String>, u64)> {
    let claims: Value = serde_json::from_slice(claims)
        .ok()
        .filter(Value::is_object)?;
    let exp = claims.get("exp")?.as_u64()?;
    if NOW >= exp {
        return None;
    }
    if let Some(nbf) = claims.get("nbf") {
        if nbf.as_u64()? > NOW {
            return None;
        }
    }
    if claims.get("iss").and_then(Value::as_str) != Some(ISSUER) {
        return None;
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == AUDIENCE,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(AUDIENCE)),
        _ => false,
    };
    if !aud_ok {
        return None;
    }
    let sub = claims.get("sub")?.as_str()?.to_string();
    let jti = match claims.get("jti") {
        None => None,
        Some(Value::String(j)) => Some(j.clone()),
        Some(_) => return None,
    };
    Some((sub, jti, exp))
}

fn signed_claims(rest: &[u8]) {
    let Some((&choice, claims)) = rest.split_first() else {
        return;
    };
    let token = sign_raw(choice, claims);
    let (alg, kid) = header_choice(choice);
    let got = verifier().verify(&token, NOW);
    // Keys that can verify: HS256 without kid (the plain secret, also tried for an unknown
    // kid), HS256 with HS_KID, ES256 with ES_KID. ES256 without kid has no key: the only
    // EC key has a kid, and a token without kid is tried with the kid-less keys only.
    let signed_by_a_key = matches!(
        (alg, kid),
        ("HS256", None) | ("HS256", Some(HS_KID)) | ("ES256", Some(ES_KID))
    ) || (alg, kid) == ("HS256", Some("unknown-kid"));
    let want = if signed_by_a_key {
        expected(claims)
    } else {
        None
    };
    match (&got, &want) {
        (Ok(p), Some((sub, jti, exp))) => {
            assert_eq!(&p.sub, sub, "principal sub differs from the claims");
            assert_eq!(&p.jti, jti, "principal jti differs from the claims");
            assert_eq!(p.exp, *exp, "principal exp differs from the claims");
            assert_eq!(
                p.kid.as_deref(),
                kid,
                "principal kid differs from the header"
            );
        }
        (Err(e), None) => {
            no_leak(&e.to_string(), &token);
            if alg == "none" {
                assert!(matches!(e, JwtError::WrongAlgorithm(_)), "alg none: {e}");
            }
        }
        (Ok(p), None) => panic!("accepted a token the rules refuse ({alg}, {kid:?}): {p:?}"),
        (Err(e), Some(_)) => panic!("refused a token the rules accept ({alg}, {kid:?}): {e}"),
    }
}

fn authenticate(header: &[u8]) {
    static AUTH: OnceLock<Authenticator> = OnceLock::new();
    let auth = AUTH.get_or_init(|| Authenticator::Jwt(verifier().clone()));
    let revoked = revocations();
    match auth.authenticate(Some(header), NOW, &revoked) {
        Ok(Some(p)) => assert_eq!(
            revoked.is_revoked(&p),
            None,
            "a revoked principal passed call setup"
        ),
        Ok(None) => panic!("a JWT node authenticated a call without a principal"),
        Err(e) => no_leak(&e.to_string(), &String::from_utf8_lossy(header)),
    }
}

fn static_credentials(header: &[u8]) {
    let basic = AuthConfig::Basic {
        username: BASIC.0.into(),
        password: BASIC.1.into(),
    };
    let bearer = AuthConfig::Bearer {
        token: BEARER.into(),
    };
    // RFC 9110 §11.4 `scheme 1*SP credentials`, surrounding blanks ignored.
    let trimmed = header.trim_ascii();
    let (scheme, creds) = match trimmed.iter().position(|&b| b == b' ') {
        Some(i) => (&trimmed[..i], trimmed[i..].trim_ascii()),
        None => (trimmed, &[][..]),
    };
    let basic_creds = STANDARD.encode(format!("{}:{}", BASIC.0, BASIC.1));
    for (config, name, want) in [
        (&basic, "Basic", basic_creds.as_bytes()),
        (&bearer, "Bearer", BEARER.as_bytes()),
    ] {
        let ok = scheme.eq_ignore_ascii_case(name.as_bytes()) && creds == want;
        let got = auth::check(config, Some(header));
        assert_eq!(
            got.is_ok(),
            ok,
            "{name}: check disagrees with RFC 9110: {got:?}"
        );
        if let Err(e) = got {
            let message = e.to_string();
            let shown = String::from_utf8_lossy(header);
            for secret in [BASIC.1, BEARER] {
                if !shown.contains(secret) {
                    assert!(
                        !message.contains(secret),
                        "an error quotes a secret: {message}"
                    );
                }
            }
        }
    }
    assert!(auth::check(&basic, None).is_err(), "no header accepted");
}

fn identity_tokens(text: &str) {
    static SECRET: OnceLock<Option<SharedSecret>> = OnceLock::new();
    let Some(secret) = SECRET.get_or_init(|| SharedSecret::new(IDENTITY_SECRET).ok()) else {
        panic!("the identity secret is refused");
    };
    let key = JwtKey::hs256(HS_SECRET);
    let _ = secret.verify(text, NOW);
    let _ = key.verify(text, NOW);
    let _ = slim_reference::session::identity::token_sub(text.as_bytes());
    // The text as a token id: issuing and verifying must round-trip.
    let pubkey = [4u8; 65];
    if let Ok(token) = secret.issue(text, &pubkey, [1; 12], NOW) {
        match secret.verify(&token, NOW) {
            Ok(c) => {
                assert_eq!(c.sub, text, "shared-secret token names another id");
                assert_eq!(c.pubkey, pubkey);
            }
            Err(e) => panic!("a shared-secret token just issued does not verify: {e}"),
        }
        assert_eq!(
            slim_reference::session::identity::token_sub(token.as_bytes()).as_deref(),
            Some(text)
        );
    }
    if let Ok(token) = key.issue(text, &pubkey, NOW, 3600) {
        match key.verify(&token, NOW) {
            Ok(c) => assert_eq!(c.sub, text, "identity JWT names another sub"),
            Err(e) => {
                // A JWT needs a non-empty sub (or id); anything else must verify.
                assert!(
                    text.is_empty(),
                    "an identity JWT just issued does not verify: {e}"
                );
            }
        }
    }
}
