//! Real images: `flow build` a context, `docker build` it on a real engine (started by
//! `scripts/docker-ci.sh`, with stand-in base images made from Debian packages), run the image
//! against the loopback mock LLM and check what a deployment relies on — the routes, the
//! HEALTHCHECK going healthy, the non-root user, a read-only root filesystem, a graceful stop
//! that finishes the request in flight, and no secret in any layer (`docker save`, searched for a
//! planted canary that must be found and planted secrets that must not).
//!
//! One test per kind of image: an LLM-only flow (the binary and its libraries on `scratch`) and
//! a flow with Python nodes (a virtualenv with a package from a local index, no pip).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::context::{TEST_KEY, TestContext};
use crate::support::docker::{Container, Docker};
use crate::support::mock_llm::MockReply;
use crate::support::server::{Answer, try_request};

/// A file of the flow that is meant to be in the image: finding it proves the search sees the
/// layers' content.
const CANARY: &str = "flow-image-canary-5b1f0c2e7d";
/// A key in a `.env` inside the flow directory: must reach no layer.
const PLANTED_KEY: &str = "sk-planted-in-docker-image-test-77aa1c";

/// A free loopback port (the container uses the host's network).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(url: &str) -> Answer {
    try_request("GET", url, &[], None).unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// Poll `/ready` until it answers 200.
fn wait_ready(base: &str, container: &Container) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if try_request("GET", &format!("{base}/ready"), &[], None).is_ok_and(|a| a.status == 200) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the container never became ready:\n{}", container.logs());
}

/// Whether `needle` occurs in `haystack` (the regex crate's literal search: this test code is
/// unoptimised, and images are hundreds of megabytes).
fn contains(haystack: &[u8], needle: &str) -> bool {
    regex::bytes::Regex::new(&regex::escape(needle))
        .unwrap()
        .is_match(haystack)
}

/// Plant the canary and the secrets in a flow directory `flow` of the project.
fn plant(ctx: &TestContext, flow: &str) {
    ctx.write(&format!("{flow}/canary.txt"), &format!("{CANARY}\n"));
    ctx.write(
        &format!("{flow}/.env"),
        &format!("OPEN_AI_CONNECTION_API_KEY={PLANTED_KEY}\n"),
    );
    ctx.write(
        &format!("{flow}/notes.md"),
        &format!("the key is {TEST_KEY}\n"),
    );
    // The key flow build sees (and so recognises in files).
    ctx.write(".env", &format!("OPEN_AI_CONNECTION_API_KEY={TEST_KEY}\n"));
}

/// `docker save` the image and search every byte of it (the layers are uncompressed tars inside
/// the archive, the image config is JSON beside them).
fn check_no_secret(docker: &Docker, ctx: &TestContext, tag: &str) {
    let archive = ctx.root().join("image.tar");
    docker.ok(&["save", "-o", &archive.to_string_lossy(), tag]);
    let bytes = std::fs::read(&archive).unwrap();
    assert!(
        !bytes.starts_with(&[0x1f, 0x8b]),
        "the archive is compressed: the search would see nothing"
    );
    assert!(
        contains(&bytes, CANARY),
        "the canary file was not found in the saved image: the search does not see the layers"
    );
    assert!(
        !contains(&bytes, PLANTED_KEY),
        "the flow's .env reached the image"
    );
    assert!(
        !contains(&bytes, TEST_KEY),
        "the connection key reached the image"
    );
    std::fs::remove_file(&archive).unwrap();
}

/// Run the image with the mock as its endpoint, on a free port given by FLOW_SERVE_PORT (the
/// image's health check follows it), read-only, with the health check every second.
fn start<'a>(
    docker: &'a Docker,
    ctx: &TestContext,
    tag: &str,
    port: u16,
) -> (Container<'a>, String) {
    let env_port = format!("FLOW_SERVE_PORT={port}");
    let key = format!("OPEN_AI_CONNECTION_API_KEY={TEST_KEY}");
    let base = format!("OPEN_AI_CONNECTION_API_BASE={}/v1", ctx.mock().url());
    let container = docker.run(
        &[
            "--read-only",
            "--tmpfs",
            "/tmp",
            "--health-interval",
            "1s",
            "--health-start-period",
            "30s",
            "-e",
            &env_port,
            "-e",
            &key,
            "-e",
            &base,
        ],
        tag,
        &[],
    );
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(&url, &container);
    (container, url)
}

/// The checks both images share: routes, health, user, read-only root, graceful stop.
fn check_running(docker: &Docker, ctx: &TestContext, tag: &str, sample: &str, expect: &str) {
    let port = free_port();
    let (container, url) = start(docker, ctx, tag, port);

    // Routes.
    let health = get(&format!("{url}/health"));
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(get(&format!("{url}/ready")).status, 200);
    let a = try_request("POST", &format!("{url}/score"), &[], Some(sample)).unwrap();
    assert_eq!(a.status, 200, "{}\n{}", a.body, container.logs());
    assert!(a.body.contains(expect), "{}", a.body);
    let metrics = get(&format!("{url}/metrics"));
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.contains("flow_requests_total"),
        "{}",
        metrics.body
    );
    // The request reached the mock with the key given at run time.
    let req = ctx.mock().requests().pop().expect("a model request");
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {TEST_KEY}").as_str())
    );

    // The image's own HEALTHCHECK (its command, at the port FLOW_SERVE_PORT says) goes healthy.
    container.wait_health("healthy", Duration::from_secs(60));

    // Non-root: the image says so, and the server process runs as uid and gid 10001.
    assert_eq!(container.inspect("{{.Config.User}}"), "10001:10001");
    let pid = container.inspect("{{.State.Pid}}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let ids = |field: &str| -> Vec<String> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .unwrap()
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(ids("Uid:"), ["10001"; 4], "{status}");
    assert_eq!(ids("Gid:"), ["10001"; 4], "{status}");

    // Read-only root: writing under /app fails (flow init is the only writer the image has
    // without a shell); /tmp is the writable tmpfs.
    assert_eq!(container.inspect("{{.HostConfig.ReadonlyRootfs}}"), "true");
    let write = docker.output(&[
        "exec",
        &container.id,
        "/usr/local/bin/flow",
        "init",
        "/app/x",
    ]);
    assert!(!write.status.success());
    assert!(
        String::from_utf8_lossy(&write.stderr).contains("Read-only file system"),
        "{}",
        String::from_utf8_lossy(&write.stderr)
    );

    // Graceful stop: a request in flight when `docker stop` sends SIGTERM is answered, then the
    // server exits 0.
    ctx.mock().push(MockReply::Delay(
        Duration::from_secs(3),
        Box::new(MockReply::text("the slow answer")),
    ));
    let before = ctx.mock().request_count();
    let score_url = format!("{url}/score");
    let body = sample.to_string();
    let in_flight =
        std::thread::spawn(move || try_request("POST", &score_url, &[], Some(&body)).unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while ctx.mock().request_count() == before {
        assert!(
            Instant::now() < deadline,
            "the request never reached the mock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopping = Instant::now();
    docker.ok(&["stop", "-t", "30", &container.id]);
    let answer = in_flight.join().unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer.body.to_lowercase().contains("slow answer"),
        "{}",
        answer.body
    );
    assert!(
        stopping.elapsed() < Duration::from_secs(25),
        "docker stop waited for the kill"
    );
    assert_eq!(container.inspect("{{.State.ExitCode}}"), "0");
    let logs = container.logs();
    assert!(
        logs.contains("SIGTERM: finishing 1 request(s) in flight"),
        "{logs}"
    );
}

#[test]
fn an_llm_only_flow_image_runs_the_copied_binary_on_scratch() {
    let docker = Docker::get();
    let ctx = TestContext::with_mock();
    ctx.copy_from_repo("flows/chat");
    plant(&ctx, "chat");
    // The default: the flow binary running the build is copied (no compile in docker build).
    ctx.run(&["build", "chat", "--out-dir", "image"])
        .expect_code(0)
        .stdout_has("binary: copied (linux/")
        .stderr_has("left out .env:")
        .stderr_has("left out notes.md: it holds the value of OPEN_AI_CONNECTION_API_KEY");
    let dockerfile = std::fs::read_to_string(ctx.root().join("image/Dockerfile")).unwrap();
    assert!(!dockerfile.contains("syntax="), "{dockerfile}");

    let tag = format!("flow-it-chat-{}", std::process::id());
    // With the bases present, the build needs no network.
    let (image, took) = docker.build(&ctx.root().join("image"), &tag, "none");
    let size: u64 = image.inspect("{{.Size}}").parse().unwrap();
    let binary = std::fs::metadata(env!("CARGO_BIN_EXE_flow")).unwrap().len();
    eprintln!(
        "llm-only image: {:.1} MB (binary {:.1} MB), built in {:.1} s",
        size as f64 / 1e6,
        binary as f64 / 1e6,
        took.as_secs_f64()
    );
    // Nothing but the binary, the flow and a few libraries (glibc, libgcc): no distribution.
    assert!(
        size < binary + 8_000_000,
        "the image is {size} bytes for a {binary}-byte binary"
    );
    // No shell in the runtime.
    let shell = docker.output(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "/bin/sh",
        &tag,
        "-c",
        "true",
    ]);
    assert!(!shell.status.success());

    ctx.mock()
        .reply_when("What is a prompt flow?", "a DAG of nodes");
    let sample = std::fs::read_to_string(ctx.root().join("image/sample-request.json")).unwrap();
    check_running(&docker, &ctx, &tag, &sample, "a DAG of nodes");
    check_no_secret(&docker, &ctx, &tag);
}

/// A wheel of a tiny package, by hand (a zip with the module and its metadata).
fn write_wheel(dir: &Path) {
    let script = r#"
import sys, zipfile, hashlib, base64
out = sys.argv[1]
files = {
    "shout_pkg/__init__.py": "def shout(text):\n    return str(text).upper() + '!'\n",
    "shout_pkg-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: shout-pkg\nVersion: 0.1\n",
    "shout_pkg-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
with zipfile.ZipFile(out, "w") as z:
    for name, text in files.items():
        data = text.encode()
        z.writestr(name, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("shout_pkg-0.1.dist-info/RECORD,,")
    z.writestr("shout_pkg-0.1.dist-info/RECORD", "\n".join(record) + "\n")
"#;
    std::fs::create_dir_all(dir).unwrap();
    let status = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(dir.join("shout_pkg-0.1-py3-none-any.whl"))
        .status()
        .expect("python3");
    assert!(status.success());
}

/// A package index on loopback: `python3 -m http.server` over `simple/<project>/` directories
/// (its directory listings are PEP 503 pages). Killed on drop.
struct Index(std::process::Child);

impl Drop for Index {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_index(root: &Path) -> (Index, String) {
    write_wheel(&root.join("simple/shout-pkg"));
    let port = free_port();
    let child = std::process::Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1"])
        .arg(port.to_string())
        .current_dir(root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    let index = Index(child);
    let url = format!("http://127.0.0.1:{port}/simple/");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !try_request("GET", &url, &[], None).is_ok_and(|a| a.status == 200) {
        assert!(Instant::now() < deadline, "the package index did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (index, url)
}

#[test]
fn a_python_flow_image_has_its_packages_and_no_pip() {
    let docker = Docker::get();
    let ctx = TestContext::with_mock();
    // An LLM node, then a Python node using a package from the flow's requirements.
    ctx.flow(
        "shouty",
        &[
            (
                "flow.dag.yaml",
                "inputs:\n  question:\n    type: string\n    default: say hi\noutputs:\n  answer:\n    type: string\n    reference: ${shout.output}\nnodes:\n- name: ask\n  type: llm\n  source:\n    type: code\n    path: ask.jinja2\n  inputs:\n    model: gpt-4o-mini\n    question: ${inputs.question}\n  connection: open_ai_connection\n  api: chat\n- name: shout\n  type: python\n  source:\n    type: code\n    path: shout.py\n  inputs:\n    text: ${ask.output}\n",
            ),
            ("ask.jinja2", "user:\n{{question}}\n"),
            (
                "shout.py",
                "from promptflow.core import tool\nfrom shout_pkg import shout\n\n\n@tool\ndef run(text: str) -> str:\n    return shout(text)\n",
            ),
            ("requirements.txt", "shout-pkg==0.1\n"),
        ],
    );
    plant(&ctx, "shouty");
    let (_index, index_url) = start_index(&ctx.root().join("index"));
    ctx.run(&[
        "build",
        "shouty",
        "--out-dir",
        "image",
        "--pip-index-url",
        &index_url,
    ])
    .expect_code(0)
    .stdout_has("with Python for the flow's Python nodes")
    .stderr_has("left out .env:");

    let tag = format!("flow-it-shouty-{}", std::process::id());
    // The host's network: pip reaches the index on loopback.
    let (image, took) = docker.build(&ctx.root().join("image"), &tag, "host");
    let size: u64 = image.inspect("{{.Size}}").parse().unwrap();
    eprintln!(
        "python image: {:.1} MB, built in {:.1} s",
        size as f64 / 1e6,
        took.as_secs_f64()
    );
    // The package came from the index; pip is gone from the venv and from the base.
    let python = |code: &str| {
        docker.output(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "/opt/venv/bin/python",
            &tag,
            "-c",
            code,
        ])
    };
    let ok = python("import shout_pkg; print(shout_pkg.shout('x'))");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "X!");
    let pip = python("import pip");
    assert!(!pip.status.success(), "pip is in the image's venv");
    let pip = docker.output(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "python3",
        &tag,
        "-m",
        "pip",
        "--version",
    ]);
    assert!(!pip.status.success(), "pip is in the image's Python");
    // Nor can ensurepip bring it back: no pip wheel is left.
    let wheels = python("import glob; print(glob.glob('/usr/**/pip-*.whl', recursive=True))");
    assert_eq!(
        String::from_utf8_lossy(&wheels.stdout).trim(),
        "[]",
        "{}",
        String::from_utf8_lossy(&wheels.stderr)
    );
    // The user the image runs as exists, with its group.
    let who = docker.output(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "python3",
        &tag,
        "-c",
        "import os, pwd, grp; print(pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name)",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&who.stdout).trim(),
        "flow flow",
        "{}",
        String::from_utf8_lossy(&who.stderr)
    );

    ctx.mock().reply_when("say hi", "hi there");
    let sample = std::fs::read_to_string(ctx.root().join("image/sample-request.json")).unwrap();
    check_running(&docker, &ctx, &tag, &sample, "HI THERE!");
    check_no_secret(&docker, &ctx, &tag);
}
