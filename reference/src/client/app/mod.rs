//! The command-line client's flows: `listen` ([`App::listen`], `listen.rs`), `send`
//! ([`App::send`], `send.rs`) and `group` ([`App::group`], `group.rs`), on a connected
//! [`Client`].
//!
//! Every flow is a loop over `App::step`: the next client event (printed through the
//! [`Console`] and tracked: which sessions are open), SIGINT, or a deadline. Every wait is bounded
//! by `--timeout`, and every failure is returned as one `what; how to fix` sentence that the
//! binary prints as `error: ...` before exiting with code 1. On the way out (done, interrupted,
//! or failed after the session was set up) the open sessions are closed gracefully, bounded.
//!
//! SIGINT is watched once for the whole run ([`watch_sigint`]), so a signal that arrives between
//! two waits is not lost.

mod group;
mod listen;
mod send;

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::output::Console;
use super::{Client, ClientError, ClientEvent};
use crate::session::{Event, Reliability, SessionId};

/// Reliability of `--reliable` sessions: the real SDK's control-message defaults (1 s, 10).
pub const RELIABILITY: Reliability = Reliability {
    interval: Duration::from_secs(1),
    max_retries: 10,
};

/// A client error as one `what; how to fix` sentence.
pub fn describe(e: &ClientError) -> String {
    match e {
        // Link errors already say how to fix them.
        ClientError::Link(l) => l.to_string(),
        ClientError::Session(s) => format!("{s}; see the session events above"),
        ClientError::Endpoint(s) => {
            format!("cannot start the session endpoint: {s}; check --name and the identity")
        }
        ClientError::Subscribe { .. } => format!(
            "{e}; the node must accept a subscription for our own name (check its limits and logs)"
        ),
        ClientError::Stopped => {
            "the client stopped unexpectedly; run with SLIM_CLIENT_LOG=debug to see why".into()
        }
        ClientError::Revocation(r) => {
            format!("{r}; fix the file (`revoked: []` for an empty list)")
        }
    }
}

/// A flag that turns true on the first SIGINT. One watcher for the whole run, so a signal that
/// arrives between two waits is not lost.
///
/// The handler is registered before this returns (not when the task first runs), so a SIGINT
/// that comes right after `ready` is printed is not lost to the default action.
pub fn watch_sigint() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    #[cfg(unix)]
    let mut signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    tokio::spawn(async move {
        #[cfg(unix)]
        let got = match signal.as_mut() {
            Some(s) => s.recv().await.is_some(),
            None => tokio::signal::ctrl_c().await.is_ok(),
        };
        #[cfg(not(unix))]
        let got = tokio::signal::ctrl_c().await.is_ok();
        if got {
            let _ = tx.send(true);
            // Keep the sender alive so receivers do not see a closed channel.
            std::future::pending::<()>().await;
        }
    });
    rx
}

/// Resolves once SIGINT was received.
pub async fn interrupted(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|&hit| hit).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A running subcommand: the connected client, where output goes, the bound for every wait, and
/// the sessions to close on exit.
pub struct App<'a> {
    client: &'a mut Client,
    out: Console,
    timeout: Duration,
    /// Sessions open now (closed gracefully on exit).
    sessions: BTreeSet<SessionId>,
    /// True once SIGINT was received.
    sigint: watch::Receiver<bool>,
}

/// What the main loops wait on.
enum Step {
    Event(ClientEvent),
    Interrupted,
    Tick,
    Deadline,
}

impl<'a> App<'a> {
    /// A flow on `client`: output through `out`, every wait bounded by `timeout`, SIGINT read
    /// from `sigint` (see [`watch_sigint`]).
    pub fn new(
        client: &'a mut Client,
        out: Console,
        timeout: Duration,
        sigint: watch::Receiver<bool>,
    ) -> Self {
        Self {
            client,
            out,
            timeout,
            sessions: BTreeSet::new(),
            sigint,
        }
    }
}

impl App<'_> {
    /// The next event, printed and tracked; `Err` on a fatal one or a stopped client.
    async fn step(
        &mut self,
        deadline: Option<Instant>,
        tick: bool,
        sigint: bool,
    ) -> Result<Step, String> {
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        let tick_at = Instant::now() + Duration::from_millis(25);
        let step = tokio::select! {
            ev = self.client.next_event() => match ev {
                Some(ev) => Step::Event(ev),
                None => return Err(describe(&ClientError::Stopped)),
            },
            _ = interrupted(&mut self.sigint), if sigint => Step::Interrupted,
            _ = tokio::time::sleep_until(tick_at), if tick => Step::Tick,
            _ = tokio::time::sleep_until(deadline.unwrap_or(far)) => Step::Deadline,
        };
        if let Step::Event(ev) = &step {
            self.out.event(ev);
            match ev {
                ClientEvent::Fatal(e) => return Err(describe(e)),
                ClientEvent::Session(Event::SessionOpened { session, .. }) => {
                    self.sessions.insert(*session);
                }
                ClientEvent::Session(Event::SessionClosed { session, .. })
                | ClientEvent::Session(Event::Removed { session }) => {
                    self.sessions.remove(session);
                }
                _ => {}
            }
        }
        Ok(step)
    }

    /// Waits (printing events) until nothing is pending at the endpoint, up to the timeout.
    async fn wait_idle(&mut self, what: &str) -> Result<(), String> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if !self.client.is_busy().await.map_err(|e| describe(&e))? {
                return Ok(());
            }
            match self.step(Some(deadline), true, true).await? {
                Step::Deadline => {
                    return Err(format!(
                        "{what} still pending after {:?}; is the peer still running? raise --timeout if the network is slow",
                        self.timeout
                    ))
                }
                Step::Interrupted => return Err(format!("interrupted while {what} was pending")),
                _ => {}
            }
        }
    }

    /// Closes every open session and waits (bounded) for them to close.
    async fn close_all(&mut self) {
        let bound = self.timeout.min(Duration::from_secs(5));
        let deadline = Instant::now() + bound;
        let open: Vec<SessionId> = self.sessions.iter().copied().collect();
        for s in open {
            if let Err(e) = self.client.close(s).await {
                self.out.status(&format!("closing session {s}: {e}"));
                self.sessions.remove(&s);
            }
        }
        loop {
            let busy = self.client.is_busy().await.unwrap_or(false);
            if self.sessions.is_empty() && !busy {
                return;
            }
            match self.step(Some(deadline), true, false).await {
                Ok(Step::Deadline) | Ok(Step::Interrupted) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

/// Lines of stdin, read on a thread (blocking reads do not belong on the runtime); the channel
/// closes at EOF.
fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
