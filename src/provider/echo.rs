//! The offline `echo` provider: no network, a reply that is a deterministic function of the
//! request and says plainly that no model wrote it.

use serde_json::{Value, json};

use super::{Api, DeltaFn, LlmRequest, LlmResponse, Usage};

/// The prefix of every echo reply.
pub const ECHO_PREFIX: &str = "[echo: offline, no model was called]";

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// Answers `req` without a model: the prefix followed by the last user message (or the prompt).
/// Usage counts words, so budgets and reports see numbers. Never fails.
pub(crate) fn complete(req: &LlmRequest, on_delta: Option<DeltaFn<'_>>) -> LlmResponse {
    let (input, prompt_tokens) = match req.api {
        Api::Chat => {
            let last = req
                .messages
                .iter()
                .rev()
                .find(|m| m.role == "user")
                .or(req.messages.last())
                .map_or("", |m| m.content.as_str());
            (last, req.messages.iter().map(|m| words(&m.content)).sum())
        }
        Api::Completion => {
            let p = req.prompt.as_deref().unwrap_or_default();
            (p, words(p))
        }
    };
    let text = if input.is_empty() {
        ECHO_PREFIX.to_string()
    } else {
        format!("{ECHO_PREFIX} {input}")
    };
    if req.stream {
        if let Some(f) = on_delta {
            f(&text);
        }
    }
    let completion_tokens = words(&text);
    let usage = Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
    };
    LlmResponse {
        raw: req.full_response.then(|| whole_reply(req, &text, usage)),
        usage,
        output: Value::String(text),
        model: Some("echo".to_string()),
        finish_reason: Some("stop".to_string()),
        retries: 0,
        served_by: None,
    }
}

/// The echo reply as a whole OpenAI-shaped response (for `model.response: all`): `n` choices
/// (default 1), each the echo text, model `echo`, `created` 0 — nothing in it claims a model.
fn whole_reply(req: &LlmRequest, text: &str, usage: Usage) -> Value {
    let n = req
        .params
        .get("n")
        .and_then(Value::as_u64)
        .filter(|n| (1..=128).contains(n))
        .unwrap_or(1);
    let choices: Vec<Value> = (0..n)
        .map(|i| match req.api {
            Api::Chat => json!({
                "index": i,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": text},
            }),
            Api::Completion => json!({
                "index": i,
                "finish_reason": "stop",
                "text": text,
                "logprobs": null,
            }),
        })
        .collect();
    json!({
        "id": "echo",
        "object": match req.api {
            Api::Chat => "chat.completion",
            Api::Completion => "text_completion",
        },
        "created": 0,
        "model": "echo",
        "choices": choices,
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        },
    })
}
