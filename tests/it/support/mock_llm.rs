//! A loopback OpenAI / Azure OpenAI / Anthropic-compatible mock LLM server for end-to-end tests.
//!
//! It runs on its own thread and tokio runtime, so synchronous tests (assert_cmd driving the
//! `flow` binary) can use it, and stops when dropped.
//!
//! ```ignore
//! let mock = MockLlm::start();
//! mock.reply_when("capital of France", "Paris");
//! mock.push(MockReply::RateLimit { retry_after: Some(0) }); // scripted replies come first
//! // OpenAI base: format!("{}/v1", mock.url()); Azure/Anthropic base: mock.url()
//! ```
//!
//! Routes: `POST /v1/chat/completions`, `POST /v1/completions`,
//! `POST /openai/deployments/{d}/chat/completions` (and `/completions`; needs `api-key` and an
//! `api-version` query), `POST /v1/messages` (Anthropic; needs `x-api-key` and
//! `anthropic-version`), `GET /v1/models`, `POST /v1/embeddings` (deterministic vectors). With [`MockLlm::set_api_key`], a wrong or missing key
//! gets a 401 with an OpenAI-style error body (which echoes the key it got, to test redaction).
//!
//! Rate-limit mode ([`MockLlm::set_rate_limit`]): a token bucket like OpenAI's. Replies carry
//! `x-ratelimit-limit-requests`, `x-ratelimit-remaining-requests` and
//! `x-ratelimit-reset-requests` (time until the bucket is full, OpenAI format: `20ms`, `1.5s`,
//! `1m0s`); beyond the rate, a 429 with `retry-after-ms` and `retry-after` (time until one
//! request is allowed). [`MockLlm::rate_limited_count`] counts every 429 sent.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};

/// One request the mock received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// URL path.
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// Headers with lower-cased names.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON (`Null` when empty or not JSON).
    pub body: Value,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A scripted reply.
#[derive(Debug, Clone)]
pub enum MockReply {
    /// Answer with this text.
    Text(String),
    /// Call a tool (`tool_calls`, or `function_call` when the request used legacy `functions`;
    /// Anthropic `tool_use`). `arguments` is the JSON string of the arguments.
    ToolCall { name: String, arguments: String },
    /// An error status with an API-style error body carrying this message.
    Status(u16, String),
    /// 429, with a `Retry-After` header (seconds) when given.
    RateLimit { retry_after: Option<u64> },
    /// Wait, then reply.
    Delay(Duration, Box<MockReply>),
    /// HTTP 200 with this raw body (`application/json` content type, or as the SSE body).
    Malformed(String),
    /// HTTP 200 with this JSON body, as is.
    Json(Value),
    /// Never answer.
    Hang,
}

impl MockReply {
    /// Shorthand for [`MockReply::Text`].
    pub fn text(s: impl Into<String>) -> Self {
        MockReply::Text(s.into())
    }
    /// Shorthand for [`MockReply::ToolCall`].
    pub fn tool_call(name: impl Into<String>, arguments: Value) -> Self {
        MockReply::ToolCall {
            name: name.into(),
            arguments: arguments.to_string(),
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    requests: Vec<RecordedRequest>,
    script: VecDeque<MockReply>,
    rules: Vec<(String, String)>,
    latency: Duration,
    api_key: Option<String>,
    known_models: Vec<String>,
    chunk_size: usize,
    chunk_delay: Duration,
    counter: u64,
    bucket: Option<Bucket>,
    rate_limited: u64,
    times: Vec<Instant>,
    no_rate_headers: bool,
    /// Keep every request (tests inspect them); benchmarks turn it off to stay flat.
    not_recording: bool,
    seen: usize,
    /// While set, every completion is answered with this error status.
    down: Option<u16>,
}

/// Response headers to add.
type Headers = Vec<(&'static str, String)>;

/// A token bucket: `burst` requests at most, refilled at `rps` per second.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    rps: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// Takes one request: `Ok(headers)` when allowed, `Err(headers)` (a 429's) when not.
    fn take(&mut self, now: Instant) -> Result<Headers, Headers> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rps).min(self.burst);
        self.last = now;
        let allowed = self.tokens >= 1.0;
        if allowed {
            self.tokens -= 1.0;
        }
        let full_in = Duration::from_secs_f64((self.burst - self.tokens).max(0.0) / self.rps);
        let mut h = vec![
            (
                "x-ratelimit-limit-requests",
                format!("{}", self.burst as u64),
            ),
            (
                "x-ratelimit-remaining-requests",
                format!("{}", self.tokens.floor() as u64),
            ),
            ("x-ratelimit-reset-requests", openai_duration(full_in)),
        ];
        if allowed {
            return Ok(h);
        }
        let wait = (1.0 - self.tokens) / self.rps;
        h.push((
            "retry-after-ms",
            format!("{}", (wait * 1000.0).ceil() as u64),
        ));
        h.push(("retry-after", format!("{}", wait.ceil() as u64)));
        Err(h)
    }
}

/// Formats a duration as OpenAI's reset headers do: `20ms`, `1.5s`, `6m0s`.
fn openai_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{}ms", ms.max(1))
    } else if ms < 60_000 {
        format!("{}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{}s", ms / 60_000, (ms % 60_000) as f64 / 1000.0)
    }
}

type Handle = Arc<Mutex<Shared>>;

fn lock(h: &Handle) -> MutexGuard<'_, Shared> {
    h.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running mock server; stops on drop.
pub struct MockLlm {
    addr: std::net::SocketAddr,
    shared: Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MockLlm {
    /// Starts a server on `127.0.0.1:0`.
    pub fn start() -> MockLlm {
        Self::start_on(0)
    }

    /// Starts a server on `127.0.0.1:port` (0: any free port).
    pub fn start_on(port: u16) -> MockLlm {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind mock LLM");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let shared: Handle = Arc::new(Mutex::new(Shared {
            chunk_size: 7,
            chunk_delay: Duration::from_micros(200),
            ..Shared::default()
        }));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let state = shared.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("mock runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let app = Router::new().fallback(handle).with_state(state);
                tokio::select! {
                    _ = axum::serve(listener, app) => {}
                    _ = rx => {}
                }
            });
        });
        MockLlm {
            addr,
            shared,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT` (the OpenAI base is this plus `/v1`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The OpenAI-compatible base URL, `url() + "/v1"`.
    pub fn openai_base(&self) -> String {
        format!("{}/v1", self.url())
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared).requests.clone()
    }

    /// How many requests were received.
    pub fn request_count(&self) -> usize {
        lock(&self.shared).seen
    }

    /// Forgets recorded requests.
    pub fn clear_requests(&self) {
        let mut s = lock(&self.shared);
        s.requests.clear();
        s.seen = 0;
    }

    /// When any message (or the prompt) contains `contains`, answer `text`. A rule added later
    /// wins over an earlier one that also matches.
    pub fn reply_when(&self, contains: &str, text: &str) {
        lock(&self.shared)
            .rules
            .push((contains.to_string(), text.to_string()));
    }

    /// Queues a scripted reply; scripted replies are consumed first, in order.
    pub fn push(&self, reply: MockReply) {
        lock(&self.shared).script.push_back(reply);
    }

    /// Adds latency before every reply.
    pub fn set_latency(&self, d: Duration) {
        lock(&self.shared).latency = d;
    }

    /// Keep (the default) or stop keeping requests for `requests()`; `request_count()` still counts.
    pub fn set_recording(&self, on: bool) {
        lock(&self.shared).not_recording = !on;
    }

    /// Requires this key (Bearer, `api-key` or `x-api-key` depending on the route).
    pub fn set_api_key(&self, key: &str) {
        lock(&self.shared).api_key = Some(key.to_string());
    }

    /// Only these models/deployments exist; others get a 404.
    pub fn set_known_models(&self, models: &[&str]) {
        lock(&self.shared).known_models = models.iter().map(|m| m.to_string()).collect();
    }

    /// Rate-limits completions to `requests_per_second`, allowing bursts of `burst` requests
    /// (the bucket starts full). See the module docs for the headers sent.
    pub fn set_rate_limit(&self, requests_per_second: f64, burst: u32) {
        lock(&self.shared).bucket = Some(Bucket {
            rps: requests_per_second.max(1e-3),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: Instant::now(),
        });
    }

    /// In rate-limit mode, whether successful replies carry the `x-ratelimit-*` headers
    /// (default true); 429s always carry `Retry-After`.
    pub fn set_rate_limit_headers(&self, on: bool) {
        lock(&self.shared).no_rate_headers = !on;
    }

    /// While `Some(status)`, answer every (authenticated) completion request with that error
    /// status, as a server that went down would; `None` brings it back.
    pub fn set_down(&self, status: Option<u16>) {
        lock(&self.shared).down = status;
    }

    /// Ends rate-limit mode.
    pub fn clear_rate_limit(&self) {
        lock(&self.shared).bucket = None;
    }

    /// How many 429s were sent (rate-limit mode and scripted [`MockReply::RateLimit`]).
    pub fn rate_limited_count(&self) -> u64 {
        lock(&self.shared).rate_limited
    }

    /// When each request arrived, in order (parallel to [`MockLlm::requests`]).
    pub fn request_times(&self) -> Vec<Instant> {
        lock(&self.shared).times.clone()
    }

    /// Bytes per transport chunk of streamed replies (default 7, splitting events and even
    /// UTF-8 characters across chunks).
    pub fn set_stream_chunk_size(&self, n: usize) {
        lock(&self.shared).chunk_size = n.max(1);
    }

    /// The pause before each transport chunk of streamed replies (default 200 µs).
    pub fn set_stream_chunk_delay(&self, d: Duration) {
        lock(&self.shared).chunk_delay = d;
    }
}

impl Drop for MockLlm {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Chat,
    Completion,
    Anthropic,
}

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// Text of a message `content` (a string or a list of parts).
fn content_text(c: &Value) -> String {
    match c {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// All text of the request, and the text the default reply echoes.
fn texts(kind: Kind, body: &Value) -> (String, String) {
    if kind == Kind::Completion {
        let p = match body.get("prompt") {
            Some(Value::Array(a)) => a.first().map(content_text).unwrap_or_default(),
            Some(v) => content_text(v),
            None => String::new(),
        };
        return (p.clone(), p);
    }
    let msgs = body
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut all: Vec<String> = msgs
        .iter()
        .map(|m| content_text(m.get("content").unwrap_or(&Value::Null)))
        .collect();
    if let Some(s) = body.get("system") {
        all.push(content_text(s));
    }
    let last_user = msgs
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| content_text(m.get("content").unwrap_or(&Value::Null)))
        .unwrap_or_default();
    (all.join("\n"), last_user)
}

fn error_body(kind: Kind, status: u16, message: &str) -> Value {
    if kind == Kind::Anthropic {
        json!({"type": "error", "error": {"type": "api_error", "message": message}})
    } else {
        json!({"error": {"message": message, "type": "mock_error", "param": null, "code": status.to_string()}})
    }
}

fn json_response(status: u16, v: &Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Body::from(v.to_string()))
        .unwrap_or_default()
}

async fn handle(
    State(shared): State<Handle>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().map(str::to_string);
    let hdrs: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let json_body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let rec = RecordedRequest {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        headers: hdrs,
        body: json_body.clone(),
    };
    let (expected_key, latency, known) = {
        let mut s = lock(&shared);
        s.seen += 1;
        if !s.not_recording {
            s.requests.push(rec.clone());
            s.times.push(Instant::now());
        }
        (s.api_key.clone(), s.latency, s.known_models.clone())
    };

    // Route and authenticate.
    let azure = path.starts_with("/openai/deployments/");
    let (kind, presented) = match path.as_str() {
        "/v1/chat/completions" => (Kind::Chat, bearer(&rec)),
        "/v1/completions" => (Kind::Completion, bearer(&rec)),
        "/v1/messages" => (Kind::Anthropic, rec.header("x-api-key").map(str::to_string)),
        "/v1/models" => {
            if let Some(r) = check_key(Kind::Chat, &expected_key, bearer(&rec)) {
                return r;
            }
            let data: Vec<Value> = known
                .iter()
                .map(|m| json!({"id": m, "object": "model", "owned_by": "mock"}))
                .collect();
            return json_response(200, &json!({"object": "list", "data": data}));
        }
        "/v1/embeddings" => {
            if let Some(r) = check_key(Kind::Chat, &expected_key, bearer(&rec)) {
                return r;
            }
            return embeddings(&json_body);
        }
        p if azure && p.ends_with("/chat/completions") => {
            (Kind::Chat, rec.header("api-key").map(str::to_string))
        }
        p if azure && p.ends_with("/completions") => {
            (Kind::Completion, rec.header("api-key").map(str::to_string))
        }
        _ => {
            return json_response(
                404,
                &error_body(
                    Kind::Chat,
                    404,
                    &format!("mock: no route for {method} {path}"),
                ),
            );
        }
    };
    if method != Method::POST {
        return json_response(405, &error_body(kind, 405, "mock: use POST"));
    }
    if let Some(r) = check_key(kind, &expected_key, presented) {
        return r;
    }
    if let Some(status) = lock(&shared).down {
        return json_response(
            status,
            &error_body(kind, status, "mock: the server is down"),
        );
    }
    if azure && !query.as_deref().unwrap_or("").contains("api-version=") {
        return json_response(
            400,
            &error_body(kind, 400, "mock: missing api-version query parameter"),
        );
    }
    if kind == Kind::Anthropic && rec.header("anthropic-version").is_none() {
        return json_response(
            400,
            &error_body(kind, 400, "mock: missing anthropic-version header"),
        );
    }
    if json_body.is_null() {
        return json_response(400, &error_body(kind, 400, "mock: body is not JSON"));
    }
    let model = if azure {
        path.trim_start_matches("/openai/deployments/")
            .split('/')
            .next()
            .unwrap_or("")
            .to_string()
    } else {
        json_body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    if !known.is_empty() && !known.contains(&model) {
        let msg = if azure {
            format!("The API deployment for this resource does not exist: {model}")
        } else {
            format!("The model `{model}` does not exist or you do not have access to it.")
        };
        return json_response(404, &error_body(kind, 404, &msg));
    }

    let limited = lock(&shared)
        .bucket
        .as_mut()
        .map(|b| b.take(Instant::now()));
    let rate_headers = match limited {
        Some(Err(headers)) => {
            lock(&shared).rate_limited += 1;
            let mut r = json_response(
                429,
                &error_body(kind, 429, "Rate limit reached for requests (mock bucket)"),
            );
            add_headers(&mut r, &headers);
            return r;
        }
        Some(Ok(_)) if lock(&shared).no_rate_headers => Vec::new(),
        Some(Ok(headers)) => headers,
        None => Vec::new(),
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let (all_text, last) = texts(kind, &json_body);
    let (reply, chunk, chunk_delay, n) = {
        let mut s = lock(&shared);
        s.counter += 1;
        let reply = s.script.pop_front().unwrap_or_else(|| {
            s.rules
                .iter()
                .rev()
                .find(|(k, _)| all_text.contains(k.as_str()))
                .map(|(_, t)| MockReply::Text(t.clone()))
                .unwrap_or_else(|| MockReply::Text(format!("mock: {last}")))
        });
        if matches!(reply, MockReply::RateLimit { .. }) {
            s.rate_limited += 1;
        }
        (reply, s.chunk_size, s.chunk_delay, s.counter)
    };
    let ctx = Ctx {
        kind,
        body: json_body,
        model,
        prompt_tokens: words(&all_text).max(1),
        chunk,
        chunk_delay,
        n,
    };
    let mut r = render(reply, &ctx).await;
    add_headers(&mut r, &rate_headers);
    r
}

/// `POST /v1/embeddings`: a deterministic vector per input, a hashed bag of lower-cased words
/// (16 dimensions), so equal texts get equal vectors and texts sharing words are close.
fn embeddings(body: &Value) -> Response {
    use std::hash::{Hash, Hasher};
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::Array(a)) => a.iter().map(content_text).collect(),
        Some(v) => vec![content_text(v)],
        None => return json_response(400, &error_body(Kind::Chat, 400, "mock: no input")),
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let mut v = [0f64; 16];
            for w in text
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
            {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                w.to_lowercase().hash(&mut h);
                v[(h.finish() % 16) as usize] += 1.0;
            }
            json!({"object": "embedding", "index": i, "embedding": v.to_vec()})
        })
        .collect();
    let tokens: u64 = inputs.iter().map(|t| words(t)).sum();
    json_response(
        200,
        &json!({"object": "list", "data": data, "model": body.get("model"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
}

fn add_headers(r: &mut Response, headers: &[(&'static str, String)]) {
    for (k, v) in headers {
        if let Ok(v) = v.parse() {
            r.headers_mut().insert(*k, v);
        }
    }
}

fn bearer(rec: &RecordedRequest) -> Option<String> {
    rec.header("authorization")
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).to_string())
}

fn check_key(kind: Kind, expected: &Option<String>, presented: Option<String>) -> Option<Response> {
    let expected = expected.as_ref()?;
    if presented.as_deref() == Some(expected.as_str()) {
        return None;
    }
    let msg = match presented {
        Some(k) => format!(
            "Incorrect API key provided: {k}. You can find your API key at https://example.invalid."
        ),
        None => "You didn't provide an API key.".to_string(),
    };
    let mut body = error_body(kind, 401, &msg);
    if kind != Kind::Anthropic {
        body["error"]["code"] = json!("invalid_api_key");
    }
    Some(json_response(401, &body))
}

struct Ctx {
    kind: Kind,
    body: Value,
    model: String,
    prompt_tokens: u64,
    chunk: usize,
    chunk_delay: Duration,
    n: u64,
}

impl Ctx {
    fn stream(&self) -> bool {
        self.body.get("stream").and_then(Value::as_bool) == Some(true)
    }
    fn include_usage(&self) -> bool {
        self.body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true)
    }
    /// How many choices a chat reply has: the request's `n` (1 to 8), else 1.
    fn choices(&self) -> u64 {
        self.body
            .get("n")
            .and_then(Value::as_u64)
            .map_or(1, |n| n.clamp(1, 8))
    }
    fn legacy_functions(&self) -> bool {
        self.body.get("functions").is_some() && self.body.get("tools").is_none()
    }
    fn usage(&self, completion: u64) -> Value {
        json!({"prompt_tokens": self.prompt_tokens, "completion_tokens": completion,
               "total_tokens": self.prompt_tokens + completion})
    }
}

fn render(
    reply: MockReply,
    ctx: &Ctx,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send + '_>> {
    Box::pin(async move {
        match reply {
            MockReply::Delay(d, inner) => {
                tokio::time::sleep(d).await;
                render(*inner, ctx).await
            }
            MockReply::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                json_response(504, &error_body(ctx.kind, 504, "mock: hung"))
            }
            MockReply::Status(code, msg) => json_response(code, &error_body(ctx.kind, code, &msg)),
            MockReply::RateLimit { retry_after } => {
                let mut r = json_response(
                    429,
                    &error_body(ctx.kind, 429, "Rate limit reached for requests (mock)"),
                );
                if let Some(s) = retry_after {
                    if let Ok(v) = s.to_string().parse() {
                        r.headers_mut().insert("retry-after", v);
                    }
                }
                r
            }
            MockReply::Malformed(raw) => Response::builder()
                .status(200)
                .header(
                    "content-type",
                    if ctx.stream() {
                        "text/event-stream"
                    } else {
                        "application/json"
                    },
                )
                .body(Body::from(raw))
                .unwrap_or_default(),
            MockReply::Json(v) => json_response(200, &v),
            MockReply::Text(text) => reply_text(ctx, &text, None),
            MockReply::ToolCall { name, arguments } => reply_text(ctx, "", Some((name, arguments))),
        }
    })
}

fn pieces(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars.chunks(n.max(1)).map(|c| c.iter().collect()).collect()
}

fn reply_text(ctx: &Ctx, text: &str, call: Option<(String, String)>) -> Response {
    let completion = words(text).max(1) + call.as_ref().map_or(0, |(_, a)| words(a) + 1);
    if ctx.stream() {
        let sse = match ctx.kind {
            Kind::Anthropic => anthropic_sse(ctx, text, call, completion),
            _ => openai_sse(ctx, text, call, completion),
        };
        return sse_response(sse, ctx.chunk, ctx.chunk_delay);
    }
    let body = match ctx.kind {
        Kind::Anthropic => {
            let content = match call {
                Some((name, args)) => {
                    let input: Value = serde_json::from_str(&args).unwrap_or(json!({}));
                    json!([{"type": "tool_use", "id": format!("toolu_mock_{}", ctx.n), "name": name, "input": input}])
                }
                None => json!([{"type": "text", "text": text}]),
            };
            let stop = if content[0]["type"] == "tool_use" {
                "tool_use"
            } else {
                "end_turn"
            };
            json!({"id": format!("msg_mock_{}", ctx.n), "type": "message", "role": "assistant",
                   "model": ctx.model, "content": content, "stop_reason": stop, "stop_sequence": null,
                   "usage": {"input_tokens": ctx.prompt_tokens, "output_tokens": completion}})
        }
        Kind::Completion => json!({
            "id": format!("cmpl-mock-{}", ctx.n), "object": "text_completion", "created": 1_700_000_000,
            "model": ctx.model,
            "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": "stop"}],
            "usage": ctx.usage(completion)}),
        Kind::Chat => {
            let (message, finish) = match call {
                Some((name, arguments)) if ctx.legacy_functions() => (
                    json!({"role": "assistant", "content": null,
                           "function_call": {"name": name, "arguments": arguments}}),
                    "function_call",
                ),
                Some((name, arguments)) => (
                    json!({"role": "assistant", "content": null, "tool_calls": [{
                        "id": format!("call_mock_{}", ctx.n), "type": "function",
                        "function": {"name": name, "arguments": arguments}}]}),
                    "tool_calls",
                ),
                None => (json!({"role": "assistant", "content": text}), "stop"),
            };
            // `n` > 1: more choices, choice i saying `#i` after the reply
            let choices: Vec<Value> = (0..ctx.choices())
                .map(|i| {
                    let mut message = message.clone();
                    if i > 0 && message["content"].is_string() {
                        message["content"] = json!(format!("{text} #{i}"));
                    }
                    json!({"index": i, "message": message, "finish_reason": finish})
                })
                .collect();
            json!({"id": format!("chatcmpl-mock-{}", ctx.n), "object": "chat.completion",
                   "created": 1_700_000_000, "model": ctx.model,
                   "choices": choices,
                   "usage": ctx.usage(completion)})
        }
    };
    json_response(200, &body)
}

fn openai_sse(ctx: &Ctx, text: &str, call: Option<(String, String)>, completion: u64) -> String {
    let mut out = String::new();
    let mut ev = |v: Value| out.push_str(&format!("data: {v}\n\n"));
    let id = format!("chatcmpl-mock-{}", ctx.n);
    let chunk = |choice: Value| {
        json!({"id": id, "object": "chat.completion.chunk", "created": 1_700_000_000,
               "model": ctx.model, "choices": [choice]})
    };
    let finish;
    if ctx.kind == Kind::Completion {
        for p in pieces(text, 3) {
            ev(chunk(json!({"index": 0, "text": p, "finish_reason": null})));
        }
        finish = "stop";
    } else {
        ev(chunk(
            json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}),
        ));
        match call {
            Some((name, args)) if ctx.legacy_functions() => {
                ev(chunk(
                    json!({"index": 0, "delta": {"function_call": {"name": name, "arguments": ""}}}),
                ));
                for p in pieces(&args, 4) {
                    ev(chunk(
                        json!({"index": 0, "delta": {"function_call": {"arguments": p}}}),
                    ));
                }
                finish = "function_call";
            }
            Some((name, args)) => {
                ev(chunk(
                    json!({"index": 0, "delta": {"tool_calls": [{"index": 0,
                    "id": format!("call_mock_{}", ctx.n), "type": "function",
                    "function": {"name": name, "arguments": ""}}]}}),
                ));
                for p in pieces(&args, 4) {
                    ev(chunk(
                        json!({"index": 0, "delta": {"tool_calls": [{"index": 0,
                        "function": {"arguments": p}}]}}),
                    ));
                }
                finish = "tool_calls";
            }
            None => {
                for p in pieces(text, 3) {
                    ev(chunk(
                        json!({"index": 0, "delta": {"content": p}, "finish_reason": null}),
                    ));
                }
                finish = "stop";
            }
        }
    }
    let last = if ctx.kind == Kind::Completion {
        json!({"index": 0, "text": "", "finish_reason": finish})
    } else {
        json!({"index": 0, "delta": {}, "finish_reason": finish})
    };
    ev(chunk(last));
    if ctx.include_usage() {
        ev(
            json!({"id": id, "object": "chat.completion.chunk", "created": 1_700_000_000,
                  "model": ctx.model, "choices": [], "usage": ctx.usage(completion)}),
        );
    }
    out.push_str("data: [DONE]\n\n");
    out
}

fn anthropic_sse(ctx: &Ctx, text: &str, call: Option<(String, String)>, completion: u64) -> String {
    let mut out = String::new();
    let mut ev = |name: &str, v: Value| out.push_str(&format!("event: {name}\ndata: {v}\n\n"));
    ev(
        "message_start",
        json!({"type": "message_start", "message": {
        "id": format!("msg_mock_{}", ctx.n), "type": "message", "role": "assistant",
        "model": ctx.model, "content": [], "stop_reason": null,
        "usage": {"input_tokens": ctx.prompt_tokens, "output_tokens": 1}}}),
    );
    ev("ping", json!({"type": "ping"}));
    let stop = match call {
        Some((name, args)) => {
            ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "tool_use", "id": format!("toolu_mock_{}", ctx.n),
                                  "name": name, "input": {}}}),
            );
            for p in pieces(&args, 4) {
                ev(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": p}}),
                );
            }
            "tool_use"
        }
        None => {
            ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
            );
            for p in pieces(text, 3) {
                ev(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": p}}),
                );
            }
            "end_turn"
        }
    };
    ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    );
    ev(
        "message_delta",
        json!({"type": "message_delta",
        "delta": {"stop_reason": stop, "stop_sequence": null},
        "usage": {"output_tokens": completion}}),
    );
    ev("message_stop", json!({"type": "message_stop"}));
    out
}

/// Sends `sse` in chunks of `chunk` bytes (splitting events and UTF-8 characters), with a short
/// pause between chunks so they arrive as separate reads.
fn sse_response(sse: String, chunk: usize, delay: Duration) -> Response {
    let bytes = sse.into_bytes();
    let parts: Vec<Vec<u8>> = bytes.chunks(chunk).map(<[u8]>::to_vec).collect();
    let stream = futures::stream::unfold(parts.into_iter(), move |mut it| async move {
        let next = it.next()?;
        tokio::time::sleep(delay).await;
        Some((Ok::<Bytes, std::io::Error>(Bytes::from(next)), it))
    });
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_default()
}
