//! Splitting a rendered chat prompt into messages, as promptflow's `parse_chat` does.

use std::sync::LazyLock;

use regex::Regex;

use super::TemplateError;
use super::escape::{ROLE_LINE, unescape_cow};
use super::pyliteral::literal_eval;
use crate::chat::Message;

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|e| unreachable!("constant regex is valid: {e}"))
}

/// `name:` / `content:` sub-sections (optionally `##`-prefixed), as promptflow's
/// `try_parse_name_and_content`.
static NAME_CONTENT: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?s)\n*#{0,2}\s*name\s*:\s*\n+\s*(\S+)\s*\n*#{0,2}\s*content\s*:\s*\n?(.*)")
});

/// `tool_call_id:` / `content:` sub-sections of a `tool` message.
static TOOL_CALL_ID_CONTENT: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?s)\n*#{0,2}\s*tool_call_id\s*:\s*\n+\s*(\S+)\s*\n*#{0,2}\s*content\s*:\s*\n?(.*)")
});

/// A `tool_calls:` section of an `assistant` message holding a list literal.
static TOOL_CALLS: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?s)\n*#{0,2}\s*tool_calls\s*:\s*\n+\s*(\[.*?\])"));

/// Splits rendered chat text into messages.
///
/// A line matching `^\s*#?\s*(system|user|assistant|function|tool)\s*:\s*$` (any case) starts a
/// message whose role is the lowercased word; its content is the text up to the next such line,
/// trimmed. Messages with blank content are dropped (unless they carry tool calls or answer a
/// function/tool). Non-blank text before the first role line is an error. Role markers escaped by
/// the injection guard are not markers; the escape is removed from the returned texts.
pub fn parse_chat(text: &str) -> Result<Vec<Message>, TemplateError> {
    let mut messages = Vec::new();
    let mut pending: Option<String> = None;
    let mut last_end = 0;
    for caps in ROLE_LINE.captures_iter(text) {
        let (Some(whole), Some(role)) = (caps.get(0), caps.get(1)) else {
            continue;
        };
        let chunk = &text[last_end..whole.start()];
        match pending.take() {
            Some(role) => push_message(&mut messages, role, chunk)?,
            None => check_preamble(chunk)?,
        }
        pending = Some(role.as_str().to_ascii_lowercase());
        last_end = whole.end();
    }
    let rest = &text[last_end..];
    match pending {
        Some(role) => push_message(&mut messages, role, rest)?,
        None => check_preamble(rest)?,
    }
    Ok(messages)
}

fn check_preamble(chunk: &str) -> Result<(), TemplateError> {
    let trimmed = chunk.trim();
    if trimmed.is_empty() {
        return Ok(());
    }
    Err(TemplateError::TextBeforeFirstRole {
        text: shorten(&unescape_cow(trimmed), 80),
    })
}

/// The first `max` characters of `s` on one line, with `...` when cut.
pub(crate) fn shorten(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max).collect();
    cut.push_str("...");
    cut
}

fn text_of(s: &str) -> String {
    unescape_cow(s.trim()).into_owned()
}

fn push_message(out: &mut Vec<Message>, role: String, chunk: &str) -> Result<(), TemplateError> {
    let mut msg = Message::new(role, String::new());
    match msg.role.as_str() {
        "tool" => {
            let caps = TOOL_CALL_ID_CONTENT.captures(chunk).ok_or_else(|| {
                TemplateError::ToolMessageFormat {
                    text: shorten(&text_of(chunk), 80),
                }
            })?;
            msg.tool_call_id = caps.get(1).map(|m| text_of(m.as_str()));
            msg.content = caps.get(2).map(|m| text_of(m.as_str())).unwrap_or_default();
            out.push(msg);
            return Ok(());
        }
        "assistant" => {
            if let Some(list) = TOOL_CALLS.captures(chunk).and_then(|c| c.get(1)) {
                if let Some(calls) = literal_eval(&unescape_cow(list.as_str())) {
                    msg.tool_calls = Some(calls);
                    out.push(msg);
                    return Ok(());
                }
            }
        }
        _ => {}
    }
    if let Some(caps) = NAME_CONTENT.captures(chunk) {
        msg.name = caps.get(1).map(|m| text_of(m.as_str()));
        msg.content = caps.get(2).map(|m| text_of(m.as_str())).unwrap_or_default();
    } else if msg.role == "function" {
        return Err(TemplateError::FunctionMessageFormat {
            text: shorten(&text_of(chunk), 80),
        });
    } else {
        msg.content = text_of(chunk);
    }
    if !msg.content.is_empty() || msg.role == "function" {
        out.push(msg);
    }
    Ok(())
}
