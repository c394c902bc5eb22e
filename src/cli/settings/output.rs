//! How a command prints its results: `--output text` for people, `--output json` for scripts.

/// The printed-results format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Readable text.
    #[default]
    #[value(alias = "pretty")]
    Text,
    /// One JSON document on stdout, for scripts.
    Json,
}

/// `--output text|json`, shared by every command that prints results for scripts.
#[derive(Debug, clap::Args, Clone, Copy)]
pub struct OutputArgs {
    /// How to print the results: text for people, or json (one JSON document on stdout) for
    /// scripts.
    #[arg(id = "output", long = "output", value_enum, value_name = "FORMAT", default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}
