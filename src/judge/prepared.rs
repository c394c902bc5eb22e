//! A prepared judge: compiled prompt, resolved connection, prompt hash; scores one line.

use std::collections::HashSet;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{Field, JudgeError, JudgeSpec, parse_score};
use crate::cache::{ResponseCache, describe_request};
use crate::connection::{ApiType, Connection, EnvVars, resolve};
use crate::provider::{LlmClient, LlmRequest, Usage};
use crate::template::{PromptTemplate, parse_chat};

/// One line's values a judge reads; which are required depends on the rubric.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JudgeInput<'a> {
    /// The question asked.
    pub question: Option<&'a str>,
    /// The answer being judged.
    pub answer: Option<&'a str>,
    /// The context the answer should rest on.
    pub context: Option<&'a str>,
    /// The reference answer.
    pub ground_truth: Option<&'a str>,
}

impl<'a> JudgeInput<'a> {
    /// The value of `field`.
    pub fn get(&self, field: Field) -> Option<&'a str> {
        match field {
            Field::Question => self.question,
            Field::Answer => self.answer,
            Field::Context => self.context,
            Field::GroundTruth => self.ground_truth,
        }
    }
}

/// A judge's verdict on one line.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeScore {
    /// The score, 1 to 5; `None` when the reply held no unambiguous score or no model judged
    /// (offline).
    pub score: Option<f64>,
    /// The score reached the pass mark (never true without a score).
    pub passed: bool,
    /// Why: the verdict, or why there is no score.
    pub reason: String,
    /// The judge's reply as received (empty when no model was called).
    pub raw: String,
    /// The model that answered, as the server named it.
    pub model: Option<String>,
    /// Token usage of the call (a cache hit reports the recorded call's usage; see `cached`).
    pub usage: Usage,
    /// Answered from the response cache.
    pub cached: bool,
}

/// An LLM judge ready to score lines: compiled prompt, resolved connection, prompt hash.
#[derive(Debug)]
pub struct Judge {
    spec: JudgeSpec,
    template: PromptTemplate,
    connection: Connection,
    prompt_hash: String,
}

/// The most tokens a judge may answer with: a score and a sentence of reasons fit in far less,
/// and a judge that rambles is cut short rather than billed without end.
pub const JUDGE_MAX_TOKENS: u32 = 256;

/// Model parameters of every judge call: deterministic, bounded answers.
fn judge_params() -> Map<String, Value> {
    let mut p = Map::new();
    p.insert("temperature".into(), Value::from(0));
    p.insert("max_tokens".into(), Value::from(JUDGE_MAX_TOKENS));
    p
}

/// Resolve the connection a judge names. It must be configured for it (`X_*` variables or a
/// connection file):
/// the standard `OPENAI_*`/`AZURE_OPENAI_*` fallback that flows enjoy is refused, so a judge
/// never spends a key the user did not give it.
pub(crate) fn resolve_named(
    judge: &str,
    name: &str,
    env: &EnvVars,
    offline: bool,
) -> Result<Connection, JudgeError> {
    let connection = resolve(name, env, offline).map_err(|source| JudgeError::Connection {
        judge: judge.to_string(),
        source,
    })?;
    let prefix = crate::connection::env_prefix(name);
    // Its own variables, or a connection file defining it.
    let configured = connection.file.is_some()
        || connection
            .source
            .iter()
            .any(|v| v.starts_with(&format!("{prefix}_")));
    if offline || connection.api_type == ApiType::Echo || configured {
        Ok(connection)
    } else {
        Err(JudgeError::ImplicitConnection {
            judge: judge.to_string(),
            connection: name.to_string(),
            prefix,
            env_file: env.file_text(),
        })
    }
}

impl Judge {
    /// Prepares `spec`: compiles the rubric's shipped prompt and resolves the connection the
    /// spec names (with `offline`, it resolves to the echo provider and the judge will not score).
    pub fn new(spec: JudgeSpec, env: &EnvVars, offline: bool) -> Result<Judge, JudgeError> {
        let name = spec.rubric.as_str();
        let source = spec.rubric.template();
        let template =
            PromptTemplate::new(&format!("judges/{name}.jinja2"), source).map_err(|source| {
                JudgeError::Template {
                    judge: name.to_string(),
                    source,
                }
            })?;
        let connection = resolve_named(name, &spec.connection, env, offline)?;
        let digest = Sha256::digest(source.as_bytes());
        let prompt_hash: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        Ok(Judge {
            spec,
            template,
            connection,
            prompt_hash,
        })
    }

    /// The spec it was prepared from.
    pub fn spec(&self) -> &JudgeSpec {
        &self.spec
    }

    /// The resolved connection.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The model (Azure: deployment) asked: the spec's, else the connection's default. `echo`
    /// when offline. `None` when neither names one (the call will then fail saying so).
    pub fn model(&self) -> Option<&str> {
        if self.connection.api_type == ApiType::Echo {
            return Some("echo");
        }
        self.spec
            .model
            .as_deref()
            .or(self.connection.model.as_deref())
            .or(self.connection.deployment.as_deref())
    }

    /// The first 12 hex digits of the SHA-256 of the rubric's prompt template.
    pub fn prompt_hash(&self) -> &str {
        &self.prompt_hash
    }

    /// The chat request judging `input` (validates the rubric's required fields).
    pub fn request(&self, input: &JudgeInput<'_>) -> Result<LlmRequest, JudgeError> {
        let rubric = self.spec.rubric;
        let mut vars = Map::new();
        for field in rubric.needs() {
            let value = input.get(*field).ok_or(JudgeError::MissingInput {
                judge: rubric.as_str().to_string(),
                field: field.as_str(),
            })?;
            vars.insert(field.as_str().into(), Value::from(value));
        }
        for field in rubric.optional() {
            if let Some(v) = input.get(*field).filter(|v| !v.trim().is_empty()) {
                vars.insert(field.as_str().into(), Value::from(v));
            }
        }
        // Line values are data: role lines inside them must not start messages.
        let tainted: HashSet<String> = vars.keys().cloned().collect();
        let template_error = |source| JudgeError::Template {
            judge: rubric.as_str().to_string(),
            source,
        };
        let rendered = self
            .template
            .render_guarded(&vars, &tainted)
            .map_err(template_error)?;
        let messages = parse_chat(rendered.escaped()).map_err(template_error)?;
        let mut req = LlmRequest::chat(messages);
        req.model = self.spec.model.clone();
        req.params = judge_params();
        Ok(req)
    }

    /// Judges one line: renders the prompt, asks the model (through `cache` when given), and
    /// parses the score. An offline (echo) judge calls nothing and returns no score, with a
    /// reason saying so. A reply without an unambiguous 1–5 score is a line without a score
    /// (not an error); a failed call is an error.
    pub async fn score(
        &self,
        client: &LlmClient,
        cache: Option<&ResponseCache>,
        input: &JudgeInput<'_>,
    ) -> Result<JudgeScore, JudgeError> {
        let req = self.request(input)?;
        let name = self.spec.rubric.as_str();
        if self.connection.api_type == ApiType::Echo {
            return Ok(JudgeScore {
                score: None,
                passed: false,
                reason: format!(
                    "not judged: connection '{}' is the offline echo provider, so no model scored this line (run without --offline to judge)",
                    self.connection.name
                ),
                raw: String::new(),
                model: Some("echo".into()),
                usage: Usage::default(),
                cached: false,
            });
        }
        let fetch = || client.complete(&self.connection, &req, None);
        let (response, cached) = match cache {
            Some(cache) => {
                let key = req.cache_key(&self.connection);
                let what = describe_request(&format!("judge {name}"), &req);
                let c = cache
                    .get_or_fetch(&key, &what, fetch)
                    .await
                    .map_err(|e| JudgeError::from_cache(name, e))?;
                (c.response, c.hit)
            }
            None => (
                fetch().await.map_err(|e| JudgeError::Provider {
                    judge: name.to_string(),
                    source: std::sync::Arc::new(e),
                })?,
                false,
            ),
        };
        let raw = match &response.output {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let score = parse_score(&raw);
        let threshold = self.spec.threshold;
        let reason = match score {
            Some(s) if s >= threshold => format!("{name} {s} reaches the pass mark {threshold}"),
            Some(s) => format!("{name} {s} is below the pass mark {threshold}"),
            None => format!(
                "no score: the judge's reply has no unambiguous 1-5 score: {}",
                excerpt(&raw)
            ),
        };
        Ok(JudgeScore {
            passed: score.is_some_and(|s| s >= threshold),
            score,
            reason,
            raw,
            model: response.model,
            usage: response.usage,
            cached,
        })
    }
}

/// The reply on one line, cut at 120 characters.
fn excerpt(s: &str) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= 120 {
        return format!("{flat:?}");
    }
    format!("{:?}…", flat.chars().take(120).collect::<String>())
}
