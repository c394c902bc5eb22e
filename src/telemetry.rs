//! OpenTelemetry traces over OTLP/HTTP, enabled by the standard `OTEL_EXPORTER_OTLP_*`
//! variables: one span per line (the `/score` request when serving) with one child span per
//! node, carrying timing, status, model, tokens and cost — never inputs, outputs or secrets.
//!
//! Spans are encoded as OTLP/JSON (the protobuf JSON mapping every collector accepts at
//! `/v1/traces`) and sent in batches by one background task, so a line never waits on the
//! collector; when the queue is full, spans are dropped and counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::record::{LineResult, NodeRun, Status};

/// Spans queued at most before new ones are dropped.
const QUEUE: usize = 8192;
/// Spans per export request at most.
const BATCH: usize = 512;
/// How long a span waits in the queue at most before it is sent.
const INTERVAL: Duration = Duration::from_secs(1);

/// Where and how to export, from the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// The full URL spans are POSTed to.
    pub traces_url: String,
    /// Extra request headers (`OTEL_EXPORTER_OTLP_HEADERS`, e.g. an API key for the collector).
    pub headers: Vec<(String, String)>,
    /// `service.name` and other resource attributes.
    pub resource: Vec<(String, String)>,
}

impl OtlpConfig {
    /// The configuration the standard variables describe, or `None` when tracing is off: no
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`, or
    /// `OTEL_SDK_DISABLED=true`, or `OTEL_TRACES_EXPORTER=none`.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Option<OtlpConfig> {
        let var = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
        {
            return None;
        }
        let traces_url = match var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Some(url) => url,
            None => format!(
                "{}/v1/traces",
                var("OTEL_EXPORTER_OTLP_ENDPOINT")?.trim_end_matches('/')
            ),
        };
        let mut headers = parse_pairs(&var("OTEL_EXPORTER_OTLP_HEADERS").unwrap_or_default());
        headers.extend(parse_pairs(
            &var("OTEL_EXPORTER_OTLP_TRACES_HEADERS").unwrap_or_default(),
        ));
        let mut resource = parse_pairs(&var("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default());
        let service = var("OTEL_SERVICE_NAME")
            .or_else(|| {
                resource
                    .iter()
                    .find(|(k, _)| k == "service.name")
                    .map(|(_, v)| v.clone())
            })
            .unwrap_or_else(|| "flow".to_string());
        resource.retain(|(k, _)| k != "service.name");
        resource.insert(0, ("service.name".into(), service));
        resource.push(("service.version".into(), env!("CARGO_PKG_VERSION").into()));
        Some(OtlpConfig {
            traces_url,
            headers,
            resource,
        })
    }

    /// From the process environment.
    pub fn from_env() -> Option<OtlpConfig> {
        Self::from_vars(|k| std::env::var(k).ok())
    }
}

/// `k1=v1,k2=v2` with percent-encoded values (the OTel variable format).
fn parse_pairs(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            let k = k.trim();
            (!k.is_empty()).then(|| (k.to_string(), percent_decode(v.trim())))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A W3C `traceparent`: the caller's trace and span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

impl TraceParent {
    /// Parse `00-<32 hex>-<16 hex>-<2 hex>`; `None` when malformed or all zeros.
    pub fn parse(header: &str) -> Option<TraceParent> {
        let parts: Vec<&str> = header.trim().split('-').collect();
        if parts.len() < 4 || parts[0].len() != 2 || parts[0] == "ff" {
            return None;
        }
        let trace_id: [u8; 16] = hex_decode(parts[1])?.try_into().ok()?;
        let span_id: [u8; 8] = hex_decode(parts[2])?.try_into().ok()?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceParent { trace_id, span_id })
    }
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    while out == [0u8; N] {
        for b in &mut out {
            *b = fastrand::u8(..);
        }
    }
    out
}

/// Nanoseconds since the Unix epoch of a record timestamp (RFC 3339).
fn unix_nanos(timestamp: &str) -> u128 {
    time::OffsetDateTime::parse(timestamp, &time::format_description::well_known::Rfc3339)
        .map(|t| u128::try_from(t.unix_timestamp_nanos()).unwrap_or(0))
        .unwrap_or(0)
}

/// What a line's root span describes.
#[derive(Debug, Clone)]
pub struct LineSpan {
    /// The span's name (`POST /score`, `line 42`).
    pub name: String,
    /// A server span (an HTTP request) rather than an internal one.
    pub server: bool,
    /// Extra attributes (HTTP method, route, status).
    pub attributes: Vec<(String, Value)>,
    /// The caller's trace, when the request carried a `traceparent`.
    pub parent: Option<TraceParent>,
}

enum Message {
    Spans(Vec<Value>),
    Flush(oneshot::Sender<()>),
}

/// The exporter's handle: cheap to clone, shared by every line.
#[derive(Clone)]
pub struct Tracer {
    tx: mpsc::Sender<Message>,
    flow: Arc<str>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer").field("flow", &self.flow).finish()
    }
}

impl Tracer {
    /// Start the exporter task on the current tokio runtime. `flow` names the flow in spans.
    pub fn start(config: OtlpConfig, flow: &str) -> Tracer {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(export_loop(config, rx));
        Tracer {
            tx,
            flow: Arc::from(flow),
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Spans dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Queue the spans of one finished line: the root span and one child per node that ran.
    /// Returns the trace id (hex), for logs.
    pub fn record_line(&self, span: &LineSpan, line: &LineResult) -> String {
        let trace_id = span
            .parent
            .map(|p| p.trace_id)
            .unwrap_or_else(random_bytes::<16>);
        let root_id = random_bytes::<8>();
        let trace_hex = hex(&trace_id);
        let mut attributes = vec![
            (
                "flow.name".to_string(),
                Value::String(self.flow.to_string()),
            ),
            (
                "flow.line_number".to_string(),
                Value::from(line.line_number as u64),
            ),
            (
                "flow.status".to_string(),
                Value::String(status_name(line.status).into()),
            ),
            (
                "gen_ai.usage.input_tokens".to_string(),
                Value::from(line.tokens.prompt_tokens),
            ),
            (
                "gen_ai.usage.output_tokens".to_string(),
                Value::from(line.tokens.completion_tokens),
            ),
            ("flow.cost_usd".to_string(), Value::from(line.cost_usd)),
        ];
        attributes.extend(span.attributes.iter().cloned());
        let mut spans = Vec::with_capacity(line.nodes.len() + 1);
        spans.push(encode_span(
            &trace_hex,
            &hex(&root_id),
            span.parent.map(|p| hex(&p.span_id)).as_deref(),
            &span.name,
            if span.server { 2 } else { 1 },
            unix_nanos(&line.start_time),
            unix_nanos(&line.end_time),
            &attributes,
            line.error.as_ref().map(|e| e.message.as_str()),
        ));
        let root_hex = hex(&root_id);
        for node in line
            .nodes
            .iter()
            .filter(|n| n.status != Status::Bypassed && n.status != Status::Canceled)
        {
            spans.push(node_span(&trace_hex, &root_hex, node));
        }
        let n = spans.len() as u64;
        if self.tx.try_send(Message::Spans(spans)).is_err() {
            self.dropped.fetch_add(n, Ordering::Relaxed);
        }
        trace_hex
    }

    /// Send everything queued so far and wait for it (at most `timeout`).
    pub async fn flush(&self, timeout: Duration) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = tokio::time::timeout(timeout, wait).await;
        }
    }
}

/// A batch run's progress that also exports each finished line's trace.
pub struct TracedProgress<'a> {
    pub inner: &'a dyn crate::batch::Progress,
    pub tracer: Option<Tracer>,
    /// The run's name (an attribute of every line span).
    pub run: String,
}

impl crate::batch::Progress for TracedProgress<'_> {
    fn line_finished(&self, line: &LineResult) {
        self.inner.line_finished(line);
        if let Some(t) = &self.tracer {
            let span = LineSpan {
                name: format!("line {}", line.line_number),
                server: false,
                attributes: vec![("flow.run".into(), Value::String(self.run.clone()))],
                parent: None,
            };
            t.record_line(&span, line);
        }
    }

    fn started(&self, start: &crate::batch::BatchStart) {
        self.inner.started(start);
    }

    fn lines_kept(&self, lines: usize) {
        self.inner.lines_kept(lines);
    }
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Completed => "completed",
        Status::Failed => "failed",
        Status::Bypassed => "bypassed",
        Status::Canceled => "canceled",
    }
}

fn node_span(trace: &str, parent: &str, node: &NodeRun) -> Value {
    let mut attributes = vec![
        ("flow.node".to_string(), Value::String(node.node.clone())),
        (
            "flow.node.status".to_string(),
            Value::String(status_name(node.status).into()),
        ),
    ];
    if let Some(m) = &node.model {
        attributes.push(("gen_ai.response.model".into(), Value::String(m.clone())));
    }
    if let Some(t) = &node.tokens {
        attributes.push((
            "gen_ai.usage.input_tokens".into(),
            Value::from(t.prompt_tokens),
        ));
        attributes.push((
            "gen_ai.usage.output_tokens".into(),
            Value::from(t.completion_tokens),
        ));
    }
    if let Some(c) = node.cost_usd {
        attributes.push(("flow.cost_usd".into(), Value::from(c)));
    }
    if node.cached {
        attributes.push(("flow.cache_hit".into(), Value::Bool(true)));
    }
    if node.retries > 0 {
        attributes.push(("flow.retries".into(), Value::from(node.retries)));
    }
    if let Some(v) = &node.variant_id {
        attributes.push(("flow.variant_id".into(), Value::String(v.clone())));
    }
    encode_span(
        trace,
        &hex(&random_bytes::<8>()),
        Some(parent),
        &node.node,
        1,
        unix_nanos(&node.start_time),
        unix_nanos(&node.end_time),
        &attributes,
        node.error.as_ref().map(|e| e.message.as_str()),
    )
}

fn attribute_value(v: &Value) -> Value {
    match v {
        Value::Bool(b) => json!({"boolValue": b}),
        Value::Number(n) if n.is_i64() || n.is_u64() => json!({"intValue": n.to_string()}),
        Value::Number(n) => json!({"doubleValue": n.as_f64().unwrap_or(0.0)}),
        Value::String(s) => json!({"stringValue": s}),
        other => json!({"stringValue": other.to_string()}),
    }
}

fn attributes_json(attrs: &[(String, Value)]) -> Value {
    Value::Array(
        attrs
            .iter()
            .map(|(k, v)| json!({"key": k, "value": attribute_value(v)}))
            .collect(),
    )
}

#[allow(clippy::too_many_arguments)]
fn encode_span(
    trace: &str,
    span: &str,
    parent: Option<&str>,
    name: &str,
    kind: u8,
    start: u128,
    end: u128,
    attributes: &[(String, Value)],
    error: Option<&str>,
) -> Value {
    let mut s = json!({
        "traceId": trace,
        "spanId": span,
        "name": name,
        "kind": kind,
        "startTimeUnixNano": start.to_string(),
        "endTimeUnixNano": end.max(start).to_string(),
        "attributes": attributes_json(attributes),
        "status": match error {
            Some(m) => json!({"code": 2, "message": m}),
            None => json!({"code": 1}),
        },
    });
    if let Some(p) = parent {
        s["parentSpanId"] = Value::String(p.to_string());
    }
    s
}

/// The request body of one export.
fn export_body(config: &OtlpConfig, spans: Vec<Value>) -> Value {
    let resource: Vec<(String, Value)> = config
        .resource
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({"resourceSpans": [{
        "resource": {"attributes": attributes_json(&resource)},
        "scopeSpans": [{
            "scope": {"name": "flow", "version": env!("CARGO_PKG_VERSION")},
            "spans": spans,
        }],
    }]})
}

async fn export_loop(config: OtlpConfig, mut rx: mpsc::Receiver<Message>) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("warning: OpenTelemetry export is off: {e}");
            return;
        }
    };
    let mut buffer: Vec<Value> = Vec::new();
    let mut warned = false;
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut flush_done = None;
        let mut closed = false;
        let mut due = false;
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Message::Spans(s)) => buffer.extend(s),
                Some(Message::Flush(done)) => flush_done = Some(done),
                None => closed = true,
            },
            _ = tick.tick() => due = true,
        }
        let send_all = due || closed || flush_done.is_some();
        while buffer.len() >= BATCH || (send_all && !buffer.is_empty()) {
            let take = buffer.len().min(BATCH);
            let batch: Vec<Value> = buffer.drain(..take).collect();
            if let Err(e) = send(&client, &config, batch).await {
                if !warned {
                    eprintln!(
                        "warning: could not export traces to {}: {e} (spans are dropped; the flow is not affected)",
                        config.traces_url
                    );
                    warned = true;
                }
            }
        }
        if let Some(done) = flush_done {
            let _ = done.send(());
        }
        if closed {
            return;
        }
    }
}

async fn send(
    client: &reqwest::Client,
    config: &OtlpConfig,
    spans: Vec<Value>,
) -> Result<(), String> {
    let mut req = client
        .post(&config.traces_url)
        .header("content-type", "application/json")
        .body(export_body(config, spans).to_string());
    for (k, v) in &config.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("the collector answered {}", resp.status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_standard_variables_configure_the_exporter() {
        assert_eq!(OtlpConfig::from_vars(vars(&[])), None);
        let c = OtlpConfig::from_vars(vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=a%3Db,tenant = t1"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod,service.name=ignored",
            ),
            ("OTEL_SERVICE_NAME", "chat-api"),
        ]))
        .unwrap();
        assert_eq!(c.traces_url, "http://collector:4318/v1/traces");
        assert_eq!(
            c.headers,
            vec![
                ("x-api-key".into(), "a=b".into()),
                ("tenant".into(), "t1".into())
            ]
        );
        assert_eq!(c.resource[0], ("service.name".into(), "chat-api".into()));
        assert!(
            c.resource
                .contains(&("deployment.environment".into(), "prod".into()))
        );
        let c = OtlpConfig::from_vars(vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:4318/custom"),
        ]))
        .unwrap();
        assert_eq!(c.traces_url, "http://b:4318/custom");
        assert_eq!(
            OtlpConfig::from_vars(vars(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
                ("OTEL_SDK_DISABLED", "true"),
            ])),
            None
        );
    }

    #[test]
    fn traceparent_parses() {
        let p =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(hex(&p.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&p.span_id), "00f067aa0ba902b7");
        assert!(
            TraceParent::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none()
        );
        assert!(TraceParent::parse("garbage").is_none());
        assert!(TraceParent::parse("00-4bf92f35-00f067aa0ba902b7-01").is_none());
    }

    #[test]
    fn timestamps_become_unix_nanos() {
        assert_eq!(unix_nanos("1970-01-01T00:00:01.000002Z"), 1_000_002_000);
    }
}
