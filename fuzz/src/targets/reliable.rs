//! Target `reliable`: the receiving half of reliable delivery ([`ReliableReceiver`]) fed data
//! messages, retransmission replies, source removals and time, from up to [`SOURCES`] sources.
//!
//! Layout: two configuration bytes, then operations until the input ends. An operation is one
//! byte, `kind | source << 3 | flag << 7` ([`op`] builds it), then its arguments:
//!
//! | kind | operation | arguments |
//! |---|---|---|
//! | [`MSG`] | `on_message(source, id)` | id |
//! | [`RTX_OK`] | `on_rtx_reply(source, id, Ok(payload))` | id |
//! | [`RTX_LOST`] | `on_rtx_reply(source, id, Err(Lost))` | id |
//! | [`REMOVE`] | `remove_source(source)` | |
//! | [`ADVANCE`] | time passes, timers run | `u16` ms |
//! | [`DUPLICATE`] | `is_duplicate(source, id)`, then the message | id |
//!
//! An id is one byte: the flag set means a `u32` follows (an absolute id), clear means the byte
//! is a signed offset from the source's next expected id. Payloads are a function of
//! (source, id), so a delivery of the wrong payload is visible.
//!
//! Configuration: byte 0 bits 0–1 `max_retries` (0–3), bits 3–7 the retransmission interval
//! (`(n + 1) × 20` ms); byte 1 bits 0–4 `max_gap - 1` (1–32), bit 7 every stream starts at
//! [`FIRST_MESSAGE_ID`] (`starting_at`, as a point-to-point session) instead of at its first
//! message.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use slim_reference::session::reliable::{
    data_id_after, is_sequenced, Lost, ReceiverOutput, ReliableReceiver, FIRST_MESSAGE_ID,
};

use crate::alloc::Usage;
use crate::input::Input;

/// Sources a receiver hears from, at most.
pub const SOURCES: u8 = 4;

/// Operation kinds (low three bits).
pub const MSG: u8 = 0;
/// See the module documentation.
pub const RTX_OK: u8 = 1;
/// See the module documentation.
pub const RTX_LOST: u8 = 2;
/// See the module documentation.
pub const REMOVE: u8 = 3;
/// See the module documentation.
pub const ADVANCE: u8 = 4;
/// See the module documentation.
pub const DUPLICATE: u8 = 5;

/// The operation byte for `kind` from `source`, `absolute` choosing the id encoding.
pub fn op(kind: u8, source: u8, absolute: bool) -> u8 {
    (kind & 7) | ((source % SOURCES) << 3) | (u8::from(absolute) << 7)
}

/// Operations one input may run, at most. The gap logic is the same for any `max_gap`, so the
/// gaps are kept small (at most 32) and inputs short, for throughput: each operation may open a
/// whole gap (`max_gap` slots, timers and RTX requests).
pub const MAX_OPS: usize = 128;

/// Timer rounds the final drain may take before the receiver is deemed never to settle.
const MAX_SETTLE_ROUNDS: usize = 100_000;

/// The payload of message `id` from `src`.
fn payload(src: u8, id: u32) -> Bytes {
    let mut b = vec![src];
    b.extend_from_slice(&id.to_le_bytes());
    Bytes::from(b)
}

/// The allocation bound of this target: the receiver buffers up to `max_gap` slots per source
/// by design (a message `max_gap` ahead opens that many), so the bound is linear in the input
/// *and* in `max_gap` × the streams started.
#[derive(Debug, Clone, Copy)]
pub struct ReliableBound {
    /// Streams started (first message of a source, or after its removal).
    pub streams: usize,
    /// The receiver's `max_gap`.
    pub max_gap: usize,
}

impl ReliableBound {
    /// Bytes per buffered slot: the slot, its timer (twice, the heap grows by doubling), its
    /// RTX request, with the containers' doubling slack.
    pub const PER_SLOT: usize = 512;
    /// Bytes per input byte.
    pub const PER_BYTE: usize = 512;
    /// Fixed part.
    pub const FIXED: usize = 64 * 1024;

    /// Panics when `usage` exceeds `FIXED + PER_BYTE × len + PER_SLOT × streams × max_gap`.
    pub fn check(&self, len: usize, usage: Usage) {
        let limit = Self::FIXED
            + Self::PER_BYTE * len
            + Self::PER_SLOT * (self.streams.max(1)) * self.max_gap;
        assert!(
            usage.peak <= limit,
            "reliable: {} heap bytes live for an input of {len} bytes, {} streams, max_gap {}: \
             over the bound {limit} (allocation amplification)",
            usage.peak,
            self.streams,
            self.max_gap
        );
    }
}

/// What the harness expects of one source's stream.
#[derive(Debug, Default, Clone, Copy)]
struct Stream {
    /// The next id the application must get, once the stream started.
    next: Option<u32>,
}

/// Runs one operation sequence against a fresh receiver; returns what the bound needs.
///
/// Catches: panics (sequence arithmetic, buffer indexing, timers) and broken guarantees:
/// - each source's ids reach the application exactly once and in order (delivered, lost or
///   given up), with the payload that was sent for that id;
/// - an acknowledgement is only for the id just received from that source;
/// - a message `is_duplicate` calls a duplicate is not delivered (again);
/// - after `handle_timeout(now)`, no timer is due at or before `now`;
/// - once time runs on, every gap is resolved: the receiver ends idle (no stuck stream).
pub fn reliable_body(data: &[u8]) -> ReliableBound {
    let mut input = Input::new(data);
    let (c0, c1) = (input.u8().unwrap_or(0), input.u8().unwrap_or(0));
    let max_retries = u32::from(c0 & 3);
    let interval = Duration::from_millis(20 * (u64::from(c0 >> 3) + 1));
    let max_gap = u32::from(c1 & 0x1f) + 1;
    let start = (c1 & 0x80 != 0).then_some(FIRST_MESSAGE_ID);
    let mut rx: ReliableReceiver<u8> =
        ReliableReceiver::new(interval, max_retries).max_gap(max_gap);
    if let Some(first) = start {
        rx = rx.starting_at(first);
    }
    let mut now = Instant::now();
    let mut streams: BTreeMap<u8, Stream> = BTreeMap::new();
    let mut started = 0usize;
    for _ in 0..MAX_OPS {
        let Some(b) = input.u8() else {
            break;
        };
        let src = (b >> 3) % SOURCES;
        let absolute = b & 0x80 != 0;
        let kind = b & 7;
        let id = if matches!(kind, MSG | RTX_OK | RTX_LOST | DUPLICATE) {
            let next = streams
                .get(&src)
                .and_then(|s| s.next)
                .unwrap_or(FIRST_MESSAGE_ID);
            let id = if absolute {
                input.u32()
            } else {
                input
                    .u8()
                    .map(|d| data_id_after(next, (i64::from(d as i8) + (1 << 31)) as u64))
            };
            let Some(id) = id else {
                break;
            };
            id
        } else {
            0
        };
        let mut acked_ok = None;
        match kind {
            MSG | DUPLICATE | RTX_OK => {
                let dup = kind == DUPLICATE && rx.is_duplicate(&src, id);
                if is_sequenced(id) && streams.get(&src).is_none_or(|s| s.next.is_none()) {
                    let first = start.unwrap_or(id);
                    streams.insert(src, Stream { next: Some(first) });
                    started += 1;
                }
                if kind == RTX_OK {
                    rx.on_rtx_reply(&src, id, Ok(payload(src, id)), now);
                } else {
                    rx.on_message(&src, id, payload(src, id), now);
                }
                acked_ok = Some((id, dup));
            }
            RTX_LOST => rx.on_rtx_reply(&src, id, Err(Lost), now),
            REMOVE => {
                rx.remove_source(&src);
                streams.remove(&src);
            }
            ADVANCE => {
                let Some(ms) = input.u16() else {
                    break;
                };
                now += Duration::from_millis(u64::from(ms));
                rx.handle_timeout(now);
                if let Some(at) = rx.poll_timeout() {
                    assert!(at > now, "handle_timeout left a timer due at or before now");
                }
            }
            _ => {}
        }
        drain(&mut rx, &mut streams, Some(src), acked_ok);
    }
    // Let time run until nothing is pending: every gap must resolve.
    for _ in 0..MAX_SETTLE_ROUNDS {
        let Some(at) = rx.poll_timeout() else {
            break;
        };
        now = now.max(at);
        rx.handle_timeout(now);
        drain(&mut rx, &mut streams, None, None);
    }
    assert_eq!(rx.poll_timeout(), None, "the receiver never settles");
    assert!(rx.is_idle(), "a gap stays open with no timer to resolve it");
    ReliableBound {
        streams: started,
        max_gap: max_gap as usize,
    }
}

/// Checks the receiver's outputs against each source's stream.
fn drain(
    rx: &mut ReliableReceiver<u8>,
    streams: &mut BTreeMap<u8, Stream>,
    src: Option<u8>,
    received: Option<(u32, bool)>,
) {
    let mut resolve = |from: u8, id: u32, what: &str| {
        let s = streams.entry(from).or_default();
        match s.next {
            Some(next) => assert_eq!(
                id, next,
                "{what} {id} from source {from} out of order: {next} was next"
            ),
            None => panic!("{what} {id} from source {from}, whose stream never started"),
        }
        s.next = Some(data_id_after(id, 1));
    };
    while let Some(o) = rx.poll_output() {
        match o {
            ReceiverOutput::Ack { to, id } => {
                assert_eq!(Some(to), src, "an ack to a source that sent nothing now");
                assert_eq!(
                    received.map(|r| r.0),
                    Some(id),
                    "an ack for an id that was not just received"
                );
            }
            ReceiverOutput::RtxRequest { to, .. } => {
                assert!(to < SOURCES, "an RTX request to an unknown source");
            }
            ReceiverOutput::Deliver {
                from,
                id,
                payload: p,
            } => {
                assert_eq!(
                    p,
                    payload(from, id),
                    "message {id} delivered with another payload"
                );
                if is_sequenced(id) {
                    if let Some((rid, true)) = received {
                        assert_ne!(
                            rid, id,
                            "is_duplicate said no, then {id} was delivered again"
                        );
                    }
                    resolve(from, id, "delivery of");
                } else {
                    assert_eq!(
                        received.map(|r| r.0),
                        Some(id),
                        "an unsequenced id out of the blue"
                    );
                }
            }
            ReceiverOutput::Lost { from, id } => resolve(from, id, "loss of"),
            ReceiverOutput::GaveUp { from, id } => resolve(from, id, "give-up of"),
        }
    }
}
