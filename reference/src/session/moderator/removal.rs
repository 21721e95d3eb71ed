//! Removing a member (WIRE.md §5.5, SLIM-SESS-007): the MLS Remove commit in
//! GROUP_UPDATE(REMOVE) to the rest of the group (beyond two), then LEAVE_REQUEST to the removed
//! member (unless it left on its own) and its LEAVE_REPLY.

use crate::mutants::session::{self as mutants, SessionFault};
use std::collections::BTreeSet;

use slim_proto::names::SlimName;
use slim_proto::pb::SessionMessageType as Mt;
use slim_proto::pb::{self, command_payload::CommandPayloadType as Cmd};

use super::{finish_close, send_group_update, GroupUpdate, ModeratorState, Phase};
use crate::session::control::Expect;
use crate::session::shared::{Command, EndpointIo, MlsState, Shared};
use crate::session::{Event, SessionError};

pub(super) fn start_removal(
    s: &mut Shared,
    md: &mut ModeratorState,
    io: &mut EndpointIo<'_>,
    name: &SlimName,
    leave: bool,
) -> Result<(), SessionError> {
    let peer = s.find_member(name)?;
    // Seeded fault: no MLS commit, no GROUP_UPDATE; only the LEAVE_REQUEST (SLIM-SESS-007).
    if mutants::on(SessionFault::RemoveWithoutCommit) {
        s.remove_member(io, &peer);
        return if leave {
            send_leave(s, md, io, &peer)
        } else {
            finish_removal(s, md, io, &peer);
            Ok(())
        };
    }
    let sub = s.members.get(&peer).cloned().flatten();
    let roster_before = s.roster();
    let mls = commit_removal(s, md, sub.as_deref(), &peer)?;
    s.remove_member(io, &peer);
    let remaining: BTreeSet<SlimName> = s.members.keys().cloned().collect();
    if roster_before.len() > 2 && s.is_group() {
        let id = io.random_id();
        md.current = Some(Phase::RemoveUpdate {
            peer: peer.clone(),
            update: id,
            leave,
        });
        send_group_update(
            s,
            io,
            GroupUpdate {
                id,
                op: pb::GroupUpdateOp::Remove,
                who: &peer,
                participants: roster_before,
                mls,
                acks: remaining,
            },
        )
    } else if leave {
        send_leave(s, md, io, &peer)
    } else {
        finish_removal(s, md, io, &peer);
        Ok(())
    }
}

/// The MLS Remove commit for the member whose credential holds a token of `sub`.
fn commit_removal(
    s: &mut Shared,
    md: &mut ModeratorState,
    sub: Option<&str>,
    peer: &SlimName,
) -> Result<Option<pb::MlsPayload>, SessionError> {
    let MlsState::Group(g) = &mut s.mls else {
        return Ok(None);
    };
    let sub =
        sub.ok_or_else(|| SessionError::Protocol(format!("no identity known for member {peer}")))?;
    let commit = g
        .remove_member(|credential| {
            crate::session::identity::token_sub(credential).as_deref() == Some(sub)
        })
        .map_err(|e| SessionError::Mls(e.to_string()))?;
    Ok(Some(pb::MlsPayload {
        commit_id: md.next_commit_id(),
        mls_content: commit.into(),
    }))
}

pub(super) fn send_leave(
    s: &mut Shared,
    md: &mut ModeratorState,
    io: &mut EndpointIo<'_>,
    peer: &SlimName,
) -> Result<(), SessionError> {
    let id = io.random_id();
    md.current = Some(Phase::Leave {
        peer: peer.clone(),
        id,
    });
    s.send_command(
        io,
        Command {
            dst: peer,
            broadcast: false,
            kind: Mt::LeaveRequest,
            id,
            payload: Cmd::LeaveRequest(pb::LeaveRequestPayload {}),
            metadata: &[],
        },
        Expect::All([peer.clone()].into()),
    )
}

pub(super) fn finish_removal(
    s: &mut Shared,
    md: &mut ModeratorState,
    io: &mut EndpointIo<'_>,
    peer: &SlimName,
) {
    io.events.push_back(Event::MemberLeft {
        session: s.id,
        member: peer.clone(),
    });
    md.current = None;
    if !s.is_group() {
        finish_close(s, md, io, "the peer left");
    }
}
