//! What can go wrong while loading runs and writing reports.

use std::path::PathBuf;

/// A report could not be loaded or written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("nothing to report: give at least one run")]
    NoRuns,
    #[error("{} is not a run directory (it has no meta.json)", .0.display())]
    NotARun(PathBuf),
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} exists and is not a report flow wrote: it is left as it is\n  help: remove it, or write the report elsewhere with -o PATH",
        .path.display()
    )]
    WouldOverwrite { path: PathBuf },
    #[error("cannot write the CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("cannot render the HTML report: {0}")]
    Template(String),
}

impl crate::error::Classify for ReportError {
    /// Runs the user named that are not there or not runs are configuration; failing to read
    /// a run's files midway or to write the report is I/O.
    fn class(&self) -> crate::error::ErrorClass {
        use crate::error::{ErrorClass, class_of_user_file};
        match self {
            ReportError::NoRuns
            | ReportError::NotARun(_)
            | ReportError::Invalid { .. }
            | ReportError::WouldOverwrite { .. } => ErrorClass::Config,
            ReportError::Read { source, .. } => class_of_user_file(source),
            ReportError::Write { .. } | ReportError::Csv(_) | ReportError::Template(_) => {
                ErrorClass::Io
            }
        }
    }
}

impl ReportError {
    pub(crate) fn read(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ReportError::Read {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(path: impl Into<PathBuf>, message: impl ToString) -> Self {
        ReportError::Invalid {
            path: path.into(),
            message: message.to_string(),
        }
    }
}
