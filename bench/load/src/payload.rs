//! The benchmark payload: who sent it, its sequence number and when.
//!
//! Layout (little-endian), padded with zeros to the requested size:
//!
//! ```text
//! magic "SLB1" (4) | publisher u32 (4) | seq u64 (8) | sent_nanos u64 (8) | padding…
//! ```
//!
//! `sent_nanos` counts from a run-local monotonic epoch ([`std::time::Instant`]) shared by every
//! client of the run, which all live in this process, so latency needs no clock synchronisation.

/// Marks a benchmark payload; anything else on the wire is ignored by receivers.
pub const MAGIC: [u8; 4] = *b"SLB1";

/// Bytes the header of a payload takes; `--size` must be at least this.
pub const HEADER_LEN: usize = 24;

/// The decoded header of a benchmark payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Index of the publishing client.
    pub publisher: u32,
    /// Sequence number within that publisher, from 0 (warm-up messages first).
    pub seq: u64,
    /// Send time in nanoseconds since the run's epoch.
    pub sent_nanos: u64,
}

impl Stamp {
    /// Writes the stamp into the first [`HEADER_LEN`] bytes of `buf`.
    ///
    /// `buf` must be at least [`HEADER_LEN`] long; callers size it from a validated `--size`.
    pub fn write(&self, buf: &mut [u8]) {
        if buf.len() < HEADER_LEN {
            return;
        }
        buf[0..4].copy_from_slice(&MAGIC);
        buf[4..8].copy_from_slice(&self.publisher.to_le_bytes());
        buf[8..16].copy_from_slice(&self.seq.to_le_bytes());
        buf[16..24].copy_from_slice(&self.sent_nanos.to_le_bytes());
    }

    /// Reads a stamp; `None` for anything that is not a benchmark payload.
    pub fn read(buf: &[u8]) -> Option<Stamp> {
        if buf.len() < HEADER_LEN || buf[0..4] != MAGIC {
            return None;
        }
        let u32_at = |i: usize| buf.get(i..i + 4)?.try_into().ok().map(u32::from_le_bytes);
        let u64_at = |i: usize| buf.get(i..i + 8)?.try_into().ok().map(u64::from_le_bytes);
        Some(Stamp {
            publisher: u32_at(4)?,
            seq: u64_at(8)?,
            sent_nanos: u64_at(16)?,
        })
    }
}

/// A zeroed payload of `size` bytes carrying `stamp`.
pub fn build(stamp: Stamp, size: usize) -> Vec<u8> {
    let mut buf = vec![0u8; size.max(HEADER_LEN)];
    stamp.write(&mut buf);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let s = Stamp {
            publisher: 7,
            seq: 123_456_789,
            sent_nanos: 42,
        };
        let buf = build(s, 128);
        assert_eq!(buf.len(), 128);
        assert_eq!(Stamp::read(&buf), Some(s));
        assert_eq!(Stamp::read(&buf[..20]), None);
        let mut bad = buf.clone();
        bad[0] = b'X';
        assert_eq!(Stamp::read(&bad), None);
    }
}
