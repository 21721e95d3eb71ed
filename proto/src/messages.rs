//! Builders for the routed messages every client in this workspace sends, and the accessor for
//! a Publish's application payload.
//!
//! One definition of a well-formed Subscribe, Unsubscribe and Publish (header with both name
//! forms and the default TTL, session header, application payload), shared by the conformance
//! runner, the load tool and the relay's tests. Signing is the caller's: see [`crate::mac`].

use bytes::Bytes;

use crate::names::SlimName;
use crate::pb::{self, message::MessageType};

/// A routed header from `src` to `dst` with the default TTL (SLIM-ROUTE-010) and our version.
pub fn header(src: &SlimName, dst: &SlimName, fanout: u32) -> pb::SlimHeader {
    pb::SlimHeader {
        source: Some(src.to_proto()),
        destination: Some(dst.to_proto()),
        fanout,
        ttl: crate::DEFAULT_TTL,
        version: crate::SLIM_VERSION.into(),
        ..Default::default()
    }
}

/// Wraps a message type in a `Message` without metadata.
pub fn wrap(t: MessageType) -> pb::Message {
    pb::Message {
        message_type: Some(t),
        metadata: Default::default(),
    }
}

/// A Subscribe for `name` (source = destination = name) with ack id `id` (SLIM-SUB-001).
pub fn subscribe(name: &SlimName, id: u64) -> pb::Message {
    wrap(MessageType::Subscribe(pb::Subscribe {
        header: Some(header(name, name, 1)),
        subscription_id: id,
    }))
}

/// An Unsubscribe for `name` with ack id `id` (SLIM-SUB-004).
pub fn unsubscribe(name: &SlimName, id: u64) -> pb::Message {
    wrap(MessageType::Unsubscribe(pb::Unsubscribe {
        header: Some(header(name, name, 1)),
        subscription_id: id,
    }))
}

/// A point-to-point Publish (session 1, message 1) carrying `payload` as an application payload
/// of type `msg`.
pub fn publish(
    src: &SlimName,
    dst: &SlimName,
    fanout: u32,
    payload: impl AsRef<[u8]>,
) -> pb::Message {
    wrap(MessageType::Publish(pb::Publish {
        header: Some(header(src, dst, fanout)),
        session: Some(pb::SessionHeader {
            session_type: pb::SessionType::PointToPoint as i32,
            session_message_type: pb::SessionMessageType::Msg as i32,
            session_id: 1,
            message_id: 1,
        }),
        msg: Some(pb::Content {
            content_type: Some(pb::content::ContentType::AppPayload(
                pb::ApplicationPayload {
                    payload_type: "msg".into(),
                    blob: Bytes::copy_from_slice(payload.as_ref()),
                },
            )),
        }),
    }))
}

/// The application payload of a Publish, if it has one.
pub fn app_payload(msg: &pb::Message) -> Option<&[u8]> {
    match &msg.message_type {
        Some(MessageType::Publish(p)) => match p.msg.as_ref()?.content_type.as_ref()? {
            pb::content::ContentType::AppPayload(a) => Some(&a.blob),
            _ => None,
        },
        _ => None,
    }
}
