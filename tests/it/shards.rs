//! Sharded runs (`flow run --shard K/N`) and `flow runs merge`: shards run as separate
//! processes at once (one killed with SIGKILL and started again, as a Kubernetes Job retries an
//! index), merged into a run equal to a one-process run of the same data; wrong merges fail with
//! exit 2; shards uploaded to and merged from S3 (moto on loopback).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::batch::shards::*;
use crate::support::batch::*;
use crate::support::context::TestContext;
use crate::support::s3::S3Server;

fn shard_args(k: usize, n: usize) -> Vec<String> {
    [
        "run",
        "shq",
        "--data",
        "q.jsonl",
        "--name",
        "big",
        "--shard",
        &format!("{k}/{n}"),
        "--concurrency",
        "2",
        "--no-cache",
        "--allow-failures",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn run_dir_of(ctx: &TestContext, k: usize, n: usize) -> std::path::PathBuf {
    run_dir(ctx, &format!("big-shard-{k}-of-{n}"))
}

/// Journal records whose line is complete (a record torn by a kill is left out).
fn finished_lines(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir.join("flow_artifacts")) else {
        return 0;
    };
    rd.map(|e| {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap_or_default();
        text.matches('\n').count()
    })
    .sum()
}

#[test]
fn shards_run_at_once_killed_and_retried_merge_into_the_one_process_run() {
    const N: usize = 3;
    let ctx = TestContext::with_mock();
    ctx.mock().set_latency(Duration::from_millis(150));
    shard_flow(&ctx);

    let mut children: Vec<_> = (1..=N)
        .map(|k| {
            let args = shard_args(k, N);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            spawn(&ctx, &args)
        })
        .collect();
    // Kill shard 2 once some of its lines finished.
    let victim = run_dir_of(&ctx, 2, N);
    let started = Instant::now();
    while finished_lines(&victim) < 3 {
        assert!(
            children[1].try_wait().unwrap().is_none(),
            "shard 2 ended before it could be killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no lines finished"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    children[1].kill().unwrap(); // SIGKILL
    children[1].wait().unwrap();
    assert_eq!(meta(&victim)["status"], "Running");
    for (i, child) in children.iter_mut().enumerate() {
        if i != 1 {
            let out = child.wait_with_output_ref();
            assert!(out, "shard {} failed", i + 1);
        }
    }

    // A merge now fails: shard 2 has not finished.
    ctx.run(&[
        "runs",
        "merge",
        "big-shard-1-of-3",
        "big-shard-2-of-3",
        "big-shard-3-of-3",
        "--name",
        "early",
        "--no-cache",
    ])
    .expect_code(2)
    .stderr_has("shard `big-shard-2-of-3` did not finish")
    .stderr_has("flow run --resume big-shard-2-of-3");
    assert!(!run_dir(&ctx, "early").exists());

    // The same command again (a retried index) resumes the shard.
    let args = shard_args(2, N);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ctx.run(&args)
        .expect_code(0)
        .stderr_has("resuming big-shard-2-of-3");

    // Each shard ran exactly its lines, with their original numbers, and no aggregation.
    for k in 1..=N {
        let dir = run_dir_of(&ctx, k, N);
        let m = meta(&dir);
        let numbers: Vec<u64> = jsonl(&dir.join("inputs.jsonl"))
            .iter()
            .map(|r| r["line_number"].as_u64().unwrap())
            .collect();
        let expected: Vec<u64> = (0..LINES as u64)
            .filter(|n| n % N as u64 == k as u64 - 1)
            .collect();
        assert_eq!(numbers, expected, "shard {k}");
        assert_eq!(m["total_lines"], expected.len());
        assert_eq!(m["shard"]["index"], k);
        assert_eq!(m["shard"]["count"], N);
        assert_eq!(m["shard"]["dataset_lines"], LINES);
        assert!(
            m["shard"]["flow_hash"]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
        assert!(
            !dir.join("node_artifacts/score").exists(),
            "shard {k} aggregated"
        );
    }

    ctx.run(&[
        "runs",
        "merge",
        "big-shard-3-of-3",
        "big-shard-1-of-3",
        "big-shard-2-of-3",
        "--name",
        "merged",
        "--no-cache",
        "--allow-failures",
    ])
    .expect_code(0)
    .stderr_has("merged 3 shards into merged: 29/30 lines succeeded")
    .stderr_has("metric lines: 29");

    // One process, the same data.
    ctx.run(&[
        "run",
        "shq",
        "--data",
        "q.jsonl",
        "--name",
        "whole",
        "--no-cache",
        "--allow-failures",
    ])
    .expect_code(0);
    let merged = run_dir(&ctx, "merged");
    assert_same_run(&merged, &run_dir(&ctx, "whole"));
    let m = meta(&merged);
    assert_eq!(m["failed_lines"], 1);
    assert_eq!(m["merged_from"][0], "big-shard-1-of-3");
    assert!(m.get("shard").is_none());
    let score = jsonl(&merged.join("node_artifacts/score/000000000.jsonl"));
    let order: Vec<String> = (0..LINES)
        .filter(|&n| n != 7)
        .map(|n| format!("q{n}"))
        .collect();
    assert_eq!(score[0]["run_info"]["output"], order.join(","));

    // A merged run reads like any other: `flow eval` scores it as it scores the one-process run.
    ctx.run(&["runs", "show", "merged"])
        .expect_code(0)
        .stdout_has("29 succeeded, 1 failed, 30 total")
        .stdout_has("merged from: big-shard-1-of-3, big-shard-2-of-3, big-shard-3-of-3");
    ctx.run(&["runs", "show", "big-shard-2-of-3"])
        .expect_code(0)
        .stdout_has("shard:     2 of 3 (10 of the dataset's 30 lines");
    let eval = |run: &str| {
        let out = ctx.run(&[
            "eval",
            "--run",
            run,
            "--evaluator",
            "exact_match",
            "--column-mapping",
            "prediction=${run.outputs.answer}",
            "ground_truth=${data.expected}",
            "--output",
            "json",
            "--name",
            &format!("{run}-eval"),
        ]);
        out.json()["metrics"].clone()
    };
    let merged_eval = eval("merged");
    assert_eq!(merged_eval, eval("whole"));
    // Lines 0-19 match, 20-29 do not (q20 vs Q0), line 7 failed.
    assert_eq!(
        merged_eval["exact_match.pass_rate"],
        0.633333, // 19 of 30, rounded as eval writes it
        "{merged_eval}"
    );
}

/// Run shard `k` of `n` of the Python-only `calc` flow over `data` as run `name-shard-k-of-n`.
fn calc_shard(ctx: &TestContext, flow: &str, data: &str, name: &str, k: usize, n: usize) {
    ctx.run(&[
        "run",
        flow,
        "--data",
        data,
        "--name",
        name,
        "--shard",
        &format!("{k}/{n}"),
    ])
    .expect_code(0)
    .stderr_has(&format!("(shard {k}/{n})"));
}

fn calc_data(n: i64) -> String {
    (0..n).map(|x| format!("{{\"x\": {x}}}\n")).collect()
}

#[test]
fn shards_that_do_not_belong_together_are_refused_with_exit_2() {
    let ctx = TestContext::new();
    calc_flow(&ctx);
    ctx.write("d.jsonl", &calc_data(7));
    ctx.write("other.jsonl", &calc_data(8));
    calc_shard(&ctx, "calc", "d.jsonl", "c", 1, 2);
    calc_shard(&ctx, "calc", "d.jsonl", "c", 2, 2);
    calc_shard(&ctx, "calc", "other.jsonl", "o", 2, 2);
    calc_shard(&ctx, "calc", "d.jsonl", "three", 2, 3);
    // The same flow with another Python tool.
    let changed = ctx.root().join("calc2");
    std::fs::create_dir_all(&changed).unwrap();
    for f in ["flow.dag.yaml", "double.py"] {
        let text = std::fs::read_to_string(ctx.root().join("calc").join(f)).unwrap();
        std::fs::write(changed.join(f), text.replace("x * 2", "x * 3")).unwrap();
    }
    calc_shard(&ctx, "calc2", "d.jsonl", "f", 2, 2);

    let merge = |shards: &[&str]| {
        let mut args = vec!["runs", "merge"];
        args.extend(shards);
        args.extend(["--name", "m"]);
        let run = ctx.run(&args);
        run.expect_code(2);
        assert!(
            !run_dir(&ctx, "m").exists(),
            "a refused merge leaves no run"
        );
        run
    };
    merge(&["c-shard-1-of-2"]).stderr_has("missing shard 2 of 2 (have: 1)");
    merge(&["c-shard-1-of-2", "c-shard-1-of-2", "c-shard-2-of-2"])
        .stderr_has("shard 1 of 2 is given twice");
    merge(&["c-shard-1-of-2", "o-shard-2-of-2"]).stderr_has(
        "shard `o-shard-2-of-2` does not belong with `c-shard-1-of-2`: it ran other data",
    );
    merge(&["c-shard-1-of-2", "f-shard-2-of-2"]).stderr_has(
        "shard `f-shard-2-of-2` does not belong with `c-shard-1-of-2`: it ran another flow",
    );
    merge(&["c-shard-1-of-2", "three-shard-2-of-3"]).stderr_has("another shard count");
    // A run that is not a shard.
    ctx.run(&["run", "calc", "--data", "d.jsonl", "--name", "plain"])
        .expect_code(0);
    merge(&["plain", "c-shard-2-of-2"]).stderr_has("run `plain` is not a shard");

    // A stopped shard (Ctrl-C) must be resumed first.
    ctx.write(
        "slow.jsonl",
        &(0..40)
            .map(|x| format!("{{\"x\": {x}, \"delay\": 0.2}}\n"))
            .collect::<String>(),
    );
    calc_shard(&ctx, "calc", "slow.jsonl", "s", 1, 2);
    let mut child = spawn(
        &ctx,
        &[
            "run",
            "calc",
            "--data",
            "slow.jsonl",
            "--name",
            "s",
            "--shard",
            "2/2",
            "--concurrency",
            "1",
        ],
    );
    let dir = run_dir(&ctx, "s-shard-2-of-2");
    let started = Instant::now();
    while finished_lines(&dir) < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no lines finished"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    assert_eq!(meta(&dir)["status"], "Canceled");
    merge(&["s-shard-1-of-2", "s-shard-2-of-2"])
        .stderr_has("shard `s-shard-2-of-2` did not finish")
        .stderr_has("resume it first with `flow run --resume s-shard-2-of-2`");
    ctx.run(&["run", "--resume", "s-shard-2-of-2"])
        .expect_code(0);
    // A folder of shard runs: all of them.
    let folder = ctx.root().join("shards");
    std::fs::create_dir_all(&folder).unwrap();
    for k in 1..=2 {
        let name = format!("s-shard-{k}-of-2");
        std::fs::rename(run_dir(&ctx, &name), folder.join(&name)).unwrap();
    }
    ctx.run(&["runs", "merge", "shards", "--name", "s"])
        .expect_code(0)
        .stderr_has("merged 2 shards into s: 40/40 lines succeeded");
    let ys: Vec<Value> = outputs(&run_dir(&ctx, "s"))
        .iter()
        .map(|o| o["y"].clone())
        .collect();
    assert_eq!(ys, (0..40).map(|x| Value::from(x * 2)).collect::<Vec<_>>());
}

#[test]
fn shards_upload_to_s3_resume_from_there_and_merge_from_there() {
    let s3 = S3Server::start("runs");
    let ctx = TestContext::new();
    calc_flow(&ctx);
    ctx.write("d.jsonl", &calc_data(9));
    let prefix = s3.url("team/exp1");
    let with_s3 = |args: &[&str]| {
        let mut cmd = ctx.cmd();
        cmd.args(args);
        for (k, v) in s3.env() {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    for k in 1..=3 {
        let out = with_s3(&[
            "run",
            "calc",
            "--data",
            "d.jsonl",
            "--name",
            "up",
            "--shard",
            &format!("{k}/3"),
            "--upload",
            &prefix,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{err}");
        assert!(
            err.contains(&format!("uploaded up-shard-{k}-of-3")),
            "{err}"
        );
    }
    // A retried index in a fresh pod: the local run is gone, the uploaded one is resumed.
    std::fs::remove_dir_all(run_dir(&ctx, "up-shard-2-of-3")).unwrap();
    let out = with_s3(&[
        "run", "calc", "--data", "d.jsonl", "--name", "up", "--shard", "2/3", "--upload", &prefix,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("downloading it to resume it"), "{err}");
    assert!(err.contains("already finished"), "{err}");

    // Any run with --upload resumes an uploaded run of its name.
    let plain = [
        "run", "calc", "--data", "d.jsonl", "--name", "plain", "--upload", &prefix,
    ];
    assert_eq!(with_s3(&plain).status.code(), Some(0));
    std::fs::remove_dir_all(run_dir(&ctx, "plain")).unwrap();
    let out = with_s3(&plain);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("already finished"), "{err}");

    // Merge every shard under the prefix (downloaded first; `plain` is no shard and is left
    // out) and upload the merged run.
    std::fs::remove_dir_all(ctx.root().join(".flow/runs")).unwrap();
    let out = with_s3(&[
        "runs",
        "merge",
        &prefix,
        "--name",
        "all",
        "--to",
        &s3.url("team/merged"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("merged 3 shards into all: 9/9 lines succeeded"),
        "{err}"
    );
    assert!(err.contains("uploaded all"), "{err}");
    let ys: Vec<Value> = outputs(&run_dir(&ctx, "all"))
        .iter()
        .map(|o| o["y"].clone())
        .collect();
    assert_eq!(ys, (0..9).map(|x| Value::from(x * 2)).collect::<Vec<_>>());
    // A single remote shard is a shard too: without the others it is refused.
    let out = with_s3(&[
        "runs",
        "merge",
        &format!("{prefix}/up-shard-1-of-3"),
        "--name",
        "one",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing shard 2, 3 of 3 (have: 1)"));
}

#[test]
fn the_shard_comes_from_flow_shard_or_a_kubernetes_completion_index() {
    let ctx = TestContext::new();
    calc_flow(&ctx);
    ctx.write("d.jsonl", &calc_data(10));
    let run = |env: &[(&str, &str)], extra: &[&str]| {
        let mut cmd = ctx.cmd();
        cmd.args(["run", "calc", "--data", "d.jsonl", "--name", "k"]);
        cmd.args(extra);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let numbers = |name: &str| -> Vec<u64> {
        line_numbers(&jsonl(&run_dir(&ctx, name).join("inputs.jsonl")))
    };
    assert!(run(&[("FLOW_SHARD", "2/3")], &[]).status.success());
    assert_eq!(numbers("k-shard-2-of-3"), vec![1, 4, 7]);
    // JOB_COMPLETION_INDEX is 0-based: index 2 of 3 is shard 3/3.
    assert!(
        run(&[("JOB_COMPLETION_INDEX", "2")], &["--shards", "3"])
            .status
            .success()
    );
    assert_eq!(numbers("k-shard-3-of-3"), vec![2, 5, 8]);
    // The default name is the same on every machine: a retried shard finds its run.
    let mut cmd = ctx.cmd();
    cmd.args(["run", "calc", "--data", "d.jsonl", "--shard", "1/2"]);
    assert!(cmd.output().unwrap().status.success());
    let names: Vec<String> = std::fs::read_dir(ctx.root().join(".flow/runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("calc_default_"))
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].ends_with("-shard-1-of-2"), "{names:?}");
    let mut again = ctx.cmd();
    again.args(["run", "calc", "--data", "d.jsonl", "--shard", "1/2"]);
    let out = again.output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already finished"));

    for (env, extra, message) in [
        (vec![], vec!["--shard", "4/3"], "`4/3` is not a shard"),
        (vec![], vec!["--shard", "0/3"], "`0/3` is not a shard"),
        (
            vec![],
            vec!["--shards", "3"],
            "JOB_COMPLETION_INDEX, which is not set",
        ),
        (
            vec![("JOB_COMPLETION_INDEX", "3")],
            vec!["--shards", "3"],
            "JOB_COMPLETION_INDEX `3` is not a shard of 3",
        ),
    ] {
        let out = run(&env, &extra);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(message), "{extra:?}: {err}");
    }
}

#[test]
fn an_experiment_fans_out_into_shards_and_compares_the_merged_runs() {
    let ctx = TestContext::with_mock();
    classification_experiment(&ctx);
    answers_by_variant(&ctx);
    let experiment = |extra: &[&str]| {
        let mut args = vec![
            "experiment",
            "--no-cache",
            "--variants",
            "default,classify.variant_1",
        ];
        args.extend(extra);
        ctx.run(&args)
    };
    // Shards as a CI matrix would run them; shard 2 twice (a retry keeps finished runs).
    for k in ["2/2", "1/2", "2/2"] {
        experiment(&["--shard", k])
            .expect_code(0)
            .stderr_has(&format!("shard {k} of 4 runs done"));
    }
    assert!(
        !ctx.root().join(".flow/experiments").exists(),
        "a shard writes no comparison"
    );
    let shard = meta(&run_dir(
        &ctx,
        "classification_classify.variant_1_tickets-shard-2-of-2",
    ));
    assert_eq!(shard["shard"]["index"], 2);
    assert_eq!(shard["total_lines"], 10);
    experiment(&["--merge-shards", "--name", "merged"]).expect_code(0);
    experiment(&["--name", "whole"]).expect_code(0);
    let comparable = |name: &str| {
        comparable_summary(&json_file(
            &ctx.root()
                .join(".flow/experiments")
                .join(name)
                .join("summary.json"),
        ))
    };
    let merged = comparable("merged");
    assert_eq!(merged, comparable("whole"));
    assert_eq!(merged.0.len(), 4);
    // Five tickets of each category: one answer for every ticket scores 0.25.
    assert_eq!(merged.0[0][2]["accuracy"], 0.25, "{merged:?}");

    // A merge with a shard missing names the run.
    for entry in std::fs::read_dir(ctx.root().join(".flow/runs")).unwrap() {
        let path = entry.unwrap().path();
        if path
            .display()
            .to_string()
            .ends_with("default_tickets-shard-2-of-2")
        {
            std::fs::remove_dir_all(path).unwrap();
        }
    }
    experiment(&["--merge-shards", "--name", "broken"])
        .expect_code(2)
        .stderr_has("variant `default` over dataset `tickets`: missing shard 2 of 2");
}

#[test]
fn experiment_shards_on_machines_without_a_shared_disk_merge_from_s3() {
    let s3 = S3Server::start("exp");
    let prefix = s3.url("team/exp-shards");
    let project = |ctx: &TestContext| {
        classification_experiment(ctx);
        answers_by_variant(ctx);
    };
    let experiment = |ctx: &TestContext, extra: &[&str]| {
        let mut cmd = ctx.cmd();
        cmd.args([
            "experiment",
            "--no-cache",
            "--variants",
            "default,classify.variant_1",
        ]);
        cmd.args(extra);
        for (k, v) in s3.env() {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Two pods, each in its own empty project: shard, upload.
    for k in ["1/2", "2/2"] {
        let pod = TestContext::with_mock();
        project(&pod);
        let (code, err) = experiment(&pod, &["--shard", k, "--upload", &prefix]);
        assert_eq!(code, Some(0), "{err}");
        assert!(
            err.contains("uploaded classification_default_tickets-shard-"),
            "{err}"
        );
    }
    // The merge step, in a third place with no local runs: merge from S3, evaluate, compare.
    let merger = TestContext::with_mock();
    project(&merger);
    let (code, err) = experiment(&merger, &["--merge-shards", &prefix, "--name", "merged"]);
    assert_eq!(code, Some(0), "{err}");
    let summary = json_file(&merger.root().join(".flow/experiments/merged/summary.json"));
    let runs = summary["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    for r in runs {
        assert_eq!(r["status"], "completed", "{r}");
        assert_eq!(r["failed_lines"], 0, "{r}");
    }
    assert_eq!(summary["winner"], "classify.variant_1", "{summary}");
    // --upload without a shard is refused.
    let (code, err) = experiment(&merger, &["--upload", &prefix, "--name", "x"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--upload goes with --shard"), "{err}");
}

/// The repository's experiment in `ctx`'s project; the mock answers the few-shot variant
/// "billing" and the zero-shot one "other".
fn experiment_project(ctx: &TestContext) {
    ctx.copy_from_repo("flows");
    ctx.copy_from_repo("datasets");
    ctx.write(
        "experiment.yaml",
        &std::fs::read_to_string(crate::support::context::repo_root().join("experiment.yaml"))
            .unwrap(),
    );
    ctx.mock().reply_when("Classify the ticket", "other");
    ctx.mock()
        .reply_when("You route customer support tickets into one of", "billing");
}

/// `flow experiment` arguments for shard `k` of 2 of the two classification variants, one line
/// at a time per slot and every answer from the model (no cache), plus `extra`.
fn experiment_shard_args(k: usize, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "experiment",
        "--no-cache",
        "--variants",
        "default,classify.variant_1",
        "--concurrency",
        "2",
        "--shard",
        &format!("{k}/2"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Lines in shard 1 of 2 of a shard run of the classification experiment: 10 of the 20
/// tickets, 4 of the 8 hard ones.
fn shard_1_lines(run: &str) -> usize {
    if run.contains("_tickets_hard-") {
        4
    } else {
        10
    }
}

/// Every line of shard 1 of 2: two variants over both datasets, one model request each.
const SHARD_1_LINES: usize = 2 * (10 + 4);

/// The shard runs of shard `k` of 2 in `ctx`'s project.
fn experiment_shard_runs(ctx: &TestContext, k: usize) -> Vec<std::path::PathBuf> {
    let suffix = format!("-shard-{k}-of-2");
    let Ok(rd) = std::fs::read_dir(ctx.root().join(".flow/runs")) else {
        return Vec::new();
    };
    let mut runs: Vec<_> = rd
        .map(|e| e.unwrap().path())
        .filter(|p| p.display().to_string().ends_with(&suffix))
        .collect();
    runs.sort();
    runs
}

/// A run's status, when its `meta.json` can be read.
fn status_of(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("meta.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["status"].as_str().map(str::to_string)
}

/// What two comparisons must share: per run, the metrics, counts, hashes and every output
/// line; then the winner and the means.
fn comparable_experiment(ctx: &TestContext, name: &str) -> (Vec<Value>, Value, Value) {
    let dir = ctx.root().join(".flow/experiments").join(name);
    let s = json_file(&dir.join("summary.json"));
    let runs = s["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let run = dir.join(r["run_dir"].as_str().unwrap());
            serde_json::json!([
                r["variant"],
                r["dataset"],
                r["metrics"],
                r["status"],
                r["lines"],
                r["failed_lines"],
                r["tokens"],
                r["flow_hash"],
                r["dataset_hash"],
                outputs(&run),
            ])
        })
        .collect();
    (runs, s["winner"].clone(), s["means"].clone())
}

#[test]
fn a_killed_experiment_shard_resumes_its_runs_and_merges_like_an_unkilled_one() {
    let ctx = TestContext::with_mock();
    experiment_project(&ctx);
    ctx.mock().set_latency(Duration::from_millis(150));
    let shard_1 = experiment_shard_args(1, &[]);
    let shard_1: Vec<&str> = shard_1.iter().map(String::as_str).collect();

    // Kill shard 1 (SIGKILL: nothing is finalised) once one of its runs has finished, while
    // the others are mid-run.
    let mut child = spawn(&ctx, &shard_1);
    let started = Instant::now();
    while !experiment_shard_runs(&ctx, 1)
        .iter()
        .any(|d| status_of(d).as_deref() == Some("Completed"))
    {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the shard ended before it could be killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no run finished"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let runs = experiment_shard_runs(&ctx, 1);
    assert_eq!(runs.len(), 4);
    let statuses: Vec<Option<String>> = runs.iter().map(|d| status_of(d)).collect();
    assert!(
        statuses.iter().any(|s| s.as_deref() == Some("Running")),
        "every run finished before the kill: {statuses:?}"
    );
    let done_before: usize = runs.iter().map(|d| finished_lines(d)).sum();
    assert!(done_before < SHARD_1_LINES, "{done_before}");

    // Started again, the shard keeps the finished run, resumes the others and asks the model
    // only for the lines no run had finished.
    ctx.mock().clear_requests();
    ctx.run(&shard_1)
        .expect_code(0)
        .stderr_has("had finished: kept")
        .stderr_has("lines kept from the earlier attempt")
        .stderr_has("shard 1/2 of 4 runs done");
    assert_eq!(ctx.mock().request_count(), SHARD_1_LINES - done_before);
    for run in &experiment_shard_runs(&ctx, 1) {
        let m = meta(run);
        assert_eq!(m["status"], "Completed", "{}", run.display());
        assert_eq!(
            m["completed_lines"],
            shard_1_lines(&run.display().to_string())
        );
        // Each line once in the outputs, in line order.
        let numbers = line_numbers(&outputs(run));
        let mut sorted = numbers.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(numbers, sorted, "{}", run.display());
    }
    // A finished shard has nothing left to do.
    ctx.mock().clear_requests();
    ctx.run(&shard_1).expect_code(0);
    assert_eq!(ctx.mock().request_count(), 0);

    let shard_2 = experiment_shard_args(2, &[]);
    let shard_2: Vec<&str> = shard_2.iter().map(String::as_str).collect();
    ctx.run(&shard_2).expect_code(0);
    let whole_args = |extra: &[&str]| {
        let mut args = vec![
            "experiment",
            "--no-cache",
            "--variants",
            "default,classify.variant_1",
        ];
        args.extend(extra);
        ctx.run(&args).expect_code(0);
    };
    whole_args(&["--merge-shards", "--name", "merged"]);
    whole_args(&["--name", "whole"]);
    let merged = comparable_experiment(&ctx, "merged");
    assert_eq!(merged, comparable_experiment(&ctx, "whole"));
    assert_eq!(merged.0.len(), 4);
    assert_eq!(merged.1, "classify.variant_1");
}

#[test]
fn a_retried_experiment_shard_on_a_fresh_machine_takes_its_finished_runs_from_s3() {
    let s3 = S3Server::start("exp");
    let prefix = s3.url("team/retried");
    // Each shard run is uploaded when it ends, and only then.
    let shard = |k: usize| experiment_shard_args(k, &["--upload", &prefix, "--upload-every", "0"]);
    let run = |ctx: &TestContext, args: &[String]| {
        let mut cmd = ctx.cmd();
        cmd.args(args).envs(s3.env());
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // Pod 1 uploads each shard run as soon as it finishes, and is killed after the first upload.
    let pod1 = TestContext::with_mock();
    experiment_project(&pod1);
    pod1.mock().set_latency(Duration::from_millis(150));
    let mut child = pod1
        .std_cmd()
        .args(shard(1))
        .envs(s3.env())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut printed = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("pod 1 uploaded no run");
        let uploaded = line.trim_start().starts_with("uploaded ");
        printed.push(line);
        if uploaded {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    printed.extend(rx.try_iter());
    let uploaded: Vec<String> = printed
        .iter()
        .filter_map(|l| l.trim_start().strip_prefix("uploaded "))
        .map(|rest| rest.split_whitespace().next().unwrap().to_string())
        .collect();
    assert!(
        !uploaded.is_empty() && uploaded.len() < 4,
        "{}",
        printed.join("\n")
    );

    // Pod 2, a fresh project with no runs: the uploaded runs are taken as done (no request, no
    // upload), the others run.
    let pod2 = TestContext::with_mock();
    experiment_project(&pod2);
    let (code, err) = run(&pod2, &shard(1));
    assert_eq!(code, Some(0), "{err}");
    for name in &uploaded {
        assert!(
            err.contains(&format!(
                "{name} had finished (downloaded from the upload location): kept"
            )),
            "{err}"
        );
        assert!(
            err.contains(&format!(
                "{prefix}/{name} is up to date: not uploaded again"
            )),
            "{err}"
        );
    }
    // A run whose upload finished just before the kill, but whose "uploaded" line pod 1 had
    // not printed yet, is in the bucket too: pod 2 keeps it as well. What pod 2 kept decides
    // what it asks.
    let kept_runs: Vec<&str> = err
        .lines()
        .filter_map(|l| {
            l.trim_start()
                .strip_suffix(" had finished (downloaded from the upload location): kept")
        })
        .collect();
    assert!(kept_runs.len() < 4, "{err}");
    let kept: usize = kept_runs.iter().map(|n| shard_1_lines(n)).sum();
    assert_eq!(pod2.mock().request_count(), SHARD_1_LINES - kept, "{err}");
    assert_eq!(
        err.matches("  uploaded ").count(),
        4 - kept_runs.len(),
        "{err}"
    );

    // Pod 3 (fresh again) finds the whole shard uploaded: zero requests, zero uploads.
    let pod3 = TestContext::with_mock();
    experiment_project(&pod3);
    let (code, err) = run(&pod3, &shard(1));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(pod3.mock().request_count(), 0, "{err}");
    assert_eq!(
        err.matches("is up to date: not uploaded again").count(),
        4,
        "{err}"
    );
    let (code, err) = run(&pod3, &shard(2));
    assert_eq!(code, Some(0), "{err}");

    // Merged from S3 elsewhere, the experiment equals a one-process one.
    let merger = TestContext::with_mock();
    experiment_project(&merger);
    let whole = |extra: &[&str]| {
        let mut args: Vec<String> = [
            "experiment",
            "--no-cache",
            "--variants",
            "default,classify.variant_1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let (code, err) = run(&merger, &args);
        assert_eq!(code, Some(0), "{err}");
    };
    whole(&["--merge-shards", &prefix, "--name", "merged"]);
    whole(&["--name", "whole"]);
    assert_eq!(
        comparable_experiment(&merger, "merged"),
        comparable_experiment(&merger, "whole")
    );
}

#[test]
fn a_shard_pod_killed_mid_run_is_retried_from_its_last_checkpoint_upload() {
    let s3 = S3Server::start("exp");
    let prefix = s3.url("team/checkpoints");
    let shard =
        |k: usize| experiment_shard_args(k, &["--upload", &prefix, "--upload-every", "0.3"]);
    let run = |ctx: &TestContext, args: &[String]| {
        let mut cmd = ctx.cmd();
        cmd.args(args).envs(s3.env());
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // Pod 1 uploads what its runs wrote every 0.3 s, and is killed (SIGKILL: no upload at
    // the end) while runs are mid-way.
    let pod1 = TestContext::with_mock();
    experiment_project(&pod1);
    pod1.mock().set_latency(Duration::from_millis(300));
    let mut child = pod1
        .std_cmd()
        .args(shard(1))
        .envs(s3.env())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while experiment_shard_runs(&pod1, 1)
        .iter()
        .map(|d| finished_lines(d))
        .sum::<usize>()
        < 8
    {
        assert!(child.try_wait().unwrap().is_none(), "pod 1 ended too soon");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no line finished"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Long enough for checkpoints to carry those lines.
    std::thread::sleep(Duration::from_millis(900));
    child.kill().unwrap();
    child.wait().unwrap();
    let runs = experiment_shard_runs(&pod1, 1);
    assert!(
        runs.iter()
            .any(|d| status_of(d).as_deref() == Some("Running")),
        "every run finished before the kill"
    );
    let done_in_pod1: usize = runs.iter().map(|d| finished_lines(d)).sum();

    // Pod 2, a fresh project, resumes the unfinished runs from their uploaded lines.
    let pod2 = TestContext::with_mock();
    experiment_project(&pod2);
    let (code, err) = run(&pod2, &shard(1));
    assert_eq!(code, Some(0), "{err}");
    let mut kept = 0;
    let mut resumed_with_lines = 0;
    for line in err.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("resumed ") {
            assert!(
                rest.contains("(downloaded from the upload location)"),
                "{err}"
            );
            let n: usize = rest
                .split(": ")
                .nth(1)
                .and_then(|t| t.split_whitespace().next())
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| panic!("{line}"));
            kept += n;
            resumed_with_lines += usize::from(n > 0);
        } else if let Some(name) =
            line.strip_suffix(" had finished (downloaded from the upload location): kept")
        {
            kept += shard_1_lines(name);
        }
    }
    assert!(
        resumed_with_lines > 0,
        "no run resumed from a checkpoint: {err}"
    );
    assert!(kept <= done_in_pod1, "{kept} > {done_in_pod1}");
    assert_eq!(pod2.mock().request_count(), SHARD_1_LINES - kept, "{err}");

    // The other shard, then the merge from S3 elsewhere: the same as a one-process experiment.
    let pod3 = TestContext::with_mock();
    experiment_project(&pod3);
    let (code, err) = run(&pod3, &shard(2));
    assert_eq!(code, Some(0), "{err}");
    let merger = TestContext::with_mock();
    experiment_project(&merger);
    for extra in [
        vec!["--merge-shards", prefix.as_str(), "--name", "merged"],
        vec!["--name", "whole"],
    ] {
        let mut args: Vec<String> = [
            "experiment",
            "--no-cache",
            "--variants",
            "default,classify.variant_1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let (code, err) = run(&merger, &args);
        assert_eq!(code, Some(0), "{err}");
    }
    assert_eq!(
        comparable_experiment(&merger, "merged"),
        comparable_experiment(&merger, "whole")
    );
}

/// `Child::wait_with_output` takes the child by value; this waits and reports success.
trait WaitOk {
    fn wait_with_output_ref(&mut self) -> bool;
}

impl WaitOk for std::process::Child {
    fn wait_with_output_ref(&mut self) -> bool {
        let status = self.wait().unwrap();
        if !status.success() {
            let mut err = String::new();
            if let Some(mut e) = self.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            eprintln!("{err}");
        }
        status.success()
    }
}
