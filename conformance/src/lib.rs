//! slim-conformance: judges any SLIM node, requirement by requirement.
//!
//! The runner plays every client over raw `OpenChannel` streams ([`client`]), runs the cases of
//! [`cases`] one by one ([`runner`]), and judges them against the requirement catalogue compiled
//! from `spec/requirements.yaml` ([`catalogue`]). Expected behaviour comes from the spec and the
//! vectors only; the reference relay is used solely as the embedded default target.

pub mod case;
pub mod cases;
pub mod catalogue;
pub mod cli;
pub mod client;
pub mod delay;
pub mod evidence;
pub mod expectations;
pub mod harness;
pub mod report;
pub mod runner;
pub mod verdict;
