//! The sending half of reliable delivery: numbers outgoing messages, keeps them until every
//! receiver acked, retransmits to the receivers still missing one, answers RTX requests, and
//! reports each message's outcome (see the [module documentation](super)).

use crate::mutants::session::{self as mutants, SessionFault};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::fmt::Debug;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::sequence::{data_id_after, id_distance, FIRST_MESSAGE_ID, MAX_SEQUENCE_ID};

/// The number of messages a session's [`ReliableSender`] keeps unresolved at once: the window
/// every reliable session runs with (the SDK has no such limit; see the module documentation).
pub const DEFAULT_WINDOW: usize = 4096;

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
/// lives in ring slot `seq % window`. The ring grows with the messages sent, up to `window`
/// slots: an idle session or one that sent a few messages holds a few slots, not `window` of
/// them (a fuzzed endpoint with 16 reliable sessions held 4.6 MiB of empty slots).
#[derive(Debug)]
pub struct ReliableSender<P> {
    interval: Duration,
    max_retries: u32,
    /// The most messages unresolved at once, and the ring's final size.
    window: usize,
    /// Ring slot `seq % window` of every `seq` sent; `min(next_seq, window)` long.
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
        ReliableSender {
            interval,
            max_retries,
            window: window.max(1),
            slots: Vec::new(),
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
        self.window
    }

    /// How many messages are unresolved (neither delivered nor failed), counting from the oldest.
    pub fn in_flight(&self) -> usize {
        (self.next_seq - self.unresolved_from) as usize
    }

    /// The id the next [`send`](Self::send) will use.
    pub fn next_id(&self) -> u32 {
        data_id_after(self.first_id, self.next_seq)
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
        if self.in_flight() >= self.window {
            return Err(WindowFull {
                window: self.window,
            });
        }
        let seq = self.next_seq;
        let id = self.id_of(seq);
        let pos = self.pos(seq);
        self.next_seq += 1;
        let slot = SendSlot {
            seq,
            payload,
            state: SendState::Held,
            waiting: 0,
        };
        // Until the ring is full, `pos == seq == slots.len()`: the ring grows by this slot.
        match self.slots.get_mut(pos) {
            Some(s) => *s = slot,
            None => self.slots.push(slot),
        }
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
        self.receivers.insert(peer, Missing::new(self.window));
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
            let id = data_id_after(self.first_id, seq);
            if transmissions <= self.max_retries {
                let next = now + self.interval;
                slot.state = SendState::Pending {
                    transmissions: transmissions + 1,
                    deadline: next,
                };
                // Seeded fault: retries count down but nothing is resent (SLIM-REL-003).
                let resend = !mutants::on(SessionFault::NoRetransmit);
                for (peer, missing) in &self.receivers {
                    if resend && missing.get(pos) {
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
        (seq % self.window as u64) as usize
    }

    fn id_of(&self, seq: u64) -> u32 {
        data_id_after(self.first_id, seq)
    }

    /// The `seq` of wire id `id` if that message is still in the ring.
    fn seq_of(&self, id: u32) -> Option<u64> {
        let back = u64::from(id_distance(id, self.next_id()));
        if back == 0 || back > self.next_seq || back > self.window as u64 {
            return None;
        }
        let seq = self.next_seq - back;
        (self.slots[self.pos(seq)].seq == seq).then_some(seq)
    }
}
