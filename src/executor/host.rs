//! The executor's answers to Python tools' host requests (`python::host`): model calls made
//! from Python (the `promptflow.tools` and `promptflow.core.Prompty` of the shim) go through
//! the same connections, providers, limiter, response cache and prices as `llm` nodes, and are
//! recorded under the node whose tool made them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};

use super::{Executor, ExecutorOptions};
use crate::cache::{CacheError, describe_request};
use crate::connection::{self, ApiType, Connection};
use crate::provider::{Api, DeltaFn, LlmRequest, LlmResponse, ProviderError};
use crate::python::{HostCall, HostError, HostFuture, HostHandler, HostReply};
use crate::template::{ListStyle, PromptTemplate, TemplateOptions};

/// Answers host requests with the executor's model client, cache and prices.
pub(crate) struct ModelHost {
    options: ExecutorOptions,
    /// Connections resolved so far, by name.
    connections: Mutex<HashMap<String, Arc<Connection>>>,
    /// `.prompty` files prepared as one-node flows, by file and configuration.
    prompty: tokio::sync::Mutex<HashMap<String, Arc<Executor>>>,
}

impl ModelHost {
    /// `options.client` must be the executor's model client (shared, so one limiter).
    pub(crate) fn new(options: ExecutorOptions) -> Self {
        ModelHost {
            options,
            connections: Mutex::new(HashMap::new()),
            prompty: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    fn client(&self) -> Result<&crate::provider::LlmClient, HostError> {
        self.options
            .client
            .as_ref()
            .ok_or_else(|| HostError::new("RuntimeError", "internal: no model client"))
    }

    /// The connection a request names: a name (`"open_ai_connection"`), or a connection object
    /// (`{"name": ..., "api_key": ..., "api_base": ..., "api_type": ..., "api_version": ...}`);
    /// an object whose name is not configured is used with its own fields.
    fn connection(&self, value: Option<&Value>) -> Result<Arc<Connection>, HostError> {
        let (name, fields) = match value {
            Some(Value::String(name)) => (name.clone(), None),
            Some(Value::Object(fields)) => (
                fields
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                Some(fields),
            ),
            _ => {
                return Err(HostError::new(
                    "InvalidConnectionType",
                    "a model call needs a connection: a connection object or a connection's name",
                ));
            }
        };
        if !name.is_empty() {
            if let Ok(cache) = self.connections.lock() {
                if let Some(c) = cache.get(&name) {
                    return Ok(Arc::clone(c));
                }
            }
            match connection::resolve(&name, &self.options.env, self.options.offline) {
                Ok(c) => {
                    let c = Arc::new(c);
                    if let Ok(mut cache) = self.connections.lock() {
                        cache.insert(name, Arc::clone(&c));
                    }
                    return Ok(c);
                }
                Err(e) if fields.is_none() => {
                    return Err(HostError::new("InvalidConnectionType", e.to_string()));
                }
                Err(_) => {}
            }
        }
        let Some(fields) = fields else {
            return Err(HostError::new(
                "InvalidConnectionType",
                "a model call needs a connection: a connection object or a connection's name",
            ));
        };
        self.inline_connection(&name, fields)
    }

    /// A connection made from explicit fields: resolved like a configured one, from variables
    /// set for a private name.
    fn inline_connection(
        &self,
        name: &str,
        fields: &Map<String, Value>,
    ) -> Result<Arc<Connection>, HostError> {
        let text = |k: &str| {
            fields
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let synthetic = if name.is_empty() { "inline" } else { name };
        let private = format!("flow_python_{synthetic}");
        let prefix = connection::env_prefix(&private);
        let mut env = self.options.env.clone();
        for (field, var) in [
            ("api_key", "API_KEY"),
            ("api_base", "API_BASE"),
            ("base_url", "API_BASE"),
            ("azure_endpoint", "API_BASE"),
            ("api_type", "API_TYPE"),
            ("api_version", "API_VERSION"),
        ] {
            if let Some(v) = text(field) {
                env = env.with(&format!("{prefix}_{var}"), v);
            }
        }
        if text("api_type").is_none() {
            let azure = text("azure_endpoint").is_some() || text("api_version").is_some();
            env = env.with(
                &format!("{prefix}_API_TYPE"),
                if azure { "azure" } else { "openai" },
            );
        }
        connection::resolve(&private, &env, self.options.offline)
            .map(|mut c| {
                // messages name the connection and its fields as the code gave them, not the
                // private variables they were resolved through
                c.given_in_code = true;
                c.name = if name.is_empty() {
                    "<built in code>".into()
                } else {
                    name.to_string()
                };
                Arc::new(c)
            })
            .map_err(|e| {
                HostError::new(
                    "InvalidConnectionType",
                    format!(
                        "the connection{} given to the tool cannot be used: {e}",
                        if name.is_empty() {
                            String::new()
                        } else {
                            format!(" '{name}'")
                        }
                    ),
                )
            })
    }

    /// `chat` / `completion`: `prompt` (a template, rendered with `inputs`) or `messages`, a
    /// model or deployment, and model parameters.
    async fn complete(
        &self,
        node: &str,
        op: &str,
        args: Value,
        on_delta: Option<DeltaFn<'_>>,
    ) -> Result<HostReply, HostError> {
        let conn = self.connection(args.get("connection"))?;
        let api = if op == "chat" {
            Api::Chat
        } else {
            Api::Completion
        };
        let mut inputs = args
            .get("inputs")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        // An image prints as promptflow's `str(image)`; a chat sends it as an image part.
        let images = crate::image::to_markers(&mut inputs);
        let mut request = LlmRequest::chat(Vec::new());
        request.api = api;
        if let Some(messages) = args.get("messages").filter(|m| !m.is_null()) {
            request.messages = serde_json::from_value(messages.clone()).map_err(|e| {
                HostError::new(
                    "ChatAPIInvalidRole",
                    format!("the messages are not chat messages (role and content): {e}"),
                )
            })?;
        } else {
            let prompt = args.get("prompt").and_then(Value::as_str).ok_or_else(|| {
                HostError::new("ValueError", format!("`{op}` needs a `prompt` text"))
            })?;
            let style = if conn.api_type == ApiType::Azure && api == Api::Chat {
                ListStyle::Lines
            } else {
                ListStyle::Python
            };
            let text = render(prompt, inputs, style).await?;
            match api {
                Api::Chat => {
                    request.messages = crate::image::chat_messages(&text, &images, "auto", true)
                        .map_err(|e| HostError::new("ChatAPIInvalidRole", e.to_string()))?;
                }
                Api::Completion if images.keys().any(|k| text.contains(k.as_str())) => {
                    return Err(HostError::new(
                        "ValueError",
                        "an image reaches a completion prompt, which sends text only; use a chat tool to send images",
                    ));
                }
                Api::Completion => request.prompt = Some(text),
            }
        }
        let text = |k: &str| {
            args.get(k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let (model, deployment) = (text("model"), text("deployment_name"));
        request.model = if conn.api_type == ApiType::Azure {
            deployment.or(model)
        } else {
            model.or(deployment)
        };
        if let Some(Value::Object(params)) = args.get("params") {
            request.params = params
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
        }
        request.stream = on_delta.is_some();
        let (response, cached) = self.call_model(node, &conn, &request, on_delta).await?;
        Ok(self.reply(op, response.output.clone(), &request, response, cached))
    }

    async fn call_model(
        &self,
        node: &str,
        conn: &Connection,
        request: &LlmRequest,
        on_delta: Option<DeltaFn<'_>>,
    ) -> Result<(LlmResponse, bool), HostError> {
        let client = self.client()?;
        let fetch = || client.complete(conn, request, on_delta);
        let key = || request.cache_key(conn);
        self.through_cache(conn, key, || describe_request(node, request), fetch)
            .await
    }

    /// `fetch` through the response cache (when there is one and the connection is a model's),
    /// keyed by `key` (per sample of a repeated run) and described by `what` on a miss in
    /// replay mode; whether the answer came from the cache.
    async fn through_cache<F, Fut>(
        &self,
        conn: &Connection,
        key: impl FnOnce() -> String,
        what: impl FnOnce() -> String,
        fetch: F,
    ) -> Result<(LlmResponse, bool), HostError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<LlmResponse, ProviderError>>,
    {
        match &self.options.cache {
            Some(cache) if conn.api_type != ApiType::Echo => {
                let key = match self.options.sample {
                    Some(n) => format!("{}-sample{n}", key()),
                    None => key(),
                };
                match cache.get_or_fetch(&key, &what(), fetch).await {
                    Ok(c) => Ok((c.response, c.hit)),
                    Err(CacheError::Provider(e)) => Err(provider_error(&e)),
                    Err(miss) => Err(HostError::new("WrappedOpenAIError", miss.to_string())),
                }
            }
            _ => fetch()
                .await
                .map(|r| (r, false))
                .map_err(|e| provider_error(&e)),
        }
    }

    fn reply(
        &self,
        op: &str,
        result: Value,
        request: &LlmRequest,
        response: LlmResponse,
        cached: bool,
    ) -> HostReply {
        let priced = response.model.clone().or_else(|| request.model.clone());
        let list_price = priced.as_deref().and_then(|m| {
            self.options.prices.cost(
                m,
                response.usage.prompt_tokens,
                response.usage.completion_tokens,
            )
        });
        HostReply {
            result,
            call: Some(HostCall {
                op: op.to_string(),
                prompt_tokens: response.usage.prompt_tokens,
                completion_tokens: response.usage.completion_tokens,
                total_tokens: response.usage.total_tokens,
                model_call: true,
                model: response.model,
                cached,
                cost_usd: if cached { Some(0.0) } else { list_price },
                saved_usd: if cached { list_price } else { None },
                retries: response.retries,
            }),
        }
    }

    /// `embedding`: `input` (a text or a list of texts) with a model or deployment.
    async fn embedding(&self, node: &str, args: Value) -> Result<HostReply, HostError> {
        let conn = self.connection(args.get("connection"))?;
        let (inputs, single) = match args.get("input") {
            Some(Value::String(s)) => (vec![s.clone()], true),
            Some(Value::Array(items)) => (
                items
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s.clone()),
                        other => Err(HostError::new(
                            "ValueError",
                            format!("embedding input must be text, got {other}"),
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                false,
            ),
            _ => {
                return Err(HostError::new(
                    "ValueError",
                    "embedding needs `input`: a text or a list of texts",
                ));
            }
        };
        let model = ["deployment_name", "model"]
            .iter()
            .filter_map(|k| args.get(*k).and_then(Value::as_str))
            .find(|s| !s.trim().is_empty())
            .map(str::to_string);
        let (response, cached) = self.embed(node, &conn, model.as_deref(), &inputs).await?;
        let result = if single {
            response
                .output
                .as_array()
                .and_then(|v| v.first())
                .cloned()
                .unwrap_or_else(|| json!([]))
        } else {
            response.output.clone()
        };
        let mut request = LlmRequest::chat(Vec::new());
        request.model = model;
        Ok(self.reply("embedding", result, &request, response, cached))
    }

    /// An embeddings request through the response cache (as `llm` calls are): the vectors are
    /// the response's output; its usage is what the endpoint reported.
    async fn embed(
        &self,
        node: &str,
        conn: &Connection,
        model: Option<&str>,
        inputs: &[String],
    ) -> Result<(LlmResponse, bool), HostError> {
        let client = self.client()?;
        let fetch = || async {
            let e = client.embed_detailed(conn, model, inputs).await?;
            Ok(LlmResponse {
                output: json!(e.vectors),
                usage: e.usage,
                model: e.model,
                finish_reason: None,
                retries: e.retries,
                served_by: e.served_by,
                raw: None,
            })
        };
        let key = || crate::provider::embedding_cache_key(conn, model, inputs);
        let what = || {
            let first: String = inputs
                .first()
                .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_default()
                .chars()
                .take(80)
                .collect();
            format!(
                "node {node}, embedding model {}, first input \"{first}\"",
                model.unwrap_or("(connection default)")
            )
        };
        self.through_cache(conn, key, what, fetch).await
    }

    /// Whether a `.prompty` asks for a streamed reply (`stream: true` in its parameters, or in
    /// those the call gives) and its output is the model's text, as promptflow's Prompty then
    /// returns a generator.
    async fn prompty_streams(&self, args: &Value) -> Result<bool, HostError> {
        let executor = self.prompty_executor(args).await?;
        let Some(s) = executor.stream_output() else {
            return Ok(false);
        };
        let asked = executor.flow().nodes.get(s.node).is_some_and(|n| {
            matches!(
                n.inputs.get("stream"),
                Some(crate::model::ValueSource::Literal(v)) if v == &Value::Bool(true)
                    || v.as_str().is_some_and(|t| t.eq_ignore_ascii_case("true"))
            )
        });
        Ok(asked)
    }

    /// `prompty`: run a `.prompty` file as flow runs it (its one-node flow), with the model
    /// configuration and parameters the Python caller overrides.
    async fn prompty(
        &self,
        args: Value,
        on_delta: Option<DeltaFn<'_>>,
    ) -> Result<HostReply, HostError> {
        let executor = self.prompty_executor(&args).await?;
        let inputs = args
            .get("inputs")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let streamed = on_delta.is_some() && executor.stream_output().is_some();
        let line = match (on_delta, executor.stream_output()) {
            (Some(on_delta), Some(s)) => {
                let stream = super::LineStream {
                    node: s.node,
                    on_delta,
                    pieces: None,
                };
                executor.run_line_streaming(0, &inputs, Some(&stream)).await
            }
            _ => executor.run_line(0, &inputs).await,
        };
        let node = line.nodes.first();
        if let Some(error) = &line.error {
            let type_name = match error.kind {
                crate::record::ErrorKind::Provider | crate::record::ErrorKind::Endpoint => {
                    "WrappedOpenAIError"
                }
                crate::record::ErrorKind::Input => "MissingRequiredInput",
                _ => "PromptyException",
            };
            return Err(HostError::new(type_name, error.message.clone()));
        }
        let output = line.outputs.get("output").cloned().unwrap_or(Value::Null);
        let all = executor.prepared.iter().any(|p| {
            matches!(
                p,
                super::Prepared::Llm {
                    reply: Some(r),
                    ..
                } if r.all
            )
        });
        let call = node.map(|n| HostCall {
            op: "prompty".into(),
            prompt_tokens: n.tokens.map_or(0, |t| t.prompt_tokens),
            completion_tokens: n.tokens.map_or(0, |t| t.completion_tokens),
            total_tokens: n.tokens.map_or(0, |t| t.total_tokens),
            model_call: true,
            model: n.model.clone(),
            cached: n.cached,
            cost_usd: n.cost_usd,
            saved_usd: n.saved_usd,
            retries: n.retries,
        });
        Ok(HostReply {
            // Streamed (pieces already sent), the result is the text the pieces make; else the
            // shim makes the whole response an object again (`all`).
            result: if streamed {
                output
            } else {
                json!({"output": output, "all": all})
            },
            call,
        })
    }

    /// `prompty_tokens`: promptflow's `Prompty.estimate_token_count(**inputs)` — the prompt
    /// rendered as a call would render it, its tokens counted as promptflow counts them
    /// ([`crate::token_count`]), plus `max_tokens` when the parameters give it.
    async fn prompty_tokens(&self, args: Value) -> Result<HostReply, HostError> {
        let executor = self.prompty_executor(&args).await?;
        let given = args
            .get("inputs")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let (
            Some(node),
            Some(super::Prepared::Llm {
                template,
                connection,
                ..
            }),
        ) = (executor.flow.nodes.first(), executor.prepared.first())
        else {
            return Err(HostError::new(
                "PromptyException",
                "internal: the .prompty did not prepare as one model call",
            ));
        };
        let max_tokens = match node.inputs.get("max_tokens") {
            None | Some(crate::model::ValueSource::Literal(Value::Null)) => None,
            Some(crate::model::ValueSource::Literal(Value::Bool(b))) => {
                let shown = if *b { "True" } else { "False" };
                return Err(HostError::new(
                    "ValueError",
                    format!("{shown} is less than the minimum of max_tokens."),
                ));
            }
            Some(crate::model::ValueSource::Literal(Value::Number(n))) if n.as_i64().is_some() => {
                match n.as_i64() {
                    Some(n) if n > 1 => Some(n as u64),
                    _ => {
                        return Err(HostError::new(
                            "ValueError",
                            format!("{n} is less than the minimum of max_tokens."),
                        ));
                    }
                }
            }
            Some(_) => {
                return Err(HostError::new(
                    "ValueError",
                    "Max_token needs to be integer.",
                ));
            }
        };
        // promptflow's `_resolve_inputs`: the sample when no input is given, then each input's
        // value or default; every missing one named
        let given = if given.is_empty() {
            executor
                .flow
                .inputs
                .iter()
                .filter_map(|(k, i)| i.default.clone().map(|d| (k.clone(), d)))
                .collect()
        } else {
            given
        };
        let missing: Vec<String> = executor
            .flow
            .inputs
            .iter()
            .filter(|(k, i)| !given.contains_key(*k) && i.default.is_none())
            .map(|(k, _)| format!("'{k}'"))
            .collect();
        if !missing.is_empty() {
            return Err(HostError::new(
                "ValueError",
                format!("Missing required inputs: [{}]", missing.join(", ")),
            ));
        }
        let flow_inputs = super::inputs::resolve_flow_inputs(&executor.flow, &given)
            .map_err(|e| HostError::new("ValueError", e.message))?;
        let mut values = Map::new();
        for (k, source) in &node.inputs {
            match source {
                crate::model::ValueSource::Literal(v) => {
                    values.insert(k.clone(), v.clone());
                }
                crate::model::ValueSource::Reference(crate::model::Reference::FlowInput {
                    name,
                    ..
                }) => {
                    if let Some(v) = flow_inputs.get(name) {
                        values.insert(k.clone(), v.clone());
                    }
                }
                crate::model::ValueSource::Reference(_) => {}
            }
        }
        let request = super::node::llm_request(
            node,
            template,
            connection,
            &values,
            &std::collections::HashSet::new(),
            super::node::RequestShape {
                whole: false,
                stream: false,
                message_format: executor.flow.message_format,
            },
        )
        .await
        .map_err(|e| HostError::new("PromptyException", e.message))?;
        if request.api == Api::Completion {
            return Err(HostError::new(
                "NotImplementedError",
                format!(
                    "{}: estimate_token_count counts chat messages, and this .prompty has `api: completion` (promptflow's fails on it too, iterating the prompt's characters as messages)",
                    executor.flow.file.display()
                ),
            ));
        }
        let messages = serde_json::to_value(&request.messages)
            .map_err(|e| HostError::new("PromptyException", e.to_string()))?;
        let messages = messages.as_array().cloned().unwrap_or_default();
        let model = ["deployment_name", "model"]
            .iter()
            .find_map(|k| match node.inputs.get(*k) {
                Some(crate::model::ValueSource::Literal(Value::String(s))) if !s.is_empty() => {
                    Some(s.clone())
                }
                _ => None,
            });
        let prompt = crate::token_count::chat_tokens(&messages, model.as_deref()).map_err(|e| {
            let kind = match e {
                crate::token_count::TokenCountError::Image(_) => "NotImplementedError",
                _ => "ValueError",
            };
            HostError::new(kind, e.to_string())
        })?;
        Ok(HostReply {
            result: json!(prompt + max_tokens.unwrap_or(0)),
            call: None,
        })
    }

    async fn prompty_executor(&self, args: &Value) -> Result<Arc<Executor>, HostError> {
        let path = args
            .get("path")
            .and_then(Value::as_str)
            .map(PathBuf::from)
            .ok_or_else(|| HostError::new("ValueError", "`prompty` needs the file's `path`"))?;
        let config = args.get("configuration").cloned().unwrap_or(Value::Null);
        let params = args.get("parameters").cloned().unwrap_or(Value::Null);
        // `model={"response": ...}` given in code: `first` or `all`, else the file's
        let response = match args.get("response") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s == "first" => Some(false),
            Some(Value::String(s)) if s == "all" => Some(true),
            Some(other) => {
                return Err(HostError::new(
                    "ValueError",
                    format!("Prompty's `model.response` is {other}; use \"first\" or \"all\""),
                ));
            }
        };
        let key = json!([path, config, params, response]).to_string();
        let mut cache = self.prompty.lock().await;
        Ok(match cache.get(&key) {
            Some(e) => Arc::clone(e),
            None => {
                let e = Arc::new(
                    self.prepare_prompty(&path, &config, &params, response)
                        .await?,
                );
                cache.insert(key, Arc::clone(&e));
                e
            }
        })
    }

    async fn prepare_prompty(
        &self,
        path: &std::path::Path,
        config: &Value,
        params: &Value,
        response: Option<bool>,
    ) -> Result<Executor, HostError> {
        let fail = |m: String| HostError::new("PromptyException", m);
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
        let mut flow = crate::model::prompty_flow::flow_from_prompty(path, &text)
            .map_err(|e| fail(e.to_string()))?;
        let mut options = self.options.clone();
        let mut given_in_code = false;
        if let Some(node) = flow.nodes.first_mut() {
            use crate::model::ValueSource;
            if let Value::Object(config) = config {
                let text = |k: &str| {
                    config
                        .get(k)
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                };
                if let Some(name) = text("connection") {
                    node.connection = Some(name.to_string());
                } else if ["api_key", "azure_endpoint", "base_url"]
                    .iter()
                    .any(|k| text(k).is_some())
                {
                    // an explicit endpoint: a private connection made of its fields
                    let name = "flow_python_prompty";
                    let prefix = connection::env_prefix(name);
                    let azure = config.get("type").and_then(Value::as_str) == Some("azure_openai")
                        || text("azure_endpoint").is_some();
                    let mut env = options.env.with(
                        &format!("{prefix}_API_TYPE"),
                        if azure { "azure" } else { "openai" },
                    );
                    for (field, var) in [
                        ("api_key", "API_KEY"),
                        ("azure_endpoint", "API_BASE"),
                        ("base_url", "API_BASE"),
                        ("api_version", "API_VERSION"),
                    ] {
                        if let Some(v) = text(field) {
                            env = env.with(&format!("{prefix}_{var}"), v);
                        }
                    }
                    options.env = env;
                    node.connection = Some(name.to_string());
                    given_in_code = true;
                }
                if let Some(d) = text("azure_deployment") {
                    node.inputs.insert(
                        "deployment_name".into(),
                        ValueSource::Literal(Value::String(d.to_string())),
                    );
                }
                if let Some(m) = text("model") {
                    node.inputs.insert(
                        "model".into(),
                        ValueSource::Literal(Value::String(m.into())),
                    );
                }
            }
            if let Value::Object(params) = params {
                for (k, v) in params {
                    node.inputs
                        .insert(k.clone(), ValueSource::Literal(v.clone()));
                }
            }
        }
        let (dag, _) = crate::dag::build(&flow).map_err(|d| {
            fail(
                d.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })?;
        let mut executor = Executor::new(flow, dag, &options)
            .await
            .map_err(|e| fail(e.to_string()))?;
        if let Some(all) = response {
            for prepared in &mut executor.prepared {
                if let super::Prepared::Llm {
                    reply: Some(reply),
                    connection,
                    ..
                } = prepared
                {
                    if all && !reply.all {
                        let parameters = match executor.flow.nodes.first() {
                            Some(node) => literal_inputs(node),
                            None => Map::new(),
                        };
                        if let Some(problem) =
                            super::prepare::response_all_problem(connection, &parameters)
                        {
                            return Err(HostError::new(
                                "ValueError",
                                format!(
                                    "{}: `model.response: all` {problem}\n  help: {}",
                                    path.display(),
                                    super::prepare::RESPONSE_ALL_HELP
                                ),
                            ));
                        }
                    }
                    reply.all = all;
                }
            }
        }
        if given_in_code {
            // messages name the endpoint and key as the code gave them (see inline_connection)
            for prepared in &mut executor.prepared {
                if let super::Prepared::Llm { connection, .. } = prepared {
                    let mut c = (**connection).clone();
                    c.given_in_code = true;
                    c.name = "<built in code>".into();
                    *connection = Arc::new(c);
                }
            }
        }
        Ok(executor)
    }
}

impl HostHandler for ModelHost {
    fn handle_streaming<'a>(
        &'a self,
        node: &'a str,
        op: &'a str,
        args: Value,
        on_delta: crate::python::HostDeltas<'a>,
    ) -> HostFuture<'a> {
        match op {
            "chat" | "completion" => {
                Box::pin(async move { self.complete(node, op, args, Some(&*on_delta)).await })
            }
            "prompty" => Box::pin(async move { self.prompty(args, Some(&*on_delta)).await }),
            _ => self.handle(node, op, args),
        }
    }

    fn streams<'a>(&'a self, op: &'a str, args: &'a Value) -> crate::python::HostWants<'a> {
        Box::pin(async move {
            match op {
                "prompty" => self.prompty_streams(args).await,
                _ => Ok(false),
            }
        })
    }

    fn handle<'a>(&'a self, node: &'a str, op: &'a str, args: Value) -> HostFuture<'a> {
        Box::pin(async move {
            match op {
                "chat" | "completion" => self.complete(node, op, args, None).await,
                "embedding" => self.embedding(node, args).await,
                "prompty" => self.prompty(args, None).await,
                "prompty_tokens" => self.prompty_tokens(args).await,
                "render" => {
                    let template =
                        args.get("template")
                            .and_then(Value::as_str)
                            .ok_or_else(|| {
                                HostError::new("ValueError", "`render` needs a `template` text")
                            })?;
                    let mut inputs = args
                        .get("inputs")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    // an Image prints as promptflow's `str(image)`: `Image(<sha1[:8]>)`
                    crate::image::to_markers(&mut inputs);
                    let text = render(template, inputs, ListStyle::Python).await?;
                    Ok(HostReply {
                        result: Value::String(text),
                        call: None,
                    })
                }
                "parse_chat" => {
                    let text = args.get("text").and_then(Value::as_str).unwrap_or_default();
                    let images = parse_chat_images(args.get("images"))?;
                    let detail = args
                        .get("image_detail")
                        .and_then(Value::as_str)
                        .unwrap_or("auto");
                    // promptflow's parse_chat: image lines only, no `![image](...)` unwrapping
                    let messages = crate::image::chat_messages(text, &images, detail, false)
                        .map_err(|e| HostError::new("ChatAPIInvalidRole", e.to_string()))?;
                    Ok(HostReply {
                        result: serde_json::to_value(messages).unwrap_or(Value::Null),
                        call: None,
                    })
                }
                other => Err(HostError::new(
                    "NotImplementedError",
                    format!("flow has no host operation `{other}`"),
                )),
            }
        })
    }
}

/// The images Python gave `parse_chat`: `[str(image), image value]` pairs, each image found by
/// the marker Python printed and by flow's own (they differ for an image made from a URL).
fn parse_chat_images(
    value: Option<&Value>,
) -> Result<HashMap<String, crate::image::Image>, HostError> {
    let mut images = HashMap::new();
    let Some(Value::Array(items)) = value else {
        return Ok(images);
    };
    for item in items {
        let (marker, value) = match item {
            Value::Array(pair) if pair.len() == 2 => (pair[0].as_str(), &pair[1]),
            other => (None, other),
        };
        let image = crate::image::Image::from_value(value).ok_or_else(|| {
            HostError::new(
                "ValueError",
                format!("parse_chat: `images` holds something that is not an Image: {value}"),
            )
        })?;
        if let Some(m) = marker {
            images.insert(m.to_string(), image.clone());
        }
        images.insert(image.marker(), image);
    }
    Ok(images)
}

/// Render a template the Python code gave, with promptflow's Jinja settings (the same engine
/// and options as a node's template), on the blocking pool.
async fn render(
    template: &str,
    inputs: Map<String, Value>,
    list_style: ListStyle,
) -> Result<String, HostError> {
    let source = template.to_string();
    tokio::task::spawn_blocking(move || {
        let t = PromptTemplate::with_options(
            "<prompt given to the tool>",
            source,
            TemplateOptions {
                list_style,
                line_offset: 0,
            },
        )?;
        t.render(&inputs)
    })
    .await
    .map_err(|e| HostError::new("RuntimeError", format!("rendering stopped: {e}")))?
    .map_err(|e| HostError::new("JinjaTemplateError", e.to_string()))
}

fn provider_error(e: &ProviderError) -> HostError {
    let type_name = match e {
        ProviderError::Retried { source, .. }
            if matches!(**source, ProviderError::RateLimited { .. }) =>
        {
            "ExceedMaxRetryTimes"
        }
        _ => "WrappedOpenAIError",
    };
    HostError::new(type_name, e.to_string())
}

/// A node's literal inputs (for a `.prompty` node: its model and `model.parameters`).
fn literal_inputs(node: &crate::model::Node) -> Map<String, Value> {
    node.inputs
        .iter()
        .filter_map(|(k, v)| match v {
            crate::model::ValueSource::Literal(v) => Some((k.clone(), v.clone())),
            _ => None,
        })
        .collect()
}
