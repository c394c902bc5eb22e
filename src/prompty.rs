//! `.prompty` files: YAML front matter (model, inputs, sample...) between `---` lines, then a
//! Jinja2 prompt template. Parsed as promptflow's `Prompty` reads them; `${env:VAR}` values are
//! kept verbatim for the caller to resolve.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_json::{Map, Value};

use crate::template::{PromptTemplate, TemplateError, TemplateOptions};

/// An error reading a `.prompty` file.
#[derive(Debug, thiserror::Error)]
pub enum PromptyError {
    /// The file does not start with a `---` front matter block.
    #[error(
        "{}: missing front matter. A .prompty file starts with a line `---`, then YAML (name, \
         model, inputs...), then a line `---`, then the prompt template.",
        .path.display()
    )]
    NoFrontMatter {
        /// The file.
        path: PathBuf,
    },
    /// The front matter is opened but never closed.
    #[error(
        "{}:{line}: the front matter opened here is never closed. Add a line `---` after the \
         YAML, before the prompt template.",
        .path.display()
    )]
    UnclosedFrontMatter {
        /// The file.
        path: PathBuf,
        /// 1-based line of the opening `---`.
        line: usize,
    },
    /// The front matter is not valid YAML.
    #[error("{}:{}: invalid YAML in the front matter: {message}. Fix the YAML at that position.", .path.display(), loc(*.line, *.col))]
    Yaml {
        /// The file.
        path: PathBuf,
        /// 1-based line in the file, when known.
        line: Option<usize>,
        /// 1-based column, when known.
        col: Option<usize>,
        /// The YAML parser's message.
        message: String,
    },
    /// A front matter field has the wrong shape or value.
    #[error("{}: `{field}` {message}", .path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field's dotted path, e.g. `model.api`.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The prompt template does not compile (line numbers are lines of the `.prompty` file).
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A `${file:...}` sample could not be read.
    #[error("{}: cannot read the sample file {}: {message}", .path.display(), .sample.display())]
    Sample {
        /// The `.prompty` file.
        path: PathBuf,
        /// The sample file.
        sample: PathBuf,
        /// Why.
        message: String,
    },
}

impl crate::error::Classify for PromptyError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Config
    }
}

fn loc(line: Option<usize>, col: Option<usize>) -> String {
    match (line, col) {
        (Some(l), Some(c)) => format!("{l}:{c}"),
        (Some(l), None) => l.to_string(),
        _ => "?".to_string(),
    }
}

/// Which OpenAI API the prompt is sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Api {
    /// Chat completions: the rendered text is split into messages.
    #[default]
    Chat,
    /// Text completions: the rendered text is sent as one prompt.
    Completion,
}

/// `model.configuration`: where the model is. Values may be `${env:VAR}` placeholders.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelConfiguration {
    /// `type`: `azure_openai` or `openai`.
    pub kind: Option<String>,
    /// A named connection (then the endpoint fields should be empty).
    pub connection: Option<String>,
    /// Azure deployment name.
    pub azure_deployment: Option<String>,
    /// Model name (OpenAI).
    pub model: Option<String>,
    /// API key (usually `${env:...}`).
    pub api_key: Option<String>,
    /// Azure endpoint.
    pub azure_endpoint: Option<String>,
    /// OpenAI-compatible base URL.
    pub base_url: Option<String>,
    /// Azure API version.
    pub api_version: Option<String>,
    /// OpenAI organization.
    pub organization: Option<String>,
    /// Any other keys, verbatim.
    pub extra: Map<String, Value>,
}

impl ModelConfiguration {
    /// The model to request: `azure_deployment`, else `model` (as promptflow picks it).
    pub fn model_name(&self) -> Option<&str> {
        self.azure_deployment.as_deref().or(self.model.as_deref())
    }
}

/// `model`: API, configuration, request parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Model {
    /// `model.api` (default chat).
    pub api: Api,
    /// `model.configuration`.
    pub configuration: ModelConfiguration,
    /// `model.parameters` (max_tokens, temperature, tools, response_format...), verbatim.
    pub parameters: Map<String, Value>,
    /// `model.response`: `first` (default: the first choice's content) or `all`.
    pub response_all: bool,
}

/// One declared input.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Input {
    /// `type` (string, int, double, bool, list, object), when given or inferred.
    pub kind: Option<String>,
    /// `default`, or the value of the short form `name: value`.
    pub default: Option<Value>,
    /// `description`.
    pub description: Option<String>,
    /// The whole declaration, verbatim (e.g. `is_chat_history`).
    pub raw: Value,
}

/// A parsed `.prompty` file.
#[derive(Debug)]
pub struct Prompty {
    /// The file.
    pub path: PathBuf,
    /// `name` (default: the file stem).
    pub name: String,
    /// `description`.
    pub description: Option<String>,
    /// `model`.
    pub model: Model,
    /// `inputs`, in file order.
    pub inputs: IndexMap<String, Input>,
    /// `outputs`, verbatim (keys to extract from a JSON reply).
    pub outputs: Map<String, Value>,
    /// `sample`: a map of input values, or a `${file:...}` reference.
    pub sample: Option<Value>,
    /// The whole front matter, verbatim.
    pub front_matter: Map<String, Value>,
    /// The compiled template; its error line numbers are lines of the `.prompty` file.
    pub template: PromptTemplate,
    /// 1-based line of the file where the template body starts.
    pub body_line: usize,
}

/// Parses a `.prompty` file's `text`; `path` is used for names, errors and relative samples.
pub fn parse(path: &Path, text: &str) -> Result<Prompty, PromptyError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let normalized;
    let text = if text.contains("\r\n") {
        normalized = text.replace("\r\n", "\n");
        normalized.as_str()
    } else {
        text
    };
    let (yaml, yaml_line, body, body_line) = split_front_matter(path, text)?;
    let mut front_matter = parse_yaml(path, yaml, yaml_line)?;
    // `${file:...}` anywhere in the front matter (a configuration, `tools`, the sample) is the
    // file's content, as promptflow resolves it: JSON and YAML parsed, anything else as text.
    // The `sample` keeps its own reading (it may also be `file:x.json` or a bare path).
    for (key, value) in front_matter.iter_mut() {
        if key != "sample" {
            resolve_file_references(path, key, value)?;
        }
    }

    let invalid = |field: &str, message: &str| PromptyError::Invalid {
        path: path.to_path_buf(),
        field: field.to_string(),
        message: message.to_string(),
    };
    let opt_str = |v: Option<&Value>, field: &str| -> Result<Option<String>, PromptyError> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(invalid(field, "must be a string")),
        }
    };
    let opt_map = |v: Option<&Value>, field: &str| -> Result<Map<String, Value>, PromptyError> {
        match v {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(m)) => Ok(m.clone()),
            Some(_) => Err(invalid(field, "must be a mapping of names to values")),
        }
    };

    let name = match opt_str(front_matter.get("name"), "name")? {
        Some(n) => n,
        None => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let description = opt_str(front_matter.get("description"), "description")?;

    let model_map = opt_map(front_matter.get("model"), "model")?;
    let api = match opt_str(model_map.get("api"), "model.api")?.as_deref() {
        None | Some("chat") => Api::Chat,
        Some("completion") => Api::Completion,
        Some(other) => {
            return Err(invalid(
                "model.api",
                &format!("is `{other}`; use `chat` or `completion`"),
            ));
        }
    };
    let conf = opt_map(model_map.get("configuration"), "model.configuration")?;
    let mut configuration = ModelConfiguration::default();
    for (k, v) in &conf {
        let field = format!("model.configuration.{k}");
        let slot = match k.as_str() {
            "type" => &mut configuration.kind,
            "connection" => &mut configuration.connection,
            "azure_deployment" => &mut configuration.azure_deployment,
            "model" => &mut configuration.model,
            "api_key" => &mut configuration.api_key,
            "azure_endpoint" => &mut configuration.azure_endpoint,
            "base_url" => &mut configuration.base_url,
            "api_version" => &mut configuration.api_version,
            "organization" => &mut configuration.organization,
            _ => {
                configuration.extra.insert(k.clone(), v.clone());
                continue;
            }
        };
        *slot = opt_str(Some(v), &field)?;
    }
    let parameters = opt_map(model_map.get("parameters"), "model.parameters")?;
    let response_all = match opt_str(model_map.get("response"), "model.response")?.as_deref() {
        None | Some("first") => false,
        Some("all") => true,
        Some(other) => {
            return Err(invalid(
                "model.response",
                &format!("is `{other}`; use `first` or `all`"),
            ));
        }
    };

    let mut inputs = IndexMap::new();
    for (k, v) in opt_map(front_matter.get("inputs"), "inputs")? {
        inputs.insert(k.clone(), parse_input(&k, v, &invalid)?);
    }
    let outputs = opt_map(front_matter.get("outputs"), "outputs")?;
    let sample = front_matter.get("sample").filter(|v| !v.is_null()).cloned();

    let template = PromptTemplate::with_options(
        &path.display().to_string(),
        body,
        TemplateOptions {
            line_offset: body_line - 1,
            ..TemplateOptions::default()
        },
    )?;

    Ok(Prompty {
        path: path.to_path_buf(),
        name,
        description,
        model: Model {
            api,
            configuration,
            parameters,
            response_all,
        },
        inputs,
        outputs,
        sample,
        front_matter,
        template,
        body_line,
    })
}

/// Keys that make an input's mapping a declaration rather than a short-form object value.
const DECLARATION_KEYS: &[&str] = &[
    "type",
    "default",
    "description",
    "enum",
    "is_chat_input",
    "is_chat_history",
    "sample",
];

fn parse_input(
    name: &str,
    v: Value,
    invalid: &dyn Fn(&str, &str) -> PromptyError,
) -> Result<Input, PromptyError> {
    let field = format!("inputs.{name}");
    match v {
        Value::Object(m) if m.is_empty() || DECLARATION_KEYS.iter().any(|k| m.contains_key(*k)) => {
            let kind = match m.get("type") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return Err(invalid(&format!("{field}.type"), "must be a type name")),
            };
            let description = match m.get("description") {
                Some(Value::String(s)) => Some(s.clone()),
                _ => None,
            };
            Ok(Input {
                kind,
                default: m.get("default").cloned(),
                description,
                raw: Value::Object(m),
            })
        }
        // Short form `name: value`: the value is the input's sample/default, its type inferred.
        other => Ok(Input {
            kind: Some(value_type(&other).to_string()),
            default: Some(other.clone()),
            description: None,
            raw: other,
        }),
    }
}

/// promptflow's `ValueType.from_value` name for a JSON value.
pub fn value_type(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "double",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) | Value::Null => "object",
    }
}

/// Replace every `${file:PATH}` string in `value` (at `field` of the front matter) by the
/// file's content, relative to the `.prompty` file's folder.
fn resolve_file_references(
    prompty: &Path,
    field: &str,
    value: &mut Value,
) -> Result<(), PromptyError> {
    match value {
        Value::String(s) => {
            let Some(file) = s
                .trim()
                .strip_prefix("${file:")
                .and_then(|r| r.strip_suffix('}'))
            else {
                return Ok(());
            };
            let base = prompty.parent().unwrap_or(Path::new("."));
            let target = base.join(file.trim());
            let fail = |message: String| PromptyError::Invalid {
                path: prompty.to_path_buf(),
                field: field.to_string(),
                message,
            };
            let text = std::fs::read_to_string(&target)
                .map_err(|e| fail(format!("`{s}`: cannot read {}: {e}", target.display())))?;
            let ext = target
                .extension()
                .map(|e| e.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            *value = match ext.as_str() {
                "json" => serde_json::from_str(&text)
                    .map_err(|e| fail(format!("`{s}`: {} is not JSON: {e}", target.display())))?,
                "yaml" | "yml" => serde_yaml::from_str(&text)
                    .map_err(|e| fail(format!("`{s}`: {} is not YAML: {e}", target.display())))?,
                _ => Value::String(text),
            };
            Ok(())
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                resolve_file_references(prompty, &format!("{field}[{i}]"), item)?;
            }
            Ok(())
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                resolve_file_references(prompty, &format!("{field}.{k}"), v)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

impl Prompty {
    /// The inputs the prompty takes: `inputs`, or (when none are declared) the keys of a map
    /// `sample` with inferred types, as promptflow does.
    pub fn input_signature(&self) -> IndexMap<String, Input> {
        if !self.inputs.is_empty() {
            return self.inputs.clone();
        }
        match &self.sample {
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| {
                    let input = Input {
                        kind: Some(value_type(v).to_string()),
                        default: None,
                        description: None,
                        raw: Value::Null,
                    };
                    (k.clone(), input)
                })
                .collect(),
            _ => IndexMap::new(),
        }
    }

    /// The sample input values: the `sample` map, or the JSON file it references
    /// (`${file:x.json}`, `file:x.json` or `x.json`, relative to the `.prompty` file).
    pub fn sample_values(&self) -> Result<Option<Map<String, Value>>, PromptyError> {
        let sample_err = |sample: PathBuf, message: String| PromptyError::Sample {
            path: self.path.clone(),
            sample,
            message,
        };
        match &self.sample {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m.clone())),
            Some(Value::String(s)) => {
                let file = s
                    .strip_prefix("${file:")
                    .and_then(|r| r.strip_suffix('}'))
                    .or_else(|| s.strip_prefix("file:"))
                    .unwrap_or(s);
                let file = self
                    .path
                    .parent()
                    .map_or_else(|| PathBuf::from(file), |d| d.join(file));
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| sample_err(file.clone(), e.to_string()))?;
                match serde_json::from_str(&text) {
                    Ok(Value::Object(m)) => Ok(Some(m)),
                    Ok(_) => Err(sample_err(file, "it must hold one JSON object".into())),
                    Err(e) => Err(sample_err(file, format!("invalid JSON: {e}"))),
                }
            }
            Some(_) => Err(PromptyError::Invalid {
                path: self.path.clone(),
                field: "sample".into(),
                message: "must be a mapping of input values or a JSON file path".into(),
            }),
        }
    }
}

/// Splits `text` into (yaml, first yaml line, body, first body line); lines are 1-based.
fn split_front_matter<'a>(
    path: &Path,
    text: &'a str,
) -> Result<(&'a str, usize, &'a str, usize), PromptyError> {
    let is_fence = |l: &str| {
        let t = l.trim_end();
        t.len() >= 3 && t.bytes().all(|b| b == b'-')
    };
    let mut offset = 0;
    let mut open: Option<(usize, usize)> = None; // (line, byte offset after the fence line)
    for (idx, line) in text.split_inclusive('\n').enumerate() {
        let next = offset + line.len();
        let content = line.trim_end_matches('\n');
        match open {
            None if content.trim().is_empty() => {}
            None if is_fence(content) => open = Some((idx + 1, next)),
            None => {
                return Err(PromptyError::NoFrontMatter {
                    path: path.to_path_buf(),
                });
            }
            Some((line_no, start)) if is_fence(content) => {
                return Ok((&text[start..offset], line_no + 1, &text[next..], idx + 2));
            }
            Some(_) => {}
        }
        offset = next;
    }
    match open {
        Some((line, _)) => Err(PromptyError::UnclosedFrontMatter {
            path: path.to_path_buf(),
            line,
        }),
        None => Err(PromptyError::NoFrontMatter {
            path: path.to_path_buf(),
        }),
    }
}

fn parse_yaml(
    path: &Path,
    yaml: &str,
    first_line: usize,
) -> Result<Map<String, Value>, PromptyError> {
    match serde_yaml::from_str::<Value>(yaml) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(_) => Err(PromptyError::Yaml {
            path: path.to_path_buf(),
            line: Some(first_line),
            col: Some(1),
            message: "the front matter must be a mapping (`name: ...`, `model: ...`)".into(),
        }),
        Err(e) => {
            let location = e.location();
            Err(PromptyError::Yaml {
                path: path.to_path_buf(),
                line: location.as_ref().map(|l| l.line() + first_line - 1),
                col: location.as_ref().map(|l| l.column()),
                message: yaml_message(&e),
            })
        }
    }
}

/// serde_yaml's message without its own " at line L column C" (relative to the front matter).
fn yaml_message(e: &serde_yaml::Error) -> String {
    let msg = e.to_string();
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    }
}
