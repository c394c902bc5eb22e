//! What ran: the records of nodes, lines and aggregations, in the shape promptflow writes them
//! (`.promptflow/flow.detail.json`, run directories), serialisable as JSON.

use crate::image::MessageFormat;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How a node or a line ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Completed,
    Failed,
    /// Not run: its `activate` condition did not hold, or everything it depends on was bypassed.
    Bypassed,
    /// Not finished because another node of the line failed first.
    Canceled,
}

/// Token counts of one model call or a sum of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

impl Tokens {
    /// Add another count to this one.
    pub fn add(&mut self, other: &Tokens) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.total_tokens += other.total_tokens;
    }
}

/// What kind of failure, so callers can tell a bad prompt from a broken endpoint (exit 1 vs 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A flow input is missing or does not have its declared type.
    Input,
    /// A template failed to render or its chat messages did not parse.
    Template,
    /// A reference's property path did not exist at run time.
    Reference,
    /// The model endpoint answered with an error for this request.
    Provider,
    /// The endpoint could not be used at all: unreachable, key refused, deployment missing.
    Endpoint,
    /// A Python tool raised an exception or its worker died.
    Python,
    /// A connection could not be resolved.
    Connection,
    /// The line ran out of time.
    Timeout,
}

/// A failure, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub kind: ErrorKind,
    pub message: String,
    /// The exception type for Python errors, the HTTP status class for provider errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceback: Option<String>,
    /// The node that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl ErrorInfo {
    /// A failure of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ErrorInfo {
            kind,
            message: message.into(),
            error_type: None,
            traceback: None,
            node: None,
        }
    }
}

/// One node's execution within a line (or an aggregation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRun {
    pub node: String,
    pub status: Status,
    pub inputs: Map<String, Value>,
    pub output: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    pub start_time: String,
    pub end_time: String,
    /// Wall time in milliseconds.
    pub duration_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Tokens>,
    /// The model that answered, as reported by the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// For a pool connection (`X_POOL`): the member connection that served the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant_id: Option<String>,
    /// Cost of the model call in USD, when the model's price is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// The model answer came from the response cache (no request was made).
    #[serde(default, skip_serializing_if = "is_false")]
    pub cached: bool,
    /// For a cached answer: what the call would have cost at the price table's rates (its
    /// `cost_usd` is 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_usd: Option<f64>,
    /// Retries the request needed (429/5xx), when it was a model call.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// Metrics logged with `log_metric` (aggregation nodes).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metrics: Map<String, Value>,
    /// What a Python tool printed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stdout: String,
    /// Model calls a Python tool made through flow (`promptflow.tools`, `Prompty`), counted in
    /// `tokens` and `cost_usd`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub model_calls: u32,
    /// The `@trace`d calls made during a Python node's call (a flex flow's entry), recorded as
    /// promptflow records them, under `api_calls`: `name`, `inputs`, `output` or `error`,
    /// `start_time`/`end_time` (seconds since the epoch) and nested `children`; at most 200 per
    /// call, the rest counted in a last `(capped)` entry.
    #[serde(
        default,
        rename = "api_calls",
        alias = "traces",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub traces: Vec<Value>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_f64(x: &f64) -> bool {
    *x == 0.0
}

/// One line of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineResult {
    pub line_number: usize,
    pub status: Status,
    pub inputs: Map<String, Value>,
    pub outputs: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    pub nodes: Vec<NodeRun>,
    pub start_time: String,
    pub end_time: String,
    pub duration_ms: f64,
    pub tokens: Tokens,
    /// Summed cost of the line's model calls whose price is known, in USD.
    #[serde(default)]
    pub cost_usd: f64,
    /// What the line's cached answers would have cost at the price table's rates (not in
    /// `cost_usd`).
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub saved_usd: f64,
    /// Model calls of the line answered from the cache.
    #[serde(default)]
    pub cache_hits: u32,
    /// Models called whose price is unknown (their calls are not in `cost_usd`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unpriced_models: Vec<String>,
}

impl LineResult {
    /// Whether every node that ran completed.
    pub fn succeeded(&self) -> bool {
        self.status == Status::Completed
    }
}

/// The aggregation step of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AggregationResult {
    pub nodes: Vec<NodeRun>,
    /// Every `log_metric` value, by name.
    pub metrics: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
}

/// A timestamp as promptflow writes them: RFC 3339, UTC, microseconds.
pub fn timestamp(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    dt.format(&format).unwrap_or_default()
}

/// Milliseconds, rounded to microseconds.
pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// Write the single-line detail record promptflow writes for `pf flow test`:
/// `<flow dir>/.promptflow/flow.detail.json` and `flow.output.json`.
pub fn write_detail(
    flow_dir: &Path,
    line: &LineResult,
    aggregation: Option<&AggregationResult>,
    variant: &str,
) -> std::io::Result<std::path::PathBuf> {
    let dir = flow_dir.join(".promptflow");
    std::fs::create_dir_all(&dir)?;
    let mut node_runs: Vec<Value> = line
        .nodes
        .iter()
        .map(|n| node_json(n, line.line_number))
        .collect();
    if let Some(agg) = aggregation {
        node_runs.extend(agg.nodes.iter().map(|n| node_json(n, line.line_number)));
    }
    let detail = serde_json::json!({
        "flow_runs": [{
            "run_id": format!("{}", line.line_number),
            "status": line.status,
            "error": line.error,
            "inputs": line.inputs,
            "output": line.outputs,
            "metrics": aggregation.map(|a| a.metrics.clone()).unwrap_or_default(),
            "start_time": line.start_time,
            "end_time": line.end_time,
            "index": line.line_number,
            "variant_id": variant,
            "system_metrics": {
                "duration": line.duration_ms / 1000.0,
                "prompt_tokens": line.tokens.prompt_tokens,
                "completion_tokens": line.tokens.completion_tokens,
                "total_tokens": line.tokens.total_tokens,
            },
        }],
        "node_runs": node_runs,
    });
    let path = dir.join("flow.detail.json");
    write_json_atomic(&path, &detail)?;
    write_json_atomic(
        &dir.join("flow.output.json"),
        &Value::Object(line.outputs.clone()),
    )?;
    Ok(path)
}

fn node_json(n: &NodeRun, index: usize) -> Value {
    let mut doc = serde_json::json!({
        "node": n.node,
        "status": n.status,
        "inputs": n.inputs,
        "output": n.output,
        "error": n.error,
        "metrics": n.metrics,
        "start_time": n.start_time,
        "end_time": n.end_time,
        "index": index,
        "variant_id": n.variant_id.clone().unwrap_or_default(),
        "logs": {"stdout": n.stdout, "stderr": ""},
        "system_metrics": {
            "duration": n.duration_ms / 1000.0,
            "prompt_tokens": n.tokens.map_or(0, |t| t.prompt_tokens),
            "completion_tokens": n.tokens.map_or(0, |t| t.completion_tokens),
            "total_tokens": n.tokens.map_or(0, |t| t.total_tokens),
        },
        "model": n.model,
        "retries": n.retries,
    });
    if !n.traces.is_empty() {
        doc["api_calls"] = Value::Array(n.traces.clone());
    }
    doc
}

/// Write JSON to a temporary file beside `path`, then rename it into place.
pub fn write_json_atomic(path: &Path, value: &Value) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let text = crate::non_finite::to_vec_pretty(value).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Write the images a line holds (inputs, outputs, node inputs and outputs) to files under
/// `dir/sub`, and refer to them as `{"data:image/png;path": "sub/<hash>.png"}` (relative to
/// `dir`; `{"type": "image_file", "image_file": {"path": ...}}` in an openai-vision flow), as
/// promptflow persists multimedia data in run records.
pub fn persist_images(
    line: &mut LineResult,
    dir: &Path,
    sub: &str,
    format: MessageFormat,
) -> std::io::Result<()> {
    persist_map(&mut line.inputs, dir, sub, format)?;
    persist_map(&mut line.outputs, dir, sub, format)?;
    persist_nodes(&mut line.nodes, dir, sub, format)
}

/// [`persist_images`] for node records (aggregation nodes).
pub fn persist_nodes(
    nodes: &mut [NodeRun],
    dir: &Path,
    sub: &str,
    format: MessageFormat,
) -> std::io::Result<()> {
    for n in nodes {
        persist_map(&mut n.inputs, dir, sub, format)?;
        if crate::image::contains_image(&n.output) {
            crate::image::persist(&mut n.output, dir, sub, format)?;
        }
    }
    Ok(())
}

fn persist_map(
    m: &mut Map<String, Value>,
    dir: &Path,
    sub: &str,
    format: MessageFormat,
) -> std::io::Result<()> {
    for v in m.values_mut() {
        if crate::image::contains_image(v) {
            crate::image::persist(v, dir, sub, format)?;
        }
    }
    Ok(())
}
