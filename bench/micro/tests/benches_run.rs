//! Runs every benchmark body once, as `cargo test` would never run the bench targets themselves,
//! and checks it computes what the benchmark claims to measure.

use slim_microbench::{codec, mac, names, relay, subscriptions as subs};

#[test]
fn names_bodies() {
    for (label, len) in names::COMPONENT_LENGTHS {
        let c = names::component(len);
        assert_eq!(c.len(), len, "{label}");
        assert_eq!(names::hash(&c), slim_proto::names::hash_component(&c));
    }
    assert_eq!(names::component(6), "agntcy");
    let name = names::sample_name();
    let wire = names::to_proto(&name);
    assert_eq!(
        slim_proto::names::SlimName::from_proto(&wire).expect("wire name reads back"),
        name
    );
    let text = names::id_text(names::sample_id());
    assert_eq!(names::parse_id(&text), Some(names::sample_id()));
    assert_eq!(names::parse_name(&name.to_string()), Some(name));
}

#[test]
fn mac_bodies() {
    let link = mac::link_mac();
    let mut header = mac::routed_header();
    assert!(
        !mac::verify(&link, &header),
        "unsigned header must not verify"
    );
    mac::sign(&link, &mut header);
    assert!(mac::verify(&link, &header));
    assert_eq!(header, mac::signed_header(&link));
}

#[test]
fn codec_bodies() {
    for (label, size) in codec::PAYLOAD_SIZES {
        let msg = codec::signed_publish(size);
        let mut buf = Vec::new();
        let len = codec::encode(&msg, &mut buf);
        assert!(len > size, "{label}: {len} bytes encoded");
        assert_eq!(codec::decode(&buf), Some(msg), "{label} round trip");
    }
}

#[test]
fn subscription_bodies() {
    for n in subs::SIZES {
        let mut fx = subs::table_fixture(n).expect("fixture");
        assert_eq!(subs::exact_id(&fx).len(), 1, "n={n}");
        assert_eq!(subs::wildcard_id(&fx).len(), 1, "n={n}");
        let mut picked = std::collections::HashSet::new();
        for _ in 0..subs::GROUP_SIZE {
            picked.insert(subs::anycast_pick(&mut fx).expect("a group member"));
        }
        assert_eq!(picked.len(), subs::GROUP_SIZE, "round robin visits all");
        assert_eq!(subs::broadcast(&fx).len(), subs::GROUP_SIZE, "n={n}");
        assert!(!subs::broadcast(&fx).contains(&subs::PUBLISHER));
    }
}

#[test]
fn relay_bodies() {
    for receivers in [1, 16] {
        let mut fx = relay::relay_fixture(receivers).expect("fixture");
        for round in 0..3 {
            let mut out = Vec::new();
            let frame = fx.frame.clone();
            relay::publish_frame_once(&mut fx, frame, &mut out);
            assert!(
                out.iter()
                    .all(|o| matches!(o, slim_reference::relay::Output::SendFrame { .. })),
                "the frame path was taken"
            );
            assert_eq!(
                relay::check_deliveries(&fx, &out),
                Ok(receivers),
                "{receivers} receivers, frame path, round {round}"
            );
            out.clear();
            let mut encoded = Vec::new();
            let frame = fx.frame.clone();
            let n = relay::publish_decoded_once(&mut fx, &frame, &mut out, &mut encoded);
            assert_eq!(n, Ok(receivers));
            assert_eq!(
                relay::check_deliveries(&fx, &out),
                Ok(receivers),
                "{receivers} receivers, decoded path, round {round}"
            );
        }
        assert_eq!(fx.relay.stats().dropped_bad_mac, 0);
        assert_eq!(fx.relay.stats().publishes_delivered, 6 * receivers as u64);
    }
    assert!(relay::relay_fixture(0).is_err());
}

#[test]
fn mls_bodies() {
    use slim_microbench::mls;
    let kp = mls::key_package(&mls::identity(7)).expect("key package");
    assert_eq!(&kp[2..4], &[0, 5], "an MLSMessage(KeyPackage)");
    for ((backend, name), size) in mls::BACKENDS
        .into_iter()
        .flat_map(|b| mls::GROUP_SIZES.into_iter().map(move |s| (b, s)))
    {
        let started = std::time::Instant::now();
        let mut fx = mls::group_fixture_with(size, backend).expect("fixture");
        eprintln!(
            "group of {size} ({name}): fixture built in {:?}",
            started.elapsed()
        );
        assert_eq!(fx.moderator.members().len(), size);
        assert_eq!(fx.member.members(), fx.moderator.members());
        assert_eq!(fx.moderator.epoch(), 1 + 2 * 2, "past-epoch window filled");
        assert!(fx.moderator.epoch() > mls::MAX_PAST_EPOCHS);
        let plaintext = vec![0x42; mls::MESSAGE_SIZE];
        assert_eq!(
            mls::encrypt_decrypt(&mut fx, &plaintext),
            Ok(mls::MESSAGE_SIZE)
        );
        let kp = fx.new_key_package().expect("key package");
        let (commit, welcome) = mls::add_member(&mut fx, &kp).expect("add");
        assert!(!welcome.is_empty());
        fx.follow(&commit).expect("member follows");
        assert_eq!(fx.member.members().len(), size + 1);
        let token = fx.last_token();
        let commit = mls::remove_member(&mut fx, &token).expect("remove");
        fx.follow(&commit).expect("member follows");
        assert_eq!(fx.member.members().len(), size);
        assert_eq!(
            mls::encrypt_decrypt(&mut fx, &plaintext),
            Ok(mls::MESSAGE_SIZE)
        );
        assert_eq!(fx.member.epoch(), fx.moderator.epoch());
    }
    for (backend, name) in mls::BACKENDS {
        let opened = mls::Floor::new(backend).run().expect("floor");
        // The payload and a DER signature (8 to 72 bytes).
        assert!(
            (mls::MESSAGE_SIZE + 8..=mls::MESSAGE_SIZE + 72).contains(&opened),
            "{name}: {opened}"
        );
    }
}
