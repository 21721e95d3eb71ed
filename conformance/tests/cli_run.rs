//! The `slim-conformance` binary end to end against the embedded reference relay: verdicts,
//! reports, exit codes, expectations files and usage errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn runner(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slim-conformance"))
        .args(args)
        .output()
        .expect("run slim-conformance")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cli-run-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

#[test]
fn the_reference_relay_passes_every_must_case() {
    let dir = scratch("full");
    let json = dir.join("report.json");
    let junit = dir.join("report.xml");
    let html = dir.join("report.html");
    let out = runner(&[
        "run",
        "--json",
        json.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    println!("{stdout}");
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        last.contains(" passed, 0 failed, ") && last.contains(" skipped"),
        "summary line: {last}"
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["schema"], "slim-conformance/report/v1");
    assert_eq!(report["complete"], true);
    let cases = report["cases"].as_array().unwrap();
    assert!(cases.len() >= 60, "{} cases", cases.len());
    for c in cases {
        let verdict = c["verdict"].as_str().unwrap();
        assert!(
            matches!(verdict, "PASS" | "INFO" | "UNSUPPORTED"),
            "{} is {verdict}: expected {:?}, observed {:?}",
            c["id"],
            c["expected"],
            c["observed"]
        );
        // Every case carries its requirements' text, so the report stands alone.
        assert!(c["requirements"][0]["text"]
            .as_str()
            .is_some_and(|t| !t.is_empty()));
    }
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.starts_with("<?xml") && xml.contains("<testsuite name=\"slim-conformance\""));
    assert_eq!(xml.matches("<testcase ").count(), cases.len());
    assert!(!xml.contains("<failure"));
    // The HTML page: the one-column matrix and one section per case, self-contained.
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("id=\"matrix\"") && page.ends_with("</html>\n"));
    assert_eq!(page.matches("<section class=\"cell ").count(), cases.len());
    assert!(!page.contains("http://") || !page.contains("<link") && !page.contains("<script"));
}

#[test]
fn authentication_cases_run_when_credentials_are_given() {
    let out = runner(&["run", "--auth", "basic:alice:s3cret", "--only", "auth/*"]);
    let (stdout, stderr) = text(&out);
    println!("{stdout}");
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    assert!(stdout.contains("7 passed, 0 failed, 0 skipped"), "{stdout}");
    let out = runner(&["run", "--bearer", "t0ken", "--only", "auth/*"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).0);
}

#[test]
fn lax_cases_run_against_a_non_strict_relay() {
    let out = runner(&["run", "--require-header-mac", "false", "--only", "mac/*"]);
    let (stdout, stderr) = text(&out);
    println!("{stdout}");
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    for case in [
        "mac/lax-unsigned-subscribe",
        "mac/lax-unsigned-publish",
        "mac/lax-keyless-link",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(case) && l.contains(" PASS ")),
            "{case} passes: {stdout}"
        );
    }
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn an_unreachable_target_exits_3_and_says_so() {
    let out = runner(&["run", "--target", "http://127.0.0.1:1"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("unreachable"), "{stderr}");
}

#[test]
fn usage_errors_exit_2_with_a_reason() {
    for (args, needle) in [
        (
            vec!["run", "--auth", "alice:pw"],
            "expected basic:USER:PASS",
        ),
        (vec!["run", "--auth", "basic:alice"], "no ':'"),
        (vec!["run", "--only", "no-such-case*"], "selected no case"),
        (
            vec!["run", "--expect", "/nonexistent/expect.yaml"],
            "expectations file",
        ),
        (
            vec!["run", "--require-header-mac", "maybe"],
            "invalid value",
        ),
    ] {
        let out = runner(&args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn a_stale_expectation_fails_the_run_until_fixed() {
    let dir = scratch("stale");
    let file = dir.join("expect.yaml");
    std::fs::write(
        &file,
        "schema: 2\nimplementation: slim-relay (test)\ndeviations:\n  - requirement: SLIM-ROUTE-007\n    case: routing/vector-no-echo\n    reason: pretend the relay echoes\n    observed_on: test\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let out = runner(&["run", "--only", "routing/vector-no-echo", "--expect", f]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("STALE expectation: SLIM-ROUTE-007 (routing/vector-no-echo)"),
        "{stdout}"
    );
    let out = runner(&[
        "run",
        "--only",
        "routing/vector-no-echo",
        "--expect",
        f,
        "--fix-expectations",
    ]);
    assert!(text(&out).0.contains("rewrote"), "{}", text(&out).0);
    let fixed = std::fs::read_to_string(&file).unwrap();
    assert!(!fixed.contains("SLIM-ROUTE-007"), "{fixed}");
    let out = runner(&["run", "--only", "routing/vector-no-echo", "--expect", f]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).0);
}

#[test]
fn list_and_coverage_are_stable() {
    let out = runner(&["list"]);
    assert_eq!(out.status.code(), Some(0));
    insta::assert_snapshot!("list", text(&out).0);
    let out = runner(&["list", "--cases"]);
    insta::assert_snapshot!("list_cases", text(&out).0);
    let out = runner(&["coverage"]);
    let (stdout, _) = text(&out);
    assert!(
        !stdout.contains("(NO CASE)")
            || !stdout
                .lines()
                .any(|l| l.contains(" MUST ") && l.contains("(NO CASE)"))
    );
    insta::assert_snapshot!("coverage", stdout);
}

#[test]
fn vectors_verify_passes_on_the_committed_files() {
    let out = runner(&["vectors", "verify"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("all vectors verified"));
}

#[test]
fn vectors_generate_is_byte_for_byte_reproducible() {
    let a = scratch("gen-a");
    let b = scratch("gen-b");
    for d in [&a, &b] {
        let out = runner(&["vectors", "generate", "--dir", d.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    }
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vectors");
    for f in slim_vectors::FILES {
        let x = std::fs::read(a.join(f)).unwrap();
        assert_eq!(
            x,
            std::fs::read(b.join(f)).unwrap(),
            "{f} differs between two runs"
        );
        assert_eq!(
            x,
            std::fs::read(committed.join(f)).unwrap(),
            "vectors/{f} is out of date: run `cargo run -p slim-conformance -- vectors generate`"
        );
    }
}

/// Waits for `child` at most `secs`, killing it (and failing) if it hangs.
fn wait_bounded(mut child: std::process::Child, secs: u64) -> Output {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        match child.try_wait().expect("try_wait") {
            Some(_) => return child.wait_with_output().expect("output"),
            None if std::time::Instant::now() > deadline => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("output");
                panic!(
                    "slim-conformance hung for {secs} s; stdout:\n{}",
                    String::from_utf8_lossy(&out.stdout)
                );
            }
            None => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
}

#[test]
fn a_target_that_accepts_tcp_but_never_speaks_is_reported_not_waited_on() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // Accept connections and hold them open without a byte of HTTP/2.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let child = Command::new(env!("CARGO_BIN_EXE_slim-conformance"))
        .args(["run", "--target", &url])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_bounded(child, 60);
    let (_, stderr) = text(&out);
    assert!(
        matches!(out.status.code(), Some(2 | 3)),
        "{:?}: {stderr}",
        out.status
    );
    assert!(stderr.contains("error:"), "{stderr}");
}

#[test]
fn a_target_that_dies_mid_run_fails_the_remaining_cases_and_the_report_is_complete() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let handle = rt
        .block_on(slim_reference::server::spawn(
            slim_reference::config::ServerConfig {
                listen: ([127, 0, 0, 1], 0).into(),
                ..Default::default()
            },
        ))
        .unwrap();
    let url = handle.url();
    let dir = scratch("dies");
    let json = dir.join("report.json");
    let child = Command::new(env!("CARGO_BIN_EXE_slim-conformance"))
        .args([
            "run", "--target", &url, "--only", "link/*", "--only", "names/*", "--json",
        ])
        .arg(&json)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Let some cases pass, then take the target away.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    rt.block_on(handle.shutdown()).unwrap();
    let out = wait_bounded(child, 120);
    let (stdout, _) = text(&out);
    println!("{stdout}");
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["complete"], true);
    let cases = report["cases"].as_array().unwrap();
    assert!(
        cases.iter().any(|c| c["verdict"] == "PASS"),
        "some cases ran before the target died"
    );
    let last = cases.last().unwrap();
    assert_eq!(last["verdict"], "FAIL", "{last}");
    assert!(
        last["observed"]
            .as_str()
            .unwrap_or("")
            .contains("cannot connect"),
        "{last}"
    );
}
