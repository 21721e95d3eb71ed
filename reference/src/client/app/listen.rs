//! `slim-client listen`: accept sessions and print what arrives.

use bytes::Bytes;

use super::{describe, stdin_lines, App, Step};
use crate::client::ClientEvent;
use crate::session::{Event, SessionId};

impl App<'_> {
    /// `slim-client listen`: accepts sessions and prints every message; with `echo` sends each
    /// back on its session, with `count` returns after that many (once the echoes are
    /// acknowledged), with `stdin` sends each stdin line on the session opened last. Returns on
    /// SIGINT after closing the open sessions.
    pub async fn listen(
        &mut self,
        echo: bool,
        count: Option<u64>,
        stdin: bool,
    ) -> Result<(), String> {
        self.out.status("listening; stop with Ctrl-C");
        let mut received = 0u64;
        let mut lines = stdin.then(stdin_lines);
        let mut newest: Option<SessionId> = None;
        while count.is_none_or(|n| received < n) {
            let step = match &mut lines {
                Some(l) => tokio::select! {
                    line = l.recv() => {
                        match line {
                            Some(line) => match newest.filter(|s| self.sessions.contains(s)) {
                                Some(s) => {
                                    if let Err(e) = self.client.publish(s, Bytes::from(line.into_bytes())).await {
                                        self.out.error(&format!("cannot send on session {s}: {}", describe(&e)));
                                    }
                                }
                                None => self.out.error("no open session to send this line on; wait for an invitation"),
                            },
                            None => lines = None,
                        }
                        continue;
                    }
                    step = self.step(None, false, true) => step?,
                },
                None => self.step(None, false, true).await?,
            };
            match step {
                Step::Interrupted => {
                    self.close_all().await;
                    return Ok(());
                }
                Step::Event(ClientEvent::Session(Event::SessionOpened { session, .. })) => {
                    newest = Some(session);
                }
                Step::Event(ClientEvent::Session(Event::Message {
                    session, payload, ..
                })) => {
                    received += 1;
                    if echo {
                        if let Err(e) = self.client.publish(session, payload).await {
                            self.out
                                .error(&format!("cannot echo on session {session}: {e}"));
                        }
                    }
                }
                _ => {}
            }
        }
        if echo {
            self.wait_idle("the acknowledgement of our echoes").await?;
        }
        self.close_all().await;
        Ok(())
    }
}
