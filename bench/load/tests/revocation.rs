//! Smoke tests of the revocation benchmarks with tiny counts, against the reference relay the
//! tool embeds (127.0.0.1, ephemeral port, stopped by the tool).

mod support;
use support::{cli, read_json, tmp};

/// `revocation` holds its live links, revokes each one by rewriting the list, and reports every
/// revoked stream ending with UNAUTHENTICATED, with percentiles a poll of 50 ms can produce.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_ends_each_revoked_stream_and_keeps_the_others() {
    for by in ["sub", "jti"] {
        let path = tmp(&format!("revocation-{by}.json"));
        let p = path.to_string_lossy().to_string();
        let args = [
            "revocation",
            "--streams",
            "5",
            "--revocations",
            "4",
            "--by",
            by,
            "--json",
            &p,
        ];
        let (code, out) = cli(&args).await;
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("OK: every revoked stream ended"), "{out}");
        let doc = read_json(&path);
        let _ = std::fs::remove_file(&path);
        assert_eq!(doc["schema"], "slim-bench/revocation/v1");
        assert_eq!(doc["target"], "embedded");
        assert_eq!(doc["by"], by);
        assert_eq!(doc["streams"], 5);
        assert_eq!(doc["revocations"], 4);
        assert_eq!(doc["unauthenticated"], 4);
        assert_eq!(doc["collateral"], 0);
        assert_eq!(doc["wrong_or_missing"], 0);
        assert_eq!(doc["links_opened"], 9, "one replacement per revocation");
        assert_eq!(doc["min_live_before_revocation"], 5);
        assert_eq!(doc["poll_ms"], 50.0);
        let samples = doc["samples"].as_array().expect("samples");
        assert_eq!(samples.len(), 4);
        assert!(
            samples.iter().all(|s| s["code"] == "Unauthenticated"),
            "{doc}"
        );
        let l = &doc["latency_ms"];
        assert_eq!(l["count"], 4);
        let v = |k: &str| l[k].as_f64().unwrap_or(f64::NAN);
        assert!(
            v("min") <= v("p50") && v("p50") <= v("p99") && v("p99") <= v("max"),
            "{l}"
        );
        // One poll period plus ending the stream; generous for a loaded debug build.
        assert!(v("max") < 2000.0, "{l}");
    }
}

/// `--target` needs the list file and the key; a bad key file is a usage error (exit 2).
#[tokio::test]
async fn revocation_against_another_node_needs_its_list_and_key() {
    let (code, _) = cli(&["revocation", "--target", "http://127.0.0.1:1"]).await;
    assert_eq!(code, 2);
    let key = tmp("not-a-key.pem");
    std::fs::write(&key, "not a key").expect("write");
    let list = tmp("list.yaml");
    let (code, _) = cli(&[
        "revocation",
        "--target",
        "http://127.0.0.1:1",
        "--revocation-file",
        &list.to_string_lossy(),
        "--signing-key",
        &key.to_string_lossy(),
    ])
    .await;
    let _ = std::fs::remove_file(&key);
    assert_eq!(code, 2);
    assert!(!list.exists(), "nothing written before the key is read");
}

/// `--target` drives a node the tool did not start: here a reference relay this test configures
/// with a key file and a list file, as an operator would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_drives_a_node_it_did_not_start() {
    use p256::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
    let key = p256::ecdsa::SigningKey::from_slice(&[7; 32]).expect("key");
    let (private, public, list) = (tmp("idp.pem"), tmp("idp.pub.pem"), tmp("revoked.yaml"));
    std::fs::write(
        &private,
        key.to_pkcs8_pem(LineEnding::LF).expect("pem").as_bytes(),
    )
    .expect("write");
    let pem = key.verifying_key().to_public_key_pem(LineEnding::LF);
    std::fs::write(&public, pem.expect("pem")).expect("write");
    std::fs::write(&list, "revoked: []\n").expect("write");
    let relay = slim_reference::server::spawn(slim_reference::config::ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        auth: Some(slim_reference::auth::AuthConfig::Jwt {
            keys: vec![public.clone()],
            jwks: None,
            hs256_secret_file: None,
            issuer: Some("idp".into()),
            audience: None,
        }),
        revocation_file: Some(list.clone()),
        ..Default::default()
    })
    .await
    .expect("relay starts");
    let (code, out) = cli(&[
        "revocation",
        "--target",
        &relay.url(),
        "--revocation-file",
        &list.to_string_lossy(),
        "--signing-key",
        &private.to_string_lossy(),
        "--issuer",
        "idp",
        "--streams",
        "3",
        "--revocations",
        "2",
    ])
    .await;
    let revoked = relay.revoked_links();
    relay.shutdown().await.expect("relay stops");
    for f in [&private, &public, &list] {
        let _ = std::fs::remove_file(f);
    }
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("external node"), "{out}");
    assert_eq!(revoked, 2);
}

/// Runs `revocation-epoch` on a group of three (the smallest with a member that must agree) for
/// two rounds through the embedded driver and relay; returns the result document.
async fn epoch_run(via: &str, signal: &str) -> serde_json::Value {
    let path = tmp(&format!("epoch-{via}-{signal}.json"));
    let p = path.to_string_lossy().to_string();
    let args = [
        "revocation-epoch",
        "--members",
        "3",
        "--rounds",
        "2",
        "--via",
        via,
        "--signal",
        signal,
        "--timeout",
        "15",
        "--json",
        &p,
    ];
    let (code, out) = cli(&args).await;
    assert_eq!(code, 0, "{via} {signal}: {out}");
    let doc = read_json(&path);
    let _ = std::fs::remove_file(&path);
    assert_eq!(doc["schema"], "slim-bench/revocation-epoch/v1");
    assert_eq!(doc["members"], 3);
    assert_eq!(doc["rounds"], 2);
    assert_eq!(doc["via"], via);
    assert_eq!(doc["signal"], signal);
    assert_eq!(doc["epoch_jumps"], 0, "one commit per revocation: {doc}");
    for r in doc["samples"].as_array().expect("samples") {
        assert_eq!(
            r["epoch_after"].as_u64(),
            r["epoch_before"].as_u64().map(|e| e + 1)
        );
        assert!(r["ms"].as_f64() >= r["moderator_ms"].as_f64(), "{r}");
    }
    let l = &doc["latency_ms"];
    assert_eq!(l["count"], 2);
    assert!(l["p50"].as_f64() <= l["max"].as_f64(), "{l}");
    doc
}

/// The revocation itself (RevokeIdentity with the member's subject), seen by events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_epoch_moves_every_remaining_member_to_the_next_epoch() {
    epoch_run("revoke", "event").await;
}

/// The baseline (a plain Remove), seen by polling StateAuth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_epoch_baseline_by_removal_with_polling() {
    epoch_run("remove", "poll").await;
}
