//! Preparing a flow to run: compile templates, resolve connections, inspect Python tools.
//! Every problem is found here, before the first line, with its location.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{Executor, ExecutorOptions, Prepared};
use crate::connection::{self, ApiType, Connection, ConnectionError};
use crate::dag::Dag;
use crate::diagnostic::{Diagnostic, Location};
use crate::model::{Flow, LlmApi, Node, NodeKind, ValueSource};
use crate::provider::LlmClient;
use crate::python::{PythonConfig, PythonPool};
use crate::template::{ListStyle, PromptTemplate, TemplateOptions};

/// Why a flow cannot run: configuration problems (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("{}", .diagnostics.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct PrepareError {
    pub diagnostics: Vec<Diagnostic>,
}

impl Executor {
    /// Prepare `flow` to run. Spawns Python workers only when the flow has Python nodes.
    pub async fn new(
        flow: Flow,
        dag: Dag,
        options: &ExecutorOptions,
    ) -> Result<Executor, PrepareError> {
        let mut diagnostics = Vec::new();
        let mut connections: HashMap<String, Arc<Connection>> = HashMap::new();
        let needs_python = flow
            .nodes
            .iter()
            .any(|n| n.kind == NodeKind::Python && n.package.is_none());
        let mut flow = flow;
        let mut env = environment_variables(&flow, options, &mut diagnostics);
        if let Some(init) = flex_init(&mut flow, options, &mut diagnostics) {
            env.push(("FLOW_FLEX_INIT".to_string(), init));
        }
        if !diagnostics.is_empty() {
            return Err(PrepareError { diagnostics });
        }
        let workdir = if needs_python && !flow.additional_includes.is_empty() {
            match IncludesDir::new(&flow) {
                Ok(dir) => Some(dir),
                Err(e) => {
                    return Err(PrepareError {
                        diagnostics: vec![
                            flow.error_at_key(
                                "additional_includes",
                                format!(
                                    "cannot copy the flow with its additional_includes for its Python nodes: {e}"
                                ),
                            )
                            .with_help("check that the included files are readable and the temporary folder is writable"),
                        ],
                    });
                }
            }
        } else {
            None
        };
        let llm = match &options.client {
            Some(shared) => shared.clone(),
            None => LlmClient::with_config(options.client_config()).map_err(|e| PrepareError {
                diagnostics: vec![Diagnostic::error(e.to_string())],
            })?,
        };
        // Python tools' model calls, and package tools flow runs itself, go through this
        // executor's client, cache and prices.
        let model_host = {
            let mut host_options = options.clone();
            host_options.client = Some(llm.clone());
            Arc::new(super::host::ModelHost::new(host_options))
        };
        let python = needs_python.then(|| {
            PythonPool::with_host(
                PythonConfig {
                    python: options.python.clone(),
                    working_dir: workdir
                        .as_ref()
                        .map_or_else(|| flow.dir.clone(), |w| w.path.clone()),
                    size: options.python_workers.max(1),
                    env,
                },
                Arc::clone(&model_host) as Arc<dyn crate::python::HostHandler>,
            )
        });
        let mut prepared = Vec::with_capacity(flow.nodes.len());
        for node in &flow.nodes {
            let result = match node.kind {
                NodeKind::Llm => {
                    let name = node.connection.clone().unwrap_or_default();
                    let connection = match connections.get(&name) {
                        Some(c) => Ok(c.clone()),
                        None => resolve(&flow, node, &name, options).inspect(|c| {
                            connections.insert(name, c.clone());
                        }),
                    };
                    connection.and_then(|connection| {
                        check_model(&flow, node, &connection, &options.env)?;
                        let style =
                            if connection.api_type == ApiType::Azure && node.api == LlmApi::Chat {
                                ListStyle::Lines
                            } else {
                                ListStyle::Python
                            };
                        // A `.prompty` is read and parsed once, for its template and its reply.
                        let (template, reply) = match node_source(&flow, node)? {
                            (path, text) if is_prompty(&path) => {
                                let prompty = parse_prompty(&path, &text)?;
                                let reply = prompty_reply(&path, &text, &prompty, &connection)?;
                                (prompty.template, Some(reply))
                            }
                            (path, text) => (compile_template(node, &path, text, style)?, None),
                        };
                        Ok(Prepared::Llm {
                            template: Arc::new(template),
                            connection,
                            reply,
                        })
                    })
                }
                NodeKind::Prompt => {
                    load_template(&flow, node, ListStyle::Python).map(|template| Prepared::Prompt {
                        template: Arc::new(template),
                    })
                }
                NodeKind::Python if node.package.is_some() => prepare_package(&flow, node, options)
                    .map(|tool| Prepared::Package {
                        tool,
                        host: Arc::clone(&model_host),
                    }),
                NodeKind::Python => match &python {
                    Some(pool) => {
                        prepare_python(&flow, node, pool, options, workdir.as_ref()).await
                    }
                    None => Err(vec![Diagnostic::error("internal: no Python pool")]),
                },
            };
            match result {
                Ok(p) => prepared.push(p),
                Err(mut d) => diagnostics.append(&mut d),
            }
        }
        if !diagnostics.is_empty() {
            if let Some(p) = &python {
                p.shutdown().await;
            }
            return Err(PrepareError { diagnostics });
        }
        if let Some(pool) = &python {
            let files: Vec<(PathBuf, Option<String>)> = prepared
                .iter()
                .filter_map(|p| match p {
                    Prepared::Python { file, function, .. } => {
                        Some((file.clone(), function.clone()))
                    }
                    _ => None,
                })
                .collect();
            if let Err(e) = pool.warm(&files).await {
                pool.shutdown().await;
                return Err(PrepareError {
                    diagnostics: vec![Diagnostic::error(format!(
                        "cannot start the Python workers: {e}"
                    ))],
                });
            }
        }
        Ok(Executor {
            flow: Arc::new(flow),
            dag,
            prepared,
            llm,
            python,
            cache: options.cache.clone(),
            prices: options.prices.clone(),
            sample: options.sample,
            batch_run: Default::default(),
            _includes_dir: workdir,
        })
    }
}

/// A flex flow's class entry init for the workers (`FLOW_FLEX_INIT`, JSON): the arguments as
/// given, connection names resolved to connections (as a Python node's), a model configuration
/// naming a `connection` given that connection's fields, as promptflow's `from_connection`.
fn flex_init(
    flow: &mut Flow,
    options: &ExecutorOptions,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<String> {
    let f = flow.flex.as_ref().filter(|f| f.is_class)?;
    if !f.init_applied {
        if let Err(mut d) = crate::model::apply_init(flow, Map::new(), None) {
            diagnostics.append(&mut d);
            return None;
        }
    }
    let f = flow.flex.as_ref()?;
    let mut kwargs = Map::new();
    let mut connections = Map::new();
    let mut model_configs = Map::new();
    let mut resolve_named = |param: &str, name: &str| -> Option<Value> {
        match connection::resolve(name, &options.env, options.offline) {
            Ok(c) => Some(c.to_python()),
            Err(e) => {
                diagnostics.push(
                    flow.error_at("entry", format!("init `{param}`: connection `{name}`: {e}"))
                        .with_help(format!(
                            "run `flow connections {}` to see what is configured",
                            flow.dir.display()
                        )),
                );
                None
            }
        }
    };
    for (key, value) in &f.init {
        let param = f.init_params.iter().find(|p| &p.name == key);
        match (
            param.and_then(|p| p.connection_type.as_ref()),
            param.and_then(|p| p.model_config.as_ref()),
        ) {
            (Some(class), _) => {
                let name = value.as_str().unwrap_or_default();
                if let Some(c) = resolve_named(key, name) {
                    connections
                        .insert(key.clone(), serde_json::json!({"class": class, "value": c}));
                }
            }
            (_, Some(class)) => {
                let named = value.get("connection").and_then(Value::as_str);
                let connection = match named {
                    Some(name) => match resolve_named(key, name) {
                        Some(c) => {
                            let conn_class = if class == "AzureOpenAIModelConfiguration" {
                                "AzureOpenAIConnection"
                            } else {
                                "OpenAIConnection"
                            };
                            serde_json::json!({"class": conn_class, "value": c})
                        }
                        None => continue,
                    },
                    None => Value::Null,
                };
                model_configs.insert(
                    key.clone(),
                    serde_json::json!({"class": class, "value": value, "connection": connection}),
                );
            }
            _ => {
                kwargs.insert(key.clone(), value.clone());
            }
        }
    }
    let payload = serde_json::json!({
        "class": f.function,
        "kwargs": kwargs,
        "connections": connections,
        "model_configs": model_configs,
    });
    Some(payload.to_string())
}

fn resolve(
    flow: &Flow,
    node: &Node,
    name: &str,
    options: &ExecutorOptions,
) -> Result<Arc<Connection>, Vec<Diagnostic>> {
    let replaying = options
        .cache
        .as_ref()
        .is_some_and(|c| c.mode() == crate::cache::CacheMode::Replay);
    connection::resolve(name, &options.env, options.offline)
        .or_else(|e| match e {
            // Replay never sends a request, so it needs no key: a placeholder lets a pipeline
            // without the secret (a fork's pull request) replay recorded answers. The key is not
            // part of a cache entry's identity; the endpoint and model are.
            ConnectionError::MissingKey { .. } | ConnectionError::NotConfigured { .. } if replaying => {
                let var = format!("{}_API_KEY", connection::env_prefix(name));
                connection::resolve(name, &options.env.with(&var, "replay-without-a-key"), false)
            }
            other => Err(other),
        })
        .map(Arc::new)
        .map_err(|e| {
            vec![
                flow.error_at(&format!("{}.connection", node.yaml_path), e.to_string())
                    .with_label("connection not configured")
                    .with_help(format!(
                        "run `flow connections {}` to see what is configured, or add --offline to use the echo provider",
                        flow.dir.display()
                    )),
            ]
        })
}

/// The flow's `environment_variables` for its Python code, with `${connection.field}` values
/// resolved to that field of the connection (as promptflow resolves them: `${my_conn.api_key}`
/// becomes the key). A connection that does not resolve, or has no such field, is a located
/// error.
fn environment_variables(
    flow: &Flow,
    options: &ExecutorOptions,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(flow.environment_variables.len());
    for (key, value) in &flow.environment_variables {
        let reference = value
            .trim()
            .strip_prefix("${")
            .and_then(|r| r.strip_suffix('}'))
            .and_then(|r| r.split_once('.'))
            .filter(|(name, field)| {
                !name.is_empty() && !field.is_empty() && !name.starts_with("env:")
            });
        let Some((name, field)) = reference else {
            out.push((key.clone(), value.clone()));
            continue;
        };
        let at = format!("environment_variables.{key}");
        match connection::resolve(name, &options.env, options.offline) {
            Ok(c) => {
                let fields = c.to_python();
                match fields.get(field) {
                    Some(Value::String(s)) => out.push((key.clone(), s.clone())),
                    Some(Value::Null) | None if options.offline => {
                        out.push((key.clone(), String::new()))
                    }
                    Some(other) if !other.is_null() => {
                        out.push((key.clone(), crate::template::python_str(other)))
                    }
                    _ => {
                        let known: Vec<&str> = fields
                            .as_object()
                            .map(|m| {
                                m.iter()
                                    .filter(|(_, v)| !v.is_null())
                                    .map(|(k, _)| k.as_str())
                                    .collect()
                            })
                            .unwrap_or_default();
                        diagnostics.push(
                            flow.error_at(
                                &at,
                                format!(
                                    "environment variable `{key}`: connection `{name}` has no field `{field}`"
                                ),
                            )
                            .with_help(format!("its fields: {}", known.join(", "))),
                        );
                    }
                }
            }
            Err(e) => diagnostics.push(
                flow.error_at(
                    &at,
                    format!("environment variable `{key}` references connection `{name}`: {e}"),
                )
                .with_help(
                    "configure the connection (flow connections), or give the variable a value",
                ),
            ),
        }
    }
    out
}

/// For a `.prompty` node: how its reply is formatted (`response_format` json_object,
/// `outputs`, `model.response: all`).
fn prompty_reply(
    path: &Path,
    text: &str,
    prompty: &crate::prompty::Prompty,
    connection: &Connection,
) -> Result<super::PromptyReply, Vec<Diagnostic>> {
    if prompty.model.response_all {
        if let Some(problem) = response_all_problem(connection, &prompty.model.parameters) {
            let location = response_location(text);
            return Err(vec![
                Diagnostic::error(format!(
                    "{}: `model.response: all` {problem}",
                    path.display()
                ))
                .at(path, location)
                .with_help(RESPONSE_ALL_HELP),
            ]);
        }
    }
    let json = prompty
        .model
        .parameters
        .get("response_format")
        .is_some_and(|f| f.get("type").and_then(Value::as_str) == Some("json_object"));
    Ok(super::PromptyReply {
        json,
        keys: prompty.outputs.keys().cloned().collect(),
        all: prompty.model.response_all,
    })
}

/// What to do instead of `model.response: all` when it cannot be honoured.
pub(crate) const RESPONSE_ALL_HELP: &str = "use an OpenAI, Azure OpenAI or OpenAI-compatible connection (Ollama and llama.cpp are; `--offline` too), and no `stream: true`; or remove `response: all` for the first choice's content";

/// Why `model.response: all` (the whole response object) cannot be honoured on `connection`
/// with `parameters`, if it cannot: an Anthropic reply is not an OpenAI response object, and
/// flow will not make one up; a streamed reply is a stream of chunks, which promptflow returns
/// as an iterator, not an object.
pub(crate) fn response_all_problem(
    connection: &Connection,
    parameters: &Map<String, Value>,
) -> Option<String> {
    let members: Vec<&Connection> = if connection.is_pool() {
        connection.pool.iter().collect()
    } else {
        vec![connection]
    };
    if let Some(c) = members.iter().find(|c| c.api_type == ApiType::Anthropic) {
        return Some(format!(
            "(the whole OpenAI response object as the output) cannot be honoured on connection `{}`: it is an Anthropic connection, whose Messages API reply is not an OpenAI response object, and flow does not make one up",
            c.name
        ));
    }
    let streams = match parameters.get("stream") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.trim().eq_ignore_ascii_case("true"),
        _ => false,
    };
    streams.then(|| {
        "with `stream: true` would be promptflow's stream of chunks (an iterator, not a response object), which flow does not return".to_string()
    })
}

/// Where `response:` is written in a `.prompty` file's text (for locating a refusal).
pub(crate) fn response_location(text: &str) -> Option<Location> {
    text.lines().enumerate().find_map(|(i, line)| {
        let trimmed = line.trim_start();
        trimmed
            .starts_with("response:")
            .then(|| Location::new(i + 1, line.len() - trimmed.len() + 1, "response".len()))
    })
}

/// Compile a node's template. promptflow's Azure OpenAI chat tool prints lists one item per
/// line; every other tool prints them as Python does.
/// An llm node must name a model (or deployment), or its connection must give a default.
fn check_model(
    flow: &Flow,
    node: &Node,
    connection: &Connection,
    env: &connection::EnvVars,
) -> Result<(), Vec<Diagnostic>> {
    if connection.api_type == ApiType::Custom {
        return Err(vec![
            flow.error_at(
                &format!("{}.connection", node.yaml_path),
                format!(
                    "llm node `{}`: connection `{}` is a custom connection (fields for Python tools, no model endpoint)",
                    node.name, connection.name
                ),
            )
            .with_help(format!(
                "give it a model endpoint type ({}_API_TYPE=openai, azure, ollama or anthropic; `type: open_ai` or `azure_open_ai` in a connection file), or name another connection",
                connection::env_prefix(&connection.name)
            )),
        ]);
    }
    let named = ["model", "deployment_name"].iter().any(|k| {
        node.inputs.get(*k).is_some_and(|v| {
            !matches!(v, ValueSource::Literal(Value::Null))
                && *v != ValueSource::Literal(Value::String(String::new()))
        })
    });
    if named
        || connection.model.is_some()
        || connection.deployment.is_some()
        || connection.api_type == ApiType::Echo
    {
        return Ok(());
    }
    let prefix = connection::env_prefix(&connection.name);
    let (input, var) = if connection.api_type == ApiType::Azure {
        ("deployment_name", format!("{prefix}_DEPLOYMENT"))
    } else {
        ("model", format!("{prefix}_MODEL"))
    };
    Err(vec![
        flow.error_at_key(
            &format!("{}.inputs", node.yaml_path),
            format!(
                "llm node `{}` names no model, and connection `{}` has no default",
                node.name, connection.name
            ),
        )
        .with_help(format!(
            "set {var} in {} (e.g. {var}=gpt-4o-mini), or add `{input}: ...` to the node's inputs",
            env.file_text()
        )),
    ])
}

fn load_template(
    flow: &Flow,
    node: &Node,
    list_style: ListStyle,
) -> Result<PromptTemplate, Vec<Diagnostic>> {
    let (path, text) = node_source(flow, node)?;
    if is_prompty(&path) {
        return parse_prompty(&path, &text).map(|p| p.template);
    }
    compile_template(node, &path, text, list_style)
}

/// A template node's source file and its text; located errors when it is missing or unreadable.
fn node_source(flow: &Flow, node: &Node) -> Result<(PathBuf, String), Vec<Diagnostic>> {
    let Some(path) = flow.resolve_file(&node.source) else {
        return Err(vec![flow.error_at(
            &format!("{}.source.path", node.yaml_path),
            format!(
                "node `{}`: template `{}` does not exist",
                node.name,
                node.source.display()
            ),
        )]);
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        vec![flow.error_at(
            &format!("{}.source.path", node.yaml_path),
            format!("cannot read template {}: {e}", path.display()),
        )]
    })?;
    Ok((path, text))
}

fn is_prompty(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "prompty")
}

fn parse_prompty(path: &Path, text: &str) -> Result<crate::prompty::Prompty, Vec<Diagnostic>> {
    crate::prompty::parse(path, text)
        .map_err(|e| vec![crate::model::prompty_flow::prompty_diagnostic(path, &e)])
}

/// A Jinja2 template file compiled with promptflow's settings, its variables checked against
/// the node's tool parameters.
fn compile_template(
    node: &Node,
    path: &Path,
    text: String,
    list_style: ListStyle,
) -> Result<PromptTemplate, Vec<Diagnostic>> {
    let options = TemplateOptions {
        list_style,
        ..TemplateOptions::default()
    };
    let template =
        PromptTemplate::with_options(&node.source.to_string_lossy(), text.clone(), options)
            .map_err(|e| {
                let location = e
                    .line()
                    .map(|line| Location::new(line, e.col().unwrap_or(1), 1));
                vec![
                    Diagnostic::error(format!("template of node `{}`: {e}", node.name))
                        .at(path, location)
                        .with_help("fix the Jinja2 syntax of the template"),
                ]
            })?;
    let reserved = reserved_parameters(node);
    let clashes: Vec<Diagnostic> = template
        .variables()
        .iter()
        .filter(|v| reserved.contains(&v.as_str()))
        .map(|var| {
            Diagnostic::error(format!(
                "the template of node `{}` uses `{var}`, which is a parameter of the node's {} tool: promptflow refuses such a template (the variable and the parameter would be one input)",
                node.name,
                tool_name(node)
            ))
            .at(path, word_location(&text, var))
            .with_help(format!(
                "rename `{var}` in the template and under the node's inputs (e.g. `{var}_text`)"
            ))
        })
        .collect();
    if clashes.is_empty() {
        Ok(template)
    } else {
        Err(clashes)
    }
}

/// The parameters of the tool a template node calls, which its template's variables must not
/// be named after (promptflow's executor refuses them: "Invalid inputs … duplicated with the
/// parameters of AzureOpenAI.chat"): the prompt tool's `template`; the LLM tools' (OpenAI and
/// Azure OpenAI, chat and completion) `connection`, `prompt` and request parameters — with
/// `deployment_name` for a node that names a deployment (Azure), else `model`.
fn reserved_parameters(node: &Node) -> Vec<&'static str> {
    const CHAT: &[&str] = &[
        "connection",
        "prompt",
        "temperature",
        "top_p",
        "n",
        "stream",
        "stop",
        "max_tokens",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "user",
        "function_call",
        "functions",
        "tool_choice",
        "tools",
        "response_format",
        "seed",
    ];
    const COMPLETION: &[&str] = &[
        "connection",
        "prompt",
        "suffix",
        "max_tokens",
        "temperature",
        "top_p",
        "n",
        "stream",
        "logprobs",
        "echo",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "best_of",
        "logit_bias",
        "user",
    ];
    match &node.kind {
        NodeKind::Prompt => vec!["template"],
        NodeKind::Llm => {
            let mut names = match node.api {
                LlmApi::Chat => CHAT.to_vec(),
                LlmApi::Completion => COMPLETION.to_vec(),
            };
            names.push(if node.inputs.contains_key("deployment_name") {
                "deployment_name"
            } else {
                "model"
            });
            names
        }
        NodeKind::Python => Vec::new(),
    }
}

/// The parameter of a template node's tool that holds the template: an input of that name
/// replaces the file (see `executor::node`).
pub(crate) fn template_parameter(node: &Node) -> &'static str {
    match &node.kind {
        NodeKind::Prompt => "template",
        _ => "prompt",
    }
}

/// The tool a template node calls, as messages name it.
fn tool_name(node: &Node) -> &'static str {
    match (&node.kind, node.api) {
        (NodeKind::Prompt, _) => "prompt",
        (_, LlmApi::Chat) => "llm (chat)",
        (_, LlmApi::Completion) => "llm (completion)",
    }
}

/// Where `word` first appears in `text` as a whole identifier (1-based line and column).
fn word_location(text: &str, word: &str) -> Option<Location> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    for (i, line) in text.lines().enumerate() {
        let mut from = 0;
        while let Some(at) = line[from..].find(word) {
            let start = from + at;
            let end = start + word.len();
            let before = line[..start].chars().next_back();
            let after = line[end..].chars().next();
            if !before.is_some_and(ident) && !after.is_some_and(ident) {
                let col = line[..start].chars().count() + 1;
                return Some(Location::new(i + 1, col, word.chars().count()));
            }
            from = end;
        }
    }
    None
}

/// The flow copied with its `additional_includes` beside its own files, as promptflow's flow
/// snapshot has them: the Python workers' working directory when the flow has includes, so a
/// tool opens or imports an included file as it does under promptflow. Removed when dropped.
pub(crate) struct IncludesDir {
    pub(crate) path: PathBuf,
}

impl IncludesDir {
    fn new(flow: &Flow) -> std::io::Result<IncludesDir> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "flow-includes-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let dir = IncludesDir { path };
        crate::run_store::copy_flow(flow, &dir.path, &|_| false)?;
        Ok(dir)
    }

    /// Where `file` (in the flow folder or an included one) is in the copy.
    fn map(&self, flow: &Flow, file: &std::path::Path) -> PathBuf {
        if let Ok(rel) = file.strip_prefix(&flow.dir) {
            if self.path.join(rel).is_file() {
                return self.path.join(rel);
            }
        }
        for include in &flow.additional_includes {
            let src = flow.dir.join(include);
            if let (Some(name), Ok(rest)) = (src.file_name(), file.strip_prefix(&src)) {
                let candidate = self.path.join(name).join(rest);
                if candidate.is_file() {
                    return candidate;
                }
            }
        }
        file.to_path_buf()
    }
}

impl Drop for IncludesDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A package tool node flow runs itself: its connection resolves, and it gives the inputs the
/// tool needs.
fn prepare_package(
    flow: &Flow,
    node: &Node,
    options: &ExecutorOptions,
) -> Result<super::PackageTool, Vec<Diagnostic>> {
    let tool = node.package.clone().unwrap_or_default();
    let mut package = super::PackageTool::of(&tool);
    let mut diagnostics = Vec::new();
    if !node.source.as_os_str().is_empty() {
        // a custom_llm node: the prompt is its source file
        let text = flow
            .resolve_file(&node.source)
            .and_then(|p| std::fs::read_to_string(p).ok());
        match text {
            Some(text) => package.prompt = Some(text),
            None => {
                return Err(vec![flow.error_at(
                    &format!("{}.source.path", node.yaml_path),
                    format!(
                        "node `{}`: cannot read the prompt `{}`",
                        node.name,
                        node.source.display()
                    ),
                )]);
            }
        }
    }
    let needed: &[&str] = match package.op {
        "embedding" => &["connection", "input"],
        _ if package.prompt.is_some() && package.azure => &["connection", "deployment_name"],
        _ if package.prompt.is_some() => &["connection"],
        _ if package.azure => &["connection", "prompt", "deployment_name"],
        _ => &["connection", "prompt"],
    };
    for name in needed {
        if !node.inputs.contains_key(*name) {
            diagnostics.push(
                flow.error_at(
                    &format!("{}.inputs", node.yaml_path),
                    format!(
                        "node `{}`: the tool `{tool}` needs input `{name}`, which the node does not give",
                        node.name
                    ),
                )
                .with_help(format!("add `{name}: ...` under the node's `inputs`")),
            );
        }
    }
    match node.inputs.get("connection") {
        Some(ValueSource::Literal(Value::String(name))) => {
            if let Err(e) = connection::resolve(name, &options.env, options.offline) {
                diagnostics.push(
                    flow.error_at(
                        &format!("{}.inputs.connection", node.yaml_path),
                        e.to_string(),
                    )
                    .with_label("connection not configured"),
                );
            }
        }
        Some(_) => diagnostics.push(flow.error_at(
            &format!("{}.inputs.connection", node.yaml_path),
            format!(
                "node `{}`: input `connection` must name a connection (a plain string)",
                node.name
            ),
        )),
        None => {}
    }
    if diagnostics.is_empty() {
        Ok(package)
    } else {
        Err(diagnostics)
    }
}

async fn prepare_python(
    flow: &Flow,
    node: &Node,
    pool: &PythonPool,
    options: &ExecutorOptions,
    includes: Option<&IncludesDir>,
) -> Result<Prepared, Vec<Diagnostic>> {
    let file = flow
        .resolve_file(&node.source)
        .map(|f| includes.map_or_else(|| f.clone(), |d| d.map(flow, &f)));
    let Some(file) = file else {
        return Err(vec![flow.error_at(
            &format!("{}.source.path", node.yaml_path),
            format!(
                "node `{}`: `{}` does not exist",
                node.name,
                node.source.display()
            ),
        )]);
    };
    let signature = pool
        .inspect(&file, node.function.as_deref())
        .await
        .map_err(|e| {
            vec![Diagnostic::error(format!("node `{}`: {e}", node.name)).at(&file, None)]
        })?;
    let mut diagnostics = Vec::new();
    let mut connections = Map::new();
    let mut images = Map::new();
    let mut defaults = Vec::new();
    for param in &signature.params {
        if param.has_default {
            defaults.push(param.name.clone());
        }
        let provided = node.inputs.get(&param.name);
        // A literal given to an `Image` parameter is an image (a path in the flow folder, a URL,
        // base64), as promptflow's tool resolver loads it before the flow runs.
        if param.annotation.as_deref() == Some("Image") {
            if let Some(ValueSource::Literal(v @ Value::String(_))) = provided {
                match crate::image::load(v, &flow.dir, flow.message_format) {
                    Ok(image) => {
                        images.insert(param.name.clone(), image.to_value());
                    }
                    Err(e) => diagnostics.push(
                        flow.error_at(
                            &format!("{}.inputs.{}", node.yaml_path, param.name),
                            format!(
                                "node `{}`: input `{}` is an `Image` parameter, and its value is not an image: {e}",
                                node.name, param.name
                            ),
                        )
                        .with_help("give a path in the flow folder, a URL or base64 data"),
                    ),
                }
            }
        }
        if provided.is_none() && !param.has_default {
            diagnostics.push(
                flow.error_at(
                    &format!("{}.inputs", node.yaml_path),
                    format!(
                        "node `{}`: the tool `{}` needs input `{}`, which the node does not give",
                        node.name, signature.function, param.name
                    ),
                )
                .with_help(format!(
                    "add `{}: ...` under the node's `inputs`",
                    param.name
                )),
            );
        }
        if param.init && matches!(provided, Some(ValueSource::Reference(_))) {
            diagnostics.push(
                flow.error_at(
                    &format!("{}.inputs.{}", node.yaml_path, param.name),
                    format!(
                        "node `{}`: input `{}` is an `__init__` parameter of the tool class `{}` and needs a literal value, not a reference (as promptflow requires)",
                        node.name, param.name, signature.function
                    ),
                )
                .with_help(format!(
                    "write the value itself, or make `{}` a parameter of the `@tool` method",
                    param.name
                )),
            );
        }
        if param.connection_type.is_some() {
            match provided {
                Some(ValueSource::Literal(Value::String(conn_name))) => {
                    match connection::resolve(conn_name, &options.env, options.offline) {
                        Ok(c)
                            if param.connection_types.len() > 1
                                && !param
                                    .connection_types
                                    .iter()
                                    .any(|t| t == c.python_class()) =>
                        {
                            diagnostics.push(
                                flow.error_at(
                                    &format!("{}.inputs.{}", node.yaml_path, param.name),
                                    format!(
                                        "node `{}`: input `{}` is connection `{conn_name}`, a {}, but the tool accepts only {}",
                                        node.name,
                                        param.name,
                                        c.python_class(),
                                        param.connection_types.join(" or ")
                                    ),
                                )
                                .with_label("connection of another type")
                                .with_help(format!(
                                    "name a connection of one of those types, or add {} to the parameter's annotation",
                                    c.python_class()
                                )),
                            );
                        }
                        Ok(c) => {
                            connections.insert(param.name.clone(), c.to_python());
                        }
                        Err(e) => diagnostics.push(
                            flow.error_at(
                                &format!("{}.inputs.{}", node.yaml_path, param.name),
                                e.to_string(),
                            )
                            .with_label("connection not configured"),
                        ),
                    }
                }
                Some(_) => diagnostics.push(flow.error_at(
                    &format!("{}.inputs.{}", node.yaml_path, param.name),
                    format!(
                        "node `{}`: input `{}` is a connection and must name one (a plain string)",
                        node.name, param.name
                    ),
                )),
                None => {}
            }
        }
    }
    if !signature.accepts_kwargs {
        for name in node.inputs.keys() {
            if !signature.params.iter().any(|p| &p.name == name) {
                let names: Vec<&str> = signature.params.iter().map(|p| p.name.as_str()).collect();
                let help = match crate::model::closest(name, names.iter().copied()) {
                    Some(c) => format!(
                        "did you mean `{c}`? the tool's parameters: {}",
                        names.join(", ")
                    ),
                    None => format!("the tool's parameters: {}", names.join(", ")),
                };
                diagnostics.push(
                    flow.error_at(
                        &format!("{}.inputs.{name}", node.yaml_path),
                        format!(
                            "node `{}`: the tool `{}` has no parameter `{name}`",
                            node.name, signature.function
                        ),
                    )
                    .with_help(help),
                );
            }
        }
    }
    if !diagnostics.is_empty() {
        return Err(diagnostics);
    }
    Ok(Prepared::Python {
        file,
        function: Some(signature.function.clone()),
        defaults,
        connections,
        images,
    })
}

/// Compile every prompt template of the flow without running anything (`flow validate`):
/// syntax errors with their template location, and a warning for each variable a template
/// reads that its node does not give (it would render empty, as in promptflow).
pub fn check_templates(flow: &Flow) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for node in &flow.nodes {
        if node.kind == NodeKind::Python {
            continue;
        }
        match load_template(flow, node, ListStyle::Python) {
            // A node that gives its template as an input renders that, not the file.
            Ok(_) if node.inputs.contains_key(template_parameter(node)) => {}
            Ok(template) => {
                for var in template.variables() {
                    if !node.inputs.contains_key(var.as_str()) {
                        out.push(
                            Diagnostic::warning(format!(
                                "the template of node `{}` uses `{var}`, which the node does not give; it renders empty",
                                node.name
                            ))
                            .at(&flow.file, flow.locate_key(&format!("{}.inputs", node.yaml_path)))
                            .with_help(template_variable_fix(flow, var)),
                        );
                    }
                }
            }
            Err(mut d) => out.append(&mut d),
        }
    }
    out
}

/// The fix for a template variable its node does not give: the flow input or node output of
/// that name when there is one, else the closest flow input, else a new flow input.
fn template_variable_fix(flow: &Flow, var: &str) -> String {
    if flow.inputs.contains_key(var) {
        return format!("add `{var}: ${{inputs.{var}}}` under the node's inputs");
    }
    if flow.nodes.iter().any(|n| n.name == var) {
        return format!("add `{var}: ${{{var}.output}}` under the node's inputs");
    }
    let inputs = flow.inputs.keys().map(String::as_str);
    // A one- or two-letter name is a letter away from every other: no guess for those.
    if let Some(close) = crate::model::closest(var, inputs).filter(|_| var.chars().count() > 3) {
        return format!(
            "did you mean the flow input `{close}`? add `{var}: ${{inputs.{close}}}` under the node's inputs, or rename the variable"
        );
    }
    format!(
        "the flow has no input or node named `{var}`: add an input `{var}` to the flow's `inputs` and `{var}: ${{inputs.{var}}}` under the node's inputs, or give it a value there"
    )
}
