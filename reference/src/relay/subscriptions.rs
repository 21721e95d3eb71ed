//! The subscription table: which connections receive which names (SLIM-SUB-*, SLIM-ROUTE-*).
//!
//! A name is routed by its hashed form only: the *prefix* (the three component hashes) and the
//! 128-bit id. The table keeps, per prefix, one member list per id plus a member list of the whole
//! prefix (for publishes to the wildcard id). Member lists keep insertion order and a cursor, so
//! anycast is a deterministic round robin.
//!
//! Bookkeeping is by *record* = (connection, subscription id, prefix, id), as the real node does
//! since 3.4: the same name under two subscription ids counts twice and stays routed until both are
//! removed (SLIM-SUB-007), and subscription id 0 is an ordinary record that simply gets no ack.

use std::collections::{HashMap, HashSet};

use slim_proto::names::{id_text, NULL_ID};

use super::ConnId;
use crate::mutants::{self, Fault};

/// The three hashed components of a name.
pub type Prefix = [u64; 3];

/// One subscription as the table records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Record {
    subscription_id: u64,
    prefix: Prefix,
    id: u128,
}

/// Why an Unsubscribe could not be applied. The texts are the real node's (WIRE.md §4.2), so
/// clients written against it see the same acks (SLIM-SUB-005).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsubscribeError {
    /// Nobody subscribed anything under this prefix.
    #[error("subscription not found")]
    PrefixNotFound,
    /// The prefix is known but nobody subscribed this id under it.
    #[error("id not found: {}", id_text(*.0))]
    IdNotFound(u128),
    /// This connection has no record with this subscription id for this name.
    #[error("subscription id not found: {0}")]
    SubscriptionIdNotFound(u64),
}

/// Why a Subscribe could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The connection already holds the maximum number of subscriptions (SLIM-SUB-009).
    #[error("subscription limit reached: a connection may hold at most {0} subscriptions")]
    LimitReached(usize),
}

/// Connections of one id slot (or of a whole prefix), each with its number of records.
#[derive(Debug, Default)]
struct Members {
    conns: Vec<ConnId>,
    counts: HashMap<ConnId, usize>,
    cursor: usize,
}

impl Members {
    fn add(&mut self, conn: ConnId) {
        let count = self.counts.entry(conn).or_insert(0);
        if *count == 0 {
            self.conns.push(conn);
        }
        *count += 1;
    }

    /// Returns true when the member list became empty.
    fn remove(&mut self, conn: ConnId) -> bool {
        if let Some(count) = self.counts.get_mut(&conn) {
            *count -= 1;
            if *count == 0 {
                self.counts.remove(&conn);
                if let Some(pos) = self.conns.iter().position(|c| *c == conn) {
                    self.conns.remove(pos);
                    if pos < self.cursor {
                        self.cursor -= 1;
                    }
                }
            }
        }
        self.conns.is_empty()
    }

    /// Round robin over the members, never returning `skip` (SLIM-ROUTE-005, SLIM-ROUTE-007).
    fn next(&mut self, skip: ConnId) -> Option<ConnId> {
        if mutants::on(Fault::AnycastAlwaysFirst) {
            self.cursor = 0;
        }
        let len = self.conns.len();
        for i in 0..len {
            let idx = (self.cursor + i) % len;
            let conn = self.conns[idx];
            if conn != skip {
                self.cursor = idx + 1;
                return Some(conn);
            }
        }
        None
    }
}

#[derive(Debug, Default)]
struct PrefixEntry {
    ids: HashMap<u128, Members>,
    any: Members,
}

/// Every subscription of every connection.
#[derive(Debug, Default)]
pub struct SubscriptionTable {
    prefixes: HashMap<Prefix, PrefixEntry>,
    by_conn: HashMap<ConnId, HashSet<Record>>,
}

impl SubscriptionTable {
    /// Installs a subscription. Subscribing the same (id, name) twice on a connection is
    /// idempotent (SLIM-SUB-006). `limit` bounds the records per connection.
    pub fn subscribe(
        &mut self,
        conn: ConnId,
        subscription_id: u64,
        prefix: Prefix,
        id: u128,
        limit: usize,
    ) -> Result<(), SubscribeError> {
        let records = self.by_conn.entry(conn).or_default();
        let record = Record {
            subscription_id,
            prefix,
            id,
        };
        if records.contains(&record) {
            return Ok(());
        }
        if records.len() >= limit && mutants::on(Fault::AckSuccessRouteNotInstalled) {
            return Ok(());
        }
        if records.len() >= limit {
            return Err(SubscribeError::LimitReached(limit));
        }
        records.insert(record);
        let entry = self.prefixes.entry(prefix).or_default();
        entry.ids.entry(id).or_default().add(conn);
        entry.any.add(conn);
        Ok(())
    }

    /// Removes the record (conn, subscription_id, name) (SLIM-SUB-004, SLIM-SUB-005).
    pub fn unsubscribe(
        &mut self,
        conn: ConnId,
        subscription_id: u64,
        prefix: Prefix,
        id: u128,
    ) -> Result<(), UnsubscribeError> {
        let entry = self
            .prefixes
            .get(&prefix)
            .ok_or(UnsubscribeError::PrefixNotFound)?;
        if !entry.ids.contains_key(&id) {
            return Err(UnsubscribeError::IdNotFound(id));
        }
        let record = Record {
            subscription_id,
            prefix,
            id,
        };
        let conn = if mutants::on(Fault::UnsubscribeForeignLink) {
            let owner = self.by_conn.iter().find(|(_, r)| r.contains(&record));
            owner.map_or(conn, |(owner, _)| *owner)
        } else {
            conn
        };
        let removed = self
            .by_conn
            .get_mut(&conn)
            .is_some_and(|records| records.remove(&record));
        if !removed {
            return Err(UnsubscribeError::SubscriptionIdNotFound(subscription_id));
        }
        self.drop_member(conn, prefix, id);
        Ok(())
    }

    /// Removes every subscription of a connection (SLIM-SUB-008). Returns how many.
    pub fn remove_connection(&mut self, conn: ConnId) -> usize {
        let records = self.by_conn.remove(&conn).unwrap_or_default();
        for r in &records {
            self.drop_member(conn, r.prefix, r.id);
        }
        records.len()
    }

    fn drop_member(&mut self, conn: ConnId, prefix: Prefix, id: u128) {
        let Some(entry) = self.prefixes.get_mut(&prefix) else {
            return;
        };
        if entry.ids.get_mut(&id).is_some_and(|m| m.remove(conn)) {
            entry.ids.remove(&id);
        }
        if entry.any.remove(conn) {
            self.prefixes.remove(&prefix);
        }
    }

    /// Anycast: one subscriber of (prefix, id), round robin, never `skip` (SLIM-ROUTE-005).
    /// The wildcard id matches every subscriber of the prefix (SLIM-ROUTE-003); a specific id
    /// matches only subscribers of exactly that id (SLIM-ROUTE-002).
    pub fn pick_one(&mut self, prefix: &Prefix, id: u128, skip: ConnId) -> Option<ConnId> {
        let entry = self.prefixes.get_mut(prefix)?;
        if id == NULL_ID && !mutants::on(Fault::WildcardPublishMissesSpecific) {
            entry.any.next(skip)
        } else {
            entry.ids.get_mut(&id)?.next(skip)
        }
    }

    /// Broadcast: every subscriber of (prefix, id) once, never `skip` (SLIM-ROUTE-006).
    pub fn all(&self, prefix: &Prefix, id: u128, skip: ConnId) -> Vec<ConnId> {
        let Some(entry) = self.prefixes.get(prefix) else {
            return Vec::new();
        };
        let members = if id == NULL_ID && !mutants::on(Fault::WildcardPublishMissesSpecific) {
            Some(&entry.any)
        } else {
            entry.ids.get(&id)
        };
        members.map_or_else(Vec::new, |m| {
            m.conns.iter().copied().filter(|c| *c != skip).collect()
        })
    }

    /// Number of subscription records held by a connection.
    pub fn count(&self, conn: ConnId) -> usize {
        self.by_conn.get(&conn).map_or(0, HashSet::len)
    }

    /// Number of distinct prefixes in the table.
    pub fn prefixes(&self) -> usize {
        self.prefixes.len()
    }

    /// Sizes of the table's indexes: (prefixes, ids under all prefixes, connections holding a
    /// record, records). A leak shows as one of them growing while the subscribers do not.
    pub fn sizes(&self) -> (usize, usize, usize, usize) {
        let ids = self.prefixes.values().map(|p| p.ids.len()).sum();
        let records = self.by_conn.values().map(HashSet::len).sum();
        (self.prefixes.len(), ids, self.by_conn.len(), records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const P: Prefix = [1, 2, 3];
    const LIMIT: usize = 100;

    #[test]
    fn exact_wildcard_and_null_id_matching() {
        let mut t = SubscriptionTable::default();
        t.subscribe(1, 10, P, 7, LIMIT).expect("sub");
        t.subscribe(2, 11, P, 8, LIMIT).expect("sub");
        t.subscribe(3, 12, P, NULL_ID, LIMIT).expect("sub");
        assert_eq!(t.all(&P, 7, 0), vec![1]);
        assert_eq!(t.all(&P, NULL_ID, 0), vec![1, 2, 3]);
        assert_eq!(t.all(&P, 9, 0), Vec::<ConnId>::new());
        assert_eq!(t.all(&[1, 2, 4], NULL_ID, 0), Vec::<ConnId>::new());
    }

    #[test]
    fn anycast_alternates_and_skips_the_sender() {
        let mut t = SubscriptionTable::default();
        t.subscribe(1, 1, P, 7, LIMIT).expect("sub");
        t.subscribe(2, 1, P, 8, LIMIT).expect("sub");
        let picks: Vec<_> = (0..4).filter_map(|_| t.pick_one(&P, NULL_ID, 0)).collect();
        assert_eq!(picks, vec![1, 2, 1, 2]);
        let picks: Vec<_> = (0..3).filter_map(|_| t.pick_one(&P, NULL_ID, 1)).collect();
        assert_eq!(picks, vec![2, 2, 2]);
        assert_eq!(t.pick_one(&P, 7, 1), None, "sole subscriber is the sender");
    }

    #[test]
    fn unsubscribe_errors_match_the_real_node() {
        let mut t = SubscriptionTable::default();
        assert_eq!(
            t.unsubscribe(1, 5, P, 7).unwrap_err().to_string(),
            "subscription not found"
        );
        t.subscribe(1, 5, P, 7, LIMIT).expect("sub");
        assert_eq!(
            t.unsubscribe(1, 5, P, NULL_ID).unwrap_err().to_string(),
            "id not found: NULL_COMPONENT"
        );
        assert_eq!(
            t.unsubscribe(1, 5, P, 8).unwrap_err().to_string(),
            "id not found: 00000000-0000-0000-0000-000000000008"
        );
        assert_eq!(
            t.unsubscribe(1, 6, P, 7).unwrap_err().to_string(),
            "subscription id not found: 6"
        );
        // Another connection cannot remove conn 1's record.
        assert_eq!(
            t.unsubscribe(2, 5, P, 7).unwrap_err().to_string(),
            "subscription id not found: 5"
        );
        assert_eq!(t.all(&P, 7, 0), vec![1]);
        t.unsubscribe(1, 5, P, 7).expect("unsub");
        assert_eq!(t.prefixes(), 0);
    }

    #[test]
    fn two_ids_for_one_name_need_two_unsubscribes() {
        let mut t = SubscriptionTable::default();
        t.subscribe(1, 5, P, 7, LIMIT).expect("sub");
        t.subscribe(1, 6, P, 7, LIMIT).expect("sub");
        assert_eq!(t.all(&P, 7, 0), vec![1], "one copy per connection");
        t.unsubscribe(1, 5, P, 7).expect("unsub");
        assert_eq!(t.all(&P, 7, 0), vec![1]);
        t.unsubscribe(1, 6, P, 7).expect("unsub");
        assert!(t.all(&P, 7, 0).is_empty());
    }

    #[test]
    fn limit_is_enforced_per_connection() {
        let mut t = SubscriptionTable::default();
        for i in 0..3 {
            t.subscribe(1, i, P, u128::from(i), 3).expect("sub");
        }
        assert_eq!(
            t.subscribe(1, 9, P, 9, 3),
            Err(SubscribeError::LimitReached(3))
        );
        t.subscribe(1, 0, P, 0, 3)
            .expect("re-subscribing is idempotent");
        t.subscribe(2, 9, P, 9, 3)
            .expect("other connections are unaffected");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Sub(ConnId, u64, u128),
        Unsub(ConnId, u64, u128),
        Drop(ConnId),
    }

    fn op() -> impl Strategy<Value = Op> {
        let conn = 0u64..4;
        let sid = 0u64..3;
        let id = prop_oneof![Just(NULL_ID), 0u128..3];
        prop_oneof![
            (conn.clone(), sid.clone(), id.clone()).prop_map(|(c, s, i)| Op::Sub(c, s, i)),
            (conn.clone(), sid, id).prop_map(|(c, s, i)| Op::Unsub(c, s, i)),
            conn.prop_map(Op::Drop),
        ]
    }

    proptest! {
        /// The table always routes exactly as a naive model computed from the live records.
        #[test]
        fn matches_a_naive_model(ops in proptest::collection::vec(op(), 0..60)) {
            let mut t = SubscriptionTable::default();
            let mut model: HashSet<(ConnId, u64, u128)> = HashSet::new();
            for op in ops {
                match op {
                    Op::Sub(c, s, i) => {
                        t.subscribe(c, s, P, i, LIMIT).expect("below limit");
                        model.insert((c, s, i));
                    }
                    Op::Unsub(c, s, i) => {
                        let ok = t.unsubscribe(c, s, P, i).is_ok();
                        prop_assert_eq!(ok, model.remove(&(c, s, i)));
                    }
                    Op::Drop(c) => {
                        t.remove_connection(c);
                        model.retain(|(mc, _, _)| *mc != c);
                    }
                }
                for id in [NULL_ID, 0, 1, 2] {
                    for skip in 0..5 {
                        let mut want: Vec<ConnId> = model
                            .iter()
                            .filter(|(c, _, i)| (id == NULL_ID || *i == id) && *c != skip)
                            .map(|(c, _, _)| *c)
                            .collect();
                        want.sort_unstable();
                        want.dedup();
                        let mut got = t.all(&P, id, skip);
                        got.sort_unstable();
                        prop_assert_eq!(&got, &want);
                        let one = t.pick_one(&P, id, skip);
                        prop_assert_eq!(one.is_some(), !want.is_empty());
                        if let Some(c) = one {
                            prop_assert!(want.contains(&c));
                        }
                    }
                }
            }
            prop_assert_eq!(t.prefixes() == 0, model.is_empty());
        }
    }
}
