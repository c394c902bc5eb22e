//! Batch runs end to end (`flow run FLOW --data FILE`, docs/batch-runs.md): the run directory, data
//! formats, column mapping, chaining runs, aggregation and the progress summary — the real
//! binary against the loopback mock LLM and the real `python3`.

use serde_json::{Value, json};

use crate::support::batch::*;
use crate::support::context::TestContext;

#[test]
fn run_directory_is_laid_out_as_promptflow_lays_it_out() {
    let ctx = TestContext::with_mock();
    ctx.mock().reply_when("q2", "kaboom");
    qa_flow(&ctx);
    // Line 0 is slow (longer than starting the other Python workers), so lines finish out of
    // order.
    ctx.write(
        "data.jsonl",
        "{\"question\": \"q0\", \"delay\": 2.0}\n{\"question\": \"q1\"}\n{\"question\": \"q2\"}\n{\"question\": \"q3\"}\n{\"question\": \"q4\"}\n",
    );
    let run = ctx.run(&[
        "run",
        "qa",
        "--data",
        "data.jsonl",
        "--variant",
        "${ask.polite}",
        "--name",
        "layout",
        "--concurrency",
        "4",
    ]);
    run.expect_code(1)
        .stderr_has("4/5 lines succeeded")
        .stderr_has("line 2:")
        .stderr_has("flow run --resume layout");
    let dir = run_dir(&ctx, "layout");

    // Outputs: succeeded lines only, in line order, although line 0 finished last.
    let finished: Vec<u64> = line_numbers(&journal(&dir));
    assert_eq!(finished.len(), 5);
    assert_ne!(finished[0], 0, "line 0 sleeps; it should not finish first");
    let outputs = outputs(&dir);
    assert_eq!(line_numbers(&outputs), vec![0, 1, 3, 4]);
    assert_eq!(
        outputs[1],
        json!({"line_number": 1, "answer": "MOCK: PLEASE ANSWER: Q1", "raw": "mock: Please answer: q1"})
    );

    // Inputs: every line, resolved (defaults applied), with line_number, in line order.
    let inputs = jsonl(&dir.join("inputs.jsonl"));
    assert_eq!(line_numbers(&inputs), vec![0, 1, 2, 3, 4]);
    assert_eq!(
        inputs[3],
        json!({"line_number": 3, "question": "q3", "delay": 0.0})
    );

    // Node artifacts: one file per node per line, zero-padded to nine digits.
    for line in 0..5 {
        let ask = jsonl(&dir.join(format!("node_artifacts/ask/{line:09}.jsonl")));
        assert_eq!(ask.len(), 1);
        assert_eq!(ask[0]["NodeName"], "ask");
        assert_eq!(ask[0]["line_number"], line);
        assert_eq!(ask[0]["status"], "Completed");
    }
    let ask3 = &jsonl(&dir.join("node_artifacts/ask/000000003.jsonl"))[0];
    assert_eq!(ask3["run_info"]["inputs"]["question"], "q3");
    assert_eq!(ask3["run_info"]["output"], "mock: Please answer: q3");
    assert!(ask3["start_time"].is_string() && ask3["end_time"].is_string());
    let failed = &jsonl(&dir.join("node_artifacts/shape/000000002.jsonl"))[0];
    assert_eq!(failed["status"], "Failed");
    assert!(
        failed["run_info"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the answer exploded"),
        "{failed}"
    );

    // error.json: present, naming the failed line.
    let error = json_file(&dir.join("error.json"));
    assert_eq!(error["failed_lines"], 1);
    assert_eq!(error["errors"][0]["line_number"], 2);
    assert_eq!(error["errors"][0]["error"]["node"], "shape");

    // meta.json: status, counts, tokens, latency percentiles.
    let meta = meta(&dir);
    assert_eq!(meta["name"], "layout");
    assert_eq!(meta["status"], "Failed");
    assert_eq!(meta["variant"], "ask.polite");
    assert_eq!(meta["total_lines"], 5);
    assert_eq!(meta["completed_lines"], 4);
    assert_eq!(meta["failed_lines"], 1);
    let line_tokens: u64 = journal(&dir)
        .iter()
        .map(|r| r["run_info"]["tokens"]["total_tokens"].as_u64().unwrap())
        .sum();
    assert!(line_tokens > 0);
    assert_eq!(meta["tokens"]["total_tokens"], line_tokens);
    let lat = &meta["latency_ms"];
    let (p50, p95, max) = (
        lat["p50"].as_f64().unwrap(),
        lat["p95"].as_f64().unwrap(),
        lat["max"].as_f64().unwrap(),
    );
    assert!(p50 <= p95 && p95 <= max, "{lat}");
    assert!(max >= 2000.0, "line 0 slept two seconds: {lat}");

    // metrics.json: the built-in run metrics.
    let metrics = json_file(&dir.join("metrics.json"));
    assert_eq!(metrics["flow.lines_completed"], 4);
    assert_eq!(metrics["flow.lines_failed"], 1);
    assert_eq!(metrics["flow.success_rate"], 0.8);
    assert_eq!(metrics["flow.total_tokens"], line_tokens);

    // snapshot: the flow with the variant applied and no node_variants.
    let snap = std::fs::read_to_string(dir.join("snapshot/flow.dag.yaml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&snap).unwrap();
    assert!(doc.get("node_variants").is_none(), "{snap}");
    let ask = doc["nodes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "ask")
        .unwrap();
    assert_eq!(ask["type"], "llm");
    assert_eq!(ask["source"]["path"], "polite.jinja2");
    assert!(ask.get("use_variants").is_none(), "{snap}");
    for file in ["shape.py", "polite.jinja2", "plain.jinja2"] {
        assert!(dir.join("snapshot").join(file).is_file(), "{file}");
    }

    // Only the variant's prompt went out.
    let sent: Vec<String> = ctx
        .mock()
        .requests()
        .iter()
        .map(|r| {
            r.body["messages"][0]["content"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(sent.len(), 5);
    assert!(
        sent.iter().all(|s| s.starts_with("Please answer: q")),
        "{sent:?}"
    );
}

#[test]
fn allow_failures_turns_partial_failure_into_success_but_not_total_failure() {
    let ctx = TestContext::new();
    calc_flow(&ctx);
    ctx.write("data.jsonl", "{\"x\": 1}\n{\"x\": -2}\n{\"x\": 3}\n");
    ctx.run(&["run", "calc", "--data", "data.jsonl", "--allow-failures"])
        .expect_code(0)
        .stderr_has("2/3 lines succeeded");
    ctx.write("bad.jsonl", "{\"x\": -1}\n{\"x\": -2}\n");
    ctx.run(&["run", "calc", "--data", "bad.jsonl", "--allow-failures"])
        .expect_code(1)
        .stderr_has("0/2 lines succeeded");
}

#[test]
fn clean_run_has_no_error_file_and_default_name() {
    let ctx = TestContext::new();
    calc_flow(&ctx);
    ctx.write("data.jsonl", "{\"x\": 1}\n{\"x\": 2}\n");
    let run = ctx.run(&["run", "calc", "--data", "data.jsonl", "--output", "json"]);
    run.expect_code(0).stderr_has("2/2 lines succeeded");
    let doc = run.json();
    let name = doc["run"]["name"].as_str().unwrap();
    assert!(name.starts_with("calc_default_"), "{name}");
    assert_eq!(doc["run"]["status"], "Completed");
    assert_eq!(doc["metrics"]["flow.lines_completed"], 2);
    let dir = run_dir(&ctx, name);
    assert!(dir.join("meta.json").is_file());
    assert!(!dir.join("error.json").exists());
    assert_eq!(
        outputs(&dir),
        vec![
            json!({"line_number": 0, "y": 2, "tag": "none"}),
            json!({"line_number": 1, "y": 4, "tag": "none"})
        ]
    );
}

/// Run `calc` on `file` with extra args; the outputs of run `name`.
fn calc_outputs(ctx: &TestContext, name: &str, file: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["run", "calc", "--data", file, "--name", name];
    args.extend_from_slice(extra);
    ctx.run(&args).expect_code(0);
    outputs(&run_dir(ctx, name))
}

#[test]
fn csv_tsv_and_json_array_read_like_jsonl() {
    let ctx = TestContext::new();
    calc_flow(&ctx);
    let expected = vec![
        json!({"line_number": 0, "y": 2, "tag": "a, \"quoted\"\nsecond line"}),
        json!({"line_number": 1, "y": 8, "tag": "plain"}),
    ];
    ctx.write(
        "d.jsonl",
        "{\"x\": 1, \"tag\": \"a, \\\"quoted\\\"\\nsecond line\"}\n{\"x\": 4, \"tag\": \"plain\"}\n",
    );
    ctx.write(
        "d.csv",
        "x,tag\n1,\"a, \"\"quoted\"\"\nsecond line\"\n4,plain\n",
    );
    ctx.write(
        "d.tsv",
        "x\ttag\n1\t\"a, \"\"quoted\"\"\nsecond line\"\n4\tplain\n",
    );
    ctx.write(
        "d.json",
        r#"[{"x": 1, "tag": "a, \"quoted\"\nsecond line"}, {"x": 4, "tag": "plain"}]"#,
    );
    for (name, file) in [
        ("jsonl", "d.jsonl"),
        ("csv", "d.csv"),
        ("tsv", "d.tsv"),
        ("json", "d.json"),
    ] {
        assert_eq!(calc_outputs(&ctx, name, file, &[]), expected, "{file}");
    }
}

#[test]
fn column_mapping_explicit_same_named_default_and_literal() {
    let ctx = TestContext::new();
    calc_flow(&ctx);
    ctx.write(
        "d.jsonl",
        "{\"number\": 3, \"x\": 100, \"label\": \"L0\"}\n{\"number\": 5, \"x\": 200, \"label\": \"L1\"}\n",
    );
    // Explicit mapping wins over the same-named column; `tag` takes its default.
    assert_eq!(
        calc_outputs(
            &ctx,
            "explicit",
            "d.jsonl",
            &["--column-mapping", "x=${data.number}"]
        ),
        vec![
            json!({"line_number": 0, "y": 6, "tag": "none"}),
            json!({"line_number": 1, "y": 10, "tag": "none"})
        ]
    );
    // Same-named column for `x`, a literal for `tag`.
    assert_eq!(
        calc_outputs(
            &ctx,
            "literal",
            "d.jsonl",
            &["--column-mapping", "tag=fixed"]
        ),
        vec![
            json!({"line_number": 0, "y": 200, "tag": "fixed"}),
            json!({"line_number": 1, "y": 400, "tag": "fixed"})
        ]
    );
    // Several mappings in one flag, one of them a nested column.
    ctx.write("n.jsonl", "{\"in\": {\"n\": 7}, \"label\": \"L\"}\n");
    assert_eq!(
        calc_outputs(
            &ctx,
            "nested",
            "n.jsonl",
            &["--column-mapping", "x=${data.in.n}", "tag=${data.label}"],
        ),
        vec![json!({"line_number": 0, "y": 14, "tag": "L"})]
    );
}

#[test]
fn a_row_missing_a_mapped_column_fails_only_that_line() {
    let ctx = TestContext::new();
    calc_flow(&ctx);
    ctx.write(
        "d.jsonl",
        "{\"number\": 1}\n{\"other\": 2}\n{\"number\": 3}\n",
    );
    let args = [
        "run",
        "calc",
        "--data",
        "d.jsonl",
        "--column-mapping",
        "x=${data.number}",
    ];
    let run = ctx.run(&[&args[..], &["--name", "strict"]].concat());
    run.expect_code(1)
        .stderr_has("2/3 lines succeeded")
        .stderr_has("data row 2")
        .stderr_has("${data.number}");
    let dir = run_dir(&ctx, "strict");
    assert_eq!(line_numbers(&outputs(&dir)), vec![0, 2]);
    let error = json_file(&dir.join("error.json"));
    assert_eq!(error["errors"][0]["line_number"], 1);
    let message = error["errors"][0]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("other"),
        "names the columns it has: {message}"
    );

    ctx.run(&[&args[..], &["--name", "lenient", "--allow-failures"]].concat())
        .expect_code(0);
}

#[test]
fn a_malformed_jsonl_row_fails_only_that_line() {
    let ctx = TestContext::new();
    calc_flow(&ctx);
    ctx.write("d.jsonl", "{\"x\": 1}\n{\"x\": oops\n{\"x\": 3}\n");
    let run = ctx.run(&["run", "calc", "--data", "d.jsonl", "--name", "torn"]);
    run.expect_code(1)
        .stderr_has("2/3 lines succeeded")
        .stderr_has("line 1:");
    let dir = run_dir(&ctx, "torn");
    assert_eq!(
        outputs(&dir),
        vec![
            json!({"line_number": 0, "y": 2, "tag": "none"}),
            json!({"line_number": 2, "y": 6, "tag": "none"})
        ]
    );
    let error = json_file(&dir.join("error.json"));
    assert_eq!(error["errors"][0]["line_number"], 1);
    let message = error["errors"][0]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("data row 2") && message.contains("not valid JSON"),
        "names the row and the problem: {message}"
    );
    ctx.run(&["run", "calc", "--data", "d.jsonl", "--allow-failures"])
        .expect_code(0);
}

#[test]
fn a_second_run_chains_on_the_first_by_line_number() {
    let ctx = TestContext::new();
    calc_flow(&ctx);
    ctx.write("d.jsonl", "{\"x\": 1}\n{\"x\": -2}\n{\"x\": 3}\n");
    ctx.run(&["run", "calc", "--data", "d.jsonl", "--name", "first"])
        .expect_code(1);
    let run = ctx.run(&[
        "run",
        "calc",
        "--data",
        "d.jsonl",
        "--run",
        "first",
        "--column-mapping",
        "x=${run.outputs.y}",
        "tag=${data.x}",
        "--name",
        "second",
    ]);
    run.expect_code(1).stderr_has("2/3 lines succeeded");
    let dir = run_dir(&ctx, "second");
    assert_eq!(
        outputs(&dir),
        vec![
            json!({"line_number": 0, "y": 4, "tag": "1"}),
            json!({"line_number": 2, "y": 12, "tag": "3"})
        ]
    );
    let error = json_file(&dir.join("error.json"));
    assert_eq!(error["errors"][0]["line_number"], 1);
    let message = error["errors"][0]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("base run failed"),
        "a failed base line fails the joined line: {message}"
    );
    assert_eq!(meta(&dir)["base_run"], json!(run_dir(&ctx, "first")));

    // Without --run, a ${run...} mapping is a usage error.
    ctx.run(&[
        "run",
        "calc",
        "--data",
        "d.jsonl",
        "--column-mapping",
        "x=${run.outputs.y}",
    ])
    .expect_code(2)
    .stderr_has("--run");
}

#[test]
fn evaluation_flow_logs_its_metric_over_succeeded_lines_only() {
    let ctx = TestContext::new();
    ctx.copy_from_repo("flows/eval-accuracy");
    let mut data = std::fs::read_to_string(
        crate::support::context::repo_root().join("datasets/eval-accuracy.jsonl"),
    )
    .unwrap();
    // A row without the mapped column fails; were it graded it would count as correct.
    data.push_str("{\"prediction\": \"billing\"}\n");
    ctx.write("eval.jsonl", &data);
    let run = ctx.run(&[
        "run",
        "eval-accuracy",
        "--data",
        "eval.jsonl",
        "--column-mapping",
        "groundtruth=${data.groundtruth}",
        "prediction=${data.prediction}",
        "--name",
        "eval",
        "--allow-failures",
    ]);
    run.expect_code(0)
        .stderr_has("6/7 lines succeeded")
        .stderr_has("metric accuracy: 0.67");
    let dir = run_dir(&ctx, "eval");
    let metrics = json_file(&dir.join("metrics.json"));
    assert_eq!(metrics["accuracy"], 0.67);
    assert_eq!(metrics["flow.lines_failed"], 1);
    let grades: Vec<Value> = outputs(&dir).iter().map(|o| o["grade"].clone()).collect();
    assert_eq!(
        grades,
        [
            "Correct",
            "Correct",
            "Incorrect",
            "Correct",
            "Incorrect",
            "Correct"
        ]
    );
    let agg = jsonl(&dir.join("node_artifacts/calculate_accuracy/000000000.jsonl"));
    assert_eq!(agg[0]["run_info"]["output"], 0.67);
    assert_eq!(
        agg[0]["run_info"]["inputs"]["grades"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
}

#[test]
fn progress_off_a_terminal_is_plain_text_with_a_summary() {
    let ctx = TestContext::with_mock();
    qa_flow(&ctx);
    ctx.write("q.jsonl", &questions(3));
    let run = ctx.run(&["run", "qa", "--data", "q.jsonl", "--name", "plain"]);
    run.expect_code(0)
        .stderr_has("run plain · 3 lines")
        .stderr_has("3/3 lines succeeded")
        .stderr_has("tokens");
    assert!(
        !run.stderr.contains('\u{1b}') && !run.stderr.contains('\r'),
        "no escape codes or carriage returns off a terminal: {:?}",
        run.stderr
    );
}

/// Metrics are printed rounded for people (the files keep the exact value).
#[test]
fn printed_metrics_are_rounded_for_people() {
    let ctx = crate::support::context::TestContext::new();
    ctx.flow(
        "m",
        &[
            (
                "flow.dag.yaml",
                "inputs: {x: {type: string}}\noutputs:\n  y: {reference: '${echo.output}'}\nnodes:\n- {name: echo, type: prompt, source: {type: code, path: e.jinja2}, inputs: {x: '${inputs.x}'}}\n- {name: agg, type: python, source: {type: code, path: agg.py}, inputs: {ys: '${echo.output}'}, aggregation: true}\n",
            ),
            ("e.jinja2", "{{x}}"),
            (
                "agg.py",
                "from promptflow.core import tool, log_metric\n\n@tool\ndef agg(ys: list):\n    log_metric('third', 1 / 3)\n    log_metric('tiny', 0.0000198 * (1 + 1e-15))\n    return len(ys)\n",
            ),
        ],
    );
    ctx.write("d.jsonl", "{\"x\": \"a\"}\n{\"x\": \"b\"}\n");
    let run = ctx.run(&["run", "m", "--data", "d.jsonl", "--name", "r"]);
    run.expect_code(0)
        .stderr_has("metric third: 0.333333\n")
        .stderr_has("metric tiny: 0.0000198\n");
    let metrics = std::fs::read_to_string(ctx.root().join(".flow/runs/r/metrics.json")).unwrap();
    assert!(metrics.contains("0.3333333333333333"), "{metrics}");
}
