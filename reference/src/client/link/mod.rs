//! The client's link to its SLIM node: link negotiation as the initiator, the header MAC, and the
//! subscriptions the node holds for us.
//!
//! A client link is one `OpenChannel` stream to one node, negotiated as an EDGE link, over which
//! our Subscribes, Unsubscribes and Publishes go out signed with the link's key and the node's
//! Publishes and SubscriptionAcks come in. Two layers, as the rest of the crate:
//!
//! - [`ClientLink`] (`state.rs`) is sans-IO: negotiation, header MAC and the subscription book,
//!   fed messages and `now`, tested message by message without a network.
//! - [`connect`] (`driver.rs`) is the tokio driver: it dials, negotiates within a bound, moves
//!   messages between the stream, the [`ClientLink`] and the caller's channels, and reconnects
//!   (re-subscribing every active name) when the stream ends. The caller holds a
//!   [`ClientLinkHandle`] and reads [`LinkEvent`]s.

mod driver;
mod state;

pub use driver::{
    connect, ClientLinkHandle, HttpAuth, LinkCommand, LinkEvent, LinkIoError, LinkOptions,
    SharedLinkStats,
};
pub use state::{
    ClientLink, ClientLinkError, Inbound, LinkStats, TimeoutOutput, DEFAULT_SUBSCRIBE_ATTEMPTS,
    DEFAULT_SUBSCRIBE_RETRY,
};

#[cfg(test)]
mod tests;
