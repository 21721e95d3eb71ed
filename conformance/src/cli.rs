//! The command line: `run`, `list`, `coverage`, `vectors generate|verify`.
//!
//! Exit codes (documented in conformance/README.md): 0 conformant, 1 failures (a MUST broken, a
//! SHOULD broken with `--strict`, or a stale expectation), 2 harness or usage error, 3 target
//! unreachable.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use clap::{Parser, Subcommand};

use crate::case::Case;
use crate::case::Need;
use crate::catalogue::Catalogue;
use crate::client::Target;
use crate::expectations::Expectations;
use crate::jwt::{Issuer, SigningKey};
use crate::report;
use crate::revoke::{ListFile, RevocationSetup, Revoker};
use crate::runner::{self, RunOptions, Summary};

pub use crate::args::{glob_match, EXIT_FAIL, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE};

#[derive(Parser, Debug)]
#[command(
    name = "slim-conformance",
    version,
    about = "Judges a SLIM node against the SLIM node-facing requirements (spec/SPEC.md)",
    after_help = "Exit codes: 0 conformant, 1 failures, 2 harness or usage error, 3 target unreachable."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the node profile against a target (default: the reference relay, started in-process).
    Run(Box<RunArgs>),
    /// Print the requirement catalogue (id, level, title); with --cases, the cases instead.
    List {
        /// List the cases (id, requirements, title) instead of the requirements.
        #[arg(long)]
        cases: bool,
    },
    /// Print every requirement with the cases that check it.
    Coverage {
        /// Write the coverage as JSON to this file as well.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Generate or verify the deterministic test vectors.
    Vectors {
        #[command(subcommand)]
        action: VectorsAction,
    },
}

#[derive(Subcommand, Debug)]
enum VectorsAction {
    /// Rewrite every vector file (byte-for-byte identical on every run).
    Generate {
        /// Directory to write into (default: the `vectors/` folder of this source tree).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Check slim-proto's primitives against the vector files.
    Verify {
        /// Directory to read from (default: the `vectors/` folder of this source tree).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Which half of the protocol a run judges.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Profile {
    /// A SLIM node: transport, link negotiation, MAC, subscriptions, routing, authentication.
    Node,
    /// SLIM client implementations (SDKs), through the driver protocol: sessions, reliable
    /// delivery, identity, MLS groups.
    Session,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// `node` judges a node (`--target`); `session` judges client implementations (`--driver`).
    #[arg(long, value_enum, default_value = "node")]
    profile: Profile,
    /// Session profile: an implementation to judge, `NAME=http://HOST:PORT` of its driver shim
    /// (repeatable). The reference client (`ref`) is always in the matrix, embedded.
    #[arg(long, value_name = "NAME=URL")]
    driver: Vec<String>,
    /// Session profile: the SLIM node the apps connect to (through the runner's harness node).
    /// Without it, the reference relay is started in-process.
    #[arg(long, value_name = "URL")]
    node: Option<String>,
    /// Session profile: the run's seed; every cell's faults and randomness derive from it.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Session profile: run only the cells whose assignment matches (`ref,sdk`; glob `*`).
    #[arg(long, value_name = "IMPL,IMPL")]
    cell: Option<String>,
    /// Session profile: write each cell's transcript (JSON lines) into this directory.
    #[arg(long, value_name = "DIR")]
    transcripts: Option<PathBuf>,
    /// Write a self-contained HTML report (matrix, requirement texts, evidence, transcripts).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// The node to judge, `http://HOST:PORT` (h2c) or `https://HOST:PORT` (TLS). Without it, the
    /// reference relay is started in-process on an ephemeral port.
    #[arg(long)]
    target: Option<String>,
    /// TLS: CA certificates (PEM) the target's certificate must chain to [default: Mozilla's
    /// roots].
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// TLS: client certificate chain (PEM) for a target that requires mutual TLS (with --key).
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// TLS: private key (PEM) of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// TLS: do not verify the target's certificate chain and name (tests only).
    #[arg(long, conflicts_with = "ca")]
    insecure: bool,
    /// Run only cases whose id or any cited requirement id matches (glob `*`, repeatable).
    #[arg(long, value_name = "PATTERN")]
    only: Vec<String>,
    /// Skip cases whose id or any cited requirement id matches (glob `*`, repeatable).
    #[arg(long, value_name = "PATTERN")]
    skip: Vec<String>,
    /// HTTP basic credentials for a protected target, `basic:USER:PASS`.
    #[arg(long, value_name = "basic:USER:PASS")]
    auth: Option<String>,
    /// Bearer token for a protected target.
    #[arg(long, value_name = "TOKEN", conflicts_with = "auth")]
    bearer: Option<String>,
    /// Whether the target requires the header MAC (cases that need either are UNSUPPORTED otherwise).
    #[arg(long, value_name = "true|false", default_value_t = true, action = clap::ArgAction::Set)]
    require_header_mac: bool,
    /// Treat SHOULD violations (WARN) as failures.
    #[arg(long)]
    strict: bool,
    /// Write the JSON report here (rewritten after every case, so partial results survive).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write a JUnit XML report here (rewritten after every case).
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Known deviations of this implementation (YAML); their failures are reported as XFAIL.
    /// Session profile: `NAME=FILE` for the implementation NAME (repeatable).
    #[arg(long, value_name = "FILE|NAME=FILE")]
    expect: Vec<String>,
    /// Rewrite the --expect file to match this run (drops entries that pass, adds new failures).
    #[arg(long)]
    fix_expectations: bool,
    /// Milliseconds a negative check waits to be sure nothing arrives (used only where no
    /// barrier can prove it).
    #[arg(long, value_name = "MS", default_value_t = 300)]
    quiet_ms: u64,
    /// Stop after the first failing case (FAIL or ERROR; WARN too with --strict).
    #[arg(long)]
    fail_fast: bool,
    /// Delay every byte between the runner and the target by this many milliseconds, in both
    /// directions (a TCP proxy in the runner): judges the target as seen over a slow network,
    /// and shows that no verdict depends on speed.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    delay_ms: u64,
    /// Revocation cases (SLIM-REV-*): the PKCS#8 PEM P-256 private key (ES256) the target's
    /// bearer tokens are signed with; the runner mints valid tokens and tokens that fail one
    /// check. With --target and no --auth/--bearer, the other cases authenticate with a valid
    /// token from it too (sub "slim-conformance", valid 1 h). Without --target the runner sets
    /// up its own key, relay and list (no JWT flag needed).
    #[arg(long, value_name = "FILE", group = "jwt_signing")]
    jwt_key: Option<PathBuf>,
    /// Like --jwt-key, for HS256: a file whose bytes are the shared secret (one trailing newline
    /// ignored, as slim-relay's hs256_secret_file).
    #[arg(long, value_name = "FILE", group = "jwt_signing")]
    jwt_hs256_secret_file: Option<PathBuf>,
    /// The kid header of the runner's valid tokens (default: no kid).
    #[arg(long, value_name = "KID", requires = "jwt_signing")]
    jwt_kid: Option<String>,
    /// The iss claim the target requires; revocation/wrong-issuer-refused is UNSUPPORTED without it.
    #[arg(long, value_name = "ISS", requires = "jwt_signing")]
    jwt_issuer: Option<String>,
    /// The aud claim the target requires; revocation/wrong-audience-refused is UNSUPPORTED
    /// without it.
    #[arg(long, value_name = "AUD", requires = "jwt_signing")]
    jwt_audience: Option<String>,
    /// A second kid the target accepts for the same key, which revocation/revoked-kid-refused
    /// revokes (keep it distinct from --jwt-kid). Default: a fresh kid per case, which a node
    /// accepts if it tries its kid-less keys for a kid it does not know (slim-relay with PEM keys
    /// does); otherwise that case is UNSUPPORTED.
    #[arg(long, value_name = "KID", requires = "jwt_signing")]
    jwt_spare_kid: Option<String>,
    /// Revocation cases: the target's watched revocation list, in slim-relay's YAML format
    /// (`revoked: [{jti: V}, {sub: V}, {kid: V}]`). The runner keeps the entries it finds, adds
    /// its own, replaces the file atomically (writes PATH.slim-conformance.tmp, renames it over
    /// PATH) and puts the original back at the end. Without --revoke-file or --revoke-cmd the
    /// revocation cases are UNSUPPORTED.
    #[arg(long, value_name = "PATH", conflicts_with = "revoke_cmd")]
    revoke_file: Option<PathBuf>,
    /// Revocation cases: a shell command that revokes a credential on the target, run as
    /// `sh -c 'CMD "$@"' sh CLAIM VALUE` (CLAIM is jti, sub or kid; also in the environment as
    /// SLIM_REVOKE_CLAIM and SLIM_REVOKE_VALUE). It must exit 0 within 10 s once the target has
    /// been told; the 100 ms of SLIM-REV-004 are measured from its return. It cannot write a
    /// malformed list, so revocation/malformed-list-keeps-revocations needs --revoke-file.
    #[arg(long, value_name = "CMD")]
    revoke_cmd: Option<String>,
    /// Connection cases: the target's idle timeout, in ms, for HTTP/2 connections that open no
    /// stream (SLIM-CONN-004); connection/idle-closed is UNSUPPORTED without it. Without
    /// --target, the embedded relay's (2000).
    #[arg(long, value_name = "MS")]
    idle_timeout_ms: Option<u64>,
    /// Connection cases: the target's limit on connections from one address (SLIM-CONN-003);
    /// connection/per-peer-limit opens one more and is UNSUPPORTED without it. Without
    /// --target, the embedded relay's (64).
    #[arg(long, value_name = "N")]
    max_connections_per_peer: Option<usize>,
}

impl From<RunArgs> for crate::session::cli::SessionArgs {
    fn from(a: RunArgs) -> Self {
        Self {
            drivers: a.driver,
            node: a.node,
            seed: a.seed,
            cell: a.cell,
            transcripts: a.transcripts,
            html: a.html,
            json: a.json,
            junit: a.junit,
            expect: a.expect,
            only: a.only,
            skip: a.skip,
            strict: a.strict,
            fail_fast: a.fail_fast,
        }
    }
}

/// Cases selected by `--only` / `--skip`.
pub fn select(cases: Vec<Case>, only: &[String], skip: &[String]) -> Vec<Case> {
    let hit = |c: &Case, pats: &[String]| {
        pats.iter()
            .any(|p| glob_match(p, &c.id) || c.requirements.iter().any(|r| glob_match(p, r)))
    };
    cases
        .into_iter()
        .filter(|c| only.is_empty() || hit(c, only))
        .filter(|c| !hit(c, skip))
        .collect()
}

/// Parses `basic:USER:PASS` into an `authorization` header value.
pub fn basic_auth(spec: &str) -> Result<String, String> {
    let rest = spec.strip_prefix("basic:").ok_or_else(|| {
        format!("--auth {spec:?}: expected basic:USER:PASS (e.g. --auth basic:alice:secret)")
    })?;
    let (user, pass) = rest.split_once(':').ok_or_else(|| {
        format!("--auth {spec:?}: expected basic:USER:PASS, found no ':' between user and password")
    })?;
    if user.is_empty() {
        return Err(format!("--auth {spec:?}: the user name is empty"));
    }
    Ok(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    ))
}

/// A target must be `http://HOST:PORT` (h2c, prior knowledge) or `https://HOST:PORT` (TLS).
pub fn check_target_url(url: &str) -> Result<(), String> {
    crate::args::check_node_url("--target", url)
}

/// The TLS connector of an `https://` target from `--ca`, `--cert`/`--key` and `--insecure`;
/// those flags with an `http://` target are a usage error, as is a file that cannot be used.
fn tls_connector(args: &RunArgs, url: &str) -> Result<Option<slim_proto::tls::Connector>, String> {
    let flags = args.ca.is_some() || args.cert.is_some() || args.insecure;
    if !url.starts_with("https://") {
        if flags {
            return Err(format!("--ca, --cert, --key and --insecure are for TLS, but the target {url} is h2c; give it as https://HOST:PORT"));
        }
        return Ok(None);
    }
    let Some(settings) = tls_settings(args, url) else {
        return Ok(None);
    };
    Ok(Some(settings.connector().map_err(|e| e.to_string())?))
}

/// The TLS settings of an `https://` target (`None` for h2c).
fn tls_settings(args: &RunArgs, url: &str) -> Option<slim_proto::tls::ClientTls> {
    url.starts_with("https://")
        .then(|| slim_proto::tls::ClientTls {
            ca: args.ca.clone(),
            cert: args.cert.clone(),
            key: args.key.clone(),
            insecure: args.insecure,
        })
}

/// Whether `--only`/`--skip` select a case that needs a TLS target.
fn selects_tls_cases(args: &RunArgs) -> bool {
    select(crate::cases::all(), &args.only, &args.skip)
        .iter()
        .flat_map(|c| c.needs.iter())
        .any(|n| matches!(n, Need::Tls | Need::MutualTls))
}

fn vectors_dir(dir: Option<PathBuf>) -> PathBuf {
    dir.unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../vectors")))
}

/// Entry point; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let _ = e.print();
            return code;
        }
    };
    let catalogue = match Catalogue::builtin() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    match cli.command {
        Command::List { cases } => {
            if cases {
                for c in crate::cases::all() {
                    println!("{:<44} {:<40} {}", c.id, c.requirements.join(","), c.title);
                }
                for c in crate::session::cases::all() {
                    println!(
                        "{:<44} {:<40} [session: {}] {}",
                        c.id,
                        c.requirements.join(","),
                        c.roles.join(", "),
                        c.title
                    );
                }
            } else {
                print!("{}", report::list_text(&catalogue));
            }
            EXIT_OK
        }
        Command::Coverage { json } => {
            let rows = report::coverage(&catalogue, &crate::case_index());
            print!("{}", report::coverage_text(&rows));
            if let Some(path) = json {
                let text = serde_json::to_string_pretty(&rows).unwrap_or_default();
                if let Err(e) = std::fs::write(&path, text) {
                    eprintln!("error: cannot write {}: {e}", path.display());
                    return EXIT_USAGE;
                }
            }
            EXIT_OK
        }
        Command::Vectors { action } => vectors(action),
        Command::Run(args) => {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return EXIT_USAGE;
                }
            };
            match args.profile {
                Profile::Node => rt.block_on(run(*args, catalogue)),
                Profile::Session => {
                    rt.block_on(crate::session::cli::run((*args).into(), catalogue))
                }
            }
        }
    }
}

fn vectors(action: VectorsAction) -> i32 {
    match action {
        VectorsAction::Generate { dir } => {
            let dir = vectors_dir(dir);
            let sessions = dir.join("sessions");
            let written = slim_vectors::generate(&dir).map_err(|e| e.to_string());
            let written = written.and_then(|mut paths| {
                let more = slim_reference::session::vectors::generate(&sessions);
                paths.extend(more.map_err(|e| e.to_string())?);
                Ok(paths)
            });
            match written {
                Ok(paths) => {
                    for p in paths {
                        println!("wrote {}", p.display());
                    }
                    EXIT_OK
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    EXIT_USAGE
                }
            }
        }
        VectorsAction::Verify { dir } => {
            let dir = vectors_dir(dir);
            match slim_vectors::verify(&dir) {
                Ok(report) => {
                    for f in &report.per_file {
                        println!(
                            "{:<16} {:>4} checked {:>4} passed",
                            f.file, f.checked, f.passed
                        );
                        for failure in &f.failures {
                            println!("  FAIL {failure}");
                        }
                    }
                    let sessions =
                        match slim_reference::session::vectors::verify(&dir.join("sessions")) {
                            Ok(s) => s,
                            Err(e) => {
                                eprintln!("error: {e}");
                                return EXIT_USAGE;
                            }
                        };
                    for f in &sessions.per_file {
                        let file = format!("sessions/{}", f.file);
                        println!("{file:<34} {:>4} checked {:>4} passed", f.checked, f.passed);
                        for failure in &f.failures {
                            println!("  FAIL {failure}");
                        }
                    }
                    if report.ok() && sessions.ok() {
                        println!("all vectors verified");
                        EXIT_OK
                    } else {
                        println!("vector verification failed");
                        EXIT_FAIL
                    }
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    EXIT_USAGE
                }
            }
        }
    }
}

async fn run(args: RunArgs, catalogue: Catalogue) -> i32 {
    let authorization = match (&args.auth, &args.bearer) {
        (Some(a), _) => match basic_auth(a) {
            Ok(v) => Some(v),
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_USAGE;
            }
        },
        (None, Some(t)) if t.is_empty() => {
            eprintln!("error: --bearer needs a non-empty token");
            return EXIT_USAGE;
        }
        (None, Some(t)) => Some(format!("Bearer {t}")),
        (None, None) => None,
    };
    if args.expect.len() > 1 || args.expect.iter().any(|e| e.contains('=')) {
        eprintln!(
            "error: the node profile takes one --expect FILE (NAME=FILE is for --profile session)"
        );
        return EXIT_USAGE;
    }
    if !args.driver.is_empty() || args.node.is_some() {
        eprintln!("error: --driver and --node belong to --profile session; the node profile judges --target");
        return EXIT_USAGE;
    }
    if args.fix_expectations && args.expect.is_empty() {
        eprintln!("error: --fix-expectations needs --expect FILE");
        return EXIT_USAGE;
    }
    let jwt_flags = args.jwt_key.is_some()
        || args.jwt_hs256_secret_file.is_some()
        || args.revoke_file.is_some()
        || args.revoke_cmd.is_some();
    if jwt_flags && args.target.is_none() {
        eprintln!(
            "error: --jwt-key, --jwt-hs256-secret-file, --revoke-file and --revoke-cmd describe a --target; without --target the runner sets up the embedded relay's key and revocation list itself"
        );
        return EXIT_USAGE;
    }
    if args
        .revoke_cmd
        .as_deref()
        .is_some_and(|c| c.trim().is_empty())
    {
        eprintln!("error: --revoke-cmd needs a command, e.g. --revoke-cmd 'my-node-admin revoke'");
        return EXIT_USAGE;
    }
    let issuer = match target_issuer(&args) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    // A JWT target needs a token for every case: without --auth/--bearer, one the runner mints.
    let authorization = match (authorization, &issuer) {
        (None, Some(i)) => Some(i.bearer(&i.valid(
            "slim-conformance",
            &format!("slim-conformance-{}", uuid::Uuid::new_v4().simple()),
            unix_now(),
            3600,
        ))),
        (a, _) => a,
    };
    let expect_path = args.expect.first().map(PathBuf::from);
    let expectations = match &expect_path {
        Some(path) => match Expectations::load(path, &catalogue) {
            Ok(e) => Some(e),
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_USAGE;
            }
        },
        None => None,
    };
    // The embedded default target: the reference relay on an ephemeral loopback port.
    let mut embedded = None;
    let url = match &args.target {
        Some(t) => match check_target_url(t) {
            Ok(()) => t.clone(),
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_USAGE;
            }
        },
        None => {
            let mut config = slim_reference::config::ServerConfig {
                listen: ([127, 0, 0, 1], 0).into(),
                ..Default::default()
            };
            config.relay.require_header_mac = args.require_header_mac;
            // Limits the connection cases judge, declared to them below (SLIM-CONN-003/004).
            config.limits.idle_timeout = crate::conn::EMBEDDED_IDLE_TIMEOUT;
            config.limits.max_connections_per_peer = crate::conn::EMBEDDED_PEER_LIMIT;
            // Given credentials, the embedded relay is protected with them, so the
            // authentication cases run against it too.
            config.auth = match (&args.auth, &args.bearer) {
                (Some(a), _) => a
                    .strip_prefix("basic:")
                    .and_then(|r| r.split_once(':'))
                    .map(|(u, p)| slim_reference::auth::AuthConfig::Basic {
                        username: u.to_string(),
                        password: p.to_string(),
                    }),
                (None, Some(t)) => {
                    Some(slim_reference::auth::AuthConfig::Bearer { token: t.clone() })
                }
                (None, None) => None,
            };
            match slim_reference::server::spawn(config).await {
                Ok(handle) => {
                    let url = handle.url();
                    embedded = Some(handle);
                    url
                }
                Err(e) => {
                    eprintln!("error: cannot start the embedded reference relay: {e}");
                    return EXIT_USAGE;
                }
            }
        }
    };
    // --delay-ms: the runner talks to the target through a delaying proxy.
    let proxy = if args.delay_ms > 0 {
        match start_delay(&url, Duration::from_millis(args.delay_ms)).await {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("error: --delay-ms: {e}");
                return EXIT_USAGE;
            }
        }
    } else {
        None
    };
    let tls = match tls_connector(&args, &url) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let target = Target {
        url: proxy
            .as_ref()
            .map_or_else(|| url.clone(), |p| p.url_like(&url)),
        tls: tls.clone(),
        authorization,
        strict_mac: args.require_header_mac,
    };
    let delay = Duration::from_millis(args.delay_ms);
    // What the revocation cases judge: the target itself, or (embedded) a second reference
    // relay with JWT auth and a watched list, started only when the selection has such cases.
    let mut jwt_relay = None;
    let revocation = if args.target.is_some() {
        Some(Arc::new(RevocationSetup {
            url: target.url.clone(),
            tls: tls.clone(),
            strict_mac: args.require_header_mac,
            issuer,
            revoker: match (&args.revoke_file, &args.revoke_cmd) {
                (Some(path), _) => Some(Revoker::File(ListFile::open(path))),
                (None, Some(cmd)) => Some(Revoker::Command(cmd.clone())),
                (None, None) => None,
            },
            spare_kid: args.jwt_spare_kid.clone(),
            one_way_delay: delay,
        }))
    } else if selects_revocation_cases(&args) {
        match EmbeddedJwtRelay::start(args.require_header_mac, delay).await {
            Ok(r) => {
                let setup = r.setup.clone();
                println!(
                    "revocation cases: a second embedded reference relay at {} (JWT ES256 on a fresh key, revocation list {})",
                    setup.url,
                    r.list.display()
                );
                jwt_relay = Some(r);
                Some(setup)
            }
            Err(e) => {
                eprintln!("error: cannot start the embedded JWT relay: {e}");
                drop(proxy);
                if let Some(handle) = embedded {
                    let _ = handle.shutdown().await;
                }
                return EXIT_USAGE;
            }
        }
    } else {
        None
    };
    // What the connection cases judge: TLS on an https:// target, or (embedded) on a second
    // reference relay serving mutual TLS, started only when the selection has TLS cases; the
    // limits as declared, or the embedded relay's.
    let mut tls_relay = None;
    let mut connections = crate::conn::ConnectionSetup {
        tls: None,
        idle_timeout: args.idle_timeout_ms.map(Duration::from_millis),
        max_connections_per_peer: args.max_connections_per_peer,
    };
    if args.target.is_some() {
        if let Some(settings) = tls_settings(&args, &url) {
            match crate::conn::TlsTarget::of(&target.url, &settings) {
                Ok(t) => connections.tls = Some(t),
                Err(e) => {
                    eprintln!("error: {e}");
                    return EXIT_USAGE;
                }
            }
        }
    } else {
        connections.idle_timeout = Some(crate::conn::EMBEDDED_IDLE_TIMEOUT);
        connections.max_connections_per_peer = Some(crate::conn::EMBEDDED_PEER_LIMIT);
        if selects_tls_cases(&args) {
            match crate::conn::EmbeddedTlsRelay::start(delay).await {
                Ok(r) => {
                    println!(
                        "TLS cases: a second embedded reference relay at {} (mutual TLS on a fresh CA)",
                        r.target.url
                    );
                    connections.tls = Some(r.target.clone());
                    tls_relay = Some(r);
                }
                Err(e) => {
                    eprintln!("error: cannot start the embedded TLS relay: {e}");
                    if let Some(r) = jwt_relay {
                        r.stop().await;
                    }
                    drop(proxy);
                    if let Some(handle) = embedded {
                        let _ = handle.shutdown().await;
                    }
                    return EXIT_USAGE;
                }
            }
        }
    }
    let code = run_against(
        &args,
        &catalogue,
        target,
        revocation.clone(),
        Arc::new(connections),
        expectations.as_ref(),
        embedded.is_some(),
    )
    .await;
    if let Some(r) = tls_relay {
        r.stop().await;
    }
    if let Some(r) = revocation.as_ref().and_then(|s| s.revoker.as_ref()) {
        if let Err(e) = r.restore() {
            eprintln!("warning: the revocation list was not restored: {e}");
        }
    }
    drop(proxy);
    if let Some(r) = jwt_relay {
        r.stop().await;
    }
    if let Some(handle) = embedded {
        let _ = handle.shutdown().await;
    }
    code
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The runner's identity provider for a `--target`, from `--jwt-key` or
/// `--jwt-hs256-secret-file` and the claims flags (SLIM-REV-001); `None` without a key.
fn target_issuer(args: &RunArgs) -> Result<Option<Issuer>, String> {
    let key = match (&args.jwt_key, &args.jwt_hs256_secret_file) {
        (Some(path), _) => SigningKey::load_es256_pem(path).map_err(|e| format!("--jwt-key: {e}")),
        (None, Some(path)) => {
            SigningKey::load_hs256_secret(path).map_err(|e| format!("--jwt-hs256-secret-file: {e}"))
        }
        (None, None) => return Ok(None),
    }?;
    if args.jwt_spare_kid.is_some() && args.jwt_spare_kid == args.jwt_kid {
        return Err(
            "--jwt-spare-kid must differ from --jwt-kid: the kid case revokes it, and every later token would be refused"
                .into(),
        );
    }
    Ok(Some(Issuer {
        key,
        kid: args.jwt_kid.clone(),
        issuer: args.jwt_issuer.clone(),
        audience: args.jwt_audience.clone(),
    }))
}

/// Whether `--only`/`--skip` select a case that needs JWT tokens or a revocation mechanism.
fn selects_revocation_cases(args: &RunArgs) -> bool {
    select(crate::cases::all(), &args.only, &args.skip)
        .iter()
        .flat_map(|c| c.needs.iter())
        .any(|n| {
            matches!(
                n,
                Need::Jwt | Need::JwtIssuer | Need::JwtAudience | Need::Revoke | Need::RevokeFile
            )
        })
}

/// The embedded relay the revocation cases judge when no `--target` is given (SLIM-REV-001..006):
/// JWT auth on a fresh ES256 key (issuer and audience checked), and a watched revocation list,
/// both in a temporary directory removed at the end. The other cases keep the unauthenticated
/// embedded relay.
struct EmbeddedJwtRelay {
    relay: slim_reference::server::RelayHandle,
    proxy: Option<crate::delay::DelayProxy>,
    dir: PathBuf,
    list: PathBuf,
    setup: Arc<RevocationSetup>,
}

/// Issuer and audience of the embedded JWT relay's tokens.
const EMBEDDED_ISSUER: &str = "slim-conformance-idp";
const EMBEDDED_AUDIENCE: &str = "slim";

impl EmbeddedJwtRelay {
    async fn start(require_header_mac: bool, delay: Duration) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!(
            "slim-conformance-jwt-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let started = Self::start_in(&dir, require_header_mac, delay).await;
        if started.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        started
    }

    async fn start_in(
        dir: &Path,
        require_header_mac: bool,
        delay: Duration,
    ) -> Result<Self, String> {
        let write = |path: &Path, text: &str| {
            std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let key = SigningKey::generate_es256();
        let pem = key
            .public_pem()
            .ok_or_else(|| "cannot encode the public key".to_string())?;
        let pem_path = dir.join("idp.pub.pem");
        write(&pem_path, &pem)?;
        let list = dir.join("revoked.yaml");
        write(&list, "revoked: []\n")?;
        let mut config = slim_reference::config::ServerConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            auth: Some(slim_reference::auth::AuthConfig::Jwt {
                keys: vec![pem_path],
                jwks: None,
                hs256_secret_file: None,
                issuer: Some(EMBEDDED_ISSUER.into()),
                audience: Some(EMBEDDED_AUDIENCE.into()),
            }),
            revocation_file: Some(list.clone()),
            ..Default::default()
        };
        config.relay.require_header_mac = require_header_mac;
        let relay = slim_reference::server::spawn(config)
            .await
            .map_err(|e| e.to_string())?;
        let proxy = if delay.is_zero() {
            None
        } else {
            match start_delay(&relay.url(), delay).await {
                Ok(p) => Some(p),
                Err(e) => {
                    let _ = relay.shutdown().await;
                    return Err(format!("--delay-ms: {e}"));
                }
            }
        };
        let url = proxy.as_ref().map_or_else(|| relay.url(), |p| p.url());
        let setup = Arc::new(RevocationSetup {
            url,
            tls: None,
            strict_mac: require_header_mac,
            issuer: Some(Issuer {
                key,
                kid: None,
                issuer: Some(EMBEDDED_ISSUER.into()),
                audience: Some(EMBEDDED_AUDIENCE.into()),
            }),
            revoker: Some(Revoker::File(ListFile::open(&list))),
            spare_kid: None,
            one_way_delay: delay,
        });
        Ok(Self {
            relay,
            proxy,
            dir: dir.to_path_buf(),
            list,
            setup,
        })
    }

    async fn stop(self) {
        drop(self.proxy);
        let _ = self.relay.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts a [`DelayProxy`](crate::delay::DelayProxy) in front of `url`.
async fn start_delay(url: &str, delay: Duration) -> Result<crate::delay::DelayProxy, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let host = uri.host().ok_or_else(|| format!("{url}: no host"))?;
    let port = uri.port_u16().unwrap_or(80);
    let addr = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} resolves to no address"))?;
    crate::delay::DelayProxy::start(addr, delay)
        .await
        .map_err(|e| format!("cannot start the delay proxy: {e}"))
}

async fn run_against(
    args: &RunArgs,
    catalogue: &Catalogue,
    target: Target,
    revocation: Option<Arc<RevocationSetup>>,
    connections: Arc<crate::conn::ConnectionSetup>,
    expectations: Option<&Expectations>,
    embedded: bool,
) -> i32 {
    let identity = match runner::probe(&target).await {
        Ok(id) => id,
        Err(runner::RunError::Unreachable(m)) => {
            let hint = if target.url.starts_with("https://") {
                "check that a SLIM node serves TLS there, and the --ca, --cert and --key it needs"
            } else {
                "check that a SLIM node listens there (h2c gRPC, e.g. http://127.0.0.1:46357; https://HOST:PORT for TLS)"
            };
            eprintln!("error: target {} unreachable: {m}\n  {hint}", target.url);
            return EXIT_UNREACHABLE;
        }
        Err(runner::RunError::Refused(m)) => {
            eprintln!("error: {m}");
            return EXIT_USAGE;
        }
    };
    let cases = select(crate::cases::all(), &args.only, &args.skip);
    if cases.is_empty() {
        eprintln!(
            "error: --only/--skip selected no case; `slim-conformance list --cases` shows the ids"
        );
        return EXIT_USAGE;
    }
    println!(
        "slim-conformance {} against {}{}{} ({identity}), {} cases, header MAC {}",
        env!("CARGO_PKG_VERSION"),
        args.target.as_deref().unwrap_or(&target.url),
        if embedded {
            " (embedded reference relay)"
        } else {
            ""
        },
        if args.delay_ms > 0 {
            format!(" through a {} ms delay proxy", args.delay_ms)
        } else {
            String::new()
        },
        cases.len(),
        if target.strict_mac {
            "required"
        } else {
            "not required"
        }
    );
    println!("{}", report::table_header());
    let options = RunOptions {
        target: target.clone(),
        quiet: Duration::from_millis(args.quiet_ms),
        strict: args.strict,
        fail_fast: args.fail_fast,
        revocation,
        connections,
    };
    let write_reports = |results: &[runner::CaseResult], complete: bool| -> Result<(), String> {
        let stale = expectations.map(|e| e.stale(results)).unwrap_or_default();
        let stale = if complete { stale } else { Vec::new() };
        let summary = Summary::of(results, args.strict, stale.len());
        let r = report::JsonReport {
            schema: report::JSON_SCHEMA,
            runner: env!("CARGO_PKG_VERSION").into(),
            target: target.url.clone(),
            target_identity: identity.clone(),
            complete,
            strict: args.strict,
            summary: summary.clone(),
            stale_expectations: stale.clone(),
            cases: results,
        };
        report::ReportFiles {
            json: args.json.as_deref(),
            junit: args.junit.as_deref(),
            html: args.html.as_deref(),
            title: "slim-conformance: node profile",
        }
        .write(&r)
    };
    let mut write_error = None;
    let results = runner::run_all(&cases, catalogue, &options, expectations, |r, all| {
        println!("{}", report::table_row(r));
        if let Err(e) = write_reports(all, false) {
            write_error.get_or_insert(e);
        }
    })
    .await;
    if let Err(e) = write_reports(&results, true) {
        write_error.get_or_insert(e);
    }
    let stale = expectations.map(|e| e.stale(&results)).unwrap_or_default();
    let file = args.expect.first().cloned().unwrap_or_default();
    for d in &stale {
        println!(
            "STALE expectation: {} ({}) now passes; remove it from {file} (or run with --fix-expectations)",
            d.requirement, d.case,
        );
    }
    let stale_unsupported = expectations
        .map(|e| e.stale_unsupported(&results, None))
        .unwrap_or_default();
    for u in &stale_unsupported {
        println!(
            "STALE expectation: {} is listed as unsupported but ran; remove it from {file} (or run with --fix-expectations)",
            u.case
        );
    }
    if args.fix_expectations {
        if let (Some(e), Some(path)) = (expectations, args.expect.first().map(PathBuf::from)) {
            let fixed = e.fixed(&results);
            match fixed.save(&path) {
                Ok(()) => println!(
                    "rewrote {} ({} deviations)",
                    path.display(),
                    fixed.deviations.len()
                ),
                Err(err) => {
                    write_error.get_or_insert(err.to_string());
                }
            }
        }
    }
    let summary = Summary::of(&results, args.strict, stale.len() + stale_unsupported.len());
    println!("{}", summary.line());
    if let Some(e) = write_error {
        if !e.is_empty() {
            eprintln!("error: {e}");
        }
        return EXIT_USAGE;
    }
    summary.exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_ids_and_requirements() {
        assert!(glob_match("link/*", "link/empty-link-id"));
        assert!(glob_match("SLIM-MAC-*", "SLIM-MAC-004"));
        assert!(glob_match("*id*", "link/empty-link-id"));
        assert!(!glob_match("link/*", "names/link"));
        assert!(glob_match("exact", "exact") && !glob_match("exact", "exactly"));
        let cases = crate::cases::all();
        let n = cases.len();
        let only_mac = select(cases.clone(), &["SLIM-MAC-00*".into()], &[]);
        assert!(!only_mac.is_empty() && only_mac.len() < n);
        assert!(only_mac
            .iter()
            .all(|c| c.requirements.iter().any(|r| r.starts_with("SLIM-MAC-00"))));
        let skipped = select(cases, &[], &["*".into()]);
        assert!(skipped.is_empty());
    }

    #[test]
    fn basic_auth_is_rfc7617_and_errors_say_how_to_fix() {
        // RFC 7617 section 2 example.
        assert_eq!(
            basic_auth("basic:Aladdin:open sesame").as_deref(),
            Ok("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
        );
        // The password may contain ':'.
        assert!(basic_auth("basic:u:a:b").is_ok());
        assert!(basic_auth("u:p").unwrap_err().contains("basic:USER:PASS"));
        assert!(basic_auth("basic:onlyuser").unwrap_err().contains("no ':'"));
        assert!(basic_auth("basic::pw").unwrap_err().contains("empty"));
    }

    #[test]
    fn target_urls_are_checked_before_connecting() {
        assert!(check_target_url("http://127.0.0.1:46357").is_ok());
        assert!(check_target_url("https://node.example:443").is_ok());
        assert!(check_target_url("foo")
            .unwrap_err()
            .contains("expected http://HOST:PORT"));
        assert!(check_target_url("127.0.0.1:46357").is_err());
        assert!(check_target_url("ws://127.0.0.1:46357").is_err());
    }
}
