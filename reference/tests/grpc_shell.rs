//! The relay over real gRPC (h2c on an ephemeral loopback port): transport-level bad input gets
//! a precise status, loses nothing for other clients, and routing works end to end.

mod support;

use std::time::Duration;

use slim_proto::names::SlimName;
use slim_reference::config::ServerConfig;
use slim_reference::server::{spawn, RelayHandle};
use support::{blob_of, publish, RawLink};
use tonic::Code;

async fn relay(timeout_ms: u64) -> RelayHandle {
    let mut cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..ServerConfig::default()
    };
    cfg.relay.negotiation_timeout = Duration::from_millis(timeout_ms);
    spawn(cfg).await.expect("relay starts")
}

/// A subscriber on `name` that proves the relay still serves other clients.
async fn healthy_pair(url: &str, tag: &str) -> (RawLink, RawLink, SlimName) {
    let name: SlimName = format!("o/n/{tag}/1").parse().expect("name");
    let mut sub = RawLink::connect(url).await;
    let ack = sub.subscribe(&name, 1).await;
    assert!(ack.success, "{ack:?}");
    let publisher = RawLink::connect(url).await;
    (sub, publisher, name)
}

async fn still_routes(sub: &mut RawLink, publisher: &RawLink, name: &SlimName, blob: &[u8]) {
    publisher
        .send(publish(&"o/n/p".parse().expect("n"), name, 1, blob))
        .await;
    let got = sub.recv().await.expect("delivery");
    assert_eq!(blob_of(&got), Some(blob));
}

#[tokio::test]
async fn routes_between_links_over_grpc() {
    let relay = relay(5000).await;
    let (mut sub, publisher, name) = healthy_pair(&relay.url(), "a").await;
    for i in 0..50u32 {
        still_routes(&mut sub, &publisher, &name, &i.to_le_bytes()).await;
    }
    let stats = relay.stats();
    assert_eq!(stats.publishes_delivered, 50);
    relay.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn oversize_frame_closes_only_that_stream() {
    let relay = relay(5000).await;
    let url = relay.url();
    let (mut sub, publisher, name) = healthy_pair(&url, "b").await;
    let mut big = RawLink::connect(&url).await;
    let ack = big.subscribe(&"o/n/big/1".parse().expect("n"), 7).await;
    assert!(ack.success);
    big.send(publish(&name, &name, 1, vec![0u8; 5 * 1024 * 1024]))
        .await;
    let status = big.recv().await.expect_err("stream must end with a status");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("4194304"), "{}", status.message());
    still_routes(&mut sub, &publisher, &name, b"after oversize").await;
    relay.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn garbage_bytes_close_only_that_stream() {
    let relay = relay(5000).await;
    let url = relay.url();
    let (mut sub, publisher, name) = healthy_pair(&url, "c").await;
    let mut bad = RawLink::connect(&url).await;
    bad.send_raw(vec![0xff, 0xff, 0xff, 0xff, 0x0f]).await;
    let status = bad.recv().await.expect_err("stream must end with a status");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("could not decode"),
        "{}",
        status.message()
    );
    still_routes(&mut sub, &publisher, &name, b"after garbage").await;
    relay.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn bad_negotiation_and_silence_get_a_status() {
    let relay = relay(300).await;
    let url = relay.url();
    let (mut sub, publisher, name) = healthy_pair(&url, "d").await;

    let mut first_publish = RawLink::open(&url).await;
    first_publish.send(publish(&name, &name, 1, b"x")).await;
    let status = first_publish.recv().await.expect_err("closed");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("must be a link negotiation"),
        "{}",
        status.message()
    );

    let mut silent = RawLink::open(&url).await;
    let status = silent.recv().await.expect_err("closed");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");

    let mut empty = RawLink::connect(&url).await;
    empty.send_raw(Vec::new()).await; // Message{} after negotiation: dropped, link kept
    let ack = empty.subscribe(&"o/n/e/1".parse().expect("n"), 3).await;
    assert!(ack.success, "link survives an empty message: {ack:?}");

    still_routes(&mut sub, &publisher, &name, b"after bad negotiation").await;
    relay.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn closing_a_subscriber_removes_its_routes() {
    let relay = relay(5000).await;
    let url = relay.url();
    let name: SlimName = "o/n/gone/1".parse().expect("n");
    let mut sub = RawLink::connect(&url).await;
    assert!(sub.subscribe(&name, 1).await.success);
    let mut other = RawLink::connect(&url).await;
    assert!(other.subscribe(&name.clone(), 2).await.success);
    drop(sub);
    // Wait (bounded) until the relay has seen the close.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while relay.connections() != 2 {
        assert!(tokio::time::Instant::now() < deadline, "close not seen");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let publisher = RawLink::connect(&url).await;
    // Anycast now always picks the remaining subscriber.
    for i in 0..4u8 {
        publisher
            .send(publish(
                &"o/n/p".parse().expect("n"),
                &SlimName::new("o", "n", "gone"),
                1,
                vec![i],
            ))
            .await;
        let got = other.recv().await.expect("delivery");
        assert_eq!(blob_of(&got), Some(&[i][..]));
    }
    assert!(other.try_recv(Duration::from_millis(100)).await.is_none());
    relay.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn shutdown_ends_every_stream_with_unavailable() {
    let relay = relay(5000).await;
    let mut link = RawLink::connect(&relay.url()).await;
    let stopping = tokio::spawn(relay.shutdown());
    let status = link.recv().await.expect_err("stream ends");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("shutdown completes")
        .expect("join")
        .expect("clean");
}

#[tokio::test]
async fn slow_consumer_loses_only_its_own_messages() {
    // SLIM-TRANS-006: a receiver that never reads cannot stall the publisher or other receivers.
    let mut cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        queue_capacity: 2,
        ..ServerConfig::default()
    };
    cfg.relay.negotiation_timeout = Duration::from_secs(5);
    let relay = spawn(cfg).await.expect("relay starts");
    let url = relay.url();
    let channel: SlimName = "o/n/chan".parse().expect("n");
    let mut slow = RawLink::connect(&url).await;
    assert!(slow.subscribe(&channel, 1).await.success);
    let mut fast = RawLink::connect(&url).await;
    assert!(fast.subscribe(&channel, 1).await.success);
    let publisher = RawLink::connect(&url).await;
    let n = 300u32;
    for i in 0..n {
        let mut blob = vec![0u8; 32 * 1024];
        blob[..4].copy_from_slice(&i.to_le_bytes());
        publisher
            .send(publish(&"o/n/p".parse().expect("n"), &channel, 256, blob))
            .await;
        let got = fast.recv().await.expect("fast subscriber keeps receiving");
        assert_eq!(blob_of(&got).map(|b| &b[..4]), Some(&i.to_le_bytes()[..]));
    }
    assert!(
        relay.dropped_queue_full() > 0,
        "the slow consumer's queue must have overflowed"
    );
    // The slow consumer, once it reads, finds a bounded backlog and a working link.
    let mut backlog = 0;
    while let Some(Ok(_)) = slow.try_recv(Duration::from_millis(200)).await {
        backlog += 1;
    }
    assert!(backlog < n, "backlog {backlog} must be bounded");
    assert!(
        slow.subscribe(&"o/n/again".parse().expect("n"), 9)
            .await
            .success
    );
    relay.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn other_methods_are_unimplemented() {
    let relay = relay(5000).await;
    let channel = tonic::transport::Endpoint::from_shared(relay.url())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let path = http::uri::PathAndQuery::from_static("/dataplane.proto.v1.DataPlaneService/Other");
    let err = grpc
        .unary(
            tonic::Request::new(Vec::new()),
            path,
            slim_proto::raw::RawCodec,
        )
        .await
        .expect_err("no such method");
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
    assert!(err.message().contains("serves only"), "{}", err.message());
    // The relay still serves OpenChannel.
    let (mut sub, publisher, name) = healthy_pair(&relay.url(), "u").await;
    still_routes(&mut sub, &publisher, &name, b"after").await;
    relay.shutdown().await.expect("clean shutdown");
}
