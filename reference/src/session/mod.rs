//! The SLIM session layer (WIRE.md §5), sans-IO.
//!
//! - [`reliable`]: acks, retransmission, reordering and RTX for session data messages.

pub mod reliable;
#[cfg(test)]
mod sim;
