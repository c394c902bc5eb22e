//! Evaluation of a finished run (docs/eval.md): built-in evaluators scored line by line against the
//! base run's outputs and the dataset, with base-run lines that failed counted as failures.
//! (Evaluation flows are ordinary batch runs over the base run; `flow eval` runs both.)

mod builtin;
mod eval_dir;
mod models;

pub use builtin::{BuiltinOutcome, LineScore, score_run};
pub use eval_dir::{
    JUDGE_SCORES_FILE, SCORES_FILE, builtin_only_meta, merge_metrics, read_metrics,
    record_model_scores, score_into_dir, write_metrics,
};
pub use models::{JudgeErrorOrText, ModelEvaluator, ModelLine, score_with_models};
