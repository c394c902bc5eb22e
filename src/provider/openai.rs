//! OpenAI-compatible Chat Completions and Completions (OpenAI, Azure OpenAI, Ollama, vLLM, ...).

use serde_json::{Map, Value, json};

use super::sse::SseEvent;
use super::{
    Api, DeltaFn, LlmRequest, LlmResponse, Prepared, Protocol, ProviderError, Target, Usage,
};
use crate::connection::{ApiType, Connection, OPENAI_DEFAULT_BASE};

/// URL and model/deployment for a request.
pub(crate) fn target(conn: &Connection, req: &LlmRequest) -> Result<Target, ProviderError> {
    let path = match req.api {
        Api::Chat => "chat/completions",
        Api::Completion => "completions",
    };
    if conn.api_type == ApiType::Azure {
        return azure_target(conn, req, path);
    }
    let (base, query) = super::split_query(conn.api_base.as_deref().unwrap_or(OPENAI_DEFAULT_BASE));
    let url = if base.ends_with("/chat/completions") || base.ends_with("/completions") {
        base.to_string()
    } else {
        format!("{base}/{path}")
    };
    let url = super::with_query(url, query);
    let model = req
        .model
        .clone()
        .or_else(|| conn.model.clone())
        .or_else(|| conn.deployment.clone());
    Ok(Target { url, model })
}

fn azure_target(conn: &Connection, req: &LlmRequest, path: &str) -> Result<Target, ProviderError> {
    let base = conn
        .api_base
        .as_deref()
        .unwrap_or_default()
        .trim_end_matches('/');
    let version = conn
        .api_version
        .as_deref()
        .unwrap_or(crate::connection::AZURE_DEFAULT_API_VERSION);
    let (base, query) = super::split_query(base);
    let (url, deployment) = if let Some(idx) = base.find("/openai/deployments/") {
        // The base already names a deployment: use it, completing the path if needed.
        let after = &base[idx + "/openai/deployments/".len()..];
        let dep = after.split('/').next().unwrap_or_default().to_string();
        let url = if after.contains('/') {
            base.to_string()
        } else {
            format!("{base}/{path}")
        };
        (url, Some(dep).filter(|d| !d.is_empty()))
    } else {
        let root = base.strip_suffix("/openai").unwrap_or(base);
        let dep = req
            .model
            .clone()
            .or_else(|| conn.deployment.clone())
            .or_else(|| conn.model.clone())
            .ok_or_else(|| ProviderError::Config {
                connection: conn.name.clone(),
                message: format!(
                    "no Azure deployment: set deployment_name on the node or {}_DEPLOYMENT in .env",
                    crate::connection::env_prefix(&conn.name)
                ),
            })?;
        (format!("{root}/openai/deployments/{dep}/{path}"), Some(dep))
    };
    let mut url = url;
    match query {
        Some(q) if q.contains("api-version=") => {
            url.push('?');
            url.push_str(q);
        }
        Some(q) if !q.is_empty() => url.push_str(&format!("?{q}&api-version={version}")),
        _ => url.push_str(&format!("?api-version={version}")),
    }
    Ok(Target {
        url,
        model: deployment,
    })
}

/// Builds the URL, headers and JSON body.
pub(crate) fn prepare(conn: &Connection, req: &LlmRequest) -> Result<Prepared, ProviderError> {
    let t = target(conn, req)?;
    let mut body = Map::new();
    if conn.api_type != ApiType::Azure {
        let model = t.model.clone().ok_or_else(|| ProviderError::Config {
            connection: conn.name.clone(),
            message: format!(
                "no model: set model on the node or {}_MODEL in .env",
                crate::connection::env_prefix(&conn.name)
            ),
        })?;
        body.insert("model".into(), Value::String(model));
    }
    match req.api {
        Api::Chat => {
            let msgs = serde_json::to_value(&req.messages).map_err(|e| ProviderError::Config {
                connection: conn.name.clone(),
                message: format!("cannot serialize the messages: {e}"),
            })?;
            body.insert("messages".into(), msgs);
        }
        Api::Completion => {
            body.insert(
                "prompt".into(),
                Value::String(req.prompt.clone().unwrap_or_default()),
            );
        }
    }
    for (k, v) in &req.params {
        if !v.is_null() {
            body.insert(k.clone(), v.clone());
        }
    }
    if req.stream {
        body.insert("stream".into(), Value::Bool(true));
        if !body.contains_key("stream_options") && supports_stream_usage(conn) {
            body.insert("stream_options".into(), json!({"include_usage": true}));
        }
    } else {
        // As promptflow's tools send it.
        body.insert("stream".into(), Value::Bool(false));
    }
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    if let Some(key) = &conn.api_key {
        if conn.api_type == ApiType::Azure {
            headers.push(("api-key".into(), key.expose().to_string()));
        } else {
            headers.push(("authorization".into(), format!("Bearer {}", key.expose())));
        }
    }
    if let Some(org) = conn.extra.get("organization") {
        headers.push(("openai-organization".into(), org.clone()));
    }
    for (k, v) in &conn.headers {
        headers.push((k.clone(), v.expose().to_string()));
    }
    let body = serde_json::to_vec(&Value::Object(body)).map_err(|e| ProviderError::Config {
        connection: conn.name.clone(),
        message: format!("cannot serialize the request: {e}"),
    })?;
    Ok(Prepared {
        url: t.url,
        headers,
        body,
        protocol: Protocol::OpenAi,
        model: t.model,
    })
}

/// Azure accepts `stream_options` from api-version 2024-09-01 on; older versions reject it.
fn supports_stream_usage(conn: &Connection) -> bool {
    match conn.api_type {
        ApiType::Azure => conn
            .api_version
            .as_deref()
            .is_some_and(|v| v >= "2024-09-01"),
        ApiType::OpenAi
        | ApiType::Ollama
        | ApiType::Anthropic
        | ApiType::Echo
        | ApiType::Custom => true,
    }
}

fn usage_of(v: &Value) -> Usage {
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let (p, c) = (n("prompt_tokens"), n("completion_tokens"));
    let t = v
        .get("total_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(p + c);
    Usage {
        prompt_tokens: p,
        completion_tokens: c,
        total_tokens: t,
    }
}

/// Parses a non-streamed reply.
pub(crate) fn parse(v: &Value, req: &LlmRequest) -> Result<LlmResponse, String> {
    let choice = v
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or("no choices[0] in the reply")?;
    let finish_reason = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map(str::to_string);
    let output = match req.api {
        Api::Completion => Value::String(
            choice
                .get("text")
                .and_then(Value::as_str)
                .ok_or("no choices[0].text in the reply")?
                .to_string(),
        ),
        Api::Chat => {
            let msg = choice
                .get("message")
                .filter(|m| m.is_object())
                .ok_or("no choices[0].message in the reply")?;
            chat_output(msg, req)
        }
    };
    Ok(LlmResponse {
        output,
        usage: v.get("usage").map(usage_of).unwrap_or_default(),
        model: v.get("model").and_then(Value::as_str).map(str::to_string),
        finish_reason,
        retries: 0,
        served_by: None,
        raw: req.full_response.then(|| v.clone()),
    })
}

fn has_call(msg: &Value) -> bool {
    msg.get("tool_calls")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
        || msg.get("function_call").is_some_and(Value::is_object)
}

/// The text, or the whole message when tools were requested and the model called one.
fn chat_output(msg: &Value, req: &LlmRequest) -> Value {
    if req.wants_tools() && has_call(msg) {
        return msg.clone();
    }
    Value::String(
        msg.get("content")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    )
}

/// Assembles a streamed reply from `data:` events.
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    text: String,
    tool_calls: Vec<Value>,
    function_call: Option<(String, String)>,
    usage: Option<Usage>,
    model: Option<String>,
    finish_reason: Option<String>,
    done: bool,
}

impl StreamState {
    /// Handles one event; `Err` when the event is not valid JSON of the expected shape.
    pub(crate) fn on_event(
        &mut self,
        ev: &SseEvent,
        on_delta: Option<DeltaFn<'_>>,
        emitted: &mut bool,
    ) -> Result<(), String> {
        let data = ev.data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        let v: Value =
            serde_json::from_str(data).map_err(|e| format!("stream event is not JSON: {e}"))?;
        if let Some(err) = v.get("error") {
            return Err(format!("the stream reported an error: {err}"));
        }
        if self.model.is_none() {
            self.model = v.get("model").and_then(Value::as_str).map(str::to_string);
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage_of(u));
        }
        let Some(choice) = v.get("choices").and_then(|c| c.get(0)) else {
            return Ok(());
        };
        if let Some(fr) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(fr.to_string());
        }
        let piece = choice
            .get("delta")
            .and_then(|d| d.get("content"))
            .or_else(|| choice.get("text"))
            .and_then(Value::as_str);
        if let Some(piece) = piece.filter(|p| !p.is_empty()) {
            self.text.push_str(piece);
            if let Some(f) = on_delta {
                f(piece);
                *emitted = true;
            }
        }
        if let Some(delta) = choice.get("delta") {
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                for call in calls {
                    self.merge_tool_call(call);
                }
            }
            if let Some(fc) = delta.get("function_call") {
                let entry = self.function_call.get_or_insert_default();
                if let Some(n) = fc.get("name").and_then(Value::as_str) {
                    entry.0.push_str(n);
                }
                if let Some(a) = fc.get("arguments").and_then(Value::as_str) {
                    entry.1.push_str(a);
                }
            }
        }
        Ok(())
    }

    fn merge_tool_call(&mut self, call: &Value) {
        let index = call
            .get("index")
            .and_then(Value::as_u64)
            .and_then(|i| usize::try_from(i).ok())
            .unwrap_or(self.tool_calls.len().saturating_sub(1));
        while self.tool_calls.len() <= index {
            self.tool_calls.push(json!({
                "id": "", "type": "function", "function": {"name": "", "arguments": ""}
            }));
        }
        let slot = &mut self.tool_calls[index];
        if let Some(id) = call.get("id").and_then(Value::as_str) {
            slot["id"] = Value::String(id.to_string());
        }
        if let Some(t) = call.get("type").and_then(Value::as_str) {
            slot["type"] = Value::String(t.to_string());
        }
        if let Some(f) = call.get("function") {
            for key in ["name", "arguments"] {
                if let Some(piece) = f.get(key).and_then(Value::as_str) {
                    let cur = slot["function"][key].as_str().unwrap_or_default();
                    slot["function"][key] = Value::String(format!("{cur}{piece}"));
                }
            }
        }
    }

    /// Whether the `[DONE]` marker arrived.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// The assembled response.
    pub(crate) fn finish(self, req: &LlmRequest) -> LlmResponse {
        let output = if req.api == Api::Chat {
            let mut msg = json!({"role": "assistant", "content": self.text});
            if !self.tool_calls.is_empty() {
                msg["tool_calls"] = Value::Array(self.tool_calls);
            }
            if let Some((name, arguments)) = self.function_call {
                msg["function_call"] = json!({"name": name, "arguments": arguments});
            }
            chat_output(&msg, req)
        } else {
            Value::String(self.text)
        };
        LlmResponse {
            output,
            usage: self.usage.unwrap_or_default(),
            model: self.model,
            finish_reason: self.finish_reason,
            retries: 0,
            served_by: None,
            raw: None,
        }
    }
}
