//! `LlmClient` against the loopback mock over real HTTP.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::support::mock_llm::{MockLlm, MockReply};
use flow::chat::Message;
use flow::connection::{Connection, EnvVars, resolve};
use flow::provider::{ClientConfig, LlmClient, LlmRequest, ProviderError, RetryPolicy};
use serde_json::{Value, json};

const KEY: &str = "sk-test-0123456789abcdefSECRET";

fn conn(name: &str, pairs: &[(&str, String)]) -> Connection {
    resolve(name, &EnvVars::from_pairs(pairs.iter().cloned()), false).expect("connection resolves")
}

fn openai(mock: &MockLlm) -> Connection {
    conn(
        "open_ai_connection",
        &[
            ("OPEN_AI_CONNECTION_API_KEY", KEY.to_string()),
            ("OPEN_AI_CONNECTION_API_BASE", mock.openai_base()),
            ("OPEN_AI_CONNECTION_MODEL", "gpt-test".to_string()),
        ],
    )
}

fn client() -> LlmClient {
    client_with(Duration::from_secs(5), 3)
}

fn client_with(timeout: Duration, max_retries: u32) -> LlmClient {
    LlmClient::with_config(ClientConfig {
        timeout,
        retry: RetryPolicy {
            max_retries,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(20),
        },
        ..ClientConfig::default()
    })
    .unwrap()
}

fn chat(text: &str) -> LlmRequest {
    LlmRequest::chat(vec![
        Message::new("system", "You are terse."),
        Message::new("user", text),
    ])
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
}

#[tokio::test]
async fn chat_default_reply_and_usage() {
    let mock = MockLlm::start();
    mock.set_api_key(KEY);
    let mut req = chat("hello there");
    req.params.insert("temperature".into(), json!(0.2));
    let r = client().complete(&openai(&mock), &req, None).await.unwrap();
    assert_eq!(r.output, json!("mock: hello there"));
    assert!(r.usage.prompt_tokens > 0 && r.usage.completion_tokens > 0);
    assert_eq!(
        r.usage.total_tokens,
        r.usage.prompt_tokens + r.usage.completion_tokens
    );
    assert_eq!(r.model.as_deref(), Some("gpt-test"));
    assert_eq!(r.finish_reason.as_deref(), Some("stop"));
    assert_eq!(r.retries, 0);
    let reqs = mock.requests();
    assert_eq!(reqs[0].path, "/v1/chat/completions");
    assert_eq!(
        reqs[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(reqs[0].body["model"], "gpt-test");
    assert_eq!(reqs[0].body["temperature"], 0.2);
    assert_eq!(reqs[0].body["messages"][0]["role"], "system");
}

#[tokio::test]
async fn node_model_overrides_connection_model_and_rules_match() {
    let mock = MockLlm::start();
    mock.reply_when("capital of France", "Paris");
    let mut req = chat("What is the capital of France?");
    req.model = Some("gpt-node".into());
    let r = client().complete(&openai(&mock), &req, None).await.unwrap();
    assert_eq!(r.output, json!("Paris"));
    assert_eq!(mock.requests()[0].body["model"], "gpt-node");
}

#[tokio::test]
async fn completions_api() {
    let mock = MockLlm::start();
    let req = LlmRequest::completion("Once upon a time");
    let r = client().complete(&openai(&mock), &req, None).await.unwrap();
    assert_eq!(r.output, json!("mock: Once upon a time"));
    let rec = &mock.requests()[0];
    assert_eq!(rec.path, "/v1/completions");
    assert_eq!(rec.body["prompt"], "Once upon a time");
}

#[tokio::test]
async fn azure_url_form_and_headers() {
    let mock = MockLlm::start();
    mock.set_api_key(KEY);
    let c = conn(
        "azure_open_ai_connection",
        &[
            ("AZURE_OPEN_AI_CONNECTION_API_KEY", KEY.to_string()),
            ("AZURE_OPEN_AI_CONNECTION_API_BASE", mock.url()),
            (
                "AZURE_OPEN_AI_CONNECTION_API_VERSION",
                "2024-06-01".to_string(),
            ),
            (
                "AZURE_OPEN_AI_CONNECTION_DEPLOYMENT",
                "gpt4o-dep".to_string(),
            ),
        ],
    );
    let r = client()
        .complete(&c, &chat("hi azure"), None)
        .await
        .unwrap();
    assert_eq!(r.output, json!("mock: hi azure"));
    let rec = &mock.requests()[0];
    assert_eq!(rec.path, "/openai/deployments/gpt4o-dep/chat/completions");
    assert_eq!(rec.query.as_deref(), Some("api-version=2024-06-01"));
    assert_eq!(rec.header("api-key"), Some(KEY));
    assert_eq!(rec.header("authorization"), None);
    assert!(rec.body.get("model").is_none());

    // A base that already names the deployment is used as is.
    let c2 = conn(
        "az2",
        &[
            ("AZ2_API_KEY", KEY.to_string()),
            ("AZ2_API_TYPE", "azure".to_string()),
            (
                "AZ2_API_BASE",
                format!("{}/openai/deployments/inbase", mock.url()),
            ),
        ],
    );
    client().complete(&c2, &chat("x"), None).await.unwrap();
    let rec = &mock.requests()[1];
    assert_eq!(rec.path, "/openai/deployments/inbase/chat/completions");
    assert_eq!(rec.query.as_deref(), Some("api-version=2024-02-01"));
}

fn anthropic(mock: &MockLlm) -> Connection {
    conn(
        "claude",
        &[
            ("CLAUDE_API_TYPE", "anthropic".to_string()),
            ("CLAUDE_API_KEY", KEY.to_string()),
            ("CLAUDE_API_BASE", mock.url()),
            ("CLAUDE_MODEL", "claude-test".to_string()),
        ],
    )
}

#[tokio::test]
async fn anthropic_form() {
    let mock = MockLlm::start();
    mock.set_api_key(KEY);
    let mut req = chat("bonjour");
    req.params.insert("stop".into(), json!("END"));
    req.params.insert("temperature".into(), json!(0));
    let r = client()
        .complete(&anthropic(&mock), &req, None)
        .await
        .unwrap();
    assert_eq!(r.output, json!("mock: bonjour"));
    assert!(r.usage.prompt_tokens > 0 && r.usage.completion_tokens > 0);
    assert_eq!(r.finish_reason.as_deref(), Some("stop"));
    let rec = &mock.requests()[0];
    assert_eq!(rec.path, "/v1/messages");
    assert_eq!(rec.header("x-api-key"), Some(KEY));
    assert_eq!(rec.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(rec.body["system"], "You are terse.");
    assert_eq!(
        rec.body["messages"],
        json!([{"role": "user", "content": "bonjour"}])
    );
    assert_eq!(rec.body["max_tokens"], 1024);
    assert_eq!(rec.body["stop_sequences"], json!(["END"]));
}

#[tokio::test]
async fn anthropic_streaming_and_tool_use() {
    let mock = MockLlm::start();
    mock.set_stream_chunk_size(5);
    let deltas = Mutex::new(Vec::<String>::new());
    let on = |d: &str| deltas.lock().unwrap().push(d.to_string());
    mock.push(MockReply::text("Streaming from Claude, ünïcode ✓"));
    let mut req = chat("q");
    req.stream = true;
    let r = client()
        .complete(&anthropic(&mock), &req, Some(&on))
        .await
        .unwrap();
    assert_eq!(r.output, json!("Streaming from Claude, ünïcode ✓"));
    assert_eq!(
        deltas.lock().unwrap().concat(),
        "Streaming from Claude, ünïcode ✓"
    );
    assert!(r.usage.completion_tokens > 1);
    assert_eq!(mock.requests()[0].body["stream"], true);

    mock.push(MockReply::tool_call("get_weather", json!({"city": "Oslo"})));
    let mut req = chat("weather?");
    req.params.insert("tools".into(), weather_tools());
    req.params.insert("tool_choice".into(), json!("auto"));
    let r = client()
        .complete(&anthropic(&mock), &req, None)
        .await
        .unwrap();
    assert_eq!(r.output["tool_calls"][0]["function"]["name"], "get_weather");
    let args: Value = serde_json::from_str(
        r.output["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(args, json!({"city": "Oslo"}));
    let sent = &mock.requests()[1].body;
    assert_eq!(sent["tools"][0]["name"], "get_weather");
    assert_eq!(sent["tools"][0]["input_schema"]["type"], "object");
    assert_eq!(sent["tool_choice"], json!({"type": "auto"}));
}

#[tokio::test]
async fn streaming_with_oddly_split_chunks() {
    for chunk in [1, 3, 7, 64] {
        let mock = MockLlm::start();
        mock.set_stream_chunk_size(chunk);
        let text = "Ça va? 日本語 and emoji 🎉 — done.";
        mock.push(MockReply::text(text));
        let deltas = Mutex::new(Vec::<String>::new());
        let on = |d: &str| deltas.lock().unwrap().push(d.to_string());
        let mut req = chat("stream please");
        req.stream = true;
        let r = client()
            .complete(&openai(&mock), &req, Some(&on))
            .await
            .unwrap();
        assert_eq!(r.output, json!(text), "chunk size {chunk}");
        let deltas = deltas.into_inner().unwrap();
        assert!(deltas.len() > 3, "several deltas, got {deltas:?}");
        assert_eq!(deltas.concat(), text);
        assert!(r.usage.total_tokens > 0, "usage from the final chunk");
        assert_eq!(r.finish_reason.as_deref(), Some("stop"));
        let sent = &mock.requests()[0].body;
        assert_eq!(sent["stream"], true);
        assert_eq!(sent["stream_options"]["include_usage"], true);
    }
}

#[tokio::test]
async fn tool_calls_plain_and_streamed() {
    let mock = MockLlm::start();
    for stream in [false, true] {
        mock.push(MockReply::tool_call(
            "get_weather",
            json!({"city": "Paris", "unit": "C"}),
        ));
        let mut req = chat("weather in Paris?");
        req.stream = stream;
        req.params.insert("tools".into(), weather_tools());
        let r = client().complete(&openai(&mock), &req, None).await.unwrap();
        let call = &r.output["tool_calls"][0];
        assert_eq!(r.output["role"], "assistant");
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], "get_weather");
        assert!(call["id"].as_str().unwrap().starts_with("call_mock"));
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(
            args,
            json!({"city": "Paris", "unit": "C"}),
            "stream={stream}"
        );
        assert_eq!(r.finish_reason.as_deref(), Some("tool_calls"));
    }
    // Legacy functions → function_call.
    for stream in [false, true] {
        mock.push(MockReply::tool_call("lookup", json!({"q": "x"})));
        let mut req = chat("call it");
        req.stream = stream;
        req.params.insert(
            "functions".into(),
            json!([{"name": "lookup", "parameters": {"type": "object"}}]),
        );
        let r = client().complete(&openai(&mock), &req, None).await.unwrap();
        assert_eq!(r.output["function_call"]["name"], "lookup");
        assert_eq!(
            r.output["function_call"]["arguments"],
            json!({"q": "x"}).to_string()
        );
    }
    // Tools requested but the model answered text: the text.
    let mut req = chat("no tool needed");
    req.params.insert("tools".into(), weather_tools());
    let r = client().complete(&openai(&mock), &req, None).await.unwrap();
    assert_eq!(r.output, json!("mock: no tool needed"));
}

fn assert_no_key(e: &ProviderError) {
    let msg = e.to_string();
    assert!(!msg.contains(KEY), "key leaked: {msg}");
    assert!(!format!("{e:?}").contains(KEY), "key leaked in Debug");
}

#[tokio::test]
async fn unauthorized_names_connection_and_variable_without_key() {
    let mock = MockLlm::start();
    mock.set_api_key("sk-the-right-key-xxxxxxxx");
    let e = client()
        .complete(&openai(&mock), &chat("x"), None)
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ProviderError::Unauthorized { .. }), "{msg}");
    assert!(msg.contains("open_ai_connection"), "{msg}");
    assert!(msg.contains("OPEN_AI_CONNECTION_API_KEY"), "{msg}");
    assert!(msg.contains("/v1/chat/completions"), "{msg}");
    assert!(
        msg.contains("Incorrect API key provided: ***"),
        "server message kept, redacted: {msg}"
    );
    assert_no_key(&e);
    assert!(e.endpoint_unusable());
    assert!(!e.is_retryable());
    assert_eq!(mock.request_count(), 1, "401 is not retried");
}

#[tokio::test]
async fn forbidden_not_found_bad_request() {
    let mock = MockLlm::start();
    mock.push(MockReply::Status(403, "Access denied for this key".into()));
    let e = client()
        .complete(&openai(&mock), &chat("x"), None)
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ProviderError::Forbidden { .. }), "{msg}");
    assert!(msg.contains("open_ai_connection") && msg.contains("OPEN_AI_CONNECTION_API_KEY"));
    assert!(msg.contains("Access denied for this key"));
    assert!(e.endpoint_unusable());
    assert_no_key(&e);

    mock.set_known_models(&["gpt-real"]);
    let e = client()
        .complete(&openai(&mock), &chat("x"), None)
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ProviderError::NotFound { .. }), "{msg}");
    assert!(
        msg.contains("gpt-test") && msg.contains("OPEN_AI_CONNECTION_MODEL"),
        "{msg}"
    );
    assert!(msg.contains("OPEN_AI_CONNECTION_API_BASE"), "{msg}");
    assert!(e.endpoint_unusable());

    let az = conn(
        "azure_open_ai_connection",
        &[
            ("AZURE_OPEN_AI_CONNECTION_API_KEY", KEY.to_string()),
            ("AZURE_OPEN_AI_CONNECTION_API_BASE", mock.url()),
            (
                "AZURE_OPEN_AI_CONNECTION_API_VERSION",
                "2024-06-01".to_string(),
            ),
        ],
    );
    let mut req = chat("x");
    req.model = Some("missing-dep".into());
    let e = client().complete(&az, &req, None).await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("missing-dep") && msg.contains("deployment"),
        "{msg}"
    );
    assert!(msg.contains("AZURE_OPEN_AI_CONNECTION_DEPLOYMENT"), "{msg}");
    assert_no_key(&e);

    mock.set_known_models(&[]);
    mock.push(MockReply::Status(
        400,
        "Invalid value for 'temperature': 9".into(),
    ));
    let e = client()
        .complete(&openai(&mock), &chat("x"), None)
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, ProviderError::BadRequest { status: 400, .. }),
        "{msg}"
    );
    assert!(msg.contains("Invalid value for 'temperature': 9"), "{msg}");
    assert!(msg.contains("open_ai_connection"));
    assert!(!e.endpoint_unusable() && !e.is_retryable());
}

#[tokio::test]
async fn rate_limit_with_retry_after_then_success() {
    let mock = MockLlm::start();
    mock.push(MockReply::RateLimit {
        retry_after: Some(0),
    });
    mock.push(MockReply::RateLimit { retry_after: None });
    let r = client()
        .complete(&openai(&mock), &chat("after 429"), None)
        .await
        .unwrap();
    assert_eq!(r.output, json!("mock: after 429"));
    assert_eq!(r.retries, 2);
    assert_eq!(mock.request_count(), 3);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let mock = MockLlm::start();
    mock.push(MockReply::RateLimit {
        retry_after: Some(1),
    });
    let c = LlmClient::with_config(ClientConfig {
        timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_retries: 2,
            base: Duration::from_millis(1),
            cap: Duration::from_secs(5),
        },
        ..ClientConfig::default()
    })
    .unwrap();
    let t = Instant::now();
    let r = c.complete(&openai(&mock), &chat("x"), None).await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(950),
        "waited {:?}",
        t.elapsed()
    );
    assert_eq!(r.retries, 1);
}

#[tokio::test]
async fn server_error_then_success_and_exhaustion() {
    let mock = MockLlm::start();
    mock.push(MockReply::Status(500, "boom".into()));
    let r = client()
        .complete(&openai(&mock), &chat("ok now"), None)
        .await
        .unwrap();
    assert_eq!(r.output, json!("mock: ok now"));
    assert_eq!(r.retries, 1);

    for _ in 0..4 {
        mock.push(MockReply::Status(503, "overloaded".into()));
    }
    let e = client()
        .complete(&openai(&mock), &chat("x"), None)
        .await
        .unwrap_err();
    assert_eq!(e.retries(), 3);
    assert_eq!(e.status(), Some(503));
    let msg = e.to_string();
    assert!(
        msg.contains("after 3 retries") && msg.contains("overloaded"),
        "{msg}"
    );
    assert!(!e.endpoint_unusable());

    // 501 is not retried.
    mock.clear_requests();
    mock.push(MockReply::Status(501, "not implemented".into()));
    let e = client()
        .complete(&openai(&mock), &chat("x"), None)
        .await
        .unwrap_err();
    assert_eq!(e.retries(), 0);
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test]
async fn slow_reply_times_out() {
    let mock = MockLlm::start();
    mock.push(MockReply::Hang);
    mock.push(MockReply::Delay(
        Duration::from_secs(5),
        Box::new(MockReply::text("late")),
    ));
    let t = Instant::now();
    let e = client_with(Duration::from_millis(300), 1)
        .complete(&openai(&mock), &chat("x"), None)
        .await
        .unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    assert!(matches!(e.root(), ProviderError::Timeout { .. }), "{e}");
    assert_eq!(e.retries(), 1);
    assert!(e.to_string().contains("open_ai_connection"));
}

#[tokio::test]
async fn malformed_reply_is_reported_with_excerpt() {
    let mock = MockLlm::start();
    mock.push(MockReply::Malformed(format!(
        "<html>gateway page {KEY}</html>"
    )));
    let e = client()
        .complete(&openai(&mock), &chat("x"), None)
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ProviderError::Malformed { .. }), "{msg}");
    assert!(msg.contains("<html>gateway page ***"), "{msg}");
    assert!(msg.contains("OPEN_AI_CONNECTION_API_BASE"), "{msg}");
    assert_no_key(&e);

    mock.push(MockReply::Json(json!({"unexpected": true})));
    let e = client()
        .complete(&openai(&mock), &chat("x"), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("choices"), "{e}");

    mock.push(MockReply::Malformed("data: {not json\n\n".into()));
    let mut req = chat("x");
    req.stream = true;
    let e = client()
        .complete(&openai(&mock), &req, None)
        .await
        .unwrap_err();
    assert!(matches!(e, ProviderError::Malformed { .. }), "{e}");
}

#[tokio::test]
async fn unreachable_endpoint() {
    // Bind then drop to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = conn(
        "local",
        &[
            ("LOCAL_API_BASE", format!("http://127.0.0.1:{port}/v1")),
            ("LOCAL_MODEL", "m".to_string()),
        ],
    );
    let e = client_with(Duration::from_secs(2), 0)
        .complete(&c, &chat("x"), None)
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ProviderError::Unreachable { .. }), "{msg}");
    assert!(
        msg.contains("LOCAL_API_BASE") && msg.contains("local"),
        "{msg}"
    );
    assert!(e.endpoint_unusable());
}

#[tokio::test]
async fn custom_headers_are_sent() {
    let mock = MockLlm::start();
    let c = conn(
        "hdr",
        &[
            ("HDR_API_KEY", KEY.to_string()),
            ("HDR_API_BASE", mock.openai_base()),
            ("HDR_MODEL", "m".to_string()),
            (
                "HDR_HEADERS",
                r#"{"X-Team": "search", "X-Trace": 7}"#.to_string(),
            ),
        ],
    );
    client().complete(&c, &chat("x"), None).await.unwrap();
    let rec = &mock.requests()[0];
    assert_eq!(rec.header("x-team"), Some("search"));
    assert_eq!(rec.header("x-trace"), Some("7"));
}

#[tokio::test]
async fn ollama_needs_no_key() {
    let mock = MockLlm::start();
    let c = conn(
        "llama",
        &[
            ("LLAMA_API_TYPE", "ollama".to_string()),
            ("LLAMA_API_BASE", mock.openai_base()),
            ("LLAMA_MODEL", "llama3.2".to_string()),
        ],
    );
    let r = client().complete(&c, &chat("hey"), None).await.unwrap();
    assert_eq!(r.output, json!("mock: hey"));
    assert_eq!(mock.requests()[0].header("authorization"), None);
}

#[tokio::test]
async fn echo_is_deterministic_and_offline() {
    let c = resolve("anything", &EnvVars::default(), true).unwrap();
    let req = chat("repeat me");
    let a = client().complete(&c, &req, None).await.unwrap();
    let b = client().complete(&c, &req, None).await.unwrap();
    assert_eq!(a, b);
    assert_eq!(
        a.output,
        json!("[echo: offline, no model was called] repeat me")
    );
    assert_eq!(a.usage.prompt_tokens, 5);
    assert_eq!(a.usage.completion_tokens, 8);
    let other = client()
        .complete(&c, &chat("something else"), None)
        .await
        .unwrap();
    assert_ne!(a.output, other.output);
    let comp = client()
        .complete(&c, &LlmRequest::completion("p q"), None)
        .await
        .unwrap();
    assert_eq!(
        comp.output,
        json!("[echo: offline, no model was called] p q")
    );
}

#[test]
fn cache_key_is_stable_and_sensitive() {
    let mock = MockLlm::start();
    let c = openai(&mock);
    let mut a = chat("x");
    a.params.insert("temperature".into(), json!(0));
    a.params.insert("top_p".into(), json!(1));
    let mut b = chat("x");
    b.params.insert("top_p".into(), json!(1));
    b.params.insert("temperature".into(), json!(0));
    assert_eq!(
        a.cache_key(&c),
        b.cache_key(&c),
        "parameter order does not matter"
    );
    assert_eq!(a.cache_key(&c).len(), 64);
    b.stream = true;
    assert_eq!(
        a.cache_key(&c),
        b.cache_key(&c),
        "streaming does not change the answer"
    );
    b.params.insert("temperature".into(), json!(0.5));
    assert_ne!(a.cache_key(&c), b.cache_key(&c));
    let mut m = a.clone();
    m.model = Some("other".into());
    assert_ne!(a.cache_key(&c), m.cache_key(&c));
    // The key is not part of it: another key, same target → same cache key.
    let mut c2 = c.clone();
    c2.api_key = Some(flow::connection::Secret::new("sk-another-key-000000000"));
    assert_eq!(a.cache_key(&c), a.cache_key(&c2));
}
