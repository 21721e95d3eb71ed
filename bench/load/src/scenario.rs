//! Scenarios: who subscribes to what, who publishes where, and how many deliveries to expect.
//!
//! `--msgs N` is per publisher. With `P` publishers and `S` subscribers:
//!
//! | scenario | publisher `i` sends to | fanout | expected deliveries |
//! |---|---|---|---|
//! | `p2p` | `sub-i` (subscriber `i` alone), `P = S` | 1 | `N × P` (N per pair) |
//! | `fanout` | `fan`, subscribed by all S | 256 (broadcast) | `N × P × S` |
//! | `anycast` | `any`, subscribed by all S | 1 (one of them, round robin) | `N × P` |
//! | `reqrep` | `svc` (anycast); the subscriber echoes to `pub-i` | 1 | `N × P` round trips |
//!
//! Names are `bench/<run-id>/<service>` with the null id, unique per run.

use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use slim_proto::names::SlimName;

/// The traffic pattern of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Publisher `i` → subscriber `i`.
    P2p,
    /// Every publish is broadcast to all subscribers.
    Fanout,
    /// Every publish goes to one of the subscribers (round robin at the node).
    Anycast,
    /// Request (anycast) and echo back to the publisher; latency is the round trip.
    Reqrep,
}

impl Scenario {
    /// The lowercase name used on the command line and in JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            Scenario::P2p => "p2p",
            Scenario::Fanout => "fanout",
            Scenario::Anycast => "anycast",
            Scenario::Reqrep => "reqrep",
        }
    }

    /// The fanout publishers put in their header.
    pub fn fanout(&self) -> u32 {
        match self {
            Scenario::Fanout => slim_proto::BROADCAST_FANOUT,
            _ => slim_proto::ANYCAST_FANOUT,
        }
    }

    /// How many deliveries one published message should produce (what a publisher's window
    /// waits for).
    pub fn copies(&self, subscribers: usize) -> u32 {
        match self {
            Scenario::Fanout => u32::try_from(subscribers).unwrap_or(u32::MAX),
            _ => 1,
        }
    }

    /// Total deliveries a correct node produces for `msgs` per publisher.
    pub fn expected(&self, msgs: u64, publishers: usize, subscribers: usize) -> u64 {
        let per_pub = match self {
            Scenario::Fanout => msgs * subscribers as u64,
            _ => msgs,
        };
        per_pub * publishers as u64
    }

    /// Checks the client counts for this scenario.
    pub fn check_counts(&self, publishers: usize, subscribers: usize) -> Result<(), String> {
        if publishers == 0 || subscribers == 0 {
            return Err("--publishers and --subscribers must be at least 1".into());
        }
        if *self == Scenario::P2p && publishers != subscribers {
            return Err(format!(
                "p2p pairs publisher i with subscriber i: --publishers ({publishers}) must equal --subscribers ({subscribers})"
            ));
        }
        Ok(())
    }
}

/// The names of one run.
#[derive(Debug, Clone)]
pub struct Names {
    namespace: String,
}

impl Names {
    /// Names under `bench/<run_id>/…`.
    pub fn new(run_id: &str) -> Self {
        Self {
            namespace: run_id.to_string(),
        }
    }

    fn name(&self, service: &str) -> SlimName {
        SlimName::new("bench", &self.namespace, service)
    }

    /// Publisher `i`'s own name (its source; in `reqrep` also where echoes go).
    pub fn publisher(&self, i: usize) -> SlimName {
        self.name(&format!("pub-{i}"))
    }

    /// The name subscriber `j` subscribes to (its destination).
    pub fn subscription(&self, scenario: Scenario, j: usize) -> SlimName {
        match scenario {
            Scenario::P2p => self.name(&format!("sub-{j}")),
            Scenario::Fanout => self.name("fan"),
            Scenario::Anycast => self.name("any"),
            Scenario::Reqrep => self.name("svc"),
        }
    }

    /// Subscriber `j`'s source name when it echoes (`reqrep`).
    pub fn subscriber_source(&self, j: usize) -> SlimName {
        self.name(&format!("sub-{j}"))
    }

    /// Where publisher `i` publishes.
    pub fn destination(&self, scenario: Scenario, i: usize) -> SlimName {
        self.subscription(scenario, i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_deliveries() {
        assert_eq!(Scenario::P2p.expected(100, 3, 3), 300);
        assert_eq!(Scenario::Fanout.expected(100, 1, 16), 1600);
        assert_eq!(Scenario::Anycast.expected(100, 2, 4), 200);
        assert_eq!(Scenario::Reqrep.expected(100, 2, 4), 200);
        assert!(Scenario::P2p.check_counts(2, 3).is_err());
        assert!(Scenario::Fanout.check_counts(1, 0).is_err());
    }
}
