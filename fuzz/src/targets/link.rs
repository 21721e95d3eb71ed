//! Target `link`: link negotiation, as the relay's responder ([`Relay`] on a pending link), as
//! the client's initiator ([`ClientLink`]) and as slim-proto's key agreement
//! ([`slim_proto::link`]).
//!
//! The first input byte picks one of four modes:
//!
//! | mode | rest of the input |
//! |---|---|
//! | 0 responder | flags, then the first frame a peer sends on a new link |
//! | 1 initiator | flags, a 32-byte client seed, then the node's reply (a `Message`) |
//! | 2 key agreement | two 32-byte secrets, a link id, then an arbitrary peer key |
//! | 3 end to end | flags, a 32-byte client seed, two corruption positions |
//!
//! Flags let the fuzzer ask the harness to patch in what it cannot guess (a valid X25519 key, the
//! link id the client chose, `is_reply`), so that mutations of everything else reach the code
//! that runs after the checks.

use std::time::Instant;

use bytes::Bytes;
use prost::Message as _;
use slim_proto::link::{self, LinkError, LinkKeyPair};
use slim_proto::names::SlimName;
use slim_proto::pb::{self, message::MessageType};
use slim_proto::validate;
use slim_reference::client::link::{ClientLink, Inbound};
use slim_reference::relay::{Output, Relay, RelayConfig, TableSizes};

use crate::input::Input;

/// The harness's X25519 secret when it plays the peer of the code under test.
const PEER_SECRET: [u8; 32] = [0x11; 32];

/// Runs one link negotiation input (see the module documentation for the layout).
///
/// Catches: panics in the negotiation paths; a relay that accepts a request slim-proto's
/// [`link::check_request`] refuses, or refuses one it must accept; a reply that does not echo the
/// link id and connection type or fails [`link::check_reply`]; a client that accepts a reply
/// [`link::check_reply`] refuses; two sides that derive different MAC keys (a negotiated link on
/// which a signed Subscribe is not acknowledged, or whose client signatures the node's key does
/// not verify); key agreement that is not symmetric or reports the wrong error.
pub fn link_body(data: &[u8]) {
    let mut input = Input::new(data);
    let Some(mode) = input.u8() else {
        return;
    };
    match mode % 4 {
        0 => responder(&mut input),
        1 => initiator(&mut input),
        2 => key_agreement(&mut input),
        _ => end_to_end(&mut input),
    }
}

fn relay(strict: bool) -> Relay {
    Relay::new(
        RelayConfig {
            require_header_mac: strict,
            ..RelayConfig::default()
        },
        [3; 32],
    )
}

fn subscriber() -> SlimName {
    SlimName::new("org", "fuzz", "link").with_id(7)
}

/// Replaces the negotiation payload of `msg`, if it has one, by `f(payload)`.
fn patch_payload(msg: &mut pb::Message, f: impl FnOnce(&mut pb::LinkNegotiationPayload)) {
    if let Some(MessageType::Link(pb::Link {
        link_type: Some(pb::link::LinkType::LinkNegotiation(p)),
    })) = &mut msg.message_type
    {
        f(p);
    }
}

/// Mode 0: the relay answers the first frame of a new link.
fn responder(input: &mut Input<'_>) {
    let flags = input.u8().unwrap_or(0);
    let strict = flags & 1 != 0;
    let mut frame = input.rest().to_vec();
    let peer = LinkKeyPair::from_secret_bytes(PEER_SECRET);
    let patched = flags & 2 != 0;
    if patched {
        if let Ok(mut msg) = pb::Message::decode(&frame[..]) {
            patch_payload(&mut msg, |p| {
                p.link_ecdh_public_key = Bytes::copy_from_slice(&peer.public_bytes());
            });
            frame = msg.encode_to_vec();
        }
    }
    let decoded = pb::Message::decode(&frame[..]).ok();
    let request = decoded
        .as_ref()
        .and_then(|m| link::negotiation_payload(m).ok());

    let mut relay = relay(strict);
    let now = Instant::now();
    let conn = relay.open(now);
    let mut out = Vec::new();
    relay.handle_frame(conn, Bytes::from(frame), now, &mut out);
    assert_eq!(out.len(), 1, "the first frame must get one answer: {out:?}");

    // What slim-proto says of the request; the relay must agree.
    let must_accept = request.is_some_and(|p| {
        let key = &p.link_ecdh_public_key;
        link::check_request(p, strict).is_ok()
            && p.connection_type != pb::LinkConnectionType::Peer as i32
            && p.link_kem_payload.as_ref().is_none_or(|k| k.is_empty())
            && (key.is_empty() || peer.derive_link_mac(key, &p.link_id).is_ok())
    });
    match out.pop() {
        Some(Output::Send {
            conn: to,
            message: reply,
        }) => {
            assert_eq!(to, conn, "the reply goes to another link");
            let Some(req) = request else {
                panic!("the relay established a link on a frame that is no negotiation");
            };
            assert!(
                must_accept,
                "the relay accepted a request slim-proto refuses: {req:?}"
            );
            let rep = match link::negotiation_payload(&reply) {
                Ok(p) => p,
                Err(e) => panic!("the reply is no negotiation: {e}"),
            };
            let keyed = !req.link_ecdh_public_key.is_empty();
            assert_eq!(
                link::check_reply(rep, &req.link_id, keyed),
                Ok(()),
                "the relay's reply fails the initiator's checks"
            );
            assert_eq!(
                rep.connection_type, req.connection_type,
                "connection type not echoed"
            );
            assert_eq!(rep.link_ecdh_public_key.is_empty(), !keyed);
            assert_eq!(relay.connections(), 1);
            // A Subscribe signed as the link negotiated must be acknowledged.
            let mut sub = slim_proto::messages::subscribe(&subscriber(), 42);
            if keyed {
                if !patched {
                    return; // the harness does not know the peer's secret
                }
                let mac = match peer.derive_link_mac(&rep.link_ecdh_public_key, &req.link_id) {
                    Ok(m) => m,
                    Err(e) => panic!("the relay's key is not usable: {e}"),
                };
                if let Some(h) = validate::header_mut(&mut sub) {
                    mac.sign(h);
                }
            }
            let mut out = Vec::new();
            relay.handle_frame(conn, Bytes::from(sub.encode_to_vec()), now, &mut out);
            let acked = matches!(
                out.as_slice(),
                [Output::Send { conn: c, message: pb::Message {
                    message_type: Some(MessageType::SubscriptionAck(a)), .. } }]
                    if *c == conn && a.success && a.subscription_id == 42
            );
            assert!(
                acked,
                "a Subscribe signed with the negotiated key was not acknowledged: {out:?}"
            );
            relay.close(conn);
        }
        Some(Output::Close { conn: closed, .. }) => {
            assert_eq!(closed, conn, "another link was closed");
            assert!(
                !must_accept,
                "the relay refused a request slim-proto accepts: {request:?}"
            );
        }
        other => panic!("unexpected answer to a negotiation: {other:?}"),
    }
    assert_eq!(relay.connections(), 0);
    assert_eq!(
        relay.table_sizes(),
        TableSizes::default(),
        "state left behind"
    );
}

/// A 32-byte seed from the input (zero-padded).
fn seed(input: &mut Input<'_>) -> [u8; 32] {
    let mut seed = [0u8; 32];
    for b in &mut seed {
        *b = input.u8().unwrap_or(0);
    }
    seed
}

/// Mode 1: the client checks the node's reply.
fn initiator(input: &mut Input<'_>) {
    let flags = input.u8().unwrap_or(0);
    let seed = seed(input);
    let Ok(mut reply) = pb::Message::decode(input.rest()) else {
        return; // the client's driver only hands over decoded messages
    };
    let mut client = ClientLink::new(seed, "fuzz-client".into());
    let request = client.start();
    let Ok(req) = link::negotiation_payload(&request).cloned() else {
        panic!("the client's request is no negotiation");
    };
    let node = LinkKeyPair::from_secret_bytes(PEER_SECRET);
    patch_payload(&mut reply, |p| {
        if flags & 1 != 0 {
            p.link_id = req.link_id.clone();
        }
        if flags & 2 != 0 {
            p.link_ecdh_public_key = Bytes::copy_from_slice(&node.public_bytes());
        }
        if flags & 4 != 0 {
            p.is_reply = true;
        }
        if flags & 8 != 0 {
            p.slim_version = slim_proto::SLIM_VERSION.into();
        }
    });
    let now = Instant::now();
    let result = client.handle_reply(&reply, now);
    let proto = link::negotiation_payload(&reply)
        .map_err(|e| e.to_string())
        .and_then(|p| {
            link::check_reply(p, &req.link_id, true).map_err(|e| e.to_string())?;
            node.derive_link_mac(&p.link_ecdh_public_key, &req.link_id)
                .map(|_| p)
                .map_err(|e| e.to_string())
        });
    match (&result, &proto) {
        (Ok(_), Ok(p)) => {
            assert!(client.is_established());
            let mac = node.derive_link_mac(&req.link_ecdh_public_key, &req.link_id);
            if p.link_ecdh_public_key[..] == node.public_bytes()[..] {
                // We know the node's secret: the client's signatures must verify with it.
                let Ok(mac) = mac else {
                    panic!("the client's key is not usable");
                };
                let Some(sub) = client.subscribe(subscriber(), now) else {
                    panic!("an established client sent no Subscribe");
                };
                let verified = validate::header(&sub).map(|h| mac.verify(h));
                assert_eq!(verified, Some(Ok(())), "client and node keys differ");
            }
        }
        (Err(_), Err(_)) => assert!(!client.is_established()),
        (Ok(_), Err(e)) => panic!("the client accepted a reply slim-proto refuses: {e}"),
        (Err(e), Ok(_)) => panic!("the client refused a reply slim-proto accepts: {e}"),
    }
}

/// Mode 2: X25519 + HKDF between two key pairs, and with an arbitrary peer key.
fn key_agreement(input: &mut Input<'_>) {
    let a = LinkKeyPair::from_secret_bytes(seed(input));
    let b = LinkKeyPair::from_secret_bytes(seed(input));
    let id_len = usize::from(input.u8().unwrap_or(0) % 64);
    let id = String::from_utf8_lossy(input.bytes(id_len).unwrap_or_default()).into_owned();
    let kem = seed(input);
    let other = input.rest();

    let ab = a.derive_link_mac(&b.public_bytes(), &id);
    let ba = b.derive_link_mac(&a.public_bytes(), &id);
    match (&ab, &ba) {
        (Ok(x), Ok(y)) => {
            assert_eq!(x.key(), y.key(), "the two sides derive different keys");
            assert_eq!(x.link_id(), id);
        }
        (Err(x), Err(y)) => assert_eq!(x, y),
        _ => panic!("one side derives a key, the other fails: {ab:?} {ba:?}"),
    }
    let hab = a.derive_hybrid_link_mac(&b.public_bytes(), &kem, &id);
    let hba = b.derive_hybrid_link_mac(&a.public_bytes(), &kem, &id);
    match (&hab, &hba) {
        (Ok(x), Ok(y)) => {
            assert_eq!(
                x.key(),
                y.key(),
                "hybrid: the two sides derive different keys"
            );
            if let Ok(classic) = &ab {
                assert_ne!(
                    x.key(),
                    classic.key(),
                    "hybrid key equals the classical key"
                );
            }
        }
        (Err(x), Err(y)) => assert_eq!(x, y),
        _ => panic!("hybrid: one side derives a key, the other fails"),
    }
    match a.derive_link_mac(other, &id) {
        Ok(_) => assert!(!id.is_empty() && other.len() == link::X25519_KEY_LEN),
        Err(LinkError::EmptyLinkId) => assert!(id.is_empty()),
        Err(LinkError::BadKeyLength(n)) => {
            assert_eq!(n, other.len());
            assert_ne!(n, link::X25519_KEY_LEN);
        }
        Err(LinkError::NonContributory) => assert_eq!(other.len(), link::X25519_KEY_LEN),
        Err(e) => panic!("unexpected key agreement error: {e}"),
    }
}

/// Flips one bit of `bytes` at `pos` (counted from 1; 0 = leave them alone).
fn corrupt(bytes: &mut [u8], pos: u16, bit: u8) -> bool {
    if pos == 0 || bytes.is_empty() {
        return false;
    }
    let i = usize::from(pos - 1) % bytes.len();
    bytes[i] ^= 1 << (bit % 8);
    true
}

/// Mode 3: the reference client negotiates with the reference relay, each message possibly
/// corrupted in flight.
fn end_to_end(input: &mut Input<'_>) {
    let flags = input.u8().unwrap_or(0);
    let seed = seed(input);
    let (req_pos, rep_pos) = (input.u16().unwrap_or(0), input.u16().unwrap_or(0));
    let strict = flags & 1 != 0;
    let now = Instant::now();
    let mut client = ClientLink::new(seed, "fuzz-client".into());
    let mut relay = relay(strict);
    let conn = relay.open(now);

    let mut frame = client.start().encode_to_vec();
    let mut damaged = corrupt(&mut frame, req_pos, flags >> 1);
    let mut out = Vec::new();
    relay.handle_frame(conn, Bytes::from(frame), now, &mut out);
    let reply = match out.pop() {
        Some(Output::Send { message, .. }) => message,
        Some(Output::Close { .. }) if damaged => return,
        other => panic!("the relay refused the reference client: {other:?}"),
    };
    let mut bytes = reply.encode_to_vec();
    damaged |= corrupt(&mut bytes, rep_pos, flags >> 4);
    let Ok(reply) = pb::Message::decode(&bytes[..]) else {
        assert!(damaged, "the relay's reply does not decode");
        return;
    };
    let resubscribe = match client.handle_reply(&reply, now) {
        Ok(r) => r,
        Err(e) if damaged => {
            let _ = e.to_string();
            return;
        }
        Err(e) => panic!("the reference client refused the relay's reply: {e}"),
    };
    assert!(resubscribe.is_empty(), "nothing was subscribed before");
    let Some(sub) = client.subscribe(subscriber(), now) else {
        panic!("an established client sent no Subscribe");
    };
    let mut out = Vec::new();
    relay.handle_frame(conn, Bytes::from(sub.encode_to_vec()), now, &mut out);
    let ack = match out.pop() {
        Some(Output::Send { message, .. }) => message,
        other => {
            assert!(damaged, "no ack for the client's Subscribe: {other:?}");
            return;
        }
    };
    match client.handle_inbound(ack, now) {
        Ok(Inbound::Subscribed { .. }) => assert!(client.is_subscribed(&subscriber())),
        other => assert!(
            damaged,
            "the relay refused an undamaged link's Subscribe: {other:?}"
        ),
    }
    relay.close(conn);
    assert_eq!(
        relay.table_sizes(),
        TableSizes::default(),
        "state left behind"
    );
}
