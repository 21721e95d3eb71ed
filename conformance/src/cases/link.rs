//! Link negotiation: the first exchange on every stream, and the link key.

use std::time::Duration;

use slim_proto::pb::{self, message::MessageType};

use super::{expect_nothing_before_probe, still_serves, PROMPT};
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
                // No event can prove a silence here: a bounded quiet period is the only check.
                a.expect_silence(cx.quiet, "the node waits for the client's negotiation").await?;
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
            "exactly one negotiation reply: none after the first, none to a second negotiation, and the link keeps its key",
            &["SLIM-LINK-009"],
            |cx| async move {
                let mut a = cx.link("A").await?;
                // Nothing after the reply: the node answers a probe Subscribe next.
                expect_nothing_before_probe(&cx, &mut a, 76, "the negotiation", "exactly one negotiation reply, then nothing unasked").await?;
                let pair = slim_proto::link::LinkKeyPair::from_secret_bytes([3u8; 32]);
                let req = client::default_request(&uuid::Uuid::new_v4().to_string(), pair.public_bytes().to_vec());
                a.send_message(slim_proto::link::negotiation_message(req)).await?;
                // Any reply to the second negotiation comes before the probe's ack; the probe is
                // signed with the original key, so its ack also shows the link was not re-keyed.
                expect_nothing_before_probe(&cx, &mut a, 77, "a second negotiation", "no reply to a second negotiation").await
            },
        ),
        Case::new(
            "link/post-quantum-hybrid",
            "a request with a real ML-KEM-768 key gets a ciphertext whose hybrid key signs the link, or UNIMPLEMENTED",
            &["SLIM-LINK-012", "SLIM-LINK-014", "SLIM-LINK-015"],
            post_quantum_hybrid,
        ),
        Case::new(
            "link/peer-connection-type",
            "a PEER request is answered with PEER echoed and a node_id, or refused with UNIMPLEMENTED",
            &["SLIM-LINK-013", "SLIM-LINK-011", "SLIM-LINK-010"],
            |cx| async move {
                let mut a = cx.raw_link("A").await?;
                let pair = slim_proto::link::LinkKeyPair::from_secret_bytes([6u8; 32]);
                let mut req = client::default_request(&uuid::Uuid::new_v4().to_string(), pair.public_bytes().to_vec());
                req.connection_type = pb::LinkConnectionType::Peer as i32;
                req.node_id = format!("conformance-peer-{}", cx.org());
                a.send_message(slim_proto::link::negotiation_message(req.clone())).await?;
                match a.recv(PROMPT).await {
                    Event::Message(m) => {
                        let rep = slim_proto::link::negotiation_payload(&m).map_err(|e| {
                            Failure::violation_of("SLIM-LINK-011", "a LinkNegotiation reply", format!("{}: {e}", describe(&m)))
                        })?;
                        check_type_and_node(&req, rep).map_err(|f| {
                            let (e, o) = f.texts();
                            Failure::violation_of("SLIM-LINK-011", e, o)
                        })?;
                        cx.observe("the node accepts PEER links");
                        Ok(())
                    }
                    Event::Ended(s) if s.code() == tonic::Code::Unimplemented => {
                        cx.observe("the node refuses PEER links with UNIMPLEMENTED");
                        Ok(())
                    }
                    other => Err(Failure::violation_of(
                        "SLIM-LINK-010",
                        "a PEER request is answered, or refused with a status (UNIMPLEMENTED) that says why",
                        client::event_text(&other),
                    )),
                }
            },
        ),
    ]
}

/// Requests the hybrid link key with a real ML-KEM-768 encapsulation key. A node that answers
/// with a ciphertext must derive the hybrid key from it (SLIM-LINK-014): the runner decapsulates,
/// derives the key, subscribes with a MAC under it, and verifies the MAC of a Publish the node
/// delivers. A node that does not implement the hybrid refuses with UNIMPLEMENTED (SLIM-LINK-015)
/// rather than answering with a classical key the initiator would refuse.
async fn post_quantum_hybrid(cx: Ctx) -> Result<(), Failure> {
    use ml_kem::{Decapsulate, FromSeed, KeyExport, MlKem768};
    let mut seed = [0u8; 64];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
    let (dk, ek) = MlKem768::from_seed(&seed.into());
    let mut a = cx.raw_link("A").await?;
    let mut secret = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut secret);
    let pair = slim_proto::link::LinkKeyPair::from_secret_bytes(secret);
    let link_id = uuid::Uuid::new_v4().to_string();
    let mut req = client::default_request(&link_id, pair.public_bytes().to_vec());
    req.link_kem_payload = Some(ek.to_bytes().to_vec().into());
    a.send_message(slim_proto::link::negotiation_message(req))
        .await?;
    let rep = match a.recv(PROMPT).await {
        Event::Message(m) => slim_proto::link::negotiation_payload(&m)
            .map_err(|e| {
                Failure::violation_of(
                    "SLIM-LINK-014",
                    "a LinkNegotiation reply",
                    format!("{}: {e}", describe(&m)),
                )
            })?
            .clone(),
        Event::Ended(s) if s.code() == tonic::Code::Unimplemented => {
            cx.observe(format!(
                "the node does not implement the hybrid link key: {}",
                status_text(&s)
            ));
            return Ok(());
        }
        other => {
            return Err(Failure::violation_of(
                "SLIM-LINK-015",
                "a reply with a 1088-byte ML-KEM ciphertext, or UNIMPLEMENTED",
                client::event_text(&other),
            ))
        }
    };
    let ct = match rep.link_kem_payload.as_deref() {
        None | Some([]) => return Err(Failure::violation_of(
            "SLIM-LINK-015",
            "a hybrid request is answered with an ML-KEM ciphertext, or refused with UNIMPLEMENTED",
            "a classical reply (no link_kem_payload), which the initiator must refuse",
        )),
        Some(ct) => ct.to_vec(),
    };
    let shared = dk.decapsulate_slice(&ct).map_err(|_| {
        Failure::violation_of(
            "SLIM-LINK-014",
            format!(
                "a {}-byte ML-KEM-768 ciphertext",
                slim_proto::link::ML_KEM768_CIPHERTEXT_LEN
            ),
            format!("a {}-byte link_kem_payload", ct.len()),
        )
    })?;
    let mut kem_shared = [0u8; 32];
    kem_shared.copy_from_slice(&shared);
    let mac = pair
        .derive_hybrid_link_mac(&rep.link_ecdh_public_key, &kem_shared, &link_id)
        .map_err(|e| {
            Failure::violation_of(
                "SLIM-LINK-014",
                "a usable X25519 key in the hybrid reply",
                e.to_string(),
            )
        })?;
    a.mac = Some(mac);
    a.link_id = link_id;
    let name = cx.name("pq", Some(1));
    a.subscribe(&name, 1).await.map_err(|f| {
        let (_, o) = f.texts();
        Failure::violation_of(
            "SLIM-LINK-014",
            "a Subscribe signed with the hybrid link key is acked with success",
            o,
        )
    })?;
    let b = cx.link("B").await?;
    b.send(client::publish(&name, &name, 1, b"hybrid")).await?;
    let got = super::expect_payload(&mut a, "hybrid").await?;
    let h =
        slim_proto::validate::header(&got).ok_or_else(|| Failure::violation("a header", "none"))?;
    if let Some(mac) = a.mac.as_ref() {
        mac.verify(h).map_err(|e| {
            Failure::violation_of(
                "SLIM-LINK-014",
                "the node signs what it delivers on a hybrid link with the hybrid link key",
                e.to_string(),
            )
        })?;
    }
    cx.observe("the node implements the hybrid link key (ML-KEM-768 + X25519), and its MACs verify under it");
    Ok(())
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
