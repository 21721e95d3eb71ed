//! The Kafka protocol as a reference peer: the same scenarios over a broker that speaks it
//! (measured here: Tansu 0.6.0), through rskafka.
//!
//! A target URL `kafka://host:port` selects this transport. Every client has its own rskafka
//! client (its own connections). Per run, topics with replication 1 are created before the
//! first publish and deleted at the end (best effort):
//!
//! | scenario | publisher `i` produces to | receivers read | expected deliveries |
//! |---|---|---|---|
//! | `p2p` | `bench-<run>-p2p-<i>`, partition 0 | subscriber `j`: `bench-<run>-p2p-<j>` | `N × P` |
//! | `fanout` | `bench-<run>-fanout`, partition 0 | every subscriber reads the whole log | `N × P × S` |
//! | `anycast` | refused: needs consumer groups, which rskafka does not implement | | |
//! | `reqrep` | `bench-<run>-reqrep` (S partitions), partition `i mod S` | responder `j`: partition `j`, echoes to `bench-<run>-reply-<i>` | `N × P` round trips |
//!
//! Request/reply: a partition has one reader, so the request topic has one partition per
//! responder and publisher `i` always uses partition `i mod S` (a static assignment, as a
//! consumer group would make; with S > P some responders idle). A responder echoes each batch it
//! fetched with one produce per requester's reply topic (`i` from the stamp's publisher field).
//!
//! Producing: a publisher hands its records to a producer task, which sends produce requests
//! (rskafka: `acks=-1`, no compression) one at a time. A request carries the records queued while
//! the previous one was in flight and those arriving within [`LINGER`] of its first record, up
//! to [`records_per_request`]: Apache Kafka 4.0's producer defaults to `linger.ms=5` too. Without
//! a linger a paced run sends one batch per record, and Tansu 0.6's memory engine lists every
//! stored batch of the partition on each fetch that returns records: at 2,000 msgs/s the broker
//! fell seconds behind within 4,000 messages. Each record of a successful response counts as
//! confirmed; a failed produce (after rskafka's retries, bounded by [`SETUP_TIMEOUT`]) stops that
//! publisher, and its records count as unconfirmed and lost.
//!
//! Nagle. rskafka does not set `TCP_NODELAY` and writes a request's 4-byte length prefix apart
//! from a body that does not fit its 8 KiB write buffer; the body then waits for the broker's
//! delayed ACK of the prefix, about 40 ms on Linux. Requests are therefore kept under that
//! buffer when at least [`MIN_SMALL_BATCH`] records fit (128-byte payloads: 48 per request) and
//! only one is in flight per connection (a second request would wait the same way). Records too
//! large for that (16 KiB payloads) go in requests of up to [`MAX_REQUEST_BYTES`] and pay the
//! stall once per request: a client limitation, measured as such.
//!
//! Consuming: each receiver fetches its partition from offset 0 (`min_bytes` 1, up to
//! [`FETCH_MAX_BYTES`]) and advances past the last record. There are no consumer groups and no
//! committed offsets: a record fetched twice would be a duplicate. Tansu 0.6 holds every fetch
//! for its full `max_wait_ms`, even when records are there, so [`FETCH_WAIT_MS`] is 1 ms: the
//! receivers poll about 500–1000 times a second, idle or not.

use std::collections::BTreeMap;
use std::time::Duration;

use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use rskafka::BackoffConfig;
use tokio::sync::{mpsc, watch};

use crate::error::BenchError;
use crate::harness::{Confirms, Counter, Harness, RunConfig, StampSink, Tally};
use crate::payload;
use crate::result::Metrics;
use crate::scenario::Scenario;
use crate::transport::BrokerUrl;

/// How long connecting, topic setup and rskafka's retries of one request may take.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Timeout the broker gets for creating or deleting a topic.
const TOPIC_TIMEOUT_MS: i32 = 5_000;

/// How long a produce request waits for more records after its first (Kafka's `linger.ms`).
pub const LINGER: Duration = Duration::from_millis(5);

/// rskafka's write buffer per connection (tokio's `BufStream` default): a request frame that
/// fits is written in one piece.
const WRITE_BUFFER: usize = 8 * 1024;

/// Bytes of a produce request besides the records' values (request, topic and batch headers).
const REQUEST_OVERHEAD: usize = 512;

/// Bytes of one record besides its value (length, attributes, deltas, header count).
const RECORD_OVERHEAD: usize = 32;

/// Fewest records per request worth keeping requests small for (see the module docs).
pub const MIN_SMALL_BATCH: usize = 8;

/// Value bytes one produce request carries at most when records are large (Kafka's default
/// `max.request.size` is 1 MiB).
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

/// Bytes one fetch returns at most.
pub const FETCH_MAX_BYTES: i32 = 4 << 20;

/// How long the broker may hold a fetch (Tansu 0.6 holds every fetch this long).
pub const FETCH_WAIT_MS: i32 = 1;

/// Where records go or come from: a topic and a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
}

/// The topics of one run, all named `bench-<run-id>-…`, laid out for its scenario.
#[derive(Debug, Clone)]
pub struct Topics {
    run_id: String,
    scenario: Scenario,
    publishers: usize,
    /// Responders in `reqrep`: the request topic's partitions.
    subscribers: i32,
}

impl Topics {
    /// The topics of run `run_id` (letters and digits); `anycast` is refused (module docs).
    pub fn new(
        run_id: &str,
        scenario: Scenario,
        publishers: usize,
        subscribers: usize,
    ) -> Result<Self, BenchError> {
        if scenario == Scenario::Anycast {
            return Err(BenchError::Usage(
                "kafka: --scenario anycast needs consumer groups (each record to one of several \
                 readers), which rskafka does not implement; use p2p, fanout or reqrep"
                    .into(),
            ));
        }
        let subscribers = i32::try_from(subscribers)
            .map_err(|_| BenchError::Usage("kafka: too many subscribers".into()))?;
        Ok(Self {
            run_id: run_id.to_string(),
            scenario,
            publishers,
            subscribers,
        })
    }

    fn topic(&self, what: &str) -> String {
        format!("bench-{}-{what}", self.run_id)
    }

    fn place(&self, what: &str, partition: usize) -> Place {
        Place {
            topic: self.topic(what),
            partition: i32::try_from(partition).unwrap_or(i32::MAX),
        }
    }

    /// Where publisher `i` produces.
    pub fn destination(&self, i: usize) -> Place {
        match self.scenario {
            Scenario::Reqrep => self.place("reqrep", i % self.subscribers.max(1) as usize),
            _ => self.subscription(i),
        }
    }

    /// What subscriber (or responder) `j` reads.
    pub fn subscription(&self, j: usize) -> Place {
        match self.scenario {
            Scenario::P2p => self.place(&format!("p2p-{j}"), 0),
            Scenario::Reqrep => self.place("reqrep", j),
            // Anycast never gets here: `new` refuses it.
            Scenario::Fanout | Scenario::Anycast => self.place("fanout", 0),
        }
    }

    /// Requester `i`'s reply topic (`reqrep`), one partition.
    pub fn reply(&self, i: usize) -> Place {
        self.place(&format!("reply-{i}"), 0)
    }

    /// The topics of the run, with their partition counts.
    pub fn all(&self) -> Vec<(String, i32)> {
        match self.scenario {
            Scenario::P2p => (0..self.publishers)
                .map(|i| (self.topic(&format!("p2p-{i}")), 1))
                .collect(),
            Scenario::Reqrep => std::iter::once((self.topic("reqrep"), self.subscribers))
                .chain((0..self.publishers).map(|i| (self.reply(i).topic, 1)))
                .collect(),
            Scenario::Fanout | Scenario::Anycast => vec![(self.topic("fanout"), 1)],
        }
    }
}

/// Connects one rskafka client to `broker` (bounded by [`SETUP_TIMEOUT`], never a hang).
async fn connect(url: &str, broker: &BrokerUrl) -> Result<Client, BenchError> {
    let backoff = BackoffConfig {
        deadline: Some(SETUP_TIMEOUT),
        ..Default::default()
    };
    let build = ClientBuilder::new(vec![broker.address()])
        .client_id("slim-bench")
        .backoff_config(backoff)
        .build();
    let reason = match tokio::time::timeout(SETUP_TIMEOUT, build).await {
        Ok(Ok(client)) => return Ok(client),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no metadata from the broker within {SETUP_TIMEOUT:?}"),
    };
    Err(BenchError::Connect {
        url: url.to_string(),
        reason,
    })
}

/// A client for `place` on a new connection, proven served (its leader answers `ListOffsets`).
async fn open(url: &str, broker: &BrokerUrl, place: &Place) -> Result<PartitionClient, BenchError> {
    let client = connect(url, broker).await?;
    let (topic, n) = (&place.topic, place.partition);
    let err = |what: &str, e: rskafka::client::error::Error| {
        BenchError::Protocol(format!("Kafka {what} {topic}/{n}: {e}"))
    };
    let partition = client
        .partition_client(topic.clone(), n, UnknownTopicHandling::Retry)
        .await
        .map_err(|e| err("partition client for", e))?;
    partition
        .get_offset(OffsetAt::Latest)
        .await
        .map_err(|e| err("list offsets of", e))?;
    Ok(partition)
}

fn record(value: Vec<u8>) -> Record {
    Record {
        key: None,
        value: Some(value),
        headers: BTreeMap::new(),
        timestamp: chrono::Utc::now(),
    }
}

/// A Kafka publisher: its records go to the producer task ([`produce`]).
struct KafkaSink {
    records: mpsc::Sender<Record>,
    size: usize,
}

impl StampSink for KafkaSink {
    async fn send(&mut self, stamp: payload::Stamp) -> bool {
        let value = payload::build(stamp, self.size);
        self.records.send(record(value)).await.is_ok()
    }
}

/// Records per produce request for `size`-byte payloads (see the module docs).
pub fn records_per_request(size: usize) -> usize {
    let per_record = size + RECORD_OVERHEAD;
    let small = (WRITE_BUFFER - REQUEST_OVERHEAD) / per_record;
    if small >= MIN_SMALL_BATCH {
        small
    } else {
        (MAX_REQUEST_BYTES / per_record).max(1)
    }
}

/// One publisher's producer task: one produce request at a time, carrying what is queued (up to
/// `per_request` records), and the records of every successful response counted. It keeps the
/// publisher's connection open until the run is done, for the final wire-byte sample.
async fn produce(
    partition: PartitionClient,
    mut records: mpsc::Receiver<Record>,
    per_request: usize,
    confirms: Confirms,
    mut done: watch::Receiver<bool>,
) {
    loop {
        let first = tokio::select! {
            biased;
            _ = done.changed() => return,
            r = records.recv() => match r {
                Some(r) => r,
                None => break,
            },
        };
        // Whatever is queued, and what comes within the linger, up to `per_request`.
        let mut batch = vec![first];
        let linger = tokio::time::sleep(LINGER);
        tokio::pin!(linger);
        while batch.len() < per_request {
            tokio::select! {
                biased;
                r = records.recv() => match r {
                    Some(r) => batch.push(r),
                    None => break,
                },
                _ = &mut linger => break,
            }
        }
        let sent = tokio::select! {
            biased;
            _ = done.changed() => return,
            r = partition.produce(batch, Compression::NoCompression) => r,
        };
        match sent {
            Ok(offsets) => confirms.ack(offsets.len() as u64),
            Err(e) => {
                let (topic, n) = (partition.topic(), partition.partition());
                eprintln!(
                    "slim-bench: Kafka produce to {topic}/{n} failed, publisher stopped: {e}"
                );
                break;
            }
        }
    }
    // The sink's next send fails: the publisher stops.
    drop(records);
    let _ = done.changed().await;
}

/// Where a responder echoes: its requesters' reply topics, one partition client per publisher,
/// and at most `per_request` records per produce.
struct Replies {
    replies: Vec<PartitionClient>,
    per_request: usize,
}

/// What a receiving client does with the records it fetches: count them, or echo each one to its
/// requester's reply topic (`reqrep` responders).
type Role = crate::harness::Role<Replies>;

/// One run over the Kafka protocol (see the module docs for the mapping).
pub async fn run(cfg: &RunConfig) -> Result<Metrics, BenchError> {
    let broker = BrokerUrl::parse(&cfg.url)?;
    broker.check_params(&[])?;
    let mut h = Harness::new(cfg)?;
    let p = h.params.clone();
    let topics = Topics::new(&h.run_id, p.scenario, p.publishers, p.subscribers)?;

    let admin = connect(&cfg.url, &broker).await?;
    let controller = admin
        .controller_client()
        .map_err(|e| BenchError::Protocol(format!("Kafka controller client: {e}")))?;
    let mut created = Vec::new();
    let metrics = async {
        for (topic, partitions) in topics.all() {
            controller
                .create_topic(topic.clone(), partitions, 1, TOPIC_TIMEOUT_MS)
                .await
                .map_err(|e| BenchError::Protocol(format!("Kafka create topic {topic}: {e}")))?;
            created.push(topic);
        }
        let (receivers, sinks) = connect_all(cfg, &broker, &mut h, &topics).await?;
        h.launch(
            receivers,
            sinks,
            |(partition, role), tally, counter, done| {
                receive(partition, role, tally, counter, done)
            },
        )
        .await
    }
    .await;
    // Best effort: the topics hold the run's records in the broker.
    for topic in created {
        let delete = controller.delete_topic(topic, TOPIC_TIMEOUT_MS);
        let _ = tokio::time::timeout(SETUP_TIMEOUT, delete).await;
    }
    metrics
}

/// Every receiver (its partition and role, and whether it counts) and every publisher of a run.
type Clients = (Vec<((PartitionClient, Role), bool)>, Vec<KafkaSink>);

/// Opens every client's partitions, each publisher with its producer task.
async fn connect_all(
    cfg: &RunConfig,
    broker: &BrokerUrl,
    h: &mut Harness,
    topics: &Topics,
) -> Result<Clients, BenchError> {
    let p = h.params.clone();
    let scenario = p.scenario;
    let mut receivers = Vec::new();
    for j in 0..p.subscribers {
        let partition = open(&cfg.url, broker, &topics.subscription(j)).await?;
        let role = if scenario == Scenario::Reqrep {
            let mut replies = Vec::new();
            for i in 0..p.publishers {
                replies.push(open(&cfg.url, broker, &topics.reply(i)).await?);
            }
            Role::Echo(Replies {
                replies,
                per_request: records_per_request(p.size),
            })
        } else {
            Role::Count { only: None }
        };
        receivers.push((partition, role));
    }
    let mut producers = Vec::new();
    for i in 0..p.publishers {
        if scenario == Scenario::Reqrep {
            let reply = open(&cfg.url, broker, &topics.reply(i)).await?;
            let only = Some(i as u32);
            receivers.push((reply, Role::Count { only }));
        }
        producers.push(open(&cfg.url, broker, &topics.destination(i)).await?);
    }

    let confirms = h.confirms();
    let mut sinks = Vec::new();
    for partition in producers {
        let per_request = records_per_request(p.size);
        let (tx, rx) = mpsc::channel(per_request);
        tokio::spawn(produce(
            partition,
            rx,
            per_request,
            confirms.clone(),
            h.done(),
        ));
        sinks.push(KafkaSink {
            records: tx,
            size: p.size,
        });
    }
    let receivers = receivers
        .into_iter()
        .map(|(partition, role)| {
            let counting = role.counts();
            ((partition, role), counting)
        })
        .collect();
    Ok((receivers, sinks))
}

/// One receiving client's fetch loop, from offset 0 until the run is done.
async fn receive(
    partition: PartitionClient,
    role: Role,
    mut tally: Tally,
    counter: Counter,
    mut done: watch::Receiver<bool>,
) -> Result<Tally, BenchError> {
    let mut offset = 0i64;
    loop {
        let fetched = tokio::select! {
            biased;
            _ = done.changed() => break,
            r = partition.fetch_records(offset, 1..FETCH_MAX_BYTES, FETCH_WAIT_MS) => r,
        };
        let (records, _high_watermark) = fetched.map_err(|e| {
            let (topic, n) = (partition.topic(), partition.partition());
            BenchError::Protocol(format!("Kafka fetch {topic}/{n} at offset {offset}: {e}"))
        })?;
        let mut echoes: Vec<Vec<Record>> = match &role {
            Role::Echo(Replies { replies, .. }) => replies.iter().map(|_| Vec::new()).collect(),
            Role::Count { .. } => Vec::new(),
        };
        for r in records {
            offset = offset.max(r.offset + 1);
            let value = r.record.value.unwrap_or_default();
            let Some(stamp) = counter.accept(&value) else {
                tally.ignored += 1;
                continue;
            };
            match &role {
                Role::Echo(_) => match echoes.get_mut(stamp.publisher as usize) {
                    Some(batch) => batch.push(record(value)),
                    None => tally.ignored += 1,
                },
                Role::Count { .. } if role.skips(&stamp) => tally.ignored += 1,
                Role::Count { .. } => counter.count(&mut tally, stamp),
            }
        }
        if let Role::Echo(Replies {
            replies,
            per_request,
        }) = &role
        {
            for (reply, mut records) in replies.iter().zip(echoes) {
                while !records.is_empty() {
                    let rest = records.split_off(records.len().min(*per_request));
                    let batch = std::mem::replace(&mut records, rest);
                    let sent = tokio::select! {
                        biased;
                        _ = done.changed() => return Ok(tally),
                        r = reply.produce(batch, Compression::NoCompression) => r,
                    };
                    sent.map_err(|e| {
                        BenchError::Protocol(format!(
                            "Kafka produce echo to {}: {e}",
                            reply.topic()
                        ))
                    })?;
                }
            }
        }
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(topic: &str, partition: i32) -> Place {
        Place {
            topic: topic.into(),
            partition,
        }
    }

    fn topics(scenario: Scenario, publishers: usize, subscribers: usize) -> Topics {
        Topics::new("abc123", scenario, publishers, subscribers).expect("not anycast")
    }

    #[test]
    fn topics_per_scenario() {
        // p2p: one topic per pair; publisher i and subscriber i meet on it.
        let t = topics(Scenario::P2p, 2, 2);
        assert_eq!(t.destination(1), place("bench-abc123-p2p-1", 0));
        assert_eq!(t.subscription(1), t.destination(1));
        let all = vec![
            ("bench-abc123-p2p-0".to_string(), 1),
            ("bench-abc123-p2p-1".to_string(), 1),
        ];
        assert_eq!(t.all(), all);
        // fanout: one log, read whole by every subscriber.
        let t = topics(Scenario::Fanout, 2, 16);
        assert_eq!(t.destination(1), place("bench-abc123-fanout", 0));
        assert_eq!(t.subscription(15), t.destination(0));
        assert_eq!(t.all(), vec![("bench-abc123-fanout".to_string(), 1)]);
        // reqrep: responder j owns partition j; publisher i uses partition i mod S.
        let t = topics(Scenario::Reqrep, 3, 2);
        assert_eq!(t.destination(2), place("bench-abc123-reqrep", 0));
        assert_eq!(t.destination(1), place("bench-abc123-reqrep", 1));
        assert_eq!(t.subscription(1), t.destination(1));
        assert_eq!(t.reply(2), place("bench-abc123-reply-2", 0));
        let all = t.all();
        assert_eq!(all.first(), Some(&("bench-abc123-reqrep".to_string(), 2)));
        assert_eq!(all.len(), 4);
        // anycast: refused, with the reason.
        assert!(matches!(
            Topics::new("abc123", Scenario::Anycast, 1, 4),
            Err(BenchError::Usage(m)) if m.contains("consumer groups")
        ));
        // Kafka topic names: at most 249 of [a-zA-Z0-9._-].
        for (topic, _) in topics(Scenario::Reqrep, 100, 1).all() {
            assert!(topic.len() <= 249);
            assert!(topic
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')));
        }
    }

    #[test]
    fn requests_fit_the_write_buffer() {
        // Small records: as many as fit rskafka's 8 KiB write buffer with the request overhead.
        let n = records_per_request(128);
        assert!(n >= MIN_SMALL_BATCH);
        assert!(REQUEST_OVERHEAD + n * (128 + RECORD_OVERHEAD) <= WRITE_BUFFER);
        // Large records: never fewer than one, at most MAX_REQUEST_BYTES.
        assert_eq!(
            records_per_request(16_384),
            MAX_REQUEST_BYTES / (16_384 + RECORD_OVERHEAD)
        );
        assert_eq!(records_per_request(4 << 20), 1);
    }
}
