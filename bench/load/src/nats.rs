//! NATS as a reference peer: the same scenarios, payloads, pacing, window and accounting as the
//! SLIM clients, over a NATS server through `async-nats`.
//!
//! A target URL that starts with `nats://` selects this transport ([`Transport::of_url`]). Every
//! client has its own NATS connection, as every SLIM client has its own HTTP/2 connection.
//! Subjects are `bench.<run-id>.…`, unique per run:
//!
//! | scenario | publisher `i` publishes to | subscribers | expected deliveries |
//! |---|---|---|---|
//! | `p2p` | `bench.<run>.p2p.<i>` | subscriber `i` subscribes it | `N × P` |
//! | `fanout` | `bench.<run>.fanout` | all S, plain subscriptions | `N × P × S` |
//! | `anycast` | `bench.<run>.anycast` | all S in queue group `bench-<run>` (one receives) | `N × P` |
//! | `reqrep` | `bench.<run>.reqrep`, reply to `bench.<run>.reply.<i>` | all S in the queue group echo to the reply subject | `N × P` round trips |
//!
//! Publishing uses async-nats' normal buffered path (`publish` queues into the connection's
//! writer, which writes and flushes in batches); nothing flushes per message. Before the first
//! publish, every subscribing connection proves that the server registered its subscriptions:
//! it subscribes to a private subject, publishes to it, flushes, and waits for that message to
//! come back ([`barrier`]). The server handles one connection's operations in order, so once the
//! probe is delivered the earlier subscriptions are in place.

use std::time::Duration;

use async_nats::{Client, Subject, Subscriber};
use bytes::Bytes;
use tokio::sync::watch;
use tokio_stream::StreamExt as _;

use crate::error::BenchError;
use crate::harness::{Counter, Harness, RunConfig, StampSink, Tally};
use crate::payload;
use crate::result::Metrics;
use crate::scenario::Scenario;

/// How long connecting and the subscription barrier may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(5);

/// One subscription: a subject and, for anycast and request/reply, a queue group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The subject subscribed.
    pub subject: String,
    /// The queue group: the server gives each message to one member.
    pub queue_group: Option<String>,
}

/// The subjects of one run, all under `bench.<run-id>`.
#[derive(Debug, Clone)]
pub struct Subjects {
    run_id: String,
}

impl Subjects {
    /// Subjects for the run `run_id` (one NATS token: no dots, spaces or wildcards).
    pub fn new(run_id: &str) -> Self {
        Self {
            run_id: run_id.to_string(),
        }
    }

    /// Where publisher `i` publishes.
    pub fn destination(&self, scenario: Scenario, i: usize) -> String {
        let r = &self.run_id;
        match scenario {
            Scenario::P2p => format!("bench.{r}.p2p.{i}"),
            Scenario::Fanout => format!("bench.{r}.fanout"),
            Scenario::Anycast => format!("bench.{r}.anycast"),
            Scenario::Reqrep => format!("bench.{r}.reqrep"),
        }
    }

    /// What subscriber `j` subscribes to.
    pub fn subscription(&self, scenario: Scenario, j: usize) -> Subscription {
        Subscription {
            subject: self.destination(scenario, j),
            queue_group: matches!(scenario, Scenario::Anycast | Scenario::Reqrep)
                .then(|| self.queue_group()),
        }
    }

    /// The queue group of anycast receivers and request/reply responders.
    pub fn queue_group(&self) -> String {
        format!("bench-{}", self.run_id)
    }

    /// Requester `i`'s reply subject (`reqrep`), subscribed by that requester alone.
    pub fn reply(&self, i: usize) -> String {
        format!("bench.{}.reply.{i}", self.run_id)
    }

    /// A private subject for the subscription barrier of client `k`.
    pub fn ready(&self, k: usize) -> String {
        format!("bench.{}.ready.{k}", self.run_id)
    }
}

/// Connects one client to `url`.
pub async fn connect(url: &str) -> Result<Client, BenchError> {
    async_nats::ConnectOptions::new()
        .name("slim-bench")
        .connection_timeout(SETUP_TIMEOUT)
        .connect(url)
        .await
        .map_err(|e| BenchError::Connect {
            url: url.to_string(),
            reason: e.to_string(),
        })
}

/// Waits until the server has registered every subscription `client` made so far: a probe on
/// the private subject `ready` must make the round trip (see the module docs).
pub async fn barrier(client: &Client, ready: String) -> Result<(), BenchError> {
    let err = |what: &str, e: String| BenchError::Protocol(format!("NATS {what}: {e}"));
    let mut probe = client
        .subscribe(ready.clone())
        .await
        .map_err(|e| err("subscribe", e.to_string()))?;
    client
        .publish(ready.clone(), Bytes::from_static(b"ready"))
        .await
        .map_err(|e| err("publish", e.to_string()))?;
    client
        .flush()
        .await
        .map_err(|e| err("flush", e.to_string()))?;
    match tokio::time::timeout(SETUP_TIMEOUT, probe.next()).await {
        Ok(Some(_)) => {}
        Ok(None) => return Err(err("barrier", format!("{ready}: connection closed"))),
        Err(_) => {
            return Err(err(
                "barrier",
                format!("{ready}: the probe did not come back within {SETUP_TIMEOUT:?}"),
            ))
        }
    }
    // Best effort: the connection goes away at the end of the run anyway.
    let _ = probe.unsubscribe().await;
    Ok(())
}

async fn subscribe(client: &Client, s: &Subscription) -> Result<Subscriber, BenchError> {
    let r = match &s.queue_group {
        Some(q) => client.queue_subscribe(s.subject.clone(), q.clone()).await,
        None => client.subscribe(s.subject.clone()).await,
    };
    r.map_err(|e| BenchError::Protocol(format!("NATS subscribe {}: {e}", s.subject)))
}

/// A NATS publisher: buffered `publish` of a stamped payload, with a reply subject in `reqrep`.
struct NatsSink {
    client: Client,
    subject: Subject,
    reply: Option<Subject>,
    size: usize,
}

impl StampSink for NatsSink {
    async fn send(&mut self, stamp: payload::Stamp) -> bool {
        let payload = Bytes::from(payload::build(stamp, self.size));
        let r = match &self.reply {
            Some(reply) => {
                self.client
                    .publish_with_reply(self.subject.clone(), reply.clone(), payload)
                    .await
            }
            None => self.client.publish(self.subject.clone(), payload).await,
        };
        r.is_ok()
    }

    /// Dropping the last handle of a client closes its connection without writing what it
    /// still buffers, so the publisher flushes once after its last message.
    async fn finish(&mut self) {
        let _ = self.client.flush().await;
    }
}

/// What a receiving connection does with the messages of its subscription: count them, or echo
/// each one to its reply subject with this client (`reqrep` responders).
type Role = crate::harness::Role<Client>;

/// One run over NATS (see the module docs for the mapping).
pub async fn run(cfg: &RunConfig) -> Result<Metrics, BenchError> {
    let h = Harness::new(cfg)?;
    let p = h.params.clone();
    let scenario = p.scenario;
    let subjects = Subjects::new(&h.run_id);

    // Subscribers (and, for reqrep, the requesters' reply subscriptions) first, each proven
    // registered, so that no publish can miss a subscription.
    let mut receivers = Vec::new();
    for j in 0..p.subscribers {
        let client = connect(&cfg.url).await?;
        let s = subjects.subscription(scenario, j);
        let sub = subscribe(&client, &s).await?;
        barrier(&client, subjects.ready(j)).await?;
        let role = if scenario == Scenario::Reqrep {
            Role::Echo(client)
        } else {
            Role::Count { only: None }
        };
        receivers.push((sub, s.subject, role));
    }
    let mut sinks = Vec::new();
    for i in 0..p.publishers {
        let client = connect(&cfg.url).await?;
        let reply = if scenario == Scenario::Reqrep {
            let reply = subjects.reply(i);
            let s = Subscription {
                subject: reply.clone(),
                queue_group: None,
            };
            let sub = subscribe(&client, &s).await?;
            barrier(&client, subjects.ready(p.subscribers + i)).await?;
            receivers.push((
                sub,
                reply.clone(),
                Role::Count {
                    only: Some(i as u32),
                },
            ));
            Some(Subject::from(reply))
        } else {
            None
        };
        sinks.push(NatsSink {
            client,
            subject: Subject::from(subjects.destination(scenario, i)),
            reply,
            size: p.size,
        });
    }

    let receivers = receivers
        .into_iter()
        .map(|(sub, subject, role)| {
            let counting = role.counts();
            ((sub, subject, role), counting)
        })
        .collect();
    h.launch(
        receivers,
        sinks,
        |(sub, subject, role), tally, counter, done| {
            receive(sub, subject, role, tally, counter, done)
        },
    )
    .await
}

/// One subscription's loop, until the run is done or the connection ends.
async fn receive(
    mut sub: Subscriber,
    subject: String,
    role: Role,
    mut tally: Tally,
    counter: Counter,
    mut done: watch::Receiver<bool>,
) -> Result<Tally, BenchError> {
    loop {
        let msg = tokio::select! {
            biased;
            _ = done.changed() => break,
            m = sub.next() => match m {
                Some(m) => m,
                // The connection is gone: whatever did not arrive counts as lost.
                None => break,
            },
        };
        let stamp = match counter.accept(&msg.payload) {
            Some(s) if msg.subject.as_str() == subject => s,
            _ => {
                tally.ignored += 1;
                continue;
            }
        };
        match &role {
            Role::Echo(client) => {
                let Some(reply) = msg.reply else {
                    tally.ignored += 1;
                    continue;
                };
                // A server that stops reading must not keep this task past the end of the run.
                let sent = tokio::select! {
                    _ = done.changed() => break,
                    r = client.publish(reply, msg.payload) => r,
                };
                if sent.is_err() {
                    break;
                }
            }
            Role::Count { .. } => {
                if role.skips(&stamp) {
                    tally.ignored += 1;
                    continue;
                }
                counter.count(&mut tally, stamp);
            }
        }
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_per_scenario() {
        let s = Subjects::new("abc123");
        assert_eq!(s.destination(Scenario::P2p, 3), "bench.abc123.p2p.3");
        assert_eq!(
            s.subscription(Scenario::P2p, 3),
            Subscription {
                subject: "bench.abc123.p2p.3".into(),
                queue_group: None
            }
        );
        // Publisher i and subscriber i meet on the same subject; pairs never share one.
        assert_eq!(
            s.destination(Scenario::P2p, 1),
            s.subscription(Scenario::P2p, 1).subject
        );
        assert_ne!(
            s.destination(Scenario::P2p, 0),
            s.destination(Scenario::P2p, 1)
        );
        // Fanout: one subject, plain subscriptions (every subscriber gets every message).
        for j in 0..4 {
            assert_eq!(
                s.subscription(Scenario::Fanout, j),
                Subscription {
                    subject: "bench.abc123.fanout".into(),
                    queue_group: None
                }
            );
        }
        assert_eq!(s.destination(Scenario::Fanout, 7), "bench.abc123.fanout");
        // Anycast and reqrep: one subject, one queue group (one receiver per message).
        for sc in [Scenario::Anycast, Scenario::Reqrep] {
            let a = s.subscription(sc, 0);
            let b = s.subscription(sc, 5);
            assert_eq!(a, b);
            assert_eq!(a.queue_group.as_deref(), Some("bench-abc123"));
            assert_eq!(s.destination(sc, 2), a.subject);
        }
        assert_eq!(s.destination(Scenario::Anycast, 0), "bench.abc123.anycast");
        assert_eq!(s.destination(Scenario::Reqrep, 0), "bench.abc123.reqrep");
        assert_eq!(s.reply(2), "bench.abc123.reply.2");
        assert_ne!(s.ready(0), s.ready(1));
    }

    #[test]
    fn subjects_are_valid_nats_subjects() {
        let s = Subjects::new("0123456789ab");
        let mut all = vec![s.reply(0), s.ready(9)];
        for sc in [
            Scenario::P2p,
            Scenario::Fanout,
            Scenario::Anycast,
            Scenario::Reqrep,
        ] {
            all.push(s.destination(sc, 0));
        }
        for subject in all {
            assert!(
                subject
                    .split('.')
                    .all(|t| !t.is_empty()
                        && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')),
                "{subject}"
            );
        }
        assert!(!s.queue_group().contains([' ', '.', '*', '>']));
    }
}
