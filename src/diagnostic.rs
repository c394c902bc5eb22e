//! Located diagnostics: an error or warning about a file, with a line and column to point at.
//!
//! Library code collects [`Diagnostic`]s as values; the CLI renders them with a caret under the
//! offending text (via `codespan-reporting`), the way rustc and ripgrep do.

use std::fmt;
use std::path::{Path, PathBuf};

use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term::{self, termcolor};

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Stops the flow from loading or running.
    Error,
    /// Worth fixing; the flow still runs.
    Warning,
}

/// A position in a text file: 1-based line and column (in characters), and how many characters
/// the caret should cover (at least one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub col: usize,
    pub len: usize,
}

impl Location {
    /// A location covering `len` characters starting at `line:col`.
    pub fn new(line: usize, col: usize, len: usize) -> Self {
        Location {
            line: line.max(1),
            col: col.max(1),
            len: len.max(1),
        }
    }
}

/// One problem found in a user's file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// What is wrong, in one sentence.
    pub message: String,
    /// The file it is about, when there is one.
    pub file: Option<PathBuf>,
    /// Where in the file, when known.
    pub location: Option<Location>,
    /// A short label drawn next to the caret.
    pub label: Option<String>,
    /// How to fix it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error with a message and nothing else yet.
    pub fn error(message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            file: None,
            location: None,
            label: None,
            help: None,
        }
    }

    /// A warning with a message and nothing else yet.
    pub fn warning(message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(message)
        }
    }

    /// Attach the file and (optional) location.
    pub fn at(mut self, file: &Path, location: Option<Location>) -> Self {
        self.file = Some(file.to_path_buf());
        self.location = location;
        self
    }

    /// Attach a label for the caret.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Attach the fix to try.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Whether this diagnostic stops the flow.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Render with a caret under the location, reading the file's text from disk.
    pub fn render(&self, color: bool) -> String {
        let source = self
            .file
            .as_deref()
            .and_then(|f| std::fs::read_to_string(f).ok());
        self.render_with_source(source.as_deref(), color)
    }

    /// Render with a caret under the location, given the file's text.
    pub fn render_with_source(&self, source: Option<&str>, color: bool) -> String {
        let mut files = SimpleFiles::new();
        let name = self
            .file
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let mut cs = match self.severity {
            Severity::Error => CsDiagnostic::error(),
            Severity::Warning => CsDiagnostic::warning(),
        }
        .with_message(&self.message);
        let mut rendered_location = false;
        if let (Some(text), Some(loc)) = (source, self.location) {
            if let Some(range) = byte_range(text, loc) {
                let id = files.add(name.clone(), text.to_string());
                cs = cs.with_labels(vec![
                    Label::primary(id, range).with_message(self.label.clone().unwrap_or_default()),
                ]);
                rendered_location = true;
            }
        }
        let mut notes = Vec::new();
        if !rendered_location && !name.is_empty() {
            match self.location {
                Some(loc) => notes.push(format!("in {name}:{}:{}", loc.line, loc.col)),
                None => notes.push(format!("in {name}")),
            }
        }
        if let Some(help) = &self.help {
            notes.push(format!("help: {help}"));
        }
        cs = cs.with_notes(notes);
        let mut buffer = if color {
            termcolor::Buffer::ansi()
        } else {
            termcolor::Buffer::no_color()
        };
        let config = term::Config::default();
        if term::emit(&mut buffer, &config, &files, &cs).is_err() {
            return self.to_string();
        }
        String::from_utf8_lossy(buffer.as_slice()).into_owned()
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match (&self.file, self.location) {
            (Some(file), Some(loc)) => write!(f, "{}:{}:{}: ", file.display(), loc.line, loc.col)?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            _ => {}
        }
        write!(f, "{kind}: {}", self.message)?;
        if let Some(help) = &self.help {
            write!(f, " (help: {help})")?;
        }
        Ok(())
    }
}

/// The byte range in `text` that `loc` covers, clamped to its line.
fn byte_range(text: &str, loc: Location) -> Option<std::ops::Range<usize>> {
    let mut line_start = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if i + 1 == loc.line {
            let body = line.trim_end_matches(['\n', '\r']);
            let mut chars = body.char_indices().skip(loc.col - 1);
            let start = match chars.next() {
                Some((b, _)) => b,
                None => body.len(),
            };
            let mut end = start;
            for (b, c) in body[start..].char_indices().take(loc.len) {
                end = start + b + c.len_utf8();
            }
            return Some(line_start + start..line_start + end.max(start));
        }
        line_start += line.len();
    }
    None
}

/// Render many diagnostics, errors first in file order, separated by blank lines.
pub fn render_all(diagnostics: &[Diagnostic], color: bool) -> String {
    let mut out = String::new();
    for d in diagnostics {
        out.push_str(&d.render(color));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_points_at_the_column() {
        let text = "a: 1\nnodes:\n  - name: x\n";
        let d = Diagnostic::error("bad name")
            .at(Path::new("flow.dag.yaml"), Some(Location::new(3, 11, 1)))
            .with_label("here")
            .with_help("rename it");
        let out = d.render_with_source(Some(text), false);
        assert!(out.contains("error: bad name"), "{out}");
        assert!(out.contains("flow.dag.yaml:3:11"), "{out}");
        assert!(out.contains("^ here"), "{out}");
        assert!(out.contains("help: rename it"), "{out}");
    }

    #[test]
    fn location_past_the_end_falls_back_to_a_note() {
        let d = Diagnostic::error("oops").at(Path::new("f.yaml"), Some(Location::new(40, 1, 1)));
        let out = d.render_with_source(Some("x: 1\n"), false);
        assert!(out.contains("in f.yaml:40:1"), "{out}");
    }

    #[test]
    fn display_is_one_line() {
        let d = Diagnostic::warning("unused").at(Path::new("f.yaml"), Some(Location::new(2, 3, 1)));
        assert_eq!(d.to_string(), "f.yaml:2:3: warning: unused");
    }
}
