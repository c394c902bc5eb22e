//! Flex flows (`entry: module:function`): the entry's signature, read by importing its module
//! once, gives the flow inputs when `inputs:` is not written, their types and defaults, and the
//! inputs of the flow's one node. A class entry is called through `__call__` on an instance made
//! without arguments; one whose `__init__` needs arguments, or with `__aggregate__`, is refused
//! here, at `entry`.

use serde_json::Value;

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
        let required: Vec<&str> = description
            .init_params
            .iter()
            .filter(|p| !p.has_default)
            .map(|p| p.name.as_str())
            .collect();
        if !required.is_empty() {
            return Err(refuse(
                flow,
                format!(
                    "`entry: {}` is a class whose `__init__` needs {}: init arguments (`--init`, `init:`) are not supported yet; a class entry is made without arguments",
                    flex.entry,
                    required
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "give those parameters defaults, make the entry a function, or run the flow with promptflow's `pf` (docs/refusals.md)",
            ));
        }
        if let Some(f) = flow.flex.as_mut() {
            f.is_class = true;
        }
        if description.has_aggregate {
            return Err(refuse(
                flow,
                format!(
                    "`entry: {}` defines `__aggregate__`: aggregation of a class entry is not supported yet",
                    flex.entry
                ),
                "remove `__aggregate__` (compute the aggregate over the run's outputs with an evaluation flow), or use promptflow's `pf` (docs/refusals.md)",
            ));
        }
    }
    if let Some(p) = description
        .params
        .iter()
        .find(|p| p.connection_type.is_some())
    {
        return Err(refuse(
            flow,
            format!(
                "`entry: {}`: parameter `{}` is a connection ({}): connections reach a flex flow through a class entry's `init`, which flow does not run yet",
                flex.entry,
                p.name,
                p.connection_type.as_deref().unwrap_or("?")
            ),
            "read the endpoint and key from environment variables in the function, or run the flow with promptflow's `pf` (docs/refusals.md)",
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
    Ok(())
}
