//! Protobuf encoding and decoding of a signed Publish (benches/codec.rs).
//!
//! Every message a node relays is decoded once on the way in and encoded once per receiver on the
//! way out (by tonic, with prost); this measures prost alone, without gRPC framing.

use prost::Message as _;
use slim_proto::pb::{self, message::MessageType};

use crate::mac::{link_mac, routed_header};

/// Payload sizes the benchmark uses, with their labels: a small control message and 16 KiB.
pub const PAYLOAD_SIZES: [(&str, usize); 2] = [("128B", 128), ("16KiB", 16 * 1024)];

/// A Publish as a client sends it: routed header signed with the link MAC, a point-to-point
/// session header and an application payload of `payload_len` bytes.
pub fn signed_publish(payload_len: usize) -> pb::Message {
    let mut header = routed_header();
    link_mac().sign(&mut header);
    pb::Message {
        message_type: Some(MessageType::Publish(pb::Publish {
            header: Some(header),
            session: Some(pb::SessionHeader {
                session_type: pb::SessionType::PointToPoint as i32,
                session_message_type: pb::SessionMessageType::Msg as i32,
                session_id: 0x5eed,
                message_id: 42,
            }),
            msg: Some(pb::Content {
                content_type: Some(pb::content::ContentType::AppPayload(
                    pb::ApplicationPayload {
                        payload_type: "application/octet-stream".into(),
                        blob: vec![0xa5; payload_len].into(),
                    },
                )),
            }),
        })),
        metadata: Default::default(),
    }
}

/// Encodes `msg` into `buf` (cleared first, so its capacity is reused), timed by `codec/encode`.
/// Returns the encoded length.
pub fn encode(msg: &pb::Message, buf: &mut Vec<u8>) -> usize {
    buf.clear();
    // Encoding into a Vec cannot run out of space: it grows.
    msg.encode(buf).unwrap_or_else(|_| unreachable!());
    buf.len()
}

/// Decodes a `Message`, timed by `codec/decode`; `None` if the bytes are not a valid `Message`.
pub fn decode(bytes: &[u8]) -> Option<pb::Message> {
    pb::Message::decode(bytes).ok()
}
