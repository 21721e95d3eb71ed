//! The relay and the client over TLS and mutual TLS (rustls), with certificates made at test
//! time: links route as over h2c, and each way of getting TLS wrong gets an error that says
//! which (an untrusted node certificate, a missing or foreign client certificate, a plaintext
//! client on a TLS port, a TLS client on a plaintext port, an unusable certificate file).
//!
//! The real SDK over TLS is in `interop_tls.rs`; the runner over TLS in the conformance crate.

mod support;

use std::path::Path;
use std::time::Duration;

use slim_proto::names::SlimName;
use slim_proto::tls::{ClientTls, ServerTls};
use slim_reference::client::link::{self, LinkIoError, LinkOptions};
use slim_reference::config::ServerConfig;
use slim_reference::server::{spawn, RelayHandle, ServeError};
use support::{blob_of, publish, RawLink};
use tonic::Code;

#[path = "support/certs.rs"]
mod certs;

fn scratch() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

async fn tls_relay(pki: &certs::Pki, mutual: bool) -> RelayHandle {
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        tls: Some(ServerTls {
            cert: pki.node_cert.clone(),
            key: pki.node_key.clone(),
            client_ca: mutual.then(|| pki.ca.clone()),
        }),
        ..ServerConfig::default()
    };
    spawn(cfg).await.expect("TLS relay starts")
}

fn trusting(pki: &certs::Pki) -> ClientTls {
    ClientTls {
        ca: Some(pki.ca.clone()),
        ..ClientTls::default()
    }
}

fn with_client_cert(pki: &certs::Pki) -> ClientTls {
    ClientTls {
        ca: Some(pki.ca.clone()),
        cert: Some(pki.client_cert.clone()),
        key: Some(pki.client_key.clone()),
        insecure: false,
    }
}

/// A subscriber and a publisher over `tls`, and one Publish between them.
async fn routes_over(url: &str, tls: &ClientTls, tag: &str) {
    let name: SlimName = format!("o/n/{tag}/1").parse().expect("name");
    let mut sub = RawLink::negotiate(
        RawLink::try_open_tls(url, Some(tls), None)
            .await
            .expect("subscriber connects over TLS"),
    )
    .await;
    assert!(sub.subscribe(&name, 1).await.success);
    let publisher = RawLink::negotiate(
        RawLink::try_open_tls(url, Some(tls), None)
            .await
            .expect("publisher connects over TLS"),
    )
    .await;
    publisher
        .send(publish(&"o/n/p".parse().expect("n"), &name, 1, b"over tls"))
        .await;
    let got = sub.recv().await.expect("delivery over TLS");
    assert_eq!(blob_of(&got), Some(&b"over tls"[..]));
}

fn refused(result: Result<RawLink, tonic::Status>) -> tonic::Status {
    match result {
        Ok(_) => panic!("the connection must be refused"),
        Err(s) => s,
    }
}

#[tokio::test]
async fn links_route_over_tls_and_an_untrusted_node_is_named() {
    let pki = certs::make(scratch());
    let relay = tls_relay(&pki, false).await;
    let url = relay.url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    routes_over(&url, &trusting(&pki), "tls").await;
    // --insecure skips the chain check (and still completes the handshake).
    let insecure = ClientTls {
        insecure: true,
        ..ClientTls::default()
    };
    routes_over(&url, &insecure, "insecure").await;

    // Wrong CA: the client says the node's certificate is not from a CA it trusts, and how to fix.
    let wrong = ClientTls {
        ca: Some(pki.other_ca.clone()),
        ..ClientTls::default()
    };
    let s = refused(RawLink::try_open_tls(&url, Some(&wrong), None).await);
    assert!(s.message().contains("not signed by a CA we trust"), "{s:?}");
    assert!(s.message().contains("--ca FILE"), "{s:?}");
    // Default roots (no --ca) do not know a private CA either.
    let s = refused(RawLink::try_open_tls(&url, Some(&ClientTls::default()), None).await);
    assert!(s.message().contains("UnknownIssuer"), "{s:?}");
    // A name the certificate does not list.
    let by_name = url.replace("127.0.0.1", "127.0.0.2");
    let s = refused(RawLink::try_open_tls(&by_name, Some(&trusting(&pki)), None).await);
    assert!(
        s.message().contains("not valid for the host name") || s.message().contains("refused"),
        "{s:?}"
    );

    // A plaintext client on the TLS port is told to use TLS (not an unexplained reset).
    let plain = url.replace("https://", "http://");
    let s = refused(RawLink::try_open(&plain, None).await);
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    assert!(s.message().contains("this port requires TLS"), "{s:?}");
    assert!(
        relay
            .listener_stats()
            .plaintext_on_tls
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    relay.shutdown().await.expect("relay stops");
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_from_the_configured_ca() {
    let pki = certs::make(scratch());
    let relay = tls_relay(&pki, true).await;
    let url = relay.url();
    routes_over(&url, &with_client_cert(&pki), "mtls").await;

    let s = refused(RawLink::try_open_tls(&url, Some(&trusting(&pki)), None).await);
    assert!(
        s.message()
            .contains("requires a client certificate (mutual TLS)"),
        "no certificate: {s:?}"
    );
    assert!(s.message().contains("--cert FILE --key FILE"), "{s:?}");
    let stranger = ClientTls {
        ca: Some(pki.ca.clone()),
        cert: Some(pki.other_client_cert.clone()),
        key: Some(pki.other_client_key.clone()),
        insecure: false,
    };
    // A certificate from another CA: TLS 1.3 refuses it after the client's side of the
    // handshake, so HTTP/2 may report a cancelled call rather than the alert; refused either way.
    let s = refused(RawLink::try_open_tls(&url, Some(&stranger), None).await);
    assert_ne!(s.code(), Code::Ok, "foreign certificate: {s:?}");
    // The node counted both failed handshakes, and still serves good clients.
    let failures = relay
        .listener_stats()
        .handshake_failures
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(failures >= 2, "{failures}");
    routes_over(&url, &with_client_cert(&pki), "mtls-after").await;
    // The client link reports the refusal as a fatal TLS error that says what to give.
    let mut opts = LinkOptions::new(&url, Duration::from_secs(5), [4; 32]);
    opts.tls = Some(trusting(&pki));
    let Err(err) = link::connect(opts).await else {
        panic!("no client certificate: refused");
    };
    assert!(
        matches!(&err, LinkIoError::Tls { reason, .. } if reason.contains("requires a client certificate")),
        "{err}"
    );
    assert!(err.is_fatal(), "{err}");
    let mut opts = LinkOptions::new(&url, Duration::from_secs(5), [5; 32]);
    opts.tls = Some(with_client_cert(&pki));
    let (ok, _events) = link::connect(opts)
        .await
        .expect("with a client certificate");
    drop(ok);
    relay.shutdown().await.expect("relay stops");
}

#[tokio::test]
async fn the_client_link_explains_tls_mistakes_and_does_not_retry_them() {
    let pki = certs::make(scratch());
    let relay = tls_relay(&pki, false).await;
    let url = relay.url();
    let opts = |url: &str, tls: Option<ClientTls>| {
        let mut o = LinkOptions::new(url, Duration::from_secs(5), [3; 32]);
        o.tls = tls;
        o
    };
    let (ok, _events) = link::connect(opts(&url, Some(trusting(&pki))))
        .await
        .expect("client link over TLS");
    assert_eq!(ok.peer_node_id(), "slim-relay");

    let started = std::time::Instant::now();
    let Err(err) = link::connect(opts(&url, None)).await else {
        panic!("no CA: refused");
    };
    assert!(
        matches!(&err, LinkIoError::Tls { reason, .. } if reason.contains("--ca FILE")),
        "{err}"
    );
    assert!(err.is_fatal(), "retrying cannot fix a certificate: {err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a fatal TLS error is reported at once, not after the bound"
    );

    // A TLS client on a plaintext port is told the port speaks h2c.
    let h2c = spawn(ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..ServerConfig::default()
    })
    .await
    .expect("h2c relay");
    let tls_to_h2c = h2c.url().replace("http://", "https://");
    let Err(err) = link::connect(opts(&tls_to_h2c, Some(trusting(&pki)))).await else {
        panic!("TLS to an h2c port fails");
    };
    let text = err.to_string();
    assert!(
        text.contains("plaintext h2c") && text.contains("http://"),
        "{text}"
    );

    // Unusable files are named.
    let bad = ClientTls {
        ca: Some("/nonexistent/ca.pem".into()),
        ..ClientTls::default()
    };
    let Err(err) = link::connect(opts(&url, Some(bad))).await else {
        panic!("missing CA file");
    };
    assert!(err.to_string().contains("ca /nonexistent/ca.pem"), "{err}");
    drop(ok);
    h2c.shutdown().await.expect("stops");
    relay.shutdown().await.expect("relay stops");
}

#[tokio::test]
async fn a_relay_with_unusable_tls_files_does_not_start_and_says_why() {
    let pki = certs::make(scratch());
    let start = |cert: &Path, key: &Path| {
        spawn(ServerConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            tls: Some(ServerTls {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                client_ca: None,
            }),
            ..ServerConfig::default()
        })
    };
    let err = start(Path::new("/nonexistent/node.pem"), &pki.node_key)
        .await
        .err()
        .expect("missing cert");
    assert!(matches!(err, ServeError::Tls(_)), "{err}");
    assert!(err.to_string().contains("/nonexistent/node.pem"), "{err}");
    // A key that is not the certificate's.
    let err = start(&pki.node_cert, &pki.client_key)
        .await
        .err()
        .expect("mismatched key");
    assert!(
        err.to_string().contains("do not make a usable identity"),
        "{err}"
    );
    // A key file given as the certificate.
    let err = start(&pki.node_key, &pki.node_key)
        .await
        .err()
        .expect("no certificate in the file");
    assert!(
        err.to_string().contains("no PEM certificate found"),
        "{err}"
    );
}
