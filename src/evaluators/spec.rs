//! Evaluator specs: `NAME[:options]` text → a typed [`EvaluatorSpec`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use regex::Regex;

use super::schema::{Schema, SchemaError};
pub use super::text::TextOptions;

/// Per-line pass mark of continuous metrics (f1, bleu, rouge_l) when `threshold=` is not given.
pub const DEFAULT_THRESHOLD: f64 = 0.5;

/// Absolute tolerance of `numeric` when neither `tolerance=` nor `rel_tolerance=` is given.
pub const DEFAULT_TOLERANCE: f64 = 1e-9;

/// One built-in evaluator with its options.
#[derive(Debug, Clone)]
pub enum Kind {
    /// Prediction equals the reference after the chosen normalisation.
    ExactMatch(TextOptions),
    /// Prediction contains `text` (or, without it, the reference).
    Contains {
        /// The text to look for; `None`: the reference.
        text: Option<String>,
        /// Normalisation applied to both sides.
        options: TextOptions,
    },
    /// Prediction does not contain `text` (or, without it, the reference).
    NotContains {
        /// The text that must be absent; `None`: the reference.
        text: Option<String>,
        /// Normalisation applied to both sides.
        options: TextOptions,
    },
    /// Prediction matches a regular expression (unanchored: use `^...$` for a whole match).
    Regex(Regex),
    /// Prediction is JSON: a string that parses, or any non-string value.
    IsJson {
        /// Accept a JSON text wrapped in a Markdown code fence (```json ... ```).
        strip_fence: bool,
    },
    /// Prediction is JSON valid against a schema (see [`Schema`] for the supported subset).
    JsonSchema {
        /// Where the schema was read from.
        path: PathBuf,
        /// The checked schema.
        schema: Schema,
        /// Accept a JSON text wrapped in a Markdown code fence.
        strip_fence: bool,
    },
    /// Prediction is a number close to the reference.
    Numeric {
        /// Largest absolute difference that passes.
        tolerance: f64,
        /// Largest difference relative to the reference that passes (0: unused).
        rel_tolerance: f64,
        /// Take the first number found in a text prediction ("The answer is 42.").
        extract: bool,
    },
    /// SQuAD token F1 (normalised unless `raw`).
    F1 {
        /// Apply SQuAD's normalisation first.
        normalize: bool,
    },
    /// sacrebleu sentence BLEU-4, 0..=1.
    Bleu {
        /// Lowercase both sides first.
        lowercase: bool,
    },
    /// ROUGE-L F-measure, 0..=1.
    RougeL,
    /// Line latency at most `max_ms`; the score is the latency in milliseconds.
    Latency {
        /// Budget in milliseconds.
        max_ms: f64,
    },
    /// Line tokens at most `max`; the score is the token count.
    Tokens {
        /// Budget in tokens.
        max: u64,
    },
    /// Line cost at most `max_usd`; the score is the cost in US dollars.
    Cost {
        /// Budget in US dollars.
        max_usd: f64,
    },
}

/// A configured evaluator, as given to `--evaluator` or in `experiment.yaml`.
#[derive(Debug, Clone)]
pub struct EvaluatorSpec {
    /// Metric prefix: the evaluator's name, or the one given with `as=`.
    pub name: String,
    /// What it checks, with its options.
    pub kind: Kind,
    /// Per-line pass mark of a continuous metric (`Some` only for f1, bleu, rouge_l).
    pub threshold: Option<f64>,
    /// The text it was parsed from.
    pub source: String,
}

/// A spec that cannot be used; the message says what is wrong and what would be right.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Nothing was given.
    #[error("empty evaluator: give a name such as `exact_match`; built-in evaluators: {}", NAMES.join(", "))]
    Empty,
    /// The name is not a built-in evaluator.
    #[error("unknown evaluator `{name}`{}; built-in evaluators: {}", did_you_mean(.suggestion), NAMES.join(", "))]
    UnknownEvaluator {
        /// The name given.
        name: String,
        /// The closest built-in name.
        suggestion: Option<String>,
    },
    /// The evaluator has no such option.
    #[error("evaluator `{evaluator}` has no option `{option}`{}; its options: {valid}", did_you_mean(.suggestion))]
    UnknownOption {
        /// The evaluator.
        evaluator: String,
        /// The option given.
        option: String,
        /// The closest valid option.
        suggestion: Option<String>,
        /// Every valid option, with `=...` on those that take a value.
        valid: String,
    },
    /// An option that needs a value was given as a flag.
    #[error("option `{option}` of evaluator `{evaluator}` needs a value: `{option}=...`")]
    MissingValue {
        /// The evaluator.
        evaluator: String,
        /// The option.
        option: String,
    },
    /// A flag was given a value.
    #[error(
        "option `{option}` of evaluator `{evaluator}` is a flag and takes no value: write `{option}`"
    )]
    UnexpectedValue {
        /// The evaluator.
        evaluator: String,
        /// The option.
        option: String,
    },
    /// An option was given twice.
    #[error("option `{option}` of evaluator `{evaluator}` is given twice")]
    Duplicate {
        /// The evaluator.
        evaluator: String,
        /// The option.
        option: String,
    },
    /// An option's value is not what it must be.
    #[error("option `{option}={value}` of evaluator `{evaluator}`: expected {expected}")]
    BadValue {
        /// The evaluator.
        evaluator: String,
        /// The option.
        option: String,
        /// The value given.
        value: String,
        /// What it must be.
        expected: &'static str,
    },
    /// A required option is missing.
    #[error("evaluator `{evaluator}` needs option `{option}`, e.g. `{example}`")]
    MissingOption {
        /// The evaluator.
        evaluator: String,
        /// The option.
        option: &'static str,
        /// A complete spec that works.
        example: &'static str,
    },
    /// `pattern=` is not a regular expression.
    #[error("evaluator `regex`: `{pattern}` is not a valid regular expression: {source}")]
    BadRegex {
        /// The pattern given.
        pattern: String,
        /// Why it does not compile.
        source: regex::Error,
    },
    /// The schema file cannot be read.
    #[error("evaluator `json_schema`: cannot read schema file {}: {source}", .path.display())]
    SchemaRead {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The schema file is not JSON.
    #[error("evaluator `json_schema`: schema file {} is not valid JSON: {source}", .path.display())]
    SchemaJson {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// The schema uses something the validator does not support, or is malformed.
    #[error("evaluator `json_schema`: schema file {}: {source}", .path.display())]
    Schema {
        /// The file.
        path: PathBuf,
        /// Why.
        source: SchemaError,
    },
}

impl crate::error::Classify for SpecError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Config
    }
}

fn did_you_mean(s: &Option<String>) -> String {
    s.as_ref()
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

/// The built-in evaluator names.
pub const NAMES: &[&str] = &[
    "exact_match",
    "contains",
    "not_contains",
    "regex",
    "is_json",
    "json_schema",
    "numeric",
    "f1",
    "bleu",
    "rouge_l",
    "latency",
    "tokens",
    "cost",
];

const ALIASES: &[(&str, &str)] = &[
    ("exact", "exact_match"),
    ("em", "exact_match"),
    ("json", "is_json"),
    ("token_f1", "f1"),
    ("rougel", "rouge_l"),
    ("rouge", "rouge_l"),
];

/// An option: its name and whether it takes a value.
type Opt = (&'static str, bool);

const TEXT_FLAGS: &[Opt] = &[
    ("ignore_case", false),
    ("strip_punctuation", false),
    ("strip_articles", false),
    ("normalize_whitespace", false),
    ("squad", false),
];

fn options_of(name: &str) -> Vec<Opt> {
    let mut opts: Vec<Opt> = vec![("as", true)];
    match name {
        "exact_match" => opts.extend_from_slice(TEXT_FLAGS),
        "contains" | "not_contains" => {
            opts.push(("text", true));
            opts.extend_from_slice(TEXT_FLAGS);
        }
        "regex" => opts.extend([("pattern", true), ("ignore_case", false)]),
        "is_json" => opts.push(("strip_fence", false)),
        "json_schema" => opts.extend([("file", true), ("strip_fence", false)]),
        "numeric" => opts.extend([
            ("tolerance", true),
            ("rel_tolerance", true),
            ("extract", false),
        ]),
        "f1" => opts.extend([("threshold", true), ("raw", false)]),
        "bleu" => opts.extend([("threshold", true), ("lowercase", false)]),
        "rouge_l" => opts.push(("threshold", true)),
        "latency" => opts.push(("max_ms", true)),
        "tokens" => opts.push(("max", true)),
        "cost" => opts.push(("max_usd", true)),
        _ => {}
    }
    opts
}

/// Options whose value may itself contain commas: a following segment that is not an option
/// of the evaluator continues the value.
const GREEDY: &[&str] = &["text", "pattern"];

/// The closest of `candidates` to `word`, if close enough to be a likely typo.
fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let word = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&word, c), c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2) || (word.len() >= 3 && c.starts_with(&word)))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

/// The canonical evaluator name for `name` (or an alias), or an error suggesting the closest.
fn resolve(name: &str) -> Result<&'static str, SpecError> {
    canonical(name).ok_or_else(|| {
        let mut all: Vec<&str> = NAMES.to_vec();
        all.extend(ALIASES.iter().map(|(a, _)| *a));
        let suggestion = closest(name.trim(), all)
            .and_then(|s| canonical(&s))
            .map(str::to_string);
        SpecError::UnknownEvaluator {
            name: name.trim().to_string(),
            suggestion,
        }
    })
}

fn canonical(name: &str) -> Option<&'static str> {
    let n = name.trim().to_lowercase().replace('-', "_");
    NAMES
        .iter()
        .copied()
        .find(|k| *k == n)
        .or_else(|| ALIASES.iter().find(|(a, _)| *a == n).map(|(_, k)| *k))
}

impl EvaluatorSpec {
    /// Parses `NAME[:opt,key=value,...]`; a relative `json_schema` `file=` is read from `base`
    /// (the working directory for `--evaluator`, the file's directory for `experiment.yaml`).
    ///
    /// Options are comma-separated; `text=` and `pattern=` values may contain commas (a
    /// following segment that is not one of the evaluator's options continues the value).
    pub fn parse(text: &str, base: &Path) -> Result<Self, SpecError> {
        let source = text.trim();
        let (raw_name, rest) = source.split_once(':').unwrap_or((source, ""));
        if raw_name.trim().is_empty() {
            return Err(SpecError::Empty);
        }
        let kind_name = resolve(raw_name)?;
        let pairs = lex_options(rest, &options_of(kind_name));
        Self::build(kind_name, pairs, base, source)
    }

    /// Builds a spec from a name and already separated options (e.g. an `experiment.yaml`
    /// mapping): `(key, None)` is a flag, `(key, Some(value))` a value, taken verbatim.
    pub fn from_options(
        name: &str,
        options: Vec<(String, Option<String>)>,
        base: &Path,
    ) -> Result<Self, SpecError> {
        if name.trim().is_empty() {
            return Err(SpecError::Empty);
        }
        let kind_name = resolve(name)?;
        let mut source = kind_name.to_string();
        for (i, (k, v)) in options.iter().enumerate() {
            source.push(if i == 0 { ':' } else { ',' });
            source.push_str(k);
            if let Some(v) = v {
                source.push('=');
                source.push_str(v);
            }
        }
        Self::build(kind_name, options, base, &source)
    }

    fn build(
        kind_name: &'static str,
        pairs: Vec<(String, Option<String>)>,
        base: &Path,
        source: &str,
    ) -> Result<Self, SpecError> {
        let allowed = options_of(kind_name);
        let opts = check_options(kind_name, pairs, &allowed)?;
        let o = Options {
            evaluator: kind_name,
            opts,
        };

        let text_opts = || -> TextOptions {
            if o.flag("squad") {
                return TextOptions::squad();
            }
            TextOptions {
                ignore_case: o.flag("ignore_case"),
                strip_punctuation: o.flag("strip_punctuation"),
                strip_articles: o.flag("strip_articles"),
                normalize_whitespace: o.flag("normalize_whitespace"),
            }
        };
        let kind = match kind_name {
            "exact_match" => Kind::ExactMatch(text_opts()),
            "contains" => Kind::Contains {
                text: o.value("text").map(str::to_string),
                options: text_opts(),
            },
            "not_contains" => Kind::NotContains {
                text: o.value("text").map(str::to_string),
                options: text_opts(),
            },
            "regex" => {
                let pattern = o.required("pattern", r"regex:pattern=^\d+$")?;
                let full = if o.flag("ignore_case") {
                    format!("(?i){pattern}")
                } else {
                    pattern.to_string()
                };
                let re = Regex::new(&full).map_err(|source| SpecError::BadRegex {
                    pattern: pattern.to_string(),
                    source,
                })?;
                Kind::Regex(re)
            }
            "is_json" => Kind::IsJson {
                strip_fence: o.flag("strip_fence"),
            },
            "json_schema" => {
                let file = o.required("file", "json_schema:file=schema.json")?;
                let path = base.join(file);
                let body =
                    std::fs::read_to_string(&path).map_err(|source| SpecError::SchemaRead {
                        path: path.clone(),
                        source,
                    })?;
                let value =
                    serde_json::from_str(&body).map_err(|source| SpecError::SchemaJson {
                        path: path.clone(),
                        source,
                    })?;
                let schema = Schema::new(value).map_err(|source| SpecError::Schema {
                    path: path.clone(),
                    source,
                })?;
                Kind::JsonSchema {
                    path,
                    schema,
                    strip_fence: o.flag("strip_fence"),
                }
            }
            "numeric" => {
                let abs = o.number("tolerance", 0.0, f64::INFINITY)?;
                let rel = o.number("rel_tolerance", 0.0, f64::INFINITY)?;
                let tolerance = abs.unwrap_or(if rel.is_some() {
                    0.0
                } else {
                    DEFAULT_TOLERANCE
                });
                Kind::Numeric {
                    tolerance,
                    rel_tolerance: rel.unwrap_or(0.0),
                    extract: o.flag("extract"),
                }
            }
            "f1" => Kind::F1 {
                normalize: !o.flag("raw"),
            },
            "bleu" => Kind::Bleu {
                lowercase: o.flag("lowercase"),
            },
            "rouge_l" => Kind::RougeL,
            "latency" => Kind::Latency {
                max_ms: o
                    .number("max_ms", 0.0, f64::INFINITY)?
                    .ok_or(o.missing("max_ms", "latency:max_ms=2000"))?,
            },
            "tokens" => {
                let max = o.value("max").ok_or(o.missing("max", "tokens:max=500"))?;
                let max = max
                    .parse::<u64>()
                    .map_err(|_| o.bad("max", max, "a whole number of tokens"))?;
                Kind::Tokens { max }
            }
            "cost" => Kind::Cost {
                max_usd: o
                    .number("max_usd", 0.0, f64::INFINITY)?
                    .ok_or(o.missing("max_usd", "cost:max_usd=0.01"))?,
            },
            _ => {
                return Err(SpecError::UnknownEvaluator {
                    name: kind_name.to_string(),
                    suggestion: None,
                });
            }
        };
        let threshold = if matches!(kind, Kind::F1 { .. } | Kind::Bleu { .. } | Kind::RougeL) {
            Some(
                o.number("threshold", 0.0, 1.0)?
                    .unwrap_or(DEFAULT_THRESHOLD),
            )
        } else {
            None
        };
        let name = match o.value("as") {
            Some(n) if valid_metric_name(n) => n.to_string(),
            Some(n) => return Err(o.bad("as", n, "a metric name of letters, digits, `_` and `-`")),
            None => kind_name.to_string(),
        };
        Ok(EvaluatorSpec {
            name,
            kind,
            threshold,
            source: source.to_string(),
        })
    }

    /// The canonical name of the evaluator kind (`exact_match`, `bleu`, ...), whatever `as=` says.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::ExactMatch(_) => "exact_match",
            Kind::Contains { .. } => "contains",
            Kind::NotContains { .. } => "not_contains",
            Kind::Regex(_) => "regex",
            Kind::IsJson { .. } => "is_json",
            Kind::JsonSchema { .. } => "json_schema",
            Kind::Numeric { .. } => "numeric",
            Kind::F1 { .. } => "f1",
            Kind::Bleu { .. } => "bleu",
            Kind::RougeL => "rouge_l",
            Kind::Latency { .. } => "latency",
            Kind::Tokens { .. } => "tokens",
            Kind::Cost { .. } => "cost",
        }
    }

    /// Whether a line needs a reference (ground truth) to be scored.
    pub fn needs_reference(&self) -> bool {
        match &self.kind {
            Kind::ExactMatch(_)
            | Kind::Numeric { .. }
            | Kind::F1 { .. }
            | Kind::Bleu { .. }
            | Kind::RougeL => true,
            Kind::Contains { text, .. } | Kind::NotContains { text, .. } => text.is_none(),
            _ => false,
        }
    }

    /// Whether a line needs the flow's output (budgets only look at the line's measurements).
    pub fn needs_prediction(&self) -> bool {
        !matches!(
            self.kind,
            Kind::Latency { .. } | Kind::Tokens { .. } | Kind::Cost { .. }
        )
    }

    /// Whether scoring calls a model (none of the deterministic kinds do; embedding and judge
    /// evaluators will).
    pub fn needs_model(&self) -> bool {
        false
    }

    /// The aggregate metrics this evaluator yields: `NAME.mean` and `NAME.pass_rate`.
    pub fn metric_names(&self) -> Vec<String> {
        vec![
            format!("{}.mean", self.name),
            format!("{}.pass_rate", self.name),
        ]
    }
}

impl FromStr for EvaluatorSpec {
    type Err = SpecError;

    /// Parses a spec with relative paths taken from the working directory.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EvaluatorSpec::parse(s, Path::new("."))
    }
}

impl fmt::Display for EvaluatorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn valid_metric_name(n: &str) -> bool {
    !n.is_empty()
        && n.chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

struct Options {
    evaluator: &'static str,
    opts: Vec<(&'static str, Option<String>)>,
}

impl Options {
    fn flag(&self, key: &str) -> bool {
        self.opts.iter().any(|(k, _)| *k == key)
    }

    fn value(&self, key: &str) -> Option<&str> {
        self.opts
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.as_deref())
    }

    fn required(&self, key: &'static str, example: &'static str) -> Result<&str, SpecError> {
        self.value(key)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| self.missing(key, example))
    }

    fn missing(&self, option: &'static str, example: &'static str) -> SpecError {
        SpecError::MissingOption {
            evaluator: self.evaluator.to_string(),
            option,
            example,
        }
    }

    fn bad(&self, option: &str, value: &str, expected: &'static str) -> SpecError {
        SpecError::BadValue {
            evaluator: self.evaluator.to_string(),
            option: option.to_string(),
            value: value.to_string(),
            expected,
        }
    }

    fn number(&self, key: &str, min: f64, max: f64) -> Result<Option<f64>, SpecError> {
        let Some(v) = self.value(key) else {
            return Ok(None);
        };
        let expected = if max == 1.0 {
            "a number from 0 to 1"
        } else {
            "a number, 0 or more"
        };
        match v.trim().parse::<f64>() {
            Ok(n) if n.is_finite() && n >= min && n <= max => Ok(Some(n)),
            _ => Err(self.bad(key, v, expected)),
        }
    }
}

/// Splits `a,b=c,...` into (key, value) pairs; a segment after a `text=`/`pattern=` value that
/// is not an option of the evaluator continues that value.
fn lex_options(rest: &str, allowed: &[Opt]) -> Vec<(String, Option<String>)> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    let is_known = |seg: &str| {
        let key = seg.split_once('=').map_or(seg, |(k, _)| k).trim();
        allowed.iter().any(|(k, _)| *k == key)
    };
    for seg in rest.split(',') {
        if let Some((last_key, Some(value))) = out.last_mut() {
            if GREEDY.contains(&last_key.as_str()) && !is_known(seg) {
                value.push(',');
                value.push_str(seg);
                continue;
            }
        }
        match seg.split_once('=') {
            Some((k, v)) => out.push((k.trim().to_string(), Some(v.to_string()))),
            None if seg.trim().is_empty() => {}
            None => out.push((seg.trim().to_string(), None)),
        }
    }
    out
}

/// Checks each option is known, given once, and a flag or a value as it must be.
fn check_options(
    evaluator: &'static str,
    pairs: Vec<(String, Option<String>)>,
    allowed: &[Opt],
) -> Result<Vec<(&'static str, Option<String>)>, SpecError> {
    let mut out: Vec<(&'static str, Option<String>)> = Vec::new();
    let e = || evaluator.to_string();
    for (key, value) in pairs {
        let Some((name, takes_value)) = allowed.iter().copied().find(|(k, _)| *k == key) else {
            let valid: Vec<String> = allowed
                .iter()
                .map(|(k, v)| {
                    if *v {
                        format!("{k}=...")
                    } else {
                        k.to_string()
                    }
                })
                .collect();
            return Err(SpecError::UnknownOption {
                evaluator: e(),
                suggestion: closest(&key, allowed.iter().map(|(k, _)| *k)),
                option: key,
                valid: valid.join(", "),
            });
        };
        if out.iter().any(|(k, _)| *k == name) {
            return Err(SpecError::Duplicate {
                evaluator: e(),
                option: name.to_string(),
            });
        }
        match (takes_value, value) {
            (true, None) => {
                return Err(SpecError::MissingValue {
                    evaluator: e(),
                    option: name.to_string(),
                });
            }
            (false, Some(_)) => {
                return Err(SpecError::UnexpectedValue {
                    evaluator: e(),
                    option: name.to_string(),
                });
            }
            (_, value) => out.push((name, value)),
        }
    }
    Ok(out)
}
