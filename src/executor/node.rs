//! Running one node with its resolved inputs: render + call a model, render a prompt, or call
//! a Python tool.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{Executor, Prepared};
use crate::cache::{CacheError, describe_request};
use crate::connection::ApiType;
use crate::model::{LlmApi, Node};
use crate::provider::{Api, DeltaFn, LlmRequest, ProviderError};
use crate::python::{PythonCall, PythonError};
use crate::record::{ErrorInfo, ErrorKind, Tokens};
use crate::template::{PromptTemplate, Rendered};

/// Node inputs that are model parameters, not template variables (docs/flows.md, Nodes).
pub const MODEL_PARAMETERS: &[&str] = &[
    "model",
    "deployment_name",
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "response_format",
    "seed",
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "n",
    "user",
    "suffix",
    "echo",
    "logprobs",
    "best_of",
];

/// What promptflow's OpenAI and Azure OpenAI tools send when a node sets nothing: the
/// defaults of their `chat` and `completion` signatures (promptflow-tools), so a server whose
/// own defaults differ (llama.cpp samples at 0.8/0.95) answers as it would under promptflow.
fn promptflow_defaults(api: LlmApi, api_type: ApiType) -> Vec<(&'static str, Value)> {
    let (t, p) = (
        ("temperature", Value::from(1.0)),
        ("top_p", Value::from(1.0)),
    );
    match (api, api_type) {
        (LlmApi::Chat, ApiType::Azure) => vec![t, p, ("n", Value::from(1))],
        (LlmApi::Chat, ApiType::OpenAi) => vec![t, p],
        (LlmApi::Completion, ApiType::Azure | ApiType::OpenAi) => vec![
            ("max_tokens", Value::from(16)),
            t,
            p,
            ("n", Value::from(1)),
            ("best_of", Value::from(1)),
            ("echo", Value::Bool(false)),
        ],
        _ => Vec::new(),
    }
}

/// What a node produced.
pub struct NodeOutcome {
    pub output: Value,
    /// For prompt nodes: the text with flow-input role markers kept inert, for downstream nodes.
    pub escaped: Option<String>,
    pub tokens: Option<Tokens>,
    pub model: Option<String>,
    /// For a pool connection: the member that answered (not set for a cached answer).
    pub served_by: Option<String>,
    pub retries: u32,
    pub metrics: Map<String, Value>,
    pub stdout: String,
    /// A Python call's `@trace`d calls (see [`crate::record::NodeRun::traces`]).
    pub traces: Vec<Value>,
    /// The answer came from the response cache.
    pub cached: bool,
    /// What the model call cost, when its price is known (a cached answer costs nothing).
    pub cost_usd: Option<f64>,
    /// For a cached answer: what the call would have cost at the price table's rates.
    pub saved_usd: Option<f64>,
    /// Model calls a Python tool made through flow (the host channel).
    pub host_calls: u32,
}

impl NodeOutcome {
    fn value(output: Value) -> Self {
        NodeOutcome {
            output,
            escaped: None,
            tokens: None,
            model: None,
            served_by: None,
            retries: 0,
            metrics: Map::new(),
            stdout: String::new(),
            traces: Vec::new(),
            cached: false,
            cost_usd: None,
            saved_usd: None,
            host_calls: 0,
        }
    }
}

/// A node that failed: its error, and what it did before failing that its record keeps (a
/// Python tool's printed output, traced calls and model calls, whose tokens and cost were
/// spent), as promptflow's run info keeps them.
pub struct NodeFailure {
    pub error: ErrorInfo,
    pub spent: Option<Box<NodeOutcome>>,
}

impl From<ErrorInfo> for NodeFailure {
    fn from(error: ErrorInfo) -> Self {
        NodeFailure { error, spent: None }
    }
}

/// A node's inputs, resolved: template/tool arguments, which of them must not create chat
/// messages, and which referenced bypassed nodes.
pub struct NodeInputs {
    pub values: Map<String, Value>,
    pub tainted: HashSet<String>,
    pub bypassed: Vec<String>,
    /// The line's operation context for Python code ([`Executor::operation_context`]).
    pub context: Option<Arc<Value>>,
}

impl Executor {
    /// Run node `index` with resolved inputs.
    pub(crate) async fn run_node(
        &self,
        index: usize,
        inputs: &NodeInputs,
        stream: Option<&super::LineStream<'_>>,
    ) -> Result<NodeOutcome, NodeFailure> {
        let node = &self.flow.nodes[index];
        let on_delta: Option<DeltaFn<'_>> = stream.map(|s| s.on_delta);
        match &self.prepared[index] {
            Prepared::Prompt { template } => {
                let mut vars = inputs.values.clone();
                let template = given_template(node, template, &mut vars, "template")?;
                // An image prints as promptflow's `str(image)`: `Image(1a2b3c4d)`.
                crate::image::texts_to_strings(&mut vars, self.flow.message_format);
                crate::image::to_markers(&mut vars);
                let rendered = render(&template, &vars, &inputs.tainted)
                    .await
                    .map_err(|e| template_error(node, &e))?;
                let mut out = NodeOutcome::value(Value::String(rendered.text));
                out.escaped = rendered.escaped.clone();
                Ok(out)
            }
            Prepared::Llm {
                template,
                connection,
                reply,
            } => {
                let whole = reply.as_ref().is_some_and(|r| r.all);
                // the whole response object is one object: never streamed
                let stream = on_delta.is_some() && !whole;
                let shape = RequestShape {
                    whole,
                    stream,
                    message_format: self.flow.message_format,
                };
                let request = llm_request(
                    node,
                    template,
                    connection,
                    &inputs.values,
                    &inputs.tainted,
                    shape,
                )
                .await?;
                let fetch = || self.llm.complete(connection, &request, on_delta);
                let (response, cached) = match &self.cache {
                    Some(cache) if connection.api_type != ApiType::Echo => {
                        let key = match self.sample {
                            Some(n) => format!("{}-sample{n}", request.cache_key(connection)),
                            None => request.cache_key(connection),
                        };
                        let what = describe_request(&node.name, &request);
                        match cache.get_or_fetch(&key, &what, fetch).await {
                            Ok(c) => (c.response, c.hit),
                            Err(CacheError::Provider(e)) => {
                                return Err(provider_error(node, &e).into());
                            }
                            Err(miss) => {
                                return Err(NodeFailure::from(ErrorInfo {
                                    node: Some(node.name.clone()),
                                    error_type: Some("ReplayMiss".into()),
                                    ..ErrorInfo::new(
                                        ErrorKind::Provider,
                                        format!("node `{}`: {miss}", node.name),
                                    )
                                }));
                            }
                        }
                    }
                    _ => (fetch().await.map_err(|e| provider_error(node, &e))?, false),
                };
                // A cached answer cost nothing; the model the endpoint names (e.g. the model
                // behind an Azure deployment) prices the call, else the requested one.
                let priced_model = response.model.clone().or_else(|| request.model.clone());
                let list_price = priced_model.as_deref().and_then(|m| {
                    self.prices.cost(
                        m,
                        response.usage.prompt_tokens,
                        response.usage.completion_tokens,
                    )
                });
                let output = match reply {
                    Some(shape) if shape.all => match response.raw {
                        Some(raw) => raw,
                        None => {
                            return Err(NodeFailure::from(ErrorInfo {
                                node: Some(node.name.clone()),
                                ..ErrorInfo::new(
                                    ErrorKind::Provider,
                                    format!(
                                        "{}: `model.response: all`: the endpoint's reply was not kept whole (a streamed reply?), so the response object cannot be the output",
                                        node.source.display()
                                    ),
                                )
                            }));
                        }
                    },
                    Some(shape) => format_prompty_reply(node, shape, response.output)?,
                    None => response.output,
                };
                let mut out = NodeOutcome::value(output);
                out.cached = cached;
                if cached {
                    out.cost_usd = Some(0.0);
                    out.saved_usd = list_price;
                } else {
                    out.cost_usd = list_price;
                }
                out.tokens = Some(Tokens {
                    prompt_tokens: response.usage.prompt_tokens,
                    completion_tokens: response.usage.completion_tokens,
                    total_tokens: response.usage.total_tokens,
                });
                out.model = response.model;
                out.served_by = if cached { None } else { response.served_by };
                out.retries = response.retries;
                Ok(out)
            }
            Prepared::Package { tool, host } => {
                use crate::python::HostHandler;
                let args = package_args(node, tool, &inputs.values)?;
                let reply = host
                    .handle(&node.name, tool.op, args)
                    .await
                    .map_err(|e| package_error(node, tool, e))?;
                let mut out = NodeOutcome::value(reply.result);
                if let Some(call) = reply.call {
                    add_host_calls(&mut out, &[call]);
                    // the node's own call, as an llm node's: not a call made by Python code
                    out.host_calls = 0;
                }
                Ok(out)
            }
            Prepared::Python {
                file,
                function,
                defaults: _,
                connections,
                images,
            } => {
                let Some(pool) = &self.python else {
                    return Err(NodeFailure::from(ErrorInfo::new(
                        ErrorKind::Python,
                        "internal: no Python pool",
                    )));
                };
                let mut kwargs = inputs.values.clone();
                for name in connections.keys() {
                    kwargs.remove(name);
                }
                for (name, image) in images {
                    kwargs.insert(name.clone(), image.clone());
                }
                let call = PythonCall {
                    file: file.clone(),
                    function: function.clone(),
                    kwargs,
                    connections: connections.clone(),
                    bypassed: inputs.bypassed.clone(),
                    flex: self.flow.flex.is_some() && !node.aggregation,
                    node: node.name.clone(),
                    stream: stream.and_then(|s| s.pieces.clone()),
                    message_format: self.flow.message_format,
                    context: inputs.context.clone(),
                };
                let result = pool.call(call).await.map_err(|e| python_failure(node, e))?;
                let mut out = NodeOutcome::value(result.output);
                out.metrics = result
                    .metrics
                    .into_iter()
                    .map(|(k, v)| (k, crate::non_finite::number(v)))
                    .collect();
                out.stdout = result.stdout;
                add_host_calls(&mut out, &result.host_calls);
                out.traces = result.traces;
                Ok(out)
            }
        }
    }
}

/// A package tool's request to the model host: the node's inputs under promptflow-tools'
/// parameter names; a chat or completion tool's defaults (its signature's) are sent when the
/// node sets none, and inputs that are not parameters are the prompt's template variables.
fn package_args(
    node: &Node,
    tool: &super::PackageTool,
    inputs: &Map<String, Value>,
) -> Result<Value, ErrorInfo> {
    let mut args = Map::new();
    args.insert(
        "connection".into(),
        inputs.get("connection").cloned().unwrap_or(Value::Null),
    );
    if tool.op == "embedding" {
        for key in ["input", "deployment_name", "model"] {
            if let Some(v) = inputs.get(key) {
                args.insert(key.into(), v.clone());
            }
        }
        if !tool.azure && !args.contains_key("model") {
            args.insert("model".into(), Value::from("text-embedding-ada-002"));
        }
        if tool.azure {
            args.remove("model");
        }
        return Ok(Value::Object(args));
    }
    if let Some(prompt) = &tool.prompt {
        args.insert("prompt".into(), Value::String(prompt.clone()));
    }
    let mut params = Map::new();
    let mut vars = Map::new();
    for (k, v) in inputs {
        match k.as_str() {
            "connection" | "stream" => {}
            "prompt" | "model" | "deployment_name" => {
                args.insert(k.clone(), v.clone());
            }
            _ if MODEL_PARAMETERS.contains(&k.as_str()) => {
                params.insert(k.clone(), v.clone());
            }
            _ => {
                vars.insert(k.clone(), v.clone());
            }
        }
    }
    let mut typed = model_params(&params).map_err(|m| ErrorInfo {
        node: Some(node.name.clone()),
        ..ErrorInfo::new(ErrorKind::Input, format!("node `{}`: {m}", node.name))
    })?;
    let api = if tool.op == "completion" {
        LlmApi::Completion
    } else {
        LlmApi::Chat
    };
    let api_type = if tool.azure {
        ApiType::Azure
    } else {
        ApiType::OpenAi
    };
    for (k, v) in promptflow_defaults(api, api_type) {
        typed.entry(k).or_insert(v);
    }
    if !tool.azure && !args.contains_key("model") {
        let default = if api == LlmApi::Chat {
            "gpt-3.5-turbo"
        } else {
            "gpt-3.5-turbo-instruct"
        };
        args.insert("model".into(), Value::from(default));
    }
    args.insert("params".into(), Value::Object(typed));
    args.insert("inputs".into(), Value::Object(vars));
    Ok(Value::Object(args))
}

fn package_error(node: &Node, tool: &super::PackageTool, e: crate::python::HostError) -> ErrorInfo {
    let kind = match e.type_name.as_str() {
        "WrappedOpenAIError" | "ExceedMaxRetryTimes" => ErrorKind::Provider,
        "JinjaTemplateError" | "ChatAPIInvalidRole" => ErrorKind::Template,
        _ => ErrorKind::Input,
    };
    ErrorInfo {
        node: Some(node.name.clone()),
        error_type: Some(e.type_name.clone()),
        ..ErrorInfo::new(
            kind,
            format!(
                "node `{}` ({}): {}: {}",
                node.name, tool.tool, e.type_name, e.message
            ),
        )
    }
}

/// The model calls a Python tool made through flow (the host channel), in its node's record:
/// tokens and costs summed, the last model named, retries summed; the node counts as cached
/// when every call was answered from the cache.
fn add_host_calls(out: &mut NodeOutcome, calls: &[crate::python::HostCall]) {
    let calls: Vec<_> = calls.iter().filter(|c| c.model_call).collect();
    if calls.is_empty() {
        return;
    }
    let mut tokens = Tokens::default();
    let (mut cost, mut priced, mut saved) = (0.0, true, None::<f64>);
    for c in &calls {
        tokens.add(&Tokens {
            prompt_tokens: c.prompt_tokens,
            completion_tokens: c.completion_tokens,
            total_tokens: c.total_tokens,
        });
        match c.cost_usd {
            Some(x) => cost += x,
            None if c.total_tokens > 0 => priced = false,
            None => {}
        }
        if let Some(s) = c.saved_usd {
            *saved.get_or_insert(0.0) += s;
        }
        out.retries += c.retries;
        if c.model.is_some() {
            out.model = c.model.clone();
        }
    }
    out.tokens = Some(tokens);
    out.cost_usd = priced.then_some(cost);
    out.saved_usd = saved;
    out.cached = calls.iter().all(|c| c.cached);
    out.host_calls = calls.len() as u32;
}

/// How an `llm` request is asked for, beside its values.
#[derive(Clone, Copy)]
pub(crate) struct RequestShape {
    /// The whole response object is wanted (`response: all`).
    pub whole: bool,
    /// The reply streams.
    pub stream: bool,
    /// The flow's message format (how text parts in the values read).
    pub message_format: crate::image::MessageFormat,
}

/// The request an `llm` node (or a `.prompty`) sends for `values`: its template rendered, split
/// into messages (or one prompt), its model and typed parameters.
pub(crate) async fn llm_request(
    node: &Node,
    template: &Arc<PromptTemplate>,
    connection: &crate::connection::Connection,
    values: &Map<String, Value>,
    tainted: &HashSet<String>,
    shape: RequestShape,
) -> Result<LlmRequest, ErrorInfo> {
    let RequestShape {
        whole,
        stream,
        message_format,
    } = shape;
    let prompty = node.source.extension().is_some_and(|e| e == "prompty");
    let (params, mut vars) = if prompty {
        prompty_parameters(node, values)
    } else {
        split_parameters(values)
    };
    let template = given_template(node, template, &mut vars, "prompt")?;
    crate::image::texts_to_strings(&mut vars, message_format);
    let images = crate::image::to_markers(&mut vars);
    let rendered = render(&template, &vars, tainted)
        .await
        .map_err(|e| template_error(node, &e))?;
    let model = string_param(&params, "model");
    let deployment = string_param(&params, "deployment_name");
    let mut request = LlmRequest {
        api: match node.api {
            LlmApi::Chat => Api::Chat,
            LlmApi::Completion => Api::Completion,
        },
        messages: Vec::new(),
        prompt: None,
        // Azure addresses a deployment; everything else a model.
        model: if connection.api_type == ApiType::Azure {
            deployment.or(model)
        } else {
            model.or(deployment)
        },
        params: model_params(&params)
            .map(|mut typed| {
                // A `.prompty` sends its `model.parameters` and nothing else, as
                // promptflow's Prompty does.
                if !prompty {
                    for (k, v) in promptflow_defaults(node.api, connection.api_type) {
                        typed.entry(k).or_insert(v);
                    }
                }
                typed
            })
            .map_err(|m| ErrorInfo {
                node: Some(node.name.clone()),
                ..ErrorInfo::new(ErrorKind::Input, m)
            })?,
        stream,
        full_response: whole,
    };
    match node.api {
        LlmApi::Chat => {
            request.messages =
                crate::image::chat_messages(rendered.escaped(), &images, "auto", true)
                    .map_err(|e| template_error(node, &e.to_string()))?;
        }
        LlmApi::Completion if images.keys().any(|k| rendered.text.contains(k.as_str())) => {
            return Err(template_error(
                node,
                "an image input reaches a node with `api: completion`, which sends text only\n  help: use `api: chat` to send images (`![image]({{image_input}})` in the template)",
            ));
        }
        LlmApi::Completion => request.prompt = Some(rendered.text),
    }
    Ok(request)
}

fn split_parameters(inputs: &Map<String, Value>) -> (Map<String, Value>, Map<String, Value>) {
    let mut params = Map::new();
    let mut vars = Map::new();
    for (k, v) in inputs {
        if MODEL_PARAMETERS.contains(&k.as_str()) {
            params.insert(k.clone(), v.clone());
        } else {
            vars.insert(k.clone(), v.clone());
        }
    }
    (params, vars)
}

/// A `.prompty`'s output from its reply, as promptflow formats it: JSON parsed when its
/// `response_format` is `json_object`, then only the keys its `outputs` name.
fn format_prompty_reply(
    node: &Node,
    shape: &super::PromptyReply,
    output: Value,
) -> Result<Value, ErrorInfo> {
    if !shape.json {
        return Ok(output);
    }
    let fail = |message: String| ErrorInfo {
        node: Some(node.name.clone()),
        ..ErrorInfo::new(ErrorKind::Provider, message)
    };
    let parsed = match &output {
        Value::String(text) => serde_json::from_str::<Value>(text).map_err(|e| {
            fail(format!(
                "{}: the reply is not JSON although `response_format` is json_object: {e}",
                node.source.display()
            ))
        })?,
        other => other.clone(),
    };
    if shape.keys.is_empty() {
        return Ok(parsed);
    }
    let Value::Object(map) = &parsed else {
        return Err(fail(format!(
            "{}: the reply is JSON but not an object, so its `outputs` cannot be taken from it",
            node.source.display()
        )));
    };
    let mut kept = Map::new();
    for key in &shape.keys {
        match map.get(key) {
            Some(v) => {
                kept.insert(key.clone(), v.clone());
            }
            None => {
                return Err(fail(format!(
                    "{}: cannot find `{key}` in the reply; its keys: {}",
                    node.source.display(),
                    map.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        }
    }
    Ok(Value::Object(kept))
}

/// A `.prompty` node's inputs: its literal inputs are the model and `model.parameters` — every
/// one of them is sent, as promptflow's Prompty passes them to the client verbatim — and the
/// others (references to the flow's inputs) are the template's variables.
fn prompty_parameters(
    node: &Node,
    inputs: &Map<String, Value>,
) -> (Map<String, Value>, Map<String, Value>) {
    let mut params = Map::new();
    let mut vars = Map::new();
    for (k, v) in inputs {
        if matches!(
            node.inputs.get(k),
            Some(crate::model::ValueSource::Literal(_))
        ) {
            params.insert(k.clone(), v.clone());
        } else {
            vars.insert(k.clone(), v.clone());
        }
    }
    (params, vars)
}

fn string_param(params: &Map<String, Value>, key: &str) -> Option<String> {
    match params.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
}

/// Typed model parameters: `"256"` becomes 256, `""` and null mean unset, JSON strings for
/// structured parameters are parsed.
fn model_params(params: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (k, v) in params {
        if matches!(k.as_str(), "model" | "deployment_name") {
            continue;
        }
        if v.is_null() || v.as_str().is_some_and(str::is_empty) {
            continue;
        }
        let typed = match k.as_str() {
            // Chat's `logprobs` is a boolean (completion's a count).
            "logprobs" if v.is_boolean() => v.clone(),
            "max_tokens" | "seed" | "n" | "best_of" | "logprobs" => match v {
                Value::Number(n) if n.is_i64() || n.is_u64() => v.clone(),
                Value::Number(n) => match n.as_f64() {
                    Some(f) if f.fract() == 0.0 => Value::from(f as i64),
                    _ => return Err(format!("model parameter `{k}` must be an integer, got {v}")),
                },
                Value::String(s) => s.trim().parse::<i64>().map(Value::from).map_err(|_| {
                    format!("model parameter `{k}` must be an integer, got \"{s}\"")
                })?,
                _ => return Err(format!("model parameter `{k}` must be an integer, got {v}")),
            },
            "temperature" | "top_p" | "presence_penalty" | "frequency_penalty" => match v {
                Value::Number(_) => v.clone(),
                Value::String(s) => s
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| {
                        format!("model parameter `{k}` must be a number, got \"{s}\"")
                    })?,
                _ => return Err(format!("model parameter `{k}` must be a number, got {v}")),
            },
            "stop" => match v {
                Value::String(s) => match serde_json::from_str::<Value>(s) {
                    Ok(list @ Value::Array(_)) => list,
                    _ => Value::Array(vec![v.clone()]),
                },
                Value::Array(_) => v.clone(),
                _ => {
                    return Err(format!(
                        "model parameter `stop` must be a string or a list, got {v}"
                    ));
                }
            },
            "echo" => match v {
                Value::Bool(_) => v.clone(),
                Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Value::Bool(true),
                Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Value::Bool(false),
                _ => {
                    return Err(format!(
                        "model parameter `echo` must be true or false, got {v}"
                    ));
                }
            },
            "response_format" => match v {
                Value::String(s) => match serde_json::from_str::<Value>(s) {
                    Ok(obj @ Value::Object(_)) => obj,
                    _ => serde_json::json!({ "type": s.trim() }),
                },
                _ => v.clone(),
            },
            "logit_bias" | "tools" | "functions" | "tool_choice" | "function_call" => match v {
                Value::String(s) => match serde_json::from_str::<Value>(s) {
                    Ok(parsed) => parsed,
                    Err(_) if matches!(k.as_str(), "tool_choice" | "function_call") => v.clone(),
                    Err(e) => return Err(format!("model parameter `{k}` is not valid JSON: {e}")),
                },
                _ => v.clone(),
            },
            _ => v.clone(),
        };
        out.insert(k.clone(), typed);
    }
    Ok(out)
}

/// Render a node's template. One with logic (loops, conditions) renders on the blocking pool,
/// so its work — bounded by [`crate::template::RENDER_FUEL`] — never holds an async worker:
/// other lines, other requests and `/health` go on, and a line timeout stops waiting for it.
/// Plain substitution, linear in its inputs, renders in place (no thread hop on the hot path).
async fn render(
    template: &Arc<PromptTemplate>,
    vars: &Map<String, Value>,
    tainted: &HashSet<String>,
) -> Result<Rendered, String> {
    if !template.has_logic() {
        return template
            .render_guarded(vars, tainted)
            .map_err(|e| e.to_string());
    }
    let (template, vars, tainted) = (Arc::clone(template), vars.clone(), tainted.clone());
    tokio::task::spawn_blocking(move || template.render_guarded(&vars, &tainted))
        .await
        .map_err(|e| format!("rendering stopped unexpectedly: {e}"))?
        .map_err(|e| e.to_string())
}

/// The template a node renders: its file's, or — when the node gives an input named after the
/// tool's template parameter (`prompt` for llm nodes, `template` for prompt nodes) — that
/// input's text, compiled with the same options and rendered with the other inputs. This is
/// what promptflow does: the input is passed as the tool's template argument and wins over the
/// file (`partial(tool, prompt=file)(prompt=input)`). The input is taken out of `vars`.
fn given_template(
    node: &Node,
    file: &Arc<PromptTemplate>,
    vars: &mut Map<String, Value>,
    parameter: &str,
) -> Result<Arc<PromptTemplate>, ErrorInfo> {
    let Some(value) = vars.remove(parameter) else {
        return Ok(Arc::clone(file));
    };
    let Value::String(source) = value else {
        return Err(template_error(
            node,
            &format!(
                "input `{parameter}` replaces the template (as in promptflow) and must be text, not {}",
                crate::model::reference::type_name(&value)
            ),
        ));
    };
    file.sibling(&format!("{}.inputs.{parameter}", node.name), source)
        .map(Arc::new)
        .map_err(|e| template_error(node, &format!("input `{parameter}` (the template): {e}")))
}

fn template_error(node: &Node, message: &str) -> ErrorInfo {
    ErrorInfo {
        node: Some(node.name.clone()),
        ..ErrorInfo::new(
            ErrorKind::Template,
            format!(
                "node `{}` ({}): {message}",
                node.name,
                node.source.display()
            ),
        )
    }
}

fn provider_error(node: &Node, e: &ProviderError) -> ErrorInfo {
    let kind = if e.endpoint_unusable() {
        ErrorKind::Endpoint
    } else {
        ErrorKind::Provider
    };
    ErrorInfo {
        node: Some(node.name.clone()),
        error_type: Some("ProviderError".into()),
        ..ErrorInfo::new(kind, format!("node `{}`: {e}", node.name))
    }
}

/// A Python call's failure, keeping what an exception's call did before it raised.
fn python_failure(node: &Node, mut e: PythonError) -> NodeFailure {
    let spent = match &mut e {
        PythonError::Exception { stdout, spent, .. }
            if !(stdout.is_empty() && spent.traces.is_empty() && spent.host_calls.is_empty()) =>
        {
            let mut out = NodeOutcome::value(Value::Null);
            out.stdout = std::mem::take(stdout);
            out.traces = std::mem::take(&mut spent.traces);
            add_host_calls(&mut out, &spent.host_calls);
            Some(Box::new(out))
        }
        _ => None,
    };
    NodeFailure {
        error: python_error(node, e),
        spent,
    }
}

fn python_error(node: &Node, e: PythonError) -> ErrorInfo {
    match e {
        PythonError::Exception {
            type_name,
            message,
            traceback,
            ..
        } => ErrorInfo {
            node: Some(node.name.clone()),
            error_type: Some(type_name.clone()),
            traceback: Some(traceback),
            ..ErrorInfo::new(
                ErrorKind::Python,
                format!("node `{}`: {type_name}: {message}", node.name),
            )
        },
        other => ErrorInfo {
            node: Some(node.name.clone()),
            ..ErrorInfo::new(ErrorKind::Python, format!("node `{}`: {other}", node.name))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn model_parameters_are_typed() {
        let params = json!({"max_tokens": "256", "temperature": "0.5", "stop": "\n", "seed": "", "response_format": "json_object", "model": "x"});
        let out = model_params(params.as_object().unwrap()).unwrap();
        assert_eq!(out["max_tokens"], json!(256));
        assert_eq!(out["temperature"], json!(0.5));
        assert_eq!(out["stop"], json!(["\n"]));
        assert!(!out.contains_key("seed"));
        assert!(!out.contains_key("model"));
        assert_eq!(out["response_format"], json!({"type": "json_object"}));
        let bad = json!({"max_tokens": "lots"});
        assert!(
            model_params(bad.as_object().unwrap())
                .unwrap_err()
                .contains("integer")
        );
    }
}
