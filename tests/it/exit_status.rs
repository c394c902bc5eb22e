//! Exit statuses, one test per error class, through the binary: quality (1), configuration
//! (2), endpoint (3), the tool's own files (4) and interrupted (130). The statuses are decided
//! in one place from the error's class (docs/cli.md lists them); these tests pin the contract
//! CI pipelines rely on to tell "the prompt got worse" from "the pipeline is broken".

use std::time::Duration;

use crate::support::context::TestContext;

const LLM_FLOW: &str = "inputs: {q: {type: string}}\noutputs:\n  a: {reference: '${ask.output}'}\nnodes:\n- {name: ask, type: llm, source: {type: code, path: ask.jinja2}, connection: open_ai_connection, api: chat, inputs: {model: m, q: '${inputs.q}'}}\n";

fn llm_flow(ctx: &TestContext) {
    ctx.flow(
        "f",
        &[("flow.dag.yaml", LLM_FLOW), ("ask.jinja2", "user:\n{{q}}")],
    );
}

#[test]
fn quality_a_failed_line_exits_1() {
    let ctx = TestContext::new();
    ctx.flow(
        "f",
        &[
            (
                "flow.dag.yaml",
                "inputs: {x: {type: string}}\noutputs:\n  y: {reference: '${boom.output}'}\nnodes:\n- {name: boom, type: python, source: {type: code, path: boom.py}, inputs: {x: '${inputs.x}'}}\n",
            ),
            (
                "boom.py",
                "from promptflow import tool\n\n@tool\ndef boom(x: str) -> str:\n    raise ValueError('no good: ' + x)\n",
            ),
        ],
    );
    ctx.run(&["run", "f", "--inputs", "x=1"])
        .expect_code(1)
        .stderr_has("no good: 1");
}

#[test]
fn configuration_an_invalid_flow_exits_2() {
    let ctx = TestContext::new();
    ctx.flow(
        "f",
        &[(
            "flow.dag.yaml",
            "outputs:\n  y: {reference: '${missing.output}'}\nnodes:\n- {name: n, type: prompt, source: {type: code, path: n.jinja2}}\n",
        )],
    );
    ctx.run(&["run", "f"]).expect_code(2).stderr_has("missing");
}

#[test]
fn endpoint_a_refused_key_exits_3() {
    let ctx = TestContext::with_mock();
    llm_flow(&ctx);
    let out = ctx
        .cmd()
        .args(["run", "f", "--inputs", "q=hi"])
        .env("OPEN_AI_CONNECTION_API_KEY", "sk-wrong")
        .output()
        .expect("run flow");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("refused the API key"), "{stderr}");
}

#[test]
fn io_a_report_that_cannot_be_written_exits_4() {
    let ctx = TestContext::with_mock();
    llm_flow(&ctx);
    ctx.write("data.jsonl", "{\"q\": \"a\"}\n");
    ctx.run(&["run", "f", "--data", "data.jsonl", "--name", "r"])
        .expect_code(0);
    // A file where the report's folder would be: flow cannot write its own output.
    ctx.write("blocked", "not a folder");
    ctx.run(&[
        "report",
        "r",
        "--format",
        "html",
        "-o",
        "blocked/report.html",
    ])
    .expect_code(4)
    .stderr_has("blocked");
}

#[test]
fn io_a_run_folder_that_cannot_be_read_exits_4() {
    let ctx = TestContext::with_mock();
    llm_flow(&ctx);
    ctx.write("data.jsonl", "{\"q\": \"a\"}\n");
    ctx.run(&["run", "f", "--data", "data.jsonl", "--name", "r"])
        .expect_code(0);
    // The run's own record torn to nothing: not the user's input, flow's own file.
    ctx.write(".flow/runs/r/meta.json", "{");
    ctx.run(&["runs", "show", "r"])
        .expect_code(4)
        .stderr_has("meta.json");
}

#[test]
fn interrupted_ctrl_c_exits_130() {
    let ctx = TestContext::with_mock();
    ctx.mock().set_latency(Duration::from_millis(300));
    llm_flow(&ctx);
    let data: String = (0..20).map(|i| format!("{{\"q\": \"q{i}\"}}\n")).collect();
    ctx.write("data.jsonl", &data);
    let mut child = ctx.start_batch("f", "data.jsonl", "stop");
    std::thread::sleep(Duration::from_millis(200));
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130));
}

#[test]
fn help_lists_every_status() {
    let ctx = TestContext::new();
    let run = ctx.run(&["--help"]);
    run.expect_code(0);
    for line in [
        "0  success",
        "1  quality failure",
        "2  usage or configuration error",
        "3  the endpoint could not be used",
        "4  flow could not read or write its own files",
        "130  a batch run was stopped",
    ] {
        assert!(
            run.stdout.contains(line),
            "missing `{line}` in:\n{}",
            run.stdout
        );
    }
}

#[test]
fn io_a_run_folder_that_cannot_be_created_exits_4() {
    let ctx = TestContext::with_mock();
    llm_flow(&ctx);
    ctx.write("data.jsonl", "{\"q\": \"a\"}\n");
    // A file where flow keeps its runs: its own folder cannot be made.
    ctx.write(".flow/runs", "not a folder");
    ctx.run(&["run", "f", "--data", "data.jsonl", "--name", "r"])
        .expect_code(4)
        .stderr_has(".flow/runs");
}
