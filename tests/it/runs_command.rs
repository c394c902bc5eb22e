//! `flow runs list|show|delete` and run names (docs/batch-runs.md): the real binary on real run
//! directories made by batch runs.

use crate::support::batch::*;
use crate::support::context::TestContext;

/// A project with two runs of `calc`: `alpha-run` (2 of 3 lines succeed) and `beta-run` (all).
fn two_runs() -> TestContext {
    let ctx = TestContext::new();
    calc_flow(&ctx);
    ctx.write("mixed.jsonl", "{\"x\": 1}\n{\"x\": -2}\n{\"x\": 3}\n");
    ctx.write("good.jsonl", "{\"x\": 1}\n");
    ctx.run(&[
        "run",
        "calc",
        "--data",
        "mixed.jsonl",
        "--name",
        "alpha-run",
    ])
    .expect_code(1);
    ctx.run(&["run", "calc", "--data", "good.jsonl", "--name", "beta-run"])
        .expect_code(0);
    ctx
}

#[test]
fn list_show_and_delete_runs() {
    let ctx = two_runs();
    let list = ctx.run(&["runs", "list"]);
    list.expect_code(0);
    let row = |name: &str| {
        list.stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{}", list.stdout))
            .to_string()
    };
    assert!(row("alpha-run").contains("Failed") && row("alpha-run").contains("2/3"));
    assert!(row("beta-run").contains("Completed") && row("beta-run").contains("1/1"));
    // Newest first.
    let beta = list.stdout.find("beta-run").unwrap();
    assert!(
        beta < list.stdout.find("alpha-run").unwrap(),
        "{}",
        list.stdout
    );

    let json = ctx.run(&["runs", "list", "--output", "json"]);
    let names: Vec<String> = json
        .expect_code(0)
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["beta-run", "alpha-run"]);
    // The deprecated spelling still works, and says what replaces it.
    let old = ctx.run(&["runs", "list", "--json"]);
    old.expect_code(0)
        .stderr_has("`flow runs list --json` is deprecated: use `--output json`");
    assert_eq!(old.json(), json.json());

    ctx.run(&["runs", "show", "alpha-run"])
        .expect_code(0)
        .stdout_has("alpha-run Failed")
        .stdout_has("2 succeeded, 1 failed, 3 total")
        .stdout_has("line 1: node `double`: ValueError: negative x: -2");
    let shown = ctx.run(&["runs", "show", "alpha-run", "--output", "json"]);
    let doc = shown.expect_code(0).json();
    assert_eq!(doc["meta"]["completed_lines"], 2);
    assert_eq!(doc["meta"]["failed_lines"], 1);
    assert_eq!(doc["metrics"]["flow.lines_failed"], 1);
    assert_eq!(
        doc["metrics"]["flow.success_rate"].as_f64().unwrap(),
        2.0 / 3.0
    );

    ctx.run(&["runs", "delete", "beta-run"])
        .expect_code(0)
        .stdout_has("deleted beta-run");
    assert!(!run_dir(&ctx, "beta-run").exists());
    assert!(run_dir(&ctx, "alpha-run").is_dir());
    let after = ctx.run(&["runs", "list"]);
    assert!(
        !after.expect_code(0).stdout.contains("beta-run"),
        "{}",
        after.stdout
    );
}

#[test]
fn a_show_of_a_run_with_a_logged_metric_lists_it() {
    let ctx = TestContext::new();
    ctx.copy_from_repo("flows/eval-accuracy");
    ctx.write(
        "e.jsonl",
        "{\"groundtruth\": \"a\", \"prediction\": \"a\"}\n{\"groundtruth\": \"a\", \"prediction\": \"b\"}\n",
    );
    ctx.run(&["run", "eval-accuracy", "--data", "e.jsonl", "--name", "ev"])
        .expect_code(0);
    ctx.run(&["runs", "show", "ev"])
        .expect_code(0)
        .stdout_has("metrics:")
        .stdout_has("accuracy: 0.5");
}

#[test]
fn unknown_run_names_suggest_the_closest() {
    let ctx = two_runs();
    for args in [
        &["runs", "show", "alpha-rnu"][..],
        &["runs", "delete", "alpha-rnu"][..],
        &["run", "--resume", "alpha-rnu"][..],
    ] {
        ctx.run(args)
            .expect_code(2)
            .stderr_has("no run `alpha-rnu`")
            .stderr_has("did you mean `alpha-run`?");
    }
    assert!(run_dir(&ctx, "alpha-run").is_dir());
    let empty = TestContext::new();
    empty
        .run(&["runs", "show", "anything"])
        .expect_code(2)
        .stderr_has("there are no runs");
    empty
        .run(&["runs", "list"])
        .expect_code(0)
        .stdout_has("no runs yet");
}

#[test]
fn a_taken_run_name_is_a_usage_error_with_a_hint() {
    let ctx = two_runs();
    let before = std::fs::read_to_string(run_dir(&ctx, "beta-run").join("meta.json")).unwrap();
    ctx.run(&["run", "calc", "--data", "good.jsonl", "--name", "beta-run"])
        .expect_code(2)
        .stderr_has("a run named `beta-run` already exists")
        .stderr_has("flow run --resume beta-run")
        .stderr_has("flow runs delete beta-run");
    let after = std::fs::read_to_string(run_dir(&ctx, "beta-run").join("meta.json")).unwrap();
    assert_eq!(before, after, "the existing run is untouched");
    ctx.run(&["run", "calc", "--data", "good.jsonl", "--name", "../escape"])
        .expect_code(2)
        .stderr_has("not a valid run name");
}

/// Runs can be named by `latest` (the newest) and by the start of one run's name; a start
/// several runs share is refused, listing them.
#[test]
fn latest_and_a_unique_prefix_name_a_run() {
    let ctx = two_runs();
    ctx.run(&["runs", "show", "latest"])
        .expect_code(0)
        .stdout_has("beta-run");
    ctx.run(&["runs", "show", "alp"])
        .expect_code(0)
        .stdout_has("alpha-run");
    ctx.run(&[
        "run",
        "calc",
        "--data",
        "good.jsonl",
        "--name",
        "beta-run-2",
    ])
    .expect_code(0);
    ctx.run(&["runs", "show", "beta"])
        .expect_code(2)
        .stderr_has("`beta` starts the names of 2 runs: beta-run-2, beta-run");
    ctx.run(&["report", "latest", "--format", "csv", "-o", "latest.csv"])
        .expect_code(0);
    let csv = std::fs::read_to_string(ctx.root().join("latest.csv")).unwrap();
    assert!(csv.contains("beta-run-2"), "{csv}");
}
