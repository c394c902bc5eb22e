//! Embedding cosine similarity of the answer and the ground truth, through a named connection.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::JudgeError;
use super::spec::parse_options;
use crate::cache::ResponseCache;
use crate::connection::{ApiType, Connection, EnvVars};
use crate::provider::{LlmClient, LlmResponse, Usage, cosine, echo_embedding};

/// The evaluator name.
pub const EMBEDDING_SIMILARITY: &str = "embedding_similarity";

/// Default pass mark of embedding similarity.
pub const DEFAULT_EMBEDDING_THRESHOLD: f64 = 0.8;

/// `embedding_similarity:connection=CONN[,model=text-embedding-3-small][,threshold=0.8]`.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingSpec {
    /// The connection whose embeddings endpoint is used (required).
    pub connection: String,
    /// The embedding model (Azure: deployment); else `X_EMBEDDING_MODEL` of the connection.
    pub model: Option<String>,
    /// Pass mark: a line passes when the cosine similarity is at least this (-1..=1, default 0.8).
    pub threshold: f64,
}

impl fmt::Display for EmbeddingSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{EMBEDDING_SIMILARITY}:connection={}", self.connection)?;
        if let Some(m) = &self.model {
            write!(f, ",model={m}")?;
        }
        write!(f, ",threshold={}", self.threshold)
    }
}

impl FromStr for EmbeddingSpec {
    type Err = JudgeError;

    /// Parses the spec; the name may be `embedding_similarity` or `embedding`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, opts) = parse_options(s)?;
        let lower = name.to_ascii_lowercase();
        if lower != EMBEDDING_SIMILARITY && lower != "embedding" {
            return Err(JudgeError::BadSpec {
                spec: s.trim().to_string(),
                message: format!("'{name}' is not {EMBEDDING_SIMILARITY}"),
            });
        }
        let connection = opts.connection.ok_or_else(|| JudgeError::NoConnection {
            spec: EMBEDDING_SIMILARITY.to_string(),
        })?;
        let threshold = opts.threshold.unwrap_or(DEFAULT_EMBEDDING_THRESHOLD);
        if !(-1.0..=1.0).contains(&threshold) {
            return Err(JudgeError::BadSpec {
                spec: s.trim().to_string(),
                message: format!(
                    "threshold {threshold} is outside -1..1; cosine similarity lies between -1 and 1"
                ),
            });
        }
        Ok(EmbeddingSpec {
            connection,
            model: opts.model,
            threshold,
        })
    }
}

/// One line's embedding similarity.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingScore {
    /// Cosine similarity of answer and ground truth; `None` offline or when a text is empty.
    pub similarity: Option<f64>,
    /// The similarity reached the pass mark (never true without one).
    pub passed: bool,
    /// Why.
    pub reason: String,
    /// Token usage of the embeddings call (zero when cached or offline).
    pub usage: Usage,
    /// Answered from the response cache.
    pub cached: bool,
}

/// An embedding-similarity evaluator ready to score lines.
#[derive(Debug)]
pub struct EmbeddingJudge {
    spec: EmbeddingSpec,
    connection: Connection,
}

impl EmbeddingJudge {
    /// Resolves the connection `spec` names (`offline`: the echo provider, which never scores).
    pub fn new(spec: EmbeddingSpec, env: &EnvVars, offline: bool) -> Result<Self, JudgeError> {
        let connection =
            super::prepared::resolve_named(EMBEDDING_SIMILARITY, &spec.connection, env, offline)?;
        Ok(EmbeddingJudge { spec, connection })
    }

    /// The spec it was prepared from.
    pub fn spec(&self) -> &EmbeddingSpec {
        &self.spec
    }

    /// The embedding model asked (`echo` offline), if known before the call.
    pub fn model(&self) -> Option<&str> {
        if self.connection.api_type == ApiType::Echo {
            return Some("echo");
        }
        self.spec
            .model
            .as_deref()
            .or_else(|| {
                self.connection
                    .extra
                    .get("embedding_model")
                    .map(String::as_str)
            })
            .or_else(|| {
                self.connection
                    .extra
                    .get("embedding_deployment")
                    .map(String::as_str)
            })
    }

    /// Scores one line: embeds `answer` and `ground_truth` in one request (through `cache`
    /// when given) and compares them. Offline, no model is called: there is no score, and the
    /// reason gives the lexical (shared-words) similarity for information only.
    pub async fn score(
        &self,
        client: &LlmClient,
        cache: Option<&ResponseCache>,
        answer: &str,
        ground_truth: &str,
    ) -> Result<EmbeddingScore, JudgeError> {
        let inputs = [answer.to_string(), ground_truth.to_string()];
        if self.connection.api_type == ApiType::Echo {
            let lexical = cosine(&echo_embedding(answer), &echo_embedding(ground_truth));
            return Ok(EmbeddingScore {
                similarity: None,
                passed: false,
                reason: format!(
                    "not scored: connection '{}' is the offline echo provider, so no embedding model was called (shared-words similarity {}, for information only)",
                    self.connection.name,
                    lexical.map_or("n/a".to_string(), |c| format!("{c:.3}"))
                ),
                usage: Usage::default(),
                cached: false,
            });
        }
        let model = self.spec.model.as_deref();
        let provider_err = |e| JudgeError::Provider {
            judge: EMBEDDING_SIMILARITY.to_string(),
            source: std::sync::Arc::new(e),
        };
        let (vectors, cached) = match cache {
            Some(cache) => {
                let key = self.cache_key(&inputs);
                let what = format!(
                    "{EMBEDDING_SIMILARITY}, model {}",
                    model.unwrap_or("(connection default)")
                );
                let fetch = || async {
                    let v = client.embed(&self.connection, model, &inputs).await?;
                    Ok(LlmResponse {
                        output: serde_json::to_value(&v).unwrap_or(Value::Null),
                        usage: Usage::default(),
                        model: model.map(str::to_string),
                        finish_reason: None,
                        retries: 0,
                        served_by: None,
                        raw: None,
                    })
                };
                let c = cache
                    .get_or_fetch(&key, &what, fetch)
                    .await
                    .map_err(|e| JudgeError::from_cache(EMBEDDING_SIMILARITY, e))?;
                let v: Vec<Vec<f32>> =
                    serde_json::from_value(c.response.output).unwrap_or_default();
                (v, c.hit)
            }
            None => (
                client
                    .embed(&self.connection, model, &inputs)
                    .await
                    .map_err(provider_err)?,
                false,
            ),
        };
        let similarity = match vectors.as_slice() {
            [a, b] => cosine(a, b),
            _ => None,
        };
        let threshold = self.spec.threshold;
        let reason = match similarity {
            Some(s) if s >= threshold => {
                format!("similarity {s:.3} reaches the pass mark {threshold}")
            }
            Some(s) => format!("similarity {s:.3} is below the pass mark {threshold}"),
            None => "no score: an embedding was empty or the two had different lengths".to_string(),
        };
        Ok(EmbeddingScore {
            passed: similarity.is_some_and(|s| s >= threshold),
            similarity,
            reason,
            usage: Usage::default(),
            cached,
        })
    }

    /// The cache key of an embeddings request: endpoint, model and inputs (never the key).
    fn cache_key(&self, inputs: &[String]) -> String {
        let doc = serde_json::json!({
            "api": "embeddings",
            "api_type": self.connection.api_type.as_str(),
            "base": self.connection.api_base,
            "model": self.model(),
            "inputs": inputs,
        });
        Sha256::digest(doc.to_string().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}
