//! The command-line client's output: human or JSON lines.
//!
//! Human mode writes received messages to stdout as `org/ns/app text` and everything else (status,
//! events, errors) to stderr, so `slim-client listen > messages.txt` keeps only the messages.
//! JSON mode (`--json`) writes one object per line to stdout, each with an `event` field
//! (`ready`, `session`, `message`, `delivered`, `send_failed`, `member_joined`, `member_left`,
//! `removed`, `closed`, `reconnected`, `error`, `done`), for scripts and tests; errors still go to
//! stderr as well.

use std::io::Write as _;

use serde_json::json;
use slim_proto::names::SlimName;

use super::ClientEvent;
use crate::session::Event;

/// `org/ns/app` without the id, as human output shows a sender.
pub(crate) fn short(name: &SlimName) -> String {
    let [a, b, c] = name.components();
    format!("{a}/{b}/{c}")
}

/// Where the command-line client's output goes: human lines (messages on stdout, status and
/// errors on stderr) or, with `--json`, one JSON object per line on stdout.
#[derive(Debug, Clone, Copy)]
pub struct Console {
    json: bool,
}

impl Console {
    /// Human output, or JSON lines when `json`.
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// One JSON object on its own line on stdout, flushed.
    fn emit(&self, v: serde_json::Value) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{v}");
        let _ = stdout.flush();
    }

    /// A human status line on stderr; nothing in JSON mode.
    pub fn status(&self, line: &str) {
        if !self.json {
            eprintln!("{line}");
        }
    }

    /// We are connected and subscribed as `name`.
    pub fn ready(&self, name: &SlimName) {
        if self.json {
            self.emit(json!({"event": "ready", "name": name.to_string()}));
        } else {
            self.status(&format!("ready as {name}"));
        }
    }

    /// The command finished successfully (a `done` event in JSON mode).
    pub fn done(&self) {
        if self.json {
            self.emit(json!({"event": "done"}));
        }
    }

    /// A problem: `error: ...` on stderr, and an error event in JSON mode.
    pub fn error(&self, msg: &str) {
        if self.json {
            self.emit(json!({"event": "error", "message": msg}));
        }
        eprintln!("error: {msg}");
    }

    /// A client event, as the user sees it.
    pub fn event(&self, ev: &ClientEvent) {
        match ev {
            ClientEvent::Session(ev) => self.session_event(ev),
            ClientEvent::Reconnected { node } => {
                if self.json {
                    self.emit(json!({"event": "reconnected", "node": node}));
                } else {
                    self.status(&format!("reconnected to {node}; subscriptions restored"));
                }
            }
            ClientEvent::Disconnected { reason } => self.status(&format!(
                "connection to the node lost ({reason}); reconnecting"
            )),
            ClientEvent::Problem(msg) => self.error(msg),
            // Reported by the caller, which then exits.
            ClientEvent::Fatal(_) => {}
        }
    }

    fn session_event(&self, ev: &Event) {
        let j = self.json;
        match ev {
            Event::SessionOpened {
                session,
                peer,
                initiator,
                group,
            } => {
                if j {
                    self.emit(json!({"event": "session", "session": session, "peer": peer.to_string(), "group": group, "initiator": initiator}));
                } else {
                    let kind = if *group { "group" } else { "point-to-point" };
                    self.status(&format!("{kind} session {session} with {peer} opened"));
                }
            }
            Event::Message {
                session,
                from,
                payload,
            } => {
                let text = String::from_utf8_lossy(payload);
                if j {
                    self.emit(json!({"event": "message", "session": session, "from": from.to_string(), "text": text}));
                } else {
                    let mut stdout = std::io::stdout().lock();
                    let _ = writeln!(stdout, "{} {text}", short(from));
                    let _ = stdout.flush();
                }
            }
            Event::Delivered {
                session,
                message_id,
            } => {
                if j {
                    self.emit(
                        json!({"event": "delivered", "session": session, "message_id": message_id}),
                    );
                } else {
                    self.status(&format!(
                        "message {message_id} delivered (session {session})"
                    ));
                }
            }
            Event::SendFailed {
                session,
                message_id,
                peer,
            } => {
                if j {
                    self.emit(json!({"event": "send_failed", "session": session, "message_id": message_id, "peer": peer.to_string()}));
                } else {
                    self.status(&format!(
                        "message {message_id} was never acknowledged by {peer} (session {session})"
                    ));
                }
            }
            Event::MemberJoined { session, member } => {
                if j {
                    self.emit(json!({"event": "member_joined", "session": session, "member": member.to_string()}));
                } else {
                    self.status(&format!("{member} joined session {session}"));
                }
            }
            Event::MemberLeft { session, member } => {
                if j {
                    self.emit(json!({"event": "member_left", "session": session, "member": member.to_string()}));
                } else {
                    self.status(&format!("{member} left session {session}"));
                }
            }
            Event::Removed { session } => {
                if j {
                    self.emit(json!({"event": "removed", "session": session}));
                } else {
                    self.status(&format!("we were removed from group session {session}"));
                }
            }
            Event::SessionClosed { session, reason } => {
                if j {
                    self.emit(json!({"event": "closed", "session": session, "reason": reason}));
                } else {
                    self.status(&format!("session {session} closed: {reason}"));
                }
            }
            Event::Error { session, message } => {
                if j {
                    let mut v = json!({"event": "error", "message": message});
                    if let Some(s) = session {
                        v["session"] = json!(s);
                    }
                    self.emit(v);
                } else {
                    match session {
                        Some(s) => eprintln!("error: session {s}: {message}"),
                        None => eprintln!("error: {message}"),
                    }
                }
            }
        }
    }
}
