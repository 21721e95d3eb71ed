//! What the moderator does when a command's retries run out: which task it ends, what it tells
//! the application, and what runs next.

use slim_proto::names::SlimName;

use super::removal::{finish_removal, send_leave};
use super::{finish_close, invite_done, next_task, ModeratorState, Phase, Task};
use crate::session::shared::{EndpointIo, Shared};
use crate::session::Event;

/// Retries exhausted for command `id`.
pub(in crate::session) fn on_failed(
    s: &mut Shared,
    md: &mut ModeratorState,
    io: &mut EndpointIo<'_>,
    id: u32,
    missing: Vec<SlimName>,
) {
    let Some(phase) = md.current.take() else {
        return;
    };
    let names = |v: &[SlimName]| {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match phase {
        Phase::Discovery { invited, .. } => {
            io.events.push_back(Event::Error {
                session: Some(s.id),
                message: format!(
                    "no SLIM app named {invited} answered the invitation (is it running and subscribed at this node?)"
                ),
            });
            if !s.is_group() {
                finish_close(s, md, io, &format!("{invited} did not answer"));
            }
        }
        Phase::Join { peer, .. } => {
            io.events.push_back(Event::Error {
                session: Some(s.id),
                message: format!("{peer} did not answer the join request"),
            });
            if !s.is_group() {
                finish_close(s, md, io, &format!("{peer} did not join"));
            }
        }
        Phase::Welcome { peer, mut wait } => {
            if wait.direct == Some(id) {
                io.events.push_back(Event::Error {
                    session: Some(s.id),
                    message: format!(
                        "{peer} did not acknowledge its welcome; removing it from the group"
                    ),
                });
                if s.is_group() {
                    // It may hold the Welcome (only its ack lost) and so the group's keys:
                    // its removal is committed like any other.
                    md.tasks.push_front(Task::Departed(peer));
                } else {
                    s.remove_member(io, &peer);
                    finish_close(
                        s,
                        md,
                        io,
                        &format!("{peer} did not acknowledge the welcome"),
                    );
                }
            } else if wait.update == Some(id) {
                // Partial success, as the SDK: the newcomer is in, some members lag.
                io.events.push_back(Event::Error {
                    session: Some(s.id),
                    message: format!(
                        "{} did not acknowledge the addition of {peer}",
                        names(&missing)
                    ),
                });
                if !wait.complete(id) {
                    md.current = Some(Phase::Welcome { peer, wait });
                    return;
                }
                invite_done(s, io, &peer);
            } else {
                md.current = Some(Phase::Welcome { peer, wait });
                return;
            }
        }
        Phase::RemoveUpdate { peer, leave, .. } => {
            io.events.push_back(Event::Error {
                session: Some(s.id),
                message: format!(
                    "{} did not acknowledge the removal of {peer}",
                    names(&missing)
                ),
            });
            if leave {
                if let Err(e) = send_leave(s, md, io, &peer) {
                    io.events.push_back(Event::Error {
                        session: Some(s.id),
                        message: e.to_string(),
                    });
                }
                return;
            }
            finish_removal(s, md, io, &peer);
        }
        Phase::Leave { peer, .. } => {
            io.events.push_back(Event::Error {
                session: Some(s.id),
                message: format!(
                    "{peer} did not acknowledge its removal (it can no longer decrypt the group's messages)"
                ),
            });
            finish_removal(s, md, io, &peer);
        }
        Phase::Close { .. } => {
            io.events.push_back(Event::Error {
                session: Some(s.id),
                message: format!("{} did not acknowledge the close", names(&missing)),
            });
            finish_close(s, md, io, "closed");
        }
        Phase::Rejoin { peer, .. } => {
            io.events.push_back(Event::Error {
                session: Some(s.id),
                message: format!(
                    "the rejoin of {peer} was not acknowledged by {}",
                    names(&missing)
                ),
            });
        }
    }
    if let Err(e) = next_task(s, md, io) {
        io.events.push_back(Event::Error {
            session: Some(s.id),
            message: e.to_string(),
        });
    }
}
