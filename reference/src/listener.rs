//! Accepting connections: TLS, connection limits and HTTP/2 connections that hold no stream.
//!
//! The relay does not hand its TCP listener to tonic. An accept task takes each connection,
//! counts it against [`Limits`] (in total and per peer address), runs the TLS handshake when the
//! relay has TLS (bounded by the handshake timeout, one task per connection so a slow client
//! delays nobody), and passes the result to tonic as an [`Accepted`] stream, whose
//! [`ConnInfo`] tells the `OpenChannel` handler what happened:
//!
//! - a connection over a limit is still served, for [`REFUSED_GRACE`], so that its first call
//!   gets `RESOURCE_EXHAUSTED` naming the limit instead of an unexplained reset;
//! - a plaintext HTTP/2 client on a TLS port is served in plaintext the same way and told
//!   `FAILED_PRECONDITION`: this port requires TLS;
//! - a TLS ClientHello on a plaintext port, or bytes that are neither, are logged and dropped.
//!
//! An HTTP/2 connection with no `OpenChannel` stream open for `idle_timeout` is closed: the
//! [`Accepted`] stream reports end-of-file to hyper, which drops the connection. Streams are
//! counted by [`StreamGuard`]s that the handler holds for as long as a link lives.
//!
//! Shutdown (see [`Acceptor::stop`]): the listener is closed first, so a client that reconnects
//! at once is refused by the kernel instead of landing on the exiting process; only then does
//! the server end its links.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use slim_proto::tls::{explain_server_handshake, MaybeTls};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::Connected;
use tonic::{Code, Status};
use tracing::{debug, info, warn};

use crate::mutants::{self, Fault};

/// How long a connection refused for a limit (or a plaintext client on a TLS port) is served so
/// that its first call can be told why, before it is closed.
pub const REFUSED_GRACE: Duration = Duration::from_secs(2);

/// The limits the listener enforces (the rest are the relay's: queue depth, subscriptions,
/// message size, negotiation time). Each has a `relay.yaml` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections held at once, all peers together (`max_connections`).
    pub max_connections: usize,
    /// Connections held at once from one IP address (`max_connections_per_peer`).
    pub max_connections_per_peer: usize,
    /// How long an HTTP/2 connection may hold no `OpenChannel` stream before it is closed
    /// (`idle_connection_timeout_ms`).
    pub idle_timeout: Duration,
    /// Concurrent HTTP/2 streams per connection, announced in SETTINGS
    /// (`max_streams_per_connection`).
    pub max_streams_per_connection: u32,
    /// Time for a new connection's first bytes and TLS handshake (the negotiation timeout).
    pub handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_peer: 1_000,
            idle_timeout: Duration::from_secs(30),
            max_streams_per_connection: 100,
            handshake_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a connection's calls are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` were open.
    TooManyConnections {
        /// The limit.
        limit: usize,
    },
    /// `max_connections_per_peer` were open from this address.
    TooManyFromPeer {
        /// The limit.
        limit: usize,
        /// The address.
        ip: IpAddr,
    },
    /// A plaintext HTTP/2 client on a TLS port.
    PlaintextOnTlsPort,
}

impl Refusal {
    /// The status every call on such a connection ends with.
    pub fn status(&self) -> Status {
        match self {
            Refusal::TooManyConnections { limit } => Status::new(
                Code::ResourceExhausted,
                format!("connection limit reached: this node holds its maximum of {limit} connections (max_connections); retry later"),
            ),
            Refusal::TooManyFromPeer { limit, ip } => Status::new(
                Code::ResourceExhausted,
                format!("per-address connection limit reached: {ip} already holds {limit} connections to this node (max_connections_per_peer); close some, or share one connection between links"),
            ),
            Refusal::PlaintextOnTlsPort => Status::new(
                Code::FailedPrecondition,
                "this port requires TLS: connect with https:// (and the node's CA, e.g. --ca FILE)",
            ),
        }
    }
}

/// What the `OpenChannel` handler learns about the connection a call came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The peer's address.
    pub peer: Option<SocketAddr>,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// Set when every call on this connection must be refused.
    pub refusal: Option<Refusal>,
    activity: Arc<Activity>,
}

impl ConnInfo {
    /// Counts a stream as open until the guard is dropped (idle connections are those with none).
    pub fn stream_opened(&self) -> StreamGuard {
        self.activity.streams.fetch_add(1, Ordering::AcqRel);
        StreamGuard(self.activity.clone())
    }
}

#[derive(Debug)]
struct Activity {
    streams: AtomicUsize,
    /// When the last stream closed (or the connection was accepted).
    idle_since: Mutex<Instant>,
}

/// Holds one `OpenChannel` stream open in the eyes of the idle timer.
#[derive(Debug)]
pub struct StreamGuard(Arc<Activity>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if self.0.streams.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.0.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        }
    }
}

/// Counters kept by the listener.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections accepted and handed to the server (refused ones included).
    pub accepted: AtomicU64,
    /// Connections refused for `max_connections`.
    pub refused_total_limit: AtomicU64,
    /// Connections refused for `max_connections_per_peer`.
    pub refused_peer_limit: AtomicU64,
    /// TLS handshakes that failed or timed out, and connections dropped for their first bytes.
    pub handshake_failures: AtomicU64,
    /// Plaintext HTTP/2 clients on a TLS port.
    pub plaintext_on_tls: AtomicU64,
    /// Connections closed for holding no stream for the idle timeout.
    pub idle_closed: AtomicU64,
    /// Connections open now (counted against the limits).
    pub open: AtomicUsize,
}

/// Open connections, in total and per address.
#[derive(Debug, Default)]
struct Slots {
    per_peer: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in the counts, given back on drop.
#[derive(Debug)]
struct Slot {
    ip: IpAddr,
    slots: Arc<Slots>,
    stats: Arc<ListenerStats>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::AcqRel);
        let mut per_peer = self
            .slots
            .per_peer
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per_peer.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_peer.remove(&self.ip);
            }
        }
    }
}

impl Slots {
    fn take(
        self: &Arc<Self>,
        ip: IpAddr,
        limits: &Limits,
        stats: &Arc<ListenerStats>,
    ) -> Result<Slot, Refusal> {
        // SLIM-CONN-003: bounded in total and per address.
        let mut per_peer = self.per_peer.lock().unwrap_or_else(|p| p.into_inner());
        if stats.open.load(Ordering::Acquire) >= limits.max_connections {
            return Err(Refusal::TooManyConnections {
                limit: limits.max_connections,
            });
        }
        let n = per_peer.entry(ip).or_insert(0);
        if *n >= limits.max_connections_per_peer && !mutants::on(Fault::PeerLimitNotEnforced) {
            return Err(Refusal::TooManyFromPeer {
                limit: limits.max_connections_per_peer,
                ip,
            });
        }
        *n += 1;
        stats.open.fetch_add(1, Ordering::AcqRel);
        Ok(Slot {
            ip,
            slots: self.clone(),
            stats: stats.clone(),
        })
    }
}

/// An accepted connection as tonic serves it: the byte stream, plus the idle and refusal timers.
pub struct Accepted {
    io: MaybeTls,
    info: ConnInfo,
    idle_timeout: Duration,
    /// Refused connections are closed at this instant whatever they do.
    hard_deadline: Option<Instant>,
    timer: Pin<Box<Sleep>>,
    ended: bool,
    stats: Arc<ListenerStats>,
    _slot: Option<Slot>,
}

impl Accepted {
    /// Whether the connection must end now; otherwise re-arms the timer for the next check
    /// (SLIM-CONN-004: no stream for the idle timeout ends it; an open stream never does).
    fn must_end(&mut self) -> bool {
        let now = Instant::now();
        if let Some(deadline) = self.hard_deadline {
            if now >= deadline {
                return true;
            }
        }
        let busy = self.info.activity.streams.load(Ordering::Acquire) > 0
            && !mutants::on(Fault::BusyConnectionsClosedWhenIdle);
        let next_idle = if mutants::on(Fault::IdleConnectionsKept) {
            now + Duration::from_secs(3600)
        } else if busy {
            now + self.idle_timeout
        } else {
            let since = *self
                .info
                .activity
                .idle_since
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if now >= since + self.idle_timeout {
                self.stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                debug!(peer = ?self.info.peer, "closing an HTTP/2 connection that held no stream for the idle timeout");
                return true;
            }
            since + self.idle_timeout
        };
        let next = self.hard_deadline.map_or(next_idle, |d| d.min(next_idle));
        self.timer.as_mut().reset(next);
        false
    }
}

impl AsyncRead for Accepted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(Ok(()));
        }
        // The timer registers this task's waker, so hyper's pending read wakes when it fires.
        while this.timer.as_mut().poll(cx).is_ready() {
            if this.must_end() {
                this.ended = true;
                return Poll::Ready(Ok(())); // end of file: hyper drops the connection
            }
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Accepted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl Connected for Accepted {
    type ConnectInfo = ConnInfo;
    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

/// What tonic reads accepted connections from.
pub type Incoming = tokio_stream::wrappers::ReceiverStream<io::Result<Accepted>>;

/// The accept task's handle: stops it (closing the listener) on shutdown.
pub struct Acceptor {
    stop: Option<oneshot::Sender<()>>,
    stopped: Option<oneshot::Receiver<()>>,
    /// Keeps the incoming stream open until [`Acceptor::release`], so that tonic does not end
    /// its accept loop (and stop polling its shutdown signal) when the listener closes first.
    keep_open: Option<mpsc::Sender<io::Result<Accepted>>>,
}

impl Acceptor {
    /// Closes the listener and waits until it is closed: from then on the kernel refuses new
    /// connections, so clients see "connection refused" and retry instead of a reset.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.await;
        }
    }

    /// Lets the incoming stream end (after the links were closed).
    pub fn release(&mut self) {
        self.keep_open = None;
    }
}

/// Starts accepting on `listener`.
pub fn spawn(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    stats: Arc<ListenerStats>,
) -> (Acceptor, Incoming) {
    let (tx, rx) = mpsc::channel(64);
    let (stop_tx, mut stop_rx) = oneshot::channel();
    let (stopped_tx, stopped_rx) = oneshot::channel();
    let slots = Arc::new(Slots::default());
    let keep_open = tx.clone();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                biased;
                _ = &mut stop_rx => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and the like: say so and give the system a moment.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if let Err(e) = tcp.set_nodelay(true) {
                debug!(error = %e, "could not set TCP_NODELAY on an accepted connection");
            }
            let (slot, refusal) = match slots.take(peer.ip(), &limits, &stats) {
                Ok(slot) => (Some(slot), None),
                Err(_) if mutants::on(Fault::OverLimitConnectionsReset) => {
                    drop(tcp);
                    continue;
                }
                Err(refusal) => {
                    let counter = match refusal {
                        Refusal::TooManyConnections { .. } => &stats.refused_total_limit,
                        _ => &stats.refused_peer_limit,
                    };
                    if counter.fetch_add(1, Ordering::Relaxed).is_power_of_two() {
                        warn!(%peer, reason = %refusal.status().message(), "connection over a limit: its calls are refused");
                    }
                    (None, Some(refusal))
                }
            };
            let tx = tx.clone();
            let tls = tls.clone();
            let stats = stats.clone();
            tokio::spawn(async move {
                let prepared =
                    tokio::time::timeout(limits.handshake_timeout, prepare(tcp, tls.as_ref()))
                        .await;
                let (io, plaintext_on_tls) = match prepared {
                    Ok(Ok(ready)) => ready,
                    Ok(Err(why)) => {
                        stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
                        warn!(%peer, reason = %why, "connection dropped before HTTP/2");
                        return;
                    }
                    Err(_) => {
                        stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
                        debug!(%peer, timeout = ?limits.handshake_timeout, "connection dropped: no TLS handshake or HTTP/2 preface in time");
                        return;
                    }
                };
                let refusal = if plaintext_on_tls {
                    stats.plaintext_on_tls.fetch_add(1, Ordering::Relaxed);
                    warn!(%peer, "plaintext HTTP/2 client on a TLS port: its calls are refused (it must use https://)");
                    Some(Refusal::PlaintextOnTlsPort)
                } else {
                    refusal
                };
                let now = Instant::now();
                let tls_on = matches!(io, MaybeTls::Tls(_));
                let accepted = Accepted {
                    io,
                    info: ConnInfo {
                        peer: Some(peer),
                        tls: tls_on,
                        refusal,
                        activity: Arc::new(Activity {
                            streams: AtomicUsize::new(0),
                            idle_since: Mutex::new(now),
                        }),
                    },
                    idle_timeout: limits.idle_timeout,
                    hard_deadline: refusal.map(|_| now + REFUSED_GRACE),
                    timer: Box::pin(tokio::time::sleep_until(now)),
                    ended: false,
                    stats: stats.clone(),
                    _slot: slot,
                };
                stats.accepted.fetch_add(1, Ordering::Relaxed);
                let _ = tx.send(Ok(accepted)).await;
            });
        }
        drop(listener);
        info!("listener closed: new connections are refused");
        let _ = stopped_tx.send(());
    });
    (
        Acceptor {
            stop: Some(stop_tx),
            stopped: Some(stopped_rx),
            keep_open: Some(keep_open),
        },
        Incoming::new(rx),
    )
}

/// TLS record type of a handshake message: the first byte of a ClientHello.
const TLS_HANDSHAKE: u8 = 0x16;

/// Looks at a new connection's first byte and runs the TLS handshake when due. Returns the
/// stream and whether it is a plaintext HTTP/2 client on a TLS port.
async fn prepare(tcp: TcpStream, tls: Option<&TlsAcceptor>) -> Result<(MaybeTls, bool), String> {
    let mut first = [0u8; 1];
    let n = tcp
        .peek(&mut first)
        .await
        .map_err(|e| format!("could not read the first bytes: {e}"))?;
    if n == 0 {
        return Err("closed before sending anything".into());
    }
    match (tls, first[0]) {
        (Some(acceptor), TLS_HANDSHAKE) => match acceptor.accept(tcp).await {
            Ok(stream) => Ok((MaybeTls::Tls(Box::new(stream.into())), false)),
            Err(e) => Err(format!("TLS handshake failed: {}", explain_server_handshake(&e))),
        },
        // SLIM-CONN-002: a plaintext HTTP/2 client is served so it can be told to use TLS.
        (Some(_), b'P') if !mutants::on(Fault::PlaintextOnTlsPortDropped) => {
            Ok((MaybeTls::Plain(tcp), true))
        }
        (Some(_), b) => Err(format!(
            "first byte {b:#04x} is neither a TLS ClientHello nor the HTTP/2 preface"
        )),
        (None, TLS_HANDSHAKE) => Err(
            "TLS ClientHello on a plaintext (h2c) port: this node has no TLS (start it with --tls-cert and --tls-key), or the client must use http://".into(),
        ),
        (None, _) => Ok((MaybeTls::Plain(tcp), false)),
    }
}
