//! `flow deploy --target kubernetes-job`: the Indexed Job and merge Job are generated and parsed
//! back (structure, required fields, the pods' command line, the concurrency division, each
//! delivery; `kubectl apply --dry-run=client` too when a cluster answers), and `--apply` drives a
//! stand-in kubectl through a Job that completes and one that fails; the pods' exact command
//! lines, run by the real binary for every index against a mock LLM and S3 on loopback, then the
//! merge Job's, give the run one process gives.

use std::path::Path;

use crate::support::batch::shards::{
    LINES, answers_by_variant, assert_same_run, classification_experiment, comparable_summary,
    shard_flow,
};
use crate::support::batch::{json_file, outputs};
use crate::support::context::{TEST_KEY, TestContext};
use crate::support::s3::S3Server;
use serde::Deserialize;
use serde_json::Value;

/// Every YAML document of a file, as JSON values.
fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).expect("a YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

fn read_docs(ctx: &TestContext, rel: &str) -> Vec<Value> {
    documents(&std::fs::read_to_string(ctx.root().join(rel)).unwrap())
}

fn by_kind<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in {docs:#?}"))
}

/// The container's command line: command then args.
fn command_line(job: &Value) -> Vec<String> {
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    c["command"]
        .as_array()
        .unwrap()
        .iter()
        .chain(c["args"].as_array().unwrap())
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// What every Job of ours has: a batch/v1 Job, a pod that is not restarted by the kubelet, the
/// connection and storage Secrets by reference, no value inlined, a writable working directory.
fn check_pod(job: &Value, image: &str, secret: &str, storage: &str) {
    assert_eq!(job["apiVersion"], "batch/v1");
    assert_eq!(job["kind"], "Job");
    assert!(job["metadata"]["name"].is_string());
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = &pod["containers"][0];
    assert_eq!(c["name"], "flow");
    assert_eq!(c["image"], image);
    assert_eq!(c["envFrom"][0]["secretRef"]["name"], secret);
    assert_eq!(c["envFrom"][1]["secretRef"]["name"], storage);
    assert!(c.get("env").is_none(), "no value is inlined: {c}");
    assert_eq!(c["workingDir"], "/work");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert!(
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == "/work")
    );
}

/// An Indexed Job of `completions` indexes, `parallelism` at once, with the default retry
/// budget per index, no failed index tolerated, exit 2 failing its index at once and pods
/// disrupted by the cluster not counted.
fn check_indexed(job: &Value, completions: u32, parallelism: u32) {
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    assert_eq!(spec["completions"], completions);
    assert_eq!(spec["parallelism"], parallelism);
    assert_eq!(spec["backoffLimitPerIndex"], 3);
    assert_eq!(spec["maxFailedIndexes"], 0);
    let rules = spec["podFailurePolicy"]["rules"].as_array().unwrap();
    let exit2 = rules
        .iter()
        .find(|r| r["onExitCodes"]["values"] == serde_json::json!([2]))
        .expect("a rule for exit 2");
    assert_eq!(exit2["action"], "FailIndex");
    assert_eq!(exit2["onExitCodes"]["operator"], "In");
    assert_eq!(exit2["onExitCodes"]["containerName"], "flow");
    assert!(
        rules
            .iter()
            .any(|r| r["action"] == "Ignore"
                && r["onPodConditions"][0]["type"] == "DisruptionTarget")
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
fn an_indexed_job_runs_one_shard_per_index_and_a_merge_job_merges_them() {
    let ctx = TestContext::new();
    ctx.copy_from_repo("flows/classification");
    ctx.write("classification/data.jsonl", "{\"text\": \"hi\"}\n");
    let run = ctx.run(&[
        "deploy",
        "--target",
        "kubernetes-job",
        "--image",
        "reg/cls:1",
        "--flow",
        "classification",
        "--data",
        "classification/data.jsonl",
        "--shards",
        "8",
        "--parallelism",
        "3",
        "--upload",
        "s3://bucket/runs/",
        "--namespace",
        "batch",
    ]);
    run.expect_code(0)
        .stdout_has("Job/classification")
        .stdout_has("Job/classification-merge")
        // 32 lines in flight (the default) over 3 pods at once: 11 each.
        .stdout_has("3 at once, 11 lines in flight each")
        .stderr_has("kubectl --namespace batch wait --for=condition=complete job/classification");
    let docs = read_docs(&ctx, "deploy/classification/job.yaml");
    assert_eq!(docs.len(), 1, "image delivery: no ConfigMap");
    let job = by_kind(&docs, "Job", "classification");
    assert_eq!(job["metadata"]["namespace"], "batch");
    check_pod(
        job,
        "reg/cls:1",
        "classification-env",
        "classification-storage",
    );
    // Without --storage-secret the storage Secret is optional (workload identity needs none).
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["envFrom"][1]["secretRef"]["optional"],
        true
    );
    check_indexed(job, 8, 3);
    // The flow is where `flow build` puts it; the data file under it likewise.
    assert_eq!(
        command_line(job),
        strings(&[
            "/usr/local/bin/flow",
            "run",
            "/app/flow",
            "--data",
            "/app/flow/data.jsonl",
            "--shards",
            "8",
            "--name",
            "classification",
            "--upload",
            "s3://bucket/runs/classification-shards",
            "--concurrency",
            "11",
        ])
    );

    let merge_docs = read_docs(&ctx, "deploy/classification/merge-job.yaml");
    let merge = by_kind(&merge_docs, "Job", "classification-merge");
    check_pod(
        merge,
        "reg/cls:1",
        "classification-env",
        "classification-storage",
    );
    assert!(merge["spec"].get("completionMode").is_none());
    assert_eq!(merge["spec"]["completions"], 1);
    assert_eq!(
        command_line(merge),
        strings(&[
            "/usr/local/bin/flow",
            "runs",
            "merge",
            "s3://bucket/runs/classification-shards",
            "--name",
            "classification",
            "--to",
            "s3://bucket/runs",
        ])
    );
    kubectl_dry_run(&ctx, "deploy/classification/job.yaml");
    kubectl_dry_run(&ctx, "deploy/classification/merge-job.yaml");

    // A per-shard limit replaces the division; parallelism defaults to the shards; a named
    // storage Secret is required, not optional.
    ctx.run(&[
        "deploy",
        "--target",
        "kubernetes-job",
        "--image",
        "reg/cls:1",
        "--name",
        "nightly",
        "--data",
        "/data/big.jsonl",
        "--shards",
        "4",
        "--concurrency",
        "10",
        "--upload",
        "gs://b/r",
        "--storage-secret",
        "gcs-creds",
        "--secret",
        "llm-keys",
        "--retries-per-index",
        "5",
        "--max-failed-indexes",
        "1",
        "--allow-failures",
    ])
    .expect_code(0)
    .stdout_has("4 at once, 3 lines in flight each");
    let docs = read_docs(&ctx, "deploy/nightly/job.yaml");
    let job = by_kind(&docs, "Job", "nightly");
    check_pod(job, "reg/cls:1", "llm-keys", "gcs-creds");
    assert!(
        job["spec"]["template"]["spec"]["containers"][0]["envFrom"][1]["secretRef"]
            .get("optional")
            .is_none()
    );
    assert_eq!(job["spec"]["parallelism"], 4);
    assert_eq!(job["spec"]["backoffLimitPerIndex"], 5);
    assert_eq!(job["spec"]["maxFailedIndexes"], 1);
    let line = command_line(job);
    assert_eq!(line[4], "/data/big.jsonl");
    assert_eq!(line[12], "3", "ceil(10 / 4)");
    assert_eq!(line.last().unwrap(), "--allow-failures");
    let merge = read_docs(&ctx, "deploy/nightly/merge-job.yaml");
    assert_eq!(command_line(&merge[0]).last().unwrap(), "--allow-failures");
    ctx.run(&[
        "deploy",
        "--target",
        "kubernetes-job",
        "--image",
        "reg/cls:1",
        "--name",
        "nightly",
        "--data",
        "/data/big.jsonl",
        "--shards",
        "4",
        "--per-shard-concurrency",
        "16",
        "--upload",
        "gs://b/r",
    ])
    .expect_code(0)
    .stdout_has("16 lines in flight each");
}

#[test]
fn a_configmap_carries_the_flow_and_the_data_within_the_size_limit() {
    let ctx = TestContext::new();
    ctx.copy_from_repo("flows/classification");
    ctx.write(".env", &format!("OPEN_AI_CONNECTION_API_KEY={TEST_KEY}\n"));
    ctx.write(
        "classification/.env",
        &format!("OPEN_AI_CONNECTION_API_KEY={TEST_KEY}\n"),
    );
    ctx.write("classification/lib/util.py", "X = 1\n");
    let data = "{\"text\": \"charged twice\"}\n{\"text\": \"app crashes\"}\n";
    ctx.write("lines.jsonl", data);
    let args = |data_file: &str| {
        vec![
            "deploy".to_string(),
            "--target".into(),
            "kubernetes-job".into(),
            "--image".into(),
            "reg/cls:1".into(),
            "--flow".into(),
            "classification".into(),
            "--deliver".into(),
            "configmap".into(),
            "--data".into(),
            data_file.into(),
            "--shards".into(),
            "2".into(),
            "--upload".into(),
            "az://c/runs".into(),
            "--variant".into(),
            "${classify.variant_1}".into(),
        ]
    };
    let a = args("lines.jsonl");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    ctx.run(&a)
        .expect_code(0)
        .stdout_has("ConfigMap/classification-flow, Job/classification");
    let docs = read_docs(&ctx, "deploy/classification/job.yaml");
    let cm = by_kind(&docs, "ConfigMap", "classification-flow");
    assert_eq!(cm["apiVersion"], "v1");
    let cm_data = cm["data"].as_object().unwrap();
    assert_eq!(cm_data["data.lines.jsonl"], data);
    assert_eq!(cm_data["flow.normalize.py"], {
        std::fs::read_to_string(ctx.root().join("classification/normalize.py")).unwrap()
    });
    assert_eq!(cm_data["flow.lib__util.py"], "X = 1\n");
    // The variant is applied in the ConfigMap's copy, as `flow build --variant` does.
    let dag = cm_data["flow.flow.dag.yaml"].as_str().unwrap();
    assert!(!dag.contains("node_variants"), "{dag}");
    assert!(dag.contains("classify_few_shot.jinja2"), "{dag}");
    // No secret goes into it.
    assert!(
        !cm_data.keys().any(|k| k.contains(".env")),
        "{:?}",
        cm_data.keys()
    );
    assert!(!serde_json::to_string(cm).unwrap().contains(TEST_KEY));
    for k in cm_data.keys() {
        assert!(
            k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)),
            "{k} is not a ConfigMap key"
        );
    }
    let job = by_kind(&docs, "Job", "classification");
    let pod = &job["spec"]["template"]["spec"];
    let volumes = pod["volumes"].as_array().unwrap();
    let flow_volume = volumes.iter().find(|v| v["name"] == "flow").unwrap();
    assert_eq!(
        flow_volume["configMap"]["name"], "classification-flow",
        "{flow_volume}"
    );
    let items = flow_volume["configMap"]["items"].as_array().unwrap();
    assert!(
        items
            .iter()
            .any(|i| i["key"] == "flow.lib__util.py" && i["path"] == "lib/util.py")
    );
    assert_eq!(items.len(), cm_data.len() - 1);
    let mounts = pod["containers"][0]["volumeMounts"].as_array().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m["name"] == "flow" && m["mountPath"] == "/flow" && m["readOnly"] == true)
    );
    assert!(
        mounts
            .iter()
            .any(|m| m["name"] == "data" && m["mountPath"] == "/flow-data")
    );
    let line = command_line(job);
    assert_eq!(
        &line[1..5],
        ["run", "/flow", "--data", "/flow-data/lines.jsonl"]
    );
    assert!(!line.contains(&"--variant".to_string()), "{line:?}");
    kubectl_dry_run(&ctx, "deploy/classification/job.yaml");

    // Over 1 MiB: a clear usage error naming the way out, and nothing half-written.
    std::fs::remove_dir_all(ctx.root().join("deploy")).unwrap();
    let line = format!("{{\"text\": \"{}\"}}\n", "x".repeat(1000));
    ctx.write("big.jsonl", &line.repeat(1100));
    let a = args("big.jsonl");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    ctx.run(&a)
        .expect_code(2)
        .stderr_has("over Kubernetes' 1 MiB")
        .stderr_has("--deliver volume --pvc NAME");
    assert!(!ctx.root().join("deploy/classification/job.yaml").exists());
    // A ConfigMap needs the local flow.
    ctx.run(&[
        "deploy",
        "--target",
        "kubernetes-job",
        "--image",
        "x",
        "--deliver",
        "configmap",
        "--data",
        "lines.jsonl",
        "--shards",
        "2",
        "--upload",
        "s3://b",
    ])
    .expect_code(2)
    .stderr_has("--flow");
}

#[test]
fn a_volume_delivery_mounts_the_claim_and_bad_options_are_usage_errors() {
    let ctx = TestContext::new();
    ctx.run(&[
        "deploy",
        "--target",
        "kubernetes-job",
        "--image",
        "reg/cls:1",
        "--name",
        "cls",
        "--deliver",
        "volume",
        "--pvc",
        "flows",
        "--volume-path",
        "classification",
        "--data",
        "data/eval.jsonl",
        "--shards",
        "3",
        "--upload",
        "s3://b/runs",
        "--variant",
        "${classify.variant_1}",
    ])
    .expect_code(0);
    let docs = read_docs(&ctx, "deploy/cls/job.yaml");
    let job = by_kind(&docs, "Job", "cls");
    let pod = &job["spec"]["template"]["spec"];
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "flow")
        .unwrap();
    assert_eq!(volume["persistentVolumeClaim"]["claimName"], "flows");
    let mount = pod["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "flow")
        .unwrap();
    assert_eq!(mount["mountPath"], "/flow");
    assert_eq!(mount["subPath"], "classification");
    let line = command_line(job);
    assert_eq!(&line[2..5], ["/flow", "--data", "/flow/data/eval.jsonl"]);
    assert_eq!(
        &line[line.len() - 2..],
        ["--variant", "${classify.variant_1}"]
    );
    // The merge Job reads the flow from the shards' snapshots: it mounts no claim.
    let merge = read_docs(&ctx, "deploy/cls/merge-job.yaml");
    assert!(
        !serde_json::to_string(&merge[0])
            .unwrap()
            .contains("persistentVolumeClaim")
    );

    let base = [
        "deploy",
        "--target",
        "kubernetes-job",
        "--image",
        "x",
        "--name",
        "x",
    ];
    let bad: &[(&[&str], &str)] = &[
        (&["--data", "d", "--upload", "s3://b"], "--shards"),
        (&["--shards", "2", "--upload", "s3://b"], "--data"),
        (&["--shards", "2", "--data", "d"], "--upload"),
        (
            &["--shards", "2", "--data", "d", "--upload", "/tmp/x"],
            "object storage URL",
        ),
        (
            &["--shards", "0", "--data", "d", "--upload", "s3://b"],
            "--shards",
        ),
        (
            &[
                "--shards",
                "2",
                "--data",
                "d",
                "--upload",
                "s3://b",
                "--deliver",
                "volume",
            ],
            "--pvc",
        ),
        (
            &[
                "--shards",
                "2",
                "--data",
                "d",
                "--upload",
                "s3://b",
                "--variant",
                "${a.b}",
            ],
            "flow build --variant",
        ),
    ];
    for (extra, message) in bad {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        ctx.run(&args).expect_code(2).stderr_has(message);
    }
}

/// A stand-in `kubectl` on PATH: logs its arguments; `wait --for=condition=complete` succeeds
/// when `FAKE_JOB` is `complete` (or names the merge Job with `merge-complete`), `wait
/// --for=condition=failed` when it is `failed`; the other wait blocks like kubectl until killed.
/// `get job/... -o json` prints a failed Job's status.
#[cfg(unix)]
fn fake_kubectl(ctx: &TestContext) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = ctx.root().join("fakebin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("kubectl");
    std::fs::write(
        &script,
        r#"#!/bin/sh
echo "$*" >> "$FAKE_LOG"
case "$*" in
  *wait*condition=complete*-merge*) [ "$FAKE_MERGE" = failed ] && exec sleep 30; exit 0 ;;
  *wait*condition=failed*-merge*) [ "$FAKE_MERGE" = failed ] && exit 0; exec sleep 30 ;;
  *wait*condition=complete*) [ "$FAKE_JOB" = complete ] && exit 0; exec sleep 30 ;;
  *wait*condition=failed*) [ "$FAKE_JOB" = failed ] && exit 0; exec sleep 30 ;;
  *get*) echo '{"status": {"failedIndexes": "1,3", "conditions": [{"type": "FailureTarget", "status": "True"}, {"type": "Failed", "status": "True", "reason": "MaxFailedIndexesExceeded", "message": "Job has exceeded the specified maximal number of failed indexes"}]}}' ;;
  *) exit 0 ;;
esac
"#,
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// `flow deploy --target kubernetes-job ARGS --wait-timeout 60 --apply` with the stand-in
/// kubectl, whose Job ends as `job` and merge Job as `merge` (`complete` or `failed`): the
/// output and the kubectl calls it logged.
#[cfg(unix)]
fn apply_with_fake_kubectl(
    ctx: &TestContext,
    args: &[&str],
    job: &str,
    merge: &str,
) -> (std::process::Output, String) {
    let bin = fake_kubectl(ctx);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let log = ctx.root().join("kubectl.log");
    let _ = std::fs::remove_file(&log);
    let out = ctx
        .cmd()
        .args(["deploy", "--target", "kubernetes-job"])
        .args(args)
        .args(["--wait-timeout", "60", "--apply"])
        .env("PATH", &path)
        .env("FAKE_LOG", &log)
        .env("FAKE_JOB", job)
        .env("FAKE_MERGE", merge)
        .output()
        .unwrap();
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    (out, calls)
}

#[cfg(unix)]
#[test]
fn apply_runs_the_indexed_job_waits_then_merges_and_stops_on_failed_shards() {
    let ctx = TestContext::new();
    let deploy = |job: &str, merge: &str| {
        apply_with_fake_kubectl(
            &ctx,
            &[
                "--image",
                "reg/cls:1",
                "--name",
                "cls",
                "--namespace",
                "batch",
                "--data",
                "/app/flow/data.jsonl",
                "--shards",
                "4",
                "--upload",
                "s3://b/runs",
            ],
            job,
            merge,
        )
    };
    let started = std::time::Instant::now();
    let (out, calls) = deploy("complete", "complete");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("all 4 shards succeeded"), "{stdout}");
    assert!(
        stdout.contains("merged run cls written to s3://b/runs/cls/"),
        "{stdout}"
    );
    // Each Job is waited for by two `kubectl wait`s at once (complete, failed); the one that
    // does not end is killed, possibly before the stand-in logged it.
    let all: Vec<&str> = calls.lines().collect();
    let steps: Vec<&str> = all
        .iter()
        .copied()
        .filter(|c| !c.contains("condition=failed"))
        .collect();
    assert_eq!(
        steps,
        [
            "--namespace batch apply -f deploy/cls/job.yaml",
            "--namespace batch wait --for=condition=complete job/cls --timeout=60s",
            "--namespace batch apply -f deploy/cls/merge-job.yaml",
            "--namespace batch wait --for=condition=complete job/cls-merge --timeout=60s",
        ]
    );
    for c in all.iter().filter(|c| c.contains("condition=failed")) {
        assert!(
            [
                "--namespace batch wait --for=condition=failed job/cls --timeout=60s",
                "--namespace batch wait --for=condition=failed job/cls-merge --timeout=60s"
            ]
            .contains(c),
            "{c}"
        );
    }
    // The blocked waits were ended, not waited out.
    assert!(started.elapsed() < std::time::Duration::from_secs(20));

    // No kubectl at all: a usage error saying so, after the manifests were written.
    let empty = ctx.root().join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let out = ctx
        .cmd()
        .args([
            "deploy",
            "--target",
            "kubernetes-job",
            "--image",
            "reg/cls:1",
            "--name",
            "nokube",
            "--data",
            "/d.jsonl",
            "--shards",
            "2",
            "--upload",
            "s3://b/runs",
            "--apply",
        ])
        .env("PATH", &empty)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot run kubectl"), "{stderr}");
    assert!(ctx.root().join("deploy/nokube/job.yaml").is_file());

    // Failed shards: a clear error naming them, and no merge.
    let (out, calls) = deploy("failed", "complete");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("job/cls failed (MaxFailedIndexesExceeded"),
        "{stderr}"
    );
    assert!(
        stderr.contains("failed shards: 2, 4 of 4 (JOB_COMPLETION_INDEX 1, 3)"),
        "{stderr}"
    );
    assert!(calls.contains("get job/cls -o json"), "{calls}");
    assert!(!calls.contains("merge-job.yaml"), "{calls}");

    // A failed merge is an error too.
    let (out, calls) = deploy("complete", "failed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("job/cls-merge failed"), "{stderr}");
    assert!(
        calls.contains("apply -f deploy/cls/merge-job.yaml"),
        "{calls}"
    );
}

/// The variables of the test's `.env`, which a pod gets from its Secret by `envFrom`.
fn secret_env(ctx: &TestContext) -> Vec<(String, String)> {
    std::fs::read_to_string(ctx.root().join(".env"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Run a pod's command line (`/usr/local/bin/flow` is this build's binary, the claim mounted at
/// `/flow` or `/project` is `mount`) in a fresh working directory, with the Secrets' variables and
/// `JOB_COMPLETION_INDEX`, and nothing else of the test's files.
fn run_pod(
    ctx: &TestContext,
    line: &[String],
    workdir: &Path,
    mount: &Path,
    env: &[(String, String)],
    index: Option<u32>,
) -> std::process::Output {
    std::fs::create_dir_all(workdir).unwrap();
    let args: Vec<String> = line[1..]
        .iter()
        .map(
            |a| match a.strip_prefix("/flow").or(a.strip_prefix("/project")) {
                Some(rest) => format!("{}{rest}", mount.display()),
                None => a.clone(),
            },
        )
        .collect();
    let mut cmd = ctx.std_cmd();
    cmd.args(&args)
        .current_dir(workdir)
        .env_remove("FLOW_SHARD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(i) = index {
        cmd.env("JOB_COMPLETION_INDEX", i.to_string());
    }
    cmd.output().unwrap()
}

#[test]
fn the_pods_command_lines_shard_upload_and_merge_into_the_one_process_run() {
    const N: u32 = 3;
    let s3 = S3Server::start("runs");
    let ctx = TestContext::with_mock();
    shard_flow(&ctx);
    std::fs::copy(ctx.root().join("q.jsonl"), ctx.root().join("shq/q.jsonl")).unwrap();
    let url = s3.url("team/nightly");
    ctx.run(&[
        "deploy",
        "--target",
        "kubernetes-job",
        "--image",
        "reg/shq:1",
        "--name",
        "job",
        "--deliver",
        "volume",
        "--pvc",
        "flows",
        "--data",
        "q.jsonl",
        "--shards",
        &N.to_string(),
        "--concurrency",
        "6",
        "--upload",
        &url,
        "--allow-failures",
    ])
    .expect_code(0);
    let job = read_docs(&ctx, "deploy/job/job.yaml");
    let shard_line = command_line(&job[0]);
    assert_eq!(shard_line[12], "2", "ceil(6 / 3)");
    let merge_line = command_line(&read_docs(&ctx, "deploy/job/merge-job.yaml")[0]);

    // The one-process run, in its own working directory.
    let mut env = secret_env(&ctx);
    let one = ctx.root().join("one-process");
    let reference = [
        "/usr/local/bin/flow",
        "run",
        "/flow",
        "--data",
        "/flow/q.jsonl",
        "--name",
        "one",
        "--concurrency",
        "6",
        "--allow-failures",
    ];
    let out = run_pod(
        &ctx,
        &strings(&reference),
        &one,
        &ctx.root().join("shq"),
        &env,
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Each index in its own pod (working directory), with the storage credentials.
    env.extend(
        s3.env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    for index in 0..N {
        let out = run_pod(
            &ctx,
            &shard_line,
            &ctx.root().join(format!("pod-{index}")),
            &ctx.root().join("shq"),
            &env,
            Some(index),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "index {index}: {err}");
        assert!(
            err.contains(&format!("uploaded job-shard-{}-of-{N}", index + 1)),
            "{err}"
        );
    }
    // The merge pod has none of the shards on its disk: it reads them from object storage.
    let merge_pod = ctx.root().join("merge-pod");
    let out = run_pod(
        &ctx,
        &merge_line,
        &merge_pod,
        Path::new("/nonexistent"),
        &env,
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "merged {N} shards into job: {}/{LINES}",
            LINES - 1
        )),
        "{err}"
    );
    assert!(err.contains("uploaded job"), "{err}");
    let merged = merge_pod.join(".flow/runs/job");
    // Line 7 fails in its Python node in both runs.
    assert_eq!(outputs(&merged).len(), LINES - 1);
    assert_same_run(&merged, &one.join(".flow/runs/one"));
}

/// Object storage that cannot be reached is exit 3 (an unusable endpoint, which the Job retries),
/// not exit 2 (which the pod failure policy does not retry).
#[test]
fn a_pod_that_cannot_reach_object_storage_exits_3_not_2() {
    let ctx = TestContext::with_mock();
    shard_flow(&ctx);
    std::fs::copy(ctx.root().join("q.jsonl"), ctx.root().join("shq/q.jsonl")).unwrap();
    ctx.run(&[
        "deploy",
        "--target",
        "kubernetes-job",
        "--image",
        "reg/shq:1",
        "--name",
        "job",
        "--deliver",
        "volume",
        "--pvc",
        "flows",
        "--data",
        "q.jsonl",
        "--shards",
        "2",
        "--upload",
        "s3://runs/team",
    ])
    .expect_code(0);
    let line = command_line(&read_docs(&ctx, "deploy/job/job.yaml")[0]);
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env: Vec<(String, String)> = [
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let out = run_pod(
        &ctx,
        &line,
        &ctx.root().join("pod-0"),
        &ctx.root().join("shq"),
        &env,
        Some(0),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("s3://runs/team/job-shards/job-shard-1-of-2"),
        "{err}"
    );
}

/// `flow deploy --target kubernetes-job ARGS`.
fn deploy_job(ctx: &TestContext, args: &[&str]) -> crate::support::context::Run {
    let mut all = vec!["deploy", "--target", "kubernetes-job"];
    all.extend_from_slice(args);
    ctx.run(&all)
}

/// The Job's container runs exactly `expected` (command and args).
fn assert_args(job: &Value, expected: &[&str]) {
    assert_eq!(command_line(job), strings(expected));
}

/// A project with the repository's experiment (its flow, evaluation flow and datasets), an
/// overlay, a judge on a connection of its own and the few-shot variant on another connection.
fn experiment_project(ctx: &TestContext) {
    classification_experiment(ctx);
    let base = std::fs::read_to_string(ctx.root().join("experiment.yaml"))
        .unwrap()
        .replace(
            "- name: exact_match\n",
            "- name: relevance\n  builtin: relevance\n  options: {connection: judge}\n  datasets:\n  - name: tickets\n    mappings:\n      question: \"${data.text}\"\n      prediction: \"${run.outputs.category}\"\n- name: exact_match\n",
        );
    assert!(base.contains("connection: judge"));
    ctx.write("experiment.yaml", &base);
    ctx.write(
        "experiment.pr.yaml",
        &std::fs::read_to_string(crate::support::context::repo_root().join("experiment.pr.yaml"))
            .unwrap(),
    );
    let flow = ctx.root().join("flows/classification/flow.dag.yaml");
    let yaml = std::fs::read_to_string(&flow).unwrap();
    let at = yaml.rfind("connection: open_ai_connection").unwrap();
    let yaml = format!(
        "{}connection: fewshot_conn{}",
        &yaml[..at],
        &yaml[at + "connection: open_ai_connection".len()..]
    );
    std::fs::write(&flow, yaml).unwrap();
}

#[test]
fn an_experiment_job_shards_every_variant_run_and_its_merge_job_compares() {
    let ctx = TestContext::new();
    experiment_project(&ctx);
    let run = deploy_job(
        &ctx,
        &[
            "--image",
            "reg/exp:1",
            "--experiment",
            "--env",
            "pr",
            "--variants",
            "default,classify.variant_1",
            "--shards",
            "6",
            "--parallelism",
            "4",
            "--concurrency",
            "40",
            "--upload",
            "gs://team/exp/",
            "--namespace",
            "ml",
        ],
    );
    // Named after the experiment; the pr overlay keeps one dataset: 2 variants × 1 dataset.
    run.expect_code(0)
        .stdout_has("Job/classification")
        .stdout_has("Job/classification-merge")
        .stdout_has("4 at once, 10 lines in flight each")
        .stdout_has("experiment: 2 runs per shard, sharing its 10 lines in flight")
        .stdout_has("comparison: gs://team/exp/classification/experiments/classification/")
        .stdout_has("connections: open_ai_connection, fewshot_conn, judge");
    let docs = read_docs(&ctx, "deploy/classification/job.yaml");
    assert_eq!(docs.len(), 1, "image delivery: no ConfigMap");
    let job = by_kind(&docs, "Job", "classification");
    assert_eq!(job["metadata"]["namespace"], "ml");
    check_pod(
        job,
        "reg/exp:1",
        "classification-env",
        "classification-storage",
    );
    // Every connection of the flow (each variant), the evaluation flow and the judge, all
    // read from the one Secret by reference.
    assert_eq!(
        job["metadata"]["annotations"]["flow/connections"],
        "open_ai_connection,fewshot_conn,judge"
    );
    check_indexed(job, 6, 4);
    // The project is in the image under /app; ceil(40 / 4) lines in flight in each pod, shared
    // by the pod's runs of every variant.
    assert_args(
        job,
        &[
            "/usr/local/bin/flow",
            "experiment",
            "/app/experiment.yaml",
            "--env",
            "pr",
            "--variants",
            "default,classify.variant_1",
            "--shards",
            "6",
            "--upload",
            "gs://team/exp/classification-shards",
            "--concurrency",
            "10",
        ],
    );
    let merge_docs = read_docs(&ctx, "deploy/classification/merge-job.yaml");
    let merge = by_kind(&merge_docs, "Job", "classification-merge");
    check_pod(
        merge,
        "reg/exp:1",
        "classification-env",
        "classification-storage",
    );
    assert_eq!(merge["spec"]["completions"], 1);
    assert_eq!(
        merge["spec"]["podFailurePolicy"]["rules"][0]["action"],
        "FailJob"
    );
    // The merge downloads every shard run to /tmp: no size limit there, unlike a shard's.
    let tmp = |j: &Value| {
        j["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "tmp")
            .unwrap()["emptyDir"]
            .clone()
    };
    assert_eq!(tmp(merge), serde_json::json!({}));
    assert_eq!(tmp(job)["sizeLimit"], "256Mi");
    // The merge runs alone, with the whole line budget, and uploads the comparison.
    assert_args(
        merge,
        &[
            "/usr/local/bin/flow",
            "experiment",
            "/app/experiment.yaml",
            "--env",
            "pr",
            "--variants",
            "default,classify.variant_1",
            "--merge-shards",
            "gs://team/exp/classification-shards",
            "--name",
            "classification",
            "--to",
            "gs://team/exp/classification",
            "--concurrency",
            "40",
        ],
    );
    kubectl_dry_run(&ctx, "deploy/classification/job.yaml");
    kubectl_dry_run(&ctx, "deploy/classification/merge-job.yaml");
}

#[test]
fn an_experiment_configmap_carries_its_folder_and_a_shared_claim_replaces_object_storage() {
    let ctx = TestContext::new();
    experiment_project(&ctx);
    ctx.write(".env", &format!("OPEN_AI_CONNECTION_API_KEY={TEST_KEY}\n"));
    ctx.write(
        "flows/classification/.env",
        &format!("OPEN_AI_CONNECTION_API_KEY={TEST_KEY}\n"),
    );
    deploy_job(
        &ctx,
        &[
            "--image",
            "reg/exp:1",
            "--name",
            "nightly",
            "--experiment",
            "experiment.yaml",
            "--deliver",
            "configmap",
            "--shards",
            "3",
            "--runs-pvc",
            "shared-runs",
        ],
    )
    .expect_code(0)
    .stdout_has("ConfigMap/nightly-flow, Job/nightly")
    .stdout_has("/work/.flow/runs/ on claim shared-runs")
    .stdout_has("comparison: /work/.flow/experiments/nightly/ on claim shared-runs");
    let docs = read_docs(&ctx, "deploy/nightly/job.yaml");
    let cm = by_kind(&docs, "ConfigMap", "nightly-flow");
    let data = cm["data"].as_object().unwrap();
    let text = |rel: &str| std::fs::read_to_string(ctx.root().join(rel)).unwrap();
    // The experiment file, the flow as written (every variant: the experiment picks them), the
    // evaluation flow and the datasets, at their paths relative to the experiment file.
    assert_eq!(data["flow.experiment.yaml"], text("experiment.yaml"));
    assert_eq!(
        data["flow.flows__classification__flow.dag.yaml"],
        text("flows/classification/flow.dag.yaml")
    );
    assert!(
        data["flow.flows__classification__flow.dag.yaml"]
            .as_str()
            .unwrap()
            .contains("node_variants")
    );
    assert_eq!(
        data["flow.flows__eval-accuracy__grade.py"],
        text("flows/eval-accuracy/grade.py")
    );
    assert_eq!(
        data["flow.datasets__classification.jsonl"],
        text("datasets/classification.jsonl")
    );
    // No overlay without --env, no secrets, no data key of a batch run.
    assert!(!data.contains_key("flow.experiment.pr.yaml"));
    let all = serde_json::to_string(&cm).unwrap();
    assert!(!all.contains(TEST_KEY), "a secret reached the ConfigMap");
    assert!(!data.keys().any(|k| k.starts_with("data.")));

    let job = by_kind(&docs, "Job", "nightly");
    let merge = &read_docs(&ctx, "deploy/nightly/merge-job.yaml")[0];
    for (j, component) in [(job, "shard"), (merge, "merge")] {
        let pod = &j["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        // No object storage: no storage Secret; the connections' Secret by reference.
        assert_eq!(c["envFrom"].as_array().unwrap().len(), 1, "{component}");
        assert_eq!(c["envFrom"][0]["secretRef"]["name"], "nightly-env");
        assert!(c.get("env").is_none());
        // The claim is the working directory (and its .flow/) of every pod.
        let work = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "work")
            .unwrap();
        assert_eq!(work["persistentVolumeClaim"]["claimName"], "shared-runs");
        assert!(pod["securityContext"]["fsGroup"].is_u64());
        // The merge evaluates: it mounts the experiment's folder too.
        let mounts = c["volumeMounts"].as_array().unwrap();
        assert!(
            mounts
                .iter()
                .any(|m| m["mountPath"] == "/project" && m["readOnly"] == true),
            "{component}: {mounts:?}"
        );
        let flow_volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "flow")
            .unwrap();
        let items = flow_volume["configMap"]["items"].as_array().unwrap();
        assert!(items.iter().any(|i| i["key"]
            == "flow.flows__classification__classify_few_shot.jinja2"
            && i["path"] == "flows/classification/classify_few_shot.jinja2"));
    }
    assert_args(
        job,
        &[
            "/usr/local/bin/flow",
            "experiment",
            "/project/experiment.yaml",
            "--shards",
            "3",
            "--concurrency",
            "11",
        ],
    );
    assert_args(
        merge,
        &[
            "/usr/local/bin/flow",
            "experiment",
            "/project/experiment.yaml",
            "--merge-shards",
            "--name",
            "nightly",
            "--concurrency",
            "32",
        ],
    );
    kubectl_dry_run(&ctx, "deploy/nightly/job.yaml");
    kubectl_dry_run(&ctx, "deploy/nightly/merge-job.yaml");

    // A batch run on a shared claim: the merge names the shard runs there.
    deploy_job(
        &ctx,
        &[
            "--image",
            "reg/cls:1",
            "--name",
            "batch",
            "--data",
            "/data/in.jsonl",
            "--shards",
            "2",
            "--runs-pvc",
            "shared-runs",
        ],
    )
    .expect_code(0);
    let merge = &read_docs(&ctx, "deploy/batch/merge-job.yaml")[0];
    assert_args(
        merge,
        &[
            "/usr/local/bin/flow",
            "runs",
            "merge",
            "batch-shard-1-of-2",
            "batch-shard-2-of-2",
            "--name",
            "batch",
        ],
    );
    assert!(
        !command_line(&read_docs(&ctx, "deploy/batch/job.yaml")[0])
            .contains(&"--upload".to_string())
    );
}

#[test]
fn experiment_job_mistakes_are_usage_errors() {
    let ctx = TestContext::new();
    experiment_project(&ctx);
    let base = [
        "deploy",
        "--target",
        "kubernetes-job",
        "--image",
        "x",
        "--shards",
        "2",
    ];
    // An experiment file with a key written in it does not go into a ConfigMap.
    ctx.write(".env", &format!("JUDGE_API_KEY={TEST_KEY}\n"));
    let inlined = std::fs::read_to_string(ctx.root().join("experiment.yaml"))
        .unwrap()
        .replace("api_key: ${api_key}", &format!("api_key: {TEST_KEY}"));
    ctx.write("inlined.yaml", &inlined);
    // A dataset outside the experiment's folder cannot keep its relative path in a ConfigMap.
    ctx.write("outside/data.jsonl", "{\"text\": \"hi\"}\n");
    let nested = std::fs::read_to_string(ctx.root().join("experiment.yaml"))
        .unwrap()
        .replace("flow: flows/", "flow: ../flows/")
        .replace("source: datasets/", "source: ../datasets/");
    ctx.write("exp/experiment.yaml", &nested);
    let bad: &[(&[&str], &str)] = &[
        (
            &["--experiment"],
            "needs --upload URL (s3://, az://, gs://) or --runs-pvc NAME",
        ),
        (
            &["--experiment", "missing.yaml", "--upload", "s3://b"],
            "no experiment file at missing.yaml",
        ),
        (
            &["--experiment", "--data", "d.jsonl", "--upload", "s3://b"],
            "cannot be used with",
        ),
        (
            &["--experiment", "--allow-failures", "--upload", "s3://b"],
            "cannot be used with",
        ),
        (
            &["--env", "pr", "--data", "d", "--upload", "s3://b"],
            "--experiment",
        ),
        (
            &["--experiment", "--upload", "s3://b", "--runs-pvc", "c"],
            "cannot be used with",
        ),
        (
            &[
                "--experiment",
                "--variants",
                "classify.nope",
                "--upload",
                "s3://b",
            ],
            "nope",
        ),
        (
            &["--experiment", "--upload", "s3://b", "--deliver", "volume"],
            "--pvc",
        ),
        (
            &[
                "--experiment",
                "exp/experiment.yaml",
                "--upload",
                "s3://b",
                "--deliver",
                "configmap",
            ],
            "outside the experiment's folder",
        ),
        (
            &[
                "--experiment",
                "inlined.yaml",
                "--upload",
                "s3://b",
                "--deliver",
                "configmap",
            ],
            "inlined.yaml would carry a secret into the ConfigMap",
        ),
        (
            &["--upload", "s3://b"],
            "needs --data PATH (a batch run) or --experiment",
        ),
    ];
    for (extra, message) in bad {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        ctx.run(&args).expect_code(2).stderr_has(message);
    }
    // The same experiment from the image or a volume is fine: paths there are the image's.
    deploy_job(
        &ctx,
        &[
            "--image",
            "x",
            "--shards",
            "2",
            "--experiment",
            "exp/experiment.yaml",
            "--upload",
            "s3://b",
            "--deliver",
            "volume",
            "--pvc",
            "proj",
        ],
    )
    .expect_code(0);
}

#[cfg(unix)]
#[test]
fn apply_runs_the_experiment_job_then_its_merge() {
    let ctx = TestContext::new();
    experiment_project(&ctx);
    let (out, calls) = apply_with_fake_kubectl(
        &ctx,
        &[
            "--image",
            "reg/exp:1",
            "--experiment",
            "--shards",
            "2",
            "--upload",
            "s3://b/exp",
        ],
        "complete",
        "complete",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all 2 shards succeeded"), "{stdout}");
    assert!(
        stdout.contains(
            "job/classification-merge: experiment compared classification written to s3://b/exp/classification/"
        ),
        "{stdout}"
    );
    let applies: Vec<&str> = calls.lines().filter(|c| c.starts_with("apply")).collect();
    assert_eq!(
        applies,
        [
            "apply -f deploy/classification/job.yaml",
            "apply -f deploy/classification/merge-job.yaml"
        ]
    );
}

/// An object's text from the test's S3 server, or the keys under a prefix when `key` ends with
/// `/` (through boto3, which moto depends on, with the server's test credentials).
fn s3_get(s3: &S3Server, key: &str) -> String {
    let client = format!(
        "import sys, boto3\nc = boto3.client('s3', endpoint_url='http://127.0.0.1:{}', aws_access_key_id='testing', aws_secret_access_key='testing', region_name='us-east-1')\n",
        s3.port
    );
    let script = if key.ends_with('/') {
        format!(
            "{client}for page in c.get_paginator('list_objects_v2').paginate(Bucket='{}', Prefix='{key}'):\n    for o in page.get('Contents', []): print(o['Key'])",
            s3.bucket
        )
    } else {
        format!(
            "{client}sys.stdout.write(c.get_object(Bucket='{}', Key='{key}')['Body'].read().decode())",
            s3.bucket
        )
    };
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The repository's experiment, two of its variants, from the volume `project`.
const EXPERIMENT_ON_VOLUME: &[&str] = &[
    "--image",
    "reg/exp:1",
    "--name",
    "exp",
    "--experiment",
    "--variants",
    "default,classify.variant_1",
    "--deliver",
    "volume",
    "--pvc",
    "project",
];

/// The same experiment in one process (in a working directory of its own): its summary.
fn one_process_experiment(ctx: &TestContext) -> Value {
    let one = ctx.root().join("one-process");
    let line = strings(&[
        "/usr/local/bin/flow",
        "experiment",
        "/project/experiment.yaml",
        "--variants",
        "default,classify.variant_1",
        "--name",
        "one",
    ]);
    let out = run_pod(ctx, &line, &one, ctx.root(), &[], None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_file(&one.join(".flow/experiments/one/summary.json"))
}

#[test]
fn the_experiment_pods_command_lines_shard_upload_merge_and_compare_like_one_process() {
    let s3 = S3Server::start("exp");
    let ctx = TestContext::with_mock();
    classification_experiment(&ctx);
    answers_by_variant(&ctx);
    let url = s3.url("team/exp");
    let mut args = EXPERIMENT_ON_VOLUME.to_vec();
    args.extend(["--shards", "2", "--concurrency", "8", "--upload", &url]);
    deploy_job(&ctx, &args).expect_code(0);
    let reference = one_process_experiment(&ctx);

    // Each index in a pod of its own (an empty working directory: no shared disk, no shared
    // cache) with the storage variables; then the merge pod, which has no shard on its disk: it
    // reads them from object storage, evaluates, compares and uploads the comparison laid out
    // as .flow/.
    let env: Vec<(String, String)> = s3
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let requests_before = ctx.mock().request_count();
    let pods = ctx.root().join("pods");
    let out = run_job(&ctx, "exp", ctx.root(), &env, &|index| {
        pods.join(index.map_or("merge".into(), |i| i.to_string()))
    });
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("uploaded the comparison exp and"), "{err}");
    // Every line of every run once: 2 variants × (20 + 8 tickets).
    assert_eq!(ctx.mock().request_count() - requests_before, 56);
    let uploaded = s3_get(&s3, "team/exp/exp/experiments/exp/summary.json");
    let summary: Value = serde_json::from_str(&uploaded).unwrap();
    let merged = comparable_summary(&summary);
    assert_eq!(merged, comparable_summary(&reference));
    assert_eq!(merged.0.len(), 4);
    assert_eq!(merged.1, "classify.variant_1");
    // `--to` is the merge's: without --merge-shards it is a usage error.
    ctx.run(&["experiment", "--to", &url])
        .expect_code(2)
        .stderr_has("--merge-shards");
    let keys = s3_get(&s3, "team/exp/exp/");
    assert!(
        keys.contains("team/exp/exp/experiments/exp/report.html"),
        "{keys}"
    );
    // The merged runs and their evaluation runs, where summary.json's relative paths point.
    for r in summary["runs"].as_array().unwrap() {
        let name = r["run_dir"]
            .as_str()
            .unwrap()
            .trim_start_matches("../../runs/");
        assert!(
            keys.contains(&format!("team/exp/exp/runs/{name}/meta.json")),
            "{name}: {keys}"
        );
        for e in r["eval_dirs"].as_array().unwrap() {
            let name = e.as_str().unwrap().trim_start_matches("../../runs/");
            assert!(
                keys.contains(&format!("team/exp/exp/runs/{name}/meta.json")),
                "{name}: {keys}"
            );
        }
    }
}

/// Run the Job in `deploy/<name>/` as the cluster would: every index of the Indexed Job, then
/// the merge Job, each pod in the working directory `workdir(index)` (`None`: the merge) with the
/// project volume at `mount` and the variables `env`. The merge pod's output.
fn run_job(
    ctx: &TestContext,
    name: &str,
    mount: &Path,
    env: &[(String, String)],
    workdir: &dyn Fn(Option<u32>) -> std::path::PathBuf,
) -> std::process::Output {
    let job = &read_docs(ctx, &format!("deploy/{name}/job.yaml"))[0];
    let shards = job["spec"]["completions"].as_u64().unwrap() as u32;
    let shard_line = command_line(job);
    for index in 0..shards {
        let out = run_pod(
            ctx,
            &shard_line,
            &workdir(Some(index)),
            mount,
            env,
            Some(index),
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "index {index}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let merge_line = command_line(&read_docs(ctx, &format!("deploy/{name}/merge-job.yaml"))[0]);
    run_pod(ctx, &merge_line, &workdir(None), mount, env, None)
}

/// With `--runs-pvc`, every pod's working directory is the one claim: shards and the merge
/// meet in its `.flow/`, no object storage involved; for an experiment and for a batch run.
#[test]
fn on_a_shared_claim_the_pods_merge_and_compare_without_object_storage() {
    let ctx = TestContext::with_mock();
    classification_experiment(&ctx);
    answers_by_variant(&ctx);
    let mut args = EXPERIMENT_ON_VOLUME.to_vec();
    args.extend(["--runs-pvc", "runs", "--shards", "3"]);
    deploy_job(&ctx, &args).expect_code(0);
    let claim = ctx.root().join("claim");
    let out = run_job(&ctx, "exp", ctx.root(), &[], &|_| claim.clone());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let merged = comparable_summary(&json_file(
        &claim.join(".flow/experiments/exp/summary.json"),
    ));
    assert_eq!(merged.0.len(), 4);
    assert_eq!(merged, comparable_summary(&one_process_experiment(&ctx)));

    // A batch run the same way: the merged run equals the one-process run.
    shard_flow(&ctx);
    std::fs::copy(ctx.root().join("q.jsonl"), ctx.root().join("shq/q.jsonl")).unwrap();
    deploy_job(
        &ctx,
        &[
            "--image",
            "reg/shq:1",
            "--name",
            "batch",
            "--deliver",
            "volume",
            "--pvc",
            "flows",
            "--data",
            "q.jsonl",
            "--runs-pvc",
            "runs",
            "--shards",
            "3",
            "--allow-failures",
        ],
    )
    .expect_code(0);
    let out = run_job(&ctx, "batch", &ctx.root().join("shq"), &[], &|_| {
        claim.clone()
    });
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("merged 3 shards into batch"), "{err}");
    let out = run_pod(
        &ctx,
        &strings(&[
            "/usr/local/bin/flow",
            "run",
            "/flow",
            "--data",
            "/flow/q.jsonl",
            "--name",
            "one",
            "--allow-failures",
        ]),
        &ctx.root().join("one-run"),
        &ctx.root().join("shq"),
        &[],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    assert_same_run(
        &claim.join(".flow/runs/batch"),
        &ctx.root().join("one-run/.flow/runs/one"),
    );
}
