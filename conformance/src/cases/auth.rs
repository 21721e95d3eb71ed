//! Authentication at the HTTP layer (run only when the runner is given credentials).

use base64::Engine as _;
use tonic::Code;

use super::{still_serves, PROMPT};
use crate::case::{Case, Ctx, Failure, Need};
use crate::client::{self, describe, status_text, Event, Link, Target};

/// Opens a link with `authorization` replaced, sends a valid negotiation if the call was
/// accepted, and expects UNAUTHENTICATED before any reply.
async fn expect_unauthenticated(
    cx: &Ctx,
    authorization: Option<String>,
    what: &str,
) -> Result<(), Failure> {
    let target = Target {
        authorization,
        ..cx.target.clone()
    };
    let mut link = match Link::open(&target, "A", &cx.log).await {
        Err(Failure::Rejected(s)) if s.code() == Code::Unauthenticated => return Ok(()),
        Err(Failure::Rejected(s)) => {
            return Err(Failure::violation(
                format!("the call {what} is refused with UNAUTHENTICATED"),
                format!("refused with {}", status_text(&s)),
            ))
        }
        Err(f) => return Err(f),
        Ok(l) => l,
    };
    let pair = slim_proto::link::LinkKeyPair::from_secret_bytes([1u8; 32]);
    let req = client::default_request(
        &uuid::Uuid::new_v4().to_string(),
        pair.public_bytes().to_vec(),
    );
    // The call may be refused as soon as the client sends; a send error is part of the refusal.
    let _ = link
        .send_message(slim_proto::link::negotiation_message(req))
        .await;
    match link.recv(PROMPT).await {
        Event::Ended(s) if s.code() == Code::Unauthenticated => Ok(()),
        Event::Ended(s) => Err(Failure::violation(
            format!("the call {what} is refused with UNAUTHENTICATED"),
            format!("stream ended with {}", status_text(&s)),
        )),
        Event::Message(m) => Err(Failure::violation(
            format!("the call {what} is refused before negotiation (SLIM-AUTH-002)"),
            format!("received {}", describe(&m)),
        )),
        Event::Silent => Err(Failure::violation(
            format!("the call {what} is refused with UNAUTHENTICATED"),
            "the stream stayed open",
        )),
    }
}

fn wrong_credentials(right: &str) -> String {
    if right.to_ascii_lowercase().starts_with("bearer ") {
        "Bearer not-the-token".into()
    } else {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("slim-conformance:not-the-password")
        )
    }
}

/// The right credentials with their secret (the password, or the token) edited by `edit`: the
/// exact-comparison probes.
fn edited_credentials(right: &str, edit: fn(&mut String)) -> Result<String, Failure> {
    let (scheme, value) = right
        .split_once(' ')
        .ok_or_else(|| Failure::Harness(format!("malformed authorization {right:?}")))?;
    if scheme.eq_ignore_ascii_case("bearer") {
        let mut token = value.to_string();
        edit(&mut token);
        return Ok(format!("{scheme} {token}"));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| Failure::Harness("Basic credentials are not base64 UTF-8".into()))?;
    let (user, pass) = decoded
        .split_once(':')
        .ok_or_else(|| Failure::Harness("Basic credentials without ':'".into()))?;
    let mut pass = pass.to_string();
    edit(&mut pass);
    Ok(format!(
        "{scheme} {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    ))
}

/// A case refusing the right credentials changed by one byte.
fn off_by_one(id: &str, title: &str, what: &'static str, edit: fn(&mut String)) -> Case {
    Case::new(id, title, &["SLIM-AUTH-001"], move |cx: Ctx| async move {
        let wrong = edited_credentials(cx.target.authorization.as_deref().unwrap_or(""), edit)?;
        expect_unauthenticated(&cx, Some(wrong), what).await
    })
    .needs(Need::Auth)
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "auth/missing-credentials",
            "a protected node refuses OpenChannel without an authorization header",
            &["SLIM-AUTH-001", "SLIM-AUTH-002"],
            |cx: Ctx| async move {
                expect_unauthenticated(&cx, None, "without credentials").await?;
                still_serves(&cx, "an unauthenticated call").await
            },
        )
        .needs(Need::Auth),
        Case::new(
            "auth/wrong-credentials",
            "a protected node refuses OpenChannel with wrong credentials",
            &["SLIM-AUTH-001", "SLIM-AUTH-002"],
            |cx: Ctx| async move {
                let wrong = wrong_credentials(cx.target.authorization.as_deref().unwrap_or(""));
                expect_unauthenticated(&cx, Some(wrong), "with wrong credentials").await?;
                still_serves(&cx, "a call with wrong credentials").await
            },
        )
        .needs(Need::Auth),
        Case::new(
            "auth/wrong-scheme",
            "a protected node refuses an authorization header with an unknown scheme",
            &["SLIM-AUTH-001"],
            |cx: Ctx| async move {
                expect_unauthenticated(
                    &cx,
                    Some("Digest username=\"x\"".into()),
                    "with an unknown scheme",
                )
                .await
            },
        )
        .needs(Need::Auth),
        off_by_one(
            "auth/secret-one-byte-short",
            "a protected node refuses the right credentials with the secret's last byte removed",
            "whose secret lacks its last byte",
            |s| {
                s.pop();
            },
        ),
        off_by_one(
            "auth/secret-one-byte-long",
            "a protected node refuses the right credentials with one byte appended to the secret",
            "whose secret has one byte too many",
            |s| s.push('x'),
        ),
        Case::new(
            "auth/right-secret-wrong-scheme",
            "a protected node refuses the right credentials presented under another scheme",
            &["SLIM-AUTH-001"],
            |cx: Ctx| async move {
                let right = cx.target.authorization.clone().unwrap_or_default();
                let (scheme, value) = right.split_once(' ').unwrap_or(("", ""));
                let other = if scheme.eq_ignore_ascii_case("bearer") {
                    "Basic"
                } else {
                    "Bearer"
                };
                expect_unauthenticated(
                    &cx,
                    Some(format!("{other} {value}")),
                    "with the right secret under another scheme",
                )
                .await
            },
        )
        .needs(Need::Auth),
        Case::new(
            "auth/valid-credentials",
            "with the right credentials negotiation and subscriptions work as usual",
            &["SLIM-AUTH-003"],
            |cx: Ctx| async move {
                let mut a = cx.link("A").await?;
                a.subscribe(&cx.name("svc", Some(1)), 9).await
            },
        )
        .needs(Need::Auth),
    ]
}
