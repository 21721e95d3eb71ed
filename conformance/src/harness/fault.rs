//! Fault rules and the reproducible decision of which frames they hit.
//!
//! A decision depends only on the seed, the rule's index, the link's app name (its first
//! subscribed name, or `link#N` before any), the direction and the frame's index among the frames
//! matching that rule on that link and direction: SHA-256 of those, so that how frames of
//! different links interleave never changes which frames are hit. The one exception is
//! [`FaultRule::max`], a global cap on applications counted in forwarding order across links.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::transcript::Dir;

/// Longest delay a [`Fault::Delay`] holds a frame; longer delays are shortened to it, so a
/// link's pending frames stay bounded in time.
pub const MAX_DELAY: Duration = Duration::from_secs(30);

/// One fault to inject: which frames (filter + selection), what to do, how often at most.
#[derive(Clone, Debug)]
pub struct FaultRule {
    /// Only frames travelling this way; `None` = both directions.
    pub direction: Option<Dir>,
    /// Only Publishes of these `pb::SessionMessageType` values; empty = every Publish with a
    /// session header.
    pub message_types: Vec<i32>,
    /// `"org/ns/app"`: only links on which the app subscribed that name.
    pub link_app: Option<String>,
    /// Which of the matching frames the fault hits.
    pub select: Select,
    /// What happens to a hit frame.
    pub fault: Fault,
    /// At most this many applications over the rule's lifetime (across links); `None` = no cap.
    pub max: Option<u32>,
}

impl FaultRule {
    /// A rule hitting every frame of `message_types` in `direction` with `fault`, without cap.
    pub fn new(
        direction: Option<Dir>,
        message_types: Vec<i32>,
        select: Select,
        fault: Fault,
    ) -> Self {
        Self {
            direction,
            message_types,
            link_app: None,
            select,
            fault,
            max: None,
        }
    }
}

/// Which matching frames a rule hits.
#[derive(Clone, Debug)]
pub enum Select {
    /// Every matching frame.
    All,
    /// Each matching frame independently with this probability, decided from the seed.
    Probability(f64),
    /// The frames with these 0-based indices among the frames matching this rule on one
    /// link + direction.
    Index(Vec<u32>),
}

/// What the harness does to a hit frame.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Not forwarded.
    Drop,
    /// Forwarded twice, adjacent.
    Duplicate,
    /// Held and released right after the next frame forwarded on the same link + direction (or
    /// after [`super::REORDER_HOLD`] if none comes).
    Reorder,
    /// Delivered after this delay; later frames of the link + direction are not held back.
    Delay(Duration),
    /// The last byte of `SLIMHeader.e2e_header_sig` has its bits flipped.
    CorruptHeaderSig,
    /// One base64 character of the `slim-payload-sig` metadata value is replaced by another.
    CorruptPayloadSig,
}

impl Fault {
    /// How the transcript names it.
    pub fn label(&self) -> String {
        match self {
            Fault::Drop => "drop".into(),
            Fault::Duplicate => "duplicate".into(),
            Fault::Reorder => "reorder".into(),
            Fault::Delay(d) => format!("delay {}ms", d.min(&MAX_DELAY).as_millis()),
            Fault::CorruptHeaderSig => "corrupt e2e_header_sig".into(),
            Fault::CorruptPayloadSig => "corrupt slim-payload-sig".into(),
        }
    }
}

/// The rules in force, with their generation (bumped by every `set_faults`/`clear_faults`, which
/// restarts the per-link counters) and their global application counts.
#[derive(Debug, Default)]
pub(crate) struct FaultSet {
    pub(crate) generation: u64,
    pub(crate) rules: Vec<FaultRule>,
    applied: Vec<AtomicU32>,
}

impl FaultSet {
    pub(crate) fn new(generation: u64, rules: Vec<FaultRule>) -> Self {
        let applied = rules.iter().map(|_| AtomicU32::new(0)).collect();
        Self {
            generation,
            rules,
            applied,
        }
    }

    /// Takes one application of rule `i` if its cap allows.
    fn take(&self, i: usize) -> bool {
        let Some(counter) = self.applied.get(i) else {
            return false;
        };
        match self.rules[i].max {
            None => {
                counter.fetch_add(1, Ordering::Relaxed);
                true
            }
            Some(max) => counter
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < max).then_some(n + 1)
                })
                .is_ok(),
        }
    }
}

/// What a frame looks like to the rule filters.
pub(crate) struct Candidate<'a> {
    pub(crate) dir: Dir,
    /// `Some` for a Publish with a session header: its message type.
    pub(crate) message_type: i32,
    /// Names subscribed on the frame's link.
    pub(crate) link_apps: &'a [String],
    /// The link's key for hashing: its first subscribed name, or `link#N`.
    pub(crate) link_key: &'a str,
}

/// A decision: the fault, the rule's index, and entropy for the fault's own choices.
#[derive(Debug, Clone)]
pub(crate) struct Decision {
    pub(crate) fault: Fault,
    pub(crate) entropy: u64,
}

/// Per link + direction counters of each rule, restarted when the rule set changes.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    generation: u64,
    matched: Vec<u32>,
}

impl Counters {
    /// Counts the frame for every rule whose filter it matches, and returns the first rule's
    /// fault that selects it (and whose cap allows). Later rules still count the frame, so each
    /// rule's indices do not depend on the others' decisions.
    pub(crate) fn decide(
        &mut self,
        seed: u64,
        set: &FaultSet,
        c: &Candidate<'_>,
    ) -> Option<Decision> {
        if self.generation != set.generation || self.matched.len() != set.rules.len() {
            self.generation = set.generation;
            self.matched = vec![0; set.rules.len()];
        }
        let mut decision = None;
        for (i, rule) in set.rules.iter().enumerate() {
            if !matches(rule, c) {
                continue;
            }
            let index = self.matched[i];
            self.matched[i] = index.saturating_add(1);
            if decision.is_some() {
                continue;
            }
            let h = hash(seed, i, c.link_key, c.dir, index);
            let selected = match &rule.select {
                Select::All => true,
                Select::Index(ix) => ix.contains(&index),
                Select::Probability(p) => unit(h[0..8].try_into().ok()) < *p,
            };
            if selected && set.take(i) {
                decision = Some(Decision {
                    fault: rule.fault.clone(),
                    entropy: u64::from_le_bytes(h[8..16].try_into().unwrap_or([0; 8])),
                });
            }
        }
        decision
    }
}

fn matches(rule: &FaultRule, c: &Candidate<'_>) -> bool {
    rule.direction.is_none_or(|d| d == c.dir)
        && (rule.message_types.is_empty() || rule.message_types.contains(&c.message_type))
        && rule
            .link_app
            .as_ref()
            .is_none_or(|app| c.link_apps.iter().any(|a| a == app))
}

/// SHA-256 of the decision's inputs, each length-prefixed or fixed-size.
fn hash(seed: u64, rule: usize, link_key: &str, dir: Dir, index: u32) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"slim-conformance harness fault v1\0");
    h.update(seed.to_le_bytes());
    h.update((rule as u64).to_le_bytes());
    h.update((link_key.len() as u64).to_le_bytes());
    h.update(link_key.as_bytes());
    h.update([dir.tag()]);
    h.update(index.to_le_bytes());
    h.finalize().into()
}

/// A uniform number in [0, 1) from 8 bytes (53 bits of them).
fn unit(bytes: Option<[u8; 8]>) -> f64 {
    let v = u64::from_le_bytes(bytes.unwrap_or([0; 8])) >> 11;
    v as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide_all(seed: u64, set: &FaultSet, key: &str, n: u32) -> Vec<u32> {
        let mut counters = Counters::default();
        let apps = vec![key.to_string()];
        (0..n)
            .filter(|_| {
                counters
                    .decide(
                        seed,
                        set,
                        &Candidate {
                            dir: Dir::ToNode,
                            message_type: 1,
                            link_apps: &apps,
                            link_key: key,
                        },
                    )
                    .is_some()
            })
            .collect()
    }

    #[test]
    fn probability_decisions_depend_on_the_seed_and_the_link_only() {
        let rule = FaultRule::new(None, vec![], Select::Probability(0.3), Fault::Drop);
        let set = FaultSet::new(1, vec![rule.clone()]);
        let a = decide_all(7, &set, "org/ns/a", 200);
        assert_eq!(
            a,
            decide_all(7, &FaultSet::new(9, vec![rule]), "org/ns/a", 200)
        );
        assert_ne!(a, decide_all(8, &set, "org/ns/a", 200));
        assert_ne!(a, decide_all(7, &set, "org/ns/b", 200));
        // About 30 %.
        assert!((30..=90).contains(&a.len()), "{}", a.len());
    }

    #[test]
    fn index_selection_max_and_filters() {
        let mut rule = FaultRule::new(
            Some(Dir::ToNode),
            vec![1],
            Select::Index(vec![0, 2, 5]),
            Fault::Drop,
        );
        rule.max = Some(2);
        let set = FaultSet::new(1, vec![rule]);
        assert_eq!(decide_all(1, &set, "x", 10), vec![0, 2]);
        // The cap is global: exhausted for every later link.
        assert_eq!(decide_all(1, &set, "y", 10), Vec::<u32>::new());
        let mut other = FaultRule::new(Some(Dir::FromNode), vec![], Select::All, Fault::Drop);
        other.link_app = Some("x".into());
        let set = FaultSet::new(2, vec![other]);
        assert!(decide_all(1, &set, "x", 3).is_empty()); // wrong direction
    }
}
