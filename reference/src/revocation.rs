//! The revocation list: credentials the node no longer accepts (SLIM-REV-002..006), sans-IO.
//!
//! The file is YAML, one entry per revoked credential, each naming exactly one of a token id
//! (`jti`), a subject (`sub`) or a signing key (`kid`) (SLIM-REV-002):
//!
//! ```yaml
//! revoked:
//!   - {jti: 7f3c1e0a}      # one token
//!   - {sub: mallory}       # every token of a subject
//!   - {kid: 2024-q1}       # every token signed with a key
//! ```
//!
//! `revoked: []` is the empty list. Anything else (an empty file, unknown keys, an entry with none
//! or two keys, a value that is not a non-empty string) is a [`RevocationError`] naming the file
//! and the defect; the shell then keeps the list already in force (SLIM-REV-006).

use std::collections::BTreeSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::auth::jwt::Principal;
use crate::mutants::{self, Fault};

/// How often the relay and the client look at their revocation file: half the 100 ms in which
/// SLIM-REV-004 wants a revocation enforced, so one period plus the close fits in it.
pub const POLL_PERIOD: Duration = Duration::from_millis(50);

/// Which claim of a credential is revoked, and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The token id is revoked.
    Jti(String),
    /// The subject is revoked.
    Sub(String),
    /// The signing key is revoked.
    Kid(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Jti(v) => write!(f, "jti {v:?} is revoked"),
            Reason::Sub(v) => write!(f, "sub {v:?} is revoked"),
            Reason::Kid(v) => write!(f, "kid {v:?} is revoked"),
        }
    }
}

/// A revocation list that could not be used: the file and the defect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("revocation list {path}: {defect}")]
pub struct RevocationError {
    /// The file.
    pub path: String,
    /// What is wrong with it.
    pub defect: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    revoked: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    jti: Option<String>,
    sub: Option<String>,
    kid: Option<String>,
}

/// The credentials revoked by one version of the list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationList {
    jti: BTreeSet<String>,
    sub: BTreeSet<String>,
    kid: BTreeSet<String>,
}

impl RevocationList {
    /// The empty list.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Parses the YAML text of the file at `path` (used in errors only).
    pub fn parse(text: &str, path: &str) -> Result<Self, RevocationError> {
        let err = |defect: String| RevocationError {
            path: path.to_string(),
            defect,
        };
        if text.trim().is_empty() {
            return Err(err(
                "the file is empty (write `revoked: []` for an empty list)".into(),
            ));
        }
        let file: FileFormat = serde_yaml::from_str(text).map_err(|e| err(e.to_string()))?;
        let mut list = Self::default();
        for (i, entry) in file.revoked.into_iter().enumerate() {
            let set = [
                entry.jti.map(|v| ("jti", v)),
                entry.sub.map(|v| ("sub", v)),
                entry.kid.map(|v| ("kid", v)),
            ];
            let mut present = set.into_iter().flatten();
            let (Some((key, value)), None) = (present.next(), present.next()) else {
                return Err(err(format!(
                    "revoked[{i}]: each entry names exactly one of jti, sub, kid"
                )));
            };
            if value.is_empty() {
                return Err(err(format!("revoked[{i}].{key} is empty")));
            }
            match key {
                "jti" => list.jti.insert(value),
                "sub" => list.sub.insert(value),
                _ => list.kid.insert(value),
            };
        }
        Ok(list)
    }

    /// Adds one entry (the driver's RevokeIdentity, an admin telling an app directly).
    pub fn insert(&mut self, entry: Reason) {
        match entry {
            Reason::Jti(v) => self.jti.insert(v),
            Reason::Sub(v) => self.sub.insert(v),
            Reason::Kid(v) => self.kid.insert(v),
        };
    }

    /// Every entry of `other` added to this list.
    pub fn extend(&mut self, other: &RevocationList) {
        self.jti.extend(other.jti.iter().cloned());
        self.sub.extend(other.sub.iter().cloned());
        self.kid.extend(other.kid.iter().cloned());
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.jti.len() + self.sub.len() + self.kid.len()
    }

    /// Whether the list revokes nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Why `principal` is revoked, if it is (checked in the order jti, sub, kid).
    pub fn is_revoked(&self, principal: &Principal) -> Option<Reason> {
        self.revokes(
            principal.jti.as_deref(),
            &principal.sub,
            principal.kid.as_deref(),
        )
    }

    /// Why a credential with these claims is revoked, if it is (checked in the order jti, sub,
    /// kid): [`Self::is_revoked`] on borrowed claims, for callers that check every message.
    pub fn revokes(&self, jti: Option<&str>, sub: &str, kid: Option<&str>) -> Option<Reason> {
        if let Some(jti) = jti.filter(|j| self.jti.contains(*j)) {
            return Some(Reason::Jti(jti.to_string()));
        }
        if self.sub.contains(sub) && !mutants::on(Fault::RevokedSubIgnored) {
            return Some(Reason::Sub(sub.to_string()));
        }
        kid.filter(|k| self.kid.contains(*k) && !mutants::on(Fault::RevokedKidIgnored))
            .map(|k| Reason::Kid(k.to_string()))
    }
}

/// Reads and parses the revocation file at `path`.
pub fn load(path: &Path) -> Result<RevocationList, RevocationError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| RevocationError {
        path: shown.clone(),
        defect: format!("cannot read: {e}"),
    })?;
    RevocationList::parse(&text, &shown)
}

/// What a [`Watcher`] compares to notice a change: mtime, length and a hash of the content (an
/// edit within one mtime tick, or a rename of a file of the same length, still shows).
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub struct FileStamp {
    mtime: Option<SystemTime>,
    len: u64,
    hash: u64,
}

impl FileStamp {
    /// The stamp of `path` now (a missing file has a stamp too: it changes when it appears).
    pub fn of(path: &Path) -> Self {
        let meta = std::fs::metadata(path).ok();
        let content = std::fs::read(path).ok();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        content.hash(&mut hasher);
        FileStamp {
            mtime: meta.as_ref().and_then(|m| m.modified().ok()),
            len: meta.map_or(0, |m| m.len()),
            hash: hasher.finish(),
        }
    }
}

/// A revocation file, polled by its shell (the relay's and the client's share it): each
/// [`Watcher::poll`] says whether the file changed since the last look and, if so, what it now
/// holds. The shell keeps the list in force when a changed file does not parse (SLIM-REV-006).
#[derive(Debug)]
pub struct Watcher {
    path: PathBuf,
    last: FileStamp,
}

impl Watcher {
    /// Watches `path`, whose content as of `stamp` is already in force.
    pub fn new(path: PathBuf, stamp: FileStamp) -> Self {
        Self { path, last: stamp }
    }

    /// The file watched.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `None` if the file is as it was at the last poll; otherwise the new list, or why it
    /// cannot be used.
    pub fn poll(&mut self) -> Option<Result<RevocationList, RevocationError>> {
        let now = FileStamp::of(&self.path);
        if now == self.last {
            return None;
        }
        self.last = now;
        Some(load(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(jti: &str, sub: &str, kid: &str) -> Principal {
        Principal {
            jti: Some(jti.into()),
            sub: sub.into(),
            kid: Some(kid.into()),
            exp: 0,
        }
    }

    #[test]
    fn a_good_list_revokes_by_each_claim() {
        let list = RevocationList::parse(
            "revoked:\n  - {jti: t1}\n  - sub: mallory\n  - {kid: old}\n",
            "rev.yaml",
        )
        .expect("valid");
        assert_eq!(list.len(), 3);
        assert_eq!(
            list.is_revoked(&who("t1", "a", "k")),
            Some(Reason::Jti("t1".into()))
        );
        assert_eq!(
            list.is_revoked(&who("t2", "mallory", "k")),
            Some(Reason::Sub("mallory".into()))
        );
        assert_eq!(
            list.is_revoked(&who("t2", "a", "old")),
            Some(Reason::Kid("old".into()))
        );
        assert_eq!(list.is_revoked(&who("t2", "a", "k")), None);
        let reason = list
            .is_revoked(&who("t1", "a", "k"))
            .expect("revoked")
            .to_string();
        assert_eq!(reason, "jti \"t1\" is revoked");
        assert!(RevocationList::parse("revoked: []", "r")
            .expect("valid")
            .is_empty());
    }

    #[test]
    fn each_malformed_form_is_named_with_the_file() {
        let e = |text: &str| {
            RevocationList::parse(text, "rev.yaml")
                .expect_err(text)
                .to_string()
        };
        for (text, want) in [
            ("", "empty"),
            (
                "revoked: [{jti: a, sub: b}]",
                "revoked[0]: each entry names exactly one",
            ),
            ("revoked: [{}]", "revoked[0]: each entry names exactly one"),
            ("revoked: [{jti: a}, {user: b}]", "unknown field `user`"),
            ("revoked: [{jti: ''}]", "revoked[0].jti is empty"),
            ("revokd: []", "unknown field `revokd`"),
            ("revoked: {jti: a}", "revoked"),
            ("revoked: [{jti: [a]}]", "revoked"),
            ("\u{0}garbage: [", "rev.yaml"),
        ] {
            let got = e(text);
            assert!(got.starts_with("revocation list rev.yaml: "), "{got}");
            assert!(got.contains(want), "{text:?}: {got}");
        }
    }

    #[test]
    fn insert_and_extend_add_entries() {
        let mut list = RevocationList::empty();
        list.insert(Reason::Sub("mallory".into()));
        let mut other = RevocationList::empty();
        other.insert(Reason::Kid("old".into()));
        list.extend(&other);
        assert_eq!(list.len(), 2);
        assert!(list.is_revoked(&who("t", "mallory", "k")).is_some());
        assert!(list.is_revoked(&who("t", "a", "old")).is_some());
    }

    #[test]
    fn a_watcher_reports_changes_once() {
        let dir = std::env::temp_dir().join(format!("slim-rev-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("rev.yaml");
        std::fs::write(&path, "revoked: []\n").expect("write");
        let mut w = Watcher::new(path.clone(), FileStamp::of(&path));
        assert!(w.poll().is_none(), "unchanged");
        std::fs::write(&path, "revoked: [{sub: mallory}]\n").expect("write");
        let list = w.poll().expect("changed").expect("parses");
        assert_eq!(list.len(), 1);
        assert!(w.poll().is_none(), "reported once");
        std::fs::write(&path, "revoked: [{sub: ''}]\n").expect("write");
        let err = w.poll().expect("changed").expect_err("malformed");
        assert!(err.to_string().contains("revoked[0].sub is empty"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
