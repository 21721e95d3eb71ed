//! NATS JetStream as a reference peer: the same scenarios as [`crate::nats`], but every publish
//! is stored in a stream and acknowledged by it, and every delivery is acknowledged by its
//! consumer (at-least-once).
//!
//! A target URL `jetstream://host:port` (a `nats-server -js`) selects this transport; clients
//! connect to `nats://host:port`, each with its own connection. Per run, one memory-storage
//! stream `BENCH_<run>` (limits retention) captures `bench.<run>.>` and is deleted at the end.
//! Every consumer is a durable pull consumer with explicit acks and deliver policy `all`,
//! created before the first publish:
//!
//! | scenario | publisher `i` publishes to | consumers | expected deliveries |
//! |---|---|---|---|
//! | `p2p` | `bench.<run>.p2p.<i>` | `p2p-<j>` filtered on `bench.<run>.p2p.<j>`, for subscriber `j` | `N × P` |
//! | `fanout` | `bench.<run>.fanout` | `fanout-<j>` for each of the S subscribers (each gets every message) | `N × P × S` |
//! | `anycast` | `bench.<run>.anycast` | `anycast`, one consumer all S subscribers pull from | `N × P` |
//! | `reqrep` | `bench.<run>.reqrep` | `reqrep`, shared by the S responders; `reply-<i>` filtered on `bench.<run>.reply.<i>` | `N × P` round trips |
//!
//! Publishing: `Context::publish` sends at once and returns the PubAck future; a per-publisher
//! task awaits those futures in order and counts each PubAck ([`Confirms`]), so a publisher keeps
//! many publishes in flight (the harness window bounds them). A publish that fails or whose
//! PubAck never comes counts as unconfirmed.
//!
//! Receiving: each receiving client pulls with `messages()` (batches of 200, 15 s idle
//! heartbeat) and acks every message with `ack()` (a plain publish to the ack subject, not
//! awaited by the server). A redelivery (ack not seen within `ack_wait`) reaches the application
//! and counts as a duplicate.
//!
//! Request/reply: a responder echoes a request with a JetStream publish to
//! `bench.<run>.reply.<i>` (`i` from the stamp's publisher field), so the reply is stored in the
//! same stream, then acks the request. The echo's PubAck is left to async-nats' own acker (not
//! counted: confirmations count the publishers' requests); a lost echo shows as a lost round trip.

use std::future::IntoFuture as _;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream, Context};
use async_nats::{Client, Subject};
use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt as _;

use crate::error::BenchError;
use crate::harness::{Confirms, Counter, Harness, RunConfig, StampSink, Tally};
use crate::payload;
use crate::result::Metrics;
use crate::scenario::Scenario;
use crate::transport::BrokerUrl;

/// How long connecting, stream and consumer setup, and clean-up may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(5);

/// PubAck futures a publisher may have queued for its acknowledgement task.
const ACK_QUEUE: usize = 8192;

/// One consumer of the run's stream: a durable name and the subject it filters on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSpec {
    /// The durable name (shared by all receivers in `anycast` and `reqrep`).
    pub name: String,
    /// The subject filter.
    pub filter: String,
}

/// The stream, subjects and consumers of one run, all derived from the run id.
#[derive(Debug, Clone)]
pub struct Names {
    run_id: String,
}

impl Names {
    /// Names for the run `run_id` (one NATS token: no dots, spaces or wildcards).
    pub fn new(run_id: &str) -> Self {
        Self {
            run_id: run_id.to_string(),
        }
    }

    /// The stream of the run.
    pub fn stream(&self) -> String {
        format!("BENCH_{}", self.run_id)
    }

    /// The subjects the stream captures.
    pub fn captured(&self) -> String {
        format!("bench.{}.>", self.run_id)
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

    /// The consumer subscriber `j` pulls from.
    pub fn consumer(&self, scenario: Scenario, j: usize) -> ConsumerSpec {
        let name = match scenario {
            Scenario::P2p => format!("p2p-{j}"),
            Scenario::Fanout => format!("fanout-{j}"),
            Scenario::Anycast => "anycast".to_string(),
            Scenario::Reqrep => "reqrep".to_string(),
        };
        ConsumerSpec {
            name,
            filter: self.destination(scenario, j),
        }
    }

    /// Requester `i`'s reply subject (`reqrep`).
    pub fn reply(&self, i: usize) -> String {
        format!("bench.{}.reply.{i}", self.run_id)
    }

    /// The consumer requester `i` reads its replies from.
    pub fn reply_consumer(&self, i: usize) -> ConsumerSpec {
        ConsumerSpec {
            name: format!("reply-{i}"),
            filter: self.reply(i),
        }
    }
}

/// Connects one client to the NATS server behind `url` (`jetstream://host:port`).
async fn connect(url: &str, broker: &BrokerUrl) -> Result<Client, BenchError> {
    async_nats::ConnectOptions::new()
        .name("slim-bench")
        .connection_timeout(SETUP_TIMEOUT)
        .connect(format!("nats://{}", broker.address()))
        .await
        .map_err(|e| BenchError::Connect {
            url: url.to_string(),
            reason: e.to_string(),
        })
}

fn err(what: String, e: impl std::fmt::Display) -> BenchError {
    BenchError::Protocol(format!("JetStream {what}: {e}"))
}

/// Creates the durable pull consumer `spec` on `stream` (explicit acks, deliver all).
async fn create_consumer(
    js: &Context,
    stream: &str,
    spec: &ConsumerSpec,
    max_ack_pending: i64,
) -> Result<(), BenchError> {
    let config = consumer::pull::Config {
        durable_name: Some(spec.name.clone()),
        filter_subject: spec.filter.clone(),
        deliver_policy: consumer::DeliverPolicy::All,
        ack_policy: consumer::AckPolicy::Explicit,
        max_ack_pending,
        ..Default::default()
    };
    js.create_consumer_on_stream(config, stream)
        .await
        .map(|_| ())
        .map_err(|e| err(format!("create consumer {} on {stream}", spec.name), e))
}

/// Binds a new connection to the existing consumer `spec` and starts pulling.
async fn pull(
    url: &str,
    broker: &BrokerUrl,
    stream: &str,
    spec: &ConsumerSpec,
) -> Result<(Context, consumer::pull::Stream), BenchError> {
    let js = jetstream::new(connect(url, broker).await?);
    let c: consumer::PullConsumer = js
        .get_consumer_from_stream(&spec.name, stream)
        .await
        .map_err(|e| err(format!("get consumer {} on {stream}", spec.name), e))?;
    let messages = c
        .messages()
        .await
        .map_err(|e| err(format!("pull from consumer {}", spec.name), e))?;
    Ok((js, messages))
}

/// A JetStream publisher: sends each payload and hands its PubAck future to [`await_acks`].
struct JetStreamSink {
    js: Context,
    subject: Subject,
    size: usize,
    acks: mpsc::Sender<jetstream::context::PublishAckFuture>,
}

impl StampSink for JetStreamSink {
    async fn send(&mut self, stamp: payload::Stamp) -> bool {
        let payload = Bytes::from(payload::build(stamp, self.size));
        match self.js.publish(self.subject.clone(), payload).await {
            Ok(ack) => self.acks.send(ack).await.is_ok(),
            Err(_) => false,
        }
    }

    /// The publishes sit in the connection's write buffer until flushed.
    async fn finish(&mut self) {
        let _ = self.js.client().flush().await;
    }
}

/// Awaits one publisher's PubAcks in publish order and counts the positive ones. It holds a
/// handle of the publisher's connection (`_js`) until the run is done: the connection closes
/// with its last handle, the publisher's sink is dropped after its last publish, and both the
/// last PubAcks and the final wire-byte sample need the connection open.
async fn await_acks(
    _js: Context,
    mut acks: mpsc::Receiver<jetstream::context::PublishAckFuture>,
    confirms: Confirms,
    mut done: watch::Receiver<bool>,
) {
    loop {
        let ack = tokio::select! {
            biased;
            _ = done.changed() => return,
            a = acks.recv() => match a {
                Some(a) => a,
                None => break,
            },
        };
        tokio::select! {
            biased;
            _ = done.changed() => return,
            r = ack.into_future() => if r.is_ok() {
                confirms.ack(1);
            },
        }
    }
    let _ = done.changed().await;
}

/// What a receiving client does with the messages it pulls: count them, or echo each one to the
/// requester's reply subject (`reqrep` responders).
type Role = crate::harness::Role<Names>;

/// One run over NATS JetStream (see the module docs for the mapping).
pub async fn run(cfg: &RunConfig) -> Result<Metrics, BenchError> {
    let broker = BrokerUrl::parse(&cfg.url)?;
    broker.check_params(&[])?;
    let mut h = Harness::new(cfg)?;
    let names = Names::new(&h.run_id);
    let stream_name = names.stream();

    let admin = jetstream::new(connect(&cfg.url, &broker).await?);
    admin
        .create_stream(stream::Config {
            name: stream_name.clone(),
            subjects: vec![names.captured()],
            storage: stream::StorageType::Memory,
            retention: stream::RetentionPolicy::Limits,
            num_replicas: 1,
            ..Default::default()
        })
        .await
        .map_err(|e| err(format!("create stream {stream_name}"), e))?;
    let metrics = async {
        let (receivers, sinks) = run_on_stream(cfg, &broker, &mut h, &admin, &names).await?;
        h.launch(
            receivers,
            sinks,
            |(js, messages, subject, role), tally, counter, done| {
                receive(js, messages, subject, role, tally, counter, done)
            },
        )
        .await
    }
    .await;
    // Best effort: the stream holds the run's messages in the server's memory.
    let _ = tokio::time::timeout(SETUP_TIMEOUT, admin.delete_stream(&stream_name)).await;
    metrics
}

/// A receiving client: its context, its pull stream, the subject it expects, its role.
type Receiver = (Context, consumer::pull::Stream, String, Role);

/// Every receiver (and whether it counts) and every publisher of a run.
type Clients = (Vec<(Receiver, bool)>, Vec<JetStreamSink>);

/// Creates the consumers and connects every client, each publisher with its PubAck task.
async fn run_on_stream(
    cfg: &RunConfig,
    broker: &BrokerUrl,
    h: &mut Harness,
    admin: &Context,
    names: &Names,
) -> Result<Clients, BenchError> {
    let p = h.params.clone();
    let scenario = p.scenario;
    let stream_name = names.stream();
    let max_ack_pending = i64::try_from(p.window).unwrap_or(i64::MAX).max(1000);

    // Every consumer exists before the first publish (deliver-all would catch up anyway).
    let mut specs: Vec<ConsumerSpec> = Vec::new();
    let mut receivers = Vec::new();
    for j in 0..p.subscribers {
        let spec = names.consumer(scenario, j);
        if !specs.contains(&spec) {
            create_consumer(admin, &stream_name, &spec, max_ack_pending).await?;
            specs.push(spec.clone());
        }
        let (js, messages) = pull(&cfg.url, broker, &stream_name, &spec).await?;
        let role = if scenario == Scenario::Reqrep {
            Role::Echo(names.clone())
        } else {
            Role::Count { only: None }
        };
        receivers.push((js, messages, spec.filter, role));
    }
    let mut sinks = Vec::new();
    for i in 0..p.publishers {
        if scenario == Scenario::Reqrep {
            let spec = names.reply_consumer(i);
            create_consumer(admin, &stream_name, &spec, max_ack_pending).await?;
            let (js, messages) = pull(&cfg.url, broker, &stream_name, &spec).await?;
            let only = Some(i as u32);
            receivers.push((js, messages, spec.filter, Role::Count { only }));
        }
        let js = jetstream::new(connect(&cfg.url, broker).await?);
        sinks.push((js, names.destination(scenario, i)));
    }

    let confirms = h.confirms();
    let mut publishers = Vec::new();
    for (js, subject) in sinks {
        let (tx, rx) = mpsc::channel(ACK_QUEUE);
        tokio::spawn(await_acks(js.clone(), rx, confirms.clone(), h.done()));
        publishers.push(JetStreamSink {
            js,
            subject: Subject::from(subject),
            size: p.size,
            acks: tx,
        });
    }
    let receivers = receivers
        .into_iter()
        .map(|r| {
            let counting = r.3.counts();
            (r, counting)
        })
        .collect();
    Ok((receivers, publishers))
}

/// One receiving client's pull loop, until the run is done or the connection ends.
async fn receive(
    js: Context,
    mut messages: consumer::pull::Stream,
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
            m = messages.next() => match m {
                Some(Ok(m)) => m,
                // No heartbeat for a while: the pull goes on, the drain timeout decides.
                Some(Err(e)) if e.kind() == consumer::pull::MessagesErrorKind::MissingHeartbeat => {
                    continue
                }
                Some(Err(e)) => return Err(err(format!("pull on {subject}"), e)),
                // The connection is gone: whatever did not arrive counts as lost.
                None => break,
            },
        };
        let stamp = counter
            .accept(&msg.message.payload)
            .filter(|_| msg.message.subject.as_str() == subject);
        let Some(stamp) = stamp else {
            tally.ignored += 1;
            let _ = msg.ack().await;
            continue;
        };
        match &role {
            Role::Echo(names) => {
                let reply = names.reply(stamp.publisher as usize);
                // A server that stops reading must not keep this task past the end of the run.
                let sent = tokio::select! {
                    _ = done.changed() => break,
                    r = js.publish(reply, msg.message.payload.clone()) => r,
                };
                // The echo's PubAck future is dropped: async-nats' acker awaits it.
                if sent.is_err() {
                    break;
                }
            }
            Role::Count { .. } => {
                if role.skips(&stamp) {
                    tally.ignored += 1;
                } else {
                    counter.count(&mut tally, stamp);
                }
            }
        }
        if msg.ack().await.is_err() {
            break;
        }
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumers_per_scenario() {
        let n = Names::new("abc123");
        assert_eq!(n.stream(), "BENCH_abc123");
        assert_eq!(n.captured(), "bench.abc123.>");
        // p2p: one consumer per pair, filtered on the pair's subject.
        assert_eq!(
            n.consumer(Scenario::P2p, 3),
            ConsumerSpec {
                name: "p2p-3".into(),
                filter: "bench.abc123.p2p.3".into()
            }
        );
        assert_eq!(n.destination(Scenario::P2p, 3), "bench.abc123.p2p.3");
        assert_ne!(n.consumer(Scenario::P2p, 0), n.consumer(Scenario::P2p, 1));
        // fanout: independent consumers on one subject (each gets every message).
        let (a, b) = (
            n.consumer(Scenario::Fanout, 0),
            n.consumer(Scenario::Fanout, 1),
        );
        assert_ne!(a.name, b.name);
        assert_eq!(a.filter, b.filter);
        assert_eq!(a.filter, n.destination(Scenario::Fanout, 5));
        // anycast and reqrep: one consumer shared by every receiver (one gets each message).
        for sc in [Scenario::Anycast, Scenario::Reqrep] {
            assert_eq!(n.consumer(sc, 0), n.consumer(sc, 7));
            assert_eq!(n.consumer(sc, 0).filter, n.destination(sc, 2));
        }
        assert_eq!(n.reply(2), "bench.abc123.reply.2");
        assert_eq!(n.reply_consumer(2).filter, n.reply(2));
        assert_ne!(
            n.reply_consumer(2).name,
            n.consumer(Scenario::Reqrep, 2).name
        );
    }

    #[test]
    fn names_are_valid_for_jetstream() {
        let n = Names::new("0123456789ab");
        let captured = n.captured();
        let prefix = captured.trim_end_matches('>');
        let mut specs = vec![n.reply_consumer(0)];
        for sc in [
            Scenario::P2p,
            Scenario::Fanout,
            Scenario::Anycast,
            Scenario::Reqrep,
        ] {
            specs.push(n.consumer(sc, 0));
            assert!(n.destination(sc, 0).starts_with(prefix));
        }
        let token = |t: &str| {
            !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        for s in specs {
            // Stream and consumer names travel as one subject token of the JetStream API.
            assert!(token(&s.name), "{}", s.name);
            assert!(s.filter.starts_with(prefix), "{}", s.filter);
            assert!(s.filter.split('.').all(token), "{}", s.filter);
        }
        assert!(token(&n.stream()));
    }
}
