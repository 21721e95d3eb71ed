//! What the relay does with Subscribe, Unsubscribe and Publish once they passed validation, the
//! MAC check and the TTL step (SLIM-SUB-*, SLIM-ROUTE-*).

use slim_proto::frame::PublishFrame;
use slim_proto::names::{encoded_id, NULL_ID};
use slim_proto::pb::{self, message::MessageType};
use tracing::{debug, warn};

use super::link::LinkState;
use super::subscriptions::Prefix;
use super::{ack, AckError, ConnId, Output, Relay};
use crate::mutants::{self, Fault};

/// The routing key of a name: its prefix and id (absent id = wildcard).
fn key(name: Option<&pb::Name>) -> Option<(Prefix, u128)> {
    name?.name.as_ref().map(encoded_key)
}

/// The routing key of a name's hashed form.
fn encoded_key(enc: &pb::EncodedName) -> (Prefix, u128) {
    let (mut prefix, mut id) = (
        [enc.component_0, enc.component_1, enc.component_2],
        encoded_id(enc),
    );
    if mutants::on(Fault::Component2Ignored) {
        prefix[2] = 0;
    }
    if mutants::on(Fault::IdLowHalfOnly) && id != NULL_ID {
        id &= u128::from(u64::MAX);
    }
    if mutants::on(Fault::AbsentNameIdNotWildcard) && enc.name_id.is_none() {
        id = 0;
    }
    (prefix, id)
}

impl Relay {
    /// Checks `recv_from`/`forward_to` on a Subscribe/Unsubscribe. A client may only manage its
    /// own link's subscriptions (SLIM-SUB-010), and this relay forwards no subscriptions
    /// (SLIM-SUB-011).
    fn subscription_target(&self, conn: ConnId, header: &pb::SlimHeader) -> Result<(), AckError> {
        if let Some(n) = header.recv_from {
            if !self.links.contains_key(&n) {
                return Err(AckError::ConnectionNotFound(n));
            }
            if n != conn {
                return Err(AckError::ForeignConnection(n));
            }
        }
        if header.forward_to.is_some() && !mutants::on(Fault::ForwardToSubscribeAckedUnforwarded) {
            return Err(AckError::ForwardToUnsupported);
        }
        Ok(())
    }

    pub(super) fn on_subscribe(&mut self, conn: ConnId, sub: pb::Subscribe, out: &mut Vec<Output>) {
        let Some(header) = sub.header.as_ref() else {
            return;
        };
        let id = sub.subscription_id;
        let owner = match header.recv_from {
            Some(n) if mutants::on(Fault::RecvFromForeignHonoured) => n,
            _ => conn,
        };
        let mut result = self.subscription_target(owner, header).and_then(|()| {
            let (prefix, name_id) =
                key(header.destination.as_ref()).ok_or(AckError::NoEncodedName)?;
            let limit = self.config.max_subscriptions_per_connection;
            Ok(self.table.subscribe(owner, id, prefix, name_id, limit)?)
        });
        match &result {
            Ok(()) => {
                self.stats.subscribes += 1;
                debug!(conn, subscription_id = id, "subscribed");
            }
            Err(e) => warn!(conn, subscription_id = id, error = %e, "subscribe refused"),
        }
        if mutants::on(Fault::AckSuccessWhenRefused) {
            result = Ok(());
        }
        // SLIM-SUB-001/002: ack iff the id is non-zero.
        if id != 0 || mutants::on(Fault::AckForIdZero) {
            out.push(ack(conn, id, result));
        }
    }

    pub(super) fn on_unsubscribe(
        &mut self,
        conn: ConnId,
        unsub: pb::Unsubscribe,
        out: &mut Vec<Output>,
    ) {
        let Some(header) = unsub.header.as_ref() else {
            return;
        };
        let id = unsub.subscription_id;
        let owner = match header.recv_from {
            Some(n) if mutants::on(Fault::UnsubscribeRecvFromForeignHonoured) => n,
            _ => conn,
        };
        let mut result = self.subscription_target(owner, header).and_then(|()| {
            let (prefix, name_id) =
                key(header.destination.as_ref()).ok_or(AckError::NoEncodedName)?;
            Ok(self.table.unsubscribe(owner, id, prefix, name_id)?)
        });
        match &result {
            Ok(()) => {
                self.stats.unsubscribes += 1;
                debug!(conn, subscription_id = id, "unsubscribed");
            }
            Err(e) => debug!(conn, subscription_id = id, error = %e, "unsubscribe refused"),
        }
        if mutants::on(Fault::AckSuccessWhenRefused) {
            result = Ok(());
        }
        if id != 0 || mutants::on(Fault::AckForIdZero) {
            out.push(ack(conn, id, result));
        }
    }

    /// The connections a Publish goes to: `forward_to` if set (SLIM-ROUTE-008), else by the
    /// table: anycast for fanout 1 (SLIM-ROUTE-005), broadcast otherwise (SLIM-ROUTE-006), never
    /// back to the sender (SLIM-ROUTE-007). One decision for both the decoded and the frame path.
    fn targets(
        &mut self,
        conn: ConnId,
        forward_to: Option<ConnId>,
        destination: Option<&pb::EncodedName>,
        fanout: u32,
    ) -> Vec<ConnId> {
        if let Some(n) = forward_to.filter(|_| !mutants::on(Fault::ForwardToIgnored)) {
            if matches!(self.links.get(&n), Some(LinkState::Established(_))) {
                return vec![n];
            }
            debug!(
                conn,
                forward_to = n,
                "publish to an unknown connection dropped"
            );
            if !mutants::on(Fault::ForwardToUnknownUsesTable) {
                return Vec::new();
            }
        }
        let Some((prefix, mut id)) = destination.map(encoded_key) else {
            return Vec::new();
        };
        if mutants::on(Fault::IdIgnored) {
            id = NULL_ID;
        }
        if mutants::on(Fault::IdHalvesSwappedOnPublish) {
            id = id.rotate_left(64);
        }
        let skip = if mutants::on(Fault::PublishEchoedToSender) {
            ConnId::MAX // no link has this index
        } else {
            conn
        };
        let anycast = fanout == slim_proto::ANYCAST_FANOUT
            || (fanout == 0 && mutants::on(Fault::Fanout0IsAnycast))
            || (fanout == 2 && mutants::on(Fault::Fanout2IsAnycast));
        if anycast {
            self.table.pick_one(&prefix, id, skip).into_iter().collect()
        } else {
            let mut all = self.table.all(&prefix, id, skip);
            if mutants::on(Fault::FanoutAsCount) {
                all.truncate(fanout as usize);
            }
            all
        }
    }

    /// Routes a decoded Publish (see [`Relay::targets`]).
    pub(super) fn on_publish(&mut self, conn: ConnId, msg: pb::Message, out: &mut Vec<Output>) {
        self.stats.publishes_received += 1;
        let Some(MessageType::Publish(publish)) = &msg.message_type else {
            return;
        };
        let Some(header) = publish.header.as_ref() else {
            return;
        };
        let destination = header.destination.as_ref().and_then(|d| d.name.as_ref());
        let by_string = mutants::routed_by_string(header.destination.as_ref());
        let destination = by_string.as_ref().or(destination);
        let targets = self.targets(conn, header.forward_to, destination, header.fanout);
        if targets.is_empty() {
            self.stats.dropped_no_route += 1;
            debug!(conn, "publish matched no subscriber");
            return;
        }
        // Every target but the last gets a copy; the last takes the message itself (for p2p,
        // the only target: no copy at all).
        let last = targets.len() - 1;
        let first = targets[0];
        let mut msg = Some(msg);
        for (i, target) in targets.into_iter().enumerate() {
            let copy = if i == last { msg.take() } else { msg.clone() };
            let signer = if mutants::on(Fault::FanoutSignedWithFirstKey) {
                first
            } else {
                target
            };
            if let Some(message) = copy.and_then(|m| self.egress(signer, m)) {
                self.stats.publishes_delivered += 1;
                out.push(Output::Send {
                    conn: target,
                    message,
                });
                if mutants::on(Fault::DeliveriesReordered) {
                    self.held.swap_last(out, Output::receiver);
                }
            }
        }
    }

    /// Routes a Publish read from its frame: the same steps as the decoded path (header MAC,
    /// TTL, [`Relay::targets`], one copy per receiver re-signed with its link key), on the
    /// received bytes.
    pub(super) fn on_publish_frame(
        &mut self,
        conn: ConnId,
        frame: &PublishFrame,
        out: &mut Vec<Output>,
    ) {
        let Some(LinkState::Established(link)) = self.links.get(&conn) else {
            return;
        };
        // SLIM-MAC-004/005
        let strict =
            self.config.require_header_mac || mutants::on(Fault::LaxUnsignedPublishDropped);
        if let Err(err) = link.check_fields(&frame.mac_fields(), frame.header_mac(), strict) {
            self.stats.dropped_bad_mac += 1;
            warn!(conn, %err, "message with bad header MAC dropped");
            return;
        }
        // SLIM-ROUTE-010: one hop less, drop at zero.
        let ttl = frame.ttl().saturating_sub(1);
        if ttl == 0 {
            self.stats.dropped_ttl += 1;
            debug!(conn, kind = ?slim_proto::validate::Kind::Publish, "ttl expired, message dropped");
            return;
        }
        self.stats.publishes_received += 1;
        let targets = self.targets(
            conn,
            frame.forward_to(),
            frame.destination(),
            frame.fanout(),
        );
        if targets.is_empty() {
            self.stats.dropped_no_route += 1;
            debug!(conn, "publish matched no subscriber");
            return;
        }
        let fields = frame.egress_mac_fields(ttl);
        for target in targets {
            let Some(LinkState::Established(link)) = self.links.get(&target) else {
                continue;
            };
            // SLIM-MAC-003 (this link's key), SLIM-ROUTE-009 (the ingress connection).
            let tag = link.tag_fields(&fields);
            self.stats.publishes_delivered += 1;
            out.push(Output::SendFrame {
                conn: target,
                frame: frame.egress(ttl, conn, tag.as_ref()),
            });
        }
    }

    /// The copy of `msg` that leaves on `target`: link-local fields cleared and the header signed
    /// with the target link's key (SLIM-MAC-003, SLIM-ROUTE-009).
    fn egress(&self, target: ConnId, mut msg: pb::Message) -> Option<pb::Message> {
        let Some(LinkState::Established(link)) = self.links.get(&target) else {
            return None;
        };
        let header = slim_proto::validate::header_mut(&mut msg)?;
        header.recv_from = None;
        header.forward_to = None;
        if let Some(d) = header
            .destination
            .as_mut()
            .filter(|_| mutants::on(Fault::DeliveredNamesStripped))
        {
            d.str_name = None;
        }
        if mutants::on(Fault::EgressKeepsSenderMac) {
            return Some(msg);
        }
        link.sign(header);
        Some(msg)
    }
}
