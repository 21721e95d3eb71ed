//! slim-microbench: the bodies of the criterion micro-benchmarks in `benches/`.
//!
//! Every benchmark is split in two halves that live here, not in the bench target:
//! - a *fixture*, built once outside the timed loop (names, keys, negotiated links, tables);
//! - the *operation* the benchmark times, a small function taking the fixture.
//!
//! The bench targets (`benches/*.rs`) only hand these to criterion. Because the bodies are library
//! code, `tests/benches_run.rs` runs each operation once in a plain `cargo test` and checks its
//! result (the publish reached exactly 16 subscribers, the MAC verifies, …). `cargo test
//! --workspace` does not build or run bench targets, so without this a broken bench body would go
//! unnoticed until someone ran `cargo bench`.
//!
//! One module per benchmark file:
//! - [`names`]: component hashing, wire names, id text.
//! - [`mac`]: the per-link header MAC.
//! - [`codec`]: prost encoding and decoding of a signed Publish.
//! - [`subscriptions`]: the reference relay's subscription table.
//! - [`relay`]: the reference relay core handling a Publish end to end.
//! - [`mls`]: MLS groups of the reference client (data messages, invites, removals).

pub mod codec;
pub mod mac;
pub mod mls;
pub mod names;
pub mod relay;
pub mod subscriptions;

/// A fixture could not be built: the relay refused a negotiation or a subscription.
///
/// Only a change in the reference relay or in slim-proto can cause this; the message says which
/// step failed and what the relay answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("benchmark fixture setup failed: {0}")]
pub struct SetupError(pub String);
