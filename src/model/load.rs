//! Loading `flow.dag.yaml` into a [`Flow`], collecting every problem with its location.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_json::{Map, Value};

use super::locate::{YamlIndex, join_index, join_key};
use super::reference::ValueSource;
use super::types::*;

/// A JSON object (`sample.inputs`, `sample.init`).
type JsonObject = Map<String, Value>;
use crate::diagnostic::{Diagnostic, Location};

/// Why a flow could not be loaded: every problem found, with locations.
#[derive(Debug, thiserror::Error)]
#[error("{}", summary(.diagnostics))]
pub struct LoadError {
    pub diagnostics: Vec<Diagnostic>,
}

fn summary(diagnostics: &[Diagnostic]) -> String {
    let errors: Vec<String> = diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect();
    errors.join("\n")
}

impl LoadError {
    pub(crate) fn one(d: Diagnostic) -> Self {
        LoadError {
            diagnostics: vec![d],
        }
    }
}

const TOP_LEVEL_KEYS: &[&str] = &[
    "inputs",
    "outputs",
    "nodes",
    "node_variants",
    "environment_variables",
    "additional_includes",
    "environment",
    "$schema",
    "type",
    "description",
    "display_name",
    "tags",
    "language",
    "entry",
    "sample",
    "init",
    "message_format",
];

const NODE_KEYS: &[&str] = &[
    "name",
    "type",
    "source",
    "inputs",
    "connection",
    "api",
    "activate",
    "aggregation",
    "use_variants",
    "provider",
    "module",
    "function",
    "comment",
    "enable_cache",
    "use_variant",
];

/// Find the flow file for a user-given path: a directory holding `flow.dag.yaml`, or the file.
pub fn find_flow_file(path: &Path) -> Result<PathBuf, LoadError> {
    if path.is_dir() {
        // As promptflow: one flow file per folder, else which one is meant is unclear. A flex
        // flow's folder often holds the .prompty its code loads: a flow file wins over those.
        let flow_files: Vec<PathBuf> = [
            "flow.dag.yaml",
            "flow.dag.yml",
            "flow.flex.yaml",
            "flow.flex.yml",
        ]
        .iter()
        .map(|name| path.join(name))
        .filter(|p| p.is_file())
        .collect();
        match flow_files.as_slice() {
            [] => {}
            [one] => return Ok(one.clone()),
            several => {
                let names: Vec<String> = several
                    .iter()
                    .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .collect();
                return Err(LoadError::one(
                    Diagnostic::error(format!(
                        "{} holds {}: which flow to run is unclear",
                        path.display(),
                        names.join(" and ")
                    ))
                    .with_help("pass the flow file itself, or remove the others"),
                ));
            }
        }
        let prompty: Vec<PathBuf> = std::fs::read_dir(path)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "prompty"))
                    .collect()
            })
            .unwrap_or_default();
        if prompty.len() == 1 {
            return Ok(prompty[0].clone());
        }
        if prompty.len() > 1 {
            let names: Vec<String> = prompty
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect();
            let mut names = names;
            names.sort();
            return Err(LoadError::one(
                Diagnostic::error(format!(
                    "{} has no flow.dag.yaml and {} .prompty files, so which one to run is unclear: {}",
                    path.display(),
                    prompty.len(),
                    names.join(", ")
                ))
                .with_help("pass the .prompty file itself"),
            ));
        }
        return Err(LoadError::one(
            Diagnostic::error(format!("{} has no flow.dag.yaml", path.display())).with_help(
                "pass a directory holding flow.dag.yaml (or flow.flex.yaml), the YAML file itself, \
                 or a .prompty file (`flow init` creates a working flow)",
            ),
        ));
    }
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    Err(LoadError::one(
        Diagnostic::error(format!("{} does not exist", path.display()))
            .with_help("check the path; a flow is a directory holding flow.dag.yaml"),
    ))
}

/// Parse a flow's YAML text. `file` is used for diagnostics and to find the flow directory.
pub fn parse_flow(file: &Path, text: &str) -> Result<Flow, LoadError> {
    let yaml: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
        let location = e.location().map(|l| Location::new(l.line(), l.column(), 1));
        let message = e.to_string();
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_string();
        LoadError::one(
            Diagnostic::error(format!("invalid YAML: {message}"))
                .at(file, location)
                .with_help("fix the YAML syntax (indentation, quotes, a `:` after each key)"),
        )
    })?;
    let root = to_json(yaml);
    let dir = flow_dir(file);
    let mut loader = Loader {
        file: file.to_path_buf(),
        index: YamlIndex::build(text),
        diagnostics: Vec::new(),
    };
    let flow = loader.flow(&root, dir);
    if loader.diagnostics.iter().any(Diagnostic::is_error) {
        return Err(LoadError {
            diagnostics: loader.diagnostics,
        });
    }
    let mut flow = flow;
    flow.warnings = loader.diagnostics;
    Ok(flow)
}

/// The directory code paths are relative to, made absolute so Python workers (whose working
/// directory is the flow) and diagnostics agree on it.
pub(crate) fn flow_dir(file: &Path) -> PathBuf {
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::path::absolute(&dir).unwrap_or(dir)
}

/// Convert serde_yaml's value into JSON: mapping keys become strings, tags are dropped.
pub(crate) fn to_json(v: serde_yaml::Value) -> Value {
    match v {
        serde_yaml::Value::Null => Value::Null,
        serde_yaml::Value::Bool(b) => Value::Bool(b),
        serde_yaml::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            }
        }
        serde_yaml::Value::String(s) => Value::String(s),
        serde_yaml::Value::Sequence(items) => {
            Value::Array(items.into_iter().map(to_json).collect())
        }
        serde_yaml::Value::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match k {
                    serde_yaml::Value::String(s) => s,
                    other => match to_json(other) {
                        Value::String(s) => s,
                        x => x.to_string(),
                    },
                };
                out.insert(key, to_json(v));
            }
            Value::Object(out)
        }
        serde_yaml::Value::Tagged(t) => to_json(t.value),
    }
}

struct Loader {
    file: PathBuf,
    index: YamlIndex,
    diagnostics: Vec<Diagnostic>,
}

impl Loader {
    fn error(&mut self, path: &str, message: impl Into<String>, help: Option<&str>) {
        let mut d = Diagnostic::error(message).at(&self.file, self.index.value(path));
        if let Some(h) = help {
            d = d.with_help(h);
        }
        self.diagnostics.push(d);
    }

    fn warn_key(&mut self, path: &str, message: impl Into<String>, help: Option<String>) {
        let mut d = Diagnostic::warning(message).at(&self.file, self.index.key(path));
        if let Some(h) = help {
            d = d.with_help(h);
        }
        self.diagnostics.push(d);
    }

    /// promptflow-tools' gpt4v tools hand `detail` to `build_messages` under a name that is not
    /// its `image_detail`: images are sent with `"detail": "auto"` whatever `detail` says, and
    /// flow sends what promptflow sends — a `detail` other than `auto` is said, not dropped
    /// quietly.
    fn warn_vision_detail(&mut self, map: &Map<String, Value>, path: &str) {
        let detail = map
            .get("inputs")
            .and_then(|i| i.get("detail"))
            .and_then(Value::as_str);
        if let Some(d) = detail.filter(|d| *d != "auto" && !d.starts_with("${")) {
            self.warn_key(
                &join_key(&join_key(path, "inputs"), "detail"),
                format!(
                    "`detail: {d}` does not reach the image parts: promptflow-tools' vision tools send `\"detail\": \"auto\"` (their `detail` becomes a template variable), and so does flow"
                ),
                Some("leave `detail` out: images are sent with `auto`".into()),
            );
        }
    }

    fn object<'v>(
        &mut self,
        v: &'v Value,
        path: &str,
        what: &str,
    ) -> Option<&'v Map<String, Value>> {
        match v {
            Value::Object(m) => Some(m),
            Value::Null => None,
            other => {
                self.error(
                    path,
                    format!(
                        "{what} must be a mapping, found {}",
                        super::reference::type_name(other)
                    ),
                    None,
                );
                None
            }
        }
    }

    fn string(&mut self, v: Option<&Value>, path: &str, what: &str) -> Option<String> {
        match v? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            other => {
                self.error(
                    path,
                    format!(
                        "{what} must be a string, found {}",
                        super::reference::type_name(other)
                    ),
                    None,
                );
                None
            }
        }
    }

    fn boolean(&mut self, v: Option<&Value>, path: &str, what: &str) -> bool {
        match v {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
            Some(other) => {
                self.error(
                    path,
                    format!(
                        "{what} must be true or false, found {}",
                        super::types::short(other)
                    ),
                    None,
                );
                false
            }
        }
    }

    fn unknown_keys(&mut self, map: &Map<String, Value>, path: &str, known: &[&str], what: &str) {
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                let help =
                    closest(key, known.iter().copied()).map(|c| format!("did you mean `{c}`?"));
                self.warn_key(
                    &join_key(path, key),
                    format!("unknown key `{key}` in {what} is ignored"),
                    help,
                );
            }
        }
    }

    /// A `language` other than Python makes a flow something `flow` cannot run faithfully:
    /// refused here, before anything runs.
    fn refuse_what_cannot_run(&mut self, map: &Map<String, Value>) {
        match map.get("language") {
            None | Some(Value::Null) => {}
            Some(Value::String(l)) if l.eq_ignore_ascii_case("python") => {}
            Some(other) => {
                let shown = match other {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                };
                self.error(
                    "language",
                    format!("`language: {shown}` is not supported: flow runs Python tools only"),
                    Some("remove `language`, or set `language: python`; C# flows need promptflow's C# executor"),
                );
            }
        }
    }

    /// promptflow's `message_format` (`MultimediaProcessor.create`): `basic` (the default) or
    /// `openai-vision`, in any case; anything else is refused at the value.
    fn message_format(&mut self, map: &Map<String, Value>) -> crate::image::MessageFormat {
        use crate::image::MessageFormat;
        let shown = match map.get("message_format") {
            None | Some(Value::Null) => return MessageFormat::Basic,
            Some(Value::String(f)) => match MessageFormat::parse(f) {
                Some(format) => return format,
                None => f.clone(),
            },
            Some(other) => other.to_string(),
        };
        let names = MessageFormat::NAMES;
        let help = match closest(&shown, names.iter().copied()) {
            Some(c) => format!(
                "did you mean `{c}`? The formats are `{}`",
                names.join("`, `")
            ),
            None => format!("the formats are `{}`", names.join("`, `")),
        };
        self.error(
            "message_format",
            format!("`message_format: {shown}` is not a message format"),
            Some(&help),
        );
        MessageFormat::Basic
    }

    fn flow(&mut self, root: &Value, dir: PathBuf) -> Flow {
        let empty = Map::new();
        let map = match root {
            Value::Object(m) => m,
            Value::Null => {
                self.error(
                    "",
                    "the flow file is empty",
                    Some("a flow needs `inputs`, `outputs` and `nodes`"),
                );
                &empty
            }
            other => {
                self.error(
                    "",
                    format!(
                        "a flow must be a YAML mapping, found {}",
                        super::reference::type_name(other)
                    ),
                    Some("start with `inputs:`, `outputs:` and `nodes:` keys"),
                );
                &empty
            }
        };
        self.unknown_keys(map, "", TOP_LEVEL_KEYS, "the flow");
        self.refuse_what_cannot_run(map);
        let message_format = self.message_format(map);

        let flex = match map.get("entry") {
            Some(entry) => self.flex_entry(entry, map),
            None => None,
        };
        let is_flex = map.contains_key("entry");
        let named_flex = self
            .file
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("flow.flex."));
        if named_flex && !is_flex {
            self.error(
                "",
                "a flex flow file has no `entry:`",
                Some("add `entry: module:function` (e.g. `entry: flow:my_flow` for my_flow in flow.py)"),
            );
        }
        if !is_flex && map.contains_key("init") {
            self.warn_key(
                "init",
                "`init` is for flex flows with a class entry; it is ignored in a DAG flow"
                    .to_string(),
                None,
            );
        }
        let inputs = self.inputs(map.get("inputs"), is_flex);
        let outputs = if is_flex {
            IndexMap::new()
        } else {
            self.outputs(map.get("outputs"))
        };
        let mut nodes = Vec::new();
        if let Some(f) = &flex {
            nodes.push(flex_node(f));
        }
        match map.get("nodes") {
            Some(Value::Array(items)) if is_flex && !items.is_empty() => self.error(
                "nodes",
                "a flex flow (`entry:`) has no `nodes`: its entry function is the whole flow",
                Some("remove `nodes:`, or remove `entry:` to make it a DAG flow"),
            ),
            _ if is_flex => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(node) = self.node(item, &join_index("nodes", i), None) {
                        nodes.push(node);
                    }
                }
            }
            None | Some(Value::Null) => {}
            Some(other) => self.error(
                "nodes",
                format!(
                    "`nodes` must be a list, found {}",
                    super::reference::type_name(other)
                ),
                Some("write each node as a `- name: ...` item"),
            ),
        }
        let no_nodes = match map.get("nodes") {
            None | Some(Value::Null) => true,
            Some(Value::Array(items)) => items.is_empty(),
            Some(_) => false,
        };
        // A flex flow's node is its entry.
        if no_nodes && !is_flex && !named_flex {
            self.error(
                if map.contains_key("nodes") {
                    "nodes"
                } else {
                    ""
                },
                "the flow has no nodes, so running it would do nothing",
                Some("add a node under `nodes:` (`flow init` creates a working flow)"),
            );
        }
        let node_variants = self.node_variants(map.get("node_variants"));
        let environment_variables = self.environment_variables(map.get("environment_variables"));
        let additional_includes = match map.get("additional_includes") {
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    self.string(Some(v), &join_index("additional_includes", i), "an include")
                })
                .collect(),
            None | Some(Value::Null) => Vec::new(),
            Some(_) => {
                self.error(
                    "additional_includes",
                    "`additional_includes` must be a list of paths",
                    None,
                );
                Vec::new()
            }
        };
        let description = self.string(map.get("description"), "description", "`description`");
        let display_name = self.string(map.get("display_name"), "display_name", "`display_name`");
        let flow_type = self.string(map.get("type"), "type", "`type`");
        Flow {
            file: self.file.clone(),
            dir,
            inputs,
            outputs,
            nodes,
            node_variants,
            environment_variables,
            additional_includes,
            environment: map.get("environment").cloned(),
            description,
            display_name,
            tags: map.get("tags").cloned(),
            flow_type,
            selected_variants: IndexMap::new(),
            warnings: Vec::new(),
            flex,
            message_format,
            index: self.index.clone(),
        }
    }

    /// `entry: module:function` of a flex flow, checked for shape. Whether the module defines a
    /// function by that name is checked when the flow is loaded from disk (`super::flex`).
    fn flex_entry(&mut self, entry: &Value, map: &Map<String, Value>) -> Option<FlexEntry> {
        let Value::String(text) = entry else {
            self.error(
                "entry",
                format!(
                    "`entry` must be a string `module:function`, found {}",
                    super::reference::type_name(entry)
                ),
                Some("write e.g. `entry: flow:my_flow` for the function my_flow in flow.py"),
            );
            return None;
        };
        let text = text.trim();
        if text.ends_with(".prompty") {
            self.error(
                "entry",
                format!("`entry: {text}`: a .prompty entry is not supported in a flex flow"),
                Some("run the .prompty file itself (`flow run file.prompty`), or wrap it in a Python function entry"),
            );
            return None;
        }
        let is_identifier = |s: &str| {
            let mut chars = s.chars();
            chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
                && chars.all(|c| c.is_alphanumeric() || c == '_')
        };
        let parsed = text.split_once(':').filter(|(module, function)| {
            !module.is_empty() && module.split('.').all(is_identifier) && is_identifier(function)
        });
        let Some((module, function)) = parsed else {
            self.error(
                "entry",
                format!("`entry: {text}` is not `module:function`"),
                Some("write e.g. `entry: flow:my_flow` for the function my_flow in flow.py (a module path is relative to the flow folder)"),
            );
            return None;
        };
        let init_spec = self.init_spec(map.get("init"));
        let (sample_inputs, sample_init) = self.sample(map.get("sample"));
        let mut declared_outputs = Vec::new();
        if let Some(v) = map.get("outputs") {
            if let Some(outputs) = self.object(v, "outputs", "`outputs`") {
                for (name, spec) in outputs {
                    let ty = match spec {
                        Value::Object(m) => match m.get("type") {
                            None => None,
                            t => self.value_type(t, &join_key(&join_key("outputs", name), "type")),
                        },
                        _ => None,
                    };
                    declared_outputs.push((name.clone(), ty));
                }
            }
        }
        let mut file: PathBuf = module.split('.').collect();
        file.set_extension("py");
        Some(FlexEntry {
            entry: text.to_string(),
            function: function.to_string(),
            file,
            declared_inputs: map.get("inputs").is_some_and(|v| !v.is_null()),
            declared_outputs,
            is_class: false,
            init_spec,
            init_params: Vec::new(),
            init_accepts_kwargs: false,
            init: Map::new(),
            init_applied: false,
            sample_inputs,
            sample_init,
            aggregate_param: None,
        })
    }

    /// `init:` of a flex flow: each parameter's `type` (any name: a flow type, a connection or
    /// model configuration class) and `default`.
    fn init_spec(&mut self, v: Option<&Value>) -> IndexMap<String, InitSpec> {
        let mut out = IndexMap::new();
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return out;
        };
        let Some(map) = self.object(v, "init", "`init`") else {
            return out;
        };
        for (name, spec) in map {
            let path = join_key("init", name);
            match spec {
                Value::Object(m) => {
                    let ty = match m.get("type") {
                        None | Some(Value::Null) => None,
                        Some(Value::String(t)) => Some(t.clone()),
                        Some(other) => {
                            self.error(
                                &join_key(&path, "type"),
                                format!(
                                    "the type of init `{name}` must be a name, found {}",
                                    super::reference::type_name(other)
                                ),
                                Some("write e.g. `type: string` or `type: AzureOpenAIModelConfiguration`"),
                            );
                            None
                        }
                    };
                    let default = m
                        .get("default")
                        .filter(|d| **d != Value::String(String::new()))
                        .cloned();
                    out.insert(name.clone(), InitSpec { ty, default });
                }
                Value::Null => {
                    out.insert(
                        name.clone(),
                        InitSpec {
                            ty: None,
                            default: None,
                        },
                    );
                }
                other => self.error(
                    &path,
                    format!(
                        "init `{name}` must be a mapping with `type` (found {})",
                        super::reference::type_name(other)
                    ),
                    Some("write e.g. `max_tokens: {type: int, default: 256}`"),
                ),
            }
        }
        out
    }

    /// `sample:` of a flex flow: `inputs` and `init`, each a mapping or `${file:PATH}` of a
    /// JSON object (relative to the flow folder), as promptflow reads them.
    fn sample(&mut self, v: Option<&Value>) -> (Option<JsonObject>, Option<JsonObject>) {
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return (None, None);
        };
        let Some(map) = self.object(v, "sample", "`sample`") else {
            return (None, None);
        };
        let map = map.clone();
        let mut part = |key: &str| -> Option<Map<String, Value>> {
            let path = join_key("sample", key);
            match map.get(key)? {
                Value::Null => None,
                Value::Object(m) => Some(m.clone()),
                Value::String(s) => {
                    let Some(file) = s
                        .trim()
                        .strip_prefix("${file:")
                        .and_then(|r| r.strip_suffix('}'))
                    else {
                        self.error(
                            &path,
                            format!("`sample.{key}` must be a mapping or `${{file:PATH}}`"),
                            Some("write the values under it, or `${file:./sample.json}`"),
                        );
                        return None;
                    };
                    let base = self.file.parent().unwrap_or(Path::new("."));
                    let full = base.join(file.trim());
                    let read = std::fs::read_to_string(&full)
                        .map_err(|e| e.to_string())
                        .and_then(|t| serde_json::from_str::<Value>(&t).map_err(|e| e.to_string()));
                    match read {
                        Ok(Value::Object(m)) => Some(m),
                        Ok(_) => {
                            self.error(
                                &path,
                                format!(
                                    "`sample.{key}`: {} does not hold a JSON object",
                                    full.display()
                                ),
                                Some("write an object of names and values in the file"),
                            );
                            None
                        }
                        Err(e) => {
                            self.error(
                                &path,
                                format!("`sample.{key}`: cannot read {}: {e}", full.display()),
                                Some("the path is relative to the flow folder"),
                            );
                            None
                        }
                    }
                }
                other => {
                    self.error(
                        &path,
                        format!(
                            "`sample.{key}` must be a mapping, found {}",
                            super::reference::type_name(other)
                        ),
                        None,
                    );
                    None
                }
            }
        };
        let inputs = part("inputs");
        let init = part("init");
        (inputs, init)
    }

    fn value_type(&mut self, v: Option<&Value>, path: &str) -> Option<ValueType> {
        let name = self.string(v, path, "`type`")?;
        match ValueType::parse(&name) {
            Some(t) => Some(t),
            None => {
                let help = match closest(&name, ValueType::NAMES.iter().copied()) {
                    Some(c) => format!(
                        "did you mean `{c}`? valid types: {}",
                        ValueType::NAMES.join(", ")
                    ),
                    None => format!("valid types: {}", ValueType::NAMES.join(", ")),
                };
                self.error(path, format!("unknown type `{name}`"), Some(&help));
                None
            }
        }
    }

    /// `inputs:`. In a flex flow, `default: ''` means no default here, as promptflow's script
    /// executor has it ("the user has defined the default value as None in the Python script"):
    /// the entry's own default applies.
    fn inputs(&mut self, v: Option<&Value>, flex: bool) -> IndexMap<String, FlowInput> {
        self.params(v, "inputs", flex)
    }

    fn params(&mut self, v: Option<&Value>, key: &str, flex: bool) -> IndexMap<String, FlowInput> {
        let mut out = IndexMap::new();
        let Some(v) = v else { return out };
        let Some(map) = self.object(v, key, &format!("`{key}`")) else {
            return out;
        };
        // one of them, in messages: "input `n`", "init parameter `n`"
        let noun = match key {
            "inputs" => "input",
            "init" => "init parameter",
            other => other,
        };
        for (name, spec) in map {
            let path = join_key(key, name);
            let empty = Map::new();
            let spec_map = match spec {
                Value::Object(m) => m,
                Value::Null => &empty,
                other => {
                    self.error(
                        &path,
                        format!(
                            "{noun} `{name}` must be a mapping with `type` (found {})",
                            super::reference::type_name(other)
                        ),
                        Some("write e.g. `question: {type: string, default: \"...\"}`"),
                    );
                    continue;
                }
            };
            let ty = match spec_map.get("type") {
                None => ValueType::String,
                t => self
                    .value_type(t, &join_key(&path, "type"))
                    .unwrap_or(ValueType::String),
            };
            let mut default = spec_map
                .get("default")
                .filter(|d| !(flex && d.as_str() == Some("")))
                .cloned();
            if let Some(d) = &default {
                if !d.is_null() {
                    match ty.coerce(d) {
                        Ok(c) => default = Some(c),
                        Err(e) => self.error(
                            &join_key(&path, "default"),
                            format!("the default of {noun} `{name}`: {e}"),
                            Some("make the default match the input's type, or change the type"),
                        ),
                    }
                }
            }
            let allowed = match spec_map.get("enum") {
                Some(Value::Array(items)) => Some(items.clone()),
                _ => None,
            };
            let description = self.string(
                spec_map.get("description"),
                &join_key(&path, "description"),
                "`description`",
            );
            let is_chat_input = self.boolean(
                spec_map.get("is_chat_input"),
                &join_key(&path, "is_chat_input"),
                "`is_chat_input`",
            );
            let is_chat_history = self.boolean(
                spec_map.get("is_chat_history"),
                &join_key(&path, "is_chat_history"),
                "`is_chat_history`",
            );
            out.insert(
                name.clone(),
                FlowInput {
                    name: name.clone(),
                    ty,
                    default,
                    description,
                    allowed,
                    is_chat_input,
                    is_chat_history,
                },
            );
        }
        out
    }

    fn outputs(&mut self, v: Option<&Value>) -> IndexMap<String, FlowOutput> {
        let mut out = IndexMap::new();
        let Some(v) = v else { return out };
        let Some(map) = self.object(v, "outputs", "`outputs`") else {
            return out;
        };
        for (name, spec) in map {
            let path = join_key("outputs", name);
            let Some(spec_map) = self.object(spec, &path, &format!("output `{name}`")) else {
                self.error(
                    &path,
                    format!("output `{name}` needs a `reference`"),
                    Some("write `reference: ${node.output}`"),
                );
                continue;
            };
            let ty = match spec_map.get("type") {
                None => None,
                t => self.value_type(t, &join_key(&path, "type")),
            };
            let ref_path = join_key(&path, "reference");
            let reference = match spec_map.get("reference") {
                None => {
                    self.error(
                        &path,
                        format!("output `{name}` has no `reference`"),
                        Some("add `reference: ${node_name.output}`"),
                    );
                    continue;
                }
                Some(r) => match ValueSource::parse(r) {
                    Ok(s) => s,
                    Err(e) => {
                        self.error(&ref_path, e, None);
                        continue;
                    }
                },
            };
            let description = self.string(
                spec_map.get("description"),
                &join_key(&path, "description"),
                "`description`",
            );
            let is_chat_output = self.boolean(
                spec_map.get("is_chat_output"),
                &join_key(&path, "is_chat_output"),
                "`is_chat_output`",
            );
            out.insert(
                name.clone(),
                FlowOutput {
                    name: name.clone(),
                    ty,
                    reference,
                    description,
                    is_chat_output,
                },
            );
        }
        out
    }

    /// A node body. `variant` is `(node name, variant id)` for bodies under `node_variants`.
    fn node(&mut self, v: &Value, path: &str, variant: Option<(&str, &str)>) -> Option<Node> {
        let map = self.object(v, path, "a node")?;
        self.unknown_keys(map, path, NODE_KEYS, "a node");
        let name = match variant {
            Some((node, _)) => node.to_string(),
            None => match self.string(map.get("name"), &join_key(path, "name"), "`name`") {
                Some(n) if !n.trim().is_empty() => n,
                _ => {
                    self.error(
                        path,
                        "a node has no `name`",
                        Some("give every node a unique `name:`"),
                    );
                    return None;
                }
            },
        };
        let use_variants = self.boolean(
            map.get("use_variants"),
            &join_key(path, "use_variants"),
            "`use_variants`",
        );
        if use_variants && variant.is_none() {
            // The body comes from node_variants; a placeholder until variants are applied.
            return Some(Node {
                name,
                kind: NodeKind::Llm,
                source: PathBuf::new(),
                function: None,
                package: None,
                inputs: IndexMap::new(),
                connection: None,
                api: LlmApi::Chat,
                activate: None,
                aggregation: false,
                variant_id: Some(String::new()),
                yaml_path: path.to_string(),
            });
        }
        let type_path = join_key(path, "type");
        let kind = match self
            .string(map.get("type"), &type_path, "`type`")
            .as_deref()
        {
            Some("llm") => NodeKind::Llm,
            Some("prompt") => NodeKind::Prompt,
            Some("python") => NodeKind::Python,
            // promptflow-tools' vision chat tools, which flow runs itself (the prompt is the
            // source file); other custom_llm tools are refused below, naming them
            Some("custom_llm") if custom_llm_tool(map).is_some() => {
                self.warn_vision_detail(map, path);
                NodeKind::Python
            }
            Some(other) => {
                let help = match other {
                    "custom_llm" => format!(
                        "flow runs `custom_llm` nodes of {} (`source: {{type: package_with_prompt, path: ..., tool: ...}}`); \
                         this one's tool `{}` is not one of them: rewrite the node as `type: llm` with a `.jinja2` prompt",
                        NATIVE_CUSTOM_LLM_TOOLS.join(", "),
                        map.get("source")
                            .and_then(|s| s.get("tool"))
                            .and_then(Value::as_str)
                            .unwrap_or("(none)")
                    ),
                    _ => format!(
                        "supported node types: llm, prompt, python{}",
                        closest(other, ["llm", "prompt", "python"])
                            .map(|c| format!(" (did you mean `{c}`?)"))
                            .unwrap_or_default()
                    ),
                };
                self.error(
                    &type_path,
                    format!("node `{name}` has unsupported type `{other}`"),
                    Some(&help),
                );
                return None;
            }
            None => {
                self.error(
                    path,
                    format!("node `{name}` has no `type`"),
                    Some("add `type: llm`, `type: prompt` or `type: python`"),
                );
                return None;
            }
        };
        let source_path = join_key(path, "source");
        let mut package = None;
        let source = match map.get("source") {
            Some(Value::Object(src)) if custom_llm_tool(map).is_some() => {
                package = custom_llm_tool(map);
                match src.get("path").and_then(Value::as_str) {
                    Some(p) => PathBuf::from(p),
                    None => {
                        self.error(
                            &source_path,
                            format!("node `{name}` has a source without `path`"),
                            Some("add `path: prompt.jinja2`: the chat prompt of the tool"),
                        );
                        return None;
                    }
                }
            }
            Some(Value::Object(src))
                if kind == NodeKind::Python
                    && src.get("type").and_then(Value::as_str) == Some("package")
                    && src
                        .get("tool")
                        .and_then(Value::as_str)
                        .is_some_and(|t| NATIVE_PACKAGE_TOOLS.contains(&t)) =>
            {
                package = src.get("tool").and_then(Value::as_str).map(str::to_string);
                PathBuf::new()
            }
            Some(Value::Object(src)) => {
                let src_type = src.get("type").and_then(Value::as_str).unwrap_or("code");
                if src_type != "code" {
                    let tool = src.get("tool").and_then(Value::as_str).unwrap_or("?");
                    self.error(
                        &join_key(&source_path, "type"),
                        format!("node `{name}` uses a `{src_type}` source (tool `{tool}`, package `{}`); only `code` sources run as nodes", package_of(tool)),
                        Some(&package_tool_help(tool)),
                    );
                    return None;
                }
                match self.string(
                    src.get("path"),
                    &join_key(&source_path, "path"),
                    "`source.path`",
                ) {
                    Some(p) => PathBuf::from(p),
                    None => {
                        self.error(
                            &source_path,
                            format!("node `{name}` has a source without `path`"),
                            Some("add `path: file.jinja2` or `path: file.py`"),
                        );
                        return None;
                    }
                }
            }
            Some(Value::String(p)) => PathBuf::from(p),
            _ => {
                self.error(
                    path,
                    format!("node `{name}` has no `source`"),
                    Some("add `source: {type: code, path: <file>}`"),
                );
                return None;
            }
        };
        let mut inputs = IndexMap::new();
        let inputs_path = join_key(path, "inputs");
        if let Some(v) = map.get("inputs") {
            if let Some(m) = self.object(v, &inputs_path, "node `inputs`") {
                for (k, v) in m {
                    match ValueSource::parse(v) {
                        Ok(s) => {
                            inputs.insert(k.clone(), s);
                        }
                        Err(e) => self.error(&join_key(&inputs_path, k), e, None),
                    }
                }
            }
        }
        let connection = self.string(
            map.get("connection"),
            &join_key(path, "connection"),
            "`connection`",
        );
        let api_path = join_key(path, "api");
        let api = match self.string(map.get("api"), &api_path, "`api`").as_deref() {
            None | Some("chat") => LlmApi::Chat,
            Some("completion") => LlmApi::Completion,
            Some(other) => {
                self.error(
                    &api_path,
                    format!("unknown api `{other}`"),
                    Some("use `api: chat` or `api: completion`"),
                );
                LlmApi::Chat
            }
        };
        let activate_path = join_key(path, "activate");
        let activate = match map.get("activate") {
            None | Some(Value::Null) => None,
            Some(Value::Object(a)) => {
                let when = match a.get("when") {
                    Some(w) => match ValueSource::parse(w) {
                        Ok(s) => Some(s),
                        Err(e) => {
                            self.error(&join_key(&activate_path, "when"), e, None);
                            None
                        }
                    },
                    None => {
                        self.error(
                            &activate_path,
                            format!("`activate` of node `{name}` has no `when`"),
                            Some("write `activate: {when: ${node.output}, is: value}`"),
                        );
                        None
                    }
                };
                if !a.contains_key("is") {
                    self.error(
                        &activate_path,
                        format!("`activate` of node `{name}` has no `is`"),
                        Some("write `activate: {when: ${node.output}, is: value}`"),
                    );
                }
                when.map(|when| Activate {
                    when,
                    is: a.get("is").cloned().unwrap_or(Value::Null),
                })
            }
            Some(_) => {
                self.error(
                    &activate_path,
                    "`activate` must be a mapping with `when` and `is`",
                    None,
                );
                None
            }
        };
        let aggregation = self.boolean(
            map.get("aggregation"),
            &join_key(path, "aggregation"),
            "`aggregation`",
        );
        let function = self.string(
            map.get("function"),
            &join_key(path, "function"),
            "`function`",
        );
        if kind == NodeKind::Llm && connection.is_none() {
            self.error(
                path,
                format!("llm node `{name}` has no `connection`"),
                Some("add `connection: <name>` and configure it in .env (see `flow connections`)"),
            );
        }
        Some(Node {
            name,
            kind,
            source,
            function,
            package,
            inputs,
            connection,
            api,
            activate,
            aggregation,
            variant_id: variant.map(|(_, v)| v.to_string()),
            yaml_path: path.to_string(),
        })
    }

    fn node_variants(&mut self, v: Option<&Value>) -> IndexMap<String, NodeVariants> {
        let mut out = IndexMap::new();
        let Some(v) = v else { return out };
        let Some(map) = self.object(v, "node_variants", "`node_variants`") else {
            return out;
        };
        for (node_name, spec) in map {
            let path = join_key("node_variants", node_name);
            let Some(spec) = self.object(spec, &path, "a node's variants") else {
                continue;
            };
            let mut variants = IndexMap::new();
            let vpath = join_key(&path, "variants");
            match spec.get("variants") {
                Some(Value::Object(vs)) => {
                    for (vid, body) in vs {
                        let body_path = join_key(&vpath, vid);
                        let Some(body_map) = self.object(body, &body_path, "a variant") else {
                            continue;
                        };
                        let node_path = join_key(&body_path, "node");
                        let Some(node_value) = body_map.get("node") else {
                            self.error(
                                &body_path,
                                format!("variant `{vid}` of `{node_name}` has no `node`"),
                                Some(
                                    "a variant is `{node: {type: llm, source: ..., inputs: ...}}`",
                                ),
                            );
                            continue;
                        };
                        let description = self.string(
                            body_map.get("description"),
                            &join_key(&body_path, "description"),
                            "`description`",
                        );
                        if let Some(node) =
                            self.node(node_value, &node_path, Some((node_name, vid)))
                        {
                            variants.insert(
                                vid.clone(),
                                Variant {
                                    id: vid.clone(),
                                    description,
                                    node,
                                },
                            );
                        }
                    }
                }
                _ => self.error(
                    &path,
                    format!("`node_variants.{node_name}` has no `variants` mapping"),
                    None,
                ),
            }
            let default_variant_id = match self.string(
                spec.get("default_variant_id"),
                &join_key(&path, "default_variant_id"),
                "`default_variant_id`",
            ) {
                Some(d) => {
                    if !variants.contains_key(&d) && !variants.is_empty() {
                        let ids: Vec<&str> = variants.keys().map(String::as_str).collect();
                        self.error(
                            &join_key(&path, "default_variant_id"),
                            format!("default variant `{d}` of `{node_name}` does not exist"),
                            Some(&format!("variants are: {}", ids.join(", "))),
                        );
                    }
                    d
                }
                None => match variants.keys().next() {
                    Some(first) => first.clone(),
                    None => continue,
                },
            };
            out.insert(
                node_name.clone(),
                NodeVariants {
                    default_variant_id,
                    variants,
                },
            );
        }
        out
    }

    fn environment_variables(&mut self, v: Option<&Value>) -> IndexMap<String, String> {
        let mut out = IndexMap::new();
        let Some(v) = v else { return out };
        let Some(map) = self.object(v, "environment_variables", "`environment_variables`") else {
            return out;
        };
        // As promptflow makes them strings: `str(v)`, lists and objects `json.dumps(v)`.
        for (k, v) in map {
            out.insert(k.clone(), crate::template::python_str(v));
        }
        out
    }
}

/// The one Python node of a flex flow: the entry function, named after it, located at `entry`.
/// Its inputs are filled from the flow inputs once they are known (`super::flex`).
pub(crate) fn flex_node(f: &FlexEntry) -> Node {
    Node {
        name: f.function.clone(),
        kind: NodeKind::Python,
        source: f.file.clone(),
        function: Some(f.function.clone()),
        package: None,
        inputs: IndexMap::new(),
        connection: None,
        api: LlmApi::Chat,
        activate: None,
        aggregation: false,
        variant_id: None,
        yaml_path: "entry".to_string(),
    }
}

/// The candidate closest to `word`, when it is close enough to be a likely typo: at most a
/// third of its letters edited (swaps count as one edit), or a very similar spelling.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_lowercase();
    let allowed = (word.chars().count() / 3).max(1);
    let mut best: Option<(&str, usize)> = None;
    for c in candidates {
        let lower = c.to_lowercase();
        let distance = strsim::damerau_levenshtein(&word, &lower);
        let close = distance <= allowed || strsim::jaro_winkler(&word, &lower) > 0.9;
        if close && best.is_none_or(|(_, d)| distance < d) {
            best = Some((c, distance));
        }
    }
    best.map(|(c, _)| c)
}

/// The package a package tool's name belongs to: `promptflow.tools.aoai.AzureOpenAI.chat` is
/// promptflow-tools' (`promptflow.tools`), `my_pkg.tools.x.y` is `my_pkg`'s.
fn package_of(tool: &str) -> String {
    if tool.starts_with("promptflow.tools.") {
        "promptflow-tools (promptflow.tools)".to_string()
    } else {
        tool.split('.').next().unwrap_or(tool).to_string()
    }
}

/// How to run a package tool's node in flow.
fn package_tool_help(tool: &str) -> String {
    if tool.starts_with("promptflow.tools.serpapi") {
        return "promptflow.tools.serpapi calls SerpAPI, a third-party search service flow does not provide: \
                call it from your own python node with Microsoft's promptflow-tools installed"
            .to_string();
    }
    if tool.starts_with("promptflow.tools.") {
        let module = tool.split('.').take(3).collect::<Vec<_>>().join(".");
        if ["aoai", "openai", "embedding"].contains(&tool.split('.').nth(2).unwrap_or_default()) {
            return format!(
                "flow runs {} itself; for another function of {module}, write a python node that imports it",
                NATIVE_PACKAGE_TOOLS.join(", ")
            );
        }
        return format!(
            "flow does not ship `{module}`: install Microsoft's promptflow-tools in the Python flow runs and call it \
             from a python node (flow runs {} itself)",
            NATIVE_PACKAGE_TOOLS.join(", ")
        );
    }
    "package tools do not run as nodes in flow: write a python node whose code imports the package and calls the tool \
     (the package must be installed in the Python flow runs)"
        .to_string()
}

/// promptflow-tools' `custom_llm` tools flow runs itself: the vision chat tools (images sent as
/// content parts, as `llm` nodes send them).
pub(crate) const NATIVE_CUSTOM_LLM_TOOLS: &[&str] = &[
    "promptflow.tools.aoai_gpt4v.AzureOpenAI.chat",
    "promptflow.tools.openai_gpt4v.OpenAI.chat",
];

/// The tool of a `custom_llm` node flow runs itself, when it is one.
fn custom_llm_tool(map: &Map<String, Value>) -> Option<String> {
    if map.get("type").and_then(Value::as_str) != Some("custom_llm") {
        return None;
    }
    let src = map.get("source")?.as_object()?;
    let tool = src.get("tool")?.as_str()?;
    (src.get("type").and_then(Value::as_str) == Some("package_with_prompt")
        && NATIVE_CUSTOM_LLM_TOOLS.contains(&tool))
    .then(|| tool.to_string())
}
