//! What `flow` refuses before any work starts (docs/refusals.md): flows it cannot run
//! faithfully are an error with a located message and exit status 2 — never run as an empty
//! DAG that "completes" with no outputs.

use crate::support::context::TestContext;

/// `flow run` (one line), a batch and `flow validate` all refuse `flow_dir`, saying `expected`,
/// and no run directory is created.
fn refused_everywhere(ctx: &TestContext, flow_dir: &str, expected: &str) {
    ctx.write("data.jsonl", "{\"x\": \"1\"}\n");
    ctx.run(&["run", flow_dir, "--inputs", "x=1", "--offline"])
        .expect_code(2)
        .stderr_has(expected);
    ctx.run(&["run", flow_dir, "--data", "data.jsonl", "--offline"])
        .expect_code(2)
        .stderr_has(expected);
    ctx.run(&["validate", flow_dir])
        .expect_code(2)
        .stderr_has(expected);
    assert!(
        !ctx.root().join(".flow/runs").exists(),
        "a refused flow must not start a run"
    );
}

#[test]
fn a_flex_flow_folder_is_refused_not_completed_empty() {
    let ctx = TestContext::new();
    ctx.flow(
        "flex",
        &[
            ("flow.flex.yaml", "entry: entry:my_flow\n"),
            ("entry.py", "def my_flow(x: str) -> str:\n    return x\n"),
        ],
    );
    refused_everywhere(&ctx, "flex", "is a flex flow");
}

#[test]
fn a_dag_file_with_an_entry_is_a_flex_flow_and_is_refused_at_its_line() {
    let ctx = TestContext::new();
    ctx.flow(
        "flex",
        &[
            (
                "flow.dag.yaml",
                "$schema: https://azuremlschemas.azureedge.net/promptflow/latest/Flow.schema.json\nentry: entry:my_flow\nenvironment:\n  python_requirements_txt: requirements.txt\n",
            ),
            ("entry.py", "def my_flow(x: str) -> str:\n    return x\n"),
        ],
    );
    refused_everywhere(&ctx, "flex", "this is a flex flow (`entry: entry:my_flow`)");
    // Located: the file, line 2 (the `entry` key's value) and a caret.
    ctx.run(&["validate", "flex"])
        .expect_code(2)
        .stderr_has("flow.dag.yaml:2:")
        .stderr_has("^");
}

#[test]
fn a_language_other_than_python_is_refused() {
    let ctx = TestContext::new();
    ctx.flow(
        "cs",
        &[
            (
                "flow.dag.yaml",
                "language: csharp\ninputs: {x: {type: string}}\noutputs:\n  y: {reference: '${n.output}'}\nnodes:\n- {name: n, type: prompt, source: {type: code, path: n.jinja2}, inputs: {x: '${inputs.x}'}}\n",
            ),
            ("n.jinja2", "{{x}}"),
        ],
    );
    refused_everywhere(&ctx, "cs", "`language: csharp` is not supported");
}

#[test]
fn language_python_is_accepted() {
    let ctx = TestContext::new();
    ctx.flow(
        "py",
        &[
            (
                "flow.dag.yaml",
                "language: python\ninputs: {x: {type: string}}\noutputs:\n  y: {reference: '${n.output}'}\nnodes:\n- {name: n, type: prompt, source: {type: code, path: n.jinja2}, inputs: {x: '${inputs.x}'}}\n",
            ),
            ("n.jinja2", "said {{x}}"),
        ],
    );
    ctx.run(&["run", "py", "--inputs", "x=hi"])
        .expect_code(0)
        .stdout_has("said hi");
}

#[test]
fn a_flow_with_no_nodes_is_refused() {
    let ctx = TestContext::new();
    ctx.flow(
        "empty",
        &[(
            "flow.dag.yaml",
            "inputs: {x: {type: string}}\noutputs:\n  y: {reference: '${inputs.x}'}\nnodes: []\n",
        )],
    );
    refused_everywhere(&ctx, "empty", "the flow has no nodes");
    ctx.flow(
        "bare",
        &[(
            "flow.dag.yaml",
            "inputs: {x: {type: string}}\noutputs:\n  y: {reference: '${inputs.x}'}\n",
        )],
    );
    refused_everywhere(&ctx, "bare", "the flow has no nodes");
}

#[test]
fn a_folder_with_several_prompty_files_and_no_dag_names_them() {
    let ctx = TestContext::new();
    let prompty = "---\nname: p\nmodel:\n  api: chat\n  configuration:\n    type: openai\n    connection: open_ai_connection\n---\nuser:\nhi\n";
    ctx.flow("two", &[("a.prompty", prompty), ("b.prompty", prompty)]);
    refused_everywhere(&ctx, "two", "a.prompty, b.prompty");
}
