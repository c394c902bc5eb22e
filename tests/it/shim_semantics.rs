//! promptflow tool behaviours through the `flow` binary: class-based tools, tool scripts loaded
//! as `__pf_main__`, non-finite floats, generators nested in outputs, `additional_includes`.

use serde_json::json;

use crate::support::context::TestContext;

const CLASS_TOOL: &str = r#"
from promptflow import ToolProvider, tool


class Greeter(ToolProvider):
    made = 0

    def __init__(self, greeting: str, punct: str = "!"):
        super().__init__()
        Greeter.made += 1
        self.greeting = greeting
        self.punct = punct

    @tool
    def greet(self, name: str) -> dict:
        return {
            "text": f"{self.greeting}, {name}{self.punct}",
            "module": __name__,
            "made": Greeter.made,
            "init_params": self._init_params,
        }
"#;

const CLASS_FLOW: &str = r#"
inputs:
  name: {type: string}
outputs:
  out: {type: object, reference: "${greet.output}"}
nodes:
- name: greet
  type: python
  source: {type: code, path: greeter.py}
  inputs:
    greeting: Hello
    name: ${inputs.name}
"#;

#[test]
fn a_class_tool_is_made_from_init_inputs_and_called_with_the_rest() {
    let ctx = TestContext::new();
    ctx.flow(
        "greet",
        &[("flow.dag.yaml", CLASS_FLOW), ("greeter.py", CLASS_TOOL)],
    );
    ctx.write("lines.jsonl", "{\"name\": \"ann\"}\n{\"name\": \"bo\"}\n");
    let run = ctx.run(&["run", "greet", "--inputs", "name=ann", "--output", "json"]);
    run.expect_code(0);
    let out = run.json();
    assert_eq!(
        out["outputs"]["out"],
        json!({"text": "Hello, ann!", "module": "__pf_main__", "made": 1,
               "init_params": {"greeting": "Hello"}}),
        "{out}"
    );
    // a batch makes the instance once and reuses it for every line
    let run = ctx.run(&[
        "run",
        "greet",
        "--data",
        "lines.jsonl",
        "--name",
        "b",
        "--concurrency",
        "1",
    ]);
    run.expect_code(0);
    let lines = std::fs::read_to_string(ctx.root().join(".flow/runs/b/flow_outputs/output.jsonl"))
        .unwrap_or_default();
    assert!(lines.contains("Hello, bo!"), "{lines}");
    assert!(
        !lines.contains("\"made\":2"),
        "one instance per worker: {lines}"
    );
}

#[test]
fn a_class_tool_init_input_must_be_a_literal() {
    let ctx = TestContext::new();
    let flow = CLASS_FLOW.replace("greeting: Hello", "greeting: ${inputs.name}");
    ctx.flow(
        "greet",
        &[("flow.dag.yaml", &flow), ("greeter.py", CLASS_TOOL)],
    );
    ctx.run(&["run", "greet", "--inputs", "name=ann"])
        .expect_code(2)
        .stderr_has(
            "input `greeting` is an `__init__` parameter of the tool class `Greeter.greet`",
        );
    let flow = CLASS_FLOW.replace("    greeting: Hello\n", "");
    ctx.flow("greet", &[("flow.dag.yaml", &flow)]);
    ctx.run(&["run", "greet", "--inputs", "name=ann"])
        .expect_code(2)
        .stderr_has("needs input `greeting`");
}

const NAN_TOOL: &str = r#"
import os
from promptflow import tool, log_metric


@tool
def score(x: float) -> dict:
    if x == 1 and not os.path.exists("healed"):
        raise ValueError("not yet")
    return {"f1": float("nan"), "big": float("inf"), "small": -float("inf"), "ok": x,
            "parts": (i for i in "ab")}
"#;

const NAN_CHECK: &str = r#"
import math
from promptflow import tool


@tool
def check(scores: dict) -> str:
    # promptflow hands a downstream node the float itself
    return "%s %s %s" % (math.isnan(scores["f1"]), scores["big"], scores["small"])
"#;

const NAN_AGGREGATE: &str = r#"
from promptflow import tool, log_metric


@tool
def aggregate(scores: list) -> dict:
    log_metric("f1", sum(s["f1"] for s in scores) / len(scores))
    log_metric("ratio", float("inf"))
    log_metric("ok", 1.0)
    return {"n": len(scores)}
"#;

const NAN_FLOW: &str = r#"
inputs:
  x: {type: double}
outputs:
  out: {type: object, reference: "${score.output}"}
  check: {type: string, reference: "${check.output}"}
  prompt: {type: string, reference: "${show.output}"}
nodes:
- name: score
  type: python
  source: {type: code, path: score.py}
  inputs:
    x: ${inputs.x}
- name: check
  type: python
  source: {type: code, path: check.py}
  inputs:
    scores: ${score.output}
- name: show
  type: prompt
  source: {type: code, path: show.jinja2}
  inputs:
    f1: ${score.output.f1}
    scores: ${score.output}
- name: aggregate
  type: python
  source: {type: code, path: aggregate.py}
  inputs:
    scores: ${score.output}
  aggregation: true
"#;

fn nan_flow(ctx: &TestContext) {
    ctx.flow(
        "nan",
        &[
            ("flow.dag.yaml", NAN_FLOW),
            ("score.py", NAN_TOOL),
            ("check.py", NAN_CHECK),
            ("aggregate.py", NAN_AGGREGATE),
            (
                "show.jinja2",
                "f1={{f1}} big={{scores.big}} {{scores.small | abs}}",
            ),
        ],
    );
}

/// NaN and the infinities are kept as promptflow keeps them: downstream nodes get the floats,
/// templates print them as Python does, and every JSON file and answer holds `NaN`,
/// `Infinity`, `-Infinity` as Python's `json` writes them (and reads them back).
#[test]
fn non_finite_values_are_kept_as_promptflow_keeps_them() {
    let ctx = TestContext::new();
    nan_flow(&ctx);
    let run = ctx.run(&["run", "nan", "--inputs", "x=0.5", "--output", "json"]);
    run.expect_code(0).stderr_lacks("warning");
    assert!(run.stdout.contains(r#""f1": NaN"#), "{}", run.stdout);
    let out = run.json();
    let nan = flow::non_finite::number(f64::NAN);
    let inf = flow::non_finite::number(f64::INFINITY);
    assert_eq!(
        out["outputs"],
        json!({
            "out": {"f1": nan, "big": inf, "small": flow::non_finite::number(f64::NEG_INFINITY),
                    "ok": 0.5, "parts": "ab"},
            "check": "True inf -inf",
            "prompt": "f1=nan big=inf inf",
        }),
        "{out}"
    );
    assert_eq!(out["metrics"]["f1"], nan);
    assert_eq!(out["metrics"]["ratio"], inf);
    // Text output shows the names.
    ctx.run(&["run", "nan", "--inputs", "x=0.5"])
        .expect_code(0)
        .stdout_has(r#""f1": NaN"#)
        .stdout_has("metric f1: NaN")
        .stdout_has("metric ratio: Infinity");

    // A batch: outputs.jsonl, metrics.json and the records hold the tokens; Python's json
    // (promptflow's reader) reads them as floats.
    ctx.write("data.jsonl", "{\"x\": 1}\n{\"x\": NaN}\n");
    // Line 0 fails until `healed` exists; the resume reads line 1 back from the journal.
    ctx.run(&["run", "nan", "--data", "data.jsonl", "--name", "b1"])
        .expect_code(1);
    ctx.write("nan/healed", "");
    ctx.run(&["run", "--resume", "b1"])
        .expect_code(0)
        .stderr_has("metric f1: NaN");
    let dir = ctx.root().join(".flow/runs/b1");
    let outputs = std::fs::read_to_string(dir.join("flow_outputs/output.jsonl")).unwrap();
    assert!(
        outputs.contains(r#""f1":NaN,"big":Infinity,"small":-Infinity"#),
        "{outputs}"
    );
    let inputs = std::fs::read_to_string(dir.join("inputs.jsonl")).unwrap();
    assert!(inputs.contains(r#""x":NaN"#), "{inputs}");
    let metrics = std::fs::read_to_string(dir.join("metrics.json")).unwrap();
    assert!(
        metrics.contains(r#""f1": NaN"#) && metrics.contains(r#""ratio": Infinity"#),
        "{metrics}"
    );
    let python = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import json, math, sys\n\
             rows = [json.loads(l) for l in open(sys.argv[1])]\n\
             m = json.load(open(sys.argv[2]))\n\
             assert all(math.isnan(r['out']['f1']) and r['out']['big'] == float('inf') for r in rows), rows\n\
             assert math.isnan(m['f1']) and m['ratio'] == float('inf') and m['ok'] == 1.0, m\n\
             print('python reads', len(rows))",
        )
        .arg(dir.join("flow_outputs/output.jsonl"))
        .arg(dir.join("metrics.json"))
        .output()
        .unwrap();
    assert!(
        python.status.success()
            && String::from_utf8_lossy(&python.stdout).contains("python reads 2"),
        "{}",
        String::from_utf8_lossy(&python.stderr)
    );
    // flow reads its own files back: runs show, and a gate on a NaN metric fails loudly.
    let shown = ctx.run(&["runs", "show", "b1", "--json"]);
    shown.expect_code(0);
    assert_eq!(shown.json()["metrics"]["f1"], nan);
    ctx.run(&["runs", "show", "b1"])
        .expect_code(0)
        .stdout_has("f1: NaN");

    // An evaluation flow reads the run's outputs (NaN included) through `${run.outputs...}`.
    ctx.flow(
        "judge",
        &[
            (
                "flow.dag.yaml",
                r#"
inputs:
  scores: {type: object}
outputs:
  check: {type: string, reference: "${check.output}"}
nodes:
- name: check
  type: python
  source: {type: code, path: check.py}
  inputs:
    scores: ${inputs.scores}
- name: aggregate
  type: python
  source: {type: code, path: aggregate.py}
  inputs:
    scores: ${inputs.scores}
  aggregation: true
"#,
            ),
            ("check.py", NAN_CHECK),
            ("aggregate.py", NAN_AGGREGATE),
        ],
    );
    let eval = ctx.run(&[
        "eval",
        "--run",
        "b1",
        "judge",
        "--column-mapping",
        "scores=${run.outputs.out}",
        "--threshold",
        "f1>=0.5",
        "--name",
        "e1",
    ]);
    eval.expect_code(1)
        .stderr_has("FAIL f1 is not a number: NaN")
        .stderr_has("  f1                 NaN");
    let eval_outputs =
        std::fs::read_to_string(ctx.root().join(".flow/runs/e1/flow_outputs/output.jsonl"))
            .unwrap();
    assert!(eval_outputs.contains("True inf -inf"), "{eval_outputs}");
}

/// `flow serve` answers with the tokens too, as promptflow's serving app does, and reads them
/// in a request body (Python clients send them).
#[test]
fn serve_answers_and_reads_non_finite_values() {
    let ctx = TestContext::new();
    nan_flow(&ctx);
    let server = crate::support::server::Server::start(&ctx, "nan", &[], &[]);
    server.wait_ready();
    let answer = server.post(
        "/score",
        &[("content-type", "application/json")],
        r#"{"x": NaN}"#,
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.content_type.starts_with("application/json"));
    assert!(
        answer.body.contains(r#""f1":NaN"#) && answer.body.contains(r#""ok":NaN"#),
        "{}",
        answer.body
    );
}

const UNION_TOOL: &str = r#"
from typing import Union
from promptflow import tool
from promptflow.connections import AzureOpenAIConnection, OpenAIConnection, CustomConnection


@tool
def which(conn: Union[AzureOpenAIConnection, OpenAIConnection], custom: CustomConnection) -> dict:
    return {"class": type(conn).__name__, "base": conn.api_base, "custom": custom.name,
            "key1": custom.secrets.get("key1"), "region": custom.configs.get("region"),
            "attr": custom.key1}
"#;

const UNION_FLOW: &str = r#"
outputs:
  out: {type: object, reference: "${which.output}"}
nodes:
- name: which
  type: python
  source: {type: code, path: which.py}
  inputs:
    conn: CONN
    custom: svc
"#;

/// A `Union[...]` connection parameter gets the class of the connection's own type; a
/// connection of none of the union's types is refused before the run.
#[test]
fn a_union_connection_parameter_gets_the_connections_own_class() {
    let ctx = TestContext::new();
    let flow = |conn: &str| UNION_FLOW.replace("CONN", conn);
    ctx.flow(
        "u",
        &[("flow.dag.yaml", &flow("aoai")), ("which.py", UNION_TOOL)],
    );
    ctx.write(
        ".env",
        "AOAI_API_TYPE=azure\nAOAI_API_KEY=k-aaaaaaaaaaaaaaaa\nAOAI_API_BASE=https://a.openai.azure.com\n\
         OAI_API_KEY=sk-bbbbbbbbbbbbbbbbbbbb\nOAI_API_BASE=http://127.0.0.1:9/v1\n\
         SVC_KEY1=secret-value-1\nSVC_REGION=eu\nOLL_API_TYPE=ollama\n",
    );
    let run = ctx.run(&["run", "u", "--output", "json"]);
    run.expect_code(0);
    let out = run.json();
    assert_eq!(
        out["outputs"]["out"]["class"], "AzureOpenAIConnection",
        "{out}"
    );
    assert_eq!(out["outputs"]["out"]["custom"], "svc", "{out}");
    assert_eq!(out["outputs"]["out"]["region"], "eu", "{out}");
    // X_KEY1 is a custom field: a secret of the CustomConnection (its name says key), also
    // readable as an attribute
    assert_eq!(out["outputs"]["out"]["key1"], "secret-value-1", "{out}");
    assert_eq!(out["outputs"]["out"]["attr"], "secret-value-1", "{out}");
    ctx.flow("u", &[("flow.dag.yaml", &flow("oai"))]);
    let run = ctx.run(&["run", "u", "--output", "json"]);
    run.expect_code(0);
    let out = run.json();
    assert_eq!(out["outputs"]["out"]["class"], "OpenAIConnection", "{out}");
    ctx.flow("u", &[("flow.dag.yaml", &flow("oll"))]);
    ctx.run(&["run", "u"])
        .expect_code(2)
        .stderr_has("input `conn` is connection `oll`, a CustomConnection, but the tool accepts only AzureOpenAIConnection or OpenAIConnection");
}

/// A loopback Entra ID token endpoint: answers every request with a token, keeps each one's
/// path (with its query), form body and `x-identity-header`.
struct TokenServer {
    url: String,
    hits: std::sync::Arc<std::sync::Mutex<Vec<(String, String, String)>>>,
}

impl TokenServer {
    fn start() -> TokenServer {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let hits = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut first = String::new();
                let _ = reader.read_line(&mut first);
                let mut len = 0usize;
                let mut identity_header = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if lower.starts_with("x-identity-header:") {
                        identity_header = line["x-identity-header:".len()..].trim().to_string();
                    }
                }
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
                seen.lock().expect("lock").push((
                    path,
                    String::from_utf8_lossy(&body).into_owned(),
                    identity_header,
                ));
                let reply =
                    r#"{"token_type":"Bearer","expires_in":3599,"access_token":"entra-token-123"}"#;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                    reply.len()
                );
            }
        });
        TokenServer { url, hits }
    }
}

const AOAI_FLOW: &str = r#"
inputs:
  q: {type: string}
outputs:
  a: {type: string, reference: "${chat.output}"}
nodes:
- name: chat
  type: llm
  source: {type: code, path: chat.jinja2}
  connection: aoai
  api: chat
  inputs:
    deployment_name: dep
    q: ${inputs.q}
"#;

/// `auth_mode: meid_token`: no key, a token from the Azure identity variables' client-credentials
/// flow, fetched once and sent as `Authorization: Bearer` on every request.
#[test]
fn a_keyless_azure_connection_sends_an_entra_token() {
    // a mock that asks for no key: the test checks the headers itself
    let ctx = TestContext {
        dir: tempfile::tempdir().expect("temp dir"),
        mock: Some(crate::support::mock_llm::MockLlm::start()),
    };
    let tokens = TokenServer::start();
    ctx.flow(
        "az",
        &[
            ("flow.dag.yaml", AOAI_FLOW),
            ("chat.jinja2", "user:\n{{q}}\n"),
        ],
    );
    ctx.write(
        "connections/aoai.yaml",
        &format!(
            "name: aoai\ntype: azure_open_ai\napi_base: {}\napi_version: 2024-06-01\nauth_mode: meid_token\n",
            ctx.mock().url()
        ),
    );
    ctx.write("lines.jsonl", "{\"q\": \"one\"}\n{\"q\": \"two\"}\n");
    // without the identity variables: refused before any request, naming them
    let run = ctx.run(&["run", "az", "--data", "lines.jsonl", "--name", "r0"]);
    assert_ne!(run.code, 0, "{run:?}");
    run.stderr_has("auth_mode meid_token")
        .stderr_has("AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET");
    assert_eq!(ctx.mock().request_count(), 0);
    assert!(tokens.hits.lock().expect("lock").is_empty());
    ctx.write(
        ".env",
        &format!(
            "AZURE_TENANT_ID=tenant-1\nAZURE_CLIENT_ID=client-1\nAZURE_CLIENT_SECRET=s3cret-value-xyz\nAZURE_AUTHORITY_HOST={}/\n",
            tokens.url
        ),
    );
    let run = ctx.run(&[
        "run",
        "az",
        "--data",
        "lines.jsonl",
        "--name",
        "r1",
        "--concurrency",
        "1",
    ]);
    run.expect_code(0);
    let hits = tokens.hits.lock().expect("lock").clone();
    assert_eq!(
        hits.len(),
        1,
        "the token is cached for the second line: {hits:?}"
    );
    assert_eq!(hits[0].0, "/tenant-1/oauth2/v2.0/token");
    for part in [
        "grant_type=client_credentials",
        "client_id=client-1",
        "client_secret=s3cret-value-xyz",
        "scope=https%3A%2F%2Fcognitiveservices.azure.com%2F.default",
    ] {
        assert!(hits[0].1.contains(part), "{part} in {}", hits[0].1);
    }
    ctx.run(&["build", "az", "--format", "docker", "--out-dir", "image"])
        .expect_code(0)
        .stdout_has("the container needs: AZURE_CLIENT_SECRET");
    let requests = ctx.mock().requests();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert_eq!(r.header("authorization"), Some("Bearer entra-token-123"));
        assert_eq!(r.header("api-key"), None);
    }

    // Workload identity: the federated token file's token is the client assertion.
    ctx.write("sa-token", "federated-assertion-abc\n");
    ctx.write(
        ".env",
        &format!(
            "AZURE_TENANT_ID=tenant-2\nAZURE_CLIENT_ID=client-2\nAZURE_FEDERATED_TOKEN_FILE={}\nAZURE_AUTHORITY_HOST={}\n",
            ctx.root().join("sa-token").display(),
            tokens.url
        ),
    );
    ctx.run(&[
        "run",
        "az",
        "--data",
        "lines.jsonl",
        "--name",
        "r2",
        "--no-cache",
    ])
    .expect_code(0);
    let hits = tokens.hits.lock().expect("lock").clone();
    let (path, form, _) = hits.last().expect("a token request");
    assert_eq!(path, "/tenant-2/oauth2/v2.0/token");
    for part in [
        "client_id=client-2",
        "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer",
        "client_assertion=federated-assertion-abc&",
        "grant_type=client_credentials",
    ] {
        assert!(form.contains(part), "{part} in {form}");
    }

    // Managed identity (App Service, Container Apps): a GET with the platform's header.
    ctx.write(
        ".env",
        &format!(
            "IDENTITY_ENDPOINT={}/msi/token\nIDENTITY_HEADER=platform-header-xyz\n",
            tokens.url
        ),
    );
    ctx.run(&[
        "run",
        "az",
        "--data",
        "lines.jsonl",
        "--name",
        "r3",
        "--no-cache",
    ])
    .expect_code(0);
    let hits = tokens.hits.lock().expect("lock").clone();
    let (path, _, header) = hits.last().expect("a token request");
    assert_eq!(
        path,
        "/msi/token?api-version=2019-08-01&resource=https%3A%2F%2Fcognitiveservices.azure.com"
    );
    assert_eq!(header, "platform-header-xyz");
    assert_eq!(ctx.mock().request_count(), 6);
}

/// `flow connections` lists the connections Python nodes take, not only llm nodes'; `flow
/// build` ships the project's connection files (secret-free) where the image's flow finds them.
#[test]
fn python_node_connections_are_listed_and_connection_files_ship_in_the_image() {
    let ctx = TestContext::new();
    ctx.flow(
        "u",
        &[
            ("flow.dag.yaml", &UNION_FLOW.replace("CONN", "aoai")),
            ("which.py", UNION_TOOL),
        ],
    );
    ctx.write(
        "connections/svc.yaml",
        "name: svc\ntype: custom\nconfigs: {region: eu}\nsecrets: {key1: \"${env:SVC_SECRET}\"}\n",
    );
    ctx.write(
        ".env",
        "AOAI_API_TYPE=azure\nAOAI_API_KEY=k-aaaaaaaaaaaaaaaa\nAOAI_API_BASE=https://a.openai.azure.com\nSVC_SECRET=very-secret-value-1\n",
    );
    ctx.run(&["connections", "u"])
        .expect_code(0)
        .stdout_has("aoai ok")
        .stdout_has("svc ok");
    let run = ctx.run(&["build", "u", "--format", "docker", "--out-dir", "image"]);
    run.expect_code(0);
    let shipped =
        std::fs::read_to_string(ctx.root().join("image/connections/svc.yaml")).unwrap_or_default();
    assert!(shipped.contains("${env:SVC_SECRET}"), "{shipped}");
    let dockerfile =
        std::fs::read_to_string(ctx.root().join("image/Dockerfile")).unwrap_or_default();
    assert!(
        dockerfile.contains("COPY connections/ /app/connections/"),
        "{dockerfile}"
    );
    for entry in walk(&ctx.root().join("image")) {
        let text = String::from_utf8_lossy(&std::fs::read(&entry).unwrap_or_default()).into_owned();
        assert!(
            !text.contains("very-secret-value-1"),
            "{} holds the secret",
            entry.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            if !p.ends_with("bin") {
                out.extend(walk(&p));
            }
        } else {
            out.push(p);
        }
    }
    out
}

/// `additional_includes` are beside the flow's files where its tools look (working directory
/// and imports), as in promptflow's flow snapshot.
#[test]
fn additional_includes_are_in_the_tools_working_directory() {
    let ctx = TestContext::new();
    ctx.write("common/helpers.py", "def shout(s):\n    return s.upper()\n");
    ctx.write("common/data/words.txt", "alpha\n");
    ctx.flow(
        "inc",
        &[
            (
                "flow.dag.yaml",
                "additional_includes:\n- ../common/helpers.py\n- ../common/data\noutputs:\n  out: {type: string, reference: \"${t.output}\"}\nnodes:\n- name: t\n  type: python\n  source: {type: code, path: t.py}\n  inputs: {}\n",
            ),
            (
                "t.py",
                "from promptflow import tool\nimport helpers\n\n\n@tool\ndef t() -> str:\n    with open('data/words.txt') as f:\n        return helpers.shout(f.read().strip())\n",
            ),
        ],
    );
    let run = ctx.run(&["run", "inc", "--output", "json"]);
    run.expect_code(0);
    assert_eq!(run.json()["outputs"]["out"], "ALPHA", "{run:?}");
}

#[test]
fn connection_classes_import_from_their_older_home_promptflow_sdk_entities() {
    let ctx = TestContext::new();
    ctx.flow(
        "f",
        &[
            (
                "flow.dag.yaml",
                "inputs: {}\noutputs:\n  out: {reference: '${n.output}'}\nnodes:\n- {name: n, type: python, source: {type: code, path: n.py}}\n",
            ),
            (
                "n.py",
                "from promptflow import tool\nfrom promptflow._sdk.entities import AzureOpenAIConnection, CustomConnection\nfrom promptflow.connections import AzureOpenAIConnection as Same\n\n@tool\ndef n() -> str:\n    c = AzureOpenAIConnection(api_key='k', api_base='https://x.openai.azure.com')\n    return f'{AzureOpenAIConnection is Same} {c.api_base} {CustomConnection.__name__}'\n",
            ),
        ],
    );
    ctx.run(&["run", "f"])
        .expect_code(0)
        .stdout_has("True https://x.openai.azure.com CustomConnection");
}

/// The GenAIOps template's flex flows, as they are: `promptflow.core._flow.Prompty` and
/// `promptflow.core._model_configuration` (promptflow's private homes of these classes) import,
/// and an input declared `default: ''` in a flex flow file has no default there — the entry's
/// own default applies, as promptflow's script executor has it.
#[test]
fn genaiops_flex_shapes_private_imports_and_empty_string_defaults() {
    let ctx = TestContext::new();
    ctx.flow(
        "chat",
        &[
            (
                "flow.flex.yaml",
                "entry: flow:ChatFlow\ninputs:\n  question:\n    type: string\n    default: What is flow?\n  chat_history:\n    type: list\n    default: ''\ninit:\n  max_total_token:\n    type: int\n    default: ''\n",
            ),
            (
                "flow.py",
                r#"
from promptflow.core._flow import Prompty
from promptflow.core._model_configuration import AzureOpenAIModelConfiguration
from promptflow.core import Prompty as CorePrompty


class ChatFlow:
    def __init__(self, max_total_token=4096):
        self.max_total_token = max_total_token

    def __call__(self, question: str, chat_history: list = None) -> str:
        assert Prompty is CorePrompty
        return "%s|%r|%d|%s" % (question, chat_history, self.max_total_token,
                                AzureOpenAIModelConfiguration.__name__)
"#,
            ),
        ],
    );
    let run = ctx.run(&["run", "chat", "--output", "json"]);
    run.expect_code(0);
    assert_eq!(
        run.json()["outputs"]["output"],
        json!("What is flow?|None|4096|AzureOpenAIModelConfiguration")
    );
    // A DAG flow keeps `''` as a value its type must take.
    ctx.flow(
        "dag",
        &[(
            "flow.dag.yaml",
            "inputs:\n  h:\n    type: list\n    default: ''\noutputs:\n  o: {type: string, reference: '${inputs.h}'}\nnodes: []\n",
        )],
    );
    ctx.run(&["validate", "dag"])
        .expect_code(2)
        .stderr_has("the default of input `h`: \"\" is not a valid list");
}

/// An experiment's evaluator folder with no flow file in it (the GenAIOps template's
/// `eval_nlp`, a promptflow-evals script) is refused, located, saying what the folder holds.
#[test]
fn an_evaluator_folder_without_a_flow_file_says_what_it_holds() {
    let ctx = TestContext::new();
    ctx.flow(
        "flows/chat",
        &[(
            "flow.dag.yaml",
            "inputs:\n  q: {type: string}\noutputs:\n  o: {type: string, reference: '${inputs.q}'}\nnodes: []\n",
        )],
    );
    ctx.write(
        "flows/eval_nlp/eval_groundness.py",
        "from promptflow.evals.evaluate import evaluate\n",
    );
    ctx.write("data.jsonl", "{\"q\": \"hi\"}\n");
    ctx.write(
        "experiment.yaml",
        "name: chat\nflow: flows/chat\ndatasets:\n- name: d\n  source: data.jsonl\n  mappings:\n    q: ${data.q}\nevaluators:\n- name: nlp\n  flow: flows/eval_nlp\n  datasets:\n  - name: d\n    reference: d\n    source: data.jsonl\n    mappings:\n      answer: ${run.outputs.o}\n",
    );
    ctx.run(&["experiment", "experiment.yaml"])
        .expect_code(2)
        .stderr_has("evaluation flow `flows/eval_nlp` is a folder with no flow file in it")
        .stderr_has("it holds eval_groundness.py")
        .stderr_has("experiment.yaml:10:9");
}
