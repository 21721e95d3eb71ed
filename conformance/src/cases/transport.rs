//! Transport: the OpenChannel stream, the wire encoding, size limits, per-link queues.

use std::time::Duration;

use prost::Message as _;
use slim_proto::pb;

use super::{
    anycasts_all_reach, before_probe_ack, expect_payload, pair, send_text, still_serves,
    subscribe_marker, PROMPT,
};
use crate::case::{ensure, Case, Ctx, Failure};
use crate::client::{self, status_text, Event, Link};

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
            "a Publish of exactly 4 MiB (4194304 bytes) is accepted and delivered",
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
            &[
                "SLIM-VAL-005",
                "SLIM-TRANS-005",
                "SLIM-TRANS-002",
                "SLIM-SUB-008",
            ],
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

/// A signed Publish whose encoding is exactly `total` bytes: the payload is padded, and where a
/// length prefix growing by a byte skips `total`, a payload_type of one or two bytes fills the gap.
fn publish_of_size(
    src: &slim_proto::names::SlimName,
    dst: &slim_proto::names::SlimName,
    total: usize,
    link: &client::Link,
) -> pb::Message {
    let build = |pad: usize, type_len: usize| {
        let mut m = client::publish(src, dst, 1, vec![b'x'; pad]);
        if let Some(pb::message::MessageType::Publish(p)) = &mut m.message_type {
            if let Some(pb::content::ContentType::AppPayload(a)) =
                p.msg.as_mut().and_then(|c| c.content_type.as_mut())
            {
                a.payload_type = "t".repeat(type_len);
            }
        }
        link.sign(&mut m);
        m
    };
    let base = build(0, 0).encoded_len();
    let estimate = total.saturating_sub(base);
    for type_len in 0..3 {
        for pad in estimate.saturating_sub(16)..estimate + 16 {
            let m = build(pad, type_len);
            if m.encoded_len() == total {
                return m;
            }
        }
    }
    build(estimate, 0)
}

async fn max_size(cx: Ctx) -> Result<(), Failure> {
    let name = cx.name("big", Some(1));
    let (mut a, mut b) = pair(&cx, &name).await?;
    // Exactly at the limit: one byte more is the oversize case.
    let m = publish_of_size(&name, &name, slim_proto::MAX_MESSAGE_SIZE, &a);
    let size = m.encoded_len();
    if size != slim_proto::MAX_MESSAGE_SIZE {
        return Err(Failure::Harness(format!(
            "built a {size}-byte Publish instead of {}",
            slim_proto::MAX_MESSAGE_SIZE
        )));
    }
    a.send_message(m).await?;
    match b.recv(Duration::from_secs(20)).await {
        Event::Message(m) if client::payload(&m).is_some_and(|p| p.len() > 1 << 20) => {}
        other => {
            return Err(Failure::violation(
                format!("a {size}-byte Publish (exactly the 4 MiB limit) is delivered"),
                client::event_text(&other),
            ))
        }
    }
    // And the sender's link was not ended for it.
    before_probe_ack(&cx, &mut a, 2, "a Publish of exactly 4 MiB")
        .await
        .map(|_| ())
}

async fn oversize(cx: Ctx) -> Result<(), Failure> {
    let name = cx.name("svc", None);
    let mut a = cx.link("A").await?;
    a.subscribe(&name, 1).await?;
    let mut b = cx.link("B").await?;
    b.subscribe(&name, 2).await?;
    subscribe_marker(&cx, &mut b, 3).await?;
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
    let c = cx.link("C").await?;
    anycasts_all_reach(
        &cx,
        &c,
        &name,
        &mut b,
        4,
        "A's stream ended on an oversize message",
    )
    .await?;
    still_serves(&cx, "an oversize message").await
}

async fn garbage(cx: Ctx) -> Result<(), Failure> {
    let name = cx.name("svc", None);
    let mut a = cx.link("A").await?;
    a.subscribe(&name, 1).await?;
    let mut b = cx.link("B").await?;
    b.subscribe(&name, 2).await?;
    subscribe_marker(&cx, &mut b, 3).await?;
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
    // The stream ended (above, or reset by the runner now): its routes must be gone.
    drop(a);
    let c = cx.link("C").await?;
    // Removing an ended link's routes is a MUST (SLIM-SUB-008), whatever the status.
    anycasts_all_reach(
        &cx,
        &c,
        &name,
        &mut b,
        4,
        "A's stream ended on undecodable bytes",
    )
    .await
    .map_err(|f| {
        let (e, o) = f.texts();
        Failure::violation_of("SLIM-SUB-008", e, o)
    })?;
    still_serves(&cx, "undecodable bytes").await
}

/// B subscribes and stops reading; A broadcasts 10 000 Publishes of 1 KiB (about 10 MiB) in
/// windows of 200, and C, the other subscriber, must receive each window in full before the next
/// is sent, so C itself is never the slow one, however busy the runner's machine. A fifth of the
/// way in, when B's queue is long full, B asks for an ack, and the flood goes on for 40 more
/// windows. Then B reads again: the ack must be there (acks are never dropped), and B must have
/// missed Publishes (a node that delivers all 10 MiB to B held them all: its queue is unbounded).
async fn slow_consumer(cx: Ctx) -> Result<(), Failure> {
    const N: usize = 10_000;
    const WINDOW: usize = 200;
    let name = cx.name("fan", None);
    // A small HTTP/2 window keeps what the runner's side buffers for B to 64 KiB.
    let mut b = Link::open_with_window(&cx.target, "B", &cx.log, Some(SLOW_WINDOW)).await?;
    b.negotiate(|_| {}).await?;
    b.subscribe(&name, 1).await?;
    let mut c = cx.link("C").await?;
    c.subscribe(&name, 2).await?;
    let a = cx.link("A").await?;
    let src = cx.name("sender", None);
    let tx = a
        .sender()
        .ok_or_else(|| Failure::Harness("sender closed".into()))?;
    let mut got = 0usize;
    for window in 0..N / WINDOW {
        if window == N / WINDOW / 5 {
            b.send(client::subscribe(&cx.name("late", Some(1)), 99))
                .await?;
        }
        for i in window * WINDOW..(window + 1) * WINDOW {
            let mut m =
                client::publish(&src, &name, slim_proto::BROADCAST_FANOUT, vec![b'x'; 1024]);
            if let Some(pb::message::MessageType::Publish(p)) = &mut m.message_type {
                if let Some(s) = &mut p.session {
                    s.message_id = i as u32;
                }
            }
            a.sign(&mut m);
            if tx.send(m.encode_to_vec()).await.is_err() {
                return Err(Failure::violation(
                    "the sender's stream accepts all its Publishes",
                    format!("the sender's stream closed after {i} Publishes"),
                ));
            }
        }
        while got < (window + 1) * WINDOW {
            match c.recv(PROMPT).await {
                Event::Message(m) if client::payload(&m).is_some() => got += 1,
                Event::Message(_) => {}
                other => {
                    return Err(Failure::violation(
                        format!("C receives all {N} broadcast Publishes while B does not read (neither the sender nor C is held up by B)"),
                        format!("C received {got}, then: {}", client::event_text(&other)),
                    ))
                }
            }
        }
    }
    // B drains its link: up to the ack, then (once A sends an end marker) everything after it.
    let mut to_b = 0usize;
    let mut acked = false;
    loop {
        match b.recv(PROMPT).await {
            Event::Message(pb::Message {
                message_type: Some(pb::message::MessageType::SubscriptionAck(ack)),
                ..
            }) if ack.subscription_id == 99 && !acked => {
                acked = true;
                a.send(client::publish(
                    &src,
                    &name,
                    slim_proto::BROADCAST_FANOUT,
                    b"end",
                ))
                .await?;
            }
            Event::Message(m) if client::payload(&m) == Some(b"end".as_slice()) => break,
            Event::Message(m) if client::payload(&m).is_some() => to_b += 1,
            Event::Message(_) => {}
            other if !acked => {
                return Err(Failure::violation(
                    "B's SubscriptionAck 99 arrives once B reads again (acks are never dropped)",
                    format!(
                        "B received {to_b} Publishes, then {}",
                        client::event_text(&other)
                    ),
                ))
            }
            other => {
                return Err(Failure::violation(
                    "the end marker sent once B reads again reaches B",
                    format!(
                        "B received {to_b} Publishes and its ack, then {}",
                        client::event_text(&other)
                    ),
                ))
            }
        }
    }
    cx.note(format!(
        "B, which did not read, got {to_b} of {N} Publishes (the rest were dropped for it)"
    ));
    ensure(
        to_b < N,
        format!("a bounded queue for B: B misses some of {N} Publishes of 1 KiB sent while it did not read"),
        format!("B received all {N} (about 10 MiB held for one link that did not read)"),
    )
}

/// The HTTP/2 flow-control window of the slow consumer's link.
const SLOW_WINDOW: u32 = 64 * 1024;
