//! prost encode and decode of a signed Publish with 128 B and 16 KiB payloads, as bytes/s of the
//! encoded message. Bodies and fixtures: `slim_microbench::codec`.
// `criterion_group!` generates an undocumented `pub fn`; a bench binary has no API to document.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use slim_microbench::codec;

fn encode_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    for (label, size) in codec::PAYLOAD_SIZES {
        let msg = codec::signed_publish(size);
        let mut buf = Vec::new();
        let len = codec::encode(&msg, &mut buf);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("encode", label), &msg, |b, msg| {
            b.iter(|| codec::encode(black_box(msg), &mut buf))
        });
        let bytes = buf.clone();
        group.bench_with_input(BenchmarkId::new("decode", label), &bytes, |b, bytes| {
            b.iter(|| codec::decode(black_box(bytes)))
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = encode_decode
}
criterion_main!(benches);
