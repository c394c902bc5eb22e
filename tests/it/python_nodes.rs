//! Python tool nodes against the real `python3`, with fixtures in `tests/fixtures/python/`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flow::python::{PythonCall, PythonConfig, PythonError, PythonPool};
use serde_json::{Map, Value, json};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/python")
}

fn pool(size: usize) -> PythonPool {
    PythonPool::new(PythonConfig {
        python: None,
        working_dir: fixtures(),
        size,
        env: vec![("FLOW_TEST_VAR".into(), "set by flow".into())],
    })
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn call(file: &str, kwargs: Value) -> PythonCall {
    PythonCall {
        file: PathBuf::from(file),
        kwargs: obj(kwargs),
        ..PythonCall::default()
    }
}

#[tokio::test]
async fn shim_is_imported_not_a_real_promptflow() {
    let pool = pool(1);
    let out = pool
        .call(call("imports.py", json!({"name": "x"})))
        .await
        .unwrap();
    let shim_root = std::env::temp_dir().canonicalize().unwrap();
    let file = PathBuf::from(out.output["promptflow"].as_str().unwrap());
    let file = file.canonicalize().unwrap();
    assert!(
        file.starts_with(&shim_root),
        "{file:?} is not in the shim dir"
    );
    assert!(file.to_string_lossy().contains("flow-python-"), "{file:?}");
    assert!(
        out.output["core"]
            .as_str()
            .unwrap()
            .contains("flow-python-")
    );
    assert_eq!(out.output["same_tool"], json!(true));
    assert_eq!(out.output["same_metric"], json!(true));
    assert_eq!(out.output["prompt_is_str"], json!(true));
    assert_eq!(out.output["traced"], json!("x!"));
    assert_eq!(
        out.output["classes"],
        json!([
            "AzureOpenAIConnection",
            "OpenAIConnection",
            "CustomConnection",
            "ServerlessConnection"
        ])
    );
    pool.shutdown().await;
}

#[tokio::test]
async fn json_values_round_trip_with_int_float_distinct() {
    let pool = pool(1);
    let cases = [
        (json!("text ünï"), "str"),
        (json!(42), "int"),
        (json!(-7.0), "float"),
        (json!(2.5), "float"),
        (json!(true), "bool"),
        (json!(null), "NoneType"),
        (json!([1, "a", [2.0], {"k": null}]), "list"),
        (json!({"b": 1, "a": {"nested": [true]}}), "dict"),
        (json!(9007199254740993_i64), "int"),
    ];
    for (value, ty) in cases {
        let out = pool
            .call(call("echo.py", json!({"value": value})))
            .await
            .unwrap();
        assert_eq!(out.output["value"], value, "{value}");
        assert_eq!(out.output["type"], json!(ty), "{value}");
    }
    // key order of objects is kept
    let out = pool
        .call(call("echo.py", json!({"value": {"z": 1, "a": 2}})))
        .await
        .unwrap();
    let keys: Vec<&String> = out.output["value"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["z", "a"]);
}

#[tokio::test]
async fn bypassed_inputs_use_defaults_or_none() {
    let pool = pool(1);
    let mut c = call("defaults.py", json!({"a": 1, "b": "given", "d": 9}));
    c.bypassed = vec!["b".into(), "a".into()];
    let out = pool.call(c).await.unwrap();
    assert_eq!(
        out.output,
        json!({"a": null, "b": "B default", "c": null, "d": 9})
    );
}

#[tokio::test]
async fn inspect_reports_signature_and_connection_types() {
    let pool = pool(1);
    let sig = pool.inspect(Path::new("defaults.py"), None).await.unwrap();
    assert_eq!(sig.function, "with_defaults");
    let names: Vec<_> = sig
        .params
        .iter()
        .map(|p| (p.name.as_str(), p.has_default))
        .collect();
    assert_eq!(names, [("a", false), ("b", true), ("c", true), ("d", true)]);
    assert_eq!(sig.params[1].annotation.as_deref(), Some("str"));
    assert!(!sig.accepts_kwargs);

    let sig = pool.inspect(Path::new("conns.py"), None).await.unwrap();
    let types: Vec<_> = sig
        .params
        .iter()
        .map(|p| p.connection_type.as_deref())
        .collect();
    assert_eq!(
        types,
        [
            Some("AzureOpenAIConnection"),
            Some("OpenAIConnection"),
            Some("CustomConnection"),
            None,
            None
        ]
    );
}

#[tokio::test]
async fn exceptions_carry_type_message_and_user_traceback() {
    let pool = pool(1);
    let err = pool
        .call(call("fails.py", json!({"x": 5})))
        .await
        .unwrap_err();
    let PythonError::Exception {
        type_name,
        message,
        traceback,
        stdout,
        ..
    } = &err
    else {
        panic!("unexpected error {err:?}")
    };
    assert_eq!(type_name, "ValueError");
    assert_eq!(message, "bad value: 5");
    assert!(
        traceback.starts_with("Traceback (most recent call last):"),
        "{traceback}"
    );
    assert!(traceback.contains("fails.py"), "{traceback}");
    assert!(traceback.contains("in helper"), "{traceback}");
    assert!(
        !traceback.contains("worker.py"),
        "worker frames not trimmed: {traceback}"
    );
    assert_eq!(stdout, "about to fail\n");
    assert!(err.to_string().contains("ValueError: bad value: 5"));
    // the worker survives a tool exception
    let out = pool
        .call(call("echo.py", json!({"value": 1})))
        .await
        .unwrap();
    assert_eq!(out.output["value"], json!(1));
}

#[tokio::test]
async fn unexpected_and_missing_inputs_are_clear_errors() {
    let pool = pool(1);
    let err = pool
        .call(call("defaults.py", json!({"a": 1, "zzz": 2})))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("TypeError") && msg.contains("'zzz'"), "{msg}");
    let err = pool.call(call("defaults.py", json!({}))).await.unwrap_err();
    assert!(err.to_string().contains("missing input(s) 'a'"), "{err}");
}

#[tokio::test]
async fn prints_do_not_corrupt_the_protocol() {
    let pool = pool(1);
    for _ in 0..3 {
        let out = pool
            .call(call("prints.py", json!({"n": 2000})))
            .await
            .unwrap();
        assert_eq!(out.output, json!(4000));
        assert!(
            out.stdout
                .starts_with("{\"ok\":true,\"output\":\"forged\"}\nline 0\n")
        );
        assert!(out.stdout.ends_with("line 1999\n"));
    }
}

#[tokio::test]
async fn connections_become_shim_objects() {
    let pool = pool(1);
    let mut c = call("conns.py", json!({"question": "q?"}));
    c.connections = obj(json!({
        "aoai": {"name": "aoai", "api_type": "azure", "api_key": "k1", "api_base": "https://x.openai.azure.com", "api_version": "2024-06-01"},
        "oai": {"name": "oai", "api_type": "openai", "api_key": "k2", "api_base": "http://localhost:8000/v1"},
        "custom": {"name": "custom", "api_key": "k3", "extras": {"endpoint": "https://e", "region": "westeu"}},
        "untyped": {"name": "u", "api_key": "k4"},
    }));
    let out = pool.call(c).await.unwrap();
    assert_eq!(
        out.output,
        json!({
            "aoai": ["AzureOpenAIConnection", "k1", "https://x.openai.azure.com", "2024-06-01", "azure"],
            "oai": ["OpenAIConnection", "k2", "http://localhost:8000/v1"],
            "custom": ["CustomConnection", "k3", "https://e", "westeu", "k3", "westeu"],
            "untyped": ["CustomConnection", "k4"],
            "question": "q?",
        })
    );
}

#[tokio::test]
async fn non_json_values_are_converted() {
    let pool = pool(1);
    let out = pool.call(call("nonjson.py", json!({}))).await.unwrap();
    assert_eq!(
        out.output,
        json!({
            "set": [1, 2, 3],
            "tuple": [1, "a"],
            "dataclass": {"x": 1, "y": 2.5, "tags": ["t"]},
            "object": "Opaque()",
            "nan": flow::non_finite::number(f64::NAN),
            "inf": flow::non_finite::number(f64::INFINITY),
            "enum": "red",
            "when": "2024-01-02T03:04:05Z",
            "int_key": {"1": "one"},
            "bytes": "b'ab'",
            "int": 3,
            "float": 3.0,
        })
    );
    assert!(out.output["float"].is_f64() && out.output["int"].is_i64());
}

#[tokio::test]
async fn generators_are_joined() {
    let pool = pool(1);
    let out = pool
        .call(call("generator.py", json!({"n": 3})))
        .await
        .unwrap();
    assert_eq!(out.output, json!("chunk0 chunk1 chunk2 "));
}

#[tokio::test]
async fn log_metric_is_collected_per_call() {
    let pool = pool(1);
    let out = pool
        .call(call("metrics.py", json!({"values": [1, 0, 1, 1]})))
        .await
        .unwrap();
    assert_eq!(out.output, json!(4));
    assert_eq!(out.metrics.len(), 3);
    assert_eq!(out.metrics[0], ("accuracy".to_string(), 0.75));
    assert_eq!(out.metrics[1], ("count".to_string(), 4.0));
    assert!(out.metrics[2].1.is_nan());
    // metrics do not leak into the next call
    let out = pool
        .call(call("echo.py", json!({"value": 1})))
        .await
        .unwrap();
    assert!(out.metrics.is_empty());

    let err = pool
        .call(call("bad_metric.py", json!({})))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("'score'") && msg.contains("must be a number"),
        "{msg}"
    );
}

#[tokio::test]
async fn async_tools_run() {
    let pool = pool(1);
    for x in 0..3 {
        let out = pool
            .call(call("async_tool.py", json!({"x": x})))
            .await
            .unwrap();
        assert_eq!(out.output, json!(x + 1));
    }
}

#[tokio::test]
async fn a_dead_worker_fails_its_call_and_is_replaced() {
    let pool = pool(1);
    let pid_before = pool
        .call(call("crash.py", json!({"crash": false})))
        .await
        .unwrap();
    let err = pool
        .call(call("crash.py", json!({"crash": true})))
        .await
        .unwrap_err();
    let PythonError::WorkerDied { stderr_tail } = &err else {
        panic!("unexpected error {err:?}")
    };
    assert!(stderr_tail.contains("crashing on purpose"), "{stderr_tail}");
    assert!(stderr_tail.contains("exit status: 1"), "{stderr_tail}");
    let pid_after = pool
        .call(call("crash.py", json!({"crash": false})))
        .await
        .unwrap();
    assert_ne!(
        pid_before.output, pid_after.output,
        "the worker was not replaced"
    );
}

#[tokio::test]
async fn calls_run_in_parallel_up_to_pool_size() {
    let n = 4;
    let pool = pool(n);
    // warm up all workers so process start-up is not measured
    let warm = (0..n).map(|_| pool.call(call("sleep.py", json!({"seconds": 0.3}))));
    futures::future::try_join_all(warm).await.unwrap();

    let start = Instant::now();
    let calls = (0..n).map(|_| pool.call(call("sleep.py", json!({"seconds": 0.5}))));
    let outs = futures::future::try_join_all(calls).await.unwrap();
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_millis(900), "took {elapsed:?}");
    let mut pids: Vec<_> = outs.iter().map(|o| o.output.as_i64().unwrap()).collect();
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), n, "calls shared workers");

    // one more call than workers has to wait for a free one
    let start = Instant::now();
    let calls = (0..n + 1).map(|_| pool.call(call("sleep.py", json!({"seconds": 0.3}))));
    futures::future::try_join_all(calls).await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(600),
        "more than `size` ran at once"
    );
    pool.shutdown().await;
}

#[tokio::test]
async fn tool_selection_errors() {
    let pool = pool(1);
    let err = pool
        .call(call("two_tools.py", json!({"x": 1})))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PythonError::AmbiguousTool { found, .. } if found == &["first", "second"]),
        "{err:?}"
    );
    assert!(err.to_string().contains("function"), "{err}");
    let mut c = call("two_tools.py", json!({"x": 1}));
    c.function = Some("second".into());
    assert_eq!(pool.call(c).await.unwrap().output, json!("second"));
    let mut c = call("two_tools.py", json!({"x": 1}));
    c.function = Some("third".into());
    let err = pool.call(c).await.unwrap_err();
    assert!(
        matches!(err, PythonError::FunctionNotFound { .. }),
        "{err:?}"
    );

    let err = pool.call(call("no_tool.py", json!({}))).await.unwrap_err();
    assert!(matches!(err, PythonError::NoTool { .. }), "{err:?}");

    let err = pool.call(call("missing.py", json!({}))).await.unwrap_err();
    assert!(matches!(err, PythonError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.py"));
}

#[tokio::test]
async fn syntax_errors_name_file_and_line() {
    let pool = pool(1);
    let err = pool
        .call(call("syntax_error.py", json!({"x": 1})))
        .await
        .unwrap_err();
    let PythonError::Load {
        type_name, message, ..
    } = &err
    else {
        panic!("unexpected error {err:?}")
    };
    assert_eq!(type_name, "SyntaxError");
    assert!(
        message.contains("syntax_error.py") && message.contains("line 5"),
        "{message}"
    );
    let shown = err.to_string();
    assert!(shown.contains("syntax_error.py"), "{shown}");
}

#[tokio::test]
async fn runs_in_the_flow_directory_with_its_environment() {
    let pool = pool(1);
    let out = pool.call(call("env_cwd.py", json!({}))).await.unwrap();
    assert_eq!(
        PathBuf::from(out.output["cwd"].as_str().unwrap())
            .canonicalize()
            .unwrap(),
        fixtures().canonicalize().unwrap()
    );
    assert_eq!(out.output["env"], json!("set by flow"));
    assert_eq!(out.output["helper"], json!("from the flow directory"));
}

#[tokio::test]
async fn missing_interpreter_is_a_clear_error() {
    let pool = PythonPool::new(PythonConfig {
        python: Some(PathBuf::from("/nonexistent/python3")),
        working_dir: fixtures(),
        size: 1,
        env: vec![],
    });
    let err = pool
        .call(call("echo.py", json!({"value": 1})))
        .await
        .unwrap_err();
    assert!(matches!(err, PythonError::Spawn { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("install Python 3.9+ or set FLOW_PYTHON"),
        "{err}"
    );
}

#[tokio::test]
async fn shutdown_refuses_new_calls() {
    let pool = pool(1);
    pool.call(call("echo.py", json!({"value": 1})))
        .await
        .unwrap();
    pool.shutdown().await;
    let err = pool
        .call(call("echo.py", json!({"value": 1})))
        .await
        .unwrap_err();
    assert!(matches!(err, PythonError::Shutdown), "{err:?}");
}

#[tokio::test]
async fn round_trip_overhead_is_small() {
    let pool = pool(1);
    pool.call(call("echo.py", json!({"value": 0})))
        .await
        .unwrap();
    let n = 500;
    let start = Instant::now();
    for i in 0..n {
        pool.call(call("echo.py", json!({"value": i})))
            .await
            .unwrap();
    }
    let per_call = start.elapsed() / n;
    // generous bound for a shared, unoptimised debug build; typical is far lower
    assert!(per_call < Duration::from_millis(2), "{per_call:?} per call");
    eprintln!("python round trip: {per_call:?} per call");
}

#[tokio::test]
async fn async_tracebacks_and_import_errors_point_at_user_code() {
    let pool = pool(1);
    let err = pool
        .call(call("async_tool.py", json!({"x": "a"})))
        .await
        .unwrap_err();
    let PythonError::Exception {
        type_name,
        traceback,
        ..
    } = &err
    else {
        panic!("unexpected error {err:?}")
    };
    assert_eq!(type_name, "TypeError");
    assert!(!traceback.contains("asyncio"), "{traceback}");
    assert!(traceback.contains("async_tool.py\", line 9"), "{traceback}");

    let err = pool
        .call(call("missing_import.py", json!({})))
        .await
        .unwrap_err();
    let PythonError::Load {
        type_name,
        message,
        traceback,
        ..
    } = &err
    else {
        panic!("unexpected error {err:?}")
    };
    assert_eq!(type_name, "ModuleNotFoundError");
    assert!(message.contains("FLOW_PYTHON"), "{message}");
    assert!(
        traceback.contains("missing_import.py\", line 1"),
        "{traceback}"
    );
}

#[tokio::test]
async fn tool_files_are_imported_once_per_worker() {
    let pool = pool(1);
    for n in 1..=3 {
        let out = pool.call(call("counter.py", json!({}))).await.unwrap();
        assert_eq!(out.output, json!([1, n]));
    }
    // the same file through another path spelling is the same module
    let out = pool.call(call("./counter.py", json!({}))).await.unwrap();
    assert_eq!(out.output, json!([1, 4]));
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn shutdown_kills_the_workers() {
    let pool = pool(2);
    let a = pool.call(call("sleep.py", json!({"seconds": 0.0})));
    let b = pool.call(call("sleep.py", json!({"seconds": 0.2})));
    let (a, b) = futures::future::join(a, b).await;
    let pids = [a.unwrap().output, b.unwrap().output];
    for pid in &pids {
        assert!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "worker {pid} not running"
        );
    }
    pool.shutdown().await;
    for pid in &pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "worker {pid} still running"
        );
    }
}

/// `environment_variables` reach Python as promptflow sets them: `str(value)` (`True`,
/// `1.0`), lists and objects as `json.dumps`, and `${connection.field}` resolved to that field
/// of the connection; an unknown connection or field is a located error.
#[test]
fn environment_variables_are_formatted_and_resolved_as_promptflow_does() {
    let ctx = crate::support::context::TestContext::with_mock();
    let flow = "environment_variables:\n  KEY: ${open_ai_connection.api_key}\n  BASE: ${open_ai_connection.api_base}\n  FLAG: true\n  NUM: 1.0\n  CFG: {a: 1, b: [x, 2]}\n  PLAIN: text\ninputs: {}\noutputs:\n  env: {reference: '${show.output}'}\nnodes:\n- {name: show, type: python, source: {type: code, path: show.py}}\n";
    ctx.flow(
        "envs",
        &[
            ("flow.dag.yaml", flow),
            (
                "show.py",
                "import os\nfrom promptflow import tool\n\n@tool\ndef show() -> dict:\n    return {k: os.environ.get(k) for k in ['KEY', 'BASE', 'FLAG', 'NUM', 'CFG', 'PLAIN']}\n",
            ),
        ],
    );
    let run = ctx.run(&["run", "envs", "--output", "json"]);
    let out = run.expect_code(0).json();
    let env = &out["outputs"]["env"];
    assert_eq!(env["KEY"], crate::support::context::TEST_KEY, "{env}");
    assert_eq!(env["BASE"], format!("{}/v1", ctx.mock().url()), "{env}");
    assert_eq!(env["FLAG"], "True");
    assert_eq!(env["NUM"], "1.0");
    assert_eq!(env["CFG"], "{\"a\": 1, \"b\": [\"x\", 2]}");
    assert_eq!(env["PLAIN"], "text");

    let broken = flow.replace("${open_ai_connection.api_key}", "${no_such_conn.api_key}");
    ctx.write("envs/flow.dag.yaml", &broken);
    ctx.run(&["run", "envs"])
        .expect_code(2)
        .stderr_has("environment variable `KEY` references connection `no_such_conn`")
        .stderr_has("flow.dag.yaml:2:");
    let broken = flow.replace(
        "${open_ai_connection.api_key}",
        "${open_ai_connection.nope}",
    );
    ctx.write("envs/flow.dag.yaml", &broken);
    ctx.run(&["run", "envs"])
        .expect_code(2)
        .stderr_has("connection `open_ai_connection` has no field `nope`")
        .stderr_has("its fields: name, api_key");
}

/// Tool code that imports promptflow's input settings and assistant contracts runs unchanged.
#[test]
fn tools_importing_input_settings_and_assistant_definitions_run() {
    let ctx = crate::support::context::TestContext::new();
    ctx.flow(
        "imports",
        &[
            (
                "flow.dag.yaml",
                "inputs: {x: {type: string}}\noutputs:\n  y: {reference: '${t.output}'}\nnodes:\n- {name: t, type: python, source: {type: code, path: t.py}, inputs: {x: '${inputs.x}'}}\n",
            ),
            (
                "t.py",
                "from promptflow import tool\nfrom promptflow.entities import InputSetting, DynamicList\nfrom promptflow.contracts.types import AssistantDefinition, AttrDict\n\nsettings = {'x': InputSetting(dynamic_list=DynamicList(function=len), allow_manual_entry=True)}\n\n@tool(input_settings=settings)\ndef t(x: str) -> dict:\n    a = AssistantDefinition.deserialize({'model': 'm', 'instructions': x, 'tools': []})\n    d = AttrDict(k=1)\n    return {'assistant': a.serialize(), 'k': d.k, 'manual': settings['x'].allow_manual_entry}\n",
            ),
        ],
    );
    let run = ctx.run(&[
        "run",
        "imports",
        "--inputs",
        "x=be brief",
        "--output",
        "json",
    ]);
    let out = run.expect_code(0).json();
    assert_eq!(
        out["outputs"]["y"],
        serde_json::json!({"assistant": {"model": "m", "instructions": "be brief", "tools": []}, "k": 1, "manual": true})
    );
}
