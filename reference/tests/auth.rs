//! HTTP-layer authentication over real gRPC (h2c on an ephemeral loopback port): a relay with
//! credentials refuses `OpenChannel` at call setup with `UNAUTHENTICATED` (SLIM-AUTH-001/002) and
//! serves callers with valid credentials as usual (SLIM-AUTH-003).
//!
//! Every relay is a [`RelayHandle`], which stops the server when dropped, so a failing assertion
//! never leaves one running.

mod support;

use slim_proto::names::SlimName;
use slim_reference::auth::AuthConfig;
use slim_reference::config::ServerConfig;
use slim_reference::server::{spawn, RelayHandle};
use support::{blob_of, publish, RawLink};
use tonic::Code;

/// base64("alice:pa:ss word"): the password contains a colon and a space.
const BASIC_OK: &str = "Basic YWxpY2U6cGE6c3Mgd29yZA==";
/// base64("alice:pa:ss wore").
const BASIC_WRONG: &str = "Basic YWxpY2U6cGE6c3Mgd29yZQ==";
const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl";

async fn relay_with(auth: AuthConfig) -> RelayHandle {
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        auth: Some(auth),
        ..ServerConfig::default()
    };
    spawn(cfg).await.expect("relay starts")
}

fn basic() -> AuthConfig {
    AuthConfig::Basic {
        username: "alice".into(),
        password: "pa:ss word".into(),
    }
}

fn bearer() -> AuthConfig {
    AuthConfig::Bearer {
        token: TOKEN.into(),
    }
}

/// The call is refused at setup with `UNAUTHENTICATED` and a message containing `why`, and the
/// relay core never saw it (SLIM-AUTH-002).
async fn assert_refused(relay: &RelayHandle, authorization: Option<&str>, why: &str) {
    let refused_before = relay.refused_unauthenticated();
    let status = match RawLink::try_open(&relay.url(), authorization).await {
        Ok(_) => panic!("OpenChannel with {authorization:?} was accepted"),
        Err(status) => status,
    };
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains(why),
        "message {:?} should say {why:?}",
        status.message()
    );
    for secret in ["pa:ss word", "YWxpY2U6cGE6c3Mgd29yZA", TOKEN] {
        assert!(!status.message().contains(secret), "{status:?}");
    }
    assert_eq!(relay.refused_unauthenticated(), refused_before + 1);
    assert_eq!(
        relay.connections(),
        0,
        "a refused call never reaches the core"
    );
    assert_eq!(relay.stats().links_established, 0);
}

/// With valid credentials the negotiation is answered and a subscribe is acked (SLIM-AUTH-003).
async fn assert_accepted(relay: &RelayHandle, authorization: &str) {
    let mut link = RawLink::connect_with(&relay.url(), authorization).await;
    let ack = link
        .subscribe(&"o/n/authed/1".parse().expect("name"), 11)
        .await;
    assert!(ack.success, "{ack:?}");
    assert_eq!(ack.subscription_id, 11);
}

#[tokio::test]
async fn basic_without_header_is_unauthenticated() {
    let relay = relay_with(basic()).await;
    assert_refused(&relay, None, "missing authorization header").await;
    relay.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn basic_with_wrong_password_is_unauthenticated() {
    let relay = relay_with(basic()).await;
    assert_refused(&relay, Some(BASIC_WRONG), "wrong credentials").await;
    assert_refused(
        &relay,
        Some(&format!("Bearer {TOKEN}")),
        "expected Basic scheme",
    )
    .await;
    relay.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn basic_with_right_credentials_negotiates_and_subscribes() {
    let relay = relay_with(basic()).await;
    assert_accepted(&relay, BASIC_OK).await;
    assert_accepted(&relay, &BASIC_OK.replace("Basic", "basic")).await;
    assert_eq!(relay.refused_unauthenticated(), 0);
    relay.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn bearer_without_header_is_unauthenticated() {
    let relay = relay_with(bearer()).await;
    assert_refused(&relay, None, "missing authorization header").await;
    relay.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn bearer_with_wrong_token_is_unauthenticated() {
    let relay = relay_with(bearer()).await;
    assert_refused(&relay, Some("Bearer not-the-token"), "wrong credentials").await;
    assert_refused(&relay, Some(TOKEN), "expected Bearer scheme").await;
    assert_refused(&relay, Some(BASIC_OK), "expected Bearer scheme").await;
    relay.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn bearer_with_right_token_negotiates_and_subscribes() {
    let relay = relay_with(bearer()).await;
    assert_accepted(&relay, &format!("Bearer {TOKEN}")).await;
    assert_accepted(&relay, &format!("bearer {TOKEN}")).await;
    relay.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn refused_client_does_not_disturb_an_authenticated_one() {
    let relay = relay_with(bearer()).await;
    let url = relay.url();
    let good = format!("Bearer {TOKEN}");
    let name: SlimName = "o/n/quiet/1".parse().expect("name");
    let mut sub = RawLink::connect_with(&url, &good).await;
    assert!(sub.subscribe(&name, 1).await.success);
    let publisher = RawLink::connect_with(&url, &good).await;

    for (i, bad) in [None, Some("Bearer nope"), Some("Basic YTpi")]
        .into_iter()
        .enumerate()
    {
        let status = match RawLink::try_open(&url, bad).await {
            Ok(_) => panic!("{bad:?} was accepted"),
            Err(status) => status,
        };
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        let blob = vec![u8::try_from(i).expect("small")];
        publisher
            .send(publish(
                &"o/n/p".parse().expect("n"),
                &name,
                1,
                blob.clone(),
            ))
            .await;
        let got = sub.recv().await.expect("delivery continues");
        assert_eq!(blob_of(&got), Some(&blob[..]));
    }
    assert_eq!(relay.refused_unauthenticated(), 3);
    assert_eq!(relay.connections(), 2, "only the two authenticated links");
    assert_eq!(relay.stats().links_established, 2);
    relay.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn no_auth_configured_accepts_any_header() {
    let relay = spawn(ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..ServerConfig::default()
    })
    .await
    .expect("relay starts");
    RawLink::connect(&relay.url()).await;
    RawLink::connect_with(&relay.url(), "Bearer whatever").await;
    assert_eq!(relay.refused_unauthenticated(), 0);
    relay.shutdown().await.expect("clean shutdown");
}
