//! `flow serve` end to end: the real binary on a free loopback port against the mock LLM and the
//! real python3 — every route, streaming, auth, bad bodies, a failing line, the body limit, the
//! timeout, and a graceful SIGTERM with a request in flight.

use std::time::Duration;

use crate::support::context::TestContext;
use crate::support::mock_llm::MockReply;
use crate::support::server::{LiveEvents, Server, request, sse_events};
use serde_json::json;

const CHAT_FLOW: &str = r#"
inputs:
  question:
    type: string
    is_chat_input: true
  chat_history:
    type: list
    is_chat_history: true
  tone:
    type: string
    default: brief
outputs:
  answer:
    type: string
    reference: ${chat.output}
    is_chat_output: true
  words:
    type: int
    reference: ${count.output}
nodes:
- name: chat
  type: llm
  source:
    type: code
    path: chat.jinja2
  inputs:
    model: gpt-4o-mini
    question: ${inputs.question}
    chat_history: ${inputs.chat_history}
    tone: ${inputs.tone}
  connection: open_ai_connection
  api: chat
- name: count
  type: python
  source:
    type: code
    path: count.py
  inputs:
    text: ${chat.output}
"#;

const CHAT_TEMPLATE: &str = "system:\nAnswer in a {{tone}} way.\n{% for item in chat_history %}\nuser:\n{{item.inputs.question}}\nassistant:\n{{item.outputs.answer}}\n{% endfor %}\nuser:\n{{question}}\n";

const COUNT_PY: &str = "from promptflow import tool\n\n@tool\ndef count(text: str) -> int:\n    return len(text.split())\n";

/// A chat flow (an LLM node streaming to `answer`, a Python node counting its words).
fn chat_flow(ctx: &TestContext) {
    ctx.flow(
        "chat",
        &[
            ("flow.dag.yaml", CHAT_FLOW),
            ("chat.jinja2", CHAT_TEMPLATE),
            ("count.py", COUNT_PY),
        ],
    );
}

/// A flow whose Python node raises on the input `boom`, and takes an int.
fn python_flow(ctx: &TestContext) {
    ctx.flow(
        "shout",
        &[
            (
                "flow.dag.yaml",
                "inputs:\n  text:\n    type: string\n  times:\n    type: int\n    default: 1\noutputs:\n  loud:\n    type: string\n    reference: ${shout.output}\nnodes:\n- name: shout\n  type: python\n  source:\n    type: code\n    path: shout.py\n  inputs:\n    text: ${inputs.text}\n    times: ${inputs.times}\n",
            ),
            (
                "shout.py",
                "from promptflow import tool\n\n@tool\ndef shout(text: str, times: int) -> str:\n    if text == 'boom':\n        raise ValueError('the input exploded')\n    return ' '.join([text.upper()] * times)\n",
            ),
        ],
    );
}

#[test]
fn score_runs_the_flow_and_every_route_answers() {
    let ctx = TestContext::with_mock();
    chat_flow(&ctx);
    ctx.mock()
        .reply_when("capital of France", "Paris is the capital.");
    let server = Server::ready(&ctx, "chat", &[], &[]);

    let health = server.get("/health");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "Healthy");
    let ready = server.get("/ready");
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["status"], "Ready");

    let a = server.score(r#"{"question": "What is the capital of France?"}"#);
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.content_type.starts_with("application/json"));
    assert_eq!(
        a.json(),
        json!({"answer": "Paris is the capital.", "words": 4})
    );
    // The request reached the model with the flow's prompt; chat_history defaulted to [].
    let req = ctx.mock().requests().pop().expect("a model request");
    let body = req.body.to_string();
    assert!(body.contains("Answer in a brief way."), "{body}");

    // chat_history is taken as promptflow's chat UI sends it.
    let a = server.score(
        &json!({
            "question": "And of Italy?",
            "chat_history": [{"inputs": {"question": "capital of Spain?"}, "outputs": {"answer": "Madrid."}}],
            "tone": "formal"
        })
        .to_string(),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let req = ctx.mock().requests().pop().expect("a model request");
    let messages = req.body["messages"].as_array().expect("messages").clone();
    assert_eq!(messages.len(), 4, "{messages:?}");
    assert_eq!(messages[1]["content"], "capital of Spain?");
    assert_eq!(messages[2]["role"], "assistant");
    assert_eq!(messages[2]["content"], "Madrid.");
    assert_eq!(messages[3]["content"], "And of Italy?");

    let doc = server.get("/openapi.json").json();
    assert_eq!(doc["openapi"], "3.0.0");
    let schema =
        &doc["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(schema["properties"]["question"]["type"], "string");
    assert_eq!(schema["properties"]["chat_history"]["type"], "array");
    assert_eq!(schema["properties"]["tone"]["default"], "brief");
    assert_eq!(schema["required"], json!(["question"]));
    let out = &doc["paths"]["/score"]["post"]["responses"]["200"]["content"]["application/json"]["schema"];
    assert_eq!(out["properties"]["answer"]["type"], "string");
    assert_eq!(out["properties"]["words"]["type"], "integer");
    assert_eq!(doc["info"]["x-chat-history"], "chat_history");
    assert!(doc.get("security").is_none());
    assert_eq!(server.get("/swagger.json").json(), doc);

    let missing = server.get("/nope");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"]["code"], "NotFound");

    let metrics = server.get("/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .content_type
            .starts_with("text/plain; version=0.0.4")
    );
    assert_eq!(
        server.metric("flow_requests_total{route=\"/score\",status=\"200\"}"),
        Some(2.0)
    );
    assert_eq!(
        server.metric("flow_requests_total{route=\"other\",status=\"404\"}"),
        Some(1.0)
    );
    assert_eq!(
        server.metric("flow_request_duration_seconds_count"),
        Some(2.0)
    );
    assert_eq!(
        server.metric("flow_request_duration_seconds_bucket{le=\"+Inf\"}"),
        Some(2.0)
    );
    assert_eq!(
        server.metric("flow_lines_total{status=\"completed\"}"),
        Some(2.0)
    );
    assert!(server.metric("flow_tokens_total{type=\"prompt\"}").unwrap() > 0.0);
    assert!(
        server
            .metric("flow_tokens_total{type=\"completion\"}")
            .unwrap()
            > 0.0
    );
    assert!(server.metric("flow_cost_usd_total").unwrap() > 0.0);
    assert_eq!(server.metric("flow_requests_in_flight"), Some(0.0));
    assert_eq!(server.metric("flow_ready"), Some(1.0));
    // One structured log line per request.
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("\"route\":\"/score\""))
        .expect("a request log line");
    let record: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(record["status"], 200);
    assert_eq!(record["method"], "POST");
    assert!(record["duration_ms"].as_f64().is_some());
}

#[test]
fn streaming_sends_the_model_text_as_server_sent_events() {
    let ctx = TestContext::with_mock();
    chat_flow(&ctx);
    let answer = "Streams arrive piece by piece, as the model writes them.";
    ctx.mock().reply_when("stream please", answer);
    let server = Server::ready(&ctx, "chat", &[], &[]);
    let a = server.post(
        "/score",
        &[("accept", "text/event-stream")],
        r#"{"question": "stream please"}"#,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.content_type.starts_with("text/event-stream"),
        "{}",
        a.content_type
    );
    let events = sse_events(&a.body);
    let pieces: Vec<&str> = events
        .iter()
        .filter_map(|(_, v)| v.get("answer").and_then(|a| a.as_str()))
        .collect();
    assert!(pieces.len() > 3, "the answer came in one piece: {events:?}");
    assert_eq!(pieces.concat(), answer);
    // The request to the model was a streaming one.
    let req = ctx.mock().requests().pop().unwrap();
    assert_eq!(req.body["stream"], true);
    // The other outputs come last, in one event.
    let (name, last) = events.last().unwrap();
    assert_eq!(name, "");
    assert_eq!(last, &json!({"words": 10}));

    // Without the Accept header, the same flow answers JSON.
    let a = server.score(r#"{"question": "stream please"}"#);
    assert_eq!(a.json()["answer"], answer);
    // A request that is not streamed says so, as promptflow's tools send it.
    assert_eq!(
        ctx.mock().requests().pop().unwrap().body.get("stream"),
        Some(&json!(false))
    );
    snapshot(
        "serve_llm_stream_openapi",
        &event_stream_description(&server),
    );
}

#[test]
fn streaming_a_flow_without_an_llm_output_sends_one_event() {
    let ctx = TestContext::with_mock();
    python_flow(&ctx);
    let server = Server::ready(&ctx, "shout", &[], &[]);
    let a = server.post(
        "/score",
        &[("accept", "text/event-stream")],
        r#"{"text": "hey", "times": 2}"#,
    );
    assert_eq!(a.status, 200);
    assert_eq!(
        sse_events(&a.body),
        vec![(String::new(), json!({"loud": "HEY HEY"}))]
    );
    // A line that fails before it sent anything is answered with its error's status, as
    // promptflow answers a request that fails before its stream starts.
    let a = server.post(
        "/score",
        &[("accept", "text/event-stream")],
        r#"{"text": "boom"}"#,
    );
    assert_eq!(a.status, 500, "{}", a.body);
    assert!(
        a.content_type.starts_with("application/json"),
        "{}",
        a.content_type
    );
    assert_eq!(a.json()["error"]["type"], "ValueError");
}

#[test]
fn bad_bodies_get_a_400_with_a_json_error() {
    let ctx = TestContext::with_mock();
    python_flow(&ctx);
    let server = Server::ready(&ctx, "shout", &[], &[]);
    let cases = [
        ("{\"text\": ", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ("", "body is empty"),
        ("{}", "missing input `text`"),
        (
            "{\"txt\": \"hi\"}",
            "unknown input `txt` (did you mean `text`?)",
        ),
        ("{\"text\": \"hi\", \"times\": \"many\"}", "input `times`"),
        ("{\"text\": \"hi\", \"times\": [1]}", "input `times`"),
    ];
    for (body, expected) in cases {
        let a = server.score(body);
        assert_eq!(a.status, 400, "{body:?} → {}", a.body);
        let err = a.json();
        assert_eq!(err["error"]["code"], "BadRequest");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{body:?} → {message}");
    }
    // Types are coerced as in flow run: "3" is an int.
    let a = server.score(r#"{"text": "hi", "times": "3"}"#);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json(), json!({"loud": "HI HI HI"}));
    assert_eq!(
        server.metric("flow_requests_total{route=\"/score\",status=\"400\"}"),
        Some(cases.len() as f64)
    );
}

#[test]
fn a_failing_line_is_a_500_and_the_server_keeps_serving() {
    let ctx = TestContext::with_mock();
    python_flow(&ctx);
    let server = Server::ready(&ctx, "shout", &[], &[]);
    let a = server.score(r#"{"text": "boom"}"#);
    assert_eq!(a.status, 500, "{}", a.body);
    let err = a.json();
    assert_eq!(err["error"]["code"], "FlowRunFailed");
    assert_eq!(err["error"]["type"], "ValueError");
    assert_eq!(err["error"]["node"], "shout");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the input exploded")
    );
    // The traceback goes to the log, not to the client.
    assert!(err["error"].get("traceback").is_none());
    for _ in 0..3 {
        let ok = server.score(r#"{"text": "fine"}"#);
        assert_eq!(ok.status, 200, "{}", ok.body);
        assert_eq!(ok.json()["loud"], "FINE");
    }
    assert_eq!(
        server.metric("flow_lines_total{status=\"failed\"}"),
        Some(1.0)
    );
    assert_eq!(
        server.metric("flow_line_errors_total{kind=\"python\"}"),
        Some(1.0)
    );
    assert!(server.log().contains("Traceback"));
}

#[test]
fn a_model_error_is_a_500_naming_the_node() {
    let ctx = TestContext::with_mock();
    chat_flow(&ctx);
    ctx.mock()
        .push(MockReply::Status(400, "context length exceeded".into()));
    let server = Server::ready(&ctx, "chat", &["--max-retries", "0"], &[]);
    let a = server.score(r#"{"question": "hi"}"#);
    assert_eq!(a.status, 500, "{}", a.body);
    assert_eq!(a.json()["error"]["node"], "chat");
    assert!(a.body.contains("context length exceeded"), "{}", a.body);
    assert!(!a.body.contains(crate::support::context::TEST_KEY));
    assert_eq!(server.score(r#"{"question": "hi"}"#).status, 200);
}

#[test]
fn bearer_auth_guards_everything_but_the_probes() {
    let ctx = TestContext::with_mock();
    python_flow(&ctx);
    let token = "serve-token-7f3a9c";
    let server = Server::ready(&ctx, "shout", &[], &[("FLOW_SERVE_TOKEN", token)]);
    let body = r#"{"text": "hi"}"#;
    let none = server.score(body);
    assert_eq!(none.status, 401);
    assert_eq!(none.json()["error"]["code"], "Unauthorized");
    assert_eq!(none.headers.get("www-authenticate").unwrap(), "Bearer");
    let wrong = server.post("/score", &[("authorization", "Bearer nope")], body);
    assert_eq!(wrong.status, 401);
    let prefix = server.post("/score", &[("authorization", "Bearer serve-token")], body);
    assert_eq!(prefix.status, 401);
    let basic = server.post(
        "/score",
        &[("authorization", &format!("Basic {token}"))],
        body,
    );
    assert_eq!(basic.status, 401);
    let auth = format!("Bearer {token}");
    let ok = server.post("/score", &[("authorization", &auth)], body);
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(server.get("/health").status, 200);
    assert_eq!(server.get("/ready").status, 200);
    assert_eq!(server.get("/metrics").status, 401);
    assert_eq!(server.get("/openapi.json").status, 401);
    let url = format!("{}/openapi.json", server.url);
    let doc = request("GET", &url, &[("authorization", &auth)], None).json();
    assert_eq!(
        doc["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
    // The token never reaches the log.
    assert!(!server.log().contains(token));
}

#[test]
fn a_body_over_the_limit_is_a_413() {
    let ctx = TestContext::with_mock();
    python_flow(&ctx);
    let server = Server::ready(&ctx, "shout", &["--max-body-bytes", "64"], &[]);
    let big = json!({"text": "x".repeat(100)}).to_string();
    let a = server.score(&big);
    assert_eq!(a.status, 413, "{}", a.body);
    assert_eq!(a.json()["error"]["code"], "PayloadTooLarge");
    assert_eq!(server.score(r#"{"text": "small"}"#).status, 200);
}

#[test]
fn a_request_over_the_timeout_is_a_504_and_the_server_goes_on() {
    let ctx = TestContext::with_mock();
    chat_flow(&ctx);
    ctx.mock().push(MockReply::Delay(
        Duration::from_secs(10),
        Box::new(MockReply::text("too late")),
    ));
    let server = Server::ready(&ctx, "chat", &["--timeout", "0.5"], &[]);
    let started = std::time::Instant::now();
    let a = server.score(r#"{"question": "slow"}"#);
    assert_eq!(a.status, 504, "{}", a.body);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(a.json()["error"]["code"], "Timeout");
    assert_eq!(server.score(r#"{"question": "quick"}"#).status, 200);
    assert_eq!(
        server.metric("flow_line_errors_total{kind=\"timeout\"}"),
        Some(1.0)
    );
}

#[test]
fn sigterm_finishes_the_request_in_flight_then_exits() {
    let ctx = TestContext::with_mock();
    chat_flow(&ctx);
    ctx.mock().push(MockReply::Delay(
        Duration::from_millis(1500),
        Box::new(MockReply::text("finished after the signal")),
    ));
    let mut server = Server::ready(&ctx, "chat", &[], &[]);
    let url = format!("{}/score", server.url);
    let in_flight =
        std::thread::spawn(move || request("POST", &url, &[], Some(r#"{"question": "slow one"}"#)));
    // Wait until the request is in flight (no fixed sleep).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.metric("flow_requests_in_flight") != Some(1.0) {
        assert!(
            std::time::Instant::now() < deadline,
            "the request never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    server.terminate();
    let answer = in_flight.join().unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["answer"], "finished after the signal");
    assert_eq!(server.wait_exit(Duration::from_secs(10)), 0);
    let log = server.log();
    assert!(
        log.contains("SIGTERM: finishing 1 request(s) in flight"),
        "{log}"
    );
    // New connections are refused once it has stopped.
    assert!(
        crate::support::server::try_request("GET", &format!("{}/health", server.url), &[], None)
            .is_err()
    );
}

#[test]
fn a_flow_that_does_not_load_or_a_busy_port_exits_2() {
    let ctx = TestContext::with_mock();
    ctx.flow(
        "broken",
        &[(
            "flow.dag.yaml",
            "inputs: {}\noutputs:\n  x:\n    reference: ${nowhere.output}\nnodes: []\n",
        )],
    );
    ctx.run(&["serve", "broken", "--port", "0"]).expect_code(2);
    python_flow(&ctx);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    ctx.run(&["serve", "shout", "--port", &port])
        .expect_code(2)
        .stderr_has("cannot listen on 127.0.0.1");
}

#[test]
fn offline_serving_needs_no_key() {
    let ctx = TestContext::new();
    let flow = ctx.copy_from_repo("flows/hello");
    let server = Server::ready(&ctx, flow.to_str().unwrap(), &["--offline"], &[]);
    let a = server.score(r#"{"question": "hi"}"#);
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.json()["answer"].as_str().unwrap().contains("echo"));
}

#[test]
fn while_the_flow_loads_health_answers_and_ready_and_score_say_503() {
    let ctx = TestContext::with_mock();
    // The tool file takes a while to import: the Python workers warm up before the server is
    // ready.
    ctx.flow(
        "slow",
        &[
            (
                "flow.dag.yaml",
                "inputs:\n  text:\n    type: string\noutputs:\n  out:\n    type: string\n    reference: ${echo.output}\nnodes:\n- name: echo\n  type: python\n  source:\n    type: code\n    path: echo.py\n  inputs:\n    text: ${inputs.text}\n",
            ),
            (
                "echo.py",
                "import time\ntime.sleep(3)\nfrom promptflow import tool\n\n@tool\ndef echo(text: str) -> str:\n    return text\n",
            ),
        ],
    );
    let server = Server::start(&ctx, "slow", &[], &[]);
    // Poll until the server answers at all (the listener is up before the flow is prepared).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while crate::support::server::try_request("GET", &format!("{}/health", server.url), &[], None)
        .is_err()
    {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.get("/health").status, 200);
    let ready = server.get("/ready");
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.json()["error"]["code"], "NotReady");
    let early = server.score(r#"{"text": "too early"}"#);
    assert_eq!(early.status, 503);
    assert!(early.body.contains("still loading"));
    server.wait_ready();
    let a = server.score(r#"{"text": "now"}"#);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["out"], "now");
}

#[test]
fn a_stream_that_runs_out_of_time_is_a_timeout() {
    let ctx = TestContext::with_mock();
    chat_flow(&ctx);
    ctx.mock().push(MockReply::Delay(
        Duration::from_secs(10),
        Box::new(MockReply::text("too late")),
    ));
    let server = Server::ready(&ctx, "chat", &["--timeout", "0.5"], &[]);
    let a = server.post(
        "/score",
        &[("accept", "text/event-stream")],
        r#"{"question": "slow"}"#,
    );
    // nothing was sent when the time ran out: the answer is the timeout itself
    assert_eq!(a.status, 504, "{}", a.body);
    assert_eq!(a.json()["error"]["code"], "Timeout");
    assert_eq!(
        server.metric("flow_line_errors_total{kind=\"timeout\"}"),
        Some(1.0)
    );
}

/// A streamed request is logged when its stream ends: its real duration and the status its
/// outcome came to (504 for one that ran out of time before it sent anything, which is then
/// also its answer's status).
#[test]
fn a_streamed_request_is_logged_with_its_real_duration_and_outcome() {
    let ctx = TestContext::with_mock();
    chat_flow(&ctx);
    ctx.mock().set_latency(Duration::from_millis(400));
    let server = Server::ready(&ctx, "chat", &["--timeout", "5"], &[]);
    let a = server.post(
        "/score",
        &[("accept", "text/event-stream")],
        r#"{"question": "slow stream"}"#,
    );
    assert_eq!(a.status, 200);
    ctx.mock().set_latency(Duration::ZERO);
    ctx.mock().push(MockReply::Delay(
        Duration::from_secs(10),
        Box::new(MockReply::text("too late")),
    ));
    let server_t = Server::ready(&ctx, "chat", &["--timeout", "0.5"], &[]);
    let b = server_t.post(
        "/score",
        &[("accept", "text/event-stream")],
        r#"{"question": "never"}"#,
    );
    // nothing was sent before the time ran out: the answer is the timeout
    assert_eq!(b.status, 504);
    // The log line comes when the stream ends: give the server a moment to write it.
    let record = |server: &Server| -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let log = server.log();
            if let Some(line) = log
                .lines()
                .find(|l| l.contains("\"route\":\"/score\"") && l.contains("\"streamed\":true"))
            {
                return serde_json::from_str(line).unwrap();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no streamed request logged:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let ok = record(&server);
    assert_eq!(ok["status"], 200);
    assert!(ok["duration_ms"].as_f64().unwrap() >= 350.0, "{ok}");
    let late = record(&server_t);
    assert_eq!(late["status"], 504, "{late}");
    assert!(late["duration_ms"].as_f64().unwrap() >= 450.0, "{late}");
    // One line per request: the headers' 200 is not logged as well.
    assert_eq!(
        server
            .log()
            .lines()
            .filter(|l| l.contains("\"route\":\"/score\""))
            .count(),
        1
    );
}

/// An insta snapshot of human-facing output, named without the module path.
fn snapshot(name: &str, text: &str) {
    insta::with_settings!({prepend_module_to_snapshot => false, omit_expression => true}, {
        insta::assert_snapshot!(name, text);
    });
}

/// Wait until the server's log (read from its stderr by another thread) has `needle`.
fn wait_for_log(server: &Server, needle: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !server.log().contains(needle) {
        assert!(
            std::time::Instant::now() < deadline,
            "{needle} not logged:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What `/openapi.json` says the event stream of `/score` is.
fn event_stream_description(server: &Server) -> String {
    server.get("/openapi.json").json()["paths"]["/score"]["post"]["responses"]["200"]["content"]
        ["text/event-stream"]["schema"]["description"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A flex flow whose entry returns generators: `wait` yields, waits until the file `gate`
/// exists, then yields again; `forever` yields its worker's pid until stopped and then writes
/// that pid to `gate`; `pid` returns the pid.
const GENERATOR_PY: &str = r#"import os
import time


def _wait_for(gate):
    deadline = time.time() + 30
    while not os.path.exists(gate):
        if time.time() > deadline:
            raise TimeoutError("the test never opened the gate")
        time.sleep(0.02)


def run(mode: str, gate: str = ""):
    if mode == "wait":
        def pieces():
            yield "first"
            _wait_for(gate)
            yield " second"
            yield 3
        return pieces()
    if mode == "dict":
        return {"n": 2, "answer": (c for c in ["a", "b"])}
    if mode == "boom":
        def broken():
            yield "partial"
            raise ValueError("broke mid-stream")
        return broken()
    if mode == "two":
        return {"a": (i for i in range(2)), "b": (i for i in range(2))}
    if mode == "forever":
        def endless():
            try:
                while True:
                    yield str(os.getpid())
                    time.sleep(0.05)
            finally:
                with open(gate, "w") as f:
                    f.write(str(os.getpid()))
        return endless()
    if mode == "flood":
        def flood():
            piece = "x" * (256 << 10)
            for i in range(400):
                with open(gate, "w") as f:
                    f.write(str(i + 1))
                yield piece
        return flood()
    return str(os.getpid())
"#;

fn generator_flow(ctx: &TestContext) {
    ctx.flow(
        "gen",
        &[
            ("flow.flex.yaml", "entry: gen:run\n"),
            ("gen.py", GENERATOR_PY),
        ],
    );
}

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn a_flex_generator_streams_each_piece_as_it_is_yielded() {
    let ctx = TestContext::with_mock();
    generator_flow(&ctx);
    let server = Server::ready(&ctx, "gen", &[], &[]);
    let gate = ctx.root().join("gate");
    let body = json!({"mode": "wait", "gate": gate}).to_string();
    let mut events = LiveEvents::open(&format!("{}/score", server.url), &body);
    assert_eq!(events.status, 200);
    // The first piece arrives while the generator is still waiting for the gate.
    assert_eq!(
        events.next(WAIT),
        Some((String::new(), json!({"output": "first"})))
    );
    assert!(!gate.exists());
    std::fs::write(&gate, "open").unwrap();
    assert_eq!(
        events.rest(WAIT),
        vec![
            (String::new(), json!({"output": " second"})),
            (String::new(), json!({"output": 3})),
        ]
    );
    // Without the Accept header the answer is the joined text, as before.
    let a = server.score(&body);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json(), json!({"output": "first second3"}));

    // A dict with a generator field: the other outputs first, as promptflow's serving app.
    let stream = |mode: &str| {
        let a = server.post(
            "/score",
            &[("accept", "text/event-stream")],
            &json!({ "mode": mode }).to_string(),
        );
        assert_eq!(a.status, 200, "{}", a.body);
        sse_events(&a.body)
    };
    assert_eq!(
        stream("dict"),
        vec![
            (String::new(), json!({"n": 2})),
            (String::new(), json!({"answer": "a"})),
            (String::new(), json!({"answer": "b"})),
        ]
    );
    assert_eq!(
        server.score(r#"{"mode": "dict"}"#).json(),
        json!({"n": 2, "answer": "ab"})
    );
    // A generator that raises mid-stream ends the stream with an error event.
    let broken = stream("boom");
    assert_eq!(broken.len(), 2, "{broken:?}");
    assert_eq!(broken[0], (String::new(), json!({"output": "partial"})));
    assert_eq!(broken[1].0, "error");
    assert_eq!(broken[1].1["error"]["code"], "FlowRunFailed");
    assert_eq!(broken[1].1["error"]["type"], "ValueError");
    wait_for_log(&server, "broke mid-stream");
    // Two generator fields: a 400 before any event, as promptflow refuses them; joined
    // without the header.
    let two = server.post(
        "/score",
        &[("accept", "text/event-stream")],
        r#"{"mode": "two"}"#,
    );
    assert_eq!(two.status, 400, "{}", two.body);
    let two = two.json();
    assert!(
        two["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Multiple stream output fields not supported."),
        "{two}"
    );
    assert_eq!(
        server.score(r#"{"mode": "two"}"#).json(),
        json!({"a": "01", "b": "01"})
    );
    // A string is not a stream: one event, as before.
    let plain = stream("pid");
    assert_eq!(plain.len(), 1, "{plain:?}");
    assert!(plain[0].1["output"].is_string(), "{plain:?}");
    snapshot(
        "serve_flex_generator",
        &format!(
            "openapi: {}\n\ntwo generators:\n{}\n\nraised mid-stream:\n{}\n",
            event_stream_description(&server),
            two,
            broken[1].1
        ),
    );
}

/// A client that hangs up stops the generator, and a line that runs out of time too; either
/// way the worker goes back to the pool and answers the next request.
#[test]
fn a_hang_up_or_a_timeout_stops_the_generator_and_keeps_the_worker() {
    let ctx = TestContext::with_mock();
    generator_flow(&ctx);
    let server = Server::ready(&ctx, "gen", &["--timeout", "2"], &[]);
    let pid = server.score(r#"{"mode": "pid"}"#).json()["output"]
        .as_str()
        .unwrap()
        .to_string();
    let url = format!("{}/score", server.url);

    let gate = ctx.root().join("hung-up");
    let mut events = LiveEvents::open(&url, &json!({"mode": "forever", "gate": gate}).to_string());
    assert_eq!(
        events.next(WAIT),
        Some((String::new(), json!({"output": pid})))
    );
    drop(events);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !gate.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the generator was not stopped:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Closed in the same worker, which answers the next request.
    assert_eq!(std::fs::read_to_string(&gate).unwrap(), pid);
    assert_eq!(server.score(r#"{"mode": "pid"}"#).json()["output"], pid);
    wait_for_log(&server, "\"status\":499");

    let gate = ctx.root().join("timed-out");
    let mut events = LiveEvents::open(&url, &json!({"mode": "forever", "gate": gate}).to_string());
    let all = events.rest(WAIT);
    assert!(all.len() > 3, "{all:?}");
    let (name, error) = all.last().unwrap();
    assert_eq!(name, "error", "{all:?}");
    assert_eq!(error["error"]["code"], "Timeout");
    assert!(
        all[..all.len() - 1]
            .iter()
            .all(|(n, v)| n.is_empty() && v == &json!({"output": pid}))
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !gate.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the generator was not stopped"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.score(r#"{"mode": "pid"}"#).json()["output"], pid);
}

#[test]
fn a_python_node_generator_in_a_dag_streams_then_the_other_outputs() {
    let ctx = TestContext::with_mock();
    ctx.flow(
        "story",
        &[
            (
                "flow.dag.yaml",
                "inputs:\n  gate:\n    type: string\noutputs:\n  answer:\n    type: string\n    reference: ${tell.output}\n    is_chat_output: true\n  length:\n    type: int\n    reference: ${measure.output}\nnodes:\n- name: tell\n  type: python\n  source:\n    type: code\n    path: tell.py\n  inputs:\n    gate: ${inputs.gate}\n- name: measure\n  type: python\n  source:\n    type: code\n    path: measure.py\n  inputs:\n    text: ${tell.output}\n",
            ),
            (
                "tell.py",
                "import os\nimport time\n\nfrom promptflow import tool\n\n\n@tool\ndef tell(gate: str):\n    yield 'once'\n    deadline = time.time() + 30\n    while not os.path.exists(gate) and time.time() < deadline:\n        time.sleep(0.02)\n    yield ' upon'\n",
            ),
            (
                "measure.py",
                "from promptflow import tool\n\n\n@tool\ndef measure(text: str) -> int:\n    return len(text)\n",
            ),
        ],
    );
    let server = Server::ready(&ctx, "story", &[], &[]);
    let gate = ctx.root().join("gate");
    let body = json!({ "gate": gate }).to_string();
    let mut events = LiveEvents::open(&format!("{}/score", server.url), &body);
    assert_eq!(
        events.next(WAIT),
        Some((String::new(), json!({"answer": "once"})))
    );
    assert!(!gate.exists());
    std::fs::write(&gate, "open").unwrap();
    // The node that reads the output gets the joined text.
    assert_eq!(
        events.rest(WAIT),
        vec![
            (String::new(), json!({"answer": " upon"})),
            (String::new(), json!({"length": 9})),
        ]
    );
    assert_eq!(
        server.score(&body).json(),
        json!({"answer": "once upon", "length": 9})
    );
    snapshot(
        "serve_dag_generator_openapi",
        &event_stream_description(&server),
    );
}

/// A client that reads slowly slows the generator: pieces wait in a bounded queue, not in
/// memory without end; a streamed output is kept whole up to 64 MiB.
#[test]
fn a_slow_client_holds_back_the_generator() {
    let ctx = TestContext::with_mock();
    generator_flow(&ctx);
    let server = Server::ready(&ctx, "gen", &[], &[]);
    let count = ctx.root().join("count");
    let body = json!({"mode": "flood", "gate": count}).to_string();
    let mut events = LiveEvents::open(&format!("{}/score", server.url), &body);
    let (_, first) = events.next(WAIT).unwrap();
    assert_eq!(first["output"].as_str().map(str::len), Some(256 << 10));
    // The client stops reading: the generator gets only as far as the queue and the socket's
    // buffers let it (400 pieces, 100 MiB, if nothing held it back).
    std::thread::sleep(Duration::from_secs(3));
    let yielded: usize = std::fs::read_to_string(&count)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        yielded < 100,
        "{yielded} pieces yielded for a client that read 1"
    );
    // Reading on gets every piece up to 64 MiB, the most of a streamed output flow keeps
    // (joined, for the line's record); then the line fails.
    let rest = events.rest(WAIT);
    assert_eq!(rest.len(), 256, "{:?}", rest.last());
    assert!(
        rest[..255]
            .iter()
            .all(|(n, v)| n.is_empty() && v["output"].is_string())
    );
    let (name, error) = &rest[255];
    assert_eq!(name, "error");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("larger than 64 MiB"),
        "{error}"
    );
    snapshot("serve_stream_too_large", &error.to_string());
}

/// A flex entry returning promptflow-tools' `chat(..., stream=True)`, or a `Prompty` whose
/// parameters say `stream: true`, streams the reply as the model writes it, through the
/// worker's channel to flow.
#[test]
fn a_model_reply_streamed_from_python_arrives_as_the_model_writes_it() {
    let ctx = TestContext::with_mock();
    ctx.flow(
        "ask",
        &[
            ("flow.flex.yaml", "entry: ask:run\n"),
            (
                "ask.py",
                "import os\nfrom pathlib import Path\n\nfrom promptflow.core import Prompty\nfrom promptflow.tools.openai import chat\n\n\ndef run(question: str, via: str = 'chat'):\n    if via == 'pid':\n        return os.getpid()\n    if via == 'prompty':\n        return Prompty.load(Path(__file__).parent / 'ask.prompty')(q=question)\n    if via == 'whole':\n        return Prompty.load(Path(__file__).parent / 'whole.prompty')(q=question)\n    return chat(connection='open_ai_connection', prompt='user:\\n{{q}}', model='gpt-4o-mini', stream=True, q=question)\n",
            ),
            (
                "ask.prompty",
                "---\nname: ask\nmodel:\n  api: chat\n  configuration:\n    type: openai\n    connection: open_ai_connection\n    model: gpt-4o-mini\n  parameters:\n    stream: true\ninputs:\n  q:\n    type: string\n---\nuser:\n{{q}}\n",
            ),
            (
                "whole.prompty",
                "---\nname: whole\nmodel:\n  api: chat\n  configuration:\n    type: openai\n    connection: open_ai_connection\n    model: gpt-4o-mini\ninputs:\n  q:\n    type: string\n---\nuser:\n{{q}}\n",
            ),
        ],
    );
    let answer = "Pieces, one by one, as written.";
    ctx.mock().reply_when("stream it", answer);
    // About one event of the model's stream every 120 ms.
    ctx.mock().set_stream_chunk_size(64);
    ctx.mock().set_stream_chunk_delay(Duration::from_millis(40));
    let server = Server::ready(&ctx, "ask", &[], &[]);
    let streamed = |via: &str| {
        let body = json!({"question": "stream it", "via": via}).to_string();
        let mut events = LiveEvents::open(&format!("{}/score", server.url), &body);
        let first = events.next(WAIT).unwrap();
        let after_first = std::time::Instant::now();
        let mut all = vec![first];
        all.extend(events.rest(WAIT));
        let spread = after_first.elapsed();
        let pieces: Vec<String> = all
            .iter()
            .map(|(name, v)| {
                assert_eq!(name, "", "{all:?}");
                v["output"].as_str().unwrap().to_string()
            })
            .collect();
        let req = ctx.mock().requests().pop().unwrap();
        (pieces, spread, req.body["stream"].clone())
    };
    for via in ["chat", "prompty"] {
        let (pieces, spread, stream) = streamed(via);
        assert!(pieces.len() > 5, "{via}: {pieces:?}");
        assert_eq!(pieces.concat(), answer);
        // The last piece came well after the first: they were not all sent at the end.
        assert!(spread >= Duration::from_millis(300), "{via}: {spread:?}");
        assert_eq!(stream, true, "{via}");
    }
    // A Prompty that does not ask for a stream returns the whole text: one event.
    let (pieces, _, _) = streamed("whole");
    assert_eq!(pieces, vec![answer.to_string()]);
    // The call is counted once its stream ends.
    assert!(
        server
            .metric("flow_tokens_total{type=\"completion\"}")
            .unwrap()
            > 0.0
    );
    // Without the Accept header: the joined text.
    for via in ["chat", "prompty", "whole"] {
        let body = json!({"question": "stream it", "via": via}).to_string();
        assert_eq!(server.score(&body).json(), json!({ "output": answer }));
    }

    // A client that hangs up while the model writes: the model call is dropped, the generator
    // stopped, and the worker answers the next request.
    let pid = server.score(r#"{"question": "", "via": "pid"}"#).json()["output"].clone();
    ctx.mock()
        .set_stream_chunk_delay(Duration::from_millis(300));
    let body = json!({"question": "stream it"}).to_string();
    let mut events = LiveEvents::open(&format!("{}/score", server.url), &body);
    assert!(events.next(WAIT).is_some());
    drop(events);
    wait_for_log(&server, "\"status\":499");
    assert_eq!(
        server.score(r#"{"question": "", "via": "pid"}"#).json()["output"],
        pid
    );
}
