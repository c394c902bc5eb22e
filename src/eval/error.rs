//! Why an evaluation could not run or could not be recorded.

use std::io;
use std::path::PathBuf;

use super::models::ModelScoreError;
use super::verdict::BatchStop;
use crate::batch::DirBatchError;
use crate::data::DataError;
use crate::diagnostic::Diagnostic;

/// Why evaluators could not read what they score (the run, its lines, the dataset) or write
/// their scores.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error("cannot read the run {}: {source}", .path.display())]
    ReadRun {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read line {line} of the run: {source}")]
    ReadLine {
        line: usize,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("cannot write the scores {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Which batch of an evaluation an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalBatch {
    /// The evaluation flow, run over the evaluated run.
    Flow,
    /// Repeated sample `index` (1-based after the run itself, which is sample 0) of `of`.
    Sample { index: u32, of: u32 },
}

impl std::fmt::Display for EvalBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EvalBatch::Flow => f.write_str("the evaluation flow"),
            EvalBatch::Sample { index, .. } => write!(f, "sample {index}"),
        }
    }
}

/// Why an evaluation could not run or could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Neither an evaluation flow nor an evaluator was given.
    #[error(
        "nothing to evaluate with\n  help: give an evaluation flow (flow eval --run RUN flows/eval-accuracy) or --evaluator NAME"
    )]
    NothingToEvaluate,
    /// `--repeat` without a built-in evaluator to score the samples.
    #[error("--repeat samples lines for built-in evaluators: add --evaluator NAME")]
    RepeatWithoutEvaluators,
    /// `--require K` outside 1..=N.
    #[error("--require must be between 1 and --repeat ({repeat})")]
    BadRequire { require: u32, repeat: u32 },
    /// `--repeat` over a run that recorded no dataset.
    #[error("--repeat needs the run's dataset, and the run has none recorded")]
    RepeatNeedsData,
    /// `--repeat` over a run that is not a run of a flow (an evaluation of built-ins only).
    #[error("--repeat needs a run of a flow to sample again")]
    RepeatNeedsFlow,
    /// The tolerance is negative or not a number.
    #[error("--tolerance must be a number >= 0")]
    BadTolerance,
    /// The evaluated run's column mapping (recorded in its meta.json) does not parse.
    #[error("the run's column mapping: {0}")]
    Mapping(String),
    /// The flow of a repeated sample cannot be prepared.
    #[error("{}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    Prepare(Vec<Diagnostic>),
    /// A batch could not be run or recorded.
    #[error("{batch}: {source}")]
    Batch {
        batch: EvalBatch,
        #[source]
        source: DirBatchError,
    },
    /// Reading the dataset of a batch stopped before its end.
    #[error("reading the data stopped early: {message}")]
    DataStopped { batch: EvalBatch, message: String },
    /// A batch stopped before every line ran (unusable endpoint, Ctrl-C).
    #[error("{batch} stopped: {}", stop_text(.stop))]
    Stopped {
        batch: EvalBatch,
        stop: Box<BatchStop>,
    },
    /// Built-in evaluators could not score the run (it or the dataset cannot be read).
    #[error("{}{source}", .sample.map(|s| format!("sample {s}: ")).unwrap_or_default())]
    Scoring {
        /// The repeated sample scored, if not the run itself.
        sample: Option<u32>,
        #[source]
        source: ScoreError,
    },
    /// Model evaluators were given without a client to call them through (a bug in the caller).
    #[error("model evaluators need a model client, and the evaluation was given none")]
    NoModelClient,
    /// Model-based evaluators could not score the run (an unusable endpoint, a configuration
    /// problem, or the run cannot be read).
    #[error(transparent)]
    Models(ModelScoreError),
    /// The evaluation's own files could not be read or written.
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The baseline's metrics could not be read.
    #[error("cannot read the baseline's metrics {}: {message}", .path.display())]
    Baseline { path: PathBuf, message: String },
}

fn stop_text(stop: &BatchStop) -> String {
    match stop {
        BatchStop::EndpointUnusable { failed, error } => format!(
            "stopped after {failed} lines: the endpoint could not be used: {}",
            error.message
        ),
        BatchStop::Canceled { kept, resume } => {
            format!("stopped: {kept} lines are kept (finish with: {resume})")
        }
        BatchStop::EveryLineEndpoint { failed, total, .. } => {
            format!("{failed} of {total} lines failed, each on the endpoint")
        }
        BatchStop::Misconfigured { failed, error, .. } => format!(
            "stopped after {failed} lines: every line failed the same way, so the flow or its settings are wrong: {}",
            error.message
        ),
    }
}

impl EvalError {
    /// The model endpoint cannot be used at all (a judge's or a batch's).
    pub fn endpoint_unusable(&self) -> bool {
        match self {
            EvalError::Models(ModelScoreError::Judge(j)) => j.endpoint_unusable(),
            EvalError::Stopped { stop, .. } => !matches!(
                **stop,
                BatchStop::Canceled { .. } | BatchStop::Misconfigured { .. }
            ),
            _ => false,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| EvalError::Io {
            action,
            path,
            source,
        }
    }
}

impl crate::error::Classify for ScoreError {
    /// The run and its lines are flow's own files; the dataset is the user's.
    fn class(&self) -> crate::error::ErrorClass {
        use crate::error::ErrorClass;
        match self {
            ScoreError::ReadRun { .. } | ScoreError::ReadLine { .. } | ScoreError::Write { .. } => {
                ErrorClass::Io
            }
            ScoreError::Data(_) => ErrorClass::Config,
        }
    }
}

impl crate::error::Classify for EvalError {
    fn class(&self) -> crate::error::ErrorClass {
        use crate::error::ErrorClass;
        match self {
            EvalError::Stopped { stop, .. } => match **stop {
                BatchStop::Canceled { .. } => ErrorClass::Interrupted,
                BatchStop::Misconfigured { .. } => ErrorClass::Config,
                BatchStop::EndpointUnusable { .. } | BatchStop::EveryLineEndpoint { .. } => {
                    ErrorClass::Endpoint
                }
            },
            EvalError::Models(ModelScoreError::Judge(j)) => j.class(),
            EvalError::Models(ModelScoreError::Read(e)) | EvalError::Scoring { source: e, .. } => {
                e.class()
            }
            EvalError::Batch { source, .. } => source.class(),
            EvalError::Io { .. } => ErrorClass::Io,
            EvalError::NothingToEvaluate
            | EvalError::RepeatWithoutEvaluators
            | EvalError::BadRequire { .. }
            | EvalError::RepeatNeedsData
            | EvalError::RepeatNeedsFlow
            | EvalError::BadTolerance
            | EvalError::Mapping(_)
            | EvalError::Prepare(_)
            | EvalError::DataStopped { .. }
            | EvalError::Baseline { .. }
            | EvalError::NoModelClient => ErrorClass::Config,
        }
    }
}
