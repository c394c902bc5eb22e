//! Crash safety and `flow run --resume` ("a run is never lost"): kill a batch with
//! SIGKILL, check what it kept, resume it, and compare with an uninterrupted run.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::batch::*;
use crate::support::context::TestContext;
use crate::support::mock_llm::MockReply;

/// Complete journal records (a record torn by the kill, without its newline, is left out);
/// every complete record must parse.
fn complete_journal_records(dir: &Path) -> Vec<Value> {
    let mut records = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir.join("flow_artifacts")) else {
        return records;
    };
    for entry in rd {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let complete = match text.rfind('\n') {
            Some(end) => &text[..end],
            None => "",
        };
        for line in complete.lines().filter(|l| !l.is_empty()) {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("journal record does not parse ({e}): {line}"));
            records.push(v);
        }
    }
    records
}

/// The question each request asked (`q<N>`).
fn asked(ctx: &TestContext) -> BTreeSet<String> {
    ctx.mock()
        .requests()
        .iter()
        .map(|r| {
            r.body["messages"][0]["content"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// What must be equal between a resumed and an uninterrupted run: everything but timings.
fn comparable(dir: &Path) -> (Vec<Value>, Vec<Value>, Value, Value) {
    let mut metrics = json_file(&dir.join("metrics.json"));
    let m = metrics.as_object_mut().unwrap();
    // Timings differ between runs; so does cost, since a resumed run answers lines that finished
    // before the kill (but were not recorded) from the cache, for free.
    m.retain(|k, _| !k.starts_with("flow.latency") && k != "flow.cost_usd");
    let meta = meta(dir);
    let counts = serde_json::json!({
        "status": meta["status"],
        "total_lines": meta["total_lines"],
        "completed_lines": meta["completed_lines"],
        "failed_lines": meta["failed_lines"],
        "tokens": meta["tokens"],
        "variant": meta["variant"],
    });
    (
        outputs(dir),
        jsonl(&dir.join("inputs.jsonl")),
        metrics,
        counts,
    )
}

/// With a fast endpoint and many lines in flight the writer can fall behind the answers; a
/// kill then loses lines that were answered but not yet recorded. Their answers are in the
/// response cache (written before a line finishes), so resume sends again at most the
/// requests that were in flight at the kill.
#[test]
fn after_a_kill_resume_sends_again_at_most_the_requests_in_flight() {
    const LINES: usize = 600;
    const CONCURRENCY: usize = 32;
    let ctx = TestContext::with_mock();
    ctx.mock().set_latency(Duration::from_millis(5));
    qa_flow(&ctx);
    ctx.write("q.jsonl", &questions(LINES));
    let dir = run_dir(&ctx, "fast");
    let concurrency = CONCURRENCY.to_string();
    let mut child = spawn(
        &ctx,
        &[
            "run",
            "qa",
            "--data",
            "q.jsonl",
            "--name",
            "fast",
            "--concurrency",
            &concurrency,
        ],
    );
    let started = Instant::now();
    while complete_journal_records(&dir).len() < 100 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no lines finished"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let asked_before = asked(&ctx);
    ctx.mock().clear_requests();
    ctx.run(&["run", "--resume", "fast"])
        .expect_code(0)
        .stderr_has(&format!("{LINES}/{LINES} lines succeeded"));
    let asked_after = asked(&ctx);
    let resent: Vec<&String> = asked_after.intersection(&asked_before).collect();
    assert!(
        resent.len() <= CONCURRENCY,
        "{} requests sent again (at most {CONCURRENCY} were in flight): {resent:?}",
        resent.len()
    );
}

#[test]
fn a_killed_run_keeps_finished_lines_and_resume_runs_only_the_rest() {
    const LINES: usize = 40;
    let ctx = TestContext::with_mock();
    ctx.mock().set_latency(Duration::from_millis(200));
    qa_flow(&ctx);
    ctx.write("q.jsonl", &questions(LINES));
    let dir = run_dir(&ctx, "crash");
    let mut child = spawn(
        &ctx,
        &[
            "run",
            "qa",
            "--data",
            "q.jsonl",
            "--name",
            "crash",
            "--concurrency",
            "4",
        ],
    );
    let started = Instant::now();
    while complete_journal_records(&dir).len() < 6 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no lines finished"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // Every finished line is readable: its journal record and its node artifacts.
    let kept = complete_journal_records(&dir);
    let done: BTreeSet<u64> = kept
        .iter()
        .filter(|r| r["status"] == "Completed")
        .map(|r| r["line_number"].as_u64().unwrap())
        .collect();
    assert!(
        done.len() >= 6 && done.len() < LINES,
        "{} lines done",
        done.len()
    );
    for n in &done {
        for node in ["ask", "shape"] {
            let records = jsonl(&dir.join(format!("node_artifacts/{node}/{n:09}.jsonl")));
            assert_eq!(records[0]["status"], "Completed", "{node} line {n}");
        }
    }
    assert_eq!(meta(&dir)["status"], "Running");

    let asked_before = asked(&ctx);
    ctx.mock().clear_requests();
    let resumed = ctx.run(&["run", "--resume", "crash"]);
    resumed
        .expect_code(0)
        .stderr_has(&format!(
            "{} of {LINES} lines already succeeded",
            done.len()
        ))
        .stderr_has(&format!("{LINES}/{LINES} lines succeeded"));
    let expected: BTreeSet<String> = (0..LINES as u64)
        .filter(|n| !done.contains(n))
        .map(|n| format!("q{n}"))
        .collect();
    // Lines whose answer arrived before the kill but that were not recorded yet are answered
    // from the response cache: resume never pays for an answer twice.
    let asked = asked(&ctx);
    assert!(
        asked.is_subset(&expected),
        "only missing lines are requested: {asked:?} vs {expected:?}"
    );
    let cache_hits = meta(&dir)["cache_hits"].as_u64().unwrap() as usize;
    assert_eq!(
        asked.len() + cache_hits,
        expected.len(),
        "every missing line is either requested or answered from the cache"
    );
    assert_eq!(ctx.mock().request_count(), asked.len());
    // Requests sent again are at most the lines that were in flight at the kill (4).
    let resent: Vec<&String> = asked.intersection(&asked_before).collect();
    assert!(resent.len() <= 4, "sent again: {resent:?}");

    // The same data, uninterrupted, elsewhere.
    let clean = TestContext::with_mock();
    qa_flow(&clean);
    clean.write("q.jsonl", &questions(LINES));
    clean
        .run(&["run", "qa", "--data", "q.jsonl", "--name", "whole"])
        .expect_code(0);
    let (outputs, inputs, metrics, counts) = comparable(&dir);
    let whole = comparable(&run_dir(&clean, "whole"));
    assert_eq!(outputs, whole.0);
    assert_eq!(inputs, whole.1);
    assert_eq!(metrics, whole.2);
    assert_eq!(counts, whole.3);
    assert_eq!(outputs.len(), LINES);
    assert_eq!(counts["status"], "Completed");
}

#[test]
fn resume_reruns_only_the_failed_lines_then_has_nothing_to_do() {
    let ctx = TestContext::with_mock();
    // One line at a time, so the scripted replies meet lines 0..3 in order.
    for reply in [
        MockReply::text("mock: q0"),
        MockReply::Status(400, "bad request for line 1".into()),
        MockReply::text("mock: q2"),
        MockReply::Status(400, "bad request for line 3".into()),
    ] {
        ctx.mock().push(reply);
    }
    ask_flow(&ctx);
    ctx.write("q.jsonl", &questions(5));
    let first = ctx.run(&[
        "run",
        "ask",
        "--data",
        "q.jsonl",
        "--name",
        "flaky",
        "--concurrency",
        "1",
    ]);
    first.expect_code(1).stderr_has("3/5 lines succeeded");
    let dir = run_dir(&ctx, "flaky");
    assert_eq!(line_numbers(&outputs(&dir)), vec![0, 2, 4]);
    assert!(dir.join("error.json").is_file());

    ctx.mock().clear_requests();
    ctx.run(&["run", "--resume", "flaky"])
        .expect_code(0)
        .stderr_has("3 of 5 lines already succeeded")
        .stderr_has("5/5 lines succeeded");
    assert_eq!(
        asked(&ctx),
        BTreeSet::from(["q1".to_string(), "q3".to_string()])
    );
    let answers: Vec<String> = outputs(&dir)
        .iter()
        .map(|o| o["answer"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        answers,
        ["mock: q0", "mock: q1", "mock: q2", "mock: q3", "mock: q4"]
    );
    assert_eq!(
        line_numbers(&jsonl(&dir.join("inputs.jsonl"))),
        vec![0, 1, 2, 3, 4]
    );
    let meta = meta(&dir);
    assert_eq!(meta["status"], "Completed");
    assert_eq!(meta["completed_lines"], 5);
    assert_eq!(meta["failed_lines"], 0);
    assert!(!dir.join("error.json").exists(), "no failures remain");

    ctx.mock().clear_requests();
    ctx.run(&["run", "--resume", "flaky"])
        .expect_code(0)
        .stderr_has("nothing to resume");
    assert_eq!(ctx.mock().request_count(), 0);
}

#[test]
fn resume_recomputes_aggregation_over_all_succeeded_lines() {
    let ctx = TestContext::new();
    ctx.copy_from_repo("flows/eval-accuracy");
    // Line 1 lacks its column the first time; the data is fixed before resuming.
    ctx.write(
        "e.jsonl",
        "{\"groundtruth\": \"a\", \"prediction\": \"a\"}\n{\"prediction\": \"b\"}\n{\"groundtruth\": \"c\", \"prediction\": \"x\"}\n{\"groundtruth\": \"d\", \"prediction\": \"d\"}\n",
    );
    let mapping = [
        "groundtruth=${data.groundtruth}",
        "prediction=${data.prediction}",
    ];
    ctx.run(&[
        "run",
        "eval-accuracy",
        "--data",
        "e.jsonl",
        "--name",
        "ev",
        "--column-mapping",
        mapping[0],
        mapping[1],
    ])
    .expect_code(1);
    let dir = run_dir(&ctx, "ev");
    // 2 of the 3 graded lines are correct.
    assert_eq!(json_file(&dir.join("metrics.json"))["accuracy"], 0.67);

    ctx.write(
        "e.jsonl",
        "{\"groundtruth\": \"a\", \"prediction\": \"a\"}\n{\"groundtruth\": \"b\", \"prediction\": \"b\"}\n{\"groundtruth\": \"c\", \"prediction\": \"x\"}\n{\"groundtruth\": \"d\", \"prediction\": \"d\"}\n",
    );
    ctx.run(&["run", "--resume", "ev"])
        .expect_code(0)
        .stderr_has("metric accuracy: 0.75");
    let metrics = json_file(&dir.join("metrics.json"));
    assert_eq!(metrics["accuracy"], 0.75);
    assert_eq!(metrics["flow.lines_completed"], 4);
}

/// The `settings` of a run's `meta.json`.
fn settings(dir: &Path) -> Value {
    meta(dir)["settings"].clone()
}

#[test]
fn a_resumed_run_keeps_the_settings_it_started_with_unless_given_again() {
    let ctx = TestContext::with_mock();
    // Every answer takes longer than the run's request timeout allows.
    ctx.mock().set_latency(Duration::from_millis(1500));
    ask_flow(&ctx);
    ctx.write("q.jsonl", &questions(2));
    ctx.write("my.env", "UNUSED_BY_THE_FLOW=1\n");
    ctx.write("prices.yaml", "gpt-4o-mini: {input: 1.0, output: 2.0}\n");
    let first = ctx.run(&[
        "run",
        "ask",
        "--data",
        "q.jsonl",
        "--name",
        "slow",
        "--request-timeout",
        "0.3",
        "--max-retries",
        "0",
        "--concurrency",
        "3",
        "--line-timeout",
        "60",
        "--no-cache",
        "--env-file",
        "my.env",
        "--prices",
        "prices.yaml",
    ]);
    assert_ne!(first.code, 0, "{first:?}");
    let dir = run_dir(&ctx, "slow");
    assert_eq!(meta(&dir)["failed_lines"], 2);
    assert_eq!(meta(&dir)["concurrency"], 3);
    let recorded = settings(&dir);
    assert_eq!(recorded["request_timeout_s"], 0.3);
    assert_eq!(recorded["max_retries"], 0);
    assert_eq!(recorded["line_timeout_s"], 60.0);
    assert_eq!(recorded["cache"], "off");
    let abs = |name: &str| ctx.root().join(name).display().to_string();
    assert_eq!(recorded["env_file"], abs("my.env"));
    assert_eq!(recorded["prices"], abs("prices.yaml"));
    // One request per line: no retries.
    assert_eq!(ctx.mock().request_count(), 2);

    // Resumed without flags: the same timeout, no retries, no cache, so the lines fail again
    // the same way (with the defaults, 120 s and 5 retries, they would succeed).
    ctx.mock().clear_requests();
    let again = ctx.run(&["run", "--resume", "slow"]);
    assert_ne!(again.code, 0, "{again:?}");
    assert!(!again.stderr.contains("note:"), "{}", again.stderr);
    assert_eq!(ctx.mock().request_count(), 2);
    assert_eq!(meta(&dir)["failed_lines"], 2);
    assert_eq!(
        settings(&dir),
        recorded,
        "the settings are kept as they were"
    );
    assert_eq!(meta(&dir)["concurrency"], 3);

    // A flag given on resume wins, says so, and is recorded.
    ctx.mock().clear_requests();
    ctx.run(&["run", "--resume", "slow", "--request-timeout", "10"])
        .expect_code(0)
        .stderr_has("note: --request-timeout 10 overrides the run's setting, 0.3")
        .stderr_has("2/2 lines succeeded");
    assert_eq!(ctx.mock().request_count(), 2);
    let now = settings(&dir);
    assert_eq!(now["request_timeout_s"], 10.0);
    assert_eq!(now["max_retries"], 0);
    assert_eq!(now["cache"], "off");
    assert_eq!(meta(&dir)["status"], "Completed");
}

#[test]
fn a_resumed_replay_run_still_answers_only_from_the_cache() {
    let ctx = TestContext::with_mock();
    ask_flow(&ctx);
    ctx.write("q.jsonl", &questions(2));
    // Nothing was ever recorded in `empty-cache`: replay fails every line without a request.
    let first = ctx.run(&[
        "run",
        "ask",
        "--data",
        "q.jsonl",
        "--name",
        "replayed",
        "--cache",
        "replay",
        "--cache-dir",
        "empty-cache",
    ]);
    assert_ne!(first.code, 0, "{first:?}");
    let dir = run_dir(&ctx, "replayed");
    assert_eq!(settings(&dir)["cache"], "replay");
    assert_eq!(
        settings(&dir)["cache_dir"],
        ctx.root().join("empty-cache").display().to_string()
    );
    assert_eq!(ctx.mock().request_count(), 0);

    let again = ctx.run(&["run", "--resume", "replayed"]);
    assert_ne!(again.code, 0, "{again:?}");
    assert_eq!(ctx.mock().request_count(), 0, "still replaying: no request");
    assert_eq!(meta(&dir)["failed_lines"], 2);

    ctx.run(&["run", "--resume", "replayed", "--cache", "on"])
        .expect_code(0)
        .stderr_has("note: --cache on overrides the run's setting, replay");
    assert_eq!(ctx.mock().request_count(), 2);
}

#[test]
fn a_run_recorded_before_settings_were_kept_whole_still_resumes() {
    let ctx = TestContext::with_mock();
    ask_flow(&ctx);
    ctx.write("q.jsonl", &questions(3));
    ctx.mock().push(MockReply::text("mock: q0"));
    ctx.mock()
        .push(MockReply::Status(400, "bad request for line 1".into()));
    ctx.run(&[
        "run",
        "ask",
        "--data",
        "q.jsonl",
        "--name",
        "old",
        "--concurrency",
        "1",
    ])
    .expect_code(1);
    let dir = run_dir(&ctx, "old");
    // The settings as an older flow wrote them: no cache directory, prices, sample or upload.
    let mut meta_json = meta(&dir);
    meta_json["settings"] = serde_json::json!({
        "env_file": null, "line_timeout_s": null, "request_timeout_s": 120.0,
        "max_retries": 5, "cache": "on", "require_base_line": false,
    });
    std::fs::write(
        dir.join("meta.json"),
        serde_json::to_string_pretty(&meta_json).unwrap(),
    )
    .unwrap();
    ctx.run(&["run", "--resume", "old"])
        .expect_code(0)
        .stderr_has("2 of 3 lines already succeeded")
        .stderr_has("3/3 lines succeeded");
}
