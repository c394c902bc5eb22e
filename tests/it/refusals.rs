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

/// A class entry whose `__init__` needs an argument (promptflow's `--init` / `init:`).
const CLASS_ENTRY: &str = "class MyFlow:\n    def __init__(self, prefix: str):\n        self.prefix = prefix\n\n    def __call__(self, x: str) -> str:\n        return self.prefix + x\n";

/// `flow run` (one line) and a batch refuse `flow_dir`, saying `expected`, and no run
/// directory is created (`flow validate` accepts it: only running needs the init).
fn refused_when_run(ctx: &TestContext, flow_dir: &str, expected: &str) {
    ctx.write("data.jsonl", "{\"x\": \"1\"}\n");
    ctx.run(&["run", flow_dir, "--inputs", "x=1", "--offline"])
        .expect_code(2)
        .stderr_has(expected);
    ctx.run(&["run", flow_dir, "--data", "data.jsonl", "--offline"])
        .expect_code(2)
        .stderr_has(expected);
    assert!(
        !ctx.root().join(".flow/runs").exists(),
        "a refused flow must not start a run"
    );
}

#[test]
fn a_class_entry_run_without_the_init_it_needs_is_refused_not_completed_empty() {
    let ctx = TestContext::new();
    ctx.flow(
        "flex",
        &[
            ("flow.flex.yaml", "entry: entry:MyFlow\n"),
            ("entry.py", CLASS_ENTRY),
        ],
    );
    refused_when_run(
        &ctx,
        "flex",
        "`entry: entry:MyFlow` is a class whose `__init__` needs `prefix`, and no --init gives it",
    );
    ctx.run(&["validate", "flex"])
        .expect_code(0)
        .stdout_has("init (--init): prefix (string, required)");
}

#[test]
fn a_dag_file_with_an_entry_is_a_flex_flow_and_a_class_needing_init_is_refused_at_its_line() {
    let ctx = TestContext::new();
    ctx.flow(
        "flex",
        &[
            (
                "flow.dag.yaml",
                "$schema: https://azuremlschemas.azureedge.net/promptflow/latest/Flow.schema.json\nentry: entry:MyFlow\nenvironment:\n  python_requirements_txt: requirements.txt\n",
            ),
            ("entry.py", CLASS_ENTRY),
        ],
    );
    refused_when_run(&ctx, "flex", "is a class whose `__init__` needs `prefix`");
    // Located: the file, line 2 (the `entry` key's value) and a caret.
    ctx.run(&["run", "flex", "--inputs", "x=1"])
        .expect_code(2)
        .stderr_has("flow.dag.yaml:2:")
        .stderr_has("^")
        .stderr_has("--init prefix=VALUE");
}

#[test]
fn a_flex_flow_whose_entry_is_a_prompty_or_not_module_function_is_refused() {
    let ctx = TestContext::new();
    ctx.flow(
        "prompty_entry",
        &[
            ("flow.flex.yaml", "entry: chat.prompty\n"),
            ("chat.prompty", "---\nname: x\n---\nuser: {{x}}\n"),
        ],
    );
    refused_everywhere(
        &ctx,
        "prompty_entry",
        "a .prompty entry is not supported in a flex flow",
    );
    ctx.flow(
        "bad_entry",
        &[
            ("flow.flex.yaml", "entry: my_flow\n"),
            ("flow.py", "def my_flow(x: str):\n    return x\n"),
        ],
    );
    refused_everywhere(
        &ctx,
        "bad_entry",
        "`entry: my_flow` is not `module:function`",
    );
    ctx.flow(
        "with_init",
        &[
            (
                "flow.flex.yaml",
                "entry: flow:my_flow\ninit:\n  prefix: {type: string}\n",
            ),
            ("flow.py", "def my_flow(x: str):\n    return x\n"),
        ],
    );
    refused_everywhere(
        &ctx,
        "with_init",
        "`init:` gives arguments for a class entry's `__init__`, but `entry: flow:my_flow` is a function",
    );
    ctx.flow(
        "no_entry",
        &[("flow.flex.yaml", "inputs:\n  x: {type: string}\n")],
    );
    refused_everywhere(&ctx, "no_entry", "a flex flow file has no `entry:`");
    // Two flow files in one folder: which one is meant is unclear (promptflow refuses it too).
    ctx.flow(
        "both",
        &[
            ("flow.flex.yaml", "entry: flow:my_flow\n"),
            ("flow.py", "def my_flow(x: str):\n    return x\n"),
            (
                "flow.dag.yaml",
                "inputs: {x: {type: string}}\noutputs:\n  y: {reference: '${n.output}'}\nnodes:\n- {name: n, type: prompt, source: {type: code, path: n.jinja2}, inputs: {x: '${inputs.x}'}}\n",
            ),
            ("n.jinja2", "{{x}}"),
        ],
    );
    refused_everywhere(
        &ctx,
        "both",
        "holds flow.dag.yaml and flow.flex.yaml: which flow to run is unclear",
    );
    ctx.run(&["run", "both/flow.flex.yaml", "--inputs", "x=1"])
        .expect_code(0)
        .stdout_has("1");
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
fn an_unknown_message_format_is_refused_and_promptflows_two_are_accepted() {
    let ctx = TestContext::new();
    let flow = |format: &str| {
        format!(
            "message_format: {format}\ninputs: {{x: {{type: string}}}}\noutputs:\n  y: {{reference: '${{n.output}}'}}\nnodes:\n- {{name: n, type: prompt, source: {{type: code, path: n.jinja2}}, inputs: {{x: '${{inputs.x}}'}}}}\n"
        )
    };
    for (dir, format) in [("typo", "openai_vision"), ("list", "[basic]")] {
        ctx.flow(
            dir,
            &[("flow.dag.yaml", &flow(format)), ("n.jinja2", "{{x}}")],
        );
    }
    refused_everywhere(
        &ctx,
        "typo",
        "`message_format: openai_vision` is not a message format",
    );
    ctx.run(&["validate", "typo"])
        .expect_code(2)
        .stderr_has("flow.dag.yaml:1:17")
        .stderr_has("did you mean `openai-vision`?");
    ctx.run(&["validate", "list"])
        .expect_code(2)
        .stderr_has("`message_format: [\"basic\"]` is not a message format");
    // as promptflow reads it: either of its two names, in any case
    for (dir, format) in [("basic", "basic"), ("vision", "OpenAI-Vision")] {
        ctx.flow(
            dir,
            &[("flow.dag.yaml", &flow(format)), ("n.jinja2", "said {{x}}")],
        );
        ctx.run(&["run", dir, "--inputs", "x=hi"])
            .expect_code(0)
            .stdout_has("said hi");
    }
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

const QA_FLOW: &str = "inputs:\n  question: {type: string}\n  style: {type: string, default: brief}\noutputs:\n  p: {reference: '${n.output}'}\nnodes:\n- {name: n, type: prompt, source: {type: code, path: n.jinja2}, inputs: {question: '${inputs.question}', style: '${inputs.style}'}}\n";

fn qa(ctx: &TestContext) {
    ctx.flow(
        "qa",
        &[
            ("flow.dag.yaml", QA_FLOW),
            ("n.jinja2", "{{style}}: {{question}}"),
        ],
    );
}

/// A batch refused before any line: exit 2, `expected` on stderr, and no run directory.
fn batch_refused(ctx: &TestContext, args: &[&str], expected: &[&str]) {
    let mut all = vec!["run", "qa", "--data", "data.jsonl"];
    all.extend_from_slice(args);
    let run = ctx.run(&all);
    run.expect_code(2);
    for e in expected {
        run.stderr_has(e);
    }
    assert!(
        !ctx.root().join(".flow/runs").exists(),
        "a refused batch must not start a run:\n{}",
        run.stderr
    );
}

#[test]
fn inputs_for_names_the_flow_does_not_have_are_refused_with_a_suggestion() {
    let ctx = TestContext::new();
    qa(&ctx);
    ctx.run(&["run", "qa", "--inputs", "questoin=hi", "--offline"])
        .expect_code(2)
        .stderr_has("the flow has no input `questoin` (did you mean `question`?)")
        .stderr_has("inputs: question, style");
}

#[test]
fn a_mapped_column_the_dataset_lacks_is_refused_before_any_line() {
    let ctx = TestContext::new();
    qa(&ctx);
    ctx.write(
        "data.jsonl",
        "{\"query\": \"a\", \"id\": 1}\n{\"query\": \"b\", \"id\": 2}\n",
    );
    batch_refused(
        &ctx,
        &["--column-mapping", "question=${data.qeury}"],
        &[
            "has no column `qeury` (did you mean `query`?)",
            "columns: query, id",
        ],
    );
}

#[test]
fn a_mapping_to_something_that_is_not_an_input_is_refused() {
    let ctx = TestContext::new();
    qa(&ctx);
    ctx.write("data.jsonl", "{\"question\": \"a\"}\n");
    batch_refused(
        &ctx,
        &["--column-mapping", "stlye=${data.question}"],
        &["the flow has no input `stlye` (did you mean `style`?)"],
    );
}

#[test]
fn an_input_without_default_that_nothing_feeds_is_refused() {
    let ctx = TestContext::new();
    qa(&ctx);
    ctx.write("data.jsonl", "{\"questions\": \"a\"}\n");
    batch_refused(
        &ctx,
        &[],
        &[
            "input `question` has no default",
            "(did you mean `questions`?)",
            "--column-mapping question='${data.questions}'",
        ],
    );
}

#[test]
fn an_input_on_its_default_every_line_is_a_notice_and_the_run_goes_on() {
    let ctx = TestContext::new();
    qa(&ctx);
    ctx.write(
        "data.jsonl",
        "{\"question\": \"a\"}\n{\"question\": \"b\"}\n",
    );
    ctx.run(&["run", "qa", "--data", "data.jsonl", "--name", "r"])
        .expect_code(0)
        .stderr_has("note: input `style` takes its default (\"brief\") on every line");
}

#[test]
fn a_dataset_that_reaches_no_input_or_has_no_rows_is_refused() {
    let ctx = TestContext::new();
    ctx.flow(
        "d",
        &[
            (
                "flow.dag.yaml",
                "inputs:\n  x: {type: string, default: a}\noutputs:\n  p: {reference: '${n.output}'}\nnodes:\n- {name: n, type: prompt, source: {type: code, path: n.jinja2}, inputs: {x: '${inputs.x}'}}\n",
            ),
            ("n.jinja2", "{{x}}"),
        ],
    );
    ctx.write("data.jsonl", "{\"unrelated\": 1}\n");
    ctx.run(&["run", "d", "--data", "data.jsonl"])
        .expect_code(2)
        .stderr_has("none of the columns")
        .stderr_has("(unrelated) reaches an input of the flow (x)");
    ctx.write("empty.jsonl", "");
    ctx.run(&["run", "d", "--data", "empty.jsonl"])
        .expect_code(2)
        .stderr_has("has no rows");
    ctx.write("bad.jsonl", "{not json\n[1, 2\n");
    ctx.run(&["run", "d", "--data", "bad.jsonl"])
        .expect_code(2)
        .stderr_has("no row of");
    assert!(!ctx.root().join(".flow/runs").exists());
}

#[test]
fn flow_eval_refuses_an_evaluation_flow_its_mapping_cannot_feed() {
    let ctx = TestContext::new();
    qa(&ctx);
    ctx.write("data.jsonl", "{\"question\": \"a\", \"answer\": \"x\"}\n");
    ctx.run(&[
        "run",
        "qa",
        "--data",
        "data.jsonl",
        "--name",
        "base",
        "--offline",
    ])
    .expect_code(0);
    ctx.flow(
        "ev",
        &[
            (
                "flow.dag.yaml",
                "inputs:\n  groundtruth: {type: string}\n  prediction: {type: string}\noutputs:\n  s: {reference: '${n.output}'}\nnodes:\n- {name: n, type: prompt, source: {type: code, path: n.jinja2}, inputs: {g: '${inputs.groundtruth}', p: '${inputs.prediction}'}}\n",
            ),
            ("n.jinja2", "{{g}} {{p}}"),
        ],
    );
    ctx.run(&[
        "eval",
        "--run",
        "base",
        "ev",
        "--column-mapping",
        "groundtruth=${data.answr}",
        "prediction=${run.outputs.p}",
    ])
    .expect_code(2)
    .stderr_has("has no column `answr` (did you mean `answer`?)");
}

/// One writer per run: a second `--resume` of a run being written is refused at once naming the
/// holder; once the writer is killed, `runs list` and `runs show` call the run interrupted and a
/// resume takes the dead writer's lock over and finishes it.
#[test]
fn a_run_being_written_is_locked_and_a_dead_writers_run_shows_interrupted() {
    use std::time::Duration;
    let ctx = TestContext::with_mock();
    ctx.mock().set_latency(Duration::from_millis(200));
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
    let data: String = (0..30).map(|i| format!("{{\"q\": \"q{i}\"}}\n")).collect();
    ctx.write("data.jsonl", &data);
    let mut writer = ctx.start_batch("f", "data.jsonl", "locked");
    ctx.run(&["run", "--resume", "locked"])
        .expect_code(2)
        .stderr_has(&format!(
            "being written by another flow process (pid {}",
            writer.id()
        ));
    ctx.run(&["runs", "list"])
        .expect_code(0)
        .stdout_has("Running");

    writer.kill().unwrap();
    writer.wait().unwrap();
    ctx.run(&["runs", "list"])
        .expect_code(0)
        .stdout_has("Interrupted");
    ctx.run(&["runs", "show", "locked"])
        .expect_code(0)
        .stdout_has("locked Interrupted");
    ctx.mock().set_latency(Duration::ZERO);
    ctx.run(&["run", "--resume", "locked"]).expect_code(0);
    ctx.run(&["runs", "show", "locked"])
        .expect_code(0)
        .stdout_has("locked Completed");
    assert!(!ctx.root().join(".flow/runs/locked/.lock").exists());
}

/// A configuration problem that shows only when lines run — here a template that fails on every
/// line — stops the batch early with exit 2, not exit 1 once per line with a hint to resume.
#[test]
fn every_line_failing_the_same_way_stops_the_batch_as_a_configuration_error() {
    let ctx = TestContext::new();
    ctx.flow(
        "t",
        &[
            (
                "flow.dag.yaml",
                "inputs: {q: {type: string}}\noutputs:\n  p: {reference: '${n.output}'}\nnodes:\n- {name: n, type: prompt, source: {type: code, path: n.jinja2}, inputs: {q: '${inputs.q}'}}\n",
            ),
            ("n.jinja2", "{{ q }} {{ settings.style.upper() }}"),
        ],
    );
    let data: String = (0..200).map(|i| format!("{{\"q\": \"q{i}\"}}\n")).collect();
    ctx.write("data.jsonl", &data);
    let run = ctx.run(&[
        "run",
        "t",
        "--data",
        "data.jsonl",
        "--name",
        "broken",
        "--concurrency",
        "2",
    ]);
    run.expect_code(2)
        .stderr_has("every line failed the same way")
        .stderr_has("node `n`")
        .stderr_has("flow run --resume broken");
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ctx.root().join(".flow/runs/broken/meta.json")).unwrap(),
    )
    .unwrap();
    let ran = meta["completed_lines"].as_u64().unwrap() + meta["failed_lines"].as_u64().unwrap();
    assert!(ran < 50, "stopped early, not after every line ({ran} ran)");
}

/// A node source or an additional include that resolves outside the project — through `..` or a
/// symlink — is refused at validate and before any run, located.
#[test]
fn files_outside_the_project_are_refused() {
    let outer = tempfile::tempdir().unwrap();
    std::fs::write(outer.path().join("elsewhere.jinja2"), "{{x}}").unwrap();
    let ctx = TestContext::new();
    std::fs::create_dir_all(ctx.root().join(".git")).unwrap();
    ctx.flow(
        "f",
        &[
            (
                "flow.dag.yaml",
                "inputs: {x: {type: string}}\noutputs:\n  p: {reference: '${n.output}'}\nnodes:\n- {name: n, type: prompt, source: {type: code, path: n.jinja2}, inputs: {x: '${inputs.x}'}}\nadditional_includes:\n- ../shared\n",
            ),
        ],
    );
    std::os::unix::fs::symlink(
        outer.path().join("elsewhere.jinja2"),
        ctx.root().join("f/n.jinja2"),
    )
    .unwrap();
    std::fs::create_dir_all(ctx.root().join("shared")).unwrap();
    let run = ctx.run(&["validate", "f"]);
    run.expect_code(2)
        .stderr_has("node `n`: source `n.jinja2` resolves to")
        .stderr_has("outside the project");
    // An include inside the project is fine; one outside is not.
    ctx.write(
        "f/flow.dag.yaml",
        &format!(
            "inputs: {{x: {{type: string}}}}\noutputs:\n  p: {{reference: '${{n.output}}'}}\nnodes:\n- {{name: n, type: prompt, source: {{type: code, path: m.jinja2}}, inputs: {{x: '${{inputs.x}}'}}}}\nadditional_includes:\n- ../shared\n- {}\n",
            outer.path().display()
        ),
    );
    ctx.write("f/m.jinja2", "{{x}}");
    ctx.run(&["run", "f", "--inputs", "x=1"])
        .expect_code(2)
        .stderr_has("additional include")
        .stderr_has("outside the project");
}

/// `flow build` never follows a link out of the project: such a file is left out and listed.
#[test]
fn build_leaves_out_a_link_that_leads_out_of_the_project() {
    let outer = tempfile::tempdir().unwrap();
    std::fs::write(outer.path().join("private.txt"), "not for the image").unwrap();
    let ctx = TestContext::new();
    std::fs::create_dir_all(ctx.root().join(".git")).unwrap();
    ctx.flow(
        "f",
        &[
            (
                "flow.dag.yaml",
                "inputs: {x: {type: string}}\noutputs:\n  p: {reference: '${n.output}'}\nnodes:\n- {name: n, type: prompt, source: {type: code, path: n.jinja2}, inputs: {x: '${inputs.x}'}}\n",
            ),
            ("n.jinja2", "{{x}}"),
        ],
    );
    std::os::unix::fs::symlink(
        outer.path().join("private.txt"),
        ctx.root().join("f/notes.txt"),
    )
    .unwrap();
    let binary = env!("CARGO_BIN_EXE_flow");
    ctx.run(&["build", "f", "--out-dir", "image", "--binary", binary])
        .expect_code(0)
        .stderr_has("left out notes.txt: a link to");
    assert!(!ctx.root().join("image/flow/notes.txt").exists());
    assert!(ctx.root().join("image/flow/n.jinja2").exists());
}

#[test]
fn a_template_variable_named_after_its_tools_parameter_is_refused_at_its_place() {
    let ctx = TestContext::new();
    let flow = "inputs:\n  x: {type: string}\noutputs:\n  a: {reference: '${ask.output}'}\n  p: {reference: '${show.output}'}\nnodes:\n- name: ask\n  type: llm\n  source: {type: code, path: ask.jinja2}\n  connection: open_ai_connection\n  api: chat\n  inputs: {model: m, temperature: 0, question: '${inputs.x}'}\n- name: show\n  type: prompt\n  source: {type: code, path: show.jinja2}\n  inputs: {text: '${inputs.x}'}\n";
    ctx.flow(
        "reserved",
        &[
            ("flow.dag.yaml", flow),
            (
                "ask.jinja2",
                "system:\nBe brief.\nuser:\n{{ prompt }} at {{temperature}}\n",
            ),
            ("show.jinja2", "Shown: {{template}}\n"),
        ],
    );
    refused_everywhere(
        &ctx,
        "reserved",
        "the template of node `ask` uses `prompt`, which is a parameter of the node's llm (chat) tool",
    );
    ctx.run(&["validate", "reserved"])
        .expect_code(2)
        .stderr_has("ask.jinja2:4:4")
        .stderr_has("uses `temperature`")
        .stderr_has("the template of node `show` uses `template`, which is a parameter of the node's prompt tool")
        .stderr_has("show.jinja2:1:10");

    // A node input named after the tool's template parameter replaces the template file, as
    // in promptflow: it is rendered (with the node's other inputs) instead of the file.
    ctx.write("reserved/ask.jinja2", "user:\n{{ question }}\n");
    ctx.write("reserved/show.jinja2", "Shown: {{ text }}\n");
    let given = flow
        .replace(
            "question: '${inputs.x}'",
            "question: '${inputs.x}', prompt: \"user:\\nasked {{question}}\"",
        )
        .replace(
            "text: '${inputs.x}'",
            "text: '${inputs.x}', template: 'T={{text}}'",
        );
    ctx.write("reserved/flow.dag.yaml", &given);
    let run = ctx.run(&[
        "run",
        "reserved",
        "--inputs",
        "x=hi",
        "--offline",
        "--output",
        "json",
    ]);
    let out = run.expect_code(0).json();
    assert_eq!(out["outputs"]["p"], "T=hi", "{out:#}");
    assert!(
        out["outputs"]["a"].as_str().unwrap().ends_with("asked hi"),
        "{out:#}"
    );

    // Parameters given as node inputs and read by no template are what they are for: accepted.
    ctx.write("reserved/flow.dag.yaml", flow);
    ctx.run(&["validate", "reserved"]).expect_code(0);
}
