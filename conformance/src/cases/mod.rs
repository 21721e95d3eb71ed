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
mod link;
mod mac;
mod names;
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
    // Heavy load last: a target these wedge cannot take other verdicts down with it.
    v.extend(subscriptions::heavy_cases());
    v.extend(transport::heavy_cases());
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
    let probe = cx.name("probe", Some(u128::from(id)));
    link.send(client::subscribe(&probe, id)).await?;
    loop {
        match link.recv(PROMPT).await {
            Event::Message(pb::Message {
                message_type: Some(MessageType::SubscriptionAck(a)),
                ..
            }) if a.subscription_id == id && a.success => return Ok(()),
            // Earlier acks (or deliveries) may be queued ahead of ours.
            Event::Message(_) => continue,
            other => {
                return Err(Failure::violation(
                    format!(
                        "{}'s link stays open and usable after {after} (a new Subscribe is acked)",
                        link.label()
                    ),
                    event_text(&other),
                ))
            }
        }
    }
}

/// Expects no SubscriptionAck with `success = true` for `id` within the quiet period; returns
/// the refusal ack if one came.
pub(crate) async fn expect_not_accepted(
    link: &mut Link,
    id: u64,
    quiet: Duration,
    what: &str,
) -> Result<Option<pb::SubscriptionAck>, Failure> {
    match link.recv(quiet).await {
        Event::Silent => Ok(None),
        Event::Message(pb::Message {
            message_type: Some(MessageType::SubscriptionAck(a)),
            ..
        }) if a.subscription_id == id && !a.success => Ok(Some(a)),
        other => Err(Failure::violation(
            format!("{what} is refused: no ack, or an ack with success false"),
            event_text(&other),
        )),
    }
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
