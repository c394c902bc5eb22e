//! The example flows shipped in `flows/` run as documented: offline with their dataset's first
//! row, and against the mock LLM (variants, branches, chat history, the accuracy metric).

use std::path::Path;

use crate::support::context::TestContext;
use serde_json::{Value, json};

const SHIPPED: [&str; 5] = [
    "hello",
    "classification",
    "chat",
    "conditional",
    "eval-accuracy",
];

/// Row `index` (0-based) of `datasets/<name>.jsonl`.
fn dataset_row(name: &str, index: usize) -> Value {
    let path = crate::support::context::repo_root().join(format!("datasets/{name}.jsonl"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let line = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .nth(index)
        .unwrap_or_else(|| panic!("{} has no row {index}", path.display()));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{} row {index}: {e}", path.display()))
}

/// Copies `flows/<name>` into the context and writes `inputs` to `<name>.inputs.json`;
/// returns the flow directory.
fn setup(ctx: &TestContext, name: &str, inputs: &Value) -> std::path::PathBuf {
    let flow = ctx.copy_from_repo(&format!("flows/{name}"));
    ctx.write(&format!("{name}.inputs.json"), &inputs.to_string());
    flow
}

/// `flow run flows/<name> --inputs <name>.inputs.json --output json [extra...]`, expecting exit 0.
fn run_json(ctx: &TestContext, name: &str, extra: &[&str]) -> Value {
    let inputs = format!("{name}.inputs.json");
    let mut args = vec!["run", name, "--inputs", inputs.as_str(), "--output", "json"];
    args.extend_from_slice(extra);
    let run = ctx.run(&args);
    run.expect_code(0);
    let out = run.json();
    assert_eq!(out["status"], "Completed", "{out:#}");
    out
}

/// Name → status of every node run of the last single-line run of `flow`.
fn node_statuses(flow: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(flow.join(".promptflow/flow.detail.json"))
        .expect("flow.detail.json");
    let detail: Value = serde_json::from_str(&text).expect("detail is JSON");
    detail["node_runs"]
        .as_array()
        .expect("node_runs")
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap_or_default().to_string(),
                n["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The nodes of the last run of `flow` whose status is `Bypassed`, sorted.
fn bypassed(flow: &Path) -> Vec<String> {
    let mut names: Vec<String> = node_statuses(flow)
        .into_iter()
        .filter(|(_, s)| s == "Bypassed")
        .map(|(n, _)| n)
        .collect();
    names.sort();
    names
}

#[test]
fn every_shipped_flow_runs_offline_on_its_first_dataset_row() {
    let ctx = TestContext::new();
    for name in SHIPPED {
        setup(&ctx, name, &dataset_row(name, 0));
        let out = run_json(&ctx, name, &["--offline"]);
        assert_eq!(out["offline"], true, "{name}: {out:#}");
        let outputs = out["outputs"].as_object().expect("outputs");
        assert!(!outputs.is_empty(), "{name}: no outputs");
        // Where a model's text surfaces in an output, it says no model wrote it.
        let llm_output = match name {
            "hello" | "chat" => Some("answer"),
            "classification" => Some("raw"),
            _ => None,
        };
        if let Some(key) = llm_output {
            let text = outputs[key].as_str().unwrap_or_default();
            assert!(text.contains("no model"), "{name}.{key}: {text:?}");
        }
    }
}

#[test]
fn every_shipped_flow_validates() {
    let ctx = TestContext::new();
    for name in SHIPPED {
        ctx.copy_from_repo(&format!("flows/{name}"));
        let run = ctx.run(&["validate", name]);
        run.expect_code(0).stdout_has("is valid");
        assert!(
            !run.stderr.contains("warning"),
            "{name} validates with warnings:\n{}",
            run.stderr
        );
    }
}

#[test]
fn hello_answers_with_the_trimmed_model_reply() {
    let ctx = TestContext::with_mock();
    ctx.mock()
        .reply_when("What is a prompt flow?", "  A graph of steps.\n");
    setup(&ctx, "hello", &dataset_row("hello", 0));
    // hello names no model: the connection's default from .env picks it.
    ctx.write(".env", "OPEN_AI_CONNECTION_MODEL=gpt-4o-mini\n");
    let out = run_json(&ctx, "hello", &[]);
    assert_eq!(out["outputs"]["answer"], "A graph of steps.");
    let requests = ctx.mock().requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].body["model"], "gpt-4o-mini");
    assert_eq!(
        requests[0].body["messages"][1],
        json!({"role": "user", "content": "What is a prompt flow?"})
    );
}

#[test]
fn classification_returns_a_category_with_either_variant() {
    let row = dataset_row("classification", 0);
    let text = row["text"].as_str().expect("text column").to_string();
    for (variant, few_shot) in [
        (None, false),
        (Some("${classify.variant_0}"), false),
        (Some("${classify.variant_1}"), true),
    ] {
        let ctx = TestContext::with_mock();
        ctx.mock().reply_when(&text, "Category: **Billing**.");
        setup(&ctx, "classification", &row);
        let extra: Vec<&str> = variant.map(|v| vec!["--variant", v]).unwrap_or_default();
        let out = run_json(&ctx, "classification", &extra);
        assert_eq!(
            out["outputs"]["category"], "billing",
            "{variant:?}: {out:#}"
        );
        assert_eq!(out["outputs"]["raw"], "Category: **Billing**.");

        let requests = ctx.mock().requests();
        assert_eq!(requests.len(), 1, "{variant:?}");
        let messages = requests[0].body["messages"].as_array().expect("messages");
        let last = messages.last().expect("a message");
        assert_eq!(last, &json!({"role": "user", "content": text}));
        let roles: Vec<&str> = messages.iter().filter_map(|m| m["role"].as_str()).collect();
        if few_shot {
            // System, four worked examples (user + assistant each), then the ticket.
            assert_eq!(messages.len(), 10, "{messages:#?}");
            assert_eq!(
                roles.iter().filter(|r| **r == "assistant").count(),
                4,
                "{roles:?}"
            );
            assert_eq!(
                messages[1]["content"],
                "My card was charged but the invoice still says unpaid."
            );
            assert_eq!(
                messages[2],
                json!({"role": "assistant", "content": "billing"})
            );
            assert_eq!(requests[0].body["temperature"], json!(0.3));
        } else {
            assert_eq!(roles, ["system", "user"], "{variant:?}");
            assert!(
                messages[0]["content"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("- billing: charges"),
                "{messages:#?}"
            );
            assert_eq!(requests[0].body["temperature"], json!(0));
        }
        assert_eq!(requests[0].body["max_tokens"], json!(10));
    }
}

#[test]
fn conditional_takes_each_branch() {
    // (dataset row, route, branch that runs, bypassed nodes, answer source)
    let cases = [
        (
            0,
            "order",
            vec!["escalate", "other_reply", "refund_reply"],
            "Order 12345 has shipped",
        ),
        (
            2,
            "refund",
            vec!["escalate", "order_status", "other_reply"],
            "MOCK REFUND REPLY",
        ),
        (
            4,
            "other",
            vec!["escalate", "order_status", "refund_reply"],
            "Thanks for your message.",
        ),
        (
            3,
            "refund",
            vec!["order_status", "other_reply"],
            "MOCK REFUND REPLY",
        ),
    ];
    for (row_index, route, want_bypassed, answer) in cases {
        let ctx = TestContext::with_mock();
        ctx.mock()
            .reply_when("courteous support agent", "MOCK REFUND REPLY");
        let row = dataset_row("conditional", row_index);
        let flow = setup(&ctx, "conditional", &row);
        let out = run_json(&ctx, "conditional", &[]);
        let outputs = &out["outputs"];
        assert_eq!(outputs["route"], route, "row {row_index}: {out:#}");
        let got = outputs["answer"].as_str().unwrap_or_default();
        assert!(got.starts_with(answer), "row {row_index}: answer {got:?}");
        assert_eq!(bypassed(&flow), want_bypassed, "row {row_index}");
        let llm_calls = ctx.mock().request_count();
        assert_eq!(llm_calls, usize::from(route == "refund"), "row {row_index}");
        if want_bypassed.contains(&"escalate") {
            assert_eq!(outputs["escalation"], Value::Null);
        } else {
            assert_eq!(
                outputs["escalation"],
                "Escalated to a human agent on the refund queue."
            );
        }
        if route != "order" {
            assert_eq!(outputs["order_status"], Value::Null, "row {row_index}");
        }
    }
}

#[test]
fn chat_sends_the_history_as_alternating_messages() {
    let ctx = TestContext::with_mock();
    let row = dataset_row("chat", 2);
    ctx.mock()
        .reply_when("test it on many inputs", "Use flow run --data.");
    setup(&ctx, "chat", &row);
    let out = run_json(&ctx, "chat", &[]);
    assert_eq!(out["outputs"]["answer"], "Use flow run --data.");

    let requests = ctx.mock().requests();
    assert_eq!(requests.len(), 1);
    let messages = requests[0].body["messages"].as_array().expect("messages");
    let history = row["chat_history"].as_array().expect("history");
    let mut want = vec![json!({
        "role": "system",
        "content": "You are a helpful assistant. Keep answers short and use the conversation so far."
    })];
    for turn in history {
        want.push(json!({"role": "user", "content": turn["inputs"]["question"]}));
        want.push(json!({"role": "assistant", "content": turn["outputs"]["answer"]}));
    }
    want.push(json!({"role": "user", "content": row["question"]}));
    assert_eq!(messages, &want);
}

#[test]
fn chat_with_empty_history_sends_system_and_question_only() {
    let ctx = TestContext::with_mock();
    let row = dataset_row("chat", 0);
    setup(&ctx, "chat", &row);
    run_json(&ctx, "chat", &[]);
    let requests = ctx.mock().requests();
    let roles: Vec<&str> = requests[0].body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["role"].as_str())
        .collect();
    assert_eq!(roles, ["system", "user"]);
}

#[test]
fn eval_accuracy_logs_the_accuracy_metric() {
    for (row_index, grade, accuracy) in [
        (0, "Correct", 1.0),
        (1, "Correct", 1.0),
        (2, "Incorrect", 0.0),
    ] {
        let ctx = TestContext::new();
        setup(
            &ctx,
            "eval-accuracy",
            &dataset_row("eval-accuracy", row_index),
        );
        let out = run_json(&ctx, "eval-accuracy", &[]);
        assert_eq!(out["outputs"]["grade"], grade, "row {row_index}");
        assert_eq!(
            out["metrics"]["accuracy"],
            json!(accuracy),
            "row {row_index}: {out:#}"
        );
    }
}
