//! What the session matrix catches, and what it does with a broken shim.
//!
//! - Seeded faults of the reference session layer (`SLIM_SESSION_MUTANT`, the `mutants` feature of
//!   slim-reference, a dev-dependency here): each is caught by the case that exists for it, and
//!   the same cases pass without it.
//! - A shim that hangs, answers nonsense or crashes gets ERROR cells with the cause; the run
//!   completes and its report is whole.

use std::path::Path;
use std::pin::Pin;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use slim_proto::driver::{self as d, driver_server};
use tonic::{Request, Response, Status};

/// (fault, the case that catches it).
const FAULTS: &[(&str, &str)] = &[
    ("deliver-duplicates", "p2p/duplicates"),
    ("no-retransmit", "p2p/lost-last-message"),
    ("remove-without-commit", "group/removal-commits"),
    (
        "unverified-control-signature",
        "p2p/tampered-join-header-sig",
    ),
    ("publish-failure-as-ok", "p2p/retries-exhausted"),
    ("accept-any-key-package", "mls/foreign-key-package"),
    (
        "revoked-identity-accepted",
        "revoke/member-refuses-revoked-sender",
    ),
    (
        "revoked-identity-accepted",
        "revoke/moderator-refuses-revoked-join",
    ),
    (
        "revoked-identity-accepted",
        "revoke/member-refuses-revoked-commands",
    ),
    ("revocation-keeps-member", "revoke/moderator-removes"),
    ("revocation-keeps-member", "revoke/revoked-cannot-decrypt"),
    // The runner, as the removed member, opens data the moderator keeps encrypting in the old
    // epoch: the decryption check catches a removal without a commit on its own.
    ("remove-without-commit", "revoke/revoked-cannot-decrypt"),
];

fn verdicts(fault: Option<&str>, only: &[&str], extra: &[&str]) -> (i32, Value, String) {
    let json = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "session-faults-{}-{}.json",
        fault.unwrap_or("none"),
        std::process::id()
    ));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slim-conformance"));
    match fault {
        Some(f) => cmd.env("SLIM_SESSION_MUTANT", f),
        None => cmd.env_remove("SLIM_SESSION_MUTANT"),
    };
    cmd.args(["run", "--profile", "session", "--json"])
        .arg(&json);
    for o in only {
        cmd.args(["--only", o]);
    }
    let out = cmd.args(extra).output().expect("run slim-conformance");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let report = serde_json::from_str(&std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "no report ({e}); stdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    }))
    .expect("json report");
    (out.status.code().unwrap_or(-1), report, stdout)
}

#[test]
fn each_seeded_session_fault_is_caught_by_its_case() {
    let mut cases: Vec<&str> = FAULTS.iter().map(|(_, c)| *c).collect();
    cases.sort_unstable();
    cases.dedup();
    let (code, clean, out) = verdicts(None, &cases, &[]);
    assert_eq!(code, 0, "without a fault the cases pass:\n{out}");
    assert_eq!(clean["cases"].as_array().map_or(0, Vec::len), cases.len());
    let mut rows = Vec::new();
    for (fault, case) in FAULTS {
        let (code, r, out) = verdicts(Some(fault), &[case], &[]);
        let c = &r["cases"][0];
        rows.push(format!("{fault:<30} {case:<32} {}", c["verdict"]));
        assert_eq!(code, 1, "{fault}: the run must fail:\n{out}");
        assert_eq!(c["verdict"], "FAIL", "{fault} is not caught by {case}: {c}");
    }
    println!(
        "seeded session faults and the cases that catch them:\n{}",
        rows.join("\n")
    );
}

/// How the fake shim misbehaves.
#[derive(Clone, Copy)]
enum Mode {
    /// CreateApp never answers.
    Hang,
    /// CreateApp answers without an app id.
    Nonsense,
    /// The process dies in the middle of CreateApp.
    Crash,
}

struct BadShim {
    mode: Mode,
    crashed: Arc<AtomicBool>,
}

type Stream = Pin<Box<dyn tokio_stream::Stream<Item = Result<d::Event, Status>> + Send>>;

fn nope<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("fake shim"))
}

#[tonic::async_trait]
impl driver_server::Driver for BadShim {
    async fn get_capabilities(
        &self,
        _: Request<d::GetCapabilitiesRequest>,
    ) -> Result<Response<d::Capabilities>, Status> {
        Ok(Response::new(d::Capabilities {
            implementation: "a broken shim".into(),
            driver_version: "1".into(),
            point_to_point: true,
            group: true,
            fire_and_forget: true,
            reliable: true,
            mls: true,
            ..Default::default()
        }))
    }
    async fn create_app(
        &self,
        _: Request<d::CreateAppRequest>,
    ) -> Result<Response<d::CreateAppResponse>, Status> {
        match self.mode {
            Mode::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                nope()
            }
            Mode::Nonsense => Ok(Response::new(d::CreateAppResponse::default())),
            Mode::Crash => {
                self.crashed.store(true, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(3600)).await;
                nope()
            }
        }
    }
    async fn subscribe(&self, _: Request<d::NameRequest>) -> Result<Response<d::Empty>, Status> {
        nope()
    }
    async fn set_route(&self, _: Request<d::NameRequest>) -> Result<Response<d::Empty>, Status> {
        nope()
    }
    async fn create_session(
        &self,
        _: Request<d::CreateSessionRequest>,
    ) -> Result<Response<d::SessionResponse>, Status> {
        nope()
    }
    async fn await_session(
        &self,
        _: Request<d::AwaitSessionRequest>,
    ) -> Result<Response<d::SessionResponse>, Status> {
        nope()
    }
    async fn invite(&self, _: Request<d::MemberRequest>) -> Result<Response<d::Empty>, Status> {
        nope()
    }
    async fn remove(&self, _: Request<d::MemberRequest>) -> Result<Response<d::Empty>, Status> {
        nope()
    }
    async fn leave(&self, _: Request<d::SessionRef>) -> Result<Response<d::Empty>, Status> {
        nope()
    }
    async fn close_session(&self, _: Request<d::SessionRef>) -> Result<Response<d::Empty>, Status> {
        nope()
    }
    async fn publish(
        &self,
        _: Request<d::PublishRequest>,
    ) -> Result<Response<d::PublishResponse>, Status> {
        nope()
    }
    type EventsStream = Stream;
    async fn events(&self, _: Request<d::AppRef>) -> Result<Response<Stream>, Status> {
        nope()
    }
    async fn state_auth(
        &self,
        _: Request<d::SessionRef>,
    ) -> Result<Response<d::StateAuthResponse>, Status> {
        nope()
    }
    async fn members(
        &self,
        _: Request<d::SessionRef>,
    ) -> Result<Response<d::MembersResponse>, Status> {
        nope()
    }
    async fn rotate_keys(&self, _: Request<d::SessionRef>) -> Result<Response<d::Empty>, Status> {
        nope()
    }
    async fn revoke_identity(
        &self,
        _: Request<d::RevokeRequest>,
    ) -> Result<Response<d::Empty>, Status> {
        nope()
    }
    async fn free(&self, _: Request<d::AppRef>) -> Result<Response<d::Empty>, Status> {
        nope()
    }
}

/// Serves a fake shim on its own runtime (so "crash" can kill it mid-call); returns its URL and
/// the runtime, dropped at the end of the test.
fn serve(mode: Mode) -> (String, std::thread::JoinHandle<()>, Arc<AtomicBool>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let crashed = Arc::new(AtomicBool::new(false));
    let flag = crashed.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            listener.set_nonblocking(true).expect("nonblocking");
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let shim = BadShim {
                mode,
                crashed: flag.clone(),
            };
            let server = tonic::transport::Server::builder()
                .add_service(driver_server::DriverServer::new(shim))
                .serve_with_incoming(incoming);
            let died = async {
                while !flag.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            };
            // A crash: the process would be gone, its connections reset. Here the runtime ends
            // and takes the server and every connection with it.
            tokio::select! {
                _ = server => {}
                _ = died => {}
            }
        });
        rt.shutdown_background();
    });
    (format!("http://{addr}"), thread, crashed)
}

#[test]
fn a_shim_that_hangs_answers_nonsense_or_crashes_gets_error_cells_and_a_whole_report() {
    let (hang, _t1, _) = serve(Mode::Hang);
    let (nonsense, _t2, _) = serve(Mode::Nonsense);
    let (crash, _t3, crashed) = serve(Mode::Crash);
    let html = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bad-shims-{}.html", std::process::id()));
    let (code, r, out) = verdicts(
        None,
        &["ident/valid-discovery"],
        &[
            "--driver",
            &format!("hang={hang}"),
            "--driver",
            &format!("nonsense={nonsense}"),
            "--driver",
            &format!("crash={crash}"),
            "--html",
            html.to_str().unwrap(),
        ],
    );
    assert!(
        crashed.load(Ordering::SeqCst),
        "the crash shim was never called"
    );
    assert_eq!(code, 2, "harness errors make exit code 2:\n{out}");
    assert_eq!(r["complete"], true);
    let verdict = |id: &str| -> (String, String) {
        let c = r["cases"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["id"] == id))
            .unwrap_or_else(|| panic!("no cell {id}:\n{out}"));
        (
            c["verdict"].as_str().unwrap_or("").into(),
            c["observed"].as_str().unwrap_or("").into(),
        )
    };
    assert_eq!(verdict("ident/valid-discovery@ref").0, "PASS");
    let (v, why) = verdict("ident/valid-discovery@hang");
    assert!(v == "ERROR" && why.contains("hung"), "{v}: {why}");
    let (v, why) = verdict("ident/valid-discovery@nonsense");
    assert!(
        v == "ERROR" && why.contains("returned no app_id"),
        "{v}: {why}"
    );
    let (v, why) = verdict("ident/valid-discovery@crash");
    assert!(
        v == "ERROR" && why.contains("crashed or is unreachable"),
        "{v}: {why}"
    );
    let page = std::fs::read_to_string(&html).expect("html report");
    assert!(page.contains("</html>") && page.matches("class=\"cell ").count() == 4);
}
