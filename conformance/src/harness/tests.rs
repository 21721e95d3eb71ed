//! The harness between two raw clients ([`crate::client::Link`]) and the reference relay as the
//! upstream node. Every wait is bounded and event-driven: a receiver reads until a sentinel frame
//! (a MSG_ACK no rule touches) that the sender publishes last; since unfaulted frames keep their
//! order per link, everything before it has arrived by then.

use std::time::Duration;

use slim_proto::names::SlimName;
use slim_proto::pb::{self, message::MessageType, SessionMessageType as T};
use slim_reference::server::RelayHandle;
use tonic::Code;

use super::*;
use crate::client::{Event, Link, Target};
use crate::evidence::FrameLog;

const WITHIN: Duration = Duration::from_secs(5);
const SENTINEL_ID: u32 = 999_999;

fn alice() -> SlimName {
    SlimName::new("org", "ns", "alice").with_id(1)
}

fn bob() -> SlimName {
    SlimName::new("org", "ns", "bob").with_id(2)
}

struct Rig {
    relay: RelayHandle,
    harness: HarnessNode,
    alice: Link,
    bob: Link,
}

async fn relay() -> RelayHandle {
    slim_reference::server::spawn(slim_reference::config::ServerConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        ..Default::default()
    })
    .await
    .expect("relay starts")
}

fn target(h: &HarnessNode) -> Target {
    Target {
        url: h.url(),
        tls: None,
        authorization: None,
        strict_mac: true,
    }
}

/// Relay, harness (with `rules` set before any traffic), alice and bob connected and subscribed.
async fn rig(seed: u64, rules: Vec<FaultRule>) -> Rig {
    let relay = relay().await;
    let harness = HarnessNode::start(&relay.url(), seed)
        .await
        .expect("harness starts");
    harness.set_faults(rules);
    let log = FrameLog::new();
    let mut alice_link = Link::connect(&target(&harness), "alice", &log)
        .await
        .expect("alice connects through the harness");
    alice_link
        .subscribe(&alice(), 1)
        .await
        .expect("alice subscribes");
    let mut bob_link = Link::connect(&target(&harness), "bob", &log)
        .await
        .expect("bob connects through the harness");
    bob_link.subscribe(&bob(), 2).await.expect("bob subscribes");
    Rig {
        relay,
        harness,
        alice: alice_link,
        bob: bob_link,
    }
}

impl Rig {
    async fn stop(self) {
        self.harness.shutdown().await;
        self.relay.shutdown().await.expect("relay stops");
    }
}

/// A session Publish from alice to bob.
fn session_msg(t: T, message_id: u32, blob: &[u8]) -> pb::Message {
    let mut m = crate::client::publish(&alice(), &bob(), 1, blob);
    if let Some(MessageType::Publish(p)) = &mut m.message_type {
        if let Some(s) = &mut p.session {
            s.session_message_type = t as i32;
            s.message_id = message_id;
            s.session_id = 77;
        }
        if let Some(h) = &mut p.header {
            h.identity = "alice_x:1700000000:nonce:claims:mac".into();
        }
    }
    m
}

fn session_of(m: &pb::Message) -> Option<pb::SessionHeader> {
    match &m.message_type {
        Some(MessageType::Publish(p)) => p.session,
        _ => None,
    }
}

fn header_of(m: &pb::Message) -> Option<&pb::SlimHeader> {
    match &m.message_type {
        Some(MessageType::Publish(p)) => p.header.as_ref(),
        _ => None,
    }
}

/// Alice sends MSGs with these ids, then the sentinel.
async fn send_msgs(alice: &Link, ids: impl IntoIterator<Item = u32>) {
    for id in ids {
        alice
            .send(session_msg(T::Msg, id, format!("m{id}").as_bytes()))
            .await
            .expect("alice sends");
    }
    alice
        .send(session_msg(T::MsgAck, SENTINEL_ID, b""))
        .await
        .expect("alice sends the sentinel");
}

/// Bob's MSGs (whole messages) up to the sentinel.
async fn recv_until_sentinel(bob: &mut Link) -> Vec<pb::Message> {
    let mut got = Vec::new();
    loop {
        let m = bob
            .expect_publish(WITHIN)
            .await
            .expect("bob receives until the sentinel");
        let s = session_of(&m).expect("a session header");
        if s.session_message_type == T::MsgAck as i32 && s.message_id == SENTINEL_ID {
            return got;
        }
        got.push(m);
    }
}

fn ids(msgs: &[pb::Message]) -> Vec<u32> {
    msgs.iter()
        .filter_map(session_of)
        .map(|s| s.message_id)
        .collect()
}

fn msg_rule(select: Select, fault: Fault) -> FaultRule {
    FaultRule::new(Some(Dir::ToNode), vec![T::Msg as i32], select, fault)
}

#[tokio::test]
async fn pass_through_keeps_order_and_records_both_directions() {
    let mut rig = rig(1, vec![]).await;
    rig.harness.mark("sending 20");
    send_msgs(&rig.alice, 1..=20).await;
    let got = recv_until_sentinel(&mut rig.bob).await;
    assert_eq!(ids(&got), (1..=20).collect::<Vec<_>>());
    let t = rig.harness.transcript();
    for kind in [
        "link_open",
        "negotiation",
        "subscribe",
        "subscription_ack",
        "note",
    ] {
        assert!(t.iter().any(|e| e.kind == kind), "no {kind} entry");
    }
    for dir in [Dir::ToNode, Dir::FromNode] {
        assert!(t
            .iter()
            .any(|e| e.kind == "negotiation" && e.dir == Some(dir)));
        let msgs: Vec<_> = t.iter().filter(|e| e.is(dir, T::Msg)).collect();
        assert_eq!(msgs.len(), 20, "{dir:?}");
        let entry = msgs[4];
        let s = entry.session.expect("session info");
        assert_eq!((s.session_id, s.message_id, s.error), (77, 5, false));
        assert_eq!(entry.message_type_name(), Some("MSG"));
        assert_eq!(entry.source.as_deref(), Some(alice().to_string().as_str()));
        assert_eq!(
            entry.destination.as_deref(),
            Some(bob().to_string().as_str())
        );
        assert_eq!(entry.identity_sub.as_deref(), Some("alice_x"));
        assert_eq!(entry.payload_len, 2);
        assert_eq!(entry.fault, None);
        assert!(entry.message().is_some());
    }
    // Forwarding order: alice's 5th MSG reached the node before bob got it.
    let seq = |dir| {
        t.iter()
            .find(|e| e.is(dir, T::Msg) && e.session.is_some_and(|s| s.message_id == 5))
            .map(|e| e.seq)
    };
    assert!(seq(Dir::ToNode) < seq(Dir::FromNode));
    // The JSON lines transcript has one object per entry.
    let path = std::env::temp_dir().join(format!("harness-{}.jsonl", std::process::id()));
    rig.harness.write_jsonl(&path).expect("writes");
    let text = std::fs::read_to_string(&path).expect("reads");
    let _ = std::fs::remove_file(&path);
    assert!(text.lines().count() >= t.len());
    let first: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("a line")).expect("json");
    assert_eq!(first["seq"], 0);
    rig.stop().await;
}

#[tokio::test]
async fn drop_by_index_removes_exactly_those_frames() {
    let mut rig = rig(1, vec![msg_rule(Select::Index(vec![0, 2]), Fault::Drop)]).await;
    send_msgs(&rig.alice, 1..=5).await;
    assert_eq!(ids(&recv_until_sentinel(&mut rig.bob).await), vec![2, 4, 5]);
    let dropped: Vec<u32> = rig
        .harness
        .transcript()
        .iter()
        .filter(|e| e.fault.as_deref() == Some("drop"))
        .filter_map(|e| e.session.map(|s| s.message_id))
        .collect();
    assert_eq!(dropped, vec![1, 3]);
    rig.stop().await;
}

#[tokio::test]
async fn duplicate_forwards_each_frame_twice() {
    let mut rig = rig(1, vec![msg_rule(Select::All, Fault::Duplicate)]).await;
    send_msgs(&rig.alice, 1..=3).await;
    assert_eq!(
        ids(&recv_until_sentinel(&mut rig.bob).await),
        vec![1, 1, 2, 2, 3, 3]
    );
    rig.stop().await;
}

/// The message ids a seeded 30 % drop rule removes from 40 MSGs.
async fn dropped_with_seed(seed: u64) -> Vec<u32> {
    let mut rig = rig(seed, vec![msg_rule(Select::Probability(0.3), Fault::Drop)]).await;
    send_msgs(&rig.alice, 1..=40).await;
    let got = ids(&recv_until_sentinel(&mut rig.bob).await);
    rig.stop().await;
    (1..=40).filter(|i| !got.contains(i)).collect()
}

#[tokio::test]
async fn probability_drops_are_reproducible_from_the_seed() {
    let first = dropped_with_seed(7).await;
    let second = dropped_with_seed(7).await;
    assert_eq!(first, second);
    assert!(!first.is_empty() && first.len() < 40, "{first:?}");
}

#[tokio::test]
async fn corrupted_signatures_still_pass_the_link_mac() {
    let rules = vec![
        msg_rule(Select::Index(vec![0, 2]), Fault::CorruptHeaderSig),
        msg_rule(Select::Index(vec![1]), Fault::CorruptPayloadSig),
    ];
    let mut rig = rig(3, rules).await;
    let signed = |id| {
        let mut m = session_msg(T::Msg, id, b"x");
        if let Some(MessageType::Publish(p)) = &mut m.message_type {
            if let Some(h) = &mut p.header {
                h.e2e_header_sig = Some(vec![0x30, 0x44, 0x02, 0x20, 0x11].into());
            }
        }
        m.metadata.insert(
            slim_proto::e2e::PAYLOAD_SIG_KEY.into(),
            "MEQCIBEiM0RVZneImaq7zN3u/w==".into(),
        );
        m
    };
    let sent = [signed(1), signed(2), session_msg(T::Msg, 3, b"unsigned")];
    for m in &sent {
        rig.alice.send(m.clone()).await.expect("sends");
    }
    rig.alice
        .send(session_msg(T::MsgAck, SENTINEL_ID, b""))
        .await
        .expect("sends");
    let got = recv_until_sentinel(&mut rig.bob).await;
    assert_eq!(ids(&got), vec![1, 2, 3]);
    // Bob received them, so the node's MAC check passed; the node's re-signed MAC verifies too.
    let bob_mac = rig.bob.mac.clone().expect("bob has a link key");
    for m in &got {
        bob_mac
            .verify(header_of(m).expect("header"))
            .expect("the MAC bob received verifies");
    }
    let sig = |m: &pb::Message| header_of(m).and_then(|h| h.e2e_header_sig.clone());
    let psig = |m: &pb::Message| m.metadata.get(slim_proto::e2e::PAYLOAD_SIG_KEY).cloned();
    assert_ne!(sig(&got[0]), sig(&sent[0]));
    assert_eq!(sig(&got[0]).map(|s| s.len()), Some(5));
    assert_eq!(psig(&got[0]), psig(&sent[0]));
    assert_eq!(sig(&got[1]), sig(&sent[1]));
    assert_ne!(psig(&got[1]), psig(&sent[1]));
    assert_eq!(got[2].metadata, sent[2].metadata);
    let faults: Vec<_> = rig
        .harness
        .transcript()
        .iter()
        .filter_map(|e| e.fault.clone())
        .collect();
    assert_eq!(
        faults,
        vec![
            "corrupt e2e_header_sig",
            "corrupt slim-payload-sig",
            "corrupt: no e2e_header_sig"
        ]
    );
    rig.stop().await;
}

#[tokio::test]
async fn reset_links_ends_streams_with_unavailable_and_accepts_new_links() {
    let mut rig = rig(1, vec![]).await;
    rig.harness.reset_links().await;
    for link in [&mut rig.alice, &mut rig.bob] {
        let status = link.expect_end(WITHIN).await.expect("the stream ends");
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "harness: node restart");
    }
    let closed = rig
        .harness
        .wait_for(WITHIN, |e| {
            e.kind == "link_closed" && e.note.as_deref() == Some("reset_links: node restart")
        })
        .await;
    assert!(closed.is_some());
    // The apps reconnect and resubscribe; traffic flows again.
    let log = FrameLog::new();
    let mut alice_link = Link::connect(&target(&rig.harness), "alice2", &log)
        .await
        .expect("reconnects");
    alice_link.subscribe(&alice(), 3).await.expect("subscribes");
    let mut bob_link = Link::connect(&target(&rig.harness), "bob2", &log)
        .await
        .expect("reconnects");
    bob_link.subscribe(&bob(), 4).await.expect("subscribes");
    send_msgs(&alice_link, [1]).await;
    assert_eq!(ids(&recv_until_sentinel(&mut bob_link).await), vec![1]);
    rig.stop().await;
}

#[tokio::test]
async fn reorder_swaps_two_adjacent_frames() {
    let mut rig = rig(1, vec![msg_rule(Select::Index(vec![1]), Fault::Reorder)]).await;
    send_msgs(&rig.alice, 1..=4).await;
    assert_eq!(
        ids(&recv_until_sentinel(&mut rig.bob).await),
        vec![1, 3, 2, 4]
    );
    rig.stop().await;
}

#[tokio::test]
async fn a_delayed_frame_does_not_hold_back_later_ones() {
    let rule = msg_rule(
        Select::Index(vec![0]),
        Fault::Delay(Duration::from_millis(300)),
    );
    let mut rig = rig(1, vec![rule]).await;
    send_msgs(&rig.alice, 1..=2).await;
    // 2 and the sentinel overtake 1, which still arrives.
    assert_eq!(ids(&recv_until_sentinel(&mut rig.bob).await), vec![2]);
    let late = rig
        .bob
        .expect_publish(WITHIN)
        .await
        .expect("the delayed frame");
    assert_eq!(session_of(&late).map(|s| s.message_id), Some(1));
    rig.stop().await;
}

#[tokio::test]
async fn mls_epoch_of_a_private_message_is_in_the_transcript() {
    let mut rig = rig(1, vec![]).await;
    // MLSMessage: mls10, PrivateMessage, group_id<V> (1-byte length 3), epoch 5, then content.
    let mut blob = vec![0x00, 0x01, 0x00, 0x02, 0x03, b'g', b'i', b'd'];
    blob.extend(5u64.to_be_bytes());
    blob.extend([0x01, 0x00, 0x10]);
    rig.alice
        .send(session_msg(T::Msg, 1, &blob))
        .await
        .expect("sends");
    rig.bob.expect_publish(WITHIN).await.expect("delivered");
    let e = rig
        .harness
        .wait_for(WITHIN, |e| e.is(Dir::FromNode, T::Msg))
        .await
        .expect("recorded");
    assert_eq!((e.mls_wire_format, e.mls_epoch), (Some(2), Some(5)));
    rig.stop().await;
}

#[tokio::test]
async fn the_node_ending_a_link_ends_the_app_stream_with_its_status() {
    let Rig {
        relay,
        harness,
        mut alice,
        bob: _bob,
    } = rig(1, vec![]).await;
    // The relay closes every link with UNAVAILABLE when it stops.
    relay.shutdown().await.expect("relay stops");
    match alice.recv(WITHIN).await {
        Event::Ended(s) => assert_eq!(s.code(), Code::Unavailable, "{s:?}"),
        other => panic!("expected the stream to end, got {other:?}"),
    }
    let closed = harness
        .wait_for(WITHIN, |e| {
            e.kind == "link_closed"
                && e.note
                    .as_deref()
                    .is_some_and(|n| n.starts_with("node ended the link: Unavailable"))
        })
        .await;
    assert!(closed.is_some(), "{:#?}", harness.transcript());
    // An unreachable node: the app's call fails with UNAVAILABLE.
    let log = FrameLog::new();
    match Link::open(&target(&harness), "late", &log).await {
        Err(crate::verdict::Failure::Rejected(s)) => assert_eq!(s.code(), Code::Unavailable),
        Ok(_) => panic!("the call was accepted with no node behind the harness"),
        Err(e) => panic!("unexpected failure {e:?}"),
    }
    harness.shutdown().await;
}

#[tokio::test]
async fn link_app_and_direction_filters_pick_the_receiving_link() {
    let mut to_bob = FaultRule::new(
        Some(Dir::FromNode),
        vec![T::Msg as i32],
        Select::Index(vec![0]),
        Fault::Drop,
    );
    to_bob.link_app = Some("org/ns/bob".into());
    let mut nobody = msg_rule(Select::All, Fault::Drop);
    nobody.link_app = Some("org/ns/nobody".into());
    let mut rig = rig(1, vec![nobody, to_bob]).await;
    send_msgs(&rig.alice, 1..=3).await;
    assert_eq!(ids(&recv_until_sentinel(&mut rig.bob).await), vec![2, 3]);
    let t = rig.harness.transcript();
    let dropped: Vec<_> = t.iter().filter(|e| e.fault.is_some()).collect();
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].dir, Some(Dir::FromNode));
    // Clearing the rules restores plain forwarding.
    rig.harness.clear_faults();
    send_msgs(&rig.alice, 4..=5).await;
    assert_eq!(ids(&recv_until_sentinel(&mut rig.bob).await), vec![4, 5]);
    rig.stop().await;
}
