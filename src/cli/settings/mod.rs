//! The settings layer between clap and the commands: the argument groups many commands share
//! (model options, batch options, the printed-results format), the typed values clap parses
//! once (seconds, positive counts), and the deprecated spellings that still work with a
//! warning. A command flattens a group (`#[command(flatten)]`) instead of declaring its flags
//! again, and reads typed values: no command body re-validates a flag.

mod batch;
mod deprecated;
mod model;
mod output;
mod values;

pub use batch::{BatchOptions, DEFAULT_CONCURRENCY};
pub use deprecated::warnings as deprecation_warnings;
pub use model::ModelArgs;
#[cfg(test)]
pub use model::{DEFAULT_MAX_RETRIES, DEFAULT_REQUEST_TIMEOUT_S};
pub use output::{OutputArgs, OutputFormat};
pub use values::{Age, Count, NonNegative, Seconds, SecondsOrOff};
