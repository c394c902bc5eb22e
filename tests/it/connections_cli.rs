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

/// A base URL holding credentials (`http://user:pw@host/v1?team=blue`): they go as HTTP Basic
/// auth, the query string stays at the end of every endpoint URL, and the password appears in no
/// output and no file of the run.
#[test]
fn credentials_in_a_base_url_are_sent_as_basic_auth_and_shown_nowhere() {
    let mock = crate::support::mock_llm::MockLlm::start();
    let ctx = TestContext {
        dir: tempfile::tempdir().unwrap(),
        mock: Some(mock),
    };
    ctx.flow(
        "f",
        &[
            (
                "flow.dag.yaml",
                "inputs: {q: {type: string}}\noutputs:\n  a: {reference: '${ask.output}'}\nnodes:\n- {name: ask, type: llm, source: {type: code, path: ask.jinja2}, connection: open_ai_connection, api: chat, inputs: {model: m, q: '${inputs.q}'}}\n",
            ),
            ("ask.jinja2", "user:\n{{q}}"),
        ],
    );
    let port = ctx.mock().url().rsplit(':').next().unwrap().to_string();
    let base = format!("http://alice:s3cret-pass@127.0.0.1:{port}/v1?team=blue");
    let flow = |args: &[&str]| {
        let out = ctx
            .cmd()
            .args(args)
            .env_remove("OPEN_AI_CONNECTION_API_KEY")
            .env("OPEN_AI_CONNECTION_API_BASE", &base)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    ctx.write("data.jsonl", "{\"q\": \"hi\"}\n");
    let (code, text) = flow(&["run", "f", "--data", "data.jsonl", "--name", "r"]);
    assert_eq!(code, Some(0), "{text}");
    let (code, listed) = flow(&["connections", "f"]);
    assert_eq!(code, Some(0), "{listed}");
    let (_, checked) = flow(&["connections", "check", "f"]);
    for shown in [&text, &listed, &checked] {
        assert!(
            !shown.contains("s3cret-pass"),
            "the password is shown:\n{shown}"
        );
    }
    assert!(listed.contains("127.0.0.1"), "{listed}");
    let requests = ctx.mock().requests();
    let chat = requests
        .iter()
        .find(|r| r.path == "/v1/chat/completions")
        .expect("a chat request");
    assert_eq!(chat.query.as_deref(), Some("team=blue"));
    // base64("alice:s3cret-pass")
    assert_eq!(
        chat.header("authorization"),
        Some("Basic YWxpY2U6czNjcmV0LXBhc3M=")
    );
    let models = requests.iter().find(|r| r.path == "/v1/models");
    assert_eq!(models.and_then(|r| r.query.as_deref()), Some("team=blue"));
    // Nothing the run wrote holds the password.
    for entry in walk(&ctx.root().join(".flow")) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("s3cret-pass"),
            "{} holds the password",
            entry.display()
        );
    }

    // Credentials in the URL and an API key both want the Authorization header: refused.
    let out = ctx
        .cmd()
        .args(["run", "f", "--inputs", "q=hi"])
        .env("OPEN_AI_CONNECTION_API_BASE", &base)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("OPEN_AI_CONNECTION_API_BASE holds credentials"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret-pass"), "{stderr}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The standard `OPENAI_API_BASE` (the older spelling of `OPENAI_BASE_URL`) takes the key to
/// that host: the request reaches the mock, not api.openai.com.
#[test]
fn the_standard_openai_api_base_takes_the_key_to_its_host() {
    let ctx = TestContext::with_mock();
    project(&ctx);
    let out = ctx
        .cmd()
        .args(["run", "f", "--node", "a"])
        .env_remove("OPEN_AI_CONNECTION_API_KEY")
        .env_remove("OPEN_AI_CONNECTION_API_BASE")
        .env("OPENAI_API_KEY", TEST_KEY)
        .env("OPENAI_API_BASE", format!("{}/v1", ctx.mock().url()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let requests = ctx.mock().requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].header("authorization"),
        Some(format!("Bearer {TEST_KEY}").as_str())
    );
}

/// A variable spelled a letter off from one a connection reads is never read: a warning names
/// the variable that is, in `flow connections` and when the flow runs.
#[test]
fn a_near_miss_variable_name_gets_a_warning_naming_the_right_one() {
    let ctx = TestContext::with_mock();
    project(&ctx);
    let out = ctx
        .cmd()
        .args(["connections", "f"])
        .env("OTHER_CONN_API_KEY", TEST_KEY)
        .env("OPEN_AI_CONECTION_MODEL", "gpt-4o")
        .env("OPENAI_APIKEY", "sk-typo")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "warning: OPEN_AI_CONECTION_MODEL is set but not read: did you mean OPEN_AI_CONNECTION_MODEL?"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: OPENAI_APIKEY is set but not read: did you mean OPENAI_API_KEY?"),
        "{stderr}"
    );
    let run = ctx
        .cmd()
        .args(["run", "f", "--node", "a"])
        .env("OPEN_AI_CONECTION_MODEL", "gpt-4o")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("did you mean OPEN_AI_CONNECTION_MODEL?"),
        "{stderr}"
    );
}

#[test]
fn check_names_the_listed_models_and_the_variable_when_the_model_is_not_listed() {
    let ctx = TestContext::with_mock();
    // A llama.cpp server started without --alias lists its model file's name.
    ctx.mock()
        .set_known_models(&["SmolLM2-135M-Instruct.Q4_1.gguf"]);
    ctx.flow(
        "one",
        &[
            ("flow.dag.yaml", "inputs: {}\noutputs:\n  o: {reference: '${a.output}'}\nnodes:\n- {name: a, type: llm, source: {type: code, path: a.jinja2}, connection: open_ai_connection, api: chat}\n"),
            ("a.jinja2", "user:\nhi"),
        ],
    );
    let mut cmd = ctx.cmd();
    cmd.env("OPEN_AI_CONNECTION_MODEL", "smollm2");
    let out = cmd.args(["connections", "check", "one"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("but not `smollm2`: it lists `SmolLM2-135M-Instruct.Q4_1.gguf`"),
        "{stdout}"
    );
    assert!(stdout.contains("set OPEN_AI_CONNECTION_MODEL"), "{stdout}");
    assert!(stdout.contains("--alias"), "{stdout}");

    // Ollama lists its models with their tag: `llama3.2` is `llama3.2:latest`.
    ctx.mock()
        .set_known_models(&["llama3.2:latest", "qwen2.5:0.5b"]);
    let mut cmd = ctx.cmd();
    cmd.env("OPEN_AI_CONNECTION_MODEL", "llama3.2");
    let out = cmd.args(["connections", "check", "one"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("including `llama3.2`"), "{stdout}");
}
