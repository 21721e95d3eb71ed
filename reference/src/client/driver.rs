//! The driver shim: the reference client hosting `slim.conformance.driver.v1.Driver`
//! (`proto/conformance/v1/driver.proto`), so the conformance runner's session profile can script
//! it like any other implementation under test.
//!
//! The runner creates apps (each a [`Client`]), sessions and messages by opaque ids ("app-1",
//! "s-1", …) and watches each app's event stream. One pump task per app reads the client's
//! events: it keeps every one in the app's history (so an `Events` stream opened late still sees
//! everything since creation, then live events) and wakes the calls that wait for one (a
//! session opened, a member joined, a publish's outcome). A waiting call notes the history's
//! length before it acts, then scans the history from there, so no event can slip past it.
//!
//! Status codes, as the protocol says: what the reference client cannot do is `UNIMPLEMENTED`
//! with the reason; what it tried and failed is `FAILED_PRECONDITION` with the client's error;
//! every wait honours `timeout_ms` (0 = [`DEFAULT_TIMEOUT`]) and ends `DEADLINE_EXCEEDED`;
//! unknown app or session ids are `NOT_FOUND`; a malformed name is `INVALID_ARGUMENT`.
//!
//! Identities: `shared_secret` is [`Credentials::SharedSecret`]; `jwt_hs256_secret` is
//! [`Credentials::Jwt`] with an HS256 [`JwtKey`] of that secret (the app mints its own JWTs,
//! `sub` = `org/ns/app_<8 random characters>`, and verifies its peers' with the same secret);
//! a pre-issued `jwt` is `UNIMPLEMENTED` (the client only mints its own tokens).
//!
//! [`DriverServer`] serves the shim on a TCP address, in-process (the runner embeds it) or from
//! `slim-client driver` ([`serve_until_signal`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use slim_proto::driver::driver_server::{Driver, DriverServer as DriverService};
use slim_proto::driver::{
    self as d, create_app_request::Identity, event::Kind, publish_outcome::Status as OutcomeStatus,
};
use slim_proto::identity::JwtKey;
use slim_proto::names::{SlimName, NULL_ID};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status};

use super::{Client, ClientError, ClientEvent, ClientOptions};
use crate::session::{
    Credentials, Event, Reason, Reliability, SessionError, SessionId, SessionOptions,
};

/// The bound of a waiting call whose `timeout_ms` is 0.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The driver protocol version this shim speaks.
pub const DRIVER_VERSION: &str = "1";

/// Why CreateApp with a pre-issued `jwt` is UNIMPLEMENTED.
const NO_PRE_ISSUED_JWT: &str = "the reference client mints its own JWTs from an issuer key; it \
                                 cannot use a pre-issued token and its private key";

type Result<T> = std::result::Result<Response<T>, Status>;

fn deadline(timeout_ms: u32) -> Instant {
    let t = if timeout_ms == 0 {
        DEFAULT_TIMEOUT
    } else {
        Duration::from_millis(u64::from(timeout_ms))
    };
    Instant::now() + t
}

fn parse_name(what: &str, text: &str) -> std::result::Result<SlimName, Status> {
    text.parse::<SlimName>()
        .map_err(|e| Status::invalid_argument(format!("{what} `{text}`: {e}")))
}

fn failed(e: impl std::fmt::Display) -> Status {
    Status::failed_precondition(e.to_string())
}

/// A client error as the protocol wants it: a session without MLS is named as such.
fn client_status(e: ClientError) -> Status {
    match e {
        ClientError::Session(SessionError::NoMls(_)) => {
            Status::failed_precondition("session has no MLS")
        }
        e => failed(e),
    }
}

/// Whether `member` is what `wanted` denotes (the same instance, or any instance of a name
/// given without id).
fn denotes(wanted: &SlimName, member: &SlimName) -> bool {
    member.components() == wanted.components()
        && (wanted.id() == NULL_ID || wanted.id() == member.id())
}

// ----- per-app state ----------------------------------------------------------------------------

/// A session as the driver knows it.
#[derive(Debug, Clone)]
struct SessionEntry {
    wire: SessionId,
    /// Whether we created it (CreateSession): a group we moderate cannot be left, only closed.
    moderator: bool,
    group: bool,
}

/// What the pump and the calls share, under one lock.
#[derive(Default)]
struct AppState {
    /// Every session event, in order (what waiting calls scan).
    raw: Vec<Event>,
    /// Every driver event, in order (what an `Events` stream replays first).
    history: Vec<d::Event>,
    /// Open `Events` streams.
    streams: Vec<mpsc::UnboundedSender<std::result::Result<d::Event, Status>>>,
    /// Driver session ids by wire id, and back.
    by_wire: HashMap<SessionId, String>,
    sessions: HashMap<String, SessionEntry>,
    next_session: u64,
    /// Sessions other apps opened towards us, in order; the first `claimed` went to AwaitSession.
    incoming: Vec<String>,
    claimed: usize,
    /// The client stopped (fatal link error): nothing more will happen.
    stopped: Option<String>,
}

impl AppState {
    /// The driver id of wire session `wire`, created on first sight.
    fn session_key(&mut self, wire: SessionId, group: bool, moderator: bool) -> String {
        if let Some(k) = self.by_wire.get(&wire) {
            return k.clone();
        }
        self.next_session += 1;
        let key = format!("s-{}", self.next_session);
        self.by_wire.insert(wire, key.clone());
        self.sessions.insert(
            key.clone(),
            SessionEntry {
                wire,
                moderator,
                group,
            },
        );
        key
    }

    fn emit(&mut self, kind: Kind) {
        let ev = d::Event { kind: Some(kind) };
        self.streams.retain(|s| s.send(Ok(ev.clone())).is_ok());
        self.history.push(ev);
    }

    /// Records one client event: in the raw log (session events) and as a driver event.
    fn record(&mut self, ev: ClientEvent) {
        let Some(kind) = (match ev {
            ClientEvent::Session(e) => self.record_session(e),
            ClientEvent::Reconnected { node } => Some(Kind::Note(format!("reconnected to {node}"))),
            ClientEvent::Disconnected { reason } => {
                Some(Kind::Note(format!("disconnected: {reason}")))
            }
            ClientEvent::Problem(p) => Some(Kind::Note(format!("problem: {p}"))),
            ClientEvent::Fatal(e) => {
                self.stopped = Some(e.to_string());
                Some(Kind::Note(format!("fatal: {e}")))
            }
        }) else {
            return;
        };
        self.emit(kind);
    }

    fn record_session(&mut self, e: Event) -> Option<Kind> {
        let kind = match &e {
            Event::SessionOpened {
                session,
                peer,
                initiator,
                group,
            } => {
                let key = self.session_key(*session, *group, *initiator);
                if !initiator {
                    self.incoming.push(key.clone());
                }
                Some(Kind::SessionOpened(d::SessionOpened {
                    session_id: key,
                    r#type: session_type(*group) as i32,
                    peer: peer.to_string(),
                    initiator: *initiator,
                }))
            }
            Event::Message {
                session,
                from,
                payload,
            } => Some(Kind::Message(d::MessageReceived {
                session_id: self.key_of(*session),
                sender: from.to_string(),
                payload: payload.clone(),
            })),
            // A publish outcome, not an event of the protocol: Publish reads it from `raw`.
            Event::Delivered { .. } => None,
            Event::SendFailed {
                session,
                message_id,
                peer,
            } => Some(Kind::SendFailed(d::SendFailed {
                session_id: self.key_of(*session),
                reason: send_failure(*message_id, peer),
            })),
            Event::MemberJoined { session, member } => Some(Kind::MemberJoined(d::MemberJoined {
                session_id: self.key_of(*session),
                member: member.to_string(),
            })),
            Event::MemberLeft { session, member } => Some(Kind::MemberLeft(d::MemberLeft {
                session_id: self.key_of(*session),
                member: member.to_string(),
            })),
            Event::Removed { session } => Some(Kind::Removed(d::Removed {
                session_id: self.key_of(*session),
            })),
            Event::SessionClosed { session, reason } => {
                Some(Kind::SessionClosed(d::SessionClosed {
                    session_id: self.key_of(*session),
                    reason: reason.clone(),
                }))
            }
            Event::Error { session, message } => Some(Kind::Note(match session {
                Some(s) => format!("session {}: {message}", self.key_of(*s)),
                None => message.clone(),
            })),
        };
        self.raw.push(e);
        kind
    }

    /// The driver id of a wire session (created for sessions first seen in a later event).
    fn key_of(&mut self, wire: SessionId) -> String {
        self.session_key(wire, false, false)
    }
}

fn session_type(group: bool) -> d::SessionType {
    if group {
        d::SessionType::Group
    } else {
        d::SessionType::PointToPoint
    }
}

/// The reason a reliable send failed: the message and the peer that never acknowledged it
/// (SLIM-REL-006).
fn send_failure(message_id: u32, peer: &SlimName) -> String {
    format!("message {message_id}: retries exhausted, {peer} never acknowledged it")
}

/// What the pump and the calls of one app share.
struct AppShared {
    state: Mutex<AppState>,
    /// Woken after every recorded event.
    changed: Notify,
}

impl AppShared {
    fn lock(&self) -> MutexGuard<'_, AppState> {
        // A panic while holding the lock leaves plain data behind: keep going with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The length of the raw log now: where a call that is about to act starts to look.
    fn mark(&self) -> usize {
        self.lock().raw.len()
    }

    /// Waits until `find` returns something for the raw events from `from` on, until
    /// `deadline`. `what` names the wait in the DEADLINE_EXCEEDED message.
    async fn wait_for<T>(
        &self,
        from: usize,
        deadline: Instant,
        what: &str,
        mut find: impl FnMut(&[Event], &mut AppState) -> Option<std::result::Result<T, Status>>,
    ) -> std::result::Result<T, Status> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                let raw = std::mem::take(&mut st.raw);
                let found = find(raw.get(from..).unwrap_or_default(), &mut st);
                st.raw = raw;
                if let Some(r) = found {
                    return r;
                }
                if let Some(why) = &st.stopped {
                    return Err(failed(format!("the client has stopped: {why}")));
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(Status::deadline_exceeded(format!("no {what} in time")));
            }
        }
    }
}

/// One app: its client and the pump that reads its events.
struct App {
    client: Client,
    shared: Arc<AppShared>,
    pump: tokio::task::JoinHandle<()>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.pump.abort();
        // Ends the app's Events streams.
        self.shared.lock().streams.clear();
    }
}

async fn pump(shared: Arc<AppShared>, mut events: mpsc::UnboundedReceiver<ClientEvent>) {
    while let Some(ev) = events.recv().await {
        shared.lock().record(ev);
        shared.changed.notify_waiters();
    }
    let mut st = shared.lock();
    if st.stopped.is_none() {
        st.stopped = Some("the client task ended".into());
    }
    drop(st);
    shared.changed.notify_waiters();
}

// ----- the service ------------------------------------------------------------------------------

/// The shim's state: its apps by id.
#[derive(Default)]
struct Shim {
    apps: Mutex<HashMap<String, Arc<App>>>,
    next_app: AtomicU64,
}

impl Shim {
    fn apps(&self) -> MutexGuard<'_, HashMap<String, Arc<App>>> {
        self.apps.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn app(&self, id: &str) -> std::result::Result<Arc<App>, Status> {
        self.apps()
            .get(id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("no app `{id}`")))
    }

    /// The app and the session behind a driver session id.
    fn session(
        &self,
        app_id: &str,
        session_id: &str,
    ) -> std::result::Result<(Arc<App>, String, SessionEntry), Status> {
        let app = self.app(app_id)?;
        let entry = app
            .shared
            .lock()
            .sessions
            .get(session_id)
            .cloned()
            .ok_or_else(|| {
                Status::not_found(format!("app `{app_id}` has no session `{session_id}`"))
            })?;
        Ok((app, session_id.to_string(), entry))
    }

    /// Frees every app (their Events streams end).
    fn free_all(&self) {
        let apps: Vec<Arc<App>> = self.apps().drain().map(|(_, a)| a).collect();
        for a in &apps {
            a.shared.lock().streams.clear();
        }
    }
}

/// The [`Driver`] service over [`Shim`] (an `Arc`, so [`DriverServer`] can free the apps).
#[derive(Clone, Default)]
struct ShimService(Arc<Shim>);

/// The options a CreateSession asks for. A zero interval or retry count takes the default
/// (proto3 cannot tell 0 from absent).
fn session_options(req: &d::CreateSessionRequest) -> SessionOptions {
    SessionOptions {
        mls: req.mls,
        reliable: req.reliability.map(|r| {
            let def = Reliability::default();
            Reliability {
                interval: if r.interval_ms == 0 {
                    def.interval
                } else {
                    Duration::from_millis(u64::from(r.interval_ms))
                },
                max_retries: if r.max_retries == 0 {
                    def.max_retries
                } else {
                    r.max_retries
                },
            }
        }),
    }
}

#[tonic::async_trait]
impl Driver for ShimService {
    async fn get_capabilities(
        &self,
        _request: Request<d::GetCapabilitiesRequest>,
    ) -> Result<d::Capabilities> {
        Ok(Response::new(d::Capabilities {
            implementation: format!("slim-reference {}", env!("CARGO_PKG_VERSION")),
            driver_version: DRIVER_VERSION.into(),
            point_to_point: true,
            group: true,
            fire_and_forget: true,
            reliable: true,
            mls: true,
            // MLS_128_DHKEMP256_AES128GCM_SHA256_P256 (mls/group.rs).
            mls_ciphersuites: vec![2],
            shared_secret_identity: true,
            // jwt_hs256_secret only: a pre-issued `jwt` answers UNIMPLEMENTED.
            jwt_identity: true,
            state_auth: true,
            key_rotation: false,
            revocation: true,
            publish_outcome: true,
            leave: true,
        }))
    }

    async fn create_app(
        &self,
        request: Request<d::CreateAppRequest>,
    ) -> Result<d::CreateAppResponse> {
        let req = request.into_inner();
        let name = parse_name("app name", &req.name)?;
        if name.id() != NULL_ID {
            return Err(Status::invalid_argument(format!(
                "app name `{}` must be org/ns/app without id: the id derives from the identity",
                req.name
            )));
        }
        let credentials = match req.identity {
            Some(Identity::SharedSecret(s)) => Credentials::SharedSecret(s),
            // Mints its own HS256 JWTs, verifies peers' with the same secret (SLIM-IDENT-002).
            Some(Identity::JwtHs256Secret(s)) if s.is_empty() => {
                return Err(Status::invalid_argument("jwt_hs256_secret is empty"))
            }
            Some(Identity::JwtHs256Secret(s)) => Credentials::Jwt(JwtKey::hs256(s)),
            Some(Identity::Jwt(_)) => return Err(Status::unimplemented(NO_PRE_ISSUED_JWT)),
            None => return Err(Status::invalid_argument("no identity given")),
        };
        let seed = match req.seed.len() {
            0 => None,
            32 => {
                let mut s = [0u8; 32];
                s.copy_from_slice(&req.seed);
                Some(s)
            }
            n => {
                return Err(Status::invalid_argument(format!(
                    "seed must be 32 bytes, not {n}"
                )))
            }
        };
        let dl = deadline(req.timeout_ms);
        let opts = ClientOptions {
            tls: None,
            node: req.node_url,
            name,
            credentials,
            auth: None,
            timeout: dl.saturating_duration_since(Instant::now()),
            seed,
            mls_crypto: None,
        };
        let mut client = tokio::time::timeout_at(dl, Client::connect(opts))
            .await
            .map_err(|_| Status::deadline_exceeded("not connected in time"))?
            .map_err(client_status)?;
        let full_name = client.local_name().to_string();
        let subject = client.token_id().to_string();
        let shared = Arc::new(AppShared {
            state: Mutex::new(AppState::default()),
            changed: Notify::new(),
        });
        let pump = tokio::spawn(pump(shared.clone(), client.take_events()));
        let n = self.0.next_app.fetch_add(1, Ordering::Relaxed) + 1;
        let app_id = format!("app-{n}");
        self.0.apps().insert(
            app_id.clone(),
            Arc::new(App {
                client,
                shared,
                pump,
            }),
        );
        Ok(Response::new(d::CreateAppResponse {
            app_id,
            full_name,
            subject,
        }))
    }

    async fn subscribe(&self, request: Request<d::NameRequest>) -> Result<d::Empty> {
        let req = request.into_inner();
        let name = parse_name("name", &req.name)?;
        let app = self.0.app(&req.app_id)?;
        tokio::time::timeout_at(deadline(req.timeout_ms), app.client.subscribe(name))
            .await
            .map_err(|_| Status::deadline_exceeded("no SubscriptionAck in time"))?
            .map_err(client_status)?;
        Ok(Response::new(d::Empty {}))
    }

    /// A no-op that answers OK: the reference client reaches names through the node's
    /// subscription table (every name it serves is subscribed on its one link), never through
    /// routes it installs, so a route towards this app's connection adds nothing the node would
    /// use. The name is still validated.
    async fn set_route(&self, request: Request<d::NameRequest>) -> Result<d::Empty> {
        let req = request.into_inner();
        parse_name("name", &req.name)?;
        self.0.app(&req.app_id)?;
        Ok(Response::new(d::Empty {}))
    }

    async fn create_session(
        &self,
        request: Request<d::CreateSessionRequest>,
    ) -> Result<d::SessionResponse> {
        let req = request.into_inner();
        let dl = deadline(req.timeout_ms);
        let peer = parse_name("peer", &req.peer)?;
        let group = match d::SessionType::try_from(req.r#type) {
            Ok(d::SessionType::PointToPoint) => false,
            Ok(d::SessionType::Group) => true,
            _ => {
                return Err(Status::invalid_argument(format!(
                    "session type {} is neither point-to-point nor group",
                    req.r#type
                )))
            }
        };
        let app = self.0.app(&req.app_id)?;
        let opts = session_options(&req);
        let from = app.shared.mark();
        let wire = if group {
            app.client.create_group(peer, opts).await
        } else {
            app.client.open_p2p(peer, opts).await
        }
        .map_err(client_status)?;
        let key = app.shared.lock().session_key(wire, group, true);
        let peer = app
            .shared
            .wait_for(from, dl, "session established", |raw, _| {
                raw.iter().find_map(|e| match e {
                    Event::SessionOpened {
                        session,
                        peer,
                        initiator: true,
                        ..
                    } if *session == wire => Some(Ok(peer.to_string())),
                    Event::SessionClosed { session, reason } if *session == wire => {
                        Some(Err(failed(format!("session not established: {reason}"))))
                    }
                    _ => None,
                })
            })
            .await?;
        Ok(Response::new(d::SessionResponse {
            session_id: key,
            wire_session_id: wire,
            r#type: session_type(group) as i32,
            peer,
        }))
    }

    async fn await_session(
        &self,
        request: Request<d::AwaitSessionRequest>,
    ) -> Result<d::SessionResponse> {
        let req = request.into_inner();
        let app = self.0.app(&req.app_id)?;
        let key = app
            .shared
            .wait_for(0, deadline(req.timeout_ms), "incoming session", |_, st| {
                let key = st.incoming.get(st.claimed)?.clone();
                st.claimed += 1;
                Some(Ok(key))
            })
            .await?;
        let st = app.shared.lock();
        let entry = st
            .sessions
            .get(&key)
            .cloned()
            .ok_or_else(|| Status::internal(format!("session {key} not recorded")))?;
        let peer = st
            .raw
            .iter()
            .find_map(|e| match e {
                Event::SessionOpened { session, peer, .. } if *session == entry.wire => {
                    Some(peer.to_string())
                }
                _ => None,
            })
            .unwrap_or_default();
        Ok(Response::new(d::SessionResponse {
            session_id: key,
            wire_session_id: entry.wire,
            r#type: session_type(entry.group) as i32,
            peer,
        }))
    }

    async fn invite(&self, request: Request<d::MemberRequest>) -> Result<d::Empty> {
        let req = request.into_inner();
        let dl = deadline(req.timeout_ms);
        let name = parse_name("member", &req.name)?;
        let (app, _, entry) = self.0.session(&req.app_id, &req.session_id)?;
        let from = app.shared.mark();
        app.client
            .invite(entry.wire, name.clone())
            .await
            .map_err(client_status)?;
        wait_member(&app, from, dl, entry.wire, &name, true).await?;
        Ok(Response::new(d::Empty {}))
    }

    async fn remove(&self, request: Request<d::MemberRequest>) -> Result<d::Empty> {
        let req = request.into_inner();
        let dl = deadline(req.timeout_ms);
        let name = parse_name("member", &req.name)?;
        let (app, _, entry) = self.0.session(&req.app_id, &req.session_id)?;
        let from = app.shared.mark();
        app.client
            .remove(entry.wire, name.clone())
            .await
            .map_err(client_status)?;
        wait_member(&app, from, dl, entry.wire, &name, false).await?;
        Ok(Response::new(d::Empty {}))
    }

    /// A participant's close sends LEAVE_REQUEST to the moderator (WIRE.md §5.5) and ends when
    /// it is answered; the moderator of a group closes it instead (CloseSession).
    async fn leave(&self, request: Request<d::SessionRef>) -> Result<d::Empty> {
        let req = request.into_inner();
        let (_, _, entry) = self.0.session(&req.app_id, &req.session_id)?;
        if entry.moderator && entry.group {
            return Err(Status::failed_precondition(
                "the moderator of a group cannot leave it; CloseSession closes it for everyone",
            ));
        }
        self.close_and_wait(req).await
    }

    async fn close_session(&self, request: Request<d::SessionRef>) -> Result<d::Empty> {
        self.close_and_wait(request.into_inner()).await
    }

    async fn publish(&self, request: Request<d::PublishRequest>) -> Result<d::PublishResponse> {
        let req = request.into_inner();
        let dl = deadline(req.timeout_ms);
        let (app, _, entry) = self.0.session(&req.app_id, &req.session_id)?;
        let reliable = app
            .client
            .session_options(entry.wire)
            .await
            .map_err(client_status)?
            .reliable
            .is_some();
        let from = app.shared.mark();
        let ok = |reason: &str| d::PublishOutcome {
            status: OutcomeStatus::Ok as i32,
            reason: reason.into(),
        };
        let mut outcomes: Vec<Option<d::PublishOutcome>> = Vec::new();
        let mut ids = Vec::new();
        for (i, payload) in req.payloads.into_iter().enumerate() {
            match app.client.publish(entry.wire, payload).await {
                Ok(id) => {
                    ids.push(Some(id));
                    outcomes.push((!req.wait || !reliable).then(|| ok("handed over")));
                }
                Err(e) if i == 0 => return Err(client_status(e)),
                Err(e) => {
                    ids.push(None);
                    outcomes.push(Some(d::PublishOutcome {
                        status: OutcomeStatus::Failed as i32,
                        reason: format!("not sent: {e}"),
                    }));
                }
            }
        }
        if outcomes.iter().any(Option::is_none) {
            // Waits until every open outcome is known or the deadline passes.
            let _ = app
                .shared
                .wait_for(from, dl, "publish outcome", |raw, _| {
                    for (slot, id) in outcomes.iter_mut().zip(&ids) {
                        if slot.is_some() {
                            continue;
                        }
                        let Some(id) = id else { continue };
                        *slot = publish_outcome(raw, entry.wire, *id);
                    }
                    outcomes.iter().all(Option::is_some).then_some(Ok(()))
                })
                .await;
        }
        let outcomes = outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| d::PublishOutcome {
                    status: OutcomeStatus::Unknown as i32,
                    reason: "no outcome within timeout_ms".into(),
                })
            })
            .collect();
        Ok(Response::new(d::PublishResponse { outcomes }))
    }

    type EventsStream =
        Pin<Box<dyn tokio_stream::Stream<Item = std::result::Result<d::Event, Status>> + Send>>;

    async fn events(&self, request: Request<d::AppRef>) -> Result<Self::EventsStream> {
        let req = request.into_inner();
        let app = self.0.app(&req.app_id)?;
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut st = app.shared.lock();
            for ev in &st.history {
                // The receiver is right here: it cannot have gone.
                let _ = tx.send(Ok(ev.clone()));
            }
            st.streams.push(tx);
        }
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }

    async fn state_auth(&self, request: Request<d::SessionRef>) -> Result<d::StateAuthResponse> {
        let req = request.into_inner();
        let (app, _, entry) = self.0.session(&req.app_id, &req.session_id)?;
        let sa = app
            .client
            .state_auth(entry.wire)
            .await
            .map_err(client_status)?;
        let mut members: Vec<String> = sa.members.iter().map(ToString::to_string).collect();
        members.sort();
        Ok(Response::new(d::StateAuthResponse {
            epoch: sa.epoch,
            epoch_authenticator: sa.epoch_authenticator.into(),
            members,
        }))
    }

    async fn members(&self, request: Request<d::SessionRef>) -> Result<d::MembersResponse> {
        let req = request.into_inner();
        let (app, _, entry) = self.0.session(&req.app_id, &req.session_id)?;
        let mut members: Vec<String> = app
            .client
            .members(entry.wire)
            .await
            .map_err(client_status)?
            .iter()
            .map(ToString::to_string)
            .collect();
        members.sort();
        Ok(Response::new(d::MembersResponse { members }))
    }

    async fn rotate_keys(&self, _request: Request<d::SessionRef>) -> Result<d::Empty> {
        Err(Status::unimplemented(
            "key rotation (MLS update commit) not implemented in the reference session layer",
        ))
    }

    /// SLIM-REV-007/008: the app refuses the identity from now on and, as moderator, removes
    /// it from its groups; answered once applied (the removals are then under way: the runner
    /// watches MemberLeft and StateAuth for them).
    async fn revoke_identity(&self, request: Request<d::RevokeRequest>) -> Result<d::Empty> {
        use d::revoke_request::Target;
        let req = request.into_inner();
        let app = self.0.app(&req.app_id)?;
        let entry = match req.target {
            Some(Target::TokenId(v)) if !v.is_empty() => Reason::Jti(v),
            Some(Target::Subject(v)) if !v.is_empty() => Reason::Sub(v),
            Some(Target::KeyId(v)) if !v.is_empty() => Reason::Kid(v),
            Some(_) => return Err(Status::invalid_argument("the revoked value is empty")),
            None => {
                return Err(Status::invalid_argument(
                    "no target: give token_id, subject or key_id",
                ))
            }
        };
        app.client.revoke(entry).await.map_err(client_status)?;
        Ok(Response::new(d::Empty {}))
    }

    async fn free(&self, request: Request<d::AppRef>) -> Result<d::Empty> {
        let req = request.into_inner();
        let app = self
            .0
            .apps()
            .remove(&req.app_id)
            .ok_or_else(|| Status::not_found(format!("no app `{}`", req.app_id)))?;
        // Calls still running hold the app until they end; its streams end now.
        app.shared.lock().streams.clear();
        Ok(Response::new(d::Empty {}))
    }
}

impl ShimService {
    /// Closes a session and waits for its end (SessionClosed, or Removed).
    async fn close_and_wait(&self, req: d::SessionRef) -> Result<d::Empty> {
        let dl = deadline(req.timeout_ms);
        let (app, _, entry) = self.0.session(&req.app_id, &req.session_id)?;
        let from = app.shared.mark();
        app.client.close(entry.wire).await.map_err(client_status)?;
        app.shared
            .wait_for(from, dl, "end of the session", |raw, _| {
                raw.iter()
                    .any(|e| {
                        matches!(e, Event::SessionClosed { session, .. } | Event::Removed { session }
                            if *session == entry.wire)
                    })
                    .then_some(Ok(()))
            })
            .await?;
        Ok(Response::new(d::Empty {}))
    }
}

/// The outcome of message `id` of session `wire` in `raw`, if known: acknowledged by every
/// receiver, or retries exhausted (the reason names the silent peers, SLIM-REL-006).
fn publish_outcome(raw: &[Event], wire: SessionId, id: u32) -> Option<d::PublishOutcome> {
    let mut silent = Vec::new();
    for e in raw {
        match e {
            Event::Delivered {
                session,
                message_id,
            } if *session == wire && *message_id == id => {
                return Some(d::PublishOutcome {
                    status: OutcomeStatus::Ok as i32,
                    reason: "acknowledged by every receiver".into(),
                })
            }
            Event::SendFailed {
                session,
                message_id,
                peer,
            } if *session == wire && *message_id == id => silent.push(send_failure(id, peer)),
            _ => {}
        }
    }
    (!silent.is_empty()).then(|| d::PublishOutcome {
        status: OutcomeStatus::Failed as i32,
        reason: silent.join("; "),
    })
}

/// Waits for `name` to join (`joined`) or leave session `wire`; a deadline names the session's
/// last error, if any.
async fn wait_member(
    app: &App,
    from: usize,
    dl: Instant,
    wire: SessionId,
    name: &SlimName,
    joined: bool,
) -> std::result::Result<(), Status> {
    let what = if joined { "MemberJoined" } else { "MemberLeft" };
    let [org, ns, svc] = name.components();
    let bare = format!("{org}/{ns}/{svc}");
    let r = app
        .shared
        .wait_for(from, dl, what, |raw, _| {
            raw.iter().find_map(|e| match e {
                Event::MemberJoined { session, member }
                    if joined && *session == wire && denotes(name, member) =>
                {
                    Some(Ok(()))
                }
                Event::MemberLeft { session, member }
                    if !joined && *session == wire && denotes(name, member) =>
                {
                    Some(Ok(()))
                }
                // The moderator gave up on the invitee (moderator/failed.rs words these), or
                // refused its key package (moderator/mod.rs: "refused <name>: <which check>").
                Event::Error {
                    session: Some(s),
                    message,
                } if joined
                    && *s == wire
                    && message.contains(&bare)
                    && (message.contains("did not")
                        || message.starts_with("no SLIM app")
                        || message.starts_with("refused ")) =>
                {
                    Some(Err(failed(message)))
                }
                _ => None,
            })
        })
        .await;
    r.map_err(|status| {
        if status.code() != tonic::Code::DeadlineExceeded {
            return status;
        }
        let st = app.shared.lock();
        let last = st
            .raw
            .get(from..)
            .unwrap_or_default()
            .iter()
            .rev()
            .find_map(|e| match e {
                Event::Error {
                    session: Some(s),
                    message,
                } if *s == wire => Some(message.clone()),
                _ => None,
            });
        match last {
            Some(m) => {
                Status::deadline_exceeded(format!("no {what} for {name} in time; last error: {m}"))
            }
            None => status,
        }
    })
}

// ----- the server -------------------------------------------------------------------------------

/// The driver shim served on a TCP address: what the conformance runner embeds in-process (and
/// `slim-client driver` runs). Stops on [`DriverServer::shutdown`] or when dropped.
pub struct DriverServer {
    addr: SocketAddr,
    shim: Arc<Shim>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl DriverServer {
    /// Binds `addr` (port 0 picks one) and serves the shim in a spawned task.
    pub async fn start(addr: SocketAddr) -> std::io::Result<DriverServer> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let service = ShimService::default();
        let shim = service.0.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(DriverService::new(service))
                // Without TCP_NODELAY each small reply and event waits ~40 ms (Nagle's algorithm
                // meeting the runner's delayed ACK), which every timed step would measure.
                .serve_with_incoming_shutdown(
                    TcpListenerStream::new(listener).map(|conn| {
                        if let Ok(c) = &conn {
                            let _ = c.set_nodelay(true);
                        }
                        conn
                    }),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "driver server ended");
            }
        });
        Ok(DriverServer {
            addr,
            shim,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The address it listens on (with the port picked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Frees every app (ending their Events streams), stops accepting calls and waits (at most
    /// a few seconds) for the calls in flight.
    pub async fn shutdown(mut self) {
        self.shim.free_all();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for DriverServer {
    fn drop(&mut self) {
        self.shim.free_all();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// `slim-client driver`: serves the shim on `addr`, prints `driver listening on ADDR` (one line
/// on stdout, for a launcher to read the port), and serves until SIGINT or SIGTERM.
pub async fn serve_until_signal(addr: SocketAddr) -> std::io::Result<()> {
    let server = DriverServer::start(addr).await?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "driver listening on {}", server.local_addr())?;
        out.flush()?;
    }
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    server.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_timeout_is_the_default() {
        let now = Instant::now();
        let d = deadline(0);
        assert!(d >= now + DEFAULT_TIMEOUT && d <= Instant::now() + DEFAULT_TIMEOUT);
    }

    #[test]
    fn bad_names_are_invalid_arguments() {
        let e = parse_name("peer", "org/app").expect_err("two parts");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("org/app"), "{}", e.message());
    }

    #[test]
    fn a_name_without_id_denotes_any_instance() {
        let any: SlimName = "a/b/c".parse().expect("name");
        let one = any.clone().with_id(7);
        assert!(denotes(&any, &one));
        assert!(denotes(&one, &one));
        assert!(!denotes(&one, &any.clone().with_id(8)));
    }

    #[test]
    fn send_failed_is_an_outcome_and_names_the_peer() {
        let peer: SlimName = "a/b/c/9".parse().expect("name");
        let raw = vec![Event::SendFailed {
            session: 1,
            message_id: 4,
            peer,
        }];
        let o = publish_outcome(&raw, 1, 4).expect("outcome");
        assert_eq!(o.status, OutcomeStatus::Failed as i32);
        assert!(o.reason.contains("message 4") && o.reason.contains("a/b/c"));
        assert!(publish_outcome(&raw, 1, 5).is_none());
    }
}
