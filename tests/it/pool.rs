//! Endpoint pools (`X_POOL=a,b,c`): one connection spread over several deployments — the real
//! binary against three loopback mocks of different speeds, one of which goes down mid-run.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::context::{TEST_KEY, TestContext};
use crate::support::mock_llm::MockLlm;

const FLOW: &str = "\
inputs:
  text:
    type: string
outputs:
  answer:
    type: string
    reference: ${ask.output}
nodes:
- name: ask
  type: llm
  source:
    type: code
    path: ask.jinja2
  inputs:
    model: gpt-test
    text: ${inputs.text}
  connection: llm
  api: chat
";

fn member(latency_ms: u64) -> MockLlm {
    let mock = MockLlm::start();
    mock.set_api_key(TEST_KEY);
    mock.set_latency(Duration::from_millis(latency_ms));
    mock
}

fn pool_env(ctx: &TestContext, members: &[(&str, &MockLlm)]) {
    let mut env = format!(
        "LLM_POOL={}\n",
        members
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(",")
    );
    for (name, mock) in members {
        let prefix = name.to_ascii_uppercase();
        env.push_str(&format!(
            "{prefix}_API_KEY={TEST_KEY}\n{prefix}_API_BASE={}\n",
            mock.openai_base()
        ));
    }
    ctx.write(".env", &env);
}

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// The text of a recorded chat request (the line's `text`).
fn request_text(body: &Value) -> String {
    body["messages"][0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_pool_spreads_lines_by_capacity_and_survives_a_member_going_down() {
    let ctx = TestContext::new();
    let fast = member(20);
    let mid = member(40);
    let slow = member(80);
    pool_env(&ctx, &[("fast", &fast), ("mid", &mid), ("slow", &slow)]);
    ctx.flow(
        "f",
        &[("flow.dag.yaml", FLOW), ("ask.jinja2", "user:\n{{text}}")],
    );
    let lines = 1500;
    let data: String = (0..lines)
        .map(|i| format!("{{\"text\": \"line-{i}\"}}\n"))
        .collect();
    ctx.write("data.jsonl", &data);

    // `mid` goes down (HTTP 500) after its 60th request and comes back a second later.
    let down_window = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(60);
            while mid.request_count() < 60 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            mid.set_down(Some(500));
            let down_at = Instant::now();
            std::thread::sleep(Duration::from_secs(1));
            mid.set_down(None);
            (down_at, Instant::now())
        });
        let run = ctx.run(&[
            "run",
            "f",
            "--data",
            "data.jsonl",
            "--name",
            "pooled",
            "--concurrency",
            "12",
            "--max-retries",
            "3",
        ]);
        let window = watcher.join().expect("watcher");
        run.expect_code(0);
        window
    });

    // Every line succeeded.
    let dir = ctx.root().join(".flow/runs/pooled");
    let outputs = jsonl(&dir.join("flow_outputs/output.jsonl"));
    assert_eq!(outputs.len(), lines);

    // Records say which member served each line.
    let mut served: HashMap<String, usize> = HashMap::new();
    for line in 0..lines {
        let rec = &jsonl(&dir.join(format!("node_artifacts/ask/{line:09}.jsonl")))[0];
        let by = rec["run_info"]["served_by"]
            .as_str()
            .unwrap_or_else(|| panic!("line {line} has no served_by: {rec}"));
        *served.entry(by.to_string()).or_default() += 1;
    }
    let (f, m, s) = (served["fast"], served["mid"], served["slow"]);
    assert_eq!(f + m + s, lines);
    // Load follows capacity: the fastest member serves the most, the slowest the fewest.
    assert!(f > m && f > s, "{served:?}");
    assert!(f as f64 >= 1.5 * s as f64, "{served:?}");

    // `mid` failed while down, and was used again after it recovered.
    let (down_at, up_at) = down_window;
    let mid_times = mid.request_times();
    assert!(
        mid_times.iter().any(|t| *t > down_at && *t < up_at),
        "no request reached mid while it was down"
    );
    assert!(
        mid_times.iter().any(|t| *t > up_at),
        "mid was not used again after it recovered ({served:?})"
    );

    // No line was sent to the same member twice in a row: a failed attempt moves on.
    let mut attempts: HashMap<String, Vec<(Instant, &str)>> = HashMap::new();
    for (name, mock) in [("fast", &fast), ("mid", &mid), ("slow", &slow)] {
        for (req, at) in mock.requests().iter().zip(mock.request_times()) {
            attempts
                .entry(request_text(&req.body))
                .or_default()
                .push((at, name));
        }
    }
    let mut retried = 0;
    for (text, mut seq) in attempts {
        seq.sort_by_key(|(at, _)| *at);
        if seq.len() > 1 {
            retried += 1;
        }
        for pair in seq.windows(2) {
            assert_ne!(
                pair[0].1, pair[1].1,
                "{text} went to {} twice in a row",
                pair[0].1
            );
        }
    }
    assert!(retried > 0, "the outage caused no retry at all");
}

#[test]
fn a_pool_answer_is_cached_whichever_member_served_it() {
    let ctx = TestContext::new();
    let a = member(0);
    let b = member(0);
    pool_env(&ctx, &[("pool_a", &a), ("pool_b", &b)]);
    ctx.flow(
        "f",
        &[("flow.dag.yaml", FLOW), ("ask.jinja2", "user:\n{{text}}")],
    );
    let data: String = (0..20)
        .map(|i| format!("{{\"text\": \"c-{i}\"}}\n"))
        .collect();
    ctx.write("data.jsonl", &data);
    ctx.run(&["run", "f", "--data", "data.jsonl", "--name", "first"])
        .expect_code(0);
    let sent = a.request_count() + b.request_count();
    assert_eq!(sent, 20);
    assert!(a.request_count() > 0 && b.request_count() > 0);
    // Swap the members' order: a different member may be first choice, the answers are the
    // same cache entries.
    pool_env(&ctx, &[("pool_b", &b), ("pool_a", &a)]);
    ctx.run(&["run", "f", "--data", "data.jsonl", "--name", "second"])
        .expect_code(0);
    assert_eq!(a.request_count() + b.request_count(), sent);
    let rec = &jsonl(
        &ctx.root()
            .join(".flow/runs/second/node_artifacts/ask/000000000.jsonl"),
    )[0];
    assert_eq!(rec["run_info"]["cached"], true);
    assert!(rec["run_info"].get("served_by").is_none(), "{rec}");
}

#[test]
fn a_dead_member_is_passed_over_and_named_nowhere_in_the_outputs() {
    let ctx = TestContext::new();
    let live = member(0);
    // Nothing listens on the dead member's port.
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    ctx.write(
        ".env",
        &format!(
            "LLM_POOL=dead,live\nDEAD_API_KEY={TEST_KEY}\nDEAD_API_BASE=http://127.0.0.1:{dead_port}/v1\nLIVE_API_KEY={TEST_KEY}\nLIVE_API_BASE={}\n",
            live.openai_base()
        ),
    );
    ctx.flow(
        "f",
        &[("flow.dag.yaml", FLOW), ("ask.jinja2", "user:\n{{text}}")],
    );
    let data: String = (0..30)
        .map(|i| format!("{{\"text\": \"d-{i}\"}}\n"))
        .collect();
    ctx.write("data.jsonl", &data);
    ctx.run(&["run", "f", "--data", "data.jsonl", "--name", "d"])
        .expect_code(0);
    assert_eq!(live.request_count(), 30);
}

#[test]
fn pool_configuration_errors_name_the_variable_and_the_fix() {
    let ctx = TestContext::new();
    ctx.flow(
        "f",
        &[("flow.dag.yaml", FLOW), ("ask.jinja2", "user:\n{{text}}")],
    );
    ctx.write(".env", "LLM_POOL=a,b\nA_API_KEY=k\n");
    ctx.run(&["run", "f", "--inputs", "text=hi"])
        .expect_code(2)
        .stderr_has("connection 'llm' (a pool): member connection 'b' is not configured");
    ctx.write(".env", "LLM_POOL=a,a\nA_API_KEY=k\n");
    ctx.run(&["run", "f", "--inputs", "text=hi"])
        .expect_code(2)
        .stderr_has("LLM_POOL lists 'a' twice");
    ctx.write(".env", "LLM_POOL=a\nLLM_API_KEY=k\nA_API_KEY=k\n");
    ctx.run(&["run", "f", "--inputs", "text=hi"])
        .expect_code(2)
        .stderr_has("LLM_POOL makes 'llm' a pool, so its other variables (LLM_API_KEY)");
    ctx.write(".env", "LLM_POOL=' , '\nA_API_KEY=k\n");
    ctx.run(&["run", "f", "--inputs", "text=hi"])
        .expect_code(2)
        .stderr_has("LLM_POOL is empty");
    // Unquoted spaces are not valid in .env: the error names the line.
    ctx.write(".env", "A_API_KEY=k\nLLM_POOL=a, b\n");
    ctx.run(&["run", "f", "--inputs", "text=hi"])
        .expect_code(2)
        .stderr_has(".env:2: malformed line in env file (column 13)");
}

#[test]
fn flow_connections_lists_the_members_of_a_pool() {
    let ctx = TestContext::new();
    let a = member(0);
    ctx.flow(
        "f",
        &[("flow.dag.yaml", FLOW), ("ask.jinja2", "user:\n{{text}}")],
    );
    ctx.write(
        ".env",
        &format!(
            "LLM_POOL=east,west\nEAST_API_KEY={TEST_KEY}\nEAST_API_BASE={base}\nWEST_API_KEY={TEST_KEY}\nWEST_API_BASE={base}\n",
            base = a.openai_base()
        ),
    );
    ctx.run(&["connections", "f"])
        .expect_code(0)
        .stdout_has("pool of 2: east, west");
    ctx.run(&["connections", "check", "f"])
        .expect_code(0)
        .stdout_has("east")
        .stdout_has("west");
}
