//! `GET /openapi.json` (also `/swagger.json`, promptflow's path): an OpenAPI 3 document of
//! `POST /score` built from the flow's inputs and outputs, shaped as promptflow's `swagger.py`.

use serde_json::{Map, Value, json};

use crate::model::{Flow, ValueType};

/// The flow's type name as written in `flow.dag.yaml`.
pub fn flow_type_name(ty: &ValueType) -> &'static str {
    match ty {
        ValueType::String => "string",
        ValueType::Int => "int",
        ValueType::Double => "double",
        ValueType::Bool => "bool",
        ValueType::List => "list",
        ValueType::Object => "object",
        ValueType::Image => "image",
    }
}

/// A JSON Schema for a flow type (promptflow's `type_mapping`).
fn schema(ty: Option<&ValueType>) -> Map<String, Value> {
    let mut s = Map::new();
    let name = match ty {
        Some(ValueType::Int) => "integer",
        Some(ValueType::Double) => "number",
        Some(ValueType::Bool) => "boolean",
        Some(ValueType::String) => "string",
        Some(ValueType::List) => "array",
        Some(ValueType::Object | ValueType::Image) => "object",
        None => return s,
    };
    s.insert("type".into(), Value::String(name.into()));
    match ty {
        Some(ValueType::Object | ValueType::Image) => {
            s.insert("additionalProperties".into(), json!({}));
        }
        Some(ValueType::List) => {
            s.insert("items".into(), json!({}));
        }
        _ => {}
    }
    s
}

/// What `/score` answers with `Accept: text/event-stream`.
fn event_stream_description(
    flow: &Flow,
    stream_output: Option<&crate::executor::StreamOutput>,
) -> String {
    const END: &str = "; a line that streams nothing sends one `data:` event holding all the outputs, a line that fails before it sent anything is answered with its error's status and JSON error (as without the header), and one that fails later ends the stream with an `event: error` holding the JSON error";
    let Some(s) = stream_output else {
        return "with `Accept: text/event-stream`: one `data:` event holding the outputs, or an `event: error` holding the JSON error".to_string();
    };
    let o = &s.output;
    if flow.flex.is_some() {
        return format!(
            "with `Accept: text/event-stream`, when the entry returns a generator: one `data: {{\"{o}\": <piece>}}` event per piece it yields, as it yields it; when it returns a dict (or dataclass) with one generator field: one event with the other outputs, then one `data: {{\"<field>\": <piece>}}` event per piece{END}"
        );
    }
    let what = match flow.nodes.get(s.node).map(|n| &n.kind) {
        Some(crate::model::NodeKind::Llm) => "piece of text the model writes",
        _ => "piece the node's generator yields (when its tool returns one)",
    };
    format!(
        "with `Accept: text/event-stream`: one `data: {{\"{o}\": <piece>}}` event per {what}, as it comes, then one event with the other outputs{END}"
    )
}

/// The OpenAPI document. `bearer` adds the bearer-token security scheme.
pub fn document(
    flow: &Flow,
    bearer: bool,
    stream_output: Option<&crate::executor::StreamOutput>,
) -> Value {
    let name = flow.name();
    let mut info = json!({
        "title": format!("flow[{name}] API"),
        "version": env!("CARGO_PKG_VERSION"),
        "x-flow-name": name,
    });
    let mut properties = Map::new();
    let mut required = Vec::new();
    for (n, input) in &flow.inputs {
        if input.is_chat_input {
            info["x-chat-input"] = Value::String(n.clone());
            info["x-flow-type"] = Value::String("chat".into());
        }
        if input.is_chat_history {
            info["x-chat-history"] = Value::String(n.clone());
        }
        let mut s = schema(Some(&input.ty));
        if let Some(d) = &input.description {
            s.insert("description".into(), Value::String(d.clone()));
        }
        if let Some(d) = &input.default {
            s.insert("default".into(), d.clone());
        } else if !input.is_chat_history {
            required.push(Value::String(n.clone()));
        }
        if let Some(allowed) = &input.allowed {
            s.insert("enum".into(), Value::Array(allowed.clone()));
        }
        properties.insert(n.clone(), Value::Object(s));
    }
    let mut out_props = Map::new();
    for (n, output) in flow.line_outputs() {
        if output.is_chat_output {
            info["x-chat-output"] = Value::String(n.clone());
        }
        let mut s = schema(output.ty.as_ref());
        if let Some(d) = &output.description {
            s.insert("description".into(), Value::String(d.clone()));
        }
        out_props.insert(n.clone(), Value::Object(s));
    }
    // A flex flow's outputs are what its entry returns; `outputs:` as written, when given, says
    // what to expect (not required: the function decides).
    for (n, ty) in flow.flex.iter().flat_map(|f| &f.declared_outputs) {
        out_props.insert(n.clone(), Value::Object(schema(ty.as_ref())));
    }
    let error = json!({
        "description": "a JSON error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    });
    let mut ok_content = json!({
        "application/json": {"schema": {
            "type": "object",
            "properties": out_props,
            "required": flow.line_outputs().map(|(k, _)| k).collect::<Vec<_>>(),
        }}
    });
    ok_content["text/event-stream"] = json!({
        "schema": {"type": "string", "description": event_stream_description(flow, stream_output)}
    });
    let mut doc = json!({
        "openapi": "3.0.0",
        "info": info,
        "paths": {
            "/score": {"post": {
                "summary": format!("run the flow {name} on one set of inputs"),
                "requestBody": {
                    "required": !flow.inputs.is_empty(),
                    "content": {"application/json": {"schema": {
                        "type": "object",
                        "properties": properties,
                        "required": required,
                        "additionalProperties": false,
                    }}}
                },
                "responses": {
                    "200": {"description": "the flow's outputs", "content": ok_content},
                    "400": error.clone(),
                    "401": error.clone(),
                    "413": error.clone(),
                    "500": error.clone(),
                    "503": error.clone(),
                    "504": error,
                }
            }},
            "/health": {"get": {"summary": "liveness", "responses": {"200": {"description": "the process answers"}}}},
            "/ready": {"get": {"summary": "readiness", "responses": {"200": {"description": "the flow is loaded"}, "503": {"description": "loading or shutting down"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text format 0.0.4"}}}},
        },
        "components": {"schemas": {"Error": {
            "type": "object",
            "properties": {"error": {"type": "object", "properties": {
                "code": {"type": "string"}, "message": {"type": "string"}
            }, "required": ["code", "message"]}},
            "required": ["error"],
        }}},
    });
    if bearer {
        doc["components"]["securitySchemes"] =
            json!({"bearerAuth": {"type": "http", "scheme": "bearer"}});
        doc["security"] = json!([{"bearerAuth": []}]);
    }
    doc
}
