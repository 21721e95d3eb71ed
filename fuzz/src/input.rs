//! Reading structured operations out of raw fuzz bytes, and writing them (for seeds).
//!
//! The stateful targets (relay, session, reliable receiver) decode their input as a sequence of
//! operations. Every byte string decodes to *some* sequence (a short read ends it), so the fuzzer
//! never wastes inputs on a parse error of the harness itself, and a mutation of one operation
//! leaves the others intact. [`Writer`] is the inverse, used to turn the repository's vectors
//! into seeds.

/// A cursor over fuzz bytes. Every read returns `None` once the bytes run out.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// One byte.
    pub fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    /// A little-endian `u16`.
    pub fn u16(&mut self) -> Option<u16> {
        let b = self.bytes(2)?;
        Some(u16::from_le_bytes([b[0], b[1]]))
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self) -> Option<u32> {
        let b = self.bytes(4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Exactly `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.data.len() < n {
            self.data = &[];
            return None;
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Some(head)
    }

    /// A chunk: a `u16` length, then that many bytes, or all that is left when fewer remain
    /// (so a truncated input still feeds its last chunk).
    pub fn chunk(&mut self) -> Option<&'a [u8]> {
        let len = usize::from(self.u16()?);
        let n = len.min(self.data.len());
        self.bytes(n)
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// Builds inputs in the format [`Input`] reads.
#[derive(Debug, Clone, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty input.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one byte.
    pub fn u8(&mut self, b: u8) -> &mut Self {
        self.buf.push(b);
        self
    }

    /// Appends a little-endian `u16`.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends a little-endian `u32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    /// Appends a chunk ([`Input::chunk`]): a `u16` length (the bytes are cut at 65 535).
    pub fn chunk(&mut self, b: &[u8]) -> &mut Self {
        let n = b.len().min(usize::from(u16::MAX));
        self.u16(n as u16);
        self.bytes(&b[..n])
    }

    /// The input.
    pub fn finish(&self) -> Vec<u8> {
        self.buf.clone()
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_and_reader_agree() {
        let data = Writer::new()
            .u8(7)
            .u16(513)
            .u32(70_000)
            .chunk(b"abc")
            .finish();
        let mut r = Input::new(&data);
        assert_eq!(r.u8(), Some(7));
        assert_eq!(r.u16(), Some(513));
        assert_eq!(r.u32(), Some(70_000));
        assert_eq!(r.chunk(), Some(&b"abc"[..]));
        assert!(r.is_empty());
        assert_eq!(r.u8(), None);
    }

    #[test]
    fn a_truncated_chunk_yields_what_is_left() {
        let mut r = Input::new(&[10, 0, 1, 2]);
        assert_eq!(r.chunk(), Some(&[1u8, 2][..]));
        assert!(r.is_empty());
    }
}
