//! What the connection cases (SLIM-CONN-*) need beyond the target: a TLS target to judge and the
//! limits the operator declared, and, when the runner judges its embedded relay, a second
//! embedded relay serving mutual TLS on a fresh CA.
//!
//! The TLS cases judge the target itself when it is `https://` (`--target https://… --ca FILE`,
//! with `--cert`/`--key` when it requires client certificates); without `--target` they judge
//! [`EmbeddedTlsRelay`]. The limits a runner cannot discover from outside are declared
//! (`--idle-timeout-ms`, `--max-connections-per-peer`); the embedded relay runs with
//! [`EMBEDDED_IDLE_TIMEOUT`] and [`EMBEDDED_PEER_LIMIT`] and declares them itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use slim_proto::tls::{ClientTls, Connector, ServerTls};

/// The embedded relay's idle timeout for connections without a stream (SLIM-CONN-004).
pub const EMBEDDED_IDLE_TIMEOUT: Duration = Duration::from_millis(2000);

/// The embedded relay's bound on connections from one address (SLIM-CONN-003): above what any
/// other case holds at once, low enough that the case opening one more stays quick.
pub const EMBEDDED_PEER_LIMIT: usize = 64;

/// A TLS target for the SLIM-CONN-001/002 cases.
#[derive(Debug, Clone)]
pub struct TlsTarget {
    /// `https://HOST:PORT`.
    pub url: String,
    /// Connects as the runner was told to (CA, and the client certificate if any).
    pub connector: Connector,
    /// With mutual TLS: connects trusting the same CA but presenting no certificate.
    pub anonymous: Option<Connector>,
}

/// The connection cases' view of the run.
#[derive(Debug, Clone, Default)]
pub struct ConnectionSetup {
    /// The TLS target, if the run has one.
    pub tls: Option<TlsTarget>,
    /// The target's idle timeout for connections without a stream, as declared.
    pub idle_timeout: Option<Duration>,
    /// The target's bound on connections from one address, as declared.
    pub max_connections_per_peer: Option<usize>,
}

impl TlsTarget {
    /// The TLS target of `url` from the runner's `--ca`/`--cert`/`--key`/`--insecure`
    /// settings: with a client certificate, the target is taken to require one (mTLS).
    pub fn of(url: &str, settings: &ClientTls) -> Result<TlsTarget, String> {
        let connector = settings.connector().map_err(|e| e.to_string())?;
        let anonymous = match settings.cert {
            Some(_) => {
                let without = ClientTls {
                    cert: None,
                    key: None,
                    ..settings.clone()
                };
                Some(without.connector().map_err(|e| e.to_string())?)
            }
            None => None,
        };
        Ok(TlsTarget {
            url: url.to_string(),
            connector,
            anonymous,
        })
    }
}

/// A second embedded reference relay serving mutual TLS, on a CA made for this run in a
/// temporary directory (removed by [`EmbeddedTlsRelay::stop`]).
pub struct EmbeddedTlsRelay {
    relay: slim_reference::server::RelayHandle,
    proxy: Option<crate::delay::DelayProxy>,
    dir: PathBuf,
    /// What the TLS cases judge.
    pub target: TlsTarget,
}

impl EmbeddedTlsRelay {
    /// Starts it; `delay` > 0 puts the runner's delay proxy in front (TLS passes through).
    pub async fn start(delay: Duration) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!(
            "slim-conformance-tls-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let started = Self::start_in(&dir, delay).await;
        if started.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        started
    }

    async fn start_in(dir: &Path, delay: Duration) -> Result<Self, String> {
        let pki = make_pki(dir)?;
        let config = slim_reference::config::ServerConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            tls: Some(ServerTls {
                cert: pki.node_cert,
                key: pki.node_key,
                client_ca: Some(pki.ca.clone()),
            }),
            ..Default::default()
        };
        let relay = slim_reference::server::spawn(config)
            .await
            .map_err(|e| e.to_string())?;
        let proxy = if delay.is_zero() {
            None
        } else {
            let addr = relay.addr();
            match crate::delay::DelayProxy::start(addr, delay).await {
                Ok(p) => Some(p),
                Err(e) => {
                    let _ = relay.shutdown().await;
                    return Err(format!("--delay-ms: cannot start the delay proxy: {e}"));
                }
            }
        };
        let url = proxy
            .as_ref()
            .map_or_else(|| relay.url(), |p| p.url_like("https://"));
        let settings = ClientTls {
            ca: Some(pki.ca),
            cert: Some(pki.client_cert),
            key: Some(pki.client_key),
            insecure: false,
        };
        let target = TlsTarget::of(&url, &settings)?;
        Ok(Self {
            relay,
            proxy,
            dir: dir.to_path_buf(),
            target,
        })
    }

    /// Stops the relay and removes the certificates.
    pub async fn stop(self) {
        drop(self.proxy);
        let _ = self.relay.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The embedded TLS relay's files.
struct Pki {
    ca: PathBuf,
    node_cert: PathBuf,
    node_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

/// A CA, a node certificate for `localhost` and `127.0.0.1`, and a client certificate, as PEM
/// files in `dir`.
fn make_pki(dir: &Path) -> Result<Pki, String> {
    let err = |e: rcgen::Error| format!("cannot make the embedded TLS relay's certificates: {e}");
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "slim-conformance run CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).map_err(err)?;
    let leaf = |sans: Vec<String>, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().map_err(err)?;
        let mut params = CertificateParams::new(sans).map_err(err)?;
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &ca, &ca_key).map_err(err)?;
        Ok::<_, String>((cert.pem(), key.serialize_pem()))
    };
    let (node_pem, node_key_pem) = leaf(
        vec!["localhost".into(), "127.0.0.1".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    let (client_pem, client_key_pem) = leaf(
        vec!["slim-conformance".into()],
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .map(|()| path.clone())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    Ok(Pki {
        ca: write("ca.pem", &ca.pem())?,
        node_cert: write("node.pem", &node_pem)?,
        node_key: write("node.key", &node_key_pem)?,
        client_cert: write("client.pem", &client_pem)?,
        client_key: write("client.key", &client_key_pem)?,
    })
}

/// Shared by the runner's options and every case's context.
pub type SharedConnectionSetup = Arc<ConnectionSetup>;
