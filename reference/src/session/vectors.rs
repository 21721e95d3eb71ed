//! Session test vectors (`vectors/sessions/`): seeded runs of whole [`Endpoint`]s, recorded the
//! way the MLS working group records its passive-client vectors, so that another implementation
//! can check its session core against ours without a network.
//!
//! Each scenario runs the session core in the seeded network simulator (`sim.rs`, virtual time,
//! a toy node) and records every Publish put on the wire (who sent it to whom, when, its decoded
//! session header, what the network did with it and its bytes), what each endpoint's application
//! was told, and after each group transition every member's MLS epoch and epoch authenticator.
//!
//! [`generate`] writes the files; [`verify`] checks them twice: it replays each scenario from its
//! recorded seeds and config and compares everything, and it replays each endpoint *passively*:
//! a fresh endpoint with that endpoint's seed is given only the frames recorded as delivered to
//! it, at their recorded times, plus its own application's commands, and must tell its
//! application the same things, put the same bytes on the wire and reach the same epoch
//! authenticators. The second check is the one another implementation can run.
//!
//! Determinism: the network and every endpoint draw from fixed seeds (MLS randomness included,
//! `mls/provider.rs`), time is virtual, and every collection is ordered, so two runs write the
//! same bytes. One caveat is outside our control: openmls checks MLS key package lifetimes
//! against the machine's clock, and a lifetime spans at most 84 days, so an MLS scenario replays
//! only within 84 days of its clock start ([`VectorError::MlsClockWindow`] says what to do).

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message as _;
use serde::Deserialize;
use slim_proto::names::SlimName;
use slim_proto::pb;

use super::sim::endpoints::{Trace, World};
use super::sim::{Fate, LinkProfile};
use super::{
    Clock, Credentials, CryptoBackend, Endpoint, EndpointConfig, Event, Reliability,
    SessionOptions, Transmit,
};

/// Version of the file format; bumped when a field changes meaning.
pub const SCHEMA: u32 = 1;

/// The scenarios, in the order they are generated and verified; each is `<name>.yaml`.
pub const SCENARIOS: [&str; 2] = ["p2p-reliable-loss", "group-lifecycle-mls"];

/// The command that rewrites the committed vectors after a deliberate change of the wire.
pub const REGENERATE: &str = "cargo run -p slim-conformance -- vectors generate";

/// Wall clock of every scenario at virtual time 0: 2026-12-06T00:00:00Z. Identity tokens and
/// the reference's own MLS checks use this virtual clock; openmls's lifetime check does not
/// (see [`VectorError::MlsClockWindow`]).
const CLOCK_UNIX: u64 = 1_796_515_200;
/// openmls refuses key packages whose lifetime spans more than 84 days and 1 hour, and checks
/// them against the machine's clock; the reference backdates them by an hour.
const MLS_LIFETIME_SECS: u64 = 84 * 24 * 3600;
/// How far the reference backdates a key package's `not_before`.
const MLS_BACKDATE_SECS: u64 = 3600;
/// Margin for the virtual length of a run (key packages are made during it).
const MLS_RUN_MARGIN_SECS: u64 = 3600;
/// A passive replay of one endpoint stops after this many failed checks (the rest would only
/// repeat the first divergence).
const MAX_FAILURES_PER_REPLAY: usize = 3;
/// Bound on timer firings in one passive replay (a corrupted file must not spin forever).
const MAX_TIMER_FIRINGS: usize = 1_000_000;

/// Why vectors could not be generated or read. (A vector that does not match is not an error:
/// it is a failed check in the [`SessionVectorReport`].)
#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    /// A file or directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file or directory could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is not a session vector file of this schema.
    #[error("{file}: not a session vector file: {source}")]
    Parse {
        /// The file name.
        file: String,
        /// What serde_yaml said.
        source: serde_yaml::Error,
    },
    /// A file parses but names something that does not exist (an unknown scenario, label, …).
    #[error("{file}: {message}")]
    Invalid {
        /// The file name.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// A scenario did not do what it is meant to show (the session core misbehaved, or a
    /// command failed).
    #[error("scenario {scenario}: {message}")]
    Scenario {
        /// The scenario.
        scenario: String,
        /// What went wrong.
        message: String,
    },
    /// The machine's clock is outside the window in which openmls accepts the scenario's key
    /// packages.
    #[error(
        "scenario {scenario}: openmls checks MLS key package lifetimes against this machine's \
         clock (unix {now}), and the scenario's clock start (unix {clock_unix}) makes them valid \
         from unix {valid_from} to {valid_until} only. Move CLOCK_UNIX in \
         reference/src/session/vectors.rs to today, run `cargo run -p slim-conformance -- vectors \
         generate` and commit vectors/sessions/"
    )]
    MlsClockWindow {
        /// The scenario.
        scenario: String,
        /// Its clock start.
        clock_unix: u64,
        /// The earliest machine time at which it replays.
        valid_from: u64,
        /// The latest.
        valid_until: u64,
        /// The machine's time.
        now: u64,
    },
}

/// What [`verify`] found, per file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionVectorReport {
    /// One entry per scenario file, in [`SCENARIOS`] order.
    pub per_file: Vec<SessionFileReport>,
}

impl SessionVectorReport {
    /// True when every check of every file passed.
    pub fn ok(&self) -> bool {
        self.per_file.iter().all(|f| f.failures.is_empty())
    }
}

/// The checks run on one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFileReport {
    /// The file name (`<scenario>.yaml`).
    pub file: String,
    /// How many checks ran.
    pub checked: usize,
    /// How many passed.
    pub passed: usize,
    /// The ones that failed.
    pub failures: Vec<CheckFailure>,
}

/// One failed check: which replay, which frame when one is concerned, and what differed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckFailure {
    /// `replay` (the whole scenario from its seeds) or `passive <label>` (one endpoint fed its
    /// delivered frames), or `setup`.
    pub replay: String,
    /// The index of the frame concerned (in the file's `frames`), if any.
    pub frame: Option<usize>,
    /// What differed.
    pub what: String,
}

impl fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.frame {
            Some(i) => write!(f, "{}: frame {i}: {}", self.replay, self.what),
            None => write!(f, "{}: {}", self.replay, self.what),
        }
    }
}

/// Writes `<dir>/<scenario>.yaml` for every scenario (creating `dir`) and returns the paths.
/// Two calls write the same bytes.
pub fn generate(dir: &Path) -> Result<Vec<PathBuf>, VectorError> {
    std::fs::create_dir_all(dir).map_err(|source| VectorError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut written = Vec::new();
    for scenario in SCENARIOS {
        let text = render(&record(&default_setup(scenario)?)?);
        let path = dir.join(format!("{scenario}.yaml"));
        std::fs::write(&path, text).map_err(|source| VectorError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

/// Checks every `<dir>/<scenario>.yaml`: replays the scenario from the file's seeds and config,
/// and each endpoint passively from the frames delivered to it (see the module documentation).
pub fn verify(dir: &Path) -> Result<SessionVectorReport, VectorError> {
    let mut per_file = Vec::new();
    for scenario in SCENARIOS {
        let file = format!("{scenario}.yaml");
        let path = dir.join(&file);
        let text = std::fs::read_to_string(&path).map_err(|source| VectorError::Read {
            path: path.clone(),
            source,
        })?;
        per_file.push(verify_text(&file, &text)?);
    }
    Ok(SessionVectorReport { per_file })
}

/// Checks one vector file's text (`file` names it in the report).
fn verify_text(file: &str, text: &str) -> Result<SessionFileReport, VectorError> {
    let recorded = parse(file, text)?;
    let mut tally = Tally::default();
    let setup = Setup::from_file(file, &recorded)?;
    match record(&setup) {
        Ok(replayed) => {
            let replayed = parse(file, &render(&replayed))?;
            compare_replay(&recorded, &replayed, &mut tally);
        }
        Err(e @ VectorError::MlsClockWindow { .. }) => tally.fail("replay", None, e.to_string()),
        Err(e) => tally.fail("replay", None, format!("the scenario did not run: {e}")),
    }
    if recorded.config.mls {
        if let Err(e) = check_mls_window(&setup) {
            tally.fail("passive", None, e.to_string());
            return Ok(tally.report(file));
        }
    }
    for i in 0..recorded.endpoints.len() {
        passive(&recorded, i, &mut tally);
    }
    Ok(tally.report(file))
}

// ---------------------------------------------------------------------------------------------
// The file format: parsed with serde, rendered by hand (for a stable, readable layout).

/// Virtual time since the start of a run, in nanoseconds; written as milliseconds with six
/// decimals, so it survives a round trip through the file exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
struct Ms(u64);

impl Ms {
    fn since(t0: Instant, t: Instant) -> Self {
        Ms(u64::try_from(t.saturating_duration_since(t0).as_nanos()).unwrap_or(u64::MAX))
    }

    fn at(self, t0: Instant) -> Instant {
        t0 + Duration::from_nanos(self.0)
    }
}

impl fmt::Display for Ms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

impl<'de> Deserialize<'de> for Ms {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let ms = f64::deserialize(d)?;
        if !ms.is_finite() || !(0.0..=1e12).contains(&ms) {
            return Err(serde::de::Error::custom(format!(
                "time {ms} ms out of range"
            )));
        }
        // Exact for the six decimals we write (well below 2^53 nanoseconds).
        Ok(Ms((ms * 1e6).round() as u64))
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct VectorFile {
    schema: u32,
    scenario: String,
    description: String,
    config: ConfigRec,
    endpoints: Vec<EndpointRec>,
    script: Vec<StepRec>,
    frames: Vec<FrameRec>,
    events: BTreeMap<String, Vec<EventRec>>,
    checkpoints: Vec<CheckpointRec>,
    end_ms: Ms,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigRec {
    network_seed: u64,
    shared_secret: String,
    clock_unix: u64,
    mls: bool,
    reliability: Option<ReliabilityRec>,
    link: LinkRec,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReliabilityRec {
    interval_ms: u64,
    max_retries: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkRec {
    loss: f64,
    duplicate: f64,
    delay_ms: u64,
    jitter_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointRec {
    label: String,
    name: String,
    full_name: String,
    seed: String,
}

/// An application command, with its result (`session` of `open_p2p`/`create_group`,
/// `message_id` of `publish`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepRec {
    at_ms: Ms,
    endpoint: String,
    command: String,
    #[serde(default)]
    peer: Option<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    session: Option<u32>,
    #[serde(default)]
    payload: Option<String>,
    #[serde(default)]
    message_id: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct FrameRec {
    i: usize,
    tx: usize,
    at_ms: Ms,
    from: String,
    to: Option<String>,
    header: Option<HeaderRec>,
    fate: String,
    arrivals_ms: Vec<Ms>,
    hex: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderRec {
    session_type: String,
    #[serde(rename = "type")]
    kind: String,
    session_id: u32,
    message_id: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventRec {
    at_ms: Ms,
    event: String,
    #[serde(default)]
    session: Option<u32>,
    #[serde(default)]
    peer: Option<String>,
    #[serde(default)]
    initiator: Option<bool>,
    #[serde(default)]
    group: Option<bool>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    payload: Option<String>,
    #[serde(default)]
    payload_hex: Option<String>,
    #[serde(default)]
    message_id: Option<u32>,
    #[serde(default)]
    member: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointRec {
    at_ms: Ms,
    after: String,
    session: u32,
    states: BTreeMap<String, StateRec>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateRec {
    epoch: u64,
    epoch_authenticator: String,
    members: Vec<String>,
}

fn parse(file: &str, text: &str) -> Result<VectorFile, VectorError> {
    let v: VectorFile = serde_yaml::from_str(text).map_err(|source| VectorError::Parse {
        file: file.to_string(),
        source,
    })?;
    if v.schema != SCHEMA {
        return Err(VectorError::Invalid {
            file: file.to_string(),
            message: format!("schema {} (this verifier reads schema {SCHEMA})", v.schema),
        });
    }
    Ok(v)
}

/// A YAML double-quoted string (JSON's escapes are YAML's).
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// `{k: v, …}` of the fields that are present.
fn flow(fields: &[(&str, Option<String>)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}: {v}")))
        .collect();
    format!("{{{}}}", body.join(", "))
}

fn render(v: &VectorFile) -> String {
    let mut o = String::new();
    let c = &v.config;
    let _ = writeln!(
        o,
        "# SLIM session test vector `{}`, generated by slim-reference (reference/src/session/vectors.rs).",
        v.scenario
    );
    o.push_str(
        "# Do not edit by hand. Regenerate: cargo run -p slim-conformance -- vectors generate\n\
         # Verify: cargo run -p slim-conformance -- vectors verify (replays the scenario from its seeds\n\
         # and config, then each endpoint alone from the frames delivered to it; see README.md here).\n\
         # Times are virtual milliseconds since the start of the run (nanosecond precision).\n",
    );
    let _ = writeln!(o, "schema: {}", v.schema);
    let _ = writeln!(o, "scenario: {}", v.scenario);
    let _ = writeln!(o, "description: {}", q(&v.description));
    o.push_str("config:\n");
    let _ = writeln!(o, "  network_seed: {}", c.network_seed);
    let _ = writeln!(o, "  shared_secret: {}", q(&c.shared_secret));
    let _ = writeln!(o, "  clock_unix: {}", c.clock_unix);
    let _ = writeln!(o, "  mls: {}", c.mls);
    let rel = c.reliability.as_ref().map_or("null".to_string(), |r| {
        flow(&[
            ("interval_ms", Some(r.interval_ms.to_string())),
            ("max_retries", Some(r.max_retries.to_string())),
        ])
    });
    let _ = writeln!(o, "  reliability: {rel}");
    let _ = writeln!(
        o,
        "  link: {}",
        flow(&[
            ("loss", Some(format!("{:?}", c.link.loss))),
            ("duplicate", Some(format!("{:?}", c.link.duplicate))),
            ("delay_ms", Some(c.link.delay_ms.to_string())),
            ("jitter_ms", Some(c.link.jitter_ms.to_string())),
        ])
    );
    o.push_str("endpoints:\n");
    for e in &v.endpoints {
        let _ = writeln!(
            o,
            "- {}",
            flow(&[
                ("label", Some(e.label.clone())),
                ("name", Some(q(&e.name))),
                ("full_name", Some(q(&e.full_name))),
                ("seed", Some(q(&e.seed))),
            ])
        );
    }
    o.push_str("script:\n");
    for s in &v.script {
        let _ = writeln!(
            o,
            "- {}",
            flow(&[
                ("at_ms", Some(s.at_ms.to_string())),
                ("endpoint", Some(s.endpoint.clone())),
                ("command", Some(s.command.clone())),
                ("peer", s.peer.as_deref().map(q)),
                ("channel", s.channel.as_deref().map(q)),
                ("session", s.session.map(|x| x.to_string())),
                ("payload", s.payload.as_deref().map(q)),
                ("message_id", s.message_id.map(|x| x.to_string())),
            ])
        );
    }
    o.push_str(if v.frames.is_empty() {
        "frames: []\n"
    } else {
        "frames:\n"
    });
    for f in &v.frames {
        let _ = writeln!(o, "- i: {}", f.i);
        let _ = writeln!(o, "  tx: {}", f.tx);
        let _ = writeln!(o, "  at_ms: {}", f.at_ms);
        let _ = writeln!(o, "  from: {}", f.from);
        let _ = writeln!(o, "  to: {}", f.to.as_deref().unwrap_or("null"));
        let header = f.header.as_ref().map_or("null".to_string(), |h| {
            flow(&[
                ("session_type", Some(h.session_type.clone())),
                ("type", Some(h.kind.clone())),
                ("session_id", Some(h.session_id.to_string())),
                ("message_id", Some(h.message_id.to_string())),
            ])
        });
        let _ = writeln!(o, "  header: {header}");
        let _ = writeln!(o, "  fate: {}", f.fate);
        let arrivals: Vec<String> = f.arrivals_ms.iter().map(Ms::to_string).collect();
        let _ = writeln!(o, "  arrivals_ms: [{}]", arrivals.join(", "));
        let _ = writeln!(o, "  hex: {}", q(&f.hex));
    }
    o.push_str("events:\n");
    for e in &v.endpoints {
        let evs = v.events.get(&e.label).map(Vec::as_slice).unwrap_or(&[]);
        if evs.is_empty() {
            let _ = writeln!(o, "  {}: []", e.label);
            continue;
        }
        let _ = writeln!(o, "  {}:", e.label);
        for ev in evs {
            let _ = writeln!(
                o,
                "  - {}",
                flow(&[
                    ("at_ms", Some(ev.at_ms.to_string())),
                    ("event", Some(ev.event.clone())),
                    ("session", ev.session.map(|x| x.to_string())),
                    ("peer", ev.peer.as_deref().map(q)),
                    ("initiator", ev.initiator.map(|x| x.to_string())),
                    ("group", ev.group.map(|x| x.to_string())),
                    ("from", ev.from.as_deref().map(q)),
                    ("payload", ev.payload.as_deref().map(q)),
                    ("payload_hex", ev.payload_hex.as_deref().map(q)),
                    ("message_id", ev.message_id.map(|x| x.to_string())),
                    ("member", ev.member.as_deref().map(q)),
                    ("reason", ev.reason.as_deref().map(q)),
                    ("message", ev.message.as_deref().map(q)),
                ])
            );
        }
    }
    o.push_str(if v.checkpoints.is_empty() {
        "checkpoints: []\n"
    } else {
        "checkpoints:\n"
    });
    for cp in &v.checkpoints {
        let _ = writeln!(o, "- at_ms: {}", cp.at_ms);
        let _ = writeln!(o, "  after: {}", q(&cp.after));
        let _ = writeln!(o, "  session: {}", cp.session);
        o.push_str("  states:\n");
        for e in &v.endpoints {
            if let Some(s) = cp.states.get(&e.label) {
                let members: Vec<String> = s.members.iter().map(|m| q(m)).collect();
                let _ = writeln!(
                    o,
                    "    {}: {}",
                    e.label,
                    flow(&[
                        ("epoch", Some(s.epoch.to_string())),
                        ("epoch_authenticator", Some(q(&s.epoch_authenticator))),
                        ("members", Some(format!("[{}]", members.join(", ")))),
                    ])
                );
            }
        }
    }
    let _ = writeln!(o, "end_ms: {}", v.end_ms);
    o
}

// ---------------------------------------------------------------------------------------------
// Scenarios.

/// What a scenario runs with: everything the file's `config` and `endpoints` record.
#[derive(Debug, Clone)]
struct Setup {
    scenario: String,
    network_seed: u64,
    shared_secret: String,
    clock_unix: u64,
    mls: bool,
    reliability: Option<Reliability>,
    link: LinkProfile,
    /// (label, name) of each endpoint, in index order.
    endpoints: Vec<(String, String)>,
}

impl Setup {
    fn options(&self) -> SessionOptions {
        SessionOptions {
            mls: self.mls,
            reliable: self.reliability,
        }
    }

    fn config_rec(&self) -> ConfigRec {
        ConfigRec {
            network_seed: self.network_seed,
            shared_secret: self.shared_secret.clone(),
            clock_unix: self.clock_unix,
            mls: self.mls,
            reliability: self.reliability.map(|r| ReliabilityRec {
                interval_ms: u64::try_from(r.interval.as_millis()).unwrap_or(u64::MAX),
                max_retries: r.max_retries,
            }),
            link: LinkRec {
                loss: self.link.loss,
                duplicate: self.link.duplicate,
                delay_ms: u64::try_from(self.link.delay.as_millis()).unwrap_or(u64::MAX),
                jitter_ms: u64::try_from(self.link.jitter.as_millis()).unwrap_or(u64::MAX),
            },
        }
    }

    /// The setup a file records.
    fn from_file(file: &str, v: &VectorFile) -> Result<Self, VectorError> {
        if !SCENARIOS.contains(&v.scenario.as_str()) {
            return Err(VectorError::Invalid {
                file: file.to_string(),
                message: format!("unknown scenario {}", v.scenario),
            });
        }
        let c = &v.config;
        Ok(Setup {
            scenario: v.scenario.clone(),
            network_seed: c.network_seed,
            shared_secret: c.shared_secret.clone(),
            clock_unix: c.clock_unix,
            mls: c.mls,
            reliability: c.reliability.as_ref().map(|r| Reliability {
                interval: Duration::from_millis(r.interval_ms),
                max_retries: r.max_retries,
            }),
            link: LinkProfile {
                loss: c.link.loss,
                duplicate: c.link.duplicate,
                delay: Duration::from_millis(c.link.delay_ms),
                jitter: Duration::from_millis(c.link.jitter_ms),
            },
            endpoints: v
                .endpoints
                .iter()
                .map(|e| (e.label.clone(), e.name.clone()))
                .collect(),
        })
    }

    fn err(&self, message: impl Into<String>) -> VectorError {
        VectorError::Scenario {
            scenario: self.scenario.clone(),
            message: message.into(),
        }
    }
}

fn default_setup(scenario: &str) -> Result<Setup, VectorError> {
    let labels = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(l, n)| (l.to_string(), n.to_string()))
            .collect()
    };
    let reliability = Some(Reliability {
        interval: Duration::from_millis(500),
        max_retries: 10,
    });
    match scenario {
        "p2p-reliable-loss" => Ok(Setup {
            scenario: scenario.into(),
            network_seed: 7,
            shared_secret: "session-vectors-shared-secret-0123456789".into(),
            clock_unix: CLOCK_UNIX,
            // Without MLS: openmls's wall-clock check would make this vector expire
            // (VectorError::MlsClockWindow); the MLS path has its own vector.
            mls: false,
            reliability,
            link: LinkProfile {
                loss: 0.2,
                duplicate: 0.1,
                delay: Duration::from_millis(5),
                jitter: Duration::from_millis(40),
            },
            endpoints: labels(&[("A", "org/sim/alice"), ("B", "org/sim/bob")]),
        }),
        "group-lifecycle-mls" => Ok(Setup {
            scenario: scenario.into(),
            network_seed: 11,
            shared_secret: "session-vectors-shared-secret-0123456789".into(),
            clock_unix: CLOCK_UNIX,
            mls: true,
            reliability,
            link: LinkProfile {
                loss: 0.0,
                duplicate: 0.0,
                delay: Duration::from_millis(5),
                jitter: Duration::from_millis(3),
            },
            endpoints: labels(&[
                ("M", "org/sim/moderator"),
                ("P1", "org/sim/p1"),
                ("P2", "org/sim/p2"),
            ]),
        }),
        other => Err(VectorError::Scenario {
            scenario: other.into(),
            message: "no such scenario".into(),
        }),
    }
}

/// The machine's clock must be where openmls accepts the scenario's key packages.
fn check_mls_window(setup: &Setup) -> Result<(), VectorError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let valid_from = setup.clock_unix.saturating_sub(MLS_BACKDATE_SECS);
    let valid_until = setup
        .clock_unix
        .saturating_add(MLS_LIFETIME_SECS)
        .saturating_sub(MLS_RUN_MARGIN_SECS);
    if now < valid_from || now >= valid_until {
        return Err(VectorError::MlsClockWindow {
            scenario: setup.scenario.clone(),
            clock_unix: setup.clock_unix,
            valid_from,
            valid_until,
            now,
        });
    }
    Ok(())
}

/// Runs a scenario and records it.
fn record(setup: &Setup) -> Result<VectorFile, VectorError> {
    if setup.mls {
        check_mls_window(setup)?;
    }
    let mut run = Run::new(setup.clone())?;
    let description = match setup.scenario.as_str() {
        "p2p-reliable-loss" => p2p_reliable_loss(&mut run)?,
        "group-lifecycle-mls" => group_lifecycle_mls(&mut run)?,
        other => return Err(setup.err(format!("no such scenario {other}"))),
    };
    run.finish(description)
}

fn opened(e: &Event) -> bool {
    matches!(e, Event::SessionOpened { .. })
}

/// A reliable point-to-point session under loss, duplication and reordering.
fn p2p_reliable_loss(run: &mut Run) -> Result<String, VectorError> {
    const N: usize = 20;
    let peer = run.name_of(1)?;
    let sid = run.open_p2p(0, &peer)?;
    run.wait("the session opens at both ends", 60, |w| {
        count(w, 0, opened) > 0 && count(w, 1, opened) > 0
    })?;
    for k in 0..N {
        run.publish(0, sid, &format!("alice:{k}"))?;
        run.run_for(Duration::from_millis(20));
    }
    run.wait("A hears every message acknowledged", 120, |w| {
        count(w, 0, |e| matches!(e, Event::Delivered { .. })) >= N
    })?;
    run.run_for(Duration::from_secs(1));
    let want: Vec<String> = (0..N).map(|k| format!("alice:{k}")).collect();
    let got = payloads(&run.world, 1);
    if got != want {
        return Err(run.setup.err(format!(
            "B delivered {got:?}, not the {N} messages once each in order"
        )));
    }
    Ok(format!(
        "A opens a reliable point-to-point session (no MLS) to B over links that lose 20% of \
         packets, duplicate 10% and delay them 5-45 ms (so they reorder); A sends {N} messages \
         20 ms apart. B delivers all {N} once each, in order, and A sees each acknowledged."
    ))
}

/// An MLS group through its whole life, with data after each transition.
fn group_lifecycle_mls(run: &mut Run) -> Result<String, VectorError> {
    let (m, p1, p2) = (0, 1, 2);
    let sid = run.create_group(m, "org/sim/chat")?;
    run.run_for(Duration::from_millis(100));
    run.checkpoint("group created", sid)?;

    let p1_name = run.name_of(p1)?;
    run.invite(m, sid, &p1_name)?;
    run.wait("P1 joins", 30, |w| {
        count(w, p1, opened) == 1 && count(w, m, |e| matches!(e, Event::MemberJoined { .. })) == 1
    })?;
    run.run_for(Duration::from_millis(500));
    run.checkpoint("P1 joined", sid)?;
    run.publish(m, sid, "moderator:1")?;
    run.publish(p1, sid, "p1:1")?;
    run.run_for(Duration::from_secs(2));

    let p2_name = run.name_of(p2)?;
    run.invite(m, sid, &p2_name)?;
    run.wait("P2 joins", 30, |w| {
        count(w, p2, opened) == 1
            && count(w, m, |e| matches!(e, Event::MemberJoined { .. })) == 2
            && count(w, p1, |e| matches!(e, Event::MemberJoined { .. })) >= 1
    })?;
    run.run_for(Duration::from_millis(500));
    run.checkpoint("P2 joined", sid)?;
    run.publish(m, sid, "moderator:2")?;
    run.publish(p1, sid, "p1:2")?;
    run.publish(p2, sid, "p2:2")?;
    run.run_for(Duration::from_secs(2));

    let p2_full = run.world.name(p2).to_string();
    run.remove(m, sid, &p2_full)?;
    run.wait("P2 is removed", 30, |w| {
        count(w, p2, |e| matches!(e, Event::Removed { .. })) == 1
            && count(w, m, |e| matches!(e, Event::MemberLeft { .. })) == 1
    })?;
    run.run_for(Duration::from_millis(500));
    run.checkpoint("P2 removed", sid)?;
    run.publish(m, sid, "moderator:3")?;
    run.publish(p1, sid, "p1:3")?;
    run.run_for(Duration::from_secs(2));

    run.close(p1, sid)?;
    run.wait("P1 leaves", 30, |w| {
        count(w, m, |e| matches!(e, Event::MemberLeft { .. })) == 2
            && count(w, p1, |e| matches!(e, Event::SessionClosed { .. })) == 1
    })?;
    run.run_for(Duration::from_millis(500));
    run.checkpoint("P1 left", sid)?;
    run.close(m, sid)?;
    run.run_for(Duration::from_secs(2));

    let want: [(usize, &[&str]); 3] = [
        (m, &["p1:1", "p1:2", "p2:2", "p1:3"]),
        (p1, &["moderator:1", "moderator:2", "p2:2", "moderator:3"]),
        (p2, &["moderator:2", "p1:2"]),
    ];
    for (i, want) in want {
        let mut got = payloads(&run.world, i);
        got.sort();
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        if got != want {
            let label = &run.setup.endpoints[i].0;
            return Err(run
                .setup
                .err(format!("{label} delivered {got:?}, expected {want:?}")));
        }
    }
    Ok(
        "A moderator M creates an MLS group (reliable delivery), invites P1 then P2; after each \
         join every member sends one message; M removes P2, M and P1 send again; P1 leaves; M \
         closes the group. Checkpoints give every member's MLS epoch and epoch authenticator \
         after each transition."
            .into(),
    )
}

fn count(w: &World, i: usize, f: impl Fn(&Event) -> bool) -> usize {
    w.events[i].iter().filter(|(_, e)| f(e)).count()
}

fn payloads(w: &World, i: usize) -> Vec<String> {
    w.events[i]
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Message { payload, .. } => Some(String::from_utf8_lossy(payload).into_owned()),
            _ => None,
        })
        .collect()
}

/// A scenario being run and recorded.
struct Run {
    setup: Setup,
    world: World,
    t0: Instant,
    script: Vec<StepRec>,
    checkpoints: Vec<CheckpointRec>,
    last_command_at: Option<Ms>,
}

impl Run {
    fn new(setup: Setup) -> Result<Self, VectorError> {
        let t0 = Instant::now();
        let clock = Clock {
            at: t0,
            unix_secs: setup.clock_unix,
        };
        let mut eps = Vec::new();
        for (i, (label, name)) in setup.endpoints.iter().enumerate() {
            let name: SlimName = name
                .parse()
                .map_err(|e| setup.err(format!("endpoint {label}: name {name}: {e}")))?;
            let ep = Endpoint::new(EndpointConfig {
                name,
                credentials: Credentials::SharedSecret(setup.shared_secret.clone()),
                seed: World::endpoint_seed(setup.network_seed, i),
                clock,
                mls_crypto: CryptoBackend::RingDeterministicSignatures,
            })
            .map_err(|e| setup.err(format!("endpoint {label}: {e}")))?;
            eps.push(ep);
        }
        let mut world = World::from_endpoints(setup.network_seed, setup.link, t0, eps);
        world.trace = Some(Trace::default());
        Ok(Run {
            setup,
            world,
            t0,
            script: Vec::new(),
            checkpoints: Vec::new(),
            last_command_at: None,
        })
    }

    fn now(&self) -> Ms {
        Ms::since(self.t0, self.world.now)
    }

    fn name_of(&self, i: usize) -> Result<String, VectorError> {
        self.setup
            .endpoints
            .get(i)
            .map(|(_, n)| n.clone())
            .ok_or_else(|| self.setup.err(format!("no endpoint {i}")))
    }

    fn step(&self, i: usize, command: &str) -> StepRec {
        StepRec {
            at_ms: self.now(),
            endpoint: self.setup.endpoints[i].0.clone(),
            command: command.into(),
            peer: None,
            channel: None,
            session: None,
            payload: None,
            message_id: None,
        }
    }

    /// Runs `step` at endpoint `i` now, records it with its result.
    fn command(&mut self, i: usize, mut step: StepRec) -> Result<Option<u32>, VectorError> {
        let opts = self.setup.options();
        let now = self.world.now;
        let ep = self
            .world
            .eps
            .get_mut(i)
            .ok_or_else(|| self.setup.err(format!("no endpoint {i}")))?;
        let result = apply(ep, &step, &opts, now).map_err(|e| {
            self.setup
                .err(format!("{} {}: {e}", step.endpoint, step.command))
        })?;
        match step.command.as_str() {
            "publish" => step.message_id = result,
            "open_p2p" | "create_group" => step.session = result,
            _ => {}
        }
        self.last_command_at = Some(step.at_ms);
        self.script.push(step);
        Ok(result)
    }

    fn result(&self, r: Option<u32>, what: &str) -> Result<u32, VectorError> {
        r.ok_or_else(|| self.setup.err(format!("{what} returned nothing")))
    }

    fn open_p2p(&mut self, i: usize, peer: &str) -> Result<u32, VectorError> {
        let mut s = self.step(i, "open_p2p");
        s.peer = Some(peer.into());
        let r = self.command(i, s)?;
        self.result(r, "open_p2p")
    }

    fn create_group(&mut self, i: usize, channel: &str) -> Result<u32, VectorError> {
        let mut s = self.step(i, "create_group");
        s.channel = Some(channel.into());
        let r = self.command(i, s)?;
        self.result(r, "create_group")
    }

    fn invite(&mut self, i: usize, session: u32, peer: &str) -> Result<(), VectorError> {
        let mut s = self.step(i, "invite");
        s.session = Some(session);
        s.peer = Some(peer.into());
        self.command(i, s).map(drop)
    }

    fn remove(&mut self, i: usize, session: u32, peer: &str) -> Result<(), VectorError> {
        let mut s = self.step(i, "remove");
        s.session = Some(session);
        s.peer = Some(peer.into());
        self.command(i, s).map(drop)
    }

    fn publish(&mut self, i: usize, session: u32, payload: &str) -> Result<u32, VectorError> {
        let mut s = self.step(i, "publish");
        s.session = Some(session);
        s.payload = Some(payload.into());
        let r = self.command(i, s)?;
        self.result(r, "publish")
    }

    fn close(&mut self, i: usize, session: u32) -> Result<(), VectorError> {
        let mut s = self.step(i, "close");
        s.session = Some(session);
        self.command(i, s).map(drop)
    }

    fn run_for(&mut self, d: Duration) {
        self.world.run_for(d);
    }

    /// Runs until `done` holds, at most `limit_secs` of virtual time.
    fn wait(
        &mut self,
        what: &str,
        limit_secs: u64,
        done: impl Fn(&World) -> bool,
    ) -> Result<(), VectorError> {
        if self
            .world
            .run_while(Duration::from_secs(limit_secs), |w| !done(w))
        {
            Ok(())
        } else {
            Err(self
                .setup
                .err(format!("{what}: not within {limit_secs} s (virtual)")))
        }
    }

    /// Records every member's MLS state of `session`; they must agree.
    fn checkpoint(&mut self, after: &str, session: u32) -> Result<(), VectorError> {
        let at_ms = self.now();
        if self.last_command_at == Some(at_ms) {
            // The passive replay takes checkpoints before commands of the same instant.
            return Err(self
                .setup
                .err(format!("checkpoint {after:?} at the instant of a command")));
        }
        let mut states = BTreeMap::new();
        for (i, (label, _)) in self.setup.endpoints.iter().enumerate() {
            if let Ok(s) = self.world.eps[i].state_auth(session) {
                states.insert(label.clone(), state_rec(&s));
            }
        }
        let mut distinct: Vec<(u64, &str)> = states
            .values()
            .map(|s| (s.epoch, s.epoch_authenticator.as_str()))
            .collect();
        distinct.dedup();
        if distinct.len() > 1 {
            return Err(self
                .setup
                .err(format!("after {after:?} the members disagree: {states:?}")));
        }
        self.checkpoints.push(CheckpointRec {
            at_ms,
            after: after.into(),
            session,
            states,
        });
        Ok(())
    }

    fn finish(mut self, description: String) -> Result<VectorFile, VectorError> {
        for i in 0..self.world.eps.len() {
            self.world.drain(i);
        }
        let labels: Vec<String> = self
            .setup
            .endpoints
            .iter()
            .map(|(l, _)| l.clone())
            .collect();
        let trace = self.world.trace.take().unwrap_or_default();
        let mut arrivals: BTreeMap<u64, Vec<Ms>> = BTreeMap::new();
        for (at, seq) in &trace.arrived {
            arrivals
                .entry(*seq)
                .or_default()
                .push(Ms::since(self.t0, *at));
        }
        let frames = trace
            .sent
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let arrivals_ms = s
                    .seq
                    .and_then(|q| arrivals.get(&q))
                    .cloned()
                    .unwrap_or_default();
                let fate = match (s.fate, arrivals_ms.len()) {
                    (None, _) => "unrouted",
                    (Some(Fate::Lost), _) => "lost",
                    (Some(_), 0) => "in_flight",
                    (Some(Fate::Duplicated), _) => "duplicated",
                    (Some(Fate::Delivered), _) => "delivered",
                };
                FrameRec {
                    i,
                    tx: s.tx,
                    at_ms: Ms::since(self.t0, s.at),
                    from: labels[s.from].clone(),
                    to: s.to.map(|t| labels[t].clone()),
                    header: header_rec(&s.msg),
                    fate: fate.into(),
                    arrivals_ms,
                    hex: hex::encode(wire_bytes(&s.msg)),
                }
            })
            .collect();
        let mut events = BTreeMap::new();
        for (i, label) in labels.iter().enumerate() {
            let evs = self.world.events[i]
                .iter()
                .map(|(at, e)| event_rec(Ms::since(self.t0, *at), e))
                .collect();
            events.insert(label.clone(), evs);
        }
        let endpoints = self
            .setup
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, (label, name))| EndpointRec {
                label: label.clone(),
                name: name.clone(),
                full_name: self.world.name(i).to_string(),
                seed: hex::encode(World::endpoint_seed(self.setup.network_seed, i)),
            })
            .collect();
        Ok(VectorFile {
            schema: SCHEMA,
            scenario: self.setup.scenario.clone(),
            description,
            config: self.setup.config_rec(),
            endpoints,
            script: self.script,
            frames,
            events,
            checkpoints: self.checkpoints,
            end_ms: Ms::since(self.t0, self.world.now),
        })
    }
}

/// Runs one recorded command on an endpoint; returns its result (a session id or message id).
fn apply(
    ep: &mut Endpoint,
    step: &StepRec,
    opts: &SessionOptions,
    now: Instant,
) -> Result<Option<u32>, String> {
    let name = |v: &Option<String>, what: &str| -> Result<SlimName, String> {
        let text = v.as_deref().ok_or_else(|| format!("no {what}"))?;
        text.parse()
            .map_err(|e| format!("{what} {text:?} is not a name: {e}"))
    };
    let session = || step.session.ok_or_else(|| "no session".to_string());
    let r = match step.command.as_str() {
        "open_p2p" => ep.open_p2p(name(&step.peer, "peer")?, opts.clone(), now),
        "create_group" => ep.create_group(name(&step.channel, "channel")?, opts.clone(), now),
        "invite" => ep
            .invite(session()?, name(&step.peer, "peer")?, now)
            .map(|()| 0),
        "remove" => ep
            .remove(session()?, &name(&step.peer, "peer")?, now)
            .map(|()| 0),
        "publish" => {
            let payload = step.payload.clone().ok_or("no payload")?;
            ep.publish(session()?, Bytes::from(payload), now)
        }
        "close" => ep.close(session()?, now).map(|()| 0),
        other => return Err(format!("unknown command {other:?}")),
    };
    let r = r.map_err(|e| e.to_string())?;
    Ok(match step.command.as_str() {
        "open_p2p" | "create_group" | "publish" => Some(r),
        _ => None,
    })
}

/// One `Message.metadata` entry (`map<string, string>` field 4 is a repeated message of this
/// shape on the wire).
#[derive(Clone, PartialEq, prost::Message)]
struct MetadataEntry {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
}

/// The bytes of a Message with its metadata entries in key order. prost keeps a protobuf map
/// in a `HashMap`, so with two or more entries (a signed LeaveRequest carries
/// `LEAVING_SESSION` and `slim-payload-sig`) its encoding changes from run to run; every other
/// field comes before `metadata` (field 4) in prost's output, so this is exactly prost's
/// encoding whenever the map happens to iterate in key order, and always with 0 or 1 entries.
pub fn wire_bytes(msg: &pb::Message) -> Vec<u8> {
    let mut bare = msg.clone();
    let metadata: BTreeMap<String, String> =
        std::mem::take(&mut bare.metadata).into_iter().collect();
    let mut buf = bare.encode_to_vec();
    for (key, value) in metadata {
        let entry = MetadataEntry { key, value };
        buf.push(0x22); // field 4, length-delimited
        prost::encoding::encode_varint(entry.encoded_len() as u64, &mut buf);
        entry.encode_raw(&mut buf);
    }
    buf
}

fn header_rec(msg: &pb::Message) -> Option<HeaderRec> {
    let m = super::wire::inbound(msg).ok()?;
    Some(HeaderRec {
        session_type: m.session_type.as_str_name().into(),
        kind: m.kind.as_str_name().into(),
        session_id: m.session_id,
        message_id: m.message_id,
    })
}

fn state_rec(s: &super::StateAuth) -> StateRec {
    StateRec {
        epoch: s.epoch,
        epoch_authenticator: hex::encode(&s.epoch_authenticator),
        members: s.members.iter().map(ToString::to_string).collect(),
    }
}

fn event_rec(at_ms: Ms, e: &Event) -> EventRec {
    let mut r = EventRec {
        at_ms,
        event: String::new(),
        session: None,
        peer: None,
        initiator: None,
        group: None,
        from: None,
        payload: None,
        payload_hex: None,
        message_id: None,
        member: None,
        reason: None,
        message: None,
    };
    let (event, session) = match e {
        Event::SessionOpened {
            session,
            peer,
            initiator,
            group,
        } => {
            r.peer = Some(peer.to_string());
            r.initiator = Some(*initiator);
            r.group = Some(*group);
            ("session_opened", Some(*session))
        }
        Event::Message {
            session,
            from,
            payload,
        } => {
            r.from = Some(from.to_string());
            match std::str::from_utf8(payload) {
                Ok(text) => r.payload = Some(text.to_string()),
                Err(_) => r.payload_hex = Some(hex::encode(payload)),
            }
            ("message", Some(*session))
        }
        Event::Delivered {
            session,
            message_id,
        } => {
            r.message_id = Some(*message_id);
            ("delivered", Some(*session))
        }
        Event::SendFailed {
            session,
            message_id,
            peer,
        } => {
            r.message_id = Some(*message_id);
            r.peer = Some(peer.to_string());
            ("send_failed", Some(*session))
        }
        Event::MemberJoined { session, member } => {
            r.member = Some(member.to_string());
            ("member_joined", Some(*session))
        }
        Event::MemberLeft { session, member } => {
            r.member = Some(member.to_string());
            ("member_left", Some(*session))
        }
        Event::Removed { session } => ("removed", Some(*session)),
        Event::SessionClosed { session, reason } => {
            r.reason = Some(reason.clone());
            ("session_closed", Some(*session))
        }
        Event::Error { session, message } => {
            r.message = Some(message.clone());
            ("error", *session)
        }
    };
    r.event = event.into();
    r.session = session;
    // The same normalisation a round trip through the file gives.
    r
}

// ---------------------------------------------------------------------------------------------
// Verification.

#[derive(Default)]
struct Tally {
    checked: usize,
    failures: Vec<CheckFailure>,
}

impl Tally {
    fn check(
        &mut self,
        ok: bool,
        replay: &str,
        frame: Option<usize>,
        what: impl FnOnce() -> String,
    ) {
        self.checked += 1;
        if !ok {
            self.failures.push(CheckFailure {
                replay: replay.into(),
                frame,
                what: what(),
            });
        }
    }

    fn fail(&mut self, replay: &str, frame: Option<usize>, what: String) {
        self.check(false, replay, frame, || what);
    }

    fn report(self, file: &str) -> SessionFileReport {
        SessionFileReport {
            file: file.into(),
            checked: self.checked,
            passed: self.checked - self.failures.len(),
            failures: self.failures,
        }
    }
}

/// Where two hex strings first differ, as a byte offset.
fn first_difference(a: &str, b: &str) -> String {
    match a.bytes().zip(b.bytes()).position(|(x, y)| x != y) {
        Some(p) => format!("byte {} differs", p / 2),
        None => format!("lengths differ ({} vs {} bytes)", a.len() / 2, b.len() / 2),
    }
}

fn frame_difference(a: &FrameRec, b: &FrameRec) -> Option<String> {
    if a.hex != b.hex {
        return Some(format!(
            "hex: {} between the file and the replay",
            first_difference(&a.hex, &b.hex)
        ));
    }
    let fields: [(&str, bool); 8] = [
        ("i", a.i == b.i),
        ("tx", a.tx == b.tx),
        ("at_ms", a.at_ms == b.at_ms),
        ("from", a.from == b.from),
        ("to", a.to == b.to),
        ("header", a.header == b.header),
        ("fate", a.fate == b.fate),
        ("arrivals_ms", a.arrivals_ms == b.arrivals_ms),
    ];
    fields
        .iter()
        .find(|(_, same)| !same)
        .map(|(f, _)| format!("{f} differs between the file and the replay"))
}

/// Check (a): the whole scenario, replayed from the file's seeds and config, records the same.
fn compare_replay(file: &VectorFile, replay: &VectorFile, t: &mut Tally) {
    const R: &str = "replay";
    t.check(file.endpoints == replay.endpoints, R, None, || {
        format!(
            "endpoints (full names, seeds): file {:?}, replay {:?}",
            file.endpoints, replay.endpoints
        )
    });
    t.check(file.script.len() == replay.script.len(), R, None, || {
        format!(
            "{} script steps in the file, {} in the replay",
            file.script.len(),
            replay.script.len()
        )
    });
    for (k, (a, b)) in file.script.iter().zip(&replay.script).enumerate() {
        t.check(a == b, R, None, || {
            format!("script step {k}: file {a:?}, replay {b:?}")
        });
    }
    t.check(file.frames.len() == replay.frames.len(), R, None, || {
        format!(
            "{} frames in the file, {} in the replay",
            file.frames.len(),
            replay.frames.len()
        )
    });
    for (k, (a, b)) in file.frames.iter().zip(&replay.frames).enumerate() {
        let diff = frame_difference(a, b);
        t.check(diff.is_none(), R, Some(k), || diff.unwrap_or_default());
    }
    for label in file.events.keys().chain(replay.events.keys()) {
        let a = file.events.get(label).map(Vec::as_slice).unwrap_or(&[]);
        let b = replay.events.get(label).map(Vec::as_slice).unwrap_or(&[]);
        compare_events(&format!("replay {label}"), a, b, t);
    }
    t.check(
        file.checkpoints.len() == replay.checkpoints.len(),
        R,
        None,
        || {
            format!(
                "{} checkpoints in the file, {} in the replay",
                file.checkpoints.len(),
                replay.checkpoints.len()
            )
        },
    );
    for (a, b) in file.checkpoints.iter().zip(&replay.checkpoints) {
        t.check(a == b, R, None, || {
            format!("checkpoint {:?}: file {a:?}, replay {b:?}", a.after)
        });
    }
    t.check(file.end_ms == replay.end_ms, R, None, || {
        format!("end_ms: file {}, replay {}", file.end_ms, replay.end_ms)
    });
}

fn compare_events(replay: &str, want: &[EventRec], got: &[EventRec], t: &mut Tally) {
    t.check(want.len() == got.len(), replay, None, || {
        format!(
            "{} events in the file, {} in the replay",
            want.len(),
            got.len()
        )
    });
    for (k, (a, b)) in want.iter().zip(got).enumerate() {
        t.check(a == b, replay, None, || {
            format!("event {k}: file {a:?}, replay {b:?}")
        });
    }
}

/// One input of a passive replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Input {
    /// A copy of a frame arrives (deliveries of one instant come first, in frame order).
    Deliver(usize),
    /// Compare the MLS state with a checkpoint.
    Checkpoint(usize),
    /// The application's command (script index).
    Command(usize),
}

/// Check (b): endpoint `i` alone, fed the frames delivered to it, its own commands and its own
/// timers, tells its application the same things, sends the same bytes and reaches the same
/// MLS states.
fn passive(file: &VectorFile, i: usize, t: &mut Tally) {
    let rec = &file.endpoints[i];
    let label = rec.label.as_str();
    let replay = format!("passive {label}");
    let mut failures = 0usize;
    let mut check = |t: &mut Tally, ok: bool, frame: Option<usize>, what: &dyn Fn() -> String| {
        if !ok {
            failures += 1;
        }
        t.check(ok, &replay, frame, what);
        failures < MAX_FAILURES_PER_REPLAY
    };

    let seed: Result<[u8; 32], String> = hex::decode(&rec.seed)
        .map_err(|e| e.to_string())
        .and_then(|b| b.try_into().map_err(|_| "not 32 bytes".to_string()));
    let name: Result<SlimName, String> = rec.name.parse().map_err(|e| format!("{e}"));
    let (seed, name) = match (seed, name) {
        (Ok(s), Ok(n)) => (s, n),
        (s, n) => {
            t.fail(
                &replay,
                None,
                format!(
                    "bad endpoint record: seed {:?}, name {:?}",
                    s.err(),
                    n.err()
                ),
            );
            return;
        }
    };
    let t0 = Instant::now();
    let mut ep = match Endpoint::new(EndpointConfig {
        name,
        credentials: Credentials::SharedSecret(file.config.shared_secret.clone()),
        seed,
        clock: Clock {
            at: t0,
            unix_secs: file.config.clock_unix,
        },
        mls_crypto: CryptoBackend::RingDeterministicSignatures,
    }) {
        Ok(ep) => ep,
        Err(e) => {
            t.fail(&replay, None, format!("cannot build the endpoint: {e}"));
            return;
        }
    };
    if !check(
        t,
        ep.local_name().to_string() == rec.full_name,
        None,
        &|| format!("full name {} (file: {})", ep.local_name(), rec.full_name),
    ) {
        return;
    }
    let opts = SessionOptions {
        mls: file.config.mls,
        reliable: file.config.reliability.as_ref().map(|r| Reliability {
            interval: Duration::from_millis(r.interval_ms),
            max_retries: r.max_retries,
        }),
    };

    // The inputs, in the order the simulation gave them.
    let mut inputs: Vec<(Ms, Input)> = Vec::new();
    for (k, f) in file.frames.iter().enumerate() {
        if f.to.as_deref() == Some(label) {
            inputs.extend(f.arrivals_ms.iter().map(|at| (*at, Input::Deliver(k))));
        }
    }
    for (k, c) in file.checkpoints.iter().enumerate() {
        inputs.push((c.at_ms, Input::Checkpoint(k)));
    }
    for (k, s) in file.script.iter().enumerate() {
        if s.endpoint == label {
            inputs.push((s.at_ms, Input::Command(k)));
        }
    }
    inputs.sort();

    let mut events: Vec<EventRec> = Vec::new();
    let mut sent: Vec<String> = Vec::new();
    let mut last = Ms(0);
    let mut firings = 0usize;
    let drain = |ep: &mut Endpoint, at: Ms, events: &mut Vec<EventRec>, sent: &mut Vec<String>| {
        while let Some(x) = ep.poll_transmit() {
            if let Transmit::Publish(m) = x {
                sent.push(hex::encode(wire_bytes(&m)));
            }
        }
        while let Some(e) = ep.poll_event() {
            events.push(event_rec(at, &e));
        }
    };
    // Fires our timers due before `until` (or at it, when `inclusive`), as the simulation did:
    // each at its deadline (or at the current time if that is later).
    let mut fire = |ep: &mut Endpoint,
                    until: Ms,
                    inclusive: bool,
                    last: &mut Ms,
                    events: &mut Vec<EventRec>,
                    sent: &mut Vec<String>|
     -> bool {
        while let Some(d) = ep.poll_timeout() {
            let d = Ms::since(t0, d);
            if d > until || (d == until && !inclusive) {
                break;
            }
            firings += 1;
            if firings > MAX_TIMER_FIRINGS {
                return false;
            }
            let at = d.max(*last);
            ep.handle_timeout(at.at(t0));
            drain(ep, at, events, sent);
            *last = at;
        }
        true
    };

    for (at, input) in inputs {
        let inclusive = !matches!(input, Input::Deliver(_));
        if !fire(&mut ep, at, inclusive, &mut last, &mut events, &mut sent) {
            t.fail(&replay, None, "timers never settle".into());
            return;
        }
        last = last.max(at);
        match input {
            Input::Deliver(k) => {
                let msg = hex::decode(&file.frames[k].hex)
                    .map_err(|e| e.to_string())
                    .and_then(|b| pb::Message::decode(b.as_slice()).map_err(|e| e.to_string()));
                match msg {
                    Ok(m) => {
                        ep.handle_message(m, at.at(t0));
                        drain(&mut ep, at, &mut events, &mut sent);
                    }
                    Err(e) => {
                        if !check(t, false, Some(k), &|| format!("not a Message: {e}")) {
                            return;
                        }
                    }
                }
            }
            Input::Checkpoint(k) => {
                let cp = &file.checkpoints[k];
                let got = ep.state_auth(cp.session).ok().map(|s| state_rec(&s));
                let want = cp.states.get(label);
                if !check(t, got.as_ref() == want, None, &|| {
                    format!(
                        "checkpoint {:?}: MLS state {got:?}, file {want:?}",
                        cp.after
                    )
                }) {
                    return;
                }
            }
            Input::Command(k) => {
                let step = &file.script[k];
                let r = apply(&mut ep, step, &opts, at.at(t0));
                drain(&mut ep, at, &mut events, &mut sent);
                let want = match step.command.as_str() {
                    "publish" => step.message_id,
                    "open_p2p" | "create_group" => step.session,
                    _ => None,
                };
                let ok = r.as_ref().is_ok_and(|r| *r == want);
                if !check(t, ok, None, &|| {
                    format!("script step {k} ({}): {r:?}, file {want:?}", step.command)
                }) {
                    return;
                }
            }
        }
    }
    if !fire(
        &mut ep,
        file.end_ms,
        true,
        &mut last,
        &mut events,
        &mut sent,
    ) {
        t.fail(&replay, None, "timers never settle".into());
        return;
    }

    // What it sent: one copy of each of its transmissions.
    let mut want_sent: Vec<(usize, &str)> = Vec::new();
    let mut seen_tx = None;
    for (k, f) in file.frames.iter().enumerate() {
        if f.from == label && seen_tx != Some(f.tx) {
            want_sent.push((k, f.hex.as_str()));
            seen_tx = Some(f.tx);
        }
    }
    for (n, (k, want)) in want_sent.iter().enumerate() {
        let got = sent.get(n).map(String::as_str);
        let ok = got == Some(*want);
        if !check(t, ok, Some(*k), &|| match got {
            Some(g) => format!("sent differently: {}", first_difference(want, g)),
            None => "never sent".into(),
        }) {
            return;
        }
    }
    if !check(t, sent.len() == want_sent.len(), None, &|| {
        format!(
            "sent {} Publishes, the file has {}",
            sent.len(),
            want_sent.len()
        )
    }) {
        return;
    }
    let want = file.events.get(label).map(Vec::as_slice).unwrap_or(&[]);
    if !check(t, events.len() == want.len(), None, &|| {
        format!("{} events, the file has {}", events.len(), want.len())
    }) {
        return;
    }
    for (k, (a, b)) in want.iter().zip(&events).enumerate() {
        if !check(t, a == b, None, &|| {
            format!("event {k}: file {a:?}, replay {b:?}")
        }) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../vectors/sessions")
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "slim-session-vectors-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    #[test]
    fn wire_bytes_is_prost_with_metadata_in_key_order() {
        let mut m = pb::Message::default();
        assert_eq!(wire_bytes(&m), m.encode_to_vec());
        m.metadata.insert("only".into(), "one".into());
        assert_eq!(
            wire_bytes(&m),
            m.encode_to_vec(),
            "one entry: prost's bytes"
        );
        m.metadata.insert("a".into(), String::new());
        m.metadata.insert("z".into(), "last".into());
        let bytes = wire_bytes(&m);
        assert_eq!(pb::Message::decode(bytes.as_slice()).expect("decodes"), m);
        let mut again = pb::Message::default();
        for (k, v) in [("z", "last"), ("only", "one"), ("a", "")] {
            again.metadata.insert(k.into(), v.into());
        }
        assert_eq!(wire_bytes(&again), bytes, "independent of insertion order");
    }

    #[test]
    fn generate_twice_is_byte_identical_and_equals_the_committed_vectors() {
        let one = scratch("gen1");
        let two = scratch("gen2");
        let written = generate(&one).expect("generate");
        generate(&two).expect("generate");
        assert_eq!(written.len(), SCENARIOS.len());
        for s in SCENARIOS {
            let f = format!("{s}.yaml");
            let a = std::fs::read(one.join(&f)).expect("read");
            let b = std::fs::read(two.join(&f)).expect("read");
            assert!(
                a == b,
                "{f} differs between two generations of the same seeds"
            );
            let committed = std::fs::read(committed().join(&f)).unwrap_or_default();
            assert!(
                a == committed,
                "vectors/sessions/{f} is not what the session core puts on the wire now. If the \
                 change is deliberate, run `{REGENERATE}` and review the diff of \
                 vectors/sessions/ before committing it"
            );
        }
        let _ = std::fs::remove_dir_all(one);
        let _ = std::fs::remove_dir_all(two);
    }

    #[test]
    fn the_committed_vectors_verify() {
        let report = verify(&committed()).expect("verify");
        for f in &report.per_file {
            assert!(f.checked > 50, "{}: only {} checks", f.file, f.checked);
            assert!(f.failures.is_empty(), "{}: {:#?}", f.file, f.failures);
            assert_eq!(f.passed, f.checked);
        }
        assert!(report.ok());
    }

    #[test]
    fn a_flipped_byte_in_one_frame_fails_verify_naming_the_frame() {
        let file = "p2p-reliable-loss.yaml";
        let text = std::fs::read_to_string(committed().join(file)).expect("read");
        let v = parse(file, &text).expect("parse");
        // A data frame that was delivered, so both replays see it.
        let k = v
            .frames
            .iter()
            .position(|f| {
                f.fate == "delivered"
                    && f.header
                        .as_ref()
                        .is_some_and(|h| h.kind == "SESSION_MESSAGE_TYPE_MSG")
                    && f.from == "A"
            })
            .expect("a delivered data frame");
        let hex = &v.frames[k].hex;
        let at = hex.len() - 2;
        let flipped_char = if &hex[at..at + 1] == "0" { "1" } else { "0" };
        let mut corrupted = hex.clone();
        corrupted.replace_range(at..at + 1, flipped_char);
        let text = text.replacen(
            &format!("hex: \"{hex}\""),
            &format!("hex: \"{corrupted}\""),
            1,
        );
        let report = verify_text(file, &text).expect("verify");
        assert!(!report.failures.is_empty(), "a corrupted frame must fail");
        let named: Vec<String> = report
            .failures
            .iter()
            .filter(|f| f.frame == Some(k))
            .map(ToString::to_string)
            .collect();
        assert!(
            named
                .iter()
                .any(|f| f.starts_with("replay: frame") && f.contains("hex")),
            "the replay names frame {k}: {:#?}",
            report.failures
        );
        assert!(report.passed < report.checked);
    }
}
