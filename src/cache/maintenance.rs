//! `flow cache stats` and `flow cache clear`: walk the cache directory. A missing directory is an
//! empty cache, not an error.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::entry::{self, ENTRY_EXT, TEMP_EXT};

/// Temp files older than this are leftovers of a crashed writer and are removed by `clear`.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// What is in a cache directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Readable entries.
    pub entries: u64,
    /// Bytes on disk of all entry files (readable and corrupt).
    pub bytes: u64,
    /// When the oldest readable entry was stored (seconds since the Unix epoch).
    pub oldest: Option<u64>,
    /// When the newest readable entry was stored (seconds since the Unix epoch).
    pub newest: Option<u64>,
    /// Entry files that cannot be read (they are misses; the next write replaces them).
    pub corrupt: u64,
}

/// One file under the cache directory.
struct Found {
    path: PathBuf,
    bytes: u64,
    modified: Option<SystemTime>,
    temp: bool,
}

/// Every entry and temp file in the shard directories of `dir` (empty when `dir` is missing).
fn walk(dir: &Path) -> io::Result<Vec<Found>> {
    let shards = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for shard in shards {
        let shard = shard?;
        if !shard.file_type()?.is_dir() {
            continue;
        }
        let files = match fs::read_dir(shard.path()) {
            Ok(rd) => rd,
            // Removed by a concurrent `clear`.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for file in files {
            let file = file?;
            let path = file.path();
            let ext = path.extension().and_then(|e| e.to_str());
            let temp = ext == Some(TEMP_EXT);
            if !(temp || ext == Some(ENTRY_EXT)) {
                continue;
            }
            let Ok(meta) = file.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            found.push(Found {
                path,
                bytes: meta.len(),
                modified: meta.modified().ok(),
                temp,
            });
        }
    }
    Ok(found)
}

/// Counts the entries in `dir`: how many, their size, oldest/newest and corrupt files.
pub fn stats(dir: &Path) -> io::Result<CacheStats> {
    let mut s = CacheStats::default();
    for f in walk(dir)?.into_iter().filter(|f| !f.temp) {
        s.bytes += f.bytes;
        match fs::read(&f.path).ok().and_then(|b| entry::parse(&b)) {
            Some(e) => {
                s.entries += 1;
                s.oldest = Some(s.oldest.map_or(e.stored_at, |o| o.min(e.stored_at)));
                s.newest = Some(s.newest.map_or(e.stored_at, |n| n.max(e.stored_at)));
            }
            None => s.corrupt += 1,
        }
    }
    Ok(s)
}

/// Removes entries from `dir` and returns how many. With `older_than`, only entries stored
/// longer ago than that (corrupt entries by file time); without, every entry. Temp files left
/// by crashed writers (older than an hour) go too; empty shard directories are removed.
pub fn clear(dir: &Path, older_than: Option<Duration>) -> io::Result<usize> {
    let now = SystemTime::now();
    let cutoff = older_than.map(|d| entry::now_secs().saturating_sub(d.as_secs()));
    let mut removed = 0;
    let mut shards = Vec::new();
    for f in walk(dir)? {
        let age = f
            .modified
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        let remove = if f.temp {
            age > STALE_TEMP.max(older_than.unwrap_or_default())
        } else {
            match cutoff {
                None => true,
                Some(cutoff) => match fs::read(&f.path).ok().and_then(|b| entry::parse(&b)) {
                    Some(e) => e.stored_at < cutoff,
                    None => older_than.is_some_and(|d| age > d),
                },
            }
        };
        if !remove {
            continue;
        }
        match fs::remove_file(&f.path) {
            Ok(()) => {
                if !f.temp {
                    removed += 1;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if let Some(parent) = f.path.parent() {
            shards.push(parent.to_path_buf());
        }
    }
    shards.sort();
    shards.dedup();
    for shard in shards {
        // Fails (harmlessly) when the shard still holds entries.
        let _ = fs::remove_dir(shard);
    }
    Ok(removed)
}

/// Parses an age like `7d`, `12h`, `30m`, `45s` or `2w` (a bare number is days).
pub fn parse_age(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("invalid age {s:?}: expected a number and a unit, like 7d, 12h, 30m, 45s or 2w")
    })?;
    let secs = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "" | "d" => 86_400,
        "w" => 7 * 86_400,
        other => {
            return Err(format!(
                "invalid age {s:?}: unknown unit {other:?}; use s, m, h, d or w (e.g. 7d)"
            ));
        }
    };
    n.checked_mul(secs)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("invalid age {s:?}: too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse() {
        assert_eq!(parse_age("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_age("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_age("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_age("45s"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_age("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_age("3"), Ok(Duration::from_secs(3 * 86_400)));
        assert!(parse_age("d").is_err());
        assert!(parse_age("5y").unwrap_err().contains("unknown unit"));
        assert!(parse_age("-1d").is_err());
        assert!(parse_age("99999999999999999999w").is_err());
    }

    #[test]
    fn missing_dir_is_empty() {
        let dir = Path::new("/nonexistent/flow-cache-test/dir");
        assert_eq!(stats(dir).ok(), Some(CacheStats::default()));
        assert_eq!(clear(dir, None).ok(), Some(0));
    }
}
