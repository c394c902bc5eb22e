//! Snapshots (insta) of every human-facing output: caret diagnostics of broken flows, `flow
//! validate`, the `--help` of every command and subcommand, the batch run summary, the eval
//! summary on stderr, the Markdown summary, JUnit XML and the CSV headers of `flow report`.
//!
//! Temporary paths, durations, timestamps and hashes are replaced by placeholders, so a snapshot
//! changes only when the output does. After an intended change, review and accept the new
//! snapshots: `cargo insta test --review -- snapshots::` (with cargo-insta installed), or run
//! `INSTA_UPDATE=always cargo test --test it snapshots::` and read the diff in `git diff`.

use std::collections::BTreeSet;

use crate::support::context::{Run, TestContext};
use crate::support::qa_project::{runs_and_evaluations, setup};

/// insta settings for outputs of `ctx`: snapshots named without the module path, and the
/// project's temporary directory and other temporary paths replaced.
fn path_settings(ctx: &TestContext) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_prepend_module_to_snapshot(false);
    s.set_omit_expression(true);
    let root = ctx.root().display().to_string();
    s.add_filter(&regex::escape(&root), "[PROJECT]");
    if let Ok(canonical) = ctx.root().canonicalize() {
        s.add_filter(
            &regex::escape(&canonical.display().to_string()),
            "[PROJECT]",
        );
    }
    let tmp = std::env::temp_dir().display().to_string();
    s.add_filter(
        &format!(r"{}/[^\s`'\x22]+", regex::escape(tmp.trim_end_matches('/'))),
        "[TMP]",
    );
    s
}

/// [`path_settings`], and timestamps, durations and hashes replaced: for what a run prints.
fn settings(ctx: &TestContext) -> insta::Settings {
    let mut s = path_settings(ctx);
    // RFC 3339 and `YYYY-MM-DD HH:MM:SS` timestamps, then the compact ones in run names.
    s.add_filter(
        r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?",
        "[TIMESTAMP]",
    );
    s.add_filter(r"\d{8}_\d{6}(_\d+)?", "[TIMESTAMP]");
    // JUnit's time attributes, then durations printed for people (`4s`, `3m05s`, `350 ms`).
    s.add_filter(r#"time="[0-9.]+""#, r#"time="[SECONDS]""#);
    s.add_filter(
        r"\b(\d+h\d{2}m|\d+m\d{2}s|\d+(\.\d+)?\s?(ms|s|µs))\b",
        "[DURATION]",
    );
    s.add_filter(r"\b\d+(\.\d+)?\s?lines/s\b", "[RATE] lines/s");
    // Content hashes (cache keys, snapshot digests).
    s.add_filter(r"\b[0-9a-f]{12,64}\b", "[HASH]");
    s
}

/// Stdout and stderr of `run` with its exit status, in one snapshot.
fn transcript(run: &Run) -> String {
    format!(
        "exit status: {}\n--- stdout\n{}--- stderr\n{}",
        run.code, run.stdout, run.stderr
    )
}

/// `flow validate` of a flow whose `flow.dag.yaml` is `yaml`, beside `files`.
fn validate(ctx: &TestContext, yaml: &str, files: &[(&str, &str)]) -> Run {
    let mut all = vec![("flow.dag.yaml", yaml)];
    all.extend_from_slice(files);
    ctx.flow("f", &all);
    ctx.run(&["validate", "f"])
}

const TOOL: &str = "from promptflow.core import tool\n\n@tool\ndef f(x: str = '', y: str = '') -> str:\n    return x + y\n";

#[test]
fn diagnostics_point_at_the_problem_with_a_caret() {
    // (snapshot name, flow.dag.yaml, other files of the flow)
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let cases: [Case; 6] = [
        (
            "diagnostic_unknown_references",
            "inputs:\n  question: {type: string}\noutputs:\n  o: {reference: '${summarise.output}'}\nnodes:\n- name: summarize\n  type: python\n  source: {type: code, path: t.py}\n  inputs:\n    x: ${inputs.qestion}\n",
            &[("t.py", TOOL)],
        ),
        (
            "diagnostic_cycle",
            "inputs: {}\noutputs: {}\nnodes:\n- {name: a, type: python, source: {type: code, path: t.py}, inputs: {x: '${b.output}'}}\n- {name: b, type: python, source: {type: code, path: t.py}, inputs: {x: '${a.output}'}}\n",
            &[("t.py", TOOL)],
        ),
        (
            "diagnostic_bad_yaml",
            "inputs:\n  q: {type: string\nnodes: []\n",
            &[],
        ),
        (
            "diagnostic_missing_file",
            "inputs: {q: {type: string}}\noutputs:\n  a: {reference: '${b.output}'}\nnodes:\n- name: b\n  type: python\n  source: {type: code, path: b.py}\n  inputs: {x: '${inputs.q}'}\n",
            &[],
        ),
        (
            "diagnostic_template_syntax",
            "inputs: {}\noutputs: {}\nnodes:\n- {name: p, type: prompt, source: {type: code, path: p.jinja2}}\n",
            &[("p.jinja2", "line one\n{% if x %}\nno end\n")],
        ),
        (
            "diagnostic_unknown_message_format",
            "message_format: openai_vision\ninputs: {q: {type: string}}\noutputs:\n  o: {reference: '${p.output}'}\nnodes:\n- {name: p, type: prompt, source: {type: code, path: p.jinja2}, inputs: {q: '${inputs.q}'}}\n",
            &[("p.jinja2", "{{q}}")],
        ),
    ];
    for (name, yaml, files) in cases {
        let ctx = TestContext::new();
        let run = validate(&ctx, yaml, files);
        run.expect_code(2);
        assert_eq!(run.stdout, "", "{name}: diagnostics go to stderr");
        settings(&ctx).bind(|| insta::assert_snapshot!(name, run.stderr));
    }
}

#[test]
fn validate_prints_the_nodes_in_order_and_warnings() {
    let ctx = TestContext::new();
    let run = validate(
        &ctx,
        "inputs: {q: {type: string}}\noutputs:\n  o: {reference: '${last.output}'}\nnodes:\n- {name: last, type: prompt, source: {type: code, path: p.jinja2}, inputs: {x: '${middle.output}'}}\n- {name: middle, type: python, source: {type: code, path: t.py}, inputs: {x: '${first.output}'}}\n- {name: first, type: prompt, source: {type: code, path: p.jinja2}, inputs: {x: '${inputs.q}'}}\n",
        &[("p.jinja2", "{{x}} {{y}}"), ("t.py", TOOL)],
    );
    run.expect_code(0);
    settings(&ctx).bind(|| insta::assert_snapshot!("validate_ok", transcript(&run)));
}

/// The subcommands listed under `Commands:` in a `--help` text (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_commands = false;
    for line in help.lines() {
        if line == "Commands:" {
            in_commands = true;
        } else if in_commands && !line.starts_with(' ') {
            break;
        } else if in_commands {
            // `  name   description`; continuation lines are indented further.
            if let Some(rest) = line.strip_prefix("  ")
                && !rest.starts_with(' ')
                && let Some(name) = rest.split_whitespace().next()
                && name != "help"
            {
                names.push(name.to_string());
            }
        }
    }
    names
}

#[test]
fn help_of_every_command_and_subcommand() {
    let ctx = TestContext::new();
    let mut todo = vec![Vec::<String>::new()];
    let mut seen = BTreeSet::new();
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let output = ctx
            .cmd()
            .args(&args)
            // A fixed width: clap wraps help to the terminal's.
            .env("COLUMNS", "100")
            .output()
            .expect("run flow");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "flow {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!stdout.contains('\u{1b}'), "no ANSI escapes: {stdout}");
        let name = std::iter::once("help")
            .chain(path.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join("_")
            .replace('-', "_");
        // Paths only: help text has durations (`90s`) that are part of it.
        path_settings(&ctx).bind(|| insta::assert_snapshot!(name.clone(), stdout));
        seen.insert(name);
        for sub in subcommands(&stdout) {
            let mut child = path.clone();
            child.push(sub);
            todo.push(child);
        }
    }
    // The walk found the commands (a change in clap's layout would otherwise skip them).
    for name in [
        "help_run",
        "help_eval",
        "help_experiment",
        "help_report",
        "help_serve",
        "help_build",
        "help_deploy",
        "help_deploy_smoke",
        "help_runs_list",
        "help_cache_stats",
    ] {
        assert!(seen.contains(name), "no {name} in {seen:?}");
    }
}

#[test]
fn run_eval_and_report_outputs() {
    let ctx = TestContext::with_mock();
    setup(&ctx);
    // Runs `v0` (line 4 fails) and `v1`, evaluated as `v0-eval` and `v1-eval`.
    runs_and_evaluations(&ctx);
    let settings = settings(&ctx);

    // A batch run where one line fails: the summary on stderr.
    let run = ctx.run(&[
        "run",
        "qa",
        "--data",
        "data.jsonl",
        "--name",
        "again",
        "--no-cache",
    ]);
    run.expect_code(1);
    settings.bind(|| insta::assert_snapshot!("run_batch_summary", transcript(&run)));
    // Every line succeeds; the run is named after the flow, the variant and the time.
    let run = ctx.run(&[
        "run",
        "qa",
        "--data",
        "data.jsonl",
        "--variant",
        "${ask.variant_1}",
        "--no-cache",
    ]);
    run.expect_code(0);
    settings.bind(|| insta::assert_snapshot!("run_batch_summary_ok", transcript(&run)));

    // An evaluation with a gate that fails: its summary, the Markdown summary and JUnit.
    let eval = ctx.run(&[
        "eval",
        "--run",
        "v0",
        "--evaluator",
        "exact_match",
        "--name",
        "v0-gated",
        "--threshold",
        "exact_match.pass_rate>=0.9",
        "--summary",
        "summary.md",
        "--junit",
        "junit.xml",
    ]);
    eval.expect_code(1);
    settings.bind(|| insta::assert_snapshot!("eval_summary", transcript(&eval)));
    let read = |name: &str| std::fs::read_to_string(ctx.root().join(name)).unwrap();
    settings.bind(|| insta::assert_snapshot!("eval_markdown_summary", read("summary.md")));
    settings.bind(|| insta::assert_snapshot!("eval_junit", read("junit.xml")));

    // The CSV reports' header rows, long and wide.
    let header = |args: &[&str]| {
        let run = ctx.run(args);
        run.expect_code(0);
        let text = run.stdout.trim_start_matches('\u{feff}');
        text.lines().next().unwrap_or_default().to_string()
    };
    let long = header(&["report", "v0-eval", "v1-eval", "--format", "csv"]);
    let wide = header(&["report", "v0-eval", "v1-eval", "--format", "csv", "--wide"]);
    settings.bind(|| {
        insta::assert_snapshot!(
            "report_csv_headers",
            format!("long: {long}\nwide: {wide}\n")
        )
    });
}

#[test]
fn openai_vision_image_refusals_name_the_forms_it_takes() {
    let ctx = TestContext::new();
    ctx.flow(
        "f",
        &[
            (
                "flow.dag.yaml",
                "message_format: openai-vision\ninputs:\n  img: {type: image}\n  parts: {type: list, default: []}\noutputs:\n  o: {reference: '${t.output}'}\nnodes:\n- {name: t, type: python, source: {type: code, path: t.py}, inputs: {x: '${inputs.img}', y: '${inputs.parts}'}}\n",
            ),
            ("t.py", TOOL),
        ],
    );
    let mut transcript = String::new();
    for (name, inputs) in [
        (
            "a basic dict",
            r#"{"img": {"data:image/png;path": "a.png"}}"#,
        ),
        (
            "a basic dict in a list",
            r#"{"img": "data:image/png;base64,iVBORw0KGgo=", "parts": [{"data:image/png;url": "https://example.com/a.png"}]}"#,
        ),
        (
            "an image_url that is no URL",
            r#"{"img": {"type": "image_url", "image_url": {"url": "a.png"}}}"#,
        ),
        (
            "an image_file without a string path",
            r#"{"img": {"type": "image_file", "image_file": {"path": 3}}}"#,
        ),
    ] {
        ctx.write("inputs.json", inputs);
        let run = ctx.run(&["run", "f", "--inputs", "inputs.json"]);
        run.expect_code(2);
        transcript.push_str(&format!("--- {name}\n{}", run.stderr));
    }
    settings(&ctx).bind(|| insta::assert_snapshot!("openai_vision_image_refusals", transcript));
}

/// The refusal of `model.response: all` on an Anthropic connection, located at the key.
#[test]
fn prompty_response_all_refused_on_anthropic() {
    let ctx = TestContext::new();
    ctx.write(
        "claude.prompty",
        "---\nname: a\nmodel:\n  api: chat\n  configuration: {type: openai, connection: claude, model: m}\n  response: all\n---\nuser:\nhi\n",
    );
    let out = ctx
        .cmd()
        .env("CLAUDE_API_TYPE", "anthropic")
        .env("CLAUDE_API_KEY", "sk-ant-test-0123456789")
        .args(["run", "claude.prompty"])
        .output()
        .expect("run flow");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    run.expect_code(2);
    settings(&ctx).bind(|| insta::assert_snapshot!("prompty_response_all_anthropic", run.stderr));
}
