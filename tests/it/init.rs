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

/// `flow init`'s printed next steps, typed verbatim into a shell where `flow init` ran, with
/// `flow` on the PATH; after the `cp` of `.env.example`, "fill in one provider" is done by
/// appending the mock's connection to `.env` (the variables are not in the environment).
#[test]
fn the_printed_next_steps_work_verbatim_from_where_the_user_stands() {
    let ctx = TestContext::with_mock();
    for (template, dir) in [("standard", "my proj"), ("chat", "chatbot")] {
        let init = ctx.run(&["init", dir, "--template", template]);
        init.expect_code(0);
        let steps: Vec<&str> = init
            .stdout
            .split("\nNext:\n")
            .nth(1)
            .expect("a Next: section")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        assert!(steps.len() >= 4, "{steps:?}");
        let mut script = String::from("set -e\n");
        for step in &steps {
            script.push_str(step);
            script.push('\n');
            if step.starts_with("cp ") {
                script.push_str(&format!(
                    "printf 'OPEN_AI_CONNECTION_API_KEY={}\\nOPEN_AI_CONNECTION_API_BASE={}/v1\\n' >> .env\n",
                    crate::support::context::TEST_KEY,
                    ctx.mock().url()
                ));
            }
        }
        let bin = std::path::Path::new(env!("CARGO_BIN_EXE_flow"))
            .parent()
            .unwrap()
            .to_path_buf();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let before = ctx.mock().requests().len();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .current_dir(ctx.root())
            .env_remove("OPEN_AI_CONNECTION_API_KEY")
            .env_remove("OPEN_AI_CONNECTION_API_BASE")
            .env("NO_COLOR", "1")
            .env("PATH", path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{template}: {script}\n{stderr}");
        // The batch asked the configured endpoint (from the project's .env) for every row, and
        // its run is under the project's own .flow/.
        assert!(ctx.mock().requests().len() > before, "{stderr}");
        assert!(ctx.root().join(dir).join(".flow/runs").is_dir(), "{stderr}");
        assert!(ctx.root().join(dir).join("flow.toml").is_file());
    }
}

#[test]
fn settings_written_into_flow_toml_are_refused_not_ignored() {
    let ctx = TestContext::new();
    ctx.run(&["init", "p"]).expect_code(0);
    let toml = ctx.root().join("p/flow.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str("concurrency = 4\n");
    std::fs::write(&toml, &text).unwrap();
    let run = ctx.run_in("p", &["run", "flows/p", "--offline"]);
    run.expect_code(2).stderr_has(&format!(
        "flow.toml:{}: `concurrency = 4`: flow reads no settings from flow.toml",
        text.lines().count()
    ));
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
