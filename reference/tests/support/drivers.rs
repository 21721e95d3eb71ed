//! Running one Python interop driver (`tests/interop/*.py`) and reading its verdict: the last
//! stdout line is a JSON summary with `"ok"`, and the exit code is 0 iff ok. Shared by the
//! interop tests of this crate.

#![allow(dead_code)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

/// Runs `script` (under `tests/interop/`) with `py` and `args`, killed after `timeout`; returns
/// its summary after checking that it passed (`context` names the run in failure messages).
pub async fn run_driver(
    py: &Path,
    script: &str,
    args: &[&str],
    timeout: Duration,
    context: &str,
) -> Value {
    run_driver_env(py, script, args, &[], timeout, context).await
}

/// [`run_driver`] with extra environment variables (e.g. the TLS files `slimapp.py` reads).
pub async fn run_driver_env(
    py: &Path,
    script: &str,
    args: &[&str],
    env: &[(&str, &Path)],
    timeout: Duration,
    context: &str,
) -> Value {
    let child = tokio::process::Command::new(py)
        .arg(super::venv::interop_dir().join(script))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start python driver");
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(out) => out.expect("driver output"),
        Err(_) => panic!("{script} did not finish within {timeout:?} (driver killed)"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let summary: Value = serde_json::from_str(last).unwrap_or_else(|e| {
        panic!("{script}: last stdout line is not a JSON summary ({e}).\nstdout:\n{stdout}\nstderr:\n{stderr}")
    });
    assert!(
        out.status.success() && summary["ok"] == Value::Bool(true),
        "{script} {context} failed (exit {}):\nsummary: {summary}\nstderr:\n{stderr}",
        out.status
    );
    summary
}
