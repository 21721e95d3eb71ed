//! End-to-end runs of the CLI over real gRPC on 127.0.0.1 ephemeral ports.
//!
//! Every server a test starts is shut down by the test (or by its handle's `Drop` on failure).

use std::net::SocketAddr;

mod support;
use slim_bench::null_relay;
use support::{cli, read_json, tmp};

async fn embedded_run(scenario: &str, subscribers: &str, publishers: &str) {
    let path = tmp(&format!("{scenario}.json"));
    let p = path.to_string_lossy().to_string();
    let args = [
        "run",
        "--embedded",
        "--scenario",
        scenario,
        "--msgs",
        "2000",
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
    ];
    let (code, out) = cli(&args).await;
    assert_eq!(code, 0, "{scenario}: {out}");
    assert!(out.contains("OK: zero loss, zero duplicates"), "{out}");
    let doc = read_json(&path);
    let _ = std::fs::remove_file(&path);
    assert_eq!(doc["schema"], "slim-bench/result/v1");
    assert_eq!(doc["kind"], "run");
    assert_eq!(doc["command_line"][1], "run");
    assert_eq!(
        doc["command_line"].as_array().map(Vec::len),
        Some(args.len() + 1)
    );
    assert_eq!(doc["params"]["scenario"], scenario);
    assert_eq!(doc["targets"][0]["transport"], "slim");
    assert!(doc["machine"]["nproc"].as_u64().unwrap_or(0) >= 1);
    let m = &doc["targets"][0]["rounds"][0];
    let (p, s) = (
        publishers.parse::<u64>().expect("n"),
        subscribers.parse::<u64>().expect("n"),
    );
    let per_pub = 2100 * if scenario == "fanout" { s } else { 1 };
    assert_eq!(m["expected"], per_pub * p, "{scenario}: {m}");
    assert_eq!(m["delivered"], m["expected"], "{scenario}: {m}");
    assert_eq!(m["lost"], 0);
    assert_eq!(m["duplicates"], 0);
    assert_eq!(
        m["measured"],
        per_pub * p * 2000 / 2100,
        "warm-up is not measured"
    );
    assert!(m["msgs_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{m}");
    let l = &m["latency_us"];
    assert!(l["p50"].as_f64() <= l["p99"].as_f64() && l["p99"].as_f64() <= l["max"].as_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_through_the_reference_relay_is_lossless() {
    embedded_run("p2p", "2", "2").await;
    embedded_run("fanout", "3", "1").await;
    embedded_run("anycast", "3", "2").await;
    embedded_run("reqrep", "2", "2").await;
}

/// `--rate` holds the offered load to about the rate in both pacing modes, and the result records
/// the mode and how well the schedule was kept. (That no single message leaves early is a unit
/// test of `pace`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_runs_keep_to_the_rate_and_record_the_schedule() {
    for pacing in ["smooth", "timer"] {
        let path = tmp(&format!("paced-{pacing}.json"));
        let p = path.to_string_lossy().to_string();
        let (code, out) = cli(&[
            "run",
            "--embedded",
            "--scenario",
            "p2p",
            "--msgs",
            "1500",
            "--rate",
            "5000",
            "--pacing",
            pacing,
            "--quiet",
            "--json",
            &p,
        ])
        .await;
        assert_eq!(code, 0, "{pacing}: {out}");
        assert!(
            out.contains(&format!("paced at 5,000 msgs/s ({pacing})")),
            "{out}"
        );
        assert!(out.contains("schedule"), "{out}");
        let doc = read_json(&path);
        let _ = std::fs::remove_file(&path);
        assert_eq!(doc["params"]["pacing"], pacing);
        let m = &doc["targets"][0]["rounds"][0];
        assert_eq!(m["lost"], 0, "{m}");
        let rate = m["msgs_per_s"].as_f64().unwrap_or(f64::MAX);
        // The last message is due 0.2998 s after the first, so the measured span is at least
        // that minus how late the first one left. 10 % of slack covers a first send up to 27 ms
        // late; a publisher that ignored the rate would run tens of times faster.
        assert!(rate <= 5_000.0 * 1.1, "{pacing}: {rate} msgs/s");
        assert!(m["send_lag_max_us"].as_f64().is_some(), "{m}");
        assert!(m["late_sends"].as_u64().is_some(), "{m}");
    }
    // Unpaced runs have no schedule to report, and no pacing in their parameters.
    let path = tmp("unpaced.json");
    let p = path.to_string_lossy().to_string();
    let (code, out) = cli(&[
        "run",
        "--embedded",
        "--msgs",
        "200",
        "--quiet",
        "--json",
        &p,
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("schedule"), "{out}");
    let doc = read_json(&path);
    let _ = std::fs::remove_file(&path);
    assert!(doc["params"].get("pacing").is_none(), "{}", doc["params"]);
    // --pacing means nothing without --rate: a usage error, not a silently ignored flag.
    let (code, _) = cli(&["run", "--embedded", "--msgs", "200", "--pacing", "timer"]).await;
    assert_eq!(code, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_relay_carries_p2p_and_fanout() {
    let relay = null_relay::spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("null relay");
    let url = relay.url();
    for (scenario, subs) in [("p2p", "2"), ("fanout", "2")] {
        let (code, out) = cli(&[
            "run",
            "--target",
            &url,
            "--scenario",
            scenario,
            "--msgs",
            "1000",
            "--publishers",
            if scenario == "p2p" { "2" } else { "1" },
            "--subscribers",
            subs,
            "--quiet",
        ])
        .await;
        assert_eq!(code, 0, "{out}");
        // p2p through a broadcaster: each subscriber also sees the other pair's messages.
        if scenario == "p2p" {
            assert!(out.contains("ignored"), "{out}");
        }
    }
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_prints_ratios_and_plots() {
    let (old, new, svg) = (tmp("old.json"), tmp("new.json"), tmp("plot.svg"));
    for path in [&old, &new] {
        let p = path.to_string_lossy().to_string();
        let (code, out) = cli(&[
            "run",
            "--embedded",
            "--msgs",
            "500",
            "--quiet",
            "--json",
            &p,
        ])
        .await;
        assert_eq!(code, 0, "{out}");
    }
    let (o, n, s) = (
        old.to_string_lossy().to_string(),
        new.to_string_lossy().to_string(),
        svg.to_string_lossy().to_string(),
    );
    let (code, out) = cli(&["compare", &o, &n, "--plot", &s]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("new/old"), "{out}");
    for label in ["msgs/s", "p50 µs", "p99.9 µs", "lost"] {
        assert!(out.contains(label), "{label} missing: {out}");
    }
    let plot = std::fs::read_to_string(&svg).expect("svg written");
    assert!(plot.starts_with("<svg") && plot.trim_end().ends_with("</svg>"));
    assert!(plot.contains("Throughput") && plot.contains("Latency"));
    // A file that is not a result is refused with its path.
    std::fs::write(&svg, "{\"schema\": \"other\"}").expect("write");
    let (code, _) = cli(&["compare", &o, &s]).await;
    assert_eq!(code, 2);
    for p in [old, new, svg] {
        let _ = std::fs::remove_file(p);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vs_alternates_five_rounds() {
    let a = slim_reference::server::spawn(slim_reference::config::ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Default::default()
    })
    .await
    .expect("reference relay");
    let b = null_relay::spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("null relay");
    let path = tmp("vs.json");
    let p = path.to_string_lossy().to_string();
    let (au, bu) = (a.url(), b.url());
    let (code, out) = cli(&[
        "vs", "--a", &au, "--b", &bu, "--rounds", "5", "--msgs", "200", "--quiet", "--json", &p,
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("A/B") && out.contains("msgs/s"), "{out}");
    let doc = read_json(&path);
    assert_eq!(doc["kind"], "vs");
    assert_eq!(doc["targets"][0]["label"], "A");
    assert_eq!(
        doc["targets"][0]["rounds"].as_array().map(Vec::len),
        Some(5)
    );
    assert_eq!(
        doc["targets"][1]["rounds"].as_array().map(Vec::len),
        Some(5)
    );
    assert!(
        doc["targets"][1]["summary"]["msgs_per_s"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0
    );
    // A vs file compared with itself: every metric the same.
    let (code, out) = cli(&["compare", &p, &p, "--label", "B"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("same") && !out.contains("worse"), "{out}");
    // The two sides of one vs file, each named with its label and URL in the table and the plot.
    let svg = tmp("vs-sides.svg");
    let sp = svg.to_string_lossy().to_string();
    let (code, out) = cli(&[
        "compare",
        &p,
        &p,
        "--old-label",
        "B",
        "--new-label",
        "A",
        "--plot",
        &sp,
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("old: {p} [B: {bu}]")), "{out}");
    assert!(out.contains(&format!("new: {p} [A: {au}]")), "{out}");
    let plot = std::fs::read_to_string(&svg).expect("plot written");
    let _ = std::fs::remove_file(&svg);
    assert!(
        plot.contains(&format!("[A: {au}]")),
        "legend names the side"
    );
    // A label the file does not have is an error (its message, on stderr, lists A and B).
    let (code, out) = cli(&["compare", &p, &p, "--old-label", "C"]).await;
    assert_ne!(code, 0, "{out}");
    // Fewer than 5 rounds is refused.
    let (code, _) = cli(&["vs", "--a", &au, "--b", &bu, "--rounds", "4"]).await;
    assert_eq!(code, 2);
    let _ = std::fs::remove_file(&path);
    b.shutdown().await;
    a.shutdown().await.expect("relay shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_throughput_through_the_embedded_relay_counts_every_message() {
    for mls in [false, true] {
        let path = tmp(&format!("session-{mls}.json"));
        let p = path.to_string_lossy().to_string();
        let mut args = vec!["session", "--embedded", "--msgs", "300", "--json", &p];
        if mls {
            args.push("--mls");
        }
        let (code, out) = cli(&args).await;
        assert_eq!(code, 0, "mls={mls}: {out}");
        let doc = read_json(&path);
        let _ = std::fs::remove_file(&path);
        assert_eq!(doc["schema"], "slim-bench/session/v1");
        assert_eq!(doc["delivered"], 300, "{doc}");
        assert_eq!(doc["received"], 300, "{doc}");
        assert_eq!(doc["duplicates_or_reordered"], 0, "{doc}");
        assert_eq!(doc["mls"], mls);
        assert!(doc["delivered_per_sec"].as_f64().is_some_and(|r| r > 0.0));
    }
}

/// Wire bytes come from the sockets: a run whose payloads alone are 2 000 × 1 KiB each way
/// cannot report fewer bytes than that, nor an overhead out of proportion (a counter of the
/// wrong sockets, or of none, fails one bound or the other). Needs `ss` (iproute2); fails,
/// never skips, without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_bytes_are_read_from_the_sockets_and_systems_are_named() {
    let ss = std::process::Command::new("ss").arg("-V").output();
    assert!(
        ss.is_ok_and(|o| o.status.success()),
        "ss is missing: wire bytes need iproute2 (Debian: apt-get install -y iproute2)"
    );
    let json = tmp("wire.json");
    let p = json.to_string_lossy().to_string();
    let (code, out) = cli(&[
        "run",
        "--embedded",
        "--size",
        "1024",
        "--msgs",
        "2000",
        "--rounds",
        "2",
        "--system",
        "slim-relay (embedded)",
        "--quiet",
        "--json",
        &p,
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("B per published message"), "{out}");
    assert!(out.contains("median of 2 rounds"), "{out}");
    let doc = read_json(&json);
    let target = &doc["targets"][0];
    assert_eq!(target["system"], "slim-relay (embedded)");
    let rounds = target["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 2);
    for r in rounds {
        assert_eq!(r["published"], 2000);
        let up = r["wire_up_bytes"].as_u64().expect("wire_up_bytes");
        let down = r["wire_down_bytes"].as_u64().expect("wire_down_bytes");
        // Publisher → relay and relay → subscriber each carry every payload once.
        assert!(
            up >= 2000 * 1024 && down >= 2000 * 1024,
            "up {up} down {down}"
        );
        // SLIM's header, the link MAC and HTTP/2 framing: hundreds of bytes, not kilobytes.
        let per_msg = (up + down) as f64 / 2000.0;
        assert!(per_msg < 2.0 * 1024.0 + 1000.0, "{per_msg} B/msg");
    }
    assert!(target["summary"]["wire_bytes_per_msg"].as_f64().is_some());

    // The plot names the system, not the URL, and its axis ends on a round number.
    let svg = tmp("wire.svg");
    let s = svg.to_string_lossy().to_string();
    let (code, out) = cli(&["plot", "--metric", "msgs_per_s", "--out", &s, &p]).await;
    assert_eq!(code, 0, "{out}");
    let plot = std::fs::read_to_string(&svg).expect("svg written");
    assert!(plot.contains("slim-relay (embedded)"), "{plot}");
    assert!(!plot.contains("127.0.0.1"), "{plot}");
    let (code, _) = cli(&["plot", "--metric", "nope", "--out", &s, &p]).await;
    assert_eq!(code, 2);
    for f in [json, svg] {
        let _ = std::fs::remove_file(f);
    }
}
