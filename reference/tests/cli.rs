//! The `slim-relay` binary: configuration errors, logging, and clean shutdown on SIGTERM/SIGINT.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::RawLink;
use tonic::Code;

fn relay_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_slim-relay"))
}

/// Kills the child when dropped, so a failing test never leaves a relay running.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut child = relay_bin()
            .args(args)
            .env("SLIM_RELAY_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start slim-relay");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, lines }
    }

    /// The next log line containing `needle`, within 10 s.
    fn wait_for(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no log line containing {needle:?} within 10 s"),
            }
        }
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "relay did not exit within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn unknown_config_key_is_named_and_exits_2() {
    let dir = std::env::temp_dir().join(format!("slim-relay-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let path = dir.join("relay.yaml");
    std::fs::write(&path, "listen: 127.0.0.1:0\nrequire_mac: true\n").expect("write");
    let out = relay_bin()
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field `require_mac`"), "{err}");
    assert!(err.contains("relay.yaml"), "{err}");

    let out = relay_bin()
        .args(["--config", "/nonexistent/relay.yaml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file"));

    let out = relay_bin()
        .args(["--require-header-mac", "maybe"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "clap rejects a non-boolean");
    let _ = std::fs::remove_dir_all(&dir);
}

fn listening_url(relay: &Running) -> String {
    let line = strip_ansi(&relay.wait_for("slim-relay listening"));
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .expect("addr= in the listening line");
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_links_with_unavailable_and_exits_0() {
    let mut relay = Running::start(&["--listen", "127.0.0.1:0", "--node-id", "cli-test"]);
    let url = listening_url(&relay);
    let mut link = RawLink::connect(&url).await;
    let opened = strip_ansi(&relay.wait_for("connection opened"));
    assert!(opened.contains("conn=0"), "{opened}");
    relay.signal("-TERM");
    let status = link.recv().await.expect_err("stream ends");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let exit = relay.wait_exit();
    assert!(exit.success(), "{exit:?}");
    relay.wait_for("SIGTERM received");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_the_relay_and_closes_are_logged() {
    let mut relay = Running::start(&["--listen", "127.0.0.1:0"]);
    let url = listening_url(&relay);
    let link = RawLink::connect(&url).await;
    drop(link);
    let closed = strip_ansi(&relay.wait_for("connection closed"));
    assert!(closed.contains("conn=0"), "{closed}");
    relay.signal("-INT");
    assert!(relay.wait_exit().success());
}

#[test]
fn malformed_auth_flags_are_usage_errors() {
    let out = relay_bin()
        .args(["--auth-basic", "nocolon"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--auth-basic"), "{err}");
    assert!(err.contains("expected USER:PASS"), "says the form: {err}");
    assert!(
        !err.contains("nocolon"),
        "does not repeat the secret: {err}"
    );

    let out = relay_bin()
        .args(["--auth-bearer", ""])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the token must not be empty"), "{err}");

    let out = relay_bin()
        .args(["--auth-basic", "u:p", "--auth-bearer", "t"])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(2),
        "the two schemes exclude each other"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot be used with"), "{err}");
}

#[test]
fn jwt_and_revocation_flag_mistakes_are_named() {
    let run = |args: &[&str]| {
        let out = relay_bin()
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--revocation-file", "/nonexistent/revoked.yaml"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("revocation.file needs auth: {jwt"), "{err}");
    let (code, err) = run(&["--auth-jwt-key", "/nonexistent/idp.pub.pem"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("cannot read /nonexistent/idp.pub.pem"),
        "{err}"
    );
    let (code, err) = run(&["--auth-jwt-issuer", "idp"]);
    assert_eq!(code, Some(2), "issuer needs a key: {err}");
    let (code, err) = run(&["--auth-bearer", "t", "--auth-jwt-jwks", "/x"]);
    assert_eq!(code, Some(2), "bearer and jwt exclude each other: {err}");
}

#[test]
fn auth_in_config_with_missing_password_is_named() {
    let dir = std::env::temp_dir().join(format!("slim-relay-cli-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let path = dir.join("relay.yaml");
    std::fs::write(&path, "auth: {basic: {username: u}}\n").expect("write");
    let out = relay_bin()
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing field `password`"), "{err}");
    assert!(err.contains("auth.basic"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_bearer_flag_refuses_a_client_without_token() {
    // SLIM-AUTH-001/002: refused at call setup, logged with the reason, no connection index used.
    let relay = Running::start(&["--listen", "127.0.0.1:0", "--auth-bearer", "t0ken"]);
    let url = listening_url(&relay);
    let status = match RawLink::try_open(&url, None).await {
        Ok(_) => panic!("a client without token was accepted"),
        Err(status) => status,
    };
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("missing authorization header"),
        "{status:?}"
    );
    let refused = strip_ansi(&relay.wait_for("OpenChannel refused"));
    assert!(
        refused.contains("missing authorization header"),
        "{refused}"
    );
    assert!(refused.contains("127.0.0.1"), "names the peer: {refused}");
    // SLIM-AUTH-003: the token opens a link, and it is the first connection the core has seen.
    let _link = RawLink::connect_with(&url, "Bearer t0ken").await;
    let opened = strip_ansi(&relay.wait_for("connection opened"));
    assert!(opened.contains("conn=0"), "{opened}");
}

/// The README's worked example ("JWT bearer tokens and revocation"), with the three binaries:
/// `slim-token` issues a token, `slim-relay --config` verifies it and watches the list,
/// `slim-client --bearer` connects; revoking the token's jti ends the client with an error that
/// says it was revoked, and the relay logs the reload.
#[test]
fn the_readme_jwt_revocation_example_runs() {
    use p256::ecdsa::SigningKey;
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let dir = std::env::temp_dir().join(format!("slim-readme-jwt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let key = SigningKey::random(&mut rand_core::OsRng);
    let key_pem = dir.join("idp.key.pem");
    let pub_pem = dir.join("idp.pub.pem");
    std::fs::write(
        &key_pem,
        key.to_pkcs8_pem(LineEnding::LF).expect("pem").as_bytes(),
    )
    .expect("write key");
    std::fs::write(
        &pub_pem,
        key.verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("pem"),
    )
    .expect("write public key");
    let list = dir.join("revoked.yaml");
    std::fs::write(&list, "revoked: []\n").expect("write list");
    let config = dir.join("relay.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\nauth: {{jwt: {{keys: [{}], issuer: idp, audience: slim}}}}\nrevocation: {{file: {}}}\n",
            pub_pem.display(),
            list.display()
        ),
    )
    .expect("write config");
    let relay = Running::start(&["--config", config.to_str().expect("utf-8 path")]);
    let url = listening_url(&relay);

    let out = Command::new(env!("CARGO_BIN_EXE_slim-token"))
        .arg("--key")
        .arg(&key_pem)
        .args([
            "--sub", "alice", "--jti", "7f3c1e0a", "--iss", "idp", "--aud", "slim",
        ])
        .output()
        .expect("run slim-token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

    let mut client = Command::new(env!("CARGO_BIN_EXE_slim-client"))
        .args(["--node", &url, "--name", "org/demo/alice"])
        .args(["--secret", "0123456789abcdef0123456789abcdef", "--json"])
        .args(["--bearer", &token, "listen"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start slim-client");
    let stdout = client.stdout.take().expect("stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let ready = lines
        .recv_timeout(Duration::from_secs(20))
        .expect("the client connects with the token");
    if !ready.contains("\"ready\"") {
        let _ = client.kill();
        panic!("first line is not ready: {ready}");
    }

    let tmp = dir.join("revoked.yaml.tmp");
    std::fs::write(&tmp, "revoked:\n  - {jti: 7f3c1e0a}\n").expect("write list");
    std::fs::rename(&tmp, &list).expect("rename list");
    relay.wait_for("revocation list loaded");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = client.try_wait().expect("wait") {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = client.kill();
            panic!("the client was not stopped by the revocation within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut said: Vec<String> = lines.try_iter().collect();
    let mut err = String::new();
    if let Some(mut e) = client.stderr.take() {
        use std::io::Read as _;
        let _ = e.read_to_string(&mut err);
    }
    said.push(err);
    let all = said.join("\n");
    assert!(
        !status.success(),
        "the client must exit with an error: {all}"
    );
    assert!(
        all.contains("revoked"),
        "the error says it was revoked: {all}"
    );
    println!("after the revocation the client said:\n{}", all.trim());
    let _ = std::fs::remove_dir_all(&dir);
}
