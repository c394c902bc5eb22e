//! The per-endpoint adaptive rate limiter, over real HTTP against the rate-limited mock.

use std::time::{Duration, Instant};

use crate::support::mock_llm::{MockLlm, MockReply};
use flow::chat::Message;
use flow::connection::{Connection, EnvVars, resolve};
use flow::provider::{ClientConfig, LimiterStats, LlmClient, LlmRequest, RetryPolicy};

fn openai(mock: &MockLlm, name: &str) -> Connection {
    let prefix = name.to_ascii_uppercase();
    let pairs = [
        (format!("{prefix}_API_KEY"), "sk-test".to_string()),
        (format!("{prefix}_API_BASE"), mock.openai_base()),
        (format!("{prefix}_MODEL"), "gpt-test".to_string()),
    ];
    resolve(name, &EnvVars::from_pairs(pairs), false).expect("connection resolves")
}

/// Few fault retries, so that only the separate 429 budget can explain "no failures".
fn client(max_in_flight: usize) -> LlmClient {
    LlmClient::with_config(ClientConfig {
        timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_retries: 2,
            base: Duration::from_millis(5),
            cap: Duration::from_secs(2),
        },
        max_in_flight,
        ..ClientConfig::default()
    })
    .unwrap()
}

fn chat(text: &str) -> LlmRequest {
    LlmRequest::chat(vec![Message::new("user", text)])
}

/// Sends `n` requests from `tasks` concurrent tasks; returns how many failed.
async fn drive(client: &LlmClient, conn: &Connection, n: usize, tasks: usize) -> usize {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (client, conn, next) = (client.clone(), conn.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            let mut failed = 0;
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                if let Err(e) = client.complete(&conn, &chat("hi"), None).await {
                    eprintln!("failed: {e}");
                    failed += 1;
                }
            }
            failed
        }));
    }
    let mut failed = 0;
    for h in handles {
        failed += h.await.unwrap();
    }
    failed
}

fn only(stats: &[LimiterStats]) -> &LimiterStats {
    assert_eq!(stats.len(), 1, "{stats:?}");
    &stats[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drives_a_rate_limited_endpoint_at_its_limit_without_failures() {
    let mock = MockLlm::start();
    let (rps, burst, n) = (50.0, 50, 200);
    mock.set_rate_limit(rps, burst);
    let c = client(64);
    let conn = openai(&mock, "limited");
    let t = Instant::now();
    let failed = drive(&c, &conn, n, 64).await;
    let elapsed = t.elapsed();
    let st = only(&c.limiter_stats()).clone();
    let sent_429 = mock.rate_limited_count();
    eprintln!("{n} requests in {elapsed:?}, {sent_429} 429s, stats {st:?}");

    assert_eq!(failed, 0);
    assert_eq!(mock.request_count() as u64, n as u64 + sent_429);
    assert_eq!(st.requests, n as u64 + sent_429);
    assert_eq!(st.rate_limited, sent_429);
    assert_eq!(st.in_flight, 0);
    // The burst is free; the rest can go no faster than the rate.
    let ideal = (n - burst as usize) as f64 / rps;
    assert!(
        elapsed.as_secs_f64() <= ideal / 0.7,
        "achieved {:.0}% of the limit ({elapsed:?} vs ideal {ideal}s)",
        100.0 * ideal / elapsed.as_secs_f64()
    );
    assert!(
        (sent_429 as usize) < n / 4,
        "{sent_429} 429s for {n} requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learns_the_rate_of_an_endpoint_without_quota_headers() {
    let mock = MockLlm::start();
    let (rps, burst, n) = (100.0, 20, 200);
    mock.set_rate_limit(rps, burst);
    mock.set_rate_limit_headers(false);
    let c = client(32);
    let conn = openai(&mock, "headerless");
    let t = Instant::now();
    assert_eq!(drive(&c, &conn, n, 32).await, 0);
    let elapsed = t.elapsed();
    let sent_429 = mock.rate_limited_count();
    eprintln!("{n} requests in {elapsed:?}, {sent_429} 429s");
    let ideal = (n - burst as usize) as f64 / rps;
    assert!(
        elapsed.as_secs_f64() <= ideal / 0.6,
        "{elapsed:?} vs {ideal}s"
    );
    assert!(
        (sent_429 as usize) < n / 4,
        "{sent_429} 429s for {n} requests"
    );
}

#[tokio::test]
async fn retry_after_pauses_every_user_of_the_endpoint() {
    let mock = MockLlm::start();
    mock.push(MockReply::RateLimit {
        retry_after: Some(1),
    });
    let c = client(8);
    let conn = openai(&mock, "paused");
    let first = {
        let (c, conn) = (c.clone(), conn.clone());
        tokio::spawn(async move { c.complete(&conn, &chat("first"), None).await })
    };
    while mock.rate_limited_count() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Others arriving while the endpoint is paused wait too.
    assert!(only(&c.limiter_stats()).paused_for.is_some());
    let t = Instant::now();
    let failed = drive(&c, &conn, 6, 6).await;
    assert_eq!(failed, 0);
    assert!(
        t.elapsed() >= Duration::from_millis(800),
        "{:?}",
        t.elapsed()
    );
    let r = first.await.unwrap().unwrap();
    assert_eq!(r.retries, 1);

    let times = mock.request_times();
    assert_eq!(times.len(), 8);
    for later in &times[1..] {
        let gap = later.duration_since(times[0]);
        assert!(
            gap >= Duration::from_millis(950),
            "a request went after {gap:?}"
        );
    }
    let st = only(&c.limiter_stats()).clone();
    assert_eq!((st.rate_limited, st.retries, st.requests), (1, 1, 8));
}

#[tokio::test]
async fn exhausted_request_quota_holds_the_next_request_until_reset() {
    let mock = MockLlm::start();
    // One request per 500 ms: the first reply says remaining 0, reset 500ms.
    mock.set_rate_limit(2.0, 1);
    let c = client(4);
    let conn = openai(&mock, "quota");
    c.complete(&conn, &chat("one"), None).await.unwrap();
    let held = only(&c.limiter_stats()).paused_for;
    assert!(
        held.is_some_and(|d| d > Duration::from_millis(300)),
        "{held:?}"
    );
    let r = c.complete(&conn, &chat("two"), None).await.unwrap();
    assert_eq!(r.retries, 0);
    assert_eq!(mock.rate_limited_count(), 0);
    let times = mock.request_times();
    assert_eq!(times.len(), 2);
    let gap = times[1].duration_since(times[0]);
    assert!(
        gap >= Duration::from_millis(450),
        "second request after {gap:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_shrinks_on_429s_and_recovers_after() {
    let mock = MockLlm::start();
    mock.set_rate_limit(40.0, 1);
    let c = client(16);
    let conn = openai(&mock, "recover");
    assert_eq!(drive(&c, &conn, 16, 16).await, 0);
    let cut = only(&c.limiter_stats()).clone();
    assert!(cut.rate_limited > 0);
    assert!(cut.limit < 16, "{cut:?}");

    mock.clear_rate_limit();
    assert_eq!(drive(&c, &conn, 300, 16).await, 0);
    let back = only(&c.limiter_stats()).clone();
    assert_eq!(back.limit, 16, "{back:?}");
    assert_eq!(back.max_in_flight, 16);
    assert_eq!(back.rate_limited, cut.rate_limited);
}

#[tokio::test]
async fn endpoints_have_independent_limiters() {
    let mock = MockLlm::start();
    let other = MockLlm::start();
    mock.push(MockReply::RateLimit {
        retry_after: Some(1),
    });
    let c = client(4);
    let a = openai(&mock, "first_conn");
    let b = openai(&other, "second_conn");
    let paused = {
        let (c, a) = (c.clone(), a.clone());
        tokio::spawn(async move { c.complete(&a, &chat("a"), None).await })
    };
    while mock.rate_limited_count() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Another connection, and another model of the paused one, are not held.
    let t = Instant::now();
    c.complete(&b, &chat("b"), None).await.unwrap();
    let mut other_model = chat("c");
    other_model.model = Some("gpt-other".to_string());
    c.complete(&a, &other_model, None).await.unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert!(!paused.is_finished());
    paused.await.unwrap().unwrap();

    let stats = c.limiter_stats();
    assert_eq!(stats.len(), 3, "{stats:?}");
    let find = |conn: &str, model: &str| {
        stats
            .iter()
            .find(|s| s.connection == conn && s.model.as_deref() == Some(model))
            .unwrap_or_else(|| panic!("no limiter for {conn}/{model}: {stats:?}"))
    };
    assert_eq!(find("first_conn", "gpt-test").rate_limited, 1);
    assert_eq!(find("first_conn", "gpt-other").rate_limited, 0);
    assert_eq!(find("second_conn", "gpt-test").requests, 1);
    assert_eq!(
        find("second_conn", "gpt-test").endpoint,
        other.openai_base()
    );
}

/// Benchmark (`cargo test --test it limiter:: -- --ignored --nocapture`): lines/s against a
/// 200 requests/s endpoint, with and without `x-ratelimit-*` headers, for several bursts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn benchmark_rate_limited_endpoint() {
    for (headers, burst) in [
        (true, 200),
        (true, 20),
        (false, 200),
        (false, 20),
        (false, 1),
    ] {
        let mock = MockLlm::start();
        let (rps, n) = (200.0, 2000);
        mock.set_rate_limit(rps, burst);
        mock.set_rate_limit_headers(headers);
        let c = client(64);
        let conn = openai(&mock, "bench");
        let t = Instant::now();
        let failed = drive(&c, &conn, n, 64).await;
        let secs = t.elapsed().as_secs_f64();
        let st = only(&c.limiter_stats()).clone();
        let ideal = (n - burst as usize) as f64 / rps;
        println!(
            "headers={headers} burst={burst}: {n} lines in {secs:.2}s = {:.0}/s ({:.0}% of limit), \
             {} 429s, {failed} failed, final limit {}",
            n as f64 / secs,
            100.0 * ideal / secs,
            mock.rate_limited_count(),
            st.limit
        );
        assert_eq!(failed, 0);
    }
}
