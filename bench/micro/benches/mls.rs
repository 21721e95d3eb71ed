//! MLS groups of the reference client: a 1 KiB data message (encrypt + decrypt), a key package,
//! the moderator's add (commit + Welcome) and remove commits, for groups of 2, 16 and 128; each
//! on the fast path (`mls/…`, ring) and on the provider it replaced (`mls_rustcrypto/…`), and the
//! cryptography's own floor for the same message (`mls_floor/{ring,rustcrypto}`).
//! Bodies and fixtures: `slim_microbench::mls`.
// `criterion_group!` generates an undocumented `pub fn`; a bench binary has no API to document.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use slim_microbench::mls;

fn key_package(c: &mut Criterion) {
    let identity = mls::identity(1);
    c.bench_function("mls/key_package", |b| {
        b.iter(|| mls::key_package(black_box(&identity)).expect("key package"))
    });
}

fn floor(c: &mut Criterion) {
    let mut group = c.benchmark_group("mls_floor");
    for (backend, name) in mls::BACKENDS {
        let floor = mls::Floor::new(backend);
        group.bench_function(name, |b| b.iter(|| floor.run().expect("floor")));
    }
    group.finish();
}

fn groups(c: &mut Criterion) {
    for (backend, name) in mls::BACKENDS {
        // The fast path keeps the ids it always had, so earlier results compare.
        let group_name = match backend {
            slim_reference::mls::CryptoBackend::Ring => "mls".to_string(),
            _ => format!("mls_{name}"),
        };
        groups_on(c, backend, &group_name);
    }
}

fn groups_on(c: &mut Criterion, backend: slim_reference::mls::CryptoBackend, name: &str) {
    let plaintext = vec![0x42; mls::MESSAGE_SIZE];
    let mut group = c.benchmark_group(name);
    for size in mls::GROUP_SIZES {
        let mut fx = mls::group_fixture_with(size, backend).expect("group fixture");
        group.bench_with_input(
            BenchmarkId::new("encrypt_decrypt_1KiB", size),
            &plaintext,
            |b, plaintext| {
                b.iter(|| mls::encrypt_decrypt(&mut fx, black_box(plaintext)).expect("round trip"))
            },
        );
        // Add and remove change the group: each timed add is undone by an untimed remove (and
        // the other way round), so the group keeps its size. The member follows every commit.
        group.bench_function(BenchmarkId::new("add_member", size), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let kp = fx.new_key_package().expect("key package");
                    let start = Instant::now();
                    let (commit, welcome) = mls::add_member(&mut fx, black_box(&kp)).expect("add");
                    timed += start.elapsed();
                    black_box(welcome);
                    fx.follow(&commit).expect("member follows the add");
                    let token = fx.last_token();
                    let commit = mls::remove_member(&mut fx, &token).expect("remove");
                    fx.follow(&commit).expect("member follows the removal");
                }
                timed
            })
        });
        group.bench_function(BenchmarkId::new("remove_member", size), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let kp = fx.new_key_package().expect("key package");
                    let (commit, _) = mls::add_member(&mut fx, &kp).expect("add");
                    fx.follow(&commit).expect("member follows the add");
                    let token = fx.last_token();
                    let start = Instant::now();
                    let commit = mls::remove_member(&mut fx, black_box(&token)).expect("remove");
                    timed += start.elapsed();
                    fx.follow(&commit).expect("member follows the removal");
                }
                timed
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = key_package, floor, groups
}
criterion_main!(benches);
