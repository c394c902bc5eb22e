//! Which variants an experiment runs. Each node with `node_variants` (or a sweep) has a list of
//! choices: its default first, then its other variants, then its sweep points. A selection
//! turns them into variant plans, one run per plan and dataset:
//!
//! - `default`: one plan, every node at its default;
//! - `all`: the default plan, plus each non-default choice of each node with the other nodes
//!   at their defaults (what the GenAIOps template runs);
//! - a list of ids (`classify.variant_1`, `summarize.variant_1+classify.variant_1`,
//!   `classify.temperature=0.7`): exactly those plans;
//! - combinations: the cartesian product of the choices of every node with choices, or of a
//!   listed subset (the other nodes at their defaults).

use indexmap::IndexMap;
use serde_json::Value as Json;

use super::file::SweepDef;
use crate::diagnostic::Diagnostic;
use crate::model::{Flow, ValueSource, VariantSelection};

/// One node's choice: a variant body, possibly with swept parameters on top.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeChoice {
    pub node: String,
    /// The `node_variants` id whose body is used (`None`: a node without variants).
    pub variant_id: Option<String>,
    /// Node inputs overridden by a sweep.
    pub parameters: IndexMap<String, Json>,
    /// Readable id: `classify.variant_1`, `classify.temperature=0.7`.
    pub id: String,
    /// The node as the flow runs it by default.
    pub is_default: bool,
}

/// One flow configuration to run: the non-default node choices (none for `default`).
#[derive(Debug, Clone, PartialEq)]
pub struct VariantPlan {
    /// `default`, or the choices' ids joined with `+`.
    pub id: String,
    pub choices: Vec<NodeChoice>,
}

impl VariantPlan {
    fn of(mut choices: Vec<NodeChoice>) -> VariantPlan {
        choices.retain(|c| !c.is_default);
        let id = if choices.is_empty() {
            "default".to_string()
        } else {
            choices
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>()
                .join("+")
        };
        VariantPlan { id, choices }
    }

    /// The `${node.variant}` selections to load the flow with.
    pub fn selections(&self) -> Vec<VariantSelection> {
        self.choices
            .iter()
            .filter_map(|c| {
                c.variant_id.as_ref().map(|v| VariantSelection {
                    node: c.node.clone(),
                    variant_id: v.clone(),
                })
            })
            .collect()
    }

    /// Lay the swept parameters over the nodes of `flow` (variants already applied).
    pub fn apply_parameters(&self, flow: &mut Flow) {
        for c in &self.choices {
            if let Some(node) = flow.nodes.iter_mut().find(|n| n.name == c.node) {
                for (k, v) in &c.parameters {
                    node.inputs
                        .insert(k.clone(), ValueSource::Literal(v.clone()));
                }
            }
        }
    }

    /// The swept parameters per node, for the applied YAML.
    pub fn parameters(&self) -> IndexMap<String, IndexMap<String, Json>> {
        self.choices
            .iter()
            .filter(|c| !c.parameters.is_empty())
            .map(|c| (c.node.clone(), c.parameters.clone()))
            .collect()
    }
}

/// Every node's choices, default first, in the flow's node order.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub nodes: IndexMap<String, Vec<NodeChoice>>,
}

impl Catalog {
    /// The choices of `flow` (loaded without variants applied) and its sweeps.
    pub fn new(flow: &Flow, sweeps: &[SweepDef]) -> Result<Catalog, Vec<Diagnostic>> {
        let mut nodes: IndexMap<String, Vec<NodeChoice>> = IndexMap::new();
        for node in &flow.nodes {
            if let Some(nv) = flow.node_variants.get(&node.name) {
                let mut choices = vec![NodeChoice {
                    node: node.name.clone(),
                    variant_id: Some(nv.default_variant_id.clone()),
                    parameters: IndexMap::new(),
                    id: format!("{}.{}", node.name, nv.default_variant_id),
                    is_default: true,
                }];
                for vid in nv.variants.keys() {
                    if vid != &nv.default_variant_id {
                        choices.push(NodeChoice {
                            node: node.name.clone(),
                            variant_id: Some(vid.clone()),
                            parameters: IndexMap::new(),
                            id: format!("{}.{vid}", node.name),
                            is_default: false,
                        });
                    }
                }
                nodes.insert(node.name.clone(), choices);
            }
        }
        let mut diagnostics = Vec::new();
        for sweep in sweeps {
            match super::sweep::expand(flow, sweep) {
                Ok(points) => {
                    let entry = nodes.entry(sweep.node.clone()).or_insert_with(|| {
                        vec![NodeChoice {
                            node: sweep.node.clone(),
                            variant_id: None,
                            parameters: IndexMap::new(),
                            id: sweep.node.clone(),
                            is_default: true,
                        }]
                    });
                    for p in points {
                        if !entry.iter().any(|c| c.id == p.id) {
                            entry.push(p);
                        }
                    }
                }
                Err(d) => diagnostics.push(*d),
            }
        }
        // Keep the flow's node order for nodes that only have sweeps.
        let order: Vec<&str> = flow.nodes.iter().map(|n| n.name.as_str()).collect();
        nodes.sort_by_key(|name, _| order.iter().position(|n| n == name).unwrap_or(usize::MAX));
        if diagnostics.is_empty() {
            Ok(Catalog { nodes })
        } else {
            Err(diagnostics)
        }
    }

    /// Every choice id, for messages.
    pub fn ids(&self) -> Vec<&str> {
        self.nodes
            .values()
            .flatten()
            .map(|c| c.id.as_str())
            .collect()
    }

    fn find(&self, id: &str) -> Option<&NodeChoice> {
        let id = id.trim();
        let id = id
            .strip_prefix("${")
            .and_then(|x| x.strip_suffix('}'))
            .unwrap_or(id);
        self.nodes.values().flatten().find(|c| c.id == id)
    }
}

/// How variants are selected.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    Default,
    All,
    /// Plan ids: each one run (`a.v1+b.v2` combines nodes).
    List(Vec<String>),
    /// The cartesian product over every node with choices (`None`) or the listed nodes.
    Combinations(Option<Vec<String>>),
}

impl Selection {
    /// Parse `--variants` values: `default`, `all`, or comma-separated ids (several flags add
    /// up). A sweep id's own commas (`classify.temperature=0.7,model=gpt-4o`) stay inside it.
    pub fn parse(values: &[String]) -> Selection {
        let items: Vec<String> = values.iter().flat_map(|v| split_list(v)).collect();
        match items.as_slice() {
            [one] if one == "default" => Selection::Default,
            [one] if one == "all" => Selection::All,
            _ => Selection::List(items),
        }
    }
}

/// Split `a.v1,b.temperature=0.7,model=x,c.v2` into ids: a piece whose text before `=` has no
/// `.` (`model=x`) continues the sweep id before it.
pub fn split_list(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for piece in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let continues = piece
            .split_once('=')
            .is_some_and(|(before, _)| !before.contains('.'));
        match out.last_mut() {
            Some(last) if continues && last.contains('=') => {
                last.push(',');
                last.push_str(piece);
            }
            _ => out.push(piece.to_string()),
        }
    }
    out
}

/// Why a selection cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("unknown variant `{id}`{}", suggestion(.closest))]
    UnknownVariant {
        id: String,
        closest: Option<String>,
        known: Vec<String>,
    },
    #[error("no variant selected")]
    Empty { known: Vec<String> },
    #[error("`{plan}` chooses node `{node}` twice")]
    NodeTwice { plan: String, node: String },
    #[error("combinations: node `{node}` has no variants or sweeps{}", suggestion(.closest))]
    UnknownNode {
        node: String,
        closest: Option<String>,
        known: Vec<String>,
    },
}

impl crate::error::Classify for PlanError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Config
    }
}

fn suggestion(closest: &Option<String>) -> String {
    closest
        .as_ref()
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

impl PlanError {
    /// How to fix it.
    pub fn help(&self) -> String {
        match self {
            PlanError::UnknownVariant { known, .. } => format!("variants: {}", known.join(", ")),
            PlanError::Empty { known } => format!(
                "give `default`, `all` or variant ids; variants: {}",
                known.join(", ")
            ),
            PlanError::NodeTwice { .. } => "combine different nodes with `+`".into(),
            PlanError::UnknownNode { known, .. } => {
                format!("nodes with variants or sweeps: {}", known.join(", "))
            }
        }
    }
}

/// The plans a selection runs, without duplicates, in a stable order.
pub fn plan(catalog: &Catalog, selection: &Selection) -> Result<Vec<VariantPlan>, PlanError> {
    let mut plans: Vec<VariantPlan> = Vec::new();
    let mut push = |p: VariantPlan| {
        if !plans.iter().any(|q| q.id == p.id) {
            plans.push(p);
        }
    };
    match selection {
        Selection::Default => push(VariantPlan::of(Vec::new())),
        Selection::All => {
            push(VariantPlan::of(Vec::new()));
            for choices in catalog.nodes.values() {
                for c in choices.iter().filter(|c| !c.is_default) {
                    push(VariantPlan::of(vec![c.clone()]));
                }
            }
        }
        Selection::List(ids) => {
            for id in ids {
                if id == "default" {
                    push(VariantPlan::of(Vec::new()));
                    continue;
                }
                let mut choices: Vec<NodeChoice> = Vec::new();
                for part in id.split('+') {
                    let Some(c) = catalog.find(part) else {
                        let known: Vec<String> =
                            catalog.ids().iter().map(|s| s.to_string()).collect();
                        return Err(PlanError::UnknownVariant {
                            id: part.trim().to_string(),
                            closest: crate::model::closest(part.trim(), catalog.ids())
                                .map(str::to_string),
                            known,
                        });
                    };
                    if choices.iter().any(|x| x.node == c.node) {
                        return Err(PlanError::NodeTwice {
                            plan: id.clone(),
                            node: c.node.clone(),
                        });
                    }
                    choices.push(c.clone());
                }
                // Node order of the flow, whatever order the id was written in.
                let order: Vec<&String> = catalog.nodes.keys().collect();
                choices.sort_by_key(|c| order.iter().position(|n| **n == c.node));
                push(VariantPlan::of(choices));
            }
        }
        Selection::Combinations(nodes) => {
            let names: Vec<String> = match nodes {
                None => catalog
                    .nodes
                    .iter()
                    .filter(|(_, c)| c.len() > 1)
                    .map(|(n, _)| n.clone())
                    .collect(),
                Some(list) => {
                    for n in list {
                        if !catalog.nodes.contains_key(n) {
                            let known: Vec<String> = catalog.nodes.keys().cloned().collect();
                            return Err(PlanError::UnknownNode {
                                node: n.clone(),
                                closest: crate::model::closest(
                                    n,
                                    catalog.nodes.keys().map(String::as_str),
                                )
                                .map(str::to_string),
                                known,
                            });
                        }
                    }
                    // Flow order.
                    catalog
                        .nodes
                        .keys()
                        .filter(|k| list.contains(k))
                        .cloned()
                        .collect()
                }
            };
            let mut partial: Vec<Vec<NodeChoice>> = vec![Vec::new()];
            for name in &names {
                let choices = &catalog.nodes[name];
                let mut next = Vec::with_capacity(partial.len() * choices.len());
                for p in &partial {
                    for c in choices {
                        let mut q = p.clone();
                        q.push(c.clone());
                        next.push(q);
                    }
                }
                partial = next;
            }
            for p in partial {
                push(VariantPlan::of(p));
            }
        }
    }
    if plans.is_empty() {
        return Err(PlanError::Empty {
            known: catalog.ids().iter().map(|s| s.to_string()).collect(),
        });
    }
    Ok(plans)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(node: &str, vid: &str, default: bool) -> NodeChoice {
        NodeChoice {
            node: node.into(),
            variant_id: Some(vid.into()),
            parameters: IndexMap::new(),
            id: format!("{node}.{vid}"),
            is_default: default,
        }
    }

    fn catalog() -> Catalog {
        let mut nodes = IndexMap::new();
        nodes.insert(
            "summarize".to_string(),
            vec![
                choice("summarize", "v0", true),
                choice("summarize", "v1", false),
            ],
        );
        let mut swept = choice("classify", "v0", false);
        swept.id = "classify.temperature=0.7,model=m".into();
        swept
            .parameters
            .insert("temperature".into(), serde_json::json!(0.7));
        nodes.insert(
            "classify".to_string(),
            vec![
                choice("classify", "v0", true),
                choice("classify", "v1", false),
                choice("classify", "v2", false),
                swept,
            ],
        );
        Catalog { nodes }
    }

    fn ids(plans: &[VariantPlan]) -> Vec<&str> {
        plans.iter().map(|p| p.id.as_str()).collect()
    }

    #[test]
    fn all_runs_each_choice_with_the_others_at_default() {
        let plans = plan(&catalog(), &Selection::All).unwrap();
        assert_eq!(
            ids(&plans),
            [
                "default",
                "summarize.v1",
                "classify.v1",
                "classify.v2",
                "classify.temperature=0.7,model=m"
            ]
        );
    }

    #[test]
    fn combinations_are_the_product_over_nodes_or_a_subset() {
        let plans = plan(&catalog(), &Selection::Combinations(None)).unwrap();
        assert_eq!(plans.len(), 2 * 4);
        assert!(ids(&plans).contains(&"summarize.v1+classify.v2"));
        assert_eq!(plans[0].id, "default");
        let only = plan(
            &catalog(),
            &Selection::Combinations(Some(vec!["summarize".into()])),
        )
        .unwrap();
        assert_eq!(ids(&only), ["default", "summarize.v1"]);
        let bad = plan(
            &catalog(),
            &Selection::Combinations(Some(vec!["clasify".into()])),
        );
        assert!(
            bad.unwrap_err()
                .to_string()
                .contains("did you mean `classify`")
        );
    }

    #[test]
    fn a_list_names_plans_and_sweep_ids_keep_their_commas() {
        let sel = Selection::parse(&[
            "classify.v1,classify.temperature=0.7,model=m".into(),
            "classify.v2+summarize.v1".into(),
        ]);
        let plans = plan(&catalog(), &sel).unwrap();
        assert_eq!(
            ids(&plans),
            [
                "classify.v1",
                "classify.temperature=0.7,model=m",
                "summarize.v1+classify.v2"
            ]
        );
        let sel = Selection::parse(&["classify.v9".into()]);
        let err = plan(&catalog(), &sel).unwrap_err();
        assert!(err.to_string().contains("unknown variant `classify.v9`"));
        assert!(err.help().contains("classify.v1"));
        assert_eq!(Selection::parse(&["all".into()]), Selection::All);
        let none = plan(&catalog(), &Selection::parse(&[" , ".into()]));
        assert!(matches!(none, Err(PlanError::Empty { .. })));
        assert_eq!(Selection::parse(&["default".into()]), Selection::Default);
    }

    #[test]
    fn a_default_choice_in_a_list_is_the_default_plan() {
        let plans = plan(&catalog(), &Selection::parse(&["classify.v0".into()])).unwrap();
        assert_eq!(ids(&plans), ["default"]);
    }
}
