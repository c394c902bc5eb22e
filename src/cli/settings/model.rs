//! The options of every command that calls models.

use std::path::PathBuf;

use super::values::Seconds;

/// Options shared by commands that call models.
#[derive(Debug, clap::Args, Clone)]
pub struct ModelArgs {
    /// Read connections from this file instead of ./.env.
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// Answer every model call with the offline echo provider: no network, no key, no cost.
    #[arg(long)]
    pub offline: bool,
    /// Seconds before a model request times out.
    #[arg(long, value_name = "SECONDS", default_value = "120")]
    pub request_timeout: Seconds,
    /// Retries of a model request on 429, 5xx, timeouts and dropped connections.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub max_retries: u32,
    /// Model prices (JSON or YAML: {"model": {"input": 0.15, "output": 0.6}}, USD per 1M tokens)
    /// over the built-in table [default: $FLOW_PRICES, else .flow/prices.yaml when present].
    #[arg(long, value_name = "FILE")]
    pub prices: Option<PathBuf>,
    #[command(flatten)]
    pub cache: flow::cache::CacheFlags,
}
