//! Evidence: the frames a case sent and received, and how messages and statuses are described
//! in reports. Shared by the runner's client (which records) and the verdicts (which carry it).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use slim_proto::pb::{self, message::MessageType};
use tonic::Status;

/// One recorded frame.
#[derive(Debug, Clone, Serialize)]
pub struct Frame {
    /// Milliseconds since the case started.
    pub at_ms: u64,
    /// Which client (`A`, `B`, …).
    pub link: String,
    /// `sent`, `received` or `ended`.
    pub dir: &'static str,
    /// A one-line description (message kind and key fields, or the gRPC status).
    pub summary: String,
    /// Encoded size in bytes.
    pub bytes: usize,
}

/// The frames of one case, shared by its clients.
#[derive(Debug, Clone)]
pub struct FrameLog {
    start: Instant,
    frames: Arc<Mutex<Vec<Frame>>>,
}

impl FrameLog {
    /// An empty log starting now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            frames: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Records a frame; `summary` is only rendered while the log has room, so heavy cases
    /// (thousands of frames) do not describe frames nobody will see.
    pub(crate) fn push(
        &self,
        link: &str,
        dir: &'static str,
        bytes: usize,
        summary: impl FnOnce() -> String,
    ) {
        if let Ok(mut f) = self.frames.lock() {
            // Bound the evidence: the first 200 frames say what happened.
            if f.len() < 200 {
                f.push(Frame {
                    at_ms: self.start.elapsed().as_millis() as u64,
                    link: link.to_string(),
                    dir,
                    summary: summary(),
                    bytes,
                });
            }
        }
    }

    /// Everything recorded so far.
    pub fn frames(&self) -> Vec<Frame> {
        self.frames.lock().map(|f| f.clone()).unwrap_or_default()
    }
}

impl Default for FrameLog {
    fn default() -> Self {
        Self::new()
    }
}

/// A short description of a message for evidence.
pub fn describe(msg: &pb::Message) -> String {
    fn name(n: Option<&pb::Name>) -> String {
        let Some(n) = n else { return "-".into() };
        match (&n.str_name, &n.name) {
            (Some(s), Some(e)) => format!(
                "{}/{}/{}/{}",
                s.str_component_0,
                s.str_component_1,
                s.str_component_2,
                slim_proto::names::id_text(slim_proto::names::encoded_id(e))
            ),
            (None, Some(e)) => format!(
                "#{:x}/{:x}/{:x}/{}",
                e.component_0,
                e.component_1,
                e.component_2,
                slim_proto::names::id_text(slim_proto::names::encoded_id(e))
            ),
            (Some(s), None) => format!(
                "{}/{}/{}/(no hash)",
                s.str_component_0, s.str_component_1, s.str_component_2
            ),
            (None, None) => "(empty name)".into(),
        }
    }
    fn header(h: Option<&pb::SlimHeader>) -> String {
        let Some(h) = h else {
            return "no header".into();
        };
        let mut s = format!(
            "src={} dst={} fanout={} ttl={}",
            name(h.source.as_ref()),
            name(h.destination.as_ref()),
            h.fanout,
            h.ttl
        );
        for (k, v) in [
            ("incoming_conn", h.incoming_conn),
            ("recv_from", h.recv_from),
            ("forward_to", h.forward_to),
        ] {
            if let Some(v) = v {
                s.push_str(&format!(" {k}={v}"));
            }
        }
        s.push_str(match h.header_mac.as_ref().map(|t| t.len()) {
            None => " mac=none",
            Some(32) => " mac=32B",
            Some(_) => " mac=bad-length",
        });
        s
    }
    match &msg.message_type {
        None => "Message{} (no message_type)".into(),
        Some(MessageType::Link(l)) => match &l.link_type {
            None => "link{} (no payload)".into(),
            Some(pb::link::LinkType::LinkNegotiation(p)) => format!(
                "link_negotiation link_id={:?} version={:?} is_reply={} key={}B type={} node_id={:?} kem={}",
                p.link_id,
                p.slim_version,
                p.is_reply,
                p.link_ecdh_public_key.len(),
                p.connection_type,
                p.node_id,
                p.link_kem_payload.as_ref().map_or(0, |k| k.len())
            ),
        },
        Some(MessageType::Subscribe(s)) => format!(
            "subscribe id={} {}",
            s.subscription_id,
            header(s.header.as_ref())
        ),
        Some(MessageType::Unsubscribe(u)) => format!(
            "unsubscribe id={} {}",
            u.subscription_id,
            header(u.header.as_ref())
        ),
        Some(MessageType::Publish(p)) => {
            let blob = match p.msg.as_ref().and_then(|m| m.content_type.as_ref()) {
                Some(pb::content::ContentType::AppPayload(a)) => {
                    let shown: String = String::from_utf8_lossy(&a.blob).chars().take(40).collect();
                    format!(" payload={shown:?}")
                }
                Some(pb::content::ContentType::CommandPayload(_)) => " command".into(),
                None => " no-content".into(),
            };
            format!("publish {}{blob}", header(p.header.as_ref()))
        }
        Some(MessageType::SubscriptionAck(a)) => format!(
            "subscription_ack id={} success={} error={:?}",
            a.subscription_id, a.success, a.error
        ),
    }
}

/// Text of a gRPC status for evidence.
pub fn status_text(s: &Status) -> String {
    if s.message().is_empty() {
        format!("status {:?}", s.code())
    } else {
        format!("status {:?}: {}", s.code(), s.message())
    }
}
