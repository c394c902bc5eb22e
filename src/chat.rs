//! Chat messages: what a rendered chat prompt becomes and what providers send.

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

/// One part of a message that holds images (promptflow's `to_content_str_or_list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentPart {
    /// A line of text.
    Text(String),
    /// An image: a `data:image/...;base64,...` URI or an http(s) URL, and the detail level.
    Image { url: String, detail: String },
}

impl Serialize for ContentPart {
    /// The OpenAI Chat Completions shape.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        match self {
            ContentPart::Text(t) => {
                map.serialize_entry("type", "text")?;
                map.serialize_entry("text", t)?;
            }
            ContentPart::Image { url, detail } => {
                map.serialize_entry("type", "image_url")?;
                map.serialize_entry(
                    "image_url",
                    &serde_json::json!({"url": url, "detail": detail}),
                )?;
            }
        }
        map.end()
    }
}

/// One chat message, in the shape of the OpenAI Chat Completions API.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant`, `function` or `tool`.
    pub role: String,
    /// The message text (already trimmed). With `parts`, the text parts joined by newlines.
    pub content: String,
    /// The function name for `function` messages (and the optional author name of others).
    #[serde(default)]
    pub name: Option<String>,
    /// The tool call a `tool` message answers.
    #[serde(default)]
    pub tool_call_id: Option<String>,
    /// Tool calls an `assistant` message made (passed through as JSON).
    #[serde(default)]
    pub tool_calls: Option<serde_json::Value>,
    /// Text and image parts, when the message holds an image: sent as `content` instead of the
    /// text.
    #[serde(skip)]
    pub parts: Option<Vec<ContentPart>>,
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("role", &self.role)?;
        match &self.parts {
            Some(parts) => map.serialize_entry("content", parts)?,
            None => map.serialize_entry("content", &self.content)?,
        }
        if let Some(name) = &self.name {
            map.serialize_entry("name", name)?;
        }
        if let Some(id) = &self.tool_call_id {
            map.serialize_entry("tool_call_id", id)?;
        }
        if let Some(calls) = &self.tool_calls {
            map.serialize_entry("tool_calls", calls)?;
        }
        map.end()
    }
}

impl Message {
    /// A message with just a role and text.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message {
            role: role.into(),
            content: content.into(),
            name: None,
            tool_call_id: None,
            tool_calls: None,
            parts: None,
        }
    }
}
