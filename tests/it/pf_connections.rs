//! promptflow connection files (`connections/*.yml`, `--connections DIR`) through the binary:
//! `${env:VAR}` keys reaching the endpoint, literal secrets refused at their place, `X_*`
//! variables winning over file fields, and custom connections reaching Python tools.

use crate::support::context::TestContext;
use crate::support::mock_llm::MockLlm;

const FLOW: &str = "inputs: {q: {type: string}}\noutputs:\n  a: {reference: '${ask.output}'}\nnodes:\n- {name: ask, type: llm, source: {type: code, path: ask.jinja2}, connection: open_ai_connection, api: chat, inputs: {model: gpt-4o-mini, q: '${inputs.q}'}}\n";

const KEY: &str = "sk-from-env-ref-0123456789";

fn with_mock() -> TestContext {
    TestContext {
        dir: tempfile::tempdir().unwrap(),
        mock: Some(MockLlm::start()),
    }
}

fn openai_yaml(base: &str, key: &str) -> String {
    format!(
        "$schema: https://azuremlschemas.azureedge.net/promptflow/latest/OpenAIConnection.schema.json\nname: open_ai_connection\ntype: open_ai\napi_key: {key}\nbase_url: {base}\norganization: \"\"\n"
    )
}

/// Runs flow with the mock's `OPEN_AI_CONNECTION_*` variables removed (the file configures it).
fn flow(ctx: &TestContext, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = ctx.std_cmd();
    cmd.env_remove("OPEN_AI_CONNECTION_API_KEY")
        .env_remove("OPEN_AI_CONNECTION_API_BASE")
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_connection_file_with_an_env_reference_reaches_the_endpoint_with_that_key() {
    let ctx = with_mock();
    ctx.mock().set_api_key(KEY);
    ctx.flow(
        "f",
        &[("flow.dag.yaml", FLOW), ("ask.jinja2", "user:\n{{q}}")],
    );
    ctx.write(
        "connections/openai.yml",
        &openai_yaml(&ctx.mock().openai_base(), "${env:MY_OPENAI_KEY}"),
    );
    // The key lives in .env, read through the reference; the file holds none.
    ctx.write(".env", &format!("MY_OPENAI_KEY={KEY}\n"));
    let (code, stdout, stderr) = flow(&ctx, &["run", "f", "--inputs", "q=hello"], &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let reqs = ctx.mock().requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(
        reqs[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(reqs[0].path, "/v1/chat/completions");

    let (code, stdout, stderr) = flow(&ctx, &["connections", "f"], &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("open_ai_connection ok"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "file:    {}",
            ctx.root().join("connections/openai.yml").display()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("from:    MY_OPENAI_KEY"), "{stdout}");
    assert!(stderr.contains("connection files: "), "{stderr}");
    assert!(!stdout.contains(KEY) && !stderr.contains(KEY), "key leaked");

    // An unset reference is named with its place in the file.
    std::fs::remove_file(ctx.root().join(".env")).unwrap();
    let (code, stdout, _) = flow(&ctx, &["connections", "f"], &[]);
    assert_eq!(code, Some(2), "{stdout}");
    assert!(
        stdout.contains("openai.yml:4:10: connection 'open_ai_connection': `api_key` is ${env:MY_OPENAI_KEY}, and MY_OPENAI_KEY is not set"),
        "{stdout}"
    );
}

#[test]
fn a_literal_secret_in_a_connection_file_is_refused_at_its_place_and_not_shown() {
    let ctx = with_mock();
    ctx.flow(
        "f",
        &[("flow.dag.yaml", FLOW), ("ask.jinja2", "user:\n{{q}}")],
    );
    let secret = "sk-literal-secret-in-yaml-42";
    ctx.write(
        "connections/openai.yml",
        &openai_yaml(&ctx.mock().openai_base(), secret),
    );
    for args in [
        &["run", "f", "--inputs", "q=hi"][..],
        &["connections", "f"][..],
    ] {
        let (code, stdout, stderr) = flow(&ctx, args, &[]);
        let all = format!("{stdout}{stderr}");
        assert_eq!(code, Some(2), "{args:?}: {all}");
        assert!(
            all.contains("openai.yml:4:10: `api_key` of connection 'open_ai_connection' holds a secret in the file"),
            "{all}"
        );
        assert!(all.contains("${env:VAR}"), "{all}");
        assert!(
            all.contains("4 | api_key: ****************************"),
            "{all}"
        );
        assert!(
            all.contains("  |          ^^^^^^^^^^^^^^^^^^^^^^^^^^^^"),
            "{all}"
        );
        assert!(!all.contains(secret), "the secret leaked: {all}");
    }
    assert_eq!(ctx.mock().request_count(), 0);

    // promptflow's template placeholder counts as unset: X_API_KEY supplies the key.
    ctx.write(
        "connections/openai.yml",
        &openai_yaml(&ctx.mock().openai_base(), "\"<user-input>\""),
    );
    let (code, stdout, stderr) = flow(
        &ctx,
        &["run", "f", "--inputs", "q=hi"],
        &[("OPEN_AI_CONNECTION_API_KEY", KEY)],
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains("is the placeholder \"<user-input>\""),
        "{stderr}"
    );
    assert_eq!(
        ctx.mock().requests()[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
}

#[test]
fn variables_win_over_file_fields_but_never_move_the_files_key_to_another_host() {
    let ctx = with_mock();
    ctx.flow(
        "f",
        &[("flow.dag.yaml", FLOW), ("ask.jinja2", "user:\n{{q}}")],
    );
    // The file's host is a dead port; the variable points at the mock.
    ctx.write(
        "connections/openai.yml",
        &openai_yaml("http://127.0.0.1:9/v1", "${env:MY_OPENAI_KEY}"),
    );
    let mock_base = ctx.mock().openai_base();
    let file_key = ("MY_OPENAI_KEY", "sk-file-key-must-stay-home-00");
    // The variable moves the host but the key is the file's: refused, nothing sent.
    let (code, stdout, stderr) = flow(
        &ctx,
        &["run", "f", "--inputs", "q=hi"],
        &[file_key, ("OPEN_AI_CONNECTION_API_BASE", &mock_base)],
    );
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("OPEN_AI_CONNECTION_API_BASE sends the key of"),
        "{stderr}"
    );
    assert_eq!(ctx.mock().request_count(), 0);

    // Key and host both from variables: they win over the file's, with a note.
    let (code, stdout, stderr) = flow(
        &ctx,
        &["run", "f", "--inputs", "q=hi"],
        &[
            file_key,
            ("OPEN_AI_CONNECTION_API_BASE", &mock_base),
            ("OPEN_AI_CONNECTION_API_KEY", KEY),
        ],
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains("note: OPEN_AI_CONNECTION_API_KEY is set and wins over `api_key`"),
        "{stderr}"
    );
    let reqs = ctx.mock().requests();
    assert_eq!(
        reqs[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );

    // Only the key from a variable: the file's host is kept (here dead: no request arrives).
    ctx.mock().clear_requests();
    let (code, _, _) = flow(
        &ctx,
        &["run", "f", "--inputs", "q=hi", "--max-retries", "0"],
        &[("OPEN_AI_CONNECTION_API_KEY", KEY)],
    );
    assert_ne!(code, Some(0));
    assert_eq!(ctx.mock().request_count(), 0);
}

#[test]
fn connections_dir_option_reads_another_folder_and_two_definitions_are_refused() {
    let ctx = with_mock();
    ctx.flow(
        "f",
        &[("flow.dag.yaml", FLOW), ("ask.jinja2", "user:\n{{q}}")],
    );
    ctx.write(
        "conf/pf/openai.yaml",
        &openai_yaml(&ctx.mock().openai_base(), "${env:MY_OPENAI_KEY}"),
    );
    let key = [("MY_OPENAI_KEY", KEY)];
    let (code, stdout, _) = flow(&ctx, &["connections", "f"], &key);
    assert_eq!(code, Some(2), "not read without the option: {stdout}");
    let (code, stdout, stderr) = flow(
        &ctx,
        &["connections", "f", "--connections", "conf/pf"],
        &key,
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("conf/pf/openai.yaml"), "{stdout}");
    let (code, stdout, stderr) = flow(
        &ctx,
        &["run", "f", "--inputs", "q=hi", "--connections", "conf/pf"],
        &key,
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(ctx.mock().request_count(), 1);

    let (code, _, stderr) = flow(&ctx, &["connections", "f", "--connections", "nope"], &key);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("connections folder"), "{stderr}");

    // The same connection in two files: which one is meant is unclear.
    ctx.write(
        "conf/pf/second.yml",
        "name: open_ai_connection\ntype: azure_open_ai\napi_key: ${env:MY_OPENAI_KEY}\napi_base: https://x.openai.azure.com\napi_typ: azure\n",
    );
    let (code, stdout, stderr) = flow(
        &ctx,
        &["connections", "f", "--connections", "conf/pf"],
        &key,
    );
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("second.yml:1:7: connection 'open_ai_connection' is also defined in"),
        "{stderr}"
    );
    // Unknown keys warn, with the key meant.
    std::fs::remove_file(ctx.root().join("conf/pf/openai.yaml")).unwrap();
    let (_, _, stderr) = flow(
        &ctx,
        &["connections", "f", "--connections", "conf/pf"],
        &key,
    );
    assert!(
        stderr.contains("unknown key `api_typ`") && stderr.contains("did you mean `api_type`?"),
        "{stderr}"
    );
}

const TOOL_FLOW: &str = "inputs: {}\noutputs:\n  a: {reference: '${t.output}'}\n  b: {reference: '${u.output}'}\n  c: {reference: '${v.output}'}\nnodes:\n- {name: t, type: python, source: {type: code, path: t.py}, inputs: {conn: svc}}\n- {name: u, type: python, source: {type: code, path: t.py}, inputs: {conn: svc2}}\n- {name: v, type: python, source: {type: code, path: t.py}, inputs: {conn: custom_connection}}\n";

/// promptflow's own examples/connections/custom.yml, verbatim: its secret is a placeholder.
const PF_CUSTOM_YML: &str = "$schema: https://azuremlschemas.azureedge.net/promptflow/latest/CustomConnection.schema.json\nname: custom_connection\ntype: custom\nconfigs:\n  key1: \"test1\"\nsecrets:  # required\n  api-key: \"<to-be-replaced>\"";

const TOOL: &str = "from promptflow import tool\nfrom promptflow.connections import CustomConnection\n\n@tool\ndef t(conn: CustomConnection) -> str:\n    secrets = {k: (v == 'expected-secret-value') for k, v in conn.secrets.items()}\n    return f\"{type(conn).__name__}|{conn.name}|{sorted(conn.configs.items())}|{secrets}\"\n";

#[test]
fn a_python_tool_receives_custom_connections_from_files_and_variables() {
    let ctx = TestContext::new();
    ctx.flow("f", &[("flow.dag.yaml", TOOL_FLOW), ("t.py", TOOL)]);
    ctx.write(
        "connections/custom.yml",
        "$schema: https://azuremlschemas.azureedge.net/promptflow/latest/CustomConnection.schema.json\nname: svc\ntype: custom\nconfigs:\n  endpoint: https://svc.example\n  retries: 3\nsecrets:\n  api-key: ${env:SVC_KEY}\n",
    );
    ctx.write("connections/pf_custom.yml", PF_CUSTOM_YML);
    let (code, stdout, stderr) = flow(
        &ctx,
        &["run", "f"],
        &[
            ("SVC_KEY", "expected-secret-value"),
            // The placeholder's value, by promptflow's {NAME}_{FIELD} override.
            ("CUSTOM_CONNECTION_API_KEY", "expected-secret-value"),
            // promptflow's X_KEY1 style: a connection of custom fields only.
            ("SVC2_KEY1", "v1"),
            ("SVC2_REGION", "eu"),
        ],
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "CustomConnection|svc|[('endpoint', 'https://svc.example'), ('retries', '3')]|{'api-key': True}"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("CustomConnection|custom_connection|[('key1', 'test1')]|{'api-key': True}"),
        "{stdout}"
    );
    assert!(
        stderr.contains("is the placeholder \"<to-be-replaced>\""),
        "{stderr}"
    );
    // `key1` is named like a secret, so it is one (its value is not the one compared).
    assert!(
        stdout.contains("CustomConnection|svc2|[('region', 'eu')]|{'key1': False}"),
        "{stdout}"
    );
}

#[test]
fn an_llm_node_naming_a_custom_connection_is_refused_before_running() {
    let ctx = TestContext::new();
    ctx.flow(
        "f",
        &[
            (
                "flow.dag.yaml",
                "inputs: {}\noutputs:\n  a: {reference: '${ask.output}'}\nnodes:\n- {name: ask, type: llm, source: {type: code, path: a.jinja2}, connection: svc, api: chat, inputs: {model: m}}\n",
            ),
            ("a.jinja2", "user:\nhi"),
        ],
    );
    let (code, stdout, stderr) = flow(&ctx, &["run", "f"], &[("SVC_REGION", "eu")]);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("connection `svc` is a custom connection")
            && stderr.contains("SVC_API_TYPE=openai"),
        "{stderr}"
    );
    let (code, stdout, _) = flow(&ctx, &["connections", "f"], &[("SVC_REGION", "eu")]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("type:    custom"), "{stdout}");
}

/// `--connections DIR` is a setting of the run: `flow run --resume` reads the same folder.
#[test]
fn a_resumed_run_reads_the_connections_folder_it_started_with() {
    let ctx = with_mock();
    ctx.flow(
        "f",
        &[("flow.dag.yaml", FLOW), ("ask.jinja2", "user:\n{{q}}")],
    );
    ctx.write(
        "conf/pf/openai.yml",
        &openai_yaml(&ctx.mock().openai_base(), "${env:MY_OPENAI_KEY}"),
    );
    ctx.write("d.jsonl", "{\"q\": \"a\"}\n{\"q\": \"b\"}\n");
    let key = [("MY_OPENAI_KEY", KEY)];
    ctx.mock().set_down(Some(500));
    let (code, stdout, stderr) = flow(
        &ctx,
        &[
            "run",
            "f",
            "--data",
            "d.jsonl",
            "--name",
            "r1",
            "--connections",
            "conf/pf",
            "--max-retries",
            "0",
        ],
        &key,
    );
    assert_ne!(code, Some(0), "{stdout}{stderr}");
    let meta = std::fs::read_to_string(ctx.root().join(".flow/runs/r1/meta.json")).unwrap();
    assert!(meta.contains("conf/pf"), "{meta}");
    ctx.mock().set_down(None);
    ctx.mock().clear_requests();
    let (code, stdout, stderr) = flow(&ctx, &["run", "--resume", "r1"], &key);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(ctx.mock().request_count(), 2);
}

#[test]
fn an_unreachable_endpoint_from_a_connection_file_names_the_file_not_a_variable() {
    let ctx = TestContext::new();
    ctx.flow(
        "f",
        &[("flow.dag.yaml", FLOW), ("ask.jinja2", "user:\n{{q}}")],
    );
    // port 9 (discard) is closed on loopback: the connection is refused at once
    let file = ctx.write(
        "connections/openai.yml",
        &openai_yaml("http://127.0.0.1:9/v1", "${env:MY_OPENAI_KEY}"),
    );
    let (code, stdout, stderr) = flow(
        &ctx,
        &["run", "f", "--inputs", "q=hello"],
        &[("MY_OPENAI_KEY", KEY)],
    );
    assert_ne!(code, Some(0), "{stdout}{stderr}");
    let advice = format!("Check the api_base (base_url) of {}", file.display());
    assert!(stderr.contains(&advice), "{stderr}");
    assert!(!stderr.contains("OPEN_AI_CONNECTION_API_BASE"), "{stderr}");
}
