//! Variants: `--variant '${node.variant_id}'` picks one node body; every other `use_variants`
//! node takes its default (docs/flows.md, Variants).

use super::load::{LoadError, closest};
use super::types::Flow;
use crate::diagnostic::Diagnostic;

/// A `${node.variant_id}` selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantSelection {
    pub node: String,
    pub variant_id: String,
}

impl std::str::FromStr for VariantSelection {
    type Err = String;

    /// Parse `${node.variant_id}` (the `${}` may be left out).
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let inner = t
            .strip_prefix("${")
            .and_then(|x| x.strip_suffix('}'))
            .unwrap_or(t);
        match inner.split_once('.') {
            Some((node, vid)) if !node.is_empty() && !vid.is_empty() => Ok(VariantSelection {
                node: node.trim().to_string(),
                variant_id: vid.trim().to_string(),
            }),
            _ => Err(format!(
                "`{s}` is not a variant: write `${{node_name.variant_id}}`, e.g. `${{classify.variant_1}}`"
            )),
        }
    }
}

impl std::fmt::Display for VariantSelection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "${{{}.{}}}", self.node, self.variant_id)
    }
}

impl Flow {
    /// Replace each `use_variants` node with a variant body: the selected ones, the default for
    /// the rest. Selections naming an unknown node or variant are errors with suggestions.
    pub fn apply_variants(mut self, selections: &[VariantSelection]) -> Result<Flow, LoadError> {
        let mut diagnostics = Vec::new();
        for sel in selections {
            match self.node_variants.get(&sel.node) {
                None => {
                    let names: Vec<&str> = self.node_variants.keys().map(String::as_str).collect();
                    let help = if names.is_empty() {
                        "this flow has no node_variants".to_string()
                    } else {
                        match closest(&sel.node, names.iter().copied()) {
                            Some(c) => format!(
                                "did you mean `${{{c}.{}}}`? nodes with variants: {}",
                                sel.variant_id,
                                names.join(", ")
                            ),
                            None => format!("nodes with variants: {}", names.join(", ")),
                        }
                    };
                    diagnostics.push(
                        Diagnostic::error(format!(
                            "variant {sel}: node `{}` has no variants",
                            sel.node
                        ))
                        .at(&self.file, None)
                        .with_help(help),
                    );
                }
                Some(nv) if !nv.variants.contains_key(&sel.variant_id) => {
                    let ids: Vec<&str> = nv.variants.keys().map(String::as_str).collect();
                    let help = match closest(&sel.variant_id, ids.iter().copied()) {
                        Some(c) => format!(
                            "did you mean `${{{}.{c}}}`? variants: {}",
                            sel.node,
                            ids.join(", ")
                        ),
                        None => format!("variants of `{}`: {}", sel.node, ids.join(", ")),
                    };
                    diagnostics.push(
                        Diagnostic::error(format!("variant {sel} does not exist"))
                            .at(
                                &self.file,
                                self.locate_key(&format!("node_variants.{}.variants", sel.node)),
                            )
                            .with_help(help),
                    );
                }
                Some(_) => {}
            }
        }
        let mut selected = indexmap::IndexMap::new();
        for i in 0..self.nodes.len() {
            if self.nodes[i].variant_id.as_deref() != Some("") {
                continue;
            }
            let name = self.nodes[i].name.clone();
            let Some(nv) = self.node_variants.get(&name) else {
                diagnostics.push(
                    self.error_at(
                        &self.nodes[i].yaml_path.clone(),
                        format!("node `{name}` has `use_variants: true` but no `node_variants.{name}`"),
                    )
                    .with_help(format!("add `node_variants: {{{name}: {{default_variant_id: variant_0, variants: {{variant_0: {{node: ...}}}}}}}}` or remove `use_variants`")),
                );
                continue;
            };
            let vid = selections
                .iter()
                .find(|s| s.node == name)
                .map(|s| s.variant_id.clone())
                .unwrap_or_else(|| nv.default_variant_id.clone());
            if let Some(v) = nv.variants.get(&vid) {
                self.nodes[i] = v.node.clone();
                selected.insert(name, vid);
            }
        }
        if diagnostics.is_empty() {
            self.selected_variants = selected;
            Ok(self)
        } else {
            Err(LoadError { diagnostics })
        }
    }

    /// A short label of the applied variants: `classify.variant_1`, or `default`.
    pub fn variant_label(&self) -> String {
        let chosen: Vec<String> = self
            .selected_variants
            .iter()
            .filter(|(node, vid)| {
                self.node_variants
                    .get(*node)
                    .is_some_and(|nv| &nv.default_variant_id != *vid)
            })
            .map(|(node, vid)| format!("{node}.{vid}"))
            .collect();
        if chosen.is_empty() {
            "default".to_string()
        } else {
            chosen.join("+")
        }
    }
}
