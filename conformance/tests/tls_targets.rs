//! The runner judges nodes over TLS (`--target https://… --ca FILE`): our relay, with the same
//! verdict for every case as over h2c, and the real SLIM node (the slim-bindings wheel's server
//! with a TLS config), whose deviations are exactly the ones its expectations file lists, as over
//! h2c. Mistakes in the TLS flags are usage errors that say what to fix. If the wheel cannot be
//! installed the real-node test fails and says so; it is never skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use slim_proto::tls::ServerTls;
use slim_reference::config::ServerConfig;
use slim_reference::server::spawn;

mod support;
use support::start_real_node_with;

#[path = "../../reference/tests/support/certs.rs"]
mod certs;

fn scratch() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "tls-targets-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn runner(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slim-conformance"))
        .args(args)
        .output()
        .expect("run slim-conformance")
}

/// Case id → verdict, from a JSON report.
fn verdicts(json: &Path) -> BTreeMap<String, String> {
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(json).expect("json report")).expect("json");
    assert_eq!(report["complete"], true, "{}", json.display());
    report["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap_or("").to_string(),
                c["verdict"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_judges_our_relay_over_tls_as_over_h2c() {
    let dir = scratch();
    let pki = certs::make(&dir);
    let tls = spawn(ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        tls: Some(ServerTls {
            cert: pki.node_cert.clone(),
            key: pki.node_key.clone(),
            client_ca: None,
        }),
        ..ServerConfig::default()
    })
    .await
    .expect("TLS relay");
    let h2c = spawn(ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..ServerConfig::default()
    })
    .await
    .expect("h2c relay");
    let (tls_url, h2c_url) = (tls.url(), h2c.url());
    let (tls_json, h2c_json) = (dir.join("tls.json"), dir.join("h2c.json"));
    let ca = pki.ca.to_string_lossy().to_string();
    let (tls_run, h2c_run) = tokio::join!(
        tokio::task::spawn_blocking({
            let (url, json, ca) = (tls_url.clone(), tls_json.clone(), ca.clone());
            move || {
                runner(&[
                    "run",
                    "--target",
                    &url,
                    "--ca",
                    &ca,
                    "--json",
                    &json.to_string_lossy(),
                ])
            }
        }),
        tokio::task::spawn_blocking({
            let (url, json) = (h2c_url.clone(), h2c_json.clone());
            move || runner(&["run", "--target", &url, "--json", &json.to_string_lossy()])
        }),
    );
    let (tls_run, h2c_run) = (tls_run.expect("join"), h2c_run.expect("join"));
    let out = String::from_utf8_lossy(&tls_run.stdout);
    println!("{}", out.lines().last().unwrap_or(""));
    assert_eq!(
        tls_run.status.code(),
        Some(0),
        "our relay over TLS is conformant:\n{out}\n{}",
        String::from_utf8_lossy(&tls_run.stderr)
    );
    assert_eq!(h2c_run.status.code(), Some(0), "h2c run");
    let (mut over_tls, mut over_h2c) = (verdicts(&tls_json), verdicts(&h2c_json));
    assert!(over_tls.len() >= 100, "{} cases", over_tls.len());
    // The TLS cases judge the https:// target only: PASS over TLS, UNSUPPORTED over h2c.
    for id in ["connection/tls-alpn-h2", "connection/plaintext-on-tls-port"] {
        assert_eq!(
            over_tls.remove(id).as_deref(),
            Some("PASS"),
            "{id} over TLS"
        );
        assert_eq!(
            over_h2c.remove(id).as_deref(),
            Some("UNSUPPORTED"),
            "{id} over h2c"
        );
    }
    assert_eq!(over_tls, over_h2c, "TLS must not change any other verdict");
    assert!(
        tls.stats().links_established >= 100,
        "the cases ran over the TLS listener: {:?}",
        tls.stats()
    );
    tls.shutdown().await.expect("stops");
    h2c.shutdown().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_flag_mistakes_are_usage_errors_that_say_what_to_fix() {
    let dir = scratch();
    let pki = certs::make(&dir);
    let tls = spawn(ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        tls: Some(ServerTls {
            cert: pki.node_cert.clone(),
            key: pki.node_key.clone(),
            client_ca: Some(pki.ca.clone()),
        }),
        ..ServerConfig::default()
    })
    .await
    .expect("mTLS relay");
    let url = tls.url();
    let ca = pki.ca.to_string_lossy().to_string();
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).to_string();

    let o = runner(&["run", "--target", "http://127.0.0.1:1", "--insecure"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("are for TLS"), "{}", stderr(&o));

    let o = runner(&["run", "--target", &url, "--ca", "/nonexistent/ca.pem"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("/nonexistent/ca.pem"), "{}", stderr(&o));

    // Wrong CA: unreachable, with the reason.
    let other = pki.other_ca.to_string_lossy().to_string();
    let o = runner(&[
        "run",
        "--target",
        &url,
        "--ca",
        &other,
        "--only",
        "SLIM-LINK-001",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not signed by a CA we trust"),
        "{}",
        stderr(&o)
    );

    // mTLS without a client certificate: the runner says the node requires one.
    let o = runner(&[
        "run",
        "--target",
        &url,
        "--ca",
        &ca,
        "--only",
        "SLIM-LINK-001",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("requires a client certificate (mutual TLS)"),
        "{}",
        stderr(&o)
    );

    // With one, it runs.
    let (cert, key) = (
        pki.client_cert.to_string_lossy().to_string(),
        pki.client_key.to_string_lossy().to_string(),
    );
    let o = runner(&[
        "run",
        "--target",
        &url,
        "--ca",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        "--only",
        "SLIM-LINK-00*",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    // A plaintext runner on the TLS port is told to use TLS.
    let plain = url.replace("https://", "http://");
    let o = runner(&["run", "--target", &plain, "--only", "SLIM-LINK-001"]);
    let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(all.contains("this port requires TLS"), "{all}");
    tls.shutdown().await.expect("stops");
}

#[test]
fn the_runner_judges_the_real_node_over_tls() {
    let dir = scratch();
    let pki = certs::make(&dir);
    let (cert, key, ca) = (
        pki.node_cert.to_string_lossy().to_string(),
        pki.node_key.to_string_lossy().to_string(),
        pki.ca.to_string_lossy().to_string(),
    );
    let (_node, url) = start_real_node_with(&["--tls-cert", &cert, "--tls-key", &key]);
    let url = url.replace("http://", "https://");
    let json = dir.join("real-tls.json");
    let expect =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("expectations/slim-bindings-3.3.8.yaml");
    let out = runner(&[
        "run",
        "--target",
        &url,
        "--ca",
        &ca,
        "--require-header-mac",
        "false",
        "--json",
        &json.to_string_lossy(),
        "--expect",
        &expect.to_string_lossy(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{}", stdout.lines().last().unwrap_or(""));
    assert_eq!(
        out.status.code(),
        Some(0),
        "over TLS the real node's deviations are the ones listed in {}:\n{stdout}\n{}",
        expect.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v = verdicts(&json);
    assert_eq!(
        v.get("link/reply-echoes-link-id").map(String::as_str),
        Some("PASS"),
        "{v:?}"
    );
    assert_eq!(
        v.get("validation/dead-link-routes-removed")
            .map(String::as_str),
        Some("XFAIL"),
        "the real node's route leak shows over TLS too"
    );
}
