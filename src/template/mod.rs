//! Jinja2 prompt templates, rendered as promptflow renders them, and chat-message parsing.
//!
//! A [`PromptTemplate`] is compiled once (syntax errors surface at load time with line and
//! column) and rendered many times. [`parse_chat`] splits rendered text into
//! [`crate::chat::Message`]s. The injection guard ([`PromptTemplate::render_guarded`],
//! [`escape_roles`]) keeps role-marker lines inside flow inputs and upstream prompt outputs from
//! starting new messages.

mod error;
mod escape;
mod messages;
mod pyfmt;
pub use pyfmt::{python_json_dumps, python_str, write_float};
mod pyliteral;

use std::collections::{BTreeSet, HashSet};
use std::fmt;

use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Map, Value};

pub use error::TemplateError;
pub use escape::{ESCAPE_MARK, escape_roles, escape_str, unescape_roles, unescape_value};
pub use messages::parse_chat;
pub use pyfmt::ListStyle;
pub use pyliteral::literal_eval;

/// How a template is compiled.
#[derive(Debug, Clone, Copy, Default)]
pub struct TemplateOptions {
    /// How `{{ some_list }}` prints: promptflow prints lists one item per line
    /// ([`ListStyle::Lines`]) in `llm` nodes on Azure OpenAI chat, and like Python everywhere
    /// else (`prompt` nodes, OpenAI connections, completion API, `.prompty`).
    pub list_style: ListStyle,
    /// Lines before the template in its file (e.g. a `.prompty` front matter), added to the line
    /// numbers of errors.
    pub line_offset: usize,
}

/// A rendered prompt: the visible text, and the escaped text a downstream node splices in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// What the template produced with the real values (a `prompt` node's output).
    pub text: String,
    /// The same, with role markers that came from tainted values escaped; `None` when identical
    /// to `text`.
    pub escaped: Option<String>,
}

impl Rendered {
    /// The escaped text (the visible text when nothing needed escaping). Pass this, not `text`,
    /// as the value of a downstream template variable, then [`parse_chat`] it.
    pub fn escaped(&self) -> &str {
        self.escaped.as_deref().unwrap_or(&self.text)
    }
}

/// A compiled Jinja2 template, configured like promptflow's jinja2 environment.
pub struct PromptTemplate {
    env: Environment<'static>,
    name: String,
    variables: BTreeSet<String>,
    line_offset: usize,
    source: String,
    list_style: ListStyle,
}

impl fmt::Debug for PromptTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PromptTemplate")
            .field("name", &self.name)
            .field("variables", &self.variables)
            .finish_non_exhaustive()
    }
}

/// The most steps (minijinja instructions) one render may take: far beyond any real prompt (a
/// loop over ten thousand chat turns takes well under a million), and about a second of CPU,
/// so a runaway template fails its line instead of holding a core.
pub const RENDER_FUEL: u64 = 20_000_000;

impl PromptTemplate {
    /// Compiles `source`; `name` (usually the file path) appears in error messages.
    pub fn new(name: &str, source: impl Into<String>) -> Result<Self, TemplateError> {
        Self::with_options(name, source, TemplateOptions::default())
    }

    /// Compiles `source` with explicit [`TemplateOptions`].
    pub fn with_options(
        name: &str,
        source: impl Into<String>,
        options: TemplateOptions,
    ) -> Result<Self, TemplateError> {
        let mut source: String = source.into();
        // Python reads template files in text mode, which turns CRLF into LF.
        if source.contains("\r\n") {
            source = source.replace("\r\n", "\n");
        }
        let mut env = Environment::new();
        env.set_fuel(Some(RENDER_FUEL));
        env.set_trim_blocks(true);
        env.set_keep_trailing_newline(true);
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        let style = options.list_style;
        env.set_formatter(move |out, _state, value| {
            if let Some(s) = value.as_str() {
                return out.write_str(s).map_err(Into::into);
            }
            let mut s = String::new();
            pyfmt::write_str(&mut s, value, style);
            out.write_str(&s).map_err(Into::into)
        });
        env.add_filter("string", |v: minijinja::Value| {
            let mut s = String::new();
            pyfmt::write_str(&mut s, &v, ListStyle::Python);
            s
        });
        let offset = options.line_offset;
        env.add_template_owned(name.to_string(), source.clone())
            .map_err(|e| error::from_minijinja(&e, name, &source, offset, true))?;
        let variables = env
            .get_template(name)
            .map(|t| t.undeclared_variables(false))
            .unwrap_or_default();
        // Built-in globals (`range`, `dict`, `namespace`...) are not inputs.
        let globals: HashSet<&str> = env.globals().map(|(k, _)| k).collect();
        let variables = variables
            .into_iter()
            .filter(|v| !globals.contains(v.as_str()))
            .collect();
        Ok(PromptTemplate {
            env,
            name: name.to_string(),
            variables,
            line_offset: offset,
            source,
            list_style: style,
        })
    }

    /// Compiles `source` as another template with this one's options (a template a node
    /// receives as an input value, in place of its file, as promptflow does).
    pub fn sibling(&self, name: &str, source: impl Into<String>) -> Result<Self, TemplateError> {
        Self::with_options(
            name,
            source,
            TemplateOptions {
                list_style: self.list_style,
                line_offset: 0,
            },
        )
    }

    /// The name given at construction.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The (CRLF-normalised) template source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Top-level variables the template reads (loop variables and `set` targets excluded).
    pub fn variables(&self) -> &BTreeSet<String> {
        &self.variables
    }

    /// Renders with `vars`; undefined variables render as the empty string.
    pub fn render(&self, vars: &Map<String, Value>) -> Result<String, TemplateError> {
        self.render_ctx(minijinja::Value::from_serialize(
            crate::non_finite::JinjaMap(vars),
        ))
    }

    /// Renders twice when needed: once with the real values (`text`), once with the values of
    /// the variables named in `tainted` escaped (`escaped`). Strings that already carry escapes
    /// (an upstream prompt node's [`Rendered::escaped`]) are unescaped for `text`.
    pub fn render_guarded(
        &self,
        vars: &Map<String, Value>,
        tainted: &HashSet<String>,
    ) -> Result<Rendered, TemplateError> {
        let mut escaped_vals: Vec<Option<Value>> = Vec::new();
        let mut visible_vals: Vec<Option<Value>> = Vec::new();
        let mut any = false;
        for (k, v) in vars {
            // Tainted values are raw data: escaped for `escaped`, as-is for `text`. Other strings
            // may be an upstream prompt's escaped text: as-is for `escaped`, unescaped for `text`.
            let (e, u) = if tainted.contains(k) {
                (escape::escape_value(v), None)
            } else {
                (None, escape::unescape_value(v))
            };
            any |= e.is_some() || u.is_some();
            escaped_vals.push(e);
            visible_vals.push(u);
        }
        if !any {
            let text = self.render(vars)?;
            return Ok(Rendered {
                text,
                escaped: None,
            });
        }
        let build = |alt: &[Option<Value>]| {
            minijinja::Value::from_iter(vars.iter().zip(alt).map(|((k, v), a)| {
                (
                    minijinja::Value::from(k.as_str()),
                    minijinja::Value::from_serialize(crate::non_finite::Jinja(
                        a.as_ref().unwrap_or(v),
                    )),
                )
            }))
        };
        let text = self.render_ctx(build(&visible_vals))?;
        let escaped = self.render_ctx(build(&escaped_vals))?;
        let escaped = (escaped != text).then_some(escaped);
        Ok(Rendered { text, escaped })
    }

    fn render_ctx(&self, ctx: minijinja::Value) -> Result<String, TemplateError> {
        let tmpl = self
            .env
            .get_template(&self.name)
            .map_err(|e| self.render_error(&e))?;
        tmpl.render(ctx).map_err(|e| self.render_error(&e))
    }

    /// Whether the template has logic (`{% ... %}`: loops, conditions, macros), whose work does
    /// not follow from the size of its inputs. Such a template renders off the async workers.
    pub fn has_logic(&self) -> bool {
        self.source.contains("{%")
    }

    fn render_error(&self, e: &minijinja::Error) -> TemplateError {
        if e.kind() == minijinja::ErrorKind::OutOfFuel {
            return TemplateError::Render {
                name: self.name.clone(),
                line: e.line().map(|l| l + self.line_offset),
                col: None,
                message: format!(
                    "the template did more work than one render may ({RENDER_FUEL} steps): a loop over too much data, or one that never ends"
                ),
            };
        }
        error::from_minijinja(e, &self.name, self.source(), self.line_offset, false)
    }
}
