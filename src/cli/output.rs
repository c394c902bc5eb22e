//! Printing for humans: colors on a terminal, diagnostics with carets, and exit statuses.

use std::io::IsTerminal;

use flow::diagnostic::{Diagnostic, render_all};
use flow::error::{Classify, ErrorClass, chain};

/// A command's failure: its class (which decides the exit status, in [`exit_status`]) and
/// what to print on stderr.
#[derive(Debug)]
pub struct Failure {
    pub class: ErrorClass,
    pub message: String,
}

/// The exit status of a failure of class `class`. The one place a class becomes a number; the
/// table is in docs/cli.md and README.md, and `flow --help` prints it.
pub fn exit_status(class: ErrorClass) -> u8 {
    match class {
        ErrorClass::Quality => 1,
        ErrorClass::Config => 2,
        ErrorClass::Endpoint => 3,
        ErrorClass::Io => 4,
        ErrorClass::Interrupted => 130,
    }
}

impl Failure {
    /// A failure of class `class`.
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Failure {
            class,
            message: message.into(),
        }
    }

    /// A library error, classed as it says: `error: <message and its causes>`.
    pub fn of<E: Classify>(e: &E) -> Self {
        Failure::new(e.class(), format!("error: {}", chain(e)))
    }

    /// A library error with what was being done: `error: <context>: <message and causes>`.
    pub fn context<E: Classify>(context: impl std::fmt::Display, e: &E) -> Self {
        Failure::new(e.class(), format!("error: {context}: {}", chain(e)))
    }

    /// Exit status 1: a line or a gate failed.
    pub fn quality(message: impl Into<String>) -> Self {
        Failure::new(ErrorClass::Quality, message)
    }

    /// Exit status 2: bad usage or configuration.
    pub fn usage(message: impl Into<String>) -> Self {
        Failure::new(ErrorClass::Config, message)
    }

    /// Exit status 3: the endpoint could not be used.
    pub fn endpoint(message: impl Into<String>) -> Self {
        Failure::new(ErrorClass::Endpoint, message)
    }

    /// Exit status 4: `flow` could not read or write its own files (a run directory, the cache,
    /// a report, a build context).
    pub fn io(message: impl Into<String>) -> Self {
        Failure::new(ErrorClass::Io, message)
    }

    /// Exit status 130: the user stopped the work.
    pub fn interrupted(message: impl Into<String>) -> Self {
        Failure::new(ErrorClass::Interrupted, message)
    }

    /// `flow` could not read or write its own file or directory `path`.
    pub fn own_file(what: &str, path: &std::path::Path, e: &std::io::Error) -> Self {
        Failure::io(format!(
            "error: {what} {}: {e}\n  help: check the disk space and the permissions of that path",
            path.display()
        ))
    }

    /// The exit status of this failure.
    pub fn exit_status(&self) -> u8 {
        exit_status(self.class)
    }

    /// Exit status 2 with rendered diagnostics.
    pub fn diagnostics(diags: &[Diagnostic]) -> Self {
        let errors = diags.iter().filter(|d| d.is_error()).count();
        let mut message = render_all(diags, color_stderr());
        message.push_str(&format!(
            "{} error{} found\n",
            errors,
            if errors == 1 { "" } else { "s" }
        ));
        Failure::usage(message)
    }
}

/// Whether stderr is a terminal that wants colour.
pub fn color_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Whether stdout is a terminal.
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// Print warnings to stderr.
pub fn print_warnings(diags: &[Diagnostic]) {
    let warnings: Vec<Diagnostic> = diags.iter().filter(|d| !d.is_error()).cloned().collect();
    if !warnings.is_empty() {
        eprint!("{}", render_all(&warnings, color_stderr()));
    }
}

/// Bold text on a terminal.
pub fn bold(s: &str, on: bool) -> String {
    if on {
        format!("\x1b[1m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

/// Dim text on a terminal.
pub fn dim(s: &str, on: bool) -> String {
    if on {
        format!("\x1b[2m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

/// Write one line to stdout. When the reader has gone away (a closed pipe), exit quietly with
/// status 0, as `head` and `grep -q` users expect; other write errors exit with the I/O status (4).
pub fn write_stdout_line(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(i32::from(exit_status(ErrorClass::Io)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_has_its_own_documented_status() {
        let statuses: Vec<u8> = ErrorClass::ALL.iter().map(|c| exit_status(*c)).collect();
        assert_eq!(statuses, [1, 2, 3, 4, 130]);
        assert_eq!(Failure::usage("x").exit_status(), 2);
        assert_eq!(Failure::io("x").exit_status(), 4);
    }

    #[test]
    fn a_library_error_keeps_its_class_and_causes() {
        let e = flow::report::ReportError::Write {
            path: "out/report.html".into(),
            source: std::io::Error::other("disk full"),
        };
        let f = Failure::of(&e);
        assert_eq!(f.class, ErrorClass::Io);
        assert_eq!(f.message, "error: cannot write out/report.html: disk full");
    }
}
