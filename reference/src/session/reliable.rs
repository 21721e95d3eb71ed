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

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::fmt::Debug;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// The largest id of a sequenced data message (`MAX_PUBLISH_ID = 2^31 - 1` in the SDK).
///
/// Sequenced ids live in `0..=MAX_SEQUENCE_ID` and wrap from `MAX_SEQUENCE_ID` to 0
/// (`session_sender.rs :: id_and_fanout`). Larger ids are `publish_to` messages, which bypass
/// ordering (see [`is_sequenced`]).
pub const MAX_SEQUENCE_ID: u32 = (1 << 31) - 1;

/// The id of a sender's first message (`FIRST_MESSAGE_ID` in the SDK).
pub const FIRST_MESSAGE_ID: u32 = 1;

/// The default number of messages a [`ReliableSender`] keeps unresolved at once (the SDK's
/// `ProducerBuffer` size).
pub const DEFAULT_WINDOW: usize = 512;

/// The default [`ReliableReceiver::max_gap`].
pub const DEFAULT_MAX_GAP: u32 = 1 << 16;

/// How many ids a receiver remembers as resolved-but-not-delivered, per source, so it does not
/// ack a late copy of them.
const UNDELIVERED_MEMORY: usize = 1024;

/// Half the sequence space: an id less than this far ahead is "after", otherwise "before" (the
/// SDK's `receiver_buffer.rs :: is_after`).
const HALF_SPACE: u32 = 1 << 30;

/// Whether `id` belongs to the ordered stream (true) or is a `publish_to` message (false), which
/// the receiver delivers on arrival (WIRE.md §5.1).
pub fn is_sequenced(id: u32) -> bool {
    id <= MAX_SEQUENCE_ID
}

/// `id + n` in the sequence space.
fn id_add(id: u32, n: u64) -> u32 {
    ((u64::from(id) + n) % (u64::from(MAX_SEQUENCE_ID) + 1)) as u32
}

/// How far `to` is ahead of `from` in the sequence space (0..2^31).
fn id_distance(from: u32, to: u32) -> u32 {
    to.wrapping_sub(from) & MAX_SEQUENCE_ID
}

// ------------------------------------------------------------------------------------------------
// Sender
// ------------------------------------------------------------------------------------------------

/// [`ReliableSender::send`] was refused: `window` messages are already unresolved.
///
/// The caller waits for a [`SenderOutput::Delivered`] or [`SenderOutput::Failed`] and tries again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("send window full: {window} messages are waiting for acks")]
pub struct WindowFull {
    /// The window size.
    pub window: usize,
}

/// How the sender answers an `RTX_REQUEST` ([`ReliableSender::on_rtx_request`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtxAnswer {
    /// Send an `RTX_REPLY` carrying this payload (the buffered message).
    Resend(Bytes),
    /// Send an `RTX_REPLY` with `error = true`: the message is no longer buffered.
    Lost,
}

/// What a [`ReliableSender`] wants done, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderOutput<P> {
    /// Send `MSG` number `id`.
    Transmit {
        /// The message id.
        id: u32,
        /// `None`: the session's destination (the peer in point-to-point, the data channel in a
        /// group). `Some(peer)`: that peer only, with the destination rewritten to it, as the SDK
        /// does for retransmissions.
        to: Option<P>,
        /// The application payload.
        payload: Bytes,
        /// True for a retransmission after a timeout.
        retransmission: bool,
    },
    /// Every receiver that was to get message `id` acked it (or was removed). Emitted once per id,
    /// in the order the acks complete, not necessarily in id order.
    Delivered {
        /// The message id.
        id: u32,
    },
    /// `max_retries` retransmissions later, these receivers still had not acked message `id`.
    /// Emitted once per id instead of `Delivered`; `peers` is not empty and sorted. The receivers
    /// stay in the group: removing them (the SDK marks them offline) is the caller's decision.
    Failed {
        /// The message id.
        id: u32,
        /// The receivers that never acked.
        peers: Vec<P>,
    },
}

/// Where a buffered message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendState {
    /// Sent while the group had no receiver: transmitted when the first one is added (the SDK's
    /// `to_flush`).
    Held,
    /// Transmitted `transmissions` times; the next timeout is at `deadline`.
    Pending {
        transmissions: u32,
        deadline: Instant,
    },
    /// Delivered or failed. The payload stays until the slot is reused, to answer late RTXs.
    Done,
}

/// One slot of the sender's ring.
#[derive(Debug, Clone)]
struct SendSlot {
    /// The sequence number in the slot (`u64::MAX` when never used).
    seq: u64,
    payload: Bytes,
    state: SendState,
    /// How many receivers still have to ack (their bit is set in [`Missing`]).
    waiting: u32,
}

/// One bit per ring slot: set while that receiver still has to ack the message in the slot.
#[derive(Debug, Clone)]
struct Missing(Vec<u64>);

impl Missing {
    fn new(window: usize) -> Self {
        Missing(vec![0; window.div_ceil(64)])
    }
    fn get(&self, pos: usize) -> bool {
        self.0[pos / 64] & (1 << (pos % 64)) != 0
    }
    fn set(&mut self, pos: usize) {
        self.0[pos / 64] |= 1 << (pos % 64);
    }
    fn clear(&mut self, pos: usize) {
        self.0[pos / 64] &= !(1 << (pos % 64));
    }
}

/// The sending half of a reliable session: one per session endpoint that sends data.
///
/// Messages are pipelined: [`send`](Self::send) transmits at once and returns the id; up to
/// `window` messages may wait for acks at the same time. Internally each message gets a sequence
/// number `seq` (0, 1, 2, … never wrapping); its wire id is `first_id + seq` modulo 2^31, and it
/// lives in ring slot `seq % window`.
#[derive(Debug)]
pub struct ReliableSender<P> {
    interval: Duration,
    max_retries: u32,
    slots: Vec<SendSlot>,
    /// The wire id of `seq` 0.
    first_id: u32,
    /// The `seq` of the next message.
    next_seq: u64,
    /// Every `seq` below this is `Done`.
    unresolved_from: u64,
    receivers: BTreeMap<P, Missing>,
    /// `(deadline, seq)`; entries whose slot moved on are skipped when popped.
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    out: VecDeque<SenderOutput<P>>,
}

impl<P: Ord + Clone + Debug> ReliableSender<P> {
    /// A sender retransmitting every `interval`, `max_retries` times, with at most `window`
    /// (at least 1) messages unresolved. The first message gets id [`FIRST_MESSAGE_ID`].
    pub fn new(interval: Duration, max_retries: u32, window: usize) -> Self {
        let window = window.max(1);
        let empty = SendSlot {
            seq: u64::MAX,
            payload: Bytes::new(),
            state: SendState::Done,
            waiting: 0,
        };
        ReliableSender {
            interval,
            max_retries,
            slots: vec![empty; window],
            first_id: FIRST_MESSAGE_ID,
            next_seq: 0,
            unresolved_from: 0,
            receivers: BTreeMap::new(),
            timers: BinaryHeap::new(),
            out: VecDeque::new(),
        }
    }

    /// Start the sequence at `id` (masked into the sequence space) instead of 1: a resumed
    /// session, or a test of the wrap from [`MAX_SEQUENCE_ID`] to 0. Call before the first send.
    pub fn with_first_id(mut self, id: u32) -> Self {
        if self.next_seq == 0 {
            self.first_id = id & MAX_SEQUENCE_ID;
        }
        self
    }

    /// The window size.
    pub fn window(&self) -> usize {
        self.slots.len()
    }

    /// How many messages are unresolved (neither delivered nor failed), counting from the oldest.
    pub fn in_flight(&self) -> usize {
        (self.next_seq - self.unresolved_from) as usize
    }

    /// The id the next [`send`](Self::send) will use.
    pub fn next_id(&self) -> u32 {
        id_add(self.first_id, self.next_seq)
    }

    /// The current receivers.
    pub fn receivers(&self) -> impl Iterator<Item = &P> {
        self.receivers.keys()
    }

    /// Send `payload` to every current receiver. Returns the message id, or [`WindowFull`].
    ///
    /// With no receiver yet the message is held and transmitted when the first one is added (the
    /// SDK buffers the same way until a peer is connected).
    pub fn send(&mut self, payload: Bytes, now: Instant) -> Result<u32, WindowFull> {
        let window = self.slots.len();
        if self.in_flight() >= window {
            return Err(WindowFull { window });
        }
        let seq = self.next_seq;
        let id = self.id_of(seq);
        let pos = self.pos(seq);
        self.next_seq += 1;
        let slot = &mut self.slots[pos];
        slot.seq = seq;
        slot.payload = payload;
        slot.waiting = 0;
        slot.state = SendState::Held;
        if !self.receivers.is_empty() {
            self.transmit_first(seq, now);
        }
        Ok(id)
    }

    /// Receiver `peer` acked message `id` (`MSG_ACK`). Unknown peers, unknown ids and repeated
    /// acks are ignored.
    pub fn on_ack(&mut self, peer: &P, id: u32) {
        let Some(seq) = self.seq_of(id) else { return };
        let pos = self.pos(seq);
        if !matches!(self.slots[pos].state, SendState::Pending { .. }) {
            return;
        }
        let Some(missing) = self.receivers.get_mut(peer) else {
            return;
        };
        if !missing.get(pos) {
            return;
        }
        missing.clear(pos);
        self.one_less_waiting(seq);
    }

    /// The answer to an `RTX_REQUEST` for `id`: the payload if it is still in the ring (unresolved
    /// or recently resolved), else [`RtxAnswer::Lost`]. Answering does not count as an ack and
    /// changes no timer.
    pub fn on_rtx_request(&self, id: u32) -> RtxAnswer {
        match self.seq_of(id) {
            Some(seq) => RtxAnswer::Resend(self.slots[self.pos(seq)].payload.clone()),
            None => RtxAnswer::Lost,
        }
    }

    /// Add a receiver. It is expected to ack messages sent from now on, not those already in
    /// flight. The first receiver of an empty group also gets the held messages.
    pub fn add_receiver(&mut self, peer: P, now: Instant) {
        if self.receivers.contains_key(&peer) {
            return;
        }
        let first = self.receivers.is_empty();
        self.receivers.insert(peer, Missing::new(self.slots.len()));
        if first {
            for seq in self.unresolved_from..self.next_seq {
                if self.slots[self.pos(seq)].state == SendState::Held {
                    self.transmit_first(seq, now);
                }
            }
        }
    }

    /// Remove a receiver. Messages that were waiting only for it become delivered.
    pub fn remove_receiver(&mut self, peer: &P) {
        let Some(missing) = self.receivers.remove(peer) else {
            return;
        };
        for seq in self.unresolved_from..self.next_seq {
            let pos = self.pos(seq);
            if missing.get(pos) && matches!(self.slots[pos].state, SendState::Pending { .. }) {
                self.one_less_waiting(seq);
            }
        }
    }

    /// Make the group exactly `peers`: removes the others, adds the new ones.
    pub fn set_receivers(&mut self, peers: impl IntoIterator<Item = P>, now: Instant) {
        let wanted: BTreeSet<P> = peers.into_iter().collect();
        let gone: Vec<P> = self
            .receivers
            .keys()
            .filter(|p| !wanted.contains(*p))
            .cloned()
            .collect();
        for peer in &gone {
            self.remove_receiver(peer);
        }
        for peer in wanted {
            self.add_receiver(peer, now);
        }
    }

    /// Process every timer due at `now`: retransmit to the receivers still missing a message, or
    /// fail it after `max_retries` retransmissions.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((deadline, seq))) = self.timers.peek() {
            if deadline > now {
                break;
            }
            self.timers.pop();
            let pos = self.pos(seq);
            let slot = &mut self.slots[pos];
            let transmissions = match slot.state {
                SendState::Pending {
                    transmissions,
                    deadline: d,
                } if slot.seq == seq && d == deadline => transmissions,
                _ => continue, // acked, failed or re-armed since: a stale entry
            };
            let id = id_add(self.first_id, seq);
            if transmissions <= self.max_retries {
                let next = now + self.interval;
                slot.state = SendState::Pending {
                    transmissions: transmissions + 1,
                    deadline: next,
                };
                for (peer, missing) in &self.receivers {
                    if missing.get(pos) {
                        self.out.push_back(SenderOutput::Transmit {
                            id,
                            to: Some(peer.clone()),
                            payload: slot.payload.clone(),
                            retransmission: true,
                        });
                    }
                }
                self.timers.push(Reverse((next, seq)));
            } else {
                let mut peers = Vec::new();
                for (peer, missing) in &mut self.receivers {
                    if missing.get(pos) {
                        missing.clear(pos);
                        peers.push(peer.clone());
                    }
                }
                slot.waiting = 0;
                slot.state = SendState::Done;
                self.out.push_back(SenderOutput::Failed { id, peers });
                self.advance();
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called, if ever.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(&Reverse((deadline, seq))) = self.timers.peek() {
            let slot = &self.slots[self.pos(seq)];
            match slot.state {
                SendState::Pending { deadline: d, .. } if slot.seq == seq && d == deadline => {
                    return Some(deadline)
                }
                _ => {
                    self.timers.pop();
                }
            }
        }
        None
    }

    /// The next thing to do, in order.
    pub fn poll_output(&mut self) -> Option<SenderOutput<P>> {
        self.out.pop_front()
    }

    /// The first transmission of the held message `seq`, to every current receiver.
    fn transmit_first(&mut self, seq: u64, now: Instant) {
        let pos = self.pos(seq);
        let id = self.id_of(seq);
        for missing in self.receivers.values_mut() {
            missing.set(pos);
        }
        let deadline = now + self.interval;
        let slot = &mut self.slots[pos];
        slot.waiting = self.receivers.len() as u32;
        slot.state = SendState::Pending {
            transmissions: 1,
            deadline,
        };
        self.timers.push(Reverse((deadline, seq)));
        self.out.push_back(SenderOutput::Transmit {
            id,
            to: None,
            payload: slot.payload.clone(),
            retransmission: false,
        });
    }

    /// One receiver fewer waits for `seq` (its bit is already cleared); deliver when none is left.
    fn one_less_waiting(&mut self, seq: u64) {
        let id = self.id_of(seq);
        let pos = self.pos(seq);
        let slot = &mut self.slots[pos];
        slot.waiting = slot.waiting.saturating_sub(1);
        if slot.waiting == 0 {
            slot.state = SendState::Done;
            self.out.push_back(SenderOutput::Delivered { id });
            self.advance();
        }
    }

    /// Move `unresolved_from` past the resolved messages at the front.
    fn advance(&mut self) {
        while self.unresolved_from < self.next_seq
            && self.slots[self.pos(self.unresolved_from)].state == SendState::Done
        {
            self.unresolved_from += 1;
        }
    }

    fn pos(&self, seq: u64) -> usize {
        (seq % self.slots.len() as u64) as usize
    }

    fn id_of(&self, seq: u64) -> u32 {
        id_add(self.first_id, seq)
    }

    /// The `seq` of wire id `id` if that message is still in the ring.
    fn seq_of(&self, id: u32) -> Option<u64> {
        let back = u64::from(id_distance(id, self.next_id()));
        if back == 0 || back > self.next_seq || back > self.slots.len() as u64 {
            return None;
        }
        let seq = self.next_seq - back;
        (self.slots[self.pos(seq)].seq == seq).then_some(seq)
    }
}

// ------------------------------------------------------------------------------------------------
// Receiver
// ------------------------------------------------------------------------------------------------

/// The sender answered an `RTX_REQUEST` with `error = true`: it no longer has the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the sender no longer has the message")]
pub struct Lost;

/// What a [`ReliableReceiver`] wants done, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiverOutput<P> {
    /// Send `MSG_ACK` with `id` to `to`.
    Ack {
        /// The source of the message.
        to: P,
        /// The message id.
        id: u32,
    },
    /// Send `RTX_REQUEST` with `id` to `to`.
    RtxRequest {
        /// The source of the missing message.
        to: P,
        /// The missing id.
        id: u32,
    },
    /// Hand `payload` to the application. Sequenced ids come in order, exactly once each.
    Deliver {
        /// The source.
        from: P,
        /// The message id.
        id: u32,
        /// The application payload.
        payload: Bytes,
    },
    /// Message `id` from `from` is lost: the sender said it no longer has it (the SDK's
    /// `MessageLost`). Takes the id's place in the ordered stream.
    Lost {
        /// The source.
        from: P,
        /// The message id.
        id: u32,
    },
    /// Message `id` from `from` is given up: `max_retries` RTX requests later it still had not
    /// come (the SDK's `MessageReceiveRetryFailed`). Takes the id's place in the ordered stream.
    GaveUp {
        /// The source.
        from: P,
        /// The message id.
        id: u32,
    },
}

/// One position of a source's reorder buffer.
#[derive(Debug, Clone)]
enum RecvSlot {
    /// Not here yet; `requests` RTX requests sent, the next timeout is at `deadline`.
    Missing {
        requests: u32,
        deadline: Instant,
    },
    Received(Bytes),
    Lost,
    GaveUp,
}

/// Ids resolved without being delivered, so a late copy is not acked. Bounded: the oldest is
/// forgotten first.
#[derive(Debug, Default)]
struct Undelivered {
    set: BTreeSet<u32>,
    order: VecDeque<u32>,
}

impl Undelivered {
    fn insert(&mut self, id: u32) {
        if self.order.len() == UNDELIVERED_MEMORY {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        if self.set.insert(id) {
            self.order.push_back(id);
        }
    }
    fn contains(&self, id: u32) -> bool {
        self.set.contains(&id)
    }
}

/// The receiving state for one source.
#[derive(Debug)]
struct Source<P> {
    peer: P,
    /// The next id the application gets.
    next: u32,
    /// How many ids were resolved (delivered, lost, given up) since the stream started.
    resolved: u64,
    /// `pending[i]` is id `next + i`; the front is always `Missing` (else it is released).
    pending: VecDeque<RecvSlot>,
    undelivered: Undelivered,
}

/// The receiving half of a reliable session: one per session endpoint, tracking each source.
///
/// The first message from a source starts its stream (a group member joining late starts
/// wherever it joins), unless [`starting_at`](Self::starting_at) says where streams start (a new
/// point-to-point session starts at 1, as the SDK's `stream_start`).
#[derive(Debug)]
pub struct ReliableReceiver<P> {
    interval: Duration,
    max_retries: u32,
    stream_start: Option<u32>,
    max_gap: u32,
    by_peer: BTreeMap<P, u64>,
    /// Keyed by a source number that is never reused, so a removed source's timers stay stale.
    sources: BTreeMap<u64, Source<P>>,
    next_source: u64,
    /// `(deadline, source, id)`; entries whose slot moved on are skipped when popped.
    timers: BinaryHeap<Reverse<(Instant, u64, u32)>>,
    out: VecDeque<ReceiverOutput<P>>,
}

impl<P: Ord + Clone + Debug> ReliableReceiver<P> {
    /// A receiver resending each RTX request every `interval`, `max_retries` times.
    pub fn new(interval: Duration, max_retries: u32) -> Self {
        ReliableReceiver {
            interval,
            max_retries,
            stream_start: None,
            max_gap: DEFAULT_MAX_GAP,
            by_peer: BTreeMap::new(),
            sources: BTreeMap::new(),
            next_source: 0,
            timers: BinaryHeap::new(),
            out: VecDeque::new(),
        }
    }

    /// Every new source's stream starts at `first` (usually [`FIRST_MESSAGE_ID`]): earlier
    /// messages that went missing are requested, not skipped.
    pub fn starting_at(mut self, first: u32) -> Self {
        self.stream_start = Some(first & MAX_SEQUENCE_ID);
        self
    }

    /// Messages more than `max_gap` ids ahead of the next expected one are dropped unacked
    /// (default [`DEFAULT_MAX_GAP`]); a reliable sender retransmits them later.
    pub fn max_gap(mut self, max_gap: u32) -> Self {
        self.max_gap = max_gap.min(HALF_SPACE - 1);
        self
    }

    /// A data `MSG` `id` from `src`.
    ///
    /// Acks it unless it is too far ahead or older than `src`'s stream; requests every id newly
    /// found missing; releases what is now in order. A `publish_to` id (not [`is_sequenced`]) is
    /// acked and delivered at once.
    pub fn on_message(&mut self, src: &P, id: u32, payload: Bytes, now: Instant) {
        if !is_sequenced(id) {
            self.out.push_back(ReceiverOutput::Ack {
                to: src.clone(),
                id,
            });
            self.out.push_back(ReceiverOutput::Deliver {
                from: src.clone(),
                id,
                payload,
            });
            return;
        }
        let key = self.source_key(src, id);
        let Some(source) = self.sources.get_mut(&key) else {
            return;
        };
        let ahead = id_distance(source.next, id);
        if ahead >= HALF_SPACE {
            // Older than the next expected id: a duplicate, or from before the stream started.
            let back = u64::from(id_distance(id, source.next));
            if back <= source.resolved && !source.undelivered.contains(id) {
                self.out.push_back(ReceiverOutput::Ack {
                    to: src.clone(),
                    id,
                });
            }
            return;
        }
        if ahead > self.max_gap {
            return;
        }
        self.out.push_back(ReceiverOutput::Ack {
            to: src.clone(),
            id,
        });
        let ahead = ahead as usize;
        if ahead < source.pending.len() {
            if let RecvSlot::Missing { .. } = source.pending[ahead] {
                source.pending[ahead] = RecvSlot::Received(payload);
            }
            // else: a duplicate of a message waiting in the buffer; acked above.
        } else {
            let deadline = now + self.interval;
            for k in source.pending.len()..ahead {
                let missing = id_add(source.next, k as u64);
                source.pending.push_back(RecvSlot::Missing {
                    requests: 1,
                    deadline,
                });
                self.timers.push(Reverse((deadline, key, missing)));
                self.out.push_back(ReceiverOutput::RtxRequest {
                    to: src.clone(),
                    id: missing,
                });
            }
            source.pending.push_back(RecvSlot::Received(payload));
        }
        Self::release(source, &mut self.out);
    }

    /// The `RTX_REPLY` for `id` from `src`: the message (handled, and acked, as a `MSG`) or
    /// [`Lost`] (reported in order; no ack). Replies for ids not awaited are ignored.
    pub fn on_rtx_reply(&mut self, src: &P, id: u32, reply: Result<Bytes, Lost>, now: Instant) {
        match reply {
            Ok(payload) => self.on_message(src, id, payload, now),
            Err(Lost) => {
                let Some(source) = self.by_peer.get(src).and_then(|k| self.sources.get_mut(k))
                else {
                    return;
                };
                let ahead = id_distance(source.next, id) as usize;
                if let Some(slot @ RecvSlot::Missing { .. }) = source.pending.get_mut(ahead) {
                    *slot = RecvSlot::Lost;
                    Self::release(source, &mut self.out);
                }
            }
        }
    }

    /// Forget `src` (it left the session): its buffer and pending RTXs go, and a later message
    /// from it starts a new stream (the SDK's `remove_endpoint`).
    pub fn remove_source(&mut self, src: &P) {
        if let Some(key) = self.by_peer.remove(src) {
            self.sources.remove(&key);
        }
    }

    /// Process every RTX timer due at `now`: request again, or give up after `max_retries`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((deadline, key, id))) = self.timers.peek() {
            if deadline > now {
                break;
            }
            self.timers.pop();
            let Some(source) = self.sources.get_mut(&key) else {
                continue;
            };
            let ahead = id_distance(source.next, id) as usize;
            let Some(slot) = source.pending.get_mut(ahead) else {
                continue;
            };
            let requests = match *slot {
                RecvSlot::Missing {
                    requests,
                    deadline: d,
                } if d == deadline => requests,
                _ => continue, // arrived, lost or re-armed since: a stale entry
            };
            if requests <= self.max_retries {
                let next = now + self.interval;
                *slot = RecvSlot::Missing {
                    requests: requests + 1,
                    deadline: next,
                };
                self.timers.push(Reverse((next, key, id)));
                self.out.push_back(ReceiverOutput::RtxRequest {
                    to: source.peer.clone(),
                    id,
                });
            } else {
                *slot = RecvSlot::GaveUp;
                Self::release(source, &mut self.out);
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called, if ever.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(&Reverse((deadline, key, id))) = self.timers.peek() {
            let live = self.sources.get(&key).is_some_and(|source| {
                let ahead = id_distance(source.next, id) as usize;
                matches!(source.pending.get(ahead),
                    Some(RecvSlot::Missing { deadline: d, .. }) if *d == deadline)
            });
            if live {
                return Some(deadline);
            }
            self.timers.pop();
        }
        None
    }

    /// True when no source has a message missing or waiting behind a gap: nothing is left to
    /// repair (the SDK's receiver `drain_completed`: no pending RTX).
    pub fn is_idle(&self) -> bool {
        self.sources.values().all(|s| s.pending.is_empty())
    }

    /// The next thing to do, in order.
    pub fn poll_output(&mut self) -> Option<ReceiverOutput<P>> {
        self.out.pop_front()
    }

    /// The key of `src`'s state, created (its stream starting at the configured start or at
    /// `first_id`) if new.
    /// Whether message `id` from `src` was already received (delivered, or buffered ahead of a
    /// gap): its copy needs no processing, only the ack [`Self::on_message`] gives it. The
    /// session asks before decrypting, since an MLS message decrypts only once.
    pub fn is_duplicate(&self, src: &P, id: u32) -> bool {
        if !is_sequenced(id) {
            return false;
        }
        let Some(source) = self.by_peer.get(src).and_then(|k| self.sources.get(k)) else {
            return false;
        };
        let ahead = id_distance(source.next, id);
        if ahead >= HALF_SPACE {
            return true;
        }
        matches!(
            source.pending.get(ahead as usize),
            Some(RecvSlot::Received(_))
        )
    }

    fn source_key(&mut self, src: &P, first_id: u32) -> u64 {
        if let Some(&key) = self.by_peer.get(src) {
            return key;
        }
        let key = self.next_source;
        self.next_source += 1;
        self.by_peer.insert(src.clone(), key);
        self.sources.insert(
            key,
            Source {
                peer: src.clone(),
                next: self.stream_start.unwrap_or(first_id),
                resolved: 0,
                pending: VecDeque::new(),
                undelivered: Undelivered::default(),
            },
        );
        key
    }

    /// Hand over everything at the front of `source`'s buffer that is no longer missing.
    fn release(source: &mut Source<P>, out: &mut VecDeque<ReceiverOutput<P>>) {
        while let Some(front) = source.pending.front() {
            if matches!(front, RecvSlot::Missing { .. }) {
                break;
            }
            let id = source.next;
            let from = source.peer.clone();
            match source.pending.pop_front() {
                Some(RecvSlot::Received(payload)) => {
                    out.push_back(ReceiverOutput::Deliver { from, id, payload })
                }
                Some(RecvSlot::Lost) => {
                    source.undelivered.insert(id);
                    out.push_back(ReceiverOutput::Lost { from, id })
                }
                Some(RecvSlot::GaveUp) => {
                    source.undelivered.insert(id);
                    out.push_back(ReceiverOutput::GaveUp { from, id })
                }
                Some(RecvSlot::Missing { .. }) | None => break,
            }
            source.next = id_add(id, 1);
            source.resolved = source.resolved.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn drain<T>(mut poll: impl FnMut() -> Option<T>) -> Vec<T> {
        std::iter::from_fn(&mut poll).collect()
    }

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    // --- sender -----------------------------------------------------------------------------

    #[test]
    fn ids_start_at_1_and_wrap_from_max_to_0() {
        let t0 = Instant::now();
        let mut s = ReliableSender::new(100 * MS, 3, 8);
        s.add_receiver('a', t0);
        assert_eq!(s.send(b("x"), t0), Ok(1));
        assert_eq!(s.send(b("y"), t0), Ok(2));

        let mut s = ReliableSender::new(100 * MS, 3, 8).with_first_id(MAX_SEQUENCE_ID - 1);
        s.add_receiver('a', t0);
        let ids: Vec<u32> = (0..3).map(|_| s.send(b("x"), t0).expect("room")).collect();
        assert_eq!(ids, [MAX_SEQUENCE_ID - 1, MAX_SEQUENCE_ID, 0]);
        for id in [0, MAX_SEQUENCE_ID, MAX_SEQUENCE_ID - 1] {
            s.on_ack(&'a', id);
        }
        let delivered: Vec<_> = drain(|| s.poll_output())
            .into_iter()
            .filter_map(|o| match o {
                SenderOutput::Delivered { id } => Some(id),
                _ => None,
            })
            .collect();
        assert_eq!(delivered, [0, MAX_SEQUENCE_ID, MAX_SEQUENCE_ID - 1]);
        assert_eq!(s.in_flight(), 0);
    }

    #[test]
    fn send_transmits_to_everyone_and_the_window_limits_unresolved_messages() {
        let t0 = Instant::now();
        let mut s = ReliableSender::new(100 * MS, 3, 2);
        s.set_receivers(['a', 'b'], t0);
        assert_eq!(s.send(b("1"), t0), Ok(1));
        assert_eq!(
            s.poll_output(),
            Some(SenderOutput::Transmit {
                id: 1,
                to: None,
                payload: b("1"),
                retransmission: false
            })
        );
        assert_eq!(s.send(b("2"), t0), Ok(2));
        assert_eq!(s.send(b("3"), t0), Err(WindowFull { window: 2 }));
        s.on_ack(&'a', 2);
        s.on_ack(&'b', 2);
        assert_eq!(
            s.send(b("3"), t0),
            Err(WindowFull { window: 2 }),
            "1 still open"
        );
        s.on_ack(&'a', 1);
        s.on_ack(&'b', 1);
        assert_eq!(s.in_flight(), 0);
        assert_eq!(s.send(b("3"), t0), Ok(3));
    }

    #[test]
    fn retransmits_to_the_missing_receiver_then_fails_at_n_plus_1_intervals() {
        let t0 = Instant::now();
        let mut s = ReliableSender::new(100 * MS, 3, 16);
        s.set_receivers(['a', 'b', 'c'], t0);
        let id = s.send(b("p"), t0).expect("room");
        s.on_ack(&'b', id);
        s.on_ack(&'c', id);
        drain(|| s.poll_output());
        let mut retransmissions = 0;
        for k in 1..=3u32 {
            assert_eq!(s.poll_timeout(), Some(t0 + k * 100 * MS));
            s.handle_timeout(t0 + k * 100 * MS - MS);
            assert_eq!(s.poll_output(), None, "nothing before the deadline");
            s.handle_timeout(t0 + k * 100 * MS);
            for o in drain(|| s.poll_output()) {
                assert_eq!(
                    o,
                    SenderOutput::Transmit {
                        id,
                        to: Some('a'),
                        payload: b("p"),
                        retransmission: true
                    }
                );
                retransmissions += 1;
            }
        }
        assert_eq!(retransmissions, 3);
        assert_eq!(s.poll_timeout(), Some(t0 + 400 * MS));
        s.handle_timeout(t0 + 400 * MS);
        assert_eq!(
            drain(|| s.poll_output()),
            [SenderOutput::Failed {
                id,
                peers: vec!['a']
            }]
        );
        assert_eq!(s.poll_timeout(), None);
        assert_eq!(s.in_flight(), 0);
        s.on_ack(&'a', id);
        assert_eq!(s.poll_output(), None, "a late ack changes nothing");
    }

    #[test]
    fn several_silent_receivers_fail_together_sorted() {
        let t0 = Instant::now();
        let mut s = ReliableSender::new(10 * MS, 0, 4);
        s.set_receivers(['c', 'a', 'b'], t0);
        let id = s.send(b("p"), t0).expect("room");
        s.on_ack(&'b', id);
        drain(|| s.poll_output());
        s.handle_timeout(t0 + 10 * MS);
        assert_eq!(
            drain(|| s.poll_output()),
            [SenderOutput::Failed {
                id,
                peers: vec!['a', 'c']
            }]
        );
    }

    #[test]
    fn acks_from_strangers_repeats_and_unknown_ids_are_ignored() {
        let t0 = Instant::now();
        let mut s = ReliableSender::new(100 * MS, 3, 4);
        s.set_receivers(['a', 'b'], t0);
        let id = s.send(b("p"), t0).expect("room");
        drain(|| s.poll_output());
        s.on_ack(&'z', id);
        s.on_ack(&'a', id);
        s.on_ack(&'a', id);
        s.on_ack(&'a', 77);
        s.on_ack(&'a', 0);
        assert_eq!(s.poll_output(), None);
        s.on_ack(&'b', id);
        assert_eq!(s.poll_output(), Some(SenderOutput::Delivered { id }));
    }

    #[test]
    fn rtx_requests_are_answered_from_the_ring_and_lost_once_evicted() {
        let t0 = Instant::now();
        let mut s = ReliableSender::new(100 * MS, 3, 2);
        s.add_receiver('a', t0);
        assert_eq!(s.on_rtx_request(1), RtxAnswer::Lost, "never sent");
        s.send(b("one"), t0).expect("room");
        assert_eq!(s.on_rtx_request(1), RtxAnswer::Resend(b("one")));
        s.on_ack(&'a', 1);
        assert_eq!(
            s.on_rtx_request(1),
            RtxAnswer::Resend(b("one")),
            "acked, still buffered"
        );
        s.send(b("two"), t0).expect("room");
        s.on_ack(&'a', 2);
        s.send(b("three"), t0).expect("room");
        assert_eq!(s.on_rtx_request(1), RtxAnswer::Lost, "slot reused");
        assert_eq!(s.on_rtx_request(2), RtxAnswer::Resend(b("two")));
        assert_eq!(s.on_rtx_request(3), RtxAnswer::Resend(b("three")));
        assert_eq!(s.on_rtx_request(4), RtxAnswer::Lost, "not sent yet");
        assert_eq!(s.in_flight(), 1, "answering is not an ack");
    }

    #[test]
    fn messages_sent_to_an_empty_group_wait_for_the_first_receiver() {
        let t0 = Instant::now();
        let mut s = ReliableSender::new(100 * MS, 1, 8);
        s.send(b("1"), t0).expect("room");
        s.send(b("2"), t0).expect("room");
        assert_eq!(s.poll_output(), None);
        assert_eq!(s.poll_timeout(), None);
        let t1 = t0 + 5000 * MS;
        s.add_receiver('a', t1);
        let ids: Vec<u32> = drain(|| s.poll_output())
            .into_iter()
            .map(|o| match o {
                SenderOutput::Transmit {
                    id,
                    to: None,
                    retransmission: false,
                    ..
                } => id,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(ids, [1, 2]);
        assert_eq!(s.poll_timeout(), Some(t1 + 100 * MS));
        s.add_receiver('b', t1);
        assert_eq!(s.poll_output(), None, "only the first receiver flushes");
        s.on_ack(&'a', 1);
        assert_eq!(s.poll_output(), Some(SenderOutput::Delivered { id: 1 }));
    }

    #[test]
    fn removing_a_receiver_resolves_what_waited_only_for_it() {
        let t0 = Instant::now();
        let mut s = ReliableSender::new(100 * MS, 3, 8);
        s.set_receivers(['a', 'b'], t0);
        s.send(b("1"), t0).expect("room");
        s.send(b("2"), t0).expect("room");
        s.on_ack(&'a', 1);
        drain(|| s.poll_output());
        s.remove_receiver(&'b');
        assert_eq!(
            drain(|| s.poll_output()),
            [SenderOutput::Delivered { id: 1 }],
            "2 still waits for a"
        );
        s.set_receivers([], t0);
        assert_eq!(
            drain(|| s.poll_output()),
            [SenderOutput::Delivered { id: 2 }]
        );
        assert_eq!(s.poll_timeout(), None);
        assert_eq!(s.in_flight(), 0);
        // A receiver added later does not wait for earlier messages.
        s.add_receiver('c', t0);
        let id = s.send(b("3"), t0).expect("room");
        s.on_ack(&'c', id);
        assert_eq!(s.in_flight(), 0);
    }

    // --- receiver ---------------------------------------------------------------------------

    use ReceiverOutput::{Ack, Deliver, GaveUp, Lost as LostOut, RtxRequest};

    fn dl(id: u32, payload: &'static str) -> ReceiverOutput<char> {
        Deliver {
            from: 's',
            id,
            payload: b(payload),
        }
    }

    #[test]
    fn in_order_messages_are_acked_and_delivered_and_duplicates_only_acked() {
        let t0 = Instant::now();
        let mut r = ReliableReceiver::new(100 * MS, 3).starting_at(FIRST_MESSAGE_ID);
        r.on_message(&'s', 1, b("a"), t0);
        r.on_message(&'s', 2, b("b"), t0);
        r.on_message(&'s', 1, b("a"), t0);
        assert_eq!(
            drain(|| r.poll_output()),
            [
                Ack { to: 's', id: 1 },
                dl(1, "a"),
                Ack { to: 's', id: 2 },
                dl(2, "b"),
                Ack { to: 's', id: 1 },
            ]
        );
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn a_gap_requests_each_missing_id_and_filling_it_releases_in_order() {
        let t0 = Instant::now();
        let mut r = ReliableReceiver::new(100 * MS, 3).starting_at(1);
        r.on_message(&'s', 4, b("d"), t0);
        assert_eq!(
            drain(|| r.poll_output()),
            [
                Ack { to: 's', id: 4 },
                RtxRequest { to: 's', id: 1 },
                RtxRequest { to: 's', id: 2 },
                RtxRequest { to: 's', id: 3 },
            ]
        );
        r.on_message(&'s', 4, b("d"), t0);
        assert_eq!(
            drain(|| r.poll_output()),
            [Ack { to: 's', id: 4 }],
            "dup in buffer"
        );
        r.on_rtx_reply(&'s', 2, Ok(b("b")), t0);
        assert_eq!(drain(|| r.poll_output()), [Ack { to: 's', id: 2 }]);
        r.on_message(&'s', 1, b("a"), t0);
        assert_eq!(
            drain(|| r.poll_output()),
            [Ack { to: 's', id: 1 }, dl(1, "a"), dl(2, "b")]
        );
        assert_eq!(r.poll_timeout(), Some(t0 + 100 * MS), "3 still awaited");
        assert!(!r.is_idle());
        r.on_rtx_reply(&'s', 3, Ok(b("c")), t0 + 50 * MS);
        assert_eq!(
            drain(|| r.poll_output()),
            [Ack { to: 's', id: 3 }, dl(3, "c"), dl(4, "d")]
        );
        assert_eq!(r.poll_timeout(), None);
        assert!(r.is_idle());
    }

    #[test]
    fn an_rtx_error_reports_the_id_lost_in_order_and_a_late_copy_is_not_acked() {
        let t0 = Instant::now();
        let mut r = ReliableReceiver::new(100 * MS, 3).starting_at(1);
        r.on_message(&'s', 3, b("c"), t0);
        drain(|| r.poll_output());
        r.on_rtx_reply(&'s', 2, Err(Lost), t0);
        r.on_rtx_reply(&'s', 9, Err(Lost), t0);
        assert_eq!(
            r.poll_output(),
            None,
            "1 still missing; 9 was never asked for"
        );
        r.on_message(&'s', 1, b("a"), t0);
        assert_eq!(
            drain(|| r.poll_output()),
            [
                Ack { to: 's', id: 1 },
                dl(1, "a"),
                LostOut { from: 's', id: 2 },
                dl(3, "c")
            ]
        );
        r.on_message(&'s', 2, b("b"), t0);
        r.on_message(&'s', 3, b("c"), t0);
        assert_eq!(
            drain(|| r.poll_output()),
            [Ack { to: 's', id: 3 }],
            "2 was never delivered: no ack"
        );
    }

    #[test]
    fn an_unanswered_rtx_is_resent_then_given_up_in_order() {
        let t0 = Instant::now();
        let mut r = ReliableReceiver::new(100 * MS, 2).starting_at(1);
        r.on_message(&'s', 2, b("b"), t0);
        drain(|| r.poll_output());
        for k in 1..=2u32 {
            assert_eq!(r.poll_timeout(), Some(t0 + k * 100 * MS));
            r.handle_timeout(t0 + k * 100 * MS);
            assert_eq!(drain(|| r.poll_output()), [RtxRequest { to: 's', id: 1 }]);
        }
        r.handle_timeout(t0 + 300 * MS);
        assert_eq!(
            drain(|| r.poll_output()),
            [GaveUp { from: 's', id: 1 }, dl(2, "b")]
        );
        assert_eq!(r.poll_timeout(), None);
        r.on_message(&'s', 1, b("a"), t0 + 400 * MS);
        assert_eq!(r.poll_output(), None, "given up: no ack, no delivery");
    }

    #[test]
    fn the_first_message_starts_a_stream_unless_a_start_is_configured() {
        let t0 = Instant::now();
        let mut r = ReliableReceiver::new(100 * MS, 2);
        r.on_message(&'s', 40, b("x"), t0);
        r.on_message(&'s', 39, b("w"), t0);
        r.on_message(&'s', 41, b("y"), t0);
        assert_eq!(
            drain(|| r.poll_output()),
            [
                Ack { to: 's', id: 40 },
                dl(40, "x"),
                Ack { to: 's', id: 41 },
                dl(41, "y")
            ],
            "39 is before the stream started: neither delivered nor acked"
        );
        // Each source has its own stream.
        r.on_message(&'t', 7, b("t"), t0);
        assert_eq!(
            drain(|| r.poll_output()),
            [
                Ack { to: 't', id: 7 },
                Deliver {
                    from: 't',
                    id: 7,
                    payload: b("t")
                }
            ]
        );
        // A removed source starts over.
        r.remove_source(&'s');
        r.on_message(&'s', 10, b("z"), t0);
        assert_eq!(
            drain(|| r.poll_output()),
            [Ack { to: 's', id: 10 }, dl(10, "z")]
        );
    }

    #[test]
    fn wraps_from_max_to_0() {
        let t0 = Instant::now();
        let mut r = ReliableReceiver::new(100 * MS, 2).starting_at(MAX_SEQUENCE_ID);
        r.on_message(&'s', MAX_SEQUENCE_ID, b("m"), t0);
        r.on_message(&'s', 1, b("1"), t0);
        assert_eq!(
            drain(|| r.poll_output()),
            [
                Ack {
                    to: 's',
                    id: MAX_SEQUENCE_ID
                },
                dl(MAX_SEQUENCE_ID, "m"),
                Ack { to: 's', id: 1 },
                RtxRequest { to: 's', id: 0 }
            ]
        );
        r.on_message(&'s', 0, b("0"), t0);
        assert_eq!(
            drain(|| r.poll_output()),
            [Ack { to: 's', id: 0 }, dl(0, "0"), dl(1, "1")]
        );
        r.on_message(&'s', MAX_SEQUENCE_ID, b("m"), t0);
        assert_eq!(
            drain(|| r.poll_output()),
            [Ack {
                to: 's',
                id: MAX_SEQUENCE_ID
            }],
            "a duplicate across the wrap"
        );
    }

    #[test]
    fn too_far_ahead_is_dropped_unacked_and_publish_to_ids_bypass_ordering() {
        let t0 = Instant::now();
        let mut r = ReliableReceiver::new(100 * MS, 2)
            .starting_at(1)
            .max_gap(10);
        r.on_message(&'s', 12, b("far"), t0);
        assert_eq!(r.poll_output(), None);
        r.on_message(&'s', 11, b("k"), t0);
        assert_eq!(drain(|| r.poll_output()).len(), 11, "ack + 10 RTX requests");
        let to = MAX_SEQUENCE_ID + 5;
        r.on_message(&'s', to, b("direct"), t0);
        assert_eq!(
            drain(|| r.poll_output()),
            [Ack { to: 's', id: to }, dl(to, "direct")]
        );
    }

    // --- through the simulated network ------------------------------------------------------

    use super::super::sim::{Delivery, LinkProfile, SimNet};

    type Peer = u16;
    const SENDER: Peer = 0;

    #[derive(Debug, Clone)]
    enum Packet {
        Msg { id: u32, payload: Bytes },
        Ack { id: u32 },
        RtxRequest { id: u32 },
        RtxReply { id: u32, reply: Result<Bytes, Lost> },
    }

    #[derive(Debug, Clone, PartialEq)]
    enum Outcome {
        Delivered,
        Failed(Vec<Peer>, Instant),
    }

    fn payload_for(id: u32) -> Bytes {
        Bytes::from(id.to_be_bytes().to_vec())
    }

    /// How the application sends: `total` messages, `burst` at a time every `pace`.
    #[derive(Debug, Clone, Copy)]
    struct Traffic {
        total: u32,
        burst: u32,
        pace: Duration,
    }

    /// One sender and its receivers over a [`SimNet`], with everything they did recorded.
    struct Group {
        net: SimNet<Peer, Packet>,
        t0: Instant,
        now: Instant,
        sender: ReliableSender<Peer>,
        receivers: BTreeMap<Peer, ReliableReceiver<Peer>>,
        traffic: Traffic,
        sent: u32,
        sent_at: BTreeMap<u32, Instant>,
        outcome: BTreeMap<u32, Outcome>,
        delivered: BTreeMap<Peer, Vec<u32>>,
        not_delivered: Vec<ReceiverOutput<Peer>>,
        copies_to: BTreeMap<(Peer, u32), u32>,
        steps: u64,
    }

    struct Setup {
        seed: u64,
        link: LinkProfile,
        interval: Duration,
        max_retries: u32,
        window: usize,
        receivers: Peer,
        traffic: Traffic,
    }

    impl Group {
        fn new(setup: &Setup) -> Self {
            let t0 = Instant::now();
            let mut sender = ReliableSender::new(setup.interval, setup.max_retries, setup.window);
            let mut receivers = BTreeMap::new();
            for p in 1..=setup.receivers {
                sender.add_receiver(p, t0);
                receivers.insert(p, Self::receiver(setup).starting_at(FIRST_MESSAGE_ID));
            }
            Group {
                net: SimNet::new(setup.seed, setup.link),
                t0,
                now: t0,
                sender,
                receivers,
                traffic: setup.traffic,
                sent: 0,
                sent_at: BTreeMap::new(),
                outcome: BTreeMap::new(),
                delivered: BTreeMap::new(),
                not_delivered: Vec::new(),
                copies_to: BTreeMap::new(),
                steps: 0,
            }
        }

        fn receiver(setup: &Setup) -> ReliableReceiver<Peer> {
            ReliableReceiver::new(setup.interval, setup.max_retries)
        }

        /// When the application's next message is due.
        fn next_send_time(&self) -> Option<Instant> {
            let t = self.traffic;
            (self.sent < t.total).then(|| self.t0 + t.pace * (self.sent / t.burst))
        }

        fn app_send(&mut self) {
            while let Some(at) = self.next_send_time() {
                if at > self.now {
                    return;
                }
                let id = self.sender.next_id();
                match self.sender.send(payload_for(id), self.now) {
                    Ok(sent) => {
                        assert_eq!(sent, id);
                        self.sent += 1;
                        self.sent_at.insert(id, self.now);
                    }
                    Err(WindowFull { .. }) => return,
                }
            }
        }

        /// Turn every pending output into packets and records.
        fn pump(&mut self) {
            while let Some(out) = self.sender.poll_output() {
                match out {
                    SenderOutput::Transmit {
                        id, to, payload, ..
                    } => {
                        let targets: Vec<Peer> = match to {
                            None => self.sender.receivers().copied().collect(),
                            Some(p) => vec![p],
                        };
                        for p in targets {
                            *self.copies_to.entry((p, id)).or_default() += 1;
                            let packet = Packet::Msg {
                                id,
                                payload: payload.clone(),
                            };
                            self.net.send(SENDER, p, packet, self.now);
                        }
                    }
                    SenderOutput::Delivered { id } => {
                        let old = self.outcome.insert(id, Outcome::Delivered);
                        assert_eq!(old, None, "{id} resolved twice");
                    }
                    SenderOutput::Failed { id, peers } => {
                        let old = self.outcome.insert(id, Outcome::Failed(peers, self.now));
                        assert_eq!(old, None, "{id} resolved twice");
                    }
                }
            }
            for (&me, r) in &mut self.receivers {
                while let Some(out) = r.poll_output() {
                    match out {
                        ReceiverOutput::Ack { to, id } => {
                            self.net.send(me, to, Packet::Ack { id }, self.now)
                        }
                        ReceiverOutput::RtxRequest { to, id } => {
                            self.net.send(me, to, Packet::RtxRequest { id }, self.now)
                        }
                        ReceiverOutput::Deliver { from, id, payload } => {
                            assert_eq!(from, SENDER);
                            assert_eq!(payload, payload_for(id), "payload of {id}");
                            self.delivered.entry(me).or_default().push(id);
                        }
                        other => self.not_delivered.push(other),
                    }
                }
            }
        }

        fn dispatch(&mut self, d: Delivery<Peer, Packet>) {
            let now = self.now;
            if d.to == SENDER {
                match d.packet {
                    Packet::Ack { id } => self.sender.on_ack(&d.from, id),
                    Packet::RtxRequest { id } => {
                        let reply = match self.sender.on_rtx_request(id) {
                            RtxAnswer::Resend(payload) => Ok(payload),
                            RtxAnswer::Lost => Err(Lost),
                        };
                        self.net
                            .send(SENDER, d.from, Packet::RtxReply { id, reply }, now);
                    }
                    other => panic!("the sender got {other:?}"),
                }
            } else if let Some(r) = self.receivers.get_mut(&d.to) {
                match d.packet {
                    Packet::Msg { id, payload } => r.on_message(&d.from, id, payload, now),
                    Packet::RtxReply { id, reply } => r.on_rtx_reply(&d.from, id, reply, now),
                    other => panic!("a receiver got {other:?}"),
                }
            } // else: for a receiver that left
        }

        /// Advance to the next event, or to `limit`. False when there is nothing left to do
        /// (or `limit` is reached).
        fn step(&mut self, limit: Option<Instant>) -> bool {
            self.steps += 1;
            assert!(self.steps < 50_000_000, "runaway simulation");
            self.app_send();
            self.pump();
            let window_open = self.sender.in_flight() < self.sender.window();
            let mut next = [
                self.net.next_event_time(),
                self.sender.poll_timeout(),
                self.next_send_time().filter(|_| window_open),
            ]
            .into_iter()
            .flatten()
            .chain(self.receivers.values_mut().filter_map(|r| r.poll_timeout()))
            .min();
            if let (Some(l), Some(n)) = (limit, next) {
                if n > l {
                    next = None;
                }
            }
            let Some(t) = next else {
                if let Some(l) = limit {
                    self.now = self.now.max(l);
                }
                return false;
            };
            assert!(t >= self.now, "time goes forward");
            self.now = t;
            while let Some(d) = self.net.pop_due(t) {
                self.dispatch(d);
            }
            self.sender.handle_timeout(t);
            for r in self.receivers.values_mut() {
                r.handle_timeout(t);
            }
            true
        }

        fn run(&mut self) {
            while self.step(None) {}
            self.pump();
        }

        fn run_until(&mut self, limit: Instant) {
            while self.step(Some(limit)) {}
            self.pump();
        }

        fn simulated(&self) -> Duration {
            self.now - self.t0
        }

        fn delivered_to(&self, p: Peer) -> &[u32] {
            self.delivered.get(&p).map(Vec::as_slice).unwrap_or(&[])
        }

        /// Every receiver got 1..=total exactly once in order, nothing was lost, and the sender
        /// saw every message delivered.
        fn assert_all_delivered(&self) {
            let total = self.traffic.total;
            let all: Vec<u32> = (1..=total).collect();
            assert_eq!(self.sent, total);
            for &p in self.receivers.keys() {
                assert!(
                    self.delivered_to(p) == all.as_slice(),
                    "receiver {p}: {} delivered, first wrong at {:?}",
                    self.delivered_to(p).len(),
                    self.delivered_to(p)
                        .iter()
                        .zip(&all)
                        .position(|(a, b)| a != b)
                );
            }
            assert_eq!(self.not_delivered, [], "nothing lost or given up");
            let failed: Vec<_> = self
                .outcome
                .iter()
                .filter(|(_, o)| **o != Outcome::Delivered)
                .collect();
            assert_eq!(failed, Vec::<(&u32, &Outcome)>::new());
            assert_eq!(self.outcome.len() as u32, total, "every message resolved");
            assert_eq!(self.sender.in_flight(), 0);
        }
    }

    fn lossy() -> LinkProfile {
        LinkProfile {
            loss: 0.2,
            duplicate: 0.1,
            delay: 20 * MS,
            jitter: 60 * MS,
        }
    }

    fn run_report(name: &str, setup: Setup) -> Group {
        let wall = std::time::Instant::now();
        let mut g = Group::new(&setup);
        g.run();
        let wall = wall.elapsed();
        eprintln!(
            "{name}: {} messages to {} receivers, {:.0} simulated s in {:.3} real s, {:?}",
            g.sent,
            setup.receivers,
            g.simulated().as_secs_f64(),
            wall.as_secs_f64(),
            g.net.stats()
        );
        assert!(wall < Duration::from_secs(5), "{name} took {wall:?}");
        g
    }

    #[test]
    fn sim_one_to_one_lossy_everything_delivered_once_in_order() {
        let g = run_report(
            "1->1",
            Setup {
                seed: 1,
                link: lossy(),
                interval: 200 * MS,
                max_retries: 30,
                window: DEFAULT_WINDOW,
                receivers: 1,
                traffic: Traffic {
                    total: 10_000,
                    burst: 5,
                    pace: 1000 * MS,
                },
            },
        );
        g.assert_all_delivered();
        assert!(g.simulated() > Duration::from_secs(1999));
        let stats = g.net.stats();
        assert!(
            stats.lost > 1000 && stats.duplicated > 500,
            "the network was hostile"
        );
    }

    #[test]
    fn sim_one_to_nine_lossy_everything_delivered_once_in_order() {
        let g = run_report(
            "1->9",
            Setup {
                seed: 2,
                link: lossy(),
                interval: 200 * MS,
                max_retries: 30,
                window: DEFAULT_WINDOW,
                receivers: 9,
                traffic: Traffic {
                    total: 5_000,
                    burst: 5,
                    pace: 1000 * MS,
                },
            },
        );
        g.assert_all_delivered();
        assert!(g.simulated() > Duration::from_secs(999));
    }

    #[test]
    fn sim_pipelines_and_blocks_on_a_full_window() {
        // 2000 messages all due at t0 through a window of 16: the sender keeps 16 in flight.
        let g = run_report(
            "window",
            Setup {
                seed: 3,
                link: lossy(),
                interval: 200 * MS,
                max_retries: 30,
                window: 16,
                receivers: 3,
                traffic: Traffic {
                    total: 2_000,
                    burst: 2_000,
                    pace: 1000 * MS,
                },
            },
        );
        g.assert_all_delivered();
        // Stop-and-wait would need at least one round trip (>= 40 ms) per message.
        assert!(
            g.simulated() < Duration::from_secs(80),
            "pipelined: {:?}",
            g.simulated()
        );
    }

    #[test]
    fn sim_dead_link_fails_naming_the_peer_after_exactly_n_plus_1_intervals() {
        let setup = Setup {
            seed: 4,
            link: LinkProfile {
                loss: 0.0,
                duplicate: 0.1,
                delay: 10 * MS,
                jitter: 20 * MS,
            },
            interval: 100 * MS,
            max_retries: 5,
            window: DEFAULT_WINDOW,
            receivers: 3,
            traffic: Traffic {
                total: 50,
                burst: 5,
                pace: 1000 * MS,
            },
        };
        let mut g = Group::new(&setup);
        g.net.set_link(SENDER, 3, LinkProfile::dead());
        g.run();
        for id in 1..=50u32 {
            let at = g.sent_at[&id] + (setup.max_retries + 1) * setup.interval;
            assert_eq!(g.outcome[&id], Outcome::Failed(vec![3], at), "message {id}");
            assert_eq!(
                g.copies_to[&(3, id)],
                setup.max_retries + 1,
                "transmissions to 3"
            );
            assert_eq!(g.copies_to[&(1, id)], 1, "1 acked at once");
        }
        assert_eq!(g.delivered_to(1), (1..=50).collect::<Vec<_>>());
        assert_eq!(g.delivered_to(2), (1..=50).collect::<Vec<_>>());
        assert_eq!(g.delivered_to(3), [] as [u32; 0]);
    }

    #[test]
    fn sim_a_removed_receiver_no_longer_blocks_delivered() {
        let setup = Setup {
            seed: 5,
            link: lossy(),
            interval: 100 * MS,
            max_retries: 30,
            window: DEFAULT_WINDOW,
            receivers: 3,
            traffic: Traffic {
                total: 200,
                burst: 20,
                pace: 100 * MS,
            },
        };
        let mut g = Group::new(&setup);
        g.net.set_link(SENDER, 3, LinkProfile::dead());
        g.run_until(g.t0 + 2000 * MS);
        assert_eq!(g.sent, 200);
        assert!(g.outcome.is_empty(), "all wait for 3: {:?}", g.outcome);
        g.sender.remove_receiver(&3);
        g.receivers.remove(&3);
        g.run();
        g.assert_all_delivered();
        assert!(
            g.simulated() < Duration::from_secs(4),
            "resolved by the removal"
        );
    }

    #[test]
    fn sim_a_receiver_joining_mid_stream_starts_at_the_first_id_it_sees() {
        let setup = Setup {
            seed: 6,
            link: lossy(),
            interval: 200 * MS,
            max_retries: 30,
            window: DEFAULT_WINDOW,
            receivers: 1,
            traffic: Traffic {
                total: 1000,
                burst: 1,
                pace: 10 * MS,
            },
        };
        let mut g = Group::new(&setup);
        g.run_until(g.t0 + 4995 * MS);
        assert_eq!(g.sent, 500);
        g.sender.add_receiver(2, g.now);
        g.receivers.insert(2, Group::receiver(&setup)); // no configured start
        g.run();

        let all: Vec<u32> = (1..=1000).collect();
        assert_eq!(g.delivered_to(1), all.as_slice());
        let joined = g.delivered_to(2);
        let first = joined[0];
        assert!((501..520).contains(&first), "first id seen by 2: {first}");
        assert_eq!(joined, &all[first as usize - 1..], "contiguous from there");
        assert_eq!(g.not_delivered, []);
        for id in 1..=1000u32 {
            match &g.outcome[&id] {
                Outcome::Delivered => assert!(id <= 500 || id >= first, "{id}"),
                // Sent to 2 before its stream started there: never delivered, so never acked.
                Outcome::Failed(peers, _) => {
                    assert!((501..first).contains(&id), "{id} failed");
                    assert_eq!(peers, &[2]);
                }
            }
        }
    }

    #[test]
    fn sim_same_seed_same_run() {
        let setup = || Setup {
            seed: 9,
            link: lossy(),
            interval: 100 * MS,
            max_retries: 30,
            window: 64,
            receivers: 2,
            traffic: Traffic {
                total: 300,
                burst: 10,
                pace: 100 * MS,
            },
        };
        let mut a = Group::new(&setup());
        a.run();
        let mut b = Group::new(&setup());
        b.run();
        assert_eq!(a.net.stats(), b.net.stats());
        assert_eq!(a.simulated(), b.simulated());
        assert_eq!(a.steps, b.steps);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]

        /// Whatever the seed, loss (up to 30 %), duplication and reordering: exactly once, in
        /// order, and every message reported delivered.
        #[test]
        fn sim_exactly_once_in_order(
            seed in proptest::prelude::any::<u64>(),
            loss in 0.0f64..0.3,
            duplicate in 0.0f64..0.2,
            jitter_ms in 0u32..100,
            receivers in 1u16..=4,
            burst in 1u32..50,
            window in 1usize..600,
        ) {
            let mut g = Group::new(&Setup {
                seed,
                link: LinkProfile { loss, duplicate, delay: 10 * MS, jitter: jitter_ms * MS },
                interval: 150 * MS,
                max_retries: 40,
                window,
                receivers,
                traffic: Traffic { total: 300, burst, pace: 200 * MS },
            });
            g.run();
            g.assert_all_delivered();
        }
    }
}
