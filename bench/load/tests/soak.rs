//! The soak's CI smoke: the built `slim-bench soak` binary for 60 s against the embedded relay
//! must pass, and the same checks must fail on a seeded route leak (`--inject-leak`).
//!
//! The binary runs as its own process so that what it samples (RSS, fds, tasks of
//! `/proc/self`) is the soak alone. The two runs take the same lock: on a 2-core machine they
//! would otherwise measure each other.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod support;
use support::{read_json, tmp};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `slim-bench soak <args>`; returns its exit code and stdout. Killed after `bound`.
fn soak(args: &[&str], bound: Duration) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_slim-bench"))
        .arg("soak")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("slim-bench starts");
    let deadline = Instant::now() + bound;
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "slim-bench soak {args:?} still running after {bound:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_of(path: &Path) -> serde_json::Value {
    let doc = read_json(path);
    let _ = std::fs::remove_file(path);
    doc
}

#[test]
fn a_60_s_soak_of_the_embedded_relay_passes() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let path = tmp("soak-60s.json");
    let p = path.to_string_lossy().to_string();
    let (code, out, err) = soak(
        &["--duration", "60s", "--json", &p],
        Duration::from_secs(400),
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("PASS: flat after warm-up, no route leak, no loss"),
        "{out}"
    );
    assert!(
        out.contains("relay tables once every client disconnected: all zero"),
        "{out}"
    );
    let doc = json_of(&path);
    assert_eq!(doc["schema"], "slim-bench/soak/v1");
    assert_eq!(doc["verdict"], "pass");
    assert_eq!(doc["clients"], 100);
    assert_eq!(doc["failures"].as_array().map(Vec::len), Some(0));
    // The idle baseline, one sample a second, the one after the drain.
    let samples = doc["samples"].as_array().map_or(0, Vec::len);
    assert!(samples >= 60, "{samples} samples");
    for (k, v) in doc["tables_after"].as_object().expect("tables after") {
        assert_eq!(v, 0, "relay table {k} after the run");
    }
    let c = &doc["churn"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(u64::MAX);
    assert!(n(&c["cycles"]) >= 1000, "{c}");
    assert_eq!(n(&c["unsubscribes"]), n(&c["subscribes"]), "{c}");
    assert!(
        n(&c["sent"]) <= n(&c["received"]) + n(&doc["dropped_queue_full"]),
        "{c}"
    );
    let g = &doc["group"];
    assert!(n(&g["joins"]) > 0 && n(&g["removals"]) > 0, "{g}");
    assert!(
        n(&g["sent"]) > 0 && n(&g["delivered"]) == n(&g["sent"]),
        "{g}"
    );
    assert_eq!(n(&g["receipts"]), n(&g["expected_receipts"]), "{g}");
    let metrics: Vec<&str> = doc["trends"]
        .as_array()
        .expect("trends")
        .iter()
        .filter_map(|t| t["metric"].as_str())
        .collect();
    for m in [
        "rss_kib",
        "fds",
        "tasks",
        "relay.subscriptions",
        "client_sessions",
    ] {
        assert!(metrics.contains(&m), "{m} not judged: {metrics:?}");
    }
}

#[test]
fn a_seeded_route_leak_fails_the_soak() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let path = tmp("soak-leak.json");
    let p = path.to_string_lossy().to_string();
    let (code, out, err) = soak(
        &[
            "--duration",
            "16s",
            "--warmup",
            "4s",
            "--clients",
            "20",
            "--groups",
            "1",
            "--members",
            "2",
            "--inject-leak",
            "--json",
            &p,
        ],
        Duration::from_secs(300),
    );
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("FAIL: route leak: relay tables not empty"),
        "{out}"
    );
    assert!(
        out.contains("subscriptions="),
        "the leaking table is named: {out}"
    );
    assert!(out.contains("links="), "{out}");
    assert!(!out.contains("PASS"), "{out}");
    let doc = json_of(&path);
    assert_eq!(doc["verdict"], "fail");
    assert!(doc["churn"]["leaked_links"].as_u64().unwrap_or(0) > 0);
    assert!(doc["tables_after"]["subscriptions"].as_u64().unwrap_or(0) > 0);
    // Nothing but the leak: the messages all arrived.
    assert_eq!(doc["lost_beyond_policy"], 0);
}
