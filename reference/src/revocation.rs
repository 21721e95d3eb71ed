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

use serde::Deserialize;

use crate::auth::jwt::Principal;
use crate::mutants::{self, Fault};

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
        if let Some(jti) = principal.jti.as_ref().filter(|j| self.jti.contains(*j)) {
            return Some(Reason::Jti(jti.clone()));
        }
        if self.sub.contains(&principal.sub) && !mutants::on(Fault::RevokedSubIgnored) {
            return Some(Reason::Sub(principal.sub.clone()));
        }
        principal
            .kid
            .as_ref()
            .filter(|k| self.kid.contains(*k) && !mutants::on(Fault::RevokedKidIgnored))
            .map(|k| Reason::Kid(k.clone()))
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
}
