//! A finished run directory (docs/batch-runs.md) used as the base of `--run BASE` chaining.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{DataError, Position};

/// One line of a base run: what `${run.outputs.x}` and `${run.inputs.x}` read.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseLine {
    pub line_number: usize,
    /// The line's flow outputs; `None` when the line failed (it has no record in output.jsonl).
    pub outputs: Option<Map<String, Value>>,
    /// The line's resolved inputs; `None` when the run has no inputs record for it.
    pub inputs: Option<Map<String, Value>>,
}

/// Where one record sits in a JSONL file.
#[derive(Debug, Clone, Copy)]
struct Span {
    offset: u64,
    len: usize,
}

/// A JSONL file of records keyed by `line_number`, indexed by byte offset.
#[derive(Debug)]
struct Indexed {
    path: PathBuf,
    file: File,
    spans: HashMap<usize, Span>,
}

/// A base run, loaded as an index (line number → byte offsets in `flow_outputs/output.jsonl`
/// and `inputs.jsonl`); records are read from disk when a line is asked for, so memory stays
/// small for big runs. Records may be in any order (lines finish out of order); when a line
/// number appears twice (a resumed run), the later record wins.
#[derive(Debug)]
pub struct BaseRun {
    dir: PathBuf,
    outputs: Indexed,
    inputs: Option<Indexed>,
}

#[derive(Deserialize)]
struct LineNumberOnly {
    line_number: Option<usize>,
}

impl BaseRun {
    /// Index the run directory `dir` (blocking). `flow_outputs/output.jsonl` must exist;
    /// `inputs.jsonl` is optional (then `${run.inputs.…}` fails per line).
    pub fn load(dir: &Path) -> Result<BaseRun, DataError> {
        let outputs_path = dir.join("flow_outputs").join("output.jsonl");
        if !outputs_path.is_file() {
            return Err(DataError::new(
                &outputs_path,
                None,
                "the base run has no flow outputs file",
                format!(
                    "--run must name a finished run directory (like .flow/runs/<run-name>) containing flow_outputs/output.jsonl; `{}` does not",
                    dir.display()
                ),
            ));
        }
        let outputs = Indexed::load(outputs_path)?;
        let inputs_path = dir.join("inputs.jsonl");
        let inputs = if inputs_path.is_file() {
            Some(Indexed::load(inputs_path)?)
        } else {
            None
        };
        Ok(BaseRun {
            dir: dir.to_path_buf(),
            outputs,
            inputs,
        })
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Lines with outputs (succeeded lines).
    pub fn succeeded(&self) -> usize {
        self.outputs.spans.len()
    }

    /// The line with this `line_number` (the key stripped from its records), `None` when the
    /// run has neither outputs nor inputs for it. Reads from disk (blocking).
    pub fn line(&self, line_number: usize) -> Result<Option<BaseLine>, DataError> {
        let outputs = self.outputs.get(line_number)?;
        let inputs = match &self.inputs {
            Some(index) => index.get(line_number)?,
            None => None,
        };
        if outputs.is_none() && inputs.is_none() {
            return Ok(None);
        }
        Ok(Some(BaseLine {
            line_number,
            outputs,
            inputs,
        }))
    }
}

impl Indexed {
    fn load(path: PathBuf) -> Result<Indexed, DataError> {
        let file = File::open(&path).map_err(|e| DataError::io(&path, &e))?;
        let reader_file = file.try_clone().map_err(|e| DataError::io(&path, &e))?;
        let mut reader = BufReader::with_capacity(super::reader::BUF_SIZE, reader_file);
        let mut spans = HashMap::new();
        let mut buf = Vec::with_capacity(1024);
        let mut offset = 0u64;
        let mut file_line = 0usize;
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| DataError::io(&path, &e))?;
            if n == 0 {
                break;
            }
            file_line += 1;
            let start = offset;
            offset += n as u64;
            if buf.trim_ascii().is_empty() {
                continue;
            }
            let at = Some(Position {
                line: file_line,
                column: 1,
            });
            let record: LineNumberOnly = crate::non_finite::from_slice(&buf).map_err(|e| {
                DataError::new(
                    &path,
                    Some(Position {
                        line: file_line,
                        column: e.column(),
                    }),
                    format!("not a valid run record: {e}"),
                    "the run directory is damaged; re-run the base run",
                )
            })?;
            let Some(line_number) = record.line_number else {
                return Err(DataError::new(
                    &path,
                    at,
                    "record has no `line_number`",
                    "--run must name a run directory written by `flow run --data` (or promptflow)",
                ));
            };
            spans.insert(
                line_number,
                Span {
                    offset: start,
                    len: n,
                },
            );
        }
        Ok(Indexed { path, file, spans })
    }

    fn get(&self, line_number: usize) -> Result<Option<Map<String, Value>>, DataError> {
        let Some(span) = self.spans.get(&line_number) else {
            return Ok(None);
        };
        let mut bytes = vec![0u8; span.len];
        read_at(&self.file, &self.path, &mut bytes, span.offset)
            .map_err(|e| DataError::io(&self.path, &e))?;
        let changed = || {
            DataError::new(
                &self.path,
                None,
                format!("the record of line {line_number} changed since the run was loaded"),
                "do not modify the base run while another run reads it",
            )
        };
        let mut map = match crate::non_finite::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => map,
            _ => return Err(changed()),
        };
        map.shift_remove("line_number");
        // A run's image references (`{"data:image/png;path": "images/x.png"}`, or
        // `{"type": "image_file", "image_file": {"path": ...}}` from an openai-vision flow) are
        // relative to its `flow_outputs/` folder, for outputs and inputs alike.
        if let Some(parent) = self.path.parent() {
            let images = if parent.file_name().is_some_and(|n| n == "flow_outputs") {
                parent.to_path_buf()
            } else {
                parent.join("flow_outputs")
            };
            for v in map.values_mut() {
                crate::image::resolve_paths(v, &images, crate::image::MessageFormat::Basic);
                crate::image::resolve_paths(v, &images, crate::image::MessageFormat::OpenaiVision);
            }
        }
        Ok(Some(map))
    }
}

#[cfg(unix)]
fn read_at(file: &File, _path: &Path, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(not(unix))]
fn read_at(_file: &File, path: &Path, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    // A fresh handle, so concurrent readers do not share a cursor.
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(buf)
}
