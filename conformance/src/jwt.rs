//! Bearer tokens the runner mints for the revocation cases (SLIM-REV-001..006).
//!
//! The runner plays the identity provider of the node under test: given the deployment's signing
//! key (`--jwt-key`, a PKCS#8 PEM P-256 key for ES256, or `--jwt-hs256-secret-file`), it issues
//! tokens the node must accept and tokens that fail exactly one check (signature, `exp`, `nbf`,
//! `iss`, `aud`). Tokens are built here from `p256` and `hmac` directly, never with the reference
//! relay's signer, so a bug shared by the reference's signer and its verifier cannot hide.
//!
//! Sans-IO apart from [`SigningKey::load_es256_pem`] and [`SigningKey::load_hs256_secret`]: the
//! time is always a parameter.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::Signature;
use serde_json::{Map, Value};
use sha2::Sha256;

/// A key file the runner cannot sign tokens with (SLIM-REV-001); names the file and the defect,
/// never key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not a PKCS#8 PEM P-256 private key.
    #[error("{path} is not a PKCS#8 PEM P-256 private key (-----BEGIN PRIVATE KEY-----): {why}")]
    BadPem {
        /// The file.
        path: String,
        /// The parser's explanation.
        why: String,
    },
    /// An HS256 secret file that is empty (after the one trailing newline that is ignored).
    #[error("{path}: the HS256 secret is empty")]
    EmptySecret {
        /// The file.
        path: String,
    },
}

/// The key the runner signs tokens with (SLIM-REV-001: ES256 or HS256).
#[derive(Clone)]
pub enum SigningKey {
    /// ECDSA P-256 with SHA-256.
    Es256(p256::ecdsa::SigningKey),
    /// HMAC-SHA-256 with a shared secret.
    Hs256(Vec<u8>),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material.
        f.write_str(self.alg())
    }
}

impl SigningKey {
    /// Reads a PKCS#8 PEM P-256 private key (`openssl genpkey -algorithm EC -pkeyopt
    /// ec_paramgen_curve:P-256`, or `openssl pkcs8 -topk8 -nocrypt`).
    pub fn load_es256_pem(path: &Path) -> Result<Self, KeyError> {
        use p256::pkcs8::DecodePrivateKey as _;
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: shown.clone(),
            source,
        })?;
        p256::ecdsa::SigningKey::from_pkcs8_pem(&text)
            .map(SigningKey::Es256)
            .map_err(|e| KeyError::BadPem {
                path: shown,
                why: e.to_string(),
            })
    }

    /// Reads an HS256 secret: the file's bytes, one trailing newline ignored (as slim-relay's
    /// `hs256_secret_file`).
    pub fn load_hs256_secret(path: &Path) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let mut secret = std::fs::read(path).map_err(|source| KeyError::Read {
            path: shown.clone(),
            source,
        })?;
        if secret.last() == Some(&b'\n') {
            secret.pop();
        }
        if secret.is_empty() {
            return Err(KeyError::EmptySecret { path: shown });
        }
        Ok(SigningKey::Hs256(secret))
    }

    /// A fresh random ES256 key (the embedded relay's identity provider).
    pub fn generate_es256() -> Self {
        SigningKey::Es256(p256::ecdsa::SigningKey::random(&mut rand_core::OsRng))
    }

    /// A fresh random key of the same algorithm: what an attacker without the deployment's key
    /// signs with (the bad-signature tokens).
    pub fn another_like(&self) -> Self {
        match self {
            SigningKey::Es256(_) => Self::generate_es256(),
            SigningKey::Hs256(secret) => {
                let mut other = vec![0u8; secret.len().max(32)];
                rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut other);
                SigningKey::Hs256(other)
            }
        }
    }

    /// The JWS `alg` this key signs with.
    pub fn alg(&self) -> &'static str {
        match self {
            SigningKey::Es256(_) => "ES256",
            SigningKey::Hs256(_) => "HS256",
        }
    }

    /// The SPKI PEM public key of an ES256 key (what a node is configured with); `None` for
    /// HS256.
    pub fn public_pem(&self) -> Option<String> {
        use p256::pkcs8::{EncodePublicKey as _, LineEnding};
        match self {
            SigningKey::Es256(k) => k.verifying_key().to_public_key_pem(LineEnding::LF).ok(),
            SigningKey::Hs256(_) => None,
        }
    }

    fn sign(&self, signing_input: &[u8]) -> Vec<u8> {
        match self {
            SigningKey::Es256(k) => {
                let sig: Signature = k.sign(signing_input);
                sig.to_bytes().to_vec()
            }
            SigningKey::Hs256(secret) => match <Hmac<Sha256> as Mac>::new_from_slice(secret) {
                Ok(mut mac) => {
                    mac.update(signing_input);
                    mac.finalize().into_bytes().to_vec()
                }
                // HMAC takes keys of any length; unreachable, and an empty tag is refused anyway.
                Err(_) => Vec::new(),
            },
        }
    }
}

/// What one token says: its `kid` header and its claims (SLIM-REV-001, SLIM-REV-002). Cases
/// start from [`Issuer::valid`] and change one thing.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    /// The `kid` header parameter, if any.
    pub kid: Option<String>,
    /// The claims object.
    pub claims: Map<String, Value>,
}

impl TokenSpec {
    /// Sets (or replaces) a claim.
    pub fn set(mut self, claim: &str, value: impl Into<Value>) -> Self {
        self.claims.insert(claim.to_string(), value.into());
        self
    }

    /// Sets the `kid` header.
    pub fn kid(mut self, kid: &str) -> Self {
        self.kid = Some(kid.to_string());
        self
    }
}

/// The runner's identity provider for one target: its key, and the `kid`, `iss` and `aud` the
/// target expects (SLIM-REV-001).
#[derive(Debug, Clone)]
pub struct Issuer {
    /// The signing key.
    pub key: SigningKey,
    /// The `kid` of valid tokens (`--jwt-kid`), if the target needs one.
    pub kid: Option<String>,
    /// The `iss` the target requires (`--jwt-issuer`), if it checks one.
    pub issuer: Option<String>,
    /// The `aud` the target requires (`--jwt-audience`), if it checks one.
    pub audience: Option<String>,
}

impl Issuer {
    /// A token the target must accept at `now_unix`: subject `sub`, id `jti`, valid for
    /// `lifetime_secs` more seconds, with `iss` and `aud` when configured.
    pub fn valid(&self, sub: &str, jti: &str, now_unix: u64, lifetime_secs: u64) -> TokenSpec {
        let mut claims = Map::new();
        claims.insert("sub".into(), sub.into());
        claims.insert("jti".into(), jti.into());
        claims.insert("iat".into(), now_unix.into());
        claims.insert("exp".into(), (now_unix + lifetime_secs).into());
        if let Some(iss) = &self.issuer {
            claims.insert("iss".into(), iss.as_str().into());
        }
        if let Some(aud) = &self.audience {
            claims.insert("aud".into(), aud.as_str().into());
        }
        TokenSpec {
            kid: self.kid.clone(),
            claims,
        }
    }

    /// The compact JWS of `spec` signed with the deployment's key.
    pub fn sign(&self, spec: &TokenSpec) -> String {
        self.sign_with(&self.key, spec)
    }

    /// The compact JWS of `spec` signed with `key` (another key: a bad signature).
    pub fn sign_with(&self, key: &SigningKey, spec: &TokenSpec) -> String {
        let mut header = Map::new();
        header.insert("alg".into(), key.alg().into());
        header.insert("typ".into(), "JWT".into());
        if let Some(kid) = &spec.kid {
            header.insert("kid".into(), kid.as_str().into());
        }
        let mut token = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(Value::Object(header).to_string()),
            URL_SAFE_NO_PAD.encode(Value::Object(spec.claims.clone()).to_string())
        );
        let sig = key.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(sig, &mut token);
        token
    }

    /// `Bearer <token>`: the `authorization` header value for `spec`.
    pub fn bearer(&self, spec: &TokenSpec) -> String {
        format!("Bearer {}", self.sign(spec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier as _;

    fn parts(token: &str) -> (Value, Value, Vec<u8>) {
        let p: Vec<&str> = token.split('.').collect();
        assert_eq!(p.len(), 3, "{token}");
        let json = |s: &str| -> Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).expect("b64")).expect("json")
        };
        (
            json(p[0]),
            json(p[1]),
            URL_SAFE_NO_PAD.decode(p[2]).expect("b64"),
        )
    }

    #[test]
    fn es256_tokens_verify_with_the_public_key_and_carry_the_claims() {
        let key = p256::ecdsa::SigningKey::from_slice(&[9; 32]).expect("key");
        let issuer = Issuer {
            key: SigningKey::Es256(key.clone()),
            kid: Some("k1".into()),
            issuer: Some("idp".into()),
            audience: Some("slim".into()),
        };
        let token = issuer.sign(&issuer.valid("alice", "t-1", 1000, 60));
        let (header, claims, sig) = parts(&token);
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], "k1");
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["jti"], "t-1");
        assert_eq!(claims["exp"], 1060);
        assert_eq!(claims["iss"], "idp");
        assert_eq!(claims["aud"], "slim");
        let signed = &token[..token.rfind('.').expect("dot")];
        let sig = Signature::from_slice(&sig).expect("64-byte r||s");
        assert!(key.verifying_key().verify(signed.as_bytes(), &sig).is_ok());
        // Another key of the same algorithm does not verify.
        let other = issuer.sign_with(&issuer.key.another_like(), &issuer.valid("a", "b", 1, 1));
        let (h, _, other_sig) = parts(&other);
        assert_eq!(h["alg"], "ES256");
        let other_signed = &other[..other.rfind('.').expect("dot")];
        let other_sig = Signature::from_slice(&other_sig).expect("64 bytes");
        assert!(key
            .verifying_key()
            .verify(other_signed.as_bytes(), &other_sig)
            .is_err());
    }

    #[test]
    fn hs256_tokens_are_rfc7515_hmacs() {
        // The tag is HMAC-SHA-256 over `header.payload` (RFC 7515 section 5.1).
        let secret = b"0123456789abcdef0123456789abcdef".to_vec();
        let issuer = Issuer {
            key: SigningKey::Hs256(secret.clone()),
            kid: None,
            issuer: None,
            audience: None,
        };
        let spec = issuer.valid("bob", "t-2", 5, 5).set("nbf", 7u64);
        let token = issuer.sign(&spec);
        let (header, claims, tag) = parts(&token);
        assert_eq!(header["alg"], "HS256");
        assert!(header.get("kid").is_none());
        assert!(claims.get("iss").is_none() && claims.get("aud").is_none());
        assert_eq!(claims["nbf"], 7);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&secret).expect("key");
        mac.update(&token.as_bytes()[..token.rfind('.').expect("dot")]);
        assert!(mac.verify_slice(&tag).is_ok());
    }

    #[test]
    fn key_files_load_and_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("slim-conf-jwt-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let secret = dir.join("secret");
        std::fs::write(&secret, "s3cret\n").expect("write");
        match SigningKey::load_hs256_secret(&secret) {
            Ok(SigningKey::Hs256(s)) => assert_eq!(s, b"s3cret"),
            other => panic!("{other:?}"),
        }
        std::fs::write(&secret, "\n").expect("write");
        let e = SigningKey::load_hs256_secret(&secret).expect_err("empty");
        assert!(e.to_string().contains("empty") && e.to_string().contains("secret"));
        let pem = dir.join("key.pem");
        {
            use p256::pkcs8::{EncodePrivateKey as _, LineEnding};
            let SigningKey::Es256(k) = SigningKey::generate_es256() else {
                panic!("es256")
            };
            let text = k.to_pkcs8_pem(LineEnding::LF).expect("pem");
            std::fs::write(&pem, text.as_bytes()).expect("write");
        }
        assert_eq!(
            SigningKey::load_es256_pem(&pem).expect("loads").alg(),
            "ES256"
        );
        let e = SigningKey::load_es256_pem(&secret).expect_err("not pem");
        assert!(e.to_string().contains("PKCS#8"), "{e}");
        let e = SigningKey::load_es256_pem(&dir.join("missing")).expect_err("missing");
        assert!(e.to_string().contains("missing"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
