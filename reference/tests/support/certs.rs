//! Test certificates made at test time with rcgen (ECDSA P-256): a CA, a node certificate for
//! `localhost` and `127.0.0.1` signed by it, a client certificate signed by it, and a second,
//! unrelated CA with its own client certificate (the "wrong CA" cases). Written as PEM files in
//! a fresh directory under the test's temporary directory. Included with `#[path]` by the TLS
//! tests of several crates.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// The PEM files of one test PKI.
pub struct Pki {
    /// Directory holding every file.
    pub dir: PathBuf,
    /// The CA that signed the node and client certificates.
    pub ca: PathBuf,
    /// The node's certificate (SANs `localhost`, `127.0.0.1`) and key.
    pub node_cert: PathBuf,
    /// The node's private key (PKCS#8).
    pub node_key: PathBuf,
    /// A client certificate signed by `ca`, and its key.
    pub client_cert: PathBuf,
    /// Key of `client_cert`.
    pub client_key: PathBuf,
    /// Another CA, unrelated to `ca`.
    pub other_ca: PathBuf,
    /// A client certificate signed by `other_ca`, and its key.
    pub other_client_cert: PathBuf,
    /// Key of `other_client_cert`.
    pub other_client_key: PathBuf,
}

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("self-signed CA");
    Ca { cert, key }
}

fn leaf(
    by: &Ca,
    name: &str,
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().expect("leaf key");
    let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("leaf params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![usage];
    let cert = params
        .signed_by(&key, &by.cert, &by.key)
        .expect("signed leaf");
    (cert, key)
}

fn write(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).expect("write PEM");
    path
}

/// Makes a fresh PKI under `parent` (a new directory per call).
pub fn make(parent: &Path) -> Pki {
    let dir = parent.join(format!("pki-{}-{}", std::process::id(), uuid_like()));
    std::fs::create_dir_all(&dir).expect("PKI dir");
    let root = ca("slim-conformance test CA");
    let other = ca("some other CA");
    let (node, node_key) = leaf(
        &root,
        "localhost",
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client, client_key) = leaf(
        &root,
        "slim-client",
        &["slim-client"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let (stranger, stranger_key) = leaf(
        &other,
        "stranger",
        &["stranger"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    Pki {
        ca: write(&dir, "ca.pem", &root.cert.pem()),
        node_cert: write(&dir, "node.pem", &node.pem()),
        node_key: write(&dir, "node.key", &node_key.serialize_pem()),
        client_cert: write(&dir, "client.pem", &client.pem()),
        client_key: write(&dir, "client.key", &client_key.serialize_pem()),
        other_ca: write(&dir, "other-ca.pem", &other.cert.pem()),
        other_client_cert: write(&dir, "stranger.pem", &stranger.pem()),
        other_client_key: write(&dir, "stranger.key", &stranger_key.serialize_pem()),
        dir,
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{nanos:x}-{}", N.fetch_add(1, Ordering::Relaxed))
}
