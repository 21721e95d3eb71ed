//! The vectors are facts about SLIM, not about our code: name-hash, id and MAC vectors are
//! cross-checked against frames the real SLIM emits and accepts.
//!
//! The real node (slim-bindings 3.3.8) runs; the runner's raw client subscribes
//! `org/default/app` using the component hashes *read from vectors/names.yaml* (not computed)
//! and signs with the link key derived as `vectors/link.yaml` and `vectors/mac.yaml` specify. A
//! real SLIM app then opens a session to `org/default/app`: the SDK hashes the name itself. The
//! test requires that the node acks our signed Subscribe (it drops a wrong MAC), that the app's
//! discovery reaches us (so the SDK's hashes equal the vector hashes), that every hash in the
//! delivered header equals the vector value for its string, that the ids are carried as
//! id_0/id_1 with the wildcard as all ones, and that the node's MAC on the delivered frame
//! verifies under the vector procedure. Never skipped: without the wheel the test fails.

use std::process::{Command, Stdio};
use std::time::Duration;

use slim_conformance::client::{self, Event, Link, Target};
use slim_conformance::evidence::FrameLog;
use slim_proto::pb;

mod support;
use support::{start_real_node, venv, Node};

/// `component -> hash` for every valid component vector of vectors/names.yaml.
fn name_vectors() -> std::collections::BTreeMap<String, u64> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../vectors/names.yaml");
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).expect("names.yaml")).expect("yaml");
    let mut out = std::collections::BTreeMap::new();
    for v in doc["components"].as_sequence().expect("components") {
        if v["result"].as_str() == Some("valid") {
            let c = v["component"].as_str().expect("component").to_string();
            let h = u64::from_str_radix(v["hash"].as_str().expect("hash"), 16).expect("hex hash");
            out.entry(c).or_insert(h);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_id_and_mac_vectors_match_the_real_slim() {
    let hashes = name_vectors();
    let h = |s: &str| {
        *hashes
            .get(s)
            .unwrap_or_else(|| panic!("names.yaml has no vector for {s:?}"))
    };
    let (_node, url) = start_real_node();
    let target = Target {
        url: url.clone(),
        tls: None,
        authorization: None,
        strict_mac: false,
    };
    let log = FrameLog::new();
    let mut link = Link::connect(&target, "runner", &log)
        .await
        .expect("negotiate with the real node");
    assert!(
        link.mac.is_some(),
        "the real node answered with an X25519 key"
    );

    // Subscribe org/default/app (wildcard id) built from the vector hashes, signed.
    let dest = pb::Name {
        name: Some(pb::EncodedName {
            component_0: h("org"),
            component_1: h("default"),
            component_2: h("app"),
            name_id: Some(pb::NameId {
                id_0: u64::MAX,
                id_1: u64::MAX,
            }),
        }),
        str_name: Some(pb::StringName {
            str_component_0: "org".into(),
            str_component_1: "default".into(),
            str_component_2: "app".into(),
        }),
    };
    let mut sub = client::subscribe(
        &slim_proto::names::SlimName::new("org", "default", "app"),
        4242,
    );
    if let Some(hdr) = slim_proto::validate::header_mut(&mut sub) {
        hdr.source = Some(dest.clone());
        hdr.destination = Some(dest.clone());
    }
    link.send(sub).await.expect("send");
    let ack = link
        .expect_ack(4242, Duration::from_secs(5))
        .await
        .expect("the real node acks our signed Subscribe");
    assert!(ack.success, "ack: {ack:?}");

    // A real SLIM app opens a session to org/default/app.
    let py = venv::python();
    let mut app = Node(
        Command::new(&py)
            .arg(venv::interop_dir().join("crosscheck_discovery.py"))
            .args([
                "--node",
                &url,
                "--me",
                "agntcy/ns/alice",
                "--dest",
                "org/default/app",
            ])
            .current_dir(venv::interop_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start crosscheck_discovery.py"),
    );
    let _ = &mut app;
    let msg = loop {
        match link.recv(Duration::from_secs(30)).await {
            Event::Message(m) if matches!(m.message_type, Some(pb::message::MessageType::Publish(_))) => break m,
            Event::Message(_) => continue,
            other => panic!(
                "the real app's session discovery to org/default/app never reached the subscription built from vectors/names.yaml: {}",
                client::event_text(&other)
            ),
        }
    };
    let hdr = slim_proto::validate::header(&msg).expect("header").clone();

    // Name vectors: the SDK's hashes of both names equal the vector hashes.
    let d = hdr
        .destination
        .as_ref()
        .and_then(|n| n.name.as_ref())
        .expect("hashed destination");
    assert_eq!(
        (d.component_0, d.component_1, d.component_2),
        (h("org"), h("default"), h("app"))
    );
    let s = hdr
        .source
        .as_ref()
        .and_then(|n| n.name.as_ref())
        .expect("hashed source");
    assert_eq!(
        (s.component_0, s.component_1, s.component_2),
        (h("agntcy"), h("ns"), h("alice"))
    );
    // Id vectors: the discovery goes to the wildcard (all ones, or no name_id) and the app's own
    // id is a specific one, carried in two halves.
    assert!(
        d.name_id
            .as_ref()
            .is_none_or(|i| i.id_0 == u64::MAX && i.id_1 == u64::MAX),
        "destination id {:?}",
        d.name_id
    );
    let sid = s.name_id.as_ref().expect("the app's source carries its id");
    assert_ne!(
        (sid.id_0, sid.id_1),
        (u64::MAX, u64::MAX),
        "the app's own id is specific"
    );
    // MAC vectors: the node signed the frame with our link key, over the vector preimage.
    let mac = link.mac.as_ref().expect("link key");
    mac.verify(&hdr)
        .expect("the real node's header MAC verifies under the vector procedure");
    println!(
        "cross-check: real SLIM hashed org/default/app and agntcy/ns/alice as vectors/names.yaml says; \
         app id = {}; node MAC verified",
        slim_proto::names::id_text(slim_proto::names::join_id(sid.id_0, sid.id_1))
    );
}
