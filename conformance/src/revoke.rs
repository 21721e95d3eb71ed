//! How the runner revokes a credential on the node it judges (SLIM-REV-002..006), and what the
//! revocation cases need to know about that node.
//!
//! Two mechanisms, chosen on the command line:
//!
//! - `--revoke-file PATH` ([`Revoker::File`]): the node watches a revocation list in slim-relay's
//!   documented YAML format (`revoked: [{jti: …}, {sub: …}, {kid: …}]`). The runner keeps the
//!   entries it found in the file at start, adds its own, and replaces the whole file atomically
//!   (it writes `PATH.slim-conformance.tmp` next to it, then renames it over `PATH`) each time. At
//!   the end of the run it puts the original content back.
//! - `--revoke-cmd CMD` ([`Revoker::Command`]): the runner runs `sh -c 'CMD "$@"' sh CLAIM VALUE`
//!   (so `CMD jti 7f3c1e0a`), with `SLIM_REVOKE_CLAIM` and `SLIM_REVOKE_VALUE` set to the same
//!   two values; CLAIM is `jti`, `sub` or `kid`. The command must exit 0 once the node has been
//!   told (within 10 s); anything else is a harness error naming the command and its stderr.
//!
//! Either way the revocation counts as made when the rename or the command returns: the cases
//! measure SLIM-REV-004's bound from that instant.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::jwt::Issuer;

/// What a revocation names (SLIM-REV-002).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// One token, by its `jti`.
    Jti,
    /// Every token of a subject, by `sub`.
    Sub,
    /// Every token signed with a key, by the header's `kid`.
    Kid,
}

impl Claim {
    /// The claim's name, as in the list file and the command's first argument.
    pub fn as_str(self) -> &'static str {
        match self {
            Claim::Jti => "jti",
            Claim::Sub => "sub",
            Claim::Kid => "kid",
        }
    }
}

impl std::fmt::Display for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How long `--revoke-cmd` may take to revoke (SLIM-REV-002).
pub const COMMAND_BOUND: Duration = Duration::from_secs(10);

/// A revocation the runner could not make (SLIM-REV-002..006: a harness error, so the verdict is
/// ERROR, never FAIL).
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    /// The list file could not be written or renamed.
    #[error("cannot write the revocation list {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The command could not be started.
    #[error("--revoke-cmd {cmd:?} could not be started: {source}")]
    Spawn {
        /// The command.
        cmd: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The command exited with an error.
    #[error("--revoke-cmd {cmd:?} {claim} {value:?} failed ({status}): {stderr}")]
    Failed {
        /// The command.
        cmd: String,
        /// The claim argument.
        claim: Claim,
        /// The value argument.
        value: String,
        /// Its exit status.
        status: String,
        /// What it wrote to stderr (trimmed).
        stderr: String,
    },
    /// The command did not return within [`COMMAND_BOUND`].
    #[error("--revoke-cmd {cmd:?} did not return within {COMMAND_BOUND:?}")]
    Timeout {
        /// The command.
        cmd: String,
    },
    /// A malformed list can only be written to a file.
    #[error("writing a malformed revocation list needs --revoke-file")]
    NotAFile,
}

/// The list file the runner maintains (`--revoke-file`; SLIM-REV-002, SLIM-REV-006).
#[derive(Debug)]
pub struct ListFile {
    path: PathBuf,
    /// The file as found at start (restored at the end), `None` if there was none.
    original: Option<Vec<u8>>,
    /// Every entry of the list: the original ones, then the runner's, as `(claim, value)`.
    entries: Mutex<Vec<(String, String)>>,
}

impl ListFile {
    /// Takes over `path`: remembers its content and the entries it lists (an unreadable or
    /// unparsable file contributes none; its content is still restored at the end).
    pub fn open(path: &Path) -> Self {
        let original = std::fs::read(path).ok();
        let entries = original
            .as_deref()
            .and_then(|b| std::str::from_utf8(b).ok())
            .map(parse_entries)
            .unwrap_or_default();
        Self {
            path: path.to_path_buf(),
            original,
            entries: Mutex::new(entries),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The list with every entry so far, in slim-relay's format.
    fn text(&self) -> String {
        let entries = self.entries.lock().map(|e| e.clone()).unwrap_or_default();
        render(&entries)
    }

    /// Replaces the file with `text` atomically (write a temporary file, then rename it).
    fn replace(&self, text: &[u8]) -> Result<Instant, RevokeError> {
        let err = |source| RevokeError::Write {
            path: self.path.display().to_string(),
            source,
        };
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".slim-conformance.tmp");
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, text).map_err(err)?;
        std::fs::rename(&tmp, &self.path).map_err(err)?;
        Ok(Instant::now())
    }
}

/// Parses the `revoked:` entries of a list in slim-relay's format; anything else gives none.
fn parse_entries(text: &str) -> Vec<(String, String)> {
    #[derive(serde::Deserialize)]
    struct File {
        revoked: Vec<std::collections::BTreeMap<String, String>>,
    }
    serde_yaml::from_str::<File>(text)
        .map(|f| f.revoked.into_iter().flat_map(|m| m.into_iter()).collect())
        .unwrap_or_default()
}

/// slim-relay's list format; values are JSON strings, which YAML reads as double-quoted scalars.
fn render(entries: &[(String, String)]) -> String {
    let mut text = String::from("# written by slim-conformance (revocation cases)\n");
    if entries.is_empty() {
        text.push_str("revoked: []\n");
        return text;
    }
    text.push_str("revoked:\n");
    for (claim, value) in entries {
        let value = serde_json::Value::String(value.clone()).to_string();
        text.push_str(&format!("  - {{{claim}: {value}}}\n"));
    }
    text
}

/// The runner's way to revoke a credential on the target (SLIM-REV-002..006).
#[derive(Debug)]
pub enum Revoker {
    /// Rewrites the node's watched list file.
    File(ListFile),
    /// Runs an operator's command.
    Command(String),
}

impl Revoker {
    /// Revokes `value` of `claim` (SLIM-REV-002); returns the instant it counts as made.
    pub async fn revoke(&self, claim: Claim, value: &str) -> Result<Instant, RevokeError> {
        match self {
            Revoker::File(file) => {
                if let Ok(mut e) = file.entries.lock() {
                    e.push((claim.as_str().to_string(), value.to_string()));
                }
                file.replace(file.text().as_bytes())
            }
            Revoker::Command(cmd) => run_command(cmd, claim, value).await,
        }
    }

    /// Replaces the list with text that does not parse (SLIM-REV-006); `--revoke-file` only.
    /// The text is the list in force cut off in the middle of an entry, as a half-written file.
    pub fn write_malformed(&self) -> Result<Instant, RevokeError> {
        let Revoker::File(file) = self else {
            return Err(RevokeError::NotAFile);
        };
        let mut text = file.text();
        text.push_str("  - {jti: \"cut-off-mid-wr");
        file.replace(text.as_bytes())
    }

    /// Writes the list in force again (after [`Revoker::write_malformed`]); nothing for a
    /// command.
    pub fn rewrite(&self) -> Result<(), RevokeError> {
        if let Revoker::File(file) = self {
            file.replace(file.text().as_bytes())?;
        }
        Ok(())
    }

    /// Puts the list file back as it was before the run (removes it if there was none).
    pub fn restore(&self) -> Result<(), RevokeError> {
        let Revoker::File(file) = self else {
            return Ok(());
        };
        match &file.original {
            Some(bytes) => file.replace(bytes).map(|_| ()),
            None => match std::fs::remove_file(&file.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(RevokeError::Write {
                    path: file.path.display().to_string(),
                    source: e,
                }),
                _ => Ok(()),
            },
        }
    }

    /// Whether a malformed list can be written (SLIM-REV-006 needs the file).
    pub fn is_file(&self) -> bool {
        matches!(self, Revoker::File(_))
    }
}

async fn run_command(cmd: &str, claim: Claim, value: &str) -> Result<Instant, RevokeError> {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{cmd} \"$@\""))
        .arg("sh")
        .arg(claim.as_str())
        .arg(value)
        .env("SLIM_REVOKE_CLAIM", claim.as_str())
        .env("SLIM_REVOKE_VALUE", value)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| RevokeError::Spawn {
            cmd: cmd.to_string(),
            source,
        })?;
    let out = tokio::time::timeout(COMMAND_BOUND, child.wait_with_output())
        .await
        .map_err(|_| RevokeError::Timeout {
            cmd: cmd.to_string(),
        })?
        .map_err(|source| RevokeError::Spawn {
            cmd: cmd.to_string(),
            source,
        })?;
    let made = Instant::now();
    if out.status.success() {
        Ok(made)
    } else {
        Err(RevokeError::Failed {
            cmd: cmd.to_string(),
            claim,
            value: value.to_string(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Everything the revocation cases need (SLIM-REV-001..006): the node that verifies the
/// runner's tokens, the runner's identity provider for it, and how to revoke.
#[derive(Debug)]
pub struct RevocationSetup {
    /// The node, `http://HOST:PORT` (the delay proxy's address with `--delay-ms`).
    pub url: String,
    /// The TLS connector for an `https://` node.
    pub tls: Option<slim_proto::tls::Connector>,
    /// Whether it requires the header MAC.
    pub strict_mac: bool,
    /// The runner's identity provider (`--jwt-key`), if it has the key.
    pub issuer: Option<Issuer>,
    /// The revocation mechanism (`--revoke-file`, `--revoke-cmd`), if any.
    pub revoker: Option<Revoker>,
    /// A kid the target accepts that the kid case may revoke (`--jwt-spare-kid`); without it, a
    /// fresh kid per case.
    pub spare_kid: Option<String>,
    /// The one-way delay the runner itself puts between it and the node (`--delay-ms`).
    pub one_way_delay: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        let d = std::env::temp_dir().join(format!("slim-conf-revoke-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).expect("dir");
        d
    }

    #[tokio::test]
    async fn the_file_keeps_what_it_found_adds_ours_and_is_restored() {
        let dir = scratch();
        let path = dir.join("revoked.yaml");
        let original = "revoked:\n  - {sub: mallory}\n";
        std::fs::write(&path, original).expect("write");
        let r = Revoker::File(ListFile::open(&path));
        r.revoke(Claim::Jti, "t\"1").await.expect("revoke");
        r.revoke(Claim::Kid, "k-old").await.expect("revoke");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            parse_entries(&text),
            vec![
                ("sub".to_string(), "mallory".to_string()),
                ("jti".to_string(), "t\"1".to_string()),
                ("kid".to_string(), "k-old".to_string()),
            ],
            "{text}"
        );
        r.write_malformed().expect("malformed");
        let bad = std::fs::read_to_string(&path).expect("read");
        assert!(
            serde_yaml::from_str::<serde_yaml::Value>(&bad).is_err(),
            "{bad}"
        );
        r.rewrite().expect("rewrite");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
        r.restore().expect("restore");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), original);
        assert!(!dir.join("revoked.yaml.slim-conformance.tmp").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_empty_list_is_written_as_such() {
        assert!(render(&[]).ends_with("revoked: []\n"));
        assert!(parse_entries(&render(&[])).is_empty());
    }

    #[tokio::test]
    async fn the_command_gets_claim_and_value_and_its_failure_is_named() {
        let dir = scratch();
        let log = dir.join("log");
        let cmd = format!(
            "f() {{ echo \"$1=$2 $SLIM_REVOKE_CLAIM=$SLIM_REVOKE_VALUE\" >> '{}'; }}; f",
            log.display()
        );
        let r = Revoker::Command(cmd);
        r.revoke(Claim::Sub, "mallory x").await.expect("revoke");
        assert_eq!(
            std::fs::read_to_string(&log).expect("read"),
            "sub=mallory x sub=mallory x\n"
        );
        assert!(matches!(r.write_malformed(), Err(RevokeError::NotAFile)));
        let failing = Revoker::Command("echo nope >&2; exit 3; true".into());
        let e = failing
            .revoke(Claim::Jti, "j")
            .await
            .expect_err("fails")
            .to_string();
        assert!(e.contains("nope") && e.contains("jti"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
