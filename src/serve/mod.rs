//! `flow serve`: one prepared flow behind an HTTP API (axum on tokio). The flow is loaded and
//! prepared once (templates compiled, connections resolved, Python workers started); each
//! `POST /score` then runs one line on the shared [`Executor`], concurrently with the others.
//!
//! Routes: `POST /score` (JSON inputs → JSON outputs, or Server-Sent Events with
//! `Accept: text/event-stream`), `GET /health` (liveness), `GET /ready` (readiness),
//! `GET /metrics` (Prometheus), `GET /openapi.json`. Optional bearer-token auth, a body size
//! limit, a per-request timeout, and a graceful shutdown that finishes in-flight requests.

pub mod error;
pub mod log;
pub mod metrics;
pub mod openapi;
pub mod request;
mod routes;
mod stream;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::Value;

use crate::connection::Secret;
use crate::executor::{Executor, StreamOutput};

pub use metrics::Metrics;
pub use routes::router;

/// How the server treats requests.
#[derive(Debug)]
pub struct ServeConfig {
    /// How long one `/score` request may run before it is answered with 504.
    pub request_timeout: Duration,
    /// The largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// The bearer token every route but `/health` and `/ready` requires (`FLOW_SERVE_TOKEN`).
    pub token: Option<Secret>,
    /// Write one JSON log line per request to stderr.
    pub request_log: bool,
    /// Export a trace per request (OTLP), when configured.
    pub tracer: Option<crate::telemetry::Tracer>,
}

/// Everything the routes share: the executor once the flow is prepared, metrics, settings.
pub struct ServeState {
    config: ServeConfig,
    executor: OnceLock<Executor>,
    stream: Option<StreamOutput>,
    openapi: Value,
    metrics: Arc<Metrics>,
    draining: AtomicBool,
}

impl ServeState {
    /// The state of a server that is still preparing its flow: `/health` answers, `/ready`
    /// and `/score` answer 503 until [`set_ready`](Self::set_ready).
    pub fn new(config: ServeConfig, openapi: Value, stream: Option<StreamOutput>) -> Arc<Self> {
        Arc::new(ServeState {
            config,
            executor: OnceLock::new(),
            stream,
            openapi,
            metrics: Arc::new(Metrics::default()),
            draining: AtomicBool::new(false),
        })
    }

    /// The flow is prepared: start taking requests.
    pub fn set_ready(&self, executor: Executor) {
        // A second call keeps the first executor; there is only one per server.
        let _ = self.executor.set(executor);
    }

    /// The executor, once the flow is prepared.
    pub fn executor(&self) -> Option<&Executor> {
        self.executor.get()
    }

    /// Ready for traffic: prepared and not shutting down.
    pub fn is_ready(&self) -> bool {
        self.executor.get().is_some() && !self.draining.load(Ordering::Relaxed)
    }

    /// Stop reporting ready (the load balancer takes the instance out) while in-flight
    /// requests finish.
    pub fn begin_shutdown(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The settings.
    pub fn config(&self) -> &ServeConfig {
        &self.config
    }

    /// Stop the executor's Python workers and send the last traces (after the server has
    /// stopped).
    pub async fn shutdown_executor(&self) {
        if let Some(e) = self.executor.get() {
            e.shutdown().await;
        }
        if let Some(t) = &self.config.tracer {
            t.flush(Duration::from_secs(5)).await;
        }
    }
}

/// Serve on `listener` until `shutdown` resolves, then stop accepting connections and wait for
/// the requests in flight (streams included) to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ServeState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Resolves on SIGTERM (what Kubernetes and `docker stop` send) or Ctrl-C, naming it.
pub async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "Ctrl-C",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "Ctrl-C"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

/// Compares a presented token with the expected one in time independent of where they differ.
pub(crate) fn token_matches(presented: &str, expected: &str) -> bool {
    let (a, b) = (presented.as_bytes(), expected.as_bytes());
    let mut diff = a.len() ^ b.len();
    for (i, &x) in b.iter().enumerate() {
        diff |= usize::from(x ^ a.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        assert!(token_matches("s3cret", "s3cret"));
        assert!(!token_matches("s3cre", "s3cret"));
        assert!(!token_matches("s3cretX", "s3cret"));
        assert!(!token_matches("", "s3cret"));
        assert!(!token_matches("S3cret", "s3cret"));
    }
}
