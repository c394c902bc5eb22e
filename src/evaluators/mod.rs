//! Built-in evaluators that need no Python (docs/eval.md).
//!
//! An [`EvaluatorSpec`] is parsed from the text given to `--evaluator NAME[:options]` (or an
//! `experiment.yaml` entry), scores one line at a time into a [`Score`], and a run's scores fold
//! into an [`Aggregate`] (mean and pass rate) with [`aggregate`].
//!
//! # Spec syntax
//!
//! `NAME[:option,option,...]`, each option a flag or `key=value`. Every evaluator takes
//! `as=NAME` (the metric prefix, default the evaluator's name); the continuous ones (`f1`,
//! `bleu`, `rouge_l`) take `threshold=X` (per-line pass mark, default 0.5).
//!
//! | evaluator | options | score |
//! |---|---|---|
//! | `exact_match` (`em`) | `ignore_case`, `strip_punctuation`, `strip_articles`, `normalize_whitespace`, `squad` (all four) | 1 / 0 |
//! | `contains`, `not_contains` | `text=...` (default: the reference), the same normalisation flags | 1 / 0 |
//! | `regex` | `pattern=...` (required, unanchored), `ignore_case` | 1 / 0 |
//! | `is_json` | `strip_fence` (accept a Markdown code fence) | 1 / 0 |
//! | `json_schema` | `file=...` (required), `strip_fence` | 1 / 0 |
//! | `numeric` | `tolerance=` (absolute, default 1e-9), `rel_tolerance=`, `extract` | 1 / 0 |
//! | `f1` (`token_f1`) | `raw` (no SQuAD normalisation), `threshold=` | 0..=1 |
//! | `bleu` | `lowercase`, `threshold=` | 0..=1 |
//! | `rouge_l` (`rouge-l`) | `threshold=` | 0..=1 |
//! | `latency` | `max_ms=` (required) | milliseconds |
//! | `tokens` | `max=` (required) | tokens |
//! | `cost` | `max_usd=` (required) | US dollars |
//!
//! `text=` and `pattern=` values may contain commas: a following segment that is not one of
//! the evaluator's options continues the value. Predictions that are not strings are compared
//! by their JSON text (`numeric` reads numbers; `is_json`/`json_schema` take them as JSON). A
//! reference that is an array of alternatives scores the best match.
//!
//! Everything here is deterministic and synchronous. Evaluators that call a model (embedding
//! similarity, LLM-as-judge rubrics) are meant to join [`Kind`] as further variants; they report
//! [`EvaluatorSpec::needs_model`] and are scored by an async entry point built on top of
//! [`EvaluatorSpec::evaluate`], which keeps handling every deterministic kind.

mod evaluate;
mod schema;
mod spec;
pub mod text;

pub use schema::{Schema, SchemaError};
pub use spec::{
    DEFAULT_THRESHOLD, DEFAULT_TOLERANCE, EvaluatorSpec, Kind, NAMES, SpecError, TextOptions,
};

use serde_json::Value;

/// What one evaluator sees of one line.
#[derive(Debug, Clone, Copy, Default)]
pub struct EvalInput<'a> {
    /// The flow's output being judged (`None`: the line produced no such output).
    pub prediction: Option<&'a Value>,
    /// The expected answer, usually a dataset column. An array of strings is a set of
    /// acceptable references (best match counts; BLEU uses them as multiple references).
    pub reference: Option<&'a Value>,
    /// The line's inputs (question, context...), for evaluators that need them.
    pub inputs: Option<&'a Value>,
    /// Wall time of the line in milliseconds.
    pub latency_ms: Option<f64>,
    /// Prompt plus completion tokens the line used.
    pub total_tokens: Option<u64>,
    /// What the line cost in US dollars.
    pub cost_usd: Option<f64>,
}

/// One evaluator's verdict on one line.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Score {
    /// The score (`None`: the line could not be scored, e.g. no reference). Pass/fail checks
    /// score 1.0 or 0.0; text metrics score in 0..=1; budgets score the measured value.
    pub score: Option<f64>,
    /// Whether the line passes this evaluator.
    pub passed: bool,
    /// Short human reason when it fails (empty when it passes).
    pub reason: String,
}

impl Score {
    /// A line that passes with this score.
    pub fn pass(score: f64) -> Self {
        Score {
            score: Some(score),
            passed: true,
            reason: String::new(),
        }
    }

    /// A scored line that fails, with the reason.
    pub fn fail(score: f64, reason: impl Into<String>) -> Self {
        Score {
            score: Some(score),
            passed: false,
            reason: reason.into(),
        }
    }

    /// A line that could not be scored; it counts as failed.
    pub fn unscored(reason: impl Into<String>) -> Self {
        Score {
            score: None,
            passed: false,
            reason: reason.into(),
        }
    }

    /// A pass/fail check: 1.0 and passed, or 0.0 with the reason.
    pub fn check(ok: bool, reason: impl FnOnce() -> String) -> Self {
        if ok {
            Score::pass(1.0)
        } else {
            Score::fail(0.0, reason())
        }
    }
}

/// Aggregate metrics of one evaluator over a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    /// Mean of the scored lines (`None` when no line could be scored).
    pub mean: Option<f64>,
    /// Passed lines over all lines, unscored lines included (0.0 for no lines).
    pub pass_rate: f64,
    /// Number of lines.
    pub count: usize,
    /// Number of lines that had a score.
    pub scored: usize,
}

impl Aggregate {
    /// The metrics under `name`: `name.mean` (when any line was scored) and `name.pass_rate`.
    pub fn metrics(&self, name: &str) -> Vec<(String, f64)> {
        let mut out = Vec::with_capacity(2);
        if let Some(mean) = self.mean {
            out.push((format!("{name}.mean"), mean));
        }
        out.push((format!("{name}.pass_rate"), self.pass_rate));
        out
    }
}

/// Folds per-line scores into mean and pass rate. A line with no score counts as failed and is
/// never dropped: it lowers the pass rate, though it cannot enter the mean.
pub fn aggregate(scores: &[Score]) -> Aggregate {
    let count = scores.len();
    let values: Vec<f64> = scores.iter().filter_map(|s| s.score).collect();
    let scored = values.len();
    let mean = (scored > 0).then(|| values.iter().sum::<f64>() / scored as f64);
    let passed = scores.iter().filter(|s| s.passed).count();
    let pass_rate = if count == 0 {
        0.0
    } else {
        passed as f64 / count as f64
    };
    Aggregate {
        mean,
        pass_rate,
        count,
        scored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregate_counts_unscored_lines_as_failures() {
        let scores = [
            Score::pass(1.0),
            Score::fail(0.0, "no"),
            Score::unscored("no reference"),
        ];
        let agg = aggregate(&scores);
        assert_eq!(agg.count, 3);
        assert_eq!(agg.scored, 2);
        assert_eq!(agg.mean, Some(0.5));
        assert!((agg.pass_rate - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn aggregate_of_nothing_has_no_mean() {
        let agg = aggregate(&[]);
        assert_eq!(
            agg,
            Aggregate {
                mean: None,
                pass_rate: 0.0,
                count: 0,
                scored: 0
            }
        );
        let agg = aggregate(&[Score::unscored("x")]);
        assert_eq!(agg.mean, None);
        assert_eq!(agg.metrics("f1"), vec![("f1.pass_rate".to_string(), 0.0)]);
    }
}
