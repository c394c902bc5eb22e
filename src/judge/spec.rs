//! Evaluator specs as written on the command line: `NAME:key=value,key=value`.

use std::fmt;
use std::str::FromStr;

use super::{JudgeError, Rubric};

/// Default pass mark of a 1–5 judge: a line passes with a score of 4 or more.
pub const DEFAULT_JUDGE_THRESHOLD: f64 = 4.0;

/// A configured LLM judge: `relevance:connection=open_ai_connection,model=gpt-4o-mini,threshold=3`.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeSpec {
    /// The rubric.
    pub rubric: Rubric,
    /// The connection the judge calls (required: there is no implicit default).
    pub connection: String,
    /// The model (Azure: deployment); `None` uses the connection's `X_MODEL`/`X_DEPLOYMENT`.
    pub model: Option<String>,
    /// Pass mark: a line passes when its score is at least this (1–5, default 4).
    pub threshold: f64,
}

impl fmt::Display for JudgeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:connection={}", self.rubric, self.connection)?;
        if let Some(m) = &self.model {
            write!(f, ",model={m}")?;
        }
        write!(f, ",threshold={}", self.threshold)
    }
}

/// The options of a spec, after the name.
#[derive(Debug, Default)]
pub(crate) struct Options {
    pub connection: Option<String>,
    pub model: Option<String>,
    pub threshold: Option<f64>,
}

/// Splits `NAME[:k=v,...]` into the name and its options (`connection`, `model`, `threshold`).
pub(crate) fn parse_options(spec: &str) -> Result<(String, Options), JudgeError> {
    let spec = spec.trim();
    let bad = |message: String| JudgeError::BadSpec {
        spec: spec.to_string(),
        message,
    };
    let (name, rest) = spec.split_once(':').unwrap_or((spec, ""));
    let mut opts = Options::default();
    for part in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').ok_or_else(|| {
            bad(format!(
                "'{part}' is not key=value; write options as NAME:connection=CONN,model=MODEL,threshold=N"
            ))
        })?;
        let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
        if value.is_empty() {
            return Err(bad(format!("'{key}' has an empty value")));
        }
        let duplicate = || bad(format!("'{key}' is given twice"));
        match key.as_str() {
            "connection" => {
                if opts.connection.replace(value.to_string()).is_some() {
                    return Err(duplicate());
                }
            }
            "model" | "deployment" | "deployment_name" => {
                if opts.model.replace(value.to_string()).is_some() {
                    return Err(duplicate());
                }
            }
            "threshold" => {
                let t: f64 = value
                    .parse()
                    .ok()
                    .filter(|t: &f64| t.is_finite())
                    .ok_or_else(|| bad(format!("threshold '{value}' is not a number")))?;
                if opts.threshold.replace(t).is_some() {
                    return Err(duplicate());
                }
            }
            other => {
                return Err(bad(format!(
                    "unknown option '{other}'; valid options: connection, model, threshold"
                )));
            }
        }
    }
    Ok((name.trim().to_string(), opts))
}

impl FromStr for JudgeSpec {
    type Err = JudgeError;

    /// Parses `RUBRIC:connection=CONN[,model=M][,threshold=N]`; the connection is required.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, opts) = parse_options(s)?;
        let rubric: Rubric = name.parse()?;
        let connection = opts.connection.ok_or_else(|| JudgeError::NoConnection {
            spec: rubric.as_str().to_string(),
        })?;
        let threshold = opts.threshold.unwrap_or(DEFAULT_JUDGE_THRESHOLD);
        if !(1.0..=5.0).contains(&threshold) {
            return Err(JudgeError::BadSpec {
                spec: s.trim().to_string(),
                message: format!(
                    "threshold {threshold} is outside the 1-5 scale; a judge scores 1 (worst) to 5 (best)"
                ),
            });
        }
        Ok(JudgeSpec {
            rubric,
            connection,
            model: opts.model,
            threshold,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_spec_parses_and_displays_back() {
        let s: JudgeSpec = "relevance:connection=open_ai_connection,model=gpt-4o-mini,threshold=3"
            .parse()
            .unwrap();
        assert_eq!(s.rubric, Rubric::Relevance);
        assert_eq!(s.connection, "open_ai_connection");
        assert_eq!(s.model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(s.threshold, 3.0);
        assert_eq!(s.to_string().parse::<JudgeSpec>().unwrap(), s);
    }

    #[test]
    fn defaults_and_spacing() {
        let s: JudgeSpec = " Fluency : connection = c ".parse().unwrap();
        assert_eq!(s.rubric, Rubric::Fluency);
        assert_eq!(s.connection, "c");
        assert_eq!(s.model, None);
        assert_eq!(s.threshold, DEFAULT_JUDGE_THRESHOLD);
    }

    #[test]
    fn errors_say_what_to_write() {
        let no_conn = "coherence".parse::<JudgeSpec>().unwrap_err();
        assert!(matches!(no_conn, JudgeError::NoConnection { .. }));
        assert!(no_conn.to_string().contains("coherence:connection="));
        let no_conn = "coherence:model=gpt-4o".parse::<JudgeSpec>().unwrap_err();
        assert!(matches!(no_conn, JudgeError::NoConnection { .. }));
        for (spec, needle) in [
            ("relevance:connection=c,threshold=6", "outside the 1-5"),
            ("relevance:connection=c,threshold=high", "not a number"),
            (
                "relevance:connection=c,temperature=0",
                "unknown option 'temperature'",
            ),
            ("relevance:connection=c,connection=d", "given twice"),
            ("relevance:connection", "not key=value"),
            ("relevance:connection=", "empty value"),
            ("politeness:connection=c", "unknown judge 'politeness'"),
        ] {
            let e = spec.parse::<JudgeSpec>().unwrap_err().to_string();
            assert!(e.contains(needle), "{spec}: {e}");
        }
    }
}
