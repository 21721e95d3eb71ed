//! The tokio half of the client link: [`connect`] dials the node (h2c, `TCP_NODELAY`), opens
//! `DataPlaneService/OpenChannel` with an optional `authorization` header, negotiates within a
//! bound, then moves messages between the stream, the [`ClientLink`] and the caller's channels.
//!
//! When the stream ends it reconnects with jittered exponential backoff, negotiates a fresh
//! link, and re-subscribes every active name (the node forgets a connection's subscriptions when
//! it ends, SLIM-SUB-*), then reports [`LinkEvent::Reconnected`]. Credential refusals
//! (`UNAUTHENTICATED`, `PERMISSION_DENIED`) are fatal: retrying cannot fix them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use slim_proto::names::SlimName;
use slim_proto::pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};
use tracing::{debug, info, warn};

use super::state::{ClientLink, ClientLinkError, Inbound};

/// HTTP credentials for a node that requires them (sent as the `authorization` header).
#[derive(Clone, PartialEq, Eq)]
pub enum HttpAuth {
    /// `Basic base64(username:password)`.
    Basic {
        /// The user-id.
        username: String,
        /// The password.
        password: String,
    },
    /// `Bearer <token>`.
    Bearer(String),
}

impl std::fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret.
        match self {
            HttpAuth::Basic { username, .. } => write!(f, "Basic({username}:<redacted>)"),
            HttpAuth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

impl HttpAuth {
    /// The `authorization` header value.
    pub fn header_value(&self) -> String {
        use base64::Engine as _;
        match self {
            HttpAuth::Basic { username, password } => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            ),
            HttpAuth::Bearer(token) => format!("Bearer {token}"),
        }
    }
}

/// How the driver connects and reconnects.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    /// The node's URL, `http://host:port` (h2c) or `https://host:port` (TLS with `tls`).
    pub node: String,
    /// TLS settings for an `https://` node (`None`: Mozilla's roots, no client certificate).
    pub tls: Option<slim_proto::tls::ClientTls>,
    /// Credentials for nodes that require them.
    pub auth: Option<HttpAuth>,
    /// Bound for the first connection (retried until then), and for each connect-and-negotiate
    /// attempt afterwards.
    pub timeout: Duration,
    /// First reconnect delay (doubled after each failure, jittered).
    pub backoff_initial: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// RNG seed for link ids, keys, subscription ids and jitter.
    pub seed: [u8; 32],
    /// `node_id` announced in negotiation requests.
    pub node_id: String,
}

impl LinkOptions {
    /// Options with the defaults: 100 ms backoff doubling to 5 s, a random `node-<uuid>` id.
    pub fn new(node: impl Into<String>, timeout: Duration, seed: [u8; 32]) -> Self {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        let uuid = uuid::Builder::from_random_bytes(id).into_uuid();
        Self {
            node: node.into(),
            tls: None,
            auth: None,
            timeout,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            seed,
            node_id: format!("node-{uuid}"),
        }
    }
}

/// How to fix an UNAUTHENTICATED refusal, from the node's message: a revoked or expired token
/// needs a new token, anything else the node's credentials.
fn unauthenticated_fix(message: &str) -> &'static str {
    if message.contains("revoked") {
        "the credential was revoked at the node; ask its issuer for a new one"
    } else if message.contains("expired") {
        "the token expired; pass a fresh one with --bearer TOKEN"
    } else {
        "pass the node's credentials with --auth-basic USER:PASS or --bearer TOKEN"
    }
}

/// Why the link could not be (re)established. [`LinkIoError::is_fatal`] says whether retrying
/// can help.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkIoError {
    /// The URL is not usable.
    #[error(
        "bad node URL {url:?}: {reason}; give it as http://host:port, e.g. http://127.0.0.1:46357"
    )]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// TLS could not be set up: a certificate or key file is unusable, or the handshake failed
    /// in a way retrying cannot fix (an untrusted or misnamed certificate, a refused client
    /// certificate, a plaintext port). The reason says which and what to change.
    #[error("cannot connect to {url}: {reason}")]
    Tls {
        /// The URL given.
        url: String,
        /// What failed and how to fix it.
        reason: String,
    },
    /// The node could not be reached (connection refused, no route, timeout).
    #[error("cannot reach the SLIM node at {url}: {reason}; is it running? start one with `cargo run --release --bin slim-relay`")]
    Unreachable {
        /// The URL.
        url: String,
        /// The transport's reason, e.g. "connection refused".
        reason: String,
    },
    /// The node refused our credentials (HTTP 401).
    #[error(
        "the SLIM node at {url} refused the connection: UNAUTHENTICATED ({message}); {}",
        unauthenticated_fix(message)
    )]
    Unauthenticated {
        /// The URL.
        url: String,
        /// The node's status message.
        message: String,
    },
    /// The node refused us by policy (HTTP 403).
    #[error("the SLIM node at {url} refused the connection: PERMISSION_DENIED ({message}); these credentials are not allowed to connect")]
    PermissionDenied {
        /// The URL.
        url: String,
        /// The node's status message.
        message: String,
    },
    /// The node ended the call with another status.
    #[error("the SLIM node at {url} ended the channel: {code:?} ({message})")]
    Status {
        /// The URL.
        url: String,
        /// The gRPC code.
        code: Code,
        /// The status message.
        message: String,
    },
    /// The credentials cannot be sent as a header.
    #[error("the credentials cannot be sent in an HTTP header: {0}; use visible ASCII only")]
    BadCredentials(String),
    /// No negotiation reply in time.
    #[error("the SLIM node at {url} did not answer the link negotiation within {waited:?}; is it a SLIM node (DataPlaneService)?")]
    NegotiationTimeout {
        /// The URL.
        url: String,
        /// How long we waited.
        waited: Duration,
    },
    /// The node closed the stream instead of replying to our negotiation.
    #[error("the SLIM node at {url} closed the channel without answering the link negotiation; check that it speaks SLIM {}", slim_proto::SLIM_VERSION)]
    NegotiationRefused {
        /// The URL.
        url: String,
    },
    /// The reply was not acceptable.
    #[error("link negotiation with {url} failed: {source}")]
    Negotiation {
        /// The URL.
        url: String,
        /// What was wrong.
        source: ClientLinkError,
    },
    /// The link task has stopped.
    #[error("the link to the SLIM node has stopped")]
    Stopped,
}

impl LinkIoError {
    /// Whether retrying cannot help (bad URL or credentials, refused by policy). Other errors are
    /// retried by the reconnect loop.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            LinkIoError::BadUrl { .. }
                | LinkIoError::Tls { .. }
                | LinkIoError::Unauthenticated { .. }
                | LinkIoError::PermissionDenied { .. }
                | LinkIoError::BadCredentials(_)
                | LinkIoError::Stopped
        )
    }
}

/// What the caller asks the link task to do.
// Publish is the common variant; boxing it would cost an allocation per sent message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum LinkCommand {
    /// Subscribe `name` (acked asynchronously: see [`LinkEvent::Subscribed`]).
    Subscribe(SlimName),
    /// Remove a subscription.
    Unsubscribe(SlimName),
    /// Sign and send a Publish. While reconnecting, a bounded number are kept and sent after
    /// the link is back; beyond that they are dropped (reliable sessions retransmit).
    Publish(pb::Message),
}

/// What the link task reports.
// Publish is the common variant; boxing it would cost an allocation per received message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum LinkEvent {
    /// An inbound Publish, its MAC verified.
    Publish(pb::Message),
    /// The node acknowledged a subscription (also after each reconnect).
    Subscribed(SlimName),
    /// The node acknowledged an unsubscription.
    Unsubscribed(SlimName),
    /// The stream ended; the task is reconnecting.
    Disconnected {
        /// Why the stream ended.
        reason: String,
    },
    /// The link is back: re-negotiated and every active subscription re-issued.
    Reconnected {
        /// The node's URL.
        node: String,
    },
    /// A non-fatal protocol problem (bad MAC, refused or unacknowledged subscription).
    Problem(ClientLinkError),
    /// The link gave up (credentials refused); the task has ended.
    Fatal(LinkIoError),
}

/// Counters of a running link, readable from any task.
#[derive(Debug, Default)]
pub struct SharedLinkStats {
    /// Inbound messages dropped for a bad header MAC.
    pub bad_mac_dropped: AtomicU64,
    /// Successful reconnects.
    pub reconnects: AtomicU64,
    /// Publishes dropped because the link was down and the buffer full.
    pub dropped_while_down: AtomicU64,
}

/// The caller's handle on a running link task. Dropping it stops the task.
#[derive(Debug)]
pub struct ClientLinkHandle {
    commands: mpsc::Sender<LinkCommand>,
    stats: Arc<SharedLinkStats>,
    peer_node_id: String,
    task: tokio::task::JoinHandle<()>,
}

impl ClientLinkHandle {
    /// Queues a command; fails with [`LinkIoError::Stopped`] when the task has ended.
    pub async fn send(&self, cmd: LinkCommand) -> Result<(), LinkIoError> {
        self.commands
            .send(cmd)
            .await
            .map_err(|_| LinkIoError::Stopped)
    }

    /// The link's counters.
    pub fn stats(&self) -> &SharedLinkStats {
        &self.stats
    }

    /// The node's `node_id` from the first negotiation.
    pub fn peer_node_id(&self) -> &str {
        &self.peer_node_id
    }
}

impl Drop for ClientLinkHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Publishes kept while reconnecting.
const DOWN_BUFFER: usize = 1024;

/// The open stream of one link.
struct Conn {
    tx: mpsc::Sender<pb::Message>,
    rx: Streaming<pb::Message>,
}

/// Connects to the node (retrying until `opts.timeout` while it is unreachable), negotiates,
/// and starts the link task. Returns its handle and the stream of [`LinkEvent`]s.
pub async fn connect(
    opts: LinkOptions,
) -> Result<(ClientLinkHandle, mpsc::UnboundedReceiver<LinkEvent>), LinkIoError> {
    check_url(&opts.node)?;
    let mut state = ClientLink::new(opts.seed, opts.node_id.clone());
    let mut jitter = ChaCha20Rng::from_seed(opts.seed);
    jitter.set_stream(1);
    let deadline = tokio::time::Instant::now() + opts.timeout;
    let mut delay = opts.backoff_initial;
    let (conn, _) = loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let attempt = tokio::time::timeout(left, open(&opts, &mut state, left)).await;
        match attempt {
            Ok(Ok(ok)) => break ok,
            Ok(Err(e)) if e.is_fatal() => return Err(e),
            // Out of time: the last attempt's error says what is wrong.
            Ok(Err(e)) if tokio::time::Instant::now() >= deadline => return Err(e),
            Ok(Err(e)) => debug!(error = %e, "node not reachable yet, retrying"),
            Err(_) => {
                return Err(LinkIoError::Unreachable {
                    url: opts.node.clone(),
                    reason: format!("no answer within {:?}", opts.timeout),
                })
            }
        }
        // The last attempt is made at the deadline, so "unreachable" means "for the whole bound".
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        tokio::time::sleep(jittered(&mut jitter, delay).min(left)).await;
        delay = (delay * 2).min(opts.backoff_max);
    };
    let peer_node_id = state.peer_node_id().unwrap_or_default().to_string();
    info!(node = %opts.node, peer_node_id = %peer_node_id, "link established");
    let (cmd_tx, cmd_rx) = mpsc::channel(256);
    // Events are unbounded and commands bounded: the link task never waits on its consumer, so
    // the two tasks cannot block each other in a cycle; backpressure goes to the sender side.
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let stats = Arc::new(SharedLinkStats::default());
    let task = tokio::spawn(
        Driver {
            opts,
            state,
            jitter,
            commands: cmd_rx,
            events: ev_tx,
            stats: stats.clone(),
            down_buffer: VecDeque::new(),
        }
        .run(conn),
    );
    Ok((
        ClientLinkHandle {
            commands: cmd_tx,
            stats,
            peer_node_id,
            task,
        },
        ev_rx,
    ))
}

#[allow(clippy::result_large_err)] // see ClientLink (state.rs)
fn check_url(url: &str) -> Result<(), LinkIoError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| LinkIoError::BadUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => {
            return Err(LinkIoError::BadUrl {
                url: url.to_string(),
                reason: format!("scheme {other}:// is not supported"),
            })
        }
        None => {
            return Err(LinkIoError::BadUrl {
                url: url.to_string(),
                reason: "no scheme".into(),
            })
        }
    }
    if uri.host().is_none() {
        return Err(LinkIoError::BadUrl {
            url: url.to_string(),
            reason: "no host".into(),
        });
    }
    Ok(())
}

fn jittered(rng: &mut ChaCha20Rng, d: Duration) -> Duration {
    // Uniform in [d/2, d): reconnecting clients do not stampede a restarted node together.
    let half = d / 2;
    let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1);
    half + Duration::from_nanos(rng.next_u64() % nanos)
}

/// The innermost transport reason of a tonic error, in words ("connection refused").
/// The explanation of a failed TLS handshake in `err`'s chain, if that is what failed.
fn handshake_failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    slim_proto::tls::handshake_explanation(err)
}

fn transport_reason(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut last = err.to_string();
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
                std::io::ErrorKind::TimedOut => "connection timed out".into(),
                _ => io.to_string(),
            };
        }
        last = e.to_string();
        cur = e.source();
    }
    last
}

fn status_error(url: &str, status: &Status) -> LinkIoError {
    let url = url.to_string();
    let message = status.message().to_string();
    // A node that refused our client certificate (TLS 1.3 tells us on the first read).
    if let Some(reason) = handshake_failure(status) {
        return LinkIoError::Tls { url, reason };
    }
    match status.code() {
        Code::Unauthenticated => LinkIoError::Unauthenticated { url, message },
        Code::PermissionDenied => LinkIoError::PermissionDenied { url, message },
        // A call that never reached the node (the connection broke while opening the channel).
        Code::Unavailable | Code::Unknown if std::error::Error::source(status).is_some() => {
            LinkIoError::Unreachable {
                reason: std::error::Error::source(status).map_or(message, transport_reason),
                url,
            }
        }
        code => LinkIoError::Status { url, code, message },
    }
}

#[allow(clippy::result_large_err)] // see ClientLink (state.rs)
/// One connect-and-negotiate attempt, each step bounded by `bound`. Returns the open stream and
/// the re-subscriptions to send.
async fn open(
    opts: &LinkOptions,
    state: &mut ClientLink,
    bound: Duration,
) -> Result<(Conn, Vec<pb::Message>), LinkIoError> {
    let url = &opts.node;
    let endpoint = tonic::transport::Endpoint::from_shared(url.clone())
        .map_err(|e| LinkIoError::BadUrl {
            url: url.clone(),
            reason: transport_reason(&e),
        })?
        .tcp_nodelay(true)
        .connect_timeout(bound)
        .http2_keep_alive_interval(Duration::from_secs(120))
        .keep_alive_timeout(Duration::from_secs(20));
    let connector = if url.starts_with("https:") {
        let settings = opts.tls.clone().unwrap_or_default();
        settings.connector().map_err(|e| LinkIoError::Tls {
            url: url.clone(),
            reason: e.to_string(),
        })?
    } else {
        slim_proto::tls::Connector::plain()
    };
    let channel = endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| match handshake_failure(&e) {
            Some(reason) => LinkIoError::Tls {
                url: url.clone(),
                reason,
            },
            None => LinkIoError::Unreachable {
                url: url.clone(),
                reason: transport_reason(&e),
            },
        })?;
    let mut client = pb::data_plane_service_client::DataPlaneServiceClient::new(channel)
        .max_decoding_message_size(slim_proto::MAX_MESSAGE_SIZE);
    let (tx, rx) = mpsc::channel(256);
    tx.send(state.start())
        .await
        .map_err(|_| LinkIoError::Stopped)?;
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(auth) = &opts.auth {
        let value = auth
            .header_value()
            .parse()
            .map_err(|_| LinkIoError::BadCredentials("not a valid header value".into()))?;
        request.metadata_mut().insert("authorization", value);
    }
    let response = client
        .open_channel(request)
        .await
        .map_err(|s| status_error(url, &s))?;
    let mut rx = response.into_inner();
    let reply = match tokio::time::timeout(bound, rx.message()).await {
        Err(_) => {
            return Err(LinkIoError::NegotiationTimeout {
                url: url.clone(),
                waited: bound,
            })
        }
        Ok(Ok(Some(m))) => m,
        Ok(Ok(None)) => return Err(LinkIoError::NegotiationRefused { url: url.clone() }),
        Ok(Err(s)) => return Err(status_error(url, &s)),
    };
    let resubscribe = state
        .handle_reply(&reply, Instant::now())
        .map_err(|source| LinkIoError::Negotiation {
            url: url.clone(),
            source,
        })?;
    for m in &resubscribe {
        tx.send(m.clone()).await.map_err(|_| LinkIoError::Stopped)?;
    }
    Ok((Conn { tx, rx }, resubscribe))
}

/// Why the pump stopped.
enum Ended {
    /// The caller dropped its handle.
    Shutdown,
    /// The stream ended; reconnect.
    Lost(String),
    /// Give up.
    Fatal(LinkIoError),
}

struct Driver {
    opts: LinkOptions,
    state: ClientLink,
    jitter: ChaCha20Rng,
    commands: mpsc::Receiver<LinkCommand>,
    events: mpsc::UnboundedSender<LinkEvent>,
    stats: Arc<SharedLinkStats>,
    down_buffer: VecDeque<pb::Message>,
}

impl Driver {
    async fn run(mut self, mut conn: Conn) {
        loop {
            let reason = match self.pump(&mut conn).await {
                Ended::Shutdown => return,
                Ended::Fatal(e) => {
                    let _ = self.events.send(LinkEvent::Fatal(e));
                    return;
                }
                Ended::Lost(reason) => reason,
            };
            warn!(node = %self.opts.node, %reason, "link lost, reconnecting");
            self.state.connection_lost();
            if self
                .events
                .send(LinkEvent::Disconnected { reason })
                .is_err()
            {
                return;
            }
            conn = match self.reconnect().await {
                Some(c) => c,
                None => return,
            };
        }
    }

    /// Reconnects with jittered exponential backoff, handling commands while waiting. `None`
    /// when the caller went away or a fatal error was reported.
    async fn reconnect(&mut self) -> Option<Conn> {
        let mut delay = self.opts.backoff_initial;
        loop {
            let wait = tokio::time::sleep(jittered(&mut self.jitter, delay));
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    cmd = self.commands.recv() => match cmd {
                        None => return None,
                        Some(cmd) => self.while_down(cmd),
                    },
                }
            }
            let bound = self.opts.timeout;
            match open(&self.opts, &mut self.state, bound).await {
                Ok((conn, _)) => {
                    self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    info!(node = %self.opts.node, "link re-established; subscriptions re-issued");
                    for m in std::mem::take(&mut self.down_buffer) {
                        match self.state.seal(m) {
                            Ok(m) => {
                                if conn.tx.send(m).await.is_err() {
                                    break;
                                }
                            }
                            Err(e) => debug!(error = %e, "buffered publish not sent"),
                        }
                    }
                    let node = self.opts.node.clone();
                    if self.events.send(LinkEvent::Reconnected { node }).is_err() {
                        return None;
                    }
                    return Some(conn);
                }
                Err(e) if e.is_fatal() => {
                    let _ = self.events.send(LinkEvent::Fatal(e));
                    return None;
                }
                Err(e) => {
                    debug!(error = %e, ?delay, "reconnect attempt failed");
                    delay = (delay * 2).min(self.opts.backoff_max);
                }
            }
        }
    }

    fn while_down(&mut self, cmd: LinkCommand) {
        let now = Instant::now();
        match cmd {
            // Not established: these only update the book; nothing to send.
            LinkCommand::Subscribe(name) => drop(self.state.subscribe(name, now)),
            LinkCommand::Unsubscribe(name) => drop(self.state.unsubscribe(&name, now)),
            LinkCommand::Publish(m) => {
                if self.down_buffer.len() < DOWN_BUFFER {
                    self.down_buffer.push_back(m);
                } else {
                    self.stats
                        .dropped_while_down
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    async fn pump(&mut self, conn: &mut Conn) -> Ended {
        loop {
            let wake = self.state.poll_timeout();
            let sleep = async {
                match wake {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            let mut to_send = Vec::new();
            tokio::select! {
                item = conn.rx.message() => match item {
                    Ok(Some(msg)) => {
                        let ev = match self.state.handle_inbound(msg, Instant::now()) {
                            Ok(Inbound::Publish(m)) => Some(LinkEvent::Publish(m)),
                            Ok(Inbound::Subscribed { name, .. }) => Some(LinkEvent::Subscribed(name)),
                            Ok(Inbound::Unsubscribed { name, .. }) => Some(LinkEvent::Unsubscribed(name)),
                            Ok(Inbound::Ignored(why)) => {
                                debug!(why, "inbound message ignored");
                                None
                            }
                            Err(e) => {
                                if matches!(e, ClientLinkError::BadMac { .. }) {
                                    self.stats.bad_mac_dropped.fetch_add(1, Ordering::Relaxed);
                                }
                                warn!(error = %e, "inbound problem");
                                Some(LinkEvent::Problem(e))
                            }
                        };
                        if let Some(ev) = ev {
                            if self.events.send(ev).is_err() {
                                return Ended::Shutdown;
                            }
                        }
                    }
                    Ok(None) => return Ended::Lost("the node closed the stream".into()),
                    Err(status) => {
                        let e = status_error(&self.opts.node, &status);
                        if e.is_fatal() {
                            return Ended::Fatal(e);
                        }
                        return Ended::Lost(format!("{:?}: {}", status.code(), status.message()));
                    }
                },
                cmd = self.commands.recv() => {
                    let now = Instant::now();
                    match cmd {
                        None => return Ended::Shutdown,
                        Some(LinkCommand::Subscribe(name)) => to_send.extend(self.state.subscribe(name, now)),
                        Some(LinkCommand::Unsubscribe(name)) => to_send.extend(self.state.unsubscribe(&name, now)),
                        Some(LinkCommand::Publish(m)) => match self.state.seal(m) {
                            Ok(m) => to_send.push(m),
                            Err(e) => {
                                warn!(error = %e, "publish not sent");
                                let _ = self.events.send(LinkEvent::Problem(e));
                            }
                        },
                    }
                }
                _ = sleep => {
                    let out = self.state.handle_timeout(Instant::now());
                    to_send.extend(out.resend);
                    for e in out.failed {
                        warn!(error = %e, "request not acknowledged");
                        if self.events.send(LinkEvent::Problem(e)).is_err() {
                            return Ended::Shutdown;
                        }
                    }
                }
            }
            for m in to_send {
                if conn.tx.send(m).await.is_err() {
                    return Ended::Lost("the request stream closed".into());
                }
            }
        }
    }
}
