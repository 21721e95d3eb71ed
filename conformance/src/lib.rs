//! slim-conformance: judges any SLIM node, requirement by requirement.
//!
//! The runner plays every client over raw `OpenChannel` streams ([`client`]), runs the cases of
//! [`cases`] one by one ([`runner`]), and judges them against the requirement catalogue compiled
//! from `spec/requirements.yaml` ([`catalogue`]). Expected behaviour comes from the spec and the
//! vectors only; the reference relay is used solely as the embedded default target.

pub mod args;
pub mod case;
pub mod cases;
pub mod catalogue;
pub mod cli;
pub mod client;
pub mod conn;
pub mod delay;
pub mod evidence;
pub mod expectations;
pub mod harness;
pub mod html;
pub mod jwt;
pub mod report;
pub mod revoke;
pub mod runner;
pub mod session;
pub mod verdict;

/// Every case of both profiles as `(id, cited requirement ids)`: node cases, then session cases
/// (`list --cases`, `coverage`).
pub fn case_index() -> Vec<(String, Vec<String>)> {
    cases::all()
        .into_iter()
        .map(|c| (c.id, c.requirements))
        .chain(session::cases::all().into_iter().map(|c| {
            (
                c.id.to_string(),
                c.requirements.iter().map(|r| r.to_string()).collect(),
            )
        }))
        .collect()
}
