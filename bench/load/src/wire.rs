//! Wire bytes, measured on the sockets: the kernel's per-connection TCP counters, read with
//! `ss -tinH` (iproute2) before and after a run.
//!
//! `bytes_sent` and `bytes_received` of a TCP socket count payload bytes (no IP or TCP headers):
//! exactly what the protocol put on the wire, framing, headers, acknowledgements and keep-alives
//! included. The benchmark samples the client side of every established connection to the
//! target's port (`dport`), so `up` is what the clients sent to the broker and `down` what the
//! broker sent to them. Other connections to the same port (another benchmark on the machine)
//! would be counted too: the numbers are only as clean as the machine.
//!
//! Connections opened or closed between the two samples are counted from their first or up to
//! their last sample; the benchmarks open every connection before the first sample and close
//! them after the second.

use std::collections::BTreeMap;
use std::process::Command;

use serde::{Deserialize, Serialize};

/// Bytes the clients sent to the target (`up`) and received from it (`down`) during a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireBytes {
    /// Client → target.
    pub up: u64,
    /// Target → clients.
    pub down: u64,
}

/// Per connection (`local address → peer address`): bytes sent and received so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sample(BTreeMap<String, (u64, u64)>);

impl Sample {
    /// Reads the counters of every established TCP connection to `port` on this machine;
    /// `None` if `ss` is missing or fails.
    pub fn take(port: u16) -> Option<Sample> {
        let out = Command::new("ss")
            .args(["-tinH", "state", "established"])
            .arg(format!("( dport = :{port} )"))
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        Some(parse(&String::from_utf8_lossy(&out.stdout)))
    }

    /// Connections in this sample.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no connection was seen.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What moved between `self` (before) and `after`, over the connections of `after`.
    pub fn delta(&self, after: &Sample) -> WireBytes {
        let mut d = WireBytes::default();
        for (conn, (sent, received)) in &after.0 {
            let (s0, r0) = self.0.get(conn).copied().unwrap_or((0, 0));
            d.up += sent.saturating_sub(s0);
            d.down += received.saturating_sub(r0);
        }
        d
    }
}

/// Parses `ss -tinH` output: a line with the addresses (`0 0 local peer`), then a line of
/// `key:value` details with `bytes_sent:` and `bytes_received:` (either may be absent when 0).
fn parse(text: &str) -> Sample {
    let mut map = BTreeMap::new();
    let mut conn: Option<String> = None;
    for line in text.lines() {
        let starts_indented = line.starts_with([' ', '\t']);
        let fields: Vec<&str> = line.split_whitespace().collect();
        if !starts_indented && fields.len() >= 4 && fields[0].parse::<u64>().is_ok() {
            conn = Some(format!("{} {}", fields[2], fields[3]));
            continue;
        }
        let Some(c) = conn.take() else {
            continue;
        };
        let counter = |key: &str| {
            fields
                .iter()
                .find_map(|f| f.strip_prefix(key))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        map.insert(c, (counter("bytes_sent:"), counter("bytes_received:")));
    }
    Sample(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "0      0      127.0.0.1:40000 127.0.0.1:18830\n\t cubic wscale:7,7 rto:204 bytes_sent:100 bytes_acked:100 bytes_received:4 segs_out:3\n0      0      127.0.0.1:40002 127.0.0.1:18830\n\t cubic rto:204 bytes_received:9\n";
    const AFTER: &str = "0      0      127.0.0.1:40000 127.0.0.1:18830\n\t cubic wscale:7,7 rto:204 bytes_sent:10100 bytes_acked:10100 bytes_received:1004 segs_out:3\n0      0      127.0.0.1:40002 127.0.0.1:18830\n\t cubic rto:204 bytes_sent:7 bytes_received:10709\n0      0      127.0.0.1:40004 127.0.0.1:18830\n\t cubic bytes_sent:50\n";

    #[test]
    fn parses_ss_and_subtracts() {
        let before = parse(BEFORE);
        let after = parse(AFTER);
        assert_eq!(before.len(), 2);
        assert_eq!(after.len(), 3);
        // 10000 + 7 + 50 (a connection new since `before` counts from 0) up; 1000 + 10700 down.
        assert_eq!(
            before.delta(&after),
            WireBytes {
                up: 10_057,
                down: 11_700
            }
        );
        assert!(parse("").is_empty());
    }
}
