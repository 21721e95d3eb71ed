//! Whole endpoints in a simulated network (no sockets, simulated time, seeded): sessions are
//! set up, carry reliable MLS traffic under loss, duplication and reordering, and groups survive
//! adds and removes interleaved with traffic, and a seeded run (MLS included) is the same
//! byte for byte. The world and its toy node are [`super::sim::endpoints`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use slim_proto::names::SlimName;
use slim_proto::pb;

use super::sim::endpoints::{World, SECRET};
use super::sim::LinkProfile;
use super::*;

fn lossy() -> LinkProfile {
    LinkProfile {
        loss: 0.2,
        duplicate: 0.1,
        delay: Duration::from_millis(5),
        jitter: Duration::from_millis(40),
    }
}

fn reliable() -> SessionOptions {
    SessionOptions {
        mls: true,
        reliable: Some(Reliability {
            interval: Duration::from_millis(500),
            max_retries: 10,
        }),
    }
}

/// Checks that `got` holds, from each sender, increasing sequence numbers without repeats
/// (payloads are `<sender>:<n>`), and returns them per sender.
fn per_sender(got: &[(SlimName, String)]) -> BTreeMap<String, Vec<u64>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (_, text) in got {
        let (who, n) = text.rsplit_once(':').expect("payload <who>:<n>");
        let n: u64 = n.parse().expect("sequence number");
        let v = out.entry(who.to_string()).or_default();
        assert!(
            v.last().is_none_or(|&last| n > last),
            "out of order or duplicate from {who}: {n} after {:?}",
            v.last()
        );
        v.push(n);
    }
    out
}

#[test]
fn p2p_reliable_mls_exactly_once_in_order_under_loss_duplication_and_reordering() {
    let wall = std::time::Instant::now();
    let mut w = World::new(7, &["org/sim/alice", "org/sim/bob"], lossy());
    let bob = SlimName::new("org", "sim", "bob");
    let now = w.now;
    let sid = w.eps[0].open_p2p(bob, reliable(), now).expect("open");
    let opened = w.run_while(Duration::from_secs(60), |w| {
        w.count(1, |e| matches!(e, Event::SessionOpened { .. })) == 0
            || w.count(0, |e| matches!(e, Event::SessionOpened { .. })) == 0
    });
    assert!(opened, "session not established: {:?}", w.events);
    const N: u64 = 1000;
    for k in 0..N {
        let now = w.now;
        w.eps[0]
            .publish(sid, Bytes::from(format!("alice:{k}")), now)
            .expect("publish");
        for s in w.eps[1].sessions() {
            w.eps[1]
                .publish(s, Bytes::from(format!("bob:{k}")), now)
                .expect("publish");
        }
        w.run_for(Duration::from_millis(20));
    }
    let done = w.run_while(Duration::from_secs(600), |w| {
        w.count(0, |e| matches!(e, Event::Delivered { .. })) < N as usize
            || w.count(1, |e| matches!(e, Event::Delivered { .. })) < N as usize
    });
    assert!(done, "not every message was acknowledged");
    let to_bob = per_sender(&w.messages(1));
    let to_alice = per_sender(&w.messages(0));
    assert_eq!(to_bob["alice"], (0..N).collect::<Vec<_>>());
    assert_eq!(to_alice["bob"], (0..N).collect::<Vec<_>>());
    for i in 0..2 {
        assert_eq!(w.count(i, |e| matches!(e, Event::SendFailed { .. })), 0);
    }
    let stats = w.net.stats();
    assert!(
        stats.lost > 0 && stats.duplicated > 0,
        "the network must have been unkind: {stats:?}"
    );
    let simulated = w.now - now;
    println!(
        "p2p: {N} msgs each way, {stats:?}, {:.0} simulated s in {:.2} real s",
        simulated.as_secs_f64(),
        wall.elapsed().as_secs_f64()
    );
}

#[test]
fn a_group_of_ten_survives_adds_and_removes_interleaved_with_traffic() {
    let wall = std::time::Instant::now();
    let names: Vec<String> = (0..10).map(|i| format!("org/sim/m{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut w = World::new(11, &refs, lossy());
    let now = w.now;
    let channel = SlimName::new("org", "sim", "chat");
    let sid = w.eps[0]
        .create_group(channel, reliable(), now)
        .expect("group");
    // Invite 1..=7 now; 8 and 9 later, while traffic flows; remove 2 and 5 while it flows.
    for i in 1..=7 {
        let peer = SlimName::new("org", "sim", &format!("m{i}"));
        let now = w.now;
        w.eps[0].invite(sid, peer, now).expect("invite");
    }
    let ok = w.run_while(Duration::from_secs(300), |w| {
        w.count(0, |e| matches!(e, Event::MemberJoined { .. })) < 7
    });
    assert!(ok, "first invitations did not complete: {:?}", w.events[0]);
    let mut removed_at: BTreeMap<usize, Instant> = BTreeMap::new();
    const ROUNDS: u64 = 150;
    for k in 0..ROUNDS {
        let now = w.now;
        // The moderator and two participants talk all the time.
        w.eps[0]
            .publish(sid, Bytes::from(format!("m0:{k}")), now)
            .expect("publish");
        for i in [1usize, 3] {
            if let Some(&s) = w.eps[i].sessions().first() {
                w.eps[i]
                    .publish(s, Bytes::from(format!("m{i}:{k}")), now)
                    .expect("publish");
            }
        }
        match k {
            20 => w.eps[0]
                .invite(sid, SlimName::new("org", "sim", "m8"), now)
                .expect("invite"),
            40 => {
                let n = w.name(2);
                w.eps[0].remove(sid, &n, now).expect("remove");
                removed_at.insert(2, now);
            }
            60 => w.eps[0]
                .invite(sid, SlimName::new("org", "sim", "m9"), now)
                .expect("invite"),
            80 => {
                let n = w.name(5);
                w.eps[0].remove(sid, &n, now).expect("remove");
                removed_at.insert(5, now);
            }
            _ => {}
        }
        w.run_for(Duration::from_millis(200));
    }
    let settled = w.run_while(Duration::from_secs(600), |w| {
        w.eps.iter().any(Endpoint::is_busy)
    });
    assert!(settled, "the group did not settle");

    // Removed members heard of it and got nothing from the group after their removal completed.
    for &i in removed_at.keys() {
        let removed = w.events[i]
            .iter()
            .find(|(_, e)| matches!(e, Event::Removed { .. }))
            .map(|(t, _)| *t)
            .unwrap_or_else(|| panic!("m{i} was not told of its removal: {:?}", w.events[i]));
        let late = w.events[i]
            .iter()
            .filter(|(t, e)| *t > removed && matches!(e, Event::Message { .. }))
            .count();
        assert_eq!(late, 0, "m{i} received messages after its removal");
    }
    // Every receiver got each sender's messages in order and at most once.
    for i in 0..10 {
        per_sender(&w.messages(i));
    }
    // Members present for the whole run got every message of m0, m1 and m3, except those whose
    // sender was told, by name, that this member never acknowledged them. (A group stream starts
    // where a receiver first hears its sender, as in the SDK: if the very first messages are
    // lost, the receiver cannot ask for them, and the sender says so instead of succeeding.)
    let mut unreported = Vec::new();
    let mut reported = 0;
    for i in [1usize, 3, 4, 6, 7] {
        let got = per_sender(&w.messages(i));
        let me = w.name(i);
        for s in [0usize, 1, 3] {
            if s == i {
                continue;
            }
            let failed: BTreeSet<u64> = w.events[s]
                .iter()
                .filter_map(|(_, e)| match e {
                    Event::SendFailed {
                        message_id, peer, ..
                    } if *peer == me => Some(u64::from(*message_id) - 1),
                    _ => None,
                })
                .collect();
            reported += failed.len();
            let have: BTreeSet<u64> = got
                .get(&format!("m{s}"))
                .into_iter()
                .flatten()
                .copied()
                .collect();
            for k in 0..ROUNDS {
                if !have.contains(&k) && !failed.contains(&k) {
                    unreported.push(format!("m{i} lacks m{s}:{k}"));
                }
            }
        }
    }
    assert!(unreported.is_empty(), "silently lost: {unreported:?}");
    // Late joiners got a contiguous run of the moderator's stream, up to the end.
    for i in [8usize, 9] {
        let got = per_sender(&w.messages(i));
        let v = &got["m0"];
        assert_eq!(*v.last().expect("something"), ROUNDS - 1, "m{i}");
        assert_eq!(v.len() as u64, ROUNDS - v[0], "m{i} has a hole");
    }
    // Every moderator message ended in Delivered or in SendFailed naming who missed it.
    let delivered = w.count(0, |e| matches!(e, Event::Delivered { .. }));
    let failed_ids: BTreeSet<u32> = w.events[0]
        .iter()
        .filter_map(|(_, e)| match e {
            Event::SendFailed { message_id, .. } => Some(*message_id),
            _ => None,
        })
        .collect();
    assert_eq!(delivered + failed_ids.len(), ROUNDS as usize);
    println!("group of 10: {reported} stream-start losses reported to their senders by name");
    let simulated = w.now - now;
    println!(
        "group of 10: {:?}, {:.0} simulated s in {:.2} real s",
        w.net.stats(),
        simulated.as_secs_f64(),
        wall.elapsed().as_secs_f64()
    );
}

#[test]
fn exhausted_retries_name_the_message_and_the_silent_peer() {
    let mut w = World::new(
        3,
        &["org/sim/alice", "org/sim/bob"],
        LinkProfile::perfect(Duration::from_millis(5)),
    );
    let now = w.now;
    let opts = SessionOptions {
        mls: false,
        reliable: Some(Reliability {
            interval: Duration::from_secs(1),
            max_retries: 3,
        }),
    };
    let sid = w.eps[0]
        .open_p2p(SlimName::new("org", "sim", "bob"), opts, now)
        .expect("open");
    assert!(w.run_while(Duration::from_secs(30), |w| {
        w.count(0, |e| matches!(e, Event::SessionOpened { .. })) == 0
    }));
    // Bob goes silent.
    w.net.set_link(1, 0, LinkProfile::dead());
    w.net.set_link(0, 1, LinkProfile::dead());
    let now = w.now;
    let id = w.eps[0]
        .publish(sid, Bytes::from_static(b"hello"), now)
        .expect("publish");
    w.run_for(Duration::from_secs(10));
    let bob = w.name(1);
    let failed: Vec<_> = w.events[0]
        .iter()
        .filter_map(|(t, e)| match e {
            Event::SendFailed {
                message_id, peer, ..
            } => Some((*t, *message_id, peer.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1, "{:?}", w.events[0]);
    assert_eq!((failed[0].1, &failed[0].2), (id, &bob));
    assert_eq!(
        failed[0].0 - now,
        Duration::from_secs(4),
        "(max_retries + 1) × interval"
    );
}

#[test]
fn an_app_with_another_secret_is_refused_with_a_clear_error() {
    let now = Instant::now();
    let mut w = World::new(
        5,
        &["org/sim/alice"],
        LinkProfile::perfect(Duration::from_millis(5)),
    );
    // Mallory has another shared secret.
    let mallory = Endpoint::new(EndpointConfig {
        name: "org/sim/mallory".parse().expect("name"),
        credentials: Credentials::SharedSecret("another-secret-another-secret-0123456789".into()),
        seed: [9; 32],
        clock: Clock {
            at: now,
            unix_secs: Clock::system().unix_secs,
        },
        mls_crypto: CryptoBackend::RingDeterministicSignatures,
    })
    .expect("endpoint");
    w.subs
        .push([mallory.local_name().clone()].into_iter().collect());
    w.eps.push(mallory);
    w.events.push(Vec::new());
    let t = w.now;
    w.eps[0]
        .open_p2p(
            SlimName::new("org", "sim", "mallory"),
            SessionOptions::default(),
            t,
        )
        .expect("open");
    w.run_for(Duration::from_secs(20));
    let errors: Vec<String> = w.events[1]
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Error { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect();
    assert!(
        errors.iter().any(|m| m.contains("shared secret")),
        "mallory must say why it dropped alice's invitation: {errors:?}"
    );
    assert!(w.events[0]
        .iter()
        .any(|(_, e)| matches!(e, Event::SessionClosed { .. })));
    assert_eq!(w.count(1, |e| matches!(e, Event::SessionOpened { .. })), 0);
}

#[test]
fn a_member_cut_off_during_a_commit_rejoins_at_the_next_heartbeat() {
    let names = ["org/sim/mod", "org/sim/p1", "org/sim/p2", "org/sim/p3"];
    let mut w = World::new(21, &names, LinkProfile::perfect(Duration::from_millis(5)));
    let now = w.now;
    let sid = w.eps[0]
        .create_group(SlimName::new("org", "sim", "room"), reliable(), now)
        .expect("group");
    for p in ["p1", "p2"] {
        let now = w.now;
        w.eps[0]
            .invite(sid, SlimName::new("org", "sim", p), now)
            .expect("invite");
    }
    assert!(w.run_while(Duration::from_secs(60), |w| {
        w.count(0, |e| matches!(e, Event::MemberJoined { .. })) < 2
    }));
    // p2 is cut off while p3 joins: the ADD commit never reaches it (retransmissions run out).
    for peer in [0, 1, 3] {
        w.net.set_link(2, peer, LinkProfile::dead());
        w.net.set_link(peer, 2, LinkProfile::dead());
    }
    let now = w.now;
    w.eps[0]
        .invite(sid, SlimName::new("org", "sim", "p3"), now)
        .expect("invite");
    w.run_for(Duration::from_secs(30));
    for peer in [0, 1, 3] {
        w.net
            .set_link(2, peer, LinkProfile::perfect(Duration::from_millis(5)));
        w.net
            .set_link(peer, 2, LinkProfile::perfect(Duration::from_millis(5)));
    }
    // The moderator stays idle, so its heartbeat carries the new epoch; p2 asks back in.
    w.run_for(Duration::from_secs(25));
    assert!(
        w.events[2].iter().any(
            |(_, e)| matches!(e, Event::Error { message, .. } if message.contains("rejoined"))
        ),
        "p2 did not rejoin: {:?}",
        w.events[2]
    );
    let start = w.events[2].len();
    for k in 0..5 {
        let now = w.now;
        w.eps[0]
            .publish(sid, Bytes::from(format!("m0:{k}")), now)
            .expect("publish");
    }
    w.run_for(Duration::from_secs(10));
    let after: Vec<String> = w.events[2][start..]
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Message { payload, .. } => Some(String::from_utf8_lossy(payload).into_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(after, (0..5).map(|k| format!("m0:{k}")).collect::<Vec<_>>());
    for i in [1usize, 3] {
        let got = per_sender(&w.messages(i));
        assert_eq!(got["m0"], (0..5).collect::<Vec<_>>(), "m{i}");
    }
}

#[test]
fn a_retransmitted_join_request_gets_the_same_reply_and_is_not_processed_again() {
    let mut w = alice_opens_p2p_to_bob(4);
    let join = capture(&mut w, pb::SessionMessageType::JoinRequest);
    let now = w.now;
    w.eps[1].handle_message(join.clone(), now);
    let first = transmitted(&mut w, 1);
    w.eps[1].handle_message(join, now);
    let second = transmitted(&mut w, 1);
    assert_eq!(first.len(), 1, "one join reply");
    // The same bytes: the same key package, not a second one (a reprocessed request would make
    // a new MLS key package and reset the session).
    assert_eq!(
        first, second,
        "a retransmission is answered with the same reply"
    );
    assert_eq!(w.eps[1].sessions().len(), 1);
}

#[test]
fn fire_and_forget_sends_no_acks_and_delivers_what_arrives() {
    let mut w = World::new(
        8,
        &["org/sim/alice", "org/sim/bob"],
        LinkProfile::perfect(Duration::from_millis(5)),
    );
    let now = w.now;
    let sid = w.eps[0]
        .open_p2p(
            SlimName::new("org", "sim", "bob"),
            SessionOptions::default(),
            now,
        )
        .expect("open");
    assert!(w.run_while(Duration::from_secs(30), |w| {
        w.count(0, |e| matches!(e, Event::SessionOpened { .. })) == 0
    }));
    // Watch bob's transmissions from here on.
    w.drain(1);
    for k in 0..10 {
        let now = w.now;
        w.eps[0]
            .publish(sid, Bytes::from(format!("alice:{k}")), now)
            .expect("publish");
    }
    let mut acks = 0;
    for _ in 0..100 {
        w.drain(0);
        while let Some(t) = w.eps[1].poll_transmit() {
            if let Transmit::Publish(m) = &t {
                if matches!(
                    super::wire::inbound(m).map(|m| m.kind),
                    Ok(pb::SessionMessageType::MsgAck)
                ) {
                    acks += 1;
                }
            }
        }
        let Some(t) = w.net.next_event_time() else {
            break;
        };
        w.now = t;
        for d in w.net.deliver_due(t) {
            w.eps[d.to].handle_message(d.packet, t);
        }
        while let Some(e) = w.eps[1].poll_event() {
            w.events[1].push((t, e));
        }
    }
    assert_eq!(acks, 0, "fire-and-forget sessions send no MSG_ACK");
    assert_eq!(
        per_sender(&w.messages(1))["alice"],
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(w.count(0, |e| matches!(e, Event::Delivered { .. })), 0);
}

#[test]
fn jwt_identities_with_a_pubkey_claim_work_like_shared_secrets() {
    let key = slim_proto::identity::JwtKey::hs256(b"jwt-hs256-deployment-key-0123456789abcdef");
    let mut w = World::with_credentials(
        9,
        &["org/sim/alice", "org/sim/bob"],
        LinkProfile::perfect(Duration::from_millis(5)),
        Credentials::Jwt(key),
    );
    let now = w.now;
    let sid = w.eps[0]
        .open_p2p(SlimName::new("org", "sim", "bob"), reliable(), now)
        .expect("open");
    assert!(w.run_while(Duration::from_secs(30), |w| {
        w.count(0, |e| matches!(e, Event::SessionOpened { .. })) == 0
    }));
    let now = w.now;
    w.eps[0]
        .publish(sid, Bytes::from_static(b"alice:0"), now)
        .expect("publish");
    w.run_for(Duration::from_secs(5));
    assert_eq!(per_sender(&w.messages(1))["alice"], vec![0]);
    assert_eq!(w.count(0, |e| matches!(e, Event::Delivered { .. })), 1);
}

#[test]
fn a_newcomer_joins_a_group_older_than_its_members_tokens() {
    // Tokens live an hour and MLS credentials keep the token a member joined with. The simulated
    // wall clock starts two hours in the past (openmls checks key package lifetimes against the
    // real clock) and the group lives two hours before p2 is invited.
    let mut w = World::at(
        12,
        &["org/sim/mod", "org/sim/p1", "org/sim/p2"],
        LinkProfile::perfect(Duration::from_millis(5)),
        Credentials::SharedSecret(SECRET.into()),
        2 * 3600 + 120,
    );
    let now = w.now;
    let sid = w.eps[0]
        .create_group(SlimName::new("org", "sim", "old"), reliable(), now)
        .expect("group");
    w.eps[0]
        .invite(sid, SlimName::new("org", "sim", "p1"), now)
        .expect("invite");
    assert!(w.run_while(Duration::from_secs(30), |w| {
        w.count(0, |e| matches!(e, Event::MemberJoined { .. })) < 1
    }));
    w.run_for(Duration::from_secs(2 * 3600));
    let now = w.now;
    w.eps[0]
        .invite(sid, SlimName::new("org", "sim", "p2"), now)
        .expect("invite");
    assert!(
        w.run_while(Duration::from_secs(30), |w| {
            w.count(0, |e| matches!(e, Event::MemberJoined { .. })) < 2
        }),
        "p2 could not join: {:?}",
        w.events[2]
    );
    let now = w.now;
    w.eps[0]
        .publish(sid, Bytes::from_static(b"m0:0"), now)
        .expect("publish");
    w.run_for(Duration::from_secs(5));
    for i in [1usize, 2] {
        assert_eq!(per_sender(&w.messages(i))["m0"], vec![0], "m{i}");
    }
}

/// Runs `w` until a message of type `kind` is on its way, and returns it instead of delivering it.
fn capture(w: &mut World, kind: pb::SessionMessageType) -> pb::Message {
    for _ in 0..1000 {
        w.drain(0);
        w.drain(1);
        let t = w.net.next_event_time().expect("traffic");
        w.now = t;
        let mut found = None;
        for d in w.net.deliver_due(t) {
            if matches!(super::wire::inbound(&d.packet).map(|m| m.kind), Ok(k) if k == kind) {
                found = Some(d.packet);
            } else {
                w.eps[d.to].handle_message(d.packet, t);
            }
        }
        if let Some(m) = found {
            return m;
        }
    }
    panic!("no {kind:?} was sent");
}

/// Two endpoints on a perfect 5 ms link; alice has just asked to open a reliable P2P session
/// with bob (nothing delivered yet).
fn alice_opens_p2p_to_bob(seed: u64) -> World {
    let mut w = World::new(
        seed,
        &["org/sim/alice", "org/sim/bob"],
        LinkProfile::perfect(Duration::from_millis(5)),
    );
    let now = w.now;
    w.eps[0]
        .open_p2p(SlimName::new("org", "sim", "bob"), reliable(), now)
        .expect("open");
    w
}

fn transmitted(w: &mut World, i: usize) -> Vec<pb::Message> {
    let mut out = Vec::new();
    while let Some(t) = w.eps[i].poll_transmit() {
        if let Transmit::Publish(m) = t {
            out.push(m);
        }
    }
    out
}

#[test]
fn every_copy_of_a_discovery_request_is_answered() {
    let mut w = alice_opens_p2p_to_bob(14);
    let discovery = capture(&mut w, pb::SessionMessageType::DiscoveryRequest);
    let now = w.now;
    for _ in 0..3 {
        w.eps[1].handle_message(discovery.clone(), now);
        let replies = transmitted(&mut w, 1);
        assert_eq!(replies.len(), 1, "each copy gets a discovery reply");
    }
}

#[test]
fn an_invitation_without_a_welcome_is_dropped_after_the_join_deadline() {
    let mut w = alice_opens_p2p_to_bob(15);
    let join = capture(&mut w, pb::SessionMessageType::JoinRequest);
    let now = w.now;
    w.eps[1].handle_message(join, now);
    assert_eq!(w.eps[1].sessions().len(), 1);
    let deadline = w.eps[1].poll_timeout().expect("a deadline");
    assert!(deadline <= now + shared::JOIN_DEADLINE);
    w.eps[1].handle_timeout(now + shared::JOIN_DEADLINE);
    assert!(
        w.eps[1].sessions().is_empty(),
        "the half-open session is gone"
    );
    let mut said = false;
    while let Some(e) = w.eps[1].poll_event() {
        said |= matches!(e, Event::Error { message, .. } if message.contains("no welcome"));
    }
    assert!(said, "and the user is told why");
}

/// Runs a seeded MLS group — a moderator and three members over a lossy network, a message
/// from each, the removal of one, more messages — and returns every frame put on the wire, in
/// order, encoded.
fn seeded_mls_group_transcript(seed: u64, unix_secs: u64) -> Vec<Vec<u8>> {
    let names = ["org/det/m0", "org/det/m1", "org/det/m2", "org/det/m3"];
    let credentials = Credentials::SharedSecret(SECRET.into());
    let mut w = World::with_clock(seed, &names, lossy(), credentials, unix_secs);
    w.transcript = Some(Vec::new());
    let now = w.now;
    let sid = w.eps[0]
        .create_group(SlimName::new("org", "det", "chat"), reliable(), now)
        .expect("group");
    for i in 1..=3 {
        let now = w.now;
        let peer = SlimName::new("org", "det", &format!("m{i}"));
        w.eps[0].invite(sid, peer, now).expect("invite");
    }
    let joined = w.run_while(Duration::from_secs(120), |w| {
        w.count(0, |e| matches!(e, Event::MemberJoined { .. })) < 3
    });
    assert!(joined, "invitations did not complete: {:?}", w.events[0]);
    let talk = |w: &mut World, round: u32| {
        for i in 0..names.len() {
            if let Some(&s) = w.eps[i].sessions().first() {
                let now = w.now;
                w.eps[i]
                    .publish(s, Bytes::from(format!("m{i}:{round}")), now)
                    .expect("publish");
            }
        }
    };
    talk(&mut w, 0);
    w.run_for(Duration::from_secs(2));
    let removed = w.name(2);
    let now = w.now;
    w.eps[0].remove(sid, &removed, now).expect("remove");
    w.run_for(Duration::from_secs(2));
    talk(&mut w, 1);
    let settled = w.run_while(Duration::from_secs(120), |w| {
        w.eps.iter().any(Endpoint::is_busy)
    });
    assert!(settled, "the group did not settle");
    assert!(
        w.events[2]
            .iter()
            .any(|(_, e)| matches!(e, Event::Removed { .. })),
        "m2 was removed"
    );
    assert_eq!(
        w.messages(1).len(),
        5,
        "m1 got everyone's messages but its own"
    );
    w.transcript.take().expect("recorded")
}

/// SLIM-SESS determinism (session/mod.rs: "every run of a seed is the same"), MLS included:
/// the same seed and wall clock put the same bytes on the wire, frame for frame; another seed
/// does not.
#[test]
fn a_seeded_mls_group_run_twice_puts_the_same_bytes_on_the_wire() {
    // openmls checks key package lifetimes against the system clock: start near it, once.
    let unix_secs = Clock::system().unix_secs;
    let a = seeded_mls_group_transcript(21, unix_secs);
    let b = seeded_mls_group_transcript(21, unix_secs);
    assert!(a.len() > 50, "a real exchange: {} frames", a.len());
    assert_eq!(a.len(), b.len(), "same number of frames");
    if let Some(i) = (0..a.len()).find(|&i| a[i] != b[i]) {
        panic!(
            "frame {i} of {} differs between two runs of one seed",
            a.len()
        );
    }
    let c = seeded_mls_group_transcript(22, unix_secs);
    assert_ne!(a, c, "another seed, another run");
}

/// SLIM-REV-007/008 in a simulated group of four: the moderator told of a revocation removes the
/// member with a commit (the rest agree on a later epoch) within 1 simulated second; the member's
/// state cannot open what is sent afterwards; its re-invitation is refused at once; and a member
/// told of another's revocation delivers nothing more from it, while the others still do.
#[test]
fn a_revoked_member_is_removed_refused_and_cannot_read_on() {
    let names = ["org/sim/m0", "org/sim/m1", "org/sim/m2", "org/sim/m3"];
    let mut w = World::new(23, &names, LinkProfile::perfect(Duration::from_millis(5)));
    let now = w.now;
    let sid = w.eps[0]
        .create_group(SlimName::new("org", "sim", "chat"), reliable(), now)
        .expect("group");
    for i in 1..=3 {
        let now = w.now;
        w.eps[0]
            .invite(sid, SlimName::new("org", "sim", &format!("m{i}")), now)
            .expect("invite");
        let joined = w.run_while(Duration::from_secs(30), |w| {
            w.count(0, |e| matches!(e, Event::MemberJoined { .. })) < i
        });
        assert!(joined, "m{i} did not join: {:?}", w.events[0]);
    }
    let before = w.eps[0].state_auth(sid).expect("state").epoch;
    let victim = w.eps[3].local_name().clone();
    let victim_session = w.eps[3].sessions()[0];
    // What the revoked member knows of the group, kept as an attacker would keep it.
    let sub = w.eps[3].token_id().to_string();
    let t0 = w.now;
    w.eps[0].revoke(Reason::Sub(sub.clone()), t0);
    let left = w.run_while(Duration::from_secs(30), |w| {
        w.count(
            0,
            |e| matches!(e, Event::MemberLeft { member, .. } if *member == victim),
        ) == 0
    });
    assert!(
        left,
        "the revoked member was not removed: {:?}",
        w.events[0]
    );
    let took = w.now - t0;
    assert!(took <= Duration::from_secs(1), "removal took {took:?}");
    w.run_for(Duration::from_secs(2));
    let states: Vec<StateAuth> = (0..3)
        .map(|i| {
            let s = w.eps[i].sessions()[0];
            w.eps[i].state_auth(s).expect("state")
        })
        .collect();
    assert!(
        states[0].epoch > before,
        "no commit: epoch {before} → {}",
        states[0].epoch
    );
    assert!(
        states.iter().all(|s| *s == states[0]),
        "members disagree: {states:?}"
    );
    assert!(!states[0].members.contains(&victim));
    // The removed member's session reads nothing more (its group state is gone or stale).
    let before_msgs = w.messages(3).len();
    let now = w.now;
    w.eps[0]
        .publish(sid, Bytes::from_static(b"m0:after"), now)
        .expect("publish");
    let delivered = w.run_while(Duration::from_secs(10), |w| {
        !w.messages(1).iter().any(|(_, t)| t == "m0:after")
            || !w.messages(2).iter().any(|(_, t)| t == "m0:after")
    });
    assert!(delivered, "the remaining members did not get the message");
    assert_eq!(
        w.messages(3).len(),
        before_msgs,
        "the revoked member read on"
    );
    assert!(
        w.eps[3].state_auth(victim_session).is_err() || {
            let s = w.eps[3].state_auth(victim_session).expect("state");
            s.epoch < states[0].epoch
        },
        "the revoked member followed the group into the new epoch"
    );
    // Re-inviting it is refused at once, with the reason.
    let now = w.now;
    w.eps[0]
        .invite(sid, SlimName::new("org", "sim", "m3"), now)
        .expect("invite queued");
    let refused = w.run_while(Duration::from_millis(500), |w| {
        w.count(0, |e| {
            matches!(e, Event::Error { message, .. } if message.starts_with("refused ") && message.contains("revoked"))
        }) == 0
    });
    assert!(
        refused,
        "the revoked member's rejoin was not refused: {:?}",
        w.events[0]
    );
    assert_eq!(
        w.count(
            0,
            |e| matches!(e, Event::MemberJoined { member, .. } if *member == victim)
        ),
        1,
        "it joined again"
    );
    // m1 is told that m2 is revoked (m0 is not): m2's next message reaches m0 only.
    let sub2 = w.eps[2].token_id().to_string();
    let now = w.now;
    w.eps[1].revoke(Reason::Sub(sub2), now);
    let s2 = w.eps[2].sessions()[0];
    w.eps[2]
        .publish(s2, Bytes::from_static(b"m2:after"), now)
        .expect("publish");
    let at_m0 = w.run_while(Duration::from_secs(10), |w| {
        !w.messages(0).iter().any(|(_, t)| t == "m2:after")
    });
    assert!(at_m0, "the moderator (not told) must still get it");
    w.run_for(Duration::from_secs(1));
    assert!(
        !w.messages(1).iter().any(|(_, t)| t == "m2:after"),
        "m1 delivered data signed by a revoked identity"
    );
    assert!(
        w.count(
            1,
            |e| matches!(e, Event::Error { message, .. } if message.contains("revoked"))
        ) > 0
    );
}
