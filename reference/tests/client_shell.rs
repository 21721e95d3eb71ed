//! The client's link driver against our relay over real h2c gRPC on loopback: subscriptions and
//! a Publish in both directions through a relay that requires the header MAC, reconnection after
//! the relay restarts on the same port, and a fatal (not retried) credential refusal.
//!
//! Every relay is a [`RelayHandle`] (stopped when dropped) bound to 127.0.0.1:0.

use std::sync::atomic::Ordering;
use std::time::Duration;

use slim_proto::messages;
use slim_proto::names::SlimName;
use slim_reference::auth::AuthConfig;
use slim_reference::client::link::{
    self, ClientLinkHandle, HttpAuth, LinkCommand, LinkEvent, LinkIoError, LinkOptions,
};
use slim_reference::client::{Client, ClientError, ClientEvent, ClientOptions};
use slim_reference::config::ServerConfig;
use slim_reference::relay::RelayConfig;
use slim_reference::server::{spawn, RelayHandle};
use slim_reference::session::Credentials;
use tokio::sync::mpsc;

#[path = "support/venv.rs"]
mod venv;

const WAIT: Duration = Duration::from_secs(10);

fn strict(listen: &str, auth: Option<AuthConfig>) -> ServerConfig {
    ServerConfig {
        listen: listen.parse().expect("addr"),
        relay: RelayConfig {
            require_header_mac: true,
            ..RelayConfig::default()
        },
        auth,
        ..ServerConfig::default()
    }
}

async fn relay() -> RelayHandle {
    spawn(strict("127.0.0.1:0", None))
        .await
        .expect("relay starts")
}

fn opts(url: &str, seed: u8) -> LinkOptions {
    LinkOptions::new(url, Duration::from_secs(5), [seed; 32])
}

fn name(s: &str) -> SlimName {
    s.parse().expect("test name")
}

/// The next event matching `want`, within [`WAIT`]; other events are collected into `skipped`.
async fn expect_event(
    events: &mut mpsc::UnboundedReceiver<LinkEvent>,
    what: &str,
    want: impl Fn(&LinkEvent) -> bool,
) -> LinkEvent {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut skipped = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => panic!("no {what} within {WAIT:?}; saw {skipped:?}"),
            Ok(None) => panic!("link task ended while waiting for {what}; saw {skipped:?}"),
            Ok(Some(ev)) if want(&ev) => return ev,
            Ok(Some(ev)) => skipped.push(format!("{ev:?}")),
        }
    }
}

async fn subscribed(
    link: &ClientLinkHandle,
    events: &mut mpsc::UnboundedReceiver<LinkEvent>,
    n: &SlimName,
) {
    link.send(LinkCommand::Subscribe(n.clone()))
        .await
        .expect("link running");
    expect_event(
        events,
        &format!("ack of {n}"),
        |e| matches!(e, LinkEvent::Subscribed(got) if got == n),
    )
    .await;
}

/// Sends `text` from `from` to `to` on `link`, and checks it arrives on `events` intact.
async fn exchange(
    link: &ClientLinkHandle,
    events: &mut mpsc::UnboundedReceiver<LinkEvent>,
    from: &SlimName,
    to: &SlimName,
    text: &str,
) {
    link.send(LinkCommand::Publish(messages::publish(from, to, 1, text)))
        .await
        .expect("link running");
    let ev = expect_event(events, &format!("publish {text:?}"), |e| {
        matches!(e, LinkEvent::Publish(_))
    })
    .await;
    let LinkEvent::Publish(m) = ev else {
        unreachable!()
    };
    assert_eq!(messages::app_payload(&m), Some(text.as_bytes()));
    let h = slim_proto::validate::header(&m).expect("header");
    assert_eq!(
        SlimName::from_proto(h.source.as_ref().expect("source")).expect("strings"),
        *from
    );
}

#[tokio::test]
async fn two_links_subscribe_and_exchange_publishes_with_macs() {
    let relay = relay().await;
    let (a, mut a_ev) = link::connect(opts(&relay.url(), 1)).await.expect("a");
    let (b, mut b_ev) = link::connect(opts(&relay.url(), 2)).await.expect("b");
    assert_eq!(a.peer_node_id(), "slim-relay");
    let (na, nb) = (name("org/ns/alice/1"), name("org/ns/bob/2"));
    subscribed(&a, &mut a_ev, &na).await;
    subscribed(&b, &mut b_ev, &nb).await;

    // The relay drops anything whose MAC does not verify (strict), and each link drops anything
    // the relay signed wrongly: a delivery each way proves both directions.
    exchange(&a, &mut b_ev, &na, &nb, "hello bob").await;
    exchange(&b, &mut a_ev, &nb, &na, "hello alice").await;
    assert_eq!(a.stats().bad_mac_dropped.load(Ordering::Relaxed), 0);
    assert_eq!(b.stats().bad_mac_dropped.load(Ordering::Relaxed), 0);
    let stats = relay.stats();
    assert_eq!(stats.links_established, 2);
    drop((a, b));
    relay.shutdown().await.expect("relay stops");
}

#[tokio::test]
async fn link_reconnects_after_a_relay_restart_and_restores_subscriptions() {
    let first = relay().await;
    let addr = first.addr();
    let url = first.url();
    let mut o = opts(&url, 3);
    o.backoff_initial = Duration::from_millis(50);
    o.backoff_max = Duration::from_millis(400);
    let (a, mut a_ev) = link::connect(o).await.expect("a");
    let na = name("org/ns/alice/1");
    let chan = name("org/ns/chan");
    subscribed(&a, &mut a_ev, &na).await;
    subscribed(&a, &mut a_ev, &chan).await;

    // Stopped with shutdown(), which ends every link with UNAVAILABLE. (Dropping the handle is
    // not enough: it aborts the accept loop, but established HTTP/2 connections live on in their
    // own tasks until keepalive notices, 140 s later.)
    first.shutdown().await.expect("first relay stops");
    expect_event(&mut a_ev, "disconnected", |e| {
        matches!(e, LinkEvent::Disconnected { .. })
    })
    .await;
    let second = spawn(strict(&addr.to_string(), None))
        .await
        .expect("second relay on the same port");

    // Both subscriptions are re-issued and acked on the new link, then Reconnected is reported.
    let mut acked = Vec::new();
    let mut reconnected = false;
    while acked.len() < 2 || !reconnected {
        match expect_event(&mut a_ev, "re-subscription or reconnected", |e| {
            matches!(e, LinkEvent::Subscribed(_) | LinkEvent::Reconnected { .. })
        })
        .await
        {
            LinkEvent::Subscribed(n) => acked.push(n.to_string()),
            LinkEvent::Reconnected { node } => {
                assert_eq!(node, url);
                reconnected = true;
            }
            _ => unreachable!(),
        }
    }
    acked.sort();
    let mut want = vec![chan.to_string(), na.to_string()];
    want.sort();
    assert_eq!(acked, want);
    assert_eq!(a.stats().reconnects.load(Ordering::Relaxed), 1);

    // A Publish from another client on the new relay reaches the reconnected link, on both names.
    let (b, mut b_ev) = link::connect(opts(&url, 4)).await.expect("b");
    let nb = name("org/ns/bob/2");
    subscribed(&b, &mut b_ev, &nb).await;
    exchange(&b, &mut a_ev, &nb, &na, "after restart").await;
    exchange(&b, &mut a_ev, &nb, &chan, "to the channel").await;
    exchange(&a, &mut b_ev, &na, &nb, "and back").await;
    assert_eq!(second.stats().links_established, 2);
    drop((a, b));
    second.shutdown().await.expect("second relay stops");
}

#[tokio::test]
async fn wrong_basic_credentials_are_a_fatal_unauthenticated_error() {
    let auth = AuthConfig::Basic {
        username: "alice".into(),
        password: "right".into(),
    };
    let relay = spawn(strict("127.0.0.1:0", Some(auth)))
        .await
        .expect("relay starts");
    let mut o = opts(&relay.url(), 5);
    o.auth = Some(HttpAuth::Basic {
        username: "alice".into(),
        password: "hunter2x".into(),
    });
    // Fatal at once: well within the 5 s connect bound, and tried exactly once.
    let started = std::time::Instant::now();
    let err = link::connect(o.clone()).await.expect_err("refused");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "an auth refusal must not be retried until the bound ({:?})",
        started.elapsed()
    );
    assert!(
        matches!(err, LinkIoError::Unauthenticated { .. }),
        "{err:?}"
    );
    assert!(err.is_fatal());
    let text = err.to_string();
    assert!(text.contains("UNAUTHENTICATED"), "{text}");
    assert!(text.contains("--auth-basic"), "says how to fix it: {text}");
    assert!(
        !text.contains("hunter2x"),
        "never prints the secret: {text}"
    );
    assert_eq!(relay.refused_unauthenticated(), 1, "one attempt, no loop");

    // The right credentials work.
    o.auth = Some(HttpAuth::Basic {
        username: "alice".into(),
        password: "right".into(),
    });
    let (a, mut a_ev) = link::connect(o).await.expect("accepted");
    subscribed(&a, &mut a_ev, &name("org/ns/alice/1")).await;
    drop(a);
    relay.shutdown().await.expect("relay stops");
}

#[tokio::test]
async fn unreachable_node_is_a_clear_error_after_the_bound() {
    // A port that was just free: bind, read the port, drop the listener.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let mut o = LinkOptions::new(&url, Duration::from_millis(800), [6; 32]);
    o.backoff_initial = Duration::from_millis(50);
    let started = std::time::Instant::now();
    let err = link::connect(o).await.expect_err("nobody listens");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "retried within the bound: {waited:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "cannot reach the SLIM node at {url}: connection refused"
        )),
        "{text}"
    );
    assert!(
        text.contains("cargo run --release --bin slim-relay"),
        "{text}"
    );
}

fn client_opts(url: &str, auth: Option<HttpAuth>) -> ClientOptions {
    ClientOptions {
        tls: None,
        node: url.to_string(),
        name: name("org/ns/alice"),
        credentials: Credentials::SharedSecret("0123456789abcdef0123456789abcdef".into()),
        auth,
        timeout: Duration::from_secs(5),
        seed: Some([7; 32]),
        mls_crypto: None,
    }
}

#[tokio::test]
async fn client_connects_subscribes_its_name_and_reports_reconnects() {
    let first = relay().await;
    let (addr, url) = (first.addr(), first.url());
    let mut client = Client::connect(client_opts(&url, None))
        .await
        .expect("client connects");
    let me = client.local_name().clone();
    assert_eq!(me.components(), ["org", "ns", "alice"]);
    assert_ne!(
        me.id(),
        slim_proto::names::NULL_ID,
        "the endpoint gave us an id"
    );
    assert_eq!(first.connections(), 1);

    // connect() returned after the ack: the relay routes our full name to the client already.
    publish_to(&url, &me, 8).await;
    assert_delivered(&first, 1);

    first.shutdown().await.expect("first relay stops");
    let second = spawn(strict(&addr.to_string(), None))
        .await
        .expect("second relay on the same port");
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut saw_disconnect = false;
    loop {
        match tokio::time::timeout_at(deadline, client.next_event()).await {
            Err(_) => panic!("no Reconnected within {WAIT:?}"),
            Ok(None) => panic!("client stopped"),
            Ok(Some(ClientEvent::Disconnected { .. })) => saw_disconnect = true,
            Ok(Some(ClientEvent::Reconnected { node })) => {
                assert_eq!(node, url);
                break;
            }
            Ok(Some(ClientEvent::Fatal(e))) => panic!("fatal: {e}"),
            Ok(Some(_)) => {}
        }
    }
    assert!(saw_disconnect, "the loss is reported before the reconnect");
    assert_eq!(second.connections(), 1);
    // The client re-subscribed its name on the new relay.
    publish_to(&url, &me, 9).await;
    assert_delivered(&second, 1);
    drop(client);
    second.shutdown().await.expect("second relay stops");
}

#[tokio::test]
async fn client_with_wrong_bearer_token_fails_with_unauthenticated() {
    let relay = spawn(strict(
        "127.0.0.1:0",
        Some(AuthConfig::Bearer {
            token: "the-right-token".into(),
        }),
    ))
    .await
    .expect("relay starts");
    let err = match Client::connect(client_opts(
        &relay.url(),
        Some(HttpAuth::Bearer("a-wrong-token".into())),
    ))
    .await
    {
        Ok(_) => panic!("connected with a wrong token"),
        Err(e) => e,
    };
    assert!(
        matches!(err, ClientError::Link(LinkIoError::Unauthenticated { .. })),
        "{err:?}"
    );
    assert_eq!(relay.refused_unauthenticated(), 1);
    relay.shutdown().await.expect("relay stops");
}

/// A separate link publishes one message to `to`.
async fn publish_to(url: &str, to: &SlimName, seed: u8) {
    let (b, mut b_ev) = link::connect(opts(url, seed)).await.expect("b");
    let nb = name("org/ns/bob/2");
    subscribed(&b, &mut b_ev, &nb).await;
    b.send(LinkCommand::Publish(messages::publish(&nb, to, 1, "ping")))
        .await
        .expect("link running");
    // An ack round trip after the publish: the relay has handled it when this returns.
    subscribed(&b, &mut b_ev, &name("org/ns/bob-sync/3")).await;
}

/// The relay delivered `n` publishes and dropped none for want of a route.
fn assert_delivered(relay: &RelayHandle, n: u64) {
    let stats = relay.stats();
    assert_eq!(stats.publishes_delivered, n, "{stats:?}");
    assert_eq!(stats.dropped_no_route, 0, "{stats:?}");
}

/// The real SLIM node (the server embedded in slim-bindings), on a free loopback port; killed
/// when dropped.
struct RealNode {
    url: String,
    _child: tokio::process::Child,
}

async fn real_node() -> RealNode {
    use tokio::io::AsyncBufReadExt as _;
    let py = tokio::task::spawn_blocking(venv::python)
        .await
        .expect("venv setup");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(py)
        .arg(venv::interop_dir().join("serve_real_node.py"))
        .args(["--listen", &listen])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the real SLIM node (serve_real_node.py)");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("\"ready\"") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        ready,
        Ok(true),
        "the real SLIM node did not report ready on {listen} within 30 s"
    );
    RealNode {
        url: format!("http://{listen}"),
        _child: child,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_interoperate_with_the_real_slim_node() {
    let node = real_node().await;
    let (a, mut a_ev) = link::connect(opts(&node.url, 11)).await.expect("a");
    let (b, mut b_ev) = link::connect(opts(&node.url, 12)).await.expect("b");
    assert!(
        a.peer_node_id().starts_with("node-"),
        "the real node's id: {}",
        a.peer_node_id()
    );
    let (na, nb) = (name("org/ns/alice/1"), name("org/ns/bob/2"));
    subscribed(&a, &mut a_ev, &na).await;
    subscribed(&b, &mut b_ev, &nb).await;
    // The real node drops a Publish whose MAC is wrong, and signs what it delivers with the
    // receiver's link key, which our links verify.
    exchange(&a, &mut b_ev, &na, &nb, "hello bob").await;
    exchange(&b, &mut a_ev, &nb, &na, "hello alice").await;
    assert_eq!(a.stats().bad_mac_dropped.load(Ordering::Relaxed), 0);
    assert_eq!(b.stats().bad_mac_dropped.load(Ordering::Relaxed), 0);
}

/// `slim-client --revocation-file` as a library call: the client loads the relay's list format,
/// refuses an unusable file with its path and defect, and, watching the file, stops delivering
/// what a peer sends once the peer's identity is revoked (SLIM-REV-008), saying why.
#[tokio::test]
async fn a_client_takes_the_revocation_file_and_refuses_a_revoked_peer() {
    use slim_reference::session::{Event, SessionOptions};
    let relay = relay().await;
    let url = relay.url();
    let dir = std::env::temp_dir().join(format!("slim-client-rev-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let list = dir.join("revoked.yaml");

    let mut alice = Client::connect(client_opts(&url, None))
        .await
        .expect("alice connects");
    std::fs::write(&list, "revoked: [{sub: ''}]\n").expect("write list");
    let e = alice
        .watch_revocations(list.clone())
        .await
        .expect_err("an unusable list is refused");
    assert!(matches!(e, ClientError::Revocation(_)), "{e}");
    let text = e.to_string();
    assert!(
        text.contains(&list.display().to_string()) && text.contains("revoked[0].sub is empty"),
        "{text}"
    );
    std::fs::write(&list, "revoked: []\n").expect("write list");
    alice
        .watch_revocations(list.clone())
        .await
        .expect("alice watches the list");

    let bob = Client::connect(ClientOptions {
        name: name("org/ns/bob"),
        seed: Some([8; 32]),
        mls_crypto: None,
        ..client_opts(&url, None)
    })
    .await
    .expect("bob connects");
    let session = bob
        .open_p2p(alice.local_name().clone(), SessionOptions::default())
        .await
        .expect("bob opens a session to alice");
    let heard = |ev: &ClientEvent, what: &str| matches!(ev, ClientEvent::Session(Event::Message { payload, .. }) if payload.as_ref() == what.as_bytes());
    bob.publish(session, "before".into())
        .await
        .expect("publish");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ev = tokio::time::timeout_at(deadline, alice.next_event())
            .await
            .expect("alice hears bob before the revocation")
            .expect("alice runs");
        if heard(&ev, "before") {
            break;
        }
    }

    let tmp = dir.join("revoked.yaml.tmp");
    std::fs::write(&tmp, format!("revoked:\n  - {{sub: {}}}\n", bob.token_id())).expect("write");
    std::fs::rename(&tmp, &list).expect("rename");
    // Bob keeps sending; once alice says she refused him, nothing more of his is delivered.
    let mut n = 0u32;
    let mut refused_at = None;
    let deadline = tokio::time::Instant::now() + WAIT;
    while refused_at.is_none() {
        bob.publish(session, format!("after-{n}").into())
            .await
            .expect("publish");
        n += 1;
        let until = tokio::time::Instant::now() + Duration::from_millis(20);
        while let Ok(Some(ev)) = tokio::time::timeout_at(until, alice.next_event()).await {
            if let ClientEvent::Session(Event::Error { message, .. }) = &ev {
                if message.contains("is revoked") {
                    refused_at = Some(n);
                    break;
                }
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "alice never refused bob after his revocation"
        );
    }
    for k in 0..10 {
        bob.publish(session, format!("late-{k}").into())
            .await
            .expect("publish");
    }
    let until = tokio::time::Instant::now() + Duration::from_millis(300);
    while let Ok(Some(ev)) = tokio::time::timeout_at(until, alice.next_event()).await {
        if let ClientEvent::Session(Event::Message { payload, .. }) = &ev {
            panic!(
                "alice delivered {:?} after refusing bob as revoked",
                String::from_utf8_lossy(payload)
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
