//! A seeded, simulated network for tests of sans-IO endpoints.
//!
//! Packets travel between endpoints named by any `A: Ord + Clone`. Each packet sent on a link may
//! be lost, duplicated, and is delayed by `delay + uniform(0, jitter)` (a jitter larger than the
//! gap between two sends reorders them). In-flight packets sit in a priority queue ordered by
//! delivery time, then by send order; the test's clock jumps straight to
//! [`SimNet::next_event_time`], so thousands of simulated seconds cost milliseconds and nothing
//! sleeps. The same seed gives the same run, packet for packet.
//!
//! The network only moves packets: the test loop owns the clock and the endpoints, and does
//! `deliver_due(now)` → feed the endpoints → `send` what they output → `handle_timeout(now)` →
//! `now = min(next_event_time, endpoints' poll_timeout)`.
//!
//! This is the one simulator of the session tests. Two harnesses drive it:
//! [`reliable::Group`] (one reliable sender and its receivers, for `reliable/tests.rs`) and
//! [`endpoints::World`] (whole endpoints and a toy node, for `tests.rs` and for the session test
//! vectors of `vectors.rs`, which is why this module is compiled outside tests too).

// Outside tests only the vector generator uses this module, and not all of it.
#![cfg_attr(not(test), allow(dead_code))]

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::{Duration, Instant};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How one direction of a link treats packets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkProfile {
    /// Probability (0..=1) that a packet is dropped.
    pub loss: f64,
    /// Probability (0..=1) that a delivered packet arrives twice (each copy delayed on its own).
    pub duplicate: f64,
    /// The fixed part of the delay.
    pub delay: Duration,
    /// The random part of the delay: uniform in `0..=jitter`.
    pub jitter: Duration,
}

impl LinkProfile {
    /// A perfect link with a fixed delay.
    pub fn perfect(delay: Duration) -> Self {
        LinkProfile {
            loss: 0.0,
            duplicate: 0.0,
            delay,
            jitter: Duration::ZERO,
        }
    }

    /// A link that drops everything.
    pub fn dead() -> Self {
        LinkProfile {
            loss: 1.0,
            ..LinkProfile::perfect(Duration::ZERO)
        }
    }
}

/// A packet that arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery<A, M> {
    /// The endpoint that sent it.
    pub from: A,
    /// The endpoint it is for.
    pub to: A,
    /// The packet.
    pub packet: M,
    /// Which [`SimNet::send`] it came from (1 for the first send; a duplicate shares its
    /// original's number).
    pub seq: u64,
}

/// What the network did with one sent packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Dropped.
    Lost,
    /// In flight, once.
    Delivered,
    /// In flight twice (each copy delayed on its own).
    Duplicated,
}

/// What happened on the network so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Calls to [`SimNet::send`].
    pub sent: u64,
    /// Packets dropped.
    pub lost: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Packets handed out by [`SimNet::pop_due`] / [`SimNet::deliver_due`].
    pub delivered: u64,
}

/// A packet in flight.
struct InFlight<A, M> {
    at: Instant,
    order: u64,
    delivery: Delivery<A, M>,
}

impl<A, M> PartialEq for InFlight<A, M> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl<A, M> Eq for InFlight<A, M> {}
impl<A, M> PartialOrd for InFlight<A, M> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<A, M> Ord for InFlight<A, M> {
    /// Reversed, so the `BinaryHeap` (a max-heap) pops the earliest packet first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.order).cmp(&(self.at, self.order))
    }
}

/// The simulated network. See the module documentation.
pub struct SimNet<A, M> {
    rng: ChaCha8Rng,
    default: LinkProfile,
    links: BTreeMap<(A, A), LinkProfile>,
    queue: BinaryHeap<InFlight<A, M>>,
    order: u64,
    stats: SimStats,
}

impl<A: Ord + Clone, M: Clone> SimNet<A, M> {
    /// A network where every link behaves as `default`, drawing randomness from `seed`.
    pub fn new(seed: u64, default: LinkProfile) -> Self {
        SimNet {
            rng: ChaCha8Rng::seed_from_u64(seed),
            default,
            links: BTreeMap::new(),
            queue: BinaryHeap::new(),
            order: 0,
            stats: SimStats::default(),
        }
    }

    /// Make the direction `from → to` behave as `profile`.
    pub fn set_link(&mut self, from: A, to: A, profile: LinkProfile) {
        self.links.insert((from, to), profile);
    }

    /// Send `packet` from `from` to `to` at `now`.
    pub fn send(&mut self, from: A, to: A, packet: M, now: Instant) {
        self.send_traced(from, to, packet, now);
    }

    /// [`SimNet::send`], telling the send's number (its deliveries carry it as
    /// [`Delivery::seq`]) and what the network did with the packet.
    pub fn send_traced(&mut self, from: A, to: A, packet: M, now: Instant) -> (u64, Fate) {
        self.stats.sent += 1;
        let seq = self.stats.sent;
        let profile = self
            .links
            .get(&(from.clone(), to.clone()))
            .copied()
            .unwrap_or(self.default);
        if self.chance(profile.loss) {
            self.stats.lost += 1;
            return (seq, Fate::Lost);
        }
        let mut fate = Fate::Delivered;
        if self.chance(profile.duplicate) {
            self.stats.duplicated += 1;
            fate = Fate::Duplicated;
            let copy = Delivery {
                from: from.clone(),
                to: to.clone(),
                packet: packet.clone(),
                seq,
            };
            self.enqueue(copy, &profile, now);
        }
        let original = Delivery {
            from,
            to,
            packet,
            seq,
        };
        self.enqueue(original, &profile, now);
        (seq, fate)
    }

    /// When the next packet arrives, if any is in flight.
    pub fn next_event_time(&self) -> Option<Instant> {
        self.queue.peek().map(|p| p.at)
    }

    /// The next packet due at `now` (arrival time ≤ `now`), earliest first.
    pub fn pop_due(&mut self, now: Instant) -> Option<Delivery<A, M>> {
        if self.queue.peek()?.at > now {
            return None;
        }
        self.stats.delivered += 1;
        self.queue.pop().map(|p| p.delivery)
    }

    /// Every packet due at `now`, earliest first.
    pub fn deliver_due(&mut self, now: Instant) -> Vec<Delivery<A, M>> {
        std::iter::from_fn(|| self.pop_due(now)).collect()
    }

    /// How many packets are in flight.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// The counters so far.
    pub fn stats(&self) -> SimStats {
        self.stats
    }

    fn enqueue(&mut self, delivery: Delivery<A, M>, profile: &LinkProfile, now: Instant) {
        let jitter = profile.jitter.mul_f64(self.uniform());
        self.order += 1;
        self.queue.push(InFlight {
            at: now + profile.delay + jitter,
            order: self.order,
            delivery,
        });
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.uniform() < p
    }

    /// Uniform in `[0, 1)`, from the top 53 bits of a `u64`.
    fn uniform(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One [`ReliableSender`] and its [`ReliableReceiver`]s over a [`SimNet`], driven by a paced
/// application, with everything they did recorded (the harness of the reliable-delivery tests).
#[cfg(test)]
pub mod reliable {
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    use bytes::Bytes;

    use super::{Delivery, LinkProfile, SimNet};
    use crate::session::reliable::{
        Lost, ReceiverOutput, ReliableReceiver, ReliableSender, RtxAnswer, SenderOutput,
        WindowFull, FIRST_MESSAGE_ID,
    };

    pub type Peer = u16;
    pub const SENDER: Peer = 0;

    #[derive(Debug, Clone)]
    pub enum Packet {
        Msg { id: u32, payload: Bytes },
        Ack { id: u32 },
        RtxRequest { id: u32 },
        RtxReply { id: u32, reply: Result<Bytes, Lost> },
    }

    #[derive(Debug, Clone, PartialEq)]
    pub enum Outcome {
        Delivered,
        Failed(Vec<Peer>, Instant),
    }

    pub fn payload_for(id: u32) -> Bytes {
        Bytes::from(id.to_be_bytes().to_vec())
    }

    /// How the application sends: `total` messages, `burst` at a time every `pace`.
    #[derive(Debug, Clone, Copy)]
    pub struct Traffic {
        pub total: u32,
        pub burst: u32,
        pub pace: Duration,
    }

    /// One sender and its receivers over a [`SimNet`], with everything they did recorded.
    pub struct Group {
        pub net: SimNet<Peer, Packet>,
        pub t0: Instant,
        pub now: Instant,
        pub sender: ReliableSender<Peer>,
        pub receivers: BTreeMap<Peer, ReliableReceiver<Peer>>,
        pub traffic: Traffic,
        pub sent: u32,
        pub sent_at: BTreeMap<u32, Instant>,
        pub outcome: BTreeMap<u32, Outcome>,
        pub delivered: BTreeMap<Peer, Vec<u32>>,
        pub not_delivered: Vec<ReceiverOutput<Peer>>,
        pub copies_to: BTreeMap<(Peer, u32), u32>,
        pub steps: u64,
    }

    pub struct Setup {
        pub seed: u64,
        pub link: LinkProfile,
        pub interval: Duration,
        pub max_retries: u32,
        pub window: usize,
        pub receivers: Peer,
        pub traffic: Traffic,
    }

    impl Group {
        pub fn new(setup: &Setup) -> Self {
            let t0 = Instant::now();
            let mut sender = ReliableSender::new(setup.interval, setup.max_retries, setup.window);
            let mut receivers = BTreeMap::new();
            for p in 1..=setup.receivers {
                sender.add_receiver(p, t0);
                receivers.insert(p, Self::receiver(setup).starting_at(FIRST_MESSAGE_ID));
            }
            Group {
                net: SimNet::new(setup.seed, setup.link),
                t0,
                now: t0,
                sender,
                receivers,
                traffic: setup.traffic,
                sent: 0,
                sent_at: BTreeMap::new(),
                outcome: BTreeMap::new(),
                delivered: BTreeMap::new(),
                not_delivered: Vec::new(),
                copies_to: BTreeMap::new(),
                steps: 0,
            }
        }

        pub fn receiver(setup: &Setup) -> ReliableReceiver<Peer> {
            ReliableReceiver::new(setup.interval, setup.max_retries)
        }

        /// When the application's next message is due.
        pub fn next_send_time(&self) -> Option<Instant> {
            let t = self.traffic;
            (self.sent < t.total).then(|| self.t0 + t.pace * (self.sent / t.burst))
        }

        pub fn app_send(&mut self) {
            while let Some(at) = self.next_send_time() {
                if at > self.now {
                    return;
                }
                let id = self.sender.next_id();
                match self.sender.send(payload_for(id), self.now) {
                    Ok(sent) => {
                        assert_eq!(sent, id);
                        self.sent += 1;
                        self.sent_at.insert(id, self.now);
                    }
                    Err(WindowFull { .. }) => return,
                }
            }
        }

        /// Turn every pending output into packets and records.
        pub fn pump(&mut self) {
            while let Some(out) = self.sender.poll_output() {
                match out {
                    SenderOutput::Transmit {
                        id, to, payload, ..
                    } => {
                        let targets: Vec<Peer> = match to {
                            None => self.sender.receivers().copied().collect(),
                            Some(p) => vec![p],
                        };
                        for p in targets {
                            *self.copies_to.entry((p, id)).or_default() += 1;
                            let packet = Packet::Msg {
                                id,
                                payload: payload.clone(),
                            };
                            self.net.send(SENDER, p, packet, self.now);
                        }
                    }
                    SenderOutput::Delivered { id } => {
                        let old = self.outcome.insert(id, Outcome::Delivered);
                        assert_eq!(old, None, "{id} resolved twice");
                    }
                    SenderOutput::Failed { id, peers } => {
                        let old = self.outcome.insert(id, Outcome::Failed(peers, self.now));
                        assert_eq!(old, None, "{id} resolved twice");
                    }
                }
            }
            for (&me, r) in &mut self.receivers {
                while let Some(out) = r.poll_output() {
                    match out {
                        ReceiverOutput::Ack { to, id } => {
                            self.net.send(me, to, Packet::Ack { id }, self.now)
                        }
                        ReceiverOutput::RtxRequest { to, id } => {
                            self.net.send(me, to, Packet::RtxRequest { id }, self.now)
                        }
                        ReceiverOutput::Deliver { from, id, payload } => {
                            assert_eq!(from, SENDER);
                            assert_eq!(payload, payload_for(id), "payload of {id}");
                            self.delivered.entry(me).or_default().push(id);
                        }
                        other => self.not_delivered.push(other),
                    }
                }
            }
        }

        pub fn dispatch(&mut self, d: Delivery<Peer, Packet>) {
            let now = self.now;
            if d.to == SENDER {
                match d.packet {
                    Packet::Ack { id } => self.sender.on_ack(&d.from, id),
                    Packet::RtxRequest { id } => {
                        let reply = match self.sender.on_rtx_request(id) {
                            RtxAnswer::Resend(payload) => Ok(payload),
                            RtxAnswer::Lost => Err(Lost),
                        };
                        self.net
                            .send(SENDER, d.from, Packet::RtxReply { id, reply }, now);
                    }
                    other => panic!("the sender got {other:?}"),
                }
            } else if let Some(r) = self.receivers.get_mut(&d.to) {
                match d.packet {
                    Packet::Msg { id, payload } => r.on_message(&d.from, id, payload, now),
                    Packet::RtxReply { id, reply } => r.on_rtx_reply(&d.from, id, reply, now),
                    other => panic!("a receiver got {other:?}"),
                }
            } // else: for a receiver that left
        }

        /// Advance to the next event, or to `limit`. False when there is nothing left to do
        /// (or `limit` is reached).
        pub fn step(&mut self, limit: Option<Instant>) -> bool {
            self.steps += 1;
            assert!(self.steps < 50_000_000, "runaway simulation");
            self.app_send();
            self.pump();
            let window_open = self.sender.in_flight() < self.sender.window();
            let mut next = [
                self.net.next_event_time(),
                self.sender.poll_timeout(),
                self.next_send_time().filter(|_| window_open),
            ]
            .into_iter()
            .flatten()
            .chain(self.receivers.values_mut().filter_map(|r| r.poll_timeout()))
            .min();
            if let (Some(l), Some(n)) = (limit, next) {
                if n > l {
                    next = None;
                }
            }
            let Some(t) = next else {
                if let Some(l) = limit {
                    self.now = self.now.max(l);
                }
                return false;
            };
            assert!(t >= self.now, "time goes forward");
            self.now = t;
            while let Some(d) = self.net.pop_due(t) {
                self.dispatch(d);
            }
            self.sender.handle_timeout(t);
            for r in self.receivers.values_mut() {
                r.handle_timeout(t);
            }
            true
        }

        pub fn run(&mut self) {
            while self.step(None) {}
            self.pump();
        }

        pub fn run_until(&mut self, limit: Instant) {
            while self.step(Some(limit)) {}
            self.pump();
        }

        pub fn simulated(&self) -> Duration {
            self.now - self.t0
        }

        pub fn delivered_to(&self, p: Peer) -> &[u32] {
            self.delivered.get(&p).map(Vec::as_slice).unwrap_or(&[])
        }

        /// Every receiver got 1..=total exactly once in order, nothing was lost, and the sender
        /// saw every message delivered.
        pub fn assert_all_delivered(&self) {
            let total = self.traffic.total;
            let all: Vec<u32> = (1..=total).collect();
            assert_eq!(self.sent, total);
            for &p in self.receivers.keys() {
                assert!(
                    self.delivered_to(p) == all.as_slice(),
                    "receiver {p}: {} delivered, first wrong at {:?}",
                    self.delivered_to(p).len(),
                    self.delivered_to(p)
                        .iter()
                        .zip(&all)
                        .position(|(a, b)| a != b)
                );
            }
            assert_eq!(self.not_delivered, [], "nothing lost or given up");
            let failed: Vec<_> = self
                .outcome
                .iter()
                .filter(|(_, o)| **o != Outcome::Delivered)
                .collect();
            assert_eq!(failed, Vec::<(&u32, &Outcome)>::new());
            assert_eq!(self.outcome.len() as u32, total, "every message resolved");
            assert_eq!(self.sender.in_flight(), 0);
        }
    }
}

/// Whole [`Endpoint`](crate::session::Endpoint)s over a [`SimNet`], with a node that is a few
/// lines of name matching written for the tests (exact id, or any instance for the null id;
/// fanout 1 = one receiver, otherwise all; never back to the sender), not the reference relay's
/// routing.
pub mod endpoints {
    use std::collections::BTreeSet;
    use std::time::{Duration, Instant};

    use prost::Message as _;
    use slim_proto::names::{SlimName, NULL_ID};
    use slim_proto::pb;

    use super::{Fate, LinkProfile, SimNet};
    use crate::session::{
        Clock, Credentials, CryptoBackend, Endpoint, EndpointConfig, Event, Transmit,
    };

    pub const SECRET: &str = "simulation-shared-secret-0123456789abcdef";

    /// One Publish copy the node forwarded (or could not route), in send order.
    #[derive(Debug, Clone)]
    pub struct Sent {
        /// When it was sent.
        pub at: Instant,
        /// The index of the endpoint's transmission it is a copy of (counted over all
        /// endpoints): copies of one multicast share it.
        pub tx: usize,
        /// Sender.
        pub from: usize,
        /// Receiver; `None` when the node had nobody to give it to.
        pub to: Option<usize>,
        /// The [`SimNet`] send number (`None` when unrouted).
        pub seq: Option<u64>,
        /// What the network did with it (`None` when unrouted).
        pub fate: Option<Fate>,
        /// The Publish.
        pub msg: pb::Message,
    }

    /// Everything that crossed the simulated wire, for the session test vectors.
    #[derive(Debug, Clone, Default)]
    pub struct Trace {
        /// Every Publish copy, in send order.
        pub sent: Vec<Sent>,
        /// Every arrival: when, and which send it was.
        pub arrived: Vec<(Instant, u64)>,
        /// How many transmissions so far.
        pub transmissions: usize,
    }

    pub struct World {
        pub now: Instant,
        pub net: SimNet<usize, pb::Message>,
        pub eps: Vec<Endpoint>,
        pub subs: Vec<BTreeSet<SlimName>>,
        pub events: Vec<Vec<(Instant, Event)>>,
        pub rr: u64,
        /// When set, every Publish an endpoint transmits, encoded, in transmission order.
        pub transcript: Option<Vec<Vec<u8>>>,
        /// When set, every copy sent and every arrival (see [`Trace`]).
        pub trace: Option<Trace>,
    }

    impl World {
        pub fn new(seed: u64, names: &[&str], profile: LinkProfile) -> Self {
            Self::with_credentials(
                seed,
                names,
                profile,
                Credentials::SharedSecret(SECRET.into()),
            )
        }

        pub fn with_credentials(
            seed: u64,
            names: &[&str],
            profile: LinkProfile,
            credentials: Credentials,
        ) -> Self {
            Self::at(seed, names, profile, credentials, 0)
        }

        /// A world whose wall clock starts `behind` seconds before the real one.
        pub fn at(
            seed: u64,
            names: &[&str],
            profile: LinkProfile,
            credentials: Credentials,
            behind: u64,
        ) -> Self {
            // openmls checks key package lifetimes against the system clock, so the simulated wall
            // clock starts at the real one.
            let unix_secs = Clock::system().unix_secs - behind;
            Self::with_clock(seed, names, profile, credentials, unix_secs)
        }

        /// A world whose wall clock starts at `unix_secs`: two worlds given the same seed and
        /// the same `unix_secs` put the same bytes on the wire.
        pub fn with_clock(
            seed: u64,
            names: &[&str],
            profile: LinkProfile,
            credentials: Credentials,
            unix_secs: u64,
        ) -> Self {
            let now = Instant::now();
            let clock = Clock { at: now, unix_secs };
            let eps: Vec<Endpoint> = names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    Endpoint::new(EndpointConfig {
                        name: n.parse().expect("name"),
                        credentials: credentials.clone(),
                        seed: Self::endpoint_seed(seed, i),
                        clock,
                        mls_crypto: CryptoBackend::RingDeterministicSignatures,
                    })
                    .expect("endpoint")
                })
                .collect();
            Self::from_endpoints(seed, profile, now, eps)
        }

        /// The RNG seed of endpoint `i` in a world seeded with `seed`.
        pub fn endpoint_seed(seed: u64, i: usize) -> [u8; 32] {
            let mut seed_bytes = [0u8; 32];
            seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
            seed_bytes[8] = i as u8;
            seed_bytes
        }

        /// A world of endpoints built by the caller, whose clocks are anchored at `now`; the
        /// network is seeded with `seed`.
        pub fn from_endpoints(
            seed: u64,
            profile: LinkProfile,
            now: Instant,
            eps: Vec<Endpoint>,
        ) -> Self {
            let subs = eps
                .iter()
                .map(|e| [e.local_name().clone()].into_iter().collect())
                .collect();
            Self {
                now,
                net: SimNet::new(seed, profile),
                events: vec![Vec::new(); eps.len()],
                eps,
                subs,
                rr: 0,
                transcript: None,
                trace: None,
            }
        }

        /// The node: who gets a Publish from `from`.
        pub fn route(&mut self, from: usize, msg: &pb::Message) -> Vec<usize> {
            let Some(pb::message::MessageType::Publish(p)) = &msg.message_type else {
                return vec![];
            };
            let Some(dst) = p
                .header
                .as_ref()
                .and_then(|h| h.destination.as_ref())
                .and_then(|d| SlimName::from_proto(d).ok())
            else {
                return vec![];
            };
            let fanout = p.header.as_ref().map_or(1, |h| h.fanout);
            let matches: Vec<usize> = (0..self.eps.len())
                .filter(|&i| i != from)
                .filter(|&i| {
                    self.subs[i].iter().any(|s| {
                        s.components() == dst.components()
                            && (dst.id() == NULL_ID || s.id() == dst.id())
                    })
                })
                .collect();
            if fanout == 1 && !matches.is_empty() {
                self.rr += 1;
                vec![matches[(self.rr as usize) % matches.len()]]
            } else {
                matches
            }
        }

        /// Moves every transmission and event out of endpoint `i`.
        pub fn drain(&mut self, i: usize) {
            while let Some(t) = self.eps[i].poll_transmit() {
                match t {
                    Transmit::Publish(m) => {
                        if let Some(t) = &mut self.transcript {
                            t.push(m.encode_to_vec());
                        }
                        let receivers = self.route(i, &m);
                        let Some(trace) = &mut self.trace else {
                            for to in receivers {
                                self.net.send(i, to, m.clone(), self.now);
                            }
                            continue;
                        };
                        let tx = trace.transmissions;
                        trace.transmissions += 1;
                        if receivers.is_empty() {
                            trace.sent.push(Sent {
                                at: self.now,
                                tx,
                                from: i,
                                to: None,
                                seq: None,
                                fate: None,
                                msg: m.clone(),
                            });
                        }
                        for to in receivers {
                            let (seq, fate) = self.net.send_traced(i, to, m.clone(), self.now);
                            trace.sent.push(Sent {
                                at: self.now,
                                tx,
                                from: i,
                                to: Some(to),
                                seq: Some(seq),
                                fate: Some(fate),
                                msg: m.clone(),
                            });
                        }
                    }
                    Transmit::Subscribe(n) => {
                        self.subs[i].insert(n);
                    }
                    Transmit::Unsubscribe(n) => {
                        self.subs[i].remove(&n);
                    }
                }
            }
            while let Some(e) = self.eps[i].poll_event() {
                self.events[i].push((self.now, e));
            }
        }

        /// Runs the world until `until` (simulated).
        pub fn run_until(&mut self, until: Instant) {
            loop {
                for i in 0..self.eps.len() {
                    self.drain(i);
                }
                let next = self
                    .eps
                    .iter_mut()
                    .filter_map(Endpoint::poll_timeout)
                    .chain(self.net.next_event_time())
                    .min();
                let Some(next) = next else {
                    self.now = until;
                    return;
                };
                if next > until {
                    self.now = until;
                    return;
                }
                self.now = self.now.max(next);
                for d in self.net.deliver_due(self.now) {
                    if let Some(t) = &mut self.trace {
                        t.arrived.push((self.now, d.seq));
                    }
                    self.eps[d.to].handle_message(d.packet, self.now);
                }
                for e in &mut self.eps {
                    e.handle_timeout(self.now);
                }
            }
        }

        pub fn run_for(&mut self, d: Duration) {
            let until = self.now + d;
            self.run_until(until);
        }

        /// Runs until `pred` holds for the events seen so far, or `limit` simulated time passes.
        pub fn run_while(&mut self, limit: Duration, mut pred: impl FnMut(&World) -> bool) -> bool {
            let end = self.now + limit;
            while self.now < end {
                if !pred(self) {
                    return true;
                }
                let step = (self.now + Duration::from_millis(100)).min(end);
                self.run_until(step);
            }
            !pred(self)
        }

        pub fn name(&self, i: usize) -> SlimName {
            self.eps[i].local_name().clone()
        }

        pub fn messages(&self, i: usize) -> Vec<(SlimName, String)> {
            self.events[i]
                .iter()
                .filter_map(|(_, e)| match e {
                    Event::Message { from, payload, .. } => {
                        Some((from.clone(), String::from_utf8_lossy(payload).into_owned()))
                    }
                    _ => None,
                })
                .collect()
        }

        pub fn count(&self, i: usize, f: impl Fn(&Event) -> bool) -> usize {
            self.events[i].iter().filter(|(_, e)| f(e)).count()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> LinkProfile {
        LinkProfile {
            loss: 0.2,
            duplicate: 0.1,
            delay: Duration::from_millis(10),
            jitter: Duration::from_millis(50),
        }
    }

    /// Sends 10 000 packets 1 ms apart and returns what arrived, in arrival order.
    fn run(seed: u64) -> (Vec<(u8, u32)>, SimStats) {
        let t0 = Instant::now();
        let mut net: SimNet<u8, u32> = SimNet::new(seed, profile());
        for i in 0..10_000u32 {
            net.send(
                0,
                (i % 3) as u8,
                i,
                t0 + Duration::from_millis(u64::from(i)),
            );
        }
        let mut got = Vec::new();
        let mut last = t0;
        while let Some(at) = net.next_event_time() {
            assert!(at >= last, "time never goes backwards");
            last = at;
            got.extend(net.deliver_due(at).into_iter().map(|d| (d.to, d.packet)));
        }
        (got, net.stats())
    }

    #[test]
    fn same_seed_same_run_and_rates_match_the_profile() {
        let (a, stats) = run(7);
        let (b, _) = run(7);
        let (c, _) = run(8);
        assert_eq!(a, b, "deterministic for a seed");
        assert_ne!(a, c, "another seed, another run");

        assert_eq!(stats.sent, 10_000);
        assert_eq!(stats.delivered, stats.sent - stats.lost + stats.duplicated);
        assert_eq!(a.len() as u64, stats.delivered);
        let loss = stats.lost as f64 / stats.sent as f64;
        let dup = stats.duplicated as f64 / (stats.sent - stats.lost) as f64;
        assert!((0.18..0.22).contains(&loss), "loss rate {loss}");
        assert!((0.08..0.12).contains(&dup), "duplication rate {dup}");
        let reordered = a.windows(2).filter(|w| w[1].1 < w[0].1).count();
        assert!(reordered > 1000, "jitter reorders: {reordered} inversions");
        for (to, i) in &a {
            assert_eq!(u32::from(*to), i % 3, "packet {i} went where it was sent");
        }
    }

    #[test]
    fn per_link_profiles_and_delay() {
        let t0 = Instant::now();
        let mut net: SimNet<&str, u32> =
            SimNet::new(1, LinkProfile::perfect(Duration::from_millis(5)));
        net.set_link("a", "b", LinkProfile::dead());
        for i in 0..100 {
            net.send("a", "b", i, t0);
            net.send("a", "c", i, t0);
        }
        assert_eq!(net.next_event_time(), Some(t0 + Duration::from_millis(5)));
        assert!(net.deliver_due(t0 + Duration::from_millis(4)).is_empty());
        let got = net.deliver_due(t0 + Duration::from_millis(5));
        assert_eq!(got.len(), 100);
        assert!(got.iter().all(|d| d.to == "c" && d.from == "a"));
        let order: Vec<u32> = got.iter().map(|d| d.packet).collect();
        assert_eq!(
            order,
            (0..100).collect::<Vec<_>>(),
            "equal times keep send order"
        );
        assert_eq!(net.stats().lost, 100);
        assert_eq!(net.in_flight(), 0);
    }
}
