//! `slim-client send`: a point-to-point session, some messages, their acknowledgements.

use std::collections::HashMap;

use bytes::Bytes;
use slim_proto::names::SlimName;
use tokio::time::Instant;

use super::{describe, App, Step, RELIABILITY};
use crate::client::output::short;
use crate::client::ClientEvent;
use crate::session::{Event, SessionOptions};

impl App<'_> {
    /// `slim-client send`: opens a point-to-point session to `peer`, waits until it is
    /// established, sends `messages` in order and, when reliable, waits until each is
    /// acknowledged; with `expect`, also until that many messages were received on the session.
    pub async fn send(
        &mut self,
        peer: SlimName,
        messages: Vec<String>,
        opts: SessionOptions,
        expect: Option<u64>,
    ) -> Result<(), String> {
        let reliable = opts.reliable.is_some();
        let session = self
            .client
            .open_p2p(peer.clone(), opts)
            .await
            .map_err(|e| describe(&e))?;
        self.sessions.insert(session);
        // Wait for the session to be established before sending.
        let deadline = Instant::now() + self.timeout;
        let mut received = 0u64;
        loop {
            match self.step(Some(deadline), false, true).await? {
                Step::Event(ClientEvent::Session(Event::SessionOpened { session: s, .. }))
                    if s == session =>
                {
                    break
                }
                Step::Event(ClientEvent::Session(Event::SessionClosed { session: s, reason }))
                    if s == session =>
                {
                    return Err(format!(
                        "the session to {peer} closed before it was established: {reason}; check that {peer} is running `slim-client listen` with the same identity settings"
                    ));
                }
                Step::Event(ClientEvent::Session(Event::Message { session: s, .. }))
                    if s == session =>
                {
                    received += 1
                }
                Step::Deadline => {
                    return Err(format!(
                        "{peer} did not answer within {:?}; is `slim-client listen --name {}` running on the same node, with the same --secret?",
                        self.timeout,
                        short(&peer)
                    ))
                }
                Step::Interrupted => {
                    self.close_all().await;
                    return Err("interrupted before the session was established".into());
                }
                _ => {}
            }
        }
        let mut pending: HashMap<u32, String> = HashMap::new();
        for text in messages {
            let id = self
                .client
                .publish(session, Bytes::from(text.clone().into_bytes()))
                .await
                .map_err(|e| describe(&e))?;
            if reliable {
                pending.insert(id, text);
            }
        }
        let deadline = Instant::now() + self.timeout;
        while !pending.is_empty() || expect.is_some_and(|n| received < n) {
            match self.step(Some(deadline), false, true).await? {
                Step::Event(ClientEvent::Session(Event::Delivered {
                    session: s,
                    message_id,
                })) if s == session => {
                    pending.remove(&message_id);
                }
                Step::Event(ClientEvent::Session(Event::SendFailed {
                    session: s,
                    message_id,
                    peer: who,
                })) if s == session => {
                    let text = pending.remove(&message_id).unwrap_or_default();
                    self.close_all().await;
                    return Err(format!(
                        "message {message_id} ({text:?}) was never acknowledged by {who} after {} retries; is the peer still running?",
                        RELIABILITY.max_retries
                    ));
                }
                Step::Event(ClientEvent::Session(Event::Message { session: s, .. }))
                    if s == session =>
                {
                    received += 1
                }
                Step::Event(ClientEvent::Session(Event::SessionClosed { session: s, reason }))
                    if s == session =>
                {
                    return Err(format!(
                        "{peer} closed the session before we were done ({reason}); {} message(s) unacknowledged, {received} received",
                        pending.len()
                    ));
                }
                Step::Deadline => {
                    let mut ids: Vec<_> = pending.keys().collect();
                    ids.sort();
                    self.close_all().await;
                    return Err(format!(
                        "gave up after {:?}: {} message(s) unacknowledged {ids:?}, {received} of {} expected message(s) received; raise --timeout or check the peer",
                        self.timeout,
                        pending.len(),
                        expect.unwrap_or(0)
                    ));
                }
                Step::Interrupted => {
                    self.close_all().await;
                    return Err("interrupted before every message was acknowledged".into());
                }
                _ => {}
            }
        }
        self.wait_idle("sending").await?;
        self.close_all().await;
        Ok(())
    }
}
