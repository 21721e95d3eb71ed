//! A gRPC codec that sends raw bytes and decodes replies as [`pb::Message`].
//!
//! Test clients need to send frames that are *not* valid protobuf (SLIM-TRANS-005) or that no
//! well-behaved encoder would produce; with this codec every request item is an already-encoded
//! frame. Shared by the conformance runner's client and the relay's integration tests, as is
//! [`push_nested_command_content`], the hand-built content of one such frame.

use bytes::BufMut;
use prost::encoding::encode_varint;
use prost::Message as _;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

use crate::pb;

/// The codec: `Vec<u8>` out, `pb::Message` in.
#[derive(Debug, Default, Clone, Copy)]
pub struct RawCodec;

/// Writes each item's bytes as one gRPC message.
#[derive(Debug, Default, Clone, Copy)]
pub struct RawEncoder;

/// Decodes each gRPC message as a [`pb::Message`]; a frame that does not decode is an
/// `INTERNAL` status naming the decode error.
#[derive(Debug, Default, Clone, Copy)]
pub struct MessageDecoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for MessageDecoder {
    type Item = pb::Message;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<pb::Message>, Status> {
        pb::Message::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(format!("the peer sent an undecodable Message: {e}")))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = pb::Message;
    type Encoder = RawEncoder;
    type Decoder = MessageDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> MessageDecoder {
        MessageDecoder
    }
}

/// Appends Publish field 3, `Content { command_payload }`, whose command is `discovery_request {}`
/// followed by `depth` nested unknown-field groups (field 17). The payload decodes on its own, but
/// inside a Message prost's recursion limit also counts the levels above it, so from depth 98 the
/// whole Message no longer decodes: a frame a node must never forward (SLIM-VAL-008).
pub fn push_nested_command_content(depth: usize, publish: &mut Vec<u8>) {
    let mut cmd = vec![0x0a, 0x00]; // discovery_request {}
    cmd.extend([0x8b, 0x01].repeat(depth)); // unknown field 17, start group
    cmd.extend([0x8c, 0x01].repeat(depth)); // field 17, end group
    let mut content = vec![0x12]; // Content.command_payload
    encode_varint(cmd.len() as u64, &mut content);
    content.extend_from_slice(&cmd);
    publish.push(0x1a); // Publish.msg
    encode_varint(content.len() as u64, publish);
    publish.extend_from_slice(&content);
}
