//! Structural validation: malformed routed messages, unknown variants, and isolation.

use slim_proto::pb::{self, message::MessageType};

use super::{
    anycasts_all_reach, barrier, before_probe_ack, close_and_wait, expect_not_accepted,
    expect_payload, expect_subscribe_refused, pair, send_text, still_serves, still_usable,
    subscribe_marker, PROMPT,
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

/// A Subscribe made invalid by `edit` must not be accepted: no success ack before a probe
/// Subscribe's ack, and (when the broken Subscribe still names `svc`) no route to the link.
fn refused_subscribe(
    id: &str,
    title: &str,
    reqs: &[&str],
    what: &'static str,
    edit: fn(&mut pb::Message),
) -> Case {
    Case::new(id, title, reqs, move |cx: Ctx| async move {
        let name = cx.name("svc", Some(1));
        let mut a = cx.link("A").await?;
        subscribe_marker(&cx, &mut a, 40).await?;
        let mut m = client::subscribe(&name, 41);
        edit(&mut m);
        a.send(m).await?;
        expect_subscribe_refused(&cx, &mut a, &name, 41, what)
            .await
            .map(|_| ())
    })
}

/// An Unsubscribe made invalid by `edit` must not remove A's subscription 1 to `svc`.
fn ignored_unsubscribe(
    id: &str,
    title: &str,
    what: &'static str,
    edit: fn(&mut pb::Message),
) -> Case {
    Case::new(id, title, &["SLIM-VAL-002"], move |cx: Ctx| async move {
        let name = cx.name("svc", Some(1));
        let (b, mut a) = pair(&cx, &name).await?;
        let mut m = client::unsubscribe(&name, 1);
        edit(&mut m);
        a.send(m).await?;
        expect_not_accepted(&cx, &mut a, 1, 42, what).await?;
        send_text(&b, &name, &name, "still-subscribed").await?;
        expect_payload(&mut a, "still-subscribed")
            .await
            .map(|_| ())
            .map_err(|f| f.context(&format!("A's subscription after {what}")))
    })
}

/// Where a signed, well-routed Publish is made undecodable (SLIM-VAL-008).
#[derive(Clone, Copy)]
enum Defect {
    /// `header.version` (not MAC-covered, not routed by) is not UTF-8.
    Version,
    /// The session header's field 1 has the wrong wire type.
    Session,
    /// The application payload's `payload_type` is not UTF-8.
    Content,
    /// A command payload holding unknown fields as 98 nested groups: it decodes on its own, but
    /// inside the Message it passes prost's recursion limit of 100.
    DeepCommand,
}

/// A Publish from `src` to `dst`, signed by `link`, whose routing header is well formed and
/// whose defect lies where a node does not route by; prost cannot decode the whole frame.
fn undecodable_publish(
    link: &client::Link,
    src: &slim_proto::names::SlimName,
    dst: &slim_proto::names::SlimName,
    defect: Defect,
) -> Result<Vec<u8>, Failure> {
    use prost::encoding::{encode_varint, message};
    use prost::Message as _;
    let mut m = client::publish(src, dst, 1, b"never delivered");
    if let (Defect::Version, Some(h)) = (defect, header_of(&mut m)) {
        h.version = "\u{e9}\u{e9}".into(); // placeholder, made invalid below
    }
    link.sign(&mut m);
    let Some(MessageType::Publish(p)) = m.message_type else {
        return Err(Failure::Harness(
            "the publish builder made no Publish".into(),
        ));
    };
    let (Some(header), Some(session)) = (p.header.as_ref(), p.session.as_ref()) else {
        return Err(Failure::Harness(
            "the publish builder made no header".into(),
        ));
    };
    let mut body = Vec::new();
    message::encode(1, header, &mut body);
    if let Defect::Version = defect {
        let field = [0x2a, 0x04, 0xc3, 0xa9, 0xc3, 0xa9];
        let at = body
            .windows(field.len())
            .position(|w| w == field)
            .ok_or_else(|| Failure::Harness("the version field was not found".into()))?;
        body[at + 2..at + 6].copy_from_slice(&[0xff, 0xfe, 0xff, 0xfe]);
    }
    match defect {
        Defect::Session => body.extend_from_slice(&[0x12, 0x02, 0x0a, 0x00]),
        _ => message::encode(2, session, &mut body),
    }
    match defect {
        // Content{app_payload{payload_type: 0xff, blob: "x"}}
        Defect::Content => {
            body.extend_from_slice(&[0x1a, 0x08, 0x0a, 0x06, 0x0a, 0x01, 0xff, 0x12, 0x01, b'x'])
        }
        Defect::DeepCommand => slim_proto::raw::push_nested_command_content(98, &mut body),
        _ => {
            if let Some(c) = p.msg.as_ref() {
                message::encode(3, c, &mut body);
            }
        }
    }
    let mut frame = vec![0x1a];
    encode_varint(body.len() as u64, &mut frame);
    frame.extend_from_slice(&body);
    if pb::Message::decode(&frame[..]).is_ok() {
        return Err(Failure::Harness("the damaged Publish still decodes".into()));
    }
    Ok(frame)
}

/// B sends a signed Publish to A's name that does not decode: A must never receive it (it would
/// end A's stream), B's stream should end with INVALID_ARGUMENT, and A is still served.
fn not_forwarded(id: &str, title: &str, what: &'static str, defect: Defect) -> Case {
    Case::new(
        id,
        title,
        &["SLIM-VAL-008", "SLIM-VAL-005", "SLIM-TRANS-005"],
        move |cx: Ctx| async move {
            let name = cx.name("svc", Some(1));
            let mut a = cx.link("A").await?;
            a.subscribe(&name, 1).await?;
            let mut b = cx.link("B").await?;
            let src = cx.name("sender", None);
            let frame = undecodable_publish(&b, &src, &name, defect)?;
            b.send_raw(frame, what).await?;
            match b.recv(PROMPT).await {
                Event::Ended(s) if s.code() == tonic::Code::InvalidArgument => {}
                other => cx.finding(
                    "SLIM-TRANS-005",
                    "the stream that carried the undecodable Publish ends with INVALID_ARGUMENT",
                    event_text(&other),
                ),
            }
            let c = cx.link("C").await?;
            send_text(&c, &src, &name, "after").await?;
            expect_payload(&mut a, "after").await.map_err(|f| {
                Failure::violation(
                    format!("A receives only the valid Publish sent after {what} (a forwarded frame A cannot decode ends A's stream)"),
                    f.texts().1,
                )
            })?;
            still_serves(&cx, what).await
        },
    )
}

/// The procedure that showed the real node leaking routes: E and F subscribe one prefix under ids
/// 1 and 2, E sends an empty `Message{}` (which kills E's connection task on the real node), E
/// closes; then every anycast to the wildcard id must reach F, and a newcomer G on id 1 must get
/// every anycast to id 1. A node whose task for E died keeps E's routes and sends half of them
/// into the dead link.
async fn dead_link_routes_removed(cx: Ctx) -> Result<(), Failure> {
    let shared = cx.name("leak", None);
    let mut e = cx.link("E").await?;
    e.subscribe(&cx.name("leak", Some(1)), 1).await?;
    let mut f = cx.link("F").await?;
    f.subscribe(&cx.name("leak", Some(2)), 2).await?;
    subscribe_marker(&cx, &mut f, 3).await?;
    e.send_raw(Vec::new(), "an empty Message{}").await?;
    // Did E's link survive the empty Message{}? (Judged by validation/empty-message; recorded
    // here to explain what follows.)
    match before_probe_ack(&cx, &mut e, 9, "an empty Message{}").await {
        Ok(_) => cx.note("E's link still answered a Subscribe after the empty Message{}"),
        Err(f) => cx.note(format!(
            "E's link no longer answers after the empty Message{{}}: {}",
            f.texts().1
        )),
    }
    let ended = close_and_wait(&cx, e).await;
    cx.note(if ended {
        "the node ended E's stream after E closed it"
    } else {
        "the node never ended E's stream"
    });
    let o = cx.link("O").await?;
    let to_f = anycasts_all_reach(&cx, &o, &shared, &mut f, 6, "E closed").await;
    // Both halves run either way, so a report shows the whole leak.
    let mut g = cx.link("G").await?;
    g.subscribe(&cx.name("leak", Some(1)), 1).await?;
    subscribe_marker(&cx, &mut g, 2).await?;
    let to_g = anycasts_all_reach(
        &cx,
        &o,
        &cx.name("leak", Some(1)),
        &mut g,
        4,
        "E closed and G subscribed E's id",
    )
    .await;
    match (to_f, to_g) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(f), Ok(())) | (Ok(()), Err(f)) => Err(f),
        (Err(f), Err(g)) => {
            let (expected, observed_f) = f.texts();
            let (_, observed_g) = g.texts();
            Err(Failure::violation(
                format!("{expected}; and a newcomer G on E's id 1 gets every anycast to id 1"),
                format!("{observed_f}; and {observed_g}"),
            ))
        }
    }
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
        not_forwarded(
            "validation/undecodable-version-not-forwarded",
            "a signed Publish whose header version is not UTF-8 is not forwarded",
            "a Publish whose header version is not UTF-8",
            Defect::Version,
        ),
        not_forwarded(
            "validation/undecodable-session-not-forwarded",
            "a signed Publish whose session header does not decode is not forwarded",
            "a Publish whose session header has a field of the wrong wire type",
            Defect::Session,
        ),
        not_forwarded(
            "validation/undecodable-content-not-forwarded",
            "a signed Publish whose payload type is not UTF-8 is not forwarded",
            "a Publish whose payload_type is not UTF-8",
            Defect::Content,
        ),
        not_forwarded(
            "validation/undecodable-command-not-forwarded",
            "a signed Publish whose command payload nests past the decoder's recursion limit is not forwarded",
            "a Publish whose command payload nests 98 groups deep",
            Defect::DeepCommand,
        ),
        Case::new(
            "validation/dead-link-routes-removed",
            "after a link that sent an empty Message{} closes, its routes are gone (anycast to the wildcard id, then a newcomer on the dead link's id)",
            &["SLIM-SUB-008", "SLIM-VAL-001"],
            dead_link_routes_removed,
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
        ignored_unsubscribe(
            "validation/unsubscribe-no-header",
            "an Unsubscribe without header removes nothing",
            "an Unsubscribe without header",
            |m| {
                if let Some(MessageType::Unsubscribe(u)) = &mut m.message_type {
                    u.header = None;
                }
            },
        ),
        ignored_unsubscribe(
            "validation/unsubscribe-no-source",
            "an Unsubscribe whose header has no source removes nothing",
            "an Unsubscribe without source",
            |m| {
                if let Some(h) = header_of(m) {
                    h.source = None;
                }
            },
        ),
        ignored_unsubscribe(
            "validation/unsubscribe-no-hashed-destination",
            "an Unsubscribe whose destination has no hashed form removes nothing",
            "an Unsubscribe whose destination has no hashed name",
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
            "validation/publish-no-hashed-destination",
            "a Publish whose destination has no hashed form is not delivered",
            &["SLIM-VAL-002"],
            "a Publish whose destination has only its string form",
            |m| {
                if let Some(d) = header_of(m).and_then(|h| h.destination.as_mut()) {
                    d.name = None;
                }
            },
        ),
        dropped_publish(
            "validation/publish-no-hashed-source",
            "a Publish whose source has no hashed form is not delivered",
            &["SLIM-VAL-002"],
            "a Publish whose source has only its string form",
            |m| {
                if let Some(n) = header_of(m).and_then(|h| h.source.as_mut()) {
                    n.name = None;
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
