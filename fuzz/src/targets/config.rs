//! Target `config`: `relay.yaml` parsing and validation (`reference/src/config.rs`) and the
//! revocation list file (`reference/src/revocation.rs`), the two files an operator gives the
//! relay.
//!
//! The first input byte picks the file (even: `relay.yaml`, odd: the revocation list); the rest
//! is its text.

use slim_reference::auth::AuthConfig;
use slim_reference::config::{ConfigError, FileConfig};
use slim_reference::revocation::RevocationList;

/// Parses one configuration or revocation file.
///
/// Catches: panics in YAML parsing and validation, and:
/// - a configuration accepted with a value its validation forbids (a zero queue capacity,
///   subscription limit or negotiation timeout; invalid `auth`; a revocation list without JWT
///   auth), or whose defaults give an unusable server configuration;
/// - parsing that is not deterministic (the same text parses to another configuration);
/// - an error that does not name the file it is about.
pub fn config_body(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return; // the relay reads the file as UTF-8 first
    };
    if which % 2 == 0 {
        relay_yaml(text);
    } else {
        revocation_list(text);
    }
}

fn relay_yaml(text: &str) {
    match FileConfig::parse(text, "relay.yaml") {
        Ok(cfg) => {
            assert_ne!(cfg.queue_capacity, Some(0), "queue_capacity 0 accepted");
            assert_ne!(
                cfg.max_subscriptions_per_connection,
                Some(0),
                "max_subscriptions_per_connection 0 accepted"
            );
            assert_ne!(
                cfg.negotiation_timeout_ms,
                Some(0),
                "negotiation_timeout_ms 0 accepted"
            );
            if let Some(auth) = &cfg.auth {
                assert!(auth.validate().is_ok(), "an invalid auth section accepted");
                let _ = format!("{auth:?}");
            }
            if cfg.revocation.is_some() {
                assert!(
                    matches!(cfg.auth, Some(AuthConfig::Jwt { .. })),
                    "a revocation list accepted without JWT auth"
                );
            }
            let again = FileConfig::parse(text, "relay.yaml");
            assert_eq!(
                again.ok().as_ref(),
                Some(&cfg),
                "the same text parsed differently"
            );
            let server = cfg.into_server_config();
            assert!(server.queue_capacity >= 1);
            assert!(server.relay.max_subscriptions_per_connection >= 1);
            assert!(!server.relay.negotiation_timeout.is_zero());
        }
        Err(e) => {
            let path = match &e {
                ConfigError::Read { path, .. }
                | ConfigError::Parse { path, .. }
                | ConfigError::Invalid { path, .. } => path,
            };
            assert_eq!(path, "relay.yaml");
            assert!(
                e.to_string().contains("relay.yaml"),
                "error without its file: {e}"
            );
        }
    }
}

fn revocation_list(text: &str) {
    match RevocationList::parse(text, "revoked.yaml") {
        Ok(list) => {
            let _ = (list.len(), list.is_empty());
            let again = RevocationList::parse(text, "revoked.yaml");
            assert_eq!(
                again.ok().as_ref(),
                Some(&list),
                "the same text parsed differently"
            );
        }
        Err(e) => assert!(
            e.to_string().contains("revoked.yaml"),
            "error without its file: {e}"
        ),
    }
}
