//! Which protocol a target speaks, as recorded in every result.

use serde::{Deserialize, Serialize};

/// How a target is spoken to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// SLIM over gRPC (`http://…`): a SLIM node, `slim-relay`, the null relay.
    #[default]
    Slim,
    /// A NATS server (`nats://…`) through async-nats.
    Nats,
}

impl Transport {
    /// `Nats` for a `nats://` URL (any case), `Slim` for everything else.
    pub fn of_url(url: &str) -> Transport {
        match url.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case("nats://") => Transport::Nats,
            _ => Transport::Slim,
        }
    }

    /// The lowercase name used in JSON and tables.
    pub fn as_str(&self) -> &'static str {
        match self {
            Transport::Slim => "slim",
            Transport::Nats => "nats",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_from_url() {
        assert_eq!(Transport::of_url("nats://127.0.0.1:4222"), Transport::Nats);
        assert_eq!(Transport::of_url("NATS://host:1"), Transport::Nats);
        assert_eq!(Transport::of_url("http://127.0.0.1:46357"), Transport::Slim);
        assert_eq!(Transport::of_url("embedded"), Transport::Slim);
        assert_eq!(Transport::of_url("nats:/x"), Transport::Slim);
        assert_eq!(Transport::Nats.as_str(), "nats");
        assert_eq!(
            serde_json::to_string(&Transport::Slim).ok().as_deref(),
            Some("\"slim\"")
        );
    }
}
