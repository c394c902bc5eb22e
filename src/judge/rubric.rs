//! The five 1–5 rubrics, their input fields and their shipped prompts.

use std::fmt;
use std::str::FromStr;

use super::JudgeError;

/// A line field a rubric reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// The question asked (the flow's input).
    Question,
    /// The answer being judged (the flow's output).
    Answer,
    /// Retrieved or given context the answer should rest on.
    Context,
    /// The reference answer.
    GroundTruth,
}

impl Field {
    /// The template variable and column name: `question`, `answer`, `context`, `ground_truth`.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Question => "question",
            Field::Answer => "answer",
            Field::Context => "context",
            Field::GroundTruth => "ground_truth",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An LLM-as-judge rubric scored from 1 (worst) to 5 (best).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rubric {
    /// Does the answer address the question (optionally against the context)?
    Relevance,
    /// Is the answer a well-organised, consistent whole?
    Coherence,
    /// Is the answer well-written language?
    Fluency,
    /// Is every claim of the answer supported by the context?
    Groundedness,
    /// How close in meaning is the answer to the ground truth?
    Similarity,
}

impl Rubric {
    /// Every rubric, in documentation order.
    pub const ALL: [Rubric; 5] = [
        Rubric::Relevance,
        Rubric::Coherence,
        Rubric::Fluency,
        Rubric::Groundedness,
        Rubric::Similarity,
    ];

    /// The evaluator name: `relevance`, `coherence`, `fluency`, `groundedness`, `similarity`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rubric::Relevance => "relevance",
            Rubric::Coherence => "coherence",
            Rubric::Fluency => "fluency",
            Rubric::Groundedness => "groundedness",
            Rubric::Similarity => "similarity",
        }
    }

    /// The fields a line must have for this rubric.
    pub fn needs(self) -> &'static [Field] {
        match self {
            Rubric::Relevance | Rubric::Coherence => &[Field::Question, Field::Answer],
            Rubric::Fluency => &[Field::Answer],
            Rubric::Groundedness => &[Field::Answer, Field::Context],
            Rubric::Similarity => &[Field::Answer, Field::GroundTruth],
        }
    }

    /// Fields the prompt uses when present but does not require.
    pub fn optional(self) -> &'static [Field] {
        match self {
            Rubric::Relevance => &[Field::Context],
            Rubric::Coherence => &[],
            Rubric::Fluency | Rubric::Groundedness | Rubric::Similarity => &[Field::Question],
        }
    }

    /// The shipped prompt (`templates/judges/<name>.jinja2`): chat role lines, Jinja2.
    pub fn template(self) -> &'static str {
        match self {
            Rubric::Relevance => include_str!("../../templates/judges/relevance.jinja2"),
            Rubric::Coherence => include_str!("../../templates/judges/coherence.jinja2"),
            Rubric::Fluency => include_str!("../../templates/judges/fluency.jinja2"),
            Rubric::Groundedness => include_str!("../../templates/judges/groundedness.jinja2"),
            Rubric::Similarity => include_str!("../../templates/judges/similarity.jinja2"),
        }
    }
}

impl fmt::Display for Rubric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Rubric {
    type Err = JudgeError;

    /// Parses a rubric name (any case; a `gpt_` prefix as in promptflow's metric names is allowed).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim().to_ascii_lowercase();
        let name = name.strip_prefix("gpt_").unwrap_or(&name);
        Rubric::ALL
            .into_iter()
            .find(|r| r.as_str() == name)
            .ok_or_else(|| JudgeError::UnknownRubric {
                name: s.trim().to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_is_an_error() {
        for r in Rubric::ALL {
            assert_eq!(r.as_str().parse::<Rubric>().unwrap(), r);
        }
        assert_eq!(
            "GPT_Relevance".parse::<Rubric>().unwrap(),
            Rubric::Relevance
        );
        let e = "helpfulness".parse::<Rubric>().unwrap_err().to_string();
        assert!(
            e.contains("helpfulness") && e.contains("groundedness"),
            "{e}"
        );
    }

    #[test]
    fn every_template_reads_exactly_the_fields_it_declares() {
        for r in Rubric::ALL {
            let t = crate::template::PromptTemplate::new(r.as_str(), r.template()).unwrap();
            let mut declared: Vec<&str> = r
                .needs()
                .iter()
                .chain(r.optional())
                .map(|f| f.as_str())
                .collect();
            declared.sort_unstable();
            let used: Vec<&str> = t.variables().iter().map(String::as_str).collect();
            assert_eq!(used, declared, "{r}");
        }
    }
}
