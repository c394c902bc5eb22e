//! `flow cache stats` and `flow cache clear`: inspect and empty the response cache.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use time::OffsetDateTime;
use time::macros::format_description;

use super::output::Failure;
use super::settings::Age;
use flow::cache::{self, CacheStats};

#[derive(Debug, Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, Subcommand)]
pub enum Action {
    /// Show how many responses are cached, their size and age.
    Stats(DirArg),
    /// Remove cached responses: all of them, or those older than --older-than.
    Clear(ClearArgs),
}

#[derive(Debug, Args, Clone)]
pub struct DirArg {
    /// The cache directory [default: .flow/cache in the current directory].
    #[arg(long, value_name = "DIR", env = cache::CACHE_DIR_ENV)]
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct ClearArgs {
    #[command(flatten)]
    pub dir: DirArg,
    /// Only remove responses stored longer ago than this: 45s, 30m, 12h, 7d or 2w.
    #[arg(long, value_name = "AGE")]
    pub older_than: Option<Age>,
}

pub fn run(args: CacheArgs) -> Result<(), Failure> {
    match args.action {
        Action::Stats(dir) => stats(&resolve(&dir)?),
        Action::Clear(clear) => clear_cmd(&resolve(&clear.dir)?, clear.older_than.as_ref()),
    }
}

/// The directory: `--cache-dir` / `FLOW_CACHE_DIR` (clap applied it), else `./.flow/cache`.
fn resolve(arg: &DirArg) -> Result<PathBuf, Failure> {
    if let Some(dir) = &arg.cache_dir {
        return Ok(dir.clone());
    }
    Ok(cache::default_dir(&super::common::workdir()?.root))
}

fn io_failure(dir: &Path, e: std::io::Error) -> Failure {
    Failure::io(format!(
        "error: cannot read the response cache {}: {e}; check the path and its permissions",
        dir.display()
    ))
}

fn stats(dir: &Path) -> Result<(), Failure> {
    let s = cache::stats(dir).map_err(|e| io_failure(dir, e))?;
    print!("{}", render_stats(dir, &s, cache_now()));
    Ok(())
}

fn clear_cmd(dir: &Path, older_than: Option<&Age>) -> Result<(), Failure> {
    let age = older_than.map(Age::duration);
    let removed = cache::clear(dir, age).map_err(|e| io_failure(dir, e))?;
    let what = if removed == 1 {
        "response"
    } else {
        "responses"
    };
    match older_than {
        Some(a) => println!(
            "removed {removed} cached {what} older than {a} from {}",
            dir.display()
        ),
        None => println!("removed {removed} cached {what} from {}", dir.display()),
    }
    Ok(())
}

fn cache_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The `stats` report.
fn render_stats(dir: &Path, s: &CacheStats, now: u64) -> String {
    let mut out = format!("cache:    {}\n", dir.display());
    if s.entries == 0 && s.corrupt == 0 {
        out.push_str("entries:  0 (empty)\n");
        return out;
    }
    out.push_str(&format!("entries:  {}\n", s.entries));
    out.push_str(&format!("size:     {}\n", human_bytes(s.bytes)));
    if let Some(t) = s.oldest {
        out.push_str(&format!("oldest:   {}\n", when(t, now)));
    }
    if let Some(t) = s.newest {
        out.push_str(&format!("newest:   {}\n", when(t, now)));
    }
    if s.corrupt > 0 {
        out.push_str(&format!(
            "corrupt:  {} (ignored; replaced on the next write; `flow cache clear` removes them)\n",
            s.corrupt
        ));
    }
    out
}

/// `1.5 KiB`, `12.0 MiB`, `512 B`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `2025-01-02 03:04:05 UTC (3d ago)`.
fn when(secs: u64, now: u64) -> String {
    let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    let date = i64::try_from(secs)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|d| d.format(&format).ok())
        .unwrap_or_else(|| format!("{secs} (seconds since 1970)"));
    format!("{date} ({} ago)", ago(now.saturating_sub(secs)))
}

fn ago(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(12 * 1024 * 1024), "12.0 MiB");
    }

    #[test]
    fn stats_report() {
        let dir = Path::new("/p/.flow/cache");
        let empty = render_stats(dir, &CacheStats::default(), 0);
        assert_eq!(empty, "cache:    /p/.flow/cache\nentries:  0 (empty)\n");
        let s = CacheStats {
            entries: 3,
            bytes: 2048,
            oldest: Some(1_700_000_000),
            newest: Some(1_700_086_400),
            corrupt: 1,
        };
        let text = render_stats(dir, &s, 1_700_090_000);
        assert!(text.contains("entries:  3\n"), "{text}");
        assert!(text.contains("size:     2.0 KiB\n"), "{text}");
        assert!(
            text.contains("oldest:   2023-11-14 22:13:20 UTC (1d ago)"),
            "{text}"
        );
        assert!(
            text.contains("newest:   2023-11-15 22:13:20 UTC (1h ago)"),
            "{text}"
        );
        assert!(text.contains("corrupt:  1"), "{text}");
    }
}
