//! Chart geometry for the HTML report: plain shapes (rectangles, lines, text) in SVG user units,
//! computed here and drawn by the template (which escapes every text). No chart library, no
//! script: the charts are there in print and without JavaScript.

use serde::Serialize;

use super::model::Report;

/// One SVG chart.
#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    pub id: String,
    pub title: String,
    /// A line under the title (what the axes are).
    pub note: String,
    pub width: f64,
    pub height: f64,
    pub shapes: Vec<Shape>,
}

/// Something to draw. `class` picks the colour (`c0`..`c7` per run, or an axis style).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Shape {
    Rect {
        x: f64,
        y: f64,
        w: f64,
        h: f64,
        class: String,
        /// Shown on hover (an SVG `<title>`).
        tip: String,
    },
    Line {
        x1: f64,
        y1: f64,
        x2: f64,
        y2: f64,
        class: String,
    },
    Text {
        x: f64,
        y: f64,
        anchor: &'static str,
        class: String,
        text: String,
    },
}

/// The colour class of run `i`.
pub fn run_class(i: usize) -> String {
    format!("c{}", i % 8)
}

fn r1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn rect(x: f64, y: f64, w: f64, h: f64, class: String, tip: String) -> Shape {
    Shape::Rect {
        x: r1(x),
        y: r1(y),
        w: r1(w.max(0.0)),
        h: r1(h.max(0.0)),
        class,
        tip,
    }
}

fn text(x: f64, y: f64, anchor: &'static str, class: &str, t: impl Into<String>) -> Shape {
    Shape::Text {
        x: r1(x),
        y: r1(y),
        anchor,
        class: class.into(),
        text: t.into(),
    }
}

fn line(x1: f64, y1: f64, x2: f64, y2: f64, class: &str) -> Shape {
    Shape::Line {
        x1: r1(x1),
        y1: r1(y1),
        x2: r1(x2),
        y2: r1(y2),
        class: class.into(),
    }
}

/// Format a value for a chart label.
pub fn short_num(x: f64) -> String {
    crate::gate::fmt_num((x * 1000.0).round() / 1000.0)
}

/// Milliseconds for an axis: whole numbers from 10 up, one decimal below.
fn ms_label(x: f64) -> String {
    if x >= 10.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// The distribution charts of the report: score distributions, latency distribution.
pub fn charts(report: &Report) -> Vec<Chart> {
    let mut out = Vec::new();
    for name in report.columns.scores.iter().take(8) {
        if let Some(c) = score_histogram(report, name) {
            out.push(c);
        }
    }
    if let Some(c) = latency_histogram(report) {
        out.push(c);
    }
    out
}

/// Horizontal bars: for each metric, one bar per run of `members` (run indices).
pub fn metrics_chart(
    report: &Report,
    metrics: &[String],
    members: &[usize],
    id: String,
) -> Option<Chart> {
    if metrics.is_empty() {
        return None;
    }
    // Wide enough for the longest run label (about 6.5 px a character at 11 px).
    let longest = members
        .iter()
        .map(|&i| report.runs[i].label.chars().count())
        .max()
        .unwrap_or(0);
    let label_w = (longest as f64 * 6.5 + 14.0).clamp(190.0, 300.0);
    let bar_w = 330.0;
    let width = label_w + bar_w + 70.0;
    let bar_h = 14.0;
    let gap = 3.0;
    let mut y = 8.0;
    let mut shapes = Vec::new();
    for metric in metrics {
        let values: Vec<Option<f64>> = members
            .iter()
            .map(|&i| {
                report.runs[i]
                    .metrics
                    .get(metric)
                    .copied()
                    .filter(|v| v.is_finite())
            })
            .collect();
        let max = values.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
        let unit = values.iter().flatten().all(|v| (0.0..=1.0).contains(v));
        let scale = if unit {
            1.0
        } else {
            max.max(f64::MIN_POSITIVE)
        };
        shapes.push(text(0.0, y + 11.0, "start", "label strong", metric.clone()));
        y += 16.0;
        for (&i, v) in members.iter().zip(&values) {
            let run = &report.runs[i];
            shapes.push(text(
                label_w - 8.0,
                y + bar_h - 3.0,
                "end",
                "label",
                run.label.clone(),
            ));
            shapes.push(rect(
                label_w,
                y,
                bar_w,
                bar_h,
                "track".into(),
                String::new(),
            ));
            if let Some(v) = v {
                let w = bar_w * (v.max(0.0) / scale).min(1.0);
                shapes.push(rect(
                    label_w,
                    y,
                    w,
                    bar_h,
                    run_class(i),
                    format!("{}: {metric} = {}", run.label, short_num(*v)),
                ));
                shapes.push(text(
                    label_w + bar_w + 6.0,
                    y + bar_h - 3.0,
                    "start",
                    "value",
                    short_num(*v),
                ));
            } else {
                shapes.push(text(
                    label_w + 6.0,
                    y + bar_h - 3.0,
                    "start",
                    "muted",
                    "n/a",
                ));
            }
            y += bar_h + gap;
        }
        y += 10.0;
    }
    Some(Chart {
        id,
        title: "Metrics by run".into(),
        note: "Rates and scores on a 0–1 scale; other metrics scaled to their largest value."
            .into(),
        width,
        height: y,
        shapes,
    })
}

/// Vertical grouped bars: `counts[run][bin]`, with x labels at the bin edges.
struct Histogram<'a> {
    id: String,
    title: String,
    note: String,
    edges: Vec<String>,
    counts: Vec<Vec<usize>>,
    labels: Vec<&'a str>,
    bin_names: Vec<String>,
    /// Vertical markers: (x in bins, class, tip).
    markers: Vec<(f64, String, String)>,
}

fn draw_histogram(h: Histogram<'_>) -> Chart {
    let (width, height) = (420.0, 190.0);
    let (left, right, top, bottom) = (34.0, 10.0, 10.0, 34.0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let bins = h.bin_names.len().max(1);
    let max = h.counts.iter().flatten().copied().max().unwrap_or(0).max(1);
    let group_w = plot_w / bins as f64;
    let runs = h.counts.len().max(1);
    let bar_w = ((group_w - 2.0) / runs as f64).max(0.5);
    let mut shapes = vec![
        line(left, top + plot_h, left + plot_w, top + plot_h, "axis"),
        line(left, top, left, top + plot_h, "axis"),
        text(left - 4.0, top + 8.0, "end", "tick", max.to_string()),
        text(left - 4.0, top + plot_h, "end", "tick", "0"),
    ];
    for (r, counts) in h.counts.iter().enumerate() {
        for (b, &count) in counts.iter().enumerate() {
            if count == 0 {
                continue;
            }
            let bh = plot_h * count as f64 / max as f64;
            let x = left + group_w * b as f64 + 1.0 + bar_w * r as f64;
            shapes.push(rect(
                x,
                top + plot_h - bh,
                bar_w,
                bh,
                run_class(r),
                format!(
                    "{}: {count} line{} in {}",
                    h.labels.get(r).copied().unwrap_or(""),
                    if count == 1 { "" } else { "s" },
                    h.bin_names[b]
                ),
            ));
        }
    }
    let last = h.edges.len().saturating_sub(1).max(1);
    for (i, e) in h.edges.iter().enumerate() {
        let x = left + plot_w * i as f64 / last as f64;
        let anchor = if i == 0 {
            "start"
        } else if i == last {
            "end"
        } else {
            "middle"
        };
        shapes.push(text(x, top + plot_h + 14.0, anchor, "tick", e.clone()));
    }
    for (x_bins, class, tip) in h.markers {
        let x = left + group_w * x_bins;
        shapes.push(line(x, top, x, top + plot_h, &class));
        shapes.push(rect(x - 2.0, top, 4.0, plot_h, "hit".into(), tip));
    }
    Chart {
        id: h.id,
        title: h.title,
        note: h.note,
        width,
        height,
        shapes,
    }
}

/// Per-line scores of one evaluator, binned, per run.
fn score_histogram(report: &Report, name: &str) -> Option<Chart> {
    let per_run: Vec<Vec<f64>> = (0..report.runs.len())
        .map(|r| {
            report
                .lines
                .iter()
                .filter_map(|l| l.cells[r].as_ref()?.scores.get(name)?.score)
                .collect()
        })
        .collect();
    let all = per_run.iter().flatten();
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return None;
    }
    let (lo, hi) = if lo >= 0.0 && hi <= 1.0 {
        (0.0, 1.0)
    } else if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, hi + 0.5)
    };
    let bins = 10;
    let step = (hi - lo) / bins as f64;
    let counts: Vec<Vec<usize>> = per_run
        .iter()
        .map(|scores| {
            let mut c = vec![0usize; bins];
            for &v in scores {
                let b = (((v - lo) / step).floor() as isize).clamp(0, bins as isize - 1) as usize;
                c[b] += 1;
            }
            c
        })
        .collect();
    let bin_names = (0..bins)
        .map(|b| {
            let a = lo + step * b as f64;
            let z = a + step;
            if b + 1 == bins {
                format!("[{}, {}]", short_num(a), short_num(z))
            } else {
                format!("[{}, {})", short_num(a), short_num(z))
            }
        })
        .collect();
    let edge = |x: f64| {
        if hi - lo <= 10.0 {
            format!("{x:.1}")
        } else {
            short_num(x)
        }
    };
    let edges = vec![edge(lo), edge(lo + (hi - lo) / 2.0), edge(hi)];
    Some(draw_histogram(Histogram {
        id: format!("chart-score-{name}"),
        title: format!("{name}: score distribution"),
        note: "Lines per score bin, per run.".into(),
        edges,
        counts,
        labels: report.runs.iter().map(|r| r.label.as_str()).collect(),
        bin_names,
        markers: Vec::new(),
    }))
}

/// Line latency, binned up to the 99th percentile of all runs (slower lines in the last bin),
/// with each run's p50 (solid) and p95 (dashed) marked.
fn latency_histogram(report: &Report) -> Option<Chart> {
    let per_run: Vec<Vec<f64>> = (0..report.runs.len())
        .map(|r| {
            report
                .lines
                .iter()
                .filter_map(|l| l.cells[r].as_ref().map(|c| c.latency_ms))
                .collect()
        })
        .collect();
    let mut all: Vec<f64> = per_run.iter().flatten().copied().collect();
    if all.is_empty() {
        return None;
    }
    all.sort_by(f64::total_cmp);
    let hi = crate::run_store::percentile(&all, 99.0).max(0.001);
    let bins = 20;
    let step = hi / bins as f64;
    let counts: Vec<Vec<usize>> = per_run
        .iter()
        .map(|ls| {
            let mut c = vec![0usize; bins];
            for &v in ls {
                let b = ((v / step).floor() as isize).clamp(0, bins as isize - 1) as usize;
                c[b] += 1;
            }
            c
        })
        .collect();
    let bin_names = (0..bins)
        .map(|b| {
            if b + 1 == bins {
                format!("≥ {} ms", ms_label(step * b as f64))
            } else {
                format!(
                    "{}–{} ms",
                    ms_label(step * b as f64),
                    ms_label(step * (b + 1) as f64)
                )
            }
        })
        .collect();
    let mut markers = Vec::new();
    for (i, run) in report.runs.iter().enumerate() {
        for (p, v, style) in [
            ("p50", run.summary.latency_p50_ms, "marker"),
            ("p95", run.summary.latency_p95_ms, "marker dashed"),
        ] {
            if run.summary.lines > 0 {
                markers.push((
                    (v / step).min(bins as f64),
                    format!("{style} {}", run_class(i)),
                    format!("{}: {p} {} ms", run.label, short_num(v)),
                ));
            }
        }
    }
    Some(draw_histogram(Histogram {
        id: "chart-latency".into(),
        title: "Latency distribution".into(),
        note: "Lines per latency bin (ms), per run; p50 solid, p95 dashed.".into(),
        edges: vec![
            "0".into(),
            ms_label(hi / 2.0),
            format!("{} ms", ms_label(hi)),
        ],
        counts,
        labels: report.runs.iter().map(|r| r.label.as_str()).collect(),
        bin_names,
        markers,
    }))
}
