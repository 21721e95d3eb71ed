//! Interop with the real SLIM: apps built on the `slim-bindings` wheel from PyPI (the real SDK,
//! with its own MLS and session layer) talk to each other **through our relay**.
//!
//! The wheel is installed into a virtualenv under the target directory on first use. If it
//! cannot be installed the tests fail and say why: they are never skipped.
//!
//! Each scenario is a Python driver under `tests/interop/` that starts one OS process per app
//! (so traffic cannot short-cut inside one SDK process) and prints a JSON summary as its last
//! line. The test also checks the relay's own counters, so a pass proves the messages crossed it.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use slim_reference::config::ServerConfig;
use slim_reference::server::{spawn, RelayHandle};

#[path = "support/drivers.rs"]
mod drivers;
#[path = "support/venv.rs"]
mod venv;
use venv::python;

/// Upper bound for one scenario (the drivers bound their own waits well below this).
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(240);

/// Serialises venv creation and scenarios: they share 2 cores and one venv.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn relay() -> RelayHandle {
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..ServerConfig::default()
    };
    spawn(cfg).await.expect("relay starts")
}

/// Runs one driver against `node` and returns its JSON summary.
async fn scenario(py: &Path, script: &str, node: &str, extra: &[&str]) -> Value {
    let mut args = vec!["--node", node];
    args.extend_from_slice(extra);
    drivers::run_driver(py, script, &args, SCENARIO_TIMEOUT, &format!("via {node}")).await
}

fn count(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_u64()
        .unwrap_or_else(|| panic!("summary has no number at {path:?}: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_slim_apps_p2p_reliable_mls_through_our_relay() {
    let _serial = SERIAL.lock().await;
    let py = python();
    let relay = relay().await;
    let n = 100u64;
    let s = scenario(
        &py,
        "p2p_reliable_mls.py",
        &relay.url(),
        &["--count", "100"],
    )
    .await;
    for dir in ["alice_to_bob", "bob_to_alice"] {
        assert_eq!(count(&s, &[dir, "sent"]), n, "{dir}: {s}");
        assert_eq!(
            count(&s, &[dir, "received"]),
            n,
            "{dir}: every message delivered: {s}"
        );
        assert_eq!(
            count(&s, &[dir, "duplicates"]),
            0,
            "{dir}: exactly once: {s}"
        );
    }
    let stats = relay.stats();
    assert!(
        stats.publishes_delivered >= 2 * n,
        "the relay must have carried the traffic: {stats:?}"
    );
    println!(
        "p2p_reliable_mls via slim-relay: alice->bob {}/{} bob->alice {}/{} duplicates 0; relay delivered {} publishes, {} links",
        count(&s, &["alice_to_bob", "received"]),
        n,
        count(&s, &["bob_to_alice", "received"]),
        n,
        stats.publishes_delivered,
        stats.links_established
    );
    relay.shutdown().await.expect("relay stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_slim_group_with_removal_through_our_relay() {
    let _serial = SERIAL.lock().await;
    let py = python();
    let relay = relay().await;
    let s = scenario(&py, "group_remove.py", &relay.url(), &[]).await;
    let mut line = String::from("group_remove via slim-relay:");
    for (phase, members) in [
        ("phase1", &["moderator", "p1", "p2"][..]),
        ("phase2", &["moderator", "p1"][..]),
    ] {
        line.push_str(&format!(" {phase}"));
        for m in members {
            let got = count(&s, &["members", m, phase, "received"]);
            let want = count(&s, &["members", m, phase, "expected"]);
            assert!(want > 0 && got == want, "{m} {phase}: {got}/{want}: {s}");
            assert_eq!(
                count(&s, &["members", m, phase, "duplicates"]),
                0,
                "{m} {phase}: {s}"
            );
            line.push_str(&format!(" {m} {got}/{want}"));
        }
        line.push(';');
    }
    let after = count(&s, &["removed_received_after_removal"]);
    assert_eq!(
        after, 0,
        "the removed participant must receive nothing after removal: {s}"
    );
    let stats = relay.stats();
    assert!(stats.publishes_delivered > 0, "{stats:?}");
    println!(
        "{line} removed p2 after removal {after}; p2 saw its session end: {}; relay delivered {} publishes, {} links",
        s["removed_saw_session_end"], stats.publishes_delivered, stats.links_established
    );
    relay.shutdown().await.expect("relay stops");
}
