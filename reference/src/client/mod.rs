//! The reference SLIM client: a thin tokio shell around two sans-IO cores.
//!
//! - the session [`Endpoint`] (sessions, reliability, MLS, tokens);
//! - the [`link::ClientLink`] (negotiation, header MAC, the subscription book), driven by
//!   [`link::connect`].
//!
//! One task owns the endpoint. The application talks to it through [`Client`], whose methods
//! send commands over a channel and await the answer, and reads what happened with
//! [`Client::next_event`]. Why one task and not a shared `Mutex<Endpoint>`: the endpoint is a
//! state machine that must see every input in one order (a message, then a timeout, then a
//! command); one owner gives that order for free, and nothing else in the process can block it.
//!
//! The task's loop: take what the endpoint wants on the wire ([`Transmit`]) and hand it to the
//! link (a Publish is signed there; Subscribe/Unsubscribe go to the link's subscription book, which
//! re-issues them after a reconnect), surface the endpoint's [`Event`]s, then wait for the first of
//! an inbound Publish, an application command, or the endpoint's next timer.
//!
//! The `slim-client` binary is this client plus [`app`] (its `listen`, `send` and `group` flows)
//! and [`output`] (its human and JSON output).

pub mod app;
pub mod driver;
pub mod link;
pub mod output;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use slim_proto::names::SlimName;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::revocation::{self, FileStamp, Reason, RevocationError, RevocationList, Watcher};
use crate::session::{
    Clock, Credentials, CryptoBackend, Endpoint, EndpointConfig, Event, SessionError, SessionId,
    SessionOptions, StateAuth, Transmit,
};
use link::{ClientLinkHandle, HttpAuth, LinkCommand, LinkEvent, LinkIoError, LinkOptions};

/// How to connect a [`Client`].
pub struct ClientOptions {
    /// The node's URL (`http://host:port`, or `https://host:port` for TLS).
    pub node: String,
    /// TLS settings for an `https://` node (`None`: Mozilla's roots, no client certificate).
    pub tls: Option<slim_proto::tls::ClientTls>,
    /// Our name, `org/ns/app` (the endpoint derives the id).
    pub name: SlimName,
    /// Our identity.
    pub credentials: Credentials,
    /// HTTP credentials for nodes that require them.
    pub auth: Option<HttpAuth>,
    /// Bound for connecting and for the initial subscription.
    pub timeout: Duration,
    /// RNG seed; `None` draws one from the OS.
    pub seed: Option<[u8; 32]>,
    /// The cryptography of our MLS groups. `None`: [`CryptoBackend::Ring`], or
    /// [`CryptoBackend::RingDeterministicSignatures`] when a seed is given, so that a seeded
    /// client repeats itself.
    pub mls_crypto: Option<CryptoBackend>,
}

/// What the application is told.
pub enum ClientEvent {
    /// A session event from the endpoint.
    Session(Event),
    /// The link came back after a loss; every subscription was restored.
    Reconnected {
        /// The node's URL.
        node: String,
    },
    /// The link was lost; the client is reconnecting.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// A non-fatal problem at the link (bad MAC dropped, subscription refused).
    Problem(String),
    /// The client cannot go on (credentials refused on reconnect); no more events follow.
    Fatal(ClientError),
}

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting or keeping the link failed.
    #[error(transparent)]
    Link(#[from] LinkIoError),
    /// The endpoint refused the operation.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The endpoint could not be created.
    #[error("cannot create the session endpoint: {0}")]
    Endpoint(SessionError),
    /// The node refused (or never acknowledged) the subscription of our own name.
    #[error("cannot subscribe our name {name} at the node: {reason}")]
    Subscribe {
        /// Our full name.
        name: SlimName,
        /// The node's answer.
        reason: String,
    },
    /// The client task has stopped (after a fatal error, or a shutdown).
    #[error("the client has stopped")]
    Stopped,
    /// The revocation file given at start cannot be used (SLIM-REV-006).
    #[error(transparent)]
    Revocation(#[from] RevocationError),
}

/// How often [`Client::watch_revocations`] looks at its file: the relay's period, so that a
/// revocation reaches the node and its apps in the same time.
pub const REVOCATION_POLL: Duration = revocation::POLL_PERIOD;

type Reply<T> = oneshot::Sender<Result<T, SessionError>>;

/// A request to the task that owns the endpoint.
enum Command {
    OpenP2p(SlimName, SessionOptions, Reply<SessionId>),
    CreateGroup(SlimName, SessionOptions, Reply<SessionId>),
    Invite(SessionId, SlimName, Reply<()>),
    Remove(SessionId, SlimName, Reply<()>),
    Publish(SessionId, Bytes, Reply<u32>),
    Close(SessionId, Reply<()>),
    IsBusy(oneshot::Sender<bool>),
    Members(SessionId, Reply<Vec<SlimName>>),
    Options(SessionId, Reply<SessionOptions>),
    StateAuth(SessionId, Reply<StateAuth>),
    /// Replace the identities the endpoint refuses (SLIM-REV-007/008).
    SetRevocations(RevocationList, Reply<()>),
    /// Add one revocation.
    Revoke(Reason, Reply<()>),
    /// Subscribe an extra name; answered when the node acks (or refuses) it.
    Subscribe(SlimName, oneshot::Sender<Result<(), ClientError>>),
}

/// A connected client: its name is subscribed at the node and the endpoint is running.
pub struct Client {
    local_name: SlimName,
    token_id: String,
    commands: mpsc::Sender<Command>,
    events: mpsc::UnboundedReceiver<ClientEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn random_seed() -> [u8; 32] {
    use rand_core::{OsRng, RngCore};
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    seed
}

impl Client {
    /// Creates the endpoint, connects and negotiates the link, subscribes our full name and
    /// waits for the node's ack (all within `opts.timeout`).
    pub async fn connect(opts: ClientOptions) -> Result<Client, ClientError> {
        let seed = opts.seed.unwrap_or_else(random_seed);
        let unix_secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let endpoint = Endpoint::new(EndpointConfig {
            name: opts.name,
            credentials: opts.credentials,
            seed,
            clock: Clock {
                at: Instant::now(),
                unix_secs,
            },
            mls_crypto: opts.mls_crypto.unwrap_or(if opts.seed.is_some() {
                CryptoBackend::RingDeterministicSignatures
            } else {
                CryptoBackend::Ring
            }),
        })
        .map_err(ClientError::Endpoint)?;
        let local_name = endpoint.local_name().clone();
        let token_id = endpoint.token_id().to_string();

        // Separate RNG streams for the endpoint and the link.
        let mut link_seed = seed;
        link_seed[31] ^= 0x5a;
        let mut link_opts = LinkOptions::new(opts.node, opts.timeout, link_seed);
        link_opts.auth = opts.auth;
        link_opts.tls = opts.tls;
        let deadline = tokio::time::Instant::now() + opts.timeout;
        let (link, mut link_events) = link::connect(link_opts).await?;

        link.send(LinkCommand::Subscribe(local_name.clone()))
            .await?;
        let mut early = Vec::new();
        loop {
            let ev = tokio::time::timeout_at(deadline, link_events.recv()).await;
            match ev {
                Err(_) => {
                    return Err(ClientError::Subscribe {
                        name: local_name,
                        reason: format!("no SubscriptionAck within {:?}", opts.timeout),
                    })
                }
                Ok(None) => return Err(LinkIoError::Stopped.into()),
                Ok(Some(LinkEvent::Subscribed(n))) if n == local_name => break,
                Ok(Some(LinkEvent::Problem(e))) => {
                    if let link::ClientLinkError::SubscriptionRefused { name, .. }
                    | link::ClientLinkError::Unacknowledged { name, .. } = &e
                    {
                        if *name == local_name {
                            return Err(ClientError::Subscribe {
                                name: local_name,
                                reason: e.to_string(),
                            });
                        }
                    }
                    early.push(LinkEvent::Problem(e));
                }
                Ok(Some(LinkEvent::Fatal(e))) => return Err(e.into()),
                Ok(Some(other)) => early.push(other),
            }
        }

        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        // Unbounded so that the task never blocks on an application that is busy awaiting one
        // of its own commands; events are small and the application reads them in its loop.
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(
            Task {
                endpoint,
                link,
                link_events,
                commands: cmd_rx,
                events: ev_tx,
                subscribing: Vec::new(),
            }
            .run(early),
        );
        Ok(Client {
            local_name,
            token_id,
            commands: cmd_tx,
            events: ev_rx,
            task,
        })
    }

    /// Our identity's token id (`sub`): what a revocation of this app names (SLIM-REV-002).
    pub fn token_id(&self) -> &str {
        &self.token_id
    }

    /// Our full name, with the id the endpoint derived.
    pub fn local_name(&self) -> &SlimName {
        &self.local_name
    }

    /// The next event; `None` once the client has stopped.
    pub async fn next_event(&mut self) -> Option<ClientEvent> {
        self.events.recv().await
    }

    /// Takes the event receiver, so that one task can read events while others send commands
    /// through `&self` (the driver shim's pump). [`Client::next_event`] returns `None` after.
    pub fn take_events(&mut self) -> mpsc::UnboundedReceiver<ClientEvent> {
        std::mem::replace(&mut self.events, mpsc::unbounded_channel().1)
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| ClientError::Stopped)?;
        Ok(rx.await.map_err(|_| ClientError::Stopped)??)
    }

    /// Opens a point-to-point session to `peer` (any instance when it has no id).
    pub async fn open_p2p(
        &self,
        peer: SlimName,
        opts: SessionOptions,
    ) -> Result<SessionId, ClientError> {
        self.ask(|r| Command::OpenP2p(peer, opts, r)).await
    }

    /// Creates a group on `channel` with us as moderator.
    pub async fn create_group(
        &self,
        channel: SlimName,
        opts: SessionOptions,
    ) -> Result<SessionId, ClientError> {
        self.ask(|r| Command::CreateGroup(channel, opts, r)).await
    }

    /// Invites `peer` into a group we moderate.
    pub async fn invite(&self, session: SessionId, peer: SlimName) -> Result<(), ClientError> {
        self.ask(|r| Command::Invite(session, peer, r)).await
    }

    /// Removes `peer` from a group we moderate.
    pub async fn remove(&self, session: SessionId, peer: SlimName) -> Result<(), ClientError> {
        self.ask(|r| Command::Remove(session, peer, r)).await
    }

    /// Sends `payload` on a session; returns the message id to watch for delivery.
    pub async fn publish(&self, session: SessionId, payload: Bytes) -> Result<u32, ClientError> {
        self.ask(|r| Command::Publish(session, payload, r)).await
    }

    /// Closes a session.
    pub async fn close(&self, session: SessionId) -> Result<(), ClientError> {
        self.ask(|r| Command::Close(session, r)).await
    }

    /// The roster of a session as we know it, us included, sorted (point-to-point: both ends).
    pub async fn members(&self, session: SessionId) -> Result<Vec<SlimName>, ClientError> {
        self.ask(|r| Command::Members(session, r)).await
    }

    /// The options a session runs with (for a session we were invited to: the moderator's).
    pub async fn session_options(&self, session: SessionId) -> Result<SessionOptions, ClientError> {
        self.ask(|r| Command::Options(session, r)).await
    }

    /// The MLS state of a session as we see it (epoch, epoch authenticator, roster), for
    /// members to compare; [`SessionError::NoMls`] for a session without MLS.
    pub async fn state_auth(&self, session: SessionId) -> Result<StateAuth, ClientError> {
        self.ask(|r| Command::StateAuth(session, r)).await
    }

    /// Subscribes an extra name at the node (through the link's subscription book, so it is
    /// restored after a reconnect, like our own name) and waits for the node's ack. Unbounded:
    /// the caller bounds the wait.
    pub async fn subscribe(&self, name: SlimName) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Subscribe(name, tx))
            .await
            .map_err(|_| ClientError::Stopped)?;
        rx.await.map_err(|_| ClientError::Stopped)?
    }

    /// Revokes one identity from this app's point of view: from now on it refuses what that
    /// identity signs, and removes it from every group it moderates (SLIM-REV-007/008).
    /// Answered once the endpoint has applied it (removals are then under way).
    pub async fn revoke(&self, entry: Reason) -> Result<(), ClientError> {
        self.ask(|r| Command::Revoke(entry, r)).await
    }

    /// Replaces the identities this app refuses with `list` (see [`Client::revoke`]).
    pub async fn set_revocations(&self, list: RevocationList) -> Result<(), ClientError> {
        self.ask(|r| Command::SetRevocations(list, r)).await
    }

    /// Takes the same revocation source as the relay (`revocation.file`, SLIM-REV-002): loads
    /// `path` now (an unusable file is an error: the app does not start without the list it was
    /// given) and then polls it every [`REVOCATION_POLL`]. A changed file that parses replaces
    /// the list; one that does not is reported as a [`ClientEvent::Problem`]-like warning in the
    /// log and the list in force stays in force (SLIM-REV-006). The watcher stops with the client.
    pub async fn watch_revocations(&self, path: std::path::PathBuf) -> Result<(), ClientError> {
        let stamp = FileStamp::of(&path);
        let list = revocation::load(&path)?;
        self.set_revocations(list).await?;
        let mut watcher = Watcher::new(path, stamp);
        let commands = self.commands.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(REVOCATION_POLL);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                match watcher.poll() {
                    None => {}
                    Some(Ok(list)) => {
                        let (tx, _rx) = oneshot::channel();
                        if commands
                            .send(Command::SetRevocations(list, tx))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Some(Err(e)) => {
                        warn!(file = %e.path, defect = %e.defect, "revocation list not loaded; the list in force stays in force");
                    }
                }
                if commands.is_closed() {
                    return;
                }
            }
        });
        Ok(())
    }

    /// Whether sessions are still being set up or messages are unacknowledged.
    pub async fn is_busy(&self) -> Result<bool, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::IsBusy(tx))
            .await
            .map_err(|_| ClientError::Stopped)?;
        rx.await.map_err(|_| ClientError::Stopped)
    }
}

/// The task that owns the endpoint and the link.
struct Task {
    endpoint: Endpoint,
    link: ClientLinkHandle,
    link_events: mpsc::UnboundedReceiver<LinkEvent>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::UnboundedSender<ClientEvent>,
    /// Extra names asked for with [`Client::subscribe`], waiting for the node's ack.
    subscribing: Vec<(SlimName, oneshot::Sender<Result<(), ClientError>>)>,
}

impl Task {
    async fn run(mut self, early: Vec<LinkEvent>) {
        for ev in early {
            if !self.on_link_event(ev).await {
                return;
            }
        }
        loop {
            if !self.flush().await {
                return;
            }
            let wake = self.endpoint.poll_timeout();
            let sleep = async {
                match wake {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    None => return,
                    Some(Command::Subscribe(name, r)) => {
                        if self.link.send(LinkCommand::Subscribe(name.clone())).await.is_err() {
                            let _ = r.send(Err(LinkIoError::Stopped.into()));
                        } else {
                            self.subscribing.push((name, r));
                        }
                    }
                    Some(cmd) => self.on_command(cmd),
                },
                ev = self.link_events.recv() => {
                    let ev = ev.unwrap_or(LinkEvent::Fatal(LinkIoError::Stopped));
                    if !self.on_link_event(ev).await {
                        return;
                    }
                }
                _ = sleep => self.endpoint.handle_timeout(Instant::now()),
            }
        }
    }

    /// Moves the endpoint's transmits to the link and its events to the application. `false`
    /// when either side has gone.
    async fn flush(&mut self) -> bool {
        while let Some(t) = self.endpoint.poll_transmit() {
            let cmd = match t {
                Transmit::Publish(m) => LinkCommand::Publish(m),
                Transmit::Subscribe(n) => LinkCommand::Subscribe(n),
                Transmit::Unsubscribe(n) => LinkCommand::Unsubscribe(n),
            };
            if self.link.send(cmd).await.is_err() {
                let _ = self
                    .events
                    .send(ClientEvent::Fatal(LinkIoError::Stopped.into()));
                return false;
            }
        }
        while let Some(ev) = self.endpoint.poll_event() {
            if self.events.send(ClientEvent::Session(ev)).is_err() {
                return false;
            }
        }
        true
    }

    fn on_command(&mut self, cmd: Command) {
        let now = Instant::now();
        let ep = &mut self.endpoint;
        // A dropped reply receiver means the caller stopped waiting: nothing to do.
        match cmd {
            Command::OpenP2p(peer, opts, r) => drop(r.send(ep.open_p2p(peer, opts, now))),
            Command::CreateGroup(ch, opts, r) => drop(r.send(ep.create_group(ch, opts, now))),
            Command::Invite(s, peer, r) => drop(r.send(ep.invite(s, peer, now))),
            Command::Remove(s, peer, r) => drop(r.send(ep.remove(s, &peer, now))),
            Command::Publish(s, payload, r) => drop(r.send(ep.publish(s, payload, now))),
            Command::Close(s, r) => drop(r.send(ep.close(s, now))),
            Command::IsBusy(r) => drop(r.send(ep.is_busy())),
            Command::Members(s, r) => drop(r.send(ep.members(s))),
            Command::Options(s, r) => drop(r.send(ep.options(s))),
            Command::StateAuth(s, r) => drop(r.send(ep.state_auth(s))),
            Command::SetRevocations(list, r) => {
                ep.set_revocations(list, now);
                drop(r.send(Ok(())));
            }
            Command::Revoke(entry, r) => {
                ep.revoke(entry, now);
                drop(r.send(Ok(())));
            }
            // Handled in `run`: it needs the link.
            Command::Subscribe(name, r) => drop(r.send(Err(ClientError::Subscribe {
                name,
                reason: "internal: subscription not routed to the link".into(),
            }))),
        }
    }

    /// `false` when the client must stop.
    async fn on_link_event(&mut self, ev: LinkEvent) -> bool {
        let out = match ev {
            LinkEvent::Publish(m) => {
                self.endpoint.handle_message(m, Instant::now());
                return true;
            }
            LinkEvent::Subscribed(name) => {
                debug!(%name, "subscription acknowledged");
                self.answer_subscribers(&name, None);
                return true;
            }
            LinkEvent::Unsubscribed(name) => {
                debug!(%name, "unsubscription acknowledged");
                return true;
            }
            LinkEvent::Disconnected { reason } => ClientEvent::Disconnected { reason },
            LinkEvent::Reconnected { node } => ClientEvent::Reconnected { node },
            LinkEvent::Problem(e) => {
                if let link::ClientLinkError::SubscriptionRefused { name, .. }
                | link::ClientLinkError::Unacknowledged { name, .. } = &e
                {
                    let name = name.clone();
                    self.answer_subscribers(&name, Some(e.to_string()));
                }
                ClientEvent::Problem(e.to_string())
            }
            LinkEvent::Fatal(e) => {
                warn!(error = %e, "link gave up");
                let _ = self.events.send(ClientEvent::Fatal(e.into()));
                return false;
            }
        };
        self.events.send(out).is_ok()
    }

    /// Answers every [`Client::subscribe`] of `name` that waits for the node: acked, or refused
    /// (`refused` says why).
    fn answer_subscribers(&mut self, name: &SlimName, refused: Option<String>) {
        let mut i = 0;
        while i < self.subscribing.len() {
            if self.subscribing[i].0 == *name {
                let (_, r) = self.subscribing.swap_remove(i);
                let answer = match &refused {
                    None => Ok(()),
                    Some(reason) => Err(ClientError::Subscribe {
                        name: name.clone(),
                        reason: reason.clone(),
                    }),
                };
                let _ = r.send(answer);
            } else {
                i += 1;
            }
        }
    }
}
