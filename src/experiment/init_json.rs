//! The GenAIOps template's `init.json`: a flex flow whose entry is a class keeps its
//! `__init__` arguments in `init.json` beside its flow file, and the template's pipelines make
//! the class with them (`llmops/common/common.py`). A value written `${...}` is read from the
//! environment: `<ARGUMENT>_<FIELD>` upper-cased for a field of an object argument
//! (`model_config` + `api_key` → `MODEL_CONFIG_API_KEY`), `<ARGUMENT>` for a string argument.
//!
//! An experiment's own `init:` (or an evaluator's) wins; `init.json` is read only where the
//! file gives none, and only for a class entry, as the template does. A placeholder whose
//! variable is not set is refused before anything runs (the template would pass the text
//! `${...}` on as the value), unless no request will be made (offline, replay).

use std::path::Path;

use indexmap::IndexMap;
use serde_json::{Map, Value};

use super::doc::Origin;
use super::file::{EvaluatorKind, Experiment, Init};
use super::placeholder::placeholder_name;
use crate::connection::EnvVars;
use crate::diagnostic::Diagnostic;

/// The file name the template reads.
pub const INIT_FILE: &str = "init.json";

/// Give the experiment's flow and its evaluation flows without `init:` the `init.json` their
/// folder holds (class entries only). `lenient`: keep an unset placeholder as written. The
/// notes say which `init.json` files are not used (beside an entry that is not a class).
pub fn apply(
    exp: &mut Experiment,
    env: &EnvVars,
    lenient: bool,
) -> Result<Vec<String>, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    if exp.init.is_none() {
        exp.init = read(&exp.flow, env, lenient, &mut problems, &mut notes);
    }
    for e in &mut exp.evaluators {
        if let (None, EvaluatorKind::Flow(dir)) = (&e.init, &e.kind) {
            e.init = read(dir, env, lenient, &mut problems, &mut notes);
        }
    }
    if problems.is_empty() {
        Ok(notes)
    } else {
        Err(problems)
    }
}

/// `dir/init.json` as an `init:`, when `dir` is a flex flow whose entry is a class.
fn read(
    dir: &Path,
    env: &EnvVars,
    lenient: bool,
    problems: &mut Vec<Diagnostic>,
    notes: &mut Vec<String>,
) -> Option<Init> {
    let file = dir.join(INIT_FILE);
    if !file.is_file() {
        return None;
    }
    if !class_entry(dir) {
        notes.push(format!(
            "{} is not used: the flow's entry is not a class (`entry: module:Name` with `class Name` in module.py), and only a class takes `__init__` arguments",
            file.display()
        ));
        return None;
    }
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) => {
            problems.push(Diagnostic::error(format!(
                "cannot read {}: {e}",
                file.display()
            )));
            return None;
        }
    };
    let values: Map<String, Value> = match serde_json::from_str(&text) {
        Ok(Value::Object(m)) => m,
        Ok(_) => {
            problems.push(
                Diagnostic::error(format!(
                    "{} must be a JSON object of the class's `__init__` arguments",
                    file.display()
                ))
                .with_help("write e.g. {\"model_config\": {\"connection\": \"aoai\"}}"),
            );
            return None;
        }
        Err(e) => {
            problems.push(Diagnostic::error(format!(
                "{}:{}:{}: not valid JSON: {e}",
                file.display(),
                e.line(),
                e.column()
            )));
            return None;
        }
    };
    let mut resolved = Map::new();
    for (key, value) in values {
        let value = match value {
            Value::Object(fields) => Value::Object(
                fields
                    .into_iter()
                    .map(|(field, v)| {
                        let var = format!("{key}_{field}").to_uppercase();
                        let v = resolve(
                            v,
                            &var,
                            &format!("{key}.{field}"),
                            &file,
                            env,
                            lenient,
                            problems,
                        );
                        (field, v)
                    })
                    .collect(),
            ),
            other => {
                let var = key.to_uppercase();
                resolve(other, &var, &key, &file, env, lenient, problems)
            }
        };
        resolved.insert(key, value);
    }
    let origin = Origin {
        file: file.clone(),
        path: String::new(),
        location: None,
    };
    let keys: IndexMap<String, Origin> = resolved
        .keys()
        .map(|k| (k.clone(), origin.clone()))
        .collect();
    Some(Init {
        values: resolved,
        origin,
        keys,
    })
}

/// A `${...}` value read from `var`; any other value as written.
fn resolve(
    value: Value,
    var: &str,
    place: &str,
    file: &Path,
    env: &EnvVars,
    lenient: bool,
    problems: &mut Vec<Diagnostic>,
) -> Value {
    let Some(text) = value.as_str() else {
        return value;
    };
    if placeholder_name(text).is_none() {
        return value;
    }
    match env.get(var) {
        Some(v) if !v.is_empty() => Value::String(v.to_string()),
        _ if lenient => value,
        _ => {
            problems.push(
                Diagnostic::error(format!(
                    "{}: `{place}` is `{text}`, to be read from {var}, which is not set",
                    file.display()
                ))
                .with_help(format!(
                    "set {var} in {} or the environment (the GenAIOps template reads it from there), or write the value itself",
                    env.file_text()
                )),
            );
            value
        }
    }
}

/// Whether `dir`'s flex flow names a class as its entry (`entry: module:Name`, and `module.py`
/// defines `class Name`), as the template decides by reading the module's source.
fn class_entry(dir: &Path) -> bool {
    let Some(entry) = [
        "flow.flex.yaml",
        "flow.flex.yml",
        "flow.dag.yaml",
        "flow.dag.yml",
    ]
    .iter()
    .map(|f| dir.join(f))
    .find(|p| p.is_file())
    .and_then(|p| std::fs::read_to_string(p).ok())
    .and_then(|text| {
        text.lines().find_map(|l| {
            l.strip_prefix("entry:")
                .map(|e| e.trim().trim_matches(['"', '\'']).to_string())
        })
    }) else {
        return false;
    };
    let Some((module, name)) = entry.split_once(':') else {
        return false;
    };
    let source = dir.join(format!("{}.py", module.replace('.', "/")));
    let Ok(text) = std::fs::read_to_string(source) else {
        return false;
    };
    text.lines().any(|l| {
        l.strip_prefix("class ")
            .map(str::trim_start)
            .and_then(|rest| rest.strip_prefix(name))
            .is_some_and(|after| {
                after.starts_with(['(', ':']) || after.trim_start().starts_with(['(', ':'])
            })
    })
}
