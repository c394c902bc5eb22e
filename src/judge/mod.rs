//! LLM-as-judge evaluators (1–5 rubrics) and embedding similarity, for `flow eval`.
//!
//! A [`Judge`] is prepared once from a [`JudgeSpec`] (`relevance:connection=NAME,model=M,threshold=4`):
//! its rubric's prompt (shipped in `templates/judges/`, embedded in the binary) is compiled, the
//! connection the user named is resolved — there is no implicit default connection — and a hash
//! of the prompt is kept for the report. [`Judge::score`] renders the prompt with one line's
//! [`JudgeInput`], asks the model through the response cache, and parses the reply with
//! [`parse_score`], which tolerates chatty judges. An offline (`echo`) judge never scores: its
//! lines get no score and fail the pass mark, with a reason that says why.
//!
//! [`EmbeddingJudge`] scores the cosine similarity of the answer and the ground truth through a
//! connection's embeddings endpoint. [`Aggregate`] turns per-line scores into the metrics a
//! report and a gate use (mean, pass rate).

mod embedding;
mod error;
mod metrics;
mod prepared;
mod rubric;
mod score;
mod spec;

pub use embedding::{EmbeddingJudge, EmbeddingScore, EmbeddingSpec};
pub use error::JudgeError;
pub use metrics::Aggregate;
pub use prepared::{Judge, JudgeInput, JudgeScore};
pub use rubric::{Field, Rubric};
pub use score::parse_score;
pub use spec::JudgeSpec;
