//! `slim-relay`: the reference SLIM relay.
//!
//! With no arguments it listens on 127.0.0.1:46357 (h2c gRPC), requires the header MAC, and runs
//! until SIGINT or SIGTERM.
//!
//! `--auth-basic USER:PASS` or `--auth-bearer TOKEN` (or `auth` in `--config`) makes it refuse
//! `OpenChannel` calls without those credentials with `UNAUTHENTICATED`, as a SLIM node with
//! `auth: basic` / `auth: jwt` does.
//!
//! `--auth-jwt-key FILE` (repeatable), `--auth-jwt-jwks FILE`, `--auth-jwt-hs256-secret-file FILE`
//! (with `--auth-jwt-issuer`, `--auth-jwt-audience`) verify JWT bearer tokens instead
//! (SLIM-REV-001); `--revocation-file FILE` then ends and refuses the credentials it lists
//! (SLIM-REV-002..006).
//!
//! `--tls-cert FILE --tls-key FILE` serve TLS instead of h2c; `--tls-client-ca FILE` adds mutual
//! TLS (or `tls: {cert, key, client_ca}` in `--config`). Connection limits are `relay.yaml` keys.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use slim_reference::auth::AuthConfig;
use slim_reference::config::FileConfig;
use slim_reference::server::ServeError;
use tracing_subscriber::EnvFilter;

/// Reference SLIM relay: routes SLIM messages between links (h2c gRPC, DataPlaneService.OpenChannel).
#[derive(Debug, Parser)]
#[command(name = "slim-relay", version, about)]
#[command(group = clap::ArgGroup::new("auth_jwt").multiple(true))]
struct Args {
    /// Address to listen on [default: 127.0.0.1:46357, or `listen` in --config]
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,

    /// YAML configuration file (keys: listen, node_id, require_header_mac, negotiation_timeout_ms,
    /// queue_capacity, max_subscriptions_per_connection, auth, revocation)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Require the per-link header MAC on every routed message [default: true]
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    require_header_mac: Option<bool>,

    /// node_id announced in link negotiation replies [default: slim-relay]
    #[arg(long, value_name = "ID")]
    node_id: Option<String>,

    /// Require `authorization: Basic base64(USER:PASS)` on every OpenChannel call (overrides
    /// `auth` in --config). Visible to other local users in the process list: prefer --config for
    /// real secrets
    #[arg(long, value_name = "USER:PASS", conflicts_with = "auth_bearer")]
    auth_basic: Option<String>,

    /// Require `authorization: Bearer TOKEN` on every OpenChannel call (overrides `auth` in
    /// --config)
    #[arg(long, value_name = "TOKEN", conflicts_with = "auth_jwt")]
    auth_bearer: Option<String>,

    /// Verify JWT bearer tokens (ES256) with this PEM P-256 public key; repeatable (overrides
    /// `auth` in --config)
    #[arg(
        long = "auth-jwt-key",
        value_name = "FILE",
        group = "auth_jwt",
        conflicts_with = "auth_basic"
    )]
    auth_jwt_keys: Vec<PathBuf>,

    /// Verify JWT bearer tokens with the keys of this JWKS file (EC P-256 for ES256, oct for
    /// HS256)
    #[arg(
        long,
        value_name = "FILE",
        group = "auth_jwt",
        conflicts_with = "auth_basic"
    )]
    auth_jwt_jwks: Option<PathBuf>,

    /// Verify HS256 JWT bearer tokens with the secret in this file
    #[arg(
        long,
        value_name = "FILE",
        group = "auth_jwt",
        conflicts_with = "auth_basic"
    )]
    auth_jwt_hs256_secret_file: Option<PathBuf>,

    /// Required JWT `iss` (with a --auth-jwt-* key)
    #[arg(long, value_name = "S", requires = "auth_jwt")]
    auth_jwt_issuer: Option<String>,

    /// Required JWT `aud` (with a --auth-jwt-* key)
    #[arg(long, value_name = "S", requires = "auth_jwt")]
    auth_jwt_audience: Option<String>,

    /// Revocation list to watch (YAML `revoked: [{jti: X}, {sub: Y}, {kid: Z}]`); needs JWT auth
    #[arg(long, value_name = "FILE")]
    revocation_file: Option<PathBuf>,

    /// Serve TLS with this PEM certificate chain (with --tls-key; or `tls.cert` in --config)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Require client certificates signed by these PEM CA certificates (mutual TLS; needs
    /// --tls-cert or `tls` in --config)
    #[arg(long, value_name = "FILE")]
    tls_client_ca: Option<PathBuf>,
}

impl Args {
    /// The credentials given with --auth-basic or --auth-bearer, if any. A malformed value is a
    /// usage error (exit code 2) that says what is wrong without repeating the secret, which
    /// clap's own "invalid value" message would do.
    fn auth(&self) -> Option<AuthConfig> {
        if !self.auth_jwt_keys.is_empty()
            || self.auth_jwt_jwks.is_some()
            || self.auth_jwt_hs256_secret_file.is_some()
        {
            let auth = AuthConfig::Jwt {
                keys: self.auth_jwt_keys.clone(),
                jwks: self.auth_jwt_jwks.clone(),
                hs256_secret_file: self.auth_jwt_hs256_secret_file.clone(),
                issuer: self.auth_jwt_issuer.clone(),
                audience: self.auth_jwt_audience.clone(),
            };
            if let Err(why) = auth.validate() {
                Args::command()
                    .error(
                        ErrorKind::InvalidValue,
                        format!("invalid --auth-jwt-*: {why}"),
                    )
                    .exit()
            }
            return Some(auth);
        }
        let (flag, parsed) = match (&self.auth_basic, &self.auth_bearer) {
            (Some(v), _) => ("--auth-basic", parse_basic(v)),
            (None, Some(v)) => ("--auth-bearer", parse_bearer(v)),
            (None, None) => return None,
        };
        match parsed {
            Ok(auth) => Some(auth),
            Err(why) => Args::command()
                .error(ErrorKind::InvalidValue, format!("invalid {flag}: {why}"))
                .exit(),
        }
    }
}

/// `USER:PASS` → Basic credentials. The user-id ends at the first colon (RFC 7617: it cannot
/// contain one); the password may contain colons.
fn parse_basic(value: &str) -> Result<AuthConfig, String> {
    let Some((username, password)) = value.split_once(':') else {
        return Err(
            "expected USER:PASS with a colon between the user name and the password, \
             e.g. --auth-basic alice:s3cret"
                .into(),
        );
    };
    let auth = AuthConfig::Basic {
        username: username.into(),
        password: password.into(),
    };
    auth.validate().map_err(|e| {
        e.to_string()
            .replace("auth.basic.username", "the user name")
    })?;
    Ok(auth)
}

/// `TOKEN` → Bearer credentials.
fn parse_bearer(value: &str) -> Result<AuthConfig, String> {
    let auth = AuthConfig::Bearer {
        token: value.into(),
    };
    auth.validate()
        .map_err(|e| e.to_string().replace("auth.bearer.token", "the token"))?;
    Ok(auth)
}

fn main() -> ExitCode {
    // SLIM_RELAY_MUTANT (builds with the `mutants` feature): `list`, or the seeded fault to run with.
    if let Some(code) = slim_reference::mutants::startup() {
        return code;
    }
    let args = Args::parse();
    let auth = args.auth();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("SLIM_RELAY_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let mut file = match &args.config {
        Some(path) => match FileConfig::load(path) {
            Ok(cfg) => cfg,
            Err(e) => {
                eprintln!("slim-relay: {e}");
                return ExitCode::from(2);
            }
        },
        None => FileConfig::default(),
    };
    if args.listen.is_some() {
        file.listen = args.listen;
    }
    if args.require_header_mac.is_some() {
        file.require_header_mac = args.require_header_mac;
    }
    if args.node_id.is_some() {
        file.node_id = args.node_id;
    }
    if auth.is_some() {
        file.auth = auth;
    }
    if let Some(path) = &args.revocation_file {
        file.revocation = Some(slim_reference::config::RevocationConfig { file: path.clone() });
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        file.tls = Some(slim_reference::config::TlsConfig {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: None,
        });
    }
    if let Some(ca) = &args.tls_client_ca {
        match file.tls.as_mut() {
            Some(tls) => tls.client_ca = Some(ca.clone()),
            None => {
                eprintln!("slim-relay: --tls-client-ca turns on mutual TLS, which needs TLS: give --tls-cert FILE --tls-key FILE too (or tls: {{cert, key}} in --config)");
                return ExitCode::from(2);
            }
        }
    }
    if let Err(why) = file.check_revocation() {
        eprintln!("slim-relay: {why}");
        return ExitCode::from(2);
    }
    let config = file.into_server_config();

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("slim-relay: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(slim_reference::server::run(config, shutdown_signal())) {
        Ok(()) => {
            tracing::info!("slim-relay stopped");
            ExitCode::SUCCESS
        }
        // A key file or revocation list that cannot be loaded is a configuration error.
        Err(e @ (ServeError::AuthKeys(_) | ServeError::Revocation(_) | ServeError::Tls(_))) => {
            eprintln!("slim-relay: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("slim-relay: {e}");
            ExitCode::from(1)
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}
