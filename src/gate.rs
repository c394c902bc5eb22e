//! Evaluation gates: thresholds (`accuracy>=0.8`), regression against a baseline run, and
//! k-of-n passes for lines sampled several times (`--repeat N`).
//!
//! Every check yields a [`GateResult`] with one clear verdict line, so `flow eval` can print
//! them, write them to JUnit XML and the Markdown summary, and exit 1 when any failed.
//! Metrics are the JSON maps of a run's `metrics.json`; numbers and booleans (as 1/0) count as
//! numeric, anything else is "not a number".

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde_json::{Map, Value};

/// Differences smaller than this are float rounding, not a change (`0.8 - 0.78` is not `0.02`).
const EPSILON: f64 = 1e-9;

/// A comparison operator of a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Op {
    /// `>=`
    Ge,
    /// `>`
    Gt,
    /// `<=`
    Le,
    /// `<`
    Lt,
    /// `==` (equal within 1e-9, so float rounding does not fail it)
    Eq,
}

impl Op {
    /// The operator as written: `>=`, `>`, `<=`, `<`, `==`.
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Ge => ">=",
            Op::Gt => ">",
            Op::Le => "<=",
            Op::Lt => "<",
            Op::Eq => "==",
        }
    }

    /// The relation that holds when this one does not (`>=` fails as `<`), for verdicts.
    pub fn negated_symbol(self) -> &'static str {
        match self {
            Op::Ge => "<",
            Op::Gt => "<=",
            Op::Le => ">",
            Op::Lt => ">=",
            Op::Eq => "!=",
        }
    }

    /// Whether `actual <op> expected` holds, treating values within 1e-9 as equal (so a mean
    /// of 0.7999999999999999 meets `>=0.8`). NaN never passes.
    pub fn holds(self, actual: f64, expected: f64) -> bool {
        if actual.is_nan() || expected.is_nan() {
            return false;
        }
        match self {
            Op::Ge => actual >= expected - EPSILON,
            Op::Gt => actual > expected + EPSILON,
            Op::Le => actual <= expected + EPSILON,
            Op::Lt => actual < expected - EPSILON,
            Op::Eq => (actual - expected).abs() <= EPSILON,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

/// A `--threshold`: a metric, an operator and a value, e.g. `accuracy>=0.8`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Threshold {
    pub metric: String,
    pub op: Op,
    pub value: f64,
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.metric, self.op, fmt_num(self.value))
    }
}

/// A gate given on the command line that cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    #[error(
        "threshold `{input}` has no comparison: write METRIC OP VALUE with OP one of >=, >, <=, <, ==, e.g. `accuracy>=0.8`"
    )]
    MissingOperator { input: String },
    #[error(
        "threshold `{input}` uses `{found}`, which is not an operator: use one of >=, >, <=, <, == (e.g. `accuracy>=0.8`)"
    )]
    UnknownOperator { input: String, found: String },
    #[error(
        "threshold `{input}` names no metric before `{op}`: write the metric name first, e.g. `accuracy{op}0.8`"
    )]
    MissingMetric { input: String, op: String },
    #[error(
        "threshold `{input}`: `{value}` is not a number; write a finite number after the operator, e.g. `{metric}>=0.8`"
    )]
    BadValue {
        input: String,
        metric: String,
        value: String,
    },
    #[error(
        "tolerance `{input}` is not a non-negative number: give the largest allowed drop, e.g. `--tolerance 0.02`"
    )]
    BadTolerance { input: String },
    #[error(
        "--repeat gate needs {k} passes of {n} samples, which cannot happen: use k between 1 and {n}"
    )]
    BadKOfN { k: usize, n: usize },
}

impl crate::error::Classify for GateError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Config
    }
}

impl FromStr for Threshold {
    type Err = GateError;

    /// Parses `metric OP value`; spaces around the parts are fine (`accuracy >= 0.8`).
    fn from_str(input: &str) -> Result<Self, GateError> {
        let trimmed = input.trim();
        let Some(start) = trimmed.find(['<', '>', '=', '!']) else {
            return Err(GateError::MissingOperator {
                input: input.to_string(),
            });
        };
        let metric = trimmed[..start].trim();
        let rest = &trimmed[start..];
        let op_len = rest
            .char_indices()
            .find(|(_, c)| !matches!(c, '<' | '>' | '=' | '!'))
            .map_or(rest.len(), |(i, _)| i);
        let op_text = &rest[..op_len];
        let op = match op_text {
            ">=" | "=>" => Op::Ge,
            ">" => Op::Gt,
            "<=" | "=<" => Op::Le,
            "<" => Op::Lt,
            "==" => Op::Eq,
            _ => {
                return Err(GateError::UnknownOperator {
                    input: input.to_string(),
                    found: op_text.to_string(),
                });
            }
        };
        if metric.is_empty() {
            return Err(GateError::MissingMetric {
                input: input.to_string(),
                op: op.symbol().to_string(),
            });
        }
        let value_text = rest[op_len..].trim();
        let value = value_text
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| GateError::BadValue {
                input: input.to_string(),
                metric: metric.to_string(),
                value: value_text.to_string(),
            })?;
        Ok(Threshold {
            metric: metric.to_string(),
            op,
            value,
        })
    }
}

/// Parses a `--tolerance`: a finite number >= 0 (an absolute drop in the metric's units).
pub fn parse_tolerance(input: &str) -> Result<f64, GateError> {
    input
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|t| t.is_finite() && *t >= 0.0)
        .ok_or_else(|| GateError::BadTolerance {
            input: input.to_string(),
        })
}

/// Which way a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Direction {
    HigherIsBetter,
    LowerIsBetter,
}

/// Words that mark a metric as lower-is-better when they appear as a whole word of its name
/// (words are split at anything that is not a letter or digit, case-insensitively).
const LOWER_IS_BETTER_WORDS: &[&str] = &[
    "latency",
    "duration",
    "time",
    "seconds",
    "secs",
    "ms",
    "cost",
    "costs",
    "usd",
    "price",
    "token",
    "tokens",
    "error",
    "errors",
    "err",
    "fail",
    "failed",
    "failure",
    "failures",
    "loss",
    "perplexity",
    "distance",
    "mse",
    "rmse",
    "mae",
    "wer",
    "cer",
    "violation",
    "violations",
    "toxicity",
    "harm",
    "violence",
    "hate",
    "sexual",
];

/// Which way `metric` improves, guessed from its name: latency, time, cost, tokens, errors,
/// failures, loss, perplexity, distance, error rates (mse, wer, ...) and harm scores are
/// lower-is-better; everything else (accuracy, scores, pass and success rates) is
/// higher-is-better. Whole words only: `sentiment` is not about time.
pub fn direction_of(metric: &str) -> Direction {
    let lower = metric.to_lowercase();
    let is_lower = lower
        .split(|c: char| !c.is_alphanumeric())
        .any(|word| LOWER_IS_BETTER_WORDS.contains(&word));
    if is_lower {
        Direction::LowerIsBetter
    } else {
        Direction::HigherIsBetter
    }
}

/// The outcome of one gate.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct GateResult {
    /// What was checked: `accuracy>=0.8` or `accuracy vs baseline`.
    pub name: String,
    pub passed: bool,
    /// The run's value, when it had a numeric one.
    pub actual: Option<f64>,
    /// What the gate wanted, e.g. `>= 0.80` or `>= 0.78 (baseline 0.80 - tolerance 0.02)`.
    pub expected: String,
    /// One line starting with PASS or FAIL that says why.
    pub verdict: String,
}

/// True when every gate passed (also when there are none).
pub fn all_passed(gates: &[GateResult]) -> bool {
    gates.iter().all(|g| g.passed)
}

/// A metric's value as a number: JSON numbers, and booleans as 1/0. NaN and the infinities
/// ([`crate::non_finite`]) are not: a gate on them fails as "not a number".
pub fn metric_value(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

/// Checks each threshold against the run's metrics, in order.
pub fn check_thresholds(thresholds: &[Threshold], metrics: &Map<String, Value>) -> Vec<GateResult> {
    thresholds
        .iter()
        .map(|t| check_threshold(t, metrics))
        .collect()
}

fn check_threshold(t: &Threshold, metrics: &Map<String, Value>) -> GateResult {
    let name = t.to_string();
    let expected = format!("{} {}", t.op, fmt_num(t.value));
    let Some(raw) = metrics.get(&t.metric) else {
        return GateResult {
            verdict: format!(
                "FAIL {} missing: {}",
                t.metric,
                missing_metric_help(&t.metric, metrics, "the run")
            ),
            name,
            passed: false,
            actual: None,
            expected,
        };
    };
    let Some(actual) = metric_value(raw) else {
        return GateResult {
            verdict: format!("FAIL {} is not a number: {}", t.metric, short_json(raw)),
            name,
            passed: false,
            actual: None,
            expected,
        };
    };
    let passed = t.op.holds(actual, t.value);
    let verdict = if passed {
        format!(
            "PASS {} {} {} {}",
            t.metric,
            fmt_num(actual),
            t.op,
            fmt_num(t.value)
        )
    } else {
        format!(
            "FAIL {} {} {} {} (threshold {})",
            t.metric,
            fmt_num(actual),
            t.op.negated_symbol(),
            fmt_num(t.value),
            name
        )
    };
    GateResult {
        name,
        passed,
        actual: Some(actual),
        expected,
        verdict,
    }
}

/// Compares the run's metrics with a baseline run's.
///
/// Which metrics: with `only`, exactly those names (missing or non-numeric ones fail). Without
/// it, every metric the baseline has a number for, except the `flow.*` run metrics (timing,
/// tokens, cost, success rate), which are noisy or gated separately; name them in `only` to gate
/// them. A metric the baseline had but this run lacks fails (an evaluator stopped reporting it);
/// metrics new in this run have nothing to compare with and are skipped.
///
/// A metric fails when it got worse (see [`direction_of`]) by more than `tolerance`, an absolute
/// amount in the metric's units; exactly `tolerance` worse passes. A negative or NaN tolerance
/// counts as 0 (validate user input with [`parse_tolerance`]).
pub fn check_baseline(
    current: &Map<String, Value>,
    baseline: &Map<String, Value>,
    tolerance: f64,
    only: Option<&[String]>,
) -> Vec<GateResult> {
    let tolerance = if tolerance.is_nan() || tolerance < 0.0 {
        0.0
    } else {
        tolerance
    };
    match only {
        Some(names) => names
            .iter()
            .map(|name| compare_one(name, current, baseline, tolerance))
            .collect(),
        None => baseline
            .iter()
            .filter(|(name, value)| !name.starts_with("flow.") && metric_value(value).is_some())
            .map(|(name, _)| compare_one(name, current, baseline, tolerance))
            .collect(),
    }
}

fn compare_one(
    metric: &str,
    current: &Map<String, Value>,
    baseline: &Map<String, Value>,
    tolerance: f64,
) -> GateResult {
    let name = format!("{metric} vs baseline");
    let fail = |actual: Option<f64>, expected: String, verdict: String| GateResult {
        name: name.clone(),
        passed: false,
        actual,
        expected,
        verdict,
    };
    let base = match baseline.get(metric) {
        None => {
            return fail(
                None,
                "a baseline value".into(),
                format!(
                    "FAIL {metric} missing: {}",
                    missing_metric_help(metric, baseline, "the baseline run")
                ),
            );
        }
        Some(v) => match metric_value(v) {
            Some(b) => b,
            None => {
                return fail(
                    None,
                    "a numeric baseline value".into(),
                    format!(
                        "FAIL {metric} cannot be compared: the baseline's value is not a number: {}",
                        short_json(v)
                    ),
                );
            }
        },
    };
    let direction = direction_of(metric);
    let (bound, bound_op) = match direction {
        Direction::HigherIsBetter => (base - tolerance, ">="),
        Direction::LowerIsBetter => (base + tolerance, "<="),
    };
    let sign = match direction {
        Direction::HigherIsBetter => "-",
        Direction::LowerIsBetter => "+",
    };
    let expected = format!(
        "{bound_op} {} (baseline {} {sign} tolerance {})",
        fmt_num(bound),
        fmt_num(base),
        fmt_num(tolerance)
    );
    let actual = match current.get(metric) {
        None => {
            return fail(
                None,
                expected,
                format!(
                    "FAIL {metric} missing: the baseline has {metric} = {} but {}",
                    fmt_num(base),
                    missing_metric_help(metric, current, "this run")
                ),
            );
        }
        Some(v) => match metric_value(v) {
            Some(a) => a,
            None => {
                return fail(
                    None,
                    expected,
                    format!("FAIL {metric} is not a number: {}", short_json(v)),
                );
            }
        },
    };
    let worse_by = match direction {
        Direction::HigherIsBetter => base - actual,
        Direction::LowerIsBetter => actual - base,
    };
    let lower_note = match direction {
        Direction::HigherIsBetter => "",
        Direction::LowerIsBetter => "; lower is better",
    };
    let passed = worse_by <= tolerance + EPSILON;
    let verdict = if passed {
        let delta = actual - base;
        let change = if delta.abs() <= EPSILON {
            "unchanged".to_string()
        } else if worse_by < 0.0 {
            format!("improved by {}", fmt_num(delta.abs()))
        } else {
            format!(
                "down by {} within tolerance {}",
                fmt_num(delta.abs()),
                fmt_num(tolerance)
            )
        };
        format!(
            "PASS {metric} {} vs baseline {} ({change}{lower_note})",
            fmt_num(actual),
            fmt_num(base)
        )
    } else {
        format!(
            "FAIL {metric} {} regressed from {} by {} (tolerance {}{lower_note})",
            fmt_num(actual),
            fmt_num(base),
            fmt_num(worse_by),
            fmt_num(tolerance)
        )
    };
    GateResult {
        name,
        passed,
        actual: Some(actual),
        expected,
        verdict,
    }
}

/// The per-line repeat gate: a line sampled `samples` times passes when at least `k` samples
/// passed. `k == 0` always passes; `k > samples` never does (reject it with [`check_k`]).
pub fn k_of_n(passes: usize, samples: usize, k: usize) -> bool {
    k <= samples && passes.min(samples) >= k
}

/// Validates a k-of-n requirement before running: `1 <= k <= n`.
pub fn check_k(k: usize, n: usize) -> Result<(), GateError> {
    if k == 0 || k > n {
        Err(GateError::BadKOfN { k, n })
    } else {
        Ok(())
    }
}

/// One line's repeat tally for [`check_repeats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTally {
    pub line_number: usize,
    pub passes: usize,
    pub samples: usize,
}

/// The repeat gate over a whole run for one evaluator: passes when every line passed at least
/// `k` of its samples; the verdict names the lines that did not (the first ten).
pub fn check_repeats(evaluator: &str, lines: &[LineTally], k: usize) -> GateResult {
    let n = lines.iter().map(|l| l.samples).max().unwrap_or(0);
    let failing: Vec<&LineTally> = lines
        .iter()
        .filter(|l| !k_of_n(l.passes, l.samples, k))
        .collect();
    let name = format!("{evaluator} {k} of {n} per line");
    let expected = format!("at least {k} passing samples on every line");
    if failing.is_empty() {
        return GateResult {
            verdict: format!(
                "PASS {evaluator}: all {} lines passed at least {k} of {n} samples",
                lines.len()
            ),
            name,
            passed: true,
            actual: Some(lines.len() as f64),
            expected,
        };
    }
    let shown: Vec<String> = failing
        .iter()
        .take(10)
        .map(|l| format!("line {} ({}/{})", l.line_number, l.passes, l.samples))
        .collect();
    let more = failing.len().saturating_sub(shown.len());
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    GateResult {
        verdict: format!(
            "FAIL {evaluator}: {} of {} lines passed fewer than {k} of {n} samples: {}{more}",
            failing.len(),
            lines.len(),
            shown.join(", ")
        ),
        name,
        passed: false,
        actual: Some((lines.len() - failing.len()) as f64),
        expected,
    }
}

/// Formats a metric value for people: integers without decimals, otherwise at least two and at
/// most six decimals (`0.80`, `0.913`, `1500`).
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        // as promptflow writes them: NaN, Infinity, -Infinity
        return crate::non_finite::name(&crate::non_finite::number(x))
            .unwrap_or("NaN")
            .to_string();
    }
    if x.fract() == 0.0 && x.abs() >= 1.0 {
        return format!("{x:.0}");
    }
    let mut s = format!("{x:.6}");
    if let Some(dot) = s.find('.') {
        while s.ends_with('0') && s.len() - dot - 1 > 2 {
            s.pop();
        }
    }
    if s == "-0.00" { "0.00".into() } else { s }
}

fn missing_metric_help(metric: &str, metrics: &Map<String, Value>, whose: &str) -> String {
    if metrics.is_empty() {
        return format!("{whose} has no metrics at all (did its evaluators run?)");
    }
    let names: Vec<&str> = metrics.keys().map(String::as_str).collect();
    let closest = names
        .iter()
        .map(|n| (strsim::jaro_winkler(metric, n), *n))
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| format!("; did you mean `{n}`?"))
        .unwrap_or_default();
    format!(
        "{whose} has no metric {metric}; metrics are: {}{closest}",
        names.join(", ")
    )
}

fn short_json(v: &Value) -> String {
    let s = crate::non_finite::to_string(v).unwrap_or_else(|_| v.to_string());
    if s.chars().count() > 60 {
        let head: String = s.chars().take(57).collect();
        format!("{head}...")
    } else {
        s
    }
}
