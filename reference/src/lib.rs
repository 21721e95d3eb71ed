//! slim-reference: a small, readable SLIM node that real SLIM apps run through, and a SLIM client
//! that real SLIM apps talk to.
//!
//! - [`relay`]: the sans-IO relay core (link negotiation, header MAC, subscriptions, routing).
//! - [`server`]: the thin tokio/tonic shell that serves `DataPlaneService.OpenChannel`.
//! - [`config`]: `relay.yaml` and its validation.
//! - [`auth`]: the sans-IO credential check for `OpenChannel` calls (Basic or Bearer).
//! - [`mls`]: MLS groups for sessions (openmls, interoperable with the real SLIM's mls-rs).
//! - [`session`]: the sans-IO session endpoint (sessions, reliable delivery, MLS groups).
//! - [`client`]: the tokio shell of the client (link to a node, reconnects) around the endpoint.
//!
//! Requirement ids (`SLIM-ROUTE-005`, …) in doc comments refer to `spec/SPEC.md`.

pub mod auth;
pub mod client;
pub mod config;
pub mod listener;
pub mod mls;
pub mod mutants;
pub mod relay;
pub mod revocation;
pub mod server;
pub mod session;
