//! The session-profile cases: what each checks, which requirements it cites, which roles it
//! has, and what it needs from an implementation.
//!
//! Every case exists to catch a fault; `conformance/tests/session_faults.rs` shows the matrix
//! catching seeded faults of the reference session layer.

pub mod group;
pub mod identity;
pub mod mls;
pub mod p2p;
pub mod revocation;

use std::future::Future;
use std::pin::Pin;

use slim_proto::driver::Capabilities;
use slim_proto::pb::{self, message::MessageType};

use super::cell::{Cell, RELIABLE};
use super::driver::SessionSpec;
use crate::verdict::Failure;

/// The future a session case returns.
pub type CaseFuture = Pin<Box<dyn Future<Output = Result<(), Failure>> + Send>>;

/// A capability a case needs from every implementation in its cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cap {
    /// Point-to-point sessions.
    P2p,
    /// Group sessions.
    Group,
    /// Fire-and-forget sessions.
    FireAndForget,
    /// Reliable sessions.
    Reliable,
    /// MLS.
    Mls,
    /// A participant can leave.
    Leave,
    /// Apps with a JWT identity (`jwt_hs256_secret`).
    Jwt,
    /// RevokeIdentity (SLIM-REV-007/008).
    Revocation,
}

impl Cap {
    /// Whether `caps` has it; `None` if so, else the reason.
    pub fn missing(self, caps: &Capabilities) -> Option<String> {
        let ok = match self {
            Cap::P2p => caps.point_to_point,
            Cap::Group => caps.group,
            Cap::FireAndForget => caps.fire_and_forget,
            Cap::Reliable => caps.reliable,
            Cap::Mls => caps.mls,
            Cap::Leave => caps.leave,
            Cap::Jwt => caps.jwt_identity,
            Cap::Revocation => caps.revocation,
        };
        (!ok).then(|| {
            format!(
                "{} does not declare capability {self:?}",
                caps.implementation
            )
        })
    }
}

/// One session case.
#[derive(Clone)]
pub struct SessionCase {
    /// Stable id, `area/slug`.
    pub id: &'static str,
    /// What it checks, in one line.
    pub title: &'static str,
    /// Cited requirements; the first decides the verdict's severity.
    pub requirements: &'static [&'static str],
    /// Its roles, each played by one implementation per cell.
    pub roles: &'static [&'static str],
    /// What every implementation in the cell must offer.
    pub needs: &'static [Cap],
    /// The case.
    pub run: fn(Cell) -> CaseFuture,
}

/// The session settings cases use: reliability [`RELIABLE`] when `reliable`.
pub fn spec(group: bool, mls: bool, reliable: bool) -> SessionSpec {
    SessionSpec {
        group,
        mls,
        reliable: reliable.then_some(RELIABLE),
    }
}

/// The command payload of a session message.
pub fn command_payload(m: &pb::Message) -> Option<pb::command_payload::CommandPayloadType> {
    match &m.message_type {
        Some(MessageType::Publish(p)) => match p.msg.as_ref()?.content_type.as_ref()? {
            pb::content::ContentType::CommandPayload(c) => c.command_payload_type.clone(),
            _ => None,
        },
        _ => None,
    }
}

/// `(wire_format, ciphersuite)` of a serialized MLSMessage (RFC 9420 §6): the ciphersuite is
/// read for a KeyPackage (wire format 5), whose body starts with its version and suite.
pub fn mls_header(b: &[u8]) -> Option<(u16, Option<u16>)> {
    let u16_at = |i: usize| b.get(i..i + 2).map(|x| u16::from_be_bytes([x[0], x[1]]));
    let wire = u16_at(2)?;
    let suite = if wire == 5 { u16_at(6) } else { None };
    Some((wire, suite))
}

const PAIR: &[&str] = &["sender", "receiver"];
const GROUP: &[&str] = &["moderator", "participant"];
const ONE: &[&str] = &["receiver"];
const MOD: &[&str] = &["moderator"];

macro_rules! case {
    ($id:literal, $title:literal, [$($req:literal),+], $roles:expr, [$($cap:ident),*], $run:path) => {
        SessionCase {
            id: $id,
            title: $title,
            requirements: &[$($req),+],
            roles: $roles,
            needs: &[$(Cap::$cap),*],
            run: $run,
        }
    };
}

/// Every session case, in run order.
pub fn all() -> Vec<SessionCase> {
    vec![
        case!("p2p/open", "a point-to-point session is established discovery → join → welcome → ack, then data", ["SLIM-SESS-003", "SLIM-SESS-001"], PAIR, [P2p, FireAndForget], p2p::open),
        case!("p2p/fire-and-forget", "a fire-and-forget session delivers without acknowledgements", ["SLIM-REL-001", "SLIM-SESS-001"], PAIR, [P2p, FireAndForget], p2p::fire_and_forget),
        case!("p2p/reliable", "reliable: ids 1..n, one empty MSG_ACK each, delivered once in order, reported OK", ["SLIM-REL-005", "SLIM-REL-001", "SLIM-REL-002", "SLIM-REL-006"], PAIR, [P2p, Reliable], p2p::reliable),
        case!("p2p/reliable-mls", "MLS: data as PrivateMessages, key package for ciphersuite 2", ["SLIM-MLS-003", "SLIM-MLS-001", "SLIM-REL-005"], PAIR, [P2p, Reliable, Mls], p2p::reliable_mls),
        case!("p2p/loss-10", "reliable under 10% loss with duplicates and reordering: exactly once, in order", ["SLIM-REL-005", "SLIM-REL-003", "SLIM-REL-004"], PAIR, [P2p, Reliable], p2p::loss_10),
        case!("p2p/loss-20", "reliable under 20% loss with duplicates and reordering: exactly once, in order", ["SLIM-REL-005", "SLIM-REL-003", "SLIM-REL-004"], PAIR, [P2p, Reliable], p2p::loss_20),
        case!("p2p/loss-30", "reliable under 30% loss with duplicates and reordering: exactly once, in order", ["SLIM-REL-005", "SLIM-REL-003", "SLIM-REL-004"], PAIR, [P2p, Reliable], p2p::loss_30),
        case!("p2p/duplicates", "every data message duplicated: delivered once", ["SLIM-REL-005"], PAIR, [P2p, Reliable], p2p::duplicates),
        case!("p2p/reorder", "data messages reordered: delivered in order", ["SLIM-REL-005"], PAIR, [P2p, Reliable], p2p::reorder),
        case!("p2p/lost-first-message", "the first data message is lost: retransmitted, delivered first", ["SLIM-REL-005", "SLIM-REL-003"], PAIR, [P2p, Reliable], p2p::lost_first),
        case!("p2p/lost-last-message", "the last data message is lost: only the sender's retransmission repairs it", ["SLIM-REL-003", "SLIM-REL-005"], PAIR, [P2p, Reliable], p2p::lost_last),
        case!("p2p/gap-repair", "a gap makes the receiver send an RTX_REQUEST for the missing id", ["SLIM-REL-004"], PAIR, [P2p, Reliable], p2p::gap_repair),
        case!("p2p/retries-exhausted", "retries exhausted: the sending app is told FAILED, never OK", ["SLIM-REL-006"], PAIR, [P2p, Reliable], p2p::retries_exhausted),
        case!("p2p/lost-ack", "a lost MSG_ACK: the sender retransmits, the receiver delivers once", ["SLIM-REL-003", "SLIM-REL-005"], PAIR, [P2p, Reliable], p2p::lost_ack),
        case!("p2p/many-sessions", "three sessions between the same apps stay apart", ["SLIM-SESS-001"], PAIR, [P2p, Reliable], p2p::many_sessions),
        case!("p2p/node-restart", "the node drops every link mid-session: the session goes on, nothing lost", ["SLIM-REL-003", "SLIM-REL-005"], PAIR, [P2p, Reliable], p2p::node_restart),
        case!("p2p/command-ids", "command ids are non-zero; replies carry the request's id", ["SLIM-SESS-004"], PAIR, [P2p, Reliable, Mls], p2p::command_ids),
        case!("p2p/lost-discovery-reply", "a lost DISCOVERY_REPLY: the request is retransmitted and answered", ["SLIM-SESS-005"], PAIR, [P2p, Reliable], p2p::lost_discovery_reply),
        case!("p2p/lost-join-reply-mls", "a lost JOIN_REPLY with MLS: the retransmitted request is answered again", ["SLIM-SESS-005"], PAIR, [P2p, Reliable, Mls], p2p::lost_join_reply_mls),
        case!("p2p/lost-welcome-ack-mls", "a lost GROUP_ACK to the welcome with MLS: the retransmitted welcome is acknowledged, processed once", ["SLIM-SESS-005"], PAIR, [P2p, Reliable, Mls], p2p::lost_welcome_ack_mls),
        case!("p2p/replayed-welcome", "a replayed GROUP_WELCOME is not processed twice", ["SLIM-SESS-005"], PAIR, [P2p, Reliable, Mls], p2p::replayed_welcome),
        case!("p2p/tampered-join-header-sig", "a JOIN_REQUEST with a tampered e2e_header_sig is not answered", ["SLIM-IDENT-003"], PAIR, [P2p, Reliable, Mls], p2p::tampered_join_header_sig),
        case!("p2p/tampered-join-payload-sig", "a JOIN_REQUEST with a tampered slim-payload-sig is not answered", ["SLIM-IDENT-004"], PAIR, [P2p, Reliable, Mls], p2p::tampered_join_payload_sig),
        case!("p2p/tampered-discovery", "a DISCOVERY_REQUEST with a tampered e2e_header_sig is not answered", ["SLIM-IDENT-005", "SLIM-IDENT-003"], PAIR, [P2p, Reliable], p2p::tampered_discovery),
        case!("p2p/tampered-welcome", "a GROUP_WELCOME with a tampered e2e_header_sig is not acknowledged", ["SLIM-IDENT-003"], PAIR, [P2p, Reliable, Mls], p2p::tampered_welcome),
        case!("p2p/window", "a reliable sender keeps several messages in flight", ["SLIM-REL-007"], PAIR, [P2p, Reliable], p2p::window),
        case!("p2p/heartbeat", "a quiet session carries a HEARTBEAT from each member to its peer within 10 s, epoch 2^64-1 without MLS", ["SLIM-SESS-010"], PAIR, [P2p, Reliable], p2p::heartbeat),
        case!("p2p/name-bound", "every session message's source id derives from its token's subject", ["SLIM-SESS-002"], PAIR, [P2p, Reliable, Mls], p2p::name_bound),
        case!("group/invite", "create and invite two: members agree on epoch, authenticator and members after each", ["SLIM-SESS-006", "SLIM-MLS-004"], GROUP, [Group, Reliable, Mls], group::invite_agree),
        case!("group/data", "every member gets every other member's messages once, in order", ["SLIM-REL-005"], GROUP, [Group, Reliable, Mls], group::data),
        case!("group/channels", "group data and commands use the derived channel ids and fanouts", ["SLIM-SESS-009", "SLIM-SESS-006"], GROUP, [Group, Reliable, Mls], group::channels),
        case!("group/remove", "a removed member is told; the rest agree on the new state", ["SLIM-SESS-007", "SLIM-MLS-004"], GROUP, [Group, Reliable, Mls], group::remove),
        case!("group/removed-receives-nothing", "after its removal a member receives nothing sent to the group", ["SLIM-MLS-004", "SLIM-SESS-007"], GROUP, [Group, Reliable, Mls], group::removed_receives_nothing),
        case!("group/removal-commits", "a removal from three members is an MLS commit (GROUP_UPDATE REMOVE) before the LEAVE_REQUEST", ["SLIM-SESS-007"], GROUP, [Group, Reliable, Mls], group::removal_commits),
        case!("group/leave", "a participant leaves: the moderator is told, the rest agree", ["SLIM-SESS-007", "SLIM-MLS-004"], GROUP, [Group, Reliable, Mls, Leave], group::leave),
        case!("group/close", "the moderator closes the group: every participant is told", ["SLIM-SESS-011"], GROUP, [Group, Reliable, Mls], group::close),
        case!("group/rejoin", "a removed member is invited again and takes part as before", ["SLIM-SESS-006", "SLIM-MLS-004"], GROUP, [Group, Reliable, Mls], group::rejoin),
        case!("group/epoch-advances", "every commit moves the group to a new epoch (StateAuth)", ["SLIM-MLS-004"], GROUP, [Group, Reliable, Mls], group::epoch_advances),
        case!("group/duplicate-update", "duplicated GROUP_UPDATEs are not applied twice", ["SLIM-SESS-008"], GROUP, [Group, Reliable, Mls], group::duplicate_update),
        case!("group/lost-update-ack", "a lost GROUP_ACK to an update: the invite completes, members agree", ["SLIM-SESS-005", "SLIM-SESS-006"], GROUP, [Group, Reliable, Mls], group::lost_update_ack),
        case!("group/loss-20", "group data under 20% loss: exactly once, in order", ["SLIM-REL-005", "SLIM-REL-003"], GROUP, [Group, Reliable, Mls], group::lossy_data),
        case!("group/tampered-update", "a GROUP_UPDATE with a tampered e2e_header_sig is not acknowledged", ["SLIM-IDENT-003"], GROUP, [Group, Reliable, Mls], group::tampered_update),
        case!("group/non-moderator-leave", "a LEAVE_REQUEST from a non-moderator is ignored", ["SLIM-SESS-007"], GROUP, [Group, Reliable, Mls], identity::non_moderator_leave),
        case!("ident/jwt-session", "apps with JWT identities open an MLS session; every command carries a verifying JWT whose sub derives the sender's id", ["SLIM-IDENT-002", "SLIM-SESS-002"], PAIR, [P2p, Reliable, Mls, Jwt], identity::jwt_session),
        case!("ident/valid-discovery", "a valid signed DISCOVERY_REQUEST from a runner-minted token is answered", ["SLIM-IDENT-005", "SLIM-IDENT-001"], ONE, [P2p], identity::valid_answered),
        case!("ident/expired-token", "a DISCOVERY_REQUEST with an expired token is not answered", ["SLIM-IDENT-001", "SLIM-IDENT-005"], ONE, [P2p], identity::expired),
        case!("ident/wrong-secret", "a DISCOVERY_REQUEST with a token from another secret is not answered", ["SLIM-IDENT-001", "SLIM-IDENT-005"], ONE, [P2p], identity::wrong_secret),
        case!("ident/foreign-key", "a DISCOVERY_REQUEST signed by a key its token does not name is not answered", ["SLIM-IDENT-003", "SLIM-IDENT-005"], ONE, [P2p], identity::foreign_key),
        case!("ident/unsigned", "an unsigned DISCOVERY_REQUEST is not answered", ["SLIM-IDENT-005"], ONE, [P2p], identity::unsigned),
        case!("ident/bad-payload-sig", "a DISCOVERY_REQUEST whose slim-payload-sig does not verify is not answered", ["SLIM-IDENT-004"], ONE, [P2p], identity::bad_payload_sig),
        case!("ident/name-not-bound", "a DISCOVERY_REQUEST whose source id its token does not derive is not answered", ["SLIM-SESS-002"], ONE, [P2p], identity::name_not_bound),
        case!("mls/valid-key-package", "an invitee's honest key package (credential token names its leaf key) gets a GROUP_WELCOME it joins from", ["SLIM-SESS-006", "SLIM-MLS-001"], MOD, [Group, Reliable, Mls], mls::valid_key_package),
        case!("mls/foreign-key-package", "a key package whose credential token names another key than its leaf's is refused: no welcome, the Invite fails", ["SLIM-MLS-002", "SLIM-MLS-001"], MOD, [Group, Reliable, Mls], mls::foreign_key_package),
        case!("revoke/moderator-removes", "a moderator told of a revocation removes the member with an MLS commit within 1 s; the rest agree on the new epoch; the member reads nothing more and cannot rejoin", ["SLIM-REV-007", "SLIM-MLS-004", "SLIM-REV-008"], GROUP, [Group, Reliable, Mls, Revocation], revocation::moderator_removes),
        case!("revoke/member-refuses-revoked-sender", "a member told that another member is revoked delivers nothing more it sends", ["SLIM-REV-008"], GROUP, [Group, Reliable, Mls, Revocation], revocation::member_refuses_revoked_sender),
        case!("revoke/member-refuses-revoked-commands", "a member told that its moderator is revoked applies none of its commands: its next commit leaves the member's epoch as it was", ["SLIM-REV-008"], GROUP, [Group, Reliable, Mls, Revocation], revocation::member_refuses_revoked_commands),
        case!("revoke/moderator-refuses-revoked-join", "a moderator told of a revocation refuses to invite that identity: the Invite fails, no welcome", ["SLIM-REV-008"], GROUP, [Group, Reliable, Mls, Revocation], revocation::moderator_refuses_revoked_join),
        case!("revoke/revoked-cannot-decrypt", "the runner, a revoked member, cannot open data sent after the moderator removed it (it opens data sent before)", ["SLIM-MLS-004", "SLIM-REV-007"], MOD, [Group, FireAndForget, Mls, Revocation], revocation::revoked_cannot_decrypt),
    ]
}
