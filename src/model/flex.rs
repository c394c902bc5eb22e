//! Flex flows (`entry: module:function`): the entry's signature, read by importing its module
//! once, gives the flow inputs when `inputs:` is not written, their types and defaults, and the
//! inputs of the flow's one node. A class entry is called through `__call__` on an instance made
//! with its init arguments ([`apply_init`]: `--init`, `sample.init`, `init:` defaults), checked
//! against `__init__` before anything runs; its `__aggregate__` becomes the flow's aggregation
//! node.

use serde_json::{Map, Value};

use super::load::LoadError;
use super::reference::{Reference, ValueSource};
use super::types::{Flow, FlowInput, ValueType};
use crate::python::{EntryError, EntryKind, describe_entry};

/// Read the entry's signature and fill the flow inputs and the entry node's inputs.
pub(crate) fn complete(flow: &mut Flow) -> Result<(), LoadError> {
    let Some(flex) = flow.flex.clone() else {
        return Ok(());
    };
    let refuse = |flow: &Flow, message: String, help: &str| {
        LoadError::one(flow.error_at("entry", message).with_help(help.to_string()))
    };
    let Some(file) = flow.resolve_file(&flex.file) else {
        return Err(refuse(
            flow,
            format!(
                "`entry: {}`: the module file {} does not exist",
                flex.entry,
                flex.file.display()
            ),
            "a module path is relative to the flow folder: `entry: flow:my_flow` is my_flow in flow.py",
        ));
    };
    let env: Vec<(String, String)> = flow
        .environment_variables
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let description = describe_entry(&flow.dir, &env, &file, &flex.function).map_err(|e| {
        let help = match &e {
            EntryError::Import { .. } => "fix the module so it imports (the traceback is above)",
            EntryError::NotFound { .. } => {
                "name a function (or a class with `__call__`) the module defines"
            }
            _ => "check the Python that flow runs (FLOW_PYTHON, else python3)",
        };
        let mut message = format!("`entry: {}`: {e}", flex.entry);
        if let EntryError::Import { traceback, .. } = &e {
            if !traceback.trim().is_empty() {
                message = format!("{message}\n{}", traceback.trim_end());
            }
        }
        refuse(flow, message, help)
    })?;
    if description.kind == EntryKind::Class {
        if let Some(f) = flow.flex.as_mut() {
            f.is_class = true;
            f.init_params = description.init_params.clone();
            f.init_accepts_kwargs = description.init_accepts_kwargs;
            f.aggregate_param = description
                .has_aggregate
                .then(|| description.aggregate_param.clone())
                .flatten();
        }
        if let (Some(param), Some(f)) = (
            description
                .has_aggregate
                .then(|| description.aggregate_param.clone())
                .flatten(),
            flow.flex.as_ref(),
        ) {
            let node = aggregate_node(f, &param);
            flow.nodes.push(node);
        }
    } else if !flex.init_spec.is_empty() {
        return Err(LoadError::one(
            flow.error_at_key("init", format!(
                "`init:` gives arguments for a class entry's `__init__`, but `entry: {}` is a function",
                flex.entry
            ))
            .with_help("remove `init:`, or make the entry a class with `__init__` and `__call__`"),
        ));
    }
    if let Some(p) = description
        .params
        .iter()
        .find(|p| p.connection_type.is_some())
    {
        return Err(refuse(
            flow,
            format!(
                "`entry: {}`: parameter `{}` is a connection ({}): promptflow passes a flex flow's inputs as they are (the connection's name as a string), it resolves connections only for a class entry's `__init__`",
                flex.entry,
                p.name,
                p.connection_type.as_deref().unwrap_or("?")
            ),
            "make the entry a class that takes the connection in `__init__` (`--init connection=NAME`), or read the endpoint and key from environment variables (docs/refusals.md)",
        ));
    }

    let mut problems = Vec::new();
    if !flex.declared_inputs {
        flow.inputs.clear();
        for p in &description.params {
            flow.inputs.insert(
                p.name.clone(),
                FlowInput {
                    name: p.name.clone(),
                    ty: ValueType::parse(&p.ty).unwrap_or(ValueType::Object),
                    default: p.has_default.then(|| p.default.clone()),
                    description: None,
                    allowed: None,
                    is_chat_input: false,
                    is_chat_history: false,
                },
            );
        }
    } else {
        for p in &description.params {
            match flow.inputs.get_mut(&p.name) {
                // The function's own default applies when the YAML gives none, or gives "" —
                // promptflow takes `default: ""` to mean the Python default (often `None`).
                Some(input)
                    if input.default.is_none()
                        || input.default == Some(Value::String(String::new())) =>
                {
                    input.default = p
                        .has_default
                        .then(|| input.ty.coerce(&p.default).unwrap_or(Value::Null));
                }
                Some(_) => {}
                None if !p.has_default => problems.push(
                    flow.error_at_key(
                        "inputs",
                        format!(
                            "the entry `{}` needs `{}`, which `inputs:` does not declare",
                            description.function, p.name
                        ),
                    )
                    .with_help(format!(
                        "add `{}: {{type: {}}}` under `inputs:`",
                        p.name, p.ty
                    )),
                ),
                None => {}
            }
        }
    }
    if !problems.is_empty() {
        return Err(LoadError {
            diagnostics: problems,
        });
    }
    let takes = |name: &str| {
        description.accepts_kwargs || description.params.iter().any(|p| p.name == name)
    };
    let node_inputs = flow
        .inputs
        .keys()
        .filter(|name| takes(name))
        .map(|name| {
            (
                name.clone(),
                ValueSource::Reference(Reference::FlowInput {
                    name: name.clone(),
                    path: Vec::new(),
                }),
            )
        })
        .collect();
    if let Some(node) = flow.nodes.first_mut() {
        node.inputs = node_inputs;
    }
    if let Some(f) = flow.flex.as_ref() {
        // A class whose `__init__` needs nothing (or `sample.init` gives it) is ready to run
        // without `--init`; otherwise the command that runs it applies the init it was given.
        let ready = f.is_class && init_problems(flow, f, &Map::new(), None).is_empty();
        if ready || !f.is_class {
            apply_init(flow, Map::new(), None).map_err(|diagnostics| LoadError { diagnostics })?;
        }
    }
    Ok(())
}

/// The aggregation node of a class entry with `__aggregate__`: one Python node, after all
/// lines, given the list of the succeeded lines' outputs.
fn aggregate_node(f: &super::types::FlexEntry, param: &str) -> super::types::Node {
    let mut node = super::load::flex_node(f);
    node.name = format!("{}.__aggregate__", f.function);
    node.function = Some(node.name.clone());
    node.aggregation = true;
    node.inputs = indexmap::IndexMap::from_iter([(
        param.to_string(),
        ValueSource::Reference(Reference::NodeOutput {
            node: f.function.clone(),
            path: Vec::new(),
        }),
    )]);
    node
}

/// Where the init arguments came from, for messages.
#[derive(Debug, Clone, Copy)]
pub enum InitSource<'a> {
    /// `--init` on the command line (`NAME=VALUE` or a JSON file).
    Flag,
    /// A JSON file (`--init init.json`).
    File(&'a std::path::Path),
    /// The `init:` of an experiment file (for the flow, or an evaluator's flow).
    Experiment(&'a std::path::Path),
}

/// Check `given` (the `--init` arguments; empty when none) against the class entry's
/// `__init__`, as promptflow makes it: no init given takes `sample.init`; `init:` defaults fill
/// what is missing; every key must be a parameter (unless `**kwargs`), every parameter without a
/// Python default must be given; `NAME=VALUE` strings are coerced to the annotation's type.
/// On success the flow's [`FlexEntry::init`](super::types::FlexEntry::init) is set.
pub fn apply_init(
    flow: &mut Flow,
    given: Map<String, Value>,
    source: Option<InitSource<'_>>,
) -> Result<(), Vec<crate::diagnostic::Diagnostic>> {
    let Some(f) = flow.flex.clone() else {
        return Ok(());
    };
    if !f.is_class {
        if given.is_empty() {
            if let Some(x) = flow.flex.as_mut() {
                x.init_applied = true;
            }
            return Ok(());
        }
        let what = match source {
            Some(InitSource::Experiment(p)) => format!("`init:` of {}", p.display()),
            _ => "--init".to_string(),
        };
        return Err(vec![
            flow.error_at("entry", format!(
                "{what} gives arguments for a class entry's `__init__`, but `entry: {}` is a function",
                f.entry
            ))
            .with_help(format!("remove {what}, or make the entry a class with `__init__` and `__call__`")),
        ]);
    }
    let problems = init_problems(flow, &f, &given, source);
    if !problems.is_empty() {
        return Err(problems);
    }
    let init = resolved_init(&f, given);
    if let Some(x) = flow.flex.as_mut() {
        x.init = init;
        x.init_applied = true;
    }
    Ok(())
}

/// The init a run uses: `given`, else `sample.init`; then `init:` defaults for what is missing;
/// a string for a typed parameter coerced to its type.
fn resolved_init(f: &super::types::FlexEntry, given: Map<String, Value>) -> Map<String, Value> {
    let mut init = if given.is_empty() {
        f.sample_init.clone().unwrap_or_default()
    } else {
        given
    };
    for (name, spec) in &f.init_spec {
        if let (false, Some(d)) = (init.contains_key(name), &spec.default) {
            if !d.is_null() {
                init.insert(name.clone(), d.clone());
            }
        }
    }
    for p in &f.init_params {
        if p.connection_type.is_some() || p.model_config.is_some() {
            continue;
        }
        let Some(ty) = ValueType::parse(&p.ty).filter(|t| *t != ValueType::String) else {
            continue;
        };
        if let Some(v) = init.get_mut(&p.name).filter(|v| v.is_string()) {
            if let Ok(c) = ty.coerce(v) {
                *v = c;
            }
        }
    }
    init
}

fn init_problems(
    flow: &Flow,
    f: &super::types::FlexEntry,
    given: &Map<String, Value>,
    source: Option<InitSource<'_>>,
) -> Vec<crate::diagnostic::Diagnostic> {
    use crate::diagnostic::Diagnostic;
    let init = resolved_init(f, given.clone());
    let names: Vec<&str> = f.init_params.iter().map(|p| p.name.as_str()).collect();
    let whence = match source {
        Some(InitSource::File(p)) => format!("{}", p.display()),
        Some(InitSource::Flag) => "--init".to_string(),
        Some(InitSource::Experiment(p)) => format!("`init:` of {}", p.display()),
        None if given.is_empty() && f.sample_init.is_some() => "`sample.init`".to_string(),
        None => "the init".to_string(),
    };
    let mut out = Vec::new();
    if !f.init_accepts_kwargs {
        for key in init.keys() {
            if names.contains(&key.as_str()) {
                continue;
            }
            let from_yaml = !given.contains_key(key) && f.init_spec.contains_key(key);
            let help = match super::closest(key, names.iter().copied()) {
                Some(c) => format!(
                    "did you mean `{c}`? `{}.__init__` takes: {}",
                    f.function,
                    list(&names)
                ),
                None => format!("`{}.__init__` takes: {}", f.function, list(&names)),
            };
            let message = format!(
                "{}: `{key}` is not a parameter of `{}.__init__`",
                if from_yaml {
                    "`init:`".to_string()
                } else {
                    whence.clone()
                },
                f.function
            );
            out.push(if from_yaml {
                flow.error_at_key(&format!("init.{key}"), message)
                    .with_help(help)
            } else {
                Diagnostic::error(message).with_help(help)
            });
        }
    }
    let missing: Vec<&str> = f
        .init_params
        .iter()
        .filter(|p| !p.has_default && !init.contains_key(&p.name))
        .map(|p| p.name.as_str())
        .collect();
    if !missing.is_empty() {
        let example = f
            .init_params
            .iter()
            .filter(|p| missing.contains(&p.name.as_str()))
            .map(|p| match (&p.connection_type, &p.model_config) {
                (Some(_), _) => format!("--init {}=CONNECTION_NAME", p.name),
                (_, Some(_)) => format!("--init init.json (with \"{}\": {{...}})", p.name),
                _ => format!("--init {}=VALUE", p.name),
            })
            .collect::<Vec<_>>()
            .join(" ");
        out.push(
            flow.error_at(
                "entry",
                if given.is_empty() && f.sample_init.is_none() {
                    format!(
                        "`entry: {}` is a class whose `__init__` needs {}, and no --init gives {}",
                        f.entry,
                        list(&missing),
                        if missing.len() == 1 { "it" } else { "them" }
                    )
                } else {
                    format!(
                        "`entry: {}` is a class whose `__init__` needs {}, which {whence} does not give",
                        f.entry,
                        list(&missing),
                    )
                },
            )
            .with_help(match source {
                Some(InitSource::Experiment(_)) => format!(
                    "add {} under `init:` in the experiment file (or a default under `init:` in the flow file)",
                    missing
                        .iter()
                        .map(|m| format!("`{m}: ...`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                _ => format!("give it: {example} (or a default under `init:` in the flow file)"),
            }),
        );
    }
    for p in &f.init_params {
        let Some(v) = init.get(&p.name) else { continue };
        if let Some(class) = &p.connection_type {
            if !v.is_string() {
                out.push(
                    Diagnostic::error(format!(
                        "{whence}: `{}` is a connection ({class}): give the connection's name, not {}",
                        p.name,
                        super::reference::type_name(v)
                    ))
                    .with_help(format!("--init {}=NAME (see `flow connections`)", p.name)),
                );
            }
        } else if let Some(class) = &p.model_config {
            let fields: &[&str] = if class == "AzureOpenAIModelConfiguration" {
                &[
                    "azure_deployment",
                    "azure_endpoint",
                    "api_version",
                    "api_key",
                    "connection",
                ]
            } else {
                &["model", "base_url", "api_key", "organization", "connection"]
            };
            match v {
                Value::Object(m) => {
                    for k in m.keys() {
                        if !fields.contains(&k.as_str()) {
                            out.push(
                                Diagnostic::error(format!(
                                    "{whence}: `{}` ({class}) has no field `{k}`",
                                    p.name
                                ))
                                .with_help(format!("its fields: {}", fields.join(", "))),
                            );
                        }
                    }
                }
                other => out.push(
                    Diagnostic::error(format!(
                        "{whence}: `{}` is a model configuration ({class}): give an object of its fields, not {}",
                        p.name,
                        super::reference::type_name(other)
                    ))
                    .with_help(format!(
                        "--init init.json holding {{\"{}\": {{\"{}\": \"...\", \"connection\": \"NAME\"}}}}",
                        p.name, fields[0]
                    )),
                ),
            }
        }
    }
    out
}

fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
