//! The openmls provider: ring or RustCrypto for crypto (see [`CryptoBackend`]), a ChaCha20 RNG
//! for randomness, and a [`KeyStore`] for keys.
//!
//! Why not `RustCrypto` as it comes: it seeds its RNG from the OS, and its HPKE encryption
//! (`hpke_seal`, used for Welcomes and commit update paths) draws its ephemeral key from another
//! OS-seeded generator inside hpke-rs. A seeded session simulation with MLS on would then put
//! different bytes on the wire on every run. [`SeededCrypto`] delegates every primitive to
//! `RustCrypto` except those two: its randomness comes from a [`ChaCha20Rng`] (seeded by the
//! endpoint, or by the OS when no seed is given), and HPKE encryption takes its ephemeral key
//! from that RNG (DHKEM(P-256), RFC 9180 §4.1, then hpke-rs's key schedule and AEAD).
//!
//! With the ring backend (the default), hashing, HMAC, HKDF, AEAD and signature verification go
//! to [`super::primitives`] instead: they are what every data message costs. All of them are
//! deterministic, so a seeded run stays byte for byte reproducible.

use std::sync::Mutex;

use hkdf::Hkdf;
use hpke::Hpke;
use hpke_rs_crypto::types as hpke_types;
use hpke_rs_rust_crypto::HpkeRustCrypto;
use openmls::prelude::tls_codec::SecretVLBytes;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::random::OpenMlsRand;
use openmls_traits::types::{
    AeadType, Ciphersuite, CryptoError, ExporterSecret, HashType, HpkeAeadType, HpkeCiphertext,
    HpkeConfig, HpkeKdfType, HpkeKemType, HpkeKeyPair, SignatureScheme,
};
use openmls_traits::OpenMlsProvider;
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use sha2::Sha256;

use super::primitives;
use super::storage::KeyStore;

/// Which implementation does an MLS identity's cryptography.
///
/// The choice changes speed, never bytes on the wire a peer could tell apart: both backends
/// implement the same ciphersuite, and each verifies what the other produces (the provider tests,
/// and the Wycheproof and RFC vectors in `reference/tests/crypto_vectors.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CryptoBackend {
    /// ring for ECDSA signing and verification, AEAD, SHA-2, HMAC and HKDF; RustCrypto for HPKE
    /// (DHKEM(P-256) with a static key, which ring lacks). Signatures take random nonces, so
    /// two signatures of the same content differ.
    #[default]
    Ring,
    /// As [`CryptoBackend::Ring`], but ECDSA signatures are deterministic (RFC 6979, RustCrypto's
    /// p256, about eight times slower than ring's): with a seeded identity the same inputs give
    /// the same MLS messages. Session simulations and vectors use it.
    RingDeterministicSignatures,
    /// RustCrypto (`openmls_rust_crypto`) for everything: the provider before the fast path,
    /// kept to compare against and as a portable fallback.
    RustCrypto,
}

impl CryptoBackend {
    /// Whether the primitives of [`super::primitives`] (ring) are used.
    fn ring_primitives(self) -> bool {
        !matches!(self, CryptoBackend::RustCrypto)
    }

    /// Whether the identity's signatures come from ring (random nonces).
    pub(crate) fn ring_signatures(self) -> bool {
        matches!(self, CryptoBackend::Ring)
    }
}

/// Crypto, randomness and storage for openmls, one per [`MlsIdentity`](super::MlsIdentity)
/// (its key packages' private keys must be found again when a Welcome arrives).
pub(crate) struct Provider {
    crypto: SeededCrypto,
    storage: KeyStore,
}

impl Provider {
    /// A provider whose randomness is the ChaCha20 stream of `seed` (or of the OS without one).
    pub(crate) fn new(seed: Option<[u8; 32]>, backend: CryptoBackend) -> Self {
        let rng = match seed {
            Some(seed) => ChaCha20Rng::from_seed(seed),
            None => ChaCha20Rng::from_entropy(),
        };
        Self {
            crypto: SeededCrypto::new(rng, backend),
            storage: KeyStore::default(),
        }
    }
}

impl OpenMlsProvider for Provider {
    type CryptoProvider = SeededCrypto;
    type RandProvider = SeededCrypto;
    type StorageProvider = KeyStore;

    fn storage(&self) -> &Self::StorageProvider {
        &self.storage
    }

    fn crypto(&self) -> &Self::CryptoProvider {
        &self.crypto
    }

    fn rand(&self) -> &Self::RandProvider {
        &self.crypto
    }
}

/// The primitives of `backend` as openmls calls them, with randomness from the OS: what test
/// vectors and benchmarks of a backend alone take (`reference/tests/crypto_vectors.rs`,
/// `mls/floor` in bench/micro).
pub fn backend_crypto(backend: CryptoBackend) -> SeededCrypto {
    SeededCrypto::new(ChaCha20Rng::from_entropy(), backend)
}

/// The signer an identity with `backend` uses for `key`: ring (random nonces) for
/// [`CryptoBackend::Ring`], RFC 6979 otherwise. For test vectors and benchmarks.
pub fn backend_signer(
    key: p256::ecdsa::SigningKey,
    backend: CryptoBackend,
) -> impl openmls_traits::signatures::Signer {
    super::signer::P256Signer::new(key, backend.ring_signatures())
}

/// The primitives of a [`CryptoBackend`] with randomness from one [`ChaCha20Rng`] (see the
/// module docs).
pub struct SeededCrypto {
    inner: RustCrypto,
    rng: Mutex<ChaCha20Rng>,
    /// ring for the per-message primitives.
    ring: bool,
}

/// The RNG could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RandError {
    /// A thread panicked while holding the RNG.
    #[error("the MLS RNG lock is poisoned")]
    LockPoisoned,
}

impl SeededCrypto {
    fn new(rng: ChaCha20Rng, backend: CryptoBackend) -> Self {
        Self {
            inner: RustCrypto::default(),
            rng: Mutex::new(rng),
            ring: backend.ring_primitives(),
        }
    }

    fn fill(&self, out: &mut [u8]) -> Result<(), RandError> {
        self.rng
            .lock()
            .map_err(|_| RandError::LockPoisoned)?
            .fill_bytes(out);
        Ok(())
    }

    /// DHKEM(P-256, HKDF-SHA256) `Encap(pk_r)` with an ephemeral key from our RNG (RFC 9180
    /// §4.1): the encapsulated key and the hpke-rs context keyed with the shared secret.
    fn encap(
        &self,
        config: HpkeConfig,
        pk_r: &[u8],
        info: &[u8],
    ) -> Result<(Vec<u8>, hpke::Context<HpkeRustCrypto>), CryptoError> {
        let pk = p256::PublicKey::from_sec1_bytes(pk_r).map_err(|_| CryptoError::InvalidLength)?;
        let sk_e = {
            let mut rng = self
                .rng
                .lock()
                .map_err(|_| CryptoError::InsufficientRandomness)?;
            p256::SecretKey::random(&mut *rng)
        };
        let enc = sk_e
            .public_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        let shared_point = (pk.to_projective() * *sk_e.to_nonzero_scalar()).to_encoded_point(false);
        let dh = shared_point.x().ok_or(CryptoError::CryptoLibraryError)?;
        // suite_id = "KEM" || I2OSP(kem_id = 0x0010, 2)
        const SUITE: &[u8] = b"KEM\x00\x10";
        let ikm = [b"HPKE-v1".as_slice(), SUITE, b"eae_prk", dh.as_slice()].concat();
        let prk = Hkdf::<Sha256>::new(Some(&[]), &ikm);
        let kem_context = [enc.as_slice(), pk_r].concat();
        let label = [
            &32u16.to_be_bytes()[..],
            b"HPKE-v1",
            SUITE,
            b"shared_secret",
            &kem_context,
        ]
        .concat();
        let mut shared_secret = [0u8; 32];
        prk.expand(&label, &mut shared_secret)
            .map_err(|_| CryptoError::CryptoLibraryError)?;
        let context = hpke_base(config)?
            .key_schedule(&shared_secret, info, &[], &[])
            .map_err(|_| CryptoError::SenderSetupError)?;
        Ok((enc, context))
    }
}

/// The hpke-rs configuration of the one HPKE suite our ciphersuite uses (our own `encap` is
/// DHKEM(P-256) only).
fn hpke_base(config: HpkeConfig) -> Result<Hpke<HpkeRustCrypto>, CryptoError> {
    if config.0 != HpkeKemType::DhKemP256 || config.1 != HpkeKdfType::HkdfSha256 {
        return Err(CryptoError::UnsupportedCiphersuite);
    }
    let aead = match config.2 {
        HpkeAeadType::AesGcm128 => hpke_types::AeadAlgorithm::Aes128Gcm,
        HpkeAeadType::AesGcm256 => hpke_types::AeadAlgorithm::Aes256Gcm,
        HpkeAeadType::ChaCha20Poly1305 => hpke_types::AeadAlgorithm::ChaCha20Poly1305,
        HpkeAeadType::Export => hpke_types::AeadAlgorithm::HpkeExport,
    };
    Ok(Hpke::new(
        hpke::Mode::Base,
        hpke_types::KemAlgorithm::DhKemP256,
        hpke_types::KdfAlgorithm::HkdfSha256,
        aead,
    ))
}

impl OpenMlsRand for SeededCrypto {
    type Error = RandError;

    fn random_array<const N: usize>(&self) -> Result<[u8; N], Self::Error> {
        let mut out = [0u8; N];
        self.fill(&mut out)?;
        Ok(out)
    }

    fn random_vec(&self, len: usize) -> Result<Vec<u8>, Self::Error> {
        let mut out = vec![0u8; len];
        self.fill(&mut out)?;
        Ok(out)
    }
}

impl OpenMlsCrypto for SeededCrypto {
    fn supports(&self, ciphersuite: Ciphersuite) -> Result<(), CryptoError> {
        self.inner.supports(ciphersuite)
    }

    fn supported_ciphersuites(&self) -> Vec<Ciphersuite> {
        self.inner.supported_ciphersuites()
    }

    fn hkdf_extract(
        &self,
        hash_type: HashType,
        salt: &[u8],
        ikm: &[u8],
    ) -> Result<SecretVLBytes, CryptoError> {
        if self.ring {
            return Ok(primitives::hkdf_extract(hash_type, salt, ikm));
        }
        self.inner.hkdf_extract(hash_type, salt, ikm)
    }

    fn hmac(
        &self,
        hash_type: HashType,
        key: &[u8],
        message: &[u8],
    ) -> Result<SecretVLBytes, CryptoError> {
        if self.ring {
            return Ok(primitives::mac(hash_type, key, message));
        }
        self.inner.hmac(hash_type, key, message)
    }

    fn hkdf_expand(
        &self,
        hash_type: HashType,
        prk: &[u8],
        info: &[u8],
        okm_len: usize,
    ) -> Result<SecretVLBytes, CryptoError> {
        if self.ring {
            return primitives::hkdf_expand(hash_type, prk, info, okm_len);
        }
        self.inner.hkdf_expand(hash_type, prk, info, okm_len)
    }

    fn hash(&self, hash_type: HashType, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if self.ring {
            return Ok(primitives::hash(hash_type, data));
        }
        self.inner.hash(hash_type, data)
    }

    fn aead_encrypt(
        &self,
        alg: AeadType,
        key: &[u8],
        data: &[u8],
        nonce: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        if self.ring {
            return primitives::aead_encrypt(alg, key, data, nonce, aad);
        }
        self.inner.aead_encrypt(alg, key, data, nonce, aad)
    }

    fn aead_decrypt(
        &self,
        alg: AeadType,
        key: &[u8],
        ct_tag: &[u8],
        nonce: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        if self.ring {
            return primitives::aead_decrypt(alg, key, ct_tag, nonce, aad);
        }
        self.inner.aead_decrypt(alg, key, ct_tag, nonce, aad)
    }

    /// Not used by SLIM (the signature key is the app's identity key); RustCrypto's own RNG.
    fn signature_key_gen(&self, alg: SignatureScheme) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
        self.inner.signature_key_gen(alg)
    }

    fn verify_signature(
        &self,
        alg: SignatureScheme,
        data: &[u8],
        pk: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        if self.ring && primitives::verifies(alg, pk) {
            return primitives::verify_signature(alg, data, pk, signature);
        }
        self.inner.verify_signature(alg, data, pk, signature)
    }

    fn sign(&self, alg: SignatureScheme, data: &[u8], key: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.inner.sign(alg, data, key)
    }

    fn hpke_seal(
        &self,
        config: HpkeConfig,
        pk_r: &[u8],
        info: &[u8],
        aad: &[u8],
        ptxt: &[u8],
    ) -> Result<HpkeCiphertext, CryptoError> {
        let (enc, mut context) = self.encap(config, pk_r, info)?;
        let ciphertext = context
            .seal(aad, ptxt)
            .map_err(|_| CryptoError::CryptoLibraryError)?;
        Ok(HpkeCiphertext {
            kem_output: enc.into(),
            ciphertext: ciphertext.into(),
        })
    }

    fn hpke_open(
        &self,
        config: HpkeConfig,
        input: &HpkeCiphertext,
        sk_r: &[u8],
        info: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        self.inner.hpke_open(config, input, sk_r, info, aad)
    }

    fn hpke_setup_sender_and_export(
        &self,
        config: HpkeConfig,
        pk_r: &[u8],
        info: &[u8],
        exporter_context: &[u8],
        exporter_length: usize,
    ) -> Result<(Vec<u8>, ExporterSecret), CryptoError> {
        let (enc, context) = self.encap(config, pk_r, info)?;
        let secret = context
            .export(exporter_context, exporter_length)
            .map_err(|_| CryptoError::ExporterError)?;
        Ok((enc, secret.into()))
    }

    fn hpke_setup_receiver_and_export(
        &self,
        config: HpkeConfig,
        enc: &[u8],
        sk_r: &[u8],
        info: &[u8],
        exporter_context: &[u8],
        exporter_length: usize,
    ) -> Result<ExporterSecret, CryptoError> {
        self.inner.hpke_setup_receiver_and_export(
            config,
            enc,
            sk_r,
            info,
            exporter_context,
            exporter_length,
        )
    }

    fn derive_hpke_keypair(
        &self,
        config: HpkeConfig,
        ikm: &[u8],
    ) -> Result<HpkeKeyPair, CryptoError> {
        self.inner.derive_hpke_keypair(config, ikm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: HpkeConfig = HpkeConfig(
        HpkeKemType::DhKemP256,
        HpkeKdfType::HkdfSha256,
        HpkeAeadType::AesGcm128,
    );

    /// Our deterministic HPKE encryption opens with RustCrypto's HPKE (so with any RFC 9180
    /// implementation), and the same seed seals to the same bytes.
    #[test]
    fn seeded_hpke_seal_opens_with_rustcrypto_and_repeats_for_a_seed() {
        let a = SeededCrypto::new(ChaCha20Rng::from_seed([1; 32]), CryptoBackend::Ring);
        let kp = a.derive_hpke_keypair(CONFIG, &[7u8; 32]).expect("key pair");
        let seal = |c: &SeededCrypto| {
            c.hpke_seal(CONFIG, &kp.public, b"info", b"aad", b"secret")
                .expect("seal")
        };
        let ct = seal(&a);
        let plain = RustCrypto::default()
            .hpke_open(CONFIG, &ct, &kp.private, b"info", b"aad")
            .expect("open");
        assert_eq!(plain, b"secret");
        let again = seal(&SeededCrypto::new(
            ChaCha20Rng::from_seed([1; 32]),
            CryptoBackend::Ring,
        ));
        assert_eq!(ct, again, "same seed, same bytes");
        let other = seal(&SeededCrypto::new(
            ChaCha20Rng::from_seed([2; 32]),
            CryptoBackend::Ring,
        ));
        assert_ne!(ct, other, "another seed, other bytes");
        let (enc, secret) = a
            .hpke_setup_sender_and_export(CONFIG, &kp.public, b"info", b"ctx", 32)
            .expect("export");
        let theirs = RustCrypto::default()
            .hpke_setup_receiver_and_export(CONFIG, &enc, &kp.private, b"info", b"ctx", 32)
            .expect("receiver export");
        assert_eq!(&*secret, &*theirs);
    }
}
