//! `spec/requirements.yaml` and `spec/SPEC.md` state the same requirements, every requirement
//! id cited in the code exists in the catalogue, every requirement is checked by a case or says
//! why not, and every change of a requirement's meaning is recorded.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Catalogue {
    schema: u32,
    requirements: Vec<Requirement>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Requirement {
    id: String,
    level: String,
    section: String,
    title: String,
    text: String,
    source: String,
    reason: Option<String>,
    real_node: Option<String>,
    untested: Option<String>,
    #[serde(default)]
    revisions: Vec<Revision>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Revision {
    date: String,
    change: String,
    was: String,
    why: String,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn catalogue() -> Catalogue {
    let text = std::fs::read_to_string(root().join("spec/requirements.yaml")).expect("catalogue");
    serde_yaml::from_str(&text).expect("requirements.yaml parses")
}

/// Every `SLIM-AREA-NNN` token in a text.
fn cited_ids(text: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("SLIM-") {
        let start = i + pos;
        let mut j = start + 5;
        while j < bytes.len() && bytes[j].is_ascii_uppercase() {
            j += 1;
        }
        let area_end = j;
        if area_end > start + 5 && j < bytes.len() && bytes[j] == b'-' {
            let digits = &text[j + 1..(j + 4).min(text.len())];
            if digits.len() == 3 && digits.bytes().all(|b| b.is_ascii_digit()) {
                ids.insert(text[start..j + 4].to_string());
            }
        }
        i = start + 5;
    }
    ids
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("rs" | "proto" | "py" | "md")
        ) {
            out.push(path);
        }
    }
}

#[test]
fn catalogue_is_well_formed() {
    let cat = catalogue();
    assert_eq!(cat.schema, 1);
    let mut seen = BTreeSet::new();
    for r in &cat.requirements {
        assert!(seen.insert(r.id.clone()), "duplicate id {}", r.id);
        assert_eq!(cited_ids(&r.id).len(), 1, "malformed id {}", r.id);
        assert!(
            ["MUST", "SHOULD", "MAY"].contains(&r.level.as_str()),
            "{}: level {}",
            r.id,
            r.level
        );
        assert!(
            ["real", "draft", "decision"].contains(&r.source.as_str()),
            "{}: source {}",
            r.id,
            r.source
        );
        if r.source == "decision" {
            assert!(r.reason.is_some(), "{}: a decision needs a reason", r.id);
        }
        assert!(r.real_node.as_deref().is_none_or(|s| !s.is_empty()));
        for v in &r.revisions {
            assert!(
                v.date.len() == 10 && !v.change.is_empty() && !v.why.is_empty(),
                "{}: a revision needs a date (YYYY-MM-DD), a change, and why",
                r.id
            );
            assert_ne!(
                v.was, r.text,
                "{}: a revision must record the old text",
                r.id
            );
        }
        assert!(!r.title.is_empty() && !r.text.is_empty() && !r.section.is_empty());
    }
    assert!(
        cat.requirements.len() >= 50,
        "catalogue shrank unexpectedly"
    );
}

#[test]
fn spec_md_states_every_requirement_verbatim() {
    let cat = catalogue();
    let spec = std::fs::read_to_string(root().join("spec/SPEC.md")).expect("SPEC.md");
    for r in &cat.requirements {
        let line = format!("**{}** ({}): {}", r.id, r.level, r.text);
        assert!(spec.contains(&line), "SPEC.md lacks, verbatim:\n{line}");
    }
    // Every change of meaning is recorded under its requirement, with the old text.
    for r in &cat.requirements {
        for v in &r.revisions {
            let line = format!(
                "*Revised {} ({}): was \"{}\" {}*",
                v.date, v.change, v.was, v.why
            );
            assert!(
                spec.contains(&line),
                "SPEC.md lacks the revision of {}:\n{line}",
                r.id
            );
        }
    }
    let listed: BTreeSet<String> = spec
        .lines()
        .filter(|l| l.starts_with("- **SLIM-"))
        .flat_map(cited_ids)
        .collect();
    let known: BTreeSet<String> = cat.requirements.iter().map(|r| r.id.clone()).collect();
    assert_eq!(
        listed, known,
        "SPEC.md and requirements.yaml list different ids"
    );
}

#[test]
fn every_cited_id_exists() {
    let known: BTreeSet<String> = catalogue().requirements.into_iter().map(|r| r.id).collect();
    let mut files = Vec::new();
    for dir in [
        "proto",
        "reference/src",
        "reference/tests",
        "conformance/src",
        "conformance/tests",
        "vectors",
        "spec",
    ] {
        files_under(&root().join(dir), &mut files);
    }
    let mut unknown = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for id in cited_ids(&text) {
            if !known.contains(&id) {
                unknown.push(format!("{}: {id}", f.display()));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "ids cited but not in the catalogue:\n{}",
        unknown.join("\n")
    );
}

#[test]
fn every_requirement_has_a_case_or_a_reason() {
    let cases = slim_conformance::case_index();
    let mut missing = Vec::new();
    for r in catalogue().requirements {
        let covered = cases.iter().any(|(_, reqs)| reqs.contains(&r.id));
        if !covered && r.untested.as_deref().is_none_or(str::is_empty) {
            missing.push(r.id.clone());
        }
        if covered && r.untested.is_some() {
            missing.push(format!("{} has cases but also an `untested` reason", r.id));
        }
    }
    assert!(
        missing.is_empty(),
        "requirements with no conformance case and no `untested:` reason:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_case_cites_known_requirements() {
    let known: BTreeSet<String> = catalogue().requirements.into_iter().map(|r| r.id).collect();
    let mut ids = BTreeSet::new();
    for (id, requirements) in slim_conformance::case_index() {
        assert!(!requirements.is_empty(), "{id} cites no requirement");
        for r in &requirements {
            assert!(known.contains(r), "{id} cites unknown {r}");
        }
        assert!(ids.insert(id.clone()), "duplicate case id {id}");
    }
    assert!(ids.len() >= 60, "only {} cases", ids.len());
    let session = slim_conformance::session::cases::all();
    assert!(session.len() >= 45, "only {} session cases", session.len());
}

#[test]
fn runner_catalogue_loads() {
    let cat = slim_conformance::catalogue::Catalogue::builtin().expect("catalogue loads");
    assert_eq!(cat.iter().count(), catalogue().requirements.len());
}
