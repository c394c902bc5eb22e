//! promptflow's own example flows (copied unmodified into `tests/fixtures/promptflow/`) run
//! end to end against the mock LLM and give what promptflow gives: the expectations live in
//! `tests/fixtures/promptflow/<name>.expected.json` (see that folder's README).
//!
//! `basic` is not run here: its `llm` node is a Python tool that imports the third-party
//! `openai` and `python-dotenv` packages and calls Azure OpenAI itself, so it needs packages
//! this test suite does not install.

use std::path::Path;

use crate::support::context::TestContext;
use crate::support::mock_llm::MockReply;
use serde_json::{Map, Value, json};

const FIXTURES: &str = "tests/fixtures/promptflow";

/// The expectation file of fixture `name`.
fn expected(name: &str) -> Value {
    let path =
        crate::support::context::repo_root().join(format!("{FIXTURES}/{name}.expected.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `.promptflow/flow.detail.json` of the last single-line run of `flow`.
fn detail(flow: &Path) -> Value {
    let path = flow.join(".promptflow/flow.detail.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("flow.detail.json is JSON")
}

/// The node run record of `node` in a detail file.
fn node_run<'a>(detail: &'a Value, node: &str) -> &'a Value {
    detail["node_runs"]
        .as_array()
        .expect("node_runs is a list")
        .iter()
        .find(|n| n["node"] == node)
        .unwrap_or_else(|| panic!("no node run for `{node}` in {detail:#}"))
}

/// What one fixture run produced.
struct Outcome {
    ctx: TestContext,
    out: Value,
    detail: Value,
}

/// Copies fixture `name`, makes the mock answer `llm_reply`, runs the line with the expected
/// inputs (and variant) and returns the JSON result and the detail record.
fn run_fixture(name: &str, exp: &Value) -> Outcome {
    let ctx = TestContext::with_mock();
    let flow = ctx.copy_from_repo(&format!("{FIXTURES}/{name}"));
    if let Some(reply) = exp["llm_reply"].as_str() {
        // Every LLM call of these fixtures returns the same text.
        for _ in 0..8 {
            ctx.mock().push(MockReply::text(reply));
        }
    }
    ctx.write("inputs.json", &exp["inputs"].to_string());
    let flow_arg = flow.to_string_lossy().into_owned();
    let mut args = vec!["run", flow_arg.as_str(), "--inputs", "inputs.json"];
    if let Some(variant) = exp["variant"].as_str() {
        args.extend(["--variant", variant]);
    }
    args.extend(["--output", "json"]);
    let run = ctx.run(&args);
    run.expect_code(0);
    let out = run.json();
    assert_eq!(out["status"], "Completed", "{out:#}");
    let detail = detail(&flow);
    Outcome { ctx, out, detail }
}

/// Asserts flow outputs, node outputs and bypassed nodes against one expectation block
/// (`exp` holds `expected_flow_outputs`, `expected_node_outputs`, `expected_bypassed_nodes`).
fn assert_line(o: &Outcome, exp: &Value) {
    assert_eq!(
        o.out["outputs"], exp["expected_flow_outputs"],
        "flow outputs"
    );
    let bypassed: Vec<&str> = exp["expected_bypassed_nodes"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let nodes = exp["expected_node_outputs"]
        .as_object()
        .expect("expected_node_outputs");
    for (node, want) in nodes {
        let run = node_run(&o.detail, node);
        if bypassed.contains(&node.as_str()) {
            assert_eq!(run["status"], "Bypassed", "node `{node}`: {run:#}");
            assert_eq!(run["output"], Value::Null, "bypassed node `{node}`");
        } else {
            assert_eq!(run["status"], "Completed", "node `{node}`: {run:#}");
            assert_eq!(&run["output"], want, "output of node `{node}`");
        }
    }
    for node in &bypassed {
        assert!(nodes.contains_key(*node), "bypassed `{node}` is listed");
    }
}

/// Asserts the chat messages (and model parameters) each llm node sent to the mock.
fn assert_llm_requests(o: &Outcome, exp: &Value) {
    let Some(messages) = exp["expected_llm_messages"].as_object() else {
        assert_eq!(o.ctx.mock().request_count(), 0, "this flow calls no LLM");
        return;
    };
    let requests = o.ctx.mock().requests();
    assert_eq!(requests.len(), messages.len(), "one request per llm node");
    let empty = Map::new();
    for (node, want_messages) in messages {
        let body = requests
            .iter()
            .map(|r| &r.body)
            .find(|b| &b["messages"] == want_messages)
            .unwrap_or_else(|| {
                let sent: Vec<&Value> = requests.iter().map(|r| &r.body["messages"]).collect();
                panic!(
                    "no request sent the expected messages of node `{node}`\nwanted: {want_messages:#}\nsent: {sent:#?}"
                )
            });
        let params = exp["expected_llm_params"][node]
            .as_object()
            .unwrap_or(&empty);
        for (key, want) in params {
            // `deployment_name` goes into the URL of Azure connections only; the test
            // connection is OpenAI-type, which sends `model` in the body.
            if key == "deployment_name" {
                continue;
            }
            assert_eq!(&body[key], want, "parameter `{key}` of node `{node}`");
        }
        assert!(body.get("deployment_name").is_none(), "{body:#}");
    }
}

#[test]
fn basic_with_builtin_llm_renders_the_prompt_input_in_place_of_its_template_file() {
    let exp = expected("basic-with-builtin-llm");
    let o = run_fixture("basic-with-builtin-llm", &exp);
    assert_line(&o, &exp);
    assert_llm_requests(&o, &exp);
}

#[test]
fn chat_basic_replays_the_history_as_turns() {
    let exp = expected("chat-basic");
    let o = run_fixture("chat-basic", &exp);
    assert_line(&o, &exp);
    assert_llm_requests(&o, &exp);
}

#[test]
fn chat_math_variant_1_sends_the_few_shot_prompt_and_extracts_the_answer() {
    let exp = expected("chat-math-variant");
    let o = run_fixture("chat-math-variant", &exp);
    assert_line(&o, &exp);
    assert_llm_requests(&o, &exp);
    assert_eq!(node_run(&o.detail, "chat")["variant_id"], "variant_1");
}

#[test]
fn conditional_switch_runs_only_the_matching_branch() {
    let exp = expected("conditional-flow-for-switch");
    let o = run_fixture("conditional-flow-for-switch", &exp);
    assert_line(&o, &exp);
    assert_llm_requests(&o, &exp);
    // order_search prints to stdout: captured in the node's logs, not its output.
    let logs = &node_run(&o.detail, "order_search")["logs"]["stdout"];
    assert!(
        logs.as_str()
            .unwrap_or("")
            .contains("Searching for order..."),
        "{logs}"
    );
}

#[test]
fn conditional_switch_with_no_matching_intent_bypasses_every_branch_and_the_merge() {
    // class_check returns "unknown": all three branches are bypassed, so generate_response
    // (whose node references are all bypassed) is bypassed too, as promptflow's DAGManager
    // does (`_is_node_bypassable`), and the flow output is null.
    let mut exp = expected("conditional-flow-for-switch");
    exp["llm_reply"] = json!("I cannot tell.");
    let o = run_fixture("conditional-flow-for-switch", &exp);
    let want = json!({
        "expected_flow_outputs": {"response": null},
        "expected_node_outputs": {
            "classify_with_llm": "I cannot tell.",
            "class_check": "unknown",
            "order_search": null, "product_info": null, "product_recommendation": null,
            "generate_response": null
        },
        "expected_bypassed_nodes": ["order_search", "product_info", "product_recommendation",
                                    "generate_response"]
    });
    assert_line(&o, &want);
}

#[test]
fn conditional_if_else_takes_one_of_the_two_branches() {
    let exp = expected("conditional-flow-for-if-else");
    let alternative = &exp["alternative_when_content_safety_check_is_false"];
    // content_safety_check is random.choice([True, False]): run until both outcomes were
    // seen, checking each run (20 runs miss one outcome with probability 2^-19).
    let mut seen = (false, false);
    for _ in 0..20 {
        let o = run_fixture("conditional-flow-for-if-else", &exp);
        assert_llm_requests(&o, &exp);
        match node_run(&o.detail, "content_safety_check")["output"].as_bool() {
            Some(true) => {
                assert_line(&o, &exp);
                seen.0 = true;
            }
            Some(false) => {
                assert_line(&o, alternative);
                seen.1 = true;
            }
            other => panic!("content_safety_check returned {other:?}, not a bool"),
        }
        if seen == (true, true) {
            break;
        }
    }
    assert_eq!(seen, (true, true), "both branches run over 20 random lines");
}

#[test]
fn eval_classification_accuracy_grades_the_line_and_aggregates_it() {
    let exp = expected("eval-classification-accuracy");
    let o = run_fixture("eval-classification-accuracy", &exp);
    assert_line(&o, &exp);
    assert_llm_requests(&o, &exp);
    // A single-line run aggregates over that one line: one "Correct" grade, accuracy 1.0.
    assert_eq!(o.out["metrics"]["accuracy"], json!(1.0), "{:#}", o.out);
    let agg = node_run(&o.detail, "calculate_accuracy");
    assert_eq!(agg["output"], json!(["Correct"]), "{agg:#}");
}

#[test]
fn eval_classification_accuracy_single_incorrect_line_scores_zero() {
    let mut exp = expected("eval-classification-accuracy");
    exp["inputs"] = json!({"groundtruth": "Channel", "prediction": "Academic"});
    let o = run_fixture("eval-classification-accuracy", &exp);
    assert_eq!(o.out["outputs"]["grade"], "Incorrect");
    assert_eq!(o.out["metrics"]["accuracy"], json!(0.0), "{:#}", o.out);
}

#[test]
fn every_runnable_fixture_validates() {
    let ctx = TestContext::new();
    for name in [
        "basic-with-builtin-llm",
        "chat-basic",
        "chat-math-variant",
        "conditional-flow-for-if-else",
        "conditional-flow-for-switch",
        "eval-classification-accuracy",
    ] {
        let flow = ctx.copy_from_repo(&format!("{FIXTURES}/{name}"));
        let run = ctx.run(&["validate", &flow.to_string_lossy()]);
        run.expect_code(0).stdout_has("is valid");
        if name == "basic-with-builtin-llm" {
            // The llm node's `prompt` input replaces its template file, so the file's `text`
            // (which only the prompt node is given) is no missing variable.
            assert!(!run.stderr.contains("does not give"), "{}", run.stderr);
        }
    }
}

#[test]
fn with_an_azure_connection_the_deployment_name_goes_into_the_url() {
    let exp = expected("chat-basic");
    let ctx = TestContext::with_mock();
    let flow = ctx.copy_from_repo(&format!("{FIXTURES}/chat-basic"));
    ctx.mock()
        .push(MockReply::text(exp["llm_reply"].as_str().expect("reply")));
    ctx.write("inputs.json", &exp["inputs"].to_string());
    let run = ctx
        .cmd()
        .env("OPEN_AI_CONNECTION_API_TYPE", "azure")
        .env("OPEN_AI_CONNECTION_API_BASE", ctx.mock().url())
        .env("OPEN_AI_CONNECTION_API_VERSION", "2024-02-01")
        .args(["run", &flow.to_string_lossy(), "--inputs", "inputs.json"])
        .args(["--output", "json"])
        .output()
        .expect("run flow");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    let out: Value = serde_json::from_slice(&run.stdout).expect("JSON");
    assert_eq!(out["outputs"], exp["expected_flow_outputs"]);
    let requests = ctx.mock().requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.path, "/openai/deployments/gpt-35-turbo/chat/completions");
    assert_eq!(r.query.as_deref(), Some("api-version=2024-02-01"));
    assert_eq!(r.body["messages"], exp["expected_llm_messages"]["chat"]);
    assert_eq!(r.body["max_tokens"], json!(256));
    assert_eq!(r.body["temperature"], json!(0.7));
}
