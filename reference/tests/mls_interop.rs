//! MLS groups of the reference client (openmls), checked for the behaviour and the wire shapes the
//! real SLIM (mls-rs) relies on (WIRE.md §5.5–§5.7, §6, §6.1).
//!
//! The cross-check with mls-rs itself is the session interop suite, which runs the real SLIM;
//! mls-rs is not a dependency here (the real SLIM's aws-lc provider needs cmake and clang and a
//! long build). This module was also checked once by hand against mls-rs 0.56 with the RustCrypto
//! provider (`mls-rs-crypto-rustcrypto` 0.23, suite 0x0002, `BaseConfig` defaults as in the real
//! SLIM), in a scratch crate outside the workspace: mls-rs moderator with an openmls member (join
//! from its Welcome, application messages both ways with AAD, an mls-rs add and remove commit
//! applied here, a message from the previous epoch, removal of the openmls member), and an
//! openmls moderator with mls-rs members (mls-rs key packages added, mls-rs joins from our
//! Welcome, our add and remove commits applied by mls-rs, the removed member cannot decrypt).

use std::time::{SystemTime, UNIX_EPOCH};

use openmls::prelude::{tls_codec::Deserialize as _, MlsMessageBodyIn, MlsMessageIn};
use p256::ecdsa::SigningKey;
use slim_reference::mls::{
    CommitOutcome, CredentialValidator, KeyPackageRejection, MlsError, MlsGroup, MlsIdentity,
};

/// openmls checks key package lifetimes against the system clock as well, so tests pass the real
/// time as `now_unix` (the library itself never reads a clock).
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A stand-in for a SLIM identity token: `sub:exp:hex(pubkey)`. The real token format is the
/// token code's business; MLS only carries it.
fn token(sub: &str, exp: u64, pubkey: &[u8]) -> Vec<u8> {
    format!("{sub}:{exp}:{}", hex(pubkey)).into_bytes()
}

fn sub_of(identity: &[u8]) -> &[u8] {
    identity.split(|&b| b == b':').next().unwrap_or(identity)
}

fn identity(sub: &str) -> MlsIdentity {
    let key = SigningKey::random(&mut rand_core::OsRng);
    let public = key.verifying_key().to_encoded_point(false);
    MlsIdentity::new(key.clone(), token(sub, now() + 3600, public.as_bytes()))
}

/// The SLIM rule on the stand-in token: not expired, and its pubkey is the leaf's key.
struct TokenCheck {
    now: u64,
}

impl CredentialValidator for TokenCheck {
    fn validate(&self, identity: &[u8], signature_key: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(identity).map_err(|e| e.to_string())?;
        let mut parts = text.split(':');
        let (_sub, exp, pubkey) = match (parts.next(), parts.next(), parts.next()) {
            (Some(s), Some(e), Some(p)) => (s, e, p),
            _ => return Err("not a token".into()),
        };
        let exp: u64 = exp.parse().map_err(|_| "bad exp".to_string())?;
        if exp <= self.now {
            return Err(format!("token expired at {exp}"));
        }
        if pubkey != hex(signature_key) {
            return Err("token pubkey is not the leaf signature key".into());
        }
        Ok(())
    }
}

fn valid() -> TokenCheck {
    TokenCheck { now: now() }
}

/// The moderator `a` and members `b`, `c`, all joined.
fn three_members() -> (MlsGroup, MlsGroup, MlsGroup) {
    let mut a = MlsGroup::create(identity("alice"), now()).expect("create group");
    let b_id = identity("bob");
    let (_commit, welcome) = a
        .add_member(&b_id.key_package(now()).expect("bob kp"), &valid(), now())
        .expect("add bob");
    let mut b = MlsGroup::join(b_id, &welcome, &valid()).expect("bob joins");
    let c_id = identity("carol");
    let (commit, welcome) = a
        .add_member(&c_id.key_package(now()).expect("carol kp"), &valid(), now())
        .expect("add carol");
    let outcome = b
        .process_commit(&commit, &valid())
        .expect("bob applies add");
    assert_eq!(sub_of(&outcome.added[0]), b"carol");
    let c = MlsGroup::join(c_id, &welcome, &valid()).expect("carol joins");
    (a, b, c)
}

fn wire_format(message: &[u8]) -> u16 {
    // MLSMessage: u16 version (1 = mls10), u16 wire_format (RFC 9420 §6).
    assert_eq!(&message[..2], &[0, 1], "MLS 1.0");
    u16::from_be_bytes([message[2], message[3]])
}

#[test]
fn three_members_add_remove_and_exchange_messages_with_aad() {
    let (mut a, mut b, mut c) = three_members();
    assert_eq!(a.epoch(), 2);
    assert_eq!(b.epoch(), 2);
    assert_eq!(c.epoch(), 2);
    assert_eq!(a.members(), b.members());
    assert_eq!(a.members(), c.members());
    let subs: Vec<_> = a.members().iter().map(|m| sub_of(m).to_vec()).collect();
    assert_eq!(
        subs,
        vec![b"alice".to_vec(), b"bob".to_vec(), b"carol".to_vec()]
    );

    let aad = b"header integrity aad".to_vec();
    let from_a = a.encrypt(&aad, b"hello from alice").expect("encrypt");
    assert_eq!(
        wire_format(&from_a),
        2,
        "application data is a PrivateMessage"
    );
    for member in [&mut b, &mut c] {
        let got = member.decrypt(&from_a).expect("decrypt");
        assert_eq!(got.plaintext, b"hello from alice");
        assert_eq!(got.aad, aad);
        assert_eq!(sub_of(&got.sender), b"alice");
    }
    let from_c = c.encrypt(b"other aad", b"hi from carol").expect("encrypt");
    let got = b.decrypt(&from_c).expect("bob decrypts carol");
    assert_eq!(
        (got.plaintext.as_slice(), got.aad.as_slice()),
        (&b"hi from carol"[..], &b"other aad"[..])
    );
    assert_eq!(
        a.decrypt(&from_c).expect("alice decrypts carol").aad,
        b"other aad"
    );
    // Each message gets its own AAD: the second message without one has an empty AAD.
    let plain = a.encrypt(b"", b"no aad").expect("encrypt");
    assert_eq!(b.decrypt(&plain).expect("decrypt").aad, b"");

    // Remove carol by her `sub`, as the session layer does (tokens rotate).
    let carol = a
        .find_member(|id| sub_of(id) == b"carol")
        .expect("carol is a member");
    let commit = a
        .remove_member(|id| sub_of(id) == b"carol")
        .expect("remove carol");
    assert_eq!(
        wire_format(&commit),
        1,
        "commits are PublicMessages, as mls-rs sends them"
    );
    let outcome = b
        .process_commit(&commit, &valid())
        .expect("bob applies removal");
    assert_eq!(
        outcome,
        CommitOutcome {
            removed_self: false,
            added: vec![],
            removed: vec![carol],
        }
    );
    let outcome = c
        .process_commit(&commit, &valid())
        .expect("carol learns she is out");
    assert!(outcome.removed_self);
    assert!(!c.is_active());
    assert_eq!(c.encrypt(b"", b"x"), Err(MlsError::NotAMember));
    assert_eq!(a.members().len(), 2);
    assert_eq!(a.members(), b.members());

    let after = a
        .encrypt(&aad, b"carol must not read this")
        .expect("encrypt");
    assert_eq!(
        b.decrypt(&after).expect("bob decrypts").plaintext,
        b"carol must not read this"
    );
    assert!(
        c.decrypt(&after).is_err(),
        "a removed member decrypts nothing"
    );
    assert!(a.find_member(|id| sub_of(id) == b"carol").is_none());
    assert_eq!(
        a.remove_member(|id| sub_of(id) == b"carol"),
        Err(MlsError::NoSuchMember)
    );
}

#[test]
fn a_removed_member_cannot_decrypt_later_epochs() {
    let (mut a, mut b, mut c) = three_members();
    let commit = a
        .remove_member(|id| sub_of(id) == b"carol")
        .expect("remove carol");
    b.process_commit(&commit, &valid()).expect("bob applies");
    // Carol never sees the commit: she still holds epoch-2 keys, which must not open epoch 3.
    let m3 = a.encrypt(b"aad", b"epoch 3").expect("encrypt");
    assert!(
        matches!(c.decrypt(&m3), Err(MlsError::Decrypt(_))),
        "{:?}",
        c.decrypt(&m3)
    );
    // Nor later epochs: add dave, then talk.
    let d_id = identity("dave");
    let (commit, welcome) = a
        .add_member(&d_id.key_package(now()).expect("kp"), &valid(), now())
        .expect("add dave");
    b.process_commit(&commit, &valid()).expect("bob applies");
    assert!(
        c.process_commit(&commit, &valid()).is_err(),
        "carol cannot follow the group"
    );
    let mut d = MlsGroup::join(d_id, &welcome, &valid()).expect("dave joins");
    let m4 = b.encrypt(b"aad", b"epoch 4").expect("encrypt");
    assert_eq!(d.decrypt(&m4).expect("dave reads").plaintext, b"epoch 4");
    assert_eq!(a.decrypt(&m4).expect("alice reads").plaintext, b"epoch 4");
    assert!(c.decrypt(&m4).is_err());
    // What a removed member can still do: send in an epoch it knew, which the others accept for
    // as long as they keep that epoch's keys (MLS semantics, mls-rs alike). Two more commits
    // push epoch 2 out of the three kept, and then the message is refused.
    let from_c = c
        .encrypt(b"aad", b"still here?")
        .expect("carol's stale group still encrypts");
    let got = a
        .decrypt(&from_c)
        .expect("epoch 2 is one of the three kept");
    assert_eq!(sub_of(&got.sender), b"carol");
    for name in ["e1", "e2"] {
        let member = identity(name);
        let (commit, _) = a
            .add_member(&member.key_package(now()).expect("kp"), &valid(), now())
            .expect("add");
        b.process_commit(&commit, &valid()).expect("bob follows");
    }
    assert_eq!(b.epoch(), 6);
    assert!(matches!(b.decrypt(&from_c), Err(MlsError::Decrypt(_))));
}

#[test]
fn messages_from_the_three_previous_epochs_still_decrypt() {
    let (mut a, mut b, _c) = three_members();
    // Bob sends at epoch 2; alice commits before she reads it (a SLIM data message racing a
    // GroupUpdate).
    let early = b.encrypt(b"aad-2", b"sent at epoch 2").expect("encrypt");
    let mut held = vec![];
    for i in 0..4 {
        held.push(
            b.encrypt(b"aad", format!("held {i}").as_bytes())
                .expect("encrypt"),
        );
        let member = identity(&format!("m{i}"));
        let (commit, _welcome) = a
            .add_member(&member.key_package(now()).expect("kp"), &valid(), now())
            .expect("add");
        b.process_commit(&commit, &valid()).expect("bob follows");
        if i == 0 {
            let got = a.decrypt(&early).expect("one epoch back still decrypts");
            assert_eq!(
                (got.plaintext, got.aad),
                (b"sent at epoch 2".to_vec(), b"aad-2".to_vec())
            );
        }
    }
    // Now at epoch 6. held[i] was sent at epoch 2 + i: epochs 3, 4, 5 are the three kept.
    assert_eq!(a.epoch(), 6);
    for (i, message) in held.iter().enumerate().skip(1) {
        let got = a.decrypt(message).expect("within max_past_epochs");
        assert_eq!(got.plaintext, format!("held {i}").into_bytes());
    }
    assert!(
        matches!(a.decrypt(&held[0]), Err(MlsError::Decrypt(_))),
        "four epochs back is too old"
    );
}

#[test]
fn key_packages_are_checked_before_they_are_added() {
    let mut a = MlsGroup::create(identity("alice"), now()).expect("create");
    let rejection = |result: Result<(Vec<u8>, Vec<u8>), MlsError>| match result {
        Err(MlsError::KeyPackageRejected(r)) => r,
        other => panic!("expected a rejected key package, got {other:?}"),
    };

    // Not a key package at all.
    let r = rejection(a.add_member(b"\x00\x01\x00\x05garbage", &valid(), now()));
    assert!(matches!(r, KeyPackageRejection::Malformed(_)), "{r}");
    // Another MLS message in its place.
    let other = a.encrypt(b"", b"x").expect("encrypt");
    let r = rejection(a.add_member(&other, &valid(), now()));
    assert!(
        matches!(&r, KeyPackageRejection::Malformed(m) if m.contains("PrivateMessage")),
        "{r}"
    );

    // Expired: made 100 days ago with the default lifetime of 84 days.
    let bob = identity("bob");
    let old = bob.key_package(now() - 100 * 24 * 3600).expect("kp");
    let r = rejection(a.add_member(&old, &valid(), now()));
    assert!(matches!(r, KeyPackageRejection::Expired { .. }), "{r}");
    assert!(r.to_string().contains("expired"), "{r}");
    // Valid for openmls' clock, expired for the caller's (the library checks `now_unix` too).
    let fresh = bob.key_package(now()).expect("kp");
    let r = rejection(a.add_member(&fresh, &valid(), now() + 90 * 24 * 3600));
    assert!(matches!(r, KeyPackageRejection::Expired { .. }), "{r}");
    // Not yet valid: made by a clock two hours ahead.
    let future = bob.key_package(now() + 2 * 3600).expect("kp");
    let r = rejection(a.add_member(&future, &valid(), now()));
    assert!(matches!(r, KeyPackageRejection::NotYetValid { .. }), "{r}");

    // Wrong key: a token naming another key than the one that signs the key package.
    let other_key = SigningKey::random(&mut rand_core::OsRng);
    let stolen = bob.with_token(token(
        "bob",
        now() + 3600,
        other_key.verifying_key().to_encoded_point(false).as_bytes(),
    ));
    let r = rejection(a.add_member(&stolen.key_package(now()).expect("kp"), &valid(), now()));
    assert_eq!(
        r,
        KeyPackageRejection::Credential("token pubkey is not the leaf signature key".into())
    );
    // An expired token.
    let late = bob.with_token(token("bob", now() - 1, bob.signature_key()));
    let r = rejection(a.add_member(&late.key_package(now()).expect("kp"), &valid(), now()));
    assert!(
        matches!(&r, KeyPackageRejection::Credential(m) if m.contains("expired")),
        "{r}"
    );

    // A tampered key package: flip a byte of its signature (the last bytes).
    let mut tampered = fresh.clone();
    let last = tampered.len() - 5;
    tampered[last] ^= 0x55;
    let r = rejection(a.add_member(&tampered, &valid(), now()));
    assert!(
        matches!(
            r,
            KeyPackageRejection::Invalid(_) | KeyPackageRejection::Malformed(_)
        ),
        "{r}"
    );

    // None of that changed the group; the genuine key package still goes in.
    assert_eq!(a.epoch(), 0);
    a.add_member(&fresh, &valid(), now())
        .expect("the valid key package is accepted");
    assert_eq!(a.epoch(), 1);
}

#[test]
fn members_refused_by_the_validator_are_not_joined_or_applied() {
    let mut a = MlsGroup::create(identity("alice"), now()).expect("create");
    let b_id = identity("bob");
    let (_, welcome) = a
        .add_member(&b_id.key_package(now()).expect("kp"), &valid(), now())
        .expect("add bob");
    // Bob's validator says alice's token expired: he does not join.
    let strict = TokenCheck { now: now() + 7200 };
    match MlsGroup::join(b_id.clone(), &welcome, &strict) {
        Err(MlsError::MemberRejected { leaf, reason }) => {
            assert_eq!(leaf, 0);
            assert!(reason.contains("expired"), "{reason}");
        }
        other => panic!(
            "expected a rejected member, got {:?}",
            other.map(|g| g.epoch())
        ),
    }

    // A commit that adds a member bob's validator refuses is not applied.
    let b_id = identity("bob");
    let mut a = MlsGroup::create(identity("alice"), now()).expect("create");
    let (_, welcome) = a
        .add_member(&b_id.key_package(now()).expect("kp"), &valid(), now())
        .expect("add bob");
    let mut b = MlsGroup::join(b_id, &welcome, &valid()).expect("bob joins");
    let c_id = identity("carol");
    let (commit, _) = a
        .add_member(&c_id.key_package(now()).expect("kp"), &valid(), now())
        .expect("add carol");
    let no_carol = |id: &[u8], _key: &[u8]| -> Result<(), String> {
        if sub_of(id) == b"carol" {
            Err("carol is banned".into())
        } else {
            Ok(())
        }
    };
    match b.process_commit(&commit, &no_carol) {
        Err(MlsError::MemberRejected { reason, .. }) => assert_eq!(reason, "carol is banned"),
        other => panic!("expected a rejected member, got {other:?}"),
    }
    assert_eq!(b.epoch(), 1, "the refused commit was not applied");
    assert_eq!(b.members().len(), 2);
    // The same commit passes a validator that accepts carol.
    b.process_commit(&commit, &valid()).expect("applies");
    assert_eq!(b.epoch(), 2);
}

#[test]
fn wire_shapes_match_what_slim_exchanges() {
    let alice = identity("alice");
    let kp = alice.key_package(now()).expect("kp");
    // MLSMessage(mls10, mls_key_package = 5) whose KeyPackage is mls10 / suite 0x0002.
    assert_eq!(wire_format(&kp), 5);
    assert_eq!(&kp[4..8], &[0, 1, 0, 2]);
    // Round trip: parses back (exactly, no trailing bytes) into a key package whose credential
    // is the token and whose signature key is the SLIM identity key.
    let message = MlsMessageIn::tls_deserialize_exact(&kp).expect("parses");
    let MlsMessageBodyIn::KeyPackage(parsed) = message.extract() else {
        panic!("not a key package")
    };
    let credential = parsed.unverified_credential();
    assert_eq!(credential.credential.serialized_content(), alice.token());
    assert_eq!(credential.signature_key.as_slice(), alice.signature_key());
    assert_eq!(alice.signature_key().len(), 65);
    assert_eq!(alice.signature_key()[0], 0x04, "uncompressed SEC1 point");
    // The same bytes are accepted by a group, i.e. the serialization is lossless.
    let mut group = MlsGroup::create(identity("mod"), now()).expect("create");
    let (commit, welcome) = group.add_member(&kp, &valid(), now()).expect("add");
    assert_eq!(wire_format(&commit), 1, "Commit: PublicMessage");
    assert_eq!(wire_format(&welcome), 3, "Welcome");
    // Two key packages from the same identity differ (fresh HPKE keys each time).
    assert_ne!(kp, alice.key_package(now()).expect("kp"));
}

#[test]
fn a_welcome_is_usable_once_and_only_by_its_addressee() {
    let mut a = MlsGroup::create(identity("alice"), now()).expect("create");
    let b_id = identity("bob");
    let (_, welcome) = a
        .add_member(&b_id.key_package(now()).expect("kp"), &valid(), now())
        .expect("add");
    let stranger = identity("mallory");
    let _ = stranger.key_package(now()).expect("kp");
    assert!(MlsGroup::join(stranger, &welcome, &valid()).is_err());
    let b = MlsGroup::join(b_id.clone(), &welcome, &valid()).expect("bob joins");
    assert_eq!(b.group_id(), a.group_id());
    assert!(
        MlsGroup::join(b_id, &welcome, &valid()).is_err(),
        "the key package's private keys are consumed"
    );
    // Not a Welcome.
    let kp = identity("x").key_package(now()).expect("kp");
    assert!(matches!(
        MlsGroup::join(identity("x"), &kp, &valid()),
        Err(MlsError::UnexpectedMessage {
            expected: "Welcome",
            found: "KeyPackage"
        })
    ));
}

#[test]
fn several_members_join_from_one_commit_and_one_welcome() {
    let mut a = MlsGroup::create(identity("alice"), now()).expect("create");
    let (b_id, c_id) = (identity("bob"), identity("carol"));
    let (b_kp, c_kp) = (
        b_id.key_package(now()).expect("kp"),
        c_id.key_package(now()).expect("kp"),
    );
    // One bad key package: nothing is added.
    let late = c_id.with_token(token("carol", now() - 1, c_id.signature_key()));
    let late_kp = late.key_package(now()).expect("kp");
    assert!(matches!(
        a.add_members(&[&b_kp, &late_kp], &valid(), now()),
        Err(MlsError::KeyPackageRejected(
            KeyPackageRejection::Credential(_)
        ))
    ));
    assert_eq!((a.epoch(), a.members().len()), (0, 1));

    let (_commit, welcome) = a
        .add_members(&[&b_kp, &c_kp], &valid(), now())
        .expect("add both");
    assert_eq!((a.epoch(), a.members().len()), (1, 3));
    let mut b = MlsGroup::join(b_id, &welcome, &valid()).expect("bob joins");
    let mut c = MlsGroup::join(c_id, &welcome, &valid()).expect("carol joins");
    let m = c.encrypt(b"aad", b"from carol").expect("encrypt");
    assert_eq!(b.decrypt(&m).expect("bob reads").plaintext, b"from carol");
    assert_eq!(a.decrypt(&m).expect("alice reads").plaintext, b"from carol");
}
