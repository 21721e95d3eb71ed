//! `slim-client`: the reference SLIM client on the command line.
//!
//! It connects to a SLIM node (h2c), negotiates the link, subscribes its own name, and then
//! `listen`s for sessions, `send`s messages on a point-to-point session, or moderates a `group`
//! read from stdin. `--json` prints one JSON object per line on stdout for scripts and tests.
//!
//! Exit codes: 0 done, 1 something went wrong at run time (unreachable node, refused
//! credentials, a message never acknowledged), 2 usage error (bad flag or name, short secret).

use std::collections::{BTreeSet, HashMap};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand};
use serde_json::json;
use slim_proto::names::{SlimName, NULL_ID};
use slim_reference::client::link::HttpAuth;
use slim_reference::client::{Client, ClientError, ClientEvent, ClientOptions};
use slim_reference::session::{Credentials, Event, Reliability, SessionId, SessionOptions};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing_subscriber::EnvFilter;

/// Shortest shared secret accepted (as the real SDK).
const MIN_SECRET_LEN: usize = 32;

/// Reliability of `--reliable` sessions: the real SDK's control-message defaults (1 s, 10).
const RELIABILITY: Reliability = Reliability {
    interval: Duration::from_secs(1),
    max_retries: 10,
};

/// Reference SLIM client: point-to-point and group sessions through a SLIM node.
#[derive(Debug, Parser)]
#[command(name = "slim-client", version)]
struct Cli {
    /// SLIM node to connect to (h2c; https is not supported yet)
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
    out: Out,
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
    if cli.node.starts_with("https://") {
        usage(format!(
            "--node {}: TLS is not supported yet; use an h2c node with http://",
            cli.node
        ));
    }
    if !cli.node.starts_with("http://") {
        usage(format!(
            "--node {}: give the node as http://host:port, e.g. http://127.0.0.1:46357",
            cli.node
        ));
    }
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
        Cmd::Listen { .. } => {}
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
            name,
            credentials,
            auth,
            timeout,
            seed: None,
        },
        timeout,
        out: Out { json: cli.json },
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        out.ready(client.local_name());
        let mut app = App {
            client: &mut client,
            out,
            timeout,
            sessions: BTreeSet::new(),
            sigint,
        };
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

fn options(mls: bool, reliable: bool) -> SessionOptions {
    SessionOptions {
        mls,
        reliable: reliable.then_some(RELIABILITY),
    }
}

/// A client error as one `what; how to fix` sentence.
fn describe(e: &ClientError) -> String {
    match e {
        // Link errors already say how to fix them.
        ClientError::Link(l) => l.to_string(),
        ClientError::Session(s) => format!("{s}; see the session events above"),
        ClientError::Endpoint(s) => {
            format!("cannot start the session endpoint: {s}; check --name and the identity")
        }
        ClientError::Subscribe { .. } => format!(
            "{e}; the node must accept a subscription for our own name (check its limits and logs)"
        ),
        ClientError::Stopped => {
            "the client stopped unexpectedly; run with SLIM_CLIENT_LOG=debug to see why".into()
        }
    }
}

/// `org/ns/app` without the id, as human output shows a sender.
fn short(name: &SlimName) -> String {
    let [a, b, c] = name.components();
    format!("{a}/{b}/{c}")
}

/// Whether `member` is the app `wanted` names (any instance when `wanted` has no id).
fn same_app(member: &SlimName, wanted: &SlimName) -> bool {
    member.components() == wanted.components()
        && (wanted.id() == NULL_ID || member.id() == wanted.id())
}

/// Human or JSON output.
#[derive(Clone, Copy)]
struct Out {
    json: bool,
}

impl Out {
    fn emit(&self, v: serde_json::Value) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{v}");
        let _ = stdout.flush();
    }

    fn status(&self, line: &str) {
        if !self.json {
            eprintln!("{line}");
        }
    }

    fn ready(&self, name: &SlimName) {
        if self.json {
            self.emit(json!({"event": "ready", "name": name.to_string()}));
        } else {
            self.status(&format!("ready as {name}"));
        }
    }

    fn done(&self) {
        if self.json {
            self.emit(json!({"event": "done"}));
        }
    }

    /// A problem: `error: ...` on stderr, and an error event in JSON mode.
    fn error(&self, msg: &str) {
        if self.json {
            self.emit(json!({"event": "error", "message": msg}));
        }
        eprintln!("error: {msg}");
    }

    fn event(&self, ev: &ClientEvent) {
        match ev {
            ClientEvent::Session(ev) => self.session_event(ev),
            ClientEvent::Reconnected { node } => {
                if self.json {
                    self.emit(json!({"event": "reconnected", "node": node}));
                } else {
                    self.status(&format!("reconnected to {node}; subscriptions restored"));
                }
            }
            ClientEvent::Disconnected { reason } => self.status(&format!(
                "connection to the node lost ({reason}); reconnecting"
            )),
            ClientEvent::Problem(msg) => self.error(msg),
            // Reported by the caller, which then exits.
            ClientEvent::Fatal(_) => {}
        }
    }

    fn session_event(&self, ev: &Event) {
        let j = self.json;
        match ev {
            Event::SessionOpened {
                session,
                peer,
                initiator,
                group,
            } => {
                if j {
                    self.emit(json!({"event": "session", "session": session, "peer": peer.to_string(), "group": group, "initiator": initiator}));
                } else {
                    let kind = if *group { "group" } else { "point-to-point" };
                    self.status(&format!("{kind} session {session} with {peer} opened"));
                }
            }
            Event::Message {
                session,
                from,
                payload,
            } => {
                let text = String::from_utf8_lossy(payload);
                if j {
                    self.emit(json!({"event": "message", "session": session, "from": from.to_string(), "text": text}));
                } else {
                    let mut stdout = std::io::stdout().lock();
                    let _ = writeln!(stdout, "{} {text}", short(from));
                    let _ = stdout.flush();
                }
            }
            Event::Delivered {
                session,
                message_id,
            } => {
                if j {
                    self.emit(
                        json!({"event": "delivered", "session": session, "message_id": message_id}),
                    );
                } else {
                    self.status(&format!(
                        "message {message_id} delivered (session {session})"
                    ));
                }
            }
            Event::SendFailed {
                session,
                message_id,
                peer,
            } => {
                if j {
                    self.emit(json!({"event": "send_failed", "session": session, "message_id": message_id, "peer": peer.to_string()}));
                } else {
                    self.status(&format!(
                        "message {message_id} was never acknowledged by {peer} (session {session})"
                    ));
                }
            }
            Event::MemberJoined { session, member } => {
                if j {
                    self.emit(json!({"event": "member_joined", "session": session, "member": member.to_string()}));
                } else {
                    self.status(&format!("{member} joined session {session}"));
                }
            }
            Event::MemberLeft { session, member } => {
                if j {
                    self.emit(json!({"event": "member_left", "session": session, "member": member.to_string()}));
                } else {
                    self.status(&format!("{member} left session {session}"));
                }
            }
            Event::Removed { session } => {
                if j {
                    self.emit(json!({"event": "removed", "session": session}));
                } else {
                    self.status(&format!("we were removed from group session {session}"));
                }
            }
            Event::SessionClosed { session, reason } => {
                if j {
                    self.emit(json!({"event": "closed", "session": session, "reason": reason}));
                } else {
                    self.status(&format!("session {session} closed: {reason}"));
                }
            }
            Event::Error { session, message } => {
                if j {
                    let mut v = json!({"event": "error", "message": message});
                    if let Some(s) = session {
                        v["session"] = json!(s);
                    }
                    self.emit(v);
                } else {
                    match session {
                        Some(s) => eprintln!("error: session {s}: {message}"),
                        None => eprintln!("error: {message}"),
                    }
                }
            }
        }
    }
}

/// A flag that turns true on the first SIGINT. One watcher for the whole run, so a signal that
/// arrives between two waits is not lost.
///
/// The handler is registered before this returns (not when the task first runs), so a SIGINT
/// that comes right after `ready` is printed is not lost to the default action.
fn watch_sigint() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    #[cfg(unix)]
    let mut signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    tokio::spawn(async move {
        #[cfg(unix)]
        let got = match signal.as_mut() {
            Some(s) => s.recv().await.is_some(),
            None => tokio::signal::ctrl_c().await.is_ok(),
        };
        #[cfg(not(unix))]
        let got = tokio::signal::ctrl_c().await.is_ok();
        if got {
            let _ = tx.send(true);
            // Keep the sender alive so receivers do not see a closed channel.
            std::future::pending::<()>().await;
        }
    });
    rx
}

/// Resolves once SIGINT was received.
async fn interrupted(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|&hit| hit).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A running subcommand.
struct App<'a> {
    client: &'a mut Client,
    out: Out,
    timeout: Duration,
    /// Sessions open now (closed gracefully on exit).
    sessions: BTreeSet<SessionId>,
    /// True once SIGINT was received.
    sigint: watch::Receiver<bool>,
}

/// What the main loops wait on.
enum Step {
    Event(ClientEvent),
    Interrupted,
    Tick,
    Deadline,
}

impl App<'_> {
    /// The next event, printed and tracked; `Err` on a fatal one or a stopped client.
    async fn step(
        &mut self,
        deadline: Option<Instant>,
        tick: bool,
        sigint: bool,
    ) -> Result<Step, String> {
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        let tick_at = Instant::now() + Duration::from_millis(25);
        let step = tokio::select! {
            ev = self.client.next_event() => match ev {
                Some(ev) => Step::Event(ev),
                None => return Err(describe(&ClientError::Stopped)),
            },
            _ = interrupted(&mut self.sigint), if sigint => Step::Interrupted,
            _ = tokio::time::sleep_until(tick_at), if tick => Step::Tick,
            _ = tokio::time::sleep_until(deadline.unwrap_or(far)) => Step::Deadline,
        };
        if let Step::Event(ev) = &step {
            self.out.event(ev);
            match ev {
                ClientEvent::Fatal(e) => return Err(describe(e)),
                ClientEvent::Session(Event::SessionOpened { session, .. }) => {
                    self.sessions.insert(*session);
                }
                ClientEvent::Session(Event::SessionClosed { session, .. })
                | ClientEvent::Session(Event::Removed { session }) => {
                    self.sessions.remove(session);
                }
                _ => {}
            }
        }
        Ok(step)
    }

    /// Waits (printing events) until nothing is pending at the endpoint, up to the timeout.
    async fn wait_idle(&mut self, what: &str) -> Result<(), String> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if !self.client.is_busy().await.map_err(|e| describe(&e))? {
                return Ok(());
            }
            match self.step(Some(deadline), true, true).await? {
                Step::Deadline => {
                    return Err(format!(
                        "{what} still pending after {:?}; is the peer still running? raise --timeout if the network is slow",
                        self.timeout
                    ))
                }
                Step::Interrupted => return Err(format!("interrupted while {what} was pending")),
                _ => {}
            }
        }
    }

    /// Closes every open session and waits (bounded) for them to close.
    async fn close_all(&mut self) {
        let bound = self.timeout.min(Duration::from_secs(5));
        let deadline = Instant::now() + bound;
        let open: Vec<SessionId> = self.sessions.iter().copied().collect();
        for s in open {
            if let Err(e) = self.client.close(s).await {
                self.out.status(&format!("closing session {s}: {e}"));
                self.sessions.remove(&s);
            }
        }
        loop {
            let busy = self.client.is_busy().await.unwrap_or(false);
            if self.sessions.is_empty() && !busy {
                return;
            }
            match self.step(Some(deadline), true, false).await {
                Ok(Step::Deadline) | Ok(Step::Interrupted) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    async fn listen(&mut self, echo: bool, count: Option<u64>, stdin: bool) -> Result<(), String> {
        self.out.status("listening; stop with Ctrl-C");
        let mut received = 0u64;
        let mut lines = stdin.then(stdin_lines);
        let mut newest: Option<SessionId> = None;
        while count.is_none_or(|n| received < n) {
            let step = match &mut lines {
                Some(l) => tokio::select! {
                    line = l.recv() => {
                        match line {
                            Some(line) => match newest.filter(|s| self.sessions.contains(s)) {
                                Some(s) => {
                                    if let Err(e) = self.client.publish(s, Bytes::from(line.into_bytes())).await {
                                        self.out.error(&format!("cannot send on session {s}: {}", describe(&e)));
                                    }
                                }
                                None => self.out.error("no open session to send this line on; wait for an invitation"),
                            },
                            None => lines = None,
                        }
                        continue;
                    }
                    step = self.step(None, false, true) => step?,
                },
                None => self.step(None, false, true).await?,
            };
            match step {
                Step::Interrupted => {
                    self.close_all().await;
                    return Ok(());
                }
                Step::Event(ClientEvent::Session(Event::SessionOpened { session, .. })) => {
                    newest = Some(session);
                }
                Step::Event(ClientEvent::Session(Event::Message {
                    session, payload, ..
                })) => {
                    received += 1;
                    if echo {
                        if let Err(e) = self.client.publish(session, payload).await {
                            self.out
                                .error(&format!("cannot echo on session {session}: {e}"));
                        }
                    }
                }
                _ => {}
            }
        }
        if echo {
            self.wait_idle("the acknowledgement of our echoes").await?;
        }
        self.close_all().await;
        Ok(())
    }

    async fn send(
        &mut self,
        peer: SlimName,
        messages: Vec<String>,
        opts: SessionOptions,
        expect: Option<u64>,
    ) -> Result<(), String> {
        let reliable = opts.reliable.is_some();
        let session = self
            .client
            .open_p2p(peer.clone(), opts)
            .await
            .map_err(|e| describe(&e))?;
        self.sessions.insert(session);
        // Wait for the session to be established before sending.
        let deadline = Instant::now() + self.timeout;
        let mut received = 0u64;
        loop {
            match self.step(Some(deadline), false, true).await? {
                Step::Event(ClientEvent::Session(Event::SessionOpened { session: s, .. }))
                    if s == session =>
                {
                    break
                }
                Step::Event(ClientEvent::Session(Event::SessionClosed { session: s, reason }))
                    if s == session =>
                {
                    return Err(format!(
                        "the session to {peer} closed before it was established: {reason}; check that {peer} is running `slim-client listen` with the same identity settings"
                    ));
                }
                Step::Event(ClientEvent::Session(Event::Message { session: s, .. }))
                    if s == session =>
                {
                    received += 1
                }
                Step::Deadline => {
                    return Err(format!(
                        "{peer} did not answer within {:?}; is `slim-client listen --name {}` running on the same node, with the same --secret?",
                        self.timeout,
                        short(&peer)
                    ))
                }
                Step::Interrupted => {
                    self.close_all().await;
                    return Err("interrupted before the session was established".into());
                }
                _ => {}
            }
        }
        let mut pending: HashMap<u32, String> = HashMap::new();
        for text in messages {
            let id = self
                .client
                .publish(session, Bytes::from(text.clone().into_bytes()))
                .await
                .map_err(|e| describe(&e))?;
            if reliable {
                pending.insert(id, text);
            }
        }
        let deadline = Instant::now() + self.timeout;
        while !pending.is_empty() || expect.is_some_and(|n| received < n) {
            match self.step(Some(deadline), false, true).await? {
                Step::Event(ClientEvent::Session(Event::Delivered {
                    session: s,
                    message_id,
                })) if s == session => {
                    pending.remove(&message_id);
                }
                Step::Event(ClientEvent::Session(Event::SendFailed {
                    session: s,
                    message_id,
                    peer: who,
                })) if s == session => {
                    let text = pending.remove(&message_id).unwrap_or_default();
                    self.close_all().await;
                    return Err(format!(
                        "message {message_id} ({text:?}) was never acknowledged by {who} after {} retries; is the peer still running?",
                        RELIABILITY.max_retries
                    ));
                }
                Step::Event(ClientEvent::Session(Event::Message { session: s, .. }))
                    if s == session =>
                {
                    received += 1
                }
                Step::Event(ClientEvent::Session(Event::SessionClosed { session: s, reason }))
                    if s == session =>
                {
                    return Err(format!(
                        "{peer} closed the session before we were done ({reason}); {} message(s) unacknowledged, {received} received",
                        pending.len()
                    ));
                }
                Step::Deadline => {
                    let mut ids: Vec<_> = pending.keys().collect();
                    ids.sort();
                    self.close_all().await;
                    return Err(format!(
                        "gave up after {:?}: {} message(s) unacknowledged {ids:?}, {received} of {} expected message(s) received; raise --timeout or check the peer",
                        self.timeout,
                        pending.len(),
                        expect.unwrap_or(0)
                    ));
                }
                Step::Interrupted => {
                    self.close_all().await;
                    return Err("interrupted before every message was acknowledged".into());
                }
                _ => {}
            }
        }
        self.wait_idle("sending").await?;
        self.close_all().await;
        Ok(())
    }

    async fn group(
        &mut self,
        channel: SlimName,
        invite: Vec<SlimName>,
        opts: SessionOptions,
    ) -> Result<(), String> {
        let session = self
            .client
            .create_group(channel.clone(), opts)
            .await
            .map_err(|e| describe(&e))?;
        self.sessions.insert(session);
        for peer in &invite {
            self.client
                .invite(session, peer.clone())
                .await
                .map_err(|e| describe(&e))?;
        }
        let mut members: Vec<SlimName> = Vec::new();
        let deadline = Instant::now() + self.timeout;
        while !invite
            .iter()
            .all(|w| members.iter().any(|m| same_app(m, w)))
        {
            match self.step(Some(deadline), false, true).await? {
                Step::Event(ClientEvent::Session(Event::MemberJoined { session: s, member }))
                    if s == session =>
                {
                    members.push(member)
                }
                Step::Deadline => {
                    let missing: Vec<String> = invite
                        .iter()
                        .filter(|w| !members.iter().any(|m| same_app(m, w)))
                        .map(|w| w.to_string())
                        .collect();
                    self.close_all().await;
                    return Err(format!(
                        "{} did not join {channel} within {:?}; is `slim-client listen` running for each, with the same --secret?",
                        missing.join(", "),
                        self.timeout
                    ));
                }
                Step::Interrupted => {
                    self.close_all().await;
                    return Ok(());
                }
                _ => {}
            }
        }
        self.out.status(
            "group ready: type lines to send, `remove NAME` to remove a member, EOF to end",
        );
        let mut lines = stdin_lines();
        loop {
            let line = tokio::select! {
                line = lines.recv() => line,
                step = self.step(None, false, true) => {
                    match step? {
                        Step::Interrupted => break,
                        Step::Event(ClientEvent::Session(Event::MemberJoined { session: s, member })) if s == session => members.push(member),
                        Step::Event(ClientEvent::Session(Event::MemberLeft { session: s, member })) if s == session => members.retain(|m| *m != member),
                        _ => {}
                    }
                    continue;
                }
            };
            let Some(line) = line else { break };
            if let Some(who) = line.strip_prefix("remove ") {
                let who = who.trim();
                let wanted = match who.parse::<SlimName>() {
                    Ok(n) => n,
                    Err(e) => {
                        self.out.error(&format!(
                            "cannot remove `{who}`: {e}; write `remove org/ns/app`"
                        ));
                        continue;
                    }
                };
                let target = members
                    .iter()
                    .find(|m| same_app(m, &wanted))
                    .cloned()
                    .unwrap_or(wanted);
                if let Err(e) = self.client.remove(session, target.clone()).await {
                    self.out
                        .error(&format!("cannot remove {target}: {}", describe(&e)));
                }
            } else if let Err(e) = self
                .client
                .publish(session, Bytes::from(line.into_bytes()))
                .await
            {
                self.out
                    .error(&format!("cannot send to {channel}: {}", describe(&e)));
            }
        }
        self.wait_idle("the acknowledgement of group messages")
            .await?;
        self.close_all().await;
        Ok(())
    }
}

/// Lines of stdin, read on a thread (blocking reads do not belong on the runtime); the channel
/// closes at EOF.
fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
