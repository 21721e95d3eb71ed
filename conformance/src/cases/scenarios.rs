//! Routing cases driven by `vectors/routing.yaml`: each scenario is one case.
//!
//! The scenarios' expected acks and deliveries were written from the spec (crate slim-vectors);
//! this module only plays them. Every name's first component is replaced by the case's own, so
//! runs and cases never share a route.

use std::collections::BTreeMap;
use std::time::Duration;

use slim_proto::names::SlimName;
use slim_proto::pb::{self, message::MessageType};
use slim_vectors::routing::{Delivery, Op, Scenario, Step};

use super::PROMPT;
use crate::case::{Case, Ctx, Failure};
use crate::client::{self, describe, event_text, Event, Link};

pub(super) fn cases() -> Vec<Case> {
    slim_vectors::routing::builtin()
        .scenarios
        .into_iter()
        .map(|s| {
            let reqs: Vec<&str> = s.requirements.iter().map(String::as_str).collect();
            let id = format!("routing/vector-{}", s.id);
            let title = s.comment.clone();
            let scenario = s.clone();
            Case::new(&id, &title, &reqs, move |cx: Ctx| {
                play(cx, scenario.clone())
            })
        })
        .collect()
}

fn name_for(cx: &Ctx, text: &str) -> Result<SlimName, Failure> {
    let parsed: SlimName = text.parse().map_err(|e| {
        Failure::Harness(format!("routing vector name {text:?} does not parse: {e}"))
    })?;
    let [_, ns, svc] = parsed.components();
    Ok(SlimName::new(cx.org(), ns, svc).with_id(parsed.id()))
}

fn step_text(i: usize, s: &Step) -> String {
    format!(
        "step {} ({} {} on {})",
        i + 1,
        match s.op {
            Op::Subscribe => "subscribe",
            Op::Unsubscribe => "unsubscribe",
            Op::Publish => "publish",
            Op::Close => "close",
        },
        s.name.as_deref().unwrap_or(""),
        s.link
    )
}

async fn play(cx: Ctx, scenario: Scenario) -> Result<(), Failure> {
    let mut links: BTreeMap<String, Link> = BTreeMap::new();
    for label in &scenario.links {
        links.insert(label.clone(), cx.link(label).await?);
    }
    for (i, step) in scenario.steps.iter().enumerate() {
        let what = step_text(i, step);
        let link = links
            .get_mut(&step.link)
            .ok_or_else(|| Failure::Harness(format!("{what}: link {} is not open", step.link)))?;
        match step.op {
            Op::Close => {
                let mut l = links
                    .remove(&step.link)
                    .ok_or_else(|| Failure::Harness(what.clone()))?;
                l.close_send();
                drop(l);
                // Give the node a moment to notice the stream's end before the next step.
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Op::Subscribe | Op::Unsubscribe => {
                let name = name_for(&cx, step.name.as_deref().unwrap_or(""))?;
                let id = step.subscription_id.unwrap_or(0);
                let mut m = if step.op == Op::Subscribe {
                    client::subscribe(&name, id)
                } else {
                    client::unsubscribe(&name, id)
                };
                if let (Some(ttl), Some(h)) = (step.ttl, slim_proto::validate::header_mut(&mut m)) {
                    h.ttl = ttl;
                }
                link.send(m).await?;
                if let Some(want) = &step.expect_ack {
                    let ack = next_ack(link, id, &what).await?;
                    let error_ok = match (&want.error, want.success) {
                        (Some(e), _) => &ack.error == e,
                        (None, true) => ack.error.is_empty(),
                        (None, false) => true,
                    };
                    if ack.success != want.success || !error_ok {
                        return Err(Failure::violation(
                            format!(
                                "{what}: SubscriptionAck{{{id}, success {}{}}}",
                                want.success,
                                want.error
                                    .as_ref()
                                    .map(|e| format!(", error {e:?}"))
                                    .unwrap_or_default()
                            ),
                            format!("success {} error {:?}", ack.success, ack.error),
                        ));
                    }
                }
                if step.no_ack == Some(true) {
                    match link.recv(cx.quiet).await {
                        Event::Silent => {}
                        other => {
                            return Err(Failure::violation(
                                format!("{what}: no SubscriptionAck"),
                                event_text(&other),
                            ))
                        }
                    }
                }
            }
            Op::Publish => {
                let name = name_for(&cx, step.name.as_deref().unwrap_or(""))?;
                let src = SlimName::new(cx.org(), "ns", &format!("sender-{}", step.link));
                let count = step.count.unwrap_or(1) as usize;
                let tag = format!("s{}-", i + 1);
                for k in 0..count {
                    let mut m = client::publish(
                        &src,
                        &name,
                        step.fanout.unwrap_or(1),
                        format!("{tag}{k}").as_bytes(),
                    );
                    if let (Some(ttl), Some(h)) =
                        (step.ttl, slim_proto::validate::header_mut(&mut m))
                    {
                        h.ttl = ttl;
                    }
                    link.send(m).await?;
                }
                let expected_total = match &step.expect {
                    Some(Delivery::To(to)) => count * to.len(),
                    Some(Delivery::OneOf(_)) => count,
                    Some(Delivery::Nobody(_)) | None => 0,
                };
                let got = collect(&mut links, &tag, expected_total, cx.quiet, &what).await?;
                judge(&what, step.expect.as_ref(), count, &got)?;
            }
        }
    }
    Ok(())
}

/// Reads the next SubscriptionAck on `link`, which must be for `id`.
async fn next_ack(link: &mut Link, id: u64, what: &str) -> Result<pb::SubscriptionAck, Failure> {
    match link.recv(PROMPT).await {
        Event::Message(pb::Message {
            message_type: Some(MessageType::SubscriptionAck(a)),
            ..
        }) if a.subscription_id == id => Ok(a),
        other => Err(Failure::violation(
            format!("{what}: a SubscriptionAck for {id}"),
            event_text(&other),
        )),
    }
}

/// Collects this step's Publishes on every open link: waits until `expected` arrived (or
/// PROMPT passed), then a quiet period for extras. Anything else arriving is a violation.
async fn collect(
    links: &mut BTreeMap<String, Link>,
    tag: &str,
    expected: usize,
    quiet: Duration,
    what: &str,
) -> Result<BTreeMap<String, usize>, Failure> {
    let mut got: BTreeMap<String, usize> = links.keys().map(|k| (k.clone(), 0)).collect();
    let deadline = tokio::time::Instant::now() + PROMPT;
    let take =
        |label: &str, m: pb::Message, got: &mut BTreeMap<String, usize>| -> Result<(), Failure> {
            let p = client::payload(&m).map(|p| String::from_utf8_lossy(p).into_owned());
            match p {
                Some(p) if p.starts_with(tag) => {
                    *got.entry(label.to_string()).or_default() += 1;
                    Ok(())
                }
                _ => Err(Failure::violation(
                    format!("{what}: only this step's Publishes arrive"),
                    format!("{label} received {}", describe(&m)),
                )),
            }
        };
    while got.values().sum::<usize>() < expected && tokio::time::Instant::now() < deadline {
        for (label, link) in links.iter_mut() {
            if let Event::Message(m) = link.recv(Duration::from_millis(10)).await {
                take(label, m, &mut got)?;
            }
        }
    }
    tokio::time::sleep(quiet).await;
    for (label, link) in links.iter_mut() {
        while let Event::Message(m) = link.recv(Duration::from_millis(5)).await {
            take(label, m, &mut got)?;
        }
    }
    Ok(got)
}

fn judge(
    what: &str,
    expect: Option<&Delivery>,
    count: usize,
    got: &BTreeMap<String, usize>,
) -> Result<(), Failure> {
    let observed = format!("copies received: {got:?}");
    let others_zero = |allowed: &[String]| got.iter().all(|(l, n)| allowed.contains(l) || *n == 0);
    match expect {
        Some(Delivery::To(to)) => {
            let ok =
                to.iter().all(|l| got.get(l).copied().unwrap_or(0) == count) && others_zero(to);
            if !ok {
                return Err(Failure::violation(
                    format!("{what}: {count} copies to each of {to:?}, none elsewhere"),
                    observed,
                ));
            }
        }
        Some(Delivery::OneOf(of)) => {
            let total: usize = of.iter().map(|l| got.get(l).copied().unwrap_or(0)).sum();
            let even = count % of.len() != 0
                || of
                    .iter()
                    .all(|l| got.get(l).copied().unwrap_or(0) == count / of.len());
            if total != count || !others_zero(of) || !even {
                return Err(Failure::violation(
                    format!("{what}: {count} copies in total spread round robin over {of:?} ({} each), none elsewhere", count / of.len().max(1)),
                    observed,
                ));
            }
        }
        Some(Delivery::Nobody(_)) | None => {
            if got.values().any(|n| *n > 0) {
                return Err(Failure::violation(
                    format!("{what}: nobody receives it"),
                    observed,
                ));
            }
        }
    }
    Ok(())
}
