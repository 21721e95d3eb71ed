//! What every transport shares in one run: windows, pacing, delivery accounting, the stop
//! condition and the metrics. The transports (`slim`, `nats`) connect their clients and hand the
//! tasks to [`Harness`].
//!
//! Flow control. Every publisher owns a window of messages in flight (sent and not yet delivered
//! to all the receivers it should reach): before sending it takes `copies` permits from its
//! semaphore, and each receiver returns one permit per first delivery. A node therefore never has
//! more than `--window` benchmark messages queued, so a correct node with per-link queues of that
//! size (the reference relay drops for a slow consumer past 1024) is measured without loss, and
//! without `--rate` the publishers run as fast as that window lets them. A permit held by a lost
//! message would shrink the window forever, so a publisher that waits longer than
//! [`WINDOW_STALL`] sends anyway: the loss is reported at the end, the run does not hang.
//!
//! Stop. A coordinator polls the delivered count: the run ends when everything expected has
//! arrived, or when nothing new arrived for `--drain-timeout`; the rest counts as lost.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::error::BenchError;
use crate::pace;
use crate::payload::{Stamp, HEADER_LEN};
use crate::procstat;
use crate::result::{Latency, Metrics, Params, LATE_SEND_US};
use crate::scenario::Scenario;
use crate::transport::port_of;
use crate::wire;

/// How long a publisher waits for window room before sending anyway (see the module docs).
pub const WINDOW_STALL: Duration = Duration::from_secs(1);

/// Highest latency the histogram records; larger samples are clamped to it.
const MAX_LATENCY_US: u64 = 60_000_000;

/// Everything one run needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// `http://host:port` of the node.
    pub url: String,
    /// The scenario parameters.
    pub params: Params,
    /// The node's process, for CPU and peak RSS.
    pub target_pid: Option<u32>,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

/// The shared state of a run's tasks.
struct Shared {
    epoch: Instant,
    /// Distinct expected deliveries so far (progress and stop condition).
    delivered: AtomicU64,
    /// Per publisher: permits for messages in flight.
    windows: Vec<Arc<Semaphore>>,
    /// Earliest send time of a measured message (nanos since `epoch`).
    first_measured_send: AtomicU64,
    /// Latest delivery time of a measured message (nanos since `epoch`).
    last_measured_recv: AtomicU64,
    /// Paced runs: the largest delay of a measured send after its due time (nanos).
    send_lag_max: AtomicU64,
    /// Paced runs: measured sends more than [`LATE_SEND_US`] late.
    late_sends: AtomicU64,
}

impl Shared {
    fn now_nanos(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Notes that a measured paced message left `lag` after its due time.
    fn record_lag(&self, lag: Duration) {
        let nanos = u64::try_from(lag.as_nanos()).unwrap_or(u64::MAX);
        self.send_lag_max.fetch_max(nanos, Ordering::Relaxed);
        if nanos > LATE_SEND_US * 1_000 {
            self.late_sends.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What one receiver counted.
pub(crate) struct Tally {
    hist: Histogram<u64>,
    /// Per publisher, a bit per sequence number seen.
    seen: Vec<Vec<u64>>,
    unique: u64,
    duplicates: u64,
    measured: u64,
    pub(crate) ignored: u64,
}

impl Tally {
    fn new(publishers: usize, total_seq: u64) -> Result<Self, BenchError> {
        let hist = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
            .map_err(|e| BenchError::Usage(format!("histogram: {e}")))?;
        let words = usize::try_from(total_seq.div_ceil(64))
            .map_err(|_| BenchError::Usage("--msgs is too large".into()))?;
        Ok(Self {
            hist,
            seen: vec![vec![0u64; words]; publishers],
            unique: 0,
            duplicates: 0,
            measured: 0,
            ignored: 0,
        })
    }

    /// Marks `(publisher, seq)` seen; true if it is new.
    fn mark(&mut self, publisher: usize, seq: u64) -> bool {
        let (w, b) = ((seq / 64) as usize, seq % 64);
        let Some(word) = self.seen.get_mut(publisher).and_then(|s| s.get_mut(w)) else {
            return false;
        };
        let new = *word & (1 << b) == 0;
        *word |= 1 << b;
        if new {
            self.unique += 1;
        } else {
            self.duplicates += 1;
        }
        new
    }
}

/// Checks the scenario parameters before anything connects.
pub fn check_params(p: &Params) -> Result<(), BenchError> {
    p.scenario
        .check_counts(p.publishers, p.subscribers)
        .map_err(BenchError::Usage)?;
    if p.size < HEADER_LEN {
        return Err(BenchError::Usage(format!(
            "--size must be at least {HEADER_LEN} bytes (publisher, sequence number and timestamp)"
        )));
    }
    if p.msgs == 0 || p.window == 0 {
        return Err(BenchError::Usage(
            "--msgs and --window must be at least 1".into(),
        ));
    }
    if let Some(r) = p.rate {
        if !(r > 0.0 && r.is_finite()) {
            return Err(BenchError::Usage("--rate must be a positive number".into()));
        }
    }
    Ok(())
}

/// What every transport shares in one run: the parameters, the per-publisher windows, the
/// delivery accounting, pacing, the stop condition and the final metrics. A transport connects
/// its clients and hands them to [`Harness::launch`]: one receiver task per receiving client
/// (built on [`Counter::accept`] and [`Counter::count`]), one publisher per sending client
/// ([`Harness::spawn_publisher`]), then [`Harness::finish`].
pub(crate) struct Harness {
    /// Unique per run; every name or subject of the run contains it.
    pub(crate) run_id: String,
    /// The scenario parameters.
    pub(crate) params: Params,
    /// Warm-up plus measured messages per publisher.
    pub(crate) total_seq: u64,
    /// Deliveries one publish should produce.
    pub(crate) copies: u32,
    /// Deliveries a correct node produces in the whole run.
    pub(crate) expected: u64,
    shared: Arc<Shared>,
    done_tx: watch::Sender<bool>,
    done_rx: watch::Receiver<bool>,
    target_pid: Option<u32>,
    progress: bool,
    clock: Option<Clock>,
    /// The target's port, whose client sockets are sampled for wire bytes.
    port: Option<u16>,
    /// Broker confirmations, for transports whose publishes are acknowledged.
    confirms: Option<Confirms>,
}

/// Publisher-side confirmations (MQTT QoS 1/2, AMQP publisher confirms, JetStream and Kafka
/// acks): how many publishes the broker acknowledged. At the end of a run every publish not
/// acknowledged counts as `unconfirmed`, refused and never answered alike.
#[derive(Clone, Default)]
pub(crate) struct Confirms {
    acked: Arc<AtomicU64>,
}

impl Confirms {
    /// Notes `n` publishes the broker acknowledged.
    pub(crate) fn ack(&self, n: u64) {
        self.acked.fetch_add(n, Ordering::Relaxed);
    }

    fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }
}

/// When the measured part started, and the CPU counters at that moment.
struct Clock {
    started: Instant,
    target_cpu: Option<f64>,
    self_cpu: Option<f64>,
    wire: Option<wire::Sample>,
}

impl Harness {
    /// Validates the parameters and prepares the shared state.
    pub(crate) fn new(cfg: &RunConfig) -> Result<Self, BenchError> {
        let p = &cfg.params;
        check_params(p)?;
        let total_seq = p.warmup + p.msgs;
        let copies = p.scenario.copies(p.subscribers);
        let per_pub_window = (p.window / p.publishers).max(1);
        let shared = Arc::new(Shared {
            epoch: Instant::now(),
            delivered: AtomicU64::new(0),
            windows: (0..p.publishers)
                .map(|_| Arc::new(Semaphore::new(per_pub_window * copies as usize)))
                .collect(),
            first_measured_send: AtomicU64::new(u64::MAX),
            last_measured_recv: AtomicU64::new(0),
            send_lag_max: AtomicU64::new(0),
            late_sends: AtomicU64::new(0),
        });
        let (done_tx, done_rx) = watch::channel(false);
        Ok(Self {
            run_id: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
            params: p.clone(),
            total_seq,
            copies,
            expected: p.scenario.expected(total_seq, p.publishers, p.subscribers),
            shared,
            done_tx,
            done_rx,
            target_pid: cfg.target_pid,
            progress: cfg.progress,
            clock: None,
            port: port_of(&cfg.url),
            confirms: None,
        })
    }

    /// Publishes of this run are acknowledged by the broker: the returned handle counts the
    /// acknowledgements, and the metrics report `confirmed` and `unconfirmed`.
    pub(crate) fn confirms(&mut self) -> Confirms {
        self.confirms.get_or_insert_with(Confirms::default).clone()
    }

    /// Messages the publishers send in the whole run (warm-up included).
    pub(crate) fn published(&self) -> u64 {
        self.total_seq * self.params.publishers as u64
    }

    /// Fires once when the run is over; receivers stop on it.
    pub(crate) fn done(&self) -> watch::Receiver<bool> {
        self.done_rx.clone()
    }

    /// An empty tally; `counting` receivers keep a bit per sequence number and publisher.
    pub(crate) fn tally(&self, counting: bool) -> Result<Tally, BenchError> {
        Tally::new(
            if counting { self.params.publishers } else { 0 },
            self.total_seq,
        )
    }

    /// A read-only view for receiver tasks.
    pub(crate) fn counter(&self) -> Counter {
        Counter {
            shared: self.shared.clone(),
            warmup: self.params.warmup,
            publishers: self.params.publishers,
            total_seq: self.total_seq,
        }
    }

    /// Starts the clock and the CPU counters: call it once every client is connected and
    /// subscribed, right before spawning the tasks.
    pub(crate) fn start(&mut self) {
        self.clock = Some(Clock {
            target_cpu: self.target_pid.and_then(procstat::cpu_seconds),
            self_cpu: procstat::cpu_seconds(std::process::id()),
            wire: self.port.and_then(wire::Sample::take),
            started: Instant::now(),
        });
    }

    /// Spawns publisher `i`: for each sequence number it takes window permits, waits for its
    /// pace, and hands the stamp to `sink`.
    pub(crate) fn spawn_publisher<S: StampSink>(&self, i: usize, mut sink: S) -> JoinHandle<()> {
        let shared = self.shared.clone();
        let warmup = self.params.warmup;
        let total_seq = self.total_seq;
        let copies = self.copies;
        let per_pub_rate = self.params.rate.map(|r| r / self.params.publishers as f64);
        let pacing = self.params.pacing.unwrap_or_default();
        let mut done = self.done_rx.clone();
        tokio::spawn(async move {
            let Some(window) = shared.windows.get(i).cloned() else {
                return;
            };
            let t0 = tokio::time::Instant::now();
            for seq in 0..total_seq {
                if let Ok(Ok(permit)) =
                    tokio::time::timeout(WINDOW_STALL, window.acquire_many(copies)).await
                {
                    permit.forget();
                }
                if let Some(rate) = per_pub_rate {
                    let due = pace::due(t0, seq, rate);
                    pacing.wait_until(due).await;
                    if seq >= warmup {
                        shared
                            .record_lag(tokio::time::Instant::now().saturating_duration_since(due));
                    }
                }
                let sent_nanos = shared.now_nanos();
                if seq == warmup {
                    shared
                        .first_measured_send
                        .fetch_min(sent_nanos, Ordering::Relaxed);
                }
                let stamp = Stamp {
                    publisher: i as u32,
                    seq,
                    sent_nanos,
                };
                if !sink.send(stamp).await {
                    return;
                }
            }
            sink.finish().await;
            // The sink (and its connection) lives until the run is over: the last sample of the
            // socket counters is taken before that, and a closed socket takes its counters along.
            let _ = done.changed().await;
        })
    }

    /// Waits until everything expected arrived or nothing new arrived for the drain timeout,
    /// stops the tasks, and computes the metrics.
    pub(crate) async fn finish(
        self,
        publisher_tasks: Vec<JoinHandle<()>>,
        receiver_tasks: Vec<JoinHandle<Result<Tally, BenchError>>>,
    ) -> Result<Metrics, BenchError> {
        let p = &self.params;
        let shared = &self.shared;
        let expected = self.expected;
        let bar = if self.progress {
            let bar = ProgressBar::with_draw_target(Some(expected), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} {msg} [{bar:40}] {pos}/{len} deliveries {per_sec} eta {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(p.scenario.as_str().to_string());
            bar
        } else {
            ProgressBar::hidden()
        };
        let drain = Duration::from_secs_f64(p.drain_timeout_s.max(0.1));
        let mut last = 0;
        let mut last_progress = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = shared.delivered.load(Ordering::Relaxed);
            bar.set_position(now);
            if now >= expected {
                break;
            }
            if now != last {
                last = now;
                last_progress = Instant::now();
            } else if last_progress.elapsed() >= drain {
                break;
            }
        }
        bar.finish_and_clear();
        // Publishes still waiting for their acknowledgement get the drain timeout to receive it.
        if let Some(c) = &self.confirms {
            let published = self.published();
            let since = Instant::now();
            while c.acked() < published && since.elapsed() < drain {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // Sampled while every connection is still open (the counters go with the socket).
        let wire_after = self.port.and_then(wire::Sample::take);
        let wall_s = self
            .clock
            .as_ref()
            .map_or(0.0, |c| c.started.elapsed().as_secs_f64());
        let _ = self.done_tx.send(true);
        for t in publisher_tasks {
            t.abort();
        }
        let mut tallies = Vec::new();
        for t in receiver_tasks {
            match t.await {
                Ok(Ok(tally)) => tallies.push(tally),
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(BenchError::Protocol(format!("a receiver task failed: {e}"))),
            }
        }
        let cpu_after = self.target_pid.and_then(procstat::cpu_seconds);
        let self_cpu_after = procstat::cpu_seconds(std::process::id());

        let mut m = merge(p.scenario, tallies, expected)?;
        m.wall_s = wall_s;
        let first = shared.first_measured_send.load(Ordering::Relaxed);
        let last = shared.last_measured_recv.load(Ordering::Relaxed);
        m.duration_s = if first != u64::MAX && last > first {
            (last - first) as f64 / 1e9
        } else {
            0.0
        };
        if m.duration_s > 0.0 {
            m.msgs_per_s = m.measured as f64 / m.duration_s;
            m.bytes_per_s = m.msgs_per_s * p.size as f64;
        }
        let clock = self.clock.as_ref();
        m.target_cpu_s = clock
            .and_then(|c| c.target_cpu)
            .zip(cpu_after)
            .map(|(a, b)| b - a);
        m.target_peak_rss_kib = self.target_pid.and_then(procstat::peak_rss_kib);
        m.client_cpu_s = clock
            .and_then(|c| c.self_cpu)
            .zip(self_cpu_after)
            .map(|(a, b)| b - a);
        if let (Some(before), Some(after)) = (clock.and_then(|c| c.wire.as_ref()), &wire_after) {
            let d = before.delta(after);
            m.wire_up_bytes = Some(d.up);
            m.wire_down_bytes = Some(d.down);
        }
        if let Some(c) = &self.confirms {
            let acked = c.acked().min(self.published());
            m.confirmed = Some(acked);
            m.unconfirmed = Some(self.published() - acked);
        }
        m.published = self.published();
        if p.rate.is_some() {
            m.send_lag_max_us = Some(shared.send_lag_max.load(Ordering::Relaxed) as f64 / 1e3);
            m.late_sends = Some(shared.late_sends.load(Ordering::Relaxed));
        }
        Ok(m)
    }
}

/// What a receiving client of a broker transport does with the benchmark messages it gets.
pub(crate) enum Role<E> {
    /// Counts them (subscribers; requesters counting their echoes, `only` their own).
    Count {
        /// The publisher whose echoes a requester counts; `None` counts every publisher's.
        only: Option<u32>,
    },
    /// Echoes each one back to its requester (`reqrep` responders), with what that takes.
    Echo(E),
}

impl<E> Role<E> {
    /// Whether the receiver counts deliveries (and so needs a full tally).
    pub(crate) fn counts(&self) -> bool {
        matches!(self, Role::Count { .. })
    }

    /// Whether a counting receiver should skip `stamp` (a requester sees only its own echoes).
    pub(crate) fn skips(&self, stamp: &Stamp) -> bool {
        matches!(self, Role::Count { only: Some(o) } if *o != stamp.publisher)
    }
}

impl Harness {
    /// Starts the clock, spawns `receive(receiver, tally, counter, done)` for every receiver (a
    /// full tally for those marked counting) and a publisher for every sink, then waits for the
    /// end of the run ([`Harness::finish`]). Call it once every client is connected and
    /// subscribed.
    pub(crate) async fn launch<R, S, F, Fut>(
        mut self,
        receivers: Vec<(R, bool)>,
        sinks: Vec<S>,
        receive: F,
    ) -> Result<Metrics, BenchError>
    where
        S: StampSink,
        F: Fn(R, Tally, Counter, watch::Receiver<bool>) -> Fut,
        Fut: Future<Output = Result<Tally, BenchError>> + Send + 'static,
    {
        self.start();
        let mut receiver_tasks = Vec::new();
        for (r, counting) in receivers {
            let tally = self.tally(counting)?;
            receiver_tasks.push(tokio::spawn(receive(r, tally, self.counter(), self.done())));
        }
        let publisher_tasks = sinks
            .into_iter()
            .enumerate()
            .map(|(i, sink)| self.spawn_publisher(i, sink))
            .collect();
        self.finish(publisher_tasks, receiver_tasks).await
    }
}

/// A publishing client as the publisher loop sees it.
pub(crate) trait StampSink: Send + 'static {
    /// Sends one message carrying `stamp`; `false` when the client is gone.
    fn send(&mut self, stamp: Stamp) -> impl Future<Output = bool> + Send;

    /// Called once after the last message: pushes out whatever the client still buffers, since
    /// the sink is dropped next.
    fn finish(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// What a receiver task needs to account for a delivery.
#[derive(Clone)]
pub(crate) struct Counter {
    shared: Arc<Shared>,
    warmup: u64,
    publishers: usize,
    total_seq: u64,
}

impl Counter {
    /// The stamp of a benchmark payload of this run; `None` for anything else.
    pub(crate) fn accept(&self, payload: &[u8]) -> Option<Stamp> {
        Stamp::read(payload)
            .filter(|s| (s.publisher as usize) < self.publishers && s.seq < self.total_seq)
    }

    /// Counts one delivery of `stamp`: marks it seen (a second sighting is a duplicate), returns
    /// a window permit to its publisher, and records the latency of a measured message.
    pub(crate) fn count(&self, tally: &mut Tally, stamp: Stamp) {
        let shared = &self.shared;
        let now = shared.now_nanos();
        if tally.mark(stamp.publisher as usize, stamp.seq) {
            shared.delivered.fetch_add(1, Ordering::Relaxed);
            if let Some(w) = shared.windows.get(stamp.publisher as usize) {
                w.add_permits(1);
            }
            if stamp.seq >= self.warmup {
                tally.measured += 1;
                shared.last_measured_recv.fetch_max(now, Ordering::Relaxed);
                let us = now.saturating_sub(stamp.sent_nanos) / 1000;
                tally.hist.saturating_record(us.clamp(1, MAX_LATENCY_US));
            }
        }
    }
}

/// Adds up the receivers' tallies. For anycast the receivers share one expectation, so their
/// sets are united and a message seen by two receivers is a duplicate.
fn merge(scenario: Scenario, tallies: Vec<Tally>, expected: u64) -> Result<Metrics, BenchError> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3)
        .map_err(|e| BenchError::Usage(format!("histogram: {e}")))?;
    let mut m = Metrics {
        expected,
        ..Default::default()
    };
    let mut union: Vec<Vec<u64>> = Vec::new();
    let mut received = 0u64;
    for t in &tallies {
        hist.add(&t.hist)
            .map_err(|e| BenchError::Usage(format!("histogram: {e}")))?;
        m.ignored += t.ignored;
        m.duplicates += t.duplicates;
        m.measured += t.measured;
        m.delivered += t.unique;
        received += t.unique;
        if scenario == Scenario::Anycast {
            if union.len() < t.seen.len() {
                union.resize(t.seen.len(), Vec::new());
            }
            for (u, s) in union.iter_mut().zip(&t.seen) {
                if u.len() < s.len() {
                    u.resize(s.len(), 0);
                }
                for (a, b) in u.iter_mut().zip(s) {
                    *a |= *b;
                }
            }
        }
    }
    if scenario == Scenario::Anycast {
        let distinct: u64 = union
            .iter()
            .flatten()
            .map(|w| u64::from(w.count_ones()))
            .sum();
        m.duplicates += received - distinct;
        // Measured counts stay per delivery; a cross-receiver duplicate is not a delivery.
        m.measured = m.measured.saturating_sub(received - distinct);
        m.delivered = distinct;
    }
    m.lost = expected.saturating_sub(m.delivered);
    if !hist.is_empty() {
        m.latency_us = Latency {
            p50: hist.value_at_quantile(0.50) as f64,
            p90: hist.value_at_quantile(0.90) as f64,
            p99: hist.value_at_quantile(0.99) as f64,
            p999: hist.value_at_quantile(0.999) as f64,
            max: hist.max() as f64,
            mean: hist.mean(),
        };
    }
    Ok(m)
}
