//! Names: hashing one component, the full wire name, id text formatting and parsing.
//! Bodies and fixtures: `slim_microbench::names`.
// `criterion_group!` generates an undocumented `pub fn`; a bench binary has no API to document.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use slim_microbench::names;

fn hash(c: &mut Criterion) {
    let mut group = c.benchmark_group("names/hash");
    for (label, len) in names::COMPONENT_LENGTHS {
        let component = names::component(len);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label), &component, |b, s| {
            b.iter(|| names::hash(black_box(s)))
        });
    }
    group.finish();
}

fn wire_and_text(c: &mut Criterion) {
    let name = names::sample_name();
    let id = names::sample_id();
    let id_text = names::id_text(id);
    let name_text = name.to_string();
    let mut group = c.benchmark_group("names");
    group.bench_function("to_proto", |b| b.iter(|| names::to_proto(black_box(&name))));
    group.bench_function("id_text", |b| b.iter(|| names::id_text(black_box(id))));
    group.bench_function("parse_id", |b| {
        b.iter(|| names::parse_id(black_box(&id_text)))
    });
    group.bench_function("parse_name", |b| {
        b.iter(|| names::parse_name(black_box(&name_text)))
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
    targets = hash, wire_and_text
}
criterion_main!(benches);
