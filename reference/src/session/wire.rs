//! Session messages as the real SLIM SDK puts them on the wire (WIRE.md §5): builders for the
//! Publishes a session sends and accessors for the ones it receives.
//!
//! Every session message is a `Publish` whose `SessionHeader` names the session, the message type
//! and the message id. Data travels as an application payload (`payload_type` "msg"), acks and
//! retransmission requests as an empty application payload, and commands (discovery, join,
//! welcome, group update, leave, close, heartbeat) as a `CommandPayload`.

use bytes::Bytes;
use slim_proto::names::SlimName;
use slim_proto::pb::{self, command_payload::CommandPayloadType, content::ContentType};
use slim_proto::pb::{SessionMessageType as Mt, SessionType};

/// Metadata key the SDK sets (value `"TRUE"`) on a LeaveRequest a participant sends when it
/// leaves on its own (WIRE.md §1.7).
pub const LEAVING_SESSION: &str = "LEAVING_SESSION";
/// Metadata key for `publish_to` messages, which bypass ordering (WIRE.md §5.1).
pub const PUBLISH_TO: &str = "PUBLISH_TO";
/// The value the SDK uses for boolean metadata keys.
pub const TRUE_VAL: &str = "TRUE";
/// Payload type of application data (the SDK's default, WIRE.md §5.1).
pub const DATA_PAYLOAD_TYPE: &str = "msg";

/// The parts of an inbound session message the endpoint dispatches on.
#[derive(Debug, Clone)]
pub struct Inbound<'a> {
    /// The whole message (for signatures, AAD and payload access).
    pub msg: &'a pb::Message,
    /// The Publish inside it.
    pub publish: &'a pb::Publish,
    /// Sender (full name, with its id).
    pub source: SlimName,
    /// Destination as sent.
    pub destination: SlimName,
    /// Session type (point-to-point or multicast).
    pub session_type: SessionType,
    /// Session message type.
    pub kind: Mt,
    /// Session id.
    pub session_id: u32,
    /// Message id.
    pub message_id: u32,
}

/// Why an inbound message is not a session message the endpoint can read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Not a Publish.
    #[error("not a Publish")]
    NotPublish,
    /// No SLIM header or no session header.
    #[error("Publish without SLIM header or session header")]
    MissingHeader,
    /// A name without its string form or hashed form.
    #[error("bad {0} name: {1}")]
    BadName(&'static str, slim_proto::names::NameError),
    /// An unknown session type or message type value.
    #[error("unknown session type {0} or message type {1}")]
    UnknownType(i32, i32),
}

/// Reads the session-level view of an inbound message.
pub fn inbound(msg: &pb::Message) -> Result<Inbound<'_>, WireError> {
    let Some(pb::message::MessageType::Publish(publish)) = &msg.message_type else {
        return Err(WireError::NotPublish);
    };
    let (Some(header), Some(session)) = (&publish.header, &publish.session) else {
        return Err(WireError::MissingHeader);
    };
    let name = |n: &Option<pb::Name>, what: &'static str| -> Result<SlimName, WireError> {
        let n = n.as_ref().ok_or(WireError::BadName(
            what,
            slim_proto::names::NameError::MissingEncoded,
        ))?;
        SlimName::from_proto(n).map_err(|e| WireError::BadName(what, e))
    };
    let session_type = SessionType::try_from(session.session_type)
        .map_err(|_| WireError::UnknownType(session.session_type, session.session_message_type))?;
    let kind = Mt::try_from(session.session_message_type)
        .map_err(|_| WireError::UnknownType(session.session_type, session.session_message_type))?;
    Ok(Inbound {
        msg,
        publish,
        source: name(&header.source, "source")?,
        destination: name(&header.destination, "destination")?,
        session_type,
        kind,
        session_id: session.session_id,
        message_id: session.message_id,
    })
}

impl Inbound<'_> {
    /// The command payload, if this is a command.
    pub fn command(&self) -> Option<&CommandPayloadType> {
        match self.publish.msg.as_ref()?.content_type.as_ref()? {
            ContentType::CommandPayload(c) => c.command_payload_type.as_ref(),
            ContentType::AppPayload(_) => None,
        }
    }

    /// The application payload blob (data, or the empty payload of acks), if any.
    pub fn app_blob(&self) -> Option<&Bytes> {
        match self.publish.msg.as_ref()?.content_type.as_ref()? {
            ContentType::AppPayload(a) => Some(&a.blob),
            ContentType::CommandPayload(_) => None,
        }
    }

    /// The `error` flag of the SLIM header (an RTX reply for a message the sender no longer has).
    pub fn error_flag(&self) -> bool {
        self.publish
            .header
            .as_ref()
            .and_then(|h| h.error)
            .unwrap_or(false)
    }

    /// The identity token the sender put in the header.
    pub fn identity(&self) -> &str {
        self.publish
            .header
            .as_ref()
            .map(|h| h.identity.as_str())
            .unwrap_or("")
    }

    /// Whether metadata `key` is set to `"TRUE"`.
    pub fn flag(&self, key: &str) -> bool {
        self.msg.metadata.get(key).map(String::as_str) == Some(TRUE_VAL)
    }
}

/// What every session message a session sends shares.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Our full name.
    pub source: SlimName,
    /// Session type.
    pub session_type: SessionType,
    /// Session id.
    pub session_id: u32,
}

impl Envelope {
    /// A session Publish to `dst` (fanout 1, or 256 for group broadcasts) with identity `token`.
    pub fn publish(
        &self,
        dst: &SlimName,
        broadcast: bool,
        kind: Mt,
        message_id: u32,
        token: &str,
        content: ContentType,
    ) -> pb::Message {
        let mut header = slim_proto::messages::header(
            &self.source,
            dst,
            if broadcast {
                slim_proto::BROADCAST_FANOUT
            } else {
                slim_proto::ANYCAST_FANOUT
            },
        );
        header.identity = token.to_string();
        slim_proto::messages::wrap(pb::message::MessageType::Publish(pb::Publish {
            header: Some(header),
            session: Some(pb::SessionHeader {
                session_type: self.session_type as i32,
                session_message_type: kind as i32,
                session_id: self.session_id,
                message_id,
            }),
            msg: Some(pb::Content {
                content_type: Some(content),
            }),
        }))
    }
}

/// A command payload as `Content`.
pub fn command(c: CommandPayloadType) -> ContentType {
    ContentType::CommandPayload(pb::CommandPayload {
        command_payload_type: Some(c),
    })
}

/// An application payload as `Content`.
pub fn app(payload_type: &str, blob: Bytes) -> ContentType {
    ContentType::AppPayload(pb::ApplicationPayload {
        payload_type: payload_type.to_string(),
        blob,
    })
}

/// The empty application payload of MSG_ACK, RTX_REQUEST and error RTX_REPLY (WIRE.md §5.1).
pub fn empty_app() -> ContentType {
    app("", Bytes::new())
}

/// A roster entry: a member that sends and receives data, online.
pub fn participant(name: &SlimName) -> pb::Participant {
    pb::Participant {
        name: Some(name.to_proto()),
        settings: Some(pb::ParticipantSettings {
            sends_data: true,
            receives_data: true,
        }),
        status: pb::ParticipantState::Online as i32,
    }
}

/// The name of a roster entry, if it has a readable one.
pub fn participant_name(p: &pb::Participant) -> Option<SlimName> {
    SlimName::from_proto(p.name.as_ref()?).ok()
}

/// Sets the SLIM header's `error` flag (RTX reply for a message no longer buffered).
pub fn set_error(msg: &mut pb::Message) {
    if let Some(pb::message::MessageType::Publish(p)) = &mut msg.message_type {
        if let Some(h) = &mut p.header {
            h.error = Some(true);
        }
    }
}

/// Replaces the application blob of an outbound data message (after MLS encryption).
pub fn set_app_blob(msg: &mut pb::Message, blob: Bytes) {
    if let Some(pb::message::MessageType::Publish(p)) = &mut msg.message_type {
        if let Some(pb::Content {
            content_type: Some(ContentType::AppPayload(a)),
        }) = &mut p.msg
        {
            a.blob = blob;
        }
    }
}

/// Whether two names denote the same instance (components and id).
pub fn same_instance(a: &SlimName, b: &SlimName) -> bool {
    a == b
}

/// Whether `a` and `b` share the three readable components (any ids).
pub fn same_service(a: &SlimName, b: &SlimName) -> bool {
    a.components() == b.components()
}
