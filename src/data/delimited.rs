//! CSV and TSV with a header row, read with the `csv` crate (RFC 4180 quoting: cells may hold
//! the delimiter, quotes and newlines). Cells stay strings, as promptflow's pandas reader keeps
//! them (`dtype=object, keep_default_na=False`); empty lines are skipped.

use std::path::{Path, PathBuf};

use csv::{ByteRecord, ReaderBuilder};
use serde_json::{Map, Value};

use super::reader::{Source, Step};
use super::{DataError, Position, Row, RowError};

pub(super) struct DelimitedReader {
    reader: csv::Reader<Source>,
    path: PathBuf,
    headers: Vec<String>,
    record: ByteRecord,
    next_line_number: usize,
    done: bool,
}

fn builder(delimiter: u8) -> ReaderBuilder {
    let mut b = ReaderBuilder::new();
    b.delimiter(delimiter).has_headers(false).flexible(true);
    b
}

impl DelimitedReader {
    pub(super) fn new(src: Source, path: &Path, delimiter: u8) -> Result<Self, DataError> {
        let mut reader = builder(delimiter).from_reader(src);
        let mut record = ByteRecord::new();
        let has_header = reader
            .read_byte_record(&mut record)
            .map_err(|e| csv_error(path, &e))?;
        let headers = if has_header {
            header_names(&record, path)?
        } else {
            Vec::new()
        };
        Ok(DelimitedReader {
            reader,
            path: path.to_path_buf(),
            headers,
            record,
            next_line_number: 0,
            done: !has_header,
        })
    }

    pub(super) fn step(&mut self) -> Option<Step> {
        if self.done {
            return None;
        }
        let more = match self.reader.read_byte_record(&mut self.record) {
            Ok(more) => more,
            Err(e) => {
                self.done = true;
                let row = e.position().map_or(0, |p| p.line() as usize);
                return Some(Step::Fatal(csv_error(&self.path, &e), row));
            }
        };
        if !more {
            self.done = true;
            return None;
        }
        let row = self.record.position().map_or(0, |p| p.line() as usize);
        let line_number = self.next_line_number;
        self.next_line_number += 1;
        let bad = |message: String| {
            Some(Step::Bad(RowError {
                line_number,
                row,
                message,
            }))
        };
        if self.record.len() != self.headers.len() {
            return bad(format!(
                "has {} fields but the header has {}; quote cells that contain the delimiter or a newline (\"a, b\")",
                self.record.len(),
                self.headers.len()
            ));
        }
        let mut values = Map::with_capacity(self.headers.len());
        for (i, (name, cell)) in self.headers.iter().zip(self.record.iter()).enumerate() {
            match std::str::from_utf8(cell) {
                Ok(s) => {
                    values.insert(name.clone(), Value::String(s.to_owned()));
                }
                Err(_) => {
                    return bad(format!(
                        "field {} (`{name}`) is not valid UTF-8; save the file as UTF-8",
                        i + 1
                    ));
                }
            }
        }
        Some(Step::Row(Row {
            line_number,
            row,
            values,
        }))
    }
}

/// Column names from the header record, made unique and non-empty the way pandas does it
/// (a repeated `a` becomes `a.1`, an empty name becomes `Unnamed: <index>`).
fn header_names(record: &ByteRecord, path: &Path) -> Result<Vec<String>, DataError> {
    let mut names: Vec<String> = Vec::with_capacity(record.len());
    for (i, cell) in record.iter().enumerate() {
        let name = std::str::from_utf8(cell).map_err(|_| {
            DataError::new(
                path,
                Some(Position { line: 1, column: 1 }),
                format!("header field {} is not valid UTF-8", i + 1),
                "save the file as UTF-8",
            )
        })?;
        let name = name.trim();
        let base = if name.is_empty() {
            format!("Unnamed: {i}")
        } else {
            name.to_owned()
        };
        let mut unique = base.clone();
        let mut n = 1;
        while names.contains(&unique) {
            unique = format!("{base}.{n}");
            n += 1;
        }
        names.push(unique);
    }
    Ok(names)
}

fn csv_error(path: &Path, e: &csv::Error) -> DataError {
    let position = e.position().map(|p| Position {
        line: p.line() as usize,
        column: 1,
    });
    match e.kind() {
        csv::ErrorKind::Io(io) => DataError::io(path, io),
        _ => DataError::new(
            path,
            position,
            e.to_string(),
            "check the file is valid CSV/TSV",
        ),
    }
}

/// Data records (the header excluded), counted with the same quoting rules as the reader.
pub(super) fn count(src: Source, path: &Path, delimiter: u8) -> Result<usize, DataError> {
    let mut reader = builder(delimiter).from_reader(src);
    let mut record = ByteRecord::new();
    let mut records = 0usize;
    while reader
        .read_byte_record(&mut record)
        .map_err(|e| csv_error(path, &e))?
    {
        records += 1;
    }
    Ok(records.saturating_sub(1))
}
