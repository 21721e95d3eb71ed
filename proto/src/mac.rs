//! The per-link header MAC (SLIM-MAC-*).
//!
//! After link negotiation both ends of a link share a 32-byte key. Every Subscribe, Unsubscribe
//! and Publish sent on the link carries `SLIMHeader.header_mac = HMAC-SHA256(key, preimage)`,
//! where the preimage is a canonical little-endian encoding of the routing-relevant header fields
//! bound to the link id. A node re-signs every message with the key of the link it leaves on.
//!
//! Covered: link id, source, destination (hashed and string forms), identity, fanout, recv_from,
//! forward_to, error, ttl. Not covered (so a node may change them, or they are end-to-end):
//! version, incoming_conn, header_mac itself, e2e_header_sig, the session header, the payload and
//! `Message.metadata`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::pb;

/// Domain separator at the start of every preimage, NUL included (15 bytes).
pub const DOMAIN_V1: &[u8] = b"SLIM-DP-HDR-v1\0";

/// Length of a header MAC tag and of a link MAC key.
pub const TAG_LEN: usize = 32;

/// Why a header MAC could not be produced or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacError {
    /// The header carries no `header_mac` (SLIM-MAC-004).
    #[error("header_mac is missing")]
    MissingTag,
    /// The tag is not 32 bytes.
    #[error("header_mac is {0} bytes, expected 32")]
    BadTagLength(usize),
    /// The tag does not match the preimage under this link's key.
    #[error("header_mac does not verify with this link's key (a MAC-covered field was changed, or the sender used another key or link id)")]
    Mismatch,
}

/// The MAC state of one link: its key and its link id (both are bound into every tag).
#[derive(Clone)]
pub struct LinkMac {
    key: [u8; TAG_LEN],
    link_id: String,
    /// HMAC state with the key already absorbed (inner and outer pads), cloned per tag so the
    /// two key-block compressions are paid once per link instead of once per message.
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for LinkMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkMac")
            .field("link_id", &self.link_id)
            .finish_non_exhaustive()
    }
}

impl LinkMac {
    /// MAC state from a derived key (see [`crate::link::derive_link_mac`]) and the link id.
    pub fn new(key: [u8; TAG_LEN], link_id: &str) -> Self {
        // HMAC accepts keys of any length; a 32-byte key cannot fail.
        let keyed = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap_or_else(|_| unreachable!());
        Self {
            key,
            link_id: link_id.to_string(),
            keyed,
        }
    }

    /// The raw key (for test vectors).
    pub fn key(&self) -> &[u8; TAG_LEN] {
        &self.key
    }

    /// The link id bound into every tag.
    pub fn link_id(&self) -> &str {
        &self.link_id
    }

    /// The tag for `header` as it is (its current `header_mac` is ignored).
    pub fn tag(&self, header: &pb::SlimHeader) -> [u8; TAG_LEN] {
        self.tag_fields(&MacFields::from(header))
    }

    /// The tag for a header given by its covered fields (the relay's frame path, which reads
    /// them from the received bytes without decoding a [`pb::SlimHeader`]).
    pub fn tag_fields(&self, fields: &MacFields<'_>) -> [u8; TAG_LEN] {
        let mut mac = self.hmac();
        let mut sink = Buffered::new(&mut mac);
        write_preimage(&mut sink, fields, &self.link_id);
        sink.flush();
        mac.finalize().into_bytes().into()
    }

    /// Sets `header.header_mac` to this link's tag (SLIM-MAC-003).
    pub fn sign(&self, header: &mut pb::SlimHeader) {
        header.header_mac = Some(bytes::Bytes::copy_from_slice(&self.tag(header)));
    }

    /// Checks `header.header_mac` in constant time (SLIM-MAC-004).
    pub fn verify(&self, header: &pb::SlimHeader) -> Result<(), MacError> {
        self.verify_fields(&MacFields::from(header), header.header_mac.as_deref())
    }

    /// Checks `tag` (the received `header_mac`, if any) against the covered fields, in constant
    /// time (SLIM-MAC-004).
    pub fn verify_fields(
        &self,
        fields: &MacFields<'_>,
        tag: Option<&[u8]>,
    ) -> Result<(), MacError> {
        let tag = tag.ok_or(MacError::MissingTag)?;
        if tag.len() != TAG_LEN {
            return Err(MacError::BadTagLength(tag.len()));
        }
        let mut mac = self.hmac();
        let mut sink = Buffered::new(&mut mac);
        write_preimage(&mut sink, fields, &self.link_id);
        sink.flush();
        mac.verify_slice(tag).map_err(|_| MacError::Mismatch)
    }

    fn hmac(&self) -> Hmac<Sha256> {
        self.keyed.clone()
    }
}

/// The header fields the MAC covers (SLIM-MAC-002), borrowed from wherever the header is held: a
/// decoded [`pb::SlimHeader`] (`From`) or the bytes of a received frame
/// ([`crate::frame::PublishFrame`]). Both go through the one preimage writer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MacFields<'a> {
    /// `source`.
    pub source: Option<NameFields<'a>>,
    /// `destination`.
    pub destination: Option<NameFields<'a>>,
    /// `identity`, as bytes.
    pub identity: &'a [u8],
    /// `fanout`.
    pub fanout: u32,
    /// `recv_from`.
    pub recv_from: Option<u64>,
    /// `forward_to`.
    pub forward_to: Option<u64>,
    /// `error`.
    pub error: Option<bool>,
    /// `ttl`.
    pub ttl: u32,
}

/// The covered parts of a `Name`: its hashed form and its string components.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NameFields<'a> {
    /// `Name.name`, the hashed form.
    pub encoded: Option<&'a pb::EncodedName>,
    /// `Name.str_name`'s three components, as bytes.
    pub strs: Option<[&'a [u8]; 3]>,
}

impl<'a> From<&'a pb::Name> for NameFields<'a> {
    fn from(name: &'a pb::Name) -> Self {
        Self {
            encoded: name.name.as_ref(),
            strs: name.str_name.as_ref().map(|s| {
                [
                    s.str_component_0.as_bytes(),
                    s.str_component_1.as_bytes(),
                    s.str_component_2.as_bytes(),
                ]
            }),
        }
    }
}

impl<'a> From<&'a pb::SlimHeader> for MacFields<'a> {
    fn from(h: &'a pb::SlimHeader) -> Self {
        Self {
            source: h.source.as_ref().map(NameFields::from),
            destination: h.destination.as_ref().map(NameFields::from),
            identity: h.identity.as_bytes(),
            fanout: h.fanout,
            recv_from: h.recv_from,
            forward_to: h.forward_to,
            error: h.error,
            ttl: h.ttl,
        }
    }
}

/// The exact bytes the MAC covers (SLIM-MAC-002). All integers little-endian;
/// `bytes(x) = u32le(len x) || x`; optional fields are `0x00` or `0x01 || value`.
pub fn preimage(header: &pb::SlimHeader, link_id: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(160 + link_id.len());
    write_preimage(&mut buf, &MacFields::from(header), link_id);
    buf
}

/// Where the preimage goes: a buffer ([`preimage`]) or, on the hot path, the keyed HMAC state
/// through a stack buffer ([`Buffered`]), so signing and verifying allocate nothing. One writer
/// serves both, so the bytes MACed are by construction the bytes [`preimage`] returns.
trait Sink {
    fn put(&mut self, data: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, data: &[u8]) {
        self.extend_from_slice(data);
    }
}

/// Collects the preimage's many small pieces (one to eight bytes each) on the stack and hands
/// them to the HMAC in block-sized updates: one `update` per piece cost more than the hashing.
struct Buffered<'m> {
    mac: &'m mut Hmac<Sha256>,
    buf: [u8; 256],
    len: usize,
}

impl<'m> Buffered<'m> {
    fn new(mac: &'m mut Hmac<Sha256>) -> Self {
        Self {
            mac,
            buf: [0; 256],
            len: 0,
        }
    }

    fn flush(&mut self) {
        self.mac.update(&self.buf[..self.len]);
        self.len = 0;
    }
}

impl Sink for Buffered<'_> {
    fn put(&mut self, data: &[u8]) {
        if self.len + data.len() > self.buf.len() {
            self.flush();
            if data.len() > self.buf.len() {
                self.mac.update(data);
                return;
            }
        }
        self.buf[self.len..self.len + data.len()].copy_from_slice(data);
        self.len += data.len();
    }
}

fn write_preimage(out: &mut impl Sink, f: &MacFields<'_>, link_id: &str) {
    out.put(DOMAIN_V1);
    put_bytes(out, link_id.as_bytes());
    put_name(out, f.source.as_ref());
    put_name(out, f.destination.as_ref());
    put_bytes(out, f.identity);
    out.put(&f.fanout.to_le_bytes());
    put_opt_u64(out, f.recv_from);
    put_opt_u64(out, f.forward_to);
    match f.error {
        None => out.put(&[0]),
        Some(b) => out.put(&[1, u8::from(b)]),
    }
    out.put(&f.ttl.to_le_bytes());
}

fn put_bytes(out: &mut impl Sink, data: &[u8]) {
    // A header field longer than 4 GiB cannot arrive: messages are limited to 4 MiB.
    out.put(&(data.len() as u32).to_le_bytes());
    out.put(data);
}

fn put_opt_u64(out: &mut impl Sink, v: Option<u64>) {
    match v {
        None => out.put(&[0]),
        Some(x) => {
            out.put(&[1]);
            out.put(&x.to_le_bytes());
        }
    }
}

fn put_name(out: &mut impl Sink, name: Option<&NameFields<'_>>) {
    let Some(name) = name else {
        out.put(&[0]);
        return;
    };
    out.put(&[1]);
    match name.encoded {
        None => out.put(&[0]),
        Some(enc) => {
            out.put(&[1]);
            for c in [enc.component_0, enc.component_1, enc.component_2] {
                out.put(&c.to_le_bytes());
            }
            match &enc.name_id {
                None => out.put(&[0]),
                Some(id) => {
                    out.put(&[1]);
                    out.put(&id.id_0.to_le_bytes());
                    out.put(&id.id_1.to_le_bytes());
                }
            }
        }
    }
    match name.strs {
        None => out.put(&[0]),
        Some(strs) => {
            out.put(&[1]);
            for s in strs {
                put_bytes(out, s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::SlimName;
    use proptest::prelude::*;

    fn header() -> pb::SlimHeader {
        pb::SlimHeader {
            source: Some(
                SlimName::new("org", "default", "alice")
                    .with_id(7)
                    .to_proto(),
            ),
            destination: Some(SlimName::new("org", "default", "app").to_proto()),
            identity: "token".into(),
            fanout: 1,
            version: "3.4.6".into(),
            ttl: 8,
            ..Default::default()
        }
    }

    #[test]
    fn preimage_layout_is_exact() {
        let h = pb::SlimHeader {
            fanout: 0x0102_0304,
            ttl: 9,
            recv_from: Some(5),
            error: Some(true),
            ..Default::default()
        };
        let p = preimage(&h, "L");
        let mut want = b"SLIM-DP-HDR-v1\0".to_vec();
        want.extend_from_slice(&[1, 0, 0, 0, b'L']); // link id
        want.extend_from_slice(&[0, 0]); // no source, no destination
        want.extend_from_slice(&[0, 0, 0, 0]); // empty identity
        want.extend_from_slice(&[4, 3, 2, 1]); // fanout
        want.extend_from_slice(&[1, 5, 0, 0, 0, 0, 0, 0, 0]); // recv_from
        want.push(0); // forward_to
        want.extend_from_slice(&[1, 1]); // error = true
        want.extend_from_slice(&[9, 0, 0, 0]); // ttl
        assert_eq!(p, want);
    }

    #[test]
    fn sign_then_verify() {
        let mac = LinkMac::new([7; 32], "link-1");
        let mut h = header();
        assert_eq!(mac.verify(&h), Err(MacError::MissingTag));
        mac.sign(&mut h);
        assert_eq!(mac.verify(&h), Ok(()));
        let other_link = LinkMac::new([7; 32], "link-2");
        assert_eq!(other_link.verify(&h), Err(MacError::Mismatch));
        h.header_mac = Some(vec![0; 31].into());
        assert_eq!(mac.verify(&h), Err(MacError::BadTagLength(31)));
    }

    #[test]
    fn tag_is_the_hmac_of_the_preimage() {
        let mac = LinkMac::new([7; 32], "link-1");
        let h = header();
        let mut want = <Hmac<Sha256> as Mac>::new_from_slice(&[7; 32]).expect("any key length");
        want.update(&preimage(&h, "link-1"));
        let want: [u8; TAG_LEN] = want.finalize().into_bytes().into();
        assert_eq!(mac.tag(&h), want);
    }

    proptest! {
        /// The stack buffer in front of the HMAC changes nothing, whatever the preimage's length
        /// (identities longer than the buffer included).
        #[test]
        fn buffered_tag_is_the_hmac_of_the_preimage(identity in "\\PC{0,700}", link in "[a-z0-9-]{0,300}") {
            let mac = LinkMac::new([9; 32], &link);
            let mut h = header();
            h.identity = identity;
            let mut want = <Hmac<Sha256> as Mac>::new_from_slice(&[9; 32]).expect("any key length");
            want.update(&preimage(&h, &link));
            let want: [u8; TAG_LEN] = want.finalize().into_bytes().into();
            prop_assert_eq!(mac.tag(&h), want);
        }
    }

    /// One mutation of a covered field per variant.
    fn mutate_covered(h: &mut pb::SlimHeader, which: u8, v: u64) {
        let v32 = v as u32;
        match which % 9 {
            0 => h.identity.push('x'),
            1 => h.fanout = h.fanout.wrapping_add(v32 | 1),
            2 => h.ttl = h.ttl.wrapping_add(v32 | 1),
            3 => h.recv_from = Some(h.recv_from.map_or(v, |x| x.wrapping_add(1))),
            4 => h.forward_to = Some(h.forward_to.map_or(v, |x| x.wrapping_add(1))),
            5 => h.error = Some(!h.error.unwrap_or(false)),
            6 => {
                if let Some(s) = h.destination.as_mut().and_then(|d| d.str_name.as_mut()) {
                    s.str_component_2.push('x');
                }
            }
            7 => {
                if let Some(e) = h.destination.as_mut().and_then(|d| d.name.as_mut()) {
                    e.component_1 ^= v | 1;
                }
            }
            _ => {
                if let Some(id) = h
                    .source
                    .as_mut()
                    .and_then(|d| d.name.as_mut())
                    .and_then(|e| e.name_id.as_mut())
                {
                    id.id_1 ^= v | 1;
                }
            }
        }
    }

    fn mutate_uncovered(h: &mut pb::SlimHeader, which: u8, v: u64) {
        match which % 3 {
            0 => h.version.push_str(&v.to_string()),
            1 => h.incoming_conn = Some(v),
            _ => h.e2e_header_sig = Some(v.to_le_bytes().to_vec().into()),
        }
    }

    proptest! {
        #[test]
        fn covered_field_change_breaks_the_mac(which in any::<u8>(), v in any::<u64>(), key in any::<[u8; 32]>()) {
            let mac = LinkMac::new(key, "link");
            let mut h = header();
            mac.sign(&mut h);
            mutate_covered(&mut h, which, v);
            prop_assert_eq!(mac.verify(&h), Err(MacError::Mismatch));
        }

        #[test]
        fn uncovered_field_change_keeps_the_mac(which in any::<u8>(), v in any::<u64>(), key in any::<[u8; 32]>()) {
            let mac = LinkMac::new(key, "link");
            let mut h = header();
            mac.sign(&mut h);
            mutate_uncovered(&mut h, which, v);
            prop_assert_eq!(mac.verify(&h), Ok(()));
        }
    }
}
