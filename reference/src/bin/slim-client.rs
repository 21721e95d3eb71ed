//! `slim-client`: the reference SLIM client on the command line.
//!
//! It connects to a SLIM node (h2c), negotiates the link, subscribes its own name, and then
//! `listen`s for sessions, `send`s messages on a point-to-point session, or moderates a `group`
//! read from stdin. `--json` prints one JSON object per line on stdout for scripts and tests.
//!
//! `slim-client driver [--listen ADDR]` instead hosts the conformance driver shim
//! ([`slim_reference::client::driver`]): it prints `driver listening on HOST:PORT` on stdout once
//! it listens and serves the runner until SIGINT or SIGTERM (no `--name` or identity needed: the
//! runner creates the apps).
//!
//! Exit codes: 0 done, 1 something went wrong at run time (unreachable node, refused
//! credentials, a message never acknowledged), 2 usage error (bad flag or name, short secret).
//!
//! This file is the command line only (flags, their validation, `main`); the flows are
//! [`slim_reference::client::app`] and the output [`slim_reference::client::output`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand};
use slim_proto::names::{SlimName, NULL_ID};
use slim_reference::client::app::{describe, interrupted, watch_sigint, App, RELIABILITY};
use slim_reference::client::link::HttpAuth;
use slim_reference::client::output::Console;
use slim_reference::client::{Client, ClientOptions};
use slim_reference::session::{Credentials, SessionOptions};
use tracing_subscriber::EnvFilter;

/// Shortest shared secret accepted (as the real SDK).
const MIN_SECRET_LEN: usize = 32;

/// Reference SLIM client: point-to-point and group sessions through a SLIM node.
#[derive(Debug, Parser)]
#[command(name = "slim-client", version)]
struct Cli {
    /// SLIM node to connect to: http://HOST:PORT (h2c) or https://HOST:PORT (TLS)
    #[arg(
        long,
        global = true,
        value_name = "URL",
        default_value = "http://127.0.0.1:46357"
    )]
    node: String,

    /// Our name, org/ns/app (required; the id is derived from the identity)
    #[arg(long, global = true, value_name = "org/ns/app")]
    name: Option<String>,

    /// Shared-secret identity (at least 32 bytes)
    #[arg(long, global = true, value_name = "SECRET", conflicts_with = "jwt")]
    secret: Option<String>,

    /// JWT signing key file (alternative identity)
    #[arg(long, global = true, value_name = "FILE")]
    jwt: Option<PathBuf>,

    /// Machine-readable output: one JSON object per line on stdout
    #[arg(long, global = true)]
    json: bool,

    /// Bound, in seconds, for every wait (connecting, session setup, acknowledgements)
    #[arg(long, global = true, value_name = "SECS", default_value_t = 30.0)]
    timeout: f64,

    /// HTTP Basic credentials for nodes that require them
    #[arg(
        long,
        global = true,
        value_name = "USER:PASS",
        conflicts_with = "bearer"
    )]
    auth_basic: Option<String>,

    /// HTTP Bearer token for nodes that require one
    #[arg(long, global = true, value_name = "TOKEN")]
    bearer: Option<String>,

    /// CA certificates (PEM) that an https:// node's certificate must chain to [default: Mozilla's
    /// roots]
    #[arg(long, global = true, value_name = "FILE")]
    ca: Option<PathBuf>,

    /// Client certificate chain (PEM) for nodes that require mutual TLS (with --key)
    #[arg(long, global = true, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,

    /// Private key (PEM) of --cert
    #[arg(long, global = true, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,

    /// Do not verify an https:// node's certificate chain and name (tests only: anyone on the
    /// path can impersonate the node)
    #[arg(long, global = true, conflicts_with = "ca")]
    insecure: bool,

    /// Revocation list to enforce, the relay's format (`revoked: [{jti|sub|kid: ...}]`),
    /// watched for changes: members refuse what revoked identities sign and a moderator removes
    /// them from its groups (SLIM-REV-007/008)
    #[arg(long, global = true, value_name = "FILE")]
    revocation_file: Option<PathBuf>,

    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Accept sessions (point-to-point and group invitations) and print every message
    Listen {
        /// Send every received message back on the same session
        #[arg(long)]
        echo: bool,
        /// Exit after N messages were received (and echoes acknowledged)
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Send each line of stdin on the session opened last (e.g. a group we were invited to)
        #[arg(long)]
        stdin: bool,
    },
    /// Open a point-to-point session to NAME and send each MESSAGE in order
    Send {
        /// Peer, org/ns/app (any instance) or org/ns/app/id
        #[arg(value_name = "NAME")]
        peer: String,
        /// Messages to send, one per argument
        #[arg(value_name = "MESSAGE", required = true)]
        messages: Vec<String>,
        /// Encrypt the session with MLS
        #[arg(long)]
        mls: bool,
        /// Wait until every message is acknowledged (retransmit otherwise)
        #[arg(long)]
        reliable: bool,
        /// Also wait until N messages were received on the session
        #[arg(long, value_name = "N")]
        expect: Option<u64>,
    },
    /// Create a group on CHANNEL as moderator; stdin lines are sent (`remove NAME` removes)
    Group {
        /// Channel, org/ns/chan
        #[arg(value_name = "CHANNEL")]
        channel: String,
        /// Invite NAME (repeatable)
        #[arg(long, value_name = "NAME")]
        invite: Vec<String>,
        /// Encrypt the group with MLS
        #[arg(long)]
        mls: bool,
        /// Acknowledged delivery to every member
        #[arg(long)]
        reliable: bool,
    },
    /// Host the conformance driver shim (driver.proto) for the runner; prints
    /// `driver listening on HOST:PORT`, serves until SIGINT/SIGTERM
    Driver {
        /// Address to listen on (port 0 picks one)
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
    },
}

/// A usage error: clap prints it with the usage line and exits with code 2.
fn usage(msg: String) -> ! {
    Cli::command().error(ErrorKind::InvalidValue, msg).exit()
}

fn parse_name(flag: &str, text: &str, allow_id: bool) -> SlimName {
    match text.parse::<SlimName>() {
        Ok(n) if !allow_id && n.id() != NULL_ID => usage(format!(
            "invalid {flag} `{text}`: give org/ns/app without an id; the id is derived from the identity"
        )),
        Ok(n) => n,
        Err(e) => usage(format!(
            "invalid {flag} `{text}`: {e}; for example org/ns/alice"
        )),
    }
}

/// Everything the command line decided, validated.
struct Setup {
    opts: ClientOptions,
    timeout: Duration,
    out: Console,
}

/// The JWT key in a `--jwt` file: a PKCS#8 PEM P-256 private key (ES256), or else the file's
/// bytes (without a trailing newline) as an HS256 secret shared by the deployment.
fn jwt_key(bytes: &[u8], path: &std::path::Path) -> slim_proto::identity::JwtKey {
    let text = String::from_utf8_lossy(bytes);
    if text.contains("-----BEGIN") {
        match slim_proto::identity::JwtKey::es256_from_pkcs8_pem(&text) {
            Ok(k) => k,
            Err(e) => usage(format!(
                "--jwt {}: {e}; give a PKCS#8 PEM P-256 private key (ES256) or an HS256 secret",
                path.display()
            )),
        }
    } else {
        let secret = text.trim_end_matches(['\r', '\n']);
        if secret.len() < MIN_SECRET_LEN {
            usage(format!(
                "--jwt {}: an HS256 secret needs at least {MIN_SECRET_LEN} bytes",
                path.display()
            ))
        }
        slim_proto::identity::JwtKey::hs256(secret.as_bytes())
    }
}

fn setup(cli: &Cli) -> Setup {
    let Some(name) = &cli.name else {
        usage("--name org/ns/app is required; for example --name org/ns/alice".into())
    };
    let name = parse_name("--name", name, false);
    let credentials = match (&cli.secret, &cli.jwt) {
        (Some(s), _) if s.len() < MIN_SECRET_LEN => usage(format!(
            "--secret is {} bytes; a shared secret needs at least {MIN_SECRET_LEN} bytes, use a longer one",
            s.len()
        )),
        (Some(s), _) => Credentials::SharedSecret(s.clone()),
        (None, Some(path)) => match std::fs::read(path) {
            Ok(key) => Credentials::Jwt(jwt_key(&key, path)),
            Err(e) => usage(format!(
                "cannot read --jwt {}: {e}; give the path of a JWT signing key file",
                path.display()
            )),
        },
        (None, None) => usage(
            "no identity given; pass --secret SECRET (at least 32 bytes) or --jwt FILE".into(),
        ),
    };
    if !(cli.timeout.is_finite() && cli.timeout > 0.0 && cli.timeout < 1e9) {
        usage(format!(
            "--timeout {} is not a positive number of seconds",
            cli.timeout
        ));
    }
    let timeout = Duration::from_secs_f64(cli.timeout);
    let https = cli.node.starts_with("https://");
    if !https && !cli.node.starts_with("http://") {
        usage(format!(
            "--node {}: give the node as http://host:port (h2c) or https://host:port (TLS), e.g. http://127.0.0.1:46357",
            cli.node
        ));
    }
    let tls_flags = cli.ca.is_some() || cli.cert.is_some() || cli.insecure;
    if !https && tls_flags {
        usage(format!(
            "--ca, --cert, --key and --insecure are for TLS, but --node {} is h2c; use https://",
            cli.node
        ));
    }
    let tls = https.then(|| slim_proto::tls::ClientTls {
        ca: cli.ca.clone(),
        cert: cli.cert.clone(),
        key: cli.key.clone(),
        insecure: cli.insecure,
    });
    let auth = match (&cli.auth_basic, &cli.bearer) {
        (Some(up), _) => match up.split_once(':') {
            Some((u, p)) if !u.is_empty() => Some(HttpAuth::Basic {
                username: u.into(),
                password: p.into(),
            }),
            _ => usage(
                "--auth-basic expects USER:PASS with a non-empty user and a colon, e.g. alice:s3cret"
                    .into(),
            ),
        },
        (None, Some(t)) if t.is_empty() => usage("--bearer needs a non-empty token".into()),
        (None, Some(t)) => Some(HttpAuth::Bearer(t.clone())),
        (None, None) => None,
    };
    // Validate the subcommand's names now, so a typo is a usage error before connecting.
    match &cli.command {
        Cmd::Listen { .. } | Cmd::Driver { .. } => {}
        Cmd::Send { peer, .. } => drop(parse_name("NAME", peer, true)),
        Cmd::Group {
            channel, invite, ..
        } => {
            parse_name("CHANNEL", channel, false);
            for n in invite {
                parse_name("--invite", n, true);
            }
        }
    }
    Setup {
        opts: ClientOptions {
            node: cli.node.clone(),
            tls,
            name,
            credentials,
            auth,
            timeout,
            seed: None,
            mls_crypto: None,
        },
        timeout,
        out: Console::new(cli.json),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::Driver { listen } = cli.command {
        return driver(listen);
    }
    let Setup { opts, timeout, out } = setup(&cli);
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("SLIM_CLIENT_LOG").unwrap_or_else(|_| EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            out.error(&format!(
                "cannot start the async runtime: {e}; check the process limits (threads, files)"
            ));
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let mut sigint = watch_sigint();
        let mut client = tokio::select! {
            c = Client::connect(opts) => c.map_err(|e| describe(&e))?,
            _ = interrupted(&mut sigint) => return Err("interrupted while connecting to the node".to_string()),
        };
        if let Some(path) = &cli.revocation_file {
            client
                .watch_revocations(path.clone())
                .await
                .map_err(|e| format!("--revocation-file: {}", describe(&e)))?;
        }
        out.ready(client.local_name());
        let mut app = App::new(&mut client, out, timeout, sigint);
        match cli.command {
            Cmd::Listen { echo, count, stdin } => app.listen(echo, count, stdin).await,
            Cmd::Send {
                peer,
                messages,
                mls,
                reliable,
                expect,
            } => {
                let peer = parse_name("NAME", &peer, true);
                app.send(peer, messages, options(mls, reliable), expect)
                    .await
            }
            // Handled before connecting.
            Cmd::Driver { .. } => Ok(()),
            Cmd::Group {
                channel,
                invite,
                mls,
                reliable,
            } => {
                let channel = parse_name("CHANNEL", &channel, false);
                let invite = invite
                    .iter()
                    .map(|n| parse_name("--invite", n, true))
                    .collect();
                app.group(channel, invite, options(mls, reliable)).await
            }
        }
    });
    // Do not wait for the stdin reader thread or lingering tasks.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => {
            out.done();
            ExitCode::SUCCESS
        }
        Err(msg) => {
            out.error(&msg);
            ExitCode::from(1)
        }
    }
}

/// `slim-client driver`: the driver shim until SIGINT/SIGTERM (exit 1 if it cannot listen).
fn driver(listen: std::net::SocketAddr) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("SLIM_CLIENT_LOG").unwrap_or_else(|_| EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = tokio::runtime::Runtime::new().and_then(|rt| {
        let r = rt.block_on(slim_reference::client::driver::serve_until_signal(listen));
        rt.shutdown_timeout(Duration::from_millis(100));
        r
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("slim-client driver: cannot serve on {listen}: {e}");
            ExitCode::from(1)
        }
    }
}

fn options(mls: bool, reliable: bool) -> SessionOptions {
    SessionOptions {
        mls,
        reliable: reliable.then_some(RELIABILITY),
    }
}
