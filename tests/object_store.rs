//! Run directories in object storage: upload, list and download against an S3-compatible
//! server on loopback (moto).

mod support;

use flow::run_store::remote::RemoteDir;
use support::s3::S3Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_directory_round_trips_through_s3() {
    let s3 = S3Server::start("runs");
    // object_store reads its settings from the environment: this test binary has no other test
    // that sets these variables.
    for (k, v) in s3.env() {
        unsafe { std::env::set_var(k, v) };
    }
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
    let root = RemoteDir::parse(&s3.url("team/shards")).unwrap();
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
}
