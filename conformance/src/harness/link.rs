//! One link through the harness: a downstream `OpenChannel` call (an app) paired with its own
//! upstream call on the node, and the two pumps that carry frames between them.
//!
//! Each direction is a [`Pump`]: it reads frames in order, describes each for the transcript,
//! asks the fault rules, and forwards the original bytes (or patched bytes, for a corruption). A
//! link supervisor ends the other side when one side ends, propagating the node's gRPC status to
//! the app, and records a `link_closed` entry with the reason.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::BoxFuture;
use tonic::server::StreamingService;
use tonic::{Request, Response, Status, Streaming};

use super::fault::{Candidate, Counters, Decision, Fault, MAX_DELAY};
use super::transcript::{blank, Dir, TranscriptEntry};
use super::{wire, Shared, REORDER_HOLD};

/// Frames queued towards each side of a link before the pump waits (backpressure).
const QUEUE: usize = 256;
/// How long after an app half-closes its stream the node has to end its own.
const HALF_CLOSE_GRACE: Duration = Duration::from_secs(10);
/// Bound on connecting to the node and on its response headers.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest frame the harness reads from the node (the apps enforce their own limits).
const MAX_UPSTREAM_FRAME: usize = 64 << 20;
/// Most names recorded per link for `link_app` filters.
const MAX_LINK_APPS: usize = 1024;
/// Delayed frames pending per link + direction; past it the pump stops reading until one is
/// delivered (backpressure instead of unbounded tasks).
const MAX_DELAYED: usize = 1024;
/// Bound on handing the final status to an app.
const STATUS_SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// A gRPC codec of raw frames both ways: the harness forwards bytes and decodes only to look.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct BytesCodec;

impl Encoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl Decoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl Codec for BytesCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = BytesCodec;
    type Decoder = BytesCodec;
    fn encoder(&mut self) -> BytesCodec {
        BytesCodec
    }
    fn decoder(&mut self) -> BytesCodec {
        BytesCodec
    }
}

/// What the harness knows about a link, shared by its two pumps.
pub(crate) struct LinkInfo {
    id: u32,
    /// Names (`org/ns/app`) the app subscribed on this link, in order.
    apps: Mutex<Vec<String>>,
}

impl LinkInfo {
    fn apps(&self) -> Vec<String> {
        self.apps.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn add_app(&self, app: String) {
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        if apps.len() < MAX_LINK_APPS && !apps.contains(&app) {
            apps.push(app);
        }
    }
}

/// Where a pump delivers: the node's request stream or the app's response stream.
#[derive(Clone)]
enum Out {
    Up(mpsc::Sender<Bytes>),
    Down(mpsc::Sender<Result<Bytes, Status>>),
}

impl Out {
    /// Sends a frame; `false` when that side is gone.
    async fn send(&self, frame: Bytes) -> bool {
        match self {
            Out::Up(tx) => tx.send(frame).await.is_ok(),
            Out::Down(tx) => tx.send(Ok(frame)).await.is_ok(),
        }
    }
}

/// How a pump ended.
#[derive(Debug)]
enum Ended {
    /// Its input stream ended cleanly (after the pending frames were delivered).
    Clean,
    /// Its input stream failed with this status.
    Failed(Status),
    /// The side it writes to is gone.
    OutputGone,
}

/// A frame held by a reorder fault.
struct Held {
    frame: Bytes,
    entry: TranscriptEntry,
    until: Instant,
}

/// One direction of a link.
struct Pump {
    shared: Arc<Shared>,
    link: Arc<LinkInfo>,
    dir: Dir,
    out: Out,
    counters: Counters,
    held: Option<Held>,
    delayed: JoinSet<()>,
}

impl Pump {
    fn new(shared: Arc<Shared>, link: Arc<LinkInfo>, dir: Dir, out: Out) -> Self {
        Self {
            shared,
            link,
            dir,
            out,
            counters: Counters::default(),
            held: None,
            delayed: JoinSet::new(),
        }
    }

    async fn run(mut self, mut input: Streaming<Bytes>) -> Ended {
        loop {
            let hold_until = self.held.as_ref().map(|h| h.until);
            let hold = async move {
                match hold_until {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                m = input.message() => match m {
                    Ok(Some(frame)) => {
                        if !self.handle(frame).await {
                            return Ended::OutputGone;
                        }
                    }
                    Ok(None) => {
                        // Deliver what is pending before passing the end on.
                        if !self.release_held().await {
                            return Ended::OutputGone;
                        }
                        while self.delayed.join_next().await.is_some() {}
                        return Ended::Clean;
                    }
                    Err(status) => return Ended::Failed(status),
                },
                () = hold => {
                    if !self.release_held().await {
                        return Ended::OutputGone;
                    }
                }
                Some(_) = self.delayed.join_next(), if !self.delayed.is_empty() => {}
            }
        }
    }

    /// Records `entry` (with `frame` as its bytes) and sends the frame.
    async fn emit(&self, frame: Bytes, mut entry: TranscriptEntry) -> bool {
        entry.bytes = frame.clone();
        self.shared.transcript.push(entry);
        self.out.send(frame).await
    }

    async fn release_held(&mut self) -> bool {
        match self.held.take() {
            Some(h) => self.emit(h.frame, h.entry).await,
            None => true,
        }
    }

    /// Forwards one frame read from the input, applying the fault rules; `false` when the
    /// output side is gone.
    async fn handle(&mut self, frame: Bytes) -> bool {
        let d = wire::describe(&frame);
        if self.dir == Dir::ToNode {
            if let Some(app) = d.subscribed_app.clone() {
                self.link.add_app(app);
            }
        }
        let mut entry = blank(d.kind, self.link.id, Some(self.dir));
        entry.source = d.source;
        entry.destination = d.destination;
        entry.fanout = d.fanout;
        entry.identity_sub = d.identity_sub;
        entry.session = d.session;
        entry.payload_len = d.payload_len;
        entry.mls_wire_format = d.mls_wire_format;
        entry.mls_epoch = d.mls_epoch;
        // Only Publishes with a session header are ever faulted.
        let decision = match d.session {
            Some(s) if d.kind == "publish" => self.decide(s.message_type),
            _ => None,
        };
        let Some(Decision { fault, entropy }) = decision else {
            return self.emit(frame, entry).await && self.release_held().await;
        };
        entry.fault = Some(fault.label());
        match fault {
            Fault::Drop => {
                entry.bytes = frame;
                self.shared.transcript.push(entry);
                true
            }
            Fault::Duplicate => {
                let mut second = entry.clone();
                second.fault = Some("duplicate (second copy)".into());
                self.emit(frame.clone(), entry).await
                    && self.emit(frame, second).await
                    && self.release_held().await
            }
            Fault::Reorder => {
                if self.held.is_some() {
                    // Already holding one: this frame is the one that overtakes it.
                    entry.fault = Some("reorder (overtakes the held frame)".into());
                    self.emit(frame, entry).await && self.release_held().await
                } else {
                    self.held = Some(Held {
                        frame,
                        entry,
                        until: Instant::now() + REORDER_HOLD,
                    });
                    true
                }
            }
            Fault::Delay(delay) => {
                while self.delayed.len() >= MAX_DELAYED {
                    self.delayed.join_next().await;
                }
                let delay = delay.min(MAX_DELAY);
                let shared = self.shared.clone();
                let out = self.out.clone();
                self.delayed.spawn(async move {
                    tokio::time::sleep(delay).await;
                    entry.bytes = frame.clone();
                    shared.transcript.push(entry);
                    let _ = out.send(frame).await;
                });
                true
            }
            Fault::CorruptHeaderSig => {
                let mut patched = frame.to_vec();
                if wire::corrupt_header_sig(&mut patched) {
                    self.emit(patched.into(), entry).await && self.release_held().await
                } else {
                    entry.fault = Some("corrupt: no e2e_header_sig".into());
                    self.emit(frame, entry).await && self.release_held().await
                }
            }
            Fault::CorruptPayloadSig => {
                let mut patched = frame.to_vec();
                if wire::corrupt_payload_sig(&mut patched, entropy) {
                    self.emit(patched.into(), entry).await && self.release_held().await
                } else {
                    entry.fault = Some(format!("corrupt: no {}", wire::PAYLOAD_SIG_KEY));
                    self.emit(frame, entry).await && self.release_held().await
                }
            }
        }
    }

    fn decide(&mut self, message_type: i32) -> Option<Decision> {
        let set = self.shared.faults();
        if set.rules.is_empty() {
            return None;
        }
        let apps = self.link.apps();
        let fallback = format!("link#{}", self.link.id);
        let key = apps.first().map_or(fallback.as_str(), String::as_str);
        self.counters.decide(
            self.shared.seed,
            &set,
            &Candidate {
                dir: self.dir,
                message_type,
                link_apps: &apps,
                link_key: key,
            },
        )
    }
}

/// The `OpenChannel` handler: pairs each downstream call with an upstream one.
#[derive(Clone)]
pub(crate) struct HarnessService {
    pub(crate) shared: Arc<Shared>,
}

type DownStream = ReceiverStream<Result<Bytes, Status>>;

impl StreamingService<Bytes> for HarnessService {
    type Response = Bytes;
    type ResponseStream = DownStream;
    type Future = BoxFuture<Response<DownStream>, Status>;

    fn call(&mut self, request: Request<Streaming<Bytes>>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(open_link(shared, request))
    }
}

fn status_text(s: &Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

/// Opens the upstream call for a new downstream call, then starts the link's supervisor.
async fn open_link(
    shared: Arc<Shared>,
    request: Request<Streaming<Bytes>>,
) -> Result<Response<DownStream>, Status> {
    let id = shared.next_link();
    let peer = request
        .remote_addr()
        .map_or_else(|| "unknown peer".to_string(), |a| a.to_string());
    let auth = request.metadata().get("authorization").cloned();
    let down_in = request.into_inner();
    let mut open = blank("link_open", id, None);
    open.note = Some(format!("from {peer}"));
    shared.transcript.push(open);
    let opened = tokio::time::timeout(UPSTREAM_TIMEOUT, async {
        let channel = shared
            .upstream
            .clone()
            .connect_timeout(UPSTREAM_TIMEOUT)
            .connect()
            .await
            .map_err(|e| Status::unavailable(format!("harness: node unreachable: {e}")))?;
        let mut grpc = tonic::client::Grpc::new(channel)
            .max_decoding_message_size(MAX_UPSTREAM_FRAME)
            .max_encoding_message_size(MAX_UPSTREAM_FRAME);
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(format!("harness: node not ready: {e}")))?;
        let (up_tx, up_rx) = mpsc::channel::<Bytes>(QUEUE);
        let mut req = Request::new(ReceiverStream::new(up_rx));
        if let Some(auth) = auth {
            req.metadata_mut().insert("authorization", auth);
        }
        let path = http::uri::PathAndQuery::from_static(slim_proto::OPEN_CHANNEL);
        let response = grpc.streaming(req, path, BytesCodec).await?;
        Ok::<_, Status>((up_tx, response.into_inner()))
    })
    .await
    .unwrap_or_else(|_| {
        Err(Status::unavailable(
            "harness: the node did not accept the call within 10 s",
        ))
    });
    let (up_tx, up_in) = match opened {
        Ok(x) => x,
        Err(status) => {
            // The node refused the call (authentication, ...): the app sees the same status.
            let mut closed = blank("link_closed", id, None);
            closed.note = Some(format!("node refused the call: {}", status_text(&status)));
            shared.transcript.push(closed);
            return Err(status);
        }
    };
    let (down_tx, down_rx) = mpsc::channel::<Result<Bytes, Status>>(QUEUE);
    let (reset_tx, reset_rx) = oneshot::channel();
    shared.register_link(id, reset_tx);
    let link = Arc::new(LinkInfo {
        id,
        apps: Mutex::new(Vec::new()),
    });
    let task = tokio::spawn(supervise(
        shared.clone(),
        link,
        down_in,
        up_in,
        up_tx,
        down_tx,
        reset_rx,
    ));
    shared.set_link_task(id, task);
    Ok(Response::new(ReceiverStream::new(down_rx)))
}

/// Why a link was reset by the harness.
#[derive(Debug)]
pub(crate) struct Reset {
    /// The status the app's stream ends with.
    pub(crate) status: Status,
    /// The transcript's reason.
    pub(crate) reason: String,
}

/// Runs both pumps of a link and ends it as a whole.
async fn supervise(
    shared: Arc<Shared>,
    link: Arc<LinkInfo>,
    down_in: Streaming<Bytes>,
    up_in: Streaming<Bytes>,
    up_tx: mpsc::Sender<Bytes>,
    down_tx: mpsc::Sender<Result<Bytes, Status>>,
    reset_rx: oneshot::Receiver<Reset>,
) {
    let id = link.id;
    let to_node = Pump::new(shared.clone(), link.clone(), Dir::ToNode, Out::Up(up_tx)).run(down_in);
    let from_node = Pump::new(
        shared.clone(),
        link,
        Dir::FromNode,
        Out::Down(down_tx.clone()),
    )
    .run(up_in);
    tokio::pin!(to_node, from_node);
    let fail_down = |status: Status| {
        let tx = down_tx.clone();
        async move {
            let _ = tokio::time::timeout(STATUS_SEND_TIMEOUT, tx.send(Err(status))).await;
        }
    };
    let reason = tokio::select! {
        reset = reset_rx => match reset {
            Ok(r) => {
                fail_down(r.status).await;
                r.reason
            }
            Err(_) => "harness stopped".to_string(),
        },
        ended = &mut to_node => match ended {
            Ended::Clean => {
                // The app half-closed; the node's request stream is now half-closed too (the
                // pump dropped its sender). Let the node end its side.
                match tokio::time::timeout(HALF_CLOSE_GRACE, &mut from_node).await {
                    Ok(Ended::Clean) => "app ended its stream, then the node ended its own".into(),
                    Ok(Ended::Failed(s)) => {
                        let text = status_text(&s);
                        fail_down(s).await;
                        format!("app ended its stream, then the node failed it: {text}")
                    }
                    Ok(Ended::OutputGone) => "app ended its stream and stopped reading".into(),
                    Err(_) => "app ended its stream; the node did not end its own within 10 s".into(),
                }
            }
            Ended::Failed(s) => format!("app stream failed: {}", status_text(&s)),
            Ended::OutputGone => {
                // The node's call is over: pass its final status on, if it comes promptly.
                match tokio::time::timeout(STATUS_SEND_TIMEOUT, &mut from_node).await {
                    Ok(Ended::Failed(s)) => {
                        let text = status_text(&s);
                        fail_down(s).await;
                        format!("node ended the link: {text}")
                    }
                    _ => "node's request stream closed".into(),
                }
            }
        },
        ended = &mut from_node => match ended {
            Ended::Clean => "node ended the link (OK)".into(),
            Ended::Failed(s) => {
                let text = status_text(&s);
                fail_down(s).await;
                format!("node ended the link: {text}")
            }
            Ended::OutputGone => "app stopped reading its stream".into(),
        },
    };
    let mut closed = blank("link_closed", id, None);
    closed.note = Some(reason);
    shared.transcript.push(closed);
    shared.unregister_link(id);
}
