//! The data path of a session (WIRE.md §5.4, §5.7): application messages out (numbered,
//! MLS-encrypted, through the reliable sender when reliability is on) and in (member and token
//! checked, decrypted, its header AAD and MLS sender checked, acked and ordered by the reliable
//! receiver), and the reliable sender's and receiver's outputs turned into SLIM messages.

use crate::mutants::session::{self as mutants, SessionFault};
use bytes::Bytes;
use slim_proto::names::SlimName;
use slim_proto::pb::SessionMessageType as Mt;

use super::reliable::{self, data_id_after, ReceiverOutput, RtxAnswer, SenderOutput};
use super::shared::{EndpointIo, MlsState, Shared};
use super::wire::{self, Inbound};
use super::{Event, SessionError, Transmit};

/// One data message's wire fields (see [`Shared::transmit_data`]).
struct DataFrame<'a> {
    /// Where it goes.
    dst: &'a SlimName,
    /// Whether it goes to every subscriber of `dst`.
    broadcast: bool,
    /// MSG or RTX_REPLY.
    kind: Mt,
    /// Its message id.
    id: u32,
    /// The plaintext (ignored when `lost`).
    payload: &'a Bytes,
    /// An RTX_REPLY saying the message is lost (error flag, no payload).
    lost: bool,
}

impl Shared {
    /// Queues an application message (sent at once when the session is established).
    pub fn publish(
        &mut self,
        io: &mut EndpointIo<'_>,
        payload: Bytes,
    ) -> Result<u32, SessionError> {
        if self.ended || matches!(self.mls, MlsState::Gone) {
            return Err(SessionError::Closed(self.id));
        }
        // The id this message will get: after the ones already waiting in the backlog.
        let next = match &self.reliable {
            Some((s, _)) => s.next_id(),
            None => self.next_plain_id,
        };
        let id = data_id_after(next, self.backlog.len() as u64);
        self.backlog.push_back(payload);
        self.drain_backlog(io);
        Ok(id)
    }

    /// Sends what waits in the backlog, as far as the window allows.
    pub fn drain_backlog(&mut self, io: &mut EndpointIo<'_>) {
        if !self.established || self.ended {
            return;
        }
        while let Some(payload) = self.backlog.pop_front() {
            match &mut self.reliable {
                Some((sender, _)) => {
                    if sender.send(payload.clone(), io.now).is_err() {
                        self.backlog.push_front(payload);
                        break;
                    }
                }
                None => {
                    let id = self.next_plain_id;
                    self.next_plain_id = data_id_after(id, 1);
                    let dst = self.data_target();
                    self.transmit_data(
                        io,
                        DataFrame {
                            dst: &dst,
                            broadcast: self.is_group(),
                            kind: Mt::Msg,
                            id,
                            payload: &payload,
                            lost: false,
                        },
                    );
                }
            }
        }
        self.flush_reliable(io);
    }

    /// Builds one data message (MSG or RTX_REPLY), encrypting it with MLS when on.
    fn transmit_data(&mut self, io: &mut EndpointIo<'_>, frame: DataFrame<'_>) {
        let DataFrame {
            dst,
            broadcast,
            kind,
            id,
            payload,
            lost,
        } = frame;
        let token = match io.me.token(io.unix, io.rng) {
            Ok(t) => t,
            Err(e) => {
                io.events.push_back(Event::Error {
                    session: Some(self.id),
                    message: e.to_string(),
                });
                return;
            }
        };
        let content = if lost {
            wire::empty_app()
        } else {
            wire::app(wire::DATA_PAYLOAD_TYPE, payload.clone())
        };
        let mut msg = self.env.publish(dst, broadcast, kind, id, token, content);
        if lost {
            wire::set_error(&mut msg);
        } else if self.opts.mls && !matches!(self.mls, MlsState::Group(_)) {
            // Never in clear in an MLS session: before the welcome, or after our removal.
            io.events.push_back(Event::Error {
                session: Some(self.id),
                message: format!(
                    "message {id} not sent: no MLS group (not welcomed yet, or removed)"
                ),
            });
            return;
        } else if let MlsState::Group(g) = &mut self.mls {
            // The header AAD binds the ciphertext to the header it travels in (WIRE.md §5.7).
            let aad = slim_proto::e2e::header_aad(&msg);
            match g.encrypt(&aad, payload) {
                Ok(ct) => wire::set_app_blob(&mut msg, Bytes::from(ct)),
                Err(e) => {
                    io.events.push_back(Event::Error {
                        session: Some(self.id),
                        message: format!("MLS encryption failed: {e}"),
                    });
                    return;
                }
            }
        }
        self.sent_recently = true;
        io.out.push_back(Transmit::Publish(msg));
    }

    /// Moves the reliable sender's and receiver's outputs to the wire and the application: acks
    /// (SLIM-REL-002), retransmission requests (SLIM-REL-004), in-order deliveries
    /// (SLIM-REL-005) and failures named by message and peer (SLIM-REL-006).
    pub fn flush_reliable(&mut self, io: &mut EndpointIo<'_>) {
        let Some((mut sender, mut receiver)) = self.reliable.take() else {
            return;
        };
        let group = self.is_group();
        let default_dst = self.data_target();
        while let Some(o) = sender.poll_output() {
            match o {
                SenderOutput::Transmit {
                    id, to, payload, ..
                } => match to {
                    Some(p) => self.transmit_data(
                        io,
                        DataFrame {
                            dst: &p,
                            broadcast: false,
                            kind: Mt::Msg,
                            id,
                            payload: &payload,
                            lost: false,
                        },
                    ),
                    None => self.transmit_data(
                        io,
                        DataFrame {
                            dst: &default_dst,
                            broadcast: group,
                            kind: Mt::Msg,
                            id,
                            payload: &payload,
                            lost: false,
                        },
                    ),
                },
                SenderOutput::Delivered { id } => io.events.push_back(Event::Delivered {
                    session: self.id,
                    message_id: id,
                }),
                // Seeded fault: retries exhausted reported as delivered (SLIM-REL-006).
                SenderOutput::Failed { id, .. }
                    if mutants::on(SessionFault::PublishFailureAsOk) =>
                {
                    io.events.push_back(Event::Delivered {
                        session: self.id,
                        message_id: id,
                    })
                }
                SenderOutput::Failed { id, peers } => {
                    for peer in peers {
                        io.events.push_back(Event::SendFailed {
                            session: self.id,
                            message_id: id,
                            peer,
                        });
                    }
                }
            }
        }
        while let Some(o) = receiver.poll_output() {
            match o {
                ReceiverOutput::Ack { to, id } => {
                    self.send_plain(io, &to, Mt::MsgAck, id);
                }
                ReceiverOutput::RtxRequest { to, id } => {
                    self.send_plain(io, &to, Mt::RtxRequest, id);
                }
                ReceiverOutput::Deliver { from, payload, .. } => {
                    io.events.push_back(Event::Message {
                        session: self.id,
                        from,
                        payload,
                    })
                }
                ReceiverOutput::Lost { from, id } => io.events.push_back(Event::Error {
                    session: Some(self.id),
                    message: format!("message {id} from {from} was lost (the sender no longer had it)"),
                }),
                ReceiverOutput::GaveUp { from, id } => io.events.push_back(Event::Error {
                    session: Some(self.id),
                    message: format!(
                        "message {id} from {from} never arrived (retransmission requests unanswered)"
                    ),
                }),
            }
        }
        self.reliable = Some((sender, receiver));
        // Acks may have made room in the window.
        if !self.backlog.is_empty() && self.established {
            if let Some((sender, _)) = &self.reliable {
                if sender.in_flight() < sender.window() {
                    self.drain_backlog(io);
                }
            }
        }
    }

    /// An ack or retransmission request: empty application payload, fanout 1; the ack of a
    /// `publish_to` message (an id outside the sequence) says so (WIRE.md §5.4).
    fn send_plain(&mut self, io: &mut EndpointIo<'_>, to: &SlimName, kind: Mt, id: u32) {
        let Ok(token) = io.me.token(io.unix, io.rng) else {
            return;
        };
        let mut msg = self
            .env
            .publish(to, false, kind, id, token, wire::empty_app());
        if !reliable::is_sequenced(id) {
            msg.metadata
                .insert(wire::PUBLISH_TO.to_string(), wire::TRUE_VAL.to_string());
        }
        io.out.push_back(Transmit::Publish(msg));
    }

    /// An inbound data message (MSG, RTX_REPLY), ack or retransmission request of this session.
    pub fn data_message(
        &mut self,
        io: &mut EndpointIo<'_>,
        m: &Inbound<'_>,
    ) -> Result<(), SessionError> {
        if self.ended {
            return Ok(());
        }
        if !self.members.contains_key(&m.source) {
            return Err(SessionError::Protocol(format!(
                "{:?} from {} who is not a member of session {}",
                m.kind, m.source, self.id
            )));
        }
        // Data carries the sender's token too; a bad one is refused.
        io.me.check_token(m.identity(), io.unix)?;
        match m.kind {
            Mt::Msg | Mt::RtxReply => {
                if let Some((_, receiver)) = &mut self.reliable {
                    if receiver.is_duplicate(&m.source, m.message_id) {
                        // A duplicate: acked again, not decrypted again (MLS keys are single-use).
                        receiver.on_message(&m.source, m.message_id, Bytes::new(), io.now);
                        self.flush_reliable(io);
                        return Ok(());
                    }
                }
                let lost = m.kind == Mt::RtxReply && m.error_flag();
                let payload = if lost { None } else { Some(self.open_data(m)?) };
                match &mut self.reliable {
                    Some((_, receiver)) => {
                        if m.kind == Mt::Msg && !m.flag(wire::PUBLISH_TO) {
                            receiver.on_message(
                                &m.source,
                                m.message_id,
                                payload.unwrap_or_default(),
                                io.now,
                            );
                        } else if m.kind == Mt::RtxReply {
                            receiver.on_rtx_reply(
                                &m.source,
                                m.message_id,
                                payload.ok_or(reliable::Lost),
                                io.now,
                            );
                        } else {
                            // publish_to (ids above the sequence range): the receiver acks and
                            // delivers it at once, outside the ordered stream.
                            receiver.on_message(
                                &m.source,
                                m.message_id,
                                payload.unwrap_or_default(),
                                io.now,
                            );
                        }
                        self.flush_reliable(io);
                    }
                    None => {
                        if let Some(p) = payload {
                            io.events.push_back(Event::Message {
                                session: self.id,
                                from: m.source.clone(),
                                payload: p,
                            });
                        }
                    }
                }
            }
            Mt::MsgAck => {
                if let Some((sender, _)) = &mut self.reliable {
                    sender.on_ack(&m.source, m.message_id);
                    self.flush_reliable(io);
                }
            }
            Mt::RtxRequest => {
                let answer = match &mut self.reliable {
                    Some((sender, _)) => sender.on_rtx_request(m.message_id),
                    None => return Ok(()),
                };
                // A message the sender no longer holds is answered "lost", with no payload.
                let (payload, lost) = match answer {
                    RtxAnswer::Resend(p) => (p, false),
                    RtxAnswer::Lost => (Bytes::new(), true),
                };
                self.transmit_data(
                    io,
                    DataFrame {
                        dst: &m.source,
                        broadcast: false,
                        kind: Mt::RtxReply,
                        id: m.message_id,
                        payload: &payload,
                        lost,
                    },
                )
            }
            _ => {}
        }
        Ok(())
    }

    /// The plaintext of an inbound data message: MLS-decrypted, its header AAD checked
    /// (SLIM-MLS-003) and its MLS sender bound to its name (SLIM-SESS-002).
    fn open_data(&mut self, m: &Inbound<'_>) -> Result<Bytes, SessionError> {
        let blob = m.app_blob().cloned().unwrap_or_default();
        match &mut self.mls {
            MlsState::Off => Ok(blob),
            MlsState::Group(g) => {
                let app = g.decrypt(&blob).map_err(|e| {
                    SessionError::Protocol(format!(
                        "MLS decryption of message {} from {} failed: {e}",
                        m.message_id, m.source
                    ))
                })?;
                // The sender's MLS identity must be the one its name id derives from.
                let sub = super::identity::token_sub(&app.sender).unwrap_or_default();
                if slim_proto::identity::app_id(&sub) != m.source.id() {
                    return Err(SessionError::NameNotBound {
                        name: m.source.to_string(),
                        sub,
                    });
                }
                // Always checked (the SDK checks a configurable percentage, default 0).
                if app.aad != slim_proto::e2e::header_aad(m.msg) {
                    return Err(SessionError::Protocol(format!(
                        "message {} from {}: header does not match the MLS authenticated data (changed in transit?)",
                        m.message_id, m.source
                    )));
                }
                Ok(Bytes::from(app.plaintext))
            }
            MlsState::Waiting(_) | MlsState::Gone => Err(SessionError::Protocol(format!(
                "encrypted message {} from {} before the MLS welcome or after removal",
                m.message_id, m.source
            ))),
        }
    }
}
