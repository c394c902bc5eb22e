//! A flow's YAML with variants applied: each `use_variants` node replaced by the body of the
//! variant that was selected, and `node_variants` removed. Used for run snapshots and builds.

use indexmap::IndexMap;
use serde_yaml::{Mapping, Value};

/// Rewrite `text` (a `flow.dag.yaml`) with `selected` (node → variant id) applied. Comments are
/// not kept; everything else is.
pub fn variant_applied_yaml(
    text: &str,
    selected: &IndexMap<String, String>,
) -> Result<String, String> {
    let mut doc: Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    let Some(root) = doc.as_mapping_mut() else {
        return Err("the flow is not a YAML mapping".into());
    };
    let variants = root.remove("node_variants");
    if let (Some(variants), Some(Value::Sequence(nodes))) =
        (variants.as_ref(), root.get_mut("nodes"))
    {
        for node in nodes.iter_mut() {
            let Some(map) = node.as_mapping() else {
                continue;
            };
            let uses = map
                .get("use_variants")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let Some(name) = map.get("name").and_then(Value::as_str).map(str::to_string) else {
                continue;
            };
            if !uses {
                continue;
            }
            let Some(vid) = selected.get(&name) else {
                continue;
            };
            let body = variants
                .get(name.as_str())
                .and_then(|v| v.get("variants"))
                .and_then(|v| v.get(vid.as_str()))
                .and_then(|v| v.get("node"))
                .and_then(Value::as_mapping);
            if let Some(body) = body {
                let mut replaced = Mapping::new();
                replaced.insert("name".into(), Value::String(name.clone()));
                for (k, v) in body {
                    if k.as_str() != Some("name") {
                        replaced.insert(k.clone(), v.clone());
                    }
                }
                *node = Value::Mapping(replaced);
            }
        }
    }
    serde_yaml::to_string(&doc).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_the_selected_variant_and_drops_node_variants() {
        let text = "inputs: {}\nnodes:\n- name: ask\n  use_variants: true\n- name: other\n  type: python\nnode_variants:\n  ask:\n    default_variant_id: v0\n    variants:\n      v0:\n        node: {type: prompt, source: {type: code, path: a.jinja2}}\n      v1:\n        node: {type: llm, source: {type: code, path: b.jinja2}, connection: c}\n";
        let mut selected = IndexMap::new();
        selected.insert("ask".to_string(), "v1".to_string());
        let out = variant_applied_yaml(text, &selected).unwrap();
        let v: Value = serde_yaml::from_str(&out).unwrap();
        assert!(v.get("node_variants").is_none());
        let ask = &v["nodes"][0];
        assert_eq!(ask["name"].as_str(), Some("ask"));
        assert_eq!(ask["type"].as_str(), Some("llm"));
        assert_eq!(ask["source"]["path"].as_str(), Some("b.jinja2"));
        assert!(ask.get("use_variants").is_none());
        assert_eq!(v["nodes"][1]["name"].as_str(), Some("other"));
    }
}
