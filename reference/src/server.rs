//! The tokio/tonic shell around the relay core.
//!
//! It only moves bytes and time: each `OpenChannel` stream gets a connection index from the core,
//! a task that feeds the core every inbound frame as the bytes received
//! ([`Relay::handle_frame`]: the core routes a Publish from its bytes and decodes everything
//! else), and a bounded outbound queue that the core's [`Output`]s are pushed into: frames are
//! written as they are, messages encoded with prost (`RelayCodec`). One timer task calls the
//! core's `handle_timeout` when `poll_timeout` says so.
//!
//! Backpressure (SLIM-TRANS-006): each connection's outbound queue holds `queue_capacity`
//! messages. When a receiver's queue is full, the message is dropped **for that receiver only**
//! (counted in [`ShellStats::dropped_queue_full`] and logged), so a slow consumer can neither grow
//! the relay's memory nor stall the publisher or other subscribers. Reliable SLIM sessions
//! recover such losses end to end by retransmission.
//!
//! Transport errors (SLIM-TRANS-003..005, SLIM-VAL-005): a frame larger than 4 MiB ends that stream
//! with `RESOURCE_EXHAUSTED` (here, from tonic's length check), undecodable bytes with
//! `INVALID_ARGUMENT` (from the core); in both cases the connection's subscriptions are removed
//! and other connections are unaffected.
//!
//! Authentication (SLIM-AUTH-001..003): when [`ServerConfig::auth`] is set, `open_channel` checks
//! the `authorization` header with [`crate::auth::check`] before anything else. A refused call ends at
//! call setup with `UNAUTHENTICATED`; it never reaches the relay core, so it gets no connection
//! index and no negotiation reply, and is logged once with its reason and peer address (counted
//! in [`ShellStats::refused_unauthenticated`]).
//!
//! JWT and revocation (SLIM-REV-001..006): with `auth: {jwt: …}` the header's token is verified
//! by the loaded [`Authenticator`] and checked against the revocation list in force, under the
//! same lock that opens the link, so a call is never admitted with a credential the relay has
//! already revoked. The link's [`Principal`] and expiry go to the core
//! ([`Relay::open_authenticated`]), whose timer ends it at `exp`. A watcher task polls the
//! revocation file every [`REVOCATION_POLL`] (mtime, length and a hash of the content); a list
//! that parses replaces the one in force and [`Relay::apply_revocations`] ends the revoked links
//! at once; one that does not is logged once (file and defect) and the old list stays in force.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes};
use prost::Message as _;

use rand_core::{OsRng, RngCore};
use slim_proto::frame::EgressFrame;
use slim_proto::pb;
use slim_proto::service::OpenChannelServer;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::BoxFuture;
use tonic::server::StreamingService;
use tonic::service::Routes;
use tonic::{Code, Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use crate::auth::{Authenticator, LoadError, Principal};
use crate::config::{FrameHook, ServerConfig};
use crate::listener::{self, ConnInfo, ListenerStats, StreamGuard};
use crate::mutants::{self, Fault};
use crate::relay::{CloseCode, CloseReason, ConnId, Output, Relay, Stats, TableSizes};
use crate::revocation::{FileStamp, RevocationError, RevocationList, Watcher};

/// Counters kept by the shell (what the core cannot see).
#[derive(Debug, Default)]
pub struct ShellStats {
    /// Messages dropped because the receiver's queue was full.
    pub dropped_queue_full: AtomicU64,
    /// `OpenChannel` calls refused for missing or wrong credentials.
    pub refused_unauthenticated: AtomicU64,
    /// Revocation lists loaded (the one at start included).
    pub revocation_loads: AtomicU64,
    /// Revocation files that could not be read or parsed (the old list stayed in force).
    pub revocation_errors: AtomicU64,
    /// Open links ended because their credential was revoked.
    pub revoked_links: AtomicU64,
    /// Panics caught while handling a link (each closed that link with `INTERNAL`).
    pub panics: AtomicU64,
}

/// How often the revocation file is checked for changes.
pub const REVOCATION_POLL: Duration = crate::revocation::POLL_PERIOD;

/// The shell's end of one connection: its outbound queue and the signal that ends its stream.
struct Connection {
    tx: mpsc::Sender<Result<Outbound, Status>>,
    close: Option<oneshot::Sender<Status>>,
}

struct State {
    relay: Relay,
    links: HashMap<ConnId, Connection>,
    /// The revocation list in force (SLIM-REV-003/006).
    revoked: RevocationList,
}

struct Shared {
    state: Mutex<State>,
    timer: Notify,
    queue_capacity: usize,
    auth: Option<Authenticator>,
    revocation_file: Option<PathBuf>,
    /// The file as it was just before the list in force at start was read: a change made
    /// while the relay was starting is noticed by the first poll.
    initial_revocation_stamp: Option<FileStamp>,
    last_revocation_error: Mutex<Option<String>>,
    shell_stats: ShellStats,
    listener_stats: Arc<ListenerStats>,
    /// Test hook: called with every inbound frame under the state lock, before the core.
    frame_hook: Option<FrameHook>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a relay bug; keep serving the other links.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    /// Carries out the core's outputs, leaving `outputs` empty (the caller reuses it, so the hot
    /// path allocates no output list per message). Never blocks: sends are `try_send`.
    ///
    /// A message for a full queue is dropped for that receiver (SLIM-TRANS-006), except one
    /// addressed back to `ingress`, the link whose message is being handled: replies to a link's
    /// own requests (SubscriptionAcks) are returned instead, and the caller waits for room before
    /// reading that link again, so a client that floods requests slows only itself. Each
    /// returned item comes with the queue it is for.
    fn dispatch(
        &mut self,
        outputs: &mut Vec<Output>,
        shell_stats: &ShellStats,
        ingress: Option<ConnId>,
    ) -> Vec<(OutboundQueue, Outbound)> {
        let mut deferred = Vec::new();
        for output in outputs.drain(..) {
            let (conn, item) = match output {
                Output::Send { conn, message } => (conn, Outbound::Message(Box::new(message))),
                Output::SendFrame { conn, frame } => (conn, Outbound::Frame(frame)),
                Output::Close { conn, reason } => {
                    if let Some(close) = self.links.get_mut(&conn).and_then(|l| l.close.take()) {
                        let _ = close.send(status(&reason));
                    }
                    continue;
                }
            };
            let Some(link) = self.links.get(&conn) else {
                continue;
            };
            match link.tx.try_send(Ok(item)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(Ok(item)))
                    if Some(conn) == ingress && !mutants::on(Fault::AcksDroppedWhenQueueFull) =>
                {
                    deferred.push((link.tx.clone(), item));
                }
                Err(mpsc::error::TrySendError::Full(Ok(item)))
                    if mutants::on(Fault::SlowConsumerBlocksSender) =>
                {
                    deferred.push((link.tx.clone(), item)); // the sender waits for the receiver
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    let n = shell_stats
                        .dropped_queue_full
                        .fetch_add(1, Ordering::Relaxed);
                    if n.is_power_of_two() || n == 0 {
                        warn!(conn, dropped_total = n + 1, "receiver queue full, message dropped for this receiver (slow consumer)");
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        deferred
    }
}

/// The sending half of a connection's outbound queue.
type OutboundQueue = mpsc::Sender<Result<Outbound, Status>>;

/// What a connection's outbound queue carries: a message the core built (acks, negotiation
/// replies, Publishes routed on the decoded path), or a Publish frame of the frame path.
#[derive(Debug)]
enum Outbound {
    // Boxed: a `pb::Message` is ~750 bytes and this variant is the rare one, so every queued
    // frame does not carry that size.
    Message(Box<pb::Message>),
    Frame(EgressFrame),
}

/// The gRPC codec of `OpenChannel`: inbound frames as the bytes received (the core decides how
/// to read them, see [`Relay::handle_frame`]); outbound items encoded with prost or written as
/// the frame they already are.
#[derive(Debug, Default, Clone, Copy)]
struct RelayCodec;

impl Encoder for RelayCodec {
    type Item = Outbound;
    type Error = Status;
    fn encode(&mut self, item: Outbound, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        match item {
            Outbound::Message(m) => m
                .encode(dst)
                .map_err(|e| Status::internal(format!("encoding a message: {e}"))),
            Outbound::Frame(f) => {
                f.write_to(dst);
                Ok(())
            }
        }
    }
}

impl Decoder for RelayCodec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        // A slice of tonic's receive buffer, not a copy.
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl Codec for RelayCodec {
    type Encode = Outbound;
    type Decode = Bytes;
    type Encoder = RelayCodec;
    type Decoder = RelayCodec;
    fn encoder(&mut self) -> RelayCodec {
        RelayCodec
    }
    fn decoder(&mut self) -> RelayCodec {
        RelayCodec
    }
}

fn status(reason: &CloseReason) -> Status {
    if let Some(ok) =
        mutants::peer_refusal_status(reason.code == CloseCode::Unimplemented, &reason.message)
    {
        return ok;
    }
    let code = match reason.code {
        CloseCode::InvalidArgument => Code::InvalidArgument,
        CloseCode::DeadlineExceeded => Code::DeadlineExceeded,
        CloseCode::ResourceExhausted => Code::ResourceExhausted,
        CloseCode::Unimplemented => Code::Unimplemented,
        CloseCode::Unavailable => Code::Unavailable,
        CloseCode::Unauthenticated => Code::Unauthenticated,
    };
    Status::new(code, reason.message.clone())
}

/// Maps a stream read error to the status we end the stream with, or `None` when the peer went
/// away (reset, broken connection) and there is nobody to tell.
fn read_error_status(err: &Status) -> Option<Status> {
    let msg = err.message();
    if msg.contains("message length too large") || err.code() == Code::OutOfRange {
        Some(Status::resource_exhausted(format!(
            "message exceeds the {} byte limit ({msg}); split large payloads",
            slim_proto::MAX_MESSAGE_SIZE
        )))
    } else if msg.contains("decode") || err.code() == Code::Internal {
        Some(Status::invalid_argument(format!(
            "could not decode a dataplane.proto.v1.Message: {msg}"
        )))
    } else {
        None
    }
}

/// The `OpenChannel` handler: one stream per link.
#[derive(Clone)]
struct RelayService {
    shared: Arc<Shared>,
}

type OutStream = ReceiverStream<Result<Outbound, Status>>;

impl StreamingService<Bytes> for RelayService {
    type Response = Outbound;
    type ResponseStream = OutStream;
    type Future = BoxFuture<Response<OutStream>, Status>;

    fn call(&mut self, request: Request<Streaming<Bytes>>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move { open_channel(shared, request) })
    }
}

/// Accepts one `OpenChannel` call: checks its credentials, gives it a connection index and starts
/// the task that reads it.
fn open_channel(
    shared: Arc<Shared>,
    request: Request<Streaming<Bytes>>,
) -> Result<Response<OutStream>, Status> {
    let info = request.extensions().get::<ConnInfo>().cloned();
    let peer = info.as_ref().and_then(|i| i.peer);
    // A connection over a limit, or a plaintext client on a TLS port: say so on every call.
    if let Some(refusal) = info.as_ref().and_then(|i| i.refusal) {
        return Err(refusal.status());
    }
    let guard = info.as_ref().map(ConnInfo::stream_opened);
    // SLIM-AUTH-001/002: credentials are checked at call setup, before the core sees the
    // stream. A refusal consumes no connection index and sends no negotiation reply.
    // SLIM-AUTH-003: with valid credentials we fall through to the usual path.
    // SLIM-REV-001/003: a JWT is verified, then checked against the list in force, under the
    // lock that opens the link, so no revocation can slip between the check and the open.
    let header = request
        .metadata()
        .get("authorization")
        .map(|v| v.as_bytes().to_vec());
    let inbound = request.into_inner();
    let (tx, rx) = mpsc::channel(shared.queue_capacity);
    let (close_tx, close_rx) = oneshot::channel();
    let who: Option<String>;
    let conn = {
        let mut state = shared.lock();
        let principal = match &shared.auth {
            None => None,
            Some(auth) => match auth.authenticate(header.as_deref(), unix_now(), &state.revoked) {
                Ok(principal) => principal,
                Err(why) => {
                    drop(state);
                    shared
                        .shell_stats
                        .refused_unauthenticated
                        .fetch_add(1, Ordering::Relaxed);
                    warn!(?peer, reason = %why, "OpenChannel refused: UNAUTHENTICATED");
                    return Err(Status::unauthenticated(why.to_string()));
                }
            },
        };
        let now = Instant::now();
        who = principal.as_ref().map(describe);
        let conn = match principal {
            Some(p) => {
                let expires_at = instant_of_unix(p.exp, now);
                state.relay.open_authenticated(now, p, expires_at)
            }
            None => state.relay.open(now),
        };
        state.links.insert(
            conn,
            Connection {
                tx: tx.clone(),
                close: Some(close_tx),
            },
        );
        conn
    };
    shared.timer.notify_one();
    info!(
        conn,
        ?peer,
        principal = who.as_deref().unwrap_or("-"),
        "connection opened"
    );
    tokio::spawn(connection_task(shared, conn, inbound, tx, close_rx, guard));
    Ok(Response::new(ReceiverStream::new(rx)))
}

/// Runs one link: its reader in a task of its own, then the cleanup, which runs however the
/// reader ended. A panic while handling the link (a relay bug on odd input) is contained here:
/// the link is closed with `INTERNAL`, its routes are removed as on any close, the panic is
/// logged and counted, and every other link goes on (the real node's failure mode, a panicked
/// task whose routes stay behind, cannot happen).
async fn connection_task(
    shared: Arc<Shared>,
    conn: ConnId,
    inbound: Streaming<Bytes>,
    tx: mpsc::Sender<Result<Outbound, Status>>,
    close_rx: oneshot::Receiver<Status>,
    guard: Option<StreamGuard>,
) {
    let reader = tokio::spawn(read_link(shared.clone(), conn, inbound, close_rx));
    // The link's routes go before its client learns the stream ended (SLIM-SUB-008): a client
    // that reacts to the status at once finds them gone.
    let (why, last_word) = match reader.await {
        Ok(ended) => ended,
        Err(e) if e.is_panic() => {
            let panic = e.into_panic();
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            shared.shell_stats.panics.fetch_add(1, Ordering::Relaxed);
            tracing::error!(conn, panic = %what, "panic while handling a link: closing it with INTERNAL and removing its routes");
            (
                format!("panic: {what}"),
                Some(Status::internal(
                    "internal error in the node while handling this link; the link was closed and its subscriptions removed (the node logged the cause)",
                )),
            )
        }
        Err(_) => ("reader cancelled".into(), None),
    };
    {
        let mut state = shared.lock();
        let keep_routes = (mutants::on(Fault::RoutesKeptOnCleanClose)
            && why == "peer closed the stream")
            || (mutants::on(Fault::RoutesKeptOnErrorClose) && why.starts_with("read error"));
        if !keep_routes {
            state.relay.close(conn);
        }
        state.links.remove(&conn);
    }
    if let Some(status) = last_word {
        send_final(&tx, status).await;
    }
    drop(guard);
    info!(conn, reason = %why, "connection closed");
}

/// Reads one stream until it ends or the core closes it; returns why it ended and the status to
/// end the stream with (sent by the caller once the link's routes are gone), if any.
async fn read_link(
    shared: Arc<Shared>,
    conn: ConnId,
    mut inbound: Streaming<Bytes>,
    mut close_rx: oneshot::Receiver<Status>,
) -> (String, Option<Status>) {
    let mut out = Vec::new();
    loop {
        tokio::select! {
            biased;
            closed = &mut close_rx => {
                let Ok(status) = closed else { return ("closed".into(), None) };
                let why = format!("{:?}: {}", status.code(), status.message());
                return (why, Some(status));
            }
            item = inbound.message() => match item {
                Ok(Some(frame)) => {
                    let deferred = {
                        let mut state = shared.lock();
                        if let Some(hook) = &shared.frame_hook {
                            (hook.0)(&frame);
                        }
                        state.relay.handle_frame(conn, frame, Instant::now(), &mut out);
                        state.dispatch(&mut out, &shared.shell_stats, Some(conn))
                    };
                    // Backpressure on this link only: stop reading it until its replies fit.
                    for (queue, reply) in deferred {
                        tokio::select! {
                            biased;
                            closed = &mut close_rx => {
                                return match closed {
                                    Ok(status) => {
                                        let why = format!("{:?}: {}", status.code(), status.message());
                                        (why, Some(status))
                                    }
                                    Err(_) => ("closed".to_string(), None),
                                };
                            }
                            sent = queue.send(Ok(reply)) => if sent.is_err() {
                                return ("peer stopped receiving".to_string(), None);
                            },
                        }
                    }
                }
                Ok(None) => return ("peer closed the stream".into(), None),
                Err(err) => return (format!("read error: {err}"), read_error_status(&err)),
            }
        }
    }
}

/// Ends a stream with `status`, waiting a bounded time for queue space.
async fn send_final(tx: &mpsc::Sender<Result<Outbound, Status>>, status: Status) {
    if tokio::time::timeout(Duration::from_secs(1), tx.send(Err(status)))
        .await
        .is_err()
    {
        debug!("could not deliver the closing status: receiver queue stayed full");
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The instant, on the monotonic clock, at which the wall clock reads `unix` seconds.
fn instant_of_unix(unix: u64, now: Instant) -> Instant {
    let at = UNIX_EPOCH + Duration::from_secs(unix);
    match at.duration_since(SystemTime::now()) {
        Ok(ahead) => now + ahead,
        Err(_) => now,
    }
}

/// The link a `principal` identifies, for logs: the claims, never the token.
fn describe(p: &Principal) -> String {
    format!("sub={:?} jti={:?} kid={:?}", p.sub, p.jti, p.kid)
}

/// Polls the revocation file every [`REVOCATION_POLL`]; applies a list that parses
/// (SLIM-REV-004), logs one line for one that does not and keeps the old list (SLIM-REV-006).
async fn revocation_task(shared: Arc<Shared>, path: PathBuf) {
    let stamp = shared
        .initial_revocation_stamp
        .unwrap_or_else(|| FileStamp::of(&path));
    let mut watcher = Watcher::new(path.clone(), stamp);
    let mut interval = tokio::time::interval(REVOCATION_POLL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(loaded) = watcher.poll() else {
            continue;
        };
        match loaded {
            Ok(list) => {
                let mut out = Vec::new();
                let mut state = shared.lock();
                let ended = state.relay.apply_revocations(&list, &mut out);
                state.revoked = list;
                let entries = state.revoked.len();
                state.dispatch(&mut out, &shared.shell_stats, None);
                drop(state);
                shared.timer.notify_one();
                shared
                    .shell_stats
                    .revocation_loads
                    .fetch_add(1, Ordering::Relaxed);
                shared
                    .shell_stats
                    .revoked_links
                    .fetch_add(ended as u64, Ordering::Relaxed);
                *shared
                    .last_revocation_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = None;
                info!(file = %path.display(), entries, links_ended = ended, "revocation list loaded");
            }
            Err(e) => {
                if mutants::on(Fault::MalformedListClearsRevocations) {
                    shared.lock().revoked = RevocationList::empty();
                }
                shared
                    .shell_stats
                    .revocation_errors
                    .fetch_add(1, Ordering::Relaxed);
                warn!(file = %e.path, defect = %e.defect, "revocation list not loaded; the list in force stays in force");
                *shared
                    .last_revocation_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            }
        }
    }
}

/// Wakes the core when a negotiation deadline passes.
async fn timer_task(shared: Arc<Shared>) {
    loop {
        let next = shared.lock().relay.poll_timeout();
        match next {
            Some(deadline) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline.into()) => {
                        let mut out = Vec::new();
                        let mut state = shared.lock();
                        state.relay.handle_timeout(Instant::now(), &mut out);
                        state.dispatch(&mut out, &shared.shell_stats, None);
                    }
                    _ = shared.timer.notified() => {}
                }
            }
            None => shared.timer.notified().await,
        }
    }
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source} (is another SLIM node already using the port? pick another with --listen)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("gRPC server error: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// A JWT key file could not be loaded.
    #[error("auth.jwt: {0}")]
    AuthKeys(#[from] LoadError),
    /// The revocation list given at start could not be loaded (the relay fails closed).
    #[error("{0}")]
    Revocation(#[from] RevocationError),
    /// The TLS certificate, key or client CA could not be used.
    #[error("tls: {0}")]
    Tls(#[from] slim_proto::tls::TlsError),
}

/// A running relay: its address, its counters, and a way to stop it.
pub struct RelayHandle {
    addr: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), ServeError>>>,
}

impl RelayHandle {
    /// The address the relay listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr`, or `https://addr` with TLS, as clients take it.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Panics caught while handling a link (each closed only that link).
    pub fn panics(&self) -> u64 {
        self.shared.shell_stats.panics.load(Ordering::Relaxed)
    }

    /// The listener's counters: connections accepted, refused for a limit, closed when idle, …
    pub fn listener_stats(&self) -> &ListenerStats {
        &self.shared.listener_stats
    }

    /// The core's counters.
    pub fn stats(&self) -> Stats {
        self.shared.lock().relay.stats().clone()
    }

    /// Messages dropped because a receiver's queue was full.
    pub fn dropped_queue_full(&self) -> u64 {
        self.shared
            .shell_stats
            .dropped_queue_full
            .load(Ordering::Relaxed)
    }

    /// `OpenChannel` calls refused for missing or wrong credentials.
    pub fn refused_unauthenticated(&self) -> u64 {
        self.shared
            .shell_stats
            .refused_unauthenticated
            .load(Ordering::Relaxed)
    }

    /// Revocation lists loaded, the one at start included.
    pub fn revocation_loads(&self) -> u64 {
        self.shared
            .shell_stats
            .revocation_loads
            .load(Ordering::Relaxed)
    }

    /// Revocation files that could not be loaded (each logged; the old list stayed in force).
    pub fn revocation_errors(&self) -> u64 {
        self.shared
            .shell_stats
            .revocation_errors
            .load(Ordering::Relaxed)
    }

    /// The last revocation file error (file and defect), cleared by a successful load.
    pub fn last_revocation_error(&self) -> Option<String> {
        self.shared
            .last_revocation_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Open links ended because their credential was revoked.
    pub fn revoked_links(&self) -> u64 {
        self.shared
            .shell_stats
            .revoked_links
            .load(Ordering::Relaxed)
    }

    /// The sizes of the core's tables and of the shell's link map (the last as `links` when it
    /// is larger), for leak checks: all zero once every client has gone.
    pub fn table_sizes(&self) -> TableSizes {
        let state = self.shared.lock();
        let mut sizes = state.relay.table_sizes();
        sizes.links = sizes.links.max(state.links.len());
        sizes
    }

    /// Number of open connections.
    pub fn connections(&self) -> usize {
        self.shared.lock().relay.connections()
    }

    /// Stops the relay: closes the listener, then ends every link with `UNAVAILABLE`, then
    /// waits (a bounded time) for the server.
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        // Dropping the handle (for instance when a test fails) stops the server too.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Binds `config.listen` and serves in the background until the handle is shut down or dropped.
pub async fn spawn(config: ServerConfig) -> Result<RelayHandle, ServeError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.listen,
        source,
    })?;
    let shared = new_shared(&config)?;
    let tls = tls_acceptor(&config)?;
    let tls_on = tls.is_some();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, tls, config.limits, shared.clone(), async {
        let _ = stop_rx.await;
    }));
    Ok(RelayHandle {
        addr,
        tls: tls_on,
        shared,
        stop: Some(stop_tx),
        task: Some(task),
    })
}

/// Binds `config.listen` and serves until `shutdown` resolves.
pub async fn run(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.listen,
        source,
    })?;
    let shared = new_shared(&config)?;
    let tls = tls_acceptor(&config)?;
    let auth = config.auth.as_ref().map_or("none", |a| a.kind());
    let transport = match &config.tls {
        None => "h2c",
        Some(t) if t.client_ca.is_some() => "mtls",
        Some(_) => "tls",
    };
    info!(%addr, transport, require_header_mac = config.relay.require_header_mac, node_id = %config.relay.node_id, auth = %auth, "slim-relay listening");
    serve(listener, tls, config.limits, shared, shutdown).await
}

/// The TLS acceptor of `config.tls`, loaded now so a bad file stops the start. ALPN `h2` and,
/// with a client CA, required client certificates (SLIM-CONN-001).
fn tls_acceptor(config: &ServerConfig) -> Result<Option<tokio_rustls::TlsAcceptor>, ServeError> {
    let Some(tls) = &config.tls else {
        return Ok(None);
    };
    let mut server = if mutants::on(Fault::ClientCaIgnored) {
        slim_proto::tls::ServerTls {
            client_ca: None,
            ..tls.clone()
        }
        .server_config()?
    } else {
        tls.server_config()?
    };
    if mutants::on(Fault::TlsWithoutAlpn) {
        server.alpn_protocols.clear();
    }
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(server))))
}

/// Loads the JWT keys and the first revocation list, and builds the shell's state.
fn new_shared(config: &ServerConfig) -> Result<Arc<Shared>, ServeError> {
    let auth = config.auth.as_ref().map(Authenticator::load).transpose()?;
    let shell_stats = ShellStats::default();
    let initial_revocation_stamp = config.revocation_file.as_deref().map(FileStamp::of);
    let revoked = match &config.revocation_file {
        Some(path) => {
            let list = crate::revocation::load(path)?;
            shell_stats.revocation_loads.fetch_add(1, Ordering::Relaxed);
            info!(file = %path.display(), entries = list.len(), "revocation list loaded");
            list
        }
        None => RevocationList::empty(),
    };
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    Ok(Arc::new(Shared {
        state: Mutex::new(State {
            relay: Relay::new(config.relay.clone(), seed),
            links: HashMap::new(),
            revoked,
        }),
        timer: Notify::new(),
        queue_capacity: config.queue_capacity,
        auth,
        revocation_file: config.revocation_file.clone(),
        initial_revocation_stamp,
        last_revocation_error: Mutex::new(None),
        shell_stats,
        listener_stats: Arc::new(ListenerStats::default()),
        frame_hook: config.frame_hook.clone(),
    }))
}

/// How long the server waits, after every link was ended, for its connections to close.
const DRAIN_BOUND: Duration = Duration::from_secs(5);

/// Serves until `shutdown` resolves, then stops in the order clients need (SLIM-TRANS-007/008):
/// 1. the listener closes, so a client that reconnects at once is refused by the kernel (the
///    real SDK retries on "connection refused" and gives up on a reset);
/// 2. every link ends with `UNAVAILABLE`;
/// 3. tonic drains the connections, for at most [`DRAIN_BOUND`].
async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: listener::Limits,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let timer = tokio::spawn(timer_task(shared.clone()));
    let watcher = shared
        .revocation_file
        .clone()
        .map(|path| tokio::spawn(revocation_task(shared.clone(), path)));
    let handler = RelayService {
        shared: shared.clone(),
    };
    let routes = if mutants::on(Fault::SizeLimitOneOverAccepted) {
        let limit = slim_proto::MAX_MESSAGE_SIZE + 1;
        Routes::new(mutants::OpenChannelWithLimit::new(
            handler, RelayCodec, limit,
        ))
    } else {
        Routes::new(OpenChannelServer::new(handler, RelayCodec))
    };
    let (mut acceptor, incoming) =
        listener::spawn(listener, tls, limits, shared.listener_stats.clone());
    let closing = shared.clone();
    let (stopping_tx, stopping_rx) = oneshot::channel::<()>();
    let stop: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
        shutdown.await;
        acceptor.stop().await;
        info!("shutting down: listener closed, ending every link with UNAVAILABLE");
        {
            let mut out = Vec::new();
            let mut state = closing.lock();
            state.relay.shutdown(&mut out);
            state.dispatch(&mut out, &closing.shell_stats, None);
        }
        acceptor.release();
        let _ = stopping_tx.send(());
    });
    // HTTP/2 keepalive as the real node: PING every 120 s, drop a peer that does not answer in 20 s.
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(120)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .max_concurrent_streams(
            (!mutants::on(Fault::StreamLimitNotAnnounced))
                .then_some(limits.max_streams_per_connection),
        )
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, stop);
    let bounded_drain = async {
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(DRAIN_BOUND).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let result = tokio::select! {
        r = server => r.map_err(ServeError::from),
        _ = bounded_drain => {
            warn!(bound = ?DRAIN_BOUND, "connections still open after every link ended; stopping anyway");
            Ok(())
        }
    };
    timer.abort();
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    result
}
