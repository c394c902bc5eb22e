//! Batch runs under load and faults (docs/batch-runs.md): bounded concurrency, 429 storms, hung and
//! failing endpoints, a refused key — the real binary against the loopback mock LLM.

use std::time::{Duration, Instant};

use crate::support::batch::*;
use crate::support::context::TestContext;
use crate::support::mock_llm::MockReply;

#[test]
fn concurrency_bounds_requests_in_flight_and_overlaps_them() {
    let ctx = TestContext::with_mock();
    let latency = Duration::from_millis(300);
    ctx.mock().set_latency(latency);
    qa_flow(&ctx);
    ctx.write("q.jsonl", &questions(20));
    let started = Instant::now();
    let mut child = spawn(
        &ctx,
        &["run", "qa", "--data", "q.jsonl", "--concurrency", "10"],
    );
    // The mock records a request when it arrives and answers 300 ms later, so the arrivals
    // within any window shorter than that are requests in flight at once.
    let mut arrivals: Vec<Instant> = Vec::new();
    let status = loop {
        let now = Instant::now();
        let count = ctx.mock().request_count();
        arrivals.resize(count, now);
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the run hung");
        std::thread::sleep(Duration::from_millis(2));
    };
    let elapsed = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert_eq!(ctx.mock().request_count(), 20);
    assert!(
        elapsed < latency * 20 / 2,
        "20 lines of 300 ms at concurrency 10 took {elapsed:?}"
    );
    let window = Duration::from_millis(200);
    let most = (0..arrivals.len())
        .map(|i| {
            arrivals[i..]
                .iter()
                .take_while(|a| a.duration_since(arrivals[i]) < window)
                .count()
        })
        .max()
        .unwrap();
    assert!(most <= 10, "{most} requests in flight at once");
    assert!(most >= 5, "requests should overlap, at most {most} did");
}

#[test]
fn a_429_storm_is_absorbed_and_every_line_succeeds() {
    let ctx = TestContext::with_mock();
    for _ in 0..8 {
        ctx.mock().push(MockReply::RateLimit {
            retry_after: Some(0),
        });
    }
    qa_flow(&ctx);
    ctx.write("q.jsonl", &questions(5));
    let run = ctx.run(&["run", "qa", "--data", "q.jsonl", "--name", "storm"]);
    run.expect_code(0).stderr_has("5/5 lines succeeded");
    assert_eq!(ctx.mock().request_count(), 5 + 8, "each 429 retried once");
    let answers: Vec<String> = outputs(&run_dir(&ctx, "storm"))
        .iter()
        .map(|o| o["answer"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        answers,
        ["MOCK: Q0", "MOCK: Q1", "MOCK: Q2", "MOCK: Q3", "MOCK: Q4"]
    );
}

#[test]
fn a_server_error_is_retried() {
    let ctx = TestContext::with_mock();
    ctx.mock().push(MockReply::Status(500, "try again".into()));
    qa_flow(&ctx);
    ctx.write("q.jsonl", &questions(3));
    ctx.run(&["run", "qa", "--data", "q.jsonl", "--concurrency", "1"])
        .expect_code(0)
        .stderr_has("3/3 lines succeeded");
    assert_eq!(ctx.mock().request_count(), 4);
}

#[test]
fn hung_requests_fail_their_lines_at_the_line_timeout() {
    let ctx = TestContext::with_mock();
    ctx.mock().push(MockReply::Hang);
    ctx.mock().push(MockReply::Hang);
    // LLM only: a Python worker starting up could itself take longer than the timeout.
    ask_flow(&ctx);
    ctx.write("q.jsonl", &questions(6));
    let started = Instant::now();
    let run = ctx.run(&[
        "run",
        "ask",
        "--data",
        "q.jsonl",
        "--name",
        "hung",
        "--concurrency",
        "6",
        "--line-timeout",
        "0.5",
        "--request-timeout",
        "5",
    ]);
    let elapsed = started.elapsed();
    run.expect_code(1)
        .stderr_has("4/6 lines succeeded")
        .stderr_has("did not finish within 0.5 s");
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}");
    let max = meta(&run_dir(&ctx, "hung"))["latency_ms"]["max"]
        .as_f64()
        .unwrap();
    assert!(
        max >= 500.0,
        "a timed-out line ran 0.5 s: max latency {max} ms"
    );
    let error = json_file(&run_dir(&ctx, "hung").join("error.json"));
    let errors = error["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2);
    assert!(
        errors.iter().all(|e| e["error"]["kind"] == "timeout"),
        "{error}"
    );
}

#[test]
fn a_refused_key_exits_3_and_stops_early() {
    let ctx = TestContext::with_mock();
    qa_flow(&ctx);
    ctx.write("q.jsonl", &questions(40));
    let output = ctx
        .cmd()
        .env("OPEN_AI_CONNECTION_API_KEY", "sk-wrong-key")
        .args(["run", "qa", "--data", "q.jsonl", "--concurrency", "2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("refused the API key"), "{stderr}");
    assert!(
        !stderr.contains("sk-wrong-key"),
        "the key is not echoed: {stderr}"
    );
    let sent = ctx.mock().request_count();
    assert!(
        sent < 40,
        "the run should stop early; it sent {sent} requests"
    );
}
