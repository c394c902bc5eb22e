//! `experiment.yaml` in the shape of Microsoft's GenAIOps prompt-flow template — `name`, `flow`,
//! `connections`, `datasets` (`source`, `mappings`), `evaluators` (with their own `datasets`,
//! each the same as a flow dataset or a new one that `reference`s it), `runtime` — plus the
//! optional blocks only `flow` reads: `variants`, `combinations`, `sweep` and `winner`.
//!
//! The checks are the template loader's (`llmops/common/experiment.py`): the same fields are
//! required or refused, so files that load there load here unchanged; every problem is reported
//! at its line and column.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_json::{Map, Value as Json};
use serde_yaml::{Mapping, Value};

use super::doc::{Doc, Origin, mappings, optional_str, required_str, scalar_text};
use super::overlay;
use crate::diagnostic::Diagnostic;
use crate::eval::{ModelSpec, is_model_evaluator};
use crate::evaluators::EvaluatorSpec;
use crate::model::locate::join_key;

/// Why an experiment could not be loaded or planned: every problem, located.
#[derive(Debug, thiserror::Error)]
#[error("{}", .diagnostics.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct ExperimentFileError {
    pub diagnostics: Vec<Diagnostic>,
}

impl From<Diagnostic> for ExperimentFileError {
    fn from(d: Diagnostic) -> Self {
        ExperimentFileError {
            diagnostics: vec![d],
        }
    }
}

/// A loaded experiment (overlay applied).
#[derive(Debug, Clone)]
pub struct Experiment {
    pub name: String,
    /// The base file and the overlay applied to it, if any.
    pub file: PathBuf,
    pub overlay: Option<PathBuf>,
    /// The directory relative paths are resolved against (the base file's).
    pub dir: PathBuf,
    /// The flow directory.
    pub flow: PathBuf,
    pub connections: Vec<ConnectionDef>,
    pub datasets: Vec<Dataset>,
    pub evaluators: Vec<Evaluator>,
    pub runtime: Option<String>,
    /// `init:`: the flow's class entry `__init__` arguments (a flex flow), as `--init` gives them.
    pub init: Option<Init>,
    pub extras: Extras,
}

/// An `init:` mapping: a flex flow's class entry `__init__` arguments (promptflow's experiment
/// flow nodes take them as `init:` too), applied to every run of that flow.
#[derive(Debug, Clone)]
pub struct Init {
    pub values: Map<String, Json>,
    pub origin: Origin,
    /// Where each argument's value is.
    pub keys: IndexMap<String, Origin>,
}

/// The `init:` of the mapping `map` at `path` (the file's top level when `path` is empty).
pub(crate) fn read_init(
    doc: &Doc,
    map: &Mapping,
    path: &str,
    d: &mut Vec<Diagnostic>,
) -> Option<Init> {
    let p = join_key(path, "init");
    match map.get("init") {
        None | Some(Value::Null) => None,
        Some(Value::Mapping(m)) => {
            let mut values = Map::new();
            let mut keys = IndexMap::new();
            for (k, v) in m {
                let Some(k) = scalar_text(k) else {
                    d.push(doc.error(&p, "`init` keys must be parameter names"));
                    continue;
                };
                match serde_json::to_value(v) {
                    Ok(v) => {
                        keys.insert(k.clone(), doc.origin(&join_key(&p, &k)));
                        values.insert(k, v);
                    }
                    Err(e) => d.push(doc.error(&join_key(&p, &k), format!("`{k}`: {e}"))),
                }
            }
            Some(Init {
                values,
                origin: doc.origin(&p),
                keys,
            })
        }
        Some(_) => {
            d.push(
                doc.error(&p, "`init` must be a mapping of `__init__` arguments")
                    .with_help("write `init:` followed by `name: value` lines, e.g. `max_total_token: 2048`"),
            );
            None
        }
    }
}

/// A `connections` entry: properties are written to `<NAME>_<PROPERTY>` variables; `${x}`
/// values are read from `<NAME>_<X>` (see [`super::placeholder`]).
#[derive(Debug, Clone)]
pub struct ConnectionDef {
    pub name: String,
    pub connection_type: String,
    /// Property → (value as written, where).
    pub properties: IndexMap<String, (String, Origin)>,
    pub origin: Origin,
}

/// A dataset the flow runs over.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    pub source: PathBuf,
    pub description: Option<String>,
    /// Flow input → `${data.column}` (or a literal).
    pub mappings: Map<String, Json>,
    pub origin: Origin,
}

/// An evaluator: an evaluation flow (GenAIOps) or a built-in evaluator (`builtin:`, flow's).
#[derive(Debug, Clone)]
pub struct Evaluator {
    pub name: String,
    pub kind: EvaluatorKind,
    /// `init:` of an evaluation flow whose entry is a class.
    pub init: Option<Init>,
    pub datasets: Vec<EvalDataset>,
    pub origin: Origin,
}

/// What scores the runs.
#[derive(Debug, Clone)]
pub enum EvaluatorKind {
    /// An evaluation flow directory.
    Flow(PathBuf),
    /// A built-in evaluator.
    Builtin(EvaluatorSpec),
    /// A built-in evaluator that calls a model (an LLM judge, embedding similarity): its spec
    /// (`relevance:connection=judge`), prepared when the experiment runs, and the text it was
    /// written as (what the experiment's hash covers).
    Model { text: String, spec: ModelSpec },
}

/// The spec of a model evaluator from its name and options, checked.
fn model_spec(
    name: &str,
    options: &[(String, Option<String>)],
) -> Result<(String, ModelSpec), String> {
    let mut text = name.trim().to_string();
    for (i, (k, v)) in options.iter().enumerate() {
        text.push(if i == 0 { ':' } else { ',' });
        text.push_str(k);
        if let Some(v) = v {
            text.push('=');
            text.push_str(v);
        }
    }
    let spec = text.parse::<ModelSpec>().map_err(|e| e.to_string())?;
    Ok((text, spec))
}

/// A dataset an evaluator scores: a flow dataset itself, or a related file (`reference`).
#[derive(Debug, Clone)]
pub struct EvalDataset {
    pub name: String,
    /// The flow dataset whose runs this scores.
    pub reference: String,
    pub source: PathBuf,
    /// Evaluator input → `${data.x}` / `${run.outputs.x}`.
    pub mappings: Map<String, Json>,
    pub origin: Origin,
}

/// flow's own optional blocks.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// `variants: all` / `default` / a list of variant ids: the default for `--variants`.
    pub variants: Option<(Vec<String>, Origin)>,
    /// `combinations: true` (every node with variants) or a list of nodes.
    pub combinations: Option<(Option<Vec<String>>, Origin)>,
    pub sweeps: Vec<SweepDef>,
    /// `winner: {metric: accuracy, goal: max}`.
    pub winner: Option<WinnerDef>,
}

/// A `sweep` entry: a node run with every combination of parameter values.
#[derive(Debug, Clone)]
pub struct SweepDef {
    pub node: String,
    /// The variant the parameters are applied on (default: the node's default variant).
    pub variant: Option<String>,
    /// Parameter → values, in the order written.
    pub parameters: IndexMap<String, Vec<Json>>,
    /// Where its `node:` is.
    pub origin: Origin,
}

/// How the winner is chosen.
#[derive(Debug, Clone)]
pub struct WinnerDef {
    pub metric: Option<String>,
    /// `Some(true)`: higher is better; `Some(false)`: lower; `None`: guessed from the name.
    pub higher_is_better: Option<bool>,
    pub origin: Origin,
}

impl Experiment {
    /// The evaluator datasets that score runs of the flow dataset `dataset`, with their
    /// evaluator (an entry that names the dataset itself or `reference`s it, as the template
    /// matches them).
    pub fn evaluations_of<'a>(
        &'a self,
        dataset: &'a str,
    ) -> impl Iterator<Item = (usize, &'a Evaluator, &'a EvalDataset)> + 'a {
        self.evaluators.iter().enumerate().flat_map(move |(i, e)| {
            e.datasets
                .iter()
                .filter(move |d| d.reference == dataset || d.name == dataset)
                .map(move |d| (i, e, d))
        })
    }
}

/// The overlay file of `file` for `env`: `experiment.yaml` + `pr` → `experiment.pr.yaml`.
pub fn overlay_path(file: &Path, env: &str) -> PathBuf {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match file.extension() {
        Some(ext) => format!("{stem}.{env}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{env}"),
    };
    file.with_file_name(name)
}

/// Load `file`, then the overlay `<file stem>.<env>.<ext>` when `env` is given and it exists:
/// each of `datasets`, `evaluators`, `connections`, `runtime` (and flow's `variants`,
/// `combinations`, `sweep`, `winner`) present in the overlay replaces the whole block; an empty
/// block empties it (an empty `evaluators:` turns evaluation off). `name` and `flow` always
/// come from the base file.
pub fn load(file: &Path, env: Option<&str>) -> Result<Experiment, ExperimentFileError> {
    let file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let base = Doc::read(&file)?;
    let mut experiment = from_doc(&base)?;
    if let Some(env) = env {
        let path = overlay_path(&file, env);
        if path.is_file() {
            let doc = Doc::read(&path)?;
            overlay::apply(&mut experiment, &doc)?;
            experiment.overlay = Some(path);
        }
    }
    Ok(experiment)
}

fn from_doc(doc: &Doc) -> Result<Experiment, ExperimentFileError> {
    let mut d = Vec::new();
    let dir = doc.file.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = required_str(doc, &doc.root, "", "name", &mut d).unwrap_or_default();
    let flow_name = optional_str(doc, &doc.root, "", "flow", &mut d).unwrap_or(name.clone());
    let flow = if flow_name.is_empty() {
        PathBuf::new()
    } else {
        match resolve_flow_dir(&dir, &flow_name) {
            Some(p) => p,
            None => {
                let path = if doc.has("flow") { "flow" } else { "name" };
                d.push(
                    doc.error(path, missing_flow(&dir, &flow_name, "flow"))
                        .with_label("no flow.dag.yaml here")
                        .with_help(format!(
                            "`flow` is the flow's folder relative to {} (also looked in flows/{flow_name})",
                            dir.display()
                        )),
                );
                PathBuf::new()
            }
        }
    };
    if !matches!(doc.get("datasets"), Some(Value::Sequence(s)) if !s.is_empty()) {
        let at = if doc.has("datasets") { "datasets" } else { "" };
        d.push(
            doc.error(at, "no datasets configured for experiment")
                .with_help("add `datasets:` with `- name: ...`, `source: path/to/data.jsonl` and `mappings:`"),
        );
    }
    let datasets = read_datasets(doc, &dir, &mut d);
    let evaluators = read_evaluators(doc, &dir, &datasets, &mut d);
    let connections = read_connections(doc, &mut d);
    let runtime = optional_str(doc, &doc.root, "", "runtime", &mut d);
    let init = read_init(doc, &doc.root, "", &mut d);
    let extras = read_extras(doc, &mut d);
    if d.is_empty() {
        Ok(Experiment {
            name,
            file: doc.file.clone(),
            overlay: None,
            dir,
            flow,
            connections,
            datasets,
            evaluators,
            runtime,
            init,
            extras,
        })
    } else {
        Err(ExperimentFileError { diagnostics: d })
    }
}

/// `dir/flow` when it holds a flow, else `dir/flows/flow` (the template's `flows` folder).
/// What is wrong with `flow` (relative to `dir`) when [`resolve_flow_dir`] found no flow: not
/// there at all, or a folder without a flow file (saying what it holds, e.g. a script of
/// promptflow's evaluation SDK, which is not a flow).
fn missing_flow(dir: &Path, flow: &str, what: &str) -> String {
    let Some(folder) = [dir.join(flow), dir.join("flows").join(flow)]
        .into_iter()
        .find(|p| p.is_dir())
    else {
        return format!("{what} `{flow}` not found");
    };
    let mut names: Vec<String> = std::fs::read_dir(&folder)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.') && n != "__pycache__")
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let holds = match names.len() {
        0 => "nothing".to_string(),
        n if n > 6 => format!("{}, ... ({n} entries)", names[..6].join(", ")),
        _ => names.join(", "),
    };
    format!(
        "{what} `{flow}` is a folder with no flow file in it (flow.dag.yaml, flow.flex.yaml or their .yml forms; it holds {holds}): a Python script that calls an SDK itself (promptflow's `evaluate`, say) is not a flow `flow` can run"
    )
}

fn resolve_flow_dir(dir: &Path, flow: &str) -> Option<PathBuf> {
    [dir.join(flow), dir.join("flows").join(flow)]
        .into_iter()
        .find(|p| {
            [
                "flow.dag.yaml",
                "flow.dag.yml",
                "flow.flex.yaml",
                "flow.flex.yml",
            ]
            .iter()
            .any(|f| p.join(f).is_file())
                || p.is_file()
        })
}

/// `dir/source` when it exists, else `dir/data/source` (as the template looks).
fn resolve_source(
    doc: &Doc,
    dir: &Path,
    source: &str,
    path: &str,
    d: &mut Vec<Diagnostic>,
) -> PathBuf {
    if source.starts_with("azureml:") {
        d.push(
            doc.error(path, format!("`{source}` is an Azure ML dataset; flow runs local files"))
                .with_help("download it and point `source` at the local file (or use an overlay such as experiment.dev.yaml)"),
        );
        return PathBuf::new();
    }
    let direct = dir.join(source);
    if direct.is_file() {
        return direct;
    }
    let in_data = dir.join("data").join(source);
    if in_data.is_file() {
        return in_data;
    }
    d.push(
        doc.error(path, format!("dataset file `{source}` not found"))
            .with_help(format!(
                "paths are relative to {} (data/{source} was tried too)",
                dir.display()
            )),
    );
    direct
}

fn read_mappings(
    doc: &Doc,
    map: &Mapping,
    path: &str,
    d: &mut Vec<Diagnostic>,
) -> Map<String, Json> {
    let p = join_key(path, "mappings");
    match map.get("mappings") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Mapping(m)) => {
            let mut out = Map::new();
            for (k, v) in m {
                let Some(k) = scalar_text(k) else { continue };
                match serde_json::to_value(v) {
                    Ok(j) => {
                        out.insert(k, j);
                    }
                    Err(e) => d.push(doc.error(&join_key(&p, &k), format!("bad mapping: {e}"))),
                }
            }
            out
        }
        Some(_) => {
            d.push(
                doc.error(&p, "`mappings` must be a mapping of input names")
                    .with_help("write `mappings:` then `  input_name: \"${data.column}\"`"),
            );
            Map::new()
        }
    }
}

/// Parse the `datasets` block (checked as the template checks it).
pub(crate) fn read_datasets(doc: &Doc, dir: &Path, d: &mut Vec<Diagnostic>) -> Vec<Dataset> {
    let mut out: Vec<Dataset> = Vec::new();
    let what = "`- name: ...`, `source: data.jsonl`, `mappings: {input: \"${data.column}\"}`";
    for (path, m) in mappings(doc, doc.get("datasets"), "datasets", what, d) {
        let name = required_str(doc, m, &path, "name", d);
        let source = required_str(doc, m, &path, "source", d);
        if !m.contains_key("mappings") {
            d.push(
                doc.error(&path, format!("dataset '{}' config missing parameter: mappings", name.clone().unwrap_or_default()))
                    .with_help("add `mappings:` (flow input → \"${data.column}\"); an empty `mappings:` maps same-named columns"),
            );
        }
        if m.contains_key("reference") {
            d.push(
                doc.error_at_key(
                    &join_key(&path, "reference"),
                    "`reference` is only for evaluator datasets",
                )
                .with_help("remove it, or move this dataset under an evaluator's `datasets`"),
            );
        }
        let description = optional_str(doc, m, &path, "description", d);
        let mappings = read_mappings(doc, m, &path, d);
        let (Some(name), Some(source)) = (name, source) else {
            continue;
        };
        if out.iter().any(|x| x.name == name) {
            d.push(doc.error(
                &join_key(&path, "name"),
                format!("dataset `{name}` is defined twice"),
            ));
            continue;
        }
        let source = resolve_source(doc, dir, &source, &join_key(&path, "source"), d);
        out.push(Dataset {
            name,
            source,
            description,
            mappings,
            origin: doc.origin(&path),
        });
    }
    out
}

/// Parse the `evaluators` block against the flow datasets `datasets`.
pub(crate) fn read_evaluators(
    doc: &Doc,
    dir: &Path,
    datasets: &[Dataset],
    d: &mut Vec<Diagnostic>,
) -> Vec<Evaluator> {
    let mut out = Vec::new();
    let what = "`- name: ...`, `flow: flows/eval` (or `builtin: exact_match`), `datasets: [...]`";
    for (path, m) in mappings(doc, doc.get("evaluators"), "evaluators", what, d) {
        let Some(name) = required_str(doc, m, &path, "name", d) else {
            continue;
        };
        if !m.contains_key("datasets") {
            d.push(
                doc.error(
                    &path,
                    format!("evaluator '{name}' config missing: datasets"),
                )
                .with_help("add `datasets:` naming the flow datasets it scores, with `mappings`"),
            );
        }
        let kind = match m.get("builtin") {
            Some(b) => {
                let bp = join_key(&path, "builtin");
                let Some(b) = scalar_text(b) else {
                    d.push(doc.error(&bp, "`builtin` must be an evaluator name"));
                    continue;
                };
                let options = read_options(doc, m, &path, d);
                if is_model_evaluator(&b) {
                    match model_spec(&b, &options) {
                        Ok((text, spec)) => EvaluatorKind::Model { text, spec },
                        Err(e) => {
                            d.push(doc.error(&bp, format!("evaluator `{name}`: {e}")).with_help(
                                "a judge needs `options: {connection: <name>}` (and may take model, threshold)",
                            ));
                            continue;
                        }
                    }
                } else {
                    match EvaluatorSpec::from_options(&b, options, dir) {
                        Ok(mut spec) => {
                            spec.name = name.clone();
                            EvaluatorKind::Builtin(spec)
                        }
                        Err(e) => {
                            d.push(doc.error(&bp, format!("evaluator `{name}`: {e}")));
                            continue;
                        }
                    }
                }
            }
            None => {
                let flow = optional_str(doc, m, &path, "flow", d).unwrap_or(name.clone());
                match resolve_flow_dir(dir, &flow) {
                    Some(p) => EvaluatorKind::Flow(p),
                    None => {
                        let at = if m.contains_key("flow") {
                            join_key(&path, "flow")
                        } else {
                            join_key(&path, "name")
                        };
                        d.push(
                            doc.error(&at, missing_flow(dir, &flow, "evaluation flow"))
                                .with_help(format!(
                                    "`flow` is the evaluation flow's folder relative to {} (flows/{flow} was tried too); for a built-in evaluator write `builtin: exact_match`",
                                    dir.display()
                                )),
                        );
                        continue;
                    }
                }
            }
        };
        let ds_path = join_key(&path, "datasets");
        let what = "`- name: <dataset>` and `mappings:`";
        let mut eval_datasets = Vec::new();
        for (p, dm) in mappings(doc, m.get("datasets"), &ds_path, what, d) {
            let Some(ds_name) = required_str(doc, dm, &p, "name", d) else {
                continue;
            };
            if !dm.contains_key("mappings") {
                d.push(
                    doc.error(
                        &p,
                        format!("dataset '{ds_name}' config missing parameter: mappings"),
                    )
                    .with_help("add `mappings:` such as `prediction: \"${run.outputs.category}\"`"),
                );
            }
            let mappings = read_mappings(doc, dm, &p, d);
            let existing = datasets.iter().find(|x| x.name == ds_name);
            let (reference, source) = match existing {
                Some(x) => {
                    for key in ["source", "reference"] {
                        if dm.contains_key(key) {
                            d.push(
                                doc.error_at_key(&join_key(&p, key), format!("dataset '{ds_name}' config doesn't support parameter: {key}"))
                                    .with_help(format!("`{ds_name}` is a flow dataset: it is used as is; to score a related file, give it a new name with `source` and `reference: {ds_name}`")),
                            );
                        }
                    }
                    (x.name.clone(), x.source.clone())
                }
                None => {
                    let reference = required_str(doc, dm, &p, "reference", d);
                    let source = required_str(doc, dm, &p, "source", d);
                    let (Some(reference), Some(source)) = (reference, source) else {
                        continue;
                    };
                    if !datasets.iter().any(|x| x.name == reference) {
                        let names: Vec<&str> = datasets.iter().map(|x| x.name.as_str()).collect();
                        let mut diag = doc.error(
                            &join_key(&p, "reference"),
                            format!("referenced dataset '{reference}' not defined"),
                        );
                        diag = match crate::model::closest(&reference, names.iter().copied()) {
                            Some(c) => diag.with_help(format!(
                                "did you mean `{c}`? datasets: {}",
                                names.join(", ")
                            )),
                            None => diag.with_help(format!("datasets: {}", names.join(", "))),
                        };
                        d.push(diag);
                        continue;
                    }
                    let source = resolve_source(doc, dir, &source, &join_key(&p, "source"), d);
                    (reference, source)
                }
            };
            eval_datasets.push(EvalDataset {
                name: ds_name,
                reference,
                source,
                mappings,
                origin: doc.origin(&p),
            });
        }
        let init = read_init(doc, m, &path, d);
        if init.is_some() && !matches!(kind, EvaluatorKind::Flow(_)) {
            d.push(
                doc.error_at_key(&join_key(&path, "init"), format!("evaluator `{name}`: `init` is for an evaluation flow's class entry; a built-in evaluator takes `options`"))
                    .with_help("remove `init`, or give the built-in's settings under `options:`"),
            );
        }
        out.push(Evaluator {
            name,
            kind,
            init,
            datasets: eval_datasets,
            origin: doc.origin(&path),
        });
    }
    out
}

/// A built-in evaluator's `options:` mapping (`{pattern: "^a", ignore_case: true}`).
fn read_options(
    doc: &Doc,
    m: &Mapping,
    path: &str,
    d: &mut Vec<Diagnostic>,
) -> Vec<(String, Option<String>)> {
    match m.get("options") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Mapping(o)) => o
            .iter()
            .filter_map(|(k, v)| {
                let k = scalar_text(k)?;
                match v {
                    Value::Null | Value::Bool(true) => Some((k, None)),
                    other => match scalar_text(other) {
                        Some(t) => Some((k, Some(t))),
                        None => serde_json::to_string(other).ok().map(|t| (k, Some(t))),
                    },
                }
            })
            .collect(),
        Some(_) => {
            d.push(doc.error(&join_key(path, "options"), "`options` must be a mapping"));
            Vec::new()
        }
    }
}

/// Parse the `connections` block.
pub(crate) fn read_connections(doc: &Doc, d: &mut Vec<Diagnostic>) -> Vec<ConnectionDef> {
    let mut out = Vec::new();
    let what = "`- name: ...`, `connection_type: AzureOpenAIConnection`, `api_key: ${api_key}`";
    for (path, m) in mappings(doc, doc.get("connections"), "connections", what, d) {
        let name = required_str(doc, m, &path, "name", d);
        let connection_type = required_str(doc, m, &path, "connection_type", d);
        let (Some(name), Some(connection_type)) = (name, connection_type) else {
            continue;
        };
        let mut properties = IndexMap::new();
        for (k, v) in m {
            let Some(k) = scalar_text(k) else { continue };
            if k == "name" || k == "connection_type" {
                continue;
            }
            let p = join_key(&path, &k);
            match v {
                // CustomConnection `configs:` / `secrets:` hold more properties.
                Value::Mapping(inner) => {
                    for (ik, iv) in inner {
                        if let (Some(ik), Some(iv)) = (scalar_text(ik), scalar_text(iv)) {
                            let ip = join_key(&p, &ik);
                            properties.insert(ik, (iv, doc.origin(&ip)));
                        }
                    }
                }
                Value::Null => {}
                other => match scalar_text(other) {
                    Some(t) => {
                        properties.insert(k, (t, doc.origin(&p)));
                    }
                    None => d.push(doc.error(&p, format!("`{k}` must be a text"))),
                },
            }
        }
        out.push(ConnectionDef {
            name,
            connection_type,
            properties,
            origin: doc.origin(&path),
        });
    }
    out
}

/// Parse flow's own blocks: `variants`, `combinations`, `sweep`, `winner`.
pub(crate) fn read_extras(doc: &Doc, d: &mut Vec<Diagnostic>) -> Extras {
    let mut extras = Extras::default();
    match doc.get("variants") {
        None | Some(Value::Null) => {}
        Some(Value::Sequence(items)) => {
            let specs: Vec<String> = items.iter().filter_map(scalar_text).collect();
            extras.variants = Some((specs, doc.origin("variants")));
        }
        Some(v) => match scalar_text(v) {
            Some(s) => extras.variants = Some((vec![s], doc.origin("variants"))),
            None => d.push(
                doc.error(
                    "variants",
                    "`variants` must be `all`, `default` or a list of variant ids",
                )
                .with_help("e.g. `variants: all` or `variants: [classify.variant_1]`"),
            ),
        },
    }
    match doc.get("combinations") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => extras.combinations = Some((None, doc.origin("combinations"))),
        Some(Value::String(s)) if s == "all" => {
            extras.combinations = Some((None, doc.origin("combinations")))
        }
        Some(Value::Sequence(items)) => {
            let nodes: Vec<String> = items.iter().filter_map(scalar_text).collect();
            extras.combinations = Some((Some(nodes), doc.origin("combinations")));
        }
        Some(_) => d.push(
            doc.error(
                "combinations",
                "`combinations` must be `true` or a list of node names",
            )
            .with_help("e.g. `combinations: [summarize, classify]`"),
        ),
    }
    let what = "`- node: classify`, `parameters: {temperature: [0, 0.7]}`";
    for (path, m) in mappings(doc, doc.get("sweep"), "sweep", what, d) {
        let node = required_str(doc, m, &path, "node", d);
        let variant = optional_str(doc, m, &path, "variant", d);
        let pp = join_key(&path, "parameters");
        let mut parameters = IndexMap::new();
        match m.get("parameters") {
            Some(Value::Mapping(params)) if !params.is_empty() => {
                for (k, v) in params {
                    let Some(k) = scalar_text(k) else { continue };
                    let values: Vec<&Value> = match v {
                        Value::Sequence(s) => s.iter().collect(),
                        other => vec![other],
                    };
                    let kp = join_key(&pp, &k);
                    if values.is_empty() {
                        d.push(
                            doc.error(&kp, format!("parameter `{k}` has no values"))
                                .with_help("give a list such as `[0, 0.7]`"),
                        );
                        continue;
                    }
                    let mut json = Vec::new();
                    for v in values {
                        match serde_json::to_value(v) {
                            Ok(j) if !j.is_null() => json.push(j),
                            _ => d.push(doc.error(&kp, format!("parameter `{k}` has a value that is not a number, text or boolean"))),
                        }
                    }
                    parameters.insert(k, json);
                }
            }
            _ => d.push(
                doc.error(
                    if m.contains_key("parameters") {
                        &pp
                    } else {
                        &path
                    },
                    "a sweep needs `parameters`: a mapping of node inputs to lists of values",
                )
                .with_help(
                    "e.g. `parameters: {temperature: [0, 0.7], model: [gpt-4o-mini, gpt-4o]}`",
                ),
            ),
        }
        if let Some(node) = node {
            extras.sweeps.push(SweepDef {
                node,
                variant,
                parameters,
                origin: doc.origin(&join_key(&path, "node")),
            });
        }
    }
    match doc.get("winner") {
        None | Some(Value::Null) => {}
        Some(Value::Mapping(m)) => {
            let metric = optional_str(doc, m, "winner", "metric", d);
            let goal = optional_str(doc, m, "winner", "goal", d);
            let higher_is_better = match goal.as_deref() {
                None => None,
                Some("max" | "maximize" | "higher") => Some(true),
                Some("min" | "minimize" | "lower") => Some(false),
                Some(other) => {
                    d.push(doc.error("winner.goal", format!("`goal: {other}` is not max or min")));
                    None
                }
            };
            extras.winner = Some(WinnerDef {
                metric,
                higher_is_better,
                origin: doc.origin("winner"),
            });
        }
        Some(v) => match scalar_text(v) {
            Some(metric) => {
                extras.winner = Some(WinnerDef {
                    metric: Some(metric),
                    higher_is_better: None,
                    origin: doc.origin("winner"),
                })
            }
            None => d.push(doc.error(
                "winner",
                "`winner` must be a metric name or `{metric: ..., goal: max|min}`",
            )),
        },
    }
    extras
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A project with a flow, an evaluation flow and two data files; `experiment.yaml` = `text`.
    fn load_text(text: &str) -> Result<Experiment, ExperimentFileError> {
        let dir = tempfile::tempdir().unwrap();
        for f in ["flows/f", "flows/eval"] {
            std::fs::create_dir_all(dir.path().join(f)).unwrap();
            std::fs::write(dir.path().join(f).join("flow.dag.yaml"), "inputs: {}\n").unwrap();
        }
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        std::fs::write(dir.path().join("data/a.jsonl"), "{}\n").unwrap();
        std::fs::write(dir.path().join("labels.jsonl"), "{}\n").unwrap();
        let file = dir.path().join("experiment.yaml");
        std::fs::write(&file, text).unwrap();
        load(&file, None)
    }

    const BASE: &str = "name: x\nflow: f\ndatasets:\n- name: a\n  source: a.jsonl\n  mappings: {q: \"${data.q}\"}\n";

    #[test]
    fn the_template_layout_resolves_flows_and_data_folders() {
        let e = load_text(BASE).unwrap();
        assert!(e.flow.ends_with("flows/f"), "{:?}", e.flow);
        assert!(e.datasets[0].source.ends_with("data/a.jsonl"));
        assert_eq!(e.datasets[0].mappings["q"], "${data.q}");
        // `flow` defaults to the name.
        let e = load_text(&BASE.replace("name: x\nflow: f\n", "name: f\n")).unwrap();
        assert!(e.flow.ends_with("flows/f"));
    }

    #[test]
    fn evaluator_datasets_follow_the_template_rules() {
        let ok = format!(
            "{BASE}evaluators:\n- name: eval\n  datasets:\n  - name: a\n    mappings: {{p: \"${{run.outputs.o}}\"}}\n  - name: a_labels\n    reference: a\n    source: labels.jsonl\n    mappings: {{}}\n"
        );
        let e = load_text(&ok).unwrap();
        let ev = &e.evaluators[0];
        assert!(matches!(&ev.kind, EvaluatorKind::Flow(p) if p.ends_with("flows/eval")));
        assert_eq!(ev.datasets[1].reference, "a");
        assert!(ev.datasets[1].source.ends_with("labels.jsonl"));
        assert_eq!(e.evaluations_of("a").count(), 2);

        let existing_with_source = format!(
            "{BASE}evaluators:\n- name: eval\n  datasets:\n  - name: a\n    source: labels.jsonl\n    mappings: {{}}\n"
        );
        let err = load_text(&existing_with_source).unwrap_err().to_string();
        assert!(err.contains("doesn't support parameter: source"), "{err}");

        let reference_in_datasets = BASE.replace("  mappings:", "  reference: b\n  mappings:");
        let err = load_text(&reference_in_datasets).unwrap_err().to_string();
        assert!(
            err.contains("`reference` is only for evaluator datasets"),
            "{err}"
        );

        let azure = BASE.replace("source: a.jsonl", "source: azureml:a:1");
        let err = load_text(&azure).unwrap_err().to_string();
        assert!(err.contains("Azure ML dataset"), "{err}");
    }

    #[test]
    fn flows_blocks_are_read() {
        let text = format!(
            "{BASE}variants: [f.v1, \"f.v1+g.v2\"]\ncombinations: [f]\nsweep:\n- node: f\n  variant: v1\n  parameters: {{temperature: [0, 0.7], model: gpt-4o}}\nwinner: {{metric: accuracy, goal: min}}\n"
        );
        let e = load_text(&text).unwrap();
        assert_eq!(e.extras.variants.as_ref().unwrap().0, ["f.v1", "f.v1+g.v2"]);
        assert_eq!(
            e.extras.combinations.as_ref().unwrap().0,
            Some(vec!["f".to_string()])
        );
        let sweep = &e.extras.sweeps[0];
        assert_eq!(sweep.variant.as_deref(), Some("v1"));
        assert_eq!(sweep.parameters["temperature"].len(), 2);
        assert_eq!(sweep.parameters["model"], [serde_json::json!("gpt-4o")]);
        let w = e.extras.winner.as_ref().unwrap();
        assert_eq!(w.metric.as_deref(), Some("accuracy"));
        assert_eq!(w.higher_is_better, Some(false));
        let bad = load_text(&format!("{BASE}sweep:\n- node: f\n")).unwrap_err();
        assert!(bad.to_string().contains("a sweep needs `parameters`"));
    }
}
