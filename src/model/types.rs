//! The typed flow definition: what `flow.dag.yaml` says, after loading.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_json::{Map, Value};

use super::locate::YamlIndex;
use super::reference::ValueSource;
use crate::diagnostic::{Diagnostic, Location};

/// The type of a flow input or output (promptflow's `ValueType`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueType {
    String,
    Int,
    Double,
    Bool,
    List,
    Object,
    /// promptflow's `image`: passed through as given.
    Image,
}

impl ValueType {
    /// Every spelling accepted in `type:`.
    pub const NAMES: &'static [&'static str] =
        &["string", "int", "double", "bool", "list", "object", "image"];

    /// Parse a `type:` value.
    pub fn parse(name: &str) -> Option<ValueType> {
        Some(match name {
            "string" | "str" => ValueType::String,
            "int" => ValueType::Int,
            "double" | "float" => ValueType::Double,
            "bool" => ValueType::Bool,
            "list" => ValueType::List,
            "object" => ValueType::Object,
            "image" => ValueType::Image,
            _ => return None,
        })
    }

    /// Coerce a value to this type as promptflow does: numbers parse from strings, booleans from
    /// `true`/`false` in any case, lists and objects from JSON strings.
    pub fn coerce(&self, v: &Value) -> Result<Value, String> {
        let fail = || Err(format!("{} is not a valid {}", short(v), self.name()));
        match self {
            ValueType::String => Ok(match v {
                // Python's `str(float("nan"))`
                Value::String(_) => match crate::non_finite::marker(v) {
                    Some(x) => {
                        let mut text = String::new();
                        crate::template::write_float(&mut text, x);
                        Value::String(text)
                    }
                    None => v.clone(),
                },
                Value::Null => Value::Null,
                Value::Number(n) => Value::String(n.to_string()),
                Value::Bool(b) => Value::String(if *b { "True" } else { "False" }.into()),
                other => Value::String(other.to_string()),
            }),
            ValueType::Int => match v {
                Value::Number(n) if n.is_i64() || n.is_u64() => Ok(v.clone()),
                Value::Number(n) => match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Value::from(f as i64)),
                    _ => fail(),
                },
                Value::Bool(b) => Ok(Value::from(*b as i64)),
                Value::String(s) => s.trim().parse::<i64>().map(Value::from).or_else(|_| fail()),
                _ => fail(),
            },
            ValueType::Double => match v {
                Value::Number(n) => Ok(n.as_f64().map(Value::from).unwrap_or(Value::Null)),
                Value::String(_) if crate::non_finite::marker(v).is_some() => Ok(v.clone()),
                // Python's `float()`: "nan", "inf", "-Infinity" are numbers too.
                Value::String(s) => match s.trim().parse::<f64>() {
                    Ok(f) => Ok(crate::non_finite::number(f)),
                    Err(_) => fail(),
                },
                Value::Bool(b) => Ok(Value::from(if *b { 1.0 } else { 0.0 })),
                _ => fail(),
            },
            ValueType::Bool => match v {
                Value::Bool(_) => Ok(v.clone()),
                Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
                Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
                _ => fail(),
            },
            ValueType::List => match v {
                Value::Array(_) => Ok(v.clone()),
                Value::String(s) => match serde_json::from_str::<Value>(s) {
                    Ok(parsed @ Value::Array(_)) => Ok(parsed),
                    _ => fail(),
                },
                _ => fail(),
            },
            ValueType::Object => match v {
                Value::String(s) => {
                    Ok(serde_json::from_str::<Value>(s).unwrap_or_else(|_| v.clone()))
                }
                _ => Ok(v.clone()),
            },
            ValueType::Image => Ok(v.clone()),
        }
    }

    /// The name as written in YAML.
    pub fn name(&self) -> &'static str {
        match self {
            ValueType::String => "string",
            ValueType::Int => "int",
            ValueType::Double => "double",
            ValueType::Bool => "bool",
            ValueType::List => "list",
            ValueType::Object => "object",
            ValueType::Image => "image",
        }
    }
}

/// A value shortened for an error message.
pub(crate) fn short(v: &Value) -> String {
    let s = crate::non_finite::to_string(v).unwrap_or_else(|_| v.to_string());
    if s.chars().count() > 60 {
        let cut: String = s.chars().take(57).collect();
        format!("{cut}...")
    } else {
        s
    }
}

/// `inputs.<name>` of a flow.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowInput {
    pub name: String,
    pub ty: ValueType,
    pub default: Option<Value>,
    pub description: Option<String>,
    pub allowed: Option<Vec<Value>>,
    pub is_chat_input: bool,
    pub is_chat_history: bool,
}

/// `outputs.<name>` of a flow.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowOutput {
    pub name: String,
    pub ty: Option<ValueType>,
    pub reference: ValueSource,
    pub description: Option<String>,
    pub is_chat_output: bool,
}

/// What a node does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// Render a prompt, call a model.
    Llm,
    /// Render a prompt, output the text.
    Prompt,
    /// Call a `@tool` function.
    Python,
}

impl NodeKind {
    /// The `type:` spelling.
    pub fn name(&self) -> &'static str {
        match self {
            NodeKind::Llm => "llm",
            NodeKind::Prompt => "prompt",
            NodeKind::Python => "python",
        }
    }
}

/// `llm` nodes call the Chat or the Completions API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmApi {
    Chat,
    Completion,
}

/// `activate: {when, is}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Activate {
    pub when: ValueSource,
    pub is: Value,
}

/// One node of the DAG (after variants are applied).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub kind: NodeKind,
    /// `source.path`, relative to the flow directory.
    pub source: PathBuf,
    /// `function:` for Python nodes whose file holds several tools.
    pub function: Option<String>,
    /// For `source: {type: package}`: the package tool flow runs itself (one of
    /// [`NATIVE_PACKAGE_TOOLS`]); `source` is then empty.
    pub package: Option<String>,
    pub inputs: IndexMap<String, ValueSource>,
    pub connection: Option<String>,
    pub api: LlmApi,
    pub activate: Option<Activate>,
    pub aggregation: bool,
    /// The variant this node body came from, when it came from `node_variants`.
    pub variant_id: Option<String>,
    /// Where the node body is in the YAML (`nodes[3]` or `node_variants.x.variants.v.node`).
    pub yaml_path: String,
}

impl Node {
    /// The names of the nodes this node depends on (inputs and `activate.when`), in order.
    pub fn dependencies(&self) -> Vec<&str> {
        let mut deps: Vec<&str> = Vec::new();
        let whens = self.activate.as_ref().map(|a| &a.when);
        for source in self.inputs.values().chain(whens) {
            if let Some(n) = source.node() {
                if !deps.contains(&n) {
                    deps.push(n);
                }
            }
        }
        deps
    }
}

/// One variant of a node: a whole replacement body.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub id: String,
    pub description: Option<String>,
    pub node: Node,
}

/// `node_variants.<node>`.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeVariants {
    pub default_variant_id: String,
    pub variants: IndexMap<String, Variant>,
}

/// A flex flow's `entry: module:function`.
#[derive(Debug, Clone, PartialEq)]
pub struct FlexEntry {
    /// `entry` as written.
    pub entry: String,
    /// The function's name.
    pub function: String,
    /// The module's file, relative to the flow directory (`a.b` → `a/b.py`).
    pub file: PathBuf,
    /// Whether `inputs:` was written in the YAML (else the inputs come from the signature).
    pub declared_inputs: bool,
    /// `outputs:` as written (names and types): informative only, the outputs of a line are
    /// what the function returns, as in promptflow.
    pub declared_outputs: Vec<(String, Option<ValueType>)>,
    /// Whether the entry is a class (called through `__call__` on an instance made with the
    /// init arguments); known once the module is read.
    pub is_class: bool,
    /// `init:` as written: each `__init__` parameter's type (as written: a flow type, a
    /// connection or model configuration class) and default.
    pub init_spec: IndexMap<String, InitSpec>,
    /// A class entry's `__init__` parameters, from its signature.
    pub init_params: Vec<crate::python::InitParam>,
    /// Whether `__init__` takes `**kwargs`.
    pub init_accepts_kwargs: bool,
    /// The init arguments a run makes the class with (`--init`, else `sample.init`, then the
    /// `init:` defaults), checked against the signature; connection names and model
    /// configuration dicts as given (resolved when the flow is prepared).
    pub init: Map<String, Value>,
    /// Whether [`init`](Self::init) was set (`--init`, or no init needed / given by sample).
    pub init_applied: bool,
    /// `sample.inputs`: the inputs of a line given none at all, as promptflow applies them.
    pub sample_inputs: Option<Map<String, Value>>,
    /// `sample.init`: the init when none is given.
    pub sample_init: Option<Map<String, Value>>,
    /// `__aggregate__`'s one parameter, when the class defines it: it then runs as the flow's
    /// aggregation over the succeeded lines' outputs.
    pub aggregate_param: Option<String>,
}

/// One entry of a flex flow's `init:`.
#[derive(Debug, Clone, PartialEq)]
pub struct InitSpec {
    /// `type` as written (`string`, `int`, ..., `AzureOpenAIModelConfiguration`, ...).
    pub ty: Option<String>,
    /// `default`; promptflow leaves out a default of `""` (the Python default applies).
    pub default: Option<Value>,
}

/// A loaded flow: its definition plus where it came from, for diagnostics.
#[derive(Debug, Clone)]
pub struct Flow {
    /// The YAML (or `.prompty`) file.
    pub file: PathBuf,
    /// The directory code paths are relative to.
    pub dir: PathBuf,
    pub inputs: IndexMap<String, FlowInput>,
    pub outputs: IndexMap<String, FlowOutput>,
    pub nodes: Vec<Node>,
    pub node_variants: IndexMap<String, NodeVariants>,
    pub environment_variables: IndexMap<String, String>,
    pub additional_includes: Vec<String>,
    pub environment: Option<Value>,
    pub description: Option<String>,
    pub display_name: Option<String>,
    pub tags: Option<Value>,
    pub flow_type: Option<String>,
    /// Which variant of each `use_variants` node is applied.
    pub selected_variants: IndexMap<String, String>,
    /// Non-fatal findings while loading (unknown keys, ...).
    pub warnings: Vec<Diagnostic>,
    /// A flex flow's function entry (`entry: module:function`). The flow then has one Python
    /// node, named after the function, whose inputs are the flow inputs, and its outputs are
    /// whatever the function returns (see [`FlexEntry`]); `outputs` stays empty.
    pub flex: Option<FlexEntry>,
    /// promptflow's `message_format`: which dicts are images, and how records refer to them.
    pub message_format: crate::image::MessageFormat,
    pub(crate) index: YamlIndex,
}

impl Flow {
    /// The flow's name: its directory's name.
    pub fn name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "flow".to_string())
    }

    /// The outputs every line produces: all but those referencing an aggregation node, which
    /// promptflow leaves out ("will not take effect"; `flow validate` warns about them).
    pub fn line_outputs(&self) -> impl Iterator<Item = (&String, &FlowOutput)> {
        self.outputs.iter().filter(|(_, o)| match &o.reference {
            ValueSource::Reference(super::Reference::NodeOutput { node, .. }) => {
                !self.nodes.iter().any(|n| n.aggregation && &n.name == node)
            }
            _ => true,
        })
    }

    /// Where the value at a YAML path is, for diagnostics.
    pub fn locate(&self, yaml_path: &str) -> Option<Location> {
        self.index.value(yaml_path)
    }

    /// Where the key at a YAML path is, for diagnostics.
    pub fn locate_key(&self, yaml_path: &str) -> Option<Location> {
        self.index.key(yaml_path)
    }

    /// A diagnostic about the value at `yaml_path` in this flow's file.
    pub fn error_at(&self, yaml_path: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(message).at(&self.file, self.locate(yaml_path))
    }

    /// A diagnostic about the key at `yaml_path` (e.g. a node's `inputs:`) in this flow's file.
    pub fn error_at_key(&self, yaml_path: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(message).at(&self.file, self.locate_key(yaml_path))
    }

    /// Find a file the flow refers to: in the flow directory, or through `additional_includes`
    /// (an included file or folder is addressed by its own name, as promptflow does).
    pub fn resolve_file(&self, relative: &Path) -> Option<PathBuf> {
        let direct = self.dir.join(relative);
        if direct.is_file() {
            return Some(direct);
        }
        let first = relative.components().next()?;
        for include in &self.additional_includes {
            let included = self.dir.join(include);
            if included.file_name() == Some(first.as_os_str()) {
                let rest: PathBuf = relative.components().skip(1).collect();
                let candidate = if rest.as_os_str().is_empty() {
                    included
                } else {
                    included.join(rest)
                };
                if candidate.is_file() {
                    return Some(candidate);
                }
            }
        }
        None
    }

    /// The node with this name.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Connection names used by nodes, in first-use order.
    pub fn connection_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        let all = self.nodes.iter().chain(
            self.node_variants
                .values()
                .flat_map(|v| v.variants.values().map(|v| &v.node)),
        );
        for node in all {
            if let Some(c) = &node.connection {
                if !names.contains(c) {
                    names.push(c.clone());
                }
            }
        }
        names
    }
}

/// Package tools (`source: {type: package, tool: ...}`) that flow runs itself, with its own
/// providers: promptflow-tools' Azure OpenAI and OpenAI chat and completion, and embedding.
pub const NATIVE_PACKAGE_TOOLS: &[&str] = &[
    "promptflow.tools.aoai.AzureOpenAI.chat",
    "promptflow.tools.aoai.AzureOpenAI.completion",
    "promptflow.tools.aoai.chat",
    "promptflow.tools.aoai.completion",
    "promptflow.tools.openai.OpenAI.chat",
    "promptflow.tools.openai.OpenAI.completion",
    "promptflow.tools.openai.chat",
    "promptflow.tools.openai.completion",
    "promptflow.tools.embedding.embedding",
];
