//! `slim-bench session`: reliable point-to-point session throughput of the reference client
//! (`slim_reference::client`) through a node, end to end: two apps, each with its own link to the
//! node, a reliable session (MLS optional) between them, and N messages from one to the other.
//!
//! Throughput counts a message when its sender got the receiver's acknowledgement
//! (`Event::Delivered`), so it is what an application that waits for delivery sees; the receiver
//! also checks that every message arrived exactly once, in order. This is the figure compared
//! with the real SDK's `slimctl bench pub --reliable` in `bench/RESULTS.md`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use slim_proto::names::SlimName;
use slim_reference::client::{Client, ClientEvent, ClientOptions};
use slim_reference::mls::CryptoBackend;
use slim_reference::session::{Credentials, Event, Reliability, SessionOptions};

use crate::error::BenchError;

/// The shared secret of the benchmark's two apps (loopback only).
const SECRET: &str = "slim-bench-session-shared-secret-0123456789";

/// What to measure.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The node URL.
    pub target: String,
    /// Messages to send.
    pub msgs: u64,
    /// Payload bytes (at least 8: the sequence number).
    pub size: usize,
    /// MLS on.
    pub mls: bool,
    /// Who does the MLS cryptography.
    pub mls_crypto: CryptoBackend,
    /// Bound for the whole run.
    pub timeout: Duration,
}

/// What was measured.
#[derive(Debug, Clone, Serialize)]
pub struct SessionResult {
    /// Schema tag.
    pub schema: &'static str,
    /// The node URL.
    pub target: String,
    /// Messages sent.
    pub msgs: u64,
    /// Payload bytes.
    pub size: usize,
    /// MLS on.
    pub mls: bool,
    /// The MLS backend (`ring` or `rustcrypto`; meaningless without MLS).
    pub mls_crypto: String,
    /// From the first publish to the last acknowledgement, seconds.
    pub seconds: f64,
    /// Acknowledged messages per second.
    pub delivered_per_sec: f64,
    /// Messages the sender saw acknowledged.
    pub delivered: u64,
    /// Messages the receiver got (distinct).
    pub received: u64,
    /// Messages the receiver got more than once, or out of order.
    pub duplicates_or_reordered: u64,
    /// Messages whose retries were exhausted.
    pub failed: u64,
    /// Where it ran.
    pub machine: crate::procstat::Machine,
}

async fn client(
    target: &str,
    name: &str,
    timeout: Duration,
    mls_crypto: CryptoBackend,
) -> Result<Client, BenchError> {
    let name: SlimName = name
        .parse()
        .map_err(|e| BenchError::Usage(format!("{e}")))?;
    Client::connect(ClientOptions {
        tls: None,
        node: target.to_string(),
        name,
        credentials: Credentials::SharedSecret(SECRET.into()),
        auth: None,
        timeout,
        seed: None,
        mls_crypto: Some(mls_crypto),
    })
    .await
    .map_err(|e| BenchError::Connect {
        url: target.to_string(),
        reason: e.to_string(),
    })
}

/// Runs the benchmark once.
pub async fn run_session(cfg: &SessionConfig) -> Result<SessionResult, BenchError> {
    if cfg.size < 8 {
        return Err(BenchError::Usage("--size must be at least 8 bytes".into()));
    }
    let deadline = Instant::now() + cfg.timeout;
    let mut rx = client(&cfg.target, "bench/session/rx", cfg.timeout, cfg.mls_crypto).await?;
    let mut tx = client(&cfg.target, "bench/session/tx", cfg.timeout, cfg.mls_crypto).await?;
    let opts = SessionOptions {
        mls: cfg.mls,
        reliable: Some(Reliability {
            interval: Duration::from_secs(1),
            max_retries: 5,
        }),
    };
    let session = tx
        .open_p2p(SlimName::new("bench", "session", "rx"), opts)
        .await
        .map_err(|e| BenchError::Protocol(e.to_string()))?;
    wait_for(
        &mut tx,
        deadline,
        "the session to open",
        |e| matches!(e, Event::SessionOpened { session: s, .. } if *s == session),
    )
    .await?;
    let msgs = cfg.msgs;
    let receiver = tokio::spawn(async move {
        let mut next = 0u64;
        let mut bad = 0u64;
        let mut received = 0u64;
        while received < msgs {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, rx.next_event()).await {
                Ok(Some(ClientEvent::Session(Event::Message { payload, .. }))) => {
                    let seq = payload
                        .get(..8)
                        .and_then(|b| <[u8; 8]>::try_from(b).ok())
                        .map(u64::from_be_bytes);
                    if seq == Some(next) {
                        next += 1;
                        received += 1;
                    } else {
                        bad += 1;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        (received, bad, rx)
    });
    let start = Instant::now();
    for i in 0..cfg.msgs {
        let mut p = vec![0u8; cfg.size];
        p[..8].copy_from_slice(&i.to_be_bytes());
        tx.publish(session, Bytes::from(p))
            .await
            .map_err(|e| BenchError::Protocol(e.to_string()))?;
    }
    let (mut delivered, mut failed) = (0u64, 0u64);
    let mut last = start;
    while delivered + failed < cfg.msgs {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, tx.next_event()).await {
            Ok(Some(ClientEvent::Session(Event::Delivered { .. }))) => {
                delivered += 1;
                last = Instant::now();
            }
            Ok(Some(ClientEvent::Session(Event::SendFailed { .. }))) => failed += 1,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let (received, bad, _rx) = receiver
        .await
        .map_err(|e| BenchError::Protocol(format!("receiver task: {e}")))?;
    let seconds = last.duration_since(start).as_secs_f64().max(1e-9);
    let _ = tx.close(session).await;
    Ok(SessionResult {
        schema: "slim-bench/session/v1",
        target: cfg.target.clone(),
        msgs: cfg.msgs,
        size: cfg.size,
        mls: cfg.mls,
        mls_crypto: match cfg.mls_crypto {
            CryptoBackend::RustCrypto => "rustcrypto",
            _ => "ring",
        }
        .to_string(),
        seconds,
        delivered_per_sec: delivered as f64 / seconds,
        delivered,
        received,
        duplicates_or_reordered: bad,
        failed,
        machine: crate::procstat::Machine::detect(),
    })
}

async fn wait_for(
    c: &mut Client,
    deadline: Instant,
    what: &str,
    pred: impl Fn(&Event) -> bool,
) -> Result<(), BenchError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, c.next_event()).await {
            Ok(Some(ClientEvent::Session(e))) if pred(&e) => return Ok(()),
            Ok(Some(ClientEvent::Session(Event::SessionClosed { reason, .. }))) => {
                return Err(BenchError::Protocol(format!(
                    "session closed while waiting for {what}: {reason}"
                )))
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                return Err(BenchError::Protocol(format!(
                    "timed out waiting for {what}"
                )))
            }
        }
    }
}
