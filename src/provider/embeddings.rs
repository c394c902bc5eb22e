//! Embeddings: `POST /embeddings` on OpenAI-compatible servers (OpenAI, Azure OpenAI, Ollama,
//! vLLM, ...), and a deterministic offline pseudo-embedding for the `echo` provider.
//!
//! Requests pass the endpoint's rate limiter and are retried like completions. Anthropic has no
//! embeddings API: asking it for one is a configuration error that says what to use instead.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::limiter::{Outcome, RateInfo};
use super::{LlmClient, ProviderError};
use crate::connection::{
    AZURE_DEFAULT_API_VERSION, ApiType, Connection, OPENAI_DEFAULT_BASE, env_prefix,
};

/// Dimensions of the offline (echo) pseudo-embedding.
pub const ECHO_EMBEDDING_DIMS: usize = 256;

/// Longest excerpt of a bad reply shown in an error.
const EXCERPT_CHARS: usize = 200;

/// What an embeddings request returned: the vectors, and what the endpoint reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Embedded {
    /// One vector per input, in input order.
    pub vectors: Vec<Vec<f32>>,
    /// Token usage, when the endpoint reported it (`usage.prompt_tokens`/`total_tokens`); zero
    /// otherwise.
    pub usage: super::Usage,
    /// The model that answered, as the endpoint named it.
    pub model: Option<String>,
    /// How many retries it took.
    pub retries: u32,
    /// For a pool: the member connection that answered.
    pub served_by: Option<String>,
}

/// The response-cache key of an embeddings request: the endpoint, the model and the inputs.
pub fn embedding_cache_key(conn: &Connection, model: Option<&str>, inputs: &[String]) -> String {
    let (url, model) = if conn.is_pool() {
        (format!("pool:{}", conn.name), model.map(str::to_string))
    } else {
        match embeddings_target(conn, model) {
            Ok((url, m)) => (url, Some(m)),
            Err(_) => (String::new(), model.map(str::to_string)),
        }
    };
    let doc = json!({
        "api": "embedding",
        "api_type": conn.api_type.as_str(),
        "url": url,
        "model": model,
        "input": inputs,
    });
    let mut h = Sha256::new();
    // the keys in the fixed order above, no whitespace: the same request, the same text
    h.update(doc.to_string().as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl LlmClient {
    /// Embeds each of `inputs` with `model` (else the connection's `X_EMBEDDING_MODEL`, or for
    /// Azure `X_EMBEDDING_DEPLOYMENT`), one vector per input in input order.
    ///
    /// The offline `echo` connection answers without a network: a hashed bag of lower-cased
    /// words ([`echo_embedding`]), so identical texts are identical vectors and texts sharing
    /// words are close. Anthropic has no embeddings API and is refused with a clear error.
    pub async fn embed(
        &self,
        conn: &Connection,
        model: Option<&str>,
        inputs: &[String],
    ) -> Result<Vec<Vec<f32>>, ProviderError> {
        Ok(self.embed_detailed(conn, model, inputs).await?.vectors)
    }

    /// [`embed`](Self::embed), with the usage, model and retries the endpoint reported.
    pub async fn embed_detailed(
        &self,
        conn: &Connection,
        model: Option<&str>,
        inputs: &[String],
    ) -> Result<Embedded, ProviderError> {
        if conn.is_pool() {
            return self.embed_pooled(conn, model, inputs).await;
        }
        match conn.api_type {
            ApiType::Echo => {
                return Ok(Embedded {
                    vectors: inputs.iter().map(|t| echo_embedding(t)).collect(),
                    ..Embedded::default()
                });
            }
            ApiType::Anthropic => {
                return Err(ProviderError::Config {
                    connection: conn.name.clone(),
                    message: "Anthropic has no embeddings API: name an OpenAI, Azure OpenAI or Ollama connection for embedding similarity".into(),
                });
            }
            ApiType::Custom => return Err(super::no_model_endpoint(conn)),
            ApiType::OpenAi | ApiType::Azure | ApiType::Ollama => {}
        }
        if inputs.is_empty() {
            return Ok(Embedded::default());
        }
        let (url, model) = embeddings_target(conn, model)?;
        let mut body = serde_json::Map::new();
        if conn.api_type != ApiType::Azure {
            body.insert("model".into(), Value::from(model.clone()));
        }
        body.insert("input".into(), json!(inputs));
        let body = Value::Object(body).to_string().into_bytes();
        let limiter = self.limiters.get(conn, Some(&model));
        let mut tries = super::Retries::default();
        loop {
            let permit = limiter.acquire().await;
            match self
                .embed_once(conn, &url, &model, &body, inputs.len())
                .await
            {
                Ok((mut embedded, rate)) => {
                    permit.complete(Outcome::Success(rate));
                    embedded.retries = tries.total();
                    return Ok(embedded);
                }
                Err(e) => tries.after_failure(self, &limiter, permit, e, true).await?,
            }
        }
    }

    /// One attempt: send, map the status, parse `data[].embedding`.
    async fn embed_once(
        &self,
        conn: &Connection,
        url: &str,
        model: &str,
        body: &[u8],
        expected: usize,
    ) -> Result<(Embedded, RateInfo), ProviderError> {
        let timeout = self.config.timeout;
        let mut rb = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(key) = &conn.api_key {
            rb = if conn.api_type == ApiType::Azure {
                rb.header("api-key", key.expose())
            } else {
                rb.bearer_auth(key.expose())
            };
        }
        rb = super::http::with_entra_token(rb, &self.http, conn).await?;
        for (k, v) in &conn.headers {
            rb = rb.header(k.as_str(), v.expose());
        }
        let redactor = conn.redactor();
        let transport = |e: reqwest::Error| {
            let reason = redactor.redact(&e.to_string()).into_owned();
            if e.is_timeout() {
                ProviderError::Timeout {
                    connection: conn.name.clone(),
                    url: url.to_string(),
                    after: timeout,
                }
            } else if e.is_connect() {
                ProviderError::Unreachable {
                    connection: conn.name.clone(),
                    url: url.to_string(),
                    base_var: conn.base_var(),
                    reason,
                }
            } else {
                ProviderError::Network {
                    connection: conn.name.clone(),
                    url: url.to_string(),
                    reason,
                }
            }
        };
        let fut = async {
            let resp = rb.send().await.map_err(transport)?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let bytes = super::http::read_body(resp, self.config.max_reply_bytes, conn, url)
                .await
                .map_err(|e| e.or_transport(transport))?;
            Ok::<_, ProviderError>((status, headers, bytes))
        };
        let (status, headers, bytes) =
            tokio::time::timeout(timeout, fut)
                .await
                .map_err(|_| ProviderError::Timeout {
                    connection: conn.name.clone(),
                    url: url.to_string(),
                    after: timeout,
                })??;
        let rate = RateInfo::from_headers(&headers);
        let excerpt = || {
            let text = String::from_utf8_lossy(&bytes);
            let short: String = text.chars().take(EXCERPT_CHARS).collect();
            redactor.redact(&short).into_owned()
        };
        if !(200..300).contains(&status) {
            let hint = format!(
                "check the embedding model '{model}' (the evaluator's model= or {}_EMBEDDING_MODEL) and {}",
                env_prefix(&conn.name),
                conn.base_var()
            );
            return Err(super::http::error_for_status(
                conn, url, status, &headers, &bytes, hint,
            ));
        }
        let malformed = |reason: String| ProviderError::Malformed {
            connection: conn.name.clone(),
            url: url.to_string(),
            base_var: conn.base_var(),
            reason,
            excerpt: excerpt(),
        };
        let v: Value =
            serde_json::from_slice(&bytes).map_err(|e| malformed(format!("not JSON: {e}")))?;
        let vectors = parse_embeddings(&v, expected).map_err(malformed)?;
        let count = |k: &str| {
            v.get("usage")
                .and_then(|u| u.get(k))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        let usage = super::Usage {
            prompt_tokens: count("prompt_tokens"),
            completion_tokens: 0,
            total_tokens: count("total_tokens").max(count("prompt_tokens")),
        };
        let model = v.get("model").and_then(Value::as_str).map(str::to_string);
        Ok((
            Embedded {
                vectors,
                usage,
                model,
                retries: 0,
                served_by: None,
            },
            rate,
        ))
    }
}

/// The URL and model (Azure: deployment) of an embeddings request.
fn embeddings_target(
    conn: &Connection,
    model: Option<&str>,
) -> Result<(String, String), ProviderError> {
    let prefix = env_prefix(&conn.name);
    let extra = |k: &str| conn.extra.get(k).cloned();
    if conn.api_type == ApiType::Azure {
        let base = conn
            .api_base
            .as_deref()
            .unwrap_or_default()
            .trim_end_matches('/');
        let root = base.split("/openai").next().unwrap_or(base);
        let dep = model
            .map(str::to_string)
            .or_else(|| extra("embedding_deployment"))
            .or_else(|| extra("embedding_model"))
            .ok_or_else(|| ProviderError::Config {
                connection: conn.name.clone(),
                message: format!(
                    "no embedding deployment: add model=<deployment> to the evaluator or set {prefix}_EMBEDDING_DEPLOYMENT"
                ),
            })?;
        let version = conn
            .api_version
            .as_deref()
            .unwrap_or(AZURE_DEFAULT_API_VERSION);
        return Ok((
            format!("{root}/openai/deployments/{dep}/embeddings?api-version={version}"),
            dep,
        ));
    }
    let (base, query) = super::split_query(conn.api_base.as_deref().unwrap_or(OPENAI_DEFAULT_BASE));
    let root = base
        .strip_suffix("/chat/completions")
        .or_else(|| base.strip_suffix("/completions"))
        .unwrap_or(base);
    let model = model
        .map(str::to_string)
        .or_else(|| extra("embedding_model"))
        .ok_or_else(|| ProviderError::Config {
            connection: conn.name.clone(),
            message: format!(
                "no embedding model: add model=<name> (e.g. text-embedding-3-small) to the evaluator or set {prefix}_EMBEDDING_MODEL"
            ),
        })?;
    Ok((
        super::with_query(format!("{root}/embeddings"), query),
        model,
    ))
}

/// `data[i].embedding` ordered by `data[i].index`; exactly `expected` vectors.
fn parse_embeddings(v: &Value, expected: usize) -> Result<Vec<Vec<f32>>, String> {
    let data = v
        .get("data")
        .and_then(Value::as_array)
        .ok_or("no data array in the reply")?;
    let mut out: Vec<(usize, Vec<f32>)> = Vec::with_capacity(data.len());
    for (pos, item) in data.iter().enumerate() {
        let index = item
            .get("index")
            .and_then(Value::as_u64)
            .and_then(|i| usize::try_from(i).ok())
            .unwrap_or(pos);
        let values = item
            .get("embedding")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("data[{pos}] has no embedding array"))?;
        let vector = values
            .iter()
            .map(|x| x.as_f64().map(|f| f as f32))
            .collect::<Option<Vec<f32>>>()
            .ok_or_else(|| format!("data[{pos}].embedding holds a non-number"))?;
        out.push((index, vector));
    }
    if out.len() != expected {
        return Err(format!("{} embeddings for {expected} inputs", out.len()));
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out.into_iter().map(|(_, v)| v).collect())
}

/// The offline pseudo-embedding: each lower-cased alphanumeric word adds ±1 to one of
/// [`ECHO_EMBEDDING_DIMS`] dimensions chosen by its SHA-256. Deterministic; all zeros for a
/// text without words. Not a model: it measures shared words, not meaning.
pub fn echo_embedding(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; ECHO_EMBEDDING_DIMS];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let digest = Sha256::digest(word.to_lowercase().as_bytes());
        let idx = usize::from(u16::from_le_bytes([digest[0], digest[1]])) % ECHO_EMBEDDING_DIMS;
        v[idx] += if digest[2] & 1 == 0 { 1.0 } else { -1.0 };
    }
    v
}

/// Cosine similarity of two vectors; `None` when their lengths differ, either is empty or
/// all zeros, or a value is not finite.
pub fn cosine(a: &[f32], b: &[f32]) -> Option<f64> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 || !dot.is_finite() || !na.is_finite() || !nb.is_finite() {
        return None;
    }
    Some((dot / (na.sqrt() * nb.sqrt())).clamp(-1.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_of_identical_orthogonal_and_opposite() {
        assert_eq!(
            cosine(&[1.0, 2.0], &[1.0, 2.0]).map(|c| c.round()),
            Some(1.0)
        );
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 3.0]), Some(0.0));
        assert_eq!(cosine(&[1.0, 0.0], &[-2.0, 0.0]), Some(-1.0));
        assert_eq!(cosine(&[1.0], &[1.0, 0.0]), None);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), None);
        assert_eq!(cosine(&[], &[]), None);
    }

    #[test]
    fn echo_embedding_is_deterministic_and_lexical() {
        let a = echo_embedding("Paris is the capital of France");
        assert_eq!(a, echo_embedding("paris IS the capital of france!"));
        let close = cosine(&a, &echo_embedding("The capital of France is Paris")).unwrap();
        let far = cosine(&a, &echo_embedding("bananas grow in tropical climates")).unwrap();
        assert!(close > 0.99, "{close}");
        assert!(far < 0.5, "{far}");
        assert!(echo_embedding("  ...  ").iter().all(|x| *x == 0.0));
    }

    #[test]
    fn targets_for_openai_azure_and_extra_model() {
        use crate::connection::{EnvVars, resolve};
        let env = EnvVars::from_pairs([
            ("O_API_KEY", "k"),
            ("O_API_BASE", "http://h/v1/chat/completions"),
            ("O_EMBEDDING_MODEL", "emb-small"),
            ("A_API_KEY", "k"),
            ("A_API_TYPE", "azure"),
            ("A_API_BASE", "https://r.openai.azure.com/"),
            ("A_API_VERSION", "2024-06-01"),
        ]);
        let o = resolve("o", &env, false).unwrap();
        let (url, model) = embeddings_target(&o, None).unwrap();
        assert_eq!(
            (url.as_str(), model.as_str()),
            ("http://h/v1/embeddings", "emb-small")
        );
        assert_eq!(embeddings_target(&o, Some("big")).unwrap().1, "big");
        let a = resolve("a", &env, false).unwrap();
        let (url, dep) = embeddings_target(&a, Some("emb-dep")).unwrap();
        assert_eq!(
            url,
            "https://r.openai.azure.com/openai/deployments/emb-dep/embeddings?api-version=2024-06-01"
        );
        assert_eq!(dep, "emb-dep");
        let e = embeddings_target(&a, None).unwrap_err().to_string();
        assert!(e.contains("A_EMBEDDING_DEPLOYMENT"), "{e}");
    }

    #[test]
    fn parse_orders_by_index_and_checks_count() {
        let v = json!({"data": [
            {"index": 1, "embedding": [0.0, 1.0]},
            {"index": 0, "embedding": [1.0, 0.0]}
        ]});
        assert_eq!(
            parse_embeddings(&v, 2).unwrap(),
            vec![vec![1.0, 0.0], vec![0.0, 1.0]]
        );
        assert!(
            parse_embeddings(&v, 3)
                .unwrap_err()
                .contains("2 embeddings for 3")
        );
        assert!(parse_embeddings(&json!({"data": [{"embedding": ["x"]}]}), 1).is_err());
        assert!(parse_embeddings(&json!({}), 1).is_err());
    }
}
