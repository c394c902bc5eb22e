//! Bounded work: what an endpoint or a flow can make `flow` do is limited, and hitting a limit
//! is a clear, located error rather than memory or time without end.

use crate::support::context::TestContext;

const FLOW: &str = "inputs: {q: {type: string}}\noutputs:\n  a: {reference: '${ask.output}'}\nnodes:\n- {name: ask, type: llm, source: {type: code, path: ask.jinja2}, connection: open_ai_connection, api: chat, inputs: {model: m, q: '${inputs.q}'}}\n";

#[test]
fn a_reply_larger_than_the_limit_fails_its_line_clearly_and_others_go_on() {
    let ctx = TestContext::with_mock();
    ctx.flow(
        "f",
        &[("flow.dag.yaml", FLOW), ("ask.jinja2", "user:\n{{q}}")],
    );
    // 9 MiB of answer, over the 8 MiB default.
    let huge = "x".repeat(9 * 1024 * 1024);
    ctx.mock().reply_when("runaway", &huge);
    ctx.mock().reply_when("normal", "fine");
    ctx.write(
        "data.jsonl",
        "{\"q\": \"normal one\"}\n{\"q\": \"runaway\"}\n{\"q\": \"normal two\"}\n",
    );
    let run = ctx.run(&["run", "f", "--data", "data.jsonl", "--name", "big"]);
    run.expect_code(1)
        .stderr_has("2/3 lines succeeded")
        .stderr_has("line 1: ")
        .stderr_has("sent a reply larger than 8 MiB");
    // Not retried: a reply that big would be as big again.
    let runaway = ctx
        .mock()
        .requests()
        .iter()
        .filter(|r| r.body.to_string().contains("runaway"))
        .count();
    assert_eq!(runaway, 1, "an oversized reply is not retried");
}

/// A prompt whose loops would run for hours: 10^10 steps.
const RUNAWAY_FLOW: &str = "inputs: {n: {type: int, default: 100000}}\noutputs:\n  p: {reference: '${spin.output}'}\nnodes:\n- {name: spin, type: prompt, source: {type: code, path: spin.jinja2}, inputs: {n: '${inputs.n}'}}\n";
const RUNAWAY_TEMPLATE: &str =
    "{% for i in range(n) %}{% for j in range(n) %}{{ j }}{% endfor %}{% endfor %}";

#[test]
fn a_runaway_template_fails_its_line_within_its_budget() {
    let ctx = TestContext::new();
    ctx.flow(
        "spin",
        &[
            ("flow.dag.yaml", RUNAWAY_FLOW),
            ("spin.jinja2", RUNAWAY_TEMPLATE),
        ],
    );
    let started = std::time::Instant::now();
    ctx.run(&["run", "spin"])
        .expect_code(1)
        .stderr_has("node `spin`")
        .stderr_has("did more work than one render may");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "the render budget stopped the template (took {:?})",
        started.elapsed()
    );
    // Small inputs through the same template still render.
    ctx.run(&["run", "spin", "--inputs", "n=3"])
        .expect_code(0)
        .stdout_has("012012012");
}

#[test]
fn serve_answers_health_while_a_request_renders_and_times_it_out() {
    use crate::support::server::Server;
    let ctx = TestContext::new();
    ctx.flow(
        "spin",
        &[
            ("flow.dag.yaml", RUNAWAY_FLOW),
            ("spin.jinja2", RUNAWAY_TEMPLATE),
        ],
    );
    let server = Server::ready(&ctx, "spin", &["--timeout", "0.3"], &[]);
    // More renders at once than the server has async workers (one per core): were they on
    // the workers, nothing else could be served until they end.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let slow: Vec<_> = (0..cores + 2)
        .map(|_| {
            let url = server.url.clone();
            std::thread::spawn(move || {
                let started = std::time::Instant::now();
                let answer = crate::support::server::request(
                    "POST",
                    &format!("{url}/score"),
                    &[],
                    Some("{}"),
                );
                (answer, started.elapsed())
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(50));
    // The renders hold blocking threads, not the async workers.
    for _ in 0..5 {
        let started = std::time::Instant::now();
        assert_eq!(server.get("/health").status, 200);
        assert!(
            started.elapsed() < std::time::Duration::from_millis(250),
            "/health took {:?} while a request rendered",
            started.elapsed()
        );
    }
    for request in slow {
        let (answer, took) = request.join().unwrap();
        assert_eq!(answer.status, 504, "{}", answer.body);
        assert!(
            took < std::time::Duration::from_secs(3),
            "the request timed out at --timeout, not at the end of the render ({took:?})"
        );
    }
    server.terminate();
}

#[test]
fn sigterm_drains_a_request_that_is_rendering() {
    use crate::support::server::Server;
    let ctx = TestContext::new();
    ctx.flow(
        "spin",
        &[
            ("flow.dag.yaml", RUNAWAY_FLOW),
            ("spin.jinja2", RUNAWAY_TEMPLATE),
        ],
    );
    let mut server = Server::ready(&ctx, "spin", &["--timeout", "30"], &[]);
    let url = server.url.clone();
    let rendering = std::thread::spawn(move || {
        crate::support::server::request("POST", &format!("{url}/score"), &[], Some("{}"))
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    server.terminate();
    // The request in flight gets its answer (the render runs out of budget: a clear error),
    // then the server exits cleanly.
    let answer = rendering.join().unwrap();
    assert_eq!(answer.status, 500, "{}", answer.body);
    assert!(
        answer.body.contains("did more work than one render may"),
        "{}",
        answer.body
    );
    assert_eq!(server.wait_exit(std::time::Duration::from_secs(20)), 0);
}
