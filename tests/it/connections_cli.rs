//! `flow connections [check]` through the binary: what a flow needs, what resolves, keys masked,
//! and a free request to each endpoint.

use crate::support::context::{TEST_KEY, TestContext};

const FLOW: &str = "inputs: {}\noutputs:\n  o: {reference: '${a.output}'}\nnodes:\n- {name: a, type: llm, source: {type: code, path: a.jinja2}, connection: open_ai_connection, api: chat, inputs: {model: gpt-4o-mini}}\n- {name: b, type: llm, source: {type: code, path: a.jinja2}, connection: other_conn, api: chat, inputs: {model: m}}\n";

fn project(ctx: &TestContext) {
    ctx.flow("f", &[("flow.dag.yaml", FLOW), ("a.jinja2", "user:\nhi")]);
}

#[test]
fn lists_connections_masks_keys_and_names_what_is_missing() {
    let ctx = TestContext::with_mock();
    project(&ctx);
    let run = ctx.run(&["connections", "f"]);
    run.expect_code(2)
        .stdout_has("open_ai_connection ok")
        .stdout_has("type:    openai")
        .stdout_has("(24 chars)")
        .stdout_has("other_conn NOT CONFIGURED")
        .stdout_has("OTHER_CONN_API_KEY");
    assert!(
        !run.stdout.contains(TEST_KEY),
        "the key leaked: {}",
        run.stdout
    );

    let mut cmd = ctx.cmd();
    cmd.env("OTHER_CONN_API_TYPE", "ollama");
    let out = cmd.args(["connections", "f"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn check_asks_each_endpoint_for_its_models() {
    let ctx = TestContext::with_mock();
    ctx.mock().set_known_models(&["gpt-4o-mini", "m"]);
    project(&ctx);
    let mut cmd = ctx.cmd();
    cmd.env("OTHER_CONN_API_KEY", "sk-wrong-key-for-the-mock-000")
        .env("OTHER_CONN_API_BASE", format!("{}/v1", ctx.mock().url()))
        .env("OPEN_AI_CONNECTION_MODEL", "gpt-4o-mini");
    let out = cmd.args(["connections", "check", "f"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("open_ai_connection ok"), "{stdout}");
    assert!(stdout.contains("including `gpt-4o-mini`"), "{stdout}");
    assert!(stdout.contains("other_conn FAILED"), "{stdout}");
    assert!(stdout.contains("OTHER_CONN_API_KEY"), "{stdout}");
    assert!(
        !stdout.contains("sk-wrong-key-for-the-mock-000"),
        "{stdout}"
    );
    let paths: Vec<String> = ctx
        .mock()
        .requests()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(paths, vec!["/v1/models", "/v1/models"]);
}

#[test]
fn check_reports_an_unreachable_endpoint() {
    let ctx = TestContext::new();
    project(&ctx);
    let mut cmd = ctx.cmd();
    cmd.env("OPEN_AI_CONNECTION_API_KEY", "k")
        .env("OPEN_AI_CONNECTION_API_BASE", "http://127.0.0.1:9/v1")
        .env("OTHER_CONN_API_TYPE", "echo");
    let out = cmd.args(["connections", "check", "f"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("cannot connect"), "{stdout}");
    assert!(stdout.contains("OPEN_AI_CONNECTION_API_BASE"), "{stdout}");
    assert!(stdout.contains("other_conn ok"), "{stdout}");
}
