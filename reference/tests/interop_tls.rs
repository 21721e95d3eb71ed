//! The real SDK (`slim-bindings` from PyPI) and our relay over TLS and mutual TLS, and across
//! relay restarts.
//!
//! - Two real apps run a reliable MLS point-to-point session through `slim-relay` serving TLS
//!   (the apps verify its certificate against a test CA), then through one requiring client
//!   certificates (the apps present one signed by that CA).
//! - A real app pair survives repeated restarts of a `slim-relay` process on the same port: the
//!   SDK 3.3.8 reconnects only when its attempt is refused, and gives up for good on a reset, so
//!   this passes only if the relay closes its listener before it ends the links (SIGTERM).
//!
//! If the wheel cannot be installed the tests fail and say why: they are never skipped.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use slim_proto::tls::ServerTls;
use slim_reference::config::ServerConfig;
use slim_reference::server::spawn;

#[path = "support/certs.rs"]
mod certs;
#[path = "support/drivers.rs"]
mod drivers;
#[path = "support/venv.rs"]
mod venv;
use venv::python;

/// Upper bound for one scenario (the drivers bound their own waits well below this).
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(240);

/// Serialises venv creation and scenarios: they share 2 cores and one venv.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn scratch() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

async fn p2p_over(mutual: bool) {
    let _serial = SERIAL.lock().await;
    let py = python();
    let pki = certs::make(scratch());
    let relay = spawn(ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        tls: Some(ServerTls {
            cert: pki.node_cert.clone(),
            key: pki.node_key.clone(),
            client_ca: mutual.then(|| pki.ca.clone()),
        }),
        ..ServerConfig::default()
    })
    .await
    .expect("TLS relay starts");
    let url = relay.url();
    let mut env = vec![("SLIM_INTEROP_CA", pki.ca.as_path())];
    if mutual {
        env.push(("SLIM_INTEROP_CERT", pki.client_cert.as_path()));
        env.push(("SLIM_INTEROP_KEY", pki.client_key.as_path()));
    }
    let n = 20u64;
    let s = drivers::run_driver_env(
        &py,
        "p2p_reliable_mls.py",
        &["--node", &url, "--count", "20"],
        &env,
        SCENARIO_TIMEOUT,
        &format!("via {url} (mutual TLS: {mutual})"),
    )
    .await;
    for dir in ["alice_to_bob", "bob_to_alice"] {
        assert_eq!(s[dir]["received"].as_u64(), Some(n), "{dir}: {s}");
        assert_eq!(s[dir]["duplicates"].as_u64(), Some(0), "{dir}: {s}");
    }
    let stats = relay.stats();
    assert!(stats.links_established >= 2, "{stats:?}");
    assert!(
        stats.publishes_delivered >= 2 * n,
        "the TLS relay carried the traffic: {stats:?}"
    );
    println!(
        "real slim-bindings apps over {}: {n}/{n} each way, relay delivered {} publishes on {} TLS links",
        if mutual { "mTLS" } else { "TLS" },
        stats.publishes_delivered,
        stats.links_established
    );
    relay.shutdown().await.expect("relay stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_slim_apps_talk_through_our_relay_over_tls() {
    p2p_over(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_slim_apps_talk_through_our_relay_over_mutual_tls() {
    p2p_over(true).await;
}

/// A `slim-relay` process; SIGTERM-ed (then killed) when dropped.
struct RelayProcess(Child);

impl RelayProcess {
    /// Starts `slim-relay --listen 127.0.0.1:port` and waits (bounded) for its "listening" line.
    fn start(port: u16) -> RelayProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_slim-relay"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("SLIM_RELAY_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start slim-relay");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("slim-relay listening") => break,
                Ok(_) => {}
                Err(_) => panic!("slim-relay on port {port} did not start within 20 s"),
            }
        }
        RelayProcess(child)
    }

    /// SIGTERM, then waits (bounded) for a clean exit.
    fn terminate(mut self) {
        let pid = self.0.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        assert!(status.success(), "kill -TERM {pid}");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(exit) = self.0.try_wait().expect("wait") {
                assert!(
                    exit.success(),
                    "slim-relay exits cleanly on SIGTERM: {exit}"
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "slim-relay did not exit within 15 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The driver process, fed commands on stdin; its events arrive on a channel.
struct Driver {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::Receiver<String>,
}

impl Driver {
    fn next(&self, what: &str, bound: Duration) -> Value {
        let deadline = Instant::now() + bound;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.events.recv_timeout(left).unwrap_or_else(|_| {
                panic!("no {what} from restart_resilience.py within {bound:?}")
            });
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v.get("event").is_some() || v.get("scenario").is_some() {
                    return v;
                }
            }
        }
    }

    fn send(&mut self, cmd: Value) {
        writeln!(self.stdin, "{cmd}").expect("driver stdin");
        self.stdin.flush().expect("flush");
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_slim_app_pair_survives_repeated_relay_restarts() {
    let _serial = SERIAL.lock().await;
    let py = python();
    let port = venv::free_port();
    let mut relay = Some(RelayProcess::start(port));
    let mut child = Command::new(&py)
        .arg(venv::interop_dir().join("restart_resilience.py"))
        .args(["--node", &format!("http://127.0.0.1:{port}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start restart_resilience.py");
    let stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut driver = Driver {
        child,
        stdin,
        events: rx,
    };
    let ready = driver.next("ready", Duration::from_secs(120));
    assert_eq!(ready["event"], "ready", "{ready}");
    driver.send(serde_json::json!({"cmd": "exchange", "tag": 0}));
    let first = driver.next("exchange before any restart", Duration::from_secs(90));
    assert_eq!(first["event"], "exchanged", "before any restart: {first}");
    let restarts = 3;
    let mut took = Vec::new();
    for tag in 1..=restarts {
        if let Some(r) = relay.take() {
            r.terminate();
        }
        relay = Some(RelayProcess::start(port));
        driver.send(serde_json::json!({"cmd": "exchange", "tag": tag}));
        let ev = driver.next("exchange after a restart", Duration::from_secs(90));
        assert_eq!(
            ev["event"], "exchanged",
            "after restart {tag} the real apps must reconnect and exchange again: {ev}"
        );
        took.push(ev["seconds"].as_f64().unwrap_or(f64::NAN));
    }
    driver.send(serde_json::json!({"cmd": "quit"}));
    let summary = driver.next("summary", Duration::from_secs(60));
    assert_eq!(summary["ok"], true, "{summary}");
    println!(
        "real slim-bindings apps across {restarts} slim-relay restarts (SIGTERM): exchanged again after {took:?} s"
    );
    drop(relay);
}
