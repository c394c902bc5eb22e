//! Evaluation of a finished run: [`evaluate`] runs an evaluation flow over the run (a batch
//! joined with it by line number), built-in evaluators line by line against the run's outputs
//! and the dataset, repeated samples, and model evaluators (judges, embeddings); it writes the
//! evaluation directory ([`eval_dir`] names its files), checks the gates and returns the
//! verdict. Lines the run failed on count as failures, never dropped. `flow eval` and
//! `flow experiment` both evaluate through [`evaluate`].

mod builtin;
mod error;
pub mod eval_dir;
mod evaluate;
mod models;
pub mod verdict;

pub use builtin::{BuiltinOutcome, LineScore, score_run};
pub use error::{EvalBatch, EvalError, ScoreError};
pub use eval_dir::{
    JUDGE_SCORES_FILE, SCORES_FILE, builtin_only_meta, merge_metrics, read_metrics,
    record_model_scores, score_into_dir, write_metrics,
};
pub use evaluate::{EvalObserver, EvalOutcome, EvalPlan, Quiet, Repeat, evaluate};
pub use models::{
    ModelEvaluator, ModelLine, ModelScoreError, ModelSpec, is_model_evaluator, score_with_models,
};
pub use verdict::{Baseline, GatePlan, Verdict};
