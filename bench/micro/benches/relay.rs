//! The relay core handling one Publish end to end without I/O, from the received bytes to the
//! bytes to send (verify the MAC, TTL, lookup, re-sign per receiver), as publishes/s: p2p (one
//! subscriber) and fanout 16, on the frame path the relay uses and on the decoded (prost) path.
//! Bodies and fixtures (negotiated links, subscriptions, the signed Publish):
//! `slim_microbench::relay`.
// `criterion_group!` generates an undocumented `pub fn`; a bench binary has no API to document.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use slim_microbench::relay;

fn publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("relay");
    group.throughput(Throughput::Elements(1));
    for (label, receivers) in [("p2p", 1), ("fanout_16", 16)] {
        let mut fx = relay::relay_fixture(receivers).expect("relay fixture");
        let frame = fx.frame.clone();
        let mut out = Vec::with_capacity(receivers);
        // The relay's path: from the received frame to one frame per receiver. Cloning the
        // frame is a reference count; dropping the outputs is inside the timing.
        group.bench_function(label, |b| {
            b.iter(|| {
                relay::publish_frame_once(&mut fx, black_box(frame.clone()), &mut out);
                black_box(&out);
                out.clear();
            })
        });
        // The same through prost: decode, handle, encode every copy.
        let mut encoded = Vec::with_capacity(receivers);
        group.bench_function(format!("{label}_decoded"), |b| {
            b.iter(|| {
                let n =
                    relay::publish_decoded_once(&mut fx, black_box(&frame), &mut out, &mut encoded)
                        .expect("the fixture's frame decodes");
                black_box((n, &encoded));
                out.clear();
                encoded.clear();
            })
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
