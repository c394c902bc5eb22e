//! Opening a data file: format detection, BOM handling, and the row iterator.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use super::delimited::DelimitedReader;
use super::json_array::JsonArrayReader;
use super::jsonl::JsonlReader;
use super::{DataError, Row, RowError};

/// Buffer size for data files: large enough that reads are cheap, small enough not to matter.
pub(super) const BUF_SIZE: usize = 64 * 1024;

/// A data file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line (`.jsonl`, `.ndjson`, or a `.json` file starting with `{`).
    JsonLines,
    /// A JSON array of objects (`.json`).
    JsonArray,
    /// Comma-separated values with a header row (`.csv`).
    Csv,
    /// Tab-separated values with a header row (`.tsv`).
    Tsv,
}

impl Format {
    /// The format of `path`: by extension; a `.json` file (or one with an unknown extension,
    /// which promptflow reads as JSON Lines) is sniffed by its first non-space character.
    pub fn detect(path: &Path) -> Result<Format, DataError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        match ext.as_str() {
            "jsonl" | "ndjson" => Ok(Format::JsonLines),
            "csv" => Ok(Format::Csv),
            "tsv" | "tab" => Ok(Format::Tsv),
            "json" => Ok(match first_char(path)? {
                Some(b'{') => Format::JsonLines,
                _ => Format::JsonArray,
            }),
            "parquet" | "xlsx" | "xls" | "arrow" => Err(DataError::new(
                path,
                None,
                format!("`.{ext}` data files are not supported"),
                "convert the file to JSON Lines (.jsonl) or CSV (.csv)",
            )),
            _ => match first_char(path)? {
                Some(b'{') | None => Ok(Format::JsonLines),
                Some(b'[') => Ok(Format::JsonArray),
                Some(_) => Err(DataError::new(
                    path,
                    None,
                    "cannot tell the data format from the file name or its content",
                    "name the file .jsonl, .json, .csv or .tsv",
                )),
            },
        }
    }
}

/// Open a data file as a stream of rows. Blocking: call it (and iterate) off the async runtime.
pub fn open(path: &Path) -> Result<DataReader, DataError> {
    let format = Format::detect(path)?;
    let src = open_buffered(path)?;
    let inner = match format {
        Format::JsonLines => Inner::Jsonl(JsonlReader::new(src, path)),
        Format::JsonArray => Inner::JsonArray(JsonArrayReader::new(src, path)),
        Format::Csv => Inner::Delimited(DelimitedReader::new(src, path, b',')?),
        Format::Tsv => Inner::Delimited(DelimitedReader::new(src, path, b'\t')?),
    };
    Ok(DataReader {
        format,
        inner,
        dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        message_format: crate::image::MessageFormat::Basic,
        fatal: None,
        next_line_number: 0,
    })
}

/// The number of data rows in a file (what [`open`] would yield, malformed rows included),
/// read as a stream. A JSON array that is malformed as a whole is an error here, before any
/// line runs.
pub fn count_rows(path: &Path) -> Result<usize, DataError> {
    let src = open_buffered(path)?;
    match Format::detect(path)? {
        Format::JsonLines => super::jsonl::count(src, path),
        Format::JsonArray => super::json_array::count(src, path),
        Format::Csv => super::delimited::count(src, path, b','),
        Format::Tsv => super::delimited::count(src, path, b'\t'),
    }
}

/// The data file as a buffered reader, positioned after a UTF-8 byte-order mark if there is one.
pub(super) type Source = BufReader<File>;

fn open_buffered(path: &Path) -> Result<Source, DataError> {
    if path.is_dir() {
        return Err(DataError::new(
            path,
            None,
            "is a directory, not a data file",
            "pass a .jsonl, .json, .csv or .tsv file",
        ));
    }
    let file = File::open(path).map_err(|e| DataError::io(path, &e))?;
    let mut src = BufReader::with_capacity(BUF_SIZE, file);
    skip_bom(&mut src).map_err(|e| DataError::io(path, &e))?;
    Ok(src)
}

fn skip_bom(src: &mut impl BufRead) -> std::io::Result<()> {
    const BOM: &[u8] = b"\xEF\xBB\xBF";
    let head = src.fill_buf()?;
    if head.starts_with(BOM) {
        src.consume(BOM.len());
    }
    Ok(())
}

/// The first non-whitespace byte of the file (after a BOM), `None` for an empty file.
fn first_char(path: &Path) -> Result<Option<u8>, DataError> {
    let mut src = open_buffered(path)?;
    let mut byte = [0u8; 1];
    loop {
        match src.read(&mut byte) {
            Ok(0) => return Ok(None),
            Ok(_) if byte[0].is_ascii_whitespace() => continue,
            Ok(_) => return Ok(Some(byte[0])),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(DataError::io(path, &e)),
        }
    }
}

/// What a format reader yields: a row, a bad row, or a problem that ends the file.
pub(super) enum Step {
    Row(Row),
    Bad(RowError),
    /// The file cannot be read further; the `usize` is the row where that happened.
    Fatal(DataError, usize),
}

enum Inner {
    Jsonl(JsonlReader),
    JsonArray(JsonArrayReader),
    Delimited(DelimitedReader),
}

/// A blocking, streaming iterator over a data file's rows.
///
/// A malformed row is an `Err(RowError)` item and reading goes on. When the file cannot be read
/// further (an I/O error, a JSON array that is malformed as a whole), one last `Err(RowError)`
/// describing it is yielded, iteration ends, and [`DataReader::fatal`] returns the error.
pub struct DataReader {
    format: Format,
    inner: Inner,
    /// The data file's folder: a `{"data:image/png;path": P}` in a row is relative to it.
    dir: std::path::PathBuf,
    /// Which image dicts' paths are taken relative to `dir`: the flow's message format.
    message_format: crate::image::MessageFormat,
    fatal: Option<DataError>,
    next_line_number: usize,
}

impl DataReader {
    /// Read image dicts in the flow's message format (promptflow resolves only those).
    pub fn with_message_format(mut self, format: crate::image::MessageFormat) -> Self {
        self.message_format = format;
        self
    }

    /// The file's format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The error that ended iteration early, if any.
    pub fn fatal(&self) -> Option<&DataError> {
        self.fatal.as_ref()
    }
}

impl Iterator for DataReader {
    type Item = Result<Row, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.fatal.is_some() {
            return None;
        }
        let step = match &mut self.inner {
            Inner::Jsonl(r) => r.step(),
            Inner::JsonArray(r) => r.step(),
            Inner::Delimited(r) => r.step(),
        }?;
        match step {
            Step::Row(mut row) => {
                self.next_line_number = row.line_number + 1;
                for v in row.values.values_mut() {
                    crate::image::resolve_paths(v, &self.dir, self.message_format);
                }
                Some(Ok(row))
            }
            Step::Bad(err) => {
                self.next_line_number = err.line_number + 1;
                Some(Err(err))
            }
            Step::Fatal(err, row) => {
                let item = RowError {
                    line_number: self.next_line_number,
                    row,
                    message: format!("the rest of the data file cannot be read: {err}"),
                };
                self.fatal = Some(err);
                Some(Err(item))
            }
        }
    }
}
