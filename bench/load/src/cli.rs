//! The command line: `run`, `vs`, `compare`, `null-relay`, `session`, `revocation`,
//! `revocation-epoch` and `soak`.

use std::io::{IsTerminal as _, Write};
use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};

use crate::compare;
use crate::error::BenchError;
use crate::null_relay;
use crate::pace::Pacing;
use crate::result::{
    fmt_num, loss_warning, print_run, Metrics, Params, ResultFile, TargetResult, METRICS,
};
use crate::run::{run, RunConfig};
use crate::scenario::Scenario;

/// slim-bench: load, latency, loss and duplicates of SLIM nodes over real gRPC.
#[derive(Debug, Parser)]
#[command(name = "slim-bench", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Measure one node with one scenario.
    Run(RunArgs),
    /// Measure two nodes alternately (A B A B …) and report medians and A/B ratios.
    Vs(VsArgs),
    /// Compare two result files (new/old per metric, with a noise check).
    Compare(CompareArgs),
    /// Draw one metric of many result files as grouped bars (a group per scenario, a bar per
    /// system): the plots of bench/SEED.md.
    Plot(PlotArgs),
    /// Serve a "null relay": negotiates, acks and broadcasts every Publish (NOT a SLIM node).
    NullRelay(NullRelayArgs),
    /// Reliable point-to-point session throughput of the reference client through a node.
    Session(SessionArgs),
    /// Time from a revocation-list change to the end of the revoked client's stream.
    Revocation(RevocationArgs),
    /// Time from RevokeIdentity to the next MLS epoch at every remaining member of a group.
    RevocationEpoch(RevocationEpochArgs),
    /// Long run under churn (connect/subscribe/publish/unsubscribe/disconnect and MLS groups
    /// adding and removing members); fails if memory, fds, tasks or tables grow, or on a leak.
    Soak(SoakArgs),
}

/// `slim-bench soak`.
#[derive(Debug, Args)]
pub struct SoakArgs {
    /// Another node (default: the reference relay embedded in this process). Its tables are
    /// then not visible: only the client-side checks apply.
    #[arg(long)]
    pub target: Option<String>,
    /// How long the load runs (`60s`, `10m`, `1h`).
    #[arg(long, default_value = "60s", value_parser = crate::soak::parse_duration)]
    pub duration: std::time::Duration,
    /// Churning clients.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Reliable MLS group sessions that keep adding and removing members.
    #[arg(long, default_value_t = 2)]
    pub groups: usize,
    /// Participant apps per group (the group holds 1..=N of them plus its moderator).
    #[arg(long, default_value_t = 6)]
    pub members: usize,
    /// Sampling period.
    #[arg(long, default_value = "1s", value_parser = crate::soak::parse_duration)]
    pub sample_every: std::time::Duration,
    /// Samples before this are not judged (default: a third of --duration, 10 s to 20 min).
    #[arg(long, value_parser = crate::soak::parse_duration)]
    pub warmup: Option<std::time::Duration>,
    /// Longest random pause between two cycles of a churn client, ms.
    #[arg(long, default_value_t = 400)]
    pub pause_ms: u64,
    /// Longest random pause between two membership changes of a group, ms.
    #[arg(long, default_value_t = 500)]
    pub group_pause_ms: u64,
    /// Seed of the pauses and choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Bound for each wait (a message, a join, a removal, an ack).
    #[arg(long, default_value = "30s", value_parser = crate::soak::parse_duration)]
    pub timeout: std::time::Duration,
    /// Write the result (`slim-bench/soak/v1`, every sample) to this file.
    #[arg(long)]
    pub json: Option<String>,
    /// Test hook: every 4th churn cycle keeps its link subscribed and open (a seeded route
    /// leak), to prove the checks fail.
    #[arg(long, hide = true)]
    pub inject_leak: bool,
}

/// `slim-bench revocation-epoch`.
#[derive(Debug, Args)]
pub struct RevocationEpochArgs {
    /// The node the apps connect to (default: the reference relay embedded in this process).
    #[arg(long)]
    pub target: Option<String>,
    /// A driver service (spec/DRIVER.md) hosting the apps, e.g. `http://127.0.0.1:50051`
    /// (default: the reference client's driver embedded in this process).
    #[arg(long)]
    pub driver: Option<String>,
    /// Group size at every revocation, moderator included (at least 3).
    #[arg(long, default_value_t = 16)]
    pub members: usize,
    /// Revocations, one per round (a new participant replaces each revoked one).
    #[arg(long, default_value_t = 20)]
    pub rounds: usize,
    /// How the end of a round is seen: `event` (MemberLeft on every remaining member, checked
    /// with StateAuth) or `poll` (StateAuth polled every --poll-ms).
    #[arg(long, value_enum, default_value = "event")]
    pub signal: crate::revocation_epoch::Signal,
    /// `revoke` (RevokeIdentity with the member's subject) or `remove` (a plain Remove by
    /// name: the baseline a revocation adds to).
    #[arg(long, value_enum, default_value = "revoke")]
    pub via: crate::revocation_epoch::Via,
    /// StateAuth polling interval, ms.
    #[arg(long, default_value_t = 2.0)]
    pub poll_ms: f64,
    /// Bound for each driver call and each round, seconds.
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
    /// Write the result (`slim-bench/revocation-epoch/v1`) to this file.
    #[arg(long)]
    pub json: Option<String>,
}

/// `slim-bench revocation`.
#[derive(Debug, Args)]
pub struct RevocationArgs {
    /// Another node (default: the reference relay embedded in this process, configured by the
    /// benchmark). Needs --revocation-file and --signing-key.
    #[arg(long, requires_all = ["revocation_file", "signing_key"])]
    pub target: Option<String>,
    /// With --target: the revocation list file the node watches (rewritten by the benchmark).
    #[arg(long, requires = "target")]
    pub revocation_file: Option<std::path::PathBuf>,
    /// With --target: PKCS#8 PEM of the P-256 (ES256) key whose public key the node trusts.
    #[arg(long, requires = "target")]
    pub signing_key: Option<std::path::PathBuf>,
    /// With --target: the tokens' `iss`.
    #[arg(long, requires = "target")]
    pub issuer: Option<String>,
    /// With --target: the tokens' `aud`.
    #[arg(long, requires = "target")]
    pub audience: Option<String>,
    /// Live authenticated links at every revocation (each revoked one is replaced).
    #[arg(long, default_value_t = 100)]
    pub streams: usize,
    /// Revocations, one after the other.
    #[arg(long, default_value_t = 100)]
    pub revocations: usize,
    /// Which claim each revocation names.
    #[arg(long, value_enum, default_value = "sub")]
    pub by: crate::revocation::RevokeBy,
    /// Random pause of 0..N ms before each rename, so renames land at random phases of a node
    /// that polls the file (the reference relay: every 50 ms).
    #[arg(long, default_value_t = 50.0)]
    pub jitter_ms: f64,
    /// Seconds a revoked stream may take to end before it counts as missed.
    #[arg(long, default_value_t = 5.0)]
    pub timeout: f64,
    /// Write the result (`slim-bench/revocation/v1`) to this file.
    #[arg(long)]
    pub json: Option<String>,
}

/// `slim-bench session`.
#[derive(Debug, Args)]
pub struct SessionArgs {
    /// The node, e.g. `http://127.0.0.1:46357`.
    #[arg(
        long,
        required_unless_present = "embedded",
        conflicts_with = "embedded"
    )]
    pub target: Option<String>,
    /// Start the reference relay in this process on an ephemeral port and go through it.
    #[arg(long)]
    pub embedded: bool,
    /// Messages to send.
    #[arg(long, default_value_t = 20_000)]
    pub msgs: u64,
    /// Payload bytes (at least 8).
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    /// MLS end-to-end encryption on.
    #[arg(long)]
    pub mls: bool,
    /// Who does the MLS cryptography: `ring` (the fast path, the default) or `rustcrypto` (the
    /// pure-Rust provider it replaced, to compare with).
    #[arg(long, value_enum, default_value_t = MlsCryptoArg::Ring, requires = "mls")]
    pub mls_crypto: MlsCryptoArg,
    /// Bound for the whole run, seconds.
    #[arg(long, default_value_t = 120.0)]
    pub timeout: f64,
    /// Write the result (`slim-bench/session/v1`) to this file.
    #[arg(long)]
    pub json: Option<String>,
}

/// The MLS backends `slim-bench session --mls-crypto` chooses from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MlsCryptoArg {
    /// ring for signatures, AEAD, hashing and HKDF (RustCrypto for HPKE).
    Ring,
    /// RustCrypto (`openmls_rust_crypto`) for everything.
    Rustcrypto,
}

impl MlsCryptoArg {
    /// The client's backend.
    pub fn backend(self) -> slim_reference::mls::CryptoBackend {
        match self {
            MlsCryptoArg::Ring => slim_reference::mls::CryptoBackend::Ring,
            MlsCryptoArg::Rustcrypto => slim_reference::mls::CryptoBackend::RustCrypto,
        }
    }
}

/// The scenario flags shared by `run` and `vs`.
#[derive(Debug, Clone, Args)]
pub struct ScenarioArgs {
    /// Traffic pattern.
    #[arg(long, value_enum, default_value = "p2p")]
    pub scenario: Scenario,
    /// Payload bytes per message (at least 24).
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    /// Measured messages per publisher.
    #[arg(long, default_value_t = 100_000)]
    pub msgs: u64,
    /// Publishing clients.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Subscribing clients (p2p: must equal --publishers).
    #[arg(long, default_value_t = 1)]
    pub subscribers: usize,
    /// Total messages per second, paced across publishers; default: as fast as the window allows.
    #[arg(long)]
    pub rate: Option<f64>,
    /// With --rate: `smooth` (default) sends each message at its due time (busy generator
    /// core), `timer` sleeps on tokio's 1 ms timer, so the messages due within a tick leave
    /// together.
    #[arg(long, value_enum, requires = "rate")]
    pub pacing: Option<Pacing>,
    /// Warm-up messages per publisher, checked for loss but not measured.
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// Messages in flight (sent, not yet delivered) across all publishers.
    #[arg(long, default_value_t = 512)]
    pub window: usize,
    /// Seconds without a new delivery after which the rest counts as lost.
    #[arg(long, default_value_t = 5.0)]
    pub drain_timeout: f64,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl ScenarioArgs {
    fn params(&self) -> Params {
        Params {
            scenario: self.scenario,
            size: self.size,
            msgs: self.msgs,
            publishers: self.publishers,
            subscribers: self.subscribers,
            rate: self.rate,
            pacing: self.rate.map(|_| self.pacing.unwrap_or_default()),
            warmup: self.warmup,
            window: self.window,
            drain_timeout_s: self.drain_timeout,
        }
    }
}

/// `slim-bench run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The node, e.g. `http://127.0.0.1:46357`, or a broker: `nats://…`, `jetstream://…`,
    /// `mqtt://…?qos=N`, `amqp://…[?confirm=true]`, `kafka://…` (host and port each).
    #[arg(
        long,
        required_unless_present = "embedded",
        conflicts_with = "embedded"
    )]
    pub target: Option<String>,
    /// Start the reference relay in this process on an ephemeral port and measure it.
    #[arg(long)]
    pub embedded: bool,
    /// The node's process id: report its CPU seconds during the run and its peak RSS.
    #[arg(long)]
    pub target_pid: Option<u32>,
    /// What the target is, in words, recorded in the result file for tables and plots (e.g.
    /// "mosquitto 2.0.11 QoS 1").
    #[arg(long)]
    pub system: Option<String>,
    /// Rounds, one after another; the result file keeps every round and their medians, and the
    /// table shows the median round (by msgs/s).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,
    /// Write the result (`slim-bench/result/v1`) to this file.
    #[arg(long)]
    pub json: Option<String>,
    /// Scenario flags.
    #[command(flatten)]
    pub scenario: ScenarioArgs,
}

/// `slim-bench vs`.
#[derive(Debug, Args)]
pub struct VsArgs {
    /// Node A (`http://…` for a SLIM node, `nats://…` for a NATS server).
    #[arg(long)]
    pub a: String,
    /// Node B (`http://…` or `nats://…`).
    #[arg(long)]
    pub b: String,
    /// What A is, in words, for tables and plots (e.g. "slim-relay").
    #[arg(long)]
    pub a_system: Option<String>,
    /// What B is, in words (e.g. "SLIM node 3.4.6").
    #[arg(long)]
    pub b_system: Option<String>,
    /// Process id of node A (CPU and peak RSS).
    #[arg(long)]
    pub a_pid: Option<u32>,
    /// Process id of node B (CPU and peak RSS).
    #[arg(long)]
    pub b_pid: Option<u32>,
    /// Rounds per node (at least 5, so the median means something).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(5..))]
    pub rounds: u32,
    /// Write the result (`slim-bench/result/v1`, both targets, every round) to this file.
    #[arg(long)]
    pub json: Option<String>,
    /// Scenario flags.
    #[command(flatten)]
    pub scenario: ScenarioArgs,
}

/// `slim-bench compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The baseline result file.
    pub old: String,
    /// The result file to judge against it.
    pub new: String,
    /// Which target of each file to compare (`A`, `B`, `target`); default: the first.
    #[arg(long)]
    pub label: Option<String>,
    /// The target of the old file, overriding --label (e.g. `B` to compare both sides of one
    /// `vs` file: `compare vs.json vs.json --old-label B --new-label A`).
    #[arg(long)]
    pub old_label: Option<String>,
    /// The target of the new file, overriding --label.
    #[arg(long)]
    pub new_label: Option<String>,
    /// Write an SVG plot (latency percentiles and throughput) to this file.
    #[arg(long)]
    pub plot: Option<String>,
    /// What the old target is, in words, for the table and the plot (default: the `system`
    /// recorded in the file, else the file name).
    #[arg(long)]
    pub old_name: Option<String>,
    /// What the new target is, in words.
    #[arg(long)]
    pub new_name: Option<String>,
}

/// `slim-bench plot`.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Result files (`run` or `vs`); every target in them is a bar, named by its `system`.
    #[arg(required = true)]
    pub files: Vec<String>,
    /// The summary key to draw: msgs_per_s, p50_us, p99_us, wire_bytes_per_msg,
    /// target_cpu_us_per_msg, …
    #[arg(long, default_value = "msgs_per_s")]
    pub metric: String,
    /// The chart's title.
    #[arg(long)]
    pub title: Option<String>,
    /// A logarithmic axis (powers of ten), for values spanning orders of magnitude.
    #[arg(long)]
    pub log: bool,
    /// Where to write the SVG.
    #[arg(long)]
    pub out: String,
}

/// `slim-bench null-relay`.
#[derive(Debug, Args)]
pub struct NullRelayArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:46358")]
    pub listen: SocketAddr,
}

/// `--target` if given, else the reference relay started in this process on an ephemeral port
/// (`--embedded`); the handle keeps the relay running until it is dropped.
async fn target_or_embedded(
    target: &Option<String>,
) -> Result<(String, Option<slim_reference::server::RelayHandle>), BenchError> {
    if let Some(t) = target {
        return Ok((t.clone(), None));
    }
    let h = slim_reference::server::spawn(slim_reference::config::ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Default::default()
    })
    .await
    .map_err(|e| BenchError::Usage(format!("embedded relay: {e}")))?;
    Ok((h.url(), Some(h)))
}

/// Parses `args` (argv, program name first), runs the command, and returns the exit code:
/// 0 success, 1 loss or duplicates measured, 2 the benchmark could not run.
pub async fn run_cli(args: Vec<String>, out: &mut (dyn Write + Send)) -> i32 {
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match execute(cli, args, out).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("slim-bench: {e}");
            2
        }
    }
}

/// Runs a parsed command; `argv` is recorded in result files.
pub async fn execute(
    cli: Cli,
    argv: Vec<String>,
    out: &mut (dyn Write + Send),
) -> Result<i32, BenchError> {
    let io = |e: std::io::Error| BenchError::Io {
        path: "stdout".into(),
        source: e,
    };
    match cli.command {
        Command::Soak(a) => {
            let cfg = crate::soak::SoakConfig {
                target: a.target,
                duration: a.duration,
                clients: a.clients,
                groups: a.groups,
                members: a.members,
                sample_every: a.sample_every,
                warmup: a
                    .warmup
                    .unwrap_or_else(|| crate::soak::default_warmup(a.duration)),
                pause_ms: a.pause_ms,
                group_pause_ms: a.group_pause_ms,
                seed: a.seed,
                timeout: a.timeout,
                inject_leak: a.inject_leak,
            };
            let r = crate::soak::run_soak(&cfg, argv).await?;
            crate::soak::print(out, &r).map_err(io)?;
            if let Some(path) = &a.json {
                write_json(path, &r)?;
            }
            Ok(if r.passed() { 0 } else { 1 })
        }
        Command::Session(a) => {
            let (target, relay) = target_or_embedded(&a.target).await?;
            if !(a.timeout.is_finite() && a.timeout > 0.0) {
                return Err(BenchError::Usage(
                    "--timeout must be a positive number of seconds".into(),
                ));
            }
            let cfg = crate::session::SessionConfig {
                target,
                msgs: a.msgs,
                size: a.size,
                mls: a.mls,
                mls_crypto: a.mls_crypto.backend(),
                timeout: std::time::Duration::from_secs_f64(a.timeout),
            };
            let r = crate::session::run_session(&cfg).await?;
            drop(relay);
            writeln!(
                out,
                "session p2p reliable{}: {} msgs of {} B in {:.3} s: {} msg/s delivered (acked); received {}, duplicates or reordered {}, failed {}",
                match (r.mls, r.mls_crypto.as_str()) {
                    (false, _) => String::new(),
                    (true, crypto) => format!(" mls ({crypto})"),
                },
                r.msgs,
                r.size,
                r.seconds,
                fmt_num(r.delivered_per_sec),
                r.received,
                r.duplicates_or_reordered,
                r.failed
            )
            .map_err(io)?;
            if let Some(path) = &a.json {
                write_json(path, &r)?;
            }
            let clean =
                r.delivered == r.msgs && r.received == r.msgs && r.duplicates_or_reordered == 0;
            Ok(if clean { 0 } else { 1 })
        }
        Command::Revocation(a) => {
            let secs = |v: f64, flag: &str| {
                if v.is_finite() && v >= 0.0 {
                    Ok(std::time::Duration::from_secs_f64(v))
                } else {
                    Err(BenchError::Usage(format!(
                        "{flag} must be a non-negative number"
                    )))
                }
            };
            let timeout = secs(a.timeout, "--timeout")?;
            if timeout.is_zero() {
                return Err(BenchError::Usage("--timeout must be positive".into()));
            }
            let target = match (&a.target, &a.revocation_file, &a.signing_key) {
                (Some(url), Some(list), Some(key)) => {
                    crate::revocation::RevocationTarget::External {
                        url: url.clone(),
                        list: list.clone(),
                        signing_key: key.clone(),
                        issuer: a.issuer.clone(),
                        audience: a.audience.clone(),
                    }
                }
                _ => crate::revocation::RevocationTarget::Embedded,
            };
            let cfg = crate::revocation::RevocationConfig {
                target,
                streams: a.streams,
                revocations: a.revocations,
                by: a.by,
                jitter: secs(a.jitter_ms / 1e3, "--jitter-ms")?,
                timeout,
            };
            let r = crate::revocation::run_revocation(&cfg).await?;
            crate::revocation::print(out, &r).map_err(io)?;
            if let Some(path) = &a.json {
                write_json(path, &r)?;
            }
            Ok(if r.is_clean() { 0 } else { 1 })
        }
        Command::RevocationEpoch(a) => {
            let positive = |v: f64, flag: &str| {
                if v.is_finite() && v > 0.0 {
                    Ok(std::time::Duration::from_secs_f64(v))
                } else {
                    Err(BenchError::Usage(format!(
                        "{flag} must be a positive number"
                    )))
                }
            };
            let cfg = crate::revocation_epoch::EpochConfig {
                target: a.target,
                driver: a.driver,
                members: a.members,
                rounds: a.rounds,
                signal: a.signal,
                via: a.via,
                poll: positive(a.poll_ms / 1e3, "--poll-ms")?,
                timeout: positive(a.timeout, "--timeout")?,
            };
            let r = crate::revocation_epoch::run_epoch(&cfg).await?;
            crate::revocation_epoch::print(out, &r).map_err(io)?;
            if let Some(path) = &a.json {
                write_json(path, &r)?;
            }
            Ok(0)
        }
        Command::Run(a) => {
            let params = a.scenario.params();
            let (url, relay) = target_or_embedded(&a.target).await?;
            let cfg = RunConfig {
                url: url.clone(),
                params: params.clone(),
                target_pid: a.target_pid,
                progress: !a.scenario.quiet,
            };
            let mut rounds = Vec::new();
            let mut failure = None;
            for r in 1..=a.rounds {
                if a.rounds > 1 && !a.scenario.quiet {
                    eprintln!("round {r}/{} {url}", a.rounds);
                }
                match run(&cfg).await {
                    Ok(m) => rounds.push(m),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            if let Some(h) = relay {
                let _ = h.shutdown().await;
            }
            if let Some(e) = failure {
                return Err(e);
            }
            // The round with the median throughput stands for the run in the table.
            let mut order: Vec<&Metrics> = rounds.iter().collect();
            order.sort_by(|x, y| x.msgs_per_s.total_cmp(&y.msgs_per_s));
            let m = order
                .get(order.len() / 2)
                .map(|m| (*m).clone())
                .ok_or_else(|| BenchError::Usage("no round ran".into()))?;
            let shown = if a.embedded {
                "embedded slim-relay"
            } else {
                &url
            };
            print_run(out, &params, shown, &m).map_err(io)?;
            if rounds.len() > 1 {
                writeln!(
                    out,
                    "  {:<14} the median of {} rounds by msgs/s (all in --json)",
                    "rounds",
                    rounds.len()
                )
                .map_err(io)?;
            }
            if let Some(path) = &a.json {
                let label_url = if a.embedded { "embedded" } else { url.as_str() };
                ResultFile::new(
                    "run",
                    argv,
                    params,
                    vec![
                        TargetResult::new("target", label_url, a.target_pid, rounds.clone())
                            .named(a.system.as_deref()),
                    ],
                )
                .write(path)?;
            }
            let all: Vec<&Metrics> = rounds.iter().collect();
            Ok(warn_loss(out, &all).map_err(io)?)
        }
        Command::Vs(a) => {
            let params = a.scenario.params();
            let mut rounds_a = Vec::new();
            let mut rounds_b = Vec::new();
            for r in 1..=a.rounds {
                for (label, url, pid, rounds) in [
                    ("A", &a.a, a.a_pid, &mut rounds_a),
                    ("B", &a.b, a.b_pid, &mut rounds_b),
                ] {
                    if !a.scenario.quiet {
                        eprintln!("round {r}/{} {label} {url}", a.rounds);
                    }
                    let m = run(&RunConfig {
                        url: url.clone(),
                        params: params.clone(),
                        target_pid: pid,
                        progress: !a.scenario.quiet,
                    })
                    .await?;
                    rounds.push(m);
                }
            }
            let ta = TargetResult::new("A", &a.a, a.a_pid, rounds_a).named(a.a_system.as_deref());
            let tb = TargetResult::new("B", &a.b, a.b_pid, rounds_b).named(a.b_system.as_deref());
            print_vs(out, &params, a.rounds, &ta, &tb).map_err(io)?;
            let all: Vec<&Metrics> = ta.rounds.iter().chain(&tb.rounds).collect();
            let code = warn_loss(out, &all).map_err(io)?;
            if let Some(path) = &a.json {
                ResultFile::new("vs", argv, params, vec![ta, tb]).write(path)?;
            }
            Ok(code)
        }
        Command::Compare(a) => {
            let old = ResultFile::read(&a.old)?;
            let new = ResultFile::read(&a.new)?;
            let old_label = a.old_label.as_deref().or(a.label.as_deref());
            let new_label = a.new_label.as_deref().or(a.label.as_deref());
            let to = compare::pick(&old, old_label, &a.old)?;
            let tn = compare::pick(&new, new_label, &a.new)?;
            // Names in the table and the plot's legend: --old-name/--new-name, else what the
            // target was recorded as (--system), else the file and the target picked.
            let name =
                |given: &Option<String>, t: &TargetResult, file: &str, label: Option<&str>| {
                    given
                        .clone()
                        .or_else(|| t.system.clone())
                        .unwrap_or_else(|| match label {
                            Some(l) => format!("{file} [{l}: {}]", t.url),
                            None => file.to_string(),
                        })
                };
            let old_name = name(&a.old_name, to, &a.old, old_label);
            let new_name = name(&a.new_name, tn, &a.new, new_label);
            if old.params != new.params {
                writeln!(
                    out,
                    "note: the two files measured different parameters; ratios compare unlike runs"
                )
                .map_err(io)?;
            }
            let rows = compare::rows(to, tn);
            compare::print(out, &old_name, &new_name, &rows).map_err(io)?;
            if let Some(path) = &a.plot {
                std::fs::write(path, compare::svg(&old_name, &new_name, to, tn)).map_err(
                    |source| BenchError::Io {
                        path: path.clone(),
                        source,
                    },
                )?;
            }
            Ok(0)
        }
        Command::Plot(a) => {
            if !METRICS.iter().any(|d| d.key == a.metric) {
                let keys: Vec<&str> = METRICS.iter().map(|d| d.key).collect();
                return Err(BenchError::Usage(format!(
                    "--metric {}: not a metric; one of {}",
                    a.metric,
                    keys.join(", ")
                )));
            }
            let docs = a
                .files
                .iter()
                .map(|f| ResultFile::read(f))
                .collect::<Result<Vec<_>, _>>()?;
            let (groups, series) = crate::plot::collect(&docs, &a.metric);
            let title = a.title.clone().unwrap_or_else(|| a.metric.clone());
            let svg = crate::plot::grouped_bars(&title, &groups, &series, a.log);
            std::fs::write(&a.out, svg).map_err(|source| BenchError::Io {
                path: a.out.clone(),
                source,
            })?;
            writeln!(
                out,
                "{}: {} systems × {} scenarios",
                a.out,
                series.len(),
                groups.len()
            )
            .map_err(io)?;
            Ok(0)
        }
        Command::NullRelay(a) => {
            let handle = null_relay::spawn(a.listen).await?;
            writeln!(
                out,
                "slim-bench null relay listening on {} (NOT a SLIM node: it broadcasts every Publish to every other stream)",
                handle.url()
            )
            .map_err(io)?;
            out.flush().map_err(io)?;
            let _ = tokio::signal::ctrl_c().await;
            handle.shutdown().await;
            Ok(0)
        }
    }
}

/// Writes `value` as pretty JSON to `path`.
fn write_json(path: &str, value: &impl serde::Serialize) -> Result<(), BenchError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| BenchError::Usage(e.to_string()))?;
    std::fs::write(path, text).map_err(|e| BenchError::Io {
        path: path.to_string(),
        source: e,
    })
}

fn print_vs(
    out: &mut dyn Write,
    params: &Params,
    rounds: u32,
    a: &TargetResult,
    b: &TargetResult,
) -> std::io::Result<()> {
    writeln!(
        out,
        "slim-bench vs, {} rounds each (A B A B …), {} {} B × {} msgs/publisher, {} pub / {} sub{}",
        rounds,
        params.scenario.as_str(),
        params.size,
        params.msgs,
        params.publishers,
        params.subscribers,
        crate::result::paced(params)
    )?;
    writeln!(
        out,
        "A: {} ({})\nB: {} ({})",
        a.url,
        a.transport.as_str(),
        b.url,
        b.transport.as_str()
    )?;
    writeln!(
        out,
        "{:<20} {:>14} {:>14} {:>9}   A range / B range",
        "metric (median)", "A", "B", "A/B"
    )?;
    for d in METRICS {
        let (Some(va), Some(vb)) = (a.summary.get(d.key), b.summary.get(d.key)) else {
            continue;
        };
        let range = |t: &TargetResult| {
            compare::spread(&t.values(d)).map_or("-".into(), |(lo, hi)| {
                format!("{}..{}", fmt_num(lo), fmt_num(hi))
            })
        };
        writeln!(
            out,
            "{:<20} {:>14} {:>14} {:>9}   {} / {}",
            d.label,
            fmt_num(*va),
            fmt_num(*vb),
            if *vb != 0.0 {
                format!("{:.3}", va / vb)
            } else {
                "-".into()
            },
            range(a),
            range(b)
        )?;
    }
    Ok(())
}

/// Whether stderr shows what stdout shows: stdout is a terminal, or both are one file
/// (`> log 2>&1`). Then a warning written to stdout needs no second copy on stderr.
fn stderr_is_stdout() -> bool {
    if std::io::stdout().is_terminal() {
        return true;
    }
    #[cfg(unix)]
    {
        use std::os::fd::AsFd as _;
        use std::os::unix::fs::MetadataExt as _;
        let id = |fd: std::io::Result<std::os::fd::OwnedFd>| {
            let meta = std::fs::File::from(fd.ok()?).metadata().ok()?;
            Some((meta.dev(), meta.ino()))
        };
        let out = id(std::io::stdout().as_fd().try_clone_to_owned());
        out.is_some() && out == id(std::io::stderr().as_fd().try_clone_to_owned())
    }
    #[cfg(not(unix))]
    false
}

/// Prints the loss verdict; returns the exit code (1 if any run lost or duplicated).
fn warn_loss(out: &mut dyn Write, runs: &[&Metrics]) -> std::io::Result<i32> {
    let mut code = 0;
    for m in runs {
        if let Some(w) = loss_warning(m) {
            writeln!(out, "{w}")?;
            // Also on stderr when stdout goes elsewhere (a file, a pipe), not twice to one place.
            if !stderr_is_stdout() {
                eprintln!("{w}");
            }
            code = 1;
        }
    }
    if code == 0 {
        writeln!(out, "OK: zero loss, zero duplicates")?;
    }
    Ok(code)
}
