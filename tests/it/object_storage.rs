//! Run directories in object storage: upload, list and download against an S3-compatible
//! server on loopback (moto); a run's copy kept up to date while it is written (`RunUpload`).

use crate::support::child::test_in_child;
use crate::support::s3::S3Server;
use flow::run_store::remote::RemoteDir;
use flow::run_store::{RunDir, RunUpload};

/// The `s3://` URL of the folder the child test works in.
const URL_VAR: &str = "FLOW_OBJECT_STORAGE_TEST_URL";

#[test]
fn a_run_directory_round_trips_through_s3() {
    let s3 = S3Server::start("runs");
    // object_store reads its settings from the process environment, which the other tests of
    // this binary share: the checks run in a child process that has the server's variables.
    let out = test_in_child(module_path!(), "round_trip_in_child_process")
        .envs(s3.env())
        .env(URL_VAR, s3.url("team/shards"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run by `a_run_directory_round_trips_through_s3` in a child process whose environment points
/// object_store at the loopback S3 server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of a_run_directory_round_trips_through_s3"]
async fn round_trip_in_child_process() {
    let url = std::env::var(URL_VAR).expect("run by the parent test");
    let src = tempfile::tempdir().unwrap();
    let files = [
        ("meta.json", "{\"name\": \"r\"}"),
        ("flow_outputs/output.jsonl", "{\"line_number\": 0}\n"),
        ("node_artifacts/ask/000000000.jsonl", "{}\n"),
        ("snapshot/flow.dag.yaml", "nodes: []\n"),
    ];
    for (rel, text) in files {
        let p = src.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let root = RemoteDir::parse(&url).unwrap();
    let run = root.child("r-shard-1");
    assert!(!run.has("meta.json").await.unwrap());
    assert_eq!(run.upload(src.path()).await.unwrap(), 4);
    assert!(run.has("meta.json").await.unwrap());
    root.child("r-shard-2").upload(src.path()).await.unwrap();
    assert_eq!(
        root.children().await.unwrap(),
        vec!["r-shard-1", "r-shard-2"]
    );
    assert_eq!(run.name(), "r-shard-1");

    let dest = tempfile::tempdir().unwrap();
    assert_eq!(run.download(dest.path()).await.unwrap(), 4);
    for (rel, text) in files {
        assert_eq!(
            std::fs::read_to_string(dest.path().join(rel)).unwrap(),
            text,
            "{rel}"
        );
    }

    // A run being written: each checkpoint sends what changed, the journal only up to its last
    // whole record; the end removes what the run no longer has.
    let live = tempfile::tempdir().unwrap();
    let write = |rel: &str, text: &str| {
        let p = live.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write("meta.json", "{\"status\": \"Running\"}");
    write("snapshot/flow.dag.yaml", "nodes: []\n");
    write("node_artifacts/ask/000000000.jsonl", "{}\n");
    write(
        "flow_artifacts/000000000_000000024.jsonl",
        "{\"line_number\": 0}\n{\"line_nu",
    );
    let copy = root.child("live");
    let mut upload = RunUpload::new(RunDir::new(live.path()), copy.clone());
    assert_eq!(upload.checkpoint().await.unwrap(), 4);
    let journal = || async {
        String::from_utf8(
            copy.read("flow_artifacts/000000000_000000024.jsonl")
                .await
                .unwrap()
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(journal().await, "{\"line_number\": 0}\n");
    assert_eq!(upload.checkpoint().await.unwrap(), 0, "nothing changed");
    write(
        "flow_artifacts/000000000_000000024.jsonl",
        "{\"line_number\": 0}\n{\"line_number\": 1}\n",
    );
    write("node_artifacts/ask/000000001.jsonl", "{}\n");
    assert_eq!(upload.checkpoint().await.unwrap(), 2);
    assert_eq!(
        journal().await,
        "{\"line_number\": 0}\n{\"line_number\": 1}\n"
    );
    copy.put(std::path::Path::new("error.json"), b"{}".to_vec())
        .await
        .unwrap();
    write("meta.json", "{\"status\": \"Completed\"}");
    assert_eq!(upload.finish().await.unwrap(), 1);
    let mut there = copy.files().await.unwrap();
    there.sort();
    assert_eq!(
        there,
        [
            "flow_artifacts/000000000_000000024.jsonl",
            "meta.json",
            "node_artifacts/ask/000000000.jsonl",
            "node_artifacts/ask/000000001.jsonl",
            "snapshot/flow.dag.yaml",
        ]
        .map(std::path::PathBuf::from)
    );
}
