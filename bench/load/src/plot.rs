//! SVG charts with round axis ticks: the axis helper `compare --plot` uses, and the grouped bar
//! chart of `slim-bench plot` (one group per scenario, one bar per system).

use std::fmt::Write as _;

use crate::result::{fmt_num, ResultFile};
use crate::scenario::Scenario;

/// A value axis: where it ends and where its ticks are, all round numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// Ticks, from the bottom (0, or the lowest power of ten on a log axis) to the top.
    pub ticks: Vec<f64>,
    /// Logarithmic (powers of ten) rather than linear.
    pub log: bool,
}

impl Axis {
    /// A linear axis from 0 covering `max` with 4 to 6 steps of 1, 2, 2.5 or 5 × 10^k.
    pub fn linear(max: f64) -> Axis {
        let max = if max.is_finite() && max > 0.0 {
            max
        } else {
            1.0
        };
        let raw = max / 5.0;
        let magnitude = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 2.5, 5.0, 10.0]
            .into_iter()
            .map(|m| m * magnitude)
            .find(|s| max / s <= 5.0)
            .unwrap_or(10.0 * magnitude);
        let n = (max / step).ceil().max(1.0) as usize;
        Axis {
            ticks: (0..=n).map(|k| step * k as f64).collect(),
            log: false,
        }
    }

    /// A log axis over the powers of ten around `min..max` (both positive).
    pub fn log(min: f64, max: f64) -> Axis {
        let lo = min.max(f64::MIN_POSITIVE).log10().floor() as i32;
        let hi = (max.max(min).log10().ceil() as i32).max(lo + 1);
        Axis {
            ticks: (lo..=hi).map(|e| 10f64.powi(e)).collect(),
            log: true,
        }
    }

    /// Where `v` sits on the axis, from 0 (bottom) to 1 (top), clamped.
    pub fn fraction(&self, v: f64) -> f64 {
        let (Some(&lo), Some(&hi)) = (self.ticks.first(), self.ticks.last()) else {
            return 0.0;
        };
        let f = if self.log {
            if v <= 0.0 {
                return 0.0;
            }
            (v.log10() - lo.log10()) / (hi.log10() - lo.log10())
        } else {
            (v - lo) / (hi - lo)
        };
        if f.is_finite() {
            f.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// Draws the tick lines and labels of a panel whose plot area is `x..x+w`, `top..top+h`.
    pub fn draw(&self, s: &mut String, x: f64, top: f64, w: f64, h: f64) {
        let bottom = top + h;
        for &t in &self.ticks {
            let y = bottom - h * self.fraction(t);
            let _ = writeln!(
                s,
                r##"<line x1="{x}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#e2e2e2"/><text x="{}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
                x + w,
                x - 4.0,
                y + 4.0,
                fmt_num(t)
            );
        }
        let _ = writeln!(
            s,
            r##"<line x1="{x}" y1="{bottom}" x2="{}" y2="{bottom}" stroke="#333"/>"##,
            x + w
        );
    }
}

/// Colours of the series, in order: Okabe–Ito's eight (colour-blind friendly), then four of
/// Paul Tol's that none of them resembles, so the seed comparison's ten systems (bench/SEED.md)
/// never share a colour.
pub const PALETTE: [&str; 12] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
    "#882255", "#117733", "#999933", "#661100",
];

/// Rough width in pixels of `text` at `px` font size (sans-serif averages under 0.62 em per
/// character): enough to keep a title or a legend line inside the picture.
fn text_width(text: &str, px: f64) -> f64 {
    text.chars().count() as f64 * px * 0.62
}

/// One bar per group for one system.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The system's name (the legend).
    pub name: String,
    /// Its value in each group; `None` where it was not measured.
    pub values: Vec<Option<f64>>,
}

/// The group a result belongs to: its scenario, payload, fan-out and pacing in words.
pub fn group_of(doc: &ResultFile) -> String {
    let p = &doc.params;
    let shape = match p.scenario {
        Scenario::P2p => format!("p2p {} B", p.size),
        Scenario::Fanout => format!("fan-out 1→{} ({} B)", p.subscribers, p.size),
        Scenario::Anycast => format!("anycast 1→{} ({} B)", p.subscribers, p.size),
        Scenario::Reqrep => format!("request/reply {} B", p.size),
    };
    match p.rate {
        Some(r) => format!("{shape} at {} msgs/s", fmt_num(r)),
        None => shape,
    }
}

/// Collects `metric` (a key of the summaries) from result files: groups in the order they first
/// appear, one series per system (`--system`, else the target's label and URL).
pub fn collect(docs: &[ResultFile], metric: &str) -> (Vec<String>, Vec<Series>) {
    let mut groups: Vec<String> = Vec::new();
    let mut series: Vec<Series> = Vec::new();
    for doc in docs {
        let g = group_of(doc);
        let gi = groups.iter().position(|x| *x == g).unwrap_or_else(|| {
            groups.push(g);
            groups.len() - 1
        });
        for t in &doc.targets {
            let name = t
                .system
                .clone()
                .unwrap_or_else(|| format!("{} ({})", t.label, t.url));
            let si = series
                .iter()
                .position(|x| x.name == name)
                .unwrap_or_else(|| {
                    series.push(Series {
                        name,
                        values: Vec::new(),
                    });
                    series.len() - 1
                });
            let values = &mut series[si].values;
            if values.len() <= gi {
                values.resize(gi + 1, None);
            }
            values[gi] = t.summary.get(metric).copied();
        }
    }
    for s in &mut series {
        s.values.resize(groups.len(), None);
    }
    (groups, series)
}

/// A grouped bar chart: `groups` along x, one bar per series in each (its value as the bar's
/// tooltip, "n/m" where a series has no value), and a legend naming every series.
pub fn grouped_bars(title: &str, groups: &[String], series: &[Series], log: bool) -> String {
    let values: Vec<f64> = series
        .iter()
        .flat_map(|s| s.values.iter().flatten().copied())
        .filter(|v| v.is_finite())
        .collect();
    let max = values.iter().copied().fold(0.0, f64::max);
    let min = values
        .iter()
        .copied()
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    let axis = if log && min.is_finite() {
        Axis::log(min, max)
    } else {
        Axis::linear(max)
    };
    let bar_w = 16.0;
    let (x0, top, plot_h) = (80.0, 60.0 + 18.0 * series.len() as f64, 300.0);
    // Groups widen (bars stay put, centred) until the title and every legend line fit.
    let legend_w = series
        .iter()
        .map(|sr| 18.0 + text_width(&sr.name, 12.0))
        .fold(0.0, f64::max);
    let needed = text_width(title, 12.0).max(legend_w);
    let bars_w = bar_w * series.len() as f64;
    let group_w = (bars_w + 24.0)
        .max(90.0)
        .max(needed / groups.len().max(1) as f64);
    let w = x0 + group_w * groups.len() as f64 + 20.0;
    let h = top + plot_h + 70.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{x0}" y="22" font-weight="bold">{}</text>"#,
        xml(title)
    );
    for (i, sr) in series.iter().enumerate() {
        let y = 44.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{x0}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{y}">{}</text>"#,
            y - 10.0,
            PALETTE[i % PALETTE.len()],
            x0 + 18.0,
            xml(&sr.name)
        );
    }
    let pw = group_w * groups.len() as f64;
    axis.draw(&mut s, x0, top, pw, plot_h);
    let bottom = top + plot_h;
    for (gi, g) in groups.iter().enumerate() {
        let gx = x0 + group_w * gi as f64 + (group_w - bars_w) / 2.0;
        for (si, sr) in series.iter().enumerate() {
            let x = gx + bar_w * si as f64;
            match sr.values.get(gi).copied().flatten() {
                Some(v) => {
                    let bh = plot_h * axis.fraction(v);
                    let _ = writeln!(
                        s,
                        r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                        bottom - bh,
                        bar_w - 2.0,
                        PALETTE[si % PALETTE.len()],
                        xml(&sr.name),
                        fmt_num(v)
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        r##"<text x="{:.1}" y="{:.1}" font-size="9" fill="#888" transform="rotate(-90 {:.1} {:.1})">n/m</text>"##,
                        x + bar_w / 2.0 + 3.0,
                        bottom - 4.0,
                        x + bar_w / 2.0 + 3.0,
                        bottom - 4.0
                    );
                }
            }
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="11">{}</text>"#,
            x0 + group_w * (gi as f64 + 0.5),
            bottom + 18.0,
            xml(g)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Escapes text for SVG.
pub fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_ticks_are_round() {
        assert_eq!(
            Axis::linear(87_345.0).ticks,
            vec![0.0, 20_000.0, 40_000.0, 60_000.0, 80_000.0, 100_000.0]
        );
        assert_eq!(
            Axis::linear(1.0).ticks,
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        assert_eq!(
            Axis::linear(230.0).ticks,
            vec![0.0, 50.0, 100.0, 150.0, 200.0, 250.0]
        );
        assert_eq!(Axis::linear(0.0).ticks.last(), Some(&1.0));
        for max in [3.0, 7.7, 12.0, 999.0, 1234.5, 61_000.0, 4.2e6] {
            let a = Axis::linear(max);
            let top = *a.ticks.last().expect("ticks");
            assert!(
                top >= max && a.ticks.len() <= 7 && a.ticks.len() >= 3,
                "{max}: {:?}",
                a.ticks
            );
            let step = a.ticks[1];
            let mantissa = step / 10f64.powf(step.log10().floor());
            assert!(
                [1.0, 2.0, 2.5, 5.0]
                    .iter()
                    .any(|m| (m - mantissa).abs() < 1e-9),
                "{max}: step {step}"
            );
        }
    }

    #[test]
    fn log_ticks_are_powers_of_ten() {
        let a = Axis::log(3_400.0, 1_200_000.0);
        assert_eq!(a.ticks, vec![1e3, 1e4, 1e5, 1e6, 1e7]);
        assert!((a.fraction(1e5) - 0.5).abs() < 1e-9);
        assert_eq!(a.fraction(0.0), 0.0);
    }

    #[test]
    fn chart_names_systems_and_marks_gaps() {
        let svg = grouped_bars(
            "Throughput",
            &["p2p 128 B".into(), "fan-out 1→16 (128 B)".into()],
            &[
                Series {
                    name: "mosquitto 2.0.11 QoS 1".into(),
                    values: vec![Some(40_000.0), None],
                },
                Series {
                    name: "SLIM node 3.4.6".into(),
                    values: vec![Some(90_000.0), Some(12_000.0)],
                },
            ],
            false,
        );
        assert!(svg.contains("mosquitto 2.0.11 QoS 1"));
        assert!(svg.contains("SLIM node 3.4.6"));
        assert!(svg.contains("n/m"));
        assert!(svg.contains(">100,000<"));
        assert!(!svg.contains("127.0.0.1"));
    }

    /// The width the `<svg>` element declares.
    fn svg_width(svg: &str) -> f64 {
        let rest = svg.split("width=\"").nth(1).expect("width");
        rest.split('"')
            .next()
            .and_then(|w| w.parse().ok())
            .expect("a number")
    }

    #[test]
    fn ten_systems_get_ten_colours() {
        let series: Vec<Series> = (0..10)
            .map(|i| Series {
                name: format!("system {i}"),
                values: vec![Some(1.0 + i as f64)],
            })
            .collect();
        let svg = grouped_bars("p99", &["p2p".into()], &series, false);
        let fills: std::collections::HashSet<&str> = svg
            .split("fill=\"")
            .skip(1)
            .filter_map(|f| f.split('"').next())
            .filter(|f| PALETTE.contains(f))
            .collect();
        assert_eq!(fills.len(), 10, "{fills:?}");
    }

    #[test]
    fn one_group_is_wide_enough_for_its_title() {
        let title = "p99 latency at 2000 msgs/s, µs (log scale, lower is better)";
        let series = vec![Series {
            name: "Kafka protocol (Tansu 0.6.0)".into(),
            values: vec![Some(5_000.0)],
        }];
        let svg = grouped_bars(title, &["p2p 128 B".into()], &series, true);
        assert!(
            svg_width(&svg) >= 80.0 + text_width(title, 12.0),
            "{}",
            svg_width(&svg)
        );
        // Wide titles do not change charts that were wide enough already.
        let many = vec![String::from("a group"); 4];
        let series = vec![Series {
            name: "x".into(),
            values: vec![Some(1.0); 4],
        }];
        assert_eq!(
            svg_width(&grouped_bars("t", &many, &series, false)),
            80.0 + 4.0 * 90.0 + 20.0
        );
    }
}
