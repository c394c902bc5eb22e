//! End-to-end benchmark of `flow run --data` against the loopback mock LLM (docs/performance.md).
//!
//! ```sh
//! cargo bench --bench batch                 # every scenario; prints a Markdown table
//! cargo bench --bench batch -- --quick      # smaller datasets (a smoke run)
//! cargo bench --bench batch -- --serve 8091 --latency-ms 50   # only the mock, for other tools
//! cargo bench --bench batch -- --pool       # only the endpoint-pool scenario
//! ```
//!
//! It builds nothing itself: `cargo bench` compiles the release `flow` binary first (it is a
//! target of this package), and the benchmark runs it as a user would, measuring wall time,
//! the CPU time of the `flow` process tree (from this process's `cutime`/`cstime`), and peak
//! RSS of the whole tree (polled from /proc). Results go in docs/performance.md by hand.

#[path = "../tests/it/support/mock_llm.rs"]
mod mock_llm;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mock_llm::MockLlm;

const KEY: &str = "sk-bench-0123456789abcdef";

const FLOW: &str = "inputs:\n  question: {type: string}\noutputs:\n  answer: {reference: '${ask.output}'}\nnodes:\n- name: ask\n  type: llm\n  source: {type: code, path: ask.jinja2}\n  connection: open_ai_connection\n  api: chat\n  inputs:\n    model: gpt-4o-mini\n    temperature: 0\n    max_tokens: 64\n    question: ${inputs.question}\n";

const PROMPT: &str = "# system:\nYou answer in one short sentence.\n# user:\n{{question}}\n";

struct Measure {
    wall: Duration,
    cpu: Duration,
    peak_rss_kib: u64,
    status: i32,
    stderr: String,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        serve(&args, i);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let flow_bin = flow_binary();
    let work = tempfile::tempdir().expect("temp dir");
    let root = work.path();
    std::fs::create_dir_all(root.join("bench")).expect("mkdir");
    std::fs::write(root.join("bench/flow.dag.yaml"), FLOW).expect("write flow");
    std::fs::write(root.join("bench/ask.jinja2"), PROMPT).expect("write prompt");
    if args.iter().any(|a| a == "--pool") {
        println!("{}", pool(&flow_bin, root, quick));
        return;
    }

    let n10k = if quick { 1_000 } else { 10_000 };
    let n100k = if quick { 5_000 } else { 100_000 };
    dataset(&root.join("d10k.jsonl"), n10k);
    dataset(&root.join("d100k.jsonl"), n100k);

    let mut rows: Vec<String> = Vec::new();
    let mock = MockLlm::start();
    mock.set_api_key(KEY);
    mock.set_recording(false);
    let base = format!("{}/v1", mock.url());

    // 1. 50 ms latency, concurrency 64.
    mock.set_latency(Duration::from_millis(50));
    let m = batch(&flow_bin, root, &base, "d10k.jsonl", 64, &[]);
    let rate = n10k as f64 / m.wall.as_secs_f64();
    rows.push(format!(
        "| 50 ms latency, --concurrency 64, {n10k} lines | {rate:.0} lines/s ({:.0}% of the ideal 1,280) | {:.2} s wall, {:.1} µs CPU/line, peak RSS {:.1} MB |",
        100.0 * rate / 1280.0,
        m.wall.as_secs_f64(),
        m.cpu.as_secs_f64() * 1e6 / n10k as f64,
        m.peak_rss_kib as f64 / 1024.0
    ));
    check(&m);

    // 2. 0 ms latency: the tool's own overhead.
    mock.set_latency(Duration::ZERO);
    let m = batch(&flow_bin, root, &base, "d10k.jsonl", 64, &[]);
    let rate = n10k as f64 / m.wall.as_secs_f64();
    rows.push(format!(
        "| 0 ms latency, --concurrency 64, {n10k} lines | {rate:.0} lines/s | {:.1} µs CPU/line in `flow`, peak RSS {:.1} MB |",
        m.cpu.as_secs_f64() * 1e6 / n10k as f64,
        m.peak_rss_kib as f64 / 1024.0
    ));
    check(&m);

    // 3. Cache hits: the same run again answers from .flow/cache.
    let m = batch(&flow_bin, root, &base, "d10k.jsonl", 64, &["--cache", "on"]);
    let again = batch(&flow_bin, root, &base, "d10k.jsonl", 64, &["--cache", "on"]);
    rows.push(format!(
        "| re-run of an unchanged {n10k}-line run (all cache hits) | {:.0} lines/s | {:.2} s wall (first run {:.2} s) |",
        n10k as f64 / again.wall.as_secs_f64(),
        again.wall.as_secs_f64(),
        m.wall.as_secs_f64()
    ));
    check(&again);

    // 4. Memory at 100k lines.
    let m = batch(&flow_bin, root, &base, "d100k.jsonl", 64, &[]);
    rows.push(format!(
        "| 0 ms latency, {n100k} lines | {:.0} lines/s | peak RSS {:.1} MB (whole process tree) |",
        n100k as f64 / m.wall.as_secs_f64(),
        m.peak_rss_kib as f64 / 1024.0
    ));
    check(&m);

    // 5. A rate-limited endpoint: 200 requests/s, 429 with Retry-After beyond it.
    let limited = if quick { 400 } else { 2_000 };
    dataset(&root.join("dlimited.jsonl"), limited);
    mock.set_latency(Duration::from_millis(20));
    mock.set_rate_limit(200.0, 20);
    let before = mock.rate_limited_count();
    let m = batch(&flow_bin, root, &base, "dlimited.jsonl", 64, &[]);
    let throttled = mock.rate_limited_count() - before;
    let failed = failed_lines(&m.stderr);
    rows.push(format!(
        "| mock limited to 200 requests/s, {limited} lines, --concurrency 64 | {:.0} lines/s ({:.0}% of the limit) | {throttled} responses were 429, {failed} failed lines |",
        limited as f64 / m.wall.as_secs_f64(),
        100.0 * limited as f64 / m.wall.as_secs_f64() / 200.0
    ));
    mock.clear_rate_limit();

    // 6. One line, start to exit.
    mock.set_latency(Duration::ZERO);
    let mut single: Vec<f64> = (0..20)
        .map(|_| {
            let m = run(
                &flow_bin,
                root,
                &base,
                &["run", "bench", "--inputs", "question=hi", "--no-cache"],
            );
            check(&m);
            m.wall.as_secs_f64() * 1000.0
        })
        .collect();
    single.sort_by(f64::total_cmp);
    rows.push(format!(
        "| single-line `flow run` (start, load, one request, write, exit) | median {:.1} ms | min {:.1} ms, max {:.1} ms over 20 runs |",
        single[10], single[0], single[19]
    ));

    // 7. validate on a 20-node flow.
    let mut yaml = String::from(
        "inputs: {q: {type: string}}\noutputs:\n  o: {reference: '${n19.output}'}\nnodes:\n",
    );
    for i in 0..20 {
        let input = if i == 0 {
            "${inputs.q}".to_string()
        } else {
            format!("${{n{}.output}}", i - 1)
        };
        yaml.push_str(&format!("- {{name: n{i}, type: prompt, source: {{type: code, path: p.jinja2}}, inputs: {{x: '{input}'}}}}\n"));
    }
    std::fs::create_dir_all(root.join("big")).expect("mkdir");
    std::fs::write(root.join("big/flow.dag.yaml"), yaml).expect("write");
    std::fs::write(root.join("big/p.jinja2"), "{{x}}!").expect("write");
    let mut validate: Vec<f64> = (0..20)
        .map(|_| {
            run(&flow_bin, root, &base, &["validate", "big"])
                .wall
                .as_secs_f64()
                * 1000.0
        })
        .collect();
    validate.sort_by(f64::total_cmp);
    rows.push(format!(
        "| `flow validate` on a 20-node flow | median {:.1} ms | process start to exit |",
        validate[10]
    ));

    rows.push(pool(&flow_bin, root, quick));

    println!("| scenario | throughput / time | details |");
    println!("|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}

/// A pool of three mocks at 50 ms (`OPEN_AI_CONNECTION_POOL=m1,m2,m3`), 64 lines in flight per
/// member (`--concurrency 192`): lines/s against the sum of the members' ideals.
fn pool(bin: &Path, root: &Path, quick: bool) -> String {
    let n = if quick { 3_000 } else { 20_000 };
    dataset(&root.join("dpool.jsonl"), n);
    let members: Vec<MockLlm> = (0..3)
        .map(|_| {
            let m = MockLlm::start();
            m.set_api_key(KEY);
            m.set_recording(false);
            m.set_latency(Duration::from_millis(50));
            m
        })
        .collect();
    let mut env = vec![(
        "OPEN_AI_CONNECTION_POOL".to_string(),
        "m1,m2,m3".to_string(),
    )];
    for (i, m) in members.iter().enumerate() {
        env.push((format!("M{}_API_KEY", i + 1), KEY.to_string()));
        env.push((format!("M{}_API_BASE", i + 1), format!("{}/v1", m.url())));
    }
    let args = [
        "run",
        "bench",
        "--data",
        "dpool.jsonl",
        "--concurrency",
        "192",
        "--no-cache",
    ];
    let m = run_env(bin, root, &env, &args);
    check(&m);
    let ideal = 3.0 * 64.0 / 0.05;
    let rate = n as f64 / m.wall.as_secs_f64();
    let served: Vec<String> = members
        .iter()
        .map(|m| m.request_count().to_string())
        .collect();
    format!(
        "| pool of 3 mocks at 50 ms, --concurrency 192 (64 per member), {n} lines | {rate:.0} lines/s ({:.0}% of the ideal {ideal:.0}) | requests per member {}; {:.1} µs CPU/line |",
        100.0 * rate / ideal,
        served.join(" / "),
        m.cpu.as_secs_f64() * 1e6 / n as f64
    )
}

/// `--serve PORT [--latency-ms N] [--rate RPS]`: run only the mock until killed.
fn serve(args: &[String], at: usize) {
    let port: u16 = args
        .get(at + 1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(8091);
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<f64>().ok())
    };
    let mock = MockLlm::start_on(port);
    mock.set_recording(false);
    if let Some(ms) = value("--latency-ms") {
        mock.set_latency(Duration::from_secs_f64(ms / 1000.0));
    }
    if let Some(rate) = value("--rate") {
        mock.set_rate_limit(rate, 20);
    }
    println!("mock LLM at {}/v1 (any key); Ctrl-C to stop", mock.url());
    let _ = std::io::stdout().flush();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn flow_binary() -> PathBuf {
    // target/release/deps/batch-xxxx → target/release/flow
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("flow");
    assert!(
        bin.is_file(),
        "{} not found: run through `cargo bench`",
        bin.display()
    );
    bin
}

fn dataset(path: &Path, n: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create dataset"));
    for i in 0..n {
        writeln!(f, "{{\"question\": \"What is the number {i} in words?\"}}").expect("write row");
    }
}

fn batch(
    bin: &Path,
    root: &Path,
    base: &str,
    data: &str,
    concurrency: usize,
    extra: &[&str],
) -> Measure {
    let c = concurrency.to_string();
    let mut args = vec!["run", "bench", "--data", data, "--concurrency", &c];
    if !extra.contains(&"--cache") {
        args.push("--no-cache");
    }
    args.extend_from_slice(extra);
    run(bin, root, base, &args)
}

fn run(bin: &Path, root: &Path, base: &str, args: &[&str]) -> Measure {
    let env = [
        ("OPEN_AI_CONNECTION_API_KEY".to_string(), KEY.to_string()),
        ("OPEN_AI_CONNECTION_API_BASE".to_string(), base.to_string()),
    ];
    run_env(bin, root, &env, args)
}

fn run_env(bin: &Path, root: &Path, env: &[(String, String)], args: &[&str]) -> Measure {
    let cpu_before = children_cpu();
    let started = Instant::now();
    let mut child = Command::new(bin)
        .args(args)
        .current_dir(root)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn flow");
    let pid = child.id();
    let mut peak = 0u64;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        peak = peak.max(tree_rss_kib(pid));
        std::thread::sleep(Duration::from_millis(10));
    };
    let wall = started.elapsed();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    Measure {
        wall,
        cpu: children_cpu().saturating_sub(cpu_before),
        peak_rss_kib: peak,
        status: status.code().unwrap_or(-1),
        stderr,
    }
}

fn check(m: &Measure) {
    assert_eq!(m.status, 0, "flow failed:\n{}", m.stderr);
}

fn failed_lines(stderr: &str) -> usize {
    // The summary line: "✗ 1990/2000 lines succeeded · 10 failed · ...".
    stderr
        .lines()
        .filter(|l| l.contains("lines succeeded"))
        .flat_map(|l| l.split(" · "))
        .find_map(|part| {
            part.strip_suffix(" failed")
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time of this process's waited-for children (`cutime` + `cstime` in /proc/self/stat).
fn children_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the `)`: state is field 3, so cutime (16) and cstime (17) are at 13 and 14.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let hz = 100.0;
    Duration::from_secs_f64((ticks(13) + ticks(14)) as f64 / hz)
}

/// Summed VmRSS of `pid` and all its descendants, in KiB.
fn tree_rss_kib(pid: u32) -> u64 {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let after = stat.rsplit(')').next().unwrap_or("");
            if let Some(ppid) = after
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u32>().ok())
            {
                parents.push((p, ppid));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let cur = tree[i];
        tree.extend(parents.iter().filter(|(_, pp)| *pp == cur).map(|(p, _)| *p));
        i += 1;
    }
    tree.iter()
        .map(|p| {
            std::fs::read_to_string(format!("/proc/{p}/status"))
                .unwrap_or_default()
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                })
                .unwrap_or(0)
        })
        .sum()
}
