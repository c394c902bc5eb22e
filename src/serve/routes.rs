//! The HTTP routes and the middleware in front of them (auth, metrics, request log).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::{ServeState, request, stream, token_matches};

/// Routes that answer without the bearer token: probes carry none.
const OPEN_ROUTES: &[&str] = &["/health", "/ready"];

/// The router of a server.
pub fn router(state: Arc<ServeState>) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/score", post(score))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/swagger.json", get(openapi))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// The metrics label of a path: known routes by name, anything else as `other` (so scanners
/// cannot grow the label set).
fn route_label(path: &str) -> &'static str {
    match path {
        "/score" => "/score",
        "/health" => "/health",
        "/ready" => "/ready",
        "/metrics" => "/metrics",
        "/openapi.json" => "/openapi.json",
        "/swagger.json" => "/swagger.json",
        _ => "other",
    }
}

/// Bearer auth, then the route; counts the answer and logs it.
async fn guard(State(state): State<Arc<ServeState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = route_label(request.uri().path());
    let method = request.method().to_string();
    let response = match &state.config.token {
        Some(token) if !OPEN_ROUTES.contains(&route) && !authorized(request.headers(), token.expose()) => {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "this endpoint needs `Authorization: Bearer <token>` with the server's FLOW_SERVE_TOKEN",
            )
            .into_response()
        }
        _ => next.run(request).await,
    };
    let status = response.status().as_u16();
    state.metrics.record_request(route, status);
    // A streamed answer is logged when its stream ends, with its real duration and outcome.
    let streamed = response.extensions().get::<Streamed>().is_some();
    if !streamed {
        let trace = response.extensions().get::<TraceId>().map(|t| t.0.clone());
        log_request(
            &state,
            &method,
            route,
            status,
            started.elapsed(),
            trace,
            false,
        );
    }
    response
}

/// Marks a response whose body streams: the request is logged when the stream ends.
#[derive(Clone, Copy)]
pub(super) struct Streamed;

/// One request line of the request log: `status` is what the request came to (for a stream,
/// the status its outcome would have had unstreamed: 504 for a timeout, the line error's).
pub(super) fn log_request(
    state: &ServeState,
    method: &str,
    route: &str,
    status: u16,
    duration: std::time::Duration,
    trace_id: Option<String>,
    streamed: bool,
) {
    if !state.config.request_log {
        return;
    }
    let mut fields = Map::new();
    fields.insert("msg".into(), Value::String("request".into()));
    fields.insert("method".into(), Value::String(method.into()));
    fields.insert("route".into(), Value::String(route.into()));
    fields.insert("status".into(), Value::from(status));
    fields.insert(
        "duration_ms".into(),
        Value::from(crate::record::millis(duration)),
    );
    if streamed {
        fields.insert("streamed".into(), Value::Bool(true));
    }
    if let Some(id) = trace_id {
        fields.insert("trace_id".into(), Value::String(id));
    }
    // A 503 from /ready while loading or draining is expected, not an error.
    let level = if status >= 500 && route != "/ready" {
        "error"
    } else {
        "info"
    };
    super::log::write(level, fields);
}

fn authorized(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .any(|presented| token_matches(presented, token))
}

async fn health() -> Response {
    axum::Json(json!({"status": "Healthy", "version": env!("CARGO_PKG_VERSION")})).into_response()
}

async fn ready(State(state): State<Arc<ServeState>>) -> Response {
    if state.is_ready() {
        axum::Json(json!({"status": "Ready"})).into_response()
    } else {
        not_ready(&state).into_response()
    }
}

fn not_ready(state: &ServeState) -> ApiError {
    let message = if state.executor.get().is_some() {
        "the server is shutting down"
    } else {
        "the flow is still loading"
    };
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "NotReady", message)
}

async fn metrics(State(state): State<Arc<ServeState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(state.is_ready()),
    )
        .into_response()
}

async fn openapi(State(state): State<Arc<ServeState>>) -> Response {
    axum::Json(state.openapi.clone()).into_response()
}

async fn not_found(request: Request) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!(
            "no route {} {}: the flow is at POST /score (see GET /openapi.json)",
            request.method(),
            request.uri().path()
        ),
    )
    .into_response()
}

/// Whether the client asked for Server-Sent Events explicitly (`*/*` does not count, as in
/// promptflow).
fn wants_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream"))
        })
}

async fn score(
    State(state): State<Arc<ServeState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(executor) = state.executor.get() else {
        return not_ready(&state).into_response();
    };
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            let status = rejection.status();
            let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "PayloadTooLarge"
            } else {
                "BadRequest"
            };
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!(
                    "the request body is larger than {} bytes (--max-body-bytes)",
                    state.config.max_body_bytes
                )
            } else {
                rejection.body_text()
            };
            return ApiError::new(status, code, message).into_response();
        }
    };
    let inputs = match request::flow_inputs(executor.flow(), &body) {
        Ok(i) => i,
        Err(message) => return ApiError::bad_request(message).into_response(),
    };
    if wants_event_stream(&headers) {
        return stream::respond(state.clone(), inputs, headers).await;
    }
    let _in_flight = state.metrics.start();
    let started = Instant::now();
    match tokio::time::timeout(state.config.request_timeout, executor.run_line(0, &inputs)).await {
        Err(_) => {
            state.metrics.record_timeout(started.elapsed());
            timeout_error(&state).into_response()
        }
        Ok(line) => {
            state.metrics.record_line(&line, started.elapsed());
            let trace = trace_line(&state, &headers, &line, false);
            let mut response = match &line.error {
                Some(e) => {
                    log_failure(&state, e);
                    ApiError::from_line_error(e).into_response()
                }
                None => {
                    let mut outputs = Value::Object(line.outputs);
                    crate::image::to_response(&mut outputs, executor.flow().message_format);
                    crate::non_finite::json_response(&outputs)
                }
            };
            if let Some(id) = trace {
                response.extensions_mut().insert(TraceId(id));
            }
            response
        }
    }
}

/// The trace id of a request (a response extension, for the request log).
#[derive(Debug, Clone)]
struct TraceId(String);

/// Export the request's trace: a server span with the line's node spans under it, continuing
/// the caller's trace when it sent a `traceparent`. Returns the trace id when tracing is on.
pub(super) fn trace_line(
    state: &ServeState,
    headers: &HeaderMap,
    line: &crate::record::LineResult,
    streamed: bool,
) -> Option<String> {
    let tracer = state.config.tracer.as_ref()?;
    let parent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(crate::telemetry::TraceParent::parse);
    let status = match &line.error {
        None => 200,
        Some(e) => ApiError::from_line_error(e).status.as_u16(),
    };
    let span = crate::telemetry::LineSpan {
        name: "POST /score".into(),
        server: true,
        attributes: vec![
            ("http.request.method".into(), Value::String("POST".into())),
            ("http.route".into(), Value::String("/score".into())),
            ("http.response.status_code".into(), Value::from(status)),
            ("flow.streamed".into(), Value::Bool(streamed)),
        ],
        parent,
    };
    Some(tracer.record_line(&span, line))
}

/// The 504 of a request that ran out of time.
pub(super) fn timeout_error(state: &ServeState) -> ApiError {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "Timeout",
        format!(
            "the flow did not finish within {} s (flow serve --timeout)",
            state.config.request_timeout.as_secs_f64()
        ),
    )
}

/// A failed line goes to the log with its traceback (the client gets the message only).
pub(super) fn log_failure(state: &ServeState, e: &crate::record::ErrorInfo) {
    if !state.config.request_log {
        return;
    }
    let mut fields = Map::new();
    fields.insert("msg".into(), Value::String("line failed".into()));
    fields.insert("error".into(), Value::String(e.message.clone()));
    if let Some(node) = &e.node {
        fields.insert("node".into(), Value::String(node.clone()));
    }
    if let Some(tb) = &e.traceback {
        fields.insert("traceback".into(), Value::String(tb.clone()));
    }
    super::log::write("error", fields);
}
