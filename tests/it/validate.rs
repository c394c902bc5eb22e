//! `flow validate`: the DAG in topological order, warnings, and speed on a large flow.

use crate::support::context::TestContext;

#[test]
fn prints_nodes_in_the_order_they_run() {
    let ctx = TestContext::new();
    ctx.flow(
        "f",
        &[
            (
                "flow.dag.yaml",
                "inputs: {q: {type: string}}\noutputs:\n  o: {reference: '${last.output}'}\nnodes:\n- {name: last, type: prompt, source: {type: code, path: p.jinja2}, inputs: {x: '${middle.output}'}}\n- {name: middle, type: prompt, source: {type: code, path: p.jinja2}, inputs: {x: '${first.output}'}}\n- {name: first, type: prompt, source: {type: code, path: p.jinja2}, inputs: {x: '${inputs.q}'}}\n",
            ),
            ("p.jinja2", "{{x}} {{y}}"),
        ],
    );
    let run = ctx.run(&["validate", "f"]);
    run.expect_code(0)
        .stdout_has("is valid")
        .stdout_has("inputs: q (string)");
    let first = run.stdout.find("first").unwrap();
    let middle = run.stdout.find("middle").unwrap();
    let last = run.stdout.find("last").unwrap();
    assert!(first < middle && middle < last, "{}", run.stdout);
    run.stderr_has("uses `y`, which the node does not give");
}

#[test]
fn a_twenty_node_flow_validates() {
    let ctx = TestContext::new();
    let mut yaml = String::from(
        "inputs: {q: {type: string}}\noutputs:\n  o: {reference: '${n19.output}'}\nnodes:\n",
    );
    for i in 0..20 {
        let input = if i == 0 {
            "${inputs.q}".to_string()
        } else {
            format!("${{n{}.output}}", i - 1)
        };
        yaml.push_str(&format!("- {{name: n{i}, type: prompt, source: {{type: code, path: p.jinja2}}, inputs: {{x: '{input}'}}}}\n"));
    }
    ctx.flow("big", &[("flow.dag.yaml", &yaml), ("p.jinja2", "{{x}}!")]);
    let run = ctx.run(&["validate", "big"]);
    run.expect_code(0).stdout_has("20. n19");
}

#[test]
fn a_closed_stdout_pipe_ends_quietly() {
    let ctx = TestContext::new();
    ctx.flow("f", &[("flow.dag.yaml", "inputs: {q: {type: string}}\noutputs: {}\nnodes:\n- {name: a, type: prompt, source: {type: code, path: p.jinja2}, inputs: {x: '${inputs.q}'}}\n"), ("p.jinja2", "{{x}}")]);
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("flow"))
        .args(["validate", "f"])
        .current_dir(ctx.root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

/// A template variable its node does not give: `flow validate` names it with a fix that works —
/// the flow input of that name, a node's output, the closest input, or a new input.
#[test]
fn a_template_variable_nothing_gives_gets_a_fix_that_works() {
    let ctx = crate::support::context::TestContext::new();
    ctx.flow(
        "v",
        &[
            (
                "flow.dag.yaml",
                "inputs:\n  question: {type: string}\n  style: {type: string, default: x}\noutputs:\n  p: {reference: '${n.output}'}\nnodes:\n- {name: prep, type: prompt, source: {type: code, path: prep.jinja2}, inputs: {question: '${inputs.question}'}}\n- {name: n, type: prompt, source: {type: code, path: n.jinja2}, inputs: {q: '${inputs.question}'}}\n",
            ),
            ("prep.jinja2", "{{question}}"),
            ("n.jinja2", "{{q}} {{style}} {{prep}} {{questoin}} {{tone}}"),
        ],
    );
    let run = ctx.run(&["validate", "v"]);
    run.expect_code(0)
        .stderr_has("add `style: ${inputs.style}` under the node's inputs")
        .stderr_has("add `prep: ${prep.output}` under the node's inputs")
        .stderr_has("did you mean the flow input `question`? add `questoin: ${inputs.question}`")
        .stderr_has("the flow has no input or node named `tone`");
}
