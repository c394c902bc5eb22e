//! `flow init`: each template scaffolds a project whose flow runs offline on its own dataset,
//! never overwrites files without `--force`, and keeps secrets and local state out of git.

use crate::support::context::TestContext;
use serde_json::{Value, json};

const TEMPLATES: [&str; 3] = ["standard", "chat", "evaluation"];

/// The first row of `DIR/datasets/<name>.jsonl` of a scaffolded project.
fn first_row(ctx: &TestContext, dir: &str) -> Value {
    let path = ctx.root().join(format!("{dir}/datasets/{dir}.jsonl"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("{} is empty", path.display()));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_template_scaffolds_a_flow_that_runs_offline_on_its_dataset() {
    let ctx = TestContext::new();
    for template in TEMPLATES {
        let dir = template.to_string();
        ctx.run(&["init", &dir, "--template", template])
            .expect_code(0)
            .stdout_has(&format!("{dir}/flows/{dir}/flow.dag.yaml"));
        let flow = format!("{dir}/flows/{dir}");
        assert!(ctx.root().join(&flow).join("flow.dag.yaml").is_file());
        assert!(ctx.root().join(&dir).join(".env.example").is_file());

        let inputs = format!("{template}.inputs.json");
        ctx.write(&inputs, &first_row(&ctx, &dir).to_string());
        let run = ctx.run(&[
            "run",
            &flow,
            "--offline",
            "--inputs",
            &inputs,
            "--output",
            "json",
        ]);
        run.expect_code(0);
        let out = run.json();
        assert_eq!(out["status"], "Completed", "{template}: {out:#}");
        assert_eq!(out["offline"], true, "{template}");
        let outputs = out["outputs"].as_object().expect("outputs");
        assert!(!outputs.is_empty(), "{template}: no outputs");
        match template {
            "evaluation" => {
                // The first row's prediction equals its ground truth; the offline judge's reply
                // is no score, so only exact-match accuracy is logged.
                assert_eq!(outputs["exact_match"], true, "{out:#}");
                assert_eq!(out["metrics"]["accuracy"], json!(1.0), "{out:#}");
            }
            _ => {
                let answer = outputs["answer"].as_str().unwrap_or_default();
                assert!(answer.contains("no model"), "{template}: {answer:?}");
            }
        }
        let validate = ctx.run(&["validate", &flow]);
        validate.expect_code(0).stdout_has("is valid");
        assert!(
            !validate.stderr.contains("warning"),
            "{template}: {}",
            validate.stderr
        );
    }
}

#[test]
fn init_again_refuses_to_overwrite_without_force() {
    let ctx = TestContext::new();
    ctx.run(&["init", "proj", "--template", "standard"])
        .expect_code(0);
    let prompt = ctx.root().join("proj/flows/proj/answer.jinja2");
    std::fs::write(&prompt, "my edited prompt").expect("edit the prompt");

    let again = ctx.run(&["init", "proj", "--template", "standard"]);
    again
        .expect_code(2)
        .stderr_has("proj/flows/proj/answer.jinja2")
        .stderr_has("proj/flows/proj/flow.dag.yaml")
        .stderr_has("--force");
    assert_eq!(
        std::fs::read_to_string(&prompt).expect("prompt"),
        "my edited prompt",
        "a refused init must not touch any file"
    );

    // A different template collides on the shared files too.
    ctx.run(&["init", "proj", "--template", "chat"])
        .expect_code(2)
        .stderr_has("proj/.env.example");

    ctx.run(&["init", "proj", "--template", "standard", "--force"])
        .expect_code(0);
    assert_ne!(
        std::fs::read_to_string(&prompt).expect("prompt"),
        "my edited prompt",
        "--force rewrites the template's files"
    );
}

#[test]
fn init_into_a_directory_with_unrelated_files_keeps_them() {
    let ctx = TestContext::new();
    ctx.write("proj/notes.txt", "keep me");
    ctx.run(&["init", "proj"]).expect_code(0);
    assert_eq!(
        std::fs::read_to_string(ctx.root().join("proj/notes.txt")).expect("notes"),
        "keep me"
    );
    assert!(ctx.root().join("proj/flows/proj/flow.dag.yaml").is_file());
}

#[test]
fn gitignore_keeps_secrets_and_local_state_out() {
    let ctx = TestContext::new();
    ctx.run(&["init", "proj", "--template", "evaluation"])
        .expect_code(0);
    let gitignore =
        std::fs::read_to_string(ctx.root().join("proj/.gitignore")).expect(".gitignore");
    let lines: Vec<&str> = gitignore.lines().map(str::trim).collect();
    assert!(lines.contains(&".env"), "{gitignore}");
    assert!(lines.contains(&".flow/"), "{gitignore}");
    assert!(
        !lines.contains(&".env.example") && !lines.contains(&".env*"),
        ".env.example must stay committable: {gitignore}"
    );
}

#[test]
fn unknown_template_is_a_usage_error() {
    let ctx = TestContext::new();
    ctx.run(&["init", "proj", "--template", "nope"])
        .expect_code(2)
        .stderr_has("standard");
    assert!(!ctx.root().join("proj/flows").exists());
}
