//! A minimal raw SLIM client for load: one gRPC connection and one `OpenChannel` stream each.
//!
//! It negotiates the link like a well-behaved Edge client (X25519 key, EDGE), subscribes with a
//! signed Subscribe and waits for the SubscriptionAck, and publishes from a pre-encoded template:
//! the header MAC covers the header only (never the payload), and a benchmark's header never
//! changes, so each publisher signs once and every message is the template with its payload
//! stamp patched in. Sending goes through a bounded mpsc into the gRPC request stream, so a
//! client never buffers more than [`SEND_QUEUE`] encoded messages.

use std::time::Duration;

use prost::Message as _;
use slim_proto::link::{self, LinkKeyPair};
use slim_proto::mac::LinkMac;
use slim_proto::messages;
use slim_proto::names::SlimName;
use slim_proto::pb::{self, message::MessageType};
use slim_proto::raw::RawCodec;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use crate::error::BenchError;
use crate::payload::{Stamp, HEADER_LEN};

pub use slim_proto::OPEN_CHANNEL;

/// Encoded messages a client may queue towards its gRPC stream before the sender waits.
pub const SEND_QUEUE: usize = 128;

/// How long negotiation and subscription acks may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(5);

/// One negotiated link to the target.
pub struct BenchLink {
    /// The request side: encoded `Message`s.
    pub tx: mpsc::Sender<Vec<u8>>,
    /// The response side.
    pub rx: Streaming<pb::Message>,
    /// The link's header MAC key (absent if the node replied without a key).
    pub mac: Option<LinkMac>,
}

impl BenchLink {
    /// Connects to `url` (its own HTTP/2 connection) and negotiates the link.
    pub async fn connect(url: &str) -> Result<BenchLink, BenchError> {
        Self::connect_with(url, None).await
    }

    /// Like [`BenchLink::connect`], sending `authorization` (e.g. `Bearer <jwt>`) as the call's
    /// `authorization` header, for nodes that require credentials.
    pub async fn connect_with(
        url: &str,
        authorization: Option<&str>,
    ) -> Result<BenchLink, BenchError> {
        let connect_err = |reason: String| BenchError::Connect {
            url: url.to_string(),
            reason,
        };
        let endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
            .map_err(|e| BenchError::Usage(format!("bad target URL {url}: {e}")))?
            .connect_timeout(SETUP_TIMEOUT)
            .tcp_nodelay(true);
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready()
            .await
            .map_err(|e| connect_err(format!("not ready: {e}")))?;
        let (tx, rx) = mpsc::channel(SEND_QUEUE);
        let path = http::uri::PathAndQuery::from_static(OPEN_CHANNEL);
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        if let Some(value) = authorization {
            let value = value.parse().map_err(|_| {
                BenchError::Usage("the authorization value is not a valid header value".into())
            })?;
            request.metadata_mut().insert("authorization", value);
        }
        let response = tokio::time::timeout(SETUP_TIMEOUT, grpc.streaming(request, path, RawCodec))
            .await
            .map_err(|_| connect_err("no response headers within 5 s".into()))?
            .map_err(|s| connect_err(format!("OpenChannel refused: {s}")))?;
        let mut link = BenchLink {
            tx,
            rx: response.into_inner(),
            mac: None,
        };
        link.negotiate().await?;
        Ok(link)
    }

    async fn negotiate(&mut self) -> Result<(), BenchError> {
        let mut secret = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut secret);
        let pair = LinkKeyPair::from_secret_bytes(secret);
        let link_id = uuid::Uuid::new_v4().to_string();
        let request = pb::LinkNegotiationPayload {
            link_id: link_id.clone(),
            slim_version: slim_proto::SLIM_VERSION.into(),
            is_reply: false,
            link_ecdh_public_key: pair.public_bytes().to_vec().into(),
            connection_type: pb::LinkConnectionType::Edge as i32,
            node_id: "slim-bench".into(),
            deployment_name: String::new(),
            link_kem_payload: None,
        };
        self.send(link::negotiation_message(request).encode_to_vec())
            .await?;
        let reply = self.next(SETUP_TIMEOUT).await?;
        let p = link::negotiation_payload(&reply)
            .map_err(|e| BenchError::Protocol(format!("negotiation reply: {e}")))?;
        link::check_reply(p, &link_id, false)
            .map_err(|e| BenchError::Protocol(format!("negotiation reply: {e}")))?;
        if !p.link_ecdh_public_key.is_empty() {
            self.mac = Some(
                pair.derive_link_mac(&p.link_ecdh_public_key, &link_id)
                    .map_err(|e| BenchError::Protocol(format!("negotiation reply: {e}")))?,
            );
        }
        Ok(())
    }

    async fn send(&self, bytes: Vec<u8>) -> Result<(), BenchError> {
        self.tx
            .send(bytes)
            .await
            .map_err(|_| BenchError::Protocol("the request stream closed".into()))
    }

    /// The next message within `within`; the stream ending or silence is an error.
    async fn next(&mut self, within: Duration) -> Result<pb::Message, BenchError> {
        match tokio::time::timeout(within, self.rx.message()).await {
            Err(_) => Err(BenchError::Protocol(format!(
                "nothing received within {within:?}"
            ))),
            Ok(Ok(Some(m))) => Ok(m),
            Ok(Ok(None)) => Err(BenchError::Protocol("the target ended the stream".into())),
            Ok(Err(s)) => Err(BenchError::Protocol(format!(
                "the target ended the stream: {s}"
            ))),
        }
    }

    /// Subscribes `name` with ack id `id` and waits for a successful SubscriptionAck.
    pub async fn subscribe(&mut self, name: &SlimName, id: u64) -> Result<(), BenchError> {
        let mut msg = messages::subscribe(name, id);
        sign(self.mac.as_ref(), &mut msg);
        self.send(msg.encode_to_vec()).await?;
        let deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self.next(left).await.map_err(|e| {
                BenchError::Protocol(format!("waiting for the ack of subscribe {name}: {e}"))
            })?;
            if let Some(MessageType::SubscriptionAck(a)) = m.message_type {
                if a.subscription_id == id {
                    return if a.success {
                        Ok(())
                    } else {
                        Err(BenchError::Protocol(format!(
                            "subscribe {name} refused: {:?}",
                            a.error
                        )))
                    };
                }
            }
        }
    }
}

/// Signs `msg`'s header with `mac`, if the link has a key.
fn sign(mac: Option<&LinkMac>, msg: &mut pb::Message) {
    if let (Some(mac), Some(h)) = (mac, slim_proto::validate::header_mut(msg)) {
        mac.sign(h);
    }
}

/// A Publish from `src` to `dst`, signed once, whose payload is patched per message.
#[derive(Debug, Clone)]
pub struct PublishTemplate {
    encoded: Vec<u8>,
    /// Where the payload starts in `encoded` (prost writes the blob last).
    blob_at: usize,
    size: usize,
}

impl PublishTemplate {
    /// Encodes the template for payloads of `size` bytes (at least [`HEADER_LEN`]).
    pub fn new(
        src: &SlimName,
        dst: &SlimName,
        fanout: u32,
        size: usize,
        mac: Option<&LinkMac>,
    ) -> Result<Self, BenchError> {
        let size = size.max(HEADER_LEN);
        let marker = vec![0xA5u8; size];
        let mut msg = messages::publish(src, dst, fanout, &marker);
        sign(mac, &mut msg);
        let mut encoded = msg.encode_to_vec();
        let blob_at = encoded.len().saturating_sub(size);
        if encoded.get(blob_at..) != Some(&marker[..]) {
            return Err(BenchError::Protocol(
                "internal: the encoded Publish does not end with its payload".into(),
            ));
        }
        encoded[blob_at..].fill(0);
        Ok(Self {
            encoded,
            blob_at,
            size,
        })
    }

    /// The payload size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// An encoded message carrying `stamp`.
    pub fn render(&self, stamp: Stamp) -> Vec<u8> {
        let mut out = self.encoded.clone();
        stamp.write(&mut out[self.blob_at..]);
        out
    }

    /// An encoded message carrying a copy of `payload` (cut or zero-padded to the size).
    pub fn render_payload(&self, payload: &[u8]) -> Vec<u8> {
        let mut out = self.encoded.clone();
        let n = payload.len().min(self.size);
        out[self.blob_at..self.blob_at + n].copy_from_slice(&payload[..n]);
        out
    }
}

/// A received Publish as the benchmark sees it: its destination hashes and its payload.
pub fn publish_parts(msg: &pb::Message) -> Option<([u64; 3], &[u8])> {
    let Some(MessageType::Publish(p)) = &msg.message_type else {
        return None;
    };
    let dst = p.header.as_ref()?.destination.as_ref()?.name.as_ref()?;
    let blob = match p.msg.as_ref()?.content_type.as_ref()? {
        pb::content::ContentType::AppPayload(a) => &a.blob[..],
        _ => return None,
    };
    Some(([dst.component_0, dst.component_1, dst.component_2], blob))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_patches_the_payload_only() {
        let src = SlimName::new("bench", "r", "pub-0");
        let dst = SlimName::new("bench", "r", "sub-0");
        let t = PublishTemplate::new(&src, &dst, 1, 64, None).expect("template");
        let stamp = Stamp {
            publisher: 3,
            seq: 9,
            sent_nanos: 77,
        };
        let bytes = t.render(stamp);
        let msg = pb::Message::decode(&bytes[..]).expect("decodes");
        let (hashes, blob) = publish_parts(&msg).expect("a publish");
        assert_eq!(hashes, dst.hashes());
        assert_eq!(blob.len(), 64);
        assert_eq!(Stamp::read(blob), Some(stamp));
    }
}
