//! JWT bearer auth and the revocation list over real gRPC (h2c on an ephemeral loopback port):
//! a revoked credential's open stream ends with `UNAUTHENTICATED` "…revoked…" and new calls with
//! it are refused (SLIM-REV-002..004), other links keep routing, a garbage list keeps the one in
//! force (SLIM-REV-006), and a token ends its stream when it expires (SLIM-REV-005).
//!
//! Tokens are made here the way an identity provider makes them: an ES256 key
//! ([`p256::ecdsa::SigningKey`]), its public key written as PEM for the relay, and
//! [`jwt::sign_es256`] over the claims. Every relay is a [`RelayHandle`], which stops the server
//! when dropped, so a failing assertion never leaves one running.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use p256::ecdsa::SigningKey;
use p256::pkcs8::{EncodePublicKey as _, LineEnding};
use serde_json::json;
use slim_reference::auth::{jwt, AuthConfig};
use slim_reference::config::ServerConfig;
use slim_reference::server::{spawn, RelayHandle};
use support::{blob_of, publish, RawLink};
use tonic::{Code, Status};

/// The most a test waits for something it expects.
const BOUND: Duration = Duration::from_secs(5);

struct Fixture {
    dir: PathBuf,
    list: PathBuf,
    key: SigningKey,
    relay: RelayHandle,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

impl Fixture {
    /// A relay verifying ES256 tokens from `idp` for `slim`, watching an empty revocation list.
    async fn start() -> Fixture {
        let dir = std::env::temp_dir().join(format!("slim-rev-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let key = SigningKey::from_slice(&[42; 32]).expect("key");
        let pem = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("pem");
        let pem_path = dir.join("idp.pub.pem");
        std::fs::write(&pem_path, pem).expect("write key");
        let list = dir.join("revoked.yaml");
        std::fs::write(&list, "revoked: []\n").expect("write list");
        let relay = spawn(ServerConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            auth: Some(AuthConfig::Jwt {
                keys: vec![pem_path],
                jwks: None,
                hs256_secret_file: None,
                issuer: Some("idp".into()),
                audience: Some("slim".into()),
            }),
            revocation_file: Some(list.clone()),
            ..ServerConfig::default()
        })
        .await
        .expect("relay starts");
        Fixture {
            dir,
            list,
            key,
            relay,
        }
    }

    /// `Bearer <jwt>` for `sub` with token id `jti`, key id `kid`, valid `secs` more seconds.
    fn bearer(&self, jti: &str, sub: &str, kid: &str, secs: u64) -> String {
        let claims = json!({
            "iss": "idp", "aud": "slim", "sub": sub, "jti": jti,
            "iat": unix_now(), "exp": unix_now() + secs,
        });
        format!("Bearer {}", jwt::sign_es256(&self.key, Some(kid), &claims))
    }

    /// Replaces the list atomically (write, then rename), as an operator's tool should.
    fn write_list(&self, text: &str) -> Instant {
        let tmp = self.dir.join("revoked.yaml.tmp");
        std::fs::write(&tmp, text).expect("write list");
        let written = Instant::now();
        std::fs::rename(&tmp, &self.list).expect("rename list");
        written
    }

    async fn connect(&self, authorization: &str, name: &str, id: u64) -> RawLink {
        let mut link = RawLink::connect_with(&self.relay.url(), authorization).await;
        let ack = link.subscribe(&name.parse().expect("name"), id).await;
        assert!(ack.success, "{ack:?}");
        link
    }

    async fn refused(&self, authorization: &str) -> Status {
        match RawLink::try_open(&self.relay.url(), Some(authorization)).await {
            Ok(_) => panic!("the call was accepted"),
            Err(status) => status,
        }
    }

    /// Waits (bounded) until `cond` holds; a poll, not a verdict.
    async fn until(&self, what: &str, cond: impl Fn(&RelayHandle) -> bool) {
        let deadline = Instant::now() + BOUND;
        while !cond(&self.relay) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Waits (bounded) for `link`'s stream to end; returns its status and when it arrived.
async fn ended(link: &mut RawLink) -> (Status, Instant) {
    match tokio::time::timeout(BOUND, link.recv()).await {
        Err(_) => panic!("the stream was not ended within {BOUND:?}"),
        Ok(Ok(msg)) => panic!("unexpected message before the end: {msg:?}"),
        Ok(Err(status)) => (status, Instant::now()),
    }
}

fn assert_unauthenticated(status: &Status, words: &[&str]) {
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    for w in words {
        assert!(
            status.message().contains(w),
            "{:?} should contain {w:?}",
            status.message()
        );
    }
}

/// `publisher` sends `blob` to `name` and `receiver` gets it.
async fn routes(publisher: &RawLink, receiver: &mut RawLink, name: &str, blob: u8) {
    publisher
        .send(publish(
            &"o/n/pub".parse().expect("n"),
            &name.parse().expect("n"),
            1,
            vec![blob],
        ))
        .await;
    let got = tokio::time::timeout(BOUND, receiver.recv())
        .await
        .expect("delivered in time")
        .expect("delivery");
    assert_eq!(blob_of(&got), Some(&[blob][..]));
}

#[tokio::test]
async fn revoking_a_jti_ends_its_stream_and_refuses_it_while_others_route() {
    let fx = Fixture::start().await;
    let alice = fx.bearer("a-1", "alice", "k1", 600);
    let mut a = fx.connect(&alice, "o/n/alice/1", 1).await;
    let mut b = fx
        .connect(&fx.bearer("b-1", "bob", "k1", 600), "o/n/bob/1", 2)
        .await;
    let c = fx
        .connect(&fx.bearer("c-1", "carol", "k1", 600), "o/n/carol/1", 3)
        .await;
    routes(&c, &mut a, "o/n/alice/1", 1).await;

    let written = fx.write_list("revoked:\n  - {jti: a-1}\n");
    let (status, at) = ended(&mut a).await;
    let latency = at - written;
    println!("revocation-to-close latency (jti, incl. the 50 ms poll): {latency:?}");
    assert_unauthenticated(&status, &["revoked", "a-1"]);
    assert!(latency < BOUND);
    assert_eq!(fx.relay.revoked_links(), 1);
    assert_eq!(fx.relay.connections(), 2, "bob and carol stay");

    // Its subscription is gone: a publish to it is unroutable; bob still gets his.
    let no_route = fx.relay.stats().dropped_no_route;
    c.send(publish(
        &"o/n/pub".parse().expect("n"),
        &"o/n/alice/1".parse().expect("n"),
        1,
        vec![9],
    ))
    .await;
    routes(&c, &mut b, "o/n/bob/1", 2).await;
    assert_eq!(fx.relay.stats().dropped_no_route, no_route + 1);

    // SLIM-REV-003: the revoked token is refused at call setup.
    let status = fx.refused(&alice).await;
    assert_unauthenticated(&status, &["credential revoked", "a-1"]);
    // Another token of the same subject is not (only the jti is revoked).
    fx.connect(&fx.bearer("a-2", "alice", "k1", 600), "o/n/alice/2", 4)
        .await;
}

#[tokio::test]
async fn revoking_a_sub_or_a_kid_ends_every_stream_it_names() {
    let fx = Fixture::start().await;
    let mallory = fx.bearer("m-1", "mallory", "k1", 600);
    let old_key = fx.bearer("o-1", "olga", "k-old", 600);
    let mut m = fx.connect(&mallory, "o/n/m/1", 1).await;
    let mut m2 = fx
        .connect(&fx.bearer("m-2", "mallory", "k1", 600), "o/n/m/2", 2)
        .await;
    let mut o = fx.connect(&old_key, "o/n/o/1", 3).await;
    let c = fx
        .connect(&fx.bearer("c-1", "carol", "k1", 600), "o/n/c/1", 4)
        .await;

    let written = fx.write_list("revoked: [{sub: mallory}]\n");
    for link in [&mut m, &mut m2] {
        let (status, at) = ended(link).await;
        println!("revocation-to-close latency (sub): {:?}", at - written);
        assert_unauthenticated(&status, &["revoked", "mallory"]);
    }
    routes(&c, &mut o, "o/n/o/1", 1).await;

    let written = fx.write_list("revoked: [{sub: mallory}, {kid: k-old}]\n");
    let (status, at) = ended(&mut o).await;
    println!("revocation-to-close latency (kid): {:?}", at - written);
    assert_unauthenticated(&status, &["revoked", "kid", "k-old"]);
    assert_unauthenticated(&fx.refused(&old_key).await, &["revoked", "k-old"]);
    assert_unauthenticated(&fx.refused(&mallory).await, &["revoked", "mallory"]);
    assert_eq!(fx.relay.connections(), 1, "carol stays");
}

#[tokio::test]
async fn a_garbage_list_is_reported_and_the_list_in_force_stays() {
    let fx = Fixture::start().await;
    let alice = fx.bearer("a-1", "alice", "k1", 600);
    let mut a = fx.connect(&alice, "o/n/a/1", 1).await;
    fx.write_list("revoked: [{jti: a-1}]\n");
    assert_unauthenticated(&ended(&mut a).await.0, &["revoked"]);
    assert_eq!(fx.relay.revocation_errors(), 0);

    fx.write_list("revoked: [{jti: a-1, sub: x}]\n\u{1}garbage");
    fx.until("the error to be reported", |r| r.revocation_errors() == 1)
        .await;
    let error = fx.relay.last_revocation_error().expect("an error");
    assert!(error.contains("revoked.yaml"), "names the file: {error}");
    println!("reported: {error}");
    assert_unauthenticated(&fx.refused(&alice).await, &["revoked", "a-1"]);
    fx.connect(&fx.bearer("b-1", "bob", "k1", 600), "o/n/b/1", 2)
        .await;

    // A list that parses again replaces it: the empty list un-revokes.
    fx.write_list("revoked: []\n");
    fx.until("the new list", |r| r.last_revocation_error().is_none())
        .await;
    fx.connect(&alice, "o/n/a/2", 3).await;
}

#[tokio::test]
async fn a_token_that_expires_ends_its_stream() {
    let fx = Fixture::start().await;
    let exp = unix_now() + 2;
    let short = format!(
        "Bearer {}",
        jwt::sign_es256(
            &fx.key,
            None,
            &json!({"iss": "idp", "aud": "slim", "sub": "sam", "exp": exp})
        )
    );
    let mut s = fx.connect(&short, "o/n/s/1", 1).await;
    let (status, _) = ended(&mut s).await;
    let after_exp = SystemTime::now()
        .duration_since(UNIX_EPOCH + Duration::from_secs(exp))
        .expect("ended at or after exp");
    println!("ended {after_exp:?} after exp");
    assert_unauthenticated(&status, &["expired"]);
    assert_unauthenticated(&fx.refused(&short).await, &["invalid JWT", "expired"]);
}

#[tokio::test]
async fn bad_tokens_are_refused_naming_the_check() {
    let fx = Fixture::start().await;
    let claims =
        |iss: &str, aud: &str| json!({"iss": iss, "aud": aud, "sub": "x", "exp": unix_now() + 60});
    let other = SigningKey::from_slice(&[7; 32]).expect("key");
    for (token, why) in [
        (
            jwt::sign_es256(&other, None, &claims("idp", "slim")),
            "bad signature",
        ),
        (
            jwt::sign_es256(&fx.key, None, &claims("evil", "slim")),
            "wrong issuer",
        ),
        (
            jwt::sign_es256(&fx.key, None, &claims("idp", "other")),
            "wrong audience",
        ),
        (
            jwt::sign_hs256(b"s", None, &claims("idp", "slim")),
            "bad signature",
        ),
        ("not.a.jwt".to_string(), "malformed JWT"),
    ] {
        let status = fx.refused(&format!("Bearer {token}")).await;
        assert_unauthenticated(&status, &[why]);
        assert!(!status.message().contains(&token), "{status:?}");
    }
    assert_eq!(fx.relay.connections(), 0);
}
