//! Subscriptions and acks beyond the routing vectors: ownership, recv_from/forward_to, scale.

use std::time::Duration;

use prost::Message as _;
use slim_proto::pb::{self, message::MessageType};

use super::{
    expect_no_route, expect_nothing_before_probe, expect_payload, learn_index, pair, send_text,
    subscribe_marker, PROMPT,
};
use crate::case::{ensure, Case, Ctx, Failure};
use crate::client::{self, event_text, payload, Event, Link};

/// Sends `n` Subscribes (ids 1..=n, names `svc/<i>`) from `link` while reading acks; returns the
/// acks in arrival order, up to the first refusal when `stop_at_refusal`. Sending and reading run
/// concurrently so neither side's flow control can stall the other.
///
/// Bounded by count and by silence, not by a total time: it stops after `n` acks, or when the
/// node sends nothing for [`PROMPT`] (it stopped answering), or when the link ends. A slow
/// machine or a delayed link then takes longer, but reaches the same verdict.
async fn subscribe_many(
    cx: &Ctx,
    link: &mut Link,
    n: u64,
    stop_at_refusal: bool,
) -> Result<Vec<pb::SubscriptionAck>, Failure> {
    let tx = link
        .sender()
        .ok_or_else(|| Failure::Harness("sender closed".into()))?;
    let mut frames = Vec::with_capacity(n as usize);
    for i in 1..=n {
        let mut m = client::subscribe(&cx.name("many", Some(u128::from(i))), i);
        link.sign(&mut m);
        frames.push(m.encode_to_vec());
    }
    let sending = tokio::spawn(async move {
        for f in frames {
            if tx.send(f).await.is_err() {
                break;
            }
        }
    });
    let mut acks = Vec::with_capacity(n as usize);
    while (acks.len() as u64) < n {
        match link.recv(PROMPT).await {
            Event::Message(pb::Message {
                message_type: Some(MessageType::SubscriptionAck(a)),
                ..
            }) => {
                let refused = !a.success;
                acks.push(a);
                if refused && stop_at_refusal {
                    break;
                }
            }
            Event::Message(_) => {}
            Event::Silent | Event::Ended(_) => break,
        }
    }
    sending.abort();
    Ok(acks)
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "subscriptions/ack-exactly-once",
            "a Subscribe with a non-zero id gets exactly one ack, with success and an empty error",
            &["SLIM-SUB-001"],
            |cx: Ctx| async move {
                let mut a = cx.link("A").await?;
                a.send(client::subscribe(&cx.name("svc", Some(1)), 61)).await?;
                let ack = a.expect_ack(61, PROMPT).await?;
                if !ack.success || !ack.error.is_empty() {
                    return Err(Failure::violation("success true, empty error", format!("success={} error={:?}", ack.success, ack.error)));
                }
                expect_nothing_before_probe(&cx, &mut a, 62, "Subscribe 61", "exactly one ack for Subscribe 61, and nothing else before the next Subscribe's ack").await
            },
        ),
        Case::new(
            "subscriptions/ack-not-routed",
            "an ack goes only to the subscribing link, never to other subscribers of the name",
            &["SLIM-SUB-001"],
            |cx: Ctx| async move {
                let name = cx.name("svc", Some(1));
                let (mut a, mut b) = pair(&cx, &name).await?;
                a.subscribe(&name, 62).await?;
                // A's next Publish reaches B after anything the node sent B for A's Subscribe.
                send_text(&a, &name, &name, "marker").await?;
                match b.recv(PROMPT).await {
                    Event::Message(m) if client::payload(&m) == Some(b"marker".as_slice()) => Ok(()),
                    other => Err(Failure::violation(
                        "A's ack goes to A only: B's next message is A's marker Publish",
                        event_text(&other),
                    )),
                }
            },
        ),
        Case::new(
            "subscriptions/unsubscribe-foreign",
            "an Unsubscribe cannot remove a subscription held by another link",
            &["SLIM-SUB-012", "SLIM-SUB-005"],
            |cx: Ctx| async move {
                let name = cx.name("svc", Some(1));
                let (a, mut b) = pair(&cx, &name).await?;
                let mut c = cx.link("C").await?;
                // C tries to remove B's subscription 1 to the same name.
                c.send(client::unsubscribe(&name, 1)).await?;
                let ack = c.expect_ack(1, PROMPT).await?;
                if ack.success {
                    return Err(Failure::violation("the foreign Unsubscribe is refused (ack success false)", "acked with success"));
                }
                if !ack.error.starts_with("subscription id not found") && !ack.error.starts_with("connection id not found") {
                    cx.finding("SLIM-SUB-005", "error \"subscription id not found: 1\"", format!("error {:?}", ack.error));
                }
                send_text(&a, &name, &name, "still-b").await?;
                expect_payload(&mut b, "still-b").await.map(|_| ())
            },
        ),
        Case::new(
            "subscriptions/recv-from-foreign",
            "a Subscribe whose recv_from names another client's link is refused and installs nothing there",
            &["SLIM-SUB-010"],
            |cx: Ctx| async move {
                let me = cx.name("a", Some(1));
                let probe = cx.name("probe", Some(2));
                let mut a = cx.link("A").await?;
                subscribe_marker(&cx, &mut a, 5).await?;
                let mut b = cx.link("B").await?;
                b.subscribe(&probe, 1).await?;
                let a_index = learn_index(&a, &me, &mut b, &probe).await?;
                // B asks the node to subscribe *A's* link to a name A never asked for.
                let target = cx.name("hijack", Some(3));
                let mut m = client::subscribe(&target, 71);
                if let Some(h) = slim_proto::validate::header_mut(&mut m) {
                    h.recv_from = Some(a_index);
                }
                b.send(m).await?;
                let ack = b.expect_ack(71, PROMPT).await?;
                let c = cx.link("C").await?;
                expect_no_route(&cx, &c, &mut a, &target, "a Publish to the name B subscribed for A's link")
                    .await
                    .map_err(|f| f.context(&format!("B's Subscribe was acked success={} error={:?}", ack.success, ack.error)))?;
                ensure(
                    !ack.success,
                    "the Subscribe naming another link in recv_from is refused (ack success false)",
                    "acked with success (though no route reached A)",
                )
            },
        ),
        Case::new(
            "subscriptions/recv-from-unknown",
            "a Subscribe whose recv_from names no link is refused with \"connection not found: <n>\"",
            &["SLIM-SUB-010", "SLIM-SUB-005"],
            |cx: Ctx| async move {
                let mut a = cx.link("A").await?;
                let mut m = client::subscribe(&cx.name("svc", Some(1)), 72);
                if let Some(h) = slim_proto::validate::header_mut(&mut m) {
                    h.recv_from = Some(987_654_321);
                }
                a.send(m).await?;
                let ack = a.expect_ack(72, PROMPT).await?;
                if ack.success {
                    return Err(Failure::violation("ack success false", "acked with success"));
                }
                if ack.error != "connection not found: 987654321" {
                    cx.finding("SLIM-SUB-005", "error \"connection not found: 987654321\"", format!("error {:?}", ack.error));
                }
                Ok(())
            },
        ),
        Case::new(
            "subscriptions/unsubscribe-recv-from-foreign",
            "an Unsubscribe whose recv_from names another link cannot cut that link's route",
            &["SLIM-SUB-010"],
            |cx: Ctx| async move {
                let name = cx.name("svc", Some(1));
                let (a, mut b) = pair(&cx, &name).await?;
                let a_name = cx.name("a", Some(9));
                // C learns B's index from a Publish B sends it.
                let mut c = cx.link("C").await?;
                let c_name = cx.name("c", Some(8));
                c.subscribe(&c_name, 1).await?;
                let b_idx = learn_index(&b, &name, &mut c, &c_name).await?;
                let mut m = client::unsubscribe(&name, 1);
                if let Some(h) = slim_proto::validate::header_mut(&mut m) {
                    h.recv_from = Some(b_idx);
                }
                c.send(m).await?;
                let ack = c.expect_ack(1, PROMPT).await?;
                send_text(&a, &a_name, &name, "still-b").await?;
                expect_payload(&mut b, "still-b").await.map_err(|f| {
                    Failure::violation("B keeps its subscription after C's Unsubscribe naming B's link", f.texts().1)
                })?;
                ensure(
                    !ack.success,
                    "C's Unsubscribe naming B's link is refused (ack success false)",
                    "acked with success (though B kept its subscription)",
                )
            },
        ),
        Case::new(
            "subscriptions/forward-to-on-subscribe",
            "a Subscribe with forward_to is refused with an ack, or sent to the named link signed with its key and acked after that link's ack",
            &["SLIM-SUB-013", "SLIM-SUB-011", "SLIM-MAC-003", "SLIM-SUB-001"],
            forward_to_on_subscribe,
        )
        .timeout(Duration::from_secs(40)),
        Case::new(
            "subscriptions/many-on-one-link",
            "2000 subscriptions on one link are each acked with success and all routed",
            &["SLIM-SUB-001", "SLIM-SUB-003"],
            |cx: Ctx| async move {
                const N: u64 = 2000;
                let mut a = cx.link("A").await?;
                let acks = subscribe_many(&cx, &mut a, N, false).await?;
                let ok = acks.iter().filter(|x| x.success).count() as u64;
                if ok != N {
                    let first_bad = acks.iter().find(|x| !x.success).map(|x| format!("{:?}", x.error)).unwrap_or_else(|| "none".into());
                    return Err(Failure::violation(format!("{N} acks with success"), format!("{} acks, {ok} with success; first refusal error {first_bad}", acks.len())));
                }
                let b = cx.link("B").await?;
                let src = cx.name("sender", None);
                for i in [1u128, 1000, 2000] {
                    send_text(&b, &src, &cx.name("many", Some(i)), &format!("to-{i}")).await?;
                    expect_payload(&mut a, &format!("to-{i}")).await?;
                }
                Ok(())
            },
        )
        // A safety net only: the probe is bounded by count and by silence (subscribe_many).
        .timeout(Duration::from_secs(120)),
        Case::new(
            "subscriptions/barrier-sound",
            "a broadcast Publish sent before a marker reaches each subscriber before the marker (what every barrier of this suite relies on)",
            &["SLIM-ROUTE-012", "SLIM-ROUTE-006"],
            |cx: Ctx| async move {
                let name = cx.name("svc", Some(1));
                let (a, mut b) = pair(&cx, &name).await?;
                let mut c = cx.link("C").await?;
                c.subscribe(&name, 2).await?;
                for text in ["first", "marker"] {
                    a.send(client::publish(&name, &name, slim_proto::BROADCAST_FANOUT, text.as_bytes())).await?;
                }
                for rx in [&mut b, &mut c] {
                    for text in ["first", "marker"] {
                        expect_payload(rx, text).await.map_err(|f| {
                            f.context(&format!("{} must see the Publish sent first before the marker sent after it", rx.label()))
                        })?;
                    }
                }
                Ok(())
            },
        ),
    ]
}

/// C asks the node to install a subscription on B's link through `forward_to` (how nodes propagate
/// routes to peers). A node may refuse (SLIM-SUB-011); one that accepts must send the Subscribe on
/// B's link, signed with B's link key, and ack C only after B's ack (SLIM-SUB-013).
async fn forward_to_on_subscribe(cx: Ctx) -> Result<(), Failure> {
    let name = cx.name("svc", Some(1));
    let (a, mut b) = pair(&cx, &name).await?;
    let mut c = cx.link("C").await?;
    let c_name = cx.name("c", Some(8));
    c.subscribe(&c_name, 1).await?;
    let b_idx = learn_index(&b, &name, &mut c, &c_name).await?;
    let fwd = cx.name("fwd", Some(5));
    let mut m = client::subscribe(&fwd, 81);
    if let Some(h) = slim_proto::validate::header_mut(&mut m) {
        h.forward_to = Some(b_idx);
    }
    c.send(m).await?;
    // Whichever comes first: C's answer (a refusal) or the Subscribe on B's link.
    let first = tokio::select! {
        on_c = c.recv(PROMPT) => Err(on_c),
        on_b = b.recv(PROMPT) => Ok(on_b),
    };
    match first {
        Err(Event::Message(pb::Message {
            message_type: Some(MessageType::SubscriptionAck(ack)),
            ..
        })) if ack.subscription_id == 81 => {
            if ack.success {
                return Err(Failure::violation(
                    "C's success ack comes only after the Subscribe was sent on B's link and B acked it",
                    "C was acked with success, and B received nothing",
                ));
            }
            // Nothing may have reached B either: A's next Publish is B's next message.
            send_text(&a, &name, &name, "marker").await?;
            match b.recv(PROMPT).await {
                Event::Message(m) if payload(&m) == Some(b"marker".as_slice()) => {}
                other => {
                    return Err(Failure::violation(
                        "a refused Subscribe is not sent on B's link",
                        event_text(&other),
                    ))
                }
            }
            cx.observe(format!(
                "the node refuses Subscribes with forward_to: {:?}",
                ack.error
            ));
            Ok(())
        }
        Err(other) => Err(Failure::violation_of(
            "SLIM-SUB-001",
            "one SubscriptionAck for 81 on C (a refusal), or the Subscribe forwarded to B",
            format!("C: {}", event_text(&other)),
        )),
        Ok(Event::Message(
            ref fwd_msg @ pb::Message {
                message_type: Some(MessageType::Subscribe(ref sub)),
                ..
            },
        )) => {
            let h = slim_proto::validate::header(fwd_msg)
                .ok_or_else(|| Failure::violation("a header on the forwarded Subscribe", "none"))?;
            let mac = b
                .mac
                .as_ref()
                .ok_or_else(|| Failure::Harness("B has no link key".into()))?;
            mac.verify(h).map_err(|e| {
                Failure::violation_of(
                    "SLIM-MAC-003",
                    "the Subscribe the node sends on B's link carries a MAC that verifies under B's link key",
                    format!("{e}; {}", client::describe(fwd_msg)),
                )
            })?;
            // B answers like a peer node.
            b.send_message(client::wrap(MessageType::SubscriptionAck(
                pb::SubscriptionAck {
                    subscription_id: sub.subscription_id,
                    success: true,
                    error: String::new(),
                },
            )))
            .await?;
            match c.recv(Duration::from_secs(25)).await {
                Event::Message(pb::Message {
                    message_type: Some(MessageType::SubscriptionAck(ack)),
                    ..
                }) if ack.subscription_id == 81 && ack.success => {
                    cx.note("the node forwarded the Subscribe to B and acked C after B's ack");
                    Ok(())
                }
                other => Err(Failure::violation(
                    "after B's ack, C gets SubscriptionAck{81, success}",
                    event_text(&other),
                )),
            }
        }
        Ok(other) => Err(Failure::violation(
            "a refusal ack for 81 on C, or the Subscribe on B's link",
            format!("B: {}", event_text(&other)),
        )),
    }
}

/// The subscription-limit probe: heavy, run last.
pub(super) fn heavy_cases() -> Vec<Case> {
    vec![
        Case::new(
            "subscriptions/limit-per-link",
            "the node bounds subscriptions per link and refuses one beyond the bound, stating the limit; what it acked is routed",
            &["SLIM-SUB-009", "SLIM-SUB-003"],
            |cx: Ctx| async move {
                // Probe up to 20 000 subscriptions, stopping at the first refusal; a bound above
                // that is reported as not found (a WARN, not a FAIL: SLIM-SUB-009 is a SHOULD).
                // No time limit on the probe: a busy machine must not turn a bound of 10 000
                // into "no bound found".
                const N: u64 = 20_000;
                let mut a = cx.link("A").await?;
                let acks = subscribe_many(&cx, &mut a, N, true).await?;
                let accepted = acks.iter().filter(|x| x.success).count();
                // Whatever the bound, a success ack means the route is in force (SLIM-SUB-003):
                // the last subscription acked with success must be routed.
                if let Some(last) = acks.iter().filter(|x| x.success).map(|x| x.subscription_id).max() {
                    let b = cx.link("B").await?;
                    let src = cx.name("sender", None);
                    send_text(&b, &src, &cx.name("many", Some(u128::from(last))), "last-acked").await?;
                    // Deliveries queue behind any acks still arriving.
                    loop {
                        match a.recv(PROMPT).await {
                            Event::Message(m) if payload(&m) == Some(b"last-acked".as_slice()) => break,
                            Event::Message(pb::Message { message_type: Some(MessageType::SubscriptionAck(_)), .. }) => {}
                            other => {
                                return Err(Failure::violation_of(
                                    "SLIM-SUB-003",
                                    format!("subscription {last}, acked with success, is in force: a Publish to its name reaches A"),
                                    event_text(&other),
                                ))
                            }
                        }
                    }
                }
                match acks.iter().find(|x| !x.success) {
                    Some(r) => {
                        cx.note(format!("{accepted} subscriptions accepted; first refusal: {:?}", r.error));
                        if r.error.chars().any(|c| c.is_ascii_digit()) || r.error.contains("limit") {
                            Ok(())
                        } else {
                            Err(Failure::violation("the refusal states the limit", format!("error {:?}", r.error)))
                        }
                    }
                    None => Err(Failure::violation(
                        format!("a refusal within {N} subscriptions on one link"),
                        format!("{} acks received, all with success", acks.len()),
                    )),
                }
            },
        )
        // A safety net only: the probe is bounded by count and by silence (subscribe_many).
        .timeout(Duration::from_secs(240)),
    ]
}
