//! Seed inputs for every target, built from the repository's deterministic vectors (`vectors/`)
//! and by hand.
//!
//! - `frame`: every encoding of `vectors/encodings.yaml` and the session frames of
//!   `vectors/sessions/`, plus hand-built messages (every header field, metadata, commands).
//! - `link`: the negotiation request and reply of `encodings.yaml`, the key pairs and refused keys
//!   of `vectors/link.yaml`, in each mode.
//! - `relay`: every scenario of `vectors/routing.yaml` as an operation sequence (links opened and
//!   negotiated, the steps' messages signed by the harness), the encodings fed on negotiated
//!   links, and hand-made sequences (timeouts, expiring JWTs, revocation, limits, shutdown).
//! - `session`: each endpoint of `vectors/sessions/` replayed (its frames at their arrival
//!   times, its application's commands), whole and cut short, and with commands re-signed.
//! - `reliable`, `jwt`, `config`: hand-made (in order, gaps, losses, wrap-around; valid and
//!   refused tokens and headers; a full `relay.yaml`, auth variants, revocation lists).
//!
//! [`seeds`] returns them in memory (the smoke test); `slim-fuzz-seeds <dir>` writes them as
//! files for libFuzzer (`fuzz/run.sh`).

use std::collections::BTreeMap;

use prost::Message as _;
use serde_yaml::Value;
use slim_proto::link::{self, LinkKeyPair};
use slim_proto::mac::LinkMac;
use slim_proto::names::SlimName;
use slim_proto::pb::{self, message::MessageType};
use slim_proto::validate;
use slim_vectors::routing::{self, Op};

use crate::input::Writer;
use crate::targets::{jwt, relay as r, reliable as rel, session as s};

/// A named seed.
pub type Seed = (String, Vec<u8>);

/// `vectors/encodings.yaml`, compiled in.
const ENCODINGS: &str = include_str!("../../vectors/encodings.yaml");
/// `vectors/link.yaml`, compiled in.
const LINK: &str = include_str!("../../vectors/link.yaml");

/// The seeds of `target` (empty for an unknown name).
pub fn seeds(target: &str) -> Vec<Seed> {
    match target {
        "frame" => frame(),
        "link" => link(),
        "relay" => relay(),
        "session" => session(),
        "reliable" => reliable(),
        "jwt" => jwt_seeds(),
        "config" => config(),
        _ => Vec::new(),
    }
}

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap_or(Value::Null)
}

fn unhex(v: &Value) -> Option<Vec<u8>> {
    v.as_str().and_then(|s| hex::decode(s).ok())
}

/// `(tc_id, bytes)` of every vector of `encodings.yaml`.
pub fn encodings() -> Vec<(u64, Vec<u8>)> {
    let doc = yaml(ENCODINGS);
    doc["vectors"]
        .as_sequence()
        .map(|vs| {
            vs.iter()
                .filter_map(|v| Some((v["tc_id"].as_u64()?, unhex(&v["hex"])?)))
                .collect()
        })
        .unwrap_or_default()
}

fn encoding(tc: u64) -> Vec<u8> {
    encodings()
        .into_iter()
        .find(|(id, _)| *id == tc)
        .map(|(_, b)| b)
        .unwrap_or_default()
}

/// The session frames of `vectors/sessions/`, distinct, in file order, with their receiver.
fn session_frames() -> Vec<(String, Vec<u8>)> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for doc in s::vector_docs() {
        for f in doc["frames"].as_sequence().into_iter().flatten() {
            let (Some(bytes), Some(to)) = (unhex(&f["hex"]), f["to"].as_str()) else {
                continue;
            };
            if seen.insert(bytes.clone()) {
                out.push((to.to_string(), bytes));
            }
        }
    }
    out
}

fn name(text: &str) -> SlimName {
    text.parse()
        .unwrap_or_else(|_| SlimName::new("org", "fuzz", "fallback"))
}

/// A Publish with every header field set, signed, as a real client sends it.
fn full_publish() -> pb::Message {
    let src = name("org/ns/alice/7");
    let dst = name("org/ns/bob/9");
    let mut msg = slim_proto::messages::publish(&src, &dst, 1, b"hello");
    if let Some(h) = validate::header_mut(&mut msg) {
        h.identity = "token".into();
        h.recv_from = Some(3);
        h.forward_to = Some(4);
        h.incoming_conn = Some(5);
        h.error = Some(false);
        h.e2e_header_sig = Some(bytes::Bytes::from_static(b"sig"));
        LinkMac::new([1; 32], "in").sign(h);
    }
    msg
}

fn frame() -> Vec<Seed> {
    let mut out: Vec<Seed> = encodings()
        .into_iter()
        .map(|(tc, b)| (format!("encodings-tc{tc:02}"), b))
        .collect();
    for (i, (to, b)) in session_frames().into_iter().take(40).enumerate() {
        out.push((format!("session-frame-{i:02}-to-{to}"), b));
    }
    let mut with_meta = full_publish();
    with_meta
        .metadata
        .insert("PUBLISH_TO".into(), "TRUE".into());
    with_meta.metadata.insert("k".into(), "v".into());
    let sub = slim_proto::messages::subscribe(&name("org/ns/svc/1"), 5);
    out.push(("full-publish".into(), full_publish().encode_to_vec()));
    out.push(("publish-metadata".into(), with_meta.encode_to_vec()));
    out.push(("subscribe".into(), sub.encode_to_vec()));
    out.push(("empty".into(), Vec::new()));
    out
}

/// A link negotiation request as the SDK sends it.
fn request(link_id: &str, key: &[u8]) -> pb::Message {
    link::negotiation_message(pb::LinkNegotiationPayload {
        link_id: link_id.into(),
        slim_version: "3.4.6".into(),
        is_reply: false,
        link_ecdh_public_key: bytes::Bytes::copy_from_slice(key),
        connection_type: pb::LinkConnectionType::Edge as i32,
        node_id: "node-fuzz".into(),
        deployment_name: String::new(),
        link_kem_payload: None,
    })
}

fn link() -> Vec<Seed> {
    let mut out = Vec::new();
    let key = LinkKeyPair::from_secret_bytes([5; 32]).public_bytes();
    let mut peer = request("peer-link", &key);
    let mut kem = request("kem-link", &key);
    if let Some(MessageType::Link(pb::Link {
        link_type: Some(pb::link::LinkType::LinkNegotiation(p)),
    })) = &mut peer.message_type
    {
        p.connection_type = pb::LinkConnectionType::Peer as i32;
    }
    if let Some(MessageType::Link(pb::Link {
        link_type: Some(pb::link::LinkType::LinkNegotiation(p)),
    })) = &mut kem.message_type
    {
        p.link_kem_payload = Some(vec![0x33; link::ML_KEM768_PUBLIC_KEY_LEN].into());
    }
    let requests = [
        ("tc01", encoding(1)),
        ("tc03", encoding(3)),
        ("keyless", request("keyless", &[]).encode_to_vec()),
        ("peer", peer.encode_to_vec()),
        ("kem", kem.encode_to_vec()),
        ("subscribe", encoding(4)),
    ];
    for (label, frame) in &requests {
        for flags in [0u8, 1, 2, 3] {
            let data = Writer::new().u8(0).u8(flags).bytes(frame).finish();
            out.push((format!("responder-{label}-flags{flags}"), data));
        }
    }
    for flags in [0u8, 0x0f, 0x07, 0x03] {
        let data = Writer::new()
            .u8(1)
            .u8(flags)
            .bytes(&[flags; 32])
            .bytes(&encoding(2))
            .finish();
        out.push((format!("initiator-tc02-flags{flags}"), data));
    }
    let doc = yaml(LINK);
    for v in doc["vectors"].as_sequence().into_iter().flatten() {
        let tc = v["tc_id"].as_u64().unwrap_or(0);
        let (Some(a), Some(id)) = (unhex(&v["initiator_secret"]), v["link_id"].as_str()) else {
            continue;
        };
        let b = unhex(&v["responder_secret"]).unwrap_or_else(|| vec![9; 32]);
        let other = unhex(&v["responder_public"]).unwrap_or_default();
        let mut w = Writer::new();
        w.u8(2)
            .bytes(&a)
            .bytes(&b)
            .u8(id.len() as u8)
            .bytes(id.as_bytes());
        w.bytes(&[0x44; 32]).bytes(&other);
        out.push((format!("keys-link-yaml-tc{tc:02}"), w.finish()));
    }
    for (flags, positions) in [(0u8, (0u16, 0u16)), (1, (0, 0)), (0, (5, 0)), (1, (0, 40))] {
        let data = Writer::new()
            .u8(3)
            .u8(flags)
            .bytes(&[0x21; 32])
            .u16(positions.0)
            .u16(positions.1)
            .finish();
        out.push((
            format!("end-to-end-{flags}-{}-{}", positions.0, positions.1),
            data,
        ));
    }
    out
}

/// Appends a `SIGNED` operation carrying `msg`.
fn signed(w: &mut Writer, slot: usize, msg: &pb::Message) {
    w.u8(r::op(r::SIGNED, slot, false))
        .chunk(&msg.encode_to_vec());
}

/// Opens and negotiates `n` links (keyed when `keyed`).
fn open_links(w: &mut Writer, n: usize, keyed: bool) {
    for slot in 0..n {
        w.u8(r::op(r::OPEN, slot, false));
        w.u8(r::op(r::NEGOTIATE, slot, keyed));
    }
}

fn routing_seed(sc: &routing::Scenario, strict: bool) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(r::config_byte(strict, None, 7));
    let slots: BTreeMap<&str, usize> = sc
        .links
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i % r::SLOTS))
        .collect();
    open_links(&mut w, sc.links.len().min(r::SLOTS), strict);
    for step in &sc.steps {
        let slot = slots.get(step.link.as_str()).copied().unwrap_or(0);
        let target = step.name.as_deref().map(name);
        let ttl = step.ttl;
        let with_ttl = |mut m: pb::Message| {
            if let (Some(t), Some(h)) = (ttl, validate::header_mut(&mut m)) {
                h.ttl = t;
            }
            m
        };
        match (step.op, target) {
            (Op::Subscribe, Some(n)) => {
                let m = slim_proto::messages::subscribe(&n, step.subscription_id.unwrap_or(0));
                signed(&mut w, slot, &with_ttl(m));
            }
            (Op::Unsubscribe, Some(n)) => {
                let m = slim_proto::messages::unsubscribe(&n, step.subscription_id.unwrap_or(0));
                signed(&mut w, slot, &with_ttl(m));
            }
            (Op::Publish, Some(n)) => {
                let src = r::table_name(slot as u8);
                for _ in 0..step.count.unwrap_or(1).min(8) {
                    let m = slim_proto::messages::publish(&src, &n, step.fanout.unwrap_or(1), b"x");
                    signed(&mut w, slot, &with_ttl(m));
                }
            }
            (Op::Close, _) => {
                w.u8(r::op(r::CLOSE, slot, false));
            }
            _ => {}
        }
    }
    w.finish()
}

fn relay() -> Vec<Seed> {
    let mut out = Vec::new();
    for sc in routing::builtin().scenarios {
        out.push((format!("routing-{}-strict", sc.id), routing_seed(&sc, true)));
        out.push((format!("routing-{}-lax", sc.id), routing_seed(&sc, false)));
    }
    // Each encoding on a negotiated link, after a subscription to the vectors' names.
    for (tc, bytes) in encodings() {
        let mut w = Writer::new();
        w.u8(r::config_byte(false, None, 3));
        open_links(&mut w, 2, true);
        w.u8(r::op(r::SIGNED, 1, false)).chunk(&encoding(4));
        w.u8(r::op(r::SIGNED, 0, false)).chunk(&bytes);
        w.u8(r::op(r::FRAME, 0, false)).chunk(&bytes);
        out.push((format!("encodings-tc{tc:02}"), w.finish()));
        let first = Writer::new()
            .u8(r::config_byte(true, Some(2), 1))
            .u8(r::op(r::OPEN, 0, false))
            .u8(r::op(r::FRAME, 0, false))
            .chunk(&bytes)
            .finish();
        out.push((format!("first-frame-tc{tc:02}"), first));
    }
    // Compact operations: subscriptions on every link, publishes through both paths, flags.
    let mut w = Writer::new();
    w.u8(r::config_byte(true, Some(3), 2));
    open_links(&mut w, 4, true);
    for slot in 1..4 {
        for n in [0u8, 4, 5, 9] {
            w.u8(r::op(r::SUBSCRIBE, slot, false))
                .u8(n)
                .u8(slot as u8)
                .u8(0);
        }
    }
    for (n, fanout, ttl, decoded) in [
        (0u8, 1u8, 8u8, false),
        (4, 1, 8, true),
        (5, 2, 8, false),
        (0, 0, 1, false),
        (4, 255, 2, true),
    ] {
        w.u8(r::op(r::PUBLISH, 0, decoded))
            .u8(n)
            .u8(fanout)
            .u8(ttl)
            .u8(0);
    }
    w.u8(r::op(r::PUBLISH, 0, false))
        .u8(5)
        .u8(1)
        .u8(8)
        .u8(r::F_FORWARD_TO | (2 << 4));
    w.u8(r::op(r::SUBSCRIBE, 1, false))
        .u8(6)
        .u8(7)
        .u8(r::F_RECV_FROM_OTHER | (2 << 4));
    w.u8(r::op(r::SUBSCRIBE, 1, false))
        .u8(6)
        .u8(8)
        .u8(r::F_RECV_FROM_SELF);
    w.u8(r::op(r::SUBSCRIBE, 1, false))
        .u8(6)
        .u8(9)
        .u8(r::F_NO_STR_NAME);
    w.u8(r::op(r::UNSUBSCRIBE, 2, false)).u8(4).u8(2).u8(0);
    w.u8(r::op(r::UNSUBSCRIBE, 2, false)).u8(13).u8(2).u8(0);
    w.u8(r::op(r::CLOSE, 3, false));
    w.u8(r::op(r::PUBLISH, 0, false)).u8(0).u8(2).u8(8).u8(0);
    w.u8(r::op(r::STALE, 3, false)).chunk(&[0xff, 0xff]);
    w.u8(r::op(r::STALE, 3, false)).chunk(&encoding(7));
    w.u8(r::op(r::DECODED, 1, false)).chunk(&encoding(12));
    w.u8(r::op(r::SHUTDOWN, 0, false));
    out.push(("compact-routing".into(), w.finish()));
    // Timers: a link that never negotiates, JWT links that expire, revocation.
    let mut w = Writer::new();
    w.u8(r::config_byte(false, Some(8), 0));
    w.u8(r::op(r::OPEN, 0, false));
    w.u8(r::op(r::OPEN_AUTH, 1, false)).u16(1500);
    w.u8(r::op(r::NEGOTIATE, 1, false));
    w.u8(r::op(r::OPEN_AUTH, 2, false)).u16(60_000);
    w.u8(r::op(r::NEGOTIATE, 2, true));
    w.u8(r::op(r::SUBSCRIBE, 1, false)).u8(1).u8(1).u8(0);
    w.u8(r::op(r::SUBSCRIBE, 2, false)).u8(1).u8(2).u8(0);
    w.u8(r::op(r::ADVANCE, 0, false)).u16(700);
    w.u8(r::op(r::PUBLISH, 2, false)).u8(1).u8(2).u8(8).u8(0);
    w.u8(r::op(r::ADVANCE, 0, false)).u16(1000);
    w.u8(r::op(r::PUBLISH, 1, false)).u8(1).u8(2).u8(8).u8(0);
    w.u8(r::op(r::REVOKE, 2, false));
    w.u8(r::op(r::OPEN_AUTH, 2, false)).u16(10);
    w.u8(r::op(r::ADVANCE, 0, false)).u16(20);
    w.u8(r::op(r::FRAME, 2, false)).chunk(&encoding(1));
    out.push(("timers-auth-revocation".into(), w.finish()));
    // The subscription limit, and garbage after a negotiation.
    let mut w = Writer::new();
    w.u8(r::config_byte(true, Some(1), 7));
    open_links(&mut w, 1, true);
    for n in 0..4u8 {
        w.u8(r::op(r::SUBSCRIBE, 0, false)).u8(n).u8(n + 1).u8(0);
    }
    w.u8(r::op(r::FRAME, 0, false)).chunk(&[0x0a, 0x05, 0x01]);
    out.push(("limit-and-garbage".into(), w.finish()));
    out
}

/// One seed op of a session replay, at a virtual time in ms.
enum Ev {
    Frame(Vec<u8>, u8),
    App(Vec<u8>),
}

/// The replay of endpoint `spec_index` of [`s::endpoints`] as operations: every frame
/// delivered to it at its arrival times, its script commands, time in between.
fn session_replay(spec_index: usize, resign: bool, cut: Option<usize>) -> Option<Vec<u8>> {
    let specs = s::endpoints();
    let spec = specs.get(spec_index)?;
    let file = VECTOR_INDEX.iter().position(|f| *f == spec.scenario)?;
    let doc = &s::vector_docs()[file];
    let labels: Vec<&str> = specs[spec.first..spec.first + spec.count]
        .iter()
        .map(|e| e.label.as_str())
        .collect();
    let index_of = |pred: &dyn Fn(&s::EndpointSpec) -> bool| -> u8 {
        specs[spec.first..spec.first + spec.count]
            .iter()
            .position(pred)
            .unwrap_or(0) as u8
    };
    let config = &doc["config"];
    let mut opts = 0u8;
    if config["mls"].as_bool() == Some(true) {
        opts |= s::app::OPT_MLS;
    }
    if !config["reliability"].is_null() {
        opts |= s::app::OPT_RELIABLE;
    }
    let mut events: Vec<(f64, u8, usize, Ev)> = Vec::new();
    for (i, f) in doc["frames"]
        .as_sequence()
        .into_iter()
        .flatten()
        .enumerate()
    {
        if f["to"].as_str() != Some(spec.label.as_str()) {
            continue;
        }
        let Some(bytes) = unhex(&f["hex"]) else {
            continue;
        };
        let from = f["from"].as_str().unwrap_or_default();
        let sender = labels.iter().position(|l| *l == from).unwrap_or(0) as u8;
        for at in f["arrivals_ms"].as_sequence().into_iter().flatten() {
            let at = at.as_f64().unwrap_or(0.0);
            events.push((at, 0, i, Ev::Frame(bytes.clone(), sender)));
        }
    }
    for (i, c) in doc["script"]
        .as_sequence()
        .into_iter()
        .flatten()
        .enumerate()
    {
        if c["endpoint"].as_str() != Some(spec.label.as_str()) {
            continue;
        }
        let at = c["at_ms"].as_f64().unwrap_or(0.0);
        let peer = c["peer"].as_str().map(name);
        let cmd = match c["command"].as_str().unwrap_or_default() {
            "open_p2p" => {
                let p = peer.clone()?;
                vec![s::app::OPEN_P2P, index_of(&|e| e.name == p), opts]
            }
            "create_group" => vec![s::app::CREATE_GROUP, 0, opts],
            "invite" => {
                let p = peer.clone()?;
                vec![s::app::INVITE, 0, index_of(&|e| e.name == p)]
            }
            "remove" => {
                let p = peer.clone()?;
                vec![s::app::REMOVE, 0, index_of(&|e| e.full_name == p)]
            }
            "publish" => {
                let payload = c["payload"].as_str().unwrap_or_default().as_bytes();
                let mut v = vec![s::app::PUBLISH, 0, 0];
                v.extend_from_slice(&(payload.len() as u16).to_le_bytes());
                v.extend_from_slice(payload);
                v
            }
            "close" => vec![s::app::CLOSE, 0, 0],
            _ => continue,
        };
        events.push((at, 1, i, Ev::App(cmd)));
    }
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    if let Some(n) = cut {
        events.truncate(n);
    }
    let mut w = Writer::new();
    w.u8(spec_index as u8);
    let mut now_ms = 0u64;
    for (at, _, _, ev) in events {
        let at = at.ceil() as u64;
        while at > now_ms {
            let step = (at - now_ms).min(u64::from(u16::MAX));
            w.u8(s::op(s::ADVANCE, 0)).u16(step as u16);
            now_ms += step;
        }
        match ev {
            Ev::Frame(bytes, sender) => {
                let is_command = pb::Message::decode(&bytes[..])
                    .ok()
                    .and_then(|m| {
                        slim_reference::session::wire::inbound(&m)
                            .ok()
                            .map(|i| i.kind)
                    })
                    .is_some_and(slim_proto::e2e::is_command);
                if resign && is_command {
                    w.u8(s::op(s::DELIVER_SIGNED, sender)).chunk(&bytes);
                } else {
                    w.u8(s::op(s::DELIVER, 0)).chunk(&bytes);
                }
            }
            Ev::App(cmd) => {
                w.u8(s::op(s::APP, 0)).bytes(&cmd);
            }
        }
    }
    w.u8(s::op(s::ADVANCE, 0x10)).u16(30);
    Some(w.finish())
}

/// The scenarios of [`s::VECTOR_FILES`], by name.
const VECTOR_INDEX: [&str; 2] = [s::VECTOR_FILES[0].0, s::VECTOR_FILES[1].0];

fn session() -> Vec<Seed> {
    let mut out = Vec::new();
    for (i, spec) in s::endpoints().iter().enumerate() {
        let label = format!("{}-{}", spec.scenario, spec.label);
        for cut in [Some(4), Some(12), None] {
            if let Some(data) = session_replay(i, false, cut) {
                let n = cut.map_or("all".to_string(), |c| c.to_string());
                out.push((format!("replay-{label}-{n}"), data));
            }
        }
        if let Some(data) = session_replay(i, true, Some(12)) {
            out.push((format!("resigned-{label}-12"), data));
        }
        // The application alone: a p2p session and a group to every peer, then time.
        let mut w = Writer::new();
        w.u8(i as u8);
        w.u8(s::op(s::APP, 0))
            .bytes(&[s::app::OPEN_P2P, 1, s::app::OPT_RELIABLE]);
        w.u8(s::op(s::APP, 0)).bytes(&[s::app::CREATE_GROUP, 1, 0]);
        w.u8(s::op(s::APP, 0)).bytes(&[s::app::INVITE, 1, 2]);
        w.u8(s::op(s::APP, 0))
            .bytes(&[s::app::PUBLISH, 1, 0])
            .chunk(b"hi");
        w.u8(s::op(s::ADVANCE, 0x10)).u16(3);
        w.u8(s::op(s::REVOKE, 1));
        w.u8(s::op(s::APP, 0)).bytes(&[s::app::REMOVE, 1, 1]);
        w.u8(s::op(s::APP, 0)).bytes(&[s::app::CLOSE, 0, 0]);
        w.u8(s::op(s::ADVANCE, 0x10)).u16(20);
        out.push((format!("app-{label}"), w.finish()));
    }
    out
}

fn reliable() -> Vec<Seed> {
    let msg = |w: &mut Writer, src: u8, delta: i8| {
        w.u8(rel::op(rel::MSG, src, false)).u8(delta as u8);
    };
    let abs = |w: &mut Writer, kind: u8, src: u8, id: u32| {
        w.u8(rel::op(kind, src, true)).u32(id);
    };
    let mut out = Vec::new();
    // In order, then a gap repaired by RTX, then a loss, then a give-up.
    let mut w = Writer::new();
    w.u8(0x0b).u8(0x10);
    for _ in 0..4 {
        msg(&mut w, 0, 0);
    }
    msg(&mut w, 0, 3);
    w.u8(rel::op(rel::RTX_OK, 0, false)).u8(0);
    w.u8(rel::op(rel::RTX_LOST, 0, false)).u8(0);
    msg(&mut w, 0, 5);
    w.u8(rel::op(rel::ADVANCE, 0, false)).u16(100);
    w.u8(rel::op(rel::DUPLICATE, 0, false)).u8(0xff);
    w.u8(rel::op(rel::ADVANCE, 0, false)).u16(5000);
    out.push(("gaps-rtx-loss".into(), w.finish()));
    // Several sources, a removal and a restart, unsequenced ids, wrap-around.
    let mut w = Writer::new();
    w.u8(0x02).u8(0x83);
    abs(&mut w, rel::MSG, 1, 1);
    abs(&mut w, rel::MSG, 2, 0x7fff_fffe);
    abs(&mut w, rel::MSG, 2, 0x7fff_ffff);
    abs(&mut w, rel::MSG, 2, 0);
    abs(&mut w, rel::MSG, 2, 1);
    abs(&mut w, rel::MSG, 3, 0x8000_0001);
    abs(&mut w, rel::DUPLICATE, 1, 1);
    w.u8(rel::op(rel::REMOVE, 1, false));
    abs(&mut w, rel::MSG, 1, 3);
    w.u8(rel::op(rel::ADVANCE, 0, false)).u16(30);
    abs(&mut w, rel::RTX_OK, 1, 1);
    abs(&mut w, rel::RTX_LOST, 1, 2);
    out.push(("sources-wrap-remove".into(), w.finish()));
    // A message far ahead (the whole gap opened at once), then time.
    let mut w = Writer::new();
    w.u8(0x00).u8(0x1f);
    msg(&mut w, 0, 0);
    msg(&mut w, 0, 32);
    w.u8(rel::op(rel::ADVANCE, 0, false)).u16(10);
    out.push(("max-gap".into(), w.finish()));
    out
}

fn jwt_seeds() -> Vec<Seed> {
    use serde_json::json;
    let mut out = Vec::new();
    let now = jwt::NOW;
    let good = json!({"sub": "alice", "jti": "t-1", "iss": jwt::ISSUER, "aud": jwt::AUDIENCE,
        "exp": now + 60, "nbf": now - 1});
    let claims = [
        ("valid", good.clone()),
        (
            "aud-list",
            json!({"sub": "bob", "iss": jwt::ISSUER, "aud": ["x", jwt::AUDIENCE], "exp": now + 1}),
        ),
        (
            "expired",
            json!({"sub": "alice", "iss": jwt::ISSUER, "aud": jwt::AUDIENCE, "exp": now}),
        ),
        (
            "not-yet",
            json!({"sub": "alice", "iss": jwt::ISSUER, "aud": jwt::AUDIENCE, "exp": now + 9, "nbf": now + 5}),
        ),
        (
            "no-sub",
            json!({"iss": jwt::ISSUER, "aud": jwt::AUDIENCE, "exp": now + 9}),
        ),
        (
            "revoked-sub",
            json!({"sub": "revoked-sub", "iss": jwt::ISSUER, "aud": jwt::AUDIENCE, "exp": now + 9}),
        ),
        (
            "jti-number",
            json!({"sub": "a", "jti": 5, "iss": jwt::ISSUER, "aud": jwt::AUDIENCE, "exp": now + 9}),
        ),
    ];
    for (label, c) in &claims {
        let text = c.to_string();
        for choice in 0..6u8 {
            let data = Writer::new()
                .u8(1)
                .u8(choice)
                .bytes(text.as_bytes())
                .finish();
            out.push((format!("signed-{label}-{choice}"), data));
            let token = jwt::sign_raw(choice, text.as_bytes());
            if choice < 3 {
                let raw = Writer::new().u8(0).bytes(token.as_bytes()).finish();
                out.push((format!("token-{label}-{choice}"), raw));
                let header = format!("Bearer {token}");
                let auth = Writer::new().u8(2).bytes(header.as_bytes()).finish();
                out.push((format!("header-{label}-{choice}"), auth));
            }
        }
    }
    out.push((
        "claims-not-json".into(),
        Writer::new().u8(1).u8(0).bytes(b"{\"sub\":").finish(),
    ));
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{}:{}", jwt::BASIC.0, jwt::BASIC.1)
        )
    );
    for (label, h) in [
        ("basic", basic.as_str()),
        ("bearer", &format!("bEaReR  {} ", jwt::BEARER)),
        ("empty", "Basic"),
    ] {
        out.push((
            format!("static-{label}"),
            Writer::new().u8(3).bytes(h.as_bytes()).finish(),
        ));
    }
    out.push((
        "jwks".into(),
        Writer::new().u8(4).bytes(jwt::jwks().as_bytes()).finish(),
    ));
    out.push((
        "jwks-bad".into(),
        Writer::new()
            .u8(4)
            .bytes(br#"{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"},{"kty":"RSA"}]}"#)
            .finish(),
    ));
    {
        use p256::pkcs8::{EncodePublicKey as _, LineEnding};
        if let Ok(pem) = jwt::es_key()
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
        {
            out.push((
                "pem".into(),
                Writer::new().u8(5).bytes(pem.as_bytes()).finish(),
            ));
        }
    }
    if let Ok(secret) = slim_proto::identity::SharedSecret::new(jwt::IDENTITY_SECRET) {
        if let Ok(t) = secret.issue("org/ns/app_abc", &[4; 65], [2; 12], now) {
            out.push((
                "identity-shared".into(),
                Writer::new().u8(6).bytes(t.as_bytes()).finish(),
            ));
        }
    }
    let key = slim_proto::identity::JwtKey::hs256(jwt::HS_SECRET);
    if let Ok(t) = key.issue("org/ns/app_abc", &[4; 65], now, 60) {
        out.push((
            "identity-jwt".into(),
            Writer::new().u8(6).bytes(t.as_bytes()).finish(),
        ));
    }
    out.push((
        "identity-id".into(),
        Writer::new().u8(6).bytes(b"org/ns/app_x").finish(),
    ));
    out
}

fn config() -> Vec<Seed> {
    let relay_yaml = [
        ("empty", ""),
        (
            "full",
            "listen: 127.0.0.1:46357\nnode_id: slim-relay-1\nrequire_header_mac: true\n\
             negotiation_timeout_ms: 5000\nqueue_capacity: 1024\n\
             max_subscriptions_per_connection: 10000\n",
        ),
        ("basic", "auth: {basic: {username: alice, password: s3cret}}\n"),
        ("bearer", "require_header_mac: false\nauth:\n  bearer:\n    token: my-token\n"),
        (
            "jwt-revocation",
            "auth: {jwt: {keys: [idp.pub.pem], jwks: keys.json, hs256_secret_file: hs.key, issuer: my-idp, audience: slim}}\nrevocation: {file: revoked.yaml}\n",
        ),
        ("zero-queue", "queue_capacity: 0\n"),
        ("typo", "listen: 127.0.0.1:1\nrequire_mac: false\n"),
        ("colon-user", "auth: {basic: {username: 'a:b', password: ''}}\n"),
        ("revocation-no-jwt", "auth: {bearer: {token: t}}\nrevocation: {file: r.yaml}\n"),
        ("anchors", "node_id: &n relay\nauth: {bearer: {token: *n}}\n"),
        ("ipv6", "listen: '[::1]:46357'\nnegotiation_timeout_ms: 18446744073709551615\n"),
    ];
    let revocations = [
        (
            "list",
            "revoked:\n- {jti: t-1}\n- {sub: alice}\n- {kid: k1}\n",
        ),
        ("empty-list", "revoked: []\n"),
        ("two-keys", "revoked:\n- {jti: a, sub: b}\n"),
        ("empty-value", "revoked:\n- {sub: ''}\n"),
    ];
    let mut out = Vec::new();
    for (label, text) in relay_yaml {
        out.push((
            format!("relay-{label}"),
            Writer::new().u8(0).bytes(text.as_bytes()).finish(),
        ));
    }
    for (label, text) in revocations {
        out.push((
            format!("revoked-{label}"),
            Writer::new().u8(1).bytes(text.as_bytes()).finish(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_has_seeds_from_the_vectors() {
        assert!(encodings().len() >= 20, "encodings.yaml not read");
        for t in crate::TARGETS {
            assert!(seeds(t.name).len() >= 3, "{} has too few seeds", t.name);
        }
        assert!(seeds("relay").len() > 40, "routing.yaml not read");
        assert_eq!(s::endpoints().len(), 5, "session vector endpoints not read");
    }
}
