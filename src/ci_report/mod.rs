//! Reports for CI systems from an evaluation: JUnit XML (`--junit`), a Markdown summary for a
//! pull-request comment or `$GITHUB_STEP_SUMMARY` (`--summary`), and GitHub Actions annotations.
//!
//! Everything here is a pure function from results to text; the `flow eval` command decides where
//! the text goes. All model and dataset text is escaped for its destination.

mod annotations;
mod junit;
mod markdown;
mod xml;

pub use annotations::{
    MAX_CASE_ANNOTATIONS, escape_data, escape_property, github_annotations,
    running_in_github_actions,
};
pub use junit::junit_xml;
pub use markdown::{SummaryInput, markdown_summary};
pub use xml::{xml_attr, xml_text};

/// One evaluator's result on one line: a JUnit test case.
///
/// A line the base run failed on is a failing case too (evaluator e.g. `run`), never dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    /// The dataset line (0-based, as in promptflow's `line_number`).
    pub line_number: usize,
    pub evaluator: String,
    pub passed: bool,
    pub score: Option<f64>,
    /// Why it failed (or a note when it passed); may be multi-line model text.
    pub message: String,
    pub duration_s: f64,
}
