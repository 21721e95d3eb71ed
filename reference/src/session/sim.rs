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
        self.stats.sent += 1;
        let profile = self
            .links
            .get(&(from.clone(), to.clone()))
            .copied()
            .unwrap_or(self.default);
        if self.chance(profile.loss) {
            self.stats.lost += 1;
            return;
        }
        if self.chance(profile.duplicate) {
            self.stats.duplicated += 1;
            let copy = Delivery {
                from: from.clone(),
                to: to.clone(),
                packet: packet.clone(),
            };
            self.enqueue(copy, &profile, now);
        }
        self.enqueue(Delivery { from, to, packet }, &profile, now);
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
