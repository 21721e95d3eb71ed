//! Identity and end-to-end signatures cross-checked with the real SLIM SDK (slim-bindings).
//!
//! Our relay runs in-process; a raw client (our code, `support::RawLink`) subscribes
//! `org/default/app`; a real SLIM app (`tests/interop/discover.py`) opens a point-to-point
//! session with MLS on to that name. Its identity is, per test, a shared secret, a JWT signed
//! HS256, or a JWT signed ES256 (PKCS#8 PEM key we generate); our side holds the same trust.
//! Then:
//!
//! 1. Real → ours: the app's DISCOVERY_REQUEST reaches the raw client, and *our* code verifies
//!    its identity token (shared secret or JWT key), its `e2e_header_sig` over our `header_aad`, and
//!    its `slim-payload-sig`; its source name id equals our `app_id(sub)`. Controls: the token
//!    fails under other credentials, the signature fails once an AAD-covered field is changed.
//! 2. Ours → real: with MLS on, the SDK ignores a DISCOVERY_REPLY it cannot verify. We answer
//!    first with replies it must reject (token from credentials it does not trust; right token but
//!    metadata added after signing), and check it does *not* proceed; then with a reply signed by
//!    our code with a token issued by our code, and check that it proceeds with a JOIN_REQUEST
//!    to the name id our reply claimed, which our code verifies too.
//!
//! Never skipped: without the wheel the test fails and says why.

mod support;
#[path = "support/venv.rs"]
mod venv;

use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use slim_proto::e2e::{self, PayloadSignature};
use slim_proto::identity::{app_id, Credentials, IdentityKey, JwtKey, SharedSecret};
use slim_proto::names::{encoded_id, SlimName, NULL_ID};
use slim_proto::pb::{self, message::MessageType};
use slim_reference::config::ServerConfig;
use slim_reference::server::spawn;
use support::RawLink;

/// The shared secret (or HS256 key) the real app is created with (loopback test only).
const SECRET: &str = "identity-crosscheck-shared-secret-0123456789abcdef";
/// Another secret, for tokens the app must reject.
const OTHER_SECRET: &str = "a-different-shared-secret-nobody-configured-0000";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn session(msg: &pb::Message) -> Option<&pb::SessionHeader> {
    match &msg.message_type {
        Some(MessageType::Publish(p)) => p.session.as_ref(),
        _ => None,
    }
}

fn msg_type(msg: &pb::Message) -> Option<pb::SessionMessageType> {
    session(msg).map(|s| s.session_message_type())
}

fn header(msg: &pb::Message) -> &pb::SlimHeader {
    slim_proto::validate::header(msg).expect("a routed header")
}

/// Next Publish within `within`, or `None`; non-Publish frames are skipped.
async fn next_publish(link: &mut RawLink, within: Duration) -> Option<pb::Message> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match link.try_recv(left).await? {
            Ok(m) if matches!(m.message_type, Some(MessageType::Publish(_))) => return Some(m),
            Ok(_) => continue,
            Err(s) => panic!("the raw client's stream ended: {s:?}"),
        }
    }
}

/// Our DISCOVERY_REPLY to `req`, as the SDK builds one (session_controller.rs
/// `handle_channel_discovery_message`): source = the request's destination with our app id,
/// destination = the request's source, same session type, session id and message id, empty
/// discovery_reply payload; identity = `token`, signed with `key`.
fn discovery_reply(req: &pb::Message, our_id: u128, token: &str, key: &IdentityKey) -> pb::Message {
    let h = header(req);
    let s = session(req).expect("session header");
    let mut source = h.destination.clone().expect("request destination");
    if let Some(e) = source.name.as_mut() {
        let (id_0, id_1) = slim_proto::names::split_id(our_id);
        e.name_id = Some(pb::NameId { id_0, id_1 });
    }
    let mut msg = slim_proto::messages::wrap(MessageType::Publish(pb::Publish {
        header: Some(pb::SlimHeader {
            source: Some(source),
            destination: h.source.clone(),
            identity: token.to_string(),
            fanout: 1,
            ttl: slim_proto::DEFAULT_TTL,
            version: slim_proto::SLIM_VERSION.into(),
            ..Default::default()
        }),
        session: Some(pb::SessionHeader {
            session_type: s.session_type,
            session_message_type: pb::SessionMessageType::DiscoveryReply as i32,
            session_id: s.session_id,
            message_id: s.message_id,
        }),
        msg: Some(pb::Content {
            content_type: Some(pb::content::ContentType::CommandPayload(
                pb::CommandPayload {
                    command_payload_type: Some(
                        pb::command_payload::CommandPayloadType::DiscoveryReply(
                            pb::DiscoveryReplyPayload {},
                        ),
                    ),
                },
            )),
        }),
    }));
    e2e::sign_command(&mut msg, key).expect("a command with both headers signs");
    msg
}

/// Reads Publishes for `within` after a reply the app must reject; fails on a JOIN_REQUEST.
async fn expect_no_join(link: &mut RawLink, within: Duration, what: &str) -> usize {
    let deadline = Instant::now() + within;
    let mut retransmissions = 0;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Some(m) = next_publish(link, left).await else {
            break;
        };
        match msg_type(&m) {
            Some(pb::SessionMessageType::JoinRequest) => panic!(
                "the real SDK accepted a DISCOVERY_REPLY it must reject ({what}): it sent a JOIN_REQUEST"
            ),
            Some(pb::SessionMessageType::DiscoveryRequest) => retransmissions += 1,
            other => panic!("unexpected message after {what}: {other:?}"),
        }
    }
    retransmissions
}

/// Serialises the scenarios: they share 2 cores and one venv.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One identity setup: the app's command-line identity, our credentials (the same trust as the
/// app's), foreign credentials the app must not trust, and our own `sub`.
struct Setup {
    label: &'static str,
    app_args: Vec<String>,
    ours: Credentials,
    foreign: Credentials,
    our_sub: String,
    /// What the app's verified `sub` must be (`None`: the SDK's `<base>_<8 alnum>`).
    app_sub: Option<&'static str>,
}

async fn run(setup: Setup) {
    let _serial = SERIAL.lock().await;
    let py = venv::python();
    let relay = spawn(ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..ServerConfig::default()
    })
    .await
    .expect("relay starts");
    let url = relay.url();
    let label = setup.label;

    let mut rng = rand_core::OsRng;
    let our_key = IdentityKey::generate(&mut rng);
    let our_id = app_id(&setup.our_sub);

    let mut link = RawLink::connect(&url).await;
    let dest = SlimName::new("org", "default", "app").with_id(our_id);
    let ack = link.subscribe(&dest, 4242).await;
    assert!(ack.success, "relay acks our subscription: {ack:?}");

    // The SDK's own log, for diagnosis when something below fails.
    let log_path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("identity_real_slim.{label}.app.log"));
    println!("[{label}] real app log: {}", log_path.display());
    let log = std::fs::File::create(&log_path).expect("create the app log");
    let mut app = tokio::process::Command::new(&py)
        .arg(venv::interop_dir().join("discover.py"))
        .args([
            "--node",
            &url,
            "--me",
            "agntcy/ns/alice",
            "--dest",
            "org/default/app",
            "--wait",
            "30",
        ])
        .args(&setup.app_args)
        .current_dir(venv::interop_dir())
        .stdout(Stdio::from(log.try_clone().expect("clone the log handle")))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("start discover.py");

    // 1. Real -> ours: the app's DISCOVERY_REQUEST.
    let req = next_publish(&mut link, Duration::from_secs(60))
        .await
        .unwrap_or_else(|| {
            panic!(
                "[{label}] the real app's DISCOVERY_REQUEST did not reach our subscription within 60 s (see {})",
                log_path.display()
            )
        });
    assert_eq!(
        msg_type(&req),
        Some(pb::SessionMessageType::DiscoveryRequest),
        "first session message: {req:?}"
    );
    let h = header(&req).clone();
    let claims = setup.ours.verify(&h.identity, now()).unwrap_or_else(|e| {
        panic!(
            "[{label}] the real app's token must verify with our code: {e}\ntoken: {}",
            h.identity
        )
    });
    match setup.app_sub {
        Some(sub) => assert_eq!(claims.sub, sub, "JWT sub is the configured subject"),
        None => {
            let (base, suffix) = claims
                .sub
                .rsplit_once('_')
                .expect("SDK id = <base>_<suffix>");
            assert_eq!(base, "agntcy/ns/alice", "sub {:?}", claims.sub);
            assert!(
                suffix.len() == 8 && suffix.chars().all(|c| c.is_ascii_alphanumeric()),
                "SDK id suffix is 8 alphanumerics: {:?}",
                claims.sub
            );
        }
    }
    assert_eq!(claims.exp, claims.iat + 3600, "valid 3600 s");
    assert_eq!(claims.pubkey.len(), 65, "uncompressed P-256 point");
    assert_eq!(claims.pubkey[0], 0x04, "uncompressed SEC1 tag");
    assert!(
        setup.foreign.verify(&h.identity, now()).is_err(),
        "control: the real token must not verify with credentials the app does not share"
    );
    let sig_len = h.e2e_header_sig.as_ref().map_or(0, |s| s.len());
    assert_eq!(
        e2e::verify_command(&req, &claims.pubkey),
        Ok(PayloadSignature::Verified),
        "[{label}] our header_aad and payload_signing_input reproduce what the real SDK signed"
    );
    let src = h
        .source
        .as_ref()
        .and_then(|n| n.name.as_ref())
        .expect("source");
    assert_eq!(
        encoded_id(src),
        app_id(&claims.sub),
        "the app's name id is app_id(sub)"
    );
    let dst = h
        .destination
        .as_ref()
        .and_then(|n| n.name.as_ref())
        .expect("destination");
    assert_eq!(
        encoded_id(dst),
        NULL_ID,
        "discovery goes to the wildcard id"
    );
    let mut tampered = req.clone();
    if let Some(MessageType::Publish(p)) = &mut tampered.message_type {
        if let Some(s) = p.session.as_mut() {
            s.session_id ^= 1;
        }
    }
    assert!(
        matches!(
            e2e::verify_command(&tampered, &claims.pubkey),
            Err(e2e::E2eError::HeaderSig(_))
        ),
        "control: changing an AAD-covered field breaks the real signature"
    );

    // 2. Ours -> real. First two replies the SDK must reject.
    let started = Instant::now();
    let bad_token = setup
        .foreign
        .issue(&setup.our_sub, &our_key.public_bytes(), now(), &mut rng)
        .expect("issue");
    link.send(discovery_reply(&req, our_id, &bad_token, &our_key))
        .await;
    let rtx_a = expect_no_join(
        &mut link,
        Duration::from_millis(1500),
        "token from untrusted credentials",
    )
    .await;

    let token = setup
        .ours
        .issue(&setup.our_sub, &our_key.public_bytes(), now(), &mut rng)
        .expect("issue");
    let mut altered = discovery_reply(&req, our_id, &token, &our_key);
    altered
        .metadata
        .insert("x-added-after-signing".into(), "1".into());
    link.send(altered).await;
    let rtx_b = expect_no_join(
        &mut link,
        Duration::from_millis(1500),
        "metadata added after signing",
    )
    .await;

    // Then a correct one: token and signatures by our code.
    let token = setup
        .ours
        .issue(&setup.our_sub, &our_key.public_bytes(), now(), &mut rng)
        .expect("issue");
    let sent_at = Instant::now();
    link.send(discovery_reply(&req, our_id, &token, &our_key))
        .await;
    let join = loop {
        let m = next_publish(&mut link, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| {
                panic!(
                    "[{label}] the real SDK did not send a JOIN_REQUEST within 5 s of our signed DISCOVERY_REPLY (see {})",
                    log_path.display()
                )
            });
        match msg_type(&m) {
            Some(pb::SessionMessageType::JoinRequest) => break m,
            Some(pb::SessionMessageType::DiscoveryRequest) => continue, // a retransmission in flight
            other => panic!("expected a JOIN_REQUEST, got {other:?}"),
        }
    };
    let join_ms = sent_at.elapsed().as_millis();
    let jh = header(&join);
    let jdst = jh
        .destination
        .as_ref()
        .and_then(|n| n.name.as_ref())
        .expect("join destination");
    assert_eq!(
        encoded_id(jdst),
        our_id,
        "JOIN_REQUEST goes to the name id our reply claimed"
    );
    assert_eq!(
        session(&join).map(|s| s.session_id),
        session(&req).map(|s| s.session_id),
        "same session"
    );
    let jclaims = setup
        .ours
        .verify(&jh.identity, now())
        .expect("join token verifies");
    assert_eq!(jclaims.sub, claims.sub, "same app identity");
    assert_eq!(
        e2e::verify_command(&join, &jclaims.pubkey),
        Ok(PayloadSignature::Verified),
        "the JOIN_REQUEST's signatures verify with our code"
    );

    app.kill().await.expect("stop the app");
    let sdk_log = std::fs::read_to_string(&log_path).unwrap_or_default();
    println!(
        "[{label}] real app sub {:?} (app id {}): DISCOVERY_REQUEST token + {sig_len}-byte \
         e2e_header_sig + slim-payload-sig verified by our code; rejected replies (untrusted token, \
         tampered metadata) -> {rtx_a}+{rtx_b} DISCOVERY_REQUEST retransmissions and no JOIN_REQUEST \
         (SDK log: {} `payload signature failed`); our signed reply -> JOIN_REQUEST after {join_ms} ms \
         (total {} ms), verified by our code",
        claims.sub,
        slim_proto::names::id_text(app_id(&claims.sub)),
        sdk_log.matches("payload signature failed").count(),
        started.elapsed().as_millis()
    );
    relay.shutdown().await.expect("relay stops");
}

fn secret(s: &str) -> Credentials {
    Credentials::SharedSecret(SharedSecret::new(s).expect("a 32+ byte secret"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_slim_shared_secret_identity_interoperates() {
    run(Setup {
        label: "shared-secret",
        app_args: vec!["--secret".into(), SECRET.into()],
        ours: secret(SECRET),
        foreign: secret(OTHER_SECRET),
        our_sub: SharedSecret::random_id("org/default/app", &mut rand_core::OsRng),
        app_sub: None,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_slim_jwt_hs256_identity_interoperates() {
    run(Setup {
        label: "jwt-hs256",
        app_args: [
            "--jwt-hs256",
            SECRET,
            "--subject",
            "spiffe://example.org/alice",
        ]
        .map(String::from)
        .to_vec(),
        ours: Credentials::Jwt(JwtKey::hs256(SECRET)),
        foreign: Credentials::Jwt(JwtKey::hs256(OTHER_SECRET)),
        our_sub: "spiffe://example.org/app".into(),
        app_sub: Some("spiffe://example.org/alice"),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_slim_jwt_es256_identity_interoperates() {
    use p256::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
    use slim_proto::identity::p256;
    let issuer = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let private_pem = issuer.to_pkcs8_pem(LineEnding::LF).expect("pem");
    let public_pem = issuer
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("pem");
    let (private_path, public_path) = (
        dir.join("identity_es256.key.pem"),
        dir.join("identity_es256.pub.pem"),
    );
    std::fs::write(&private_path, private_pem.as_bytes()).expect("write key");
    std::fs::write(&public_path, &public_pem).expect("write key");
    let stranger = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng)
        .to_pkcs8_pem(LineEnding::LF)
        .expect("pem");
    run(Setup {
        label: "jwt-es256",
        app_args: vec![
            "--jwt-es256".into(),
            private_path.display().to_string(),
            public_path.display().to_string(),
            "--subject".into(),
            "did:example:alice".into(),
        ],
        ours: Credentials::Jwt(JwtKey::es256_from_pkcs8_pem(&private_pem).expect("key")),
        foreign: Credentials::Jwt(JwtKey::es256_from_pkcs8_pem(&stranger).expect("key")),
        our_sub: "did:example:app".into(),
        app_sub: Some("did:example:alice"),
    })
    .await;
}
