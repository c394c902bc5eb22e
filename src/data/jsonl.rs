//! JSON Lines: one object per line, read with a reused line buffer. Blank lines are skipped.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::reader::{Source, Step};
use super::{DataError, Row, RowError};

pub(super) struct JsonlReader {
    src: Source,
    path: PathBuf,
    buf: Vec<u8>,
    /// 1-based number of the last line read.
    file_line: usize,
    next_line_number: usize,
    done: bool,
}

impl JsonlReader {
    pub(super) fn new(src: Source, path: &Path) -> Self {
        JsonlReader {
            src,
            path: path.to_path_buf(),
            buf: Vec::with_capacity(1024),
            file_line: 0,
            next_line_number: 0,
            done: false,
        }
    }

    pub(super) fn step(&mut self) -> Option<Step> {
        if self.done {
            return None;
        }
        loop {
            self.buf.clear();
            match self.src.read_until(b'\n', &mut self.buf) {
                Ok(0) => {
                    self.done = true;
                    return None;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.done = true;
                    return Some(Step::Fatal(
                        DataError::io(&self.path, &e),
                        self.file_line + 1,
                    ));
                }
            }
            self.file_line += 1;
            let text = self.buf.trim_ascii();
            if text.is_empty() {
                continue;
            }
            let line_number = self.next_line_number;
            self.next_line_number += 1;
            return Some(parse_line(text, line_number, self.file_line));
        }
    }
}

fn parse_line(text: &[u8], line_number: usize, row: usize) -> Step {
    let bad = |message: String| {
        Step::Bad(RowError {
            line_number,
            row,
            message,
        })
    };
    match crate::non_finite::from_slice::<Value>(text) {
        Ok(Value::Object(values)) => Step::Row(Row {
            line_number,
            row,
            values,
        }),
        Ok(other) => bad(format!(
            "is {}, not a JSON object; each line of a JSON Lines file must be an object like {{\"question\": \"...\"}}",
            kind_of(&other)
        )),
        Err(e) => bad(format!(
            "is not valid JSON ({} at column {}); fix the line or remove it",
            bare_message(&e),
            e.column()
        )),
    }
}

/// serde_json's message without its " at line L column C" suffix.
pub(super) fn bare_message(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// "a string", "an array", ... for messages.
pub(super) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Non-blank lines, counted in big chunks.
pub(super) fn count(mut src: Source, path: &Path) -> Result<usize, DataError> {
    let mut rows = 0;
    let mut line_has_text = false;
    loop {
        let chunk = match src.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(DataError::io(path, &e)),
        };
        if chunk.is_empty() {
            break;
        }
        for &b in chunk {
            if b == b'\n' {
                rows += usize::from(line_has_text);
                line_has_text = false;
            } else if !b.is_ascii_whitespace() {
                line_has_text = true;
            }
        }
        let n = chunk.len();
        src.consume(n);
    }
    Ok(rows + usize::from(line_has_text))
}
