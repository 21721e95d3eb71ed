//! Structural validation of a received `Message` (SLIM-VAL-*).
//!
//! A node must never act on a message that lacks what its kind needs. [`validate`] returns the
//! message's kind, or the first defect as a typed [`ValidationError`] whose text says which field
//! is missing, so a relay can log it and a test suite can report it.

use crate::pb::{self, message::MessageType};

/// The kind of a structurally valid message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `Message.subscribe`
    Subscribe,
    /// `Message.unsubscribe`
    Unsubscribe,
    /// `Message.publish`
    Publish,
    /// `Message.link`
    Link,
    /// `Message.subscription_ack`
    SubscriptionAck,
}

/// The first structural defect found in a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// `message_type` is unset: an empty `Message{}`, or a oneof variant this implementation does
    /// not know (protobuf decoders skip unknown fields) (SLIM-VAL-001).
    #[error("message has no message_type (empty Message, or an unknown oneof variant)")]
    NoMessageType,
    /// A Subscribe, Unsubscribe or Publish without `header` (SLIM-VAL-002).
    #[error("{0} has no header")]
    MissingHeader(&'static str),
    /// `header.source` or `header.destination` is absent, or has no hashed form (SLIM-VAL-002).
    #[error("{kind} header has no {field} name (or it lacks its encoded form)")]
    MissingName {
        /// Message kind.
        kind: &'static str,
        /// `source` or `destination`.
        field: &'static str,
    },
    /// A Subscribe/Unsubscribe destination without its string form (SLIM-VAL-003).
    #[error(
        "{0} destination has no str_name; the string components are required to register a name"
    )]
    MissingStringName(&'static str),
    /// A Publish without a session header (SLIM-VAL-004).
    #[error("publish has no session header")]
    MissingSessionHeader,
    /// A `Link` with no `link_type` (SLIM-LINK-001).
    #[error("link message has no link_type")]
    MissingLinkType,
}

/// Checks what a message of its kind needs and returns the kind.
pub fn validate(msg: &pb::Message) -> Result<Kind, ValidationError> {
    match &msg.message_type {
        None => Err(ValidationError::NoMessageType),
        Some(MessageType::Subscribe(s)) => {
            routed_header(s.header.as_ref(), "subscribe")?;
            string_destination(s.header.as_ref(), "subscribe")?;
            Ok(Kind::Subscribe)
        }
        Some(MessageType::Unsubscribe(u)) => {
            routed_header(u.header.as_ref(), "unsubscribe")?;
            Ok(Kind::Unsubscribe)
        }
        Some(MessageType::Publish(p)) => {
            routed_header(p.header.as_ref(), "publish")?;
            if p.session.is_none() {
                return Err(ValidationError::MissingSessionHeader);
            }
            Ok(Kind::Publish)
        }
        Some(MessageType::Link(l)) => {
            if l.link_type.is_none() {
                return Err(ValidationError::MissingLinkType);
            }
            Ok(Kind::Link)
        }
        Some(MessageType::SubscriptionAck(_)) => Ok(Kind::SubscriptionAck),
    }
}

fn routed_header(h: Option<&pb::SlimHeader>, kind: &'static str) -> Result<(), ValidationError> {
    let h = h.ok_or(ValidationError::MissingHeader(kind))?;
    if h.source.as_ref().and_then(|n| n.name.as_ref()).is_none() {
        return Err(ValidationError::MissingName {
            kind,
            field: "source",
        });
    }
    if h.destination
        .as_ref()
        .and_then(|n| n.name.as_ref())
        .is_none()
    {
        return Err(ValidationError::MissingName {
            kind,
            field: "destination",
        });
    }
    Ok(())
}

fn string_destination(
    h: Option<&pb::SlimHeader>,
    kind: &'static str,
) -> Result<(), ValidationError> {
    match h
        .and_then(|h| h.destination.as_ref())
        .and_then(|d| d.str_name.as_ref())
    {
        Some(_) => Ok(()),
        None => Err(ValidationError::MissingStringName(kind)),
    }
}

/// The routing header of a Subscribe, Unsubscribe or Publish.
pub fn header(msg: &pb::Message) -> Option<&pb::SlimHeader> {
    match &msg.message_type {
        Some(MessageType::Subscribe(s)) => s.header.as_ref(),
        Some(MessageType::Unsubscribe(u)) => u.header.as_ref(),
        Some(MessageType::Publish(p)) => p.header.as_ref(),
        _ => None,
    }
}

/// Mutable access to the routing header of a Subscribe, Unsubscribe or Publish.
pub fn header_mut(msg: &mut pb::Message) -> Option<&mut pb::SlimHeader> {
    match &mut msg.message_type {
        Some(MessageType::Subscribe(s)) => s.header.as_mut(),
        Some(MessageType::Unsubscribe(u)) => u.header.as_mut(),
        Some(MessageType::Publish(p)) => p.header.as_mut(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::SlimName;

    fn routed(kind: &str) -> pb::Message {
        let header = pb::SlimHeader {
            source: Some(SlimName::new("a", "b", "c").to_proto()),
            destination: Some(SlimName::new("a", "b", "d").to_proto()),
            ttl: 8,
            ..Default::default()
        };
        let message_type = match kind {
            "subscribe" => MessageType::Subscribe(pb::Subscribe {
                header: Some(header),
                subscription_id: 1,
            }),
            "unsubscribe" => MessageType::Unsubscribe(pb::Unsubscribe {
                header: Some(header),
                subscription_id: 1,
            }),
            _ => MessageType::Publish(pb::Publish {
                header: Some(header),
                session: Some(pb::SessionHeader::default()),
                msg: None,
            }),
        };
        pb::Message {
            message_type: Some(message_type),
            metadata: Default::default(),
        }
    }

    #[test]
    fn valid_messages() {
        assert_eq!(validate(&routed("subscribe")), Ok(Kind::Subscribe));
        assert_eq!(validate(&routed("unsubscribe")), Ok(Kind::Unsubscribe));
        // Content is optional: only the session header is required.
        assert_eq!(validate(&routed("publish")), Ok(Kind::Publish));
    }

    #[test]
    fn each_defect_has_its_error() {
        assert_eq!(
            validate(&pb::Message::default()),
            Err(ValidationError::NoMessageType)
        );
        let mut m = routed("publish");
        if let Some(MessageType::Publish(p)) = &mut m.message_type {
            p.session = None;
        }
        assert_eq!(validate(&m), Err(ValidationError::MissingSessionHeader));
        let mut m = routed("subscribe");
        header_mut(&mut m)
            .expect("header")
            .destination
            .as_mut()
            .expect("dst")
            .str_name = None;
        assert_eq!(
            validate(&m),
            Err(ValidationError::MissingStringName("subscribe"))
        );
        let mut m = routed("unsubscribe");
        header_mut(&mut m).expect("header").source = None;
        assert_eq!(
            validate(&m),
            Err(ValidationError::MissingName {
                kind: "unsubscribe",
                field: "source"
            })
        );
        let mut m = routed("publish");
        header_mut(&mut m)
            .expect("header")
            .destination
            .as_mut()
            .expect("dst")
            .name = None;
        assert_eq!(
            validate(&m),
            Err(ValidationError::MissingName {
                kind: "publish",
                field: "destination"
            })
        );
        let mut m = routed("subscribe");
        if let Some(MessageType::Subscribe(s)) = &mut m.message_type {
            s.header = None;
        }
        assert_eq!(
            validate(&m),
            Err(ValidationError::MissingHeader("subscribe"))
        );
        let m = pb::Message {
            message_type: Some(MessageType::Link(pb::Link { link_type: None })),
            metadata: Default::default(),
        };
        assert_eq!(validate(&m), Err(ValidationError::MissingLinkType));
    }
}
