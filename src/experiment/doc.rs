//! One experiment YAML file held with its position index, so every problem found while reading
//! it can point at the text (like the flow loader's diagnostics).

use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use super::file::ExperimentFileError;
use crate::diagnostic::{Diagnostic, Location};
use crate::model::locate::{YamlIndex, join_index, join_key};

/// Where a value came from: its file and YAML path (`evaluators[0].datasets[1].name`).
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    pub file: PathBuf,
    pub path: String,
    pub location: Option<Location>,
}

impl Origin {
    /// An error about this value.
    pub fn error(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(message).at(&self.file, self.location)
    }
}

/// A parsed experiment file.
#[derive(Debug)]
pub(crate) struct Doc {
    pub file: PathBuf,
    pub root: Mapping,
    index: YamlIndex,
}

impl Doc {
    /// Read and parse `file`; an empty file is an empty mapping (GenAIOps overlays may be empty).
    pub fn read(file: &Path) -> Result<Doc, ExperimentFileError> {
        let text = std::fs::read_to_string(file).map_err(|e| {
            Diagnostic::error(format!("cannot read {}: {e}", file.display()))
                .with_help("give the experiment file as `flow experiment path/to/experiment.yaml`")
        })?;
        Self::parse(file, &text)
    }

    /// Parse `text` as the contents of `file`.
    pub fn parse(file: &Path, text: &str) -> Result<Doc, ExperimentFileError> {
        let value: Value = if text.trim().is_empty() {
            Value::Mapping(Mapping::new())
        } else {
            serde_yaml::from_str(text).map_err(|e| {
                let location = e.location().map(|l| Location::new(l.line(), l.column(), 1));
                Diagnostic::error(format!("invalid YAML: {e}"))
                    .at(file, location)
                    .with_help("fix the YAML syntax (indentation, quoting, `key: value` pairs)")
            })?
        };
        let root = match value {
            Value::Mapping(m) => m,
            Value::Null => Mapping::new(),
            _ => {
                return Err(
                    Diagnostic::error("an experiment file must be a YAML mapping")
                        .at(file, Some(Location::new(1, 1, 1)))
                        .with_help("start with `name: <experiment name>`")
                        .into(),
                );
            }
        };
        Ok(Doc {
            file: file.to_path_buf(),
            root,
            index: YamlIndex::build(text),
        })
    }

    /// The origin of the value at `path`.
    pub fn origin(&self, path: &str) -> Origin {
        Origin {
            file: self.file.clone(),
            path: path.to_string(),
            location: self.index.value(path),
        }
    }

    /// An error pointing at the value at `path`.
    pub fn error(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        self.origin(path).error(message)
    }

    /// An error pointing at the key of the entry at `path`.
    pub fn error_at_key(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(message).at(&self.file, self.index.key(path))
    }

    /// Whether the top level has `key` (even with an empty value).
    pub fn has(&self, key: &str) -> bool {
        self.root.contains_key(key)
    }

    /// The top-level value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.root.get(key)
    }
}

/// A YAML scalar as text (`0.7`, `true`, `gpt-4o`); `None` for mappings, sequences and null.
pub(crate) fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A sequence of mappings at `path` (`null` is empty), each with its own path.
pub(crate) fn mappings<'a>(
    doc: &Doc,
    value: Option<&'a Value>,
    path: &str,
    what: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<(String, &'a Mapping)> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Sequence(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let p = join_index(path, i);
                match item {
                    Value::Mapping(m) => Some((p, m)),
                    _ => {
                        diagnostics.push(
                            doc.error(&p, format!("each entry of `{path}` must be a mapping"))
                                .with_help(format!("write {what}")),
                        );
                        None
                    }
                }
            })
            .collect(),
        Some(_) => {
            diagnostics.push(
                doc.error(path, format!("`{path}` must be a list"))
                    .with_help(format!("write `{path}:` followed by `- ` entries: {what}")),
            );
            Vec::new()
        }
    }
}

/// A required string field `key` of the mapping at `path`.
pub(crate) fn required_str(
    doc: &Doc,
    map: &Mapping,
    path: &str,
    key: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<String> {
    let p = join_key(path, key);
    match map.get(key) {
        Some(v) => match scalar_text(v) {
            Some(s) if !s.trim().is_empty() => Some(s),
            _ => {
                diagnostics.push(doc.error(&p, format!("`{key}` must be a non-empty text")));
                None
            }
        },
        None => {
            diagnostics.push(
                doc.error(path, format!("`{path}` has no `{key}`"))
                    .with_label(format!("`{key}` missing here"))
                    .with_help(format!("add `{key}: ...`")),
            );
            None
        }
    }
}

/// An optional string field.
pub(crate) fn optional_str(
    doc: &Doc,
    map: &Mapping,
    path: &str,
    key: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<String> {
    match map.get(key) {
        None | Some(Value::Null) => None,
        Some(v) => match scalar_text(v) {
            Some(s) => Some(s),
            None => {
                diagnostics.push(doc.error(
                    &join_key(path, key),
                    format!("`{key}` must be a text, not a list or mapping"),
                ));
                None
            }
        },
    }
}
