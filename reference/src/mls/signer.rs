//! The SLIM identity key as an openmls [`Signer`].
//!
//! SLIM uses one ECDSA P-256 key per app for three things: the identity token's `pubkey` claim,
//! the end-to-end signature over session headers, and the MLS leaf signature key. So MLS must sign
//! with exactly the caller's key, not one openmls generates. RFC 9420 §5.1.2 (and both openmls'
//! and mls-rs' verifiers) take ECDSA signatures DER-encoded over SHA-256 of the signed content.

use openmls_traits::signatures::{Signer, SignerError};
use openmls_traits::types::SignatureScheme;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};

/// An openmls [`Signer`] over a P-256 signing key.
pub(crate) struct P256Signer {
    key: SigningKey,
    /// The 65-byte uncompressed SEC1 public point: what the leaf node carries as its
    /// `signature_key` and what the token's `pubkey` claim holds.
    public: Vec<u8>,
}

impl P256Signer {
    pub(crate) fn new(key: SigningKey) -> Self {
        let public = key
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        Self { key, public }
    }

    pub(crate) fn public_key(&self) -> &[u8] {
        &self.public
    }
}

impl Signer for P256Signer {
    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, SignerError> {
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
        let key = SigningKey::random(&mut rand_core::OsRng);
        let verifying = *key.verifying_key();
        let signer = P256Signer::new(key);
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
    }
}
