//! Names: routing by the hashed form, id halves, the wildcard id.

use slim_proto::names::SlimName;
use slim_proto::pb;

use super::{barrier, expect_payload, pair};
use crate::case::{Case, Ctx, Failure};
use crate::client;

/// Publishes from `a` a message whose destination was edited by `edit` after being built from
/// `dst` (the header is signed after the edit).
async fn publish_edited(
    a: &client::Link,
    src: &SlimName,
    dst: &SlimName,
    text: &str,
    edit: impl FnOnce(&mut pb::Name),
) -> Result<(), Failure> {
    let mut m = client::publish(src, dst, 1, text.as_bytes());
    if let Some(h) = slim_proto::validate::header_mut(&mut m) {
        if let Some(d) = h.destination.as_mut() {
            edit(d);
        }
    }
    a.send(m).await
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "names/string-form-ignored",
            "a Publish with the right hashes but different string components is delivered",
            &["SLIM-ROUTE-001"],
            |cx: Ctx| async move {
                let name = cx.name("svc", Some(1));
                let (a, mut b) = pair(&cx, &name).await?;
                publish_edited(&a, &name, &name, "strings-differ", |d| {
                    if let Some(s) = d.str_name.as_mut() {
                        s.str_component_2 = "something-else".into();
                    }
                })
                .await?;
                expect_payload(&mut b, "strings-differ").await.map(|_| ())
            },
        ),
        Case::new(
            "names/string-form-absent",
            "a Publish whose destination has no string form is routed by its hashes",
            &["SLIM-ROUTE-001"],
            |cx: Ctx| async move {
                let name = cx.name("svc", Some(1));
                let (a, mut b) = pair(&cx, &name).await?;
                publish_edited(&a, &name, &name, "no-strings", |d| d.str_name = None).await?;
                expect_payload(&mut b, "no-strings").await.map(|_| ())
            },
        ),
        Case::new(
            "names/hash-form-decides",
            "a Publish with the right strings but a different component hash is not delivered",
            &["SLIM-ROUTE-001"],
            |cx: Ctx| async move {
                let name = cx.name("svc", Some(1));
                let (a, mut b) = pair(&cx, &name).await?;
                publish_edited(&a, &name, &name, "hash-differs", |d| {
                    if let Some(e) = d.name.as_mut() {
                        e.component_2 ^= 1;
                    }
                })
                .await?;
                barrier(
                    &a,
                    &name,
                    &mut b,
                    &name,
                    "a Publish whose component_2 hash differs",
                )
                .await
            },
        ),
        Case::new(
            "names/absent-name-id-is-wildcard",
            "a Publish whose destination has no name_id reaches a subscriber of a specific id",
            &["SLIM-NAME-003", "SLIM-ROUTE-003"],
            |cx: Ctx| async move {
                let name = cx.name("svc", Some(42));
                let (a, mut b) = pair(&cx, &name).await?;
                publish_edited(&a, &name, &name, "no-name-id", |d| {
                    if let Some(e) = d.name.as_mut() {
                        e.name_id = None;
                    }
                })
                .await?;
                expect_payload(&mut b, "no-name-id").await.map(|_| ())
            },
        ),
        Case::new(
            "names/all-ones-id-is-wildcard",
            "a Publish to the all-ones id reaches a subscriber of a specific id",
            &["SLIM-NAME-003", "SLIM-ROUTE-003"],
            |cx: Ctx| async move {
                let name = cx.name("svc", Some(42));
                let (a, mut b) = pair(&cx, &name).await?;
                let wildcard = cx.name("svc", None);
                a.send(client::publish(&name, &wildcard, 1, b"all-ones"))
                    .await?;
                expect_payload(&mut b, "all-ones").await.map(|_| ())
            },
        ),
        Case::new(
            "names/id-halves-distinct",
            "ids with swapped halves are different names",
            &["SLIM-NAME-002", "SLIM-ROUTE-002"],
            |cx: Ctx| async move {
                // id_0 = 0, id_1 = 0x42 versus id_0 = 0x42, id_1 = 0.
                let low = cx.name("svc", Some(0x42));
                let high = cx.name("svc", Some(0x42u128 << 64));
                let (a, mut b) = pair(&cx, &low).await?;
                a.send(client::publish(&low, &high, 1, b"swapped")).await?;
                barrier(
                    &a,
                    &low,
                    &mut b,
                    &low,
                    "a Publish to the id with swapped halves",
                )
                .await
            },
        ),
        Case::new(
            "names/id-high-halves-distinct",
            "ids that differ only in id_0 (the high 64 bits) are different names",
            &["SLIM-NAME-002", "SLIM-ROUTE-002"],
            |cx: Ctx| async move {
                // id_0 = 1, id_1 = 0 versus id_0 = 2, id_1 = 0.
                let one = cx.name("svc", Some(1u128 << 64));
                let two = cx.name("svc", Some(2u128 << 64));
                let (a, mut b) = pair(&cx, &one).await?;
                a.send(client::publish(&one, &two, 1, b"other-high-half")).await?;
                barrier(&a, &one, &mut b, &one, "a Publish to an id with another high half").await
            },
        ),
        Case::new(
            "names/unicode-components",
            "names with non-ASCII components route, and the delivered copy keeps both forms of both names",
            &["SLIM-ROUTE-002", "SLIM-NAME-004"],
            |cx: Ctx| async move {
                let name = SlimName::new(cx.org(), "名前空間", "servicé-🚀").with_id(9);
                let (a, mut b) = pair(&cx, &name).await?;
                let m = client::publish(&name, &name, 1, b"unicode");
                let sent = slim_proto::validate::header(&m).cloned();
                a.send(m).await?;
                let got = expect_payload(&mut b, "unicode").await?;
                let got = slim_proto::validate::header(&got).cloned();
                for (which, sent, got) in [
                    ("source", sent.as_ref().and_then(|h| h.source.clone()), got.as_ref().and_then(|h| h.source.clone())),
                    ("destination", sent.as_ref().and_then(|h| h.destination.clone()), got.as_ref().and_then(|h| h.destination.clone())),
                ] {
                    let complete = got.as_ref().is_some_and(|n| {
                        n.str_name.is_some() && n.name.as_ref().is_some_and(|e| e.name_id.is_some())
                    });
                    if !complete || got != sent {
                        return Err(Failure::violation_of(
                            "SLIM-NAME-004",
                            format!("the delivered {which} carries the string form and the hashed form with name_id, as sent: {sent:?}"),
                            format!("{got:?}"),
                        ));
                    }
                }
                Ok(())
            },
        ),
    ]
}
