//! The options of every command that calls models.

use std::path::PathBuf;
use std::time::Duration;

use super::values::Seconds;

/// Seconds before a model request times out when `--request-timeout` is not given.
pub const DEFAULT_REQUEST_TIMEOUT_S: f64 = 120.0;

/// Retries of a model request when `--max-retries` is not given.
pub const DEFAULT_MAX_RETRIES: u32 = 5;

/// Options shared by commands that call models.
#[derive(Debug, clap::Args, Clone)]
pub struct ModelArgs {
    /// Read connections from this file instead of the nearest .env (from the current
    /// directory up to the project root).
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// Read promptflow connection files (*.yml, `${env:VAR}` for secrets) from this folder
    /// instead of the project root's connections/.
    #[arg(long, value_name = "DIR")]
    pub connections: Option<PathBuf>,
    /// Answer every model call with the offline echo provider: no network, no key, no cost.
    #[arg(long)]
    pub offline: bool,
    // Options, so that `flow run --resume` knows whether they were given: their defaults
    // (DEFAULT_REQUEST_TIMEOUT_S, DEFAULT_MAX_RETRIES) are written into the help as clap would.
    /// Seconds before a model request times out.
    #[arg(
        long,
        value_name = "SECONDS",
        help = "Seconds before a model request times out [default: 120]",
        long_help = "Seconds before a model request times out\n\n[default: 120]"
    )]
    pub request_timeout: Option<Seconds>,
    /// Retries of a model request on 429, 5xx, timeouts and dropped connections.
    #[arg(
        long,
        value_name = "N",
        help = "Retries of a model request on 429, 5xx, timeouts and dropped connections [default: 5]",
        long_help = "Retries of a model request on 429, 5xx, timeouts and dropped connections\n\n[default: 5]"
    )]
    pub max_retries: Option<u32>,
    /// Model prices (JSON or YAML: {"model": {"input": 0.15, "output": 0.6}}, USD per 1M tokens)
    /// over the built-in table [default: $FLOW_PRICES, else .flow/prices.yaml when present].
    #[arg(long, value_name = "FILE")]
    pub prices: Option<PathBuf>,
    #[command(flatten)]
    pub cache: flow::cache::CacheFlags,
}

impl ModelArgs {
    /// `--request-timeout` in seconds, or its default.
    pub fn request_timeout_s(&self) -> f64 {
        self.request_timeout
            .map_or(DEFAULT_REQUEST_TIMEOUT_S, Seconds::as_secs_f64)
    }

    /// `--request-timeout`, or its default.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.request_timeout_s())
    }

    /// `--max-retries`, or its default.
    pub fn retries(&self) -> u32 {
        self.max_retries.unwrap_or(DEFAULT_MAX_RETRIES)
    }
}
