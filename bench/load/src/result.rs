//! Results: the metrics of one run, the versioned JSON document, and the printed tables.
//!
//! The JSON document (`"schema": "slim-bench/result/v1"`) is described in `bench/LOAD.md`. A `run`
//! writes one target with one round; `vs` writes two targets (`A`, `B`) with K rounds each.
//! Every target also carries `summary`: the median of each metric over its rounds.

use std::collections::BTreeMap;
use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::error::BenchError;
use crate::pace::Pacing;
use crate::procstat::Machine;
use crate::scenario::Scenario;
use crate::transport::Transport;

/// The schema id of result documents this version writes and reads.
pub const SCHEMA: &str = "slim-bench/result/v1";

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest sample.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

/// What one run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Metrics {
    /// Deliveries a correct node produces (warm-up included).
    pub expected: u64,
    /// Distinct expected deliveries that arrived.
    pub delivered: u64,
    /// `expected - delivered`.
    pub lost: u64,
    /// Deliveries of a message the receiver (or, for anycast, any receiver) already had.
    pub duplicates: u64,
    /// Publishes received that were not for the receiver (null relay broadcasts everything).
    pub ignored: u64,
    /// Measured (post-warm-up) deliveries.
    pub measured: u64,
    /// Seconds from the first measured send to the last measured delivery.
    pub duration_s: f64,
    /// Seconds from the first send to the end of the run (drain included).
    pub wall_s: f64,
    /// Measured deliveries per second.
    pub msgs_per_s: f64,
    /// Measured payload bytes delivered per second.
    pub bytes_per_s: f64,
    /// One-way latency (round trip for `reqrep`).
    pub latency_us: Latency,
    /// CPU seconds the target process used during the run (`--target-pid`).
    pub target_cpu_s: Option<f64>,
    /// Peak RSS of the target process in KiB (`VmHWM`, over its whole life).
    pub target_peak_rss_kib: Option<u64>,
    /// CPU seconds this benchmark process used during the run (clients, and the embedded relay).
    pub client_cpu_s: Option<f64>,
    /// Paced runs: how late the latest measured message left after its due time, in µs. Large
    /// values mean the generator or the window could not keep the schedule, so the run offered
    /// less than `--rate` for a while.
    pub send_lag_max_us: Option<f64>,
    /// Paced runs: measured messages that left more than [`LATE_SEND_US`] µs after their due time.
    pub late_sends: Option<u64>,
    /// Messages the publishers sent, warm-up included (0 in files written before this field).
    #[serde(default)]
    pub published: u64,
    /// Payload bytes of TCP the clients sent to the target during the run, read from the
    /// kernel's socket counters (`crate::wire`); `None` without `ss` or for `embedded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wire_up_bytes: Option<u64>,
    /// Payload bytes of TCP the target sent to the clients during the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wire_down_bytes: Option<u64>,
    /// Transports with broker acknowledgements: publishes the broker acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed: Option<u64>,
    /// Transports with broker acknowledgements: publishes refused or never acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unconfirmed: Option<u64>,
}

/// A paced message that leaves this many µs after its due time counts in `late_sends`.
pub const LATE_SEND_US: u64 = 1_000;

impl Metrics {
    /// True when the node lost or duplicated nothing (and confirmed every publish, where
    /// publishes are confirmed).
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicates == 0 && self.unconfirmed.unwrap_or(0) == 0
    }

    /// TCP payload bytes, both directions, per published message (fan-out: one publish and all
    /// its deliveries); `None` without socket counters.
    pub fn wire_bytes_per_msg(&self) -> Option<f64> {
        let total = self.wire_up_bytes? + self.wire_down_bytes?;
        (self.published > 0).then(|| total as f64 / self.published as f64)
    }

    /// Target CPU microseconds per published message.
    pub fn target_cpu_us_per_msg(&self) -> Option<f64> {
        let cpu = self.target_cpu_s?;
        (self.published > 0).then(|| cpu * 1e6 / self.published as f64)
    }
}

/// One comparable metric: its JSON key, a label, how to read it, and which way is better.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    /// Key in `summary`.
    pub key: &'static str,
    /// Column label.
    pub label: &'static str,
    /// Reads it from a run.
    pub get: fn(&Metrics) -> Option<f64>,
    /// Whether a larger value is better (throughput) or worse (latency, CPU).
    pub higher_is_better: bool,
}

/// The metrics `vs` and `compare` summarise, in table order.
pub const METRICS: &[MetricDef] = &[
    MetricDef {
        key: "msgs_per_s",
        label: "msgs/s",
        get: |m| Some(m.msgs_per_s),
        higher_is_better: true,
    },
    MetricDef {
        key: "bytes_per_s",
        label: "bytes/s",
        get: |m| Some(m.bytes_per_s),
        higher_is_better: true,
    },
    MetricDef {
        key: "p50_us",
        label: "p50 µs",
        get: |m| Some(m.latency_us.p50),
        higher_is_better: false,
    },
    MetricDef {
        key: "p90_us",
        label: "p90 µs",
        get: |m| Some(m.latency_us.p90),
        higher_is_better: false,
    },
    MetricDef {
        key: "p99_us",
        label: "p99 µs",
        get: |m| Some(m.latency_us.p99),
        higher_is_better: false,
    },
    MetricDef {
        key: "p999_us",
        label: "p99.9 µs",
        get: |m| Some(m.latency_us.p999),
        higher_is_better: false,
    },
    MetricDef {
        key: "max_us",
        label: "max µs",
        get: |m| Some(m.latency_us.max),
        higher_is_better: false,
    },
    MetricDef {
        key: "lost",
        label: "lost",
        get: |m| Some(m.lost as f64),
        higher_is_better: false,
    },
    MetricDef {
        key: "duplicates",
        label: "duplicates",
        get: |m| Some(m.duplicates as f64),
        higher_is_better: false,
    },
    MetricDef {
        key: "send_lag_max_us",
        label: "send lag max µs",
        get: |m| m.send_lag_max_us,
        higher_is_better: false,
    },
    MetricDef {
        key: "target_cpu_s",
        label: "target CPU s",
        get: |m| m.target_cpu_s,
        higher_is_better: false,
    },
    MetricDef {
        key: "target_cpu_us_per_msg",
        label: "target CPU µs/msg",
        get: |m| m.target_cpu_us_per_msg(),
        higher_is_better: false,
    },
    MetricDef {
        key: "wire_bytes_per_msg",
        label: "wire B/msg",
        get: |m| m.wire_bytes_per_msg(),
        higher_is_better: false,
    },
    MetricDef {
        key: "unconfirmed",
        label: "unconfirmed",
        get: |m| m.unconfirmed.map(|v| v as f64),
        higher_is_better: false,
    },
    MetricDef {
        key: "target_peak_rss_kib",
        label: "target peak RSS KiB",
        get: |m| m.target_peak_rss_kib.map(|v| v as f64),
        higher_is_better: false,
    },
];

/// The scenario parameters of a result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Params {
    /// Traffic pattern.
    pub scenario: Scenario,
    /// Payload bytes per message.
    pub size: usize,
    /// Measured messages per publisher.
    pub msgs: u64,
    /// Publishing clients.
    pub publishers: usize,
    /// Subscribing clients.
    pub subscribers: usize,
    /// Total paced rate in messages/s; `None` = as fast as the window allows.
    pub rate: Option<f64>,
    /// How a paced publisher waits for each due time; `None` when `rate` is. Paced files written
    /// before the choice existed have no such field and read as `timer`, which is what they used
    /// (see [`ResultFile::read`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pacing: Option<Pacing>,
    /// Warm-up messages per publisher, delivered and checked but not measured.
    pub warmup: u64,
    /// Messages in flight (sent, not yet delivered) allowed across all publishers.
    pub window: usize,
    /// Seconds without progress after which the rest counts as lost.
    pub drain_timeout_s: f64,
}

/// One target of a result document and its rounds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TargetResult {
    /// `target` for a run, `A`/`B` for `vs`.
    pub label: String,
    /// The URL measured (`embedded` for the in-process reference relay).
    pub url: String,
    /// What was measured, in words (`--system`, e.g. "SLIM node 3.4.6", "mosquitto 2.0.11
    /// QoS 1"): what tables and plots call this target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// `slim` (gRPC clients) or `nats` (async-nats clients), from the URL's scheme. Files written
    /// before NATS support have no such field and read as `slim`.
    #[serde(default)]
    pub transport: Transport,
    /// The target process, when given.
    pub pid: Option<u32>,
    /// Every round, in the order run.
    pub rounds: Vec<Metrics>,
    /// Median of each metric of [`METRICS`] over the rounds.
    pub summary: BTreeMap<String, f64>,
}

impl TargetResult {
    /// A target with its rounds and their medians.
    pub fn new(label: &str, url: &str, pid: Option<u32>, rounds: Vec<Metrics>) -> Self {
        let summary = METRICS
            .iter()
            .filter_map(|d| {
                let values: Vec<f64> = rounds.iter().filter_map(d.get).collect();
                median(&values).map(|m| (d.key.to_string(), m))
            })
            .collect();
        Self {
            label: label.to_string(),
            url: url.to_string(),
            system: None,
            transport: Transport::of_url(url),
            pid,
            rounds,
            summary,
        }
    }

    /// The same target named `system` (`None` keeps it unnamed).
    pub fn named(mut self, system: Option<&str>) -> Self {
        self.system = system.map(str::to_string);
        self
    }

    /// The values of one metric over the rounds.
    pub fn values(&self, def: &MetricDef) -> Vec<f64> {
        self.rounds.iter().filter_map(def.get).collect()
    }
}

/// A versioned result document.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResultFile {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Version of slim-bench that wrote it.
    pub tool_version: String,
    /// `run` or `vs`.
    pub kind: String,
    /// The exact command line (argv).
    pub command_line: Vec<String>,
    /// Seconds since the Unix epoch when the document was written.
    pub created_unix_s: u64,
    /// Where it was measured.
    pub machine: Machine,
    /// What was measured.
    pub params: Params,
    /// The targets, each with its rounds.
    pub targets: Vec<TargetResult>,
}

impl ResultFile {
    /// A document for this machine, now.
    pub fn new(
        kind: &str,
        command_line: Vec<String>,
        params: Params,
        targets: Vec<TargetResult>,
    ) -> Self {
        Self {
            schema: SCHEMA.into(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            kind: kind.into(),
            command_line,
            created_unix_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            machine: Machine::detect(),
            params,
            targets,
        }
    }

    /// Writes the document as pretty JSON.
    pub fn write(&self, path: &str) -> Result<(), BenchError> {
        let io = |source| BenchError::Io {
            path: path.to_string(),
            source,
        };
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| io(std::io::Error::other(e.to_string())))?;
        std::fs::write(path, text + "\n").map_err(io)
    }

    /// Reads and checks a document.
    pub fn read(path: &str) -> Result<Self, BenchError> {
        let text = std::fs::read_to_string(path).map_err(|source| BenchError::Io {
            path: path.to_string(),
            source,
        })?;
        let bad = |reason: String| BenchError::BadResult {
            path: path.to_string(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        match value.get("schema").and_then(|s| s.as_str()) {
            Some(SCHEMA) => {}
            Some(other) => return Err(bad(format!("schema {other:?}, expected {SCHEMA:?}"))),
            None => return Err(bad("no \"schema\" field".into())),
        }
        let mut doc: ResultFile = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        doc.params.pacing = match doc.params.rate {
            Some(_) => Some(doc.params.pacing.unwrap_or_else(Pacing::legacy)),
            None => None,
        };
        if doc.targets.iter().all(|t| t.rounds.is_empty()) {
            return Err(bad("no rounds".into()));
        }
        Ok(doc)
    }
}

/// `", paced at R msgs/s (mode)"` for a paced run, empty otherwise: the end of a table header.
pub fn paced(params: &Params) -> String {
    params.rate.map_or(String::new(), |r| {
        format!(
            ", paced at {} msgs/s ({})",
            fmt_num(r),
            params.pacing.unwrap_or_default().as_str()
        )
    })
}

/// The median of `values` (mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 0 {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    })
}

/// A number for a table: thousands grouped, at most 3 significant decimals for small values.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    if v.abs() >= 1000.0 {
        let n = v.round() as i64;
        let digits = n.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if n < 0 {
            out.insert(0, '-');
        }
        out
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// Prints the table of one run.
pub fn print_run(
    out: &mut dyn Write,
    params: &Params,
    url: &str,
    m: &Metrics,
) -> std::io::Result<()> {
    writeln!(
        out,
        "slim-bench {} → {url} ({}): {} B × {} msgs/publisher, {} publisher(s), {} subscriber(s){}",
        params.scenario.as_str(),
        Transport::of_url(url).as_str(),
        params.size,
        params.msgs,
        params.publishers,
        params.subscribers,
        paced(params)
    )?;
    let rows: Vec<(&str, String)> = vec![
        (
            "delivered",
            format!("{} of {} expected", m.delivered, m.expected),
        ),
        ("lost", m.lost.to_string()),
        ("duplicates", m.duplicates.to_string()),
        ("throughput", format!("{} msgs/s", fmt_num(m.msgs_per_s))),
        (
            "bandwidth",
            format!(
                "{} B/s ({:.1} MiB/s payload)",
                fmt_num(m.bytes_per_s),
                m.bytes_per_s / (1024.0 * 1024.0)
            ),
        ),
        (
            "latency µs",
            format!(
                "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
                fmt_num(m.latency_us.p50),
                fmt_num(m.latency_us.p90),
                fmt_num(m.latency_us.p99),
                fmt_num(m.latency_us.p999),
                fmt_num(m.latency_us.max)
            ),
        ),
        (
            "time",
            format!("{:.3} s measured, {:.3} s wall", m.duration_s, m.wall_s),
        ),
    ];
    for (k, v) in rows {
        writeln!(out, "  {k:<14} {v}")?;
    }
    if let Some(cpu) = m.target_cpu_s {
        writeln!(
            out,
            "  {:<14} {cpu:.2} CPU s ({} µs per published message), peak RSS {} KiB",
            "target",
            m.target_cpu_us_per_msg().map_or("-".into(), fmt_num),
            m.target_peak_rss_kib.map_or("-".into(), |k| k.to_string())
        )?;
    }
    if let (Some(up), Some(down)) = (m.wire_up_bytes, m.wire_down_bytes) {
        writeln!(
            out,
            "  {:<14} {} B per published message ({} B to the target, {} B from it, TCP payload)",
            "wire",
            m.wire_bytes_per_msg().map_or("-".into(), fmt_num),
            fmt_num(up as f64),
            fmt_num(down as f64)
        )?;
    }
    if let (Some(ok), Some(missing)) = (m.confirmed, m.unconfirmed) {
        writeln!(
            out,
            "  {:<14} {ok} publishes acknowledged by the target, {missing} not",
            "confirmed"
        )?;
    }
    if let Some(cpu) = m.client_cpu_s {
        writeln!(out, "  {:<14} {cpu:.2} CPU s (this process)", "bench")?;
    }
    if let (Some(lag), Some(late)) = (m.send_lag_max_us, m.late_sends) {
        writeln!(
            out,
            "  {:<14} {} pacing, latest send {} µs after its due time, {late} sent over {} µs late",
            "schedule",
            params.pacing.unwrap_or_default().as_str(),
            fmt_num(lag),
            LATE_SEND_US
        )?;
    }
    if m.ignored > 0 {
        writeln!(
            out,
            "  {:<14} {} publishes not addressed to their receiver (expected with the null relay)",
            "ignored", m.ignored
        )?;
    }
    Ok(())
}

/// The warning printed (and the reason for exit code 1) when a node lost or duplicated messages.
pub fn loss_warning(m: &Metrics) -> Option<String> {
    (!m.is_clean()).then(|| {
        let unconfirmed = match m.unconfirmed {
            Some(n) if n > 0 => format!(", {n} publishes not acknowledged"),
            _ => String::new(),
        };
        format!(
            "WARNING: {} lost and {} duplicated of {} expected deliveries{unconfirmed}",
            m.lost, m.duplicates, m.expected
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paced result files written before `--pacing` existed were all paced on the timer; unpaced
    /// files have no pacing, whatever the field says.
    #[test]
    fn files_without_pacing_read_as_timer_paced() {
        let params = Params {
            scenario: Scenario::P2p,
            size: 128,
            msgs: 10,
            publishers: 1,
            subscribers: 1,
            rate: Some(1000.0),
            pacing: Some(Pacing::Smooth),
            warmup: 0,
            window: 512,
            drain_timeout_s: 5.0,
        };
        let doc = ResultFile::new(
            "run",
            vec!["slim-bench".into()],
            params.clone(),
            vec![TargetResult::new(
                "target",
                "embedded",
                None,
                vec![Metrics::default()],
            )],
        );
        let dir = std::env::temp_dir();
        let path = dir.join(format!("slim-bench-pacing-{}.json", std::process::id()));
        let path = path.to_string_lossy().to_string();
        let read_with = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut json = serde_json::to_value(&doc).expect("serialise");
            edit(&mut json["params"]);
            std::fs::write(&path, json.to_string()).expect("write");
            let back = ResultFile::read(&path).expect("read back");
            let _ = std::fs::remove_file(&path);
            back.params
        };
        assert_eq!(read_with(&|_| {}), params);
        let old = read_with(&|p| {
            p.as_object_mut().expect("object").remove("pacing");
        });
        assert_eq!(old.pacing, Some(Pacing::Timer));
        let unpaced = read_with(&|p| p["rate"] = serde_json::Value::Null);
        assert_eq!(unpaced.pacing, None);
    }

    #[test]
    fn medians_and_numbers() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(fmt_num(1234567.4), "1,234,567");
        assert_eq!(fmt_num(12.25), "12.2");
        assert_eq!(fmt_num(7.0), "7");
    }
}
