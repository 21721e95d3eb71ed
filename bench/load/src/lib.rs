//! slim-bench: a load generator for SLIM nodes over real gRPC.
//!
//! Raw protocol clients (one HTTP/2 connection and one `OpenChannel` stream each) negotiate the
//! link, subscribe, and publish signed messages whose payload carries the publisher, a sequence
//! number and a send timestamp. Receivers record latency in an HDR histogram and count every
//! sequence number, so a run reports throughput, latency percentiles, loss and duplicates.
//!
//! - [`scenario`]: who publishes where, and how many deliveries a correct node produces.
//! - [`client`]: the raw load client (negotiate, subscribe, pre-signed publish templates).
//! - [`run`]: one run — flow control, stop condition, metrics.
//! - [`pace`]: how `--rate` spaces the messages (timer ticks or smooth).
//! - [`result`]: metrics, the `slim-bench/result/v1` JSON document, tables.
//! - [`compare`]: ratios between two result files, noise check, SVG plot.
//! - [`plot`]: round axis ticks, and the grouped bar chart of many systems (`slim-bench plot`).
//! - [`nats`]: the same scenarios over a NATS server (`nats://` targets), as a reference peer.
//! - [`jetstream`], [`mqtt`], [`amqp`], [`kafka`]: the same scenarios over NATS JetStream, MQTT,
//!   AMQP 0.9.1 and the Kafka protocol, for the seed's comparison (`bench/SEED.md`).
//! - [`wire`]: wire bytes per message from the kernel's socket counters.
//! - [`null_relay`]: the transport floor (not a SLIM node).
//! - [`session`]: reliable session throughput of the reference client through a node.
//! - [`revocation`]: time from a revocation-list change to the end of the revoked stream.
//! - [`revocation_epoch`]: time from `RevokeIdentity` to the next MLS epoch in a group, through
//!   the driver protocol.
//! - [`soak`]: a long run under churn that fails if memory, fds, tasks or tables grow, or if a
//!   route leaks or a message is lost.
//! - [`cli`]: the command line.
//!
//! Usage and the JSON schema: `bench/LOAD.md`.

#![forbid(unsafe_code)]

pub mod amqp;
pub mod cli;
pub mod client;
pub mod compare;
pub mod error;
pub mod harness;
pub mod jetstream;
pub mod kafka;
pub mod mqtt;
pub mod nats;
pub mod null_relay;
pub mod pace;
pub mod payload;
pub mod plot;
pub mod procstat;
pub mod result;
pub mod revocation;
pub mod revocation_epoch;
pub mod run;
pub mod scenario;
pub mod session;
pub mod slim;
pub mod soak;
pub mod transport;
pub mod wire;

pub use error::BenchError;
