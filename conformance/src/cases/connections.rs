//! Connections: TLS (ALPN h2, client certificates, a plaintext client on a TLS port) and the
//! limits a connection runs into (streams per connection, idle connections, connections per
//! address). The checks of the connection itself speak below HTTP/2: the runner writes the
//! client preface and reads the node's SETTINGS on a socket (TLS when the target is `https://`).

use std::time::Duration;

use slim_proto::names::SlimName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use super::{expect_payload, send_text, PROMPT};
use crate::case::{ensure, Case, Ctx, Failure, Need};
use crate::client::{status_text, Link, Target};

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "connection/streams-limit-announced",
            "the node's SETTINGS announce a finite SETTINGS_MAX_CONCURRENT_STREAMS",
            &["SLIM-CONN-005"],
            streams_limit,
        ),
        Case::new(
            "connection/tls-alpn-h2",
            "the TLS handshake selects ALPN h2 and carries a link",
            &["SLIM-CONN-001", "SLIM-TRANS-001"],
            alpn_h2,
        )
        .needs(Need::Tls),
        Case::new(
            "connection/mtls-requires-certificate",
            "a node requiring client certificates completes no handshake for a client without one",
            &["SLIM-CONN-001"],
            mtls_requires_certificate,
        )
        .needs(Need::MutualTls),
        Case::new(
            "connection/plaintext-on-tls-port",
            "a plaintext HTTP/2 client on the TLS port gets FAILED_PRECONDITION saying TLS is required",
            &["SLIM-CONN-002"],
            plaintext_on_tls,
        )
        .needs(Need::Tls),
        Case::new(
            "connection/idle-closed",
            "a connection with no stream is closed after the idle timeout; one with a link is not",
            &["SLIM-CONN-004"],
            idle_closed,
        )
        .needs(Need::IdleTimeout)
        .timeout(Duration::from_secs(120)),
    ]
}

/// The case that fills the node's per-address connection budget: run after every other case.
/// The connections it opened and the ones the node refused take a while to go (a refused one is
/// kept for the node's grace period, a delayed link closes a delay later), so a case right after
/// it could be refused a link and reach another verdict on a slower link or machine.
pub(super) fn exhausting_cases() -> Vec<Case> {
    vec![Case::new(
        "connection/per-peer-limit",
        "a connection over the per-address limit is refused with RESOURCE_EXHAUSTED naming it",
        &["SLIM-CONN-003"],
        per_peer_limit,
    )
    .needs(Need::PeerLimit)
    .timeout(Duration::from_secs(120))]
}

/// The HTTP/2 client connection preface and an empty SETTINGS frame.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
/// HTTP/2 frame type SETTINGS.
const SETTINGS: u8 = 0x4;
/// SETTINGS_MAX_CONCURRENT_STREAMS.
const MAX_CONCURRENT_STREAMS: u16 = 0x3;

/// A socket to the target below HTTP/2 (TLS for an `https://` target).
async fn raw(target: &Target) -> Result<slim_proto::tls::MaybeTls, Failure> {
    let connector = target
        .tls
        .clone()
        .unwrap_or_else(slim_proto::tls::Connector::plain);
    connector
        .connect_raw(&target.url)
        .await
        .map_err(|e| Failure::Harness(format!("cannot connect to {}: {e}", target.url)))
}

/// The settings of the node's first SETTINGS frame, after the preface was sent.
async fn server_settings(io: &mut slim_proto::tls::MaybeTls) -> Result<Vec<(u16, u32)>, Failure> {
    io.write_all(PREFACE)
        .await
        .map_err(|e| Failure::Harness(format!("cannot write the HTTP/2 preface: {e}")))?;
    let mut header = [0u8; 9];
    match tokio::time::timeout(PROMPT, io.read_exact(&mut header)).await {
        Err(_) => {
            return Err(Failure::violation(
                "the node sends its SETTINGS frame after the client preface",
                format!("nothing within {PROMPT:?}"),
            ))
        }
        Ok(Err(e)) => {
            return Err(Failure::violation(
                "the node sends its SETTINGS frame after the client preface",
                format!("the connection ended: {e}"),
            ))
        }
        Ok(Ok(_)) => {}
    }
    if header[3] != SETTINGS {
        return Err(Failure::violation(
            "the node's first frame is SETTINGS (RFC 9113, section 3.4)",
            format!("frame type {:#04x}", header[3]),
        ));
    }
    let len = usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
    if len > 16_384 || len % 6 != 0 {
        return Err(Failure::violation(
            "a SETTINGS payload of whole 6-byte entries",
            format!("{len} bytes"),
        ));
    }
    let mut body = vec![0u8; len];
    tokio::time::timeout(PROMPT, io.read_exact(&mut body))
        .await
        .map_err(|_| Failure::violation("the whole SETTINGS frame", "it stopped short"))?
        .map_err(|e| Failure::violation("the whole SETTINGS frame", e.to_string()))?;
    Ok(body
        .chunks(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect())
}

async fn streams_limit(cx: Ctx) -> Result<(), Failure> {
    let mut io = raw(&cx.target).await?;
    let settings = server_settings(&mut io).await?;
    let shown = settings
        .iter()
        .map(|(id, v)| format!("{id:#x}={v}"))
        .collect::<Vec<_>>()
        .join(", ");
    match settings
        .iter()
        .rev()
        .find(|(id, _)| *id == MAX_CONCURRENT_STREAMS)
    {
        Some((_, n)) => {
            cx.note(format!("SETTINGS_MAX_CONCURRENT_STREAMS = {n}"));
            Ok(())
        }
        None => Err(Failure::violation(
            "SETTINGS carries SETTINGS_MAX_CONCURRENT_STREAMS (absent means unlimited)",
            format!("settings: [{shown}]"),
        )),
    }
}

async fn alpn_h2(cx: Ctx) -> Result<(), Failure> {
    let tls = cx.connections().tls.clone().ok_or_else(no_tls)?;
    let io = tls
        .connector
        .connect_raw(&tls.url)
        .await
        .map_err(|e| Failure::violation("a TLS handshake with the node", e.to_string()))?;
    let alpn = match &io {
        slim_proto::tls::MaybeTls::Tls(s) => s.get_ref().1.alpn_protocol().map(<[u8]>::to_vec),
        slim_proto::tls::MaybeTls::Plain(_) => None,
    };
    ensure(
        alpn.as_deref() == Some(slim_proto::tls::ALPN_H2),
        "the node selects ALPN h2 (the client offered only h2)",
        format!(
            "selected {}",
            alpn.map_or("no protocol".to_string(), |a| String::from_utf8_lossy(&a)
                .into_owned())
        ),
    )?;
    drop(io);
    // And a link runs over it.
    let target = tls_target(&cx, &tls.url, tls.connector.clone());
    let mut link = Link::open(&target, "T", &cx.log).await?;
    link.negotiate(|_| {}).await.map(|_| ())
}

async fn mtls_requires_certificate(cx: Ctx) -> Result<(), Failure> {
    let tls = cx.connections().tls.clone().ok_or_else(no_tls)?;
    let anonymous = tls
        .anonymous
        .clone()
        .ok_or_else(|| Failure::Harness("mutual TLS without an anonymous connector".into()))?;
    // With our certificate the link works: the refusal below is about the certificate.
    let with = tls_target(&cx, &tls.url, tls.connector.clone());
    Link::connect(&with, "T", &cx.log).await?;
    let without = tls_target(&cx, &tls.url, anonymous);
    match Link::connect(&without, "anon", &cx.log).await {
        Ok(_) => Err(Failure::violation(
            "the node completes no handshake for a client without a certificate",
            "a client without a certificate negotiated a link",
        )),
        Err(Failure::Unreachable(why)) => {
            cx.note(format!("refused: {why}"));
            Ok(())
        }
        Err(Failure::Rejected(status)) => Err(Failure::violation(
            "the handshake is refused (no certificate), before any call",
            format!("the call got {}", status_text(&status)),
        )),
        Err(other) => Err(other),
    }
}

async fn plaintext_on_tls(cx: Ctx) -> Result<(), Failure> {
    let tls = cx.connections().tls.clone().ok_or_else(no_tls)?;
    let plain_url = tls.url.replacen("https://", "http://", 1);
    let target = Target {
        url: plain_url.clone(),
        tls: None,
        ..cx.target.clone()
    };
    match Link::open(&target, "plain", &cx.log).await {
        Ok(_) => Err(Failure::violation(
            "a plaintext client on the TLS port is refused",
            "the node opened a link in plaintext",
        )),
        Err(Failure::Rejected(status)) => {
            let text = status.message().to_ascii_lowercase();
            ensure(
                status.code() == Code::FailedPrecondition && text.contains("tls"),
                "FAILED_PRECONDITION with a message that says the port requires TLS",
                status_text(&status),
            )
        }
        Err(Failure::Unreachable(why)) => Err(Failure::violation(
            "FAILED_PRECONDITION with a message that says the port requires TLS",
            format!("no status: {why}"),
        )),
        Err(other) => Err(other),
    }
}

async fn idle_closed(cx: Ctx) -> Result<(), Failure> {
    let declared = cx
        .connections()
        .idle_timeout
        .ok_or_else(|| Failure::Harness("no declared idle timeout".into()))?;
    // A link with a stream first, then a connection that never opens one.
    let name: SlimName = cx.name("busy", Some(1));
    let a = cx.link("A").await?;
    let mut b = cx.link("B").await?;
    b.subscribe(&name, 1).await?;
    let mut idle = raw(&cx.target).await?;
    server_settings(&mut idle).await?;
    let opened = tokio::time::Instant::now();
    let bound = declared + Duration::from_secs(3) + 2 * cx.quiet;
    let mut buf = vec![0u8; 4096];
    let closed = tokio::time::timeout(bound, async {
        loop {
            match idle.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    if closed.is_err() {
        return Err(Failure::violation(
            format!("a connection without a stream is closed within the declared idle timeout ({declared:?}) plus 3 s"),
            format!("still open after {bound:?}"),
        ));
    }
    cx.note(format!(
        "closed {} ms after its SETTINGS (declared {} ms)",
        opened.elapsed().as_millis(),
        declared.as_millis()
    ));
    // The links, older than the idle connection, are still served.
    let src = cx.name("src", Some(2));
    let routed = match send_text(&a, &src, &name, "after-idle").await {
        Ok(()) => expect_payload(&mut b, "after-idle").await.map(|_| ()),
        Err(e) => Err(e),
    };
    routed.map_err(|e| {
        let (_, observed) = e.texts();
        Failure::violation(
            "the links, which hold streams, are not closed by the idle timeout and still route",
            observed,
        )
    })
}

async fn per_peer_limit(cx: Ctx) -> Result<(), Failure> {
    let limit = cx
        .connections()
        .max_connections_per_peer
        .ok_or_else(|| Failure::Harness("no declared per-address limit".into()))?;
    let mut held = Vec::new();
    let refusal = loop {
        if held.len() > limit {
            return Err(Failure::violation(
                format!("at most {limit} connections from one address (declared)"),
                format!("{} connections opened without a refusal", held.len()),
            ));
        }
        match Link::open(&cx.target, &format!("C{}", held.len()), &cx.log).await {
            Ok(link) => held.push(link),
            Err(Failure::Rejected(status)) => break status,
            Err(Failure::Unreachable(why)) => {
                return Err(Failure::violation(
                    "a connection over the limit gets RESOURCE_EXHAUSTED naming the limit",
                    format!("after {} connections: no status ({why})", held.len()),
                ))
            }
            Err(other) => return Err(other),
        }
    };
    cx.note(format!(
        "refused after {} connections of this case (declared limit {limit}; connections of earlier cases may still count)",
        held.len()
    ));
    let text = refusal.message().to_ascii_lowercase();
    ensure(
        refusal.code() == Code::ResourceExhausted && text.contains("limit"),
        "RESOURCE_EXHAUSTED with a message that names the limit",
        status_text(&refusal),
    )?;
    ensure(
        held.len() * 2 >= limit,
        format!("the limit is the declared {limit}, not far below it"),
        format!("refused after only {} connections", held.len()),
    )?;
    // Closing one gives its place back (bounded wait: the node notices the close).
    held.pop();
    let deadline = tokio::time::Instant::now() + PROMPT;
    loop {
        match Link::open(&cx.target, "again", &cx.log).await {
            Ok(_) => return Ok(()),
            Err(Failure::Rejected(s)) if tokio::time::Instant::now() < deadline => {
                let _ = s;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(Failure::Rejected(s)) => {
                return Err(Failure::violation(
                    "a closed connection's place is given back",
                    format!(
                        "still refused {PROMPT:?} after one was closed: {}",
                        status_text(&s)
                    ),
                ))
            }
            Err(other) => return Err(other),
        }
    }
}

fn no_tls() -> Failure {
    Failure::Harness("no TLS target".into())
}

/// The run's target, at `url` over `connector`.
fn tls_target(cx: &Ctx, url: &str, connector: slim_proto::tls::Connector) -> Target {
    Target {
        url: url.to_string(),
        tls: Some(connector),
        ..cx.target.clone()
    }
}
