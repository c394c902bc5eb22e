//! The response cache: identical LLM requests are answered from disk instead of the endpoint.
//!
//! Keys are the caller's (`LlmRequest::cache_key(conn)`: target URL, model/deployment, api,
//! messages or prompt, parameters — never the API key), optionally with a suffix such as a
//! sample number. Each entry is one small JSON file, `DIR/ab/abcdef….json`, written atomically
//! (temp file + rename), so any number of lines and processes can share a directory.
//!
//! Guarantees:
//! - only successful responses are stored; errors are never cached;
//! - concurrent [`ResponseCache::get_or_fetch`] calls with one key in one process send one
//!   request: the others wait for it and share its response (reported as hits, since they made
//!   no request of their own) or its error (all waiters fail with the same error: the leader
//!   already retried it by the client's retry policy). If the leader is cancelled, a waiter
//!   takes over and fetches;
//! - a missing, empty, truncated, foreign-version or otherwise corrupt entry is a miss, never an
//!   error, and the next successful fetch replaces it;
//! - a failed write (disk full, read-only directory) does not fail the line; see
//!   [`ResponseCache::write_warning`];
//! - a hit costs one file read and a JSON parse, off the async runtime, without any lock.
//!
//! Modes ([`CacheMode`]): `on` reads and writes; `off` (`--no-cache`) neither reads, writes nor
//! dedupes (every call goes to the endpoint, e.g. to draw fresh samples); `replay` answers only
//! from the cache and fails a request that was never recorded ([`CacheError::ReplayMiss`]), so
//! a pull-request pipeline can run offline on recorded answers.
//!
//! Directory precedence ([`resolve_dir`]): `--cache-dir DIR`, else the `FLOW_CACHE_DIR`
//! environment variable, else `<project root>/.flow/cache` ([`default_dir`]). Relative paths
//! are relative to the current directory. Point CI's cache step at that directory to persist
//! answers between pipeline runs.

mod entry;
mod inflight;
mod maintenance;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::chat::Message;
use crate::provider::{LlmRequest, LlmResponse, ProviderError};

use inflight::{InFlight, Role};
pub use maintenance::{CacheStats, clear, parse_age, stats};

/// The environment variable naming the cache directory (below `--cache-dir`, above the default).
pub const CACHE_DIR_ENV: &str = "FLOW_CACHE_DIR";

/// How the cache is used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum CacheMode {
    /// Answer from the cache when recorded; otherwise call the endpoint and record the answer.
    #[default]
    #[value(name = "on")]
    ReadWrite,
    /// Always call the endpoint; never read or write the cache.
    Off,
    /// Answer only from the cache; a request never recorded fails (no network).
    Replay,
}

impl CacheMode {
    /// `on`, `off` or `replay`, as written on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheMode::ReadWrite => "on",
            CacheMode::Off => "off",
            CacheMode::Replay => "replay",
        }
    }

    /// The mode [`CacheMode::as_str`] names (as recorded in a run's `meta.json`), if any.
    pub fn from_name(name: &str) -> Option<CacheMode> {
        [CacheMode::ReadWrite, CacheMode::Off, CacheMode::Replay]
            .into_iter()
            .find(|m| m.as_str() == name)
    }
}

/// The cache options of commands that call models; `#[command(flatten)]` them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CacheFlags {
    /// Response cache: on (read and record), off, or replay (answer only from recorded
    /// responses; a request never recorded fails its line).
    #[arg(
        long = "cache",
        value_enum,
        value_name = "MODE",
        conflicts_with = "no_cache"
    )]
    pub cache: Option<CacheMode>,
    /// Do not read or write the response cache (same as --cache off).
    #[arg(long)]
    pub no_cache: bool,
    /// The response cache directory [default: .flow/cache].
    #[arg(long, value_name = "DIR", env = CACHE_DIR_ENV)]
    pub cache_dir: Option<PathBuf>,
}

impl CacheFlags {
    /// The mode these flags select.
    pub fn mode(&self) -> CacheMode {
        if self.no_cache {
            CacheMode::Off
        } else {
            self.cache.unwrap_or_default()
        }
    }

    /// The directory these flags select (clap already applied `FLOW_CACHE_DIR`).
    pub fn dir(&self, project_root: &Path) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| default_dir(project_root))
    }
}

/// `<project_root>/.flow/cache`.
pub fn default_dir(project_root: &Path) -> PathBuf {
    project_root.join(".flow").join("cache")
}

/// The cache directory: `flag` (`--cache-dir`), else `env` (`FLOW_CACHE_DIR`, empty = unset),
/// else [`default_dir`].
pub fn resolve_dir(flag: Option<&Path>, env: Option<&str>, project_root: &Path) -> PathBuf {
    match (flag, env.filter(|e| !e.trim().is_empty())) {
        (Some(dir), _) => dir.to_path_buf(),
        (None, Some(env)) => PathBuf::from(env),
        (None, None) => default_dir(project_root),
    }
}

/// Why [`ResponseCache::get_or_fetch`] has no response.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The request failed (nothing was cached). Shared by every caller that waited for it.
    #[error(transparent)]
    Provider(Arc<ProviderError>),
    /// Replay mode and this request was never recorded.
    #[error(
        "no recorded response for {what} (cache key {key}) in {}: --cache replay answers only from recorded responses; record them by running once without --cache replay (with the same cache directory), or check that the prompt, model and parameters did not change",
        dir.display()
    )]
    ReplayMiss {
        /// The cache key.
        key: String,
        /// The caller's description of the request (node, model, first user message).
        what: String,
        /// The cache directory searched.
        dir: PathBuf,
    },
}

impl crate::error::Classify for CacheError {
    /// A replay miss means the recorded responses do not cover the run: configuration.
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            CacheError::Provider(e) => crate::error::Classify::class(e.as_ref()),
            CacheError::ReplayMiss { .. } => crate::error::ErrorClass::Config,
        }
    }
}

impl CacheError {
    /// The provider error, when the request failed.
    pub fn provider(&self) -> Option<&ProviderError> {
        match self {
            CacheError::Provider(e) => Some(e),
            CacheError::ReplayMiss { .. } => None,
        }
    }
}

impl From<ProviderError> for CacheError {
    fn from(e: ProviderError) -> Self {
        CacheError::Provider(Arc::new(e))
    }
}

/// A response and whether it came from the cache (no request of this caller's own).
#[derive(Debug, Clone, PartialEq)]
pub struct Cached {
    /// The response (`retries` is 0 for a hit).
    pub response: LlmResponse,
    /// Answered without a request of its own: read from disk, or shared from an identical
    /// request in flight.
    pub hit: bool,
}

/// The response cache of one process (cheap to clone; clones share state).
#[derive(Debug, Clone)]
pub struct ResponseCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    mode: CacheMode,
    inflight: InFlight,
    write_failures: AtomicU64,
    last_write_error: Mutex<Option<String>>,
}

impl ResponseCache {
    /// A cache over `dir` (created on first write) in `mode`.
    pub fn new(dir: PathBuf, mode: CacheMode) -> Self {
        ResponseCache {
            inner: Arc::new(Inner {
                dir,
                mode,
                inflight: InFlight::default(),
                write_failures: AtomicU64::new(0),
                last_write_error: Mutex::new(None),
            }),
        }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The mode.
    pub fn mode(&self) -> CacheMode {
        self.inner.mode
    }

    /// The response for `key`: from the cache, from an identical request in flight, or from
    /// `fetch` (then recorded). `what` describes the request for a replay miss (see
    /// [`describe_request`]). `fetch` is called at most once, and not at all on a hit or in
    /// replay mode.
    pub async fn get_or_fetch<F, Fut>(
        &self,
        key: &str,
        what: &str,
        fetch: F,
    ) -> Result<Cached, CacheError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<LlmResponse, ProviderError>>,
    {
        match self.inner.mode {
            CacheMode::Off => {
                let response = fetch().await?;
                return Ok(Cached {
                    response,
                    hit: false,
                });
            }
            CacheMode::Replay => {
                return match self.read(key).await {
                    Some(response) => Ok(Cached {
                        response,
                        hit: true,
                    }),
                    None => Err(CacheError::ReplayMiss {
                        key: key.to_string(),
                        what: what.to_string(),
                        dir: self.inner.dir.clone(),
                    }),
                };
            }
            CacheMode::ReadWrite => {}
        }
        if let Some(response) = self.read(key).await {
            return Ok(Cached {
                response,
                hit: true,
            });
        }
        let lead = loop {
            match self.inner.inflight.join(key) {
                Role::Leader(lead) => break lead,
                Role::Follower(rx) => match inflight::wait(rx).await {
                    Some(Ok(response)) => {
                        return Ok(Cached {
                            response: LlmResponse::clone(&response),
                            hit: true,
                        });
                    }
                    Some(Err(e)) => return Err(CacheError::Provider(e)),
                    // The leader was cancelled: take over.
                    None => continue,
                },
            }
        };
        // Another task may have recorded it between our read and taking the lead.
        if let Some(response) = self.read(key).await {
            lead.publish(Ok(Arc::new(response.clone())));
            return Ok(Cached {
                response,
                hit: true,
            });
        }
        match fetch().await {
            Ok(response) => {
                lead.publish(Ok(Arc::new(response.clone())));
                self.write(key, &response).await;
                drop(lead);
                Ok(Cached {
                    response,
                    hit: false,
                })
            }
            Err(e) => {
                let e = Arc::new(e);
                lead.publish(Err(e.clone()));
                Err(CacheError::Provider(e))
            }
        }
    }

    /// Reads `key` off the async runtime; any failure is a miss.
    async fn read(&self, key: &str) -> Option<LlmResponse> {
        let inner = self.inner.clone();
        let key = key.to_string();
        tokio::task::spawn_blocking(move || entry::read(&inner.dir, &key))
            .await
            .ok()
            .flatten()
    }

    /// Records `response` off the async runtime; a failure is remembered, not returned.
    async fn write(&self, key: &str, response: &LlmResponse) {
        let result = match entry::encode(key, response) {
            Ok(bytes) => {
                let inner = self.inner.clone();
                let key = key.to_string();
                tokio::task::spawn_blocking(move || entry::write(&inner.dir, &key, &bytes))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            self.inner.write_failures.fetch_add(1, Ordering::Relaxed);
            let mut last = self
                .inner
                .last_write_error
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            *last = Some(format!(
                "cannot write to the response cache {}: {e}",
                self.inner.dir.display()
            ));
        }
    }

    /// When responses could not be recorded: how many and the last error, with what to do.
    /// `None` when every write succeeded. Print it once at the end of a run.
    pub fn write_warning(&self) -> Option<String> {
        let n = self.inner.write_failures.load(Ordering::Relaxed);
        if n == 0 {
            return None;
        }
        let last = self
            .inner
            .last_write_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default();
        Some(format!(
            "warning: {n} response{} not cached ({last}); check that the directory is writable, or pass --cache-dir DIR or --no-cache",
            if n == 1 { " was" } else { "s were" }
        ))
    }

    /// How many keys are being fetched right now.
    pub fn in_flight(&self) -> usize {
        self.inner.inflight.len()
    }
}

/// Longest excerpt of the first user message in [`describe_request`].
const EXCERPT_CHARS: usize = 60;

/// Describes a request for a replay miss: `node NAME, model M, first user message "..."`.
pub fn describe_request(node: &str, req: &LlmRequest) -> String {
    let model = req.model.as_deref().unwrap_or("(connection default)");
    let text = req
        .messages
        .iter()
        .find(|m: &&Message| m.role == "user")
        .map(|m| ("first user message", m.content.as_str()))
        .or_else(|| req.prompt.as_deref().map(|p| ("prompt", p)));
    let mut out = format!("node {node}, model {model}");
    if let Some((label, text)) = text {
        let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut excerpt: String = flat.chars().take(EXCERPT_CHARS).collect();
        let truncated = excerpt.len() < flat.len();
        if truncated {
            excerpt.push('…');
        }
        out.push_str(&format!(", {label} {excerpt:?}"));
        if truncated {
            out.push_str(" (truncated)");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_precedence_flag_env_default() {
        let root = Path::new("/proj");
        assert_eq!(
            resolve_dir(Some(Path::new("/flag")), Some("/env"), root),
            PathBuf::from("/flag")
        );
        assert_eq!(resolve_dir(None, Some("/env"), root), PathBuf::from("/env"));
        assert_eq!(
            resolve_dir(None, Some(" "), root),
            PathBuf::from("/proj/.flow/cache")
        );
        assert_eq!(resolve_dir(None, None, root), default_dir(root));
    }

    #[test]
    fn describe_names_node_model_and_truncates() {
        let mut req = LlmRequest::chat(vec![
            Message::new("system", "be brief"),
            Message::new("user", "x".repeat(100)),
        ]);
        req.model = Some("gpt-4o-mini".into());
        let d = describe_request("classify", &req);
        assert!(d.starts_with("node classify, model gpt-4o-mini, first user message \""));
        assert!(d.ends_with("(truncated)"), "{d}");
        assert!(!d.contains(&"x".repeat(61)));
        let short = describe_request("n", &LlmRequest::completion("hi\n there"));
        assert_eq!(
            short,
            "node n, model (connection default), prompt \"hi there\""
        );
    }

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        cache: CacheFlags,
    }

    fn parse(args: &[&str]) -> Result<CacheFlags, clap::Error> {
        use clap::Parser;
        Cli::try_parse_from(std::iter::once("flow").chain(args.iter().copied())).map(|c| c.cache)
    }

    #[test]
    fn flags_parse_from_the_command_line() {
        assert_eq!(
            parse(&["--cache", "replay"]).unwrap().mode(),
            CacheMode::Replay
        );
        assert_eq!(
            parse(&["--cache", "on"]).unwrap().mode(),
            CacheMode::ReadWrite
        );
        assert_eq!(parse(&["--cache", "off"]).unwrap().mode(), CacheMode::Off);
        assert_eq!(parse(&["--no-cache"]).unwrap().mode(), CacheMode::Off);
        assert!(parse(&["--cache", "replay", "--no-cache"]).is_err());
        assert!(parse(&["--cache", "sometimes"]).is_err());
        let f = parse(&["--cache-dir", "ci/cache"]).unwrap();
        assert_eq!(f.dir(Path::new("/p")), PathBuf::from("ci/cache"));
    }

    #[test]
    fn flags_select_mode() {
        let f = CacheFlags::default();
        assert_eq!(f.mode(), CacheMode::ReadWrite);
        let f = CacheFlags {
            no_cache: true,
            ..CacheFlags::default()
        };
        assert_eq!(f.mode(), CacheMode::Off);
        let f = CacheFlags {
            cache: Some(CacheMode::Replay),
            ..CacheFlags::default()
        };
        assert_eq!(f.mode(), CacheMode::Replay);
        assert_eq!(f.dir(Path::new("/p")), PathBuf::from("/p/.flow/cache"));
    }
}
