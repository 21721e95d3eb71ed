//! Transport: the OpenChannel stream, the wire encoding, size limits, per-link queues.

use std::time::Duration;

use prost::Message as _;
use slim_proto::pb;

use super::{expect_payload, pair, send_text, still_serves, PROMPT};
use crate::case::{ensure, Case, Ctx, Failure};
use crate::client::{self, status_text, Event};

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "transport/open-channel",
            "OpenChannel is served as a bidirectional stream and carries a negotiation both ways",
            &["SLIM-TRANS-001", "SLIM-TRANS-002"],
            open_channel,
        ),
        Case::new(
            "transport/concurrent-links",
            "20 links open at once are each an independent link with its own routes",
            &["SLIM-TRANS-001"],
            concurrent_links,
        ),
        Case::new(
            "transport/max-size-delivered",
            "a Publish of just under 4 MiB is accepted and delivered",
            &["SLIM-TRANS-003"],
            max_size,
        )
        .timeout(Duration::from_secs(60)),
        Case::new(
            "transport/oversize-ends-stream",
            "a message over 4 MiB ends its stream, removes its routes, and affects no other link",
            &["SLIM-TRANS-003", "SLIM-TRANS-004", "SLIM-VAL-005"],
            oversize,
        )
        .timeout(Duration::from_secs(60)),
        Case::new(
            "transport/undecodable-frame",
            "bytes that are not a Message end that stream only, with its routes",
            &["SLIM-VAL-005", "SLIM-TRANS-005", "SLIM-TRANS-002"],
            garbage,
        ),
    ]
}

/// Cases that load the target heavily; they run last so a target they wedge cannot take
/// the verdicts of other cases down with it.
pub(super) fn heavy_cases() -> Vec<Case> {
    vec![Case::new(
        "transport/slow-consumer-isolation",
        "a receiver that stops reading delays neither the sender nor other receivers",
        &["SLIM-TRANS-006"],
        slow_consumer,
    )
    .timeout(Duration::from_secs(60))]
}

async fn open_channel(cx: Ctx) -> Result<(), Failure> {
    let mut a = cx.raw_link("A").await?;
    let reply = a.negotiate(|_| {}).await?;
    ensure(
        reply.is_reply,
        "the node answers the negotiation on the same stream",
        format!("is_reply={}", reply.is_reply),
    )
}

async fn concurrent_links(cx: Ctx) -> Result<(), Failure> {
    let mut links = Vec::new();
    for i in 0..20u128 {
        let mut l = cx.link(&format!("L{i}")).await?;
        l.subscribe(&cx.name("many", Some(i + 1)), 1).await?;
        links.push(l);
    }
    let sender = cx.link("S").await?;
    let src = cx.name("sender", None);
    for i in 0..20u128 {
        send_text(
            &sender,
            &src,
            &cx.name("many", Some(i + 1)),
            &format!("to-{i}"),
        )
        .await?;
    }
    for (i, l) in links.iter_mut().enumerate() {
        expect_payload(l, &format!("to-{i}")).await?;
    }
    Ok(())
}

/// A Publish whose encoding is exactly `total` bytes (payload padded).
fn publish_of_size(
    src: &slim_proto::names::SlimName,
    dst: &slim_proto::names::SlimName,
    total: usize,
    link: &client::Link,
) -> pb::Message {
    let mut m = client::publish(src, dst, 1, b"");
    link.sign(&mut m);
    let base = m.encoded_len();
    // The payload length's varint grows with the payload; adjust until the size is exact.
    let mut pad = total.saturating_sub(base + 4);
    loop {
        let mut probe = client::publish(src, dst, 1, vec![b'x'; pad]);
        link.sign(&mut probe);
        let len = probe.encoded_len();
        if len >= total || pad == 0 {
            return probe;
        }
        pad += total - len;
    }
}

async fn max_size(cx: Ctx) -> Result<(), Failure> {
    let name = cx.name("big", Some(1));
    let (a, mut b) = pair(&cx, &name).await?;
    // Leave room for what the node adds on egress (incoming_conn, a re-signed MAC).
    let m = publish_of_size(&name, &name, slim_proto::MAX_MESSAGE_SIZE - 256, &a);
    let size = m.encoded_len();
    a.send_message(m).await?;
    match b.recv(Duration::from_secs(20)).await {
        Event::Message(m) if client::payload(&m).is_some_and(|p| p.len() > 1 << 20) => Ok(()),
        other => Err(Failure::violation(
            format!("a {size}-byte Publish (under the 4 MiB limit) is delivered"),
            client::event_text(&other),
        )),
    }
}

async fn oversize(cx: Ctx) -> Result<(), Failure> {
    let name = cx.name("svc", None);
    let mut a = cx.link("A").await?;
    a.subscribe(&name, 1).await?;
    let mut b = cx.link("B").await?;
    b.subscribe(&name, 2).await?;
    let m = publish_of_size(
        &name,
        &cx.name("elsewhere", None),
        slim_proto::MAX_MESSAGE_SIZE + 1,
        &a,
    );
    let size = m.encoded_len();
    a.send_message(m).await?;
    let status = a.expect_end(Duration::from_secs(10)).await.map_err(|_| {
        Failure::violation(
            format!("the node ends the stream that carried a {size}-byte message"),
            "the stream stayed open",
        )
    })?;
    if status.code() != tonic::Code::ResourceExhausted {
        cx.finding(
            "SLIM-TRANS-004",
            "the stream ends with RESOURCE_EXHAUSTED stating the limit",
            status_text(&status),
        );
    }
    // A's routes must be gone: every anycast Publish now goes to B.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let c = cx.link("C").await?;
    let src = cx.name("sender", None);
    for i in 0..4 {
        send_text(&c, &src, &name, &format!("after-{i}")).await?;
    }
    for i in 0..4 {
        expect_payload(&mut b, &format!("after-{i}")).await.map_err(|f| {
            let (_, o) = f.texts();
            Failure::violation(
                "after A's stream ended, every anycast Publish to the shared name reaches B (A's subscription was removed)",
                format!("for Publish {i}: {o}"),
            )
        })?;
    }
    still_serves(&cx, "an oversize message").await
}

async fn garbage(cx: Ctx) -> Result<(), Failure> {
    let name = cx.name("svc", None);
    let mut a = cx.link("A").await?;
    a.subscribe(&name, 1).await?;
    let mut b = cx.link("B").await?;
    b.subscribe(&name, 2).await?;
    // A length-delimited field 1 whose length runs past the end: not a valid Message.
    a.send_raw(
        vec![0x0a, 0xff, 0xff, 0x03, 0x01],
        "5 bytes that do not decode as a Message",
    )
    .await?;
    match a.recv(PROMPT).await {
        Event::Ended(s) => {
            if s.code() != tonic::Code::InvalidArgument {
                cx.finding(
                    "SLIM-TRANS-005",
                    "the stream ends with INVALID_ARGUMENT",
                    status_text(&s),
                );
            }
        }
        other => cx.finding(
            "SLIM-TRANS-005",
            "the stream that carried undecodable bytes ends with INVALID_ARGUMENT",
            client::event_text(&other),
        ),
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let c = cx.link("C").await?;
    let src = cx.name("sender", None);
    for i in 0..4 {
        send_text(&c, &src, &name, &format!("after-{i}")).await?;
    }
    for i in 0..4 {
        if let Err(f) = expect_payload(&mut b, &format!("after-{i}")).await {
            cx.finding(
                "SLIM-TRANS-005",
                "the failed link's subscriptions are removed: every anycast Publish reaches B",
                format!("for Publish {i}: {}", f.texts().1),
            );
            break;
        }
    }
    still_serves(&cx, "undecodable bytes").await
}

async fn slow_consumer(cx: Ctx) -> Result<(), Failure> {
    const N: usize = 3000;
    let name = cx.name("fan", None);
    // B subscribes and then never reads again; C reads everything.
    let mut b = cx.link("B").await?;
    b.subscribe(&name, 1).await?;
    let mut c = cx.link("C").await?;
    c.subscribe(&name, 2).await?;
    let a = cx.link("A").await?;
    let src = cx.name("sender", None);
    let tx = a
        .sender()
        .ok_or_else(|| Failure::Harness("sender closed".into()))?;
    let mut frames = Vec::with_capacity(N);
    for i in 0..N {
        let mut m = client::publish(&src, &name, slim_proto::BROADCAST_FANOUT, vec![b'x'; 1024]);
        if let Some(pb::message::MessageType::Publish(p)) = &mut m.message_type {
            if let Some(s) = &mut p.session {
                s.message_id = i as u32;
            }
        }
        a.sign(&mut m);
        frames.push(m.encode_to_vec());
    }
    let sending = tokio::spawn(async move {
        for f in frames {
            if tx.send(f).await.is_err() {
                return false;
            }
        }
        true
    });
    let mut got = 0usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got < N {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.recv(left.min(Duration::from_secs(5))).await {
            Event::Message(m) if client::payload(&m).is_some() => got += 1,
            Event::Message(_) => {}
            other => {
                return Err(Failure::violation(
                    format!("C receives all {N} broadcast Publishes while B does not read"),
                    format!("C received {got}, then: {}", client::event_text(&other)),
                ))
            }
        }
    }
    let sent_all = sending.await.unwrap_or(false);
    ensure(
        sent_all,
        "the sender's stream accepts all its Publishes",
        "the sender's stream closed",
    )?;
    drop(b);
    Ok(())
}
