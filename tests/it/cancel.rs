//! Ctrl-C during a batch: it stops cleanly, keeps what finished, says how to resume, and the
//! resume finishes the run.

use std::time::{Duration, Instant};

use crate::support::context::TestContext;

const FLOW: &str = "inputs: {q: {type: string}}\noutputs:\n  a: {reference: '${ask.output}'}\nnodes:\n- {name: ask, type: llm, source: {type: code, path: ask.jinja2}, connection: open_ai_connection, api: chat, inputs: {model: m, q: '${inputs.q}'}}\n";

#[test]
fn ctrl_c_keeps_finished_lines_and_resume_finishes() {
    let ctx = TestContext::with_mock();
    ctx.mock().set_latency(Duration::from_millis(150));
    ctx.flow(
        "f",
        &[("flow.dag.yaml", FLOW), ("ask.jinja2", "user:\n{{q}}")],
    );
    let data: String = (0..40)
        .map(|i| format!("{{\"q\": \"question {i}\"}}\n"))
        .collect();
    ctx.write("data.jsonl", &data);

    let child = ctx
        .std_cmd()
        .args([
            "run",
            "f",
            "--data",
            "data.jsonl",
            "--name",
            "stopped",
            "--concurrency",
            "2",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let journal = ctx.root().join(".flow/runs/stopped/flow_artifacts");
    let started = Instant::now();
    loop {
        let records: usize = std::fs::read_dir(&journal)
            .map(|rd| {
                rd.flatten()
                    .map(|f| {
                        std::fs::read_to_string(f.path())
                            .unwrap_or_default()
                            .lines()
                            .count()
                    })
                    .sum()
            })
            .unwrap_or(0);
        if records >= 4 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no line finished"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("flow run --resume stopped"), "{stderr}");

    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ctx.root().join(".flow/runs/stopped/meta.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["status"], "Canceled");
    let kept = meta["completed_lines"].as_u64().unwrap();
    assert!((4..40).contains(&kept), "kept {kept}");
    let before = ctx.mock().requests().len();

    ctx.mock().set_latency(Duration::ZERO);
    ctx.run(&["run", "--resume", "stopped"]).expect_code(0);
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ctx.root().join(".flow/runs/stopped/meta.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["status"], "Completed");
    assert_eq!(meta["completed_lines"], 40);
    // Lines that finished before Ctrl-C were not asked again (cache off or on, no request).
    assert!(ctx.mock().requests().len() - before <= 40 - kept as usize + 2);
    let outputs = std::fs::read_to_string(
        ctx.root()
            .join(".flow/runs/stopped/flow_outputs/output.jsonl"),
    )
    .unwrap();
    let numbers: Vec<u64> = outputs
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["line_number"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(numbers, (0..40).collect::<Vec<u64>>());
}
