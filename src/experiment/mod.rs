//! Experiments: `experiment.yaml` (the GenAIOps template's shape) names a flow, its
//! connections, datasets and evaluators; `flow experiment` runs the flow for each selected
//! variant plan (variants, combinations, parameter sweeps) over each dataset, runs every
//! evaluator on every run, and writes one comparison directory with `summary.json`.
//!
//! - [`file`]: the file model and loader (located errors); [`overlay`]: `experiment.<env>.yaml`;
//!   [`placeholder`]: `${api_key}` connection values from the environment;
//! - [`variants`] and [`sweep`]: choices per node → variant plans with readable ids;
//! - [`runner`]: all runs of one experiment through one model client (one adaptive limiter per
//!   endpoint), one line budget and one response cache;
//! - [`summary`]: metrics per variant and dataset, best per metric, the winner, the table;
//! - content hashes of flows, datasets and experiment files are in [`crate::hash`].

mod doc;
pub mod file;
pub mod init_json;
mod overlay;
pub mod placeholder;
pub mod runner;
pub mod summary;
pub mod sweep;
pub mod variants;

use std::path::PathBuf;

use indexmap::IndexMap;

pub use doc::Origin;
pub use file::{
    ConnectionDef, Dataset, EvalDataset, Evaluator, EvaluatorKind, Experiment, ExperimentFileError,
    load, overlay_path,
};
pub use runner::{
    Earlier, EvalResult, FanOut, RunResult, RunnerConfig, ShardUpload, run_experiment,
};
pub use summary::{Hashes, Summary, SummaryRun};
pub use variants::{Catalog, NodeChoice, PlanError, Selection, VariantPlan};

use crate::diagnostic::Diagnostic;
use crate::hash;
use crate::model::Flow;

/// Why an experiment cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The experiment file (or its overlay) is wrong.
    #[error(transparent)]
    File(#[from] ExperimentFileError),
    /// A flow (the experiment's or an evaluator's) cannot load or be prepared.
    #[error("{}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    Flow(Vec<Diagnostic>),
    /// The variant selection names something that does not exist.
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{0}")]
    Run(String),
    /// A run's batch could not be run or recorded.
    #[error(transparent)]
    Batch(#[from] crate::batch::DirBatchError),
    /// An evaluator could not run over a run or could not be recorded.
    #[error(transparent)]
    Eval(#[from] Box<crate::eval::EvalError>),
    /// Object storage (`--upload`) could not be read or written.
    #[error(transparent)]
    Storage(#[from] crate::run_store::remote::RemoteError),
}

impl crate::error::Classify for ExperimentError {
    fn class(&self) -> crate::error::ErrorClass {
        use crate::error::ErrorClass;
        match self {
            ExperimentError::File(_)
            | ExperimentError::Flow(_)
            | ExperimentError::Plan(_)
            | ExperimentError::Run(_) => ErrorClass::Config,
            ExperimentError::Io { .. } => ErrorClass::Io,
            ExperimentError::Batch(e) => e.class(),
            ExperimentError::Eval(e) => e.class(),
            ExperimentError::Storage(e) => e.class(),
        }
    }
}

/// A variant plan made concrete: the flow as it runs and its hash.
#[derive(Debug, Clone)]
pub struct PlannedVariant {
    pub plan: VariantPlan,
    /// The flow with the plan's variants and parameters applied.
    pub flow: Flow,
    /// The applied YAML (what the run's snapshot holds).
    pub applied_yaml: String,
    pub flow_hash: String,
}

/// The flow of `experiment` without variants applied (to list its choices).
pub fn load_base_flow(experiment: &Experiment) -> Result<Flow, ExperimentError> {
    let flow = crate::model::load(&experiment.flow, &[])
        .map_err(|e| ExperimentError::Flow(e.diagnostics))?;
    Ok(flow)
}

/// Every connection an experiment uses, in first-use order: its flow's (all variants), its
/// evaluation flows', its model evaluators' (`relevance:connection=judge`) and the connections
/// its file defines.
pub fn connections_used(experiment: &Experiment) -> Result<Vec<String>, ExperimentError> {
    let mut names = load_base_flow(experiment)?.connection_names();
    let mut add = |name: String| {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
            names.push(name);
        }
    };
    for e in &experiment.evaluators {
        match &e.kind {
            EvaluatorKind::Flow(dir) => {
                let flow = crate::model::load(dir, &[])
                    .map_err(|err| ExperimentError::Flow(err.diagnostics))?;
                flow.connection_names().into_iter().for_each(&mut add);
            }
            EvaluatorKind::Model { spec, .. } => add(spec.connection().to_string()),
            EvaluatorKind::Builtin(_) => {}
        }
    }
    for c in &experiment.connections {
        add(c.name.clone());
    }
    Ok(names)
}

/// The selection in effect: the command line's, else the file's `combinations` / `variants`
/// block, else `all` (what the GenAIOps template runs).
pub fn effective_selection(experiment: &Experiment, cli: Option<Selection>) -> Selection {
    if let Some(s) = cli {
        return s;
    }
    if let Some((nodes, _)) = &experiment.extras.combinations {
        return Selection::Combinations(nodes.clone());
    }
    if let Some((specs, _)) = &experiment.extras.variants {
        return Selection::parse(specs);
    }
    Selection::All
}

/// Plan the variants to run: catalog the flow's choices (variants and sweeps), select, and
/// load each plan's flow with its variants and parameters applied.
pub fn plan_variants(
    experiment: &Experiment,
    selection: &Selection,
) -> Result<Vec<PlannedVariant>, ExperimentError> {
    let base = load_base_flow(experiment)?;
    let catalog = Catalog::new(&base, &experiment.extras.sweeps).map_err(ExperimentError::Flow)?;
    let plans = variants::plan(&catalog, selection)?;
    plans
        .into_iter()
        .map(|plan| {
            let mut flow = crate::model::load(&experiment.flow, &plan.selections())
                .map_err(|e| ExperimentError::Flow(e.diagnostics))?;
            plan.apply_parameters(&mut flow);
            apply_experiment_init(&mut flow, experiment.init.as_ref())?;
            let applied_yaml =
                hash::applied_yaml(&flow, &plan.parameters()).map_err(|e| ExperimentError::Io {
                    path: flow.file.clone(),
                    message: e,
                })?;
            let flow_hash =
                hash::flow_hash(&flow, &applied_yaml).map_err(|e| ExperimentError::Io {
                    path: flow.dir.clone(),
                    message: e.to_string(),
                })?;
            let flow_hash = with_init(flow_hash, experiment.init.as_ref());
            Ok(PlannedVariant {
                plan,
                flow,
                applied_yaml,
                flow_hash,
            })
        })
        .collect()
}

/// Make `flow`'s class entry with the experiment's `init:` (for the flow, or an evaluator's),
/// checked as `--init` is, before anything runs: a key that is not an `__init__` parameter, a
/// missing argument, a connection or model configuration of the wrong shape, `init:` for a
/// function entry. Problems the flex check cannot place are located at the argument they name
/// (`\`key\`` in the message), else at the `init:` itself.
pub(crate) fn apply_experiment_init(
    flow: &mut crate::model::Flow,
    init: Option<&file::Init>,
) -> Result<(), ExperimentError> {
    let Some(init) = init else {
        return Ok(());
    };
    crate::model::apply_init(
        flow,
        init.values.clone(),
        Some(crate::model::InitSource::Experiment(&init.origin.file)),
    )
    .map_err(|problems| {
        ExperimentError::Flow(
            problems
                .into_iter()
                .map(|d| {
                    if d.location.is_some() {
                        return d;
                    }
                    let origin = init
                        .keys
                        .iter()
                        .find(|(k, _)| d.message.contains(&format!("`{k}`")))
                        .map_or(&init.origin, |(_, o)| o);
                    let mut located = origin.error(d.message);
                    located.help = d.help;
                    located
                })
                .collect(),
        )
    })
}

/// A flow's hash with the `init:` it runs with folded in (a run made with another init is
/// another run: not kept, not resumed).
fn with_init(flow_hash: String, init: Option<&file::Init>) -> String {
    match init {
        Some(i) if !i.values.is_empty() => {
            let values = serde_json::Value::Object(i.values.clone()).to_string();
            hash::sha256_bytes(format!("{flow_hash}\ninit {values}").as_bytes())
        }
        _ => flow_hash,
    }
}

/// The hashes of everything an experiment reads: its file(s), datasets (flow and evaluator),
/// each variant's flow, each evaluation flow.
pub fn compute_hashes(
    experiment: &Experiment,
    variants: &[PlannedVariant],
) -> Result<Hashes, ExperimentError> {
    let io = |path: &std::path::Path, e: std::io::Error| ExperimentError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut files = IndexMap::new();
    for f in std::iter::once(&experiment.file).chain(experiment.overlay.iter()) {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        files.insert(name, hash::sha256_file(f).map_err(|e| io(f, e))?);
    }
    let mut datasets = IndexMap::new();
    for d in &experiment.datasets {
        datasets.insert(
            d.name.clone(),
            hash::sha256_file(&d.source).map_err(|e| io(&d.source, e))?,
        );
    }
    for e in &experiment.evaluators {
        for d in &e.datasets {
            if !datasets.contains_key(&d.name) {
                datasets.insert(
                    d.name.clone(),
                    hash::sha256_file(&d.source).map_err(|e| io(&d.source, e))?,
                );
            }
        }
    }
    let flows = variants
        .iter()
        .map(|v| (v.plan.id.clone(), v.flow_hash.clone()))
        .collect();
    let mut evaluators = IndexMap::new();
    for e in &experiment.evaluators {
        let h = match &e.kind {
            EvaluatorKind::Flow(dir) => {
                let flow = crate::model::load(dir, &[])
                    .map_err(|err| ExperimentError::Flow(err.diagnostics))?;
                let yaml = hash::applied_yaml(&flow, &IndexMap::new()).map_err(|m| {
                    ExperimentError::Io {
                        path: flow.file.clone(),
                        message: m,
                    }
                })?;
                with_init(
                    hash::flow_hash(&flow, &yaml).map_err(|err| io(dir, err))?,
                    e.init.as_ref(),
                )
            }
            EvaluatorKind::Builtin(spec) => hash::sha256_bytes(spec.source.as_bytes()),
            EvaluatorKind::Model { text, .. } => hash::sha256_bytes(text.as_bytes()),
        };
        evaluators.insert(e.name.clone(), h);
    }
    Ok(Hashes {
        experiment: files,
        datasets,
        flows,
        evaluators,
    })
}
