//! The per-link header MAC: sign and verify of a typical routed header.
//! Bodies and fixtures: `slim_microbench::mac`.
// `criterion_group!` generates an undocumented `pub fn`; a bench binary has no API to document.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use slim_microbench::mac;

fn sign_verify(c: &mut Criterion) {
    let link = mac::link_mac();
    let mut group = c.benchmark_group("mac");
    let mut header = mac::routed_header();
    group.bench_function("sign", |b| {
        b.iter(|| mac::sign(black_box(&link), black_box(&mut header)))
    });
    let signed = mac::signed_header(&link);
    group.bench_function("verify", |b| {
        b.iter(|| mac::verify(black_box(&link), black_box(&signed)))
    });
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
    targets = sign_verify
}
criterion_main!(benches);
