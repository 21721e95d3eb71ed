//! `compare`: ratios new/old per metric, with a noise check, and an optional SVG plot.
//!
//! Noise: each side's spread is the min..max of its rounds when it has several (a `vs` file), or
//! ±5 % of its value for a single run. When the two spreads overlap, the difference is reported
//! as "(within noise)": the files do not show that anything changed.

use std::fmt::Write as _;
use std::io::Write;

use crate::error::BenchError;
use crate::plot::{xml, Axis};
use crate::result::{fmt_num, median, MetricDef, ResultFile, TargetResult, METRICS};

/// Relative spread assumed around a single run.
pub const SINGLE_RUN_NOISE: f64 = 0.05;

/// One row of the comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The metric's key.
    pub key: &'static str,
    /// The metric's label.
    pub label: &'static str,
    /// Median of the old file.
    pub old: f64,
    /// Median of the new file.
    pub new: f64,
    /// `new / old` (`None` when old is 0).
    pub ratio: Option<f64>,
    /// The spreads overlap.
    pub within_noise: bool,
    /// Whether new is better (`None` when equal).
    pub better: Option<bool>,
}

/// The spread of a metric over a target's rounds.
pub fn spread(values: &[f64]) -> Option<(f64, f64)> {
    match values {
        [] => None,
        [v] => Some((v * (1.0 - SINGLE_RUN_NOISE), v * (1.0 + SINGLE_RUN_NOISE))),
        vs => Some((
            vs.iter().copied().fold(f64::INFINITY, f64::min),
            vs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        )),
    }
}

/// Picks the target of a file: the one labelled `label`, or the first.
pub fn pick<'a>(
    file: &'a ResultFile,
    label: Option<&str>,
    path: &str,
) -> Result<&'a TargetResult, BenchError> {
    match label {
        Some(l) => {
            file.targets
                .iter()
                .find(|t| t.label == l)
                .ok_or_else(|| BenchError::BadResult {
                    path: path.to_string(),
                    reason: format!(
                        "no target labelled {l:?} (it has {})",
                        file.targets
                            .iter()
                            .map(|t| t.label.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                })
        }
        None => file.targets.first().ok_or_else(|| BenchError::BadResult {
            path: path.to_string(),
            reason: "no targets".into(),
        }),
    }
}

/// Compares two targets metric by metric.
pub fn rows(old: &TargetResult, new: &TargetResult) -> Vec<Row> {
    METRICS
        .iter()
        .filter_map(|d: &MetricDef| {
            let (ov, nv) = (old.values(d), new.values(d));
            let (o, n) = (median(&ov)?, median(&nv)?);
            let (olo, ohi) = spread(&ov)?;
            let (nlo, nhi) = spread(&nv)?;
            let within_noise = o == n || (nlo <= ohi && olo <= nhi);
            let better = if o == n {
                None
            } else {
                Some((n > o) == d.higher_is_better)
            };
            Some(Row {
                key: d.key,
                label: d.label,
                old: o,
                new: n,
                ratio: (o != 0.0).then(|| n / o),
                within_noise,
                better,
            })
        })
        .collect()
}

/// Prints the comparison table.
pub fn print(
    out: &mut dyn Write,
    old_name: &str,
    new_name: &str,
    rows: &[Row],
) -> std::io::Result<()> {
    writeln!(out, "old: {old_name}\nnew: {new_name}")?;
    writeln!(
        out,
        "{:<20} {:>14} {:>14} {:>9}  note",
        "metric", "old", "new", "new/old"
    )?;
    for r in rows {
        let note = if r.better.is_none() {
            "same".to_string()
        } else if r.within_noise {
            "(within noise)".to_string()
        } else {
            match r.better {
                Some(true) => "better".into(),
                Some(false) => "worse".into(),
                None => String::new(),
            }
        };
        writeln!(
            out,
            "{:<20} {:>14} {:>14} {:>9}  {note}",
            r.label,
            fmt_num(r.old),
            fmt_num(r.new),
            r.ratio.map_or("-".into(), |x| format!("{x:.3}")),
        )?;
    }
    Ok(())
}

/// A two-panel SVG: latency percentiles side by side, and throughput bars.
pub fn svg(old_name: &str, new_name: &str, old: &TargetResult, new: &TargetResult) -> String {
    const OLD: &str = "#8c8c8c";
    const NEW: &str = "#2b6cb0";
    let get = |t: &TargetResult, key: &str| t.summary.get(key).copied().unwrap_or(0.0);
    let mut s = String::new();
    let (w, h) = (900.0, 420.0);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    // Legend.
    for (i, (name, color)) in [(old_name, OLD), (new_name, NEW)].iter().enumerate() {
        let y = 20.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<rect x="20" y="{}" width="12" height="12" fill="{color}"/><text x="38" y="{}">{}</text>"#,
            y - 10.0,
            y,
            xml(name)
        );
    }
    let top = 70.0;
    let bottom = h - 50.0;
    let plot_h = bottom - top;
    // Panel 1: latency percentiles.
    let lat = [
        ("p50", "p50_us"),
        ("p90", "p90_us"),
        ("p99", "p99_us"),
        ("p99.9", "p999_us"),
    ];
    let lat_axis = Axis::linear(
        lat.iter()
            .flat_map(|(_, k)| [get(old, k), get(new, k)])
            .fold(1.0, f64::max),
    );
    let (x0, pw) = (60.0, 500.0);
    panel(
        &mut s,
        x0,
        top,
        pw,
        plot_h,
        "Latency (µs, lower is better)",
        &lat_axis,
    );
    let group = pw / lat.len() as f64;
    for (i, (label, key)) in lat.iter().enumerate() {
        let gx = x0 + group * i as f64 + group * 0.15;
        let bw = group * 0.35;
        for (j, (t, color)) in [(old, OLD), (new, NEW)].iter().enumerate() {
            bar(
                &mut s,
                gx + bw * j as f64,
                bw * 0.95,
                bottom,
                plot_h,
                get(t, key),
                &lat_axis,
                color,
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{label}</text>"#,
            gx + bw,
            bottom + 18.0
        );
    }
    // Panel 2: throughput.
    let tp_axis = Axis::linear(
        [get(old, "msgs_per_s"), get(new, "msgs_per_s")]
            .into_iter()
            .fold(1.0, f64::max),
    );
    let (x1, pw1) = (650.0, 220.0);
    panel(
        &mut s,
        x1,
        top,
        pw1,
        plot_h,
        "Throughput (msgs/s)",
        &tp_axis,
    );
    for (j, (t, color)) in [(old, OLD), (new, NEW)].iter().enumerate() {
        bar(
            &mut s,
            x1 + 30.0 + 85.0 * j as f64,
            70.0,
            bottom,
            plot_h,
            get(t, "msgs_per_s"),
            &tp_axis,
            color,
        );
    }
    s.push_str("</svg>\n");
    s
}

fn panel(s: &mut String, x: f64, top: f64, w: f64, h: f64, title: &str, axis: &Axis) {
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle" font-weight="bold">{}</text>"#,
        x + w / 2.0,
        top - 12.0,
        xml(title)
    );
    axis.draw(s, x, top, w, h);
}

#[allow(clippy::too_many_arguments)]
fn bar(s: &mut String, x: f64, w: f64, bottom: f64, h: f64, v: f64, axis: &Axis, color: &str) {
    let bh = h * axis.fraction(v);
    let _ = writeln!(
        s,
        r#"<rect x="{x:.1}" y="{:.1}" width="{w:.1}" height="{bh:.1}" fill="{color}"/><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>"#,
        bottom - bh,
        x + w / 2.0,
        bottom - bh - 3.0,
        fmt_num(v)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::Metrics;

    #[test]
    fn spreads() {
        assert_eq!(spread(&[]), None);
        let (lo, hi) = spread(&[100.0]).expect("one");
        assert!((lo - 95.0).abs() < 1e-9 && (hi - 105.0).abs() < 1e-9);
        assert_eq!(spread(&[3.0, 1.0, 2.0]), Some((1.0, 3.0)));
    }

    fn target(rates: &[f64]) -> TargetResult {
        let rounds = rates
            .iter()
            .map(|&r| Metrics {
                msgs_per_s: r,
                ..Default::default()
            })
            .collect();
        TargetResult::new("A", "u", None, rounds)
    }

    fn rate_row(old: &[f64], new: &[f64]) -> Row {
        rows(&target(old), &target(new))
            .into_iter()
            .find(|r| r.key == "msgs_per_s")
            .expect("msgs/s row")
    }

    #[test]
    fn noise_uses_round_ranges_or_five_percent() {
        // Overlapping min..max: within noise.
        let r = rate_row(&[90.0, 100.0, 110.0], &[105.0, 115.0, 120.0]);
        assert!(r.within_noise);
        assert_eq!(r.ratio, Some(115.0 / 100.0));
        // Disjoint ranges: a real change, and higher throughput is better.
        let r = rate_row(&[90.0, 100.0, 110.0], &[130.0, 140.0, 150.0]);
        assert!(!r.within_noise);
        assert_eq!(r.better, Some(true));
        // Single runs: ±5 %.
        assert!(rate_row(&[100.0], &[109.0]).within_noise);
        assert!(!rate_row(&[100.0], &[111.0]).within_noise);
    }
}
