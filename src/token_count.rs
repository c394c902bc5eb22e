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
    /// An image part flow cannot size: given by URL (promptflow downloads it to size it), or
    /// bytes whose size cannot be read.
    #[error(
        "the prompt holds an image {0}: flow's estimate_token_count sizes images sent inline (PNG, GIF, JPEG, WebP, BMP), where promptflow downloads and opens any with PIL"
    )]
    Image(&'static str),
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
                            "image_url" => {
                                let url = item
                                    .get("image_url")
                                    .and_then(|u| u.get("url"))
                                    .and_then(Value::as_str)
                                    .ok_or(TokenCountError::Malformed(i))?;
                                total += image_part_tokens(url)?;
                            }
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

/// An image part's tokens, as promptflow counts them: an inline (base64) image by its size
/// (`_num_tokens_for_image`), a URL would be downloaded (not done here), anything else as text.
fn image_part_tokens(url: &str) -> Result<i64, TokenCountError> {
    use base64::Engine as _;
    if let Some(payload) = url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"))
        .map(|(_, payload)| payload)
    {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(payload.trim())
            .map_err(|_| TokenCountError::Image("whose base64 does not decode"))?;
        let (w, h) = crate::image::dimensions(&bytes)
            .ok_or(TokenCountError::Image("whose size cannot be read"))?;
        return Ok(image_tokens(w, h));
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        return Err(TokenCountError::Image("given by URL"));
    }
    encoded_len(url)
}

/// OpenAI's vision cost of a `w`×`h` image at high detail, as promptflow computes it: scaled
/// to fit 2048×2048, then its short side to 768, then 170 per 512-pixel tile plus 85.
pub fn image_tokens(w: u32, h: u32) -> i64 {
    let (mut width, mut height) = (f64::from(w), f64::from(h));
    if width > 2048.0 || height > 2048.0 {
        let aspect = width / height;
        if aspect > 1.0 {
            (width, height) = (2048.0, (2048.0 / aspect).trunc());
        } else {
            (width, height) = ((2048.0 * aspect).trunc(), 2048.0);
        }
    }
    if width >= height && height > 768.0 {
        (width, height) = ((768.0 / height * width).trunc(), 768.0);
    } else if height > width && width > 768.0 {
        (width, height) = (768.0, (768.0 / width * height).trunc());
    }
    let tiles = (width / 512.0).ceil() * (height / 512.0).ceil();
    85 + 170 * tiles as i64
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
        assert_eq!(
            chat_tokens(&image, None),
            Err(TokenCountError::Image("whose size cannot be read"))
        );
        let by_url = [
            json!({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}),
        ];
        assert_eq!(
            chat_tokens(&by_url, None),
            Err(TokenCountError::Image("given by URL"))
        );
        let special = [json!({"role": "user", "content": "a <|endoftext|> b"})];
        assert!(matches!(
            chat_tokens(&special, None),
            Err(TokenCountError::SpecialToken(_))
        ));
    }

    #[test]
    fn images_cost_what_openais_vision_pricing_says() {
        // OpenAI's documented examples: 1024x1024 → 765, 2048x4096 → 1105; a tiny one → 255
        assert_eq!(image_tokens(1024, 1024), 765);
        assert_eq!(image_tokens(2048, 4096), 1105);
        assert_eq!(image_tokens(1, 1), 255);
        assert_eq!(image_tokens(4096, 2048), 1105);
    }
}
