//! An MLS group as a SLIM session uses it: the moderator creates it and adds or removes members,
//! participants join from a Welcome and apply the moderator's commits, and everybody encrypts
//! application payloads with the SLIM header bytes as authenticated data.
//!
//! Every message in or out is a TLS-serialized `MLSMessage`, exactly what the real SLIM (mls-rs)
//! puts in `JoinReply.key_package`, `GroupWelcome.mls.mls_content`, `GroupUpdate.mls.mls_content`
//! and in the `app_payload.blob` of data messages (WIRE.md §5.5–§5.7, §6).
//!
//! The openmls settings that mls-rs needs (WIRE.md §6.1) are all in [`join_config`]:
//! - mixed wire-format policy: mls-rs sends commits as PublicMessage;
//! - the ratchet tree travels in the Welcome (mls-rs does not take it out of band);
//! - three past epochs are kept, so a message sent just before a commit still decrypts;
//! - default capabilities, never listing default extensions or proposals (mls-rs refuses those);
//! - `set_aad` before every `create_message` (openmls clears it after each message).
//!
//! Time: this module reads no clock. Key package lifetimes are set and checked against the
//! caller's `now_unix`. (openmls itself also checks lifetimes against the system clock when it
//! verifies a key package or a Welcome's tree; that check cannot be turned off, so a key package
//! must be valid by both.)

use std::sync::Arc;

use openmls::prelude::{tls_codec::Deserialize as _, Sender};
use openmls::prelude::{
    BasicCredential, Ciphersuite, Credential, CredentialType, CredentialWithKey, KeyPackage,
    KeyPackageIn, KeyPackageVerifyError, LeafNodeIndex, Lifetime, MlsGroup as Group,
    MlsGroupCreateConfig, MlsGroupJoinConfig, MlsMessageBodyIn, MlsMessageIn, MlsMessageOut,
    ProcessedMessageContent, ProtocolMessage, ProtocolVersion, SenderRatchetConfiguration,
    StagedWelcome, MIXED_PLAINTEXT_WIRE_FORMAT_POLICY,
};
use openmls::treesync::errors::LifetimeError;
use openmls_traits::OpenMlsProvider as _;
use p256::ecdsa::SigningKey;

use super::error::{KeyPackageRejection, MlsError};
use super::provider::{CryptoBackend, Provider};
use super::signer::P256Signer;
use crate::mutants::session::{self as mutants, SessionFault};

/// The ciphersuite of every SLIM MLS group: `MLS_128_DHKEMP256_AES128GCM_SHA256_P256` (0x0002),
/// the real SLIM's default (WIRE.md §6).
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMP256_AES128GCM_SHA256_P256;

/// How far a key package's `not_before` is set into the past, so that a group member whose
/// clock runs behind ours still accepts it (openmls uses the same margin).
const KEY_PACKAGE_BACKDATE_SECS: u64 = 3600;

/// How long a key package (and the leaf it becomes) is valid: openmls' default, about 3 months;
/// openmls refuses leaves valid for longer than that plus the backdating.
const KEY_PACKAGE_LIFETIME_SECS: u64 = 3 * 28 * 24 * 3600;

/// How far ahead a peer's clock may be: its key package's `not_before` may be up to this far in
/// our future (the real SLIM allows the same 60 s).
const CLOCK_SKEW_SECS: u64 = 60;

/// Epochs whose keys are kept after a commit (mls-rs keeps 3).
const MAX_PAST_EPOCHS: usize = 3;

/// How many message generations a receiver keeps keys for, backwards (messages that arrive
/// late, e.g. SLIM retransmissions) and forwards (messages that were lost): mls-rs' 1024.
const SENDER_RATCHET_WINDOW: u32 = 1024;

/// Decides whether a credential may be in the group.
///
/// `identity` is the BasicCredential's identity: the member's SLIM identity token as it was when
/// the member made its key package. `signature_key` is the leaf's MLS signature key (65-byte
/// uncompressed P-256 point). The SLIM rule (the real SDK's `SlimIdentityProvider`) is: the token
/// verifies, and its `pubkey` claim is `signature_key`. Return the reason for a refusal; it ends
/// up in the error the caller sees.
///
/// It is called for every key package before it is added, for every member of the ratchet tree
/// of a Welcome before the group is joined, and for every member a processed commit adds or
/// whose credential it changes.
///
/// A member's credential keeps the token it joined with, so the members already in a tree that
/// a late joiner sees may carry tokens that have expired since (shared-secret tokens live an
/// hour). Whether expiry counts for them is the caller's decision; the real SDK verifies every
/// member's token, expiry included [code-derived, verify].
pub trait CredentialValidator {
    /// `Ok(())` if `identity` with `signature_key` may be a member, else why not.
    fn validate(&self, identity: &[u8], signature_key: &[u8]) -> Result<(), String>;
}

impl<F> CredentialValidator for F
where
    F: Fn(&[u8], &[u8]) -> Result<(), String>,
{
    fn validate(&self, identity: &[u8], signature_key: &[u8]) -> Result<(), String> {
        self(identity, signature_key)
    }
}

/// An app's MLS identity: its SLIM signing key and identity token, and the store where openmls
/// keeps the private keys of the key packages it hands out.
///
/// Cheap to clone; clones share the signing key and the store, so one identity serves every
/// group (session) of an app.
#[derive(Clone)]
pub struct MlsIdentity {
    signer: Arc<P256Signer>,
    provider: Arc<Provider>,
    token: Vec<u8>,
}

impl MlsIdentity {
    /// An identity that signs with `signing_key` (the key whose public point is the token's
    /// `pubkey` claim) and whose credential is `token` (the identity token string's bytes).
    /// Its randomness (key package keys, group ids, encryption) comes from the OS.
    /// Its cryptography is [`CryptoBackend::Ring`].
    pub fn new(signing_key: SigningKey, token: impl Into<Vec<u8>>) -> Self {
        Self::with_backend(signing_key, token, None, CryptoBackend::Ring)
    }

    /// Like [`MlsIdentity::new`], with all of its randomness drawn from the ChaCha20 stream of
    /// `seed`: the same seed and the same inputs give the same MLS messages, byte for byte
    /// ([`CryptoBackend::RingDeterministicSignatures`]).
    pub fn seeded(signing_key: SigningKey, token: impl Into<Vec<u8>>, seed: [u8; 32]) -> Self {
        Self::with_backend(
            signing_key,
            token,
            Some(seed),
            CryptoBackend::RingDeterministicSignatures,
        )
    }

    /// An identity whose randomness is the ChaCha20 stream of `seed` (the OS's without one) and
    /// whose primitives come from `backend`. Only a seed with
    /// [`CryptoBackend::RingDeterministicSignatures`] or [`CryptoBackend::RustCrypto`] makes its
    /// messages reproducible.
    pub fn with_backend(
        signing_key: SigningKey,
        token: impl Into<Vec<u8>>,
        seed: Option<[u8; 32]>,
        backend: CryptoBackend,
    ) -> Self {
        Self {
            signer: Arc::new(P256Signer::new(signing_key, backend.ring_signatures())),
            provider: Arc::new(Provider::new(seed, backend)),
            token: token.into(),
        }
    }

    /// The same key and store with a fresh token, for key packages and groups made from now on
    /// (SLIM tokens expire; a member's credential keeps the token it joined with).
    pub fn with_token(&self, token: impl Into<Vec<u8>>) -> Self {
        Self {
            token: token.into(),
            ..self.clone()
        }
    }

    /// The MLS signature public key: the 65-byte uncompressed SEC1 point.
    pub fn signature_key(&self) -> &[u8] {
        self.signer.public_key()
    }

    /// The credential identity: the token.
    pub fn token(&self) -> &[u8] {
        &self.token
    }

    fn credential(&self) -> CredentialWithKey {
        CredentialWithKey {
            credential: BasicCredential::new(self.token.clone()).into(),
            signature_key: self.signer.public_key().to_vec().into(),
        }
    }

    /// A new key package, valid from an hour before `now_unix` for about 3 months, as a
    /// serialized `MLSMessage` (what `JoinReply.key_package` carries). Its private keys stay in
    /// this identity's store until a Welcome that uses it is joined.
    pub fn key_package(&self, now_unix: u64) -> Result<Vec<u8>, MlsError> {
        let bundle = KeyPackage::builder()
            .key_package_lifetime(lifetime(now_unix))
            .build(
                CIPHERSUITE,
                &*self.provider,
                &*self.signer,
                self.credential(),
            )
            .map_err(|e| MlsError::op("create key package", e))?;
        MlsMessageOut::from(bundle.key_package().clone())
            .to_bytes()
            .map_err(|e| MlsError::op("serialize key package", e))
    }
}

/// What a processed commit changed, for the session layer's roster.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommitOutcome {
    /// This member was removed: the group can no longer be used.
    pub removed_self: bool,
    /// Credential identities (tokens) of the members the commit added.
    pub added: Vec<Vec<u8>>,
    /// Credential identities (tokens) of the members the commit removed.
    pub removed: Vec<Vec<u8>>,
}

/// A decrypted application message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppMessage {
    /// The plaintext (the original `app_payload.blob`).
    pub plaintext: Vec<u8>,
    /// The MLS `authenticated_data`: what the sender passed as `aad` (in SLIM, the sender's
    /// HeaderIntegrityAad bytes, to be compared with the receiver's rebuilt ones).
    pub aad: Vec<u8>,
    /// The sender's credential identity (its token at join time).
    pub sender: Vec<u8>,
}

/// One member's view of an MLS group.
pub struct MlsGroup {
    identity: MlsIdentity,
    group: Group,
}

impl MlsGroup {
    /// A new group with `identity` as its only member (the moderator), at epoch 0.
    pub fn create(identity: MlsIdentity, now_unix: u64) -> Result<Self, MlsError> {
        let config = MlsGroupCreateConfig::builder()
            .ciphersuite(CIPHERSUITE)
            .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
            .use_ratchet_tree_extension(true)
            .max_past_epochs(MAX_PAST_EPOCHS)
            .sender_ratchet_configuration(sender_ratchet())
            .lifetime(lifetime(now_unix))
            .build();
        let group = Group::new(
            &*identity.provider,
            &*identity.signer,
            &config,
            identity.credential(),
        )
        .map_err(|e| MlsError::op("create group", e))?;
        Ok(Self { identity, group })
    }

    /// Joins the group a Welcome (serialized `MLSMessage`) invites `identity` to. The Welcome
    /// must be for one of `identity`'s key packages and carry the ratchet tree; every member in
    /// the tree must pass `validator`.
    pub fn join(
        identity: MlsIdentity,
        welcome: &[u8],
        validator: &dyn CredentialValidator,
    ) -> Result<Self, MlsError> {
        let welcome = match parse(welcome)? {
            MlsMessageBodyIn::Welcome(w) => w,
            other => return Err(unexpected("Welcome", &other)),
        };
        let staged =
            StagedWelcome::build_from_welcome(&*identity.provider, &join_config(), welcome)
                .and_then(|b| b.build())
                .map_err(|e| MlsError::op("process welcome", e))?;
        for member in staged.members() {
            check_member(
                validator,
                member.index,
                &member.credential,
                &member.signature_key,
            )?;
        }
        let group = staged
            .into_group(&*identity.provider)
            .map_err(|e| MlsError::op("join group", e))?;
        Ok(Self { identity, group })
    }

    /// Adds the member of a key package (serialized `MLSMessage`, as in `JoinReply`). The key
    /// package must verify, be for [`CIPHERSUITE`], be valid at `now_unix`, and its credential
    /// must pass `validator`. Returns `(commit, welcome)`: the Commit for the existing members
    /// (a PublicMessage, `GroupUpdate.mls`) and the Welcome for the new one (`GroupWelcome.mls`).
    /// The commit is already applied here: this member is in the new epoch.
    pub fn add_member(
        &mut self,
        key_package: &[u8],
        validator: &dyn CredentialValidator,
        now_unix: u64,
    ) -> Result<(Vec<u8>, Vec<u8>), MlsError> {
        self.add_members(&[key_package], validator, now_unix)
    }

    /// [`Self::add_member`] for several key packages in one commit; the one Welcome serves every
    /// new member. If any key package is rejected, none is added.
    pub fn add_members(
        &mut self,
        key_packages: &[&[u8]],
        validator: &dyn CredentialValidator,
        now_unix: u64,
    ) -> Result<(Vec<u8>, Vec<u8>), MlsError> {
        let key_packages = key_packages
            .iter()
            .map(|kp| self.check_key_package(kp, validator, now_unix))
            .collect::<Result<Vec<_>, _>>()?;
        let (commit, welcome, _group_info) = self
            .group
            .add_members(
                &*self.identity.provider,
                &*self.identity.signer,
                &key_packages,
            )
            .map_err(|e| MlsError::op("add member", e))?;
        self.merge_own_commit()?;
        Ok((serialize(&commit)?, serialize(&welcome)?))
    }

    /// The checks of [`Self::add_member`] on a key package, without adding it.
    fn check_key_package(
        &self,
        bytes: &[u8],
        validator: &dyn CredentialValidator,
        now_unix: u64,
    ) -> Result<KeyPackage, KeyPackageRejection> {
        let key_package: KeyPackageIn = match parse(bytes) {
            Ok(MlsMessageBodyIn::KeyPackage(kp)) => kp,
            Ok(other) => {
                return Err(KeyPackageRejection::Malformed(format!(
                    "an MLSMessage carrying {}",
                    body_name(&other)
                )))
            }
            Err(e) => return Err(KeyPackageRejection::Malformed(e.to_string())),
        };
        let key_package = key_package
            .validate(self.identity.provider.crypto(), ProtocolVersion::Mls10)
            .map_err(|e| match e {
                KeyPackageVerifyError::LifetimeError(LifetimeError::Expired { not_after, now }) => {
                    KeyPackageRejection::Expired { not_after, now }
                }
                KeyPackageVerifyError::LifetimeError(LifetimeError::NotValidYet {
                    not_before,
                    now,
                }) => KeyPackageRejection::NotYetValid { not_before, now },
                other => KeyPackageRejection::Invalid(other.to_string()),
            })?;
        if key_package.ciphersuite() != CIPHERSUITE {
            return Err(KeyPackageRejection::WrongCiphersuite {
                expected: CIPHERSUITE.into(),
                found: key_package.ciphersuite().into(),
            });
        }
        let life = key_package.life_time();
        if life.not_after() <= now_unix {
            return Err(KeyPackageRejection::Expired {
                not_after: life.not_after(),
                now: now_unix,
            });
        }
        if life.not_before() > now_unix.saturating_add(CLOCK_SKEW_SECS) {
            return Err(KeyPackageRejection::NotYetValid {
                not_before: life.not_before(),
                now: now_unix,
            });
        }
        let leaf = key_package.leaf_node();
        let identity = basic_identity(leaf.credential())?;
        // Seeded fault: the credential is not checked (SLIM-MLS-002).
        if !mutants::on(SessionFault::AcceptAnyKeyPackage) {
            validator
                .validate(identity, leaf.signature_key().as_slice())
                .map_err(KeyPackageRejection::Credential)?;
        }
        Ok(key_package)
    }

    /// The credential identity (token) of the first other member whose identity satisfies
    /// `predicate`. The session layer looks members up by the token's `sub`, since a member's
    /// credential holds the token it joined with, not its current one.
    pub fn find_member(&self, predicate: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
        self.find_leaf(predicate).map(|(_, identity)| identity)
    }

    fn find_leaf(&self, predicate: impl Fn(&[u8]) -> bool) -> Option<(LeafNodeIndex, Vec<u8>)> {
        let own = self.group.own_leaf_index();
        self.group
            .members()
            .filter(|m| m.index != own)
            .map(|m| (m.index, m.credential.serialized_content().to_vec()))
            .find(|(_, identity)| predicate(identity))
    }

    /// Removes the first other member whose credential identity satisfies `predicate` (see
    /// [`Self::find_member`]). Returns the Commit for the remaining members (and the removed
    /// one, who learns from it that it is out); it is already applied here.
    pub fn remove_member(
        &mut self,
        predicate: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<u8>, MlsError> {
        let (leaf, _) = self.find_leaf(predicate).ok_or(MlsError::NoSuchMember)?;
        let (commit, _welcome, _group_info) = self
            .group
            .remove_members(&*self.identity.provider, &*self.identity.signer, &[leaf])
            .map_err(|e| MlsError::op("remove member", e))?;
        self.merge_own_commit()?;
        serialize(&commit)
    }

    /// Replaces the member whose credential identity satisfies `predicate` by the member of
    /// `key_package` (normally the same identity with fresh keys) in one commit: the SLIM rejoin
    /// (WIRE.md §5.6, Remove + Add of the same identity). The key package gets the checks of
    /// [`Self::add_member`]. Returns `(commit, welcome)`; the commit is already applied here.
    pub fn rejoin_member(
        &mut self,
        predicate: impl Fn(&[u8]) -> bool,
        key_package: &[u8],
        validator: &dyn CredentialValidator,
        now_unix: u64,
    ) -> Result<(Vec<u8>, Vec<u8>), MlsError> {
        let key_package = self.check_key_package(key_package, validator, now_unix)?;
        let (leaf, _) = self.find_leaf(predicate).ok_or(MlsError::NoSuchMember)?;
        let provider = &*self.identity.provider;
        let bundle = self
            .group
            .commit_builder()
            .propose_removals([leaf])
            .propose_adds([key_package])
            .load_psks(provider.storage())
            .map_err(|e| MlsError::op("rejoin member", e))?
            .build(
                provider.rand(),
                provider.crypto(),
                &*self.identity.signer,
                |_| true,
            )
            .map_err(|e| MlsError::op("rejoin member", e))?
            .stage_commit(provider)
            .map_err(|e| MlsError::op("rejoin member", e))?;
        let welcome = bundle
            .to_welcome_msg()
            .ok_or_else(|| MlsError::op("rejoin member", "the commit has no welcome"))?;
        let (commit, _, _) = bundle.into_messages();
        self.merge_own_commit()?;
        Ok((serialize(&commit)?, serialize(&welcome)?))
    }

    fn merge_own_commit(&mut self) -> Result<(), MlsError> {
        self.group
            .merge_pending_commit(&*self.identity.provider)
            .map_err(|e| MlsError::op("merge own commit", e))
    }

    /// Applies a Commit (serialized `MLSMessage`) from another member, normally the moderator.
    /// Every member it adds, and every member whose credential it changes, must pass
    /// `validator`; otherwise nothing is applied. Commits from outside the group (external
    /// commits) are refused, as the real SLIM does.
    pub fn process_commit(
        &mut self,
        commit: &[u8],
        validator: &dyn CredentialValidator,
    ) -> Result<CommitOutcome, MlsError> {
        if !self.group.is_active() {
            return Err(MlsError::NotAMember);
        }
        let message = protocol_message(parse(commit)?, "Commit")?;
        let processed = self
            .group
            .process_message(&*self.identity.provider, message)
            .map_err(|e| MlsError::op("process commit", e))?;
        let committer = match processed.sender() {
            Sender::Member(leaf) => *leaf,
            _ => {
                return Err(MlsError::op(
                    "process commit",
                    "commits from outside the group are not accepted",
                ))
            }
        };
        let staged = match processed.into_content() {
            ProcessedMessageContent::StagedCommitMessage(staged) => staged,
            _ => {
                return Err(MlsError::UnexpectedMessage {
                    expected: "Commit",
                    found: "another message",
                })
            }
        };
        let mut outcome = CommitOutcome {
            removed_self: staged.self_removed(),
            ..CommitOutcome::default()
        };
        for add in staged.add_proposals() {
            let leaf = add.add_proposal().key_package().leaf_node();
            // The new member's index is not known before the merge; report it as u32::MAX.
            check_member(
                validator,
                LeafNodeIndex::new(u32::MAX),
                leaf.credential(),
                leaf.signature_key().as_slice(),
            )?;
            outcome
                .added
                .push(leaf.credential().serialized_content().to_vec());
        }
        for update in staged.update_proposals() {
            let leaf = update.update_proposal().leaf_node();
            if let Sender::Member(index) = update.sender() {
                self.check_changed_credential(validator, *index, leaf.credential(), leaf)?;
            }
        }
        if let Some(leaf) = staged.update_path_leaf_node() {
            self.check_changed_credential(validator, committer, leaf.credential(), leaf)?;
        }
        for remove in staged.remove_proposals() {
            if let Some(credential) = self.group.member(remove.remove_proposal().removed()) {
                outcome
                    .removed
                    .push(credential.serialized_content().to_vec());
            }
        }
        self.group
            .merge_staged_commit(&*self.identity.provider, *staged)
            .map_err(|e| MlsError::op("merge commit", e))?;
        Ok(outcome)
    }

    /// Validates a leaf's credential if it is not the one the member at `index` already has.
    fn check_changed_credential(
        &self,
        validator: &dyn CredentialValidator,
        index: LeafNodeIndex,
        credential: &Credential,
        leaf: &openmls::prelude::LeafNode,
    ) -> Result<(), MlsError> {
        let unchanged = self.group.member_at(index).is_some_and(|m| {
            m.credential == *credential && m.signature_key == leaf.signature_key().as_slice()
        });
        if unchanged {
            return Ok(());
        }
        check_member(
            validator,
            index,
            credential,
            leaf.signature_key().as_slice(),
        )
    }

    /// Encrypts an application message: a serialized `MLSMessage` (PrivateMessage) whose
    /// `authenticated_data` is `aad` (in SLIM, the HeaderIntegrityAad bytes).
    pub fn encrypt(&mut self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, MlsError> {
        if !self.group.is_active() {
            return Err(MlsError::NotAMember);
        }
        // openmls clears the AAD after every message: set it each time.
        self.group.set_aad(aad.to_vec());
        let message = self
            .group
            .create_message(&*self.identity.provider, &*self.identity.signer, plaintext)
            .map_err(|e| MlsError::op("encrypt", e))?;
        serialize(&message)
    }

    /// Decrypts an application message (serialized `MLSMessage`, PrivateMessage) from another
    /// member, of the current epoch or one of the last three.
    pub fn decrypt(&mut self, message: &[u8]) -> Result<AppMessage, MlsError> {
        if !self.group.is_active() {
            return Err(MlsError::NotAMember);
        }
        let message = match parse(message)? {
            MlsMessageBodyIn::PrivateMessage(m) => ProtocolMessage::from(m),
            other => return Err(unexpected("PrivateMessage", &other)),
        };
        let processed = self
            .group
            .process_message(&*self.identity.provider, message)
            .map_err(|e| MlsError::Decrypt(e.to_string()))?;
        let aad = processed.aad().to_vec();
        let sender = processed.credential().serialized_content().to_vec();
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(app) => Ok(AppMessage {
                plaintext: app.into_bytes(),
                aad,
                sender,
            }),
            _ => Err(MlsError::UnexpectedMessage {
                expected: "application message",
                found: "a handshake message",
            }),
        }
    }

    /// The current epoch (0 at creation, +1 per commit). SLIM heartbeats carry it.
    pub fn epoch(&self) -> u64 {
        self.group.epoch().as_u64()
    }

    /// The epoch authenticator of the current epoch (RFC 9420 §8.7): equal at every member that
    /// is in the same epoch of the same group, so members compare it to prove they agree on the
    /// group's state (the MLS interop "StateAuth" check).
    pub fn epoch_authenticator(&self) -> Vec<u8> {
        self.group.epoch_authenticator().as_slice().to_vec()
    }

    /// Credential identities (tokens) of all members, this one included, in leaf order.
    pub fn members(&self) -> Vec<Vec<u8>> {
        self.group
            .members()
            .map(|m| m.credential.serialized_content().to_vec())
            .collect()
    }

    /// Whether this member is still in the group (false once a commit removed it).
    pub fn is_active(&self) -> bool {
        self.group.is_active()
    }

    /// The group id (random, chosen by the creator).
    pub fn group_id(&self) -> &[u8] {
        self.group.group_id().as_slice()
    }
}

impl Drop for MlsGroup {
    /// Drops the group's state from the identity's store, which outlives the group.
    fn drop(&mut self) {
        // Nothing to do on failure: the store is in memory and only this group used the entries.
        let _ = self.group.delete(self.identity.provider.storage());
    }
}

/// openmls settings shared by creators and joiners (WIRE.md §6.1).
fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .use_ratchet_tree_extension(true)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .sender_ratchet_configuration(sender_ratchet())
        .build()
}

fn sender_ratchet() -> SenderRatchetConfiguration {
    SenderRatchetConfiguration::new(SENDER_RATCHET_WINDOW, SENDER_RATCHET_WINDOW)
}

fn lifetime(now_unix: u64) -> Lifetime {
    Lifetime::init(
        now_unix.saturating_sub(KEY_PACKAGE_BACKDATE_SECS),
        now_unix.saturating_add(KEY_PACKAGE_LIFETIME_SECS),
    )
}

/// The identity of a BasicCredential.
fn basic_identity(credential: &Credential) -> Result<&[u8], KeyPackageRejection> {
    match credential.credential_type() {
        CredentialType::Basic => Ok(credential.serialized_content()),
        other => Err(KeyPackageRejection::NotBasicCredential(other.into())),
    }
}

fn check_member(
    validator: &dyn CredentialValidator,
    leaf: LeafNodeIndex,
    credential: &Credential,
    signature_key: &[u8],
) -> Result<(), MlsError> {
    let rejected = |reason: String| MlsError::MemberRejected {
        leaf: leaf.u32(),
        reason,
    };
    let identity = basic_identity(credential).map_err(|e| rejected(e.to_string()))?;
    validator
        .validate(identity, signature_key)
        .map_err(rejected)
}

fn parse(bytes: &[u8]) -> Result<MlsMessageBodyIn, MlsError> {
    let mut rest = bytes;
    let message =
        MlsMessageIn::tls_deserialize(&mut rest).map_err(|e| MlsError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(MlsError::Malformed(format!(
            "{} bytes after the MLSMessage",
            rest.len()
        )));
    }
    Ok(message.extract())
}

fn protocol_message(
    body: MlsMessageBodyIn,
    expected: &'static str,
) -> Result<ProtocolMessage, MlsError> {
    match body {
        MlsMessageBodyIn::PublicMessage(m) => Ok(m.into()),
        MlsMessageBodyIn::PrivateMessage(m) => Ok(m.into()),
        other => Err(unexpected(expected, &other)),
    }
}

fn serialize(message: &MlsMessageOut) -> Result<Vec<u8>, MlsError> {
    message
        .to_bytes()
        .map_err(|e| MlsError::op("serialize message", e))
}

fn body_name(body: &MlsMessageBodyIn) -> &'static str {
    match body {
        MlsMessageBodyIn::PublicMessage(_) => "PublicMessage",
        MlsMessageBodyIn::PrivateMessage(_) => "PrivateMessage",
        MlsMessageBodyIn::Welcome(_) => "Welcome",
        MlsMessageBodyIn::GroupInfo(_) => "GroupInfo",
        MlsMessageBodyIn::KeyPackage(_) => "KeyPackage",
        #[allow(unreachable_patterns)]
        _ => "another message",
    }
}

fn unexpected(expected: &'static str, body: &MlsMessageBodyIn) -> MlsError {
    MlsError::UnexpectedMessage {
        expected,
        found: body_name(body),
    }
}
