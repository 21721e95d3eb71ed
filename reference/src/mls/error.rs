//! Typed errors of the MLS layer.
//!
//! openmls has one error type per operation, generic over the storage error; the session layer
//! only needs to know *what* failed and *why*, so each openmls error is kept as text under the
//! operation that produced it, and the failures a caller must act on (a rejected key package, a
//! rejected member, a message from outside the group) get their own variants.

use thiserror::Error;

/// Why a key package was not added to the group.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyPackageRejection {
    /// The bytes are not a TLS-serialized `MLSMessage` carrying a KeyPackage.
    #[error("not an MLSMessage(KeyPackage): {0}")]
    Malformed(String),
    /// The key package is for another ciphersuite than the group's.
    #[error("ciphersuite {found:#06x}, the group uses {expected:#06x}")]
    WrongCiphersuite {
        /// The group's ciphersuite.
        expected: u16,
        /// The key package's ciphersuite.
        found: u16,
    },
    /// A signature (key package or its leaf node) does not verify, or another RFC 9420 §10.1
    /// check failed.
    #[error("invalid key package: {0}")]
    Invalid(String),
    /// The credential is not a BasicCredential (SLIM only uses those).
    #[error("credential type {0} is not basic")]
    NotBasicCredential(u16),
    /// `not_after` of the key package's lifetime has passed.
    #[error("expired: not_after {not_after} is not after now {now}")]
    Expired {
        /// The key package's `not_after` (unix seconds).
        not_after: u64,
        /// The time it was checked against (unix seconds).
        now: u64,
    },
    /// `not_before` of the key package's lifetime is still to come.
    #[error("not yet valid: not_before {not_before} is after now {now}")]
    NotYetValid {
        /// The key package's `not_before` (unix seconds).
        not_before: u64,
        /// The time it was checked against (unix seconds).
        now: u64,
    },
    /// The caller's [`CredentialValidator`](super::CredentialValidator) refused the credential
    /// (invalid or expired token, or its `pubkey` is not the leaf's signature key).
    #[error("credential refused: {0}")]
    Credential(String),
}

/// An error of the MLS layer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MlsError {
    /// A key package was refused; the reason says which check failed.
    #[error("key package rejected: {0}")]
    KeyPackageRejected(#[from] KeyPackageRejection),
    /// A member of a Welcome's ratchet tree, or one a commit adds or updates, was refused by the
    /// caller's validator.
    #[error("member {leaf} rejected: {reason}")]
    MemberRejected {
        /// The member's leaf index in the ratchet tree.
        leaf: u32,
        /// Why the validator refused it.
        reason: String,
    },
    /// The bytes do not parse as the `MLSMessage` the operation expects.
    #[error("malformed MLS message: {0}")]
    Malformed(String),
    /// The `MLSMessage` parsed but carries another kind of content than the operation expects.
    #[error("expected {expected}, got {found}")]
    UnexpectedMessage {
        /// What the operation takes.
        expected: &'static str,
        /// What the message was.
        found: &'static str,
    },
    /// No member's credential identity matches.
    #[error("no such member in the group")]
    NoSuchMember,
    /// This member was removed from the group (or never fully joined): it can neither send nor
    /// receive any more.
    #[error("not a member of the group any more")]
    NotAMember,
    /// A message could not be decrypted or verified (wrong group, an epoch older than the
    /// retained ones, a forged or replayed message).
    #[error("cannot decrypt: {0}")]
    Decrypt(String),
    /// Another openmls operation failed.
    #[error("{op}: {reason}")]
    Operation {
        /// The operation (`"create group"`, `"add member"`, …).
        op: &'static str,
        /// openmls' reason.
        reason: String,
    },
}

impl MlsError {
    /// An [`MlsError::Operation`] from any displayable openmls error.
    pub(crate) fn op(op: &'static str, e: impl std::fmt::Display) -> Self {
        MlsError::Operation {
            op,
            reason: e.to_string(),
        }
    }
}
