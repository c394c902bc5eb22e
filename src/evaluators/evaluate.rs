//! Scoring one line with a deterministic evaluator.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::spec::{EvaluatorSpec, Kind};
use super::text;
use super::{EvalInput, Score};

impl EvaluatorSpec {
    /// Scores one line. Never fails: a line that cannot be scored (no prediction, no
    /// reference, no latency recorded...) gets a `None` score, fails, and says why.
    pub fn evaluate(&self, input: &EvalInput) -> Score {
        let prediction = match input.prediction {
            Some(p) => p,
            None if self.needs_prediction() => {
                return Score::unscored("no prediction: the line produced no output");
            }
            None => &Value::Null,
        };
        let reference = input.reference.filter(|r| !r.is_null());
        if self.needs_reference() && reference.is_none() {
            return Score::unscored("no reference value for this line");
        }
        let refs = || alternatives(reference.unwrap_or(&Value::Null), prediction);
        let pred = as_text(prediction);
        match &self.kind {
            Kind::ExactMatch(o) => {
                let refs = refs();
                let p = o.apply(&pred);
                Score::check(refs.iter().any(|r| o.apply(r) == p), || {
                    format!("expected {}, got {}", quote(&refs[0]), quote(&pred))
                })
            }
            Kind::Contains { text, options } => {
                let needles = text.clone().map(|t| vec![t]).unwrap_or_else(refs);
                let hay = options.apply(&pred);
                Score::check(
                    needles.iter().any(|n| hay.contains(&options.apply(n))),
                    || format!("does not contain {}", quote(&needles[0])),
                )
            }
            Kind::NotContains { text, options } => {
                let needles = text.clone().map(|t| vec![t]).unwrap_or_else(refs);
                let hay = options.apply(&pred);
                let found = needles.iter().find(|n| hay.contains(&options.apply(n)));
                Score::check(found.is_none(), || {
                    format!("contains {}", quote(found.map_or("", |s| s)))
                })
            }
            Kind::Regex(re) => Score::check(re.is_match(&pred), || {
                format!("{} does not match /{}/", quote(&pred), re.as_str())
            }),
            Kind::IsJson { strip_fence } => match as_json(prediction, *strip_fence) {
                Ok(_) => Score::pass(1.0),
                Err(e) => Score::fail(0.0, format!("not JSON: {e}")),
            },
            Kind::JsonSchema {
                schema,
                strip_fence,
                ..
            } => match as_json(prediction, *strip_fence) {
                Err(e) => Score::fail(0.0, format!("not JSON: {e}")),
                Ok(value) => {
                    let errors = schema.validate(&value);
                    match errors.as_slice() {
                        [] => Score::pass(1.0),
                        [one] => Score::fail(0.0, one.clone()),
                        [first, rest @ ..] => {
                            Score::fail(0.0, format!("{first} (and {} more)", rest.len()))
                        }
                    }
                }
            },
            Kind::Numeric {
                tolerance,
                rel_tolerance,
                extract,
            } => numeric(
                prediction,
                reference.unwrap_or(&Value::Null),
                *tolerance,
                *rel_tolerance,
                *extract,
            ),
            Kind::F1 { normalize } => {
                let s = best(&refs(), |r| text::token_f1(&pred, r, *normalize));
                self.graded("f1", s)
            }
            Kind::Bleu { lowercase } => {
                let refs = refs();
                let s = if *lowercase {
                    let lower: Vec<String> = refs.iter().map(|r| r.to_lowercase()).collect();
                    text::sentence_bleu(
                        &pred.to_lowercase(),
                        &lower.iter().map(String::as_str).collect::<Vec<_>>(),
                    )
                } else {
                    text::sentence_bleu(&pred, &refs.iter().map(String::as_str).collect::<Vec<_>>())
                };
                self.graded("bleu", s)
            }
            Kind::RougeL => {
                let s = best(&refs(), |r| text::rouge_l(&pred, r));
                self.graded("rouge_l", s)
            }
            Kind::Latency { max_ms } => budget(input.latency_ms, *max_ms, "latency", "ms"),
            Kind::Tokens { max } => budget(
                input.total_tokens.map(|t| t as f64),
                *max as f64,
                "tokens",
                " tokens",
            ),
            Kind::Cost { max_usd } => budget(input.cost_usd, *max_usd, "cost", " USD"),
        }
    }

    fn graded(&self, metric: &str, score: f64) -> Score {
        let threshold = self.threshold.unwrap_or(super::spec::DEFAULT_THRESHOLD);
        if score >= threshold {
            Score::pass(score)
        } else {
            Score::fail(
                score,
                format!("{metric} {score:.3} is below the threshold {threshold}"),
            )
        }
    }
}

/// The text of a value: a string as is, anything else as compact JSON.
fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The acceptable references: an array reference is a set of alternatives, unless the
/// prediction is itself an array (then they are compared whole).
fn alternatives(reference: &Value, prediction: &Value) -> Vec<String> {
    match reference {
        Value::Array(items) if !prediction.is_array() && !items.is_empty() => {
            items.iter().map(as_text).collect()
        }
        other => vec![as_text(other)],
    }
}

fn best(refs: &[String], f: impl Fn(&str) -> f64) -> f64 {
    refs.iter().map(|r| f(r)).fold(0.0, f64::max)
}

fn quote(s: &str) -> String {
    let short: String = s.chars().take(60).collect();
    let ell = if s.chars().count() > 60 { "…" } else { "" };
    format!("{:?}", format!("{short}{ell}"))
}

static FENCE: LazyLock<Regex> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    Regex::new(r"(?s)^\s*```[A-Za-z0-9_-]*[ \t]*\r?\n(.*?)\r?\n?```\s*$")
        .expect("a constant regex compiles")
});

/// The JSON value of a prediction: a string is parsed, anything else already is JSON.
fn as_json(v: &Value, strip_fence: bool) -> Result<Value, String> {
    let Value::String(s) = v else {
        return Ok(v.clone());
    };
    let body = if strip_fence {
        FENCE
            .captures(s)
            .and_then(|c| c.get(1))
            .map_or(s.as_str(), |m| m.as_str())
    } else {
        s.as_str()
    };
    serde_json::from_str(body).map_err(|e| e.to_string())
}

static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    Regex::new(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?").expect("a constant regex compiles")
});

fn number_of(v: &Value, extract: bool) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            let t = s.trim();
            t.parse::<f64>().ok().filter(|f| f.is_finite()).or_else(|| {
                extract
                    .then(|| NUMBER.find(t))
                    .flatten()
                    .and_then(|m| m.as_str().parse().ok())
            })
        }
        _ => None,
    }
}

fn numeric(prediction: &Value, reference: &Value, tol: f64, rel: f64, extract: bool) -> Score {
    let Some(p) = number_of(prediction, extract) else {
        let hint = if extract {
            ""
        } else {
            " (add `extract` to take the first number in a text)"
        };
        return Score::fail(
            0.0,
            format!(
                "prediction {} is not a number{hint}",
                quote(&as_text(prediction))
            ),
        );
    };
    let refs: Vec<&Value> = match reference {
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    let nums: Vec<f64> = refs.iter().filter_map(|r| number_of(r, true)).collect();
    let Some(first) = nums.first() else {
        return Score::unscored(format!(
            "reference {} is not a number",
            quote(&as_text(reference))
        ));
    };
    let close = |r: &f64| {
        let d = (p - r).abs();
        d <= tol || (rel > 0.0 && d <= rel * r.abs())
    };
    Score::check(nums.iter().any(close), || {
        let within = if rel > 0.0 {
            format!("±{tol} or ±{}%", rel * 100.0)
        } else {
            format!("±{tol}")
        };
        format!("got {p}, expected {first} ({within})")
    })
}

fn budget(measured: Option<f64>, max: f64, what: &str, unit: &str) -> Score {
    match measured {
        None => Score::unscored(format!("no {what} recorded for this line")),
        Some(v) if v <= max => Score::pass(v),
        Some(v) => Score::fail(
            v,
            format!("{what} {v}{unit} is over the budget of {max}{unit}"),
        ),
    }
}
