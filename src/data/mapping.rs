//! Column mapping: which data column (or base-run value, or literal) feeds each flow input.
//!
//! Mirrors promptflow's `apply_inputs_mapping` and `BatchInputsProcessor`, in the order promptflow
//! gives: an explicit mapping wins; a flow input that is not mapped takes the same-named column
//! when the row has one; otherwise it is left out so the executor uses its default (or reports a
//! missing required input). Other columns are not passed, as in promptflow; explicit mappings to
//! names that are not flow inputs are passed (promptflow passes them too).
//!
//! `${data.a.b}` first looks for a column literally named `a.b` (what promptflow does), then
//! walks into nested objects (`a` → `b`; a number indexes an array).

use indexmap::IndexMap;
use serde_json::{Map, Value};

use super::{BaseLine, BaseRun, DataError, Row};
use crate::model::FlowInput;

/// The reserved key promptflow ignores in a column mapping.
const LINE_NUMBER_KEY: &str = "line_number";

/// Where one mapped value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum MappingSource {
    /// `${data.PATH}`: a column of the data row.
    Data(String),
    /// `${run.outputs.PATH}`: an output of the base run's line with the same line number.
    RunOutputs(String),
    /// `${run.inputs.PATH}`: an input of the base run's line with the same line number.
    RunInputs(String),
    /// Anything else: the value itself.
    Literal(Value),
}

impl MappingSource {
    fn expr(&self) -> String {
        match self {
            MappingSource::Data(p) => format!("${{data.{p}}}"),
            MappingSource::RunOutputs(p) => format!("${{run.outputs.{p}}}"),
            MappingSource::RunInputs(p) => format!("${{run.inputs.{p}}}"),
            MappingSource::Literal(v) => v.to_string(),
        }
    }
}

/// One mapped value that was not found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingColumn {
    /// The flow input it was for.
    pub input: String,
    /// The mapping expression, e.g. `${data.answer}`.
    pub expr: String,
    /// The names that do exist where it was looked up.
    pub available: Vec<String>,
}

/// A column mapping that cannot be parsed, or cannot be applied to a row.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("--column-mapping `{arg}`: {message}")]
    Parse { arg: String, message: String },
    #[error("data row {row}: {}", missing_message(.missing))]
    MissingColumns {
        row: usize,
        line_number: usize,
        missing: Vec<MissingColumn>,
    },
    #[error(
        "data row {row}: `{expr}` needs a base run, but there is no base-run line for line_number {line_number}; pass --run BASE_RUN and check that the base run has as many lines as the data"
    )]
    NoBaseLine {
        row: usize,
        line_number: usize,
        expr: String,
    },
    #[error(
        "data row {row}: `{expr}` needs a base run; pass --run BASE_RUN (a run directory or name) or remove the mapping"
    )]
    NoBaseRun {
        row: usize,
        line_number: usize,
        expr: String,
    },
    #[error(
        "data row {row}: `{expr}`: line {line_number} of the base run failed, so it has no outputs; resume the base run (flow run --resume BASE_RUN) or drop this row"
    )]
    BaseLineFailed {
        row: usize,
        line_number: usize,
        expr: String,
    },
    #[error(
        "data row {row}: `{expr}`: the base run has no inputs.jsonl; map from `${{data.…}}` instead"
    )]
    BaseInputsMissing {
        row: usize,
        line_number: usize,
        expr: String,
    },
    #[error("reading the base run: {0}")]
    BaseRun(#[from] DataError),
}

impl crate::error::Classify for MappingError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Config
    }
}

fn missing_message(missing: &[MissingColumn]) -> String {
    let mut out = String::new();
    for (i, m) in missing.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        let place = if m.expr.starts_with("${data.") {
            "the row has columns"
        } else {
            "the base-run line has"
        };
        let available = if m.available.is_empty() {
            "(none)".to_string()
        } else {
            m.available.join(", ")
        };
        out.push_str(&format!(
            "`{}` for input `{}` is missing ({place}: {available})",
            m.expr, m.input
        ));
    }
    out.push_str("; fix --column-mapping or the data");
    out
}

/// The base-run line for a row, as far as it is known.
enum Base<'a> {
    /// No base run was given.
    NoRun,
    /// A base run was given (or may have been) but has no such line.
    NoLine,
    Line(&'a BaseLine),
}

/// A parsed `--column-mapping`: flow input name → where its value comes from, in given order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColumnMapping {
    entries: IndexMap<String, MappingSource>,
}

impl ColumnMapping {
    /// Parse `NAME=VALUE` arguments: `${data.col}`, `${run.outputs.col}`, `${run.inputs.col}`
    /// (dotted paths allowed) or a literal string. A later mapping of the same name wins; a
    /// mapping of `line_number` is ignored, as promptflow ignores it.
    pub fn parse(args: &[String]) -> Result<ColumnMapping, MappingError> {
        let mut entries = IndexMap::with_capacity(args.len());
        for arg in args {
            let Some((name, value)) = arg.split_once('=') else {
                return Err(MappingError::Parse {
                    arg: arg.clone(),
                    message: "expected NAME=VALUE, e.g. question='${data.question}'".into(),
                });
            };
            let name = name.trim();
            if name.is_empty() {
                return Err(MappingError::Parse {
                    arg: arg.clone(),
                    message: "the flow input name before `=` is empty".into(),
                });
            }
            if name == LINE_NUMBER_KEY {
                continue;
            }
            let source = parse_value(value).map_err(|message| MappingError::Parse {
                arg: arg.clone(),
                message,
            })?;
            entries.insert(name.to_string(), source);
        }
        Ok(ColumnMapping { entries })
    }

    /// A mapping written as a YAML/JSON object (e.g. in an experiment or evaluation file):
    /// string values are parsed like `--column-mapping`, other values are literals.
    pub fn from_map(map: &Map<String, Value>) -> Result<ColumnMapping, MappingError> {
        let mut entries = IndexMap::with_capacity(map.len());
        for (name, value) in map {
            if name == LINE_NUMBER_KEY {
                continue;
            }
            let source = match value {
                Value::String(s) => parse_value(s).map_err(|message| MappingError::Parse {
                    arg: format!("{name}={s}"),
                    message,
                })?,
                other => MappingSource::Literal(other.clone()),
            };
            entries.insert(name.clone(), source);
        }
        Ok(ColumnMapping { entries })
    }

    /// No explicit mappings (every input takes its same-named column, else its default).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The explicit mappings, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &MappingSource)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Whether any mapping reads `${run.outputs.…}` or `${run.inputs.…}` (so `--run` is needed).
    pub fn needs_base_run(&self) -> bool {
        self.entries.values().any(|s| {
            matches!(
                s,
                MappingSource::RunOutputs(_) | MappingSource::RunInputs(_)
            )
        })
    }

    /// The given inputs for one line: explicit mappings, then same-named columns for the other
    /// flow inputs; inputs with neither are left out (the executor applies defaults). `base` is
    /// the base run's line with this row's `line_number`, when there is one.
    pub fn apply(
        &self,
        inputs: &IndexMap<String, FlowInput>,
        row: &Row,
        base: Option<&BaseLine>,
    ) -> Result<Map<String, Value>, MappingError> {
        self.apply_inner(inputs, row, base.map_or(Base::NoLine, Base::Line))
    }

    /// Like [`apply`](Self::apply), looking the base line up in `run` only when a mapping needs
    /// it, with precise errors for a missing `--run` or a missing line. Reads the base run's
    /// files (blocking).
    pub fn apply_with_run(
        &self,
        inputs: &IndexMap<String, FlowInput>,
        row: &Row,
        run: Option<&BaseRun>,
    ) -> Result<Map<String, Value>, MappingError> {
        if !self.needs_base_run() {
            return self.apply_inner(inputs, row, Base::NoRun);
        }
        match run {
            None => self.apply_inner(inputs, row, Base::NoRun),
            Some(run) => match run.line(row.line_number)? {
                Some(line) => self.apply_inner(inputs, row, Base::Line(&line)),
                None => self.apply_inner(inputs, row, Base::NoLine),
            },
        }
    }

    fn apply_inner(
        &self,
        inputs: &IndexMap<String, FlowInput>,
        row: &Row,
        base: Base<'_>,
    ) -> Result<Map<String, Value>, MappingError> {
        let mut out = Map::with_capacity(inputs.len() + self.entries.len());
        let mut missing = Vec::new();
        for name in inputs.keys() {
            match self.entries.get(name) {
                Some(source) => {
                    if let Some(v) = self.resolve(name, source, row, &base, &mut missing)? {
                        out.insert(name.clone(), v);
                    }
                }
                None => {
                    if let Some(v) = row.values.get(name) {
                        out.insert(name.clone(), v.clone());
                    }
                }
            }
        }
        for (name, source) in &self.entries {
            if inputs.contains_key(name) {
                continue;
            }
            if let Some(v) = self.resolve(name, source, row, &base, &mut missing)? {
                out.insert(name.clone(), v);
            }
        }
        if missing.is_empty() {
            Ok(out)
        } else {
            Err(MappingError::MissingColumns {
                row: row.row,
                line_number: row.line_number,
                missing,
            })
        }
    }

    /// One mapped value; `Ok(None)` when it is missing (recorded in `missing`).
    fn resolve(
        &self,
        name: &str,
        source: &MappingSource,
        row: &Row,
        base: &Base<'_>,
        missing: &mut Vec<MissingColumn>,
    ) -> Result<Option<Value>, MappingError> {
        let (map, path) = match source {
            MappingSource::Literal(v) => return Ok(Some(v.clone())),
            MappingSource::Data(path) => (&row.values, path),
            MappingSource::RunOutputs(path) | MappingSource::RunInputs(path) => {
                let expr = source.expr();
                let (row_n, line_number) = (row.row, row.line_number);
                let line = match base {
                    Base::Line(line) => line,
                    Base::NoRun => {
                        return Err(MappingError::NoBaseRun {
                            row: row_n,
                            line_number,
                            expr,
                        });
                    }
                    Base::NoLine => {
                        return Err(MappingError::NoBaseLine {
                            row: row_n,
                            line_number,
                            expr,
                        });
                    }
                };
                let map = if matches!(source, MappingSource::RunOutputs(_)) {
                    line.outputs.as_ref().ok_or(MappingError::BaseLineFailed {
                        row: row_n,
                        line_number,
                        expr,
                    })?
                } else {
                    line.inputs
                        .as_ref()
                        .ok_or(MappingError::BaseInputsMissing {
                            row: row_n,
                            line_number,
                            expr,
                        })?
                };
                (map, path)
            }
        };
        match lookup(map, path) {
            Some(v) => Ok(Some(v.clone())),
            None => {
                missing.push(MissingColumn {
                    input: name.to_string(),
                    expr: source.expr(),
                    available: map.keys().cloned().collect(),
                });
                Ok(None)
            }
        }
    }
}

/// Parse the value side of `NAME=VALUE`.
fn parse_value(value: &str) -> Result<MappingSource, String> {
    let Some(inner) = value.strip_prefix("${") else {
        return Ok(MappingSource::Literal(Value::String(value.to_string())));
    };
    let Some(inner) = inner.strip_suffix('}').filter(|i| !i.contains(['{', '}'])) else {
        return Err(format!(
            "`{value}` starts like a reference but is not one; write ${{data.COLUMN}}, ${{run.outputs.NAME}} or ${{run.inputs.NAME}} (quote it in the shell: '${{data.COLUMN}}')"
        ));
    };
    let inner = inner.trim();
    let (source, path): (fn(String) -> MappingSource, &str) = if let Some(p) =
        inner.strip_prefix("data.")
    {
        (MappingSource::Data, p)
    } else if let Some(p) = inner.strip_prefix("run.outputs.") {
        (MappingSource::RunOutputs, p)
    } else if let Some(p) = inner.strip_prefix("run.inputs.") {
        (MappingSource::RunInputs, p)
    } else {
        return Err(format!(
            "unknown reference `{value}`; use ${{data.COLUMN}}, ${{run.outputs.NAME}} or ${{run.inputs.NAME}}"
        ));
    };
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(format!(
            "`{value}` has an empty column name; write e.g. ${{data.question}}"
        ));
    }
    Ok(source(path.to_string()))
}

/// A column by its exact name, else by walking a dotted path into nested objects and arrays.
fn lookup<'a>(map: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = map.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut current = map.get(parts.next()?)?;
    for part in parts {
        current = match current {
            Value::Object(m) => m.get(part)?,
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_sources() {
        let m = ColumnMapping::parse(&[
            "a=${data.x}".into(),
            "b=${run.outputs.y.z}".into(),
            "c=${run.inputs.q}".into(),
            "d=plain text=with equals".into(),
            "line_number=${data.n}".into(),
        ])
        .unwrap();
        let got: Vec<_> = m.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        assert_eq!(
            got,
            vec![
                ("a".into(), MappingSource::Data("x".into())),
                ("b".into(), MappingSource::RunOutputs("y.z".into())),
                ("c".into(), MappingSource::RunInputs("q".into())),
                (
                    "d".into(),
                    MappingSource::Literal(json!("plain text=with equals"))
                ),
            ]
        );
        assert!(m.needs_base_run());
    }

    #[test]
    fn rejects_malformed_arguments() {
        for bad in [
            "noequals",
            "=${data.x}",
            "a=${data.x",
            "a=${foo.x}",
            "a=${data.}",
            "a=${data}",
        ] {
            let err = ColumnMapping::parse(&[bad.to_string()]).unwrap_err();
            assert!(
                matches!(&err, MappingError::Parse { arg, .. } if arg == bad),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn lookup_prefers_exact_dotted_column_then_nests() {
        let v = json!({"a.b": 1, "a": {"b": 2, "c": [10, 20]}});
        let map = v.as_object().unwrap();
        assert_eq!(lookup(map, "a.b"), Some(&json!(1)));
        assert_eq!(lookup(map, "a.c.1"), Some(&json!(20)));
        assert_eq!(lookup(map, "a.c.2"), None);
        assert_eq!(lookup(map, "a.c.x"), None);
        assert_eq!(lookup(map, "z"), None);
    }
}
