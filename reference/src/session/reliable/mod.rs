//! Reliable, ordered delivery of session data messages (WIRE.md §5.2, §5.4), sans-IO.
//!
//! SLIM sessions with reliability on (both `interval` and `max_retries` configured) number each data
//! `MSG` with a per-sender sequence (1, 2, 3, …), ack each one with a `MSG_ACK` carrying the same id,
//! retransmit what is not acked, and repair gaps at the receiver with `RTX_REQUEST`/`RTX_REPLY`. This
//! module holds that machinery and nothing else: no messages, no names, no clocks. The session
//! endpoint decodes the wire, calls in with a peer key `P` and the current time, and turns the
//! outputs back into SLIM messages.
//!
//! - [`ReliableSender`]: numbers outgoing messages, keeps them until every receiver acked, retransmits
//!   to the receivers still missing one, answers RTX requests, and reports the outcome of each
//!   message: [`SenderOutput::Delivered`] or [`SenderOutput::Failed`].
//! - [`ReliableReceiver`]: acks, reorders, requests the gaps, and hands the application every id of
//!   each source's stream exactly once and in order, as a payload, a "lost" or a "gave up".
//!
//! Both follow the SDK's timer semantics (`timer.rs`): a timer fires every `interval`; timeouts
//! 1..=`max_retries` resend, timeout `max_retries + 1` is the failure. So `1 + max_retries`
//! transmissions, and failure exactly `(max_retries + 1) * interval` after the first one.
//!
//! Unreliable sessions (no timer settings) do not use this module at all: the endpoint sends
//! without numbering for acks, delivers on arrival and ignores RTX requests (WIRE.md §5.4). Nothing
//! here is global or implied, so an endpoint can hold neither, one or both halves.
//!
//! Cost: every operation is O(log n) or O(1) in the number of messages in flight (a fixed ring
//! indexed by sequence number, a binary heap of deadlines with lazy deletion, one bit per message
//! and receiver). Only group membership changes scan the window. The peer key is cloned into each
//! output that names a peer, so choose a cheap one (an index, an `Arc`).
//!
//! Deliberate differences from the real SDK (0.7.27), each chosen so that "delivered" means the
//! peer's application really got the message:
//! - Retries exhausted: the SDK marks the peer offline and resolves the publish handle **Ok**
//!   (`session_sender.rs :: on_failure`). Here the sender reports [`SenderOutput::Failed`] with the
//!   message id and the peers that never acked.
//! - An `RTX_REQUEST` is not taken as an ack (the SDK removes the requester from the message's
//!   missing set, `on_ack_message` on RtxRequest). The sender keeps retransmitting until a real
//!   `MSG_ACK`; the real receiver acks every `MSG`, retransmissions included, so this interoperates.
//! - The receiver acks a message recovered through an `RTX_REPLY` (the SDK does not). The real
//!   sender ignores acks it is not waiting for.
//! - The receiver acks a duplicate only if that id was delivered to the application. The SDK acks
//!   every `MSG`, including ids older than where a late joiner's stream started and ids it already
//!   reported as lost, which makes the sender believe they were delivered.
//! - Window: at most `window` messages unresolved at once ([`WindowFull`] beyond). The SDK has no
//!   such limit; its 512-slot `ProducerBuffer` silently evicts the oldest message, after which an
//!   RTX for it is answered with an error.
//! - When an `RTX_REQUEST` is never answered, [`ReceiverOutput::GaveUp`] takes that id's place in
//!   the ordered stream (the SDK reports `MessageReceiveRetryFailed` at once, out of order, and in
//!   one path reports the id a second time as lost).
//! - A message further than [`ReliableReceiver::max_gap`] ids ahead is dropped unacked instead of
//!   growing the reorder buffer without bound (the SDK has no bound).
//!
//! Files: [`sequence`] (the id space and its arithmetic), `sender.rs`, `receiver.rs`.

mod receiver;
mod sender;
pub mod sequence;
#[cfg(test)]
mod tests;

pub use receiver::{Lost, ReceiverOutput, ReliableReceiver, DEFAULT_MAX_GAP};
pub use sender::{ReliableSender, RtxAnswer, SenderOutput, WindowFull, DEFAULT_WINDOW};
pub use sequence::{data_id_after, is_sequenced, FIRST_MESSAGE_ID, MAX_SEQUENCE_ID};
