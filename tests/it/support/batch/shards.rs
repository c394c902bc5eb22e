//! A flow and data for sharded runs, and the comparison of a merged run with a one-process run
//! (`shards.rs`, `deploy_job.rs`).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::*;
use crate::support::context::TestContext;

/// An LLM node, a Python node that upper-cases the answer (failing on "BOOM"), and an
/// aggregation node that logs metrics over every line and returns the line order it saw.
pub const FLOW: &str = r#"
inputs:
  question: {type: string}
outputs:
  answer: {reference: '${shape.output}'}
nodes:
- name: ask
  type: llm
  source: {type: code, path: ask.jinja2}
  connection: open_ai_connection
  api: chat
  inputs: {model: gpt-4o-mini, question: '${inputs.question}'}
- name: shape
  type: python
  source: {type: code, path: shape.py}
  inputs: {text: '${ask.output}'}
- name: score
  type: python
  aggregation: true
  source: {type: code, path: score.py}
  inputs: {answers: '${shape.output}', questions: '${inputs.question}'}
"#;

pub const SHAPE_PY: &str = r#"from promptflow import tool

@tool
def shape(text: str) -> str:
    if "BOOM" in text.upper():
        raise ValueError("the answer exploded: " + text)
    return text.upper()
"#;

pub const SCORE_PY: &str = r#"from promptflow.core import tool, log_metric

@tool
def score(answers: list, questions: list) -> str:
    log_metric("lines", len(answers))
    log_metric("chars", sum(len(a) for a in answers))
    return ",".join(questions)
"#;

pub const LINES: usize = 30;

pub fn shard_flow(ctx: &TestContext) {
    ctx.flow(
        "shq",
        &[
            ("flow.dag.yaml", FLOW),
            ("ask.jinja2", "# user:\n{{question}}\n"),
            ("shape.py", SHAPE_PY),
            ("score.py", SCORE_PY),
        ],
    );
    let data: String = (0..LINES)
        .map(|i| {
            format!(
                "{{\"question\": \"q{i}\", \"expected\": \"MOCK: Q{}\"}}\n",
                i % 20
            )
        })
        .collect();
    ctx.write("q.jsonl", &data);
    // Line 7 fails in the Python node: failed lines must merge too.
    ctx.mock().reply_when("q7", "BOOM");
}

/// Drop timings (and which attempt answered) from a record, recursively.
pub fn untimed(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| {
                    !matches!(
                        k.as_str(),
                        "start_time" | "end_time" | "duration_ms" | "retries"
                    )
                })
                .map(|(k, v)| (k.clone(), untimed(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(untimed).collect()),
        other => other.clone(),
    }
}

/// Every node artifact of a run, by relative path, timings aside.
pub fn node_artifacts(dir: &Path) -> BTreeMap<String, Vec<Value>> {
    let mut out = BTreeMap::new();
    let root = dir.join("node_artifacts");
    for node in std::fs::read_dir(&root).unwrap() {
        let node = node.unwrap().path();
        for file in std::fs::read_dir(&node).unwrap() {
            let file = file.unwrap().path();
            let rel = file.strip_prefix(&root).unwrap().display().to_string();
            out.insert(rel, jsonl(&file).iter().map(untimed).collect());
        }
    }
    out
}

/// The journal's line records by line number, timings and the run's name aside.
pub fn journal_lines(dir: &Path) -> BTreeMap<u64, Value> {
    journal(dir)
        .into_iter()
        .map(|mut r| {
            r.as_object_mut().unwrap().remove("name");
            (r["line_number"].as_u64().unwrap(), untimed(&r))
        })
        .collect()
}

/// Assert that run `a` equals run `b` but for timings.
pub fn assert_same_run(a: &Path, b: &Path) {
    assert_eq!(outputs(a), outputs(b), "flow_outputs");
    assert_eq!(
        jsonl(&a.join("inputs.jsonl")),
        jsonl(&b.join("inputs.jsonl")),
        "inputs.jsonl"
    );
    assert_eq!(node_artifacts(a), node_artifacts(b), "node_artifacts");
    assert_eq!(journal_lines(a), journal_lines(b), "journal");
    let metrics = |d: &Path| {
        let mut m = json_file(&d.join("metrics.json"));
        m.as_object_mut()
            .unwrap()
            .retain(|k, _| !k.starts_with("flow.latency"));
        m
    };
    assert_eq!(metrics(a), metrics(b), "metrics.json");
    assert_eq!(
        json_file(&a.join("error.json")),
        json_file(&b.join("error.json")),
        "error.json"
    );
    let counts = |d: &Path| {
        let m = meta(d);
        serde_json::json!([
            m["status"],
            m["total_lines"],
            m["completed_lines"],
            m["failed_lines"],
            m["tokens"],
            m["cost_usd"],
            m["variant"],
            m["flow_name"]
        ])
    };
    assert_eq!(counts(a), counts(b), "meta.json counts");
}

/// What two experiments' `summary.json` must agree on when they ran the same runs (a merged
/// experiment and a one-process one): each run's variant, dataset, metrics, status, counts,
/// tokens and hashes, the winner and the means; not names, paths or timings.
pub fn comparable_summary(s: &Value) -> (Vec<Value>, Value, Value) {
    let runs = s["runs"]
        .as_array()
        .map(|runs| {
            runs.iter()
                .map(|r| {
                    serde_json::json!([
                        r["variant"],
                        r["dataset"],
                        r["metrics"],
                        r["status"],
                        r["lines"],
                        r["failed_lines"],
                        r["tokens"],
                        r["flow_hash"],
                        r["dataset_hash"]
                    ])
                })
                .collect()
        })
        .unwrap_or_default();
    (runs, s["winner"].clone(), s["means"].clone())
}

/// The repository's experiment (`experiment.yaml`, its flows and datasets) in `ctx`.
pub fn classification_experiment(ctx: &TestContext) {
    ctx.copy_from_repo("flows");
    ctx.copy_from_repo("datasets");
    ctx.write(
        "experiment.yaml",
        &std::fs::read_to_string(crate::support::context::repo_root().join("experiment.yaml"))
            .unwrap(),
    );
}

/// The mock's answers by variant: the few-shot variant says "billing", the zero-shot one
/// "other" (five tickets of each category: every run scores 0.25 on one of them).
pub fn answers_by_variant(ctx: &TestContext) {
    ctx.mock().reply_when("Classify the ticket", "other");
    ctx.mock()
        .reply_when("You route customer support tickets into one of", "billing");
}
