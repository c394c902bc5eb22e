//! Provider errors: every message names the connection, the URL (never a key) and what to check.

use std::time::Duration;

/// Why an LLM call failed.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// HTTP 401: the key was refused.
    #[error(
        "connection '{connection}': {url} refused the API key (401 Unauthorized): check {key_var}. Server said: {message}"
    )]
    Unauthorized {
        /// Connection name.
        connection: String,
        /// Request URL (no key).
        url: String,
        /// The variable holding the key.
        key_var: String,
        /// The server's (redacted) error message.
        message: String,
    },
    /// HTTP 403: the key is not allowed to do this.
    #[error(
        "connection '{connection}': {url} denied access (403 Forbidden): check that the key in {key_var} has access to this model/deployment. Server said: {message}"
    )]
    Forbidden {
        /// Connection name.
        connection: String,
        /// Request URL.
        url: String,
        /// The variable holding the key.
        key_var: String,
        /// The server's (redacted) error message.
        message: String,
    },
    /// HTTP 404: wrong base URL, model or deployment.
    #[error("connection '{connection}': {url} was not found (404): {hint}. Server said: {message}")]
    NotFound {
        /// Connection name.
        connection: String,
        /// Request URL.
        url: String,
        /// What to check.
        hint: String,
        /// The server's (redacted) error message.
        message: String,
    },
    /// HTTP 400/422: the server rejected the request.
    #[error(
        "connection '{connection}': {url} rejected the request ({status}): {message}. Check the node's model parameters and prompt"
    )]
    BadRequest {
        /// Connection name.
        connection: String,
        /// Request URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The server's (redacted) error message.
        message: String,
    },
    /// HTTP 429: rate limited.
    #[error(
        "connection '{connection}': {url} is rate limiting requests (429): {message}. Lower --concurrency or raise the endpoint's quota"
    )]
    RateLimited {
        /// Connection name.
        connection: String,
        /// Request URL.
        url: String,
        /// The server's `Retry-After`, if any.
        retry_after: Option<Duration>,
        /// The server's (redacted) error message.
        message: String,
    },
    /// Any other HTTP error status (5xx and the rest).
    #[error("connection '{connection}': {url} answered HTTP {status}: {message}")]
    Status {
        /// Connection name.
        connection: String,
        /// Request URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The server's `Retry-After`, if any.
        retry_after: Option<Duration>,
        /// The server's (redacted) error message.
        message: String,
    },
    /// No reply within the request timeout.
    #[error("connection '{connection}': {url} did not answer within {}s: the server is overloaded or hung; retry later or raise the request timeout", after.as_secs_f64())]
    Timeout {
        /// Connection name.
        connection: String,
        /// Request URL.
        url: String,
        /// The timeout.
        after: Duration,
    },
    /// Could not connect at all (refused, DNS failure, TLS failure).
    #[error(
        "connection '{connection}': cannot reach {url}: {reason}. Check {base_var} and that the server is running"
    )]
    Unreachable {
        /// Connection name.
        connection: String,
        /// Request URL.
        url: String,
        /// The variable holding the base URL.
        base_var: String,
        /// What went wrong.
        reason: String,
    },
    /// The connection broke mid-request (reset, closed early).
    #[error("connection '{connection}': the connection to {url} failed: {reason}")]
    Network {
        /// Connection name.
        connection: String,
        /// Request URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The reply was not JSON or not the expected shape.
    #[error(
        "connection '{connection}': {url} sent a reply that is not what the API returns ({reason}); is {base_var} the right kind of endpoint? Reply began: {excerpt:?}"
    )]
    Malformed {
        /// Connection name.
        connection: String,
        /// Request URL.
        url: String,
        /// The variable holding the base URL.
        base_var: String,
        /// What is wrong.
        reason: String,
        /// A short, redacted excerpt of the reply.
        excerpt: String,
    },
    /// The reply was larger than the client accepts: a runaway or hostile endpoint is a clear
    /// line error, not gigabytes of memory.
    #[error(
        "connection '{connection}': {url} sent a reply larger than {} MiB, the most flow reads; the line fails (a model reply is normally a few KiB: check the endpoint and the node's max_tokens)",
        limit / (1024 * 1024)
    )]
    TooLarge {
        /// Connection name.
        connection: String,
        /// Request URL.
        url: String,
        /// The limit, in bytes.
        limit: usize,
    },
    /// The request cannot be built (missing model/deployment, bad header, ...).
    #[error("connection '{connection}': {message}")]
    Config {
        /// Connection name.
        connection: String,
        /// What is wrong and what to set.
        message: String,
    },
    /// The last error after retrying.
    #[error("{source} (after {retries} retries)")]
    Retried {
        /// How many retries were made.
        retries: u32,
        /// The final error.
        #[source]
        source: Box<ProviderError>,
    },
}

impl crate::error::Classify for ProviderError {
    /// An endpoint that cannot be used at all, or a request that cannot be built from the
    /// connection's settings, is not the prompt's fault; anything else fails the line.
    fn class(&self) -> crate::error::ErrorClass {
        use crate::error::ErrorClass;
        if self.endpoint_unusable() {
            ErrorClass::Endpoint
        } else if matches!(self.root(), ProviderError::Config { .. }) {
            ErrorClass::Config
        } else {
            ErrorClass::Quality
        }
    }
}

impl ProviderError {
    /// The error itself, unwrapping [`ProviderError::Retried`].
    pub fn root(&self) -> &ProviderError {
        match self {
            ProviderError::Retried { source, .. } => source.root(),
            other => other,
        }
    }

    /// How many retries were made before giving up.
    pub fn retries(&self) -> u32 {
        match self {
            ProviderError::Retried { retries, .. } => *retries,
            _ => 0,
        }
    }

    /// The endpoint cannot be used at all (bad key, no access, wrong URL/deployment,
    /// unreachable): exit status 3 (docs/cli.md, Exit statuses).
    pub fn endpoint_unusable(&self) -> bool {
        matches!(
            self.root(),
            ProviderError::Unauthorized { .. }
                | ProviderError::Forbidden { .. }
                | ProviderError::NotFound { .. }
                | ProviderError::Unreachable { .. }
        )
    }

    /// Worth retrying: 429, 5xx except 501, timeouts, broken connections.
    pub fn is_retryable(&self) -> bool {
        match self.root() {
            ProviderError::RateLimited { .. }
            | ProviderError::Timeout { .. }
            | ProviderError::Network { .. } => true,
            ProviderError::Status { status, .. } => {
                (*status >= 500 && *status != 501) || *status == 408 || *status == 409
            }
            _ => false,
        }
    }

    /// The HTTP status, when the server answered with an error status.
    pub fn status(&self) -> Option<u16> {
        match self.root() {
            ProviderError::Unauthorized { .. } => Some(401),
            ProviderError::Forbidden { .. } => Some(403),
            ProviderError::NotFound { .. } => Some(404),
            ProviderError::RateLimited { .. } => Some(429),
            ProviderError::BadRequest { status, .. } | ProviderError::Status { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// The server's requested wait before retrying, if it gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.root() {
            ProviderError::RateLimited { retry_after, .. }
            | ProviderError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}
