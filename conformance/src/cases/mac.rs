//! Header MAC: what is covered, what a node does with bad MACs, and egress signing.

use slim_proto::pb;

use slim_proto::names::SlimName;

use super::{
    barrier, expect_payload, expect_subscribe_refused, pair, subscribe_marker, Refusal, PROMPT,
};
use crate::case::{ensure, Case, Ctx, Failure, Need};
use crate::client;

/// The MAC-covered header fields, each with a tamper that keeps routing unchanged.
/// A named edit of a header.
type HeaderEdit = (&'static str, fn(&mut pb::SlimHeader));
/// A named edit of a whole message.
type MessageEdit = (&'static str, fn(&mut pb::Message));

const COVERED: &[HeaderEdit] = &[
    ("source-string", |h| {
        if let Some(s) = h.source.as_mut().and_then(|n| n.str_name.as_mut()) {
            s.str_component_0.push('x');
        }
    }),
    ("source-hash", |h| {
        if let Some(e) = h.source.as_mut().and_then(|n| n.name.as_mut()) {
            e.component_1 ^= 1;
        }
    }),
    ("destination-string", |h| {
        if let Some(s) = h.destination.as_mut().and_then(|n| n.str_name.as_mut()) {
            s.str_component_2.push('x');
        }
    }),
    ("identity", |h| h.identity.push_str("-tampered")),
    ("fanout", |h| h.fanout = 2),
    ("ttl", |h| h.ttl -= 1),
    ("error", |h| h.error = Some(false)),
];

/// Fields outside the MAC, each with a change that must not stop delivery.
const UNCOVERED: &[MessageEdit] = &[
    ("incoming-conn", |m| {
        if let Some(h) = slim_proto::validate::header_mut(m) {
            h.incoming_conn = Some(12345);
        }
    }),
    ("version", |m| {
        if let Some(h) = slim_proto::validate::header_mut(m) {
            h.version = "9.9.9".into();
        }
    }),
    ("session-header", |m| {
        if let Some(pb::message::MessageType::Publish(p)) = &mut m.message_type {
            if let Some(s) = &mut p.session {
                s.message_id = 999;
            }
        }
    }),
    ("payload", |m| {
        if let Some(pb::message::MessageType::Publish(p)) = &mut m.message_type {
            if let Some(pb::content::ContentType::AppPayload(a)) =
                p.msg.as_mut().and_then(|c| c.content_type.as_mut())
            {
                a.payload_type = "changed".into();
            }
        }
    }),
    ("metadata", |m| {
        m.metadata
            .insert("x-added-after-signing".into(), "yes".into());
    }),
];

fn tamper_case(field: &'static str, tamper: fn(&mut pb::SlimHeader)) -> Case {
    Case::new(
        &format!("mac/tampered-{field}"),
        &format!("a Publish whose {field} was changed after signing is not delivered"),
        &["SLIM-MAC-004", "SLIM-MAC-002"],
        move |cx: Ctx| async move {
            let name = cx.name("svc", Some(1));
            let (a, mut b) = pair(&cx, &name).await?;
            let mut m = client::publish(&name, &name, 1, b"tampered");
            a.sign(&mut m);
            if let Some(h) = slim_proto::validate::header_mut(&mut m) {
                tamper(h);
            }
            a.send_message(m).await?;
            barrier(
                &a,
                &name,
                &mut b,
                &name,
                &format!("a Publish whose MAC-covered {field} was changed after signing"),
            )
            .await
        },
    )
}

fn uncovered_case(field: &'static str, change: fn(&mut pb::Message)) -> Case {
    Case::new(
        &format!("mac/uncovered-{field}"),
        &format!("a change to {field} after signing does not stop delivery (not MAC-covered)"),
        &["SLIM-MAC-002"],
        move |cx: Ctx| async move {
            let name = cx.name("svc", Some(1));
            let (a, mut b) = pair(&cx, &name).await?;
            let mut m = client::publish(&name, &name, 1, b"uncovered");
            a.sign(&mut m);
            change(&mut m);
            a.send_message(m).await?;
            expect_payload(&mut b, "uncovered").await.map(|_| ())
        },
    )
}

/// A Publish whose MAC was replaced by `mac` must not be delivered.
fn bad_publish_mac(id: &str, title: &str, reqs: &[&str], mac: Option<Vec<u8>>) -> Case {
    Case::new(id, title, reqs, move |cx: Ctx| {
        let mac = mac.clone();
        async move {
            let name = cx.name("svc", Some(1));
            let (a, mut b) = pair(&cx, &name).await?;
            let mut m = client::publish(&name, &name, 1, b"bad-mac");
            if let Some(h) = slim_proto::validate::header_mut(&mut m) {
                h.header_mac = mac.map(Into::into);
            }
            a.send_message(m).await?;
            barrier(
                &a,
                &name,
                &mut b,
                &name,
                "a Publish with a missing or wrong header MAC",
            )
            .await
        }
    })
}

/// A Publish whose correct MAC was edited by `edit` (a byte less, a byte more) must not be
/// delivered: a node that compares only as many bytes as the shorter tag has would route it.
fn edited_mac(id: &str, title: &str, edit: fn(&mut Vec<u8>)) -> Case {
    Case::new(id, title, &["SLIM-MAC-004"], move |cx: Ctx| async move {
        let name = cx.name("svc", Some(1));
        let (a, mut b) = pair(&cx, &name).await?;
        let mut m = client::publish(&name, &name, 1, b"edited-mac");
        a.sign(&mut m);
        if let Some(h) = slim_proto::validate::header_mut(&mut m) {
            let mut tag = h.header_mac.as_deref().unwrap_or_default().to_vec();
            edit(&mut tag);
            h.header_mac = Some(tag.into());
        }
        a.send_message(m).await?;
        barrier(
            &a,
            &name,
            &mut b,
            &name,
            "a Publish whose correct MAC lost or gained a byte",
        )
        .await
    })
}

/// A Subscribe whose MAC was replaced by `mac` must be refused and install nothing.
fn bad_subscribe_mac(id: &str, title: &str, reqs: &[&str], mac: Option<Vec<u8>>) -> Case {
    Case::new(id, title, reqs, move |cx: Ctx| {
        let mac = mac.clone();
        async move {
            let name = cx.name("svc", Some(1));
            let mut a = cx.link("A").await?;
            subscribe_marker(&cx, &mut a, 20).await?;
            let mut m = client::subscribe(&name, 21);
            if let Some(h) = slim_proto::validate::header_mut(&mut m) {
                h.header_mac = mac.map(Into::into);
            }
            a.send_message(m).await?;
            let what = "a Subscribe with a missing or wrong header MAC";
            let refusal = expect_subscribe_refused(&cx, &mut a, &name, 21, what).await?;
            match refusal {
                Refusal::Acked(e) if e.to_lowercase().contains("mac") => {}
                Refusal::Acked(e) => cx.finding(
                    "SLIM-MAC-007",
                    "a refusal ack whose error names the MAC problem",
                    format!("error {e:?}"),
                ),
                Refusal::Silent => cx.finding(
                    "SLIM-MAC-007",
                    "a SubscriptionAck with success false naming the MAC problem",
                    "no ack (dropped silently)",
                ),
            }
            Ok(())
        }
    })
}

/// Sends an unsigned Subscribe to `name` on `link` and requires a success ack (a non-strict node).
async fn unsigned_subscribe_acked(link: &mut client::Link, name: &SlimName) -> Result<(), Failure> {
    link.send_message(client::subscribe(name, 1)).await?;
    let ack = link.expect_ack(1, PROMPT).await?;
    ensure(
        ack.success,
        format!(
            "{}'s unsigned Subscribe is acked with success",
            link.label()
        ),
        format!("error {:?}", ack.error),
    )
}

/// Verifies a delivered message's MAC under `rx`'s own link key (SLIM-MAC-003).
fn verify_delivered(rx: &client::Link, m: &pb::Message) -> Result<(), Failure> {
    let h =
        slim_proto::validate::header(m).ok_or_else(|| Failure::violation("a header", "none"))?;
    let mac = rx
        .mac
        .as_ref()
        .ok_or_else(|| Failure::Harness("no link key".into()))?;
    mac.verify(h).map_err(|e| {
        Failure::violation(
            format!(
                "header_mac verifies under {}'s link key over the delivered header (SPEC.md Header MAC preimage)",
                rx.label()
            ),
            format!("{e}; mac = {:?}", h.header_mac.as_ref().map(hex::encode)),
        )
    })
}

pub(super) fn cases() -> Vec<Case> {
    let mut v = vec![
        bad_publish_mac(
            "mac/publish-unsigned",
            "a strict node does not route a Publish without header_mac",
            &["SLIM-MAC-001", "SLIM-MAC-004"],
            None,
        )
        .needs(Need::StrictMac),
        bad_publish_mac(
            "mac/publish-wrong-mac",
            "a Publish with a 32-byte MAC that does not verify is not routed",
            &["SLIM-MAC-004"],
            Some(vec![0x5a; 32]),
        ),
        bad_publish_mac(
            "mac/publish-short-mac",
            "a Publish with a 31-byte MAC is not routed",
            &["SLIM-MAC-004"],
            Some(vec![0x5a; 31]),
        ),
        bad_publish_mac(
            "mac/publish-empty-mac",
            "a Publish with a 0-byte header_mac is not routed",
            &["SLIM-MAC-004"],
            Some(Vec::new()),
        ),
        edited_mac(
            "mac/publish-truncated-mac",
            "a Publish carrying the first 31 bytes of its correct MAC is not routed",
            |tag| {
                tag.pop();
            },
        ),
        edited_mac(
            "mac/publish-extended-mac",
            "a Publish carrying its correct MAC followed by one more byte is not routed",
            |tag| tag.push(0),
        ),
        bad_subscribe_mac(
            "mac/subscribe-unsigned",
            "a strict node refuses an unsigned Subscribe and installs no route",
            &["SLIM-MAC-001", "SLIM-MAC-004", "SLIM-MAC-007"],
            None,
        )
        .needs(Need::StrictMac),
        bad_subscribe_mac(
            "mac/subscribe-wrong-mac",
            "a Subscribe with a wrong MAC is refused and installs no route",
            &["SLIM-MAC-004", "SLIM-MAC-007"],
            Some(vec![0xa5; 32]),
        ),
        Case::new(
            "mac/egress-signed",
            "every Publish the node delivers carries a MAC that verifies under its receiver's link key, for each copy of a fan-out",
            &["SLIM-MAC-003", "SLIM-LINK-007"],
            |cx: Ctx| async move {
                let name = cx.name("svc", Some(1));
                let (a, mut b) = pair(&cx, &name).await?;
                for i in 0..3 {
                    a.send(client::publish(&name, &name, 1, format!("signed-{i}").as_bytes())).await?;
                    let m = expect_payload(&mut b, &format!("signed-{i}")).await?;
                    verify_delivered(&b, &m)?;
                }
                // A broadcast: every copy is signed for its own receiver, not once for all.
                let mut c = cx.link("C").await?;
                c.subscribe(&name, 2).await?;
                let mut d = cx.link("D").await?;
                d.subscribe(&name, 3).await?;
                a.send(client::publish(&name, &name, slim_proto::BROADCAST_FANOUT, b"fan-out")).await?;
                for rx in [&mut b, &mut c, &mut d] {
                    let m = expect_payload(rx, "fan-out").await?;
                    verify_delivered(rx, &m)?;
                }
                Ok(())
            },
        ),
        Case::new(
            "mac/verified-before-ttl",
            "the MAC is checked over the ttl as sent (5), and the delivered copy has ttl 4 and a fresh MAC",
            &["SLIM-MAC-005", "SLIM-ROUTE-010"],
            |cx: Ctx| async move {
                let name = cx.name("svc", Some(1));
                let (a, mut b) = pair(&cx, &name).await?;
                let mut m = client::publish(&name, &name, 1, b"ttl5");
                if let Some(h) = slim_proto::validate::header_mut(&mut m) {
                    h.ttl = 5;
                    h.incoming_conn = Some(4242);
                }
                a.send(m).await?;
                let got = expect_payload(&mut b, "ttl5").await?;
                let ttl = slim_proto::validate::header(&got).map(|h| h.ttl);
                if ttl == Some(4) {
                    Ok(())
                } else {
                    Err(Failure::violation("ttl 4 on the delivered copy", format!("ttl {ttl:?}")))
                }
            },
        ),
        Case::new(
            "mac/lax-unsigned-subscribe",
            "a node that does not require the MAC acks an unsigned Subscribe from a keyed link and routes to it",
            &["SLIM-MAC-006"],
            |cx: Ctx| async move {
                let name = cx.name("svc", Some(1));
                let mut b = cx.link("B").await?;
                unsigned_subscribe_acked(&mut b, &name).await?;
                let a = cx.link("A").await?;
                a.send(client::publish(&name, &name, 1, b"signed")).await?;
                expect_payload(&mut b, "signed").await.map(|_| ())
            },
        )
        .needs(Need::LaxMac),
        Case::new(
            "mac/lax-unsigned-publish",
            "a node that does not require the MAC routes an unsigned Publish from a keyed link",
            &["SLIM-MAC-008"],
            |cx: Ctx| async move {
                let name = cx.name("svc", Some(1));
                let (a, mut b) = pair(&cx, &name).await?;
                a.send_message(client::publish(&name, &name, 1, b"unsigned")).await?;
                // A signed marker after it: the unsigned Publish must have come first.
                a.send(client::publish(&name, &name, 1, b"marker")).await?;
                expect_payload(&mut b, "unsigned").await.map(|_| ())
            },
        )
        .needs(Need::LaxMac),
        Case::new(
            "mac/lax-keyless-link",
            "a non-strict node serves a link negotiated without a key, and drops MAC-carrying messages from it",
            &["SLIM-MAC-006"],
            |cx: Ctx| async move {
                let name = cx.name("svc", Some(1));
                let mut b = cx.raw_link("B").await?;
                b.negotiate(|r| r.link_ecdh_public_key.clear()).await?;
                b.mac = None;
                unsigned_subscribe_acked(&mut b, &name).await?;
                let mut a = cx.raw_link("A").await?;
                a.negotiate(|r| r.link_ecdh_public_key.clear()).await?;
                a.mac = None;
                let mut m = client::publish(&name, &name, 1, b"mac-from-keyless");
                if let Some(h) = slim_proto::validate::header_mut(&mut m) {
                    h.header_mac = Some(vec![1; 32].into());
                }
                a.send_message(m).await?;
                a.send_message(client::publish(&name, &name, 1, b"marker")).await?;
                expect_payload(&mut b, "marker").await.map(|_| ())
            },
        )
        .needs(Need::LaxMac),
    ];
    v.extend(COVERED.iter().map(|(f, t)| tamper_case(f, *t)));
    v.extend(UNCOVERED.iter().map(|(f, c)| uncovered_case(f, *c)));
    v
}
