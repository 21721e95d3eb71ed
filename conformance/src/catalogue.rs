//! The requirement catalogue (`spec/requirements.yaml`), compiled into the runner.
//!
//! Verdicts are judged against these requirements: a case's primary requirement decides whether a
//! violation is a failure (MUST), a warning (SHOULD) or information (MAY).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The catalogue text as shipped with this build of the runner.
pub const REQUIREMENTS_YAML: &str = include_str!("../../spec/requirements.yaml");

/// Requirement level (RFC 2119).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Level {
    /// Breaking it means non-conformance.
    #[serde(rename = "MUST")]
    Must,
    /// Breaking it needs a reason; reported as a warning.
    #[serde(rename = "SHOULD")]
    Should,
    /// Optional behaviour; recorded as information.
    #[serde(rename = "MAY")]
    May,
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Level::Must => "MUST",
            Level::Should => "SHOULD",
            Level::May => "MAY",
        })
    }
}

/// One requirement of `spec/requirements.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    /// `SLIM-AREA-NNN`.
    pub id: String,
    /// MUST / SHOULD / MAY.
    pub level: Level,
    /// SPEC.md section key.
    pub section: String,
    /// Short title.
    pub title: String,
    /// The normative sentence.
    pub text: String,
    /// `real`, `draft` or `decision`.
    pub source: String,
    /// Why we decided so (decisions only).
    pub reason: Option<String>,
    /// What the real node does where it differs.
    pub real_node: Option<String>,
    /// Why no conformance case checks this requirement (when none does).
    pub untested: Option<String>,
    /// Every change of meaning under this id, oldest first.
    #[serde(default)]
    pub revisions: Vec<Revision>,
}

/// A change of a requirement's meaning under the same id.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revision {
    /// When (YYYY-MM-DD).
    pub date: String,
    /// The commit or issue that made it.
    pub change: String,
    /// The text before.
    pub was: String,
    /// Why it changed.
    pub why: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    schema: u32,
    requirements: Vec<Requirement>,
}

/// The loaded catalogue, by id.
#[derive(Debug, Clone)]
pub struct Catalogue {
    by_id: BTreeMap<String, Requirement>,
    order: Vec<String>,
}

/// The catalogue could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    /// Not valid YAML for the schema.
    #[error("requirements catalogue does not parse: {0}")]
    Parse(String),
    /// Unsupported schema version.
    #[error("requirements catalogue has schema {0}; this runner reads schema 1")]
    Schema(u32),
    /// Two entries with one id.
    #[error("requirements catalogue lists {0} twice")]
    Duplicate(String),
}

impl Catalogue {
    /// The catalogue compiled into this runner.
    pub fn builtin() -> Result<Self, CatalogueError> {
        Self::parse(REQUIREMENTS_YAML)
    }

    /// Parses catalogue YAML.
    pub fn parse(text: &str) -> Result<Self, CatalogueError> {
        let file: File =
            serde_yaml::from_str(text).map_err(|e| CatalogueError::Parse(e.to_string()))?;
        if file.schema != 1 {
            return Err(CatalogueError::Schema(file.schema));
        }
        let mut by_id = BTreeMap::new();
        let mut order = Vec::new();
        for r in file.requirements {
            order.push(r.id.clone());
            if by_id.insert(r.id.clone(), r).is_some() {
                return Err(CatalogueError::Duplicate(order.pop().unwrap_or_default()));
            }
        }
        Ok(Self { by_id, order })
    }

    /// A requirement by id.
    pub fn get(&self, id: &str) -> Option<&Requirement> {
        self.by_id.get(id)
    }

    /// All requirements in catalogue order.
    pub fn iter(&self) -> impl Iterator<Item = &Requirement> {
        self.order.iter().filter_map(|id| self.by_id.get(id))
    }
}
