//! `flow build --format docker`: the build context is generated and checked — variants applied,
//! a multi-stage Dockerfile, Python only when needed, non-root, HEALTHCHECK, the connection
//! variables in the README — and no secret or `.env` leaks into it. The context's flow is then
//! served by the real binary to prove it runs.

use std::path::Path;

use crate::support::context::{TEST_KEY, TestContext};
use crate::support::server::Server;

const PLANTED_KEY: &str = "sk-planted-in-the-flow-dir-9f8e7d6c";

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The Dockerfile's instructions (continuation lines joined, comments dropped).
fn instructions(dockerfile: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut continued = false;
    for line in dockerfile.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if continued {
            out.last_mut()
                .unwrap()
                .push_str(&format!(" {}", t.trim_end_matches('\\')));
        } else {
            out.push(t.trim_end_matches('\\').to_string());
        }
        continued = t.ends_with('\\');
    }
    for i in &out {
        let word = i.split_whitespace().next().unwrap();
        assert!(
            [
                "FROM",
                "RUN",
                "COPY",
                "ENV",
                "USER",
                "WORKDIR",
                "EXPOSE",
                "STOPSIGNAL",
                "HEALTHCHECK",
                "ENTRYPOINT"
            ]
            .contains(&word),
            "unexpected instruction: {i}"
        );
    }
    out
}

/// The classification flow (two prompt variants, a Python node) with a planted `.env`, a key
/// file, a private key and a requirements file.
fn planted_flow(ctx: &TestContext) {
    ctx.copy_from_repo("flows/classification");
    ctx.write(
        "classification/.env",
        &format!("OPEN_AI_CONNECTION_API_KEY={PLANTED_KEY}\n"),
    );
    ctx.write("classification/service.key", "not for images\n");
    ctx.write("classification/.env.production", "X=1\n");
    ctx.write(
        "classification/.env.example",
        "OPEN_AI_CONNECTION_API_KEY=\n",
    );
    ctx.write(
        "classification/notes.txt",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
    );
    ctx.write("classification/leaky.py", &format!("KEY = '{TEST_KEY}'\n"));
    ctx.write("classification/requirements.txt", "\n");
    ctx.write(".env", &format!("OPEN_AI_CONNECTION_API_KEY={TEST_KEY}\n"));
}

#[test]
fn a_docker_context_has_the_flow_and_no_secret() {
    let ctx = TestContext::with_mock();
    planted_flow(&ctx);
    let run = ctx.run(&[
        "build",
        "classification",
        "--format",
        "docker",
        "--out-dir",
        "image",
        "--variant",
        "${classify.variant_1}",
    ]);
    run.expect_code(0)
        .stdout_has("with Python for the flow's Python nodes")
        .stdout_has("the container needs: OPEN_AI_CONNECTION_API_KEY")
        .stderr_has("left out .env:")
        .stderr_has("left out service.key:")
        .stderr_has("left out .env.production:")
        .stderr_has("left out notes.txt: it holds a private key")
        .stderr_has("left out leaky.py: it holds the value of OPEN_AI_CONNECTION_API_KEY");
    let out = ctx.root().join("image");
    let all = files(&out);
    for f in &all {
        let name = Path::new(f)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(name != ".env" && !name.starts_with(".env.p"), "{f} leaked");
        assert!(!name.ends_with(".key"), "{f} leaked");
        let bytes = std::fs::read(out.join(f)).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(PLANTED_KEY), "{f} holds the planted key");
        assert!(!text.contains(TEST_KEY), "{f} holds the connection key");
        // flow's binary has key markers in its code (the secret scanner's).
        if f != "bin/flow" {
            assert!(
                !text.contains("PRIVATE KEY-----"),
                "{f} holds a private key"
            );
        }
    }
    for expected in [
        "Dockerfile",
        ".dockerignore",
        "README.md",
        "sample-request.json",
        "flow/flow.dag.yaml",
        "flow/normalize.py",
        "flow/requirements.txt",
        "flow/.env.example",
        "bin/flow",
    ] {
        assert!(
            all.contains(&expected.to_string()),
            "{expected} missing: {all:?}"
        );
    }
    // By default the running binary is copied: no source, no compile.
    assert!(!all.iter().any(|f| f.starts_with("flow-src")));
    assert_eq!(
        std::fs::metadata(out.join("bin/flow")).unwrap().len(),
        std::fs::metadata(env!("CARGO_BIN_EXE_flow")).unwrap().len()
    );

    // The variant is applied and node_variants is gone.
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(out.join("flow/flow.dag.yaml")).unwrap())
            .unwrap();
    assert!(yaml.get("node_variants").is_none());
    let classify = yaml["nodes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "classify")
        .unwrap();
    assert_eq!(classify["source"]["path"], "classify_few_shot.jinja2");
    assert!(classify.get("use_variants").is_none());

    // The Dockerfile: a Python stage and a Python runtime (no pip), the copied binary,
    // non-root with a group that exists, the port in one place.
    let dockerfile = std::fs::read_to_string(out.join("Dockerfile")).unwrap();
    assert!(
        !dockerfile.contains("syntax="),
        "BuildKit would fetch a frontend"
    );
    let ins = instructions(&dockerfile);
    let froms: Vec<&String> = ins.iter().filter(|i| i.starts_with("FROM ")).collect();
    assert_eq!(
        froms,
        vec![
            "FROM python:3.11-slim-bookworm AS python-deps",
            "FROM python:3.11-slim-bookworm"
        ]
    );
    assert!(!dockerfile.contains("cargo build"));
    assert!(ins.iter().any(|i| i == "COPY bin/flow /usr/local/bin/flow"));
    let pip = ins
        .iter()
        .find(|i| i.contains("pip install") && i.contains("requirements.txt"))
        .unwrap();
    assert!(pip.contains("pip uninstall --yes --quiet pip"), "{pip}");
    assert!(!pip.contains("--index-url"), "{pip}");
    assert!(
        ins.iter()
            .any(|i| i == "COPY flow/requirements.txt /tmp/requirements.txt")
    );
    assert!(
        ins.iter()
            .any(|i| i.contains("echo 'flow:x:10001:' >> /etc/group"))
    );
    let last_user = ins.iter().rev().find(|i| i.starts_with("USER ")).unwrap();
    assert_eq!(last_user, "USER 10001:10001");
    assert!(ins.iter().any(|i| i == "ENV FLOW_SERVE_PORT=8080"));
    assert!(ins.iter().any(|i| i == "EXPOSE 8080"));
    // The health check follows FLOW_SERVE_PORT (flow probe's default URL).
    assert!(
        ins.iter().any(|i| i.starts_with("HEALTHCHECK")
            && i.ends_with("CMD [\"/usr/local/bin/flow\", \"probe\"]")),
        "{ins:?}"
    );
    let entry = ins.iter().find(|i| i.starts_with("ENTRYPOINT")).unwrap();
    assert_eq!(
        entry,
        "ENTRYPOINT [\"/usr/local/bin/flow\", \"serve\", \"/app/flow\", \"--host\", \"0.0.0.0\"]"
    );
    // The context's secrets guard for the daemon, too.
    let ignore = std::fs::read_to_string(out.join(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "**/.env"));

    // The README names the variables the container needs, and no value.
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    for var in [
        "OPEN_AI_CONNECTION_API_KEY",
        "OPEN_AI_CONNECTION_API_BASE",
        "OPEN_AI_CONNECTION_API_TYPE",
        "FLOW_SERVE_TOKEN",
    ] {
        assert!(readme.contains(var), "README lacks {var}");
    }
    let sample: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("sample-request.json")).unwrap())
            .unwrap();
    assert_eq!(
        sample,
        serde_json::json!({"text": "I was charged twice for my subscription this month."})
    );

    // The context's flow serves: the sample request answers with the flow's outputs.
    ctx.mock().reply_when("charged twice", "billing");
    let server = Server::ready(&ctx, "image/flow", &[], &[]);
    let a = server.score(&sample.to_string());
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["category"], "billing");
    let req = ctx.mock().requests().pop().unwrap();
    // The image's HEALTHCHECK command: the URL given, or FLOW_SERVE_PORT's.
    ctx.run(&["probe", &format!("{}/health", server.url)])
        .expect_code(0);
    let port = server.url.rsplit(':').next().unwrap();
    let probe = ctx
        .cmd()
        .arg("probe")
        .env("FLOW_SERVE_PORT", port)
        .output()
        .unwrap();
    assert!(probe.status.success(), "{probe:?}");
    assert!(String::from_utf8_lossy(&probe.stdout).contains(&format!("127.0.0.1:{port}/health")));
    ctx.run(&["probe", &format!("{}/nope", server.url)])
        .expect_code(1);
    // The few-shot variant's prompt was used.
    assert!(
        req.body
            .to_string()
            .contains("My card was charged but the invoice still says unpaid."),
        "{}",
        req.body
    );
}

#[test]
fn a_flow_without_python_gets_the_binary_and_its_libraries_on_scratch() {
    let ctx = TestContext::with_mock();
    ctx.copy_from_repo("flows/chat");
    let binary = env!("CARGO_BIN_EXE_flow");
    ctx.run(&[
        "build",
        "chat",
        "--out-dir",
        "image",
        "--binary",
        binary,
        "--port",
        "9000",
    ])
    .expect_code(0)
    .stdout_has("no Python nodes: the runtime is the binary and its libraries")
    .stdout_has("binary: copied (linux/")
    .stderr_has(
        "then: docker run --rm -p 9000:9000 --env-file .env --read-only --tmpfs /tmp chat:latest",
    );
    let out = ctx.root().join("image");
    let all = files(&out);
    assert!(all.contains(&"bin/flow".to_string()));
    assert!(!all.iter().any(|f| f.starts_with("flow-src")));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("bin/flow"))
            .unwrap()
            .permissions()
            .mode();
        assert!(mode & 0o111 != 0);
    }
    let dockerfile = std::fs::read_to_string(out.join("Dockerfile")).unwrap();
    let ins = instructions(&dockerfile);
    let froms: Vec<&String> = ins.iter().filter(|i| i.starts_with("FROM ")).collect();
    assert_eq!(
        froms,
        vec!["FROM debian:bookworm-slim AS runtime-files", "FROM scratch"]
    );
    assert!(!dockerfile.contains("python3"));
    assert!(!dockerfile.contains("cargo build"));
    // The build checks the binary starts on the base, then copies the libraries it links.
    let files_stage = ins
        .iter()
        .find(|i| i.starts_with("RUN /usr/local/bin/flow --version"))
        .unwrap();
    assert!(
        files_stage.contains("ldd /usr/local/bin/flow"),
        "{files_stage}"
    );
    assert!(ins.iter().any(|i| i == "COPY bin/flow /usr/local/bin/flow"));
    assert!(ins.iter().any(|i| i == "USER 10001:10001"));
    assert!(ins.iter().any(|i| i == "ENV FLOW_SERVE_PORT=9000"));
    assert!(ins.iter().any(|i| i == "EXPOSE 9000"));
    assert!(!dockerfile.contains("8080"), "{dockerfile}");
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(readme.contains("no Python"));
    assert!(readme.contains("-p 9000:9000"), "{readme}");
    // A chat flow's sample request starts a conversation.
    let sample: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("sample-request.json")).unwrap())
            .unwrap();
    assert_eq!(sample["chat_history"], serde_json::json!([]));
}

#[test]
fn a_build_refuses_a_non_empty_output_and_bad_arguments() {
    let ctx = TestContext::new();
    ctx.copy_from_repo("flows/hello");
    ctx.write("image/keep.txt", "mine");
    ctx.run(&["build", "hello", "-o", "image"])
        .expect_code(2)
        .stderr_has("is not empty");
    assert_eq!(
        std::fs::read_to_string(ctx.root().join("image/keep.txt")).unwrap(),
        "mine"
    );
    ctx.run(&[
        "build",
        "hello",
        "--out-dir",
        "other",
        "--binary",
        "nope/flow",
    ])
    .expect_code(2)
    .stderr_has("does not exist");
    // The deprecated spelling of --out-dir still works, with a warning.
    ctx.run(&["build", "hello", "--output", "other", "--source", "."])
        .expect_code(2)
        .stderr_has("`flow build --output DIR` is deprecated: use `--out-dir DIR`")
        .stderr_has("not a checkout of flow's source");
    // A binary the image cannot run: not Linux, or a glibc newer than Debian 12's 2.36.
    std::fs::write(
        ctx.root().join("macos-flow"),
        [0xcf, 0xfa, 0xed, 0xfe, 7, 0, 0, 1],
    )
    .unwrap();
    ctx.run(&["build", "hello", "-o", "other", "--binary", "macos-flow"])
        .expect_code(2)
        .stderr_has("is not a Linux executable (a macOS Mach-O file)");
    let mut elf = vec![0u8; 64];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 2;
    elf[5] = 1;
    elf[16] = 3;
    elf[18] = 0x3e;
    elf.extend_from_slice(b"\0GLIBC_2.2.5\0GLIBC_2.39\0");
    std::fs::write(ctx.root().join("new-flow"), elf).unwrap();
    ctx.run(&["build", "hello", "-o", "other", "--binary", "new-flow"])
        .expect_code(2)
        .stderr_has("needs glibc 2.39 but the image's base (Debian 12) has glibc 2.36");
    // Credentials in a pip index URL would be in the Dockerfile.
    ctx.run(&[
        "build",
        "hello",
        "-o",
        "other",
        "--pip-index-url",
        "https://me:s3cret@pypi.example.com/simple",
    ])
    .expect_code(2)
    .stderr_has("--pip-index-url https://***@pypi.example.com/simple: a URL with credentials")
    .stderr_lacks("s3cret");
    ctx.run(&["build", "hello", "-o", "other", "--port", "0"])
        .expect_code(2)
        .stderr_has("--port 0");
    ctx.run(&["build", "hello", "-o", "other", "--pip-cert", "nope.crt"])
        .expect_code(2)
        .stderr_has("--pip-cert nope.crt: no such file");
    // A refused build leaves no folder behind.
    assert!(!ctx.root().join("other").exists());
    // A secret in flow.dag.yaml itself stops the build.
    ctx.write(
        "hello/flow.dag.yaml",
        &std::fs::read_to_string(ctx.root().join("hello/flow.dag.yaml"))
            .unwrap()
            .replace(
                "description:",
                "# token: sk-in-the-yaml-123456789\ndescription:",
            ),
    );
    let out = ctx
        .cmd()
        .args(["build", "hello", "--out-dir", "third"])
        .env("MY_SERVICE_TOKEN", "sk-in-the-yaml-123456789")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds the value of MY_SERVICE_TOKEN"));
    assert!(!ctx.root().join("third").exists());
    // An empty folder given stays, empty.
    std::fs::create_dir(ctx.root().join("empty")).unwrap();
    let out = ctx
        .cmd()
        .args(["build", "hello", "--out-dir", "empty"])
        .env("MY_SERVICE_TOKEN", "sk-in-the-yaml-123456789")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        std::fs::read_dir(ctx.root().join("empty")).unwrap().count(),
        0
    );
}

#[test]
fn from_source_and_pip_options_are_written_into_the_dockerfile() {
    let ctx = TestContext::new();
    ctx.copy_from_repo("flows/classification");
    ctx.write("classification/requirements.txt", "requests\n");
    ctx.write(
        "corp-ca.pem",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    );
    let source = crate::support::context::repo_root();
    ctx.run(&[
        "build",
        "classification",
        "-o",
        "image",
        "--source",
        &source.to_string_lossy(),
        "--pip-index-url",
        "https://pypi.corp.example/simple",
        "--pip-extra-index-url",
        "https://mirror.example/simple",
        "--pip-cert",
        "corp-ca.pem",
    ])
    .expect_code(0)
    .stdout_has("binary: built from source in `docker build`");
    let out = ctx.root().join("image");
    let all = files(&out);
    for expected in [
        "flow-src/Cargo.toml",
        "flow-src/Cargo.lock",
        "flow-src/src/main.rs",
        "flow-src/src/python/worker.py",
        "pip-ca.crt",
    ] {
        assert!(
            all.contains(&expected.to_string()),
            "{expected} missing: {all:?}"
        );
    }
    assert!(!all.iter().any(|f| f.starts_with("flow-src/target")));
    assert!(!all.contains(&"bin/flow".to_string()));
    let ins = instructions(&std::fs::read_to_string(out.join("Dockerfile")).unwrap());
    let froms: Vec<&String> = ins.iter().filter(|i| i.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 3, "{froms:?}");
    assert_eq!(froms[0], "FROM rust:1-bookworm AS flow-builder");
    assert!(
        ins.iter()
            .any(|i| i.contains("cargo build --release --locked"))
    );
    assert!(
        ins.iter()
            .any(|i| i == "COPY --from=flow-builder /usr/local/bin/flow /usr/local/bin/flow")
    );
    // The CA bundle is used in the build stage only: the runtime stage copies the venv, not it.
    assert!(ins.iter().any(|i| i == "COPY pip-ca.crt /tmp/pip-ca.crt"));
    let pip = ins.iter().find(|i| i.contains("pip install")).unwrap();
    assert!(
        pip.contains(
            "--index-url 'https://pypi.corp.example/simple' --extra-index-url 'https://mirror.example/simple' --cert /tmp/pip-ca.crt -r /tmp/requirements.txt"
        ),
        "{pip}"
    );
    let runtime = ins.iter().rposition(|i| i.starts_with("FROM ")).unwrap();
    assert!(!ins[runtime..].iter().any(|i| i.contains("pip-ca.crt")));
}

/// An output folder inside the flow's folder is not copied into itself: `flow build x.prompty`
/// copies the folder holding the `.prompty`, and `--out-dir` is often beside it.
#[test]
fn an_output_folder_inside_the_flows_folder_is_not_copied_into_itself() {
    let ctx = TestContext::new();
    ctx.write(
        "hello.prompty",
        "---\nname: hello\nmodel:\n  api: chat\n  configuration: {type: openai, connection: echo}\n---\nuser:\nhi\n",
    );
    let binary = env!("CARGO_BIN_EXE_flow");
    ctx.run(&[
        "build",
        "hello.prompty",
        "--out-dir",
        "image",
        "--binary",
        binary,
    ])
    .expect_code(0);
    let all = files(&ctx.root().join("image"));
    assert!(all.contains(&"flow/hello.prompty".to_string()), "{all:?}");
    assert!(!all.iter().any(|f| f.starts_with("flow/image")), "{all:?}");
}
