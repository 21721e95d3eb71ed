//! slim-fuzz: coverage-guided fuzz targets for slim-proto and slim-reference.
//!
//! Each target is a plain `pub fn name(data: &[u8])` at this crate's root that runs the target
//! body (in [`targets`]) under the counting allocator ([`alloc`]) and asserts its allocation
//! bound. A target *fails* by panicking: a panic in the code under test, a broken invariant
//! (an `assert!` of the harness) or an input that made the code allocate more than its bound.
//! The same functions are called by the libFuzzer binaries (`fuzz/libfuzzer/`, nightly) and by
//! the stable smoke test (`fuzz/tests/smoke.rs`, run by `cargo test --workspace`).
//!
//! | target | code under test |
//! |---|---|
//! | [`frame`] | `proto/src/frame.rs`, prost decoding of `Message`, `validate`, names, MAC, e2e |
//! | [`link`] | link negotiation: relay responder, client initiator, key agreement |
//! | [`relay`] | the relay core driven by operation sequences on several links |
//! | [`session`] | a session endpoint of `vectors/sessions/` fed frames, time and commands |
//! | [`reliable`] | the reliable-delivery receiver |
//! | [`jwt`] | the node's JWT verifier and header checks, identity tokens |
//! | [`config`] | `relay.yaml` and revocation-list parsing and validation |
//!
//! Seeds for every target come from [`seeds`] (built from `vectors/` and by hand) and from the
//! committed files under `fuzz/corpus/<target>/` (hand-made seeds and regressions).

pub mod alloc;
pub mod input;
pub mod mutate;
pub mod seeds;
pub mod targets;

use alloc::Bound;

/// Allocation bound of [`frame`]: decoding keeps the message, its re-encoding and a second
/// decoded copy, plus the egress frames; prost turns a 2-byte empty sub-message into a struct
/// of up to ~200 bytes, hence a large per-byte factor.
pub const FRAME_BOUND: Bound = Bound {
    per_byte: 1024,
    fixed: 64 * 1024,
};

/// Allocation bound of [`link`]: one pending link, one frame decoded, key material.
pub const LINK_BOUND: Bound = Bound {
    per_byte: 1024,
    fixed: 64 * 1024,
};

/// Allocation bound of [`relay`], the one the issue asks for: what the relay core holds per
/// byte it was sent (a subscription record, a copy per receiver of a Publish), plus the fixed
/// state of at most [`targets::relay::MAX_OPENS`] streams.
pub const RELAY_BOUND: Bound = Bound {
    per_byte: 1024,
    fixed: 256 * 1024,
};

/// Allocation bound of [`session`]: the endpoint's state per frame it was fed; the fixed part
/// covers an MLS group (openmls keeps a few key packages and tree nodes per member).
pub const SESSION_BOUND: Bound = Bound {
    per_byte: 1024,
    fixed: 4 * 1024 * 1024,
};

/// Allocation bound of [`jwt`]: a token, its decoded JSON parts, a key set.
pub const JWT_BOUND: Bound = Bound {
    per_byte: 1024,
    fixed: 64 * 1024,
};

/// Allocation bound of [`config`]: serde_yaml's event list and the parsed document; libyaml's
/// reader and scanner buffers alone take ~70 KiB whatever the input, hence the fixed part.
pub const CONFIG_BOUND: Bound = Bound {
    per_byte: 1024,
    fixed: 256 * 1024,
};

/// Frame reader and decoder target; see [`targets::frame::frame_body`] for what it catches.
pub fn frame(data: &[u8]) {
    let ((), usage) = alloc::measure(|| targets::frame::frame_body(data));
    FRAME_BOUND.check("frame", data.len(), usage);
}

/// Link negotiation target; see [`targets::link::link_body`] for what it catches.
pub fn link(data: &[u8]) {
    let ((), usage) = alloc::measure(|| targets::link::link_body(data));
    LINK_BOUND.check("link", data.len(), usage);
}

/// Relay core target; see [`targets::relay::relay_body`] for what it catches.
pub fn relay(data: &[u8]) {
    let ((), usage) = alloc::measure(|| targets::relay::relay_body(data));
    RELAY_BOUND.check("relay", data.len(), usage);
}

/// Session endpoint target; see [`targets::session::session_body`] for what it catches.
/// The bound applies to the bytes the endpoint was fed (signed by the harness) or the input,
/// whichever is larger.
pub fn session(data: &[u8]) {
    let (fed, usage) = alloc::measure(|| targets::session::session_body(data));
    SESSION_BOUND.check("session", data.len().max(fed), usage);
}

/// Reliable receiver target; see [`targets::reliable::reliable_body`] for what it catches.
/// Its bound is [`targets::reliable::ReliableBound`] (linear in the input and in `max_gap`).
pub fn reliable(data: &[u8]) {
    let (bound, usage) = alloc::measure(|| targets::reliable::reliable_body(data));
    bound.check(data.len(), usage);
}

/// JWT and credentials target; see [`targets::jwt::jwt_body`] for what it catches.
pub fn jwt(data: &[u8]) {
    let ((), usage) = alloc::measure(|| targets::jwt::jwt_body(data));
    JWT_BOUND.check("jwt", data.len(), usage);
}

/// Configuration target; see [`targets::config::config_body`] for what it catches.
pub fn config(data: &[u8]) {
    let ((), usage) = alloc::measure(|| targets::config::config_body(data));
    CONFIG_BOUND.check("config", data.len(), usage);
}

/// A target: its name (as in `fuzz/corpus/<name>/` and `fuzz/libfuzzer/fuzz_targets/`) and its
/// checked entry point.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The target's name.
    pub name: &'static str,
    /// The checked entry point.
    pub run: fn(&[u8]),
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "frame",
        run: frame,
    },
    Target {
        name: "link",
        run: link,
    },
    Target {
        name: "relay",
        run: relay,
    },
    Target {
        name: "session",
        run: session,
    },
    Target {
        name: "reliable",
        run: reliable,
    },
    Target {
        name: "jwt",
        run: jwt,
    },
    Target {
        name: "config",
        run: config,
    },
];

/// The target named `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}
