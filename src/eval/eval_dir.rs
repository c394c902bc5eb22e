//! The evaluation directory's layout, in one place: built-in evaluators' `scores.jsonl`, model
//! evaluators' `judge_scores.jsonl`, what the evaluators were (`evaluators.json`), repeated
//! samples under `samples/<n>/`, the merged `metrics.json` (the run directory's, see
//! [`RunDir::metrics_file`]), and the `meta.json` of an evaluation that ran no flow. Every
//! reader and writer (`flow eval`, `flow experiment`, `flow report`) names the files through
//! these constants.

use std::io::{self, BufWriter};
use std::path::Path;
use std::time::SystemTime;

use serde_json::{Map, Value};

use super::builtin::{BuiltinOutcome, LineScore, score_run};
use super::error::ScoreError;
use super::models::{ModelEvaluator, ModelLine};
use crate::data::ColumnMapping;
use crate::evaluators::EvaluatorSpec;
use crate::record::timestamp;
use crate::run_store::{RunDir, RunMeta, RunSettings, RunStatus};

/// The file built-in evaluators' per-line scores are written to.
pub const SCORES_FILE: &str = "scores.jsonl";

/// The file model-based evaluators' (judges', embeddings') per-line scores are written to.
pub const JUDGE_SCORES_FILE: &str = "judge_scores.jsonl";

/// The files of per-line scores, in the order a report reads them.
pub const SCORE_FILES: [&str; 2] = [SCORES_FILE, JUDGE_SCORES_FILE];

/// What the evaluators were: built-ins by spec, model evaluators by model and prompt hash.
pub const EVALUATORS_FILE: &str = "evaluators.json";

/// The folder repeated samples (`--repeat N`) are run into, one `<n>/` run directory each.
pub const SAMPLES_DIR: &str = "samples";

/// The run directory of repeated sample `sample` of the evaluation in `dir`.
pub fn sample_dir(dir: &RunDir, sample: u32) -> RunDir {
    RunDir::new(dir.path.join(SAMPLES_DIR).join(sample.to_string()))
}

/// The evaluation's verdict and each gate with its value (`verdict.json`), for the reports.
pub const VERDICT_FILE: &str = "verdict.json";

/// What `verdict.json` holds: the verdict as the terminal says it, and every gate.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VerdictRecord {
    /// The evaluation passed (every gate, every line evaluated).
    pub passed: bool,
    /// `passed`, or what failed / why it is inconclusive.
    pub verdict: String,
    pub gates: Vec<crate::gate::GateResult>,
}

/// The command that started an evaluation (`evaluation.json`), so `flow eval --resume` can
/// run it again.
pub const COMMAND_FILE: &str = "evaluation.json";

/// What `evaluation.json` holds: where `flow eval` ran and its arguments (after `eval`, its
/// `--name` made explicit).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CommandRecord {
    pub cwd: String,
    pub args: Vec<String>,
    pub flow_version: String,
}

/// Write `dir/evaluation.json`.
pub fn write_command(dir: &RunDir, record: &CommandRecord) -> io::Result<()> {
    let value = serde_json::to_value(record).map_err(io::Error::other)?;
    crate::record::write_json_atomic(&dir.path.join(COMMAND_FILE), &value)
}

/// Read `dir/evaluation.json`.
pub fn read_command(dir: &Path) -> io::Result<CommandRecord> {
    let text = std::fs::read_to_string(dir.join(COMMAND_FILE))?;
    serde_json::from_str(&text).map_err(io::Error::other)
}

/// Write `dir/verdict.json`.
pub fn write_verdict(dir: &RunDir, record: &VerdictRecord) -> io::Result<()> {
    let value = serde_json::to_value(record).map_err(io::Error::other)?;
    crate::record::write_json_atomic(&dir.path.join(VERDICT_FILE), &value)
}

/// Read `dir/verdict.json`, when the evaluation wrote one.
pub fn read_verdict(dir: &Path) -> Option<VerdictRecord> {
    let text = std::fs::read_to_string(dir.join(VERDICT_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Whether `dir` holds per-line scores of evaluators (an evaluation directory).
pub fn has_scores(dir: &Path) -> bool {
    SCORE_FILES.iter().any(|f| dir.join(f).is_file())
}

/// Write what the evaluators were to `dir/evaluators.json`: each built-in as its name and spec,
/// each model evaluator as [`ModelEvaluator::describe`] says.
pub fn write_evaluators(
    dir: &RunDir,
    builtin: &[EvaluatorSpec],
    models: &[ModelEvaluator],
) -> io::Result<()> {
    let described: Vec<Value> = builtin
        .iter()
        .map(|spec| serde_json::json!({"name": spec.name, "spec": spec.source, "kind": "builtin"}))
        .chain(models.iter().map(ModelEvaluator::describe))
        .collect();
    crate::record::write_json_atomic(&dir.path.join(EVALUATORS_FILE), &Value::Array(described))
}

/// Write model-based evaluators' per-line scores to `dir/judge_scores.jsonl`; return their
/// metrics (`<name>.mean`, `<name>.pass_rate`).
pub fn record_model_scores(dir: &RunDir, lines: &[ModelLine]) -> io::Result<Map<String, Value>> {
    use std::io::Write;
    let file = std::fs::File::create(dir.path.join(JUDGE_SCORES_FILE))?;
    let mut out = BufWriter::new(file);
    let mut per_evaluator: indexmap::IndexMap<String, Vec<(Option<f64>, bool)>> =
        indexmap::IndexMap::new();
    for line in lines {
        let scores: Map<String, Value> = line
            .scores
            .iter()
            .map(|(n, s, p, r)| {
                (
                    n.clone(),
                    serde_json::json!({"score": s, "passed": p, "reason": r}),
                )
            })
            .collect();
        let record = serde_json::json!({"line_number": line.line_number, "scores": scores});
        writeln!(out, "{record}")?;
        for (name, score, passed, _) in &line.scores {
            per_evaluator
                .entry(name.clone())
                .or_default()
                .push((*score, *passed));
        }
    }
    out.flush()?;
    let mut metrics = Map::new();
    for (name, scores) in per_evaluator {
        let agg = crate::judge::Aggregate::from_lines(scores);
        if let Some(mean) = agg.mean {
            metrics.insert(
                format!("{name}.mean"),
                Value::from((mean * 1e6).round() / 1e6),
            );
        }
        metrics.insert(
            format!("{name}.pass_rate"),
            Value::from(agg.pass_rate.unwrap_or(0.0)),
        );
    }
    Ok(metrics)
}

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
) -> Result<BuiltinOutcome, ScoreError> {
    let path = eval_dir.path.join(SCORES_FILE);
    let write = |source| ScoreError::Write {
        path: path.clone(),
        source,
    };
    let file = std::fs::File::create(&path).map_err(write)?;
    let mut out = BufWriter::new(file);
    let outcome = score_run(base, data, mapping, evaluators, &mut out, &path, each)?;
    io::Write::flush(&mut out).map_err(write)?;
    Ok(outcome)
}

/// The metrics already in `dir/metrics.json` (an evaluation flow's), or none.
pub fn read_metrics(dir: &RunDir) -> Map<String, Value> {
    std::fs::read_to_string(dir.metrics_file())
        .ok()
        .and_then(|t| crate::non_finite::from_str(&t).ok())
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
        saved_usd: 0.0,
        concurrency: 1,
        offline: base_meta.offline,
        settings: RunSettings::default(),
        flow_version: env!("CARGO_PKG_VERSION").to_string(),
        shard: None,
        merged_from: Vec::new(),
        experiment: None,
    }
}
