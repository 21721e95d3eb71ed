//! Letting a member that lost the group's state back in (WIRE.md §5.6).

use std::collections::BTreeSet;

use slim_proto::names::SlimName;
use slim_proto::pb::SessionMessageType as Mt;
use slim_proto::pb::{self, command_payload::CommandPayloadType as Cmd};

use super::{send_group_update, Awaiting, GroupUpdate, ModeratorState, Phase};
use crate::session::control::Expect;
use crate::session::shared::{Command, EndpointIo, MlsState, Shared};
use crate::session::SessionError;

/// Rejoin (WIRE.md §5.6): Remove + Add of the member in one commit; REJOIN_REPLY with the
/// Welcome to it (acknowledged with GROUP_ACK), GROUP_UPDATE(REJOIN) with the commit to the
/// others.
pub(super) fn start_rejoin(
    s: &mut Shared,
    md: &mut ModeratorState,
    io: &mut EndpointIo<'_>,
    peer: SlimName,
    key_package: &[u8],
    request: u32,
) -> Result<(), SessionError> {
    let sub = s.members.get(&peer).cloned().flatten();
    let (commit_id, commit, welcome) = match &mut s.mls {
        MlsState::Group(g) => {
            let sub = sub.ok_or_else(|| {
                SessionError::Protocol(format!("no identity known for member {peer}"))
            })?;
            let (c, w) = g
                .rejoin_member(
                    |cred| {
                        crate::session::identity::token_sub(cred).as_deref() == Some(sub.as_str())
                    },
                    key_package,
                    &io.validator(),
                    io.unix,
                )
                .map_err(|e| SessionError::Mls(format!("rejoin of {peer}: {e}")))?;
            (md.next_commit_id(), c, w)
        }
        _ => (0, Vec::new(), Vec::new()),
    };
    let others: BTreeSet<SlimName> = s.members.keys().filter(|n| **n != peer).cloned().collect();
    let roster = s.roster();
    let mut update = None;
    if s.is_group() && !others.is_empty() {
        let mls = s.opts.mls.then(|| pb::MlsPayload {
            commit_id,
            mls_content: commit.into(),
        });
        let uid = io.random_id();
        update = Some(uid);
        send_group_update(
            s,
            io,
            GroupUpdate {
                id: uid,
                op: pb::GroupUpdateOp::Rejoin,
                who: &peer,
                participants: roster,
                mls,
                acks: others,
            },
        )?;
    }
    md.current = Some(Phase::Rejoin {
        peer: peer.clone(),
        wait: Awaiting {
            direct: Some(request),
            update,
        },
    });
    s.send_command(
        io,
        Command {
            dst: &peer,
            broadcast: false,
            kind: Mt::RejoinReply,
            id: request,
            payload: Cmd::RejoinReply(pb::RejoinReplyPayload {
                commit_id,
                mls_content: welcome.into(),
            }),
            metadata: &[],
        },
        Expect::All([peer.clone()].into()),
    )
}
