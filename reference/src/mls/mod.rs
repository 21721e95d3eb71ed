//! MLS (RFC 9420) groups for SLIM sessions, with openmls, interoperable with the real SLIM's
//! mls-rs (WIRE.md §6, §6.1).
//!
//! - [`group`]: [`MlsIdentity`] (the app's signing key, token and key store) and [`MlsGroup`]
//!   (create, add, remove, join, commits, encrypt/decrypt with header AAD).
//! - [`error`]: [`MlsError`] and [`KeyPackageRejection`].
//! - [`CryptoBackend`]: ring (the default: the fast path) or RustCrypto for the primitives.
//!
//! The identity token is opaque here: whether a credential may join is the caller's decision,
//! through a [`CredentialValidator`] (the session layer checks the token and that its `pubkey`
//! claim is the leaf's signature key).

pub mod error;
pub mod group;
mod primitives;
mod provider;
mod signer;
mod storage;

pub use error::{KeyPackageRejection, MlsError};
pub use group::{
    AppMessage, CommitOutcome, CredentialValidator, MlsGroup, MlsIdentity, CIPHERSUITE,
};
pub use provider::{backend_crypto, backend_signer, CryptoBackend, SeededCrypto};
