//! The SLIM identity key as an openmls [`Signer`].
//!
//! SLIM uses one ECDSA P-256 key per app for three things: the identity token's `pubkey` claim,
//! the end-to-end signature over session headers, and the MLS leaf signature key. So MLS must sign
//! with exactly the caller's key, not one openmls generates. RFC 9420 §5.1.2 (and both openmls'
//! and mls-rs' verifiers) take ECDSA signatures DER-encoded over SHA-256 of the signed content.
//!
//! Two ways to sign with that key: ring (random nonces, about 8x faster: every MLS data message
//! is signed, so this is the fast path) or RustCrypto's p256 (RFC 6979 deterministic nonces, for
//! seeded runs whose bytes must repeat).

use openmls_traits::signatures::{Signer, SignerError};
use openmls_traits::types::SignatureScheme;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

/// An openmls [`Signer`] over a P-256 signing key.
pub(crate) struct P256Signer {
    key: SigningKey,
    /// The same key in ring, when signatures may take random nonces.
    ring: Option<(EcdsaKeyPair, SystemRandom)>,
    /// The 65-byte uncompressed SEC1 public point: what the leaf node carries as its
    /// `signature_key` and what the token's `pubkey` claim holds.
    public: Vec<u8>,
}

impl P256Signer {
    /// A signer over `key`; with `ring`, signatures come from ring (random nonces), otherwise
    /// they are deterministic (RFC 6979).
    pub(crate) fn new(key: SigningKey, ring: bool) -> Self {
        let public = key
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        let ring = ring
            .then(|| {
                let rng = SystemRandom::new();
                // ring checks that the scalar and the point belong together; a key p256 accepted
                // always passes, and if it ever did not, p256 still signs.
                EcdsaKeyPair::from_private_key_and_public_key(
                    &ECDSA_P256_SHA256_ASN1_SIGNING,
                    &key.to_bytes(),
                    &public,
                    &rng,
                )
                .ok()
                .map(|pair| (pair, rng))
            })
            .flatten();
        Self { key, ring, public }
    }

    pub(crate) fn public_key(&self) -> &[u8] {
        &self.public
    }
}

impl Signer for P256Signer {
    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, SignerError> {
        if let Some((pair, rng)) = &self.ring {
            return pair
                .sign(rng, payload)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SignerError::SigningError);
        }
        let signature: Signature = self.key.sign(payload);
        Ok(signature.to_der().as_bytes().to_vec())
    }

    fn signature_scheme(&self) -> SignatureScheme {
        SignatureScheme::ECDSA_SECP256R1_SHA256
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openmls_rust_crypto::RustCrypto;
    use openmls_traits::crypto::OpenMlsCrypto;
    use p256::ecdsa::signature::Verifier as _;

    #[test]
    fn signatures_are_der_and_verify_with_openmls_and_p256() {
        for ring in [false, true] {
            let key = SigningKey::random(&mut rand_core::OsRng);
            let verifying = *key.verifying_key();
            let signer = P256Signer::new(key, ring);
            assert_eq!(signer.ring.is_some(), ring);
            assert_eq!(signer.public_key().len(), 65);
            let signature = signer.sign(b"signed content").expect("sign");
            // DER: SEQUENCE of two INTEGERs, 8..=72 bytes for P-256.
            assert_eq!(signature[0], 0x30);
            assert!((8..=72).contains(&signature.len()));
            let der = Signature::from_der(&signature).expect("DER");
            verifying
                .verify(b"signed content", &der)
                .expect("p256 verifies");
            let crypto = RustCrypto::default();
            crypto
                .verify_signature(
                    SignatureScheme::ECDSA_SECP256R1_SHA256,
                    b"signed content",
                    signer.public_key(),
                    &signature,
                )
                .expect("openmls_rust_crypto verifies");
            assert!(crypto
                .verify_signature(
                    SignatureScheme::ECDSA_SECP256R1_SHA256,
                    b"other content",
                    signer.public_key(),
                    &signature,
                )
                .is_err());
            // Deterministic signing repeats itself; ring's random nonces never do.
            let again = signer.sign(b"signed content").expect("sign");
            assert_eq!(again == signature, !ring);
        }
    }
}
