//! One run: connect the clients, publish, count what arrives, stop, and compute the metrics,
//! over the transport the target's URL names ([`crate::slim`] or [`crate::nats`], both driven by
//! [`crate::harness::Harness`]).

use crate::error::BenchError;
pub use crate::harness::{check_params, RunConfig, WINDOW_STALL};
use crate::result::Metrics;
use crate::transport::Transport;

/// Runs one benchmark against `cfg.url`: over NATS when it starts with `nats://`, else over
/// SLIM (gRPC).
pub async fn run(cfg: &RunConfig) -> Result<Metrics, BenchError> {
    match Transport::of_url(&cfg.url) {
        Transport::Nats => crate::nats::run(cfg).await,
        Transport::Slim => crate::slim::run(cfg).await,
    }
}
