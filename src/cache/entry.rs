//! One cache entry on disk: `DIR/<first two chars>/<name>.json`, holding a format version, the
//! full key, the response and when it was stored. Written to a temp file in the same directory
//! and renamed, so a reader never sees a half-written entry and two writers of one key (threads
//! or processes) both succeed, the last rename winning. Anything unreadable is a miss.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::provider::{LlmResponse, Usage};

/// The on-disk format version; entries of another version are misses (and get overwritten).
pub(crate) const FORMAT_VERSION: u32 = 1;

/// Suffix of finished entries.
pub(crate) const ENTRY_EXT: &str = "json";

/// Suffix of temp files being written.
pub(crate) const TEMP_EXT: &str = "tmp";

/// What is stored for one key.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// The full cache key (checked on read, so a sanitised file name can never alias).
    pub key: String,
    /// Seconds since the Unix epoch when the entry was written.
    pub stored_at: u64,
    /// The response.
    pub response: StoredResponse,
}

/// A serialisable mirror of [`LlmResponse`] (retries are not stored: a hit took none).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoredResponse {
    pub output: Value,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// The whole reply body, for a request that asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<Value>,
}

impl StoredResponse {
    fn from_response(r: &LlmResponse) -> Self {
        StoredResponse {
            output: r.output.clone(),
            prompt_tokens: r.usage.prompt_tokens,
            completion_tokens: r.usage.completion_tokens,
            total_tokens: r.usage.total_tokens,
            model: r.model.clone(),
            finish_reason: r.finish_reason.clone(),
            raw: r.raw.clone(),
        }
    }

    fn into_response(self) -> LlmResponse {
        LlmResponse {
            output: self.output,
            usage: Usage {
                prompt_tokens: self.prompt_tokens,
                completion_tokens: self.completion_tokens,
                total_tokens: self.total_tokens,
            },
            model: self.model,
            finish_reason: self.finish_reason,
            retries: 0,
            served_by: None,
            raw: self.raw,
        }
    }
}

/// The file name stem for `key`: the key itself when it is a plain token (hex digests, with an
/// optional `-`/`_`/`.` suffix), else its SHA-256.
fn file_stem(key: &str) -> String {
    let plain = (4..=160).contains(&key.len())
        && !key.starts_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if plain {
        key.to_string()
    } else {
        Sha256::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Where the entry for `key` lives under `dir`.
pub(crate) fn entry_path(dir: &Path, key: &str) -> PathBuf {
    let stem = file_stem(key);
    let shard: String = stem.chars().take(2).collect();
    dir.join(shard).join(format!("{stem}.{ENTRY_EXT}"))
}

/// Seconds since the Unix epoch, now.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Parses an entry file's bytes; `None` when empty, truncated, garbage or another version.
pub(crate) fn parse(bytes: &[u8]) -> Option<Entry> {
    let entry: Entry = serde_json::from_slice(bytes).ok()?;
    (entry.version == FORMAT_VERSION).then_some(entry)
}

/// Reads the entry for `key` (blocking). A missing, unreadable, corrupt or foreign entry is
/// `None`: the cache never fails a line.
pub(crate) fn read(dir: &Path, key: &str) -> Option<LlmResponse> {
    let bytes = std::fs::read(entry_path(dir, key)).ok()?;
    let entry = parse(&bytes)?;
    (entry.key == key).then(|| entry.response.into_response())
}

/// Serialises the entry for `key` (stored now).
pub(crate) fn encode(key: &str, response: &LlmResponse) -> io::Result<Vec<u8>> {
    let entry = Entry {
        version: FORMAT_VERSION,
        key: key.to_string(),
        stored_at: now_secs(),
        response: StoredResponse::from_response(response),
    };
    serde_json::to_vec(&entry).map_err(io::Error::other)
}

/// Writes an [`encode`]d entry for `key` atomically (blocking): temp file in the same
/// directory, then rename over any previous (possibly corrupt) entry. No fsync: after a power
/// loss an entry may be empty or truncated, which reads as a miss.
pub(crate) fn write(dir: &Path, key: &str, bytes: &[u8]) -> io::Result<()> {
    let path = entry_path(dir, key);
    let shard = path.parent().unwrap_or(dir);
    std::fs::create_dir_all(shard)?;
    let temp = shard.join(format!(
        ".{}.{}.{:016x}.{TEMP_EXT}",
        path.file_stem().and_then(|s| s.to_str()).unwrap_or("entry"),
        std::process::id(),
        fastrand::u64(..)
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&temp)?;
        f.write_all(bytes)?;
        drop(f);
        std::fs::rename(&temp, &path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_keys_are_file_names_and_odd_keys_are_hashed() {
        let dir = Path::new("/c");
        let hex = "ab".repeat(32);
        assert_eq!(
            entry_path(dir, &hex),
            PathBuf::from(format!("/c/ab/{hex}.json"))
        );
        let suffixed = format!("{hex}.s2");
        assert!(entry_path(dir, &suffixed).ends_with(format!("ab/{suffixed}.json")));
        for odd in ["../../etc/passwd", "a/b", "", ".hidden", "x y"] {
            let p = entry_path(dir, odd);
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            assert_eq!(name.len(), 64 + 5, "{odd:?} -> {p:?}");
            assert!(p.starts_with(dir));
            assert_eq!(p.components().count(), 4, "{p:?}");
        }
        assert_ne!(entry_path(dir, "a/b"), entry_path(dir, "a/c"));
    }

    #[test]
    fn parse_rejects_other_versions_and_garbage() {
        let ok = br#"{"version":1,"key":"k","stored_at":5,"response":{"output":"x","prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#;
        assert!(parse(ok).is_some());
        let v2 = br#"{"version":2,"key":"k","stored_at":5,"response":{"output":"x","prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#;
        assert!(parse(v2).is_none());
        assert!(parse(b"").is_none());
        assert!(parse(&ok[..ok.len() - 3]).is_none());
        assert!(parse(b"\x00\xffgarbage").is_none());
    }
}
