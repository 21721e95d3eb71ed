//! The openmls provider: RustCrypto for crypto and randomness, and a [`KeyStore`] for keys.

use openmls_rust_crypto::RustCrypto;
use openmls_traits::OpenMlsProvider;

use super::storage::KeyStore;

/// Crypto, randomness and storage for openmls, one per [`MlsIdentity`](super::MlsIdentity)
/// (its key packages' private keys must be found again when a Welcome arrives).
#[derive(Default)]
pub(crate) struct Provider {
    crypto: RustCrypto,
    storage: KeyStore,
}

impl OpenMlsProvider for Provider {
    type CryptoProvider = RustCrypto;
    type RandProvider = RustCrypto;
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
