//! Routing cases driven by `vectors/routing.yaml`: each scenario is one case.
//!
//! The scenarios' expected acks and deliveries were written from the spec (crate slim-vectors);
//! this module only plays them. Every name's first component is replaced by the case's own, so
//! runs and cases never share a route.

use std::collections::BTreeMap;

use slim_proto::names::SlimName;
use slim_proto::pb::{self, message::MessageType};
use slim_vectors::routing::{Delivery, Op, Scenario, Step};

use super::{
    before_probe_ack, close_and_wait, expect_nothing_before_probe, marker_name, subscribe_marker,
    PROMPT,
};
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
        let mut link = cx.link(label).await?;
        // A private name per link, for the barriers that end each Publish step.
        subscribe_marker(&cx, &mut link, MARKER_ID).await?;
        links.insert(label.clone(), link);
    }
    let mut probe_id = PROBE_IDS;
    for (i, step) in scenario.steps.iter().enumerate() {
        let what = step_text(i, step);
        let link = links
            .get_mut(&step.link)
            .ok_or_else(|| Failure::Harness(format!("{what}: link {} is not open", step.link)))?;
        match step.op {
            Op::Close => {
                let l = links
                    .remove(&step.link)
                    .ok_or_else(|| Failure::Harness(what.clone()))?;
                // The next step starts once the node has ended the stream (or the runner reset it).
                close_and_wait(&cx, l).await;
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
                    // Any ack for this step comes before the ack of a probe sent after it.
                    probe_id += 1;
                    expect_nothing_before_probe(
                        &cx,
                        link,
                        probe_id,
                        &what,
                        &format!("{what}: no SubscriptionAck"),
                    )
                    .await?;
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
                probe_id += 1;
                let got = collect(&cx, &mut links, &step.link, &src, &tag, probe_id, &what).await?;
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

/// Subscription id of every link's marker subscription (no vector uses it).
const MARKER_ID: u64 = 4_000_000_001;
/// First subscription id of the probes that end the sender's own check (no vector uses these).
const PROBE_IDS: u64 = 4_100_000_000;

/// Collects this step's Publishes on every open link, ended by barriers rather than by waiting:
/// the sender publishes a marker to every other link's private name, and each link reads until
/// its marker (the node keeps one sender's order, so every copy of this step comes before it);
/// the sender itself, which must receive nothing of its own (SLIM-ROUTE-007), reads until the ack
/// of a probe Subscribe it sends after the step. Anything else arriving is a violation.
async fn collect(
    cx: &Ctx,
    links: &mut BTreeMap<String, Link>,
    sender: &str,
    src: &SlimName,
    tag: &str,
    probe_id: u64,
    what: &str,
) -> Result<BTreeMap<String, usize>, Failure> {
    let mut got: BTreeMap<String, usize> = links.keys().map(|k| (k.clone(), 0)).collect();
    let take =
        |label: &str, m: &pb::Message, got: &mut BTreeMap<String, usize>| -> Result<(), Failure> {
            let p = client::payload(m).map(|p| String::from_utf8_lossy(p).into_owned());
            match p {
                Some(p) if p.starts_with(tag) => {
                    *got.entry(label.to_string()).or_default() += 1;
                    Ok(())
                }
                _ => Err(Failure::violation(
                    format!("{what}: only this step's Publishes arrive"),
                    format!("{label} received {}", describe(m)),
                )),
            }
        };
    let marker_text = format!("{tag}marker");
    if let Some(tx) = links.get(sender) {
        for label in links.keys().filter(|l| *l != sender) {
            let marker = marker_name(cx, label);
            tx.send(client::publish(src, &marker, 1, marker_text.as_bytes()))
                .await?;
        }
    }
    for (label, link) in links.iter_mut() {
        if label == sender {
            for m in before_probe_ack(cx, link, probe_id, what).await? {
                take(label, &m, &mut got)?;
            }
            continue;
        }
        loop {
            match link.recv(PROMPT).await {
                Event::Message(m) => {
                    if client::payload(&m) == Some(marker_text.as_bytes()) {
                        break;
                    }
                    take(label, &m, &mut got)?;
                }
                other => {
                    return Err(Failure::violation(
                        format!("{what}: the marker sent after the step reaches {label}"),
                        event_text(&other),
                    ))
                }
            }
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
