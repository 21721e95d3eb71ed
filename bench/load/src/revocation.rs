//! `slim-bench revocation`: how long a node takes from a revocation-list change to the end of the
//! revoked client's stream (SLIM-REV-002..004).
//!
//! The node verifies ES256 JWT bearer tokens and watches a revocation list file. The benchmark
//! holds `streams` live authenticated links, each a real client: its own HTTP/2 connection,
//! `Bearer <jwt>` with its own subject and token id, a negotiated link and a subscription acked
//! by the node. Then, `revocations` times, one after the other: it picks the oldest live link,
//! appends its subject (or token id) to the list, replaces the file atomically (write a temp file,
//! rename it over the list) and measures from just before the rename to the moment the client
//! sees its stream end with `UNAUTHENTICATED`. A replacement link with a fresh identity is opened
//! right after, so `streams` links are live at every revocation.
//!
//! A node that polls the file (the reference relay checks it every 50 ms) adds up to one poll
//! period: before each rename the benchmark waits a random 0..`jitter` ms, so renames land at
//! random phases of the poll and the distribution shows it (roughly uniform over the period,
//! plus the cost of ending the stream). Every other stream must stay open: a stream that ends
//! unasked, or a revoked one that ends with another status or not at all, is reported and makes
//! the exit code 1.
//!
//! Against the embedded relay the benchmark makes its own key, key file and list file in a
//! temporary directory (removed at the end). Against another node (`--target`) it rewrites the
//! list file that node watches and mints tokens with the private key whose public key that node
//! trusts.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _, LineEnding};
use rand_core::RngCore as _;
use serde::Serialize;
use slim_proto::names::SlimName;
use slim_reference::auth::{jwt, AuthConfig};
use slim_reference::config::ServerConfig;
use slim_reference::server::RelayHandle;
use tokio::sync::mpsc;
use tonic::Code;

use crate::client::BenchLink;
use crate::error::BenchError;

/// The issuer of the embedded relay's tokens.
const EMBEDDED_ISSUER: &str = "slim-bench";
/// The audience of the embedded relay's tokens.
const EMBEDDED_AUDIENCE: &str = "slim";
/// How long the benchmark's tokens are valid: longer than any run, so none expires during one.
const TOKEN_LIFETIME_S: u64 = 24 * 3600;
/// After writing the empty list to another node's file, how long to wait for it to load it.
const EXTERNAL_SETTLE: Duration = Duration::from_millis(500);

/// Which claim of a link's token each revocation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RevokeBy {
    /// The subject (`sub`): every token of that identity.
    Sub,
    /// The token id (`jti`): that one token.
    Jti,
}

impl RevokeBy {
    /// The list entry's key.
    pub fn key(&self) -> &'static str {
        match self {
            RevokeBy::Sub => "sub",
            RevokeBy::Jti => "jti",
        }
    }
}

/// The node under test.
#[derive(Debug, Clone)]
pub enum RevocationTarget {
    /// The reference relay in this process, configured by the benchmark.
    Embedded,
    /// Another node, already running with JWT auth and a watched list.
    External {
        /// The node's URL.
        url: String,
        /// The revocation list file the node watches (rewritten by the benchmark).
        list: PathBuf,
        /// PKCS#8 PEM of the P-256 key whose public key the node trusts.
        signing_key: PathBuf,
        /// `iss` of the tokens, if the node checks it.
        issuer: Option<String>,
        /// `aud` of the tokens, if the node checks it.
        audience: Option<String>,
    },
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct RevocationConfig {
    /// The node.
    pub target: RevocationTarget,
    /// Live authenticated links held at every revocation.
    pub streams: usize,
    /// Revocations, one after the other.
    pub revocations: usize,
    /// Which claim is revoked.
    pub by: RevokeBy,
    /// Random pause before each rename, 0..jitter.
    pub jitter: Duration,
    /// Bound for one revoked stream to end.
    pub timeout: Duration,
}

/// Percentiles of a set of durations, in milliseconds (nearest rank).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Percentiles {
    /// Number of samples.
    pub count: usize,
    /// Smallest.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Percentiles {
    /// The percentiles of `samples`; `None` when there are none.
    pub fn of(samples: &[Duration]) -> Option<Percentiles> {
        if samples.is_empty() {
            return None;
        }
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        // Nearest rank: the smallest sample with at least p % of the samples at or below it.
        let rank = |p: f64| {
            let r = (p / 100.0 * ms.len() as f64).ceil() as usize;
            ms[r.clamp(1, ms.len()) - 1]
        };
        Some(Percentiles {
            count: ms.len(),
            min: ms[0],
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: ms[ms.len() - 1],
            mean: ms.iter().sum::<f64>() / ms.len() as f64,
        })
    }
}

/// One revocation as measured.
#[derive(Debug, Clone, Serialize)]
pub struct RevocationSample {
    /// From just before the rename to the end of the revoked stream, ms; `None` if it did not end
    /// within the timeout.
    pub ms: Option<f64>,
    /// The status code the stream ended with (`"Unauthenticated"` when right).
    pub code: Option<String>,
}

/// What was measured (`slim-bench/revocation/v1`).
#[derive(Debug, Clone, Serialize)]
pub struct RevocationResult {
    /// Schema tag.
    pub schema: &'static str,
    /// `"embedded"` or the node's URL.
    pub target: String,
    /// Live links at every revocation.
    pub streams: usize,
    /// Revocations made.
    pub revocations: usize,
    /// `"sub"` or `"jti"`.
    pub by: RevokeBy,
    /// How the live count is kept: a replacement link is opened after each revocation.
    pub live_policy: &'static str,
    /// The random pause before each rename was 0..this, ms.
    pub jitter_ms: f64,
    /// The embedded relay's poll period, ms (`None` for another node: unknown).
    pub poll_ms: Option<f64>,
    /// Rename to stream end over the revocations whose stream ended with `UNAUTHENTICATED`, ms.
    pub latency_ms: Option<Percentiles>,
    /// Every revocation in order.
    pub samples: Vec<RevocationSample>,
    /// Revoked streams that ended with `UNAUTHENTICATED` (should be `revocations`).
    pub unauthenticated: usize,
    /// Revoked streams that ended otherwise, or not within the timeout.
    pub wrong_or_missing: usize,
    /// Streams that ended without being revoked (should be 0).
    pub collateral: usize,
    /// Links opened in all (`streams + revocations`).
    pub links_opened: usize,
    /// The fewest links open at the node just before a revocation (embedded only).
    pub min_live_before_revocation: Option<usize>,
    /// Wall time of the whole run, seconds (setup included).
    pub wall_s: f64,
    /// Where it ran.
    pub machine: crate::procstat::Machine,
}

impl RevocationResult {
    /// Whether every revocation ended exactly its stream, with `UNAUTHENTICATED`.
    pub fn is_clean(&self) -> bool {
        self.unauthenticated == self.revocations
            && self.wrong_or_missing == 0
            && self.collateral == 0
    }
}

/// A live link: the request side kept open (dropping it would end the stream).
struct Live {
    _tx: mpsc::Sender<Vec<u8>>,
    sub: String,
    jti: String,
}

/// How a link's stream ended, as its watcher saw it.
struct Ended {
    index: usize,
    at: Instant,
    code: Code,
    message: String,
}

/// Mints the benchmark's tokens.
struct Minter {
    key: SigningKey,
    issuer: Option<String>,
    audience: Option<String>,
    run: String,
}

impl Minter {
    /// `Bearer <jwt>` for link `index`, with its subject and token id.
    fn bearer(&self, index: usize) -> (String, String, String) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let sub = format!("bench-{}-{index}", self.run);
        let jti = format!("{sub}-t");
        let mut claims = serde_json::json!({
            "sub": sub, "jti": jti, "iat": now, "exp": now + TOKEN_LIFETIME_S,
        });
        if let Some(iss) = &self.issuer {
            claims["iss"] = iss.clone().into();
        }
        if let Some(aud) = &self.audience {
            claims["aud"] = aud.clone().into();
        }
        let token = jwt::sign_es256(&self.key, None, &claims);
        (format!("Bearer {token}"), sub, jti)
    }
}

/// The node and the files of one run; the embedded relay and the scratch directory go away on
/// drop.
struct Setup {
    url: String,
    list: PathBuf,
    minter: Minter,
    relay: Option<RelayHandle>,
    scratch: Option<PathBuf>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(dir) = &self.scratch {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    move |source| BenchError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Replaces `list` atomically with `text` (temp file in the same directory, then rename);
/// returns the instant just before the rename.
fn replace_list(list: &Path, text: &str) -> Result<Instant, BenchError> {
    let mut tmp = list.as_os_str().to_owned();
    tmp.push(".slim-bench.tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
    let before = Instant::now();
    std::fs::rename(&tmp, list).map_err(io_err(list))?;
    Ok(before)
}

/// The list revoking `entries` (`key: value` pairs).
fn list_text(entries: &[(&'static str, String)]) -> String {
    if entries.is_empty() {
        return "revoked: []\n".into();
    }
    let mut text = String::from("revoked:\n");
    for (key, value) in entries {
        text.push_str(&format!("  - {{{key}: {value:?}}}\n"));
    }
    text
}

async fn setup(target: &RevocationTarget, run: String) -> Result<Setup, BenchError> {
    match target {
        RevocationTarget::Embedded => {
            let dir = std::env::temp_dir().join(format!("slim-bench-revocation-{run}"));
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            // From here on the directory is removed on every path out (Setup's drop).
            let mut s = Setup {
                url: String::new(),
                list: dir.join("revoked.yaml"),
                minter: Minter {
                    key: SigningKey::random(&mut rand_core::OsRng),
                    issuer: Some(EMBEDDED_ISSUER.into()),
                    audience: Some(EMBEDDED_AUDIENCE.into()),
                    run,
                },
                relay: None,
                scratch: Some(dir.clone()),
            };
            let pem = s
                .minter
                .key
                .verifying_key()
                .to_public_key_pem(LineEnding::LF)
                .map_err(|e| BenchError::Usage(format!("public key PEM: {e}")))?;
            let pem_path = dir.join("bench.pub.pem");
            std::fs::write(&pem_path, pem).map_err(io_err(&pem_path))?;
            std::fs::write(&s.list, list_text(&[])).map_err(io_err(&s.list))?;
            let relay = slim_reference::server::spawn(ServerConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                auth: Some(AuthConfig::Jwt {
                    keys: vec![pem_path],
                    jwks: None,
                    hs256_secret_file: None,
                    issuer: Some(EMBEDDED_ISSUER.into()),
                    audience: Some(EMBEDDED_AUDIENCE.into()),
                }),
                revocation_file: Some(s.list.clone()),
                ..ServerConfig::default()
            })
            .await
            .map_err(|e| BenchError::Usage(format!("embedded relay: {e}")))?;
            s.url = relay.url();
            s.relay = Some(relay);
            Ok(s)
        }
        RevocationTarget::External {
            url,
            list,
            signing_key,
            issuer,
            audience,
        } => {
            let pem = std::fs::read_to_string(signing_key).map_err(io_err(signing_key))?;
            let key = SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
                BenchError::Usage(format!(
                    "{}: not a PKCS#8 PEM P-256 private key: {e}",
                    signing_key.display()
                ))
            })?;
            replace_list(list, &list_text(&[]))?;
            // Give the node time to load the empty list (the subjects are new anyway).
            tokio::time::sleep(EXTERNAL_SETTLE).await;
            Ok(Setup {
                url: url.clone(),
                list: list.clone(),
                minter: Minter {
                    key,
                    issuer: issuer.clone(),
                    audience: audience.clone(),
                    run,
                },
                relay: None,
                scratch: None,
            })
        }
    }
}

/// Opens link `index` (negotiated, its name subscribed and acked) and starts the task that
/// reports how its stream ends.
async fn open(
    s: &Setup,
    index: usize,
    ended: &mpsc::UnboundedSender<Ended>,
) -> Result<Live, BenchError> {
    let (authorization, sub, jti) = s.minter.bearer(index);
    let mut link = BenchLink::connect_with(&s.url, Some(&authorization)).await?;
    let name = SlimName::new("bench", &s.minter.run, &format!("rev-{index}"));
    link.subscribe(&name, index as u64 + 1).await?;
    let BenchLink { tx, mut rx, .. } = link;
    let ended = ended.clone();
    tokio::spawn(async move {
        let (code, message) = loop {
            match rx.message().await {
                Ok(Some(_)) => {}
                Ok(None) => break (Code::Ok, "the stream ended without a status".into()),
                Err(status) => break (status.code(), status.message().to_string()),
            }
        };
        let _ = ended.send(Ended {
            index,
            at: Instant::now(),
            code,
            message,
        });
    });
    Ok(Live { _tx: tx, sub, jti })
}

/// Runs the benchmark once.
pub async fn run_revocation(cfg: &RevocationConfig) -> Result<RevocationResult, BenchError> {
    if cfg.streams == 0 {
        return Err(BenchError::Usage("--streams must be at least 1".into()));
    }
    let started = Instant::now();
    let run = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let s = setup(&cfg.target, run).await?;
    let (ended_tx, mut ended_rx) = mpsc::unbounded_channel::<Ended>();
    let mut live: HashMap<usize, Live> = HashMap::new();
    let mut order: VecDeque<usize> = VecDeque::new();
    let mut next = 0usize;
    for _ in 0..cfg.streams {
        live.insert(next, open(&s, next, &ended_tx).await?);
        order.push_back(next);
        next += 1;
    }

    let mut entries: Vec<(&'static str, String)> = Vec::new();
    let mut samples = Vec::with_capacity(cfg.revocations);
    let mut latencies = Vec::with_capacity(cfg.revocations);
    let (mut collateral, mut wrong_or_missing) = (0usize, 0usize);
    let mut min_live: Option<usize> = None;
    let jitter_us = cfg.jitter.as_micros().min(u128::from(u32::MAX)) as u32;
    for _ in 0..cfg.revocations {
        if jitter_us > 0 {
            let pause = rand_core::OsRng.next_u32() % jitter_us;
            tokio::time::sleep(Duration::from_micros(u64::from(pause))).await;
        }
        // Streams that ended unasked since the last revocation.
        while let Ok(e) = ended_rx.try_recv() {
            collateral += 1;
            live.remove(&e.index);
            eprintln!(
                "slim-bench: link {} ended without being revoked: {:?} {}",
                e.index, e.code, e.message
            );
        }
        if let Some(relay) = &s.relay {
            let n = relay.connections();
            min_live = Some(min_live.map_or(n, |m| m.min(n)));
        }
        let Some(victim) = order.pop_front() else {
            return Err(BenchError::Protocol("no live link left to revoke".into()));
        };
        let Some(link) = live.get(&victim) else {
            // It ended on its own (counted above); take the next one.
            continue;
        };
        entries.push((
            cfg.by.key(),
            match cfg.by {
                RevokeBy::Sub => link.sub.clone(),
                RevokeBy::Jti => link.jti.clone(),
            },
        ));
        let renamed = replace_list(&s.list, &list_text(&entries))?;
        let deadline = tokio::time::Instant::from_std(renamed + cfg.timeout);
        let sample = loop {
            match tokio::time::timeout_at(deadline, ended_rx.recv()).await {
                Ok(Some(e)) if e.index == victim => {
                    let ms = (e.at - renamed).as_secs_f64() * 1e3;
                    if e.code == Code::Unauthenticated {
                        latencies.push(e.at - renamed);
                    } else {
                        wrong_or_missing += 1;
                        eprintln!(
                            "slim-bench: revoked link {victim} ended with {:?}, not Unauthenticated: {}",
                            e.code, e.message
                        );
                    }
                    break RevocationSample {
                        ms: Some(ms),
                        code: Some(format!("{:?}", e.code)),
                    };
                }
                Ok(Some(e)) => {
                    collateral += 1;
                    live.remove(&e.index);
                    eprintln!(
                        "slim-bench: link {} ended without being revoked: {:?} {}",
                        e.index, e.code, e.message
                    );
                }
                Ok(None) => unreachable!("the benchmark holds a sender"),
                Err(_) => {
                    wrong_or_missing += 1;
                    eprintln!(
                        "slim-bench: revoked link {victim} still open {:?} after the rename",
                        cfg.timeout
                    );
                    break RevocationSample {
                        ms: None,
                        code: None,
                    };
                }
            }
        };
        samples.push(sample);
        live.remove(&victim);
        // The replacement keeps `streams` links live for the next revocation.
        live.insert(next, open(&s, next, &ended_tx).await?);
        order.push_back(next);
        next += 1;
    }
    // A last look: every link not revoked must still be open.
    tokio::time::sleep(Duration::from_millis(100)).await;
    while let Ok(e) = ended_rx.try_recv() {
        collateral += 1;
        eprintln!(
            "slim-bench: link {} ended without being revoked: {:?} {}",
            e.index, e.code, e.message
        );
    }
    let result = RevocationResult {
        schema: "slim-bench/revocation/v1",
        target: match &cfg.target {
            RevocationTarget::Embedded => "embedded".into(),
            RevocationTarget::External { url, .. } => url.clone(),
        },
        streams: cfg.streams,
        revocations: samples.len(),
        by: cfg.by,
        live_policy: "replace: a new link is opened after each revocation",
        jitter_ms: cfg.jitter.as_secs_f64() * 1e3,
        poll_ms: s
            .relay
            .as_ref()
            .map(|_| slim_reference::server::REVOCATION_POLL.as_secs_f64() * 1e3),
        latency_ms: Percentiles::of(&latencies),
        unauthenticated: latencies.len(),
        samples,
        wrong_or_missing,
        collateral,
        links_opened: next,
        min_live_before_revocation: min_live,
        wall_s: started.elapsed().as_secs_f64(),
        machine: crate::procstat::Machine::detect(),
    };
    drop(live);
    let mut s = s;
    if let Some(relay) = s.relay.take() {
        let _ = relay.shutdown().await;
    }
    Ok(result)
}

/// Prints the result as a few lines.
pub fn print(out: &mut dyn std::io::Write, r: &RevocationResult) -> std::io::Result<()> {
    writeln!(
        out,
        "slim-bench revocation: {} ({}), {} live links, {} revocations by {}, rename to UNAUTHENTICATED; pause before each rename 0..{} ms{}",
        r.target,
        if r.target == "embedded" { "reference relay" } else { "external node" },
        r.streams,
        r.revocations,
        r.by.key(),
        r.jitter_ms,
        r.poll_ms
            .map(|p| format!(", the relay polls the list every {p} ms"))
            .unwrap_or_default()
    )?;
    match &r.latency_ms {
        Some(p) => writeln!(
            out,
            "latency ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}  (min {:.1}, mean {:.1}, n {})",
            p.p50, p.p90, p.p99, p.max, p.min, p.mean, p.count
        )?,
        None => writeln!(
            out,
            "latency ms: no revoked stream ended with UNAUTHENTICATED"
        )?,
    }
    writeln!(
        out,
        "links opened {}, fewest open before a revocation {}, wall {:.1} s",
        r.links_opened,
        r.min_live_before_revocation
            .map_or("unknown".into(), |n| n.to_string()),
        r.wall_s
    )?;
    if r.is_clean() {
        writeln!(
            out,
            "OK: every revoked stream ended with UNAUTHENTICATED, no other stream ended"
        )
    } else {
        let w = format!(
            "WARNING: {} of {} revoked streams ended with UNAUTHENTICATED; {} ended otherwise or not in time; {} unrevoked streams ended",
            r.unauthenticated, r.revocations, r.wrong_or_missing, r.collateral
        );
        eprintln!("{w}");
        writeln!(out, "{w}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let p = Percentiles::of(&samples).expect("samples");
        assert_eq!(
            (p.min, p.p50, p.p90, p.p99, p.max),
            (1.0, 50.0, 90.0, 99.0, 100.0)
        );
        assert!((p.mean - 50.5).abs() < 1e-9);
        let one = Percentiles::of(&[Duration::from_millis(7)]).expect("one");
        assert_eq!((one.p50, one.p99, one.max), (7.0, 7.0, 7.0));
        assert_eq!(Percentiles::of(&[]), None);
    }

    #[test]
    fn the_list_names_each_entry_once_and_starts_empty() {
        assert_eq!(list_text(&[]), "revoked: []\n");
        let text = list_text(&[("sub", "bench-a-1".into()), ("jti", "x".into())]);
        assert_eq!(
            text,
            "revoked:\n  - {sub: \"bench-a-1\"}\n  - {jti: \"x\"}\n"
        );
        let parsed = slim_reference::revocation::RevocationList::parse(&text, "t.yaml")
            .expect("the relay reads it");
        assert_eq!(parsed.len(), 2);
    }
}
