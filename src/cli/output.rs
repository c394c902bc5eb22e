//! Printing for humans: colors on a terminal, diagnostics with carets, and exit statuses.

use std::io::IsTerminal;

use flow::diagnostic::{Diagnostic, render_all};

/// A command's failure: the exit status and what to print on stderr.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    /// Exit status 1: a line or a gate failed.
    pub fn quality(message: impl Into<String>) -> Self {
        Failure {
            code: 1,
            message: message.into(),
        }
    }

    /// Exit status 2: bad usage or configuration.
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: 2,
            message: message.into(),
        }
    }

    /// Exit status 3: the endpoint could not be used.
    pub fn endpoint(message: impl Into<String>) -> Self {
        Failure {
            code: 3,
            message: message.into(),
        }
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
/// status 0, as `head` and `grep -q` users expect; other write errors exit with status 2.
pub fn write_stdout_line(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(2);
    }
}
