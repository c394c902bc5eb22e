//! `.prompty` files run as one-node flows: inputs from the front matter (sample values
//! as defaults), model parameters, the connection, and template errors at the file's own lines.

use crate::support::context::{TestContext, repo_root};
use crate::support::server::Server;
use serde_json::json;

#[test]
fn a_prompty_file_runs_as_a_flow() {
    let ctx = TestContext::with_mock();
    let text =
        std::fs::read_to_string(repo_root().join("tests/fixtures/templates/chat-basic.prompty"))
            .unwrap();
    ctx.write("chat.prompty", &text);
    let run = ctx.run(&[
        "run",
        "chat.prompty",
        "--inputs",
        "question=Why is the sky blue?",
        "--output",
        "json",
    ]);
    run.expect_code(0);
    assert_eq!(
        run.json()["outputs"]["output"],
        "mock: Why is the sky blue?"
    );
    let body = &ctx.mock().requests()[0].body;
    assert_eq!(body["max_tokens"], json!(256));
    assert_eq!(body["temperature"], json!(0.2));
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert_eq!(messages.last().unwrap()["content"], "Why is the sky blue?");

    // The sample gives defaults: no --inputs needed.
    let run = ctx.run(&["run", "chat.prompty", "--output", "json"]);
    run.expect_code(0);
    assert_eq!(
        run.json()["outputs"]["output"],
        "mock: What is the meaning of life?"
    );

    ctx.run(&["validate", "chat.prompty"])
        .expect_code(0)
        .stdout_has("prompty");
}

#[test]
fn a_template_error_points_at_the_prompty_line() {
    let ctx = TestContext::with_mock();
    ctx.write(
        "bad.prompty",
        "---\nname: bad\nmodel:\n  api: chat\n  configuration:\n    type: openai\n    connection: open_ai_connection\n    model: m\n---\nsystem:\nhello\n{% if x %}\nuser:\nno end\n",
    );
    let run = ctx.run(&["validate", "bad.prompty"]);
    // The body starts at line 10; the unclosed block's trailing text starts at line 13.
    run.expect_code(2)
        .stderr_has("bad.prompty:13:1")
        .stderr_has("expected end of block");
}

/// `${file:...}` anywhere in the front matter is the file's content, as promptflow resolves
/// it: a JSON configuration, a JSON list of tools, a YAML file; a missing file is a clear error.
#[test]
fn file_references_in_the_front_matter_are_read() {
    let ctx = TestContext::with_mock();
    ctx.write(
        "p/conf.json",
        "{\"type\": \"openai\", \"connection\": \"open_ai_connection\", \"model\": \"m\"}",
    );
    ctx.write(
        "p/tools.json",
        "[{\"type\": \"function\", \"function\": {\"name\": \"now\", \"parameters\": {\"type\": \"object\", \"properties\": {}}}}]",
    );
    ctx.write("p/format.yaml", "type: json_object\n");
    ctx.write(
        "p/ask.prompty",
        "---\nname: ask\nmodel:\n  api: chat\n  configuration: ${file:conf.json}\n  parameters:\n    temperature: 0\n    logprobs: true\n    custom_knob: 7\n    tools: ${file:tools.json}\n    response_format: ${file:format.yaml}\ninputs:\n  question: {type: string}\n---\nuser:\n{{question}}\n",
    );
    ctx.mock().reply_when("hi", "{\"a\": 1}");
    let run = ctx.run(&["run", "p/ask.prompty", "--inputs", "question=hi"]);
    run.expect_code(0);
    let body = &ctx.mock().requests()[0].body;
    assert_eq!(body["model"], "m", "{body:#}");
    assert_eq!(body["tools"][0]["function"]["name"], "now", "{body:#}");
    assert_eq!(body["response_format"]["type"], "json_object", "{body:#}");
    // Every `model.parameters` entry is sent as it is, and nothing else (no defaults).
    assert_eq!(body["logprobs"], true, "{body:#}");
    assert_eq!(body["custom_knob"], 7, "{body:#}");
    assert!(body.get("top_p").is_none(), "{body:#}");

    ctx.write(
        "p/ask.prompty",
        "---\nname: ask\nmodel:\n  api: chat\n  configuration: ${file:missing.json}\n---\nuser:\nhi\n",
    );
    ctx.run(&["validate", "p/ask.prompty"])
        .expect_code(2)
        .stderr_has("model.configuration")
        .stderr_has("missing.json");
}

/// A `.prompty` asking for `json_object` gets the parsed JSON as its output, only the keys its
/// `outputs` name (a missing one fails the line), as promptflow formats it.
#[test]
fn json_replies_and_outputs_are_formatted_as_promptflow_does() {
    let ctx = TestContext::with_mock();
    let prompty = "---\nname: j\nmodel:\n  api: chat\n  configuration: {type: openai, connection: open_ai_connection, model: m}\n  parameters:\n    response_format: {type: json_object}\ninputs:\n  question: {type: string}\noutputs:\n  answer: {type: string}\n---\nuser:\n{{question}}\n";
    ctx.write("j.prompty", prompty);
    ctx.mock()
        .reply_when("good", "{\"answer\": \"42\", \"why\": \"because\"}");
    ctx.mock().reply_when("nokey", "{\"other\": 1}");
    ctx.mock().reply_when("prose", "The answer is 42.");
    let run = ctx.run(&[
        "run",
        "j.prompty",
        "--inputs",
        "question=good",
        "--output",
        "json",
    ]);
    assert_eq!(
        run.expect_code(0).json()["outputs"]["output"],
        json!({"answer": "42"})
    );
    ctx.run(&["run", "j.prompty", "--inputs", "question=nokey"])
        .expect_code(1)
        .stderr_has("cannot find `answer` in the reply; its keys: other");
    ctx.run(&["run", "j.prompty", "--inputs", "question=prose"])
        .expect_code(1)
        .stderr_has("the reply is not JSON although `response_format` is json_object");
    // Without `outputs`, the whole JSON object.
    ctx.write(
        "j.prompty",
        &prompty.replace("outputs:\n  answer: {type: string}\n", ""),
    );
    let run = ctx.run(&[
        "run",
        "j.prompty",
        "--inputs",
        "question=good",
        "--output",
        "json",
    ]);
    assert_eq!(
        run.expect_code(0).json()["outputs"]["output"],
        json!({"answer": "42", "why": "because"})
    );
}

const ALL: &str = "---\nname: a\nmodel:\n  api: chat\n  configuration: {type: openai, connection: open_ai_connection, model: m}\n  parameters:\n    n: 2\n  response: all\ninputs:\n  question: {type: string}\n---\nuser:\n{{question}}\n";

/// `model.response: all`: the output is the whole response object as the endpoint sent it (every
/// choice of `n: 2`, usage, id), for one line, a batch and `flow serve` (never streamed: it is one
/// object); `response: first` (the default) with `n: 2` is the first choice's content, as
/// promptflow's `format_llm_response` gives it.
#[test]
fn response_all_outputs_the_whole_response_object() {
    let ctx = TestContext::with_mock();
    ctx.write("all.prompty", ALL);
    let run = ctx.run(&[
        "run",
        "all.prompty",
        "--inputs",
        "question=hi",
        "--output",
        "json",
    ]);
    let out = run.expect_code(0).json()["outputs"]["output"].clone();
    assert_eq!(out["object"], "chat.completion", "{out:#}");
    assert_eq!(out["model"], "m", "{out:#}");
    assert!(
        out["id"].as_str().unwrap().starts_with("chatcmpl-mock-"),
        "{out:#}"
    );
    let choices = out["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2, "{out:#}");
    assert_eq!(choices[0]["message"]["content"], "mock: hi");
    assert_eq!(choices[1]["message"]["content"], "mock: hi #1");
    assert_eq!(choices[1]["finish_reason"], "stop");
    assert!(
        out["usage"]["prompt_tokens"].as_u64().unwrap() > 0,
        "{out:#}"
    );
    let body = &ctx.mock().requests()[0].body;
    assert_eq!(body["n"], 2, "{body:#}");
    assert_eq!(body["stream"], false, "{body:#}");

    // A batch writes the object as each line's output.
    ctx.write(
        "q.jsonl",
        "{\"question\": \"one\"}\n{\"question\": \"two\"}\n",
    );
    ctx.run(&["run", "all.prompty", "--data", "q.jsonl", "--name", "r"])
        .expect_code(0);
    let lines =
        std::fs::read_to_string(ctx.root().join(".flow/runs/r/flow_outputs/output.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[1]["output"]["choices"][1]["message"]["content"],
        "mock: two #1"
    );

    // Offline, the echo provider's reply as the same shape: nothing in it claims a model.
    let run = ctx.run(&[
        "run",
        "all.prompty",
        "--inputs",
        "question=hi",
        "--offline",
        "--output",
        "json",
    ]);
    let out = run.expect_code(0).json()["outputs"]["output"].clone();
    assert_eq!(out["model"], "echo", "{out:#}");
    assert_eq!(out["choices"].as_array().unwrap().len(), 2, "{out:#}");
    assert_eq!(
        out["choices"][0]["message"]["content"],
        "[echo: offline, no model was called] hi"
    );

    // `flow serve`: the object as the output, and a streaming request gets it as one event.
    let server = Server::ready(&ctx, "all.prompty", &[], &[]);
    let a = server.score(r#"{"question": "served"}"#);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.json()["output"]["choices"][1]["message"]["content"],
        "mock: served #1"
    );
    let a = server.post(
        "/score",
        &[("accept", "text/event-stream")],
        r#"{"question": "served"}"#,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("mock: served #1"), "{}", a.body);
    let last = ctx.mock().requests().last().unwrap().body.clone();
    assert_eq!(last["stream"], false, "{last:#}");
    drop(server);

    // `response: first` (the default) with n: 2: the first choice's content.
    ctx.write("first.prompty", &ALL.replace("  response: all\n", ""));
    let run = ctx.run(&[
        "run",
        "first.prompty",
        "--inputs",
        "question=hi",
        "--output",
        "json",
    ]);
    assert_eq!(run.expect_code(0).json()["outputs"]["output"], "mock: hi");
}

/// `response: all` where it cannot be honoured is refused before the run, at the key: on an
/// Anthropic connection (its reply is not an OpenAI response object, and flow makes none up) and
/// with `stream: true` (promptflow returns a stream of chunks, not an object).
#[test]
fn response_all_is_refused_where_there_is_no_response_object() {
    let ctx = TestContext::with_mock();
    ctx.write(
        "claude.prompty",
        &ALL.replace("connection: open_ai_connection", "connection: claude"),
    );
    let run = ctx
        .cmd()
        .env("CLAUDE_API_TYPE", "anthropic")
        .env("CLAUDE_API_KEY", "sk-ant-test-0123456789")
        .env("CLAUDE_API_BASE", ctx.mock().url())
        .args(["run", "claude.prompty", "--inputs", "question=hi"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("claude.prompty:8:"), "{stderr}");
    assert!(stderr.contains("it is an Anthropic connection"), "{stderr}");
    assert_eq!(ctx.mock().request_count(), 0);

    ctx.write(
        "s.prompty",
        &ALL.replace("    n: 2\n", "    stream: true\n"),
    );
    ctx.run(&["run", "s.prompty", "--inputs", "question=hi"])
        .expect_code(2)
        .stderr_has("`model.response: all` with `stream: true`");
    assert_eq!(ctx.mock().request_count(), 0);
}
