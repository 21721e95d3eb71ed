//! Subscription lookups with 10, 1 000 and 100 000 background subscriptions: exact id, wildcard
//! id, anycast pick and broadcast to 16 subscribers.
//!
//! Measured path: the reference relay's `SubscriptionTable` directly (it is public in
//! `slim_reference::relay::subscriptions`), so these are matching costs alone; the relay-core path
//! with validation, MAC and copies is `benches/relay.rs`. Bodies, fixtures and the exact shape of
//! the table: `slim_microbench::subscriptions`. Each table is built once per group, outside the
//! timed closures.
// `criterion_group!` generates an undocumented `pub fn`; a bench binary has no API to document.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use slim_microbench::subscriptions as subs;

fn lookups(c: &mut Criterion) {
    for n in subs::SIZES {
        let mut fx = subs::table_fixture(n).expect("subscription table fixture");
        let mut group = c.benchmark_group(format!("subscriptions/{n}"));
        if n >= 100_000 {
            group.sample_size(30);
        }
        group.bench_function("exact_id", |b| b.iter(|| subs::exact_id(black_box(&fx))));
        group.bench_function("wildcard_id", |b| {
            b.iter(|| subs::wildcard_id(black_box(&fx)))
        });
        group.bench_function("anycast_pick", |b| {
            b.iter(|| subs::anycast_pick(black_box(&mut fx)))
        });
        group.bench_function("broadcast_16", |b| {
            b.iter(|| subs::broadcast(black_box(&fx)))
        });
        group.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = lookups
}
criterion_main!(benches);
