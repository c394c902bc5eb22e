//! `.prompty` files run as one-node flows: inputs from the front matter (sample values
//! as defaults), model parameters, the connection, and template errors at the file's own lines.

use crate::support::context::{TestContext, repo_root};
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
/// `outputs` name (a missing one fails the line), as promptflow formats it; `response: all`
/// is refused rather than answered with the first choice.
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
    ctx.write(
        "all.prompty",
        "---\nname: a\nmodel:\n  api: chat\n  configuration: {type: openai, connection: open_ai_connection, model: m}\n  response: all\n---\nuser:\nhi\n",
    );
    ctx.run(&["run", "all.prompty"])
        .expect_code(2)
        .stderr_has("`model.response: all`");
}
