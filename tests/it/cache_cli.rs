//! The response cache through the binary: a second identical run makes no requests, replay mode
//! answers only from recordings, a corrupt entry is ignored, `flow cache stats|clear`.

use crate::support::context::TestContext;

const FLOW: &str = "inputs: {q: {type: string}}\noutputs:\n  a: {reference: '${ask.output}'}\nnodes:\n- {name: ask, type: llm, source: {type: code, path: ask.jinja2}, connection: open_ai_connection, api: chat, inputs: {model: m, q: '${inputs.q}'}}\n";

fn project(ctx: &TestContext, rows: usize) {
    ctx.flow(
        "f",
        &[("flow.dag.yaml", FLOW), ("ask.jinja2", "user:\n{{q}}")],
    );
    let data: String = (0..rows)
        .map(|i| format!("{{\"q\": \"question {i}\"}}\n"))
        .collect();
    ctx.write("data.jsonl", &data);
}

fn entries(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(shards) = std::fs::read_dir(dir) {
        for shard in shards.flatten() {
            if let Ok(files) = std::fs::read_dir(shard.path()) {
                out.extend(
                    files
                        .flatten()
                        .map(|f| f.path())
                        .filter(|p| p.extension().is_some_and(|e| e == "json")),
                );
            }
        }
    }
    out
}

#[test]
fn an_unchanged_rerun_makes_no_requests() {
    let ctx = TestContext::with_mock();
    project(&ctx, 5);
    ctx.run(&["run", "f", "--data", "data.jsonl"])
        .expect_code(0);
    assert_eq!(ctx.mock().requests().len(), 5);
    let again = ctx.run(&["run", "f", "--data", "data.jsonl", "--output", "json"]);
    again.expect_code(0).stderr_has("5 cached");
    assert_eq!(
        ctx.mock().requests().len(),
        5,
        "the second run must answer from the cache"
    );
    assert_eq!(again.json()["run"]["cache_hits"], 5);
    assert_eq!(again.json()["run"]["cost_usd"], 0.0);
    // The node records say the answer was cached.
    let name = again.json()["run"]["name"].as_str().unwrap().to_string();
    let record = std::fs::read_to_string(ctx.root().join(format!(
        ".flow/runs/{name}/node_artifacts/ask/000000000.jsonl"
    )))
    .unwrap();
    assert!(record.contains("\"cached\":true"), "{record}");
    // --no-cache asks again.
    ctx.run(&["run", "f", "--data", "data.jsonl", "--no-cache"])
        .expect_code(0);
    assert_eq!(ctx.mock().requests().len(), 10);
}

#[test]
fn cached_answers_say_what_they_saved_and_are_never_ranked_cheapest() {
    let ctx = TestContext::with_mock();
    // A priced model (the built-in table's gpt-4o-mini).
    ctx.flow(
        "f",
        &[
            (
                "flow.dag.yaml",
                &FLOW.replace("model: m", "model: gpt-4o-mini"),
            ),
            ("ask.jinja2", "user:\n{{q}}"),
        ],
    );
    let data: String = (0..4)
        .map(|i| format!("{{\"q\": \"question {i}\"}}\n"))
        .collect();
    ctx.write("data.jsonl", &data);
    let cold = ctx.run(&[
        "run",
        "f",
        "--data",
        "data.jsonl",
        "--name",
        "cold",
        "--output",
        "json",
    ]);
    let spent = cold.expect_code(0).json()["run"]["cost_usd"]
        .as_f64()
        .unwrap();
    assert!(spent > 0.0, "the cold run paid: {spent}");
    let warm = ctx.run(&[
        "run",
        "f",
        "--data",
        "data.jsonl",
        "--name",
        "warm",
        "--output",
        "json",
    ]);
    warm.expect_code(0)
        .stderr_has(&format!("4 cached (saved ${spent:.4})"));
    let meta = &warm.json()["run"];
    assert_eq!(meta["cost_usd"], 0.0);
    assert!(
        (meta["saved_usd"].as_f64().unwrap() - spent).abs() < 1e-9,
        "{meta}"
    );
    ctx.run(&["runs", "show", "warm"])
        .expect_code(0)
        .stdout_has("(the cached answers saved $");

    // The report: the warm run's cost card says what the cache saved, and no run is ranked
    // cheapest (nor best on cost.usd).
    ctx.run(&["report", "cold", "warm", "-o", "r.html"])
        .expect_code(0);
    let html = std::fs::read_to_string(ctx.root().join("r.html")).unwrap();
    assert!(html.contains("4 cached answers saved $"), "card detail");
    assert!(html.contains("not ranked: other runs answered from the cache"));
    let cost_card = &html[html.find("data-card=\"cost\"").expect("a cost card")..];
    let cost_card = &cost_card[..cost_card[1..].find("data-card=").unwrap_or(cost_card.len())];
    assert!(
        !cost_card.contains("best"),
        "no run is cheapest: {cost_card}"
    );

    // A budget gate scores a cached line at its real price, not at the cache's nothing.
    let budget = format!("cost:max_usd={}", spent / 8.0);
    for run in ["cold", "warm"] {
        let eval = ctx.run(&[
            "eval",
            "--run",
            run,
            "--evaluator",
            &budget,
            "--output",
            "json",
        ]);
        let out = eval.json();
        assert_eq!(out["metrics"]["cost.pass_rate"], 0.0, "{run}: {out}");
    }
}

#[test]
fn replay_answers_only_from_recordings_and_names_what_is_missing() {
    let ctx = TestContext::with_mock();
    project(&ctx, 3);
    ctx.run(&["run", "f", "--data", "data.jsonl"])
        .expect_code(0);
    ctx.write(
        "more.jsonl",
        "{\"q\": \"question 0\"}\n{\"q\": \"never asked before\"}\n",
    );
    let run = ctx.run(&["run", "f", "--data", "more.jsonl", "--cache", "replay"]);
    run.expect_code(1)
        .stderr_has("node ask")
        .stderr_has("never asked before");
    assert_eq!(
        ctx.mock().requests().len(),
        3,
        "replay never calls the endpoint"
    );
}

#[test]
fn a_corrupt_entry_is_a_miss_not_a_failure() {
    let ctx = TestContext::with_mock();
    project(&ctx, 2);
    ctx.run(&["run", "f", "--data", "data.jsonl"])
        .expect_code(0);
    let files = entries(&ctx.root().join(".flow/cache"));
    assert_eq!(files.len(), 2);
    std::fs::write(&files[0], "{\"truncated\": ").unwrap();
    ctx.run(&["run", "f", "--data", "data.jsonl"])
        .expect_code(0);
    assert_eq!(
        ctx.mock().requests().len(),
        3,
        "only the corrupt entry is asked again"
    );
    let stats = ctx.run(&["cache", "stats"]);
    stats.expect_code(0).stdout_has("2");
    ctx.run(&["cache", "clear"]).expect_code(0);
    assert!(entries(&ctx.root().join(".flow/cache")).is_empty());
}

#[test]
fn the_cache_directory_is_configurable() {
    let ctx = TestContext::with_mock();
    project(&ctx, 1);
    let mut cmd = ctx.cmd();
    cmd.env("FLOW_CACHE_DIR", ctx.root().join("ci-cache"));
    let out = cmd
        .args(["run", "f", "--data", "data.jsonl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(entries(&ctx.root().join("ci-cache")).len(), 1);
    assert!(!ctx.root().join(".flow/cache").exists());
}

#[test]
fn replay_needs_no_key() {
    let ctx = TestContext::with_mock();
    project(&ctx, 2);
    ctx.run(&["run", "f", "--data", "data.jsonl"])
        .expect_code(0);
    // A pipeline without the secret (a fork's pull request) replays the recorded answers.
    let mut cmd = ctx.cmd();
    cmd.env_remove("OPEN_AI_CONNECTION_API_KEY");
    let out = cmd
        .args(["run", "f", "--data", "data.jsonl", "--cache", "replay"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ctx.mock().requests().len(), 2, "replay made no request");
    // Without the cache, the request goes out without a key and the endpoint refuses it.
    let mut cmd = ctx.cmd();
    cmd.env_remove("OPEN_AI_CONNECTION_API_KEY");
    let out = cmd
        .args(["run", "f", "--data", "data.jsonl", "--no-cache"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
