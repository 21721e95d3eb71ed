//! Known deviations of one implementation (`--expect FILE`).
//!
//! An implementation that knowingly breaks a requirement lists it here with a reason and the
//! version it was observed on; its failures are then reported as XFAIL and do not fail the run.
//! The file must shrink, never rot: an entry whose requirement now passes is reported as stale and
//! fails the run until it is removed (`--fix-expectations` rewrites the file).
//!
//! A file also lists what the implementation does not offer at all (`unsupported:`): cases that
//! must come out UNSUPPORTED, with the reason. Such a case is never a failure; if it runs one day
//! (PASS or FAIL), its entry is stale like a deviation's, so the list says what is true.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::verdict::{CaseResult, Verdict};

/// The file format version this runner reads and writes.
pub const SCHEMA: u32 = 2;

/// The expectations file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Expectations {
    /// File format version ([`SCHEMA`]).
    pub schema: u32,
    /// The implementation and version the file describes, e.g. `slim-bindings 3.3.8 (embedded node)`.
    pub implementation: String,
    /// The deviations.
    #[serde(default)]
    pub deviations: Vec<Deviation>,
    /// Cases the implementation cannot run (a feature it lacks): each must be UNSUPPORTED.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsupported: Vec<Unsupported>,
}

/// A case the implementation cannot run, because it lacks what the case needs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Unsupported {
    /// The case (its id; every cell of it in the session profile).
    pub case: String,
    /// What the implementation lacks.
    pub reason: String,
    /// The implementation version it was observed on.
    pub observed_on: String,
}

/// One known deviation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Deviation {
    /// The requirement broken.
    pub requirement: String,
    /// The case that shows it. Required: an entry that covered every case judged on its
    /// requirement would also hide new, unrelated failures of that requirement.
    pub case: String,
    /// Why the implementation deviates, or what it does instead.
    pub reason: String,
    /// The implementation version it was observed on.
    pub observed_on: String,
    /// Session profile: the role the implementation plays when it deviates (`sender`,
    /// `receiver`, `moderator`, `participant`); absent = any role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// The file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ExpectationsError {
    /// Read or write failed.
    #[error("expectations file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Not valid for the schema.
    #[error("expectations file {path}: {message} (expected keys: schema, implementation, deviations[requirement, case, reason, observed_on, role], unsupported[case, reason, observed_on])")]
    Parse {
        /// The file.
        path: String,
        /// serde_yaml's explanation.
        message: String,
    },
    /// Unsupported schema version.
    #[error(
        "expectations file {path}: schema {schema} is not supported; this runner reads schema 2 (schema 1 allowed entries without `case:`, which hid every failure of their requirement: give each entry the case that shows it and set `schema: 2`)"
    )]
    Schema {
        /// The file.
        path: String,
        /// The version found.
        schema: u32,
    },
    /// A deviation cites a requirement the catalogue does not have.
    #[error("expectations file {path}: deviation cites unknown requirement {requirement}; `slim-conformance list` shows the catalogue")]
    UnknownRequirement {
        /// The file.
        path: String,
        /// The id.
        requirement: String,
    },
}

impl Expectations {
    /// Loads and checks a file against the catalogue.
    pub fn load(
        path: &Path,
        catalogue: &crate::catalogue::Catalogue,
    ) -> Result<Self, ExpectationsError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ExpectationsError::Io {
            path: p.clone(),
            source,
        })?;
        let e: Expectations =
            serde_yaml::from_str(&text).map_err(|err| ExpectationsError::Parse {
                path: p.clone(),
                message: err.to_string(),
            })?;
        if e.schema != SCHEMA {
            return Err(ExpectationsError::Schema {
                path: p,
                schema: e.schema,
            });
        }
        if let Some(d) = e
            .deviations
            .iter()
            .find(|d| catalogue.get(&d.requirement).is_none())
        {
            return Err(ExpectationsError::UnknownRequirement {
                path: p,
                requirement: d.requirement.clone(),
            });
        }
        Ok(e)
    }

    /// The deviation that covers a failure of `requirement` in case `case`, if any.
    pub fn find(&self, requirement: &str, case: &str) -> Option<&Deviation> {
        self.deviations
            .iter()
            .find(|d| d.requirement == requirement && d.case == case)
    }

    /// `unsupported:` entries that are no longer true: their case ran (any verdict but
    /// UNSUPPORTED or ERROR). With `implementation`, only session cells it took part in count.
    pub fn stale_unsupported<'a>(
        &'a self,
        results: &[CaseResult],
        implementation: Option<&str>,
    ) -> Vec<&'a Unsupported> {
        self.unsupported
            .iter()
            .filter(|u| {
                results.iter().any(|r| {
                    let case = r.cell.as_ref().map_or(r.id.as_str(), |c| c.case.as_str());
                    let took_part = match (implementation, &r.cell) {
                        (Some(i), Some(c)) => c.assignment.iter().any(|(_, x)| x == i),
                        _ => true,
                    };
                    case == u.case
                        && took_part
                        && !matches!(r.verdict, Verdict::Unsupported | Verdict::Error)
                })
            })
            .collect()
    }

    /// Entries that no longer describe a failure: their requirement (and case) ran and nothing
    /// was judged XFAIL against them.
    pub fn stale<'a>(&'a self, results: &[CaseResult]) -> Vec<&'a Deviation> {
        self.deviations
            .iter()
            .filter(|d| {
                let relevant: Vec<&CaseResult> = results
                    .iter()
                    .filter(|r| r.id == d.case)
                    .filter(|r| !matches!(r.verdict, Verdict::Unsupported | Verdict::Error))
                    .collect();
                !relevant.is_empty()
                    && !relevant.iter().any(|r| {
                        r.verdict == Verdict::Xfail && r.judged_requirement == d.requirement
                    })
            })
            .collect()
    }

    /// The file as it should be after this run: stale entries dropped, new failures added with
    /// what was observed as the reason.
    pub fn fixed(&self, results: &[CaseResult]) -> Expectations {
        let stale = self.stale(results);
        let mut deviations: Vec<Deviation> = self
            .deviations
            .iter()
            .filter(|d| !stale.contains(d))
            .cloned()
            .collect();
        for r in results {
            if matches!(r.verdict, Verdict::Fail | Verdict::Warn) {
                deviations.push(Deviation {
                    requirement: r.judged_requirement.clone(),
                    case: r.id.clone(),
                    reason: r.observed.clone().unwrap_or_default(),
                    observed_on: self.implementation.clone(),
                    role: None,
                });
            }
        }
        let stale_unsupported = self.stale_unsupported(results, None);
        Expectations {
            schema: SCHEMA,
            implementation: self.implementation.clone(),
            deviations,
            unsupported: self
                .unsupported
                .iter()
                .filter(|u| !stale_unsupported.contains(u))
                .cloned()
                .collect(),
        }
    }

    /// Writes the file.
    pub fn save(&self, path: &Path) -> Result<(), ExpectationsError> {
        let text = serde_yaml::to_string(self).map_err(|e| ExpectationsError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let header = "# Known deviations for `slim-conformance run --expect`. Each entry: the requirement broken,\n# the case that shows it, why, and the version it was observed on. Entries that start passing\n# fail the run until removed (`--fix-expectations`).\n";
        std::fs::write(path, format!("{header}{text}")).map_err(|source| ExpectationsError::Io {
            path: path.display().to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Level;
    use crate::verdict::{CaseResult, RequirementRef, Verdict};

    fn result(id: &str, req: &str, verdict: Verdict) -> CaseResult {
        CaseResult {
            id: id.into(),
            title: String::new(),
            level: Level::Must,
            verdict,
            judged_requirement: req.into(),
            requirements: vec![RequirementRef {
                id: req.into(),
                level: Level::Must,
                text: String::new(),
            }],
            duration_ms: 0,
            expected: None,
            observed: Some("what happened".into()),
            findings: vec![],
            notes: vec![],
            expected_deviation: None,
            frames: vec![],
            cell: None,
        }
    }

    fn file() -> Expectations {
        Expectations {
            schema: SCHEMA,
            implementation: "impl 1.0".into(),
            deviations: vec![
                Deviation {
                    requirement: "SLIM-VAL-001".into(),
                    case: "validation/empty-message".into(),
                    reason: "panics".into(),
                    observed_on: "impl 1.0".into(),
                    role: None,
                },
                Deviation {
                    requirement: "SLIM-LINK-010".into(),
                    case: "link/empty-link-id".into(),
                    reason: "status OK".into(),
                    observed_on: "impl 1.0".into(),
                    role: None,
                },
            ],
            unsupported: vec![Unsupported {
                case: "revocation/live-stream".into(),
                reason: "no revocation".into(),
                observed_on: "impl 1.0".into(),
            }],
        }
    }

    #[test]
    fn an_unsupported_entry_is_stale_once_its_case_runs() {
        let e = file();
        let case = "revocation/live-stream";
        for v in [Verdict::Unsupported, Verdict::Error] {
            assert!(e
                .stale_unsupported(&[result(case, "SLIM-REV-004", v)], None)
                .is_empty());
        }
        assert!(e.stale_unsupported(&[], None).is_empty());
        for v in [Verdict::Pass, Verdict::Fail] {
            let r = [result(case, "SLIM-REV-004", v)];
            assert_eq!(e.stale_unsupported(&r, None).len(), 1, "{v:?}");
            assert!(e.fixed(&r).unsupported.is_empty(), "fixing drops it");
        }
    }

    #[test]
    fn entries_match_by_requirement_and_case() {
        let e = file();
        assert!(e.find("SLIM-VAL-001", "validation/empty-message").is_some());
        assert!(e.find("SLIM-VAL-001", "validation/unknown-oneof").is_none());
        // An entry covers its own case only: a new failure of the same requirement elsewhere
        // is not hidden.
        assert!(e.find("SLIM-LINK-010", "link/empty-link-id").is_some());
        assert!(e.find("SLIM-LINK-010", "link/anything").is_none());
        assert!(e.find("SLIM-ROUTE-001", "x").is_none());
    }

    #[test]
    fn an_entry_is_stale_only_when_its_requirement_ran_and_did_not_fail() {
        let e = file();
        // Still failing: not stale.
        let r = vec![result(
            "validation/empty-message",
            "SLIM-VAL-001",
            Verdict::Xfail,
        )];
        assert!(e.stale(&r).is_empty());
        // Ran and passed: stale.
        let r = vec![result(
            "validation/empty-message",
            "SLIM-VAL-001",
            Verdict::Pass,
        )];
        assert_eq!(e.stale(&r).len(), 1);
        // Not run (filtered out or unsupported): not judged.
        let r = vec![result(
            "validation/empty-message",
            "SLIM-VAL-001",
            Verdict::Unsupported,
        )];
        assert!(e.stale(&r).is_empty());
        assert!(e.stale(&[]).is_empty());
    }

    #[test]
    fn old_schema_and_entries_without_case_are_refused_with_the_fix() {
        let dir = std::env::temp_dir().join(format!("expect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let catalogue = crate::catalogue::Catalogue::builtin().expect("catalogue");
        let old = dir.join("old.yaml");
        std::fs::write(&old, "schema: 1\nimplementation: x\ndeviations: []\n").expect("write");
        let e = Expectations::load(&old, &catalogue).expect_err("schema 1 refused");
        assert!(e.to_string().contains("give each entry the case"), "{e}");
        let no_case = dir.join("no-case.yaml");
        std::fs::write(
            &no_case,
            "schema: 2\nimplementation: x\ndeviations:\n- requirement: SLIM-VAL-001\n  reason: r\n  observed_on: x\n",
        )
        .expect("write");
        let e = Expectations::load(&no_case, &catalogue).expect_err("an entry needs its case");
        assert!(e.to_string().contains("case"), "{e}");
    }

    #[test]
    fn fixing_drops_stale_entries_and_adds_new_failures() {
        let e = file();
        let r = vec![
            result("validation/empty-message", "SLIM-VAL-001", Verdict::Pass),
            result("routing/order-preserved", "SLIM-ROUTE-012", Verdict::Fail),
        ];
        let fixed = e.fixed(&r);
        let reqs: Vec<&str> = fixed
            .deviations
            .iter()
            .map(|d| d.requirement.as_str())
            .collect();
        assert_eq!(reqs, ["SLIM-LINK-010", "SLIM-ROUTE-012"]);
        assert_eq!(fixed.deviations[1].case, "routing/order-preserved");
        assert_eq!(fixed.deviations[1].reason, "what happened");
        assert_eq!(fixed.deviations[1].observed_on, "impl 1.0");
    }
}
