//! Aggregation nodes (docs/flows.md) through the library: they run once after all lines and receive
//! lists with one element per *succeeded* line, in line order; literals stay scalar.

use serde_json::{Map, Value, json};

use flow::connection::EnvVars;
use flow::executor::{Executor, ExecutorOptions};
use flow::record::Status;

const FLOW: &str = r#"
inputs:
  x: {type: string}
outputs:
  shout: {reference: '${shout.output}'}
nodes:
- {name: shout, type: python, source: {type: code, path: shout.py}, inputs: {x: '${inputs.x}'}}
- name: collect
  type: python
  aggregation: true
  source: {type: code, path: collect.py}
  inputs: {outputs: '${shout.output}', inputs: '${inputs.x}', label: fixed}
- name: summarize
  type: python
  aggregation: true
  source: {type: code, path: summarize.py}
  inputs: {collected: '${collect.output}'}
"#;

fn object(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregation_receives_lists_of_succeeded_lines_only() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("flow.dag.yaml", FLOW);
    write(
        "shout.py",
        "from promptflow import tool\n\n@tool\ndef shout(x: str) -> str:\n    if x == 'bad':\n        raise ValueError('no')\n    return x.upper()\n",
    );
    write(
        "collect.py",
        "from promptflow.core import tool, log_metric\n\n@tool\ndef collect(outputs: list, inputs: list, label: str):\n    log_metric('lines', len(outputs))\n    log_metric('ratio', 0.5)\n    return {'outputs': outputs, 'inputs': inputs, 'label': label}\n",
    );
    write(
        "summarize.py",
        "from promptflow import tool\n\n@tool\ndef summarize(collected: dict):\n    return len(collected['outputs'])\n",
    );

    let flow = flow::model::load(dir.path(), &[]).expect("loads");
    let (dag, _) = flow::dag::build(&flow).expect("valid");
    let options = ExecutorOptions::new(EnvVars::from_pairs(Vec::<(String, String)>::new()));
    let executor = Executor::new(flow, dag, &options).await.expect("prepares");

    let mut lines = Vec::new();
    for (i, x) in ["a", "bad", "c"].iter().enumerate() {
        lines.push(executor.run_line(i, &object(json!({ "x": x }))).await);
    }
    assert_eq!(lines[1].status, Status::Failed);
    assert_eq!(
        lines[1].error.as_ref().unwrap().node.as_deref(),
        Some("shout")
    );
    // Lines finishing out of order must not change the order aggregation sees.
    lines.reverse();

    let agg = executor.run_aggregation(&lines).await;
    assert!(agg.error.is_none(), "{:?}", agg.error);
    let collect = agg.nodes.iter().find(|n| n.node == "collect").unwrap();
    assert_eq!(collect.inputs["outputs"], json!(["A", "C"]));
    assert_eq!(collect.inputs["inputs"], json!(["a", "c"]));
    assert_eq!(collect.inputs["label"], json!("fixed"));
    let summarize = agg.nodes.iter().find(|n| n.node == "summarize").unwrap();
    assert_eq!(
        summarize.output,
        json!(2),
        "aggregation nodes see other aggregation outputs as scalars"
    );
    assert_eq!(agg.metrics["lines"], json!(2.0));
    assert_eq!(agg.metrics["ratio"], json!(0.5));
    executor.shutdown().await;
}

/// A flow output that references an aggregation node is left out of every line's outputs with
/// a warning, as promptflow leaves it out ("will not take effect") — the flow still runs.
#[test]
fn an_output_referencing_an_aggregation_node_is_left_out_with_a_warning() {
    let ctx = crate::support::context::TestContext::new();
    let flow = FLOW.replace(
        "outputs:\n  shout: {reference: '${shout.output}'}\n",
        "outputs:\n  shout: {reference: '${shout.output}'}\n  total: {reference: '${summarize.output}'}\n",
    );
    ctx.flow(
        "agg",
        &[
            ("flow.dag.yaml", &flow),
            (
                "shout.py",
                "from promptflow import tool\n\n@tool\ndef shout(x: str) -> str:\n    return x.upper()\n",
            ),
            (
                "collect.py",
                "from promptflow import tool\n\n@tool\ndef collect(outputs: list, inputs: list, label: str) -> dict:\n    return {'n': len(outputs)}\n",
            ),
            (
                "summarize.py",
                "from promptflow import tool\n\n@tool\ndef summarize(collected: dict) -> int:\n    return collected['n']\n",
            ),
        ],
    );
    let warning = "flow output `total` references aggregation node `summarize`: it is left out of every line's outputs";
    ctx.run(&["validate", "agg"])
        .expect_code(0)
        .stderr_has(warning);
    ctx.write("d.jsonl", "{\"x\": \"a\"}\n{\"x\": \"b\"}\n");
    let run = ctx.run(&["run", "agg", "--data", "d.jsonl", "--name", "r"]);
    run.expect_code(0).stderr_has(warning);
    let outputs =
        std::fs::read_to_string(ctx.root().join(".flow/runs/r/flow_outputs/output.jsonl")).unwrap();
    for line in outputs.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert!(v.get("total").is_none() && v.get("shout").is_some(), "{v}");
    }
}
