//! A fault-injecting, transcript-keeping front for a SLIM node.
//!
//! Session-layer cases need to see, and to disturb, the traffic between the implementations
//! under test and their node. The apps connect to the [`HarnessNode`] instead of the node; for
//! each downstream `OpenChannel` stream it opens its own upstream stream on the real node and
//! forwards frames both ways, recording every one in a [`TranscriptEntry`].
//!
//! The link negotiation passes through unchanged, so each app and the node agree on the link key
//! end to end (X25519) and the per-link header MAC keeps verifying. That MAC covers only the
//! routing fields of `SLIMHeader` (WIRE.md §1.5), not `e2e_header_sig`, the session header, the
//! payload or `Message.metadata`, so the harness can drop, duplicate, reorder and delay frames and
//! corrupt the end-to-end signatures ([`Fault`]) while the node still accepts every frame it gets.
//!
//! Faults hit only Publishes with a session header; negotiations, subscriptions and acks are
//! always forwarded (and recorded). Which frames a rule hits is reproducible from the seed (see
//! [`FaultRule`] and the `fault` module). Per link and direction, frames that are not faulted keep
//! their order.
//!
//! Choices, so that cases can rely on them:
//! - **Rules**: for each frame, every rule whose filter matches counts it (per link + direction);
//!   the first rule that selects it (within its `max`) decides its one fault. `max` is a global
//!   cap counted across links in forwarding order.
//! - **Delay**: the frame is delivered after its delay (at most [`MAX_DELAY`]); later frames of
//!   the same link + direction are *not* held back behind it, so a delay reorders — that is what
//!   distinguishes it from a slow link. Its transcript entry is recorded when it is delivered.
//! - **Reorder**: the frame is held and released right after the next frame forwarded on the same
//!   link + direction (after both copies of a duplicate), or after [`REORDER_HOLD`]. A second
//!   Reorder-selected frame while one is held is forwarded at once, ahead of the held one (so
//!   `Select::All` swaps frames pairwise). Dropped and delayed frames do not release it.
//! - **Corruption** patches the frame in place (same length); a frame without the field is
//!   forwarded unchanged, its entry saying `corrupt: no ...`.
//! - Frames that are not modified are forwarded as the original bytes (never re-encoded).
//! - **Links**: each downstream call gets its own upstream call (and HTTP/2 connection), with the
//!   app's `authorization` header. A node refusing the call refuses the app's call with the same
//!   status. When one side ends, the other is ended: a node's error status is passed to the app;
//!   an app's half-close half-closes the node's stream and the node then has 10 s to end it.
//! - Frames from apps larger than 4 MiB are refused by the harness itself (tonic's length
//!   check ends that app's stream), as a node with the default limit would; transport-limit
//!   cases should talk to the node directly.
//!
//! The harness judges nothing and uses none of the reference implementation's relay or session
//! code: it only moves bytes and describes them from the wire format.

mod fault;
mod link;
mod transcript;
mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt as _;
use tonic::service::Routes;
use tonic::Status;

pub use fault::{Fault, FaultRule, Select, MAX_DELAY};
pub use transcript::{Dir, SessionInfo, TranscriptEntry, MAX_ENTRIES};
pub use wire::{identity_sub, mls_info, MlsInfo};

use fault::FaultSet;
use link::{BytesCodec, HarnessService, Reset};
use transcript::{blank, Transcript};

/// How long a [`Fault::Reorder`] holds a frame when no later frame comes on its link and
/// direction.
pub const REORDER_HOLD: Duration = Duration::from_millis(200);

/// Bound on waiting for links and the server to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the harness could not start or write its transcript.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The upstream URL is not a usable endpoint.
    #[error("bad upstream URL {url}: {reason}")]
    BadUpstream {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Binding the listening socket failed.
    #[error("cannot listen on 127.0.0.1: {0}")]
    Bind(#[from] std::io::Error),
}

/// A link's control handles, kept while it runs.
struct LinkCtl {
    reset: Option<oneshot::Sender<Reset>>,
    task: Option<JoinHandle<()>>,
}

/// State shared by the handle, the server and the link tasks.
pub(crate) struct Shared {
    seed: u64,
    upstream: tonic::transport::Endpoint,
    transcript: Transcript,
    faults: Mutex<Arc<FaultSet>>,
    generation: AtomicU64,
    next_link: AtomicU32,
    links: Mutex<HashMap<u32, LinkCtl>>,
}

impl Shared {
    fn faults(&self) -> Arc<FaultSet> {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn next_link(&self) -> u32 {
        self.next_link.fetch_add(1, Ordering::Relaxed)
    }

    fn links(&self) -> std::sync::MutexGuard<'_, HashMap<u32, LinkCtl>> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn register_link(&self, id: u32, reset: oneshot::Sender<Reset>) {
        self.links().insert(
            id,
            LinkCtl {
                reset: Some(reset),
                task: None,
            },
        );
    }

    fn set_link_task(&self, id: u32, task: JoinHandle<()>) {
        if let Some(l) = self.links().get_mut(&id) {
            l.task = Some(task);
        }
    }

    fn unregister_link(&self, id: u32) {
        self.links().remove(&id);
    }

    /// Ends every link with `status`, waiting (bounded) for their supervisors to finish.
    async fn reset_all(&self, status: &Status, reason: &str) {
        let links: Vec<LinkCtl> = self.links().drain().map(|(_, l)| l).collect();
        let mut tasks = Vec::new();
        for mut l in links {
            if let Some(reset) = l.reset.take() {
                let _ = reset.send(Reset {
                    status: status.clone(),
                    reason: reason.to_string(),
                });
            }
            tasks.extend(l.task.take());
        }
        let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
        for mut t in tasks {
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                t.abort();
            }
        }
    }
}

/// A running harness; stopped (with every link) by [`HarnessNode::shutdown`] or on drop.
pub struct HarnessNode {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl HarnessNode {
    /// Binds 127.0.0.1:0 and starts forwarding each accepted `OpenChannel` stream to its own
    /// stream on `upstream` (e.g. `"http://127.0.0.1:46357"`). `seed` decides which frames
    /// probabilistic rules hit. The node is contacted only when an app connects.
    pub async fn start(upstream: &str, seed: u64) -> Result<HarnessNode, HarnessError> {
        let endpoint =
            tonic::transport::Endpoint::from_shared(upstream.to_string()).map_err(|e| {
                HarnessError::BadUpstream {
                    url: upstream.to_string(),
                    reason: e.to_string(),
                }
            })?;
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            seed,
            upstream: endpoint.tcp_nodelay(true),
            transcript: Transcript::new(),
            faults: Mutex::new(Arc::new(FaultSet::default())),
            generation: AtomicU64::new(0),
            next_link: AtomicU32::new(0),
            links: Mutex::new(HashMap::new()),
        });
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        // Small frames must not wait for Nagle's algorithm.
        let incoming = TcpListenerStream::new(listener).map(|accepted| {
            accepted.inspect(|s| {
                let _ = s.set_nodelay(true);
            })
        });
        let routes = Routes::new(slim_proto::service::OpenChannelServer::new(
            HarnessService {
                shared: shared.clone(),
            },
            BytesCodec,
        ));
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_routes(routes)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stop_rx.await;
                })
                .await;
        });
        Ok(HarnessNode {
            addr,
            shared,
            stop: Some(stop_tx),
            server: Some(server),
        })
    }

    /// `http://127.0.0.1:PORT`: the URL the apps under test connect to.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the harness listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The seed fault decisions derive from (to report, and to replay a run).
    pub fn seed(&self) -> u64 {
        self.shared.seed
    }

    /// Replaces the fault rules. They apply to frames read after the call; each rule's
    /// per-link counters and application count start at 0.
    pub fn set_faults(&self, rules: Vec<FaultRule>) {
        let generation = self.shared.generation.fetch_add(1, Ordering::Relaxed) + 1;
        *self.shared.faults.lock().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(FaultSet::new(generation, rules));
    }

    /// Removes every fault rule: frames are forwarded untouched again.
    pub fn clear_faults(&self) {
        self.set_faults(Vec::new());
    }

    /// Adds a `note` entry (a runner step, say) to the transcript, so that the frames can be
    /// read against what the runner did.
    pub fn mark(&self, note: impl Into<String>) {
        let mut e = blank("note", 0, None);
        e.note = Some(note.into());
        self.shared.transcript.push(e);
    }

    /// A snapshot of the transcript, in forwarding order.
    pub fn transcript(&self) -> Vec<TranscriptEntry> {
        self.shared.transcript.snapshot()
    }

    /// Waits up to `timeout` for an entry matching `pred`, looking at the entries already
    /// recorded first; the first match, or `None` at the deadline. This is how a case waits for
    /// an event instead of sleeping.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&TranscriptEntry) -> bool,
    ) -> Option<TranscriptEntry> {
        self.shared.transcript.wait_for(timeout, pred).await
    }

    /// A node restart as the apps see it: every downstream stream ends with `UNAVAILABLE`
    /// "harness: node restart" and its upstream stream is dropped, so the node forgets the
    /// link's routes. New connections are accepted as before.
    pub async fn reset_links(&self) {
        self.shared
            .reset_all(
                &Status::unavailable("harness: node restart"),
                "reset_links: node restart",
            )
            .await;
    }

    /// Writes the transcript as JSON lines, one object per entry (frame bytes in hex).
    pub fn write_jsonl(&self, path: &std::path::Path) -> std::io::Result<()> {
        use std::io::Write as _;
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        for entry in self.shared.transcript.snapshot() {
            serde_json::to_writer(&mut out, &entry)?;
            out.write_all(b"\n")?;
        }
        out.flush()
    }

    /// Stops the harness: ends every link with `UNAVAILABLE` "harness: shutting down", then
    /// stops the server (bounded).
    pub async fn shutdown(mut self) {
        self.shared
            .reset_all(
                &Status::unavailable("harness: shutting down"),
                "harness shutdown",
            )
            .await;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut server) = self.server.take() {
            if tokio::time::timeout(STOP_TIMEOUT, &mut server)
                .await
                .is_err()
            {
                server.abort();
            }
        }
    }
}

impl Drop for HarnessNode {
    /// Dropping the handle (a failing test, say) stops the server and every link at once.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
        for (_, mut l) in self.shared.links().drain() {
            if let Some(t) = l.task.take() {
                t.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests;
