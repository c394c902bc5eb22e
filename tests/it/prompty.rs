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
