//! Link negotiation: the first exchange on every stream, and the link key.

use std::time::Duration;

use slim_proto::pb::{self, message::MessageType};

use super::{still_serves, still_usable, PROMPT};
use crate::case::{ensure, Case, Ctx, Failure, Need};
use crate::client::{self, describe, status_text, Event, Link};

/// A refusal case: the request (after `tweak`) must end the stream without a reply.
fn refusal(
    id: &str,
    title: &str,
    reqs: &[&str],
    what: &'static str,
    tweak: fn(&mut pb::LinkNegotiationPayload),
) -> Case {
    Case::new(id, title, reqs, move |cx| async move {
        let mut a = cx.raw_link("A").await?;
        let pair = slim_proto::link::LinkKeyPair::from_secret_bytes([7u8; 32]);
        let mut req = client::default_request(
            &uuid::Uuid::new_v4().to_string(),
            pair.public_bytes().to_vec(),
        );
        tweak(&mut req);
        a.send_message(slim_proto::link::negotiation_message(req))
            .await?;
        expect_refused(&cx, &mut a, what, "INVALID_ARGUMENT").await?;
        still_serves(&cx, what).await
    })
}

/// The stream must end with no negotiation reply (SLIM-LINK-001); a non-OK status naming the
/// defect is SLIM-LINK-010.
async fn expect_refused(cx: &Ctx, a: &mut Link, what: &str, status: &str) -> Result<(), Failure> {
    match a.recv(PROMPT).await {
        Event::Ended(s) => {
            if s.code() == tonic::Code::Ok || s.message().is_empty() {
                cx.finding(
                    "SLIM-LINK-010",
                    format!("the refusal of {what} ends the stream with a non-OK status ({status}) naming the defect"),
                    status_text(&s),
                );
            }
            Ok(())
        }
        Event::Message(m) => Err(Failure::violation(
            format!("{what} is refused: the stream ends without a negotiation reply"),
            format!("received {}", describe(&m)),
        )),
        Event::Silent => Err(Failure::violation(
            format!("{what} is refused: the stream ends within {PROMPT:?}"),
            "the stream stayed open and silent",
        )),
    }
}

fn first_message(id: &str, title: &str, what: &'static str, make: fn(&Ctx) -> Vec<u8>) -> Case {
    Case::new(id, title, &["SLIM-LINK-001"], move |cx| async move {
        let mut a = cx.raw_link("A").await?;
        a.send_raw(make(&cx), what).await?;
        expect_refused(&cx, &mut a, what, "INVALID_ARGUMENT").await?;
        still_serves(&cx, what).await
    })
}

/// A reply check: negotiate like a good client and judge one property of the reply.
fn reply_check(
    id: &str,
    title: &str,
    reqs: &[&str],
    tweak: fn(&mut pb::LinkNegotiationPayload),
    check: fn(&pb::LinkNegotiationPayload, &pb::LinkNegotiationPayload) -> Result<(), Failure>,
) -> Case {
    Case::new(id, title, reqs, move |cx| async move {
        let mut a = cx.raw_link("A").await?;
        let pair = slim_proto::link::LinkKeyPair::from_secret_bytes([9u8; 32]);
        let mut req = client::default_request(
            &uuid::Uuid::new_v4().to_string(),
            pair.public_bytes().to_vec(),
        );
        tweak(&mut req);
        a.send_message(slim_proto::link::negotiation_message(req.clone()))
            .await?;
        let reply = match a.recv(PROMPT).await {
            Event::Message(m) => match slim_proto::link::negotiation_payload(&m) {
                Ok(p) => p.clone(),
                Err(e) => {
                    return Err(Failure::violation(
                        "a LinkNegotiation reply",
                        format!("{}: {e}", describe(&m)),
                    ))
                }
            },
            other => {
                return Err(Failure::violation(
                    "a LinkNegotiation reply",
                    client::event_text(&other),
                ))
            }
        };
        check(&req, &reply)
    })
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "link/node-speaks-second",
            "the node sends nothing on a new stream before the client's negotiation",
            &["SLIM-LINK-001"],
            |cx| async move {
                let mut a = cx.raw_link("A").await?;
                a.expect_silence(Duration::from_millis(500), "the node waits for the client's negotiation").await?;
                a.negotiate(|_| {}).await?;
                Ok(())
            },
        ),
        Case::new(
            "link/silent-client",
            "a stream on which nothing is sent is ended within a bounded time",
            &["SLIM-LINK-006", "SLIM-LINK-010"],
            |cx| async move {
                let mut a = cx.raw_link("A").await?;
                let started = std::time::Instant::now();
                match a.recv(Duration::from_secs(12)).await {
                    Event::Ended(s) => {
                        cx.note(format!("stream ended after {:.1} s: {}", started.elapsed().as_secs_f64(), status_text(&s)));
                        if s.code() != tonic::Code::DeadlineExceeded {
                            cx.finding("SLIM-LINK-010", "a silent stream ends with DEADLINE_EXCEEDED", status_text(&s));
                        }
                        Ok(())
                    }
                    Event::Message(m) => Err(Failure::violation(
                        "the node ends a silent stream without sending anything",
                        format!("received {}", describe(&m)),
                    )),
                    Event::Silent => Err(Failure::violation(
                        "the node ends a stream that sends nothing (5 s by default; the runner waits 12 s)",
                        "still open after 12 s",
                    )),
                }
            },
        )
        .timeout(Duration::from_secs(20)),
        first_message(
            "link/first-message-subscribe",
            "a Subscribe as the first message is refused",
            "a Subscribe before negotiation",
            |cx| {
                let n = cx.name("svc", Some(1));
                prost::Message::encode_to_vec(&client::subscribe(&n, 1))
            },
        ),
        first_message(
            "link/first-message-publish",
            "a Publish as the first message is refused",
            "a Publish before negotiation",
            |cx| {
                let n = cx.name("svc", Some(1));
                prost::Message::encode_to_vec(&client::publish(&n, &n, 1, b"early"))
            },
        ),
        first_message(
            "link/first-message-empty-link",
            "a Link message without a negotiation payload is refused",
            "Link{} without payload",
            |_| prost::Message::encode_to_vec(&client::wrap(MessageType::Link(pb::Link { link_type: None }))),
        ),
        first_message(
            "link/first-message-empty",
            "an empty Message{} as the first message is refused",
            "an empty Message{} before negotiation",
            |_| Vec::new(),
        ),
        first_message(
            "link/first-message-ack",
            "a SubscriptionAck as the first message is refused",
            "a SubscriptionAck before negotiation",
            |_| {
                prost::Message::encode_to_vec(&client::wrap(MessageType::SubscriptionAck(pb::SubscriptionAck {
                    subscription_id: 1,
                    success: true,
                    error: String::new(),
                })))
            },
        ),
        refusal(
            "link/request-is-reply",
            "a request with is_reply true is refused",
            &["SLIM-LINK-003"],
            "a request with is_reply true",
            |r| r.is_reply = true,
        ),
        refusal(
            "link/empty-link-id",
            "a request with an empty link_id is refused",
            &["SLIM-LINK-002"],
            "a request with an empty link_id",
            |r| r.link_id.clear(),
        ),
        refusal(
            "link/version-not-semver",
            "a request whose slim_version is not a semantic version is refused",
            &["SLIM-LINK-004"],
            "slim_version \"not-semver\"",
            |r| r.slim_version = "not-semver".into(),
        ),
        refusal(
            "link/version-empty",
            "a request with an empty slim_version is refused",
            &["SLIM-LINK-004"],
            "an empty slim_version",
            |r| r.slim_version.clear(),
        ),
        refusal(
            "link/key-missing",
            "a strict node refuses a request without an X25519 key",
            &["SLIM-LINK-005"],
            "a request without link_ecdh_public_key",
            |r| r.link_ecdh_public_key.clear(),
        )
        .needs(Need::StrictMac),
        refusal(
            "link/key-31-bytes",
            "a strict node refuses a 31-byte X25519 key",
            &["SLIM-LINK-005"],
            "a 31-byte link_ecdh_public_key",
            |r| r.link_ecdh_public_key.truncate(31),
        )
        .needs(Need::StrictMac),
        refusal(
            "link/key-33-bytes",
            "a strict node refuses a 33-byte X25519 key",
            &["SLIM-LINK-005"],
            "a 33-byte link_ecdh_public_key",
            |r| r.link_ecdh_public_key = [&r.link_ecdh_public_key[..], &[0]].concat().into(),
        )
        .needs(Need::StrictMac),
        refusal(
            "link/key-low-order",
            "a low-order X25519 key (all-zero shared secret) is refused",
            &["SLIM-LINK-008"],
            "the low-order public key 0 (all-zero shared secret)",
            |r| r.link_ecdh_public_key = vec![0u8; 32].into(),
        ),
        reply_check(
            "link/reply-echoes-link-id",
            "the reply echoes the request's link_id",
            &["SLIM-LINK-002"],
            |_| {},
            |req, rep| ensure(rep.link_id == req.link_id, format!("link_id {:?}", req.link_id), format!("link_id {:?}", rep.link_id)),
        ),
        reply_check(
            "link/reply-is-reply",
            "the reply has is_reply true",
            &["SLIM-LINK-003"],
            |_| {},
            |_, rep| ensure(rep.is_reply, "is_reply true", "is_reply false"),
        ),
        reply_check(
            "link/reply-version-semver",
            "the reply's slim_version is a semantic version",
            &["SLIM-LINK-004"],
            |_| {},
            |_, rep| ensure(is_semver(&rep.slim_version), "a semver slim_version", format!("{:?}", rep.slim_version)),
        ),
        reply_check(
            "link/reply-key-32-bytes",
            "the reply carries a 32-byte X25519 key",
            &["SLIM-LINK-005"],
            |_| {},
            |_, rep| ensure(rep.link_ecdh_public_key.len() == 32, "a 32-byte link_ecdh_public_key", format!("{} bytes", rep.link_ecdh_public_key.len())),
        ),
        reply_check(
            "link/reply-echoes-edge",
            "the reply echoes connection_type EDGE and carries a node_id",
            &["SLIM-LINK-011"],
            |_| {},
            check_type_and_node,
        ),
        reply_check(
            "link/reply-echoes-remote",
            "the reply echoes connection_type REMOTE",
            &["SLIM-LINK-011"],
            |r| r.connection_type = pb::LinkConnectionType::Remote as i32,
            check_type_and_node,
        ),
        reply_check(
            "link/old-version-accepted",
            "a request with an old but valid semver version (0.0.1) is answered",
            &["SLIM-LINK-004"],
            |r| r.slim_version = "0.0.1".into(),
            |_, rep| ensure(rep.is_reply, "a reply", "no reply"),
        ),
        Case::new(
            "link/key-derivation",
            "a Subscribe signed with the HKDF link key is accepted by a strict node",
            &["SLIM-LINK-007", "SLIM-MAC-001"],
            |cx| async move {
                let mut a = cx.link("A").await?;
                a.subscribe(&cx.name("svc", Some(1)), 5).await
            },
        )
        .needs(Need::StrictMac),
        Case::new(
            "link/second-negotiation-ignored",
            "a second negotiation on an established link gets no reply and the link keeps working",
            &["SLIM-LINK-009"],
            |cx| async move {
                let mut a = cx.link("A").await?;
                let pair = slim_proto::link::LinkKeyPair::from_secret_bytes([3u8; 32]);
                let req = client::default_request(&uuid::Uuid::new_v4().to_string(), pair.public_bytes().to_vec());
                a.send_message(slim_proto::link::negotiation_message(req)).await?;
                a.expect_silence(cx.quiet, "a second negotiation gets no reply").await?;
                // The original key still signs: the link was not re-keyed.
                still_usable(&cx, &mut a, 77, "a second negotiation").await
            },
        ),
        Case::new(
            "link/post-quantum-hybrid",
            "a request with a 1184-byte ML-KEM key gets a 1088-byte ciphertext or an explicit UNIMPLEMENTED",
            &["SLIM-LINK-012"],
            |cx| async move {
                let mut a = cx.raw_link("A").await?;
                let pair = slim_proto::link::LinkKeyPair::from_secret_bytes([5u8; 32]);
                let mut req = client::default_request(&uuid::Uuid::new_v4().to_string(), pair.public_bytes().to_vec());
                // Not a valid ML-KEM key (the runner has no ML-KEM): a node that implements the
                // hybrid may refuse it; either way the answer is recorded.
                req.link_kem_payload = Some(vec![0x11; slim_proto::link::ML_KEM768_PUBLIC_KEY_LEN].into());
                a.send_message(slim_proto::link::negotiation_message(req)).await?;
                match a.recv(PROMPT).await {
                    Event::Message(m) => {
                        let p = slim_proto::link::negotiation_payload(&m).map_err(|e| Failure::violation("a LinkNegotiation reply", e.to_string()))?;
                        let kem = p.link_kem_payload.as_ref().map_or(0, |k| k.len());
                        cx.note(format!("hybrid reply: {kem}-byte KEM ciphertext"));
                        ensure(kem == slim_proto::link::ML_KEM768_CIPHERTEXT_LEN, "a 1088-byte ML-KEM ciphertext, or UNIMPLEMENTED", format!("a reply with a {kem}-byte link_kem_payload (a classical answer to a hybrid request)"))
                    }
                    Event::Ended(s) if s.code() == tonic::Code::Unimplemented => {
                        cx.note("the node does not implement the hybrid link key (UNIMPLEMENTED)");
                        Ok(())
                    }
                    other => Err(Failure::violation("a 1088-byte ML-KEM ciphertext, or UNIMPLEMENTED", client::event_text(&other))),
                }
            },
        ),
        Case::new(
            "link/peer-connection-type",
            "a PEER request is either answered or refused with UNIMPLEMENTED",
            &["SLIM-LINK-013"],
            |cx| async move {
                let mut a = cx.raw_link("A").await?;
                let pair = slim_proto::link::LinkKeyPair::from_secret_bytes([6u8; 32]);
                let mut req = client::default_request(&uuid::Uuid::new_v4().to_string(), pair.public_bytes().to_vec());
                req.connection_type = pb::LinkConnectionType::Peer as i32;
                req.node_id = format!("conformance-peer-{}", cx.org());
                a.send_message(slim_proto::link::negotiation_message(req)).await?;
                match a.recv(PROMPT).await {
                    Event::Message(m) if slim_proto::link::negotiation_payload(&m).is_ok() => {
                        cx.note("the node accepts PEER links");
                        Ok(())
                    }
                    Event::Ended(s) if s.code() == tonic::Code::Unimplemented => {
                        cx.note("the node refuses PEER links with UNIMPLEMENTED");
                        Ok(())
                    }
                    other => Err(Failure::violation("a negotiation reply or UNIMPLEMENTED", client::event_text(&other))),
                }
            },
        ),
    ]
}

fn check_type_and_node(
    req: &pb::LinkNegotiationPayload,
    rep: &pb::LinkNegotiationPayload,
) -> Result<(), Failure> {
    ensure(
        rep.connection_type == req.connection_type,
        format!("connection_type {} echoed", req.connection_type),
        format!("connection_type {}", rep.connection_type),
    )?;
    ensure(
        !rep.node_id.is_empty(),
        "the responder's node_id",
        "an empty node_id",
    )
}

fn is_semver(v: &str) -> bool {
    // MAJOR.MINOR.PATCH with optional -pre and +build (semver.org), checked without our code.
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars().all(|c| c.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
        })
}
