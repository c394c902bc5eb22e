//! Counting a chat prompt's tokens as promptflow's `Prompty.estimate_token_count` does
//! (`num_tokens_from_messages` in promptflow-core's `_prompty_utils.py`).
//!
//! promptflow asks tiktoken for the model's encoding and then, for every model but six pinned
//! snapshots and `gpt-3.5-turbo-0301`, falls into its `elif "gpt-3.5-turbo" in model or
//! "gpt-35-turbo":` branch — always true — and counts again as `gpt-3.5-turbo-0613`. So the count
//! is always made with `cl100k_base`: 3 tokens per message, each string value's tokens (the role
//! included), 1 per `name`, each text part's tokens, and 3 for the reply's priming;
//! `gpt-3.5-turbo-0301` counts 4 per message and -1 per `name`. The encoding is tiktoken's own
//! BPE (the `tiktoken-rs` crate vendors tiktoken's Rust core and ships `cl100k_base.tiktoken`,
//! so nothing is downloaded at run time as Python's tiktoken does).

use serde_json::Value;

/// Why a prompt's tokens could not be counted as promptflow counts them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenCountError {
    /// A text holds a special token, which tiktoken's `encode` refuses by default.
    #[error(
        "Encountered text corresponding to disallowed special token {0:?}. tiktoken (and so promptflow's estimate_token_count) refuses special tokens in a prompt"
    )]
    SpecialToken(String),
    /// An image part: promptflow sizes it with PIL, which flow does not do.
    #[error(
        "the prompt holds an image: flow's estimate_token_count counts text only (promptflow sizes images with PIL)"
    )]
    Image,
    /// A message that is not an object, or a text part without its text.
    #[error("message {0} is not a chat message as promptflow counts them")]
    Malformed(usize),
}

/// cl100k_base's special tokens (tiktoken refuses them in text by default).
const SPECIAL_TOKENS: &[&str] = &[
    "<|endoftext|>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|endofprompt|>",
];

fn encoded_len(text: &str) -> Result<i64, TokenCountError> {
    if let Some(special) = SPECIAL_TOKENS.iter().find(|s| text.contains(**s)) {
        return Err(TokenCountError::SpecialToken((*special).to_string()));
    }
    let bpe = tiktoken_rs::cl100k_base_singleton();
    Ok(bpe.encode_ordinary(text).len() as i64)
}

/// The tokens of chat `messages` (promptflow's message dicts: `role`, `content` as text or
/// parts, `name`, ...) for `model`, as promptflow's `num_tokens_from_messages` counts them.
pub fn chat_tokens(messages: &[Value], model: Option<&str>) -> Result<u64, TokenCountError> {
    let (per_message, per_name): (i64, i64) = if model == Some("gpt-3.5-turbo-0301") {
        (4, -1)
    } else {
        (3, 1)
    };
    let mut total: i64 = 0;
    for (i, message) in messages.iter().enumerate() {
        let Value::Object(fields) = message else {
            return Err(TokenCountError::Malformed(i));
        };
        total += per_message;
        for (key, value) in fields {
            match value {
                Value::String(s) => total += encoded_len(s)?,
                Value::Array(items) => {
                    for item in items {
                        let kind = item.get("type").and_then(Value::as_str).unwrap_or("text");
                        match kind {
                            "text" => {
                                let text = item
                                    .get("text")
                                    .and_then(Value::as_str)
                                    .ok_or(TokenCountError::Malformed(i))?;
                                total += encoded_len(text)?;
                            }
                            "image_url" => return Err(TokenCountError::Image),
                            // other items (a tool call) are not counted, as in promptflow
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
            if key == "name" {
                total += per_name;
            }
        }
    }
    total += 3;
    Ok(total.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_as_the_openai_cookbook_does() {
        // tiktoken: "hello world" is 2 tokens in cl100k_base
        let m = [json!({"role": "user", "content": "hello world"})];
        // 3 per message + "user" (1) + "hello world" (2) + 3 priming
        assert_eq!(chat_tokens(&m, Some("gpt-4o")), Ok(9));
        // the 0301 snapshot: 4 per message, a name costs -1
        let named = [json!({"role": "user", "name": "bob", "content": "hello world"})];
        assert_eq!(
            chat_tokens(&named, Some("gpt-3.5-turbo-0301")),
            Ok(10 - 1 + 1)
        );
        assert_eq!(chat_tokens(&named, None), Ok(9 + 1 + 1));
    }

    #[test]
    fn parts_images_and_special_tokens() {
        let parts = [json!({"role": "user", "content": [{"type": "text", "text": "hello world"}]})];
        assert_eq!(chat_tokens(&parts, None), Ok(9));
        let image = [
            json!({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}),
        ];
        assert_eq!(chat_tokens(&image, None), Err(TokenCountError::Image));
        let special = [json!({"role": "user", "content": "a <|endoftext|> b"})];
        assert!(matches!(
            chat_tokens(&special, None),
            Err(TokenCountError::SpecialToken(_))
        ));
    }
}
