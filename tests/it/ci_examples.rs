//! The CI pipeline examples (examples/): the `flow` command lines all three files run, in their
//! order, against the loopback mock — run, evaluate with gates, JUnit and summary against a
//! baseline, and the HTML report — and a check that each pipeline file still says them.

use crate::support::context::{Run, TestContext, repo_root};

const PIPELINES: [&str; 3] = [
    "examples/github-actions/flow-eval.yml",
    "examples/azure-pipelines/azure-pipelines.yml",
    "examples/gitlab/.gitlab-ci.yml",
];

/// The shipped classification flow over the first 10 rows; the mock answers each row's category,
/// except for the rows in `wrong`.
fn project(ctx: &TestContext, wrong: &[usize]) {
    ctx.copy_from_repo("flows/classification");
    ctx.copy_from_repo("flows/eval-accuracy");
    let text =
        std::fs::read_to_string(repo_root().join("datasets/classification.jsonl")).expect("data");
    let rows: Vec<&str> = text.lines().take(10).collect();
    ctx.write("datasets/classification.jsonl", &(rows.join("\n") + "\n"));
    for (i, row) in rows.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(row).expect("row");
        let answer = if wrong.contains(&i) {
            "other"
        } else {
            v["category"].as_str().expect("category")
        };
        ctx.mock()
            .reply_when(v["text"].as_str().expect("text"), answer);
    }
}

/// `flow run` then `flow eval` exactly as the pipelines run them; returns what eval did.
fn pipeline(ctx: &TestContext, run: &str, eval: &str, baseline: Option<&str>) -> Run {
    ctx.run(&[
        "run",
        "classification",
        "--data",
        "datasets/classification.jsonl",
        "--name",
        run,
        "--cache",
        "on",
    ])
    .expect_code(0);
    let mut args = vec![
        "eval",
        "--run",
        run,
        "eval-accuracy",
        "--data",
        "datasets/classification.jsonl",
        "--column-mapping",
        "groundtruth=${data.category}",
        "prediction=${run.outputs.category}",
        "--threshold",
        "accuracy>=0.8",
        "--name",
        eval,
        "--cache",
        "on",
        "--junit",
        "flow-out/junit.xml",
        "--summary",
        "flow-out/summary.md",
    ];
    if let Some(b) = baseline {
        args.extend(["--baseline", b, "--tolerance", "0.02"]);
    }
    ctx.run(&args)
}

#[test]
fn the_pipeline_steps_gate_a_regression_and_publish_the_report() {
    // main: every answer right. This evaluation is the next pull request's baseline.
    let ctx = TestContext::with_mock();
    project(&ctx, &[]);
    pipeline(&ctx, "classification", "eval", None).expect_code(0);
    ctx.run(&[
        "report",
        "eval",
        "--format",
        "html",
        "-o",
        "published/report.html",
    ])
    .expect_code(0);
    // -o creates the folder it writes into.
    let html = std::fs::read_to_string(ctx.root().join("published/report.html")).expect("report");
    assert!(
        html.contains("accuracy"),
        "the report shows the evaluation's metric"
    );
    assert!(!html.contains("<script src"), "the report loads nothing");
    let baseline = ctx.root().join("baseline");
    std::fs::create_dir_all(&baseline).unwrap();
    std::fs::rename(ctx.root().join(".flow/runs/eval"), baseline.join("eval")).unwrap();

    // A pull request that gets two of ten wrong: below the threshold and regressed.
    let pr = TestContext::with_mock();
    project(&pr, &[1, 4]);
    std::fs::rename(baseline.join("eval"), pr.root().join("baseline-eval")).unwrap();
    pipeline(&pr, "classification", "eval", Some("baseline-eval")).expect_code(1);
    let summary = std::fs::read_to_string(pr.root().join("flow-out/summary.md")).expect("summary");
    assert!(summary.contains("accuracy"), "{summary}");
    let junit = std::fs::read_to_string(pr.root().join("flow-out/junit.xml")).expect("junit");
    assert!(junit.contains("<failure"), "{junit}");
    // The report step still runs after a failed gate, as the pipelines run it.
    pr.run(&[
        "report",
        "eval",
        "--format",
        "html",
        "-o",
        "flow-out/report.html",
    ])
    .expect_code(0);
    assert!(pr.root().join("flow-out/report.html").is_file());
    // flow eval also left its own reports in the evaluation run, which the pipelines collect.
    assert!(pr.root().join(".flow/runs/eval/report.html").is_file());
    assert!(pr.root().join(".flow/runs/eval/report.csv").is_file());
}

#[test]
fn every_pipeline_file_runs_the_tested_commands() {
    for file in PIPELINES {
        let text = std::fs::read_to_string(repo_root().join(file)).expect(file);
        for needle in [
            "flow run \"$FLOW\" --data \"$DATA\"",
            "flow eval --run \"$RUN_NAME\" \"$EVAL_FLOW\"",
            "--column-mapping groundtruth='${data.category}' prediction='${run.outputs.category}'",
            "--threshold 'accuracy>=0.8'",
            "--junit \"$OUT/junit.xml\"",
            "--summary \"$OUT/summary.md\"",
            "flow report \"$EVAL_NAME\" --format html -o \"$OUT/report.html\"",
        ] {
            assert!(text.contains(needle), "{file} lacks `{needle}`");
        }
    }
}
