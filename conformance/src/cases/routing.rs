//! Routing beyond the vector scenarios: forward_to, the delivered header, link indices, order.

use slim_proto::pb::message::MessageType;

use super::{
    barrier, close_and_wait, expect_no_route, expect_not_accepted, expect_nothing_before_probe,
    expect_payload, learn_index, marker_name, pair, send_text, still_usable, subscribe_marker,
    PROMPT,
};
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
                expect_nothing_before_probe(&cx, &mut a, 3, "an unroutable Publish", "nothing is sent back for an unroutable Publish").await
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
            "a Publish with forward_to reaches only the named link, not the subscriber of its destination",
            &["SLIM-ROUTE-008"],
            |cx: Ctx| async move {
                let name = cx.name("svc", Some(1));
                let (a, mut b) = pair(&cx, &name).await?;
                let mut c = cx.link("C").await?;
                let c_name = cx.name("c", Some(2));
                c.subscribe(&c_name, 1).await?;
                let b_idx = learn_index(&b, &name, &mut c, &c_name).await?;
                // D alone subscribes the destination; the Publish names B's link.
                let d_name = cx.name("d", Some(4));
                let mut d = cx.link("D").await?;
                d.subscribe(&d_name, 1).await?;
                subscribe_marker(&cx, &mut d, 2).await?;
                let mut m = client::publish(&c_name, &d_name, 1, b"only-b");
                if let Some(h) = slim_proto::validate::header_mut(&mut m) {
                    h.forward_to = Some(b_idx);
                }
                a.send(m).await?;
                expect_payload(&mut b, "only-b").await?;
                let marker = marker_name(&cx, d.label());
                barrier(&a, &c_name, &mut d, &marker, "a Publish with forward_to naming B's link (forward_to bypasses the subscription table)").await
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
                    let x = cx.link(&format!("X{i}")).await?;
                    seen.push(learn_index(&x, &name, &mut b, &name).await?);
                    // The next link opens once the node has ended this one.
                    close_and_wait(&cx, x).await;
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
            "routing/ttl-one-publish",
            "a Publish with ttl 1 is dropped (the decremented ttl is 0)",
            &["SLIM-ROUTE-010"],
            |cx: Ctx| async move {
                let name = cx.name("svc", Some(1));
                let (a, mut b) = pair(&cx, &name).await?;
                let mut m = client::publish(&name, &name, 1, b"ttl1");
                if let Some(h) = slim_proto::validate::header_mut(&mut m) {
                    h.ttl = 1;
                }
                a.send(m).await?;
                barrier(&a, &name, &mut b, &name, "a Publish with ttl 1").await
            },
        ),
        Case::new(
            "routing/ttl-one-subscribe",
            "a Subscribe with ttl 1 is neither acked nor installed",
            &["SLIM-ROUTE-010"],
            |cx: Ctx| async move {
                let name = cx.name("svc", Some(1));
                let mut b = cx.link("B").await?;
                subscribe_marker(&cx, &mut b, 90).await?;
                let mut m = client::subscribe(&name, 91);
                if let Some(h) = slim_proto::validate::header_mut(&mut m) {
                    h.ttl = 1;
                }
                b.send(m).await?;
                expect_not_accepted(&cx, &mut b, 91, 92, "a Subscribe with ttl 1").await?;
                let a = cx.link("A").await?;
                expect_no_route(&cx, &a, &mut b, &name, "a Publish to the name of the expired Subscribe").await
            },
        ),
    ];
    v.extend(super::scenarios::cases());
    v
}
