//! Subscription lookups in the reference relay's table (benches/subscriptions.rs).
//!
//! Measured path: `slim_reference::relay::subscriptions::SubscriptionTable`, called directly. The
//! table is public API of the reference crate, so these numbers are the matching cost alone,
//! without validation, MAC or copies (for those, see [`crate::relay`]).
//!
//! A fixture of size `n` holds `n` *background* subscriptions, each a distinct name
//! `org/ns-<i mod 64>/svc-<i>` with its own id on one of 1 024 connections, plus a *group* of 16
//! connections subscribed to `org/ns/group`, each under its own id. The lookups:
//! - `exact_id`: the subscribers of one background name with a specific id (the set a p2p publish
//!   resolves; one connection);
//! - `wildcard_id`: the subscribers of one background prefix with the wildcard id (one connection);
//! - `anycast_pick`: a round-robin pick of one group member (what a fanout-1 publish to the group
//!   does);
//! - `broadcast_16`: every group member (what a broadcast publish to the group resolves to).

use slim_proto::names::{hash_component, NULL_ID};
use slim_reference::relay::subscriptions::{Prefix, SubscriptionTable};
use slim_reference::relay::ConnId;

use crate::SetupError;

/// Table sizes the benchmark uses (number of background subscriptions).
pub const SIZES: [usize; 3] = [10, 1_000, 100_000];

/// Members of the group that `anycast_pick` and `broadcast_16` resolve.
pub const GROUP_SIZE: usize = 16;

/// Connections the background subscriptions are spread over.
const BACKGROUND_CONNS: u64 = 1_024;

/// Connection ids of the group members start here (after the background connections).
const GROUP_FIRST_CONN: ConnId = BACKGROUND_CONNS;

/// A connection that never subscribes: the publisher, skipped by every lookup as the relay does.
pub const PUBLISHER: ConnId = u64::MAX;

/// A populated subscription table and the keys the lookups use.
pub struct TableFixture {
    /// The table.
    pub table: SubscriptionTable,
    /// Prefix of the background name every exact and wildcard lookup asks for.
    pub background_prefix: Prefix,
    /// Id of that background name.
    pub background_id: u128,
    /// Prefix of the 16-member group.
    pub group_prefix: Prefix,
}

fn prefix(org: &str, namespace: &str, service: &str) -> Prefix {
    [
        hash_component(org),
        hash_component(namespace),
        hash_component(service),
    ]
}

fn background_name(i: usize) -> (Prefix, u128) {
    let namespace = format!("ns-{}", i % 64);
    let service = format!("svc-{i}");
    (prefix("org", &namespace, &service), i as u128 + 1)
}

/// Builds a table with `n` background subscriptions plus the 16-member group.
pub fn table_fixture(n: usize) -> Result<TableFixture, SetupError> {
    let mut table = SubscriptionTable::default();
    let limit = usize::MAX; // the per-connection limit is the relay's policy, not the table's
    for i in 0..n {
        let (p, id) = background_name(i);
        let conn = i as u64 % BACKGROUND_CONNS;
        table
            .subscribe(conn, i as u64 + 1, p, id, limit)
            .map_err(|e| SetupError(format!("background subscription {i}: {e}")))?;
    }
    let group_prefix = prefix("org", "ns", "group");
    for m in 0..GROUP_SIZE as u64 {
        table
            .subscribe(
                GROUP_FIRST_CONN + m,
                1,
                group_prefix,
                u128::from(m) + 1,
                limit,
            )
            .map_err(|e| SetupError(format!("group member {m}: {e}")))?;
    }
    let (background_prefix, background_id) = background_name(n / 2);
    Ok(TableFixture {
        table,
        background_prefix,
        background_id,
        group_prefix,
    })
}

/// `exact_id`: the subscribers of one name with a specific id.
pub fn exact_id(fx: &TableFixture) -> Vec<ConnId> {
    fx.table
        .all(&fx.background_prefix, fx.background_id, PUBLISHER)
}

/// `wildcard_id`: the subscribers of one prefix, any id.
pub fn wildcard_id(fx: &TableFixture) -> Vec<ConnId> {
    fx.table.all(&fx.background_prefix, NULL_ID, PUBLISHER)
}

/// `anycast_pick`: one group member, round robin (advances the table's cursor).
pub fn anycast_pick(fx: &mut TableFixture) -> Option<ConnId> {
    fx.table.pick_one(&fx.group_prefix, NULL_ID, PUBLISHER)
}

/// `broadcast_16`: every group member.
pub fn broadcast(fx: &TableFixture) -> Vec<ConnId> {
    fx.table.all(&fx.group_prefix, NULL_ID, PUBLISHER)
}
