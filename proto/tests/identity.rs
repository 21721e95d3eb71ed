//! Identity keys, tokens, derived name ids and end-to-end signatures (slim-proto `identity`,
//! `e2e`): round trips, every tampering breaks verification, expiry boundaries, and the typed
//! error of each malformed input. The cross-check with the real SDK is
//! `reference/tests/identity_real_slim.rs`.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use p256::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use proptest::prelude::*;
use prost::Message as _;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sha2::Sha256;
use slim_proto::e2e::{self, E2eError, PayloadSignature};
use slim_proto::identity::{
    app_id, channel_ids, verify_der, Credentials, IdentityKey, JwtKey, SharedSecret,
    SignatureError, TokenError,
};
use slim_proto::names::SlimName;
use slim_proto::pb::{self, message::MessageType};

const SECRET: &str = "0123456789abcdef0123456789abcdef-test";
const NOW: u64 = 1_767_225_600;

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn key(seed: u64) -> IdentityKey {
    IdentityKey::generate(&mut rng(seed))
}

fn secret() -> SharedSecret {
    SharedSecret::new(SECRET).expect("a 32+ byte secret")
}

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

/// A shared-secret token built by hand from the documented format (WIRE.md §7), for inputs
/// `issue` refuses to make.
fn forge(id: &str, ts: &str, nonce: &str, claims_b64: &str, secret: &[u8]) -> String {
    let msg = format!("{id}:{ts}:{nonce}:{claims_b64}");
    format!(
        "{msg}:{}",
        URL_SAFE_NO_PAD.encode(hmac(secret, msg.as_bytes()))
    )
}

// ---------------------------------------------------------------------------------------------
// Keys

#[test]
fn public_key_is_an_uncompressed_sec1_point_and_signatures_are_der() {
    let k = key(1);
    let public = k.public_bytes();
    assert_eq!(public[0], 0x04);
    assert_eq!(
        &public[..],
        k.signing_key()
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
    );
    let sig = k.sign_der(b"hello");
    assert_eq!(sig[0], 0x30, "DER SEQUENCE");
    assert!((8..=72).contains(&sig.len()), "{} bytes", sig.len());
    verify_der(&public, b"hello", &sig).expect("verifies with the 65-byte key");
    let compressed = k.signing_key().verifying_key().to_encoded_point(true);
    verify_der(compressed.as_bytes(), b"hello", &sig).expect("and with the 33-byte key");
    let same = IdentityKey::from_signing_key(k.signing_key().clone());
    assert_eq!(same.public_bytes(), public);
}

#[test]
fn signature_errors_are_typed() {
    let k = key(2);
    let sig = k.sign_der(b"m");
    assert_eq!(
        verify_der(&k.public_bytes(), b"other", &sig),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify_der(&key(3).public_bytes(), b"m", &sig),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify_der(&k.public_bytes(), b"m", &sig[1..]),
        Err(SignatureError::BadEncoding("DER ECDSA P-256"))
    );
    assert_eq!(
        verify_der(&[4u8; 10], b"m", &sig),
        Err(SignatureError::BadKeyLength(10))
    );
    let mut not_on_curve = k.public_bytes();
    not_on_curve[64] ^= 1;
    assert_eq!(
        verify_der(&not_on_curve, b"m", &sig),
        Err(SignatureError::BadKey("P-256"))
    );
    let text = SignatureError::BadKeyLength(10).to_string();
    assert!(text.contains("65 or 33") && text.contains("32"), "{text}");
}

#[test]
fn ed25519_keys_verify_as_the_sdk_curve25519_build_signs() {
    use ed25519_dalek::Signer as _;
    let sk = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let public = sk.verifying_key().to_bytes();
    let sig = sk.sign(b"aad").to_bytes();
    verify_der(&public, b"aad", &sig).expect("Ed25519 verifies");
    assert_eq!(
        verify_der(&public, b"aad!", &sig),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify_der(&public, b"aad", &sig[..63]),
        Err(SignatureError::BadEncoding("Ed25519 (64-byte)"))
    );
}

// ---------------------------------------------------------------------------------------------
// Shared-secret tokens

#[test]
fn secret_must_be_at_least_32_bytes() {
    assert_eq!(
        SharedSecret::new([b'x'; 31]).map(|_| ()),
        Err(TokenError::SecretTooShort(31))
    );
    assert!(SharedSecret::new([b'x'; 32]).is_ok());
    assert!(TokenError::SecretTooShort(31)
        .to_string()
        .contains("at least 32"));
}

#[test]
fn ids_the_format_cannot_carry_are_refused() {
    let s = secret();
    for bad in ["", "a:b", "a b", "a\tb", "a\nb", "a\u{00a0}b"] {
        assert_eq!(
            s.issue(bad, &[4; 65], [0; 12], NOW),
            Err(TokenError::BadId(bad.to_string())),
            "{bad:?}"
        );
    }
    s.issue("org/ns/alice_AbC12345", &[4; 65], [0; 12], NOW)
        .expect("'/' and '_' are fine");
}

#[test]
fn token_has_the_sdk_layout() {
    let k = key(4);
    let nonce = [9u8; 12];
    let token = secret()
        .issue("org/ns/alice_x1", &k.public_bytes(), nonce, NOW)
        .expect("issue");
    let parts: Vec<&str> = token.split(':').collect();
    assert_eq!(parts.len(), 5, "{token}");
    assert_eq!(parts[0], "org/ns/alice_x1");
    assert_eq!(parts[1], NOW.to_string());
    assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).expect("b64url"), nonce);
    let claims = URL_SAFE_NO_PAD.decode(parts[3]).expect("b64url");
    assert_eq!(
        String::from_utf8(claims).expect("utf8"),
        format!("{{\"pubkey\":\"{}\"}}", STANDARD.encode(k.public_bytes())),
        "exactly serde_json's compact output, as the SDK"
    );
    let signed = &token[..token.rfind(':').expect("colon")];
    assert_eq!(
        URL_SAFE_NO_PAD.decode(parts[4]).expect("b64url"),
        hmac(SECRET.as_bytes(), signed.as_bytes()),
        "HMAC-SHA256(secret, everything before the last ':')"
    );
}

#[test]
fn expiry_boundaries() {
    let s = secret();
    let token = s.issue("a", &[4; 65], [1; 12], NOW).expect("issue");
    for now in [NOW - 5, NOW, NOW + 3600] {
        s.verify(&token, now)
            .unwrap_or_else(|e| panic!("valid at {now}: {e}"));
    }
    assert_eq!(
        s.verify(&token, NOW + 3601),
        Err(TokenError::Expired { age: 3601 })
    );
    assert_eq!(
        s.verify(&token, NOW - 6),
        Err(TokenError::NotYetValid { ahead: 6 })
    );
    assert_eq!(
        TokenError::Expired { age: 4000 }.to_string(),
        "token expired 400 s ago (issued 4000 s ago; tokens are valid 3600 s)"
    );
    let claims = s.verify(&token, NOW).expect("valid");
    assert_eq!((claims.iat, claims.exp), (NOW, NOW + 3600));
}

#[test]
fn malformed_tokens_give_the_right_error() {
    let s = secret();
    let key = SECRET.as_bytes();
    let nonce = URL_SAFE_NO_PAD.encode([0u8; 12]);
    let good_claims =
        URL_SAFE_NO_PAD.encode(format!("{{\"pubkey\":\"{}\"}}", STANDARD.encode([4u8; 65])));
    let ts = NOW.to_string();
    let malformed = |t: &str| matches!(s.verify(t, NOW), Err(TokenError::Malformed(_)));
    assert!(malformed(""));
    assert!(malformed("no-separators"));
    assert!(malformed("a:b:c"));
    assert!(malformed(&format!("a:{ts}:{nonce}:{good_claims}:x:y")));
    assert!(malformed(&forge("a", "12x", &nonce, &good_claims, key)));
    assert!(malformed(&forge("a", "-1", &nonce, &good_claims, key)));
    let mac_short = format!("a:{ts}:{nonce}:{good_claims}:{}", "A".repeat(42));
    assert!(malformed(&mac_short));
    let mac_bad_chars = format!("a:{ts}:{nonce}:{good_claims}:{}", "*".repeat(43));
    assert!(malformed(&mac_bad_chars));
    // Well-formed but wrong MAC.
    let other = forge(
        "a",
        &ts,
        &nonce,
        &good_claims,
        b"another-secret-of-at-least-32-bytes!",
    );
    assert_eq!(s.verify(&other, NOW), Err(TokenError::MacMismatch));
    assert!(TokenError::MacMismatch
        .to_string()
        .contains("wrong shared secret"));
    // MAC fine, claims not usable.
    assert_eq!(
        s.verify(&forge("a", &ts, &nonce, "", key), NOW),
        Err(TokenError::NoPubkey),
        "no claims at all"
    );
    let no_pubkey = URL_SAFE_NO_PAD.encode("{\"role\":\"x\"}");
    assert_eq!(
        s.verify(&forge("a", &ts, &nonce, &no_pubkey, key), NOW),
        Err(TokenError::NoPubkey)
    );
    let numeric = URL_SAFE_NO_PAD.encode("{\"pubkey\":42}");
    assert_eq!(
        s.verify(&forge("a", &ts, &nonce, &numeric, key), NOW),
        Err(TokenError::NoPubkey)
    );
    let not_b64 = URL_SAFE_NO_PAD.encode("{\"pubkey\":\"not base64!\"}");
    assert_eq!(
        s.verify(&forge("a", &ts, &nonce, &not_b64, key), NOW),
        Err(TokenError::BadPubkey)
    );
    let not_json = URL_SAFE_NO_PAD.encode("{pubkey");
    assert!(malformed(&forge("a", &ts, &nonce, &not_json, key)));
    assert!(malformed(&forge("a", &ts, &nonce, "!!", key)));
    // The timestamp is checked before the MAC, as in the SDK.
    let old = forge("a", "1", &nonce, &good_claims, b"wrong");
    assert!(matches!(
        s.verify(&old, NOW),
        Err(TokenError::Expired { .. })
    ));
}

fn token_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9/_.-]{1,40}"
}

proptest! {
    #[test]
    fn shared_secret_round_trip(
        id in token_id(),
        pubkey in proptest::collection::vec(any::<u8>(), 0..80),
        nonce in any::<[u8; 12]>(),
        ts in 10u64..=u64::MAX / 2,
        offset in -5i64..=3600,
    ) {
        let s = secret();
        let token = s.issue(&id, &pubkey, nonce, ts).expect("issue");
        let now = ts.checked_add_signed(offset).expect("in range");
        let claims = s.verify(&token, now).expect("verifies");
        prop_assert_eq!(claims.sub, id);
        prop_assert_eq!(claims.pubkey, pubkey);
        prop_assert_eq!(claims.iat, ts);
    }

    #[test]
    fn any_change_to_a_shared_secret_token_breaks_it(
        pos in any::<prop::sample::Index>(),
        c in proptest::char::range('!', '~'),
    ) {
        let s = secret();
        let token = s.issue("org/ns/a_1", &key(5).public_bytes(), [3; 12], NOW).expect("issue");
        let i = pos.index(token.len());
        let mut t = token.clone().into_bytes();
        prop_assume!(t[i] != c as u8);
        t[i] = c as u8;
        let t = String::from_utf8(t).expect("ascii");
        prop_assert!(s.verify(&t, NOW).is_err(), "accepted {}", t);
    }

    #[test]
    fn jwt_round_trip_and_any_change_breaks_it(
        sub in token_id(),
        pos in any::<prop::sample::Index>(),
        c in proptest::char::range('!', '~'),
    ) {
        let k = JwtKey::hs256(SECRET);
        let pubkey = key(6).public_bytes();
        let token = k.issue(&sub, &pubkey, NOW, 600).expect("issue");
        let claims = k.verify(&token, NOW).expect("verifies");
        prop_assert_eq!(&claims.sub, &sub);
        prop_assert_eq!(&claims.pubkey[..], &pubkey[..]);
        let i = pos.index(token.len());
        let mut t = token.clone().into_bytes();
        prop_assume!(t[i] != c as u8);
        t[i] = c as u8;
        let t = String::from_utf8(t).expect("ascii");
        prop_assert!(k.verify(&t, NOW).is_err(), "accepted {}", t);
    }
}

// ---------------------------------------------------------------------------------------------
// JWT

/// A JWT built by hand: HS256 over `header.payload` with `SECRET`.
fn hs256(header: &str, payload: &str) -> String {
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let sig = URL_SAFE_NO_PAD.encode(hmac(SECRET.as_bytes(), signed.as_bytes()));
    format!("{signed}.{sig}")
}

const HS: &str = r#"{"typ":"JWT","alg":"HS256"}"#;

#[test]
fn jwt_layout_is_the_sdk_signer_s() {
    let pubkey = key(7).public_bytes();
    let token = JwtKey::hs256(SECRET)
        .issue("spiffe://x/y", &pubkey, NOW, 3600)
        .expect("issue");
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");
    assert_eq!(header["alg"], "HS256");
    assert_eq!(header["kid"], "spiffe://x/y", "kid = sub, as SignerJwt");
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
    assert_eq!(claims["sub"], "spiffe://x/y");
    assert_eq!(claims["exp"], NOW + 3600);
    assert_eq!(claims["iat"], NOW);
    assert_eq!(claims["nbf"], NOW);
    assert_eq!(
        claims["pubkey"],
        STANDARD.encode(pubkey),
        "top-level pubkey"
    );
    let signed = &token[..parts[0].len() + 1 + parts[1].len()];
    assert_eq!(
        URL_SAFE_NO_PAD.decode(parts[2]).expect("b64"),
        hmac(SECRET.as_bytes(), signed.as_bytes())
    );
}

#[test]
fn jwt_expiry_and_not_before_with_leeway() {
    let k = JwtKey::hs256(SECRET);
    let token = k.issue("s", &[4; 65], NOW, 100).expect("issue");
    k.verify(&token, NOW + 160).expect("exp + 60 s leeway");
    assert_eq!(k.verify(&token, NOW + 161), Err(TokenError::JwtExpired(61)));
    k.verify(&token, NOW - 60).expect("nbf - 60 s leeway");
    assert_eq!(
        k.verify(&token, NOW - 61),
        Err(TokenError::JwtNotYetValid(61))
    );
}

#[test]
fn jwt_claims_rules() {
    let k = JwtKey::hs256(SECRET);
    let pk = STANDARD.encode([4u8; 65]);
    let verify = |payload: String| k.verify(&hs256(HS, &payload), NOW);
    // pubkey under custom_claims is accepted, as identity_claims.rs does.
    let c = verify(format!(
        r#"{{"sub":"s","exp":{},"custom_claims":{{"pubkey":"{pk}"}}}}"#,
        NOW + 10
    ))
    .expect("custom_claims.pubkey");
    assert_eq!((c.sub.as_str(), c.iat, c.pubkey.len()), ("s", 0, 65));
    // `id` stands in for `sub`.
    assert_eq!(
        verify(format!(
            r#"{{"id":"i","exp":{},"pubkey":"{pk}"}}"#,
            NOW + 10
        ))
        .expect("id")
        .sub,
        "i"
    );
    assert_eq!(
        verify(format!(r#"{{"sub":"s","pubkey":"{pk}"}}"#)),
        Err(TokenError::MissingExp)
    );
    assert_eq!(
        verify(format!(r#"{{"exp":{},"pubkey":"{pk}"}}"#, NOW + 10)),
        Err(TokenError::MissingSub)
    );
    assert_eq!(
        verify(format!(r#"{{"sub":"s","exp":{}}}"#, NOW + 10)),
        Err(TokenError::NoPubkey)
    );
    assert_eq!(
        verify(format!(
            r#"{{"sub":"s","exp":{},"aud":"x","pubkey":"{pk}"}}"#,
            NOW + 10
        )),
        Err(TokenError::UnexpectedAudience)
    );
    assert!(matches!(
        k.verify("a.b", NOW),
        Err(TokenError::Malformed(_))
    ));
    assert!(matches!(
        k.verify("a.b.c.d", NOW),
        Err(TokenError::Malformed(_))
    ));
    let none_alg = hs256(
        r#"{"alg":"none"}"#,
        &format!(r#"{{"sub":"s","exp":{},"pubkey":"{pk}"}}"#, NOW + 10),
    );
    assert_eq!(
        k.verify(&none_alg, NOW),
        Err(TokenError::WrongAlgorithm {
            found: "none".into(),
            expected: "HS256"
        })
    );
    let other = JwtKey::hs256("another secret");
    let token = k.issue("s", &[4; 65], NOW, 10).expect("issue");
    assert_eq!(other.verify(&token, NOW), Err(TokenError::BadSignature));
}

#[test]
fn es256_from_pem_issues_and_verifies() {
    let sk = p256::ecdsa::SigningKey::random(&mut rng(8));
    let pem = sk.to_pkcs8_pem(LineEnding::LF).expect("pem");
    let k = JwtKey::es256_from_pkcs8_pem(&pem).expect("load");
    let token = k.issue("svc", &[4; 65], NOW, 60).expect("issue");
    let sig = URL_SAFE_NO_PAD
        .decode(token.rsplit('.').next().expect("sig"))
        .expect("b64");
    assert_eq!(sig.len(), 64, "JWS ES256 signature is r||s");
    assert_eq!(k.verify(&token, NOW).expect("verifies").sub, "svc");

    let public_pem = sk
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("pem");
    let v = JwtKey::es256_from_public_pem(&public_pem).expect("load");
    assert_eq!(v.verify(&token, NOW).expect("verify-only key").sub, "svc");
    assert_eq!(
        v.issue("svc", &[4; 65], NOW, 60),
        Err(TokenError::VerifyOnly)
    );
    let stranger = JwtKey::es256_from_pkcs8_pem(
        &p256::ecdsa::SigningKey::random(&mut rng(9))
            .to_pkcs8_pem(LineEnding::LF)
            .expect("pem"),
    )
    .expect("load");
    assert_eq!(stranger.verify(&token, NOW), Err(TokenError::BadSignature));
    assert!(matches!(
        JwtKey::hs256(SECRET).verify(&token, NOW),
        Err(TokenError::WrongAlgorithm { .. })
    ));
    assert!(matches!(
        JwtKey::es256_from_pkcs8_pem("not a pem"),
        Err(TokenError::BadKey(_))
    ));
}

#[test]
fn credentials_issue_and_verify_either_kind() {
    let pubkey = key(10).public_bytes();
    for creds in [
        Credentials::SharedSecret(secret()),
        Credentials::Jwt(JwtKey::hs256(SECRET)),
    ] {
        let token = creds
            .issue("org/ns/a_1", &pubkey, NOW, &mut rng(11))
            .expect("issue");
        let claims = creds.verify(&token, NOW + 3600).expect("verify");
        assert_eq!(claims.sub, "org/ns/a_1");
        assert_eq!(claims.pubkey, pubkey);
        assert!(creds.verify(&token, NOW + 3700).is_err(), "expired");
    }
}

// ---------------------------------------------------------------------------------------------
// Name ids

#[test]
fn app_id_is_xxh3_128_of_the_sub() {
    // The session crate's own known value (name_id.rs test, agntcy/slim#2264).
    let did = "did:key:z6Mkfvtar6ATQYC5jXqVLBjCH8R6AUAuKjta6LsFcG4gUND1";
    assert_eq!(app_id(did), 0x48b1da600caab75fa73e4fe334bf1482);
    assert_ne!(app_id("org/ns/alice_a"), app_id("org/ns/alice_b"));
}

#[test]
fn channel_ids_differ_and_depend_on_the_creator() {
    let (data, ctrl) = channel_ids("alice", "org", "ns", "rfq").expect("ids");
    assert_ne!(data, ctrl);
    assert_eq!(channel_ids("alice", "org", "ns", "rfq"), Some((data, ctrl)));
    assert_ne!(
        channel_ids("mallory", "org", "ns", "rfq"),
        Some((data, ctrl))
    );
    assert_eq!(
        data,
        xxhash_rust::xxh3::xxh3_128_with_seed(b"alice/org/ns/rfq/data", 0),
        "salt 0 when the two differ"
    );
}

proptest! {
    #[test]
    fn derived_ids_are_never_reserved(sub in ".{0,40}", name in "[a-z]{1,10}") {
        prop_assert!(app_id(&sub) < u128::MAX - 50);
        let (d, c) = channel_ids(&sub, "o", "n", &name).expect("ids");
        prop_assert!(d < u128::MAX - 50 && c < u128::MAX - 50 && d != c);
    }
}

// ---------------------------------------------------------------------------------------------
// End-to-end signatures

fn command(t: pb::SessionMessageType, identity: &str) -> pb::Message {
    let src = SlimName::new("agntcy", "ns", "alice").with_id(0x1234);
    let dst = SlimName::new("org", "default", "app");
    let mut msg = slim_proto::messages::wrap(MessageType::Publish(pb::Publish {
        header: Some(pb::SlimHeader {
            identity: identity.to_string(),
            ..slim_proto::messages::header(&src, &dst, 1)
        }),
        session: Some(pb::SessionHeader {
            session_type: pb::SessionType::PointToPoint as i32,
            session_message_type: t as i32,
            session_id: 77,
            message_id: 99,
        }),
        msg: Some(pb::Content {
            content_type: Some(pb::content::ContentType::CommandPayload(
                pb::CommandPayload {
                    command_payload_type: Some(
                        pb::command_payload::CommandPayloadType::DiscoveryRequest(
                            pb::DiscoveryRequestPayload {},
                        ),
                    ),
                },
            )),
        }),
    }));
    msg.metadata.insert("k".into(), "v".into());
    msg
}

fn publish_mut(msg: &mut pb::Message) -> &mut pb::Publish {
    match &mut msg.message_type {
        Some(MessageType::Publish(p)) => p,
        _ => panic!("not a publish"),
    }
}

fn hdr(msg: &mut pb::Message) -> &mut pb::SlimHeader {
    publish_mut(msg).header.as_mut().expect("header")
}

fn sess(msg: &mut pb::Message) -> &mut pb::SessionHeader {
    publish_mut(msg).session.as_mut().expect("session")
}

#[test]
fn header_aad_is_the_header_integrity_aad_encoding() {
    let msg = command(pb::SessionMessageType::DiscoveryRequest, "tok");
    let aad = e2e::header_aad(&msg);
    let decoded = pb::HeaderIntegrityAad::decode(&aad[..]).expect("decodes");
    let p = match &msg.message_type {
        Some(MessageType::Publish(p)) => p,
        _ => unreachable!(),
    };
    let h = p.header.as_ref().expect("header");
    assert_eq!(decoded.version, 1);
    assert_eq!(decoded.source, h.source);
    assert_eq!(decoded.destination, h.destination);
    assert_eq!(decoded.identity, "tok");
    assert_eq!(decoded.session_type, 1);
    assert_eq!(decoded.session_message_type, 5);
    assert_eq!((decoded.session_id, decoded.message_id), (77, 99));
    assert_eq!(
        decoded.payload_type, "",
        "command payloads have no payload_type"
    );
    assert_eq!(aad, decoded.encode_to_vec(), "canonical encoding");

    // An application payload contributes its payload_type.
    let mut data = msg.clone();
    publish_mut(&mut data).msg = Some(pb::Content {
        content_type: Some(pb::content::ContentType::AppPayload(
            pb::ApplicationPayload {
                payload_type: "msg".into(),
                blob: vec![1, 2, 3].into(),
            },
        )),
    });
    let d = pb::HeaderIntegrityAad::decode(&e2e::header_aad(&data)[..]).expect("decodes");
    assert_eq!(d.payload_type, "msg");

    // Unknown enum values read as 0, as prost's getters (and so build_aad) do.
    let mut odd = msg.clone();
    sess(&mut odd).session_type = 9;
    let d = pb::HeaderIntegrityAad::decode(&e2e::header_aad(&odd)[..]).expect("decodes");
    assert_eq!(d.session_type, 0);

    // Fields outside the AAD do not change it.
    let mut moved = msg.clone();
    {
        let h = hdr(&mut moved);
        h.ttl = 3;
        h.fanout = 256;
        h.incoming_conn = Some(4);
        h.header_mac = Some(vec![0; 32].into());
    }
    assert_eq!(e2e::header_aad(&moved), aad);
}

#[test]
fn payload_signing_input_layout() {
    let mut msg = command(pb::SessionMessageType::JoinRequest, "t");
    msg.metadata.clear();
    for (k, v) in [
        ("b", "2"),
        ("a", "1"),
        ("traceparent", "00-x"),
        ("tracestate", "y"),
        ("baggage", "z"),
        ("slim-peer-subject", "me"),
        ("slim-payload-sig", "sig"),
    ] {
        msg.metadata.insert(k.into(), v.into());
    }
    let aad = e2e::header_aad(&msg);
    let lp = |x: &[u8]| {
        let mut v = (x.len() as u64).to_be_bytes().to_vec();
        v.extend_from_slice(x);
        v
    };
    let payload = match &msg.message_type {
        Some(MessageType::Publish(p)) => p.msg.as_ref().expect("content").encode_to_vec(),
        _ => unreachable!(),
    };
    let mut want = b"slim-payload-v1".to_vec();
    for part in [&aad[..], &payload, b"a", b"1", b"b", b"2"] {
        want.extend(lp(part));
    }
    assert_eq!(e2e::payload_signing_input(&msg, &aad), want);
}

#[test]
fn is_command_is_types_5_to_20() {
    for v in 0..=25 {
        if let Ok(t) = pb::SessionMessageType::try_from(v) {
            assert_eq!(e2e::is_command(t), (5..=20).contains(&v), "type {v}");
        }
    }
}

#[test]
fn every_command_type_signs_and_verifies() {
    let k = key(12);
    for v in 5..=20 {
        let t = pb::SessionMessageType::try_from(v).expect("known");
        let mut msg = command(t, "tok");
        e2e::sign_command(&mut msg, &k).expect("sign");
        assert_eq!(
            e2e::verify_command(&msg, &k.public_bytes()),
            Ok(PayloadSignature::Verified),
            "type {v}"
        );
        let der = STANDARD
            .decode(&msg.metadata[e2e::PAYLOAD_SIG_KEY])
            .expect("base64 standard");
        assert_eq!(der[0], 0x30, "DER");
    }
    let mut data = command(pb::SessionMessageType::Msg, "t");
    assert_eq!(
        e2e::sign_command(&mut data, &k),
        Err(E2eError::NotCommand(1))
    );
    let mut sub = slim_proto::messages::subscribe(&SlimName::new("a", "b", "c"), 1);
    assert_eq!(e2e::sign_command(&mut sub, &k), Err(E2eError::NotPublish));
}

/// Changes one field of a message in place.
type Tamper = fn(&mut pb::Message);

/// Each AAD-covered header field, changed after signing.
fn aad_tamperings() -> Vec<(&'static str, Tamper)> {
    fn src(m: &mut pb::Message) -> &mut pb::Name {
        hdr(m).source.as_mut().expect("source")
    }
    fn dst(m: &mut pb::Message) -> &mut pb::Name {
        hdr(m).destination.as_mut().expect("destination")
    }
    vec![
        ("source hash", |m| {
            src(m).name.as_mut().expect("e").component_0 ^= 1
        }),
        ("source string", |m| {
            src(m)
                .str_name
                .as_mut()
                .expect("s")
                .str_component_2
                .push('x')
        }),
        ("source id", |m| {
            src(m).name.as_mut().expect("e").name_id = Some(pb::NameId { id_0: 0, id_1: 1 })
        }),
        ("destination hash", |m| {
            dst(m).name.as_mut().expect("e").component_1 ^= 1
        }),
        ("destination string", |m| {
            dst(m)
                .str_name
                .as_mut()
                .expect("s")
                .str_component_0
                .push('x')
        }),
        ("identity", |m| hdr(m).identity.push('x')),
        ("session type", |m| {
            sess(m).session_type = pb::SessionType::Multicast as i32
        }),
        ("message type", |m| {
            sess(m).session_message_type = pb::SessionMessageType::LeaveRequest as i32
        }),
        ("session id", |m| sess(m).session_id ^= 1),
        ("message id", |m| sess(m).message_id ^= 1),
    ]
}

#[test]
fn tampering_any_aad_field_breaks_the_header_signature() {
    let k = key(13);
    let mut msg = command(pb::SessionMessageType::DiscoveryRequest, "tok");
    e2e::sign_command(&mut msg, &k).expect("sign");
    for (what, tamper) in aad_tamperings() {
        let mut m = msg.clone();
        tamper(&mut m);
        assert_eq!(
            e2e::verify_command(&m, &k.public_bytes()),
            Err(E2eError::HeaderSig(SignatureError::Mismatch)),
            "{what}"
        );
    }
}

#[test]
fn payload_and_metadata_are_covered_by_the_payload_signature() {
    let k = key(14);
    let mut msg = command(pb::SessionMessageType::JoinRequest, "tok");
    e2e::sign_command(&mut msg, &k).expect("sign");
    let pk = k.public_bytes();

    let mut m = msg.clone();
    m.metadata.insert("k".into(), "changed".into());
    assert_eq!(
        e2e::verify_command(&m, &pk),
        Err(E2eError::PayloadSig(SignatureError::Mismatch))
    );
    let mut m = msg.clone();
    m.metadata.insert("added".into(), "1".into());
    assert_eq!(
        e2e::verify_command(&m, &pk),
        Err(E2eError::PayloadSig(SignatureError::Mismatch))
    );
    let mut m = msg.clone();
    publish_mut(&mut m).msg = Some(pb::Content {
        content_type: Some(pb::content::ContentType::CommandPayload(
            pb::CommandPayload {
                command_payload_type: Some(
                    pb::command_payload::CommandPayloadType::DiscoveryReply(
                        pb::DiscoveryReplyPayload {},
                    ),
                ),
            },
        )),
    });
    assert_eq!(
        e2e::verify_command(&m, &pk),
        Err(E2eError::PayloadSig(SignatureError::Mismatch)),
        "payload changed"
    );
    // Trace context and the reserved keys may change in transit.
    let mut m = msg.clone();
    m.metadata.insert("traceparent".into(), "00-abc".into());
    m.metadata.insert("slim-peer-subject".into(), "x".into());
    assert_eq!(e2e::verify_command(&m, &pk), Ok(PayloadSignature::Verified));
    // So may the fields the node rewrites.
    let mut m = msg.clone();
    hdr(&mut m).header_mac = Some(vec![1; 32].into());
    hdr(&mut m).incoming_conn = Some(9);
    assert_eq!(e2e::verify_command(&m, &pk), Ok(PayloadSignature::Verified));
    // A header-only signer (pre-3.x SDK) is reported as such.
    let mut m = msg.clone();
    m.metadata.remove(e2e::PAYLOAD_SIG_KEY);
    assert_eq!(e2e::verify_command(&m, &pk), Ok(PayloadSignature::Absent));
    let mut m = msg.clone();
    m.metadata
        .insert(e2e::PAYLOAD_SIG_KEY.into(), "not base64!".into());
    assert_eq!(
        e2e::verify_command(&m, &pk),
        Err(E2eError::PayloadSigNotBase64)
    );
    let mut m = msg.clone();
    hdr(&mut m).e2e_header_sig = None;
    assert_eq!(
        e2e::verify_command(&m, &pk),
        Err(E2eError::MissingHeaderSig)
    );
    assert_eq!(
        e2e::verify_command(&msg, &key(15).public_bytes()),
        Err(E2eError::HeaderSig(SignatureError::Mismatch))
    );
}

#[test]
fn verify_identity_checks_token_then_signatures() {
    let k = key(16);
    let creds = Credentials::SharedSecret(secret());
    let token = creds
        .issue("agntcy/ns/alice_a1", &k.public_bytes(), NOW, &mut rng(17))
        .expect("issue");
    let mut msg = command(pb::SessionMessageType::DiscoveryRequest, &token);
    e2e::sign_command(&mut msg, &k).expect("sign");
    let (claims, payload) = e2e::verify_identity(&msg, &creds, NOW).expect("verifies");
    assert_eq!(claims.sub, "agntcy/ns/alice_a1");
    assert_eq!(payload, PayloadSignature::Verified);
    assert_eq!(
        e2e::verify_identity(&msg, &creds, NOW + 4000),
        Err(E2eError::Token(TokenError::Expired { age: 4000 }))
    );
    // A valid token naming another key than the signer's.
    let mut m = command(
        pb::SessionMessageType::DiscoveryRequest,
        &creds
            .issue("x", &key(18).public_bytes(), NOW, &mut rng(19))
            .expect("issue"),
    );
    e2e::sign_command(&mut m, &k).expect("sign");
    assert_eq!(
        e2e::verify_identity(&m, &creds, NOW),
        Err(E2eError::HeaderSig(SignatureError::Mismatch))
    );
}

proptest! {
    #[test]
    fn signed_commands_verify_and_any_aad_tampering_breaks_them(
        seed in any::<u64>(),
        session_id in any::<u32>(),
        message_id in any::<u32>(),
        t in 5i32..=20,
        which in any::<prop::sample::Index>(),
        identity in ".{0,30}",
    ) {
        let k = key(seed);
        let ty = pb::SessionMessageType::try_from(t).expect("known");
        let mut msg = command(ty, &identity);
        sess(&mut msg).session_id = session_id;
        sess(&mut msg).message_id = message_id;
        e2e::sign_command(&mut msg, &k).expect("sign");
        prop_assert_eq!(e2e::verify_command(&msg, &k.public_bytes()), Ok(PayloadSignature::Verified));
        let tamperings = aad_tamperings();
        let (what, tamper) = tamperings[which.index(tamperings.len())];
        let mut m = msg.clone();
        tamper(&mut m);
        prop_assume!(e2e::header_aad(&m) != e2e::header_aad(&msg));
        prop_assert!(e2e::verify_command(&m, &k.public_bytes()).is_err(), "{}", what);
    }
}

/// Wycheproof's ECDSA P-256/SHA-256 set through `verify_der`, with each key uncompressed (ring
/// verifies) and compressed (p256 verifies): both paths give every verdict the set expects.
#[test]
fn verify_der_passes_wycheproof_ecdsa_p256_with_both_key_encodings() {
    use p256::elliptic_curve::sec1::ToEncodedPoint as _;
    use wycheproof::TestResult;
    let set = wycheproof::ecdsa::TestSet::load(wycheproof::ecdsa::TestName::EcdsaSecp256r1Sha256)
        .expect("wycheproof set");
    let (mut valid, mut invalid) = (0, 0);
    for group in &set.test_groups {
        let uncompressed: &[u8] = group.key.key.as_ref();
        let compressed = p256::PublicKey::from_sec1_bytes(uncompressed)
            .expect("a valid key")
            .to_encoded_point(true);
        for key in [uncompressed, compressed.as_bytes()] {
            for t in &group.tests {
                let got = slim_proto::identity::verify_der(key, &t.msg, &t.sig);
                match t.result {
                    TestResult::Valid => {
                        valid += 1;
                        assert!(
                            got.is_ok(),
                            "tcId {} ({}), key of {} bytes: {got:?}",
                            t.tc_id,
                            t.comment,
                            key.len()
                        );
                    }
                    TestResult::Invalid => {
                        invalid += 1;
                        assert!(
                            got.is_err(),
                            "tcId {} ({}) accepted, key of {} bytes",
                            t.tc_id,
                            t.comment,
                            key.len()
                        );
                    }
                    TestResult::Acceptable => {}
                }
            }
        }
    }
    assert!(
        valid > 200 && invalid > 400,
        "{valid} valid, {invalid} invalid"
    );
}
