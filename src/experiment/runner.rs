//! Running an experiment: every variant plan over every dataset, then every evaluator that
//! scores that dataset on the run — all in one process, concurrently, through shared resources:
//!
//! - one model client, so each endpoint (connection, base URL, model) has ONE adaptive limiter
//!   whatever the number of runs: a rate limit is never multiplied by the number of variants;
//! - one pool of line slots (`concurrency`): at most that many lines are in flight across all
//!   runs together;
//! - one response cache, so an unchanged re-run makes no requests.
//!
//! Every flow (each variant's and each evaluation flow) is prepared before the first line: a
//! configuration problem stops the experiment before anything runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value as Json};
use tokio::sync::{Semaphore, watch};

use super::file::{Dataset, EvalDataset, EvaluatorKind, Experiment};
use super::{ExperimentError, PlannedVariant};
use crate::batch::merge::{ShardRun, check_shards, finish_merge, write_merged_lines};
use crate::batch::{BatchConfig, DirBatch, Progress, run_to_dir};
use crate::batch::{BatchOutcome, DirRun};
use crate::data::ColumnMapping;
use crate::eval::verdict::{FailReason, FlowProblem};
use crate::eval::{EvalError, EvalPlan, GatePlan, ModelEvaluator, Verdict, evaluate};
use crate::executor::{Executor, ExecutorOptions};
use crate::provider::LlmClient;
use crate::record::ErrorInfo;
use crate::run_store::remote::RemoteDir;
use crate::run_store::{
    ExperimentHashes, ExperimentRef, RunDir, RunMeta, RunSettings, RunUpload, Shard, ShardInfo,
};

/// How an experiment runs.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Where `.flow/runs` is.
    pub project: PathBuf,
    /// Lines in flight across all runs together.
    pub concurrency: usize,
    pub line_timeout: Option<Duration>,
    /// Connections (with the experiment's laid over), cache, prices, timeouts.
    pub executor: ExecutorOptions,
    /// Recorded in each run's `meta.json`.
    pub settings: RunSettings,
    /// Appended to run names (`<experiment>_<variant>_<dataset>_<stamp>`).
    pub stamp: String,
    /// The comparison directory (recorded in each run's meta).
    pub experiment_dir: PathBuf,
    /// Whole runs, one shard of every run, or runs merged from their shards.
    pub fan_out: FanOut,
    /// Where each shard run is uploaded (to `<upload>/<run name>/`) as soon as it ends, and
    /// where a shard started without its local runs looks for them first.
    pub upload: Option<RemoteDir>,
    /// With `upload`: also send what a running shard run wrote at this interval, so a process
    /// killed outright loses only the lines since (None: only when a run ends).
    pub upload_every: Option<Duration>,
}

/// How an experiment makes its runs.
#[derive(Debug, Clone, Default)]
pub enum FanOut {
    /// Every run over its whole dataset (the default).
    #[default]
    Whole,
    /// Shard K of N of every (variant, dataset) run, named `<experiment>_<variant>_<dataset>
    /// -shard-K-of-N`, without evaluations. Started again, a shard keeps its shard runs that
    /// finished and resumes the others (an unfinished one of a killed process) as `flow run
    /// --resume` does; with `upload`, shard runs missing here are looked for there first.
    Shard(Shard),
    /// Every run merged from its shards found in these folders, then evaluated and compared.
    Merge(Vec<PathBuf>),
}

/// One evaluator applied to one run.
#[derive(Debug, Clone)]
pub struct EvalResult {
    pub evaluator: String,
    /// The evaluator dataset it read.
    pub dataset: String,
    pub dir: RunDir,
    /// Its metrics (`accuracy`, `exact_match.mean`, ...), without the `flow.` / `eval.` ones.
    pub metrics: Map<String, Json>,
    /// Why it failed, if it did (failed lines, a failed aggregation, an error).
    pub problem: Option<String>,
    /// The evaluator's model endpoint could not be used at all (a judge's key refused, its
    /// host unreachable): the experiment exits as an unusable endpoint, not a quality failure.
    pub endpoint_unusable: bool,
}

/// One run of one variant over one dataset, and its evaluations.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub variant: String,
    pub dataset: String,
    pub dir: RunDir,
    pub meta: RunMeta,
    /// The endpoint refused every request (key refused, unreachable).
    pub endpoint_unusable: Option<ErrorInfo>,
    pub canceled: bool,
    pub first_errors: Vec<(usize, ErrorInfo)>,
    pub evals: Vec<EvalResult>,
    pub flow_hash: String,
    pub dataset_hash: String,
    /// A shard run started again: what the earlier attempt left.
    pub earlier: Option<Earlier>,
    /// A shard run's copy in object storage (`RunnerConfig::upload`).
    pub upload: Option<ShardUpload>,
}

/// What an earlier attempt of a shard run left, when the shard is started again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Earlier {
    /// It came from the upload location (there was no local copy).
    pub downloaded: bool,
    /// It had finished with every line succeeded: kept as it is, nothing ran.
    pub finished: bool,
    /// Lines it had finished that were kept rather than run again.
    pub kept_lines: usize,
}

/// A shard run's copy in object storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardUpload {
    /// Uploaded (`files` files) to `url`.
    Uploaded { url: String, files: usize },
    /// The copy at `url` already is this run as it is: nothing was uploaded.
    UpToDate { url: String },
    /// The upload to `url` failed.
    Failed { url: String, error: String },
}

/// Told when a run and its evaluations are done (for live output).
pub trait RunObserver: Sync {
    fn run_finished(&self, run: &RunResult);
}

/// A file-system-safe piece of a run name.
pub fn safe_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.len() > 80 {
        out.truncate(80);
    }
    out
}

fn mapping_args(map: &Map<String, Json>) -> Vec<String> {
    map.iter()
        .map(|(k, v)| match v {
            Json::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect()
}

/// Run `variants` × the experiment's datasets, and every evaluator on every run. `hashes`
/// gives each dataset's hash (recorded in the run's meta). Lines of the main runs are reported
/// to `progress`; each finished run (with its evaluations) to `observer`.
#[allow(clippy::too_many_arguments)]
pub async fn run_experiment(
    experiment: &Experiment,
    variants: &[PlannedVariant],
    dataset_hashes: &indexmap::IndexMap<String, String>,
    experiment_hash: &str,
    config: &RunnerConfig,
    progress: &dyn Progress,
    observer: &dyn RunObserver,
    cancel: watch::Receiver<bool>,
) -> Result<Vec<RunResult>, ExperimentError> {
    let concurrency = config.concurrency.max(1);
    let mut options = config.executor.clone();
    options.max_in_flight = concurrency;
    let client = LlmClient::with_config(options.client_config())
        .map_err(|e| ExperimentError::Run(e.to_string()))?;
    options.client = Some(client.clone());
    // Each prepared flow with Python nodes has its own workers: spread the line budget over
    // them (at least one each, at most two) instead of a full pool per variant.
    let flows = (variants.len() + experiment.evaluators.len()).max(1);
    options.python_workers = (concurrency / flows).clamp(1, 2);
    let slots = Arc::new(Semaphore::new(concurrency));

    // Prepare every flow first: nothing runs when any of them is misconfigured.
    let mut executors: Vec<Executor> = Vec::new();
    let mut eval_executors: Vec<Option<Executor>> = Vec::new();
    let mut model_evaluators: Vec<Option<ModelEvaluator>> = Vec::new();
    for e in &experiment.evaluators {
        model_evaluators.push(match &e.kind {
            EvaluatorKind::Model { spec, .. } => Some(
                spec.clone()
                    .prepare(&options.env, options.offline)
                    .map_err(|m| {
                        ExperimentError::Flow(vec![
                            e.origin.error(format!("evaluator `{}`: {m}", e.name)),
                        ])
                    })?,
            ),
            _ => None,
        });
    }
    let prepared = async {
        for v in variants {
            executors.push(prepare(v.flow.clone(), &options).await?);
        }
        for e in &experiment.evaluators {
            eval_executors.push(match &e.kind {
                EvaluatorKind::Flow(dir) => {
                    let mut flow = crate::model::load(dir, &[])
                        .map_err(|err| ExperimentError::Flow(err.diagnostics))?;
                    super::apply_experiment_init(&mut flow, e.init.as_ref())?;
                    Some(prepare(flow, &options).await?)
                }
                EvaluatorKind::Builtin(_) | EvaluatorKind::Model { .. } => None,
            });
        }
        Ok::<(), ExperimentError>(())
    }
    .await;
    let prepared = match prepared {
        Ok(()) => preflight(experiment, variants, &eval_executors),
        Err(e) => Err(e),
    };
    if let Err(e) = prepared {
        shutdown(&executors, &eval_executors).await;
        return Err(e);
    }

    let runs_root = crate::run_store::runs_root(&config.project);
    let batch_config = BatchConfig {
        concurrency,
        line_timeout: config.line_timeout,
        shared_slots: Some(slots),
        ..BatchConfig::default()
    };
    let mut jobs = Vec::new();
    let mut used = std::collections::HashSet::new();
    for (vi, v) in variants.iter().enumerate() {
        for dataset in &experiment.datasets {
            let shard_base = format!(
                "{}_{}_{}",
                safe_name(&experiment.name),
                safe_name(&v.plan.id),
                safe_name(&dataset.name),
            );
            let base = match &config.fan_out {
                FanOut::Shard(s) => format!("{shard_base}{}", s.name_suffix()),
                _ => format!("{shard_base}_{}", config.stamp),
            };
            // Ids that read the same once made safe (or cut short) still get their own run.
            let mut name = base.clone();
            let mut n = 1;
            let shard_run = matches!(config.fan_out, FanOut::Shard(_));
            while !used.insert(name.clone()) || (!shard_run && runs_root.join(&name).exists()) {
                n += 1;
                name = format!("{base}_{n}");
            }
            let dir = RunDir::new(runs_root.join(name));
            let job = RunJob {
                experiment,
                variant: v,
                executor: &executors[vi],
                eval_executors: &eval_executors,
                model_evaluators: &model_evaluators,
                client: &client,
                cache: options.cache.as_ref(),
                dataset,
                dataset_hash: dataset_hashes
                    .get(&dataset.name)
                    .cloned()
                    .unwrap_or_default(),
                experiment_hash,
                dir,
                shard_base,
                config,
                batch_config: batch_config.clone(),
                downloaded: false,
                copy: tokio::sync::Mutex::new(None),
            };
            jobs.push(job);
        }
    }
    // A shard started on a machine without its earlier shard runs (a retried pod) takes them
    // from the upload location, before anything runs.
    if let (FanOut::Shard(_), Some(remote)) = (&config.fan_out, &config.upload) {
        for job in &mut jobs {
            let copy = RunUpload::new(job.dir.clone(), remote.child(&job.dir.name()));
            *job.copy.get_mut() = Some(copy);
        }
        let mut fetches = Vec::with_capacity(jobs.len());
        for job in &jobs {
            fetches.push(job.fetch_upload());
        }
        let fetched = futures::future::try_join_all(fetches).await;
        match fetched {
            Ok(downloaded) => {
                for (job, downloaded) in jobs.iter_mut().zip(downloaded) {
                    job.downloaded = downloaded;
                }
            }
            Err(e) => {
                shutdown(&executors, &eval_executors).await;
                return Err(e);
            }
        }
    }
    let mut runs = Vec::with_capacity(jobs.len());
    for job in &jobs {
        runs.push(run_and_report(job, progress, observer, cancel.clone()));
    }
    let results = futures::future::join_all(runs).await;
    shutdown(&executors, &eval_executors).await;
    results.into_iter().collect()
}

/// Check every dataset against every flow that will read it — each variant's flow over each
/// dataset, each evaluation flow over its own datasets — before the first run starts, so a
/// missing column in the last dataset stops the experiment before any line runs, not after
/// the others ran. Each problem is located at the dataset's entry in the experiment file.
fn preflight(
    experiment: &Experiment,
    variants: &[PlannedVariant],
    eval_executors: &[Option<Executor>],
) -> Result<(), ExperimentError> {
    let mut problems = Vec::new();
    let mut check = |origin: &super::doc::Origin,
                     what: String,
                     data: &std::path::Path,
                     mappings: &Map<String, Json>,
                     flow: &crate::model::Flow| {
        let inputs = &flow.inputs;
        let mapping = match ColumnMapping::from_map(mappings) {
            Ok(m) => m,
            Err(e) => {
                problems.push(origin.error(format!("{what}: {e}")));
                return;
            }
        };
        if let Err(e) = crate::data::check_inputs(data, &mapping, inputs) {
            let text = e.to_string().replace("--column-mapping ", "mapping ");
            problems.push(origin.error(format!("{what}: {text}")));
            return;
        }
        // every row's image inputs, as a single run checks them
        if let Err(e) =
            crate::data::check_images(data, &mapping, inputs, &flow.dir, flow.message_format)
        {
            problems.push(origin.error(format!("{what}: {e}")));
        }
    };
    for dataset in &experiment.datasets {
        let mut seen = std::collections::HashSet::new();
        for v in variants {
            // Variants of one flow share its inputs: one check says it for all of them.
            let inputs: Vec<&String> = v.flow.inputs.keys().collect();
            if !seen.insert(format!("{inputs:?}{}", v.flow.dir.display())) {
                continue;
            }
            check(
                &dataset.origin,
                format!("dataset `{}` (variant {})", dataset.name, v.plan.id),
                &dataset.source,
                &dataset.mappings,
                &v.flow,
            );
        }
    }
    for (e, exec) in experiment.evaluators.iter().zip(eval_executors) {
        let Some(exec) = exec else { continue };
        for d in &e.datasets {
            check(
                &d.origin,
                format!("evaluator `{}`, dataset `{}`", e.name, d.name),
                &d.source,
                &d.mappings,
                exec.flow(),
            );
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ExperimentError::Flow(problems))
    }
}

/// Run one job and tell the observer when it finished.
async fn run_and_report(
    job: &RunJob<'_>,
    progress: &dyn Progress,
    observer: &dyn RunObserver,
    cancel: watch::Receiver<bool>,
) -> Result<RunResult, ExperimentError> {
    let result = job.run(progress, cancel).await;
    if let Ok(r) = &result {
        observer.run_finished(r);
    }
    result
}

async fn prepare(
    flow: crate::model::Flow,
    options: &ExecutorOptions,
) -> Result<Executor, ExperimentError> {
    let (dag, _warnings) = crate::dag::build(&flow).map_err(ExperimentError::Flow)?;
    let mut options = options.clone();
    let python_nodes = flow
        .nodes
        .iter()
        .filter(|n| n.kind == crate::model::NodeKind::Python)
        .count();
    options.python_workers = python_nodes.clamp(1, options.python_workers.max(1));
    Executor::new(flow, dag, &options)
        .await
        .map_err(|e| ExperimentError::Flow(e.diagnostics))
}

async fn shutdown(executors: &[Executor], evals: &[Option<Executor>]) {
    for e in executors {
        e.shutdown().await;
    }
    for e in evals.iter().flatten() {
        e.shutdown().await;
    }
}

struct RunJob<'a> {
    experiment: &'a Experiment,
    variant: &'a PlannedVariant,
    executor: &'a Executor,
    eval_executors: &'a [Option<Executor>],
    model_evaluators: &'a [Option<ModelEvaluator>],
    client: &'a LlmClient,
    cache: Option<&'a crate::cache::ResponseCache>,
    dataset: &'a Dataset,
    dataset_hash: String,
    experiment_hash: &'a str,
    dir: RunDir,
    /// `<experiment>_<variant>_<dataset>`: the name shard runs of this run start with.
    shard_base: String,
    config: &'a RunnerConfig,
    batch_config: BatchConfig,
    /// The shard run in `dir` was just downloaded from the upload location.
    downloaded: bool,
    /// A shard run's copy in object storage, when it has one (`RunnerConfig::upload`).
    copy: tokio::sync::Mutex<Option<RunUpload>>,
}

impl RunJob<'_> {
    async fn run(
        &self,
        progress: &dyn Progress,
        cancel: watch::Receiver<bool>,
    ) -> Result<RunResult, ExperimentError> {
        let mapping = ColumnMapping::from_map(&self.dataset.mappings).map_err(|e| {
            ExperimentError::File(
                self.dataset
                    .origin
                    .error(format!("dataset `{}`: {e}", self.dataset.name))
                    .into(),
            )
        })?;
        let batch = DirBatch {
            dir: self.dir.clone(),
            data: self.dataset.source.clone(),
            mapping,
            mapping_args: mapping_args(&self.dataset.mappings),
            base_run: None,
            require_base_line: false,
            config: self.batch_config.clone(),
            // the experiment's `init:`, recorded so `flow run --resume` makes the class the same
            settings: RunSettings {
                init_values: self
                    .experiment
                    .init
                    .as_ref()
                    .map(|i| i.values.clone())
                    .unwrap_or_default(),
                ..self.config.settings.clone()
            },
            offline: self.config.executor.offline,
            shard: None,
            resume: None,
            trace: None,
        };
        let (done, earlier) = match &self.config.fan_out {
            FanOut::Whole => (
                run_to_dir(self.executor, &batch, progress, cancel.clone()).await?,
                None,
            ),
            FanOut::Shard(shard) => {
                self.run_shard(*shard, batch, progress, cancel.clone())
                    .await?
            }
            FanOut::Merge(folders) => (self.merge(folders).await?, None),
        };
        if let Some(earlier) = earlier.as_ref().filter(|e| e.finished) {
            return Ok(self.kept_shard(done, earlier.clone()).await);
        }
        // The snapshot holds the flow as it ran, swept parameters included.
        let flow_file = self.dir.snapshot_dir().join(
            self.variant
                .flow
                .file
                .file_name()
                .unwrap_or_else(|| std::ffi::OsStr::new("flow.dag.yaml")),
        );
        if !self.variant.plan.parameters().is_empty() {
            std::fs::write(&flow_file, &self.variant.applied_yaml).map_err(|e| {
                ExperimentError::Io {
                    path: flow_file.clone(),
                    message: e.to_string(),
                }
            })?;
        }
        self.annotate(&self.dir)?;
        // A shard run goes to object storage as soon as it ends (however it ended), so a
        // shard killed later keeps it.
        let upload = self.upload().await;
        let mut result = RunResult {
            variant: self.variant.plan.id.clone(),
            dataset: self.dataset.name.clone(),
            dir: self.dir.clone(),
            meta: done.meta,
            endpoint_unusable: done.outcome.endpoint_unusable.clone(),
            canceled: done.outcome.canceled,
            first_errors: done.outcome.first_errors.clone(),
            evals: Vec::new(),
            flow_hash: self.variant.flow_hash.clone(),
            dataset_hash: self.dataset_hash.clone(),
            earlier,
            upload,
        };
        if let Some(e) = done.data_error {
            return Err(ExperimentError::Run(format!(
                "dataset `{}`: reading stopped early: {e}",
                self.dataset.name
            )));
        }
        // A shard is evaluated once merged: evaluators need every line.
        if result.canceled
            || result.endpoint_unusable.is_some()
            || matches!(self.config.fan_out, FanOut::Shard(_))
        {
            return Ok(result);
        }
        for (ei, evaluator) in self.experiment.evaluators.iter().enumerate() {
            let matching: Vec<&EvalDataset> = self
                .experiment
                .evaluations_of(&self.dataset.name)
                .filter(|(i, _, _)| *i == ei)
                .map(|(_, _, d)| d)
                .collect();
            for ds in &matching {
                let mut name = format!("{}_eval_{}", self.dir.name(), safe_name(&evaluator.name));
                if matching.len() > 1 {
                    name.push('_');
                    name.push_str(&safe_name(&ds.name));
                }
                let eval_dir = RunDir::new(self.dir.path.with_file_name(name));
                let what = match (&evaluator.kind, &self.eval_executors[ei]) {
                    (EvaluatorKind::Flow(_), Some(exec)) => Evaluator::Flow(exec),
                    (EvaluatorKind::Builtin(spec), _) => Evaluator::Builtin(spec),
                    (EvaluatorKind::Model { .. }, _) => match &self.model_evaluators[ei] {
                        Some(m) => Evaluator::Model(m),
                        None => continue,
                    },
                    (EvaluatorKind::Flow(_), None) => continue,
                };
                let mut r = self
                    .evaluate(
                        what,
                        evaluator.init.as_ref(),
                        ds,
                        eval_dir,
                        &result.meta,
                        cancel.clone(),
                    )
                    .await?;
                r.evaluator = evaluator.name.clone();
                result.evals.push(r);
            }
        }
        Ok(result)
    }

    /// Shard `shard` of this run. An earlier shard run in `dir` of the same flow, data and
    /// mapping is kept when every line of it succeeded and resumed otherwise (only its missing
    /// and failed lines run); one of another flow or data is replaced.
    async fn run_shard(
        &self,
        shard: Shard,
        mut batch: DirBatch,
        progress: &dyn Progress,
        cancel: watch::Receiver<bool>,
    ) -> Result<(DirRun, Option<Earlier>), ExperimentError> {
        let info = ShardInfo {
            index: shard.index,
            count: shard.count,
            dataset_lines: 0,
            flow_hash: self.variant.flow_hash.clone(),
            data_hash: self.dataset_hash.clone(),
        };
        let earlier = self.dir.read_meta().ok().filter(|meta| {
            meta.shard.as_ref().is_some_and(|i| {
                i.shard() == shard && i.flow_hash == info.flow_hash && i.data_hash == info.data_hash
            }) && meta.column_mapping == batch.mapping_args
        });
        let resumed = earlier.is_some();
        if let Some(meta) = earlier {
            batch.resume = Some(meta);
        } else if self.dir.path.exists() {
            std::fs::remove_dir_all(&self.dir.path).map_err(|e| io(&self.dir.path, e))?;
        }
        batch.shard = Some(info);
        let running = run_to_dir(self.executor, &batch, progress, cancel);
        let run = match self.config.upload_every {
            Some(every) if self.config.upload.is_some() => {
                let checkpoints = async {
                    loop {
                        tokio::time::sleep(every).await;
                        if let Some(copy) = self.copy.lock().await.as_mut() {
                            // One that fails is tried again at the next; the upload when the
                            // run ends reports errors.
                            let _ = copy.checkpoint().await;
                        }
                    }
                };
                tokio::pin!(running);
                tokio::select! {
                    run = &mut running => run,
                    () = checkpoints => running.await,
                }
            }
            _ => running.await,
        }?;
        let earlier = resumed.then_some(Earlier {
            downloaded: self.downloaded,
            finished: run.finished_before,
            kept_lines: run.kept_lines,
        });
        Ok((run, earlier))
    }

    /// When this shard run has no local copy but the upload location has one (a shard started
    /// again on a fresh machine), download it into `dir`. Returns whether it did.
    async fn fetch_upload(&self) -> Result<bool, ExperimentError> {
        let mut copy = self.copy.lock().await;
        let Some(copy) = copy.as_mut() else {
            return Ok(false);
        };
        if self.dir.meta_file().is_file() || !copy.remote().has("meta.json").await? {
            return Ok(false);
        }
        if self.dir.path.exists() {
            std::fs::remove_dir_all(&self.dir.path).map_err(|e| io(&self.dir.path, e))?;
        }
        copy.remote().download(&self.dir.path).await?;
        copy.mark_sent();
        Ok(true)
    }

    /// Bring this shard run's copy in object storage up to date, if it has one.
    async fn upload(&self) -> Option<ShardUpload> {
        let mut copy = self.copy.lock().await;
        let copy = copy.as_mut()?;
        let url = copy.remote().to_string();
        Some(match copy.finish().await {
            Ok(files) => ShardUpload::Uploaded { url, files },
            Err(e) => ShardUpload::Failed {
                url,
                error: e.to_string(),
            },
        })
    }

    /// The result of a shard run an earlier attempt finished: its directory is left as it is,
    /// and uploaded only when the upload location does not hold this very run.
    async fn kept_shard(&self, done: DirRun, earlier: Earlier) -> RunResult {
        let there = match self.copy.lock().await.as_ref() {
            Some(copy) if earlier.downloaded => Some((copy.remote().to_string(), true)),
            Some(copy) => {
                let local = std::fs::read(self.dir.meta_file()).ok();
                let same = matches!(copy.remote().read("meta.json").await,
                    Ok(there) if there.is_some() && there == local);
                Some((copy.remote().to_string(), same))
            }
            None => None,
        };
        let upload = match there {
            Some((url, true)) => Some(ShardUpload::UpToDate { url }),
            Some((_, false)) => self.upload().await,
            None => None,
        };
        RunResult {
            variant: self.variant.plan.id.clone(),
            dataset: self.dataset.name.clone(),
            dir: self.dir.clone(),
            meta: done.meta,
            endpoint_unusable: None,
            canceled: false,
            first_errors: Vec::new(),
            evals: Vec::new(),
            flow_hash: self.variant.flow_hash.clone(),
            dataset_hash: self.dataset_hash.clone(),
            earlier: Some(earlier),
            upload,
        }
    }

    /// This run merged from its shard runs (`<experiment>_<variant>_<dataset>-shard-K-of-N`)
    /// in `folders`, aggregation nodes run over every line.
    async fn merge(&self, folders: &[PathBuf]) -> Result<DirRun, ExperimentError> {
        let prefix = format!("{}-shard-", self.shard_base);
        let mut shards = Vec::new();
        for folder in folders {
            let Ok(entries) = std::fs::read_dir(folder) else {
                continue;
            };
            for entry in entries.flatten() {
                let dir = RunDir::new(entry.path());
                if !dir.name().starts_with(&prefix) {
                    continue;
                }
                if let Ok(meta) = dir.read_meta()
                    && meta.shard.is_some()
                {
                    shards.push(ShardRun { dir, meta });
                }
            }
        }
        let what = format!(
            "variant `{}` over dataset `{}`",
            self.variant.plan.id, self.dataset.name
        );
        if shards.is_empty() {
            return Err(ExperimentError::Run(format!(
                "no shard runs of {what} ({prefix}K-of-N) in {}",
                folders
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        shards.sort_by_key(|s| s.dir.name());
        check_shards(&mut shards).map_err(|e| ExperimentError::Run(format!("{what}: {e}")))?;
        if let Some(info) = shards.first().and_then(|s| s.meta.shard.as_ref()) {
            if info.flow_hash != self.variant.flow_hash {
                return Err(ExperimentError::Run(format!(
                    "{what}: the shards ran another flow than the experiment's (it changed since they ran)"
                )));
            }
            if info.data_hash != self.dataset_hash {
                return Err(ExperimentError::Run(format!(
                    "{what}: the shards ran other data than the dataset now holds"
                )));
            }
        }
        let failed =
            |e: crate::batch::merge::MergeError| ExperimentError::Run(format!("{what}: {e}"));
        let mut meta = write_merged_lines(&shards, &self.dir).map_err(failed)?;
        let aggregation = finish_merge(&self.dir, &mut meta, Some(self.executor))
            .await
            .map_err(failed)?;
        Ok(DirRun {
            outcome: BatchOutcome {
                completed: meta.completed_lines,
                failed: meta.failed_lines,
                tokens: meta.tokens,
                aggregation,
                ..BatchOutcome::default()
            },
            meta,
            data_error: None,
            kept_lines: 0,
            finished_before: false,
            cache_warning: None,
            elapsed: std::time::Duration::ZERO,
        })
    }

    /// Record the experiment and the hashes in the run's `meta.json`.
    fn annotate(&self, dir: &RunDir) -> Result<(), ExperimentError> {
        let mut meta = dir.read_meta().map_err(|e| io(&dir.meta_file(), e))?;
        meta.experiment = Some(ExperimentRef {
            name: self.experiment.name.clone(),
            dir: self.config.experiment_dir.display().to_string(),
            variant: self.variant.plan.id.clone(),
            dataset: self.dataset.name.clone(),
            hashes: ExperimentHashes {
                flow: self.variant.flow_hash.clone(),
                dataset: self.dataset_hash.clone(),
                experiment: self.experiment_hash.to_string(),
            },
        });
        crate::run_store::write_meta(dir, &meta).map_err(|e| io(&dir.meta_file(), e))
    }

    /// One evaluator over this run, through [`crate::eval::evaluate`] (no gates: the
    /// experiment compares metrics), into `dir`. What went wrong with it is its `problem`.
    #[allow(clippy::too_many_arguments)]
    async fn evaluate(
        &self,
        what: Evaluator<'_>,
        init: Option<&super::file::Init>,
        ds: &EvalDataset,
        dir: RunDir,
        base_meta: &RunMeta,
        cancel: watch::Receiver<bool>,
    ) -> Result<EvalResult, ExperimentError> {
        let mapping = ColumnMapping::from_map(&ds.mappings).map_err(|e| {
            ExperimentError::File(
                ds.origin
                    .error(format!("dataset `{}`: {e}", ds.name))
                    .into(),
            )
        })?;
        let (flow, builtin, models) = match what {
            Evaluator::Flow(exec) => (Some(exec), Vec::new(), &[][..]),
            Evaluator::Builtin(spec) => (None, vec![spec.clone()], &[][..]),
            Evaluator::Model(m) => (None, Vec::new(), std::slice::from_ref(m)),
        };
        let plan = EvalPlan {
            base: self.dir.clone(),
            base_meta: base_meta.clone(),
            dir: dir.clone(),
            data: ds.source.clone(),
            mapping,
            mapping_args: mapping_args(&ds.mappings),
            flow,
            builtin,
            models,
            client: Some(self.client),
            cache: self.cache,
            model_concurrency: self.batch_config.concurrency,
            repeat: None,
            gates: GatePlan::default(),
            batch: self.batch_config.clone(),
            // the evaluation flow's `init:`, recorded to make its class the same way again
            settings: RunSettings {
                init_values: init.map(|i| i.values.clone()).unwrap_or_default(),
                ..self.config.settings.clone()
            },
            offline: self.config.executor.offline,
            cancel,
            resume: false,
            // An experiment run again answers what it already asked from the cache.
            finish_with:
                "flow experiment (run it again: answers already given come from the cache)".into(),
        };
        let mut endpoint_unusable = false;
        let problem = match evaluate(plan, &crate::eval::Quiet).await {
            Ok(outcome) => problem_of(&outcome.verdict),
            Err(e @ (EvalError::Models(_) | EvalError::Stopped { .. })) => {
                use crate::error::Classify as _;
                endpoint_unusable = e.class() == crate::error::ErrorClass::Endpoint;
                Some(e.to_string())
            }
            Err(e) => return Err(ExperimentError::Eval(Box::new(e))),
        };
        Ok(EvalResult {
            evaluator: String::new(),
            dataset: ds.name.clone(),
            metrics: metrics_of(&dir),
            dir,
            problem,
            endpoint_unusable,
        })
    }
}

/// What scores a run: a prepared evaluation flow, a built-in, or a model evaluator.
enum Evaluator<'a> {
    Flow(&'a Executor),
    Builtin(&'a crate::evaluators::EvaluatorSpec),
    Model(&'a ModelEvaluator),
}

/// What the experiment reports about an evaluation that did not pass.
fn problem_of(verdict: &Verdict) -> Option<String> {
    match verdict {
        Verdict::Passed => None,
        Verdict::Failed(FailReason::EvaluationFlow(FlowProblem::LinesFailed {
            failed,
            total,
            ..
        })) => Some(format!("{failed} of {total} evaluation lines failed")),
        Verdict::Failed(FailReason::EvaluationFlow(p @ FlowProblem::Aggregation(_))) => {
            Some(p.to_string())
        }
        Verdict::Failed(FailReason::BaseLines { lines, .. }) => Some(format!(
            "{lines} line(s) of the run failed; they count as failed evaluations"
        )),
        other => Some(other.to_string()),
    }
}

/// An evaluation's metrics without the bookkeeping ones (`flow.*` describe the evaluation run
/// itself, `eval.*` its base-line failures).
fn metrics_of(dir: &RunDir) -> Map<String, Json> {
    crate::eval::read_metrics(dir)
        .into_iter()
        .filter(|(k, v)| !k.starts_with("flow.") && !k.starts_with("eval.") && v.is_number())
        .collect()
}

/// An I/O error on `path`, as the experiment reports it.
fn io(path: &Path, e: std::io::Error) -> ExperimentError {
    ExperimentError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}
