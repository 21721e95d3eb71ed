//! Pacing: how a publisher under `--rate` waits for each message's due time.
//!
//! Message `k` of a publisher paced at `r` msgs/s is due `k / r` seconds after the publisher
//! started. tokio's timer has a resolution of one millisecond, so sleeping until each due time
//! ([`Pacing::Timer`]) releases every message due within one tick together: at 130 000 msgs/s,
//! bursts of about 130 that queue behind each other at every hop and show up as latency that
//! belongs to the generator, not to the node. [`Pacing::Smooth`] sleeps only while the due time is
//! more than a tick away and then yields to the runtime until it arrives, so messages leave one
//! by one on schedule; the receivers on the same runtime keep running between the yields. The
//! price is a generator core kept busy, which is why the load generator gets a core of its own
//! (`bench/LOAD.md`, "Peers").

use std::time::Duration;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Within this distance of the due time, [`Pacing::Smooth`] yields instead of sleeping: above the
/// timer's resolution, so a sleep never overshoots the due time.
const SPIN_WINDOW: Duration = Duration::from_millis(2);

/// How a paced publisher waits for a message's due time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Pacing {
    /// Sleep until the due time on tokio's timer (1 ms resolution): messages due within one tick
    /// leave together, in bursts.
    Timer,
    /// Sleep to within a couple of ticks, then yield until the due time: messages leave one by
    /// one, and the generator's core stays busy.
    #[default]
    Smooth,
}

impl Pacing {
    /// What result files written before pacing was selectable used: they all slept on the timer.
    pub fn legacy() -> Self {
        Pacing::Timer
    }

    /// The name used on the command line and in result files.
    pub fn as_str(self) -> &'static str {
        match self {
            Pacing::Timer => "timer",
            Pacing::Smooth => "smooth",
        }
    }

    /// Returns once `due` has passed.
    pub async fn wait_until(self, due: Instant) {
        match self {
            Pacing::Timer => {
                if due > Instant::now() {
                    tokio::time::sleep_until(due).await;
                }
            }
            Pacing::Smooth => {
                if let Some(early) = due.checked_sub(SPIN_WINDOW) {
                    if early > Instant::now() {
                        tokio::time::sleep_until(early).await;
                    }
                }
                while Instant::now() < due {
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}

/// The due time of a publisher's message `seq` when the publisher started at `t0` and sends
/// `rate` messages per second.
pub fn due(t0: Instant, seq: u64, rate: f64) -> Instant {
    t0 + Duration::from_secs_f64(seq as f64 / rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_times_are_evenly_spaced() {
        let t0 = Instant::now();
        assert_eq!(due(t0, 0, 1000.0), t0);
        assert_eq!(due(t0, 1, 1000.0) - t0, Duration::from_millis(1));
        assert_eq!(due(t0, 130, 130_000.0) - t0, Duration::from_millis(1));
    }

    /// While a smooth pacer waits, the other tasks of a one-thread runtime keep running: it
    /// yields instead of spinning on the thread, so receivers are not starved.
    #[tokio::test(flavor = "current_thread")]
    async fn smooth_pacing_lets_other_tasks_run() {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::Arc;
        let ticks = Arc::new(AtomicU64::new(0));
        let counter = {
            let ticks = ticks.clone();
            tokio::spawn(async move {
                loop {
                    ticks.fetch_add(1, Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            })
        };
        // Entirely inside the spin window: no sleep, only yields.
        Pacing::Smooth
            .wait_until(Instant::now() + Duration::from_millis(1))
            .await;
        counter.abort();
        assert!(
            ticks.load(Ordering::Relaxed) > 0,
            "the other task never ran"
        );
    }

    /// Smooth pacing never releases a message before its due time, even when the due times are
    /// far closer together than the timer's resolution.
    #[tokio::test(flavor = "current_thread")]
    async fn smooth_pacing_never_releases_early() {
        let rate = 20_000.0;
        let t0 = Instant::now() + Duration::from_millis(5);
        for seq in 0..20 {
            let d = due(t0, seq, rate);
            Pacing::Smooth.wait_until(d).await;
            let now = Instant::now();
            assert!(now >= d, "message {seq} left {:?} early", d - now);
        }
    }
}
