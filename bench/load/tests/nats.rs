//! The NATS transport against a real `nats-server` (Debian package `nats-server`).
//!
//! These tests need the binary and are `#[ignore]`d so that the README's test command needs no
//! broker; CI installs it and runs them in a step of their own (`.ci/run`, `broker-tests`). They
//! FAIL, never skip, when it is missing. Run them with
//!
//! ```sh
//! apt-get install -y nats-server
//! cargo test -p slim-bench --test nats -- --ignored
//! ```

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{cli, read_json, tmp};

/// A `nats-server` on 127.0.0.1 and an ephemeral port, killed on drop.
struct NatsServer {
    child: Child,
    url: String,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nats_server_binary() -> PathBuf {
    let on_path = Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if on_path {
        return PathBuf::from("nats-server");
    }
    // Debian installs it in /usr/sbin, which a non-root PATH may lack.
    let sbin = PathBuf::from("/usr/sbin/nats-server");
    assert!(
        sbin.exists(),
        "nats-server is not on PATH nor in /usr/sbin: install it (Debian: apt-get install -y nats-server)"
    );
    sbin
}

/// Starts the server with `-p -1` (a random free port) and reads the port from its log.
fn start_nats() -> NatsServer {
    let mut child = Command::new(nats_server_binary())
        .args(["-a", "127.0.0.1", "-p", "-1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nats-server starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.split("Listening for client connections on ").nth(1) {
                let _ = tx.send(addr.trim().to_string());
            }
            // Keep reading so the server never blocks on a full pipe.
        }
    });
    let mut server = NatsServer {
        child,
        url: String::new(),
    };
    let addr = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("nats-server reports its client port within 10 s");
    let addr: SocketAddr = addr.parse().expect("a socket address in the log");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "nats-server does not accept on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server.url = format!("nats://{addr}");
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server (apt-get install nats-server); run with --ignored"]
async fn every_scenario_over_nats_is_lossless() {
    let nats = start_nats();
    let pid = nats.child.id().to_string();
    for (scenario, publishers, subscribers) in [
        ("p2p", "2", "2"),
        ("fanout", "1", "4"),
        ("anycast", "2", "3"),
        ("reqrep", "2", "3"),
    ] {
        let path = tmp(&format!("{scenario}.json"));
        let p = path.to_string_lossy().to_string();
        let (code, out) = cli(&[
            "run",
            "--target",
            &nats.url,
            "--target-pid",
            &pid,
            "--scenario",
            scenario,
            "--msgs",
            "3000",
            "--warmup",
            "100",
            "--size",
            "64",
            "--publishers",
            publishers,
            "--subscribers",
            subscribers,
            "--quiet",
            "--json",
            &p,
        ])
        .await;
        assert_eq!(code, 0, "{scenario}: {out}");
        assert!(out.contains("(nats)"), "{out}");
        let doc = read_json(&path);
        let _ = std::fs::remove_file(&path);
        let t = &doc["targets"][0];
        assert_eq!(t["transport"], "nats", "{scenario}");
        assert_eq!(t["url"], nats.url.as_str());
        let m = &t["rounds"][0];
        let (np, ns) = (
            publishers.parse::<u64>().expect("n"),
            subscribers.parse::<u64>().expect("n"),
        );
        let per_pub = 3100 * if scenario == "fanout" { ns } else { 1 };
        assert_eq!(m["expected"], per_pub * np, "{scenario}: {m}");
        assert_eq!(m["delivered"], m["expected"], "{scenario}: {m}");
        assert_eq!(m["lost"], 0, "{scenario}: {m}");
        assert_eq!(m["duplicates"], 0, "{scenario}: {m}");
        assert_eq!(m["ignored"], 0, "{scenario}: {m}");
        assert_eq!(m["measured"], per_pub * np * 3000 / 3100, "{scenario}");
        assert!(m["msgs_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{m}");
        assert!(m["latency_us"]["p50"].as_f64().unwrap_or(0.0) > 0.0, "{m}");
        assert!(m["target_cpu_s"].as_f64().is_some(), "{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server (apt-get install nats-server); run with --ignored"]
async fn vs_between_slim_relay_and_nats() {
    let nats = start_nats();
    let relay = slim_reference::server::spawn(slim_reference::config::ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Default::default()
    })
    .await
    .expect("reference relay");
    let path = tmp("vs.json");
    let p = path.to_string_lossy().to_string();
    let a = relay.url();
    let (code, out) = cli(&[
        "vs",
        "--a",
        &a,
        "--b",
        &nats.url,
        "--scenario",
        "fanout",
        "--subscribers",
        "3",
        "--rounds",
        "5",
        "--msgs",
        "300",
        "--quiet",
        "--json",
        &p,
    ])
    .await;
    let _ = relay.shutdown().await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(slim)") && out.contains("(nats)"), "{out}");
    let doc = read_json(&path);
    let _ = std::fs::remove_file(&path);
    assert_eq!(doc["targets"][0]["transport"], "slim");
    assert_eq!(doc["targets"][1]["transport"], "nats");
    assert_eq!(
        doc["targets"][1]["rounds"].as_array().map(Vec::len),
        Some(5)
    );
    assert_eq!(doc["targets"][1]["summary"]["lost"], 0.0);
}

/// Runs everywhere: a `nats://` target that is not there is a clean "could not run" (exit 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_nats_target_exits_2() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    let started = Instant::now();
    let (code, out) = cli(&["run", "--target", &url, "--msgs", "10", "--quiet"]).await;
    assert_eq!(code, 2, "{out}");
    assert!(started.elapsed() < Duration::from_secs(20));
}
