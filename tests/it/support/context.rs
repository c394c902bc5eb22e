//! `TestContext`: a temporary project directory, the `flow` binary, and (optionally) a mock
//! LLM server wired into `.env`-style variables. Tests read like the CLI they drive.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

use super::mock_llm::MockLlm;

/// The API key the mock expects and the test connection sends.
pub const TEST_KEY: &str = "sk-test-0123456789abcdef";

/// A scratch project for one test.
pub struct TestContext {
    pub dir: tempfile::TempDir,
    pub mock: Option<MockLlm>,
}

impl TestContext {
    /// An empty project with no model endpoint.
    pub fn new() -> Self {
        TestContext {
            dir: tempfile::tempdir().expect("temp dir"),
            mock: None,
        }
    }

    /// A project whose `open_ai_connection` points at a fresh mock LLM server.
    pub fn with_mock() -> Self {
        let mock = MockLlm::start();
        mock.set_api_key(TEST_KEY);
        TestContext {
            dir: tempfile::tempdir().expect("temp dir"),
            mock: Some(mock),
        }
    }

    /// The mock server (panics when the context has none).
    pub fn mock(&self) -> &MockLlm {
        self.mock.as_ref().expect("this TestContext has no mock")
    }

    /// The project root.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Write a file under the project root, creating folders.
    pub fn write(&self, rel: &str, contents: &str) -> PathBuf {
        let path = self.root().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, contents).expect("write");
        path
    }

    /// Write a flow directory from `(file name, contents)` pairs; returns its path.
    pub fn flow(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        for (file, contents) in files {
            self.write(&format!("{name}/{file}"), contents);
        }
        self.root().join(name)
    }

    /// Copy a directory of the repository (e.g. `flows/hello`) into the project.
    pub fn copy_from_repo(&self, rel: &str) -> PathBuf {
        let src = repo_root().join(rel);
        let dst = self.root().join(Path::new(rel).file_name().expect("name"));
        copy_dir(&src, &dst);
        dst
    }

    /// The `flow` binary, run in the project root with a clean environment: no real
    /// OpenAI/Azure variables leak in, and `open_ai_connection` points at the mock if any.
    pub fn cmd(&self) -> Command {
        Command::from_std(self.std_cmd())
    }

    /// The same as [`cmd`](Self::cmd), as a `std::process::Command` (for tests that spawn the
    /// binary and signal or kill it while it runs).
    pub fn std_cmd(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_flow"));
        cmd.current_dir(self.root());
        for (k, _) in std::env::vars() {
            if k.starts_with("OPENAI")
                || k.starts_with("AZURE_OPENAI")
                || k.starts_with("OPEN_AI_CONNECTION")
                || k.starts_with("ANTHROPIC")
                || k.starts_with("FLOW_")
            {
                cmd.env_remove(k);
            }
        }
        cmd.env("NO_COLOR", "1");
        if let Some(mock) = &self.mock {
            cmd.env("OPEN_AI_CONNECTION_API_KEY", TEST_KEY);
            cmd.env("OPEN_AI_CONNECTION_API_BASE", format!("{}/v1", mock.url()));
        }
        cmd
    }

    /// Start `flow run FLOW --data DATA --name RUN --concurrency 1` in the background (output
    /// discarded) and return once its run directory has its `meta.json`: the batch is running.
    pub fn start_batch(&self, flow: &str, data: &str, run: &str) -> std::process::Child {
        use std::time::{Duration, Instant};
        let child = self
            .std_cmd()
            .args([
                "run",
                flow,
                "--data",
                data,
                "--name",
                run,
                "--concurrency",
                "1",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn flow");
        let meta = self.root().join(".flow/runs").join(run).join("meta.json");
        let started = Instant::now();
        while !meta.is_file() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the run never started"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    /// Run `flow ARGS...` and capture everything.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_in(".", args)
    }

    /// Run `flow ARGS...` from the folder `dir` of the project (as a user who `cd`s there).
    pub fn run_in(&self, dir: &str, args: &[&str]) -> Run {
        let output = self
            .cmd()
            .current_dir(self.root().join(dir))
            .args(args)
            .output()
            .expect("run flow");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// What a `flow` invocation did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Assert the exit status, showing the output when it differs.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit status {} (wanted {code})\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    /// Assert stdout contains `text`.
    pub fn stdout_has(&self, text: &str) -> &Self {
        assert!(
            self.stdout.contains(text),
            "stdout lacks {text:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Assert stderr contains `text`.
    pub fn stderr_has(&self, text: &str) -> &Self {
        assert!(
            self.stderr.contains(text),
            "stderr lacks {text:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Assert stderr does not contain `text`.
    pub fn stderr_lacks(&self, text: &str) -> &Self {
        assert!(
            !self.stderr.contains(text),
            "stderr has {text:?}\n--- stderr\n{}",
            self.stderr
        );
        self
    }

    /// Parse stdout as JSON (for `--output json`); promptflow's `NaN`/`Infinity` tokens read
    /// as `flow::non_finite` markers.
    pub fn json(&self) -> serde_json::Value {
        flow::non_finite::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\n--- stderr\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for entry in std::fs::read_dir(src).expect("read dir") {
        let entry = entry.expect("entry");
        let path = entry.path();
        let name = entry.file_name();
        if name == ".promptflow" || name == "__pycache__" {
            continue;
        }
        if path.is_dir() {
            copy_dir(&path, &dst.join(name));
        } else {
            std::fs::copy(&path, dst.join(name)).expect("copy");
        }
    }
}
