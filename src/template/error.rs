//! Template errors: what is wrong, where (file, line, column) and how to fix it.

use super::escape::unescape_cow;

/// An error compiling, rendering or splitting a prompt template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template is not valid Jinja2 (reported when the template is loaded).
    #[error("{}: Jinja2 syntax error: {message}. Fix the template at that position.", location(.name, *.line, *.col))]
    Syntax {
        /// Template name (usually its file path).
        name: String,
        /// 1-based line in the template's file.
        line: usize,
        /// 1-based column, when known.
        col: Option<usize>,
        /// What the parser expected or found.
        message: String,
    },
    /// Rendering failed (e.g. calling a method on an undefined value).
    #[error("{}: failed to render the Jinja2 template: {message}. Fix the template or the values passed to it.", location(.name, .line.unwrap_or(0), *.col))]
    Render {
        /// Template name (usually its file path).
        name: String,
        /// 1-based line in the template's file, when known.
        line: Option<usize>,
        /// 1-based column, when known.
        col: Option<usize>,
        /// What went wrong.
        message: String,
    },
    /// Non-blank text before the first role line of a chat prompt.
    #[error(
        "the chat prompt has text before its first role line: \"{text}\". Start the template with \
         a role line such as `system:` (or `# system:`) on its own line, followed by the message; \
         valid roles are system, user, assistant, function and tool. If this prompt is not meant \
         for a chat model, set `api: completion` on the node."
    )]
    TextBeforeFirstRole {
        /// The offending text, shortened.
        text: String,
    },
    /// A `function:` message without `name:` and `content:` sub-sections.
    #[error(
        "a `function:` message must name the function: write `name:` on its own line, the \
         function name on the next, then `content:` and the function's result (found: \"{text}\")"
    )]
    FunctionMessageFormat {
        /// The message text, shortened.
        text: String,
    },
    /// A `tool:` message without `tool_call_id:` and `content:` sub-sections.
    #[error(
        "a `tool:` message must say which call it answers: write `tool_call_id:` on its own line, \
         the id on the next, then `content:` and the tool's result (found: \"{text}\")"
    )]
    ToolMessageFormat {
        /// The message text, shortened.
        text: String,
    },
}

impl crate::error::Classify for TemplateError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Config
    }
}

impl TemplateError {
    /// 1-based line in the template file, when the error has one.
    pub fn line(&self) -> Option<usize> {
        match self {
            TemplateError::Syntax { line, .. } => Some(*line),
            TemplateError::Render { line, .. } => *line,
            _ => None,
        }
    }

    /// 1-based column, when the error has one.
    pub fn col(&self) -> Option<usize> {
        match self {
            TemplateError::Syntax { col, .. } | TemplateError::Render { col, .. } => *col,
            _ => None,
        }
    }
}

fn location(name: &str, line: usize, col: Option<usize>) -> String {
    match (line, col) {
        (0, _) => name.to_string(),
        (l, Some(c)) => format!("{name}:{l}:{c}"),
        (l, None) => format!("{name}:{l}"),
    }
}

/// Converts a minijinja error on template `name` (whose text is `source`) to a [`TemplateError`].
pub(super) fn from_minijinja(
    e: &minijinja::Error,
    name: &str,
    source: &str,
    line_offset: usize,
    syntax: bool,
) -> TemplateError {
    let message = match (e.detail(), e.kind()) {
        (Some(d), _) if syntax => unescape_cow(d).into_owned(),
        (Some(d), kind) => format!("{kind}: {}", unescape_cow(d)),
        (None, minijinja::ErrorKind::UndefinedError) => {
            "an attribute, item or method of an undefined variable was used (check the \
             variable's name, or guard it with `{% if var is defined %}`)"
                .to_string()
        }
        (None, kind) => kind.to_string(),
    };
    let col = e.range().and_then(|r| column(source, r.start));
    let line = e.line().map(|l| l + line_offset);
    if syntax {
        TemplateError::Syntax {
            name: name.to_string(),
            line: line.unwrap_or(line_offset + 1),
            col,
            message,
        }
    } else {
        TemplateError::Render {
            name: name.to_string(),
            line,
            col,
            message,
        }
    }
}

/// 1-based column (in characters) of byte `offset` in `source`.
fn column(source: &str, offset: usize) -> Option<usize> {
    let before = source.get(..offset)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Some(before[line_start..].chars().count() + 1)
}
