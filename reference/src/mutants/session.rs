//! Seeded faults in the reference client's session layer, for measuring the session profile of
//! the conformance runner (which drives apps through the driver shim, `client::driver`).
//!
//! Like the relay's faults ([`super::Fault`]): with the cargo feature `mutants`, an app run with
//! `SLIM_SESSION_MUTANT=<name>` (read once per process) behaves with that one fault; without the
//! variable nothing changes, and without the feature [`on`] is a `const fn` returning `false`,
//! so every hook compiles away. Each hook is one line where the check or step it breaks lives.
//!
//! | name | where | what it breaks |
//! |---|---|---|
//! | `deliver-duplicates` | `session/reliable/receiver.rs` | The reliable receiver delivers a duplicate of an already delivered data message again instead of dropping it (exactly once, SLIM-REL-005). |
//! | `no-retransmit` | `session/reliable/sender.rs` | The reliable sender never retransmits unacknowledged data on its timer; retries still count down, so a lost message ends as a send failure (SLIM-REL-003). |
//! | `remove-without-commit` | `session/moderator/removal.rs` | A moderator's removal skips the MLS Remove commit and the GROUP_UPDATE and only sends the LEAVE_REQUEST: the remaining members stay in the old epoch, which the removed member can still decrypt (SLIM-SESS-007). |
//! | `unverified-control-signature` | `session/identity.rs` | Receivers do not verify a command's header signature nor its payload signature (SLIM-IDENT-003, SLIM-IDENT-004). |
//! | `publish-failure-as-ok` | `session/data.rs` | A reliable message whose retries ran out is reported as delivered, not as a failure naming the silent peer (SLIM-REL-006). |
//! | `accept-any-key-package` | `mls/group.rs` | A moderator adds the member of any well-formed key package without checking its credential: neither that the token verifies nor that it names the leaf's signature key (SLIM-MLS-002). |
//! | `revoked-identity-accepted` | `session/identity.rs` | An app told of a revocation still accepts data, commands, join replies and key packages from the revoked identity (SLIM-REV-008). |
//! | `revocation-keeps-member` | `session/mod.rs` | A moderator told of a revocation does not remove the revoked member from its groups (SLIM-REV-007). |

use std::fmt;
use std::str::FromStr;

/// The environment variable that selects the active session fault.
pub const ENV: &str = "SLIM_SESSION_MUTANT";

/// A seeded fault in the session layer: a bug a real SLIM client could ship, and the
/// requirement it breaks. The module doc's table says what each one breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionFault {
    /// The reliable receiver delivers duplicates again. Breaks SLIM-REL-005.
    DeliverDuplicates,
    /// The reliable sender never retransmits data. Breaks SLIM-REL-003.
    NoRetransmit,
    /// Removal without the MLS commit and GROUP_UPDATE. Breaks SLIM-SESS-007.
    RemoveWithoutCommit,
    /// Command signatures are not verified. Breaks SLIM-IDENT-003/004.
    UnverifiedControlSignature,
    /// Retries exhausted reported as delivered. Breaks SLIM-REL-006.
    PublishFailureAsOk,
    /// Key package credentials are not checked. Breaks SLIM-MLS-002.
    AcceptAnyKeyPackage,
    /// Revoked identities are accepted. Breaks SLIM-REV-008.
    RevokedIdentityAccepted,
    /// Revoked members stay in the group. Breaks SLIM-REV-007.
    RevocationKeepsMember,
}

impl SessionFault {
    /// Every session fault, in table order.
    pub const ALL: &'static [SessionFault] = &[
        SessionFault::DeliverDuplicates,
        SessionFault::NoRetransmit,
        SessionFault::RemoveWithoutCommit,
        SessionFault::UnverifiedControlSignature,
        SessionFault::PublishFailureAsOk,
        SessionFault::AcceptAnyKeyPackage,
        SessionFault::RevokedIdentityAccepted,
        SessionFault::RevocationKeepsMember,
    ];

    /// The kebab-case name `SLIM_SESSION_MUTANT` selects it by.
    pub const fn name(self) -> &'static str {
        match self {
            SessionFault::DeliverDuplicates => "deliver-duplicates",
            SessionFault::NoRetransmit => "no-retransmit",
            SessionFault::RemoveWithoutCommit => "remove-without-commit",
            SessionFault::UnverifiedControlSignature => "unverified-control-signature",
            SessionFault::PublishFailureAsOk => "publish-failure-as-ok",
            SessionFault::AcceptAnyKeyPackage => "accept-any-key-package",
            SessionFault::RevokedIdentityAccepted => "revoked-identity-accepted",
            SessionFault::RevocationKeepsMember => "revocation-keeps-member",
        }
    }

    /// The requirement id(s) the fault breaks.
    pub const fn requirement(self) -> &'static str {
        match self {
            SessionFault::DeliverDuplicates => "SLIM-REL-005",
            SessionFault::NoRetransmit => "SLIM-REL-003",
            SessionFault::RemoveWithoutCommit => "SLIM-SESS-007",
            SessionFault::UnverifiedControlSignature => "SLIM-IDENT-003",
            SessionFault::PublishFailureAsOk => "SLIM-REL-006",
            SessionFault::AcceptAnyKeyPackage => "SLIM-MLS-002",
            SessionFault::RevokedIdentityAccepted => "SLIM-REV-008",
            SessionFault::RevocationKeepsMember => "SLIM-REV-007",
        }
    }
}

impl fmt::Display for SessionFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a [`SessionFault`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown session fault {0:?}")]
pub struct UnknownSessionFault(pub String);

impl FromStr for SessionFault {
    type Err = UnknownSessionFault;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SessionFault::ALL
            .iter()
            .copied()
            .find(|f| f.name() == s)
            .ok_or_else(|| UnknownSessionFault(s.to_string()))
    }
}

/// The session fault selected by `SLIM_SESSION_MUTANT`, read once.
#[cfg(feature = "mutants")]
pub fn active() -> Option<SessionFault> {
    static ACTIVE: std::sync::OnceLock<Option<SessionFault>> = std::sync::OnceLock::new();
    *ACTIVE.get_or_init(|| std::env::var(ENV).ok().and_then(|v| v.parse().ok()))
}

/// Whether session fault `f` is active: `SLIM_SESSION_MUTANT` names it.
#[cfg(feature = "mutants")]
pub fn on(f: SessionFault) -> bool {
    active() == Some(f)
}

/// Whether session fault `f` is active: never, without the `mutants` feature.
#[cfg(not(feature = "mutants"))]
#[inline(always)]
pub const fn on(_f: SessionFault) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in SessionFault::ALL {
            assert_eq!(f.name().parse::<SessionFault>(), Ok(*f));
        }
        assert!("nonsense".parse::<SessionFault>().is_err());
    }
}
