//! Images, as promptflow handles them (`promptflow/_utils/multimedia_utils.py`).
//!
//! An image value is promptflow's one-key "multimedia dict": `{"data:image/<mime>;path": P}`,
//! `{"data:image/<mime>;url": U}` or `{"data:image/<mime>;base64": B}`. A flow input of type
//! `image` may also be a plain string: a `data:image/...;base64,` URI or bare base64, an
//! `http(s)://` URL, or a file path (relative to the flow folder, as promptflow opens it from its
//! working directory).
//!
//! While a line runs every image is held in memory as a `;base64` dict (or a `;url` dict: a URL
//! is passed on as a URL, as promptflow passes its `source_url`). Run records hold `;path` dicts
//! instead: [`persist`] writes the bytes to a file and refers to it.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use regex::Regex;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// promptflow's `MIME_PATTERN`: `data:image/<type>;<path|base64|url>`.
static MIME_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^data:image/(.*);(path|base64|url)$")
        .unwrap_or_else(|e| unreachable!("constant regex is valid: {e}"))
});

/// promptflow's base64 check (`ImageProcessor.is_base64`).
static BASE64: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([A-Za-z0-9+/]{4})*(([A-Za-z0-9+/]{2})*(==|[A-Za-z0-9+/]=)?)?$")
        .unwrap_or_else(|e| unreachable!("constant regex is valid: {e}"))
});

/// Why a value is not an image `flow` can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}\n  help: {help}")]
pub struct ImageError {
    pub message: String,
    pub help: String,
}

fn err(message: impl Into<String>, help: impl Into<String>) -> ImageError {
    ImageError {
        message: message.into(),
        help: help.into(),
    }
}

const FORMS: &str = "give a file path, an http(s) URL, base64 (optionally as a data:image/png;base64,... URI), or {\"data:image/png;path\": \"FILE\"} (;url, ;base64)";

/// Where an image comes from, after loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The bytes are here.
    Bytes(Vec<u8>),
    /// A URL, passed on as it is.
    Url(String),
}

/// A loaded image: its MIME type (`image/png`) and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub mime: String,
    pub source: Source,
}

impl Image {
    /// The in-memory value: a `;base64` or `;url` dict.
    pub fn to_value(&self) -> Value {
        let (kind, data) = match &self.source {
            Source::Bytes(b) => ("base64", STANDARD.encode(b)),
            Source::Url(u) => ("url", u.clone()),
        };
        let mut m = Map::new();
        m.insert(format!("data:{};{kind}", self.mime), Value::String(data));
        Value::Object(m)
    }

    /// What a chat request carries: a `data:` URI with the base64 bytes, or the URL.
    pub fn url(&self) -> String {
        match &self.source {
            Source::Bytes(b) => format!("data:{};base64,{}", self.mime, STANDARD.encode(b)),
            Source::Url(u) => u.clone(),
        }
    }

    /// promptflow's `str(image)`: `Image(<sha1 of the bytes, 8 hex digits>)` (of the URL when
    /// the bytes are not here). Lines of a rendered chat prompt that are exactly this string
    /// become image parts.
    pub fn marker(&self) -> String {
        let hex = match &self.source {
            Source::Bytes(b) => sha1_hex(b),
            Source::Url(u) => sha1_hex(u.as_bytes()),
        };
        format!("Image({})", &hex[..8])
    }

    /// The in-memory image a value holds: a `;base64` or `;url` dict (what [`load`] makes and
    /// Python tools return). `None` for anything else.
    pub fn from_value(v: &Value) -> Option<Image> {
        let (sub, kind, data) = dict_parts(v)?;
        let data = data.as_str()?;
        let mime = format!("image/{sub}");
        match kind {
            "base64" => Some(Image {
                mime,
                source: Source::Bytes(STANDARD.decode(data.split(',').next_back()?).ok()?),
            }),
            "url" => Some(Image {
                mime,
                source: Source::Url(data.to_string()),
            }),
            _ => None,
        }
    }
}

/// SHA-1 as hex: promptflow's `Image.__str__` is `Image(<sha1[:8]>)`.
pub fn sha1_hex(data: &[u8]) -> String {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bits = (data.len() as u64) * 8;
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                block[4 * i],
                block[4 * i + 1],
                block[4 * i + 2],
                block[4 * i + 3],
            ]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6u32),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}

/// `(mime subtype, path|base64|url, value)` of a one-key multimedia dict.
pub fn dict_parts(v: &Value) -> Option<(&str, &str, &Value)> {
    let m = v.as_object()?;
    if m.len() != 1 {
        return None;
    }
    let (k, v) = m.iter().next()?;
    let caps = MIME_KEY.captures(k)?;
    let sub = caps.get(1)?.as_str();
    let kind = caps.get(2)?.as_str();
    Some((sub, kind, v))
}

/// Whether `v` is a multimedia dict.
pub fn is_image_dict(v: &Value) -> bool {
    dict_parts(v).is_some()
}

/// The MIME type of image bytes, by their signature; `None` when they are not an image.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    let starts = |sig: &[u8]| bytes.starts_with(sig);
    if starts(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if starts(b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if starts(b"GIF87a") || starts(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && starts(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else if starts(b"BM") && bytes.len() > 14 {
        Some("image/bmp")
    } else if starts(b"II*\0") || starts(b"MM\0*") {
        Some("image/tiff")
    } else if starts(b"\0\0\x01\0") {
        Some("image/x-icon")
    } else {
        None
    }
}

fn is_url(s: &str) -> bool {
    match s.split_once("://") {
        Some((scheme, rest)) => {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
                && !rest.is_empty()
                && !rest.starts_with('/')
        }
        None => false,
    }
}

fn is_base64(s: &str) -> bool {
    let parts: Vec<&str> = s.split(',').collect();
    match parts.as_slice() {
        [prefix, data] => {
            prefix.starts_with("data:image/")
                && prefix.ends_with(";base64")
                && BASE64.is_match(data)
        }
        [only] => BASE64.is_match(only),
        _ => false,
    }
}

fn from_bytes(bytes: Vec<u8>, declared: Option<String>, what: &str) -> Result<Image, ImageError> {
    let Some(sniffed) = sniff(&bytes) else {
        return Err(err(
            format!("{what} is not an image (not PNG, JPEG, GIF, WebP, BMP, TIFF or ICO)"),
            FORMS,
        ));
    };
    let mime = match declared {
        Some(m) if m != "image/*" => m.to_ascii_lowercase(),
        _ => sniffed.to_string(),
    };
    Ok(Image {
        mime,
        source: Source::Bytes(bytes),
    })
}

fn from_file(path: &Path, declared: Option<String>) -> Result<Image, ImageError> {
    let bytes = std::fs::read(path).map_err(|e| {
        err(
            format!("cannot read the image file {}: {e}", path.display()),
            "check the path: a plain path is relative to the flow folder, a {\"data:image/png;path\": ...} in a dataset to the dataset's folder",
        )
    })?;
    from_bytes(bytes, declared, &format!("the file {}", path.display()))
}

fn from_base64(data: &str, declared: Option<String>) -> Result<Image, ImageError> {
    let payload = data.rsplit(',').next().unwrap_or(data);
    let bytes = STANDARD
        .decode(payload.trim())
        .map_err(|e| err(format!("invalid base64 image: {e}"), FORMS))?;
    from_bytes(bytes, declared, "the base64 data")
}

fn from_url(url: &str, declared: Option<String>) -> Result<Image, ImageError> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(err(
            format!("`{url}`: only http(s) image URLs are supported"),
            FORMS,
        ));
    }
    Ok(Image {
        mime: declared.unwrap_or_else(|| guess_from_name(url).to_string()),
        source: Source::Url(url.to_string()),
    })
}

fn guess_from_name(name: &str) -> &'static str {
    let lower = name.to_ascii_lowercase();
    let path = lower.split(['?', '#']).next().unwrap_or(&lower);
    match path.rsplit('.').next() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        _ => "image/*",
    }
}

/// Load an image value as promptflow's `create_image` does. Relative paths are taken under
/// `base` (the flow folder).
pub fn load(v: &Value, base: &Path) -> Result<Image, ImageError> {
    match v {
        Value::Object(_) => {
            let Some((sub, kind, data)) = dict_parts(v) else {
                return Err(err(
                    "an image dictionary must be one key like {\"data:image/png;path\": ...}",
                    FORMS,
                ));
            };
            let Some(data) = data.as_str() else {
                return Err(err(
                    format!("the value of `data:image/{sub};{kind}` must be a string"),
                    FORMS,
                ));
            };
            let declared = Some(format!("image/{sub}"));
            match kind {
                "path" => from_file(&base.join(data), declared),
                "base64" => {
                    if !is_base64(data) {
                        return Err(err(
                            format!("invalid base64 image: {}", shorten(data)),
                            FORMS,
                        ));
                    }
                    from_base64(data, declared)
                }
                _ => from_url(data, declared),
            }
        }
        Value::String(s) if s.is_empty() => Err(err("the image input should not be empty", FORMS)),
        Value::String(s) => {
            if is_base64(s) {
                let declared = s
                    .strip_prefix("data:")
                    .and_then(|r| r.split(';').next())
                    .map(str::to_string);
                from_base64(s, declared)
            } else if is_url(s) {
                from_url(s, None)
            } else {
                from_file(&base.join(s), None)
            }
        }
        other => Err(err(
            format!(
                "an image must be a string or a dictionary, not {}",
                crate::model::reference::type_name(other)
            ),
            FORMS,
        )),
    }
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 40 {
        let cut: String = s.chars().take(37).collect();
        format!("{cut}...")
    } else {
        s.to_string()
    }
}

/// Load the multimedia dicts inside a list or object input (promptflow's
/// `load_multimedia_data_recursively`): each becomes its in-memory value.
pub fn load_nested(v: &Value, base: &Path) -> Result<Value, ImageError> {
    Ok(match v {
        Value::Object(_) if is_image_dict(v) => load(v, base)?.to_value(),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), load_nested(x, base)?)))
                .collect::<Result<_, ImageError>>()?,
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| load_nested(x, base))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}

/// promptflow's `resolve_multimedia_data_recursively`: the `;path` of every multimedia dict in
/// a dataset row is taken relative to the dataset's folder.
pub fn resolve_paths(v: &mut Value, dir: &Path) {
    match v {
        Value::Object(m) => {
            let single = m.len() == 1;
            if let Some((k, Value::String(p))) = m.iter_mut().next()
                && single
                && k.ends_with(";path")
                && MIME_KEY.is_match(k)
            {
                *p = dir.join(&*p).to_string_lossy().into_owned();
                return;
            }
            for x in m.values_mut() {
                resolve_paths(x, dir);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| resolve_paths(x, dir)),
        _ => {}
    }
}

/// Replace every in-memory image (`;base64` dict) inside `v` by a `;path` dict: the bytes are
/// written to `dir/sub/<hash>.<ext>` (once: the name is the content's hash) and the path is
/// `sub/<hash>.<ext>`, relative to `dir`. `;url` and `;path` dicts stay as they are.
pub fn persist(v: &mut Value, dir: &Path, sub: &str) -> std::io::Result<()> {
    match v {
        Value::Object(m) => {
            let value = Value::Object(std::mem::take(m));
            let image = match dict_parts(&value) {
                Some((mime_sub, "base64", _)) => {
                    Image::from_value(&value).map(|img| (mime_sub.to_string(), img))
                }
                _ => None,
            };
            let Value::Object(inner) = value else {
                return Ok(());
            };
            *m = inner;
            if let Some((
                mime_sub,
                Image {
                    source: Source::Bytes(bytes),
                    ..
                },
            )) = image
            {
                let ext = match mime_sub.as_str() {
                    "*" | "" => sniff(&bytes)
                        .and_then(|m| m.strip_prefix("image/"))
                        .unwrap_or("bin")
                        .to_string(),
                    "jpeg" => "jpg".to_string(),
                    s => s.chars().filter(|c| c.is_ascii_alphanumeric()).collect(),
                };
                let hex: String = Sha256::digest(&bytes)
                    .iter()
                    .take(8)
                    .map(|b| format!("{b:02x}"))
                    .collect();
                let name = format!("{hex}.{ext}");
                let folder = dir.join(sub);
                let file: PathBuf = folder.join(&name);
                if !file.is_file() {
                    std::fs::create_dir_all(&folder)?;
                    let tmp = folder.join(format!(".{name}.tmp"));
                    std::fs::write(&tmp, &bytes)?;
                    std::fs::rename(&tmp, &file)?;
                }
                let mut out = Map::new();
                out.insert(
                    format!("data:image/{mime_sub};path"),
                    Value::String(format!("{sub}/{name}")),
                );
                *m = out;
                return Ok(());
            }
            for x in m.values_mut() {
                persist(x, dir, sub)?;
            }
        }
        Value::Array(a) => {
            for x in a {
                persist(x, dir, sub)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Whether an input value of type `ty` names a file (a plain path for an `image` input, a
/// `;path` dict anywhere in an image, list or object input): what a served flow refuses.
pub fn names_a_file(ty: &crate::model::ValueType, v: &Value) -> bool {
    use crate::model::ValueType;
    fn has_path_dict(v: &Value) -> bool {
        match v {
            Value::Object(m) => {
                matches!(dict_parts(v), Some((_, "path", _))) || m.values().any(has_path_dict)
            }
            Value::Array(a) => a.iter().any(has_path_dict),
            _ => false,
        }
    }
    match (ty, v) {
        (ValueType::Image, Value::String(s)) => !s.is_empty() && !is_base64(s) && !is_url(s),
        (ValueType::Image | ValueType::List | ValueType::Object, _) => has_path_dict(v),
        _ => false,
    }
}

/// Whether `v` holds an in-memory image anywhere.
pub fn contains_image(v: &Value) -> bool {
    match v {
        Value::Object(m) => is_image_dict(v) || m.values().any(contains_image),
        Value::Array(a) => a.iter().any(contains_image),
        _ => false,
    }
}

/// Replace every in-memory image inside the values by its [`Image::marker`] (`Image(1a2b3c4d)`,
/// what promptflow's templates print for an image), returning the images by marker.
pub fn to_markers(vars: &mut Map<String, Value>) -> std::collections::HashMap<String, Image> {
    fn walk(v: &mut Value, out: &mut std::collections::HashMap<String, Image>) {
        if let Some(img) = Image::from_value(v) {
            let marker = img.marker();
            *v = Value::String(marker.clone());
            out.insert(marker, img);
            return;
        }
        match v {
            Value::Object(m) => m.values_mut().for_each(|x| walk(x, out)),
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = std::collections::HashMap::new();
    for v in vars.values_mut() {
        walk(v, &mut out);
    }
    out
}

/// A rendered chat prompt as the messages a model is sent — the one implementation behind `llm`
/// nodes, `.prompty` files, package chat tools, `custom_llm` vision nodes and chat calls from
/// Python: `![image](MARKER)` unwrapped (when `markdown`), roles parsed, and each message holding
/// an image's marker line made content parts with `detail`.
pub fn chat_messages(
    text: &str,
    images: &std::collections::HashMap<String, Image>,
    detail: &str,
    markdown: bool,
) -> Result<Vec<crate::chat::Message>, crate::template::TemplateError> {
    let text = if images.is_empty() || !markdown {
        std::borrow::Cow::Borrowed(text)
    } else {
        std::borrow::Cow::Owned(unwrap_markdown(text, images))
    };
    let mut messages = crate::template::parse_chat(&text)?;
    attach(&mut messages, images, detail);
    Ok(messages)
}

/// promptflow's `preprocess_template_string`, applied to the rendered text: `![image](MARKER)`
/// puts the image on a line of its own.
pub fn unwrap_markdown(text: &str, images: &std::collections::HashMap<String, Image>) -> String {
    static MD: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"!\[\s*image\s*\]\(\s*(Image\([0-9a-f]{8}\))\s*\)")
            .unwrap_or_else(|e| unreachable!("constant regex is valid: {e}"))
    });
    MD.replace_all(text, |c: &regex::Captures<'_>| {
        let marker = c.get(1).map_or("", |m| m.as_str());
        if images.contains_key(marker) {
            format!("\n{marker}\n")
        } else {
            c.get(0).map_or("", |m| m.as_str()).to_string()
        }
    })
    .into_owned()
}

/// promptflow's `to_content_str_or_list`: a message with a line that is exactly an image's
/// marker becomes parts — each non-blank line a text part (as written), each marker line the
/// image.
pub fn attach(
    messages: &mut [crate::chat::Message],
    images: &std::collections::HashMap<String, Image>,
    detail: &str,
) {
    use crate::chat::ContentPart;
    if images.is_empty() {
        return;
    }
    for m in messages {
        if !m.content.lines().any(|l| images.contains_key(l.trim())) {
            continue;
        }
        let mut parts = Vec::new();
        let mut texts = Vec::new();
        for line in m.content.split('\n') {
            if let Some(img) = images.get(line.trim()) {
                parts.push(ContentPart::Image {
                    url: img.url(),
                    detail: detail.to_string(),
                });
            } else if !line.trim().is_empty() {
                parts.push(ContentPart::Text(line.to_string()));
                texts.push(line);
            }
        }
        m.content = texts.join("\n");
        m.parts = Some(parts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    #[test]
    fn forms_load() {
        let dir = std::env::temp_dir().join(format!("flow-image-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        std::fs::write(dir.join("a.png"), PNG).ok();
        let b64 = STANDARD.encode(PNG);
        for v in [
            json!("a.png"),
            json!({"data:image/png;path": "a.png"}),
            json!(b64.clone()),
            json!(format!("data:image/png;base64,{b64}")),
            json!({"data:image/png;base64": b64.clone()}),
        ] {
            let img = load(&v, &dir).unwrap_or_else(|e| panic!("{v}: {e}"));
            assert_eq!(img.mime, "image/png");
            assert_eq!(img.source, Source::Bytes(PNG.to_vec()));
        }
        let url = load(&json!("https://example.com/cat.jpg"), &dir);
        assert!(
            matches!(url, Ok(Image { ref mime, source: Source::Url(_) }) if mime == "image/jpeg")
        );
        assert!(load(&json!("missing.png"), &dir).is_err());
        std::fs::write(dir.join("t.txt"), "hello").ok();
        let e = load(&json!("t.txt"), &dir).err().map(|e| e.message);
        assert!(e.is_some_and(|m| m.contains("is not an image")));
        assert!(load(&json!({"a": 1}), &dir).is_err());
        assert!(load(&json!(3), &dir).is_err());
    }

    #[test]
    fn persist_writes_once_and_refers() {
        let dir = std::env::temp_dir().join(format!("flow-image-p-{}", std::process::id()));
        let img = Image {
            mime: "image/png".into(),
            source: Source::Bytes(PNG.to_vec()),
        };
        let mut v =
            json!({"out": [img.to_value()], "u": {"data:image/png;url": "https://x/y.png"}});
        persist(&mut v, &dir, "images").unwrap_or_else(|e| panic!("{e}"));
        let path = v["out"][0]["data:image/png;path"]
            .as_str()
            .unwrap_or_default();
        assert!(path.starts_with("images/") && path.ends_with(".png"), "{v}");
        assert_eq!(std::fs::read(dir.join(path)).ok().as_deref(), Some(PNG));
        assert_eq!(v["u"], json!({"data:image/png;url": "https://x/y.png"}));
    }
}
