//! Anthropic Messages API (`/v1/messages`), mapped to and from the OpenAI shapes flows use.

use serde_json::{Map, Value, json};

use super::sse::SseEvent;
use super::{
    Api, DeltaFn, LlmRequest, LlmResponse, Prepared, Protocol, ProviderError, Target, Usage,
};
use crate::connection::{ANTHROPIC_DEFAULT_BASE, Connection, env_prefix};

/// `max_tokens` when the node sets none (Anthropic requires it).
pub const DEFAULT_MAX_TOKENS: u64 = 1024;

/// URL and model for a request.
pub(crate) fn target(conn: &Connection, req: &LlmRequest) -> Result<Target, ProviderError> {
    let (base, query) =
        super::split_query(conn.api_base.as_deref().unwrap_or(ANTHROPIC_DEFAULT_BASE));
    let url = if base.ends_with("/messages") {
        base.to_string()
    } else if base.ends_with("/v1") {
        format!("{base}/messages")
    } else {
        format!("{base}/v1/messages")
    };
    let url = super::with_query(url, query);
    let model = req
        .model
        .clone()
        .or_else(|| conn.model.clone())
        .or_else(|| conn.deployment.clone());
    Ok(Target { url, model })
}

/// Converts OpenAI `tools` to Anthropic's `{name, description, input_schema}`.
fn convert_tools(tools: &Value) -> Value {
    let list = tools.as_array().map(Vec::as_slice).unwrap_or_default();
    Value::Array(
        list.iter()
            .map(|t| {
                let f = t.get("function").unwrap_or(t);
                let mut o = Map::new();
                o.insert("name".into(), f.get("name").cloned().unwrap_or(Value::Null));
                if let Some(d) = f.get("description") {
                    o.insert("description".into(), d.clone());
                }
                o.insert(
                    "input_schema".into(),
                    f.get("parameters")
                        .or_else(|| f.get("input_schema"))
                        .cloned()
                        .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                );
                Value::Object(o)
            })
            .collect(),
    )
}

fn convert_tool_choice(tc: &Value) -> Option<Value> {
    match tc {
        Value::String(s) => match s.as_str() {
            "auto" => Some(json!({"type": "auto"})),
            "required" | "any" => Some(json!({"type": "any"})),
            "none" => Some(json!({"type": "none"})),
            _ => None,
        },
        Value::Object(o) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .or_else(|| o.get("name"))?;
            Some(json!({"type": "tool", "name": name}))
        }
        _ => None,
    }
}

/// Builds the URL, headers and JSON body.
pub(crate) fn prepare(conn: &Connection, req: &LlmRequest) -> Result<Prepared, ProviderError> {
    let t = target(conn, req)?;
    let model = t.model.clone().ok_or_else(|| ProviderError::Config {
        connection: conn.name.clone(),
        message: format!(
            "no model: set model on the node or {}_MODEL in .env (e.g. claude-3-5-haiku-latest)",
            env_prefix(&conn.name)
        ),
    })?;
    let mut system = String::new();
    let mut messages = Vec::new();
    let owned;
    let source: &[crate::chat::Message] = match req.api {
        Api::Chat => &req.messages,
        Api::Completion => {
            owned = [crate::chat::Message::new(
                "user",
                req.prompt.clone().unwrap_or_default(),
            )];
            &owned
        }
    };
    for m in source {
        if let Some(parts) = &m.parts {
            messages.push(anthropic_parts(conn, m, parts)?);
            continue;
        }
        match m.role.as_str() {
            "system" => {
                if !system.is_empty() {
                    system.push_str("\n\n");
                }
                system.push_str(&m.content);
            }
            "assistant" => messages.push(json!({"role": "assistant", "content": m.content})),
            "tool" => messages.push(json!({"role": "user", "content": [{
                "type": "tool_result",
                "tool_use_id": m.tool_call_id.clone().unwrap_or_default(),
                "content": m.content,
            }]})),
            _ => messages.push(json!({"role": "user", "content": m.content})),
        }
    }
    let mut body = Map::new();
    body.insert("model".into(), Value::String(model));
    if !system.is_empty() {
        body.insert("system".into(), Value::String(system));
    }
    body.insert("messages".into(), Value::Array(messages));
    let p = &req.params;
    body.insert(
        "max_tokens".into(),
        p.get("max_tokens")
            .filter(|v| v.is_number())
            .cloned()
            .unwrap_or_else(|| json!(DEFAULT_MAX_TOKENS)),
    );
    for k in ["temperature", "top_p", "top_k", "metadata"] {
        if let Some(v) = p.get(k).filter(|v| !v.is_null()) {
            body.insert(k.into(), v.clone());
        }
    }
    match p.get("stop") {
        Some(Value::String(s)) => {
            body.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) if !a.is_empty() => {
            body.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if let Some(tools) = p.get("tools").filter(|v| v.is_array()) {
        body.insert("tools".into(), convert_tools(tools));
        if let Some(tc) = p.get("tool_choice").and_then(convert_tool_choice) {
            body.insert("tool_choice".into(), tc);
        }
    }
    if req.stream {
        body.insert("stream".into(), Value::Bool(true));
    }
    let mut headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("anthropic-version".to_string(), "2023-06-01".to_string()),
    ];
    if let Some(key) = &conn.api_key {
        headers.push(("x-api-key".into(), key.expose().to_string()));
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
        protocol: Protocol::Anthropic,
        model: t.model,
    })
}

fn finish_reason(stop: &str) -> String {
    match stop {
        "end_turn" | "stop_sequence" => "stop",
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        other => other,
    }
    .to_string()
}

/// Builds the output from text and OpenAI-shaped tool calls.
fn output(text: String, tool_calls: Vec<Value>, req: &LlmRequest) -> Value {
    if req.api == Api::Chat && req.wants_tools() && !tool_calls.is_empty() {
        json!({"role": "assistant", "content": text, "tool_calls": tool_calls})
    } else {
        Value::String(text)
    }
}

fn tool_call(id: &Value, name: &Value, arguments: String) -> Value {
    json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})
}

/// Parses a non-streamed reply.
pub(crate) fn parse(v: &Value, req: &LlmRequest) -> Result<LlmResponse, String> {
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or("no content array in the reply")?;
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => {
                text.push_str(b.get("text").and_then(Value::as_str).unwrap_or_default())
            }
            Some("tool_use") => {
                let args = b.get("input").cloned().unwrap_or_else(|| json!({}));
                calls.push(tool_call(
                    b.get("id").unwrap_or(&Value::Null),
                    b.get("name").unwrap_or(&Value::Null),
                    args.to_string(),
                ));
            }
            _ => {}
        }
    }
    let u = v.get("usage");
    let n = |k: &str| {
        u.and_then(|u| u.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let (p, c) = (n("input_tokens"), n("output_tokens"));
    Ok(LlmResponse {
        output: output(text, calls, req),
        usage: Usage {
            prompt_tokens: p,
            completion_tokens: c,
            total_tokens: p + c,
        },
        model: v.get("model").and_then(Value::as_str).map(str::to_string),
        finish_reason: v
            .get("stop_reason")
            .and_then(Value::as_str)
            .map(finish_reason),
        retries: 0,
        served_by: None,
        raw: None,
    })
}

/// Assembles a streamed reply from Anthropic's typed events.
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    text: String,
    /// (index, id, name, partial json)
    tools: Vec<(u64, Value, Value, String)>,
    input_tokens: u64,
    output_tokens: u64,
    model: Option<String>,
    stop_reason: Option<String>,
    done: bool,
}

impl StreamState {
    /// Handles one event; `Err` for malformed events or an `error` event.
    pub(crate) fn on_event(
        &mut self,
        ev: &SseEvent,
        on_delta: Option<DeltaFn<'_>>,
        emitted: &mut bool,
    ) -> Result<(), String> {
        let v: Value = serde_json::from_str(ev.data.trim())
            .map_err(|e| format!("stream event is not JSON: {e}"))?;
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or(ev.event.as_str());
        match kind {
            "message_start" => {
                let m = v.get("message");
                self.model = m
                    .and_then(|m| m.get("model"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let u = m.and_then(|m| m.get("usage"));
                let n = |k: &str| u.and_then(|u| u.get(k)).and_then(Value::as_u64);
                self.input_tokens = n("input_tokens").unwrap_or(0);
                self.output_tokens = n("output_tokens").unwrap_or(0);
            }
            "content_block_start" => {
                let b = v.get("content_block");
                if b.and_then(|b| b.get("type")).and_then(Value::as_str) == Some("tool_use") {
                    let idx = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                    let get = |k: &str| b.and_then(|b| b.get(k)).cloned().unwrap_or(Value::Null);
                    self.tools
                        .push((idx, get("id"), get("name"), String::new()));
                }
            }
            "content_block_delta" => {
                let d = v.get("delta");
                match d.and_then(|d| d.get("type")).and_then(Value::as_str) {
                    Some("text_delta") => {
                        let piece = d
                            .and_then(|d| d.get("text"))
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        self.text.push_str(piece);
                        if let (Some(f), false) = (on_delta, piece.is_empty()) {
                            f(piece);
                            *emitted = true;
                        }
                    }
                    Some("input_json_delta") => {
                        let idx = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let piece = d
                            .and_then(|d| d.get("partial_json"))
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        if let Some(t) = self.tools.iter_mut().find(|t| t.0 == idx) {
                            t.3.push_str(piece);
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(s) = v
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str)
                {
                    self.stop_reason = Some(finish_reason(s));
                }
                if let Some(n) = v
                    .get("usage")
                    .and_then(|u| u.get("output_tokens"))
                    .and_then(Value::as_u64)
                {
                    self.output_tokens = n;
                }
            }
            "message_stop" => self.done = true,
            "error" => {
                let msg = v
                    .get("error")
                    .and_then(|e| e.get("message"))
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error");
                return Err(format!("the stream reported an error: {msg}"));
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether `message_stop` arrived.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// The assembled response.
    pub(crate) fn finish(self, req: &LlmRequest) -> LlmResponse {
        let calls = self
            .tools
            .into_iter()
            .map(|(_, id, name, args)| {
                tool_call(&id, &name, if args.is_empty() { "{}".into() } else { args })
            })
            .collect();
        LlmResponse {
            output: output(self.text, calls, req),
            usage: Usage {
                prompt_tokens: self.input_tokens,
                completion_tokens: self.output_tokens,
                total_tokens: self.input_tokens + self.output_tokens,
            },
            model: self.model,
            finish_reason: self.stop_reason,
            retries: 0,
            served_by: None,
            raw: None,
        }
    }
}

/// A message holding images, in the Messages API's shape: text blocks and image blocks
/// (`source` base64 for a `data:` URI, `url` for an http(s) URL). Only user messages may hold
/// images there.
fn anthropic_parts(
    conn: &Connection,
    m: &crate::chat::Message,
    parts: &[crate::chat::ContentPart],
) -> Result<Value, ProviderError> {
    use crate::chat::ContentPart;
    if m.role != "user" {
        return Err(ProviderError::Config {
            connection: conn.name.clone(),
            message: format!(
                "a `{}` message holds an image, and the Anthropic Messages API takes images in user messages only\n  help: move the image (`![image](...)`) under `user:` in the template",
                m.role
            ),
        });
    }
    let mut blocks = Vec::with_capacity(parts.len());
    for p in parts {
        blocks.push(match p {
            ContentPart::Text(t) => json!({"type": "text", "text": t}),
            ContentPart::Image { url, .. } => match url
                .strip_prefix("data:")
                .and_then(|rest| rest.split_once(";base64,"))
            {
                Some((media_type, data)) => json!({"type": "image", "source": {
                    "type": "base64", "media_type": media_type, "data": data,
                }}),
                None => json!({"type": "image", "source": {"type": "url", "url": url}}),
            },
        });
    }
    Ok(json!({"role": "user", "content": blocks}))
}
