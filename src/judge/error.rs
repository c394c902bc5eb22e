//! Judge errors: each says what is wrong and what to do.

use std::sync::Arc;

use crate::cache::CacheError;
use crate::connection::ConnectionError;
use crate::provider::ProviderError;
use crate::template::TemplateError;

/// Why a judge could not be configured or could not judge a line.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// The evaluator name is not a known rubric.
    #[error(
        "unknown judge '{name}': the LLM judges are relevance, coherence, fluency, groundedness and similarity"
    )]
    UnknownRubric {
        /// The name given.
        name: String,
    },
    /// The spec names no connection (a judge never falls back to a default one).
    #[error(
        "judge '{spec}' names no connection: a judge calls a model only through a connection you name, e.g. '{spec}:connection=open_ai_connection,model=gpt-4o-mini'"
    )]
    NoConnection {
        /// The spec as given.
        spec: String,
    },
    /// The named connection resolved only through the standard `OPENAI_*`/`AZURE_OPENAI_*`
    /// variables: a judge never uses a key the user did not give it.
    #[error(
        "judge '{judge}': connection '{connection}' is not configured ({prefix}_* variables); a judge only uses a connection you configure for it and never falls back to OPENAI_API_KEY or AZURE_OPENAI_API_KEY: set {prefix}_API_KEY (and {prefix}_API_BASE, {prefix}_MODEL) in {env_file}"
    )]
    ImplicitConnection {
        /// The evaluator name.
        judge: String,
        /// The connection named.
        connection: String,
        /// Its variable prefix.
        prefix: String,
        /// The env file the variables were read from.
        env_file: String,
    },
    /// The spec's options are malformed.
    #[error("evaluator '{spec}': {message}")]
    BadSpec {
        /// The spec as given.
        spec: String,
        /// What is wrong and how to write it.
        message: String,
    },
    /// The named connection does not resolve.
    #[error("judge '{judge}': {source}")]
    Connection {
        /// The evaluator name.
        judge: String,
        /// Why the connection did not resolve.
        #[source]
        source: ConnectionError,
    },
    /// The shipped prompt failed to compile or render (a bug in `flow`, or a data value the
    /// template cannot print).
    #[error("judge '{judge}': its prompt failed: {source}")]
    Template {
        /// The evaluator name.
        judge: String,
        /// The template error.
        #[source]
        source: TemplateError,
    },
    /// A line lacks a field the rubric needs.
    #[error(
        "judge '{judge}' needs '{field}' but the line has none: map it with --column-mapping {field}='${{data.<column>}}' (or '${{run.outputs.<output>}}')"
    )]
    MissingInput {
        /// The evaluator name.
        judge: String,
        /// The missing field.
        field: &'static str,
    },
    /// The model call failed.
    #[error("judge '{judge}': {source}")]
    Provider {
        /// The evaluator name.
        judge: String,
        /// The provider error (shared: the cache hands one error to every waiter).
        #[source]
        source: Arc<ProviderError>,
    },
    /// `--cache replay` and this judge call was never recorded.
    #[error("judge '{judge}': {message}")]
    ReplayMiss {
        /// The evaluator name.
        judge: String,
        /// The cache's explanation.
        message: String,
    },
}

impl crate::error::Classify for JudgeError {
    fn class(&self) -> crate::error::ErrorClass {
        use crate::error::ErrorClass;
        if self.endpoint_unusable() {
            ErrorClass::Endpoint
        } else if self.is_config() || matches!(self, JudgeError::ReplayMiss { .. }) {
            ErrorClass::Config
        } else {
            ErrorClass::Quality
        }
    }
}

impl JudgeError {
    /// The endpoint cannot be used at all (exit status 3).
    pub fn endpoint_unusable(&self) -> bool {
        matches!(self, JudgeError::Provider { source, .. } if source.endpoint_unusable())
    }

    /// A configuration problem found before any line is judged (exit status 2).
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            JudgeError::UnknownRubric { .. }
                | JudgeError::NoConnection { .. }
                | JudgeError::ImplicitConnection { .. }
                | JudgeError::BadSpec { .. }
                | JudgeError::Connection { .. }
        )
    }

    pub(crate) fn from_cache(judge: &str, e: CacheError) -> Self {
        match e {
            CacheError::Provider(source) => JudgeError::Provider {
                judge: judge.to_string(),
                source,
            },
            other => JudgeError::ReplayMiss {
                judge: judge.to_string(),
                message: other.to_string(),
            },
        }
    }
}
