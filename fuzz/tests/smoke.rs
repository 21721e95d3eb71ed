//! The stable-toolchain smoke run of every fuzz target (CI has no nightly, hence no libFuzzer).
//!
//! For each target: every seed ([`slim_fuzz::seeds`] and the committed files under
//! `fuzz/corpus/<target>/`, regressions included), then inputs derived from them by a seeded
//! mutation driver ([`slim_fuzz::mutate`]), up to [`MAX_INPUTS`] or [`BUDGET`] per target,
//! whichever comes first. The inputs are the same on every run; only how many fit in the
//! budget depends on the machine. A panic or a broken invariant in any input fails the test,
//! which prints the input in hex so it can be saved as a regression seed.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use slim_fuzz::mutate::{derive, Rng};

/// Mutated inputs per target, at most.
const MAX_INPUTS: usize = 3000;
/// Wall time per target for mutated inputs, at most (seeds always all run).
const BUDGET: Duration = Duration::from_secs(4);

/// Seeds of `target`: generated ones, then the committed files (sorted by name).
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut all = slim_fuzz::seeds::seeds(target);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    for path in files {
        if let Ok(data) = std::fs::read(&path) {
            all.push((format!("corpus/{target}/{}", path.display()), data));
        }
    }
    all
}

/// Runs one input; on failure, says which and shows it.
fn run_one(target: &slim_fuzz::Target, label: &str, data: &[u8]) {
    if catch_unwind(AssertUnwindSafe(|| (target.run)(data))).is_err() {
        let shown = &data[..data.len().min(4096)];
        panic!(
            "fuzz target `{}` failed on {label} ({} bytes); save it as \
             fuzz/corpus/{}/regression-<what> to keep it:\n{}",
            target.name,
            data.len(),
            target.name,
            hex::encode(shown)
        );
    }
}

fn smoke(name: &str) {
    let Some(target) = slim_fuzz::target(name) else {
        panic!("no target {name}");
    };
    let start = Instant::now();
    let corpus = corpus(name);
    assert!(!corpus.is_empty(), "{name} has no seeds");
    for (label, data) in &corpus {
        run_one(target, label, data);
    }
    let seeded = start.elapsed();
    let inputs: Vec<Vec<u8>> = corpus.iter().map(|(_, d)| d.clone()).collect();
    let max_len = inputs.iter().map(Vec::len).max().unwrap_or(0).max(4096);
    let mut rng = Rng::new(name.bytes().fold(0x51_1e, |h, b| h * 31 + u64::from(b)));
    let mutated = Instant::now();
    let mut n = 0;
    while n < MAX_INPUTS && mutated.elapsed() < BUDGET {
        let data = derive(&mut rng, &inputs, max_len);
        run_one(target, &format!("mutated input #{n}"), &data);
        n += 1;
    }
    eprintln!(
        "{name}: {} seeds in {:.2?}, {n} mutated inputs in {:.2?}",
        corpus.len(),
        seeded,
        mutated.elapsed()
    );
}

#[test]
fn frame() {
    smoke("frame");
}

#[test]
fn link() {
    smoke("link");
}

#[test]
fn relay() {
    smoke("relay");
}

#[test]
fn session() {
    smoke("session");
}

#[test]
fn reliable() {
    smoke("reliable");
}

#[test]
fn jwt() {
    smoke("jwt");
}

#[test]
fn config() {
    smoke("config");
}

#[test]
#[should_panic(expected = "failed on")]
fn a_failing_input_fails_the_smoke_test() {
    let broken = slim_fuzz::Target {
        name: "broken",
        run: |data| assert!(data.len() < 3, "an invariant broke"),
    };
    run_one(&broken, "a three-byte input", b"abc");
}

#[test]
fn every_target_is_smoked() {
    let here = include_str!("smoke.rs");
    for t in slim_fuzz::TARGETS {
        assert!(
            here.contains(&format!("smoke(\"{}\")", t.name)),
            "target {} has no smoke test",
            t.name
        );
    }
}

/// Not a check: prints, per target, the largest heap peak over the smoke inputs and the
/// largest peak per input byte above the fixed part, to calibrate the bounds in `src/lib.rs`
/// (`cargo test -p slim-fuzz --release --test smoke -- --ignored --nocapture alloc_profile`).
#[test]
#[ignore]
fn alloc_profile() {
    type Body = fn(&[u8]);
    let bodies: [(&str, Body, usize); 7] = [
        (
            "frame",
            slim_fuzz::targets::frame::frame_body,
            slim_fuzz::FRAME_BOUND.fixed,
        ),
        (
            "link",
            slim_fuzz::targets::link::link_body,
            slim_fuzz::LINK_BOUND.fixed,
        ),
        (
            "relay",
            slim_fuzz::targets::relay::relay_body,
            slim_fuzz::RELAY_BOUND.fixed,
        ),
        (
            "session",
            |d| {
                let _ = slim_fuzz::targets::session::session_body(d);
            },
            slim_fuzz::SESSION_BOUND.fixed,
        ),
        (
            "reliable",
            |d| {
                let _ = slim_fuzz::targets::reliable::reliable_body(d);
            },
            0,
        ),
        (
            "jwt",
            slim_fuzz::targets::jwt::jwt_body,
            slim_fuzz::JWT_BOUND.fixed,
        ),
        (
            "config",
            slim_fuzz::targets::config::config_body,
            slim_fuzz::CONFIG_BOUND.fixed,
        ),
    ];
    for (name, body, fixed) in bodies {
        let corpus = corpus(name);
        let inputs: Vec<Vec<u8>> = corpus.iter().map(|(_, d)| d.clone()).collect();
        let max_len = inputs.iter().map(Vec::len).max().unwrap_or(0).max(4096);
        let mut rng = Rng::new(7);
        let mut all = inputs.clone();
        all.extend((0..2000).map(|_| derive(&mut rng, &inputs, max_len)));
        let (mut peak, mut ratio, mut worst) = (0usize, 0f64, 0usize);
        for data in &all {
            let Ok(((), usage)) = catch_unwind(AssertUnwindSafe(|| {
                slim_fuzz::alloc::measure(|| body(data))
            })) else {
                continue;
            };
            peak = peak.max(usage.peak);
            let r = usage.peak.saturating_sub(fixed) as f64 / data.len().max(1) as f64;
            if r > ratio {
                ratio = r;
                worst = data.len();
            }
        }
        eprintln!(
            "{name}: max peak {peak} B; max (peak - {fixed}) / len = {ratio:.1} (len {worst})"
        );
    }
}
