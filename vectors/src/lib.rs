//! Deterministic SLIM test vectors, their generator and their verifier.
//!
//! The vectors live next to this crate as YAML files (`vectors/*.yaml`, listed in [`FILES`]), one
//! per area of the wire protocol. They are in the style of Project Wycheproof: every file has a
//! header (schema, area, description, the requirement ids it pins, the generator) and a list of
//! vectors, each with a `tc_id`, a `comment`, a `result` (`valid`, `invalid` or `acceptable`, see
//! [`common::Outcome`]) and, for the last two, a `reason`.
//!
//! Two rules keep the vectors worth having:
//!
//! - **Independent expectations.** The generator computes every expected value from the
//!   primitive crates (`xxhash-rust`, `x25519-dalek`, `hkdf`, `hmac`, `sha2`, a hand-written
//!   protobuf writer), following the text of WIRE.md and `spec/requirements.yaml`. It never asks
//!   `slim-proto`, which is what [`verify`] then checks against the files, and it does not depend
//!   on `slim-reference` at all. Routing expectations are written by hand from the requirement
//!   texts ([`routing::scenarios`]).
//! - **Determinism.** Fixed inputs and seeds, no clock, no OS randomness, no hash-map iteration:
//!   [`render`] returns byte-identical text on every run, and a test compares it with the
//!   committed files.
//!
//! Entry points: [`generate`] writes the files, [`render`] returns them, [`verify`] checks
//! `slim-proto` against a directory of them.

#![forbid(unsafe_code)]

pub mod common;
pub mod encodings;
pub mod ids;
pub mod link;
pub mod mac;
pub mod names;
pub mod routing;

use std::path::{Path, PathBuf};

pub use common::{FileReport, VerifyReport};

/// The vector files, in the order they are generated and verified.
pub const FILES: &[&str] = &[
    names::FILE,
    ids::FILE,
    link::FILE,
    mac::FILE,
    encodings::FILE,
    routing::FILE,
];

/// What can go wrong while generating, reading or verifying vector files.
#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    /// A file or directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The path that failed.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file or directory could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The path that failed.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A vector file is not valid YAML of its schema.
    #[error("{file}: not a valid vector file: {message}")]
    Parse {
        /// The file name (one of [`FILES`]).
        file: String,
        /// The serde message, with line and column where known.
        message: String,
    },
    /// A vector file could not be serialised.
    #[error("{file}: cannot serialise: {message}")]
    Render {
        /// The file name (one of [`FILES`]).
        file: String,
        /// The serde message.
        message: String,
    },
    /// The generator's independent computation disagrees with a known value or with itself
    /// (for example a WIRE.md §2.1 hash, or the two sides of an X25519 exchange).
    #[error("generator self-check failed: {0}")]
    SelfCheck(String),
}

/// Renders every vector file: `(file name, contents)` in [`FILES`] order, without writing.
pub fn render() -> Result<Vec<(&'static str, String)>, VectorError> {
    Ok(vec![
        (names::FILE, common::to_yaml(names::FILE, &names::build()?)?),
        (ids::FILE, common::to_yaml(ids::FILE, &ids::build()?)?),
        (link::FILE, common::to_yaml(link::FILE, &link::build()?)?),
        (mac::FILE, common::to_yaml(mac::FILE, &mac::build()?)?),
        (
            encodings::FILE,
            common::to_yaml(encodings::FILE, &encodings::build()?)?,
        ),
        (
            routing::FILE,
            common::to_yaml(routing::FILE, &routing::build())?,
        ),
    ])
}

/// Writes every vector file into `dir` (created if needed) and returns the paths written.
pub fn generate(dir: &Path) -> Result<Vec<PathBuf>, VectorError> {
    std::fs::create_dir_all(dir).map_err(|source| VectorError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut written = Vec::new();
    for (file, text) in render()? {
        let path = dir.join(file);
        std::fs::write(&path, text).map_err(|source| VectorError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

/// Reads every file of [`FILES`] from `dir` and checks `slim-proto` against each vector.
///
/// Valid vectors must produce the expected outputs, invalid ones must be rejected, acceptable ones
/// may go either way and are recorded in [`FileReport::acceptable`]. A missing or unparsable file
/// is an error; a vector that does not hold is a failure in the report.
pub fn verify(dir: &Path) -> Result<VerifyReport, VectorError> {
    let mut per_file = Vec::new();
    for file in FILES {
        let text = read(dir, file)?;
        let report = match *file {
            names::FILE => names::verify(&common::from_yaml(file, &text)?),
            ids::FILE => ids::verify(&common::from_yaml(file, &text)?),
            link::FILE => link::verify(&common::from_yaml(file, &text)?),
            mac::FILE => mac::verify(&common::from_yaml(file, &text)?),
            encodings::FILE => encodings::verify(&common::from_yaml(file, &text)?),
            _ => routing::verify(&common::from_yaml(file, &text)?),
        };
        per_file.push(report);
    }
    Ok(VerifyReport { per_file })
}

fn read(dir: &Path, file: &str) -> Result<String, VectorError> {
    let path = dir.join(file);
    std::fs::read_to_string(&path).map_err(|source| VectorError::Read { path, source })
}

/// The directory holding the committed vector files (this crate's root).
pub fn committed_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
