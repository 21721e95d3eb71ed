//! Unit tests of [`ClientLink`]: the node side is played with slim-proto primitives only.

use std::time::{Duration, Instant};

use slim_proto::link::{self, LinkError, LinkKeyPair};
use slim_proto::mac::{LinkMac, MacError};
use slim_proto::messages;
use slim_proto::names::SlimName;
use slim_proto::pb::{self, message::MessageType};
use slim_proto::validate::{self, ValidationError};

use super::*;

fn t0() -> Instant {
    Instant::now()
}

fn name(s: &str) -> SlimName {
    s.parse().expect("test name")
}

/// The node's half of a negotiation: its reply to `request` and its MAC state.
fn node_reply(request: &pb::Message, secret: u8) -> (pb::Message, LinkMac) {
    let p = link::negotiation_payload(request).expect("a negotiation request");
    link::check_request(p, true).expect("a valid request");
    let pair = LinkKeyPair::from_secret_bytes([secret; 32]);
    let mac = pair
        .derive_link_mac(&p.link_ecdh_public_key, &p.link_id)
        .expect("derive");
    let reply = link::negotiation_message(pb::LinkNegotiationPayload {
        link_id: p.link_id.clone(),
        slim_version: "3.4.6".into(),
        is_reply: true,
        link_ecdh_public_key: pair.public_bytes().to_vec().into(),
        connection_type: p.connection_type,
        node_id: "test-node".into(),
        ..Default::default()
    });
    (reply, mac)
}

/// A negotiated link and the node's MAC state for it.
fn established(seed: u8) -> (ClientLink, LinkMac) {
    let mut st = ClientLink::new([seed; 32], "node-test".into());
    let req = st.start();
    let (reply, mac) = node_reply(&req, 9);
    let resub = st.handle_reply(&reply, t0()).expect("reply accepted");
    assert!(resub.is_empty(), "nothing to re-subscribe on a fresh link");
    (st, mac)
}

fn subscription_id(m: &pb::Message) -> u64 {
    match &m.message_type {
        Some(MessageType::Subscribe(s)) => s.subscription_id,
        Some(MessageType::Unsubscribe(s)) => s.subscription_id,
        other => panic!("expected a subscription request, got {other:?}"),
    }
}

fn destination(m: &pb::Message) -> SlimName {
    let h = validate::header(m).expect("header");
    SlimName::from_proto(h.destination.as_ref().expect("destination")).expect("strings")
}

fn ack(id: u64, success: bool, error: &str) -> pb::Message {
    messages::wrap(MessageType::SubscriptionAck(pb::SubscriptionAck {
        subscription_id: id,
        success,
        error: error.into(),
    }))
}

#[test]
fn negotiation_request_is_what_the_node_expects() {
    let mut st = ClientLink::new([1; 32], "node-x".into());
    let req = st.start();
    let p = link::negotiation_payload(&req).expect("a negotiation request");
    assert!(!p.is_reply);
    assert_eq!(p.connection_type, pb::LinkConnectionType::Edge as i32);
    assert_eq!(p.slim_version, slim_proto::SLIM_VERSION);
    assert_eq!(p.link_ecdh_public_key.len(), 32);
    assert_eq!(p.node_id, "node-x");
    let id = uuid::Uuid::parse_str(&p.link_id).expect("link id is a UUID");
    assert_eq!(id.get_version_num(), 4);
    assert!(!st.is_established());

    // A second negotiation (a reconnect) uses a fresh link id and key.
    let again = st.start();
    let q = link::negotiation_payload(&again).expect("request");
    assert_ne!(q.link_id, p.link_id);
    assert_ne!(q.link_ecdh_public_key, p.link_ecdh_public_key);
}

#[test]
fn both_ends_derive_the_same_mac() {
    let (st, node_mac) = established(2);
    assert!(st.is_established());
    assert_eq!(st.peer_node_id(), Some("test-node"));
    assert_eq!(st.stats().negotiations, 1);
    let msg = messages::publish(&name("o/n/a/1"), &name("o/n/b"), 1, b"hi");
    let sealed = st.seal(msg.clone()).expect("sealed");
    node_mac
        .verify(validate::header(&sealed).expect("header"))
        .expect("the node verifies what we sign");
    // Only header_mac changed.
    let mut unsigned = sealed.clone();
    if let Some(h) = validate::header_mut(&mut unsigned) {
        h.header_mac = None;
    }
    assert_eq!(unsigned, msg);
}

#[test]
fn bad_replies_are_typed_errors() {
    let mut st = ClientLink::new([3; 32], "n".into());
    let req = st.start();
    let (good, _) = node_reply(&req, 9);
    let edit = |f: &dyn Fn(&mut pb::LinkNegotiationPayload)| {
        let mut m = good.clone();
        if let Some(MessageType::Link(pb::Link {
            link_type: Some(pb::link::LinkType::LinkNegotiation(p)),
        })) = &mut m.message_type
        {
            f(p);
        }
        m
    };
    let cases: Vec<(pb::Message, LinkError)> = vec![
        (
            edit(&|p| p.link_id = "other".into()),
            LinkError::LinkIdMismatch {
                expected: link::negotiation_payload(&req)
                    .expect("req")
                    .link_id
                    .clone(),
                got: "other".into(),
            },
        ),
        (
            edit(&|p| p.is_reply = false),
            LinkError::WrongDirection { got: false },
        ),
        (
            edit(&|p| p.link_ecdh_public_key.clear()),
            LinkError::BadKeyLength(0),
        ),
        (
            edit(&|p| p.slim_version = "three".into()),
            LinkError::BadVersion("three".into()),
        ),
        (
            edit(&|p| p.link_ecdh_public_key = vec![0; 32].into()),
            LinkError::NonContributory,
        ),
        (
            ack(1, true, ""),
            LinkError::NotNegotiation("subscription_ack"),
        ),
    ];
    for (reply, want) in cases {
        assert_eq!(
            st.handle_reply(&reply, t0()),
            Err(ClientLinkError::Negotiation(want.clone())),
            "{want}"
        );
        assert!(!st.is_established());
    }
    // Not negotiating at all.
    let mut idle = ClientLink::new([3; 32], "n".into());
    assert_eq!(
        idle.handle_reply(&good, t0()),
        Err(ClientLinkError::NotNegotiating)
    );
    // Sealing before negotiation is refused.
    let m = messages::publish(&name("o/n/a/1"), &name("o/n/b"), 1, b"x");
    assert_eq!(idle.seal(m), Err(ClientLinkError::NotEstablished));
}

#[test]
fn inbound_mac_is_verified_and_failures_counted() {
    let (mut st, node_mac) = established(4);
    let mut m = messages::publish(&name("o/n/b/2"), &name("o/n/a/1"), 1, b"hello");
    if let Some(h) = validate::header_mut(&mut m) {
        node_mac.sign(h);
    }
    assert_eq!(
        st.handle_inbound(m.clone(), t0()),
        Ok(Inbound::Publish(m.clone()))
    );

    let mut tampered = m.clone();
    if let Some(h) = validate::header_mut(&mut tampered) {
        h.ttl += 1;
    }
    assert_eq!(
        st.handle_inbound(tampered, t0()),
        Err(ClientLinkError::BadMac {
            kind: "publish",
            source: MacError::Mismatch
        })
    );
    let mut unsigned = m.clone();
    if let Some(h) = validate::header_mut(&mut unsigned) {
        h.header_mac = None;
    }
    assert_eq!(
        st.handle_inbound(unsigned, t0()),
        Err(ClientLinkError::BadMac {
            kind: "publish",
            source: MacError::MissingTag
        })
    );
    assert_eq!(st.stats().bad_mac_dropped, 2);
    // A message with nothing in it is a validation error, not a MAC failure.
    assert_eq!(
        st.handle_inbound(pb::Message::default(), t0()),
        Err(ClientLinkError::Invalid(ValidationError::NoMessageType))
    );
    assert_eq!(st.stats().bad_mac_dropped, 2);
}

#[test]
fn acks_are_matched_to_their_subscribe() {
    let (mut st, node_mac) = established(5);
    let me = name("o/n/a/1");
    let sub = st.subscribe(me.clone(), t0()).expect("sent at once");
    let id = subscription_id(&sub);
    assert_ne!(id, 0, "a zero id asks for no ack");
    assert_eq!(destination(&sub), me);
    node_mac
        .verify(validate::header(&sub).expect("header"))
        .expect("subscribe signed");
    assert!(!st.is_subscribed(&me));

    assert!(matches!(
        st.handle_inbound(ack(id ^ 1, true, ""), t0()),
        Ok(Inbound::Ignored(_))
    ));
    assert!(!st.is_subscribed(&me));
    assert_eq!(
        st.handle_inbound(ack(id, true, ""), t0()),
        Ok(Inbound::Subscribed {
            name: me.clone(),
            subscription_id: id
        })
    );
    assert!(st.is_subscribed(&me));
    assert_eq!(st.poll_timeout(), None, "nothing left to retry");

    // A refused subscription carries the node's error string and is forgotten.
    let other = name("o/n/c");
    let sub = st.subscribe(other.clone(), t0()).expect("sent");
    let id2 = subscription_id(&sub);
    assert_ne!(id2, id);
    assert_eq!(
        st.handle_inbound(ack(id2, false, "too many subscriptions"), t0()),
        Err(ClientLinkError::SubscriptionRefused {
            name: other.clone(),
            subscription_id: id2,
            error: "too many subscriptions".into()
        })
    );
    let active: Vec<_> = st.active_subscriptions().cloned().collect();
    assert_eq!(active, vec![me]);
}

#[test]
fn unacked_subscribe_is_retried_then_reported() {
    let (st, _) = established(6);
    let mut st = st.with_retry(Duration::from_millis(500), 3);
    let start = t0();
    let n = name("o/n/a/1");
    let sub = st.subscribe(n.clone(), start).expect("sent");
    let id = subscription_id(&sub);
    assert_eq!(st.poll_timeout(), Some(start + Duration::from_millis(500)));
    // Early wake-up: nothing due.
    let early = st.handle_timeout(start + Duration::from_millis(100));
    assert!(early.resend.is_empty() && early.failed.is_empty());

    let mut now = start;
    for attempt in 2..=3 {
        now += Duration::from_millis(500);
        let out = st.handle_timeout(now);
        assert_eq!(out.resend.len(), 1, "attempt {attempt}");
        assert_eq!(subscription_id(&out.resend[0]), id, "a retry keeps its id");
        assert!(out.failed.is_empty());
    }
    now += Duration::from_millis(500);
    let out = st.handle_timeout(now);
    assert!(out.resend.is_empty());
    assert_eq!(
        out.failed,
        vec![ClientLinkError::Unacknowledged {
            what: "subscription",
            name: n.clone(),
            attempts: 3
        }]
    );
    assert_eq!(st.active_subscriptions().count(), 0);
    assert_eq!(st.poll_timeout(), None);
}

#[test]
fn reconnect_reissues_every_active_subscription() {
    let (mut st, _) = established(7);
    let (a, b, c) = (name("o/n/a/1"), name("o/n/chan"), name("o/n/later"));
    let mut old_ids = Vec::new();
    for n in [&a, &b] {
        let m = st.subscribe(n.clone(), t0()).expect("sent");
        let id = subscription_id(&m);
        old_ids.push(id);
        st.handle_inbound(ack(id, true, ""), t0()).expect("acked");
    }

    st.connection_lost();
    assert!(!st.is_established());
    assert!(
        !st.is_subscribed(&a),
        "the node forgot them with the stream"
    );
    assert_eq!(st.poll_timeout(), None, "nothing is retried while down");
    // Requests while down only update the book.
    assert_eq!(st.subscribe(c.clone(), t0()), None);
    assert_eq!(st.unsubscribe(&b, t0()), None);

    let req = st.start();
    let (reply, node_mac) = node_reply(&req, 11);
    let resub = st.handle_reply(&reply, t0()).expect("reply accepted");
    let mut names: Vec<String> = resub.iter().map(|m| destination(m).to_string()).collect();
    names.sort();
    assert_eq!(names, vec![a.to_string(), c.to_string()]);
    for m in &resub {
        assert!(!old_ids.contains(&subscription_id(m)), "fresh ids");
        node_mac
            .verify(validate::header(m).expect("header"))
            .expect("signed with the new link's key");
    }
    assert_eq!(st.stats().negotiations, 2);
    // And they are acked on the new link like any other.
    for m in &resub {
        let id = subscription_id(m);
        assert!(matches!(
            st.handle_inbound(ack(id, true, ""), t0()),
            Ok(Inbound::Subscribed { .. })
        ));
    }
    assert!(st.is_subscribed(&a) && st.is_subscribed(&c));
}

#[test]
fn unsubscribe_reuses_the_subscription_id_and_counts_references() {
    let (mut st, _) = established(8);
    let n = name("o/n/chan");
    let sub = st.subscribe(n.clone(), t0()).expect("sent");
    let id = subscription_id(&sub);
    assert_eq!(st.subscribe(n.clone(), t0()), None, "already subscribed");
    st.handle_inbound(ack(id, true, ""), t0()).expect("acked");
    assert_eq!(st.unsubscribe(&n, t0()), None, "one reference left");
    let unsub = st.unsubscribe(&n, t0()).expect("last reference");
    assert!(matches!(
        unsub.message_type,
        Some(MessageType::Unsubscribe(_))
    ));
    assert_eq!(subscription_id(&unsub), id, "SLIM-SUB-004: same id");
    assert_eq!(
        st.handle_inbound(ack(id, true, ""), t0()),
        Ok(Inbound::Unsubscribed {
            name: n.clone(),
            subscription_id: id
        })
    );
    assert_eq!(st.active_subscriptions().count(), 0);
    assert_eq!(
        st.unsubscribe(&n, t0()),
        None,
        "unknown name: nothing to send"
    );
}

#[test]
fn subscribe_before_negotiation_is_sent_at_negotiation() {
    let mut st = ClientLink::new([9; 32], "n".into());
    let n = name("o/n/a/1");
    assert_eq!(st.subscribe(n.clone(), t0()), None);
    let req = st.start();
    let (reply, _) = node_reply(&req, 12);
    let out = st.handle_reply(&reply, t0()).expect("accepted");
    assert_eq!(out.len(), 1);
    assert_eq!(destination(&out[0]), n);
}
