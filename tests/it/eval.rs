//! `flow eval` end to end: an evaluation flow over a run, built-in evaluators, thresholds, a
//! baseline regression, failed base lines counted as failures, JUnit and the Markdown summary.

use crate::support::context::{TestContext, repo_root};

/// The classification flow and its data in a project; the mock answers each ticket with its
/// true category, except for the tickets listed in `wrong`.
fn classification(ctx: &TestContext, wrong: &[usize]) -> Vec<(String, String)> {
    ctx.copy_from_repo("flows/classification");
    ctx.copy_from_repo("flows/eval-accuracy");
    let text = std::fs::read_to_string(repo_root().join("datasets/classification.jsonl")).unwrap();
    let rows: Vec<(String, String)> = text
        .lines()
        .take(8)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["text"].as_str().unwrap().to_string(),
                v["category"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let data: String = text.lines().take(8).map(|l| format!("{l}\n")).collect();
    ctx.write("data.jsonl", &data);
    for (i, (t, c)) in rows.iter().enumerate() {
        let answer = if wrong.contains(&i) {
            "other"
        } else {
            c.as_str()
        };
        ctx.mock().reply_when(t, answer);
    }
    rows
}

fn batch(ctx: &TestContext, name: &str) {
    ctx.run(&[
        "run",
        "classification",
        "--data",
        "data.jsonl",
        "--name",
        name,
        "--no-cache",
    ])
    .expect_code(0);
}

const MAPPING: [&str; 3] = [
    "--column-mapping",
    "groundtruth=${data.category}",
    "prediction=${run.outputs.category}",
];

#[test]
fn an_evaluation_flow_scores_a_run_and_passes_its_gates() {
    let ctx = TestContext::with_mock();
    classification(&ctx, &[]);
    batch(&ctx, "main");
    let mut args = vec![
        "eval",
        "--run",
        "main",
        "eval-accuracy",
        "--name",
        "main-eval",
    ];
    args.extend(MAPPING);
    args.extend([
        "--threshold",
        "accuracy>=0.9",
        "--junit",
        "junit.xml",
        "--summary",
        "summary.md",
        "--output",
        "json",
    ]);
    let run = ctx.run(&args);
    run.expect_code(0).stderr_has("accuracy");
    let out = run.json();
    assert_eq!(out["passed"], true);
    assert_eq!(out["metrics"]["accuracy"], 1.0);
    let junit = std::fs::read_to_string(ctx.root().join("junit.xml")).unwrap();
    assert!(junit.contains("<testsuite"), "{junit}");
    assert_eq!(
        junit.matches("<testcase").count(),
        8 + 1,
        "a case per line plus the gate: {junit}"
    );
    assert!(!junit.contains("<failure"), "{junit}");
    let summary = std::fs::read_to_string(ctx.root().join("summary.md")).unwrap();
    assert!(summary.contains("accuracy"), "{summary}");
}

#[test]
fn a_regression_against_the_baseline_fails_with_exit_1() {
    let ctx = TestContext::with_mock();
    classification(&ctx, &[]);
    batch(&ctx, "main");
    let mut args = vec![
        "eval",
        "--run",
        "main",
        "eval-accuracy",
        "--name",
        "main-eval",
    ];
    args.extend(MAPPING);
    ctx.run(&args).expect_code(0);

    // A worse prompt: three of eight answers wrong.
    let ctx2 = ctx;
    ctx2.mock().clear_requests();
    let rows = std::fs::read_to_string(ctx2.root().join("data.jsonl")).unwrap();
    for (i, l) in rows.lines().enumerate() {
        if [1, 4, 6].contains(&i) {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            ctx2.mock().reply_when(v["text"].as_str().unwrap(), "other");
        }
    }
    ctx2.run(&[
        "run",
        "classification",
        "--data",
        "data.jsonl",
        "--name",
        "pr",
        "--no-cache",
    ])
    .expect_code(0);
    let mut args = vec![
        "eval",
        "--run",
        "pr",
        "eval-accuracy",
        "--name",
        "pr-eval",
        "--baseline",
        "main-eval",
        "--tolerance",
        "0.02",
    ];
    args.extend(MAPPING);
    args.extend(["--summary", "summary.md", "--junit", "junit.xml"]);
    let run = ctx2.run(&args);
    run.expect_code(1).stderr_has("FAIL").stderr_has("accuracy");
    let summary = std::fs::read_to_string(ctx2.root().join("summary.md")).unwrap();
    assert!(summary.contains("accuracy"), "{summary}");
    assert!(
        summary.contains("main-eval"),
        "the summary names the baseline: {summary}"
    );
    let junit = std::fs::read_to_string(ctx2.root().join("junit.xml")).unwrap();
    assert!(junit.contains("<failure"), "{junit}");
}

#[test]
fn failed_base_lines_count_as_failures() {
    let ctx = TestContext::with_mock();
    classification(&ctx, &[]);
    // Line 2 fails in the base run.
    ctx.mock().push(crate::support::mock_llm::MockReply::Status(
        400,
        "bad request".into(),
    ));
    let out = ctx
        .cmd()
        .args([
            "run",
            "classification",
            "--data",
            "data.jsonl",
            "--name",
            "partial",
            "--no-cache",
            "--concurrency",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let mut args = vec![
        "eval",
        "--run",
        "partial",
        "eval-accuracy",
        "--junit",
        "junit.xml",
    ];
    args.extend(MAPPING);
    let run = ctx.run(&args);
    run.expect_code(1).stderr_has("failed");
    let junit = std::fs::read_to_string(ctx.root().join("junit.xml")).unwrap();
    assert!(junit.contains("<failure"), "{junit}");
    assert!(junit.contains("base run"), "the failure says why: {junit}");
}

#[test]
fn built_in_evaluators_score_without_python() {
    let ctx = TestContext::with_mock();
    classification(&ctx, &[3]);
    batch(&ctx, "main");
    let run = ctx.run(&[
        "eval",
        "--run",
        "main",
        "--evaluator",
        "exact_match:ignore_case",
        "--column-mapping",
        "prediction=${run.outputs.category}",
        "ground_truth=${data.category}",
        "--threshold",
        "exact_match.mean>=0.8",
        "--output",
        "json",
    ]);
    run.expect_code(0);
    let out = run.json();
    assert_eq!(out["metrics"]["exact_match.mean"], 0.875);
    assert_eq!(out["metrics"]["exact_match.pass_rate"], 0.875);
    let failing = ctx.run(&[
        "eval",
        "--run",
        "main",
        "--evaluator",
        "exact_match",
        "--column-mapping",
        "prediction=${run.outputs.category}",
        "ground_truth=${data.category}",
        "--threshold",
        "exact_match.mean>=0.9",
    ]);
    failing.expect_code(1).stderr_has("exact_match.mean");
}

#[test]
fn without_a_gate_the_summary_prints_the_metrics_and_says_nothing_was_gated() {
    let ctx = TestContext::with_mock();
    classification(&ctx, &[3]);
    batch(&ctx, "main");
    let run = ctx.run(&[
        "eval",
        "--run",
        "main",
        "--evaluator",
        "exact_match",
        "--column-mapping",
        "prediction=${run.outputs.category}",
        "ground_truth=${data.category}",
    ]);
    run.expect_code(0)
        .stderr_has("metrics:\n  exact_match.mean       0.875\n  exact_match.pass_rate  0.875\n")
        .stderr_has("evaluation passed · no gate was set");
    // The metrics come before the verdict line.
    let metrics = run.stderr.find("metrics:").unwrap();
    let verdict = run.stderr.find("evaluation passed").unwrap();
    assert!(metrics < verdict, "{}", run.stderr);
}

#[test]
fn offline_answers_never_pass_a_gate_silently() {
    let ctx = TestContext::with_mock();
    classification(&ctx, &[]);
    ctx.run(&[
        "run",
        "classification",
        "--data",
        "data.jsonl",
        "--name",
        "dry",
        "--offline",
    ])
    .expect_code(0);
    let mut args = vec![
        "eval",
        "--run",
        "dry",
        "eval-accuracy",
        "--threshold",
        "accuracy>=0.0",
    ];
    args.extend(MAPPING);
    ctx.run(&args).expect_code(1).stderr_has("offline");
    args.push("--allow-offline");
    ctx.run(&args).expect_code(0);
}

#[test]
fn nothing_to_evaluate_with_is_a_usage_error() {
    let ctx = TestContext::with_mock();
    classification(&ctx, &[]);
    batch(&ctx, "main");
    ctx.run(&["eval", "--run", "main"])
        .expect_code(2)
        .stderr_has("--evaluator");
    ctx.run(&["eval", "--run", "nope", "eval-accuracy"])
        .expect_code(2)
        .stderr_has("no run `nope`");
    ctx.run(&["eval", "--run", "main", "--evaluator", "exact_mach"])
        .expect_code(2)
        .stderr_has("exact_match");
    ctx.run(&[
        "eval",
        "--run",
        "main",
        "eval-accuracy",
        "--threshold",
        "accuracy>>1",
    ])
    .expect_code(2);
    // the same gate twice would be counted twice in the verdict and the reports
    ctx.run(&[
        "eval",
        "--run",
        "main",
        "eval-accuracy",
        "--threshold",
        "accuracy>=0.5",
        "--threshold",
        "accuracy >= 0.50",
    ])
    .expect_code(2)
    .stderr_has("--threshold accuracy>=0.50 is given twice (arguments 1 and 2 of --threshold)");
}

#[test]
fn an_llm_judge_scores_each_line_and_records_its_model_and_prompt() {
    let ctx = TestContext::with_mock();
    classification(&ctx, &[]);
    batch(&ctx, "main");
    // Judge prompts (and only they) name the metric; a chatty judge still parses.
    ctx.mock().reply_when(
        "Metric: RELEVANCE",
        "I would rate this answer a 4 out of 5.",
    );
    let run = ctx.run(&[
        "eval",
        "--run",
        "main",
        "--evaluator",
        "relevance:connection=open_ai_connection,model=judge-model,threshold=4",
        "--column-mapping",
        "question=${data.text}",
        "prediction=${run.outputs.category}",
        "--threshold",
        "relevance.mean>=3.5",
        "--name",
        "judged",
        "--output",
        "json",
    ]);
    run.expect_code(0);
    let out = run.json();
    assert_eq!(out["metrics"]["relevance.mean"], 4.0);
    assert_eq!(out["metrics"]["relevance.pass_rate"], 1.0);
    let described: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ctx.root().join(".flow/runs/judged/evaluators.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(described[0]["model"], "judge-model");
    assert_eq!(described[0]["prompt_sha256"].as_str().unwrap().len(), 12);
    let judge_requests = ctx
        .mock()
        .requests()
        .into_iter()
        .filter(|r| r.body.to_string().contains("Metric: RELEVANCE"))
        .count();
    assert_eq!(judge_requests, 8, "one judge call per line");
    // A judge must name its connection: never an implicit default key.
    ctx.run(&["eval", "--run", "main", "--evaluator", "relevance"])
        .expect_code(2)
        .stderr_has("connection");
}

#[test]
fn repeat_samples_each_line_and_requires_k_of_n_passes() {
    let ctx = TestContext::with_mock();
    classification(&ctx, &[]);
    ctx.run(&[
        "run",
        "classification",
        "--data",
        "data.jsonl",
        "--name",
        "main",
    ])
    .expect_code(0);
    let first = ctx.mock().requests().len();
    assert_eq!(first, 8);
    // The second sample of line 0 answers wrongly (one line at a time, so it meets line 0).
    ctx.mock()
        .push(crate::support::mock_llm::MockReply::text("other"));
    let args = [
        "eval",
        "--run",
        "main",
        "--evaluator",
        "exact_match",
        "--column-mapping",
        "prediction=${run.outputs.category}",
        "ground_truth=${data.category}",
        "--repeat",
        "2",
        "--concurrency",
        "1",
        "--output",
        "json",
    ];
    let strict = ctx.run(&args);
    strict
        .expect_code(1)
        .stderr_has("exact_match")
        .stderr_has("line 0");
    assert_eq!(
        ctx.mock().requests().len(),
        16,
        "each sample is a real request"
    );
    assert_eq!(
        strict.json()["metrics"]["exact_match.k_of_n_pass_rate"],
        0.875
    );

    // 1 of 2 is enough; the samples are answered from the cache this time.
    let mut lenient: Vec<&str> = args.to_vec();
    lenient.extend(["--require", "1"]);
    let run = ctx.run(&lenient);
    run.expect_code(0);
    assert_eq!(run.json()["metrics"]["exact_match.k_of_n_pass_rate"], 1.0);
    assert_eq!(
        ctx.mock().requests().len(),
        16,
        "repeated samples are cached by sample index"
    );
}

#[test]
fn promptflows_own_evaluation_flow_runs_unmodified_under_flow_eval() {
    let ctx = TestContext::with_mock();
    classification(&ctx, &[2, 5]);
    batch(&ctx, "main");
    ctx.copy_from_repo("tests/fixtures/promptflow/eval-classification-accuracy");
    let mut args = vec![
        "eval",
        "--run",
        "main",
        "eval-classification-accuracy",
        "--output",
        "json",
    ];
    args.extend(MAPPING);
    let run = ctx.run(&args);
    run.expect_code(0);
    assert_eq!(run.json()["metrics"]["accuracy"], 0.75, "6 of 8 correct");
}

/// A flow that answers with its `answer` input, so every built-in evaluator sees known text.
fn echo_flow(ctx: &TestContext) {
    ctx.flow(
        "echo",
        &[
            ("flow.dag.yaml", "inputs:\n  answer: {type: string}\noutputs:\n  answer: {reference: '${say.output}'}\nnodes:\n- {name: say, type: python, source: {type: code, path: say.py}, inputs: {text: '${inputs.answer}'}}\n"),
            ("say.py", "from promptflow import tool\n\n@tool\ndef say(text: str) -> str:\n    return text\n"),
        ],
    );
}

#[test]
fn every_deterministic_built_in_evaluator_scores_through_the_binary() {
    use flow::evaluators::{EvalInput, EvaluatorSpec};
    let ctx = TestContext::new();
    echo_flow(&ctx);
    let rows = [
        (r#"{"total": 42}"#, r#"{"total": 42}"#),
        ("the cat sat on the mat", "the cat is on the mat"),
        ("3.14159", "3.1416"),
        (
            "Paris is the capital of France.",
            "The capital of France is Paris.",
        ),
    ];
    let data: String = rows
        .iter()
        .map(|(a, g)| format!("{}\n", serde_json::json!({"answer": a, "ground_truth": g})))
        .collect();
    ctx.write("data.jsonl", &data);
    ctx.run(&["run", "echo", "--data", "data.jsonl", "--name", "echoed"])
        .expect_code(0);
    let specs = [
        "exact_match:squad",
        "contains:text=the",
        "not_contains:text=sorry",
        "regex:pattern=[0-9]",
        "is_json",
        "numeric:tolerance=0.001",
        "f1",
        "bleu",
        "rouge_l",
        "latency:max_ms=60000",
        "tokens:max=100",
        "cost:max_usd=1",
    ];
    let mut args = vec!["eval", "--run", "echoed", "--output", "json"];
    for s in &specs {
        args.extend(["--evaluator", s]);
    }
    let run = ctx.run(&args);
    assert!(run.code == 0 || run.code == 1, "{}", run.stderr);
    let metrics = run.json()["metrics"].clone();
    // The same evaluators through the library give the same means.
    for spec in &specs {
        let e: EvaluatorSpec = spec.parse().unwrap();
        if matches!(e.name.as_str(), "latency" | "tokens" | "cost") {
            assert!(
                metrics[format!("{}.pass_rate", e.name)].as_f64().unwrap() == 1.0,
                "{spec}: {metrics}"
            );
            continue;
        }
        let scores: Vec<f64> = rows
            .iter()
            .map(|(a, g)| {
                let (a, g) = (serde_json::json!(a), serde_json::json!(g));
                e.evaluate(&EvalInput {
                    prediction: Some(&a),
                    reference: Some(&g),
                    ..Default::default()
                })
                .score
                .unwrap_or(0.0)
            })
            .collect();
        let mean = scores.iter().sum::<f64>() / scores.len() as f64;
        let got = metrics[format!("{}.mean", e.name)].as_f64().unwrap();
        assert!((got - mean).abs() < 1e-6, "{spec}: got {got}, want {mean}");
    }
}

#[test]
fn a_judge_never_falls_back_to_the_standard_openai_key() {
    let ctx = TestContext::with_mock();
    classification(&ctx, &[]);
    batch(&ctx, "main");
    let mut cmd = ctx.cmd();
    cmd.env("OPENAI_API_KEY", "sk-standard-key-not-for-judges")
        .env("OPENAI_BASE_URL", format!("{}/v1", ctx.mock().url()));
    let out = cmd
        .args([
            "eval",
            "--run",
            "main",
            "--evaluator",
            "relevance:connection=judge,model=m",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("JUDGE_API_KEY"), "{stderr}");
    assert!(stderr.contains("never falls back"), "{stderr}");
}

#[test]
fn in_github_actions_the_summary_is_appended_and_failures_are_annotated() {
    let ctx = TestContext::with_mock();
    classification(&ctx, &[1]);
    batch(&ctx, "main");
    let summary = ctx.write("step-summary.md", "# earlier step\n");
    let mut cmd = ctx.cmd();
    cmd.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary);
    let mut args = vec![
        "eval",
        "--run",
        "main",
        "eval-accuracy",
        "--threshold",
        "accuracy>=0.95",
    ];
    args.extend(MAPPING);
    args.extend(["--summary", summary.to_str().unwrap()]);
    let out = cmd.args(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(
        text.starts_with("# earlier step\n"),
        "appended, not replaced: {text}"
    );
    assert!(text.contains("accuracy"), "{text}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("::error") && l.contains("accuracy")),
        "{stdout}"
    );
}

/// A judge whose replies hold no score for most lines: the gate on its mean must not pass on the
/// few lines it did score. The evaluation is inconclusive (exit 1), naming the evaluator and the
/// count, and every judge request carries a max_tokens.
#[test]
fn a_judge_that_cannot_score_most_lines_makes_the_gate_inconclusive_not_passed() {
    let ctx = TestContext::with_mock();
    let rows = classification(&ctx, &[]);
    batch(&ctx, "main");
    ctx.mock().reply_when(
        "Metric: RELEVANCE",
        "I would rather not put a number on it.",
    );
    // Only the first line's judge reply holds a score (the last matching rule wins).
    ctx.mock().reply_when(&rows[0].0, "5");
    let run = ctx.run(&[
        "eval",
        "--run",
        "main",
        "--evaluator",
        "relevance:connection=open_ai_connection,model=judge-model",
        "--column-mapping",
        "question=${data.text}",
        "prediction=${run.outputs.category}",
        "--threshold",
        "relevance.mean>=4",
        "--name",
        "judged",
    ]);
    run.expect_code(1)
        .stderr_has("inconclusive: relevance could not score 7 of 8 lines");
    let judge_requests: Vec<_> = ctx
        .mock()
        .requests()
        .into_iter()
        .filter(|r| r.body.to_string().contains("Metric: RELEVANCE"))
        .collect();
    assert_eq!(judge_requests.len(), 8);
    for r in &judge_requests {
        assert_eq!(r.body["max_tokens"], 256, "{}", r.body);
    }
}

/// The gate's verdict is the first thing on the evaluation's HTML report — FAILED with each gate
/// and its value when a gate failed, never a pass — and it is in the JSON report too.
#[test]
fn the_report_opens_with_the_gate_verdict() {
    let ctx = TestContext::with_mock();
    classification(&ctx, &[1, 4]);
    batch(&ctx, "main");
    let mut args = vec!["eval", "--run", "main", "eval-accuracy"];
    args.extend(MAPPING);
    args.extend(["--threshold", "accuracy>=0.9", "--name", "gated"]);
    ctx.run(&args).expect_code(1);
    let html = std::fs::read_to_string(ctx.root().join(".flow/runs/gated/report.html")).unwrap();
    let verdict = html.find("id=\"verdict\"").expect("a verdict section");
    let summary = html.find("id=\"summary\"").expect("a summary section");
    assert!(verdict < summary, "the verdict comes first");
    let section = &html[verdict..summary];
    assert!(section.contains("FAILED"), "{section}");
    assert!(!section.contains("PASSED"), "{section}");
    assert!(section.contains("FAIL accuracy 0.75"), "{section}");
    // The evaluation flow judged no line one by one: its lines completed, none "passed".
    assert!(
        html.contains("no evaluator judged each line"),
        "a card calls completed lines passed"
    );
    assert!(
        !html.contains("lines passed"),
        "a card calls completed lines passed"
    );
    ctx.run(&["report", "gated", "--format", "json", "-o", "r.json"])
        .expect_code(0);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ctx.root().join("r.json")).unwrap()).unwrap();
    assert_eq!(json["runs"][0]["verdict"]["passed"], false, "{json}");
    assert_eq!(json["runs"][0]["verdict"]["gates"][0]["passed"], false);

    // A passing gate says PASSED with its value.
    let mut args = vec!["eval", "--run", "main", "eval-accuracy"];
    args.extend(MAPPING);
    args.extend(["--threshold", "accuracy>=0.5", "--name", "gated-ok"]);
    ctx.run(&args).expect_code(0);
    let html = std::fs::read_to_string(ctx.root().join(".flow/runs/gated-ok/report.html")).unwrap();
    let at = html.find("id=\"verdict\"").expect("a verdict section");
    assert!(html[at..].contains("PASSED"));
    assert!(html[at..].contains("PASS accuracy 0.75"));
}

/// An evaluation killed while its evaluation flow runs is finished by `flow eval --resume`:
/// the lines the flow already ran are kept, then its scores, gates, verdict and reports are
/// made — from any folder, as the command it recorded. `flow run --resume` refuses it (it
/// would finish the flow's lines only).
#[test]
fn a_killed_evaluation_is_finished_by_eval_resume_scores_gates_and_report() {
    use crate::support::batch::{run_dir, spawn};
    use std::time::{Duration, Instant};
    let ctx = TestContext::with_mock();
    classification(&ctx, &[]);
    batch(&ctx, "main");
    ctx.flow(
        "grader",
        &[
            (
                "flow.dag.yaml",
                "inputs:\n  prediction: {type: string}\n  ground_truth: {type: string}\noutputs:\n  grade: {reference: '${grade.output}'}\nnodes:\n- {name: grade, type: llm, source: {type: code, path: grade.jinja2}, connection: open_ai_connection, api: chat, inputs: {model: m, prediction: '${inputs.prediction}', ground_truth: '${inputs.ground_truth}'}}\n",
            ),
            (
                "grade.jinja2",
                "user:\nGrade: is {{prediction}} the same as {{ground_truth}}?\n",
            ),
        ],
    );
    ctx.mock().set_latency(Duration::from_millis(300));
    ctx.mock().clear_requests();
    let args = [
        "eval",
        "--run",
        "main",
        "grader",
        "--evaluator",
        "exact_match",
        "--column-mapping",
        "prediction=${run.outputs.category}",
        "ground_truth=${data.category}",
        "--threshold",
        "exact_match.pass_rate>=0.9",
        "--name",
        "ev",
        "--concurrency",
        "1",
        "--no-cache",
    ];
    let mut child = spawn(&ctx, &args);
    let dir = run_dir(&ctx, "ev");
    let started = Instant::now();
    let journaled = |dir: &std::path::Path| -> usize {
        std::fs::read_dir(dir.join("flow_artifacts"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        std::fs::read_to_string(e.path())
                            .unwrap_or_default()
                            .matches('\n')
                            .count()
                    })
                    .sum()
            })
            .unwrap_or(0)
    };
    while journaled(&dir) < 2 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the evaluation ended first"
        );
        assert!(started.elapsed() < Duration::from_secs(30), "no line ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let kept = journaled(&dir);
    assert!(
        !dir.join("verdict.json").exists(),
        "killed before its verdict"
    );

    // `flow run --resume` would leave the scores, gates and reports undone: refused.
    ctx.run(&["run", "--resume", "ev"])
        .expect_code(2)
        .stderr_has("is an evaluation")
        .stderr_has("flow eval --resume ev");

    // `flow eval --resume` from another folder of the project.
    std::fs::create_dir_all(ctx.root().join("sub")).unwrap();
    ctx.mock().clear_requests();
    let resumed = ctx.run_in("sub", &["eval", "--resume", "ev"]);
    resumed
        .expect_code(0)
        .stderr_has("resuming evaluation ev")
        .stderr_has("PASS exact_match.pass_rate")
        .stderr_has("evaluation passed");
    assert_eq!(
        ctx.mock().requests().len(),
        8 - kept,
        "only the grader's missing lines asked the model"
    );
    let verdict: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("verdict.json")).unwrap()).unwrap();
    assert_eq!(verdict["passed"], true, "{verdict}");
    assert!(dir.join("report.html").is_file());
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["status"], "Completed", "{meta}");
    assert_eq!(meta["completed_lines"], 8, "{meta}");
    // --resume is given alone: the recorded command says everything else.
    ctx.run(&["eval", "--resume", "ev", "--concurrency", "4"])
        .expect_code(2)
        .stderr_has("cannot be used with");
}
