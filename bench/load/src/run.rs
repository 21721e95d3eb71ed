//! One run: connect the clients, publish, count what arrives, stop, and compute the metrics,
//! over the transport the target's URL names ([`crate::transport`]), every one driven by
//! [`crate::harness::Harness`].

use crate::error::BenchError;
pub use crate::harness::{check_params, RunConfig, WINDOW_STALL};
use crate::result::Metrics;
use crate::transport::Transport;

/// Runs one benchmark against `cfg.url` over the transport its scheme names.
pub async fn run(cfg: &RunConfig) -> Result<Metrics, BenchError> {
    match Transport::of_url(&cfg.url) {
        Transport::Nats => crate::nats::run(cfg).await,
        Transport::Jetstream => crate::jetstream::run(cfg).await,
        Transport::Mqtt => crate::mqtt::run(cfg).await,
        Transport::Amqp => crate::amqp::run(cfg).await,
        Transport::Kafka => crate::kafka::run(cfg).await,
        Transport::Slim => crate::slim::run(cfg).await,
    }
}
