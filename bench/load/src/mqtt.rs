//! MQTT 3.1.1 as a reference peer: the same scenarios, payloads, pacing, window and accounting
//! as the SLIM clients, over an MQTT broker (mosquitto) through `rumqttc`.
//!
//! A target URL `mqtt://host:port[?qos=0|1|2]` selects this transport; `qos` (default 0) is the
//! QoS of every subscription and every publish of the run. Every client has its own MQTT
//! connection (clean session, client id `slim-bench-<run>-sub-<j>` / `-pub-<i>`), whose event
//! loop runs in its own task. Topics are `bench/<run-id>/…`, unique per run:
//!
//! | scenario | publisher `i` publishes to | subscribers | expected deliveries |
//! |---|---|---|---|
//! | `p2p` | `bench/<run>/p2p/<i>` | subscriber `i` subscribes it | `N × P` |
//! | `fanout` | `bench/<run>/fanout` | all S, plain subscriptions | `N × P × S` |
//! | `anycast` | `bench/<run>/anycast` | all S in the shared subscription `$share/bench-<run>/…` (one receives) | `N × P` |
//! | `reqrep` | `bench/<run>/reqrep` | all S in the shared subscription echo to `bench/<run>/reply/<i>` | `N × P` round trips |
//!
//! MQTT 3.1.1 has no reply-to property: a responder takes `i` from the payload's stamp.
//! Shared subscriptions are an MQTT 5 feature that mosquitto also grants 3.1.1 clients (checked
//! with mosquitto 2.0.11: round robin across the members).
//!
//! Before the first publish every subscribing connection waits for the SUBACK of its
//! subscription (the broker registers a subscription before acknowledging it), then proves the
//! connection end to end: it subscribes to a private topic, publishes a probe there and waits
//! for it to come back ([`barrier`]). At QoS 1 and 2 the run reports broker confirmations: each
//! PUBACK (QoS 1) or PUBCOMP (QoS 2) a publisher's connection receives confirms one publish.
//! A connection that fails mid-run is not re-established (its clean session lost its
//! subscriptions): its receiver stops, and what did not arrive counts as lost.

use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, NetworkOptions, Packet, Publish, QoS, SubAck,
    SubscribeReasonCode,
};
use tokio::sync::{mpsc, watch};

use crate::error::BenchError;
use crate::harness::{Confirms, Counter, Harness, RunConfig, StampSink, Tally};
use crate::payload;
use crate::result::Metrics;
use crate::scenario::Scenario;
use crate::transport::BrokerUrl;

/// How long connecting, a SUBACK and the subscription barrier may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Keep-alive of every connection.
const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// The topics of one run, all under `bench/<run-id>`.
#[derive(Debug, Clone)]
pub struct Topics {
    run_id: String,
}

impl Topics {
    /// Topics for the run `run_id` (one topic level: no `/`, `+` or `#`).
    pub fn new(run_id: &str) -> Self {
        Self {
            run_id: run_id.to_string(),
        }
    }

    /// Where publisher `i` publishes; also the topic subscriber `i` receives on.
    pub fn destination(&self, scenario: Scenario, i: usize) -> String {
        let r = &self.run_id;
        match scenario {
            Scenario::P2p => format!("bench/{r}/p2p/{i}"),
            Scenario::Fanout => format!("bench/{r}/fanout"),
            Scenario::Anycast => format!("bench/{r}/anycast"),
            Scenario::Reqrep => format!("bench/{r}/reqrep"),
        }
    }

    /// The topic filter subscriber `j` subscribes: shared for anycast and reqrep.
    pub fn filter(&self, scenario: Scenario, j: usize) -> String {
        let topic = self.destination(scenario, j);
        match scenario {
            Scenario::Anycast | Scenario::Reqrep => format!("$share/{}/{topic}", self.group()),
            Scenario::P2p | Scenario::Fanout => topic,
        }
    }

    /// The share name of anycast receivers and request/reply responders.
    pub fn group(&self) -> String {
        format!("bench-{}", self.run_id)
    }

    /// Requester `i`'s reply topic (`reqrep`), subscribed by that requester alone.
    pub fn reply(&self, i: usize) -> String {
        format!("bench/{}/reply/{i}", self.run_id)
    }

    /// A private topic for the subscription barrier of client `k`.
    pub fn ready(&self, k: usize) -> String {
        format!("bench/{}/ready/{k}", self.run_id)
    }
}

/// The QoS a URL asks for: `?qos=0|1|2`, 0 when absent; any other parameter is an error.
pub fn qos_of(url: &BrokerUrl) -> Result<QoS, BenchError> {
    url.check_params(&["qos"])?;
    match url.param("qos") {
        None | Some("0") => Ok(QoS::AtMostOnce),
        Some("1") => Ok(QoS::AtLeastOnce),
        Some("2") => Ok(QoS::ExactlyOnce),
        Some(v) => Err(BenchError::Usage(format!(
            "?qos={v}: MQTT QoS must be 0, 1 or 2"
        ))),
    }
}

/// What a connection's event loop task hands to the task that owns the connection.
enum Note {
    Publish(Publish),
    SubAck(SubAck),
    /// The connection failed; the event loop task has ended.
    Closed(String),
}

/// One MQTT connection: the client handle and what its event loop forwards.
struct Conn {
    id: String,
    client: AsyncClient,
    notes: mpsc::UnboundedReceiver<Note>,
}

/// Connects client `id` and spawns its event loop, which runs until `done` fires (or the
/// harness goes away) and counts PUBACKs and PUBCOMPs into `confirms`.
async fn connect(
    cfg: &RunConfig,
    broker: &BrokerUrl,
    id: String,
    confirms: Option<Confirms>,
    done: watch::Receiver<bool>,
) -> Result<Conn, BenchError> {
    let p = &cfg.params;
    let cap = p.window.max(1);
    let packet_limit = (p.size + 65_536).max(1 << 20);
    let mut opts = MqttOptions::new(id.clone(), broker.host.clone(), broker.port);
    opts.set_clean_session(true)
        .set_keep_alive(KEEP_ALIVE)
        .set_max_packet_size(packet_limit, packet_limit)
        .set_request_channel_capacity(cap)
        .set_inflight(u16::try_from(cap).unwrap_or(u16::MAX));
    let (client, mut event_loop) = AsyncClient::new(opts, cap);
    let mut net = NetworkOptions::new();
    // Small request/reply messages must not wait for Nagle's algorithm.
    net.set_tcp_nodelay(true);
    net.set_connection_timeout(SETUP_TIMEOUT.as_secs());
    event_loop.set_network_options(net);
    let fail = |reason: String| BenchError::Connect {
        url: cfg.url.clone(),
        reason: format!("MQTT client {id}: {reason}"),
    };
    match tokio::time::timeout(SETUP_TIMEOUT, event_loop.poll()).await {
        Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {}
        Ok(Ok(other)) => return Err(fail(format!("expected CONNACK, got {other:?}"))),
        Ok(Err(e)) => return Err(fail(e.to_string())),
        Err(_) => return Err(fail(format!("no CONNACK within {SETUP_TIMEOUT:?}"))),
    }
    let (tx, notes) = mpsc::unbounded_channel();
    tokio::spawn(drive(event_loop, id.clone(), tx, confirms, done));
    Ok(Conn { id, client, notes })
}

/// Polls a connection's event loop (nothing moves unless it is polled): forwards incoming
/// publishes and SUBACKs, counts publish confirmations, and ends on `done` or the first error.
/// The notes channel is unbounded so that this loop never waits for the receiver.
async fn drive(
    mut event_loop: EventLoop,
    id: String,
    notes: mpsc::UnboundedSender<Note>,
    confirms: Option<Confirms>,
    mut done: watch::Receiver<bool>,
) {
    loop {
        let event = tokio::select! {
            _ = done.changed() => return,
            e = event_loop.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let _ = notes.send(Note::Publish(p));
            }
            Ok(Event::Incoming(Packet::SubAck(s))) => {
                let _ = notes.send(Note::SubAck(s));
            }
            // A connection publishes at one QoS: PUBACKs at 1, PUBCOMPs at 2.
            Ok(Event::Incoming(Packet::PubAck(_) | Packet::PubComp(_))) => {
                if let Some(c) = &confirms {
                    c.ack(1);
                }
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("slim-bench: MQTT client {id}: connection lost: {e}");
                let _ = notes.send(Note::Closed(e.to_string()));
                return;
            }
        }
    }
}

impl Conn {
    /// A setup error of this connection: `what` failed because of `reason`.
    fn error(&self, what: &str, reason: impl std::fmt::Display) -> BenchError {
        BenchError::Protocol(format!("MQTT client {} {what}: {reason}", self.id))
    }

    /// The next note during setup, within [`SETUP_TIMEOUT`].
    async fn next_note(&mut self, what: &str) -> Result<Note, BenchError> {
        match tokio::time::timeout(SETUP_TIMEOUT, self.notes.recv()).await {
            Ok(Some(Note::Closed(reason))) => Err(self.error(what, reason)),
            Ok(Some(n)) => Ok(n),
            Ok(None) => Err(self.error(what, "connection closed")),
            Err(_) => Err(self.error(what, format!("no answer within {SETUP_TIMEOUT:?}"))),
        }
    }

    /// Subscribes `filter` at `qos` and waits for the broker to grant it.
    async fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<(), BenchError> {
        let what = format!("subscribe {filter}");
        if let Err(e) = self.client.subscribe(filter, qos).await {
            return Err(self.error(&what, e));
        }
        loop {
            let Note::SubAck(ack) = self.next_note(&what).await? else {
                continue;
            };
            return match ack.return_codes.first() {
                Some(SubscribeReasonCode::Success(granted)) if *granted == qos => Ok(()),
                Some(SubscribeReasonCode::Success(granted)) => Err(self.error(
                    &what,
                    format!("the broker granted {granted:?}, the run needs {qos:?}"),
                )),
                _ => Err(self.error(&what, "refused by the broker")),
            };
        }
    }
}

/// Proves that `conn` works end to end once its subscriptions are acknowledged: a QoS 0 probe
/// on the private topic `ready` must come back (see the module docs). QoS 0 keeps the probe
/// out of the publish confirmations.
async fn barrier(conn: &mut Conn, ready: &str) -> Result<(), BenchError> {
    conn.subscribe(ready, QoS::AtMostOnce).await?;
    let what = format!("barrier {ready}");
    if let Err(e) = conn
        .client
        .publish(ready, QoS::AtMostOnce, false, &b"ready"[..])
        .await
    {
        return Err(conn.error(&what, e));
    }
    loop {
        if let Note::Publish(p) = conn.next_note(&what).await? {
            if p.topic == ready {
                break;
            }
        }
    }
    // Best effort: the connection goes away at the end of the run anyway.
    let _ = conn.client.unsubscribe(ready).await;
    Ok(())
}

/// An MQTT publisher: `publish` of a stamped payload at the run's QoS. The event loop task
/// writes what is queued until the run is done, so `finish` has nothing to push out.
struct MqttSink {
    client: AsyncClient,
    topic: String,
    qos: QoS,
    size: usize,
}

impl StampSink for MqttSink {
    async fn send(&mut self, stamp: payload::Stamp) -> bool {
        let payload = payload::build(stamp, self.size);
        self.client
            .publish(self.topic.as_str(), self.qos, false, payload)
            .await
            .is_ok()
    }
}

/// What a receiving connection does with the messages on its topic: count them, or echo each one
/// to the reply topic of the publisher in its stamp, at this QoS (`reqrep` responders).
type Role = crate::harness::Role<(Topics, QoS)>;

/// One run over MQTT (see the module docs for the mapping).
pub async fn run(cfg: &RunConfig) -> Result<Metrics, BenchError> {
    let broker = BrokerUrl::parse(&cfg.url)?;
    let qos = qos_of(&broker)?;
    let mut h = Harness::new(cfg)?;
    let p = h.params.clone();
    let scenario = p.scenario;
    let topics = Topics::new(&h.run_id);
    let run_id = h.run_id.clone();
    let client_id = |role: &str, k: usize| format!("slim-bench-{run_id}-{role}-{k}");

    // Subscribers (and, for reqrep, the requesters' reply subscriptions) first, each proven
    // registered, so that no publish can miss a subscription.
    let mut receivers = Vec::new();
    for j in 0..p.subscribers {
        let mut conn = connect(cfg, &broker, client_id("sub", j), None, h.done()).await?;
        conn.subscribe(&topics.filter(scenario, j), qos).await?;
        barrier(&mut conn, &topics.ready(j)).await?;
        let role = if scenario == Scenario::Reqrep {
            Role::Echo((topics.clone(), qos))
        } else {
            Role::Count { only: None }
        };
        receivers.push((conn, topics.destination(scenario, j), role));
    }
    let confirms = (qos != QoS::AtMostOnce).then(|| h.confirms());
    let mut sinks = Vec::new();
    for i in 0..p.publishers {
        let id = client_id("pub", i);
        let mut conn = connect(cfg, &broker, id, confirms.clone(), h.done()).await?;
        let client = conn.client.clone();
        if scenario == Scenario::Reqrep {
            let reply = topics.reply(i);
            conn.subscribe(&reply, qos).await?;
            barrier(&mut conn, &topics.ready(p.subscribers + i)).await?;
            let only = Some(u32::try_from(i).unwrap_or(u32::MAX));
            receivers.push((conn, reply, Role::Count { only }));
        }
        sinks.push(MqttSink {
            client,
            topic: topics.destination(scenario, i),
            qos,
            size: p.size,
        });
    }

    let receivers = receivers
        .into_iter()
        .map(|(conn, topic, role)| {
            let counting = role.counts();
            ((conn, topic, role), counting)
        })
        .collect();
    h.launch(
        receivers,
        sinks,
        |(conn, topic, role), tally, counter, done| {
            receive(conn, topic, role, tally, counter, done)
        },
    )
    .await
}

/// One receiving connection's loop, until the run is done or the connection ends.
async fn receive(
    mut conn: Conn,
    topic: String,
    role: Role,
    mut tally: Tally,
    counter: Counter,
    mut done: watch::Receiver<bool>,
) -> Result<Tally, BenchError> {
    loop {
        let msg = tokio::select! {
            biased;
            _ = done.changed() => break,
            n = conn.notes.recv() => match n {
                Some(Note::Publish(m)) => m,
                Some(Note::SubAck(_)) => continue,
                // The connection is gone: whatever did not arrive counts as lost.
                Some(Note::Closed(_)) | None => break,
            },
        };
        let stamp = match counter.accept(&msg.payload) {
            Some(s) if msg.topic == topic => s,
            _ => {
                tally.ignored += 1;
                continue;
            }
        };
        match &role {
            Role::Echo((topics, qos)) => {
                let reply = topics.reply(stamp.publisher as usize);
                // A broker that stops reading must not keep this task past the end of the run.
                let sent = tokio::select! {
                    _ = done.changed() => break,
                    r = conn.client.publish_bytes(reply, *qos, false, msg.payload) => r,
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
    fn topics_per_scenario() {
        let t = Topics::new("abc123");
        assert_eq!(t.destination(Scenario::P2p, 3), "bench/abc123/p2p/3");
        // Publisher i and subscriber i meet on the same topic; pairs never share one.
        assert_eq!(t.filter(Scenario::P2p, 3), t.destination(Scenario::P2p, 3));
        assert_ne!(
            t.destination(Scenario::P2p, 0),
            t.destination(Scenario::P2p, 1)
        );
        // Fanout: one topic, plain subscriptions (every subscriber gets every message).
        for j in 0..4 {
            assert_eq!(t.filter(Scenario::Fanout, j), "bench/abc123/fanout");
            assert_eq!(t.destination(Scenario::Fanout, j), "bench/abc123/fanout");
        }
        // Anycast and reqrep: one topic, one shared subscription (one receiver per message),
        // delivered under the plain topic.
        for sc in [Scenario::Anycast, Scenario::Reqrep] {
            assert_eq!(t.filter(sc, 0), t.filter(sc, 5));
            assert_eq!(
                t.filter(sc, 0),
                format!("$share/bench-abc123/{}", t.destination(sc, 2))
            );
            assert_eq!(t.destination(sc, 0), t.destination(sc, 5));
        }
        assert_eq!(t.destination(Scenario::Anycast, 0), "bench/abc123/anycast");
        assert_eq!(t.destination(Scenario::Reqrep, 0), "bench/abc123/reqrep");
        assert_eq!(t.reply(2), "bench/abc123/reply/2");
        assert_ne!(t.ready(0), t.ready(1));
    }

    #[test]
    fn topics_are_valid_mqtt_topics() {
        let t = Topics::new("0123456789ab");
        let mut all = vec![t.reply(0), t.ready(9)];
        for sc in [
            Scenario::P2p,
            Scenario::Fanout,
            Scenario::Anycast,
            Scenario::Reqrep,
        ] {
            all.push(t.destination(sc, 0));
        }
        for topic in all {
            assert!(rumqttc::valid_topic(&topic), "{topic}");
            assert!(
                topic
                    .split('/')
                    .all(|l| !l.is_empty()
                        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')),
                "{topic}"
            );
        }
        assert!(rumqttc::valid_filter(&t.filter(Scenario::Anycast, 0)));
    }

    #[test]
    fn qos_from_url() {
        let qos = |url: &str| BrokerUrl::parse(url).and_then(|u| qos_of(&u));
        assert_eq!(qos("mqtt://h:1").ok(), Some(QoS::AtMostOnce));
        assert_eq!(qos("mqtt://h:1?qos=0").ok(), Some(QoS::AtMostOnce));
        assert_eq!(qos("mqtt://h:1?qos=1").ok(), Some(QoS::AtLeastOnce));
        assert_eq!(qos("mqtt://h:1?qos=2").ok(), Some(QoS::ExactlyOnce));
        for bad in ["mqtt://h:1?qos=3", "mqtt://h:1?qos=", "mqtt://h:1?foo=1"] {
            assert!(matches!(qos(bad), Err(BenchError::Usage(_))), "{bad}");
        }
    }
}
