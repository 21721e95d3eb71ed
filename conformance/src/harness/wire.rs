//! Reading frames for the transcript, and patching them in place for the corruption faults.
//!
//! The harness forwards the bytes it received; it decodes a frame only to describe it. The two
//! corruptions change bytes *in place* (same length, found by walking the protobuf encoding), so
//! nothing else in the frame changes: no re-encoding, no lost unknown fields, no reordered
//! metadata map. Everything here is total on hostile input: a frame that does not parse is
//! described as `other` and never patched.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use prost::Message as _;
use slim_proto::names::{encoded_id, id_text, SlimName};
use slim_proto::pb::{self, command_payload::CommandPayloadType, content::ContentType};

use super::transcript::SessionInfo;

/// `Message.publish` (field 3, length-delimited).
const MESSAGE_PUBLISH: u32 = 3;
/// `Message.metadata` (field 4, a repeated map entry).
const MESSAGE_METADATA: u32 = 4;
/// `Publish.header` (field 1).
const PUBLISH_HEADER: u32 = 1;
/// `SLIMHeader.e2e_header_sig` (field 12).
const HEADER_E2E_SIG: u32 = 12;
/// Protobuf wire type of length-delimited fields.
const WIRE_LEN: u8 = 2;

/// The metadata key of the payload signature (SLIM-IDENT-004).
pub const PAYLOAD_SIG_KEY: &str = slim_proto::e2e::PAYLOAD_SIG_KEY;

/// One field of a protobuf encoding: number, wire type and the byte range of its value (for a
/// length-delimited field, the content without the length prefix).
#[derive(Debug, Clone, Copy)]
struct Field {
    number: u32,
    wire_type: u8,
    start: usize,
    end: usize,
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The top-level fields of `buf[start..end]`, or `None` if it is not a well-formed encoding.
fn fields(buf: &[u8], start: usize, end: usize) -> Option<Vec<Field>> {
    let mut out = Vec::new();
    let mut pos = start;
    let slice = buf.get(..end)?;
    while pos < end {
        let key = read_varint(slice, &mut pos)?;
        let number = u32::try_from(key >> 3).ok()?;
        let wire_type = (key & 7) as u8;
        let value_start;
        match wire_type {
            0 => {
                value_start = pos;
                read_varint(slice, &mut pos)?;
            }
            1 => {
                value_start = pos;
                pos = pos.checked_add(8)?;
            }
            2 => {
                let len = usize::try_from(read_varint(slice, &mut pos)?).ok()?;
                value_start = pos;
                pos = pos.checked_add(len)?;
            }
            5 => {
                value_start = pos;
                pos = pos.checked_add(4)?;
            }
            _ => return None, // groups (3, 4) do not occur in SLIM messages
        }
        if pos > end {
            return None;
        }
        out.push(Field {
            number,
            wire_type,
            start: value_start,
            end: pos,
        });
    }
    Some(out)
}

/// The last length-delimited field `number` among `fields` (protobuf: the last one wins).
fn last_len(fields: &[Field], number: u32) -> Option<Field> {
    fields
        .iter()
        .rev()
        .find(|f| f.number == number && f.wire_type == WIRE_LEN)
        .copied()
}

/// Byte range of `SLIMHeader.e2e_header_sig` of a Publish frame, if present and non-empty.
fn header_sig_range(frame: &[u8]) -> Option<(usize, usize)> {
    let top = fields(frame, 0, frame.len())?;
    let publish = last_len(&top, MESSAGE_PUBLISH)?;
    let in_publish = fields(frame, publish.start, publish.end)?;
    let header = last_len(&in_publish, PUBLISH_HEADER)?;
    let in_header = fields(frame, header.start, header.end)?;
    let sig = last_len(&in_header, HEADER_E2E_SIG)?;
    (sig.end > sig.start).then_some((sig.start, sig.end))
}

/// Byte range of the value of metadata entry `key`, if present.
fn metadata_value_range(frame: &[u8], key: &str) -> Option<(usize, usize)> {
    let top = fields(frame, 0, frame.len())?;
    top.iter()
        .rev()
        .filter(|f| f.number == MESSAGE_METADATA && f.wire_type == WIRE_LEN)
        .find_map(|entry| {
            let kv = fields(frame, entry.start, entry.end)?;
            let k = last_len(&kv, 1)?;
            if frame.get(k.start..k.end)? != key.as_bytes() {
                return None;
            }
            // An absent value field is the empty string: nothing to corrupt.
            let v = last_len(&kv, 2)?;
            Some((v.start, v.end))
        })
}

/// Flips every bit of the last byte of `e2e_header_sig`, in place. `false` when the frame has no
/// (non-empty) `e2e_header_sig`.
pub fn corrupt_header_sig(frame: &mut [u8]) -> bool {
    match header_sig_range(frame) {
        Some((_, end)) => {
            frame[end - 1] ^= 0xff;
            true
        }
        None => false,
    }
}

const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Replaces one base64 character of the `slim-payload-sig` value with another valid base64
/// character, in place; `entropy` picks which and with what. Only characters that carry six full
/// bits of the decoded signature are candidates (not the padding, not the last data character
/// whose low bits may be padding bits), so the decoded signature always differs. `false` when the
/// frame has no such metadata entry, or it is too short or not base64.
pub fn corrupt_payload_sig(frame: &mut [u8], entropy: u64) -> bool {
    let Some((start, end)) = metadata_value_range(frame, PAYLOAD_SIG_KEY) else {
        return false;
    };
    let value = &frame[start..end];
    let data_len = value.iter().take_while(|&&c| c != b'=').count();
    if data_len < 2
        || !value[..data_len]
            .iter()
            .all(|c| BASE64_ALPHABET.contains(c))
    {
        return false;
    }
    let candidates = data_len - 1;
    let pos = start + (entropy % candidates as u64) as usize;
    let old = frame[pos];
    let old_index = BASE64_ALPHABET.iter().position(|&c| c == old).unwrap_or(0);
    // 1..=63 steps away: never the same character.
    let step = 1 + ((entropy >> 32) % 63) as usize;
    frame[pos] = BASE64_ALPHABET[(old_index + step) % 64];
    true
}

/// What the transcript records about a frame, decoded from its bytes.
#[derive(Debug, Default, Clone)]
pub struct Described {
    /// Entry kind (see [`super::TranscriptEntry::kind`]).
    pub kind: &'static str,
    /// Source name text.
    pub source: Option<String>,
    /// Destination name text.
    pub destination: Option<String>,
    /// `SLIMHeader.fanout`.
    pub fanout: Option<u32>,
    /// Subject of the identity token.
    pub identity_sub: Option<String>,
    /// Decoded session header of a Publish.
    pub session: Option<SessionInfo>,
    /// Application blob or encoded command payload length.
    pub payload_len: usize,
    /// MLS wire format of the MLS content, if any.
    pub mls_wire_format: Option<u16>,
    /// MLS epoch of a Public/PrivateMessage.
    pub mls_epoch: Option<u64>,
    /// For a Subscribe: the subscribed name's three components, `org/ns/app`.
    pub subscribed_app: Option<String>,
}

/// Describes a frame; undecodable frames are kind `other` with nothing else known.
pub fn describe(frame: &[u8]) -> Described {
    match pb::Message::decode(frame) {
        Ok(msg) => describe_message(&msg),
        Err(_) => Described {
            kind: "other",
            ..Default::default()
        },
    }
}

/// Describes a decoded message.
pub fn describe_message(msg: &pb::Message) -> Described {
    use pb::message::MessageType as T;
    let mut d = Described {
        kind: "other",
        ..Default::default()
    };
    let header = match &msg.message_type {
        Some(T::Link(pb::Link {
            link_type: Some(_), ..
        })) => {
            d.kind = "negotiation";
            None
        }
        Some(T::SubscriptionAck(_)) => {
            d.kind = "subscription_ack";
            None
        }
        Some(T::Subscribe(s)) => {
            d.kind = "subscribe";
            d.subscribed_app = s
                .header
                .as_ref()
                .and_then(|h| h.destination.as_ref())
                .and_then(|n| n.str_name.as_ref())
                .map(|s| {
                    format!(
                        "{}/{}/{}",
                        s.str_component_0, s.str_component_1, s.str_component_2
                    )
                });
            s.header.as_ref()
        }
        Some(T::Unsubscribe(u)) => {
            d.kind = "unsubscribe";
            u.header.as_ref()
        }
        Some(T::Publish(p)) => {
            d.kind = "publish";
            describe_publish(p, &mut d);
            p.header.as_ref()
        }
        _ => None,
    };
    if let Some(h) = header {
        d.source = h.source.as_ref().map(name_text);
        d.destination = h.destination.as_ref().map(name_text);
        d.fanout = Some(h.fanout);
        d.identity_sub = identity_sub(&h.identity);
    }
    d
}

fn describe_publish(p: &pb::Publish, d: &mut Described) {
    let error = p.header.as_ref().and_then(|h| h.error).unwrap_or(false);
    d.session = p.session.as_ref().map(|s| SessionInfo {
        session_type: s.session_type,
        message_type: s.session_message_type,
        session_id: s.session_id,
        message_id: s.message_id,
        error,
    });
    let mls = match p.msg.as_ref().and_then(|c| c.content_type.as_ref()) {
        Some(ContentType::AppPayload(a)) => {
            d.payload_len = a.blob.len();
            let data = d.session.is_some_and(|s| {
                s.message_type == pb::SessionMessageType::Msg as i32
                    || s.message_type == pb::SessionMessageType::RtxReply as i32
            });
            data.then_some(&a.blob[..])
        }
        Some(ContentType::CommandPayload(c)) => {
            d.payload_len = c.encoded_len();
            match &c.command_payload_type {
                Some(CommandPayloadType::GroupUpdate(u)) => {
                    u.mls.as_ref().map(|m| &m.mls_content[..])
                }
                Some(CommandPayloadType::GroupWelcome(w)) => {
                    w.mls.as_ref().map(|m| &m.mls_content[..])
                }
                Some(CommandPayloadType::RejoinReply(r)) => Some(&r.mls_content[..]),
                _ => None,
            }
        }
        None => None,
    };
    if let Some(info) = mls.and_then(mls_info) {
        d.mls_wire_format = Some(info.wire_format);
        d.mls_epoch = info.epoch;
    }
}

/// A name as text: `org/ns/app[/id]` from its strings, or its hashes when it has none.
pub fn name_text(n: &pb::Name) -> String {
    match SlimName::from_proto(n) {
        Ok(name) => name.to_string(),
        Err(_) => match &n.name {
            Some(e) => {
                let id = encoded_id(e);
                let mut s = format!(
                    "#{:016x}/#{:016x}/#{:016x}",
                    e.component_0, e.component_1, e.component_2
                );
                if id != slim_proto::names::NULL_ID {
                    s.push('/');
                    s.push_str(&id_text(id));
                }
                s
            }
            None => "(no name)".into(),
        },
    }
}

/// The subject of an identity token, if it parses: a JWT's `sub` claim, or the first
/// `:`-separated part of a shared-secret token. Not verified: the transcript only names senders.
pub fn identity_sub(token: &str) -> Option<String> {
    if token.is_empty() {
        return None;
    }
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() == 3 && !token.contains(':') {
        let claims = URL_SAFE_NO_PAD
            .decode(parts[1].trim_end_matches('='))
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&claims).ok()?;
        return v.get("sub")?.as_str().map(str::to_string);
    }
    let (sub, _) = token.split_once(':')?;
    (!sub.is_empty()).then(|| sub.to_string())
}

/// The outer fields of a serialized MLSMessage (RFC 9420 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MlsInfo {
    /// `wire_format`: 1 public, 2 private, 3 welcome, 4 group_info, 5 key_package.
    pub wire_format: u16,
    /// The epoch of a PublicMessage or PrivateMessage.
    pub epoch: Option<u64>,
}

/// Reads an RFC 9000 §16 variable-length integer as MLS uses it (1, 2 or 4 bytes).
fn mls_varint(buf: &[u8], pos: &mut usize) -> Option<usize> {
    let first = *buf.get(*pos)?;
    let len = 1usize << (first >> 6);
    if len == 8 {
        return None; // RFC 9420 §2.1.2: the 8-byte form is invalid in MLS
    }
    let bytes = buf.get(*pos..pos.checked_add(len)?)?;
    *pos += len;
    let mut v = usize::from(first & 0x3f);
    for b in &bytes[1..] {
        v = (v << 8) | usize::from(*b);
    }
    Some(v)
}

/// Parses the version, wire format and (Public/PrivateMessage) epoch of an MLSMessage; `None`
/// when it is not an mls10 message.
pub fn mls_info(blob: &[u8]) -> Option<MlsInfo> {
    let version = u16::from_be_bytes([*blob.first()?, *blob.get(1)?]);
    if version != 1 {
        return None;
    }
    let wire_format = u16::from_be_bytes([*blob.get(2)?, *blob.get(3)?]);
    if !(1..=5).contains(&wire_format) {
        return None;
    }
    let epoch = if wire_format == 1 || wire_format == 2 {
        // PrivateMessage and PublicMessage.FramedContent both start group_id<V>, uint64 epoch.
        let mut pos = 4;
        let group_len = mls_varint(blob, &mut pos)?;
        let at = pos.checked_add(group_len)?;
        let e = blob.get(at..at.checked_add(8)?)?;
        let mut b = [0u8; 8];
        b.copy_from_slice(e);
        Some(u64::from_be_bytes(b))
    } else {
        None
    };
    Some(MlsInfo { wire_format, epoch })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PrivateMessage (RFC 9420 §6.3.1) with a 2-byte-length group id.
    fn private_message(group_id: &[u8], epoch: u64) -> Vec<u8> {
        let mut b = vec![0x00, 0x01, 0x00, 0x02];
        let len = u16::try_from(group_id.len()).expect("small") | 0x4000;
        b.extend(len.to_be_bytes());
        b.extend(group_id);
        b.extend(epoch.to_be_bytes());
        b.extend([0x00]); // content_type... (not read)
        b
    }

    #[test]
    fn mls_epoch_of_a_hand_built_private_message() {
        let blob = private_message(&[7u8; 80], 0x0102_0304_0506_0708);
        assert_eq!(
            mls_info(&blob),
            Some(MlsInfo {
                wire_format: 2,
                epoch: Some(0x0102_0304_0506_0708)
            })
        );
        // One-byte length prefix, PublicMessage.
        let mut public = vec![0x00, 0x01, 0x00, 0x01, 0x03, 1, 2, 3];
        public.extend(42u64.to_be_bytes());
        assert_eq!(mls_info(&public).and_then(|i| i.epoch), Some(42));
        // Welcome: no epoch. Truncated and wrong-version blobs: nothing.
        assert_eq!(
            mls_info(&[0, 1, 0, 3, 9]),
            Some(MlsInfo {
                wire_format: 3,
                epoch: None
            })
        );
        assert_eq!(mls_info(&blob[..blob.len() - 5]), None);
        assert_eq!(mls_info(&[0, 2, 0, 2]), None);
        assert_eq!(mls_info(&[0, 1, 0, 2, 0xc0, 0, 0, 0, 0, 0, 0, 0]), None);
    }

    #[test]
    fn the_epoch_of_an_mls_data_message_is_in_its_description() {
        let name = SlimName::new("org", "ns", "a");
        let mut msg = slim_proto::messages::publish(&name, &name, 1, private_message(b"g", 9));
        let d = describe_message(&msg);
        assert_eq!((d.mls_wire_format, d.mls_epoch), (Some(2), Some(9)));
        // A command payload carries no MLSMessage blob of its own.
        if let Some(pb::message::MessageType::Publish(p)) = &mut msg.message_type {
            if let Some(s) = &mut p.session {
                s.session_message_type = pb::SessionMessageType::MsgAck as i32;
            }
        }
        assert_eq!(describe_message(&msg).mls_epoch, None);
    }

    fn signed_frame() -> (pb::Message, Vec<u8>) {
        let name = SlimName::new("org", "ns", "a");
        let mut msg = slim_proto::messages::publish(&name, &name, 1, b"x");
        if let Some(pb::message::MessageType::Publish(p)) = &mut msg.message_type {
            if let Some(h) = &mut p.header {
                h.e2e_header_sig = Some(vec![1, 2, 3, 4].into());
            }
        }
        msg.metadata
            .insert(PAYLOAD_SIG_KEY.into(), "MDEyMzQ1Njc4OQ==".into());
        msg.metadata.insert("other".into(), "v".into());
        let bytes = msg.encode_to_vec();
        (msg, bytes)
    }

    #[test]
    fn header_sig_corruption_changes_only_the_last_signature_byte() {
        let (msg, mut bytes) = signed_frame();
        let before = bytes.clone();
        assert!(corrupt_header_sig(&mut bytes));
        assert_eq!(bytes.len(), before.len());
        assert_eq!(bytes.iter().zip(&before).filter(|(a, b)| a != b).count(), 1);
        let after = pb::Message::decode(&bytes[..]).expect("decodes");
        let sig = |m: &pb::Message| match &m.message_type {
            Some(pb::message::MessageType::Publish(p)) => {
                p.header.as_ref().and_then(|h| h.e2e_header_sig.clone())
            }
            _ => None,
        };
        assert_eq!(sig(&after).as_deref(), Some(&[1u8, 2, 3, 0xfb][..]));
        assert_eq!(sig(&msg).as_deref(), Some(&[1u8, 2, 3, 4][..]));
        // Without the field, nothing changes.
        let name = SlimName::new("org", "ns", "a");
        let mut plain = slim_proto::messages::publish(&name, &name, 1, b"x").encode_to_vec();
        assert!(!corrupt_header_sig(&mut plain));
    }

    #[test]
    fn payload_sig_corruption_keeps_valid_base64_of_another_value() {
        for entropy in [0u64, 1, 5, u64::MAX, 0x1234_5678_9abc_def0] {
            let (msg, mut bytes) = signed_frame();
            assert!(corrupt_payload_sig(&mut bytes, entropy));
            let after = pb::Message::decode(&bytes[..]).expect("decodes");
            let old = &msg.metadata[PAYLOAD_SIG_KEY];
            let new = &after.metadata[PAYLOAD_SIG_KEY];
            assert_ne!(old, new);
            assert_eq!(old.len(), new.len());
            assert!(new.ends_with("=="));
            assert_eq!(after.metadata["other"], "v");
            let std = base64::engine::general_purpose::STANDARD;
            assert_ne!(std.decode(old).ok(), std.decode(new).ok());
            assert!(std.decode(new).is_ok());
        }
    }

    #[test]
    fn garbage_is_described_as_other_and_never_patched() {
        let mut junk = vec![0xff, 0xff, 0xff, 0x0a, 0x05];
        assert_eq!(describe(&junk).kind, "other");
        assert!(!corrupt_header_sig(&mut junk));
        assert!(!corrupt_payload_sig(&mut junk, 3));
    }

    #[test]
    fn identity_subjects_of_both_token_kinds() {
        assert_eq!(
            identity_sub("alice_1:170:n:c:m").as_deref(),
            Some("alice_1")
        );
        let claims = URL_SAFE_NO_PAD.encode(br#"{"sub":"bob","exp":1}"#);
        assert_eq!(
            identity_sub(&format!("eyJhbGciOiJIUzI1NiJ9.{claims}.sig")).as_deref(),
            Some("bob")
        );
        assert_eq!(identity_sub(""), None);
        assert_eq!(identity_sub("no-colon"), None);
    }
}
