//! The driver shim (`client::driver`) driven over gRPC as the conformance runner drives it: a
//! relay and a [`DriverServer`] in-process on 127.0.0.1 ephemeral ports, both stopped at the
//! end (and when dropped, should a test fail). No fixed sleeps: every wait is on an event or a
//! call, with a bound.

use std::time::Duration;

use slim_proto::driver::driver_client::DriverClient;
use slim_proto::driver::{self as d, create_app_request::Identity, event::Kind};
use slim_reference::client::driver::DriverServer;
use slim_reference::config::ServerConfig;
use slim_reference::server::{spawn, RelayHandle};
use tonic::transport::Channel;
use tonic::Streaming;

const SECRET: &str = "a-shared-secret-of-at-least-32-bytes!!";
const JWT_SECRET: &str = "jwt-hs256-deployment-key-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(20);
const TIMEOUT_MS: u32 = 15_000;

async fn relay() -> RelayHandle {
    spawn(ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..ServerConfig::default()
    })
    .await
    .expect("relay starts")
}

async fn driver() -> (DriverServer, DriverClient<Channel>) {
    let server = DriverServer::start("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("driver starts");
    let client = DriverClient::connect(format!("http://{}", server.local_addr()))
        .await
        .expect("driver reachable");
    (server, client)
}

/// Creates an app with the shared secret; returns its id and full name.
async fn app(c: &mut DriverClient<Channel>, relay: &RelayHandle, name: &str) -> (String, String) {
    app_with(c, relay, name, Identity::SharedSecret(SECRET.into())).await
}

/// Creates an app with `identity`; returns its id and full name.
async fn app_with(
    c: &mut DriverClient<Channel>,
    relay: &RelayHandle,
    name: &str,
    identity: Identity,
) -> (String, String) {
    let r = c
        .create_app(d::CreateAppRequest {
            name: name.into(),
            node_url: relay.url(),
            identity: Some(identity),
            seed: Vec::new().into(),
            timeout_ms: TIMEOUT_MS,
        })
        .await
        .expect("app created")
        .into_inner();
    assert!(r.full_name.starts_with(name), "{}", r.full_name);
    (r.app_id, r.full_name)
}

async fn events(c: &mut DriverClient<Channel>, app: &str) -> Streaming<d::Event> {
    c.events(d::AppRef { app_id: app.into() })
        .await
        .expect("events stream")
        .into_inner()
}

/// The next event matching `want`, within [`WAIT`]; the others are returned in `skipped`.
async fn next_matching(
    s: &mut Streaming<d::Event>,
    what: &str,
    want: impl Fn(&Kind) -> bool,
    skipped: &mut Vec<Kind>,
) -> Kind {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, s.message()).await {
            Err(_) => panic!("no {what} within {WAIT:?}; saw {skipped:?}"),
            Ok(Err(e)) => panic!("events stream failed waiting for {what}: {e}"),
            Ok(Ok(None)) => panic!("events stream ended waiting for {what}; saw {skipped:?}"),
            Ok(Ok(Some(d::Event { kind: Some(k) }))) if want(&k) => return k,
            Ok(Ok(Some(d::Event { kind: Some(k) }))) => skipped.push(k),
            Ok(Ok(Some(_))) => {}
        }
    }
}

fn session_ref(app: &str, session: &str) -> d::SessionRef {
    d::SessionRef {
        app_id: app.into(),
        session_id: session.into(),
        timeout_ms: TIMEOUT_MS,
    }
}

#[tokio::test]
async fn p2p_reliable_mls_publish_waits_and_delivers_in_order_once() {
    let relay = relay().await;
    let (server, mut c) = driver().await;
    let (alice, _) = app(&mut c, &relay, "org/ns/alice").await;
    let (bob, bob_name) = app(&mut c, &relay, "org/ns/bob").await;
    let mut bob_events = events(&mut c, &bob).await;

    let (opened, bob_session) = open_reliable_mls_p2p(&mut c, &alice, &bob).await;
    assert_eq!(opened.peer, bob_name);
    assert_eq!(bob_session.wire_session_id, opened.wire_session_id);

    let payloads: Vec<bytes::Bytes> = (0..20)
        .map(|i| bytes::Bytes::from(format!("m{i}")))
        .collect();
    let r = c
        .publish(d::PublishRequest {
            app_id: alice.clone(),
            session_id: opened.session_id.clone(),
            payloads: payloads.clone(),
            wait: true,
            timeout_ms: TIMEOUT_MS,
        })
        .await
        .expect("published")
        .into_inner();
    assert_eq!(r.outcomes.len(), 20);
    for o in &r.outcomes {
        assert_eq!(
            o.status,
            d::publish_outcome::Status::Ok as i32,
            "{}",
            o.reason
        );
    }

    // The receiver saw each payload once, in order; delivered means acked, so all are there.
    let mut skipped = Vec::new();
    let mut got = Vec::new();
    while got.len() < 20 {
        let k = next_matching(
            &mut bob_events,
            "message",
            |k| matches!(k, Kind::Message(_)),
            &mut skipped,
        )
        .await;
        if let Kind::Message(m) = k {
            assert_eq!(m.session_id, bob_session.session_id);
            got.push(m.payload);
        }
    }
    assert_eq!(got, payloads);
    // Nothing more: no duplicate after the 20th (checked against a marker sent after them).
    c.publish(d::PublishRequest {
        app_id: alice.clone(),
        session_id: opened.session_id.clone(),
        payloads: vec![bytes::Bytes::from_static(b"end")],
        wait: true,
        timeout_ms: TIMEOUT_MS,
    })
    .await
    .expect("marker");
    let k = next_matching(
        &mut bob_events,
        "message",
        |k| matches!(k, Kind::Message(_)),
        &mut skipped,
    )
    .await;
    assert!(matches!(k, Kind::Message(m) if m.payload.as_ref() == b"end"));

    // A stream opened late replays everything since creation.
    let mut late = events(&mut c, &bob).await;
    let mut skipped = Vec::new();
    next_matching(
        &mut late,
        "replayed session_opened",
        |k| matches!(k, Kind::SessionOpened(o) if !o.initiator),
        &mut skipped,
    )
    .await;

    server.shutdown().await;
    relay.shutdown().await.expect("relay stops");
}

#[tokio::test]
async fn group_with_mls_agrees_on_state_and_removal_moves_the_epoch() {
    let relay = relay().await;
    let (server, mut c) = driver().await;
    let (m, m_name) = app(&mut c, &relay, "org/ns/mod").await;
    let (p1, p1_name) = app(&mut c, &relay, "org/ns/p1").await;
    let (p2, p2_name) = app(&mut c, &relay, "org/ns/p2").await;
    let mut p2_events = events(&mut c, &p2).await;

    let g = c
        .create_session(d::CreateSessionRequest {
            app_id: m.clone(),
            r#type: d::SessionType::Group as i32,
            peer: "org/ns/chan".into(),
            reliability: Some(d::Reliability::default()),
            mls: true,
            timeout_ms: TIMEOUT_MS,
        })
        .await
        .expect("group created")
        .into_inner();
    for who in ["org/ns/p1", "org/ns/p2"] {
        c.invite(d::MemberRequest {
            app_id: m.clone(),
            session_id: g.session_id.clone(),
            name: who.into(),
            timeout_ms: TIMEOUT_MS,
        })
        .await
        .unwrap_or_else(|e| panic!("invite {who}: {e}"));
    }
    let mut sessions = Vec::new();
    for p in [&p1, &p2] {
        let s = c
            .await_session(d::AwaitSessionRequest {
                app_id: p.clone(),
                timeout_ms: TIMEOUT_MS,
            })
            .await
            .expect("invited session")
            .into_inner();
        assert_eq!(s.r#type, d::SessionType::Group as i32);
        sessions.push(s.session_id);
    }
    let mut everyone = vec![m_name.clone(), p1_name.clone(), p2_name.clone()];
    everyone.sort();

    // p1 joined before p2's commit: it may still be applying it when Invite returned (the
    // moderator waits for its ack, so by now it has). All three agree.
    let views = [
        (m.clone(), g.session_id.clone()),
        (p1.clone(), sessions[0].clone()),
        (p2.clone(), sessions[1].clone()),
    ];
    let mut states = Vec::new();
    for (a, s) in &views {
        states.push(
            c.state_auth(session_ref(a, s))
                .await
                .expect("state auth")
                .into_inner(),
        );
    }
    for st in &states {
        assert_eq!(st.epoch, states[0].epoch);
        assert_eq!(st.epoch_authenticator, states[0].epoch_authenticator);
        assert!(!st.epoch_authenticator.is_empty());
        assert_eq!(st.members, everyone);
    }
    let members = c
        .members(session_ref(&p1, &sessions[0]))
        .await
        .expect("members")
        .into_inner();
    assert_eq!(members.members, everyone);

    c.remove(d::MemberRequest {
        app_id: m.clone(),
        session_id: g.session_id.clone(),
        name: p2_name.clone(),
        timeout_ms: TIMEOUT_MS,
    })
    .await
    .expect("removed");
    let mut skipped = Vec::new();
    next_matching(
        &mut p2_events,
        "removed or session_closed",
        |k| matches!(k, Kind::Removed(_) | Kind::SessionClosed(_)),
        &mut skipped,
    )
    .await;
    let after_m = c
        .state_auth(session_ref(&m, &g.session_id))
        .await
        .expect("moderator state")
        .into_inner();
    let after_p1 = c
        .state_auth(session_ref(&p1, &sessions[0]))
        .await
        .expect("p1 state")
        .into_inner();
    assert!(after_m.epoch > states[0].epoch);
    assert_eq!(after_m.epoch, after_p1.epoch);
    assert_eq!(after_m.epoch_authenticator, after_p1.epoch_authenticator);
    let mut two = vec![m_name, p1_name];
    two.sort();
    assert_eq!(after_m.members, two);
    assert_eq!(after_p1.members, two);

    server.shutdown().await;
    relay.shutdown().await.expect("relay stops");
}

#[tokio::test]
async fn jwt_hs256_apps_open_a_p2p_mls_session_and_exchange_messages() {
    let relay = relay().await;
    let (server, mut c) = driver().await;
    let caps = c
        .get_capabilities(d::GetCapabilitiesRequest {})
        .await
        .expect("capabilities")
        .into_inner();
    assert!(caps.jwt_identity);
    let jwt = || Identity::JwtHs256Secret(JWT_SECRET.into());
    let (alice, alice_name) = app_with(&mut c, &relay, "org/ns/alice", jwt()).await;
    let (bob, bob_name) = app_with(&mut c, &relay, "org/ns/bob", jwt()).await;
    let mut alice_events = events(&mut c, &alice).await;
    let mut bob_events = events(&mut c, &bob).await;

    let (opened, bob_session) = open_reliable_mls_p2p(&mut c, &alice, &bob).await;
    assert_eq!(opened.peer, bob_name);
    assert_eq!(bob_session.peer, alice_name);

    // Both ways, each acknowledged and received from the right sender.
    for (from, session, to_events, sender, payload) in [
        (
            &alice,
            &opened.session_id,
            &mut bob_events,
            &alice_name,
            "to bob",
        ),
        (
            &bob,
            &bob_session.session_id,
            &mut alice_events,
            &bob_name,
            "to alice",
        ),
    ] {
        let r = c
            .publish(d::PublishRequest {
                app_id: from.clone(),
                session_id: session.clone(),
                payloads: vec![bytes::Bytes::from(payload)],
                wait: true,
                timeout_ms: TIMEOUT_MS,
            })
            .await
            .expect("published")
            .into_inner();
        assert_eq!(r.outcomes[0].status, d::publish_outcome::Status::Ok as i32);
        let mut skipped = Vec::new();
        let k = next_matching(
            to_events,
            "message",
            |k| matches!(k, Kind::Message(_)),
            &mut skipped,
        )
        .await;
        assert!(
            matches!(&k, Kind::Message(m) if m.payload.as_ref() == payload.as_bytes() && &m.sender == sender),
            "{k:?}"
        );
    }

    // A JWT app and a shared-secret app cannot verify each other: no session between them.
    let (carol, _) = app(&mut c, &relay, "org/ns/carol").await;
    let e = c
        .create_session(d::CreateSessionRequest {
            app_id: carol,
            r#type: d::SessionType::PointToPoint as i32,
            peer: "org/ns/bob".into(),
            reliability: None,
            mls: true,
            timeout_ms: 3_000,
        })
        .await
        .expect_err("no session across identity kinds");
    assert_ne!(e.code(), tonic::Code::Ok);

    // A pre-issued token stays unsupported, and says why.
    let e = c
        .create_app(d::CreateAppRequest {
            name: "org/ns/dave".into(),
            node_url: relay.url(),
            identity: Some(Identity::Jwt(d::Jwt::default())),
            seed: Vec::new().into(),
            timeout_ms: TIMEOUT_MS,
        })
        .await
        .expect_err("pre-issued JWT unsupported");
    assert_eq!(e.code(), tonic::Code::Unimplemented, "{e}");
    assert!(e.message().contains("pre-issued"), "{e}");
    server.shutdown().await;
    relay.shutdown().await.expect("relay stops");
}

#[tokio::test]
async fn unsupported_and_unknown_calls_have_their_codes() {
    let relay = relay().await;
    let (server, mut c) = driver().await;
    let caps = c
        .get_capabilities(d::GetCapabilitiesRequest {})
        .await
        .expect("capabilities")
        .into_inner();
    assert_eq!(caps.driver_version, "1");
    assert!(caps.implementation.starts_with("slim-reference "));
    assert!(caps.revocation && !caps.key_rotation && caps.state_auth);

    let e = c
        .rotate_keys(session_ref("app-1", "s-1"))
        .await
        .expect_err("key rotation unsupported");
    assert_eq!(e.code(), tonic::Code::Unimplemented, "{e}");
    let e = c
        .revoke_identity(d::RevokeRequest {
            app_id: "app-404".into(),
            target: Some(d::revoke_request::Target::Subject("x".into())),
        })
        .await
        .expect_err("no such app");
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");

    let e = c
        .members(session_ref("app-404", "s-1"))
        .await
        .expect_err("no such app");
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");

    let (a, _) = app(&mut c, &relay, "org/ns/solo").await;
    // A revocation names a value; none, or an empty one, is the runner's mistake.
    for target in [
        None,
        Some(d::revoke_request::Target::Subject(String::new())),
    ] {
        let e = c
            .revoke_identity(d::RevokeRequest {
                app_id: a.clone(),
                target,
            })
            .await
            .expect_err("no value to revoke");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    }
    let e = c
        .members(session_ref(&a, "s-404"))
        .await
        .expect_err("no such session");
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
    let e = c
        .create_session(d::CreateSessionRequest {
            app_id: a.clone(),
            r#type: d::SessionType::PointToPoint as i32,
            peer: "org/oops".into(),
            reliability: None,
            mls: false,
            timeout_ms: TIMEOUT_MS,
        })
        .await
        .expect_err("bad name");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    assert!(e.message().contains("org/oops"), "{e}");

    // A wait that cannot end in time answers DEADLINE_EXCEEDED within timeout_ms.
    let g = c
        .create_session(d::CreateSessionRequest {
            app_id: a.clone(),
            r#type: d::SessionType::Group as i32,
            peer: "org/ns/lonely".into(),
            reliability: None,
            mls: false,
            timeout_ms: TIMEOUT_MS,
        })
        .await
        .expect("group")
        .into_inner();
    let started = std::time::Instant::now();
    let e = c
        .invite(d::MemberRequest {
            app_id: a.clone(),
            session_id: g.session_id.clone(),
            name: "org/ns/nobody".into(),
            timeout_ms: 300,
        })
        .await
        .expect_err("nobody answers");
    assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e}");
    assert!(started.elapsed() < WAIT, "{:?}", started.elapsed());
    let e = c
        .state_auth(session_ref(&a, &g.session_id))
        .await
        .expect_err("no MLS");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
    assert_eq!(e.message(), "session has no MLS");

    // Free ends the app's events stream and its id.
    let mut s = events(&mut c, &a).await;
    c.free(d::AppRef { app_id: a.clone() })
        .await
        .expect("freed");
    let end = tokio::time::timeout(WAIT, async {
        loop {
            match s.message().await {
                Ok(Some(_)) => continue,
                other => return other.map(|_| ()),
            }
        }
    })
    .await
    .expect("stream ends after free");
    assert!(end.is_ok(), "{end:?}");
    let e = c.members(session_ref(&a, "s-1")).await.expect_err("freed");
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");

    server.shutdown().await;
    relay.shutdown().await.expect("relay stops");
}

/// Kills the child when dropped, so a failing test never leaves it running.
struct Child(tokio::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

#[tokio::test]
async fn slim_client_driver_prints_its_address_and_serves() {
    use tokio::io::AsyncBufReadExt;
    let mut child = Child(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_slim-client"))
            .args(["driver", "--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("slim-client starts"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("a line in time")
        .expect("stdout readable")
        .expect("one line");
    let addr = line
        .strip_prefix("driver listening on ")
        .unwrap_or_else(|| panic!("unexpected line {line:?}"));
    assert!(addr.starts_with("127.0.0.1:"), "{line}");
    let mut c = DriverClient::connect(format!("http://{addr}"))
        .await
        .expect("driver reachable");
    let caps = c
        .get_capabilities(d::GetCapabilitiesRequest {})
        .await
        .expect("capabilities")
        .into_inner();
    assert_eq!(caps.driver_version, "1");
    child.0.start_kill().expect("kill");
    tokio::time::timeout(WAIT, child.0.wait())
        .await
        .expect("exits in time")
        .expect("wait");
}

/// Alice opens a reliable MLS point-to-point session to org/ns/bob while Bob awaits it; returns
/// both sides' answers.
async fn open_reliable_mls_p2p(
    c: &mut DriverClient<Channel>,
    alice: &str,
    bob: &str,
) -> (d::SessionResponse, d::SessionResponse) {
    let mut c2 = c.clone();
    let bob2 = bob.to_string();
    let awaited = tokio::spawn(async move {
        c2.await_session(d::AwaitSessionRequest {
            app_id: bob2,
            timeout_ms: TIMEOUT_MS,
        })
        .await
    });
    let opened = c
        .create_session(d::CreateSessionRequest {
            app_id: alice.to_string(),
            r#type: d::SessionType::PointToPoint as i32,
            peer: "org/ns/bob".into(),
            reliability: Some(d::Reliability {
                interval_ms: 500,
                max_retries: 10,
            }),
            mls: true,
            timeout_ms: TIMEOUT_MS,
        })
        .await
        .expect("session opened")
        .into_inner();
    let bob_session = awaited
        .await
        .expect("task")
        .expect("bob's session")
        .into_inner();
    (opened, bob_session)
}
