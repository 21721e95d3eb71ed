//! Structural validation: malformed routed messages, unknown variants, and isolation.

use std::time::Duration;

use slim_proto::pb::{self, message::MessageType};

use super::{
    barrier, expect_not_accepted, expect_payload, pair, send_text, still_serves, still_usable,
    PROMPT,
};
use crate::case::{Case, Ctx, Failure};
use crate::client::{self, event_text, Event};

/// A message the node cannot type (empty, or an unknown oneof field) on an established,
/// subscribed link: the link must keep working and keep being served.
fn untyped(id: &str, title: &str, bytes: &'static [u8], what: &'static str) -> Case {
    Case::new(
        id,
        title,
        &["SLIM-VAL-001", "SLIM-VAL-005"],
        move |cx: Ctx| async move {
            let name = cx.name("svc", Some(1));
            let (a, mut b) = pair(&cx, &name).await?;
            b.send_raw(bytes.to_vec(), what).await?;
            // B still processes its own input...
            still_usable(&cx, &mut b, 2, what).await?;
            // ...and is still served.
            send_text(&a, &name, &name, "after").await?;
            expect_payload(&mut b, "after").await.map_err(|f| {
                Failure::violation(
                    format!("B is still delivered to after sending {what}"),
                    f.texts().1,
                )
            })?;
            still_serves(&cx, what).await
        },
    )
}

/// A routed message made invalid by `edit` must be dropped without harm to the link.
fn dropped_publish(
    id: &str,
    title: &str,
    reqs: &[&str],
    what: &'static str,
    edit: fn(&mut pb::Message),
) -> Case {
    Case::new(id, title, reqs, move |cx: Ctx| async move {
        let name = cx.name("svc", Some(1));
        let (a, mut b) = pair(&cx, &name).await?;
        let mut m = client::publish(&name, &name, 1, b"invalid");
        edit(&mut m);
        a.send(m).await?;
        barrier(&a, &name, &mut b, &name, what).await
    })
}

/// A Subscribe made invalid by `edit` must not be accepted; the link stays usable.
fn refused_subscribe(
    id: &str,
    title: &str,
    reqs: &[&str],
    what: &'static str,
    edit: fn(&mut pb::Message),
) -> Case {
    Case::new(id, title, reqs, move |cx: Ctx| async move {
        let mut a = cx.link("A").await?;
        let mut m = client::subscribe(&cx.name("svc", Some(1)), 41);
        edit(&mut m);
        a.send(m).await?;
        expect_not_accepted(&mut a, 41, cx.quiet, what).await?;
        still_usable(&cx, &mut a, 42, what).await
    })
}

fn header_of(m: &mut pb::Message) -> Option<&mut pb::SlimHeader> {
    slim_proto::validate::header_mut(m)
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        untyped(
            "validation/empty-message",
            "an empty Message{} on an established link is dropped; the link keeps working",
            &[],
            "an empty Message{}",
        ),
        untyped(
            "validation/unknown-oneof",
            "a Message with an unknown oneof field (number 9) is dropped; the link keeps working",
            &[0x4a, 0x00],
            "a Message carrying only unknown field 9",
        ),
        Case::new(
            "validation/dead-link-routes-removed",
            "after a link that sent an empty Message{} closes, its routes are gone",
            &["SLIM-SUB-008", "SLIM-VAL-001"],
            |cx: Ctx| async move {
                let name = cx.name("svc", None);
                let mut a = cx.link("A").await?;
                a.subscribe(&name, 1).await?;
                let mut c = cx.link("C").await?;
                c.subscribe(&name, 2).await?;
                a.send_raw(Vec::new(), "an empty Message{}").await?;
                a.close_send();
                drop(a);
                tokio::time::sleep(Duration::from_millis(500)).await;
                let d = cx.link("D").await?;
                let src = cx.name("sender", None);
                for i in 0..6 {
                    send_text(&d, &src, &name, &format!("anycast-{i}")).await?;
                }
                for i in 0..6 {
                    expect_payload(&mut c, &format!("anycast-{i}")).await.map_err(|f| {
                        Failure::violation(
                            "after A closed, every anycast Publish to the shared name reaches C (A's routes were removed)",
                            format!("Publish {i} of 6: {}", f.texts().1),
                        )
                    })?;
                }
                Ok(())
            },
        ),
        refused_subscribe(
            "validation/subscribe-no-header",
            "a Subscribe without header is not accepted",
            &["SLIM-VAL-002"],
            "a Subscribe without header",
            |m| {
                if let Some(MessageType::Subscribe(s)) = &mut m.message_type {
                    s.header = None;
                }
            },
        ),
        refused_subscribe(
            "validation/subscribe-no-source",
            "a Subscribe whose header has no source is not accepted",
            &["SLIM-VAL-002"],
            "a Subscribe without source",
            |m| {
                if let Some(h) = header_of(m) {
                    h.source = None;
                }
            },
        ),
        refused_subscribe(
            "validation/subscribe-no-hashed-destination",
            "a Subscribe whose destination has no hashed form is not accepted",
            &["SLIM-VAL-002"],
            "a Subscribe whose destination has no hashed name",
            |m| {
                if let Some(d) = header_of(m).and_then(|h| h.destination.as_mut()) {
                    d.name = None;
                }
            },
        ),
        Case::new(
            "validation/subscribe-no-string-name",
            "a Subscribe to a new name without string form is refused with an ack saying so",
            &["SLIM-VAL-003", "SLIM-VAL-005"],
            |cx: Ctx| async move {
                let name = cx.name("fresh", Some(1));
                let mut a = cx.link("A").await?;
                let mut m = client::subscribe(&name, 51);
                if let Some(h) = header_of(&mut m) {
                    for n in [h.source.as_mut(), h.destination.as_mut()]
                        .into_iter()
                        .flatten()
                    {
                        n.str_name = None;
                    }
                }
                a.send(m).await?;
                match a.recv(PROMPT).await {
                    Event::Message(pb::Message {
                        message_type: Some(MessageType::SubscriptionAck(ack)),
                        ..
                    }) if ack.subscription_id == 51 && !ack.success => {
                        if !ack.error.to_lowercase().contains("name") {
                            return Err(Failure::violation(
                                "an ack error that says the string name is missing",
                                format!("error {:?}", ack.error),
                            ));
                        }
                    }
                    other => return Err(Failure::violation(
                        "SubscriptionAck{51, success false, error about the missing string name}",
                        event_text(&other),
                    )),
                }
                still_usable(&cx, &mut a, 52, "a Subscribe without string name").await?;
                still_serves(&cx, "a Subscribe without string name").await
            },
        ),
        dropped_publish(
            "validation/publish-no-header",
            "a Publish without header is not delivered",
            &["SLIM-VAL-002"],
            "a Publish without header",
            |m| {
                if let Some(MessageType::Publish(p)) = &mut m.message_type {
                    p.header = None;
                }
            },
        ),
        dropped_publish(
            "validation/publish-no-source",
            "a Publish whose header has no source is not delivered",
            &["SLIM-VAL-002"],
            "a Publish without source",
            |m| {
                if let Some(h) = header_of(m) {
                    h.source = None;
                }
            },
        ),
        dropped_publish(
            "validation/publish-no-session",
            "a Publish without session header is not delivered",
            &["SLIM-VAL-004"],
            "a Publish without session header",
            |m| {
                if let Some(MessageType::Publish(p)) = &mut m.message_type {
                    p.session = None;
                }
            },
        ),
        Case::new(
            "validation/publish-no-content",
            "a Publish with header and session header but no content is delivered",
            &["SLIM-VAL-004"],
            |cx: Ctx| async move {
                let name = cx.name("svc", Some(1));
                let (a, mut b) = pair(&cx, &name).await?;
                let mut m = client::publish(&name, &name, 1, b"");
                if let Some(MessageType::Publish(p)) = &mut m.message_type {
                    p.msg = None;
                }
                a.send(m).await?;
                match b.recv(PROMPT).await {
                    Event::Message(pb::Message {
                        message_type: Some(MessageType::Publish(p)),
                        ..
                    }) if p.msg.is_none() => Ok(()),
                    other => Err(Failure::violation(
                        "the content-less Publish is delivered",
                        event_text(&other),
                    )),
                }
            },
        ),
        Case::new(
            "validation/unknown-session-enums",
            "unknown session_type and session_message_type values are delivered unchanged",
            &["SLIM-VAL-007"],
            |cx: Ctx| async move {
                let name = cx.name("svc", Some(1));
                let (a, mut b) = pair(&cx, &name).await?;
                let mut m = client::publish(&name, &name, 1, b"enums");
                if let Some(MessageType::Publish(p)) = &mut m.message_type {
                    if let Some(s) = &mut p.session {
                        s.session_type = 77;
                        s.session_message_type = 99;
                    }
                }
                a.send(m).await?;
                let got = expect_payload(&mut b, "enums").await?;
                match &got.message_type {
                    Some(MessageType::Publish(p))
                        if p.session.as_ref().is_some_and(|s| {
                            s.session_type == 77 && s.session_message_type == 99
                        }) =>
                    {
                        Ok(())
                    }
                    _ => Err(Failure::violation(
                        "session_type 77 and session_message_type 99 delivered unchanged",
                        client::describe(&got),
                    )),
                }
            },
        ),
        Case::new(
            "validation/client-ack-ignored",
            "a SubscriptionAck sent by a client is ignored; the link keeps working",
            &["SLIM-VAL-006"],
            |cx: Ctx| async move {
                let name = cx.name("svc", Some(1));
                let (a, mut b) = pair(&cx, &name).await?;
                a.send_message(client::wrap(MessageType::SubscriptionAck(
                    pb::SubscriptionAck {
                        subscription_id: 1,
                        success: true,
                        error: String::new(),
                    },
                )))
                .await?;
                send_text(&a, &name, &name, "after-ack").await?;
                expect_payload(&mut b, "after-ack").await.map(|_| ())
            },
        ),
    ]
}
