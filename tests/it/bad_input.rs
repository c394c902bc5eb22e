//! Bad input never panics: each problem is reported with its file, line and column, the fix to
//! try, and exit status 2 (docs/cli.md, Errors).

use crate::support::context::TestContext;

fn check(yaml: &str, files: &[(&str, &str)]) -> crate::support::context::Run {
    let ctx = TestContext::new();
    let mut all = vec![("flow.dag.yaml", yaml)];
    all.extend_from_slice(files);
    ctx.flow("f", &all);
    let run = ctx.run(&["validate", "f"]);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(!run.stderr.contains("RUST_BACKTRACE"), "{}", run.stderr);
    run
}

const TOOL: &str = "from promptflow import tool\n@tool\ndef f(x=None):\n    return x\n";

#[test]
fn malformed_yaml_points_at_the_line() {
    let run = check("inputs:\n  q: {type: string\nnodes: []\n", &[]);
    run.expect_code(2)
        .stderr_has("invalid YAML")
        .stderr_has("flow.dag.yaml:3:");
}

#[test]
fn a_cycle_is_named() {
    let yaml = "inputs: {}\noutputs: {}\nnodes:\n- {name: a, type: python, source: {type: code, path: t.py}, inputs: {x: '${b.output}'}}\n- {name: b, type: python, source: {type: code, path: t.py}, inputs: {x: '${a.output}'}}\n";
    check(yaml, &[("t.py", TOOL)])
        .expect_code(2)
        .stderr_has("the flow has a cycle: a → b → a")
        .stderr_has("flow.dag.yaml:4:");
}

#[test]
fn unknown_references_suggest_names_with_a_caret() {
    let yaml = "inputs:\n  question: {type: string}\noutputs:\n  o: {reference: '${summarise.output}'}\nnodes:\n- name: summarize\n  type: python\n  source: {type: code, path: t.py}\n  inputs:\n    x: ${inputs.qestion}\n";
    let run = check(yaml, &[("t.py", TOOL)]);
    run.expect_code(2)
        .stderr_has("unknown flow input `qestion`")
        .stderr_has("did you mean `${inputs.question}`?")
        .stderr_has("flow.dag.yaml:10:8")
        .stderr_has("^^^^")
        .stderr_has("unknown node `summarise`")
        .stderr_has("did you mean `${summarize.output}`?")
        .stderr_has("2 errors found");
}

#[test]
fn missing_source_files_are_reported_with_the_path() {
    let yaml = "inputs: {}\noutputs: {}\nnodes:\n- {name: p, type: prompt, source: {type: code, path: nowhere.jinja2}}\n";
    check(yaml, &[])
        .expect_code(2)
        .stderr_has("source file `nowhere.jinja2` does not exist")
        .stderr_has("flow.dag.yaml:4:");
}

#[test]
fn duplicate_names_and_bad_types() {
    let yaml = "inputs:\n  n: {type: integer, default: 3}\n  m: {type: int, default: abc}\noutputs: {}\nnodes:\n- {name: a, type: python, source: {type: code, path: t.py}}\n- {name: a, type: python, source: {type: code, path: t.py}}\n- {name: c, type: javascript, source: {type: code, path: t.py}}\n";
    check(yaml, &[("t.py", TOOL)])
        .expect_code(2)
        .stderr_has("unknown type `integer`")
        .stderr_has("the default of input `m`: \"abc\" is not a valid int")
        .stderr_has("unsupported type `javascript`");
    let yaml = "inputs: {}\noutputs: {}\nnodes:\n- {name: a, type: python, source: {type: code, path: t.py}}\n- {name: a, type: python, source: {type: code, path: t.py}}\n";
    check(yaml, &[("t.py", TOOL)])
        .expect_code(2)
        .stderr_has("duplicate node name `a`")
        .stderr_has("flow.dag.yaml:5:");
}

#[test]
fn a_template_syntax_error_points_into_the_template() {
    let yaml = "inputs: {}\noutputs: {}\nnodes:\n- {name: p, type: prompt, source: {type: code, path: p.jinja2}}\n";
    check(yaml, &[("p.jinja2", "line one\n{% if x %}\nno end\n")])
        .expect_code(2)
        .stderr_has("p.jinja2");
}

#[test]
fn a_python_syntax_error_is_reported_before_running() {
    let ctx = TestContext::new();
    ctx.flow(
        "f",
        &[
            ("flow.dag.yaml", "inputs: {}\noutputs: {}\nnodes:\n- {name: a, type: python, source: {type: code, path: t.py}}\n"),
            ("t.py", "from promptflow import tool\n@tool\ndef f(:\n    pass\n"),
        ],
    );
    ctx.run(&["run", "f"])
        .expect_code(2)
        .stderr_has("t.py")
        .stderr_has("SyntaxError");
}

#[test]
fn python_exceptions_fail_the_line_with_a_traceback() {
    let ctx = TestContext::new();
    ctx.flow(
        "f",
        &[
            ("flow.dag.yaml", "inputs: {}\noutputs:\n  o: {reference: '${a.output}'}\nnodes:\n- {name: a, type: python, source: {type: code, path: t.py}}\n"),
            ("t.py", "from promptflow import tool\n\ndef helper():\n    raise ValueError('bad value 42')\n\n@tool\ndef f():\n    return helper()\n"),
        ],
    );
    ctx.run(&["run", "f"])
        .expect_code(1)
        .stderr_has("node `a`: ValueError: bad value 42")
        .stderr_has("Traceback")
        .stderr_has("helper");
}

#[test]
fn a_tool_missing_a_required_input_is_a_configuration_error() {
    let ctx = TestContext::new();
    ctx.flow(
        "f",
        &[
            ("flow.dag.yaml", "inputs: {}\noutputs: {}\nnodes:\n- {name: a, type: python, source: {type: code, path: t.py}, inputs: {txt: hi}}\n"),
            ("t.py", "from promptflow import tool\n@tool\ndef f(text: str):\n    return text\n"),
        ],
    );
    ctx.run(&["run", "f"])
        .expect_code(2)
        .stderr_has("needs input `text`")
        .stderr_has("has no parameter `txt`")
        .stderr_has("did you mean `text`?");
}

#[test]
fn a_missing_flow_directory_is_a_usage_error() {
    let ctx = TestContext::new();
    ctx.run(&["run", "nope"])
        .expect_code(2)
        .stderr_has("nope does not exist");
    std::fs::create_dir(ctx.root().join("empty")).unwrap();
    ctx.run(&["validate", "empty"])
        .expect_code(2)
        .stderr_has("has no flow.dag.yaml")
        .stderr_has("flow init");
}

#[test]
fn bad_flags_exit_2() {
    let ctx = TestContext::new();
    ctx.run(&["run"]).expect_code(2);
    ctx.run(&["frobnicate"]).expect_code(2);
}
