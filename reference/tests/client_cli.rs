//! The `slim-client` binary: usage errors (exit 2) and run-time errors (exit 1) say what is wrong
//! and how to fix it; against a relay it reports `ready` and exits cleanly on SIGINT.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use slim_reference::config::ServerConfig;
use slim_reference::server::spawn;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn client() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_slim-client"));
    c.stdin(Stdio::null());
    c
}

fn run(args: &[&str]) -> Output {
    client().args(args).output().expect("run slim-client")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A loopback port nobody listens on (bound, read, released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[test]
fn help_lists_the_subcommands_and_global_options() {
    let o = run(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let text = String::from_utf8_lossy(&o.stdout);
    for word in [
        "listen",
        "send",
        "group",
        "--node",
        "--name",
        "--secret",
        "--jwt",
        "--json",
        "--timeout",
        "--auth-basic",
        "--bearer",
    ] {
        assert!(text.contains(word), "--help should mention {word}:\n{text}");
    }
    let o = run(&["send", "--help"]);
    let text = String::from_utf8_lossy(&o.stdout);
    for word in ["--mls", "--reliable", "--expect", "MESSAGE"] {
        assert!(
            text.contains(word),
            "send --help should mention {word}:\n{text}"
        );
    }
}

#[test]
fn unreachable_node_exits_1_with_the_fix() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let started = std::time::Instant::now();
    let o = run(&[
        "listen",
        "--name",
        "org/ns/alice",
        "--secret",
        SECRET,
        "--node",
        &url,
        "--timeout",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited for the bound"
    );
    let want = format!(
        "error: cannot reach the SLIM node at {url}: connection refused; is it running? start one with `cargo run --release --bin slim-relay`"
    );
    assert_eq!(stderr(&o).trim_end(), want);

    // --json also puts it on stdout as an error event.
    let o = run(&[
        "--json",
        "send",
        "org/ns/bob",
        "hi",
        "--name",
        "org/ns/alice",
        "--secret",
        SECRET,
        "--node",
        &url,
        "--timeout",
        "0.3",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let line = String::from_utf8_lossy(&o.stdout);
    let v: serde_json::Value = serde_json::from_str(line.trim()).expect("one JSON line");
    assert_eq!(v["event"], "error");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("connection refused")),
        "{v}"
    );
}

#[test]
fn bad_names_are_usage_errors_naming_the_problem() {
    for (name, why) in [
        ("org/ns", "3 or 4 parts"),
        ("org//alice", "empty component"),
        ("org/ns/alice/x-y", "is not a UUID"),
        ("org/ns/alice/7", "without an id"),
    ] {
        let o = run(&["listen", "--name", name, "--secret", SECRET]);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(e.starts_with("error: invalid --name"), "{name}: {e}");
        assert!(e.contains(name), "{name}: {e}");
        assert!(e.contains(why), "{name}: {e}");
    }
    // The peer of `send` too, before anything is attempted on the network.
    let o = run(&[
        "send",
        "org/ns",
        "hi",
        "--name",
        "org/ns/alice",
        "--secret",
        SECRET,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("invalid NAME"), "{}", stderr(&o));
    let o = run(&["listen", "--secret", SECRET]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--name org/ns/app is required"));
}

#[test]
fn identity_problems_are_usage_errors() {
    let short = "only-31-bytes-of-secret-here!!!";
    assert_eq!(short.len(), 31);
    let o = run(&["listen", "--name", "org/ns/alice", "--secret", short]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("--secret is 31 bytes"), "{e}");
    assert!(e.contains("at least 32 bytes"), "{e}");
    assert!(!e.contains(short), "never echoes the secret: {e}");

    let o = run(&["listen", "--name", "org/ns/alice"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--secret SECRET"), "{}", stderr(&o));

    let o = run(&[
        "listen",
        "--name",
        "org/ns/alice",
        "--jwt",
        "/nonexistent/key.pem",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot read --jwt /nonexistent/key.pem"));

    let o = run(&[
        "listen",
        "--name",
        "org/ns/alice",
        "--secret",
        SECRET,
        "--node",
        "http://127.0.0.1:1",
        "--insecure",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--insecure are for TLS, but --node http://127.0.0.1:1 is h2c"),
        "{}",
        stderr(&o)
    );
}

async fn next_line(lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(10), lines.recv())
        .await
        .expect("a line within 10 s")
}

/// Kills the child when dropped, so a failing test leaves nothing running.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn listen_reports_ready_and_exits_cleanly_on_sigint() {
    let relay = spawn(ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..ServerConfig::default()
    })
    .await
    .expect("relay starts");
    let mut child = Child(
        client()
            .args([
                "--json",
                "listen",
                "--name",
                "org/ns/alice",
                "--secret",
                SECRET,
                "--node",
                &relay.url(),
                "--timeout",
                "5",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start slim-client"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let ready = next_line(&mut lines).await.expect("ready line");
    let v: serde_json::Value = serde_json::from_str(&ready).expect("JSON");
    assert_eq!(v["event"], "ready", "{ready}");
    let full = v["name"].as_str().expect("name");
    let parsed: slim_proto::names::SlimName = full.parse().expect("a full name");
    assert_eq!(parsed.components(), ["org", "ns", "alice"]);
    assert_ne!(
        parsed.id(),
        slim_proto::names::NULL_ID,
        "ready name has the id"
    );
    // Connected, negotiated and subscribed: the relay holds its link.
    assert_eq!(relay.connections(), 1);

    let pid = child.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success());
    assert_eq!(
        next_line(&mut lines).await.as_deref(),
        Some(r#"{"event":"done"}"#)
    );
    let status = tokio::task::spawn_blocking(move || child.0.wait())
        .await
        .expect("join")
        .expect("wait");
    assert_eq!(status.code(), Some(0));
    relay.shutdown().await.expect("relay stops");
}
