//! The options of every command that runs a flow over a dataset: `flow run --data`, `flow eval`
//! (its evaluation flow) and `flow experiment`.

use super::values::{Count, Seconds};

/// Lines in flight at once by default. Hosted endpoints (OpenAI, Azure OpenAI) serve each
/// request in about a second and allow hundreds to thousands of requests per minute on common
/// tiers: 32 concurrent requests reach 20-30 requests/s, enough to use such a quota without
/// tripping it at once; the adaptive limiter backs off when an endpoint says it is too much.
pub const DEFAULT_CONCURRENCY: usize = 32;

/// Options shared by the commands that run batches. Their help speaks of `flow run`; `flow eval`
/// and `flow experiment` word it for themselves (`#[command(mut_arg(...))]`).
#[derive(Debug, clap::Args, Clone)]
pub struct BatchOptions {
    /// The run's name (default: <flow>_<variant>_<timestamp>).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    // An Option, so that `flow run --resume` knows whether it was given: its default
    // (DEFAULT_CONCURRENCY) is written into the help as clap would.
    /// Lines in flight at once.
    #[arg(
        long,
        value_name = "N",
        help = "Lines in flight at once [default: 32]",
        long_help = "Lines in flight at once

[default: 32]"
    )]
    pub concurrency: Option<Count>,
    /// Fail a line that runs longer than this many seconds [default: 600, as promptflow].
    #[arg(long, value_name = "SECONDS")]
    pub line_timeout: Option<Seconds>,
}

impl BatchOptions {
    /// Lines in flight at once (read through here, so the flag can become optional, e.g. to
    /// tell a resumed run's own value from one given again, without touching the commands).
    pub fn concurrency(&self) -> usize {
        self.concurrency.map_or(DEFAULT_CONCURRENCY, Count::get)
    }
}
