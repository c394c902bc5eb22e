//! promptflow-tools and `promptflow.core.Prompty` called from Python code, through the binary:
//! the model calls go through flow's host channel, providers and response cache (asserted on
//! the mock's request bodies and counts), are counted in the calling node's record, and their
//! failures reach Python as promptflow-tools' exception types.

use serde_json::{Value, json};

use crate::support::context::TestContext;
use crate::support::mock_llm::MockReply;

const FLOW: &str = "inputs: {q: {type: string}}\noutputs:\n  a: {reference: '${ask.output}'}\nnodes:\n- {name: ask, type: python, source: {type: code, path: ask.py}, inputs: {conn: open_ai_connection, q: '${inputs.q}'}}\n";

fn detail(ctx: &TestContext, flow: &str) -> Value {
    let text = std::fs::read_to_string(ctx.root().join(flow).join(".promptflow/flow.detail.json"))
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn the_openai_chat_tool_calls_the_model_through_flow_and_its_cache() {
    let ctx = TestContext::with_mock();
    ctx.mock().reply_when("capital of France", "Paris");
    ctx.flow(
        "f",
        &[
            ("flow.dag.yaml", FLOW),
            (
                "ask.py",
                "from promptflow.core import tool\nfrom promptflow.connections import OpenAIConnection\nfrom promptflow.tools.openai import chat\n\n@tool\ndef ask(conn: OpenAIConnection, q: str) -> str:\n    return chat(connection=conn, prompt='system:\\nBe brief.\\nuser:\\n{{question}}', model='gpt-4o-mini', max_tokens=20, temperature=0, question=q)\n",
            ),
        ],
    );
    ctx.run(&["run", "f", "--inputs", "q=What is the capital of France?"])
        .expect_code(0)
        .stdout_has("Paris");
    let reqs = ctx.mock().requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].path, "/v1/chat/completions");
    let body = &reqs[0].body;
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["max_tokens"], 20);
    assert_eq!(body["temperature"], 0);
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][0]["content"], "Be brief.");
    assert_eq!(
        body["messages"][1]["content"],
        "What is the capital of France?"
    );
    // The node's record counts the call's tokens.
    let d = detail(&ctx, "f");
    assert!(
        d["node_runs"][0]["system_metrics"]["total_tokens"]
            .as_u64()
            .unwrap()
            > 0,
        "{d}"
    );
    // A second run is answered from flow's response cache: no new request.
    ctx.run(&["run", "f", "--inputs", "q=What is the capital of France?"])
        .expect_code(0)
        .stdout_has("Paris");
    assert_eq!(ctx.mock().request_count(), 1);
    // A batch run records the calls under the node (model_calls), cached ones counted as hits.
    ctx.write("d.jsonl", "{\"q\": \"What is the capital of France?\"}\n");
    ctx.run(&["run", "f", "--data", "d.jsonl", "--name", "r1"])
        .expect_code(0);
    let record = std::fs::read_to_string(
        ctx.root()
            .join(".flow/runs/r1/node_artifacts/ask/000000000.jsonl"),
    )
    .unwrap();
    assert!(record.contains("\"model_calls\":1"), "{record}");
    assert!(record.contains("\"cached\":true"), "{record}");
    assert_eq!(ctx.mock().request_count(), 1);
}

#[test]
fn the_azure_tool_class_and_embedding_reach_their_endpoints() {
    let ctx = TestContext::with_mock();
    ctx.flow(
        "f",
        &[
            ("flow.dag.yaml", FLOW),
            (
                "ask.py",
                "from promptflow.core import tool\nfrom promptflow.connections import AzureOpenAIConnection, OpenAIConnection\nfrom promptflow.tools.aoai import AzureOpenAI\nfrom promptflow.tools.embedding import embedding\n\n@tool\ndef ask(conn: OpenAIConnection, q: str) -> dict:\n    azure = AzureOpenAIConnection(api_key=conn.api_key, api_base=conn.base_url.rsplit('/v1', 1)[0], api_version='2024-02-01')\n    text = AzureOpenAI(azure).completion(prompt='Say {{x}}', deployment_name='dep1', x=q)\n    vec = embedding(connection=conn, input=q, model='text-embedding-3-small')\n    return {'text': text, 'dims': len(vec)}\n",
            ),
        ],
    );
    ctx.run(&["run", "f", "--inputs", "q=hello", "--no-cache"])
        .expect_code(0);
    let reqs = ctx.mock().requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[0].path, "/openai/deployments/dep1/completions");
    assert!(reqs[0].header("api-key").is_some());
    assert_eq!(reqs[0].body["prompt"], "Say hello");
    // promptflow-tools' completion defaults are sent
    assert_eq!(reqs[0].body["max_tokens"], 16);
    assert_eq!(reqs[1].path, "/v1/embeddings");
    assert_eq!(reqs[1].body["model"], "text-embedding-3-small");
    assert_eq!(reqs[1].body["input"], serde_json::json!(["hello"]));
    let d = detail(&ctx, "f");
    assert_eq!(d["node_runs"][0]["output"]["dims"], 16, "{d}");
}

#[test]
fn an_endpoint_error_is_a_promptflow_tools_exception_in_python() {
    let ctx = TestContext::with_mock();
    ctx.mock()
        .push(MockReply::Status(400, "the prompt is not allowed".into()));
    ctx.flow(
        "f",
        &[
            ("flow.dag.yaml", FLOW),
            (
                "ask.py",
                "from promptflow.core import tool\nfrom promptflow.tools.openai import chat\nfrom promptflow.tools.exception import WrappedOpenAIError\n\n@tool\ndef ask(conn, q: str) -> str:\n    try:\n        return chat(connection=conn, prompt='user:\\n' + q, model='m')\n    except WrappedOpenAIError as e:\n        return 'caught: ' + str(e)\n",
            ),
        ],
    );
    ctx.run(&["run", "f", "--inputs", "q=hi", "--no-cache"])
        .expect_code(0)
        .stdout_has("caught: ")
        .stdout_has("the prompt is not allowed");
    // Uncaught, it fails the node with its type named.
    ctx.write(
        "f/ask.py",
        "from promptflow.core import tool\nfrom promptflow.tools.openai import chat\n\n@tool\ndef ask(conn, q: str) -> str:\n    return chat(connection='no_such_connection', prompt='user:\\n' + q, model='m')\n",
    );
    ctx.run(&["run", "f", "--inputs", "q=hi", "--no-cache"])
        .expect_code(1)
        .stderr_has("InvalidConnectionType")
        .stderr_has("no_such_connection");
}

#[test]
fn prompty_called_from_python_runs_through_flow() {
    let ctx = TestContext::with_mock();
    ctx.mock().reply_when("capital of Italy", "Rome");
    ctx.flow(
        "f",
        &[
            ("flow.dag.yaml", "inputs: {q: {type: string}}\noutputs:\n  a: {reference: '${ask.output}'}\nnodes:\n- {name: ask, type: python, source: {type: code, path: ask.py}, inputs: {q: '${inputs.q}'}}\n"),
            (
                "chat.prompty",
                "---\nname: Basic\nmodel:\n  api: chat\n  configuration:\n    type: azure_openai\n    azure_deployment: gpt-35\n  parameters:\n    max_tokens: 64\ninputs:\n  question:\n    type: string\n---\nsystem:\nYou answer in one word.\nuser:\n{{question}}\n",
            ),
            (
                "ask.py",
                "from promptflow.core import tool, Prompty, OpenAIModelConfiguration\n\n@tool\ndef ask(q: str) -> str:\n    cfg = OpenAIModelConfiguration(model='gpt-4o-mini', connection='open_ai_connection')\n    p = Prompty.load('chat.prompty', model={'configuration': cfg, 'parameters': {'temperature': 0}})\n    return p(question=q)\n",
            ),
        ],
    );
    ctx.run(&["run", "f", "--inputs", "q=What is the capital of Italy?"])
        .expect_code(0)
        .stdout_has("Rome");
    let reqs = ctx.mock().requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    let body = &reqs[0].body;
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["max_tokens"], 64);
    assert_eq!(body["temperature"], 0);
    assert_eq!(body["messages"][0]["content"], "You answer in one word.");
    let d = detail(&ctx, "f");
    assert!(
        d["node_runs"][0]["system_metrics"]["total_tokens"]
            .as_u64()
            .unwrap()
            > 0,
        "{d}"
    );
    // cached the second time
    ctx.run(&["run", "f", "--inputs", "q=What is the capital of Italy?"])
        .expect_code(0)
        .stdout_has("Rome");
    assert_eq!(ctx.mock().request_count(), 1);
}

/// `Prompty(..., model={"response": "all"})` (or the file's `response: all`) returns the whole
/// response as promptflow's Prompty does: the `openai` package's `ChatCompletion` when that package
/// is installed (`/work/pf-venv`-style environments), else a dict whose keys read as attributes —
/// either way `r.choices[1].message.content` and `r.usage.prompt_tokens` work, and `model_dump()`
/// gives the dict. `response: "first"` from code overrides the file's `all`.
#[test]
fn prompty_response_all_from_python_is_the_whole_response() {
    let ctx = TestContext::with_mock();
    ctx.flow(
        "f",
        &[
            ("flow.dag.yaml", "inputs: {q: {type: string}}\noutputs:\n  a: {reference: '${ask.output}'}\nnodes:\n- {name: ask, type: python, source: {type: code, path: ask.py}, inputs: {q: '${inputs.q}'}}\n"),
            (
                "chat.prompty",
                "---\nname: Basic\nmodel:\n  api: chat\n  configuration:\n    type: openai\n    model: m\n    connection: open_ai_connection\n  parameters:\n    max_tokens: 64\ninputs:\n  question:\n    type: string\n---\nuser:\n{{question}}\n",
            ),
            (
                "all.prompty",
                "---\nname: All\nmodel:\n  api: chat\n  configuration:\n    type: openai\n    model: m\n    connection: open_ai_connection\n  response: all\ninputs:\n  question:\n    type: string\n---\nuser:\n{{question}}\n",
            ),
            (
                "ask.py",
                "from promptflow.core import tool, Prompty\n\n@tool\ndef ask(q: str) -> dict:\n    r = Prompty.load('chat.prompty', model={'parameters': {'n': 2}, 'response': 'all'})(question=q)\n    first = Prompty.load('all.prompty', model={'response': 'first'})(question=q)\n    whole = Prompty.load('all.prompty')(question=q)\n    try:\n        Prompty.load('chat.prompty', model={'response': 'some'})\n        bad = 'accepted'\n    except ValueError as e:\n        bad = str(e)\n    return {'type': type(r).__name__, 'second': r.choices[1].message.content, 'prompt_tokens': r.usage.prompt_tokens, 'dumped': r.model_dump()['choices'][0]['message']['content'], 'first': first, 'whole': whole.choices[0].message.content, 'bad': bad}\n",
            ),
        ],
    );
    let run = ctx.run(&["run", "f", "--inputs", "q=hello", "--output", "json"]);
    let a = run.expect_code(0).json()["outputs"]["a"].clone();
    assert!(
        a["type"] == "ChatCompletion" || a["type"] == "_Response",
        "{a:#}"
    );
    assert_eq!(a["second"], "mock: hello #1", "{a:#}");
    assert!(a["prompt_tokens"].as_u64().unwrap() > 0, "{a:#}");
    assert_eq!(a["dumped"], "mock: hello", "{a:#}");
    assert_eq!(a["first"], "mock: hello", "{a:#}");
    assert_eq!(a["whole"], "mock: hello", "{a:#}");
    assert!(
        a["bad"]
            .as_str()
            .unwrap()
            .contains("use \"first\" or \"all\""),
        "{a:#}"
    );
    let bodies: Vec<_> = ctx.mock().requests().into_iter().map(|r| r.body).collect();
    assert_eq!(bodies[0]["n"], 2, "{bodies:?}");

    // Without the `openai` package: the attribute dict, read the same way.
    ctx.write(
        "f/openai/__init__.py",
        "raise ImportError('no openai here')\n",
    );
    let run = ctx.run(&["run", "f", "--inputs", "q=hello", "--output", "json"]);
    let b = run.expect_code(0).json()["outputs"]["a"].clone();
    assert_eq!(b["type"], "_Response", "{b:#}");
    for key in ["second", "prompt_tokens", "dumped", "first", "whole"] {
        assert_eq!(b[key], a[key], "{key}: {b:#}");
    }
}

/// The prompty of `prompty_estimate_token_count_is_promptflows_number`.
const ESTIMATE_PROMPTY: &str = "---\nname: Estimate\nmodel:\n  api: chat\n  configuration:\n    type: openai\n    model: gpt-4o-mini\n    connection: open_ai_connection\n  parameters:\n    max_tokens: 128\n    temperature: 0.2\ninputs:\n  firstName:\n    type: string\n    default: John\n  question:\n    type: string\n  chat_history:\n    type: list\n    default: []\n---\nsystem:\nYou are an AI assistant who helps people find information.\nAs the assistant, you answer questions briefly, succinctly,\nand in a personable manner using markdown and even add some personal flair with appropriate emojis 😀.\n\n# Customer\nYou are helping {{firstName}} to find answers to their questions.\n\n{% for item in chat_history %}\nuser:\n{{item.inputs.question}}\nassistant:\n{{item.outputs.answer}}\n{% endfor %}\n\nuser:\n{{question}}\n";

/// `Prompty.estimate_token_count(**inputs)` gives promptflow's number. The pinned numbers are
/// what promptflow 1.18.5 computes for the same file and calls (`/work/pf-venv`, this prompty
/// without its `connection` line, tiktoken's cl100k_base / o200k_base files put in
/// `TIKTOKEN_CACHE_DIR` since this machine cannot download them):
/// 205, 230 (Zoë and a chat history), 77 (max_tokens None), 207 (model gpt-3.5-turbo-0301), and
/// its errors for max_tokens "256" / 1 and a missing input.
#[test]
fn prompty_estimate_token_count_is_promptflows_number() {
    let ctx = TestContext::with_mock();
    ctx.flow(
        "f",
        &[
            ("flow.dag.yaml", "inputs: {q: {type: string}}\noutputs:\n  a: {reference: '${ask.output}'}\nnodes:\n- {name: ask, type: python, source: {type: code, path: ask.py}, inputs: {q: '${inputs.q}'}}\n"),
            ("est.prompty", ESTIMATE_PROMPTY),
            (
                "ask.py",
                "from promptflow.core import tool, Prompty\n\ndef attempt(f):\n    try:\n        return f()\n    except Exception as e:\n        return '%s: %s' % (type(e).__name__, e)\n\n@tool\ndef ask(q: str) -> list:\n    p = Prompty.load('est.prompty')\n    h = [{'inputs': {'question': 'Hi, who are you?'}, 'outputs': {'answer': 'I am a helpful assistant. Ça va?'}}]\n    return [\n        p.estimate_token_count(question=q),\n        p.estimate_token_count(question=q, firstName='Zoë', chat_history=h),\n        Prompty.load('est.prompty', model={'parameters': {'max_tokens': None}}).estimate_token_count(question=q),\n        Prompty.load('est.prompty', model={'configuration': {'model': 'gpt-3.5-turbo-0301', 'connection': 'open_ai_connection'}}).estimate_token_count(question=q),\n        attempt(lambda: Prompty.load('est.prompty', model={'parameters': {'max_tokens': '256'}}).estimate_token_count(question=q)),\n        attempt(lambda: Prompty.load('est.prompty', model={'parameters': {'max_tokens': 1}}).estimate_token_count(question=q)),\n        attempt(lambda: p.estimate_token_count()),\n        attempt(lambda: p.estimate_token_count('x')),\n    ]\n",
            ),
        ],
    );
    let run = ctx.run(&[
        "run",
        "f",
        "--inputs",
        "q=what is the result of 1+1?",
        "--output",
        "json",
    ]);
    let a = run.expect_code(0).json()["outputs"]["a"].clone();
    assert_eq!(
        a,
        json!([
            205,
            230,
            77,
            207,
            "ValueError: Max_token needs to be integer.",
            "ValueError: 1 is less than the minimum of max_tokens.",
            "ValueError: Missing required inputs: ['question']",
            "ValueError: Prompty can only be rendered with keyword arguments."
        ])
    );
    // counting calls no model
    assert_eq!(ctx.mock().request_count(), 0);
}

#[test]
fn another_promptflow_package_imports_beside_the_shim() {
    let ctx = TestContext::with_mock();
    ctx.write(
        "site/promptflow/fake_tools/__init__.py",
        "def hello():\n    return 'from the fake package'\n",
    );
    ctx.flow(
        "f",
        &[
            ("flow.dag.yaml", FLOW),
            (
                "ask.py",
                "from promptflow.core import tool\nfrom promptflow.fake_tools import hello\nimport promptflow.tools.common\n\n@tool\ndef ask(conn, q: str) -> str:\n    return hello()\n",
            ),
        ],
    );
    let out = ctx
        .cmd()
        .env("PYTHONPATH", ctx.root().join("site"))
        .args(["run", "f", "--inputs", "q=x"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("from the fake package"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn serpapi_is_refused_by_name() {
    let ctx = TestContext::with_mock();
    ctx.flow(
        "f",
        &[
            ("flow.dag.yaml", FLOW),
            (
                "ask.py",
                "from promptflow.core import tool\nfrom promptflow.tools.serpapi import SerpAPI\n\n@tool\ndef ask(conn, q: str) -> str:\n    return q\n",
            ),
        ],
    );
    ctx.run(&["run", "f", "--inputs", "q=x"])
        .expect_code(2)
        .stderr_has("SerpAPI");
}

#[test]
fn package_tool_nodes_are_refused_naming_the_package() {
    let ctx = TestContext::with_mock();
    ctx.flow(
        "f",
        &[(
            "flow.dag.yaml",
            "inputs: {q: {type: string}}\noutputs:\n  a: {reference: '${e.output}'}\nnodes:\n- name: e\n  type: python\n  source: {type: package, tool: promptflow.tools.azure_content_safety.analyze_text}\n  inputs: {connection: open_ai_connection, text: '${inputs.q}'}\n",
        )],
    );
    ctx.run(&["run", "f", "--inputs", "q=x"])
        .expect_code(2)
        .stderr_has("flow.dag.yaml:7:")
        .stderr_has("promptflow-tools (promptflow.tools)")
        .stderr_has("flow does not ship `promptflow.tools.azure_content_safety`");
    ctx.write(
        "f/flow.dag.yaml",
        "inputs: {q: {type: string}}\noutputs:\n  a: {reference: '${e.output}'}\nnodes:\n- name: e\n  type: python\n  source: {type: package, tool: my_search.tools.search.search}\n  inputs: {q: '${inputs.q}'}\n",
    );
    ctx.run(&["run", "f", "--inputs", "q=x"])
        .expect_code(2)
        .stderr_has("package `my_search`");
}

#[test]
fn a_flex_function_calls_prompty_with_an_explicit_azure_endpoint() {
    let ctx = TestContext::with_mock();
    ctx.flow(
        "f",
        &[
            ("flow.flex.yaml", "entry: flow:answer\n"),
            (
                "chat.prompty",
                "---\nname: Basic\nmodel:\n  api: chat\n  configuration:\n    type: azure_openai\n    azure_deployment: gpt-35\ninputs:\n  question:\n    type: string\n---\nuser:\n{{question}}\n",
            ),
            (
                "flow.py",
                "import os\nfrom pathlib import Path\nfrom promptflow.core import Prompty, AzureOpenAIModelConfiguration\n\nBASE = Path(__file__).parent\n\ndef answer(question: str) -> str:\n    cfg = AzureOpenAIModelConfiguration(azure_deployment='dep2', azure_endpoint=os.environ['OPEN_AI_CONNECTION_API_BASE'].rsplit('/v1', 1)[0], api_key=os.environ['OPEN_AI_CONNECTION_API_KEY'], api_version='2024-02-01')\n    return Prompty.load(source=BASE / 'chat.prompty', model={'configuration': cfg})(question=question)\n",
            ),
        ],
    );
    ctx.run(&["run", "f", "--inputs", "question=hello there"])
        .expect_code(0);
    let reqs = ctx.mock().requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].path, "/openai/deployments/dep2/chat/completions");
    assert_eq!(reqs[0].body["messages"][0]["content"], "hello there");
    // A missing file is an error in Python.
    ctx.write(
        "f/flow.py",
        "from promptflow.core import Prompty\n\ndef answer(question: str) -> str:\n    try:\n        Prompty.load('missing.prompty')\n    except FileNotFoundError as e:\n        return 'missing: ' + str(e)\n",
    );
    ctx.run(&["run", "f", "--inputs", "question=x"])
        .expect_code(0)
        .stdout_has("missing: no such .prompty file");
}

#[test]
fn package_tool_nodes_run_on_flows_providers() {
    let ctx = TestContext::with_mock();
    ctx.mock().reply_when("capital of Spain", "Madrid");
    ctx.write(
        ".env",
        &format!(
            "AZURE_CONN_API_TYPE=azure\nAZURE_CONN_API_BASE={}\nAZURE_CONN_API_KEY={}\n",
            ctx.mock().url(),
            "sk-test-0123456789abcdef"
        ),
    );
    ctx.flow(
        "f",
        &[(
            "flow.dag.yaml",
            "inputs: {q: {type: string}}\noutputs:\n  v: {reference: '${embed.output}'}\n  a: {reference: '${ask.output}'}\n  o: {reference: '${oa.output}'}\nnodes:\n- name: embed\n  type: python\n  source: {type: package, tool: promptflow.tools.embedding.embedding}\n  inputs: {connection: open_ai_connection, input: '${inputs.q}', model: text-embedding-3-small}\n- name: ask\n  type: python\n  source: {type: package, tool: promptflow.tools.aoai.AzureOpenAI.chat}\n  inputs: {connection: azure_conn, deployment_name: gpt-35, prompt: \"system:\\nBe brief.\\nuser:\\n{{question}}\", question: '${inputs.q}', max_tokens: '20'}\n- name: oa\n  type: python\n  source: {type: package, tool: promptflow.tools.openai.OpenAI.completion}\n  inputs: {connection: open_ai_connection, model: gpt-3.5-turbo-instruct, prompt: 'Q: {{q}}', q: '${inputs.q}'}\n",
        )],
    );
    let run = ctx.run(&["run", "f", "--inputs", "q=What is the capital of Spain?"]);
    run.expect_code(0).stdout_has("Madrid");
    let reqs = ctx.mock().requests();
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    let find = |p: &str| {
        reqs.iter()
            .find(|r| r.path == p)
            .unwrap_or_else(|| panic!("no request to {p}: {reqs:?}"))
    };
    let emb = find("/v1/embeddings");
    assert_eq!(emb.body["model"], "text-embedding-3-small");
    let chat = find("/openai/deployments/gpt-35/chat/completions");
    assert_eq!(chat.body["max_tokens"], 20);
    assert_eq!(chat.body["n"], 1);
    assert_eq!(chat.body["temperature"], 1.0);
    assert_eq!(chat.body["messages"][0]["content"], "Be brief.");
    assert_eq!(
        chat.body["messages"][1]["content"],
        "What is the capital of Spain?"
    );
    let comp = find("/v1/completions");
    assert_eq!(comp.body["prompt"], "Q: What is the capital of Spain?");
    assert_eq!(comp.body["max_tokens"], 16);
    let d = detail(&ctx, "f");
    let ask = d["node_runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == "ask")
        .unwrap();
    assert!(
        ask["system_metrics"]["total_tokens"].as_u64().unwrap() > 0,
        "{d}"
    );
    // the embedding's tokens are counted as the endpoint reported them
    let embed = |d: &Value| {
        d["node_runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node"] == "embed")
            .unwrap()
            .clone()
    };
    let first = embed(&d);
    assert_eq!(first["system_metrics"]["prompt_tokens"], 6, "{first}");
    assert_eq!(first["system_metrics"]["total_tokens"], 6, "{first}");
    // chat, completion and embedding are answered from the response cache on a second run;
    // a connection that is not configured is a located refusal
    ctx.run(&["run", "f", "--inputs", "q=What is the capital of Spain?"])
        .expect_code(0);
    let again = ctx.mock().requests();
    assert_eq!(again.len(), 3, "{again:?}");
    let d2 = detail(&ctx, "f");
    assert_eq!(embed(&d2)["output"], first["output"], "{d2}");
    ctx.write(
        "f/flow.dag.yaml",
        "inputs: {q: {type: string}}\noutputs:\n  v: {reference: '${embed.output}'}\nnodes:\n- name: embed\n  type: python\n  source: {type: package, tool: promptflow.tools.embedding.embedding}\n  inputs: {connection: nowhere_conn, input: '${inputs.q}'}\n",
    );
    ctx.run(&["run", "f", "--inputs", "q=x"])
        .expect_code(2)
        .stderr_has("nowhere_conn")
        .stderr_has("flow.dag.yaml:");
}

#[test]
fn custom_llm_vision_nodes_send_images_as_content_parts() {
    use base64::Engine;
    let ctx = TestContext::with_mock();
    ctx.mock().reply_when("a red apple", "fruit");
    let flow = "inputs:\n  q: {type: string}\n  img: {type: object, default: null}\noutputs:\n  a: {reference: '${see.output}'}\nnodes:\n- name: see\n  type: custom_llm\n  source: {type: package_with_prompt, path: see.jinja2, tool: promptflow.tools.openai_gpt4v.OpenAI.chat}\n  inputs: {connection: open_ai_connection, model: gpt-4o, max_tokens: 50, detail: high, question: '${inputs.q}', picture: '${inputs.img}'}\n";
    ctx.flow(
        "f",
        &[
            ("flow.dag.yaml", flow),
            (
                "see.jinja2",
                "system:\nName the kind ({{detail}}).\nuser:\n{{question}}\n![image]({{picture}})\n",
            ),
        ],
    );
    let b64 =
        base64::engine::general_purpose::STANDARD.encode(crate::images::png(2, 2, [255, 0, 0]));
    ctx.write(
        "in.json",
        &json!({"q": "a red apple", "img": {"data:image/png;base64": b64}}).to_string(),
    );
    ctx.run(&["run", "f", "--inputs", "in.json"])
        .expect_code(0)
        .stdout_has("fruit")
        .stderr_has("`detail: high` does not reach the image parts");
    let reqs = ctx.mock().requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].body["model"], "gpt-4o");
    assert_eq!(reqs[0].body["max_tokens"], 50);
    // `detail` is a template variable, as in promptflow-tools (its gpt4v tools pass it to
    // build_messages under a name that is not `image_detail`): the image part says "auto"
    assert_eq!(
        reqs[0].body["messages"],
        json!([
            {"role": "system", "content": "Name the kind (high)."},
            {"role": "user", "content": [
                {"type": "text", "text": "a red apple"},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{b64}"), "detail": "auto"}},
            ]},
        ])
    );
    // the Azure vision tool sends it the same way, to its deployment
    ctx.mock().clear_requests();
    ctx.write(
        ".env",
        &format!(
            "AZURE_CONN_API_TYPE=azure\nAZURE_CONN_API_BASE={}\nAZURE_CONN_API_KEY=sk-test-0123456789abcdef\n",
            ctx.mock().url()
        ),
    );
    ctx.write(
        "f/flow.dag.yaml",
        &flow
            .replace(
                "promptflow.tools.openai_gpt4v.OpenAI.chat",
                "promptflow.tools.aoai_gpt4v.AzureOpenAI.chat",
            )
            .replace(
                "connection: open_ai_connection, model: gpt-4o",
                "connection: azure_conn, deployment_name: vision",
            ),
    );
    ctx.run(&["run", "f", "--inputs", "in.json", "--no-cache"])
        .expect_code(0)
        .stdout_has("fruit");
    let reqs = ctx.mock().requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].path, "/openai/deployments/vision/chat/completions");
    assert_eq!(
        reqs[0].body["messages"][1]["content"][1],
        json!({"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{b64}"), "detail": "auto"}})
    );
    // a package chat tool sends it the same way
    ctx.mock().clear_requests();
    ctx.write(
        "f/flow.dag.yaml",
        &flow
            .replace("type: custom_llm", "type: python")
            .replace("type: package_with_prompt, path: see.jinja2, tool: promptflow.tools.openai_gpt4v.OpenAI.chat", "type: package, tool: promptflow.tools.openai.OpenAI.chat")
            .replace("detail: high,", "prompt: \"user:\\n{{question}}\\n![image]({{picture}})\","),
    );
    ctx.run(&["run", "f", "--inputs", "in.json", "--no-cache"])
        .expect_code(0)
        .stdout_has("fruit");
    let reqs = ctx.mock().requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(
        reqs[0].body["messages"][0]["content"][1],
        json!({"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{b64}"), "detail": "auto"}})
    );
    // a custom_llm tool flow does not run is refused, naming it
    ctx.write(
        "f/flow.dag.yaml",
        &flow.replace(
            "promptflow.tools.openai_gpt4v.OpenAI.chat",
            "my_pkg.tools.fancy",
        ),
    );
    ctx.run(&["run", "f", "--inputs", "q=x"])
        .expect_code(2)
        .stderr_has("my_pkg.tools.fancy");
}

#[test]
fn image_objects_in_python_calls_become_content_parts() {
    use base64::Engine;
    let ctx = TestContext::with_mock();
    ctx.mock().reply_when("What colour", "red");
    let flow = "inputs: {q: {type: string}, img: {type: image}}\noutputs:\n  a: {reference: '${ask.output}'}\nnodes:\n- {name: ask, type: python, source: {type: code, path: ask.py}, inputs: {conn: open_ai_connection, q: '${inputs.q}', img: '${inputs.img}'}}\n";
    let code = "from promptflow.core import tool\nfrom promptflow.tools.openai import chat\nfrom promptflow.tools.common import render_jinja_template, parse_chat\n\n@tool\ndef ask(conn, q: str, img) -> dict:\n    answer = chat(connection=conn, prompt='user:\\n{{q}}\\n![image]({{img}})', model='gpt-4o', q=q, img=img)\n    text = render_jinja_template('user:\\n{{q}}\\n{{img}}', q=q, img=img)\n    return {'answer': answer, 'text': text, 'marker': str(img), 'messages': parse_chat(text, images=[img], image_detail='low')}\n";
    ctx.flow("f", &[("flow.dag.yaml", flow), ("ask.py", code)]);
    let bytes = crate::images::png(2, 2, [255, 0, 0]);
    std::fs::write(ctx.root().join("f/red.png"), &bytes).unwrap();
    let url = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&bytes)
    );
    ctx.run(&["run", "f", "--inputs", "q=What colour?", "img=red.png"])
        .expect_code(0)
        .stdout_has("red");
    // chat() sends the image as an llm node does
    let reqs = ctx.mock().requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(
        reqs[0].body["messages"],
        json!([{"role": "user", "content": [
            {"type": "text", "text": "What colour?"},
            {"type": "image_url", "image_url": {"url": url, "detail": "auto"}},
        ]}])
    );
    // render_jinja_template prints the image as str(image); parse_chat makes its line a part
    let d = detail(&ctx, "f");
    let out = &d["node_runs"][0]["output"];
    let marker = out["marker"].as_str().unwrap();
    assert_eq!(
        out["text"],
        format!("user:\nWhat colour?\n{marker}"),
        "{out}"
    );
    assert_eq!(
        out["messages"],
        json!([{"role": "user", "content": [
            {"type": "text", "text": "What colour?"},
            {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
        ]}])
    );
}

#[test]
fn a_key_given_in_code_that_the_endpoint_rejects_is_named_as_such() {
    let ctx = TestContext::with_mock();
    ctx.mock().set_api_key("sk-the-right-key-0123456789");
    ctx.flow(
        "f",
        &[
            ("flow.dag.yaml", FLOW),
            (
                "ask.py",
                "from promptflow.core import tool\nfrom promptflow.connections import OpenAIConnection\nfrom promptflow.tools.openai import chat\n\n@tool\ndef ask(conn: OpenAIConnection, q: str) -> str:\n    mine = OpenAIConnection(api_key='sk-a-wrong-key-0123456789', base_url=conn.base_url)\n    return chat(connection=mine, prompt='user:\\n' + q, model='m')\n",
            ),
        ],
    );
    let run = ctx.run(&["run", "f", "--inputs", "q=hi", "--no-cache"]);
    run.expect_code(1)
        .stderr_has("401")
        .stderr_has("the api_key given in code");
    let err = &run.stderr;
    assert!(!err.contains("FLOW_PYTHON"), "{err}");
    assert!(!err.contains("flow_python"), "{err}");
    assert!(!err.contains("sk-a-wrong-key"), "{err}");
    // so is a Prompty model configuration built in code
    ctx.write(
        "f/chat.prompty",
        "---\nname: Basic\nmodel:\n  api: chat\n  configuration: {type: openai, model: m}\n---\nuser:\n{{q}}\n",
    );
    ctx.write(
        "f/ask.py",
        "from pathlib import Path\nfrom promptflow.core import tool, Prompty, OpenAIModelConfiguration\nfrom promptflow.connections import OpenAIConnection\n\n@tool\ndef ask(conn: OpenAIConnection, q: str) -> str:\n    cfg = OpenAIModelConfiguration(model='m', base_url=conn.base_url, api_key='sk-a-wrong-key-0123456789')\n    return Prompty.load(source=Path(__file__).parent / 'chat.prompty', model={'configuration': cfg})(q=q)\n",
    );
    let run = ctx.run(&["run", "f", "--inputs", "q=hi", "--no-cache"]);
    run.expect_code(1)
        .stderr_has("401")
        .stderr_has("the api_key given in code");
    let err = &run.stderr;
    assert!(!err.contains("FLOW_PYTHON"), "{err}");
    assert!(!err.contains("flow_python"), "{err}");
}

#[test]
fn an_embedding_from_python_is_cached_and_its_tokens_counted() {
    let ctx = TestContext::with_mock();
    ctx.flow(
        "f",
        &[
            ("flow.dag.yaml", FLOW),
            (
                "ask.py",
                "from promptflow.core import tool\nfrom promptflow.tools.embedding import embedding\n\n@tool\ndef ask(conn, q: str) -> list:\n    return embedding(connection=conn, input=q, model='text-embedding-3-small')\n",
            ),
        ],
    );
    ctx.run(&["run", "f", "--inputs", "q=three small words"])
        .expect_code(0);
    assert_eq!(ctx.mock().request_count(), 1);
    let d = detail(&ctx, "f");
    let first = d["node_runs"][0].clone();
    assert_eq!(first["system_metrics"]["total_tokens"], 3, "{d}");
    // a second run is answered from the response cache: no embedding request
    ctx.run(&["run", "f", "--inputs", "q=three small words"])
        .expect_code(0);
    assert_eq!(ctx.mock().request_count(), 1);
    let d = detail(&ctx, "f");
    assert_eq!(d["node_runs"][0]["output"], first["output"], "{d}");
}

#[test]
fn threads_share_the_channel_and_oversized_requests_are_refused() {
    let ctx = TestContext::with_mock();
    ctx.flow(
        "f",
        &[
            ("flow.dag.yaml", FLOW),
            (
                "ask.py",
                "from concurrent.futures import ThreadPoolExecutor\nfrom promptflow.core import tool\nfrom promptflow.tools.openai import chat\n\n@tool\ndef ask(conn, q: str) -> dict:\n    with ThreadPoolExecutor(4) as pool:\n        answers = list(pool.map(lambda i: chat(connection=conn, prompt='user:\\n' + q + str(i), model='m'), range(8)))\n    try:\n        chat(connection=conn, prompt='x' * (17 << 20), model='m')\n        big = 'sent'\n    except ValueError as e:\n        big = str(e)\n    return {'n': len(answers), 'big': big}\n",
            ),
        ],
    );
    ctx.run(&["run", "f", "--inputs", "q=hi", "--no-cache"])
        .expect_code(0);
    assert_eq!(ctx.mock().request_count(), 8);
    let d = detail(&ctx, "f");
    assert_eq!(d["node_runs"][0]["output"]["n"], 8, "{d}");
    assert!(
        d["node_runs"][0]["output"]["big"]
            .as_str()
            .unwrap()
            .contains("larger than 16 MiB"),
        "{d}"
    );
}

/// A tool that calls the model and then raises: the calls were made and paid for, so the
/// failed node's record keeps their tokens, cost and count (and what the tool printed and
/// traced), and the line's and the run's totals include them, as promptflow's run info does.
#[test]
fn a_tool_that_raises_after_calling_the_model_keeps_what_it_spent() {
    let ctx = TestContext::with_mock();
    ctx.mock().reply_when("capital", "Paris");
    ctx.flow(
        "f",
        &[
            ("flow.dag.yaml", FLOW),
            (
                "ask.py",
                r#"from promptflow.core import tool
from promptflow.tracing import trace
from promptflow.connections import OpenAIConnection
from promptflow.tools.openai import chat


@trace
def helper(q):
    return q.upper()


@tool
def ask(conn: OpenAIConnection, q: str) -> str:
    answer = chat(connection=conn, prompt='user:\n{{q}}', model='gpt-4o-mini', q=q)
    print("the model said", answer)
    helper(q)
    raise ValueError("the answer was not what I wanted")
"#,
            ),
        ],
    );
    ctx.write("d.jsonl", "{\"q\": \"What is the capital of France?\"}\n");
    ctx.run(&["run", "f", "--data", "d.jsonl", "--name", "r1"])
        .expect_code(1)
        .stderr_has("ValueError: the answer was not what I wanted");
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(
            ctx.root()
                .join(".flow/runs/r1/node_artifacts/ask/000000000.jsonl"),
        )
        .unwrap(),
    )
    .unwrap();
    let info = &record["run_info"];
    assert_eq!(info["status"], "Failed", "{info}");
    assert_eq!(info["model_calls"], 1, "{info}");
    assert!(
        info["tokens"]["total_tokens"].as_u64().unwrap() > 0,
        "{info}"
    );
    assert!(
        info["stdout"]
            .as_str()
            .unwrap()
            .contains("the model said Paris"),
        "{info}"
    );
    assert!(info["api_calls"].to_string().contains("helper"), "{info}");
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(ctx.root().join(".flow/runs/r1/meta.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        meta["tokens"]["total_tokens"], info["tokens"]["total_tokens"],
        "{meta}"
    );
}

/// `estimate_token_count` of a prompt holding an image sizes the image as promptflow does
/// (OpenAI's tile pricing, the image opened with PIL there): pinned to what promptflow 1.18.5
/// computes for this prompty and a 1500×900 PNG given as an `Image` (1225: 1105 for the image,
/// 20 for the text, 100 `max_tokens`). An image given by URL is refused (promptflow downloads it).
#[test]
fn prompty_estimate_token_count_sizes_inline_images_as_promptflow_does() {
    let ctx = TestContext::new();
    let png = std::fs::read(
        crate::support::context::repo_root().join("tests/fixtures/images/size-1500x900.png"),
    )
    .unwrap();
    std::fs::create_dir_all(ctx.root().join("f")).unwrap();
    std::fs::write(ctx.root().join("f/big.png"), png).unwrap();
    ctx.flow(
        "f",
        &[
            ("flow.dag.yaml", "inputs: {q: {type: string}}\noutputs:\n  a: {reference: '${ask.output}'}\nnodes:\n- {name: ask, type: python, source: {type: code, path: ask.py}, inputs: {q: '${inputs.q}'}}\n"),
            (
                "img.prompty",
                "---\nname: Img\nmodel:\n  api: chat\n  configuration:\n    type: openai\n    model: gpt-4o-mini\n  parameters:\n    max_tokens: 100\ninputs:\n  question:\n    type: string\n  image:\n    type: image\n---\nsystem:\nYou look at pictures.\n\nuser:\n{{question}}\n![image]({{image}})\n",
            ),
            (
                "ask.py",
                "from promptflow.core import tool, Prompty\nfrom promptflow.contracts.multimedia import Image\n\n@tool\ndef ask(q: str) -> list:\n    p = Prompty.load('img.prompty')\n    img = Image(open('big.png', 'rb').read(), mime_type='image/png')\n    out = [p.estimate_token_count(question=q, image=img)]\n    try:\n        p.estimate_token_count(question=q, image='https://example.com/a.png')\n    except NotImplementedError as e:\n        out.append(str(e))\n    return out\n",
            ),
        ],
    );
    let run = ctx.run(&[
        "run",
        "f",
        "--inputs",
        "q=What is this?",
        "--offline",
        "--output",
        "json",
    ]);
    let a = run.expect_code(0).json()["outputs"]["a"].clone();
    assert_eq!(a[0], 1225, "{a}");
    assert!(
        a[1].as_str().unwrap().contains("an image given by URL"),
        "{a}"
    );
}
