//! Flows, data and run-directory readers shared by the batch-run tests (`batch*.rs`,
//! `resume.rs`, `runs_command.rs`): `use crate::support::batch::*;`.

pub mod shards;

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::context::TestContext;

/// An LLM node with two prompt variants, then a Python node that upper-cases the answer after
/// sleeping `delay` seconds and fails on answers containing "BOOM".
pub const QA_FLOW: &str = r#"
inputs:
  question: {type: string}
  delay: {type: double, default: 0}
outputs:
  answer: {reference: '${shape.output}'}
  raw: {reference: '${ask.output}'}
nodes:
- name: ask
  use_variants: true
- name: shape
  type: python
  source: {type: code, path: shape.py}
  inputs: {text: '${ask.output}', delay: '${inputs.delay}'}
node_variants:
  ask:
    default_variant_id: plain
    variants:
      plain:
        node:
          type: llm
          source: {type: code, path: plain.jinja2}
          connection: open_ai_connection
          api: chat
          inputs: {model: gpt-4o-mini, question: '${inputs.question}'}
      polite:
        node:
          type: llm
          source: {type: code, path: polite.jinja2}
          connection: open_ai_connection
          api: chat
          inputs: {model: gpt-4o-mini, temperature: 0.5, question: '${inputs.question}'}
"#;

const SHAPE_PY: &str = r#"import time
from promptflow import tool

@tool
def shape(text: str, delay: float) -> str:
    time.sleep(delay)
    if "BOOM" in text.upper():
        raise ValueError("the answer exploded: " + text)
    return text.upper()
"#;

/// Write `QA_FLOW` as `qa/` in the project.
pub fn qa_flow(ctx: &TestContext) -> PathBuf {
    ctx.flow(
        "qa",
        &[
            ("flow.dag.yaml", QA_FLOW),
            ("plain.jinja2", "# user:\n{{question}}\n"),
            ("polite.jinja2", "# user:\nPlease answer: {{question}}\n"),
            ("shape.py", SHAPE_PY),
        ],
    )
}

/// A Python-only flow `calc/`: `y = x * 2` (after sleeping `delay` seconds); a negative `x`
/// fails the line. `tag` (default "none") is echoed as the output `tag`.
pub fn calc_flow(ctx: &TestContext) -> PathBuf {
    ctx.flow(
        "calc",
        &[
            (
                "flow.dag.yaml",
                r#"
inputs:
  x: {type: int}
  delay: {type: double, default: 0}
  tag: {type: string, default: none}
outputs:
  y: {reference: '${double.output}'}
  tag: {reference: '${inputs.tag}'}
nodes:
- name: double
  type: python
  source: {type: code, path: double.py}
  inputs: {x: '${inputs.x}', delay: '${inputs.delay}'}
"#,
            ),
            (
                "double.py",
                r#"import time
from promptflow import tool

@tool
def double(x: int, delay: float) -> int:
    time.sleep(delay)
    if x < 0:
        raise ValueError(f"negative x: {x}")
    return x * 2
"#,
            ),
        ],
    )
}

/// `n` JSONL rows `{"question": "q<i>"}`.
pub fn questions(n: usize) -> String {
    (0..n)
        .map(|i| format!("{{\"question\": \"q{i}\"}}\n"))
        .collect()
}

/// The run directory `.flow/runs/<name>` of the project.
pub fn run_dir(ctx: &TestContext, name: &str) -> PathBuf {
    ctx.root().join(".flow").join("runs").join(name)
}

/// Every line of a JSONL file, parsed.
pub fn jsonl(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: bad JSON line {l:?}: {e}", path.display()))
        })
        .collect()
}

/// A JSON file, parsed.
pub fn json_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `line_number` of each record.
pub fn line_numbers(records: &[Value]) -> Vec<u64> {
    records
        .iter()
        .map(|r| r["line_number"].as_u64().expect("line_number"))
        .collect()
}

/// The journal records (`flow_artifacts/*.jsonl`) in the order they were written.
pub fn journal(dir: &Path) -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("flow_artifacts"))
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files.iter().flat_map(|f| jsonl(f)).collect()
}

/// `output.jsonl` of a run.
pub fn outputs(dir: &Path) -> Vec<Value> {
    jsonl(&dir.join("flow_outputs").join("output.jsonl"))
}

/// `meta.json` of a run.
pub fn meta(dir: &Path) -> Value {
    json_file(&dir.join("meta.json"))
}

/// Start `flow ARGS...` as a child process (for tests that watch or kill a running batch),
/// with the environment `TestContext::cmd` gives it.
pub fn spawn(ctx: &TestContext, args: &[&str]) -> std::process::Child {
    let mut cmd = ctx.std_cmd();
    cmd.args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    cmd.spawn().expect("spawn flow")
}

/// An LLM-only flow `ask/`: the question goes to the model, the answer is the output.
pub fn ask_flow(ctx: &TestContext) -> PathBuf {
    ctx.flow(
        "ask",
        &[
            (
                "flow.dag.yaml",
                r#"
inputs:
  question: {type: string}
outputs:
  answer: {reference: '${ask.output}'}
nodes:
- name: ask
  type: llm
  source: {type: code, path: ask.jinja2}
  connection: open_ai_connection
  api: chat
  inputs: {model: gpt-4o-mini, question: '${inputs.question}'}
"#,
            ),
            ("ask.jinja2", "# user:\n{{question}}\n"),
        ],
    )
}
