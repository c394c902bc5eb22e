//! Flex flows with a function entry (`entry: module:function`), end to end through the binary
//! and a real python3: inputs from the signature (types, defaults) or from `inputs:`, outputs
//! from what the function returns (a dict, a dataclass, anything else as `output`), a failing
//! line, a batch and its resume, `validate`, `serve`; class entries made without arguments and
//! with `--init` (connections, model configurations, `init:` defaults, `sample:`), their
//! `__aggregate__` as the run's metrics, `flow eval` of a class evaluation flow, `flow build`;
//! `@trace` spans in the node records. A class run without the init it needs is refused
//! (refusals.rs).

use serde_json::json;

use crate::support::batch::*;
use crate::support::context::TestContext;
use crate::support::server::Server;

/// Typed inputs with defaults, an environment variable from the YAML, a raising input, and a
/// marker file (`healed`) that stops the raising, for resume.
const GREET_PY: &str = r#"import os

def greet(name: str, times: int = 2, loud: bool = False, ratio: float = 0.5, tags: list = [], extra: dict = {}) -> dict:
    if name == "boom" and not os.path.exists("healed"):
        raise ValueError("no booms here")
    text = " ".join([os.environ["GREETING"] + " " + name] * times)
    return {
        "text": text.upper() if loud else text,
        "types": [type(v).__name__ for v in (name, times, loud, ratio, tags, extra)],
        "ratio": ratio * 2,
        "n_tags": len(tags),
        "extra": extra,
    }
"#;

fn greet_flow(ctx: &TestContext) {
    ctx.flow(
        "greet",
        &[
            (
                "flow.flex.yaml",
                "$schema: https://azuremlschemas.azureedge.net/promptflow/latest/Flow.schema.json\nentry: greet:greet\nenvironment_variables:\n  GREETING: hello\n",
            ),
            ("greet.py", GREET_PY),
        ],
    );
}

#[test]
fn a_function_entry_runs_with_typed_inputs_and_signature_defaults() {
    let ctx = TestContext::new();
    greet_flow(&ctx);
    let run = ctx.run(&[
        "run",
        "greet",
        "--inputs",
        "name=ann",
        "times=3",
        "loud=true",
        "ratio=1.25",
        "tags=[\"a\",\"b\"]",
        "extra={\"k\": 1}",
        "--output",
        "json",
    ]);
    run.expect_code(0);
    let out = run.json();
    assert_eq!(out["status"], "Completed");
    assert_eq!(
        out["outputs"],
        json!({
            "text": "HELLO ANN HELLO ANN HELLO ANN",
            "types": ["str", "int", "bool", "float", "list", "dict"],
            "ratio": 2.5,
            "n_tags": 2,
            "extra": {"k": 1},
        })
    );
    // Defaults come from the signature; the detail records the line and one node named after
    // the function.
    let run = ctx.run(&["run", "greet", "--inputs", "name=bo", "--output", "json"]);
    run.expect_code(0);
    let out = run.json();
    assert_eq!(out["outputs"]["text"], "hello bo hello bo");
    assert_eq!(out["outputs"]["ratio"], 1.0);
    assert_eq!(out["outputs"]["types"][1], "int");
    let detail =
        crate::support::batch::json_file(&ctx.root().join("greet/.promptflow/flow.detail.json"));
    assert_eq!(
        detail["flow_runs"][0]["inputs"],
        json!({"name": "bo", "times": 2, "loud": false, "ratio": 0.5, "tags": [], "extra": {}})
    );
    assert_eq!(detail["node_runs"][0]["node"], "greet");
    assert_eq!(detail["node_runs"][0]["status"], "Completed");
}

#[test]
fn a_bad_input_fails_the_line_and_a_missing_one_is_refused_before_it_runs() {
    let ctx = TestContext::new();
    greet_flow(&ctx);
    ctx.run(&["run", "greet", "--inputs", "name=x", "times=many"])
        .expect_code(1)
        .stderr_has("flow input `times`: \"many\" is not a valid int");
    ctx.run(&["run", "greet", "--inputs", "times=1"])
        .expect_code(2)
        .stderr_has("flow input `name` has no default and no value");
}

#[test]
fn an_exception_fails_the_line_with_type_message_and_traceback() {
    let ctx = TestContext::new();
    greet_flow(&ctx);
    let run = ctx.run(&["run", "greet", "--inputs", "name=boom", "--output", "json"]);
    run.expect_code(1);
    let out = run.json();
    assert_eq!(out["status"], "Failed");
    assert_eq!(out["outputs"], json!({}));
    let message = out["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("ValueError: no booms here"), "{out}");
    let detail =
        crate::support::batch::json_file(&ctx.root().join("greet/.promptflow/flow.detail.json"));
    let error = &detail["node_runs"][0]["error"];
    assert_eq!(detail["node_runs"][0]["status"], "Failed");
    let text = error.to_string();
    assert!(text.contains("ValueError"), "{error}");
    assert!(
        text.contains("greet.py"),
        "the traceback names the file: {error}"
    );
}

#[test]
fn dict_dataclass_primitive_and_generator_returns_become_outputs_as_in_promptflow() {
    let ctx = TestContext::new();
    ctx.flow(
        "shapes",
        &[
            ("flow.flex.yaml", "entry: shapes:run\n"),
            (
                "shapes.py",
                "from dataclasses import dataclass\n\n@dataclass\nclass Answer:\n    text: str\n    score: float\n\ndef pieces():\n    yield 'a'\n    yield 'b'\n    yield 'c'\n\ndef run(kind: str):\n    if kind == 'dict':\n        return {'x': 1, 'y': [1, 2]}\n    if kind == 'dataclass':\n        return Answer(text='hi', score=0.5)\n    if kind == 'int':\n        return 42\n    if kind == 'list':\n        return [1, 2]\n    if kind == 'none':\n        return None\n    if kind == 'generator':\n        return pieces()\n    if kind == 'dict_of_generator':\n        return {'g': pieces(), 'n': 1}\n    if kind == 'dataclass_of_generator':\n        return Answer(text=pieces(), score=1.0)\n    return kind\n",
            ),
        ],
    );
    let outputs = |kind: &str| {
        let run = ctx.run(&[
            "run",
            "shapes",
            "--inputs",
            &format!("kind={kind}"),
            "--output",
            "json",
        ]);
        run.expect_code(0);
        run.json()["outputs"].clone()
    };
    assert_eq!(outputs("dict"), json!({"x": 1, "y": [1, 2]}));
    assert_eq!(outputs("dataclass"), json!({"text": "hi", "score": 0.5}));
    assert_eq!(outputs("int"), json!({"output": 42}));
    assert_eq!(outputs("list"), json!({"output": [1, 2]}));
    assert_eq!(outputs("none"), json!({"output": null}));
    assert_eq!(outputs("generator"), json!({"output": "abc"}));
    assert_eq!(outputs("dict_of_generator"), json!({"g": "abc", "n": 1}));
    assert_eq!(
        outputs("dataclass_of_generator"),
        json!({"text": "abc", "score": 1.0})
    );
    assert_eq!(outputs("plain"), json!({"output": "plain"}));
}

#[test]
fn declared_inputs_in_a_dag_file_with_an_entry_and_an_async_function() {
    let ctx = TestContext::new();
    ctx.flow(
        "declared",
        &[
            (
                "flow.dag.yaml",
                "entry: pkg.main:answer\ninputs:\n  question:\n    type: string\n  n:\n    type: int\n    default: 2\n  suffix:\n    type: string\n    default: ''\n  tail:\n    type: string\noutputs:\n  output:\n    type: string\nsample:\n  question: ignored\n",
            ),
            ("pkg/__init__.py", ""),
            (
                "pkg/main.py",
                "import asyncio\n\nasync def answer(question: str, n: int = 5, suffix: str = None, tail: str = '!'):\n    await asyncio.sleep(0)\n    return question * n + str(suffix) + tail\n",
            ),
        ],
    );
    let run = ctx.run(&[
        "run",
        "declared",
        "--inputs",
        "question=ab",
        "--output",
        "json",
    ]);
    run.expect_code(0);
    // The YAML default (2) wins over the signature's (5); `default: ''` and no default take the
    // function's own (None, '!'), as promptflow does.
    assert_eq!(run.json()["outputs"], json!({"output": "ababNone!"}));
    ctx.run(&["validate", "declared"])
        .expect_code(0)
        .stdout_has("flex flow, entry: pkg.main:answer (function answer in pkg/main.py)")
        .stdout_has("inputs: question (string), n (int, default 2), suffix (string, default null), tail (string, default \"!\")")
        .stdout_has("declared: output (string)");
}

#[test]
fn validate_says_it_is_a_flex_flow_with_its_entry_and_inputs() {
    let ctx = TestContext::new();
    greet_flow(&ctx);
    ctx.run(&["validate", "greet"])
        .expect_code(0)
        .stdout_has("is valid")
        .stdout_has("flex flow, entry: greet:greet (function greet in greet.py)")
        .stdout_has("inputs (from the signature): name (string), times (int, default 2), loud (bool, default false), ratio (double, default 0.5), tags (list, default []), extra (object, default {})");
}

#[test]
fn an_entry_that_does_not_exist_or_does_not_import_is_refused_at_entry() {
    let ctx = TestContext::new();
    ctx.flow(
        "missing",
        &[
            ("flow.flex.yaml", "entry: flow:nope\n"),
            ("flow.py", "def my_flow(x: str):\n    return x\n"),
        ],
    );
    ctx.run(&["validate", "missing"])
        .expect_code(2)
        .stderr_has("no 'nope' in")
        .stderr_has("it defines: my_flow")
        .stderr_has("flow.flex.yaml:1:8");
    ctx.flow("nofile", &[("flow.flex.yaml", "entry: gone:my_flow\n")]);
    ctx.run(&["run", "nofile", "--inputs", "x=1"])
        .expect_code(2)
        .stderr_has("the module file gone.py does not exist");
    ctx.flow(
        "broken",
        &[
            ("flow.flex.yaml", "entry: flow:my_flow\n"),
            ("flow.py", "import not_a_module_anywhere\n"),
        ],
    );
    ctx.run(&["run", "broken", "--inputs", "x=1"])
        .expect_code(2)
        .stderr_has("ModuleNotFoundError")
        .stderr_has("not_a_module_anywhere");
    ctx.flow(
        "undeclared",
        &[
            (
                "flow.flex.yaml",
                "entry: flow:my_flow\ninputs:\n  x: {type: string}\n",
            ),
            ("flow.py", "def my_flow(x: str, y: int):\n    return x\n"),
        ],
    );
    ctx.run(&["validate", "undeclared"])
        .expect_code(2)
        .stderr_has("the entry `my_flow` needs `y`, which `inputs:` does not declare");
    assert!(!ctx.root().join(".flow/runs").exists());
}

#[test]
fn a_batch_records_each_line_and_resume_reruns_only_the_failed_one() {
    let ctx = TestContext::new();
    greet_flow(&ctx);
    ctx.write(
        "data.jsonl",
        "{\"name\": \"a\"}\n{\"name\": \"boom\"}\n{\"name\": \"c\", \"times\": \"1\"}\n",
    );
    ctx.run(&["run", "greet", "--data", "data.jsonl", "--name", "flexrun"])
        .expect_code(1)
        .stderr_has("2/3 lines succeeded")
        .stderr_has("ValueError: no booms here");
    let dir = run_dir(&ctx, "flexrun");
    let out = outputs(&dir);
    assert_eq!(line_numbers(&out), vec![0, 2]);
    assert_eq!(out[0]["text"], "hello a hello a");
    assert_eq!(out[1]["text"], "hello c");
    assert!(dir.join("snapshot/flow.flex.yaml").is_file());
    assert!(dir.join("snapshot/greet.py").is_file());
    assert!(dir.join("node_artifacts/greet").is_dir());
    assert_eq!(meta(&dir)["failed_lines"], 1);

    ctx.write("greet/healed", "");
    ctx.run(&["run", "--resume", "flexrun"])
        .expect_code(0)
        .stderr_has("2 of 3 lines already succeeded")
        .stderr_has("3/3 lines succeeded");
    let out = outputs(&dir);
    assert_eq!(line_numbers(&out), vec![0, 1, 2]);
    assert_eq!(out[1]["text"], "hello boom hello boom");
    assert_eq!(meta(&dir)["status"], "Completed");
}

#[test]
fn serve_scores_a_function_entry() {
    let ctx = TestContext::new();
    greet_flow(&ctx);
    let server = Server::ready(&ctx, "greet", &[], &[]);
    let ok = server.score(r#"{"name": "zed", "loud": true, "times": "1"}"#);
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["text"], "HELLO ZED");
    assert_eq!(ok.json()["ratio"], 1.0);
    let bad = server.score(r#"{"times": 1}"#);
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("name"), "{}", bad.body);
    let failed = server.score(r#"{"name": "boom"}"#);
    assert!(failed.status >= 400, "{}", failed.body);
    assert!(failed.body.contains("no booms here"), "{}", failed.body);
    // The request schema is the signature's inputs.
    let doc = server.get("/openapi.json").json();
    let schema =
        &doc["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(schema["properties"]["times"]["type"], "integer");
    assert_eq!(schema["properties"]["times"]["default"], 2);
    assert_eq!(schema["required"], json!(["name"]));
}

#[test]
fn serve_lists_the_declared_outputs_of_a_flex_flow() {
    let ctx = TestContext::new();
    ctx.flow(
        "echo",
        &[
            (
                "flow.flex.yaml",
                "entry: echo:echo\noutputs:\n  said:\n    type: string\n",
            ),
            (
                "echo.py",
                "def echo(text: str):\n    return {'said': text}\n",
            ),
        ],
    );
    let server = Server::ready(&ctx, "echo", &[], &[]);
    let ok = server.score(r#"{"text": "hi"}"#);
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json(), json!({"said": "hi"}));
    let doc = server.get("/openapi.json").json();
    let out = &doc["paths"]["/score"]["post"]["responses"]["200"]["content"]["application/json"]["schema"];
    assert_eq!(out["properties"]["said"]["type"], "string");
}

#[test]
fn a_connection_parameter_is_refused_at_entry() {
    let ctx = TestContext::new();
    ctx.flow(
        "conn",
        &[
            ("flow.flex.yaml", "entry: flow:ask\n"),
            (
                "flow.py",
                "from promptflow.connections import AzureOpenAIConnection\n\ndef ask(connection: AzureOpenAIConnection, question: str):\n    return question\n",
            ),
        ],
    );
    ctx.run(&["run", "conn", "--inputs", "connection=c", "question=q"])
        .expect_code(2)
        .stderr_has("parameter `connection` is a connection (AzureOpenAIConnection): promptflow passes a flex flow's inputs as they are")
        .stderr_has("flow.flex.yaml:1:8");
}

#[test]
fn a_class_entry_is_made_once_per_worker_without_arguments_and_called() {
    let ctx = TestContext::new();
    ctx.flow(
        "counter",
        &[
            ("flow.flex.yaml", "entry: counter:Counter\n"),
            (
                "counter.py",
                "class Counter:\n    def __init__(self, start: int = 10):\n        self.n = start\n\n    async def __call__(self, who: str, step: int = 1) -> dict:\n        self.n += step\n        return {'n': self.n, 'who': who}\n",
            ),
        ],
    );
    ctx.run(&["validate", "counter"])
        .expect_code(0)
        .stdout_has("flex flow, entry: counter:Counter (class Counter in counter.py, made without arguments, called through __call__)")
        .stdout_has("inputs (from the signature): who (string), step (int, default 1)");
    let run = ctx.run(&[
        "run", "counter", "--inputs", "who=a", "step=5", "--output", "json",
    ]);
    run.expect_code(0);
    assert_eq!(run.json()["outputs"], json!({"n": 15, "who": "a"}));
    // One line at a time is one worker, one instance: its state carries from line to line, as
    // in promptflow.
    ctx.write(
        "lines.jsonl",
        "{\"who\": \"a\"}\n{\"who\": \"b\"}\n{\"who\": \"c\"}\n",
    );
    ctx.run(&[
        "run",
        "counter",
        "--data",
        "lines.jsonl",
        "--name",
        "counted",
        "--concurrency",
        "1",
    ])
    .expect_code(0);
    let out = outputs(&run_dir(&ctx, "counted"));
    let ns: Vec<i64> = out.iter().map(|o| o["n"].as_i64().unwrap_or(-1)).collect();
    assert_eq!(ns, vec![11, 12, 13]);
}

#[test]
fn a_class_entry_whose_init_raises_is_refused_before_any_line() {
    let ctx = TestContext::new();
    ctx.flow(
        "init_raises",
        &[
            ("flow.flex.yaml", "entry: flow:MyFlow\n"),
            (
                "flow.py",
                "class MyFlow:\n    def __init__(self):\n        raise RuntimeError('no model here')\n\n    def __call__(self, x: str):\n        return x\n",
            ),
        ],
    );
    ctx.run(&["run", "init_raises", "--inputs", "x=1"])
        .expect_code(2)
        .stderr_has("making MyFlow() failed: no model here");
}

/// A class entry like genaiops-promptflow-template's class_flows: an Azure model configuration
/// from init.json (by connection name), a typed argument from `--init NAME=VALUE`, a
/// connection by name, a default from `init:`, and `__aggregate__` over the lines' outputs.
const CHAT_CLASS_PY: &str = r#"import os
from promptflow.core import AzureOpenAIModelConfiguration
from promptflow.connections import CustomConnection

class ChatFlow:
    def __init__(self, model_config: AzureOpenAIModelConfiguration, tools: CustomConnection, max_total_token=4096, repeat: int = 1):
        self.model_config = model_config
        self.tools = tools
        self.max_total_token = max_total_token
        self.repeat = repeat

    def __call__(self, question: str) -> dict:
        if question == "boom" and not os.path.exists("healed"):
            raise ValueError("no booms here")
        c = self.model_config
        return {
            "answer": question * self.repeat,
            "config": [type(c).__name__, c.azure_deployment, c.azure_endpoint, c.api_key],
            "tools": [type(self.tools).__name__, self.tools.secrets.get("api_key")],
            "max_total_token": self.max_total_token,
        }

    def __aggregate__(self, line_results):
        return {"lines": len(line_results), "mean_len": sum(len(r.answer) for r in line_results) / len(line_results)}
"#;

fn chat_class_flow(ctx: &TestContext) {
    ctx.flow(
        "chat",
        &[
            (
                "flow.flex.yaml",
                "entry: flow:ChatFlow\ninputs:\n  question: {type: string}\ninit:\n  model_config:\n    type: AzureOpenAIModelConfiguration\n  max_total_token:\n    type: int\n    default: 2048\n",
            ),
            ("flow.py", CHAT_CLASS_PY),
        ],
    );
    ctx.write(
        ".env",
        "AOAI_API_KEY=aoai-key\nAOAI_API_BASE=https://aoai.example.com/\nAOAI_API_TYPE=azure\nTOOLS_API_KEY=tools-key\nTOOLS_API_TYPE=custom\n",
    );
    ctx.write(
        "init.json",
        r#"{"model_config": {"azure_deployment": "gpt-35-turbo", "connection": "aoai"}, "tools": "tools"}"#,
    );
}

#[test]
fn a_class_entry_is_made_with_init_json_connections_and_model_configurations() {
    let ctx = TestContext::new();
    chat_class_flow(&ctx);
    let run = ctx.run(&[
        "run",
        "chat",
        "--init",
        "init.json",
        "repeat=2",
        "--inputs",
        "question=hi",
        "--output",
        "json",
    ]);
    run.expect_code(0);
    let out = run.json();
    assert_eq!(
        out["outputs"],
        json!({
            "answer": "hihi",
            "config": ["AzureOpenAIModelConfiguration", "gpt-35-turbo", "https://aoai.example.com/", "aoai-key"],
            "tools": ["CustomConnection", "tools-key"],
            "max_total_token": 2048,
        })
    );
    assert_eq!(out["metrics"], json!({"lines": 1.0, "mean_len": 4.0}));
    // An unknown key, a missing required one, a model configuration that is not an object:
    // refused before anything runs, exit 2.
    ctx.run(&[
        "run",
        "chat",
        "--init",
        "init.json",
        "repat=2",
        "--inputs",
        "question=hi",
    ])
    .expect_code(2)
    .stderr_has("--init: `repat` is not a parameter of `ChatFlow.__init__`")
    .stderr_has("did you mean `repeat`?");
    ctx.run(&["run", "chat", "--init", "tools=tools", "--inputs", "question=hi"])
        .expect_code(2)
        .stderr_has("`entry: flow:ChatFlow` is a class whose `__init__` needs `model_config`, which --init does not give")
        .stderr_has("flow.flex.yaml:1:8");
    ctx.run(&[
        "run", "chat", "--init", "tools=tools", "model_config=gpt", "--inputs", "question=hi",
    ])
    .expect_code(2)
    .stderr_has("`model_config` is a model configuration (AzureOpenAIModelConfiguration): give an object of its fields");
    ctx.run(&[
        "run",
        "chat",
        "--init",
        "init.json",
        "tools=nope",
        "--inputs",
        "question=hi",
    ])
    .expect_code(2)
    .stderr_has("init `tools`: connection `nope`");
    ctx.run(&["validate", "chat"]).expect_code(0).stdout_has(
        "init (--init): model_config (object, AzureOpenAIModelConfiguration, required), tools (connection name, CustomConnection, required), max_total_token (int, default 2048), repeat (int, default 1)",
    );
}

#[test]
fn a_batch_of_a_class_entry_aggregates_and_its_resume_reuses_the_init() {
    let ctx = TestContext::new();
    chat_class_flow(&ctx);
    ctx.write(
        "q.jsonl",
        "{\"question\": \"a\"}\n{\"question\": \"boom\"}\n{\"question\": \"ccc\"}\n",
    );
    ctx.run(&[
        "run",
        "chat",
        "--data",
        "q.jsonl",
        "--name",
        "agg",
        "--init",
        "init.json",
        "repeat=2",
    ])
    .expect_code(1);
    let dir = run_dir(&ctx, "agg");
    let metrics: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("metrics.json")).unwrap_or_default(),
    )
    .unwrap_or_default();
    assert_eq!(metrics["lines"], json!(2.0), "{metrics}");
    assert_eq!(metrics["mean_len"], json!(4.0), "{metrics}");
    ctx.write("chat/healed", "");
    ctx.run(&["run", "--resume", "agg"]).expect_code(0);
    let out = outputs(&dir);
    let answers: Vec<&str> = out.iter().filter_map(|o| o["answer"].as_str()).collect();
    assert_eq!(answers, vec!["aa", "boomboom", "cccccc"]);
    let metrics: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("metrics.json")).unwrap_or_default(),
    )
    .unwrap_or_default();
    assert_eq!(metrics["lines"], json!(3.0), "{metrics}");
}

#[test]
fn sample_gives_the_init_and_the_inputs_of_a_line_given_none() {
    let ctx = TestContext::new();
    ctx.flow(
        "sampled",
        &[
            (
                "flow.flex.yaml",
                "entry: flow:MyFlow\nsample:\n  init:\n    prefix: hi-\n  inputs: ${file:./inputs.json}\n",
            ),
            ("inputs.json", r#"{"x": "there"}"#),
            (
                "flow.py",
                "class MyFlow:\n    def __init__(self, prefix: str):\n        self.prefix = prefix\n\n    def __call__(self, x: str):\n        return self.prefix + x\n",
            ),
        ],
    );
    let run = ctx.run(&["run", "sampled", "--output", "json"]);
    run.expect_code(0)
        .stderr_has("no --inputs given: the flow's `sample.inputs` are used");
    assert_eq!(run.json()["outputs"], json!({"output": "hi-there"}));
    // Given init and inputs win over the sample.
    let run = ctx.run(&[
        "run",
        "sampled",
        "--init",
        "prefix=yo-",
        "--inputs",
        "x=1",
        "--output",
        "json",
    ]);
    run.expect_code(0);
    assert_eq!(run.json()["outputs"], json!({"output": "yo-1"}));
    // `flow serve`: a request with no inputs at all runs on the sample too.
    let server = Server::ready(&ctx, "sampled", &[], &[]);
    let ok = server.score("{}");
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json(), json!({"output": "hi-there"}));
}

#[test]
fn serve_makes_a_class_entry_with_its_init() {
    let ctx = TestContext::new();
    chat_class_flow(&ctx);
    let server = Server::ready(&ctx, "chat", &["--init", "init.json"], &[]);
    let ok = server.score(r#"{"question": "q"}"#);
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["tools"], json!(["CustomConnection", "tools-key"]));
}

#[test]
fn flow_eval_runs_a_class_evaluation_flow_with_its_init_and_gates_on_its_aggregate() {
    let ctx = TestContext::new();
    ctx.flow(
        "echo_flow",
        &[
            ("flow.flex.yaml", "entry: flow:echo\n"),
            ("flow.py", "def echo(text: str):\n    return text\n"),
        ],
    );
    ctx.flow(
        "eval_len",
        &[
            ("flow.flex.yaml", "entry: grader:Grader\n"),
            (
                "grader.py",
                "class Grader:\n    def __init__(self, min_len: int):\n        self.min_len = min_len\n\n    def __call__(self, answer: str) -> dict:\n        return {'ok': len(answer) >= self.min_len}\n\n    def __aggregate__(self, results):\n        return {'pass_rate': sum(1 for r in results if r.ok) / len(results)}\n",
            ),
        ],
    );
    ctx.write(
        "data.jsonl",
        "{\"text\": \"a\"}\n{\"text\": \"bbb\"}\n{\"text\": \"cccc\"}\n{\"text\": \"dd\"}\n",
    );
    ctx.run(&["run", "echo_flow", "--data", "data.jsonl", "--name", "base"])
        .expect_code(0);
    let run = ctx.run(&[
        "eval",
        "--run",
        "base",
        "eval_len",
        "--init",
        "min_len=3",
        "--column-mapping",
        "answer=${run.outputs.output}",
        "--threshold",
        "pass_rate>=0.5",
        "--output",
        "json",
    ]);
    run.expect_code(0);
    assert_eq!(run.json()["metrics"]["pass_rate"], json!(0.5));
    // Without the init the evaluation flow cannot be made: refused before anything runs.
    ctx.run(&[
        "eval",
        "--run",
        "base",
        "eval_len",
        "--column-mapping",
        "answer=${run.outputs.output}",
    ])
    .expect_code(2)
    .stderr_has("`entry: grader:Grader` is a class whose `__init__` needs `min_len`, and no --init gives it");
}

#[test]
fn build_of_a_class_entry_ships_its_module_says_how_to_give_the_init_and_serves() {
    let ctx = TestContext::new();
    chat_class_flow(&ctx);
    ctx.run(&["build", "chat", "--format", "docker", "--out-dir", "image"])
        .expect_code(0)
        .stdout_has("the class entry ChatFlow needs init (model_config, tools)")
        .stdout_has("--init /init.json");
    for file in ["image/flow/flow.flex.yaml", "image/flow/flow.py"] {
        assert!(ctx.root().join(file).is_file(), "{file} missing");
    }
    // The image's entrypoint is `flow serve FLOW`: its flow folder serves with --init appended.
    let server = Server::ready(&ctx, "image/flow", &["--init", "init.json"], &[]);
    let ok = server.score(r#"{"question": "q"}"#);
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["answer"], json!("q"));
}

#[test]
fn traced_calls_become_nested_spans_of_the_line_capped_per_call() {
    let ctx = TestContext::new();
    ctx.flow(
        "traced",
        &[
            ("flow.flex.yaml", "entry: flow:run\n"),
            (
                "flow.py",
                "from promptflow.tracing import trace\n\n@trace\ndef inner(x):\n    return x * 2\n\n@trace\ndef outer(n):\n    return [inner(i) for i in range(n)]\n\ndef run(n: int = 2):\n    return {'v': outer(n)}\n",
            ),
        ],
    );
    ctx.run(&["run", "traced", "--inputs", "n=2"])
        .expect_code(0);
    let detail: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ctx.root().join("traced/.promptflow/flow.detail.json"))
            .unwrap_or_default(),
    )
    .unwrap_or_default();
    let calls = &detail["node_runs"][0]["api_calls"];
    assert_eq!(calls[0]["name"], "outer", "{calls}");
    assert_eq!(calls[0]["inputs"], json!({"n": 2}));
    assert_eq!(calls[0]["output"], json!([0, 2]));
    assert_eq!(calls[0]["children"][1]["name"], "inner");
    assert_eq!(calls[0]["children"][1]["output"], json!(2));
    // Bounded: at most 200 spans per call, the rest counted and said so.
    ctx.run(&["run", "traced", "--inputs", "n=300"])
        .expect_code(0);
    let detail: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ctx.root().join("traced/.promptflow/flow.detail.json"))
            .unwrap_or_default(),
    )
    .unwrap_or_default();
    let calls = detail["node_runs"][0]["api_calls"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["children"].as_array().map(Vec::len), Some(199));
    assert_eq!(
        calls[1]["message"],
        "101 more traced calls were not recorded: at most 200 spans are kept per node call"
    );
}

#[test]
fn merged_shards_of_a_class_entry_run_its_aggregate_with_the_recorded_init() {
    let ctx = TestContext::new();
    chat_class_flow(&ctx);
    ctx.write(
        "q.jsonl",
        "{\"question\": \"a\"}\n{\"question\": \"bb\"}\n{\"question\": \"ccc\"}\n",
    );
    for k in ["1/2", "2/2"] {
        ctx.run(&[
            "run",
            "chat",
            "--data",
            "q.jsonl",
            "--name",
            "sh",
            "--shard",
            k,
            "--init",
            "init.json",
            "repeat=2",
        ])
        .expect_code(0);
    }
    ctx.run(&[
        "runs",
        "merge",
        "sh-shard-1-of-2",
        "sh-shard-2-of-2",
        "--name",
        "merged",
    ])
    .expect_code(0);
    let metrics: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir(&ctx, "merged").join("metrics.json")).unwrap_or_default(),
    )
    .unwrap_or_default();
    assert_eq!(metrics["lines"], json!(3.0), "{metrics}");
    assert_eq!(metrics["mean_len"], json!(4.0), "{metrics}");
}

/// promptflow's fixture `eager_flows/flow_with_operation_context` (verbatim): its
/// `OperationContext` holds `flow_id` (promptflow's constant `default_flow_id`) and
/// `root_run_id` — the line run's UUID for one line (as `pf flow test` gives it), the run's
/// name in a batch (as `pf run` gives it) — and the other keys promptflow's executor sets.
#[test]
fn operation_context_is_what_promptflow_puts_there() {
    let ctx = TestContext::new();
    ctx.flow(
        "oc",
        &[
            ("flow.flex.yaml", "entry: flow_with_context:my_flow"),
            (
                "flow_with_context.py",
                "from promptflow.tracing._operation_context import OperationContext\n\n\ndef my_flow():\n    context = OperationContext.get_instance()\n    assert \"flow_id\" in context\n    assert \"root_run_id\" in context\n    return {\"flow-id\": context.flow_id, \"root-run-id\": context.root_run_id}\n",
            ),
        ],
    );
    let run = ctx.run(&["run", "oc", "--output", "json"]);
    let out = run.expect_code(0).json()["outputs"].clone();
    assert_eq!(out["flow-id"], "default_flow_id", "{out:#}");
    let id = out["root-run-id"].as_str().unwrap().to_string();
    let uuid =
        regex::Regex::new(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
            .unwrap();
    assert!(uuid.is_match(&id), "{id}");
    // another line, another line run id
    let again = ctx.run(&["run", "oc", "--output", "json"]);
    assert_ne!(
        again.expect_code(0).json()["outputs"]["root-run-id"],
        json!(id)
    );

    // The whole context, in a batch: run mode, input source, line number; a key code sets lasts
    // for its call only; attribute and dict access, the user agent and request id.
    ctx.flow(
        "whole",
        &[
            ("flow.flex.yaml", "entry: ctx:my_flow"),
            (
                "ctx.py",
                "from promptflow.tracing._operation_context import OperationContext\n\ndef my_flow(x: str):\n    c = OperationContext.get_instance()\n    seen = c.get('mine')\n    c.mine = x\n    try:\n        c.absent\n        absent = 'read'\n    except AttributeError:\n        absent = 'AttributeError'\n    d = {k: (sorted(v) if isinstance(v, set) else v) for k, v in c.get_context_dict().items()}\n    return {'ctx': d, 'ua': c.get_user_agent(), 'rid': c.get_request_id(), 'seen': seen, 'absent': absent}\n",
            ),
        ],
    );
    ctx.write("d.jsonl", "{\"x\": \"a\"}\n{\"x\": \"b\"}\n");
    ctx.run(&[
        "run",
        "whole",
        "--data",
        "d.jsonl",
        "--name",
        "ocb",
        "--concurrency",
        "1",
    ])
    .expect_code(0);
    let mut rows = outputs(&run_dir(&ctx, "ocb"));
    rows.sort_by_key(|r| r["line_number"].as_u64());
    assert_eq!(rows.len(), 2);
    for (n, row) in rows.iter().enumerate() {
        let c = &row["ctx"];
        assert_eq!(c["flow_id"], "default_flow_id", "{row:#}");
        assert_eq!(c["root_run_id"], "ocb", "{row:#}");
        assert_eq!(c["run_mode"], "Batch", "{row:#}");
        assert_eq!(c["batch_input_source"], "Data", "{row:#}");
        assert_eq!(c["execution_target"], "flex", "{row:#}");
        assert_eq!(
            c["_otel_attributes"],
            json!({"execution_target": "flex", "batch_run_id": "ocb", "line_number": n}),
            "{row:#}"
        );
        assert_eq!(
            c["_default_tracing_keys"],
            json!([
                "batch_input_source",
                "execution_target",
                "flow_id",
                "root_run_id",
                "run_mode"
            ])
        );
        assert!(row["ua"].as_str().unwrap().starts_with("flow/"), "{row:#}");
        assert!(
            row["ua"]
                .as_str()
                .unwrap()
                .ends_with(" promptflow-tracing/0.0.0+flow-shim")
        );
        assert_eq!(row["rid"], "unknown");
        assert_eq!(
            row["seen"],
            json!(null),
            "a key set by an earlier line is gone"
        );
        assert_eq!(row["absent"], "AttributeError");
    }
}
