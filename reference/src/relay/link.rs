//! Link negotiation as the responder, and the per-link MAC state (SLIM-LINK-*, SLIM-MAC-*).
//!
//! A new stream is `Pending` until its first message. That message must be a valid negotiation
//! request; anything else closes the stream with `INVALID_ARGUMENT` and a message naming the
//! defect (the real node closes silently with status OK; see SLIM-LINK-010). On success the relay
//! answers once with its own X25519 key and the link becomes `Established` with its MAC key.

use std::time::Instant;

use slim_proto::link::{self, LinkError, LinkKeyPair, ML_KEM768_PUBLIC_KEY_LEN};
use slim_proto::mac::{LinkMac, MacError, MacFields, TAG_LEN};
use slim_proto::pb;
use tracing::info;

use super::{CloseCode, ConnId, Output, Relay};
use crate::mutants::{self, Fault};

/// Where a connection is in its life.
#[derive(Debug)]
// One per connection, and the established variant is the hot one: boxing it would add an
// indirection to every routed message to save ~200 bytes per pending connection.
#[allow(clippy::large_enum_variant)]
pub enum LinkState {
    /// Accepted, waiting for the negotiation request until `deadline`.
    Pending {
        /// When the stream is closed if nothing arrived.
        deadline: Instant,
    },
    /// Negotiated: messages are routed to and from it.
    Established(EstablishedLink),
}

/// A negotiated link.
#[derive(Debug)]
pub struct EstablishedLink {
    /// The MAC state, absent only when a non-strict relay accepted a key-less peer.
    pub mac: Option<LinkMac>,
    /// The peer's `node_id`, for logs.
    pub peer_node_id: String,
}

/// Why a routed message's header MAC was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacCheckError {
    /// The MAC is missing, malformed or wrong.
    #[error(transparent)]
    Mac(#[from] MacError),
    /// The peer sent a MAC although it negotiated no key, so it cannot be checked (SLIM-MAC-006).
    #[error("header_mac present but this link negotiated no key")]
    NoKey,
}

impl EstablishedLink {
    /// Applies the MAC rules (SLIM-MAC-004..006): a present MAC must verify; a missing one is
    /// accepted only by a non-strict relay.
    pub fn check(&self, header: &pb::SlimHeader, strict: bool) -> Result<(), MacCheckError> {
        self.check_fields(
            &MacFields::from(header),
            header.header_mac.as_deref(),
            strict,
        )
    }

    /// [`EstablishedLink::check`] for a header given by its covered fields and received tag
    /// (the frame path).
    pub fn check_fields(
        &self,
        fields: &MacFields<'_>,
        tag: Option<&[u8]>,
        strict: bool,
    ) -> Result<(), MacCheckError> {
        match (&self.mac, tag.is_some()) {
            (Some(mac), true) if mutants::on(Fault::MacTruncatedCompare) => {
                Ok(mutants::truncated_compare(&mac.tag_fields(fields), tag)?)
            }
            (Some(_), true) if !strict && mutants::on(Fault::LaxPresentMacNotVerified) => Ok(()),
            (Some(mac), true) => Ok(mac.verify_fields(fields, tag)?),
            (Some(_), false) if !strict && !mutants::on(Fault::LaxUnsignedRefused) => Ok(()),
            (Some(_), false) => Err(MacError::MissingTag.into()),
            (None, true) if mutants::on(Fault::LaxKeylessMacAccepted) => Ok(()),
            (None, true) => Err(MacCheckError::NoKey),
            (None, false) => Ok(()),
        }
    }

    /// The tag for a header leaving on this link, given by its covered fields; `None` when the
    /// link has no key, so the copy carries no MAC (SLIM-MAC-003).
    pub fn tag_fields(&self, fields: &MacFields<'_>) -> Option<[u8; TAG_LEN]> {
        self.mac.as_ref().map(|mac| mac.tag_fields(fields))
    }

    /// Signs a header for this link, or strips any MAC when the link has no key (SLIM-MAC-003).
    pub fn sign(&self, header: &mut pb::SlimHeader) {
        match &self.mac {
            Some(mac) => mac.sign(header),
            None => header.header_mac = None,
        }
    }
}

impl Relay {
    /// The first message of a pending connection.
    pub(super) fn negotiate(&mut self, conn: ConnId, msg: &pb::Message, out: &mut Vec<Output>) {
        match self.accept_negotiation(msg) {
            Ok((link, reply)) => {
                info!(conn, peer_node_id = %link.peer_node_id, mac = link.mac.is_some(), "link established");
                self.stats.links_established += 1;
                self.links.insert(conn, LinkState::Established(link));
                out.push(Output::Send {
                    conn,
                    message: reply,
                });
            }
            Err((code, message)) => self.close_with(conn, code, message, out),
        }
    }

    fn accept_negotiation(
        &mut self,
        msg: &pb::Message,
    ) -> Result<(EstablishedLink, pb::Message), (CloseCode, String)> {
        let invalid = |e: LinkError| (CloseCode::InvalidArgument, e.to_string());
        let req = link::negotiation_payload(msg).map_err(invalid)?;
        let strict = self.config.require_header_mac;
        link::check_request(req, strict)
            .or_else(mutants::overlooked)
            .map_err(invalid)?;
        if req.connection_type == pb::LinkConnectionType::Peer as i32 {
            return Err((
                CloseCode::Unimplemented,
                "slim-relay is a standalone node and does not accept PEER (replica) links; connect as EDGE".into(),
            ));
        }
        match req.link_kem_payload.as_deref().map(<[u8]>::len) {
            None | Some(0) => {}
            Some(ML_KEM768_PUBLIC_KEY_LEN) if mutants::on(Fault::HybridAnsweredClassically) => {}
            Some(ML_KEM768_PUBLIC_KEY_LEN) => {
                return Err((
                    CloseCode::Unimplemented,
                    "slim-relay does not implement the ML-KEM-768 hybrid link key; connect without enforce_pqc".into(),
                ))
            }
            Some(n) => {
                return Err((
                    CloseCode::InvalidArgument,
                    format!("link_kem_payload is {n} bytes; an ML-KEM-768 encapsulation key is {ML_KEM768_PUBLIC_KEY_LEN}"),
                ))
            }
        }
        let (mac, public) = if req.link_ecdh_public_key.is_empty() {
            (None, Vec::new()) // only reachable when not strict
        } else {
            let pair = LinkKeyPair::generate(&mut self.rng);
            let mac = pair
                .derive_link_mac(&req.link_ecdh_public_key, &req.link_id)
                .or_else(|e| mutants::derive_anyway(&pair, req, e))
                .map_err(invalid)?;
            (Some(mac), pair.public_bytes().to_vec())
        };
        let reply = link::negotiation_message(pb::LinkNegotiationPayload {
            link_id: if mutants::on(Fault::ReplyLinkIdNotEchoed) {
                uuid::Uuid::new_v4().to_string()
            } else {
                req.link_id.clone()
            },
            slim_version: slim_proto::SLIM_VERSION.to_string(),
            is_reply: true,
            link_ecdh_public_key: public.into(),
            connection_type: if mutants::on(Fault::ReplyConnectionTypeFixed) {
                pb::LinkConnectionType::Edge as i32
            } else {
                req.connection_type
            },
            node_id: self.config.node_id.clone(),
            deployment_name: String::new(),
            link_kem_payload: None,
        });
        Ok((
            EstablishedLink {
                mac,
                peer_node_id: req.node_id.clone(),
            },
            reply,
        ))
    }
}
