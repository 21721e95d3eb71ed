//! slim-reference: a small, readable SLIM node that real SLIM apps run through.
//!
//! - [`relay`]: the sans-IO relay core (link negotiation, header MAC, subscriptions, routing).
//! - [`server`]: the thin tokio/tonic shell that serves `DataPlaneService.OpenChannel`.
//! - [`config`]: `relay.yaml` and its validation.
//! - [`auth`]: the sans-IO credential check for `OpenChannel` calls (Basic or Bearer).
//!
//! Requirement ids (`SLIM-ROUTE-005`, …) in doc comments refer to `spec/SPEC.md`.

pub mod auth;
pub mod client;
pub mod config;
pub mod relay;
pub mod server;
// TEMPORARY STAND-IN (client branch): the lead's session module replaces this at merge.
pub mod session;
