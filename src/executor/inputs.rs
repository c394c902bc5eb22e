//! Resolving values: flow inputs from what the user gave, node inputs from references.

use serde_json::{Map, Value};

use crate::model::reference::{follow, type_name};
use crate::model::{Flow, Reference, ValueSource};
use crate::record::{ErrorInfo, ErrorKind};

/// Coerce the given inputs to the flow's declared types, filling defaults. Unknown keys are kept
/// (promptflow keeps them too, and evaluation flows read them).
pub fn resolve_flow_inputs(
    flow: &Flow,
    given: &Map<String, Value>,
) -> Result<Map<String, Value>, ErrorInfo> {
    let mut out = Map::with_capacity(flow.inputs.len());
    for (name, input) in &flow.inputs {
        let value = match given.get(name) {
            Some(v) => input.ty.coerce(v).map_err(|e| {
                ErrorInfo::new(ErrorKind::Input, format!("flow input `{name}`: {e}"))
            })?,
            None => match &input.default {
                Some(d) => d.clone(),
                None => {
                    return Err(ErrorInfo::new(
                        ErrorKind::Input,
                        format!(
                            "flow input `{name}` has no value and no default: give it a value (e.g. --inputs {name}=...) or a default"
                        ),
                    ));
                }
            },
        };
        let value = load_images(&input.ty, value, &flow.dir, flow.message_format)
            .map_err(|e| ErrorInfo::new(ErrorKind::Input, format!("flow input `{name}`: {e}")))?;
        out.insert(name.clone(), value);
    }
    for (k, v) in given {
        if !out.contains_key(k) {
            out.insert(k.clone(), v.clone());
        }
    }
    Ok(out)
}

/// Load the images of an input as promptflow's `load_multimedia_data` does: an `image` input
/// becomes the image (from a path relative to `dir`, a URL, base64 or a multimedia dict), and
/// multimedia dicts inside a `list` or `object` input become images too — dicts of the flow's
/// message `format`. `null` stays `null`.
pub fn load_images(
    ty: &crate::model::ValueType,
    value: Value,
    dir: &std::path::Path,
    format: crate::image::MessageFormat,
) -> Result<Value, crate::image::ImageError> {
    use crate::model::ValueType;
    match ty {
        _ if value.is_null() => Ok(value),
        ValueType::Image => Ok(crate::image::load(&value, dir, format)?.to_value()),
        ValueType::List | ValueType::Object
            if format.contains_image_ref(&value) || crate::image::contains_image(&value) =>
        {
            crate::image::load_nested(&value, dir, format)
        }
        _ => Ok(value),
    }
}

/// What a node's outputs look like to the nodes after it, while a line runs.
pub enum Slot {
    Pending,
    Done(Value),
    Bypassed,
}

/// The value of a reference or literal, given the flow inputs and finished nodes.
/// `Ok(None)` means the reference points at a bypassed node.
pub fn resolve_source(
    source: &ValueSource,
    flow: &Flow,
    flow_inputs: &Map<String, Value>,
    slots: &[Slot],
) -> Result<Option<Value>, ErrorInfo> {
    match source {
        ValueSource::Literal(v) => Ok(Some(v.clone())),
        ValueSource::Reference(r) => resolve_reference(r, flow, flow_inputs, slots),
    }
}

/// The value of a reference; `Ok(None)` when it points at a bypassed node.
pub fn resolve_reference(
    reference: &Reference,
    flow: &Flow,
    flow_inputs: &Map<String, Value>,
    slots: &[Slot],
) -> Result<Option<Value>, ErrorInfo> {
    let (root, path) = match reference {
        Reference::FlowInput { name, path } => {
            (flow_inputs.get(name).unwrap_or(&Value::Null), path)
        }
        Reference::NodeOutput { node, path } => {
            let index = flow.nodes.iter().position(|n| &n.name == node);
            match index.map(|i| &slots[i]) {
                Some(Slot::Done(v)) => (v, path),
                Some(Slot::Bypassed) => return Ok(None),
                _ => {
                    return Err(ErrorInfo::new(
                        ErrorKind::Reference,
                        format!("`{reference}` was used before node `{node}` finished"),
                    ));
                }
            }
        }
    };
    if path.is_empty() {
        return Ok(Some(root.clone()));
    }
    // An LLM reply that is JSON text is followed as JSON, which is what users of
    // `${llm.output.key}` mean.
    let parsed;
    let root = match root {
        Value::String(s) if !s.is_empty() => match crate::non_finite::from_str::<Value>(s) {
            Ok(v @ (Value::Object(_) | Value::Array(_))) => {
                parsed = v;
                &parsed
            }
            _ => root,
        },
        _ => root,
    };
    follow(root, path).map(|v| Some(v.clone())).map_err(|e| {
        ErrorInfo::new(
            ErrorKind::Reference,
            format!("`{reference}`: {e} (the value is {})", type_name(root)),
        )
    })
}

/// Typed comparison for `activate`: numbers compare by value, everything else exactly.
pub fn activate_matches(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => actual == expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn activate_is_typed() {
        assert!(activate_matches(&json!(true), &json!(true)));
        assert!(!activate_matches(&json!("true"), &json!(true)));
        assert!(activate_matches(&json!(1), &json!(1.0)));
        assert!(!activate_matches(&json!(1), &json!(true)));
        assert!(activate_matches(&json!("order"), &json!("order")));
    }
}
