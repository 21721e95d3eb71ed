//! End-to-end signatures on session control messages (SLIM-E2E-*).
//!
//! Nodes rewrite the routing header in transit (MAC, connection fields), so apps sign what must
//! not change between the two session layers, with the key their identity token names
//! ([`crate::identity`]). The real SDK (session crate `session_controller.rs`) does this for
//! every *command* message (session message types 5 to 20):
//!
//! - **Header signature** `SLIMHeader.e2e_header_sig`: DER ECDSA P-256 over [`header_aad`], the
//!   protobuf encoding of `HeaderIntegrityAad` {version 1, source, destination, identity,
//!   session type, session message type, session id, message id, payload type}. The same bytes
//!   are the MLS `authenticated_data` of encrypted data messages.
//! - **Payload signature** `Message.metadata["slim-payload-sig"]` (new in SLIM 3.x): base64 DER
//!   ECDSA over [`payload_signing_input`], which binds the AAD, the encoded payload and the
//!   metadata (minus trace context and the session's reserved keys).
//!
//! A receiver rebuilds both inputs from what it received and verifies them with the `pubkey` of
//! the sender's verified token ([`verify_command`], [`verify_identity`]).

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use prost::Message as _;

use crate::identity::{Claims, Credentials, IdentityKey, SignatureError, TokenError};
use crate::pb::{self, message::MessageType};

/// Metadata key of a control message's payload signature.
pub const PAYLOAD_SIG_KEY: &str = "slim-payload-sig";

/// Metadata key the SDK reserves for the verified peer subject it sets after MLS decryption; a
/// receiver strips it from incoming messages, and it is never signed.
pub const PEER_SUBJECT_KEY: &str = "slim-peer-subject";

/// Metadata keys left out of the payload signature: W3C trace context (nodes may rewrite it) and
/// the session's reserved keys.
pub const UNSIGNED_METADATA: [&str; 5] = [
    "traceparent",
    "tracestate",
    "baggage",
    PAYLOAD_SIG_KEY,
    PEER_SUBJECT_KEY,
];

/// Version tag at the start of the payload signing input.
pub const PAYLOAD_SIG_DOMAIN: &[u8] = b"slim-payload-v1";

/// Version of the `HeaderIntegrityAad` encoding.
pub const AAD_VERSION: u32 = 1;

/// Why a control message could not be signed or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum E2eError {
    /// Only Publish messages carry session messages.
    #[error("not a Publish: only session messages (Publish) carry end-to-end signatures")]
    NotPublish,
    /// The Publish has no SLIM header.
    #[error("publish has no SLIM header")]
    MissingHeader,
    /// The Publish has no session header.
    #[error("publish has no session header")]
    MissingSessionHeader,
    /// The session message type is not a command (5..=20); the SDK signs only commands.
    #[error("session message type {0} is not a command (5..=20); only commands are signed")]
    NotCommand(i32),
    /// A command without `e2e_header_sig` (the SDK rejects it where it verifies).
    #[error("command carries no e2e_header_sig")]
    MissingHeaderSig,
    /// The header signature does not verify.
    #[error("e2e_header_sig does not verify: {0}")]
    HeaderSig(SignatureError),
    /// The payload signature metadata is not standard base64.
    #[error("metadata {PAYLOAD_SIG_KEY} is not standard base64")]
    PayloadSigNotBase64,
    /// The payload signature does not verify.
    #[error("{PAYLOAD_SIG_KEY} does not verify (payload or metadata changed after signing?): {0}")]
    PayloadSig(SignatureError),
    /// The sender's identity token does not verify.
    #[error("the sender's identity token does not verify: {0}")]
    Token(#[from] TokenError),
}

/// Whether the sender also signed payload and metadata (SDKs before 3.x sign the header only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadSignature {
    /// `slim-payload-sig` was present and verified.
    Verified,
    /// No `slim-payload-sig`: only the header is authenticated.
    Absent,
}

/// Whether a session message type is a command (types 5..=20: discovery, join, leave, group,
/// heartbeat, participant state and rejoin messages): the SDK's `is_command_message`. Data
/// messages (MSG, MSG_ACK, RTX_*) are not signed this way.
pub fn is_command(t: pb::SessionMessageType) -> bool {
    (5..=20).contains(&(t as i32))
}

fn publish(msg: &pb::Message) -> Option<&pb::Publish> {
    match &msg.message_type {
        Some(MessageType::Publish(p)) => Some(p),
        _ => None,
    }
}

/// The `HeaderIntegrityAad` bytes of a session message, exactly as the SDK's
/// `mls_state::build_aad` builds them: version 1; source, destination (whole `Name`s, hashed
/// and string forms, as received) and identity from the SLIM header; session type, message
/// type (unknown enum values read as 0, as prost's getters do), session id and message id from
/// the session header; the application payload's `payload_type`, or `""` for a command payload
/// or no payload. Canonical prost encoding (defaults omitted).
///
/// The SDK panics on a message without header or session header; here the missing parts are
/// encoded as absent/zero, and [`verify_command`] rejects such messages before using this.
pub fn header_aad(msg: &pb::Message) -> Vec<u8> {
    let p = publish(msg);
    let header = p.and_then(|p| p.header.as_ref());
    let session = p.and_then(|p| p.session.as_ref());
    let payload_type = p
        .and_then(|p| p.msg.as_ref())
        .and_then(|c| c.content_type.as_ref())
        .map(|c| match c {
            pb::content::ContentType::AppPayload(a) => a.payload_type.clone(),
            pb::content::ContentType::CommandPayload(_) => String::new(),
        })
        .unwrap_or_default();
    let aad = pb::HeaderIntegrityAad {
        version: AAD_VERSION,
        source: header.and_then(|h| h.source.clone()),
        destination: header.and_then(|h| h.destination.clone()),
        identity: header.map(|h| h.identity.clone()).unwrap_or_default(),
        session_type: session.map_or(0, |s| s.session_type() as i32),
        session_message_type: session.map_or(0, |s| s.session_message_type() as i32),
        session_id: session.map_or(0, |s| s.session_id),
        message_id: session.map_or(0, |s| s.message_id),
        payload_type,
    };
    aad.encode_to_vec()
}

/// What `slim-payload-sig` signs (session crate `payload_signing_input`):
/// `"slim-payload-v1" || lp(aad) || lp(encoded Content, empty if none) || (lp(key) || lp(value))*`
/// over the metadata pairs not in [`UNSIGNED_METADATA`], sorted by key (bytewise), where
/// `lp(x) = u64be(len x) || x`.
pub fn payload_signing_input(msg: &pb::Message, aad: &[u8]) -> Vec<u8> {
    fn push(input: &mut Vec<u8>, bytes: &[u8]) {
        input.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        input.extend_from_slice(bytes);
    }
    let mut input = PAYLOAD_SIG_DOMAIN.to_vec();
    push(&mut input, aad);
    let payload = publish(msg)
        .and_then(|p| p.msg.as_ref())
        .map(|c| c.encode_to_vec())
        .unwrap_or_default();
    push(&mut input, &payload);
    let mut metadata: Vec<(&String, &String)> = signed_metadata(&msg.metadata).collect();
    metadata.sort();
    for (key, value) in metadata {
        push(&mut input, key.as_bytes());
        push(&mut input, value.as_bytes());
    }
    input
}

fn signed_metadata(m: &HashMap<String, String>) -> impl Iterator<Item = (&String, &String)> {
    m.iter()
        .filter(|(k, _)| !UNSIGNED_METADATA.contains(&k.as_str()))
}

/// The command's session message type, or why it cannot be signed/verified.
fn command_parts(msg: &pb::Message) -> Result<&pb::SlimHeader, E2eError> {
    let p = publish(msg).ok_or(E2eError::NotPublish)?;
    let header = p.header.as_ref().ok_or(E2eError::MissingHeader)?;
    let session = p.session.as_ref().ok_or(E2eError::MissingSessionHeader)?;
    if !is_command(session.session_message_type()) {
        return Err(E2eError::NotCommand(session.session_message_type));
    }
    Ok(header)
}

/// Signs a command as the SDK's `sign_outbound_control_message`: sets `e2e_header_sig` (DER
/// ECDSA over [`header_aad`]) and metadata [`PAYLOAD_SIG_KEY`] (base64 DER ECDSA over
/// [`payload_signing_input`]).
///
/// Set `SLIMHeader.identity` (the token naming `key`'s public half) and everything else first:
/// any later change to an AAD field, the payload or signed metadata breaks the signatures.
/// Errors if `msg` is not a Publish with both headers and a command message type.
pub fn sign_command(msg: &mut pb::Message, key: &IdentityKey) -> Result<(), E2eError> {
    command_parts(msg)?;
    let aad = header_aad(msg);
    let header_sig = key.sign_der(&aad);
    let payload_sig = key.sign_der(&payload_signing_input(msg, &aad));
    if let Some(MessageType::Publish(p)) = &mut msg.message_type {
        if let Some(h) = p.header.as_mut() {
            h.e2e_header_sig = Some(header_sig.into());
        }
    }
    msg.metadata
        .insert(PAYLOAD_SIG_KEY.to_string(), STANDARD.encode(payload_sig));
    Ok(())
}

/// Verifies a command's signatures with the sender's public key (from its verified token), as
/// the SDK's `verify_identity` does where it requires integrity: `e2e_header_sig` must be
/// present and verify over [`header_aad`]; `slim-payload-sig`, when present, must verify over
/// [`payload_signing_input`]. Reports whether the payload signature was there.
pub fn verify_command(msg: &pb::Message, pubkey: &[u8]) -> Result<PayloadSignature, E2eError> {
    let header = command_parts(msg)?;
    let sig = header
        .e2e_header_sig
        .as_ref()
        .ok_or(E2eError::MissingHeaderSig)?;
    let aad = header_aad(msg);
    crate::identity::verify_der(pubkey, &aad, sig).map_err(E2eError::HeaderSig)?;
    match msg.metadata.get(PAYLOAD_SIG_KEY) {
        None => Ok(PayloadSignature::Absent),
        Some(encoded) => {
            let sig = STANDARD
                .decode(encoded)
                .map_err(|_| E2eError::PayloadSigNotBase64)?;
            crate::identity::verify_der(pubkey, &payload_signing_input(msg, &aad), &sig)
                .map_err(E2eError::PayloadSig)?;
            Ok(PayloadSignature::Verified)
        }
    }
}

/// Verifies a command end to end: its `SLIMHeader.identity` token with `credentials` at
/// `now_unix`, then [`verify_command`] with the token's `pubkey`. Returns the sender's claims
/// (its `sub` names it; compare the source name id with [`crate::identity::app_id`]).
pub fn verify_identity(
    msg: &pb::Message,
    credentials: &Credentials,
    now_unix: u64,
) -> Result<(Claims, PayloadSignature), E2eError> {
    let header = command_parts(msg)?;
    let claims = credentials.verify(&header.identity, now_unix)?;
    let payload = verify_command(msg, &claims.pubkey)?;
    Ok((claims, payload))
}
