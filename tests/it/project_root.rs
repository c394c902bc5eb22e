//! Where things are: `.env` and `.flow/` (runs, cache) are found from the project root — the
//! nearest folder up from the current one holding `.git`, `.flow` or `flow.toml` — so every
//! command sees the same runs and the same configuration from any folder of the project, and
//! the messages name the paths they used.

use crate::support::context::{Run, TEST_KEY, TestContext};

/// `flow ARGS` from `dir`, with the connection's variables only in the project's `.env`.
fn run_without_env_vars(ctx: &TestContext, dir: &str, args: &[&str]) -> Run {
    let output = ctx
        .cmd()
        .current_dir(ctx.root().join(dir))
        .env_remove("OPEN_AI_CONNECTION_API_KEY")
        .env_remove("OPEN_AI_CONNECTION_API_BASE")
        .args(args)
        .output()
        .expect("run flow");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn repo(ctx: &TestContext) {
    std::fs::create_dir_all(ctx.root().join("repo/.git")).unwrap();
    std::fs::create_dir_all(ctx.root().join("repo/flows/team")).unwrap();
    ctx.copy_from_repo("flows/hello");
    std::fs::rename(
        ctx.root().join("hello"),
        ctx.root().join("repo/flows/hello"),
    )
    .unwrap();
    ctx.write(
        "repo/data.jsonl",
        "{\"question\": \"a\"}\n{\"question\": \"b\"}\n",
    );
}

#[test]
fn env_and_runs_are_found_from_the_project_root_in_any_folder() {
    let ctx = TestContext::with_mock();
    repo(&ctx);
    // No .env yet: the message names where one would be read from.
    run_without_env_vars(
        &ctx,
        "repo/flows/team",
        &["run", "../hello", "--inputs", "question=hi"],
    )
    .expect_code(2)
    .stderr_has(&format!(
        "in {} (there is none yet)",
        ctx.root().join("repo/.env").display()
    ));

    // The project's .env at its root configures a run started two folders down.
    ctx.write(
        "repo/.env",
        &format!(
            "OPEN_AI_CONNECTION_API_KEY={TEST_KEY}\nOPEN_AI_CONNECTION_API_BASE={}/v1\nOPEN_AI_CONNECTION_MODEL=gpt-4o-mini\n",
            ctx.mock().url()
        ),
    );
    run_without_env_vars(
        &ctx,
        "repo/flows/team",
        &["run", "../hello", "--inputs", "question=hi"],
    )
    .expect_code(0);
    let listed = run_without_env_vars(&ctx, "repo/flows/team", &["connections", "../hello"]);
    listed.expect_code(0).stderr_has(&format!(
        "variables: {} and the environment",
        ctx.root().join("repo/.env").display()
    ));

    // A batch from a subfolder writes its run under the root's .flow/, where every other
    // folder of the project finds it by name.
    run_without_env_vars(
        &ctx,
        "repo/flows",
        &["run", "hello", "--data", "../data.jsonl", "--name", "sub"],
    )
    .expect_code(0);
    assert!(ctx.root().join("repo/.flow/runs/sub/meta.json").is_file());
    assert!(
        !ctx.root().join("repo/flows/.flow").exists(),
        "no .flow in the subfolder"
    );
    run_without_env_vars(&ctx, "repo/flows/team", &["runs", "show", "sub"]).expect_code(0);
    run_without_env_vars(&ctx, "repo", &["report", "sub", "--format", "csv"]).expect_code(0);
    // The response cache is the root's too: the same batch from the root asks nothing again.
    let requests = ctx.mock().requests().len();
    run_without_env_vars(
        &ctx,
        "repo",
        &[
            "run",
            "flows/hello",
            "--data",
            "data.jsonl",
            "--name",
            "again",
        ],
    )
    .expect_code(0)
    .stderr_has("2 cached");
    assert_eq!(ctx.mock().requests().len(), requests);

    // A run that is not there: the message names the folder looked in.
    run_without_env_vars(&ctx, "repo/flows", &["runs", "show", "nope"])
        .expect_code(2)
        .stderr_has(&format!(
            "looked in {}",
            ctx.root().join("repo/.flow/runs").display()
        ));

    // The nearest .env wins over the root's.
    ctx.write(
        "repo/flows/team/.env",
        "OPEN_AI_CONNECTION_API_KEY=sk-other\n",
    );
    run_without_env_vars(&ctx, "repo/flows/team", &["connections", "../hello"]).stderr_has(
        &format!(
            "variables: {} and the environment",
            ctx.root().join("repo/flows/team/.env").display()
        ),
    );
}
