//! Node-side verification of JWT bearer tokens, as the real node's `auth: jwt` (SLIM-REV-001).
//!
//! Unlike the *identity* tokens of [`slim_proto::identity`], a node bearer token carries no
//! `pubkey` claim: the node only needs to know who is calling. The verifier checks, in order:
//! the token's shape (`header.payload.signature`, base64url JSON), the header's `alg` (ES256 or
//! HS256, never `none`), the signature with the key named by the header's `kid` (or, without a
//! `kid`, with each configured key of that algorithm), then `exp` (required), `nbf`, `iss` and
//! `aud` (when configured). The leeway is 0: a token is expired from its `exp` second on.
//!
//! Sans-IO: keys are given as text ([`JwtVerifier::add_public_pem`], [`JwtVerifier::add_jwks`],
//! [`JwtVerifier::add_hs256_secret`]) and the time as a Unix timestamp. Errors never contain the
//! token.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use serde_json::Value;
use sha2::Sha256;

use crate::mutants::{self, Fault};

/// Who a verified token names: what a revocation can match (SLIM-REV-002) and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token id (`jti` claim), if any.
    pub jti: Option<String>,
    /// The subject (`sub` claim).
    pub sub: String,
    /// The signing key id (`kid` header parameter), if any.
    pub kid: Option<String>,
    /// Expiry, Unix seconds (`exp` claim).
    pub exp: u64,
}

/// Why a JWT was refused; the text names the failed check (SLIM-REV-001) and never the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not `header.payload.signature` of base64url JSON, or a required claim is missing.
    #[error("malformed JWT: {0}")]
    Malformed(&'static str),
    /// The header's `alg` is not one this node accepts.
    #[error("wrong algorithm: {0:?} (this node accepts ES256 and HS256)")]
    WrongAlgorithm(String),
    /// The header names a `kid` no configured key has.
    #[error("unknown signing key: no configured key has kid {0:?}")]
    UnknownKid(String),
    /// No configured key of the token's algorithm verifies the signature.
    #[error("bad signature")]
    BadSignature,
    /// `exp` has passed.
    #[error("token expired (exp {exp}, now {now})")]
    Expired {
        /// The token's `exp`.
        exp: u64,
        /// The verifier's clock.
        now: u64,
    },
    /// `nbf` is in the future.
    #[error("token not yet valid (nbf {nbf}, now {now})")]
    NotYetValid {
        /// The token's `nbf`.
        nbf: u64,
        /// The verifier's clock.
        now: u64,
    },
    /// `iss` is missing or not the configured issuer.
    #[error("wrong issuer: expected {expected:?}")]
    WrongIssuer {
        /// The configured issuer.
        expected: String,
    },
    /// `aud` is missing or does not contain the configured audience.
    #[error("wrong audience: expected {expected:?}")]
    WrongAudience {
        /// The configured audience.
        expected: String,
    },
}

/// A key file or JWKS that cannot be used; says which and why (never the key material).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not an SPKI PEM P-256 public key.
    #[error("not a PEM P-256 public key (-----BEGIN PUBLIC KEY-----): {0}")]
    BadPem(String),
    /// The JWKS is not `{"keys": [...]}` JSON.
    #[error("not a JWKS (expected JSON {{\"keys\": [...]}}): {0}")]
    BadJwks(String),
    /// One JWK of a JWKS is unusable.
    #[error("JWKS key #{index}: {why}")]
    BadJwk {
        /// Position in `keys`.
        index: usize,
        /// What is wrong.
        why: String,
    },
    /// An empty HS256 secret.
    #[error("the HS256 secret is empty")]
    EmptySecret,
}

#[derive(Clone)]
enum KeyMaterial {
    Es256(VerifyingKey),
    Hs256(Vec<u8>),
}

#[derive(Clone)]
struct Key {
    kid: Option<String>,
    material: KeyMaterial,
}

impl Key {
    fn alg(&self) -> &'static str {
        match self.material {
            KeyMaterial::Es256(_) => "ES256",
            KeyMaterial::Hs256(_) => "HS256",
        }
    }

    fn verifies(&self, signed: &[u8], sig: &[u8]) -> bool {
        match &self.material {
            KeyMaterial::Es256(key) => Signature::from_slice(sig)
                .map(|s| key.verify(signed, &s).is_ok())
                .unwrap_or(false),
            KeyMaterial::Hs256(secret) => {
                let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret) else {
                    return false;
                };
                mac.update(signed);
                mac.verify_slice(sig).is_ok()
            }
        }
    }
}

/// The node's JWT verifier: its keys and the expected `iss` / `aud`.
#[derive(Clone, Default)]
pub struct JwtVerifier {
    keys: Vec<Key>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<String> = self
            .keys
            .iter()
            .map(|k| {
                format!(
                    "{}{}",
                    k.alg(),
                    k.kid
                        .as_deref()
                        .map(|k| format!(" kid={k}"))
                        .unwrap_or_default()
                )
            })
            .collect();
        f.debug_struct("JwtVerifier")
            .field("keys", &keys)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl JwtVerifier {
    /// A verifier with no keys that requires `iss == issuer` and `aud ∋ audience` when given.
    pub fn new(issuer: Option<String>, audience: Option<String>) -> Self {
        Self {
            keys: Vec::new(),
            issuer,
            audience,
        }
    }

    /// Number of keys loaded.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Adds an ES256 key from an SPKI PEM P-256 public key; it has no `kid`, so it is tried for
    /// every ES256 token whose `kid` no other key has.
    pub fn add_public_pem(&mut self, pem: &str) -> Result<(), KeyError> {
        use p256::pkcs8::DecodePublicKey as _;
        let key =
            VerifyingKey::from_public_key_pem(pem).map_err(|e| KeyError::BadPem(e.to_string()))?;
        self.keys.push(Key {
            kid: None,
            material: KeyMaterial::Es256(key),
        });
        Ok(())
    }

    /// Adds an HS256 shared secret (no `kid`).
    pub fn add_hs256_secret(&mut self, secret: &[u8]) -> Result<(), KeyError> {
        if secret.is_empty() {
            return Err(KeyError::EmptySecret);
        }
        self.keys.push(Key {
            kid: None,
            material: KeyMaterial::Hs256(secret.to_vec()),
        });
        Ok(())
    }

    /// Adds every key of a JWKS (RFC 7517): `{"kty":"EC","crv":"P-256","x","y"}` for ES256 and
    /// `{"kty":"oct","k"}` for HS256, each with an optional `kid`. Returns how many were added.
    pub fn add_jwks(&mut self, json: &str) -> Result<usize, KeyError> {
        let doc: Value =
            serde_json::from_str(json).map_err(|e| KeyError::BadJwks(e.to_string()))?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| KeyError::BadJwks("no \"keys\" array".into()))?;
        let mut added = Vec::with_capacity(keys.len());
        for (index, jwk) in keys.iter().enumerate() {
            let bad = |why: &str| KeyError::BadJwk {
                index,
                why: why.to_string(),
            };
            let field = |name: &str| jwk.get(name).and_then(Value::as_str);
            let b64 = |name: &str| -> Result<Vec<u8>, KeyError> {
                let text = field(name).ok_or_else(|| bad(&format!("missing \"{name}\"")))?;
                URL_SAFE_NO_PAD
                    .decode(text)
                    .map_err(|_| bad(&format!("\"{name}\" is not base64url")))
            };
            let kid = field("kid").map(str::to_string);
            let material = match field("kty") {
                Some("EC") => {
                    if field("crv") != Some("P-256") {
                        return Err(bad("EC key is not \"crv\": \"P-256\""));
                    }
                    let (x, y) = (b64("x")?, b64("y")?);
                    if x.len() != 32 || y.len() != 32 {
                        return Err(bad("P-256 \"x\" and \"y\" must be 32 bytes each"));
                    }
                    let mut sec1 = Vec::with_capacity(65);
                    sec1.push(4);
                    sec1.extend_from_slice(&x);
                    sec1.extend_from_slice(&y);
                    let key = VerifyingKey::from_sec1_bytes(&sec1)
                        .map_err(|_| bad("\"x\", \"y\" is not a point on P-256"))?;
                    KeyMaterial::Es256(key)
                }
                Some("oct") => {
                    let k = b64("k")?;
                    if k.is_empty() {
                        return Err(bad("empty \"k\""));
                    }
                    KeyMaterial::Hs256(k)
                }
                Some(other) => {
                    return Err(bad(&format!(
                        "unsupported \"kty\": {other:?} (EC P-256 or oct)"
                    )))
                }
                None => return Err(bad("missing \"kty\"")),
            };
            added.push(Key { kid, material });
        }
        let n = added.len();
        self.keys.extend(added);
        Ok(n)
    }

    /// Verifies `token` at `now_unix` (SLIM-REV-001) and returns who it names.
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<Principal, JwtError> {
        let mut parts = token.split('.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed(
                "expected 3 '.'-separated parts (header.payload.signature)",
            ));
        };
        let header = decode_json(h64).ok_or(JwtError::Malformed("header is not base64url JSON"))?;
        let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
        if alg != "ES256" && alg != "HS256" {
            // Shown truncated: it is attacker-chosen text.
            return Err(JwtError::WrongAlgorithm(alg.chars().take(16).collect()));
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.clone()),
            Some(_) => return Err(JwtError::Malformed("header \"kid\" is not a string")),
        };
        let sig = URL_SAFE_NO_PAD
            .decode(s64)
            .map_err(|_| JwtError::Malformed("signature is not base64url"))?;
        // Candidates: keys with this kid; without a match (or a kid), the keys that have none.
        let mut candidates: Vec<&Key> = match &kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid.as_str()))
                .collect(),
            None => Vec::new(),
        };
        if candidates.is_empty() {
            candidates = self.keys.iter().filter(|k| k.kid.is_none()).collect();
            if candidates.is_empty() {
                if let Some(kid) = &kid {
                    return Err(JwtError::UnknownKid(kid.chars().take(64).collect()));
                }
            }
        }
        let signed = &token.as_bytes()[..h64.len() + 1 + p64.len()];
        if !candidates
            .iter()
            .filter(|k| k.alg() == alg)
            .any(|k| k.verifies(signed, &sig))
        {
            return Err(JwtError::BadSignature);
        }
        let claims =
            decode_json(p64).ok_or(JwtError::Malformed("payload is not base64url JSON"))?;
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or(JwtError::Malformed("no numeric \"exp\" claim"))?;
        if now_unix >= exp {
            return Err(JwtError::Expired { exp, now: now_unix });
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf
                .as_u64()
                .ok_or(JwtError::Malformed("\"nbf\" is not a number"))?;
            if nbf > now_unix {
                return Err(JwtError::NotYetValid { nbf, now: now_unix });
            }
        }
        if let Some(expected) = &self.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(expected.as_str()) {
                return Err(JwtError::WrongIssuer {
                    expected: expected.clone(),
                });
            }
        }
        let audience = self.audience.as_ref();
        if let Some(expected) = audience.filter(|_| !mutants::on(Fault::JwtAudienceNotChecked)) {
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => a == expected,
                Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(expected)),
                _ => false,
            };
            if !ok {
                return Err(JwtError::WrongAudience {
                    expected: expected.clone(),
                });
            }
        }
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or(JwtError::Malformed("no string \"sub\" claim"))?;
        let jti = match claims.get("jti") {
            None => None,
            Some(Value::String(j)) => Some(j.clone()),
            Some(_) => return Err(JwtError::Malformed("\"jti\" is not a string")),
        };
        Ok(Principal {
            jti,
            sub: sub.to_string(),
            kid,
            exp,
        })
    }
}

fn decode_json(b64: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(b64).ok()?;
    serde_json::from_slice::<Value>(&bytes)
        .ok()
        .filter(Value::is_object)
}

fn encode_signed(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// Issues an ES256 JWT with `claims` (a JSON object) and, if given, a `kid` header: what an
/// identity provider does; used by tests and shown in the README.
pub fn sign_es256(key: &SigningKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = serde_json::json!({"alg": "ES256", "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = Value::String(kid.to_string());
    }
    let mut token = encode_signed(&header, claims);
    let sig: Signature = key.sign(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(sig.to_bytes(), &mut token);
    token
}

/// Issues an HS256 JWT with `claims` and, if given, a `kid` header.
pub fn sign_hs256(secret: &[u8], kid: Option<&str>, claims: &Value) -> String {
    let mut header = serde_json::json!({"alg": "HS256", "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = Value::String(kid.to_string());
    }
    let mut token = encode_signed(&header, claims);
    let tag = match <Hmac<Sha256> as Mac>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(token.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    };
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(tag, &mut token);
    token
}

/// The JWK (`kty: EC`) of an ES256 public key, with `kid`: for writing a JWKS file.
pub fn es256_jwk(key: &VerifyingKey, kid: &str) -> Value {
    let point = key.to_encoded_point(false);
    let (x, y) = (point.x().map(|x| x.to_vec()), point.y().map(|y| y.to_vec()));
    serde_json::json!({
        "kty": "EC",
        "crv": "P-256",
        "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(x.unwrap_or_default()),
        "y": URL_SAFE_NO_PAD.encode(y.unwrap_or_default()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::pkcs8::{EncodePublicKey as _, LineEnding};
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_slice(&[seed; 32]).expect("scalar")
    }

    fn claims() -> Value {
        json!({"sub": "alice", "jti": "t-1", "iss": "idp", "aud": "slim", "exp": NOW + 60, "nbf": NOW - 1})
    }

    fn es_verifier(seed: u8) -> JwtVerifier {
        let mut v = JwtVerifier::new(Some("idp".into()), Some("slim".into()));
        let pem = key(seed)
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("pem");
        v.add_public_pem(&pem).expect("key");
        v
    }

    #[test]
    fn es256_token_is_accepted_and_names_its_principal() {
        let token = sign_es256(&key(1), Some("k1"), &claims());
        let p = es_verifier(1).verify(&token, NOW).expect("valid");
        assert_eq!(
            p,
            Principal {
                jti: Some("t-1".into()),
                sub: "alice".into(),
                kid: Some("k1".into()),
                exp: NOW + 60
            }
        );
    }

    #[test]
    fn hs256_token_is_accepted() {
        let mut v = JwtVerifier::new(None, None);
        v.add_hs256_secret(b"shared").expect("secret");
        let token = sign_hs256(b"shared", None, &json!({"sub": "bob", "exp": NOW + 1}));
        assert_eq!(v.verify(&token, NOW).expect("valid").sub, "bob");
        let wrong = sign_hs256(b"other", None, &json!({"sub": "bob", "exp": NOW + 1}));
        assert_eq!(v.verify(&wrong, NOW), Err(JwtError::BadSignature));
    }

    #[test]
    fn each_failed_check_is_named() {
        let v = es_verifier(1);
        let with = |c: Value| sign_es256(&key(1), None, &c);
        let mut c = claims();
        c["exp"] = json!(NOW);
        let e = v.verify(&with(c), NOW).unwrap_err();
        assert!(matches!(e, JwtError::Expired { .. }));
        assert!(e.to_string().contains("expired"), "{e}");
        let mut c = claims();
        c["nbf"] = json!(NOW + 5);
        assert!(v
            .verify(&with(c), NOW)
            .unwrap_err()
            .to_string()
            .contains("not yet valid"));
        let mut c = claims();
        c["iss"] = json!("evil");
        assert!(v
            .verify(&with(c), NOW)
            .unwrap_err()
            .to_string()
            .contains("wrong issuer"));
        let mut c = claims();
        c["aud"] = json!(["x", "y"]);
        assert!(v
            .verify(&with(c), NOW)
            .unwrap_err()
            .to_string()
            .contains("wrong audience"));
        let mut c = claims();
        c["aud"] = json!(["x", "slim"]);
        assert!(v.verify(&with(c), NOW).is_ok(), "aud as an array");
        let mut c = claims();
        c.as_object_mut().expect("object").remove("exp");
        assert!(v
            .verify(&with(c), NOW)
            .unwrap_err()
            .to_string()
            .contains("malformed"));
        // Signed by another key.
        let other = sign_es256(&key(2), None, &claims());
        assert_eq!(v.verify(&other, NOW), Err(JwtError::BadSignature));
        // alg: none and HS256 made with the public key are refused.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(claims().to_string())
        );
        assert!(v
            .verify(&none, NOW)
            .unwrap_err()
            .to_string()
            .contains("wrong algorithm"));
        let hs = sign_hs256(b"guess", None, &claims());
        assert_eq!(v.verify(&hs, NOW), Err(JwtError::BadSignature));
        for bad in ["", "a.b", "a.b.c.d", "!!.e30.AA"] {
            let e = v.verify(bad, NOW).unwrap_err();
            assert!(e.to_string().starts_with("malformed JWT"), "{bad}: {e}");
        }
    }

    #[test]
    fn errors_never_contain_the_token() {
        let v = es_verifier(1);
        let token = sign_es256(&key(2), Some("k"), &claims());
        let e = v.verify(&token, NOW).unwrap_err().to_string();
        for part in token.split('.') {
            assert!(!e.contains(part), "{e}");
        }
    }

    #[test]
    fn kid_selects_the_key_from_a_jwks() {
        let jwks = json!({"keys": [
            es256_jwk(key(1).verifying_key(), "one"),
            es256_jwk(key(2).verifying_key(), "two"),
            {"kty": "oct", "kid": "hs", "k": URL_SAFE_NO_PAD.encode(b"s3cret")},
        ]});
        let mut v = JwtVerifier::new(None, None);
        assert_eq!(v.add_jwks(&jwks.to_string()), Ok(3));
        let c = json!({"sub": "s", "exp": NOW + 5});
        assert!(v.verify(&sign_es256(&key(2), Some("two"), &c), NOW).is_ok());
        assert!(v.verify(&sign_es256(&key(1), Some("one"), &c), NOW).is_ok());
        assert!(v
            .verify(&sign_hs256(b"s3cret", Some("hs"), &c), NOW)
            .is_ok());
        assert_eq!(
            v.verify(&sign_es256(&key(1), Some("two"), &c), NOW),
            Err(JwtError::BadSignature),
            "the kid picks the key; another key does not verify"
        );
        assert_eq!(
            v.verify(&sign_es256(&key(1), Some("three"), &c), NOW),
            Err(JwtError::UnknownKid("three".into()))
        );
        assert!(
            v.verify(&sign_es256(&key(1), None, &c), NOW).is_err(),
            "without a kid only kid-less keys are tried"
        );
    }

    #[test]
    fn jwks_defects_are_named() {
        let mut v = JwtVerifier::new(None, None);
        let e = |v: &mut JwtVerifier, s: &str| v.add_jwks(s).unwrap_err().to_string();
        assert!(e(&mut v, "nope").contains("not a JWKS"));
        assert!(e(&mut v, "{}").contains("no \"keys\" array"));
        assert!(e(&mut v, r#"{"keys":[{"kty":"RSA"}]}"#).contains("unsupported \"kty\""));
        assert!(e(&mut v, r#"{"keys":[{"kty":"EC","crv":"P-384"}]}"#).contains("P-256"));
        assert!(e(
            &mut v,
            r#"{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}"#
        )
        .contains("32 bytes"));
        assert!(e(&mut v, r#"{"keys":[{"kty":"oct"}]}"#).contains("missing \"k\""));
        assert!(e(&mut v, r#"{"keys":[{}]}"#).contains("#0: missing \"kty\""));
        assert_eq!(v.key_count(), 0, "a bad JWKS adds nothing");
        assert!(v
            .add_public_pem("-----BEGIN PUBLIC KEY-----\nAA\n-----END PUBLIC KEY-----")
            .is_err());
        assert_eq!(v.add_hs256_secret(b""), Err(KeyError::EmptySecret));
    }
}
