//! Starting the real SLIM node (the server embedded in the slim-bindings wheel) for tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[path = "../../../reference/tests/support/venv.rs"]
pub mod venv;

/// Kills the real node when the test ends, pass or fail.
pub struct Node(pub Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("an ephemeral port")
}

pub fn start_real_node() -> (Node, String) {
    let py = venv::python();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(&py)
        .arg(venv::interop_dir().join("serve_real_node.py"))
        .args(["--listen", &listen])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start serve_real_node.py with the venv's python");
    let stdout = child.stdout.take().expect("stdout");
    let node = Node(child);
    let (tx, rx) = std::sync::mpsc::channel();
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
