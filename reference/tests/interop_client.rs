//! Interop of **our client** (`slim-client`) with real SLIM apps (the `slim-bindings` wheel),
//! through two nodes: our relay (in-process) and the real SLIM node embedded in the wheel
//! (`serve_real_node.py`). Four scenarios × two nodes (issue #4):
//!
//! * a) our client opens a reliable MLS point-to-point session to a real app, 100 messages each way;
//! * b) a real app opens a reliable MLS point-to-point session to our client (echo), 100 each way;
//! * c) a real moderator's MLS group with our client and a real participant; our client is removed
//!   and must report it and receive nothing afterwards;
//! * d) our client moderates an MLS group of two real apps and removes one, which then receives
//!   nothing while the other still does.
//!
//! Each scenario is a Python driver under `tests/interop/` (`ours_*.py`) that starts our client
//! as a subprocess (`--ours PATH`) and every real app in its own OS process, and prints a JSON
//! summary as its last line. `SLIM_INTEROP_OURS=real` runs the same drivers with the real-SDK
//! stand-in (`slim_client_real.py`) in our client's place: the control experiment.
//!
//! The wheel is installed into a virtualenv under the target directory on first use; if it
//! cannot be, the tests fail and say why. They are never skipped.

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
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(300);

/// Serialises venv creation, nodes and scenarios: they share 2 cores and one venv, and the
/// scenarios use fixed app names.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What plays our client's role: the `slim-client` binary of this package, or `real` (the
/// stand-in) when `SLIM_INTEROP_OURS=real`.
fn ours() -> String {
    if std::env::var("SLIM_INTEROP_OURS").ok().as_deref() == Some("real") {
        return "real".into();
    }
    option_env!("CARGO_BIN_EXE_slim-client")
        .unwrap_or_else(|| {
            panic!(
                "the slim-client binary is not part of this build (reference/src/bin/slim-client.rs); \
                 these tests need it (or SLIM_INTEROP_OURS=real for the control experiment)"
            )
        })
        .to_string()
}

/// The node a scenario runs through; stopped when dropped (pass or fail).
enum Node {
    Ours(RelayHandle),
    Real(venv::Node),
}

async fn start(node: &str) -> (Node, String) {
    match node {
        "relay" => {
            let cfg = ServerConfig {
                listen: "127.0.0.1:0".parse().expect("addr"),
                ..ServerConfig::default()
            };
            let relay = spawn(cfg).await.expect("relay starts");
            let url = relay.url();
            (Node::Ours(relay), url)
        }
        _ => {
            let (n, url) = venv::start_real_node();
            (Node::Real(n), url)
        }
    }
}

/// Runs driver `script` through a fresh `node` ("relay" or "real-node") and returns its JSON
/// summary, after checking its exit code and `"ok"`; for our relay also that it carried the
/// traffic (at least `min_delivered` publishes: the scenario's data messages alone).
async fn run(script: &str, node: &str, min_delivered: u64) -> Value {
    let ours = ours();
    let _serial = SERIAL.lock().await;
    let py = python();
    let (handle, url) = start(node).await;
    let summary = drivers::run_driver(
        &py,
        script,
        &["--node", &url, "--ours", &ours],
        SCENARIO_TIMEOUT,
        &format!("via {node} with ours = {ours}"),
    )
    .await;
    println!("{script} via {node}: {summary}");
    // Bounded waits the driver tolerated (judged from the final counts instead), e.g. a removed
    // member whose session end came late: shown so a slow run is visible in the log.
    if let Some(obj) = summary.as_object() {
        for (k, v) in obj.iter().filter(|(k, _)| k.ends_with("_wait")) {
            println!("{script} via {node}: note {k}: {v}");
        }
    }
    match handle {
        Node::Ours(relay) => {
            let stats = relay.stats();
            assert!(
                stats.publishes_delivered >= min_delivered && stats.links_established >= 2,
                "the relay must have carried the traffic: {stats:?}"
            );
            println!(
                "{script} via slim-relay (ours = {ours}): relay delivered {} publishes over {} links",
                stats.publishes_delivered, stats.links_established
            );
            relay.shutdown().await.expect("relay stops");
        }
        Node::Real(n) => {
            println!("{script} via the real SLIM node (ours = {ours})");
            drop(n);
        }
    }
    summary
}

fn num(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_u64()
        .unwrap_or_else(|| panic!("summary has no number at {path:?}: {v}"))
}

/// a) and b): all N each way, exactly once.
fn check_p2p(s: &Value, directions: [&str; 2]) {
    for dir in directions {
        assert_eq!(num(s, &[dir, "sent"]), 100, "{dir}: {s}");
        assert_eq!(num(s, &[dir, "received"]), 100, "{dir}: all delivered: {s}");
        assert_eq!(num(s, &[dir, "duplicates"]), 0, "{dir}: exactly once: {s}");
    }
    println!(
        "{} {}/100, {} {}/100, duplicates 0",
        directions[0],
        num(s, &[directions[0], "received"]),
        directions[1],
        num(s, &[directions[1], "received"])
    );
}

/// c) and d): phase 1 everybody got the other 20; phase 2 the remaining two got each other's
/// 10; the removed member got nothing after its removal.
fn check_group(s: &Value, members: [&str; 3], removed: &str, after_key: &str) {
    let mut line = String::new();
    for (phase, who) in [
        ("phase1", members.to_vec()),
        (
            "phase2",
            members.iter().copied().filter(|m| *m != removed).collect(),
        ),
    ] {
        for m in who {
            let got = num(s, &["members", m, phase, "received"]);
            let want = num(s, &["members", m, phase, "expected"]);
            assert!(want > 0 && got == want, "{m} {phase}: {got}/{want}: {s}");
            assert_eq!(
                num(s, &["members", m, phase, "duplicates"]),
                0,
                "{m} {phase}: {s}"
            );
            line.push_str(&format!("{m} {phase} {got}/{want}; "));
        }
    }
    assert_eq!(
        num(s, &["members", removed, "phase2", "received"]),
        0,
        "{s}"
    );
    assert_eq!(
        num(s, &[after_key]),
        0,
        "{removed} must receive nothing after removal: {s}"
    );
    println!("{line}{removed} after removal: 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_opens_p2p_to_real_app_via_our_relay() {
    let s = run("ours_send_p2p.py", "relay", 200).await;
    check_p2p(&s, ["ours_to_real", "real_to_ours"]);
    assert_eq!(num(&s, &["ours_delivered"]), 100, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_opens_p2p_to_real_app_via_real_node() {
    let s = run("ours_send_p2p.py", "real-node", 0).await;
    check_p2p(&s, ["ours_to_real", "real_to_ours"]);
    assert_eq!(num(&s, &["ours_delivered"]), 100, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_real_app_opens_p2p_to_client_via_our_relay() {
    let s = run("ours_listen_p2p.py", "relay", 200).await;
    check_p2p(&s, ["real_to_ours", "ours_to_real"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_real_app_opens_p2p_to_client_via_real_node() {
    let s = run("ours_listen_p2p.py", "real-node", 0).await;
    check_p2p(&s, ["real_to_ours", "ours_to_real"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_client_in_real_group_is_removed_via_our_relay() {
    let s = run("ours_group_member.py", "relay", 80).await;
    check_group(
        &s,
        ["moderator", "p1", "ours"],
        "ours",
        "ours_received_after_removal",
    );
    assert_eq!(s["ours_removed_event"], Value::Bool(true), "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_client_in_real_group_is_removed_via_real_node() {
    let s = run("ours_group_member.py", "real-node", 0).await;
    check_group(
        &s,
        ["moderator", "p1", "ours"],
        "ours",
        "ours_received_after_removal",
    );
    assert_eq!(s["ours_removed_event"], Value::Bool(true), "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_client_moderates_real_apps_and_removes_one_via_our_relay() {
    let s = run("ours_group_moderator.py", "relay", 80).await;
    check_group(&s, ["ours", "p1", "p2"], "p2", "p2_received_after_removal");
    assert_eq!(s["p2_saw_session_end"], Value::Bool(true), "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_client_moderates_real_apps_and_removes_one_via_real_node() {
    let s = run("ours_group_moderator.py", "real-node", 0).await;
    check_group(&s, ["ours", "p1", "p2"], "p2", "p2_received_after_removal");
    assert_eq!(s["p2_saw_session_end"], Value::Bool(true), "{s}");
}
