//! The relay under hostile or unlucky conditions, over real gRPC on loopback: connection limits
//! (in total and per address) refused with `RESOURCE_EXHAUSTED` naming the limit, HTTP/2
//! connections that never open a stream closed after the idle timeout while busy ones stay, the
//! streams-per-connection limit announced in SETTINGS, a panic while handling one link contained
//! to that link (closed with `INTERNAL`, its routes removed, others unaffected), and the shutdown
//! order: the listener is closed before any link ends.

mod support;

use std::io::ErrorKind;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use slim_proto::names::SlimName;
use slim_reference::config::{FrameHook, ServerConfig};
use slim_reference::listener::Limits;
use slim_reference::server::{spawn, RelayHandle};
use support::{blob_of, publish, RawLink};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;

/// Bound for every wait on an event.
const BOUND: Duration = Duration::from_secs(10);

async fn relay_with(limits: Limits) -> RelayHandle {
    spawn(ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        limits,
        ..ServerConfig::default()
    })
    .await
    .expect("relay starts")
}

/// Waits (bounded) until `cond` holds.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + BOUND;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn refused(result: Result<RawLink, tonic::Status>) -> tonic::Status {
    match result {
        Ok(_) => panic!("the call must be refused"),
        Err(s) => s,
    }
}

#[tokio::test]
async fn connections_over_the_per_address_limit_are_told_which_limit() {
    let relay = relay_with(Limits {
        max_connections_per_peer: 2,
        ..Limits::default()
    })
    .await;
    let url = relay.url();
    let a = RawLink::connect(&url).await;
    let _b = RawLink::connect(&url).await;
    let s = refused(RawLink::try_open(&url, None).await);
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    assert!(
        s.message().contains("per-address connection limit reached")
            && s.message().contains("max_connections_per_peer"),
        "{s:?}"
    );
    assert!(
        relay
            .listener_stats()
            .refused_peer_limit
            .load(Ordering::Relaxed)
            >= 1
    );
    // Closing one gives its place back.
    drop(a);
    until("the closed connection's slot is free", || {
        relay.listener_stats().open.load(Ordering::Relaxed) == 1
    })
    .await;
    let _c = RawLink::connect(&url).await;
    relay.shutdown().await.expect("stops");
}

#[tokio::test]
async fn connections_over_the_total_limit_are_told_which_limit() {
    let relay = relay_with(Limits {
        max_connections: 1,
        ..Limits::default()
    })
    .await;
    let url = relay.url();
    let _a = RawLink::connect(&url).await;
    let s = refused(RawLink::try_open(&url, None).await);
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    assert!(
        s.message().contains("connection limit reached") && s.message().contains("max_connections"),
        "{s:?}"
    );
    relay.shutdown().await.expect("stops");
}

/// The HTTP/2 client preface and an empty SETTINGS frame: a connection that will never open a
/// stream.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[tokio::test]
async fn idle_http2_connections_are_closed_and_busy_ones_stay() {
    let relay = relay_with(Limits {
        idle_timeout: Duration::from_millis(300),
        ..Limits::default()
    })
    .await;
    let url = relay.url();
    // A link with a stream, opened before the idle connection.
    let name: SlimName = "o/n/busy/1".parse().expect("name");
    let mut sub = RawLink::connect(&url).await;
    assert!(sub.subscribe(&name, 1).await.success);
    let mut idle = TcpStream::connect(relay.addr()).await.expect("tcp");
    idle.write_all(PREFACE).await.expect("preface");
    // The node must close it: read until end of file (or a reset), bounded.
    let mut buf = vec![0u8; 4096];
    let closed = tokio::time::timeout(BOUND, async {
        loop {
            match idle.read(&mut buf).await {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
                Err(e) => panic!("read: {e}"),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "an idle connection must be closed");
    assert!(relay.listener_stats().idle_closed.load(Ordering::Relaxed) >= 1);
    // The busy link, older than the idle one, still routes.
    let publisher = RawLink::connect(&url).await;
    publisher
        .send(publish(
            &"o/n/p".parse().expect("n"),
            &name,
            1,
            b"still here",
        ))
        .await;
    let got = sub.recv().await.expect("the busy link still routes");
    assert_eq!(blob_of(&got), Some(&b"still here"[..]));
    relay.shutdown().await.expect("stops");
}

#[tokio::test]
async fn the_streams_per_connection_limit_is_announced_in_settings() {
    let relay = relay_with(Limits {
        max_streams_per_connection: 7,
        ..Limits::default()
    })
    .await;
    let mut tcp = TcpStream::connect(relay.addr()).await.expect("tcp");
    tcp.write_all(PREFACE).await.expect("preface");
    // The server's first frame is its SETTINGS: 9-byte header, then 6-byte (id, value) pairs.
    let mut header = [0u8; 9];
    tokio::time::timeout(BOUND, tcp.read_exact(&mut header))
        .await
        .expect("server SETTINGS in time")
        .expect("read");
    assert_eq!(header[3], 0x4, "first frame is SETTINGS: {header:?}");
    let len = usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
    let mut body = vec![0u8; len];
    tcp.read_exact(&mut body).await.expect("settings body");
    let max_streams = body.chunks(6).find_map(|c| {
        (c.len() == 6 && u16::from_be_bytes([c[0], c[1]]) == 0x3)
            .then(|| u32::from_be_bytes([c[2], c[3], c[4], c[5]]))
    });
    assert_eq!(max_streams, Some(7), "SETTINGS_MAX_CONCURRENT_STREAMS");
    relay.shutdown().await.expect("stops");
}

#[tokio::test]
async fn a_panic_while_handling_a_link_closes_only_that_link_and_removes_its_routes() {
    let hook: FrameHook = FrameHook(Arc::new(|frame: &[u8]| {
        if frame.windows(9).any(|w| w == b"PANIC-NOW") {
            panic!("injected panic (test)");
        }
    }));
    let relay = spawn(ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        frame_hook: Some(hook),
        ..ServerConfig::default()
    })
    .await
    .expect("relay starts");
    let url = relay.url();
    let (victim_name, other_name): (SlimName, SlimName) = (
        "o/n/victim/1".parse().expect("n"),
        "o/n/other/2".parse().expect("n"),
    );
    let mut victim = RawLink::connect(&url).await;
    assert!(victim.subscribe(&victim_name, 1).await.success);
    let mut other = RawLink::connect(&url).await;
    assert!(other.subscribe(&other_name, 2).await.success);
    let before = relay.table_sizes();
    assert_eq!(before.subscriptions, 2, "{before:?}");

    victim
        .send(publish(&victim_name, &other_name, 1, b"PANIC-NOW"))
        .await;
    let status = victim.recv().await.expect_err("the link ends");
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(
        status.message().contains("subscriptions removed"),
        "{status:?}"
    );
    until("the panicked link is cleaned up", || {
        relay.connections() == 1
    })
    .await;
    assert_eq!(relay.panics(), 1);
    let after = relay.table_sizes();
    assert_eq!(
        (after.subscriptions, after.links),
        (1, 1),
        "only the other link's route is left: {after:?}"
    );
    // Others are unaffected: routing to the survivor works, new links are served.
    let publisher = RawLink::connect(&url).await;
    publisher
        .send(publish(
            &"o/n/p".parse().expect("n"),
            &other_name,
            1,
            b"after",
        ))
        .await;
    let got = other.recv().await.expect("delivery after the panic");
    assert_eq!(blob_of(&got), Some(&b"after"[..]));
    relay.shutdown().await.expect("stops");
}

#[tokio::test]
async fn shutdown_closes_the_listener_before_ending_any_link() {
    let relay = relay_with(Limits::default()).await;
    let addr = relay.addr();
    let mut link = RawLink::connect(&relay.url()).await;
    let stopping = tokio::spawn(relay.shutdown());
    let status = link.recv().await.expect_err("the link ends");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // The link ended, so the listener is already closed: a reconnect is refused by the kernel,
    // which clients (the real SDK among them) retry, instead of landing on the exiting process.
    let err = TcpStream::connect(addr)
        .await
        .expect_err("the port must be closed once links end");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    tokio::time::timeout(BOUND, stopping)
        .await
        .expect("shutdown completes")
        .expect("join")
        .expect("clean");
}
