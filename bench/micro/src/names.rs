//! Names: hashing one component, building a wire name, id text (benches/names.rs).
//!
//! These run for every Subscribe and for every name an application builds; the relay itself only
//! reads the hashes already on the wire.

use slim_proto::names::{self, SlimName};
use slim_proto::pb;

/// Component lengths the benchmark hashes, with their labels: a short word, 64 bytes, 1 KiB.
pub const COMPONENT_LENGTHS: [(&str, usize); 3] = [("short", 6), ("64B", 64), ("1KiB", 1024)];

/// An ASCII component of exactly `len` bytes (`"agntcy"` for 6).
pub fn component(len: usize) -> String {
    "agntcy".chars().cycle().take(len).collect()
}

/// Hashes one component (XXH64 with the 0xFF terminator), the operation timed by `names/hash`.
pub fn hash(component: &str) -> u64 {
    names::hash_component(component)
}

/// A typical application name with an instance id: `agntcy/default/travel-planner/<id>`.
pub fn sample_name() -> SlimName {
    SlimName::new("agntcy", "default", "travel-planner").with_id(sample_id())
}

/// A typical 128-bit instance id (random-looking, as the SDK derives them).
pub fn sample_id() -> u128 {
    0x6f1c_2a3b_9d4e_4f50_8a61_7b2c_3d4e_5f60
}

/// The full wire form (three hashes, id halves, string copies), timed by `names/to_proto`.
pub fn to_proto(name: &SlimName) -> pb::Name {
    name.to_proto()
}

/// An id as the real node prints it (hyphenated UUID), timed by `names/id_text`.
pub fn id_text(id: u128) -> String {
    names::id_text(id)
}

/// Parses an id from its text form, timed by `names/parse_id`; `None` if it does not parse.
pub fn parse_id(text: &str) -> Option<u128> {
    names::parse_id(text).ok()
}

/// Parses a full `org/ns/svc/<uuid>` name, timed by `names/parse_name`.
pub fn parse_name(text: &str) -> Option<SlimName> {
    text.parse().ok()
}
