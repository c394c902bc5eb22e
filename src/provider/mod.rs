//! LLM providers: turn an [`LlmRequest`] into an HTTP call to the connection's endpoint.
//!
//! One [`LlmClient`] (one keep-alive connection pool) serves every line of a run. Dispatch is by
//! the connection's [`ApiType`]: OpenAI-compatible (openai, azure, ollama), Anthropic Messages,
//! or the offline `echo` provider. Retryable failures (429, 5xx, timeouts) are retried by the
//! client's [`RetryPolicy`]; every request first passes its endpoint's adaptive rate limiter
//! (see `limiter.rs`), shared by all clones of the client.

mod anthropic;
mod check;
mod echo;
mod embeddings;
mod error;
mod http;
mod limiter;
mod openai;
mod pool;
mod retry;
pub mod sse;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::chat::Message;
use crate::connection::{ApiType, Connection};

pub use check::CheckOutcome;
pub use echo::ECHO_PREFIX;
pub use embeddings::{ECHO_EMBEDDING_DIMS, Embedded, cosine, echo_embedding, embedding_cache_key};
pub use error::ProviderError;
pub use limiter::LimiterStats;
pub use retry::{RetryPolicy, parse_http_date, parse_retry_after};

/// Which endpoint of the API a request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// Chat completions (messages in, assistant message out).
    Chat,
    /// Legacy text completions (prompt in, text out).
    Completion,
}

impl Api {
    /// `chat` or `completion`, as written in `flow.dag.yaml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Chat => "chat",
            Api::Completion => "completion",
        }
    }
}

/// One LLM call, provider-independent.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmRequest {
    /// Chat or completion.
    pub api: Api,
    /// Chat messages (for [`Api::Chat`]).
    pub messages: Vec<Message>,
    /// The prompt text (for [`Api::Completion`]).
    pub prompt: Option<String>,
    /// The model (or, for Azure, the deployment) from the node; `None` uses the connection's
    /// `X_MODEL`/`X_DEPLOYMENT`. For Azure, pass the node's `deployment_name` here in preference
    /// to its `model`.
    pub model: Option<String>,
    /// Typed model parameters (temperature, max_tokens, stop, tools, ...), sent as given.
    pub params: Map<String, Value>,
    /// Stream the reply (deltas go to `on_delta`).
    pub stream: bool,
    /// Keep the whole reply body ([`LlmResponse::raw`]): a `.prompty` with `model.response:
    /// all` outputs it. Part of the cache key when set.
    pub full_response: bool,
}

impl LlmRequest {
    /// A chat request with no parameters.
    pub fn chat(messages: Vec<Message>) -> Self {
        LlmRequest {
            api: Api::Chat,
            messages,
            prompt: None,
            model: None,
            params: Map::new(),
            stream: false,
            full_response: false,
        }
    }

    /// A completion request with no parameters.
    pub fn completion(prompt: impl Into<String>) -> Self {
        LlmRequest {
            api: Api::Completion,
            messages: Vec::new(),
            prompt: Some(prompt.into()),
            model: None,
            params: Map::new(),
            stream: false,
            full_response: false,
        }
    }

    /// Whether tools or functions were requested (then a tool call returns the whole message).
    pub fn wants_tools(&self) -> bool {
        ["tools", "functions"]
            .iter()
            .any(|k| self.params.get(*k).is_some_and(|v| !v.is_null()))
    }

    /// A stable SHA-256 hex key for the response cache: target URL, model/deployment, api,
    /// messages or prompt and parameters (object keys sorted). Never includes the key, headers
    /// or the `stream` flag.
    ///
    /// For a pool the target is the pool's name and the requested model, so an answer is found
    /// again whichever member served it.
    pub fn cache_key(&self, conn: &Connection) -> String {
        let (url, model) = if conn.is_pool() {
            (format!("pool:{}", conn.name), self.model.clone())
        } else {
            match target(conn, self) {
                Ok(t) => (t.url, t.model),
                Err(_) => (String::new(), self.model.clone()),
            }
        };
        let mut h = Sha256::new();
        let mut canon = String::with_capacity(256);
        let mut doc = Map::new();
        doc.insert("api".into(), Value::from(self.api.as_str()));
        doc.insert("api_type".into(), Value::from(conn.api_type.as_str()));
        doc.insert("url".into(), Value::from(url));
        doc.insert("model".into(), model.map_or(Value::Null, Value::from));
        match self.api {
            Api::Chat => {
                doc.insert(
                    "messages".into(),
                    serde_json::to_value(&self.messages).unwrap_or(Value::Null),
                );
            }
            Api::Completion => {
                doc.insert(
                    "prompt".into(),
                    self.prompt.clone().map_or(Value::Null, Value::from),
                );
            }
        }
        doc.insert("params".into(), Value::Object(self.params.clone()));
        if self.full_response {
            // an answer cached without its whole body cannot serve a request for it
            doc.insert("full_response".into(), Value::Bool(true));
        }
        write_canonical(&Value::Object(doc), &mut canon);
        h.update(canon.as_bytes());
        h.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    }
}

/// Writes JSON with object keys sorted and no whitespace.
fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(k.as_str()).to_string());
                out.push(':');
                write_canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Token counts of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u64,
    /// Tokens in the reply.
    pub completion_tokens: u64,
    /// Their sum (as the server reported it).
    pub total_tokens: u64,
}

/// What a successful call returned.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmResponse {
    /// The assistant text, or the whole assistant message object when tools/functions were
    /// requested and the model called one.
    pub output: Value,
    /// Token usage (zero when a streaming server did not report it).
    pub usage: Usage,
    /// The model that answered, as the server named it.
    pub model: Option<String>,
    /// Why generation stopped (`stop`, `length`, `tool_calls`, ...).
    pub finish_reason: Option<String>,
    /// How many retries it took.
    pub retries: u32,
    /// For a pool: the member connection that answered.
    pub served_by: Option<String>,
    /// The whole reply body, OpenAI-shaped, when the request asked for it
    /// ([`LlmRequest::full_response`]).
    pub raw: Option<Value>,
}

/// Where a request goes.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Full URL including query.
    pub url: String,
    /// Model (or Azure deployment) used.
    pub model: Option<String>,
}

/// Computes the URL and model for a request, without building the body.
pub(crate) fn target(conn: &Connection, req: &LlmRequest) -> Result<Target, ProviderError> {
    match conn.api_type {
        ApiType::OpenAi | ApiType::Ollama | ApiType::Azure => openai::target(conn, req),
        ApiType::Anthropic => anthropic::target(conn, req),
        ApiType::Echo => Ok(Target {
            url: "echo:".to_string(),
            model: Some("echo".to_string()),
        }),
        ApiType::Custom => Err(no_model_endpoint(conn)),
    }
}

/// The error for a model request through a custom connection, which has no model endpoint.
pub(crate) fn no_model_endpoint(conn: &Connection) -> ProviderError {
    ProviderError::Config {
        connection: conn.name.clone(),
        message: "is a custom connection (fields for Python tools, no model endpoint): give it a model endpoint type (X_API_TYPE=openai, azure, ollama or anthropic; `type: open_ai` or `azure_open_ai` in a connection file), or name another connection".to_string(),
    }
}

/// Settings of an [`LlmClient`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// Per-attempt timeout (for a stream: to the first byte and between chunks).
    pub timeout: Duration,
    /// Retry policy for retryable failures other than 429 (`max_retries: 0` disables all
    /// retrying, 429s included).
    pub retry: RetryPolicy,
    /// Most requests in flight per endpoint; the adaptive limit starts here and never exceeds
    /// it (a batch run sets it to its `--concurrency`).
    pub max_in_flight: usize,
    /// Retries allowed after 429s, counted apart from `retry.max_retries`: a request waits for
    /// the endpoint's pause rather than failing while the endpoint is rate limited.
    pub rate_limit_retries: u32,
    /// The largest reply body read, in bytes (a streamed reply counts every byte of its
    /// stream); a larger one fails the request with [`ProviderError::TooLarge`].
    pub max_reply_bytes: usize,
}

/// The default largest reply: far above any chat or embedding reply, far below what would
/// strain memory with a batch's replies in flight.
pub const DEFAULT_MAX_REPLY_BYTES: usize = 8 * 1024 * 1024;

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            max_in_flight: 64,
            rate_limit_retries: 30,
            max_reply_bytes: DEFAULT_MAX_REPLY_BYTES,
        }
    }
}

impl ClientConfig {
    /// The settings of a client whose requests time out after `timeout`, are retried up to
    /// `max_retries` times, with at most `max_in_flight` (at least 1) in flight per endpoint;
    /// the rest as [`ClientConfig::default`].
    pub fn for_requests(timeout: Duration, max_retries: u32, max_in_flight: usize) -> Self {
        let mut config = ClientConfig {
            timeout,
            max_in_flight: max_in_flight.max(1),
            ..ClientConfig::default()
        };
        config.retry.max_retries = max_retries;
        config
    }
}

/// A base URL's path (without a trailing `/`) and its query string, if any: endpoint paths go
/// between the two, so `https://host/v1?team=a` becomes `https://host/v1/chat/completions?team=a`.
pub(crate) fn split_query(base: &str) -> (&str, Option<&str>) {
    let (path, query) = base
        .split_once('?')
        .map_or((base, None), |(p, q)| (p, Some(q)));
    (path.trim_end_matches('/'), query.filter(|q| !q.is_empty()))
}

/// `url` with `query` (from [`split_query`]) put back at its end.
pub(crate) fn with_query(mut url: String, query: Option<&str>) -> String {
    if let Some(q) = query {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(q);
    }
    url
}

/// The callback receiving streamed text deltas.
pub type DeltaFn<'a> = &'a (dyn Fn(&str) + Send + Sync);

/// The process-wide LLM client (cheap to clone; clones share one connection pool).
#[derive(Debug, Clone)]
pub struct LlmClient {
    http: reqwest::Client,
    config: ClientConfig,
    limiters: Arc<limiter::Limiters>,
    pools: Arc<pool::Pools>,
}

impl LlmClient {
    /// A client with default settings (120 s timeout, 5 retries).
    pub fn new() -> Result<Self, ProviderError> {
        Self::with_config(ClientConfig::default())
    }

    /// A client with these settings.
    pub fn with_config(config: ClientConfig) -> Result<Self, ProviderError> {
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .connect_timeout(config.timeout.min(Duration::from_secs(30)))
            .user_agent(concat!("flow/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::Config {
                connection: String::new(),
                message: format!("cannot initialise the HTTP client: {e}"),
            })?;
        Ok(LlmClient {
            http,
            config,
            limiters: Arc::new(limiter::Limiters::new(config.max_in_flight)),
            pools: Arc::new(pool::Pools::default()),
        })
    }

    /// The client's settings.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The rate limiter of every endpoint used so far (sorted by connection, endpoint, model).
    pub fn limiter_stats(&self) -> Vec<LimiterStats> {
        self.limiters.stats()
    }

    /// Sends `req` to `conn` through the endpoint's limiter, retrying retryable failures: 429s
    /// wait for the endpoint's pause (up to `rate_limit_retries` times), other failures back off
    /// with full jitter (up to `retry.max_retries` times). Streamed text deltas go to
    /// `on_delta`; a stream that already delivered text is not retried (deltas would repeat).
    /// The timeout applies to each attempt, not to the wait in the limiter.
    pub async fn complete(
        &self,
        conn: &Connection,
        req: &LlmRequest,
        on_delta: Option<DeltaFn<'_>>,
    ) -> Result<LlmResponse, ProviderError> {
        if conn.is_pool() {
            return self.complete_pooled(conn, req, on_delta).await;
        }
        // Every API type is named: a new one cannot fall through to OpenAI's request shape.
        let prepared = match conn.api_type {
            ApiType::Echo => return Ok(echo::complete(req, on_delta)),
            ApiType::Anthropic => anthropic::prepare(conn, req)?,
            ApiType::OpenAi | ApiType::Azure | ApiType::Ollama => openai::prepare(conn, req)?,
            ApiType::Custom => return Err(no_model_endpoint(conn)),
        };
        let limiter = self.limiters.get(conn, prepared.model.as_deref());
        let mut tries = Retries::default();
        loop {
            let mut emitted = false;
            let mut rate = limiter::RateInfo::default();
            let permit = limiter.acquire().await;
            let result = http::attempt(
                self,
                conn,
                req,
                &prepared,
                on_delta,
                &mut emitted,
                &mut rate,
            )
            .await;
            match result {
                Ok(mut resp) => {
                    permit.complete(limiter::Outcome::Success(rate));
                    resp.retries = tries.total();
                    return Ok(resp);
                }
                // A stream that already delivered text is not retried (deltas would repeat).
                Err(e) => {
                    tries
                        .after_failure(self, &limiter, permit, e, !emitted)
                        .await?
                }
            }
        }
    }
}

/// One request's retries. After each failed attempt it tells the endpoint's limiter what
/// happened and decides whether to try again: 429s wait for the endpoint's pause (up to
/// `rate_limit_retries` times), other retryable failures back off with full jitter (up to
/// `retry.max_retries` times).
#[derive(Debug, Default)]
pub(crate) struct Retries {
    /// Retries after faults (5xx, timeouts, dropped connections).
    retries: u32,
    /// Retries after 429s.
    waits: u32,
}

impl Retries {
    /// Retries so far, of both kinds.
    pub(crate) fn total(&self) -> u32 {
        self.retries + self.waits
    }

    /// Report the failed attempt `e` and wait as needed: `Ok(())` means try again, `Err` is the
    /// error to give up with. `may_retry` false gives up whatever the error.
    pub(crate) async fn after_failure(
        &mut self,
        client: &LlmClient,
        limiter: &limiter::Endpoint,
        permit: limiter::Permit,
        e: ProviderError,
        may_retry: bool,
    ) -> Result<(), ProviderError> {
        let policy = client.config.retry;
        let rate_limited = e.status() == Some(429);
        permit.complete(limiter::Outcome::of_failure(&e, policy));
        let budget_left = if rate_limited {
            self.waits < client.config.rate_limit_retries
        } else {
            self.retries < policy.max_retries
        };
        if !(may_retry && e.is_retryable() && policy.max_retries > 0 && budget_left) {
            let total = self.total();
            return Err(if total > 0 {
                ProviderError::Retried {
                    retries: total,
                    source: Box::new(e),
                }
            } else {
                e
            });
        }
        limiter.note_retry();
        if rate_limited {
            // The limiter's pause (Retry-After or backoff) does the waiting, for everyone.
            self.waits += 1;
        } else {
            tokio::time::sleep(policy.delay(self.retries, e.retry_after())).await;
            self.retries += 1;
        }
        Ok(())
    }
}

impl Retries {
    /// Report the failed attempt `e` of a pool member and count a retry without waiting: the
    /// next attempt goes to another member.
    pub(crate) fn failed_over(
        &mut self,
        limiter: &limiter::Endpoint,
        permit: limiter::Permit,
        e: &ProviderError,
        policy: RetryPolicy,
    ) {
        permit.complete(limiter::Outcome::of_failure(e, policy));
        limiter.note_retry();
        if e.status() == Some(429) {
            self.waits += 1;
        } else {
            self.retries += 1;
        }
    }
}

/// A request ready to send: URL, headers (with secrets: never print) and serialized body.
pub(crate) struct Prepared {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub protocol: Protocol,
    pub model: Option<String>,
}

/// Which wire format the reply uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    OpenAi,
    Anthropic,
}
