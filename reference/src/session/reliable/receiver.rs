//! The receiving half of reliable delivery: acks, reorders, requests the gaps, and hands the
//! application every id of each source's stream exactly once and in order, as a payload, a
//! "lost" or a "gave up" (see the [module documentation](super)).

use crate::mutants::session::{self as mutants, SessionFault};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::fmt::Debug;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::sequence::{data_id_after, id_distance, is_sequenced, HALF_SPACE, MAX_SEQUENCE_ID};

/// The default [`ReliableReceiver::max_gap`].
pub const DEFAULT_MAX_GAP: u32 = 1 << 16;

/// How many ids a receiver remembers as resolved-but-not-delivered, per source, so it does not
/// ack a late copy of them.
const UNDELIVERED_MEMORY: usize = 1024;

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

    /// Every new source's stream starts at `first` (usually [`FIRST_MESSAGE_ID`](super::FIRST_MESSAGE_ID)): earlier
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
                // Seeded fault: the duplicate is delivered again (SLIM-REL-005).
                if mutants::on(SessionFault::DeliverDuplicates) {
                    self.out.push_back(ReceiverOutput::Deliver {
                        from: src.clone(),
                        id,
                        payload,
                    });
                }
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
                let missing = data_id_after(source.next, k as u64);
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
            source.next = data_id_after(id, 1);
            source.resolved = source.resolved.saturating_add(1);
        }
    }
}
