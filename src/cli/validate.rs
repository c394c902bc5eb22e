//! `flow validate FLOW`: every problem at once, then the DAG in the order it runs.

use std::path::PathBuf;

use clap::Args;

use super::common::{load_flow, parse_variants};
use super::output::{Failure, bold, dim, print_warnings, stdout_is_terminal};
use flow::model::{Flow, ValueSource};

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The flow: a directory holding flow.dag.yaml, the YAML file, or a .prompty file.
    pub flow: PathBuf,
    /// Check with a variant applied: '${node.variant_id}' (repeatable).
    #[arg(long, value_name = "${NODE.VARIANT}")]
    pub variant: Vec<String>,
}

pub fn run(args: ValidateArgs) -> Result<(), Failure> {
    let selections = parse_variants(&args.variant)?;
    let flow = load_flow(&args.flow, &selections)?;
    let (dag, warnings) = flow::dag::build(&flow).map_err(|d| Failure::diagnostics(&d))?;
    let template_problems = flow::executor::check_templates(&flow);
    if template_problems.iter().any(|d| d.is_error()) {
        return Err(Failure::diagnostics(&template_problems));
    }
    print_warnings(&warnings);
    print_warnings(&template_problems);
    match &flow.flex {
        Some(flex) => print_flex(&flow, flex),
        None => print_dag(&flow, &dag),
    }
    Ok(())
}

/// A flex flow: its entry, the inputs it takes (with defaults) and what becomes its outputs.
fn print_flex(flow: &Flow, flex: &flow::model::FlexEntry) {
    let color = stdout_is_terminal();
    outln!("{} is valid", bold(&flow.file.display().to_string(), color));
    let what = if flex.is_class
        && flex.init.is_empty()
        && flex.init_params.iter().all(|p| p.has_default)
    {
        format!(
            "class {} in {}, made without arguments, called through __call__",
            flex.function,
            flex.file.display()
        )
    } else if flex.is_class {
        format!(
            "class {} in {}, made with its init arguments, called through __call__",
            flex.function,
            flex.file.display()
        )
    } else {
        format!("function {} in {}", flex.function, flex.file.display())
    };
    outln!("flex flow, entry: {} ({what})", flex.entry);
    if !flex.init_params.is_empty() {
        let params: Vec<String> = flex
            .init_params
            .iter()
            .map(|p| {
                let kind = match (&p.connection_type, &p.model_config) {
                    (Some(c), _) => format!("connection name, {c}"),
                    (_, Some(m)) => format!("object, {m}"),
                    _ => p.ty.clone(),
                };
                let default = flex
                    .init_spec
                    .get(&p.name)
                    .and_then(|s| s.default.clone())
                    .or_else(|| p.has_default.then(|| p.default.clone()));
                match default {
                    Some(d) => format!("{} ({kind}, default {d})", p.name),
                    None => format!("{} ({kind}, required)", p.name),
                }
            })
            .collect();
        outln!("init (--init): {}", params.join(", "));
    }
    if let Some(param) = &flex.aggregate_param {
        outln!(
            "aggregation: {}.__aggregate__({param}) over the succeeded lines' outputs; a returned dict is the run's metrics",
            flex.function
        );
    }
    let inputs: Vec<String> = flow
        .inputs
        .values()
        .map(|i| match &i.default {
            Some(d) => format!("{} ({}, default {d})", i.name, i.ty.name()),
            None => format!("{} ({})", i.name, i.ty.name()),
        })
        .collect();
    outln!(
        "inputs{}: {}",
        if flex.declared_inputs {
            ""
        } else {
            " (from the signature)"
        },
        if inputs.is_empty() {
            "(none)".to_string()
        } else {
            inputs.join(", ")
        }
    );
    let declared: Vec<String> = flex
        .declared_outputs
        .iter()
        .map(|(name, ty)| match ty {
            Some(t) => format!("{name} ({})", t.name()),
            None => name.clone(),
        })
        .collect();
    outln!(
        "outputs: what {} returns (a dict's keys, a dataclass's fields, else `output`){}",
        flex.function,
        if declared.is_empty() {
            String::new()
        } else {
            format!("; declared: {}", declared.join(", "))
        }
    );
}

fn print_dag(flow: &Flow, dag: &flow::dag::Dag) {
    let color = stdout_is_terminal();
    outln!("{} is valid", bold(&flow.file.display().to_string(), color));
    if !flow.inputs.is_empty() {
        let inputs: Vec<String> = flow
            .inputs
            .values()
            .map(|i| format!("{} ({})", i.name, i.ty.name()))
            .collect();
        outln!("inputs: {}", inputs.join(", "));
    }
    outln!("nodes, in the order they run:");
    let width = flow.nodes.iter().map(|n| n.name.len()).max().unwrap_or(0);
    for (pos, &i) in dag.order.iter().enumerate() {
        let node = &flow.nodes[i];
        let mut tags = vec![node.kind.name().to_string()];
        if node.aggregation {
            tags.push("aggregation".into());
        }
        if let Some(v) = &node.variant_id {
            tags.push(format!("variant {v}"));
        }
        if node.activate.is_some() {
            tags.push("conditional".into());
        }
        let deps: Vec<String> = node
            .inputs
            .values()
            .filter_map(|s| match s {
                ValueSource::Reference(r) => Some(r.to_string()),
                ValueSource::Literal(_) => None,
            })
            .collect();
        outln!(
            "  {:>2}. {:<width$}  {:<28} {}",
            pos + 1,
            node.name,
            tags.join(", "),
            dim(
                &format!(
                    "{}{}",
                    node.source.display(),
                    if deps.is_empty() {
                        String::new()
                    } else {
                        format!(" ← {}", deps.join(", "))
                    }
                ),
                color
            ),
        );
    }
    if !flow.outputs.is_empty() {
        let outputs: Vec<String> = flow
            .outputs
            .values()
            .map(|o| match &o.reference {
                ValueSource::Reference(r) => format!("{} ← {r}", o.name),
                ValueSource::Literal(v) => format!("{} = {v}", o.name),
            })
            .collect();
        outln!("outputs: {}", outputs.join(", "));
    }
    if !flow.node_variants.is_empty() {
        for (node, nv) in &flow.node_variants {
            let ids: Vec<String> = nv
                .variants
                .keys()
                .map(|k| {
                    if k == &nv.default_variant_id {
                        format!("{k} (default)")
                    } else {
                        k.clone()
                    }
                })
                .collect();
            outln!("variants of {node}: {}", ids.join(", "));
        }
    }
}
