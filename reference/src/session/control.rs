//! Reliable delivery of session commands, and the reply cache that makes retransmissions safe.
//!
//! Commands (discovery, join, welcome, group update, leave, close) always retransmit until every
//! expected reply arrives, whatever the data reliability of the session (WIRE.md §5.2: every
//! second, 10 times by default). A reply reuses the request's message id.
//!
//! The receiving side answers a retransmitted request with the reply it already sent, without
//! processing the request again. The real SDK's replay cache instead *drops* such duplicates, so
//! a lost reply turns into a failed request on the other side (WIRE.md §13); ours keeps
//! replay protection (a request is never processed twice) and still repairs lost replies
//! (SLIM-SESS-005).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use slim_proto::names::SlimName;
use slim_proto::pb;

/// Default interval between retransmissions of a command (the SDK's default).
pub const COMMAND_INTERVAL: Duration = Duration::from_secs(1);
/// Default number of retransmissions of a command (the SDK's default).
pub const COMMAND_RETRIES: u32 = 10;

/// Who must answer a command before it is complete.
#[derive(Debug, Clone)]
pub enum Expect {
    /// One reply from anyone (a discovery request goes to a name without id).
    AnyOne,
    /// One reply from each of these names.
    All(BTreeSet<SlimName>),
    /// Nothing: send once, no retransmission (heartbeats).
    Nothing,
}

#[derive(Debug)]
struct Pending {
    msg: pb::Message,
    missing: Expect,
    next_at: Instant,
    retries_left: u32,
}

/// What the command sender asks of its session.
// Moved once through a queue; boxing the message would cost an allocation per command.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum ControlOutput {
    /// Put this (re)transmission on the wire.
    Transmit(pb::Message),
    /// Every expected reply to command `id` arrived; `from` is the last replier.
    Complete {
        /// The command's message id.
        id: u32,
        /// Who sent the last reply.
        from: SlimName,
    },
    /// Retries exhausted for command `id`; `missing` never replied (empty for [`Expect::AnyOne`]).
    Failed {
        /// The command's message id.
        id: u32,
        /// The names whose replies are missing.
        missing: Vec<SlimName>,
    },
}

/// Retransmits commands until their replies arrive.
#[derive(Debug)]
pub struct CommandSender {
    interval: Duration,
    retries: u32,
    pending: BTreeMap<u32, Pending>,
    timers: BTreeSet<(Instant, u32)>,
    out: VecDeque<ControlOutput>,
}

impl CommandSender {
    /// A sender that retransmits every `interval`, `retries` times.
    pub fn new(interval: Duration, retries: u32) -> Self {
        Self {
            interval,
            retries,
            pending: BTreeMap::new(),
            timers: BTreeSet::new(),
            out: VecDeque::new(),
        }
    }

    /// Sends command `msg` (message id `id`), retransmitting it until `expect` is met.
    pub fn send(&mut self, id: u32, msg: pb::Message, expect: Expect, now: Instant) {
        self.out.push_back(ControlOutput::Transmit(msg.clone()));
        if matches!(expect, Expect::Nothing) {
            return;
        }
        if let Expect::All(set) = &expect {
            if set.is_empty() {
                self.out.push_back(ControlOutput::Complete {
                    id,
                    from: SlimName::new("-", "-", "-"),
                });
                return;
            }
        }
        let next_at = now + self.interval;
        self.cancel(id);
        self.timers.insert((next_at, id));
        self.pending.insert(
            id,
            Pending {
                msg,
                missing: expect,
                next_at,
                retries_left: self.retries,
            },
        );
    }

    /// Whether command `id` is still waiting for replies.
    pub fn is_pending(&self, id: u32) -> bool {
        self.pending.contains_key(&id)
    }

    /// Records a reply to command `id` from `from`. Returns false if no such command waits for
    /// a reply from `from` (a late or stray reply).
    pub fn on_reply(&mut self, id: u32, from: &SlimName) -> bool {
        let Some(p) = self.pending.get_mut(&id) else {
            return false;
        };
        let done = match &mut p.missing {
            Expect::AnyOne => true,
            Expect::All(set) => {
                if !set.remove(from) {
                    return false;
                }
                set.is_empty()
            }
            Expect::Nothing => true,
        };
        if done {
            self.cancel(id);
            self.out.push_back(ControlOutput::Complete {
                id,
                from: from.clone(),
            });
        }
        true
    }

    /// Stops waiting for `who` (a member that left): commands only it had to answer complete.
    pub fn forget(&mut self, who: &SlimName) {
        let ids: Vec<u32> = self.pending.keys().copied().collect();
        for id in ids {
            let waiting = matches!(&self.pending[&id].missing, Expect::All(s) if s.contains(who));
            if waiting {
                self.on_reply(id, who);
            }
        }
    }

    /// Stops retransmitting command `id`.
    pub fn cancel(&mut self, id: u32) {
        if let Some(p) = self.pending.remove(&id) {
            self.timers.remove(&(p.next_at, id));
        }
    }

    /// Stops everything (the session ends).
    pub fn clear(&mut self) {
        self.pending.clear();
        self.timers.clear();
    }

    /// When the next retransmission or failure is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// Retransmits or fails every command whose timer expired.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, id));
            let Some(p) = self.pending.get_mut(&id) else {
                continue;
            };
            if p.retries_left == 0 {
                let missing = match &p.missing {
                    Expect::All(s) => s.iter().cloned().collect(),
                    _ => Vec::new(),
                };
                self.pending.remove(&id);
                self.out.push_back(ControlOutput::Failed { id, missing });
                continue;
            }
            p.retries_left -= 1;
            p.next_at = at + self.interval;
            self.timers.insert((p.next_at, id));
            self.out.push_back(ControlOutput::Transmit(p.msg.clone()));
        }
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<ControlOutput> {
        self.out.pop_front()
    }
}

/// Key of a processed command: session, sender, message id and type.
type ReplyKey = (u32, SlimName, u32, i32);

/// How long a processed command is remembered. A sender retransmits a command for
/// `COMMAND_INTERVAL` x `COMMAND_RETRIES` (10 s with the SDK's defaults); six times that covers
/// slower retransmission settings and delayed copies. An entry older than this is forgotten even
/// while the cache has room, so that a busy endpoint's cache does not keep growing towards its
/// count bound for an hour (the soak's RSS check found that).
pub const REPLY_TTL: Duration = Duration::from_secs(60);

/// A remembered command: when it was processed, and the reply it got, encoded (about half the
/// memory of the decoded message; only a retransmitted request pays for decoding it again).
#[derive(Debug)]
struct Processed {
    at: Instant,
    reply: Option<Bytes>,
}

/// Remembers the commands already processed and the reply each got, so that a retransmitted
/// command is answered again but never processed twice (SLIM-SESS-005). Bounded twice: at most
/// `capacity` entries, the oldest going first, and none older than `ttl`.
#[derive(Debug)]
pub struct ReplyCache {
    capacity: usize,
    ttl: Duration,
    entries: HashMap<ReplyKey, Processed>,
    /// Keys in the order they were recorded, which is also the order of their `at`.
    order: VecDeque<ReplyKey>,
}

/// What to do with an inbound command.
#[allow(clippy::large_enum_variant)] // short-lived, returned by value once per command
#[derive(Debug)]
pub enum Seen {
    /// Never seen (or seen longer than the cache's ttl ago): process it.
    New,
    /// Already processed: resend this reply (if it had one) and do nothing else.
    Again(Option<pb::Message>),
}

impl ReplyCache {
    /// A cache of at most `capacity` commands, each remembered for at most `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            capacity,
            ttl,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// How many commands are remembered now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Looks up a command at `now`. An entry past its ttl counts as never seen, even before
    /// [`ReplyCache::expire`] removes it.
    pub fn check(&self, session: u32, from: &SlimName, id: u32, kind: i32, now: Instant) -> Seen {
        match self.entries.get(&(session, from.clone(), id, kind)) {
            Some(p) if now.saturating_duration_since(p.at) < self.ttl => {
                // We encoded it ourselves; a reply that no longer decodes is simply not resent.
                Seen::Again(
                    p.reply
                        .as_ref()
                        .and_then(|b| <pb::Message as prost::Message>::decode(b.as_ref()).ok()),
                )
            }
            _ => Seen::New,
        }
    }

    /// Records at `now` that a command was processed and what was answered, then forgets what
    /// is over the ttl or the capacity.
    pub fn record(
        &mut self,
        session: u32,
        from: &SlimName,
        id: u32,
        kind: i32,
        reply: Option<&pb::Message>,
        now: Instant,
    ) {
        let key = (session, from.clone(), id, kind);
        let processed = Processed {
            at: now,
            reply: reply.map(|m| Bytes::from(prost::Message::encode_to_vec(m))),
        };
        if self.entries.insert(key.clone(), processed).is_some() {
            // Recorded again (a request that is processed again after its ttl): move it to the
            // back so that `order` stays sorted by time.
            self.order.retain(|k| k != &key);
        }
        self.order.push_back(key);
        self.expire(now);
    }

    /// Forgets every entry older than the ttl at `now`, and the oldest beyond the capacity.
    pub fn expire(&mut self, now: Instant) {
        while let Some(front) = self.order.front() {
            let expired = self
                .entries
                .get(front)
                .is_none_or(|p| now.saturating_duration_since(p.at) >= self.ttl);
            if !expired && self.order.len() <= self.capacity {
                break;
            }
            if let Some(old) = self.order.pop_front() {
                self.entries.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> SlimName {
        SlimName::new("o", "n", s).with_id(1)
    }

    #[test]
    fn retransmits_then_fails_naming_the_silent_peer() {
        let t0 = Instant::now();
        let mut c = CommandSender::new(Duration::from_secs(1), 2);
        c.send(
            7,
            pb::Message::default(),
            Expect::All([n("a"), n("b")].into()),
            t0,
        );
        assert!(matches!(c.poll_output(), Some(ControlOutput::Transmit(_))));
        assert!(c.on_reply(7, &n("a")));
        assert!(!c.on_reply(7, &n("a")), "a second reply from a is stray");
        let mut transmissions = 0;
        let mut failed = None;
        let mut now = t0;
        while let Some(t) = c.poll_timeout() {
            now = t;
            c.handle_timeout(now);
            while let Some(o) = c.poll_output() {
                match o {
                    ControlOutput::Transmit(_) => transmissions += 1,
                    ControlOutput::Failed { id, missing } => failed = Some((id, missing)),
                    ControlOutput::Complete { .. } => panic!("must not complete"),
                }
            }
        }
        assert_eq!(transmissions, 2);
        assert_eq!(failed, Some((7, vec![n("b")])));
        assert_eq!(now, t0 + Duration::from_secs(3));
    }

    #[test]
    fn a_member_that_leaves_no_longer_blocks_completion() {
        let t0 = Instant::now();
        let mut c = CommandSender::new(Duration::from_secs(1), 2);
        c.send(1, pb::Message::default(), Expect::All([n("a")].into()), t0);
        c.poll_output();
        c.forget(&n("a"));
        assert!(matches!(
            c.poll_output(),
            Some(ControlOutput::Complete { id: 1, .. })
        ));
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn reply_cache_answers_again_and_is_bounded() {
        let t0 = Instant::now();
        let mut r = ReplyCache::new(2, REPLY_TTL);
        assert!(matches!(r.check(1, &n("a"), 5, 7, t0), Seen::New));
        let reply = pb::Message {
            metadata: [("k".to_string(), "v".to_string())].into(),
            ..Default::default()
        };
        r.record(1, &n("a"), 5, 7, Some(&reply), t0);
        match r.check(1, &n("a"), 5, 7, t0) {
            Seen::Again(Some(m)) => assert_eq!(m, reply, "the same reply, decoded again"),
            other => panic!("expected the cached reply, got {other:?}"),
        }
        r.record(1, &n("a"), 6, 7, None, t0);
        r.record(1, &n("a"), 8, 7, None, t0);
        assert_eq!(r.len(), 2);
        assert!(
            matches!(r.check(1, &n("a"), 5, 7, t0), Seen::New),
            "oldest evicted"
        );
    }

    #[test]
    fn reply_cache_forgets_what_is_older_than_its_ttl() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(60);
        let mut r = ReplyCache::new(4096, ttl);
        r.record(1, &n("a"), 1, 7, None, t0);
        r.record(1, &n("a"), 2, 7, None, t0 + Duration::from_secs(30));
        // Within the ttl: still a retransmission.
        let just_before = t0 + ttl - Duration::from_millis(1);
        assert!(matches!(
            r.check(1, &n("a"), 1, 7, just_before),
            Seen::Again(None)
        ));
        // At the ttl it counts as new even before anything is removed…
        assert!(matches!(r.check(1, &n("a"), 1, 7, t0 + ttl), Seen::New));
        assert_eq!(r.len(), 2);
        // …and the next record removes it, but not the younger entry.
        r.record(1, &n("a"), 3, 7, None, t0 + ttl);
        assert_eq!(r.len(), 2);
        assert!(matches!(
            r.check(1, &n("a"), 2, 7, t0 + ttl),
            Seen::Again(None)
        ));
        // A steady stream of commands keeps the cache at what one ttl holds, far under capacity.
        let mut now = t0 + ttl;
        for id in 100..1100 {
            now += Duration::from_millis(500);
            r.record(1, &n("b"), id, 7, None, now);
        }
        assert_eq!(r.len(), 120, "60 s of one command every 500 ms");
        r.expire(now + ttl);
        assert!(r.is_empty());
    }

    #[test]
    fn a_command_recorded_again_keeps_the_order_by_time() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        let mut r = ReplyCache::new(8, ttl);
        r.record(1, &n("a"), 1, 7, None, t0);
        r.record(1, &n("a"), 2, 7, None, t0 + Duration::from_secs(5));
        // Command 1 is processed again after its ttl ran out.
        r.record(1, &n("a"), 1, 7, None, t0 + Duration::from_secs(11));
        r.expire(t0 + Duration::from_secs(16));
        assert!(matches!(
            r.check(1, &n("a"), 1, 7, t0 + Duration::from_secs(16)),
            Seen::Again(None)
        ));
        assert_eq!(
            r.len(),
            1,
            "command 2 expired, command 1 (recorded at 11 s) kept"
        );
    }
}
