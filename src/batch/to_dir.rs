//! A batch run written to its run directory: snapshot, `meta.json`, every line through the run
//! writer, then the finished record (outputs in line order, metrics, errors). The one path of
//! every batch that writes a run directory: `flow run --data`, `flow run --resume`, shards
//! (`--shard K/N`, `--shards N`, and so the Kubernetes pods that run them) and the runs of
//! `flow experiment`.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use super::{BatchConfig, BatchOutcome, Progress, run_batch, spawn_line_source};
use crate::data::{BaseRun, ColumnMapping};
use crate::executor::Executor;
use crate::record::{LineResult, timestamp};
use crate::run_store::{self, RunDir, RunMeta, RunSettings, RunStatus, RunWriter, Shard};
use crate::telemetry::{OtlpConfig, TracedProgress, Tracer};

/// How long the end of a batch waits for its last trace spans to be sent.
const TRACE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// One batch to run into a new run directory.
#[derive(Debug, Clone)]
pub struct DirBatch {
    /// The run directory to create (it must not exist yet, unless `resume` is set).
    pub dir: RunDir,
    /// The dataset (absolute path).
    pub data: PathBuf,
    /// The column mapping, and the text it was written as (recorded in `meta.json`).
    pub mapping: ColumnMapping,
    pub mapping_args: Vec<String>,
    /// A base run for `${run.outputs.x}` (evaluation runs).
    pub base_run: Option<PathBuf>,
    /// Fail lines whose base-run line failed or never ran (evaluations count them).
    pub require_base_line: bool,
    pub config: BatchConfig,
    /// Settings recorded for `flow run --resume`.
    pub settings: RunSettings,
    /// Every model answer comes from the offline echo provider.
    pub offline: bool,
    /// Run only this shard of the dataset, without aggregation (recorded in `meta.json`).
    pub shard: Option<crate::run_store::ShardInfo>,
    /// Finish the earlier run in `dir` (its `meta.json`) as `flow run --resume` does: the lines
    /// its journal holds as succeeded are kept, only the missing and failed ones run. A run that
    /// had finished with every line succeeded is left as it is ([`DirRun::finished_before`]).
    pub resume: Option<RunMeta>,
    /// Send a trace span of every line to this OpenTelemetry collector.
    pub trace: Option<OtlpConfig>,
}

/// What a batch is about to run, told to [`Progress::started`] once its `meta.json` is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchStart {
    /// The run's name.
    pub run: String,
    /// Lines of the run (of its shard, for a shard).
    pub total: usize,
    /// Lines an earlier attempt finished that are kept, not run again (a resumed run).
    pub kept: usize,
    /// The run is a resumed one.
    pub resumed: bool,
    /// The shard of the dataset the run covers.
    pub shard: Option<Shard>,
    /// Lines in flight at once.
    pub concurrency: usize,
    /// What the person running it should know before it starts (an input that takes its
    /// default on every line).
    pub notices: Vec<String>,
}

/// The lines of an earlier attempt that aggregation reads again: when the flow aggregates
/// (never in a shard), the lines `journal` holds as succeeded, slimmed to what its aggregation
/// nodes read, since aggregation sees every line.
fn kept_for_aggregation(
    executor: &Executor,
    dir: &RunDir,
    journal: &run_store::Journal,
    shard: bool,
) -> io::Result<Vec<LineResult>> {
    if executor.dag().aggregation_nodes.is_empty() || shard {
        return Ok(Vec::new());
    }
    run_store::succeeded_lines_with(
        dir,
        journal,
        &executor.aggregation_dependencies(),
        executor.flow().message_format,
    )
}

/// A finished batch: its record and what happened.
#[derive(Debug)]
pub struct DirRun {
    pub meta: RunMeta,
    pub outcome: BatchOutcome,
    /// Why reading the dataset stopped early, if it did.
    pub data_error: Option<String>,
    /// Lines an earlier attempt had finished that were kept, not run again (a resumed run).
    pub kept_lines: usize,
    /// The resumed run had already finished with every line succeeded: nothing ran and its
    /// directory is as it was.
    pub finished_before: bool,
    /// Why the response cache could not record some answers, if it could not.
    pub cache_warning: Option<String>,
    /// Wall time of this attempt (the run's `duration_s` sums every attempt).
    pub elapsed: Duration,
}

/// Why a batch could not be run or recorded.
#[derive(Debug, thiserror::Error)]
pub enum DirBatchError {
    /// The run directory could not be created, read or written.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What failed, e.g. `cannot write the snapshot of`.
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The dataset or the base run could not be read.
    #[error("{0}")]
    Data(String),
    /// Another process writes the run directory.
    #[error(transparent)]
    Lock(#[from] crate::run_store::LockError),
    /// The dataset, as mapped, cannot feed the flow (checked before any line runs).
    #[error(transparent)]
    Inputs(#[from] Box<crate::data::InputsError>),
}

impl crate::error::Classify for DirBatchError {
    /// The run directory is `flow`'s own; the dataset and base run are the user's.
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            DirBatchError::Io { .. } => crate::error::ErrorClass::Io,
            DirBatchError::Data(_) => crate::error::ErrorClass::Config,
            DirBatchError::Inputs(e) => e.class(),
            DirBatchError::Lock(e) => e.class(),
        }
    }
}

fn io_at<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> DirBatchError + 'a {
    move |source| DirBatchError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The `meta.json` of a run that is starting: `total` lines of `data` with `flow` (variants
/// applied) into `dir`.
#[allow(clippy::too_many_arguments)]
pub fn new_run_meta(
    flow: &crate::model::Flow,
    dir: &RunDir,
    data: &Path,
    mapping_args: &[String],
    base_run: Option<&Path>,
    total: usize,
    concurrency: usize,
    offline: bool,
    settings: RunSettings,
) -> RunMeta {
    RunMeta {
        name: dir.name(),
        flow: flow.dir.display().to_string(),
        flow_name: flow.name(),
        variant: flow.variant_label(),
        variants: flow.selected_variants.clone(),
        data: Some(data.display().to_string()),
        column_mapping: mapping_args.to_vec(),
        base_run: base_run.map(|p| p.display().to_string()),
        status: RunStatus::Running,
        created: timestamp(SystemTime::now()),
        end_time: None,
        duration_s: 0.0,
        total_lines: total,
        completed_lines: 0,
        failed_lines: 0,
        tokens: Default::default(),
        cost_usd: None,
        unpriced_models: Vec::new(),
        latency_ms: Default::default(),
        cache_hits: 0,
        saved_usd: 0.0,
        concurrency,
        offline,
        settings,
        flow_version: env!("CARGO_PKG_VERSION").to_string(),
        shard: None,
        merged_from: Vec::new(),
        experiment: None,
    }
}

/// Run every line of `batch.data` with `executor` into `batch.dir` (or, with `batch.resume`,
/// the lines an earlier attempt did not finish). `progress` hears of the start, the kept lines
/// and every finished line; a `true` on `cancel` stops the batch (Ctrl-C), keeping every
/// finished line for a later resume.
pub async fn run_to_dir(
    executor: &Executor,
    batch: &DirBatch,
    progress: &dyn Progress,
    cancel: watch::Receiver<bool>,
) -> Result<DirRun, DirBatchError> {
    let dir = &batch.dir;
    let flow = executor.flow();
    let rows =
        crate::data::count_rows(&batch.data).map_err(|e| DirBatchError::Data(e.to_string()))?;
    // Before anything is written or run: the dataset, as mapped, must feed the flow.
    let notices = crate::data::check_inputs(&batch.data, &batch.mapping, &flow.inputs)?;
    crate::data::check_images(
        &batch.data,
        &batch.mapping,
        &flow.inputs,
        &flow.dir,
        flow.message_format,
    )?;
    let shard = batch.shard.as_ref().map(|i| i.shard());
    let total = shard.map_or(rows, |s| s.lines_of(rows));
    let base = match &batch.base_run {
        Some(p) => Some(BaseRun::load(p).map_err(|e| DirBatchError::Data(e.to_string()))?),
        None => None,
    };
    let settings = RunSettings {
        require_base_line: batch.require_base_line,
        ..batch.settings.clone()
    };
    // One writer at a time: held until this function returns, however it returns.
    std::fs::create_dir_all(&dir.path).map_err(io_at("cannot create", &dir.path))?;
    let _lock = run_store::RunLock::acquire(&dir.path)?;
    let (mut meta, skip, previous) = match &batch.resume {
        None => {
            run_store::write_snapshot(flow, &dir.snapshot_dir())
                .map_err(io_at("cannot write the snapshot of", &dir.path))?;
            let mut meta = new_run_meta(
                flow,
                dir,
                &batch.data,
                &batch.mapping_args,
                batch.base_run.as_deref(),
                total,
                batch.config.concurrency,
                batch.offline,
                settings,
            );
            meta.shard = batch.shard.clone().map(|mut i| {
                i.dataset_lines = rows;
                i
            });
            (meta, HashSet::new(), Vec::new())
        }
        Some(before) => {
            let journal = run_store::read_journal(dir).map_err(io_at("cannot read", &dir.path))?;
            let done: HashSet<usize> = journal.completed().collect();
            if done.len() >= total && before.status == RunStatus::Completed {
                progress.lines_kept(done.len());
                return Ok(DirRun {
                    outcome: BatchOutcome {
                        completed: before.completed_lines,
                        failed: before.failed_lines,
                        tokens: before.tokens,
                        ..BatchOutcome::default()
                    },
                    meta: before.clone(),
                    data_error: None,
                    kept_lines: done.len(),
                    finished_before: true,
                    cache_warning: None,
                    elapsed: Duration::ZERO,
                });
            }
            let previous = kept_for_aggregation(executor, dir, &journal, shard.is_some())
                .map_err(io_at("cannot read", &dir.path))?;
            let mut meta = before.clone();
            meta.total_lines = total;
            // Where the flow and data are now (a run downloaded from another machine), and the
            // settings this attempt runs with.
            meta.flow = flow.dir.display().to_string();
            meta.data = Some(batch.data.display().to_string());
            meta.concurrency = batch.config.concurrency;
            meta.offline = batch.offline;
            meta.settings = settings;
            (meta, done, previous)
        }
    };
    meta.status = RunStatus::Running;
    let kept_lines = skip.len();
    run_store::write_meta(dir, &meta).map_err(io_at("cannot write", &dir.path))?;
    progress.started(&BatchStart {
        run: meta.name.clone(),
        total,
        kept: kept_lines,
        resumed: batch.resume.is_some(),
        shard,
        concurrency: batch.config.concurrency,
        notices,
    });
    if kept_lines > 0 {
        progress.lines_kept(kept_lines);
    }

    let source = spawn_line_source(
        &batch.data,
        batch.mapping.clone(),
        base,
        flow.inputs.clone(),
        skip,
        shard,
        batch.config.concurrency.max(1) * 2,
        batch.require_base_line,
        flow.message_format,
    )
    .map_err(|e| DirBatchError::Data(e.to_string()))?;
    let writer =
        RunWriter::start(dir, flow.message_format).map_err(io_at("cannot write", &dir.path))?;
    let tracer = batch
        .trace
        .clone()
        .map(|config| Tracer::start(config, &flow.name()));
    let traced = TracedProgress {
        inner: progress,
        tracer: tracer.clone(),
        run: meta.name.clone(),
    };
    let started = Instant::now();
    let config = BatchConfig {
        skip_aggregation: batch.config.skip_aggregation || shard.is_some(),
        ..batch.config.clone()
    };
    executor.set_batch_run(&meta.name, &batch.mapping_args);
    let outcome = run_batch(
        executor,
        source.lines,
        &writer,
        &config,
        &traced,
        cancel,
        previous,
    )
    .await;
    if let Some(t) = &tracer {
        t.flush(TRACE_FLUSH_TIMEOUT).await;
    }
    let write_result = writer.finish();
    let data_error = source.reader.join().ok().flatten();
    write_result.map_err(io_at("cannot write the run to", &dir.path))?;

    let elapsed = started.elapsed();
    meta.duration_s += elapsed.as_secs_f64();
    let metrics = outcome
        .aggregation
        .as_ref()
        .map(|a| a.metrics.clone())
        .unwrap_or_default();
    let stopped_early =
        outcome.canceled || outcome.endpoint_unusable.is_some() || outcome.misconfigured.is_some();
    run_store::finalize(dir, &mut meta, &metrics, stopped_early)
        .map_err(io_at("cannot finish", &dir.path))?;
    Ok(DirRun {
        meta,
        outcome,
        data_error,
        kept_lines,
        finished_before: false,
        cache_warning: executor.cache().and_then(|c| c.write_warning()),
        elapsed,
    })
}
