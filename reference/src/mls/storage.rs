//! The key store openmls writes to: the private keys it must find again, and nothing else.
//!
//! openmls persists its whole group state (ratchet tree, secret tree, past epochs' member lists,
//! …) to the storage provider after every operation, so that `MlsGroup::load` can rebuild a
//! group after a restart. The reference client never reloads a group: the `MlsGroup` value is
//! the state. With openmls' `MemoryStorage` those writes serialize the state to JSON each time;
//! for an application message that is the message-secrets store (the secret tree and, for each
//! of the three kept past epochs, the member list), so every encrypt and every decrypt paid for
//! a JSON document that grows with the group (see bench/micro/benches/mls.rs).
//!
//! [`KeyStore`] keeps what openmls reads back while it runs: signature and encryption key pairs,
//! epoch key pairs, key packages (for Welcomes) and PSKs, in a `MemoryStorage`. The group-state
//! entries, which openmls only reads in `MlsGroup::load` / `PublicGroup::load`, are not stored:
//! their writes and deletes do nothing and their reads find nothing. So a group cannot be loaded
//! from this store, which no code here does (the provider is private to this module tree).

use openmls_rust_crypto::{MemoryStorage, MemoryStorageError};
use openmls_traits::storage::{traits as st, StorageProvider, CURRENT_VERSION};

/// Key material for openmls, without the group state (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct KeyStore {
    keys: MemoryStorage,
}

impl StorageProvider<CURRENT_VERSION> for KeyStore {
    type Error = MemoryStorageError;

    fn write_mls_join_config<
        GroupId: st::GroupId<CURRENT_VERSION>,
        MlsGroupJoinConfig: st::MlsGroupJoinConfig<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
        _config: &MlsGroupJoinConfig,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    fn append_own_leaf_node<
        GroupId: st::GroupId<CURRENT_VERSION>,
        LeafNode: st::LeafNode<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
        _leaf_node: &LeafNode,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    fn queue_proposal<
        GroupId: st::GroupId<CURRENT_VERSION>,
        ProposalRef: st::ProposalRef<CURRENT_VERSION>,
        QueuedProposal: st::QueuedProposal<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
        _proposal_ref: &ProposalRef,
        _proposal: &QueuedProposal,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    fn write_tree<
        GroupId: st::GroupId<CURRENT_VERSION>,
        TreeSync: st::TreeSync<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
        _tree: &TreeSync,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    fn write_interim_transcript_hash<
        GroupId: st::GroupId<CURRENT_VERSION>,
        InterimTranscriptHash: st::InterimTranscriptHash<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
        _interim_transcript_hash: &InterimTranscriptHash,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    fn write_context<
        GroupId: st::GroupId<CURRENT_VERSION>,
        GroupContext: st::GroupContext<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
        _group_context: &GroupContext,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    fn write_confirmation_tag<
        GroupId: st::GroupId<CURRENT_VERSION>,
        ConfirmationTag: st::ConfirmationTag<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
        _confirmation_tag: &ConfirmationTag,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    fn write_group_state<
        GroupState: st::GroupState<CURRENT_VERSION>,
        GroupId: st::GroupId<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
        _group_state: &GroupState,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    fn write_message_secrets<
        GroupId: st::GroupId<CURRENT_VERSION>,
        MessageSecrets: st::MessageSecrets<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
        _message_secrets: &MessageSecrets,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    fn write_resumption_psk_store<
        GroupId: st::GroupId<CURRENT_VERSION>,
        ResumptionPskStore: st::ResumptionPskStore<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
        _resumption_psk_store: &ResumptionPskStore,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    fn write_own_leaf_index<
        GroupId: st::GroupId<CURRENT_VERSION>,
        LeafNodeIndex: st::LeafNodeIndex<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
        _own_leaf_index: &LeafNodeIndex,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    fn write_group_epoch_secrets<
        GroupId: st::GroupId<CURRENT_VERSION>,
        GroupEpochSecrets: st::GroupEpochSecrets<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
        _group_epoch_secrets: &GroupEpochSecrets,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    fn write_signature_key_pair<
        SignaturePublicKey: st::SignaturePublicKey<CURRENT_VERSION>,
        SignatureKeyPair: st::SignatureKeyPair<CURRENT_VERSION>,
    >(
        &self,
        public_key: &SignaturePublicKey,
        signature_key_pair: &SignatureKeyPair,
    ) -> Result<(), Self::Error> {
        self.keys
            .write_signature_key_pair(public_key, signature_key_pair)
    }

    fn write_encryption_key_pair<
        EncryptionKey: st::EncryptionKey<CURRENT_VERSION>,
        HpkeKeyPair: st::HpkeKeyPair<CURRENT_VERSION>,
    >(
        &self,
        public_key: &EncryptionKey,
        key_pair: &HpkeKeyPair,
    ) -> Result<(), Self::Error> {
        self.keys.write_encryption_key_pair(public_key, key_pair)
    }

    fn write_encryption_epoch_key_pairs<
        GroupId: st::GroupId<CURRENT_VERSION>,
        EpochKey: st::EpochKey<CURRENT_VERSION>,
        HpkeKeyPair: st::HpkeKeyPair<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
        epoch: &EpochKey,
        leaf_index: u32,
        key_pairs: &[HpkeKeyPair],
    ) -> Result<(), Self::Error> {
        self.keys
            .write_encryption_epoch_key_pairs(group_id, epoch, leaf_index, key_pairs)
    }

    fn write_key_package<
        HashReference: st::HashReference<CURRENT_VERSION>,
        KeyPackage: st::KeyPackage<CURRENT_VERSION>,
    >(
        &self,
        hash_ref: &HashReference,
        key_package: &KeyPackage,
    ) -> Result<(), Self::Error> {
        self.keys.write_key_package(hash_ref, key_package)
    }

    fn write_psk<PskId: st::PskId<CURRENT_VERSION>, PskBundle: st::PskBundle<CURRENT_VERSION>>(
        &self,
        psk_id: &PskId,
        psk: &PskBundle,
    ) -> Result<(), Self::Error> {
        self.keys.write_psk(psk_id, psk)
    }

    fn mls_group_join_config<
        GroupId: st::GroupId<CURRENT_VERSION>,
        MlsGroupJoinConfig: st::MlsGroupJoinConfig<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
    ) -> Result<Option<MlsGroupJoinConfig>, Self::Error> {
        Ok(None)
    }

    fn own_leaf_nodes<
        GroupId: st::GroupId<CURRENT_VERSION>,
        LeafNode: st::LeafNode<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
    ) -> Result<Vec<LeafNode>, Self::Error> {
        Ok(Vec::new())
    }

    fn queued_proposal_refs<
        GroupId: st::GroupId<CURRENT_VERSION>,
        ProposalRef: st::ProposalRef<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
    ) -> Result<Vec<ProposalRef>, Self::Error> {
        Ok(Vec::new())
    }

    fn queued_proposals<
        GroupId: st::GroupId<CURRENT_VERSION>,
        ProposalRef: st::ProposalRef<CURRENT_VERSION>,
        QueuedProposal: st::QueuedProposal<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
    ) -> Result<Vec<(ProposalRef, QueuedProposal)>, Self::Error> {
        Ok(Vec::new())
    }

    fn tree<GroupId: st::GroupId<CURRENT_VERSION>, TreeSync: st::TreeSync<CURRENT_VERSION>>(
        &self,
        _group_id: &GroupId,
    ) -> Result<Option<TreeSync>, Self::Error> {
        Ok(None)
    }

    fn group_context<
        GroupId: st::GroupId<CURRENT_VERSION>,
        GroupContext: st::GroupContext<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
    ) -> Result<Option<GroupContext>, Self::Error> {
        Ok(None)
    }

    fn interim_transcript_hash<
        GroupId: st::GroupId<CURRENT_VERSION>,
        InterimTranscriptHash: st::InterimTranscriptHash<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
    ) -> Result<Option<InterimTranscriptHash>, Self::Error> {
        Ok(None)
    }

    fn confirmation_tag<
        GroupId: st::GroupId<CURRENT_VERSION>,
        ConfirmationTag: st::ConfirmationTag<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
    ) -> Result<Option<ConfirmationTag>, Self::Error> {
        Ok(None)
    }

    fn group_state<
        GroupState: st::GroupState<CURRENT_VERSION>,
        GroupId: st::GroupId<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
    ) -> Result<Option<GroupState>, Self::Error> {
        Ok(None)
    }

    fn message_secrets<
        GroupId: st::GroupId<CURRENT_VERSION>,
        MessageSecrets: st::MessageSecrets<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
    ) -> Result<Option<MessageSecrets>, Self::Error> {
        Ok(None)
    }

    fn resumption_psk_store<
        GroupId: st::GroupId<CURRENT_VERSION>,
        ResumptionPskStore: st::ResumptionPskStore<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
    ) -> Result<Option<ResumptionPskStore>, Self::Error> {
        Ok(None)
    }

    fn own_leaf_index<
        GroupId: st::GroupId<CURRENT_VERSION>,
        LeafNodeIndex: st::LeafNodeIndex<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
    ) -> Result<Option<LeafNodeIndex>, Self::Error> {
        Ok(None)
    }

    fn group_epoch_secrets<
        GroupId: st::GroupId<CURRENT_VERSION>,
        GroupEpochSecrets: st::GroupEpochSecrets<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
    ) -> Result<Option<GroupEpochSecrets>, Self::Error> {
        Ok(None)
    }

    fn signature_key_pair<
        SignaturePublicKey: st::SignaturePublicKey<CURRENT_VERSION>,
        SignatureKeyPair: st::SignatureKeyPair<CURRENT_VERSION>,
    >(
        &self,
        public_key: &SignaturePublicKey,
    ) -> Result<Option<SignatureKeyPair>, Self::Error> {
        self.keys.signature_key_pair(public_key)
    }

    fn encryption_key_pair<
        HpkeKeyPair: st::HpkeKeyPair<CURRENT_VERSION>,
        EncryptionKey: st::EncryptionKey<CURRENT_VERSION>,
    >(
        &self,
        public_key: &EncryptionKey,
    ) -> Result<Option<HpkeKeyPair>, Self::Error> {
        self.keys.encryption_key_pair(public_key)
    }

    fn encryption_epoch_key_pairs<
        GroupId: st::GroupId<CURRENT_VERSION>,
        EpochKey: st::EpochKey<CURRENT_VERSION>,
        HpkeKeyPair: st::HpkeKeyPair<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
        epoch: &EpochKey,
        leaf_index: u32,
    ) -> Result<Vec<HpkeKeyPair>, Self::Error> {
        self.keys
            .encryption_epoch_key_pairs(group_id, epoch, leaf_index)
    }

    fn key_package<
        KeyPackageRef: st::HashReference<CURRENT_VERSION>,
        KeyPackage: st::KeyPackage<CURRENT_VERSION>,
    >(
        &self,
        hash_ref: &KeyPackageRef,
    ) -> Result<Option<KeyPackage>, Self::Error> {
        self.keys.key_package(hash_ref)
    }

    fn psk<PskBundle: st::PskBundle<CURRENT_VERSION>, PskId: st::PskId<CURRENT_VERSION>>(
        &self,
        psk_id: &PskId,
    ) -> Result<Option<PskBundle>, Self::Error> {
        self.keys.psk(psk_id)
    }

    fn remove_proposal<
        GroupId: st::GroupId<CURRENT_VERSION>,
        ProposalRef: st::ProposalRef<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
        _proposal_ref: &ProposalRef,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    fn delete_own_leaf_nodes<GroupId: st::GroupId<CURRENT_VERSION>>(
        &self,
        _group_id: &GroupId,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    fn delete_group_config<GroupId: st::GroupId<CURRENT_VERSION>>(
        &self,
        _group_id: &GroupId,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    fn delete_tree<GroupId: st::GroupId<CURRENT_VERSION>>(
        &self,
        _group_id: &GroupId,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    fn delete_confirmation_tag<GroupId: st::GroupId<CURRENT_VERSION>>(
        &self,
        _group_id: &GroupId,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    fn delete_group_state<GroupId: st::GroupId<CURRENT_VERSION>>(
        &self,
        _group_id: &GroupId,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    fn delete_context<GroupId: st::GroupId<CURRENT_VERSION>>(
        &self,
        _group_id: &GroupId,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    fn delete_interim_transcript_hash<GroupId: st::GroupId<CURRENT_VERSION>>(
        &self,
        _group_id: &GroupId,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    fn delete_message_secrets<GroupId: st::GroupId<CURRENT_VERSION>>(
        &self,
        _group_id: &GroupId,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    fn delete_all_resumption_psk_secrets<GroupId: st::GroupId<CURRENT_VERSION>>(
        &self,
        _group_id: &GroupId,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    fn delete_own_leaf_index<GroupId: st::GroupId<CURRENT_VERSION>>(
        &self,
        _group_id: &GroupId,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    fn delete_group_epoch_secrets<GroupId: st::GroupId<CURRENT_VERSION>>(
        &self,
        _group_id: &GroupId,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    fn clear_proposal_queue<
        GroupId: st::GroupId<CURRENT_VERSION>,
        ProposalRef: st::ProposalRef<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    fn delete_signature_key_pair<SignaturePublicKey: st::SignaturePublicKey<CURRENT_VERSION>>(
        &self,
        public_key: &SignaturePublicKey,
    ) -> Result<(), Self::Error> {
        self.keys.delete_signature_key_pair(public_key)
    }

    fn delete_encryption_key_pair<EncryptionKey: st::EncryptionKey<CURRENT_VERSION>>(
        &self,
        public_key: &EncryptionKey,
    ) -> Result<(), Self::Error> {
        self.keys.delete_encryption_key_pair(public_key)
    }

    fn delete_encryption_epoch_key_pairs<
        GroupId: st::GroupId<CURRENT_VERSION>,
        EpochKey: st::EpochKey<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
        epoch: &EpochKey,
        leaf_index: u32,
    ) -> Result<(), Self::Error> {
        self.keys
            .delete_encryption_epoch_key_pairs(group_id, epoch, leaf_index)
    }

    fn delete_key_package<KeyPackageRef: st::HashReference<CURRENT_VERSION>>(
        &self,
        hash_ref: &KeyPackageRef,
    ) -> Result<(), Self::Error> {
        self.keys.delete_key_package(hash_ref)
    }

    fn delete_psk<PskKey: st::PskId<CURRENT_VERSION>>(
        &self,
        psk_id: &PskKey,
    ) -> Result<(), Self::Error> {
        self.keys.delete_psk(psk_id)
    }
}
