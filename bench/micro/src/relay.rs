//! The reference relay core handling one Publish end to end, without I/O (benches/relay.rs).
//!
//! The fixture opens and negotiates real links with [`Relay::handle`] (X25519 key agreement, so
//! every link has its own MAC key), subscribes the receivers, and prepares a Publish signed with
//! the sender's link key, decoded and encoded. Two timed operations, from received bytes to bytes
//! to send:
//!
//! - [`publish_frame_once`]: one [`Relay::handle_frame`] call, what the relay's shell does per
//!   frame: the frame path reads the header in place, verifies the MAC, applies the TTL, looks
//!   up the receivers and writes one re-signed header per receiver in front of the shared rest
//!   ([`Output::SendFrame`]).
//! - [`publish_decoded_once`]: the same work the way the relay did it before the frame path:
//!   prost decode, [`Relay::handle`] (validation, MAC, TTL, lookup, one re-signed copy per
//!   receiver), prost encode of every copy.
//!
//! Two shapes: `p2p` (fanout 1 to one subscriber's specific id) and `fanout_16` (broadcast to a
//! group of 16 subscribers).

use std::time::Instant;

use bytes::Bytes;
use prost::Message as _;
use slim_proto::link::{self, LinkKeyPair};
use slim_proto::mac::LinkMac;
use slim_proto::names::SlimName;
use slim_proto::pb::{self, message::MessageType};
use slim_reference::relay::{ConnId, Output, Relay, RelayConfig};

use crate::codec::signed_publish;
use crate::SetupError;

/// A relay with negotiated links and subscriptions, and the Publish the benchmark feeds it.
pub struct RelayFixture {
    /// The relay core.
    pub relay: Relay,
    /// The time fed to the relay (it never advances: no deadlines are involved).
    pub now: Instant,
    /// The sender's connection.
    pub sender: ConnId,
    /// Each receiver's connection and the MAC state of its end of the link.
    pub receivers: Vec<(ConnId, LinkMac)>,
    /// The Publish, signed with the sender's link key; cloned for every call.
    pub publish: pb::Message,
    /// The same Publish encoded, as the shell receives it.
    pub frame: Bytes,
}

/// One client's end of a negotiated link.
struct BenchPeer {
    conn: ConnId,
    mac: LinkMac,
}

fn negotiate(relay: &mut Relay, now: Instant, seed: u8) -> Result<BenchPeer, SetupError> {
    let conn = relay.open(now);
    let pair = LinkKeyPair::from_secret_bytes([seed; 32]);
    let link_id = format!("bench-link-{seed}");
    let request = link::negotiation_message(pb::LinkNegotiationPayload {
        link_id: link_id.clone(),
        slim_version: slim_proto::SLIM_VERSION.to_string(),
        is_reply: false,
        link_ecdh_public_key: pair.public_bytes().to_vec().into(),
        connection_type: pb::LinkConnectionType::Edge as i32,
        node_id: format!("bench-client-{seed}"),
        ..Default::default()
    });
    let mut out = Vec::new();
    relay.handle(conn, request, now, &mut out);
    let [Output::Send { message, .. }] = out.as_slice() else {
        return Err(SetupError(format!(
            "negotiation of link {link_id}: expected one reply, got {out:?}"
        )));
    };
    let reply = link::negotiation_payload(message)
        .map_err(|e| SetupError(format!("negotiation reply of {link_id}: {e}")))?;
    let mac = pair
        .derive_link_mac(&reply.link_ecdh_public_key, &link_id)
        .map_err(|e| SetupError(format!("key derivation for {link_id}: {e}")))?;
    Ok(BenchPeer { conn, mac })
}

fn subscribe(
    relay: &mut Relay,
    now: Instant,
    client: &BenchPeer,
    name: &SlimName,
) -> Result<(), SetupError> {
    let mut header = pb::SlimHeader {
        source: Some(name.to_proto()),
        destination: Some(name.to_proto()),
        fanout: 1,
        ttl: slim_proto::DEFAULT_TTL,
        ..Default::default()
    };
    client.mac.sign(&mut header);
    let subscribe = pb::Message {
        message_type: Some(MessageType::Subscribe(pb::Subscribe {
            header: Some(header),
            subscription_id: 1,
        })),
        metadata: Default::default(),
    };
    let mut out = Vec::new();
    relay.handle(client.conn, subscribe, now, &mut out);
    match out.as_slice() {
        [Output::Send {
            message:
                pb::Message {
                    message_type: Some(MessageType::SubscriptionAck(ack)),
                    ..
                },
            ..
        }] if ack.success => Ok(()),
        other => Err(SetupError(format!(
            "subscription of {name} on conn {}: expected a successful ack, got {other:?}",
            client.conn
        ))),
    }
}

/// A relay with one sender and `receivers` subscribers, all negotiated with the MAC required.
///
/// With one receiver it subscribes `agntcy/default/bob/<id>` and the Publish goes to that id with
/// fanout 1 (p2p); with more, each subscribes `agntcy/default/group/<own id>` and the Publish goes
/// to the group's wildcard id with the SDK's broadcast fanout.
pub fn relay_fixture(receivers: usize) -> Result<RelayFixture, SetupError> {
    if receivers == 0 || receivers > 200 {
        return Err(SetupError(format!(
            "{receivers} receivers: use 1 (p2p) to 200"
        )));
    }
    let now = Instant::now();
    let mut relay = Relay::new(RelayConfig::default(), [0x42; 32]);
    let sender = negotiate(&mut relay, now, 1)?;
    let (destination, fanout) = if receivers == 1 {
        let bob = SlimName::new("agntcy", "default", "bob").with_id(0xb0b);
        (bob, slim_proto::ANYCAST_FANOUT)
    } else {
        let group = SlimName::new("agntcy", "default", "group");
        (group, slim_proto::BROADCAST_FANOUT)
    };
    let mut links = Vec::with_capacity(receivers);
    for r in 0..receivers {
        // Seeds 2..=201: distinct keys per link (the range is checked above).
        let client = negotiate(&mut relay, now, r as u8 + 2)?;
        let name = if receivers == 1 {
            destination.clone()
        } else {
            destination.clone().with_id(r as u128 + 1)
        };
        subscribe(&mut relay, now, &client, &name)?;
        links.push((client.conn, client.mac));
    }
    let mut publish = signed_publish(128);
    if let Some(header) = slim_proto::validate::header_mut(&mut publish) {
        header.destination = Some(destination.to_proto());
        header.fanout = fanout;
        sender.mac.sign(header);
    }
    let frame = Bytes::from(publish.encode_to_vec());
    Ok(RelayFixture {
        relay,
        now,
        sender: sender.conn,
        receivers: links,
        publish,
        frame,
    })
}

/// Feeds one Publish from the sender as a frame (timed by `relay/p2p` and `relay/fanout_16`).
/// `out` receives one [`Output::SendFrame`] per receiver; the caller clears it.
pub fn publish_frame_once(fx: &mut RelayFixture, frame: Bytes, out: &mut Vec<Output>) {
    fx.relay.handle_frame(fx.sender, frame, fx.now, out);
}

/// The decoded path (timed by `relay/p2p_decoded` and `relay/fanout_16_decoded`): decodes
/// `frame`, feeds it to [`Relay::handle`] and encodes every copy into `encoded`. Returns how
/// many copies it encoded.
pub fn publish_decoded_once(
    fx: &mut RelayFixture,
    frame: &[u8],
    out: &mut Vec<Output>,
    encoded: &mut Vec<Vec<u8>>,
) -> Result<usize, SetupError> {
    let msg = pb::Message::decode(frame).map_err(|e| SetupError(format!("decode: {e}")))?;
    fx.relay.handle(fx.sender, msg, fx.now, out);
    for o in out.iter() {
        if let Output::Send { message, .. } = o {
            encoded.push(message.encode_to_vec());
        }
    }
    Ok(encoded.len())
}

/// Checks `out` after either operation: exactly one Publish per receiver, each re-signed with
/// that receiver's link key. Returns how many were delivered.
pub fn check_deliveries(fx: &RelayFixture, out: &[Output]) -> Result<usize, SetupError> {
    if out.len() != fx.receivers.len() {
        return Err(SetupError(format!(
            "expected {} deliveries, got {}: {out:?}",
            fx.receivers.len(),
            out.len()
        )));
    }
    for (conn, mac) in &fx.receivers {
        let delivered = out.iter().find_map(|o| match o {
            Output::Send { conn: c, message } if c == conn => Some(message.clone()),
            Output::SendFrame { conn: c, frame } if c == conn => {
                pb::Message::decode(&frame.to_vec()[..]).ok()
            }
            _ => None,
        });
        let delivered = delivered
            .filter(|m| matches!(m.message_type, Some(MessageType::Publish(_))))
            .ok_or_else(|| SetupError(format!("no publish delivered to conn {conn}")))?;
        let header = slim_proto::validate::header(&delivered)
            .ok_or_else(|| SetupError(format!("copy for conn {conn} has no header")))?;
        mac.verify(header)
            .map_err(|e| SetupError(format!("copy for conn {conn}: {e}")))?;
    }
    Ok(out.len())
}
