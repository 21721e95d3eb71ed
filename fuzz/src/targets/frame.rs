//! Target `frame`: the frame reader ([`PublishFrame`]), prost decoding of `Message`, and every
//! pure check slim-proto applies to a decoded message.
//!
//! The input is one received frame, as the relay's shell hands it to the core.

use std::sync::OnceLock;

use bytes::Bytes;
use prost::Message as _;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use slim_proto::e2e::{self, PayloadSignature};
use slim_proto::frame::PublishFrame;
use slim_proto::identity::IdentityKey;
use slim_proto::mac::{LinkMac, MacFields};
use slim_proto::names::SlimName;
use slim_proto::pb::{self, message::MessageType};
use slim_proto::validate::{self, Kind};
use slim_proto::{link, mac};
use slim_reference::session::wire;

/// The link key frames are re-signed with on egress (any fixed key does).
fn egress_mac() -> &'static LinkMac {
    static MAC: OnceLock<LinkMac> = OnceLock::new();
    MAC.get_or_init(|| LinkMac::new([0x5a; 32], "fuzz-egress-link"))
}

/// A fixed identity key for the command signature round trip.
fn identity_key() -> &'static IdentityKey {
    static KEY: OnceLock<IdentityKey> = OnceLock::new();
    KEY.get_or_init(|| IdentityKey::generate(&mut ChaCha20Rng::from_seed([9; 32])))
}

/// Runs one frame through the frame reader and the decoder.
///
/// Catches: panics and overflows in [`PublishFrame::parse`] / [`PublishFrame::egress`], in prost
/// decoding and in slim-proto's checks ([`validate`], names, MAC preimage, link negotiation
/// checks, the e2e AAD and signatures, the session layer's `wire::inbound`); and three
/// disagreements that would be silent bugs on the relay's fast path:
/// - the frame reader accepts a frame prost refuses, or reads a different header than prost
///   decodes (MAC fields, tag, TTL, fanout, `forward_to`, destination);
/// - the rewritten egress frame does not decode to exactly the message the decoded path sends
///   (TTL, ingress connection, link-local fields cleared, re-signed header);
/// - decode → encode → decode is not the identity, or a signed command does not verify.
pub fn frame_body(data: &[u8]) {
    let frame = Bytes::copy_from_slice(data);
    let parsed = PublishFrame::parse(&frame);
    let decoded = pb::Message::decode(frame.clone());
    if let Some(p) = &parsed {
        let msg = match &decoded {
            Ok(m) => m,
            Err(e) => panic!("the frame reader accepted a frame prost refuses: {e}"),
        };
        check_frame_path(p, msg);
    }
    let Ok(msg) = decoded else {
        return;
    };
    check_decoded(&msg);
}

/// The frame path reads what prost decodes, and writes what the decoded path would send.
fn check_frame_path(p: &PublishFrame, msg: &pb::Message) {
    assert_eq!(
        validate::validate(msg),
        Ok(Kind::Publish),
        "the frame reader accepted a frame that is not a valid Publish"
    );
    let Some(h) = validate::header(msg) else {
        panic!("a valid Publish without header");
    };
    assert_eq!(
        p.mac_fields(),
        MacFields::from(h),
        "MAC-covered fields differ"
    );
    assert_eq!(
        p.header_mac(),
        h.header_mac.as_deref(),
        "header_mac differs"
    );
    assert_eq!(p.ttl(), h.ttl, "ttl differs");
    assert_eq!(p.fanout(), h.fanout, "fanout differs");
    assert_eq!(p.forward_to(), h.forward_to, "forward_to differs");
    assert_eq!(
        p.destination(),
        h.destination.as_ref().and_then(|d| d.name.as_ref()),
        "destination differs"
    );
    // The relay drops ttl 0 and 1; what it forwards has ttl - 1 ≥ 1.
    let ttl = h.ttl.saturating_sub(1).max(1);
    let conn = u64::from(h.ttl) ^ 0x9e37_79b9;
    let mac = egress_mac();
    for tag in [Some(mac.tag_fields(&p.egress_mac_fields(ttl))), None] {
        let egress = p.egress(ttl, conn, tag.as_ref());
        let bytes = egress.to_vec();
        assert_eq!(
            bytes.len(),
            egress.len(),
            "EgressFrame::len is not its length"
        );
        let mut written = Vec::new();
        egress.write_to(&mut written);
        assert_eq!(written, bytes, "write_to and to_vec differ");
        let got = match pb::Message::decode(&bytes[..]) {
            Ok(m) => m,
            Err(e) => panic!("an egress frame does not decode: {e}"),
        };
        let mut want = msg.clone();
        if let Some(wh) = validate::header_mut(&mut want) {
            wh.ttl = ttl;
            wh.incoming_conn = Some(conn);
            wh.recv_from = None;
            wh.forward_to = None;
            match tag {
                Some(_) => mac.sign(wh),
                None => wh.header_mac = None,
            }
        }
        assert_eq!(
            got, want,
            "the egress frame is not what the decoded path sends"
        );
        if tag.is_some() {
            let gh = validate::header(&got).map(|gh| mac.verify(gh));
            assert_eq!(gh, Some(Ok(())), "the egress MAC does not verify");
        }
    }
}

/// Everything slim-proto and the session layer compute from a decoded message.
fn check_decoded(msg: &pb::Message) {
    let again = match pb::Message::decode(&msg.encode_to_vec()[..]) {
        Ok(m) => m,
        Err(e) => panic!("a decoded message re-encodes to bytes that do not decode: {e}"),
    };
    assert_eq!(&again, msg, "decode → encode → decode changed the message");

    let kind = validate::validate(msg);
    let header = validate::header(msg);
    if matches!(
        kind,
        Ok(Kind::Subscribe | Kind::Unsubscribe | Kind::Publish)
    ) {
        assert!(header.is_some(), "a valid routed message without header");
    }
    if let Some(h) = header {
        let _ = mac::preimage(h, "fuzz-link");
        let mac = egress_mac();
        let mut signed = h.clone();
        mac.sign(&mut signed);
        assert_eq!(
            mac.verify(&signed),
            Ok(()),
            "a header signed here does not verify"
        );
        for name in [&h.source, &h.destination].into_iter().flatten() {
            if let Ok(n) = SlimName::from_proto(name) {
                let text = n.to_string();
                match text.parse::<SlimName>() {
                    // Components with '/' do not survive the text form; the rest must.
                    Ok(back) if !n.components().iter().any(|c| c.contains('/')) => {
                        assert_eq!(back.id(), n.id(), "name id lost in text form {text:?}");
                    }
                    _ => {}
                }
            }
        }
    }
    match link::negotiation_payload(msg) {
        Ok(p) => {
            let _ = link::check_request(p, true);
            let _ = link::check_request(p, false);
            let _ = link::check_reply(p, &p.link_id, true);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Ok(inbound) = wire::inbound(msg) {
        let _ = (inbound.command(), inbound.app_blob(), inbound.identity());
        let _ = inbound.flag(wire::LEAVING_SESSION);
        let _ = e2e::header_aad(msg);
        if e2e::is_command(inbound.kind) {
            let mut signed = msg.clone();
            let key = identity_key();
            match e2e::sign_command(&mut signed, key) {
                Ok(()) => assert_eq!(
                    e2e::verify_command(&signed, &key.public_bytes()),
                    Ok(PayloadSignature::Verified),
                    "a command signed here does not verify"
                ),
                Err(e) => panic!("a command Publish could not be signed: {e}"),
            }
        }
    }
    if let Some(MessageType::Publish(_)) = &msg.message_type {
        let _ = slim_proto::messages::app_payload(msg);
    }
}
