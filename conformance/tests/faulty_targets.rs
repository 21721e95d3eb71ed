//! Each case that was made exact (it could pass on silence, on any reply, after a fixed sleep, or
//! asserted too little) fails against a relay seeded with the fault it exists to catch (a WARN
//! where the fault breaks a SHOULD). The
//! faults are the reference relay's `mutants` feature (reference/src/mutants.rs), selected per
//! process with `SLIM_RELAY_MUTANT`; the runner's embedded relay picks it up. The full sweep over
//! every fault is `conformance/mutants/run.sh`; this test keeps the cases' sharpest edges in CI.

use std::process::Command;
use std::sync::mpsc;

use serde_json::Value;

/// (case, fault, extra runner flags, the verdict the case must give against the fault).
const TABLE: &[(&str, &str, &[&str], &str)] = &[
    // A leak after a link ends, whether it closed cleanly or on an error.
    (
        "validation/dead-link-routes-removed",
        "routes-kept-on-clean-close",
        &[],
        "FAIL",
    ),
    (
        "transport/undecodable-frame",
        "routes-kept-on-error-close",
        &[],
        "FAIL",
    ),
    (
        "transport/oversize-ends-stream",
        "routes-kept-on-error-close",
        &[],
        "FAIL",
    ),
    // The exact size limit, both sides of it.
    (
        "transport/max-size-delivered",
        "size-limit-off-by-one",
        &[],
        "FAIL",
    ),
    (
        "transport/oversize-ends-stream",
        "size-limit-one-over-accepted",
        &[],
        "FAIL",
    ),
    // Slow consumers: a blocked sender, an unbounded queue, a dropped ack.
    (
        "transport/slow-consumer-isolation",
        "slow-consumer-blocks-sender",
        &[],
        "FAIL",
    ),
    (
        "transport/slow-consumer-isolation",
        "unbounded-link-queue",
        &[],
        "FAIL",
    ),
    (
        "transport/slow-consumer-isolation",
        "acks-dropped-when-queue-full",
        &[],
        "FAIL",
    ),
    // Refused Subscribes: a late success ack or an installed route, told apart from silence.
    (
        "validation/subscribe-no-source",
        "subscribe-without-source-accepted",
        &[],
        "FAIL",
    ),
    (
        "mac/subscribe-wrong-mac",
        "subscribe-mac-not-checked",
        &[],
        "FAIL",
    ),
    (
        "routing/ttl-one-subscribe",
        "ttl-dropped-only-at-zero",
        &[],
        "FAIL",
    ),
    (
        "routing/ttl-one-publish",
        "ttl-dropped-only-at-zero",
        &[],
        "FAIL",
    ),
    // Acks: one per request, to the requester only, and truthful.
    (
        "subscriptions/recv-from-foreign",
        "recv-from-foreign-honoured",
        &[],
        "FAIL",
    ),
    (
        "subscriptions/unsubscribe-recv-from-foreign",
        "unsubscribe-recv-from-foreign-honoured",
        &[],
        "FAIL",
    ),
    (
        "subscriptions/unsubscribe-foreign",
        "unsubscribe-foreign-link",
        &[],
        "FAIL",
    ),
    // Negotiation: exactly one reply.
    (
        "link/second-negotiation-ignored",
        "second-negotiation-answered",
        &[],
        "FAIL",
    ),
    // Egress signing: every copy of a fan-out under its own receiver's key.
    (
        "mac/egress-signed",
        "fanout-signed-with-first-key",
        &[],
        "FAIL",
    ),
    // forward_to: the table is bypassed, proved with a barrier instead of a quiet period.
    (
        "routing/forward-to-bypasses-table",
        "forward-to-ignored",
        &[],
        "FAIL",
    ),
    // Non-strict MAC handling, split as the real node behaves (SLIM-MAC-006, -008).
    (
        "mac/lax-unsigned-subscribe",
        "lax-unsigned-refused",
        &["--require-header-mac", "false"],
        "FAIL",
    ),
    (
        "mac/lax-keyless-link",
        "lax-keyless-mac-accepted",
        &["--require-header-mac", "false"],
        "FAIL",
    ),
    // Ids compared in full, MACs compared over their exact length, acks that mean what they say.
    (
        "names/id-high-halves-distinct",
        "id-low-half-only",
        &[],
        "FAIL",
    ),
    (
        "mac/publish-truncated-mac",
        "mac-truncated-compare",
        &[],
        "FAIL",
    ),
    (
        "mac/publish-extended-mac",
        "mac-truncated-compare",
        &[],
        "FAIL",
    ),
    (
        "subscriptions/limit-per-link",
        "ack-success-route-not-installed",
        &[],
        "FAIL",
    ),
    (
        "auth/right-secret-wrong-scheme",
        "auth-any-scheme-accepted",
        &["--auth", "basic:u:s3cret"],
        "FAIL",
    ),
    // MAY cases check what their requirement states; SHOULD faults give WARN.
    (
        "link/post-quantum-hybrid",
        "hybrid-answered-classically",
        &[],
        "WARN",
    ),
    (
        "link/peer-connection-type",
        "peer-refused-with-ok",
        &[],
        "WARN",
    ),
    (
        "subscriptions/forward-to-on-subscribe",
        "forward-to-subscribe-acked-unforwarded",
        &[],
        "FAIL",
    ),
    (
        "names/unicode-components",
        "delivered-names-stripped",
        &[],
        "WARN",
    ),
    (
        "mac/subscribe-wrong-mac",
        "mac-refusal-not-acked",
        &[],
        "WARN",
    ),
    (
        "mac/lax-unsigned-publish",
        "lax-unsigned-publish-dropped",
        &["--require-header-mac", "false"],
        "WARN",
    ),
    // The barrier every negative check relies on.
    (
        "subscriptions/barrier-sound",
        "deliveries-reordered",
        &[],
        "FAIL",
    ),
    // Credentials compared exactly, one byte either way.
    (
        "auth/secret-one-byte-long",
        "auth-longer-credentials-accepted",
        &["--auth", "basic:u:s3cret"],
        "FAIL",
    ),
    (
        "auth/secret-one-byte-short",
        "auth-shorter-credentials-accepted",
        &["--auth", "basic:u:s3cret"],
        "FAIL",
    ),
    // Revocation (the embedded JWT relay, set up by the runner with no flag): each check of a
    // token, each kind of entry, at call setup and on live streams, and a list that breaks.
    (
        "revocation/wrong-audience-refused",
        "jwt-audience-not-checked",
        &[],
        "FAIL",
    ),
    (
        "revocation/revoked-sub-refused",
        "revoked-sub-ignored",
        &[],
        "FAIL",
    ),
    (
        "revocation/revoked-kid-refused",
        "revoked-kid-ignored",
        &[],
        "FAIL",
    ),
    (
        "revocation/revoked-jti-refused",
        "revoked-token-accepted-at-setup",
        &[],
        "FAIL",
    ),
    (
        "revocation/live-stream-ended",
        "revocation-not-enforced-on-live-streams",
        &[],
        "FAIL",
    ),
    (
        "revocation/live-stream-ended",
        "subscriptions-kept-after-revocation",
        &[],
        "FAIL",
    ),
    (
        "revocation/expiry-ends-stream",
        "expiry-only-at-setup",
        &[],
        "FAIL",
    ),
    (
        "revocation/malformed-list-keeps-revocations",
        "malformed-list-clears-revocations",
        &[],
        "FAIL",
    ),
    // Connections: TLS on the embedded TLS relay, limits on the embedded relay.
    ("connection/tls-alpn-h2", "tls-without-alpn", &[], "FAIL"),
    (
        "connection/mtls-requires-certificate",
        "client-ca-ignored",
        &[],
        "FAIL",
    ),
    (
        "connection/plaintext-on-tls-port",
        "plaintext-on-tls-port-dropped",
        &[],
        "WARN",
    ),
    (
        "connection/per-peer-limit",
        "over-limit-connections-reset",
        &[],
        "WARN",
    ),
    (
        "connection/per-peer-limit",
        "peer-limit-not-enforced",
        &[],
        "WARN",
    ),
    (
        "connection/idle-closed",
        "idle-connections-kept",
        &[],
        "WARN",
    ),
    (
        "connection/idle-closed",
        "busy-connections-closed-when-idle",
        &[],
        "WARN",
    ),
    (
        "connection/streams-limit-announced",
        "stream-limit-not-announced",
        &[],
        "WARN",
    ),
];

/// Runs one case against the embedded relay with `fault` active; returns the case's verdict and
/// what it observed.
fn verdict(case: &str, fault: Option<&str>, flags: &[&str]) -> (String, String) {
    let json = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "faulty-{}-{}-{}.json",
        fault.unwrap_or("none"),
        case.replace('/', "_"),
        std::process::id()
    ));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slim-conformance"));
    match fault {
        Some(f) => cmd.env("SLIM_RELAY_MUTANT", f),
        None => cmd.env_remove("SLIM_RELAY_MUTANT"),
    };
    let out = cmd
        .args(["run", "--only", case])
        .args(flags)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run slim-conformance");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "{case} against {fault:?}: no report ({e}); stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    }))
    .expect("json report");
    let c = &report["cases"][0];
    assert_eq!(c["id"], case, "the run selected {case}");
    (
        c["verdict"].as_str().unwrap_or("").to_string(),
        c["observed"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn each_sharpened_case_fails_against_its_fault_and_passes_without_it() {
    let (tx, rx) = mpsc::channel();
    // Two at a time: the machine has two cores and some cases load the relay.
    std::thread::scope(|s| {
        for chunk in TABLE.chunks(TABLE.len().div_ceil(2)) {
            let tx = tx.clone();
            s.spawn(move || {
                for (case, fault, flags, want) in chunk {
                    let (got, observed) = verdict(case, Some(fault), flags);
                    let (clean, clean_observed) = verdict(case, None, flags);
                    let _ = tx.send((*case, *fault, *want, got, observed, clean, clean_observed));
                }
            });
        }
    });
    drop(tx);
    let mut wrong = Vec::new();
    for (case, fault, want, got, observed, clean, clean_observed) in rx {
        println!("{case:<48} {fault:<40} {got:<5} (without it: {clean})");
        if got != want {
            wrong.push(format!(
                "{case} against {fault}: {got}, expected {want}; observed: {observed}"
            ));
        }
        // INFO: a MAY case recording the relay's choice (it refuses the hybrid, PEER, forward_to).
        if clean != "PASS" && clean != "INFO" {
            wrong.push(format!(
                "{case} without a fault: {clean}, expected PASS (or INFO); observed: {clean_observed}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
