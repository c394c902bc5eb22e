//! NaN and the infinities, kept as promptflow keeps them.
//!
//! Python code returns and logs `float("nan")`, `inf` and `-inf` (an evaluation scoring a reply
//! it cannot parse, a mean of nothing), and promptflow writes them into its JSON files as
//! Python's `json` does: the bare tokens `NaN`, `Infinity` and `-Infinity`. JSON has no such
//! numbers, and neither has `serde_json::Value`, so inside `flow` a non-finite number is a
//! *marker*: a string that cannot come from JSON text by accident (it starts with a NUL
//! character), `"\u{0}flow:NaN"`, `"\u{0}flow:Infinity"` or `"\u{0}flow:-Infinity"`.
//!
//! - Python workers send non-finite floats as markers and turn markers they receive back into
//!   floats, so a downstream node sees `nan` as promptflow's would.
//! - Everything `flow` writes as JSON goes through [`restore`] (or [`to_vec_pretty`],
//!   [`to_string`]), which writes markers as the bare tokens: outputs.jsonl, the line and node
//!   records, metrics.json, flow.detail.json, `flow serve` answers.
//! - Everything `flow` reads that promptflow or `flow` may have written with such tokens goes
//!   through [`from_slice`] / [`from_str`], which read the tokens back as markers.
//! - Templates see the number ([`Jinja`]), gates and reports read it with [`as_f64`] (a gate
//!   never passes on NaN), and text shows it as `NaN`, `Infinity` or `-Infinity` ([`name`]).

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};
use serde_json::Value;

const PREFIX: &str = "\u{0}flow:";
/// How a marker looks once serialised by `serde_json` (the NUL escaped), up to its name.
const ESCAPED_PREFIX: &[u8] = ESCAPED_MARKER_TEXT.as_bytes();
const ESCAPED_MARKER_TEXT: &str = "\"\\u0000flow:";

/// The names promptflow (Python's `json`) writes, which are also the markers' suffixes.
const NAMES: [&str; 3] = ["NaN", "Infinity", "-Infinity"];

/// `x` as a JSON value: a number when finite, else its marker.
pub fn number(x: f64) -> Value {
    match serde_json::Number::from_f64(x) {
        Some(n) => Value::Number(n),
        None => Value::String(format!("{PREFIX}{}", name_of(x))),
    }
}

/// The non-finite number a marker stands for (`None` for any other value).
pub fn marker(value: &Value) -> Option<f64> {
    let Value::String(s) = value else {
        return None;
    };
    match s.strip_prefix(PREFIX)? {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// A number's value, markers included (`None` for anything that is not a number).
pub fn as_f64(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        other => marker(other),
    }
}

/// How promptflow writes a non-finite value: `NaN`, `Infinity` or `-Infinity` (`None` for any
/// value that is not a marker).
pub fn name(value: &Value) -> Option<&'static str> {
    marker(value).map(name_of)
}

fn name_of(x: f64) -> &'static str {
    if x.is_nan() {
        NAMES[0]
    } else if x > 0.0 {
        NAMES[1]
    } else {
        NAMES[2]
    }
}

/// Rewrite the markers serialised in `json[from..]` as promptflow's bare tokens.
pub fn restore(json: &mut Vec<u8>, from: usize) {
    let Some(first) = find(&json[from..], ESCAPED_PREFIX) else {
        return;
    };
    let mut out = Vec::with_capacity(json.len());
    out.extend_from_slice(&json[..from + first]);
    let mut rest = &json[from + first..];
    while let Some(at) = find(rest, ESCAPED_PREFIX) {
        out.extend_from_slice(&rest[..at]);
        let tail = &rest[at + ESCAPED_PREFIX.len()..];
        match NAMES
            .iter()
            .find(|n| tail.starts_with(n.as_bytes()) && tail.get(n.len()) == Some(&b'"'))
        {
            Some(n) => {
                out.extend_from_slice(n.as_bytes());
                rest = &tail[n.len() + 1..];
            }
            None => {
                // A string that merely starts like a marker: kept as it is.
                out.extend_from_slice(&rest[at..at + ESCAPED_PREFIX.len()]);
                rest = tail;
            }
        }
    }
    out.extend_from_slice(rest);
    *json = out;
}

/// `value` as compact JSON text for JavaScript's `JSON.parse`, which has no NaN either: markers
/// become the strings `"NaN"`, `"Infinity"`, `"-Infinity"`, as promptflow's visualisation
/// reads them (`parse_const_as_str`).
pub fn to_string_for_javascript<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let text = serde_json::to_string(value)?;
    if !text.contains(ESCAPED_MARKER_TEXT) {
        return Ok(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find(ESCAPED_MARKER_TEXT) {
        out.push_str(&rest[..at]);
        let tail = &rest[at + ESCAPED_MARKER_TEXT.len()..];
        match NAMES.iter().find(|n| tail.starts_with(&format!("{n}\""))) {
            Some(_) => {
                out.push('"');
                rest = tail;
            }
            None => {
                out.push_str(ESCAPED_MARKER_TEXT);
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// `value` as compact JSON text, markers written as promptflow's tokens.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let mut bytes = serde_json::to_vec(value)?;
    restore(&mut bytes, 0);
    // `restore` only replaces ASCII with ASCII, so the text stays UTF-8.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `value` as indented JSON, markers written as promptflow's tokens.
pub fn to_vec_pretty<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    restore(&mut bytes, 0);
    Ok(bytes)
}

/// `value` as indented JSON text, markers written as promptflow's tokens.
pub fn to_string_pretty<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let bytes = to_vec_pretty(value)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// An HTTP answer holding `value` as JSON (`application/json`), markers written as promptflow's
/// serving app writes them (`NaN`, `Infinity`, `-Infinity`, as Python's `json` does).
pub fn json_response<T: Serialize + ?Sized>(value: &T) -> axum::response::Response {
    use axum::response::IntoResponse;
    match to_string(value) {
        Ok(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            )],
            text,
        )
            .into_response(),
        Err(e) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("the answer could not be written as JSON: {e}"),
        )
            .into_response(),
    }
}

/// Parse JSON text that may hold promptflow's `NaN`, `Infinity` and `-Infinity` tokens (read as
/// markers). Text without them is parsed as it is; with them, columns in an error message on
/// a line after such a token are off by the markers' extra length.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    serde_json::from_slice(&lenient(bytes))
}

/// [`from_slice`] for text.
pub fn from_str<T: DeserializeOwned>(text: &str) -> serde_json::Result<T> {
    from_slice(text.as_bytes())
}

/// `bytes` with every bare `NaN`, `Infinity` and `-Infinity` outside strings written as its
/// marker (a JSON string), so that `serde_json` reads it.
fn lenient(bytes: &[u8]) -> Cow<'_, [u8]> {
    if find(bytes, b"NaN").is_none() && find(bytes, b"Infinity").is_none() {
        return Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() + 32);
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            out.push(b);
            match b {
                b'\\' => {
                    if let Some(&next) = bytes.get(i + 1) {
                        out.push(next);
                        i += 1;
                    }
                }
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            out.push(b);
            i += 1;
            continue;
        }
        let token = NAMES
            .iter()
            .find(|n| bytes[i..].starts_with(n.as_bytes()) && !is_word(bytes.get(i + n.len())));
        match token {
            Some(n) => {
                out.extend_from_slice(ESCAPED_PREFIX);
                out.extend_from_slice(n.as_bytes());
                out.push(b'"');
                i += n.len();
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

fn is_word(b: Option<&u8>) -> bool {
    b.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

/// A JSON value as templates see it: markers are the numbers they stand for (so `{{ score }}`
/// prints `nan` as promptflow's jinja2 does, and `{% if score > 3 %}` compares a number).
pub struct Jinja<'a>(pub &'a Value);

impl Serialize for Jinja<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        match self.0 {
            Value::String(s) if s.starts_with(PREFIX) => match marker(self.0) {
                Some(x) => serializer.serialize_f64(x),
                None => serializer.serialize_str(s),
            },
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Jinja(item))?;
                }
                seq.end()
            }
            Value::Object(map) => JinjaMap(map).serialize(serializer),
            other => other.serialize(serializer),
        }
    }
}

/// A map of JSON values as templates see them ([`Jinja`] for each value).
pub struct JinjaMap<'a>(pub &'a serde_json::Map<String, Value>);

impl Serialize for JinjaMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, &Jinja(v))?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn markers_are_written_as_promptflows_tokens_and_read_back() {
        let value = json!({
            "nan": number(f64::NAN),
            "inf": [number(f64::INFINITY), number(f64::NEG_INFINITY)],
            "x": 0.5,
            "text": "NaN is Infinity",
        });
        let text = to_string(&value).unwrap();
        assert_eq!(
            text,
            r#"{"nan":NaN,"inf":[Infinity,-Infinity],"x":0.5,"text":"NaN is Infinity"}"#
        );
        let back: Value = from_str(&text).unwrap();
        assert_eq!(back, value);
        assert!(as_f64(&back["nan"]).unwrap().is_nan());
        assert_eq!(as_f64(&back["inf"][1]), Some(f64::NEG_INFINITY));
        assert_eq!(name(&back["inf"][0]), Some("Infinity"));
    }

    #[test]
    fn python_json_text_reads() {
        // What Python's json.dumps writes (and promptflow's outputs.jsonl holds).
        let v: Value =
            from_str(r#"{"a": NaN, "b": [-Infinity, 1], "c": "\"NaN\\", "d": null}"#).unwrap();
        assert_eq!(name(&v["a"]), Some("NaN"));
        assert_eq!(name(&v["b"][0]), Some("-Infinity"));
        assert_eq!(v["c"], json!("\"NaN\\"));
        // A word that merely starts like a token is not one (and stays invalid JSON).
        assert!(from_str::<Value>("[NaNa]").is_err());
    }

    #[test]
    fn strings_that_look_like_markers_are_kept() {
        let value = json!(["\u{0}flow:NaNx", "\u{0}flow:", "plain"]);
        let text = to_string(&value).unwrap();
        assert_eq!(from_str::<Value>(&text).unwrap(), value);
        assert_eq!(marker(&value[0]), None);
    }

    #[test]
    fn templates_see_numbers() {
        let v = json!({"s": number(f64::NAN), "l": [number(f64::INFINITY)]});
        let m = minijinja::Value::from_serialize(Jinja(&v));
        let s = m.get_attr("s").unwrap();
        assert!(s.as_object().is_none());
        assert_eq!(s.kind(), minijinja::value::ValueKind::Number);
    }
}
