//! A JSON array of objects, read one element at a time: a small scanner finds each element's
//! bytes (tracking strings and nesting), and only that element is parsed. Memory is bounded by
//! the largest element, not the file.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::jsonl::{bare_message, kind_of};
use super::reader::{Source, Step};
use super::{DataError, Position, Row, RowError};

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the opening `[`.
    Start,
    /// After `[`: an element or `]` comes next.
    First,
    /// After `,`: an element comes next.
    AfterComma,
    /// After the closing `]`.
    Done,
}

/// Finds element boundaries; shared by the reader and the counter.
struct Scanner {
    src: Source,
    path: PathBuf,
    state: State,
    /// Position of the next byte to read.
    pos: Position,
    /// Elements found so far.
    elements: usize,
}

impl Scanner {
    fn new(src: Source, path: &Path) -> Self {
        Scanner {
            src,
            path: path.to_path_buf(),
            state: State::Start,
            pos: Position { line: 1, column: 1 },
            elements: 0,
        }
    }

    fn error(&self, at: Position, message: impl Into<String>) -> DataError {
        DataError::new(
            &self.path,
            Some(at),
            message,
            "a .json data file must be one array of objects, like [{\"question\": \"...\"}, ...]; or use JSON Lines (.jsonl)",
        )
    }

    /// Skip whitespace; the next byte, not consumed (`None` at the end of the file).
    fn peek_non_space(&mut self) -> Result<Option<u8>, DataError> {
        loop {
            let chunk = self
                .src
                .fill_buf()
                .map_err(|e| DataError::io(&self.path, &e))?;
            if chunk.is_empty() {
                return Ok(None);
            }
            let n = chunk
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(chunk.len());
            let first = chunk.get(n).copied();
            advance(&mut self.pos, &chunk[..n]);
            self.src.consume(n);
            if let Some(b) = first {
                return Ok(Some(b));
            }
        }
    }

    fn take_byte(&mut self, b: u8) {
        advance(&mut self.pos, &[b]);
        self.src.consume(1);
    }

    /// The next element's bytes into `out` (when given); its start position, or `None` after
    /// the closing `]`.
    fn next_element(
        &mut self,
        mut out: Option<&mut Vec<u8>>,
    ) -> Result<Option<Position>, DataError> {
        loop {
            let at = self.pos;
            let next = self.peek_non_space()?;
            let here = self.pos;
            match (self.state, next) {
                (State::Done, None) => return Ok(None),
                (State::Done, Some(_)) => {
                    return Err(self.error(here, "unexpected text after the closing `]`"));
                }
                (State::Start, Some(b'[')) => {
                    self.take_byte(b'[');
                    self.state = State::First;
                }
                (State::Start, None) => {
                    self.state = State::Done;
                    return Ok(None);
                }
                (State::Start, Some(_)) => {
                    return Err(self.error(here, "expected `[` to start an array of objects"));
                }
                (State::First, Some(b']')) => {
                    self.take_byte(b']');
                    self.state = State::Done;
                }
                (State::AfterComma, Some(b']')) => {
                    return Err(self.error(here, "trailing comma before `]`"));
                }
                (State::First | State::AfterComma, None) => {
                    return Err(self.error(
                        at,
                        "the array is not closed: `]` is missing at the end of the file",
                    ));
                }
                (State::First | State::AfterComma, Some(b',')) => {
                    return Err(self.error(here, "missing element before `,`"));
                }
                (State::First | State::AfterComma, Some(_)) => {
                    if let Some(buf) = out.as_deref_mut() {
                        buf.clear();
                    }
                    self.scan_value(out.as_deref_mut(), here)?;
                    self.elements += 1;
                    match self.peek_non_space()? {
                        Some(b',') => {
                            self.take_byte(b',');
                            self.state = State::AfterComma;
                        }
                        Some(b']') => {
                            self.take_byte(b']');
                            self.state = State::Done;
                        }
                        Some(_) => {
                            return Err(
                                self.error(self.pos, "expected `,` or `]` after an array element")
                            );
                        }
                        None => {
                            return Err(self.error(
                                self.pos,
                                "the array is not closed: `]` is missing at the end of the file",
                            ));
                        }
                    }
                    return Ok(Some(here));
                }
            }
        }
    }

    /// Consume one JSON value (object, array, string or scalar), copying it into `out`.
    fn scan_value(
        &mut self,
        mut out: Option<&mut Vec<u8>>,
        start: Position,
    ) -> Result<(), DataError> {
        let mut depth = 0usize;
        let mut in_string = false;
        let mut escape = false;
        let mut first = true;
        let mut scalar = false;
        loop {
            let chunk = self
                .src
                .fill_buf()
                .map_err(|e| DataError::io(&self.path, &e))?;
            if chunk.is_empty() {
                if scalar {
                    return Ok(());
                }
                return Err(self.error(
                    start,
                    "this element is not closed before the end of the file",
                ));
            }
            let mut end = None;
            for (i, &b) in chunk.iter().enumerate() {
                if first {
                    first = false;
                    match b {
                        b'{' | b'[' => depth = 1,
                        b'"' => in_string = true,
                        _ => scalar = true,
                    }
                    continue;
                }
                if scalar {
                    if b == b',' || b == b']' || b.is_ascii_whitespace() {
                        end = Some(i);
                        break;
                    }
                } else if in_string {
                    if escape {
                        escape = false;
                    } else if b == b'\\' {
                        escape = true;
                    } else if b == b'"' {
                        in_string = false;
                        if depth == 0 {
                            end = Some(i + 1);
                            break;
                        }
                    }
                } else {
                    match b {
                        b'"' => in_string = true,
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                end = Some(i + 1);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            }
            let n = end.unwrap_or(chunk.len());
            if let Some(buf) = out.as_deref_mut() {
                buf.extend_from_slice(&chunk[..n]);
            }
            advance(&mut self.pos, &chunk[..n]);
            self.src.consume(n);
            if end.is_some() {
                return Ok(());
            }
        }
    }
}

/// Move `pos` past `bytes` (columns count characters, not bytes).
fn advance(pos: &mut Position, bytes: &[u8]) {
    for &b in bytes {
        if b == b'\n' {
            pos.line += 1;
            pos.column = 1;
        } else if b & 0xC0 != 0x80 {
            pos.column += 1;
        }
    }
}

pub(super) struct JsonArrayReader {
    scanner: Scanner,
    buf: Vec<u8>,
    done: bool,
}

impl JsonArrayReader {
    pub(super) fn new(src: Source, path: &Path) -> Self {
        JsonArrayReader {
            scanner: Scanner::new(src, path),
            buf: Vec::with_capacity(1024),
            done: false,
        }
    }

    pub(super) fn step(&mut self) -> Option<Step> {
        if self.done {
            return None;
        }
        let start = match self.scanner.next_element(Some(&mut self.buf)) {
            Ok(Some(start)) => start,
            Ok(None) => {
                self.done = true;
                return None;
            }
            Err(e) => {
                self.done = true;
                return Some(Step::Fatal(e, self.scanner.elements + 1));
            }
        };
        let row = self.scanner.elements;
        let line_number = row - 1;
        let bad = |message: String| {
            Step::Bad(RowError {
                line_number,
                row,
                message,
            })
        };
        Some(match crate::non_finite::from_slice::<Value>(&self.buf) {
            Ok(Value::Object(values)) => Step::Row(Row {
                line_number,
                row,
                values,
            }),
            Ok(other) => bad(format!(
                "array element {row} (line {}, column {}) is {}, not a JSON object; each element must be an object like {{\"question\": \"...\"}}",
                start.line,
                start.column,
                kind_of(&other)
            )),
            Err(e) => bad(format!(
                "array element {row} (line {}, column {}) is not valid JSON: {}",
                start.line,
                start.column,
                bare_message(&e)
            )),
        })
    }
}

/// Elements of the array, found without parsing them.
pub(super) fn count(src: Source, path: &Path) -> Result<usize, DataError> {
    let mut scanner = Scanner::new(src, path);
    while scanner.next_element(None)?.is_some() {}
    Ok(scanner.elements)
}
