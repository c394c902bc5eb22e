//! One HTTP attempt: send, map error statuses, parse or stream the reply.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use super::limiter::RateInfo;
use super::retry::parse_retry_after;
use super::sse::{SseEvent, SseParser};
use super::{
    DeltaFn, LlmClient, LlmRequest, LlmResponse, Prepared, Protocol, ProviderError, anthropic,
    openai,
};
use crate::connection::{ApiType, Connection, Redactor};

/// Longest excerpt of a bad reply shown in an error.
const EXCERPT_CHARS: usize = 200;

/// Sends one attempt. Sets `emitted` once a streamed delta reached `on_delta`, and `rate` from
/// the reply's `x-ratelimit-*` headers.
pub(crate) async fn attempt(
    client: &LlmClient,
    conn: &Connection,
    req: &LlmRequest,
    p: &Prepared,
    on_delta: Option<DeltaFn<'_>>,
    emitted: &mut bool,
    rate: &mut RateInfo,
) -> Result<LlmResponse, ProviderError> {
    let timeout = client.config.timeout;
    let mut rb = client.http.post(&p.url).body(p.body.clone());
    for (k, v) in &p.headers {
        rb = rb.header(k.as_str(), v.as_str());
    }
    rb = with_entra_token(rb, &client.http, conn).await?;
    let timed_out = || ProviderError::Timeout {
        connection: conn.name.clone(),
        url: p.url.clone(),
        after: timeout,
    };
    if !req.stream {
        let fut = async {
            let resp = rb
                .send()
                .await
                .map_err(|e| transport_error(conn, p, &e, timeout))?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let bytes = read_body(resp, client.config.max_reply_bytes, conn, &p.url)
                .await
                .map_err(|e| e.into_provider(conn, p, timeout))?;
            Ok::<_, ProviderError>((status, headers, bytes))
        };
        let (status, headers, bytes) = tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| timed_out())??;
        *rate = RateInfo::from_headers(&headers);
        if !status.is_success() {
            return Err(status_error(
                conn,
                p,
                req,
                status.as_u16(),
                &headers,
                &bytes,
            ));
        }
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| malformed(conn, p, &format!("not JSON: {e}"), &bytes))?;
        let parsed = match p.protocol {
            Protocol::OpenAi => openai::parse(&v, req),
            Protocol::Anthropic => anthropic::parse(&v, req),
        };
        return parsed.map_err(|reason| malformed(conn, p, &reason, &bytes));
    }

    let resp = tokio::time::timeout(timeout, rb.send())
        .await
        .map_err(|_| timed_out())?
        .map_err(|e| transport_error(conn, p, &e, timeout))?;
    let status = resp.status();
    *rate = RateInfo::from_headers(resp.headers());
    if !status.is_success() {
        let headers = resp.headers().clone();
        let bytes = tokio::time::timeout(
            timeout,
            read_body(resp, client.config.max_reply_bytes, conn, &p.url),
        )
        .await
        .map_err(|_| timed_out())?
        .map_err(|e| e.into_provider(conn, p, timeout))?;
        return Err(status_error(
            conn,
            p,
            req,
            status.as_u16(),
            &headers,
            &bytes,
        ));
    }
    let mut stream = resp.bytes_stream();
    let mut parser = SseParser::new();
    let mut events: Vec<SseEvent> = Vec::new();
    let mut state = StreamState::new(p.protocol);
    let mut received = 0usize;
    loop {
        let next = tokio::time::timeout(timeout, stream.next())
            .await
            .map_err(|_| timed_out())?;
        match next {
            Some(Ok(chunk)) => {
                received += chunk.len();
                if received > client.config.max_reply_bytes {
                    return Err(ProviderError::TooLarge {
                        connection: conn.name.clone(),
                        url: p.url.clone(),
                        limit: client.config.max_reply_bytes,
                    });
                }
                parser.feed(&chunk, &mut events)
            }
            Some(Err(e)) => return Err(transport_error(conn, p, &e, timeout)),
            None => {
                parser.finish(&mut events);
                state
                    .handle(&events, on_delta, emitted)
                    .map_err(|reason| malformed(conn, p, &reason, last_data(&events)))?;
                break;
            }
        }
        state
            .handle(&events, on_delta, emitted)
            .map_err(|reason| malformed(conn, p, &reason, last_data(&events)))?;
        events.clear();
        if state.is_done() {
            break;
        }
    }
    Ok(state.finish(req))
}

/// Why a reply body could not be read.
pub(crate) enum BodyError {
    Transport(reqwest::Error),
    TooLarge(ProviderError),
}

impl BodyError {
    fn into_provider(self, conn: &Connection, p: &Prepared, timeout: Duration) -> ProviderError {
        match self {
            BodyError::Transport(e) => transport_error(conn, p, &e, timeout),
            BodyError::TooLarge(e) => e,
        }
    }

    /// The provider error, with `transport` mapping a transport failure.
    pub(crate) fn or_transport(
        self,
        transport: impl FnOnce(reqwest::Error) -> ProviderError,
    ) -> ProviderError {
        match self {
            BodyError::Transport(e) => transport(e),
            BodyError::TooLarge(e) => e,
        }
    }
}

/// The reply's body, read chunk by chunk and refused as soon as it grows past `limit` bytes (or
/// at once when its `Content-Length` says it will), so a runaway endpoint cannot fill memory.
pub(crate) async fn read_body(
    resp: reqwest::Response,
    limit: usize,
    conn: &Connection,
    url: &str,
) -> Result<Vec<u8>, BodyError> {
    let too_large = || {
        BodyError::TooLarge(ProviderError::TooLarge {
            connection: conn.name.clone(),
            url: url.to_string(),
            limit,
        })
    };
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(BodyError::Transport)?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn last_data(events: &[SseEvent]) -> &[u8] {
    events.last().map_or(&[], |e| e.data.as_bytes())
}

/// Per-protocol stream assembly.
enum StreamState {
    OpenAi(openai::StreamState),
    Anthropic(anthropic::StreamState),
}

impl StreamState {
    fn new(p: Protocol) -> Self {
        match p {
            Protocol::OpenAi => StreamState::OpenAi(Default::default()),
            Protocol::Anthropic => StreamState::Anthropic(Default::default()),
        }
    }

    fn handle(
        &mut self,
        events: &[SseEvent],
        on_delta: Option<DeltaFn<'_>>,
        emitted: &mut bool,
    ) -> Result<(), String> {
        for ev in events {
            match self {
                StreamState::OpenAi(s) => s.on_event(ev, on_delta, emitted)?,
                StreamState::Anthropic(s) => {
                    if ev.event == "ping" {
                        continue;
                    }
                    s.on_event(ev, on_delta, emitted)?
                }
            }
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        match self {
            StreamState::OpenAi(s) => s.is_done(),
            StreamState::Anthropic(s) => s.is_done(),
        }
    }

    fn finish(self, req: &LlmRequest) -> LlmResponse {
        match self {
            StreamState::OpenAi(s) => s.finish(req),
            StreamState::Anthropic(s) => s.finish(req),
        }
    }
}

/// Maps a reqwest failure (no HTTP status) to an error.
fn transport_error(
    conn: &Connection,
    p: &Prepared,
    e: &reqwest::Error,
    timeout: Duration,
) -> ProviderError {
    let mut reason = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let s_text = s.to_string();
        if !reason.contains(&s_text) {
            reason.push_str(": ");
            reason.push_str(&s_text);
        }
        src = s.source();
    }
    let reason = conn.redactor().redact(&reason).into_owned();
    if e.is_timeout() {
        ProviderError::Timeout {
            connection: conn.name.clone(),
            url: p.url.clone(),
            after: timeout,
        }
    } else if e.is_connect() {
        ProviderError::Unreachable {
            connection: conn.name.clone(),
            url: p.url.clone(),
            base_var: conn.base_var(),
            reason,
        }
    } else {
        ProviderError::Network {
            connection: conn.name.clone(),
            url: p.url.clone(),
            reason,
        }
    }
}

/// A short redacted excerpt of a body.
fn excerpt(redactor: &Redactor, bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let short: String = text.chars().take(EXCERPT_CHARS).collect();
    let mut out = redactor.redact(&short).into_owned();
    if text.chars().count() > EXCERPT_CHARS {
        out.push('…');
    }
    out
}

fn malformed(conn: &Connection, p: &Prepared, reason: &str, bytes: &[u8]) -> ProviderError {
    let r = conn.redactor();
    ProviderError::Malformed {
        connection: conn.name.clone(),
        url: p.url.clone(),
        base_var: conn.base_var(),
        reason: r.redact(reason).into_owned(),
        excerpt: excerpt(&r, bytes),
    }
}

/// The server's error message: `error.message`, `message`, `detail`, or a body excerpt.
fn server_message(redactor: &Redactor, bytes: &[u8]) -> String {
    let from_json = serde_json::from_slice::<Value>(bytes).ok().and_then(|v| {
        let pick = |v: &Value| v.as_str().map(str::to_string);
        v.get("error")
            .and_then(|e| e.get("message").and_then(pick).or_else(|| pick(e)))
            .or_else(|| v.get("message").and_then(pick))
            .or_else(|| v.get("detail").and_then(pick))
    });
    match from_json {
        Some(m) => redactor.redact(&m).into_owned(),
        None if bytes.is_empty() => "(empty body)".to_string(),
        None => excerpt(redactor, bytes),
    }
}

/// Maps an HTTP error status of a chat or completion request to an error.
fn status_error(
    conn: &Connection,
    p: &Prepared,
    req: &LlmRequest,
    status: u16,
    headers: &reqwest::header::HeaderMap,
    bytes: &[u8],
) -> ProviderError {
    error_for_status(
        conn,
        &p.url,
        status,
        headers,
        bytes,
        not_found_hint(conn, p, req),
    )
}

/// Maps an HTTP error status from `url` to an error naming the connection and what to check
/// (`not_found_hint` for a 404); the server's message is redacted.
pub(crate) fn error_for_status(
    conn: &Connection,
    url: &str,
    status: u16,
    headers: &reqwest::header::HeaderMap,
    bytes: &[u8],
    not_found_hint: String,
) -> ProviderError {
    let redactor = conn.redactor();
    let message = server_message(&redactor, bytes);
    let connection = conn.name.clone();
    let url = url.to_string();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let retry_after = parse_retry_after(header("retry-after-ms"), header("retry-after"));
    match status {
        401 => ProviderError::Unauthorized {
            connection,
            url,
            key_var: conn.key_var(),
            message,
        },
        403 => ProviderError::Forbidden {
            connection,
            url,
            key_var: conn.key_var(),
            message,
        },
        404 => ProviderError::NotFound {
            hint: not_found_hint,
            connection,
            url,
            message,
        },
        400 | 422 => ProviderError::BadRequest {
            connection,
            url,
            status,
            message,
        },
        429 => ProviderError::RateLimited {
            connection,
            url,
            retry_after,
            message,
        },
        _ => ProviderError::Status {
            connection,
            url,
            status,
            retry_after,
            message,
        },
    }
}

fn not_found_hint(conn: &Connection, p: &Prepared, req: &LlmRequest) -> String {
    let prefix = crate::connection::env_prefix(&conn.name);
    let model = p.model.as_deref().unwrap_or("(none)");
    let base_var = conn.base_var();
    match conn.api_type {
        ApiType::Azure => format!(
            "check the deployment name '{model}' (the node's deployment_name or {prefix}_DEPLOYMENT), {base_var} and the api-version"
        ),
        _ if req.model.is_none() => format!(
            "check the model '{model}' ({prefix}_MODEL) and {base_var} (an OpenAI-compatible base usually ends in /v1)"
        ),
        _ => format!(
            "check the model '{model}' (the node's model) and {base_var} (an OpenAI-compatible base usually ends in /v1)"
        ),
    }
}

/// `rb` with the connection's Entra ID token as `Authorization: Bearer`, for a keyless Azure
/// connection (`auth_mode: meid_token`); `rb` as it is for every other connection.
pub(crate) async fn with_entra_token(
    rb: reqwest::RequestBuilder,
    http: &reqwest::Client,
    conn: &Connection,
) -> Result<reqwest::RequestBuilder, ProviderError> {
    let Some(identity) = &conn.entra else {
        return Ok(rb);
    };
    let token = crate::connection::entra::bearer(http, identity)
        .await
        .map_err(|e| ProviderError::Config {
            connection: conn.name.clone(),
            message: e.to_string(),
        })?;
    Ok(rb.bearer_auth(token.expose()))
}
