//! The relay core handling one Publish end to end without I/O (validate, verify the MAC, TTL,
//! lookup, copy and re-sign per receiver), as publishes/s: p2p (one subscriber) and fanout 16.
//! Bodies and fixtures (negotiated links, subscriptions, the signed Publish):
//! `slim_microbench::relay`.
// `criterion_group!` generates an undocumented `pub fn`; a bench binary has no API to document.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use slim_microbench::relay;

fn publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("relay");
    group.throughput(Throughput::Elements(1));
    for (label, receivers) in [("p2p", 1), ("fanout_16", 16)] {
        let mut fx = relay::relay_fixture(receivers).expect("relay fixture");
        let publish = fx.publish.clone();
        let mut out = Vec::with_capacity(receivers);
        group.bench_function(label, |b| {
            // The relay takes the message by value: the clone is made outside the timing; dropping
            // the outputs (the receivers' copies) is inside it.
            b.iter_batched(
                || publish.clone(),
                |msg| {
                    relay::publish_once(&mut fx, black_box(msg), &mut out);
                    black_box(&out);
                    out.clear();
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = publish
}
criterion_main!(benches);
