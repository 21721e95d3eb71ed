//! The Python virtualenv with the real SLIM (`slim-bindings` from PyPI), shared by every test that
//! drives real SLIM apps or the real node. Included with `#[path]` by tests of several crates.
//!
//! If the wheel cannot be installed the calling test fails and says why: it is never skipped.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// slim-bindings version the wire facts were checked with.
pub const SLIM_BINDINGS: &str = "slim-bindings==3.3.8";
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../reference/tests/interop")
}

/// Serializes the venv's creation between the tests of one binary, which run in parallel: two
/// `python -m venv --clear` at once delete each other's interpreter.
static SETUP: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The venv's python, creating the venv and installing the wheel if needed.
pub fn python() -> PathBuf {
    let _one_at_a_time = SETUP.lock().unwrap_or_else(|p| p.into_inner());
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("interop-venv");
    let py = venv.join("bin/python");
    let stamp = venv.join(".installed");
    let requirements = interop_dir().join("requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).expect("tests/interop/requirements.txt");
    assert!(
        wanted.lines().any(|l| l.trim() == SLIM_BINDINGS),
        "requirements.txt must pin {SLIM_BINDINGS}"
    );
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) && py.exists() {
        return py;
    }
    let host_python = std::env::var("SLIM_INTEROP_PYTHON").unwrap_or_else(|_| "python3".into());
    run_setup(
        std::process::Command::new(&host_python).args(["-m", "venv", "--clear"]).arg(&venv),
        &format!("create a Python virtualenv with `{host_python} -m venv` (install python3 and python3-venv, or set SLIM_INTEROP_PYTHON)"),
    );
    run_setup(
        std::process::Command::new(&py)
            .args(["-m", "pip", "install", "--disable-pip-version-check", "-q", "-r"])
            .arg(&requirements),
        &format!("install {SLIM_BINDINGS} from PyPI into {} (the interop tests need PyPI access; they are never skipped)", venv.display()),
    );
    std::fs::write(&stamp, wanted).expect("write venv stamp");
    py
}

fn run_setup(cmd: &mut std::process::Command, what: &str) {
    match cmd.output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "interop setup failed: could not {what}.\nexit: {}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("interop setup failed: could not {what}: {e}"),
    }
}

/// The real SLIM node (the server embedded in the wheel, `serve_real_node.py`); killed when the
/// test ends, pass or fail.
pub struct Node(pub Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An ephemeral port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("an ephemeral port")
}

/// Starts the real node on a free port, waits (bounded) for its ready line, and returns it with
/// its URL.
pub fn start_real_node() -> (Node, String) {
    start_real_node_with(&[])
}

/// [`start_real_node`] with extra arguments for `serve_real_node.py` (e.g. its JWT auth).
pub fn start_real_node_with(args: &[&str]) -> (Node, String) {
    let py = python();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(&py)
        .arg(interop_dir().join("serve_real_node.py"))
        .args(["--listen", &listen])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start serve_real_node.py with the venv's python");
    let stdout = child.stdout.take().expect("stdout");
    let node = Node(child);
    let (tx, rx) = std::sync::mpsc::channel();
    // Keeps draining stdout (the SDK logs there) so the node never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("\"ready\"") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the real SLIM node (slim-bindings) did not report ready within 60 s");
    (node, format!("http://{listen}"))
}
