//! Error classes: what kind of failure an error is. A class, not the message, decides the exit
//! status; the CLI turns a class into a status in one place (`cli::output::exit_status`), and
//! docs/cli.md lists the statuses.
//!
//! Every library error type says its class through [`Classify`], so a command that fails with
//! one never picks a status by hand.

use std::fmt;

/// What kind of failure an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The work ran and its result is not good enough: a line, an aggregation or a gate failed.
    Quality,
    /// The flow, a flag, a file the user named or the configuration is wrong: nothing ran, or
    /// what would run cannot mean what the user asked for.
    Config,
    /// A model endpoint (or object storage) could not be used at all: the key was refused, the
    /// host is unreachable, the deployment does not exist.
    Endpoint,
    /// `flow` could not read or write its own files: a run directory, the response cache, a
    /// report, a build context (disk full, permissions, a file changed under it).
    Io,
    /// The user stopped the work (Ctrl-C); what finished is kept.
    Interrupted,
}

impl ErrorClass {
    /// Every class, in the order docs/cli.md lists them.
    pub const ALL: [ErrorClass; 5] = [
        ErrorClass::Quality,
        ErrorClass::Config,
        ErrorClass::Endpoint,
        ErrorClass::Io,
        ErrorClass::Interrupted,
    ];

    /// A short name, for logs and tests.
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Quality => "quality",
            ErrorClass::Config => "configuration",
            ErrorClass::Endpoint => "endpoint",
            ErrorClass::Io => "i/o",
            ErrorClass::Interrupted => "interrupted",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An error that knows its class.
pub trait Classify: std::error::Error {
    /// The class that decides the exit status.
    fn class(&self) -> ErrorClass;
}

/// The class of an I/O error on a file the user named (a dataset, an experiment file, a flow):
/// one that is not there or cannot be opened is a configuration problem, anything else (disk
/// full, a read failing midway) is I/O.
pub fn class_of_user_file(e: &std::io::Error) -> ErrorClass {
    use std::io::ErrorKind::*;
    match e.kind() {
        NotFound | PermissionDenied | IsADirectory | NotADirectory | InvalidFilename => {
            ErrorClass::Config
        }
        _ => ErrorClass::Io,
    }
}

/// Every error message in a chain of sources, outermost first, without repeats (a wrapper whose
/// message already includes its source's is not repeated).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot write {path}")]
    struct Outer {
        path: String,
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn chain_names_every_cause_once() {
        let e = Outer {
            path: "runs/a/meta.json".into(),
            source: std::io::Error::other("disk full"),
        };
        assert_eq!(chain(&e), "cannot write runs/a/meta.json: disk full");
        let e = std::io::Error::other("disk full");
        assert_eq!(chain(&e), "disk full");
    }

    #[test]
    fn a_missing_user_file_is_configuration_and_a_failing_disk_is_io() {
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(class_of_user_file(&missing), ErrorClass::Config);
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert_eq!(class_of_user_file(&full), ErrorClass::Io);
    }
}
