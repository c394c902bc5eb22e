//! `flow run` on one input, end to end: the real binary against the loopback mock LLM.

use crate::support::context::TestContext;
use crate::support::mock_llm::MockReply;
use serde_json::json;

const CHAIN: &str = r#"
inputs:
  topic: {type: string}
  count: {type: int, default: 2}
outputs:
  answer: {reference: '${tidy.output}'}
  prompt_text: {reference: '${build_prompt.output}'}
nodes:
- name: build_prompt
  type: prompt
  source: {type: code, path: build.jinja2}
  inputs: {topic: '${inputs.topic}', count: '${inputs.count}'}
- name: ask
  type: llm
  source: {type: code, path: ask.jinja2}
  connection: open_ai_connection
  api: chat
  inputs:
    model: gpt-4o-mini
    temperature: "0.3"
    max_tokens: "64"
    request: '${build_prompt.output}'
- name: tidy
  type: python
  source: {type: code, path: tidy.py}
  inputs: {text: '${ask.output}'}
"#;

fn chain(ctx: &TestContext) -> std::path::PathBuf {
    ctx.flow(
        "chain",
        &[
            ("flow.dag.yaml", CHAIN),
            ("build.jinja2", "Write {{count}} facts about {{topic}}."),
            ("ask.jinja2", "# system:\nYou are terse.\n# user:\n{{request}}\n"),
            (
                "tidy.py",
                "from promptflow import tool\n\n@tool\ndef tidy(text: str) -> str:\n    return text.strip().upper()\n",
            ),
        ],
    )
}

#[test]
fn prompt_llm_python_chain_runs_and_sends_a_typed_request() {
    let ctx = TestContext::with_mock();
    ctx.mock()
        .reply_when("facts about owls", "  owls fly silently  ");
    chain(&ctx);
    let run = ctx.run(&["run", "chain", "--inputs", "topic=owls", "--output", "json"]);
    run.expect_code(0);
    let out = run.json();
    assert_eq!(out["status"], "Completed");
    assert_eq!(out["outputs"]["answer"], "OWLS FLY SILENTLY");
    assert_eq!(out["outputs"]["prompt_text"], "Write 2 facts about owls.");
    assert!(out["tokens"]["total_tokens"].as_u64().unwrap() > 0);

    let requests = ctx.mock().requests();
    assert_eq!(requests.len(), 1);
    let body = &requests[0].body;
    assert_eq!(requests[0].path, "/v1/chat/completions");
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["temperature"], json!(0.3));
    assert_eq!(body["max_tokens"], json!(64));
    assert_eq!(
        body["messages"],
        json!([
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Write 2 facts about owls."}
        ])
    );
    assert_eq!(
        requests[0].header("authorization"),
        Some(format!("Bearer {}", crate::support::context::TEST_KEY).as_str())
    );
}

#[test]
fn pretty_output_and_detail_record() {
    let ctx = TestContext::with_mock();
    let flow = chain(&ctx);
    let run = ctx.run(&["run", "chain", "--inputs", "topic=bees"]);
    run.expect_code(0)
        .stdout_has("answer: MOCK: WRITE 2 FACTS ABOUT BEES.")
        .stderr_has("3 nodes ran");
    let detail: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(flow.join(".promptflow/flow.detail.json")).unwrap(),
    )
    .unwrap();
    let nodes = detail["node_runs"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    let ask = nodes.iter().find(|n| n["node"] == "ask").unwrap();
    assert_eq!(ask["status"], "Completed");
    assert_eq!(ask["inputs"]["request"], "Write 2 facts about bees.");
    assert!(ask["system_metrics"]["total_tokens"].as_u64().unwrap() > 0);
    assert!(ask["system_metrics"]["duration"].as_f64().unwrap() >= 0.0);
    assert_eq!(
        detail["flow_runs"][0]["output"]["answer"],
        "MOCK: WRITE 2 FACTS ABOUT BEES."
    );
    let output: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(flow.join(".promptflow/flow.output.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(output["answer"], "MOCK: WRITE 2 FACTS ABOUT BEES.");
}

#[test]
fn inputs_from_a_json_file_and_type_coercion() {
    let ctx = TestContext::with_mock();
    chain(&ctx);
    ctx.write("in.json", r#"{"topic": "cats", "count": "5"}"#);
    let run = ctx.run(&["run", "chain", "--inputs", "in.json", "--output", "json"]);
    run.expect_code(0);
    assert_eq!(
        run.json()["outputs"]["prompt_text"],
        "Write 5 facts about cats."
    );
    let bad = ctx.run(&["run", "chain", "--inputs", "topic=cats", "count=many"]);
    bad.expect_code(1)
        .stderr_has("flow input `count`: \"many\" is not a valid int");
}

#[test]
fn missing_required_input_is_a_usage_error() {
    let ctx = TestContext::with_mock();
    chain(&ctx);
    ctx.run(&["run", "chain"])
        .expect_code(2)
        .stderr_has("`topic` has no default")
        .stderr_has("--inputs topic=...");
}

#[test]
fn a_chat_flows_history_starts_empty_when_not_given_as_pf_flow_test_starts_it() {
    let ctx = TestContext::new();
    ctx.flow(
        "chat",
        &[
            (
                "flow.dag.yaml",
                "inputs:\n  chat_history: {type: list}\n  question: {type: string, is_chat_input: true}\noutputs:\n  answer: {reference: '${echo.output}', is_chat_output: true}\nnodes:\n- {name: echo, type: python, source: {type: code, path: echo.py}, inputs: {h: '${inputs.chat_history}', q: '${inputs.question}'}}\n",
            ),
            (
                "echo.py",
                "from promptflow import tool\n\n@tool\ndef echo(h: list, q: str) -> str:\n    return f'{len(h)} turns before {q}'\n",
            ),
        ],
    );
    let run = ctx.run(&["run", "chat", "--inputs", "question=hi", "--output", "json"]);
    run.expect_code(0)
        .stderr_has("note: chat history `chat_history` starts empty ([])");
    assert_eq!(run.json()["outputs"]["answer"], "0 turns before hi");
    // the question has no such exception
    ctx.run(&["run", "chat"])
        .expect_code(2)
        .stderr_has("`question` has no default");
}

#[test]
fn single_node_runs_with_given_inputs() {
    let ctx = TestContext::with_mock();
    chain(&ctx);
    let run = ctx.run(&[
        "run",
        "chain",
        "--node",
        "tidy",
        "--inputs",
        "text=  hi  ",
        "--output",
        "json",
    ]);
    run.expect_code(0);
    assert_eq!(run.json()["output"], "HI");
    assert_eq!(
        ctx.mock().requests().len(),
        0,
        "--node tidy must not call the model"
    );
    ctx.run(&["run", "chain", "--node", "tidyy"])
        .expect_code(2)
        .stderr_has("did you mean `tidy`?");
}

#[test]
fn offline_mode_needs_no_key_and_says_so() {
    let ctx = TestContext::new();
    chain(&ctx);
    let run = ctx.run(&[
        "run",
        "chain",
        "--offline",
        "--inputs",
        "topic=owls",
        "--output",
        "json",
    ]);
    run.expect_code(0).stderr_has("offline");
    let out = run.json();
    assert_eq!(out["offline"], true);
    let answer = out["outputs"]["answer"].as_str().unwrap();
    assert!(
        answer.contains("NO MODEL"),
        "echo must say no model wrote it: {answer}"
    );
    // Deterministic: the same request gives the same reply.
    let again = ctx.run(&[
        "run",
        "chain",
        "--offline",
        "--inputs",
        "topic=owls",
        "--output",
        "json",
    ]);
    assert_eq!(again.json()["outputs"]["answer"], out["outputs"]["answer"]);
}

#[test]
fn missing_connection_names_the_variable_to_set() {
    let ctx = TestContext::new();
    chain(&ctx);
    ctx.run(&["run", "chain", "--inputs", "topic=owls"])
        .expect_code(2)
        .stderr_has("OPEN_AI_CONNECTION_API_KEY")
        .stderr_has("flow.dag.yaml");
}

#[test]
fn env_file_configures_the_connection() {
    let ctx = TestContext::with_mock();
    chain(&ctx);
    ctx.write(
        "custom.env",
        &format!(
            "OPEN_AI_CONNECTION_API_KEY={}\nOPEN_AI_CONNECTION_API_BASE={}/v1\n",
            crate::support::context::TEST_KEY,
            ctx.mock().url()
        ),
    );
    let mut cmd = ctx.cmd();
    cmd.env_remove("OPEN_AI_CONNECTION_API_KEY")
        .env_remove("OPEN_AI_CONNECTION_API_BASE");
    let out = cmd
        .args([
            "run",
            "chain",
            "--env-file",
            "custom.env",
            "--inputs",
            "topic=x",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn refused_key_exits_3_and_never_prints_the_key() {
    let ctx = TestContext::with_mock();
    chain(&ctx);
    let mut cmd = ctx.cmd();
    cmd.env("OPEN_AI_CONNECTION_API_KEY", "sk-wrong-secret-value-123");
    let out = cmd
        .args(["run", "chain", "--inputs", "topic=x"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("open_ai_connection"), "{stderr}");
    assert!(stderr.contains("OPEN_AI_CONNECTION_API_KEY"), "{stderr}");
    assert!(!stderr.contains("sk-wrong-secret-value-123"), "{stderr}");
}

#[test]
fn server_errors_are_retried_then_succeed() {
    let ctx = TestContext::with_mock();
    chain(&ctx);
    ctx.mock().push(MockReply::Status(500, "boom".into()));
    ctx.mock().push(MockReply::RateLimit {
        retry_after: Some(0),
    });
    let run = ctx.run(&["run", "chain", "--inputs", "topic=x", "--output", "json"]);
    run.expect_code(0);
    assert_eq!(ctx.mock().requests().len(), 3);
}

#[test]
fn malformed_reply_fails_the_line_with_exit_1() {
    let ctx = TestContext::with_mock();
    chain(&ctx);
    ctx.mock()
        .push(MockReply::Malformed("this is not json".into()));
    let run = ctx.run(&["run", "chain", "--inputs", "topic=x"]);
    run.expect_code(1).stderr_has("node `ask`");
}

#[test]
fn slow_reply_times_out() {
    let ctx = TestContext::with_mock();
    chain(&ctx);
    ctx.mock().set_latency(std::time::Duration::from_secs(5));
    let started = std::time::Instant::now();
    let out = ctx
        .cmd()
        .args([
            "run",
            "chain",
            "--inputs",
            "topic=x",
            "--request-timeout",
            "0.3",
            "--max-retries",
            "0",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.to_lowercase().contains("timed out") || stderr.contains("timeout"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the timeout did not cut the request short"
    );
}

/// An llm node that sets no sampling parameters sends what promptflow's OpenAI / Azure OpenAI
/// tools send (their signatures' defaults), so a server with other defaults samples the same
/// way under `flow` as under promptflow; a node's own values win.
#[test]
fn an_llm_node_sends_promptflows_default_parameters() {
    let flow = |api: &str, extra: &str| {
        format!(
            "inputs: {{q: {{type: string}}}}\noutputs:\n  a: {{reference: '${{ask.output}}'}}\nnodes:\n- {{name: ask, type: llm, source: {{type: code, path: ask.jinja2}}, connection: open_ai_connection, api: {api}, inputs: {{model: m, deployment_name: d, q: '${{inputs.q}}'{extra}}}}}\n"
        )
    };
    let body = |api: &str, extra: &str, azure: bool| {
        let ctx = TestContext::with_mock();
        let template = if api == "chat" {
            "user:\n{{q}}\n"
        } else {
            "{{q}}"
        };
        ctx.flow(
            "f",
            &[
                ("flow.dag.yaml", &flow(api, extra)),
                ("ask.jinja2", template),
            ],
        );
        let mut cmd = ctx.cmd();
        if azure {
            cmd.env("OPEN_AI_CONNECTION_API_TYPE", "azure")
                .env("OPEN_AI_CONNECTION_API_BASE", ctx.mock().url());
        }
        let out = cmd
            .args(["run", "f", "--inputs", "q=hi", "--no-cache"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ctx.mock().requests()[0].body.clone()
    };
    let b = body("chat", "", false);
    assert_eq!(
        (&b["temperature"], &b["top_p"], &b["stream"]),
        (&json!(1.0), &json!(1.0), &json!(false)),
        "{b:#}"
    );
    assert!(b.get("n").is_none(), "OpenAI chat sends no n: {b:#}");
    let b = body("chat", "", true);
    assert_eq!(b["n"], json!(1), "Azure chat sends n=1: {b:#}");
    let b = body("completion", "", false);
    for (k, v) in [
        ("max_tokens", json!(16)),
        ("temperature", json!(1.0)),
        ("top_p", json!(1.0)),
        ("n", json!(1)),
        ("best_of", json!(1)),
        ("echo", json!(false)),
        ("stream", json!(false)),
    ] {
        assert_eq!(b[k], v, "completion `{k}`: {b:#}");
    }
    // What the node sets is sent as it set it.
    let b = body(
        "chat",
        ", temperature: 0, top_p: '0.5', n: '2', user: me",
        false,
    );
    assert_eq!(
        (&b["temperature"], &b["top_p"], &b["n"], &b["user"]),
        (&json!(0), &json!(0.5), &json!(2), &json!("me")),
        "{b:#}"
    );
}
