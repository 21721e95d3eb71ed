// TEMPORARY STAND-IN: replaced by the lead's session module at merge
//
// This file only exists so the client shell (`crate::client`) compiles and its tests run before
// the real sans-IO session endpoint is merged. It has exactly the API of ENDPOINT-API.md; the
// bodies do the minimum (the local name, session ids, no wire traffic). Do not build on it.

//! TEMPORARY STAND-IN for the sans-IO session endpoint (see the note at the top of the file).

#![allow(missing_docs, dead_code, clippy::large_enum_variant)]

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use slim_proto::{names::SlimName, pb};

/// Wall clock anchored to a monotonic instant.
pub struct Clock {
    pub at: Instant,
    pub unix_secs: u64,
}

/// How this endpoint proves who it is (and checks peers).
pub enum Credentials {
    SharedSecret(String),
    /// Stand-in: the bytes of the JWT signing key file (the real type is the lead's).
    Jwt(Vec<u8>),
}

/// Stand-in endpoint configuration.
pub struct EndpointConfig {
    pub name: SlimName,
    pub credentials: Credentials,
    pub seed: [u8; 32],
    pub clock: Clock,
}

pub type SessionId = u32;

#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    pub mls: bool,
    pub reliable: Option<Reliability>,
}

#[derive(Clone, Copy, Debug)]
pub struct Reliability {
    pub interval: std::time::Duration,
    pub max_retries: u32,
}

/// What the endpoint asks its shell to put on the wire.
pub enum Transmit {
    Publish(pb::Message),
    Subscribe(SlimName),
    Unsubscribe(SlimName),
}

/// What happened, for the application.
pub enum Event {
    SessionOpened {
        session: SessionId,
        peer: SlimName,
        initiator: bool,
        group: bool,
    },
    Message {
        session: SessionId,
        from: SlimName,
        payload: Bytes,
    },
    Delivered {
        session: SessionId,
        message_id: u32,
    },
    SendFailed {
        session: SessionId,
        message_id: u32,
        peer: SlimName,
    },
    MemberJoined {
        session: SessionId,
        member: SlimName,
    },
    MemberLeft {
        session: SessionId,
        member: SlimName,
    },
    Removed {
        session: SessionId,
    },
    SessionClosed {
        session: SessionId,
        reason: String,
    },
    Error {
        session: Option<SessionId>,
        message: String,
    },
}

/// Stand-in endpoint: knows its name and hands out session ids; sends nothing.
pub struct Endpoint {
    local: SlimName,
    next_session: SessionId,
    next_message: u32,
    events: VecDeque<Event>,
}

impl Endpoint {
    pub fn new(cfg: EndpointConfig) -> Result<Self, SessionError> {
        // Stand-in id: derived from the seed (the real endpoint hashes its token id).
        let id = u128::from_le_bytes(cfg.seed[..16].try_into().unwrap_or([1; 16])) >> 1;
        Ok(Self {
            local: cfg.name.with_id(id),
            next_session: 1,
            next_message: 1,
            events: VecDeque::new(),
        })
    }

    pub fn local_name(&self) -> &SlimName {
        &self.local
    }

    pub fn handle_message(&mut self, _msg: pb::Message, _now: Instant) {}

    pub fn handle_timeout(&mut self, _now: Instant) {}

    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        None
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn open_p2p(
        &mut self,
        _peer: SlimName,
        _opts: SessionOptions,
        _now: Instant,
    ) -> Result<SessionId, SessionError> {
        Ok(self.new_session())
    }

    pub fn create_group(
        &mut self,
        _channel: SlimName,
        _opts: SessionOptions,
        _now: Instant,
    ) -> Result<SessionId, SessionError> {
        Ok(self.new_session())
    }

    pub fn invite(
        &mut self,
        _session: SessionId,
        _peer: SlimName,
        _now: Instant,
    ) -> Result<(), SessionError> {
        Ok(())
    }

    pub fn remove(
        &mut self,
        _session: SessionId,
        _peer: &SlimName,
        _now: Instant,
    ) -> Result<(), SessionError> {
        Ok(())
    }

    pub fn publish(
        &mut self,
        _session: SessionId,
        _payload: Bytes,
        _now: Instant,
    ) -> Result<u32, SessionError> {
        let id = self.next_message;
        self.next_message += 1;
        Ok(id)
    }

    pub fn close(&mut self, _session: SessionId, _now: Instant) -> Result<(), SessionError> {
        Ok(())
    }

    pub fn is_busy(&self) -> bool {
        false
    }

    fn new_session(&mut self) -> SessionId {
        let id = self.next_session;
        self.next_session += 1;
        id
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("unknown session {0}")]
    UnknownSession(SessionId),
    #[error("only the moderator of a group can do this")]
    NotModerator,
}
