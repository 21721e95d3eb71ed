//! Helpers shared by the slim-bench end-to-end tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use slim_bench::cli::run_cli;

/// A scratch file path unique to this test process.
pub fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("slim-bench-test-{}-{name}", std::process::id()))
}

/// Runs the CLI in-process with `args`; returns its exit code and stdout.
pub async fn cli(args: &[&str]) -> (i32, String) {
    let mut argv = vec!["slim-bench".to_string()];
    argv.extend(args.iter().map(|s| s.to_string()));
    let mut out = Vec::new();
    let code = run_cli(argv, &mut out).await;
    (code, String::from_utf8_lossy(&out).into_owned())
}

/// Reads a JSON result file.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("result file written");
    serde_json::from_str(&text).expect("valid JSON")
}
