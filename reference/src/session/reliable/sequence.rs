//! The id space of sequenced data messages (WIRE.md §5.1) and its arithmetic: where ids start,
//! where they wrap, and which of two ids comes first. The one place these rules live; the
//! sender, the receiver and the session all use them.

/// The largest id of a sequenced data message (`MAX_PUBLISH_ID = 2^31 - 1` in the SDK).
///
/// Sequenced ids live in `0..=MAX_SEQUENCE_ID` and wrap from `MAX_SEQUENCE_ID` to 0
/// (`session_sender.rs :: id_and_fanout`). Larger ids are `publish_to` messages, which bypass
/// ordering (see [`is_sequenced`]).
pub const MAX_SEQUENCE_ID: u32 = (1 << 31) - 1;

/// The id of a sender's first message (`FIRST_MESSAGE_ID` in the SDK).
pub const FIRST_MESSAGE_ID: u32 = 1;

/// Half the sequence space: an id less than this far ahead is "after", otherwise "before" (the
/// SDK's `receiver_buffer.rs :: is_after`).
pub(crate) const HALF_SPACE: u32 = 1 << 30;

/// Whether `id` belongs to the ordered stream (true) or is a `publish_to` message (false), which
/// the receiver delivers on arrival (WIRE.md §5.1).
pub fn is_sequenced(id: u32) -> bool {
    id <= MAX_SEQUENCE_ID
}

/// The data message id `n` places after `id` in a sender's sequence (ids wrap after
/// [`MAX_SEQUENCE_ID`], as the SDK's).
pub fn data_id_after(id: u32, n: u64) -> u32 {
    ((u64::from(id) + n) % (u64::from(MAX_SEQUENCE_ID) + 1)) as u32
}

/// How far `to` is ahead of `from` in the sequence space (0..2^31).
pub(crate) fn id_distance(from: u32, to: u32) -> u32 {
    to.wrapping_sub(from) & MAX_SEQUENCE_ID
}
