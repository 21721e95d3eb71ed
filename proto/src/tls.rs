//! TLS for SLIM links: the rustls configurations of a node and of a client, a tonic connector
//! that speaks h2c or TLS by the URL's scheme, and explanations of handshake failures that say
//! which side is wrong and how to fix it.
//!
//! SLIM runs gRPC over HTTP/2. Plaintext h2c (`http://`) stays the loopback default; a node
//! outside one host runs TLS (`https://`), often mutual (SLIM-CONN-001/002). Everything here
//! uses rustls with the ring provider, given explicitly, so no process-wide default provider is
//! needed and no system library beyond a C compiler. Both sides offer ALPN `h2` only.
//!
//! A client verifies the node's certificate against `--ca FILE` when given, else against
//! Mozilla's roots (`webpki-roots`); `--insecure` turns verification of the certificate chain
//! and name off (signatures of the handshake are still checked), for tests only.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{AlertDescription, CertificateError, DigitallySignedStruct, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// ALPN protocol id of HTTP/2 over TLS.
pub const ALPN_H2: &[u8] = b"h2";

/// The crypto provider of every TLS configuration here (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// Why a TLS configuration could not be built. Each names the file and what to give instead.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{what} {path}: {source}")]
    Read {
        /// What the file is for (`--tls-cert`, `--ca`, …).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A certificate file held no PEM certificate.
    #[error("{what} {path}: no PEM certificate found (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate {
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// A key file held no PEM private key.
    #[error("{what} {path}: no PEM private key found (expected PKCS#8, SEC1 or PKCS#1: -----BEGIN PRIVATE KEY-----)")]
    NoKey {
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// A CA file's certificate was not a usable trust anchor.
    #[error("{what} {path}: not a usable CA certificate: {reason}")]
    BadCa {
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What rustls said.
        reason: String,
    },
    /// The certificate and key do not go together, or rustls refused the configuration.
    #[error("{0}")]
    Config(String),
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Every PEM certificate in `path`, in order (a chain: leaf first).
pub fn read_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The first PEM private key in `path`.
pub fn read_key(what: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(what, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsError::NoKey {
        what,
        path: path.to_path_buf(),
    })
}

/// The certificates of `path` as a root store.
pub fn read_roots(what: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(what, path)? {
        roots.add(cert).map_err(|e| TlsError::BadCa {
            what,
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// A node's TLS settings: its certificate chain and key, and with `client_ca` mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// PEM certificate chain, leaf first (`--tls-cert`).
    pub cert: PathBuf,
    /// PEM private key of the leaf (`--tls-key`).
    pub key: PathBuf,
    /// PEM CA certificates that client certificates must chain to (`--tls-client-ca`): set,
    /// every client must present one (mTLS).
    pub client_ca: Option<PathBuf>,
}

impl ServerTls {
    /// Builds the acceptor, failing with the file and defect when one is wrong.
    pub fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        Ok(TlsAcceptor::from(Arc::new(self.server_config()?)))
    }

    /// The rustls configuration [`ServerTls::acceptor`] wraps (ALPN `h2`; client certificates
    /// required when `client_ca` is set).
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let certs = read_certs("tls cert", &self.cert)?;
        let key = read_key("tls key", &self.key)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let roots = read_roots("tls client CA", ca)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|e| TlsError::BadCa {
                            what: "tls client CA",
                            path: ca.clone(),
                            reason: e.to_string(),
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(certs, key).map_err(|e| {
            TlsError::Config(format!(
                "tls cert {} and tls key {} do not make a usable identity: {e}",
                self.cert.display(),
                self.key.display()
            ))
        })?;
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(config)
    }
}

/// A client's TLS settings for `https://` targets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM CA certificates the node's certificate must chain to (`--ca`); `None`: Mozilla's
    /// roots.
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain for mTLS (`--cert`), with `key`.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert` (`--key`).
    pub key: Option<PathBuf>,
    /// Skip verification of the node's certificate chain and name (`--insecure`; tests only).
    pub insecure: bool,
}

impl ClientTls {
    /// Builds the connector, failing with the file and defect when one is wrong.
    pub fn connector(&self) -> Result<Connector, TlsError> {
        Ok(Connector {
            tls: Some(ClientSide {
                config: Arc::new(self.client_config()?),
                has_cert: self.cert.is_some(),
            }),
        })
    }

    /// The rustls configuration of [`ClientTls::connector`] (ALPN `h2`).
    pub fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoChainCheck(
                    provider().signature_verification_algorithms,
                )))
        } else {
            let roots = match &self.ca {
                Some(ca) => read_roots("ca", ca)?,
                None => RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                },
            };
            builder.with_root_certificates(roots)
        };
        let mut config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(read_certs("cert", cert)?, read_key("key", key)?)
                .map_err(|e| {
                    TlsError::Config(format!(
                        "cert {} and key {} do not make a usable client identity: {e}",
                        cert.display(),
                        key.display()
                    ))
                })?,
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => {
                return Err(TlsError::Config(
                    "--cert needs --key (the client certificate's private key)".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(TlsError::Config(
                    "--key needs --cert (the client certificate chain)".into(),
                ))
            }
        };
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(config)
    }
}

/// Records whether the node asked for a client certificate (a client without one).
#[derive(Debug, Default)]
struct CertRequestSeen(std::sync::atomic::AtomicBool);

impl rustls::client::ResolvesClientCert for CertRequestSeen {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        None
    }

    fn has_certs(&self) -> bool {
        false
    }
}

/// `--insecure`: accepts any certificate chain and name, but still checks the handshake's
/// signatures, so the peer holds the key of the certificate it sent.
#[derive(Debug)]
struct NoChainCheck(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoChainCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// A byte stream that is plain TCP or TLS over TCP (either side).
#[derive(Debug)]
pub enum MaybeTls {
    /// h2c.
    Plain(TcpStream),
    /// TLS; boxed, the session state is large.
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl MaybeTls {
    /// The TCP stream under it.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            MaybeTls::Plain(s) => s,
            MaybeTls::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => {
                let client = matches!(s.as_ref(), tokio_rustls::TlsStream::Client(_));
                match Pin::new(s.as_mut()).poll_read(cx, buf) {
                    // In TLS 1.3 the node checks our certificate after our side of the
                    // handshake is done, so its refusal arrives as an alert on the first read:
                    // explain it as the handshake failure it is.
                    Poll::Ready(Err(e)) if client && rustls_error(&e).is_some() => {
                        let node = s
                            .get_ref()
                            .0
                            .peer_addr()
                            .map_or_else(|_| "the node".to_string(), |a| a.to_string());
                        Poll::Ready(Err(io::Error::new(
                            e.kind(),
                            HandshakeError {
                                explanation: explain_client_handshake(&e, &node),
                            },
                        )))
                    }
                    other => other,
                }
            }
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// A TLS handshake that failed, explained (see [`explain_client_handshake`]); the error a
/// connector returns, so the text reaches the caller's error chain.
#[derive(Debug)]
pub struct HandshakeError {
    /// What went wrong and what to do.
    pub explanation: String,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.explanation)
    }
}

impl std::error::Error for HandshakeError {}

/// The explanation of a failed TLS handshake in `err`'s cause chain, if that is what failed:
/// a [`HandshakeError`] (also inside an I/O error, whose `source` skips it), or an I/O error
/// whose text is one (HTTP/2 passes an I/O error on as its kind and text only).
pub fn handshake_explanation(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(h) = e.downcast_ref::<HandshakeError>() {
            return Some(h.explanation.clone());
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if let Some(h) = io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<HandshakeError>())
            {
                return Some(h.explanation.clone());
            }
            let text = io.to_string();
            if text.starts_with(EXPLANATION_PREFIX) {
                return Some(text);
            }
        }
        cur = e.source();
    }
    None
}

/// The rustls error inside an I/O error from tokio-rustls, if there is one.
pub fn rustls_error(err: &io::Error) -> Option<&rustls::Error> {
    err.get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
}

/// How every explanation of [`explain_client_handshake`] starts; HTTP/2 keeps only the text of
/// an I/O error it passes on, so this is how the explanation is found again in an error chain.
pub const EXPLANATION_PREFIX: &str = "TLS: ";

/// Says, from the client's side, why a handshake with `node` failed and what to change.
pub fn explain_client_handshake(err: &io::Error, node: &str) -> String {
    let Some(tls) = rustls_error(err) else {
        return match err.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => format!(
                "TLS: {node} closed the connection during the handshake: it may speak plaintext h2c (use http://), or it refused us ({err})"
            ),
            _ => format!("TLS: the handshake with {node} failed: {err}"),
        };
    };
    match tls {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "TLS: {node}'s certificate is not signed by a CA we trust (UnknownIssuer): give the CA that issued it with --ca FILE (or --insecure to skip the check, for tests only)"
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "TLS: {node}'s certificate is not valid for the host name in the URL (NotValidForName): connect with a name the certificate lists"
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => format!("TLS: {node}'s certificate has expired"),
        rustls::Error::InvalidCertificate(other) => {
            format!("TLS: {node}'s certificate was refused: {other:?}")
        }
        rustls::Error::AlertReceived(alert) => match alert {
            AlertDescription::CertificateRequired
            | AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::DecryptError
            | AlertDescription::AccessDenied => format!(
                "TLS: {node} refused our client certificate (alert {alert:?}): it requires mutual TLS with a certificate signed by its client CA; give it with --cert FILE --key FILE"
            ),
            AlertDescription::NoApplicationProtocol => format!(
                "TLS: {node} does not offer HTTP/2 (ALPN h2) on this port (alert NoApplicationProtocol)"
            ),
            other => format!("TLS: {node} ended the handshake with alert {other:?}"),
        },
        rustls::Error::InvalidMessage(_)
        | rustls::Error::InappropriateMessage { .. }
        | rustls::Error::InappropriateHandshakeMessage { .. } => format!(
            "TLS: {node} did not answer with TLS ({tls}): it speaks plaintext h2c on this port; use http://"
        ),
        other => format!("TLS: the handshake with {node} failed: {other}"),
    }
}

/// Says, from the node's side, why a client's handshake failed (for the node's log line).
pub fn explain_server_handshake(err: &io::Error) -> String {
    match rustls_error(err) {
        Some(rustls::Error::NoCertificatesPresented) => {
            "the client presented no certificate (this node requires mutual TLS)".into()
        }
        Some(rustls::Error::InvalidCertificate(e)) => {
            format!("the client's certificate was refused: {e:?} (not signed by --tls-client-ca?)")
        }
        Some(rustls::Error::AlertReceived(alert)) => {
            format!("the client ended the handshake with alert {alert:?} (does it trust this node's certificate?)")
        }
        Some(rustls::Error::NoApplicationProtocol) => {
            "the client does not offer HTTP/2 (ALPN h2)".into()
        }
        Some(other) => format!("TLS error: {other}"),
        None => format!("I/O error during the handshake: {err}"),
    }
}

/// A tonic connector for `http://` (h2c) and `https://` (TLS, from [`ClientTls::connector`])
/// node URLs: TCP with `TCP_NODELAY` (small SLIM frames must not wait for Nagle), then the
/// handshake, whose failure comes back as a [`HandshakeError`] saying what to fix.
///
/// A client without a certificate stops when the node asks for one: in TLS 1.3 the node's
/// refusal would only come after the handshake, where HTTP/2 may report it as a cancelled call
/// with no reason. So nodes with optional client authentication need a client certificate.
#[derive(Clone)]
pub struct Connector {
    tls: Option<ClientSide>,
}

/// The TLS half of a [`Connector`].
#[derive(Clone)]
struct ClientSide {
    config: Arc<rustls::ClientConfig>,
    has_cert: bool,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Connector {
    /// A connector for `http://` (h2c) URLs only: `https://` ones are refused with a message
    /// saying TLS settings are needed.
    pub fn plain() -> Self {
        Self { tls: None }
    }

    /// A byte stream to the node of `url` (h2c, or TLS with this connector's settings), below
    /// HTTP/2: for checks of the connection itself (SETTINGS, ALPN, idle handling).
    pub async fn connect_raw(&self, url: &str) -> Result<MaybeTls, ConnectError> {
        let uri: http::Uri = url.parse()?;
        let io = tower_service::Service::call(&mut self.clone(), uri).await?;
        Ok(io.into_inner())
    }
}

/// The error of a [`Connector`].
pub type ConnectError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<http::Uri> for Connector {
    type Response = TokioIo<MaybeTls>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            let https = uri.scheme_str() == Some("https");
            let host = uri
                .host()
                .ok_or_else(|| format!("{uri}: no host"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            let _ = tcp.set_nodelay(true);
            if !https {
                return Ok(TokioIo::new(MaybeTls::Plain(tcp)));
            }
            let Some(tls) = tls else {
                return Err(format!(
                    "{uri}: an https:// node needs TLS settings (--ca FILE, or --insecure)"
                )
                .into());
            };
            let name = ServerName::try_from(host.clone())
                .map_err(|e| format!("{uri}: {host:?} is not a valid TLS server name: {e}"))?;
            let node = format!("{host}:{port}");
            let seen = Arc::new(CertRequestSeen::default());
            let config = if tls.has_cert {
                tls.config
            } else {
                let mut config = (*tls.config).clone();
                config.client_auth_cert_resolver = seen.clone();
                Arc::new(config)
            };
            match TlsConnector::from(config).connect(name, tcp).await {
                Ok(_) if seen.0.load(std::sync::atomic::Ordering::Relaxed) => {
                    Err(Box::new(HandshakeError {
                        explanation: format!(
                            "{EXPLANATION_PREFIX}{node} requires a client certificate (mutual TLS) and we have none: give --cert FILE --key FILE, signed by its client CA"
                        ),
                    }) as ConnectError)
                }
                Ok(stream) => Ok(TokioIo::new(MaybeTls::Tls(Box::new(stream.into())))),
                Err(e) => Err(Box::new(HandshakeError {
                    explanation: explain_client_handshake(&e, &node),
                }) as ConnectError),
            }
        })
    }
}

/// Connects `endpoint` (whose URL is `http://` or `https://`) with a [`Connector`]: the one way
/// every client of this workspace reaches a node, so they all speak TLS alike.
pub async fn connect(
    endpoint: tonic::transport::Endpoint,
    tls: Option<&ClientTls>,
) -> Result<tonic::transport::Channel, ConnectFailure> {
    let connector = match tls {
        Some(t) => t.connector().map_err(ConnectFailure::Config)?,
        None => Connector::plain(),
    };
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| ConnectFailure::Connect(describe_chain(&e)))
}

/// Why [`connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectFailure {
    /// The TLS settings are wrong (a file, or a flag without its pair).
    #[error("{0}")]
    Config(#[from] TlsError),
    /// The node could not be reached or the handshake failed; the text is the whole cause
    /// chain (a [`HandshakeError`] says what to fix).
    #[error("{0}")]
    Connect(String),
}

/// An error and its sources, `a: b: c`, without repeating a source its parent already quotes.
pub fn describe_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_name_the_flag_and_the_file() {
        let t = ServerTls {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
            client_ca: None,
        };
        let e = t.acceptor().err().expect("must fail").to_string();
        assert!(e.contains("tls cert /nonexistent/cert.pem"), "{e}");
    }

    #[test]
    fn a_cert_without_a_key_is_refused() {
        let t = ClientTls {
            cert: Some("c.pem".into()),
            insecure: true,
            ..ClientTls::default()
        };
        let e = t.connector().expect_err("must fail").to_string();
        assert!(e.contains("--cert needs --key"), "{e}");
    }

    #[test]
    fn a_file_without_pem_says_what_it_expected() {
        let dir = std::env::temp_dir().join(format!("slim-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("empty.pem");
        std::fs::write(&f, "not pem").expect("write");
        let e = read_certs("ca", &f).expect_err("must fail").to_string();
        assert!(e.contains("no PEM certificate found"), "{e}");
        let e = read_key("key", &f).expect_err("must fail").to_string();
        assert!(e.contains("no PEM private key found"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
