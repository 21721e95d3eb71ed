//! A gRPC codec that sends raw bytes and decodes replies as [`pb::Message`].
//!
//! Test clients need to send frames that are *not* valid protobuf (SLIM-TRANS-005) or that no
//! well-behaved encoder would produce; with this codec every request item is an already-encoded
//! frame. Shared by the conformance runner's client and the relay's integration tests.

use bytes::BufMut;
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
