//! OpenTelemetry export (OTLP/HTTP JSON) from `flow serve` and from batch runs, to a loopback
//! collector: one span per request or line, one child per node, the caller's trace continued,
//! the standard variables honoured, and no secret in any span.

use std::time::{Duration, Instant};

use crate::support::context::{TEST_KEY, TestContext};
use crate::support::otlp::{Collector, attribute};
use crate::support::server::Server;
use serde_json::Value;

const FLOW: &str = r#"
inputs:
  question:
    type: string
outputs:
  answer:
    type: string
    reference: ${shout.output}
nodes:
- name: ask
  type: llm
  source:
    type: code
    path: ask.jinja2
  inputs:
    model: gpt-4o-mini
    question: ${inputs.question}
  connection: open_ai_connection
  api: chat
- name: shout
  type: python
  source:
    type: code
    path: shout.py
  inputs:
    text: ${ask.output}
"#;

fn traced_flow(ctx: &TestContext) {
    ctx.flow(
        "traced",
        &[
            ("flow.dag.yaml", FLOW),
            ("ask.jinja2", "user:\n{{question}}\n"),
            (
                "shout.py",
                "from promptflow import tool\n\n@tool\ndef shout(text: str) -> str:\n    return text.upper()\n",
            ),
        ],
    );
}

fn wait_for_spans(collector: &Collector, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let spans = collector.spans();
        if spans.len() >= n || Instant::now() > deadline {
            return spans;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_exports_a_server_span_per_request_with_a_span_per_node() {
    let ctx = TestContext::with_mock();
    traced_flow(&ctx);
    let collector = Collector::start();
    let mut server = Server::ready(
        &ctx,
        "traced",
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url.as_str()),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-collector-key=abc%20123"),
            ("OTEL_SERVICE_NAME", "traced-api"),
        ],
    );
    let parent_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let a = server.post(
        "/score",
        &[(
            "traceparent",
            &format!("00-{parent_trace}-00f067aa0ba902b7-01"),
        )],
        r#"{"question": "hello there"}"#,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(server.score(r#"{"question": "second"}"#).status, 200);
    // The request log names the trace.
    assert!(
        server
            .log()
            .contains(&format!("\"trace_id\":\"{parent_trace}\"")),
        "{}",
        server.log()
    );
    // Spans go out in batches within a second; SIGTERM flushes what is left.
    server.terminate();
    assert_eq!(server.wait_exit(Duration::from_secs(10)), 0);
    let spans = wait_for_spans(&collector, 6);
    assert_eq!(spans.len(), 6, "{spans:#?}");
    let roots: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"] == "POST /score")
        .collect();
    assert_eq!(roots.len(), 2);
    let first = roots
        .iter()
        .find(|s| s["traceId"] == parent_trace)
        .expect("the caller's trace is continued");
    assert_eq!(first["parentSpanId"], "00f067aa0ba902b7");
    assert_eq!(first["kind"], 2);
    assert_eq!(first["status"]["code"], 1);
    assert_eq!(
        attribute(first, "http.response.status_code"),
        Some(Value::from("200"))
    );
    assert_eq!(attribute(first, "flow.name"), Some(Value::from("traced")));
    let second = roots.iter().find(|s| s["traceId"] != parent_trace).unwrap();
    assert!(second.get("parentSpanId").is_none());
    for root in &roots {
        let children: Vec<&Value> = spans
            .iter()
            .filter(|s| s["parentSpanId"] == root["spanId"])
            .collect();
        let mut names: Vec<&str> = children
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["ask", "shout"]);
        for c in &children {
            assert_eq!(c["traceId"], root["traceId"]);
            let start: u128 = c["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
            let end: u128 = c["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
            let root_start: u128 = root["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
            assert!(start >= root_start && end >= start, "{c}");
        }
        let ask = children.iter().find(|s| s["name"] == "ask").unwrap();
        assert_eq!(
            attribute(ask, "gen_ai.response.model"),
            Some(Value::from("gpt-4o-mini"))
        );
        assert!(attribute(ask, "gen_ai.usage.input_tokens").is_some());
    }
    let (headers, body) = &collector.requests()[0];
    assert_eq!(headers["x-collector-key"], "abc 123");
    assert_eq!(
        body["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
        "traced-api"
    );
    // Neither the key nor the inputs or outputs are in any span.
    let all = serde_json::to_string(
        &collector
            .requests()
            .iter()
            .map(|(_, b)| b)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(!all.contains(TEST_KEY));
    assert!(!all.contains("hello there"));
}

#[test]
fn a_batch_run_exports_a_span_per_line() {
    let ctx = TestContext::with_mock();
    traced_flow(&ctx);
    ctx.write(
        "data.jsonl",
        "{\"question\": \"one\"}\n{\"question\": \"two\"}\n{\"question\": \"three\"}\n",
    );
    let collector = Collector::start();
    let out = ctx
        .cmd()
        .args([
            "run",
            "traced",
            "--data",
            "data.jsonl",
            "--name",
            "traced-run",
            "--no-cache",
        ])
        .env(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            format!("{}/v1/traces", collector.url),
        )
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spans = wait_for_spans(&collector, 9);
    assert_eq!(spans.len(), 9, "{spans:#?}");
    let mut lines: Vec<&str> = spans
        .iter()
        .filter(|s| s.get("parentSpanId").is_none())
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    lines.sort();
    assert_eq!(lines, ["line 0", "line 1", "line 2"]);
    for root in spans.iter().filter(|s| s.get("parentSpanId").is_none()) {
        assert_eq!(attribute(root, "flow.run"), Some(Value::from("traced-run")));
        assert_eq!(
            spans
                .iter()
                .filter(|s| s["parentSpanId"] == root["spanId"])
                .count(),
            2
        );
    }
}

#[test]
fn an_unreachable_collector_does_not_fail_requests() {
    let ctx = TestContext::with_mock();
    traced_flow(&ctx);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut server = Server::ready(
        &ctx,
        "traced",
        &[],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())],
    );
    for _ in 0..3 {
        assert_eq!(server.score(r#"{"question": "hi"}"#).status, 200);
    }
    server.terminate();
    assert_eq!(server.wait_exit(Duration::from_secs(15)), 0);
    assert!(
        server.log().contains("could not export traces"),
        "{}",
        server.log()
    );
}
