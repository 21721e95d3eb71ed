//! Verdicts come from events, not from speed: the whole node profile gives the same verdict for
//! every case when every byte between the runner and the relay is held for 50 ms each way
//! (`--delay-ms 50`). The two runs go at the same time, so each also runs on a machine the other
//! keeps busy.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

fn scratch(name: &str) -> PathBuf {
    let d =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("speed-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// Case id → verdict of a JSON report.
fn verdicts(path: &Path) -> BTreeMap<String, String> {
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("report")).expect("json");
    assert_eq!(report["complete"], true, "{} is complete", path.display());
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

#[test]
fn verdicts_are_the_same_through_a_50_ms_delay() {
    let dir = scratch("delay");
    let runs: Vec<(&str, Vec<&str>)> = vec![
        ("plain", vec![]),
        ("delayed", vec!["--delay-ms", "50"]),
        (
            "lax-delayed",
            vec![
                "--delay-ms",
                "50",
                "--require-header-mac",
                "false",
                "--only",
                "mac/*",
            ],
        ),
        (
            "lax",
            vec!["--require-header-mac", "false", "--only", "mac/*"],
        ),
        (
            "auth-delayed",
            vec![
                "--delay-ms",
                "50",
                "--auth",
                "basic:u:pw",
                "--only",
                "auth/*",
            ],
        ),
        ("auth", vec!["--auth", "basic:u:pw", "--only", "auth/*"]),
    ];
    let children: Vec<_> = runs
        .iter()
        .map(|(name, args)| {
            let json = dir.join(format!("{name}.json"));
            let child = Command::new(env!("CARGO_BIN_EXE_slim-conformance"))
                .arg("run")
                .args(args)
                .arg("--json")
                .arg(&json)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start slim-conformance");
            (*name, json, child)
        })
        .collect();
    let mut by_name = BTreeMap::new();
    for (name, json, child) in children {
        let out = child.wait_with_output().expect("wait for slim-conformance");
        let stdout = String::from_utf8_lossy(&out.stdout);
        println!(
            "{name}: {}",
            stdout.lines().last().unwrap_or("(no summary)")
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name} run:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        by_name.insert(name, verdicts(&json));
    }
    for (a, b) in [
        ("plain", "delayed"),
        ("lax", "lax-delayed"),
        ("auth", "auth-delayed"),
    ] {
        let (x, y) = (&by_name[a], &by_name[b]);
        let differ: Vec<String> = x
            .iter()
            .filter(|(id, v)| y.get(*id) != Some(*v))
            .map(|(id, v)| format!("{id}: {v} without delay, {:?} with", y.get(id)))
            .collect();
        assert!(
            differ.is_empty() && x.len() == y.len(),
            "verdicts depend on speed ({a} vs {b}):\n{}",
            differ.join("\n")
        );
    }
}
