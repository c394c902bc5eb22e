//! `flow run FLOW --data FILE` (a batch run into `.flow/runs/<name>/`) and
//! `flow run --resume RUN` (run only the missing and failed lines of an earlier run).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use indexmap::IndexMap;
use tokio::sync::watch;

use super::output::{Failure, bold, color_stderr, dim};
use super::progress::{CliProgress, human_count, human_duration};
use super::run::{
    OutputFormat, RunArgs, executor_options, line_failure, load_flow, parse_variants, prepare,
};
use super::runtime;
use flow::batch::{BatchConfig, BatchOutcome, earlier_attempt, run_batch, spawn_line_source};
use flow::data::{BaseRun, ColumnMapping};
use flow::model::{Flow, VariantSelection};
use flow::record::ErrorKind;
use flow::run_store::remote::RemoteDir;
use flow::run_store::{self, RunDir, RunMeta, RunSettings, RunStatus, RunWriter, Shard, ShardInfo};

/// Lines in flight at once by default. Hosted endpoints (OpenAI, Azure OpenAI) serve each
/// request in about a second and allow hundreds to thousands of requests per minute on common
/// tiers: 32 concurrent requests reach 20-30 requests/s, enough to use such a quota without
/// tripping it at once; the adaptive limiter backs off when an endpoint says it is too much.
pub const DEFAULT_CONCURRENCY: usize = 32;

#[derive(Debug, Args, Clone)]
pub struct BatchArgs {
    /// Run every row of this dataset (JSONL, CSV, TSV or a JSON array) as a batch.
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Map flow inputs to data: name='${data.column}', name='${run.outputs.x}' (with --run), or a literal.
    #[arg(long, value_name = "NAME=VALUE", num_args = 1..)]
    pub column_mapping: Vec<String>,
    /// A base run whose outputs and inputs `${run.outputs.x}` / `${run.inputs.x}` read, joined by line number.
    #[arg(long = "run", value_name = "RUN")]
    pub base_run: Option<String>,
    /// The run's name (default: <flow>_<variant>_<timestamp>).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Lines in flight at once.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    /// Fail a line that runs longer than this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub line_timeout: Option<f64>,
    /// Exit 0 even when some lines failed (a run where every line failed still exits 1).
    #[arg(long)]
    pub allow_failures: bool,
    /// Finish an earlier run: run only its missing and failed lines.
    #[arg(long, value_name = "RUN", conflicts_with_all = ["data", "variant", "column_mapping", "base_run", "name", "inputs", "node"])]
    pub resume: Option<String>,
    /// Run only shard K of N (1-based): the lines whose number n has n % N == K-1, with their
    /// original line numbers. Merge the shards with `flow runs merge`.
    #[arg(long, value_name = "K/N", env = "FLOW_SHARD")]
    pub shard: Option<String>,
    /// Run shard JOB_COMPLETION_INDEX+1 of N (a Kubernetes Indexed Job sets JOB_COMPLETION_INDEX).
    #[arg(long, value_name = "N", conflicts_with = "shard")]
    pub shards: Option<usize>,
    /// Upload the run directory to <URL>/<run name>/ (s3://, az://, gs://) when the run ends,
    /// however it ends; when that directory already exists, download it and resume it first.
    #[arg(long, value_name = "URL", env = "FLOW_UPLOAD")]
    pub upload: Option<String>,
}

/// Everything a batch needs, from the command line or from the run being resumed.
#[derive(Clone)]
pub(super) struct Plan {
    pub flow_path: PathBuf,
    pub selections: Vec<VariantSelection>,
    pub data: PathBuf,
    pub mapping_args: Vec<String>,
    pub base_run: Option<PathBuf>,
    pub dir: RunDir,
    pub resumed: Option<RunMeta>,
    pub concurrency: usize,
    pub line_timeout: Option<f64>,
    /// Fail lines whose base-run line failed or never ran (evaluations count them).
    pub require_base_line: bool,
    /// The repeated sample this run is (`flow eval --repeat`), for distinct cache entries.
    pub sample: Option<u32>,
    /// The shard of the dataset this run covers (`--shard K/N`).
    pub shard: Option<Shard>,
    /// Where the run directory is uploaded when the run ends (`--upload`).
    pub upload: Option<RemoteDir>,
}

/// How a finished batch is reported and judged.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reporting {
    pub output: OutputFormat,
    pub allow_failures: bool,
}

/// A batch that ran to its end (or was stopped): its record, and the failure to report, if any.
pub(super) struct Finished {
    // No caller reads it since `flow eval` evaluates through `flow::eval::evaluate`.
    #[allow(dead_code)]
    pub meta: RunMeta,
    pub failure: Option<Failure>,
}

pub fn run(args: &RunArgs) -> Result<(), Failure> {
    let project = std::env::current_dir().map_err(|e| Failure::usage(format!("error: {e}")))?;
    let plan = plan(args, &project)?;
    let reporting = Reporting {
        output: args.output,
        allow_failures: args.batch.allow_failures,
    };
    let result = run_plan(&plan, &args.model, reporting);
    let uploaded = match &plan.upload {
        Some(remote) if plan.dir.meta_file().is_file() => upload(&plan.dir, remote),
        _ => Ok(()),
    };
    match (result, uploaded) {
        (Err(f), Err(u)) => {
            eprintln!("{}", u.message);
            Err(f)
        }
        (Err(f), Ok(())) => Err(f),
        (Ok(finished), uploaded) => match finished.failure {
            Some(f) => {
                if let Err(u) = uploaded {
                    eprintln!("{}", u.message);
                }
                Err(f)
            }
            None => uploaded,
        },
    }
}

/// Upload a run directory to `remote` (its contents land in `remote` itself).
fn upload(dir: &RunDir, remote: &RemoteDir) -> Result<(), Failure> {
    let rt = runtime()?;
    let files = rt
        .block_on(remote.upload(&dir.path))
        .map_err(|e| Failure::endpoint(format!("error: cannot upload the run: {e}")))?;
    eprintln!("uploaded {} ({files} files) to {remote}", dir.name());
    Ok(())
}

/// The shard `--shard K/N` (or `FLOW_SHARD`) or `--shards N` with `JOB_COMPLETION_INDEX` names.
fn shard_arg(b: &BatchArgs) -> Result<Option<Shard>, Failure> {
    shard_from(b.shard.as_deref(), b.shards)
}

/// The shard of `--shard K/N` or of `--shards N` with `JOB_COMPLETION_INDEX`, if any.
pub(super) fn shard_from(
    shard: Option<&str>,
    shards: Option<usize>,
) -> Result<Option<Shard>, Failure> {
    let usage = |e: run_store::ShardError| Failure::usage(format!("error: {e}"));
    match (shard, shards) {
        (_, Some(0)) => Err(Failure::usage("error: --shards must be at least 1")),
        (_, Some(n)) => {
            let Ok(index) = std::env::var("JOB_COMPLETION_INDEX") else {
                return Err(Failure::usage(
                    "error: --shards N takes the shard from JOB_COMPLETION_INDEX, which is not set\n  help: outside a Kubernetes Indexed Job, give the shard with --shard K/N",
                ));
            };
            Shard::from_completion_index(&index, n)
                .map(Some)
                .map_err(usage)
        }
        (Some(s), None) => s.parse().map(Some).map_err(usage),
        (None, None) => Ok(None),
    }
}

/// Run a planned batch: load and prepare the flow, run every line, finish the run directory.
/// Configuration problems are `Err`; failed lines, a stop or an unusable endpoint come back in
/// `Finished::failure` with the run's record, so callers (like `flow eval`) can go on.
pub(super) fn run_plan(
    plan: &Plan,
    model: &super::ModelArgs,
    reporting: Reporting,
) -> Result<Finished, Failure> {
    let flow = load_flow(&plan.flow_path, &plan.selections)?;
    let mapping = ColumnMapping::parse(&plan.mapping_args)
        .map_err(|e| Failure::usage(format!("error: {e}")))?;
    let base = match &plan.base_run {
        Some(dir) => Some(BaseRun::load(dir).map_err(|e| Failure::usage(format!("error: {e}")))?),
        None if mapping.needs_base_run() => {
            return Err(Failure::usage(
                "error: --column-mapping uses ${run.outputs...} or ${run.inputs...} but no --run BASE was given\n  help: add --run <base run name>",
            ));
        }
        None => None,
    };
    let rows =
        flow::data::count_rows(&plan.data).map_err(|e| Failure::usage(format!("error: {e}")))?;
    let shard_info = match plan.shard {
        Some(shard) => Some(shard_info(&flow, plan, shard, rows)?),
        None => None,
    };
    let total = plan.shard.map_or(rows, |s| s.lines_of(rows));
    let mut model = model.clone();
    if let Some(meta) = &plan.resumed {
        if model.env_file.is_none() {
            model.env_file = meta.settings.env_file.as_ref().map(PathBuf::from);
        }
        model.offline = model.offline || meta.offline;
    }
    let mut options = executor_options(&model, &flow)?;
    options.python_workers = python_workers(plan.concurrency);
    options.max_in_flight = plan.concurrency;
    options.sample = plan.sample;
    let line_timeout = match plan.line_timeout {
        Some(s) if s > 0.0 && s.is_finite() => Some(Duration::from_secs_f64(s)),
        Some(_) => {
            return Err(Failure::usage(
                "error: --line-timeout must be a positive number of seconds",
            ));
        }
        None => None,
    };

    let rt = runtime()?;
    let plan = plan.clone();
    super::on_workers(&rt, async move {
        let executor = prepare(flow, &options).await?;
        let result = execute(
            &executor,
            &plan,
            mapping,
            base,
            total,
            line_timeout,
            reporting,
            &model,
            shard_info,
        )
        .await;
        executor.shutdown().await;
        result
    })
}

/// What `meta.json` records about shard `shard` of a `rows`-line dataset; a resumed shard must
/// still run the same flow on the same data.
fn shard_info(flow: &Flow, plan: &Plan, shard: Shard, rows: usize) -> Result<ShardInfo, Failure> {
    use flow::experiment::hash::{applied_yaml, flow_hash};
    let applied =
        applied_yaml(flow, &IndexMap::new()).map_err(|e| Failure::usage(format!("error: {e}")))?;
    let flow_hash = flow_hash(flow, &applied)
        .map_err(|e| Failure::usage(format!("error: cannot hash the flow: {e}")))?;
    let data_hash = data_hash(&plan.data)?;
    if let Some(before) = plan.resumed.as_ref().and_then(|m| m.shard.as_ref()) {
        let what = if before.flow_hash != flow_hash {
            Some("the flow")
        } else if before.data_hash != data_hash {
            Some("the data")
        } else {
            None
        };
        if let Some(what) = what {
            return Err(Failure::usage(format!(
                "error: {what} changed since shard {} (run `{}`) started, so its lines would not merge with the other shards\n  help: run it again under a new --name, or restore {what}",
                before.shard(),
                plan.dir.name()
            )));
        }
    }
    Ok(ShardInfo {
        index: shard.index,
        count: shard.count,
        dataset_lines: rows,
        flow_hash,
        data_hash,
    })
}

/// Python workers for a batch: enough to keep up with the lines in flight without starting
/// more interpreters than the machine can run (each is a process).
fn python_workers(concurrency: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    concurrency.clamp(1, (2 * cores).max(4))
}

fn plan(args: &RunArgs, project: &Path) -> Result<Plan, Failure> {
    let b = &args.batch;
    let upload_root = match &b.upload {
        Some(url) => Some(
            RemoteDir::parse(url).map_err(|e| Failure::usage(format!("error: --upload: {e}")))?,
        ),
        None => None,
    };
    if let Some(run) = &b.resume {
        let dir = super::runs::locate(project, run)?;
        return resume_plan(dir, b, upload_root);
    }
    let shard = shard_arg(b)?;
    let Some(flow_path) = args.flow.clone() else {
        return Err(Failure::usage("error: give the flow to run"));
    };
    let Some(data) = b.data.clone() else {
        return Err(Failure::usage(
            "error: --data FILE is required for a batch run",
        ));
    };
    if !data.is_file() {
        return Err(Failure::usage(format!(
            "error: the dataset {} does not exist",
            data.display()
        )));
    }
    let base_run = match &b.base_run {
        Some(r) => Some(super::runs::locate(project, r)?.path),
        None => None,
    };
    let selections = parse_variants(&args.variant)?;
    let data_hash = match shard {
        Some(_) => Some(data_hash(&data)?),
        None => None,
    };
    let name = match &b.name {
        Some(n) => {
            if n.is_empty() || n.contains(['/', '\\']) || n == "." || n == ".." {
                return Err(Failure::usage(format!(
                    "error: `{n}` is not a valid run name (no slashes)"
                )));
            }
            match shard {
                Some(s) if !n.ends_with(&s.name_suffix()) => format!("{n}{}", s.name_suffix()),
                _ => n.clone(),
            }
        }
        None => match (shard, &data_hash) {
            // The same on every machine and every retry, so a retried shard finds its run.
            (Some(s), Some(hash)) => format!(
                "{}_{}{}",
                name_stem(&flow_path, &selections),
                hash.trim_start_matches("sha256:")
                    .get(..8)
                    .unwrap_or("data"),
                s.name_suffix()
            ),
            _ => default_name(&flow_path, &selections),
        },
    };
    let dir = RunDir::new(run_store::runs_root(project).join(&name));
    let remote = upload_root.as_ref().map(|r| r.child(&name));
    let mut downloaded = false;
    if !dir.path.exists()
        && let Some(remote) = &remote
    {
        let rt = runtime()?;
        let found = rt
            .block_on(remote.has("meta.json"))
            .map_err(|e| Failure::endpoint(format!("error: --upload: {e}")))?;
        if found {
            eprintln!("{remote} exists: downloading it to resume it");
            rt.block_on(remote.download(&dir.path))
                .map_err(|e| Failure::endpoint(format!("error: cannot download {remote}: {e}")))?;
            downloaded = true;
        }
    }
    if downloaded && shard.is_none() {
        return resume_plan(dir, b, upload_root);
    }
    if dir.path.exists() {
        // A shard started again (a retried Kubernetes index, a re-run CI job) finishes its run.
        if let Some(shard) = shard
            && let Ok(meta) = dir.read_meta()
            && let Some(info) = &meta.shard
        {
            if info.shard() != shard || Some(&info.data_hash) != data_hash.as_ref() {
                return Err(Failure::usage(format!(
                    "error: a run named `{name}` already exists at {} and is shard {} of other data\n  help: pick another --name, or `flow runs delete {name}`",
                    dir.path.display(),
                    info.shard()
                )));
            }
            return resume_plan(dir, b, upload_root);
        }
        return Err(Failure::usage(format!(
            "error: a run named `{name}` already exists at {}\n  help: pick another --name, `flow run --resume {name}` to finish it, or `flow runs delete {name}`",
            dir.path.display()
        )));
    }
    Ok(Plan {
        flow_path,
        selections,
        data: absolute(&data),
        mapping_args: b.column_mapping.clone(),
        base_run: base_run.map(|p| absolute(&p)),
        dir,
        resumed: None,
        require_base_line: false,
        sample: None,
        concurrency: b.concurrency.max(1),
        line_timeout: b.line_timeout,
        shard,
        upload: remote,
    })
}

/// `sha256:` of a dataset, or a usage error.
fn data_hash(data: &Path) -> Result<String, Failure> {
    flow::experiment::hash::sha256_file(data)
        .map_err(|e| Failure::usage(format!("error: cannot read {}: {e}", data.display())))
}

/// The plan that finishes the run in `dir` the way it started.
fn resume_plan(
    dir: RunDir,
    b: &BatchArgs,
    upload_root: Option<RemoteDir>,
) -> Result<Plan, Failure> {
    let meta = dir.read_meta().map_err(|e| {
        Failure::usage(format!(
            "error: cannot read {}: {e}",
            dir.meta_file().display()
        ))
    })?;
    let Some(data) = meta.data.clone() else {
        return Err(Failure::usage(format!(
            "error: run `{}` has no dataset to resume from",
            meta.name
        )));
    };
    let selections = meta
        .variants
        .iter()
        .map(|(node, vid)| VariantSelection {
            node: node.clone(),
            variant_id: vid.clone(),
        })
        .collect();
    Ok(Plan {
        flow_path: PathBuf::from(&meta.flow),
        selections,
        data: PathBuf::from(data),
        mapping_args: meta.column_mapping.clone(),
        base_run: meta.base_run.as_ref().map(PathBuf::from),
        concurrency: if b.concurrency == DEFAULT_CONCURRENCY {
            meta.concurrency
        } else {
            b.concurrency
        },
        line_timeout: b.line_timeout.or(meta.settings.line_timeout_s),
        dir,
        require_base_line: meta.settings.require_base_line,
        sample: None,
        shard: meta.shard.as_ref().map(ShardInfo::shard),
        upload: upload_root.map(|r| r.child(&meta.name)),
        resumed: Some(meta),
    })
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// `<flow>_<variant>_<UTC timestamp>`, e.g. `classification_variant_1_20261128_101502_123456`.
fn default_name(flow_path: &Path, selections: &[VariantSelection]) -> String {
    let now = time::OffsetDateTime::now_utc();
    let stamp = now
        .format(time::macros::format_description!(
            "[year][month][day]_[hour][minute][second]_[subsecond digits:6]"
        ))
        .unwrap_or_default();
    format!("{}_{stamp}", name_stem(flow_path, selections))
}

/// `<flow>_<variant>`, made of letters, digits, `-` and `_`.
fn name_stem(flow_path: &Path, selections: &[VariantSelection]) -> String {
    let flow = absolute(flow_path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "flow".into());
    let flow = flow
        .trim_end_matches(".prompty")
        .trim_end_matches(".yaml")
        .trim_end_matches(".dag");
    let variant = if selections.is_empty() {
        "default".to_string()
    } else {
        selections
            .iter()
            .map(|s| s.variant_id.clone())
            .collect::<Vec<_>>()
            .join("+")
    };
    let safe = |s: &str| {
        s.chars()
            .map(|c| {
                if c.is_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect::<String>()
    };
    format!("{}_{}", safe(flow), safe(&variant))
}

fn new_meta(flow: &Flow, plan: &Plan, total: usize, model: &super::ModelArgs) -> RunMeta {
    flow::batch::new_run_meta(
        flow,
        &plan.dir,
        &plan.data,
        &plan.mapping_args,
        plan.base_run.as_deref(),
        total,
        plan.concurrency,
        model.offline,
        RunSettings {
            env_file: model
                .env_file
                .as_ref()
                .map(|p| absolute(p).display().to_string()),
            line_timeout_s: plan.line_timeout,
            request_timeout_s: Some(model.request_timeout),
            max_retries: Some(model.max_retries),
            cache: Some(model.cache.mode().as_str().to_string()),
            require_base_line: plan.require_base_line,
        },
    )
}

#[allow(clippy::too_many_arguments)]
async fn execute(
    executor: &flow::executor::Executor,
    plan: &Plan,
    mapping: ColumnMapping,
    base: Option<BaseRun>,
    total: usize,
    line_timeout: Option<Duration>,
    reporting: Reporting,
    model: &super::ModelArgs,
    shard_info: Option<ShardInfo>,
) -> Result<Finished, Failure> {
    let io_err = |what: &str, e: std::io::Error| {
        Failure::usage(format!("error: {what} {}: {e}", plan.dir.path.display()))
    };
    let flow = executor.flow();
    let (mut meta, skip, previous) = match &plan.resumed {
        None => {
            std::fs::create_dir_all(&plan.dir.path).map_err(|e| io_err("cannot create", e))?;
            run_store::write_snapshot(flow, &plan.dir.snapshot_dir())
                .map_err(|e| io_err("cannot write the snapshot of", e))?;
            let mut meta = new_meta(flow, plan, total, model);
            meta.shard = shard_info;
            run_store::write_meta(&plan.dir, &meta).map_err(|e| io_err("cannot write", e))?;
            (meta, HashSet::new(), Vec::new())
        }
        Some(meta) => {
            let (done, previous) = earlier_attempt(executor, &plan.dir, plan.shard.is_some())
                .map_err(|e| io_err("cannot read", e))?;
            if done.len() >= total && meta.status == RunStatus::Completed {
                eprintln!(
                    "run `{}` already finished: every line succeeded; nothing to resume",
                    meta.name
                );
                return Ok(Finished {
                    meta: meta.clone(),
                    failure: None,
                });
            }
            let mut meta = meta.clone();
            meta.status = RunStatus::Running;
            meta.total_lines = total;
            run_store::write_meta(&plan.dir, &meta).map_err(|e| io_err("cannot write", e))?;
            (meta, done, previous)
        }
    };
    let already = skip.len();
    let color = color_stderr();
    if plan.resumed.is_some() {
        eprintln!(
            "{}",
            dim(
                &format!(
                    "resuming {}: {already} of {total} lines already succeeded; running the rest",
                    meta.name
                ),
                color
            )
        );
    } else {
        eprintln!(
            "{}",
            dim(
                &format!(
                    "run {} · {total} lines{} · concurrency {}",
                    meta.name,
                    plan.shard
                        .map(|s| format!(" (shard {s})"))
                        .unwrap_or_default(),
                    plan.concurrency
                ),
                color
            )
        );
    }

    let source = spawn_line_source(
        &plan.data,
        mapping,
        base,
        flow.inputs.clone(),
        skip,
        plan.shard,
        plan.concurrency * 2,
        plan.require_base_line,
    )
    .map_err(|e| Failure::usage(format!("error: {e}")))?;
    let writer = RunWriter::start(&plan.dir).map_err(|e| io_err("cannot write", e))?;
    let progress = CliProgress::new(Some(total), already, color);
    let tracer = flow::telemetry::OtlpConfig::from_env().map(|c| {
        let flow_name = executor
            .flow()
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        flow::telemetry::Tracer::start(c, &flow_name)
    });
    let traced = flow::telemetry::TracedProgress {
        inner: &progress,
        tracer: tracer.clone(),
        run: meta.name.clone(),
    };
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = cancel_tx.send(true);
            // A second Ctrl-C while finishing up leaves at once.
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    let config = BatchConfig {
        concurrency: plan.concurrency,
        line_timeout,
        skip_aggregation: plan.shard.is_some(),
        ..BatchConfig::default()
    };
    let started = Instant::now();
    let outcome = run_batch(
        executor,
        source.lines,
        &writer,
        &config,
        &traced,
        cancel_rx,
        previous,
    )
    .await;
    ctrl_c.abort();
    if let Some(t) = &tracer {
        t.flush(std::time::Duration::from_secs(5)).await;
    }
    progress.finish();
    let write_result = writer.finish();
    let data_error = source.reader.join().ok().flatten();
    write_result.map_err(|e| io_err("cannot write the run to", e))?;

    meta.duration_s += started.elapsed().as_secs_f64();
    let metrics = outcome
        .aggregation
        .as_ref()
        .map(|a| a.metrics.clone())
        .unwrap_or_default();
    let stopped_early = outcome.canceled || outcome.endpoint_unusable.is_some();
    run_store::finalize(&plan.dir, &mut meta, &metrics, stopped_early)
        .map_err(|e| io_err("cannot finish", e))?;

    report(
        &meta,
        &outcome,
        &plan.dir,
        reporting.output,
        started.elapsed(),
        progress.done(),
    );
    if let Some(warning) = executor.cache().and_then(|c| c.write_warning()) {
        eprintln!("warning: {warning}");
    }
    if let Some(e) = data_error {
        return Err(Failure::usage(format!(
            "error: reading the data stopped early: {e}"
        )));
    }
    let failure = judge(&meta, &outcome, reporting);
    Ok(Finished { meta, failure })
}

/// The failure a finished batch reports, if any: an unusable endpoint (3), a stop (130), an
/// aggregation error or failed lines (1).
fn judge(meta: &RunMeta, outcome: &BatchOutcome, reporting: Reporting) -> Option<Failure> {
    if let Some(e) = &outcome.endpoint_unusable {
        return Some(Failure::endpoint(format!(
            "error: stopped after {} lines: the endpoint could not be used\n{}",
            outcome.failed,
            line_failure(e).message
        )));
    }
    if outcome.canceled {
        return Some(Failure {
            code: 130,
            message: format!(
                "stopped: {} lines are kept. Resume with: flow run --resume {}",
                meta.completed_lines + meta.failed_lines,
                meta.name
            ),
        });
    }
    if let Some(e) = outcome.aggregation.as_ref().and_then(|a| a.error.as_ref()) {
        return Some(Failure::quality(format!(
            "error: aggregation failed: {}",
            e.message
        )));
    }
    if meta.failed_lines > 0 && !(reporting.allow_failures && meta.completed_lines > 0) {
        let all_endpoint = outcome
            .first_errors
            .iter()
            .all(|(_, e)| e.kind == ErrorKind::Endpoint);
        let message = format!(
            "{} of {} lines failed. Rerun just those with: flow run --resume {}",
            meta.failed_lines, meta.total_lines, meta.name
        );
        return Some(
            if meta.completed_lines == 0 && all_endpoint && !outcome.first_errors.is_empty() {
                Failure::endpoint(message)
            } else {
                Failure::quality(message)
            },
        );
    }
    None
}

fn report(
    meta: &RunMeta,
    outcome: &BatchOutcome,
    dir: &RunDir,
    output: OutputFormat,
    elapsed: Duration,
    ran: usize,
) {
    if output == OutputFormat::Json {
        let metrics: serde_json::Value = std::fs::read_to_string(dir.metrics_file())
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(serde_json::Value::Null);
        let doc = serde_json::json!({"run": meta, "metrics": metrics, "path": dir.path});
        outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    }
    let color = color_stderr();
    let rate = if elapsed.as_secs_f64() > 0.0 {
        ran as f64 / elapsed.as_secs_f64()
    } else {
        0.0
    };
    let mark = if meta.failed_lines == 0 && meta.status == RunStatus::Completed {
        "✓"
    } else {
        "✗"
    };
    let mut parts = vec![format!(
        "{}/{} lines succeeded",
        meta.completed_lines, meta.total_lines
    )];
    if meta.failed_lines > 0 {
        parts.push(format!("{} failed", meta.failed_lines));
    }
    parts.push(format!(
        "{} at {rate:.1} lines/s",
        human_duration(elapsed.as_secs_f64())
    ));
    parts.push(format!("{} tokens", human_count(meta.tokens.total_tokens)));
    match meta.cost_usd {
        Some(c) => parts.push(format!("${c:.4}")),
        None if !meta.unpriced_models.is_empty() => parts.push("cost unknown".into()),
        None => {}
    }
    if meta.cache_hits > 0 {
        parts.push(format!("{} cached", meta.cache_hits));
    }
    eprintln!("{} {}", bold(mark, color), parts.join(" · "));
    eprintln!(
        "{}",
        dim(
            &format!(
                "latency p50 {:.0} ms · p95 {:.0} ms · run {}",
                meta.latency_ms.p50,
                meta.latency_ms.p95,
                dir.path.display()
            ),
            color
        )
    );
    let user_metrics: IndexMap<String, serde_json::Value> = outcome
        .aggregation
        .as_ref()
        .map(|a| {
            a.metrics
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    for (k, v) in &user_metrics {
        eprintln!("metric {k}: {v}");
    }
    if meta.offline {
        eprintln!(
            "{}",
            dim(
                "offline: every model answer came from the echo provider, not a model",
                color
            )
        );
    }
    for (line, e) in &outcome.first_errors {
        eprintln!("  line {line}: {}", first_line(&e.message));
    }
    if meta.failed_lines > outcome.first_errors.len() && !outcome.first_errors.is_empty() {
        eprintln!("  ... see {}", dir.error_file().display());
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}
