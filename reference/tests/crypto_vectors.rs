//! Known-answer vectors for both MLS crypto backends, through the openmls traits exactly as
//! openmls calls them: RFC 6979 (deterministic ECDSA P-256), the GCM specification's AES-128-GCM
//! test cases, RFC 5869 (HKDF-SHA256), and Wycheproof's ECDSA P-256/SHA-256, AES-GCM,
//! ChaCha20-Poly1305, HKDF-SHA256 and HMAC-SHA256 sets.
//!
//! A backend that verifies a forged signature, accepts a modified tag, or derives other bytes
//! fails here: interop tests alone would not see a verifier that accepts too much.

use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::signatures::Signer;
use openmls_traits::types::{AeadType, CryptoError, HashType, SignatureScheme};
use p256::ecdsa::SigningKey;
use slim_reference::mls::{backend_crypto, backend_signer, CryptoBackend};
use wycheproof::TestResult;

const BACKENDS: [CryptoBackend; 3] = [
    CryptoBackend::Ring,
    CryptoBackend::RingDeterministicSignatures,
    CryptoBackend::RustCrypto,
];

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("hex")
}

/// RFC 6979 §A.2.5: the P-256 key and its SHA-256 signatures of "sample" and "test".
const RFC6979_X: &str = "C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721";
const RFC6979_U: &str = "0460FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB67903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299";
const RFC6979_SIGS: [(&str, &str, &str); 2] = [
    (
        "sample",
        "EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716",
        "F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8",
    ),
    (
        "test",
        "F1ABB023518351CD71D881567B1EA663ED3EFCF6C5132B354F28D3B0B7D38367",
        "019F4113742A2B14BD25926B49C649155F267E60D3814B4C0CC84250E46F0083",
    ),
];

fn der(r: &[u8], s: &[u8]) -> Vec<u8> {
    let r = p256::FieldBytes::clone_from_slice(r);
    let s = p256::FieldBytes::clone_from_slice(s);
    p256::ecdsa::Signature::from_scalars(r, s)
        .expect("scalars")
        .to_der()
        .as_bytes()
        .to_vec()
}

#[test]
fn rfc6979_p256_sha256() {
    let key = SigningKey::from_slice(&unhex(RFC6979_X)).expect("key");
    let public = unhex(RFC6979_U);
    for (msg, r, s) in RFC6979_SIGS {
        let expected = der(&unhex(r), &unhex(s));
        for backend in BACKENDS {
            let crypto = backend_crypto(backend);
            let alg = SignatureScheme::ECDSA_SECP256R1_SHA256;
            crypto
                .verify_signature(alg, msg.as_bytes(), &public, &expected)
                .unwrap_or_else(|e| panic!("{backend:?} refuses RFC 6979 {msg:?}: {e:?}"));
            assert_eq!(
                crypto.verify_signature(alg, b"other", &public, &expected),
                Err(CryptoError::InvalidSignature),
                "{backend:?}"
            );
            let signer = backend_signer(key.clone(), backend);
            let ours = signer.sign(msg.as_bytes()).expect("sign");
            crypto
                .verify_signature(alg, msg.as_bytes(), &public, &ours)
                .unwrap_or_else(|e| panic!("{backend:?} refuses its own signature: {e:?}"));
            if backend == CryptoBackend::Ring {
                assert_ne!(ours, expected, "ring signs with random nonces");
            } else {
                assert_eq!(
                    ours, expected,
                    "{backend:?}: deterministic signature of {msg:?}"
                );
            }
        }
    }
}

/// The GCM specification's (McGrew and Viega) test cases 1 to 3: AES-128, 96-bit IV.
#[test]
fn gcm_spec_aes128() {
    let cases = [
        ("00000000000000000000000000000000", "000000000000000000000000", "", "", "58e2fccefa7e3061367f1d57a4e7455a"),
        (
            "00000000000000000000000000000000",
            "000000000000000000000000",
            "00000000000000000000000000000000",
            "0388dace60b6a392f328c2b971b2fe78",
            "ab6e47d42cec13bdf53a67b21257bddf",
        ),
        (
            "feffe9928665731c6d6a8f9467308308",
            "cafebabefacedbaddecaf888",
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
            "4d5c2af327cd64a62cf35abd2ba6fab4",
        ),
    ];
    for backend in BACKENDS {
        let crypto = backend_crypto(backend);
        for (k, iv, p, c, t) in cases {
            let (k, iv, p) = (unhex(k), unhex(iv), unhex(p));
            let expected = [unhex(c), unhex(t)].concat();
            let ct = crypto
                .aead_encrypt(AeadType::Aes128Gcm, &k, &p, &iv, &[])
                .expect("seal");
            assert_eq!(ct, expected, "{backend:?}");
            let pt = crypto
                .aead_decrypt(AeadType::Aes128Gcm, &k, &ct, &iv, &[])
                .expect("open");
            assert_eq!(pt, p, "{backend:?}");
        }
    }
}

/// RFC 5869 A.1: HKDF-SHA256, basic test case.
#[test]
fn rfc5869_hkdf_sha256() {
    let ikm = [0x0b; 22];
    let salt = unhex("000102030405060708090a0b0c");
    let info = unhex("f0f1f2f3f4f5f6f7f8f9");
    let prk = "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5";
    let okm =
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865";
    for backend in BACKENDS {
        let crypto = backend_crypto(backend);
        let got = crypto
            .hkdf_extract(HashType::Sha2_256, &salt, &ikm)
            .expect("extract");
        assert_eq!(hex::encode(got.as_slice()), prk, "{backend:?}");
        let got = crypto
            .hkdf_expand(HashType::Sha2_256, got.as_slice(), &info, 42)
            .expect("expand");
        assert_eq!(hex::encode(got.as_slice()), okm, "{backend:?}");
    }
}

/// Counts of a Wycheproof set's verdicts, so a test that silently ran nothing fails.
#[derive(Default, Debug)]
struct Ran {
    valid: usize,
    invalid: usize,
}

impl Ran {
    /// Judges one Wycheproof test: `accepted` is whether the backend took the input and gave the
    /// expected answer (for an invalid test: whether it took the input at all). `what` names the
    /// test in a failure.
    fn judge(&mut self, result: &TestResult, accepted: bool, what: impl Fn() -> String) {
        match result {
            TestResult::Valid => {
                self.valid += 1;
                assert!(accepted, "refuses or gets wrong a valid test: {}", what());
            }
            TestResult::Invalid => {
                self.invalid += 1;
                assert!(!accepted, "accepts an invalid test: {}", what());
            }
            TestResult::Acceptable => {}
        }
    }
}

#[test]
fn wycheproof_ecdsa_p256_sha256() {
    let set = wycheproof::ecdsa::TestSet::load(wycheproof::ecdsa::TestName::EcdsaSecp256r1Sha256)
        .expect("wycheproof set");
    for backend in BACKENDS {
        let crypto = backend_crypto(backend);
        let mut ran = Ran::default();
        for group in &set.test_groups {
            let pk: &[u8] = group.key.key.as_ref();
            for t in &group.tests {
                let got = crypto.verify_signature(
                    SignatureScheme::ECDSA_SECP256R1_SHA256,
                    &t.msg,
                    pk,
                    &t.sig,
                );
                ran.judge(&t.result, got.is_ok(), || {
                    format!("{backend:?} tcId {} ({}): {got:?}", t.tc_id, t.comment)
                });
            }
        }
        assert!(ran.valid > 100 && ran.invalid > 200, "{backend:?}: {ran:?}");
    }
}

fn wycheproof_aead(name: wycheproof::aead::TestName, alg: AeadType, key_size: usize) {
    let set = wycheproof::aead::TestSet::load(name).expect("wycheproof set");
    for backend in BACKENDS {
        let crypto = backend_crypto(backend);
        let mut ran = Ran::default();
        for group in &set.test_groups {
            // What MLS uses: 96-bit nonces, full 128-bit tags, this key size.
            if group.nonce_size != 96 || group.tag_size != 128 || group.key_size != key_size {
                continue;
            }
            for t in &group.tests {
                let ct_tag = [t.ct.as_ref(), t.tag.as_ref()].concat();
                let opened = crypto.aead_decrypt(alg, &t.key, &ct_tag, &t.nonce, &t.aad);
                let accepted = match t.result {
                    TestResult::Invalid => opened.is_ok(),
                    _ => opened.as_deref().ok() == Some(t.pt.as_ref()),
                };
                ran.judge(&t.result, accepted, || {
                    format!("{backend:?} {name:?} tcId {} ({})", t.tc_id, t.comment)
                });
                if t.result == TestResult::Valid {
                    let sealed = crypto
                        .aead_encrypt(alg, &t.key, &t.pt, &t.nonce, &t.aad)
                        .expect("seal");
                    assert_eq!(sealed, ct_tag, "{backend:?} {name:?} tcId {}", t.tc_id);
                }
            }
        }
        assert!(
            ran.valid > 10 && ran.invalid > 10,
            "{backend:?} {name:?}: {ran:?}"
        );
    }
}

#[test]
fn wycheproof_aes128_gcm() {
    wycheproof_aead(wycheproof::aead::TestName::AesGcm, AeadType::Aes128Gcm, 128);
}

#[test]
fn wycheproof_aes256_gcm() {
    wycheproof_aead(wycheproof::aead::TestName::AesGcm, AeadType::Aes256Gcm, 256);
}

#[test]
fn wycheproof_chacha20_poly1305() {
    wycheproof_aead(
        wycheproof::aead::TestName::ChaCha20Poly1305,
        AeadType::ChaCha20Poly1305,
        256,
    );
}

#[test]
fn wycheproof_hkdf_sha256() {
    let set = wycheproof::hkdf::TestSet::load(wycheproof::hkdf::TestName::HkdfSha256)
        .expect("wycheproof set");
    for backend in BACKENDS {
        let crypto = backend_crypto(backend);
        let mut ran = Ran::default();
        for group in &set.test_groups {
            for t in &group.tests {
                let prk = crypto
                    .hkdf_extract(HashType::Sha2_256, &t.salt, &t.ikm)
                    .expect("extract");
                let okm = crypto.hkdf_expand(HashType::Sha2_256, prk.as_slice(), &t.info, t.size);
                let accepted = match t.result {
                    TestResult::Invalid => okm.is_ok(),
                    _ => okm.as_ref().map(|o| o.as_slice()).ok() == Some(t.okm.as_ref()),
                };
                ran.judge(&t.result, accepted, || {
                    format!("{backend:?} tcId {} ({})", t.tc_id, t.comment)
                });
            }
        }
        assert!(ran.valid > 50, "{backend:?}: {ran:?}");
    }
}

#[test]
fn wycheproof_hmac_sha256() {
    let set = wycheproof::mac::TestSet::load(wycheproof::mac::TestName::HmacSha256)
        .expect("wycheproof set");
    for backend in BACKENDS {
        let crypto = backend_crypto(backend);
        let mut ran = Ran::default();
        for group in &set.test_groups {
            for t in &group.tests {
                let tag = crypto
                    .hmac(HashType::Sha2_256, &t.key, &t.msg)
                    .expect("hmac");
                // Truncated-tag groups compare the prefix, as a verifier of such tags would.
                let matches = tag.as_slice().get(..t.tag.len()) == Some(t.tag.as_ref());
                ran.judge(&t.result, matches, || {
                    format!("{backend:?} tcId {} ({})", t.tc_id, t.comment)
                });
            }
        }
        assert!(ran.valid > 50 && ran.invalid > 50, "{backend:?}: {ran:?}");
    }
}
