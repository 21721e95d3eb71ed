//! `slim-token`: issues a JWT bearer token for `slim-relay`'s `auth: jwt` (SLIM-REV-001), for
//! trying JWT authentication and revocation by hand (README, "JWT bearer tokens and revocation").
//!
//! `slim-token --key idp.key.pem --sub alice --jti 7f3c1e0a --iss idp --aud slim` prints an
//! ES256 token signed with the PKCS#8 PEM P-256 key; `--hs256-secret-file F` signs HS256 with the
//! file's bytes instead (one trailing newline ignored, as the relay reads it). It is a test
//! issuer, not an identity provider: it signs whatever it is asked to.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use p256::ecdsa::SigningKey;
use p256::pkcs8::DecodePrivateKey;
use slim_reference::auth::jwt::{sign_es256, sign_hs256};

/// Issues a JWT for slim-relay's `auth: jwt` (a test issuer: it signs what it is asked to).
#[derive(Debug, Parser)]
#[command(name = "slim-token", version, about)]
struct Args {
    /// PKCS#8 PEM P-256 private key: sign ES256
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "hs256_secret_file"
    )]
    key: Option<PathBuf>,
    /// File holding an HS256 secret: sign HS256
    #[arg(long, value_name = "FILE", conflicts_with = "key")]
    hs256_secret_file: Option<PathBuf>,
    /// Subject (`sub`)
    #[arg(long, value_name = "SUB")]
    sub: String,
    /// Token id (`jti`)
    #[arg(long, value_name = "ID")]
    jti: Option<String>,
    /// Key id (`kid` header), for JWKS key selection and `kid` revocations
    #[arg(long, value_name = "KID")]
    kid: Option<String>,
    /// Issuer (`iss`)
    #[arg(long, value_name = "ISS")]
    iss: Option<String>,
    /// Audience (`aud`)
    #[arg(long, value_name = "AUD")]
    aud: Option<String>,
    /// Lifetime in seconds (`exp` = now + this)
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    ttl: u64,
}

fn fail(msg: String) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let a = Args::parse();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut claims = serde_json::json!({"sub": a.sub, "iat": now, "exp": now + a.ttl});
    for (k, v) in [("jti", &a.jti), ("iss", &a.iss), ("aud", &a.aud)] {
        if let Some(v) = v {
            claims[k] = serde_json::Value::String(v.clone());
        }
    }
    let token = match (&a.key, &a.hs256_secret_file) {
        (Some(path), _) => {
            let pem = match std::fs::read_to_string(path) {
                Ok(p) => p,
                Err(e) => return fail(format!("cannot read --key {}: {e}", path.display())),
            };
            match SigningKey::from_pkcs8_pem(&pem) {
                Ok(key) => sign_es256(&key, a.kid.as_deref(), &claims),
                Err(e) => {
                    return fail(format!(
                        "--key {}: not a PKCS#8 PEM P-256 private key ({e}); make one with `openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt`",
                        path.display()
                    ))
                }
            }
        }
        (None, Some(path)) => match std::fs::read(path) {
            Ok(mut secret) => {
                if secret.last() == Some(&b'\n') {
                    secret.pop();
                }
                sign_hs256(&secret, a.kid.as_deref(), &claims)
            }
            Err(e) => {
                return fail(format!(
                    "cannot read --hs256-secret-file {}: {e}",
                    path.display()
                ))
            }
        },
        (None, None) => return fail("give --key FILE (ES256) or --hs256-secret-file FILE".into()),
    };
    println!("{token}");
    ExitCode::SUCCESS
}
