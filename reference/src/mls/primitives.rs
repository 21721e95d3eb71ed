//! The MLS primitives of the fast path, from ring: ECDSA verification (P-256, P-384, Ed25519),
//! AEAD (AES-GCM, ChaCha20-Poly1305), SHA-2, HMAC and HKDF.
//!
//! Why ring: a SLIM data message in an MLS session costs one ECDSA P-256 signature and one
//! verification (RFC 9420 §6.1 signs every `PrivateMessage`'s content). In the pure-Rust
//! RustCrypto backend those two take about 0.4 ms together; ring's P-256 (the assembly it shares
//! with BoringSSL) takes a fifth of that, and ring builds with nothing but a C compiler. It is
//! already in the workspace for TLS.
//!
//! Every function here returns what `openmls_rust_crypto` returns for the same input, errors
//! included (the provider tests and the Wycheproof vectors in `tests/crypto_vectors.rs` hold
//! both to that), with one exception: a nonce of the wrong length is an error here, where
//! RustCrypto panics.
//!
//! What ring cannot do stays with RustCrypto (see [`super::provider`]): HPKE with DHKEM(P-256)
//! needs static-key ECDH, which ring does not offer, and deterministic (RFC 6979) signatures.

use openmls::prelude::tls_codec::SecretVLBytes;
use openmls_traits::types::{AeadType, CryptoError, HashType, SignatureScheme};
use ring::{aead, digest, hmac, signature};

fn digest_alg(hash: HashType) -> &'static digest::Algorithm {
    match hash {
        HashType::Sha2_256 => &digest::SHA256,
        HashType::Sha2_384 => &digest::SHA384,
        HashType::Sha2_512 => &digest::SHA512,
    }
}

fn hmac_alg(hash: HashType) -> hmac::Algorithm {
    match hash {
        HashType::Sha2_256 => hmac::HMAC_SHA256,
        HashType::Sha2_384 => hmac::HMAC_SHA384,
        HashType::Sha2_512 => hmac::HMAC_SHA512,
    }
}

/// `Hash(data)`.
pub(crate) fn hash(hash: HashType, data: &[u8]) -> Vec<u8> {
    digest::digest(digest_alg(hash), data).as_ref().to_vec()
}

/// `HMAC(key, message)`.
pub(crate) fn mac(hash: HashType, key: &[u8], message: &[u8]) -> SecretVLBytes {
    hmac::sign(&hmac::Key::new(hmac_alg(hash), key), message)
        .as_ref()
        .into()
}

/// HKDF-Extract (RFC 5869 §2.2): `HMAC(salt, ikm)`. An empty salt is the same HMAC key as
/// `HashLen` zero bytes (HMAC pads its key with zeros), as the RFC asks.
pub(crate) fn hkdf_extract(hash: HashType, salt: &[u8], ikm: &[u8]) -> SecretVLBytes {
    mac(hash, salt, ikm)
}

/// HKDF-Expand (RFC 5869 §2.3): `T(i) = HMAC(prk, T(i-1) | info | i)` for `i = 1..=N`, the first
/// `okm_len` bytes. A PRK shorter than the hash or more than `255 * HashLen` bytes asked for is
/// [`CryptoError::HkdfOutputLengthInvalid`], as in RustCrypto.
pub(crate) fn hkdf_expand(
    hash: HashType,
    prk: &[u8],
    info: &[u8],
    okm_len: usize,
) -> Result<SecretVLBytes, CryptoError> {
    let alg = hmac_alg(hash);
    let hash_len = alg.digest_algorithm().output_len();
    if prk.len() < hash_len || okm_len > 255 * hash_len {
        return Err(CryptoError::HkdfOutputLengthInvalid);
    }
    let key = hmac::Key::new(alg, prk);
    let mut okm = Vec::with_capacity(okm_len);
    let mut previous: Option<hmac::Tag> = None;
    let mut counter = 1u8;
    while okm.len() < okm_len {
        let mut ctx = hmac::Context::with_key(&key);
        if let Some(t) = &previous {
            ctx.update(t.as_ref());
        }
        ctx.update(info);
        ctx.update(&[counter]);
        let t = ctx.sign();
        let take = (okm_len - okm.len()).min(hash_len);
        okm.extend_from_slice(&t.as_ref()[..take]);
        previous = Some(t);
        // At most 255 blocks (checked above), so the counter never wraps.
        counter = counter.wrapping_add(1);
    }
    Ok(okm.into())
}

fn aead_key(alg: AeadType, key: &[u8]) -> Result<aead::LessSafeKey, CryptoError> {
    let alg = match alg {
        AeadType::Aes128Gcm => &aead::AES_128_GCM,
        AeadType::Aes256Gcm => &aead::AES_256_GCM,
        AeadType::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
    };
    let key = aead::UnboundKey::new(alg, key).map_err(|_| CryptoError::CryptoLibraryError)?;
    Ok(aead::LessSafeKey::new(key))
}

fn nonce(nonce: &[u8]) -> Result<aead::Nonce, CryptoError> {
    aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::InvalidLength)
}

/// AEAD encryption: `ciphertext || tag`.
pub(crate) fn aead_encrypt(
    alg: AeadType,
    key: &[u8],
    data: &[u8],
    nonce_bytes: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let key = aead_key(alg, key)?;
    let mut out = Vec::with_capacity(data.len() + key.algorithm().tag_len());
    out.extend_from_slice(data);
    key.seal_in_place_append_tag(nonce(nonce_bytes)?, aead::Aad::from(aad), &mut out)
        .map_err(|_| CryptoError::CryptoLibraryError)?;
    Ok(out)
}

/// AEAD decryption of `ciphertext || tag`; a wrong tag (or input shorter than a tag) is
/// [`CryptoError::AeadDecryptionError`].
pub(crate) fn aead_decrypt(
    alg: AeadType,
    key: &[u8],
    ct_tag: &[u8],
    nonce_bytes: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let key = aead_key(alg, key)?;
    let mut buf = ct_tag.to_vec();
    let plain_len = key
        .open_in_place(nonce(nonce_bytes)?, aead::Aad::from(aad), &mut buf)
        .map_err(|_| CryptoError::AeadDecryptionError)?
        .len();
    buf.truncate(plain_len);
    Ok(buf)
}

/// Whether ring verifies this scheme with this key encoding: ECDSA keys must be uncompressed
/// SEC1 points (what MLS leaf nodes carry); anything else goes to RustCrypto, which also takes
/// compressed points.
pub(crate) fn verifies(alg: SignatureScheme, pk: &[u8]) -> bool {
    match alg {
        SignatureScheme::ECDSA_SECP256R1_SHA256 => pk.len() == 65 && pk[0] == 4,
        SignatureScheme::ECDSA_SECP384R1_SHA384 => pk.len() == 97 && pk[0] == 4,
        SignatureScheme::ED25519 => true,
        _ => false,
    }
}

/// Verifies `signature` (DER for ECDSA, RFC 9420 §5.1.2) over `data` with public key `pk`.
/// Call only where [`verifies`] is true.
pub(crate) fn verify_signature(
    alg: SignatureScheme,
    data: &[u8],
    pk: &[u8],
    sig: &[u8],
) -> Result<(), CryptoError> {
    let alg: &dyn signature::VerificationAlgorithm = match alg {
        SignatureScheme::ECDSA_SECP256R1_SHA256 => &signature::ECDSA_P256_SHA256_ASN1,
        SignatureScheme::ECDSA_SECP384R1_SHA384 => &signature::ECDSA_P384_SHA384_ASN1,
        SignatureScheme::ED25519 => {
            if pk.len() != 32 || sig.len() != 64 {
                // RustCrypto's answer to a malformed Ed25519 key or signature.
                return Err(CryptoError::CryptoLibraryError);
            }
            &signature::ED25519
        }
        _ => return Err(CryptoError::UnsupportedSignatureScheme),
    };
    signature::UnparsedPublicKey::new(alg, pk)
        .verify(data, sig)
        .map_err(|_| CryptoError::InvalidSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openmls_rust_crypto::RustCrypto;
    use openmls_traits::crypto::OpenMlsCrypto;

    const HASHES: [HashType; 3] = [HashType::Sha2_256, HashType::Sha2_384, HashType::Sha2_512];

    #[test]
    fn hashes_macs_and_hkdf_agree_with_rustcrypto() {
        let rc = RustCrypto::default();
        for h in HASHES {
            for len in [0usize, 1, 31, 32, 33, 64, 200] {
                let data: Vec<u8> = (0..len as u8).collect();
                assert_eq!(hash(h, &data), rc.hash(h, &data).expect("hash"));
                assert_eq!(
                    mac(h, &data, b"message").as_slice(),
                    rc.hmac(h, &data, b"message").expect("hmac").as_slice()
                );
                assert_eq!(
                    hkdf_extract(h, &data, b"ikm").as_slice(),
                    rc.hkdf_extract(h, &data, b"ikm")
                        .expect("extract")
                        .as_slice()
                );
            }
            let prk = hkdf_extract(h, b"salt", b"ikm");
            for okm_len in [0usize, 1, 16, 32, 48, 64, 65, 1000] {
                assert_eq!(
                    hkdf_expand(h, prk.as_slice(), b"info", okm_len)
                        .expect("expand")
                        .as_slice(),
                    rc.hkdf_expand(h, prk.as_slice(), b"info", okm_len)
                        .expect("expand")
                        .as_slice(),
                    "{h:?} {okm_len}"
                );
            }
            let hash_len = hash(h, b"").len();
            let too_long = 255 * hash_len + 1;
            assert_eq!(
                hkdf_expand(h, prk.as_slice(), b"", too_long).err(),
                rc.hkdf_expand(h, prk.as_slice(), b"", too_long).err()
            );
            let short_prk = &prk.as_slice()[..hash_len - 1];
            assert_eq!(
                hkdf_expand(h, short_prk, b"", 16).err(),
                rc.hkdf_expand(h, short_prk, b"", 16).err()
            );
        }
    }

    #[test]
    fn aead_agrees_with_rustcrypto_and_refuses_tampering() {
        let rc = RustCrypto::default();
        for (alg, key_len) in [
            (AeadType::Aes128Gcm, 16),
            (AeadType::Aes256Gcm, 32),
            (AeadType::ChaCha20Poly1305, 32),
        ] {
            let key = vec![7u8; key_len];
            let nonce = [9u8; 12];
            for len in [0usize, 1, 15, 16, 17, 1024] {
                let data = vec![0x42u8; len];
                let ct = aead_encrypt(alg, &key, &data, &nonce, b"aad").expect("seal");
                assert_eq!(
                    ct,
                    rc.aead_encrypt(alg, &key, &data, &nonce, b"aad")
                        .expect("seal")
                );
                assert_eq!(
                    aead_decrypt(alg, &key, &ct, &nonce, b"aad").expect("open"),
                    data
                );
                let mut bad = ct.clone();
                let last = bad.len() - 1;
                bad[last] ^= 1;
                assert_eq!(
                    aead_decrypt(alg, &key, &bad, &nonce, b"aad").err(),
                    Some(CryptoError::AeadDecryptionError)
                );
                assert_eq!(
                    aead_decrypt(alg, &key, &ct, &nonce, b"other aad").err(),
                    Some(CryptoError::AeadDecryptionError)
                );
            }
            assert_eq!(
                aead_decrypt(alg, &key, &[1, 2, 3], &nonce, b"").err(),
                Some(CryptoError::AeadDecryptionError),
                "shorter than a tag"
            );
            assert_eq!(
                aead_encrypt(alg, &key[1..], b"x", &nonce, b"").err(),
                Some(CryptoError::CryptoLibraryError),
                "wrong key length"
            );
            assert_eq!(
                aead_encrypt(alg, &key, b"x", &nonce[1..], b"").err(),
                Some(CryptoError::InvalidLength),
                "wrong nonce length is an error, not a panic"
            );
        }
    }

    #[test]
    fn p256_signatures_cross_verify_between_ring_and_rustcrypto() {
        use p256::ecdsa::signature::Signer as _;
        let key = p256::ecdsa::SigningKey::from_slice(&[3u8; 32]).expect("key");
        let pk = key.verifying_key().to_encoded_point(false);
        let pk = pk.as_bytes();
        let sig: p256::ecdsa::Signature = key.sign(b"content");
        let der = sig.to_der();
        let alg = SignatureScheme::ECDSA_SECP256R1_SHA256;
        assert!(verifies(alg, pk));
        verify_signature(alg, b"content", pk, der.as_bytes()).expect("ring verifies RustCrypto");
        assert_eq!(
            verify_signature(alg, b"other", pk, der.as_bytes()).err(),
            Some(CryptoError::InvalidSignature)
        );
        let compressed = key.verifying_key().to_encoded_point(true);
        assert!(
            !verifies(alg, compressed.as_bytes()),
            "compressed keys go to RustCrypto"
        );
    }
}
