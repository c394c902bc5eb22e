//! A batch run written to its run directory: snapshot, `meta.json`, every line through the run
//! writer, then the finished record (outputs in line order, metrics, errors). The library form
//! of what `flow run --data` (and `flow run --resume`) does, for commands that start many
//! batches in one process (`flow experiment`).

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use tokio::sync::watch;

use super::{BatchConfig, BatchOutcome, Progress, run_batch, spawn_line_source};
use crate::data::{BaseRun, ColumnMapping};
use crate::executor::Executor;
use crate::record::{LineResult, timestamp};
use crate::run_store::{self, RunDir, RunMeta, RunSettings, RunStatus, RunWriter};

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
    /// its journal holds as succeeded are kept, only the missing and failed ones run.
    pub resume: Option<RunMeta>,
}

/// What an earlier attempt of the run in `dir` left, for resuming it: the lines its journal
/// holds as succeeded (they do not run again) and, when the flow aggregates (never in a shard),
/// those lines slimmed to what its aggregation nodes read, since aggregation sees every line.
pub fn earlier_attempt(
    executor: &Executor,
    dir: &RunDir,
    shard: bool,
) -> io::Result<(HashSet<usize>, Vec<LineResult>)> {
    let journal = run_store::read_journal(dir)?;
    let done: HashSet<usize> = journal.completed().collect();
    let previous = if executor.dag().aggregation_nodes.is_empty() || shard {
        Vec::new()
    } else {
        run_store::succeeded_lines_with(dir, &journal, &executor.aggregation_dependencies())?
    };
    Ok((done, previous))
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
}

/// Why a batch could not be run or recorded.
#[derive(Debug, thiserror::Error)]
pub enum DirBatchError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Data(String),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> DirBatchError + '_ {
    move |source| DirBatchError::Io {
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
        concurrency,
        offline,
        settings,
        flow_version: env!("CARGO_PKG_VERSION").to_string(),
        shard: None,
        merged_from: Vec::new(),
        experiment: None,
    }
}

/// Run every line of `batch.data` with `executor` into `batch.dir`.
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
    let shard = batch.shard.as_ref().map(|i| i.shard());
    let total = shard.map_or(rows, |s| s.lines_of(rows));
    let base = match &batch.base_run {
        Some(p) => Some(BaseRun::load(p).map_err(|e| DirBatchError::Data(e.to_string()))?),
        None => None,
    };
    let (mut meta, skip, previous) = match &batch.resume {
        None => {
            std::fs::create_dir_all(&dir.path).map_err(io_at(&dir.path))?;
            run_store::write_snapshot(flow, &dir.snapshot_dir()).map_err(io_at(&dir.path))?;
            let mut meta = new_run_meta(
                flow,
                dir,
                &batch.data,
                &batch.mapping_args,
                batch.base_run.as_deref(),
                total,
                batch.config.concurrency,
                batch.offline,
                RunSettings {
                    require_base_line: batch.require_base_line,
                    ..batch.settings.clone()
                },
            );
            meta.shard = batch.shard.clone().map(|mut i| {
                i.dataset_lines = rows;
                i
            });
            (meta, HashSet::new(), Vec::new())
        }
        Some(before) => {
            let (done, previous) =
                earlier_attempt(executor, dir, shard.is_some()).map_err(io_at(&dir.path))?;
            let mut meta = before.clone();
            meta.total_lines = total;
            // Where the flow and data are now (a run downloaded from another machine).
            meta.flow = flow.dir.display().to_string();
            meta.data = Some(batch.data.display().to_string());
            (meta, done, previous)
        }
    };
    meta.status = RunStatus::Running;
    let kept_lines = skip.len();
    run_store::write_meta(dir, &meta).map_err(io_at(&dir.path))?;
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
    )
    .map_err(|e| DirBatchError::Data(e.to_string()))?;
    let writer = RunWriter::start(dir).map_err(io_at(&dir.path))?;
    let started = Instant::now();
    let config = BatchConfig {
        skip_aggregation: batch.config.skip_aggregation || shard.is_some(),
        ..batch.config.clone()
    };
    let outcome = run_batch(
        executor,
        source.lines,
        &writer,
        &config,
        progress,
        cancel,
        previous,
    )
    .await;
    let write_result = writer.finish();
    let data_error = source.reader.join().ok().flatten();
    write_result.map_err(io_at(&dir.path))?;

    meta.duration_s += started.elapsed().as_secs_f64();
    let metrics = outcome
        .aggregation
        .as_ref()
        .map(|a| a.metrics.clone())
        .unwrap_or_default();
    let stopped_early = outcome.canceled || outcome.endpoint_unusable.is_some();
    run_store::finalize(dir, &mut meta, &metrics, stopped_early).map_err(io_at(&dir.path))?;
    Ok(DirRun {
        meta,
        outcome,
        data_error,
        kept_lines,
    })
}
