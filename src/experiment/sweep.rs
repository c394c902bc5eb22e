//! Parameter sweeps: `sweep: [{node: classify, parameters: {temperature: [0, 0.7]}}]` expands
//! into one choice of that node per combination of values, applied on top of a base variant
//! (the node's default unless `variant:` says otherwise), without copying the node.
//!
//! Ids are readable and stable: `classify.temperature=0.7,model=gpt-4o` on the default variant,
//! `classify.variant_1.temperature=0.7` on another one.

use indexmap::IndexMap;
use serde_json::Value as Json;

use super::file::SweepDef;
use super::variants::NodeChoice;
use crate::diagnostic::Diagnostic;
use crate::model::Flow;

/// A parameter value as it appears in an id: text unquoted, numbers and booleans as written.
pub fn value_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every combination of the parameters' values, in the order written (the last parameter
/// varies fastest).
pub fn combinations(parameters: &IndexMap<String, Vec<Json>>) -> Vec<IndexMap<String, Json>> {
    let mut out: Vec<IndexMap<String, Json>> = vec![IndexMap::new()];
    for (name, values) in parameters {
        let mut next = Vec::with_capacity(out.len() * values.len());
        for partial in &out {
            for v in values {
                let mut p = partial.clone();
                p.insert(name.clone(), v.clone());
                next.push(p);
            }
        }
        out = next;
    }
    out
}

/// The choices a sweep adds to its node. `flow` is the flow without variants applied.
pub fn expand(flow: &Flow, sweep: &SweepDef) -> Result<Vec<NodeChoice>, Box<Diagnostic>> {
    let in_nodes = flow.nodes.iter().any(|n| n.name == sweep.node);
    if !in_nodes {
        let names: Vec<&str> = flow.nodes.iter().map(|n| n.name.as_str()).collect();
        let help = match crate::model::closest(&sweep.node, names.iter().copied()) {
            Some(c) => format!("did you mean `{c}`? nodes: {}", names.join(", ")),
            None => format!("nodes: {}", names.join(", ")),
        };
        return Err(Box::new(
            sweep
                .origin
                .error(format!("sweep: the flow has no node `{}`", sweep.node))
                .with_help(help),
        ));
    }
    let variants = flow.node_variants.get(&sweep.node);
    let default_vid = variants.map(|v| v.default_variant_id.clone());
    let base = match (&sweep.variant, variants) {
        (None, _) => default_vid.clone(),
        (Some(v), Some(nv)) if nv.variants.contains_key(v) => Some(v.clone()),
        (Some(v), Some(nv)) => {
            let ids: Vec<&str> = nv.variants.keys().map(String::as_str).collect();
            return Err(Box::new(
                sweep
                    .origin
                    .error(format!("sweep: node `{}` has no variant `{v}`", sweep.node))
                    .with_help(format!("variants of `{}`: {}", sweep.node, ids.join(", "))),
            ));
        }
        (Some(v), None) => {
            return Err(Box::new(
                sweep
                    .origin
                    .error(format!(
                        "sweep: node `{}` has no variants, so `variant: {v}` cannot apply",
                        sweep.node
                    ))
                    .with_help("remove `variant:` to sweep the node as it is"),
            ));
        }
    };
    let prefix = match &base {
        Some(b) if Some(b) != default_vid.as_ref() => format!("{}.{b}", sweep.node),
        _ => sweep.node.clone(),
    };
    Ok(combinations(&sweep.parameters)
        .into_iter()
        .map(|parameters| {
            let described: Vec<String> = parameters
                .iter()
                .map(|(k, v)| format!("{k}={}", value_text(v)))
                .collect();
            NodeChoice {
                node: sweep.node.clone(),
                variant_id: base.clone(),
                id: format!("{prefix}.{}", described.join(",")),
                parameters,
                is_default: false,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn combinations_are_the_cartesian_product_in_written_order() {
        let mut p = IndexMap::new();
        p.insert("temperature".to_string(), vec![json!(0), json!(0.7)]);
        p.insert("model".to_string(), vec![json!("a"), json!("b")]);
        let c = combinations(&p);
        assert_eq!(c.len(), 4);
        assert_eq!(c[0]["temperature"], json!(0));
        assert_eq!(c[0]["model"], json!("a"));
        assert_eq!(c[1]["model"], json!("b"));
        assert_eq!(c[3]["temperature"], json!(0.7));
    }

    #[test]
    fn values_print_as_written() {
        assert_eq!(value_text(&json!(0.7)), "0.7");
        assert_eq!(value_text(&json!("gpt-4o")), "gpt-4o");
        assert_eq!(value_text(&json!(true)), "true");
    }
}
