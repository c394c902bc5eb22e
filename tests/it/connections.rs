//! Connection resolution from `.env` and the environment, and secret handling.

use std::io::Write;

use flow::connection::{
    ApiType, ConnectionError, EnvVars, Redactor, Secret, env_prefix, mask, resolve,
};

fn env(pairs: &[(&str, &str)]) -> EnvVars {
    EnvVars::from_pairs(pairs.iter().copied())
}

#[test]
fn prefix_rule() {
    assert_eq!(env_prefix("open_ai_connection"), "OPEN_AI_CONNECTION");
    assert_eq!(env_prefix("my-conn.v2"), "MY_CONN_V2");
    let e = env(&[
        ("OPEN_AI_CONNECTION_API_KEY", "sk-aaaaaaaaaaaaaaaaaaaaaaaa"),
        ("OPEN_AI_CONNECTION_MODEL", "gpt-4o-mini"),
        ("OPEN_AI_CONNECTION_ORGANIZATION", "org-1"),
        ("OPEN_AI_CONNECTION_CUSTOM_THING", "v"),
    ]);
    // Case-insensitive name.
    let c = resolve("Open_AI_Connection", &e, false).unwrap();
    assert_eq!(c.api_type, ApiType::OpenAi);
    assert_eq!(
        c.api_key.as_ref().unwrap().expose(),
        "sk-aaaaaaaaaaaaaaaaaaaaaaaa"
    );
    assert_eq!(c.api_base.as_deref(), Some("https://api.openai.com/v1"));
    assert_eq!(c.model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(c.extra.get("custom_thing").map(String::as_str), Some("v"));
    assert!(c.source.contains(&"OPEN_AI_CONNECTION_API_KEY".to_string()));
    let py = c.to_python();
    assert_eq!(py["api_key"], "sk-aaaaaaaaaaaaaaaaaaaaaaaa");
    assert_eq!(py["organization"], "org-1");
    assert_eq!(py["base_url"], "https://api.openai.com/v1");
    assert_eq!(py["custom_thing"], "v");
    assert_eq!(c.python_class(), "OpenAIConnection");
}

#[test]
fn api_type_inference_and_azure_fields() {
    let e = env(&[
        ("AOAI_API_KEY", "k-azure-123456"),
        ("AOAI_API_BASE", "https://res.openai.azure.com"),
        ("AOAI_API_VERSION", "2024-06-01"),
    ]);
    let c = resolve("aoai", &e, false).unwrap();
    assert_eq!(c.api_type, ApiType::Azure);
    let py = c.to_python();
    assert_eq!(py["api_type"], "azure");
    assert_eq!(py["api_version"], "2024-06-01");
    assert_eq!(py["api_base"], "https://res.openai.azure.com");
    assert_eq!(c.python_class(), "AzureOpenAIConnection");
    assert_eq!(c.python_secret_keys(), vec!["api_key".to_string()]);

    // Explicit type wins over inference; unknown type lists valid ones.
    let e = env(&[
        ("X_API_TYPE", "Anthropic"),
        ("X_API_KEY", "k"),
        ("X_API_VERSION", "v"),
    ]);
    assert_eq!(
        resolve("x", &e, false).unwrap().api_type,
        ApiType::Anthropic
    );
    let e = env(&[("X_API_TYPE", "gemini"), ("X_API_KEY", "k")]);
    let err = resolve("x", &e, false).unwrap_err().to_string();
    assert!(
        err.contains("X_API_TYPE") && err.contains("gemini"),
        "{err}"
    );
    assert!(
        err.contains("openai, azure, ollama, anthropic, echo"),
        "{err}"
    );
}

#[test]
fn ollama_defaults() {
    let c = resolve("local", &env(&[("LOCAL_API_TYPE", "ollama")]), false).unwrap();
    assert_eq!(c.api_type, ApiType::Ollama);
    assert_eq!(c.api_base.as_deref(), Some("http://localhost:11434/v1"));
    assert!(c.api_key.is_none());
}

#[test]
fn standard_variables() {
    let e = env(&[
        ("OPENAI_API_KEY", "sk-standard-1234567890"),
        ("OPENAI_BASE_URL", "http://h/v1"),
    ]);
    let c = resolve("open_ai_connection", &e, false).unwrap();
    assert_eq!(c.api_type, ApiType::OpenAi);
    assert_eq!(c.api_base.as_deref(), Some("http://h/v1"));
    assert_eq!(c.key_var(), "OPENAI_API_KEY");

    let e = env(&[
        ("AZURE_OPENAI_API_KEY", "az-key-123456"),
        ("AZURE_OPENAI_ENDPOINT", "https://r.openai.azure.com"),
    ]);
    let c = resolve("whatever", &e, false).unwrap();
    assert_eq!(c.api_type, ApiType::Azure);
    assert_eq!(c.api_version.as_deref(), Some("2024-02-01"));
    assert_eq!(c.key_var(), "AZURE_OPENAI_API_KEY");

    // Both present: the connection name decides.
    let e = env(&[
        ("OPENAI_API_KEY", "sk-standard-1234567890"),
        ("AZURE_OPENAI_API_KEY", "az-key-123456"),
        ("AZURE_OPENAI_ENDPOINT", "https://r.openai.azure.com"),
        ("OPENAI_API_VERSION", "2024-10-21"),
    ]);
    assert_eq!(
        resolve("open_ai_connection", &e, false).unwrap().api_type,
        ApiType::OpenAi
    );
    let az = resolve("azure_open_ai_connection", &e, false).unwrap();
    assert_eq!(az.api_type, ApiType::Azure);
    assert_eq!(az.api_version.as_deref(), Some("2024-10-21"));

    // Prefixed variables win over standard ones.
    let e = env(&[
        ("OPENAI_API_KEY", "sk-standard-1234567890"),
        ("C_API_KEY", "sk-prefixed-123456"),
    ]);
    assert_eq!(
        resolve("c", &e, false).unwrap().api_key.unwrap().expose(),
        "sk-prefixed-123456"
    );
}

#[test]
fn missing_variables_say_what_to_set() {
    let err = resolve("open_ai_connection", &EnvVars::default(), false).unwrap_err();
    assert!(matches!(err, ConnectionError::NotConfigured { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("connection 'open_ai_connection' is not configured"),
        "{msg}"
    );
    assert!(
        msg.contains("OPEN_AI_CONNECTION_API_KEY") && msg.contains("OPEN_AI_CONNECTION_API_BASE")
    );
    assert!(msg.contains("OPENAI_API_KEY"));

    let msg = resolve(
        "az",
        &env(&[
            ("AZ_API_VERSION", "2024-06-01"),
            ("AZ_API_BASE", "https://x"),
        ]),
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(msg.contains("AZ_API_KEY"), "{msg}");
    let msg = resolve(
        "az",
        &env(&[("AZ_API_VERSION", "2024-06-01"), ("AZ_API_KEY", "k")]),
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(msg.contains("AZ_API_BASE"), "{msg}");
    let msg = resolve("cl", &env(&[("CL_API_TYPE", "anthropic")]), false)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("CL_API_KEY"), "{msg}");
    let msg = resolve("o", &env(&[("O_MODEL", "gpt")]), false)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("O_API_KEY"), "{msg}");
    let msg = resolve(
        "h",
        &env(&[("H_API_KEY", "k"), ("H_HEADERS", "[1]")]),
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("H_HEADERS") && msg.contains("JSON object"),
        "{msg}"
    );
}

#[test]
fn offline_returns_echo_without_reading_env() {
    let c = resolve("open_ai_connection", &EnvVars::default(), true).unwrap();
    assert_eq!(c.api_type, ApiType::Echo);
    assert!(c.is_offline());
    let e = env(&[("OPEN_AI_CONNECTION_API_KEY", "sk-real-key-123456")]);
    let c = resolve("open_ai_connection", &e, true).unwrap();
    assert!(c.api_key.is_none());
}

#[test]
fn dotenv_vs_real_env_precedence() {
    let dir = tempfile::tempdir().unwrap();
    let var = format!("FLOW_TEST_PRECEDENCE_{}", std::process::id());
    // PATH is set in the test process (the other tests share its environment, so this test sets
    // no variable of its own): the real environment wins over `.env`.
    let path = std::env::var("PATH").expect("PATH is set");
    let mut f = std::fs::File::create(dir.path().join(".env")).unwrap();
    writeln!(
        f,
        "# comment\n{var}=from_dotenv\nDOTENV_ONLY_{var}=\"quoted value\"\nPATH=from_dotenv"
    )
    .unwrap();
    drop(f);
    let e = EnvVars::load(None, dir.path()).unwrap();
    assert_eq!(e.get(&var), Some("from_dotenv"));
    assert_eq!(e.get(&format!("DOTENV_ONLY_{var}")), Some("quoted value"));
    assert_eq!(e.get("PATH"), Some(path.as_str()));
    // Loading never mutates the process environment.
    assert!(std::env::var(&var).is_err());
    assert_eq!(std::env::var("PATH").unwrap(), path);
}

#[test]
fn env_file_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = EnvVars::load(Some(std::path::Path::new("nope.env")), dir.path()).unwrap_err();
    assert!(err.to_string().contains("nope.env") && err.to_string().contains("--env-file"));
    let p = dir.path().join("bad.env");
    std::fs::write(&p, "GOOD=1\nOTHER=2\nthis line is bad\n").unwrap();
    let err = EnvVars::load(Some(&p), dir.path()).unwrap_err().to_string();
    assert!(err.contains("bad.env:3"), "{err}");
    // No .env at all is fine.
    let empty = tempfile::tempdir().unwrap();
    assert!(EnvVars::load(None, empty.path()).is_ok());
}

#[test]
fn secrets_never_print_and_are_redacted() {
    let key = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789f3a9";
    let s = Secret::new(key);
    assert_eq!(format!("{s}"), "***");
    assert!(!format!("{s:?}").contains("abc"));
    let m = mask(key);
    assert!(
        m.starts_with("sk-…f3a9") && m.contains(&format!("({} chars)", key.len())),
        "{m}"
    );
    assert_eq!(mask("short"), "*** (5 chars)");

    let e = env(&[
        ("C_API_KEY", key),
        ("C_HEADERS", r#"{"X-Auth": "header-secret-value"}"#),
        ("C_CLIENT_SECRET", "custom-secret-1234"),
        ("C_REGION", "westeurope"),
    ]);
    let c = resolve("c", &e, false).unwrap();
    assert!(!format!("{c:?}").contains(key));
    assert!(!format!("{c:?}").contains("header-secret-value"));
    assert!(!format!("{c:?}").contains("custom-secret-1234"));
    assert!(format!("{c:?}").contains("westeurope"));
    let r = Redactor::from_connections([&c]);
    let text =
        format!("failed with {key} and header-secret-value, custom-secret-1234 in westeurope");
    assert_eq!(
        r.redact(&text),
        "failed with *** and ***, *** in westeurope"
    );
    assert_eq!(r.redact("nothing here"), "nothing here");
    assert!(
        c.python_secret_keys()
            .contains(&"client_secret".to_string())
    );
}

/// Every documented combination of standard variables, and the host each key goes to: a key is
/// only ever sent to the host configured with it.
#[test]
fn standard_variables_every_family_and_the_host_each_key_reaches() {
    // OpenAI's older base variable is honoured; the organisation becomes its header.
    let e = env(&[
        ("OPENAI_API_KEY", "sk-standard-1234567890"),
        ("OPENAI_API_BASE", "http://gateway/v1"),
        ("OPENAI_ORG_ID", "org-123456"),
    ]);
    let c = resolve("open_ai_connection", &e, false).unwrap();
    assert_eq!(c.api_base.as_deref(), Some("http://gateway/v1"));
    assert_eq!(
        c.headers.get("OpenAI-Organization").map(Secret::expose),
        Some("org-123456")
    );
    // Both base variables, disagreeing: which host the key is for is unclear.
    let e = env(&[
        ("OPENAI_API_KEY", "sk-standard-1234567890"),
        ("OPENAI_BASE_URL", "http://a/v1"),
        ("OPENAI_API_BASE", "http://b/v1"),
    ]);
    let err = resolve("open_ai_connection", &e, false).unwrap_err();
    assert!(
        matches!(err, ConnectionError::ConflictingStandard { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("OPENAI_BASE_URL and OPENAI_API_BASE")
    );

    // Azure: its own version variable first, the deployment too.
    let e = env(&[
        ("AZURE_OPENAI_API_KEY", "az-key-123456"),
        ("AZURE_OPENAI_ENDPOINT", "https://r.openai.azure.com"),
        ("AZURE_OPENAI_API_VERSION", "2024-10-21"),
        ("AZURE_OPENAI_DEPLOYMENT", "gpt-4o-prod"),
    ]);
    let c = resolve("anything", &e, false).unwrap();
    assert_eq!(c.api_type, ApiType::Azure);
    assert_eq!(c.api_version.as_deref(), Some("2024-10-21"));
    assert_eq!(c.deployment.as_deref(), Some("gpt-4o-prod"));
    assert_eq!(c.api_base.as_deref(), Some("https://r.openai.azure.com"));

    // Anthropic and Ollama standard variables serve connections named for them only.
    let e = env(&[
        ("ANTHROPIC_API_KEY", "sk-ant-123456789"),
        ("ANTHROPIC_BASE_URL", "http://claude-proxy"),
        ("OLLAMA_HOST", "127.0.0.1:11500"),
    ]);
    let c = resolve("anthropic_connection", &e, false).unwrap();
    assert_eq!(c.api_type, ApiType::Anthropic);
    assert_eq!(c.api_base.as_deref(), Some("http://claude-proxy"));
    assert_eq!(c.api_key.unwrap().expose(), "sk-ant-123456789");
    let c = resolve("local_ollama", &e, false).unwrap();
    assert_eq!(c.api_type, ApiType::Ollama);
    assert_eq!(c.api_base.as_deref(), Some("http://127.0.0.1:11500/v1"));
    assert!(c.api_key.is_none());
    assert!(matches!(
        resolve("open_ai_connection", &e, false).unwrap_err(),
        ConnectionError::NotConfigured { .. }
    ));

    // An Ollama connection of its own with no base listens where OLLAMA_HOST says.
    let e = env(&[
        ("LOCAL_API_TYPE", "ollama"),
        ("OLLAMA_HOST", "http://gpu-box:11434"),
    ]);
    let c = resolve("local", &e, false).unwrap();
    assert_eq!(c.api_base.as_deref(), Some("http://gpu-box:11434/v1"));

    // A prefixed key with no base of its own while a standard base variable names another
    // host: refused, never sent to the vendor's default host.
    let e = env(&[
        ("C_API_KEY", "sk-prefixed-123456"),
        ("OPENAI_BASE_URL", "http://corp-gateway/v1"),
    ]);
    let err = resolve("c", &e, false).unwrap_err();
    assert!(matches!(err, ConnectionError::UnusedBase { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("C_API_KEY would be sent to https://api.openai.com/v1"),
        "{text}"
    );
    assert!(text.contains("set C_API_BASE"), "{text}");
    let e = env(&[
        ("C_API_TYPE", "anthropic"),
        ("C_API_KEY", "sk-ant-prefixed-1"),
        ("ANTHROPIC_BASE_URL", "http://elsewhere"),
    ]);
    assert!(matches!(
        resolve("c", &e, false).unwrap_err(),
        ConnectionError::UnusedBase { .. }
    ));
    // With a base of its own, the standard one is not involved.
    let e = env(&[
        ("C_API_KEY", "sk-prefixed-123456"),
        ("C_API_BASE", "http://mine/v1"),
        ("OPENAI_BASE_URL", "http://corp-gateway/v1"),
    ]);
    assert_eq!(
        resolve("c", &e, false).unwrap().api_base.as_deref(),
        Some("http://mine/v1")
    );
}

/// A connection of custom fields only (`X_KEY1`) is promptflow's CustomConnection: no model
/// endpoint, its fields split into `configs` and `secrets` for Python tools, secrets redacted.
#[test]
fn custom_fields_alone_make_a_custom_connection() {
    let e = env(&[
        ("SVC_ENDPOINT", "https://svc.example"),
        ("SVC_ACCESS_TOKEN", "tok-0123456789"),
    ]);
    let c = resolve("svc", &e, false).unwrap();
    assert_eq!(c.api_type, ApiType::Custom);
    assert_eq!(c.python_class(), "CustomConnection");
    let py = c.to_python();
    assert_eq!(py["name"], "svc");
    assert_eq!(py["configs"]["endpoint"], "https://svc.example");
    assert_eq!(py["secrets"]["access_token"], "tok-0123456789");
    assert!(py.get("api_type").is_none(), "{py}");
    assert_eq!(
        Redactor::from_connections([&c]).redact("x tok-0123456789 y"),
        "x *** y"
    );
    // With a key it is an endpoint again.
    let e = e.with("SVC_API_KEY", "sk-aaaaaaaaaaaaaaaaaaaaaaaa");
    assert_eq!(resolve("svc", &e, false).unwrap().api_type, ApiType::OpenAi);
}

/// Connection files under the variables: a file's fields fill what no `X_*` variable sets, its
/// `${env:VAR}` read at resolution, its declared secrets secret whatever their names.
#[test]
fn connection_file_fields_under_variables() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("aoai.yml"),
        "name: aoai\ntype: azure_open_ai\napi_key: ${env:AOAI_KEY}\napi_base: https://a.openai.azure.com\napi_version: 2024-06-01\nmodel: gpt-4o\n",
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("svc.yaml"),
        "name: svc\ntype: custom\nconfigs: {region: eu}\nsecrets: {tenant: \"${env:SVC_TENANT}\"}\n",
    )
    .unwrap();
    let files = flow::connection::ConnectionFiles::load(tmp.path(), true).unwrap();
    assert_eq!(files.connections.len(), 2);
    let e = env(&[
        ("AOAI_KEY", "k-aaaaaaaaaaaaaaaaaaaaaaaa"),
        ("AOAI_API_VERSION", "2024-10-21"),
        ("SVC_TENANT", "tenant-secret-1"),
    ])
    .with_files(files);
    let c = resolve("aoai", &e, false).unwrap();
    assert_eq!(c.api_type, ApiType::Azure);
    assert_eq!(
        c.api_key.as_ref().unwrap().expose(),
        "k-aaaaaaaaaaaaaaaaaaaaaaaa"
    );
    assert_eq!(c.api_base.as_deref(), Some("https://a.openai.azure.com"));
    // The variable wins over the file.
    assert_eq!(c.api_version.as_deref(), Some("2024-10-21"));
    assert_eq!(c.model.as_deref(), Some("gpt-4o"));
    assert_eq!(
        c.file.as_deref(),
        Some(tmp.path().join("aoai.yml").as_path())
    );
    assert!(
        e.near_misses(&["aoai".to_string()])
            .iter()
            .any(|w| w.starts_with("note: AOAI_API_VERSION is set and wins over `api_version`")),
    );
    let s = resolve("svc", &e, false).unwrap();
    assert_eq!(s.api_type, ApiType::Custom);
    assert_eq!(s.to_python()["secrets"]["tenant"], "tenant-secret-1");
    assert!(s.secrets().any(|v| v == "tenant-secret-1"));
    // An unset reference names the variable and the place.
    let e = env(&[]).with_files(flow::connection::ConnectionFiles::load(tmp.path(), true).unwrap());
    let err = resolve("aoai", &e, false).unwrap_err();
    let ConnectionError::FileEnvUnset(unset) = &err else {
        panic!("{err}");
    };
    assert_eq!(
        (unset.var.as_str(), unset.line, unset.col),
        ("AOAI_KEY", 3, 10)
    );
}
