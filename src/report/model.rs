//! The report model: runs, their summaries and metrics, and the lines side by side. Every
//! output format (CSV, HTML, JSON) is rendered from this one value.

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::record::{Status, Tokens};

/// Everything a report shows.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub title: String,
    /// When the report was generated (RFC 3339, UTC).
    pub generated: String,
    /// Index into `runs` of the run deltas are computed against.
    pub baseline: usize,
    pub runs: Vec<RunReport>,
    /// The datasets the runs read (file names); `RunReport::dataset` indexes this.
    pub datasets: Vec<String>,
    pub columns: Columns,
    /// One row per dataset line, ordered by dataset then line number.
    pub lines: Vec<ReportLine>,
    /// Which lines have node traces (`all`, `not-passed` or `none`).
    pub traces: super::load::Traces,
    /// The experiment the runs came from, when the report was made from one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experiment: Option<ExperimentInfo>,
}

/// What an experiment's `summary.json` says beyond its runs.
#[derive(Debug, Clone, Serialize)]
pub struct ExperimentInfo {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
    /// How the winner was chosen (`highest mean `accuracy` over the datasets; ...`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub winner_rule: String,
    /// The metric the winner was chosen by, and the winner's mean of it over the datasets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub winner_metric: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub winner_value: Option<f64>,
}

/// The column names shared by every run, in a stable order (first appearance).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Columns {
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    /// Evaluators with a per-line score (built-in evaluators and judges).
    pub scores: Vec<String>,
    /// Per-line outputs of evaluation flows (e.g. `grade`).
    pub eval_outputs: Vec<String>,
}

/// One run and how it went.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// What the report calls the run (a variant, or the run's name).
    pub label: String,
    /// The run directory's name.
    pub name: String,
    pub path: String,
    pub flow_name: String,
    pub variant: String,
    /// Index into `Report::datasets`.
    pub dataset: usize,
    /// `meta.json`'s status (Completed, Failed, Canceled, Running).
    pub status: String,
    /// Every model answer came from the offline echo provider.
    pub offline: bool,
    /// The evaluation run directories whose scores are included.
    pub evaluations: Vec<String>,
    pub summary: RunSummary,
    /// Numeric metrics: the evaluations' (accuracy, `exact_match.mean`, ...) and the run's own
    /// `log_metric` values, then the standard ones (`lines.pass_rate`, `latency.p50_ms`, ...).
    /// NaN and the infinities are kept (serialised as [`crate::non_finite`] markers).
    #[serde(serialize_with = "metrics_with_non_finite")]
    pub metrics: IndexMap<String, f64>,
    /// The newest evaluation's verdict and gates (`verdict.json`), when it recorded them: the
    /// first thing the report shows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<crate::eval::eval_dir::VerdictRecord>,
}

/// The standard metric of a run's spend in USD; a run with cached answers is never ranked on it.
pub const COST_METRIC: &str = "cost.usd";

/// The numbers on a run's summary cards, computed from its lines.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    /// Lines the run was asked to run (from `meta.json`).
    pub total_lines: usize,
    /// Lines that finished (succeeded or failed).
    pub lines: usize,
    pub completed: usize,
    pub failed: usize,
    /// Lines that completed and passed every evaluator that scored them.
    pub passed: usize,
    /// `passed / lines` (0 when there are none).
    pub pass_rate: f64,
    pub tokens: Tokens,
    /// Summed cost in USD; `None` when a model's price is unknown.
    pub cost_usd: Option<f64>,
    /// Model calls answered from the response cache: they cost nothing, so the run's cost
    /// is not comparable with a run that made them.
    pub cache_hits: u64,
    /// What the cached answers would have cost at the price table's rates.
    pub saved_usd: f64,
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
    pub latency_mean_ms: f64,
}

/// One dataset line across runs.
#[derive(Debug, Clone, Serialize)]
pub struct ReportLine {
    /// Index into `Report::datasets`.
    pub dataset: usize,
    pub line_number: usize,
    /// The line's resolved inputs (from the first run that ran it).
    pub inputs: Map<String, Value>,
    /// One cell per run, `None` where the run did not run this line.
    pub cells: Vec<Option<LineCell>>,
}

/// One run's result for one line.
#[derive(Debug, Clone, Serialize)]
pub struct LineCell {
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub outputs: Map<String, Value>,
    /// Evaluator → score, for the evaluators that scored this line.
    pub scores: IndexMap<String, ScoreCell>,
    /// Evaluation-flow outputs for this line.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub eval_outputs: Map<String, Value>,
    pub latency_ms: f64,
    pub tokens: Tokens,
    pub cost_usd: f64,
    /// Model calls of the line answered from the response cache.
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub cache_hits: u32,
    /// What those cached answers would have cost (not in `cost_usd`).
    #[serde(skip_serializing_if = "is_zero_f64")]
    pub saved_usd: f64,
    /// Each node's execution, in the order they started (empty when traces were not loaded).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trace: Vec<NodeTrace>,
}

impl LineCell {
    /// The line completed and no evaluator failed it.
    pub fn passed(&self) -> bool {
        self.status == Status::Completed && self.scores.values().all(|s| s.passed)
    }
}

/// One evaluator's verdict on one line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreCell {
    /// `None`: the line could not be scored (its reason says why).
    pub score: Option<f64>,
    pub passed: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// One node's execution within a line, as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeTrace {
    pub node: String,
    pub status: Status,
    pub inputs: Map<String, Value>,
    pub output: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub start_time: String,
    pub duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Tokens>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub cached: bool,
}

/// A value as one cell of text: strings as they are, `null` as nothing, anything else as
/// compact JSON.
pub fn value_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => {
            crate::non_finite::name(value).map_or_else(|| s.clone(), str::to_string)
        }
        other => crate::non_finite::to_string(other).unwrap_or_else(|_| other.to_string()),
    }
}

/// The short name of a line status.
pub fn status_name(status: Status) -> &'static str {
    match status {
        Status::Completed => "Completed",
        Status::Failed => "Failed",
        Status::Bypassed => "Bypassed",
        Status::Canceled => "Canceled",
    }
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

fn is_zero_f64(x: &f64) -> bool {
    *x == 0.0
}

/// Metrics as JSON numbers, NaN and the infinities as [`crate::non_finite`] markers (JSON has
/// no such numbers; the report's writers turn the markers into what their reader takes).
fn metrics_with_non_finite<S: serde::Serializer>(
    metrics: &IndexMap<String, f64>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(metrics.len()))?;
    for (k, v) in metrics {
        map.serialize_entry(k, &crate::non_finite::number(*v))?;
    }
    map.end()
}
