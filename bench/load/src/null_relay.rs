//! The null relay: the same gRPC service as a SLIM node, doing the least possible work.
//!
//! **It is not a SLIM node.** It answers the link negotiation with a valid X25519 key (so clients
//! derive a MAC key and start), acks every Subscribe and Unsubscribe at once, and forwards every
//! Publish, as the bytes it received, to *every other* open stream: no subscription table, no
//! MAC verification or re-signing, no validation, no TTL. Whatever a benchmark measures through
//! it is the floor of this machine: what tonic and h2 carry between these clients.
//!
//! Because it broadcasts everything, slim-bench's receivers filter by destination name hash and
//! count only what is addressed to them (reported as `ignored` otherwise). Use it with `p2p` and
//! `fanout`; `anycast` and `reqrep` need a node that picks one receiver, and report duplicates here.
//!
//! Forwarding waits for room in each receiver's queue (no drops): the floor is lossless, and a
//! slow receiver slows the publishers, exactly as h2 flow control would.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::{Buf, BufMut, Bytes};
use prost::Message as _;
use slim_proto::link::{self, LinkKeyPair};
use slim_proto::pb;
use slim_proto::service::OpenChannelServer;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::StreamExt as _;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::BoxFuture;
use tonic::server::StreamingService;
use tonic::{Status, Streaming};

use crate::error::BenchError;

/// Messages queued per stream towards its client.
const QUEUE: usize = 1024;

/// Top-level field numbers of `dataplane.proto.v1.Message`.
const FIELD_SUBSCRIBE: u64 = 1;
const FIELD_UNSUBSCRIBE: u64 = 2;
const FIELD_PUBLISH: u64 = 3;
const FIELD_LINK: u64 = 5;

/// A codec that moves frames as opaque bytes both ways.
#[derive(Debug, Default, Clone, Copy)]
struct BytesCodec;

#[derive(Debug, Default, Clone, Copy)]
struct BytesEncoder;

#[derive(Debug, Default, Clone, Copy)]
struct BytesDecoder;

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for BytesDecoder {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n)))
    }
}

impl Codec for BytesCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = BytesEncoder;
    type Decoder = BytesDecoder;
    fn encoder(&mut self) -> BytesEncoder {
        BytesEncoder
    }
    fn decoder(&mut self) -> BytesDecoder {
        BytesDecoder
    }
}

type Tx = mpsc::Sender<Result<Bytes, Status>>;

/// The open streams; replaced (copy on write) when one opens or closes, read per Publish.
#[derive(Default)]
struct Peers {
    next_id: AtomicU64,
    list: RwLock<Arc<Vec<(u64, Tx)>>>,
}

impl Peers {
    fn snapshot(&self) -> Arc<Vec<(u64, Tx)>> {
        self.list
            .read()
            .map(|l| l.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn update(&self, f: impl FnOnce(&mut Vec<(u64, Tx)>)) {
        let mut guard = self.list.write().unwrap_or_else(|p| p.into_inner());
        let mut next = guard.as_ref().clone();
        f(&mut next);
        *guard = Arc::new(next);
    }
}

/// The `OpenChannel` handler.
#[derive(Clone, Default)]
struct NullRelay {
    peers: Arc<Peers>,
}

/// Reads the field number and body of the first `Message` oneof field present in `frame`.
fn top_field(frame: &[u8]) -> Option<(u64, &[u8])> {
    let mut rest = frame;
    while !rest.is_empty() {
        let key = varint(&mut rest)?;
        match key & 7 {
            0 => {
                varint(&mut rest)?;
            }
            2 => {
                let len = usize::try_from(varint(&mut rest)?).ok()?;
                let body = rest.get(..len)?;
                rest = &rest[len..];
                let field = key >> 3;
                if matches!(field, 1..=3 | 5 | 6) {
                    return Some((field, body));
                }
            }
            _ => return None,
        }
    }
    None
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn encode(msg: pb::Message) -> Bytes {
    Bytes::from(msg.encode_to_vec())
}

fn ack(subscription_id: u64) -> Bytes {
    encode(pb::Message {
        message_type: Some(pb::message::MessageType::SubscriptionAck(
            pb::SubscriptionAck {
                subscription_id,
                success: true,
                error: String::new(),
            },
        )),
        metadata: Default::default(),
    })
}

/// The negotiation reply: the request echoed as a reply, with a fresh valid X25519 key.
fn negotiation_reply(frame: &[u8]) -> Option<Bytes> {
    let msg = pb::Message::decode(frame).ok()?;
    let req = link::negotiation_payload(&msg).ok()?;
    let mut secret = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut secret);
    let reply = pb::LinkNegotiationPayload {
        link_id: req.link_id.clone(),
        slim_version: slim_proto::SLIM_VERSION.into(),
        is_reply: true,
        link_ecdh_public_key: LinkKeyPair::from_secret_bytes(secret)
            .public_bytes()
            .to_vec()
            .into(),
        connection_type: req.connection_type,
        node_id: "slim-bench-null-relay".into(),
        deployment_name: String::new(),
        link_kem_payload: None,
    };
    Some(encode(link::negotiation_message(reply)))
}

impl NullRelay {
    async fn serve_link(&self, id: u64, tx: Tx, mut inbound: Streaming<Bytes>) {
        self.peers.update(|l| l.push((id, tx.clone())));
        while let Ok(Some(frame)) = inbound.message().await {
            match top_field(&frame) {
                Some((FIELD_PUBLISH, _)) => {
                    for (peer, ptx) in self.peers.snapshot().iter() {
                        if *peer != id {
                            // A closed peer is removed by its own task; skip it meanwhile.
                            let _ = ptx.send(Ok(frame.clone())).await;
                        }
                    }
                }
                Some((FIELD_SUBSCRIBE, body)) => {
                    let id = pb::Subscribe::decode(body).map_or(0, |s| s.subscription_id);
                    let _ = tx.send(Ok(ack(id))).await;
                }
                Some((FIELD_UNSUBSCRIBE, body)) => {
                    let id = pb::Unsubscribe::decode(body).map_or(0, |s| s.subscription_id);
                    let _ = tx.send(Ok(ack(id))).await;
                }
                Some((FIELD_LINK, _)) => {
                    if let Some(reply) = negotiation_reply(&frame) {
                        let _ = tx.send(Ok(reply)).await;
                    }
                }
                _ => {}
            }
        }
        self.peers.update(|l| l.retain(|(p, _)| *p != id));
    }
}

impl StreamingService<Bytes> for NullRelay {
    type Response = Bytes;
    type ResponseStream = ReceiverStream<Result<Bytes, Status>>;
    type Future = BoxFuture<tonic::Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: tonic::Request<Streaming<Bytes>>) -> Self::Future {
        let relay = self.clone();
        Box::pin(async move {
            let id = relay.peers.next_id.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = mpsc::channel(QUEUE);
            let inbound = request.into_inner();
            tokio::spawn(async move { relay.serve_link(id, tx, inbound).await });
            Ok(tonic::Response::new(ReceiverStream::new(rx)))
        })
    }
}

/// A running null relay.
pub struct NullRelayHandle {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), tonic::transport::Error>>>,
}

impl NullRelayHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for NullRelayHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Binds `listen` and serves in the background until the handle is shut down or dropped.
pub async fn spawn(listen: SocketAddr) -> Result<NullRelayHandle, BenchError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| BenchError::Io {
            path: listen.to_string(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| BenchError::Io {
        path: listen.to_string(),
        source,
    })?;
    // Small frames must leave at once: without TCP_NODELAY, Nagle and the peer's delayed ACK
    // hold them for up to 40 ms at low rates.
    let incoming = TcpListenerStream::new(listener).map(|conn| {
        conn.inspect(|c| {
            let _ = c.set_nodelay(true);
        })
    });
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(OpenChannelServer::new(NullRelay::default(), BytesCodec))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_rx.await;
            }),
    );
    Ok(NullRelayHandle {
        addr,
        stop: Some(stop_tx),
        task: Some(task),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_message_type_after_metadata() {
        let mut msg = pb::Message {
            message_type: Some(pb::message::MessageType::SubscriptionAck(
                pb::SubscriptionAck {
                    subscription_id: 5,
                    success: true,
                    error: String::new(),
                },
            )),
            metadata: Default::default(),
        };
        msg.metadata.insert("k".into(), "v".into());
        let bytes = msg.encode_to_vec();
        assert_eq!(top_field(&bytes).map(|(f, _)| f), Some(6));
        assert_eq!(top_field(&[0xff]), None);
        assert_eq!(top_field(&[]), None);
    }
}
