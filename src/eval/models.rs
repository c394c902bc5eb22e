//! Evaluators that call a model — LLM judges (1–5 rubrics) and embedding similarity — over a
//! run, line by line, concurrently, through the shared client (its rate limiter) and the cache.

use std::path::Path;

use futures::stream::{self, StreamExt};
use indexmap::IndexMap;
use serde_json::{Map, Value};

use super::error::ScoreError;
use crate::cache::ResponseCache;
use crate::connection::EnvVars;
use crate::data::{BaseRun, ColumnMapping};
use crate::judge::{EmbeddingJudge, EmbeddingSpec, Judge, JudgeError, JudgeInput, JudgeSpec};
use crate::model::{FlowInput, ValueType};
use crate::provider::LlmClient;
use crate::record::Status;
use crate::run_store::{RunDir, read_journal};

/// Whether an evaluator spec (`relevance:connection=judge`, `embedding_similarity:...`) names an
/// evaluator that calls a model: an LLM judge rubric or embedding similarity. Everything else is
/// a built-in evaluator ([`crate::evaluators::EvaluatorSpec`]).
pub fn is_model_evaluator(spec: &str) -> bool {
    let name = spec.split(':').next().unwrap_or("").trim();
    name.parse::<crate::judge::Rubric>().is_ok() || name.starts_with("embedding")
}

/// A model-based evaluator as written (`relevance:connection=NAME,model=M,threshold=4` or
/// `embedding_similarity:connection=NAME`), checked but not yet bound to a connection.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSpec {
    Judge(JudgeSpec),
    Embedding(EmbeddingSpec),
}

impl std::str::FromStr for ModelSpec {
    type Err = JudgeError;

    /// Parses a judge or embedding spec; `embedding*` names are embedding similarity, every
    /// other name must be a judge rubric.
    fn from_str(text: &str) -> Result<Self, JudgeError> {
        if text.trim_start().starts_with("embedding") {
            text.parse().map(ModelSpec::Embedding)
        } else {
            text.parse().map(ModelSpec::Judge)
        }
    }
}

impl std::fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelSpec::Judge(j) => j.fmt(f),
            ModelSpec::Embedding(e) => e.fmt(f),
        }
    }
}

impl ModelSpec {
    /// The connection the evaluator calls.
    pub fn connection(&self) -> &str {
        match self {
            ModelSpec::Judge(j) => &j.connection,
            ModelSpec::Embedding(e) => &e.connection,
        }
    }

    /// Bind the evaluator to its connection from `env` (the model answers with echo text when
    /// `offline`). A connection that is not configured is an error: a judge never falls back
    /// to a default key.
    pub fn prepare(self, env: &EnvVars, offline: bool) -> Result<ModelEvaluator, JudgeError> {
        match self {
            ModelSpec::Judge(spec) => {
                Judge::new(spec, env, offline).map(|j| ModelEvaluator::Judge(Box::new(j)))
            }
            ModelSpec::Embedding(spec) => EmbeddingJudge::new(spec, env, offline)
                .map(|j| ModelEvaluator::Embedding(Box::new(j))),
        }
    }
}

/// A model-based evaluator, prepared.
pub enum ModelEvaluator {
    Judge(Box<Judge>),
    Embedding(Box<EmbeddingJudge>),
}

impl ModelEvaluator {
    /// The metric prefix.
    pub fn name(&self) -> String {
        match self {
            ModelEvaluator::Judge(j) => j.spec().rubric.as_str().to_string(),
            ModelEvaluator::Embedding(_) => "embedding_similarity".to_string(),
        }
    }

    /// What the report records about it: the model and, for judges, the prompt's hash.
    pub fn describe(&self) -> Value {
        match self {
            ModelEvaluator::Judge(j) => serde_json::json!({
                "evaluator": self.name(), "connection": j.connection().name, "model": j.model(),
                "prompt_sha256": j.prompt_hash(), "threshold": j.spec().threshold,
            }),
            ModelEvaluator::Embedding(e) => serde_json::json!({
                "evaluator": self.name(), "connection": e.spec().connection, "model": e.model(),
                "threshold": e.spec().threshold,
            }),
        }
    }
}

/// One line's model-based scores: evaluator → (score, passed, reason).
pub struct ModelLine {
    pub line_number: usize,
    /// The evaluated run failed on this line (or never ran it): nothing was scored.
    pub base_failed: bool,
    pub scores: Vec<(String, Option<f64>, bool, String)>,
}

/// The inputs a judge can read for one line.
struct LineFields {
    line_number: usize,
    base_error: Option<String>,
    question: Option<String>,
    answer: Option<String>,
    context: Option<String>,
    ground_truth: Option<String>,
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Gather, per line, `question`, `answer` (the prediction), `context` and `ground_truth`: mapped
/// with `--column-mapping`, else from same-named data columns or the base line's inputs; the
/// answer defaults to the run's only output.
fn fields(
    base: &RunDir,
    data: &Path,
    mapping: &ColumnMapping,
) -> Result<Vec<LineFields>, ScoreError> {
    let journal = read_journal(base).map_err(|source| ScoreError::ReadRun {
        path: base.path.clone(),
        source,
    })?;
    let base_run = BaseRun::load(&base.path)?;
    let names = ["question", "prediction", "context", "ground_truth"];
    let inputs: IndexMap<String, FlowInput> = names
        .iter()
        .map(|n| {
            let input = FlowInput {
                name: n.to_string(),
                ty: ValueType::Object,
                default: None,
                description: None,
                allowed: None,
                is_chat_input: false,
                is_chat_history: false,
            };
            (n.to_string(), input)
        })
        .collect();
    let mut out = Vec::new();
    for item in crate::data::open(data)? {
        let Ok(row) = item else { continue };
        let n = row.line_number;
        let record = journal
            .line(n)
            .map_err(|source| ScoreError::ReadLine { line: n, source })?;
        let mut line = LineFields {
            line_number: n,
            base_error: None,
            question: None,
            answer: None,
            context: None,
            ground_truth: None,
        };
        match record {
            Some(r) if r.status == Status::Completed => {
                let mapped: Map<String, Value> = mapping
                    .apply_with_run(&inputs, &row, Some(&base_run))
                    .unwrap_or_default();
                let only = (r.outputs.len() == 1)
                    .then(|| r.outputs.values().next())
                    .flatten();
                line.question = text(mapped.get("question").or(r.inputs.get("question")));
                line.answer = text(mapped.get("prediction").or(only));
                line.context = text(mapped.get("context").or(r.inputs.get("context")));
                line.ground_truth = text(mapped.get("ground_truth"));
            }
            Some(r) => {
                line.base_error = Some(format!(
                    "line {n} of the run failed: {}",
                    r.error.map_or("unknown error".to_string(), |e| e.message)
                ))
            }
            None => line.base_error = Some(format!("line {n} is not in the run (it never ran)")),
        }
        out.push(line);
    }
    Ok(out)
}

/// Score every line with every model evaluator, `concurrency` lines at a time. An endpoint that
/// cannot be used at all is an error (exit 3); a configuration problem too (exit 2); anything
/// else fails just that line's score.
pub async fn score_with_models(
    base: &RunDir,
    data: &Path,
    mapping: &ColumnMapping,
    evaluators: &[ModelEvaluator],
    client: &LlmClient,
    cache: Option<&ResponseCache>,
    concurrency: usize,
) -> Result<Vec<ModelLine>, ModelScoreError> {
    let lines = fields(base, data, mapping).map_err(ModelScoreError::Read)?;
    let scored: Vec<Result<ModelLine, JudgeError>> = stream::iter(lines)
        // Owned lines: a closure over borrowed ones would keep the future from being Send
        // for every lifetime, which spawning it needs (rustc's higher-ranked lifetimes).
        .map(|line| async move { score_line(&line, evaluators, client, cache).await })
        .buffered(concurrency.max(1))
        .collect()
        .await;
    scored
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(ModelScoreError::Judge)
}

/// Score one line with every model evaluator (see [`score_with_models`]).
async fn score_line(
    line: &LineFields,
    evaluators: &[ModelEvaluator],
    client: &LlmClient,
    cache: Option<&ResponseCache>,
) -> Result<ModelLine, JudgeError> {
    let mut scores = Vec::with_capacity(evaluators.len());
    for e in evaluators {
        let name = e.name();
        if let Some(err) = &line.base_error {
            scores.push((name, None, false, err.clone()));
            continue;
        }
        let result = match e {
            ModelEvaluator::Judge(j) => {
                let input = JudgeInput {
                    question: line.question.as_deref(),
                    answer: line.answer.as_deref(),
                    context: line.context.as_deref(),
                    ground_truth: line.ground_truth.as_deref(),
                };
                j.score(client, cache, &input)
                    .await
                    .map(|s| (s.score, s.passed, s.reason))
            }
            ModelEvaluator::Embedding(emb) => match (&line.answer, &line.ground_truth) {
                (Some(a), Some(g)) => emb
                    .score(client, cache, a, g)
                    .await
                    .map(|s| (s.similarity, s.passed, s.reason)),
                _ => Ok((
                    None,
                    false,
                    "needs a prediction and a ground_truth (map them with --column-mapping)"
                        .to_string(),
                )),
            },
        };
        match result {
            Ok((score, passed, reason)) => scores.push((name, score, passed, reason)),
            Err(err) if err.endpoint_unusable() || err.is_config() => return Err(err),
            Err(err) => scores.push((name, None, false, err.to_string())),
        }
    }
    Ok(ModelLine {
        line_number: line.line_number,
        base_failed: line.base_error.is_some(),
        scores,
    })
}

/// Why model-based scoring could not run.
#[derive(Debug, thiserror::Error)]
pub enum ModelScoreError {
    /// A judge or embedding call that cannot succeed for any line (unusable endpoint,
    /// configuration).
    #[error(transparent)]
    Judge(#[from] JudgeError),
    /// The run or the dataset cannot be read.
    #[error(transparent)]
    Read(#[from] ScoreError),
}
