//! The node profile: every case, by area.
//!
//! Negative delivery checks use a *barrier*: after the message that must not be delivered, the
//! same sender publishes a marker to the same receiver; the node handles one link's messages in
//! order, so if the marker arrives first (or alone) the earlier message was dropped. This keeps
//! negative checks fast and exact; a bounded quiet period is used only where no barrier exists.

use std::time::Duration;

use slim_proto::names::SlimName;
use slim_proto::pb::{self, message::MessageType};

use crate::case::{Case, Ctx, Failure};
use crate::client::{self, event_text, payload, Event, Link};

mod auth;
mod connections;
mod link;
mod mac;
mod names;
mod revocation;
mod routing;
mod scenarios;
mod subscriptions;
mod transport;
mod validation;

/// Every case of the node profile, in run order.
pub fn all() -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(transport::cases());
    v.extend(link::cases());
    v.extend(names::cases());
    v.extend(mac::cases());
    v.extend(validation::cases());
    v.extend(subscriptions::cases());
    v.extend(routing::cases());
    v.extend(auth::cases());
    v.extend(revocation::cases());
    v.extend(connections::cases());
    // Heavy load last: a target these wedge cannot take other verdicts down with it.
    v.extend(subscriptions::heavy_cases());
    v.extend(transport::heavy_cases());
    // Then what uses up the node's connections from this address: nothing may need one after.
    v.extend(connections::exhausting_cases());
    v
}

/// How long the runner waits for something the node must send promptly (acks, deliveries).
pub(crate) const PROMPT: Duration = Duration::from_secs(5);

/// A publisher and a subscriber of `name` (subscription id 1), both negotiated.
pub(crate) async fn pair(cx: &Ctx, name: &SlimName) -> Result<(Link, Link), Failure> {
    let a = cx.link("A").await?;
    let mut b = cx.link("B").await?;
    b.subscribe(name, 1).await?;
    Ok((a, b))
}

/// Publishes `text` from `from` to `to` (fanout 1) and signs it.
pub(crate) async fn send_text(
    from: &Link,
    src: &SlimName,
    to: &SlimName,
    text: &str,
) -> Result<(), Failure> {
    from.send(client::publish(src, to, 1, text.as_bytes()))
        .await
}

/// Waits for the next Publish on `link` and checks its payload.
pub(crate) async fn expect_payload(link: &mut Link, text: &str) -> Result<pb::Message, Failure> {
    let m = link.expect_publish(PROMPT).await?;
    let got = payload(&m).map(|p| String::from_utf8_lossy(p).into_owned());
    if got.as_deref() == Some(text) {
        Ok(m)
    } else {
        Err(Failure::violation(
            format!("{} receives the Publish {text:?}", link.label()),
            format!("received a Publish with payload {got:?}"),
        ))
    }
}

/// Barrier: `from` publishes a marker to `name`; `to` must receive the marker next. A different
/// Publish arriving first means the message under test was delivered.
pub(crate) async fn barrier(
    from: &Link,
    src: &SlimName,
    to: &mut Link,
    name: &SlimName,
    what: &str,
) -> Result<(), Failure> {
    send_text(from, src, name, "marker").await?;
    loop {
        match to.recv(PROMPT).await {
            Event::Message(m) => match &m.message_type {
                Some(MessageType::Publish(_)) => {
                    let p = payload(&m).map(|p| String::from_utf8_lossy(p).into_owned());
                    if p.as_deref() == Some("marker") {
                        return Ok(());
                    }
                    return Err(Failure::violation(
                        format!("{what} is not delivered to {}", to.label()),
                        format!("{} received it: {}", to.label(), client::describe(&m)),
                    ));
                }
                // Acks for earlier subscriptions may still be in flight; they say nothing here.
                Some(MessageType::SubscriptionAck(_)) => continue,
                _ => {
                    return Err(Failure::violation(
                        format!("only Publishes reach {}", to.label()),
                        format!("received {}", client::describe(&m)),
                    ))
                }
            },
            other => {
                return Err(Failure::violation(
                    format!(
                        "the marker Publish sent after {what} reaches {} (the links stay usable)",
                        to.label()
                    ),
                    event_text(&other),
                ))
            }
        }
    }
}

/// Checks that the node still serves two fresh links (SLIM-VAL-005), after bad input elsewhere.
pub(crate) async fn still_serves(cx: &Ctx, after: &str) -> Result<(), Failure> {
    let name = cx.name("bystander", Some(7));
    let mut x = cx.link("X").await.map_err(|f| {
        let (_, o) = f.texts();
        Failure::violation(format!("the node accepts a new link after {after}"), o)
    })?;
    let y = cx.link("Y").await?;
    x.subscribe(&name, 1).await?;
    send_text(&y, &name, &name, "bystander").await?;
    expect_payload(&mut x, "bystander").await.map_err(|f| {
        let (_, o) = f.texts();
        Failure::violation(format!("other links are still served after {after}"), o)
    })?;
    Ok(())
}

/// Checks that `link` is still usable: a fresh subscription on it is acked with success.
pub(crate) async fn still_usable(
    cx: &Ctx,
    link: &mut Link,
    id: u64,
    after: &str,
) -> Result<(), Failure> {
    // Whatever arrives before the probe's ack (earlier acks, deliveries) says nothing here.
    before_probe_ack(cx, link, id, after).await.map(|_| ())
}

/// A probe Subscribe as a barrier for what the node does with `link`'s earlier input: the node
/// handles one link's messages in order, so anything it sends in answer to earlier messages (an
/// ack, a second negotiation reply) arrives before the probe's ack. Sends a valid Subscribe with
/// `id` to a fresh name and returns every message received before its successful ack.
pub(crate) async fn before_probe_ack(
    cx: &Ctx,
    link: &mut Link,
    id: u64,
    after: &str,
) -> Result<Vec<pb::Message>, Failure> {
    let probe = cx.name("probe", Some(u128::from(id)));
    link.send(client::subscribe(&probe, id)).await?;
    let mut before = Vec::new();
    loop {
        match link.recv(PROMPT).await {
            Event::Message(pb::Message {
                message_type: Some(MessageType::SubscriptionAck(a)),
                ..
            }) if a.subscription_id == id => {
                if a.success {
                    return Ok(before);
                }
                return Err(Failure::violation(
                    format!(
                        "{}'s probe Subscribe {id} sent after {after} is acked with success",
                        link.label()
                    ),
                    format!("refused: {:?}", a.error),
                ));
            }
            Event::Message(m) => before.push(m),
            other => {
                return Err(Failure::violation(
                    format!(
                    "{}'s link stays open and usable after {after} (a probe Subscribe is acked)",
                    link.label()
                ),
                    event_text(&other),
                ))
            }
        }
    }
}

/// Proves with a probe Subscribe (see [`before_probe_ack`]) that the node sent `link` nothing
/// after `after`: the probe's ack must be the next message; anything before it violates
/// `expected`.
pub(crate) async fn expect_nothing_before_probe(
    cx: &Ctx,
    link: &mut Link,
    id: u64,
    after: &str,
    expected: &str,
) -> Result<(), Failure> {
    match before_probe_ack(cx, link, id, after).await?.first() {
        None => Ok(()),
        Some(m) => Err(Failure::violation(
            expected,
            format!("received {}", client::describe(m)),
        )),
    }
}

/// How the node answered a routed message it must not accept, told apart exactly.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// A SubscriptionAck with success false, and its error.
    Acked(String),
    /// Nothing at all before the probe's ack: dropped silently.
    Silent,
}

/// After `link` sent a Subscribe or Unsubscribe with `id` that must not be accepted, proves with a
/// probe Subscribe (`probe_id`) that it was not: a success ack for `id` before the probe's ack is
/// a violation, and so is anything else the node sends back. Returns how it refused.
pub(crate) async fn expect_not_accepted(
    cx: &Ctx,
    link: &mut Link,
    id: u64,
    probe_id: u64,
    what: &str,
) -> Result<Refusal, Failure> {
    let before = before_probe_ack(cx, link, probe_id, what).await?;
    let mut refusal = Refusal::Silent;
    for m in before {
        match &m.message_type {
            Some(MessageType::SubscriptionAck(a)) if a.subscription_id == id && !a.success => {
                if matches!(refusal, Refusal::Acked(_)) {
                    return Err(Failure::violation_of(
                        "SLIM-SUB-001",
                        format!("at most one SubscriptionAck for {id}"),
                        format!("a second one: {}", client::describe(&m)),
                    ));
                }
                refusal = Refusal::Acked(a.error.clone());
            }
            _ => {
                return Err(Failure::violation(
                    format!("{what} is refused: no ack, or an ack with success false"),
                    format!("received {}", client::describe(&m)),
                ))
            }
        }
    }
    cx.note(match &refusal {
        Refusal::Acked(e) => format!("{what} was refused with an ack: {e:?}"),
        Refusal::Silent => format!("{what} was dropped without an ack"),
    });
    Ok(refusal)
}

/// A Subscribe to `name` with `id` was sent on `link` and must not be accepted: checks that no
/// success ack comes (see [`expect_not_accepted`]) and that no route to `link` was installed (a
/// Publish from a fresh link B must not reach it). Returns how the node refused.
pub(crate) async fn expect_subscribe_refused(
    cx: &Ctx,
    link: &mut Link,
    name: &SlimName,
    id: u64,
    what: &str,
) -> Result<Refusal, Failure> {
    let refusal = expect_not_accepted(cx, link, id, id + 1, what).await?;
    let b = cx.link("B").await?;
    expect_no_route(
        cx,
        &b,
        link,
        name,
        &format!("a Publish to the name of {what}"),
    )
    .await?;
    Ok(refusal)
}

/// Proves that nothing routes `name` to `rx`: `tx` publishes to `name` and then a marker to
/// `rx`'s private marker name (see [`marker_name`]); `rx` must see the marker first.
pub(crate) async fn expect_no_route(
    cx: &Ctx,
    tx: &Link,
    rx: &mut Link,
    name: &SlimName,
    what: &str,
) -> Result<(), Failure> {
    let marker = marker_name(cx, rx.label());
    let src = cx.name("router-probe", None);
    send_text(tx, &src, name, "must-not-arrive").await?;
    barrier(tx, &src, rx, &marker, what).await
}

/// A name only `link` subscribes (see [`subscribe_marker`]), for barriers aimed at it alone.
pub(crate) fn marker_name(cx: &Ctx, label: &str) -> SlimName {
    cx.name(&format!("marker-{label}"), Some(1))
}

/// Subscribes `link` to its private marker name with subscription id `id`.
pub(crate) async fn subscribe_marker(cx: &Ctx, link: &mut Link, id: u64) -> Result<(), Failure> {
    let name = marker_name(cx, link.label());
    link.subscribe(&name, id).await
}

/// Waits for the node to end `link`'s stream after the client half-closed it, which a node does
/// once it has dropped the link; if it does not within [`PROMPT`], resets the stream instead (as a
/// client that gives up). Returns whether the node ended it.
pub(crate) async fn close_and_wait(cx: &Ctx, mut link: Link) -> bool {
    link.close_send();
    let label = link.label().to_string();
    loop {
        match link.recv(PROMPT).await {
            Event::Ended(_) => return true,
            // Deliveries still queued for the link say nothing about its end.
            Event::Message(_) => continue,
            Event::Silent => {
                cx.note(format!(
                    "the node did not end {label}'s stream within {PROMPT:?} of the client's half-close; the runner reset it"
                ));
                return false;
            }
        }
    }
}

/// After a link that held a subscription to `shared` ended: every anycast Publish from `tx` to
/// `shared` must reach `survivor` (the other subscriber). Each round sends `n` anycasts and then a
/// marker to the survivor's private marker name, and counts what arrived before the marker (the
/// node keeps one sender's order). A node that removes the dead link's routes a little after the
/// stream ended gets a few rounds to converge; the case passes on two perfect rounds in a row, so
/// a node that picks anycast receivers at random cannot pass by luck (2^-2n a pair).
pub(crate) async fn anycasts_all_reach(
    cx: &Ctx,
    tx: &Link,
    shared: &SlimName,
    survivor: &mut Link,
    n: usize,
    what: &str,
) -> Result<(), Failure> {
    const ROUNDS: usize = 5;
    let src = cx.name("sender", None);
    let marker = marker_name(cx, survivor.label());
    let mut perfect = 0;
    let mut first_evidence = None;
    for round in 1..=ROUNDS {
        for i in 1..=n {
            send_text(tx, &src, shared, &format!("r{round}-any{i}")).await?;
        }
        send_text(tx, &src, &marker, &format!("r{round}-marker")).await?;
        let mut got = Vec::new();
        loop {
            match survivor.recv(PROMPT).await {
                Event::Message(m) => {
                    let Some(p) = payload(&m).map(|p| String::from_utf8_lossy(p).into_owned())
                    else {
                        continue; // acks
                    };
                    if p == format!("r{round}-marker") {
                        break;
                    }
                    if let Some(rest) = p.strip_prefix(&format!("r{round}-")) {
                        got.push(rest.to_string());
                    }
                }
                other => {
                    return Err(Failure::violation(
                        format!("{} keeps receiving after {what}", survivor.label()),
                        format!("round {round}: {}", event_text(&other)),
                    ))
                }
            }
        }
        if got.len() == n {
            perfect += 1;
            if perfect == 2 {
                return Ok(());
            }
        } else {
            perfect = 0;
            first_evidence.get_or_insert_with(|| {
                format!(
                    "{} received {} of {n} anycasts ({}) in round {round}",
                    survivor.label(),
                    got.len(),
                    got.join(", ")
                )
            });
        }
    }
    Err(Failure::violation(
        format!(
            "after {what}, every anycast Publish to {shared} reaches {} (the ended link's routes are removed)",
            survivor.label()
        ),
        format!(
            "{}; no two perfect rounds in a row in {ROUNDS} rounds of {n}",
            first_evidence.unwrap_or_default()
        ),
    ))
}

/// Learns the node's index of `sender`'s link: `sender` publishes to `probe_rx`'s name and the
/// delivered copy carries `incoming_conn` (SLIM-ROUTE-009).
pub(crate) async fn learn_index(
    sender: &Link,
    sender_name: &SlimName,
    rx: &mut Link,
    rx_name: &SlimName,
) -> Result<u64, Failure> {
    send_text(sender, sender_name, rx_name, "who-am-i").await?;
    let m = expect_payload(rx, "who-am-i").await?;
    slim_proto::validate::header(&m)
        .and_then(|h| h.incoming_conn)
        .ok_or_else(|| {
            Failure::violation(
                "a delivered Publish carries incoming_conn (SLIM-ROUTE-009)",
                "no incoming_conn on the delivered Publish",
            )
        })
}
