//! The relay's configuration file (`relay.yaml`) and defaults.
//!
//! Every key is optional; an unknown key is an error that names it, so a typo never silently
//! falls back to a default.
//!
//! `auth` (optional) makes the relay require credentials on every `OpenChannel` call, as the real
//! node's `auth: basic` / `auth: jwt` do (see [`crate::auth`]):
//!
//! ```yaml
//! auth: {basic: {username: alice, password: s3cret}}
//! # or
//! auth: {bearer: {token: my-token}}
//! # or a JWT verified with keys (SLIM-REV-001), with an optional revocation list (SLIM-REV-002):
//! auth: {jwt: {keys: [idp.pub.pem], issuer: my-idp, audience: slim}}
//! revocation: {file: revoked.yaml}
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use std::sync::Arc;

use slim_proto::tls::ServerTls;

use crate::auth::AuthConfig;
use crate::listener::Limits;
use crate::mutants::{self, Fault};
use crate::relay::RelayConfig;

/// Default listen address: loopback on SLIM's port (SLIM-TRANS-001).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:46357";

/// The contents of `relay.yaml`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address to listen on (h2c gRPC).
    pub listen: Option<SocketAddr>,
    /// `node_id` announced in negotiation replies.
    pub node_id: Option<String>,
    /// Require the per-link header MAC (default true).
    pub require_header_mac: Option<bool>,
    /// Milliseconds a new stream may stay silent before it is closed (default 5000).
    pub negotiation_timeout_ms: Option<u64>,
    /// Messages queued per connection before further messages to it are dropped (default 1024).
    pub queue_capacity: Option<usize>,
    /// Subscription records one connection may hold (default 10000).
    pub max_subscriptions_per_connection: Option<usize>,
    /// Credentials every `OpenChannel` call must carry (default: none, anyone may connect).
    /// Written as a one-key map, `{basic: {…}}` or `{bearer: {…}}`, rather than a YAML tag.
    #[serde(default, with = "serde_yaml::with::singleton_map")]
    pub auth: Option<AuthConfig>,
    /// A revocation list the relay watches (requires `auth: {jwt: …}`; SLIM-REV-002..006).
    pub revocation: Option<RevocationConfig>,
    /// TLS on the listener (default: none, h2c).
    pub tls: Option<TlsConfig>,
    /// Connections held at once, all peers together (default 10000).
    pub max_connections: Option<usize>,
    /// Connections held at once from one IP address (default 1000).
    pub max_connections_per_peer: Option<usize>,
    /// Milliseconds an HTTP/2 connection may hold no `OpenChannel` stream (default 30000).
    pub idle_connection_timeout_ms: Option<u64>,
    /// Concurrent HTTP/2 streams per connection (default 100).
    pub max_streams_per_connection: Option<u32>,
}

/// `tls` in `relay.yaml`: the listener's certificate and key, and with `client_ca` mutual TLS.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key of the leaf.
    pub key: PathBuf,
    /// PEM CA certificates client certificates must chain to; set, clients must present one.
    pub client_ca: Option<PathBuf>,
}

/// `revocation` in `relay.yaml`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RevocationConfig {
    /// The YAML list (`revoked: [{jti: …}, {sub: …}, {kid: …}]`), re-read when it changes.
    pub file: PathBuf,
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML is malformed or has an unknown key or a wrong type.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// serde_yaml's explanation (it names the offending key and its position).
        message: String,
    },
    /// A value is out of range.
    #[error("config file {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong and what is allowed.
        message: String,
    },
}

impl FileConfig {
    /// Reads and checks a YAML configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, &shown)
    }

    /// Parses YAML text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        // An empty file is a valid, empty configuration.
        let cfg: FileConfig = if text.trim().is_empty() {
            FileConfig::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| ConfigError::Parse {
                path: path.to_string(),
                message: e.to_string(),
            })?
        };
        let invalid = |message: &str| ConfigError::Invalid {
            path: path.to_string(),
            message: message.to_string(),
        };
        if cfg.queue_capacity == Some(0) {
            return Err(invalid("queue_capacity must be at least 1"));
        }
        if cfg.max_subscriptions_per_connection == Some(0) {
            return Err(invalid(
                "max_subscriptions_per_connection must be at least 1",
            ));
        }
        if cfg.negotiation_timeout_ms == Some(0) {
            return Err(invalid("negotiation_timeout_ms must be at least 1"));
        }
        for (key, value) in [
            ("max_connections", cfg.max_connections.map(|v| v as u64)),
            (
                "max_connections_per_peer",
                cfg.max_connections_per_peer.map(|v| v as u64),
            ),
            ("idle_connection_timeout_ms", cfg.idle_connection_timeout_ms),
            (
                "max_streams_per_connection",
                cfg.max_streams_per_connection.map(u64::from),
            ),
        ] {
            if value == Some(0) {
                return Err(invalid(&format!("{key} must be at least 1")));
            }
        }
        if let Some(auth) = &cfg.auth {
            auth.validate().map_err(|e| invalid(&e.to_string()))?;
        }
        cfg.check_revocation().map_err(|e| invalid(&e))?;
        Ok(cfg)
    }

    /// A revocation list names JWT claims, so it needs `auth: {jwt: …}`; says why otherwise.
    pub fn check_revocation(&self) -> Result<(), String> {
        match (&self.revocation, &self.auth) {
            (Some(_), Some(AuthConfig::Jwt { .. })) | (None, _) => Ok(()),
            (Some(_), other) => Err(format!(
                "revocation.file needs auth: {{jwt: …}} (revocations name JWT claims jti, sub or kid), but auth is {}",
                other.as_ref().map_or("not set", |a| a.kind())
            )),
        }
    }
}

/// Everything the server needs, with defaults applied.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Messages queued per connection (SLIM-TRANS-006).
    pub queue_capacity: usize,
    /// The relay core's configuration.
    pub relay: RelayConfig,
    /// Credentials required at call setup; `None` accepts every call (SLIM-AUTH-001).
    pub auth: Option<AuthConfig>,
    /// The revocation list to watch (with JWT auth only; SLIM-REV-002..006).
    pub revocation_file: Option<PathBuf>,
    /// TLS on the listener; `None` is h2c.
    pub tls: Option<ServerTls>,
    /// Connection limits and timeouts enforced by the listener.
    pub limits: Limits,
    /// Test hook, called with every inbound frame before the core sees it (tests inject a panic
    /// with it to prove panics are contained); `None` in every real configuration.
    #[doc(hidden)]
    pub frame_hook: Option<FrameHook>,
}

/// A function called with every inbound frame (see [`ServerConfig::frame_hook`]).
#[derive(Clone)]
pub struct FrameHook(pub Arc<FrameFn>);

/// The function a [`FrameHook`] holds.
pub type FrameFn = dyn Fn(&[u8]) + Send + Sync;

impl std::fmt::Debug for FrameHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameHook")
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        FileConfig::default().into_server_config()
    }
}

impl FileConfig {
    /// Applies defaults to every absent key.
    pub fn into_server_config(self) -> ServerConfig {
        let defaults = RelayConfig::default();
        let default_limits = Limits::default();
        ServerConfig {
            listen: self.listen.unwrap_or_else(|| {
                DEFAULT_LISTEN
                    .parse()
                    .unwrap_or_else(|_| unreachable!("constant address"))
            }),
            queue_capacity: if mutants::on(Fault::UnboundedLinkQueue) {
                mutants::UNBOUNDED_QUEUE
            } else {
                self.queue_capacity.unwrap_or(1024)
            },
            relay: RelayConfig {
                require_header_mac: self
                    .require_header_mac
                    .unwrap_or(defaults.require_header_mac),
                node_id: self.node_id.unwrap_or(defaults.node_id),
                negotiation_timeout: self
                    .negotiation_timeout_ms
                    .map_or(defaults.negotiation_timeout, Duration::from_millis),
                max_subscriptions_per_connection: self
                    .max_subscriptions_per_connection
                    .unwrap_or(defaults.max_subscriptions_per_connection),
            },
            auth: self.auth,
            revocation_file: self.revocation.map(|r| r.file),
            tls: self.tls.map(|t| ServerTls {
                cert: t.cert,
                key: t.key,
                client_ca: t.client_ca,
            }),
            limits: Limits {
                max_connections: self
                    .max_connections
                    .unwrap_or(default_limits.max_connections),
                max_connections_per_peer: self
                    .max_connections_per_peer
                    .unwrap_or(default_limits.max_connections_per_peer),
                idle_timeout: self
                    .idle_connection_timeout_ms
                    .map_or(default_limits.idle_timeout, Duration::from_millis),
                max_streams_per_connection: self
                    .max_streams_per_connection
                    .unwrap_or(default_limits.max_streams_per_connection),
                handshake_timeout: self
                    .negotiation_timeout_ms
                    .map_or(defaults.negotiation_timeout, Duration::from_millis),
            },
            frame_hook: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named() {
        let err = FileConfig::parse("listen: 127.0.0.1:1\nrequire_mac: false\n", "relay.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("relay.yaml"), "{err}");
        assert!(err.contains("unknown field `require_mac`"), "{err}");
        assert!(
            err.contains("require_header_mac"),
            "lists valid keys: {err}"
        );
    }

    #[test]
    fn values_are_applied() {
        let cfg = FileConfig::parse(
            "listen: 127.0.0.1:9\nrequire_header_mac: false\nnode_id: n1\nnegotiation_timeout_ms: 250\nqueue_capacity: 8\n",
            "r.yaml",
        )
        .expect("valid")
        .into_server_config();
        assert_eq!(cfg.listen.port(), 9);
        assert!(!cfg.relay.require_header_mac);
        assert_eq!(cfg.relay.node_id, "n1");
        assert_eq!(cfg.relay.negotiation_timeout, Duration::from_millis(250));
        assert_eq!(cfg.queue_capacity, 8);
    }

    #[test]
    fn defaults_match_the_real_node() {
        let cfg = FileConfig::parse("", "r.yaml")
            .expect("empty is valid")
            .into_server_config();
        assert_eq!(cfg.listen.to_string(), DEFAULT_LISTEN);
        assert!(cfg.relay.require_header_mac);
        assert_eq!(cfg.relay.negotiation_timeout, Duration::from_secs(5));
    }

    #[test]
    fn bad_values_are_explained() {
        let err = FileConfig::parse("queue_capacity: 0", "r.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("queue_capacity must be at least 1"), "{err}");
        let err = FileConfig::parse("listen: nowhere", "r.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen"), "{err}");
    }

    #[test]
    fn auth_is_off_by_default() {
        let cfg = FileConfig::parse("", "r.yaml").expect("valid");
        assert_eq!(cfg.into_server_config().auth, None);
    }

    #[test]
    fn auth_basic_and_bearer_are_read() {
        let cfg = FileConfig::parse("auth: {basic: {username: u, password: p}}", "r.yaml")
            .expect("valid")
            .into_server_config();
        assert_eq!(
            cfg.auth,
            Some(AuthConfig::Basic {
                username: "u".into(),
                password: "p".into()
            })
        );
        let cfg = FileConfig::parse("auth:\n  bearer:\n    token: t0k\n", "r.yaml")
            .expect("valid")
            .into_server_config();
        assert_eq!(
            cfg.auth,
            Some(AuthConfig::Bearer {
                token: "t0k".into()
            })
        );
    }

    #[test]
    fn auth_mistakes_are_named() {
        let err = |text: &str| {
            FileConfig::parse(text, "r.yaml")
                .expect_err(text)
                .to_string()
        };
        let e = err("auth: {basic: {username: u}}");
        assert!(e.contains("missing field `password`"), "{e}");
        let e = err("auth: {basic: {username: u, pasword: p}}");
        assert!(e.contains("unknown field `pasword`"), "{e}");
        let e = err("auth: {basci: {username: u, password: p}}");
        assert!(e.contains("unknown variant `basci`"), "{e}");
        assert!(
            e.contains("basic") && e.contains("bearer"),
            "lists the schemes: {e}"
        );
        let e = err("auth: {bearer: {token: t, extra: 1}}");
        assert!(e.contains("unknown field `extra`"), "{e}");
        let e = err("auth: {basic: {username: '', password: p}}");
        assert!(e.contains("auth.basic.username must not be empty"), "{e}");
        let e = err("auth: {bearer: {token: ''}}");
        assert!(e.contains("auth.bearer.token must not be empty"), "{e}");
        let e = err("auth: {basic: {username: u, password: secret-pw}, bearer: {token: t}}");
        assert!(!e.contains("secret-pw"), "{e}");
    }

    #[test]
    fn jwt_auth_and_revocation_are_read() {
        let cfg = FileConfig::parse(
            "auth: {jwt: {keys: [a.pem], issuer: idp, audience: slim}}\nrevocation: {file: rev.yaml}\n",
            "r.yaml",
        )
        .expect("valid")
        .into_server_config();
        assert!(
            matches!(&cfg.auth, Some(AuthConfig::Jwt { keys, issuer: Some(i), .. }) if keys.len() == 1 && i == "idp")
        );
        assert_eq!(cfg.revocation_file, Some(PathBuf::from("rev.yaml")));
        let err = |text: &str| {
            FileConfig::parse(text, "r.yaml")
                .expect_err(text)
                .to_string()
        };
        let e = err("revocation: {file: rev.yaml}");
        assert!(e.contains("revocation.file needs auth: {jwt"), "{e}");
        let e = err("auth: {bearer: {token: t}}\nrevocation: {file: rev.yaml}");
        assert!(e.contains("but auth is bearer"), "{e}");
        let e = err("auth: {jwt: {}}");
        assert!(
            e.contains("at least one of keys, jwks, hs256_secret_file"),
            "{e}"
        );
        let e = err("auth: {jwt: {keys: [a], isuer: x}}");
        assert!(e.contains("unknown field `isuer`"), "{e}");
        let e = err("auth: {jwt: {keys: [a]}}\nrevocation: {path: x}");
        assert!(e.contains("unknown field `path`"), "{e}");
    }

    #[test]
    fn debug_output_hides_secrets() {
        let cfg = FileConfig::parse("auth: {basic: {username: u, password: hunter2}}", "r.yaml")
            .expect("valid")
            .into_server_config();
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
