//! `flow deploy`: Kubernetes and compose manifests are generated and parsed back (structure and
//! required fields; `kubectl apply --dry-run=client` too when a cluster answers), the canary
//! split follows the weight, and the smoke test runs against a real `flow serve` on loopback.

use std::time::{Duration, Instant};

use crate::support::context::{TEST_KEY, TestContext};
use crate::support::server::Server;
use serde::Deserialize;
use serde_json::Value;

/// Every YAML document of a file, as JSON values.
fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).expect("a YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

fn by_kind<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in {docs:#?}"))
}

/// The labels `selector` asks for are all on `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .unwrap()
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
}

fn check_deployment(d: &Value, image: &str, replicas: u64, secret: &str) {
    assert_eq!(d["apiVersion"], "apps/v1");
    assert_eq!(d["spec"]["replicas"], replicas);
    let pod = &d["spec"]["template"];
    assert!(selects(
        &d["spec"]["selector"]["matchLabels"],
        &pod["metadata"]["labels"]
    ));
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["image"], image);
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "http");
    assert!(c["resources"]["requests"]["cpu"].is_string());
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["envFrom"][0]["secretRef"]["name"], secret);
    // The only inlined variable is the port the container serves on.
    assert_eq!(
        c["env"],
        serde_json::json!([{"name": "FLOW_SERVE_PORT", "value": "8080"}]),
        "no value is inlined: {c}"
    );
}

/// `kubectl apply --dry-run=client --validate=false` when kubectl is installed and a cluster
/// answers (client dry runs still need the API server's discovery).
fn kubectl_dry_run(ctx: &TestContext, file: &str) {
    let Ok(out) = std::process::Command::new("kubectl")
        .args(["apply", "--dry-run=client", "--validate=false", "-f", file])
        .current_dir(ctx.root())
        .output()
    else {
        eprintln!("kubectl is not installed: manifests checked by structure only");
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success()
        && (stderr.contains("connection refused")
            || stderr.contains("couldn't get current server API group list")
            || stderr.contains("no configuration has been provided"))
    {
        eprintln!(
            "kubectl has no cluster to discover kinds from: manifests checked by structure only"
        );
        return;
    }
    assert!(out.status.success(), "kubectl dry run failed: {stderr}");
}

#[test]
fn kubernetes_manifests_with_a_canary_split_the_traffic_by_replicas() {
    let ctx = TestContext::new();
    ctx.write(".env", &format!("OPEN_AI_CONNECTION_API_KEY={TEST_KEY}\n"));
    let run = ctx.run(&[
        "deploy",
        "--target",
        "kubernetes",
        "--image",
        "registry.example.com/chat:1.0",
        "--canary",
        "registry.example.com/chat:1.1",
        "--weight",
        "10",
        "--replicas",
        "9",
        "--name",
        "chat",
        "--namespace",
        "prod",
        "--hpa-max",
        "20",
        "--dry-run",
    ]);
    run.expect_code(0)
        .stdout_has("deploy/chat/kubernetes.yaml")
        .stdout_has("9 stable + 1 canary pods behind Service/chat → the canary gets 10.0%");
    let text = std::fs::read_to_string(ctx.root().join("deploy/chat/kubernetes.yaml")).unwrap();
    assert!(!text.contains(TEST_KEY));
    let docs = documents(&text);
    assert_eq!(docs.len(), 4);
    let stable = by_kind(&docs, "Deployment", "chat");
    let canary = by_kind(&docs, "Deployment", "chat-canary");
    check_deployment(stable, "registry.example.com/chat:1.0", 9, "chat-env");
    check_deployment(canary, "registry.example.com/chat:1.1", 1, "chat-env");
    for d in &docs {
        assert_eq!(d["metadata"]["namespace"], "prod");
    }
    // The two versions select only their own pods; the Service selects both.
    let stable_labels = &stable["spec"]["template"]["metadata"]["labels"];
    let canary_labels = &canary["spec"]["template"]["metadata"]["labels"];
    assert!(!selects(
        &stable["spec"]["selector"]["matchLabels"],
        canary_labels
    ));
    assert!(!selects(
        &canary["spec"]["selector"]["matchLabels"],
        stable_labels
    ));
    let service = by_kind(&docs, "Service", "chat");
    assert!(selects(&service["spec"]["selector"], stable_labels));
    assert!(selects(&service["spec"]["selector"], canary_labels));
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    let hpa = by_kind(&docs, "HorizontalPodAutoscaler", "chat");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "chat");
    assert_eq!(hpa["spec"]["maxReplicas"], 20);
    kubectl_dry_run(&ctx, "deploy/chat/kubernetes.yaml");

    // A weight the replicas cannot give exactly is reported, with the replicas that would.
    ctx.run(&[
        "deploy",
        "--target",
        "kubernetes",
        "--image",
        "a:1",
        "--canary",
        "a:2",
        "--weight",
        "10",
        "--replicas",
        "2",
        "--name",
        "small",
        "--output",
        "small",
    ])
    .expect_code(0)
    .stderr_has("`flow deploy --output DIR` is deprecated: use `--out-dir DIR`")
    .stdout_has("2 stable + 1 canary pods")
    .stdout_has("33.3%")
    .stdout_has("for exactly 10%: --replicas 9");
    let docs =
        documents(&std::fs::read_to_string(ctx.root().join("small/kubernetes.yaml")).unwrap());
    assert_eq!(docs.len(), 3);
    assert!(
        docs.iter()
            .all(|d| d["metadata"].get("namespace").is_none())
    );
}

#[test]
fn a_single_version_has_one_deployment_and_a_service() {
    let ctx = TestContext::new();
    ctx.copy_from_repo("flows/hello");
    ctx.run(&[
        "deploy",
        "--target",
        "kubernetes",
        "--image",
        "reg/hello:2",
        "--flow",
        "hello",
    ])
    .expect_code(0)
    .stdout_has("Deployment/hello, Service/hello");
    let docs = documents(
        &std::fs::read_to_string(ctx.root().join("deploy/hello/kubernetes.yaml")).unwrap(),
    );
    assert_eq!(docs.len(), 2);
    check_deployment(
        by_kind(&docs, "Deployment", "hello"),
        "reg/hello:2",
        2,
        "hello-env",
    );
    // Bad arguments are usage errors.
    ctx.run(&["deploy", "--target", "kubernetes"])
        .expect_code(2)
        .stderr_has("--image");
    ctx.run(&["deploy", "--image", "x"])
        .expect_code(2)
        .stderr_has("--target");
    ctx.run(&[
        "deploy",
        "--target",
        "kubernetes",
        "--image",
        "x",
        "--name",
        "Bad_Name",
    ])
    .expect_code(2)
    .stderr_has("bad-name");
    ctx.run(&[
        "deploy",
        "--target",
        "kubernetes",
        "--image",
        "x",
        "--canary",
        "y",
        "--weight",
        "100",
    ])
    .expect_code(2);
    ctx.run(&[
        "deploy",
        "--target",
        "kubernetes",
        "--image",
        "x",
        "--apply",
    ])
    .expect_code(2)
    .stderr_has("--flow");
}

#[test]
fn apply_without_a_cluster_fails_as_an_unusable_endpoint() {
    let ctx = TestContext::new();
    ctx.copy_from_repo("flows/hello");
    let has_kubectl = std::process::Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok_and(|o| o.status.success());
    let out = ctx
        .cmd()
        .args([
            "deploy",
            "--target",
            "kubernetes",
            "--image",
            "reg/hello:2",
            "--flow",
            "hello",
            "--apply",
            "--smoke-timeout",
            "5",
        ])
        .env("KUBECONFIG", ctx.root().join("no-such-kubeconfig"))
        .env(
            "PATH",
            if has_kubectl {
                std::env::var("PATH").unwrap()
            } else {
                String::new()
            },
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The manifests were written before anything was applied.
    assert!(ctx.root().join("deploy/hello/kubernetes.yaml").is_file());
    if has_kubectl {
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(
            stderr.contains("$ kubectl apply -f deploy/hello/kubernetes.yaml"),
            "{stderr}"
        );
        assert!(stderr.contains("kubectl apply failed"), "{stderr}");
    } else {
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("cannot run kubectl"), "{stderr}");
    }
}

#[test]
fn a_compose_file_references_the_env_file_and_checks_health() {
    let ctx = TestContext::new();
    ctx.write(".env", &format!("OPEN_AI_CONNECTION_API_KEY={TEST_KEY}\n"));
    ctx.run(&[
        "deploy",
        "--target",
        "compose",
        "--image",
        "reg/chat:1",
        "--name",
        "chat",
        "--port",
        "9090",
    ])
    .expect_code(0)
    .stdout_has("deploy/chat/compose.yaml");
    let text = std::fs::read_to_string(ctx.root().join("deploy/chat/compose.yaml")).unwrap();
    assert!(!text.contains(TEST_KEY));
    let doc: Value = serde_yaml::from_str(&text).unwrap();
    let s = &doc["services"]["chat"];
    assert_eq!(s["image"], "reg/chat:1");
    assert_eq!(s["ports"][0], "9090:8080");
    // Compose resolves env_file beside the compose file: ./.env seen from deploy/chat/.
    assert_eq!(s["env_file"][0], "../../.env");
    assert_eq!(s["environment"]["FLOW_SERVE_PORT"], "8080");
    assert_eq!(s["read_only"], true);
    assert_eq!(s["stop_signal"], "SIGTERM");
    let test: Vec<&str> = s["healthcheck"]["test"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        test,
        [
            "CMD",
            "/usr/local/bin/flow",
            "probe",
            "http://127.0.0.1:8080/ready"
        ]
    );
    ctx.run(&[
        "deploy", "--target", "compose", "--image", "a", "--canary", "b",
    ])
    .expect_code(2)
    .stderr_has("use --target kubernetes");
    // An image built with --port 9000, an env file elsewhere.
    ctx.run(&[
        "deploy",
        "--target",
        "compose",
        "--image",
        "reg/chat:1",
        "--name",
        "chat",
        "--container-port",
        "9000",
        "--secret",
        "config/prod.env",
        "--out-dir",
        "out",
    ])
    .expect_code(0);
    let doc: Value = serde_yaml::from_str(
        &std::fs::read_to_string(ctx.root().join("out/compose.yaml")).unwrap(),
    )
    .unwrap();
    let s = &doc["services"]["chat"];
    assert_eq!(s["ports"][0], "8080:9000");
    assert_eq!(s["env_file"][0], "../config/prod.env");
    assert_eq!(s["environment"]["FLOW_SERVE_PORT"], "9000");
    assert_eq!(s["healthcheck"]["test"][3], "http://127.0.0.1:9000/ready");
}

#[test]
fn the_smoke_test_passes_against_the_built_flow_and_fails_on_a_wrong_answer() {
    let ctx = TestContext::with_mock();
    ctx.copy_from_repo("flows/classification");
    ctx.run(&[
        "build",
        "classification",
        "--out-dir",
        "image",
        "--binary",
        env!("CARGO_BIN_EXE_flow"),
    ])
    .expect_code(0);
    ctx.mock().reply_when("charged twice", "billing");
    let server = Server::ready(&ctx, "image/flow", &[], &[]);
    ctx.run(&["deploy", "smoke", "--url", &server.url, "--flow", "image"])
        .expect_code(0)
        .stdout_has("smoke test passed")
        .stdout_has("category, raw");

    // A flow whose outputs the server does not return fails the smoke test (exit 1).
    ctx.flow(
        "other",
        &[
            (
                "flow.dag.yaml",
                "inputs:\n  text:\n    type: string\n    default: hi\noutputs:\n  summary:\n    type: string\n    reference: ${say.output}\nnodes:\n- {name: say, type: prompt, source: {type: code, path: say.jinja2}, inputs: {text: '${inputs.text}'}}\n",
            ),
            ("say.jinja2", "{{text}}"),
        ],
    );
    ctx.run(&[
        "deploy",
        "smoke",
        "--url",
        &server.url,
        "--flow",
        "other",
        "--sample",
        "image/sample-request.json",
    ])
    .expect_code(1)
    .stderr_has("without the flow's output(s) [\"summary\"]");

    // A request the flow rejects (400) fails it too.
    ctx.write("bad.json", "{\"nope\": 1}");
    ctx.run(&[
        "deploy",
        "smoke",
        "--url",
        &server.url,
        "--flow",
        "image",
        "--sample",
        "bad.json",
    ])
    .expect_code(1)
    .stderr_has("answered 400");
}

#[test]
fn the_smoke_test_waits_for_ready_and_gives_up_at_its_timeout() {
    let ctx = TestContext::with_mock();
    ctx.copy_from_repo("flows/hello");
    // Nothing listens: it polls /ready until its timeout, then fails as unusable (exit 3).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    ctx.run(&[
        "deploy",
        "smoke",
        "--url",
        &url,
        "--flow",
        "hello",
        "--smoke-timeout",
        "1.5",
    ])
    .expect_code(3)
    .stderr_has("/ready did not answer 200");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1400), "{waited:?}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");

    // Started before the server: it waits on /ready (no fixed sleep) and then passes.
    let mut smoke = ctx
        .std_cmd()
        .args([
            "deploy",
            "smoke",
            "--url",
            &url,
            "--flow",
            "hello",
            "--smoke-timeout",
            "30",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        smoke.try_wait().unwrap().is_none(),
        "the smoke test did not wait"
    );
    let mut serve = ctx
        .std_cmd()
        .args(["serve", "hello", "--offline", "--port", &port.to_string()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = smoke.wait_with_output().unwrap();
    let _ = serve.kill();
    let _ = serve.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("smoke test passed"), "{stdout}");
}

/// A stand-in `kubectl` on PATH: logs its arguments; `rollout status` fails when
/// `FAKE_ROLLOUT_FAILS` is set; `port-forward` "forwards" to the `flow serve` at `FAKE_PORT` and
/// prints a line per second afterwards, as kubectl does per connection.
#[cfg(unix)]
fn fake_kubectl(ctx: &TestContext) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = ctx.root().join("fakebin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("kubectl");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"$*\" >> \"$FAKE_LOG\"\ncase \"$*\" in\n  *rollout*) [ -n \"$FAKE_ROLLOUT_FAILS\" ] && exit 1; exit 0 ;;\n  *port-forward*)\n    echo \"Forwarding from 127.0.0.1:$FAKE_PORT -> 8080\"\n    echo \"Forwarding from [::1]:$FAKE_PORT -> 8080\"\n    while true; do echo \"Handling connection for $FAKE_PORT\"; sleep 0.2; done ;;\n  *) exit 0 ;;\nesac\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

#[cfg(unix)]
#[test]
fn apply_runs_kubectl_waits_for_the_rollout_and_smoke_tests_the_new_version() {
    let ctx = TestContext::with_mock();
    ctx.copy_from_repo("flows/classification");
    ctx.run(&[
        "build",
        "classification",
        "--out-dir",
        "image",
        "--binary",
        env!("CARGO_BIN_EXE_flow"),
    ])
    .expect_code(0);
    ctx.mock().reply_when("charged twice", "billing");
    let server = Server::ready(&ctx, "image/flow", &[], &[]);
    let port = server.url.rsplit(':').next().unwrap().to_string();
    let bin = fake_kubectl(&ctx);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let log = ctx.root().join("kubectl.log");
    let deploy = |extra: &[(&str, &str)]| {
        let mut cmd = ctx.cmd();
        cmd.args([
            "deploy",
            "--target",
            "kubernetes",
            "--image",
            "reg/cls:1",
            "--canary",
            "reg/cls:2",
            "--flow",
            "image",
            "--name",
            "cls",
            "--namespace",
            "prod",
            "--apply",
            "--smoke-timeout",
            "20",
        ])
        .env("PATH", &path)
        .env("FAKE_LOG", &log)
        .env("FAKE_PORT", &port);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let out = deploy(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("smoke test passed"), "{stdout}");
    let calls = std::fs::read_to_string(&log).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(
        calls,
        [
            "--namespace prod apply -f deploy/cls/kubernetes.yaml",
            "--namespace prod rollout status deployment/cls --timeout=20s",
            "--namespace prod rollout status deployment/cls-canary --timeout=20s",
            "--namespace prod port-forward deployment/cls-canary :8080",
        ]
    );

    // A rollout that does not finish fails the deploy before any smoke test.
    std::fs::remove_file(&log).unwrap();
    let out = deploy(&[("FAKE_ROLLOUT_FAILS", "1")]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(!calls.contains("port-forward"), "{calls}");
}

#[cfg(unix)]
#[test]
fn compose_apply_starts_the_service_and_smoke_tests_it() {
    use std::os::unix::fs::PermissionsExt;
    let ctx = TestContext::with_mock();
    ctx.copy_from_repo("flows/classification");
    ctx.mock().reply_when("charged twice", "billing");
    let server = Server::ready(&ctx, "classification", &[], &[]);
    let port = server.url.rsplit(':').next().unwrap().to_string();
    // A stand-in Compose v2 `docker`: logs its arguments and, like compose, resolves the
    // env_file against the compose file's folder (and fails when it is not there); the
    // "started" service is the flow serve above.
    let bin = ctx.root().join("fakebin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("docker");
    std::fs::write(
        &script,
        r#"#!/bin/sh
echo "$*" >> "$FAKE_LOG"
[ "$FAKE_COMPOSE_V1" = 1 ] && [ "$2" = version ] && exit 1
[ "$2" = version ] && { echo 2.29.7; exit 0; }
env_file=$(grep -A1 '^ *env_file:' "$3" | tail -1 | sed 's/^ *- //')
[ -f "$(dirname "$3")/$env_file" ] || { echo "env file $(dirname "$3")/$env_file not found" >&2; exit 1; }
exit 0
"#,
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let v1 = bin.join("docker-compose");
    std::fs::write(&v1, "#!/bin/sh\necho 1.29.2\n").unwrap();
    std::fs::set_permissions(&v1, std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = ctx.root().join("docker.log");
    let deploy = |envs: &[(&str, &str)]| {
        let mut cmd = ctx.cmd();
        cmd.args([
            "deploy",
            "--target",
            "compose",
            "--image",
            "reg/cls:1",
            "--flow",
            "classification",
            "--port",
            &port,
            "--apply",
            "--smoke-timeout",
            "20",
        ])
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .env("FAKE_LOG", &log);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    // No env file: refused before compose runs.
    let out = deploy(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the env file .env does not exist"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!log.exists());
    ctx.write(".env", &format!("OPEN_AI_CONNECTION_API_KEY={TEST_KEY}\n"));
    // Only Compose v1: a clear error, nothing started.
    let out = deploy(&[("FAKE_COMPOSE_V1", "1")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("only Compose v1 was found (docker-compose 1.29.2)")
            && stderr.contains("needs Compose v2"),
        "{stderr}"
    );
    std::fs::remove_file(&log).unwrap();
    let out = deploy(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("smoke test passed"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap().trim(),
        "compose version --short\ncompose -f deploy/classification/compose.yaml up -d"
    );
}
