//! Routing beyond the vector scenarios: forward_to, the delivered header, link indices, order.

use std::time::Duration;

use slim_proto::pb::{self, message::MessageType};

use super::{barrier, expect_payload, learn_index, pair, send_text, still_usable, PROMPT};
use crate::case::{ensure, Case, Ctx, Failure};
use crate::client::{self, event_text, Event};

pub(super) fn cases() -> Vec<Case> {
    let mut v = vec![
        Case::new(
            "routing/no-route-nothing-back",
            "a Publish that matches nothing is dropped silently and the link stays usable",
            &["SLIM-ROUTE-004"],
            |cx: Ctx| async move {
                let mut a = cx.link("A").await?;
                let nobody = cx.name("nobody", Some(1));
                a.send(client::publish(&nobody, &nobody, 1, b"void")).await?;
                a.expect_silence(cx.quiet, "nothing is sent back for an unroutable Publish").await?;
                still_usable(&cx, &mut a, 3, "an unroutable Publish").await
            },
        ),
        Case::new(
            "routing/forward-to-link",
            "a Publish with forward_to = a link's index reaches that link without a subscription",
            &["SLIM-ROUTE-008"],
            |cx: Ctx| async move {
                let b_name = cx.name("b", Some(1));
                let c_name = cx.name("c", Some(2));
                let mut b = cx.link("B").await?;
                let mut c = cx.link("C").await?;
                c.subscribe(&c_name, 1).await?;
                let b_idx = learn_index(&b, &b_name, &mut c, &c_name).await?;
                let a = cx.link("A").await?;
                let unsubscribed = cx.name("unsubscribed", Some(3));
                let mut m = client::publish(&c_name, &unsubscribed, 1, b"forwarded");
                if let Some(h) = slim_proto::validate::header_mut(&mut m) {
                    h.forward_to = Some(b_idx);
                }
                a.send(m).await?;
                expect_payload(&mut b, "forwarded").await?;
                Ok(())
            },
        ),
        Case::new(
            "routing/forward-to-bypasses-table",
            "a Publish with forward_to reaches only the named link, not the name's subscribers",
            &["SLIM-ROUTE-008"],
            |cx: Ctx| async move {
                let name = cx.name("svc", Some(1));
                let (a, mut b) = pair(&cx, &name).await?;
                let mut c = cx.link("C").await?;
                let c_name = cx.name("c", Some(2));
                c.subscribe(&c_name, 1).await?;
                let b_idx = learn_index(&b, &name, &mut c, &c_name).await?;
                let mut d = cx.link("D").await?;
                d.subscribe(&name, 1).await?;
                // To B by index, although both B and D subscribe the destination.
                let mut m = client::publish(&c_name, &name, 1, b"only-b");
                if let Some(h) = slim_proto::validate::header_mut(&mut m) {
                    h.forward_to = Some(b_idx);
                }
                a.send(m).await?;
                expect_payload(&mut b, "only-b").await?;
                d.expect_silence(cx.quiet, "forward_to bypasses the subscription table").await
            },
        ),
        Case::new(
            "routing/forward-to-unknown",
            "a Publish with forward_to naming no link is dropped and the sender's link stays usable",
            &["SLIM-ROUTE-008"],
            |cx: Ctx| async move {
                let name = cx.name("svc", Some(1));
                let (mut a, mut b) = pair(&cx, &name).await?;
                let mut m = client::publish(&name, &name, 1, b"to-nowhere");
                if let Some(h) = slim_proto::validate::header_mut(&mut m) {
                    h.forward_to = Some(987_654_321);
                }
                a.send(m).await?;
                barrier(&a, &name, &mut b, &name, "a Publish forwarded to a link that does not exist").await?;
                still_usable(&cx, &mut a, 4, "forward_to an unknown link").await
            },
        ),
        Case::new(
            "routing/delivered-header",
            "a delivered Publish has ttl-1, incoming_conn set, no recv_from/forward_to, and identical session, content and metadata",
            &["SLIM-ROUTE-009", "SLIM-ROUTE-010"],
            |cx: Ctx| async move {
                let name = cx.name("svc", Some(1));
                let (a, mut b) = pair(&cx, &name).await?;
                let mut m = client::publish(&name, &name, 1, b"exact");
                m.metadata.insert("k1".into(), "v1".into());
                m.metadata.insert("traceparent".into(), "00-abc-def-01".into());
                let (sent_session, sent_content) = match &m.message_type {
                    Some(MessageType::Publish(p)) => (p.session, p.msg.clone()),
                    _ => (None, None),
                };
                let sent_metadata = m.metadata.clone();
                a.send(m).await?;
                let got = expect_payload(&mut b, "exact").await?;
                let h = slim_proto::validate::header(&got).ok_or_else(|| Failure::violation("a header", "none"))?;
                ensure(h.ttl == slim_proto::DEFAULT_TTL - 1, format!("ttl {}", slim_proto::DEFAULT_TTL - 1), format!("ttl {}", h.ttl))?;
                ensure(h.incoming_conn.is_some(), "incoming_conn set", "incoming_conn absent")?;
                ensure(h.recv_from.is_none() && h.forward_to.is_none(), "no recv_from, no forward_to", format!("recv_from {:?}, forward_to {:?}", h.recv_from, h.forward_to))?;
                let (got_session, got_content) = match &got.message_type {
                    Some(MessageType::Publish(p)) => (p.session, p.msg.clone()),
                    _ => (None, None),
                };
                ensure(got_session == sent_session, format!("session {sent_session:?}"), format!("session {got_session:?}"))?;
                ensure(got_content == sent_content, "content unchanged", format!("content {got_content:?}"))?;
                ensure(got.metadata == sent_metadata, format!("metadata {sent_metadata:?}"), format!("metadata {:?}", got.metadata))
            },
        ),
        Case::new(
            "routing/incoming-conn-per-link",
            "incoming_conn is stable for one sending link and differs between links",
            &["SLIM-ROUTE-009"],
            |cx: Ctx| async move {
                let name = cx.name("svc", Some(1));
                let (a, mut b) = pair(&cx, &name).await?;
                let c = cx.link("C").await?;
                let a1 = learn_index(&a, &name, &mut b, &name).await?;
                let a2 = learn_index(&a, &name, &mut b, &name).await?;
                let c1 = learn_index(&c, &name, &mut b, &name).await?;
                ensure(a1 == a2, format!("the same incoming_conn for two Publishes from A ({a1})"), format!("{a1} then {a2}"))?;
                ensure(a1 != c1, "different incoming_conn for A and C", format!("both {a1}"))
            },
        ),
        Case::new(
            "routing/index-not-reused",
            "a closed link's index is not given to the next link",
            &["SLIM-ROUTE-011"],
            |cx: Ctx| async move {
                let name = cx.name("svc", Some(1));
                let (_a, mut b) = pair(&cx, &name).await?;
                let mut seen = Vec::new();
                for i in 0..3 {
                    let mut x = cx.link(&format!("X{i}")).await?;
                    seen.push(learn_index(&x, &name, &mut b, &name).await?);
                    x.close_send();
                    drop(x);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                let mut unique = seen.clone();
                unique.sort_unstable();
                unique.dedup();
                ensure(unique.len() == seen.len(), "three successive links get three different indices", format!("indices {seen:?}"))
            },
        ),
        Case::new(
            "routing/order-preserved",
            "500 Publishes from one link to one receiver arrive in the order sent",
            &["SLIM-ROUTE-012"],
            |cx: Ctx| async move {
                let name = cx.name("svc", Some(1));
                let (a, mut b) = pair(&cx, &name).await?;
                for i in 0..500 {
                    send_text(&a, &name, &name, &format!("seq-{i}")).await?;
                }
                for i in 0..500 {
                    match b.recv(PROMPT).await {
                        Event::Message(m) => {
                            let p = client::payload(&m).map(|p| String::from_utf8_lossy(p).into_owned());
                            ensure(p.as_deref() == Some(format!("seq-{i}").as_str()), format!("seq-{i}"), format!("{p:?}"))?;
                        }
                        other => return Err(Failure::violation(format!("seq-{i}"), event_text(&other))),
                    }
                }
                Ok(())
            },
        ),
        Case::new(
            "routing/ttl-zero-publish",
            "a Publish with ttl 0 is dropped",
            &["SLIM-ROUTE-010"],
            |cx: Ctx| async move {
                let name = cx.name("svc", Some(1));
                let (a, mut b) = pair(&cx, &name).await?;
                let mut m = client::publish(&name, &name, 1, b"ttl0");
                if let Some(h) = slim_proto::validate::header_mut(&mut m) {
                    h.ttl = 0;
                }
                a.send(m).await?;
                barrier(&a, &name, &mut b, &name, "a Publish with ttl 0").await
            },
        ),
        Case::new(
            "routing/ttl-one-subscribe",
            "a Subscribe with ttl 1 is neither acked nor installed",
            &["SLIM-ROUTE-010"],
            |cx: Ctx| async move {
                let name = cx.name("svc", Some(1));
                let mut b = cx.link("B").await?;
                let mut m = client::subscribe(&name, 91);
                if let Some(h) = slim_proto::validate::header_mut(&mut m) {
                    h.ttl = 1;
                }
                b.send(m).await?;
                match b.recv(cx.quiet).await {
                    Event::Silent => {}
                    Event::Message(pb::Message {
                        message_type: Some(MessageType::SubscriptionAck(ack)),
                        ..
                    }) if !ack.success => {}
                    other => return Err(Failure::violation("no ack for a Subscribe whose ttl expires", event_text(&other))),
                }
                let a = cx.link("A").await?;
                a.send(client::publish(&name, &name, 1, b"ttl1-sub")).await?;
                b.expect_silence(cx.quiet, "the expired Subscribe installed no route").await
            },
        ),
    ];
    v.extend(super::scenarios::cases());
    v
}
