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
    /// Bytes the csv reader will see (the file without its BOM).
    stream_len: u64,
    /// Whether the file's last byte is a newline.
    ends_with_newline: bool,
}

fn builder(delimiter: u8) -> ReaderBuilder {
    let mut b = ReaderBuilder::new();
    // Records end at `\n` only, so the crate's line count always includes the terminator
    // (with its default CRLF handling, a record ending in `\r\n` leaves the `\n` unread and the
    // next record's line is off by one); the `\r` of CRLF files is stripped from the last cell.
    b.delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .terminator(csv::Terminator::Any(b'\n'));
    b
}

/// An empty line (the crate skips `\n` alone; a CRLF file's empty line reads as one `\r` cell).
fn is_blank(record: &ByteRecord) -> bool {
    record.len() == 1 && matches!(record.get(0), Some(b"" | b"\r"))
}

/// A cell without the `\r` of a CRLF line ending (only the last cell of a record has one).
fn strip_cr(cell: &[u8], last: bool) -> &[u8] {
    match cell {
        [rest @ .., b'\r'] if last => rest,
        _ => cell,
    }
}

/// The next record that is not a blank line; `false` at the end of the file.
fn read_record(reader: &mut csv::Reader<Source>, record: &mut ByteRecord) -> csv::Result<bool> {
    loop {
        if !reader.read_byte_record(record)? {
            return Ok(false);
        }
        if !is_blank(record) {
            return Ok(true);
        }
    }
}

impl DelimitedReader {
    pub(super) fn new(src: Source, path: &Path, delimiter: u8) -> Result<Self, DataError> {
        let mut reader = builder(delimiter).from_reader(src);
        let mut record = ByteRecord::new();
        let has_header = read_record(&mut reader, &mut record).map_err(|e| csv_error(path, &e))?;
        let headers = if has_header {
            header_names(&record, path)?
        } else {
            Vec::new()
        };
        let (stream_len, ends_with_newline) =
            file_shape(path).map_err(|e| DataError::io(path, &e))?;
        Ok(DelimitedReader {
            stream_len,
            ends_with_newline,
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
        let more = match read_record(&mut self.reader, &mut self.record) {
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
        let row = self.first_line();
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
        let last = self.headers.len().saturating_sub(1);
        for (i, (name, cell)) in self.headers.iter().zip(self.record.iter()).enumerate() {
            match std::str::from_utf8(strip_cr(cell, i == last)) {
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

impl DelimitedReader {
    /// The file line where the record just read starts. The csv crate reports the position
    /// before any blank lines it skipped, so count back from where the record ended instead:
    /// the end line, minus the newlines inside its quoted cells.
    fn first_line(&self) -> usize {
        let next = self.reader.position();
        let terminated = next.byte() != self.stream_len || self.ends_with_newline;
        let end_line = (next.line() as usize).saturating_sub(usize::from(terminated));
        let embedded: usize = self
            .record
            .iter()
            .map(|cell| cell.iter().filter(|&&b| b == b'\n').count())
            .sum();
        end_line.saturating_sub(embedded).max(1)
    }
}

/// The file's length without a UTF-8 BOM, and whether it ends with a newline.
fn file_shape(path: &Path) -> std::io::Result<(u64, bool)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut head = [0u8; 3];
    let mut got = 0;
    while got < 3 {
        match file.read(&mut head[got..])? {
            0 => break,
            n => got += n,
        }
    }
    let bom = if got == 3 && head == *b"\xEF\xBB\xBF" {
        3
    } else {
        0
    };
    let mut last = [0u8; 1];
    let ends_with_newline = if len > 0 {
        file.seek(SeekFrom::Start(len - 1))?;
        file.read_exact(&mut last)?;
        last[0] == b'\n'
    } else {
        false
    };
    Ok((len - bom, ends_with_newline))
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
    while read_record(&mut reader, &mut record).map_err(|e| csv_error(path, &e))? {
        records += 1;
    }
    Ok(records.saturating_sub(1))
}
