//! What a dataset and a column mapping will give a flow, checked on the dataset's first row
//! before any line runs (docs/refusals.md): a mapped column the dataset does not have, a mapping
//! to something that is not a flow input, an input with no default that nothing feeds, a
//! dataset none of whose columns reaches the flow, an empty dataset. Each is a configuration
//! error naming what is wrong, the closest name and what exists; an input that falls back to its
//! default on every line is a notice. The dataset stays streamed: only its first row is read.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use super::mapping::{ColumnMapping, MappingSource};
use crate::model::{FlowInput, closest};

/// Why a dataset cannot feed a flow as mapped.
#[derive(Debug, thiserror::Error)]
pub enum InputsError {
    /// The dataset has no rows.
    #[error("{} has no rows: there is nothing to run\n  help: check the file, or give another with --data", .data.display())]
    EmptyDataset { data: PathBuf },
    /// Every row of the dataset is malformed.
    #[error("no row of {} can be read; the first: {first}\n  help: check the file's format", .data.display())]
    NoReadableRow { data: PathBuf, first: String },
    /// A mapping names a column the dataset does not have.
    #[error(
        "--column-mapping {input}='{expr}': {} has no column `{column}`{}\n  columns: {}",
        .data.display(),
        suggestion(.closest.as_deref()),
        list(.columns)
    )]
    MissingColumn {
        data: PathBuf,
        input: String,
        expr: String,
        column: String,
        closest: Option<String>,
        columns: Vec<String>,
    },
    /// A mapping's target is not an input of the flow.
    #[error(
        "--column-mapping {target}=...: the flow has no input `{target}`{}\n  inputs: {}",
        suggestion(.closest.as_deref()),
        list(.inputs)
    )]
    UnknownTarget {
        target: String,
        closest: Option<String>,
        inputs: Vec<String>,
    },
    /// An input with no default that no mapping and no column feeds.
    #[error(
        "the flow's input `{input}` has no default, and {} has no column `{input}` and no --column-mapping feeds it{}\n  help: map it, e.g. --column-mapping {input}='${{data.{}}}'\n  columns: {}",
        .data.display(),
        suggestion(.closest.as_deref()),
        .closest.as_deref().unwrap_or("COLUMN"),
        list(.columns)
    )]
    Unfed {
        data: PathBuf,
        input: String,
        closest: Option<String>,
        columns: Vec<String>,
    },
    /// No column of the dataset reaches any input, so every line would run on defaults alone.
    #[error(
        "none of the columns of {} ({}) reaches an input of the flow ({}): every line would run on the inputs' defaults\n  help: name columns after the inputs, or map them with --column-mapping INPUT='${{data.COLUMN}}'",
        .data.display(),
        list(.columns),
        list(.inputs)
    )]
    NothingReaches {
        data: PathBuf,
        columns: Vec<String>,
        inputs: Vec<String>,
    },
    /// A row's image input cannot be loaded (a missing file, not an image, a malformed value).
    #[error(
        "{}:{row}: input `{input}`: {message}",
        .data.display()
    )]
    BadImage {
        data: PathBuf,
        /// The row's position (file line, or element number of a JSON array).
        row: usize,
        input: String,
        /// What is wrong, with its help line.
        message: String,
    },
    /// The dataset cannot be read.
    #[error(transparent)]
    Data(#[from] super::DataError),
}

impl crate::error::Classify for InputsError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            InputsError::Data(e) => e.class(),
            _ => crate::error::ErrorClass::Config,
        }
    }
}

fn suggestion(closest: Option<&str>) -> String {
    closest
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "(none)".to_string()
    } else {
        names.join(", ")
    }
}

/// Check that `data`, mapped by `mapping`, feeds the flow's `inputs`. Returns notices for inputs
/// that take their default on every line. `base_run` says whether `${run...}` mappings have a
/// run to read (they are checked when lines run, against that run).
pub fn check_inputs(
    data: &Path,
    mapping: &ColumnMapping,
    inputs: &IndexMap<String, FlowInput>,
) -> Result<Vec<String>, Box<InputsError>> {
    let mut reader = super::open(data).map_err(|e| Box::new(InputsError::Data(e)))?;
    let mut first_bad: Option<super::RowError> = None;
    let first = loop {
        match reader.next() {
            None => {
                if let Some(e) = reader.fatal() {
                    let e = super::DataError::new(
                        e.file.clone(),
                        e.position,
                        e.message.clone(),
                        e.hint.clone(),
                    );
                    return Err(Box::new(InputsError::Data(e)));
                }
                return Err(Box::new(match first_bad {
                    Some(bad) => InputsError::NoReadableRow {
                        data: data.to_path_buf(),
                        first: bad.to_string(),
                    },
                    None => InputsError::EmptyDataset {
                        data: data.to_path_buf(),
                    },
                }));
            }
            // A malformed row fails its own line, with its row number; the first good row says
            // what the columns are.
            Some(Err(bad)) => {
                first_bad.get_or_insert(bad);
            }
            Some(Ok(row)) => break row,
        }
    };
    let columns: Vec<String> = first.values.keys().cloned().collect();
    let input_names: Vec<String> = inputs.keys().cloned().collect();
    for (target, _) in mapping.iter() {
        if !inputs.contains_key(target) {
            return Err(Box::new(InputsError::UnknownTarget {
                target: target.to_string(),
                closest: closest(target, input_names.iter().map(String::as_str))
                    .map(str::to_string),
                inputs: input_names,
            }));
        }
    }
    let mut notices = Vec::new();
    let mut reached = false;
    for (name, input) in inputs {
        match mapping.iter().find(|(target, _)| *target == name.as_str()) {
            Some((_, MappingSource::Data(path))) => {
                let column = path.split('.').next().unwrap_or(path);
                if !first.values.contains_key(path.as_str()) && !first.values.contains_key(column)
                {
                    return Err(Box::new(InputsError::MissingColumn {
                        data: data.to_path_buf(),
                        input: name.clone(),
                        expr: format!("${{data.{path}}}"),
                        column: column.to_string(),
                        closest: closest(column, columns.iter().map(String::as_str))
                            .map(str::to_string),
                        columns,
                    }));
                }
                reached = true;
            }
            // A literal or the base run's value: fed, but not by this dataset.
            Some(_) => {}
            None if first.values.contains_key(name) => reached = true,
            None => match &input.default {
                Some(default) => notices.push(format!(
                    "note: input `{name}` takes its default ({default}) on every line: {} has no column `{name}` and no --column-mapping feeds it",
                    data.display()
                )),
                None => {
                    return Err(Box::new(InputsError::Unfed {
                        data: data.to_path_buf(),
                        input: name.clone(),
                        closest: closest(name, columns.iter().map(String::as_str))
                            .map(str::to_string),
                        columns,
                    }));
                }
            },
        }
    }
    let mapped_otherwise = mapping
        .iter()
        .any(|(_, s)| !matches!(s, MappingSource::Data(_)));
    if !reached && !inputs.is_empty() && !mapped_otherwise {
        return Err(Box::new(InputsError::NothingReaches {
            data: data.to_path_buf(),
            columns,
            inputs: input_names,
        }));
    }
    Ok(notices)
}

/// Check every row's image inputs (`type: image`, and multimedia dicts in `list`/`object`
/// inputs), as mapped, before any line runs: a missing file or one that is not an image is
/// refused with the row's position. A plain path is relative to `flow_dir`; a
/// `{"data:image/png;path": P}` to the dataset's folder (the reader resolves it). Reads the
/// dataset once more, streamed; does nothing when the flow has no such input.
pub fn check_images(
    data: &Path,
    mapping: &ColumnMapping,
    inputs: &IndexMap<String, FlowInput>,
    flow_dir: &Path,
    format: crate::image::MessageFormat,
) -> Result<(), Box<InputsError>> {
    use crate::model::ValueType;
    let may_hold =
        |ty: &ValueType| matches!(ty, ValueType::Image | ValueType::List | ValueType::Object);
    if !inputs.values().any(|i| may_hold(&i.ty)) {
        return Ok(());
    }
    let reader = super::open(data)
        .map_err(|e| Box::new(InputsError::Data(e)))?
        .with_message_format(format);
    for row in reader.flatten() {
        let Ok(given) = mapping.apply(inputs, &row, None) else {
            continue;
        };
        for (name, input) in inputs {
            let Some(value) = given.get(name) else {
                continue;
            };
            if !may_hold(&input.ty) {
                continue;
            }
            let Ok(value) = input.ty.coerce(value) else {
                continue;
            };
            if let Err(e) = crate::executor::load_images(&input.ty, value, flow_dir, format) {
                return Err(Box::new(InputsError::BadImage {
                    data: data.to_path_buf(),
                    row: row.row,
                    input: name.clone(),
                    message: e.to_string(),
                }));
            }
        }
    }
    Ok(())
}
