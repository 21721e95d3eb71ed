//! `slim-bench soak`: a long run under churn that fails if anything grows or leaks.
//!
//! Load, all in this process, against the reference relay embedded here (or `--target`):
//!
//! - **Churn**: `--clients` raw clients ([`BenchLink`]), each looping *connect → subscribe →
//!   publish to other clients → unsubscribe → disconnect* with seeded random pauses. Each cycle
//!   has its own link and its own name (`soak/<run>/c<i>` with id = cycle), so every cycle adds
//!   and removes a link, a subscription, an id entry and (while a client is away) its prefix.
//!   Delivery is exact: a sender publishes only to a client whose subscription is acknowledged,
//!   and takes a *hold* on it first; a client that leaves stops taking holds and unsubscribes
//!   only once every message held for it has arrived (bounded by `--timeout`). So every publish
//!   must arrive, except for what the relay drops by its slow-consumer policy (a full outbound
//!   queue, counted by `dropped_queue_full`).
//! - **Groups**: `--groups` reliable MLS group sessions of the reference client
//!   (`slim_reference::client`), each a moderator and a pool of `--members` participant apps. The
//!   moderator keeps inviting and removing participants, and after every change the moderator
//!   and one participant send reliable messages: each must reach every other member and be
//!   acknowledged (`Delivered`). A removed participant's endpoint must forget the session.
//!
//! Sampled every `--sample-every`: RSS and open fds of this process (`/proc/self`), tokio's alive
//! tasks (`RuntimeMetrics::num_alive_tasks`), the relay's table sizes
//! ([`RelayHandle::table_sizes`]) and the client session tables (sessions the group apps hold).
//!
//! Verdict (see `bench/LOAD.md`, *soak*): every sampled series flat after the warm-up (the
//! maximum of the last quarter of the post-warm-up samples at most the maximum of the first
//! quarter × (1 + relative slack) + absolute slack); every relay table empty once every client
//! has disconnected (else a route leak, naming the table); no churn message lost beyond the
//! slow-consumer policy, no duplicate, no misrouted message; every reliable group message
//! received by every member and acknowledged; no client error.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prost::Message as _;
use serde::Serialize;
use slim_proto::messages;
use slim_proto::names::SlimName;
use slim_proto::pb::{self, message::MessageType};
use slim_reference::client::{Client, ClientError, ClientEvent, ClientOptions};
use slim_reference::server::RelayHandle;
use slim_reference::session::{
    Credentials, Event, Reliability, SessionError, SessionId, SessionOptions,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::client::{publish_parts, BenchLink, PublishTemplate};
use crate::error::BenchError;

/// The shared secret of the group apps (loopback only).
const SECRET: &str = "slim-bench-soak-shared-secret-0123456789abcdef";
/// Payload bytes of a churn message.
const CHURN_SIZE: usize = 64;
/// Magic of a churn payload.
const CHURN_MAGIC: [u8; 4] = *b"SKC1";
/// Magic of a group payload.
const GROUP_MAGIC: [u8; 4] = *b"SKG1";
/// How long the relay may take to forget every link once the clients are gone.
const DRAIN_BOUND: Duration = Duration::from_secs(15);
/// Polling interval of bounded waits on state that has no notification (relay tables, a
/// client's session table).
const POLL: Duration = Duration::from_millis(20);
/// At least this many samples after the warm-up, so that quarters mean something.
const MIN_JUDGED_SAMPLES: usize = 8;
/// Relative slack of RSS in the flatness check.
const RSS_SLACK: f64 = 0.10;
/// Relative slack of the series that follow how many clients are connected at the sampling
/// instant (fds, tasks, relay tables, client sessions): that number varies with the machine's
/// load, so their exact return to the baseline after the drain is the strict check.
const CONCURRENCY_SLACK: f64 = 0.50;
/// What fds and tasks may exceed their idle baseline by once every client has gone.
const AFTER_SLACK: u64 = 8;
/// Errors kept verbatim in the result (the rest are counted).
const KEEP_ERRORS: usize = 10;

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// The node (`None`: the reference relay embedded in this process).
    pub target: Option<String>,
    /// How long the load runs.
    pub duration: Duration,
    /// Churning clients.
    pub clients: usize,
    /// Reliable MLS group sessions.
    pub groups: usize,
    /// Participant apps per group (the group holds 1..=members of them plus the moderator).
    pub members: usize,
    /// Sampling period.
    pub sample_every: Duration,
    /// Samples before this are not judged.
    pub warmup: Duration,
    /// Longest random pause between two churn cycles, ms (a cycle's inner pauses are a quarter).
    pub pause_ms: u64,
    /// Longest random pause between two membership changes of a group, ms.
    pub group_pause_ms: u64,
    /// Seed of every random choice (pauses, peers, who joins and leaves).
    pub seed: u64,
    /// Bound for each wait: a message's arrival, a join, a removal, a subscription ack.
    pub timeout: Duration,
    /// Test hook: every 4th churn cycle keeps its link subscribed and open until the end.
    pub inject_leak: bool,
}

/// Sizes of the relay's tables at one moment (`slim_reference::relay::TableSizes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tables {
    /// Open links, pending or established.
    pub links: usize,
    /// Distinct name prefixes with at least one subscriber.
    pub prefixes: usize,
    /// Distinct (prefix, id) entries.
    pub ids: usize,
    /// Links holding at least one subscription.
    pub subscribed_links: usize,
    /// Subscription records over all links.
    pub subscriptions: usize,
    /// Links with a JWT credential on record.
    pub credentials: usize,
}

impl Tables {
    fn of(h: &RelayHandle) -> Tables {
        let t = h.table_sizes();
        Tables {
            links: t.links,
            prefixes: t.prefixes,
            ids: t.ids,
            subscribed_links: t.subscribed_links,
            subscriptions: t.subscriptions,
            credentials: t.credentials,
        }
    }

    fn named(&self) -> [(&'static str, usize); 6] {
        [
            ("links", self.links),
            ("prefixes", self.prefixes),
            ("ids", self.ids),
            ("subscribed_links", self.subscribed_links),
            ("subscriptions", self.subscriptions),
            ("credentials", self.credentials),
        ]
    }
}

/// One sample.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the load started (negative: before, the idle baseline).
    pub t_s: f64,
    /// Resident set size of this process (relay, clients and tool), KiB.
    pub rss_kib: u64,
    /// Open file descriptors of this process.
    pub fds: u64,
    /// Alive tokio tasks.
    pub tasks: u64,
    /// The relay's tables (`None` with `--target`).
    pub tables: Option<Tables>,
    /// Sessions the group apps' endpoints hold (open minus closed or removed, each removal
    /// confirmed at the endpoint).
    pub client_sessions: u64,
    /// Churn clients subscribed and taking messages at that moment.
    pub churn_open: u64,
    /// Churn cycles completed so far.
    pub cycles: u64,
    /// Churn messages published so far.
    pub churn_sent: u64,
    /// Churn messages received so far.
    pub churn_received: u64,
    /// Reliable group messages acknowledged so far.
    pub group_delivered: u64,
}

/// The trend of one sampled series and its verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Trend {
    /// Series name (`rss_kib`, `fds`, `tasks`, `relay.<table>`, `client_sessions`).
    pub metric: String,
    /// The idle baseline, before any client.
    pub start: u64,
    /// The last sample under load.
    pub end_of_load: u64,
    /// The highest sample.
    pub peak: u64,
    /// Once every client has gone.
    pub after: u64,
    /// Highest sample of the first quarter after the warm-up.
    pub first_quarter_max: u64,
    /// Highest sample of the last quarter.
    pub last_quarter_max: u64,
    /// `first_quarter_max × (1 + rel) + abs`: what the last quarter may reach.
    pub bound: f64,
    /// Least-squares slope over the post-warm-up samples, per minute (reported, not judged).
    pub slope_per_min: f64,
    /// `last_quarter_max <= bound`.
    pub flat: bool,
}

/// Churn message accounting.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChurnTotals {
    /// Completed cycles (connect … disconnect).
    pub cycles: u64,
    /// Subscriptions acknowledged.
    pub subscribes: u64,
    /// Unsubscriptions acknowledged.
    pub unsubscribes: u64,
    /// Messages published (each to one client that held a subscription for it).
    pub sent: u64,
    /// Messages received, each once, by the client and cycle they were sent to.
    pub received: u64,
    /// Messages received a second time.
    pub duplicates: u64,
    /// Messages received by a link they were not for.
    pub misrouted: u64,
    /// Cycles that stopped waiting for a message after `--timeout`.
    pub gave_up: u64,
    /// Links deliberately kept (`--inject-leak`).
    pub leaked_links: u64,
    /// Client errors (connect, subscribe, unsubscribe, stream).
    pub errors: u64,
}

/// Group session accounting.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GroupTotals {
    /// Members invited and seen joining.
    pub joins: u64,
    /// Members removed and seen leaving.
    pub removals: u64,
    /// Reliable messages published.
    pub sent: u64,
    /// Receipts a correct group produces (one per other member per message).
    pub expected_receipts: u64,
    /// Receipts seen.
    pub receipts: u64,
    /// Receipts of a message already received, or never sent.
    pub unexpected: u64,
    /// `Delivered` events (acknowledged by every member).
    pub delivered: u64,
    /// `SendFailed` events (retries exhausted).
    pub send_failed: u64,
    /// `Error` events the apps reported (reported, not judged).
    pub session_errors: u64,
    /// Removed or closed sessions an endpoint still held after `--timeout`.
    pub session_leaks: u64,
    /// Steps that failed (join, removal or delivery not seen in time, client errors).
    pub errors: u64,
}

/// The result document (`slim-bench/soak/v1`).
#[derive(Debug, Clone, Serialize)]
pub struct SoakResult {
    /// Schema tag.
    pub schema: &'static str,
    /// The command line.
    pub command_line: Vec<String>,
    /// When the run started, UTC.
    pub started_utc: String,
    /// `debug` or `release` (of slim-bench and the embedded relay).
    pub build: &'static str,
    /// `"embedded"` or the node's URL.
    pub target: String,
    /// Load seconds asked for.
    pub duration_s: f64,
    /// Warm-up seconds (not judged).
    pub warmup_s: f64,
    /// Sampling period, seconds.
    pub sample_every_s: f64,
    /// Churn clients.
    pub clients: usize,
    /// Group sessions.
    pub groups: usize,
    /// Participant apps per group.
    pub members: usize,
    /// Seed.
    pub seed: u64,
    /// Whether the leak was injected (`--inject-leak`).
    pub inject_leak: bool,
    /// Wall seconds, setup and drain included.
    pub wall_s: f64,
    /// Churn accounting.
    pub churn: ChurnTotals,
    /// Publishes the relay dropped for a full receiver queue (`None` with `--target`).
    pub dropped_queue_full: Option<u64>,
    /// Churn messages lost beyond the slow-consumer policy: sent − received − dropped.
    pub lost_beyond_policy: u64,
    /// Group accounting.
    pub group: GroupTotals,
    /// The relay's tables once every client had disconnected (`None` with `--target`).
    pub tables_after: Option<Tables>,
    /// Trend of each series.
    pub trends: Vec<Trend>,
    /// The first errors, verbatim.
    pub errors: Vec<String>,
    /// Why the run failed; empty when it passed.
    pub failures: Vec<String>,
    /// `"pass"` or `"fail"`.
    pub verdict: &'static str,
    /// Every sample, the idle baseline first and the one after the drain last.
    pub samples: Vec<Sample>,
    /// Where it ran.
    pub machine: crate::procstat::Machine,
}

impl SoakResult {
    /// Whether every check held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Parses `500ms`, `60s`, `10m`, `1h` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 500ms, 60s, 10m, 1h)"))?;
    let scale = match unit {
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (ms, s, m, h)")),
    };
    let secs = v * scale;
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(format!("`{s}` is not a non-negative duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The default warm-up for a run of `duration`: a third, at least 10 s, at most 20 min (the
/// reference client's reply caches take about that long to fill at the default load; see
/// `bench/LOAD.md`, *soak*).
pub fn default_warmup(duration: Duration) -> Duration {
    (duration / 3).clamp(Duration::from_secs(10), Duration::from_secs(1200))
}

// ---------------------------------------------------------------------------------------------
// Small helpers: a seeded RNG, /proc readers, the date.

/// SplitMix64: small, seedable, good enough for pauses and choices.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        let mut r = Rng(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next();
        r
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    fn pause(&mut self, max_ms: u64) -> Duration {
        Duration::from_millis(self.below(max_ms + 1))
    }
}

/// `VmRSS` of this process, KiB (0 where `/proc` is missing).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Open file descriptors of this process (the listing's own descriptor included: a constant).
fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// Alive tasks of the current tokio runtime.
fn alive_tasks() -> u64 {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks() as u64
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the Unix epoch.
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The errors of a run: counted, the first few kept.
#[derive(Default)]
struct Errors {
    count: AtomicU64,
    first: Mutex<Vec<String>>,
}

impl Errors {
    fn push(&self, e: String) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
        if first.len() < KEEP_ERRORS {
            first.push(e);
        }
    }

    fn list(&self) -> Vec<String> {
        self.first.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Churn.

/// A churn client's state as the others see it.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Subscribed and acknowledged, and not leaving: others may take holds.
    open: bool,
    /// The cycle whose name is subscribed.
    cycle: u64,
    /// Messages held for this client and not yet received.
    pending_in: u64,
    /// Messages this client sent that have not arrived yet.
    outstanding_out: u64,
}

#[derive(Default)]
struct ChurnCounters {
    cycles: AtomicU64,
    subscribes: AtomicU64,
    unsubscribes: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    duplicates: AtomicU64,
    misrouted: AtomicU64,
    gave_up: AtomicU64,
}

/// A link kept on purpose by `--inject-leak`: its request side and its reader.
struct Leaked {
    _tx: mpsc::Sender<Vec<u8>>,
    reader: JoinHandle<()>,
}

struct Churn {
    url: String,
    run: String,
    slots: Vec<watch::Sender<Slot>>,
    n: ChurnCounters,
    errors: Errors,
    leaked: Mutex<Vec<Leaked>>,
    timeout: Duration,
    pause_ms: u64,
    inject_leak: bool,
}

/// A churn payload: who sent it to whom, for which of the receiver's cycles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ChurnStamp {
    sender: u32,
    receiver: u32,
    cycle: u64,
    seq: u64,
}

impl ChurnStamp {
    fn encode(&self) -> [u8; 28] {
        let mut b = [0u8; 28];
        b[0..4].copy_from_slice(&CHURN_MAGIC);
        b[4..8].copy_from_slice(&self.sender.to_le_bytes());
        b[8..12].copy_from_slice(&self.receiver.to_le_bytes());
        b[12..20].copy_from_slice(&self.cycle.to_le_bytes());
        b[20..28].copy_from_slice(&self.seq.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<ChurnStamp> {
        if b.get(0..4)? != CHURN_MAGIC {
            return None;
        }
        let u32_at = |i: usize| b.get(i..i + 4)?.try_into().ok().map(u32::from_le_bytes);
        let u64_at = |i: usize| b.get(i..i + 8)?.try_into().ok().map(u64::from_le_bytes);
        Some(ChurnStamp {
            sender: u32_at(4)?,
            receiver: u32_at(8)?,
            cycle: u64_at(12)?,
            seq: u64_at(20)?,
        })
    }
}

/// Signs `msg`'s header with the link's key, if it has one.
fn sign(mac: Option<&slim_proto::mac::LinkMac>, msg: &mut pb::Message) {
    if let (Some(mac), Some(h)) = (mac, slim_proto::validate::header_mut(msg)) {
        mac.sign(h);
    }
}

impl Churn {
    fn name(&self, i: usize, cycle: u64) -> SlimName {
        SlimName::new("soak", &self.run, &format!("c{i}")).with_id(u128::from(cycle) + 1)
    }

    /// Takes a hold on a random open client other than `me`: its index and cycle.
    fn hold(&self, me: usize, rng: &mut Rng) -> Option<(usize, u64)> {
        let n = self.slots.len();
        let start = rng.below(n as u64) as usize;
        for k in 0..n {
            let j = (start + k) % n;
            if j == me {
                continue;
            }
            let mut cycle = None;
            self.slots[j].send_if_modified(|s| {
                if s.open {
                    s.pending_in += 1;
                    cycle = Some(s.cycle);
                    true
                } else {
                    false
                }
            });
            if let Some(c) = cycle {
                return Some((j, c));
            }
        }
        None
    }

    /// Waits until `pred` holds for slot `i`; false after `--timeout`.
    async fn wait_slot(&self, i: usize, pred: impl FnMut(&Slot) -> bool) -> bool {
        let mut rx = self.slots[i].subscribe();
        let held = tokio::time::timeout(self.timeout, rx.wait_for(pred))
            .await
            .is_ok_and(|r| r.is_ok());
        held
    }

    fn open_count(&self) -> u64 {
        self.slots.iter().filter(|s| s.borrow().open).count() as u64
    }
}

/// One churn client: cycles until `stop`.
async fn churn_client(ch: Arc<Churn>, i: usize, seed: u64, mut stop: watch::Receiver<bool>) {
    let mut rng = Rng::new(seed, i as u64 + 1);
    let mut seq = 0u64;
    // Spread the first connects over a second.
    let first = rng.pause(1000);
    tokio::select! {
        _ = tokio::time::sleep(first) => {}
        _ = stop.wait_for(|s| *s) => return,
    }
    let mut cycle = 0u64;
    while !*stop.borrow() {
        if let Err(e) = churn_cycle(&ch, i, cycle, &mut rng, &mut seq).await {
            ch.errors
                .push(format!("churn client {i} cycle {cycle}: {e}"));
            // Whatever was held for this cycle is not coming: stop taking holds.
            ch.slots[i].send_modify(|s| s.open = false);
        }
        cycle += 1;
        let pause = rng.pause(ch.pause_ms);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// connect → subscribe → publish → (receive) → unsubscribe → disconnect.
async fn churn_cycle(
    ch: &Arc<Churn>,
    i: usize,
    cycle: u64,
    rng: &mut Rng,
    seq: &mut u64,
) -> Result<(), String> {
    let name = ch.name(i, cycle);
    let sub_id = cycle + 1;
    let mut link = BenchLink::connect(&ch.url)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    link.subscribe(&name, sub_id)
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    ch.n.subscribes.fetch_add(1, Ordering::Relaxed);
    let BenchLink { tx, rx, mac } = link;
    let (ack_tx, mut acks) = mpsc::unbounded_channel();
    let reader = tokio::spawn(read_churn(ch.clone(), rx, i, cycle, name.hashes(), ack_tx));
    ch.slots[i].send_modify(|s| {
        *s = Slot {
            open: true,
            cycle,
            pending_in: 0,
            outstanding_out: 0,
        }
    });
    let inner = ch.pause_ms / 4;
    tokio::time::sleep(rng.pause(inner)).await;

    // Publish 1..=3 messages, each to a client holding a subscription for it.
    for _ in 0..1 + rng.below(3) {
        let Some((j, jc)) = ch.hold(i, rng) else {
            break;
        };
        ch.slots[i].send_modify(|s| s.outstanding_out += 1);
        ch.n.sent.fetch_add(1, Ordering::Relaxed);
        let stamp = ChurnStamp {
            sender: i as u32,
            receiver: j as u32,
            cycle: jc,
            seq: *seq,
        };
        *seq += 1;
        let t = PublishTemplate::new(&name, &ch.name(j, jc), 1, CHURN_SIZE, mac.as_ref())
            .map_err(|e| format!("publish template: {e}"))?;
        if tx.send(t.render_payload(&stamp.encode())).await.is_err() {
            reader.abort();
            return Err("the request stream closed while publishing".into());
        }
    }
    tokio::time::sleep(rng.pause(inner)).await;

    // Our messages arrive, then nobody may send to us, then what was held for us arrives.
    let mut waited_ok = ch.wait_slot(i, |s| s.outstanding_out == 0).await;
    ch.slots[i].send_modify(|s| s.open = false);
    waited_ok &= ch.wait_slot(i, |s| s.pending_in == 0).await;
    if !waited_ok {
        ch.n.gave_up.fetch_add(1, Ordering::Relaxed);
    }

    if ch.inject_leak && cycle % 4 == 3 {
        // The seeded leak: neither unsubscribe nor disconnect.
        ch.leaked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Leaked { _tx: tx, reader });
        ch.n.cycles.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }

    let mut unsub = messages::unsubscribe(&name, sub_id);
    sign(mac.as_ref(), &mut unsub);
    if tx.send(unsub.encode_to_vec()).await.is_err() {
        reader.abort();
        return Err("the request stream closed before the unsubscribe".into());
    }
    let ack = tokio::time::timeout(ch.timeout, async {
        while let Some(a) = acks.recv().await {
            if a.subscription_id == sub_id {
                return Some(a);
            }
        }
        None
    })
    .await;
    match ack {
        Ok(Some(a)) if a.success => {
            ch.n.unsubscribes.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Some(a)) => {
            reader.abort();
            return Err(format!("unsubscribe {name} refused: {}", a.error));
        }
        Ok(None) => return Err("the stream ended before the unsubscribe ack".into()),
        Err(_) => {
            reader.abort();
            return Err(format!("no unsubscribe ack within {:?}", ch.timeout));
        }
    }

    // Disconnect: end the request stream; the relay then ends the response stream.
    drop(tx);
    let mut reader = reader;
    if tokio::time::timeout(ch.timeout, &mut reader).await.is_err() {
        reader.abort();
        return Err(format!(
            "the relay did not end the stream within {:?} of the disconnect",
            ch.timeout
        ));
    }
    ch.n.cycles.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Reads one churn link until its stream ends: counts the messages for this cycle, hands
/// subscription acks to the cycle.
async fn read_churn(
    ch: Arc<Churn>,
    mut rx: tonic::Streaming<pb::Message>,
    i: usize,
    cycle: u64,
    wants: [u64; 3],
    acks: mpsc::UnboundedSender<pb::SubscriptionAck>,
) {
    let mut seen: HashSet<(u32, u64)> = HashSet::new();
    while let Ok(Some(m)) = rx.message().await {
        if let Some(MessageType::SubscriptionAck(a)) = &m.message_type {
            let _ = acks.send(a.clone());
            continue;
        }
        let Some((dst, blob)) = publish_parts(&m) else {
            continue;
        };
        let Some(st) = ChurnStamp::decode(blob) else {
            continue;
        };
        if dst != wants || st.receiver as usize != i || st.cycle != cycle {
            ch.n.misrouted.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if !seen.insert((st.sender, st.seq)) {
            ch.n.duplicates.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        ch.n.received.fetch_add(1, Ordering::Relaxed);
        ch.slots[i].send_modify(|s| s.pending_in = s.pending_in.saturating_sub(1));
        if let Some(sender) = ch.slots.get(st.sender as usize) {
            sender.send_modify(|s| s.outstanding_out = s.outstanding_out.saturating_sub(1));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Groups.

#[derive(Default)]
struct GroupCounters {
    joins: AtomicU64,
    removals: AtomicU64,
    sent: AtomicU64,
    expected_receipts: AtomicU64,
    receipts: AtomicU64,
    unexpected: AtomicU64,
    delivered: AtomicU64,
    send_failed: AtomicU64,
    session_errors: AtomicU64,
    session_leaks: AtomicU64,
}

/// Everything the group tasks share with the sampler.
struct Groups {
    url: String,
    run: String,
    members: usize,
    timeout: Duration,
    pause_ms: u64,
    n: GroupCounters,
    errors: Errors,
    /// Per group: sessions its apps hold.
    sessions: Vec<AtomicUsize>,
}

/// A group payload: group, sender app, sender's sequence number.
fn group_payload(g: usize, sender: usize, seq: u64) -> Bytes {
    let mut b = Vec::with_capacity(20);
    b.extend_from_slice(&GROUP_MAGIC);
    b.extend_from_slice(&(g as u32).to_le_bytes());
    b.extend_from_slice(&(sender as u32).to_le_bytes());
    b.extend_from_slice(&seq.to_le_bytes());
    Bytes::from(b)
}

fn read_group_payload(b: &[u8]) -> Option<(usize, usize, u64)> {
    if b.get(0..4)? != GROUP_MAGIC {
        return None;
    }
    let g = u32::from_le_bytes(b.get(4..8)?.try_into().ok()?) as usize;
    let s = u32::from_le_bytes(b.get(8..12)?.try_into().ok()?) as usize;
    let q = u64::from_le_bytes(b.get(12..20)?.try_into().ok()?);
    Some((g, s, q))
}

/// One group: a moderator (app 0) and its participant pool (apps 1..).
struct Group {
    g: usize,
    shared: Arc<Groups>,
    apps: Vec<Client>,
    names: Vec<SlimName>,
    events: mpsc::UnboundedReceiver<(usize, ClientEvent)>,
    pumps: Vec<JoinHandle<()>>,
    /// The moderator's session.
    session: SessionId,
    /// Each app's id of the group session while it is in it.
    in_group: Vec<Option<SessionId>>,
    /// Sessions each app's events say it holds.
    open: Vec<BTreeSet<SessionId>>,
    // What the current step waits for.
    joined: Vec<bool>,
    left: Vec<bool>,
    removed: Vec<bool>,
    awaiting: HashMap<(usize, u64), Vec<usize>>,
    undelivered: HashSet<(usize, u32)>,
    fatal: Option<String>,
    rng: Rng,
    seq: u64,
}

fn group_opts() -> SessionOptions {
    SessionOptions {
        mls: true,
        reliable: Some(Reliability {
            interval: Duration::from_secs(1),
            max_retries: 10,
        }),
    }
}

async fn connect_app(url: &str, name: SlimName, timeout: Duration) -> Result<Client, String> {
    let shown = name.to_string();
    Client::connect(ClientOptions {
        tls: None,
        node: url.to_string(),
        name,
        credentials: Credentials::SharedSecret(SECRET.into()),
        auth: None,
        timeout,
        seed: None,
        mls_crypto: None,
    })
    .await
    .map_err(|e| format!("connect {shown}: {e}"))
}

impl Group {
    async fn start(shared: Arc<Groups>, g: usize, seed: u64) -> Result<Group, String> {
        let mut apps = Vec::new();
        let mut names = Vec::new();
        for k in 0..=shared.members {
            let svc = if k == 0 {
                format!("g{g}-mod")
            } else {
                format!("g{g}-p{k}")
            };
            let c = connect_app(
                &shared.url,
                SlimName::new("soak", &shared.run, &svc),
                shared.timeout,
            )
            .await?;
            names.push(c.local_name().clone());
            apps.push(c);
        }
        let (tx, events) = mpsc::unbounded_channel();
        let mut pumps = Vec::new();
        for (k, app) in apps.iter_mut().enumerate() {
            let mut rx = app.take_events();
            let tx = tx.clone();
            pumps.push(tokio::spawn(async move {
                while let Some(ev) = rx.recv().await {
                    if tx.send((k, ev)).is_err() {
                        return;
                    }
                }
            }));
        }
        let channel = SlimName::new("soak", &shared.run, &format!("g{g}-chan"));
        let session = apps[0]
            .create_group(channel, group_opts())
            .await
            .map_err(|e| format!("group {g}: create_group: {e}"))?;
        let n = apps.len();
        let mut in_group = vec![None; n];
        in_group[0] = Some(session);
        Ok(Group {
            g,
            shared,
            apps,
            names,
            events,
            pumps,
            session,
            in_group,
            open: vec![BTreeSet::new(); n],
            joined: vec![false; n],
            left: vec![false; n],
            removed: vec![false; n],
            awaiting: HashMap::new(),
            undelivered: HashSet::new(),
            fatal: None,
            rng: Rng::new(seed, 1_000_000 + g as u64),
            seq: 0,
        })
    }

    fn publish_sessions(&self) {
        let total = self.open.iter().map(BTreeSet::len).sum();
        self.shared.sessions[self.g].store(total, Ordering::Relaxed);
    }

    /// Applies one event to the step's state.
    fn observe(&mut self, k: usize, ev: ClientEvent) {
        if std::env::var_os("SOAK_TRACE").is_some() {
            if let ClientEvent::Session(e) = &ev {
                eprintln!("TRACE g{} app{k}: {e:?}", self.g);
            }
        }
        let n = &self.shared.n;
        match ev {
            ClientEvent::Session(e) => match e {
                Event::SessionOpened { session, .. } => {
                    self.open[k].insert(session);
                    if k != 0 {
                        self.in_group[k] = Some(session);
                    }
                }
                Event::SessionClosed { session, .. } | Event::Removed { session } => {
                    self.open[k].remove(&session);
                    if k != 0 && self.in_group[k] == Some(session) {
                        self.removed[k] = true;
                    }
                }
                Event::MemberJoined { session, member } if k == 0 && session == self.session => {
                    if let Some(p) = self.index_of(&member) {
                        self.joined[p] = true;
                    }
                }
                Event::MemberLeft { session, member } if k == 0 && session == self.session => {
                    if let Some(p) = self.index_of(&member) {
                        self.left[p] = true;
                    }
                }
                Event::Message { payload, .. } => match read_group_payload(&payload) {
                    Some((g, sender, seq)) if g == self.g => {
                        let hit = self.awaiting.get_mut(&(sender, seq)).and_then(|rest| {
                            let at = rest.iter().position(|r| *r == k)?;
                            rest.swap_remove(at);
                            Some(rest.is_empty())
                        });
                        match hit {
                            Some(done) => {
                                n.receipts.fetch_add(1, Ordering::Relaxed);
                                if done {
                                    self.awaiting.remove(&(sender, seq));
                                }
                            }
                            None => {
                                n.unexpected.fetch_add(1, Ordering::Relaxed);
                                self.shared.errors.push(format!(
                                    "group {}: {} received message {seq} of app {sender} again or unexpectedly",
                                    self.g, self.names[k]
                                ));
                            }
                        }
                    }
                    _ => {
                        n.unexpected.fetch_add(1, Ordering::Relaxed);
                    }
                },
                Event::Delivered { message_id, .. }
                    if self.undelivered.remove(&(k, message_id)) =>
                {
                    n.delivered.fetch_add(1, Ordering::Relaxed);
                }
                Event::SendFailed {
                    message_id, peer, ..
                } => {
                    n.send_failed.fetch_add(1, Ordering::Relaxed);
                    self.undelivered.remove(&(k, message_id));
                    self.fatal = Some(format!(
                        "group {}: reliable message {message_id} of {} never acknowledged by {peer}",
                        self.g, self.names[k]
                    ));
                }
                Event::Error { .. } => {
                    n.session_errors.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            },
            ClientEvent::Disconnected { reason } => {
                self.fatal = Some(format!(
                    "group {}: {} lost its link: {reason}",
                    self.g, self.names[k]
                ));
            }
            ClientEvent::Fatal(e) => {
                self.fatal = Some(format!("group {}: {} stopped: {e}", self.g, self.names[k]));
            }
            ClientEvent::Reconnected { .. } | ClientEvent::Problem(_) => {}
        }
        self.publish_sessions();
    }

    fn index_of(&self, member: &SlimName) -> Option<usize> {
        self.names
            .iter()
            .position(|n| n.components() == member.components())
    }

    /// Processes events until `done` holds; an error after `--timeout` or on a fatal event.
    async fn until(&mut self, what: &str, done: impl Fn(&Group) -> bool) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + self.shared.timeout;
        loop {
            if let Some(f) = self.fatal.take() {
                return Err(f);
            }
            if done(self) {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some((k, ev))) => self.observe(k, ev),
                Ok(None) => return Err(format!("group {}: every app stopped", self.g)),
                Err(_) => {
                    return Err(format!(
                        "group {}: {what} not seen within {:?}",
                        self.g, self.shared.timeout
                    ))
                }
            }
        }
    }

    /// Processes whatever events are already queued.
    fn drain(&mut self) {
        while let Ok((k, ev)) = self.events.try_recv() {
            self.observe(k, ev);
        }
    }

    async fn invite(&mut self, p: usize) -> Result<(), String> {
        self.joined[p] = false;
        self.in_group[p] = None;
        self.apps[0]
            .invite(self.session, self.names[p].clone())
            .await
            .map_err(|e| format!("group {}: invite {}: {e}", self.g, self.names[p]))?;
        let what = format!("{} joining", self.names[p]);
        self.until(&what, |s| s.joined[p] && s.in_group[p].is_some())
            .await?;
        self.shared.n.joins.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn remove(&mut self, p: usize) -> Result<(), String> {
        self.left[p] = false;
        self.removed[p] = false;
        self.apps[0]
            .remove(self.session, self.names[p].clone())
            .await
            .map_err(|e| format!("group {}: remove {}: {e}", self.g, self.names[p]))?;
        let what = format!("{} leaving", self.names[p]);
        self.until(&what, |s| s.left[p] && s.removed[p]).await?;
        let gone = self.in_group[p].take();
        self.shared.n.removals.fetch_add(1, Ordering::Relaxed);
        if let Some(s) = gone {
            self.confirm_forgotten(p, s).await;
        }
        Ok(())
    }

    /// Checks that app `k`'s endpoint no longer holds session `s` (bounded): a session it kept
    /// after its end is a client session-table leak.
    async fn confirm_forgotten(&mut self, k: usize, s: SessionId) {
        let deadline = tokio::time::Instant::now() + self.shared.timeout;
        loop {
            match self.apps[k].members(s).await {
                Err(ClientError::Session(SessionError::UnknownSession(_))) => return,
                Err(ClientError::Stopped) => return,
                _ => {}
            }
            if tokio::time::Instant::now() >= deadline {
                self.shared.n.session_leaks.fetch_add(1, Ordering::Relaxed);
                self.shared.errors.push(format!(
                    "group {}: {} still holds session {s} {:?} after it ended (client session leak)",
                    self.g, self.names[k], self.shared.timeout
                ));
                return;
            }
            tokio::time::sleep(POLL).await;
            self.drain();
        }
    }

    /// The moderator and one participant send 1..=3 reliable messages each; every other member
    /// must receive each and the sender must see it acknowledged.
    async fn exchange(&mut self) -> Result<(), String> {
        let members: Vec<usize> = (0..self.apps.len())
            .filter(|k| self.in_group[*k].is_some())
            .collect();
        let mut senders = vec![0];
        let parts: Vec<usize> = members.iter().copied().filter(|k| *k != 0).collect();
        if !parts.is_empty() {
            senders.push(parts[self.rng.below(parts.len() as u64) as usize]);
        }
        for s in senders {
            let Some(session) = self.in_group[s] else {
                continue;
            };
            for _ in 0..1 + self.rng.below(3) {
                let seq = self.seq;
                self.seq += 1;
                let receivers: Vec<usize> = members.iter().copied().filter(|k| *k != s).collect();
                let n = &self.shared.n;
                n.expected_receipts
                    .fetch_add(receivers.len() as u64, Ordering::Relaxed);
                if !receivers.is_empty() {
                    self.awaiting.insert((s, seq), receivers);
                }
                let id = self.apps[s]
                    .publish(session, group_payload(self.g, s, seq))
                    .await
                    .map_err(|e| format!("group {}: publish by {}: {e}", self.g, self.names[s]))?;
                n.sent.fetch_add(1, Ordering::Relaxed);
                self.undelivered.insert((s, id));
            }
        }
        let r = self
            .until("every reliable message received and acknowledged", |g| {
                g.awaiting.is_empty() && g.undelivered.is_empty()
            })
            .await;
        r.map_err(|e| {
            let unacked: Vec<String> = self
                .undelivered
                .iter()
                .map(|(k, id)| format!("{} #{id}", self.names[*k]))
                .collect();
            let missing: Vec<String> = self
                .awaiting
                .iter()
                .map(|((s, q), rest)| {
                    let who: Vec<String> =
                        rest.iter().map(|k| self.names[*k].to_string()).collect();
                    format!("message {q} of {} not at {}", self.names[*s], who.join(" "))
                })
                .collect();
            format!(
                "{e}: unacknowledged [{}], undelivered [{}]",
                unacked.join(", "),
                missing.join("; ")
            )
        })
    }

    /// Invites and removes participants and exchanges messages until `stop`.
    async fn run(&mut self, mut stop: watch::Receiver<bool>) -> Result<(), String> {
        let pool = self.apps.len() - 1;
        while !*stop.borrow() {
            let inside: Vec<usize> = (1..=pool).filter(|p| self.in_group[*p].is_some()).collect();
            let outside: Vec<usize> = (1..=pool).filter(|p| self.in_group[*p].is_none()).collect();
            // At least one participant stays: a reliable message to a group of one is never
            // acknowledged by anyone.
            let invite = inside.len() < 2 || (!outside.is_empty() && self.rng.below(2) == 0);
            if invite {
                let p = outside[self.rng.below(outside.len() as u64) as usize];
                self.invite(p).await?;
            } else {
                let p = inside[self.rng.below(inside.len() as u64) as usize];
                self.remove(p).await?;
            }
            self.exchange().await?;
            let pause = self.rng.pause(self.shared.pause_ms);
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
            self.drain();
            if let Some(f) = self.fatal.take() {
                return Err(f);
            }
        }
        Ok(())
    }

    /// Closes the group for everyone and checks every endpoint forgot it.
    async fn close(&mut self) -> Result<(), String> {
        self.apps[0]
            .close(self.session)
            .await
            .map_err(|e| format!("group {}: close: {e}", self.g))?;
        self.until("every app closing the group", |g| {
            g.open.iter().all(BTreeSet::is_empty)
        })
        .await?;
        for k in 0..self.apps.len() {
            if let Some(s) = self.in_group[k].take() {
                self.confirm_forgotten(k, s).await;
            }
        }
        self.publish_sessions();
        Ok(())
    }
}

async fn group_task(shared: Arc<Groups>, g: usize, seed: u64, stop: watch::Receiver<bool>) {
    let mut group = match Group::start(shared.clone(), g, seed).await {
        Ok(gr) => gr,
        Err(e) => {
            shared.errors.push(e);
            return;
        }
    };
    let ran = group.run(stop).await;
    let closed = group.close().await;
    for e in [ran.err(), closed.err()].into_iter().flatten() {
        shared.errors.push(e);
    }
    shared.sessions[g].store(
        group.open.iter().map(BTreeSet::len).sum(),
        Ordering::Relaxed,
    );
    for p in &group.pumps {
        p.abort();
    }
    // Dropping the apps ends their links.
}

// ---------------------------------------------------------------------------------------------
// The run.

struct Judge {
    metric: &'static str,
    get: fn(&Sample) -> Option<u64>,
    rel: f64,
    abs: f64,
}

/// The series judged for flatness, with their slacks (see `bench/LOAD.md`, *soak*).
fn judges() -> Vec<Judge> {
    fn t(s: &Sample, f: fn(&Tables) -> usize) -> Option<u64> {
        s.tables.as_ref().map(|t| f(t) as u64)
    }
    vec![
        Judge {
            metric: "rss_kib",
            get: |s| Some(s.rss_kib),
            rel: RSS_SLACK,
            abs: 8192.0,
        },
        Judge {
            metric: "fds",
            get: |s| Some(s.fds),
            rel: CONCURRENCY_SLACK,
            abs: 16.0,
        },
        Judge {
            metric: "tasks",
            get: |s| Some(s.tasks),
            rel: CONCURRENCY_SLACK,
            abs: 32.0,
        },
        Judge {
            metric: "relay.links",
            get: |s| t(s, |t| t.links),
            rel: CONCURRENCY_SLACK,
            abs: 8.0,
        },
        Judge {
            metric: "relay.prefixes",
            get: |s| t(s, |t| t.prefixes),
            rel: CONCURRENCY_SLACK,
            abs: 8.0,
        },
        Judge {
            metric: "relay.ids",
            get: |s| t(s, |t| t.ids),
            rel: CONCURRENCY_SLACK,
            abs: 8.0,
        },
        Judge {
            metric: "relay.subscribed_links",
            get: |s| t(s, |t| t.subscribed_links),
            rel: CONCURRENCY_SLACK,
            abs: 8.0,
        },
        Judge {
            metric: "relay.subscriptions",
            get: |s| t(s, |t| t.subscriptions),
            rel: CONCURRENCY_SLACK,
            abs: 8.0,
        },
        Judge {
            metric: "relay.credentials",
            get: |s| t(s, |t| t.credentials),
            rel: CONCURRENCY_SLACK,
            abs: 8.0,
        },
        Judge {
            metric: "client_sessions",
            get: |s| Some(s.client_sessions),
            rel: CONCURRENCY_SLACK,
            abs: 4.0,
        },
    ]
}

/// Least-squares slope of `(x, y)`, per unit of x.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

/// Judges each series: `baseline` is the idle sample, `load` the samples under load (the
/// warm-up included), `after` the sample once every client had gone.
fn trends(
    baseline: &Sample,
    load: &[Sample],
    after: &Sample,
    warmup_s: f64,
) -> Result<Vec<Trend>, String> {
    let judged: Vec<&Sample> = load.iter().filter(|s| s.t_s >= warmup_s).collect();
    if judged.len() < MIN_JUDGED_SAMPLES {
        return Err(format!(
            "only {} samples after the warm-up; at least {MIN_JUDGED_SAMPLES} are needed to judge a trend",
            judged.len()
        ));
    }
    let q = judged.len() / 4;
    let mut out = Vec::new();
    for j in judges() {
        let (Some(start), Some(after_v)) = ((j.get)(baseline), (j.get)(after)) else {
            continue;
        };
        let vals: Vec<u64> = judged.iter().filter_map(|s| (j.get)(s)).collect();
        if vals.len() != judged.len() {
            continue;
        }
        let first_q = vals[..q].iter().copied().max().unwrap_or(0);
        let last_q = vals[vals.len() - q..].iter().copied().max().unwrap_or(0);
        let bound = first_q as f64 * (1.0 + j.rel) + j.abs;
        let points: Vec<(f64, f64)> = judged
            .iter()
            .zip(&vals)
            .map(|(s, v)| (s.t_s / 60.0, *v as f64))
            .collect();
        let all = load.iter().filter_map(|s| (j.get)(s));
        out.push(Trend {
            metric: j.metric.to_string(),
            start,
            end_of_load: vals.last().copied().unwrap_or(0),
            peak: all.chain([start, after_v]).max().unwrap_or(0),
            after: after_v,
            first_quarter_max: first_q,
            last_quarter_max: last_q,
            bound,
            slope_per_min: slope(&points),
            flat: last_q as f64 <= bound,
        });
    }
    Ok(out)
}

/// Runs the soak.
pub async fn run_soak(cfg: &SoakConfig, argv: Vec<String>) -> Result<SoakResult, BenchError> {
    if cfg.clients < 2 {
        return Err(BenchError::Usage(
            "--clients must be at least 2 (each publishes to another)".into(),
        ));
    }
    if cfg.groups > 0 && cfg.members < 2 {
        return Err(BenchError::Usage(
            "--members must be at least 2 with --groups (one joins while another stays)".into(),
        ));
    }
    if cfg.sample_every.is_zero() || cfg.timeout.is_zero() {
        return Err(BenchError::Usage(
            "--sample-every and --timeout must be positive".into(),
        ));
    }
    let judged = cfg.duration.saturating_sub(cfg.warmup).as_secs_f64();
    if judged < cfg.sample_every.as_secs_f64() * MIN_JUDGED_SAMPLES as f64 {
        return Err(BenchError::Usage(format!(
            "--duration minus --warmup must leave at least {MIN_JUDGED_SAMPLES} samples (--sample-every) to judge"
        )));
    }
    let started = Instant::now();
    let started_utc = utc(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()));
    let relay: Option<RelayHandle> = match &cfg.target {
        Some(_) => None,
        None => Some(
            slim_reference::server::spawn(slim_reference::config::ServerConfig {
                listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                ..Default::default()
            })
            .await
            .map_err(|e| BenchError::Usage(format!("embedded relay: {e}")))?,
        ),
    };
    let url = match (&cfg.target, &relay) {
        (Some(t), _) => t.clone(),
        (None, Some(r)) => r.url(),
        (None, None) => unreachable!("a relay is embedded when there is no target"),
    };
    let run = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();

    let churn = Arc::new(Churn {
        url: url.clone(),
        run: run.clone(),
        slots: (0..cfg.clients)
            .map(|_| watch::Sender::new(Slot::default()))
            .collect(),
        n: ChurnCounters::default(),
        errors: Errors::default(),
        leaked: Mutex::new(Vec::new()),
        timeout: cfg.timeout,
        pause_ms: cfg.pause_ms,
        inject_leak: cfg.inject_leak,
    });
    let groups = Arc::new(Groups {
        url: url.clone(),
        run,
        members: cfg.members,
        timeout: cfg.timeout,
        pause_ms: cfg.group_pause_ms,
        n: GroupCounters::default(),
        errors: Errors::default(),
        sessions: (0..cfg.groups).map(|_| AtomicUsize::new(0)).collect(),
    });
    let sample = |t_s: f64| Sample {
        t_s,
        rss_kib: rss_kib(),
        fds: open_fds(),
        tasks: alive_tasks(),
        tables: relay.as_ref().map(Tables::of),
        client_sessions: groups
            .sessions
            .iter()
            .map(|s| s.load(Ordering::Relaxed) as u64)
            .sum(),
        churn_open: churn.open_count(),
        cycles: churn.n.cycles.load(Ordering::Relaxed),
        churn_sent: churn.n.sent.load(Ordering::Relaxed),
        churn_received: churn.n.received.load(Ordering::Relaxed),
        group_delivered: groups.n.delivered.load(Ordering::Relaxed),
    };
    let baseline = sample(0.0);
    let dropped_before = relay.as_ref().map(RelayHandle::dropped_queue_full);

    let (stop_tx, stop) = watch::channel(false);
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    for i in 0..cfg.clients {
        tasks.push(tokio::spawn(churn_client(
            churn.clone(),
            i,
            cfg.seed,
            stop.clone(),
        )));
    }
    for g in 0..cfg.groups {
        tasks.push(tokio::spawn(group_task(
            groups.clone(),
            g,
            cfg.seed,
            stop.clone(),
        )));
    }

    let load_start = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(cfg.sample_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut samples = Vec::new();
    let mut next_report = Duration::from_secs(60);
    loop {
        ticker.tick().await;
        let t = load_start.elapsed();
        samples.push(sample(t.as_secs_f64()));
        if t >= next_report {
            if let Some(s) = samples.last() {
                eprintln!(
                    "soak {:>6.0} s: rss {} KiB, fds {}, tasks {}, cycles {}, churn {}/{} received, group msgs delivered {}, errors {}",
                    s.t_s,
                    s.rss_kib,
                    s.fds,
                    s.tasks,
                    s.cycles,
                    s.churn_received,
                    s.churn_sent,
                    s.group_delivered,
                    churn.errors.count.load(Ordering::Relaxed)
                        + groups.errors.count.load(Ordering::Relaxed)
                );
            }
            next_report += Duration::from_secs(60);
        }
        if t >= cfg.duration {
            break;
        }
    }

    // Stop: every client finishes its cycle or step (each wait bounded by --timeout).
    let _ = stop_tx.send(true);
    let mut failures = Vec::new();
    let stop_bound = cfg.timeout * 4 + Duration::from_secs(10);
    let stop_deadline = tokio::time::Instant::now() + stop_bound;
    let mut stuck = 0;
    for mut t in tasks {
        if tokio::time::timeout_at(stop_deadline, &mut t)
            .await
            .is_err()
        {
            t.abort();
            stuck += 1;
        }
    }
    if stuck > 0 {
        failures.push(format!(
            "{stuck} client tasks did not stop within {stop_bound:?} of the end"
        ));
    }

    // Every client has gone (but the leaked links): the relay must forget them all, and fds,
    // tasks and client sessions must come back to the idle baseline.
    let settled = |s: &Sample| {
        s.tables.is_none_or(|t| t == Tables::default())
            && s.fds <= baseline.fds + AFTER_SLACK
            && s.tasks <= baseline.tasks + AFTER_SLACK
            && s.client_sessions == 0
    };
    let deadline = tokio::time::Instant::now() + DRAIN_BOUND;
    let after = loop {
        let s = sample(load_start.elapsed().as_secs_f64());
        if settled(&s) || tokio::time::Instant::now() >= deadline {
            break s;
        }
        tokio::time::sleep(POLL).await;
    };
    let tables_after = after.tables;
    let leaked = {
        let mut l = churn.leaked.lock().unwrap_or_else(|p| p.into_inner());
        let n = l.len() as u64;
        for k in l.drain(..) {
            k.reader.abort();
        }
        n
    };
    let dropped = relay
        .as_ref()
        .map(RelayHandle::dropped_queue_full)
        .zip(dropped_before)
        .map(|(a, b)| a.saturating_sub(b));
    if let Some(r) = relay {
        let _ = r.shutdown().await;
    }

    let c = &churn.n;
    let churn_totals = ChurnTotals {
        cycles: c.cycles.load(Ordering::Relaxed),
        subscribes: c.subscribes.load(Ordering::Relaxed),
        unsubscribes: c.unsubscribes.load(Ordering::Relaxed),
        sent: c.sent.load(Ordering::Relaxed),
        received: c.received.load(Ordering::Relaxed),
        duplicates: c.duplicates.load(Ordering::Relaxed),
        misrouted: c.misrouted.load(Ordering::Relaxed),
        gave_up: c.gave_up.load(Ordering::Relaxed),
        leaked_links: leaked,
        errors: churn.errors.count.load(Ordering::Relaxed),
    };
    let gn = &groups.n;
    let group_totals = GroupTotals {
        joins: gn.joins.load(Ordering::Relaxed),
        removals: gn.removals.load(Ordering::Relaxed),
        sent: gn.sent.load(Ordering::Relaxed),
        expected_receipts: gn.expected_receipts.load(Ordering::Relaxed),
        receipts: gn.receipts.load(Ordering::Relaxed),
        unexpected: gn.unexpected.load(Ordering::Relaxed),
        delivered: gn.delivered.load(Ordering::Relaxed),
        send_failed: gn.send_failed.load(Ordering::Relaxed),
        session_errors: gn.session_errors.load(Ordering::Relaxed),
        session_leaks: gn.session_leaks.load(Ordering::Relaxed),
        errors: groups.errors.count.load(Ordering::Relaxed),
    };

    // The checks.
    let warmup_s = cfg.warmup.as_secs_f64();
    let trends = match trends(&baseline, &samples, &after, warmup_s) {
        Ok(t) => t,
        Err(e) => {
            failures.push(e);
            Vec::new()
        }
    };
    for t in trends.iter().filter(|t| !t.flat) {
        failures.push(format!(
            "{} grows after the warm-up: last-quarter max {} > first-quarter max {} + slack = {:.0} (slope {:+.1}/min)",
            t.metric, t.last_quarter_max, t.first_quarter_max, t.bound, t.slope_per_min
        ));
    }
    if let Some(t) = &tables_after {
        let left: Vec<String> = t
            .named()
            .iter()
            .filter(|(_, v)| *v > 0)
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        if !left.is_empty() {
            failures.push(format!(
                "route leak: relay tables not empty {DRAIN_BOUND:?} after every client disconnected: {}",
                left.join(", ")
            ));
        }
    }
    let lost = churn_totals
        .sent
        .saturating_sub(churn_totals.received)
        .saturating_sub(dropped.unwrap_or(0));
    if lost > 0 {
        failures.push(format!(
            "{lost} churn messages lost beyond the slow-consumer policy (sent {}, received {}, dropped for a full queue {})",
            churn_totals.sent,
            churn_totals.received,
            dropped.map_or("n/a".into(), |d| d.to_string())
        ));
    }
    if churn_totals.duplicates > 0 || churn_totals.misrouted > 0 {
        failures.push(format!(
            "churn: {} duplicates, {} misrouted messages",
            churn_totals.duplicates, churn_totals.misrouted
        ));
    }
    if churn_totals.errors > 0 {
        failures.push(format!(
            "{} churn client errors, first: {}",
            churn_totals.errors,
            churn.errors.list().first().cloned().unwrap_or_default()
        ));
    }
    if cfg.groups > 0 {
        let g = &group_totals;
        if g.receipts != g.expected_receipts || g.delivered != g.sent || g.send_failed > 0 {
            failures.push(format!(
                "reliable group traffic not fully delivered: {} of {} receipts, {} of {} messages acknowledged, {} send failures",
                g.receipts, g.expected_receipts, g.delivered, g.sent, g.send_failed
            ));
        }
        if g.unexpected > 0 {
            failures.push(format!(
                "{} group messages received twice or unexpectedly",
                g.unexpected
            ));
        }
        if g.session_leaks > 0 {
            failures.push(format!(
                "client session leak: {} ended sessions still held by their endpoint",
                g.session_leaks
            ));
        }
        if g.errors > 0 {
            failures.push(format!(
                "{} group errors, first: {}",
                g.errors,
                groups.errors.list().first().cloned().unwrap_or_default()
            ));
        }
        if g.joins == 0 || g.sent == 0 {
            failures.push("the groups made no progress (no join or no message)".into());
        }
    }
    for (what, now, base) in [
        ("open fds", after.fds, baseline.fds),
        ("tokio tasks", after.tasks, baseline.tasks),
    ] {
        if now > base + AFTER_SLACK {
            failures.push(format!(
                "{what} leak: {now} once every client had gone {DRAIN_BOUND:?}, idle baseline {base} (+{AFTER_SLACK} allowed)"
            ));
        }
    }
    if after.client_sessions > 0 {
        failures.push(format!(
            "client session leak: the group apps still hold {} sessions after closing their groups",
            after.client_sessions
        ));
    }
    if churn_totals.cycles == 0 {
        failures.push("no churn cycle completed".into());
    }
    let mut errors = churn.errors.list();
    errors.extend(groups.errors.list());

    let mut all_samples = Vec::with_capacity(samples.len() + 2);
    all_samples.push(baseline);
    all_samples.extend(samples);
    all_samples.push(after);
    Ok(SoakResult {
        schema: "slim-bench/soak/v1",
        command_line: argv,
        started_utc,
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        target: cfg.target.clone().unwrap_or_else(|| "embedded".into()),
        duration_s: cfg.duration.as_secs_f64(),
        warmup_s,
        sample_every_s: cfg.sample_every.as_secs_f64(),
        clients: cfg.clients,
        groups: cfg.groups,
        members: cfg.members,
        seed: cfg.seed,
        inject_leak: cfg.inject_leak,
        wall_s: started.elapsed().as_secs_f64(),
        churn: churn_totals,
        dropped_queue_full: dropped,
        lost_beyond_policy: lost,
        group: group_totals,
        tables_after,
        verdict: if failures.is_empty() { "pass" } else { "fail" },
        trends,
        errors,
        failures,
        samples: all_samples,
        machine: crate::procstat::Machine::detect(),
    })
}

/// Prints the summary.
pub fn print(out: &mut dyn std::io::Write, r: &SoakResult) -> std::io::Result<()> {
    writeln!(
        out,
        "slim-bench soak ({} build): {}, {} churn clients, {} reliable MLS groups of up to {} participants + moderator; {:.0} s of load (warm-up {:.0} s), sampled every {} s; wall {:.0} s",
        r.build,
        if r.target == "embedded" {
            "embedded slim-relay"
        } else {
            r.target.as_str()
        },
        r.clients,
        r.groups,
        r.members,
        r.duration_s,
        r.warmup_s,
        r.sample_every_s,
        r.wall_s
    )?;
    let c = &r.churn;
    writeln!(
        out,
        "churn: {} cycles (connect, subscribe, publish, unsubscribe, disconnect), {} subscribes, {} unsubscribes acked; messages sent {}, received {}, dropped by the slow-consumer policy {}, lost beyond it {}, duplicates {}, misrouted {}, errors {}{}",
        c.cycles,
        c.subscribes,
        c.unsubscribes,
        c.sent,
        c.received,
        r.dropped_queue_full.map_or("n/a".into(), |d| d.to_string()),
        r.lost_beyond_policy,
        c.duplicates,
        c.misrouted,
        c.errors,
        if c.leaked_links > 0 {
            format!(", {} links leaked on purpose (--inject-leak)", c.leaked_links)
        } else {
            String::new()
        }
    )?;
    let g = &r.group;
    writeln!(
        out,
        "groups: {} joins, {} removals; reliable messages sent {}, acknowledged {}, receipts {} of {}, send failures {}, unexpected {}, client session leaks {}, session error events {}",
        g.joins,
        g.removals,
        g.sent,
        g.delivered,
        g.receipts,
        g.expected_receipts,
        g.send_failed,
        g.unexpected,
        g.session_leaks,
        g.session_errors
    )?;
    writeln!(
        out,
        "{:<24} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}  trend",
        "series", "start", "peak", "end", "after", "Q1 max", "Q4 max", "bound", "slope/min"
    )?;
    for t in &r.trends {
        writeln!(
            out,
            "{:<24} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10.0} {:>+10.2}  {}",
            t.metric,
            t.start,
            t.peak,
            t.end_of_load,
            t.after,
            t.first_quarter_max,
            t.last_quarter_max,
            t.bound,
            t.slope_per_min,
            if t.flat { "flat" } else { "GROWS" }
        )?;
    }
    match &r.tables_after {
        Some(t) if *t == Tables::default() => {
            writeln!(out, "relay tables once every client disconnected: all zero")?
        }
        Some(t) => writeln!(out, "relay tables once every client disconnected: {:?}", t)?,
        None => writeln!(
            out,
            "relay tables: n/a (--target: only client-side checks apply)"
        )?,
    }
    if r.failures.is_empty() {
        writeln!(out, "PASS: flat after warm-up, no route leak, no loss")?;
    } else {
        for f in &r.failures {
            writeln!(out, "FAIL: {f}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("x").is_err());
        assert_eq!(
            default_warmup(Duration::from_secs(60)),
            Duration::from_secs(20)
        );
        assert_eq!(
            default_warmup(Duration::from_secs(3600)),
            Duration::from_secs(1200)
        );
        assert_eq!(
            default_warmup(Duration::from_secs(20)),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn stamps_round_trip() {
        let s = ChurnStamp {
            sender: 3,
            receiver: 99,
            cycle: 12,
            seq: 7,
        };
        assert_eq!(ChurnStamp::decode(&s.encode()), Some(s));
        assert_eq!(ChurnStamp::decode(b"SKC1"), None);
        let p = group_payload(1, 2, 3);
        assert_eq!(read_group_payload(&p), Some((1, 2, 3)));
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_767_225_599), "2025-12-31T23:59:59Z");
    }

    fn sample(t_s: f64, rss: u64) -> Sample {
        Sample {
            t_s,
            rss_kib: rss,
            fds: 10,
            tasks: 10,
            tables: Some(Tables::default()),
            client_sessions: 0,
            churn_open: 0,
            cycles: 0,
            churn_sent: 0,
            churn_received: 0,
            group_delivered: 0,
        }
    }

    #[test]
    fn flat_and_growing_series() {
        let flat: Vec<Sample> = (0..40u32)
            .map(|i| sample(f64::from(i), 50_000 + u64::from(i % 3) * 500))
            .collect();
        let base = sample(-1.0, 10_000);
        let t = trends(&base, &flat, &base, 8.0).expect("enough samples");
        assert!(t.iter().all(|t| t.flat), "{t:?}");
        let growing: Vec<Sample> = (0..40u32)
            .map(|i| sample(f64::from(i), 50_000 + u64::from(i) * 1_000))
            .collect();
        let t = trends(&base, &growing, &base, 8.0).expect("enough samples");
        let rss = t
            .iter()
            .find(|t| t.metric == "rss_kib")
            .expect("rss judged");
        assert!(!rss.flat, "{rss:?}");
        assert!((rss.slope_per_min - 60_000.0).abs() < 1.0, "{rss:?}");
        assert!(trends(&base, &growing[..10], &base, 8.0).is_err());
    }

    #[test]
    fn rng_is_seeded() {
        let mut a = Rng::new(7, 1);
        let mut b = Rng::new(7, 1);
        let mut c = Rng::new(7, 2);
        let (x, y, z) = (a.next(), b.next(), c.next());
        assert_eq!(x, y);
        assert_ne!(x, z);
        assert!((0..1000).all(|_| a.below(5) < 5));
    }

    #[test]
    fn this_process_is_sampled() {
        assert!(rss_kib() > 0);
        assert!(open_fds() >= 3);
    }
}
