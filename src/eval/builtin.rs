//! Built-in evaluators over a run: for each line of the dataset, the base run's record (outputs,
//! latency, tokens, cost) and the row give an [`EvalInput`]; every evaluator scores it. Lines
//! whose base line failed or never ran are failures for every evaluator — never dropped.

use std::io::Write;
use std::path::Path;

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::{Map, Value};

use super::error::ScoreError;
use crate::data::{ColumnMapping, Row};
use crate::evaluators::{Aggregate, EvalInput, EvaluatorSpec, Score, aggregate};
use crate::model::{FlowInput, ValueType};
use crate::record::Status;
use crate::run_store::{RunDir, read_journal};

/// The scores of one line.
#[derive(Debug, Clone, Serialize)]
pub struct LineScore {
    pub line_number: usize,
    /// Why the line could not be scored at all (its base line failed, or never ran).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_error: Option<String>,
    /// A short preview of the prediction, for summaries.
    pub prediction: String,
    /// Evaluator name → score.
    pub scores: IndexMap<String, Score>,
}

/// What scoring a run produced.
#[derive(Debug, Default)]
pub struct BuiltinOutcome {
    /// Per evaluator: the aggregate over every line.
    pub aggregates: IndexMap<String, Aggregate>,
    /// Lines whose base line failed or never ran.
    pub failed_base_lines: usize,
    pub lines: usize,
    /// Metrics to merge into `metrics.json`: `<evaluator>.mean`, `<evaluator>.pass_rate`.
    pub metrics: Map<String, Value>,
}

/// Score every line of `data` against the run in `base` with `evaluators`, writing one JSON line
/// per line to `out` (`scores.jsonl`, at `scores_path`) and calling `each` with it. The prediction is the mapped
/// `prediction` (`--column-mapping prediction='${run.outputs.x}'`), else the run's only output;
/// the reference is the mapped `ground_truth`, else a `ground_truth` column.
pub fn score_run(
    base: &RunDir,
    data: &Path,
    mapping: &ColumnMapping,
    evaluators: &[EvaluatorSpec],
    out: &mut dyn Write,
    scores_path: &Path,
    mut each: impl FnMut(&LineScore),
) -> Result<BuiltinOutcome, ScoreError> {
    let journal = read_journal(base).map_err(|source| ScoreError::ReadRun {
        path: base.path.clone(),
        source,
    })?;
    let base_run = crate::data::BaseRun::load(&base.path)?;
    let reader = crate::data::open(data)?;
    let fields: IndexMap<String, FlowInput> = ["prediction", "ground_truth"]
        .iter()
        .map(|n| {
            (
                n.to_string(),
                FlowInput {
                    name: n.to_string(),
                    ty: ValueType::Object,
                    default: None,
                    description: None,
                    allowed: None,
                    is_chat_input: false,
                    is_chat_history: false,
                },
            )
        })
        .collect();
    let mut all: IndexMap<String, Vec<Score>> = evaluators
        .iter()
        .map(|e| (e.name.clone(), Vec::new()))
        .collect();
    let mut outcome = BuiltinOutcome::default();
    for item in reader {
        let row: Row = match item {
            Ok(r) => r,
            Err(e) => Row {
                line_number: e.line_number,
                row: e.row,
                values: Map::new(),
            },
        };
        let n = row.line_number;
        outcome.lines += 1;
        let record = journal
            .line(n)
            .map_err(|source| ScoreError::ReadLine { line: n, source })?;
        let base_error = match &record {
            None => Some(format!("line {n} is not in the run (it never ran)")),
            Some(l) if l.status != Status::Completed => Some(format!(
                "line {n} of the run failed: {}",
                l.error
                    .as_ref()
                    .map_or("unknown error", |e| e.message.as_str())
            )),
            Some(_) => None,
        };
        let mut line = LineScore {
            line_number: n,
            base_error: base_error.clone(),
            prediction: String::new(),
            scores: IndexMap::new(),
        };
        if let (None, Some(record)) = (&base_error, &record) {
            let mapped = mapping
                .apply_with_run(&fields, &row, Some(&base_run))
                .map_err(|e| e.to_string());
            let (prediction, reference) = match &mapped {
                Ok(m) => (
                    m.get("prediction")
                        .cloned()
                        .or_else(|| only_output(&record.outputs)),
                    m.get("ground_truth").cloned(),
                ),
                Err(_) => (
                    only_output(&record.outputs),
                    row.values.get("ground_truth").cloned(),
                ),
            };
            line.prediction = preview(prediction.as_ref());
            let input = EvalInput {
                prediction: prediction.as_ref(),
                reference: reference.as_ref(),
                latency_ms: Some(record.duration_ms),
                total_tokens: Some(record.tokens.total_tokens),
                // A cached answer is scored at what it costs the flow (its price when first
                // paid), not at the nothing the cache charged: a budget gate or a ranking on
                // cost must not pass on a warm cache.
                cost_usd: if record.unpriced_models.is_empty() {
                    Some(record.cost_usd + record.saved_usd)
                } else {
                    None
                },
                inputs: None,
            };
            for e in evaluators {
                let score = match &mapped {
                    Err(message) => Score {
                        score: None,
                        passed: false,
                        reason: message.clone(),
                    },
                    Ok(_) => e.evaluate(&input),
                };
                line.scores.insert(e.name.clone(), score);
            }
        } else {
            outcome.failed_base_lines += 1;
            for e in evaluators {
                line.scores.insert(
                    e.name.clone(),
                    Score {
                        score: None,
                        passed: false,
                        reason: base_error.clone().unwrap_or_default(),
                    },
                );
            }
        }
        for (name, score) in &line.scores {
            if let Some(v) = all.get_mut(name) {
                v.push(score.clone());
            }
        }
        let text = serde_json::to_string(&line).map_err(std::io::Error::from);
        text.and_then(|t| writeln!(out, "{t}"))
            .map_err(|source| ScoreError::Write {
                path: scores_path.to_path_buf(),
                source,
            })?;
        each(&line);
    }
    for (name, scores) in all {
        let agg = aggregate(&scores);
        if let Some(mean) = agg.mean {
            outcome.metrics.insert(format!("{name}.mean"), round(mean));
        }
        outcome
            .metrics
            .insert(format!("{name}.pass_rate"), round(agg.pass_rate));
        outcome.aggregates.insert(name, agg);
    }
    Ok(outcome)
}

/// The run's output when it has exactly one.
fn only_output(outputs: &Map<String, Value>) -> Option<Value> {
    if outputs.len() == 1 {
        outputs.values().next().cloned()
    } else {
        None
    }
}

fn preview(v: Option<&Value>) -> String {
    let text = match v {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 80 {
        format!("{}…", one_line.chars().take(79).collect::<String>())
    } else {
        one_line
    }
}

fn round(x: f64) -> Value {
    serde_json::Number::from_f64((x * 1e6).round() / 1e6)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}
