//! The HTML report: one self-contained file rendered with tera from `templates/report/`
//! (embedded in the binary). Everything is inline — CSS, SVG charts, the script, the data — and
//! a Content-Security-Policy forbids every network fetch and every script but the report's own
//! (pinned by its SHA-256), so a model answer that slipped past escaping still could not run.
//!
//! Server-side text goes through tera's autoescaping. The per-line data is one
//! `<script type="application/json">` block (with `<`, `>`, `&`, U+2028 and U+2029 escaped, so
//! no text can close the element) that the script renders a page at a time with `textContent`.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::charts::{Chart, charts, metrics_chart, run_class, short_num};
use super::error::ReportError;
use super::model::{LineCell, Report, status_name, value_text};
use crate::gate::{Direction, direction_of};

const TEMPLATE: &str = include_str!("../../templates/report/report.html");
const STYLE: &str = include_str!("../../templates/report/report.css");
const SCRIPT: &str = include_str!("../../templates/report/report.js");

/// Metrics every run has (computed from its lines), shown after the evaluation metrics.
const STANDARD_METRICS: &[&str] = &[
    "lines.pass_rate",
    "lines.success_rate",
    "latency.p50_ms",
    "latency.p95_ms",
    "tokens.total",
    "cost.usd",
];

/// Render the report as one HTML document.
pub fn render_html(report: &Report) -> Result<String, ReportError> {
    let mut tera = tera::Tera::default();
    tera.add_raw_template("report.html", TEMPLATE)
        .map_err(|e| ReportError::Template(tera_message(&e)))?;
    tera.autoescape_on(vec![".html"]);
    let mut page = page(report)?;
    // The data (megabytes for large runs) is spliced in after rendering rather than copied
    // through tera's context.
    let data = std::mem::replace(&mut page.data_json, DATA_MARKER.to_string());
    let context =
        tera::Context::from_serialize(page).map_err(|e| ReportError::Template(tera_message(&e)))?;
    let html = tera
        .render("report.html", &context)
        .map_err(|e| ReportError::Template(tera_message(&e)))?;
    // Names and labels the template printed (run names, metrics, datasets) show invisible
    // characters too; the data block was shown when it was made.
    let html = super::invisible::show(&html);
    let at = html
        .rfind(DATA_MARKER)
        .ok_or_else(|| ReportError::Template("the template has no data block".into()))?;
    let mut out = String::with_capacity(html.len() + data.len());
    out.push_str(&html[..at]);
    out.push_str(&data);
    out.push_str(&html[at + DATA_MARKER.len()..]);
    Ok(out)
}

/// Stands for the data block while the template renders (no escaping touches it).
const DATA_MARKER: &str = "@@FLOW_REPORT_DATA@@";

fn tera_message(e: &tera::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    message
}

/// Everything the template needs.
#[derive(Serialize)]
struct Page<'a> {
    title: &'a str,
    generated: &'a str,
    version: &'static str,
    experiment: Option<&'a super::model::ExperimentInfo>,
    line_count: usize,
    runs: Vec<RunView>,
    /// The summary (cards and metrics table), one per dataset the runs span.
    groups: Vec<Group>,
    winner: Option<WinnerView>,
    charts: Vec<Chart>,
    datasets: &'a [String],
    scores: &'a [String],
    many_runs: bool,
    /// Some run was scored by an evaluation run.
    has_evaluations: bool,
    /// Each evaluated run's verdict and gates, shown first.
    verdicts: Vec<VerdictView>,
    csp: String,
    style: &'static str,
    script: &'static str,
    data_json: String,
}

/// A run's gate verdict as the page shows it.
#[derive(Serialize)]
struct VerdictView {
    class: String,
    label: String,
    passed: bool,
    verdict: String,
    gates: Vec<GateView>,
}

#[derive(Serialize)]
struct GateView {
    passed: bool,
    text: String,
}

#[derive(Serialize)]
struct RunView {
    index: usize,
    class: String,
    label: String,
    name: String,
    flow_name: String,
    variant: String,
    dataset: String,
    status: String,
    offline: bool,
    evaluations: Vec<String>,
    baseline: bool,
    /// Lines run, with thousands separators.
    lines: String,
}

/// The summary of the runs of one dataset: best values and deltas are only ever computed
/// between runs of the same dataset, against the dataset's baseline (the report's baseline
/// when it ran on that dataset, else the dataset's first run).
#[derive(Serialize)]
struct Group {
    /// Dataset index (the line table's `#ds=`).
    ds: usize,
    dataset: String,
    baseline_label: String,
    /// More than one run in the group.
    many: bool,
    cards: Vec<Card>,
    metric_rows: Vec<MetricRow>,
    /// The same table transposed (a row per run, a column per metric), used for many runs.
    run_rows: Vec<RunMetricRow>,
    transposed: bool,
    /// The metrics as bars (`chart-metrics` for the first group).
    chart: Option<Chart>,
}

/// A run's values in the transposed metrics table.
#[derive(Serialize)]
struct RunMetricRow {
    class: String,
    label: String,
    baseline: bool,
    cells: Vec<MetricCell>,
}

/// The experiment's winner, as its `summary.json` names it.
#[derive(Serialize)]
struct WinnerView {
    name: String,
    /// `accuracy 0.95` (the winning metric's mean over the datasets), when known.
    value: String,
    rule: String,
}

/// Runs at most this many to a dataset keep the metrics table with a column per run.
const TRANSPOSE_ABOVE: usize = 3;

/// A summary card: one row per run.
#[derive(Serialize)]
struct Card {
    key: String,
    /// Titled by a metric name (shown as written, not upper-cased).
    metric: bool,
    title: String,
    rows: Vec<CardRow>,
}

#[derive(Serialize)]
struct CardRow {
    class: String,
    label: String,
    value: String,
    detail: String,
    best: bool,
}

/// A metric across runs.
#[derive(Serialize)]
struct MetricRow {
    name: String,
    direction: &'static str,
    cells: Vec<MetricCell>,
}

#[derive(Serialize, Clone)]
struct MetricCell {
    value: String,
    best: bool,
    delta: String,
    /// `better`, `worse` or `same` (relative to the baseline), empty for the baseline itself.
    trend: &'static str,
}

fn page(report: &Report) -> Result<Page<'_>, ReportError> {
    let runs: Vec<RunView> = report
        .runs
        .iter()
        .enumerate()
        .map(|(i, r)| RunView {
            index: i,
            class: run_class(i),
            label: r.label.clone(),
            name: r.name.clone(),
            flow_name: r.flow_name.clone(),
            variant: r.variant.clone(),
            dataset: report.datasets.get(r.dataset).cloned().unwrap_or_default(),
            status: r.status.clone(),
            offline: r.offline,
            evaluations: r.evaluations.clone(),
            baseline: i == report.baseline,
            lines: thousands(r.summary.lines as u64),
        })
        .collect();
    let metric_names = metric_names(report);
    let eval_metrics: Vec<String> = metric_names
        .iter()
        .filter(|m| !STANDARD_METRICS.contains(&m.as_str()))
        .cloned()
        .collect();
    let mut chart_metrics = eval_metrics.clone();
    chart_metrics.push("lines.pass_rate".into());
    let data_json = super::invisible::show_in_json(&script_json(&data(report))?).into_owned();
    let script_hash = base64(&Sha256::digest(SCRIPT.as_bytes()));
    let groups = groups(report, &metric_names, &eval_metrics, &chart_metrics);
    Ok(Page {
        title: &report.title,
        generated: &report.generated,
        version: env!("CARGO_PKG_VERSION"),
        experiment: report.experiment.as_ref(),
        line_count: report.lines.len(),
        groups,
        winner: report.experiment.as_ref().and_then(winner_view),
        charts: charts(report),
        datasets: &report.datasets,
        scores: &report.columns.scores,
        many_runs: report.runs.len() > 1,
        has_evaluations: report.runs.iter().any(|r| !r.evaluations.is_empty()),
        verdicts: report
            .runs
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let v = r.verdict.as_ref()?;
                Some(VerdictView {
                    class: run_class(i),
                    label: r.label.clone(),
                    passed: v.passed,
                    verdict: v.verdict.clone(),
                    gates: v
                        .gates
                        .iter()
                        .map(|g| GateView {
                            passed: g.passed,
                            text: g.verdict.clone(),
                        })
                        .collect(),
                })
            })
            .collect(),
        runs,
        csp: format!(
            "default-src 'none'; script-src 'sha256-{script_hash}'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
        ),
        style: STYLE,
        script: SCRIPT,
        data_json,
    })
}

/// One summary group per dataset (in dataset order) holding the runs made on it.
fn groups(
    report: &Report,
    metric_names: &[String],
    eval_metrics: &[String],
    chart_metrics: &[String],
) -> Vec<Group> {
    (0..report.datasets.len().max(1))
        .filter_map(|ds| {
            let members: Vec<usize> = (0..report.runs.len())
                .filter(|&i| report.runs[i].dataset == ds || report.datasets.is_empty())
                .collect();
            let first = *members.first()?;
            let baseline = if members.contains(&report.baseline) {
                report.baseline
            } else {
                first
            };
            let metric_rows: Vec<MetricRow> = metric_names
                .iter()
                .map(|m| metric_row(report, m, &members, baseline))
                .collect();
            let run_rows = members
                .iter()
                .enumerate()
                .map(|(k, &i)| RunMetricRow {
                    class: run_class(i),
                    label: report.runs[i].label.clone(),
                    baseline: i == baseline,
                    cells: metric_rows.iter().map(|m| m.cells[k].clone()).collect(),
                })
                .collect();
            Some(Group {
                ds,
                dataset: report.datasets.get(ds).cloned().unwrap_or_default(),
                baseline_label: report.runs[baseline].label.clone(),
                many: members.len() > 1,
                cards: cards(report, eval_metrics, &members),
                transposed: members.len() > TRANSPOSE_ABOVE,
                chart: metrics_chart(
                    report,
                    chart_metrics,
                    &members,
                    if ds == 0 {
                        "chart-metrics".into()
                    } else {
                        format!("chart-metrics-{ds}")
                    },
                ),
                metric_rows,
                run_rows,
            })
        })
        .collect()
}

fn winner_view(info: &super::model::ExperimentInfo) -> Option<WinnerView> {
    let name = info.winner.clone()?;
    let value = match (&info.winner_metric, info.winner_value) {
        (Some(m), Some(v)) => format!("mean {m} {}", metric_text(m, v)),
        _ => String::new(),
    };
    Some(WinnerView {
        name,
        value,
        rule: info.winner_rule.clone(),
    })
}

/// Every metric any run has: evaluation and user metrics first (first appearance), then the
/// standard ones.
fn metric_names(report: &Report) -> Vec<String> {
    let mut names: indexmap::IndexSet<String> = indexmap::IndexSet::new();
    for r in &report.runs {
        for k in r.metrics.keys() {
            if !STANDARD_METRICS.contains(&k.as_str()) {
                names.insert(k.clone());
            }
        }
    }
    for s in STANDARD_METRICS {
        if report.runs.iter().any(|r| r.metrics.contains_key(*s)) {
            names.insert(s.to_string());
        }
    }
    names.into_iter().collect()
}

/// Whether any of `members` answered from the response cache: their spend then says nothing
/// about what their flows cost, so no run is ranked cheapest.
fn any_cached(report: &Report, members: &[usize]) -> bool {
    members
        .iter()
        .any(|&i| report.runs[i].summary.cache_hits > 0)
}

/// Which runs have the best value (none when there is one run or all are equal).
fn best_of(values: &[Option<f64>], direction: Direction) -> Vec<bool> {
    let present: Vec<f64> = values
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if present.len() < 2 || present.iter().all(|v| *v == present[0]) {
        return vec![false; values.len()];
    }
    let best = match direction {
        Direction::HigherIsBetter => present.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        Direction::LowerIsBetter => present.iter().copied().fold(f64::INFINITY, f64::min),
    };
    values.iter().map(|v| *v == Some(best)).collect()
}

/// A metric's row over `members` (run indices), with deltas against `baseline`.
fn metric_row(report: &Report, name: &str, members: &[usize], baseline: usize) -> MetricRow {
    let direction = direction_of(name);
    let values: Vec<Option<f64>> = members
        .iter()
        .map(|&i| report.runs[i].metrics.get(name).copied())
        .collect();
    // A cached answer costs nothing: runs with cached answers are not ranked on cost.
    let best = if name == super::model::COST_METRIC && any_cached(report, members) {
        vec![false; values.len()]
    } else {
        best_of(&values, direction)
    };
    let base = report.runs[baseline].metrics.get(name).copied();
    let cells = values
        .iter()
        .enumerate()
        .map(|(k, v)| {
            let (delta, trend) = match (v, base) {
                (Some(v), Some(b)) if members[k] != baseline && v.is_finite() && b.is_finite() => {
                    let d = v - b;
                    let trend = if d.abs() < 1e-12 {
                        "same"
                    } else if (d > 0.0) == (direction == Direction::HigherIsBetter) {
                        "better"
                    } else {
                        "worse"
                    };
                    let text = if trend == "same" {
                        "±0".to_string()
                    } else if d > 0.0 {
                        format!("+{}", metric_text(name, d))
                    } else {
                        format!("−{}", metric_text(name, -d))
                    };
                    (text, trend)
                }
                _ => (String::new(), ""),
            };
            MetricCell {
                value: v
                    .map(|x| metric_text(name, x))
                    .unwrap_or_else(|| "—".into()),
                best: best[k],
                delta,
                trend,
            }
        })
        .collect();
    MetricRow {
        name: name.to_string(),
        direction: match direction {
            Direction::HigherIsBetter => "higher",
            Direction::LowerIsBetter => "lower",
        },
        cells,
    }
}

fn metric_text(name: &str, x: f64) -> String {
    if name.ends_with("_ms") {
        ms(x)
    } else if name == "cost.usd" {
        usd(x)
    } else if name == "tokens.total" {
        thousands(x as u64)
    } else {
        short_num(x)
    }
}

fn ms(x: f64) -> String {
    if x >= 1000.0 {
        format!("{:.2} s", x / 1000.0)
    } else if x >= 100.0 {
        format!("{x:.0} ms")
    } else {
        format!("{x:.1} ms")
    }
}

fn usd(x: f64) -> String {
    if x == 0.0 {
        "$0".into()
    } else if x < 0.01 {
        format!("${x:.6}")
    } else {
        format!("${x:.4}")
    }
}

fn percent(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// `12345` → `12,345`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The summary cards of `members` (run indices): one row per member run.
fn cards(report: &Report, eval_metrics: &[String], members: &[usize]) -> Vec<Card> {
    let row = |k: usize, value: String, detail: String, best: bool| CardRow {
        class: run_class(members[k]),
        label: report.runs[members[k]].label.clone(),
        value,
        detail,
        best,
    };
    let runs: Vec<&super::model::RunReport> = members.iter().map(|&i| &report.runs[i]).collect();
    let best_by = |values: Vec<Option<f64>>, direction| best_of(&values, direction);
    let mut cards = Vec::new();
    cards.push(Card {
        key: "lines".into(),
        metric: false,
        title: "Lines".into(),
        rows: runs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let s = &r.summary;
                let mut detail = format!("{} completed · {} failed", s.completed, s.failed);
                if s.total_lines > s.lines {
                    detail.push_str(&format!(" · {} not run", s.total_lines - s.lines));
                }
                row(i, thousands(s.lines as u64), detail, false)
            })
            .collect(),
    });
    let pass: Vec<Option<f64>> = runs.iter().map(|r| Some(r.summary.pass_rate)).collect();
    let best = best_by(pass, Direction::HigherIsBetter);
    // "Passed" is an evaluator's verdict on a line. Without per-line scores (no evaluator, or
    // an evaluation flow that only reports aggregate metrics) a line can only have completed.
    let judged = !report.columns.scores.is_empty();
    cards.push(Card {
        key: "pass-rate".into(),
        metric: false,
        title: if judged { "Pass rate" } else { "Completed" }.into(),
        rows: runs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let detail = if judged {
                    format!("{} of {} lines passed", r.summary.passed, r.summary.lines)
                } else {
                    format!(
                        "{} of {} lines completed; no evaluator judged each line",
                        r.summary.passed, r.summary.lines
                    )
                };
                row(i, percent(r.summary.pass_rate), detail, best[i])
            })
            .collect(),
    });
    for m in eval_metrics {
        let values: Vec<Option<f64>> = runs.iter().map(|r| r.metrics.get(m).copied()).collect();
        let best = best_by(values.clone(), direction_of(m));
        cards.push(Card {
            key: format!("metric-{m}"),
            metric: true,
            title: m.clone(),
            rows: values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    row(
                        i,
                        v.map(|x| metric_text(m, x)).unwrap_or_else(|| "—".into()),
                        String::new(),
                        best[i],
                    )
                })
                .collect(),
        });
    }
    let tokens: Vec<Option<f64>> = runs
        .iter()
        .map(|r| Some(r.summary.tokens.total_tokens as f64))
        .collect();
    let best = best_by(tokens, Direction::LowerIsBetter);
    cards.push(Card {
        key: "tokens".into(),
        metric: false,
        title: "Tokens".into(),
        rows: runs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let t = r.summary.tokens;
                row(
                    i,
                    thousands(t.total_tokens),
                    format!(
                        "{} prompt · {} completion",
                        thousands(t.prompt_tokens),
                        thousands(t.completion_tokens)
                    ),
                    best[i],
                )
            })
            .collect(),
    });
    let costs: Vec<Option<f64>> = runs.iter().map(|r| r.summary.cost_usd).collect();
    let cached = any_cached(report, members);
    let best = if cached {
        vec![false; costs.len()]
    } else {
        best_by(costs, Direction::LowerIsBetter)
    };
    cards.push(Card {
        key: "cost".into(),
        metric: false,
        title: "Cost".into(),
        rows: runs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let s = &r.summary;
                let (value, mut detail) = match s.cost_usd {
                    Some(c) => (usd(c), "USD, from the price table".to_string()),
                    None => ("unknown".into(), "a model's price is unknown".into()),
                };
                if s.cache_hits > 0 {
                    detail = format!(
                        "{} cached answer{} saved {} · not ranked",
                        thousands(s.cache_hits),
                        if s.cache_hits == 1 { "" } else { "s" },
                        usd(s.saved_usd)
                    );
                } else if cached {
                    detail.push_str(" · not ranked: other runs answered from the cache");
                }
                row(i, value, detail, best[i])
            })
            .collect(),
    });
    let p95: Vec<Option<f64>> = runs
        .iter()
        .map(|r| Some(r.summary.latency_p95_ms))
        .collect();
    let best = best_by(p95, Direction::LowerIsBetter);
    cards.push(Card {
        key: "latency".into(),
        metric: false,
        title: "Latency p50 / p95".into(),
        rows: runs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let s = &r.summary;
                row(
                    i,
                    format!("{} / {}", ms(s.latency_p50_ms), ms(s.latency_p95_ms)),
                    format!("mean {}", ms(s.latency_mean_ms)),
                    best[i],
                )
            })
            .collect(),
    });
    cards
}

/// The per-line data the script renders (compact: short keys, arrays in column order). Texts
/// are stored once in `strings` and referred to by index: a line's question, its answer and
/// the node inputs and outputs that repeat them cost one copy.
#[derive(Serialize)]
struct Data<'a> {
    runs: Vec<DataRun<'a>>,
    baseline: usize,
    datasets: &'a [String],
    inputs: &'a [String],
    outputs: &'a [String],
    scores: &'a [String],
    eval_outputs: &'a [String],
    /// Which lines have node traces.
    traces: super::load::Traces,
    strings: Vec<String>,
    lines: Vec<DataLine>,
    /// Image values (promptflow's `{"data:image/png;path": ...}`) by their text's index: shown
    /// as thumbnails.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    images: std::collections::BTreeMap<Text, DataImage>,
}

/// A thumbnail: the image as a `data:` URI (`u`, absent when it is not embedded) and a note.
#[derive(Serialize)]
struct DataImage {
    #[serde(skip_serializing_if = "Option::is_none")]
    u: Option<String>,
    n: String,
}

/// The largest image embedded in a report (each one; larger ones are named, not shown).
pub const IMAGE_EMBED_CAP: u64 = 256 * 1024;

/// The thumbnail of an image value, read from the first of `dirs` (run folders) that holds
/// it: a `;path` is relative to the run's `flow_outputs/` (where `flow` writes images), a
/// `;base64` is embedded as it is, a `;url` is named only (the report fetches nothing). The
/// openai-vision forms (`image_file`, `image_url`) are read the same way.
fn thumbnail(value: &Value, dirs: &[&str]) -> Option<DataImage> {
    let (sub, kind, data) = crate::image::record_parts(value)?;
    let mime = format!("image/{sub}");
    let cap_note = |size: u64, what: &str| {
        format!(
            "image not embedded: {} KiB, over the report's {} KiB cap ({what})",
            size.div_ceil(1024),
            IMAGE_EMBED_CAP / 1024
        )
    };
    match kind {
        "path" => {
            let file = dirs.iter().find_map(|d| {
                let f = std::path::Path::new(d).join("flow_outputs").join(data);
                f.is_file().then_some(f)
            });
            let Some(file) = file.or_else(|| {
                let f = std::path::PathBuf::from(data);
                (f.is_absolute() && f.is_file()).then_some(f)
            }) else {
                return Some(DataImage {
                    u: None,
                    n: format!("image not found: {data}"),
                });
            };
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            if size > IMAGE_EMBED_CAP {
                return Some(DataImage {
                    u: None,
                    n: cap_note(size, &file.display().to_string()),
                });
            }
            let bytes = std::fs::read(&file).ok()?;
            let mime = match crate::image::sniff(&bytes) {
                Some(m) => m.to_string(),
                None if sub != "*" => mime,
                None => {
                    return Some(DataImage {
                        u: None,
                        n: format!("not an image: {data}"),
                    });
                }
            };
            Some(DataImage {
                u: Some(format!("data:{mime};base64,{}", base64(&bytes))),
                n: data.to_string(),
            })
        }
        "base64" => {
            let size = (data.len() as u64) * 3 / 4;
            if size > IMAGE_EMBED_CAP {
                return Some(DataImage {
                    u: None,
                    n: cap_note(size, "inline base64"),
                });
            }
            Some(DataImage {
                u: Some(format!(
                    "data:{mime};base64,{}",
                    data.rsplit(',').next().unwrap_or(data)
                )),
                n: "inline image".to_string(),
            })
        }
        _ => Some(DataImage {
            u: None,
            n: format!("image at {data} (not fetched: the report is self-contained)"),
        }),
    }
}

#[derive(Serialize)]
struct DataRun<'a> {
    label: &'a str,
    dataset: usize,
}

/// A string's index in `Data::strings`.
type Text = usize;

#[derive(Serialize)]
struct DataLine {
    /// Line number.
    n: usize,
    /// Dataset index.
    d: usize,
    /// Inputs, in `inputs` order.
    i: Vec<Text>,
    /// One cell per run.
    r: Vec<Option<DataCell>>,
}

#[derive(Serialize)]
struct DataCell {
    /// Status: `Completed`, `Failed`, ...
    s: &'static str,
    /// Passed (completed and no evaluator failed it).
    p: bool,
    /// Outputs, in `outputs` order (`null`: absent).
    o: Vec<Option<Text>>,
    /// Scores in `scores` order: `[score, passed, reason]` or `null` (not scored).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    sc: Vec<Option<(Option<f64>, bool, Text)>>,
    /// Evaluation-flow outputs, in `eval_outputs` order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ev: Vec<Option<Text>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    e: Option<Text>,
    /// Latency (ms), tokens, cost (USD).
    l: f64,
    t: u64,
    c: f64,
    /// Node trace.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    x: Vec<DataNode>,
}

#[derive(Serialize)]
struct DataNode {
    n: Text,
    s: &'static str,
    /// Duration (ms).
    d: f64,
    /// Tokens: [prompt, completion, total].
    #[serde(skip_serializing_if = "Option::is_none")]
    t: Option<[u64; 3]>,
    /// Inputs: [name, value] pairs.
    i: Vec<(Text, Text)>,
    o: Text,
    #[serde(skip_serializing_if = "Option::is_none")]
    e: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    m: Option<Text>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    k: bool,
}

/// Each distinct text once.
#[derive(Default)]
struct Strings {
    index: std::collections::HashMap<String, Text>,
    list: Vec<String>,
}

impl Strings {
    fn add(&mut self, text: String) -> Text {
        if let Some(&i) = self.index.get(&text) {
            return i;
        }
        let i = self.list.len();
        self.list.push(text.clone());
        self.index.insert(text, i);
        i
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn data(report: &Report) -> Data<'_> {
    let c = &report.columns;
    let mut strings = Strings::default();
    let mut lines = Vec::with_capacity(report.lines.len());
    let mut images = std::collections::BTreeMap::new();
    for line in &report.lines {
        let i = c
            .inputs
            .iter()
            .map(|k| strings.add(line.inputs.get(k).map(value_text).unwrap_or_default()))
            .collect();
        let r = line
            .cells
            .iter()
            .map(|cell| {
                cell.as_ref()
                    .map(|cell| data_cell(report, cell, &mut strings))
            })
            .collect();
        // Thumbnails of image inputs and outputs, from the runs of this line.
        let dirs: Vec<&str> = line
            .cells
            .iter()
            .enumerate()
            .filter(|(_, cell)| cell.is_some())
            .filter_map(|(r, _)| report.runs.get(r).map(|run| run.path.as_str()))
            .collect();
        let values = c.inputs.iter().filter_map(|k| line.inputs.get(k)).chain(
            line.cells
                .iter()
                .flatten()
                .flat_map(|cell| c.outputs.iter().filter_map(|k| cell.outputs.get(k))),
        );
        for v in values {
            if crate::image::record_parts(v).is_none() {
                continue;
            }
            let text = strings.add(value_text(v));
            if let std::collections::btree_map::Entry::Vacant(e) = images.entry(text)
                && let Some(thumb) = thumbnail(v, &dirs)
            {
                e.insert(thumb);
            }
        }
        lines.push(DataLine {
            n: line.line_number,
            d: line.dataset,
            i,
            r,
        });
    }
    Data {
        runs: report
            .runs
            .iter()
            .map(|r| DataRun {
                label: &r.label,
                dataset: r.dataset,
            })
            .collect(),
        baseline: report.baseline,
        datasets: &report.datasets,
        inputs: &c.inputs,
        outputs: &c.outputs,
        scores: &c.scores,
        eval_outputs: &c.eval_outputs,
        traces: report.traces,
        strings: strings.list,
        lines,
        images,
    }
}

fn data_cell(report: &Report, cell: &LineCell, strings: &mut Strings) -> DataCell {
    let c = &report.columns;
    DataCell {
        s: status_name(cell.status),
        p: cell.passed(),
        o: c.outputs
            .iter()
            .map(|k| cell.outputs.get(k).map(|v| strings.add(value_text(v))))
            .collect(),
        sc: c
            .scores
            .iter()
            .map(|k| {
                cell.scores
                    .get(k)
                    .map(|s| (s.score.map(round3), s.passed, strings.add(s.reason.clone())))
            })
            .collect(),
        ev: c
            .eval_outputs
            .iter()
            .map(|k| cell.eval_outputs.get(k).map(|v| strings.add(value_text(v))))
            .collect(),
        e: cell.error.clone().map(|e| strings.add(e)),
        l: (cell.latency_ms * 10.0).round() / 10.0,
        t: cell.tokens.total_tokens,
        c: cell.cost_usd,
        x: cell
            .trace
            .iter()
            .map(|n| DataNode {
                n: strings.add(n.node.clone()),
                s: status_name(n.status),
                d: (n.duration_ms * 10.0).round() / 10.0,
                t: n.tokens
                    .map(|t| [t.prompt_tokens, t.completion_tokens, t.total_tokens]),
                i: n.inputs
                    .iter()
                    .map(|(k, v)| (strings.add(k.clone()), strings.add(trace_text(v))))
                    .collect(),
                o: strings.add(trace_text(&n.output)),
                e: n.error.clone().map(|e| strings.add(e)),
                m: n.model.clone().map(|m| strings.add(m)),
                k: n.cached,
            })
            .collect(),
    }
}

/// A trace value as text: strings as they are, anything else as indented JSON.
fn trace_text(v: &Value) -> String {
    match v {
        Value::String(s) => crate::non_finite::name(v).map_or_else(|| s.clone(), str::to_string),
        Value::Null => "null".into(),
        Value::Array(_) | Value::Object(_) => {
            crate::non_finite::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
        }
        other => other.to_string(),
    }
}

/// JSON that is safe inside a `<script>` element: `<`, `>`, `&`, U+2028 and U+2029 become
/// `\u` escapes (identical JSON, but no `</script>` or `<!--` can appear).
pub fn script_json(value: &impl Serialize) -> Result<String, ReportError> {
    let text = crate::non_finite::to_string_for_javascript(value)
        .map_err(|e| ReportError::Template(format!("cannot encode the report data: {e}")))?;
    Ok(escape_script_json(&text))
}

/// See [`script_json`].
pub fn escape_script_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 50);
    let mut rest = text;
    // Copy runs of plain text at once; stop at `<`, `>`, `&` and the first byte of U+2028/9.
    while let Some(i) = rest.find(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        out.push_str(&rest[..i]);
        let ch = rest[i..].chars().next().unwrap_or('&');
        out.push_str(match ch {
            '<' => "\\u003c",
            '>' => "\\u003e",
            '&' => "\\u0026",
            '\u{2028}' => "\\u2028",
            _ => "\\u2029",
        });
        rest = &rest[i + ch.len_utf8()..];
    }
    out.push_str(rest);
    out
}

/// Standard base64 (for the CSP script hash).
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture;

    fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
        let s = text.find(start).unwrap_or_else(|| panic!("no {start}")) + start.len();
        let e = s + text[s..].find(end).unwrap_or_else(|| panic!("no {end}"));
        &text[s..e]
    }

    #[test]
    fn script_json_cannot_close_the_element() {
        let text = escape_script_json(r#"{"a":"</script><!-- & \u2028"}"#);
        assert_eq!(
            text,
            r#"{"a":"\u003c/script\u003e\u003c!-- \u0026 \u2028"}"#
        );
        let raw = escape_script_json("\"\u{2028}\u{2029}\"");
        assert_eq!(raw, "\"\\u2028\\u2029\"");
        let back: String = serde_json::from_str(&raw).unwrap();
        assert_eq!(back, "\u{2028}\u{2029}");
    }

    #[test]
    fn a_title_holding_the_data_marker_does_not_move_the_data() {
        let mut report = fixture::report();
        report.title = DATA_MARKER.to_string();
        let html = render_html(&report).unwrap();
        assert!(html.contains(&format!("<title>{DATA_MARKER}</title>")));
        let data = between(&html, "id=\"report-data\">", "</script>");
        assert!(serde_json::from_str::<Value>(data).is_ok());
    }

    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }

    #[test]
    fn the_page_has_its_sections_and_escapes_every_text() {
        let report = fixture::report();
        let html = render_html(&report).unwrap();
        assert!(html.starts_with("<!doctype html>"));
        assert!(
            html.contains(
                "<title>&lt;script&gt;alert(&#x27;title&#x27;)&lt;&#x2F;script&gt;</title>"
            )
        );
        assert!(!html.contains("<script>alert"), "the title ran");
        for id in [
            "summary",
            "comparison",
            "charts",
            "lines",
            "controls",
            "rows",
        ] {
            assert!(html.contains(&format!("id=\"{id}\"")), "section {id}");
        }
        // One executable script, pinned by the CSP; one data block.
        let script = between(&html, "<script>", "</script>");
        assert_eq!(script, SCRIPT);
        let hash = base64(&Sha256::digest(script.as_bytes()));
        let decoded = html.replace("&#x2F;", "/").replace("&#x27;", "'");
        assert!(decoded.contains(&format!("script-src 'sha256-{hash}'")));
        assert!(html.contains("default-src &#x27;none&#x27;"));
        let data = between(
            &html,
            "<script type=\"application/json\" id=\"report-data\">",
            "</script>",
        );
        assert!(!data.contains('<') && !data.contains('>') && !data.contains('&'));
        let data: Value = serde_json::from_str(data).unwrap();
        assert_eq!(data["lines"].as_array().unwrap().len(), 3);
        let text = |v: &Value| data["strings"][v.as_u64().unwrap() as usize].clone();
        assert_eq!(
            text(&data["lines"][1]["r"][0]["o"][0]),
            "</textarea>\"><img src=x onerror=alert(1)>{{ 7*7 }}\u{2028}"
        );
        assert_eq!(text(&data["lines"][1]["r"][1]["o"][0]), "-3");
        assert_eq!(data["lines"][0]["r"][1]["sc"][0][1], false);
        assert_eq!(text(&data["lines"][0]["r"][0]["x"][0]["n"]), "ask");
        // A text is stored once: line 0's two runs share the node name and the question.
        assert_eq!(
            data["lines"][0]["r"][0]["x"][0]["n"],
            data["lines"][0]["r"][1]["x"][0]["n"]
        );
        assert_eq!(data["runs"][1]["label"], "=cmd|' /C calc'!A0");
        // Labels are escaped where they are rendered server-side.
        assert!(html.contains("=cmd|&#x27; &#x2F;C calc&#x27;!A0"));
    }

    #[test]
    fn cards_metrics_best_and_deltas() {
        let report = fixture::report();
        let html = render_html(&report).unwrap();
        for card in [
            "lines",
            "pass-rate",
            "metric-accuracy",
            "tokens",
            "cost",
            "latency",
        ] {
            assert!(
                html.contains(&format!("data-card=\"{card}\"")),
                "card {card}"
            );
        }
        let pass = between(&html, "data-card=\"pass-rate\"", "</div>\n  \n    <div");
        assert!(pass.contains("66.7%") && pass.contains("33.3%"), "{pass}");
        assert!(pass.contains("card-row best"), "{pass}");
        // accuracy: higher is better, the second run is best and +0.25 over the baseline.
        let accuracy = between(&html, "<tr data-metric=\"accuracy\">", "</tr>");
        assert!(
            accuracy.contains("title=\"higher is better\""),
            "{accuracy}"
        );
        assert!(
            accuracy.contains("<td class=\"num\">0.50</td>"),
            "{accuracy}"
        );
        assert!(
            accuracy.contains("<td class=\"num best\">0.75"),
            "{accuracy}"
        );
        assert!(
            accuracy.contains("class=\"delta better\">+0.25"),
            "{accuracy}"
        );
        // latency: lower is better, so the baseline is best and the other run worse.
        let latency = between(&html, "<tr data-metric=\"latency.p95_ms\">", "</tr>");
        assert!(latency.contains("title=\"lower is better\""), "{latency}");
        assert!(
            latency.contains("<td class=\"num best\">20.5 ms"),
            "{latency}"
        );
        assert!(
            latency.contains("<td class=\"num\">20.8 ms <span"),
            "{latency}"
        );
        assert!(latency.contains("class=\"delta worse\">+0.2"), "{latency}");
    }

    #[test]
    fn charts_are_inline_svg_with_escaped_labels() {
        let report = fixture::report();
        let html = render_html(&report).unwrap();
        let metrics = between(&html, "id=\"chart-metrics\"", "</figure>");
        assert!(metrics.contains("<svg viewBox="));
        assert!(metrics.contains(">accuracy</text>"));
        assert!(metrics.contains(">=cmd|&#x27; &#x2F;C calc&#x27;!A0</text>"));
        assert!(metrics.matches("<rect").count() >= 4);
        let scores = between(&html, "id=\"chart-score-exact_match\"", "</figure>");
        assert!(
            scores.contains("<title>base: 2 lines in [0.85, 1]</title>"),
            "{scores}"
        );
        let latency = between(&html, "id=\"chart-latency\"", "</figure>");
        assert!(latency.contains("class=\"marker dashed c1\""), "{latency}");
        assert!(!html.contains("xlink") && !html.contains("<image"));
    }
}
