//! MLS groups of the reference client (benches/mls.rs): what a SLIM group session pays per data
//! message (encrypt + decrypt of a 1 KiB payload with header AAD), per invite (a key package, then
//! the moderator's add commit and Welcome) and per removal, for groups of 2, 16 and 128 members.
//!
//! A fixture is one group built by its moderator, with one other member kept in step (it applies
//! every commit) to decrypt; the other members are added but never run, which is all the
//! moderator's costs depend on.

use std::time::{SystemTime, UNIX_EPOCH};

use p256::ecdsa::SigningKey;
use rand_chacha::rand_core::SeedableRng;
use slim_reference::mls::{
    backend_crypto, backend_signer, CredentialValidator, CryptoBackend, MlsError, MlsGroup,
    MlsIdentity,
};

/// The backends compared: the fast path (ring) and the provider it replaced (RustCrypto), with
/// the name each has in bench ids.
pub const BACKENDS: [(CryptoBackend, &str); 2] = [
    (CryptoBackend::Ring, "ring"),
    (CryptoBackend::RustCrypto, "rustcrypto"),
];

/// Group sizes benchmarked (members, the moderator included).
pub const GROUP_SIZES: [usize; 3] = [2, 16, 128];

/// Payload size of the data message benchmark: 1 KiB.
pub const MESSAGE_SIZE: usize = 1024;

/// Bytes standing in for the HeaderIntegrityAad of a data message (its usual size).
pub const AAD: &[u8] = &[0xa5; 180];

/// Accepts every credential: the benchmarks time MLS, not the token check.
pub struct AcceptAll;

impl CredentialValidator for AcceptAll {
    fn validate(&self, _identity: &[u8], _signature_key: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

/// Unix time for key package lifetimes (openmls checks them against the system clock too).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An identity with a deterministic key and a token of a typical size (~300 bytes), on the
/// default backend (ring).
pub fn identity(n: u64) -> MlsIdentity {
    identity_with(n, CryptoBackend::Ring)
}

/// [`identity`] on `backend`.
pub fn identity_with(n: u64, backend: CryptoBackend) -> MlsIdentity {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(n);
    let key = SigningKey::random(&mut rng);
    MlsIdentity::with_backend(
        key,
        format!("org/ns/member_{n:08}:{}", "t".repeat(280)),
        None,
        backend,
    )
}

/// A group of `size` members as seen by its moderator, plus one member kept in step.
pub struct GroupFixture {
    /// The moderator: sends, adds and removes.
    pub moderator: MlsGroup,
    /// A member that applied every commit: receives.
    pub member: MlsGroup,
    /// The last identity number handed out.
    next: u64,
    /// Every identity's backend.
    backend: CryptoBackend,
}

/// Builds a group of `size` (≥ 2) members, at epoch 1 + 2 × 2 = 5 so that three past epochs
/// are kept. All but the moderator are added in one commit, which
/// gives the tree the shape it has in SLIM (only the moderator commits, so only its path is
/// populated) at a fraction of the cost of one commit per member (each of which encrypts to
/// every member: quadratic, half a minute at 128 members in a debug build).
pub fn group_fixture(size: usize) -> Result<GroupFixture, MlsError> {
    group_fixture_with(size, CryptoBackend::Ring)
}

/// [`group_fixture`] with every identity on `backend`.
pub fn group_fixture_with(size: usize, backend: CryptoBackend) -> Result<GroupFixture, MlsError> {
    assert!(size >= 2, "a group fixture has a moderator and a member");
    let now = now_unix();
    let mut moderator = MlsGroup::create(identity_with(0, backend), now)?;
    let member_id = identity_with(1, backend);
    let mut key_packages = vec![member_id.key_package(now)?];
    for n in 2..size as u64 {
        key_packages.push(identity_with(n, backend).key_package(now)?);
    }
    let refs: Vec<&[u8]> = key_packages.iter().map(Vec::as_slice).collect();
    let (_commit, welcome) = moderator.add_members(&refs, &AcceptAll, now)?;
    let member = MlsGroup::join(member_id, &welcome, &AcceptAll)?;
    let mut fx = GroupFixture {
        moderator,
        member,
        next: size as u64,
        backend,
    };
    // Steady state: a live group has had commits, and members keep the keys (and member lists)
    // of the last [`MAX_PAST_EPOCHS`] epochs. Two add/remove rounds fill all three.
    // (Not through `add_member`/`remove_member`, so that a profile of those sees only the
    // benchmarked calls.)
    for _ in 0..2 {
        let kp = fx.new_key_package()?;
        let (commit, _) = fx.moderator.add_member(&kp, &AcceptAll, now)?;
        fx.follow(&commit)?;
        let token = fx.last_token();
        let commit = fx.moderator.remove_member(|id| id == token)?;
        fx.follow(&commit)?;
    }
    Ok(fx)
}

/// Past epochs a member keeps (the reference client's setting, as mls-rs).
pub const MAX_PAST_EPOCHS: u64 = 3;

impl GroupFixture {
    /// A key package of a new identity (outside the timed part of add benchmarks).
    pub fn new_key_package(&mut self) -> Result<Vec<u8>, MlsError> {
        self.next += 1;
        identity_with(self.next, self.backend).key_package(now_unix())
    }

    /// The token of the identity `new_key_package` last made.
    pub fn last_token(&self) -> Vec<u8> {
        identity_with(self.next, self.backend).token().to_vec()
    }
}

/// The data message benchmark: the moderator encrypts `plaintext` with [`AAD`] and the member
/// decrypts it; returns the decrypted length.
pub fn encrypt_decrypt(fx: &mut GroupFixture, plaintext: &[u8]) -> Result<usize, MlsError> {
    let message = fx.moderator.encrypt(AAD, plaintext)?;
    let got = fx.member.decrypt(&message)?;
    Ok(got.plaintext.len())
}

/// A new key package (serialized), timed by `mls/key_package`.
pub fn key_package(identity: &MlsIdentity) -> Result<Vec<u8>, MlsError> {
    identity.key_package(now_unix())
}

/// The moderator adds the member of `key_package`: commit + Welcome, timed by `mls/add_member`.
pub fn add_member(
    fx: &mut GroupFixture,
    key_package: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), MlsError> {
    fx.moderator.add_member(key_package, &AcceptAll, now_unix())
}

/// The moderator removes the member whose token is `token`: the commit, timed by
/// `mls/remove_member`.
pub fn remove_member(fx: &mut GroupFixture, token: &[u8]) -> Result<Vec<u8>, MlsError> {
    fx.moderator.remove_member(|id| id == token)
}

impl GroupFixture {
    /// The member applies the moderator's `commit` (outside the timed part), so that the
    /// fixture stays usable for [`encrypt_decrypt`].
    pub fn follow(&mut self, commit: &[u8]) -> Result<(), MlsError> {
        self.member.process_commit(commit, &AcceptAll).map(|_| ())
    }
}

/// The physical floor of one data message on `backend`: what the cryptography alone costs, with
/// no MLS framing, tree or key schedule around it. One ECDSA P-256 signature and its
/// verification over the payload and the AAD (the signed content of a `PrivateMessage` holds
/// both), and AES-128-GCM encryption and decryption of the payload with its signature (what the
/// `PrivateMessage` ciphertext holds). `mls/encrypt_decrypt_1KiB` minus this is what openmls
/// adds.
pub struct Floor {
    signer: Box<dyn openmls_traits::signatures::Signer>,
    crypto: slim_reference::mls::SeededCrypto,
    public: Vec<u8>,
    signed: Vec<u8>,
    key: [u8; 16],
    nonce: [u8; 12],
}

impl Floor {
    /// The floor of a 1 KiB message with [`AAD`] on `backend`.
    pub fn new(backend: CryptoBackend) -> Self {
        let key = SigningKey::from_slice(&[7u8; 32]).expect("a valid P-256 scalar");
        let public = key
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        let signed = [vec![0x42; MESSAGE_SIZE].as_slice(), AAD].concat();
        Self {
            signer: Box::new(backend_signer(key, backend)),
            crypto: backend_crypto(backend),
            public,
            signed,
            key: [9; 16],
            nonce: [3; 12],
        }
    }

    /// Sign, verify, seal, open: returns the opened length.
    pub fn run(&self) -> Result<usize, openmls_traits::types::CryptoError> {
        use openmls_traits::crypto::OpenMlsCrypto;
        use openmls_traits::types::{AeadType, CryptoError, SignatureScheme};
        let signature = self
            .signer
            .sign(&self.signed)
            .map_err(|_| CryptoError::CryptoLibraryError)?;
        self.crypto.verify_signature(
            SignatureScheme::ECDSA_SECP256R1_SHA256,
            &self.signed,
            &self.public,
            &signature,
        )?;
        let plaintext = [&self.signed[..MESSAGE_SIZE], signature.as_slice()].concat();
        let sealed = self.crypto.aead_encrypt(
            AeadType::Aes128Gcm,
            &self.key,
            &plaintext,
            &self.nonce,
            AAD,
        )?;
        let opened =
            self.crypto
                .aead_decrypt(AeadType::Aes128Gcm, &self.key, &sealed, &self.nonce, AAD)?;
        Ok(opened.len())
    }
}
