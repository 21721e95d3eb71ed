//! The per-link header MAC: signing and verifying one routed header (benches/mac.rs).
//!
//! A relay verifies the MAC of every Subscribe, Unsubscribe and Publish it receives and signs every
//! copy it sends, so a routed Publish costs one verify plus one sign per receiver.

use slim_proto::mac::LinkMac;
use slim_proto::names::SlimName;
use slim_proto::pb;

/// A link's MAC state with a fixed key and a link id shaped like the SDK's (a UUID).
pub fn link_mac() -> LinkMac {
    LinkMac::new([0x5a; 32], "3f2b6c1e-8d4a-4e2f-9b7c-1a2d3e4f5a6b")
}

/// A typical routed header: source and destination with ids and string forms, an identity token of
/// 128 bytes, fanout 1, TTL 8, version set; no MAC yet.
pub fn routed_header() -> pb::SlimHeader {
    pb::SlimHeader {
        source: Some(
            SlimName::new("agntcy", "default", "alice")
                .with_id(0x1111_2222_3333_4444_5555_6666_7777_8888)
                .to_proto(),
        ),
        destination: Some(
            SlimName::new("agntcy", "default", "travel-planner")
                .with_id(0x9999_aaaa_bbbb_cccc_dddd_eeee_ffff_0000)
                .to_proto(),
        ),
        identity: "t".repeat(128),
        fanout: slim_proto::ANYCAST_FANOUT,
        version: slim_proto::SLIM_VERSION.to_string(),
        ttl: slim_proto::DEFAULT_TTL,
        ..Default::default()
    }
}

/// The same header, signed with `mac` (the input of `mac/verify`).
pub fn signed_header(mac: &LinkMac) -> pb::SlimHeader {
    let mut header = routed_header();
    mac.sign(&mut header);
    header
}

/// Signs `header` in place (computes the preimage and HMAC-SHA256), timed by `mac/sign`.
pub fn sign(mac: &LinkMac, header: &mut pb::SlimHeader) {
    mac.sign(header);
}

/// Verifies `header`'s MAC, timed by `mac/verify`; true when it verifies.
pub fn verify(mac: &LinkMac, header: &pb::SlimHeader) -> bool {
    mac.verify(header).is_ok()
}
