//! Which protocol a target speaks, as recorded in every result, and what its URL says.
//!
//! | URL | transport | client crate |
//! |---|---|---|
//! | `http://…`, `https://…`, `embedded` | SLIM over gRPC | this workspace's |
//! | `nats://host:port` | NATS core | async-nats |
//! | `jetstream://host:port` | NATS JetStream (a NATS server started with `-js`) | async-nats |
//! | `mqtt://host:port?qos=0\|1\|2` | MQTT 3.1.1 | rumqttc |
//! | `amqp://host:port[?confirm=true]` | AMQP 0.9.1 | amqprs |
//! | `kafka://host:port` | the Kafka protocol | rskafka |
//!
//! Options ride in the URL's query so that a result file's `url` alone says how a target was
//! driven.

use serde::{Deserialize, Serialize};

use crate::error::BenchError;

/// How a target is spoken to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// SLIM over gRPC (`http://…`): a SLIM node, `slim-relay`, the null relay.
    #[default]
    Slim,
    /// A NATS server (`nats://…`) through async-nats.
    Nats,
    /// NATS JetStream (`jetstream://…`): publishes acknowledged by a stream, consumers that ack.
    Jetstream,
    /// An MQTT broker (`mqtt://…?qos=N`) through rumqttc.
    Mqtt,
    /// An AMQP 0.9.1 broker (`amqp://…`) through amqprs.
    Amqp,
    /// A broker speaking the Kafka protocol (`kafka://…`) through rskafka.
    Kafka,
}

impl Transport {
    /// The transport a URL's scheme names (any case); `Slim` for anything else.
    pub fn of_url(url: &str) -> Transport {
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("nats") => Transport::Nats,
            Some("jetstream") => Transport::Jetstream,
            Some("mqtt") => Transport::Mqtt,
            Some("amqp") => Transport::Amqp,
            Some("kafka") => Transport::Kafka,
            _ => Transport::Slim,
        }
    }

    /// The lowercase name used in JSON and tables.
    pub fn as_str(&self) -> &'static str {
        match self {
            Transport::Slim => "slim",
            Transport::Nats => "nats",
            Transport::Jetstream => "jetstream",
            Transport::Mqtt => "mqtt",
            Transport::Amqp => "amqp",
            Transport::Kafka => "kafka",
        }
    }
}

/// A broker URL taken apart: `scheme://host:port[?key=value&…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    query: Vec<(String, String)>,
}

impl BrokerUrl {
    /// Parses `url`; every broker URL needs an explicit port.
    pub fn parse(url: &str) -> Result<Self, BenchError> {
        let bad = |why: &str| {
            BenchError::Usage(format!(
                "{url}: {why} (expected scheme://host:port[?key=value&...])"
            ))
        };
        let (_, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        let authority = authority.trim_end_matches('/');
        let (host, port) = authority.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let port = port
            .parse::<u16>()
            .map_err(|_| bad("the port is not a number"))?;
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let mut pairs = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            pairs.push((k.to_ascii_lowercase(), v.to_string()));
        }
        Ok(Self {
            host: host.to_string(),
            port,
            query: pairs,
        })
    }

    /// `host:port`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The value of query parameter `key`, if present.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean query parameter: absent is `false`; `true`/`1`/`yes` or `false`/`0`/`no`.
    pub fn flag(&self, key: &str) -> Result<bool, BenchError> {
        match self.param(key).map(str::to_ascii_lowercase).as_deref() {
            None | Some("false" | "0" | "no") => Ok(false),
            Some("true" | "1" | "yes" | "") => Ok(true),
            Some(v) => Err(BenchError::Usage(format!(
                "?{key}={v}: expected true or false"
            ))),
        }
    }

    /// Query parameters other than `known`, so that a typo is an error, not a silent default.
    pub fn check_params(&self, known: &[&str]) -> Result<(), BenchError> {
        match self
            .query
            .iter()
            .find(|(k, _)| !known.contains(&k.as_str()))
        {
            Some((k, _)) => Err(BenchError::Usage(format!(
                "unknown URL parameter ?{k}= (this transport knows: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))),
            None => Ok(()),
        }
    }
}

/// The TCP port a target URL names, for socket statistics; `None` for `embedded` or a URL
/// without one.
pub fn port_of(url: &str) -> Option<u16> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?']).next()?;
    authority.rsplit_once(':')?.1.parse().ok()
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
        assert_eq!(Transport::of_url("jetstream://h:1"), Transport::Jetstream);
        assert_eq!(Transport::of_url("mqtt://h:1?qos=2"), Transport::Mqtt);
        assert_eq!(Transport::of_url("amqp://h:1"), Transport::Amqp);
        assert_eq!(Transport::of_url("kafka://h:1"), Transport::Kafka);
        assert_eq!(Transport::Nats.as_str(), "nats");
        assert_eq!(
            serde_json::to_string(&Transport::Slim).ok().as_deref(),
            Some("\"slim\"")
        );
        assert_eq!(
            serde_json::to_string(&Transport::Jetstream).ok().as_deref(),
            Some("\"jetstream\"")
        );
    }

    #[test]
    fn broker_urls() {
        let u = BrokerUrl::parse("mqtt://127.0.0.1:18830?qos=1&x=").expect("parses");
        assert_eq!(u.address(), "127.0.0.1:18830");
        assert_eq!(u.param("qos"), Some("1"));
        assert!(u.check_params(&["qos"]).is_err());
        assert!(u.flag("x").expect("flag"));
        assert!(!u.flag("confirm").expect("absent flag"));
        assert!(BrokerUrl::parse("amqp://h:1?confirm=maybe")
            .expect("parses")
            .flag("confirm")
            .is_err());
        assert!(BrokerUrl::parse("amqp://127.0.0.1").is_err());
        assert!(BrokerUrl::parse("amqp://:5672").is_err());
        assert!(BrokerUrl::parse("127.0.0.1:5672").is_err());
        assert_eq!(port_of("http://127.0.0.1:46357"), Some(46357));
        assert_eq!(port_of("kafka://127.0.0.1:19092/"), Some(19092));
        assert_eq!(port_of("mqtt://h:18830?qos=0"), Some(18830));
        assert_eq!(port_of("embedded"), None);
    }
}
