//! Errors of data files: a whole file that cannot be used, or one row that cannot.

use std::fmt;
use std::path::PathBuf;

/// A 1-based line and column in a data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// A data file (or base run) that cannot be used at all: unreadable, or malformed as a whole.
#[derive(Debug, thiserror::Error)]
pub struct DataError {
    /// The file it is about.
    pub file: PathBuf,
    /// Where in the file, when known.
    pub position: Option<Position>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

impl DataError {
    pub(crate) fn new(
        file: impl Into<PathBuf>,
        position: Option<Position>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        DataError {
            file: file.into(),
            position,
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub(crate) fn io(file: impl Into<PathBuf>, err: &std::io::Error) -> Self {
        let file = file.into();
        let hint = match err.kind() {
            std::io::ErrorKind::NotFound => {
                "check the path (it is relative to the current directory)"
            }
            std::io::ErrorKind::PermissionDenied => "check the file's permissions",
            _ => "check that the file is readable",
        };
        DataError::new(file, None, format!("cannot read the file: {err}"), hint)
    }
}

impl crate::error::Classify for DataError {
    /// A dataset or base run the user named that cannot be used.
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Config
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(p) = self.position {
            write!(f, ":{}:{}", p.line, p.column)?;
        }
        write!(f, ": {}", self.message)?;
        if !self.hint.is_empty() {
            write!(f, " (hint: {})", self.hint)?;
        }
        Ok(())
    }
}

/// One data row that cannot be read; the engine fails that line and goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("data row {row}: {message}")]
pub struct RowError {
    /// The line number the row would have had (0-based among data rows).
    pub line_number: usize,
    /// 1-based file line (JSONL, CSV, TSV) or array element (JSON) of the row.
    pub row: usize,
    /// What is wrong with it and how to fix it.
    pub message: String,
}
