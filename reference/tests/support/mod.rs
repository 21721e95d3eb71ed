//! A raw SLIM link client for the relay's integration tests, built only from slim-proto
//! primitives (negotiation, header MAC) and a byte-level gRPC codec so tests can also send
//! frames that are not valid protobuf.

#![allow(dead_code, missing_docs)]

use std::time::Duration;

use prost::Message as _;
use slim_proto::link::{self, LinkKeyPair};
use slim_proto::mac::LinkMac;
use slim_proto::names::SlimName;
use slim_proto::pb::{self, message::MessageType};
use slim_proto::raw::RawCodec;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

/// One `OpenChannel` stream.
pub struct RawLink {
    tx: mpsc::Sender<Vec<u8>>,
    rx: Streaming<pb::Message>,
    pub mac: Option<LinkMac>,
}

pub const WAIT: Duration = Duration::from_secs(5);

impl RawLink {
    /// Opens a stream without negotiating.
    pub async fn open(url: &str) -> RawLink {
        Self::try_open(url, None).await.expect("OpenChannel")
    }

    /// Opens a stream without negotiating, sending `authorization` as the header of that name
    /// when given; `Err` is the status the call was refused with.
    pub async fn try_open(url: &str, authorization: Option<&str>) -> Result<RawLink, Status> {
        Self::try_open_tls(url, None, authorization).await
    }

    /// Like [`RawLink::try_open`], over TLS with `tls` for an `https://` URL; a connection that
    /// fails (TLS handshake included) is a `Status` too, `UNAVAILABLE` with the whole cause.
    pub async fn try_open_tls(
        url: &str,
        tls: Option<&slim_proto::tls::ClientTls>,
        authorization: Option<&str>,
    ) -> Result<RawLink, Status> {
        let endpoint = tonic::transport::Endpoint::from_shared(url.to_string()).expect("url");
        let channel = slim_proto::tls::connect(endpoint, tls)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.expect("ready");
        let (tx, rx) = mpsc::channel(16);
        let path = http::uri::PathAndQuery::from_static(
            "/dataplane.proto.v1.DataPlaneService/OpenChannel",
        );
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        if let Some(value) = authorization {
            request
                .metadata_mut()
                .insert("authorization", value.parse().expect("header value"));
        }
        let response = grpc.streaming(request, path, RawCodec).await.map_err(|s| {
            match std::error::Error::source(&s) {
                // A transport failure: keep its whole cause (a TLS alert says what to fix).
                Some(_) => Status::new(s.code(), slim_proto::tls::describe_chain(&s)),
                None => s,
            }
        })?;
        Ok(RawLink {
            tx,
            rx: response.into_inner(),
            mac: None,
        })
    }

    /// Opens a stream and negotiates a MAC key.
    pub async fn connect(url: &str) -> RawLink {
        Self::negotiate(Self::open(url).await).await
    }

    /// Opens a stream with an `authorization` header and negotiates a MAC key.
    pub async fn connect_with(url: &str, authorization: &str) -> RawLink {
        let link = Self::try_open(url, Some(authorization))
            .await
            .expect("OpenChannel with credentials");
        Self::negotiate(link).await
    }

    /// Negotiates a MAC key on an open stream.
    pub async fn negotiate(mut link: RawLink) -> RawLink {
        let pair = LinkKeyPair::from_secret_bytes(rand_bytes());
        let link_id = uuid::Uuid::new_v4().to_string();
        link.send_raw(
            link::negotiation_message(pb::LinkNegotiationPayload {
                link_id: link_id.clone(),
                slim_version: "3.3.8".into(),
                link_ecdh_public_key: pair.public_bytes().to_vec().into(),
                connection_type: pb::LinkConnectionType::Edge as i32,
                ..Default::default()
            })
            .encode_to_vec(),
        )
        .await;
        let reply = link.recv().await.expect("negotiation reply");
        let p = link::negotiation_payload(&reply).expect("a negotiation reply");
        link::check_reply(p, &link_id, true).expect("valid reply");
        link.mac = Some(
            pair.derive_link_mac(&p.link_ecdh_public_key, &link_id)
                .expect("derive"),
        );
        link
    }

    pub async fn send_raw(&self, bytes: Vec<u8>) {
        self.tx.send(bytes).await.expect("request stream open");
    }

    /// Signs (if negotiated) and sends.
    pub async fn send(&self, mut msg: pb::Message) {
        if let (Some(mac), Some(h)) = (&self.mac, slim_proto::validate::header_mut(&mut msg)) {
            mac.sign(h);
        }
        self.send_raw(msg.encode_to_vec()).await;
    }

    /// Next message, `Err` on a status, panics if nothing comes within [`WAIT`].
    pub async fn recv(&mut self) -> Result<pb::Message, Status> {
        match tokio::time::timeout(WAIT, self.rx.message()).await {
            Err(_) => panic!("nothing received within {WAIT:?}"),
            Ok(Ok(Some(m))) => Ok(m),
            Ok(Ok(None)) => Err(Status::ok("stream ended")),
            Ok(Err(s)) => Err(s),
        }
    }

    /// Next message if one arrives within `d`.
    pub async fn try_recv(&mut self, d: Duration) -> Option<Result<pb::Message, Status>> {
        match tokio::time::timeout(d, self.rx.message()).await {
            Err(_) => None,
            Ok(Ok(Some(m))) => Some(Ok(m)),
            Ok(Ok(None)) => Some(Err(Status::ok("stream ended"))),
            Ok(Err(s)) => Some(Err(s)),
        }
    }

    /// Subscribes `name` with ack id `id` and waits for the ack.
    pub async fn subscribe(&mut self, name: &SlimName, id: u64) -> pb::SubscriptionAck {
        self.send(subscribe(name, id)).await;
        match self.recv().await.expect("ack").message_type {
            Some(MessageType::SubscriptionAck(a)) => a,
            other => panic!("expected an ack, got {other:?}"),
        }
    }
}

fn rand_bytes() -> [u8; 32] {
    let a = uuid::Uuid::new_v4().as_u128().to_le_bytes();
    let b = uuid::Uuid::new_v4().as_u128().to_le_bytes();
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(&a);
    out[16..].copy_from_slice(&b);
    out
}

// Each test binary uses a different subset.
#[allow(unused_imports)]
pub use slim_proto::messages::{app_payload as blob_of, publish, subscribe};
