//! A `.prompty` file as a flow: one llm node whose prompt is the file's body (docs/flows.md).

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_json::Value;

use super::load::LoadError;
use super::locate::YamlIndex;
use super::reference::{Reference, ValueSource};
use super::types::*;
use crate::diagnostic::{Diagnostic, Location};
use crate::prompty::{self, Api, PromptyError};

/// The name of the single node of a prompty flow.
pub const PROMPTY_NODE: &str = "prompty";

/// Turn a `.prompty` file into a single-node flow. The connection is `model.configuration.
/// connection` when given, else `azure_openai` or `openai` by the configuration's `type` (so the
/// standard `AZURE_OPENAI_*` / `OPENAI_*` variables configure it).
pub fn flow_from_prompty(file: &Path, text: &str) -> Result<Flow, LoadError> {
    let p = prompty::parse(file, text).map_err(|e| LoadError::one(prompty_diagnostic(file, &e)))?;
    let samples = p.sample_values().ok().flatten().unwrap_or_default();
    let mut inputs = IndexMap::new();
    let mut node_inputs = IndexMap::new();
    for (name, input) in p.input_signature() {
        let ty = input
            .kind
            .as_deref()
            .and_then(ValueType::parse)
            .unwrap_or(ValueType::String);
        let default = input
            .default
            .clone()
            .or_else(|| samples.get(&name).cloned());
        node_inputs.insert(
            name.clone(),
            ValueSource::Reference(Reference::FlowInput {
                name: name.clone(),
                path: Vec::new(),
            }),
        );
        inputs.insert(
            name.clone(),
            FlowInput {
                name: name.clone(),
                ty,
                default,
                description: input.description.clone(),
                allowed: None,
                is_chat_input: false,
                is_chat_history: name == "chat_history",
            },
        );
    }
    let config = &p.model.configuration;
    if let Some(model) = config.model_name() {
        node_inputs.insert(
            "model".into(),
            ValueSource::Literal(Value::String(model.to_string())),
        );
    }
    if let Some(d) = &config.azure_deployment {
        node_inputs.insert(
            "deployment_name".into(),
            ValueSource::Literal(Value::String(d.clone())),
        );
    }
    for (k, v) in &p.model.parameters {
        node_inputs.insert(k.clone(), ValueSource::Literal(v.clone()));
    }
    let connection = config.connection.clone().unwrap_or_else(|| {
        match config.kind.as_deref() {
            Some("azure_openai") => "azure_openai",
            _ => "openai",
        }
        .to_string()
    });
    let node = Node {
        name: PROMPTY_NODE.to_string(),
        kind: NodeKind::Llm,
        source: PathBuf::from(file.file_name().unwrap_or_default()),
        function: None,
        package: None,
        inputs: node_inputs,
        connection: Some(connection),
        api: match p.model.api {
            Api::Chat => LlmApi::Chat,
            Api::Completion => LlmApi::Completion,
        },
        activate: None,
        aggregation: false,
        variant_id: None,
        yaml_path: "model".to_string(),
    };
    let mut outputs = IndexMap::new();
    outputs.insert(
        "output".to_string(),
        FlowOutput {
            name: "output".to_string(),
            // the whole response object with `model.response: all` (never streamed as text)
            ty: Some(if p.model.response_all {
                ValueType::Object
            } else {
                ValueType::String
            }),
            reference: ValueSource::Reference(Reference::NodeOutput {
                node: PROMPTY_NODE.to_string(),
                path: Vec::new(),
            }),
            description: None,
            is_chat_output: false,
        },
    );
    Ok(Flow {
        file: file.to_path_buf(),
        dir: super::load::flow_dir(file),
        inputs,
        outputs,
        nodes: vec![node],
        node_variants: IndexMap::new(),
        environment_variables: IndexMap::new(),
        additional_includes: Vec::new(),
        environment: None,
        description: p.description.clone(),
        display_name: Some(p.name.clone()),
        tags: None,
        flow_type: Some("prompty".into()),
        selected_variants: IndexMap::new(),
        flex: None,
        warnings: Vec::new(),
        message_format: crate::image::MessageFormat::Basic,
        index: YamlIndex::build(text),
    })
}

/// A prompty problem as a located diagnostic.
pub fn prompty_diagnostic(file: &Path, e: &PromptyError) -> Diagnostic {
    let location = match e {
        PromptyError::Template(t) => t.line().map(|l| Location::new(l, t.col().unwrap_or(1), 1)),
        _ => None,
    };
    let location = location.or_else(|| prompty_line(e).map(|(l, c)| Location::new(l, c, 1)));
    Diagnostic::error(e.to_string()).at(file, location)
}

fn prompty_line(e: &PromptyError) -> Option<(usize, usize)> {
    match e {
        PromptyError::Yaml {
            line: Some(line),
            col,
            ..
        } => Some((*line, col.unwrap_or(1))),
        PromptyError::UnclosedFrontMatter { line, .. } => Some((*line, 1)),
        _ => None,
    }
}
