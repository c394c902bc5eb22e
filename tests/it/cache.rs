//! The response cache against a real `LlmClient` and the loopback mock LLM.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::child::test_in_child;
use crate::support::mock_llm::{MockLlm, MockReply};
use flow::cache::{self, CacheError, CacheMode, Cached, ResponseCache};
use flow::chat::Message;
use flow::connection::{self, Connection, EnvVars};
use flow::provider::{ClientConfig, LlmClient, LlmRequest, LlmResponse, RetryPolicy, Usage};
use serde_json::{Value, json};

fn conn(mock: &MockLlm, key: &str) -> Connection {
    let env = EnvVars::from_pairs([
        ("C_API_TYPE", "openai".to_string()),
        ("C_API_BASE", mock.openai_base()),
        ("C_API_KEY", key.to_string()),
        ("C_MODEL", "gpt-test".to_string()),
    ]);
    connection::resolve("c", &env, false).expect("connection resolves")
}

fn client() -> LlmClient {
    LlmClient::with_config(ClientConfig {
        timeout: Duration::from_secs(10),
        retry: RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        },
        ..ClientConfig::default()
    })
    .expect("client")
}

fn request(text: &str) -> LlmRequest {
    LlmRequest::chat(vec![
        Message::new("system", "You answer briefly."),
        Message::new("user", text),
    ])
}

/// One cached call the way the executor makes it.
async fn call(
    cache: &ResponseCache,
    client: &LlmClient,
    conn: &Connection,
    req: &LlmRequest,
) -> Result<Cached, CacheError> {
    let key = req.cache_key(conn);
    let what = cache::describe_request("answer", req);
    cache
        .get_or_fetch(&key, &what, || client.complete(conn, req, None))
        .await
}

/// Every entry file under `dir`.
fn entry_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(shards) = std::fs::read_dir(dir) else {
        return out;
    };
    for shard in shards.flatten() {
        if let Ok(files) = std::fs::read_dir(shard.path()) {
            for f in files.flatten() {
                out.push(f.path());
            }
        }
    }
    out.sort();
    out
}

fn response(text: &str) -> LlmResponse {
    LlmResponse {
        output: Value::from(text),
        usage: Usage {
            prompt_tokens: 3,
            completion_tokens: 1,
            total_tokens: 4,
        },
        model: Some("m".into()),
        finish_reason: Some("stop".into()),
        retries: 0,
        served_by: None,
        raw: None,
    }
}

#[tokio::test]
async fn miss_then_hit_makes_one_request() {
    let mock = MockLlm::start();
    mock.reply_when("capital of France", "Paris");
    let tmp = tempfile::tempdir().unwrap();
    let cache = ResponseCache::new(tmp.path().join("c"), CacheMode::ReadWrite);
    let (client, conn) = (client(), conn(&mock, "k1"));
    let req = request("What is the capital of France?");

    let first = call(&cache, &client, &conn, &req).await.unwrap();
    assert!(!first.hit);
    assert_eq!(first.response.output, json!("Paris"));
    let second = call(&cache, &client, &conn, &req).await.unwrap();
    assert!(second.hit);
    assert_eq!(second.response, first.response);
    assert_eq!(second.response.usage, first.response.usage);
    assert_eq!(second.response.model.as_deref(), Some("gpt-test"));
    assert_eq!(mock.request_count(), 1);
    assert_eq!(entry_files(&tmp.path().join("c")).len(), 1);
    // A fresh cache (a new process) over the same directory hits too.
    let again = ResponseCache::new(tmp.path().join("c"), CacheMode::ReadWrite);
    assert!(call(&again, &client, &conn, &req).await.unwrap().hit);
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test]
async fn the_api_key_is_not_part_of_the_key() {
    let mock = MockLlm::start();
    let tmp = tempfile::tempdir().unwrap();
    let cache = ResponseCache::new(tmp.path().to_path_buf(), CacheMode::ReadWrite);
    let client = client();
    let req = request("hello");
    let a = call(&cache, &client, &conn(&mock, "key-one"), &req)
        .await
        .unwrap();
    let b = call(&cache, &client, &conn(&mock, "key-two"), &req)
        .await
        .unwrap();
    assert!(!a.hit);
    assert!(b.hit);
    assert_eq!(mock.request_count(), 1);
    // And the key never reaches the disk.
    for f in entry_files(tmp.path()) {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(!text.contains("key-one") && !text.contains("key-two"));
    }
}

#[tokio::test]
async fn different_parameters_messages_or_model_miss() {
    let mock = MockLlm::start();
    let tmp = tempfile::tempdir().unwrap();
    let cache = ResponseCache::new(tmp.path().to_path_buf(), CacheMode::ReadWrite);
    let (client, conn) = (client(), conn(&mock, "k"));
    let base = request("hello");
    let mut warm = base.clone();
    warm.params.insert("temperature".into(), json!(0.7));
    let mut other_model = base.clone();
    other_model.model = Some("gpt-other".into());
    let other_text = request("hello!");
    for req in [&base, &warm, &other_model, &other_text] {
        assert!(!call(&cache, &client, &conn, req).await.unwrap().hit);
    }
    assert_eq!(mock.request_count(), 4);
    for req in [&base, &warm, &other_model, &other_text] {
        assert!(call(&cache, &client, &conn, req).await.unwrap().hit);
    }
    assert_eq!(mock.request_count(), 4);
}

#[tokio::test]
async fn errors_are_not_cached() {
    let mock = MockLlm::start();
    mock.push(MockReply::Status(500, "boom".into()));
    let tmp = tempfile::tempdir().unwrap();
    let cache = ResponseCache::new(tmp.path().to_path_buf(), CacheMode::ReadWrite);
    let (client, conn) = (client(), conn(&mock, "k"));
    let req = request("hello");
    let err = call(&cache, &client, &conn, &req).await.unwrap_err();
    assert_eq!(err.provider().and_then(|e| e.status()), Some(500));
    assert!(err.to_string().contains("500"), "{err}");
    assert!(entry_files(tmp.path()).is_empty());
    let ok = call(&cache, &client, &conn, &req).await.unwrap();
    assert!(!ok.hit);
    assert_eq!(mock.request_count(), 2);
    assert!(call(&cache, &client, &conn, &req).await.unwrap().hit);
    assert_eq!(mock.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identical_requests_in_flight_are_sent_once() {
    let mock = MockLlm::start();
    mock.set_latency(Duration::from_millis(300));
    let tmp = tempfile::tempdir().unwrap();
    let cache = ResponseCache::new(tmp.path().to_path_buf(), CacheMode::ReadWrite);
    let (client, conn) = (client(), conn(&mock, "k"));
    let req = request("same question");
    let calls = (0..10).map(|_| call(&cache, &client, &conn, &req));
    let results = futures::future::join_all(calls).await;
    assert_eq!(mock.request_count(), 1);
    let misses = results.iter().filter(|r| !r.as_ref().unwrap().hit).count();
    assert_eq!(misses, 1, "exactly one caller made the request");
    let first = &results[0].as_ref().unwrap().response;
    assert!(
        results
            .iter()
            .all(|r| &r.as_ref().unwrap().response == first)
    );
    assert_eq!(cache.in_flight(), 0);

    // Spawned tasks (as a batch run spawns lines) dedupe the same way.
    let req = request("another question");
    let handles: Vec<_> = (0..10)
        .map(|_| {
            let (cache, client, conn, req) =
                (cache.clone(), client.clone(), conn.clone(), req.clone());
            tokio::spawn(async move { call(&cache, &client, &conn, &req).await.map(|c| c.hit) })
        })
        .collect();
    let mut hits = 0;
    for h in handles {
        hits += usize::from(h.await.unwrap().unwrap());
    }
    assert_eq!(hits, 9);
    assert_eq!(mock.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_error_in_flight_is_shared_and_not_cached() {
    let mock = MockLlm::start();
    mock.set_latency(Duration::from_millis(300));
    mock.push(MockReply::Status(400, "bad request".into()));
    let tmp = tempfile::tempdir().unwrap();
    let cache = ResponseCache::new(tmp.path().to_path_buf(), CacheMode::ReadWrite);
    let (client, conn) = (client(), conn(&mock, "k"));
    let req = request("q");
    let results =
        futures::future::join_all((0..5).map(|_| call(&cache, &client, &conn, &req))).await;
    assert_eq!(mock.request_count(), 1);
    for r in &results {
        let e = r.as_ref().unwrap_err();
        assert_eq!(e.provider().and_then(|p| p.status()), Some(400));
    }
    assert!(!call(&cache, &client, &conn, &req).await.unwrap().hit);
    assert_eq!(mock.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_takes_over_when_the_leader_is_cancelled() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = ResponseCache::new(tmp.path().to_path_buf(), CacheMode::ReadWrite);
    let leader = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_fetch("k1234", "x", || async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(response("never"))
                })
                .await
        })
    };
    while cache.in_flight() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let fetched = Arc::new(AtomicUsize::new(0));
    let follower = {
        let (cache, fetched) = (cache.clone(), fetched.clone());
        tokio::spawn(async move {
            cache
                .get_or_fetch("k1234", "x", || async move {
                    fetched.fetch_add(1, Ordering::SeqCst);
                    Ok(response("mine"))
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(fetched.load(Ordering::SeqCst), 0, "the follower waits");
    leader.abort();
    let got = tokio::time::timeout(Duration::from_secs(5), follower)
        .await
        .expect("the follower does not hang")
        .unwrap()
        .unwrap();
    assert!(!got.hit);
    assert_eq!(got.response.output, json!("mine"));
    assert_eq!(fetched.load(Ordering::SeqCst), 1);
    assert_eq!(cache.in_flight(), 0);
}

#[test]
fn concurrent_processes_writing_the_same_keys() {
    // Each thread has its own cache (its own in-flight map and runtime), as separate processes
    // do: they race to fetch and write the same keys in one directory.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let threads = 6;
    let keys = 40;
    let barrier = Arc::new(std::sync::Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (dir, barrier) = (dir.clone(), barrier.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                let cache = ResponseCache::new(dir, CacheMode::ReadWrite);
                for i in 0..keys {
                    barrier.wait();
                    let key = format!("{i:064x}");
                    let got = rt
                        .block_on(cache.get_or_fetch(&key, "k", || async move {
                            Ok(response(&format!("answer {i}")))
                        }))
                        .unwrap();
                    assert_eq!(got.response.output, json!(format!("answer {i}")));
                }
                cache.write_warning()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), None);
    }
    let stats = cache::stats(&dir).unwrap();
    assert_eq!(stats.entries, keys as u64);
    assert_eq!(stats.corrupt, 0);
    let leftovers: Vec<_> = entry_files(&dir)
        .into_iter()
        .filter(|p| p.extension().and_then(|e| e.to_str()) != Some("json"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

const CHILD_DIR_VAR: &str = "FLOW_CACHE_TEST_CHILD_DIR";
const CHILD_KEYS: usize = 30;

/// Run by `real_processes_share_one_directory` in child processes: repeatedly deletes and
/// re-fetches the same keys, so writes, deletes and reads of one entry interleave across
/// processes. Every answer must be the right one.
#[test]
#[ignore = "child process of real_processes_share_one_directory"]
fn child_process_writer() {
    let dir = PathBuf::from(std::env::var(CHILD_DIR_VAR).expect("run by the parent test"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let cache = ResponseCache::new(dir.clone(), CacheMode::ReadWrite);
    for round in 0..10 {
        for i in 0..CHILD_KEYS {
            let key = format!("{i:064x}");
            if (i + round) % 3 == 0 {
                let _ = std::fs::remove_file(dir.join(&key[..2]).join(format!("{key}.json")));
            }
            let got = rt
                .block_on(cache.get_or_fetch(&key, "k", || async move {
                    Ok(response(&format!("answer {i}")))
                }))
                .unwrap();
            assert_eq!(got.response.output, json!(format!("answer {i}")));
        }
    }
    assert_eq!(cache.write_warning(), None);
}

#[test]
fn real_processes_share_one_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            test_in_child(module_path!(), "child_process_writer")
                .env(CHILD_DIR_VAR, tmp.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("1 passed"), "the child ran: {stdout}");
    }
    let stats = cache::stats(tmp.path()).unwrap();
    assert_eq!(stats.corrupt, 0);
    assert!(stats.entries <= CHILD_KEYS as u64 && stats.entries > 0);
    let leftovers: Vec<_> = entry_files(tmp.path())
        .into_iter()
        .filter(|p| p.extension().and_then(|e| e.to_str()) != Some("json"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[tokio::test]
async fn corrupt_entries_are_misses_and_get_repaired() {
    let mock = MockLlm::start();
    let tmp = tempfile::tempdir().unwrap();
    let cache = ResponseCache::new(tmp.path().to_path_buf(), CacheMode::ReadWrite);
    let (client, conn) = (client(), conn(&mock, "k"));
    let req = request("hello");
    call(&cache, &client, &conn, &req).await.unwrap();
    let files = entry_files(tmp.path());
    assert_eq!(files.len(), 1);
    let good = std::fs::read(&files[0]).unwrap();
    let corruptions: Vec<Vec<u8>> = vec![
        good[..good.len() / 2].to_vec(),
        b"\x00\x01 not json at all \xff".to_vec(),
        Vec::new(),
        br#"{"version":1,"key":"someone else","stored_at":1,"response":{"output":"x","prompt_tokens":0,"completion_tokens":0,"total_tokens":0}}"#.to_vec(),
        br#"{"version":99}"#.to_vec(),
    ];
    for (n, bad) in corruptions.iter().enumerate() {
        std::fs::write(&files[0], bad).unwrap();
        assert_eq!(
            cache::stats(tmp.path()).unwrap().corrupt,
            u64::from(n < 3 || n == 4)
        );
        let before = mock.request_count();
        let got = call(&cache, &client, &conn, &req).await.unwrap();
        assert!(!got.hit, "corruption {n} is a miss");
        assert_eq!(mock.request_count(), before + 1);
        assert!(
            call(&cache, &client, &conn, &req).await.unwrap().hit,
            "repaired after {n}"
        );
        assert_eq!(mock.request_count(), before + 1);
        let s = cache::stats(tmp.path()).unwrap();
        assert_eq!((s.entries, s.corrupt), (1, 0));
    }
}

#[tokio::test]
async fn replay_answers_only_from_recorded_responses() {
    let mock = MockLlm::start();
    let tmp = tempfile::tempdir().unwrap();
    let (client, conn) = (client(), conn(&mock, "k"));
    let recorded = request("recorded question");
    let record = ResponseCache::new(tmp.path().to_path_buf(), CacheMode::ReadWrite);
    let original = call(&record, &client, &conn, &recorded).await.unwrap();
    assert_eq!(mock.request_count(), 1);

    let replay = ResponseCache::new(tmp.path().to_path_buf(), CacheMode::Replay);
    let hit = call(&replay, &client, &conn, &recorded).await.unwrap();
    assert!(hit.hit);
    assert_eq!(hit.response, original.response);

    let mut new = request(&format!("a question never asked {}", "x".repeat(100)));
    new.model = Some("gpt-4o-mini".into());
    let err = call(&replay, &client, &conn, &new).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("node answer, model gpt-4o-mini, first user message \"a question never asked"),
        "{msg}"
    );
    assert!(msg.contains("(truncated)"), "{msg}");
    assert!(msg.contains("without --cache replay"), "{msg}");
    assert!(msg.contains(&new.cache_key(&conn)), "{msg}");
    assert!(matches!(err, CacheError::ReplayMiss { .. }));
    assert!(err.provider().is_none());
    assert_eq!(mock.request_count(), 1, "replay never calls the endpoint");
    assert_eq!(entry_files(tmp.path()).len(), 1, "replay never writes");
}

#[tokio::test]
async fn off_never_reads_or_writes() {
    let mock = MockLlm::start();
    let tmp = tempfile::tempdir().unwrap();
    let (client, conn) = (client(), conn(&mock, "k"));
    let req = request("hello");
    let dir = tmp.path().join("cache");
    let off = ResponseCache::new(dir.clone(), CacheMode::Off);
    assert!(!call(&off, &client, &conn, &req).await.unwrap().hit);
    assert!(!call(&off, &client, &conn, &req).await.unwrap().hit);
    assert_eq!(mock.request_count(), 2);
    assert!(!dir.exists(), "off mode wrote to the cache");

    let on = ResponseCache::new(dir.clone(), CacheMode::ReadWrite);
    call(&on, &client, &conn, &req).await.unwrap();
    assert_eq!(mock.request_count(), 3);
    assert!(!call(&off, &client, &conn, &req).await.unwrap().hit);
    assert_eq!(mock.request_count(), 4, "off mode read the cache");
}

#[tokio::test]
async fn a_cache_that_cannot_be_written_does_not_fail_the_call() {
    let tmp = tempfile::tempdir().unwrap();
    let not_a_dir = tmp.path().join("file");
    std::fs::write(&not_a_dir, "x").unwrap();
    let cache = ResponseCache::new(not_a_dir.clone(), CacheMode::ReadWrite);
    assert_eq!(cache.write_warning(), None);
    let got = cache
        .get_or_fetch("abcd1234", "x", || async { Ok(response("fine")) })
        .await
        .unwrap();
    assert_eq!(got.response.output, json!("fine"));
    let warning = cache.write_warning().expect("a warning");
    assert!(warning.contains("1 response was not cached"), "{warning}");
    assert!(
        warning.contains(&not_a_dir.display().to_string()),
        "{warning}"
    );
}

/// Sets an entry's stored time to `days` days ago.
fn age_entry(path: &Path, days: u64) {
    let mut v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let now = v["stored_at"].as_u64().unwrap();
    v["stored_at"] = json!(now - days * 86_400);
    std::fs::write(path, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[tokio::test]
async fn stats_and_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    assert_eq!(cache::stats(&dir).unwrap(), cache::CacheStats::default());
    let cache = ResponseCache::new(dir.clone(), CacheMode::ReadWrite);
    for k in ["aa11", "aa22", "bb33", "cc44"] {
        cache
            .get_or_fetch(k, "x", || async { Ok(response(k)) })
            .await
            .unwrap();
    }
    let s = cache::stats(&dir).unwrap();
    assert_eq!((s.entries, s.corrupt), (4, 0));
    let on_disk: u64 = entry_files(&dir)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(s.bytes, on_disk);
    assert!(s.oldest.is_some() && s.oldest == s.newest);

    age_entry(&dir.join("aa").join("aa11.json"), 10);
    age_entry(&dir.join("bb").join("bb33.json"), 3);
    std::fs::write(dir.join("cc").join("cc99.json"), b"{garbage").unwrap();
    let s = cache::stats(&dir).unwrap();
    assert_eq!((s.entries, s.corrupt), (4, 1));
    assert!(s.oldest.unwrap() + 10 * 86_400 <= s.newest.unwrap() + 1);

    let week = cache::parse_age("7d").unwrap();
    assert_eq!(cache::clear(&dir, Some(week)).unwrap(), 1);
    assert!(!dir.join("aa").join("aa11.json").exists());
    assert!(dir.join("bb").join("bb33.json").exists());
    // A fresh corrupt file is kept by an age-limited clear.
    assert_eq!(cache::stats(&dir).unwrap().corrupt, 1);
    assert_eq!(
        cache::clear(&dir, Some(Duration::from_secs(86_400))).unwrap(),
        1
    );
    assert!(
        !dir.join("bb").exists(),
        "empty shard directories are removed"
    );

    assert_eq!(cache::clear(&dir, None).unwrap(), 3);
    assert_eq!(cache::stats(&dir).unwrap(), cache::CacheStats::default());
    // Cleared entries are misses again.
    let got = cache
        .get_or_fetch("aa22", "x", || async { Ok(response("new")) })
        .await
        .unwrap();
    assert!(!got.hit);
}
