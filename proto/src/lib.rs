//! SLIM wire format and the wire primitives every part of slim-conformance shares.
//!
//! - [`pb`]: the generated protobuf and gRPC types of `dataplane.proto.v1`, wire-compatible with
//!   the real SLIM implementation (agntcy/slim).
//! - [`names`]: hierarchical names, their XXH64 hashed form and their text form.
//! - [`link`]: link negotiation key agreement (X25519 + HKDF-SHA256).
//! - [`mac`]: the per-link header MAC (HMAC-SHA256 over a canonical header preimage).
//! - [`validate`]: structural validation with a typed error per defect.
//! - [`messages`]: builders for well-formed Subscribe, Unsubscribe and Publish messages.
//! - [`raw`]: a gRPC codec for sending raw frames (test clients).
//! - [`service`]: `DataPlaneService.OpenChannel` served with a codec of the caller's choice.
//! - [`frame`]: a routed Publish read and rewritten in its encoded form (the relay's fast path).
//! - [`identity`]: end-to-end identity: the P-256 identity key, shared-secret and JWT identity
//!   tokens, and the name ids an identity derives.
//! - [`e2e`]: end-to-end signatures on session control messages (header AAD and payload).
//! - [`driver`]: the session-profile driver protocol an implementation under test hosts.
//! - [`tls`]: TLS (rustls) for nodes and clients: configurations, an h2c-or-TLS connector and
//!   explained handshake failures.
//!
//! Only *primitives* live here. Behaviour (routing, sessions) lives in the reference crate, and the
//! conformance runner never asks it what is correct: its expectations come from `spec/` and
//! `vectors/`.

pub mod e2e;
pub mod frame;
pub mod identity;
pub mod link;
pub mod mac;
pub mod messages;
pub mod names;
pub mod raw;
pub mod service;
pub mod tls;
pub mod validate;

/// Generated types for package `dataplane.proto.v1` (see `proto/dataplane/v1/data_plane.proto`).
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("dataplane.proto.v1");
}

/// Generated types and gRPC service of the session-profile driver protocol,
/// `slim.conformance.driver.v1` (see `proto/conformance/v1/driver.proto` and `spec/DRIVER.md`):
/// the service an implementation under test hosts so that the conformance runner can script it.
#[allow(missing_docs, clippy::all)]
pub mod driver {
    tonic::include_proto!("slim.conformance.driver.v1");
}

/// The SLIM protocol version this crate speaks, sent in link negotiation (`slim_version`).
///
/// The real node only checks that the peer's version parses as semver (SLIM-LINK-004); we announce
/// the release line of `data_plane.proto` we are compatible with.
pub const SLIM_VERSION: &str = "3.4.6";

/// Default TTL for messages a client originates (SLIM-ROUTE-010): 8 hops, as the real SDK.
pub const DEFAULT_TTL: u32 = 8;

/// Largest encoded `Message` a node accepts (SLIM-TRANS-003): tonic's default, 4 MiB.
pub const MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// The gRPC path of the one RPC a SLIM node serves, `DataPlaneService.OpenChannel`.
pub const OPEN_CHANNEL: &str = "/dataplane.proto.v1.DataPlaneService/OpenChannel";

/// Default TCP port of a SLIM node (SLIM-TRANS-001).
pub const DEFAULT_PORT: u16 = 46357;

/// Fanout value that asks for anycast delivery (SLIM-ROUTE-005); every other value is broadcast.
pub const ANYCAST_FANOUT: u32 = 1;

/// Fanout the real SDK uses for group traffic (broadcast).
pub const BROADCAST_FANOUT: u32 = 256;
