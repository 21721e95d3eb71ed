//! The session profile: the runner judges SLIM *client* implementations (SDKs) on the session
//! layer (SLIM-SESS, -REL, -IDENT, -MLS).
//!
//! Each implementation hosts the driver service (`proto/conformance/v1/driver.proto`,
//! `spec/DRIVER.md`) and is reached through a [`driver::Driver`]. Its apps connect to a harness
//! node ([`crate::harness`]) that the runner controls: it forwards to the embedded reference relay
//! or any `--node`, injects seeded faults, and keeps the transcript the cases judge from. Every
//! case runs as a matrix of every implementation in every role ([`matrix`]); "unsupported" (the
//! shim answered UNIMPLEMENTED, or lacks a capability) is kept apart from "failed".
//!
//! What the cases know about correct behaviour comes from `spec/` only: they read the wire in
//! the transcript, and never ask the reference session layer what is right.

pub mod cases;
pub mod cell;
pub mod cli;
pub mod driver;
pub mod matrix;

use crate::harness::TranscriptEntry;

/// One transcript entry as a line of text (console and HTML evidence).
pub fn transcript_line(e: &TranscriptEntry) -> String {
    let dir = match e.dir {
        Some(crate::harness::Dir::ToNode) => "→node",
        Some(crate::harness::Dir::FromNode) => "node→",
        None => "",
    };
    if e.kind == "note" {
        return format!(
            "{:>7.1}ms  -- {}",
            e.at_us as f64 / 1000.0,
            e.note.clone().unwrap_or_default()
        );
    }
    let mut s = format!(
        "{:>7.1}ms link{:<3} {dir:<6} {}",
        e.at_us as f64 / 1000.0,
        e.link,
        e.kind
    );
    if let Some(h) = e.session {
        s.push_str(&format!(
            " {} sid={} mid={}",
            e.message_type_name().unwrap_or("?"),
            h.session_id,
            h.message_id
        ));
        if h.error {
            s.push_str(" error");
        }
    }
    if let Some(src) = &e.source {
        s.push_str(&format!(" {src}"));
    }
    if let Some(dst) = &e.destination {
        s.push_str(&format!(" → {dst}"));
    }
    if let Some(epoch) = e.mls_epoch {
        s.push_str(&format!(" epoch={epoch}"));
    }
    if let Some(f) = &e.fault {
        s.push_str(&format!(" [FAULT {f}]"));
    }
    s
}
