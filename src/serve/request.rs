//! A `/score` request body → the flow's inputs: a JSON object whose keys are the flow's inputs,
//! each coerced to its declared type. Unknown keys, missing inputs without a default
//! and values that do not coerce are rejected before anything runs.

use serde_json::{Map, Value};

use crate::model::{Flow, closest};

/// Parse and check a request body; the error is the message of a 400 answer.
pub fn flow_inputs(flow: &Flow, body: &[u8]) -> Result<Map<String, Value>, String> {
    // As promptflow's script executor: a flex flow's request with no inputs at all runs on
    // `sample.inputs`.
    let sample = flow.flex.as_ref().and_then(|f| f.sample_inputs.as_ref());
    let given = if body.iter().all(u8::is_ascii_whitespace) {
        if let Some(sample) = sample {
            sample.clone()
        } else if flow.inputs.is_empty() {
            Map::new()
        } else {
            return Err(format!(
                "the request body is empty; send a JSON object of the flow's inputs ({})",
                input_list(flow)
            ));
        }
    } else {
        match crate::non_finite::from_slice::<Value>(body) {
            Ok(Value::Object(map)) if map.is_empty() && sample.is_some() => {
                sample.cloned().unwrap_or_default()
            }
            Ok(Value::Object(map)) => map,
            Ok(other) => {
                return Err(format!(
                    "the request body must be a JSON object of the flow's inputs ({}), not {}",
                    input_list(flow),
                    crate::model::reference::type_name(&other)
                ));
            }
            Err(e) => {
                return Err(format!(
                    "the request body is not valid JSON (line {}, column {}): {e}",
                    e.line(),
                    e.column()
                ));
            }
        }
    };
    let mut problems = Vec::new();
    for key in given.keys() {
        if !flow.inputs.contains_key(key) {
            let hint = closest(key, flow.inputs.keys().map(String::as_str))
                .map(|c| format!(" (did you mean `{c}`?)"))
                .unwrap_or_default();
            problems.push(format!("unknown input `{key}`{hint}"));
        }
    }
    let mut inputs = Map::with_capacity(flow.inputs.len());
    for (name, input) in &flow.inputs {
        match given.get(name) {
            Some(v) => match input.ty.coerce(v) {
                // A request must not make the server read its own files.
                Ok(v) if crate::image::names_a_file(&input.ty, &v, flow.message_format) => {
                    let dict = match flow.message_format {
                        crate::image::MessageFormat::Basic => "{\"data:image/png;base64\": ...}",
                        crate::image::MessageFormat::OpenaiVision => {
                            "{\"type\": \"image_url\", \"image_url\": {\"url\": ...}}"
                        }
                    };
                    problems.push(format!(
                        "input `{name}`: a served flow takes images as base64 (or a data:image/...;base64 URI, or {dict}) or an http(s) URL, never a file path on the server"
                    ))
                }
                Ok(v) => {
                    inputs.insert(name.clone(), v);
                }
                Err(e) => problems.push(format!("input `{name}`: {e}")),
            },
            None => match &input.default {
                Some(d) => {
                    inputs.insert(name.clone(), d.clone());
                }
                // A chat flow's history starts empty, as promptflow's chat UI sends it.
                None if input.is_chat_history => {
                    inputs.insert(name.clone(), Value::Array(Vec::new()));
                }
                None => problems.push(format!("missing input `{name}` (it has no default)")),
            },
        }
    }
    if problems.is_empty() {
        Ok(inputs)
    } else {
        Err(format!(
            "{}; the flow's inputs are: {}",
            problems.join("; "),
            input_list(flow)
        ))
    }
}

/// `question: string, chat_history: list = []`.
fn input_list(flow: &Flow) -> String {
    if flow.inputs.is_empty() {
        return "none".into();
    }
    flow.inputs
        .values()
        .map(|i| {
            let mut s = format!("{}: {}", i.name, super::openapi::flow_type_name(&i.ty));
            if let Some(d) = &i.default {
                s.push_str(&format!(" = {d}"));
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}
