//! End-to-end against a real local LLM: llama.cpp's `llama-server` with SmolLM2-135M-Instruct
//! (`scripts/local-model.sh`; see support/local_model.rs). Every test goes through the `flow`
//! binary and a recording proxy in front of the server, and asserts only what holds for any
//! model: statuses and exit codes, shapes, tokens equal to the server's own `usage`, streamed
//! chunks equal to the final text, cache behaviour, determinism at temperature 0, gates and
//! judge errors. Never the tiny model's words.
//!
//! In CI the server must be there (`.ci/run` builds it); elsewhere a test without it says it was
//! skipped and how to build it.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::local_model::{ALIAS, Exchange, LocalProject, local_model_or_skip};
use crate::support::server::Server;

macro_rules! project_or_skip {
    ($name:literal) => {
        match local_model_or_skip($name) {
            Some(model) => LocalProject::new(model),
            None => return,
        }
    };
}

fn read_json(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_jsonl(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("JSONL line"))
        .collect()
}

/// The node runs of the last single-line run of `flow` (from `.promptflow/flow.detail.json`).
fn node_runs(flow: &std::path::Path) -> Vec<Value> {
    read_json(&flow.join(".promptflow/flow.detail.json"))["node_runs"]
        .as_array()
        .expect("node_runs")
        .clone()
}

/// Every node record (`run_info`) of a batch run: all nodes, all lines.
fn batch_node_records(p: &LocalProject, run: &str) -> Vec<Value> {
    let dir = p
        .ctx
        .root()
        .join(".flow/runs")
        .join(run)
        .join("node_artifacts");
    let mut out = Vec::new();
    for node in std::fs::read_dir(&dir).expect("node_artifacts") {
        for file in std::fs::read_dir(node.expect("entry").path()).expect("node dir") {
            out.extend(
                read_jsonl(&file.expect("entry").path())
                    .into_iter()
                    .map(|r| r["run_info"].clone()),
            );
        }
    }
    out
}

/// `flows/hello` with answers of at most 48 tokens (the tiny model rambles to the 256 allowed,
/// which costs seconds per line and shows nothing more).
fn short_hello(p: &LocalProject) {
    let flow = p.ctx.copy_from_repo("flows/hello");
    let dag = std::fs::read_to_string(flow.join("flow.dag.yaml")).expect("dag");
    assert!(dag.contains("max_tokens: 256"));
    std::fs::write(
        flow.join("flow.dag.yaml"),
        dag.replace("max_tokens: 256", "max_tokens: 48"),
    )
    .expect("write dag");
}

fn sum_usage(exchanges: &[Exchange]) -> (u64, u64) {
    exchanges
        .iter()
        .map(Exchange::usage)
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// Each shipped flow that calls a model runs against the real server as the README says, with
/// the model the connection names (`OPEN_AI_CONNECTION_MODEL`, the server's `--alias`) or the
/// node's own; each node's tokens are exactly the server's `usage` for its request.
#[test]
fn every_shipped_flow_runs_against_the_local_model_and_records_the_servers_usage() {
    let p = project_or_skip!("every_shipped_flow_runs_against_the_local_model");
    let cases: [(&str, &[&str], &str); 5] = [
        ("hello", &["question=What is a DAG?"], "answer"),
        (
            "classification",
            &["text=I was charged twice this month."],
            "classify",
        ),
        (
            "classification",
            &[
                "text=I was charged twice this month.",
                "--variant",
                "${classify.variant_1}",
            ],
            "classify",
        ),
        ("chat", &["question=What is a prompt flow?"], "chat"),
        (
            "conditional",
            &["request=Can I get a refund for my order?"],
            "refund_reply",
        ),
    ];
    for (name, inputs, llm_node) in cases {
        let flow = p.ctx.copy_from_repo(&format!("flows/{name}"));
        p.chat.clear();
        let mut args = vec!["run", name, "--no-cache", "--output", "json", "--inputs"];
        args.extend_from_slice(inputs);
        let run = p.ctx.run(&args);
        run.expect_code(0);
        let out = run.json();
        assert_eq!(out["status"], "Completed", "{name}: {out:#}");
        let requests = p.chat.model_requests();
        assert_eq!(
            requests.len(),
            1,
            "{name}: one model request: {requests:#?}"
        );
        let exchange = &requests[0];
        assert_eq!(exchange.status, 200, "{name}: {}", exchange.response);
        assert_eq!(exchange.path, "/v1/chat/completions");
        // No key: a local base needs none, and none is sent.
        assert!(exchange.request.get("api_key").is_none());
        // promptflow's defaults for what the node leaves unset reach the real server (llama.cpp
        // would otherwise sample with its own top_p 0.95)
        assert_eq!(
            exchange.request["top_p"], 1.0,
            "{name}: {:#}",
            exchange.request
        );
        assert_eq!(
            exchange.request["stream"], false,
            "{name}: {:#}",
            exchange.request
        );
        let node = node_runs(&flow)
            .into_iter()
            .find(|n| n["node"] == llm_node)
            .unwrap_or_else(|| panic!("{name}: no record of {llm_node}"));
        assert_eq!(node["status"], "Completed", "{name}: {node:#}");
        assert_eq!(
            node["output"].as_str(),
            Some(exchange.text().as_str()),
            "{name}"
        );
        let (prompt, completion) = exchange.usage();
        assert!(
            prompt > 0 && completion > 0,
            "{name}: {}",
            exchange.response
        );
        assert_eq!(node["system_metrics"]["prompt_tokens"], prompt, "{name}");
        assert_eq!(
            node["system_metrics"]["completion_tokens"], completion,
            "{name}"
        );
        assert_eq!(
            node["system_metrics"]["total_tokens"],
            prompt + completion,
            "{name}"
        );
    }
    // The evaluation flow has no model node: it runs without the server.
    p.chat.clear();
    p.ctx.copy_from_repo("flows/eval-accuracy");
    p.ctx
        .run(&[
            "run",
            "eval-accuracy",
            "--inputs",
            "groundtruth=billing",
            "prediction=billing",
        ])
        .expect_code(0);
    assert!(p.chat.model_requests().is_empty());

    // The chat flow with a conversation so far (datasets/chat.jsonl's second row): the request
    // replays it as user/assistant turns before the new question.
    let row = crate::support::context::repo_root().join("datasets/chat.jsonl");
    let row: Value = serde_json::from_str(
        std::fs::read_to_string(row)
            .unwrap()
            .lines()
            .nth(1)
            .unwrap(),
    )
    .unwrap();
    p.ctx.write("chat.inputs.json", &row.to_string());
    p.chat.clear();
    let run = p.ctx.run(&[
        "run",
        "chat",
        "--no-cache",
        "--output",
        "json",
        "--inputs",
        "chat.inputs.json",
    ]);
    run.expect_code(0);
    let requests = p.chat.model_requests();
    assert_eq!(requests.len(), 1);
    let roles: Vec<&str> = requests[0].request["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["role"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert_eq!(
        requests[0].request["messages"][3]["content"]
            .as_str()
            .map(str::trim),
        row["question"].as_str(),
        "the new question goes last"
    );
    assert_eq!(
        run.json()["outputs"]["answer"].as_str(),
        Some(requests[0].text().as_str())
    );
}

/// Temperature 0 with one slot and one thread: the same request gives the same answer, and the
/// node's model name is the server's.
#[test]
fn temperature_zero_answers_are_identical_from_run_to_run() {
    let p = project_or_skip!("temperature_zero_answers_are_identical_from_run_to_run");
    p.ctx.copy_from_repo("flows/classification");
    let answer = |text: &str| {
        let run = p.ctx.run(&[
            "run",
            "classification",
            "--no-cache",
            "--output",
            "json",
            "--inputs",
            text,
        ]);
        run.expect_code(0);
        run.json()["outputs"]["raw"].clone()
    };
    let a = answer("text=My invoice is wrong.");
    let b = answer("text=My invoice is wrong.");
    assert!(a.is_string(), "{a}");
    assert_eq!(a, b, "temperature 0 gave two answers");
    let requests = p.chat.model_requests();
    assert_eq!(requests.len(), 2, "--no-cache asks the model each time");
    assert_eq!(requests[0].request["temperature"], 0);
    assert_eq!(requests[0].text(), requests[1].text());
}

/// `flow connections check` against the server: it answers, needs no key, and lists the model
/// under its `--alias`.
#[test]
fn connections_check_finds_the_aliased_model() {
    let p = project_or_skip!("connections_check_finds_the_aliased_model");
    p.ctx.copy_from_repo("flows/hello");
    p.ctx
        .run(&["connections", "check", "hello"])
        .expect_code(0)
        .stdout_has("open_ai_connection ok")
        .stdout_has(&format!("including `{ALIAS}`"));
    let asked: Vec<String> = p.chat.exchanges().iter().map(|e| e.path.clone()).collect();
    assert_eq!(asked, vec!["/v1/models"]);
}

/// A batch with more lines in flight than the server has slots: the limiter keeps at most
/// `--concurrency` requests in flight, the server queues them, every line completes, and the
/// run's tokens are the sum of the server's usage.
#[test]
fn a_batch_completes_through_the_limiter_with_the_servers_token_counts() {
    let p = project_or_skip!("a_batch_completes_through_the_limiter_with_the_servers_token_counts");
    p.ctx.copy_from_repo("flows/classification");
    let data = crate::support::context::repo_root().join("datasets/classification-hard.jsonl");
    let lines = read_jsonl(&data).len();
    let run = p.ctx.run(&[
        "run",
        "classification",
        "--data",
        data.to_str().unwrap(),
        "--name",
        "hard",
        "--concurrency",
        "3",
        "--no-cache",
        "--output",
        "json",
    ]);
    run.expect_code(0);
    let requests = p.chat.model_requests();
    assert_eq!(
        requests.len(),
        lines,
        "one request per line: {:#?} {run:?}",
        p.chat.exchanges()
    );
    assert!(requests.iter().all(|e| e.status == 200));
    let peak = requests.iter().map(|e| e.in_flight).max().unwrap_or(0);
    assert!(
        peak <= 3,
        "{peak} requests in flight at once with --concurrency 3"
    );
    let meta = read_json(&p.ctx.root().join(".flow/runs/hard/meta.json"));
    assert_eq!(meta["status"], "Completed", "{meta:#}");
    let outputs = read_jsonl(
        &p.ctx
            .root()
            .join(".flow/runs/hard/flow_outputs/output.jsonl"),
    );
    assert_eq!(outputs.len(), lines);
    let categories = ["billing", "technical", "account", "other"];
    assert!(
        outputs
            .iter()
            .all(|o| categories.contains(&o["category"].as_str().unwrap_or("")))
    );
    // Tokens: each record equals its request's usage, and the run's sum equals the server's.
    let (prompt, completion) = sum_usage(&requests);
    let records: Vec<Value> = batch_node_records(&p, "hard")
        .into_iter()
        .filter(|r| r["node"] == "classify")
        .collect();
    assert_eq!(records.len(), lines);
    let recorded: (u64, u64) = records.iter().fold((0, 0), |a, r| {
        (
            a.0 + r["tokens"]["prompt_tokens"].as_u64().unwrap_or(0),
            a.1 + r["tokens"]["completion_tokens"].as_u64().unwrap_or(0),
        )
    });
    assert_eq!(recorded, (prompt, completion));
    let metrics = read_json(&p.ctx.root().join(".flow/runs/hard/metrics.json"));
    let total = metrics.to_string();
    assert!(
        total.contains(&format!("{}", prompt + completion)),
        "the run's total tokens {} are not in metrics.json: {metrics:#}",
        prompt + completion
    );
}

/// The response cache: a repeated run sends nothing; `--cache replay` answers from what was
/// recorded with no request, and fails a line whose request was never recorded, still with none.
#[test]
fn the_cache_and_replay_send_no_request_to_the_server() {
    let p = project_or_skip!("the_cache_and_replay_send_no_request_to_the_server");
    short_hello(&p);
    let data = crate::support::context::repo_root().join("datasets/hello.jsonl");
    let data = data.to_str().unwrap();
    let lines = read_jsonl(std::path::Path::new(data)).len();
    p.ctx
        .run(&["run", "hello", "--data", data, "--name", "recorded"])
        .expect_code(0);
    assert_eq!(p.chat.model_requests().len(), lines);
    let recorded = read_jsonl(
        &p.ctx
            .root()
            .join(".flow/runs/recorded/flow_outputs/output.jsonl"),
    );

    p.chat.clear();
    p.ctx
        .run(&[
            "run", "hello", "--data", data, "--name", "replayed", "--cache", "replay",
        ])
        .expect_code(0);
    assert!(
        p.chat.exchanges().is_empty(),
        "replay sent {:#?}",
        p.chat.exchanges()
    );
    let replayed = read_jsonl(
        &p.ctx
            .root()
            .join(".flow/runs/replayed/flow_outputs/output.jsonl"),
    );
    assert_eq!(replayed, recorded, "replay gave other answers");
    let records = batch_node_records(&p, "replayed");
    let answers: Vec<&Value> = records.iter().filter(|r| r["node"] == "answer").collect();
    assert_eq!(answers.len(), lines);
    assert!(answers.iter().all(|r| r["cached"] == true), "{answers:#?}");

    // A request never recorded: the line fails, naming the cause, and nothing is sent.
    let run = p.ctx.run(&[
        "run",
        "hello",
        "--cache",
        "replay",
        "--inputs",
        "question=Never asked before?",
    ]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(
        format!("{}{}", run.stdout, run.stderr).contains("replay"),
        "{run:?}"
    );
    assert!(
        p.chat.exchanges().is_empty(),
        "replay sent {:#?}",
        p.chat.exchanges()
    );
}

/// `flow serve` streams the model's real token chunks as they are generated: several `data:`
/// events spread over time, whose concatenation is the text the server wrote, and the same
/// text as the JSON answer at temperature 0.
#[test]
fn serve_streams_real_token_chunks_as_they_arrive() {
    let p = project_or_skip!("serve_streams_real_token_chunks_as_they_arrive");
    let flow = p.ctx.copy_from_repo("flows/chat");
    let dag = std::fs::read_to_string(flow.join("flow.dag.yaml")).unwrap();
    let dag = dag
        .replace("temperature: 0.7", "temperature: 0")
        .replace("max_tokens: 512", "max_tokens: 48");
    std::fs::write(flow.join("flow.dag.yaml"), dag).unwrap();
    let server = Server::ready(&p.ctx, "chat", &["--no-cache"], &[]);

    let timed = timed_sse_events(
        &format!("{}/score", server.url),
        r#"{"question": "What is a prompt flow?"}"#,
    );
    let pieces: Vec<(Duration, &str)> = timed
        .iter()
        .filter_map(|(t, v)| v.get("answer").and_then(Value::as_str).map(|a| (*t, a)))
        .collect();
    assert!(
        pieces.len() >= 5,
        "the answer came in {} pieces: {timed:?}",
        pieces.len()
    );
    let streamed: String = pieces.iter().map(|(_, a)| *a).collect();
    // The server wrote exactly these chunks: the request was a stream, and its deltas join to
    // the same text.
    let requests = p.chat.model_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].request["stream"], true);
    assert_eq!(requests[0].text(), streamed);
    let (first, last) = (pieces[0].0, pieces[pieces.len() - 1].0);
    assert!(
        last > first + Duration::from_millis(30),
        "all chunks arrived at once ({first:?} .. {last:?}): not incremental"
    );

    // The JSON answer to the same question is the same text (temperature 0, no cache).
    let a = server.score(r#"{"question": "What is a prompt flow?"}"#);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["answer"].as_str(), Some(streamed.as_str()));
    let requests = p.chat.model_requests();
    assert_eq!(requests.len(), 2);
    // Both answers' tokens, the streamed one's from its final usage event, are the server's.
    let (prompt, completion) = sum_usage(&requests);
    assert_eq!(
        server.metric("flow_tokens_total{type=\"prompt\"}"),
        Some(prompt as f64),
        "{}",
        server.get("/metrics").body
    );
    assert_eq!(
        server.metric("flow_tokens_total{type=\"completion\"}"),
        Some(completion as f64)
    );
}

/// An LLM judge that is this tiny model: whatever it replies, a line whose reply holds no score
/// is a per-line judge error, and any such line makes the evaluation inconclusive (exit 1),
/// never a pass. Lines it did score are 1 to 5.
#[test]
fn a_tiny_judge_never_passes_silently() {
    let p = project_or_skip!("a_tiny_judge_never_passes_silently");
    short_hello(&p);
    let data = crate::support::context::repo_root().join("datasets/hello.jsonl");
    p.ctx
        .run(&[
            "run",
            "hello",
            "--data",
            data.to_str().unwrap(),
            "--name",
            "answers",
        ])
        .expect_code(0);
    p.chat.clear();
    let run = p.ctx.run(&[
        "eval",
        "--run",
        "answers",
        "--evaluator",
        "relevance:connection=judge,model=smollm2,threshold=4",
        "--column-mapping",
        "question=${data.question}",
        "prediction=${run.outputs.answer}",
        "--threshold",
        "relevance.mean>=1",
        "--name",
        "judged",
        "--output",
        "json",
    ]);
    let lines = read_jsonl(&data).len();
    let judge_calls = p.chat.model_requests();
    assert_eq!(judge_calls.len(), lines, "one judge call per line");
    // What the judge replied decides which lines must be scored: parse each reply ourselves.
    let unparseable = judge_calls
        .iter()
        .filter(|e| flow::judge::parse_score(&e.text()).is_none())
        .count();
    let scores = read_jsonl(&p.ctx.root().join(".flow/runs/judged/judge_scores.jsonl"));
    assert_eq!(scores.len(), lines);
    let mut unscored = 0;
    for line in &scores {
        let s = &line["scores"]["relevance"];
        match s["score"].as_f64() {
            Some(v) => assert!((1.0..=5.0).contains(&v), "{line}"),
            None => {
                unscored += 1;
                assert_eq!(s["passed"], false, "{line}");
                assert!(
                    !s["reason"].as_str().unwrap_or("").is_empty(),
                    "no reason: {line}"
                );
            }
        }
    }
    assert_eq!(
        unscored, unparseable,
        "lines without a score vs replies without one"
    );
    eprintln!("local judge: {unscored} of {lines} replies held no score");
    if unscored > 0 {
        run.expect_code(1);
        assert!(
            run.stderr.contains("inconclusive") || run.stdout.contains("inconclusive"),
            "{run:?}"
        );
        let verdict = read_json(&p.ctx.root().join(".flow/runs/judged/verdict.json"));
        assert_eq!(verdict["passed"], false, "{verdict:#}");
        assert!(
            verdict["verdict"]
                .as_str()
                .unwrap_or("")
                .contains("relevance"),
            "{verdict:#}"
        );
        assert_eq!(run.json()["passed"], false);
    } else {
        // Every reply held a score: the gate (mean >= 1) holds for any 1-5 scores.
        run.expect_code(0);
    }
}

/// The `embedding_similarity` evaluator against the server's embeddings endpoint: an answer
/// compared with itself scores 1 (cosine of identical vectors), with another text less.
#[test]
fn embedding_similarity_uses_the_servers_embeddings() {
    let p = project_or_skip!("embedding_similarity_uses_the_servers_embeddings");
    short_hello(&p);
    let data = crate::support::context::repo_root().join("datasets/hello.jsonl");
    let data = data.to_str().unwrap();
    p.ctx
        .run(&["run", "hello", "--data", data, "--name", "answers"])
        .expect_code(0);
    let lines = read_jsonl(std::path::Path::new(data)).len();
    let same = p.ctx.run(&[
        "eval",
        "--run",
        "answers",
        "--evaluator",
        "embedding_similarity:connection=embed,threshold=0.99",
        "--column-mapping",
        "prediction=${run.outputs.answer}",
        "ground_truth=${run.outputs.answer}",
        "--threshold",
        "embedding_similarity.pass_rate>=1",
        "--name",
        "same",
        "--output",
        "json",
    ]);
    same.expect_code(0);
    let out = same.json();
    let mean = out["metrics"]["embedding_similarity.mean"]
        .as_f64()
        .expect("mean");
    assert!((mean - 1.0).abs() < 1e-3, "identical texts: {mean}");
    let embedded = p.embeddings.model_requests();
    assert!(
        !embedded.is_empty()
            && embedded
                .iter()
                .all(|e| e.path == "/v1/embeddings" && e.status == 200),
        "{embedded:#?}"
    );
    let vector = embedded[0].json()["data"][0]["embedding"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    assert!(vector > 0, "no vector: {}", embedded[0].response);

    let other = p.ctx.run(&[
        "eval",
        "--run",
        "answers",
        "--evaluator",
        "embedding_similarity:connection=embed,threshold=0.99",
        "--column-mapping",
        "prediction=${run.outputs.answer}",
        "ground_truth=${data.question}",
        "--name",
        "other",
        "--output",
        "json",
    ]);
    let scores = read_jsonl(&p.ctx.root().join(".flow/runs/other/judge_scores.jsonl"));
    assert_eq!(scores.len(), lines);
    for line in &scores {
        let v = line["scores"]["embedding_similarity"]["score"]
            .as_f64()
            .expect("a score");
        assert!((-1.0..1.0 - 1e-6).contains(&v), "answer vs question: {v}");
    }
    assert!(other.code == 0 || other.code == 1, "{other:?}");
}

/// The shipped `experiment.yaml` (pull-request overlay) with no key at all: its `${api_key}`
/// does not force one for a local server. Both variants run, are evaluated and compared, and
/// `flow report` makes the HTML page.
#[test]
fn the_shipped_experiment_runs_keyless_and_reports_in_html() {
    let p = project_or_skip!("the_shipped_experiment_runs_keyless_and_reports_in_html");
    for dir in ["flows/classification", "flows/eval-accuracy"] {
        let dst = p.ctx.root().join(dir);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        let copied = p.ctx.copy_from_repo(dir);
        std::fs::rename(copied, &dst).unwrap();
    }
    let repo = crate::support::context::repo_root();
    for file in [
        "experiment.yaml",
        "experiment.pr.yaml",
        "datasets/classification-hard.jsonl",
        "datasets/classification.jsonl",
    ] {
        p.ctx
            .write(file, &std::fs::read_to_string(repo.join(file)).unwrap());
    }
    let run = p
        .ctx
        .run(&["experiment", "--env", "pr", "--output", "json"]);
    run.expect_code(0);
    let out = run.json();
    assert_eq!(
        out["variants"],
        serde_json::json!(["default", "classify.variant_1"])
    );
    assert!(out["winner"].is_string(), "{out:#}");
    let lines = read_jsonl(&repo.join("datasets/classification-hard.jsonl")).len();
    assert_eq!(
        p.chat.model_requests().len(),
        2 * lines,
        "two variants × the dataset"
    );
    let experiments = p.ctx.root().join(".flow/experiments");
    let dir = std::fs::read_dir(&experiments)
        .expect("experiments dir")
        .next()
        .expect("an experiment")
        .expect("entry")
        .path();
    let summary = read_json(&dir.join("summary.json"));
    assert!(summary.to_string().contains("accuracy"), "{summary:#}");

    let html = p.ctx.root().join("report.html");
    p.ctx
        .run(&[
            "report",
            dir.to_str().unwrap(),
            "--format",
            "html",
            "-o",
            html.to_str().unwrap(),
        ])
        .expect_code(0);
    let page = std::fs::read_to_string(&html).expect("report.html");
    assert!(page.starts_with("<!DOCTYPE html>") || page.starts_with("<!doctype html>"));
    assert!(
        page.contains("classify.variant_1"),
        "the report names the variants"
    );
}

/// POST `body` to `url` asking for an event stream; each `data:` event with the time since the
/// request it arrived at.
fn timed_sse_events(url: &str, body: &str) -> Vec<(Duration, Value)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use futures::StreamExt;
        let started = Instant::now();
        let resp = reqwest::Client::new()
            .post(url)
            .header("accept", "text/event-stream")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("POST /score");
        assert_eq!(resp.status(), 200);
        let mut body = resp.bytes_stream();
        let mut buf = String::new();
        let mut events = Vec::new();
        while let Some(chunk) = body.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
            while let Some(end) = buf.find("\n\n") {
                let event: String = buf.drain(..end + 2).collect();
                for line in BufReader::new(event.as_bytes())
                    .lines()
                    .map_while(Result::ok)
                {
                    if let Some(data) = line.strip_prefix("data:") {
                        let v: Value = serde_json::from_str(data.trim()).expect("event is JSON");
                        events.push((started.elapsed(), v));
                    }
                }
            }
        }
        events
    })
}

/// A flex flow whose entry returns what a `Prompty` with `stream: true` gives (a generator of
/// the model's text) streams the real model's chunks end to end in `flow serve`: through the
/// worker's host channel, piece by piece as the server writes them.
#[test]
fn a_prompty_streamed_from_python_reaches_the_client_as_the_model_writes() {
    let p =
        project_or_skip!("a_prompty_streamed_from_python_reaches_the_client_as_the_model_writes");
    p.ctx.flow(
        "flex",
        &[
            ("flow.flex.yaml", "entry: entry:answer\n"),
            (
                "entry.py",
                "from promptflow.core import Prompty\n\n\ndef answer(question: str):\n    return Prompty.load('chat.prompty')(question=question)\n",
            ),
            (
                "chat.prompty",
                "---\nname: chat\nmodel:\n  api: chat\n  configuration:\n    type: openai\n    connection: open_ai_connection\n    model: gpt-4o-mini\n  parameters:\n    temperature: 0\n    max_tokens: 48\n    stream: true\ninputs:\n  question:\n    type: string\n---\nsystem:\nYou answer in two sentences.\n\nuser:\n{{question}}\n",
            ),
        ],
    );
    let server = Server::ready(&p.ctx, "flex", &["--no-cache"], &[]);
    let timed = timed_sse_events(
        &format!("{}/score", server.url),
        r#"{"question": "What is a prompt flow?"}"#,
    );
    let pieces: Vec<(Duration, &str)> = timed
        .iter()
        .filter_map(|(t, v)| v.get("output").and_then(Value::as_str).map(|a| (*t, a)))
        .collect();
    assert!(
        pieces.len() >= 5,
        "the answer came in {} pieces: {timed:?}",
        pieces.len()
    );
    let streamed: String = pieces.iter().map(|(_, a)| *a).collect();
    let requests = p.chat.model_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].request["stream"], true);
    assert_eq!(requests[0].text(), streamed);
    let (first, last) = (pieces[0].0, pieces[pieces.len() - 1].0);
    assert!(
        last > first + Duration::from_millis(30),
        "all chunks arrived at once ({first:?} .. {last:?}): not incremental"
    );
}
