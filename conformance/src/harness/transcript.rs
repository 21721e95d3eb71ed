//! The transcript: every frame the harness forwarded (or dropped), every link opened and closed,
//! and the runner's notes, in forwarding order.
//!
//! It is the evidence a session case is judged on, so each entry keeps the frame's bytes as the
//! receiving side got them and what the harness did to it. Memory is bounded: past
//! [`MAX_ENTRIES`] the oldest entries are discarded (their sequence numbers stay taken, so a gap
//! in `seq` shows the loss).

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use prost::Message as _;
use serde::Serialize;
use slim_proto::pb;
use tokio::sync::watch;

/// Entries kept before the oldest are discarded.
pub const MAX_ENTRIES: usize = 200_000;

/// Which way a frame travelled through the harness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Dir {
    /// From an app (downstream) to the node (upstream).
    ToNode,
    /// From the node to an app.
    FromNode,
}

impl Dir {
    /// A stable byte for hashing fault decisions.
    pub(crate) fn tag(self) -> u8 {
        match self {
            Dir::ToNode => 0,
            Dir::FromNode => 1,
        }
    }
}

/// A Publish's session header, decoded for the transcript (plus the header's error flag, which
/// marks an error RTX_REPLY).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SessionInfo {
    /// `pb::SessionType` value.
    pub session_type: i32,
    /// `pb::SessionMessageType` value.
    pub message_type: i32,
    /// The session id.
    pub session_id: u32,
    /// The message id.
    pub message_id: u32,
    /// `SLIMHeader.error` (absent reads as false).
    pub error: bool,
}

/// One transcript entry: a frame, a link event or a note.
#[derive(Clone, Debug, Serialize)]
pub struct TranscriptEntry {
    /// Position in the transcript, from 0, never reused.
    pub seq: u64,
    /// Microseconds since the harness started.
    pub at_us: u64,
    /// The link (one downstream OpenChannel stream), numbered from 0 in accept order; 0 for notes.
    pub link: u32,
    /// Direction of a frame; `None` for notes and link events.
    pub dir: Option<Dir>,
    /// `negotiation`, `subscribe`, `unsubscribe`, `publish`, `subscription_ack`, `other`
    /// (undecodable or unknown frames), `note`, `link_open` or `link_closed`.
    pub kind: String,
    /// Source name as text (`org/ns/app/<id>`), when the frame has a header.
    pub source: Option<String>,
    /// Destination name as text.
    pub destination: Option<String>,
    /// `SLIMHeader.fanout`.
    pub fanout: Option<u32>,
    /// The identity token's subject if it parses (shared-secret token: its first `:` part; JWT:
    /// the `sub` claim). Not verified.
    pub identity_sub: Option<String>,
    /// The decoded session header of a Publish.
    pub session: Option<SessionInfo>,
    /// Length of the application blob, or of the encoded command payload.
    pub payload_len: usize,
    /// The MLS wire format of the MLSMessage in a data blob or a commit/welcome payload.
    pub mls_wire_format: Option<u16>,
    /// The MLS epoch of that MLSMessage (Public and PrivateMessage only).
    pub mls_epoch: Option<u64>,
    /// What the harness did to the frame: `drop`, `duplicate`, `reorder`, `delay 50ms`,
    /// `corrupt e2e_header_sig`, `corrupt slim-payload-sig`, `corrupt: no e2e_header_sig`, ...
    pub fault: Option<String>,
    /// A note's text, or the reason of a `link_closed` / details of a `link_open`.
    pub note: Option<String>,
    /// The frame as the receiving side got it (the original for a dropped one); empty for notes.
    #[serde(serialize_with = "as_hex")]
    pub bytes: Bytes,
}

fn as_hex<S: serde::Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(b))
}

impl TranscriptEntry {
    /// The frame decoded as a `Message`, when it is one.
    pub fn message(&self) -> Option<pb::Message> {
        if self.bytes.is_empty() {
            return None;
        }
        pb::Message::decode(&self.bytes[..]).ok()
    }

    /// The session message type's short name (`MSG`, `MSG_ACK`, `GROUP_WELCOME`, ...), for
    /// Publishes with a session header of a known type.
    pub fn message_type_name(&self) -> Option<&'static str> {
        let t = pb::SessionMessageType::try_from(self.session?.message_type).ok()?;
        let name = t.as_str_name();
        Some(name.strip_prefix("SESSION_MESSAGE_TYPE_").unwrap_or(name))
    }

    /// Whether this is a Publish of session message type `t` travelling `dir`.
    pub fn is(&self, dir: Dir, t: pb::SessionMessageType) -> bool {
        self.dir == Some(dir) && self.session.is_some_and(|s| s.message_type == t as i32)
    }
}

/// The entries and the sequence counter, behind one lock.
#[derive(Default)]
struct Entries {
    entries: VecDeque<TranscriptEntry>,
    next_seq: u64,
}

/// The shared transcript: appended by the link tasks, read by the runner.
pub(crate) struct Transcript {
    inner: Mutex<Entries>,
    /// The number of entries ever appended, for waiters.
    appended: watch::Sender<u64>,
    started: std::time::Instant,
}

impl Transcript {
    pub(crate) fn new() -> Self {
        Self {
            inner: Mutex::new(Entries::default()),
            appended: watch::Sender::new(0),
            started: std::time::Instant::now(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while holding the lock cannot leave the deque inconsistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `entry` with the next `seq` and the current time; returns the seq.
    pub(crate) fn push(&self, mut entry: TranscriptEntry) -> u64 {
        let seq = {
            let mut e = self.lock();
            entry.seq = e.next_seq;
            entry.at_us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
            e.next_seq += 1;
            if e.entries.len() >= MAX_ENTRIES {
                e.entries.pop_front();
            }
            e.entries.push_back(entry);
            e.next_seq
        };
        self.appended.send_replace(seq);
        seq - 1
    }

    pub(crate) fn snapshot(&self) -> Vec<TranscriptEntry> {
        self.lock().entries.iter().cloned().collect()
    }

    /// The first entry with `seq >= from` matching `pred`, and the seq to continue from.
    fn find_from(
        &self,
        from: u64,
        pred: &impl Fn(&TranscriptEntry) -> bool,
    ) -> (Option<TranscriptEntry>, u64) {
        let e = self.lock();
        let found = e
            .entries
            .iter()
            .filter(|x| x.seq >= from)
            .find(|x| pred(x))
            .cloned();
        (found, e.next_seq)
    }

    pub(crate) async fn wait_for(
        &self,
        timeout: std::time::Duration,
        pred: impl Fn(&TranscriptEntry) -> bool,
    ) -> Option<TranscriptEntry> {
        let deadline = tokio::time::Instant::now() + timeout;
        // Subscribed before the first look, so no entry appended after it can be missed.
        let mut changes = self.appended.subscribe();
        let mut from = 0;
        loop {
            changes.borrow_and_update();
            let (found, next) = self.find_from(from, &pred);
            if found.is_some() {
                return found;
            }
            from = next;
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => return None,
            }
        }
    }
}

/// A blank entry of `kind` on `link`, to fill in.
pub(crate) fn blank(kind: &str, link: u32, dir: Option<Dir>) -> TranscriptEntry {
    TranscriptEntry {
        seq: 0,
        at_us: 0,
        link,
        dir,
        kind: kind.to_string(),
        source: None,
        destination: None,
        fanout: None,
        identity_sub: None,
        session: None,
        payload_len: 0,
        mls_wire_format: None,
        mls_epoch: None,
        fault: None,
        note: None,
        bytes: Bytes::new(),
    }
}
