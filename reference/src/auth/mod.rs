//! HTTP-layer authentication of `OpenChannel` calls: the credential check, sans-IO.
//!
//! The real SLIM node can require credentials on its gRPC server (`auth: basic` or `auth: jwt`, a
//! tower layer in front of every call). A client without valid credentials is refused when the
//! call is set up, with gRPC `UNAUTHENTICATED`, before the link negotiation. The relay offers the
//! same two schemes, simplified for a reference implementation:
//!
//! - **Basic** (RFC 7617): `authorization: Basic base64(username:password)`.
//! - **Bearer** (RFC 6750): `authorization: Bearer <token>`, one static token. (The real node
//!   verifies a JWT here; the relay only compares the token, which is enough to exercise clients'
//!   header handling.)
//!
//! This module only decides whether a header value is acceptable; it has no sockets and no clock.
//! The tonic shell ([`crate::server`]) reads the header and turns an [`AuthError`] into
//! `UNAUTHENTICATED` (SLIM-AUTH-001, SLIM-AUTH-002).
//!
//! Secrets never appear in error messages or in `Debug` output, and they are compared in constant
//! time (for equal lengths), so a client cannot learn them byte by byte from response times.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::mutants::{self, Fault};
use crate::revocation::{Reason, RevocationList};

pub mod jwt;

pub use jwt::{JwtError, JwtVerifier, KeyError, Principal};

/// The credentials a relay requires (`auth` in `relay.yaml`, `--auth-basic`, `--auth-bearer`).
///
/// In YAML: `auth: {basic: {username: U, password: P}}` or `auth: {bearer: {token: T}}`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum AuthConfig {
    /// HTTP Basic (RFC 7617).
    Basic {
        /// The user-id; must not be empty and must not contain `:`.
        username: String,
        /// The password; may be empty.
        password: String,
    },
    /// HTTP Bearer (RFC 6750) with one static token.
    Bearer {
        /// The token; must not be empty and must be visible ASCII (it travels in a header).
        token: String,
    },
    /// HTTP Bearer with a JWT the node verifies (SLIM-REV-001), as the real node's `auth: jwt`.
    /// At least one key source is required.
    Jwt {
        /// SPKI PEM P-256 public keys (ES256).
        #[serde(default)]
        keys: Vec<PathBuf>,
        /// A JWKS file: `kty: EC, crv: P-256` keys (ES256) and `kty: oct` keys (HS256).
        #[serde(default)]
        jwks: Option<PathBuf>,
        /// A file whose bytes (one trailing newline removed) are an HS256 secret.
        #[serde(default)]
        hs256_secret_file: Option<PathBuf>,
        /// Required `iss`, if set.
        #[serde(default)]
        issuer: Option<String>,
        /// Required `aud` (or one of them), if set.
        #[serde(default)]
        audience: Option<String>,
    },
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print a secret, even in a debug dump of the whole configuration.
        match self {
            AuthConfig::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            AuthConfig::Bearer { .. } => f
                .debug_struct("Bearer")
                .field("token", &"<redacted>")
                .finish(),
            AuthConfig::Jwt {
                keys,
                jwks,
                hs256_secret_file,
                issuer,
                audience,
            } => f
                .debug_struct("Jwt")
                .field("keys", keys)
                .field("jwks", jwks)
                .field("hs256_secret_file", hs256_secret_file)
                .field("issuer", issuer)
                .field("audience", audience)
                .finish(),
        }
    }
}

/// An authentication scheme, as written in the `authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `Basic` (RFC 7617).
    Basic,
    /// `Bearer` (RFC 6750).
    Bearer,
}

impl Scheme {
    /// The scheme's name as it appears in the header.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Basic => "Basic",
            Scheme::Bearer => "Bearer",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AuthConfig {
    /// The scheme a client must use.
    pub fn scheme(&self) -> Scheme {
        match self {
            AuthConfig::Basic { .. } => Scheme::Basic,
            AuthConfig::Bearer { .. } | AuthConfig::Jwt { .. } => Scheme::Bearer,
        }
    }

    /// A short name for logs: `basic`, `bearer` or `jwt`.
    pub fn kind(&self) -> &'static str {
        match self {
            AuthConfig::Basic { .. } => "basic",
            AuthConfig::Bearer { .. } => "bearer",
            AuthConfig::Jwt { .. } => "jwt",
        }
    }

    /// Checks values that serde cannot: says what is wrong, naming the key (`auth.basic.username`
    /// …) but never the secret.
    pub fn validate(&self) -> Result<(), AuthConfigError> {
        match self {
            AuthConfig::Basic { username, .. } => {
                if username.is_empty() {
                    return Err(AuthConfigError::EmptyUsername);
                }
                // RFC 7617 section 2: "a user-id containing a colon character is invalid".
                if username.contains(':') {
                    return Err(AuthConfigError::ColonInUsername);
                }
                Ok(())
            }
            AuthConfig::Bearer { token } => {
                if token.is_empty() {
                    return Err(AuthConfigError::EmptyToken);
                }
                if !token.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(AuthConfigError::TokenNotVisibleAscii);
                }
                Ok(())
            }
            AuthConfig::Jwt {
                keys,
                jwks,
                hs256_secret_file,
                issuer,
                audience,
            } => {
                if keys.is_empty() && jwks.is_none() && hs256_secret_file.is_none() {
                    return Err(AuthConfigError::NoJwtKeys);
                }
                if issuer.as_deref() == Some("") || audience.as_deref() == Some("") {
                    return Err(AuthConfigError::EmptyIssuerOrAudience);
                }
                Ok(())
            }
        }
    }
}

/// A JWT key source that could not be loaded: names the file and the defect.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file's contents are not a usable key.
    #[error("{path}: {source}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong.
        source: KeyError,
    },
}

/// What checks `authorization` headers: the configured static credentials, or a loaded JWT
/// verifier (built once at start by [`Authenticator::load`]).
#[derive(Debug, Clone)]
pub enum Authenticator {
    /// Basic or static Bearer ([`check`]).
    Static(AuthConfig),
    /// JWT bearer tokens (SLIM-REV-001).
    Jwt(JwtVerifier),
}

impl Authenticator {
    /// Reads the key files an [`AuthConfig::Jwt`] names; other schemes need no files.
    pub fn load(config: &AuthConfig) -> Result<Self, LoadError> {
        let AuthConfig::Jwt {
            keys,
            jwks,
            hs256_secret_file,
            issuer,
            audience,
        } = config
        else {
            return Ok(Authenticator::Static(config.clone()));
        };
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| LoadError::Read {
                path: path.display().to_string(),
                source,
            })
        };
        let key_err = |path: &Path| {
            let path = path.display().to_string();
            move |source| LoadError::Key { path, source }
        };
        let mut verifier = JwtVerifier::new(issuer.clone(), audience.clone());
        for path in keys {
            let text = String::from_utf8_lossy(&read(path)?).into_owned();
            verifier.add_public_pem(&text).map_err(key_err(path))?;
        }
        if let Some(path) = jwks {
            let text = String::from_utf8_lossy(&read(path)?).into_owned();
            verifier.add_jwks(&text).map_err(key_err(path))?;
        }
        if let Some(path) = hs256_secret_file {
            let mut secret = read(path)?;
            if secret.last() == Some(&b'\n') {
                secret.pop();
            }
            verifier.add_hs256_secret(&secret).map_err(key_err(path))?;
        }
        Ok(Authenticator::Jwt(verifier))
    }

    /// The scheme clients must use.
    pub fn scheme(&self) -> Scheme {
        match self {
            Authenticator::Static(cfg) => cfg.scheme(),
            Authenticator::Jwt(_) => Scheme::Bearer,
        }
    }

    /// Checks an `authorization` header value at `now_unix`, then the revocation list
    /// (SLIM-REV-003). Returns the token's [`Principal`] for a JWT, `None` for static
    /// credentials.
    pub fn authenticate(
        &self,
        header: Option<&[u8]>,
        now_unix: u64,
        revoked: &RevocationList,
    ) -> Result<Option<Principal>, AuthError> {
        let verifier = match self {
            Authenticator::Static(cfg) => return check(cfg, header).map(|()| None),
            Authenticator::Jwt(v) => v,
        };
        let expected = Scheme::Bearer;
        let header = header.ok_or(AuthError::MissingHeader { expected })?;
        let (name, credentials) = split_credentials(header);
        if !name.eq_ignore_ascii_case(b"Bearer") {
            return Err(AuthError::WrongScheme { expected });
        }
        if credentials.is_empty() {
            return Err(AuthError::MissingCredentials { expected });
        }
        let token = std::str::from_utf8(credentials)
            .map_err(|_| AuthError::Jwt(JwtError::Malformed("token is not UTF-8")))?;
        let principal = verifier.verify(token, now_unix).map_err(AuthError::Jwt)?;
        // SLIM-REV-003: a revoked credential is refused at call setup.
        let revocation = revoked.is_revoked(&principal);
        if let Some(reason) =
            revocation.filter(|_| !mutants::on(Fault::RevokedTokenAcceptedAtSetup))
        {
            return Err(AuthError::Revoked(reason));
        }
        Ok(Some(principal))
    }
}

/// Why an [`AuthConfig`] cannot be used; the text names the configuration key, never the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthConfigError {
    /// An empty Basic user name.
    #[error("auth.basic.username must not be empty")]
    EmptyUsername,
    /// A Basic user name with `:` (RFC 7617 section 2).
    #[error("auth.basic.username must not contain ':' (RFC 7617)")]
    ColonInUsername,
    /// An empty Bearer token.
    #[error("auth.bearer.token must not be empty")]
    EmptyToken,
    /// A Bearer token that cannot travel in an HTTP header.
    #[error(
        "auth.bearer.token must be visible ASCII without spaces (it is sent in an HTTP header)"
    )]
    TokenNotVisibleAscii,
    /// `auth.jwt` names no key.
    #[error("auth.jwt needs at least one of keys, jwks, hs256_secret_file")]
    NoJwtKeys,
    /// An empty `auth.jwt.issuer` or `auth.jwt.audience`.
    #[error("auth.jwt.issuer and auth.jwt.audience must not be empty when given")]
    EmptyIssuerOrAudience,
}

/// Why a call was refused. The `Display` text is sent to the client as the `UNAUTHENTICATED`
/// status message, so it says what is wrong and never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `authorization` header at all.
    #[error("missing authorization header (this node requires {expected} credentials)")]
    MissingHeader {
        /// The scheme the node requires.
        expected: Scheme,
    },
    /// The header uses another scheme (or is not `scheme credentials` at all).
    #[error("expected {expected} scheme in the authorization header")]
    WrongScheme {
        /// The scheme the node requires.
        expected: Scheme,
    },
    /// The header names the right scheme but carries nothing after it.
    #[error("authorization header has the {expected} scheme but no credentials")]
    MissingCredentials {
        /// The scheme the node requires.
        expected: Scheme,
    },
    /// The credentials do not match.
    #[error("wrong credentials")]
    WrongCredentials,
    /// The JWT failed a check (SLIM-REV-001); the text names which.
    #[error("invalid JWT: {0}")]
    Jwt(JwtError),
    /// The JWT is valid but on the revocation list (SLIM-REV-003).
    #[error("credential revoked: {0}")]
    Revoked(Reason),
}

/// Checks the value of the `authorization` request header (`None` when absent) against the
/// configured credentials (SLIM-AUTH-001). The scheme name is matched case-insensitively (RFC 9110
/// section 11.1); the credentials exactly, in constant time.
pub fn check(expected: &AuthConfig, header: Option<&[u8]>) -> Result<(), AuthError> {
    let scheme = expected.scheme();
    if header.is_none() && mutants::on(Fault::AuthMissingHeaderAccepted) {
        return Ok(());
    }
    let header = header.ok_or(AuthError::MissingHeader { expected: scheme })?;
    let (name, credentials) = split_credentials(header);
    if !name.eq_ignore_ascii_case(scheme.as_str().as_bytes())
        && !mutants::on(Fault::AuthAnySchemeAccepted)
    {
        return Err(AuthError::WrongScheme { expected: scheme });
    }
    if credentials.is_empty() {
        return Err(AuthError::MissingCredentials { expected: scheme });
    }
    let ok = match expected {
        AuthConfig::Basic { username, password } => {
            let user_pass = format!("{username}:{password}");
            constant_time_eq(credentials, base64_encode(user_pass.as_bytes()).as_bytes())
        }
        AuthConfig::Bearer { token } => constant_time_eq(credentials, token.as_bytes()),
        // A JWT needs a loaded verifier: see [`Authenticator`].
        AuthConfig::Jwt { .. } => false,
    };
    if ok {
        Ok(())
    } else {
        Err(AuthError::WrongCredentials)
    }
}

/// Splits `scheme 1*SP credentials` (RFC 9110 section 11.4). Surrounding spaces and tabs are
/// ignored.
fn split_credentials(header: &[u8]) -> (&[u8], &[u8]) {
    let header = header.trim_ascii();
    match header.iter().position(|&b| b == b' ') {
        Some(i) => (&header[..i], header[i..].trim_ascii()),
        None => (header, &[]),
    }
}

/// `a == b` in time that depends only on the lengths, not on where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if let Some(eq) = mutants::loose_secret_eq(a, b) {
        return eq; // faults auth-longer/shorter-credentials-accepted
    }
    if a.len() != b.len() {
        // Only the length leaks, which a secret of a known format reveals anyway.
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keep the optimiser from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

/// Standard base64 with padding (RFC 4648 section 4), as RFC 7617 requires.
fn base64_encode(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic() -> AuthConfig {
        AuthConfig::Basic {
            username: "Aladdin".into(),
            password: "open sesame".into(),
        }
    }

    fn bearer() -> AuthConfig {
        AuthConfig::Bearer {
            token: "mF_9.B5f-4.1JqM".into(),
        }
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(input.as_bytes()), want, "{input:?}");
        }
    }

    #[test]
    fn basic_accepts_the_rfc_7617_example() {
        // RFC 7617 section 2.
        let header = b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==";
        assert_eq!(check(&basic(), Some(header)), Ok(()));
        assert_eq!(
            check(&basic(), Some(b"basic  QWxhZGRpbjpvcGVuIHNlc2FtZQ== ")),
            Ok(()),
            "scheme is case-insensitive, extra spaces are ignored"
        );
    }

    #[test]
    fn basic_refusals_say_why() {
        let missing = check(&basic(), None).unwrap_err();
        assert_eq!(
            missing,
            AuthError::MissingHeader {
                expected: Scheme::Basic
            }
        );
        assert_eq!(
            missing.to_string(),
            "missing authorization header (this node requires Basic credentials)"
        );
        assert_eq!(
            check(&basic(), Some(b"Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ==")),
            Err(AuthError::WrongScheme {
                expected: Scheme::Basic
            })
        );
        assert_eq!(
            check(&basic(), Some(b"Basic")),
            Err(AuthError::MissingCredentials {
                expected: Scheme::Basic
            })
        );
        // base64("Aladdin:open sesamE")
        assert_eq!(
            check(&basic(), Some(b"Basic QWxhZGRpbjpvcGVuIHNlc2FtRQ==")),
            Err(AuthError::WrongCredentials)
        );
        assert_eq!(
            check(&basic(), Some(b"Basic Aladdin:open sesame")),
            Err(AuthError::WrongCredentials),
            "credentials must be base64-encoded"
        );
        assert_eq!(
            check(&basic(), Some(b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ")),
            Err(AuthError::WrongCredentials),
            "padding is required"
        );
    }

    #[test]
    fn bearer_accepts_the_token_only() {
        assert_eq!(check(&bearer(), Some(b"Bearer mF_9.B5f-4.1JqM")), Ok(()));
        assert_eq!(check(&bearer(), Some(b"BEARER mF_9.B5f-4.1JqM")), Ok(()));
        assert_eq!(
            check(&bearer(), None),
            Err(AuthError::MissingHeader {
                expected: Scheme::Bearer
            })
        );
        assert_eq!(
            check(&bearer(), Some(b"mF_9.B5f-4.1JqM")),
            Err(AuthError::WrongScheme {
                expected: Scheme::Bearer
            }),
            "a bare token is not `Bearer <token>`"
        );
        assert_eq!(
            check(&bearer(), Some(b"Bearer mF_9.B5f-4.1JqN")),
            Err(AuthError::WrongCredentials)
        );
        assert_eq!(
            check(&bearer(), Some(b"Bearer mF_9.B5f-4.1Jq")),
            Err(AuthError::WrongCredentials)
        );
        assert_eq!(
            check(&bearer(), Some(b"Bearer \xff\xfe")),
            Err(AuthError::WrongCredentials),
            "bytes that are not UTF-8 are just wrong"
        );
    }

    #[test]
    fn messages_and_debug_never_show_secrets() {
        for header in [
            None,
            Some(&b"Basic"[..]),
            Some(b"Bearer x"),
            Some(b"Basic eA=="),
        ] {
            for cfg in [basic(), bearer()] {
                if let Err(e) = check(&cfg, header) {
                    let text = e.to_string();
                    assert!(!text.contains("open sesame"), "{text}");
                    assert!(!text.contains("QWxhZGRpbjpvcGVuIHNlc2FtZQ"), "{text}");
                    assert!(!text.contains("mF_9"), "{text}");
                }
            }
        }
        let shown = format!("{:?} {:?}", basic(), bearer());
        assert!(shown.contains("Aladdin"), "{shown}");
        assert!(!shown.contains("open sesame"), "{shown}");
        assert!(!shown.contains("mF_9"), "{shown}");
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn validation_names_the_key() {
        let empty_user = AuthConfig::Basic {
            username: String::new(),
            password: "p".into(),
        };
        assert_eq!(
            empty_user.validate().unwrap_err().to_string(),
            "auth.basic.username must not be empty"
        );
        let colon = AuthConfig::Basic {
            username: "a:b".into(),
            password: "p".into(),
        };
        assert!(colon.validate().unwrap_err().to_string().contains("':'"));
        let empty_password = AuthConfig::Basic {
            username: "u".into(),
            password: String::new(),
        };
        assert_eq!(empty_password.validate(), Ok(()), "RFC 7617 allows it");
        let empty_token = AuthConfig::Bearer {
            token: String::new(),
        };
        assert_eq!(
            empty_token.validate().unwrap_err().to_string(),
            "auth.bearer.token must not be empty"
        );
        let spaced = AuthConfig::Bearer {
            token: "a b".into(),
        };
        assert!(spaced
            .validate()
            .unwrap_err()
            .to_string()
            .contains("visible ASCII"));
        assert_eq!(bearer().validate(), Ok(()));
    }
}
