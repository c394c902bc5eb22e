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
//!
//! A flow with `message_format: openai-vision` (promptflow's `OpenaiVisionMultimediaProcessor`)
//! takes and records images in OpenAI's shape instead: `{"type": "image_url", "image_url":
//! {"url": URL or data URI}}` and `{"type": "image_file", "image_file": {"path": P}}`. Only the
//! edges change ([`load`], [`persist`], [`resolve_paths`], [`from_records`]): in memory an image
//! is the same `;base64` / `;url` dict in both formats.

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

/// promptflow's `message_format` (`MessageFormatType`): which dicts are images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MessageFormat {
    /// `{"data:image/png;path": ...}` (`;url`, `;base64`): promptflow's default.
    #[default]
    Basic,
    /// `{"type": "image_url", "image_url": {"url": ...}}`, `{"type": "image_file",
    /// "image_file": {"path": ...}}`; text parts `{"type": "text", "text": ...}` reach Python
    /// tools as `promptflow.contracts.multimedia.Text`.
    OpenaiVision,
}

impl MessageFormat {
    /// The formats promptflow knows, as it reads them (case-insensitive).
    pub const NAMES: [&str; 2] = ["basic", "openai-vision"];

    pub fn parse(name: &str) -> Option<MessageFormat> {
        if name.eq_ignore_ascii_case("basic") {
            Some(MessageFormat::Basic)
        } else if name.eq_ignore_ascii_case("openai-vision") {
            Some(MessageFormat::OpenaiVision)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MessageFormat::Basic => "basic",
            MessageFormat::OpenaiVision => "openai-vision",
        }
    }

    /// Whether `v` is an image dict of this format (promptflow's `is_multimedia_dict`).
    pub fn is_image_ref(self, v: &Value) -> bool {
        match self {
            MessageFormat::Basic => is_image_dict(v),
            MessageFormat::OpenaiVision => vision_parts(v).is_some(),
        }
    }

    /// Whether `v` holds an image dict of this format anywhere.
    pub fn contains_image_ref(self, v: &Value) -> bool {
        match v {
            Value::Object(m) => {
                self.is_image_ref(v) || m.values().any(|x| self.contains_image_ref(x))
            }
            Value::Array(a) => a.iter().any(|x| self.contains_image_ref(x)),
            _ => false,
        }
    }
}

/// An openai-vision image dict: `{"type": "image_url", "image_url": {"url": U}}` or
/// `{"type": "image_file", "image_file": {"path": P}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisionRef<'a> {
    Url(&'a Value),
    File(&'a Value),
}

/// promptflow's `OpenaiVisionMultimediaProcessor.is_multimedia_dict`: two keys, `type` and the
/// object it names, holding `url` (`image_url`) or `path` (`image_file`).
pub fn vision_parts(v: &Value) -> Option<VisionRef<'_>> {
    vision_map_parts(v.as_object()?)
}

fn vision_map_parts(m: &Map<String, Value>) -> Option<VisionRef<'_>> {
    if m.len() != 2 {
        return None;
    }
    let ty = m.get("type")?.as_str()?;
    let inner = m.get(ty)?.as_object()?;
    match ty {
        "image_url" => inner.get("url").map(VisionRef::Url),
        "image_file" => inner.get("path").map(VisionRef::File),
        _ => None,
    }
}

fn vision_dict(ty: &str, key: &str, value: String) -> Value {
    let mut inner = Map::new();
    inner.insert(key.to_string(), Value::String(value));
    let mut m = Map::new();
    m.insert("type".to_string(), Value::String(ty.to_string()));
    m.insert(ty.to_string(), Value::Object(inner));
    Value::Object(m)
}

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

const VISION_FORMS: &str = "this flow has `message_format: openai-vision`: give a file path, an http(s) URL, base64 (optionally as a data:image/png;base64,... URI), {\"type\": \"image_file\", \"image_file\": {\"path\": \"FILE\"}} or {\"type\": \"image_url\", \"image_url\": {\"url\": URL or data URI}}";

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

/// `(mime subtype, path|base64|url, data)` of an image reference in a run record, in either
/// format: a basic multimedia dict, or an openai-vision `image_file` (the type from the file
/// name, `*` when it says none) / `image_url` dict (a data URI is `base64`, its payload the
/// data). What a viewer of records (the report) reads, whichever flow wrote them.
pub fn record_parts(v: &Value) -> Option<(String, &'static str, &str)> {
    if let Some((sub, kind, data)) = dict_parts(v) {
        let kind = match kind {
            "path" => "path",
            "base64" => "base64",
            _ => "url",
        };
        return Some((sub.to_string(), kind, data.as_str()?));
    }
    let sub_of = |mime: &str| mime.strip_prefix("image/").unwrap_or("*").to_string();
    match vision_parts(v)? {
        VisionRef::File(p) => {
            let p = p.as_str()?;
            Some((sub_of(guess_from_name(p)), "path", p))
        }
        VisionRef::Url(u) => {
            let u = u.as_str()?;
            match u
                .strip_prefix("data:")
                .and_then(|r| r.split_once(";base64,"))
            {
                Some((mime, payload)) => Some((sub_of(mime), "base64", payload)),
                None => Some((sub_of(guess_from_name(u)), "url", u)),
            }
        }
    }
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

/// An image's width and height in pixels, read from its header (PNG, GIF, JPEG, WebP, BMP);
/// `None` for another format or a truncated header.
pub fn dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    let be16 = |at: usize| Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?) as u32);
    let le16 = |at: usize| Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?) as u32);
    let be32 = |at: usize| Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    let le32 = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    let le24 = |at: usize| {
        let b = bytes.get(at..at + 3)?;
        Some(u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16)
    };
    match sniff(bytes)? {
        "image/png" => Some((be32(16)?, be32(20)?)),
        "image/gif" => Some((le16(6)?, le16(8)?)),
        "image/bmp" => {
            let h = le32(22)? as i32;
            Some((le32(18)?, h.unsigned_abs()))
        }
        "image/webp" => match bytes.get(12..16)? {
            b"VP8 " => Some((le16(26)? & 0x3fff, le16(28)? & 0x3fff)),
            b"VP8L" => {
                let b = le32(21)?;
                Some(((b & 0x3fff) + 1, ((b >> 14) & 0x3fff) + 1))
            }
            b"VP8X" => Some((le24(24)? + 1, le24(27)? + 1)),
            _ => None,
        },
        "image/jpeg" => {
            // walk the markers to the first start-of-frame
            let mut at = 2;
            loop {
                while *bytes.get(at)? != 0xff {
                    at += 1;
                }
                while *bytes.get(at)? == 0xff {
                    at += 1;
                }
                let marker = *bytes.get(at)?;
                at += 1;
                if matches!(marker, 0xd8 | 0x01 | 0xd0..=0xd7) {
                    continue;
                }
                let len = be16(at)? as usize;
                if matches!(marker, 0xc0..=0xcf) && !matches!(marker, 0xc4 | 0xc8 | 0xcc) {
                    return Some((be16(at + 5)?, be16(at + 3)?));
                }
                at += len;
            }
        }
        _ => None,
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
        Some("bmp") => "image/bmp",
        Some("tif" | "tiff") => "image/tiff",
        Some("ico" | "xicon") => "image/x-icon",
        _ => "image/*",
    }
}

/// Load an image value as promptflow's `create_image` does, in the flow's message format.
/// Relative paths are taken under `base` (the flow folder).
pub fn load(v: &Value, base: &Path, format: MessageFormat) -> Result<Image, ImageError> {
    match (format, v) {
        (MessageFormat::Basic, _) => load_basic(v, base),
        (MessageFormat::OpenaiVision, Value::Object(_)) => load_vision(v, base).map_err(|mut e| {
            if e.help == FORMS {
                e.help = VISION_FORMS.to_string();
            }
            e
        }),
        (MessageFormat::OpenaiVision, _) => load_basic(v, base).map_err(|mut e| {
            if e.help == FORMS {
                e.help = VISION_FORMS.to_string();
            }
            e
        }),
    }
}

/// promptflow's `OpenaiVisionMultimediaProcessor._create_image_from_dict`: the MIME type is read
/// from the bytes (a data URI's own type for base64).
fn load_vision(v: &Value, base: &Path) -> Result<Image, ImageError> {
    let Some(parts) = vision_parts(v) else {
        return Err(err(
            "an image dictionary must be {\"type\": \"image_file\", \"image_file\": {\"path\": ...}} or {\"type\": \"image_url\", \"image_url\": {\"url\": ...}}",
            VISION_FORMS,
        ));
    };
    match parts {
        VisionRef::Url(Value::String(url)) => {
            if is_base64(url) {
                let declared = url
                    .strip_prefix("data:")
                    .and_then(|r| r.split(';').next())
                    .map(str::to_string);
                from_base64(url, declared)
            } else if is_url(url) {
                from_url(url, None)
            } else {
                Err(err(
                    format!(
                        "invalid image url: {}: it should be a URL or base64 data",
                        shorten(url)
                    ),
                    VISION_FORMS,
                ))
            }
        }
        VisionRef::File(Value::String(path)) => from_file(&base.join(path), None),
        VisionRef::Url(_) => Err(err(
            "the `url` of an `image_url` dictionary must be a string",
            VISION_FORMS,
        )),
        VisionRef::File(_) => Err(err(
            "the `path` of an `image_file` dictionary must be a string",
            VISION_FORMS,
        )),
    }
}

fn load_basic(v: &Value, base: &Path) -> Result<Image, ImageError> {
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
/// `load_multimedia_data_recursively`): each image dict of the flow's format becomes its
/// in-memory value. In an openai-vision flow a basic `data:image/...` dict is refused: promptflow
/// would pass it on as a plain dict, and `flow` holds images in memory in that shape, so it would
/// become an image.
pub fn load_nested(v: &Value, base: &Path, format: MessageFormat) -> Result<Value, ImageError> {
    Ok(match v {
        Value::Object(_) if format.is_image_ref(v) => load(v, base, format)?.to_value(),
        Value::Object(m) if format == MessageFormat::OpenaiVision && is_image_dict(v) => {
            let key = m.keys().next().map_or("", String::as_str);
            return Err(err(
                format!(
                    "`{{\"{key}\": ...}}` is a basic image dictionary in a flow with `message_format: openai-vision`: promptflow passes it to tools as a plain dictionary, not an image"
                ),
                "give the image as {\"type\": \"image_file\", \"image_file\": {\"path\": \"FILE\"}} or {\"type\": \"image_url\", \"image_url\": {\"url\": URL or data URI}}, or remove `message_format`",
            ));
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), load_nested(x, base, format)?)))
                .collect::<Result<_, ImageError>>()?,
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| load_nested(x, base, format))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}

/// promptflow's `resolve_multimedia_data_recursively`: the path of every image file dict of the
/// flow's format in a dataset row (or a run record) is taken relative to `dir`.
pub fn resolve_paths(v: &mut Value, dir: &Path, format: MessageFormat) {
    match v {
        Value::Object(m) => {
            if format == MessageFormat::OpenaiVision {
                if matches!(vision_map_parts(m), Some(VisionRef::File(Value::String(_)))) {
                    if let Some(Value::String(p)) =
                        m.get_mut("image_file").and_then(|f| f.get_mut("path"))
                    {
                        *p = dir.join(&*p).to_string_lossy().into_owned();
                    }
                    return;
                }
            } else {
                let single = m.len() == 1;
                if let Some((k, Value::String(p))) = m.iter_mut().next()
                    && single
                    && k.ends_with(";path")
                    && MIME_KEY.is_match(k)
                {
                    *p = dir.join(&*p).to_string_lossy().into_owned();
                    return;
                }
            }
            for x in m.values_mut() {
                resolve_paths(x, dir, format);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| resolve_paths(x, dir, format)),
        _ => {}
    }
}

/// The image references of a run record (already [`resolve_paths`]-ed) as `flow` holds them
/// in memory: an openai-vision `image_file` dict becomes `{"data:image/<type>;path": P}` (the
/// type from the file name, as the file was written), an `image_url` dict a `;url` or `;base64`
/// dict; the basic format is already that.
pub fn from_records(v: &mut Value, format: MessageFormat) {
    if format == MessageFormat::Basic {
        return;
    }
    match v {
        Value::Object(m) => {
            let converted = match vision_map_parts(m) {
                Some(VisionRef::File(Value::String(p))) => {
                    let mime = guess_from_name(p);
                    Some((format!("data:{mime};path"), p.clone()))
                }
                Some(VisionRef::Url(Value::String(u))) if is_base64(u) => {
                    let mime = u
                        .strip_prefix("data:")
                        .and_then(|r| r.split(';').next())
                        .unwrap_or("image/*")
                        .to_string();
                    let data = u.rsplit(',').next().unwrap_or(u).to_string();
                    Some((format!("data:{mime};base64"), data))
                }
                Some(VisionRef::Url(Value::String(u))) => {
                    let mime = guess_from_name(u);
                    Some((format!("data:{mime};url"), u.clone()))
                }
                _ => None,
            };
            match converted {
                Some((k, data)) => {
                    m.clear();
                    m.insert(k, Value::String(data));
                }
                None => m.values_mut().for_each(|x| from_records(x, format)),
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| from_records(x, format)),
        _ => {}
    }
}

/// Replace every in-memory image (`;base64` dict) inside `v` by a reference to a file: the
/// bytes are written to `dir/sub/<hash>.<ext>` (once: the name is the content's hash) and the
/// path is `sub/<hash>.<ext>`, relative to `dir`. The reference is `{"data:image/png;path":
/// PATH}`, or in an openai-vision flow `{"type": "image_file", "image_file": {"path": PATH}}`
/// (and an image from a URL `{"type": "image_url", "image_url": {"url": URL}}`, promptflow's
/// `_generate_image_url_reference`). Otherwise `;url` and `;path` dicts stay as they are.
pub fn persist(v: &mut Value, dir: &Path, sub: &str, format: MessageFormat) -> std::io::Result<()> {
    match v {
        Value::Object(m) => {
            let value = Value::Object(std::mem::take(m));
            let image = match dict_parts(&value) {
                Some((mime_sub, "base64", _)) => {
                    Image::from_value(&value).map(|img| (mime_sub.to_string(), img))
                }
                Some((_, "url", Value::String(url))) if format == MessageFormat::OpenaiVision => {
                    *v = vision_dict("image_url", "url", url.clone());
                    return Ok(());
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
                let path = format!("{sub}/{name}");
                match format {
                    MessageFormat::Basic => {
                        let mut out = Map::new();
                        out.insert(format!("data:image/{mime_sub};path"), Value::String(path));
                        *m = out;
                    }
                    MessageFormat::OpenaiVision => *v = vision_dict("image_file", "path", path),
                }
                return Ok(());
            }
            for x in m.values_mut() {
                persist(x, dir, sub, format)?;
            }
        }
        Value::Array(a) => {
            for x in a {
                persist(x, dir, sub, format)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Whether an input value of type `ty` names a file (a plain path for an `image` input, a
/// `;path` dict — or in an openai-vision flow an `image_file` dict — anywhere in an image, list
/// or object input): what a served flow refuses.
pub fn names_a_file(ty: &crate::model::ValueType, v: &Value, format: MessageFormat) -> bool {
    use crate::model::ValueType;
    fn has_path_dict(v: &Value, format: MessageFormat) -> bool {
        let names_file = match format {
            MessageFormat::Basic => matches!(dict_parts(v), Some((_, "path", _))),
            MessageFormat::OpenaiVision => matches!(vision_parts(v), Some(VisionRef::File(_))),
        };
        match v {
            Value::Object(m) => names_file || m.values().any(|x| has_path_dict(x, format)),
            Value::Array(a) => a.iter().any(|x| has_path_dict(x, format)),
            _ => false,
        }
    }
    match (ty, v) {
        (ValueType::Image, Value::String(s)) => !s.is_empty() && !is_base64(s) && !is_url(s),
        (ValueType::Image | ValueType::List | ValueType::Object, _) => has_path_dict(v, format),
        _ => false,
    }
}

/// The images of a served flow's outputs as its response carries them: the in-memory dicts
/// (`;base64`, `;url`) in a basic flow, and in an openai-vision flow `{"type": "image_url",
/// "image_url": {"url": data URI or URL}}` (promptflow's `convert_multimedia_data_to_base64_dict`).
pub fn to_response(v: &mut Value, format: MessageFormat) {
    if format == MessageFormat::Basic {
        return;
    }
    if let Some(img) = Image::from_value(v) {
        *v = vision_dict("image_url", "url", img.url());
        return;
    }
    match v {
        Value::Object(m) => m.values_mut().for_each(|x| to_response(x, format)),
        Value::Array(a) => a.iter_mut().for_each(|x| to_response(x, format)),
        _ => {}
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

/// promptflow's `TextProcessor.is_text_dict`: `{"type": "text", "text": T}`, `T` a string or
/// `{"value": string, "annotations": ...}`.
pub fn text_part(v: &Value) -> Option<&str> {
    let m = v.as_object()?;
    if m.len() != 2 || m.get("type")?.as_str()? != "text" {
        return None;
    }
    match m.get("text")? {
        Value::String(s) => Some(s),
        Value::Object(t) => t.get("value")?.as_str(),
        _ => None,
    }
}

/// In an openai-vision flow a text part (`{"type": "text", "text": T}`) is promptflow's `Text`,
/// a `str`: a template prints it as its text. Nothing changes in a basic flow.
pub fn texts_to_strings(vars: &mut Map<String, Value>, format: MessageFormat) {
    fn walk(v: &mut Value) {
        if let Some(text) = text_part(v) {
            *v = Value::String(text.to_string());
            return;
        }
        match v {
            Value::Object(m) => m.values_mut().for_each(walk),
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    if format == MessageFormat::OpenaiVision {
        vars.values_mut().for_each(walk);
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
    fn dimensions_read_from_headers() {
        // made with PIL (tests/fixtures/images): the size is in each file's name
        let cases: [(&[u8], (u32, u32)); 6] = [
            (
                include_bytes!("../tests/fixtures/images/size-3x2.png"),
                (3, 2),
            ),
            (
                include_bytes!("../tests/fixtures/images/size-37x21.jpg"),
                (37, 21),
            ),
            (
                include_bytes!("../tests/fixtures/images/size-5x7.gif"),
                (5, 7),
            ),
            (
                include_bytes!("../tests/fixtures/images/size-9x4.bmp"),
                (9, 4),
            ),
            (
                include_bytes!("../tests/fixtures/images/size-17x11.webp"),
                (17, 11),
            ),
            (
                include_bytes!("../tests/fixtures/images/size-13x6-lossless.webp"),
                (13, 6),
            ),
        ];
        for (bytes, size) in cases {
            assert_eq!(dimensions(bytes), Some(size));
        }
        assert_eq!(dimensions(PNG), None);
        assert_eq!(dimensions(b"not an image"), None);
    }

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
            let img = load(&v, &dir, MessageFormat::Basic).unwrap_or_else(|e| panic!("{v}: {e}"));
            assert_eq!(img.mime, "image/png");
            assert_eq!(img.source, Source::Bytes(PNG.to_vec()));
        }
        let url = load(
            &json!("https://example.com/cat.jpg"),
            &dir,
            MessageFormat::Basic,
        );
        assert!(
            matches!(url, Ok(Image { ref mime, source: Source::Url(_) }) if mime == "image/jpeg")
        );
        assert!(load(&json!("missing.png"), &dir, MessageFormat::Basic).is_err());
        std::fs::write(dir.join("t.txt"), "hello").ok();
        let e = load(&json!("t.txt"), &dir, MessageFormat::Basic)
            .err()
            .map(|e| e.message);
        assert!(e.is_some_and(|m| m.contains("is not an image")));
        assert!(load(&json!({"a": 1}), &dir, MessageFormat::Basic).is_err());
        assert!(load(&json!(3), &dir, MessageFormat::Basic).is_err());
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
        persist(&mut v, &dir, "images", MessageFormat::Basic).unwrap_or_else(|e| panic!("{e}"));
        let path = v["out"][0]["data:image/png;path"]
            .as_str()
            .unwrap_or_default();
        assert!(path.starts_with("images/") && path.ends_with(".png"), "{v}");
        assert_eq!(std::fs::read(dir.join(path)).ok().as_deref(), Some(PNG));
        assert_eq!(v["u"], json!({"data:image/png;url": "https://x/y.png"}));
    }

    #[test]
    fn openai_vision_forms_load_and_basic_dicts_are_not_its_images() {
        let dir = std::env::temp_dir().join(format!("flow-image-v-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        std::fs::write(dir.join("a.png"), PNG).ok();
        let b64 = STANDARD.encode(PNG);
        let vision = MessageFormat::OpenaiVision;
        for v in [
            json!({"type": "image_file", "image_file": {"path": "a.png"}}),
            json!({"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{b64}")}}),
            json!({"type": "image_url", "image_url": {"url": b64.clone()}}),
            json!("a.png"),
        ] {
            let img = load(&v, &dir, vision).unwrap_or_else(|e| panic!("{v}: {e}"));
            assert_eq!(
                (img.mime.as_str(), img.source),
                ("image/png", Source::Bytes(PNG.to_vec()))
            );
        }
        let url = json!({"type": "image_url", "image_url": {"url": "https://x/y.jpg"}});
        assert_eq!(
            load(&url, &dir, vision).map(|i| i.source),
            Ok(Source::Url("https://x/y.jpg".into()))
        );
        // a basic dict is no image of this format, and a vision dict none of the basic one
        let basic = json!({"data:image/png;path": "a.png"});
        let e = load(&basic, &dir, vision).err().map(|e| e.message);
        assert!(e.is_some_and(|m| m.contains("image_file")));
        assert!(!MessageFormat::Basic.is_image_ref(&url));
        assert!(vision.is_image_ref(&url) && !vision.is_image_ref(&basic));
        // three keys, an unknown type, a missing url: plain dicts
        for v in [
            json!({"type": "image_url", "image_url": {"url": "u"}, "x": 1}),
            json!({"type": "image_x", "image_x": {"url": "u"}}),
            json!({"type": "image_url", "image_url": {"path": "u"}}),
        ] {
            assert!(!vision.is_image_ref(&v), "{v}");
        }
        let bad = json!({"type": "image_url", "image_url": {"url": "not a url"}});
        let e = load(&bad, &dir, vision).err().map(|e| e.message);
        assert!(e.is_some_and(|m| m.contains("invalid image url")));
        let nested = json!(["q", basic]);
        assert!(load_nested(&nested, &dir, vision).is_err());
        let nested = json!(["q", {"type": "text", "text": "t"}, {"type": "image_file", "image_file": {"path": "a.png"}}]);
        let loaded = load_nested(&nested, &dir, vision).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded[1], json!({"type": "text", "text": "t"}));
        assert_eq!(loaded[2], json!({"data:image/png;base64": b64}));
    }

    #[test]
    fn openai_vision_persists_resolves_and_reads_back_its_references() {
        let dir = std::env::temp_dir().join(format!("flow-image-vp-{}", std::process::id()));
        let vision = MessageFormat::OpenaiVision;
        let img = Image {
            mime: "image/png".into(),
            source: Source::Bytes(PNG.to_vec()),
        };
        let mut v =
            json!({"out": [img.to_value(), "t"], "u": {"data:image/png;url": "https://x/y.png"}});
        persist(&mut v, &dir, "images", vision).unwrap_or_else(|e| panic!("{e}"));
        let path = v["out"][0]["image_file"]["path"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert_eq!(v["out"][0]["type"], "image_file");
        assert!(path.starts_with("images/") && path.ends_with(".png"), "{v}");
        assert_eq!(std::fs::read(dir.join(&path)).ok().as_deref(), Some(PNG));
        assert_eq!(
            v["u"],
            json!({"type": "image_url", "image_url": {"url": "https://x/y.png"}})
        );
        resolve_paths(&mut v, &dir, vision);
        let abs = dir.join(&path).to_string_lossy().into_owned();
        assert_eq!(v["out"][0]["image_file"]["path"], json!(abs));
        from_records(&mut v, vision);
        assert_eq!(v["out"][0], json!({"data:image/png;path": abs}));
        assert_eq!(v["u"], json!({"data:image/png;url": "https://x/y.png"}));
        assert_eq!(v["out"][1], json!("t"));
        let mut r = img.to_value();
        to_response(&mut r, vision);
        assert_eq!(r["image_url"]["url"], json!(img.url()));
        let rec = json!({"type": "image_file", "image_file": {"path": "images/x.jpg"}});
        assert_eq!(
            record_parts(&rec),
            Some(("jpeg".to_string(), "path", "images/x.jpg"))
        );
    }

    #[test]
    fn message_formats_are_read_as_promptflow_reads_them() {
        assert_eq!(
            MessageFormat::parse("OpenAI-Vision"),
            Some(MessageFormat::OpenaiVision)
        );
        assert_eq!(MessageFormat::parse("BASIC"), Some(MessageFormat::Basic));
        assert_eq!(MessageFormat::parse("openai_vision"), None);
        let mut vars = Map::new();
        vars.insert(
            "q".into(),
            json!(["a", {"type": "text", "text": {"value": "b", "annotations": []}}]),
        );
        let before = vars.clone();
        texts_to_strings(&mut vars, MessageFormat::Basic);
        assert_eq!(vars, before);
        texts_to_strings(&mut vars, MessageFormat::OpenaiVision);
        assert_eq!(vars["q"], json!(["a", "b"]));
    }
}
