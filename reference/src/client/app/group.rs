//! `slim-client group`: moderate a group whose messages are read from stdin.

use bytes::Bytes;
use slim_proto::names::{SlimName, NULL_ID};
use tokio::time::Instant;

use super::{describe, stdin_lines, App, Step};
use crate::client::ClientEvent;
use crate::session::{Event, SessionOptions};

/// Whether `member` is the app `wanted` names (any instance when `wanted` has no id).
fn same_app(member: &SlimName, wanted: &SlimName) -> bool {
    member.components() == wanted.components()
        && (wanted.id() == NULL_ID || member.id() == wanted.id())
}

impl App<'_> {
    /// `slim-client group`: creates a group on `channel` with us as moderator, invites each of
    /// `invite` and waits until all joined, then sends each stdin line to the group
    /// (`remove NAME` removes a member) until EOF or SIGINT.
    pub async fn group(
        &mut self,
        channel: SlimName,
        invite: Vec<SlimName>,
        opts: SessionOptions,
    ) -> Result<(), String> {
        let session = self
            .client
            .create_group(channel.clone(), opts)
            .await
            .map_err(|e| describe(&e))?;
        self.sessions.insert(session);
        for peer in &invite {
            self.client
                .invite(session, peer.clone())
                .await
                .map_err(|e| describe(&e))?;
        }
        let mut members: Vec<SlimName> = Vec::new();
        let deadline = Instant::now() + self.timeout;
        while !invite
            .iter()
            .all(|w| members.iter().any(|m| same_app(m, w)))
        {
            match self.step(Some(deadline), false, true).await? {
                Step::Event(ClientEvent::Session(Event::MemberJoined { session: s, member }))
                    if s == session =>
                {
                    members.push(member)
                }
                Step::Deadline => {
                    let missing: Vec<String> = invite
                        .iter()
                        .filter(|w| !members.iter().any(|m| same_app(m, w)))
                        .map(|w| w.to_string())
                        .collect();
                    self.close_all().await;
                    return Err(format!(
                        "{} did not join {channel} within {:?}; is `slim-client listen` running for each, with the same --secret?",
                        missing.join(", "),
                        self.timeout
                    ));
                }
                Step::Interrupted => {
                    self.close_all().await;
                    return Ok(());
                }
                _ => {}
            }
        }
        self.out.status(
            "group ready: type lines to send, `remove NAME` to remove a member, EOF to end",
        );
        let mut lines = stdin_lines();
        loop {
            let line = tokio::select! {
                line = lines.recv() => line,
                step = self.step(None, false, true) => {
                    match step? {
                        Step::Interrupted => break,
                        Step::Event(ClientEvent::Session(Event::MemberJoined { session: s, member })) if s == session => members.push(member),
                        Step::Event(ClientEvent::Session(Event::MemberLeft { session: s, member })) if s == session => members.retain(|m| *m != member),
                        _ => {}
                    }
                    continue;
                }
            };
            let Some(line) = line else { break };
            if let Some(who) = line.strip_prefix("remove ") {
                let who = who.trim();
                let wanted = match who.parse::<SlimName>() {
                    Ok(n) => n,
                    Err(e) => {
                        self.out.error(&format!(
                            "cannot remove `{who}`: {e}; write `remove org/ns/app`"
                        ));
                        continue;
                    }
                };
                let target = members
                    .iter()
                    .find(|m| same_app(m, &wanted))
                    .cloned()
                    .unwrap_or(wanted);
                if let Err(e) = self.client.remove(session, target.clone()).await {
                    self.out
                        .error(&format!("cannot remove {target}: {}", describe(&e)));
                }
            } else if let Err(e) = self
                .client
                .publish(session, Bytes::from(line.into_bytes()))
                .await
            {
                self.out
                    .error(&format!("cannot send to {channel}: {}", describe(&e)));
            }
        }
        self.wait_idle("the acknowledgement of group messages")
            .await?;
        self.close_all().await;
        Ok(())
    }
}
