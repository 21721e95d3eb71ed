//! The runner's raw SLIM client: one `OpenChannel` stream, driven frame by frame.
//!
//! Built only from slim-proto wire primitives (types, names, link key agreement, header MAC), so
//! it can do what a well-behaved client does *and* what a broken one does: send unsigned or
//! tampered headers, malformed negotiations, raw bytes. Every frame in either direction is recorded
//! in the case's [`FrameLog`] as evidence for the report.

use std::time::Duration;

use prost::Message as _;
use slim_proto::link::{self, LinkKeyPair};
use slim_proto::mac::LinkMac;
use slim_proto::names::SlimName;
use slim_proto::pb::{self, message::MessageType};
use slim_proto::raw::RawCodec;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::{Status, Streaming};

use crate::evidence::FrameLog;
use crate::verdict::Failure;

/// Evidence helpers, re-exported so cases reach everything about frames through `client`.
pub use crate::evidence::{describe, status_text, Frame};

/// Message builders (from slim-proto), re-exported so cases build everything through `client`.
pub use slim_proto::messages::{
    app_payload as payload, header, publish, subscribe, unsubscribe, wrap,
};

const OPEN_CHANNEL: &str = "/dataplane.proto.v1.DataPlaneService/OpenChannel";

/// Where and how to reach the target.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://host:port` (h2c) or `https://host:port` (TLS with `tls`).
    pub url: String,
    /// The TLS connector for an `https://` target (`--ca`, `--cert`/`--key`, `--insecure`).
    pub tls: Option<slim_proto::tls::Connector>,
    /// Value of the `authorization` header, if any.
    pub authorization: Option<String>,
    /// Whether the target requires the header MAC (decides which cases apply).
    pub strict_mac: bool,
}

/// What a bounded receive saw.
// Events are short-lived and moved once; boxing the message would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Event {
    /// A message.
    Message(pb::Message),
    /// The stream ended with this status (`Code::Ok` for a clean end).
    Ended(Status),
    /// Nothing within the bound.
    Silent,
}

/// One link to the target, from the runner's side.
pub struct Link {
    label: String,
    tx: Option<mpsc::Sender<Vec<u8>>>,
    rx: Streaming<pb::Message>,
    log: FrameLog,
    /// The MAC state once negotiated with a key.
    pub mac: Option<LinkMac>,
    /// The link id we sent.
    pub link_id: String,
    /// The negotiation reply, once received.
    pub reply: Option<pb::LinkNegotiationPayload>,
    ended: bool,
}

/// The negotiation request a well-behaved client sends; cases mutate it to misbehave.
pub fn default_request(link_id: &str, public_key: Vec<u8>) -> pb::LinkNegotiationPayload {
    pb::LinkNegotiationPayload {
        link_id: link_id.to_string(),
        slim_version: "3.4.6".into(),
        is_reply: false,
        link_ecdh_public_key: public_key.into(),
        connection_type: pb::LinkConnectionType::Edge as i32,
        node_id: "slim-conformance".into(),
        deployment_name: String::new(),
        link_kem_payload: None,
    }
}

impl Link {
    /// Opens an `OpenChannel` stream without sending anything.
    pub async fn open(target: &Target, label: &str, log: &FrameLog) -> Result<Link, Failure> {
        Self::open_with_window(target, label, log, None).await
    }

    /// Opens a stream whose HTTP/2 receive windows (stream and connection) are `window` bytes,
    /// so that a link that stops reading holds at most that much on the runner's side.
    pub async fn open_with_window(
        target: &Target,
        label: &str,
        log: &FrameLog,
        window: Option<u32>,
    ) -> Result<Link, Failure> {
        let endpoint = tonic::transport::Endpoint::from_shared(target.url.clone())
            .map_err(|e| Failure::Harness(format!("bad target URL {}: {e}", target.url)))?
            .connect_timeout(Duration::from_secs(5))
            .initial_stream_window_size(window)
            .initial_connection_window_size(window);
        let connector = target
            .tls
            .clone()
            .unwrap_or_else(slim_proto::tls::Connector::plain);
        let channel = endpoint
            .connect_with_connector(connector)
            .await
            .map_err(|e| {
                Failure::Unreachable(format!(
                    "cannot connect to {}: {}",
                    target.url,
                    slim_proto::tls::describe_chain(&e)
                ))
            })?;
        // The runner must be able to send and receive frames beyond the node's limits.
        let mut grpc = tonic::client::Grpc::new(channel)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        grpc.ready()
            .await
            .map_err(|e| Failure::Unreachable(format!("target not ready: {e}")))?;
        let (tx, rx) = mpsc::channel(64);
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        if let Some(auth) = &target.authorization {
            let value = MetadataValue::try_from(auth.as_str()).map_err(|_| {
                Failure::Harness("authorization value is not a valid header".into())
            })?;
            request.metadata_mut().insert("authorization", value);
        }
        let path = http::uri::PathAndQuery::from_static(OPEN_CHANNEL);
        let response = tokio::time::timeout(
            Duration::from_secs(10),
            grpc.streaming(request, path, RawCodec),
        )
        .await
        .map_err(|_| {
            Failure::violation(
                "the OpenChannel call is accepted (response headers) within 10 s",
                "no response headers within 10 s",
            )
        })?;
        let rx = match response {
            Ok(r) => r.into_inner(),
            Err(status) => {
                // A node that refuses our TLS client certificate says so on the first read
                // (TLS 1.3): the connection failed, the call was never judged.
                if let Some(why) = slim_proto::tls::handshake_explanation(&status) {
                    return Err(Failure::Unreachable(format!(
                        "cannot connect to {}: {why}",
                        target.url
                    )));
                }
                log.push(label, "ended", 0, || status_text(&status));
                return Err(Failure::Rejected(status));
            }
        };
        Ok(Link {
            label: label.to_string(),
            tx: Some(tx),
            rx,
            log: log.clone(),
            mac: None,
            link_id: String::new(),
            reply: None,
            ended: false,
        })
    }

    /// Opens a stream and negotiates like a well-behaved client (X25519 key, EDGE).
    pub async fn connect(target: &Target, label: &str, log: &FrameLog) -> Result<Link, Failure> {
        let mut link = Self::open(target, label, log).await?;
        link.negotiate(|_| {}).await?;
        Ok(link)
    }

    /// Sends a negotiation request (after `tweak`) and expects a valid reply; installs the MAC key.
    pub async fn negotiate(
        &mut self,
        tweak: impl FnOnce(&mut pb::LinkNegotiationPayload),
    ) -> Result<pb::LinkNegotiationPayload, Failure> {
        match self.negotiate_or_end(tweak).await? {
            Ok(reply) => Ok(reply),
            Err(s) => Err(Failure::violation(
                "a link negotiation reply",
                format!("stream ended: {}", status_text(&s)),
            )),
        }
    }

    /// [`Link::negotiate`], except that a stream the target ends instead of replying gives its
    /// status (`Ok(Err(status))`): how a node that accepted the call refuses its credentials
    /// (SLIM-AUTH-002, SLIM-REV-001).
    pub async fn negotiate_or_end(
        &mut self,
        tweak: impl FnOnce(&mut pb::LinkNegotiationPayload),
    ) -> Result<Result<pb::LinkNegotiationPayload, Status>, Failure> {
        let pair = LinkKeyPair::from_secret_bytes(random32());
        let link_id = uuid::Uuid::new_v4().to_string();
        let mut req = default_request(&link_id, pair.public_bytes().to_vec());
        tweak(&mut req);
        self.link_id = req.link_id.clone();
        // The call may be refused as soon as the client sends; the end that follows says how.
        if let Err(f) = self.send_message(link::negotiation_message(req)).await {
            if self.tx.is_none() {
                return Err(f);
            }
        }
        let reply = match self.recv(Duration::from_secs(5)).await {
            Event::Message(m) => m,
            Event::Ended(s) => return Ok(Err(s)),
            Event::Silent => {
                return Err(Failure::violation(
                    "a link negotiation reply within 5 s",
                    "nothing",
                ))
            }
        };
        let p = link::negotiation_payload(&reply)
            .map_err(|e| Failure::violation("a link negotiation reply", e.to_string()))?
            .clone();
        if p.link_ecdh_public_key.len() == 32 {
            self.mac = Some(
                pair.derive_link_mac(&p.link_ecdh_public_key, &self.link_id)
                    .map_err(|e| {
                        Failure::violation("a usable X25519 key in the reply", e.to_string())
                    })?,
            );
        }
        self.reply = Some(p.clone());
        Ok(Ok(p))
    }

    /// The label used in evidence.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Sends raw bytes as one gRPC message.
    pub async fn send_raw(&self, bytes: Vec<u8>, summary: &str) -> Result<(), Failure> {
        self.send_logged(bytes, || summary.to_string()).await
    }

    async fn send_logged(
        &self,
        bytes: Vec<u8>,
        summary: impl FnOnce() -> String,
    ) -> Result<(), Failure> {
        self.log.push(&self.label, "sent", bytes.len(), summary);
        match &self.tx {
            Some(tx) => tx
                .send(bytes)
                .await
                .map_err(|_| Failure::Harness("request stream already closed".into())),
            None => Err(Failure::Harness("request stream already closed".into())),
        }
    }

    /// Sends a message exactly as given (no signing).
    pub async fn send_message(&self, msg: pb::Message) -> Result<(), Failure> {
        let bytes = msg.encode_to_vec();
        self.send_logged(bytes, || describe(&msg)).await
    }

    /// Signs the header (if this link has a key) and sends.
    pub async fn send(&self, mut msg: pb::Message) -> Result<(), Failure> {
        self.sign(&mut msg);
        self.send_message(msg).await
    }

    /// Signs a message's header with this link's key, if any.
    pub fn sign(&self, msg: &mut pb::Message) {
        if let (Some(mac), Some(h)) = (&self.mac, slim_proto::validate::header_mut(msg)) {
            mac.sign(h);
        }
    }

    /// A clone of the request-stream sender, for pipelined sending from another task.
    pub fn sender(&self) -> Option<mpsc::Sender<Vec<u8>>> {
        self.tx.clone()
    }

    /// Closes our sending side (half-close), as a client that goes away.
    pub fn close_send(&mut self) {
        self.tx = None;
    }

    /// Waits up to `within` for the next frame.
    pub async fn recv(&mut self, within: Duration) -> Event {
        if self.ended {
            return Event::Ended(Status::ok("stream already ended"));
        }
        match tokio::time::timeout(within, self.rx.message()).await {
            Err(_) => Event::Silent,
            Ok(Ok(Some(m))) => {
                self.log
                    .push(&self.label, "received", m.encoded_len(), || describe(&m));
                Event::Message(m)
            }
            Ok(Ok(None)) => {
                self.ended = true;
                let s = Status::ok("stream ended");
                self.log.push(&self.label, "ended", 0, || status_text(&s));
                Event::Ended(s)
            }
            Ok(Err(s)) => {
                self.ended = true;
                self.log.push(&self.label, "ended", 0, || status_text(&s));
                Event::Ended(s)
            }
        }
    }

    /// Expects a SubscriptionAck for `id` within `within`.
    pub async fn expect_ack(
        &mut self,
        id: u64,
        within: Duration,
    ) -> Result<pb::SubscriptionAck, Failure> {
        match self.recv(within).await {
            Event::Message(pb::Message {
                message_type: Some(MessageType::SubscriptionAck(a)),
                ..
            }) if a.subscription_id == id => Ok(a),
            other => Err(Failure::violation(
                format!(
                    "a SubscriptionAck for subscription_id {id} on {}",
                    self.label
                ),
                event_text(&other),
            )),
        }
    }

    /// Subscribes `name` with ack id `id` (signed) and expects a successful ack.
    pub async fn subscribe(&mut self, name: &SlimName, id: u64) -> Result<(), Failure> {
        self.send(subscribe(name, id)).await?;
        let ack = self.expect_ack(id, Duration::from_secs(5)).await?;
        if !ack.success {
            return Err(Failure::violation(
                format!("subscription {id} to {name} acked with success"),
                format!("success=false error={:?}", ack.error),
            ));
        }
        Ok(())
    }

    /// Expects a Publish within `within`.
    pub async fn expect_publish(&mut self, within: Duration) -> Result<pb::Message, Failure> {
        match self.recv(within).await {
            Event::Message(m) if matches!(m.message_type, Some(MessageType::Publish(_))) => Ok(m),
            other => Err(Failure::violation(
                format!("a Publish delivered to {}", self.label),
                event_text(&other),
            )),
        }
    }

    /// Expects nothing at all within `within` (the stream stays open and silent).
    pub async fn expect_silence(&mut self, within: Duration, why: &str) -> Result<(), Failure> {
        match self.recv(within).await {
            Event::Silent => Ok(()),
            other => Err(Failure::violation(
                format!("nothing on {} ({why})", self.label),
                event_text(&other),
            )),
        }
    }

    /// Expects the stream to end within `within`; returns the status.
    pub async fn expect_end(&mut self, within: Duration) -> Result<Status, Failure> {
        match self.recv(within).await {
            Event::Ended(s) => Ok(s),
            Event::Silent => Err(Failure::violation(
                format!("the target ends {}'s stream within {within:?}", self.label),
                "the stream stayed open",
            )),
            Event::Message(m) => Err(Failure::violation(
                format!("the target ends {}'s stream without replying", self.label),
                format!("received {}", describe(&m)),
            )),
        }
    }
}

/// Text of an event for evidence.
pub fn event_text(e: &Event) -> String {
    match e {
        Event::Message(m) => format!("received {}", describe(m)),
        Event::Ended(s) => format!("stream ended with {}", status_text(s)),
        Event::Silent => "nothing".into(),
    }
}

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    b
}
