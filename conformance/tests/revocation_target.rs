//! The revocation cases (SLIM-REV-001..006) through the runner's command line: with no
//! `--target` they set themselves up (a second embedded relay with JWT auth and a watched list);
//! against a `--target` they take the deployment's key and a revocation mechanism from flags
//! (`--jwt-hs256-secret-file`, `--revoke-file`, `--revoke-cmd`), and whatever is missing makes
//! the cases that need it UNSUPPORTED with the flag to pass, never FAIL.
//!
//! The target here is slim-relay started in this process on an ephemeral loopback port (a
//! [`RelayHandle`], stopped when dropped, so a failing assertion never leaves one running).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use slim_reference::auth::AuthConfig;
use slim_reference::config::ServerConfig;
use slim_reference::server::{spawn, RelayHandle};

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("revocation-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// A relay verifying HS256 tokens from `idp` for `slim`, watching `dir/revoked.yaml`.
async fn jwt_relay(dir: &Path) -> RelayHandle {
    let secret = dir.join("secret");
    std::fs::write(&secret, "a-secret-the-deployment-shares\n").expect("secret");
    std::fs::write(
        dir.join("revoked.yaml"),
        "revoked:\n  - {sub: someone-else}\n",
    )
    .expect("list");
    spawn(ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        auth: Some(AuthConfig::Jwt {
            keys: Vec::new(),
            jwks: None,
            hs256_secret_file: Some(secret),
            issuer: Some("idp".into()),
            audience: Some("slim".into()),
        }),
        revocation_file: Some(dir.join("revoked.yaml")),
        ..ServerConfig::default()
    })
    .await
    .expect("relay starts")
}

/// Runs the runner (off the async threads, so the relay keeps serving) and returns its output
/// and the verdict of every case of its JSON report.
async fn run(dir: &Path, args: Vec<String>) -> (Output, Vec<(String, String, String)>) {
    let json = dir.join(format!("report-{}.json", uuid::Uuid::new_v4().simple()));
    let mut all = vec![
        "run".to_string(),
        "--json".into(),
        json.display().to_string(),
    ];
    all.extend(args);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_slim-conformance"))
            .args(&all)
            .env_remove("SLIM_RELAY_MUTANT")
            .output()
            .expect("run slim-conformance")
    })
    .await
    .expect("runner thread");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "no report ({e}); stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }))
    .expect("json");
    let cases = report["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap_or("").to_string(),
                c["verdict"].as_str().unwrap_or("").to_string(),
                c["observed"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    (out, cases)
}

fn flags(relay: &RelayHandle, dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "--target".into(),
        relay.url(),
        "--only".into(),
        "revocation/*".into(),
        "--jwt-hs256-secret-file".into(),
        dir.join("secret").display().to_string(),
        "--jwt-issuer".into(),
        "idp".into(),
        "--jwt-audience".into(),
        "slim".into(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_flags_the_revocation_cases_set_themselves_up_and_pass() {
    let dir = scratch("embedded");
    let (out, cases) = run(&dir, vec!["--only".into(), "SLIM-REV-*".into()]).await;
    assert_eq!(out.status.code(), Some(0), "{cases:?}");
    assert_eq!(cases.len(), 12, "{cases:?}");
    for (id, verdict, observed) in &cases {
        assert_eq!(verdict, "PASS", "{id}: {observed}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_with_a_revoke_file_passes_and_gets_its_list_back() {
    let dir = scratch("file");
    let relay = jwt_relay(&dir).await;
    let list = dir.join("revoked.yaml");
    let before = std::fs::read_to_string(&list).expect("list");
    let (out, cases) = run(
        &dir,
        flags(
            &relay,
            &dir,
            &["--revoke-file", &list.display().to_string()],
        ),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{cases:?}");
    assert_eq!(cases.len(), 12);
    for (id, verdict, observed) in &cases {
        assert_eq!(verdict, "PASS", "{id}: {observed}");
    }
    assert_eq!(std::fs::read_to_string(&list).expect("list"), before);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_cmd_drives_revocation_and_the_malformed_list_is_unsupported() {
    let dir = scratch("cmd");
    let relay = jwt_relay(&dir).await;
    // The operator's tool: appends the entry to the node's list (write, then rename).
    let tool = dir.join("revoke.sh");
    std::fs::write(
        &tool,
        format!(
            "#!/bin/sh\nset -e\ncd '{}'\n{{ cat revoked.yaml; printf '  - {{%s: \"%s\"}}\\n' \"$1\" \"$2\"; }} > new.yaml\nmv new.yaml revoked.yaml\n",
            dir.display()
        ),
    )
    .expect("tool");
    let (out, cases) = run(
        &dir,
        flags(
            &relay,
            &dir,
            &["--revoke-cmd", &format!("sh {}", tool.display())],
        ),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{cases:?}");
    for (id, verdict, observed) in &cases {
        if id == "revocation/malformed-list-keeps-revocations" {
            assert_eq!(verdict, "UNSUPPORTED", "{id}");
            assert!(observed.contains("--revoke-file"), "{observed}");
        } else {
            assert_eq!(verdict, "PASS", "{id}: {observed}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_missing_is_unsupported_naming_the_flag() {
    let dir = scratch("missing");
    let relay = jwt_relay(&dir).await;
    // A key but no way to revoke: the JWT cases run, the revocation cases say what to pass.
    let (out, cases) = run(&dir, flags(&relay, &dir, &[])).await;
    assert_eq!(out.status.code(), Some(0), "{cases:?}");
    for (id, verdict, observed) in &cases {
        let needs_revoker =
            id.contains("revoked-") || id.contains("live-stream") || id.contains("malformed-list");
        if needs_revoker {
            assert_eq!(verdict, "UNSUPPORTED", "{id}");
            assert!(
                observed.contains("--revoke-file") && observed.contains("--revoke-cmd"),
                "{id}: {observed}"
            );
        } else {
            assert_eq!(verdict, "PASS", "{id}: {observed}");
        }
    }
    // No key: against a node without auth every revocation case is UNSUPPORTED naming --jwt-key.
    let open = spawn(ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..ServerConfig::default()
    })
    .await
    .expect("relay");
    let (out, cases) = run(
        &dir,
        vec![
            "--target".into(),
            open.url(),
            "--only".into(),
            "revocation/*".into(),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{cases:?}");
    assert_eq!(cases.len(), 12);
    for (id, verdict, observed) in &cases {
        assert_eq!(verdict, "UNSUPPORTED", "{id}");
        assert!(observed.contains("--jwt-key"), "{id}: {observed}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn jwt_flags_without_a_target_or_a_key_are_usage_errors() {
    for (args, needle) in [
        (
            vec!["run", "--jwt-key", "/nonexistent.pem"],
            "describe a --target",
        ),
        (
            vec!["run", "--target", "http://127.0.0.1:1", "--jwt-issuer", "x"],
            "--jwt-key",
        ),
        (
            vec![
                "run",
                "--target",
                "http://127.0.0.1:1",
                "--jwt-key",
                "/nonexistent.pem",
            ],
            "nonexistent.pem",
        ),
        (
            vec![
                "run",
                "--target",
                "http://127.0.0.1:1",
                "--revoke-file",
                "a",
                "--revoke-cmd",
                "b",
            ],
            "cannot be used with",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_slim-conformance"))
            .args(&args)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
