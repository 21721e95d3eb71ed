//! AMQP 0.9.1 as a reference peer: the same scenarios, payloads, pacing, window and accounting as
//! the SLIM clients, over a RabbitMQ broker through `amqprs`.
//!
//! A target URL `amqp://[user:password@]host:port[?confirm=true]` selects this transport
//! ([`Transport::of_url`](crate::transport::Transport::of_url)). Without credentials the clients
//! log in as `guest`/`guest`, RabbitMQ's default user (which logs in over loopback only unless
//! the broker sets `loopback_users = none`). Credentials are taken literally (no
//! percent-decoding). Every client has its own connection with one channel. Names are
//! `bench.<run-id>.…`, unique per run:
//!
//! | scenario | publisher `i` publishes to (exchange, routing key) | queues and consumers | expected deliveries |
//! |---|---|---|---|
//! | `p2p` | (default, `bench.<run>.p2p.<i>`) | queue `bench.<run>.p2p.<i>`, exclusive to subscriber `i` | `N × P` |
//! | `fanout` | (`bench.<run>.fanout`, type `fanout`, auto-delete; key empty) | queue `bench.<run>.fanout.<j>`, exclusive to subscriber `j`, bound to the exchange | `N × P × S` |
//! | `anycast` | (default, `bench.<run>.anycast`) | one auto-delete queue consumed by all S (the broker round-robins) | `N × P` |
//! | `reqrep` | (default, `bench.<run>.reqrep`), `reply_to` `bench.<run>.reply.<i>` | responders share the request queue and echo each payload unchanged to (default, `reply_to`); requester `i` consumes its exclusive reply queue | `N × P` round trips |
//!
//! Two modes, both with transient messages in non-durable queues (no `delivery_mode`, so the
//! broker keeps them in memory: the comparison is about routing, not disks):
//!
//! - default: publishes are fire-and-forget, consumers use `no_ack`.
//! - `?confirm=true`: every publishing channel (publishers and responders) is in confirm mode,
//!   and every consumer acknowledges manually with a prefetch of `--window` (at most 65535). A
//!   consumer acks with `multiple` up to its latest delivery whenever nothing else is waiting in
//!   its buffer or a quarter of the prefetch is unacknowledged. Publishers count the broker's
//!   `basic.ack`s (`Settled` turns single and `multiple` acks into counts); a `basic.nack`
//!   settles its tags but confirms nothing. Responders' echoes are confirmed by the broker too but
//!   not counted: `confirmed` and `unconfirmed` are about the requests.
//!
//! Setup order makes sure no publish can go unrouted: every queue, exchange and binding is
//! declared (declare-ok) and every consumer registered (consume-ok) before the first publish.
//! Exclusive queues go with their connection, auto-delete queues with their last consumer and the
//! fanout exchange with its last binding, so closing the connections at the end cleans up.
//!
//! `amqprs` writes every outgoing frame (a publish, a consumer ack) with its own write call; that
//! cost is part of what the client side measures.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use amqprs::callbacks::{ChannelCallback, ConnectionCallback};
use amqprs::channel::{
    BasicAckArguments, BasicConsumeArguments, BasicPublishArguments, BasicQosArguments, Channel,
    ConfirmSelectArguments, ConsumerMessage, ExchangeDeclareArguments, QueueBindArguments,
    QueueDeclareArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{Ack, BasicProperties, Cancel, Close, CloseChannel, Nack, Return};
use tokio::sync::{mpsc, watch};

use crate::error::BenchError;
use crate::harness::{Confirms, Counter, Harness, RunConfig, StampSink, Tally};
use crate::payload;
use crate::result::Metrics;
use crate::scenario::Scenario;
use crate::transport::BrokerUrl;

/// How long connecting and each setup step (declare, bind, consume…) may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long closing every connection at the end may take in all.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

type AmqpResult<T> = Result<T, amqprs::error::Error>;

/// Where the clients connect, as whom, and in which mode (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The target URL without credentials, for messages.
    pub url: String,
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// User name (`guest` unless the URL names one).
    pub user: String,
    /// Password (`guest` unless the URL names a user).
    pub password: String,
    /// Publisher confirms and manual consumer acks (`?confirm=true`).
    pub confirm: bool,
}

impl Endpoint {
    /// Parses `amqp://[user[:password]@]host:port[?confirm=true|false]`.
    pub fn parse(url: &str) -> Result<Self, BenchError> {
        let guest = || ("guest".to_string(), "guest".to_string());
        // The credentials come out of the URL, which BrokerUrl and every message see without.
        let ((user, password), url) = match url.split_once("://") {
            Some((scheme, rest)) => {
                let end = rest.find(['/', '?']).unwrap_or(rest.len());
                let (authority, tail) = rest.split_at(end);
                match authority.rsplit_once('@') {
                    Some((userinfo, address)) => {
                        let (u, p) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                        let url = format!("{scheme}://{address}{tail}");
                        ((u.to_string(), p.to_string()), url)
                    }
                    None => (guest(), url.to_string()),
                }
            }
            None => (guest(), url.to_string()),
        };
        let parsed = BrokerUrl::parse(&url)?;
        parsed.check_params(&["confirm"])?;
        Ok(Self {
            confirm: parsed.flag("confirm")?,
            host: parsed.host,
            port: parsed.port,
            url,
            user,
            password,
        })
    }
}

/// Where a publisher sends: an exchange (empty for the default exchange) and a routing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The exchange; `""` is the default exchange, which routes to the queue the key names.
    pub exchange: String,
    /// The routing key.
    pub routing_key: String,
}

/// The queue and exchange names of one run, all under `bench.<run-id>`.
#[derive(Debug, Clone)]
pub struct Names {
    run_id: String,
}

impl Names {
    /// Names for the run `run_id`.
    pub fn new(run_id: &str) -> Self {
        Self {
            run_id: run_id.to_string(),
        }
    }

    /// The queue subscriber `j` consumes (shared by all subscribers in anycast and reqrep).
    pub fn queue(&self, scenario: Scenario, j: usize) -> String {
        let r = &self.run_id;
        match scenario {
            Scenario::P2p => format!("bench.{r}.p2p.{j}"),
            Scenario::Fanout => format!("bench.{r}.fanout.{j}"),
            Scenario::Anycast => format!("bench.{r}.anycast"),
            Scenario::Reqrep => format!("bench.{r}.reqrep"),
        }
    }

    /// The exchange subscribers bind their queues to: the fanout exchange, in fanout only.
    pub fn exchange(&self, scenario: Scenario) -> Option<String> {
        (scenario == Scenario::Fanout).then(|| format!("bench.{}.fanout", self.run_id))
    }

    /// Where publisher `i` publishes.
    pub fn route(&self, scenario: Scenario, i: usize) -> Route {
        match self.exchange(scenario) {
            Some(exchange) => Route {
                exchange,
                routing_key: String::new(),
            },
            None => Route {
                exchange: String::new(),
                routing_key: self.queue(scenario, i),
            },
        }
    }

    /// Whether subscribers share one queue (anycast receivers, reqrep responders).
    pub fn shared(scenario: Scenario) -> bool {
        matches!(scenario, Scenario::Anycast | Scenario::Reqrep)
    }

    /// Requester `i`'s reply queue (`reqrep`), consumed by that requester alone.
    pub fn reply(&self, i: usize) -> String {
        format!("bench.{}.reply.{i}", self.run_id)
    }
}

/// Delivery tags of one channel the broker settled so far. Tags up to `floor` are all settled;
/// `above` holds the ones settled out of order past it.
#[derive(Debug, Default)]
struct Settled {
    floor: u64,
    above: BTreeSet<u64>,
}

impl Settled {
    /// Settles `tag` (with `multiple`, every tag up to it); returns how many were newly settled.
    fn settle(&mut self, tag: u64, multiple: bool) -> u64 {
        if tag <= self.floor {
            return 0;
        }
        let n = if multiple {
            let before = self.above.len() as u64;
            self.above.retain(|&t| t > tag);
            let n = tag - self.floor - (before - self.above.len() as u64);
            self.floor = tag;
            n
        } else {
            u64::from(self.above.insert(tag))
        };
        while self.above.remove(&(self.floor + 1)) {
            self.floor += 1;
        }
        n
    }
}

/// Channel events: publisher confirms (counted into `confirms` when set) and closes by the
/// broker, which are reported on stderr since the run then ends short.
struct ChannelEvents {
    client: String,
    confirms: Option<Confirms>,
    settled: Settled,
}

#[async_trait::async_trait]
impl ChannelCallback for ChannelEvents {
    async fn close(&mut self, _: &Channel, close: CloseChannel) -> AmqpResult<()> {
        eprintln!(
            "slim-bench: AMQP broker closed the channel of {}: {close}",
            self.client
        );
        Ok(())
    }
    async fn cancel(&mut self, _: &Channel, cancel: Cancel) -> AmqpResult<()> {
        let tag = cancel.consumer_tag();
        eprintln!(
            "slim-bench: AMQP broker cancelled consumer {tag} of {}",
            self.client
        );
        Ok(())
    }
    async fn flow(&mut self, _: &Channel, active: bool) -> AmqpResult<bool> {
        Ok(active)
    }
    async fn publish_ack(&mut self, _: &Channel, ack: Ack) {
        let n = self.settled.settle(ack.delivery_tag(), ack.mutiple());
        if let Some(c) = &self.confirms {
            c.ack(n);
        }
    }
    async fn publish_nack(&mut self, _: &Channel, nack: Nack) {
        self.settled.settle(nack.delivery_tag(), nack.multiple());
    }
    async fn publish_return(&mut self, _: &Channel, _: Return, _: BasicProperties, _: Vec<u8>) {}
}

/// Connection events worth a line on stderr: the broker closing or blocking the connection.
struct ConnectionEvents {
    client: String,
}

#[async_trait::async_trait]
impl ConnectionCallback for ConnectionEvents {
    async fn close(&mut self, _: &Connection, close: Close) -> AmqpResult<()> {
        eprintln!(
            "slim-bench: AMQP broker closed the connection of {}: {close}",
            self.client
        );
        Ok(())
    }
    async fn blocked(&mut self, _: &Connection, reason: String) {
        eprintln!(
            "slim-bench: AMQP broker blocked the connection of {}: {reason}",
            self.client
        );
    }
    async fn unblocked(&mut self, _: &Connection) {}
    async fn secret_updated(&mut self, _: &Connection) {}
}

/// Runs one setup step within [`SETUP_TIMEOUT`], naming it in the error.
async fn setup<T>(what: &str, step: impl Future<Output = AmqpResult<T>>) -> Result<T, BenchError> {
    match tokio::time::timeout(SETUP_TIMEOUT, step).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(BenchError::Protocol(format!("AMQP {what}: {e}"))),
        Err(_) => Err(BenchError::Protocol(format!(
            "AMQP {what}: no answer within {SETUP_TIMEOUT:?}"
        ))),
    }
}

/// One benchmark client: its connection and its channel.
pub(crate) struct Client {
    /// The connection, closed at the end of the run.
    pub(crate) connection: Connection,
    /// The client's only channel.
    pub(crate) channel: Channel,
}

/// Connects client `name` to `ep` and opens its channel; with `confirms`, the channel is in
/// confirm mode and counts the broker's acks there.
pub(crate) async fn connect(
    ep: &Endpoint,
    name: &str,
    confirms: Option<Confirms>,
) -> Result<Client, BenchError> {
    let args = OpenConnectionArguments::new(&ep.host, ep.port, &ep.user, &ep.password)
        .connection_name(name)
        .finish();
    let connection = match tokio::time::timeout(SETUP_TIMEOUT, Connection::open(&args)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(format!("{e} (logging in as user {})", ep.user)),
        Err(_) => Err(format!("no AMQP handshake within {SETUP_TIMEOUT:?}")),
    }
    .map_err(|reason| BenchError::Connect {
        url: ep.url.clone(),
        reason,
    })?;
    let client = name.to_string();
    setup(
        &format!("connection callback of {name}"),
        connection.register_callback(ConnectionEvents {
            client: client.clone(),
        }),
    )
    .await?;
    let channel = setup(
        &format!("channel.open of {name}"),
        connection.open_channel(None),
    )
    .await?;
    let events = ChannelEvents {
        client,
        confirms,
        settled: Settled::default(),
    };
    setup(
        &format!("channel callback of {name}"),
        channel.register_callback(events),
    )
    .await?;
    if ep.confirm {
        setup(
            &format!("confirm.select of {name}"),
            channel.confirm_select(ConfirmSelectArguments::new(false)),
        )
        .await?;
    }
    Ok(Client {
        connection,
        channel,
    })
}

/// Declares `queue` (auto-delete when `shared`, else exclusive to this connection), bound to
/// the fanout `exchange` if any, and starts consuming it; `manual_ack` is the prefetch.
async fn consume(
    channel: &Channel,
    queue: &str,
    shared: bool,
    exchange: Option<&str>,
    manual_ack: Option<u16>,
) -> Result<mpsc::UnboundedReceiver<ConsumerMessage>, BenchError> {
    let mut declare = QueueDeclareArguments::new(queue);
    declare.auto_delete(shared).exclusive(!shared);
    let what = format!("queue.declare {queue}");
    setup(&what, channel.queue_declare(declare.finish())).await?;
    if let Some(ex) = exchange {
        let declare = ExchangeDeclareArguments::new(ex, "fanout")
            .auto_delete(true)
            .finish();
        let what = format!("exchange.declare {ex}");
        setup(&what, channel.exchange_declare(declare)).await?;
        let bind = QueueBindArguments::new(queue, ex, "");
        setup(
            &format!("queue.bind {queue} {ex}"),
            channel.queue_bind(bind),
        )
        .await?;
    }
    if let Some(prefetch) = manual_ack {
        let qos = BasicQosArguments::new(0, prefetch, false);
        setup(&format!("basic.qos {queue}"), channel.basic_qos(qos)).await?;
    }
    let args = BasicConsumeArguments::new(queue, "")
        .manual_ack(manual_ack.is_some())
        .finish();
    let what = format!("basic.consume {queue}");
    let (_, rx) = setup(&what, channel.basic_consume_rx(args)).await?;
    Ok(rx)
}

/// An AMQP publisher: `basic.publish` of a stamped payload, with `reply_to` in `reqrep`.
struct AmqpSink {
    channel: Channel,
    args: BasicPublishArguments,
    properties: BasicProperties,
    size: usize,
}

impl StampSink for AmqpSink {
    async fn send(&mut self, stamp: payload::Stamp) -> bool {
        // A channel the broker closed takes no more publishes (it would close the connection).
        if !self.channel.is_open() {
            return false;
        }
        let content = payload::build(stamp, self.size);
        let (properties, args) = (self.properties.clone(), self.args.clone());
        self.channel
            .basic_publish(properties, content, args)
            .await
            .is_ok()
    }
}

/// What a receiving client does with its deliveries: count them, or echo each one to its
/// `reply_to` queue (`reqrep` responders).
type Role = crate::harness::Role<()>;

/// Manual consumer acks of one channel: acks with `multiple` up to the latest delivery.
struct Acks {
    latest: u64,
    pending: u32,
    batch: u32,
}

impl Acks {
    /// Acks for a consumer with this prefetch: at the latest when a quarter of it is pending.
    fn new(prefetch: u16) -> Self {
        Self {
            latest: 0,
            pending: 0,
            batch: u32::from(prefetch / 4).max(1),
        }
    }
}

/// One receiving client, ready to run.
struct Receiver {
    rx: mpsc::UnboundedReceiver<ConsumerMessage>,
    channel: Channel,
    role: Role,
    acks: Option<Acks>,
}

/// One run over AMQP 0.9.1 (see the module docs for the mapping).
pub async fn run(cfg: &RunConfig) -> Result<Metrics, BenchError> {
    let ep = Endpoint::parse(&cfg.url)?;
    let mut h = Harness::new(cfg)?;
    let p = h.params.clone();
    let scenario = p.scenario;
    let names = Names::new(&h.run_id);
    let prefetch = u16::try_from(p.window).unwrap_or(u16::MAX).max(1);
    let manual_ack = ep.confirm.then_some(prefetch);
    let mut clients = Vec::new();

    // Subscribers first (and, for reqrep, the requesters' reply queues), each consuming, so
    // that no publish can find its queue, binding or consumer missing.
    let mut receivers = Vec::new();
    for j in 0..p.subscribers {
        let client = connect(&ep, &format!("slim-bench-{}-sub-{j}", h.run_id), None).await?;
        let (queue, exchange) = (names.queue(scenario, j), names.exchange(scenario));
        let shared = Names::shared(scenario);
        let rx = consume(
            &client.channel,
            &queue,
            shared,
            exchange.as_deref(),
            manual_ack,
        )
        .await?;
        let role = if scenario == Scenario::Reqrep {
            Role::Echo(())
        } else {
            Role::Count { only: None }
        };
        receivers.push((rx, client.channel.clone(), role));
        clients.push(client);
    }
    let confirms = ep.confirm.then(|| h.confirms());
    let mut sinks = Vec::new();
    for i in 0..p.publishers {
        let name = format!("slim-bench-{}-pub-{i}", h.run_id);
        let client = connect(&ep, &name, confirms.clone()).await?;
        let mut properties = BasicProperties::default();
        if scenario == Scenario::Reqrep {
            let reply = names.reply(i);
            let rx = consume(&client.channel, &reply, false, None, manual_ack).await?;
            let only = Some(i as u32);
            receivers.push((rx, client.channel.clone(), Role::Count { only }));
            properties.with_reply_to(&reply);
        }
        let route = names.route(scenario, i);
        sinks.push(AmqpSink {
            channel: client.channel.clone(),
            args: BasicPublishArguments::new(&route.exchange, &route.routing_key),
            properties,
            size: p.size,
        });
        clients.push(client);
    }

    let receivers = receivers
        .into_iter()
        .map(|(rx, channel, role)| {
            let counting = role.counts();
            let acks = manual_ack.map(Acks::new);
            let receiver = Receiver {
                rx,
                channel,
                role,
                acks,
            };
            (receiver, counting)
        })
        .collect();
    let metrics = h.launch(receivers, sinks, receive).await;
    // Best effort: exclusive and auto-delete queues and the exchange go with the connections.
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        for c in clients {
            let _ = c.channel.close().await;
            let _ = c.connection.close().await;
        }
    })
    .await;
    metrics
}

/// One receiving client's loop, until the run is done or its channel or connection ends.
async fn receive(
    mut r: Receiver,
    mut tally: Tally,
    counter: Counter,
    mut done: watch::Receiver<bool>,
) -> Result<Tally, BenchError> {
    loop {
        let msg = tokio::select! {
            biased;
            _ = done.changed() => break,
            m = r.rx.recv() => match m {
                Some(m) => m,
                // The channel or connection is gone: whatever did not arrive counts as lost.
                None => break,
            },
        };
        // A broker that stops reading must not keep this task past the end of the run.
        let alive = tokio::select! {
            biased;
            _ = done.changed() => break,
            alive = handle(&mut r, msg, &mut tally, &counter) => alive,
        };
        if !alive {
            break;
        }
    }
    Ok(tally)
}

/// Counts or echoes one delivery, then acks (manual acks); false when the channel is gone.
async fn handle(
    r: &mut Receiver,
    msg: ConsumerMessage,
    tally: &mut Tally,
    counter: &Counter,
) -> bool {
    let tag = msg.deliver.as_ref().map(|d| d.delivery_tag());
    let content = msg.content.unwrap_or_default();
    match (counter.accept(&content), &r.role) {
        (None, _) => tally.ignored += 1,
        (Some(stamp), Role::Count { .. }) => {
            if r.role.skips(&stamp) {
                tally.ignored += 1;
            } else {
                counter.count(tally, stamp);
            }
        }
        (Some(_), Role::Echo(())) => {
            let reply_to = msg.basic_properties.as_ref().and_then(|p| p.reply_to());
            match reply_to {
                Some(reply_to) => {
                    let args = BasicPublishArguments::new("", reply_to);
                    let props = BasicProperties::default();
                    if r.channel.basic_publish(props, content, args).await.is_err() {
                        return false;
                    }
                }
                None => tally.ignored += 1,
            }
        }
    }
    // Every delivery is acknowledged, foreign ones too, so that the prefetch never fills up.
    if let (Some(acks), Some(tag)) = (&mut r.acks, tag) {
        acks.latest = tag;
        acks.pending += 1;
        if acks.pending >= acks.batch || r.rx.is_empty() {
            acks.pending = 0;
            let ack = BasicAckArguments::new(acks.latest, true);
            if r.channel.basic_ack(ack).await.is_err() {
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_per_scenario() {
        let n = Names::new("abc123");
        // p2p: publisher i and subscriber i meet on their own queue via the default exchange.
        assert_eq!(n.queue(Scenario::P2p, 3), "bench.abc123.p2p.3");
        assert_eq!(
            n.route(Scenario::P2p, 3),
            Route {
                exchange: String::new(),
                routing_key: "bench.abc123.p2p.3".into()
            }
        );
        assert_ne!(n.queue(Scenario::P2p, 0), n.queue(Scenario::P2p, 1));
        assert!(!Names::shared(Scenario::P2p));
        // fanout: one exchange, one queue per subscriber bound to it.
        let ex = n.exchange(Scenario::Fanout).expect("fanout exchange");
        assert_eq!(ex, "bench.abc123.fanout");
        for i in 0..3 {
            assert_eq!(
                n.route(Scenario::Fanout, i),
                Route {
                    exchange: ex.clone(),
                    routing_key: String::new()
                }
            );
        }
        assert_ne!(n.queue(Scenario::Fanout, 0), n.queue(Scenario::Fanout, 1));
        assert!(!Names::shared(Scenario::Fanout));
        // anycast and reqrep: one shared queue, every publisher routes to it.
        for sc in [Scenario::Anycast, Scenario::Reqrep] {
            assert!(Names::shared(sc));
            assert_eq!(n.exchange(sc), None);
            assert_eq!(n.queue(sc, 0), n.queue(sc, 5));
            assert_eq!(n.route(sc, 2).routing_key, n.queue(sc, 0));
            assert_eq!(n.route(sc, 2).exchange, "");
        }
        assert_eq!(n.queue(Scenario::Anycast, 0), "bench.abc123.anycast");
        assert_eq!(n.queue(Scenario::Reqrep, 0), "bench.abc123.reqrep");
        assert_eq!(n.reply(2), "bench.abc123.reply.2");
        assert_ne!(n.reply(2), n.queue(Scenario::Reqrep, 2));
        assert_eq!(n.exchange(Scenario::P2p), None);
    }

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("amqp://127.0.0.1:15674").expect("parses");
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 15674));
        assert_eq!((e.user.as_str(), e.password.as_str()), ("guest", "guest"));
        assert!(!e.confirm);
        let e = Endpoint::parse("amqp://bench:s3cr:t@h:5672/?confirm=true").expect("parses");
        assert_eq!((e.user.as_str(), e.password.as_str()), ("bench", "s3cr:t"));
        assert_eq!((e.host.as_str(), e.port), ("h", 5672));
        assert_eq!(e.url, "amqp://h:5672/?confirm=true");
        assert!(e.confirm);
        assert!(Endpoint::parse("amqp://h:1?confirm=maybe").is_err());
        assert!(Endpoint::parse("amqp://h:1?foo=1").is_err());
        assert!(Endpoint::parse("amqp://u:p@h").is_err());
        assert!(Endpoint::parse("amqp://u:p@:1").is_err());
        assert!(Endpoint::parse("u:p@h:1").is_err());
    }

    #[test]
    fn settled_counts_single_and_multiple_acks() {
        let mut s = Settled::default();
        assert_eq!(s.settle(1, false), 1);
        assert_eq!(s.settle(1, false), 0, "a repeated ack settles nothing");
        assert_eq!(s.settle(4, true), 3, "2, 3, 4");
        // Out of order single acks past the floor, then a multiple ack that covers them.
        assert_eq!(s.settle(7, false), 1);
        assert_eq!(s.settle(9, false), 1);
        assert_eq!(s.settle(8, true), 3, "5, 6, 8 (7 was already settled)");
        assert_eq!(s.floor, 9, "9 joins the floor once 8 is settled");
        assert_eq!(s.settle(3, true), 0, "below the floor");
        assert_eq!(s.settle(10, false), 1);
        assert_eq!(s.settle(20, true), 10);
        assert!(s.above.is_empty());
    }
}
