//! The evaluation run directory (`flow eval`'s layout): built-in evaluators' `scores.jsonl`,
//! the merged `metrics.json`, and the `meta.json` of an evaluation that ran no flow. Shared by
//! `flow eval` and `flow experiment`.

use std::io::{self, BufWriter};
use std::path::Path;
use std::time::SystemTime;

use serde_json::{Map, Value};

use super::builtin::{BuiltinOutcome, LineScore, score_run};
use crate::data::ColumnMapping;
use crate::evaluators::EvaluatorSpec;
use crate::record::timestamp;
use crate::run_store::{RunDir, RunMeta, RunSettings, RunStatus};

/// The file built-in evaluators' per-line scores are written to.
pub const SCORES_FILE: &str = "scores.jsonl";

/// Score the run in `base` with built-in `evaluators` into `eval_dir/scores.jsonl` (one JSON
/// line per dataset line); `each` sees every line. The outcome's metrics are not merged yet
/// (see [`merge_metrics`]).
pub fn score_into_dir(
    eval_dir: &RunDir,
    base: &RunDir,
    data: &Path,
    mapping: &ColumnMapping,
    evaluators: &[EvaluatorSpec],
    each: impl FnMut(&LineScore),
) -> Result<BuiltinOutcome, String> {
    let path = eval_dir.path.join(SCORES_FILE);
    let file = std::fs::File::create(&path)
        .map_err(|e| format!("cannot write scores {}: {e}", path.display()))?;
    let mut out = BufWriter::new(file);
    let outcome = score_run(base, data, mapping, evaluators, &mut out, each)?;
    io::Write::flush(&mut out).map_err(|e| format!("cannot write scores: {e}"))?;
    Ok(outcome)
}

/// The metrics already in `dir/metrics.json` (an evaluation flow's), or none.
pub fn read_metrics(dir: &RunDir) -> Map<String, Value> {
    std::fs::read_to_string(dir.metrics_file())
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Add `extra` to `metrics` (later values win).
pub fn merge_metrics(metrics: &mut Map<String, Value>, extra: &Map<String, Value>) {
    for (k, v) in extra {
        metrics.insert(k.clone(), v.clone());
    }
}

/// Write `metrics` to `dir/metrics.json` atomically.
pub fn write_metrics(dir: &RunDir, metrics: &Map<String, Value>) -> io::Result<()> {
    crate::record::write_json_atomic(&dir.metrics_file(), &Value::Object(metrics.clone()))
}

/// The record of an evaluation with built-in evaluators only (no flow ran), named `name`,
/// of the run in `base` over `data`.
pub fn builtin_only_meta(name: &str, base: &RunDir, base_meta: &RunMeta, data: &Path) -> RunMeta {
    RunMeta {
        name: name.to_string(),
        flow: String::new(),
        flow_name: "built-in evaluators".into(),
        variant: "default".into(),
        variants: Default::default(),
        data: Some(
            std::path::absolute(data)
                .unwrap_or(data.to_path_buf())
                .display()
                .to_string(),
        ),
        column_mapping: Vec::new(),
        base_run: Some(base.path.display().to_string()),
        status: RunStatus::Running,
        created: timestamp(SystemTime::now()),
        end_time: None,
        duration_s: 0.0,
        total_lines: base_meta.total_lines,
        completed_lines: 0,
        failed_lines: 0,
        tokens: Default::default(),
        cost_usd: Some(0.0),
        unpriced_models: Vec::new(),
        latency_ms: Default::default(),
        cache_hits: 0,
        concurrency: 1,
        offline: base_meta.offline,
        settings: RunSettings::default(),
        flow_version: env!("CARGO_PKG_VERSION").to_string(),
    }
}
