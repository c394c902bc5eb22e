//! The DAG: which node waits for which, in what order nodes can run, and every structural
//! problem of a flow (unknown references, cycles, duplicate names, missing files) found at once.

use std::collections::HashMap;

use crate::diagnostic::Diagnostic;
use crate::model::{Flow, NodeKind, Reference, ValueSource, closest};

/// A validated flow graph, by index into `Flow::nodes`.
#[derive(Debug, Clone)]
pub struct Dag {
    /// Every node in a topological order (stable: file order among ready nodes).
    pub order: Vec<usize>,
    /// Line-level nodes in topological order.
    pub line_nodes: Vec<usize>,
    /// Aggregation nodes in topological order; they run once after all lines.
    pub aggregation_nodes: Vec<usize>,
    /// For each node, the nodes it references.
    pub deps: Vec<Vec<usize>>,
    /// For each node, the nodes that reference it.
    pub dependents: Vec<Vec<usize>>,
}

/// Build the DAG and check the flow's structure. Errors come back all together; warnings are
/// returned alongside a successful DAG.
pub fn build(flow: &Flow) -> Result<(Dag, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut diags: Vec<Diagnostic> = Vec::new();
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for (i, node) in flow.nodes.iter().enumerate() {
        if let Some(&first) = by_name.get(node.name.as_str()) {
            let first_loc = flow.locate(&flow.nodes[first].yaml_path);
            diags.push(
                flow.error_at(
                    &format!("{}.name", node.yaml_path),
                    format!("duplicate node name `{}`", node.name),
                )
                .with_label("second definition")
                .with_help(format!(
                    "node names must be unique; the first `{}` is at line {}",
                    node.name,
                    first_loc.map_or(0, |l| l.line)
                )),
            );
        } else {
            by_name.insert(&node.name, i);
        }
    }
    let node_names: Vec<&str> = flow.nodes.iter().map(|n| n.name.as_str()).collect();
    let input_names: Vec<&str> = flow.inputs.keys().map(String::as_str).collect();

    // References of every node input and activate condition.
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); flow.nodes.len()];
    for (i, node) in flow.nodes.iter().enumerate() {
        let mut refs: Vec<(String, &ValueSource)> = node
            .inputs
            .iter()
            .map(|(k, v)| (format!("{}.inputs.{k}", node.yaml_path), v))
            .collect();
        if let Some(a) = &node.activate {
            refs.push((format!("{}.activate.when", node.yaml_path), &a.when));
        }
        for (path, source) in refs {
            let ValueSource::Reference(reference) = source else {
                continue;
            };
            match reference {
                Reference::FlowInput { name, .. } => {
                    if !flow.inputs.contains_key(name) {
                        diags.push(unknown_input(flow, &path, reference, name, &input_names));
                    }
                }
                Reference::NodeOutput { node: target, .. } => match by_name.get(target.as_str()) {
                    None => diags.push(unknown_node(
                        flow,
                        &path,
                        reference,
                        target,
                        &node_names,
                        &input_names,
                    )),
                    Some(&j) => {
                        if flow.nodes[j].aggregation && !node.aggregation {
                            diags.push(
                                flow.error_at(&path, format!(
                                    "node `{}` references aggregation node `{target}`",
                                    node.name
                                ))
                                .with_label("aggregation output used per line")
                                .with_help("aggregation nodes run once after all lines, so only other aggregation nodes can use their output; mark this node `aggregation: true` or reference a line-level node"),
                            );
                        }
                        if !deps[i].contains(&j) {
                            deps[i].push(j);
                        }
                    }
                },
            }
        }
        if let Some(file) = missing_source(flow, i) {
            diags.push(file);
        }
    }
    diags.extend(outside_project(flow));

    for (name, output) in &flow.outputs {
        let path = format!("outputs.{name}.reference");
        if let ValueSource::Reference(reference) = &output.reference {
            match reference {
                Reference::FlowInput { name: input, .. } => {
                    if !flow.inputs.contains_key(input) {
                        diags.push(unknown_input(flow, &path, reference, input, &input_names));
                    }
                }
                Reference::NodeOutput { node, .. } => match by_name.get(node.as_str()) {
                    None => diags.push(unknown_node(flow, &path, reference, node, &node_names, &input_names)),
                    // promptflow leaves such an output out with a warning ("will not take
                    // effect"): so does flow (`Flow::line_outputs`), loudly.
                    Some(&j) if flow.nodes[j].aggregation => diags.push(
                        Diagnostic::warning(format!("flow output `{name}` references aggregation node `{node}`: it is left out of every line's outputs, as promptflow leaves it out"))
                            .at(&flow.file, flow.locate(&path))
                            .with_help("flow outputs are per line; record an aggregation's results as metrics with log_metric, and remove this output"),
                    ),
                    Some(_) => {}
                },
            }
        }
    }

    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); flow.nodes.len()];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    let order = match topological_order(&deps) {
        Ok(order) => order,
        Err(remaining) => {
            let cycle = find_cycle(&deps, &remaining);
            let names: Vec<&str> = cycle.iter().map(|&i| flow.nodes[i].name.as_str()).collect();
            let first = cycle.first().copied().unwrap_or(0);
            let second = cycle.get(1).copied().unwrap_or(first);
            // Point at the input of the first node that references the next node in the cycle.
            let node = &flow.nodes[first];
            let path = node
                .inputs
                .iter()
                .find(|(_, v)| v.node() == Some(flow.nodes[second].name.as_str()))
                .map(|(k, _)| format!("{}.inputs.{k}", node.yaml_path))
                .unwrap_or_else(|| format!("{}.activate.when", node.yaml_path));
            diags.push(
                flow.error_at(&path, format!("the flow has a cycle: {}", names.join(" → ")))
                    .with_label("this reference closes the cycle")
                    .with_help("a node cannot depend, directly or through others, on itself: remove one of these references"),
            );
            Vec::new()
        }
    };

    let (errors, warnings): (Vec<Diagnostic>, Vec<Diagnostic>) =
        diags.into_iter().partition(Diagnostic::is_error);
    if !errors.is_empty() {
        let mut all = errors;
        all.extend(warnings);
        return Err(all);
    }
    let (aggregation_nodes, line_nodes) = order.iter().partition(|&&i| flow.nodes[i].aggregation);
    Ok((
        Dag {
            order,
            line_nodes,
            aggregation_nodes,
            deps,
            dependents,
        },
        warnings,
    ))
}

fn unknown_input(
    flow: &Flow,
    path: &str,
    reference: &Reference,
    name: &str,
    inputs: &[&str],
) -> Diagnostic {
    let help = match closest(name, inputs.iter().copied()) {
        Some(c) => format!("did you mean `${{inputs.{c}}}`?"),
        None if inputs.is_empty() => {
            format!("the flow has no inputs; declare `{name}` under `inputs:`")
        }
        None => format!(
            "declare `{name}` under `inputs:`, or use one of: {}",
            inputs.join(", ")
        ),
    };
    flow.error_at(
        path,
        format!("`{reference}` references unknown flow input `{name}`"),
    )
    .with_label("unknown input")
    .with_help(help)
}

fn unknown_node(
    flow: &Flow,
    path: &str,
    reference: &Reference,
    name: &str,
    nodes: &[&str],
    inputs: &[&str],
) -> Diagnostic {
    let help = match closest(name, nodes.iter().copied()) {
        Some(c) => format!("did you mean `${{{c}.output}}`?"),
        None if inputs.contains(&name) => {
            format!("`{name}` is a flow input: write `${{inputs.{name}}}`")
        }
        None => format!("nodes are: {}", nodes.join(", ")),
    };
    flow.error_at(
        path,
        format!("`{reference}` references unknown node `{name}`"),
    )
    .with_label("unknown node")
    .with_help(help)
}

/// Files the flow reads that resolve (through `..` or symlinks) outside its project: refused,
/// so a flow can neither read nor ship files from elsewhere on the machine.
fn outside_project(flow: &Flow) -> Vec<Diagnostic> {
    let root = crate::project::root_of(&flow.dir);
    let refuse = |yaml_path: String, what: String, real: std::path::PathBuf| {
        flow.error_at(
            &yaml_path,
            format!(
                "{what} resolves to {}, outside the project {}",
                real.display(),
                root.display()
            ),
        )
        .with_label("outside the project")
        .with_help(
            "copy the file into the project (the project is the nearest folder holding .git, .flow or flow.toml)",
        )
    };
    let mut out = Vec::new();
    for node in &flow.nodes {
        if !node.source.as_os_str().is_empty()
            && let Some(path) = flow.resolve_file(&node.source)
            && let Some(real) = crate::project::outside(&path, &root)
        {
            out.push(refuse(
                format!("{}.source.path", node.yaml_path),
                format!("node `{}`: source `{}`", node.name, node.source.display()),
                real,
            ));
        }
    }
    for (i, include) in flow.additional_includes.iter().enumerate() {
        if let Some(real) = crate::project::outside(&flow.dir.join(include), &root) {
            out.push(refuse(
                format!("additional_includes[{i}]"),
                format!("additional include `{include}`"),
                real,
            ));
        }
    }
    out
}

fn missing_source(flow: &Flow, i: usize) -> Option<Diagnostic> {
    let node = &flow.nodes[i];
    let packaged = node.package.is_some() && node.source.as_os_str().is_empty();
    if packaged || flow.resolve_file(&node.source).is_some() {
        return None;
    }
    let expected = match node.kind {
        NodeKind::Python => "a Python file with a @tool function",
        NodeKind::Llm | NodeKind::Prompt => "a Jinja2 prompt template",
    };
    Some(
        flow.error_at(
            &format!("{}.source.path", node.yaml_path),
            format!(
                "node `{}`: source file `{}` does not exist",
                node.name,
                node.source.display()
            ),
        )
        .with_label("missing file")
        .with_help(format!(
            "create {} at {}, or fix the path (it is relative to {})",
            expected,
            flow.dir.join(&node.source).display(),
            flow.dir.display()
        )),
    )
}

/// Kahn's algorithm, taking ready nodes in file order. On a cycle, returns the nodes left.
fn topological_order(deps: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let n = deps.len();
    let mut pending: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    let mut done = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while let Some(next) = (0..n).find(|&i| !done[i] && pending[i] == 0) {
        done[next] = true;
        order.push(next);
        for &d in &dependents[next] {
            pending[d] -= 1;
        }
    }
    if order.len() == n {
        Ok(order)
    } else {
        Err((0..n).filter(|&i| !done[i]).collect())
    }
}

/// A cycle among `remaining` nodes, as a closed path (first node repeated at the end).
fn find_cycle(deps: &[Vec<usize>], remaining: &[usize]) -> Vec<usize> {
    let Some(&start) = remaining.first() else {
        return Vec::new();
    };
    // Walk dependencies inside the remaining set until a node repeats.
    let mut path = vec![start];
    let mut current = start;
    loop {
        let Some(&next) = deps[current].iter().find(|d| remaining.contains(d)) else {
            return path;
        };
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let mut cycle = path[pos..].to_vec();
            cycle.push(next);
            // Present the cycle in dependency direction: a depends on b depends on ... a.
            return cycle;
        }
        path.push(next);
        current = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_flow;
    use std::path::Path;

    fn flow(yaml: &str) -> Flow {
        parse_flow(Path::new("/nonexistent/flow.dag.yaml"), yaml).expect("parses")
    }

    fn errors(yaml: &str) -> Vec<String> {
        match build(&flow(yaml)) {
            Ok(_) => Vec::new(),
            Err(d) => d
                .iter()
                .filter(|d| d.is_error())
                .map(|d| d.to_string())
                .collect(),
        }
    }

    #[test]
    fn orders_topologically_and_names_cycles() {
        let yaml = "inputs: {q: {type: string}}\noutputs: {}\nnodes:\n- {name: a, type: python, source: {type: code, path: a.py}, inputs: {x: '${b.output}'}}\n- {name: b, type: python, source: {type: code, path: b.py}, inputs: {x: '${c.output}'}}\n- {name: c, type: python, source: {type: code, path: c.py}, inputs: {x: '${a.output}'}}\n";
        let errs = errors(yaml);
        assert!(
            errs.iter().any(|e| e.contains("cycle: a → b → c → a")),
            "{errs:?}"
        );
        assert_eq!(
            topological_order(&[vec![1], vec![], vec![0, 1]]).unwrap(),
            vec![1, 0, 2]
        );
    }

    #[test]
    fn unknown_references_suggest_the_closest_name() {
        let yaml = "inputs: {question: {type: string}}\noutputs: {o: {reference: '${anser.output}'}}\nnodes:\n- {name: answer, type: python, source: {type: code, path: a.py}, inputs: {x: '${inputs.questoin}'}}\n";
        let errs = errors(yaml);
        assert!(
            errs.iter()
                .any(|e| e.contains("unknown flow input `questoin`")
                    && e.contains("did you mean `${inputs.question}`")),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| e.contains("unknown node `anser`")
                && e.contains("did you mean `${answer.output}`")),
            "{errs:?}"
        );
    }
}
