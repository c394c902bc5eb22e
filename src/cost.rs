//! Token prices: what a model call cost, in USD.
//!
//! [`PriceTable::builtin`] knows common OpenAI and Anthropic models, priced per 1M input
//! (prompt) and output (completion) tokens as listed on the vendors' public pricing pages in
//! November 2025 (standard tier, no batch or cache discounts). **Prices change**; override them in a
//! file (below) rather than trusting these for billing. The `echo` test model costs 0.
//!
//! A model name matches a known name exactly, else the longest known name that is a prefix of
//! it followed by `-`, `@` or `:` (so `gpt-4o-mini-2024-07-18` is priced as `gpt-4o-mini`,
//! `gpt-4o-mini` never as `gpt-4o`, and `gpt-4.5-preview` not as `gpt-4`), case-insensitively.
//! A name with a vendor prefix (`openai/gpt-4o`) is tried without it too. Unknown models
//! have no price ([`PriceTable::cost`] is `None`), so callers show "unknown" rather than 0.
//!
//! Override file (JSON or YAML, per 1M tokens; entries replace built-in ones of the same name):
//! ```yaml
//! my-deployment: {input: 0.15, output: 0.6}
//! gpt-4o: {input: 2.5, output: 10}
//! ```
//! Discovery ([`PriceTable::from_env_and_file`]), first that applies:
//! 1. an explicit file (`--prices FILE`), which must exist;
//! 2. the `FLOW_PRICES` environment variable naming a file, which must exist;
//! 3. `.flow/prices.yaml`, `.flow/prices.yml` or `.flow/prices.json` in the project directory,
//!    if present;
//! 4. otherwise the built-in table alone.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Environment variable naming a price override file.
pub const PRICES_ENV: &str = "FLOW_PRICES";

/// USD per 1M tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Per 1M input (prompt) tokens.
    pub input: f64,
    /// Per 1M output (completion) tokens.
    pub output: f64,
}

impl Price {
    const fn new(input: f64, output: f64) -> Price {
        Price { input, output }
    }

    /// The cost of a call with these token counts.
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        (self.input * prompt_tokens as f64 + self.output * completion_tokens as f64) / 1_000_000.0
    }
}

/// When the built-in prices were taken from the vendors' pricing pages.
pub const BUILTIN_PRICES_DATE: &str = "2025-11";

/// Built-in prices, USD per 1M tokens (see [`BUILTIN_PRICES_DATE`]). Names are lowercase.
const BUILTIN: &[(&str, Price)] = &[
    // OpenAI
    ("gpt-5", Price::new(1.25, 10.00)),
    ("gpt-5-mini", Price::new(0.25, 2.00)),
    ("gpt-5-nano", Price::new(0.05, 0.40)),
    ("gpt-4o", Price::new(2.50, 10.00)),
    ("gpt-4o-mini", Price::new(0.15, 0.60)),
    ("gpt-4.1", Price::new(2.00, 8.00)),
    ("gpt-4.1-mini", Price::new(0.40, 1.60)),
    ("gpt-4.1-nano", Price::new(0.10, 0.40)),
    ("o1", Price::new(15.00, 60.00)),
    ("o1-mini", Price::new(1.10, 4.40)),
    ("o3", Price::new(2.00, 8.00)),
    ("o3-mini", Price::new(1.10, 4.40)),
    ("o4-mini", Price::new(1.10, 4.40)),
    ("gpt-4-turbo", Price::new(10.00, 30.00)),
    ("gpt-4", Price::new(30.00, 60.00)),
    ("gpt-4-32k", Price::new(60.00, 120.00)),
    ("gpt-3.5-turbo", Price::new(0.50, 1.50)),
    // Azure OpenAI's name for gpt-3.5-turbo.
    ("gpt-35-turbo", Price::new(0.50, 1.50)),
    ("text-embedding-3-small", Price::new(0.02, 0.0)),
    ("text-embedding-3-large", Price::new(0.13, 0.0)),
    ("text-embedding-ada-002", Price::new(0.10, 0.0)),
    // Anthropic
    ("claude-3-haiku", Price::new(0.25, 1.25)),
    ("claude-3-opus", Price::new(15.00, 75.00)),
    ("claude-3-5-haiku", Price::new(0.80, 4.00)),
    ("claude-3-5-sonnet", Price::new(3.00, 15.00)),
    ("claude-3-7-sonnet", Price::new(3.00, 15.00)),
    ("claude-sonnet-4", Price::new(3.00, 15.00)),
    ("claude-opus-4", Price::new(15.00, 75.00)),
    ("claude-opus-4-1", Price::new(15.00, 75.00)),
    ("claude-opus-4-5", Price::new(5.00, 25.00)),
    ("claude-sonnet-4-5", Price::new(3.00, 15.00)),
    ("claude-haiku-4-5", Price::new(1.00, 5.00)),
    // The local test model.
    ("echo", Price::new(0.0, 0.0)),
];

/// A price table file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    #[error("{}: cannot read the price file: {source} (check the path{})", .path.display(), env_note(.from_env))]
    Io {
        path: PathBuf,
        /// Whether the path came from `FLOW_PRICES`.
        from_env: bool,
        source: std::io::Error,
    },
    #[error(
        "{}:{line}:{column}: {message} (a price file maps model names to {{input: USD, output: USD}} per 1M tokens, e.g. `gpt-4o: {{input: 2.5, output: 10}}`)",
        .path.display()
    )]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: model `{model}`: {message}", .path.display())]
    Invalid {
        path: PathBuf,
        model: String,
        message: String,
    },
}

impl crate::error::Classify for PriceError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Config
    }
}

fn env_note(from_env: &bool) -> &'static str {
    if *from_env {
        ", which comes from the FLOW_PRICES environment variable"
    } else {
        ""
    }
}

/// Model prices: the built-in table plus a user's overrides.
#[derive(Debug, Clone)]
pub struct PriceTable {
    /// Lowercase name → price; overrides replace built-ins.
    entries: Vec<(String, Price)>,
}

impl Default for PriceTable {
    fn default() -> Self {
        PriceTable::builtin()
    }
}

impl PriceTable {
    /// The built-in prices (see the module doc for their date and caveats).
    pub fn builtin() -> PriceTable {
        PriceTable {
            entries: BUILTIN
                .iter()
                .map(|(name, price)| ((*name).to_string(), *price))
                .collect(),
        }
    }

    /// Find prices the way the module doc describes: `file` (e.g. `--prices`), else
    /// `FLOW_PRICES`, else `.flow/prices.{yaml,yml,json}` under `project_dir`, else built-ins.
    pub fn from_env_and_file(
        file: Option<&Path>,
        project_dir: &Path,
    ) -> Result<PriceTable, PriceError> {
        PriceTable::from_sources(file, std::env::var_os(PRICES_ENV), project_dir)
    }

    /// [`from_env_and_file`](Self::from_env_and_file) with the environment value given.
    pub fn from_sources(
        file: Option<&Path>,
        env_value: Option<OsString>,
        project_dir: &Path,
    ) -> Result<PriceTable, PriceError> {
        let mut table = PriceTable::builtin();
        if let Some(file) = file {
            table.load_overrides_inner(file, false)?;
        } else if let Some(env) = env_value.filter(|v| !v.is_empty()) {
            table.load_overrides_inner(Path::new(&env), true)?;
        } else {
            let dir = project_dir.join(".flow");
            let found = ["prices.yaml", "prices.yml", "prices.json"]
                .iter()
                .map(|name| dir.join(name))
                .find(|p| p.is_file());
            if let Some(path) = found {
                table.load_overrides_inner(&path, false)?;
            }
        }
        Ok(table)
    }

    /// Merge a user's price file (JSON for `.json`, else YAML) into this table; its entries
    /// replace built-in ones of the same name.
    pub fn load_overrides(&mut self, path: &Path) -> Result<(), PriceError> {
        self.load_overrides_inner(path, false)
    }

    fn load_overrides_inner(&mut self, path: &Path, from_env: bool) -> Result<(), PriceError> {
        let text = std::fs::read_to_string(path).map_err(|source| PriceError::Io {
            path: path.to_path_buf(),
            from_env,
            source,
        })?;
        let prices = parse_file(path, &text)?;
        for (model, price) in prices {
            for (what, value) in [("input", price.input), ("output", price.output)] {
                if !value.is_finite() || value < 0.0 {
                    return Err(PriceError::Invalid {
                        path: path.to_path_buf(),
                        model,
                        message: format!(
                            "the {what} price {value} is not a non-negative number of USD per 1M tokens"
                        ),
                    });
                }
            }
            self.set(&model, price);
        }
        Ok(())
    }

    /// Set (or replace) one model's price.
    pub fn set(&mut self, model: &str, price: Price) {
        let name = model.trim().to_lowercase();
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = price,
            None => self.entries.push((name, price)),
        }
    }

    /// The price of `model`: an exact (case-insensitive) match, else the longest known prefix
    /// ending at `-`, `@` or `:`, else the same without a `vendor/` prefix.
    pub fn price_of(&self, model: &str) -> Option<Price> {
        let model = model.trim();
        self.lookup(model).or_else(|| {
            let (_, bare) = model.rsplit_once('/')?;
            self.lookup(bare)
        })
    }

    fn lookup(&self, model: &str) -> Option<Price> {
        let bytes = model.as_bytes();
        let mut best: Option<(usize, Price)> = None;
        for (name, price) in &self.entries {
            let n = name.len();
            if bytes.len() < n || !bytes[..n].eq_ignore_ascii_case(name.as_bytes()) {
                continue;
            }
            if bytes.len() == n {
                return Some(*price);
            }
            if matches!(bytes[n], b'-' | b'@' | b':') && best.is_none_or(|(len, _)| n > len) {
                best = Some((n, *price));
            }
        }
        best.map(|(_, price)| price)
    }

    /// The cost in USD of a call to `model`; `None` when the model's price is unknown.
    pub fn cost(&self, model: &str, prompt_tokens: u64, completion_tokens: u64) -> Option<f64> {
        self.price_of(model)
            .map(|p| p.cost(prompt_tokens, completion_tokens))
    }
}

fn parse_file(path: &Path, text: &str) -> Result<BTreeMap<String, Price>, PriceError> {
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let syntax = |line: usize, column: usize, message: String| PriceError::Syntax {
        path: path.to_path_buf(),
        line,
        column,
        message,
    };
    if is_json {
        serde_json::from_str(text).map_err(|e| {
            let s = e.to_string();
            let message = s
                .rfind(" at line ")
                .map_or(s.clone(), |i| s[..i].to_string());
            syntax(e.line(), e.column(), message)
        })
    } else if text.trim().is_empty() {
        Ok(BTreeMap::new())
    } else {
        serde_yaml::from_str(text).map_err(|e| {
            let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
            let s = e.to_string();
            let message = s
                .rfind(" at line ")
                .map_or(s.clone(), |i| s[..i].to_string());
            syntax(line, column, message)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_names_are_lowercase_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for (name, _) in BUILTIN {
            assert_eq!(*name, name.to_lowercase());
            assert!(seen.insert(*name), "duplicate {name}");
        }
    }

    #[test]
    fn prefix_needs_a_separator() {
        let t = PriceTable::builtin();
        assert_eq!(t.price_of("gpt-4o-2024-08-06"), t.price_of("gpt-4o"));
        assert_eq!(t.price_of("gpt-4.5-preview"), None);
        assert_eq!(t.price_of("gpt-4oo"), None);
        assert_eq!(
            t.price_of("claude-3-5-sonnet@20240620"),
            t.price_of("claude-3-5-sonnet")
        );
        assert_eq!(t.price_of("openai/gpt-4o-mini"), t.price_of("gpt-4o-mini"));
    }
}
