//! Deterministic tests of the relay core: no sockets, no clock, a fixed seed.

use std::time::{Duration, Instant};

use bytes::Bytes;
use slim_proto::link::{self, LinkKeyPair};
use slim_proto::mac::LinkMac;
use slim_proto::names::{SlimName, NULL_ID};
use slim_proto::pb::{self, message::MessageType};

use super::*;

/// A client on one link of the relay, built only from slim-proto primitives.
struct Client {
    conn: ConnId,
    mac: Option<LinkMac>,
}

/// Two relays built alike: `relay` fed decoded messages ([`Relay::handle`]), `framed` fed the
/// same messages encoded ([`Relay::handle_frame`]). Every feed checks that both paths produced
/// the same outputs and counters, so each test below covers the frame path as well.
struct Net {
    relay: Relay,
    framed: Relay,
    now: Instant,
}

/// Outputs with every frame decoded, to compare the frame path with the decoded path.
fn decoded(out: Vec<Output>) -> Vec<Output> {
    out.into_iter()
        .map(|o| match o {
            Output::SendFrame { conn, frame } => Output::Send {
                conn,
                message: pb::Message::decode(&frame.to_vec()[..])
                    .expect("a frame the relay wrote decodes"),
            },
            other => other,
        })
        .collect()
}

fn msg(t: MessageType) -> pb::Message {
    pb::Message {
        message_type: Some(t),
        metadata: Default::default(),
    }
}

fn request(link_id: &str, public: Vec<u8>) -> pb::Message {
    link::negotiation_message(pb::LinkNegotiationPayload {
        link_id: link_id.into(),
        slim_version: "3.3.8".into(),
        is_reply: false,
        link_ecdh_public_key: public.into(),
        connection_type: pb::LinkConnectionType::Edge as i32,
        node_id: "test".into(),
        ..Default::default()
    })
}

fn header(src: &SlimName, dst: &SlimName, fanout: u32) -> pb::SlimHeader {
    pb::SlimHeader {
        source: Some(src.to_proto()),
        destination: Some(dst.to_proto()),
        fanout,
        ttl: 8,
        ..Default::default()
    }
}

fn name(s: &str) -> SlimName {
    s.parse().expect("test name")
}

impl Net {
    fn new(strict: bool) -> Self {
        let config = RelayConfig {
            require_header_mac: strict,
            ..RelayConfig::default()
        };
        Self {
            relay: Relay::new(config.clone(), [7; 32]),
            framed: Relay::new(config, [7; 32]),
            now: Instant::now(),
        }
    }

    fn feed(&mut self, conn: ConnId, m: pb::Message) -> Vec<Output> {
        self.feed_at(conn, m, self.now)
    }

    fn feed_at(&mut self, conn: ConnId, m: pb::Message, now: Instant) -> Vec<Output> {
        let frame = Bytes::from(m.encode_to_vec());
        let mut out = Vec::new();
        self.relay.handle(conn, m, now, &mut out);
        let mut framed = Vec::new();
        self.framed.handle_frame(conn, frame, now, &mut framed);
        assert_eq!(decoded(framed), out, "frame path and decoded path disagree");
        assert_eq!(self.framed.stats(), self.relay.stats());
        out
    }

    /// Feeds raw bytes to the frame path only (what no decoded message can express).
    fn feed_frame(&mut self, conn: ConnId, frame: &[u8]) -> Vec<Output> {
        let mut out = Vec::new();
        self.framed
            .handle_frame(conn, Bytes::copy_from_slice(frame), self.now, &mut out);
        decoded(out)
    }

    fn open(&mut self) -> ConnId {
        let conn = self.relay.open(self.now);
        assert_eq!(self.framed.open(self.now), conn);
        conn
    }

    fn close(&mut self, conn: ConnId) {
        self.relay.close(conn);
        self.framed.close(conn);
    }

    fn handle_timeout(&mut self, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        self.relay.handle_timeout(now, &mut out);
        let mut framed = Vec::new();
        self.framed.handle_timeout(now, &mut framed);
        assert_eq!(framed, out);
        out
    }

    /// Opens a link and negotiates it; returns the client.
    fn connect(&mut self, seed: u8) -> Client {
        let conn = self.open();
        self.negotiate(conn, seed)
    }

    /// [`Net::connect`] for a link authenticated as `principal` until `expires_at`.
    fn connect_as(&mut self, seed: u8, principal: Principal, expires_at: Instant) -> Client {
        let conn = self
            .relay
            .open_authenticated(self.now, principal.clone(), expires_at);
        assert_eq!(
            self.framed
                .open_authenticated(self.now, principal, expires_at),
            conn
        );
        self.negotiate(conn, seed)
    }

    fn negotiate(&mut self, conn: ConnId, seed: u8) -> Client {
        let pair = LinkKeyPair::from_secret_bytes([seed; 32]);
        let link_id = format!("link-{seed}");
        let out = self.feed(conn, request(&link_id, pair.public_bytes().to_vec()));
        let [Output::Send { conn: c, message }] = out.as_slice() else {
            panic!("expected exactly one reply, got {out:?}");
        };
        assert_eq!(*c, conn);
        let reply = link::negotiation_payload(message).expect("a negotiation reply");
        link::check_reply(reply, &link_id, true).expect("valid reply");
        assert_eq!(reply.node_id, "slim-relay");
        assert_eq!(reply.connection_type, pb::LinkConnectionType::Edge as i32);
        let mac = pair
            .derive_link_mac(&reply.link_ecdh_public_key, &link_id)
            .expect("derive");
        Client {
            conn,
            mac: Some(mac),
        }
    }

    fn signed(&self, c: &Client, mut m: pb::Message) -> pb::Message {
        if let (Some(mac), Some(h)) = (&c.mac, slim_proto::validate::header_mut(&mut m)) {
            mac.sign(h);
        }
        m
    }

    fn subscribe(&mut self, c: &Client, n: &SlimName, id: u64) -> Vec<Output> {
        let m = self.signed(
            c,
            msg(MessageType::Subscribe(pb::Subscribe {
                header: Some(header(n, n, 1)),
                subscription_id: id,
            })),
        );
        self.feed(c.conn, m)
    }

    fn unsubscribe(&mut self, c: &Client, n: &SlimName, id: u64) -> Vec<Output> {
        let m = self.signed(
            c,
            msg(MessageType::Unsubscribe(pb::Unsubscribe {
                header: Some(header(n, n, 1)),
                subscription_id: id,
            })),
        );
        self.feed(c.conn, m)
    }

    fn publish_with(&mut self, c: &Client, h: pb::SlimHeader) -> Vec<Output> {
        let m = self.signed(c, publish(h));
        self.feed(c.conn, m)
    }

    fn publish(&mut self, c: &Client, dst: &SlimName, fanout: u32) -> Vec<Output> {
        self.publish_with(c, header(&name("o/n/sender"), dst, fanout))
    }
}

/// A strict relay with client `a` subscribed to `o/n/a/1` (returned as `n`) and client `b`,
/// the sender, connected.
fn subscribed_pair() -> (Net, Client, Client, SlimName) {
    let mut net = Net::new(true);
    let a = net.connect(1);
    let b = net.connect(2);
    let n = name("o/n/a/1");
    acked(&net.subscribe(&a, &n, 1), 1).expect("ack");
    (net, a, b, n)
}

fn publish(h: pb::SlimHeader) -> pb::Message {
    msg(MessageType::Publish(pb::Publish {
        header: Some(h),
        session: Some(pb::SessionHeader::default()),
        msg: Some(pb::Content {
            content_type: Some(pb::content::ContentType::AppPayload(
                pb::ApplicationPayload {
                    payload_type: "msg".into(),
                    blob: b"hello".to_vec().into(),
                },
            )),
        }),
    }))
}

fn acked(out: &[Output], id: u64) -> Result<(), String> {
    match out {
        [Output::Send {
            message:
                pb::Message {
                    message_type: Some(MessageType::SubscriptionAck(a)),
                    ..
                },
            ..
        }] if a.subscription_id == id => {
            if a.success {
                Ok(())
            } else {
                Err(a.error.clone())
            }
        }
        other => panic!("expected one ack for {id}, got {other:?}"),
    }
}

fn receivers(out: &[Output]) -> Vec<ConnId> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { conn, message }
                if matches!(message.message_type, Some(MessageType::Publish(_))) =>
            {
                Some(*conn)
            }
            _ => None,
        })
        .collect()
}

#[test]
fn negotiation_reply_and_bad_first_messages() {
    let mut net = Net::new(true);
    let _ = net.connect(1);
    let bad: Vec<(pb::Message, &str)> = vec![
        (pb::Message::default(), "no message_type"),
        (publish(pb::SlimHeader::default()), "got publish"),
        (
            msg(MessageType::Link(pb::Link { link_type: None })),
            "no link_negotiation payload",
        ),
        (request("", vec![1; 32]), "empty link_id"),
        (request("l", vec![1; 31]), "31 bytes"),
        (request("l", vec![]), "0 bytes"),
    ];
    for (m, why) in bad {
        let conn = net.open();
        let out = net.feed(conn, m);
        match out.as_slice() {
            [Output::Close { conn: c, reason }] => {
                assert_eq!(*c, conn);
                assert_eq!(reason.code, CloseCode::InvalidArgument);
                assert!(reason.message.contains(why), "{why}: {}", reason.message);
            }
            other => panic!("{why}: expected a close, got {other:?}"),
        }
    }
    let mut reply = request("l", vec![1; 32]);
    if let Some(MessageType::Link(pb::Link {
        link_type: Some(pb::link::LinkType::LinkNegotiation(p)),
    })) = &mut reply.message_type
    {
        p.slim_version = "not-semver".into();
    }
    let conn = net.open();
    assert!(matches!(
        net.feed(conn, reply).as_slice(),
        [Output::Close { .. }]
    ));
    assert_eq!(net.relay.connections(), 1, "only the good link remains");
}

#[test]
fn silent_streams_time_out() {
    let mut net = Net::new(true);
    let conn = net.open();
    let deadline = net.relay.poll_timeout().expect("a pending deadline");
    assert_eq!(deadline, net.now + Duration::from_secs(5));
    let out = net.handle_timeout(deadline - Duration::from_millis(1));
    assert!(out.is_empty());
    let out = net.handle_timeout(deadline);
    assert!(
        matches!(out.as_slice(), [Output::Close { conn: c, reason }] if *c == conn && reason.code == CloseCode::DeadlineExceeded)
    );
    assert_eq!(net.relay.poll_timeout(), None);

    // A request that arrives after the deadline, before the timer fired, is refused the same way.
    let late = net.open();
    let pair = LinkKeyPair::from_secret_bytes([5; 32]);
    let out = net.feed_at(
        late,
        request("l", pair.public_bytes().to_vec()),
        net.now + Duration::from_secs(5),
    );
    assert!(
        matches!(out.as_slice(), [Output::Close { conn: c, reason }] if *c == late && reason.code == CloseCode::DeadlineExceeded)
    );
}

#[test]
fn non_strict_relay_accepts_keyless_links() {
    let mut net = Net::new(false);
    let conn = net.open();
    let out = net.feed(conn, request("l", vec![]));
    let [Output::Send { message, .. }] = out.as_slice() else {
        panic!("{out:?}")
    };
    let reply = link::negotiation_payload(message).expect("reply");
    assert!(reply.link_ecdh_public_key.is_empty());
    let a = Client { conn, mac: None };
    let b = net.connect(2);
    let n = name("o/n/a/1");
    acked(&net.subscribe(&a, &n, 1), 1).expect("unsigned subscribe accepted");
    let out = net.publish(&b, &n, 1);
    let [Output::Send { message, .. }] = out.as_slice() else {
        panic!("{out:?}")
    };
    let h = slim_proto::validate::header(message).expect("header");
    assert_eq!(h.header_mac, None, "no key, no MAC");
}

#[test]
fn header_mac_is_required_and_checked() {
    let mut net = Net::new(true);
    let a = net.connect(1);
    let b = net.connect(2);
    let n = name("o/n/a/1");
    let unsigned = Client {
        conn: a.conn,
        mac: None,
    };
    assert_eq!(
        acked(&net.subscribe(&unsigned, &n, 5), 5),
        Err("header MAC rejected: header_mac is missing".into())
    );
    acked(&net.subscribe(&a, &n, 6), 6).expect("signed subscribe accepted");

    // Delivered copies are signed with the receiver's link key, TTL decremented.
    let out = net.publish(&b, &n, 1);
    let [Output::Send { conn, message }] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(*conn, a.conn);
    let h = slim_proto::validate::header(message).expect("header");
    a.mac
        .as_ref()
        .expect("key")
        .verify(h)
        .expect("signed for A");
    assert_eq!(h.ttl, 7);
    assert_eq!(h.incoming_conn, Some(b.conn));

    // A covered field changed after signing: dropped. An uncovered one: delivered.
    let mut m = net.signed(&b, publish(header(&name("o/n/s"), &n, 1)));
    slim_proto::validate::header_mut(&mut m)
        .expect("h")
        .identity = "forged".into();
    assert!(net.feed(b.conn, m).is_empty());
    let mut m = net.signed(&b, publish(header(&name("o/n/s"), &n, 1)));
    slim_proto::validate::header_mut(&mut m).expect("h").version = "9.9.9".into();
    assert_eq!(receivers(&net.feed(b.conn, m)), vec![a.conn]);
    assert_eq!(net.relay.stats().dropped_bad_mac, 2);
}

#[test]
fn routing_exact_wildcard_anycast_broadcast() {
    let mut net = Net::new(true);
    let s1 = net.connect(1);
    let s2 = net.connect(2);
    let p = net.connect(3);
    acked(&net.subscribe(&s1, &name("o/n/s/1"), 1), 1).expect("ack");
    acked(&net.subscribe(&s2, &name("o/n/s/2"), 1), 1).expect("ack");

    assert_eq!(
        receivers(&net.publish(&p, &name("o/n/s/1"), 1)),
        vec![s1.conn]
    );
    assert_eq!(
        receivers(&net.publish(&p, &name("o/n/s/1"), 256)),
        vec![s1.conn]
    );
    assert!(receivers(&net.publish(&p, &name("o/n/s/3"), 1)).is_empty());
    // Wildcard anycast alternates, broadcast reaches both.
    let wild = SlimName::new("o", "n", "s");
    assert_eq!(wild.id(), NULL_ID);
    let picks: Vec<ConnId> = (0..4)
        .flat_map(|_| receivers(&net.publish(&p, &wild, 1)))
        .collect();
    assert_eq!(picks, vec![s1.conn, s2.conn, s1.conn, s2.conn]);
    for fanout in [0, 2, 256] {
        let mut got = receivers(&net.publish(&p, &wild, fanout));
        got.sort_unstable();
        assert_eq!(got, vec![s1.conn, s2.conn], "fanout {fanout}");
    }
    // The sender never gets its own publish.
    assert!(receivers(&net.publish(&s1, &name("o/n/s/1"), 256)).is_empty());
    assert_eq!(receivers(&net.publish(&s1, &wild, 256)), vec![s2.conn]);
}

#[test]
fn ttl_is_decremented_and_enforced() {
    let mut net = Net::new(true);
    let s = net.connect(1);
    let p = net.connect(2);
    let n = name("o/n/s/1");
    for ttl in [0, 1] {
        let mut h = header(&n, &n, 1);
        h.ttl = ttl;
        let m = net.signed(
            &s,
            msg(MessageType::Subscribe(pb::Subscribe {
                header: Some(h),
                subscription_id: 9,
            })),
        );
        assert!(
            net.feed(s.conn, m).is_empty(),
            "ttl {ttl}: no ack, no route"
        );
    }
    acked(&net.subscribe(&s, &n, 1), 1).expect("ack");
    for (ttl, delivered) in [(0, false), (1, false), (2, true)] {
        let mut h = header(&name("o/n/p"), &n, 1);
        h.ttl = ttl;
        assert_eq!(
            !receivers(&net.publish_with(&p, h)).is_empty(),
            delivered,
            "ttl {ttl}"
        );
    }
}

#[test]
fn forward_to_and_connection_cleanup() {
    let mut net = Net::new(true);
    let a = net.connect(1);
    let b = net.connect(2);
    let mut h = header(&name("o/n/a"), &name("o/n/nobody"), 1);
    h.forward_to = Some(b.conn);
    let out = net.publish_with(&a, h);
    let [Output::Send { conn, message }] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(*conn, b.conn);
    let h = slim_proto::validate::header(message).expect("h");
    assert_eq!(
        (h.forward_to, h.recv_from),
        (None, None),
        "link-local fields cleared"
    );

    let n = name("o/n/b/1");
    acked(&net.subscribe(&b, &n, 1), 1).expect("ack");
    acked(&net.subscribe(&b, &SlimName::new("o", "n", "other"), 2), 2).expect("ack");
    assert_eq!(net.relay.subscription_count(b.conn), 2);
    net.close(b.conn);
    assert_eq!(net.relay.subscription_count(b.conn), 0);
    assert!(receivers(&net.publish(&a, &n, 1)).is_empty());
    // A forward_to naming the closed connection goes nowhere.
    let mut h = header(&name("o/n/a"), &n, 1);
    h.forward_to = Some(b.conn);
    assert!(net.publish_with(&a, h).is_empty());
}

#[test]
fn bad_input_on_an_established_link() {
    let mut net = Net::new(true);
    let a = net.connect(1);
    let b = net.connect(2);
    let n = name("o/n/a/1");
    // Empty message: dropped, link kept.
    assert!(net.feed(a.conn, pb::Message::default()).is_empty());
    // Subscribe without string name: refused with a reason.
    let mut h = header(&n, &n, 1);
    h.destination.as_mut().expect("dst").str_name = None;
    let m = net.signed(
        &a,
        msg(MessageType::Subscribe(pb::Subscribe {
            header: Some(h),
            subscription_id: 3,
        })),
    );
    let err = acked(&net.feed(a.conn, m), 3).unwrap_err();
    assert!(err.contains("no str_name"), "{err}");
    // recv_from naming another client's link, or an unknown one.
    for (target, want) in [
        (b.conn, "another client's connection"),
        (99, "connection not found: 99"),
    ] {
        let mut h = header(&n, &n, 1);
        h.recv_from = Some(target);
        let m = net.signed(
            &a,
            msg(MessageType::Subscribe(pb::Subscribe {
                header: Some(h),
                subscription_id: 4,
            })),
        );
        let err = acked(&net.feed(a.conn, m), 4).unwrap_err();
        assert!(err.contains(want), "{err}");
    }
    // Publish without session header: dropped.
    let mut m = net.signed(&b, publish(header(&name("o/n/b"), &n, 1)));
    if let Some(MessageType::Publish(p)) = &mut m.message_type {
        p.session = None;
    }
    assert!(net.feed(b.conn, m).is_empty());
    // The link still works.
    acked(&net.subscribe(&a, &n, 5), 5).expect("ack");
    assert_eq!(receivers(&net.publish(&b, &n, 1)), vec![a.conn]);
    assert_eq!(net.relay.stats().dropped_invalid, 3);
}

#[test]
fn publishes_are_routed_from_their_frames() {
    let (mut net, a, b, n) = subscribed_pair();
    let m = net.signed(&b, publish(header(&name("o/n/b"), &n, 1)));
    let mut out = Vec::new();
    net.framed
        .handle_frame(b.conn, Bytes::from(m.encode_to_vec()), net.now, &mut out);
    let [Output::SendFrame { conn, frame }] = out.as_slice() else {
        panic!("expected one frame for a, got {out:?}");
    };
    assert_eq!(*conn, a.conn);
    let copy = pb::Message::decode(&frame.to_vec()[..]).expect("decodes");
    let h = slim_proto::validate::header(&copy).expect("header");
    a.mac
        .as_ref()
        .expect("key")
        .verify(h)
        .expect("signed for a's link");
    assert_eq!((h.ttl, h.incoming_conn), (7, Some(b.conn)));
    // The payload is shared with the received frame, not copied.
    assert!(frame.tail.ends_with(b"hello"));
}

#[test]
fn undecodable_frames_close_only_their_link() {
    let mut net = Net::new(true);
    let a = net.connect(1);
    let b = net.connect(2);
    let c = net.connect(3);
    let n = name("o/n/a/1");
    acked(&net.subscribe(&a, &n, 1), 1).expect("ack");
    acked(&net.subscribe(&b, &name("o/n/b/1"), 1), 1).expect("ack");
    let out = net.feed_frame(b.conn, &[0x1a, 0x05, 0x0a]);
    let [Output::Close { conn, reason }] = out.as_slice() else {
        panic!("expected a close, got {out:?}");
    };
    assert_eq!((*conn, reason.code), (b.conn, CloseCode::InvalidArgument));
    assert!(
        reason
            .message
            .starts_with("could not decode a dataplane.proto.v1.Message"),
        "{}",
        reason.message
    );
    assert_eq!(net.framed.subscription_count(b.conn), 0);
    assert_eq!(net.framed.stats().undecodable_frames, 1);
    // The others are unaffected.
    let m = net.signed(&c, publish(header(&name("o/n/c"), &n, 1)));
    let out = net.feed_frame(c.conn, &m.encode_to_vec());
    assert_eq!(receivers(&out), vec![a.conn]);
}

/// A Publish prost cannot decode (unknown-field groups nested in a command payload, past prost's
/// recursion limit only inside the whole Message) is never forwarded: the link is closed as for
/// any undecodable frame (found by review: the frame path used to route it).
#[test]
fn publishes_prost_cannot_decode_are_never_forwarded() {
    use prost::encoding::encode_varint;
    let (mut net, _a, b, n) = subscribed_pair();
    let m = net.signed(&b, publish(header(&name("o/n/b"), &n, 1)));
    let Some(MessageType::Publish(p)) = m.message_type else {
        panic!("a publish")
    };
    let mut body = Vec::new();
    prost::encoding::message::encode(1, p.header.as_ref().expect("header"), &mut body);
    prost::encoding::message::encode(2, p.session.as_ref().expect("session"), &mut body);
    slim_proto::raw::push_nested_command_content(98, &mut body);
    let mut frame = vec![0x1a];
    encode_varint(body.len() as u64, &mut frame);
    frame.extend_from_slice(&body);
    assert!(pb::Message::decode(&frame[..]).is_err());
    let out = net.feed_frame(b.conn, &frame);
    assert!(
        matches!(out.as_slice(), [Output::Close { conn, reason }] if *conn == b.conn && reason.code == CloseCode::InvalidArgument),
        "{out:?}"
    );
    assert_eq!(net.framed.stats().publishes_delivered, 0);
}

#[test]
fn unsubscribe_acks() {
    let mut net = Net::new(true);
    let a = net.connect(1);
    let b = net.connect(2);
    let n = name("o/n/a/1");
    assert_eq!(
        acked(&net.unsubscribe(&a, &n, 1), 1),
        Err("subscription not found".into())
    );
    acked(&net.subscribe(&a, &n, 1), 1).expect("ack");
    assert_eq!(
        acked(&net.unsubscribe(&b, &n, 1), 1),
        Err("subscription id not found: 1".into()),
        "another link cannot cancel it"
    );
    acked(&net.unsubscribe(&a, &n, 1), 1).expect("ack");
    assert!(receivers(&net.publish(&b, &n, 1)).is_empty());
    // Subscription id 0: route installed, no ack.
    assert!(net.subscribe(&a, &n, 0).is_empty());
    assert_eq!(receivers(&net.publish(&b, &n, 1)), vec![a.conn]);
}

mod robustness {
    use super::*;
    use proptest::prelude::*;

    /// A valid message of some kind with fields perturbed by `bits`.
    fn perturbed(bits: u64, names: &[SlimName]) -> pb::Message {
        let pick = |k: u64| names[(k % names.len() as u64) as usize].clone();
        let mut h = header(&pick(bits >> 8), &pick(bits >> 16), (bits >> 24) as u32 % 4);
        h.ttl = (bits >> 28) as u32 % 4;
        if bits & (1 << 40) != 0 {
            h.recv_from = Some((bits >> 41) % 4);
        }
        if bits & (1 << 44) != 0 {
            h.forward_to = Some((bits >> 45) % 4);
        }
        if bits & (1 << 48) != 0 {
            h.destination = None;
        }
        if bits & (1 << 49) != 0 {
            if let Some(d) = h.destination.as_mut() {
                d.str_name = None;
            }
        }
        let id = (bits >> 50) % 3;
        match bits % 6 {
            0 => msg(MessageType::Subscribe(pb::Subscribe {
                header: Some(h),
                subscription_id: id,
            })),
            1 => msg(MessageType::Unsubscribe(pb::Unsubscribe {
                header: Some(h),
                subscription_id: id,
            })),
            2 => publish(h),
            3 => request(&format!("l{id}"), vec![id as u8; 32]),
            4 => msg(MessageType::SubscriptionAck(pb::SubscriptionAck {
                subscription_id: id,
                success: true,
                error: String::new(),
            })),
            _ => pb::Message::default(),
        }
    }

    proptest! {
        /// A damaged Publish frame: the frame path routes it exactly as the decoded path routes
        /// what prost reads from it, or closes the link when prost cannot read it.
        #[test]
        fn damaged_frames_agree_with_decoding(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            fanout in 0u32..3,
            sign in any::<bool>(),
        ) {
            let (mut net, _a, b, n) = subscribed_pair();
            let m = publish(header(&name("o/n/b"), &n, fanout));
            let m = if sign { net.signed(&b, m) } else { m };
            let mut bytes = m.encode_to_vec();
            for (at, v) in edits {
                let i = at.index(bytes.len());
                bytes[i] = v;
            }
            match pb::Message::decode(&bytes[..]) {
                Ok(m) => {
                    let mut framed = Vec::new();
                    net.framed.handle_frame(b.conn, Bytes::from(bytes), net.now, &mut framed);
                    let mut out = Vec::new();
                    net.relay.handle(b.conn, m, net.now, &mut out);
                    prop_assert_eq!(decoded(framed), out);
                    prop_assert_eq!(net.framed.stats(), net.relay.stats());
                }
                Err(_) => {
                    let out = net.feed_frame(b.conn, &bytes);
                    let closed = matches!(out.as_slice(), [Output::Close { conn, reason }] if *conn == b.conn && reason.code == CloseCode::InvalidArgument);
                    prop_assert!(closed, "{:?}", out);
                }
            }
        }
    }

    proptest! {
        /// Whatever arrives, in whatever order, the core never panics, only ever sends to links
        /// it knows, and forgets a link's subscriptions when the link closes.
        #[test]
        fn arbitrary_input_never_breaks_the_core(
            script in proptest::collection::vec((0u64..5, any::<u64>(), any::<bool>(), proptest::collection::vec(any::<u8>(), 0..64)), 1..80)
        ) {
            let mut net = Net::new(true);
            let clients: Vec<Client> = (1..=3).map(|i| net.connect(i)).collect();
            let pending = net.open();
            let names = [name("o/n/a/1"), name("o/n/a/2"), SlimName::new("o", "n", "a")];
            for (target, bits, sign, raw) in script {
                let conn = if target < 3 { clients[target as usize].conn } else if target == 3 { pending } else { 99 };
                let m = if bits % 7 == 6 {
                    match pb::Message::decode(raw.as_slice()) { Ok(m) => m, Err(_) => continue }
                } else {
                    perturbed(bits, &names)
                };
                let m = if sign && target < 3 { net.signed(&clients[target as usize], m) } else { m };
                let out = net.feed(conn, m);
                for o in &out {
                    if let Output::Send { conn: to, message } = o {
                        prop_assert!(*to == pending || clients.iter().any(|c| c.conn == *to), "send to unknown link {to}");
                        if let Some(h) = slim_proto::validate::header(message) {
                            prop_assert!(h.forward_to.is_none() && h.recv_from.is_none());
                        }
                    }
                }
            }
            for c in &clients {
                net.close(c.conn);
                prop_assert_eq!(net.relay.subscription_count(c.conn), 0);
            }
        }
    }
}

fn principal(jti: &str, sub: &str, kid: &str) -> Principal {
    Principal {
        jti: Some(jti.into()),
        sub: sub.into(),
        kid: Some(kid.into()),
        exp: 1_700_000_600,
    }
}

#[test]
fn revocations_end_the_named_links_and_their_routes() {
    // SLIM-REV-002/004: a list naming a jti, sub or kid ends exactly the links it names.
    let mut net = Net::new(true);
    let later = net.now + Duration::from_secs(600);
    let a = net.connect_as(1, principal("a-1", "alice", "k1"), later);
    let b = net.connect_as(2, principal("b-1", "bob", "k2"), later);
    let c = net.connect(3); // no JWT: never revoked
    let n = name("o/n/a/1");
    acked(&net.subscribe(&a, &n, 1), 1).expect("ack");
    assert_eq!(
        net.relay.principal(a.conn).map(|p| p.sub.as_str()),
        Some("alice")
    );

    for (text, gone) in [
        ("revoked: [{jti: nope}]", None),
        ("revoked: [{jti: a-1}]", Some(a.conn)),
        ("revoked: [{kid: k2}]", Some(b.conn)),
    ] {
        let list = RevocationList::parse(text, "r.yaml").expect("list");
        for relay in [&mut net.relay, &mut net.framed] {
            let mut out = Vec::new();
            let ended = relay.apply_revocations(&list, &mut out);
            match gone {
                None => assert!(out.is_empty() && ended == 0, "{out:?}"),
                Some(conn) => {
                    let [Output::Close { conn: c, reason }] = out.as_slice() else {
                        panic!("{out:?}")
                    };
                    assert_eq!(*c, conn);
                    assert_eq!(reason.code, CloseCode::Unauthenticated);
                    assert!(
                        reason.message.starts_with("credential revoked: "),
                        "{reason:?}"
                    );
                    assert_eq!(relay.subscription_count(conn), 0);
                }
            }
        }
    }
    assert_eq!(net.relay.connections(), 1);
    // Nothing more from a revoked link is routed.
    assert!(net.publish(&a, &n, 1).is_empty());
    assert!(
        net.publish(&c, &n, 1).is_empty(),
        "its subscription is gone"
    );
}

#[test]
fn an_expired_token_ends_its_link_at_exp() {
    // SLIM-REV-005: poll_timeout includes the expiry; handle_timeout ends the link then.
    let mut net = Net::new(true);
    let exp = net.now + Duration::from_secs(2);
    let a = net.connect_as(1, principal("a-1", "alice", "k1"), exp);
    let _b = net.connect(2);
    assert_eq!(net.relay.poll_timeout(), Some(exp));
    assert!(net
        .handle_timeout(exp - Duration::from_millis(1))
        .is_empty());
    let out = net.handle_timeout(exp);
    let [Output::Close { conn, reason }] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!((*conn, reason.code), (a.conn, CloseCode::Unauthenticated));
    assert!(reason.message.contains("token expired"), "{reason:?}");
    assert_eq!(net.relay.poll_timeout(), None);
    assert_eq!(net.relay.connections(), 1);
}
